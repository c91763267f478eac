/* realmpy._speedups: the object layer's per-object hot paths in C.
 *
 * cffi (realmpy._engine) binds the storage engine but cannot define Python
 * types, so the few things that run once per object or per attribute read
 * live here, written against the limited API (abi3, CPython >= 3.10):
 *
 *   RealmState    base class of realmpy.Realm holding the state every read
 *                 checks: the owner thread (_guard), the version this realm
 *                 reads (_version), the cache stamp (_stamp) and the address
 *                 of the engine's shared version counter while a live
 *                 snapshot is open (_vh).  Plain C fields, so the property
 *                 descriptor below reads them without attribute lookups.
 *   ModelBase     base class of every model: a managed object's realm
 *                 (_rp_store), key (_rp_key) and cached record with its
 *                 stamp and positions (_rp_cache) in C fields, so an object
 *                 made from a query result is one allocation, with no
 *                 instance dict.
 *   Record        a stored record kept as its msgpack bytes and decoded a
 *                 field at a time when read (what the realm caches for
 *                 every record it reads from storage; reads as the padded
 *                 list the codec would give).
 *   PropertyBase  base class of realmpy.schema._PropertyDescriptor: the
 *                 C __get__.  Its fast path is exactly the Python reference
 *                 (_PropertyDescriptor._slow_get / Realm.read_plain): owner
 *                 thread, auto-refresh version check, then the object's
 *                 cached record checked against the realm's stamp.  Every other case calls
 *                 the Python code: store.read_plain(obj, name) when only
 *                 the check failed, descriptor._slow_get(obj, owner) for
 *                 everything else (counters, links, collections, unresolved
 *                 schema, other stores, unmanaged counters).
 *   iter_objects / make_object / manage
 *                 build managed objects: cls.__new__(cls) with ModelBase's
 *                 fields set.
 *
 * Thread and lifetime rules: everything runs with the GIL held.  The version
 * counter address is only set (RealmState._vh) while the realm holds an open
 * snapshot of the environment, which keeps the engine handle (and its
 * shared mapping) alive; the realm clears it before the snapshot ends.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdatomic.h>
#include <stdint.h>

/* ---- module globals (single-phase init: one interpreter) ------------------ */

static PyObject *RealmState_Type;
static PyObject *PropertyBase_Type;
static PyObject *ObjectIter_Type;
static PyObject *s_read_plain, *s_slow_get;
static PyObject *empty_tuple;

/* ---- RealmState ------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    long long stamp;          /* _stamp: bumped whenever what is read changes */
    unsigned long long version; /* _version: the version this realm reads    */
    unsigned long guard;      /* _guard: owner thread id, if has_guard         */
    int has_guard;            /* 0: _guard is None (closed, or not yet open)  */
    uintptr_t vaddr;          /* _vh: the shared counter's address, or 0      */
} RealmState;

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

static int no_delete(PyObject *value, const char *name) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    return 0;
}

static int need_int(PyObject *value, const char *name) {
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %R", name,
                     (PyObject *)Py_TYPE(value));
        return -1;
    }
    return 0;
}

static int need_list(PyObject *value, const char *name) {
    if (!PyList_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list, not %R", name,
                     (PyObject *)Py_TYPE(value));
        return -1;
    }
    return 0;
}

