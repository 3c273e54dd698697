/*
 * QTest for bitmap-trace with a real guest: QEMU quits in every phase of a
 * round
 *
 * A fault case (see guest-fault-tests.c): QEMU must exit within
 * QUIT_TIMEOUT_MS, and leave a valid log whose end record says cancelled.
 * Linux only: the cases read /proc.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/syscall.h>
#include "qemu/cutils.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "guest.h"

#ifdef CONFIG_LINUX

static const long syscalls_write[] = { SYS_write, -1 };
static const long syscalls_futex[] = { SYS_futex, -1 };
static const long syscalls_poll[] = {
#ifdef SYS_poll
    SYS_poll,
#endif
    SYS_ppoll, -1
};

/* The thread of the trace, named with -name debug-threads=on */
#define TRACE_THREAD            "mig/bitmaptrace"

/*
 * A gate on QEMU's own trace events.  QEMU logs them (-D, the log trace
 * backend) to a FIFO; the test fills the FIFO's buffer and then enables an
 * event with trace-event-set-state.  The first thread that logs the event
 * blocks in write() exactly where the event is, until the test reads the
 * FIFO again.  This holds a thread of QEMU at a chosen place with no hook
 * in QEMU: the events are QEMU's own, and the wait is the one any slow
 * reader of -D would cause.
 */
typedef struct EventGate {
    char *path;
    int rfd;                    /* the test's read end */
    int wfd;                    /* the test's write end, to fill it */
} EventGate;

static void gate_open(EventGate *g, const char *dir)
{
    g->path = g_build_filename(dir, "events", NULL);
    g->rfd = serial_fifo_open(g->path);
    g->wfd = open(g->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    g_assert_cmpint(g->wfd, >=, 0);
#ifdef F_SETPIPE_SZ
    /* a smaller buffer is quicker to fill; a failure only costs time */
    fcntl(g->wfd, F_SETPIPE_SZ, 4096);
#endif
}

/* Fill the FIFO to the last byte, then enable @event in QEMU */
static void gate_shut(EventGate *g, QTestState *qts, const char *event)
{
    static const char fill[4096];
    size_t chunk = sizeof(fill);

    while (chunk) {
        ssize_t n = write(g->wfd, fill, chunk);

        if (n < 0) {
            g_assert_cmpint(errno, ==, EAGAIN);
            chunk /= 2;
        }
    }
    qtest_qmp_assert_success(qts,
        "{'execute': 'trace-event-set-state',"
        " 'arguments': {'name': %s, 'enable': true}}", event);
}

static void gate_close(EventGate *g)
{
    if (g->path) {
        close(g->rfd);
        close(g->wfd);
        g_free(g->path);
    }
}

/*
 * Quit in every phase of a round.  Each attempt boots a guest, traces
 * it, gets the trace thread (or a vCPU it waits for) into one phase and
 * sends quit: QEMU must exit within QUIT_TIMEOUT_MS, and the log must be a
 * valid log whose end record says cancelled (quit stops the trace, which
 * takes a last round).  How each phase is reached:
 *
 * - wait: a period of 10 s; quit once iteration 0 is written and the
 *   thread sleeps (in futex) for round 1; QEMU must exit long before the
 *   period is over.
 * - park (gathering the vCPUs, BQL dropped): the vCPU is held in a trace
 *   event of its own (memory_notdirty_write_access under TCG, the write
 *   after a round re-armed tracking; kvm_vcpu_ioctl under KVM, before
 *   KVM_RUN) by the event gate, so it cannot park; once the trace thread
 *   sleeps and takes no more rounds, it waits for that vCPU.
 * - sync/harvest (BQL held, vCPUs parked): a DIMM is plugged, and the
 *   round that finds its RAM block logs bitmap_trace_block_added from within
 *   the sync: the gate holds the trace thread there.
 * - zero scan: a 4 GiB guest, whose baseline (every page) the trace thread
 *   scans after the start command returned; quit is sent during that scan,
 *   which it cuts short: the event bitmap_trace_baseline_cut checks
 *   afterwards that it landed in it, or the attempt is made again (a
 *   third into the scan, whose length bitmap_trace_zero_scan gives).
 * - encode: the gate holds the trace thread in bitmap_trace_iteration,
 *   logged while it formats the round's record.
 * - write: the log is a FIFO with a 4 KiB buffer that the test stops
 *   reading: the thread waits in poll() to write the record; the test
 *   reads again right after quit, within the 0.5 s the trace waits for a
 *   reader once stopped.
 */
typedef enum QuitPhase {
    QUIT_WAIT,
    QUIT_PARK,
    QUIT_SYNC,
    QUIT_ZERO_SCAN,
    QUIT_ENCODE,
    QUIT_WRITE,
    QUIT_PHASES,
} QuitPhase;

static const char *const quit_phase_names[QUIT_PHASES] = {
    [QUIT_WAIT] = "wait",
    [QUIT_PARK] = "park",
    [QUIT_SYNC] = "sync/harvest",
    [QUIT_ZERO_SCAN] = "zero scan",
    [QUIT_ENCODE] = "encode",
    [QUIT_WRITE] = "write",
};

/* The wait phase's period: quit must not wait for it */
#define QUIT_WAIT_PERIOD_MS     10000
/* Attempts at landing in the zero scan, which is found afterwards */
#define QUIT_ZERO_SCAN_TRIES    4

static const GuestLayout dimm_block = {
    .name = "one-block-dimm",
    .machine_args = "-m 128M,slots=1,maxmem=256M",
    .hot = one_block_hot,
    .nhot = ARRAY_SIZE(one_block_hot),
    .sweep_start = 0x01000000,
    .sweep_end = 0x01400000,
};

static const GuestLayout big_block = {
    .name = "one-block-4G",
    .machine_args = "-m 4G",
    .hot = one_block_hot,
    .nhot = ARRAY_SIZE(one_block_hot),
    .sweep_start = 0x01000000,
    .sweep_end = 0x01400000,
};

/*
 * From the -D log of the zero-scan attempt: when the baseline's zero scan
 * ended (wall clock, us) and how long it took.  False if not logged.
 */
/*
 * When the baseline's zero scan ended (@end_us) and how long it took
 * (@scan_us), and whether a stop cut it short (@cut), from the events
 * logged in @path
 */
static bool zero_scan_times(const char *path, int64_t *end_us,
                            int64_t *scan_us, bool *cut)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    *cut = strstr(text, ":bitmap_trace_baseline_cut ") != NULL;
    for (int i = 0; lines[i]; i++) {
        unsigned long long sec, usec, zero;
        long long n, us;
        int tid;

        /* -msg timestamp=on: "TID@SEC.USEC:event args" */
        if (sscanf(lines[i], "%d@%llu.%llu:bitmap_trace_zero_scan iter %lld "
                   "zero %llu scan %lldus", &tid, &sec, &usec, &n, &zero,
                   &us) == 6 && n == 0) {
            *end_us = sec * G_USEC_PER_SEC + usec;
            *scan_us = us;
            return true;
        }
    }
    return false;
}

