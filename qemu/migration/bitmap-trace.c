/*
 * bitmap-trace: shadow migration dirty page tracer
 *
 * While the VM runs, dirty-log guest RAM as pre-copy live migration does,
 * sync and harvest the dirty bitmap through migration's path every period,
 * and log the guest page frame numbers dirtied in each round.  Nothing is
 * sent anywhere.  See docs/devel/migration/bitmap-trace.rst.
 *
 * This file holds the job: the QMP and HMP glue, the trace thread and the
 * rounds it queues while the baseline is scanned.  A round is in
 * bitmap-trace-round.c, the log in bitmap-trace-log.c, and what they share
 * in bitmap-trace-int.h.  The QMP handlers run in the main loop with the
 * BQL held; the thread takes the BQL for each round's sync only; the
 * results are protected by BitmapTrace.lock.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/accel.h"
#include "qemu/bitmap.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/thread.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-events-migration.h"
#include "bitmap-trace-int.h"
#include "exec/target_page.h"
#include "migration/blocker.h"
#include "migration/misc.h"
#include "monitor/monitor.h"
#include "system/dirtylimit.h"
#include "system/kvm.h"
#include "system/qtest.h"
#include "system/replay.h"
#include "system/runstate.h"
#include "system/tcg.h"
#include "bitmap-trace.h"
#include "dirtyrate.h"
#include "migration.h"
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
 * The baseline's zero scan is done in slices of this many words of the
 * bitmap (2048 pages, 8 MiB of 4 KiB pages), between which the rounds that
 * fall due are taken; and the rounds so queued keep at most this many bytes
 * of dirty bitmap words
 */
#define BITMAP_TRACE_SCAN_WORDS         32
#define BITMAP_TRACE_QUEUE_BYTES        (64 * MiB)

static BitmapTrace bt_state;

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

/* Iteration @n, taken at @t_ns, is in the log: publish its counts @c */
static void bitmap_trace_commit(BitmapTrace *bt, int64_t n, int64_t t_ns,
                                const BitmapTraceCounts *c)
{
    qemu_mutex_lock(&bt->lock);
    bt->distinct += c->fresh;
    bt->completed = n;
    bt->elapsed_ms = (t_ns - bt->t0_ns) / SCALE_MS;
    g_array_append_val(bt->dirty_pages, c->dirty);
    qemu_mutex_unlock(&bt->lock);
}

/*
 * Sleep until @deadline_ns or until asked to stop.
 * Returns true if a stop was requested.
 */
static bool bitmap_trace_wait(BitmapTrace *bt, int64_t deadline_ns)
{
    while (!qatomic_read(&bt->stop_requested)) {
        int64_t left_ms = DIV_ROUND_UP(deadline_ns - bitmap_trace_now_ns(),
                                       SCALE_MS);

        if (left_ms <= 0) {
            return false;
        }
        qemu_sem_timedwait(&bt->wakeup, left_ms);
    }
    return true;
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
    bitmap_trace_round_free(&q->round);
}

/*
 * Take the round due at @deadline into @r, from the trace thread, and move
 * @deadline on to the next one.  With @if_unchanged, one that would find
 * the blocks or the map changed is not taken: returns false.  Takes the
 * BQL for the sync.
 */