/* An int argument as a Py_ssize_t (TypeError if not an int). */
static int size_arg(PyObject *value, const char *name, Py_ssize_t *out) {
    if (need_int(value, name)) return -1;
    *out = PyLong_AsSsize_t(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
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
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef rs_methods[] = {
    {"_moved", rs_moved, METH_NOARGS,
     "True if another commit moved the shared version counter past _version "
     "(one atomic load; False when nothing is watched)."},
    {"_owned", rs_owned, METH_NOARGS,
     "True if the calling thread is the owner of this open realm."},
    {NULL, NULL, 0, NULL},
};

static int rs_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

/* The tp_dealloc of a GC-tracked heap type whose references clear()
 * drops (NULL: none); instances hold a reference to their heap type. */
static void gc_dealloc(PyObject *self, inquiry clear) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (clear != NULL) clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static void rs_dealloc(PyObject *self) { gc_dealloc(self, NULL); }

static PyType_Slot rs_slots[] = {
    {Py_tp_doc, "Hot state of a Realm, read by the C property descriptor."},
    {Py_tp_getset, rs_getset},
    {Py_tp_methods, rs_methods},
    {Py_tp_traverse, rs_traverse},
    {Py_tp_dealloc, rs_dealloc},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec rs_spec = {
    "realmpy._speedups.RealmState",
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

static PyObject *ModelBase_Type;

typedef struct {
    PyObject_HEAD
    PyObject *store;
    PyObject *key;
    PyObject *rec;
    PyObject *pos;
    long long stamp;
} ModelBase;

static inline int is_model(PyObject *o) {
    return PyObject_TypeCheck(o, (PyTypeObject *)ModelBase_Type);
}

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

static PyType_Spec mb_spec = {
    "realmpy._speedups.ModelBase",
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
static PyObject *instance_dict(PyObject *obj) {
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
static int set_managed(PyObject *obj, PyObject *realm, PyObject *key, PyObject *rec,
                       long long stamp, PyObject *pos) {
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

static int check_key(PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_Format(PyExc_TypeError, "a key must be bytes, not %R", (PyObject *)Py_TYPE(key));
        return -1;
    }
    return 0;
}

/* make_object(cls, realm, key, rec, stamp, pos) */
static int nargs_is(Py_ssize_t nargs, Py_ssize_t want, const char *fn) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
        return -1;
    }
    return 0;
}

static PyObject *sp_make_object(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
static PyObject *sp_manage(PyObject *module, PyObject *args) {
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
static int unpack_row(PyObject *row, PyObject **k, PyObject **rec) {
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

static PyType_Spec oi_spec = {
    "realmpy._speedups.ObjectIter",
    sizeof(ObjectIter),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    oi_slots,
};

/* iter_objects(cls, realm, rows, stamp, pos) */
static PyObject *sp_iter_objects(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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

/* ---- Record: a lazily decoded object record ---------------------------------------
 *
 * One stored record (a msgpack array of the property values in stored
 * order) kept as its bytes, read as the list the Python code would decode
 * and pad (codec.unpack_row + _ClassInfo.full): len() is max(n, stored),
 * item i decodes field i the first time it is read and caches it.  Plain
 * scalars (nil, bool, int, float, str, bin) are decoded here; anything else
 * (arrays, maps, ext types), and a str that is not valid UTF-8, goes
 * through the Python decoder given at creation (msgpack.unpackb with the
 * record options: the same values, the same CodecError).  Positions past
 * the stored array hold the given defaults.  The record's structure (array
 * header, every field's extent) is checked when it is made, so a damaged
 * one is refused up front (the given error type) and a read never runs off
 * its bytes.
 *
 * Layout: the fixed part, then (var part, itemsize 1) len value slots
 * (NULL: not decoded yet), stored + 1 uint32 field offsets, the raw bytes. */

static PyObject *Record_Type;

typedef struct {
    PyObject_VAR_HEAD
    Py_ssize_t len;      /* max(n, stored): what len() says                  */
    Py_ssize_t stored;   /* fields in the stored array                       */
    PyObject *decode;    /* decode(bytes) -> value: the Python decoder        */
    PyObject **vals;     /* len slots                                        */
    uint32_t *offs;      /* stored + 1 offsets of the fields in raw          */
    const unsigned char *raw;
} Record;

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const unsigned char *p) {
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

/* Past one msgpack object at p (nested ones included), or NULL if it is
 * malformed or runs past e.  Iterative: a count of objects still owed. */
static const unsigned char *mp_skip(const unsigned char *p, const unsigned char *e) {
    uint64_t owed = 1;
    while (owed) {
        if (p >= e || owed > (uint64_t)(e - p)) return NULL; /* each takes >= 1 byte */
        owed--;
        unsigned c = *p++;
        uint64_t body = 0, items = 0;
        size_t avail = (size_t)(e - p);
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            continue;
        } else if (c >= 0xa0 && c <= 0xbf) {
            body = c & 0x1f;
        } else if (c >= 0x90 && c <= 0x9f) {
            items = c & 0x0f;
        } else if (c >= 0x80 && c <= 0x8f) {
            items = 2 * (uint64_t)(c & 0x0f);
        } else {
            switch (c) {
            case 0xcc: case 0xd0: body = 1; break;
            case 0xcd: case 0xd1: body = 2; break;
            case 0xce: case 0xd2: case 0xca: body = 4; break;
            case 0xcf: case 0xd3: case 0xcb: body = 8; break;
            case 0xd4: body = 2; break; /* fixext: type + data */
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xc4: case 0xd9:
                if (avail < 1) return NULL;
                body = 1 + (uint64_t)p[0];
                break;
            case 0xc5: case 0xda:
                if (avail < 2) return NULL;
                body = 2 + (uint64_t)be16(p);
                break;
            case 0xc6: case 0xdb:
                if (avail < 4) return NULL;
                body = 4 + (uint64_t)be32(p);
                break;
            case 0xc7:
                if (avail < 1) return NULL;
                body = 2 + (uint64_t)p[0];
                break;
            case 0xc8:
                if (avail < 2) return NULL;
                body = 3 + (uint64_t)be16(p);
                break;
            case 0xc9:
                if (avail < 4) return NULL;
                body = 5 + (uint64_t)be32(p);
                break;
            case 0xdc:
                if (avail < 2) return NULL;
                body = 2;
                items = be16(p);
                break;
            case 0xdd:
                if (avail < 4) return NULL;
                body = 4;
                items = be32(p);
                break;
            case 0xde:
                if (avail < 2) return NULL;
                body = 2;
                items = 2 * (uint64_t)be16(p);
                break;
            case 0xdf:
                if (avail < 4) return NULL;
                body = 4;
                items = 2 * (uint64_t)be32(p);
                break;
            default: /* 0xc1: never used */
                return NULL;
            }
        }
        if (body > avail) return NULL;
        p += body;
        owed += items;
    }
    return p;
}

/* mp_skip with the usual fields of a record (small ints, nil, bools,
 * short strings, doubles) stepped over inline: building a Record skips
 * every field once. */
static inline const unsigned char *mp_skip_field(const unsigned char *p,
                                                 const unsigned char *e) {
    if (p < e) {
        unsigned c = *p;
        size_t avail = (size_t)(e - p) - 1, body;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return p + 1;
        if (c >= 0xa0 && c <= 0xbf) body = c & 0x1f;
        else if (c == 0xcb || c == 0xcf || c == 0xd3) body = 8;
        else if (c == 0xcd || c == 0xd1) body = 2;
        else if (c == 0xce || c == 0xd2) body = 4;
        else return mp_skip(p, e);
        return body <= avail ? p + 1 + body : NULL;
    }
    return NULL;
}

/* The plain scalar at [p, e) (one whole object), or NULL without an
 * exception if it is not one this decodes (NULL with one on failure). */
static PyObject *mp_scalar(const unsigned char *p, const unsigned char *e) {
    unsigned c = *p;
    Py_ssize_t n = e - p;
    if (c <= 0x7f) return PyLong_FromLong((long)c);
    if (c >= 0xe0) return PyLong_FromLong((long)(signed char)c);
    if (c >= 0xa0 && c <= 0xbf) {
        PyObject *s = PyUnicode_DecodeUTF8((const char *)p + 1, n - 1, NULL);
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
        return s;
    }
    switch (c) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    case 0xcc: return PyLong_FromLong((long)p[1]);
    case 0xcd: return PyLong_FromLong((long)be16(p + 1));
    case 0xce: return PyLong_FromUnsignedLongLong((unsigned long long)be32(p + 1));
    case 0xcf: return PyLong_FromUnsignedLongLong((unsigned long long)be64(p + 1));
    case 0xd0: return PyLong_FromLong((long)(int8_t)p[1]);
    case 0xd1: return PyLong_FromLong((long)(int16_t)be16(p + 1));
    case 0xd2: return PyLong_FromLong((long)(int32_t)be32(p + 1));
    case 0xd3: return PyLong_FromLongLong((long long)(int64_t)be64(p + 1));
    case 0xca: {
        uint32_t u = be32(p + 1);
        float f;
        memcpy(&f, &u, 4);
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        uint64_t u = be64(p + 1);
        double d;
        memcpy(&d, &u, 8);
        return PyFloat_FromDouble(d);
    }
    case 0xd9: case 0xda: case 0xdb: {
        Py_ssize_t h = c == 0xd9 ? 2 : c == 0xda ? 3 : 5;
        PyObject *s = PyUnicode_DecodeUTF8((const char *)p + h, n - h, NULL);
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
        return s;
    }
    case 0xc4: case 0xc5: case 0xc6: {
        Py_ssize_t h = c == 0xc4 ? 2 : c == 0xc5 ? 3 : 5;
        return PyBytes_FromStringAndSize((const char *)p + h, n - h);
    }
    default:
        return NULL;
    }
}

static int rec_traverse(PyObject *self_, visitproc visit, void *arg) {
    Record *self = (Record *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->decode);
    if (self->vals != NULL)
        for (Py_ssize_t i = 0; i < self->len; i++) Py_VISIT(self->vals[i]);
    return 0;
}

static int rec_clear(PyObject *self_) {
    Record *self = (Record *)self_;
    Py_CLEAR(self->decode);
    if (self->vals != NULL)
        for (Py_ssize_t i = 0; i < self->len; i++) Py_CLEAR(self->vals[i]);
    return 0;
}

static void rec_dealloc(PyObject *self) { gc_dealloc(self, rec_clear); }

static Py_ssize_t rec_length(PyObject *self) { return ((Record *)self)->len; }

static PyObject *rec_item(PyObject *self_, Py_ssize_t i) {
    Record *self = (Record *)self_;
    if (i < 0 || i >= self->len) {
        PyErr_SetString(PyExc_IndexError, "record index out of range");
        return NULL;
    }
    PyObject *v = self->vals[i];
    if (v != NULL) return Py_NewRef(v);
    /* i < stored: the positions past it hold their defaults from the start. */
    const unsigned char *p = self->raw + self->offs[i], *e = self->raw + self->offs[i + 1];
    v = mp_scalar(p, e);
    if (v == NULL) {
        if (PyErr_Occurred()) return NULL;
        PyObject *decode = self->decode;
        if (decode == NULL) {
            PyErr_SetString(PyExc_ValueError, "record cleared");
            return NULL;
        }
        PyObject *b = PyBytes_FromStringAndSize((const char *)p, e - p);
        if (b == NULL) return NULL;
        Py_INCREF(decode); /* held across the call: it may run any code */
        v = PyObject_CallFunctionObjArgs(decode, b, NULL);
        Py_DECREF(decode);
        Py_DECREF(b);
        if (v == NULL) return NULL;
        if (self->vals[i] != NULL) { /* filled meanwhile (re-entered): keep that */
            Py_DECREF(v);
            return Py_NewRef(self->vals[i]);
        }
    }
    self->vals[i] = v;
    return Py_NewRef(v);
}

static PyObject *rec_as_list(Record *self) {
    PyObject *out = PyList_New(self->len);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->len; i++) {
        PyObject *v = rec_item((PyObject *)self, i);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SetItem(out, i, v); /* steals */
    }
    return out;
}

/* rec[i] (negative i from the end, as a list) or rec[a:b] (a list). */
static PyObject *rec_subscript(PyObject *self, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += ((Record *)self)->len;
        return rec_item(self, i);
    }
    if (PySlice_Check(key)) {
        PyObject *l = rec_as_list((Record *)self);
        if (l == NULL) return NULL;
        PyObject *r = PyObject_GetItem(l, key);
        Py_DECREF(l);
        return r;
    }
    PyErr_Format(PyExc_TypeError, "record indices must be integers or slices, not %R",
                 (PyObject *)Py_TYPE(key));
    return NULL;
}

static PyObject *rec_richcompare(PyObject *a, PyObject *b, int op) {
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(a, (PyTypeObject *)Record_Type)
        || !(PyList_Check(b) || PyObject_TypeCheck(b, (PyTypeObject *)Record_Type)))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *la = rec_as_list((Record *)a);
    if (la == NULL) return NULL;
    PyObject *lb = PyList_Check(b) ? Py_NewRef(b) : rec_as_list((Record *)b);
    if (lb == NULL) {
        Py_DECREF(la);
        return NULL;
    }
    PyObject *r = PyObject_RichCompare(la, lb, op);
    Py_DECREF(la);
    Py_DECREF(lb);
    return r;
}

static PyObject *rec_repr(PyObject *self) {
    PyObject *l = rec_as_list((Record *)self);
    if (l == NULL) return NULL;
    PyObject *r = PyUnicode_FromFormat("Record(%R)", l);
    Py_DECREF(l);
    return r;
}

static PyObject *rec_tolist(PyObject *self, PyObject *unused) {
    (void)unused;
    return rec_as_list((Record *)self);
}

static PyMethodDef rec_methods[] = {
    {"tolist", rec_tolist, METH_NOARGS, "The values as a list (every field decoded)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rec_slots[] = {
    {Py_tp_doc, "A stored record decoded field by field as it is read (see speedups.c)."},
    {Py_sq_length, rec_length},
    {Py_sq_item, rec_item},
    {Py_mp_length, rec_length},
    {Py_mp_subscript, rec_subscript},
    {Py_tp_richcompare, rec_richcompare},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_repr, rec_repr},
    {Py_tp_methods, rec_methods},
    {Py_tp_traverse, rec_traverse},
    {Py_tp_clear, rec_clear},
    {Py_tp_dealloc, rec_dealloc},
    {0, NULL},
};

static PyType_Spec rec_spec = {
    "realmpy._speedups.Record",
    sizeof(Record),
    1,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    rec_slots,
};

/* A Record of the record at [p, e) (exactly one msgpack object), or NULL
 * with `error` set if it is not a well-formed array. */
static PyObject *new_record(const unsigned char *p, const unsigned char *e, Py_ssize_t n,
                            PyObject *fill, PyObject *decode, PyObject *error) {
    const unsigned char *q = p;
    uint64_t stored;
    unsigned c = q < e ? *q : 0;
    if (c >= 0x90 && c <= 0x9f) {
        stored = c & 0x0f;
        q += 1;
    } else if (c == 0xdc && e - q >= 3) {
        stored = be16(q + 1);
        q += 3;
    } else if (c == 0xdd && e - q >= 5) {
        stored = be32(q + 1);
        q += 5;
    } else {
        PyErr_SetString(error, "corrupt object record: not an array");
        return NULL;
    }
    if ((uint64_t)(e - p) >= UINT32_MAX || stored > (uint64_t)(e - q)) {
        PyErr_SetString(error, "corrupt object record: truncated");
        return NULL;
    }
    Py_ssize_t ns = (Py_ssize_t)stored, len = ns > n ? ns : n;
    Py_ssize_t raw = e - p;
    Py_ssize_t extra = len * (Py_ssize_t)sizeof(PyObject *) + (ns + 1) * 4 + raw;
    allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)Record_Type, Py_tp_alloc);
    Record *r = (Record *)alloc((PyTypeObject *)Record_Type, extra);
    if (r == NULL) return NULL;
    r->len = len;
    r->stored = ns;
    r->vals = (PyObject **)((char *)r + sizeof(Record));
    r->offs = (uint32_t *)(r->vals + len);
    unsigned char *rawp = (unsigned char *)(r->offs + ns + 1);
    memcpy(rawp, p, (size_t)raw);
    r->raw = rawp;
    for (Py_ssize_t i = 0; i < len; i++) r->vals[i] = NULL;
    r->decode = Py_NewRef(decode);
    const unsigned char *base = p;
    for (Py_ssize_t i = 0; i < ns; i++) {
        r->offs[i] = (uint32_t)(q - base);
        q = mp_skip_field(q, e);
        if (q == NULL) {
            Py_DECREF(r);
            PyErr_SetString(error, "corrupt object record: damaged field");
            return NULL;
        }
    }
    r->offs[ns] = (uint32_t)(q - base);
    if (q != e) {
        Py_DECREF(r);
        PyErr_SetString(error, "corrupt object record: extra data");
        return NULL;
    }
    for (Py_ssize_t i = ns; i < n; i++) {
        PyObject *d = PyList_GetItem(fill, i);
        if (d == NULL) {
            Py_DECREF(r);
            return NULL;
        }
        r->vals[i] = Py_NewRef(d);
    }
    return (PyObject *)r;
}

static int record_args(PyObject *const *args, Py_ssize_t *n) {
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "data must be bytes, not %R", (PyObject *)Py_TYPE(args[0]));
        return -1;
    }
    if (!PyLong_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "n must be an int, not %R", (PyObject *)Py_TYPE(args[1]));
        return -1;
    }
    *n = PyLong_AsSsize_t(args[1]);
    if (*n == -1 && PyErr_Occurred()) return -1;
    if (*n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return -1;
    }
    if (!PyList_CheckExact(args[2]) || PyList_Size(args[2]) != *n) {
        PyErr_SetString(PyExc_TypeError, "fill must be a list of n defaults");
        return -1;
    }
    if (!PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "decode must be callable");
        return -1;
    }
    if (!PyType_Check(args[4])
        || !PyType_IsSubtype((PyTypeObject *)args[4], (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "error must be an exception class");
        return -1;
    }
    return 0;
}