/* Wait until the log at @path holds @text */
static void log_await_text(QTestState *qts, const char *path,
                           const char *text)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;

    for (;;) {
        g_autofree char *log = NULL;

        if (g_file_get_contents(path, &log, NULL, NULL) &&
            strstr(log, text)) {
            return;
        }
        if (g_get_monotonic_time() > deadline) {
            bt_msg("the log never held \"%s\"", text);
            bt_qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

/*
 * One attempt at quitting QEMU in @phase.  Returns whether quit landed in
 * it (the zero scan is checked afterwards: quit is sent @zero_delay_ms
 * after the start, and @scan_ms says how long the scan took; the other
 * phases are reached for sure), or a reason to skip in @skip.
 */
static bool quit_in_phase(GuestAccel accel, QuitPhase phase,
                          int64_t zero_delay_ms, int64_t *scan_ms,
                          char **skip)
{
    GuestVM vm = { .dir = fault_dir_new() };
    const GuestLayout *l = phase == QUIT_SYNC ? &dimm_block :
                           phase == QUIT_ZERO_SCAN ? &big_block : &one_block;
    g_autofree char *fifo = g_build_filename(vm.dir, "log.fifo", NULL);
    g_autofree char *events = g_build_filename(vm.dir, "events.log", NULL);
    g_autofree char *args = NULL;
    g_autoptr(GString) stream = g_string_new(NULL);
    g_autoptr(BTLog) log = NULL;
    EventGate gate = { 0 };
    BTPipeSink sinks[2];
    int nsinks = 0, log_fd = -1;
    int64_t period = phase == QUIT_WAIT ? QUIT_WAIT_PERIOD_MS : 10;
    int64_t t_quit_us = 0, exit_ms, done;
    const char *filename;
    uint32_t passes;
    bool landed = true;

    switch (phase) {
    case QUIT_PARK:
    case QUIT_SYNC:
    case QUIT_ENCODE:
        gate_open(&gate, vm.dir);
        args = g_strdup_printf("-name debug-threads=on -D %s", gate.path);
        sinks[nsinks++] = (BTPipeSink) { .fd = gate.rfd };
        break;
    case QUIT_ZERO_SCAN:
        args = g_strdup_printf("-name debug-threads=on -D %s "
                               "-msg timestamp=on "
                               "-trace enable=bitmap_trace_zero_scan "
                               "-trace enable=bitmap_trace_baseline_cut",
                               events);
        break;
    default:
        args = g_strdup("-name debug-threads=on");
        break;
    }
    *skip = guest_boot_args(&vm, accel, l, 1, args);
    if (*skip) {
        gate_close(&gate);
        guest_cleanup(&vm);
        return false;
    }
    passes = guest_passes(vm.qts, l, 0);

    filename = vm.log_path;
    if (phase == QUIT_WRITE) {
        /* the log is a FIFO: the test reads it, until it stops */
        log_fd = serial_fifo_open(fifo);
#ifdef F_SETPIPE_SZ
        fcntl(log_fd, F_SETPIPE_SZ, 4096);
#endif
        sinks[nsinks++] = (BTPipeSink) { .fd = log_fd, .data = stream };
        filename = fifo;
    }
    bt_start(vm.qts, filename, NULL, ITERATIONS_UNTIL_CANCELLED, period);

    switch (phase) {
    case QUIT_WAIT:
        /* iteration 0 is in the log, and the thread sleeps for round 1 */
        log_await_text(vm.qts, vm.log_path, "\niter n=0 ");
        bt_qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_futex,
                                     -1, "to sleep until round 1");
        g_assert_cmpint(bt_completed(vm.qts), ==, 0);
        break;
    case QUIT_ZERO_SCAN:
        /* the scan of 4 GiB takes a while: quit in the midst of it */
        g_usleep(zero_delay_ms * 1000);
        break;
    case QUIT_WRITE:
        while ((done = bt_completed(vm.qts)) < 3) {
            struct pollfd pfd = { .fd = log_fd, .events = POLLIN };

            bt_pipe_drain(&sinks[nsinks - 1]);
            poll(&pfd, 1, 10);
        }
        /* stop reading: the FIFO fills and the trace thread waits */
        bt_qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_poll,
                                     -1, "to wait for the log's reader");
        break;
    default:
        bt_await_completed(vm.qts, 3);
        break;
    }
    if (phase != QUIT_ZERO_SCAN && phase != QUIT_WRITE) {
        /* the guest runs during the trace */
        guest_await_pass(vm.qts, l, passes);
    }

    if (phase == QUIT_PARK) {
        int fd = bt_qemu_fd_of(qtest_pid(vm.qts), gate.path);

        gate_shut(&gate, vm.qts, accel == GUEST_ACCEL_TCG ?
                  "memory_notdirty_write_access" : "kvm_vcpu_ioctl");
        bt_qemu_await_thread_in_syscall(vm.qts, "CPU 0/", syscalls_write, fd,
                                     "held in a trace event");
        /*
         * The trace thread now waits for it: after the round in progress
         * (the vCPU may be held just after one), no more rounds.  There is
         * no event for nothing happening: look twice, 20 periods apart.
         */
        g_usleep(20 * period * 1000);
        done = bt_completed_brief(vm.qts);
        g_usleep(20 * period * 1000);
        g_assert_cmpint(bt_completed_brief(vm.qts), ==, done);
        g_assert_true(bt_qemu_thread_in_syscall(qtest_pid(vm.qts), TRACE_THREAD,
                                             syscalls_futex, -1));
    } else if (phase == QUIT_SYNC || phase == QUIT_ENCODE) {
        int fd = bt_qemu_fd_of(qtest_pid(vm.qts), gate.path);

        gate_shut(&gate, vm.qts, phase == QUIT_SYNC ?
                  "bitmap_trace_block_added" : "bitmap_trace_iteration");
        if (phase == QUIT_SYNC) {
            qtest_qmp_assert_success(vm.qts,
                "{'execute': 'object-add', 'arguments': {"
                " 'qom-type': 'memory-backend-ram', 'id': 'bt-hp',"
                " 'size': 134217728 }}");
            /*
             * QMP answers a command only after a main loop iteration,
             * and the round that finds the DIMM may come first and hold
             * the BQL from then on: no waiting for the answer.  The log's
             * "added" record says that the plug went through.
             */
            qtest_qmp_send(vm.qts,
                "{'execute': 'device_add', 'arguments': {"
                " 'driver': 'pc-dimm', 'id': 'bt-dimm', 'memdev': 'bt-hp'"
                " }}");
        }
        /* from here on, with the sync's BQL held, no QMP but quit */
        bt_qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_write,
                                     fd, "held in a trace event");
    }

    t_quit_us = g_get_real_time();
    qtest_qmp_send(vm.qts, "{'execute': 'quit'}");
    exit_ms = bt_qemu_await_exit(vm.qts, sinks, nsinks, QUIT_TIMEOUT_MS);

    if (phase == QUIT_ZERO_SCAN) {
        int64_t end_us = 0, scan_us = 0;
        bool cut;

        g_assert_true(zero_scan_times(events, &end_us, &scan_us, &cut));
        /* the stop cut the scan short: it landed in it, not after it */
        landed = cut;
        *scan_ms = scan_us / 1000;
        bt_msg("%s: quit sent %.1f ms into the %.1f ms zero scan of the "
                  "baseline: %s", accel_name(accel),
                  (t_quit_us - (end_us - scan_us)) / 1e3, scan_us / 1e3,
                  landed ? "in it" : "missed it");
    }
    if (phase == QUIT_WAIT) {
        /* the wait was cut short */
        g_assert_cmpint(exit_ms, <, QUIT_WAIT_PERIOD_MS / 2);
    }
    if (phase == QUIT_WRITE) {
        g_assert_true(g_file_set_contents(vm.log_path, stream->str,
                                          stream->len, NULL));
        close(log_fd);
        unlink(fifo);
    }
    log = bt_log_parse(vm.log_path, true);
    log_check_cancelled(log);
    if (phase == QUIT_SYNC) {
        bool added = false;

        /* the round quit landed in is in the log, with the block it found */
        for (guint n = 0; n < log->iters->len; n++) {
            const BTLogIter *it = g_ptr_array_index(log->iters, n);

            added |= it->added->len > 0;
        }
        g_assert_true(added);
    }
    bt_msg("%s: quit in phase %s: QEMU exited in %" PRId64 " ms, log of "
              "%u iterations, %s", accel_name(accel),
              quit_phase_names[phase], exit_ms, log->iters->len - 1,
              log->end_status);
    gate_close(&gate);
    guest_cleanup(&vm);
    return landed;
}

