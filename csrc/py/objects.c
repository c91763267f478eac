/* objects.c -- the state of realms and managed objects in C fields.
 *
 *   RealmState    base class of realmpy.Realm: the state every read checks
 *   ModelBase     base class of every model: a managed object's realm, key
 *                 and cached record
 *   make_object / iter_objects / manage / ObjectIter   building them
 *   PropertyBase  the property descriptor's C __get__
 *
 * (module.c describes each in full.)
 */

#include "native.h"

/* ---- RealmState ------------------------------------------------------------- */


static inline unsigned long long load_version(uintptr_t addr) {
    /* Acquire, as the engine's rp_version_load: pairs with the committer's
     * release store of the counter. */
    return atomic_load_explicit((_Atomic uint64_t *)addr, memory_order_acquire);
}

/* True when the shared counter moved past the version this realm reads. */
static inline int realm_moved(const RealmState *r) {
    return r->vaddr != 0 && load_version(r->vaddr) != r->version;
}

static PyObject *rs_get_stamp(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(((RealmState *)self)->stamp);
}





static int rs_set_stamp(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (no_delete(value, "_stamp") || need_int(value, "_stamp")) return -1;
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) return -1;
    ((RealmState *)self)->stamp = v;
    return 0;
}

static PyObject *rs_get_version(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(((RealmState *)self)->version);
}

static int rs_set_version(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (no_delete(value, "_version") || need_int(value, "_version")) return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    ((RealmState *)self)->version = v;
    return 0;
}

static PyObject *rs_get_guard(PyObject *self, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (!r->has_guard) Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(r->guard);
}

static int rs_set_guard(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (no_delete(value, "_guard")) return -1;
    if (value == Py_None) {
        r->has_guard = 0;
        r->guard = 0;
        return 0;
    }
    if (need_int(value, "_guard")) return -1;
    unsigned long v = PyLong_AsUnsignedLong(value);
    if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
    r->guard = v;
    r->has_guard = 1;
    return 0;
}

static PyObject *rs_get_vh(PyObject *self, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (!r->vaddr) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong((unsigned long long)r->vaddr);
}

/* The address comes from Environment.version_address (rp_env_version_addr);
 * it is trusted, as a pointer always is: only its type and alignment can be
 * checked here. */
