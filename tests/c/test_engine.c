/*
 * test_engine.c -- the engine against a model: random puts, deletes, drops,
 * commits and aborts over several tables with small and overflow values;
 * after every commit each table is compared with the model by point gets,
 * forward and reverse scans and batch reads, and rp_env_check() must pass.
 * Also: reopen, snapshots that keep their version, compaction, write calls
 * per small commit, a long free list, the file's growth.
 */
#define _GNU_SOURCE 1
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"


#define NTABLES 3
#define NKEYS 600

/* Model: per table, per key index, a value (len 0 with present=0 = absent). */
typedef struct {
    int present;
    size_t len;
    unsigned char *val;
} slot;
static slot model[NTABLES][NKEYS], saved[NTABLES][NKEYS];
static const char *tname[NTABLES] = {"alpha", "beta", "a-table-with-a-longer-name"};

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void) { return xorshift64(&rng); }

static size_t mkkey(int i, unsigned char *buf) {
    /* Variable-length keys whose byte order is not index order. */
    int len = sprintf((char *)buf, "k%05d-%0*d", (i * 7919) % NKEYS, 1 + i % 40, i);
    return (size_t)len;
}

static void copy_model(slot dst[NTABLES][NKEYS], slot src[NTABLES][NKEYS]) {
    for (int t = 0; t < NTABLES; t++)
        for (int i = 0; i < NKEYS; i++) {
            free(dst[t][i].val);
            dst[t][i] = src[t][i];
            if (src[t][i].present) {
                dst[t][i].val = malloc(src[t][i].len + 1);
                memcpy(dst[t][i].val, src[t][i].val, src[t][i].len);
            } else {
                dst[t][i].val = NULL;
            }
        }
}

static int cmpkey(const void *a, const void *b) {
    unsigned char ka[64], kb[64];
    size_t la = mkkey(*(const int *)a, ka), lb = mkkey(*(const int *)b, kb);
    size_t n = la < lb ? la : lb;
    int c = memcmp(ka, kb, n);
    return c ? c : (la > lb) - (la < lb);
}

/* Next msgpack item at *pos: 1 with (ptr, len) for a bin string, 0 for nil. */
static int mp_next(const unsigned char *buf, size_t *pos, const unsigned char **ptr, size_t *len) {
    unsigned char tag = buf[*pos];
    size_t l;
    if (tag == 0xc0) { (*pos)++; return 0; }
    if (tag == 0xc4) { l = buf[*pos + 1]; *pos += 2; }
    else if (tag == 0xc5) { l = (size_t)buf[*pos + 1] << 8 | buf[*pos + 2]; *pos += 3; }
    else {
        CHECK(tag == 0xc6, "msgpack bin tag");
        l = (size_t)buf[*pos + 1] << 24 | (size_t)buf[*pos + 2] << 16
            | (size_t)buf[*pos + 3] << 8 | buf[*pos + 4];
        *pos += 5;
    }
    *ptr = buf + *pos;
    *len = l;
    *pos += l;
    return 1;
}

/* rp_get_many over every key of table t, in pieces when the output fills. */
static void verify_get_many(rp_txn *txn, int t, slot m[NTABLES][NKEYS]) {
    static unsigned char keys[NKEYS * 68], out[1 << 17];
    size_t kpos = 0;
    for (int i = 0; i < NKEYS; i++) {
        unsigned char k[64];
        uint32_t kl = (uint32_t)mkkey(i, k);
        memcpy(keys + kpos, &kl, 4);
        memcpy(keys + kpos + 4, k, kl);
        kpos += 4 + kl;
    }
    size_t at = 0, koff = 0;
    while (at < NKEYS) {
        size_t done, used;
        E(rp_get_many(txn, tname[t], strlen(tname[t]), keys + koff, kpos - koff,
                      NKEYS - at, 0, out, sizeof out, &done, &used));
        CHECK(done > 0, "get_many made no progress");
        CHECK(out[0] == 0xdd && ((size_t)out[3] << 8 | out[4]) == done, "get_many header");
        size_t pos = 5;
        for (size_t j = 0; j < done; j++, at++) {
            const unsigned char *v;
            size_t vl;
            int present = mp_next(out, &pos, &v, &vl);
            CHECK(present == m[t][at].present, "get_many presence");
            if (present) CHECK(vl == m[t][at].len && memcmp(v, m[t][at].val, vl) == 0, "get_many value");
            uint32_t kl;
            memcpy(&kl, keys + koff, 4);
            koff += 4 + kl;
        }
        CHECK(pos == used, "get_many size");
    }
}

