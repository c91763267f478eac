/*
 * sigbus.c -- a shared file mapping that another program truncates must not
 * kill the process.
 *
 * The engine maps two files MAP_SHARED: the data file (env->map, read only)
 * and the lock file (env->lk, read/write).  Any program with write access
 * can truncate either while we use it; touching a page of the mapping that
 * now lies beyond the end of the file raises SIGBUS (BUS_ADRERR), as does a
 * page the kernel cannot read (an I/O error).  By default SIGBUS kills the
 * process.
 *
 * What we do instead: one process-wide SIGBUS handler (installed once with
 * sigaction, SA_SIGINFO | SA_ONSTACK) looks the faulting address up in a
 * registry of our mappings.  If it lies in one, the handler
 *   1. replaces the mapping from the faulting page to its end with private
 *      anonymous zero pages (mmap MAP_FIXED: one system call, no lock, safe
 *      in a signal handler), so that the interrupted instruction, re-run on
 *      return, reads zeros (or writes into private memory) and carries on;
 *   2. sets a bit in the environment's `faulted` word (an atomic or), so the
 *      environment is broken from then on, and returns.
 * Zeros are harmless to the code that was interrupted: the engine already
 * copes with any file content without crashing (docs/integrity.md, item 1),
 * and a zero lock header reads as "not ready".  Zeros are never handed out
 * as data: the engine checks `faulted` at its safe points -- every env and
 * transaction call (rp_env_usable), after a snapshot is pinned (read_begin:
 * a pin written into private memory protects nothing), before a commit
 * writes (rp_lock_check), whenever a page fails its header or checksum
 * check (so the error names the cause, not "checksum mismatch"), when an
 * overflow run is read (rp_overflow_read touches its last page first), and
 * after the batch copies of values (rp_get_many, rp_cursor_batch/filter/
 * join).
 * What is left: a value handed out by pointer (rp_get, rp_cursor_step and
 * _seek) is copied by the caller after the call returned; a truncation
 * landing between the engine's checks of that page and the caller's copy
 * gives the copy zeros, and the error comes with the next call on the
 * environment.  Checking after every copy would cost a load per value on
 * the hottest path for a window of a few hundred nanoseconds that only
 * another program writing to the file can open.  The error is
 * RP_LOCK_CHANGED for the lock file (LockFileChangedError: close every
 * handle and reopen) and RP_CORRUPT naming the data file otherwise.  The
 * bit is never cleared: the replaced pages no longer follow the file, so
 * the environment must be reopened.
 *
 * Faults at addresses outside the registry (not ours) go to the handler
 * that was installed before ours (Python's faulthandler, a sanitizer's, or
 * the default action, which we restore and re-run the access under).
 *
 * Another handler installed after ours (faulthandler.enable() in a process
 * that already opened a database, as the file fuzz's children do) would see
 * our faults first, print a fatal error and re-raise without the address.
 * So every registration (every environment opened) puts ours back on top
 * when it is not, chaining to the newcomer.  The newcomer may chain back to
 * us (faulthandler restores the handler it replaced, ours, and re-raises):
 * `reraise` breaks that cycle -- a SIGBUS sent while we are passing a fault
 * on ends in the default action.  Between such an install and the next
 * open, the newcomer comes first.
 *
 * Alternatives considered:
 *   - fstat the descriptor before each access and compare the size: racy
 *     (the file can be truncated right after the check) and a system call
 *     per snapshot or page read, where a read snapshot costs ~0.2 us.  The
 *     write path does one stat a commit anyway (rp_lock_check) to detect a
 *     deleted or replaced lock file, which no signal reports.
 *   - sigsetjmp/siglongjmp around every access: a jump buffer on every
 *     read path, and jumping out of code that holds a mutex, a slot or half
 *     of a copy leaves state that cannot be repaired.
 *   - MAP_POPULATE / mlock: truncation still takes the pages away.
 *   - leases (F_SETLEASE) or mandatory locks: not for files that other
 *     processes open, and not honoured by truncate(2) from another user.
 *
 * The registry (why it is safe to read from a signal handler):
 *   - a fixed array (no malloc, nothing freed); registrations claim an
 *     entry with a CAS on `busy` and change its fields inside a seqlock
 *     (`seq` odd while changing), so the handler, which may interrupt a
 *     registration on its own thread or run on another, reads a consistent
 *     entry or skips it;
 *   - `hi` (entries ever used) bounds the handler's scan;
 *   - an entry is removed before its mapping is unmapped, and the engine's
 *     contract is that nobody uses an environment while it is being closed
 *     or opened, so a fault can never race with the removal of its range.
 *
 * Lock file mappings that faulted are not unmapped at close (rp_guard_unmap):
 * glibc's per-thread robust list may point into the writer mutex's page (a
 * thread held it when the page was replaced; lock.c's wmutex_repair puts the
 * links back before unlocking, but cannot know of every robust mutex a
 * thread holds), and a later robust lock would write through the pointer.
 * Such a mapping (the size of the lock file, once per broken environment)
 * stays allocated as private memory.
 *
 * Under AddressSanitizer: ASan installs its own SIGBUS handler before main
 * (handle_sigbus=1); ours replaces it and chains to it for faults outside
 * our ranges (allow_user_segv_handler=1, the default since LLVM 5 / GCC 8).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

/* 2 ranges per open environment. */
#define RP_GUARD_MAX 1024