static int rs_set_vh(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (no_delete(value, "_vh")) return -1;
    if (value == Py_None) {
        r->vaddr = 0;
        return 0;
    }
    if (need_int(value, "_vh")) return -1;
    unsigned long long a = PyLong_AsUnsignedLongLong(value); /* < 0: OverflowError */
    if (a == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (a == 0 || a > UINTPTR_MAX) {
        PyErr_SetString(PyExc_ValueError, "_vh: not a counter address");
        return -1;
    }
    if (a % _Alignof(uint64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "_vh: misaligned counter address");
        return -1;
    }
    r->vaddr = (uintptr_t)a;
    return 0;
}

static int rs_clear(PyObject *self) {
    RealmState *r = (RealmState *)self;
    Py_CLEAR(r->adder_txn);
    Py_CLEAR(r->adder_changed);
    Py_CLEAR(r->adder_plans);
    return 0;
}

/* _adder: (write transaction, its change record, plans) while realm.add may
 * write new objects in one native call (add.c), else None. */
static PyObject *rs_get_adder(PyObject *self, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (r->adder_txn == NULL) Py_RETURN_NONE;
    return Py_BuildValue("(OOO)", r->adder_txn, r->adder_changed, r->adder_plans);
}

static int rs_set_adder(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    RealmState *r = (RealmState *)self;
    if (no_delete(value, "_adder")) return -1;
    if (value == Py_None) return rs_clear(self);
    PyObject *txn, *changed, *plans;
    if (!PyArg_ParseTuple(value, "OO!O!:_adder", &txn, &PyDict_Type, &changed, &PyDict_Type,
                          &plans))
        return -1;
    if (!PyObject_TypeCheck(txn, (PyTypeObject *)WriteTxn_Type)) {
        PyErr_Format(PyExc_TypeError, "_adder: not a write transaction: %R",
                     (PyObject *)Py_TYPE(txn));
        return -1;
    }
    rs_clear(self);
    r->adder_txn = Py_NewRef(txn);
    r->adder_changed = Py_NewRef(changed);
    r->adder_plans = Py_NewRef(plans);
    return 0;
}

static PyObject *rs_moved(PyObject *self, PyObject *unused) {
    (void)unused;
    return PyBool_FromLong(realm_moved((RealmState *)self));
}

static PyObject *rs_owned(PyObject *self, PyObject *unused) {
    (void)unused;
    RealmState *r = (RealmState *)self;
    return PyBool_FromLong(r->has_guard && r->guard == PyThread_get_thread_ident());
}

static PyGetSetDef rs_getset[] = {
    {"_stamp", rs_get_stamp, rs_set_stamp,
     "Bumped whenever what this realm reads changes (cached records with an "
     "older stamp are re-read).", NULL},
    {"_version", rs_get_version, rs_set_version,
     "The committed version this realm reads.", NULL},
    {"_guard", rs_get_guard, rs_set_guard,
     "The owner thread's id while open, else None.", NULL},
    {"_vh", rs_get_vh, rs_set_vh,
     "Address of the shared version counter while a live snapshot is open "
     "(None: nothing to check).", NULL},
    {"_adder", rs_get_adder, rs_set_adder,
     "(write transaction, its change record, {model class: add plan}) while "
     "add() writes new objects in one native call, else None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef rs_methods[] = {
    {"_moved", rs_moved, METH_NOARGS,
     "True if another commit moved the shared version counter past _version "
     "(one atomic load; False when nothing is watched)."},
    {"_owned", rs_owned, METH_NOARGS,
     "True if the calling thread is the owner of this open realm."},
    {"add", (PyCFunction)(void (*)(void))rs_add, METH_FASTCALL | METH_KEYWORDS,
     "add(obj, update=False): add an unmanaged object (and the unmanaged objects it "
     "links to); with update=True replace an existing object with the same primary "
     "key.  Returns the object, now managed by this realm.  A new object of a class "
     "without links is written in one native call; everything else goes to _add_slow."},
    {NULL, NULL, 0, NULL},
};

static int rs_traverse(PyObject *self, visitproc visit, void *arg) {
    RealmState *r = (RealmState *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(r->adder_txn);
    Py_VISIT(r->adder_changed);
    Py_VISIT(r->adder_plans);
    return 0;
}

static void rs_dealloc(PyObject *self) { gc_dealloc(self, rs_clear); }


static PyType_Slot rs_slots[] = {
    {Py_tp_doc, "Hot state of a Realm, read by the C property descriptor."},
    {Py_tp_getset, rs_getset},
    {Py_tp_methods, rs_methods},
    {Py_tp_traverse, rs_traverse},
    {Py_tp_clear, rs_clear},
    {Py_tp_dealloc, rs_dealloc},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

PyType_Spec rs_spec = {
    "realmpy._native.RealmState",
    sizeof(RealmState),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    rs_slots,
};

/* ---- ModelBase ---------------------------------------------------------------
 *
 * Base class of every model (realmpy.schema._Model).  A managed object's
 * state lives in these C fields, not in its instance dict: the descriptor
 * reads them without a dict lookup, and an object made from a query result
 * is one allocation (its instance dict is only made if something asks for
 * it: unmanaged objects keep their values there).
 *
 *   store  _rp_store  the realm (or an embedded object's store); NULL: not
 *                     managed (reads as None)
 *   key    _rp_key    the primary-key bytes in the table; NULL: unset
 *   rec    the cached record (a list, or a lazy Record), valid while
 *   stamp  equals the realm's _stamp; pos maps property names to positions
 *   pos    in rec.  Python reads and sets the three together as _rp_cache =
 *          (stamp, rec, pos), or None (nothing cached). */




/* *slot = new (a new reference, or NULL); the old value is released last. */
static void replace_ref(PyObject **slot, PyObject *new_ref) {
    PyObject *old = *slot;
    *slot = new_ref;
    Py_XDECREF(old);
}

static PyObject *mb_get_store(PyObject *self, void *closure) {
    (void)closure;
    PyObject *s = ((ModelBase *)self)->store;
    return Py_NewRef(s ? s : Py_None);
}

static int mb_set_store(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (no_delete(value, "_rp_store")) return -1;
    ModelBase *m = (ModelBase *)self;
    replace_ref(&m->store, value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *mb_get_key(PyObject *self, void *closure) {
    (void)closure;
    PyObject *k = ((ModelBase *)self)->key;
    if (k == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_rp_key");
        return NULL;
    }
    return Py_NewRef(k);
}

static int mb_set_key(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (no_delete(value, "_rp_key")) return -1;
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "_rp_key must be bytes, not %R", (PyObject *)Py_TYPE(value));
        return -1;
    }
    replace_ref(&((ModelBase *)self)->key, Py_NewRef(value));
    return 0;
}

static void mb_set_record(ModelBase *m, PyObject *rec, long long stamp, PyObject *pos) {
    /* rec NULL or None: nothing cached.  The old values go last: their
     * deallocation may run code that looks at this object. */
    PyObject *old_rec = m->rec, *old_pos = m->pos;
    if (rec == NULL || rec == Py_None) {
        m->rec = m->pos = NULL;
    } else {
        m->rec = Py_NewRef(rec);
        m->pos = Py_NewRef(pos);
        m->stamp = stamp;
    }
    Py_XDECREF(old_rec);
    Py_XDECREF(old_pos);
}

static PyObject *mb_get_cache(PyObject *self, void *closure) {
    (void)closure;
    ModelBase *m = (ModelBase *)self;
    if (m->rec == NULL) Py_RETURN_NONE;
    PyObject *st = PyLong_FromLongLong(m->stamp);
    if (st == NULL) return NULL;
    PyObject *t = PyTuple_Pack(3, st, m->rec, m->pos);
    Py_DECREF(st);
    return t;
}

static int mb_set_cache(PyObject *self, PyObject *value, void *closure) {
    (void)closure;
    if (no_delete(value, "_rp_cache")) return -1;
    if (value == Py_None) {
        mb_set_record((ModelBase *)self, NULL, 0, NULL);
        return 0;
    }
    if (!PyTuple_Check(value) || PyTuple_Size(value) != 3) {
        PyErr_SetString(PyExc_TypeError, "_rp_cache is None or (stamp, record, positions)");
        return -1;
    }
    PyObject *st = PyTuple_GetItem(value, 0), *pos = PyTuple_GetItem(value, 2);
    if (!PyLong_Check(st) || !PyDict_Check(pos)) {
        PyErr_SetString(PyExc_TypeError,
                        "_rp_cache is (stamp: int, record, positions: dict)");
        return -1;
    }
    long long stamp = PyLong_AsLongLong(st);
    if (stamp == -1 && PyErr_Occurred()) return -1;
    mb_set_record((ModelBase *)self, PyTuple_GetItem(value, 1), stamp, pos);
    return 0;
}

static PyGetSetDef mb_getset[] = {
    {"_rp_store", mb_get_store, mb_set_store,
     "The realm (store) of a managed object; None while unmanaged.", NULL},
    {"_rp_key", mb_get_key, mb_set_key, "A managed object's primary-key bytes.", NULL},
    {"_rp_cache", mb_get_cache, mb_set_cache,
     "(stamp, record, positions) of the cached record, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int mb_traverse(PyObject *self_, visitproc visit, void *arg) {
    ModelBase *self = (ModelBase *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->store);
    Py_VISIT(self->key);
    Py_VISIT(self->rec);
    Py_VISIT(self->pos);
    return 0;
}

static int mb_clear(PyObject *self_) {
    ModelBase *self = (ModelBase *)self_;
    Py_CLEAR(self->store);
    Py_CLEAR(self->key);
    Py_CLEAR(self->rec);
    Py_CLEAR(self->pos);
    return 0;
}

/* Reached from a subclass's dealloc (which has already untracked the
 * object and cleared its instance dict) or directly. */
static void mb_dealloc(PyObject *self) { gc_dealloc(self, mb_clear); }

static PyType_Slot mb_slots[] = {
    {Py_tp_doc, "Base of every model: a managed object's state in C fields."},
    {Py_tp_getset, mb_getset},
    {Py_tp_traverse, mb_traverse},
    {Py_tp_clear, mb_clear},
    {Py_tp_dealloc, mb_dealloc},
    /* No Py_tp_new: object's, so model classes construct (and
     * object.__new__(cls) works) exactly as for a plain Python class. */
    {0, NULL},
};

PyType_Spec mb_spec = {
    "realmpy._native.ModelBase",
    sizeof(ModelBase),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    mb_slots,
};

/* ---- object construction ------------------------------------------------------ */

/* cls.__new__(cls), with the type's own tp_new as Python does.  A model
 * that keeps ModelBase's (object's) tp_new is only allocated: object's
 * would also set up the instance-dict values that an unmanaged object's
 * fields go in, and a managed object never uses them. */
static PyObject *new_instance(PyObject *cls) {
    newfunc tp_new = (newfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_new);
    if (tp_new != NULL && PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)ModelBase_Type)
        && tp_new == (newfunc)PyType_GetSlot((PyTypeObject *)ModelBase_Type, Py_tp_new)) {
        allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_alloc);
        return alloc((PyTypeObject *)cls, 0);
    }
    if (tp_new == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "cannot create '%S' instances", cls);
        return NULL;
    }
    return tp_new((PyTypeObject *)cls, empty_tuple, NULL);
}

/* The instance dict (new reference); TypeError if instances have none. */
PyObject *instance_dict(PyObject *obj) {
    PyObject *d = PyObject_GenericGetDict(obj, NULL);
    if (d == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%R objects have no __dict__",
                         (PyObject *)Py_TYPE(obj));
        }
        return NULL;
    }
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "__dict__ is not a dict");
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* Make obj (a model) managed by realm under key, caching rec (NULL or
 * None: nothing) read at stamp with positions pos. */