static void verify(rp_env *env, slot m[NTABLES][NKEYS]) {
    rp_txn *txn;
    E(rp_txn_begin(env, 0, &txn));
    static int order[NKEYS];
    for (int i = 0; i < NKEYS; i++) order[i] = i;
    qsort(order, NKEYS, sizeof order[0], cmpkey);
    for (int t = 0; t < NTABLES; t++) {
        size_t tl = strlen(tname[t]);
        uint64_t count = 0, expect = 0;
        for (int i = 0; i < NKEYS; i++) {
            unsigned char k[64];
            size_t kl = mkkey(i, k);
            const void *v;
            size_t vl;
            int rc = rp_get(txn, tname[t], tl, k, kl, &v, &vl);
            if (m[t][i].present) {
                expect++;
                CHECK(rc == RP_OK, "present key not found");
                CHECK(vl == m[t][i].len && memcmp(v, m[t][i].val, vl) == 0, "value differs");
            } else {
                CHECK(rc == RP_NOTFOUND, "absent key found");
            }
        }
        E(rp_table_count(txn, tname[t], tl, &count));
        CHECK(count == expect, "table count differs");
        verify_get_many(txn, t, m);
        /* forward and reverse scans visit exactly the present keys in order */
        for (int dir = 1; dir >= -1; dir -= 2) {
            rp_cursor *c;
            E(rp_cursor_open(txn, tname[t], tl, &c));
            const void *k, *v;
            size_t kl, vl;
            int rc = rp_cursor_seek(c, dir > 0 ? RP_SEEK_FIRST : RP_SEEK_LAST, NULL, 0, &k, &kl, &v, &vl);
            int pos = dir > 0 ? 0 : NKEYS - 1;
            for (;;) {
                while (pos >= 0 && pos < NKEYS && !m[t][order[pos]].present) pos += dir;
                if (pos < 0 || pos >= NKEYS) { CHECK(rc == RP_NOTFOUND, "scan went past the end"); break; }
                CHECK(rc == RP_OK, "scan ended early");
                unsigned char ek[64];
                size_t ekl = mkkey(order[pos], ek);
                CHECK(kl == ekl && memcmp(k, ek, kl) == 0, "scan key differs");
                CHECK(vl == m[t][order[pos]].len, "scan value length differs");
                pos += dir;
                rc = rp_cursor_step(c, dir, &k, &kl, &v, &vl);
            }
            rp_cursor_close(c);
        }
        /* batch reads over a bounded range */
        {
            rp_cursor *c;
            E(rp_cursor_open(txn, tname[t], tl, &c));
            unsigned char lo[64], hi[64];
            size_t lol = mkkey(order[NKEYS / 4], lo), hil = mkkey(order[3 * NKEYS / 4], hi);
            const void *k, *v;
            size_t kl, vl;
            int rc = rp_cursor_seek(c, RP_SEEK_GE, lo, lol, &k, &kl, &v, &vl);
            size_t got = 0, want = 0;
            for (int p = NKEYS / 4; p < 3 * NKEYS / 4; p++) want += m[t][order[p]].present;
            static unsigned char buf[1 << 17];   /* > the largest value */
            size_t prev_key = 0;
            while (rc == RP_OK) {
                size_t n, used;
                rc = rp_cursor_batch(c, 1, RP_BATCH_CURRENT, hi, hil, buf, sizeof buf, 37, &n, &used);
                if (rc == RP_OK) {
                    CHECK(n > 0, "batch made no progress");
                    /* a msgpack array32 of 2n bin strings */
                    CHECK(buf[0] == 0xdd && ((size_t)buf[1] << 24 | (size_t)buf[2] << 16
                                             | (size_t)buf[3] << 8 | buf[4]) == 2 * n,
                          "batch array header");
                    size_t pos = 5;
                    const unsigned char *str[2];
                    size_t len[2];
                    for (size_t j = 0; j < n; j++) {
                        for (int s = 0; s < 2; s++) {
                            unsigned char tag = buf[pos];
                            size_t l;
                            if (tag == 0xc4) { l = buf[pos + 1]; pos += 2; }
                            else if (tag == 0xc5) { l = (size_t)buf[pos + 1] << 8 | buf[pos + 2]; pos += 3; }
                            else {
                                CHECK(tag == 0xc6, "bin tag");
                                l = (size_t)buf[pos + 1] << 24 | (size_t)buf[pos + 2] << 16
                                    | (size_t)buf[pos + 3] << 8 | buf[pos + 4];
                                pos += 5;
                            }
                            str[s] = buf + pos;
                            len[s] = l;
                            pos += l;
                        }
                        const unsigned char *kk = str[0];
                        size_t kkl = len[0];
                        int found = 0;
                        for (int p = NKEYS / 4; p < 3 * NKEYS / 4 && !found; p++) {
                            unsigned char ek[64];
                            size_t ekl = mkkey(order[p], ek);
                            if (ekl == kkl && memcmp(ek, kk, kkl) == 0) {
                                found = 1;
                                CHECK((size_t)p >= prev_key, "batch keys out of order");
                                prev_key = (size_t)p;
                                CHECK(len[1] == m[t][order[p]].len
                                          && memcmp(str[1], m[t][order[p]].val, len[1]) == 0,
                                      "batch value");
                            }
                        }
                        CHECK(found, "batch key not in range");
                    }
                    CHECK(pos == used, "batch size");
                    got += n;
                }
            }
            CHECK(rc == RP_NOTFOUND, "batch error");
            CHECK(got == want, "batch count differs");
            rp_cursor_close(c);
        }
    }
    rp_txn_abort(txn);
    char msg[256];
    int rc = rp_env_check(env, msg, sizeof msg);
    if (rc) { fprintf(stderr, "check: %s (%s)\n", rp_strerror(rc), msg); exit(1); }
}

