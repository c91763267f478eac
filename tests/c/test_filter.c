/*
 * test_filter.c -- filter programs (rp_filter_eval, rp_cursor_filter):
 * verdicts of each comparison rule, malformed programs (RP_INVALID) and
 * malformed or truncated records (RP_CORRUPT, never a crash: CI runs this
 * under ASan/UBSan), filtered cursor scans, and index joins
 * (rp_cursor_join).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* A program of one comparison: field f <op> the msgpack constant c. */
static size_t cmp_prog(uint8_t *out, int op, int missing, unsigned f,
                       const uint8_t *c, size_t clen) {
    out[0] = RP_FILTER_CMP;
    out[1] = (uint8_t)op;
    out[2] = (uint8_t)missing;
    out[3] = (uint8_t)f;
    out[4] = (uint8_t)(f >> 8);
    memcpy(out + 5, c, clen);
    return 5 + clen;
}

static int verdict(const uint8_t *prog, size_t plen, const uint8_t *rec, size_t rlen) {
    int v = -1;
    E(rp_filter_eval(prog, plen, rec, rlen, &v));
    return v;
}

static void test_rules(void) {
    uint8_t p[64];
    /* [5, "b", nil, true, 1.5, 2^53 + 1 (uint64), -3, bin "x"] */
    static const uint8_t rec[] = {
        0x98, 0x05, 0xa1, 'b', 0xc0, 0xc3, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
        0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0x01, 0xfd, 0xc4, 0x01, 'x'};
    const uint8_t i5[] = {0x05}, i1[] = {0x01}, s_a[] = {0xa1, 'a'}, nil[] = {0xc0};
    const uint8_t tru[] = {0xc3};
    /* 2.0^53 as a float64 */
    const uint8_t f53[] = {0xcb, 0x43, 0x40, 0, 0, 0, 0, 0, 0};
    const uint8_t f15[] = {0xca, 0x3f, 0xc0, 0, 0};   /* 1.5 as float32 */
    const uint8_t neg3[] = {0xd0, 0xfd};             /* -3 as int8     */
    const uint8_t bx[] = {0xc4, 0x01, 'x'}, sx[] = {0xa1, 'x'};
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1), rec, sizeof rec) == 1, "5 == 5");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_GT, 0, 0, i5, 1), rec, sizeof rec) == 0, "5 > 5");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_GT, 0, 1, s_a, 2), rec, sizeof rec) == 1, "b > a");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_LT, 0, 1, i5, 1), rec, sizeof rec) == 0, "str < int");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_NE, 0, 1, i5, 1), rec, sizeof rec) == 1, "str != int");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 2, nil, 1), rec, sizeof rec) == 1, "nil == nil");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_LE, 0, 2, nil, 1), rec, sizeof rec) == 1, "nil <= nil");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_LT, 0, 2, nil, 1), rec, sizeof rec) == 0, "nil < nil");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_GE, 0, 0, nil, 1), rec, sizeof rec) == 0, "5 >= nil");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 3, i1, 1), rec, sizeof rec) == 0, "true != 1");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_GE, 0, 3, i1, 1), rec, sizeof rec) == 0, "true >= 1");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 3, tru, 1), rec, sizeof rec) == 1, "true");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 4, f15, 5), rec, sizeof rec) == 1, "1.5");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_GT, 0, 5, f53, 9), rec, sizeof rec) == 1,
          "2^53+1 > 2.0^53 (exact)");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_NE, 0, 5, f53, 9), rec, sizeof rec) == 1, "!=");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 6, neg3, 2), rec, sizeof rec) == 1, "-3");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_LT, 0, 6, f15, 5), rec, sizeof rec) == 1, "-3 < 1.5");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 7, bx, 3), rec, sizeof rec) == 1, "bin");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 7, sx, 2), rec, sizeof rec) == 0, "bin != str");
    /* Missing field: the program's verdict. */
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 1, 8, i5, 1), rec, sizeof rec) == 1, "missing");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 2, 900, i5, 1), rec, sizeof rec) == 2, "missing");
    /* Not an array, an empty record, a nested value: UNKNOWN. */
    const uint8_t map[] = {0x80}, arr[] = {0x91, 0x91, 0x05};
    const uint8_t ext[] = {0x91, 0xd4, 0x01, 0x05};
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1), map, sizeof map) == 2, "map");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1), map, 0) == 2, "empty");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1), arr, sizeof arr) == 2, "array");
    CHECK(verdict(p, cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1), ext, sizeof ext) == 2, "ext");
    /* Kleene logic: FALSE AND UNKNOWN, TRUE OR UNKNOWN, NOT UNKNOWN. */
    size_t n = cmp_prog(p, RP_FOP_EQ, 0, 0, i1, 1);
    p[n++] = RP_FILTER_PUSH; p[n++] = RP_FILTER_UNKNOWN; p[n++] = RP_FILTER_AND;
    CHECK(verdict(p, n, rec, sizeof rec) == 0, "F and U");
    p[n - 1] = RP_FILTER_OR;
    CHECK(verdict(p, n, rec, sizeof rec) == 2, "F or U");
    p[n++] = RP_FILTER_NOT;
    CHECK(verdict(p, n, rec, sizeof rec) == 2, "not U");
    n = cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1);
    p[n++] = RP_FILTER_PUSH; p[n++] = RP_FILTER_UNKNOWN; p[n++] = RP_FILTER_OR;
    p[n++] = RP_FILTER_NOT;
    CHECK(verdict(p, n, rec, sizeof rec) == 0, "not (T or U)");
}