int set_managed(PyObject *obj, PyObject *realm, PyObject *key, PyObject *rec, long long stamp,
                PyObject *pos) {
    if (!is_model(obj)) {
        PyErr_Format(PyExc_TypeError, "%R is not a model class", (PyObject *)Py_TYPE(obj));
        return -1;
    }
    ModelBase *m = (ModelBase *)obj;
    replace_ref(&m->store, Py_NewRef(realm));
    replace_ref(&m->key, Py_NewRef(key));
    mb_set_record(m, rec, stamp, pos);
    return 0;
}

static PyObject *make_managed(PyObject *cls, PyObject *realm, PyObject *key, PyObject *rec,
                              long long stamp, PyObject *pos) {
    PyObject *obj = new_instance(cls);
    if (obj == NULL) return NULL;
    if (set_managed(obj, realm, key, rec, stamp, pos) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    return obj;
}

static int check_model_args(PyObject *cls, PyObject *realm, PyObject *pos) {
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "cls must be a class, not %R", (PyObject *)Py_TYPE(cls));
        return -1;
    }
    if (!(PyType_GetFlags((PyTypeObject *)cls) & Py_TPFLAGS_HEAPTYPE)
        || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)ModelBase_Type)) {
        PyErr_Format(PyExc_TypeError, "cls must be a model class, not %R", cls);
        return -1;
    }
    if (!PyObject_TypeCheck(realm, (PyTypeObject *)RealmState_Type)) {
        PyErr_Format(PyExc_TypeError, "realm must be a Realm, not %R", (PyObject *)Py_TYPE(realm));
        return -1;
    }
    if (pos != NULL && !PyDict_Check(pos)) {
        PyErr_Format(PyExc_TypeError, "pos must be a dict, not %R", (PyObject *)Py_TYPE(pos));
        return -1;
    }
    return 0;
}

