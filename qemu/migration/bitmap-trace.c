/*
 * bitmap-trace: shadow migration dirty page tracer
 *
 * While the VM runs, dirty-log guest RAM as pre-copy live migration does,
 * sync and harvest the dirty bitmap through migration's path every period,
 * and log the guest page frame numbers dirtied in each round.  Nothing is
 * sent anywhere.  See docs/devel/migration/bitmap-trace.rst.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/accel.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/rcu_queue.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-events-migration.h"
#include "bitmap-trace-compat.h"   /* the memory API headers */
#include "exec/target_page.h"
#include "hw/core/cpu.h"
#include "migration/blocker.h"
#include "migration/misc.h"
#include "monitor/monitor.h"
#include "system/cpus.h"
#include "system/dirtylimit.h"
#include "system/kvm.h"
#include "system/qtest.h"
#include "system/replay.h"
#include "system/runstate.h"
#include "system/tcg.h"
#include "bitmap-trace.h"
#include "dirtyrate.h"
#include "migration.h"
#include "ram.h"
#include "trace.h"

#define BITMAP_TRACE_ITERATIONS_MIN     3
#define BITMAP_TRACE_ITERATIONS_MAX     100000
#define BITMAP_TRACE_ITERATIONS_DEFAULT 3
#define BITMAP_TRACE_PERIOD_MIN         10
#define BITMAP_TRACE_PERIOD_MAX         100000
#define BITMAP_TRACE_PERIOD_DEFAULT     10

/* Rows of the per-iteration table in a notice, at most: first and last */
#define BITMAP_TRACE_NOTICE_ROWS        20

/*
 * How long a log that is not a regular file (a FIFO, a socket) may take no
 * data before the trace fails, and how much longer once it is stopped
 */
#define BITMAP_TRACE_STALL_MS           2000
#define BITMAP_TRACE_STALL_STOP_MS      500

/*
 * The chunk tracking is re-armed by, in words of the dirty bitmap: 16384
 * pages, 64 MiB of 4 KiB pages (a multiple of KVM_CLEAR_DIRTY_LOG's
 * 64-page alignment)
 */
#define BITMAP_TRACE_REARM_WORDS        256

/*
 * The baseline's zero scan is done in slices of this many words of the
 * bitmap (2048 pages, 8 MiB of 4 KiB pages), between which the rounds that
 * fall due are taken; and the rounds so queued keep at most this many bytes
 * of dirty bitmap words
 */
#define BITMAP_TRACE_SCAN_WORDS         32
#define BITMAP_TRACE_QUEUE_BYTES        (64 * MiB)

/* Ranges per "pfns"/"unmapped" line, to keep lines readable */
#define BITMAP_TRACE_RANGES_PER_LINE    256

/*
 * Binary log (format version 3): the magic, then self-delimiting records,
 * each a type byte, its payload's length as a varint and the payload.
 */
#define BITMAP_TRACE_BIN_MAGIC          "\x89" "BTR\r\n\x1a\n"
#define BITMAP_TRACE_BIN_MAGIC_LEN      8
#define BITMAP_TRACE_BIN_VERSION        3
#define BITMAP_TRACE_BIN_HEADER         'H'
#define BITMAP_TRACE_BIN_ITER           'I'
#define BITMAP_TRACE_BIN_END            'E'
#define BITMAP_TRACE_BIN_ADDED          'A'
#define BITMAP_TRACE_BIN_REMOVED        'R'
#define BITMAP_TRACE_BIN_BLOCKED        'B'
/* A block entry of an iteration record: what precedes its page sets */
#define BITMAP_TRACE_BIN_USED           1   /* its used pages changed */
#define BITMAP_TRACE_BIN_MAP            2   /* its memory map changed */
/* A page set is encoded as one of */
#define BITMAP_TRACE_BIN_RUNS           0
#define BITMAP_TRACE_BIN_BITMAP         1

/* Pages [page, page + npages) of a block are seen at PFN pfn onwards */
typedef struct BitmapTraceSegment {
    uint64_t page;
    uint64_t npages;
    uint64_t pfn;
} BitmapTraceSegment;

typedef struct BitmapTraceRun {
    uint64_t first;
    uint64_t npages;
} BitmapTraceRun;

typedef struct BitmapTraceBlock {
    RAMBlock *rb;
    char *idstr;
    ram_addr_t offset;          /* ram_addr of page 0, 64-page aligned */
    uint64_t max_pages;         /* bitmaps cover a resize up to this */
    uint64_t pages;             /* used pages at start */
    uint64_t used_pages;        /* used pages at the last harvest */
    bool gone;                  /* the block was freed during the trace */
    /* added during the trace, found by the last sync: @dirty is its base */
    bool arrived;
    bool removed;               /* found gone by the last sync */
    unsigned long *dirty;       /* dirtied in the current iteration */
    unsigned long *seen;        /* dirtied in any measured iteration */
    unsigned long *mapped;      /* has a GPA, at the last harvest */
    unsigned long *zero;        /* of @dirty, all zero bytes when scanned */
    unsigned long *scratch;
    GArray *segs;               /* BitmapTraceSegment, in GPA order */
    /* binary log: the map and used pages its reader knows of */
    GArray *logged_segs;
    uint64_t logged_used_pages;
} BitmapTraceBlock;

typedef struct BitmapTrace {
    /* Set up by the QMP handler, then owned by the trace thread */
    char *filename;
    int fd;
    BitmapTraceFormat format;
    bool seekable;              /* a regular file, written with pwrite() */
    int64_t iterations;
    int64_t period_ms;
    const char *accel;
    char *start_time;
    /* why migration is blocked (char *), at the start, then as it comes */
    GPtrArray *blocked;
    guint blocked_logged;       /* of @blocked, how many the log gives */
    int64_t t0_ns;
    BitmapTraceBlock *blocks;
    unsigned nblocks;
    int64_t sync_us;
    int64_t harvest_us;
    int64_t zero_us;
    int64_t late_ms;            /* how late the last round was */
    /* Tells the BQL holder that the memory map changed since it was read */
    MemoryListener map_listener;
    bool map_stale;
    off_t log_length;           /* bytes of complete records written */
    GString *enc;               /* binary log: scratch for an encoding */
    GString *rec;               /* binary log: a record being built */
    GString *ent;               /* binary log: its block entries */

    QemuThread thread;
    bool thread_created;        /* created and not joined yet */
    QemuSemaphore wakeup;
    bool stop_requested;        /* atomic */

    /* How the thread ended, published by bitmap_trace_end() */
    bool end_pending;           /* atomic */
    BitmapTraceStatus end_status;
    char *end_error;

    /* Results, read by query-bitmap-trace; protected by @lock */
    QemuMutex lock;
    BitmapTraceStatus status;
    int64_t completed;
    int64_t elapsed_ms;
    uint64_t distinct;
    GArray *dirty_pages;        /* uint64_t per iteration, 0 first */
    char *error;
} BitmapTrace;

static BitmapTrace bt_state;
static Error *bt_blocker;

static const char *bitmap_trace_accel(void)
{
    if (qtest_enabled()) {
        return "qtest";
    }
    if (kvm_enabled()) {
        return kvm_dirty_ring_enabled() ? "kvm-dirty-ring" : "kvm";
    }
    if (tcg_enabled()) {
        return "tcg";
    }
    return current_accel_name();
}

static int64_t now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

static void bitmap_trace_free_blocks(BitmapTrace *bt)
{
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        g_free(b->idstr);
        g_free(b->dirty);
        g_free(b->seen);
        g_free(b->mapped);
        g_free(b->zero);
        g_free(b->scratch);
        g_array_free(b->segs, true);
        g_array_free(b->logged_segs, true);
    }
    g_clear_pointer(&bt->blocks, g_free);
    bt->nblocks = 0;
}

/*
 * Trace RAM block @rb from now on.  Its bitmaps cover it up to its maximum
 * size.  Called with the BQL held (for idstr) and the RCU read lock.
 */
static BitmapTraceBlock *bitmap_trace_add_block(BitmapTrace *bt,
                                                RAMBlock *rb)
{
    BitmapTraceBlock *b;

    /* find_ram_offset() aligns blocks to a word of the dirty bitmap */
    assert(!((rb->offset >> TARGET_PAGE_BITS) % BITS_PER_LONG));
    bt->blocks = g_renew(BitmapTraceBlock, bt->blocks, bt->nblocks + 1);
    b = &bt->blocks[bt->nblocks++];
    *b = (BitmapTraceBlock) {
        .rb = rb,
        .idstr = g_strdup(qemu_ram_get_idstr(rb)),
        .offset = rb->offset,
        .max_pages = rb->max_length >> TARGET_PAGE_BITS,
        .pages = rb->used_length >> TARGET_PAGE_BITS,
    };
    b->dirty = bitmap_new(b->max_pages);
    b->seen = bitmap_new(b->max_pages);
    b->mapped = bitmap_new(b->max_pages);
    b->zero = bitmap_new(b->max_pages);
    b->scratch = bitmap_new(b->max_pages);
    b->segs = g_array_new(false, false, sizeof(BitmapTraceSegment));
    b->logged_segs = g_array_new(false, false, sizeof(BitmapTraceSegment));
    return b;
}

/*
 * Take the blocks migration would send, in the order it sends them.
 * Called with the BQL held and the RCU read lock.
 */
static void bitmap_trace_init_blocks(BitmapTrace *bt)
{
    RAMBlock *rb;

    RAMBLOCK_FOREACH_NOT_IGNORED(rb) {
        bitmap_trace_add_block(bt, rb);
    }
}

/*
 * Is the traced block @b still there?  A RAMBlock freed during the trace
 * (memory unplug) may have its memory reused by one added later, so its
 * address is not enough.  Called with the RCU read lock.
 */
static bool bitmap_trace_block_present(BitmapTraceBlock *b)
{
    RAMBlock *rb;

    RAMBLOCK_FOREACH(rb) {
        if (rb == b->rb) {
            return rb->offset == b->offset &&
                   rb->max_length >> TARGET_PAGE_BITS == b->max_pages &&
                   !strcmp(qemu_ram_get_idstr(rb), b->idstr);
        }
    }
    return false;
}

/*
 * Re-arm tracking for the pages taken, or a page written in every round
 * would show up only once: with KVM manual dirty log protect the pages
 * stay writable until KVM_CLEAR_DIRTY_LOG (a no-op for the dirty ring,
 * which re-protects on ring reset); with TCG the TLB entries stay "not
 * dirty" until reset.  A chunk of which no page was taken has nothing to
 * re-arm: its pages are protected (KVM had none of them dirty at the sync,
 * with the vCPUs parked) or not dirty in any TLB (each time a bit of them
 * was taken, their TLB entries were reset).  So only the runs of chunks
 * with pages taken are re-armed, each in one call: what is spread over the
 * whole block costs one call, as it did for the whole block, and what is
 * not costs O(its chunks), not O(RAM), in QEMU and in KVM.
 *
 * Re-arm chunks [@first, @last] of @b.  The TLB reset takes an absolute
 * ram_addr, not an offset into the block.
 */
