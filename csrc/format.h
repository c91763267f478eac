/*
 * format.h -- every byte realmpy writes: the data file and the lock file.
 *
 * All integers are little-endian (the engine refuses big-endian hosts at
 * compile time; see the static assertions at the end).  Multi-byte fields in
 * pages may be unaligned and are read and written with memcpy.
 *
 * =========================================================================
 * THE DATA FILE
 * =========================================================================
 *
 * A sequence of RP_PAGE_SIZE (4096-byte) pages, numbered from 0.
 *
 *   page 0, page 1    meta pages (two: commit N writes meta page N % 2)
 *   page 2 ...        tree pages, overflow runs, free-list pages, free pages
 *   [pages_used, file end)   pre-grown, never yet used (zeros)
 *
 * The file is grown in chunks (zero-filled) so that a commit overwrites
 * allocated blocks instead of appending: an append + fdatasync costs about
 * twice an overwrite + fdatasync on ext4.  A chunk is 1/32 of the file's
 * size (at least 256 KiB, at most 64 MiB; txn.c, ensure_size), so the
 * file runs at most about 3% (or 256 KiB) above pages_used; a new file
 * starts at 1 MiB (env.c, create_file).
 *
 * Every page begins with the same 32-byte header:
 *
 *   OFFSET SIZE DESCRIPTION
 *      0     4  checksum: rp_hash32 of bytes [4, end) of the page, or of the
 *               whole run for an overflow run, or of [4, RP_META_SIZE) for a
 *               meta page
 *      4     2  flags: one of P_META, P_BRANCH, P_LEAF, P_OVERFLOW, P_FREELIST
 *      6     2  nkeys: entries on a branch or leaf page; 0 otherwise
 *      8     8  txnid: the version whose commit wrote this page
 *     16     8  pgno: this page's own number (catches misdirected writes)
 *     24     2  lower: branch/leaf: end of the slot array (offset)
 *     26     2  upper: branch/leaf: start of the entry heap (offset)
 *     28     4  npages: overflow: pages in the run; otherwise 1
 *
 * Checksums and txnids are what make a one-fdatasync commit safe: on open,
 * the newest meta record is verified by walking from its roots every page
 * whose parent pointer says it was written by that meta's version
 * (child txnid == meta txnid) and checking each one's checksum, txnid and
 * pgno.  A page that never reached the disk has a stale txnid or a bad
 * checksum.  Pages of older versions were made durable by an earlier
 * commit's fdatasync.  Reads verify every page's checksum too, the first
 * time a process reads that page version (docs/integrity.md).
 *
 * META PAGES (pages 0 and 1) hold four meta-record slots, each 128 bytes
 * at the start of its own 512-byte sector:
 *
 *   page 0 offset    0   primary copy of the newest EVEN version
 *   page 1 offset    0   primary copy of the newest ODD version
 *   page 0 offset 2048   mirror copy of the newest ODD version
 *   page 1 offset 2048   mirror copy of the newest EVEN version
 *
 * Commit N writes both copies of record N (its primary in page N % 2, its
 * mirror in the other page) before its single fdatasync, so every version
 * exists twice, in two sectors of two different pages; records N and N-1
 * live side by side and commit N never changes N-1's copies.  The two
 * copies go out in one pwrite of both meta pages (bytes 0 to 8191), whose
 * other bytes -- N-1's copies, the zeros -- are rewritten as the file
 * holds them (meta.c, THE META WRITE): a sector rewritten with its own
 * bytes is the same whether or not the write reached it, and the kernel
 * writes both pages back as whole 4 KiB blocks at every commit anyway.
 *
 * META RECORD (128 bytes, identical in both copies)
 *   OFFSET SIZE DESCRIPTION
 *      0    32  page header: checksum of bytes [4, 128), flags P_META,
 *               txnid = the version N, pgno = N % 2 (the primary's page),
 *               npages 1
 *     32     8  magic "realmpy\0"
 *     40     4  format version (RP_FORMAT_VERSION_NUMBER)
 *     44     4  page size (4096)
 *     48     8  pages_used: pages [0, pages_used) are allocated
 *     56     8  catalog root pgno (0 = no tables)
 *     64     8  catalog root txnid
 *     72     8  free-list head pgno (0 = empty free list)
 *     80     8  free-list head txnid
 *     88     8  free-list length in bytes (serialised stream, below)
 *     96     4  record flags (since format 2):
 *                 RP_META_SYNCED  0x1  the commit is made durable by an
 *                                      fdatasync (durability "full")
 *                 RP_META_ACKED   0x2  that fdatasync returned: the commit
 *                                      was acknowledged to its caller
 *    100    28  reserved, zero
 *   The rest of each 2048-byte half is zero.  A record is valid when magic,
 *   version, page size, checksum, and txnid parity against its slot are
 *   right.
 *
 * FORMAT VERSIONS (meta record offset 40)
 *   1  records without mirrors or flags; leaf entries with an 8-byte header
 *      (u16 klen, u8 flags, u8 zero, u32 vlen) and 8-byte slots (head, offset,
 *      a copy of klen); values over a quarter page in overflow runs.
 *   2  format 1 plus the mirrored meta records and their flags.
 *   3  (this one) compact leaf entries and 6-byte slots on leaf and branch
 *      pages (below); values up to half a page inline.  Branch entries,
 *      overflow runs, the catalog and the free list are as in format 2.
 *   (The free lists of formats 1 and 2 differ -- format 1 rewrote the whole
 *   chain at each commit, format 2 only its head -- in which pages a commit
 *   writes, not in their layout.)
 *   The engine opens only format 3: formats 1 and 2 are RP_FORMAT_OLD
 *   (read-only or not, the file untouched; an intact record of an older
 *   format is an old file, not damage).  rp_env_upgrade (legacy.c) converts
 *   them: a reader of the old leaf and branch layout, isolated from every
 *   read path, copies each table of the newest intact version into a new
 *   file <path>.upgrade (O_EXCL|O_NOFOLLOW, the old file's mode), which is
 *   made durable and renamed over the old one; the directory is synced.  A
 *   crash leaves the old file whole or the new one complete.  realmpy runs
 *   it on the first writable open while no other process has the file
 *   open, and in `realmpy upgrade` (docs/format.md).  A newer format than
 *   this one: RP_FORMAT_VERSION.
 *
 * WHAT AN OPEN CONCLUDES FROM THE RECORDS (more in docs/integrity.md)
 *   - Torn commit or damage?  Commit N writes its record with SYNCED, then
 *     fdatasyncs, then rewrites both copies with SYNCED|ACKED (the same
 *     one pwrite of both meta pages; no further sync: the next commit's
 *     fdatasync, or the kernel's writeback, carries it to the disk).  A record is KNOWN ACKNOWLEDGED when it has ACKED, or
 *     when it has SYNCED and a newer valid record exists (commit N+1 began
 *     only after commit N returned).  If the newest record's commit fails
 *     verification and it is not known acknowledged, its fdatasync never
 *     returned (power cut mid-commit): falling back to the previous version
 *     is right, and silent.  A known-acknowledged commit cannot be torn, so
 *     open does not verify its pages (outside a salvage): damage to them is
 *     RP_CORRUPT at the read of the damaged page and in check(); one that
 *     claims pages beyond the end of the file (a truncated file) fails open
 *     with RP_CORRUPT naming the version (docs/integrity.md).
 *   - A damaged copy of a record (bad checksum) is survived: the other copy
 *     is in another sector of the other page.  If both copies of one parity
 *     are damaged the lost record may have been the newest acknowledged
 *     commit, so open fails with RP_CORRUPT -- unless the newest valid
 *     record is not known acknowledged (then no newer commit was
 *     acknowledged either: its fdatasync would have made that ACKED durable).
 *   - Writes are assumed atomic per 512-byte sector (a torn write leaves
 *     each sector old or new), as the power-cut simulation models them;
 *     each record sits alone in its sector.
 *   - Salvage (RP_RECOVER): open the newest intact version, skipping damaged
 *     ones, and (unless read-only) make that durable as a new version
 *     numbered above any version the file may hold, so that no later commit
 *     reuses a damaged record's number, and again as the version after
 *     that, so both parities hold an intact record (a parity whose two
 *     copies were lost would otherwise refuse every later open).
 *     rp_env_recovered_from() tells the version it rolled back from.
 *   - Once a record newer than version 1 exists, both parities have been
 *     written and no writer clears a slot: a parity whose two slots are all
 *     zeros is damaged, like one whose slots fail their checksum.
 *
 * BRANCH AND LEAF PAGES (B+tree nodes; slotted pages)
 *   After the header, a slot array of nkeys 6-byte slots (sorted by key)
 *   grows up from offset 32 to `lower`; entries are packed from the end of
 *   the page down to `upper`.  Free space is [lower, upper).
 *
 *   Slot (RP_SLOT_SIZE = 6 bytes):
 *      0     4  head: the key's first 4 bytes, zero-padded (0 for a branch
 *               page's first entry).  Compared as a big-endian integer,
 *               unequal heads order two keys exactly, so a binary search
 *               reads the compact slot array and dereferences an entry only
 *               when heads tie: one or two cache lines a page instead of
 *               one per probe.
 *      4     2  offset of the entry in the page
 *
 *   Leaf entry (format 3; variable-length header, 3 bytes for a key under
 *   128 bytes and a value under 64):
 *      0   1|2  klen: one byte 0..127, or two bytes big-endian with bit 15
 *               set (128..RP_MAX_KEY); never two for a klen under 128
 *         klen  key
 *        1..5   vtag: LEB128 varint (7 bits a byte, low first, bit 7 =
 *               more; minimal: no trailing zero byte) of vlen * 2 + E_BIG.
 *               vlen (the value's full length) <= RP_MAX_VALUE
 *         ...   value (vlen bytes), or for E_BIG: u64 overflow pgno,
 *               u64 overflow txnid (RP_BIG_REF bytes)
 *   A value is stored inline exactly when its entry (klen bytes, key,
 *   vtag, value) is at most RP_MAX_INLINE_ENTRY bytes: half a page less a
 *   slot, so a leaf always holds two (rp_leaf_inline; an E_BIG entry whose
 *   value would fit inline is damage).  Every byte of an entry lies inside
 *   its page; readers check that before they use it (rp_leaf_extent,
 *   rp_leaf_decode).
 *
 *   Branch entry:
 *      0     2  klen (0 for the first entry: its key is "minus infinity")
 *      2     6  reserved, zero
 *      8     8  child pgno
 *     16     8  child txnid (the version that wrote the child)
 *     24  klen  key: every key in the child's subtree is >= this key, and
 *               < the next entry's key
 *
 * OVERFLOW RUN (a large value): npages contiguous pages; the header of the
 *   first page is followed by the value bytes, continuing through the
 *   following pages with no further headers.  The checksum covers the
 *   whole run from byte 4 and is verified, over the whole run, before any
 *   of the value is handed out; npages must keep the run below pages_used.
 *
 * THE CATALOG is a B+tree of the same form keyed by table name (UTF-8, 1 to
 *   RP_MAX_TABLE_NAME bytes), whose inline values are table descriptors:
 *      0     8  root pgno (0 = empty table)
 *      8     8  root txnid
 *     16     8  entries (keys in the table)
 *     24     8  depth (levels; 0 when empty)
 *     32     8  pages (branch + leaf + overflow pages of the table)
 *
 * FREE-LIST PAGES: a chain of P_FREELIST pages holding one byte stream:
 *   page:   32 header | 8 next pgno | 8 next txnid | 4 bytes used | 4 zero |
 *           stream bytes (up to RP_FREELIST_CAP per page)
 *   stream: records  [u64 txnid T][u32 n][u32 pgno] * n
 *   A record lists pages freed by the commit of version T: live in T-1, not
 *   in T.  They may be reused by a writer once no live snapshot is older
 *   than T.  Records whose pages are reusable by everyone are stored with
 *   T = 0; the same T may have several records.  The stream is the pages'
 *   used bytes in chain order, so a record may run across pages, header
 *   included, and a page may hold fewer than RP_FREELIST_CAP bytes (or
 *   none).  A commit rewrites only the head of the chain, the pages it read
 *   (txn.c, THE FREE LIST IN A WRITE TXN): the new head's last page points
 *   (next pgno, next txnid) at the first old page not read, so the pages of
 *   one chain may carry different txnids, each named by its predecessor.
 *   The head may end with the header of a record whose page numbers follow
 *   in the old pages, its n counting only those.  Every realmpy that reads
 *   format 2 or 3 reads such a chain (the layout is that of format 2; only
 *   which pages a commit rewrites changed).
 *
 * =========================================================================
 * THE LOCK FILE  (<path>.lock, mapped MAP_SHARED: shared memory)
 * =========================================================================
 *   OFFSET SIZE DESCRIPTION
 *      0     8  magic "rplock\0\0"
 *      8     4  layout version (RP_LOCK_LAYOUT)
 *     12     4  ABI signature (RP_LOCK_ABI: sizes of pthread_mutex_t,
 *               pointers and the slot, so 32/64-bit and libc mismatches are
 *               refused)
 *     16     4  max_readers (slots in the table).  Validated once at open
 *               (1..65536 and the file size == 1216 + 64 * max_readers);
 *               every process then uses its own copy, never this field
 *               again (a changed field cannot send it out of the mapping)
 *     20     4  ready: 0 while being (re)built; 1 once initialisation is
 *               complete (written last); 2 (RP_LOCK_ABANDONED) once a
 *               process found the file deleted, replaced or truncated
 *               under it: every user then refuses to read and write
 *               (RP_LOCK_CHANGED) and openers are refused until the last
 *               user left, when the next opener rebuilds it.  A truncated
 *               file is first extended back to its size (zeros) so that no
 *               process faults on it; 2 is checked before the magic
 *     24     8  nonce: random, chosen when the lock file was (re)built
 *     32    32  reserved
 *     64    64  writer mutex: pthread_mutex_t, PROCESS_SHARED + ROBUST +
 *               ERRORCHECK (on its own cache line)
 *    128     8  version: latest durable committed version (atomic)
 *    136     4  futex word: incremented after each version bump (atomic)
 *    140     4  waiters: processes' threads waiting on the futex word
 *    144     8  last reap time (CLOCK_MONOTONIC ns) of the reader table
 *    152     8  writer tid: the thread holding the writer mutex (0 when
 *               free), recorded right after locking
 *    160     8  commit in doubt: the version a writer is committing, set
 *               before it writes its meta page and cleared (0) after it
 *               published that version (or rolled the meta back).  Set
 *               above the published version while the thread at 172 no
 *               longer holds the writer mutex = the writer died mid-commit:
 *               the next reader, waiter or opener takes the writer mutex
 *               and publishes the commit if its meta page verifies, or
 *               discards it (rp_resolve_commit), before reading
 *    168     4  writer pid: the process holding the writer mutex (0 free)
 *    172     4  commit thread: tid of the writer that set 160
 *    176     8  writer start time (clock ticks since boot, as in a reader
 *               slot): with 152/168, tells a live writer from a dead or
 *               forged owner of the mutex word (see rp_wlock)
 *    184     8  reserved
 *    192  64*16 meta ring: the last RP_RING versions' roots, entry
 *               v % RP_RING, each guarded by a sequence number:
 *                 0  8  seq: 2*v when entry v is complete, odd while written
 *                 8  8  txnid (= v)
 *                16  8  pages_used
 *                24  8  catalog root pgno
 *                32  8  catalog root txnid
 *                40  8  free-list head pgno
 *                48  8  free-list head txnid
 *                56  8  free-list length in bytes
 *   1216  64*R  reader slots (R = max_readers), one cache line each:
 *                 0  8  version pinned (0 = idle)
 *                 8  4  owner pid (0 = slot free)
 *                12  4  owner thread id (diagnostics; a shared txn's
 *                       beginner, see rp_txn_share)
 *                16  8  owner start time (clock ticks since boot, from
 *                       /proc/<pid>/stat; tells a reused pid from the owner)
 *                24 40  reserved
 *
 *   A reader claims a slot once (CAS on pid 0 -> own pid), then begins a
 *   snapshot with: store version = latest; re-read latest; retry if it
 *   moved (so a writer scanning the table either sees the slot or the
 *   reader sees the new version), and ends it by storing 0.
 *
 *   The writer mutex's first 4 bytes (offset 64) are the kernel's robust
 *   futex word (glibc's __data.__lock): owner tid in bits 0-29,
 *   FUTEX_OWNER_DIED (bit 30), FUTEX_WAITERS (bit 31).  A writer that
 *   waits RP_WLOCK_CHECK_NS (0.5 s) for it checks the tid there: a thread
 *   that does not exist, or one that is not the recorded writer (152, 168,
 *   176) for two checks in a row and is not stopped, is a dead or forged
 *   owner, and the word is set to FUTEX_OWNER_DIED as the kernel does when
 *   an owner exits; the next locker then repairs (EOWNERDEAD).
 *
 *   The file is created with the data file's read/write mode bits, opened
 *   with O_NOFOLLOW|O_CLOEXEC and used only as a regular file with one
 *   link.  Layout 2 added the bytes at 160-183 and ready = 2.
 */