/* The stamp argument as a C value (it must fit, as the realm's does). */
static int stamp_arg(PyObject *stamp, long long *out) {
    if (!PyLong_Check(stamp)) {
        PyErr_Format(PyExc_TypeError, "stamp must be an int, not %R", (PyObject *)Py_TYPE(stamp));
        return -1;
    }
    *out = PyLong_AsLongLong(stamp);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}



PyObject *sp_make_object(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 6, "make_object")) return NULL;
    PyObject *cls = args[0], *realm = args[1], *key = args[2], *rec = args[3];
    PyObject *stamp = args[4], *pos = args[5];
    long long st;
    if (check_model_args(cls, realm, pos) || check_key(key) || stamp_arg(stamp, &st)) return NULL;
    return make_managed(cls, realm, key, rec, st, pos);
}

/* manage(objs, realm, keys, recs, stamp, pos): set the managed entries of
 * objects that already exist (a bulk add). */
PyObject *sp_manage(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *objs, *realm, *keys, *recs, *stamp, *pos;
    if (!PyArg_ParseTuple(args, "O!OO!O!OO!:manage", &PyList_Type, &objs, &realm, &PyList_Type,
                          &keys, &PyList_Type, &recs, &stamp, &PyDict_Type, &pos))
        return NULL;
    if (!PyObject_TypeCheck(realm, (PyTypeObject *)RealmState_Type)) {
        PyErr_Format(PyExc_TypeError, "realm must be a Realm, not %R", (PyObject *)Py_TYPE(realm));
        return NULL;
    }
    long long st;
    if (stamp_arg(stamp, &st)) return NULL;
    Py_ssize_t n = PyList_Size(objs);
    if (PyList_Size(keys) != n || PyList_Size(recs) != n) {
        PyErr_SetString(PyExc_ValueError, "manage: objs, keys and recs differ in length");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (check_key(PyList_GetItem(keys, i))) return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = PyList_GetItem(objs, i);
        PyObject *key = PyList_GetItem(keys, i);
        PyObject *rec = PyList_GetItem(recs, i);
        if (obj == NULL || key == NULL || rec == NULL) return NULL; /* lists changed */
        Py_INCREF(obj);
        Py_INCREF(key);
        Py_INCREF(rec);
        int rc = set_managed(obj, realm, key, rec, st, pos);
        Py_DECREF(rec);
        Py_DECREF(key);
        Py_DECREF(obj);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- ObjectIter: Results.__iter__ ---------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *cls, *realm, *rows, *pos;
    long long stamp;
    Py_ssize_t i;
} ObjectIter;

static int oi_traverse(PyObject *self_, visitproc visit, void *arg) {
    ObjectIter *self = (ObjectIter *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->cls);
    Py_VISIT(self->realm);
    Py_VISIT(self->rows);
    Py_VISIT(self->pos);
    return 0;
}

static int oi_clear(PyObject *self_) {
    ObjectIter *self = (ObjectIter *)self_;
    Py_CLEAR(self->cls);
    Py_CLEAR(self->realm);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->pos);
    return 0;
}