static void test_bad_programs(void) {
    const uint8_t rec[] = {0x91, 0x05};
    int v;
    const uint8_t i5[] = {0x05};
    uint8_t p[600];
    size_t n = cmp_prog(p, RP_FOP_EQ, 0, 0, i5, 1);
    /* Every truncation of a valid program is invalid. */
    for (size_t cut = 0; cut < n; cut++)
        CHECK(rp_filter_eval(p, cut, rec, sizeof rec, &v) == RP_INVALID, "truncated");
    CHECK(rp_filter_eval(NULL, 0, rec, sizeof rec, &v) == RP_INVALID, "null program");
    /* A NULL cursor is an invalid argument, never a crash. */
    uint8_t out[64];
    size_t got = 0, used = 0;
    CHECK(rp_cursor_batch(NULL, 1, 0, NULL, 0, out, sizeof out, 1, &got, &used) == RP_INVALID,
          "null cursor (batch)");
    CHECK(rp_cursor_filter(NULL, 1, 0, NULL, 0, p, n, out, sizeof out, 1, &got, &used)
              == RP_INVALID, "null cursor (filter)");
    CHECK(rp_cursor_join(NULL, 1, 0, NULL, 0, 0, "t", 1, p, n, out, sizeof out, 1, &got, &used)
              == RP_INVALID, "null cursor (join)");
    static const uint8_t bad[][8] = {
        {9},                                    /* unknown opcode              */
        {RP_FILTER_AND},                        /* stack underflow             */
        {RP_FILTER_NOT},
        {RP_FILTER_PUSH, 3},                    /* not a verdict               */
        {RP_FILTER_PUSH, 1, RP_FILTER_PUSH, 1}, /* two verdicts left           */
        {RP_FILTER_CMP, 6, 0, 0, 0, 0x05},      /* unknown operator            */
        {RP_FILTER_CMP, 0, 3, 0, 0, 0x05},      /* bad missing verdict         */
        {RP_FILTER_CMP, 0, 0, 0, 4, 0x05},      /* field 1024                  */
        {RP_FILTER_CMP, 0, 0, 0, 0, 0x91, 0x05},/* constant is an array        */
        {RP_FILTER_CMP, 0, 0, 0, 0, 0xc1},      /* not msgpack                 */
        {RP_FILTER_CMP, 0, 0, 0, 0, 0xa3, 'a'}, /* string past the end         */
    };
    static const size_t bad_len[] = {1, 1, 1, 2, 4, 6, 6, 6, 7, 6, 7};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(rp_filter_eval(bad[i], bad_len[i], rec, sizeof rec, &v) == RP_INVALID,
              "bad program accepted");
    /* Too deep, too long. */
    memset(p, 0, sizeof p);
    for (size_t i = 0; i < 65; i++) { p[2 * i] = RP_FILTER_PUSH; p[2 * i + 1] = 1; }
    CHECK(rp_filter_eval(p, 130, rec, sizeof rec, &v) == RP_INVALID, "stack overflow");
    p[0] = RP_FILTER_PUSH; p[1] = 1;
    for (size_t i = 2; i < 2 + 300; i++) p[i] = RP_FILTER_NOT;
    CHECK(rp_filter_eval(p, 302, rec, sizeof rec, &v) == RP_INVALID, "too many ops");
}