/* record(data, n, fill, decode, error) -> Record */
static PyObject *sp_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Py_ssize_t n;
    if (nargs_is(nargs, 5, "record") || record_args(args, &n)) return NULL;
    const unsigned char *p = (const unsigned char *)PyBytes_AsString(args[0]);
    if (p == NULL) return NULL;
    return new_record(p, p + PyBytes_Size(args[0]), n, args[2], args[3], args[4]);
}

/* record_pairs(data, n, fill, decode, error) -> [(key, Record), ...]
 * of a batch buffer (a msgpack array of bin keys and raw records, as the
 * engine's RP_BATCH_RAW_VALUES batches are); `error` if it is damaged. */
static PyObject *sp_record_pairs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Py_ssize_t n;
    if (nargs_is(nargs, 5, "record_pairs") || record_args(args, &n)) return NULL;
    PyObject *error = args[4];
    const unsigned char *p = (const unsigned char *)PyBytes_AsString(args[0]);
    if (p == NULL) return NULL;
    const unsigned char *e = p + PyBytes_Size(args[0]);
    uint64_t count;
    unsigned c = p < e ? *p : 0;
    if (c >= 0x90 && c <= 0x9f) {
        count = c & 0x0f;
        p += 1;
    } else if (c == 0xdc && e - p >= 3) {
        count = be16(p + 1);
        p += 3;
    } else if (c == 0xdd && e - p >= 5) {
        count = be32(p + 1);
        p += 5;
    } else {
        PyErr_SetString(error, "corrupt batch: not an array");
        return NULL;
    }
    if (count % 2 || count > (uint64_t)(e - p)) {
        PyErr_SetString(error, "corrupt batch: bad length");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)count; i += 2) {
        const unsigned char *q = mp_skip(p, e);
        PyObject *k = NULL;
        if (q != NULL && (*p == 0xc4 || *p == 0xc5 || *p == 0xc6)) k = mp_scalar(p, q);
        else if (q != NULL) PyErr_SetString(error, "corrupt batch: a key is not bytes");
        if (k == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(error, "corrupt batch: damaged key");
            Py_DECREF(out);
            return NULL;
        }
        p = q;
        q = mp_skip(p, e);
        PyObject *r = q == NULL ? NULL : new_record(p, q, n, args[2], args[3], error);
        if (r == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(error, "corrupt batch: damaged record");
            Py_DECREF(k);
            Py_DECREF(out);
            return NULL;
        }
        PyObject *pair = PyTuple_Pack(2, k, r);
        Py_DECREF(k);
        Py_DECREF(r);
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(pair);
        p = q;
    }
    if (p != e) {
        Py_DECREF(out);
        PyErr_SetString(error, "corrupt batch: extra data");
        return NULL;
    }
    return out;
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

static PyType_Spec pb_spec = {
    "realmpy._speedups.PropertyBase",
    sizeof(PropertyBase),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    pb_slots,
};

/* ---- pack_keys: the rp_get_many key buffer ------------------------------------- */

/* pack_keys(keys: list[bytes]) -> bytes: each key as [u32 little-endian
 * length][key bytes], concatenated. */
static PyObject *sp_pack_keys(PyObject *module, PyObject *keys) {
    (void)module;
    if (!PyList_Check(keys)) {
        PyErr_Format(PyExc_TypeError, "pack_keys takes a list of bytes, not %R",
                     (PyObject *)Py_TYPE(keys));
        return NULL;
    }
    Py_ssize_t n = PyList_Size(keys), total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GetItem(keys, i);
        if (check_key(k)) return NULL;
        Py_ssize_t len = PyBytes_Size(k);
        if (len > (Py_ssize_t)UINT32_MAX || total > PY_SSIZE_T_MAX - 4 - len) {
            PyErr_SetString(PyExc_OverflowError, "pack_keys: keys too large");
            return NULL;
        }
        total += 4 + len;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) return NULL;
    char *p = PyBytes_AsString(out);
    if (p == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    char *end = p + total;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GetItem(keys, i); /* the list cannot change here */
        char *src;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(k, &src, &len) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (end - p < 4 + len) { /* never: sizes checked above */
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError, "pack_keys: keys changed");
            return NULL;
        }
        uint32_t l = (uint32_t)len;
        p[0] = (char)(l & 0xff);
        p[1] = (char)((l >> 8) & 0xff);
        p[2] = (char)((l >> 16) & 0xff);
        p[3] = (char)((l >> 24) & 0xff);
        memcpy(p + 4, src, (size_t)len);
        p += 4 + len;
    }
    return out;
}