static void bitmap_trace_rearm(BitmapTraceBlock *b, unsigned long first,
                               unsigned long last)
{
    uint64_t page = (uint64_t)first * BITMAP_TRACE_REARM_WORDS * BITS_PER_LONG;
    uint64_t end = MIN((uint64_t)(last + 1) * BITMAP_TRACE_REARM_WORDS *
                       BITS_PER_LONG, b->used_pages);
    ram_addr_t start = page << TARGET_PAGE_BITS;
    ram_addr_t length = (end - page) << TARGET_PAGE_BITS;

    memory_region_clear_dirty_bitmap(b->rb->mr, start, length);
    physical_memory_dirty_bits_cleared(b->offset + start, length);
}

/*
 * Atomically take and clear the DIRTY_MEMORY_MIGRATION bits of a block
 * into the tracer's own bitmap.  This is
 * cpu_physical_memory_sync_dirty_bitmap() without its migration bitmaps
 * (rb->bmap exists only while migrating), and it counts every harvested
 * bit: the tracer models an infinitely fast link, so a page dirtied again
 * is sent again.  It writes every word of the tracer's bitmap, so that
 * nothing else has to clear it each round.  Called with the RCU read lock.
 */
static void bitmap_trace_harvest_block(BitmapTraceBlock *b)
{
    unsigned long * const *src = qatomic_rcu_read(
        &ram_list.dirty_memory[DIRTY_MEMORY_MIGRATION])->blocks;
    unsigned long first_word = BIT_WORD(b->offset >> TARGET_PAGE_BITS);
    unsigned long nwords = BITS_TO_LONGS(b->used_pages);
    unsigned long words_per_block = DIRTY_MEMORY_BLOCK_SIZE / BITS_PER_LONG;
    unsigned long run_first = 0, run_last = 0;
    bool run = false;

    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long word = first_word + k;
        unsigned long *p = &src[word / words_per_block][word % words_per_block];
        unsigned long mask = ~0UL;
        unsigned long bits;

        if (k == nwords - 1 && b->used_pages % BITS_PER_LONG) {
            /* the rest of the word lies beyond the block's used pages */
            mask = BITMAP_LAST_WORD_MASK(b->used_pages);
        }
        if (!(qatomic_read(p) & mask)) {
            b->dirty[k] = 0;
            continue;
        }
        if (mask == ~0UL) {
            bits = qatomic_xchg(p, 0);
        } else {
            bits = qatomic_fetch_and(p, ~mask) & mask;
        }
        b->dirty[k] = bits;
        if (!bits) {
            continue;
        }
        if (run && k / BITMAP_TRACE_REARM_WORDS > run_last + 1) {
            bitmap_trace_rearm(b, run_first, run_last);
            run = false;
        }
        if (!run) {
            run_first = k / BITMAP_TRACE_REARM_WORDS;
            run = true;
        }
        run_last = k / BITMAP_TRACE_REARM_WORDS;
    }
    if (run) {
        bitmap_trace_rearm(b, run_first, run_last);
    }
    /* the block may have shrunk since the last round */
    bitmap_clear(b->dirty, nwords * BITS_PER_LONG,
                 BITS_TO_LONGS(b->max_pages) * BITS_PER_LONG -
                 nwords * BITS_PER_LONG);
}

static BitmapTraceBlock *bitmap_trace_find_block(BitmapTrace *bt,
                                                 const RAMBlock *rb)
{
    for (unsigned i = 0; i < bt->nblocks; i++) {
        if (bt->blocks[i].rb == rb && !bt->blocks[i].gone) {
            return &bt->blocks[i];
        }
    }
    return NULL;
}

/*
 * RAM that migration would send, added since the trace started (memory
 * hotplug, a device's RAM), is traced from the sync that finds it.  It is
 * dirty-logged from its creation (the memory listeners log a region added
 * while global dirty logging is on, and ram_block_add() marks all of it
 * dirty), so this sync's harvest takes those bits and re-arms tracking, and
 * every write after it is caught by a later round.  What this harvest
 * takes is the block's baseline, like iteration 0 of the others: the log
 * says the block arrived, with its size, map and zero pages, instead of
 * listing its pages as dirtied.  Called with the BQL held (for idstr) and
 * the RCU read lock, before the harvest.
 */
static void bitmap_trace_find_added(BitmapTrace *bt)
{
    RAMBlock *rb;

    RAMBLOCK_FOREACH_NOT_IGNORED(rb) {
        if (!bitmap_trace_find_block(bt, rb)) {
            bitmap_trace_add_block(bt, rb)->arrived = true;
            bt->map_stale = true;
            trace_bitmap_trace_block_added(qemu_ram_get_idstr(rb),
                                           rb->used_length >>
                                           TARGET_PAGE_BITS);
        }
    }
}

/*
 * What blocks migration now and did not when the log last said: a device
 * that blocks migration may write guest RAM without dirty logging (VFIO
 * without dirty tracking, vhost-user without logging), so the log names
 * every blocker, not only the first, and those that appear during the
 * trace.  The trace's own blocker is not one of them.  Called with the
 * BQL held.
 */
static void bitmap_trace_find_blockers(BitmapTrace *bt)
{
    g_autoptr(MigrationInfo) info = qmp_query_migrate(NULL);
    const char *own = error_get_pretty(bt_blocker);
    strList *r;

    for (r = info->blocked_reasons; r; r = r->next) {
        g_autofree char *reason = g_strdelimit(g_strdup(r->value), "\n", ' ');
        bool known = !strcmp(reason, own);

        for (guint i = 0; !known && i < bt->blocked->len; i++) {
            known = !strcmp(reason, g_ptr_array_index(bt->blocked, i));
        }
        if (!known) {
            trace_bitmap_trace_blocked(reason);
            g_ptr_array_add(bt->blocked, g_steal_pointer(&reason));
        }
    }
}

/*
 * flatview_for_each_range() callback, called in ascending GPA order: give
 * each page of a traced block the lowest GPA it is visible at.
 */
static bool bitmap_trace_map_range(Int128 start, Int128 len,
                                   const MemoryRegion *mr,
                                   hwaddr offset_in_region, void *opaque)
{
    BitmapTraceBlock *b;
    hwaddr gpa, size;
    uint64_t page, end;

    if (!mr->ram_block) {
        return false;
    }
    b = bitmap_trace_find_block(opaque, mr->ram_block);
    if (!b) {
        return false;
    }
    gpa = int128_get64(start);
    size = int128_get64(len);
    /* a page mapped at an address that is not page aligned has no PFN */
    if ((gpa - offset_in_region) & ~TARGET_PAGE_MASK) {
        return false;
    }
    page = DIV_ROUND_UP(offset_in_region, TARGET_PAGE_SIZE);
    end = MIN((offset_in_region + size) >> TARGET_PAGE_BITS, b->max_pages);

    while (page < end) {
        BitmapTraceSegment seg, *last;
        uint64_t run_end;

        page = find_next_zero_bit(b->mapped, end, page);
        if (page >= end) {
            break;
        }
        run_end = find_next_bit(b->mapped, end, page);
        seg.page = page;
        seg.npages = run_end - page;
        seg.pfn = (gpa + (page << TARGET_PAGE_BITS) - offset_in_region) >>
                  TARGET_PAGE_BITS;
        bitmap_set(b->mapped, page, seg.npages);
        /* FlatView ranges split where other regions do: join them again */
        last = b->segs->len ? &g_array_index(b->segs, BitmapTraceSegment,
                                             b->segs->len - 1) : NULL;
        if (last && last->page + last->npages == seg.page &&
            last->pfn + last->npages == seg.pfn) {
            last->npages += seg.npages;
        } else {
            g_array_append_val(b->segs, seg);
        }
        page = run_end;
    }
    return false;
}

/*
 * Holding the vCPUs out of guest code for a round
 *
 * A round must be a clean cut through every vCPU's stream of writes: a
 * write that lands after a page's dirty bit was taken but before tracking
 * of the page is re-armed (KVM_CLEAR_DIRTY_LOG, the dirty ring reset, the
 * TCG TLB reset) is recorded nowhere, and a page written between the two
 * steps of one round would be attributed to one window or the other
 * depending on whether it was clean.  So the round runs while every vCPU
 * thread sits in bitmap_trace_park_vcpu(), a work item queued with
 * async_run_on_cpu().
 *
 * This is not pause_all_vcpus(): it does not touch cpu->stop, the run
 * state, the virtual clock or the replay lock, so nothing else in QEMU can
 * undo it, and it does not get in the way of the main loop's own pauses
 * (system_reset, CPU hotplug, the gdbstub, vapic).  A parked vCPU thread
 * keeps doing what an idle one does: it reports itself stopped when asked
 * to and runs the work queued on it (run_on_cpu() of the dirty ring flush
 * or of a monitor command), through qemu_process_cpu_events_common().  The BQL
 * is dropped only while the vCPUs are being gathered, before the round
 * takes anything.
 */
typedef struct BitmapTracePark {
    QemuCond parked_cond;       /* a vCPU thread parked */
    uint64_t gen;               /* the round being held */
    uint64_t released;          /* the last round released */
    GPtrArray *queued;          /* vCPU threads asked to park for @gen */
    GPtrArray *parked;          /* vCPU threads parked for @gen */
} BitmapTracePark;

/* Protected by the BQL */
static BitmapTracePark bt_park;

static bool bitmap_trace_thread_in(GPtrArray *threads, QemuThread *thread)
{
    return g_ptr_array_find(threads, thread, NULL);
}

static void bitmap_trace_nop(CPUState *cpu, run_on_cpu_data data)
{
}

/* Work item: hold this vCPU thread until round @data is released */
static void bitmap_trace_park_vcpu(CPUState *cpu, run_on_cpu_data data)
{
    uint64_t gen = data.host_ulong;
    CPUState *other;

    if (gen != bt_park.gen || bt_park.released >= gen) {
        return;
    }
    /*
     * Work items this thread ran just before this one, in the same batch
     * of process_queued_cpu_work(), are done, but whoever waits for them in
     * run_on_cpu() (the main loop enabling the vapic during a reboot, say)
     * is woken only when the batch ends, which this item holds up.  A batch
     * of our own ends now and wakes them.
     */
    async_run_on_cpu(cpu, bitmap_trace_nop, RUN_ON_CPU_NULL);
    process_queued_cpu_work(cpu);
    g_ptr_array_add(bt_park.parked, cpu->thread);
    qemu_cond_broadcast(&bt_park.parked_cond);

    while (bt_park.released < gen) {
        /* qemu_cpu_kick() wakes us for new work, a stop or the release */
        qemu_cond_timedwait_bql(cpu->halt_cond, 100);
        if (bt_park.released >= gen) {
            break;
        }
        /* With single-threaded TCG this thread runs every vCPU */
        CPU_FOREACH(other) {
            if (other->thread == cpu->thread) {
                qemu_process_cpu_events_common(other);
            }
        }
    }
}