static char *fault_quit_phases(GuestAccel accel)
{
    int attempts[QUIT_PHASES] = { 0 }, landed[QUIT_PHASES] = { 0 };
    g_autoptr(GString) counts = g_string_new("");
    int64_t t0 = g_get_monotonic_time();

    for (int p = 0; p < QUIT_PHASES; p++) {
        int64_t delay_ms = 50;

        for (;;) {
            char *skip = NULL;
            int64_t scan_ms = 0;

            attempts[p]++;
            if (quit_in_phase(accel, p, delay_ms, &scan_ms, &skip)) {
                landed[p]++;
                break;
            }
            if (skip) {
                return skip;
            }
            /* only the zero scan is found afterwards, and may be missed */
            g_assert_cmpint(p, ==, QUIT_ZERO_SCAN);
            g_assert_cmpint(attempts[p], <, QUIT_ZERO_SCAN_TRIES);
            delay_ms = MAX(scan_ms / 3, 1);  /* a third into it */
        }
    }
    for (int p = 0; p < QUIT_PHASES; p++) {
        g_string_append_printf(counts, "%s%s %d of %d", p ? ", " : "",
                               quit_phase_names[p], landed[p], attempts[p]);
    }
    bt_msg("%s: quit landed in: %s; %.1f s", accel_name(accel),
              counts->str, (g_get_monotonic_time() - t0) / 1e6);
    return NULL;
}

void bt_add_guest_quit_tests(void)
{
    for (size_t i = 0; i < 2; i++) {
        guest_add_fault_case("/bitmap-trace/guest-quit/phases",
                             guest_accels[i], fault_quit_phases, false,
                             FAULT_CASE_TIMEOUT_S);
    }
}

#else

void bt_add_guest_quit_tests(void)
{
}

#endif /* CONFIG_LINUX */
