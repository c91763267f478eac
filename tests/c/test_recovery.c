/*
 * test_recovery.c -- power cuts and I/O failures during a durable commit.
 *
 * Power cut: a database with synced commits gets one more commit whose
 * fdatasync never happens (an injected sync failure stands in for the power
 * going off before the flush completed).  The power-cut recorder then drops
 * or tears a seed-chosen subset of the writes made since the last sync.  On
 * reopen the engine must recover to exactly the state before that commit or
 * exactly the state after it, and rp_env_check() must pass.  Hundreds of
 * seeds cover lost pages, lost and torn meta pages and a lost rollback.
 *
 * Failed writes: an injected EIO or ENOSPC at every I/O operation of a
 * commit in turn must fail that commit cleanly, keep the previous data, and
 * leave the environment usable for the next commit.
 */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"


#define NKEYS 300
static int vals[NKEYS];   /* model: value number per key, 0 = absent */

static uint64_t rng;
static uint64_t rnd(void) { return xorshift64(&rng); }

static void key(int i, char *k) { sprintf(k, "key-%04d", i); }

/* Values are a number repeated to a length that depends on it, so a value
 * from the wrong version or a torn page cannot pass for the right one. */
static size_t val(int n, unsigned char *v) {
    size_t len = 8 + (size_t)(n % 5 == 0 ? 5000 : n % 200);
    for (size_t i = 0; i < len; i++) v[i] = (unsigned char)(n * 31 + i);
    return len;
}

static int apply_random(rp_txn *w, int *m, int nops) {
    static unsigned char v[6000];
    for (int op = 0; op < nops; op++) {
        int i = (int)(rnd() % NKEYS);
        char k[16];
        key(i, k);
        if (rnd() % 4) {
            int n = 1 + (int)(rnd() % 100000);
            size_t len = val(n, v);
            int rc = rp_put(w, "t", 1, k, strlen(k), v, len);
            if (rc) return rc;
            m[i] = n;
        } else {
            int rc = rp_del(w, "t", 1, k, strlen(k));
            if (rc && rc != RP_NOTFOUND) return rc;
            m[i] = 0;
        }
    }
    return RP_OK;
}

/* Does the file hold exactly model m? */
static int matches(rp_env *env, const int *m) {
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    int ok = 1;
    static unsigned char v[6000];
    for (int i = 0; i < NKEYS && ok; i++) {
        char k[16];
        key(i, k);
        const void *got;
        size_t gl;
        int rc = rp_get(r, "t", 1, k, strlen(k), &got, &gl);
        if (m[i] == 0) ok = rc == RP_NOTFOUND;
        else {
            size_t len = val(m[i], v);
            ok = rc == RP_OK && gl == len && memcmp(got, v, len) == 0;
        }
    }
    rp_txn_abort(r);
    return ok;
}

static void check_ok(rp_env *env) {
    char msg[256];
    int rc = rp_env_check(env, msg, sizeof msg);
    if (rc) { fprintf(stderr, "check: %s (%s)\n", rp_strerror(rc), msg); exit(1); }
}

static void powercut_round(const char *path, uint64_t seed, int *outcome) {
    rng = seed * 2654435761u + 1;
    memset(vals, 0, sizeof vals);
    remove(path);
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", path);
    remove(lock);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    int ncommits = 1 + (int)(rnd() % 4);
    for (int c = 0; c < ncommits; c++) {
        rp_txn *w;
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        E(apply_random(w, vals, 1 + (int)(rnd() % 150)));
        E(rp_txn_commit(w));
    }
    int before[NKEYS], after[NKEYS];
    memcpy(before, vals, sizeof vals);
    memcpy(after, vals, sizeof vals);
    E(rp_powercut_record(env, 1));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(apply_random(w, after, 1 + (int)(rnd() % 150)));
    rp_fault_set(RP_FAULT_SYNC, 0);
    CHECK(rp_txn_commit(w) != RP_OK, "commit with a failed sync reported success");
    rp_fault_set(RP_FAULT_NONE, 0);
    unsigned undone = 0;
    E(rp_powercut_apply(env, seed, &undone));
    E(rp_env_close(env));
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    check_ok(env);
    int b = matches(env, before), a = matches(env, after);
    CHECK(b || a, "recovered state is neither before nor after the cut commit");
    *outcome = a && !b;
    /* and the file keeps working */
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(apply_random(w, vals, 20));
    E(rp_txn_commit(w));
    check_ok(env);
    E(rp_env_close(env));
}

static void io_failure_rounds(const char *path) {
    static const int kinds[] = {RP_FAULT_WRITE, RP_FAULT_SYNC, RP_FAULT_NOSPACE};
    remove(path);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    rng = 7;
    memset(vals, 0, sizeof vals);
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(apply_random(w, vals, 200));
    E(rp_txn_commit(w));
    int failures = 0;
    for (int k = 0; k < 3; k++) {
        for (unsigned after = 0; after < 12; after++) {
            int next[NKEYS];
            memcpy(next, vals, sizeof vals);
            E(rp_txn_begin(env, RP_TXN_WRITE, &w));
            E(apply_random(w, next, 400));   /* grows the file too */
            rp_fault_set(kinds[k], after);
            int rc = rp_txn_commit(w);
            rp_fault_set(RP_FAULT_NONE, 0);
            if (rc) {
                failures++;
                CHECK(rc == 5 /* EIO */ || rc == 28 /* ENOSPC */, "unexpected error kind");
                CHECK(matches(env, vals), "failed commit changed the data");
            } else {
                memcpy(vals, next, sizeof vals);   /* the fault struck no op */
                CHECK(matches(env, vals), "commit lost data");
            }
            check_ok(env);
        }
    }
    CHECK(failures >= 3, "faults never struck");
    E(rp_env_close(env));
    /* reopen after all that: still the last committed state */
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(matches(env, vals), "reopen after faults");
    check_ok(env);
    E(rp_env_close(env));
}

int main(int argc, char **argv) {
    char dir[] = "/tmp/rp_test_recoveryXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/db", dir);
    int rounds = argc > 1 ? atoi(argv[1]) : 300;
    const char *env_rounds = getenv("REALMPY_POWERCUT_ROUNDS");
    if (env_rounds) rounds = atoi(env_rounds);
    int kept = 0;
    for (int s = 1; s <= rounds; s++) {
        int outcome = 0;
        powercut_round(path, (uint64_t)s, &outcome);
        kept += outcome;
    }
    printf("power cuts: %d rounds, %d kept the cut commit, %d rolled it back\n",
           rounds, kept, rounds - kept);
    CHECK(kept > 0 && kept < rounds, "power cuts did not exercise both outcomes");
    io_failure_rounds(path);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("test_recovery: ok\n");
    return 0;
}