/*
 * Park every vCPU thread.  Called with the BQL held, from the main loop
 * (@main_loop) or the trace thread; drops the BQL while waiting.  Returns
 * false when no vCPU runs guest code (qtest).
 */
static bool bitmap_trace_park_vcpus(bool main_loop)
{
    /*
     * Under record/replay the main loop holds the replay lock, which the
     * vCPU thread needs before it gets to its queued work.  The trace
     * thread never holds it.
     */
    bool replay_held = main_loop && replay_mode != REPLAY_MODE_NONE;
    CPUState *cpu;

    if (!tcg_enabled() && !kvm_enabled()) {
        return false;
    }
    if (replay_held) {
        replay_mutex_unlock();
    }
    if (!bt_park.queued) {
        qemu_cond_init(&bt_park.parked_cond);
        bt_park.queued = g_ptr_array_new();
        bt_park.parked = g_ptr_array_new();
    }
    bt_park.gen++;
    g_ptr_array_set_size(bt_park.queued, 0);
    g_ptr_array_set_size(bt_park.parked, 0);

    for (;;) {
        bool all = true;

        /* Look again each time: a CPU may have been plugged or unplugged */
        CPU_FOREACH(cpu) {
            /* a CPU still being created runs no guest code */
            if (!cpu->created ||
                bitmap_trace_thread_in(bt_park.parked, cpu->thread)) {
                continue;
            }
            all = false;
            if (!bitmap_trace_thread_in(bt_park.queued, cpu->thread)) {
                g_ptr_array_add(bt_park.queued, cpu->thread);
                async_run_on_cpu(cpu, bitmap_trace_park_vcpu,
                                 RUN_ON_CPU_HOST_ULONG(bt_park.gen));
            }
        }
        if (all) {
            break;
        }
        qemu_cond_timedwait_bql(&bt_park.parked_cond, 100);
    }
    if (replay_held) {
        /* the replay lock is taken before the BQL */
        bql_unlock();
        replay_mutex_lock();
        bql_lock();
    }
    return true;
}

static void bitmap_trace_release_vcpus(void)
{
    CPUState *cpu;

    bt_park.released = bt_park.gen;
    CPU_FOREACH(cpu) {
        qemu_cond_broadcast(cpu->halt_cond);
    }
}

/* MemoryListener commit: some address space's memory map changed */
static void bitmap_trace_map_changed(MemoryListener *listener)
{
    BitmapTrace *bt = container_of(listener, BitmapTrace, map_listener);

    bt->map_stale = true;
}

/*
 * Whether the next sync would find the RAM blocks, their sizes or the
 * memory map changed since the last one.  Called with the BQL held.
 */
static bool bitmap_trace_changed(BitmapTrace *bt)
{
    RAMBlock *rb;

    if (bt->map_stale) {
        return true;
    }
    RCU_READ_LOCK_GUARD();
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        if (!b->gone &&
            (!bitmap_trace_block_present(b) ||
             MIN(b->rb->used_length >> TARGET_PAGE_BITS, b->max_pages) !=
             b->used_pages)) {
            return true;
        }
    }
    RAMBLOCK_FOREACH_NOT_IGNORED(rb) {
        if (!bitmap_trace_find_block(bt, rb)) {
            return true;
        }
    }
    return false;
}

/*
 * One round: sync the dirty log, harvest every traced block and snapshot
 * the memory map the harvested pages are to be translated with.  Called
 * with the BQL held, like migration_bitmap_sync(), from the main loop
 * (@main_loop: the baseline) or the trace thread.  With @if_unchanged, a
 * round that would find the blocks or the map changed is not taken:
 * nothing is synced or harvested and it returns false.
 */
static bool bitmap_trace_sync(BitmapTrace *bt, bool main_loop,
                              bool if_unchanged)
{
    int64_t t_sync = now_ns(), t_harvest;
    bool parked = bitmap_trace_park_vcpus(main_loop);

    /* the BQL was dropped while the vCPUs were gathered: look now */
    if (if_unchanged && bitmap_trace_changed(bt)) {
        if (parked) {
            bitmap_trace_release_vcpus();
        }
        return false;
    }
    memory_global_dirty_log_sync(false);
    t_harvest = now_ns();

    WITH_RCU_READ_LOCK_GUARD() {
        for (unsigned i = 0; i < bt->nblocks; i++) {
            BitmapTraceBlock *b = &bt->blocks[i];

            if (!b->gone && !bitmap_trace_block_present(b)) {
                b->gone = b->removed = true;
                bitmap_zero(b->dirty, b->max_pages);
                trace_bitmap_trace_block_removed(b->idstr);
            }
        }
        bitmap_trace_find_added(bt);
        for (unsigned i = 0; i < bt->nblocks; i++) {
            BitmapTraceBlock *b = &bt->blocks[i];

            if (!b->gone) {
                b->used_pages = MIN(b->rb->used_length >> TARGET_PAGE_BITS,
                                    b->max_pages);
                bitmap_trace_harvest_block(b);
            }
            if (b->arrived) {
                /* its baseline: every page, as in iteration 0 */
                bitmap_set(b->dirty, 0, b->used_pages);
                b->pages = b->used_pages;
            }
        }
    }
    /*
     * Before the release: a released vCPU thread needs the BQL to leave
     * its park, so this costs the guest no longer pause, and what is left
     * between the release and the unlock is short.
     */
    bitmap_trace_find_blockers(bt);
    if (parked) {
        /* No vCPU is in a TB, so none is in a write whose bit we missed */
        bitmap_trace_release_vcpus();
    } else {
        memory_global_after_dirty_log_sync();
    }

    /*
     * The memory map the pages are translated with, rebuilt only when it
     * changed.  It is the map of the harvest, as the vCPUs run again: a
     * change to it needs the BQL, held since.
     */
    if (bt->map_stale) {
        WITH_RCU_READ_LOCK_GUARD() {
            FlatView *fv = address_space_to_flatview(&address_space_memory);

            for (unsigned i = 0; i < bt->nblocks; i++) {
                BitmapTraceBlock *b = &bt->blocks[i];

                bitmap_zero(b->mapped, b->max_pages);
                g_array_set_size(b->segs, 0);
            }
            flatview_for_each_range(fv, bitmap_trace_map_range, bt);
        }
        bt->map_stale = false;
    }

    bt->sync_us = (t_harvest - t_sync) / SCALE_US;
    bt->harvest_us = (now_ns() - t_harvest) / SCALE_US;
    return true;
}

/*
 * How many of @b's pages can be read: those of the last harvest that the
 * block still has (it may have shrunk since), none if it is gone.  Called
 * with the RCU read lock.
 */
static uint64_t bitmap_trace_readable_pages(BitmapTraceBlock *b)
{
    /* not another block at the same address, allocated since */
    if (b->gone || !bitmap_trace_block_present(b) || !b->rb->host) {
        return 0;
    }
    return MIN(b->used_pages,
               qatomic_read(&b->rb->used_length) >> TARGET_PAGE_BITS);
}

/*
 * Write words [@k0, @k1) of @b->zero: which of the pages of @b->dirty (of
 * every page if @all) among its first @pages hold only zero bytes.  Called
 * with the RCU read lock.
 */
static void bitmap_trace_scan_words(BitmapTraceBlock *b, uint64_t pages,
                                    unsigned long k0, unsigned long k1,
                                    bool all)
{
    for (unsigned long k = k0; k < k1; k++) {
        unsigned long d = k >= BITS_TO_LONGS(pages) ? 0 :
                          all ? ~0UL : b->dirty[k];
        unsigned long z = 0;

        if (k == BITS_TO_LONGS(pages) - 1 && pages % BITS_PER_LONG) {
            d &= BITMAP_LAST_WORD_MASK(pages);
        }
        while (d) {
            unsigned long bit = ctzl(d);
            uint64_t p = k * BITS_PER_LONG + bit;

            d &= d - 1;
            if (buffer_is_zero(b->rb->host + (p << TARGET_PAGE_BITS),
                               TARGET_PAGE_SIZE)) {
                z |= 1UL << bit;
            }
        }
        b->zero[k] = z;
    }
}

/*
 * Of the pages the last sync harvested, find those that hold only zero
 * bytes: pre-copy puts such a page on the wire as a header and one byte
 * (save_zero_page() in migration/ram.c) instead of a header and the page.
 * Like migration's own scan this runs without the BQL while the vCPUs run,
 * so a page is classified by what it holds when it is read, just after its
 * round's sync (a round queued during the baseline's scan: when it is
 * logged).  The RCU read lock keeps a block's memory mapped while it
 * is read; a block unplugged since the sync is not read.
 */
static void bitmap_trace_scan_zero(BitmapTrace *bt)
{
    int64_t t_scan = now_ns();

    WITH_RCU_READ_LOCK_GUARD() {
        for (unsigned i = 0; i < bt->nblocks; i++) {
            BitmapTraceBlock *b = &bt->blocks[i];

            /* one pass, that writes every word of @zero */
            bitmap_trace_scan_words(b, bitmap_trace_readable_pages(b), 0,
                                    BITS_TO_LONGS(b->max_pages), false);
        }
    }
    bt->zero_us = (now_ns() - t_scan) / SCALE_US;
}

static gint bitmap_trace_run_cmp(gconstpointer a, gconstpointer b)
{
    const BitmapTraceRun *x = a, *y = b;

    return x->first < y->first ? -1 : x->first > y->first;
}

static void bitmap_trace_add_run(GArray *runs, uint64_t first, uint64_t n)
{
    BitmapTraceRun run = { .first = first, .npages = n };

    g_array_append_val(runs, run);
}

/* Append "word r r r..." lines, BITMAP_TRACE_RANGES_PER_LINE at a time */
static void bitmap_trace_put_ranges(GString *out, const char *word,
                                    const char *prefix, GArray *runs)
{
    for (guint i = 0; i < runs->len; i++) {
        BitmapTraceRun *r = &g_array_index(runs, BitmapTraceRun, i);

        if (i % BITMAP_TRACE_RANGES_PER_LINE == 0) {
            g_string_append_printf(out, "%s%s", i ? "\n" : "", word);
        }
        g_string_append_printf(out, " %s%" PRIx64, prefix, r->first);
        if (r->npages > 1) {
            g_string_append_printf(out, "-%" PRIx64, r->first + r->npages - 1);
        }
    }
    if (runs->len) {
        g_string_append_c(out, '\n');
    }
}