/* ---- ModelInit: a model's generated __init__ ------------------------------------ */

/* How __init__ fills a property (schema._REQUIRED ...). */
enum { K_REQUIRED = 0, K_PLAIN_DEFAULT = 1, K_FACTORY = 2, K_COPIED_DEFAULT = 3 };
/* How a value is checked before its validator is called. */
enum { F_NONE = 0, F_INT64 = 1, F_EXACT = 2 };

typedef struct {
    PyObject *name;   /* property name (str)                              */
    PyObject *type;   /* F_EXACT: the exact type that needs no validator  */
    PyObject *check;  /* validator: value -> stored value, or raises      */
    PyObject *dflt;   /* default (K_PLAIN/K_COPIED) or factory (K_FACTORY) */
    int kind, fast;
} InitField;

typedef struct {
    PyObject_HEAD
    PyObject *cls;       /* the model class this __init__ is for            */
    PyObject *missing;   /* missing(cls, name): raises ObjectTypeError       */
    PyObject *unknown;   /* unknown(cls, extra: dict): raises                 */
    PyObject *fallback;  /* called as fallback(self, *args, **kwargs) for an
                            instance of another class (a subclass)           */
    PyObject *qualname;
    PyObject *signature; /* __signature__ (inspect), set by schema.py       */
    Py_ssize_t n;
    InitField *f;
} ModelInit;

static PyObject *ModelInit_Type;
static PyObject *method_type; /* types.MethodType */

static int mi_traverse(PyObject *self_, visitproc visit, void *arg) {
    ModelInit *self = (ModelInit *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->cls);
    Py_VISIT(self->missing);
    Py_VISIT(self->unknown);
    Py_VISIT(self->fallback);
    Py_VISIT(self->qualname);
    Py_VISIT(self->signature);
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_VISIT(self->f[i].name);
        Py_VISIT(self->f[i].type);
        Py_VISIT(self->f[i].check);
        Py_VISIT(self->f[i].dflt);
    }
    return 0;
}

static int mi_clear(PyObject *self_) {
    ModelInit *self = (ModelInit *)self_;
    Py_CLEAR(self->cls);
    Py_CLEAR(self->missing);
    Py_CLEAR(self->unknown);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->qualname);
    Py_CLEAR(self->signature);
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_CLEAR(self->f[i].name);
        Py_CLEAR(self->f[i].type);
        Py_CLEAR(self->f[i].check);
        Py_CLEAR(self->f[i].dflt);
    }
    return 0;
}

static void mi_dealloc(PyObject *self_) {
    ModelInit *self = (ModelInit *)self_;
    PyTypeObject *tp = Py_TYPE(self_);
    PyObject_GC_UnTrack(self_);
    mi_clear(self_);
    PyMem_Free(self->f);
    self->f = NULL;
    self->n = 0;
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self_);
    Py_DECREF(tp);
}

/* ModelInit(cls, fields, missing, unknown, fallback, qualname) where fields
 * is a tuple of (name, kind, fast, exact_type_or_None, check, default). */
static PyObject *mi_new(PyTypeObject *tp, PyObject *args, PyObject *kwds) {
    PyObject *cls, *fields, *missing, *unknown, *fallback, *qualname;
    if (kwds != NULL && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "ModelInit() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!O!OOOU:ModelInit", &PyType_Type, &cls, &PyTuple_Type, &fields,
                          &missing, &unknown, &fallback, &qualname))
        return NULL;
    if (!PyCallable_Check(missing) || !PyCallable_Check(unknown) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "ModelInit: missing, unknown and fallback must be callable");
        return NULL;
    }
    Py_ssize_t n = PyTuple_Size(fields);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GetItem(fields, i);
        if (!PyTuple_Check(e) || PyTuple_Size(e) != 6) {
            PyErr_SetString(PyExc_TypeError,
                            "ModelInit: each field is (name, kind, fast, type, check, default)");
            return NULL;
        }
        PyObject *name = PyTuple_GetItem(e, 0), *kind = PyTuple_GetItem(e, 1);
        PyObject *fast = PyTuple_GetItem(e, 2), *type = PyTuple_GetItem(e, 3);
        PyObject *check = PyTuple_GetItem(e, 4);
        if (!PyUnicode_Check(name) || !PyLong_CheckExact(kind) || !PyLong_CheckExact(fast)
            || !PyCallable_Check(check)) {
            PyErr_SetString(PyExc_TypeError,
                            "ModelInit: a field needs a str name, int kind and fast, a validator");
            return NULL;
        }
        long k = PyLong_AsLong(kind), f = PyLong_AsLong(fast);
        if (PyErr_Occurred()) return NULL;
        if (k < K_REQUIRED || k > K_COPIED_DEFAULT || f < F_NONE || f > F_EXACT) {
            PyErr_SetString(PyExc_ValueError, "ModelInit: bad field kind or fast mode");
            return NULL;
        }
        if (f == F_EXACT && !PyType_Check(type)) {
            PyErr_SetString(PyExc_TypeError, "ModelInit: an exact check needs a type");
            return NULL;
        }
        if (k == K_FACTORY && !PyCallable_Check(PyTuple_GetItem(e, 5))) {
            PyErr_SetString(PyExc_TypeError, "ModelInit: a factory must be callable");
            return NULL;
        }
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    ModelInit *self = (ModelInit *)alloc(tp, 0);
    if (self == NULL) return NULL;
    self->f = PyMem_Calloc(n ? (size_t)n : 1, sizeof(InitField));
    if (self->f == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GetItem(fields, i);
        InitField *fl = &self->f[i];
        fl->name = Py_NewRef(PyTuple_GetItem(e, 0));
        fl->kind = (int)PyLong_AsLong(PyTuple_GetItem(e, 1));
        fl->fast = (int)PyLong_AsLong(PyTuple_GetItem(e, 2));
        fl->type = Py_NewRef(PyTuple_GetItem(e, 3));
        fl->check = Py_NewRef(PyTuple_GetItem(e, 4));
        fl->dflt = Py_NewRef(PyTuple_GetItem(e, 5));
    }
    self->cls = Py_NewRef(cls);
    self->missing = Py_NewRef(missing);
    self->unknown = Py_NewRef(unknown);
    self->fallback = Py_NewRef(fallback);
    self->qualname = Py_NewRef(qualname);
    return (PyObject *)self;
}

/* The value as stored: v itself when its type needs no validator, else
 * check(v).  Steals v; returns a new reference or NULL. */