static void test_bad_records(void) {
    const uint8_t i5[] = {0x05};
    uint8_t p[16];
    int v;
    size_t n = cmp_prog(p, RP_FOP_EQ, 0, 3, i5, 1);   /* reads field 3 */
    uint8_t p2[16];
    /* [[1, {"k": "vv"}], bin8 "ab", "xyz", 5] */
    const uint8_t good[] = {0x94, 0x92, 0x01, 0x81, 0xa1, 'k', 0xa2, 'v', 'v',
                            0xc4, 0x02, 'a', 'b', 0xa3, 'x', 'y', 'z', 0x05};
    CHECK(verdict(p, n, good, sizeof good) == 1, "nested skip");
    uint8_t buf[sizeof good];
    /* Every truncation is reported, never read past: each copy is a heap
     * block of exactly cut bytes, so ASan sees any overread. */
    for (size_t cut = 1; cut < sizeof good; cut++) {
        uint8_t *t = malloc(cut);
        CHECK(t != NULL, "malloc");
        memcpy(t, good, cut);
        int rc = rp_filter_eval(p, n, t, cut, &v);
        CHECK(rc == RP_CORRUPT, "truncated record not reported");
        free(t);
    }
    /* Random corruption of every byte: any outcome but a crash. */
    uint64_t seed = 42;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, good, sizeof good);
        size_t at = 1 + xorshift64(&seed) % (sizeof good - 1);
        buf[at] = (uint8_t)xorshift64(&seed);
        size_t len = 1 + xorshift64(&seed) % sizeof good;
        uint8_t *t = malloc(len);
        CHECK(t != NULL, "malloc");
        memcpy(t, buf, len);
        int rc = rp_filter_eval(p, n, t, len, &v);
        CHECK(rc == RP_OK || rc == RP_CORRUPT, "unexpected error");
        free(t);
    }
    /* Random bytes after an array header, against programs reading fields
     * 0..5: any outcome but a crash or a read past the end. */
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + xorshift64(&seed) % 24;
        uint8_t *t = malloc(len);
        CHECK(t != NULL, "malloc");
        for (size_t i = 0; i < len; i++) t[i] = (uint8_t)xorshift64(&seed);
        t[0] = (uint8_t)(0x90 | (xorshift64(&seed) % 16));
        size_t pn = cmp_prog(p2, RP_FOP_LT, 2, (unsigned)(xorshift64(&seed) % 6), i5, 1);
        int rc = rp_filter_eval(p2, pn, t, len, &v);
        CHECK(rc == RP_OK || rc == RP_CORRUPT, "unexpected error");
        free(t);
    }
    /* Huge counts and lengths in headers. */
    static const uint8_t huge[][12] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x05},
        {0x94, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x05},
        {0x94, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x05},
        {0x94, 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x05},
        {0x94, 0xc1, 0x01, 0x02, 0x05},
    };
    static const size_t huge_len[] = {6, 7, 7, 8, 5};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        CHECK(rp_filter_eval(p, n, huge[i], huge_len[i], &v) == RP_CORRUPT, "huge");
}