/* Parked read handles, commit versions, and the catalog of a write txn. */
static void test_handles(const char *path) {
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w, *r;
    uint64_t v = 0;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "x", 1, "k", 1, "1", 1));
    E(rp_put(w, "y", 1, "k", 1, "1", 1));
    /* the catalog cursor of a write txn lists the tables it created */
    rp_cursor *c;
    const void *k, *val;
    size_t kl, vl;
    E(rp_cursor_open(w, NULL, 0, &c));
    E(rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &kl, &val, &vl));
    CHECK(kl == 1 && memcmp(k, "x", 1) == 0, "first table");
    E(rp_cursor_step(c, 1, &k, &kl, &val, &vl));
    CHECK(kl == 1 && memcmp(k, "y", 1) == 0, "second table");
    CHECK(rp_cursor_step(c, 1, &k, &kl, &val, &vl) == RP_NOTFOUND, "two tables");
    rp_cursor_close(c);
    E(rp_drop_table(w, "x", 1));
    E(rp_cursor_open(w, NULL, 0, &c));
    E(rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &kl, &val, &vl));
    CHECK(kl == 1 && memcmp(k, "y", 1) == 0, "dropped table gone");
    CHECK(rp_cursor_step(c, 1, &k, &kl, &val, &vl) == RP_NOTFOUND, "one table");
    rp_cursor_close(c);
    E(rp_put(w, "y", 1, "k2", 2, "2", 1));   /* changes after the flush count too */
    E(rp_txn_commit_ex(w, &v));
    CHECK(v == rp_env_version(env), "commit_ex version");
    {   /* the counter's address: what rp_env_version loads, updated in place */
        const _Atomic uint64_t *vp = (const _Atomic uint64_t *)rp_env_version_addr(env);
        CHECK(vp != NULL && (uintptr_t)vp % 8 == 0, "version address");
        CHECK(atomic_load_explicit(vp, memory_order_acquire) == v, "version at its address");
        CHECK(rp_env_version_addr(NULL) == 0, "version address of NULL");
    }
    /* a parked handle pins nothing and renews at the latest version */
    E(rp_txn_begin(env, 0, &r));
    CHECK(rp_txn_version(r) == v, "snapshot version");
    E(rp_txn_reset(r));
    CHECK(rp_get(r, "y", 1, "k", 1, &val, &vl) == RP_BAD_TXN, "parked txn refuses reads");
    CHECK(rp_txn_reset(r) == RP_BAD_TXN, "double reset");
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "y", 1, "k3", 2, "3", 1));
    E(rp_txn_commit_ex(w, &v));
    rp_stat st;
    E(rp_env_stat(env, &st));
    CHECK(st.oldest_version == v, "a parked handle pins no version");
    E(rp_txn_renew(r));
    CHECK(rp_txn_version(r) == v, "renewed at the latest version");
    E(rp_get(r, "y", 1, "k3", 2, &val, &vl));
    CHECK(rp_txn_renew(r) == RP_BAD_TXN, "renew of a live txn");
    /* raw values: msgpack documents come back embedded, empty ones as nil */
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "m", 1, "a", 1, "\x93\x01\x02\x03", 4));   /* [1, 2, 3] */
    E(rp_put(w, "m", 1, "b", 1, "", 0));
    E(rp_txn_commit(w));
    E(rp_txn_refresh(r));
    {
        static const unsigned char want[] = {0xdd, 0, 0, 0, 4, 0xc4, 1, 'a', 0x93, 1, 2, 3,
                                             0xc4, 1, 'b', 0xc0};
        unsigned char out[64];
        size_t n, used;
        E(rp_cursor_open(r, "m", 1, &c));
        E(rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &kl, &val, &vl));
        E(rp_cursor_batch(c, 1, RP_BATCH_CURRENT | RP_BATCH_RAW_VALUES, NULL, 0, out,
                          sizeof out, 10, &n, &used));
        CHECK(n == 2 && used == sizeof want && memcmp(out, want, used) == 0, "raw batch");
        rp_cursor_close(c);
        static const unsigned char keys[] = {1, 0, 0, 0, 'b', 1, 0, 0, 0, 'z', 1, 0, 0, 0, 'a'};
        static const unsigned char want2[] = {0xdd, 0, 0, 0, 3, 0xc0, 0xc0, 0x93, 1, 2, 3};
        size_t done;
        E(rp_get_many(r, "m", 1, keys, sizeof keys, 3, RP_BATCH_RAW_VALUES, out, sizeof out,
                      &done, &used));
        CHECK(done == 3 && used == sizeof want2 && memcmp(out, want2, used) == 0, "raw get_many");
    }
    E(rp_txn_reset(r));
    CHECK(rp_env_close(env) == RP_BUSY, "a parked handle keeps the env open");
    E(rp_txn_abort(r));
    E(rp_env_close(env));
}

