/* add.c -- RealmState.add: Realm.add of one object in one call (issue 15).
 *
 * A loop of realm.add(obj) used to cost about five engine round trips per
 * object through Python wrappers (an existence check, a count, one put per
 * table and index, the record packing), then one native call behind a
 * Python method that still cost as much as the call itself.  So add is a
 * C method of the realm's base class: the common cases run here without a
 * Python frame, in a write transaction whose writes no history observer
 * needs to see:
 *
 *  - a new object of a class with a primary key whose plan
 *    (realmpy.classinfo.AddPlan) says how to encode each property: plain
 *    scalars (a simple class: the bulk path's encoders, bulk.c key_value
 *    and pack_record, so the bytes are exactly add_all's), and for other
 *    classes also lists of plain scalars, to-one links and lists of links
 *    to objects this realm manages (with their backlink entries,
 *    realmpy.backlinkindex) and embedded objects of plain properties
 *    (a map, as Realm._embedded_record builds it);
 *  - add(obj, update=True) of such a class whose key exists: the old
 *    record's index and backlink entries that change are deleted, the new
 *    ones written and the record replaced, as Realm._add (and, for simple
 *    classes, bulkadd.add_simple_each) does.
 *
 * It encodes the key, the record and the index (and backlink) entries,
 * checks in the engine whether the key exists, writes, makes the object
 * managed (objects.c: set_managed) and notes the key in the transaction's
 * change record (realmpy.changelog: the object tables are what listeners
 * read).
 *
 * Everything else calls the realm's _add_slow(obj, update) (realmpy.realm),
 * before anything is written: no _adder (not in a write transaction, or
 * one whose history observer must see every change: a synced file), another
 * thread, an object already managed, a class without a plan, a value the C
 * encoders do not take (a link to an unmanaged object, which the general
 * path adds too, or to another realm instance's object), an existing key
 * without update=True (DuplicatePrimaryKeyError), an old record this does
 * not decode.
 * _add_slow sets _adder at the first add of a transaction where the fast
 * path is allowed, and clears it when the transaction ends.
 */

#include "native.h"
#include "msgpack.h"

#define RP_OK 0
#define RP_NOTFOUND (-30800) /* csrc/realmpy.h */

/* plan = realmpy.classinfo.AddPlan: (table: bytes, names: tuple, pk: str,
 *        indexes: tuple of (name: str, index table: bytes), max_key: int,
 *        pos: dict, table name: str, kinds: bytes | None, extras: tuple |
 *        None). */
enum { P_TABLE, P_NAMES, P_PK, P_INDEXES, P_MAX_KEY, P_POS, P_NAME, P_KINDS, P_EXTRAS, P_SIZE };

/* A property's encoding: realmpy.classinfo's ADD_* codes. */
enum { K_PLAIN = 'p', K_LIST = 'l', K_LINK = 'k', K_LINK_LIST = 'K', K_EMBEDDED = 'e' };

#define EXT_LINK 6 /* codec.EXT_LINK (realmpy.exttypes.RECORD_LINK) */

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

/* ---- entries: engine keys with empty values, kept back to back in a Buf ----
 * Each as [u32 length][u32 tag][the key] (native order; the tag says which
 * table: the index's or the link property's position in the plan). */

static int ent_begin(Buf *b, uint32_t tag, size_t *at) {
    uint32_t head[2] = {0, tag};
    *at = b->len;
    return buf_bytes(b, (const char *)head, sizeof head);
}

/* Close the entry begun at `at`: 0, or 1 if it is longer than max_key (the
 * general path raises the key-limit error). */
static int ent_end(Buf *b, size_t at, Py_ssize_t max_key) {
    uint32_t n = (uint32_t)(b->len - at - 8);
    memcpy(b->p + at, &n, 4);
    return (Py_ssize_t)n > max_key;
}

/* The entry at *off (advanced past it), or NULL after the last. */
static const char *ent_next(const Buf *b, size_t *off, size_t *n, uint32_t *tag) {
    if (*off >= b->len) return NULL;
    uint32_t head[2];
    memcpy(head, b->p + *off, sizeof head);
    const char *p = b->p + *off + 8;
    *off += 8 + head[0];
    *n = head[0];
    *tag = head[1];
    return p;
}

