/*
 * check.h -- the two assertions of the engine's C tests (after LMDB's
 * mtest): CHECK(cond, what) and E(engine call).  Either prints file:line and
 * why, then exits 1, which ctest reports as a failure.  Also xorshift64, the
 * tests' deterministic random numbers.
 */
#ifndef REALMPY_TEST_CHECK_H
#define REALMPY_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "realmpy.h"

#define CHECK(cond, what)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, what);            \
            exit(1);                                                             \
        }                                                                        \
    } while (0)
#define E(expr)                                                                  \
    do {                                                                         \
        int rc_ = (expr);                                                        \
        if (rc_) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,        \
                    rp_strerror(rc_));                                           \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* The next number of a xorshift64 sequence in *state (never 0). */
static inline uint64_t xorshift64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

#endif /* REALMPY_TEST_CHECK_H */