/*
 * Append the pages set in @bits (a subset of the block's harvested pages)
 * to @runs as PFN runs, through the block's memory map, and, if @unmapped
 * (some of them have no GPA), those with no GPA to @unmapped_runs as runs
 * of block pages.
 */
static void bitmap_trace_block_runs(BitmapTraceBlock *b,
                                    const unsigned long *bits,
                                    GArray *runs, GArray *unmapped_runs,
                                    bool unmapped)
{
    uint64_t p;

    for (guint s = 0; s < b->segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(b->segs,
                                                 BitmapTraceSegment, s);
        uint64_t end = MIN(seg->page + seg->npages, b->used_pages);

        for (p = find_next_bit(bits, end, seg->page); p < end;
             p = find_next_bit(bits, end, p)) {
            uint64_t q = find_next_zero_bit(bits, end, p);

            bitmap_trace_add_run(runs, seg->pfn + (p - seg->page), q - p);
            p = q;
        }
    }
    if (!unmapped) {
        return;
    }

    bitmap_andnot(b->scratch, bits, b->mapped, b->used_pages);
    for (p = find_first_bit(b->scratch, b->used_pages); p < b->used_pages;
         p = find_next_bit(b->scratch, b->used_pages, p)) {
        uint64_t q = find_next_zero_bit(b->scratch, b->used_pages, p);

        bitmap_trace_add_run(unmapped_runs, p, q - p);
        p = q;
    }
}

/*
 * Count a block's pages of the last sync in one pass over its dirty
 * bitmap, skipping the words with none: the dirty ones, the zero ones (a
 * subset), the unmapped ones and, if @measured, those dirtied for the
 * first time in the trace (and remember them).  A round costs O(words of
 * the bitmap), not several passes over it.
 */
static void bitmap_trace_block_counts(BitmapTraceBlock *b, bool measured,
                                      uint64_t *dirty, uint64_t *zero,
                                      uint64_t *unmapped, uint64_t *fresh)
{
    unsigned long nwords = BITS_TO_LONGS(b->used_pages);

    *dirty = *zero = *unmapped = *fresh = 0;
    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long d = b->dirty[k];

        if (!d) {
            continue;
        }
        if (k == nwords - 1 && b->used_pages % BITS_PER_LONG) {
            d &= BITMAP_LAST_WORD_MASK(b->used_pages);
        }
        *dirty += ctpopl(d);
        *zero += ctpopl(b->zero[k] & d);
        *unmapped += ctpopl(d & ~b->mapped[k]);
        if (measured) {
            *fresh += ctpopl(d & ~b->seen[k]);
            b->seen[k] |= d;
        }
    }
}

/* Segments of several blocks interleave in GPA order: sort and merge */
static GArray *bitmap_trace_merge_runs(GArray *runs)
{
    GArray *merged = g_array_new(false, false, sizeof(BitmapTraceRun));

    g_array_sort(runs, bitmap_trace_run_cmp);
    for (guint i = 0; i < runs->len; i++) {
        BitmapTraceRun *r = &g_array_index(runs, BitmapTraceRun, i);
        BitmapTraceRun *last = merged->len ?
            &g_array_index(merged, BitmapTraceRun, merged->len - 1) : NULL;

        if (last && last->first + last->npages == r->first) {
            last->npages += r->npages;
        } else {
            g_array_append_val(merged, *r);
        }
    }
    return merged;
}

/*
 * Translate the harvested pages to PFNs and append iteration @n to @out.
 * Runs without the BQL: it only reads the tracer's own snapshot.
 */
static void bitmap_trace_format_iteration(BitmapTrace *bt, int64_t n,
                                          int64_t t_ns, GString *out,
                                          uint64_t *dirty_out,
                                          uint64_t *fresh_out)
{
    g_autoptr(GArray) runs = g_array_new(false, false, sizeof(BitmapTraceRun));
    g_autoptr(GArray) zero_runs = g_array_new(false, false,
                                              sizeof(BitmapTraceRun));
    g_autoptr(GArray) merged = NULL;
    g_autoptr(GArray) zero_merged = NULL;
    g_autoptr(GString) unmapped_lines = g_string_new(NULL);
    g_autoptr(GString) unmapped_zero_lines = g_string_new(NULL);
    uint64_t dirty = 0, unmapped = 0, zero = 0, fresh = 0;
    int64_t t_us = (t_ns - bt->t0_ns) / SCALE_US;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        g_autoptr(GArray) urun = NULL;
        g_autoptr(GArray) uzero = NULL;
        g_autofree char *prefix = NULL;

        uint64_t bdirty, bzero, bunmapped, bfresh;

        if (b->gone || b->arrived) {
            continue;
        }
        bitmap_trace_block_counts(b, n > 0, &bdirty, &bzero, &bunmapped,
                                  &bfresh);
        dirty += bdirty;
        zero += bzero;
        unmapped += bunmapped;
        fresh += bfresh;
        if (!bdirty) {
            continue;
        }

        urun = g_array_new(false, false, sizeof(BitmapTraceRun));
        uzero = g_array_new(false, false, sizeof(BitmapTraceRun));
        bitmap_trace_block_runs(b, b->dirty, runs, urun, bunmapped);
        if (bzero) {
            bitmap_trace_block_runs(b, b->zero, zero_runs, uzero, bunmapped);
        }
        prefix = g_strdup_printf("%s:", b->idstr);
        bitmap_trace_put_ranges(unmapped_lines, "unmapped", prefix, urun);
        bitmap_trace_put_ranges(unmapped_zero_lines, "unmapped-zero", prefix,
                                uzero);
    }
    merged = bitmap_trace_merge_runs(runs);
    zero_merged = bitmap_trace_merge_runs(zero_runs);

    g_string_append_printf(out, "iter n=%" PRId64 " t-ms=%" PRId64 ".%03d"
                           " dirty=%" PRIu64 " unmapped=%" PRIu64
                           " zero=%" PRIu64 " sync-us=%" PRId64
                           " harvest-us=%" PRId64 " zero-us=%" PRId64 "\n",
                           n, t_us / 1000, (int)(t_us % 1000), dirty,
                           unmapped, zero, bt->sync_us, bt->harvest_us,
                           bt->zero_us);
    bitmap_trace_put_ranges(out, "pfns", "", merged);
    g_string_append(out, unmapped_lines->str);
    bitmap_trace_put_ranges(out, "zero", "", zero_merged);
    g_string_append(out, unmapped_zero_lines->str);

    trace_bitmap_trace_iteration(n, dirty, unmapped, bt->sync_us,
                                 bt->harvest_us, bt->late_ms);
    trace_bitmap_trace_zero_scan(n, zero, bt->zero_us);
    *dirty_out = dirty;
    *fresh_out = fresh;
}

static void bitmap_trace_put_varint(GString *out, uint64_t v)
{
    while (v >= 0x80) {
        g_string_append_c(out, (char)(v | 0x80));
        v >>= 7;
    }
    g_string_append_c(out, (char)v);
}

static void bitmap_trace_put_str(GString *out, const char *str)
{
    size_t len = strlen(str);

    bitmap_trace_put_varint(out, len);
    g_string_append_len(out, str, len);
}

/* Append a record: its type, the length of @payload, @payload */
static void bitmap_trace_put_record(GString *out, char type,
                                    const GString *payload)
{
    g_string_append_c(out, type);
    bitmap_trace_put_varint(out, payload->len);
    g_string_append_len(out, payload->str, payload->len);
}

static void bitmap_trace_put_segs(GString *out, const GArray *segs)
{
    bitmap_trace_put_varint(out, segs->len);
    for (guint s = 0; s < segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(segs, BitmapTraceSegment, s);

        bitmap_trace_put_varint(out, seg->page);
        bitmap_trace_put_varint(out, seg->npages);
        bitmap_trace_put_varint(out, seg->pfn);
    }
}

/*
 * Append the set of pages [0, @npages) of @bits, @count of them, as the
 * cheaper of its runs and its bitmap: an encoding byte, the length of the
 * encoded set and the set.  Runs are varints: for each run, its distance
 * from the end of the run before it (the page after it: the runs are not
 * adjacent), shifted left by one, with bit 0 set when the run is longer
 * than a page; then, if so, its length less two.  The bitmap is
 * little-endian, page p at bit p % 8 of byte p / 8, cut after the byte of
 * the last page in the set.  @tmp is scratch space.
 */
static void bitmap_trace_put_set(GString *out, const unsigned long *bits,
                                 uint64_t npages, uint64_t count,
                                 GString *tmp)
{
    uint64_t bitmap_len, pos = 0, p, q;

    g_string_truncate(tmp, 0);
    if (!count) {
        g_string_append_c(out, BITMAP_TRACE_BIN_RUNS);
        bitmap_trace_put_varint(out, 0);
        return;
    }
    bitmap_len = find_last_bit(bits, npages) / BITS_PER_BYTE + 1;
    for (p = find_first_bit(bits, npages);
         p < npages && tmp->len <= bitmap_len;
         p = find_next_bit(bits, npages, q + 1)) {
        q = find_next_zero_bit(bits, npages, p);
        bitmap_trace_put_varint(tmp, (p - pos) << 1 | (q - p > 1));
        if (q - p > 1) {
            bitmap_trace_put_varint(tmp, q - p - 2);
        }
        pos = q + 1;
        if (q >= npages) {
            break;
        }
    }
    if (tmp->len <= bitmap_len) {
        g_string_append_c(out, BITMAP_TRACE_BIN_RUNS);
        bitmap_trace_put_varint(out, tmp->len);
        g_string_append_len(out, tmp->str, tmp->len);
        return;
    }
    g_string_append_c(out, BITMAP_TRACE_BIN_BITMAP);
    bitmap_trace_put_varint(out, bitmap_len);
    if (HOST_BIG_ENDIAN) {
        for (uint64_t i = 0; i < bitmap_len; i++) {
            g_string_append_c(out, (char)(bits[i / sizeof(long)] >>
                                          (i % sizeof(long) * BITS_PER_BYTE)));
        }
    } else {
        g_string_append_len(out, (const char *)bits, bitmap_len);
    }
}

