/*
 * child.h -- the C tests' forked children: a monotonic clock and reaping a
 * child with a hang guard.  Include after internal.h (or after defining
 * _GNU_SOURCE), like the tests that fork do.
 */
#ifndef REALMPY_TEST_CHILD_H
#define REALMPY_TEST_CHILD_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

#include "check.h"

static inline uint64_t test_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Exit status of a child (128 + signal if killed); killed after 20 s and
 * reported as 255 (a hang). */
static inline int test_reap(pid_t pid) {
    int st;
    uint64_t deadline = test_now_ns() + 20000000000ull;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        CHECK(r == 0 || errno == EINTR, "waitpid");
        if (test_now_ns() > deadline) {
            fprintf(stderr, "child %d hangs: killed\n", (int)pid);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return 255;
        }
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

#endif /* REALMPY_TEST_CHILD_H */
