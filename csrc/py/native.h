/* native.h -- what the files of the native module (realmpy._native)
 * share.  Internal to the module: Python sees only what module.c exports.
 *
 *   module.c     the module: its functions table, init, the globals below
 *   objects.c    RealmState, ModelBase, building managed objects,
 *                ObjectIter, PropertyBase (the C __get__)
 *   record.c     Record: a stored record decoded a field at a time
 *   modelinit.c  ModelInit: a model's generated __init__
 *   bulk.c       the bulk paths: key suffixes, rp_put_many/rp_get_many
 *                buffers, key encoders (keytags.h), rows packed to msgpack
 *   storage.c    the storage layer's hot paths: EnvCore, TxnBase, ReadTxn,
 *                WriteTxn (bases of storage.Environment, Snapshot and
 *                WriteTransaction), ScanIter, calling the engine directly
 *   add.c        RealmState.add: Realm.add of one new object in one call
 *
 * Everything runs with the GIL held (see module.c for the lifetime rules).
 */
#ifndef REALMPY_NATIVE_H
#define REALMPY_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdatomic.h>
#include <stdint.h>

/* ---- module globals (module.c; single-phase init: one interpreter) -------- */

extern PyObject *RealmState_Type, *ModelBase_Type, *PropertyBase_Type, *ObjectIter_Type;
extern PyObject *Record_Type, *ModelInit_Type;
extern PyObject *EnvCore_Type, *TxnBase_Type, *ReadTxn_Type, *WriteTxn_Type, *ScanIter_Type;
extern PyObject *method_type;               /* types.MethodType */
extern PyObject *s_read_plain, *s_slow_get; /* interned method names */
extern PyObject *empty_tuple;

/* The types' specs, made into types by module.c. */
extern PyType_Spec rs_spec, mb_spec, oi_spec, pb_spec, rec_spec, mi_spec;
extern PyType_Spec envcore_spec, txnbase_spec, readtxn_spec, writetxn_spec, scaniter_spec;

/* ---- RealmState (objects.c) ----------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    long long stamp;          /* _stamp: bumped whenever what is read changes */
    unsigned long long version; /* _version: the version this realm reads    */
    unsigned long guard;      /* _guard: owner thread id, if has_guard         */
    int has_guard;            /* 0: _guard is None (closed, or not yet open)  */
    uintptr_t vaddr;          /* _vh: the shared counter's address, or 0      */
    /* _adder (add.c), all NULL or all set: the write transaction whose new
     * objects add() writes in one call, its change record (dict table ->
     * set of keys or None) and {model class: plan}. */
    PyObject *adder_txn, *adder_changed, *adder_plans;
} RealmState;

/* RealmState.add (add.c). */
PyObject *rs_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* ---- ModelBase (objects.c) ------------------------------------------------------ */

/* A managed object's state (see objects.c). */
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

/* Make obj (a model) managed by realm under key, caching rec (NULL or
 * None: nothing) read at stamp with positions pos. */
int set_managed(PyObject *obj, PyObject *realm, PyObject *key, PyObject *rec, long long stamp,
                PyObject *pos);

/* obj's instance dict (new reference); TypeError if it has none. */
PyObject *instance_dict(PyObject *obj);
/* row as (key, rec), new references in *k and *rec: 0, or -1 with an
 * exception (not a pair, or a key that is not bytes). */
int unpack_row(PyObject *row, PyObject **k, PyObject **rec);

/* ---- Record (record.c) ------------------------------------------------------------ */

/* A stored record kept as its msgpack bytes (see record.c for the layout). */
typedef struct {
    PyObject_VAR_HEAD
    Py_ssize_t len;      /* max(n, stored): what len() says                  */
    Py_ssize_t stored;   /* fields in the stored array                       */
    PyObject *decode;    /* decode(bytes) -> value: the Python decoder        */
    PyObject **vals;     /* len slots                                        */
    uint32_t *offs;      /* stored + 1 offsets of the fields in raw          */
    const unsigned char *raw;
} Record;

/* self[i] for 0 <= i < len: decoded on first read, then kept. */
PyObject *rec_item(PyObject *self_, Py_ssize_t i);
/* The plain scalar (nil, bool, int, float, str, bin) at [p, e), one whole
 * msgpack object, or NULL without an exception if it is not one Record
 * decodes itself (NULL with one on failure). */
PyObject *mp_scalar(const unsigned char *p, const unsigned char *e);

/* ---- byte buffers and encoders (bulk.c) ------------------------------------------ */

/* A growable byte buffer (PyMem; free p when done). */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