static void bitmap_trace_encode_header(BitmapTrace *bt, GString *out)
{
    GString *rec = bt->rec;

    g_string_truncate(rec, 0);
    bitmap_trace_put_varint(rec, BITMAP_TRACE_BIN_VERSION);
    bitmap_trace_put_str(rec, QEMU_VERSION);
    bitmap_trace_put_str(rec, bt->accel);
    bitmap_trace_put_varint(rec, TARGET_PAGE_SIZE);
    bitmap_trace_put_varint(rec, bt->period_ms);
    bitmap_trace_put_varint(rec, bt->iterations);
    bitmap_trace_put_str(rec, bt->start_time);
    /*
     * The reasons, one per line.  @enc is scratch space that still holds
     * the last page set the previous trace encoded: empty it first.
     */
    g_string_truncate(bt->enc, 0);
    for (guint i = 0; i < bt->blocked->len; i++) {
        g_string_append_printf(bt->enc, "%s%s", i ? "\n" : "",
                               (char *)g_ptr_array_index(bt->blocked, i));
    }
    bitmap_trace_put_str(rec, bt->enc->str);
    g_string_truncate(bt->enc, 0);
    bt->blocked_logged = bt->blocked->len;
    bitmap_trace_put_varint(rec, bt->nblocks);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        bitmap_trace_put_str(rec, b->idstr);
        bitmap_trace_put_varint(rec, b->pages);
        bitmap_trace_put_segs(rec, b->segs);
        g_array_set_size(b->logged_segs, 0);
        g_array_append_vals(b->logged_segs, b->segs->data, b->segs->len);
        b->logged_used_pages = b->pages;
    }
    g_string_append_len(out, BITMAP_TRACE_BIN_MAGIC,
                        BITMAP_TRACE_BIN_MAGIC_LEN);
    bitmap_trace_put_record(out, BITMAP_TRACE_BIN_HEADER, rec);
}

/*
 * The zero pages of @b's @ndirty dirty pages, as a set of ranks among
 * them, in @b->scratch.  A word at a time: a word with no zero page only
 * moves the rank on, and one of which every page is dirty (the baseline)
 * gives its zero bits as they are, so that the baseline of a big guest
 * costs O(words), not O(pages).
 */
static void bitmap_trace_zero_ranks(BitmapTraceBlock *b, uint64_t ndirty)
{
    unsigned long nwords = BITS_TO_LONGS(b->used_pages);
    uint64_t rank = 0;

    bitmap_zero(b->scratch, ndirty);
    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long d = b->dirty[k];
        unsigned long z;

        if (k == nwords - 1 && b->used_pages % BITS_PER_LONG) {
            d &= BITMAP_LAST_WORD_MASK(b->used_pages);
        }
        z = b->zero[k] & d;
        if (z && d == ~0UL) {
            unsigned long w = BIT_WORD(rank);
            unsigned shift = rank % BITS_PER_LONG;

            b->scratch[w] |= z << shift;
            if (shift && z >> (BITS_PER_LONG - shift)) {
                b->scratch[w + 1] |= z >> (BITS_PER_LONG - shift);
            }
        } else {
            uint64_t r = rank;

            for (unsigned long m = d; z; m &= m - 1, r++) {
                unsigned long bit = m & -m;

                if (z & bit) {
                    set_bit(r, b->scratch);
                    z &= ~bit;
                }
            }
        }
        rank += ctpopl(d);
    }
}

/*
 * The binary twin of bitmap_trace_format_iteration(): the fields of the
 * iter line, then an entry for each block that had pages dirtied or whose
 * map or size changed since the log last said: its index, what changed
 * and how it is now, its dirty pages, and which of them (by their rank
 * among the block's dirty pages) were zero.  Runs without the BQL.
 */
static void bitmap_trace_encode_iteration(BitmapTrace *bt, int64_t n,
                                          int64_t t_ns, GString *out,
                                          uint64_t *dirty_out,
                                          uint64_t *fresh_out)
{
    GString *rec = bt->rec;
    GString *entries = bt->ent;
    uint64_t dirty = 0, unmapped = 0, zero = 0, fresh = 0, nentries = 0;
    int64_t t_us = (t_ns - bt->t0_ns) / SCALE_US;

    g_string_truncate(entries, 0);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        uint64_t bdirty, bzero, bunmapped, bfresh, flags = 0;

        if (b->gone || b->arrived) {
            continue;
        }
        bitmap_trace_block_counts(b, n > 0, &bdirty, &bzero, &bunmapped,
                                  &bfresh);
        dirty += bdirty;
        zero += bzero;
        unmapped += bunmapped;
        fresh += bfresh;

        if (b->used_pages != b->logged_used_pages) {
            flags |= BITMAP_TRACE_BIN_USED;
        }
        /* an empty GArray's data may be NULL, which memcmp may not get */
        if (b->segs->len != b->logged_segs->len ||
            (b->segs->len &&
             memcmp(b->segs->data, b->logged_segs->data,
                    b->segs->len * sizeof(BitmapTraceSegment)))) {
            flags |= BITMAP_TRACE_BIN_MAP;
        }
        if (!bdirty && !flags) {
            continue;
        }
        nentries++;
        bitmap_trace_put_varint(entries, i);
        bitmap_trace_put_varint(entries, flags);
        if (flags & BITMAP_TRACE_BIN_USED) {
            bitmap_trace_put_varint(entries, b->used_pages);
            b->logged_used_pages = b->used_pages;
        }
        if (flags & BITMAP_TRACE_BIN_MAP) {
            bitmap_trace_put_segs(entries, b->segs);
            g_array_set_size(b->logged_segs, 0);
            g_array_append_vals(b->logged_segs, b->segs->data, b->segs->len);
        }
        bitmap_trace_put_set(entries, b->dirty, b->used_pages, bdirty,
                             bt->enc);
        if (bzero) {
            bitmap_trace_zero_ranks(b, bdirty);
        }
        bitmap_trace_put_set(entries, b->scratch, bdirty, bzero, bt->enc);
    }

    g_string_truncate(rec, 0);
    bitmap_trace_put_varint(rec, n);
    bitmap_trace_put_varint(rec, t_us);
    bitmap_trace_put_varint(rec, dirty);
    bitmap_trace_put_varint(rec, unmapped);
    bitmap_trace_put_varint(rec, zero);
    bitmap_trace_put_varint(rec, bt->sync_us);
    bitmap_trace_put_varint(rec, bt->harvest_us);
    bitmap_trace_put_varint(rec, bt->zero_us);
    bitmap_trace_put_varint(rec, nentries);
    g_string_append_len(rec, entries->str, entries->len);
    bitmap_trace_put_record(out, BITMAP_TRACE_BIN_ITER, rec);

    trace_bitmap_trace_iteration(n, dirty, unmapped, bt->sync_us,
                                 bt->harvest_us, bt->late_ms);
    trace_bitmap_trace_zero_scan(n, zero, bt->zero_us);
    *dirty_out = dirty;
    *fresh_out = fresh;
}

/* Iteration @n is in the log: publish its results */
static void bitmap_trace_commit(BitmapTrace *bt, int64_t n, int64_t t_ns,
                                uint64_t dirty, uint64_t fresh)
{
    qemu_mutex_lock(&bt->lock);
    bt->distinct += fresh;
    bt->completed = n;
    bt->elapsed_ms = (t_ns - bt->t0_ns) / SCALE_MS;
    g_array_append_val(bt->dirty_pages, dirty);
    qemu_mutex_unlock(&bt->lock);
}

/*
 * Append @len bytes of @buf to the log.  A regular file is written with
 * pwrite() at the log's length, whatever the offset of the descriptor: one
 * dup'd from an fdset shares its offset with the fdset's own.  Anything
 * else (a FIFO, a socket) was opened non-blocking and is waited for with
 * poll(), but never for longer than BITMAP_TRACE_STALL_MS without taking
 * data, and for at most BITMAP_TRACE_STALL_STOP_MS more once the trace is
 * asked to stop, so that a reader that stopped reading cannot hold up
 * state=false or QEMU's exit.
 */
static bool bitmap_trace_write_buf(BitmapTrace *bt, const char *buf,
                                   size_t len, Error **errp)
{
    int64_t deadline = now_ns() + BITMAP_TRACE_STALL_MS * SCALE_MS;
    bool stopping = false;
    size_t done = 0;

    while (done < len) {
        ssize_t n;

        if (bt->seekable) {
            n = pwrite(bt->fd, buf + done, len - done, bt->log_length + done);
        } else {
            n = write(bt->fd, buf + done, len - done);
        }
        if (n > 0) {
            done += n;
            deadline = now_ns() + BITMAP_TRACE_STALL_MS * SCALE_MS;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = { .fd = bt->fd, .events = POLLOUT };
            int64_t left_ms;

            if (!stopping && qatomic_read(&bt->stop_requested)) {
                stopping = true;
                deadline = MIN(deadline, now_ns() +
                               BITMAP_TRACE_STALL_STOP_MS * SCALE_MS);
            }
            left_ms = DIV_ROUND_UP(deadline - now_ns(), SCALE_MS);
            if (left_ms <= 0) {
                error_setg(errp, "the reader of bitmap-trace log '%s' "
                           "stopped reading: it must read the log as it "
                           "is written, or log to a regular file",
                           bt->filename);
                return false;
            }
            /* wake up now and then to see whether the trace is stopped */
            if (poll(&pfd, 1, MIN(left_ms, 100)) < 0 && errno != EINTR) {
                error_setg_errno(errp, errno, "cannot write bitmap-trace "
                                 "log '%s'", bt->filename);
                return false;
            }
            continue;
        }
        error_setg_errno(errp, n < 0 ? errno : ENOSPC,
                         "cannot write bitmap-trace log '%s'", bt->filename);
        return false;
    }
    return true;
}

/*
 * Write complete records only.  On error, cut a regular file back to the
 * last complete record so that what was written stays a valid log.
 */
static bool bitmap_trace_write(BitmapTrace *bt, GString *out, Error **errp)
{
    bool ok = bitmap_trace_write_buf(bt, out->str, out->len, errp);

    if (ok) {
        bt->log_length += out->len;
    } else if (bt->seekable && ftruncate(bt->fd, bt->log_length) < 0) {
        /* nothing more to do: the error above is what the user sees */
    }
    g_string_truncate(out, 0);
    return ok;
}

/* A block's map as "first-pfn+pages" ranges separated by commas */
static void bitmap_trace_format_map(GString *out, const GArray *segs)
{
    for (guint s = 0; s < segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(segs, BitmapTraceSegment, s);

        g_string_append_printf(out, "%s%" PRIx64 "+%" PRIu64,
                               s ? "," : "", seg->pfn, seg->npages);
    }
}

static void bitmap_trace_format_header(BitmapTrace *bt, GString *out)
{
    g_string_append_printf(out, "bitmap-trace v2\n"
                           "meta qemu=%s accel=%s page-size=%d"
                           " period-ms=%" PRId64 " iterations=%" PRId64
                           " start=%s\n",
                           QEMU_VERSION, bt->accel, (int)TARGET_PAGE_SIZE,
                           bt->period_ms, bt->iterations, bt->start_time);
    for (guint i = 0; i < bt->blocked->len; i++) {
        g_string_append_printf(out, "blocked reason=%s\n",
                               (char *)g_ptr_array_index(bt->blocked, i));
    }
    bt->blocked_logged = bt->blocked->len;
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        g_string_append_printf(out, "block name=%s pages=%" PRIu64 " map=",
                               b->idstr, b->pages);
        bitmap_trace_format_map(out, b->segs);
        g_string_append_c(out, '\n');
    }
}

