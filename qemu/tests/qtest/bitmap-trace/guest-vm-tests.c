/*
 * QTest for bitmap-trace with a real guest: what happens to the VM (paused,
 * reset, rebooted, recorded and replayed), the cost of a round, and the
 * dirty limit
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "guest.h"

/*
 * The VM paused during a trace: the trace goes on and the windows that lie
 * wholly inside the pause list no page; once the VM runs again, the guest's
 * hot pages are back in the windows.
 */
static void test_guest_pause(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, accel, l, 1);
    g_autoptr(BTLog) log = NULL;
    int64_t stopped, resumed;
    bool back = false;
    uint32_t passes;

    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': 20 }}", vm.log_path);
    bt_await_completed(vm.qts, 2);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'stop'}");
    /*
     * Iteration stopped + 1 may be in progress and window stopped + 2 may
     * start before "stop" took effect; window stopped + 3 starts at a sync
     * that began after it.
     */
    stopped = bt_completed(vm.qts);
    passes = guest_passes(vm.qts, l, 0);
    bt_await_completed(vm.qts, stopped + 5);
    g_assert_cmpuint(guest_passes(vm.qts, l, 0), ==, passes);
    resumed = bt_completed(vm.qts);  /* window resumed ends before cont */
    qtest_qmp_assert_success(vm.qts, "{'execute': 'cont'}");
    bt_await_completed(vm.qts, resumed + 10);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));

    log = bt_log_parse(vm.log_path, true);
    for (int64_t n = stopped + 3; n <= resumed; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_cmpuint(it->dirty, ==, 0);
    }
    /* the guest runs again: its pass counter page is written */
    for (guint n = resumed + 2; n < log->iters->len; n++) {
        back |= bt_log_iter_has_pfn(g_ptr_array_index(log->iters, n),
                                    l->hot[0] >> GUEST_PAGE_BITS);
    }
    g_assert_true(back);
    bt_msg("%s: windows %" PRId64 "-%" PRId64 " inside the pause "
              "list no page", accel_name(accel), stopped + 3, resumed);
    guest_cleanup(&vm);
}

/*
 * Guest resets while a 10 ms trace runs, with 4 vCPUs.  Each reset pauses
 * and resumes the vCPUs from the main loop; the trace must neither lose
 * its vCPUs to that nor undo it: it keeps taking rounds, state=false ends
 * it, and QEMU quits.
 */
static void test_guest_reset_storm(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, accel, l, 4);
    g_autofree char *status = NULL;
    g_autoptr(BTLog) log = NULL;
    int64_t before, after;

    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': 10 }}", vm.log_path);
    bt_await_completed(vm.qts, 2);

    before = bt_completed(vm.qts);
    for (int i = 0; i < 200; i++) {
        qtest_qmp_assert_success(vm.qts, "{'execute': 'system_reset'}");
        g_usleep(g_test_rand_int_range(0, 3000));
    }
    /* the trace still takes rounds after the storm */
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 5);
    after = bt_completed(vm.qts);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = bt_await_end(vm.qts, 10000);
    g_assert_cmpstr(status, ==, "cancelled");

    log = bt_log_parse(vm.log_path, true);
    g_assert_true(log->has_end);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_test_message("%s: %" PRId64 " rounds during 200 resets",
                   accel_name(accel), after - before);
    guest_cleanup(&vm);     /* quit must not hang */
}

/*
 * Guest reboots one after the other during a 10 ms trace, with 2 vCPUs:
 * each boot runs the firmware to its end, and under KVM the firmware's
 * vapic option ROM has the main loop queue run_on_cpu() work on the vCPUs
 * (vapic_enable_tpr_reporting()), which a round's parked vCPUs must not
 * hold up.  Every reboot must complete and the trace keep taking rounds.
 */