static bool bitmap_trace_take_round(BitmapTrace *bt, int64_t *deadline,
                                    bool if_unchanged, BitmapTraceRound *r)
{
    r->t_lock = bitmap_trace_now_ns();
    bql_lock();
    r->t_ns = bitmap_trace_now_ns();
    if (!bitmap_trace_sync(bt, false, if_unchanged, r)) {
        bql_unlock();
        return false;
    }
    r->blocked = bt->blocked->len;
    /* before: unlocking may hand the BQL to a thread that preempts us */
    r->t_unlocked = bitmap_trace_now_ns();
    bql_unlock();
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

    if (!queue->open || bitmap_trace_now_ns() < *deadline) {
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
 * those rounds overwrite, and leaves it as the baseline had it.  A stop
 * (state=false, QEMU exiting) ends it at the next slice, so that it does
 * not wait for the rest of the guest's RAM to be read: the pages not
 * scanned yet are logged as not zero (@zero is all clear from the start).
 * Runs in the trace thread without the BQL, which the rounds take.
 */
static void bitmap_trace_scan_baseline(BitmapTrace *bt, int64_t *deadline,
                                       BitmapTraceQueue *queue)
{
    uint64_t scanned = 0, pages = 0;
    int64_t scan_ns = 0;
    bool cut = false;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        unsigned long nwords = BITS_TO_LONGS(b->max_pages);

        pages += b->used_pages;
        for (unsigned long k0 = 0; !cut && k0 < nwords;
             k0 += BITMAP_TRACE_SCAN_WORDS) {
            unsigned long k1 = MIN(k0 + BITMAP_TRACE_SCAN_WORDS, nwords);
            int64_t t_slice;

            if (qatomic_read(&bt->stop_requested)) {
                cut = true;
                break;
            }
            scanned += MIN((uint64_t)k1 * BITS_PER_LONG, b->used_pages) -
                       MIN((uint64_t)k0 * BITS_PER_LONG, b->used_pages);
            bitmap_trace_queue_round(bt, deadline, queue);
            t_slice = bitmap_trace_now_ns();
            bitmap_trace_scan_slice(b, k0, k1, true);
            scan_ns += bitmap_trace_now_ns() - t_slice;
        }
    }
    bt->baseline.zero_us = scan_ns / SCALE_US;
    if (cut) {
        trace_bitmap_trace_baseline_cut(scanned, pages);
    }

    /* the baseline's pages, as the QMP handler set them */
    if (queue->rounds->len) {
        for (unsigned i = 0; i < bt->nblocks; i++) {
            BitmapTraceBlock *b = &bt->blocks[i];

            bitmap_zero(b->dirty, b->max_pages);
            bitmap_trace_set_baseline(b);
        }
    }
}

/*
 * Scan round @n, @r, whose pages are in the blocks' @dirty, for zero pages
 * and log it; false on a write error.  Runs in the trace thread without
 * the BQL.
 */
static bool bitmap_trace_log_round(BitmapTrace *bt, int64_t n,
                                   BitmapTraceRound *r, GString *out,
                                   Error **errp)
{
    int64_t t_encode, t_write;
    BitmapTraceCounts c;
    size_t bytes;

    bitmap_trace_scan_zero(bt, r);
    t_encode = bitmap_trace_now_ns();
    bitmap_trace_put_iteration(bt, n, r, out, &c);
    bytes = out->len;
    t_write = bitmap_trace_now_ns();
    if (!bitmap_trace_write(bt, out, errp)) {
        return false;
    }
    trace_bitmap_trace_round(n, (r->t_ns - r->t_lock) / SCALE_US,
                             (r->t_unlocked - r->t_ns) / SCALE_US,
                             (t_write - t_encode) / SCALE_US,
                             (bitmap_trace_now_ns() - t_write) / SCALE_US,
                             bytes);
    bitmap_trace_commit(bt, n, r->t_ns, &c);
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
    BitmapTraceCounts c;
    int64_t n = 1, deadline = bt->t0_ns + bt->period_ms * SCALE_MS;

    rcu_register_thread();
    g_array_set_clear_func(queued, bitmap_trace_queued_clear);

    /* The QMP handler took the baseline: write it first */
    bitmap_trace_put_header(bt, out);
    bt->baseline.blocked = bt->blocked->len;
    bitmap_trace_scan_baseline(bt, &deadline, &queue);
    bitmap_trace_put_iteration(bt, 0, &bt->baseline, out, &c);
    bitmap_trace_round_free(&bt->baseline);
    if (bitmap_trace_write(bt, out, &err)) {
        bitmap_trace_commit(bt, 0, bt->t0_ns, &c);
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
        BitmapTraceRound r = { 0 };
        bool logged;

        bitmap_trace_take_round(bt, &deadline, false, &r);
        logged = bitmap_trace_log_round(bt, n, &r, out, &err);
        bitmap_trace_round_free(&r);
        if (!logged) {
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
    migrate_del_blocker(&bt->blocker);
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
        memory_global_dirty_log_active(GLOBAL_DIRTY_MIGRATION)) {
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
    if (!bt->blocker) {
        error_setg(&bt->blocker, "Live migration disabled: bitmap-trace in "
                   "progress");
    }
    if (migrate_add_blocker_internal(&bt->blocker, errp) < 0) {
        return;
    }
    if (!memory_global_dirty_log_start(GLOBAL_DIRTY_TRACE, errp)) {
        error_prepend(errp, "bitmap-trace cannot start dirty logging: ");
        migrate_del_blocker(&bt->blocker);
        return;
    }
    /* Only now, with nothing left to fail, create or truncate the file */
    fd = bitmap_trace_open(filename, &seekable, errp);
    if (fd < 0) {
        memory_global_dirty_log_stop(GLOBAL_DIRTY_TRACE);
        migrate_del_blocker(&bt->blocker);
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
     * and lists every page, whatever bits were pending, but for those a
     * virtio-mem device has not plugged: no memory, which migration skips.
     */
    WITH_RCU_READ_LOCK_GUARD() {
        bitmap_trace_init_blocks(bt);
    }
    bitmap_trace_watch_map(bt);
    if (bt->vcpu_last) {
        /* the baseline counts each vCPU from its thread's start */
        g_array_set_size(bt->vcpu_last, 0);
    }
    bt->t0_ns = bitmap_trace_now_ns();
    bt->baseline = (BitmapTraceRound) { .t_ns = bt->t0_ns };
    bitmap_trace_sync(bt, true, false, &bt->baseline);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        bitmap_trace_set_baseline(&bt->blocks[i]);
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
    /*
     * The thread needs the BQL for its last sync, and the vCPUs it parks
     * for it need the replay lock, which the main thread holds here under
     * record/replay (qemu_default_main()): drop both while it ends, as
     * pause_all_vcpus() does, and take them again in their order, the
     * replay lock first.
     */
    bql_unlock();
    if (replay_mode != REPLAY_MODE_NONE) {
        replay_mutex_unlock();
    }
    qemu_thread_join(&bt->thread);
    if (replay_mode != REPLAY_MODE_NONE) {
        replay_mutex_lock();
    }
    bql_lock();
    bt->thread_created = false;
    /* the main loop is done: publish the end here */
    bitmap_trace_end(bt);
}