/*
 * Sleep until @deadline_ns or until asked to stop.
 * Returns true if a stop was requested.
 */
static bool bitmap_trace_wait(BitmapTrace *bt, int64_t deadline_ns)
{
    while (!qatomic_read(&bt->stop_requested)) {
        int64_t left_ms = DIV_ROUND_UP(deadline_ns - now_ns(), SCALE_MS);

        if (left_ms <= 0) {
            return false;
        }
        qemu_sem_timedwait(&bt->wakeup, left_ms);
    }
    return true;
}

static void bitmap_trace_put_header(BitmapTrace *bt, GString *out)
{
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        bitmap_trace_encode_header(bt, out);
    } else {
        bitmap_trace_format_header(bt, out);
    }
}

/*
 * After an iteration, what its sync found changed: the blocks that
 * arrived (their baseline: size, map and zero pages), those that went
 * away, and new migration blockers (of @bt->blocked, up to the first
 * @blocked: those found by the iteration's sync).
 */
static void bitmap_trace_put_changes(BitmapTrace *bt, GString *out,
                                     guint blocked)
{
    bool binary = bt->format == BITMAP_TRACE_FORMAT_BINARY;
    GString *rec = bt->rec;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        uint64_t dirty, zero, unmapped, fresh;

        if (!b->arrived) {
            continue;
        }
        /* the sync that finds a block gone comes after this is logged */
        b->arrived = false;
        bitmap_trace_block_counts(b, false, &dirty, &zero, &unmapped, &fresh);
        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_str(rec, b->idstr);
            bitmap_trace_put_varint(rec, b->pages);
            bitmap_trace_put_varint(rec, zero);
            bitmap_trace_put_segs(rec, b->segs);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_ADDED, rec);
            g_array_set_size(b->logged_segs, 0);
            g_array_append_vals(b->logged_segs, b->segs->data, b->segs->len);
            b->logged_used_pages = b->pages;
        } else {
            g_string_append_printf(out, "added name=%s pages=%" PRIu64
                                   " zero=%" PRIu64 " map=", b->idstr,
                                   b->pages, zero);
            bitmap_trace_format_map(out, b->segs);
            g_string_append_c(out, '\n');
        }
    }
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        if (!b->removed) {
            continue;
        }
        b->removed = false;
        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_varint(rec, i);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_REMOVED, rec);
        } else {
            g_string_append_printf(out, "removed name=%s\n", b->idstr);
        }
    }
    for (; bt->blocked_logged < blocked; bt->blocked_logged++) {
        const char *reason = g_ptr_array_index(bt->blocked,
                                               bt->blocked_logged);

        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_str(rec, reason);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_BLOCKED, rec);
        } else {
            g_string_append_printf(out, "blocked reason=%s\n", reason);
        }
    }
}

static void bitmap_trace_put_iteration(BitmapTrace *bt, int64_t n,
                                       int64_t t_ns, guint blocked,
                                       GString *out, uint64_t *dirty,
                                       uint64_t *fresh)
{
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        bitmap_trace_encode_iteration(bt, n, t_ns, out, dirty, fresh);
    } else {
        bitmap_trace_format_iteration(bt, n, t_ns, out, dirty, fresh);
    }
    bitmap_trace_put_changes(bt, out, blocked);
}

/* The end record; @error (for status failed) has no newline */
static void bitmap_trace_put_end(BitmapTrace *bt, GString *out,
                                 BitmapTraceStatus status, const char *error)
{
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        GString *rec = bt->rec;

        g_string_truncate(rec, 0);
        bitmap_trace_put_str(rec, BitmapTraceStatus_str(status));
        bitmap_trace_put_varint(rec, bt->completed);
        if (error) {
            bitmap_trace_put_str(rec, error);
        }
        bitmap_trace_put_record(out, BITMAP_TRACE_BIN_END, rec);
        return;
    }
    g_string_append_printf(out, "end status=%s iterations=%" PRId64 "%s%s\n",
                           BitmapTraceStatus_str(status), bt->completed,
                           error ? " error=" : "", error ? error : "");
}

static void bitmap_trace_end_bh(void *opaque);

/*
 * Rounds taken while the baseline is being scanned
 *
 * The baseline's zero scan reads every page of the guest, which takes
 * longer than a period on a big one (a quarter of a second for 16 GiB).
 * The rounds that fall due meanwhile are taken on time, between slices of
 * the scan, and kept (the dirty bitmap words they harvested, as sparse
 * (block, word, bits) triples) until the baseline is in the log; then each
 * is scanned for zero pages and logged in turn, while the rounds that
 * fall due meanwhile are still queued.  A queued round translates
 * its pages with the baseline's map and logs nothing but its pages, so
 * rounds are queued only while the RAM blocks, their sizes and the memory
 * map stay as the baseline found them; the blockers a queued round finds
 * are logged after it.  Past that, or once the queue holds
 * BITMAP_TRACE_QUEUE_BYTES (checked before a round is taken), the rounds
 * due wait until the scan and the rounds queued are done, and are late.
 */
typedef struct BitmapTraceWord {
    unsigned block;
    unsigned long index;
    unsigned long bits;
} BitmapTraceWord;

/* A round taken: when, and what its sync measured */
typedef struct BitmapTraceRound {
    int64_t t_lock;             /* when it asked for the BQL */
    int64_t t_ns;               /* its sync, under the BQL */
    int64_t t_unlocked;         /* when it let the BQL go */
    int64_t sync_us;
    int64_t harvest_us;
    int64_t late_ms;
    guint blocked;              /* of @blocked, how many it had found */
} BitmapTraceRound;

typedef struct BitmapTraceQueued {
    BitmapTraceRound round;
    GArray *words;              /* BitmapTraceWord, the non-zero ones */
} BitmapTraceQueued;

typedef struct BitmapTraceQueue {
    GArray *rounds;             /* BitmapTraceQueued, oldest first */
    guint logged;               /* of @rounds, how many are in the log */
    size_t bytes;               /* of the words of those not logged */
    bool open;                  /* rounds may still be queued */
} BitmapTraceQueue;

static void bitmap_trace_queued_clear(gpointer data)
{
    BitmapTraceQueued *q = data;

    if (q->words) {
        g_array_free(q->words, true);
    }
}

/*
 * Take the round due at @deadline into @r, from the trace thread, and move
 * @deadline on to the next one.  With @if_unchanged, one that would find
 * the blocks or the map changed is not taken: returns false.
 */
static bool bitmap_trace_take_round(BitmapTrace *bt, int64_t *deadline,
                                    bool if_unchanged, BitmapTraceRound *r)
{
    r->t_lock = now_ns();
    bql_lock();
    r->t_ns = now_ns();
    if (!bitmap_trace_sync(bt, false, if_unchanged)) {
        bql_unlock();
        return false;
    }
    r->blocked = bt->blocked->len;
    /* before: unlocking may hand the BQL to a thread that preempts us */
    r->t_unlocked = now_ns();
    bql_unlock();
    r->sync_us = bt->sync_us;
    r->harvest_us = bt->harvest_us;
    r->late_ms = (r->t_ns - *deadline) / SCALE_MS;
    /*
     * A round more than half a period late (a busy host, a baseline that
     * could not queue its rounds) starts the deadlines again from itself:
     * the rounds it missed are skipped, not run back to back, each with a
     * window of next to nothing and a pause of its own.
     */
    if (2 * (r->t_ns - *deadline) > bt->period_ms * SCALE_MS) {
        *deadline = r->t_ns;
    }
    *deadline += bt->period_ms * SCALE_MS;
    return true;
}

/*
 * If the round due at @deadline is due, take it and queue it.  Once one
 * cannot be queued, none is any more.
 */
static void bitmap_trace_queue_round(BitmapTrace *bt, int64_t *deadline,
                                     BitmapTraceQueue *queue)
{
    BitmapTraceQueued q = { 0 };

    if (!queue->open || now_ns() < *deadline) {
        return;
    }
    if (queue->rounds->len >= bt->iterations ||
        queue->bytes >= BITMAP_TRACE_QUEUE_BYTES ||
        qatomic_read(&bt->stop_requested) ||
        !bitmap_trace_take_round(bt, deadline, true, &q.round)) {
        queue->open = false;
        return;
    }

    q.words = g_array_new(false, false, sizeof(BitmapTraceWord));
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        for (unsigned long k = 0; !b->gone && k < BITS_TO_LONGS(b->used_pages);
             k++) {
            if (b->dirty[k]) {
                BitmapTraceWord w = { i, k, b->dirty[k] };

                g_array_append_val(q.words, w);
            }
        }
    }
    queue->bytes += q.words->len * sizeof(BitmapTraceWord);
    g_array_append_val(queue->rounds, q);
}

/* Put the dirty pages a queued round harvested back in the blocks */
static void bitmap_trace_unqueue(BitmapTrace *bt, BitmapTraceQueue *queue,
                                 BitmapTraceQueued *q)
{
    for (unsigned i = 0; i < bt->nblocks; i++) {
        bitmap_zero(bt->blocks[i].dirty, bt->blocks[i].max_pages);
    }
    for (guint j = 0; j < q->words->len; j++) {
        BitmapTraceWord *w = &g_array_index(q->words, BitmapTraceWord, j);

        bt->blocks[w->block].dirty[w->index] = w->bits;
    }
    queue->bytes -= q->words->len * sizeof(BitmapTraceWord);
    g_array_free(q->words, true);
    q->words = NULL;
}

/*
 * The baseline's zero scan: bitmap_trace_scan_zero() of every page the
 * baseline took, a slice at a time, taking the rounds that fall due from
 * @deadline on in between into @queue.  It does not read @dirty, which
 * those rounds overwrite, and leaves it as the baseline had it.
 */
