/*
 * io.c -- every byte written to the data file goes through here.
 *
 *   - pwrite/pwritev that retry short writes and EINTR;
 *   - fdatasync;
 *   - file growth by real zero writes (no holes, no unwritten extents: a
 *     commit then overwrites allocated blocks, which syncs faster);
 *   - fault injection for tests (rp_fault_set): process-global, armed for
 *     one strike;
 *   - the power-cut recorder (rp_powercut_record/apply): keeps the
 *     before-image of every write since the last successful sync, so a test
 *     can emulate the page cache being lost: some writes never reached the
 *     disk, some only partly (torn at a 512-byte sector boundary), and a
 *     growth of the file may be lost too (the file is then shorter than any
 *     meta page written after it expects).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <assert.h>

/* ---- fault injection ------------------------------------------------------ */

/* Armed kind (RP_FAULT_*) and operations of that kind still to pass before
 * one fails.  Process-global; tests arm it from one thread at a time. */
static _Atomic int fault_kind;
static _Atomic unsigned fault_after;

enum { OP_WRITE, OP_SYNC };

void rp_fault_set(int kind, unsigned after) {
    if (kind != RP_FAULT_WRITE && kind != RP_FAULT_SYNC && kind != RP_FAULT_NOSPACE
        && kind != RP_FAULT_CRASH)
        kind = RP_FAULT_NONE;
    atomic_store_explicit(&fault_kind, RP_FAULT_NONE, memory_order_seq_cst);
    atomic_store_explicit(&fault_after, after, memory_order_seq_cst);
    atomic_store_explicit(&fault_kind, kind, memory_order_seq_cst);
}

/* Called once per I/O operation (a pwrite, a pwritev, a growth, a sync):
 * returns the errno to fail it with, or 0.  A matching operation decrements
 * the countdown; the one that finds it at 0 strikes and disarms. */
static int fault_strike(int op) {
    int k = atomic_load_explicit(&fault_kind, memory_order_seq_cst);
    int err;
    if (op == OP_WRITE && k == RP_FAULT_WRITE) err = EIO;
    else if (op == OP_WRITE && k == RP_FAULT_NOSPACE) err = ENOSPC;
    else if (op == OP_SYNC && k == RP_FAULT_SYNC) err = EIO;
    else return 0;
    for (;;) {
        unsigned c = atomic_load_explicit(&fault_after, memory_order_seq_cst);
        if (c == 0) {
            /* Only the thread that disarms strikes. */
            return atomic_compare_exchange_strong(&fault_kind, &k, RP_FAULT_NONE)
                       ? err : 0;
        }
        if (atomic_compare_exchange_strong(&fault_after, &c, c - 1)) return 0;
    }
}

void rp_fault_step(int step) {
    if (atomic_load_explicit(&fault_kind, memory_order_seq_cst) == RP_FAULT_CRASH &&
        atomic_load_explicit(&fault_after, memory_order_seq_cst) == (unsigned)step)
        raise(SIGKILL);
}

/* ---- raw writes (no faults, no recording) ----------------------------------- */