static void test_cursor(void) {
    rp_env *env;
    unlink("filter.db");
    unlink("filter.db.lock");
    E(rp_env_open("filter.db", RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *txn;
    E(rp_txn_begin(env, RP_TXN_WRITE, &txn));
    for (unsigned i = 0; i < 1000; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%05u", i);
        uint8_t val[] = {i % 7 ? 0x92 : 0x91, 0xcd, (uint8_t)(i >> 8), (uint8_t)i, 0xc0};
        /* every 7th record is short: [i] */
        E(rp_put(txn, "t", 1, key, (size_t)kl, val, i % 7 ? sizeof val : 4));
    }
    E(rp_put(txn, "t", 1, "zzbad", 5, "\x92\xc1", 2));   /* not msgpack */
    E(rp_txn_commit(txn));
    E(rp_txn_begin(env, 0, &txn));
    rp_cursor *cur;
    E(rp_cursor_open(txn, "t", 1, &cur));
    /* field 0 >= 500 AND field 1 == nil (missing: TRUE) */
    uint8_t p[32];
    const uint8_t c500[] = {0xcd, 0x01, 0xf4}, nil[] = {0xc0};
    size_t n = cmp_prog(p, RP_FOP_GE, 0, 0, c500, 3);
    n += cmp_prog(p + n, RP_FOP_EQ, 1, 1, nil, 1);
    p[n++] = RP_FILTER_AND;
    size_t got = 0, cnt, used;
    uint8_t out[256];
    E(rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL));
    unsigned flags = RP_BATCH_CURRENT | RP_BATCH_RAW_VALUES;
    int rc;
    /* Small buffer: many calls, each resuming at the cursor; the damaged
     * record at the end is reported. */
    while ((rc = rp_cursor_filter(cur, 1, flags, "zz", 2, p, n, out, sizeof out, 1000,
                                  &cnt, &used)) == RP_OK) {
        CHECK(cnt > 0, "no progress");
        got += cnt;
    }
    CHECK(rc == RP_NOTFOUND, rp_strerror(rc));
    CHECK(got == 500, "wrong number of matches");
    E(rp_cursor_seek(cur, RP_SEEK_GE, "k00990", 6, NULL, NULL, NULL, NULL));
    rc = rp_cursor_filter(cur, 1, flags, NULL, 0, p, n, out, sizeof out, 10, &cnt, &used);
    CHECK(rc == RP_OK && cnt == 10, "before the damaged record");
    rc = rp_cursor_filter(cur, 1, flags, NULL, 0, p, n, out, sizeof out, 1000, &cnt, &used);
    CHECK(rc == RP_CORRUPT, "damaged record not reported");
    CHECK(rp_cursor_filter(cur, 1, flags, NULL, 0, p, n - 1, out, sizeof out, 10, &cnt,
                           &used) == RP_INVALID, "bad program");
    /* No program: every record up to the stop bound, the short and the
     * damaged ones too (nothing reads them), as rp_cursor_batch copies. */
    E(rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL));
    got = 0;
    while ((rc = rp_cursor_filter(cur, 1, flags, NULL, 0, NULL, 0, out, sizeof out, 1000,
                                  &cnt, &used)) == RP_OK)
        got += cnt;
    CHECK(rc == RP_NOTFOUND && got == 1001, "no program keeps every record");
    CHECK(rp_cursor_filter(cur, 1, flags, NULL, 0, NULL, 3, out, sizeof out, 10, &cnt,
                           &used) == RP_INVALID, "NULL program with a length");
    rp_cursor_close(cur);
    E(rp_txn_commit(txn));
    E(rp_env_close(env));
}

