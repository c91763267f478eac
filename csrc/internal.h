/*
 * internal.h -- what the engine's modules share.  Not installed, not part of
 * the API.
 *
 *   io.c     file I/O: pwrite/pwritev/fdatasync/growth, fault injection and
 *            the power-cut recorder (every byte written goes through here)
 *   lock.c   the lock file: first-opener detection and (re)initialisation,
 *            layout/ABI check, writer mutex, version counter + futex, meta
 *            ring, reader slots (claim, begin, end, oldest, reaping)
 *   page.c   checksums and page-level helpers (slotted pages)
 *   btree.c  B+tree search, insert, delete, split, merge, cursors, overflow
 *   txn.c    transactions: dirty pages, allocation, free list, commit
 *   env.c    open/close, verification of a commit, stat, check, compact,
 *            error strings
 *   meta.c   meta records: writing both copies, the acknowledged mark, and
 *            choosing the version to open (torn commit or damage?)
 *   verify.c checksums verified on read (the verified-version cache) and
 *            the per-thread detail of RP_CORRUPT
 *   filter.c filter programs on msgpack records (rp_filter_eval and the
 *            record test of rp_cursor_filter)
 *   sigbus.c the SIGBUS guard: a mapping truncated by another program
 *            breaks the environment instead of killing the process
 */
#ifndef REALMPY_INTERNAL_H
#define REALMPY_INTERNAL_H

#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "format.h"
#include "realmpy.h"

/* ---- assertions ----------------------------------------------------------------
 *
 * RP_ASSERT(c): a precondition or invariant that the engine's own code
 * guarantees -- what one engine function must pass another, a structure
 * the engine built itself in memory.  Never a condition that a damaged
 * file, another process, or a caller of the public API can cause: those
 * are return codes (RP_CORRUPT saying where, via rp_corrupt/rp_corruptf;
 * RP_INVALID, ...).  As SQLite's assert(): checked in the debug build
 * (CMake Debug, which the RP_SANITIZE build uses), compiled out where
 * NDEBUG is defined (CMake Release/RelWithDebInfo, the Python extension),
 * so it costs nothing where speed matters and documents the contract
 * where it is read.  A failure is a bug in the engine, not in the data. */
#include <assert.h>
#define RP_ASSERT(c) assert(c)

#define RP_LIBRARY_VERSION 1
#define RP_DEFAULT_MAP_SIZE (64ULL << 30)
#define RP_MAX_DEPTH 32

/* ---- shared memory (lock file) layout, matching format.h ------------------ */

typedef struct rp_ring_entry {
    _Atomic uint64_t seq;            /* 2*txnid when complete, odd if writing */
    _Atomic uint64_t f[7];           /* rp_roots fields, in order             */
} rp_ring_entry;

typedef struct rp_lock_hdr {
    char              magic[8];
    uint32_t          layout;
    uint32_t          abi;
    uint32_t          max_readers;
    _Atomic uint32_t  ready;
    uint64_t          nonce;
    uint8_t           reserved0[32];
    union {
        pthread_mutex_t m;
        uint8_t         pad[64];
    } wmutex;                        /* offset 64                             */
    _Atomic uint64_t  version;       /* offset 128                            */
    _Atomic uint32_t  futex;         /* offset 136                            */
    _Atomic uint32_t  waiters;       /* offset 140                            */
    _Atomic uint64_t  last_reap_ns;  /* offset 144                            */
    _Atomic uint64_t  writer_tid;    /* offset 152                            */
    _Atomic uint64_t  commit_txnid;  /* offset 160: commit in doubt, 0 = none */
    _Atomic uint32_t  writer_pid;    /* offset 168                            */
    _Atomic uint32_t  commit_tid;    /* offset 172: thread that set the mark  */
    _Atomic uint64_t  writer_start;  /* offset 176                            */
    uint8_t           reserved2[8];
    rp_ring_entry     ring[RP_RING]; /* offset 192                            */
} rp_lock_hdr;

typedef struct rp_slot {
    _Atomic uint64_t version;        /* pinned version, 0 = idle              */
    _Atomic uint32_t pid;            /* 0 = free                              */
    _Atomic uint32_t tid;
    _Atomic uint64_t start_time;
    uint8_t          reserved[40];
} rp_slot;

