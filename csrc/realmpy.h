/*
 * realmpy.h -- the realmpy storage engine: public API and manual.
 *
 * realmpy's engine stores named tables of byte keys -> byte values in one data
 * file, shared by any number of processes and threads.  It is built for one
 * job: a file that many processes read and write at once, where a process
 * killed at any instruction never corrupts the file and never stops the
 * others.
 *
 *   - Copy-on-write B+trees, one per table plus a catalog of tables.  A write
 *     transaction never modifies a page that a committed version uses; it
 *     writes new pages and then publishes a new meta page.  Nothing is ever
 *     overwritten in place except the older of the two meta pages.
 *   - MVCC: a read transaction (a "snapshot") sees exactly one committed
 *     version for its whole life.  Readers take no locks: beginning and
 *     ending a snapshot are a few stores into a reader slot in shared memory.
 *   - One writer at a time across all processes and threads, serialised by a
 *     robust process-shared mutex.  A writer that dies holding it is
 *     recovered by the next writer, in that writer's own call; one that dies
 *     mid-commit leaves its commit marked in doubt, and the next reader,
 *     waiter or opener settles it first (publishes it if it is durable,
 *     discards it if torn), so everyone agrees on whether it happened.
 *   - A durable commit costs ONE fdatasync: every page carries a checksum
 *     and the version that wrote it, every child pointer carries the version
 *     of the child, so on open the newest meta page is verified by walking only
 *     the pages its commit wrote.  A commit whose pages did not all reach the
 *     disk is detected and the previous version is used.  (LMDB pays two
 *     syncs because its meta page cannot prove its pages arrived.)
 *   - A 64-bit version counter in shared memory is bumped after each commit
 *     is durable; other processes wait on it through a futex at no CPU cost.
 *
 * FILES
 *   <path>        the data file (format: format.h).
 *   <path>.lock   shared memory: writer mutex, version counter, futex word,
 *                 recent meta pages and the reader table (format: format.h).
 *                 It is rebuilt by the first process that opens the data file
 *                 when no other process has it open.  It carries a layout
 *                 version and the ABI sizes of its members; an opener of
 *                 another layout gets RP_INCOMPATIBLE_LOCK, never corruption.
 *                 It is opened with O_NOFOLLOW (a symlink is refused, its
 *                 target untouched), used only as a regular file with one
 *                 link, created with the data file's read/write mode bits,
 *                 and its header is validated before use.  Errors about it
 *                 are RP_LOCK_ERRNO - errno, so callers can name it.
 *
 * THREADS AND PROCESSES
 *   - An rp_env may be used by any number of threads at once.
 *   - A transaction (and its cursors) belongs to the thread that began it;
 *     calls from another thread return RP_WRONG_THREAD.  The exception is a
 *     read transaction marked shared with rp_txn_share(): any thread may use
 *     it (and its cursors) and end it, but never two at once -- the caller
 *     serialises every call on it (see rp_txn_share).
 *   - One thread may hold several read transactions at once, but at most one
 *     write transaction; a second rp_txn_begin(RP_TXN_WRITE) in the same
 *     thread returns RP_TXN_ACTIVE instead of deadlocking.
 *   - After fork() the child must not use the parent's rp_env: every call
 *     on it returns RP_FORKED.  The child opens its own.
 *
 * ERRORS
 *   Every function that can fail returns an int: RP_OK (0), a negative RP_*
 *   code below, or a positive errno value from the operating system (EIO,
 *   ENOSPC, EACCES, ENOENT, ENOMEM, ...).  rp_strerror() gives a message for
 *   either kind.  Nothing in the engine aborts on bad input or a bad file: a
 *   corrupt page is reported as RP_CORRUPT by the read that meets it.
 *   Every function below lists its errors ("Errors:"); these groups recur:
 *     env errors    every call taking an rp_env: RP_INVALID (env NULL),
 *                   RP_FORKED (opened before this process forked),
 *                   RP_PANIC (a failed rollback left the env unusable).
 *     txn errors    every call taking a txn or a cursor: RP_INVALID (NULL),
 *                   RP_BAD_TXN (parked, or failed: an error in a write left
 *                   it inconsistent; abort it), RP_WRONG_THREAD (see
 *                   THREADS), RP_FORKED, RP_PANIC.
 *     read errors   every call that reads pages: RP_CORRUPT (a page or value
 *                   fails validation; rp_corrupt_detail says which page and
 *                   what), ENOMEM.
 *     write errors  every call that changes a table: RP_READ_ONLY (a read
 *                   txn), RP_MAP_FULL (the file would exceed max_size),
 *                   ENOMEM, RP_CORRUPT (a page the change reads); an error
 *                   once pages may have changed fails the write txn (later
 *                   calls: RP_BAD_TXN; abort it).
 *     table errors  every call naming a table: RP_BAD_TABLE (NULL, empty, or
 *                   longer than RP_MAX_TABLE_NAME).
 *   A NULL output pointer that the call needs is RP_INVALID.
 *
 * CAVEATS
 *   - Do not put the file on a network file system: the lock file is shared
 *     memory and the locks are local.
 *   - Processes sharing a file must share a PID namespace: reader slots are
 *     reaped when kill(pid, 0) says their owner is gone.
 *   - Never delete, replace or truncate <path>.lock while the file is open:
 *     processes opening it afterwards build a second lock file and a second
 *     writer mutex.  The engine detects it -- a write transaction checks the
 *     held lock file's link count and size when it begins and compares its
 *     inode with the path's before writing any page, a waiter checks at
 *     every call and every 0.5 s -- and then every env on the old lock file returns
 *     RP_LOCK_CHANGED for reads and writes (it marks the file abandoned)
 *     until it is closed and reopened.  What remains: a writer that passed
 *     the check a moment before the deletion still commits under the old
 *     lock (a window of microseconds); and a truncation makes a process
 *     that touches the lost part of its mapping before any check noticed it
 *     die of SIGBUS (readers do not check: that would cost a syscall per
 *     snapshot; the first writer or waiter to notice extends the file back
 *     so that later accesses see the abandoned mark instead).  When nobody
 *     has the file open, deleting it is harmless.
 *   - A read-only environment (RP_RDONLY) uses <path>.lock as any other
 *     when it can open it for writing.  When it cannot (a read-only
 *     directory or file system, another user's lock file) it opens
 *     IMMUTABLE, creating no file, as SQLite's immutable=1 and LMDB's
 *     MDB_RDONLY|MDB_NOLOCK do, unless some process has the lock file in use
 *     (then RP_LOCK_ERRNO - EACCES/EROFS/EPERM: a reader without a reader
 *     slot is unsafe next to writers).  An immutable env gives up: a reader
 *     slot (a writer that starts later cannot see its snapshots, may reuse
 *     their pages and make its reads fail or, where checksums are not
 *     verified, read wrong bytes -- use it only where nothing writes), the
 *     shared version counter (it sees the version it found at open;
 *     rp_env_wait never reports a change) and dead-writer resolution.
 *   - If a process is killed while waiting in rp_env_wait, the shared waiter
 *     count stays raised: later commits make one spare wake-up syscall each
 *     until the lock file is rebuilt.  Harmless, slightly slower.
 *   - Long-lived snapshots pin old versions: pages they see cannot be reused,
 *     so the file grows while they live.  rp_env_readers() tells who pins
 *     what; max_active_versions turns runaway growth into an error.  Slots of
 *     dead processes are reaped automatically by the next writer.
 *   - Truncating the data file behind the engine's back while it is mapped
 *     can raise SIGBUS; no API of the engine does that.
 *   - Keys are at most RP_MAX_KEY bytes; values at most RP_MAX_VALUE bytes.
 *   - Reads check the structure of every page they touch (bounds, page
 *     number, version, type), and verify its checksum (an overflow run's
 *     over the whole run) the first time this process reads that page
 *     version, so a damaged file yields RP_CORRUPT, never a wild read and
 *     never wrong bytes.  RP_NOVERIFY skips the checksums.
 *     rp_env_check() verifies every checksum, every time.
 *   - Durability "none" (RP_NOSYNC) keeps the file consistent across process
 *     crashes only.  After an OS crash or power loss several unsynced
 *     commits may have reached the disk in part, which no single-commit
 *     verification can repair: use "full" where that matters.  For the same
 *     reason such commits carry no acknowledged mark (format.h): damage to
 *     the newest RP_NOSYNC commit cannot be told from an OS crash, and open
 *     falls back to the previous version.
 *
 * The block between the CDEF markers is read verbatim by build.py into cffi's
 * cdef: keep it free of preprocessor conditionals and macros with bodies.
 */