static void test_guest_reboots(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, accel, l, 2);
    g_autofree char *status = NULL;
    g_autoptr(BTLog) log = NULL;
    int64_t before;

    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': 10 }}", vm.log_path);
    bt_await_completed(vm.qts, 2);

    before = bt_completed(vm.qts);
    for (int i = 0; i < 12; i++) {
        qtest_qmp_assert_success(vm.qts, "{'execute': 'system_reset'}");
        if (!serial_await_signals(vm.serial_fd, SYM_BOOT_SIGNAL, 1,
                                  REBOOT_TIMEOUT_MS)) {
            bt_msg("reboot %d: the guest did not boot again in %d ms: "
                      "QEMU's reset or a vCPU is stuck", i,
                      REBOOT_TIMEOUT_MS);
            bt_qemu_wedged(vm.qts);
        }
        serial_await_passes(vm.serial_fd, 2);
    }
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 5);
    g_test_message("%s: %" PRId64 " rounds during 12 reboots",
                   accel_name(accel), bt_completed(vm.qts) - before);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = bt_await_end(vm.qts, 10000);
    g_assert_cmpstr(status, ==, "cancelled");
    log = bt_log_parse(vm.log_path, true);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    guest_cleanup(&vm);
}

/*
 * A trace of a guest run under record/replay (recording): the rounds must
 * not need the replay lock, which the trace thread does not hold.
 */
static void test_guest_record(const void *opaque)
{
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *dir = g_dir_make_tmp("bitmap-trace-rr-XXXXXX", NULL);
    g_autofree char *rrfile = g_build_filename(dir, "replay.bin", NULL);
    g_autofree char *args = g_strdup_printf("-icount shift=5,rr=record,"
                                            "rrfile=%s", rrfile);
    g_autofree char *skip = guest_boot_args(&vm, GUEST_ACCEL_TCG, l, 1,
                                             args);
    g_autofree char *status = NULL;
    g_autoptr(BTLog) log = NULL;
    uint32_t passes;
    guint busy = 0;

    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        rmdir(dir);
        return;
    }
    passes = guest_passes(vm.qts, l, 0);
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': 10 }}", vm.log_path);
    bt_await_completed(vm.qts, 20);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = bt_await_end(vm.qts, 10000);
    g_assert_cmpstr(status, ==, "cancelled");
    /* the guest ran on during the trace */
    g_assert_cmpuint(guest_passes(vm.qts, l, 0), >, passes);

    log = bt_log_parse(vm.log_path, true);
    g_assert_cmpuint(log->iters->len, >=, 21);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        size_t found = 0;

        for (size_t h = 0; h < l->nhot; h++) {
            found += bt_log_iter_has_pfn(it, l->hot[h] >> GUEST_PAGE_BITS);
        }
        /* a window in which the guest ran a round lists all hot pages */
        if (window_has_hot_round(it, l, 1, 0)) {
            busy++;
            g_assert_cmpuint(found, ==, l->nhot);
        }
    }
    g_assert_cmpuint(busy * 2, >=, log->iters->len - 1);
    guest_cleanup(&vm);
    unlink(rrfile);
    rmdir(dir);
}

/* "median M, 90th percentile P, max X" of @v, which it sorts */
static char *summary_us(GArray *v)
{
    int64_t *x = (int64_t *)v->data;

    g_array_sort(v, cmp_int64);
    return g_strdup_printf("median %" PRId64 ", p90 %" PRId64 ", max %"
                           PRId64, x[v->len / 2], x[v->len * 9 / 10],
                           x[v->len - 1]);
}

/*
 * What a round costs with 1, 4 and 8 vCPUs: sync-us (parking the vCPUs
 * and syncing the dirty log) and harvest-us of the windows of a 300 x
 * 10 ms trace.  Reported, not checked beyond the trace completing: the
 * numbers depend on the host and on what else it runs.  The trace must
 * outlast a full pass of every vCPU (trace_run() asks it); 8 vCPUs on a
 * loaded 2-CPU host took longer than 50 windows for one.
 */