_Static_assert(offsetof(rp_lock_hdr, wmutex) == 64, "lock: mutex offset");
_Static_assert(offsetof(rp_lock_hdr, version) == 128, "lock: version offset");
_Static_assert(offsetof(rp_lock_hdr, commit_txnid) == 160, "lock: marker offset");
_Static_assert(offsetof(rp_lock_hdr, writer_start) == 176, "lock: writer offset");
_Static_assert(offsetof(rp_lock_hdr, ring) == 192, "lock: ring offset");
_Static_assert(sizeof(rp_lock_hdr) == RP_LOCK_SLOTS_OFF, "lock: header size");
_Static_assert(sizeof(rp_slot) == RP_LOCK_SLOT_SIZE, "lock: slot size");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "lock: mutex too large");

/* ABI signature stored in the lock file: refuses other mutex sizes, pointer
 * widths and slot layouts. */
#define RP_LOCK_ABI ((uint32_t)(sizeof(pthread_mutex_t) | (sizeof(void *) << 8) \
                     | (sizeof(rp_slot) << 16) | (RP_RING << 24)))

/* ---- the power-cut recorder (io.c) ------------------------------------ */

typedef struct rp_undo {
    uint64_t off;
    size_t   len;
    uint8_t *before;                 /* bytes the write replaced              */
} rp_undo;

/* ---- environment ----------------------------------------------------------- */

/* Where the last insert into a page went (btree.c's split rule), kept from
 * the commit that wrote the page to the next write txn that copies it.
 * Direct-mapped by page number; a hint whose (pgno, txnid) does not match
 * is no hint.  Only the writer (under the writer mutex) uses them. */
#define RP_SPLIT_HINTS 512
typedef struct rp_split_hint {
    uint64_t txnid;
    uint32_t pgno;
    uint32_t last;                   /* 1 + entry index; 0 = none             */
} rp_split_hint;

struct rp_env {
    char            *path;           /* data file path (owned)                */
    char            *lock_path;      /* <path>.lock (owned)                   */
    int              fd;             /* data file                             */
    int              lock_fd;        /* lock file (holds a shared OFD lock)   */
    unsigned         flags;          /* RP_NOSYNC | RP_RDONLY                 */
    unsigned         max_active;     /* 0 = unlimited                         */
    uint64_t         map_size;       /* bytes reserved for the data map       */
    const uint8_t   *map;            /* data file, PROT_READ, MAP_SHARED      */
    uint64_t         file_size;      /* bytes known allocated on disk         */
    rp_split_hint    hints[RP_SPLIT_HINTS];
    uint64_t         hot_pages;      /* hot pages the last commit allocated
                                        (writer only; txn.c, ALLOCATION)     */
    rp_lock_hdr     *lk;             /* lock file mapping (or private memory
                                        when immutable)                        */
    size_t           lk_size;
    unsigned         nreaders;       /* slots in lk's table, validated at open:
                                        never re-read from the shared header  */
    int              immutable;      /* RP_RDONLY without a usable lock file:
                                        lk is private, nothing is shared      */
    dev_t            lock_dev;       /* the lock file held (rp_lock_check)    */
    ino_t            lock_ino;
    rp_slot         *slots;          /* lk's reader table                     */
    unsigned         fork_gen;       /* rp_fork_generation at open            */
    pid_t            pid;
    uint64_t         start_time;     /* this process's start time (ticks)     */

    pthread_mutex_t  local;          /* guards the fields below               */
    rp_slot        **pool;           /* slots this process claimed, idle      */
    unsigned         pool_len, pool_cap;
    unsigned         ntxns;          /* open transactions of this env         */
    _Atomic int      interrupted;    /* rp_env_interrupt called               */
    _Atomic int      nwaiting;       /* threads inside rp_env_wait (env.c)    */
    _Atomic int      panic;          /* set after a failed rollback           */
    _Atomic unsigned faulted;        /* RP_FAULT_*: a mapping lost pages
                                        (sigbus.c); never cleared             */
    pthread_t        writer;         /* thread holding the write txn          */
    _Atomic int      has_writer;
    pthread_mutex_t  wmutex_held;    /* the writer mutex's bytes as glibc left
                                        them when we locked it (lock.c:
                                        wmutex_repair); writer only           */

    /* integrity (verify.c, meta.c) */
    _Atomic uint64_t *verified;      /* per pgno: txnid whose checksum this
                                        process verified (verify.c)          */
    size_t           verified_bytes;
    uint64_t         recovered_from; /* RP_RECOVER: version rolled back from */
    char             recovery_note[256];

    /* power-cut recorder (io.c); only touched by the writer */
    int              rec_on;
    rp_undo         *rec;
    size_t           rec_len, rec_cap;
};

/* ---- sigbus.c: mappings another program can truncate ----------------------
 * Touching a page of a MAP_SHARED mapping beyond the end of its file raises
 * SIGBUS.  The guard (design and thread rules: sigbus.c) replaces the lost
 * pages with zeros and sets a bit in env->faulted; the engine turns that
 * into an error at its safe points (rp_env_usable, read_begin,
 * rp_lock_check, failed page checks, batch copies). */