#ifndef REALMPY_H
#define REALMPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* BEGIN CDEF */

/* ---- Error codes (negative; positive values are errno) ------------------ */
#define RP_OK                    0
#define RP_NOTFOUND         -30800  /* key or table absent (not a failure)    */
#define RP_CORRUPT          -30801  /* a page or meta page fails validation  */
#define RP_NOT_A_DB         -30802  /* not a realmpy data file (bad magic)    */
#define RP_FORMAT_VERSION   -30803  /* data file of an unsupported version    */
#define RP_FORMAT_OLD       -30822  /* data file of an older format (1 or 2):
                                       convert it (rp_env_upgrade)           */
#define RP_INCOMPATIBLE_LOCK -30804 /* lock file of another layout or ABI in
                                       use by another process                */
#define RP_MAP_FULL         -30805  /* the file would exceed max_size         */
#define RP_VERSION_LIMIT    -30806  /* max_active_versions would be exceeded  */
#define RP_READERS_FULL     -30807  /* no free reader slot (max_readers)      */
#define RP_BAD_TXN          -30808  /* transaction finished or failed         */
#define RP_WRONG_THREAD     -30809  /* transaction used from another thread   */
#define RP_FORKED           -30810  /* handle inherited across fork()         */
#define RP_KEY_TOO_LONG     -30811  /* key empty or longer than RP_MAX_KEY    */
#define RP_VALUE_TOO_LARGE  -30812  /* value longer than RP_MAX_VALUE         */
#define RP_READ_ONLY        -30813  /* write on a read-only env or snapshot   */
#define RP_BUSY             -30814  /* close with transactions still open     */
#define RP_TXN_ACTIVE       -30815  /* this thread already has a write txn    */
#define RP_PANIC            -30816  /* env unusable after a failed rollback:
                                       close it and open the file again      */
#define RP_INVALID          -30817  /* invalid argument                       */
#define RP_BAD_TABLE        -30818  /* table name empty or too long           */
#define RP_CLOSED           -30819  /* env is closing (rp_env_interrupt)      */
#define RP_EXISTS           -30820  /* compaction target already exists       */
#define RP_TIMEOUT          -30821  /* the writer mutex was not acquired in time */
#define RP_LOCK_CHANGED     -30830  /* <path>.lock was deleted, replaced or
                                       truncated while the env was open: this
                                       env refuses to write (another process
                                       may be writing under another mutex);
                                       close it and open the file again      */
#define RP_LOCK_ERRNO       -31000  /* RP_LOCK_ERRNO - e (e = 1..4095): errno e
                                       about the lock file <path>.lock, not the
                                       data file: ELOOP (a symlink, refused),
                                       EMLINK (a hard link), EINVAL / EISDIR
                                       (not a regular file), EACCES, EROFS... */

