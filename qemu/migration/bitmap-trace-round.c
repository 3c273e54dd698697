/*
 * bitmap-trace: one round
 *
 * The RAM blocks a trace follows and the memory map their pages are
 * translated with; holding the vCPUs out of guest code while a round
 * takes its pages; the sync, the harvest into the tracer's own bitmaps and
 * the re-arming of dirty tracking; the scan for zero pages; and what a
 * round counts.  The sync runs with the BQL held, from the main loop (the
 * baseline) or the trace thread; the zero scan and the counts run in the
 * trace thread without it.  Each function says what it needs.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/rcu_queue.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "bitmap-trace-int.h"
#include "exec/target_page.h"
#include "hw/core/cpu.h"
#include "migration/misc.h"
#include "system/cpus.h"
#include "system/kvm.h"
#include "system/replay.h"
#include "system/tcg.h"
#include "ram.h"
#include "trace.h"

/*
 * The chunk tracking is re-armed by, in words of the dirty bitmap: 16384
 * pages, 64 MiB of 4 KiB pages (a multiple of KVM_CLEAR_DIRTY_LOG's
 * 64-page alignment)
 */
#define BITMAP_TRACE_REARM_WORDS        256

/*
 * A zero scan of a block with a RamDiscardManager holds the BQL for this
 * many words of its bitmap at a time: 2048 pages, 8 MiB of 4 KiB pages
 */
#define BITMAP_TRACE_PLUG_SCAN_WORDS    32

