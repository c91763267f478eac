/* module.c -- realmpy._native: realmpy's native half (not an optional
 * accelerator: every model's base class and the realm's hot state live here).
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
 *   RealmState.add  Realm.add: a new object of a class without links in
 *                 one call (add.c).
 *   EnvCore, TxnBase, ReadTxn, WriteTxn, ScanIter, bind_engine
 *                 the storage layer's hot paths (storage.c): read(), get,
 *                 put, delete, scan steps, end and commit cross into the
 *                 engine once.
 *
 * The code is split by concept into objects.c, record.c, modelinit.c and
 * bulk.c (csrc/py/native.h says what each holds and what they share); this
 * file is the module itself: its function table and init.
 *
 * Thread and lifetime rules: everything runs with the GIL held.  The version
 * counter address is only set (RealmState._vh) while the realm holds an open
 * snapshot of the environment, which keeps the engine handle (and its
 * shared mapping) alive; the realm clears it before the snapshot ends.
 */

#include "native.h"

/* ---- module globals (declared in native.h) ---------------------------------------- */

PyObject *RealmState_Type, *ModelBase_Type, *PropertyBase_Type, *ObjectIter_Type;
PyObject *Record_Type, *ModelInit_Type;
PyObject *method_type;
PyObject *s_read_plain, *s_slow_get;
PyObject *empty_tuple;

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
    {"bind_engine", (PyCFunction)(void (*)(void))sp_bind_engine, METH_FASTCALL,
     "bind_engine(addresses, raise_error, as_bytes, make_pointer, TransactionError, "
     "WrongThreadError): the engine functions storage.c calls (see storage.c)."},
    {"pack_changes", (PyCFunction)(void (*)(void))sp_pack_changes, METH_FASTCALL,
     "pack_changes(changed, skip): a transaction's change record as stored (storage.c)."},
    {"pack_keys", sp_pack_keys, METH_O,
     "pack_keys(keys): the keys as [u32 little-endian length][bytes]..."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sp_module = {
    PyModuleDef_HEAD_INIT,
    "realmpy._native",
    "realmpy's native half: model and realm base types, lazy records, bulk encoders (csrc/py/module.c).",
    -1,
    sp_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* Make spec into a type (subclassing base, unless NULL) and export it. */
static int add_type(PyObject *m, PyObject **slot, PyType_Spec *spec, PyObject *base,
                    const char *name) {
    *slot = PyType_FromSpecWithBases(spec, base);
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

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&sp_module);
    if (m == NULL) return NULL;
    if (intern(&s_read_plain, "read_plain")
        || intern(&s_slow_get, "_slow_get"))
        goto fail;
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL) goto fail;
    if (add_type(m, &RealmState_Type, &rs_spec, NULL, "RealmState")
        || add_type(m, &ModelBase_Type, &mb_spec, NULL, "ModelBase")
        || add_type(m, &PropertyBase_Type, &pb_spec, NULL, "PropertyBase")
        || add_type(m, &ObjectIter_Type, &oi_spec, NULL, "ObjectIter")
        || add_type(m, &ModelInit_Type, &mi_spec, NULL, "ModelInit")
        || add_type(m, &Record_Type, &rec_spec, NULL, "Record")
        || add_type(m, &EnvCore_Type, &envcore_spec, NULL, "EnvCore")
        || add_type(m, &TxnBase_Type, &txnbase_spec, NULL, "TxnBase")
        || add_type(m, &ReadTxn_Type, &readtxn_spec, TxnBase_Type, "ReadTxn")
        || add_type(m, &WriteTxn_Type, &writetxn_spec, TxnBase_Type, "WriteTxn")
        || add_type(m, &ScanIter_Type, &scaniter_spec, NULL, "ScanIter")
        || storage_init()
        || PyModule_AddIntConstant(m, "CHANGED_KEYS_MAX", CHANGED_KEYS_MAX) < 0)
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