static PyObject *mi_check(InitField *fl, PyObject *v) {
    if (fl->fast == F_INT64 && PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        (void)x;
        if (!overflow && !PyErr_Occurred()) return v;
        PyErr_Clear();
    } else if (fl->fast == F_EXACT && (PyObject *)Py_TYPE(v) == fl->type) {
        return v;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(fl->check, v, NULL);
    Py_DECREF(v);
    return r;
}

static int is_field_name(ModelInit *self, PyObject *key) {
    for (Py_ssize_t i = 0; i < self->n; i++) {
        if (self->f[i].name == key) return 1;
    }
    for (Py_ssize_t i = 0; i < self->n; i++) {
        int eq = PyObject_RichCompareBool(self->f[i].name, key, Py_EQ);
        if (eq != 0) return eq; /* 1, or -1 on error */
    }
    return 0;
}

static PyObject *mi_call(PyObject *self_, PyObject *args, PyObject *kwargs) {
    ModelInit *self = (ModelInit *)self_;
    Py_ssize_t nargs = PyTuple_Size(args);
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%U() missing its instance argument", self->qualname);
        return NULL;
    }
    PyObject *obj = PyTuple_GetItem(args, 0);
    if ((PyObject *)Py_TYPE(obj) != self->cls) return PyObject_Call(self->fallback, args, kwargs);
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%U() takes 1 positional argument but %zd were given",
                     self->qualname, nargs);
        return NULL;
    }
    if (kwargs != NULL && !PyDict_Check(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "keyword arguments must be a dict");
        return NULL;
    }
    PyObject *stack[16];
    PyObject **vals = self->n <= 16 ? stack : PyMem_Calloc((size_t)self->n, sizeof(PyObject *));
    if (vals == NULL) return PyErr_NoMemory();
    Py_ssize_t done = 0, used = 0;
    PyObject *result = NULL;
    for (; done < self->n; done++) {
        InitField *fl = &self->f[done];
        PyObject *v = kwargs == NULL ? NULL : PyDict_GetItemWithError(kwargs, fl->name);
        if (v == NULL && PyErr_Occurred()) goto out;
        if (v != NULL) {
            used++;
            Py_INCREF(v);
        }
        switch (fl->kind) {
        case K_REQUIRED:
            if (v == NULL) {
                PyObject *r = PyObject_CallFunctionObjArgs(self->missing, self->cls, fl->name, NULL);
                Py_XDECREF(r);
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_TypeError, "missing required field %R", fl->name);
                goto out;
            }
            v = mi_check(fl, v);
            break;
        case K_PLAIN_DEFAULT:
            if (v == NULL) {
                v = Py_NewRef(fl->dflt);
            } else if (v != fl->dflt) {
                v = mi_check(fl, v);
            }
            break;
        case K_FACTORY:
            if (v == NULL) {
                v = PyObject_CallNoArgs(fl->dflt);
                if (v == NULL) goto out;
            }
            v = mi_check(fl, v);
            break;
        default: /* K_COPIED_DEFAULT */
            if (v == NULL) v = Py_NewRef(fl->dflt);
            v = mi_check(fl, v);
            break;
        }
        if (v == NULL) goto out;
        vals[done] = v;
    }
    if (kwargs != NULL && used != PyDict_Size(kwargs)) {
        PyObject *extra = PyDict_New();
        if (extra == NULL) goto out;
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(kwargs, &pos, &k, &v)) {
            int known = is_field_name(self, k);
            if (known < 0 || (!known && PyDict_SetItem(extra, k, v) < 0)) {
                Py_DECREF(extra);
                goto out;
            }
        }
        PyObject *r = PyObject_CallFunctionObjArgs(self->unknown, self->cls, extra, NULL);
        Py_DECREF(extra);
        Py_XDECREF(r);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "unknown fields");
        goto out;
    }
    PyObject *d = instance_dict(obj);
    if (d == NULL) goto out;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        if (PyDict_SetItem(d, self->f[i].name, vals[i]) < 0) {
            Py_DECREF(d);
            goto out;
        }
    }
    Py_DECREF(d);
    result = Py_NewRef(Py_None);
out:
    for (Py_ssize_t i = 0; i < done; i++) Py_DECREF(vals[i]);
    if (vals != stack) PyMem_Free(vals);
    return result;
}

static PyObject *mi_descr_get(PyObject *self, PyObject *obj, PyObject *owner) {
    (void)owner;
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyObject_CallFunctionObjArgs(method_type, self, obj, NULL);
}

static PyMemberDef mi_members[] = {
    {"__qualname__", T_OBJECT, offsetof(ModelInit, qualname), READONLY, NULL},
    {"__model__", T_OBJECT, offsetof(ModelInit, cls), READONLY, "The model class."},
    {"__signature__", T_OBJECT, offsetof(ModelInit, signature), 0,
     "The inspect.Signature of the generated Python __init__ (None: unknown)."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *mi_get_name(PyObject *self, void *closure) {
    (void)self;
    (void)closure;
    return PyUnicode_FromString("__init__");
}

static PyGetSetDef mi_getset[] = {
    {"__name__", mi_get_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mi_slots[] = {
    {Py_tp_doc, "A model's __init__: keyword-only properties, checked as the generated "
                "Python __init__ (schema._compile_init_py) checks them."},
    {Py_tp_new, mi_new},
    {Py_tp_call, mi_call},
    {Py_tp_descr_get, mi_descr_get},
    {Py_tp_members, mi_members},
    {Py_tp_getset, mi_getset},
    {Py_tp_traverse, mi_traverse},
    {Py_tp_clear, mi_clear},
    {Py_tp_dealloc, mi_dealloc},
    {0, NULL},
};

static PyType_Spec mi_spec = {
    "realmpy._speedups.ModelInit",
    sizeof(ModelInit),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR,
    mi_slots,
};

/* ---- index and record helpers ------------------------------------------------------ */

/* key_suffixes(pairs, n) -> list[bytes]: key[n:] of each (key, value) pair
 * (an index scan's primary keys after the encoded value prefix). */
static PyObject *sp_key_suffixes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "key_suffixes")) return NULL;
    Py_ssize_t n;
    if (size_arg(args[1], "n", &n)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "key_suffixes: n must be >= 0");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(it);
        return NULL;
    }
    PyObject *pair;
    while ((pair = PyIter_Next(it)) != NULL) {
        PyObject *k = NULL;
        if (PyTuple_Check(pair) && PyTuple_Size(pair) == 2) {
            k = PyTuple_GetItem(pair, 0);
            Py_XINCREF(k);
        } else {
            PyErr_Format(PyExc_TypeError, "key_suffixes: expected (key, value) pairs, got %R",
                         (PyObject *)Py_TYPE(pair));
        }
        Py_DECREF(pair);
        if (k == NULL) goto fail;
        if (check_key(k)) {
            Py_DECREF(k);
            goto fail;
        }
        char *src;
        Py_ssize_t len;
        PyObject *suffix = NULL;
        if (PyBytes_AsStringAndSize(k, &src, &len) == 0)
            suffix = n < len ? PyBytes_FromStringAndSize(src + n, len - n)
                             : PyBytes_FromStringAndSize("", 0);
        Py_DECREF(k);
        if (suffix == NULL) goto fail;
        int rc = PyList_Append(out, suffix);
        Py_DECREF(suffix);
        if (rc < 0) goto fail;
    }
    if (PyErr_Occurred()) goto fail;
    Py_DECREF(it);
    return out;
fail:
    Py_DECREF(it);
    Py_DECREF(out);
    return NULL;
}

/* all_full(recs, n) -> bool: every item is None or a list of >= n items
 * (decoded records that need no padding). */
static PyObject *sp_all_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "all_full")) return NULL;
    PyObject *recs = args[0];
    if (need_list(recs, "recs")) return NULL;
    Py_ssize_t n;
    if (size_arg(args[1], "n", &n)) return NULL;
    Py_ssize_t len = PyList_Size(recs);
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *r = PyList_GetItem(recs, i);
        if (r == NULL) return NULL;
        if (r == Py_None) continue;
        if (!PyList_CheckExact(r) || PyList_Size(r) < n) Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* found_rows(keys, recs) -> [(key, rec) for key, rec in zip(keys, recs)
 * if rec is not None]; ValueError if the lengths differ. */
static PyObject *sp_found_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "found_rows")) return NULL;
    PyObject *keys = args[0], *recs = args[1];
    if (!PyList_Check(keys) || !PyList_Check(recs)) {
        PyErr_SetString(PyExc_TypeError, "found_rows(keys: list, recs: list)");
        return NULL;
    }
    Py_ssize_t n = PyList_Size(keys);
    if (PyList_Size(recs) != n) {
        PyErr_SetString(PyExc_ValueError, "found_rows: keys and recs differ in length");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GetItem(recs, i);
        if (r == Py_None) continue;
        PyObject *k = PyList_GetItem(keys, i);
        if (k == NULL || r == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        Py_INCREF(k);
        Py_INCREF(r);
        PyObject *pair = PyTuple_Pack(2, k, r);
        Py_DECREF(k);
        Py_DECREF(r);
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return out;
}

/* unmanaged_dicts(objs) -> list[dict] | None: the instance dicts of objs
 * when none of them has a (non-None) _rp_store entry, else None. */
static PyObject *sp_unmanaged_dicts(PyObject *module, PyObject *objs) {
    (void)module;
    if (!PyList_Check(objs)) {
        PyErr_Format(PyExc_TypeError, "unmanaged_dicts takes a list, not %R",
                     (PyObject *)Py_TYPE(objs));
        return NULL;
    }
    Py_ssize_t n = PyList_Size(objs);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GetItem(objs, i);
        Py_XINCREF(o);
        PyObject *d = o == NULL ? NULL : instance_dict(o);
        int managed = d != NULL && is_model(o) && ((ModelBase *)o)->store != NULL;
        Py_XDECREF(o);
        if (d == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SetItem(out, i, d); /* steals */
        if (managed) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
    }
    return out;
}

/* rows_full(rows, n) -> bool: every row is a (key, record) tuple whose
 * record is a list of at least n items (no padding needed). */
static PyObject *sp_rows_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "rows_full")) return NULL;
    PyObject *rows = args[0];
    if (need_list(rows, "rows")) return NULL;
    Py_ssize_t n;
    if (size_arg(args[1], "n", &n)) return NULL;
    Py_ssize_t len = PyList_Size(rows);
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *row = PyList_GetItem(rows, i);
        if (row == NULL) return NULL;
        if (!PyTuple_CheckExact(row) || PyTuple_Size(row) != 2) Py_RETURN_FALSE;
        PyObject *r = PyTuple_GetItem(row, 1);
        if (r == NULL) return NULL;
        if (Py_IS_TYPE(r, (PyTypeObject *)Record_Type)) {
            if (((Record *)r)->len < n) Py_RETURN_FALSE;
        } else if (!PyList_CheckExact(r) || PyList_Size(r) < n) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* ---- bulk writes ------------------------------------------------------------------ */

