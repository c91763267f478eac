/*
 * test_share.c -- rp_txn_share: a read transaction marked shared is usable
 * from any thread (gets, cursors, counts), with the callers serialising their
 * calls; it keeps reading its own (older) version; any thread may end it
 * (abort, commit, reset); write transactions are never shared; an unshared
 * txn still refuses other threads (RP_WRONG_THREAD); reset drops the mark,
 * refresh keeps it; the reader slot names the thread that began the txn.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

#define NKEYS 500
#define NTHREADS 4
#define ROUNDS 40

static const char T[] = "t";

static size_t mkkey(int i, char *buf) { return (size_t)sprintf(buf, "k%05d", i); }

/* Version `gen` of the data: key i -> "v<gen>-<i>". */
static void write_gen(rp_env *env, int gen) {
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    for (int i = 0; i < NKEYS; i++) {
        char k[16], v[32];
        size_t kl = mkkey(i, k);
        int vl = sprintf(v, "v%d-%d", gen, i);
        E(rp_put(w, T, 1, k, kl, v, (size_t)vl));
    }
    E(rp_txn_commit(w));
}

/* Every key of txn reads generation gen, by gets and by a cursor scan. */
static void check_gen(rp_txn *txn, int gen) {
    for (int i = 0; i < NKEYS; i++) {
        char k[16], v[32];
        size_t kl = mkkey(i, k);
        int vl = sprintf(v, "v%d-%d", gen, i);
        const void *val;
        size_t len;
        E(rp_get(txn, T, 1, k, kl, &val, &len));
        CHECK(len == (size_t)vl && memcmp(val, v, len) == 0, "value of the shared version");
    }
    uint64_t n;
    E(rp_table_count(txn, T, 1, &n));
    CHECK(n == NKEYS, "count");
    rp_cursor *c;
    E(rp_cursor_open(txn, T, 1, &c));
    const void *k, *v;
    size_t kl, vl;
    int seen = 0;
    int rc = rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &kl, &v, &vl);
    while (rc == RP_OK) {
        CHECK(vl > 1 && ((const char *)v)[1] == '0' + gen, "scanned value's version");
        seen++;
        rc = rp_cursor_step(c, 1, &k, &kl, &v, &vl);
    }
    CHECK(rc == RP_NOTFOUND, "scan ends with RP_NOTFOUND");
    CHECK(seen == NKEYS, "scan sees every key");
    rp_cursor_close(c);
}

/* ---- threads ---------------------------------------------------------------- */

typedef struct {
    rp_txn *txn;
    int gen;
    pthread_mutex_t *mu;   /* the caller-side serialisation the contract asks for */
    int expect;            /* for probe: the rp_get result expected */
    int rc;                /* for ender: what the end call returned */
    int how;               /* for ender: 0 abort, 1 commit, 2 reset, 3 refresh */
    uint64_t version;
} job;

static void *reader(void *arg) {
    job *j = arg;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_mutex_lock(j->mu);
        check_gen(j->txn, j->gen);
        pthread_mutex_unlock(j->mu);
    }
    return NULL;
}

static void *probe(void *arg) {
    job *j = arg;
    const void *val;
    size_t len;
    j->rc = rp_get(j->txn, T, 1, "k00001", 6, &val, &len);
    return NULL;
}

static void *sharer(void *arg) {
    job *j = arg;
    j->rc = rp_txn_share(j->txn);
    return NULL;
}

static void *ender(void *arg) {
    job *j = arg;
    switch (j->how) {
    case 0: j->rc = rp_txn_abort(j->txn); break;
    case 1: j->rc = rp_txn_commit_ex(j->txn, &j->version); break;
    case 2: j->rc = rp_txn_reset(j->txn); break;
    default: j->rc = rp_txn_refresh(j->txn); break;
    }
    return NULL;
}

static void run(void *(*fn)(void *), job *j) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fn, j) == 0, "pthread_create");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
}

/* Slots pinning version v, and whether one of them names thread tid. */
static unsigned pins(rp_env *env, uint64_t v, uint64_t tid, int *named) {
    rp_reader_info info[64];
    unsigned n, k = 0;
    E(rp_env_readers(env, info, 64, &n));
    if (named) *named = 0;
    for (unsigned i = 0; i < n; i++) {
        if (info[i].version != v) continue;
        k++;
        if (named && info[i].thread == tid) *named = 1;
    }
    return k;
}