typedef struct guard_entry {
    _Atomic unsigned  busy;          /* claimed by a registration             */
    _Atomic uint64_t  seq;           /* odd while the fields change           */
    _Atomic uintptr_t start, end;    /* [start, end); start 0 = none          */
    _Atomic uintptr_t flag;          /* (_Atomic unsigned *) the env's word   */
    _Atomic unsigned  bit;           /* RP_FAULT_*                            */
    _Atomic int       prot;          /* protection of the replacement pages   */
} guard_entry;

static guard_entry guard[RP_GUARD_MAX];
static _Atomic unsigned guard_hi;    /* entries [0, hi) may be in use         */
static _Atomic uint64_t guard_faults;
/* The handlers ours displaced: ours chains to previous[prev_idx].  Each
 * re-install writes a new element and then publishes its index, so the
 * handler never reads a half-written one; after RP_GUARD_REINSTALLS we stop
 * re-installing. */
#define RP_GUARD_REINSTALLS 8
static struct sigaction previous[RP_GUARD_REINSTALLS];
static _Atomic int prev_idx;
static _Atomic int reraise;          /* passing a fault on (see above)        */
static uintptr_t page_mask;
static int install_rc = -1;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t install_mu = PTHREAD_MUTEX_INITIALIZER;

/* Find the entry for addr; copy its fields.  Returns 0 if none. */
static int guard_lookup(uintptr_t addr, uintptr_t *end, _Atomic unsigned **flag,
                        unsigned *bit, int *prot) {
    unsigned hi = atomic_load_explicit(&guard_hi, memory_order_acquire);
    for (unsigned i = 0; i < hi && i < RP_GUARD_MAX; i++) {
        guard_entry *g = &guard[i];
        uint64_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
        if (s1 & 1) continue;
        uintptr_t st = atomic_load_explicit(&g->start, memory_order_relaxed);
        uintptr_t en = atomic_load_explicit(&g->end, memory_order_relaxed);
        uintptr_t fl = atomic_load_explicit(&g->flag, memory_order_relaxed);
        unsigned b = atomic_load_explicit(&g->bit, memory_order_relaxed);
        int pr = atomic_load_explicit(&g->prot, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&g->seq, memory_order_relaxed) != s1) continue;
        if (st == 0 || addr < st || addr >= en) continue;
        *end = en;
        *flag = (_Atomic unsigned *)fl;
        *bit = b;
        *prot = pr;
        return 1;
    }
    return 0;
}

/* A fault that is not ours: hand it to whoever handled SIGBUS before us. */
static void chain(int sig, siginfo_t *info, void *uctx) {
    const struct sigaction *prev =
        &previous[atomic_load_explicit(&prev_idx, memory_order_acquire)];
    int passing = atomic_exchange(&reraise, 0);
    if (!(passing && info->si_code <= 0)) {
        if (prev->sa_flags & SA_SIGINFO || (prev->sa_handler != SIG_DFL &&
                                            prev->sa_handler != SIG_IGN)) {
            atomic_store(&reraise, 1);
            if (prev->sa_flags & SA_SIGINFO) prev->sa_sigaction(sig, info, uctx);
            else prev->sa_handler(sig);
            /* Did it re-raise (pending until we return: ours blocks SIGBUS)? */
            sigset_t pend;
            if (sigpending(&pend) != 0 || !sigismember(&pend, SIGBUS)) atomic_store(&reraise, 0);
            return;
        }
        if (prev->sa_handler == SIG_IGN && info->si_code <= 0) return;   /* sent, ignored */
    }
    /* The default action: restore it; a faulting access runs again on
     * return and terminates the process as if we had never been here; a
     * SIGBUS sent by kill() is sent again (it stays pending, since the
     * handler blocks it, until we return). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    if (info->si_code <= 0) raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
    int saved = errno;
    uintptr_t addr = (uintptr_t)info->si_addr, end = 0;
    _Atomic unsigned *flag = NULL;
    unsigned bit = 0;
    int prot = 0;
    /* si_code > 0: raised by the kernel for an access (not kill()). */
    if (info->si_code > 0 && guard_lookup(addr, &end, &flag, &bit, &prot)) {
        uintptr_t page = addr & page_mask;
        void *m = mmap((void *)page, end - page, prot,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            atomic_fetch_or_explicit(flag, bit, memory_order_seq_cst);
            atomic_fetch_add_explicit(&guard_faults, 1, memory_order_relaxed);
            errno = saved;
            return;
        }
        /* Out of memory for the replacement: nothing else can make the
         * access succeed; the default action follows. */
    }
    chain(sig, info, uctx);
    errno = saved;
}

