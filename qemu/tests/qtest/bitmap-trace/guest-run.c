/*
 * QTest for bitmap-trace with a real guest: run a traced case (the trace
 * undisturbed, across a system_reset, across stop and cont) and check
 * every window of its log against the pages the guest was told to write
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "guest.h"

/*
 * Make sure the trace holds a complete pass of every vCPU, so that the
 * union of its windows must cover the whole sweep range.
 * @passes_at_start was read after the start command returned, when the
 * baseline was taken: the pass of a vCPU that ends with counter
 * passes_at_start + 2 started after it.  Once the counters show that,
 * every sync that starts later sees all of those passes' writes, and at
 * least one more sync is due while fewer than iterations - 1 iterations
 * are complete.  Returns false if some vCPU made no progress at all.
 */
bool trace_await_full_pass(QTestState *qts, const GuestCase *c,
                           const uint32_t *passes_at_start)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    int64_t iterations = c->iterations ?: ITERATIONS_UNTIL_CANCELLED;
    QDict *info;
    int64_t done;

    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        while (guest_passes(qts, c->layout, cpu) - passes_at_start[cpu] < 2) {
            if (g_get_monotonic_time() > deadline) {
                bt_msg("vCPU %d of the guest finished no pass in %d ms "
                          "of tracing", cpu, PASS_TIMEOUT_MS);
                return false;
            }
            g_usleep(1000);
        }
    }
    info = qtest_qmp_assert_success_ref(qts,
                                        "{'execute': 'query-bitmap-trace'}");
    done = qdict_get_int(info, "completed-iterations");
    if (strcmp(qdict_get_str(info, "status"), "active") ||
        done > iterations - 2) {
        bt_msg("trace of %" PRId64 " x %" PRId64 " ms too short for "
                  "a full pass of the guest (%" PRId64 " iterations "
                  "done when it finished one)", iterations,
                  c->period_ms, done);
        g_assert_not_reached();
    }
    qobject_unref(info);
    return true;
}

/*
 * Once the guest is back from the event, wait until every vCPU has run a
 * whole pass again: a starved vCPU may need more than the windows below to
 * be seen running.
 */
void trace_await_all_back(QTestState *qts, const GuestCase *c)
{
    g_autofree uint32_t *passes = g_new(uint32_t, c->ncpus);

    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        passes[cpu] = guest_passes(qts, c->layout, cpu);
    }
    g_assert_true(trace_await_full_pass(qts, c, passes));
}

/*
 * Windows to trace before the event of a case and after the guest is back
 * from it: enough for every vCPU of a starved MTTCG guest to run in some
 */
int64_t windows_around_event(const GuestCase *c)
{
    return MAX(5, 300 / c->period_ms);
}

/*
 * The guest is reset during the trace.  The windows from the one in which
 * the reset may land until the one in progress when the boot block
 * signals its start hold the firmware's writes (the firmware is done by
 * then), and memory map changes that make KVM report whole RAM blocks
 * dirty.  When the test sees the signal and n iterations complete, the
 * sync of iteration n + 1 may be done already (an iteration counts once
 * its log is written): window n + 2 may be in progress.  From then on the
 * guest writes only its own pages; its vCPUs come back one by one.
 */
static void trace_reset_guest(GuestVM *vm, const GuestCase *c,
                              GuestTraceEvents *ev)
{
    ev->boot_first = bt_completed(vm->qts) + 1;
    qtest_qmp_assert_success(vm->qts, "{'execute': 'system_reset'}");
    bt_msg("system_reset: %" PRId64 " iterations complete",
              ev->boot_first - 1);
    if (!serial_await_signals(vm->serial_fd, SYM_BOOT_SIGNAL, 1,
                              REBOOT_TIMEOUT_MS)) {
        bt_msg("the guest did not boot again in %d ms after "
                  "system_reset: QEMU's reset is stuck", REBOOT_TIMEOUT_MS);
        bt_qemu_wedged(vm->qts);
    }
    ev->boot_last = bt_completed(vm->qts) + 2;
    serial_await_passes(vm->serial_fd, c->ncpus);
    ev->back = bt_completed(vm->qts) + 2;
    bt_msg("reset: the firmware ran in windows %" PRId64 "-%" PRId64
              ", all %d vCPUs back by window %" PRId64, ev->boot_first,
              ev->boot_last, c->ncpus, ev->back);
    trace_await_all_back(vm->qts, c);
    bt_await_completed(vm->qts, ev->back + windows_around_event(c));
}