/* ---- msgpack forms beyond bulk.c's scalars (as msgpack-python packs them) ---- */

/* The header of an ExtType of n data bytes. */
static int mp_ext(Buf *b, unsigned char type, size_t n) {
    int rc;
    switch (n) {
    case 1: rc = buf_head(b, 0xd4, 0, 0); break;
    case 2: rc = buf_head(b, 0xd5, 0, 0); break;
    case 4: rc = buf_head(b, 0xd6, 0, 0); break;
    case 8: rc = buf_head(b, 0xd7, 0, 0); break;
    case 16: rc = buf_head(b, 0xd8, 0, 0); break;
    default:
        if (n < 256) rc = buf_head(b, 0xc7, n, 1);
        else if (n < 65536) rc = buf_head(b, 0xc8, n, 2);
        else if (n <= UINT32_MAX) rc = buf_head(b, 0xc9, n, 4);
        else return 1;
    }
    return rc ? rc : buf_head(b, type, 0, 0);
}

/* A list of plain scalars (a list exactly, as a model's validated value). */
static int pack_list(Buf *b, PyObject *v) {
    if (!PyList_CheckExact(v)) return 1;
    PyObject *t = PyList_AsTuple(v); /* a snapshot: packing may run the GC */
    if (t == NULL) return -1;
    Py_ssize_t n = PyTuple_Size(t);
    int rc = mp_count(b, MP_ARRAY, (size_t)n);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) rc = mp_value(b, PyTuple_GetItem(t, i));
    Py_DECREF(t);
    return rc;
}

/* A link to v (None, or an object this realm manages) as stored
 * (codec.Link: EXT_LINK of the target's key) and, unless None, its
 * backlink entry (the target's key, then the object's kb) tagged j in eb. */
static int pack_link(RealmState *r, PyObject *v, Buf *b, Buf *eb, uint32_t j, const Buf *kb,
                     Py_ssize_t max_key) {
    if (v == Py_None) return buf_head(b, RP_MP_NIL, 0, 0);
    if (!is_model(v) || ((ModelBase *)v)->store != (PyObject *)r) return 1;
    PyObject *t = ((ModelBase *)v)->key;
    if (t == NULL || !PyBytes_CheckExact(t)) return 1;
    const char *tp = PyBytes_AsString(t);
    size_t tn = (size_t)PyBytes_Size(t), at;
    if (mp_ext(b, EXT_LINK, tn) || buf_bytes(b, tp, tn)) return -1;
    if (ent_begin(eb, j, &at) || buf_bytes(eb, tp, tn) || buf_bytes(eb, kb->p, kb->len)) return -1;
    return ent_end(eb, at, max_key);
}

static int pack_links(RealmState *r, PyObject *v, Buf *b, Buf *eb, uint32_t j, const Buf *kb,
                      Py_ssize_t max_key) {
    if (!PyList_CheckExact(v)) return 1;
    PyObject *t = PyList_AsTuple(v);
    if (t == NULL) return -1;
    Py_ssize_t n = PyTuple_Size(t);
    int rc = mp_count(b, MP_ARRAY, (size_t)n);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
        rc = pack_link(r, PyTuple_GetItem(t, i), b, eb, j, kb, max_key);
    Py_DECREF(t);
    return rc;
}

/* An embedded object v (None, or an unmanaged object of the plan's class)
 * as a map of its properties in its schema's order, as
 * Realm._embedded_record builds it.  eplan = (class, names, kinds). */