static void test_guest_round_cost(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    static const int ncpus[] = { 1, 4, 8 };
    GuestCase c = {
        .accel = accel, .layout = &one_block, .period_ms = 10,
        .iterations = 300,
    };

    for (size_t i = 0; i < ARRAY_SIZE(ncpus); i++) {
        GuestVM vm = { 0 };
        g_autofree char *skip = guest_boot(&vm, accel, c.layout, ncpus[i]);
        g_autoptr(GArray) sync = g_array_new(false, false, sizeof(int64_t));
        g_autoptr(GArray) harvest = g_array_new(false, false,
                                                sizeof(int64_t));
        g_autoptr(BTLog) log = NULL;
        g_autofree char *sync_sum = NULL;
        g_autofree char *harvest_sum = NULL;

        GuestTraceEvents ev;

        c.ncpus = ncpus[i];
        if (!skip) {
            skip = trace_run(&vm, &c, &ev);
        }
        if (skip) {
            g_test_skip(skip);
            guest_cleanup(&vm);
            return;
        }
        log = bt_log_parse(vm.log_path, true);
        for (guint n = 1; n < log->iters->len; n++) {
            const BTLogIter *it = g_ptr_array_index(log->iters, n);

            g_array_append_val(sync, it->sync_us);
            g_array_append_val(harvest, it->harvest_us);
        }
        sync_sum = summary_us(sync);
        harvest_sum = summary_us(harvest);
        g_test_message("%s, %d vCPUs, %u windows of 10 ms: sync-us %s; "
                       "harvest-us %s", accel_name(accel), ncpus[i],
                       sync->len, sync_sum, harvest_sum);
        guest_cleanup(&vm);
    }
}

/*
 * With the dirty ring: a dirty page rate limit and a trace refuse each
 * other, since the trace's ring resets would skew the per-vCPU rates.
 */
static void test_guest_dirty_limit(void)
{
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, GUEST_ACCEL_KVM_RING, l, 1);
    QDict *resp;

    if (!skip && dirty_ring_stalls_guest(vm.qts, l)) {
        skip = g_strdup("the host's KVM stalls the guest once the dirty "
                        "ring is in use: a host kernel defect");
    }
    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': 10 }}", vm.log_path);
    resp = qtest_qmp_assert_failure_ref(vm.qts,
        "{'execute': 'set-vcpu-dirty-limit', 'arguments': {"
        " 'dirty-rate': 100 }}");
    g_assert_nonnull(strstr(qdict_get_str(resp, "desc"), "bitmap-trace"));
    qobject_unref(resp);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));

    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'set-vcpu-dirty-limit', 'arguments': {"
        " 'dirty-rate': 100 }}");
    resp = qtest_qmp_assert_failure_ref(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s }}", vm.log_path);
    g_assert_nonnull(strstr(qdict_get_str(resp, "desc"),
                            "cancel-vcpu-dirty-limit"));
    qobject_unref(resp);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'cancel-vcpu-dirty-limit'}");
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 3, 'period': 10 }}",
        vm.log_path);
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));
    guest_cleanup(&vm);
}

/*
 * A trace that ends while the VM is stopped leaves dirty logging on until
 * the VM runs again, but it is over: calc-dirty-rate (which finds nothing
 * written), the dirty limit and loadvm are not refused for it.
 */
static void test_guest_ended_while_stopped(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    const GuestLayout *l = &one_block;
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, accel, l, 1);
    g_autofree char *out = NULL;
    bool ring = accel == GUEST_ACCEL_KVM_RING;
    QDict *info;

    if (!skip && ring && dirty_ring_stalls_guest(vm.qts, l)) {
        skip = g_strdup("the host's KVM stalls the guest once the dirty "
                        "ring is in use: a host kernel defect");
    }
    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    qtest_qmp_assert_success(vm.qts, "{'execute': 'stop'}");
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 3, 'period': 10 }}",
        vm.log_path);
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));

    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 200,"
        " 'calc-time-unit': 'millisecond', 'mode': %s}}",
        ring ? "dirty-ring" : "dirty-bitmap");
    for (int i = 0;; i++) {
        g_assert_cmpint(i, <, 1000);
        info = qtest_qmp_assert_success_ref(vm.qts,
                                            "{'execute': 'query-dirty-rate'}");
        if (!strcmp(qdict_get_str(info, "status"), "measured")) {
            break;
        }
        qobject_unref(info);
        g_usleep(10 * 1000);
    }
    /* the VM is stopped: nothing written, nothing counted */
    g_assert_cmpint(qdict_get_int(info, "dirty-rate"), ==, 0);
    qobject_unref(info);
    if (ring) {
        qtest_qmp_assert_success(vm.qts,
            "{'execute': 'set-vcpu-dirty-limit', 'arguments': {"
            " 'dirty-rate': 100 }}");
        qtest_qmp_assert_success(vm.qts,
                                 "{'execute': 'cancel-vcpu-dirty-limit'}");
    }
    /* no snapshot to load, but not refused for the trace */
    out = qtest_hmp(vm.qts, "loadvm snap0");
    g_assert_null(strstr(out, "bitmap-trace"));
    guest_cleanup(&vm);
}

