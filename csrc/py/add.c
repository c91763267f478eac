/* add.c -- Realm.add of one new object in one call (issue 15).
 *
 * A loop of realm.add(obj) used to cost about five engine round trips per
 * object through Python wrappers (an existence check, a count, one put per
 * table and index, the record packing).  add_new does the common case --
 * a new object of a class with a primary key and no links or embedded
 * objects -- in C: it encodes the key, the record and the index entries
 * with the same encoders as the bulk path (bulk.c: pack_rows,
 * column_keys, so the bytes are exactly add_all's), checks in the engine
 * that the key is free, writes the record and the entries, and makes the
 * object managed (objects.c: manage).
 *
 * The engine lives in another extension (realmpy._engine, cffi); its
 * functions are reached through the addresses realmpy.storage hands over
 * once (set_engine).  The caller (realmpy.realm) passes the address of a
 * write transaction only when every change may bypass storage's Python
 * wrappers (storage.WriteTransaction.direct_handle: no history observer
 * to call, the owner thread); anything else, and every case add_new does
 * not handle, returns None before anything is written, and the caller takes
 * the general path.
 */

#include "native.h"

typedef int (*rp_get_fn)(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
                         const void **val, size_t *vlen);
typedef int (*rp_put_fn)(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
                         const void *val, size_t vlen);

static rp_get_fn engine_get;
static rp_put_fn engine_put;

#define RP_OK 0
#define RP_NOTFOUND (-30800) /* csrc/realmpy.h */

PyObject *sp_set_engine(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "set_engine") || need_int(args[0], "get") || need_int(args[1], "put"))
        return NULL;
    void *get = PyLong_AsVoidPtr(args[0]), *put = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (get == NULL || put == NULL) {
        PyErr_SetString(PyExc_ValueError, "set_engine: NULL function address");
        return NULL;
    }
    engine_get = (rp_get_fn)get;
    engine_put = (rp_put_fn)put;
    Py_RETURN_NONE;
}

/* The limited API's bytes access (no macros): b's buffer and size. */
static int bytes_of(PyObject *b, const char **p, size_t *n) {
    char *s;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(b, &s, &len) < 0) return -1;
    *p = s;
    *n = (size_t)len;
    return 0;
}

/* The one-element list of a column_keys / pack_rows result as its item
 * (borrowed), or NULL when the encoder declined (returned None). */
static PyObject *only(PyObject *list) {
    return list == Py_None ? NULL : PyList_GetItem(list, 0);
}

/* add_new(txn, plan, obj, realm, stamp): see module.c's table.
 * plan = (table: bytes, names: tuple, pk: str, indexes: tuple of
 *         (name: str, index table: bytes), max_key: int, pos: dict). */
PyObject *sp_add_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs_is(nargs, 5, "add_new")) return NULL;
    PyObject *plan = args[1], *obj = args[2], *realm = args[3], *stamp = args[4];
    if (engine_get == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "add_new: set_engine was not called");
        return NULL;
    }
    if (need_int(args[0], "txn")) return NULL;
    void *txn = PyLong_AsVoidPtr(args[0]);
    if (txn == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "add_new: NULL txn");
        return NULL;
    }
    PyObject *table, *names, *pk, *indexes, *max_key, *pos;
    if (!PyArg_ParseTuple(plan, "O!O!UO!O!O!:add_new plan", &PyBytes_Type, &table, &PyTuple_Type,
                          &names, &pk, &PyTuple_Type, &indexes, &PyLong_Type, &max_key,
                          &PyDict_Type, &pos))
        return NULL;
    Py_ssize_t nidx = PyTuple_Size(indexes);
    PyObject *result = NULL, *dicts = NULL, *keys = NULL, *packed = NULL;
    PyObject **entries = PyMem_Calloc((size_t)nidx + 1, sizeof(PyObject *));
    if (entries == NULL) return PyErr_NoMemory();
    PyObject *dict = instance_dict(obj);
    if (dict == NULL) goto done;
    dicts = PyList_New(1);
    if (dicts == NULL) {
        Py_DECREF(dict);
        goto done;
    }
    if (PyList_SetItem(dicts, 0, dict) < 0) goto done; /* steals dict */

    /* Encode everything first: a value the C encoders do not take makes
     * the caller's general path handle the object, with nothing written. */
    PyObject *kargs[4] = {dicts, pk, Py_None, max_key};
    keys = sp_column_keys(module, kargs, 4);
    if (keys == NULL) goto done;
    PyObject *key = only(keys);
    if (key == NULL) goto fallback;
    PyObject *pargs[2] = {dicts, names};
    packed = sp_pack_rows(module, pargs, 2);
    if (packed == NULL) goto done;
    if (packed == Py_None) goto fallback;
    PyObject *row = only(PyTuple_GetItem(packed, 0));
    PyObject *rec = only(PyTuple_GetItem(packed, 1));
    if (row == NULL || rec == NULL) goto done;
    for (Py_ssize_t i = 0; i < nidx; i++) {
        PyObject *ix = PyTuple_GetItem(indexes, i);
        if (ix == NULL || !PyTuple_Check(ix) || PyTuple_Size(ix) != 2
            || !PyBytes_Check(PyTuple_GetItem(ix, 1))) {
            PyErr_SetString(PyExc_TypeError, "add_new: indexes are (name, table bytes) pairs");
            goto done;
        }
        PyObject *iargs[4] = {dicts, PyTuple_GetItem(ix, 0), keys, max_key};
        entries[i] = sp_column_keys(module, iargs, 4);
        if (entries[i] == NULL) goto done;
        if (only(entries[i]) == NULL) goto fallback;
    }

    /* The duplicate-key check, in the engine: an existing key is the
     * general path's (DuplicatePrimaryKeyError, or update=True). */
    const char *tp, *kp, *rp;
    size_t tn, kn, rn;
    if (bytes_of(table, &tp, &tn) || bytes_of(key, &kp, &kn) || bytes_of(rec, &rp, &rn)) goto done;
    const void *val;
    size_t vlen;
    int rc = engine_get(txn, tp, tn, kp, kn, &val, &vlen);
    if (rc == RP_OK) goto fallback;
    if (rc != RP_NOTFOUND) {
        result = PyLong_FromLong(rc);
        goto done;
    }
    /* Index entries first, the record last: as in the general path. */
    for (Py_ssize_t i = 0; i < nidx; i++) {
        const char *ip, *ep;
        size_t in, en;
        if (bytes_of(PyTuple_GetItem(PyTuple_GetItem(indexes, i), 1), &ip, &in)
            || bytes_of(only(entries[i]), &ep, &en))
            goto done;
        rc = engine_put(txn, ip, in, ep, en, "", 0);
        if (rc != RP_OK) {
            result = PyLong_FromLong(rc);
            goto done;
        }
    }
    rc = engine_put(txn, tp, tn, kp, kn, rp, rn);
    if (rc != RP_OK) {
        result = PyLong_FromLong(rc);
        goto done;
    }
    /* Managed, caching the record it was written with (a tuple, as add_all's). */
    PyObject *margs = Py_BuildValue("([O]O[O][O]OO)", obj, realm, key, row, stamp, pos);
    if (margs == NULL) goto done;
    PyObject *m = sp_manage(module, margs);
    Py_DECREF(margs);
    if (m == NULL) goto done;
    Py_DECREF(m);
    result = Py_NewRef(key);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < nidx; i++) Py_XDECREF(entries[i]);
    PyMem_Free(entries);
    Py_XDECREF(packed);
    Py_XDECREF(keys);
    Py_XDECREF(dicts);
    return result;
}