static void oi_dealloc(PyObject *self) { gc_dealloc(self, oi_clear); }

/* Unpack one row (key, rec): borrowed-like new references in *k, *rec. */
int unpack_row(PyObject *row, PyObject **k, PyObject **rec) {
    PyObject *t = PySequence_Tuple(row);
    if (t == NULL) return -1;
    if (PyTuple_Size(t) != 2) {
        PyErr_Format(PyExc_ValueError, "a row is (key, record), got %zd items", PyTuple_Size(t));
        Py_DECREF(t);
        return -1;
    }
    *k = PyTuple_GetItem(t, 0);
    *rec = PyTuple_GetItem(t, 1);
    Py_INCREF(*k);
    Py_INCREF(*rec);
    Py_DECREF(t);
    return check_key(*k);
}

static PyObject *oi_next(PyObject *self_) {
    ObjectIter *self = (ObjectIter *)self_;
    if (self->rows == NULL) return NULL;
    if (self->i >= PyList_Size(self->rows)) {
        oi_clear(self_); /* exhausted: let go of the rows */
        return NULL;
    }
    PyObject *row = PyList_GetItem(self->rows, self->i++);
    if (row == NULL) return NULL;
    Py_INCREF(row);
    PyObject *k = NULL, *rec = NULL, *obj = NULL;
    if (unpack_row(row, &k, &rec) == 0) {
        obj = make_managed(self->cls, self->realm, k, rec, self->stamp, self->pos);
    }
    Py_XDECREF(k);
    Py_XDECREF(rec);
    Py_DECREF(row);
    return obj;
}

