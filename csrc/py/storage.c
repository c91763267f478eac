/* storage.c -- the storage layer's hot paths: one C call per operation.
 *
 * realmpy/storage.py is the API and its documentation; the calls a program
 * makes per key or per snapshot are these C types, so each crosses from
 * Python into the engine once (cffi's call plus ffi.unpack cost more than
 * the engine's whole lookup):
 *
 *   EnvCore    base of storage.Environment: the engine handle, the closing
 *              flag, the set of live transactions, the table-name cache and
 *              up to PARKED_MAX parked read handles.  read() is here.
 *   TxnBase    base of both transaction types: the engine txn, its owner
 *              thread, state and cached version; get(), abort(), version.
 *   ReadTxn    base of storage.Snapshot: end() (also __exit__), __enter__,
 *              latest_version().
 *   WriteTxn   base of storage.WriteTransaction: put(), delete(), _commit().
 *   ScanIter   the iterator of scan()/scan_msgpack(): each refill opens a
 *              cursor, seeks past the last key it yielded, copies a batch
 *              (rp_cursor_batch) and closes it, so an abandoned iterator
 *              pins nothing; the items of a batch are handed out one per
 *              next() with no Python code in between.
 *
 * ONE ENGINE PER PROCESS.  The engine (csrc, the *.c files) is compiled into
 * realmpy._engine (cffi) only.  This module does not link it:
 * realmpy/binding.py hands it the addresses of the few engine functions it
 * calls (bind_engine), taken from _engine with ffi.addressof, so both bindings
 * call the same code with the same process-wide state (fork detection,
 * thread ids, fault injection).  A second copy of the engine here would
 * have its own.  The table type-checks every address against realmpy.h's
 * prototype at compile time (HOT_CALLS below).
 *
 * THE RULES storage.py documents, kept here:
 *  - a transaction belongs to the thread that began it: every method
 *    compares the caller's thread id with the owner first (an ended or
 *    shared transaction has no owner thread, so the one comparison catches
 *    all three; not_owner() sorts them out, off the hot path);
 *    WrongThreadError / TransactionError otherwise;
 *  - read() on a closed environment raises ClosedError;
 *  - after fork() the engine answers RP_FORKED, raised as ForkedError;
 *  - every put/delete of a write transaction whose observer is not None
 *    calls txn._observe(table, keys) first (the history hook), except
 *    that an observer that is a dict is the transaction's change record:
 *    the key is noted in it here (note_changed).
 *
 * THE GIL is held across these engine calls except commit: they read and
 * write mapped memory and never wait for a Python thread (the write lock is
 * taken by storage.py's write(), through cffi, with the GIL released; a
 * snapshot begun after a writer died mid-commit waits only for the repair
 * that the next writer does inside rp_txn_begin, in C).  Holding it also
 * means Environment.close() cannot run in the middle of one, so these calls
 * need no in-flight registration.  Commit releases it (fdatasync); the
 * committing transaction is live, which keeps the handle allocated.
 */

#include "native.h"

#include "msgpack.h"
#include "realmpy.h"

/* ---- the engine functions, bound at run time -------------------------------------------- */

/* name, return type, parameters. */
#define HOT_CALLS(X)                                                                    \
    X(rp_txn_begin, int, (rp_env *, unsigned, rp_txn **))                               \
    X(rp_txn_abort, int, (rp_txn *))                                                    \
    X(rp_txn_reset, int, (rp_txn *))                                                    \
    X(rp_txn_renew, int, (rp_txn *))                                                    \
    X(rp_txn_commit_ex, int, (rp_txn *, uint64_t *))                                    \
    X(rp_txn_version, uint64_t, (rp_txn *))                                             \
    X(rp_env_version, uint64_t, (rp_env *))                                             \
    X(rp_get, int, (rp_txn *, const char *, size_t, const void *, size_t, const void **, \
                    size_t *))                                                          \
    X(rp_put, int, (rp_txn *, const char *, size_t, const void *, size_t, const void *,  \
                    size_t))                                                            \
    X(rp_del, int, (rp_txn *, const char *, size_t, const void *, size_t))                \
    X(rp_cursor_open, int, (rp_txn *, const char *, size_t, rp_cursor **))               \
    X(rp_cursor_close, void, (rp_cursor *))                                              \
    X(rp_cursor_seek, int, (rp_cursor *, int, const void *, size_t, const void **,       \
                            size_t *, const void **, size_t *))                          \
    X(rp_cursor_batch, int, (rp_cursor *, int, unsigned, const void *, size_t, void *,   \
                             size_t, size_t, size_t *, size_t *))

#define FIELD(name, ret, params) ret(*name) params;
static struct {
    HOT_CALLS(FIELD)
} E;
#undef FIELD

/* Compile-time check that each slot has the prototype of realmpy.h (an
 * assignment inside sizeof is type-checked but never evaluated, so no
 * reference to the symbol is emitted). */
#define CHECK_PROTO(name, ret, params) (void)sizeof(E.name = name);
static inline void check_prototypes(void) { HOT_CALLS(CHECK_PROTO) }
#undef CHECK_PROTO

static int bound;

/* Python callables and classes storage.py supplies (bind_engine). */
static PyObject *raise_error;   /* raise_error(rc, what, path): raises      */
static PyObject *as_bytes;      /* as_bytes(value, what) -> bytes           */
static PyObject *make_pointer;  /* make_pointer(address) -> cffi rp_txn *   */
static PyObject *TransactionError, *WrongThreadError;
static PyObject *s_open, *s_ended, *s_aborted, *s_committed, *s_failed;
static PyObject *s_observe, *s_history_written, *s_encode_name, *s_closed_error,
    *s_release_if_idle;

/* Py_SETREF / Py_XSETREF are not in the limited API. */
#define XSETREF(slot, value)             \
    do {                                 \
        PyObject *old_ = (PyObject *)(slot); \
        (slot) = (value);                \
        Py_XDECREF(old_);                \
    } while (0)
#define SETREF XSETREF

#define PARKED_MAX 4 /* parked read handles per environment (each keeps a reader slot) */

enum { OWNED, SHARED, ENDED };

typedef struct {
    PyObject_HEAD
    rp_env *env;     /* NULL until attached and once released */
    char closing;    /* _closing: no new work                  */
    int nparked;
    rp_txn *parked[PARKED_MAX];
    PyObject *live;  /* _live: set of open transactions        */
    PyObject *names; /* _names: dict str -> encoded name       */
    PyObject *path;  /* _path: str                             */
    PyObject *snapshot_type;
} EnvCore;