static void put_u32le(char *p, uint32_t v) {
    p[0] = (char)(v & 0xff);
    p[1] = (char)((v >> 8) & 0xff);
    p[2] = (char)((v >> 16) & 0xff);
    p[3] = (char)((v >> 24) & 0xff);
}

/* pack_records(keys, values, start, max_bytes) -> (bytes, stop): records
 * start.. as rp_put_many wants them, [u32 klen][u32 vlen][key][value]
 * (little endian; values None: every value empty), as many as fit in about
 * max_bytes of keys and values (at least one). */
static PyObject *sp_pack_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 4, "pack_records")) return NULL;
    PyObject *keys = args[0], *values = args[1];
    if (!PyList_Check(keys) || (values != Py_None && !PyList_Check(values))) {
        PyErr_SetString(PyExc_TypeError, "pack_records: keys and values must be lists");
        return NULL;
    }
    if (!PyLong_Check(args[2]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "pack_records: start and max_bytes must be ints");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[3]);
    if (max_bytes == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_Size(keys);
    if (values != Py_None && PyList_Size(values) != n) {
        PyErr_SetString(PyExc_ValueError, "pack_records: keys and values differ in length");
        return NULL;
    }
    if (start < 0 || start >= n || max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "pack_records: start out of range");
        return NULL;
    }
    /* Pass 1: how many records, and the buffer size. */
    Py_ssize_t stop = start, data = 0, total = 0;
    while (stop < n) {
        PyObject *k = PyList_GetItem(keys, stop);
        PyObject *v = values == Py_None ? NULL : PyList_GetItem(values, stop);
        if (k == NULL || (values != Py_None && v == NULL)) return NULL;
        if (!PyBytes_CheckExact(k) || (v != NULL && !PyBytes_CheckExact(v))) {
            PyErr_SetString(PyExc_TypeError, "pack_records: keys and values must be bytes");
            return NULL;
        }
        Py_ssize_t kl = PyBytes_Size(k), vl = v == NULL ? 0 : PyBytes_Size(v);
        if ((size_t)kl > UINT32_MAX || (size_t)vl > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "pack_records: record too large");
            return NULL;
        }
        if (stop > start && data + kl + vl > max_bytes) break;
        if (total > PY_SSIZE_T_MAX - 8 - kl - vl) {
            PyErr_SetString(PyExc_OverflowError, "pack_records: batch too large");
            return NULL;
        }
        data += kl + vl;
        total += 8 + kl + vl;
        stop++;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) return NULL;
    char *p = PyBytes_AsString(out);
    if (p == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    /* Pass 2: copy (no Python code ran since pass 1: the lists are as
     * they were). */
    for (Py_ssize_t i = start; i < stop; i++) {
        PyObject *k = PyList_GetItem(keys, i);
        PyObject *v = values == Py_None ? NULL : PyList_GetItem(values, i);
        char *kp, *vp = NULL;
        Py_ssize_t kl, vl = 0;
        if (k == NULL || PyBytes_AsStringAndSize(k, &kp, &kl) < 0
            || (v != NULL && PyBytes_AsStringAndSize(v, &vp, &vl) < 0)) {
            Py_DECREF(out);
            return NULL;
        }
        if (total < 8 + kl + vl) { /* the lists changed under us: never overrun */
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError, "pack_records: keys or values changed");
            return NULL;
        }
        total -= 8 + kl + vl;
        put_u32le(p, (uint32_t)kl);
        put_u32le(p + 4, (uint32_t)vl);
        memcpy(p + 8, kp, (size_t)kl);
        if (vl) memcpy(p + 8 + kl, vp, (size_t)vl);
        p += 8 + kl + vl;
    }
    PyObject *res = Py_BuildValue("(Nn)", out, stop);
    return res;
}

/* columns_ok(keys, values, max_key) -> bool: every key is bytes of 1 to
 * max_key bytes and values is None or a list of bytes (exact types) of the
 * same length; False sends the caller to its checks, which name the
 * culprit. */
static PyObject *sp_columns_ok(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 3, "columns_ok")) return NULL;
    PyObject *keys = args[0], *values = args[1];
    if (!PyList_Check(keys) || (values != Py_None && !PyList_Check(values))
        || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "columns_ok(keys: list, values: list | None, max_key)");
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[2]);
    if (max_key == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_Size(keys);
    if (values != Py_None && PyList_Size(values) != n) Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GetItem(keys, i);
        if (k == NULL || !PyBytes_CheckExact(k)) Py_RETURN_FALSE;
        Py_ssize_t len = PyBytes_Size(k);
        if (len < 1 || len > max_key) Py_RETURN_FALSE;
        if (values != Py_None) {
            PyObject *v = PyList_GetItem(values, i);
            if (v == NULL || !PyBytes_CheckExact(v)) Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* codec's int key (realmpy/codec.py, KEY_FORMAT 2) into dst[0..9);
 * returns its length, 1..9.  Z = 0x1C; n = bytes of |x| without leading
 * zeros: 0 -> Z; x > 0 -> Z + n, then x in n big-endian bytes; x < 0 ->
 * Z - n, then the low n bytes of x - 1 (== x - 1 + 256^n: the one's
 * complement of |x|), so byte order is value order and the first bytes
 * differ between keys (the engine's page slots compare 4-byte heads). */
#define INT_KEY_ZERO 0x1C
static Py_ssize_t int_key(unsigned char *dst, long long x) {
    /* |x| in unsigned arithmetic: defined for LLONG_MIN too */
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    int n = 0;
    for (uint64_t m = mag; m != 0; m >>= 8) n++;
    uint64_t body = x < 0 ? (uint64_t)x - 1 : (uint64_t)x;
    dst[0] = (unsigned char)(x < 0 ? INT_KEY_ZERO - n : INT_KEY_ZERO + n);
    for (int i = 0; i < n; i++) dst[1 + i] = (unsigned char)(body >> (8 * (n - 1 - i)));
    return 1 + n;
}

/* int_key(v) -> bytes | None: codec.encode_key(v) for an int of 64 bits
 * (exactly int: codec handles subclasses), else None (the codec then raises
 * or encodes another kind).  One C call instead of the arithmetic of the
 * variable-length form in Python on every find by primary key. */
static PyObject *sp_int_key(PyObject *module, PyObject *v) {
    (void)module;
    if (!PyLong_CheckExact(v)) Py_RETURN_NONE;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return NULL;
    if (overflow) Py_RETURN_NONE;
    unsigned char buf[9];
    return PyBytes_FromStringAndSize((const char *)buf, int_key(buf, x));
}

/* encode_key_list(values) -> list[bytes] | None: codec.encode_key of each
 * value when all are ints of 64 bits, or all are strs without NUL (and
 * valid UTF-8, no surrogates) whose keys fit max_key; None otherwise (the
 * caller's general path then encodes, or names the bad value). */
static PyObject *sp_encode_key_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "encode_key_list")) return NULL;
    PyObject *values = args[0];
    if (need_list(values, "values")) return NULL;
    if (!PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "max_key must be an int");
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[1]);
    if (max_key == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_Size(values);
    if (n == 0) Py_RETURN_NONE;
    int ints = PyLong_CheckExact(PyList_GetItem(values, 0));
    int strs = PyUnicode_CheckExact(PyList_GetItem(values, 0));
    if (!ints && !strs) Py_RETURN_NONE;
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GetItem(values, i), *key = NULL;
        if (ints && PyLong_CheckExact(v)) {
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (x == -1 && PyErr_Occurred()) goto fail;
            if (overflow) goto none;
            unsigned char buf[9];
            key = PyBytes_FromStringAndSize((const char *)buf, int_key(buf, x));
        } else if (strs && PyUnicode_CheckExact(v)) {
            Py_ssize_t len;
            const char *u8 = PyUnicode_AsUTF8AndSize(v, &len);
            if (u8 == NULL) { /* surrogates: the general path */
                PyErr_Clear();
                goto none;
            }
            if (len + 2 > max_key || memchr(u8, 0, (size_t)len) != NULL) goto none;
            key = PyBytes_FromStringAndSize(NULL, len + 2);
            if (key != NULL) {
                char *p = PyBytes_AsString(key);
                if (p == NULL) {
                    Py_CLEAR(key);
                } else {
                    p[0] = 0x30;
                    memcpy(p + 1, u8, (size_t)len);
                    p[len + 1] = 0;
                }
            }
        } else {
            goto none;
        }
        if (key == NULL) goto fail;
        PyList_SetItem(out, i, key); /* steals */
    }
    return out;