static PyType_Slot oi_slots[] = {
    {Py_tp_doc, "Managed objects made one at a time from (key, record) rows."},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, oi_next},
    {Py_tp_traverse, oi_traverse},
    {Py_tp_clear, oi_clear},
    {Py_tp_dealloc, oi_dealloc},
    {0, NULL},
};

PyType_Spec oi_spec = {
    "realmpy._native.ObjectIter",
    sizeof(ObjectIter),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    oi_slots,
};

/* iter_objects(cls, realm, rows, stamp, pos) */
PyObject *sp_iter_objects(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 5, "iter_objects")) return NULL;
    PyObject *cls = args[0], *realm = args[1], *rows = args[2], *stamp = args[3], *pos = args[4];
    if (need_list(rows, "rows")) return NULL;
    long long st;
    if (check_model_args(cls, realm, pos) || stamp_arg(stamp, &st)) return NULL;
    allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)ObjectIter_Type, Py_tp_alloc);
    ObjectIter *it = (ObjectIter *)alloc((PyTypeObject *)ObjectIter_Type, 0);
    if (it == NULL) return NULL;
    Py_INCREF(cls);
    Py_INCREF(realm);
    Py_INCREF(rows);
    Py_INCREF(pos);
    it->cls = cls;
    it->realm = realm;
    it->rows = rows;
    it->stamp = st;
    it->pos = pos;
    it->i = 0;
    return (PyObject *)it;
}

/* ---- PropertyBase: the descriptor ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *name;   /* the property name (str)                              */
    PyObject *plain;  /* True: the stored value is the value; None: unknown  */
} PropertyBase;