static int raw_pwrite(int fd, const void *buf, size_t len, uint64_t off) {
    const uint8_t *p = buf;
    while (len > 0) {
        size_t chunk = len > (size_t)SSIZE_MAX ? (size_t)SSIZE_MAX : len;
        ssize_t n = pwrite(fd, p, chunk, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;        /* no progress on a regular file */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return RP_OK;
}

static int raw_pwritev(int fd, const struct iovec *iov, int cnt, uint64_t off) {
    int i = 0;
    while (i < cnt) {
        int n = cnt - i > IOV_MAX ? IOV_MAX : cnt - i;
        ssize_t w = pwritev(fd, iov + i, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        size_t left = (size_t)w;
        off += (uint64_t)w;
        /* Skip the fully written buffers ... */
        while (i < cnt && left >= iov[i].iov_len) {
            left -= iov[i].iov_len;
            i++;
        }
        /* ... and finish a partly written one by hand (iov is const). */
        if (i < cnt && left > 0) {
            int rc = raw_pwrite(fd, (const uint8_t *)iov[i].iov_base + left,
                                iov[i].iov_len - left, off);
            if (rc != RP_OK) return rc;
            off += iov[i].iov_len - left;
            i++;
        } else if (w == 0 && i < cnt) {
            return EIO;
        }
    }
    return RP_OK;
}

/* ---- power-cut recorder ----------------------------------------------------- */

/* Read the bytes [off, off+len) as they are now; past the end of the file
 * they are zeros (that is what undoing an extending write restores). */
static int read_before(int fd, uint8_t *dst, size_t len, uint64_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, dst + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) break;             /* end of file */
        got += (size_t)n;
    }
    memset(dst + got, 0, len - got);
    return RP_OK;
}

static int record_reserve(rp_env *env) {
    if (env->rec_len == env->rec_cap) {
        size_t cap = env->rec_cap ? env->rec_cap * 2 : 64;
        rp_undo *r = realloc(env->rec, cap * sizeof *r);
        if (r == NULL) return ENOMEM;
        env->rec = r;
        env->rec_cap = cap;
    }
    return RP_OK;
}

static int record(rp_env *env, uint64_t off, size_t len) {
    if (len == 0) return RP_OK;
    int rc = record_reserve(env);
    if (rc != RP_OK) return rc;
    uint8_t *b = malloc(len);
    if (b == NULL) return ENOMEM;
    rc = read_before(env->fd, b, len, off);
    if (rc != RP_OK) {
        free(b);
        return rc;
    }
    env->rec[env->rec_len++] = (rp_undo){ .off = off, .len = len, .before = b };
    return RP_OK;
}

/* Drop the records (they are durable now, or the recorder is being reset). */
static void records_drop(rp_env *env) {
    for (size_t i = 0; i < env->rec_len; i++) free(env->rec[i].before);
    env->rec_len = 0;
}

void rp_io_recorder_clear(rp_env *env) {
    if (env == NULL) return;
    records_drop(env);
    free(env->rec);
    env->rec = NULL;
    env->rec_cap = 0;
}

/* ---- the I/O interface -------------------------------------------------------- */

int rp_io_pwrite(rp_env *env, const void *buf, size_t len, uint64_t off) {
    assert(env != NULL && (buf != NULL || len == 0));
    int rc = fault_strike(OP_WRITE);
    if (rc != 0) return rc;
    if (env->rec_on && (rc = record(env, off, len)) != RP_OK) return rc;
    return raw_pwrite(env->fd, buf, len, off);
}

int rp_io_pwritev(rp_env *env, const struct iovec *iov, int cnt, uint64_t off) {
    assert(env != NULL && (iov != NULL || cnt == 0) && cnt >= 0);
    if (cnt < 0) return EINVAL;
    int rc = fault_strike(OP_WRITE);
    if (rc != 0) return rc;
    if (env->rec_on) {
        size_t total = 0;
        for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
        if ((rc = record(env, off, total)) != RP_OK) return rc;
    }
    return raw_pwritev(env->fd, iov, cnt, off);
}

int rp_io_sync(rp_env *env) {
    assert(env != NULL);
    int rc = fault_strike(OP_SYNC);
    if (rc != 0) return rc;
    while (fdatasync(env->fd) != 0) {
        if (errno != EINTR) return errno;
    }
    /* Everything written so far is on stable storage: no longer undoable.
     * (After a failed sync the records stay: those writes may be lost.) */
    records_drop(env);
    return RP_OK;
}

/* Static so that growth allocates nothing; in .bss, so it costs no file
 * size and its pages are shared zero pages until touched (never). */
/* Growth writes zeros one page per call.  A larger write makes the kernel
 * cache the range in large folios, and every later 4 KiB pwrite into such a
 * folio walks all of its buffer heads (ext4_block_write_begin): measured,
 * 1 MiB zero writes doubled the cost of a small commit. */
#define RP_GROW_BLOCK 4096u
static const uint8_t zero_block[RP_GROW_BLOCK];

int rp_io_grow(rp_env *env, uint64_t new_size) {
    assert(env != NULL);
    if (new_size <= env->file_size) return RP_OK;
    /* Growth is one write operation for the fault injector. */
    int rc = fault_strike(OP_WRITE);
    if (rc != 0) return rc;
    uint64_t old = env->file_size, off = old;
    /* For power cuts a growth is recorded as an extension (before == NULL):
     * until the next sync the new size itself may be lost.  Reserve the
     * record first so that success cannot fail to be recorded. */
    if (env->rec_on && (rc = record_reserve(env)) != RP_OK) return rc;
    while (off < new_size) {
        uint64_t n = new_size - off;
        if (n > RP_GROW_BLOCK) n = RP_GROW_BLOCK;
        rc = raw_pwrite(env->fd, zero_block, (size_t)n, off);
        if (rc != RP_OK) {
            /* Best effort: give back what was added; file_size stays old. */
            while (ftruncate(env->fd, (off_t)old) != 0 && errno == EINTR) {}
            return rc;
        }
        off += n;
    }
    env->file_size = new_size;
    if (env->rec_on)
        env->rec[env->rec_len++] = (rp_undo){ .off = old, .len = (size_t)(new_size - old),
                                              .before = NULL };
    return RP_OK;
}

/* ---- power-cut simulation (public API) ------------------------------------- */

int rp_powercut_record(rp_env *env, int on) {
    int rc = rp_env_usable(env);
    if (rc != RP_OK) return rc;
    if (!on) rp_io_recorder_clear(env);
    env->rec_on = on != 0;
    return RP_OK;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int rp_powercut_apply(rp_env *env, uint64_t seed, unsigned *undone) {
    int rc = rp_env_usable(env);
    if (rc != RP_OK) return rc;
    uint64_t s = seed;
    unsigned count = 0;
    uint64_t cap = UINT64_MAX;         /* file size after undone growths */
    /* Newest first: when writes overlap, undoing an older one after a newer
     * one leaves each byte as it was after some prefix of the writes to it,
     * which is what a disk can hold after a power cut. */
    for (size_t i = env->rec_len; i-- > 0 && rc == RP_OK;) {
        const rp_undo *u = &env->rec[i];
        uint64_t r = splitmix64(&s);
        uint64_t from = u->off, end = u->off + u->len;
        switch (r % 3) {
        case 0:                        /* reached the disk */
            continue;
        case 1:                        /* never reached it */
            break;
        default: {                     /* torn: a tail of sectors lost */
            uint64_t first = (u->off / 512 + 1) * 512;  /* first interior */
            if (first < end) {
                uint64_t k = (end - 1 - first) / 512 + 1;
                from = first + (splitmix64(&s) % k) * 512;
            }
            break;
        }
        }
        count++;
        if (u->before == NULL) {
            /* A growth: the file size (or its tail) never became durable,
             * and with it whatever newer writes put there. */
            while ((rc = ftruncate(env->fd, (off_t)from) != 0 ? errno : RP_OK) == EINTR) {}
            if (from < cap) cap = from;
            continue;
        }
        if (end > cap) end = cap;      /* inside a lost extension: gone */
        if (from < end)
            rc = raw_pwrite(env->fd, u->before + (from - u->off), (size_t)(end - from), from);
    }
    rp_io_recorder_clear(env);
    env->rec_on = 0;
    /* The page cache now differs from what this env believes: poison it. */
    atomic_store_explicit(&env->panic, 1, memory_order_seq_cst);
    if (undone != NULL) *undone = count;
    return rc;
}