static void bitmap_trace_scan_baseline(BitmapTrace *bt, int64_t *deadline,
                                       BitmapTraceQueue *queue)
{
    /* the baseline's own, which the rounds' syncs overwrite */
    int64_t sync_us = bt->sync_us, harvest_us = bt->harvest_us;
    int64_t scan_ns = 0;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        unsigned long nwords = BITS_TO_LONGS(b->max_pages);

        for (unsigned long k0 = 0; k0 < nwords;
             k0 += BITMAP_TRACE_SCAN_WORDS) {
            unsigned long k1 = MIN(k0 + BITMAP_TRACE_SCAN_WORDS, nwords);
            int64_t t_slice;

            bitmap_trace_queue_round(bt, deadline, queue);
            t_slice = now_ns();
            WITH_RCU_READ_LOCK_GUARD() {
                bitmap_trace_scan_words(b, bitmap_trace_readable_pages(b),
                                        k0, k1, true);
            }
            scan_ns += now_ns() - t_slice;
        }
    }
    bt->zero_us = scan_ns / SCALE_US;
    bt->sync_us = sync_us;
    bt->harvest_us = harvest_us;

    /* the baseline's pages: every page, as the QMP handler set them */
    if (queue->rounds->len) {
        for (unsigned i = 0; i < bt->nblocks; i++) {
            BitmapTraceBlock *b = &bt->blocks[i];

            bitmap_zero(b->dirty, b->max_pages);
            bitmap_set(b->dirty, 0, b->used_pages);
        }
    }
}

/*
 * Log round @n, @r, whose pages are in the blocks' @dirty; false on a
 * write error
 */
static bool bitmap_trace_log_round(BitmapTrace *bt, int64_t n,
                                   const BitmapTraceRound *r, GString *out,
                                   Error **errp)
{
    int64_t t_encode, t_write;
    uint64_t dirty, fresh;
    size_t bytes;

    bt->sync_us = r->sync_us;
    bt->harvest_us = r->harvest_us;
    bt->late_ms = r->late_ms;
    bitmap_trace_scan_zero(bt);
    t_encode = now_ns();
    bitmap_trace_put_iteration(bt, n, r->t_ns, r->blocked, out, &dirty,
                               &fresh);
    bytes = out->len;
    t_write = now_ns();
    if (!bitmap_trace_write(bt, out, errp)) {
        return false;
    }
    trace_bitmap_trace_round(n, (r->t_ns - r->t_lock) / SCALE_US,
                             (r->t_unlocked - r->t_ns) / SCALE_US,
                             (t_write - t_encode) / SCALE_US,
                             (now_ns() - t_write) / SCALE_US, bytes);
    bitmap_trace_commit(bt, n, r->t_ns, dirty, fresh);
    return true;
}

static void *bitmap_trace_thread(void *opaque)
{
    BitmapTrace *bt = opaque;
    g_autoptr(GString) out = g_string_new(NULL);
    g_autoptr(GArray) queued = g_array_new(false, false,
                                           sizeof(BitmapTraceQueued));
    BitmapTraceQueue queue = { .rounds = queued, .open = true };
    BitmapTraceStatus status = BITMAP_TRACE_STATUS_COMPLETED;
    Error *err = NULL;
    uint64_t dirty, fresh;
    int64_t n = 1, deadline = bt->t0_ns + bt->period_ms * SCALE_MS;
    guint blocked;

    rcu_register_thread();
    g_array_set_clear_func(queued, bitmap_trace_queued_clear);
    bt->late_ms = 0;

    /* The QMP handler took the baseline: write it first */
    bitmap_trace_put_header(bt, out);
    blocked = bt->blocked->len;
    bitmap_trace_scan_baseline(bt, &deadline, &queue);
    bitmap_trace_put_iteration(bt, 0, bt->t0_ns, blocked, out, &dirty, &fresh);
    if (bitmap_trace_write(bt, out, &err)) {
        bitmap_trace_commit(bt, 0, bt->t0_ns, dirty, fresh);
    }
    /* the rounds that fall due while these are logged are queued too */
    for (; !err && queue.logged < queued->len; queue.logged++, n++) {
        BitmapTraceQueued *q;

        bitmap_trace_queue_round(bt, &deadline, &queue);
        q = &g_array_index(queued, BitmapTraceQueued, queue.logged);
        bitmap_trace_unqueue(bt, &queue, q);
        bitmap_trace_log_round(bt, n, &q->round, out, &err);
    }
    g_array_set_size(queued, 0);

    for (; !err && n <= bt->iterations; n++) {
        bool stop = bitmap_trace_wait(bt, deadline);
        BitmapTraceRound r;

        bitmap_trace_take_round(bt, &deadline, false, &r);
        if (!bitmap_trace_log_round(bt, n, &r, out, &err)) {
            break;
        }
        if (stop) {
            status = BITMAP_TRACE_STATUS_CANCELLED;
            break;
        }
    }

    bql_lock();
    memory_listener_unregister(&bt->map_listener);
    memory_global_dirty_log_stop(GLOBAL_DIRTY_TRACE);
    migrate_del_blocker(&bt_blocker);
    bql_unlock();

    if (err) {
        /*
         * Best effort: the file failed once already.  Without its header
         * there is no log to end.
         */
        g_autofree char *msg = g_strdelimit(g_strdup(error_get_pretty(err)),
                                            "\n", ' ');

        status = BITMAP_TRACE_STATUS_FAILED;
        /* a stream may end inside a record: nothing can follow it */
        if (bt->log_length && bt->seekable) {
            bitmap_trace_put_end(bt, out, status, msg);
            bitmap_trace_write(bt, out, NULL);
        }
    } else {
        bitmap_trace_put_end(bt, out, status, NULL);
        if (!bitmap_trace_write(bt, out, &err)) {
            status = BITMAP_TRACE_STATUS_FAILED;
        }
    }
    /* qemu_close() also releases a descriptor dup'd from an fdset */
    if (qemu_close(bt->fd) < 0 && !err) {
        error_setg_errno(&err, errno, "cannot close bitmap-trace log '%s'",
                         bt->filename);
        status = BITMAP_TRACE_STATUS_FAILED;
    }
    bt->fd = -1;

    /*
     * The main loop publishes the end, so that the status, the event and
     * the results on HMP change together, under the BQL.
     */
    bt->end_status = status;
    bt->end_error = err ? g_strdup(error_get_pretty(err)) : NULL;
    qatomic_set(&bt->end_pending, true);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), bitmap_trace_end_bh, bt);
    /* From here on the thread takes no lock: it can be joined under BQL */
    error_free(err);
    rcu_unregister_thread();
    return NULL;
}

/*
 * Publish the end of the trace whose thread has finished: its status for
 * query-bitmap-trace, BITMAP_TRACE_COMPLETED, and its results on the HMP
 * monitors.  Called in the main loop with the BQL held, from the thread's
 * bottom half or, at exit, after the thread was joined.
 */
static void bitmap_trace_end(BitmapTrace *bt)
{
    g_autoptr(BitmapTraceInfo) info = NULL;
    g_autoptr(GString) out = g_string_new(NULL);

    if (!qatomic_xchg(&bt->end_pending, false)) {
        return;
    }
    qemu_mutex_lock(&bt->lock);
    bt->status = bt->end_status;
    bt->error = g_steal_pointer(&bt->end_error);
    qemu_mutex_unlock(&bt->lock);

    trace_bitmap_trace_stop(bt->completed, BitmapTraceStatus_str(bt->status));
    qapi_event_send_bitmap_trace_completed(bt->status, bt->completed,
                                           bt->error);

    /* A trace started over QMP or with -d would otherwise end unseen */
    info = qmp_query_bitmap_trace(false, 0, NULL);
    bitmap_trace_format_results(out, info, BITMAP_TRACE_NOTICE_ROWS);
    monitor_hmp_notice(out->str);
}

static void bitmap_trace_end_bh(void *opaque)
{
    bitmap_trace_end(opaque);
}

void bitmap_trace_format_results(GString *out, const BitmapTraceInfo *info,
                                 int64_t max_rows)
{
    uint64_t min = UINT64_MAX, max = 0, sum = 0;
    int64_t rows = info->completed_iterations + 1;
    int64_t half = max_rows / 2;
    uint64List *p;
    int64_t i = 0;

    g_string_append_printf(out, "bitmap-trace: %s\n",
                           BitmapTraceStatus_str(info->status));
    if (!info->has_dirty_pages) {
        return;
    }
    g_string_append_printf(out, "file: %s\n", info->filename);
    g_string_append_printf(out, "iterations: %" PRId64 " of %" PRId64
                           ", period: %" PRId64 " ms, page size: %" PRId64
                           "\n", info->completed_iterations,
                           info->iterations, info->period, info->page_size);
    if (info->error_desc) {
        g_string_append_printf(out, "error: %s\n", info->error_desc);
    }
    g_string_append_printf(out, "%9s  %12s\n", "iteration", "dirty pages");
    for (p = info->dirty_pages; p; p = p->next, i++) {
        if (max_rows > 0 && rows > max_rows && i >= half && i < rows - half) {
            if (i == half) {
                g_string_append_printf(out, "%9s  (%" PRId64 " more "
                                       "iterations: info bitmap_trace, or "
                                       "the log)\n", "...",
                                       rows - 2 * half);
            }
        } else {
            g_string_append_printf(out, "%9" PRId64 "  %12" PRIu64 "%s\n",
                                   i, p->value,
                                   i ? "" : "  (baseline: all pages)");
        }
        if (i) {
            min = MIN(min, p->value);
            max = MAX(max, p->value);
            sum += p->value;
        }
    }
    g_string_append_printf(out, "distinct pages dirtied: %" PRIu64
                           " (%.1f MiB)\n", info->distinct_pages,
                           (double)info->distinct_pages * info->page_size /
                           MiB);
    if (info->completed_iterations > 0) {
        g_string_append_printf(out, "dirty pages per iteration: min %" PRIu64
                               ", mean %.1f, max %" PRIu64 "\n", min,
                               (double)sum / info->completed_iterations, max);
    }
    if (info->completed_iterations > 0 && info->elapsed_ms > 0) {
        g_string_append_printf(out, "dirty rate: %.2f MiB/s\n",
                               (double)sum * info->page_size / MiB /
                               (info->elapsed_ms / 1000.0));
    } else if (info->completed_iterations > 0) {
        g_string_append(out, "dirty rate: unknown, the trace lasted less "
                        "than 1 ms\n");
    }
}

static BitmapTraceStatus bitmap_trace_status(BitmapTrace *bt)
{
    BitmapTraceStatus status;

    if (!bt->dirty_pages) {
        return BITMAP_TRACE_STATUS_NONE;    /* no trace yet, no lock yet */
    }
    qemu_mutex_lock(&bt->lock);
    status = bt->status;
    qemu_mutex_unlock(&bt->lock);
    return status;
}

/* Join a trace thread that has ended.  Called with the BQL held. */
static void bitmap_trace_join(BitmapTrace *bt)
{
    if (bt->thread_created) {
        assert(bitmap_trace_status(bt) != BITMAP_TRACE_STATUS_ACTIVE);
        qemu_thread_join(&bt->thread);
        bt->thread_created = false;
    }
}

