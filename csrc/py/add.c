/* add.c -- RealmState.add: Realm.add of one new object in one call (issue 15).
 *
 * A loop of realm.add(obj) used to cost about five engine round trips per
 * object through Python wrappers (an existence check, a count, one put per
 * table and index, the record packing), then one native call behind a
 * Python method that still cost as much as the call itself.  So add is a
 * C method of the realm's base class: the common case -- a new object of
 * a class with a primary key and no links or embedded objects, in a write
 * transaction whose writes no history observer needs to see -- runs here
 * without a Python frame.  It encodes the key, the record and the index
 * entries with the bulk path's encoders (bulk.c: key_value, pack_record,
 * so the bytes are exactly add_all's), checks in the engine that the key
 * is free, writes the index entries and the record, makes the object
 * managed (objects.c: set_managed) and notes the key in the transaction's
 * change record (realmpy.changelog).
 *
 * Everything else calls the realm's _add_slow(obj, update) (realmpy.realm),
 * before anything is written: no _adder (not in a write transaction, or
 * one whose history observer must see every change: a synced file), another
 * thread, an object already managed, a class without a plan, a value the C
 * encoders do not take, or a key that exists (DuplicatePrimaryKeyError, or
 * update=True).  _add_slow sets _adder at the first add of a transaction
 * where the fast path is allowed, and clears it when the transaction ends.
 */

#include "native.h"

#define RP_OK 0
#define RP_NOTFOUND (-30800) /* csrc/realmpy.h */

/* plan = (table: bytes, names: tuple, pk: str, indexes: tuple of
 *         (name: str, index table: bytes), max_key: int, pos: dict,
 *         table name: str): realmpy.classinfo.AddPlan. */
enum { P_TABLE, P_NAMES, P_PK, P_INDEXES, P_MAX_KEY, P_POS, P_NAME, P_SIZE };

static int bad_plan(void) {
    PyErr_SetString(PyExc_TypeError, "RealmState.add: malformed add plan (realmpy.classinfo)");
    return -1;
}

/* The bytes of b (borrowed). */
static int bytes_of(PyObject *b, const char **p, size_t *n) {
    char *s;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(b, &s, &len) < 0) return -1;
    *p = s;
    *n = (size_t)len;
    return 0;
}

/* Encode obj's index entries (each: the indexed value's key, then the
 * object's key) into ib, their ends in ends[]: 0, 1 (fall back), -1. */
static int index_entries(PyObject *d, PyObject *indexes, Py_ssize_t nidx, const Buf *kb,
                         Py_ssize_t max_key, Buf *ib, size_t *ends) {
    for (Py_ssize_t i = 0; i < nidx; i++) {
        PyObject *ix = PyTuple_GetItem(indexes, i);
        if (ix == NULL || !PyTuple_Check(ix) || PyTuple_Size(ix) != 2) return bad_plan();
        PyObject *v = PyDict_GetItemWithError(d, PyTuple_GetItem(ix, 0));
        if (v == NULL) return PyErr_Occurred() ? -1 : 1;
        size_t start = ib->len;
        Py_INCREF(v);
        int rc = key_value(ib, v);
        Py_DECREF(v);
        if (rc != 0) return rc;
        if (buf_bytes(ib, kb->p, kb->len) < 0) return -1;
        if ((Py_ssize_t)(ib->len - start) > max_key) return 1;
        ends[i] = ib->len;
    }
    return 0;
}

/* Add obj (an unmanaged model with no store) with plan in engine
 * transaction txn: 0 added, 1 not written (the caller's general path
 * decides), -1 error. */