static int pack_embedded(PyObject *v, PyObject *eplan, Buf *b) {
    if (v == Py_None) return buf_head(b, RP_MP_NIL, 0, 0);
    if (!PyTuple_Check(eplan) || PyTuple_Size(eplan) != 3) return bad_plan();
    PyObject *names = PyTuple_GetItem(eplan, 1), *kinds = PyTuple_GetItem(eplan, 2);
    if (!PyTuple_Check(names) || !PyBytes_Check(kinds)
        || PyBytes_Size(kinds) != PyTuple_Size(names))
        return bad_plan();
    if ((PyObject *)Py_TYPE(v) != PyTuple_GetItem(eplan, 0) || !is_model(v)
        || ((ModelBase *)v)->store != NULL)
        return 1;
    PyObject *d = instance_dict(v);
    if (d == NULL) return -1;
    Py_ssize_t m = PyTuple_Size(names);
    const char *k = PyBytes_AsString(kinds);
    int rc = mp_count(b, MP_MAP, (size_t)m);
    for (Py_ssize_t j = 0; rc == 0 && j < m; j++) {
        PyObject *name = PyTuple_GetItem(names, j);
        PyObject *x = PyDict_GetItemWithError(d, name);
        if (x == NULL) {
            rc = PyErr_Occurred() ? -1 : 1;
            break;
        }
        Py_INCREF(x);
        rc = mp_value(b, name);
        if (rc == 0) rc = k[j] == K_PLAIN ? mp_value(b, x) : k[j] == K_LIST ? pack_list(b, x)
                                                                            : bad_plan();
        Py_DECREF(x);
    }
    Py_DECREF(d);
    return rc;
}

/* The record of a class with links, lists or embedded objects (d: the
 * object's values) into b, its backlink entries into eb. */
static int pack_linked(RealmState *r, PyObject *d, PyObject *plan, const Buf *kb,
                       Py_ssize_t max_key, Buf *b, Buf *eb) {
    PyObject *names = PyTuple_GetItem(plan, P_NAMES), *kinds = PyTuple_GetItem(plan, P_KINDS);
    PyObject *extras = PyTuple_GetItem(plan, P_EXTRAS);
    Py_ssize_t m = PyTuple_Size(names);
    if (!PyBytes_Check(kinds) || !PyTuple_Check(extras) || PyBytes_Size(kinds) != m
        || PyTuple_Size(extras) != m)
        return bad_plan();
    const char *k = PyBytes_AsString(kinds);
    int rc = mp_count(b, MP_ARRAY, (size_t)m);
    for (Py_ssize_t j = 0; rc == 0 && j < m; j++) {
        PyObject *v = PyDict_GetItemWithError(d, PyTuple_GetItem(names, j));
        if (v == NULL) return PyErr_Occurred() ? -1 : 1;
        Py_INCREF(v);
        switch (k[j]) {
        case K_PLAIN: rc = mp_value(b, v); break;
        case K_LIST: rc = pack_list(b, v); break;
        case K_LINK: rc = pack_link(r, v, b, eb, (uint32_t)j, kb, max_key); break;
        case K_LINK_LIST: rc = pack_links(r, v, b, eb, (uint32_t)j, kb, max_key); break;
        case K_EMBEDDED: rc = pack_embedded(v, PyTuple_GetItem(extras, j), b); break;
        default: rc = bad_plan();
        }
        Py_DECREF(v);
    }
    return rc;
}

/* ---- index entries ------------------------------------------------------------ */

/* obj's index entries (each: the indexed value's key, then the object's
 * key kb) into ib, one per index in the plan's order. */
static int index_entries(PyObject *d, PyObject *indexes, const Buf *kb, Py_ssize_t max_key,
                         Buf *ib) {
    for (Py_ssize_t i = 0; i < PyTuple_Size(indexes); i++) {
        PyObject *ix = PyTuple_GetItem(indexes, i);
        if (!PyTuple_Check(ix) || PyTuple_Size(ix) != 2) return bad_plan();
        PyObject *v = PyDict_GetItemWithError(d, PyTuple_GetItem(ix, 0));
        if (v == NULL) return PyErr_Occurred() ? -1 : 1;
        size_t at;
        if (ent_begin(ib, (uint32_t)i, &at)) return -1;
        Py_INCREF(v);
        int rc = key_value(ib, v);
        Py_DECREF(v);
        if (rc != 0) return rc;
        if (buf_bytes(ib, kb->p, kb->len)) return -1;
        if (ent_end(ib, at, max_key)) return 1;
    }
    return 0;
}