/* rp_cursor_join: index keys "v<digit>" + primary key, looked up in "t". */
static void test_join(void) {
    rp_env *env;
    unlink("join.db");
    unlink("join.db.lock");
    E(rp_env_open("join.db", RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *txn;
    E(rp_txn_begin(env, RP_TXN_WRITE, &txn));
    for (unsigned i = 0; i < 300; i++) {
        char key[16], ikey[16];
        int kl = snprintf(key, sizeof key, "k%05u", i);
        int il = snprintf(ikey, sizeof ikey, "v%u%s", i % 3, key);
        uint8_t val[] = {0x91, 0xcd, (uint8_t)(i >> 8), (uint8_t)i};
        E(rp_put(txn, "t", 1, key, (size_t)kl, val, sizeof val));
        E(rp_put(txn, "i", 1, ikey, (size_t)il, "", 0));
    }
    E(rp_put(txn, "i", 1, "v1k99999", 8, "", 0));   /* dangling: not in "t" */
    E(rp_txn_commit(txn));
    E(rp_txn_begin(env, 0, &txn));
    rp_cursor *cur;
    E(rp_cursor_open(txn, "i", 1, &cur));
    unsigned flags = RP_BATCH_CURRENT | RP_BATCH_RAW_VALUES;
    uint8_t out[128];
    size_t cnt, used, got = 0;
    int rc;
    E(rp_cursor_seek(cur, RP_SEEK_GE, "v1", 2, NULL, NULL, NULL, NULL));
    while ((rc = rp_cursor_join(cur, 1, flags, "v2", 2, 2, "t", 1, NULL, 0, out, sizeof out,
                                1000, &cnt, &used)) == RP_OK) {
        CHECK(cnt > 0, "no progress");
        /* array32 header, then bin8 "k....." (the stripped key) */
        CHECK(out[5] == 0xc4 && out[6] == 6 && out[7] == 'k', "key not stripped");
        got += cnt;
    }
    CHECK(rc == RP_NOTFOUND, rp_strerror(rc));
    CHECK(got == 100, "wrong number of joined records");
    /* With a filter on the joined records: field 0 < 30 → 10 of them. */
    uint8_t p[16];
    const uint8_t c30[] = {0x1e};
    size_t n = cmp_prog(p, RP_FOP_LT, 0, 0, c30, 1);
    E(rp_cursor_seek(cur, RP_SEEK_GE, "v1", 2, NULL, NULL, NULL, NULL));
    rc = rp_cursor_join(cur, 1, flags, "v2", 2, 2, "t", 1, p, n, out, sizeof out, 1000, &cnt,
                        &used);
    CHECK(rc == RP_OK && cnt == 10, "filtered join");
    /* An absent table joins nothing; a bad program or strip is invalid. */
    E(rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL));
    CHECK(rp_cursor_join(cur, 1, flags, NULL, 0, 2, "none", 4, NULL, 0, out, sizeof out, 1000,
                         &cnt, &used) == RP_NOTFOUND, "absent table");
    E(rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL));
    CHECK(rp_cursor_join(cur, 1, flags, NULL, 0, 2, "t", 1, p, n - 1, out, sizeof out, 1000,
                         &cnt, &used) == RP_INVALID, "bad program");
    CHECK(rp_cursor_join(cur, 1, flags, NULL, 0, RP_MAX_KEY + 1, "t", 1, NULL, 0, out,
                         sizeof out, 1000, &cnt, &used) == RP_INVALID, "bad strip");
    /* An index key no longer than the prefix is corrupt. */
    CHECK(rp_cursor_join(cur, 1, flags, NULL, 0, 8, "t", 1, NULL, 0, out, sizeof out, 1000,
                         &cnt, &used) == RP_CORRUPT, "short index key");
    rp_cursor_close(cur);
    /* rp_get_many_filter: rejected values are nil, like absent keys. */
    uint8_t keys[3 * 10];
    size_t kpos = 0;
    const char *names[3] = {"k00001", "k00040", "k77777"};   /* match, no, absent */
    for (int i = 0; i < 3; i++) {
        keys[kpos] = 6; keys[kpos + 1] = keys[kpos + 2] = keys[kpos + 3] = 0;
        memcpy(keys + kpos + 4, names[i], 6);
        kpos += 10;
    }
    size_t done;
    E(rp_get_many_filter(txn, "t", 1, keys, kpos, 3, RP_BATCH_RAW_VALUES, p, n, out,
                         sizeof out, &done, &used));
    static const uint8_t want[] = {0xdd, 0, 0, 0, 3, 0x91, 0xcd, 0, 1, 0xc0, 0xc0};
    CHECK(done == 3 && used == sizeof want && memcmp(out, want, used) == 0,
          "filtered get_many");
    CHECK(rp_get_many_filter(txn, "t", 1, keys, kpos, 3, 0, p, n - 1, out, sizeof out, &done,
                             &used) == RP_INVALID, "bad program");
    E(rp_txn_commit(txn));
    E(rp_txn_begin(env, RP_TXN_WRITE, &txn));
    E(rp_put(txn, "t", 1, "k00001", 6, "\x91\xc1", 2));   /* damaged */
    CHECK(rp_get_many_filter(txn, "t", 1, keys, kpos, 3, 0, p, n, out, sizeof out, &done,
                             &used) == RP_CORRUPT, "damaged value");
    rp_txn_abort(txn);
    E(rp_env_close(env));
}

