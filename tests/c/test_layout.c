/*
 * test_layout.c -- the rules of format 3's leaf pages (format.h): leaf
 * entries (1- or 2-byte klen, varint vtag), their bounds checks, which
 * values stay inline, validation of pages that break a rule, the sibling
 * shift that fills leaves of large entries, leaves of interleaved
 * ascending runs, and the refusal of format 1
 * and 2 files (RP_FORMAT_OLD).
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tree.h"

/* A leaf page holding one entry built by rp_leaf_put_head. */
static size_t one_entry_page(uint8_t *page, size_t klen, size_t vlen, int big) {
    uint8_t key[RP_MAX_KEY], ent[RP_MAX_INLINE_ENTRY];
    memset(key, 'k', sizeof key);
    size_t n = rp_leaf_put_head(ent, key, klen, vlen, big);
    size_t body = big ? RP_BIG_REF : vlen;
    memset(ent + n, 'v', body);
    rp_page_init(page, 7, 1, P_LEAF);
    rp_page_insert(page, 0, ent, n + body);
    return n + body;
}

static void test_entry_encoding(void) {
    static const size_t klens[] = {1, 4, 127, 128, 300, RP_MAX_KEY};
    static const size_t vlens[] = {0, 1, 63, 64, 1000, 8191, 8192};
    uint8_t page[RP_PAGE_SIZE];
    for (size_t a = 0; a < sizeof klens / sizeof *klens; a++) {
        for (size_t b = 0; b < sizeof vlens / sizeof *vlens; b++) {
            size_t klen = klens[a], vlen = vlens[b];
            int big = !rp_leaf_inline(klen, vlen);
            size_t size = one_entry_page(page, klen, vlen, big);
            const uint8_t *e;
            E(rp_page_entry(page, 0, &e));
            CHECK(rp_leaf_klen(e) == klen, "klen round trip");
            CHECK(rp_leaf_klen_size(e) == (klen < 128 ? 1u : 2u), "klen in its shortest form");
            CHECK(rp_leaf_vlen(e) == vlen, "vlen round trip");
            CHECK(rp_leaf_big(e) == big, "big flag round trip");
            CHECK(rp_leaf_size(e) == size, "entry size");
            CHECK(rp_leaf_extent(page, e) == size, "checked extent equals the size");
            CHECK(rp_page_validate(page) == NULL, "a well-formed page validates");
            /* Header: klen bytes + key + vtag bytes. */
            CHECK(size - (big ? RP_BIG_REF : vlen)
                      == (klen < 128 ? 1 : 2) + klen + rp_varint_size(vlen * 2),
                  "header size");
        }
    }
}

static void test_inline_limit(void) {
    /* The largest value kept inline, and one byte more: an overflow run. */
    size_t klen = 16, vlen = 0;
    while (rp_leaf_inline(klen, vlen + 1)) vlen++;
    CHECK(vlen >= RP_PAGE_SIZE / 2 - 64, "values up to about half a page stay inline");
    CHECK(rp_leaf_head_size(klen, vlen) + vlen <= RP_MAX_INLINE_ENTRY, "inline bound");
    CHECK(2 * (RP_MAX_INLINE_ENTRY + RP_SLOT_SIZE) <= RP_PAGE_SIZE - RP_PAGE_HEADER,
          "two inline entries fit a leaf");
    uint8_t page[RP_PAGE_SIZE];
    one_entry_page(page, klen, vlen, 1);
    CHECK(rp_page_validate(page) != NULL, "an overflow value that fits inline is refused");
}

/* Damage: every rule the read path relies on gives an error, never a read
 * outside the page. */