typedef struct {
    PyObject_HEAD
    rp_txn *txn;
    EnvCore *env;
    unsigned long owner; /* thread id while OWNED, else 0 (no thread has it) */
    int mode;
    int write;
    PyObject *state;    /* "open", "ended", "aborted", ...                  */
    PyObject *version;  /* cached int, or NULL                              */
    PyObject *observer; /* write txn: None, or the history observer         */
    PyObject *pointer;  /* cached cffi pointer (make_pointer), or NULL      */
} Txn;

PyObject *EnvCore_Type, *TxnBase_Type, *ReadTxn_Type, *WriteTxn_Type, *ScanIter_Type;

/* ---- errors ------------------------------------------------------------------------------ */

static PyObject *engine_error(int rc, const char *what, PyObject *table, PyObject *path) {
    PyObject *msg = table == NULL ? PyUnicode_FromString(what)
                                  : PyUnicode_FromFormat("%s (table %R)", what, table);
    if (msg == NULL) return NULL;
    PyObject *r = PyObject_CallFunction(raise_error, "iOO", rc, msg, path);
    Py_DECREF(msg);
    Py_XDECREF(r); /* raise_error raises; it never returns */
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "raise_error returned");
    return NULL;
}

static void set_error(PyObject *cls, PyObject *msg, PyObject *path) {
    if (msg == NULL) return;
    PyObject *exc = PyObject_CallFunctionObjArgs(cls, msg, NULL);
    Py_DECREF(msg);
    if (exc == NULL) return;
    if (PyObject_SetAttrString(exc, "path", path) == 0)
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

static const char *kind(Txn *t) { return t->write ? "write transaction" : "snapshot"; }

/* The caller is not t's owner: 0 for a shared snapshot (any thread may use
 * it; its user serialises the calls), else -1 with the error saying why. */
static int not_owner(Txn *t) {
    if (t->mode == SHARED) return 0;
    if (t->mode == ENDED)
        set_error(TransactionError,
                  PyUnicode_FromFormat("the %s is %S: begin a new one [%S]", kind(t), t->state,
                                       t->env->path),
                  t->env->path);
    else
        set_error(WrongThreadError,
                  PyUnicode_FromFormat("the %s belongs to thread %lu, not %lu: a transaction "
                                       "belongs to the thread that began it; begin one in "
                                       "this thread [%S]",
                                       kind(t), t->owner, PyThread_get_thread_ident(),
                                       t->env->path),
                  t->env->path);
    return -1;
}

#define CHECK_OWNER(t, fail) \
    if ((t)->owner != PyThread_get_thread_ident() && not_owner(t)) return fail

/* ---- for add.c: one-call writes that bypass the Python wrappers ---------------------------- */

/* See native.h.  The caller (RealmState.add) decided once per transaction
 * that no history observer needs to see its writes. */
void *owned_write_txn(PyObject *wtxn) {
    if (!bound || !PyObject_TypeCheck(wtxn, (PyTypeObject *)WriteTxn_Type)) return NULL;
    Txn *t = (Txn *)wtxn;
    if (t->txn == NULL || !t->write || t->mode != OWNED
        || t->owner != PyThread_get_thread_ident())
        return NULL;
    return t->txn;
}

int engine_get(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
               const void **val, size_t *vlen) {
    return E.rp_get((rp_txn *)txn, table, tlen, key, klen, val, vlen);
}

int engine_put(void *txn, const char *table, size_t tlen, const void *key, size_t klen,
               const void *val, size_t vlen) {
    return E.rp_put((rp_txn *)txn, table, tlen, key, klen, val, vlen);
}

int engine_del(void *txn, const char *table, size_t tlen, const void *key, size_t klen) {
    return E.rp_del((rp_txn *)txn, table, tlen, key, klen);
}

/* ---- arguments ----------------------------------------------------------------------------- */

/* The engine name of table (new reference): the environment's cache, else
 * Environment._encode_name (which checks it, raises typed errors, caches). */
static PyObject *table_name(EnvCore *env, PyObject *table) {
    PyObject *name = PyDict_GetItemWithError(env->names, table);
    if (name != NULL) {
        Py_INCREF(name);
        return name;
    }
    if (PyErr_Occurred()) { /* not hashable: let _encode_name say what is wrong */
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return NULL;
        PyErr_Clear();
    }
    return PyObject_CallMethodObjArgs((PyObject *)env, s_encode_name, table, NULL);
}

/* bytes for a key or value argument (new reference). */
static PyObject *bytes_arg(PyObject *value, const char *what) {
    if (PyBytes_CheckExact(value)) {
        Py_INCREF(value);
        return value;
    }
    return PyObject_CallFunction(as_bytes, "Os", value, what);
}

static int view(PyObject *bytes, char **p, Py_ssize_t *n) {
    return PyBytes_AsStringAndSize(bytes, p, n);
}

/* The arguments of a per-key call (get, put, delete), checked: the
 * table's engine name and the key as bytes, held until key_call_done. */
typedef struct {
    PyObject *name, *key;
    char *np, *kp;
    Py_ssize_t nn, kn;
} KeyCall;

static int observe(Txn *t, PyObject *table, PyObject *key);

static void key_call_done(KeyCall *c) {
    Py_XDECREF(c->name);
    Py_XDECREF(c->key);
}

/* Check a call fn(table, key, ...) of want arguments: the owner thread,
 * the table name, the key; a write (observed) first tells the history
 * observer.  0, or -1 with an exception (and nothing held). */
static int key_call(Txn *t, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                    const char *fn, int observed, KeyCall *c) {
    c->name = c->key = NULL;
    CHECK_OWNER(t, -1);
    if (nargs_is(nargs, want, fn)) return -1;
    c->name = table_name(t->env, args[0]);
    if (c->name == NULL) return -1;
    c->key = bytes_arg(args[1], "key");
    if (c->key == NULL || view(c->name, &c->np, &c->nn) || view(c->key, &c->kp, &c->kn))
        goto fail;
    if (observed && observe(t, args[0], c->key)) goto fail;
    return 0;
fail:
    key_call_done(c);
    return -1;
}

/* ---- EnvCore ------------------------------------------------------------------------------- */

static PyObject *closed_error(EnvCore *env, const char *what) {
    PyObject *exc = PyObject_CallMethod((PyObject *)env, "_closed_error", "s", what);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* A new transaction object of type tp on txn, registered as live. */
static PyObject *new_txn(EnvCore *env, PyTypeObject *tp, rp_txn *txn, int write) {
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    Txn *t = (Txn *)alloc(tp, 0);
    if (t == NULL) return NULL;
    t->txn = txn;
    Py_INCREF(env);
    t->env = env;
    t->owner = PyThread_get_thread_ident();
    t->mode = OWNED;
    t->write = write;
    Py_INCREF(s_open);
    t->state = s_open;
    Py_INCREF(Py_None);
    t->observer = Py_None;
    if (PySet_Add(env->live, (PyObject *)t) < 0) {
        t->txn = NULL; /* the caller ends txn */
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static PyObject *env_read(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    EnvCore *env = (EnvCore *)self_;
    if (env->closing || env->env == NULL) return closed_error(env, "begin a read snapshot");
    rp_txn *txn;
    int rc;
    if (env->nparked) {
        txn = env->parked[--env->nparked];
        rc = E.rp_txn_renew(txn);
        if (rc != 0) E.rp_txn_abort(txn);
    } else {
        rc = E.rp_txn_begin(env->env, 0, &txn);
    }
    if (rc != 0) return engine_error(rc, "cannot begin a read snapshot", NULL, env->path);
    PyObject *snap = new_txn(env, (PyTypeObject *)env->snapshot_type, txn, 0);
    if (snap == NULL) E.rp_txn_abort(txn);
    return snap;
}

/* _attach(address, snapshot_type): the engine handle rp_env_open gave. */
static PyObject *env_attach(PyObject *self_, PyObject *args) {
    EnvCore *env = (EnvCore *)self_;
    PyObject *addr, *tp;
    if (!PyArg_ParseTuple(args, "OO:_attach", &addr, &tp)) return NULL;
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "realmpy._native: bind_engine() was not called");
        return NULL;
    }
    if (!PyType_Check(tp) || !PyType_IsSubtype((PyTypeObject *)tp, (PyTypeObject *)ReadTxn_Type)) {
        PyErr_SetString(PyExc_TypeError, "_attach: snapshot_type must subclass ReadTxn");
        return NULL;
    }
    if (env->live == NULL || env->names == NULL || env->path == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_attach: set _live, _names and _path first");
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) return NULL;
    env->env = p;
    Py_INCREF(tp);
    XSETREF(env->snapshot_type, tp);
    env->closing = 0;
    Py_RETURN_NONE;
}

/* _detach(end_parked): forget the engine handle (the caller closes it);
 * end the parked handles unless they are not ours (a forked child). */
static PyObject *env_detach(PyObject *self_, PyObject *end_parked) {
    EnvCore *env = (EnvCore *)self_;
    int end = PyObject_IsTrue(end_parked);
    if (end < 0) return NULL;
    while (env->nparked) {
        rp_txn *txn = env->parked[--env->nparked];
        if (end) E.rp_txn_abort(txn);
    }
    env->env = NULL;
    Py_RETURN_NONE;
}

/* _adopt(cls, address): a transaction object of cls (a subclass of
 * WriteTxn or ReadTxn) for an engine txn begun through cffi. */
static PyObject *env_adopt(PyObject *self_, PyObject *args) {
    PyObject *cls, *addr;
    if (!PyArg_ParseTuple(args, "OO:_adopt", &cls, &addr)) return NULL;
    int write = PyType_Check(cls) && PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)WriteTxn_Type);
    if (!write && !(PyType_Check(cls) && PyType_IsSubtype((PyTypeObject *)cls,
                                                          (PyTypeObject *)ReadTxn_Type))) {
        PyErr_SetString(PyExc_TypeError, "_adopt: cls must subclass ReadTxn or WriteTxn");
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "_adopt: NULL txn");
        return NULL;
    }
    return new_txn((EnvCore *)self_, (PyTypeObject *)cls, p, write);
}