/* Index entries of join_many: key "v<g><s>k<5 digits>", g = i % 7 and s a
 * two-digit scramble, so that the joined keys of one group do not ascend. */
#define JM_STRIP 4
static int jm_ikey(char *out, unsigned g, unsigned i) {
    return snprintf(out, 16, "v%u%02uk%05u", g, (i * 7919u) % 97u, i);
}

/* msgpack bin header for len bytes (as rp_cursor_join writes keys). */
static size_t jm_bin(uint8_t *o, size_t len) {
    if (len < 256) { o[0] = 0xc4; o[1] = (uint8_t)len; return 2; }
    o[0] = 0xc5; o[1] = (uint8_t)(len >> 8); o[2] = (uint8_t)len;
    return 3;
}

/* What rp_cursor_join must produce for index range [lo, hi) in direction
 * dir, built from a plain cursor walk and rp_get: the items, concatenated
 * (no array header).  Returns their byte length, *items their count. */
static size_t jm_expect(rp_txn *txn, const char *lo, const char *hi, int dir, uint8_t *out,
                        size_t *items) {
    rp_cursor *c;
    E(rp_cursor_open(txn, "i", 1, &c));
    const void *k, *v;
    size_t kl, vl, pos = 0;
    *items = 0;
    int rc = dir > 0 ? rp_cursor_seek(c, RP_SEEK_GE, lo, strlen(lo), &k, &kl, NULL, NULL)
                     : rp_cursor_seek(c, RP_SEEK_LT, hi, strlen(hi), &k, &kl, NULL, NULL);
    while (rc == RP_OK) {
        int in = memcmp(k, lo, strlen(lo)) >= 0 && memcmp(k, hi, strlen(hi)) < 0;
        if (!in) break;
        rc = rp_get(txn, "t", 1, (const uint8_t *)k + JM_STRIP, kl - JM_STRIP, &v, &vl);
        if (rc == RP_OK) {
            pos += jm_bin(out + pos, kl - JM_STRIP);
            memcpy(out + pos, (const uint8_t *)k + JM_STRIP, kl - JM_STRIP);
            pos += kl - JM_STRIP;
            pos += jm_bin(out + pos, vl);
            memcpy(out + pos, v, vl);
            pos += vl;
            (*items)++;
        } else {
            CHECK(rc == RP_NOTFOUND, rp_strerror(rc));
        }
        rc = rp_cursor_step(c, dir, &k, &kl, NULL, NULL);
    }
    CHECK(rc == RP_OK || rc == RP_NOTFOUND, rp_strerror(rc));
    rp_cursor_close(c);
    return pos;
}

/* rp_cursor_join over [lo, hi) in direction dir, in calls of at most
 * max_items items into a buffer of bufcap bytes (grown when an item does
 * not fit), must give what jm_expect gives. */