static int add_one(RealmState *r, void *txn, PyObject *plan, PyObject *obj) {
    if (!PyTuple_Check(plan) || PyTuple_Size(plan) != P_SIZE) return bad_plan();
    PyObject *table = PyTuple_GetItem(plan, P_TABLE), *names = PyTuple_GetItem(plan, P_NAMES);
    PyObject *pk = PyTuple_GetItem(plan, P_PK), *indexes = PyTuple_GetItem(plan, P_INDEXES);
    PyObject *pos = PyTuple_GetItem(plan, P_POS), *name = PyTuple_GetItem(plan, P_NAME);
    if (!PyTuple_Check(names) || !PyTuple_Check(indexes) || !PyDict_Check(pos)) return bad_plan();
    Py_ssize_t max_key = PyLong_AsSsize_t(PyTuple_GetItem(plan, P_MAX_KEY));
    if (max_key == -1 && PyErr_Occurred()) return -1;
    Py_ssize_t nidx = PyTuple_Size(indexes);
    size_t few[8], *ends = nidx <= 8 ? few : PyMem_Calloc((size_t)nidx, sizeof(size_t));
    if (ends == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Buf kb = {NULL, 0, 0}, rb = {NULL, 0, 0}, ib = {NULL, 0, 0};
    PyObject *row = NULL, *key = NULL;
    int result = -1;
    PyObject *d = instance_dict(obj);
    if (d == NULL) goto done;

    /* Encode everything first: a value the C encoders do not take leaves
     * the object to the general path with nothing written. */
    PyObject *v = PyDict_GetItemWithError(d, pk);
    if (v == NULL) {
        result = PyErr_Occurred() ? -1 : 1;
        goto done;
    }
    Py_INCREF(v);
    result = key_value(&kb, v);
    Py_DECREF(v);
    if (result == 0 && (Py_ssize_t)kb.len > max_key) result = 1;
    if (result == 0) result = pack_record(d, names, PyTuple_Size(names), &rb, &row);
    if (result == 0) result = index_entries(d, indexes, nidx, &kb, max_key, &ib, ends);
    if (result != 0) goto done;
    result = -1;

    /* The duplicate-key check, in the engine: an existing key is the
     * general path's (DuplicatePrimaryKeyError, or update=True). */
    const char *tp;
    size_t tn;
    if (bytes_of(table, &tp, &tn)) goto done;
    const void *val;
    size_t vlen;
    int rc = engine_get(txn, tp, tn, kb.p, kb.len, &val, &vlen);
    if (rc == RP_OK) {
        result = 1;
        goto done;
    }
    /* Index entries first, the record last: as in the general path. */
    for (Py_ssize_t i = 0; rc == RP_NOTFOUND && i < nidx; i++) {
        const char *ip;
        size_t in, start = i == 0 ? 0 : ends[i - 1];
        if (bytes_of(PyTuple_GetItem(PyTuple_GetItem(indexes, i), 1), &ip, &in)) goto done;
        rc = engine_put(txn, ip, in, ib.p + start, ends[i] - start, "", 0);
        if (rc == RP_OK) rc = RP_NOTFOUND;
    }
    if (rc == RP_NOTFOUND) rc = engine_put(txn, tp, tn, kb.p, kb.len, rb.p, rb.len);
    if (rc != RP_OK) {
        /* Raised as the transaction's own methods raise it. */
        PyObject *e = PyObject_CallMethod(r->adder_txn, "raise_error", "isO", rc, "put failed",
                                          name);
        Py_XDECREF(e);
        goto done;
    }
    key = PyBytes_FromStringAndSize(kb.p, (Py_ssize_t)kb.len);
    if (key == NULL) goto done;
    /* Managed, caching the record it was written with (a tuple, as add_all's). */
    if (set_managed(obj, (PyObject *)r, key, row, r->stamp + 1, pos) < 0) goto done;
    r->stamp += 1;
    result = note_changed(r->adder_changed, name, key);
done:
    if (ends != few) PyMem_Free(ends);
    PyMem_Free(kb.p);
    PyMem_Free(rb.p);
    PyMem_Free(ib.p);
    Py_XDECREF(d);
    Py_XDECREF(row);
    Py_XDECREF(key);
    return result;
}

/* realm._add_slow(*args, **kwargs). */
static PyObject *add_slow(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
    PyObject *result = NULL, *kw = NULL, *pos = PyTuple_New(nargs);
    if (pos == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) PyTuple_SetItem(pos, i, Py_NewRef(args[i]));
    if (nkw) {
        kw = PyDict_New();
        if (kw == NULL) goto done;
        for (Py_ssize_t i = 0; i < nkw; i++)
            if (PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0) goto done;
    }
    PyObject *slow = PyObject_GetAttrString(self, "_add_slow");
    if (slow == NULL) goto done;
    result = PyObject_Call(slow, pos, kw);
    Py_DECREF(slow);
done:
    Py_DECREF(pos);
    Py_XDECREF(kw);
    return result;
}

/* add(obj, update=False): see the module comment. */
PyObject *rs_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    RealmState *r = (RealmState *)self;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
    /* update only matters where the key exists: the general path's case. */
    if (r->adder_txn == NULL || nargs < 1 || nargs + nkw > 2 || !r->has_guard
        || r->guard != PyThread_get_thread_ident())
        return add_slow(self, args, nargs, kwnames);
    if (nkw == 1) {
        int is_update = PyUnicode_CompareWithASCIIString(PyTuple_GetItem(kwnames, 0), "update");
        if (is_update != 0) return add_slow(self, args, nargs, kwnames); /* its TypeError */
    }
    PyObject *obj = args[0];
    if (!is_model(obj) || ((ModelBase *)obj)->store != NULL)
        return add_slow(self, args, nargs, kwnames);
    PyObject *plan = PyDict_GetItemWithError(r->adder_plans, (PyObject *)Py_TYPE(obj));
    if (plan == NULL) {
        if (PyErr_Occurred()) return NULL;
        return add_slow(self, args, nargs, kwnames);
    }
    void *txn = owned_write_txn(r->adder_txn);
    if (txn == NULL) return add_slow(self, args, nargs, kwnames);
    Py_INCREF(plan); /* the plans dict may change while encoding runs code */
    Py_INCREF(obj);
    int rc = add_one(r, txn, plan, obj);
    Py_DECREF(plan);
    Py_DECREF(obj);
    if (rc < 0) return NULL;
    if (rc > 0) return add_slow(self, args, nargs, kwnames);
    return Py_NewRef(obj);
}