static void test_bad_entries(void) {
    uint8_t page[RP_PAGE_SIZE];
    const uint8_t *e;
    /* A vtag whose varint runs to the end of the page. */
    size_t sz = one_entry_page(page, 10, 0, 0);
    CHECK(sz == 12 && rp_slot_off(page, 0) == RP_PAGE_SIZE - sz, "entry at the page end");
    CHECK(rp_page_entry(page, 0, &e) == RP_OK, "entry ending at the page end is fine");
    page[RP_PAGE_SIZE - 1] = 0x80;   /* continuation past the page */
    CHECK(rp_page_entry(page, 0, &e) == RP_CORRUPT, "varint past the page end");
    CHECK(rp_page_validate(page) != NULL, "validate: varint past the page end");
    /* A varint longer than RP_VARINT_MAX, and a non-minimal one. */
    uint8_t v[8];
    uint64_t x;
    memset(v, 0x80, sizeof v);
    CHECK(rp_varint_get(v, v + sizeof v, &x) == 0, "varint over 5 bytes");
    v[0] = 0x80;
    v[1] = 0x00;
    CHECK(rp_varint_get(v, v + 2, &x) == 0, "non-minimal varint");
    v[0] = 0xff;
    v[1] = 0x7f;
    CHECK(rp_varint_get(v, v + 2, &x) == 2 && x == 0x3fff, "two-byte varint");
    /* vlen past the page. */
    one_entry_page(page, 10, 100, 0);
    uint8_t *w = page + rp_slot_off(page, 0);
    w[1 + 10 + 1] = 0x7f;   /* vtag 200 (0xc8 0x01) -> 0xc8 0x7f: vlen 8164, past the page */
    CHECK(rp_page_validate(page) != NULL, "validate: vtag changed");
    /* A 2-byte klen below 128 (not the shortest form). */
    one_entry_page(page, 10, 0, 0);
    w = page + rp_slot_off(page, 0);
    uint8_t ent[32];
    ent[0] = 0x80;
    ent[1] = 10;
    memcpy(ent + 2, w + 1, 11);
    rp_page_init(page, 7, 1, P_LEAF);
    rp_page_insert(page, 0, ent, 13);
    CHECK(rp_page_validate(page) != NULL, "validate: klen not in its shortest form");
    /* A slot head that disagrees with its key. */
    one_entry_page(page, 10, 0, 0);
    ((uint8_t *)rp_slot_at(page, 0))[0] ^= 1;
    CHECK(rp_page_validate(page) != NULL, "validate: slot head disagrees");
    /* A huge klen byte pair pointing past the page. */
    one_entry_page(page, 10, 0, 0);
    w = page + rp_slot_off(page, 0);
    w[0] = 0xff;
    CHECK(rp_page_entry(page, 0, &e) == RP_CORRUPT, "klen past the page");
}

/* Damaged leaf pages (checksums aside, as with verify off): every read
 * the engine makes of a page that passed rp_page_read's header checks
 * stays inside the page (ASan watches the exact 4096-byte buffer) and
 * ends in RP_OK or RP_CORRUPT; a page rp_page_validate accepts has every
 * entry inside it. */