/* ---- Limits --------------------------------------------------------------- */
#define RP_PAGE_SIZE        4096
#define RP_MAX_KEY          1024
#define RP_MAX_TABLE_NAME   255
#define RP_MAX_VALUE        2147483647

/* ---- rp_env_open flags ---------------------------------------------------- */
#define RP_NOSYNC           0x1  /* durability "none": a commit survives a
                                    process crash, not an OS crash or power
                                    loss; no fdatasync is issued            */
#define RP_RDONLY           0x2  /* no write transactions; the data file must
                                    exist; immutable without a writable lock
                                    file (see CAVEATS)                        */
#define RP_NOVERIFY         0x4  /* reads skip page checksums (structure is
                                    still checked): raw speed, at the risk of
                                    returning damaged bytes undetected       */
#define RP_RECOVER          0x8  /* salvage: open the newest intact version
                                    even if a newer acknowledged one is
                                    damaged (see rp_env_recovered_from)      */

/* ---- rp_txn_begin flags --------------------------------------------------- */
#define RP_TXN_WRITE        0x1

/* ---- rp_cursor_seek modes ------------------------------------------------- */
#define RP_SEEK_FIRST       0  /* smallest key                                */
#define RP_SEEK_LAST        1  /* largest key                                 */
#define RP_SEEK_GE          2  /* smallest key >= given key                   */
#define RP_SEEK_LT          3  /* largest key  <  given key                   */

/* ---- rp_cursor_batch / rp_get_many flags ----------------------------------- */
#define RP_BATCH_CURRENT    0x1  /* start with the cursor's current entry     */
#define RP_BATCH_RAW_VALUES 0x2  /* values are copied as they are, not wrapped
                                    as bin strings: for tables whose values
                                    are each one msgpack object, so that one
                                    unpack decodes keys and values together.
                                    An empty value is written as nil.        */

/* ---- filter programs (rp_cursor_filter, rp_filter_eval) ------------------ */
#define RP_FILTER_FALSE     0  /* verdicts, three-valued (Kleene logic)      */
#define RP_FILTER_TRUE      1
#define RP_FILTER_UNKNOWN   2  /* the engine cannot decide: caller re-checks */
#define RP_FILTER_CMP       1  /* opcodes, see FILTER PROGRAMS below         */
#define RP_FILTER_AND       2
#define RP_FILTER_OR        3
#define RP_FILTER_NOT       4
#define RP_FILTER_PUSH      5
#define RP_FOP_EQ           0  /* comparison operators of RP_FILTER_CMP      */
#define RP_FOP_NE           1
#define RP_FOP_LT           2
#define RP_FOP_LE           3
#define RP_FOP_GT           4
#define RP_FOP_GE           5

/* ---- fault injection (tests only; see rp_fault_set) ----------------------- */
#define RP_FAULT_NONE       0
#define RP_FAULT_WRITE      1  /* a pwrite fails with EIO                     */
#define RP_FAULT_SYNC       2  /* an fdatasync fails with EIO                 */
#define RP_FAULT_NOSPACE    3  /* a write or file growth fails with ENOSPC    */
#define RP_FAULT_CRASH      4  /* SIGKILL this process at commit step `after`
                                  (RP_STEP_*): a writer dying mid-commit    */

/* ---- commit steps, where RP_FAULT_CRASH strikes (see txn.c) --------------- */
#define RP_STEP_PAGES       0  /* pages written, nothing marked yet          */
#define RP_STEP_MARKED      1  /* commit marked in doubt, meta not written   */
#define RP_STEP_META        2  /* meta page written, not yet synced          */
#define RP_STEP_SYNCED      3  /* synced (durable), not yet published        */
#define RP_STEP_RING        4  /* ring entry written, version not published  */
#define RP_STEP_PUBLISHED   5  /* version published, mark not yet cleared    */

typedef struct rp_env rp_env;
typedef struct rp_txn rp_txn;
typedef struct rp_cursor rp_cursor;

/* Statistics of the latest committed version (rp_env_stat). */
typedef struct rp_stat {
    uint64_t version;          /* latest committed version                   */
    uint64_t page_size;        /* bytes per page                             */
    uint64_t pages_used;       /* high-water mark: pages ever allocated      */
    uint64_t file_size;        /* bytes on disk (pre-grown in chunks)        */
    uint64_t map_size;         /* max_size: largest the file may grow        */
    uint64_t free_pages;       /* reusable by the next writer now            */
    uint64_t pending_pages;    /* freed, but pinned by a live snapshot       */
    uint64_t tables;           /* number of tables                           */
    uint64_t entries;          /* keys in all tables                         */
    uint64_t tree_pages;       /* branch + leaf + overflow pages in tables   */
    uint64_t readers_used;     /* reader slots claimed by live processes     */
    uint64_t max_readers;      /* size of the reader table                   */
    uint64_t oldest_version;   /* oldest version a live snapshot pins        */
    uint64_t active_versions;  /* distinct pinned versions + the latest      */
} rp_stat;

/* One reader slot (rp_env_readers): who pins which version. */
typedef struct rp_reader_info {
    int64_t  pid;
    uint64_t thread;           /* owner's thread id (gettid); for a shared
                                  txn the thread that began it (rp_txn_share) */
    uint64_t version;          /* pinned version; 0 = slot idle              */
    int      alive;            /* 0 if the owner is dead (slot reapable)     */
} rp_reader_info;

/* ---- Errors --------------------------------------------------------------- */

/* Message for an RP_* code or an errno value; a static string, never NULL.
 * Never fails. */
