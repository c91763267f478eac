/* modelinit.c -- ModelInit: a model's generated __init__ in C.
 */

#include "native.h"

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
    PyObject *signature_of; /* () -> __signature__, called at its first read
                            (inspect loads then, not with the first object) */
    Py_ssize_t n;
    InitField *f;
} ModelInit;


static int mi_traverse(PyObject *self_, visitproc visit, void *arg) {
    ModelInit *self = (ModelInit *)self_;
    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->cls);
    Py_VISIT(self->missing);
    Py_VISIT(self->unknown);
    Py_VISIT(self->fallback);
    Py_VISIT(self->qualname);
    Py_VISIT(self->signature);
    Py_VISIT(self->signature_of);
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
    Py_CLEAR(self->signature_of);
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
    {"_rp_signature_of", T_OBJECT, offsetof(ModelInit, signature_of), 0,
     "Called without arguments at the first read of __signature__ (None: unknown)."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *mi_get_name(PyObject *self, void *closure) {
    (void)self;
    (void)closure;
    return PyUnicode_FromString("__init__");
}

static PyObject *mi_get_signature(PyObject *self_, void *closure) {
    ModelInit *self = (ModelInit *)self_;
    (void)closure;
    if (self->signature == NULL && self->signature_of != NULL && self->signature_of != Py_None) {
        PyObject *sig = PyObject_CallNoArgs(self->signature_of);
        if (sig == NULL) return NULL;
        self->signature = sig;
        Py_CLEAR(self->signature_of);
    }
    return Py_NewRef(self->signature != NULL ? self->signature : Py_None);
}

static int mi_set_signature(PyObject *self_, PyObject *value, void *closure) {
    ModelInit *self = (ModelInit *)self_;
    (void)closure;
    PyObject *old = self->signature;
    self->signature = Py_XNewRef(value);
    Py_XDECREF(old);
    Py_CLEAR(self->signature_of);
    return 0;
}

static PyGetSetDef mi_getset[] = {
    {"__name__", mi_get_name, NULL, NULL, NULL},
    {"__signature__", mi_get_signature, mi_set_signature,
     "The inspect.Signature of the generated Python __init__ (None: unknown).", NULL},
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

PyType_Spec mi_spec = {
    "realmpy._native.ModelInit",
    sizeof(ModelInit),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR,
    mi_slots,
};