static PyObject *env_handle(PyObject *self_, void *Py_UNUSED(closure)) {
    EnvCore *env = (EnvCore *)self_;
    if (env->env == NULL) Py_RETURN_NONE;
    return PyLong_FromVoidPtr(env->env);
}

static int env_traverse(PyObject *self_, visitproc visit, void *arg) {
    EnvCore *env = (EnvCore *)self_;
    Py_VISIT(env->live);
    Py_VISIT(env->names);
    Py_VISIT(env->path);
    Py_VISIT(env->snapshot_type);
    Py_VISIT(Py_TYPE(self_));
    return 0;
}

static int env_clear(PyObject *self_) {
    EnvCore *env = (EnvCore *)self_;
    Py_CLEAR(env->live);
    Py_CLEAR(env->names);
    Py_CLEAR(env->path);
    Py_CLEAR(env->snapshot_type);
    return 0;
}

static PyObject *env_new(PyTypeObject *tp, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k)) {
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    EnvCore *env = (EnvCore *)alloc(tp, 0);
    if (env != NULL) env->closing = 1; /* until attached: close() works on a failed open */
    return (PyObject *)env;
}

/* An environment collected without close() (its __del__ closes it, so this
 * happens only when __del__ did not run: interpreter shutdown) leaves its
 * handle to the process's exit. */
static void env_dealloc(PyObject *self_) { gc_dealloc(self_, env_clear); }