/*
 * The CPU time, in ns, of the thread of QEMU @pid named @comm (QEMU runs
 * with -name debug-threads=on), as the scheduler counts it: the first
 * field of /proc/PID/task/TID/schedstat.  -1 if there is no such thread.
 */
static int64_t thread_cpu_ns(pid_t pid, const char *comm)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    g_autoptr(GDir) tasks = g_dir_open(dir, 0, NULL);
    const char *tid;

    g_assert_nonnull(tasks);
    while ((tid = g_dir_read_name(tasks))) {
        g_autofree char *comm_path = g_build_filename(dir, tid, "comm", NULL);
        g_autofree char *stat_path = g_build_filename(dir, tid, "schedstat",
                                                      NULL);
        g_autofree char *name = NULL;
        g_autofree char *stat = NULL;

        if (g_file_get_contents(comm_path, &name, NULL, NULL) &&
            !strcmp(g_strchomp(name), comm)) {
            g_assert_true(g_file_get_contents(stat_path, &stat, NULL, NULL));
            return g_ascii_strtoll(stat, NULL, 10);
        }
    }
    return -1;
}

/*
 * What each vCPU ran, against a guest whose busy time is known.  vCPU 0
 * runs the guest's loop, which never halts (interrupts off, no I/O): it
 * runs whenever the host lets it.  vCPU 1, plugged during the trace,
 * waits for a start-up IPI that nobody sends: it is halted throughout
 * (TCG: its thread sleeps on its halt condition; KVM: in KVM_RUN, blocked
 * in the kernel).
 *
 * vCPU 0: its run times over windows 1 to N add up to its thread's CPU
 * time from the baseline's sync to the last one.  The test reads that
 * time itself, as the scheduler counts it, before the trace starts and
 * after it ended; the sum lies between that difference less what the
 * vCPU can have run in the two gaps (at most their wall time, measured
 * around the commands) and the difference itself, with 1 ms for rounding.
 * That holds however loaded the host is.  Each window's time is at most
 * the window plus the sync, in which it parks.
 *
 * vCPU 1's thread only wakes up to park and to leave the park, twice a
 * window, tens of microseconds each (KVM's halt polling adds at most its
 * halt_poll_ns, 200 us by default, per wake-up): at most 1 ms a window,
 * plus 2 % of the window for what we did not think of.  Recording wall
 * time instead would give vCPU 1 the whole window; recording nothing,
 * vCPU 0 none of it.  The list has one entry per vCPU before the plug and
 * two from the first sync after it.
 *
 * With @single (single-threaded TCG) one thread runs both vCPUs: each
 * gets half of its time, the same number, and what the windows give adds
 * up to the thread's time as above.
 */