/* Keys arriving as interleaved ascending runs (an index's (value, primary
 * key) pairs, 10 values) fill their leaves, whether they come in one
 * transaction or a few per transaction: the split at the insertion point
 * leaves the pages behind each run full, where a half-and-half split left
 * them half empty (435 pages here before, 244 after, 228 if full). */
static void test_split_runs(const char *path, unsigned per_txn) {
    enum { N = 40000, RUNS = 10 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w = NULL;
    for (uint32_t i = 0; i < N; i++) {
        if (!w) E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        unsigned char k[7];
        k[0] = 'g';
        k[1] = (unsigned char)('0' + i % RUNS);
        k[2] = '-';
        for (int b = 0; b < 4; b++) k[3 + b] = (unsigned char)(i >> (24 - 8 * b));
        E(rp_put(w, "runs", 4, k, sizeof k, "", 0));
        if ((i + 1) % per_txn == 0 || i + 1 == N) {
            E(rp_txn_commit(w));
            w = NULL;
        }
    }
    rp_stat st;
    E(rp_env_stat(env, &st));
    /* 23 bytes an entry (8 slot, 8 header, 7 key): 176 a page. */
    size_t full = (N + 175) / 176;
    CHECK(st.entries == N, "all keys stored");
    CHECK(st.tree_pages <= full + full / 4, "interleaved ascending runs fill their pages");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
}

/* A counter of /proc/self/io ("syscw: " write calls, "wchar: " bytes
 * written), or -1. */
static long long proc_io(const char *field) {
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return -1;
    char line[128];
    long long n = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && sscanf(line + fl, "%lld", &n) == 1) break;
    fclose(f);
    return n;
}
static long long write_calls(void) { return proc_io("syscw: "); }

/* A long free list is not rewritten by every commit (txn.c, THE FREE LIST
 * IN A WRITE TXN): after 12,000 pages were freed (a list of 12 pages), a
 * one-put commit writes about 6 pages, where it rewrote the whole list. */