#define RP_FAULT_LOCK 1u             /* the lock file mapping (env->lk)       */
#define RP_FAULT_DATA 2u             /* the data file mapping (env->map)      */
/* Guard [addr, addr + len): a fault there sets bit in env->faulted and
 * leaves pages of protection prot.  Installs the handler on first use.
 * RP_OK, EMFILE if the registry is full, or sigaction's errno. */
int  rp_guard_add(rp_env *env, const void *addr, size_t len, int prot, unsigned bit);
/* Forget the range starting at addr (before unmapping it). */
void rp_guard_remove(const void *addr);
/* rp_guard_remove, then munmap -- except a lock mapping that faulted,
 * which stays mapped (glibc's robust list may point into it). */
void rp_guard_unmap(rp_env *env, void *addr, size_t len, unsigned bit);
/* The error for a faulted env: RP_LOCK_CHANGED, or RP_CORRUPT with a
 * detail naming the data file. */
int  rp_guard_error(const rp_env *env);
/* Faults this process has survived (tests). */
uint64_t rp_guard_fault_count(void);
static inline int rp_guard_faulted(const rp_env *env) {
    return atomic_load_explicit(&env->faulted, memory_order_seq_cst) != 0;
}

/* Generation counter bumped in every fork child (pthread_atfork, lock.c). */
extern _Atomic unsigned rp_fork_generation;

/* Common precondition of every env call. */
static inline int rp_env_usable(const rp_env *env) {
    if (env == NULL) return RP_INVALID;
    if (env->fork_gen != atomic_load_explicit(&rp_fork_generation,
                                              memory_order_relaxed))
        return RP_FORKED;
    if (atomic_load_explicit(&env->panic, memory_order_relaxed))
        return RP_PANIC;
    if (__builtin_expect(atomic_load_explicit(&env->faulted, memory_order_relaxed) != 0, 0))
        return rp_guard_error(env);
    return RP_OK;
}

/* ---- io.c ------------------------------------------------------------------
 * All return RP_OK or an errno.  Short writes and EINTR are retried.  Faults
 * armed by rp_fault_set() strike here.  With the recorder on, each write's
 * before-image is kept until the next successful rp_io_sync(). */
int rp_io_pwrite(rp_env *env, const void *buf, size_t len, uint64_t off);
int rp_io_pwritev(rp_env *env, const struct iovec *iov, int cnt, uint64_t off);
int rp_io_sync(rp_env *env);
/* Make the data file at least new_size bytes long, zero-filled with real
 * writes (not holes, not unwritten extents), then update env->file_size.
 * Does not sync: the commit's fdatasync covers it. */
int rp_io_grow(rp_env *env, uint64_t new_size);
/* Free the recorder's buffers. */
void rp_io_recorder_clear(rp_env *env);
/* A commit reached step (RP_STEP_*): dies here if RP_FAULT_CRASH is armed
 * for it. */
void rp_fault_step(int step);

/* ---- lock.c ----------------------------------------------------------------- */

/* Open or create <path>.lock and map it.  It is created with the data
 * file's read/write mode bits (env->fd; 0600 without one), opened with
 * O_NOFOLLOW (a symlink: RP_LOCK_ERRNO - ELOOP, its target untouched) and
 * used only as a regular file with one link (else RP_LOCK_ERRNO - EINVAL /
 * EISDIR / EMLINK).  Sets *first = 1 if no other process has the file open:
 * the caller then owns an exclusive lock, the header has been (re)built
 * with ready = 0, and the caller must finish with rp_lock_ready() after
 * recovering the data file.  Otherwise waits for the initialiser, validates
 * the header (size against max_readers, magic, layout, ABI:
 * RP_INCOMPATIBLE_LOCK when it stays bad while in use) and holds a shared
 * lock.  With RP_RDONLY in env->flags, a lock file that cannot be opened
 * for writing (EACCES, EPERM, EROFS) makes the env immutable (*first = 1,
 * private memory, no file created) unless some process has the lock file in
 * use (then RP_LOCK_ERRNO - that errno).  Other errors about the lock file
 * are RP_LOCK_ERRNO - errno.  Also records env->pid/start_time/fork_gen. */
int  rp_lock_open(rp_env *env, unsigned max_readers, int *first);
/* First opener: publish the recovered roots as the current version, set
 * ready, downgrade to a shared lock. */