none:
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- bulk add: rows, msgpack records and keys ------------------------------------ */

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put_be(char *p, uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; i++) p[i] = (char)((v >> (8 * (nbytes - 1 - i))) & 0xff);
}

static int buf_head(Buf *b, unsigned char tag, uint64_t v, int nbytes) {
    if (buf_reserve(b, 1 + (size_t)nbytes)) return -1;
    b->p[b->len] = (char)tag;
    put_be(b->p + b->len + 1, v, nbytes);
    b->len += 1 + (size_t)nbytes;
    return 0;
}

static int buf_bytes(Buf *b, const char *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* Pack one value exactly as msgpack-python's Packer(use_bin_type=True)
 * does; 1 if the value is not one of the plain types packed here (the
 * caller then falls back to msgpack), -1 on error. */
static int mp_value(Buf *b, PyObject *v) {
    if (v == Py_None) return buf_head(b, 0xc0, 0, 0);
    if (v == Py_True) return buf_head(b, 0xc3, 0, 0);
    if (v == Py_False) return buf_head(b, 0xc2, 0, 0);
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (overflow) return 1;
        if (x < -(1LL << 5)) {
            if (x < -(1LL << 15)) {
                if (x < -(1LL << 31)) return buf_head(b, 0xd3, (uint64_t)x, 8);
                return buf_head(b, 0xd2, (uint64_t)(uint32_t)(int32_t)x, 4);
            }
            if (x < -(1LL << 7)) return buf_head(b, 0xd1, (uint64_t)(uint16_t)(int16_t)x, 2);
            return buf_head(b, 0xd0, (uint64_t)(uint8_t)(int8_t)x, 1);
        }
        if (x < (1LL << 7)) return buf_head(b, (unsigned char)(x & 0xff), 0, 0);
        if (x < (1LL << 16)) {
            if (x < (1LL << 8)) return buf_head(b, 0xcc, (uint64_t)x, 1);
            return buf_head(b, 0xcd, (uint64_t)x, 2);
        }
        if (x < (1LL << 32)) return buf_head(b, 0xce, (uint64_t)x, 4);
        return buf_head(b, 0xcf, (uint64_t)x, 8);
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AsDouble(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return buf_head(b, 0xcb, bits, 8);
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *u8 = PyUnicode_AsUTF8AndSize(v, &n);
        if (u8 == NULL) { /* surrogates: msgpack decides */
            PyErr_Clear();
            return 1;
        }
        size_t len = (size_t)n;
        int rc;
        if (len < 32) rc = buf_head(b, (unsigned char)(0xa0 | len), 0, 0);
        else if (len < 256) rc = buf_head(b, 0xd9, len, 1);
        else if (len < 65536) rc = buf_head(b, 0xda, len, 2);
        else if (len <= UINT32_MAX) rc = buf_head(b, 0xdb, len, 4);
        else return 1;
        return rc ? rc : buf_bytes(b, u8, len);
    }
    if (PyBytes_CheckExact(v)) {
        char *src;
        Py_ssize_t n;
        if (PyBytes_AsStringAndSize(v, &src, &n) < 0) return -1;
        size_t len = (size_t)n;
        int rc;
        if (len < 256) rc = buf_head(b, 0xc4, len, 1);
        else if (len < 65536) rc = buf_head(b, 0xc5, len, 2);
        else if (len <= UINT32_MAX) rc = buf_head(b, 0xc6, len, 4);
        else return 1;
        return rc ? rc : buf_bytes(b, src, len);
    }
    return 1;
}

static int pack_row(PyObject *d, PyObject *names, Py_ssize_t m, PyObject *rows,
                    PyObject *packed, Py_ssize_t i, Buf *bp);

/* pack_rows(dicts, names) -> (rows, packed) | None: for each dict its
 * values at names as a tuple (the record) and that record packed as a
 * msgpack array, byte for byte as codec.pack_plain_rows packs it; None if a
 * name is missing or a value is not a plain scalar (None, bool, int of 64
 * bits, float, str, bytes): the caller's general path handles those. */
static PyObject *sp_pack_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "pack_rows")) return NULL;
    PyObject *dicts = args[0], *names = args[1];
    if (!PyList_Check(dicts) || !PyTuple_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "pack_rows(dicts: list, names: tuple)");
        return NULL;
    }
    Py_ssize_t n = PyList_Size(dicts), m = PyTuple_Size(names);
    for (Py_ssize_t j = 0; j < m; j++) {
        if (!PyUnicode_Check(PyTuple_GetItem(names, j))) {
            PyErr_SetString(PyExc_TypeError, "pack_rows: names must be strs");
            return NULL;
        }
    }
    PyObject *rows = PyList_New(n), *packed = PyList_New(n);
    Buf b = {NULL, 0, 0};
    int fallback = 0;
    if (rows == NULL || packed == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GetItem(dicts, i);
        if (d == NULL) goto fail;
        if (!PyDict_Check(d)) {
            PyErr_SetString(PyExc_TypeError, "pack_rows: dicts must be dicts");
            goto fail;
        }
        /* Owned while used: allocations can run the GC, and with it code
         * that changes the list. */
        Py_INCREF(d);
        int rc = pack_row(d, names, m, rows, packed, i, &b);
        Py_DECREF(d);
        if (rc < 0) goto fail;
        if (rc > 0) {
            fallback = 1;
            goto fail;
        }
    }
    PyMem_Free(b.p);
    return Py_BuildValue("(NN)", rows, packed);
fail:
    PyMem_Free(b.p);
    Py_XDECREF(rows);
    Py_XDECREF(packed);
    if (fallback && !PyErr_Occurred()) Py_RETURN_NONE;
    return NULL;
}

/* One record of pack_rows into rows[i] and packed[i]: 0, 1 (fall back), -1. */
static int pack_row(PyObject *d, PyObject *names, Py_ssize_t m, PyObject *rows,
                    PyObject *packed, Py_ssize_t i, Buf *bp) {
    Buf b = *bp;
    int result = -1;
    {
        PyObject *row = PyTuple_New(m);
        if (row == NULL) goto done;
        if (PyList_SetItem(rows, i, row) < 0) goto done; /* steals; filled below */
        b.len = 0;
        int rc = m < 16 ? buf_head(&b, (unsigned char)(0x90 | m), 0, 0)
                 : m < 65536 ? buf_head(&b, 0xdc, (uint64_t)m, 2)
                             : buf_head(&b, 0xdd, (uint64_t)m, 4);
        if (rc) goto done;
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *v = PyDict_GetItemWithError(d, PyTuple_GetItem(names, j));
            if (v == NULL) {
                if (!PyErr_Occurred()) result = 1;
                goto done;
            }
            Py_INCREF(v);
            PyTuple_SetItem(row, j, v); /* steals */
            rc = mp_value(&b, v);
            if (rc != 0) {
                result = rc;
                goto done;
            }
        }
        PyObject *raw = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
        if (raw == NULL) goto done;
        PyList_SetItem(packed, i, raw);
        result = 0;
    }
done:
    *bp = b;
    return result;
}

/* One codec key (int or str fast path) into b; 1 if v needs the general
 * encoder. */
static int key_value(Buf *b, PyObject *v) {
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (overflow) return 1;
        unsigned char k[9];
        return buf_bytes(b, (const char *)k, (size_t)int_key(k, x));
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *u8 = PyUnicode_AsUTF8AndSize(v, &n);
        if (u8 == NULL) {
            PyErr_Clear();
            return 1;
        }
        if (memchr(u8, 0, (size_t)n) != NULL) return 1;
        if (buf_head(b, 0x30, 0, 0) || buf_bytes(b, u8, (size_t)n)) return -1;
        return buf_head(b, 0x00, 0, 0);
    }
    return 1;
}