static PyMemberDef env_members[] = {
    {"_closing", T_BOOL, offsetof(EnvCore, closing), 0, "no new work is accepted"},
    {"_live", T_OBJECT, offsetof(EnvCore, live), 0, "the open transactions"},
    {"_names", T_OBJECT, offsetof(EnvCore, names), 0, "table name -> encoded name"},
    {"_path", T_OBJECT, offsetof(EnvCore, path), 0, "the data file's path"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef env_getset[] = {
    {"_handle", env_handle, NULL, "the engine handle's address (None when released)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef env_methods[] = {
    {"read", env_read, METH_NOARGS,
     "Begin a read snapshot of the latest version (see storage.Environment.read)."},
    {"_attach", env_attach, METH_VARARGS, NULL},
    {"_detach", env_detach, METH_O, NULL},
    {"_adopt", env_adopt, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot env_slots[] = {
    {Py_tp_doc, "The C half of storage.Environment (csrc/py/storage.c)."},
    {Py_tp_new, env_new},
    {Py_tp_dealloc, env_dealloc},
    {Py_tp_traverse, env_traverse},
    {Py_tp_clear, env_clear},
    {Py_tp_members, env_members},
    {Py_tp_getset, env_getset},
    {Py_tp_methods, env_methods},
    {0, NULL},
};

PyType_Spec envcore_spec = {
    "realmpy._native.EnvCore",
    sizeof(EnvCore),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    env_slots,
};

/* ---- TxnBase ------------------------------------------------------------------------------- */

/* Mark t ended with state and return its engine txn, which the caller
 * then ends (abort, park, commit) before calling unregister(t). */
static rp_txn *take_txn(Txn *t, PyObject *state) {
    rp_txn *txn = t->txn;
    t->txn = NULL;
    t->owner = 0;
    t->mode = ENDED;
    Py_INCREF(state);
    SETREF(t->state, state);
    Py_CLEAR(t->pointer);
    return txn;
}

/* t has ended: drop it from the live set; once the environment is closing,
 * the last transaction to end frees it.  0, or -1 with an exception. */
static int unregister(Txn *t) {
    EnvCore *env = t->env;
    if (PySet_Discard(env->live, (PyObject *)t) < 0) return -1;
    if (env->closing) {
        PyObject *r = PyObject_CallMethodObjArgs((PyObject *)env, s_release_if_idle, NULL);
        if (r == NULL) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* End a read txn: park it for the next read() while there is room (it
 * pins nothing then), else free it. */
static void park_or_abort(EnvCore *env, rp_txn *txn) {
    if (env->nparked < PARKED_MAX && !env->closing && env->env != NULL &&
        E.rp_txn_reset(txn) == 0)
        env->parked[env->nparked++] = txn;
    else
        E.rp_txn_abort(txn);
}

static PyObject *txn_get(PyObject *self_, PyObject *const *args, Py_ssize_t nargs) {
    Txn *t = (Txn *)self_;
    KeyCall c;
    if (key_call(t, args, nargs, 2, "get", 0, &c)) return NULL;
    const void *val;
    size_t vlen;
    PyObject *result = NULL;
    int rc = E.rp_get(t->txn, c.np, (size_t)c.nn, c.kp, (size_t)c.kn, &val, &vlen);
    if (rc == 0)
        result = PyBytes_FromStringAndSize(val, (Py_ssize_t)vlen);
    else if (rc == RP_NOTFOUND)
        result = Py_NewRef(Py_None);
    else
        engine_error(rc, "get failed", args[0], t->env->path);
    key_call_done(&c);
    return result;
}

static PyObject *txn_abort(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    Txn *t = (Txn *)self_;
    if (t->owner != PyThread_get_thread_ident()) {
        if (t->mode == ENDED) Py_RETURN_NONE;
        if (not_owner(t)) return NULL;
    }
    rp_txn *txn = take_txn(t, s_aborted);
    if (t->write)
        E.rp_txn_abort(txn);
    else
        park_or_abort(t->env, txn);
    if (unregister(t)) return NULL;
    Py_RETURN_NONE;
}

/* _end(state): end the transaction (aborting it) with that state; the
 * owner's (or a shared snapshot's) only: Environment.close, a failed refresh. */
static PyObject *txn_end_as(PyObject *self_, PyObject *state) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    if (t->mode == ENDED || t->txn == NULL) Py_RETURN_NONE;
    E.rp_txn_abort(take_txn(t, state));
    if (unregister(t)) return NULL;
    Py_RETURN_NONE;
}

/* _handle(): the cffi pointer of the engine txn, for storage.py's cffi
 * calls (checked like every call: owner thread, not ended). */
static PyObject *txn_handle(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    if (t->txn == NULL) { /* a shared snapshot that ended */
        t->mode = ENDED;
        not_owner(t);
        return NULL;
    }
    if (t->pointer == NULL) {
        PyObject *addr = PyLong_FromVoidPtr(t->txn);
        if (addr == NULL) return NULL;
        t->pointer = PyObject_CallFunctionObjArgs(make_pointer, addr, NULL);
        Py_DECREF(addr);
        if (t->pointer == NULL) return NULL;
    }
    return Py_NewRef(t->pointer);
}

/* _set_shared(): after rp_txn_share, any thread may use the snapshot. */
static PyObject *txn_set_shared(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    t->mode = SHARED;
    t->owner = 0;
    Py_RETURN_NONE;
}

static PyObject *txn_get_version(PyObject *self_, void *Py_UNUSED(closure)) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    if (t->version == NULL) {
        t->version = PyLong_FromUnsignedLongLong(E.rp_txn_version(t->txn));
        if (t->version == NULL) return NULL;
    }
    return Py_NewRef(t->version);
}

static PyObject *txn_get_owner(PyObject *self_, void *Py_UNUSED(closure)) {
    Txn *t = (Txn *)self_;
    if (t->mode == OWNED) return PyLong_FromUnsignedLong(t->owner);
    return PyLong_FromLong(t->mode == ENDED ? -1 : -2);
}

static PyObject *txn_get_active(PyObject *self_, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(((Txn *)self_)->mode != ENDED);
}

static int txn_set_version(PyObject *self_, PyObject *value, void *Py_UNUSED(closure)) {
    Txn *t = (Txn *)self_;
    Py_XINCREF(value == Py_None ? NULL : value);
    XSETREF(t->version, value == Py_None ? NULL : value);
    return 0;
}

static int txn_traverse(PyObject *self_, visitproc visit, void *arg) {
    Txn *t = (Txn *)self_;
    Py_VISIT(t->env);
    Py_VISIT(t->observer);
    Py_VISIT(t->pointer);
    Py_VISIT(Py_TYPE(self_));
    return 0;
}

static int txn_clear(PyObject *self_) {
    Txn *t = (Txn *)self_;
    Py_CLEAR(t->observer);
    Py_CLEAR(t->pointer);
    Py_CLEAR(t->version);
    Py_CLEAR(t->state);
    Py_CLEAR(t->env);
    return 0;
}

/* A live transaction is in its environment's _live set, so it is freed
 * only once ended (or with the environment, at exit). */
static void txn_dealloc(PyObject *self_) { gc_dealloc(self_, txn_clear); }

static PyObject *txn_new(PyTypeObject *tp, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k)) {
    (void)tp;
    PyErr_SetString(PyExc_TypeError, "transactions are made by Environment.read()/write()");
    return NULL;
}

static PyMemberDef txn_members[] = {
    {"_env", T_OBJECT, offsetof(Txn, env), READONLY, "the environment"},
    {"_state", T_OBJECT, offsetof(Txn, state), READONLY, "open, ended, committed, ..."},
    {"_observer", T_OBJECT, offsetof(Txn, observer), 0, "the history observer, or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef txn_getset[] = {
    {"version", txn_get_version, NULL,
     "The version this transaction reads (a write transaction: the version it will "
     "commit, minus one).",
     NULL},
    {"_version", NULL, txn_set_version, "set to None: forget the cached version", NULL},
    {"_owner", txn_get_owner, NULL, "owner thread id; -1 ended, -2 shared", NULL},
    {"active", txn_get_active, NULL,
     "True until the transaction is committed, aborted or ended.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *txn_scan_iter(PyObject *self_, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef txn_methods[] = {
    {"get", (PyCFunction)(void (*)(void))txn_get, METH_FASTCALL,
     "get(table, key): the value stored under key in table, or None."},
    {"abort", txn_abort, METH_NOARGS,
     "End the transaction, discarding any changes.  Idempotent."},
    {"_end", txn_end_as, METH_O, NULL},
    {"_handle", txn_handle, METH_NOARGS, NULL},
    {"_set_shared", txn_set_shared, METH_NOARGS, NULL},
    {"_scan_iter", (PyCFunction)(void (*)(void))txn_scan_iter, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot txn_slots[] = {
    {Py_tp_doc, "What snapshots and write transactions share (csrc/py/storage.c)."},
    {Py_tp_new, txn_new},
    {Py_tp_dealloc, txn_dealloc},
    {Py_tp_traverse, txn_traverse},
    {Py_tp_clear, txn_clear},
    {Py_tp_members, txn_members},
    {Py_tp_getset, txn_getset},
    {Py_tp_methods, txn_methods},
    {0, NULL},
};

PyType_Spec txnbase_spec = {
    "realmpy._native.TxnBase",
    sizeof(Txn),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    txn_slots,
};

/* ---- ScanIter ------------------------------------------------------------------------------ */

#define FIRST_BATCH_ITEMS 16       /* a scan that stops early copies little */
#define MAX_BATCH_ITEMS (1 << 16)  /* batches grow 8x up to this            */
#define FIRST_BATCH_BYTES (16 << 10)
#define MAX_BATCH_BYTES (1 << 20)

typedef struct {
    PyObject_HEAD
    Txn *txn;
    PyObject *table;  /* as given (for errors)                             */
    PyObject *name;   /* encoded table name                                */
    PyObject *start;  /* bytes or NULL: keys >= start                      */
    PyObject *stop;   /* bytes or NULL: keys < stop                        */
    PyObject *decode; /* NULL: values as bytes; else decode(batch) -> flat */
    PyObject *last;   /* the last key handed out, or NULL                  */
    PyObject *items;  /* [k0, v0, k1, v1, ...] of the current batch        */
    Py_ssize_t pos;
    Py_ssize_t max_items;
    int reverse, done;
    char *buf;
    size_t size;
} ScanIter;

/* A batch of plain values as [k0, v0, ...]: the engine's msgpack array of
 * bin strings, read here (no msgpack library call, no buffer object). */
static PyObject *bins_to_list(const uint8_t *p, const uint8_t *e) {
    uint64_t count;
    p = rp_mp_array(p, e, &count);
    if (p == NULL || count > (uint64_t)(e - p)) goto bad;
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL) return NULL;
    for (uint64_t i = 0; i < count; i++) {
        unsigned tag = p < e ? *p : 0;
        if (tag < RP_MP_BIN8 || tag > RP_MP_BIN32) break;
        unsigned w = rp_mp_after_tag(tag);
        if ((size_t)(e - p) < 1 + w) break;
        uint64_t len = rp_mp_be(p + 1, w);
        p += 1 + w;
        if (len > (uint64_t)(e - p)) break;
        PyObject *b = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)len);
        if (b == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SetItem(list, (Py_ssize_t)i, b);
        p += len;
        if (i + 1 == count) return list;
    }
    Py_DECREF(list);
bad:
    PyErr_SetString(PyExc_SystemError, "rp_cursor_batch: malformed batch");
    return NULL;
}

/* Position cur where the next batch starts (the logic of storage.py's
 * scan bounds: keys are 1..RP_MAX_KEY bytes, so a bound longer than that
 * is replaced by its prefix with the right strictness).  *flags loses
 * RP_BATCH_CURRENT when the entry found must be skipped. */
static int scan_seek(ScanIter *it, rp_cursor *cur, unsigned *flags) {
    const void *k, *v;
    size_t kl, vl;
    char *p;
    Py_ssize_t n;
    if (!it->reverse) {
        PyObject *key = it->last != NULL ? it->last : it->start;
        int exclusive = it->last != NULL;
        if (key == NULL) return E.rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, &k, &kl, &v, &vl);
        if (PyBytes_AsStringAndSize(key, &p, &n)) return -1000;
        if (n > RP_MAX_KEY) { /* k >= start <=> k > start[:MAX_KEY] */
            n = RP_MAX_KEY;
            exclusive = 1;
        }
        int rc = E.rp_cursor_seek(cur, RP_SEEK_GE, p, (size_t)n, &k, &kl, &v, &vl);
        if (exclusive && rc == 0 && kl == (size_t)n && memcmp(k, p, kl) == 0)
            *flags &= ~(unsigned)RP_BATCH_CURRENT;
        return rc;
    }
    PyObject *edge = it->last != NULL ? it->last : it->stop;
    if (edge == NULL) return E.rp_cursor_seek(cur, RP_SEEK_LAST, NULL, 0, &k, &kl, &v, &vl);
    if (PyBytes_AsStringAndSize(edge, &p, &n)) return -1000;
    if (n <= RP_MAX_KEY) return E.rp_cursor_seek(cur, RP_SEEK_LT, p, (size_t)n, &k, &kl, &v, &vl);
    /* k < edge <=> k <= edge[:MAX_KEY] for keys of <= MAX_KEY bytes */
    int rc = E.rp_cursor_seek(cur, RP_SEEK_GE, p, RP_MAX_KEY, &k, &kl, &v, &vl);
    if (rc == 0 && kl == RP_MAX_KEY && memcmp(k, p, kl) == 0) return rc;
    return E.rp_cursor_seek(cur, RP_SEEK_LT, p, RP_MAX_KEY, &k, &kl, &v, &vl);
}

/* Read the next batch into it->items; 0 (items may be empty: the end), or
 * -1 with an exception. */
static int scan_refill(ScanIter *it) {
    Txn *t = it->txn;
    CHECK_OWNER(t, -1);
    char *np;
    Py_ssize_t nn;
    if (PyBytes_AsStringAndSize(it->name, &np, &nn)) return -1;
    rp_cursor *cur;
    int rc = E.rp_cursor_open(t->txn, np, (size_t)nn, &cur);
    if (rc == RP_NOTFOUND) return 0;
    if (rc != 0) goto fail;
    unsigned flags = RP_BATCH_CURRENT | (it->decode != NULL ? RP_BATCH_RAW_VALUES : 0);
    rc = scan_seek(it, cur, &flags);
    if (rc == -1000) {
        E.rp_cursor_close(cur);
        return -1;
    }
    PyObject *bound = it->reverse ? it->start : it->stop;
    char *bp = NULL;
    Py_ssize_t bn = 0;
    if (rc == 0 && bound != NULL && PyBytes_AsStringAndSize(bound, &bp, &bn)) {
        E.rp_cursor_close(cur);
        return -1;
    }
    size_t n = 0, used = 0;
    while (rc == 0) {
        if (it->buf == NULL) {
            it->buf = PyMem_Malloc(it->size);
            if (it->buf == NULL) {
                E.rp_cursor_close(cur);
                PyErr_NoMemory();
                return -1;
            }
        }
        rc = E.rp_cursor_batch(cur, it->reverse ? -1 : 1, flags, bp, (size_t)bn, it->buf,
                               it->size, (size_t)it->max_items, &n, &used);
        if (rc != 0 || n > 0 || used <= it->size) break;
        PyMem_Free(it->buf); /* the next record needs more room */
        it->buf = NULL;
        it->size = used;
        /* The cursor was left on that record: the retry starts with it
         * (without this an exclusive resume skipped every record that
         * needed a bigger buffer). */
        flags |= RP_BATCH_CURRENT;
    }
    E.rp_cursor_close(cur);
    if (rc == RP_NOTFOUND || (rc == 0 && n == 0)) return 0;
    if (rc != 0) goto fail;
    PyObject *items;
    if (it->decode == NULL) {
        items = bins_to_list((const uint8_t *)it->buf, (const uint8_t *)it->buf + used);
    } else {
        PyObject *batch = PyBytes_FromStringAndSize(it->buf, (Py_ssize_t)used);
        if (batch == NULL) return -1;
        items = PyObject_CallFunctionObjArgs(it->decode, batch, NULL);
        Py_DECREF(batch);
        if (items != NULL && (!PyList_Check(items) || PyList_Size(items) % 2)) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_TypeError, "scan: the decoder must return a flat list of pairs");
            items = NULL;
        }
    }
    if (items == NULL) return -1;
    XSETREF(it->items, items);
    it->pos = 0;
    Py_ssize_t len = PyList_Size(items);
    if (len >= 2) {
        PyObject *last = PyList_GetItem(items, len - 2);
        Py_INCREF(last);
        XSETREF(it->last, last);
    }
    if (it->max_items < MAX_BATCH_ITEMS) {
        it->max_items *= 8;
        if (it->size < MAX_BATCH_BYTES) { /* room for the bigger batches */
            PyMem_Free(it->buf);
            it->buf = NULL;
            it->size = it->size * 8 < MAX_BATCH_BYTES ? it->size * 8 : MAX_BATCH_BYTES;
        }
    }
    return 0;
fail:
    engine_error(rc, "scan failed", it->table, t->env->path);
    return -1;
}

static PyObject *scan_next(PyObject *self_) {
    ScanIter *it = (ScanIter *)self_;
    if (it->items == NULL || it->pos >= PyList_Size(it->items)) {
        if (it->done) return NULL;
        Py_CLEAR(it->items);
        if (scan_refill(it)) return NULL;
        if (it->items == NULL || PyList_Size(it->items) == 0) {
            it->done = 1;
            Py_CLEAR(it->items);
            return NULL;
        }
    }
    PyObject *pair = PyTuple_Pack(2, PyList_GetItem(it->items, it->pos),
                                  PyList_GetItem(it->items, it->pos + 1));
    if (pair != NULL) it->pos += 2;
    return pair;
}

static int scan_traverse(PyObject *self_, visitproc visit, void *arg) {
    ScanIter *it = (ScanIter *)self_;
    Py_VISIT(it->txn);
    Py_VISIT(it->decode);
    Py_VISIT(it->items);
    Py_VISIT(Py_TYPE(self_));
    return 0;
}

static int scan_clear(PyObject *self_) {
    ScanIter *it = (ScanIter *)self_;
    Py_CLEAR(it->txn);
    Py_CLEAR(it->table);
    Py_CLEAR(it->name);
    Py_CLEAR(it->start);
    Py_CLEAR(it->stop);
    Py_CLEAR(it->decode);
    Py_CLEAR(it->last);
    Py_CLEAR(it->items);
    return 0;
}

static void scan_dealloc(PyObject *self_) {
    ScanIter *it = (ScanIter *)self_;
    PyMem_Free(it->buf);
    it->buf = NULL;
    gc_dealloc(self_, scan_clear);
}

static PyType_Slot scan_slots[] = {
    {Py_tp_doc, "The iterator of scan() / scan_msgpack() (csrc/py/storage.c)."},
    {Py_tp_new, txn_new},
    {Py_tp_dealloc, scan_dealloc},
    {Py_tp_traverse, scan_traverse},
    {Py_tp_clear, scan_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, scan_next},
    {0, NULL},
};

PyType_Spec scaniter_spec = {
    "realmpy._native.ScanIter",
    sizeof(ScanIter),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    scan_slots,
};

static PyObject *optional_bytes(PyObject *o) {
    if (o == Py_None) return NULL;
    Py_INCREF(o);
    return o;
}

/* _scan_iter(table, name, start, stop, reverse, decode): the records of
 * [start, stop) (None: unbounded), read lazily; storage.py checked the
 * arguments (bytes or None; reverse a bool; decode None or callable). */
static PyObject *txn_scan_iter(PyObject *self_, PyObject *const *args, Py_ssize_t nargs) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    if (nargs_is(nargs, 6, "_scan_iter")) return NULL;
    if (!PyBytes_Check(args[1]) || (args[2] != Py_None && !PyBytes_Check(args[2]))
        || (args[3] != Py_None && !PyBytes_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError, "_scan_iter: name, start and stop must be bytes");
        return NULL;
    }
    int reverse = PyObject_IsTrue(args[4]);
    if (reverse < 0) return NULL;
    allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)ScanIter_Type, Py_tp_alloc);
    ScanIter *it = (ScanIter *)alloc((PyTypeObject *)ScanIter_Type, 0);
    if (it == NULL) return NULL;
    Py_INCREF(t);
    it->txn = t;
    Py_INCREF(args[0]);
    it->table = args[0];
    Py_INCREF(args[1]);
    it->name = args[1];
    it->start = optional_bytes(args[2]);
    it->stop = optional_bytes(args[3]);
    it->decode = optional_bytes(args[5]);
    it->reverse = reverse;
    it->max_items = FIRST_BATCH_ITEMS;
    it->size = FIRST_BATCH_BYTES;
    return (PyObject *)it;
}