int buf_reserve(Buf *b, size_t more);
int buf_head(Buf *b, unsigned char tag, uint64_t v, int nbytes);
int buf_bytes(Buf *b, const char *src, size_t n);
/* Pack one value exactly as msgpack-python's Packer(use_bin_type=True)
 * does: 0; 1 if the value is not one of the plain scalars packed here
 * (None, bool, int of 64 bits, float, str, bytes: the caller then falls
 * back to msgpack), -1 on error. */
int mp_value(Buf *b, PyObject *v);
/* The msgpack header of an array (MP_ARRAY) or a map (MP_MAP) of n items,
 * as msgpack-python packs it: 0; 1 if n is too large for msgpack. */
enum { MP_ARRAY = 0, MP_MAP = 1 };
int mp_count(Buf *b, int map, size_t n);
/* codec.encode_key(v) appended to b for an int of 64 bits or a str without
 * NUL: 0; 1 if v needs the general encoder; -1 on error. */
int key_value(Buf *b, PyObject *v);
/* The values of d at names (m of them) as a new tuple in *row and packed
 * into b (from its start) as codec.pack_plain_rows packs a record: 0; 1
 * if a name is missing or a value is not a plain scalar; -1 on error. */
int pack_record(PyObject *d, PyObject *names, Py_ssize_t m, Buf *b, PyObject **row);

/* ---- the engine, for add.c (storage.c) ------------------------------------------- */

/* Beyond this many keys a transaction records a table as changed as a
 * whole (None): realmpy.storage.CHANGED_KEYS_MAX is this constant. */
#define CHANGED_KEYS_MAX 1024

/* Note key (bytes) as written or deleted in table (str) in changed, a
 * write transaction's change record (dict: table -> set of keys, or None
 * for any key): 0, or -1 with an exception. */
int note_changed(PyObject *changed, PyObject *table, PyObject *key);

/* The engine transaction of wtxn (a WriteTransaction) if it is open and
 * owned by the calling thread, else NULL (no exception set). */
void *owned_write_txn(PyObject *wtxn);
int engine_get(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
               const void **val, size_t *vlen);
int engine_put(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
               const void *val, size_t vlen);
int engine_del(void *txn, const char *table, size_t tlen, const void *key, size_t klen);

/* ---- argument checks and GC helpers ------------------------------------------- */

static inline int no_delete(PyObject *value, const char *name) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    return 0;
}

static inline int need_int(PyObject *value, const char *name) {
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %R", name,
                     (PyObject *)Py_TYPE(value));
        return -1;
    }
    return 0;
}

static inline int need_list(PyObject *value, const char *name) {
    if (!PyList_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list, not %R", name,
                     (PyObject *)Py_TYPE(value));
        return -1;
    }
    return 0;
}

/* An int argument as a Py_ssize_t (TypeError if not an int). */
static inline int size_arg(PyObject *value, const char *name, Py_ssize_t *out) {
    if (need_int(value, name)) return -1;
    *out = PyLong_AsSsize_t(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The tp_dealloc of a GC-tracked heap type whose references clear()
 * drops (NULL: none); instances hold a reference to their heap type. */
static inline void gc_dealloc(PyObject *self, inquiry clear) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (clear != NULL) clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static inline int check_key(PyObject *key) {
    if (!PyBytes_Check(key)) {
        PyErr_Format(PyExc_TypeError, "a key must be bytes, not %R", (PyObject *)Py_TYPE(key));
        return -1;
    }
    return 0;
}

/* TypeError unless a METH_FASTCALL function fn got want arguments. */
static inline int nargs_is(Py_ssize_t nargs, Py_ssize_t want, const char *fn) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
        return -1;
    }
    return 0;
}

/* ---- the module's functions (module.c's table documents each) ------------------ */

/* objects.c */
PyObject *sp_make_object(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_iter_objects(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_manage(PyObject *module, PyObject *args);
/* record.c */
PyObject *sp_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_record_pairs(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* bulk.c */
PyObject *sp_key_suffixes(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_all_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_pack_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_int_key(PyObject *module, PyObject *v);
PyObject *sp_encode_key_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_pack_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_pack_changes(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_column_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_strictly_increasing(PyObject *module, PyObject *keys);
PyObject *sp_found_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_unmanaged_dicts(PyObject *module, PyObject *objs);
PyObject *sp_columns_ok(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_rows_full(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_pack_keys(PyObject *module, PyObject *keys);
/* storage.c */
PyObject *sp_bind_engine(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int storage_init(void); /* its interned names: 0, or -1 with an exception */

#endif