static int ours(const struct sigaction *sa) {
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_sigbus;
}

/* Put our handler on top; the one it replaces becomes the one we chain to.
 * Under install_mu. */
static int install_on_top(int idx) {
    struct sigaction sa, cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0) return errno;
    if (ours(&cur)) return RP_OK;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    /* previous[idx] is complete (and published) before ours can run. */
    previous[idx] = cur;
    atomic_store_explicit(&prev_idx, idx, memory_order_release);
    return sigaction(SIGBUS, &sa, NULL) == 0 ? RP_OK : errno;
}

static void install(void) {
    long ps = sysconf(_SC_PAGESIZE);
    page_mask = ~(uintptr_t)((ps > 0 ? ps : 4096) - 1);
    install_rc = install_on_top(0);
}

int rp_guard_add(rp_env *env, const void *addr, size_t len, int prot, unsigned bit) {
    pthread_once(&install_once, install);
    if (install_rc != RP_OK) return install_rc;
    pthread_mutex_lock(&install_mu);
    struct sigaction cur;
    int idx = atomic_load(&prev_idx);
    if (idx + 1 < RP_GUARD_REINSTALLS && sigaction(SIGBUS, NULL, &cur) == 0 && !ours(&cur))
        (void)install_on_top(idx + 1);   /* best effort: a failure keeps the order */
    pthread_mutex_unlock(&install_mu);
    for (unsigned i = 0; i < RP_GUARD_MAX; i++) {
        guard_entry *g = &guard[i];
        unsigned zero = 0;
        if (!atomic_compare_exchange_strong(&g->busy, &zero, 1)) continue;
        uint64_t s = atomic_load_explicit(&g->seq, memory_order_relaxed);
        atomic_store_explicit(&g->seq, s + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&g->end, (uintptr_t)addr + len, memory_order_relaxed);
        atomic_store_explicit(&g->flag, (uintptr_t)&env->faulted, memory_order_relaxed);
        atomic_store_explicit(&g->bit, bit, memory_order_relaxed);
        atomic_store_explicit(&g->prot, prot, memory_order_relaxed);
        atomic_store_explicit(&g->start, (uintptr_t)addr, memory_order_relaxed);
        atomic_store_explicit(&g->seq, s + 2, memory_order_release);
        unsigned hi = atomic_load(&guard_hi);
        while (hi < i + 1 && !atomic_compare_exchange_weak(&guard_hi, &hi, i + 1)) {}
        return RP_OK;
    }
    return EMFILE;   /* more than RP_GUARD_MAX / 2 environments open at once */
}

void rp_guard_remove(const void *addr) {
    if (addr == NULL) return;
    unsigned hi = atomic_load(&guard_hi);
    for (unsigned i = 0; i < hi; i++) {
        guard_entry *g = &guard[i];
        if (!atomic_load(&g->busy) || atomic_load(&g->start) != (uintptr_t)addr) continue;
        uint64_t s = atomic_load_explicit(&g->seq, memory_order_relaxed);
        atomic_store_explicit(&g->seq, s + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&g->start, 0, memory_order_relaxed);
        atomic_store_explicit(&g->seq, s + 2, memory_order_release);
        atomic_store(&g->busy, 0);
        return;
    }
}

void rp_guard_unmap(rp_env *env, void *addr, size_t len, unsigned bit) {
    if (addr == NULL) return;
    rp_guard_remove(addr);
    /* A faulted lock mapping stays, as private memory: see "Lock file
     * mappings" above.  Its pages before the fault still map the file;
     * replacing them drops the mapping's reference to the open file, which
     * would otherwise keep this process's OFD lock (lock.c) after close and
     * stop the next first opener from rebuilding the lock file. */
    if ((bit & RP_FAULT_LOCK) && (atomic_load(&env->faulted) & RP_FAULT_LOCK) &&
        mmap(addr, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) != MAP_FAILED)
        return;
    munmap(addr, len);
}

int rp_guard_error(const rp_env *env) {
    unsigned f = atomic_load_explicit(&env->faulted, memory_order_seq_cst);
    if (f & RP_FAULT_LOCK) return RP_LOCK_CHANGED;
    return rp_corruptf("the data file %s lost pages while in use: another program truncated "
                       "it, or they could not be read (I/O error); close every handle and "
                       "open it again", env->path);
}

uint64_t rp_guard_fault_count(void) {
    return atomic_load_explicit(&guard_faults, memory_order_relaxed);
}