const char *rp_strerror(int err);

/* Where the last RP_CORRUPT returned to the calling thread was found and
 * what was wrong, e.g. "page 123: checksum mismatch (table users)"; "" if
 * not known.  Per thread; valid until this thread's next engine call.
 * rp_corrupt_clear() empties it.  Neither fails. */
const char *rp_corrupt_detail(void);
void rp_corrupt_clear(void);

/* Library and file-format versions, for diagnostics.  Never fail. */
int rp_library_version(void);
int rp_format_version(void);

/* ---- Environment ---------------------------------------------------------- */

/* Open (creating if needed, unless RP_RDONLY) the data file at path, with its
 * lock file at <path>.lock.  Both are created with mode 0600 (owner only):
 * a database is private data; share it between users by changing the mode.
 *   flags        RP_NOSYNC, RP_RDONLY, RP_NOVERIFY, RP_RECOVER
 *   max_size     largest size in bytes the data file may reach; 0 = default
 *                (64 GiB).  Reserved as address space, not memory.
 *   max_readers  reader slots in a newly built lock file; 0 = default (126).
 *                A lock file in use keeps its own size.
 *   max_active_versions  0 = unlimited; else a write begin that would make
 *                more than this many distinct versions live returns
 *                RP_VERSION_LIMIT.
 * The lock file takes the data file's read/write mode bits instead.
 * On open, if no other process has the file open, the newest meta record is
 * verified (its commit's pages are walked).  A commit that did not fully
 * reach the disk and was never acknowledged (its fdatasync did not return)
 * is rolled back to the previous version.  Damage to an acknowledged
 * commit, to both copies of a meta record, or a file shorter than its
 * newest acknowledged version needs is RP_CORRUPT (rp_corrupt_detail says
 * what and where); with RP_RECOVER the newest intact version is opened
 * instead (format.h, WHAT AN OPEN CONCLUDES).  If others have it open and
 * a writer died mid-commit, its commit is settled first.
 * Errors: RP_NOT_A_DB, RP_FORMAT_VERSION, RP_CORRUPT, RP_INCOMPATIBLE_LOCK
 *         (the lock file's header stays invalid while in use),
 *         RP_LOCK_CHANGED (the lock file is abandoned but still in use),
 *         RP_LOCK_ERRNO - e (about the lock file: ELOOP a symlink, EMLINK a
 *         hard link, EINVAL/EISDIR not a regular file, EACCES, EROFS...),
 *         RP_INVALID, errno about the data file (ENOENT, EACCES, ENOMEM...). */
int rp_env_open(const char *path, unsigned flags, uint64_t max_size,
                unsigned max_readers, unsigned max_active_versions,
                rp_env **out);

/* With RP_RECOVER, when this open rolled back past damage: the newest
 * version it gave up (a lower bound when a damaged meta record hid it), else
 * 0.  rp_env_recovery_note says what was wrong ("" if nothing).  Neither
 * fails (0 and "" for a NULL env). */
uint64_t rp_env_recovered_from(rp_env *env);
const char *rp_env_recovery_note(rp_env *env);

/* Close the env and free it.  Returns RP_BUSY (and closes nothing) while
 * transactions or cursors of this env are open.  Wakes this env's waiters.
 * In a fork child it only releases this process's mappings and descriptors.
 * Errors: RP_INVALID (env NULL), RP_BUSY. */
int rp_env_close(rp_env *env);

/* Latest committed version: one atomic load from shared memory, no syscall.
 * Versions start at 1 and increase by 1 per commit.  Never fails (0 for a
 * NULL env). */
uint64_t rp_env_version(rp_env *env);

/* Address of the counter rp_env_version reads: a naturally aligned
 * _Atomic uint64_t in the lock file's shared memory, for bindings that check
 * for a newer version without a call (the Python object layer's C property
 * fast path).  Read it only with an acquire atomic load (as rp_env_version
 * does), never write it.  It stays valid until rp_env_close(env): a binding
 * must stop using it before the env can close (realmpy only keeps it while a
 * transaction of the env is open, which keeps rp_env_close from closing).
 * Returns 0 if env is NULL. */
uintptr_t rp_env_version_addr(rp_env *env);

/* Block until the version differs from since, or until timeout_ns passes
 * (negative = forever).  *out receives the version then current (== since on
 * timeout).  Costs no CPU while waiting (futex; a waiter wakes every 0.5 s to
 * check the lock file and for a writer that died mid-commit, whose commit it
 * then settles).  A wake-up can be late, never lost.  Returns RP_CLOSED if
 * rp_env_interrupt() was called, RP_LOCK_CHANGED if the lock file was
 * deleted, replaced or truncated, an error of settling a dead writer's
 * commit (RP_CORRUPT, errno), RP_OK otherwise (also on timeout and on EINTR,
 * so callers can check for signals).
 * Errors: env errors, RP_INVALID (out NULL), RP_CLOSED, RP_LOCK_CHANGED,
 *         RP_CORRUPT, errno. */
int rp_env_wait(rp_env *env, uint64_t since, int64_t timeout_ns,
                uint64_t *out);

/* Make this env's current and future rp_env_wait calls return RP_CLOSED
 * (used before close to stop notifier threads).  Works on a panicked env.
 * Errors: RP_INVALID (env NULL), RP_FORKED. */
int rp_env_interrupt(rp_env *env);

/* Statistics of the latest version.  Works even when every reader slot is
 * taken (it then reads under the writer mutex instead of a slot).
 * Errors: env errors, RP_INVALID (out NULL), those of rp_txn_begin (for a
 *         read-only env RP_READERS_FULL too), read errors. */
int rp_env_stat(rp_env *env, rp_stat *out);