static void test_long_free_list(const char *path) {
    enum { N = 12000, K = 50 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    static unsigned char v[4000];
    unsigned char k[4];
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    for (uint32_t i = 0; i < N; i++) {
        memcpy(k, &i, 4);
        E(rp_put(w, "big", 3, k, 4, v, sizeof v));   /* one overflow page each */
    }
    E(rp_put(w, "small", 5, "a", 1, "b", 1));
    E(rp_txn_commit(w));
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_drop_table(w, "big", 3));
    E(rp_txn_commit(w));
    rp_stat st;
    E(rp_env_stat(env, &st));
    CHECK(st.free_pages + st.pending_pages >= N, "the pages are free");
    long long before = proc_io("wchar: ");
    for (int c = 0; c < K; c++) {
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        E(rp_put(w, "small", 5, "a", 1, v, (size_t)c));
        E(rp_txn_commit(w));
    }
    long long after = proc_io("wchar: ");
    if (before >= 0 && after >= 0)
        CHECK(after - before <= 8LL * 4096 * K, "a commit writes a few pages, not the free list");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
    /* Reopened, the list (new head, old tail) reads back whole. */
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_stat(env, &st));
    CHECK(st.free_pages + st.pending_pages >= N, "the free pages are still listed");
    E(rp_env_close(env));
}

/* A small commit writes its hot pages (root, catalog, free list) as one
 * run (txn.c, ALLOCATION), and both meta copies with one pwrite (meta.c,
 * THE META WRITE): with the leaf and the lower branch, at most 4 write
 * calls a commit, where scattered pages and two meta writes took more than
 * 6, and every branch page in the hot run with two meta writes 4.5. */