static void jm_compare(rp_txn *txn, const char *lo, const char *hi, int dir, size_t bufcap,
                       size_t max_items) {
    static uint8_t want[1 << 21], got[1 << 21], buf[1 << 16];
    size_t witems, wlen = jm_expect(txn, lo, hi, dir, want, &witems);
    rp_cursor *c;
    E(rp_cursor_open(txn, "i", 1, &c));
    int rc = dir > 0 ? rp_cursor_seek(c, RP_SEEK_GE, lo, strlen(lo), NULL, NULL, NULL, NULL)
                     : rp_cursor_seek(c, RP_SEEK_LT, hi, strlen(hi), NULL, NULL, NULL, NULL);
    const char *stop = dir > 0 ? hi : lo;
    size_t glen = 0, gitems = 0, cap = bufcap;
    while (rc == RP_OK) {
        size_t cnt, used;
        rc = rp_cursor_join(c, dir, RP_BATCH_CURRENT, stop, strlen(stop), JM_STRIP, "t", 1,
                            NULL, 0, buf, cap, max_items, &cnt, &used);
        if (rc != RP_OK) break;
        if (cnt == 0) {   /* the next item needs used bytes */
            CHECK(used > cap && used <= sizeof buf, "size needed");
            cap = used;
            continue;
        }
        CHECK(cnt <= max_items && used <= cap, "batch bounds");
        CHECK(buf[0] == 0xdd && buf[4] == (uint8_t)(2 * cnt), "array header");
        CHECK(glen + used - 5 <= sizeof got, "too much output");
        memcpy(got + glen, buf + 5, used - 5);
        glen += used - 5;
        gitems += cnt;
        cap = bufcap;
    }
    CHECK(rc == RP_NOTFOUND, rp_strerror(rc));
    CHECK(gitems == witems, "join: wrong number of items");
    CHECK(glen == wlen && memcmp(got, want, wlen) == 0, "join: wrong items");
    rp_cursor_close(c);
}

/* rp_get_many over keys in several orders (ascending, descending, random,
 * with absent ones), in pieces when the output fills, must give what
 * rp_get gives key by key; a malformed key is reported when reached and
 * only then. */
static void jm_get_many(rp_txn *txn) {
    enum { NK = 3000 };
    static uint8_t keys[NK * 12], out[1 << 16];
    static size_t koff[NK + 1];
    uint64_t rng = 99;
    for (int order = 0; order < 3; order++) {
        size_t kpos = 0;
        for (unsigned j = 0; j < NK; j++) {
            unsigned i = order == 0 ? j * 2 : order == 1 ? 6100 - j * 2
                                                        : (unsigned)(xorshift64(&rng) % 6100);
            char key[16];
            int kl = snprintf(key, sizeof key, "k%05u", i);
            koff[j] = kpos;
            uint32_t k32 = (uint32_t)kl;
            memcpy(keys + kpos, &k32, 4);
            memcpy(keys + kpos + 4, key, (size_t)kl);
            kpos += 4 + (size_t)kl;
        }
        koff[NK] = kpos;
        static const size_t caps[] = {sizeof out, 500, 60};
        for (size_t b = 0; b < 3; b++) {
            size_t at = 0;
            while (at < NK) {
                size_t done, used, cap = caps[b];
                E(rp_get_many(txn, "t", 1, keys + koff[at], koff[NK] - koff[at], NK - at, 0, out,
                              cap, &done, &used));
                if (done == 0) {   /* the next value needs used bytes */
                    CHECK(used > cap && used <= sizeof out, "size needed");
                    E(rp_get_many(txn, "t", 1, keys + koff[at], koff[NK] - koff[at], 1, 0, out,
                                  used, &done, &used));
                    CHECK(done == 1, "one value");
                }
                size_t pos = 5;
                for (size_t j = at; j < at + done; j++) {
                    const void *v;
                    size_t vl;
                    int rc = rp_get(txn, "t", 1, keys + koff[j] + 4, koff[j + 1] - koff[j] - 4,
                                    &v, &vl);
                    if (rc == RP_NOTFOUND) {
                        CHECK(out[pos] == 0xc0, "get_many: nil for an absent key");
                        pos++;
                        continue;
                    }
                    E(rc);
                    uint8_t h[3];
                    size_t hl = jm_bin(h, vl);
                    CHECK(memcmp(out + pos, h, hl) == 0 && memcmp(out + pos + hl, v, vl) == 0,
                          "get_many: wrong value");
                    pos += hl + vl;
                }
                CHECK(pos == used, "get_many: output size");
                at += done;
            }
        }
    }
    /* Key 37 malformed: reported when reached, not before; a truncated
     * buffer likewise. */
    size_t done, used;
    uint32_t zero = 0;
    memcpy(keys + koff[37], &zero, 4);
    CHECK(rp_get_many(txn, "t", 1, keys, koff[NK], 100, 0, out, sizeof out, &done, &used)
              == RP_KEY_TOO_LONG, "malformed key");
    E(rp_get_many(txn, "t", 1, keys, koff[NK], 37, 0, out, sizeof out, &done, &used));
    CHECK(done == 37, "keys before a malformed one");
    CHECK(rp_get_many(txn, "t", 1, keys, koff[30] + 6, 100, 0, out, sizeof out, &done, &used)
              == RP_INVALID, "truncated keys");
    E(rp_get_many(txn, "t", 1, keys, koff[30] + 6, 30, 0, out, sizeof out, &done, &used));
    CHECK(done == 30, "keys before a truncated one");
    E(rp_get_many(txn, "none", 4, keys, koff[30], 30, 0, out, sizeof out, &done, &used));
    CHECK(done == 30 && out[5] == 0xc0 && out[34] == 0xc0, "absent table");
}