/* Copy up to cap claimed reader slots into out; *count = slots copied.
 * Errors: env errors, RP_INVALID (count NULL, or out NULL with cap > 0). */
int rp_env_readers(rp_env *env, rp_reader_info *out, unsigned cap,
                   unsigned *count);

/* Free the slots of dead processes now (writers also do this by themselves);
 * *reaped (may be NULL) = slots freed.  Errors: env errors. */
int rp_env_reap_readers(rp_env *env, unsigned *reaped);

/* Integrity check of the latest version: walks every tree, verifies every
 * page's checksum, version, type and key order, and accounts for every page
 * (in a tree, free, pending, or a meta page).  Like rp_env_stat it works
 * when every reader slot is taken.  On failure returns RP_CORRUPT
 * and writes a description into msg (always NUL-terminated if msglen > 0).
 * Errors: those of rp_env_stat, RP_CORRUPT (msg and rp_corrupt_detail say
 *         which page and what check failed), ENOMEM. */
int rp_env_check(rp_env *env, char *msg, size_t msglen);

/* Write a compacted copy of the latest version to dest_path (which must not
 * exist: RP_EXISTS): every table, no free pages.  Durable before return.
 * Errors: env errors, RP_INVALID (dest_path NULL or empty), RP_EXISTS,
 *         those of rp_env_open for dest_path (errno: EACCES, ENOSPC...),
 *         of rp_txn_begin, read errors (the source), RP_MAP_FULL (the copy
 *         exceeds the source's max_size), errno (writing or syncing the copy). */
int rp_env_compact(rp_env *env, const char *dest_path);

/* Convert the data file at path, of format 1 or 2 (RP_FORMAT_OLD from
 * rp_env_open), to the current format: a new file "<path>.upgrade" created
 * with O_EXCL|O_NOFOLLOW and the old file's permission bits receives every
 * table (same names, keys and values) of the old file's newest intact
 * version, under that version's number (rp_env_version), is made durable,
 * renamed over path, and the directory synced;
 * the old lock file is removed.  A crash at any point leaves the old file
 * intact or the new one complete (a stale "<path>.upgrade" is removed by
 * the next call).  The caller must make sure no other process has the
 * file open (realmpy: the session file held exclusively).  *converted = 1
 * when it converted, 0 when the file is not of an old format (nothing
 * done).  The old file is read without mapping it and checked page by page.
 * Errors: RP_INVALID, RP_NOT_A_DB, RP_CORRUPT (the old file is damaged:
 *         rp_corrupt_detail says where; nothing replaced), errno (opening,
 *         writing, syncing or renaming; nothing replaced before the rename),
 *         those of rp_env_open for the new file. */
int rp_env_upgrade(const char *path, int *converted);

/* Path of the data file (for messages).  Never fails ("" for a NULL env). */
const char *rp_env_path(rp_env *env);

/* ---- Transactions --------------------------------------------------------- */

/* Begin a read snapshot of the latest version (flags 0) or the write
 * transaction (RP_TXN_WRITE), which waits for the writer mutex (other
 * processes' writers, or other threads'; a mutex whose owner is dead or
 * forged is recovered, a live writer is waited for).  A snapshot begun
 * after a writer died mid-commit first settles that commit, so it sees
 * what the next writer will.
 * Errors: env errors, RP_INVALID (out NULL, unknown flags), RP_CLOSED (after
 *         rp_env_interrupt), RP_READ_ONLY, RP_TXN_ACTIVE, RP_READERS_FULL,
 *         RP_VERSION_LIMIT, RP_MAP_FULL (the version is larger than this
 *         env's max_size), RP_LOCK_CHANGED (the lock file was deleted,
 *         replaced or truncated), RP_CORRUPT (a dead writer's commit cannot
 *         be settled), ENOMEM, errno. */
int rp_txn_begin(rp_env *env, unsigned flags, rp_txn **out);

/* rp_txn_begin, but a write transaction gives up waiting for the writer
 * mutex after timeout_ms milliseconds (0: only if it is free now; < 0: wait
 * forever, as rp_txn_begin).  A read snapshot never waits and ignores it.
 * Errors: those of rp_txn_begin, and RP_TIMEOUT (nothing was acquired). */
int rp_txn_begin_timed(rp_env *env, unsigned flags, int64_t timeout_ms, rp_txn **out);

/* Commit and free the transaction (a read txn is simply ended).  With
 * durability "full" the commit is on stable storage when this returns OK.
 * On any error the transaction is rolled back and freed as well; with
 * RP_LOCK_CHANGED (the lock file was deleted or replaced since the txn
 * began) before any page is written.  The exceptions: NULL, and
 * RP_WRONG_THREAD, which leave the txn untouched.
 * Errors: txn errors (RP_BAD_TXN also for a failed write txn: nothing is
 *         written), RP_BUSY (cursors still open), write errors (updating the
 *         catalog and the free list: RP_MAP_FULL, ENOMEM, RP_CORRUPT),
 *         RP_LOCK_CHANGED, errno (EIO, ENOSPC... growing the file, writing
 *         pages or the meta record, syncing: the commit did not happen; if
 *         restoring the meta record also fails the env is left RP_PANIC). */
int rp_txn_commit(rp_txn *txn);

/* Commit like rp_txn_commit; *version (may be NULL) receives the version
 * this commit created (for a read txn: the version it read), 0 on error.
 * Errors: those of rp_txn_commit. */
int rp_txn_commit_ex(rp_txn *txn, uint64_t *version);