/* ---- ReadTxn ------------------------------------------------------------------------------- */

/* end(*exc_info): also __exit__ (the arguments are ignored), which saves a
 * call on the read hot path.  The handle is parked for the next read(). */
static PyObject *snapshot_end(PyObject *self_, PyObject *const *Py_UNUSED(args),
                              Py_ssize_t Py_UNUSED(nargs)) {
    Txn *t = (Txn *)self_;
    if (t->owner != PyThread_get_thread_ident()) {
        if (t->mode == ENDED) Py_RETURN_NONE;
        if (not_owner(t)) return NULL;
        if (t->txn == NULL) Py_RETURN_NONE; /* shared and already ended */
    }
    park_or_abort(t->env, take_txn(t, s_ended));
    if (unregister(t)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *snapshot_enter(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    return Py_NewRef(self_);
}

static PyObject *snapshot_latest_version(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    if (t->env->env == NULL) return closed_error(t->env, "read the version");
    return PyLong_FromUnsignedLongLong(E.rp_env_version(t->env->env));
}

static PyMethodDef snapshot_methods[] = {
    {"end", (PyCFunction)(void (*)(void))snapshot_end, METH_FASTCALL,
     "End the snapshot, unpinning its version.  Idempotent.  Also __exit__."},
    {"__exit__", (PyCFunction)(void (*)(void))snapshot_end, METH_FASTCALL, NULL},
    {"abort", (PyCFunction)(void (*)(void))snapshot_end, METH_FASTCALL,
     "The same as end()."},
    {"__enter__", snapshot_enter, METH_NOARGS, NULL},
    {"latest_version", snapshot_latest_version, METH_NOARGS,
     "The environment's latest committed version (one atomic load)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot snapshot_slots[] = {
    {Py_tp_doc, "The C half of storage.Snapshot (csrc/py/storage.c)."},
    {Py_tp_dealloc, txn_dealloc},
    {Py_tp_traverse, txn_traverse},
    {Py_tp_clear, txn_clear},
    {Py_tp_methods, snapshot_methods},
    {0, NULL},
};

PyType_Spec readtxn_spec = {
    "realmpy._native.ReadTxn",
    sizeof(Txn),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    snapshot_slots,
};

/* ---- WriteTxn ------------------------------------------------------------------------------ */

/* Tell the history observer (if any) that table's key is about to change.
 * 0, or -1 with an exception (the observer's, or the transaction ended
 * under it). */
/* See native.h. */
int note_changed(PyObject *changed, PyObject *table, PyObject *key) {
    PyObject *seen = PyDict_GetItemWithError(changed, table);
    if (seen == NULL) {
        if (PyErr_Occurred()) return -1;
        PyObject *one = PySet_New(NULL);
        if (one == NULL) return -1;
        int rc = PySet_Add(one, key) < 0 ? -1 : PyDict_SetItem(changed, table, one);
        Py_DECREF(one);
        return rc;
    }
    if (seen == Py_None) return 0;
    if (PySet_Size(seen) >= CHANGED_KEYS_MAX) return PyDict_SetItem(changed, table, Py_None);
    return PySet_Add(seen, key);
}

/* pack_changes(changed, skip) -> bytes: a transaction's change record
 * (dict: table -> set of keys, or None for any key) as stored
 * (realmpy.changelog, docs/format.md "change records"): a msgpack map from
 * each table but skip to the array of its keys (bin, ascending), or nil
 * for any key or more than CHANGED_KEYS_MAX of them; the bytes
 * msgpack.packb(..., use_bin_type=True) makes of that map, without building
 * it or a Packer per commit. */
PyObject *sp_pack_changes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs_is(nargs, 2, "pack_changes")) return NULL;
    PyObject *changed = args[0], *skip = args[1];
    if (!PyDict_CheckExact(changed) || !PyUnicode_Check(skip)) {
        PyErr_SetString(PyExc_TypeError, "pack_changes(changed: dict, skip: str)");
        return NULL;
    }
    PyObject *items = PyDict_Items(changed); /* a snapshot: sorting may run code */
    if (items == NULL) return NULL;
    Buf b = {NULL, 0, 0};
    PyObject *out = NULL;
    Py_ssize_t n = PyList_Size(items), m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int eq = PyUnicode_Compare(PyTuple_GetItem(PyList_GetItem(items, i), 0), skip);
        if (eq == -1 && PyErr_Occurred()) goto done;
        m += eq != 0;
    }
    int rc = mp_count(&b, MP_MAP, (size_t)m);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *pair = PyList_GetItem(items, i);
        PyObject *table = PyTuple_GetItem(pair, 0), *keys = PyTuple_GetItem(pair, 1);
        if (PyUnicode_Compare(table, skip) == 0) continue;
        rc = mp_value(&b, table);
        if (rc != 0) break;
        if (keys == Py_None || !PyAnySet_Check(keys) || PySet_Size(keys) > CHANGED_KEYS_MAX) {
            if (keys != Py_None && !PyAnySet_Check(keys)) {
                PyErr_SetString(PyExc_TypeError, "pack_changes: keys must be a set or None");
                goto done;
            }
            rc = buf_head(&b, RP_MP_NIL, 0, 0);
            continue;
        }
        PyObject *sorted = PySequence_List(keys);
        if (sorted == NULL || PyList_Sort(sorted) < 0) {
            Py_XDECREF(sorted);
            goto done;
        }
        Py_ssize_t k = PyList_Size(sorted);
        rc = mp_count(&b, MP_ARRAY, (size_t)k);
        for (Py_ssize_t j = 0; rc == 0 && j < k; j++) {
            PyObject *key = PyBytes_FromObject(PyList_GetItem(sorted, j)); /* bin, as packb */
            rc = key == NULL ? -1 : mp_value(&b, key);
            Py_XDECREF(key);
        }
        Py_DECREF(sorted);
    }
    if (rc > 0) PyErr_SetString(PyExc_TypeError, "pack_changes: tables must be strs");
    if (rc == 0) out = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