static void test_page_fuzz(void) {
    uint8_t *good = malloc(RP_PAGE_SIZE), *page = malloc(RP_PAGE_SIZE);
    CHECK(good && page, "malloc");
    uint64_t r = 4242;
    rp_page_init(good, 9, 1, P_LEAF);
    uint8_t key[300], ent[RP_MAX_INLINE_ENTRY];
    for (unsigned i = 0;; i++) {
        size_t klen = 1 + xorshift64(&r) % (i % 7 == 0 ? 200 : 12);
        size_t vlen = xorshift64(&r) % (i % 5 == 0 ? 300 : 40);
        for (size_t b = 0; b < klen; b++) key[b] = (uint8_t)xorshift64(&r);
        int big = i % 11 == 0;
        size_t n = rp_leaf_put_head(ent, key, klen, big ? 3000 : vlen, big);
        size_t body = big ? RP_BIG_REF : vlen;
        memset(ent + n, 'v', body);
        if (n + body + RP_SLOT_SIZE > rp_page_free(good)) break;
        unsigned idx;
        int exact;
        E(rp_page_search(good, key, klen, &idx, &exact));
        if (exact) continue;
        rp_page_insert(good, idx, ent, n + body);
    }
    CHECK(rp_page_validate(good) == NULL, "the base page is valid");
    for (int round = 0; round < 20000; round++) {
        memcpy(page, good, RP_PAGE_SIZE);
        int flips = 1 + (int)(xorshift64(&r) % 4);
        for (int f = 0; f < flips; f++) {
            /* Mostly the slots and entries; sometimes the header. */
            size_t at = round % 8 == 0 ? xorshift64(&r) % RP_PAGE_HEADER
                                       : RP_PAGE_HEADER + xorshift64(&r) % (RP_PAGE_SIZE - RP_PAGE_HEADER);
            page[at] = f % 2 ? (uint8_t)xorshift64(&r) : (uint8_t)(page[at] ^ (1u << (xorshift64(&r) % 8)));
        }
        const rp_page_hdr *h = rp_hdr(page);
        /* rp_page_read's header checks (txn.c) come first on every read. */
        if (h->lower != RP_PAGE_HEADER + RP_SLOT_SIZE * (size_t)h->nkeys || h->upper < h->lower
            || h->upper > RP_PAGE_SIZE || !(h->flags & (P_LEAF | P_BRANCH)) || h->npages != 1)
            continue;
        int valid = rp_page_validate(page) == NULL;
        for (unsigned i = 0; i < h->nkeys; i++) {
            const uint8_t *e;
            int rc = rp_page_entry(page, i, &e);
            CHECK(rc == RP_OK || rc == RP_CORRUPT, "entry: ok or corrupt");
            CHECK(!valid || rc == RP_OK, "a valid page's entries are readable");
            if (!(h->flags & P_LEAF)) continue;
            /* The one-pass decoder of the read paths accepts exactly what
             * rp_page_entry accepts, and reads the same fields. */
            rp_leaf_ent d;
            int drc = rp_page_leaf_entry(page, i, &d);
            CHECK(drc == rc, "decoder and rp_page_entry agree");
            if (rc) continue;
            CHECK(d.e == e && d.key == rp_leaf_key(e) && d.klen == rp_leaf_klen(e) &&
                      d.val == rp_leaf_val(e) && d.vlen == rp_leaf_vlen(e) &&
                      d.big == rp_leaf_big(e),
                  "decoded fields as the entry's accessors read them");
            size_t sz = rp_leaf_size(e);
            CHECK((size_t)(e - page) + sz <= RP_PAGE_SIZE, "an accepted entry lies in the page");
            volatile uint8_t sink = 0;
            const uint8_t *v = rp_leaf_val(e);
            size_t vl = rp_leaf_big(e) ? RP_BIG_REF : rp_leaf_vlen(e);
            for (size_t b = 0; b < vl; b++) sink ^= v[b];
            (void)sink;
        }
        for (int q = 0; q < 4; q++) {
            size_t klen = 1 + xorshift64(&r) % 16;
            for (size_t b = 0; b < klen; b++) key[b] = (uint8_t)xorshift64(&r);
            unsigned idx;
            int exact;
            int rc = rp_page_search(page, key, klen, &idx, &exact);
            CHECK(rc == RP_OK || rc == RP_CORRUPT, "search: ok or corrupt");
        }
    }
    free(good);
    free(page);
}

/* The next 16-byte random key of sequence *r. */
static void random_key(uint64_t *r, uint8_t key[16]) {
    for (int b = 0; b < 16; b += 8) {
        uint64_t x = xorshift64(r);
        memcpy(key + b, &x, 8);
    }
}

/* Random inserts of values near a third of a page: leaves hand entries to
 * their siblings instead of splitting into pages a third empty. */
