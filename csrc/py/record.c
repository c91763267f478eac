/* record.c -- Record: a stored record kept as its msgpack bytes and decoded
 * a field at a time when read.  The byte forms are msgpack.h's.
 */

#include "native.h"
#include "msgpack.h"

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



/* See native.h. */
PyObject *mp_scalar(const unsigned char *p, const unsigned char *e) {
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
    case 0xcd: return PyLong_FromLong((long)rp_mp_be16(p + 1));
    case 0xce: return PyLong_FromUnsignedLongLong((unsigned long long)rp_mp_be32(p + 1));
    case 0xcf: return PyLong_FromUnsignedLongLong((unsigned long long)rp_mp_be64(p + 1));
    case 0xd0: return PyLong_FromLong((long)(int8_t)p[1]);
    case 0xd1: return PyLong_FromLong((long)(int16_t)rp_mp_be16(p + 1));
    case 0xd2: return PyLong_FromLong((long)(int32_t)rp_mp_be32(p + 1));
    case 0xd3: return PyLong_FromLongLong((long long)(int64_t)rp_mp_be64(p + 1));
    case 0xca: {
        uint32_t u = rp_mp_be32(p + 1);
        float f;
        memcpy(&f, &u, 4);
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        uint64_t u = rp_mp_be64(p + 1);
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

PyObject *rec_item(PyObject *self_, Py_ssize_t i) {
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
    {Py_tp_doc, "A stored record decoded field by field as it is read (see module.c)."},
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

PyType_Spec rec_spec = {
    "realmpy._native.Record",
    sizeof(Record),
    1,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    rec_slots,
};

/* A Record of the record at [p, e) (exactly one msgpack object), or NULL
 * with `error` set if it is not a well-formed array. */
static PyObject *new_record(const unsigned char *p, const unsigned char *e, Py_ssize_t n,
                            PyObject *fill, PyObject *decode, PyObject *error) {
    uint64_t stored;
    const unsigned char *q = rp_mp_array(p, e, &stored);
    if (q == NULL) {
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
        q = rp_mp_skip(q, e);
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
PyObject *sp_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_record_pairs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Py_ssize_t n;
    if (nargs_is(nargs, 5, "record_pairs") || record_args(args, &n)) return NULL;
    PyObject *error = args[4];
    const unsigned char *p = (const unsigned char *)PyBytes_AsString(args[0]);
    if (p == NULL) return NULL;
    const unsigned char *e = p + PyBytes_Size(args[0]);
    uint64_t count;
    p = rp_mp_array(p, e, &count);
    if (p == NULL) {
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
        const unsigned char *q = rp_mp_skip_any(p, e);
        PyObject *k = NULL;
        if (q != NULL && (*p == 0xc4 || *p == 0xc5 || *p == 0xc6)) k = mp_scalar(p, q);
        else if (q != NULL) PyErr_SetString(error, "corrupt batch: a key is not bytes");
        if (k == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(error, "corrupt batch: damaged key");
            Py_DECREF(out);
            return NULL;
        }
        p = q;
        q = rp_mp_skip_any(p, e);
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