done:
    PyMem_Free(b.p);
    Py_DECREF(items);
    return out;
}

/* Before a put or delete: a transaction that only keeps its change record
 * (observer is that dict, storage.WriteTransaction.track_changes) notes the
 * key here; a history observer (or one not looked up yet) is called. */
static int observe(Txn *t, PyObject *table, PyObject *key) {
    if (t->observer == Py_None) return 0;
    if (PyDict_CheckExact(t->observer)) return note_changed(t->observer, table, key);
    PyObject *keys = PyTuple_Pack(1, key);
    if (keys == NULL) return -1;
    PyObject *r = PyObject_CallMethodObjArgs((PyObject *)t, s_observe, table, keys, NULL);
    Py_DECREF(keys);
    if (r == NULL) return -1;
    Py_DECREF(r);
    if (t->txn == NULL) { /* the observer ended it */
        t->mode = ENDED;
        return not_owner(t);
    }
    return 0;
}

static int is_history_key(const char *np, Py_ssize_t nn, const char *kp, Py_ssize_t kn) {
    return nn == 5 && memcmp(np, "_meta", 5) == 0 && kn == 7 && memcmp(kp, "history", 7) == 0;
}

static PyObject *wtxn_put(PyObject *self_, PyObject *const *args, Py_ssize_t nargs) {
    Txn *t = (Txn *)self_;
    KeyCall c;
    if (key_call(t, args, nargs, 3, "put", 0, &c)) return NULL;
    PyObject *result = NULL;
    PyObject *value = bytes_arg(args[2], "value");
    char *vp;
    Py_ssize_t vn;
    if (value == NULL || view(value, &vp, &vn) || observe(t, args[0], c.key)) goto done;
    int rc = E.rp_put(t->txn, c.np, (size_t)c.nn, c.kp, (size_t)c.kn, vp, (size_t)vn);
    if (rc != 0)
        engine_error(rc, "put failed", args[0], t->env->path);
    else if (is_history_key(c.np, c.nn, c.kp, c.kn))
        result = PyObject_CallMethodObjArgs(self_, s_history_written, NULL);
    else
        result = Py_NewRef(Py_None);
done:
    Py_XDECREF(value);
    key_call_done(&c);
    return result;
}