int  rp_lock_ready(rp_env *env, const rp_roots *current);
/* Release this process's slots of this env, unmap, close. */
void rp_lock_close(rp_env *env);

/* Writer mutex.  *owner_died = 1 when the previous owner died holding it
 * (EOWNERDEAD): the caller must repair (republish the newest valid meta) and
 * then call rp_wlock_consistent() before rp_wunlock().  rp_wlock waits in
 * slices of RP_WLOCK_CHECK_NS; after each it checks the owner the lock word
 * names, and a dead or foreign one (a forged word) is turned into
 * EOWNERDEAD; the live recorded writer is waited on for as long as it
 * holds the lock.  RP_TXN_ACTIVE if this thread holds it.  rp_wlock_try
 * does not wait: RP_BUSY if another thread holds it, RP_TXN_ACTIVE if this
 * one does. */
int  rp_wlock(rp_env *env, int *owner_died);
int  rp_wlock_try(rp_env *env, int *owner_died);
/* rp_wlock giving up with RP_TIMEOUT after timeout_ms (0: rp_wlock_try,
 * RP_TIMEOUT instead of RP_BUSY; < 0: rp_wlock). */
int  rp_wlock_timed(rp_env *env, int64_t timeout_ms, int *owner_died);
void rp_wlock_consistent(rp_env *env);
void rp_wunlock(rp_env *env);

/* The in-doubt commit marker (format.h: commit_txnid, commit_tid).  A
 * writer marks its version before writing its meta page and clears the
 * mark (txnid 0) after publishing it, or after rolling the meta back.
 * rp_commit_in_doubt: 1 if a mark is set above the published version and
 * its thread no longer holds the writer mutex (it died mid-commit); then
 * rp_resolve_commit (txn.c) publishes the durable commit or discards the
 * torn one under the writer mutex.  rp_commit_marked is the readers' fast
 * path: one load from the version's cache line. */
void rp_commit_mark(rp_env *env, uint64_t txnid);
int  rp_commit_in_doubt(rp_env *env);
int  rp_resolve_commit(rp_env *env);
static inline int rp_commit_marked(const rp_env *env) {
    return atomic_load_explicit(&env->lk->commit_txnid, memory_order_seq_cst) != 0;
}

/* The lock file is still the one mapped: RP_LOCK_CHANGED if it was
 * truncated below the mapped size (touching the lost part would raise
 * SIGBUS; it is extended back first), deleted, already abandoned, and with
 * identity also if <path>.lock is now another file (replaced: two writer
 * mutexes).  Except when already abandoned, it then marks the file
 * abandoned (format.h: ready = RP_LOCK_ABANDONED), so every env on it
 * refuses reads and writes.  One syscall: fstat of the descriptor, or with
 * identity stat of the path.  RP_OK for an immutable env. */
int  rp_lock_check(rp_env *env, int identity);
/* The lock file's shared state is inconsistent (no published version, or
 * the ring lost it): damage to the lock file, not to the data file.  Marks
 * it abandoned like rp_lock_check (the next first opener rebuilds it from
 * the data file) and returns RP_LOCK_CHANGED. */
int  rp_lock_damaged(rp_env *env);

/* Version counter and meta ring. */
uint64_t rp_version_load(const rp_env *env);
/* Write the ring entry for roots->txnid (seqlocked). */
void rp_ring_publish(rp_env *env, const rp_roots *roots);
/* Read ring entry v: RP_OK, or RP_NOTFOUND if it no longer (or not yet)
 * holds v. */
int  rp_ring_read(const rp_env *env, uint64_t v, rp_roots *out);
/* Store the new version, bump the futex word, wake waiters if any. */
void rp_version_publish(rp_env *env, uint64_t v);
/* rp_env_wait / rp_env_interrupt bodies. */
int  rp_lock_wait(rp_env *env, uint64_t since, int64_t timeout_ns, uint64_t *out);
void rp_lock_interrupt(rp_env *env);

/* Reader slots.  rp_slot_get takes an idle slot from the process pool or
 * claims a free one in the table (reaping dead owners first if full):
 * RP_READERS_FULL when none.  rp_slot_put returns it to the pool idle. */
int  rp_slot_get(rp_env *env, rp_slot **out);
void rp_slot_put(rp_env *env, rp_slot *slot);
/* Pin the latest version in slot and return its roots (retries until the
 * version it pinned is the one it read, and the ring entry matches). */
int  rp_snapshot_begin(rp_env *env, rp_slot *slot, rp_roots *out);
void rp_snapshot_end(rp_slot *slot);
/* Oldest version pinned by any live slot, or latest if none is older;
 * *active = number of distinct pinned versions, counting latest once. */