/* ---- an existing record (add with update=True) ----------------------------------
 * Its index and backlink entries are what an upsert replaces; read before
 * any write moves the record's bytes.  Anything this does not decode (a
 * damaged record, a field missing from an older one, an indexed value that
 * is not an int or str) is the general path's. */

/* Field `at` of the stored record [raw, e) as [*p, *q): 0, or 1. */
static int field_at(const unsigned char *raw, const unsigned char *e, Py_ssize_t at,
                    const unsigned char **p, const unsigned char **q) {
    uint64_t count;
    const unsigned char *f = rp_mp_array(raw, e, &count);
    if (f == NULL || at < 0 || (uint64_t)at >= count) return 1;
    for (Py_ssize_t i = 0; f != NULL && i < at; i++) f = rp_mp_skip(f, e);
    *p = f;
    *q = f == NULL ? NULL : rp_mp_skip(f, e);
    return *q == NULL;
}

/* The old record's index entries, as index_entries makes them, into ob. */
static int old_index_entries(const unsigned char *raw, const unsigned char *e, PyObject *indexes,
                             PyObject *pos, const Buf *kb, Py_ssize_t max_key, Buf *ob) {
    for (Py_ssize_t i = 0; i < PyTuple_Size(indexes); i++) {
        PyObject *ix = PyTuple_GetItem(indexes, i); /* checked by index_entries */
        PyObject *at_o = PyDict_GetItemWithError(pos, PyTuple_GetItem(ix, 0));
        if (at_o == NULL) return PyErr_Occurred() ? -1 : bad_plan();
        Py_ssize_t at = PyLong_AsSsize_t(at_o);
        if (at == -1 && PyErr_Occurred()) return -1;
        const unsigned char *p, *q;
        if (field_at(raw, e, at, &p, &q)) return 1;
        PyObject *v = mp_scalar(p, q);
        if (v == NULL) return PyErr_Occurred() ? -1 : 1;
        size_t start;
        int rc = ent_begin(ob, (uint32_t)i, &start) ? -1 : key_value(ob, v);
        Py_DECREF(v);
        if (rc != 0) return rc;
        if (buf_bytes(ob, kb->p, kb->len)) return -1;
        if (ent_end(ob, start, max_key)) return 1;
    }
    return 0;
}

/* The old backlink entry of the stored link [p, q) (nil, or EXT_LINK of
 * the target's key, as mp_ext packs it), tagged j, into ob. */
static int old_link(const unsigned char *p, const unsigned char *q, uint32_t j, const Buf *kb,
                    Buf *ob) {
    if (*p == RP_MP_NIL && q == p + 1) return 0;
    size_t len, h;
    switch (*p) {
    case 0xd4: len = 1, h = 2; break;
    case 0xd5: len = 2, h = 2; break;
    case 0xd6: len = 4, h = 2; break;
    case 0xd7: len = 8, h = 2; break;
    case 0xd8: len = 16, h = 2; break;
    case 0xc7: len = q - p >= 3 ? p[1] : 0, h = 3; break;
    case 0xc8: len = q - p >= 4 ? rp_mp_be16(p + 1) : 0, h = 4; break;
    case 0xc9: len = q - p >= 6 ? rp_mp_be32(p + 1) : 0, h = 6; break;
    default: return 1;
    }
    if ((size_t)(q - p) != h + len || p[h - 1] != EXT_LINK) return 1;
    size_t at;
    if (ent_begin(ob, j, &at) || buf_bytes(ob, (const char *)p + h, len)
        || buf_bytes(ob, kb->p, kb->len))
        return -1;
    ent_end(ob, at, PY_SSIZE_T_MAX); /* stored once: within the limit */
    return 0;
}

/* The old record's backlink entries (its to-one links and lists of links)
 * into ob, tagged with the property's position as pack_linked tags them. */