static PyObject *wtxn_delete(PyObject *self_, PyObject *const *args, Py_ssize_t nargs) {
    Txn *t = (Txn *)self_;
    KeyCall c;
    if (key_call(t, args, nargs, 2, "delete", 1, &c)) return NULL;
    PyObject *result = NULL;
    int rc = E.rp_del(t->txn, c.np, (size_t)c.nn, c.kp, (size_t)c.kn);
    if (rc == 0 || rc == RP_NOTFOUND)
        result = PyBool_FromLong(rc == 0);
    else
        engine_error(rc, "delete failed", args[0], t->env->path);
    key_call_done(&c);
    return result;
}

/* _commit(): commit and end; the version created.  The history observer's
 * before_commit has run (storage.WriteTransaction.commit).  The GIL is
 * released for the commit (it syncs). */
static PyObject *wtxn_commit(PyObject *self_, PyObject *Py_UNUSED(ignored)) {
    Txn *t = (Txn *)self_;
    CHECK_OWNER(t, NULL);
    rp_txn *txn = take_txn(t, s_committed);
    uint64_t version = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = E.rp_txn_commit_ex(txn, &version);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_INCREF(s_failed);
        SETREF(t->state, s_failed);
    }
    if (unregister(t)) return NULL;
    if (rc != 0) return engine_error(rc, "commit failed (rolled back)", NULL, t->env->path);
    return PyLong_FromUnsignedLongLong(version);
}