/* Roll back and free.  Never fails; NULL is ignored.  A txn owned by another
 * thread is not touched and RP_WRONG_THREAD is returned (a reset read txn
 * belongs to no thread and may be freed from any, a shared one -- see
 * rp_txn_share -- too).  Errors: RP_WRONG_THREAD only. */
int rp_txn_abort(rp_txn *txn);

/* Park a read txn: end its snapshot (it pins nothing any more) but keep the
 * handle and its reader slot, so that rp_txn_renew() can begin the next
 * snapshot without allocating.  A parked txn accepts only renew and abort
 * (others return RP_BAD_TXN); it still counts as open for rp_env_close,
 * which returns RP_BUSY until it is freed with rp_txn_abort().
 * A shared txn (rp_txn_share) may be parked from any thread; it is parked
 * unshared.
 * Errors: RP_INVALID (NULL, a write txn), RP_BAD_TXN (already parked),
 * RP_WRONG_THREAD, RP_FORKED, RP_PANIC, RP_BUSY (cursors open). */
int rp_txn_reset(rp_txn *txn);

/* Begin a new snapshot of the latest version on a parked read txn, owned by
 * the calling thread (settling a dead writer's commit first, as
 * rp_txn_begin).  Errors: RP_INVALID (NULL), RP_BAD_TXN (not parked),
 * RP_CLOSED, RP_FORKED, RP_PANIC, RP_MAP_FULL, RP_LOCK_CHANGED, RP_CORRUPT,
 * errno (settling a dead writer's commit). */
int rp_txn_renew(rp_txn *txn);

/* rp_txn_reset + rp_txn_renew in one call: move a live read txn to the
 * latest version (a realm advancing, a poller re-reading).  On error the
 * txn is left parked.  A shared txn stays shared (and callable from any
 * thread); an unshared one is then owned by the calling thread.
 * Errors: those of rp_txn_reset and rp_txn_renew. */
int rp_txn_refresh(rp_txn *txn);

/* Mark a live read txn as shared: from now on every thread may call the
 * engine with it and its cursors, and end it (rp_txn_abort/commit, or
 * rp_txn_reset), not only the thread that began it.  This is how one
 * snapshot of an older version is read by many threads (a frozen realm):
 * other threads cannot begin a snapshot of that version themselves.
 *
 * CONTRACT.  The engine does not lock a shared txn.  A txn keeps per-call
 * state (its table-descriptor cache, its cursor count), so the caller must
 * serialise every call on the txn and its cursors, ending included: at most
 * one thread inside any rp_* call taking this txn or one of its cursors at a
 * time, with a mutex (or anything else that orders memory) between threads.
 * Pointers the engine returned (values, keys) stay valid until the txn ends,
 * whichever thread ends it.  Call it from the owner before handing the txn
 * to other threads (the hand-over itself must be synchronised too).
 *
 * Sharing lasts while the snapshot does: rp_txn_reset parks the txn unshared
 * (a parked txn belongs to no thread), and rp_txn_renew begins an unshared
 * snapshot owned by its caller; rp_txn_refresh keeps the mark.  The reader
 * slot of a shared txn still records the thread that began the txn
 * (rp_env_readers: rp_reader_info.thread), which need not be the thread
 * using it now, nor alive.  The txn counts as open for rp_env_close like any
 * other, from whichever thread closes the env.
 * Idempotent on a shared txn (from any thread).
 * Errors: RP_INVALID (NULL, or a write txn: those are never shared),
 *         RP_BAD_TXN (parked), RP_WRONG_THREAD (not shared yet and called
 *         from a thread other than the owner), RP_FORKED, RP_PANIC. */
int rp_txn_share(rp_txn *txn);

/* Version the transaction reads (a write txn: the version it will commit
 * minus one).  Never fails (0 for a NULL txn). */
uint64_t rp_txn_version(rp_txn *txn);

/* Point lookup.  *val points into the map (or the txn's dirty page) and stays
 * valid until the transaction ends or, for a write txn, its next change.
 * Returns RP_NOTFOUND if the key or the table is absent.
 * Errors: txn errors, RP_INVALID (val or vlen NULL, key NULL with a length),
 *         RP_KEY_TOO_LONG (empty or longer than RP_MAX_KEY), table errors,
 *         read errors. */
int rp_get(rp_txn *txn, const char *table, size_t tlen,
           const void *key, size_t klen, const void **val, size_t *vlen);

/* Look up n keys packed back to back in keys as [u32 klen][key] (little
 * endian) and write their values into out as one msgpack array (array32
 * header, then per key a bin string, or nil when the key or the table is
 * absent; see rp_cursor_batch, also for RP_BATCH_RAW_VALUES, the only flag
 * used here).  Stops early when the next value does not
 * fit: *done = keys answered (their count is the array's), *used = bytes
 * written; if not even the first fits, *done is 0 and *used the size it
 * needs.  Errors: RP_INVALID (malformed keys buffer), RP_KEY_TOO_LONG, and
 * those of rp_get. */
int rp_get_many(rp_txn *txn, const char *table, size_t tlen,
                const void *keys, size_t keyslen, size_t n, unsigned flags,
                void *out, size_t outcap, size_t *done, size_t *used);

/* Insert or replace.  Creates the table if needed.
 * Errors: txn errors, RP_KEY_TOO_LONG, RP_VALUE_TOO_LARGE (those two leave
 *         the txn usable), RP_INVALID (val NULL with a length), table
 *         errors, write errors. */
int rp_put(rp_txn *txn, const char *table, size_t tlen,
           const void *key, size_t klen, const void *val, size_t vlen);

/* Insert or replace n pairs packed back to back in buf as
 * [u32 klen][u32 vlen][key][value] (little endian, no padding).  The whole
 * buffer is checked before anything changes, so a bad one changes nothing.
 * Errors: those of rp_put, RP_INVALID (buf NULL with a length, a record
 *         running past buflen, or bytes left after n records). */