/* Called with the BQL held, when no trace thread runs */
void bitmap_trace_free_blocks(BitmapTrace *bt)
{
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        g_free(b->idstr);
        g_free(b->dirty);
        g_free(b->seen);
        g_free(b->mapped);
        g_free(b->zero);
        g_free(b->scratch);
        g_free(b->plugged);
        g_free(b->plug_query);
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
void bitmap_trace_init_blocks(BitmapTrace *bt)
{
    RAMBlock *rb;

    RAMBLOCK_FOREACH_NOT_IGNORED(rb) {
        bitmap_trace_add_block(bt, rb);
    }
}

/*
 * Is the traced block @b still there, and one migration would send?  A
 * RAMBlock freed during the trace (memory unplug) may have its memory
 * reused by one added later, so its address is not enough; and one that
 * migration no longer sends (a virtio-mem device unplugged: its memdev
 * stays, no longer migratable) has left the trace too.  Called with the
 * RCU read lock.
 */
static bool bitmap_trace_block_present(BitmapTraceBlock *b)
{
    RAMBlock *rb;

    RAMBLOCK_FOREACH_NOT_IGNORED(rb) {
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
 * Discarded memory
 *
 * A RAM block whose memory region has a RamDiscardManager (the memdev of a
 * virtio-mem device) is memory only where the manager says it is
 * populated: the rest is unplugged, discarded on the host, and holds no
 * guest data.  Migration neither sends nor reads it
 * (ramblock_dirty_bitmap_clear_discarded_pages()): reading it would
 * allocate host memory for it again (memfd, shmem), or raise SIGBUS and
 * kill the VM (hugetlbfs with no free huge page).  Nor does the tracer:
 * each sync asks the manager which pages are plugged, keeps them in
 * @plugged and drops every other page from the round; the zero scan asks
 * again under the BQL, which every plug and unplug holds, just before it
 * reads a page.  The manager answers in O(plugged ranges), so a round
 * costs no more than it did.
 */

static int bitmap_trace_plugged_range(MemoryRegionSection *s, void *opaque)
{
    unsigned long *bits = opaque;

    bitmap_set(bits, s->offset_within_region >> TARGET_PAGE_BITS,
               int128_get64(s->size) >> TARGET_PAGE_BITS);
    return 0;
}

/*
 * Set in @bits pages [@first, @first + @n) of @b that are plugged now, and
 * clear the others of them.  @b has a RamDiscardManager.  Called with the
 * BQL held (which plug and unplug hold) and the RCU read lock, while @b is
 * present.
 */
static void bitmap_trace_query_plugged(BitmapTraceBlock *b,
                                       unsigned long *bits, uint64_t first,
                                       uint64_t n)
{
    MemoryRegion *mr = b->rb->mr;
    RamDiscardManager *rdm = memory_region_get_ram_discard_manager(mr);
    MemoryRegionSection s = {
        .mr = mr,
        .offset_within_region = first << TARGET_PAGE_BITS,
        .size = int128_make64(n << TARGET_PAGE_BITS),
    };

    bitmap_clear(bits, first, n);
    /* a manager gone since the sync (device unplug): read nothing */
    if (n && rdm) {
        ram_discard_manager_replay_populated(rdm, &s,
                                             bitmap_trace_plugged_range, bits);
    }
}

/*
 * Does @b have a RamDiscardManager?  A virtio-mem device sets it on its
 * memdev's region when it is realized, after the memdev's RAM block was
 * created, and clears it when it is unrealized: so each sync asks.  While
 * it has one, @plugged exists.  Called with the BQL held, while @b is
 * present.
 */
static bool bitmap_trace_has_manager(BitmapTraceBlock *b)
{
    bool rdm = b->rb->mr && memory_region_has_ram_discard_manager(b->rb->mr);

    if (rdm && !b->plugged) {
        /* nothing plugged yet: what the manager has plugged is new */
        b->plugged = bitmap_new(b->max_pages);
        b->plug_query = bitmap_new(b->max_pages);
    } else if (!rdm && b->plugged) {
        /* all of it is memory again, and listed when written */
        g_clear_pointer(&b->plugged, g_free);
        g_clear_pointer(&b->plug_query, g_free);
    }
    return rdm;
}

/*
 * After the harvest of @b, with a RamDiscardManager: what it has plugged
 * now goes to @plugged, and @dirty keeps only those pages.  A page plugged
 * since the last sync is new memory, which a migration from now on would
 * send: unless @b's pages are its baseline anyway, it is listed as
 * dirtied in this round.  A page unplugged since leaves the trace.
 * Called with the BQL held and the RCU read lock.
 */
static void bitmap_trace_sync_plugged(BitmapTraceBlock *b, bool fresh)
{
    unsigned long nwords = BITS_TO_LONGS(b->max_pages);

    bitmap_zero(b->plug_query, b->max_pages);
    bitmap_trace_query_plugged(b, b->plug_query, 0, b->used_pages);
    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long now = b->plug_query[k];
        unsigned long added = fresh ? now & ~b->plugged[k] : 0;

        b->dirty[k] = (b->dirty[k] | added) & now;
        b->plugged[k] = now;
    }
}

/*
 * Set @b's pages of a baseline: every page it has, but for those a
 * RamDiscardManager has not plugged.  Called after the sync that found
 * them, from the thread that took it.
 */
void bitmap_trace_set_baseline(BitmapTraceBlock *b)
{
    bitmap_set(b->dirty, 0, b->used_pages);
    if (b->plugged) {
        bitmap_and(b->dirty, b->dirty, b->plugged, b->max_pages);
    }
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
    const char *own = error_get_pretty(bt->blocker);
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
 * From now on, tell the next sync when the memory map changes; and have it
 * read the map now.  Called with the BQL held.
 */
void bitmap_trace_watch_map(BitmapTrace *bt)
{
    bt->map_listener = (MemoryListener) {
        .name = "bitmap-trace",
        .commit = bitmap_trace_map_changed,
    };
    memory_listener_register(&bt->map_listener, &address_space_memory);
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
 * What each vCPU ran in a window
 *
 * A vCPU's run time in a window is the CPU time its thread used in it, by
 * the thread's CPU clock (pthread_getcpuclockid()), read at each round
 * while the vCPU threads are parked.  That counts the guest running (KVM:
 * the thread in KVM_RUN, guest mode included; TCG: translating and
 * executing) and what the thread does for the vCPU besides (I/O exits it
 * emulates, KVM's halt polling, the interrupt it takes to park).  It does
 * not count a vCPU halted (its thread sleeps in KVM's halt wait or on its
 * halt_cond), parked by a round, or asleep in cpu_throttle_thread(), nor
 * time the host gave other threads.  A thread that runs several vCPUs
 * (single-threaded TCG) has its time split equally among them.  A vCPU not
 * seen at the round before (the baseline, a vCPU plugged since) counts
 * from its thread's start, or from the round before if its thread ran
 * other vCPUs then.  A vCPU being unplugged is not listed.
 */
static int64_t bitmap_trace_thread_ns(QemuThread *thread)
{
    clockid_t clock;
    struct timespec ts;

    if (pthread_getcpuclockid(thread->thread, &clock) ||
        clock_gettime(clock, &ts)) {
        return -1;
    }
    return ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
}

static gint bitmap_trace_vcpu_cmp(gconstpointer a, gconstpointer b)
{
    const BitmapTraceVcpu *x = a, *y = b;

    return x->index - y->index;
}

/*
 * Read the vCPUs' run times since the last round into @r->vcpu_us, by
 * ascending cpu_index.  Called with the BQL held.
 */
static void bitmap_trace_read_vcpus(BitmapTrace *bt, BitmapTraceRound *r)
{
    GArray *now = g_array_new(false, false, sizeof(BitmapTraceVcpu));
    CPUState *cpu;

    CPU_FOREACH(cpu) {
        /* not a thread that may be gone or not there yet */
        if (cpu->created && !cpu->unplug && cpu->thread) {
            BitmapTraceVcpu v = {
                .cpu = cpu, .thread = cpu->thread, .index = cpu->cpu_index,
                .ns = bitmap_trace_thread_ns(cpu->thread),
            };

            g_array_append_val(now, v);
        }
    }
    g_array_sort(now, bitmap_trace_vcpu_cmp);

    r->vcpu_us = g_array_sized_new(false, false, sizeof(int64_t), now->len);
    for (guint i = 0; i < now->len; i++) {
        BitmapTraceVcpu *v = &g_array_index(now, BitmapTraceVcpu, i);
        int64_t last = 0, us;
        unsigned sharing = 0;
        bool seen = false;

        for (guint j = 0; bt->vcpu_last && j < bt->vcpu_last->len; j++) {
            BitmapTraceVcpu *l = &g_array_index(bt->vcpu_last,
                                                BitmapTraceVcpu, j);

            if (l->cpu == v->cpu && l->index == v->index) {
                last = l->ns;
                seen = true;
            } else if (!seen && l->thread == v->thread) {
                /* a vCPU new to a thread that runs others */
                last = l->ns;
            }
        }
        for (guint j = 0; j < now->len; j++) {
            sharing += g_array_index(now, BitmapTraceVcpu, j).thread ==
                       v->thread;
        }
        if (v->ns < 0) {
            /* unreadable: nothing this time, and from here next time */
            v->ns = last;
        }
        /* a clock that went back is a new thread's */
        us = (v->ns >= last ? v->ns - last : v->ns) / sharing / SCALE_US;
        g_array_append_val(r->vcpu_us, us);
    }
    if (bt->vcpu_last) {
        g_array_free(bt->vcpu_last, true);
    }
    bt->vcpu_last = now;
}

void bitmap_trace_round_free(BitmapTraceRound *r)
{
    if (r->vcpu_us) {
        g_array_free(r->vcpu_us, true);
        r->vcpu_us = NULL;
    }
}

/*
 * One round: sync the dirty log, harvest every traced block and snapshot
 * the memory map the harvested pages are to be translated with.  Called
 * with the BQL held, like migration_bitmap_sync(), from the main loop
 * (@main_loop: the baseline) or the trace thread.  With @if_unchanged, a
 * round that would find the blocks or the map changed is not taken:
 * nothing is harvested and it returns false (what a sync took stays for
 * the next round).  How long the sync and the harvest took go to @r.
 */
bool bitmap_trace_sync(BitmapTrace *bt, bool main_loop, bool if_unchanged,
                       BitmapTraceRound *r)
{
    int64_t t_sync = bitmap_trace_now_ns(), t_harvest;
    bool parked = bitmap_trace_park_vcpus(main_loop);

    /* the BQL was dropped while the vCPUs were gathered: look now */
    if (if_unchanged && bitmap_trace_changed(bt)) {
        if (parked) {
            bitmap_trace_release_vcpus();
        }
        return false;
    }
    memory_global_dirty_log_sync(false);
    /*
     * The dirty ring's flush drops the BQL too, in run_on_cpu() of its
     * vCPU kick: look again.  What the sync took stays in the RAM blocks'
     * DIRTY_MEMORY_MIGRATION bits, for the next round to harvest.
     */
    if (if_unchanged && bitmap_trace_changed(bt)) {
        if (parked) {
            bitmap_trace_release_vcpus();
        }
        return false;
    }
    t_harvest = bitmap_trace_now_ns();
    bitmap_trace_read_vcpus(bt, r);

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
                if (bitmap_trace_has_manager(b)) {
                    bitmap_trace_sync_plugged(b, !b->arrived);
                }
            }
            if (b->arrived) {
                /* its baseline: every page, as in iteration 0 */
                bitmap_trace_set_baseline(b);
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

    r->sync_us = (t_harvest - t_sync) / SCALE_US;
    r->harvest_us = (bitmap_trace_now_ns() - t_harvest) / SCALE_US;
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
 * every page if @all) among its first @pages, and in @plugged if not NULL,
 * hold only zero bytes.  Called with the RCU read lock.
 */
static void bitmap_trace_scan_words(BitmapTraceBlock *b, uint64_t pages,
                                    unsigned long k0, unsigned long k1,
                                    bool all, const unsigned long *plugged)
{
    for (unsigned long k = k0; k < k1; k++) {
        unsigned long d = k >= BITS_TO_LONGS(pages) ? 0 :
                          all ? ~0UL : b->dirty[k];
        unsigned long z = 0;

        if (plugged) {
            d &= plugged[k];
        }

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
 * is read; a block unplugged since the sync is not read, nor a page a
 * virtio-mem device has not plugged.  How long it took goes to the
 * round's @r.
 */
void bitmap_trace_scan_zero(BitmapTrace *bt, BitmapTraceRound *r)
{
    int64_t t_scan = bitmap_trace_now_ns();

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        unsigned long nwords = BITS_TO_LONGS(b->max_pages);

        if (!b->plugged) {
            /* one pass, that writes every word of @zero */
            bitmap_trace_scan_slice(b, 0, nwords, false);
            continue;
        }
        /* the BQL is held for a slice at a time: see there */
        for (unsigned long k0 = 0; k0 < nwords;
             k0 += BITMAP_TRACE_PLUG_SCAN_WORDS) {
            unsigned long k1 = MIN(k0 + BITMAP_TRACE_PLUG_SCAN_WORDS, nwords);

            bitmap_trace_scan_slice(b, k0, k1, false);
        }
    }
    r->zero_us = (bitmap_trace_now_ns() - t_scan) / SCALE_US;
}

/*
 * A slice of a zero scan: words [@k0, @k1) of @b->zero, for every page the
 * block has (@all: the baseline) or for those of @b->dirty.  Of a block
 * with a RamDiscardManager, only the pages plugged now are read: the
 * slice holds the BQL, so that none is unplugged (discarded) while it is
 * read.  Called without the BQL; takes the RCU read lock.
 */
void bitmap_trace_scan_slice(BitmapTraceBlock *b, unsigned long k0,
                             unsigned long k1, bool all)
{
    uint64_t pages, first, end;

    if (!b->plugged) {
        WITH_RCU_READ_LOCK_GUARD() {
            bitmap_trace_scan_words(b, bitmap_trace_readable_pages(b), k0, k1,
                                    all, NULL);
        }
        return;
    }
    /* the BQL before the RCU read lock: its holder may wait for RCU */
    bql_lock();
    WITH_RCU_READ_LOCK_GUARD() {
        pages = bitmap_trace_readable_pages(b);
        first = MIN((uint64_t)k0 * BITS_PER_LONG, pages);
        end = MIN((uint64_t)k1 * BITS_PER_LONG, pages);
        bitmap_trace_query_plugged(b, b->plug_query, first, end - first);
        bitmap_trace_scan_words(b, pages, k0, k1, all, b->plug_query);
    }
    bql_unlock();
}

/*
 * Count a block's pages of the last sync in one pass over its dirty
 * bitmap, skipping the words with none: the dirty ones, the zero ones (a
 * subset), the unmapped ones and, if @measured, those dirtied for the
 * first time in the trace (and remember them), into @b->counts.  A round
 * costs O(words of the bitmap), not several passes over it.  Runs in the
 * trace thread without the BQL: it only reads the tracer's own snapshot.
 */
void bitmap_trace_block_counts(BitmapTraceBlock *b, bool measured)
{
    unsigned long nwords = BITS_TO_LONGS(b->used_pages);
    BitmapTraceCounts *c = &b->counts;

    *c = (BitmapTraceCounts) { 0 };
    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long d = b->dirty[k];

        if (!d) {
            continue;
        }
        if (k == nwords - 1 && b->used_pages % BITS_PER_LONG) {
            d &= BITMAP_LAST_WORD_MASK(b->used_pages);
        }
        c->dirty += ctpopl(d);
        c->zero += ctpopl(b->zero[k] & d);
        c->unmapped += ctpopl(d & ~b->mapped[k]);
        if (measured) {
            c->fresh += ctpopl(d & ~b->seen[k]);
            b->seen[k] |= d;
        }
    }
}

/*
 * Count round @n's pages in every block it logs as dirtied (not those gone,
 * nor those that arrived: their pages are their baseline), into each
 * block's @counts and their sum into @total.  Iteration 0 is not measured:
 * no page of it is dirtied for the first time.  Runs in the trace thread
 * without the BQL.
 */
void bitmap_trace_count(BitmapTrace *bt, int64_t n, BitmapTraceCounts *total)
{
    *total = (BitmapTraceCounts) { 0 };
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        if (b->gone || b->arrived) {
            continue;
        }
        bitmap_trace_block_counts(b, n > 0);
        total->dirty += b->counts.dirty;
        total->zero += b->counts.zero;
        total->unmapped += b->counts.unmapped;
        total->fresh += b->counts.fresh;
    }
}