static void test_sibling_shift(const char *path) {
    enum { N = 3000, VLEN = 1000 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    uint64_t r = 12345;
    uint8_t key[16], val[VLEN];
    for (unsigned i = 0; i < N; i++) {
        random_key(&r, key);
        memset(val, (int)i, sizeof val);
        E(rp_put(w, "kv", 2, key, sizeof key, val, sizeof val));
        if (i % 500 == 499) {
            /* Every hand-off keeps keys in order and separators right. */
            E(rp_txn_commit(w));
            char m[256];
            E(rp_env_check(env, m, sizeof m));
            E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        }
    }
    E(rp_txn_commit(w));
    rp_stat st;
    E(rp_env_stat(env, &st));
    /* At most 3 a page; a plain half-and-half split leaves about 2.2. */
    CHECK(st.entries == N, "all stored");
    CHECK(st.tree_pages * 8 <= N * 3, "leaves hold 2.67 values or more on average");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    /* Every value reads back; deletes keep the tree valid. */
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    r = 12345;
    for (unsigned i = 0; i < N; i++) {
        random_key(&r, key);
        const void *got;
        size_t gl;
        E(rp_get(w, "kv", 2, key, sizeof key, &got, &gl));
        CHECK(gl == VLEN && ((const uint8_t *)got)[0] == (uint8_t)i, "value reads back");
        if (i % 3 == 0) E(rp_del(w, "kv", 2, key, sizeof key));
    }
    E(rp_txn_commit(w));
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
}

/* Entries of up to half a page mixed with small ones: every split leaves
 * both sides within a page (btree.c, split_insert). */
static void test_half_page_splits(const char *path) {
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    uint64_t r = 99;
    static uint8_t val[RP_PAGE_SIZE];
    memset(val, 'x', sizeof val);
    for (unsigned i = 0; i < 4000; i++) {
        char key[32];
        int kl = snprintf(key, sizeof key, "%08llu", (unsigned long long)(xorshift64(&r) % 100000));
        uint64_t c = xorshift64(&r) % 4;
        size_t vlen = c == 0 ? 2020 - (size_t)kl : c == 1 ? 1200 : c == 2 ? 40 : 2100;
        E(rp_put(w, "mix", 3, key, (size_t)kl, val, vlen));
    }
    E(rp_txn_commit(w));
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
}

/* Ascending runs interleaved, as an index's keys (value, primary key)
 * arrive: the start of each run is not left alone in a nearly empty leaf
 * (btree.c, make_room).  Splitting at the insertion point alone left one
 * such leaf a run (R more leaves than the entries need); committing every
 * 1,000 inserts, as the object layer does, changes nothing. */
static void test_interleaved_runs(const char *path) {
    enum { R = 40, K = 1500 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    uint8_t key[7];
    for (unsigned i = 0; i < R * K; i++) {
        snprintf((char *)key, 4, "r%02u", i % R);
        uint32_t be = __builtin_bswap32(i);
        memcpy(key + 3, &be, 4);
        E(rp_put(w, "runs", 4, key, sizeof key, "", 0));
        if (i % 1000 == 999) {
            E(rp_txn_commit(w));
            E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        }
    }
    E(rp_txn_commit(w));
    rp_stat st;
    E(rp_env_stat(env, &st));
    /* An entry: 1 + 7 + 1 bytes and a slot.  The leaves the entries need,
     * plus a partly filled last one a run and the branch pages. */
    uint64_t need = (uint64_t)R * K * (9 + RP_SLOT_SIZE) / (RP_PAGE_SIZE - RP_PAGE_HEADER) + 1;
    CHECK(st.entries == R * K, "all stored");
    CHECK(st.tree_pages <= need + R + 3, "no run start left alone in a leaf");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    /* Every key reads back, in order. */
    rp_txn *rd;
    E(rp_txn_begin(env, 0, &rd));
    rp_cursor *c;
    E(rp_cursor_open(rd, "runs", 4, &c));
    const void *k, *v;
    size_t kl, vl;
    unsigned seen = 0;
    uint8_t prev[7] = {0};
    int rc = rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &kl, &v, &vl);
    while (rc == RP_OK) {
        CHECK(kl == 7 && memcmp(prev, k, 7) < 0, "ascending keys");
        memcpy(prev, k, 7);
        seen++;
        rc = rp_cursor_step(c, 1, &k, &kl, &v, &vl);
    }
    CHECK(rc == RP_NOTFOUND && seen == R * K, "every key once");
    rp_cursor_close(c);
    rp_txn_abort(rd);
    E(rp_env_close(env));
}

/* A run that reaches the end of a full leaf goes on in its right sibling
 * when that has room, instead of opening a leaf: 40 "b" keys, then 160
 * ascending "a" keys before them (6,600 bytes) take two leaves, not three. */
static void test_run_into_sibling(const char *path) {
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    char key[16], val[20];
    memset(val, 'v', sizeof val);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? 160 : 40); i++) {
            snprintf(key, sizeof key, "%c%04d", pass ? 'a' : 'b', i);
            E(rp_put(w, "t", 1, key, 5, val, sizeof val));
        }
    E(rp_txn_commit(w));
    rp_stat st;
    E(rp_env_stat(env, &st));
    CHECK(st.entries == 200, "all stored");
    CHECK(st.tree_pages == 3, "two leaves and their parent");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_txn_begin(env, 0, &w));
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < (pass ? 160 : 40); i++) {
            snprintf(key, sizeof key, "%c%04d", pass ? 'a' : 'b', i);
            const void *v;
            size_t vl;
            E(rp_get(w, "t", 1, key, 5, &v, &vl));
            CHECK(vl == sizeof val, "value reads back");
        }
    rp_txn_abort(w);
    E(rp_env_close(env));
}