/*
 * The VM is stopped during the trace.  Iteration stopped + 1 may be in
 * progress and window stopped + 2 may start before "stop" took effect;
 * window stopped + 3 starts at a sync that began after it, and the window
 * in progress when "cont" is sent ends after it.  No vCPU may run while
 * the VM is stopped, not even for the trace's own pause around its syncs.
 */
static void trace_stop_guest(GuestVM *vm, const GuestCase *c,
                             GuestTraceEvents *ev)
{
    g_autofree uint32_t *passes = g_new(uint32_t, c->ncpus);
    int64_t stopped, resumed;

    qtest_qmp_assert_success(vm->qts, "{'execute': 'stop'}");
    stopped = bt_completed(vm->qts);
    bt_msg("stop: %" PRId64 " iterations complete", stopped);
    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        passes[cpu] = guest_passes(vm->qts, c->layout, cpu);
    }
    bt_await_completed(vm->qts, stopped + 5);
    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        g_assert_cmpuint(guest_passes(vm->qts, c->layout, cpu), ==,
                         passes[cpu]);
    }
    resumed = bt_completed(vm->qts);
    qtest_qmp_assert_success(vm->qts, "{'execute': 'cont'}");
    bt_msg("cont: %" PRId64 " iterations complete", resumed);
    ev->quiet_first = stopped + 3;
    ev->quiet_last = resumed;
    ev->back = resumed + 1;
    trace_await_all_back(vm->qts, c);
    bt_await_completed(vm->qts, resumed + windows_around_event(c));
}

/*
 * Run the trace of @c, logging to the VM's log, until it completes; or
 * with an event, until enough windows after it, then cancel it.  Returns a
 * reason to skip the case, or NULL.
 */
char *trace_run(GuestVM *vm, const GuestCase *c, GuestTraceEvents *ev)
{
    g_autofree uint32_t *passes = g_new(uint32_t, c->ncpus);
    QTestState *qts = vm->qts;
    QDict *evt, *data;

    *ev = (GuestTraceEvents) {
        .quiet_first = 1, .quiet_last = 0,
        .boot_first = 1, .boot_last = 0, .back = 0,
    };
    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s,"
        " 'iterations': %" PRId64 ", 'period': %" PRId64 " }}",
        vm->log_path, c->iterations ?: ITERATIONS_UNTIL_CANCELLED,
        c->period_ms);
    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        passes[cpu] = guest_passes(qts, c->layout, cpu);
    }
    if (!trace_await_full_pass(qts, c, passes)) {
        /* the probe before the trace does not always see it */
        g_assert_cmpint(c->accel, ==, GUEST_ACCEL_KVM_RING);
        return g_strdup("the host's KVM stalled the guest while tracing with "
                        "the dirty ring (calc-dirty-rate in dirty-ring mode "
                        "stalls it too): a host kernel defect");
    }

    if (c->event != GUEST_EVENT_NONE) {
        /* as many windows before the event as after it */
        bt_await_completed(qts, bt_completed(qts) +
                              windows_around_event(c));
    }
    switch (c->event) {
    case GUEST_EVENT_NONE:
        evt = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
        data = qdict_get_qdict(evt, "data");
        g_assert_cmpstr(qdict_get_str(data, "status"), ==, "completed");
        g_assert_cmpint(qdict_get_int(data, "completed-iterations"), ==,
                        c->iterations);
        qobject_unref(evt);
        return NULL;
    case GUEST_EVENT_RESET:
        trace_reset_guest(vm, c, ev);
        break;
    case GUEST_EVENT_STOP:
        trace_stop_guest(vm, c, ev);
        break;
    }
    bt_cancel(qts);
    return NULL;
}