static void jm_compare_all(rp_txn *txn) {
    static const char *ranges[][2] = {
        {"v3", "v4"}, {"v0", "v1"}, {"v6", "v7"}, {"v2", "v5"}, {"v450", "v460"},
        {"v0", "w"}, {"v9", "w"}, {"a", "v"},
    };
    static const size_t caps[] = {1 << 16, 300, 40};
    static const size_t maxes[] = {1000000, 1, 9};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++)
        for (int dir = -1; dir <= 1; dir += 2)
            for (size_t b = 0; b < 3; b++)
                jm_compare(txn, ranges[r][0], ranges[r][1], dir, caps[b], maxes[b]);
    jm_get_many(txn);
}

/* Joins over many leaves of both tables (the lookahead runs across index
 * leaves and meets absent keys, overflow values and, in a write
 * transaction, pages of its own), against a plain index walk + rp_get;
 * rp_get_many (the same lookahead) against rp_get. */
static void test_join_many(void) {
    rp_env *env;
    unlink("joinmany.db");
    unlink("joinmany.db.lock");
    E(rp_env_open("joinmany.db", RP_NOSYNC, 0, 0, 0, &env));
    static uint8_t val[3000];
    for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)(i * 31);
    rp_txn *txn;
    E(rp_txn_begin(env, RP_TXN_WRITE, &txn));
    for (unsigned i = 0; i < 6000; i++) {
        char key[16], ikey[16];
        int kl = snprintf(key, sizeof key, "k%05u", i);
        int il = jm_ikey(ikey, i % 7, i);
        size_t vl = i % 211 == 5 ? 1500 + i % 1000 : 10 + i % 60;   /* some overflow */
        if (i % 53 != 0) E(rp_put(txn, "t", 1, key, (size_t)kl, val + i % 100, vl));
        E(rp_put(txn, "i", 1, ikey, (size_t)il, "", 0));   /* i % 53 == 0: dangling */
    }
    jm_compare_all(txn);   /* all pages dirty */
    E(rp_txn_commit(txn));
    E(rp_txn_begin(env, 0, &txn));
    jm_compare_all(txn);   /* all pages committed */
    rp_txn_abort(txn);
    E(rp_txn_begin(env, RP_TXN_WRITE, &txn));
    for (unsigned i = 0; i < 6000; i += 17) {   /* some pages dirty, some not */
        char key[16];
        int kl = snprintf(key, sizeof key, "k%05u", i);
        if (i % 2) {
            int rc = rp_del(txn, "t", 1, key, (size_t)kl);
            CHECK(rc == RP_OK || rc == RP_NOTFOUND, rp_strerror(rc));
        } else {
            E(rp_put(txn, "t", 1, key, (size_t)kl, val, 7));
        }
    }
    jm_compare_all(txn);
    rp_txn_abort(txn);
    E(rp_env_close(env));
}

int main(void) {
    test_rules();
    test_bad_programs();
    test_bad_records();
    test_cursor();
    test_join();
    test_join_many();
    printf("test_filter: ok\n");
    return 0;
}