#ifndef REALMPY_FORMAT_H
#define REALMPY_FORMAT_H

#include <stdint.h>

#define RP_FORMAT_VERSION_NUMBER 3
#define RP_FORMAT_VERSION_OLDEST 3   /* oldest format opened; older: see
                                        FORMAT VERSIONS above                 */
#define RP_META_MAGIC      "realmpy\0"
#define RP_LOCK_MAGIC      "rplock\0\0"
#define RP_LOCK_LAYOUT     2
#define RP_LOCK_ABANDONED  2   /* ready: deleted, replaced or truncated in use */

#define RP_PAGE_HEADER     32
#define RP_SLOT_SIZE       6
#define RP_META_SIZE       128
#define RP_META_MIRROR_OFF 2048      /* the mirror slot's offset in a page  */
#define RP_META_SYNCED     0x1       /* meta record flags (above)           */
#define RP_META_ACKED      0x2
#define RP_RING            16
#define RP_LOCK_SLOTS_OFF  1216
#define RP_LOCK_SLOT_SIZE  64
#define RP_DEFAULT_READERS 126
#define RP_FIRST_DATA_PAGE 2

/* page flags */
#define P_BRANCH   0x01
#define P_LEAF     0x02
#define P_OVERFLOW 0x04
#define P_FREELIST 0x08
#define P_META     0x10