/* Does the map of block @name hold guest page @pfn? */
static bool block_maps_pfn(const BTLog *log, const char *name, uint64_t pfn)
{
    const BTLogBlock *b = bt_log_find_block(log, name);

    g_assert_nonnull(b);
    for (guint i = 0; i < b->map->len; i++) {
        const BTLogRange *r = &g_array_index(b->map, BTLogRange, i);

        if (pfn >= r->first && pfn < r->first + r->npages) {
            return true;
        }
    }
    return false;
}

/*
 * Did vCPU @cpu run a whole round of hot writes within window @it?  After
 * each page of its sweep slice a vCPU writes every one of its hot pages,
 * then the next page of its slice (after the last one: the first one, in
 * the next pass).  So a window that lists two pages of the slice written
 * one after the other also holds the hot writes between them, whatever
 * pass each of them came from.  Windows in which the host did not run the
 * vCPU long enough (a loaded host, a vCPU starved by the others, or a round
 * right after a late one) show no such pair, and the vCPU wrote nothing
 * that could be asked of them.  No other vCPU writes the slice.
 */
bool window_has_hot_round(const BTLogIter *it, const GuestLayout *l,
                          int ncpus, int cpu)
{
    uint64_t npages;
    uint64_t first = layout_slice(l, ncpus, cpu, &npages);
    uint64_t last = first + npages - 1;

    for (guint i = 0; i + 1 < it->pfns->len; i++) {
        uint64_t pfn = g_array_index(it->pfns, uint64_t, i);

        if (pfn >= first && pfn < last &&
            g_array_index(it->pfns, uint64_t, i + 1) == pfn + 1) {
            return true;
        }
    }
    return bt_log_iter_has_pfn(it, first) && bt_log_iter_has_pfn(it, last);
}

/* "mean M median D max X" of @v (sorted in place) */
static char *stats_str(GArray *v)
{
    double sum = 0;

    if (!v->len) {
        return g_strdup("none");
    }
    g_array_sort(v, cmp_int64);
    for (guint i = 0; i < v->len; i++) {
        sum += g_array_index(v, int64_t, i);
    }
    return g_strdup_printf("mean %.0f median %" PRId64 " max %" PRId64,
                           sum / v->len,
                           g_array_index(v, int64_t, v->len / 2),
                           g_array_index(v, int64_t, v->len - 1));
}

/*
 * Check the windows (iterations >= 1) of @log against @c's layout and the
 * events @ev of the trace.  Every deviation is reported before the
 * assertions, so that a failure shows all of them:
 * - recall: each window in which a vCPU ran a round of hot writes lists
 *   every hot page of that vCPU; every vCPU must have run in some window
 *   (after the event too, if any), and some vCPU in at least half of the
 *   windows in which the VM was not stopped or rebooting;
 * - precision: no window lists a page outside the hot pages, the sweep and
 *   the guest's code page, nor a page without a guest-physical address,
 *   nor a zero page;
 * - neither is asked of the windows in which the guest rebooted: the
 *   firmware writes where it likes;
 * - the windows in which the VM was stopped throughout list no page;
 * - the windows together list every sweep page (the caller made sure that
 *   a whole pass of every vCPU falls within the trace).
 */