/* column_keys(dicts, name, suffixes, max_key) -> list[bytes] | None:
 * codec.encode_key(d[name]) + suffixes[i] (suffixes None: nothing) for
 * each dict, when every value is an int of 64 bits or a str without NUL
 * and every key fits max_key; None otherwise (the general path then
 * encodes, or raises with the value's name). */
static PyObject *sp_column_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 4, "column_keys")) return NULL;
    PyObject *dicts = args[0], *name = args[1], *suffixes = args[2];
    if (!PyList_Check(dicts) || !PyUnicode_Check(name)
        || (suffixes != Py_None && !PyList_Check(suffixes)) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "column_keys(dicts: list, name: str, suffixes: list | None, max_key: int)");
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[3]);
    if (max_key == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_Size(dicts);
    if (suffixes != Py_None && PyList_Size(suffixes) != n) {
        PyErr_SetString(PyExc_ValueError, "column_keys: dicts and suffixes differ in length");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    Buf b = {NULL, 0, 0};
    int fallback = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GetItem(dicts, i);
        if (d == NULL) goto fail;
        if (!PyDict_Check(d)) {
            PyErr_SetString(PyExc_TypeError, "column_keys: dicts must be dicts");
            goto fail;
        }
        Py_INCREF(d);
        PyObject *v = PyDict_GetItemWithError(d, name);
        Py_XINCREF(v);
        Py_DECREF(d);
        if (v == NULL) {
            if (!PyErr_Occurred()) fallback = 1;
            goto fail;
        }
        b.len = 0;
        int rc = key_value(&b, v);
        Py_DECREF(v);
        if (rc < 0) goto fail;
        if (rc > 0 || (Py_ssize_t)b.len > max_key) {
            fallback = 1;
            goto fail;
        }
        if (suffixes != Py_None) {
            PyObject *sfx = PyList_GetItem(suffixes, i);
            char *sp;
            Py_ssize_t sl;
            if (sfx == NULL) goto fail;
            if (!PyBytes_Check(sfx)) {
                PyErr_SetString(PyExc_TypeError, "column_keys: suffixes must be bytes");
                goto fail;
            }
            if (PyBytes_AsStringAndSize(sfx, &sp, &sl) < 0 || buf_bytes(&b, sp, (size_t)sl) < 0)
                goto fail;
            if ((Py_ssize_t)b.len > max_key) {
                fallback = 1;
                goto fail;
            }
        }
        PyObject *key = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
        if (key == NULL) goto fail;
        PyList_SetItem(out, i, key);
    }
    PyMem_Free(b.p);
    return out;
fail:
    PyMem_Free(b.p);
    Py_DECREF(out);
    if (fallback && !PyErr_Occurred()) Py_RETURN_NONE;
    return NULL;
}

/* strictly_increasing(keys) -> bool: each bytes key > the one before (so
 * none repeats). */
static PyObject *sp_strictly_increasing(PyObject *module, PyObject *keys) {
    (void)module;
    if (!PyList_Check(keys)) {
        PyErr_Format(PyExc_TypeError, "strictly_increasing takes a list of bytes, not %R",
                     (PyObject *)Py_TYPE(keys));
        return NULL;
    }
    Py_ssize_t n = PyList_Size(keys);
    char *prev = NULL;
    Py_ssize_t plen = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GetItem(keys, i);
        char *p;
        Py_ssize_t len;
        if (k == NULL || check_key(k) || PyBytes_AsStringAndSize(k, &p, &len) < 0) return NULL;
        if (prev != NULL) {
            Py_ssize_t common = len < plen ? len : plen;
            int c = memcmp(prev, p, (size_t)common);
            if (c > 0 || (c == 0 && plen >= len)) Py_RETURN_FALSE;
        }
        prev = p;
        plen = len;
    }
    Py_RETURN_TRUE;
}

/* ---- module ------------------------------------------------------------------------ */

static PyMethodDef sp_methods[] = {
    {"make_object", (PyCFunction)(void (*)(void))sp_make_object, METH_FASTCALL,
     "make_object(cls, realm, key, rec, stamp, pos): a managed object of cls "
     "with key, caching rec (unless None) as read at stamp."},
    {"iter_objects", (PyCFunction)(void (*)(void))sp_iter_objects, METH_FASTCALL,
     "iter_objects(cls, realm, rows, stamp, pos): an iterator making one managed "
     "object per (key, rec) row, as they are asked for."},
    {"manage", sp_manage, METH_VARARGS,
     "manage(objs, realm, keys, recs, stamp, pos): make existing objects "
     "managed by realm, each caching its rec."},
    {"key_suffixes", (PyCFunction)(void (*)(void))sp_key_suffixes, METH_FASTCALL,
     "key_suffixes(pairs, n): [key[n:] for key, _ in pairs]."},
    {"all_full", (PyCFunction)(void (*)(void))sp_all_full, METH_FASTCALL,
     "all_full(recs, n): every item is None or a list of at least n items."},
    {"pack_records", (PyCFunction)(void (*)(void))sp_pack_records, METH_FASTCALL,
     "pack_records(keys, values, start, max_bytes): (rp_put_many buffer, stop)."},
    {"int_key", sp_int_key, METH_O, "int_key(v): codec.encode_key(v) of a 64-bit int, else None."},
    {"encode_key_list", (PyCFunction)(void (*)(void))sp_encode_key_list, METH_FASTCALL,
     "encode_key_list(values, max_key): codec keys of all-int or all-str values, "
     "else None."},
    {"pack_rows", (PyCFunction)(void (*)(void))sp_pack_rows, METH_FASTCALL,
     "pack_rows(dicts, names): (row tuples, msgpack records) of plain values, else None."},
    {"column_keys", (PyCFunction)(void (*)(void))sp_column_keys, METH_FASTCALL,
     "column_keys(dicts, name, suffixes, max_key): encoded keys (+ suffixes), else None."},
    {"strictly_increasing", sp_strictly_increasing, METH_O,
     "strictly_increasing(keys): each key greater than the one before."},
    {"found_rows", (PyCFunction)(void (*)(void))sp_found_rows, METH_FASTCALL,
     "found_rows(keys, recs): (key, rec) pairs where rec is not None."},
    {"unmanaged_dicts", sp_unmanaged_dicts, METH_O,
     "unmanaged_dicts(objs): their instance dicts if none is managed, else None."},
    {"columns_ok", (PyCFunction)(void (*)(void))sp_columns_ok, METH_FASTCALL,
     "columns_ok(keys, values, max_key): put_columns' checks pass."},
    {"rows_full", (PyCFunction)(void (*)(void))sp_rows_full, METH_FASTCALL,
     "rows_full(rows, n): every (key, record) row's record is a list of >= n items."},
    {"record", (PyCFunction)(void (*)(void))sp_record, METH_FASTCALL,
     "record(data, n, fill, decode, error): a Record of one stored record."},
    {"record_pairs", (PyCFunction)(void (*)(void))sp_record_pairs, METH_FASTCALL,
     "record_pairs(data, n, fill, decode, error): [(key, Record), ...] of a raw batch."},
    {"pack_keys", sp_pack_keys, METH_O,
     "pack_keys(keys): the keys as [u32 little-endian length][bytes]..."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sp_module = {
    PyModuleDef_HEAD_INIT,
    "realmpy._speedups",
    "The object layer's per-object hot paths in C (see csrc/py/speedups.c).",
    -1,
    sp_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static int add_type(PyObject *m, PyObject **slot, PyType_Spec *spec, const char *name) {
    *slot = PyType_FromSpec(spec);
    if (*slot == NULL) return -1;
    Py_INCREF(*slot);
    if (PyModule_AddObject(m, name, *slot) < 0) {
        Py_DECREF(*slot);
        return -1;
    }
    return 0;
}

static int intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&sp_module);
    if (m == NULL) return NULL;
    if (intern(&s_read_plain, "read_plain")
        || intern(&s_slow_get, "_slow_get"))
        goto fail;
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL) goto fail;
    if (add_type(m, &RealmState_Type, &rs_spec, "RealmState")
        || add_type(m, &ModelBase_Type, &mb_spec, "ModelBase")
        || add_type(m, &PropertyBase_Type, &pb_spec, "PropertyBase")
        || add_type(m, &ObjectIter_Type, &oi_spec, "ObjectIter")
        || add_type(m, &ModelInit_Type, &mi_spec, "ModelInit")
        || add_type(m, &Record_Type, &rec_spec, "Record"))
        goto fail;
    PyObject *types = PyImport_ImportModule("types");
    if (types == NULL) goto fail;
    method_type = PyObject_GetAttrString(types, "MethodType");
    Py_DECREF(types);
    if (method_type == NULL) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