static int old_link_entries(const unsigned char *raw, const unsigned char *e, PyObject *plan,
                            const Buf *kb, Buf *ob) {
    PyObject *kinds = PyTuple_GetItem(plan, P_KINDS); /* checked by pack_linked */
    const char *k = PyBytes_AsString(kinds);
    for (Py_ssize_t j = 0; j < PyBytes_Size(kinds); j++) {
        if (k[j] != K_LINK && k[j] != K_LINK_LIST) continue;
        const unsigned char *p, *q;
        if (field_at(raw, e, j, &p, &q)) return 1;
        if (k[j] == K_LINK) {
            int rc = old_link(p, q, (uint32_t)j, kb, ob);
            if (rc != 0) return rc;
            continue;
        }
        uint64_t count;
        const unsigned char *x = rp_mp_array(p, q, &count);
        if (x == NULL) return 1;
        for (uint64_t i = 0; i < count; i++) {
            const unsigned char *y = rp_mp_skip(x, q);
            int rc = y == NULL ? 1 : old_link(x, y, (uint32_t)j, kb, ob);
            if (rc != 0) return rc;
            x = y;
        }
    }
    return 0;
}

/* Whether entries `a` holds the entry [p, p + n) tagged tag. */
static int ent_has(const Buf *a, const char *p, size_t n, uint32_t tag) {
    size_t off = 0, m;
    uint32_t t;
    const char *x;
    while ((x = ent_next(a, &off, &m, &t)) != NULL)
        if (t == tag && m == n && memcmp(x, p, n) == 0) return 1;
    return 0;
}

/* ---- add --------------------------------------------------------------------------- */

/* Add obj (an unmanaged model with no store) with plan in engine
 * transaction txn: 0 added, 1 not written (the caller's general path
 * decides), -1 error. */