int rp_put_many(rp_txn *txn, const char *table, size_t tlen,
                const void *buf, size_t buflen, size_t n);

/* Delete; RP_NOTFOUND if absent (the key or the table).
 * Errors: txn errors, RP_KEY_TOO_LONG, table errors, write errors. */
int rp_del(rp_txn *txn, const char *table, size_t tlen,
           const void *key, size_t klen);

/* Remove a table and all its keys; RP_NOTFOUND if absent.
 * Errors: txn errors, table errors, write errors. */
int rp_drop_table(rp_txn *txn, const char *table, size_t tlen);

/* Number of keys in a table (0 if absent).
 * Errors: txn errors, RP_INVALID (out NULL), table errors, read errors. */
int rp_table_count(rp_txn *txn, const char *table, size_t tlen,
                   uint64_t *out);

/* ---- Cursors (ordered iteration) ------------------------------------------ */

/* A cursor over a table (or over the catalog of table names when table is
 * NULL: keys are names, values are empty).  Belongs to its transaction; it is
 * invalid after the transaction ends.  In a write txn the table may change
 * under an open cursor: the cursor remembers its current key and, after a
 * change, re-seeks next to it, so iteration continues in key order.
 * An absent table gives a cursor that finds nothing.  rp_cursor_close
 * never fails (NULL is ignored).
 * Errors: txn errors, RP_INVALID (out NULL), table errors, read errors;
 *         on the catalog in a write txn, those of writing the table
 *         descriptors first (write errors). */
int rp_cursor_open(rp_txn *txn, const char *table, size_t tlen,
                   rp_cursor **out);
void rp_cursor_close(rp_cursor *cur);

/* Position the cursor (see RP_SEEK_*) and return that entry.  key may be NULL
 * for FIRST/LAST; for GE/LT it must be 1 to RP_MAX_KEY bytes
 * (RP_KEY_TOO_LONG otherwise: no stored key is empty or longer, so callers
 * map an empty bound to FIRST and a longer one to its prefix).  Returns
 * RP_NOTFOUND if no entry qualifies.
 * Errors: txn errors (of the cursor's txn), RP_KEY_TOO_LONG, RP_INVALID
 *         (an unknown mode), read errors. */
int rp_cursor_seek(rp_cursor *cur, int mode, const void *key, size_t klen,
                   const void **k, size_t *kl, const void **v, size_t *vl);

/* Step forward (dir > 0) or backward (dir < 0) and return the entry;
 * RP_NOTFOUND past the end (and on a cursor not positioned on an entry).
 * Errors: txn errors (of the cursor's txn), read errors. */
int rp_cursor_step(rp_cursor *cur, int dir, const void **k, size_t *kl,
                   const void **v, size_t *vl);

/* Copy entries into buf as ONE msgpack array of 2n bin strings:
 * [key 0, value 0, key 1, value 1, ...] (array32 header 0xdd + u32 count,
 * then each string as bin8/bin16/bin32, lengths big-endian, per the msgpack
 * spec).  A binding decodes a whole batch with one call of a msgpack
 * library's C unpacker, which builds the key and value objects far faster
 * than per-item code in the binding's language.  With RP_BATCH_RAW_VALUES
 * in flags the values are copied verbatim instead (each must be one msgpack
 * object; empty ones become nil), so the same call also decodes them; the
 * engine does not check them, and a value that is not msgpack only makes
 * the caller's decoding fail.  Starts with the entry at the cursor's
 * position (RP_BATCH_CURRENT in flags) or the next one, moves in
 * direction dir, and stops before a key outside the bound (dir > 0: key >=
 * stop; dir < 0: key < stop; stop == NULL: no bound), when the next record
 * does not fit, or after max_items.  The cursor is left on the first entry
 * not copied.  *n = records copied, *used = bytes used.  A first record
 * too large for buflen makes *n 0 and *used the size it needs.  Returns
 * RP_NOTFOUND when the range is exhausted and nothing was copied.
 * Errors: txn errors (of the cursor's txn), RP_INVALID (n or used NULL,
 *         buf NULL with a length), read errors. */
int rp_cursor_batch(rp_cursor *cur, int dir, unsigned flags,
                    const void *stop, size_t stoplen,
                    void *buf, size_t buflen, size_t max_items,
                    size_t *n, size_t *used);