uint64_t rp_oldest_reader(rp_env *env, uint64_t latest, unsigned *active);
/* Free slots whose owner process is dead (pid gone, or pid reused: start
 * time differs).  force = 0 checks only pinning slots of other processes
 * with kill(pid, 0) (cheap), force = 1 also compares start times.
 * *reaped may be NULL. */
int  rp_reap(rp_env *env, int force, unsigned *reaped);
int  rp_readers_list(rp_env *env, rp_reader_info *out, unsigned cap,
                     unsigned *count);
/* Process start time of pid in clock ticks since boot (/proc/<pid>/stat
 * field 22); 0 if unknown. */
uint64_t rp_proc_start_time(pid_t pid);

/* ---- verify.c: where corruption was found ----------------------------------
 * Record it (per thread; rp_corrupt_detail) and return RP_CORRUPT.
 * rp_corrupt: "page N: what". */
int  rp_corrupt(uint64_t pgno, const char *what);
int  rp_corruptf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- env.c: shared by compaction and conversion ----------------------------
 * fsync the directory holding path (a created or renamed file's entry). */
int  rp_fsync_dir(const char *path);
/* Make a copy written with RP_NOSYNC commits durable: fdatasync, mark its
 * newest record acknowledged (numbered `version` if that is higher: a
 * conversion keeps the old file's version number; 0 keeps the copy's),
 * sync, fsync its directory. */
int  rp_env_seal_copy(rp_env *dst, const char *dest, uint64_t version);

/* ---- legacy.c: conversion of format 1 and 2 files --------------------------
 * Test hook (NULL in use): called at steps of rp_env_upgrade -- 1 before a
 * version is copied into the new file, 2 after the new file is durable and
 * before the rename, 3 after the rename -- so tests can kill the process
 * there. */
extern void (*rp_upgrade_hook)(int step);

/* ---- page.c --------------------------------------------------------------- */
uint32_t rp_hash32(const void *data, size_t len, uint32_t seed);

/* ---- filter.c ------------------------------------------------------------
 * A filter program (format: realmpy.h, FILTER PROGRAMS) parsed once per
 * call into instructions, then run on each record.  The limits bound the
 * stack arrays of rp_filter_run; programs beyond them are RP_INVALID. */
#define RP_FILTER_MAX_OPS    256
#define RP_FILTER_MAX_DEPTH  64
#define RP_FILTER_MAX_FIELDS 1024

/* Classes of msgpack values, as the filter compares them. */
enum { RP_FV_NIL, RP_FV_BOOL, RP_FV_INT, RP_FV_FLOAT, RP_FV_STR, RP_FV_BIN,
       RP_FV_OTHER /* array, map, ext: not compared */ };

typedef struct rp_fval {
    int            cls;              /* RP_FV_*                               */
    int            neg;              /* INT: negative                         */
    uint64_t       mag;              /* INT: magnitude; BOOL: 0 or 1          */
    double         d;                /* FLOAT                                 */
    const uint8_t *s;                /* STR, BIN: bytes (into the program or
                                        the record)                           */
    size_t         len;
} rp_fval;

typedef struct rp_fop {
    uint8_t  code;                   /* RP_FILTER_CMP/AND/OR/NOT/PUSH         */
    uint8_t  op;                     /* CMP: RP_FOP_*                         */
    uint8_t  missing;                /* CMP: verdict when the record is too
                                        short; PUSH: the verdict pushed       */
    uint16_t field;                  /* CMP: array index in the record        */
    rp_fval  c;                      /* CMP: the constant                     */
} rp_fop;

typedef struct rp_filter {
    unsigned nops;
    unsigned max_field;
    int      has_cmp;
    rp_fop   ops[RP_FILTER_MAX_OPS];
} rp_filter;

/* Parse and check a program: RP_INVALID if malformed (unknown opcode,
 * truncated, bad constant, stack underflow or overflow, not exactly one
 * verdict left, beyond the limits above). */
int rp_filter_parse(rp_filter *f, const void *prog, size_t len);
/* Run a parsed program on one record: *verdict = RP_FILTER_FALSE/TRUE/
 * UNKNOWN.  A record that is not a msgpack array is UNKNOWN; one whose
 * bytes up to the fields compared are not msgpack is RP_CORRUPT. */
int rp_filter_run(const rp_filter *f, const uint8_t *rec, size_t len, int *verdict);
/* Read one msgpack object header (see filter.c). */
int rp_mp_read(const uint8_t *p, size_t avail, rp_fval *v, size_t *size,
               uint64_t *children);

#endif /* REALMPY_INTERNAL_H */