static int add_one(RealmState *r, void *txn, PyObject *plan, PyObject *obj, int update) {
    if (!PyTuple_Check(plan) || PyTuple_Size(plan) != P_SIZE) return bad_plan();
    PyObject *table = PyTuple_GetItem(plan, P_TABLE), *names = PyTuple_GetItem(plan, P_NAMES);
    PyObject *pk = PyTuple_GetItem(plan, P_PK), *indexes = PyTuple_GetItem(plan, P_INDEXES);
    PyObject *pos = PyTuple_GetItem(plan, P_POS), *name = PyTuple_GetItem(plan, P_NAME);
    int simple = PyTuple_GetItem(plan, P_KINDS) == Py_None;
    if (!PyTuple_Check(names) || !PyTuple_Check(indexes) || !PyDict_Check(pos)) return bad_plan();
    Py_ssize_t max_key = PyLong_AsSsize_t(PyTuple_GetItem(plan, P_MAX_KEY));
    if (max_key == -1 && PyErr_Occurred()) return -1;
    /* kb: the key; rb: the record; ib, ob: new and old index entries; eb,
     * lb: new and old backlink entries. */
    Buf kb = {NULL, 0, 0}, rb = {NULL, 0, 0}, ib = {NULL, 0, 0}, ob = {NULL, 0, 0};
    Buf eb = {NULL, 0, 0}, lb = {NULL, 0, 0};
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
    if (result == 0)
        result = simple ? pack_record(d, names, PyTuple_Size(names), &rb, &row)
                        : pack_linked(r, d, plan, &kb, max_key, &rb, &eb);
    if (result == 0) result = index_entries(d, indexes, &kb, max_key, &ib);
    if (result != 0) goto done;
    result = -1;

    /* Whether the key exists, in the engine: without update=True that is
     * the general path's DuplicatePrimaryKeyError; with it, the old
     * record's index and backlink entries are read (before any write moves
     * its bytes) to replace them. */
    const char *tp;
    size_t tn;
    if (bytes_of(table, &tp, &tn)) goto done;
    const void *val;
    size_t vlen;
    int rc = engine_get(txn, tp, tn, kb.p, kb.len, &val, &vlen);
    int exists = rc == RP_OK;
    if (exists) {
        const unsigned char *raw = val, *e = raw + vlen;
        result = !update ? 1 : old_index_entries(raw, e, indexes, pos, &kb, max_key, &ob);
        if (result == 0 && !simple) result = old_link_entries(raw, e, plan, &kb, &lb);
        /* Old and new backlink entries are matched pairwise (ent_has):
         * huge lists of links are the general path's (its sets). */
        if (result == 0 && lb.len / 16 * (eb.len / 16) > 65536) result = 1;
        if (result != 0) goto done;
        result = -1;
        rc = RP_NOTFOUND;
    }
    /* Index entries first (an unchanged one stays), then backlink entries,
     * the record last: as in the general path. */
    size_t io = 0, oo = 0, eo = 0, in, on;
    uint32_t tag;
    const char *ip, *op;
    while (rc == RP_NOTFOUND && (ip = ent_next(&ib, &io, &in, &tag)) != NULL) {
        const char *xp;
        size_t xn;
        if (bytes_of(PyTuple_GetItem(PyTuple_GetItem(indexes, tag), 1), &xp, &xn)) goto done;
        if (exists && (op = ent_next(&ob, &oo, &on, &tag)) != NULL) {
            if (on == in && memcmp(op, ip, in) == 0) continue;
            rc = engine_del(txn, xp, xn, op, on);
            if (rc != RP_OK && rc != RP_NOTFOUND) break;
        }
        rc = engine_put(txn, xp, xn, ip, in, "", 0);
        if (rc == RP_OK) rc = RP_NOTFOUND;
    }
    /* Backlink entries: the old record's that the new one lacks go, the
     * new ones it lacked come (an entry may repeat: a list links twice). */
    PyObject *extras = PyTuple_GetItem(plan, P_EXTRAS); /* checked by pack_linked */
    size_t lo = 0;
    while (rc == RP_NOTFOUND && (op = ent_next(&lb, &lo, &on, &tag)) != NULL) {
        const char *xp;
        size_t xn;
        if (ent_has(&eb, op, on, tag)) continue;
        if (bytes_of(PyTuple_GetItem(extras, tag), &xp, &xn)) goto done;
        rc = engine_del(txn, xp, xn, op, on);
        if (rc == RP_OK) rc = RP_NOTFOUND;
    }
    while (rc == RP_NOTFOUND && (ip = ent_next(&eb, &eo, &in, &tag)) != NULL) {
        const char *xp;
        size_t xn;
        if (ent_has(&lb, ip, in, tag)) continue;
        if (bytes_of(PyTuple_GetItem(extras, tag), &xp, &xn)) goto done;
        rc = engine_put(txn, xp, xn, ip, in, "", 0);
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
    /* Managed, caching a simple class's record as it was written (a tuple,
     * as add_all's); other records are read back when first used. */
    if (set_managed(obj, (PyObject *)r, key, row, r->stamp + 1, pos) < 0) goto done;
    r->stamp += 1;
    result = note_changed(r->adder_changed, name, key);
done:
    PyMem_Free(kb.p);
    PyMem_Free(rb.p);
    PyMem_Free(ib.p);
    PyMem_Free(ob.p);
    PyMem_Free(eb.p);
    PyMem_Free(lb.p);
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
    if (r->adder_txn == NULL || nargs < 1 || nargs + nkw > 2 || !r->has_guard
        || r->guard != PyThread_get_thread_ident())
        return add_slow(self, args, nargs, kwnames);
    if (nkw == 1) {
        int is_update = PyUnicode_CompareWithASCIIString(PyTuple_GetItem(kwnames, 0), "update");
        if (is_update != 0) return add_slow(self, args, nargs, kwnames); /* its TypeError */
    }
    PyObject *upd = nargs + nkw == 2 ? args[1] : NULL; /* update, by position or name */
    int update = upd == NULL ? 0 : PyObject_IsTrue(upd);
    if (update < 0) return NULL;
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
    int rc = add_one(r, txn, plan, obj, update);
    Py_DECREF(plan);
    Py_DECREF(obj);
    if (rc < 0) return NULL;
    if (rc > 0) return add_slow(self, args, nargs, kwnames);
    return Py_NewRef(obj);
}