static PyMemberDef pb_members[] = {
    {"name", T_OBJECT, offsetof(PropertyBase, name), 0, "The property's name."},
    {"plain", T_OBJECT, offsetof(PropertyBase, plain), 0,
     "Whether the stored value is the value (a scalar, not a counter); None "
     "until the schema is resolved."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *call_slow(PyObject *self, PyObject *obj, PyObject *owner) {
    return PyObject_CallMethodObjArgs(self, s_slow_get, obj, owner ? owner : Py_None, NULL);
}

/* The value of the property in a managed object's cached record (current:
 * the caller checked the stamp), or NULL with no exception when the fast
 * path does not apply (NULL with one on error). */
static PyObject *cached_value(PropertyBase *self, ModelBase *m) {
    PyObject *rec = m->rec, *pos = m->pos;
    if (!PyDict_CheckExact(pos)) return NULL;
    /* Held across the lookups: a dict lookup with an odd key type can run
     * Python code that replaces the object's cached record. */
    Py_INCREF(rec);
    Py_INCREF(pos);
    PyObject *v = NULL;
    PyObject *i = PyDict_GetItemWithError(pos, self->name);
    if (i != NULL && PyLong_CheckExact(i)) {
        Py_ssize_t k = PyLong_AsSsize_t(i);
        if (k >= 0) {
            if (PyList_CheckExact(rec)) {
                if (k < PyList_Size(rec)) v = Py_XNewRef(PyList_GetItem(rec, k));
            } else if (Py_IS_TYPE(rec, (PyTypeObject *)Record_Type)) {
                if (k < ((Record *)rec)->len) v = rec_item(rec, k);
            } else {
                v = PySequence_GetItem(rec, k); /* as the Python code: rec[i] */
            }
        } else if (PyErr_Occurred()) {
            PyErr_Clear(); /* an absurd position: the Python path reports it */
        }
    }
    Py_DECREF(pos);
    Py_DECREF(rec);
    return v;
}

/* Managed objects of a Realm, plain properties: owner thread, auto-refresh
 * check, then the cached record if its stamp is the realm's, all from C
 * fields.  Every other case is Python's: store.read_plain(obj, name) when
 * only a check failed, self._slow_get(obj, owner) otherwise. */
static PyObject *pb_descr_get(PyObject *self_, PyObject *obj, PyObject *owner) {
    PropertyBase *self = (PropertyBase *)self_;
    if (obj == NULL || obj == Py_None) return Py_NewRef(self_);
    if (self->name == NULL || !PyUnicode_CheckExact(self->name) || !is_model(obj))
        return call_slow(self_, obj, owner);
    ModelBase *m = (ModelBase *)obj;
    PyObject *store = m->store;
    if (store == NULL) {
        /* Unmanaged: the value in the instance dict, unless it may be a
         * counter (an int: the Python path binds counters). */
        PyObject *d = PyObject_GenericGetDict(obj, NULL);
        if (d == NULL || !PyDict_Check(d)) {
            PyErr_Clear();
            Py_XDECREF(d);
            return call_slow(self_, obj, owner);
        }
        PyObject *v = PyDict_GetItemWithError(d, self->name);
        if (v != NULL && !PyLong_CheckExact(v)) {
            Py_INCREF(v);
            Py_DECREF(d);
            return v;
        }
        Py_DECREF(d);
        if (PyErr_Occurred()) return NULL;
        return call_slow(self_, obj, owner);
    }
    if (self->plain != Py_True) return call_slow(self_, obj, owner);
    Py_INCREF(store);
    PyObject *v = NULL;
    if (m->rec != NULL && PyObject_TypeCheck(store, (PyTypeObject *)RealmState_Type)) {
        RealmState *r = (RealmState *)store;
        if (m->stamp == r->stamp && r->has_guard && r->guard == PyThread_get_thread_ident()
            && !realm_moved(r)) {
            v = cached_value(self, m);
            if (v == NULL && PyErr_Occurred()) {
                Py_DECREF(store);
                return NULL;
            }
        }
    }
    if (v == NULL) v = PyObject_CallMethodObjArgs(store, s_read_plain, obj, self->name, NULL);
    Py_DECREF(store);
    return v;
}

static int pb_traverse(PyObject *self_, visitproc visit, void *arg) {
    PropertyBase *self = (PropertyBase *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->name);
    Py_VISIT(self->plain);
    return 0;
}

static int pb_clear(PyObject *self_) {
    PropertyBase *self = (PropertyBase *)self_;
    Py_CLEAR(self->name);
    Py_CLEAR(self->plain);
    return 0;
}

static void pb_dealloc(PyObject *self) { gc_dealloc(self, pb_clear); }

static PyType_Slot pb_slots[] = {
    {Py_tp_doc, "Property descriptor whose __get__ reads cached records in C."},
    {Py_tp_members, pb_members},
    {Py_tp_descr_get, pb_descr_get},
    {Py_tp_traverse, pb_traverse},
    {Py_tp_clear, pb_clear},
    {Py_tp_dealloc, pb_dealloc},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

PyType_Spec pb_spec = {
    "realmpy._native.PropertyBase",
    sizeof(PropertyBase),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    pb_slots,
};