/* ---- Filter programs --------------------------------------------------------
 *
 * FILTER PROGRAMS
 *   A filter program decides, inside the engine, whether a record (a value
 *   that is one msgpack array; element i is "field i") may match a query,
 *   so that only candidates are copied out and decoded by the caller.  It
 *   is a postfix program over a stack of verdicts, each RP_FILTER_FALSE,
 *   RP_FILTER_TRUE or RP_FILTER_UNKNOWN.  Instructions, back to back:
 *
 *     offset size  description
 *     0      1     RP_FILTER_CMP (1)
 *     1      1     operator: RP_FOP_EQ, _NE, _LT, _LE, _GT, _GE (0..5)
 *     2      1     verdict when the record has no field i (an array shorter
 *                  than i + 1: a record written before the field existed)
 *     3      2     field index i, little endian, < 1024
 *     5      n     the constant: one msgpack nil, bool, int, float (32 or
 *                  64 bit), str or bin; pushes "field i <op> constant"
 *
 *     0      1     RP_FILTER_AND (2) / RP_FILTER_OR (3): pop two verdicts,
 *                  push their conjunction / disjunction
 *     0      1     RP_FILTER_NOT (4): negate the top verdict
 *     0      1     RP_FILTER_PUSH (5)
 *     1      1     a verdict to push (for parts the engine cannot decide,
 *                  RP_FILTER_UNKNOWN, and TRUE/FALSEPREDICATE)
 *
 *   The program must leave exactly one verdict; at most 256 instructions
 *   and a stack of at most 64.  Logic is Kleene's: FALSE AND UNKNOWN is
 *   FALSE, TRUE OR UNKNOWN is TRUE, NOT UNKNOWN is UNKNOWN.
 *
 *   Comparisons follow realmpy's query language exactly (realmpy/query/):
 *     - nil equals only nil; an ordering of nil and a non-nil value is
 *       FALSE, and nil <= nil, nil >= nil are TRUE (as Realm);
 *     - a bool equals and orders only against bools (true is not 1);
 *     - ints and floats compare exactly, as Python does (2^53 + 1 is
 *       greater than 2.0^53: no rounding to double); NaN equals nothing
 *       and is not ordered;
 *     - str with str by bytes (for UTF-8: code point order), bin with bin
 *       by bytes;
 *     - any other mix of kinds is unequal (!= is TRUE) and unordered;
 *     - a field holding an array, a map or an extension type is UNKNOWN.
 *   A value that is not an array (also an empty value) is UNKNOWN.
 *
 *   Caveats: the engine reads a record only up to the fields a program
 *   compares; it does not check the rest, nor that strings are UTF-8.
 */

/* Run a program on one record: *verdict = RP_FILTER_FALSE/TRUE/UNKNOWN.
 * Errors: RP_INVALID (malformed program), RP_CORRUPT (the record's bytes up
 * to a compared field are not msgpack). */
int rp_filter_eval(const void *prog, size_t proglen, const void *rec,
                   size_t reclen, int *verdict);

/* rp_cursor_batch that copies only the records whose verdict under the
 * filter program prog is TRUE or UNKNOWN (the caller re-checks UNKNOWN
 * ones, or all of them); others are stepped over.  Same arguments, flags,
 * output format and stop rules; max_items counts copied records.  The
 * cursor is left on the first entry not examined.  As there, *n == 0 with
 * RP_OK means the first match did not fit (*used = the size it needs; the
 * cursor is on it).  Returns RP_NOTFOUND when the range is exhausted and
 * nothing was copied.  prog NULL (proglen 0): no filter, every record is
 * copied (one call shape for filtered and plain scans).
 * Errors: those of rp_cursor_batch, RP_INVALID (malformed program, or NULL
 * with a length), RP_CORRUPT (a record that is not msgpack). */
int rp_cursor_filter(rp_cursor *cur, int dir, unsigned flags,
                     const void *stop, size_t stoplen,
                     const void *prog, size_t proglen,
                     void *buf, size_t buflen, size_t max_items,
                     size_t *n, size_t *used);

/* rp_get_many that also runs the filter program prog on each value found:
 * a value whose verdict is RP_FILTER_FALSE comes back as nil, as an absent
 * key does, so the output stays aligned with the keys (index-planned
 * candidates re-checked in the engine).  Errors: those of rp_get_many,
 * RP_INVALID (malformed program), RP_CORRUPT (a value that is not msgpack
 * up to a compared field). */
int rp_get_many_filter(rp_txn *txn, const char *table, size_t tlen,
                       const void *keys, size_t keyslen, size_t n,
                       unsigned flags, const void *prog, size_t proglen,
                       void *out, size_t outcap, size_t *done, size_t *used);

/* rp_cursor_filter for a cursor on an index: a table whose keys are a
 * prefix of strip bytes (an encoded value) followed by the key of an entry
 * in table (a primary key).  For each index entry in range, that key is
 * looked up in table and (key, value) is filtered by prog (NULL: no filter)
 * and copied, exactly as rp_cursor_filter copies the cursor's own entries:
 * one call replaces an index scan plus rp_get_many.  Index entries whose
 * key is absent from table are stepped over.  Same output, flags, stop
 * rules, cursor position and return values as rp_cursor_filter.
 * Errors: those of rp_cursor_filter and rp_get, RP_INVALID (strip >
 * RP_MAX_KEY), RP_CORRUPT (an index key of at most strip bytes). */
int rp_cursor_join(rp_cursor *cur, int dir, unsigned flags,
                   const void *stop, size_t stoplen, size_t strip,
                   const char *table, size_t tlen,
                   const void *prog, size_t proglen,
                   void *buf, size_t buflen, size_t max_items,
                   size_t *n, size_t *used);

/* ---- Fault injection (for tests) ------------------------------------------ */

/* Arm a fault for this process: the after-th next I/O operation of that kind
 * (0 = the very next) fails.  RP_FAULT_NONE disarms everything.
 * RP_FAULT_CRASH kills the process (SIGKILL, as a crash would) when a
 * commit reaches step `after` (RP_STEP_*).  Never fails. */
void rp_fault_set(int kind, unsigned after);

/* Power-cut simulation.  rp_powercut_record(env, 1) starts recording every
 * write made to the data file since its last fdatasync, with the bytes it
 * replaced.  rp_powercut_apply(env, seed) then emulates a power cut: for the
 * writes made since the last fdatasync, a seed-chosen subset is undone and
 * some are torn (undone from a 512-byte sector boundary onward).  The env
 * must be closed and reopened afterwards (it is poisoned: RP_PANIC).
 * Errors: env errors; rp_powercut_apply also errno (restoring bytes). */
int rp_powercut_record(rp_env *env, int on);
int rp_powercut_apply(rp_env *env, uint64_t seed, unsigned *undone);

/* END CDEF */

#ifdef __cplusplus
}
#endif
#endif /* REALMPY_H */