static void vcpu_run(GuestAccel accel, bool single)
{
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot_args(&vm, accel, &one_block, 1,
        single ? "-accel tcg,thread=single "
                 "-smp 1,maxcpus=2,sockets=1,cores=2,threads=1 "
                 "-name debug-threads=on" :
                 "-smp 1,maxcpus=2,sockets=1,cores=2,threads=1 "
                 "-name debug-threads=on");
    const char *comm = single ? "ALL CPUs/TCG" :
                       accel == GUEST_ACCEL_TCG ? "CPU 0/TCG" : "CPU 0/KVM";
    g_autoptr(BTLog) log = NULL;
    int64_t before, after, run_sum = 0, halted_max = 0;
    int64_t cpu_start, cpu_end, gap_us, t;
    const int64_t period_ms = 200;
    pid_t pid;

    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    pid = qtest_pid(vm.qts);
    t = g_get_monotonic_time();
    cpu_start = thread_cpu_ns(pid, comm);
    g_assert_cmpint(cpu_start, >, 0);
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 100000,"
        " 'period': %" PRId64 " }}", vm.log_path, period_ms);
    gap_us = g_get_monotonic_time() - t;
    bt_await_completed(vm.qts, 2);
    before = bt_completed(vm.qts);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'device_add', "
                             "'arguments': {'driver': 'qemu64-x86_64-cpu', "
                             "'id': 'cpu1', 'socket-id': 0, 'core-id': 1, "
                             "'thread-id': 0}}");
    after = bt_completed(vm.qts);
    bt_await_completed(vm.qts, after + 6);
    t = g_get_monotonic_time();
    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));
    cpu_end = thread_cpu_ns(pid, comm);
    gap_us += g_get_monotonic_time() - t;

    log = bt_log_parse(vm.log_path, true);
    g_assert_cmpint(log->version, ==, 3);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        const BTLogIter *prev = g_ptr_array_index(log->iters, n - 1);
        int64_t window = (int64_t)((it->t_ms - prev->t_ms) * 1000 + 0.5);
        int64_t run0;

        g_assert_nonnull(it->vcpu_us);
        g_assert_cmpuint(it->vcpu_us->len, ==,
                         n <= before ? 1 : n >= after + 2 ? 2 :
                         it->vcpu_us->len);
        run0 = g_array_index(it->vcpu_us, int64_t, 0);
        g_assert_cmpint(run0, >=, 0);
        g_assert_cmpint(run0, <=, window + it->sync_us + 1000);
        run_sum += run0;
        if (it->vcpu_us->len == 2) {
            int64_t run1 = g_array_index(it->vcpu_us, int64_t, 1);

            /* the first window holds the new thread's start-up */
            g_assert_cmpint(run1, <=, window + it->sync_us + 1000);
            if (single) {
                g_assert_cmpint(run1, ==, run0);
                run_sum += run1;
            } else if (n >= after + 3) {
                g_assert_cmpint(run1, <=, 1000 + window / 50);
                halted_max = MAX(halted_max, run1);
            }
        }
    }
    g_assert_cmpint(run_sum, <=, (cpu_end - cpu_start) / 1000 + 1000);
    g_assert_cmpint(run_sum, >=, (cpu_end - cpu_start) / 1000 - gap_us - 1000);
    bt_msg("%s%s: the vCPUs of thread %s ran %" PRId64 " us in the "
           "windows, the thread %" PRId64 " us from before to after the "
           "trace (gaps %" PRId64 " us); the halted vCPU at most %" PRId64
           " us a window", accel_name(accel), single ? " single" : "", comm,
           run_sum, (cpu_end - cpu_start) / 1000, gap_us, halted_max);
    guest_cleanup(&vm);
}

static void test_guest_vcpu_run(const void *opaque)
{
    vcpu_run(GPOINTER_TO_INT(opaque), false);
}

static void test_guest_vcpu_run_single(const void *opaque)
{
    vcpu_run(GUEST_ACCEL_TCG, true);
}

void bt_add_guest_vm_tests(void)
{
    static const GuestAccel accels[] = { GUEST_ACCEL_TCG, GUEST_ACCEL_KVM };

    for (size_t i = 0; i < ARRAY_SIZE(accels); i++) {
        guest_add_case("/bitmap-trace/guest-vm/pause", accels[i],
                       test_guest_pause);
        guest_add_case("/bitmap-trace/guest-vm/reset-storm", accels[i],
                       test_guest_reset_storm);
        guest_add_case("/bitmap-trace/guest-vm/reboots", accels[i],
                       test_guest_reboots);
    }
    qtest_add_data_func("/bitmap-trace/guest-vm/record-replay/tcg", NULL,
                        test_guest_record);
    qtest_add_data_func("/bitmap-trace/guest-vm/vcpu-run/tcg-single", NULL,
                        test_guest_vcpu_run_single);
    qtest_add_func("/bitmap-trace/guest-vm/dirty-limit/kvm-dirty-ring",
                   test_guest_dirty_limit);
    for (size_t i = 0; i < ARRAY_SIZE(accels); i++) {
        guest_add_case("/bitmap-trace/guest-vm/round-cost", accels[i],
                       test_guest_round_cost);
        guest_add_case("/bitmap-trace/guest-vm/vcpu-run", accels[i],
                       test_guest_vcpu_run);
    }
    for (size_t i = 0; i < ARRAY_SIZE(guest_accels); i++) {
        guest_add_case("/bitmap-trace/guest-vm/ended-while-stopped",
                       guest_accels[i], test_guest_ended_while_stopped);
    }
}