int main(void) {
    const char *dir = getenv("RP_TEST_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/share.db", dir ? dir : ".");
    unlink(path);
    char lpath[4200];
    snprintf(lpath, sizeof lpath, "%s.lock", path);
    unlink(lpath);
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 64u << 20, 0, 0, &env));
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    uint64_t me = (uint64_t)syscall(SYS_gettid);

    write_gen(env, 1);
    rp_txn *snap;
    E(rp_txn_begin(env, 0, &snap));
    uint64_t v1 = rp_txn_version(snap);
    write_gen(env, 2);   /* the snapshot now reads an older version */
    CHECK(rp_env_version(env) == v1 + 1, "a newer version exists");

    /* Unshared: other threads are refused, and cannot share it either. */
    job j = {.txn = snap, .gen = 1, .mu = &mu};
    run(probe, &j);
    CHECK(j.rc == RP_WRONG_THREAD, "unshared txn from another thread");
    run(sharer, &j);
    CHECK(j.rc == RP_WRONG_THREAD, "only the owner shares");
    j.how = 0;
    run(ender, &j);
    CHECK(j.rc == RP_WRONG_THREAD, "unshared txn not ended by another thread");

    /* Share, then use it from several threads at once (serialised). */
    E(rp_txn_share(snap));
    E(rp_txn_share(snap));   /* idempotent */
    run(sharer, &j);
    CHECK(j.rc == RP_OK, "share of a shared txn from any thread");
    run(probe, &j);
    CHECK(j.rc == RP_OK, "shared txn from another thread");
    pthread_t th[NTHREADS];
    job jobs[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = (job){.txn = snap, .gen = 1, .mu = &mu};
        CHECK(pthread_create(&th[i], NULL, reader, &jobs[i]) == 0, "pthread_create");
    }
    for (int r = 0; r < ROUNDS / 4; r++) {   /* the beginner reads too */
        pthread_mutex_lock(&mu);
        check_gen(snap, 1);
        pthread_mutex_unlock(&mu);
    }
    for (int i = 0; i < NTHREADS; i++) CHECK(pthread_join(th[i], NULL) == 0, "join");
    CHECK(rp_txn_version(snap) == v1, "still the old version");

    /* The slot pins v1 and names the beginner (this thread). */
    int named;
    CHECK(pins(env, v1, me, &named) == 1 && named, "slot names the thread that began it");

    /* Writers are never blocked by it and still see v1 pinned. */
    write_gen(env, 3);

    /* End from another thread: unpins v1; the env can close afterwards. */
    j.how = 0;
    run(ender, &j);
    CHECK(j.rc == RP_OK, "abort of a shared txn from another thread");
    CHECK(pins(env, v1, me, NULL) == 0, "v1 unpinned");

    /* A write txn is never shared. */
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    CHECK(rp_txn_share(w) == RP_INVALID, "write txn refused");
    job jw = {.txn = w};
    run(probe, &jw);
    CHECK(jw.rc == RP_WRONG_THREAD, "write txn still owned by its thread");
    E(rp_txn_commit(w));
    CHECK(rp_txn_share(NULL) == RP_INVALID, "NULL");

    /* Commit (= end) of a shared read txn from another thread. */
    uint64_t v3 = rp_env_version(env);
    E(rp_txn_begin(env, 0, &snap));
    E(rp_txn_share(snap));
    j = (job){.txn = snap, .how = 1};
    run(ender, &j);
    CHECK(j.rc == RP_OK && j.version == v3, "commit_ex of a shared read txn elsewhere");
    CHECK(pins(env, v3, me, NULL) == 0, "v3 unpinned");

    /* Reset from another thread parks it unshared; renew owns it here. */
    E(rp_txn_begin(env, 0, &snap));
    E(rp_txn_share(snap));
    j = (job){.txn = snap, .how = 2};
    run(ender, &j);
    CHECK(j.rc == RP_OK, "reset of a shared txn from another thread");
    CHECK(rp_txn_share(snap) == RP_BAD_TXN, "a parked txn cannot be shared");
    E(rp_txn_renew(snap));
    j = (job){.txn = snap};
    run(probe, &j);
    CHECK(j.rc == RP_WRONG_THREAD, "renewed unshared: owned by the renewer");

    /* Refresh keeps the mark, from any thread. */
    E(rp_txn_share(snap));
    write_gen(env, 4);
    j = (job){.txn = snap, .how = 3};
    run(ender, &j);
    CHECK(j.rc == RP_OK, "refresh of a shared txn from another thread");
    CHECK(rp_txn_version(snap) == rp_env_version(env), "refreshed to the latest");
    j = (job){.txn = snap, .gen = 4, .mu = &mu};
    run(probe, &j);
    CHECK(j.rc == RP_OK, "still shared after refresh");
    check_gen(snap, 4);
    /* Open cursors keep a shared txn from being parked, as any txn. */
    rp_cursor *c;
    E(rp_cursor_open(snap, T, 1, &c));
    CHECK(rp_txn_reset(snap) == RP_BUSY, "reset with a cursor open");
    rp_cursor_close(c);
    CHECK(rp_env_close(env) == RP_BUSY, "a shared txn keeps the env open");
    E(rp_txn_abort(snap));

    E(rp_env_close(env));
    unlink(path);
    unlink(lpath);
    printf("test_share: ok\n");
    return 0;
}