void log_check(const BTLog *log, const GuestCase *c,
               const GuestTraceEvents *ev)
{
    const GuestLayout *l = c->layout;
    int ncpus = c->ncpus;
    uint64_t sweep_first = l->sweep_start >> GUEST_PAGE_BITS;
    uint64_t sweep_pages = (l->sweep_end - l->sweep_start) >> GUEST_PAGE_BITS;
    g_autofree bool *sweep_seen = g_new0(bool, sweep_pages);
    uint64_t windows = log->iters->len - 1;
    g_autofree GArray **hot = g_new0(GArray *, ncpus);
    g_autofree uint64_t *busy_windows = g_new0(uint64_t, ncpus);
    g_autofree uint64_t *busy_hot_found = g_new0(uint64_t, ncpus);
    g_autofree uint64_t *busy_after = g_new0(uint64_t, ncpus);
    g_autoptr(GArray) sync_us = g_array_new(false, false, sizeof(int64_t));
    g_autoptr(GArray) harvest_us = g_array_new(false, false, sizeof(int64_t));
    g_autoptr(GArray) second_hot = g_array_new(false, false, sizeof(uint64_t));
    g_autoptr(GString) per_cpu = g_string_new("");
    g_autofree char *sync_str = NULL;
    g_autofree char *harvest_str = NULL;
    int64_t restart = MAX(ev->quiet_last, ev->boot_last);
    int64_t event_end = ev->back ?: restart;
    uint64_t hot_found = 0, hot_asked = 0, any_busy_windows = 0;
    uint64_t listed = 0, outside = 0, code = 0, sweep_covered = 0;
    uint64_t zero_listed = 0, quiet_listed = 0, boot_listed = 0;
    uint64_t second_block_windows = 0, running_windows = 0;
    bool all_run = true, all_back = true;

    g_assert_cmpint(log->page_size, ==, GUEST_PAGE_SIZE);
    g_assert_cmpint(log->period_ms, ==, c->period_ms);
    g_assert_cmpstr(log->accel, ==, accel_name(c->accel));
    g_assert_true(log->has_end);
    if (c->iterations) {
        g_assert_cmpint(log->iterations, ==, c->iterations);
        g_assert_cmpstr(log->end_status, ==, "completed");
        g_assert_cmpint(log->end_iterations, ==, c->iterations);
        g_assert_cmpuint(windows, ==, c->iterations);
    } else {
        g_assert_cmpint(log->iterations, ==, ITERATIONS_UNTIL_CANCELLED);
        g_assert_cmpstr(log->end_status, ==, "cancelled");
        g_assert_cmpint(log->end_iterations, ==, windows);
        g_assert_cmpint(windows, >, event_end);
    }

    for (int cpu = 0; cpu < ncpus; cpu++) {
        hot[cpu] = layout_cpu_hot(l, cpu);
    }
    if (l->second_block) {
        for (int cpu = 0; cpu < ncpus; cpu++) {
            for (guint h = cpu ? l->nhot : 0; h < hot[cpu]->len; h++) {
                uint64_t pfn = g_array_index(hot[cpu], uint32_t, h) >>
                               GUEST_PAGE_BITS;

                if (block_maps_pfn(log, l->second_block, pfn)) {
                    g_array_append_val(second_hot, pfn);
                }
            }
        }
        g_assert_cmpuint(second_hot->len, >, 0);
    }

    /*
     * The trace starts after the first full pass of every vCPU: its code,
     * hot and sweep pages are not zero pages at the baseline.
     */
    {
        const BTLogIter *it0 = g_ptr_array_index(log->iters, 0);

        g_assert_cmpint(log->version, ==, 3);
        for (int cpu = 0; cpu < ncpus; cpu++) {
            for (guint h = 0; h < hot[cpu]->len; h++) {
                g_assert_false(bt_log_iter_has_zero_pfn(it0,
                    g_array_index(hot[cpu], uint32_t, h) >> GUEST_PAGE_BITS));
            }
        }
        for (uint64_t i = 0; i < sweep_pages; i++) {
            g_assert_false(bt_log_iter_has_zero_pfn(it0, sweep_first + i));
        }
        g_assert_cmpuint(it0->zero, >, 0);
    }

    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        const BTLogIter *prev = g_ptr_array_index(log->iters, n - 1);
        bool quiet = n >= ev->quiet_first && n <= ev->quiet_last;
        bool boot = n >= ev->boot_first && n <= ev->boot_last;
        g_autoptr(GString) missed = g_string_new("");
        g_autoptr(GString) idle = g_string_new("");
        bool any_busy = false;
        size_t second_found = 0;

        if (!quiet) {
            g_array_append_val(sync_us, it->sync_us);
            g_array_append_val(harvest_us, it->harvest_us);
        }
        if (boot) {
            /*
             * The firmware's writes, and whole RAM blocks when a memory
             * map change made KVM start a slot over: neither recall (the
             * busy test would see the firmware's writes) nor precision
             */
            boot_listed += it->pfns->len + it->unmapped;
            continue;
        }
        /* not while the vCPUs come back, one by one after a reset */
        if (!quiet && (n <= restart || n > ev->back)) {
            running_windows++;
        }
        for (int cpu = 0; cpu < ncpus; cpu++) {
            bool busy = window_has_hot_round(it, l, ncpus, cpu);
            size_t found = 0;

            for (guint h = 0; h < hot[cpu]->len; h++) {
                uint64_t pfn = g_array_index(hot[cpu], uint32_t, h) >>
                               GUEST_PAGE_BITS;

                if (bt_log_iter_has_pfn(it, pfn)) {
                    found++;
                } else if (busy) {
                    g_string_append_printf(missed, " %" PRIx64 "(vCPU %d)",
                                           pfn, cpu);
                }
            }
            hot_found += found;
            hot_asked += hot[cpu]->len;
            if (busy) {
                any_busy = true;
                busy_windows[cpu]++;
                busy_hot_found[cpu] += found;
                if (n > event_end) {
                    busy_after[cpu]++;
                }
            } else {
                g_string_append_printf(idle, " %d", cpu);
            }
        }
        if (any_busy && !quiet && (n <= restart || n > ev->back)) {
            any_busy_windows++;
        }
        for (guint h = 0; h < second_hot->len; h++) {
            second_found += bt_log_iter_has_pfn(it,
                                g_array_index(second_hot, uint64_t, h));
        }
        if (l->second_block && second_found == second_hot->len) {
            second_block_windows++;
        }
        if (missed->len) {
            bt_msg("window %u (%.3f ms, %" PRIu64 " pages, sync %"
                      PRId64 " us, harvest %" PRId64 " us) misses hot pages "
                      "of vCPUs that ran a round in it:%s", n,
                      it->t_ms - prev->t_ms, it->dirty, it->sync_us,
                      it->harvest_us, missed->str);
        }
        if (idle->len && ncpus > 1 && g_test_verbose()) {
            bt_msg("window %u: no round of hot writes by vCPU%s", n,
                      idle->str);
        }

        if (quiet && it->dirty + it->unmapped) {
            quiet_listed += it->dirty + it->unmapped;
            bt_msg("window %u lists %" PRIu64 " pages while the VM was "
                      "stopped", n, it->dirty + it->unmapped);
        }

        /*
         * Every page the guest writes holds a non-zero counter from its
         * first write on, so no page a window lists is a zero page.
         */
        if (it->zero) {
            zero_listed += it->zero;
            bt_msg("window %u lists %" PRIu64 " zero pages", n, it->zero);
        }

        listed += it->pfns->len + it->unmapped;
        outside += it->unmapped;
        for (guint i = 0; i < it->unmapped_pages->len; i++) {
            bt_msg("window %u lists unmapped page %s", n,
                      (char *)g_ptr_array_index(it->unmapped_pages, i));
        }
        for (guint i = 0; i < it->pfns->len; i++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, i);

            if (layout_in_sweep(l, pfn)) {
                sweep_seen[pfn - sweep_first] = true;
            } else if (layout_is_code(pfn)) {
                code++;
            } else if (!layout_is_hot(l, ncpus, pfn)) {
                outside++;
                bt_msg("window %u lists page %" PRIx64
                          ", which the guest does not write", n, pfn);
            }
        }
    }
    for (uint64_t i = 0; i < sweep_pages; i++) {
        if (sweep_seen[i]) {
            sweep_covered++;
        } else {
            bt_msg("no window lists sweep page %" PRIx64,
                      sweep_first + i);
        }
    }

    {
        uint64_t busy_found = 0, busy_asked = 0;

        for (int cpu = 0; cpu < ncpus; cpu++) {
            busy_found += busy_hot_found[cpu];
            busy_asked += busy_windows[cpu] * hot[cpu]->len;
            g_string_append_printf(per_cpu, "%s%" PRIu64, cpu ? "/" : "",
                                   busy_windows[cpu]);
            all_run &= busy_windows[cpu] > 0;
            all_back &= busy_after[cpu] > 0;
        }
        sync_str = stats_str(sync_us);
        harvest_str = stats_str(harvest_us);
        bt_msg("%s %s %d vCPU%s %s period %" PRId64 " ms: recall %.2f%% "
                  "(%" PRIu64 "/%" PRIu64 " hot pages of vCPUs in the "
                  "windows in which they ran a round of hot writes; %.2f%% "
                  "over all %" PRIu64 " windows), precision %.2f%% (%" PRIu64
                  "/%" PRIu64 " listed pages), sweep %" PRIu64 "/%" PRIu64
                  " pages, code page listed %" PRIu64 " times; windows with "
                  "a round of each vCPU %s, of any vCPU %" PRIu64 "/%" PRIu64
                  " outside stops and reboots",
                  accel_name(c->accel), l->name, ncpus, ncpus > 1 ? "s" : "",
                  event_name(c->event), c->period_ms,
                  busy_asked ? 100.0 * busy_found / busy_asked : 0.0,
                  busy_found, busy_asked, 100.0 * hot_found / hot_asked,
                  windows, listed ? 100.0 * (listed - outside) / listed : 100.0,
                  listed - outside, listed, sweep_covered, sweep_pages, code,
                  per_cpu->str, any_busy_windows, running_windows);
        bt_msg("timing %s %d vCPU%s %s period %" PRId64 " ms: "
                  "sync-us %s; harvest-us %s", accel_name(c->accel), ncpus,
                  ncpus > 1 ? "s" : "", event_name(c->event), c->period_ms,
                  sync_str, harvest_str);
        if (l->second_block) {
            bt_msg("all %u hot pages of block %s listed in %" PRIu64
                      "/%" PRIu64 " windows", second_hot->len,
                      l->second_block, second_block_windows, windows);
        }
        if (ev->boot_first <= ev->boot_last) {
            bt_msg("windows %" PRId64 "-%" PRId64 " (the reboot) list %"
                      PRIu64 " pages, not checked",
                      ev->boot_first, ev->boot_last, boot_listed);
        }
        if (ev->quiet_first <= ev->quiet_last) {
            bt_msg("windows %" PRId64 "-%" PRId64 " (VM stopped) list %"
                      PRIu64 " pages", ev->quiet_first, ev->quiet_last,
                      quiet_listed);
        }

        g_assert_cmpuint(busy_found, ==, busy_asked);
    }
    for (int cpu = 0; cpu < ncpus; cpu++) {
        g_array_free(hot[cpu], true);
    }
    g_assert_true(all_run);
    if (c->event != GUEST_EVENT_NONE) {
        g_assert_true(all_back);
    }
    /*
     * Against vacuous checks: the guest ran a round in at least half of
     * the windows.  Several vCPUs on 2 host CPUs starve each other, 8 KVM
     * ones under load so much that some vCPU runs a round in only a fifth
     * of the 10 ms windows: each of them must have run in some windows,
     * and after the event in some too (all_run and all_back).
     */
    if (ncpus == 1) {
        g_assert_cmpuint(any_busy_windows * 2, >=, running_windows);
    }
    g_assert_cmpuint(outside, ==, 0);
    g_assert_cmpuint(zero_listed, ==, 0);
    g_assert_cmpuint(quiet_listed, ==, 0);
    g_assert_cmpuint(sweep_covered, ==, sweep_pages);
}

/* Run case @c.  Returns a reason to skip it, or NULL. */
char *guest_case_run(const GuestCase *c)
{
    const GuestLayout *l = c->layout;
    int64_t t0 = g_get_monotonic_time();
    GuestVM vm = { 0 };
    char *skip = guest_boot(&vm, c->accel, l, c->ncpus);
    g_autoptr(BTLog) log = NULL;
    GuestTraceEvents ev;

    if (!skip && c->accel == GUEST_ACCEL_KVM_RING &&
        dirty_ring_stalls_guest(vm.qts, l)) {
        skip = g_strdup("the host's KVM stalls the guest once the dirty "
                        "ring is in use (so does calc-dirty-rate in "
                        "dirty-ring mode): a host kernel defect");
    }
    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    skip = trace_run(&vm, c, &ev);
    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    log = bt_log_parse(vm.log_path, true);
    log_check(log, c, &ev);
    bt_msg("%s %s %d vCPU%s %s period %" PRId64 " ms took %.1f s",
              accel_name(c->accel), l->name, c->ncpus,
              c->ncpus > 1 ? "s" : "", event_name(c->event), c->period_ms,
              (g_get_monotonic_time() - t0) / 1e6);
    guest_cleanup(&vm);
    return NULL;
}