static void test_commit_writes(const char *path) {
    enum { N = 10000, CHURN = 200, K = 200 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    unsigned char k[8], v[100] = {0};
    for (uint32_t i = 0; i < N; i++) {
        for (int b = 0; b < 8; b++) k[b] = (unsigned char)((uint64_t)i * 2654435761u >> (56 - 8 * b));
        E(rp_put(w, "t", 1, k, sizeof k, v, sizeof v));
    }
    E(rp_txn_commit(w));
    uint64_t r = 7;
    long long before = 0;
    for (int c = 0; c < CHURN + K; c++) {
        if (c == CHURN) before = write_calls();
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        uint32_t i = (uint32_t)(xorshift64(&r) % N);
        for (int b = 0; b < 8; b++) k[b] = (unsigned char)((uint64_t)i * 2654435761u >> (56 - 8 * b));
        v[0] = (unsigned char)c;
        E(rp_put(w, "t", 1, k, sizeof k, v, sizeof v));
        E(rp_txn_commit(w));
    }
    long long after = write_calls();
    if (before >= 0 && after >= 0)
        CHECK((after - before) * 10 <= 40LL * K, "a small commit makes at most 4 write calls");
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
}

/* The file grows in zero-written chunks of 1/32 of its size, at least
 * 1 MiB (txn.c, ensure_size): it never runs more than that above the pages
 * in use (with chunks of 1/8 it ran up to 12.5% above). */
static void test_growth(const char *path) {
    enum { PAGES = 6000, PER_TXN = 250 };
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    static unsigned char v[4000];
    for (uint32_t i = 0; i < PAGES; i += PER_TXN) {
        rp_txn *w;
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        for (uint32_t j = i; j < i + PER_TXN; j++) {
            unsigned char k[4];
            memcpy(k, &j, 4);
            E(rp_put(w, "big", 3, k, 4, v, sizeof v));   /* one overflow page each */
        }
        E(rp_txn_commit(w));
        rp_stat st;
        E(rp_env_stat(env, &st));
        struct stat fs;
        CHECK(stat(path, &fs) == 0, "stat");
        uint64_t size = (uint64_t)fs.st_size, used = st.pages_used * 4096;
        uint64_t chunk = size / 32 > (1u << 20) ? size / 32 : (1u << 20);
        CHECK(size >= used && size - used < chunk, "the file runs at most one chunk ahead");
    }
    E(rp_env_close(env));
}

int main(void) {
    char dir[] = "/tmp/rp_test_engineXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char path[256], copy[256];
    snprintf(path, sizeof path, "%s/db", dir);
    snprintf(copy, sizeof copy, "%s/compact", dir);
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    CHECK(rp_env_version(env) == 1, "fresh env version");
    verify(env, model);
    unsigned char *big = malloc(71000);
    for (int i = 0; i < 71000; i++) big[i] = (unsigned char)rnd();
    rp_txn *snap = NULL;
    uint64_t snap_version = 0;
    for (int round = 0; round < 120; round++) {
        rp_txn *w;
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        copy_model(saved, model);
        int nops = 1 + (int)(rnd() % (round % 10 == 0 ? 800 : 60));
        for (int op = 0; op < nops; op++) {
            int t = (int)(rnd() % NTABLES), i = (int)(rnd() % NKEYS);
            unsigned char k[64];
            size_t kl = mkkey(i, k);
            size_t tl = strlen(tname[t]);
            uint64_t r = rnd() % 100;
            if (r < 60) {
                size_t len = (r < 3) ? 1000 + rnd() % 69000 : rnd() % 300;
                unsigned char *v = malloc(len + 1);
                memcpy(v, big + rnd() % 1000, len);
                E(rp_put(w, tname[t], tl, k, kl, v, len));
                free(model[t][i].val);
                model[t][i] = (slot){1, len, v};
            } else if (r < 99) {
                int rc = rp_del(w, tname[t], tl, k, kl);
                CHECK(rc == (model[t][i].present ? RP_OK : RP_NOTFOUND), "delete result");
                free(model[t][i].val);
                model[t][i] = (slot){0, 0, NULL};
            } else {
                int rc = rp_drop_table(w, tname[t], tl);
                CHECK(rc == RP_OK || rc == RP_NOTFOUND, "drop result");
                for (int j = 0; j < NKEYS; j++) {
                    free(model[t][j].val);
                    model[t][j] = (slot){0, 0, NULL};
                }
            }
        }
        if (rnd() % 5 == 0) {
            rp_txn_abort(w);
            copy_model(model, saved);
        } else {
            E(rp_txn_commit(w));
        }
        verify(env, model);
        /* A snapshot keeps seeing its version while writers go on. */
        if (round % 17 == 0) {
            if (snap) rp_txn_abort(snap);
            E(rp_txn_begin(env, 0, &snap));
            snap_version = rp_txn_version(snap);
        }
        if (snap) CHECK(rp_txn_version(snap) == snap_version, "snapshot version moved");
    }
    if (snap) rp_txn_abort(snap);
    rp_stat st;
    E(rp_env_stat(env, &st));
    printf("version %llu pages %llu free %llu pending %llu entries %llu\n",
           (unsigned long long)st.version, (unsigned long long)st.pages_used,
           (unsigned long long)st.free_pages, (unsigned long long)st.pending_pages,
           (unsigned long long)st.entries);
    E(rp_env_compact(env, copy));
    CHECK(rp_env_compact(env, copy) == RP_EXISTS, "compact onto an existing file");
    E(rp_env_close(env));
    /* reopen: the same data */
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    verify(env, model);
    E(rp_env_close(env));
    E(rp_env_open(copy, RP_RDONLY, 0, 0, 0, &env));
    verify(env, model);
    char hpath[300];
    snprintf(hpath, sizeof hpath, "%s/handles", dir);
    rp_txn *w;
    CHECK(rp_txn_begin(env, RP_TXN_WRITE, &w) == RP_READ_ONLY, "write on read-only env");
    E(rp_env_close(env));
    test_handles(hpath);
    snprintf(hpath, sizeof hpath, "%s/runs", dir);
    test_split_runs(hpath, 40000);
    snprintf(hpath, sizeof hpath, "%s/runs-small-txns", dir);
    test_split_runs(hpath, 8);
    snprintf(hpath, sizeof hpath, "%s/commit-writes", dir);
    test_commit_writes(hpath);
    snprintf(hpath, sizeof hpath, "%s/long-free-list", dir);
    test_long_free_list(hpath);
    snprintf(hpath, sizeof hpath, "%s/growth", dir);
    test_growth(hpath);
    for (int t = 0; t < NTABLES; t++)
        for (int i = 0; i < NKEYS; i++) { free(model[t][i].val); free(saved[t][i].val); }
    free(big);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("test_engine: ok\n");
    return 0;
}