static bool bitmap_trace_check_args(const char *filename,
                                    int64_t iterations, int64_t period,
                                    Error **errp)
{
    if (!filename) {
        error_setg(errp, "Parameter 'filename' is required to start a "
                   "bitmap-trace");
        return false;
    }
    if (iterations < BITMAP_TRACE_ITERATIONS_MIN ||
        iterations > BITMAP_TRACE_ITERATIONS_MAX) {
        error_setg(errp, "Parameter 'iterations' must be in the range "
                   "%d-%d, got %" PRId64, BITMAP_TRACE_ITERATIONS_MIN,
                   BITMAP_TRACE_ITERATIONS_MAX, iterations);
        return false;
    }
    if (period < BITMAP_TRACE_PERIOD_MIN || period > BITMAP_TRACE_PERIOD_MAX) {
        error_setg(errp, "Parameter 'period' must be in the range %d-%d "
                   "(milliseconds), got %" PRId64, BITMAP_TRACE_PERIOD_MIN,
                   BITMAP_TRACE_PERIOD_MAX, period);
        return false;
    }
    return true;
}

/*
 * Create or truncate the log.  The open does not block, so that a FIFO
 * with no reader fails here instead of freezing the main loop, which runs
 * the QMP handler.  Anything but a regular file stays non-blocking and is
 * written as bitmap_trace_write_buf() says.
 */
static int bitmap_trace_open(const char *filename, bool *seekable,
                             Error **errp)
{
    Error *local_err = NULL;
    struct stat st;
    int fd;

    fd = qemu_create(filename, O_WRONLY | O_TRUNC | O_BINARY | O_NONBLOCK,
                     0600, &local_err);
    if (fd < 0) {
        if (errno == ENXIO && stat(filename, &st) == 0 &&
            S_ISFIFO(st.st_mode)) {
            error_free(local_err);
            error_setg(errp, "bitmap-trace log '%s' is a FIFO with no "
                       "reader: start the reader first", filename);
        } else {
            error_propagate(errp, local_err);
        }
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        error_setg_errno(errp, errno, "cannot stat bitmap-trace log '%s'",
                         filename);
        qemu_close(fd);
        return -1;
    }
    *seekable = S_ISREG(st.st_mode);
    return fd;
}

static void bitmap_trace_start(const char *filename, BitmapTraceFormat format,
                               int64_t iterations, int64_t period,
                               Error **errp)
{
    ERRP_GUARD();
    BitmapTrace *bt = &bt_state;
    g_autoptr(GDateTime) start = NULL;
    bool seekable;
    int fd;

    if (!bitmap_trace_check_args(filename, iterations, period, errp)) {
        return;
    }
    if (bitmap_trace_status(bt) == BITMAP_TRACE_STATUS_ACTIVE) {
        error_setg(errp, "A bitmap-trace to '%s' is already active; stop it "
                   "with state=false first", bt->filename);
        return;
    }
    if (runstate_check(RUN_STATE_INMIGRATE) || migration_is_running() ||
        runstate_check(RUN_STATE_SAVE_VM) ||
        (global_dirty_tracking & GLOBAL_DIRTY_MIGRATION)) {
        error_setg(errp, "bitmap-trace cannot run while a migration or "
                   "snapshot is in progress");
        return;
    }
    /* A postcopy destination runs while pages still arrive, unlogged */
    if (migration_incoming_postcopy_advised()) {
        error_setg(errp, "bitmap-trace cannot run on the destination of a "
                   "postcopy migration: wait until the migration completes");
        return;
    }

    /* They would see the trace's rounds as guest writes; see dirtyrate.c */
    if (dirtyrate_dirty_logging_active()) {
        error_setg(errp, "bitmap-trace cannot run while calc-dirty-rate "
                   "measures with dirty logging: wait until "
                   "query-dirty-rate reports it measured");
        return;
    }
    if (dirtylimit_in_service()) {
        error_setg(errp, "bitmap-trace cannot run while a dirty page rate "
                   "limit is set: remove it with cancel-vcpu-dirty-limit "
                   "first");
        return;
    }

    /* A trace that took dirty bits from a live migration would corrupt it */
    if (!bt_blocker) {
        error_setg(&bt_blocker, "Live migration disabled: bitmap-trace in "
                   "progress");
    }
    if (migrate_add_blocker_internal(&bt_blocker, errp) < 0) {
        return;
    }
    if (!memory_global_dirty_log_start(GLOBAL_DIRTY_TRACE, errp)) {
        error_prepend(errp, "bitmap-trace cannot start dirty logging: ");
        migrate_del_blocker(&bt_blocker);
        return;
    }
    /* Only now, with nothing left to fail, create or truncate the file */
    fd = bitmap_trace_open(filename, &seekable, errp);
    if (fd < 0) {
        memory_global_dirty_log_stop(GLOBAL_DIRTY_TRACE);
        migrate_del_blocker(&bt_blocker);
        return;
    }

    /* The last trace has ended: join it and drop its results */
    bitmap_trace_join(bt);
    bitmap_trace_free_blocks(bt);
    g_free(bt->filename);
    g_free(bt->start_time);
    if (bt->blocked) {
        g_ptr_array_set_size(bt->blocked, 0);
    } else {
        bt->blocked = g_ptr_array_new_with_free_func(g_free);
    }
    bt->blocked_logged = 0;
    g_clear_pointer(&bt->error, g_free);
    if (bt->dirty_pages) {
        g_array_free(bt->dirty_pages, true);
    } else {
        qemu_mutex_init(&bt->lock);
        qemu_sem_init(&bt->wakeup, 0);
    }
    while (!qemu_sem_timedwait(&bt->wakeup, 0)) {
        /* drain posts left by the last trace */
    }

    start = g_date_time_new_now_utc();
    bt->filename = g_strdup(filename);
    bt->fd = fd;
    bt->format = format;
    if (!bt->rec) {
        /* kept from trace to trace: a round allocates nothing */
        bt->rec = g_string_new(NULL);
        bt->enc = g_string_new(NULL);
        bt->ent = g_string_new(NULL);
    }
    bt->seekable = seekable;
    bt->iterations = iterations;
    bt->period_ms = period;
    bt->accel = bitmap_trace_accel();
    bt->start_time = g_date_time_format_iso8601(start);
    bt->dirty_pages = g_array_new(false, false, sizeof(uint64_t));
    bt->completed = 0;
    bt->elapsed_ms = 0;
    bt->distinct = 0;
    bt->log_length = 0;
    qatomic_set(&bt->stop_requested, false);

    /*
     * The baseline: every guest write after this command returns is caught
     * by a later iteration.  Iteration 0 stands for pre-copy's bulk round
     * and lists every page, whatever bits were pending.
     */
    WITH_RCU_READ_LOCK_GUARD() {
        bitmap_trace_init_blocks(bt);
    }
    bt->map_listener = (MemoryListener) {
        .name = "bitmap-trace",
        .commit = bitmap_trace_map_changed,
    };
    memory_listener_register(&bt->map_listener, &address_space_memory);
    bt->map_stale = true;
    bt->t0_ns = now_ns();
    bitmap_trace_sync(bt, true, false);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        bitmap_set(b->dirty, 0, b->used_pages);
    }

    qemu_mutex_lock(&bt->lock);
    bt->status = BITMAP_TRACE_STATUS_ACTIVE;
    qemu_mutex_unlock(&bt->lock);
    trace_bitmap_trace_start(filename, iterations, period, bt->accel);
    qemu_thread_create(&bt->thread, MIGRATION_THREAD_BITMAP_TRACE,
                       bitmap_trace_thread, bt, QEMU_THREAD_JOINABLE);
    bt->thread_created = true;
}

void qmp_bitmap_trace(bool state, const char *filename,
                      bool has_format, BitmapTraceFormat format,
                      bool has_iterations, int64_t iterations,
                      bool has_period, int64_t period, Error **errp)
{
    BitmapTrace *bt = &bt_state;

    if (state) {
        bitmap_trace_start(filename,
                           has_format ? format : BITMAP_TRACE_FORMAT_TEXT,
                           has_iterations ? iterations
                                          : BITMAP_TRACE_ITERATIONS_DEFAULT,
                           has_period ? period : BITMAP_TRACE_PERIOD_DEFAULT,
                           errp);
    } else if (bitmap_trace_status(bt) == BITMAP_TRACE_STATUS_ACTIVE) {
        /* the thread takes a last iteration and ends as cancelled */
        qatomic_set(&bt->stop_requested, true);
        qemu_sem_post(&bt->wakeup);
    }
}

BitmapTraceInfo *qmp_query_bitmap_trace(bool has_since, int64_t since,
                                        Error **errp)
{
    BitmapTrace *bt = &bt_state;
    BitmapTraceInfo *info = g_new0(BitmapTraceInfo, 1);
    int64_t first;

    if (!bt->dirty_pages) {
        info->status = BITMAP_TRACE_STATUS_NONE;
        return info;
    }

    qemu_mutex_lock(&bt->lock);
    info->status = bt->status;
    info->filename = g_strdup(bt->filename);
    info->has_format = true;
    info->format = bt->format;
    info->has_iterations = true;
    info->iterations = bt->iterations;
    info->has_period = true;
    info->period = bt->period_ms;
    info->has_page_size = true;
    info->page_size = TARGET_PAGE_SIZE;
    info->completed_iterations = bt->completed;
    info->has_elapsed_ms = true;
    info->elapsed_ms = bt->elapsed_ms;
    info->has_distinct_pages = true;
    info->distinct_pages = bt->distinct;
    info->has_dirty_pages = true;
    /* only what a poller has not seen yet: O(new iterations), not O(all) */
    first = has_since ? MIN(MAX(since, 0), bt->dirty_pages->len) : 0;
    if (has_since) {
        info->has_since = true;
        info->since = first;
    }
    for (int64_t i = (int64_t)bt->dirty_pages->len - 1; i >= first; i--) {
        QAPI_LIST_PREPEND(info->dirty_pages,
                          g_array_index(bt->dirty_pages, uint64_t, i));
    }
    if (bt->completed > 0) {
        info->has_last_dirty_pages = true;
        info->last_dirty_pages = g_array_index(bt->dirty_pages, uint64_t,
                                               bt->dirty_pages->len - 1);
    }
    info->error_desc = g_strdup(bt->error);
    qemu_mutex_unlock(&bt->lock);
    return info;
}

void bitmap_trace_shutdown(void)
{
    BitmapTrace *bt = &bt_state;

    if (!bt->thread_created) {
        return;
    }
    qatomic_set(&bt->stop_requested, true);
    qemu_sem_post(&bt->wakeup);
    /* the thread needs the BQL for its last sync */
    bql_unlock();
    qemu_thread_join(&bt->thread);
    bql_lock();
    bt->thread_created = false;
    /* the main loop is done: publish the end here */
    bitmap_trace_end(bt);
}
