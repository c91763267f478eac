/* bulk.c -- the bulk paths of the object layer: index key suffixes, the
 * buffers of rp_put_many / rp_get_many, the codec's key encoding for ints
 * and strs (its tags: keytags.h), rows packed to msgpack records.
 */

#include "native.h"
#include "msgpack.h"
#include "keytags.h"

/* ---- pack_keys: the rp_get_many key buffer ------------------------------------- */

/* pack_keys(keys: list[bytes]) -> bytes: each key as [u32 little-endian
 * length][key bytes], concatenated. */
PyObject *sp_pack_keys(PyObject *module, PyObject *keys) {
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

/* ---- index and record helpers ------------------------------------------------------ */

/* key_suffixes(pairs, n) -> list[bytes]: key[n:] of each (key, value) pair
 * (an index scan's primary keys after the encoded value prefix). */
PyObject *sp_key_suffixes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_all_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_found_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_unmanaged_dicts(PyObject *module, PyObject *objs) {
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
PyObject *sp_rows_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_pack_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_columns_ok(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
 * returns its length, 1..9.  Z = RP_KEY_T_INT_ZERO; n = bytes of |x| without leading
 * zeros: 0 -> Z; x > 0 -> Z + n, then x in n big-endian bytes; x < 0 ->
 * Z - n, then the low n bytes of x - 1 (== x - 1 + 256^n: the one's
 * complement of |x|), so byte order is value order and the first bytes
 * differ between keys (the engine's page slots compare 4-byte heads). */
static Py_ssize_t int_key(unsigned char *dst, long long x) {
    /* |x| in unsigned arithmetic: defined for LLONG_MIN too */
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    int n = 0;
    for (uint64_t m = mag; m != 0; m >>= 8) n++;
    uint64_t body = x < 0 ? (uint64_t)x - 1 : (uint64_t)x;
    dst[0] = (unsigned char)(x < 0 ? RP_KEY_T_INT_ZERO - n : RP_KEY_T_INT_ZERO + n);
    for (int i = 0; i < n; i++) dst[1 + i] = (unsigned char)(body >> (8 * (n - 1 - i)));
    return 1 + n;
}

/* int_key(v) -> bytes | None: codec.encode_key(v) for an int of 64 bits
 * (exactly int: codec handles subclasses), else None (the codec then raises
 * or encodes another kind).  One C call instead of the arithmetic of the
 * variable-length form in Python on every find by primary key. */
PyObject *sp_int_key(PyObject *module, PyObject *v) {
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
PyObject *sp_encode_key_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
                    p[0] = RP_KEY_T_STR;
                    memcpy(p + 1, u8, (size_t)len);
                    p[len + 1] = RP_KEY_END;
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

/* The growable byte buffer Buf (native.h). */

int buf_reserve(Buf *b, size_t more) {
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


int buf_head(Buf *b, unsigned char tag, uint64_t v, int nbytes) {
    if (buf_reserve(b, 1 + (size_t)nbytes)) return -1;
    b->p[b->len] = (char)tag;
    rp_mp_put_be((uint8_t *)b->p + b->len + 1, v, (unsigned)nbytes);
    b->len += 1 + (size_t)nbytes;
    return 0;
}

int buf_bytes(Buf *b, const char *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* See native.h. */
int mp_count(Buf *b, int map, size_t n) {
    if (n < 16) return buf_head(b, (unsigned char)((map ? RP_MP_FIXMAP : RP_MP_FIXARRAY) | n), 0, 0);
    if (n < 65536) return buf_head(b, map ? 0xde : RP_MP_ARRAY16, n, 2);
    if (n <= UINT32_MAX) return buf_head(b, map ? 0xdf : RP_MP_ARRAY32, n, 4);
    return 1;
}

/* See native.h. */
int mp_value(Buf *b, PyObject *v) {
    if (v == Py_None) return buf_head(b, RP_MP_NIL, 0, 0);
    if (v == Py_True) return buf_head(b, RP_MP_TRUE, 0, 0);
    if (v == Py_False) return buf_head(b, RP_MP_FALSE, 0, 0);
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
        if (len < 32) rc = buf_head(b, (unsigned char)(RP_MP_FIXSTR | len), 0, 0);
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
        if (len < 256) rc = buf_head(b, RP_MP_BIN8, len, 1);
        else if (len < 65536) rc = buf_head(b, RP_MP_BIN16, len, 2);
        else if (len <= UINT32_MAX) rc = buf_head(b, RP_MP_BIN32, len, 4);
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
PyObject *sp_pack_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
    PyObject *row = NULL;
    bp->len = 0;
    int rc = pack_record(d, names, m, bp, &row);
    if (rc != 0) return rc;
    if (PyList_SetItem(rows, i, row) < 0) return -1; /* steals */
    PyObject *raw = PyBytes_FromStringAndSize(bp->p, (Py_ssize_t)bp->len);
    if (raw == NULL) return -1;
    return PyList_SetItem(packed, i, raw);
}

/* See native.h. */
int pack_record(PyObject *d, PyObject *names, Py_ssize_t m, Buf *b, PyObject **row) {
    PyObject *r = PyTuple_New(m);
    if (r == NULL) return -1;
    int rc = mp_count(b, MP_ARRAY, (size_t)m);
    for (Py_ssize_t j = 0; rc == 0 && j < m; j++) {
        PyObject *v = PyDict_GetItemWithError(d, PyTuple_GetItem(names, j));
        if (v == NULL) {
            rc = PyErr_Occurred() ? -1 : 1;
            break;
        }
        Py_INCREF(v);
        PyTuple_SetItem(r, j, v); /* steals */
        rc = mp_value(b, v);
    }
    if (rc != 0) {
        Py_DECREF(r);
        return rc;
    }
    *row = r;
    return 0;
}

/* One codec key (int or str fast path) into b; 1 if v needs the general
 * encoder. */
int key_value(Buf *b, PyObject *v) {
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
        if (buf_head(b, RP_KEY_T_STR, 0, 0) || buf_bytes(b, u8, (size_t)n)) return -1;
        return buf_head(b, RP_KEY_END, 0, 0);
    }
    return 1;
}

/* column_keys(dicts, name, suffixes, max_key) -> list[bytes] | None:
 * codec.encode_key(d[name]) + suffixes[i] (suffixes None: nothing) for
 * each dict, when every value is an int of 64 bits or a str without NUL
 * and every key fits max_key; None otherwise (the general path then
 * encodes, or raises with the value's name). */
PyObject *sp_column_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *sp_strictly_increasing(PyObject *module, PyObject *keys) {
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