static PyMethodDef wtxn_methods[] = {
    {"put", (PyCFunction)(void (*)(void))wtxn_put, METH_FASTCALL,
     "put(table, key, value): insert or replace key -> value (creates the table)."},
    {"delete", (PyCFunction)(void (*)(void))wtxn_delete, METH_FASTCALL,
     "delete(table, key): delete key; whether it existed."},
    {"_commit", wtxn_commit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot wtxn_slots[] = {
    {Py_tp_doc, "The C half of storage.WriteTransaction (csrc/py/storage.c)."},
    {Py_tp_dealloc, txn_dealloc},
    {Py_tp_traverse, txn_traverse},
    {Py_tp_clear, txn_clear},
    {Py_tp_methods, wtxn_methods},
    {0, NULL},
};

PyType_Spec writetxn_spec = {
    "realmpy._native.WriteTxn",
    sizeof(Txn),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    wtxn_slots,
};

/* ---- bind_engine ---------------------------------------------------------------------------- */

static int bind_address(PyObject *addresses, const char *name, void **slot) {
    PyObject *a = PyDict_GetItemString(addresses, name);
    if (a == NULL) {
        PyErr_Format(PyExc_KeyError, "bind_engine: no address for %s", name);
        return -1;
    }
    *slot = PyLong_AsVoidPtr(a);
    return *slot == NULL ? (PyErr_Occurred() ? -1 : (PyErr_Format(PyExc_ValueError,
                                                                   "bind_engine: %s is NULL",
                                                                   name),
                                                     -1))
                         : 0;
}

PyObject *sp_bind_engine(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs_is(nargs, 6, "bind_engine")) return NULL;
    PyObject *addresses = args[0];
    if (!PyDict_Check(addresses)) {
        PyErr_SetString(PyExc_TypeError, "bind_engine: addresses must be a dict");
        return NULL;
    }
    void *p;
#define BIND(name, ret, params)                                   \
    if (bind_address(addresses, #name, &p)) return NULL;          \
    *(void **)&E.name = p;
    HOT_CALLS(BIND)
#undef BIND
    PyObject **slots[] = {&raise_error, &as_bytes, &make_pointer, &TransactionError,
                          &WrongThreadError};
    for (int i = 0; i < 5; i++) {
        Py_INCREF(args[i + 1]);
        XSETREF(*slots[i], args[i + 1]);
    }
    bound = 1;
    Py_RETURN_NONE;
}

static int intern_as(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

int storage_init(void) {
    (void)check_prototypes;
    if (intern_as(&s_open, "open") || intern_as(&s_ended, "ended")
        || intern_as(&s_aborted, "aborted") || intern_as(&s_committed, "committed")
        || intern_as(&s_failed, "failed") || intern_as(&s_observe, "_observe")
        || intern_as(&s_history_written, "_history_key_written")
        || intern_as(&s_encode_name, "_encode_name")
        || intern_as(&s_closed_error, "_closed_error")
        || intern_as(&s_release_if_idle, "_release_if_idle"))
        return -1;
    return 0;
}