/* leaf entry flags */
#define E_BIG      0x01

#define RP_VARINT_MAX        5   /* bytes of a leaf entry's vtag (33 bits)  */
#define RP_BRANCH_ENTRY_HDR 24
#define RP_BIG_REF          16   /* overflow pgno + txnid in a leaf entry */
/* Largest leaf entry kept inline: half a page keeps >= 2 entries a leaf
 * (btree.c: measured, values up to about 2 KB inline). */
#define RP_MAX_INLINE_ENTRY ((RP_PAGE_SIZE - RP_PAGE_HEADER) / 2 - RP_SLOT_SIZE)
#define RP_TABLE_DESC_SIZE  40
#define RP_FREELIST_HDR     (RP_PAGE_HEADER + 24)
#define RP_FREELIST_CAP     (RP_PAGE_SIZE - RP_FREELIST_HDR)

/* Page header, as laid out on disk (little-endian host asserted). */
typedef struct rp_page_hdr {
    uint32_t checksum;
    uint16_t flags;
    uint16_t nkeys;
    uint64_t txnid;
    uint64_t pgno;
    uint16_t lower;
    uint16_t upper;
    uint32_t npages;
} rp_page_hdr;

/* Meta page body after the page header. */
typedef struct rp_meta_body {
    char     magic[8];
    uint32_t format_version;
    uint32_t page_size;
    uint64_t pages_used;
    uint64_t cat_pgno;
    uint64_t cat_txnid;
    uint64_t free_pgno;
    uint64_t free_txnid;
    uint64_t free_len;
    uint32_t flags;                  /* RP_META_SYNCED | RP_META_ACKED        */
    uint8_t  reserved[28];
} rp_meta_body;

/* A version's roots as the engine passes them around (also a ring entry). */
typedef struct rp_roots {
    uint64_t txnid;
    uint64_t pages_used;
    uint64_t cat_pgno;
    uint64_t cat_txnid;
    uint64_t free_pgno;
    uint64_t free_txnid;
    uint64_t free_len;
} rp_roots;

_Static_assert(sizeof(rp_page_hdr) == RP_PAGE_HEADER, "page header size");
_Static_assert(RP_PAGE_HEADER + sizeof(rp_meta_body) == RP_META_SIZE,
               "meta size");
_Static_assert(sizeof(rp_roots) == 56, "ring entry payload");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "realmpy's file format is little-endian; big-endian hosts are unsupported"
#endif

#endif /* REALMPY_FORMAT_H */