/* A file of format 2 (an intact meta record of version 2) is refused with
 * RP_FORMAT_OLD, not reported as damage. */
static void test_old_format_refused(const char *path) {
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "t", 1, "k", 1, "v", 1));
    E(rp_txn_commit(w));
    E(rp_env_close(env));
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open the data file");
    for (int pg = 0; pg < 2; pg++) {
        for (int half = 0; half < 2; half++) {
            uint8_t rec[RP_META_SIZE];
            off_t off = (off_t)pg * RP_PAGE_SIZE + half * RP_META_MIRROR_OFF;
            CHECK(pread(fd, rec, sizeof rec, off) == (ssize_t)sizeof rec, "read meta");
            if (rp_rd64(rec + RP_PAGE_HEADER) == 0) continue;   /* empty slot */
            uint32_t two = 2;
            memcpy(rec + RP_PAGE_HEADER + 8, &two, 4);
            uint32_t sum = rp_page_checksum(rec, RP_META_SIZE);
            memcpy(rec, &sum, 4);
            CHECK(pwrite(fd, rec, sizeof rec, off) == (ssize_t)sizeof rec, "write meta");
        }
    }
    close(fd);
    CHECK(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env) == RP_FORMAT_OLD, "format 2 refused");
    CHECK(rp_env_open(path, RP_RDONLY, 0, 0, 0, &env) == RP_FORMAT_OLD,
          "format 2 refused read-only too");
}

int main(void) {
    char dir[] = "/tmp/rp_test_layoutXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char p1[256], p2[256], p3[256], p4[256], p5[256];
    snprintf(p1, sizeof p1, "%s/shift", dir);
    snprintf(p2, sizeof p2, "%s/mix", dir);
    snprintf(p3, sizeof p3, "%s/old", dir);
    snprintf(p4, sizeof p4, "%s/runs", dir);
    snprintf(p5, sizeof p5, "%s/run2", dir);
    test_entry_encoding();
    test_inline_limit();
    test_bad_entries();
    test_page_fuzz();
    test_sibling_shift(p1);
    test_half_page_splits(p2);
    test_interleaved_runs(p4);
    test_run_into_sibling(p5);
    test_old_format_refused(p3);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("test_layout: ok\n");
    return 0;
}
