/*
 * QTest for bitmap-trace with a real guest: faults
 *
 * The guest reboots itself, CPUs are plugged and unplugged, and a soak of
 * 10000 rounds (QEMU quitting in every phase of a round is in
 * guest-quit-tests.c).  Whatever happens, QEMU must neither crash nor
 * hang, the guest must go on running, the trace must keep taking rounds
 * or end cleanly, and the log on disk must be a valid log with its end
 * record.  Each case runs in a subprocess with a time limit, and every
 * wait in it is bounded: a QEMU that stops making progress is killed,
 * with where its threads wait, and fails the case.  Linux only: the cases
 * read /proc.
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

#ifdef CONFIG_LINUX

/* The soak: 10000 rounds of 10 ms (100 s), the boot and the checks */
#define SOAK_ITERATIONS         10000
#define SOAK_TIMEOUT_S          400

/*
 * 1. The guest reboots itself, several times, during a 10 ms trace: it
 * resets the machine through the reset control register (0xcf9) or the
 * keyboard controller, when the test asks it to (a request dword in its
 * first hot page, written through qtest while it runs).  Each reset must be
 * the guest's (the RESET event says so), every reboot must complete with
 * both vCPUs running again, the trace must keep taking rounds, and the
 * windows before the first and after the last reboot must be exact.
 * Then quit during one more reboot, in another trace.
 */
#define GUEST_REBOOTS           6

static char *fault_guest_reboot(GuestAccel accel)
{
    GuestCase c = {
        .accel = accel, .layout = &one_block, .ncpus = 2,
        .event = GUEST_EVENT_RESET, .period_ms = 10,
    };
    GuestVM vm = { .dir = fault_dir_new() };
    char *skip = guest_boot(&vm, accel, c.layout, c.ncpus);
    g_autofree uint32_t *passes = g_new(uint32_t, c.ncpus);
    uint32_t req = c.layout->hot[0] + SYM_REBOOT_REQ_OFF;
    g_autoptr(BTLog) log = NULL;
    GuestTraceEvents ev = {
        .quiet_first = 1, .quiet_last = 0,
    };
    int64_t t0 = g_get_monotonic_time();
    int64_t exit_ms;

    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    bt_start(vm.qts, vm.log_path, NULL, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    for (int cpu = 0; cpu < c.ncpus; cpu++) {
        passes[cpu] = guest_passes(vm.qts, c.layout, cpu);
    }
    g_assert_true(trace_await_full_pass(vm.qts, &c, passes));
    bt_await_completed(vm.qts, bt_completed(vm.qts) +
                          windows_around_event(&c));

    ev.boot_first = bt_completed(vm.qts) + 1;
    for (int i = 0; i < GUEST_REBOOTS; i++) {
        uint32_t how = i % 2 ? SYM_REBOOT_KBC : SYM_REBOOT_CF9;
        int64_t before = bt_completed(vm.qts);
        QDict *reset;

        qtest_writel(vm.qts, req, how);
        reset = qtest_qmp_eventwait_ref(vm.qts, "RESET");
        g_assert_true(qdict_get_bool(qdict_get_qdict(reset, "data"),
                                     "guest"));
        g_assert_cmpstr(qdict_get_str(qdict_get_qdict(reset, "data"),
                                      "reason"), ==, "guest-reset");
        qobject_unref(reset);
        if (!serial_await_signals(vm.serial_fd, SYM_BOOT_SIGNAL, 1,
                                  REBOOT_TIMEOUT_MS)) {
            bt_msg("reboot %d (%s): the guest did not boot again in %d "
                      "ms", i, how == SYM_REBOOT_KBC ? "0xfe to port 0x64" :
                      "0x06 to port 0xcf9", REBOOT_TIMEOUT_MS);
            bt_qemu_wedged(vm.qts);
        }
        /* the guest took the request before it reset */
        g_assert_cmphex(qtest_readl(vm.qts, req), ==, 0);
        serial_await_passes(vm.serial_fd, c.ncpus);
        /* the trace went on through the reboot */
        bt_await_completed(vm.qts, before + 2);
    }
    ev.boot_last = bt_completed(vm.qts) + 2;
    ev.back = ev.boot_last;
    trace_await_all_back(vm.qts, &c);
    bt_await_completed(vm.qts, ev.back + windows_around_event(&c));
    bt_msg("%s: %d reboots by the guest in windows %" PRId64 "-%" PRId64,
              accel_name(accel), GUEST_REBOOTS, ev.boot_first,
              ev.boot_last);
    bt_cancel(vm.qts);

    log = bt_log_parse(vm.log_path, true);
    log_check(log, &c, &ev);
    g_clear_pointer(&log, bt_log_free);

    /*
     * Another trace, and quit while the guest reboots once more (its
     * firmware runs; under KVM the vapic option ROM has the main loop
     * queue work on the vCPUs): QEMU must exit, the log end cleanly.
     */
    bt_start(vm.qts, vm.log_path, NULL, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    bt_await_completed(vm.qts, 3);
    qtest_writel(vm.qts, req, SYM_REBOOT_CF9);
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "RESET"));
    qtest_qmp_send(vm.qts, "{'execute': 'quit'}");
    exit_ms = bt_qemu_await_exit(vm.qts, NULL, 0, QUIT_TIMEOUT_MS);
    log = bt_log_parse(vm.log_path, true);
    log_check_cancelled(log);
    bt_msg("%s: quit during a reboot: QEMU exited in %" PRId64 " ms, "
              "log of %u iterations", accel_name(accel), exit_ms,
              log->iters->len - 1);
    bt_msg("%s guest-reboot took %.1f s", accel_name(accel),
              (g_get_monotonic_time() - t0) / 1e6);
    guest_cleanup(&vm);
    return NULL;
}

/* How many vCPUs QEMU has */
static int64_t cpus_count(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-cpus-fast'}");
    QList *cpus = qdict_get_qlist(resp, "return");
    int64_t n;

    g_assert_nonnull(cpus);
    n = qlist_size(cpus);
    qobject_unref(resp);
    return n;
}

/*
 * 2. CPUs plugged during a 10 ms trace of a guest started on 1: each
 * new vCPU sits in wait-for-SIPI (the guest never wakes it), and a round
 * must park it too, without wedging: the trace keeps taking rounds after
 * every plug, the guest's vCPU runs on and its windows stay exact.  Then
 * one is unplugged, plugged again and so on, CPU_REPLUG_CYCLES times (the
 * eject at a random time in a round).  x86 CPU unplug needs the guest's
 * ACPI code, which this guest does not have: the test does what it
 * would, through qtest, on the ACPI CPU hotplug registers of PIIX4 PM
 * (hw/acpi/cpu.c).  At boot it switches to the modern interface (0
 * written to the legacy bitmap), without which device_del refuses a CPU;
 * after device_del the unplug stays pending until the "guest" ejects the
 * CPU (the eject bit of its selector), and the trace must go on
 * meanwhile; the eject then removes the vCPU and joins its thread,
 * possibly while a round waits for it to park: the vCPU must go and the
 * trace go on.
 */
#define CPU_HOTPLUG_BASE        0xaf00  /* PIIX4_CPU_HOTPLUG_IO_BASE */
#define CPU_HOTPLUG_SELECTOR    0       /* dword: the CPU (its index) */
#define CPU_HOTPLUG_FLAGS       4       /* byte */
#define CPU_HOTPLUG_EJECT       8       /* in the flags */

/* Plug a CPU with @props (of query-hotpluggable-cpus) as @id */
static void cpu_plug(QTestState *qts, QDict *props, const char *type,
                     const char *id)
{
    QDict *args = qdict_clone_shallow(props);

    qdict_put_str(args, "driver", type);
    qdict_put_str(args, "id", id);
    qtest_qmp_assert_success(qts, "{'execute': 'device_add',"
                             " 'arguments': %p}", QOBJECT(args));
}

/*
 * Eject CPU @id, of index @core, as the guest's _EJ0 would, after
 * device_del asked for it; wait until it is gone.  The CPU's unrealize
 * joins its thread, then unparents its APIC: the APIC's DEVICE_DELETED
 * says the vCPU is gone.  The CPU's own comes only when the CPU object is
 * freed, which under TCG does not happen (QEMU 10.0 keeps a reference to
 * an unplugged TCG CPU, trace or not).
 */
static void cpu_eject(QTestState *qts, const char *id, int64_t core)
{
    g_autofree char *apic_path = g_strdup_printf("/machine/peripheral/%s/"
                                                 "lapic", id);
    QDict *deleted;
    bool gone;

    qtest_outl(qts, CPU_HOTPLUG_BASE + CPU_HOTPLUG_SELECTOR, core);
    qtest_outb(qts, CPU_HOTPLUG_BASE + CPU_HOTPLUG_FLAGS, CPU_HOTPLUG_EJECT);
    do {
        deleted = qtest_qmp_eventwait_ref(qts, "DEVICE_DELETED");
        gone = !strcmp(qdict_get_str(qdict_get_qdict(deleted, "data"),
                                     "path"), apic_path);
        qobject_unref(deleted);
    } while (!gone);
}

/*
 * Unplug and plug again a CPU, this many times.  Under TCG every vCPU
 * thread QEMU ever starts takes one of max_cpus TCG contexts, never given
 * back (QEMU 10.0 aborts in tcg_register_thread() beyond, trace or not):
 * so the guest gets as many possible CPUs as it will ever have started.
 */
#define CPU_REPLUG_CYCLES       5
#define CPU_PLUGGED             3
#define CPU_MAX                 (1 + CPU_PLUGGED + CPU_REPLUG_CYCLES)

static char *fault_cpu_hotplug(GuestAccel accel)
{
    GuestCase c = {
        .accel = accel, .layout = &one_block, .ncpus = 1,
        .event = GUEST_EVENT_NONE, .period_ms = 10,
    };
    GuestVM vm = { .dir = fault_dir_new() };
    g_autofree char *smp = g_strdup_printf("-smp 1,maxcpus=%d", CPU_MAX);
    char *skip = guest_boot_args(&vm, accel, c.layout, 1, smp);
    GuestTraceEvents ev = {
        .quiet_first = 1, .quiet_last = 0, .boot_first = 1, .boot_last = 0,
    };
    g_autoptr(BTLog) log = NULL;
    g_autofree char *id = NULL;
    g_autofree char *type = NULL;
    QDict *props = NULL;
    QDict *resp;
    QListEntry *e;
    uint32_t passes;
    int plugged = 0;
    int64_t core = -1;

    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    bt_start(vm.qts, vm.log_path, NULL, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    passes = guest_passes(vm.qts, c.layout, 0);
    g_assert_true(trace_await_full_pass(vm.qts, &c, &passes));
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 5);

    /* what the guest's ACPI tables would do at boot */
    qtest_outb(vm.qts, CPU_HOTPLUG_BASE, 0);
    resp = qtest_qmp(vm.qts, "{'execute': 'query-hotpluggable-cpus'}");
    QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
        QDict *slot = qobject_to(QDict, qlist_entry_obj(e));

        if (qdict_haskey(slot, "qom-path") || plugged == CPU_PLUGGED) {
            continue;           /* plugged already, or enough */
        }
        props = qdict_get_qdict(slot, "props");
        /* one socket of CPU_MAX cores: the index of a CPU is its core */
        g_assert_cmpint(qdict_get_int(props, "socket-id"), ==, 0);
        g_assert_cmpint(qdict_get_int(props, "thread-id"), ==, 0);
        core = qdict_get_int(props, "core-id");
        g_free(type);
        type = g_strdup(qdict_get_str(slot, "type"));
        g_free(id);
        id = g_strdup_printf("bt-cpu%d", ++plugged);
        cpu_plug(vm.qts, props, type, id);
        /* the trace goes on, parking the new vCPU with the others */
        bt_await_completed(vm.qts, bt_completed(vm.qts) + 5);
    }
    g_assert_cmpint(plugged, ==, CPU_PLUGGED);
    g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
    /* the guest's vCPU ran on */
    passes = guest_passes(vm.qts, c.layout, 0);
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 10);
    g_assert_cmpuint(guest_passes(vm.qts, c.layout, 0), >, passes);

    /* the last one plugged: unplug it, and again, at random times */
    props = qdict_clone_shallow(props);
    qobject_unref(resp);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'device_del',"
                             " 'arguments': {'id': %s}}", id);
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 20);
    /* pending until the guest ejects it */
    g_assert_null(qtest_qmp_event_ref(vm.qts, "DEVICE_DELETED"));
    g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
    for (int i = 0; i < CPU_REPLUG_CYCLES; i++) {
        cpu_eject(vm.qts, id, core);
        g_assert_cmpint(cpus_count(vm.qts), ==, CPU_PLUGGED);
        bt_await_completed(vm.qts, bt_completed(vm.qts) + 3);

        g_free(id);
        id = g_strdup_printf("bt-cpu%d", ++plugged);
        cpu_plug(vm.qts, props, type, id);
        g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
        bt_await_completed(vm.qts, bt_completed(vm.qts) + 3);
        qtest_qmp_assert_success(vm.qts, "{'execute': 'device_del',"
                                 " 'arguments': {'id': %s}}", id);
        g_usleep(g_test_rand_int_range(0, c.period_ms * 1000));
    }
    cpu_eject(vm.qts, id, core);
    g_assert_cmpint(cpus_count(vm.qts), ==, CPU_PLUGGED);
    qobject_unref(props);
    /* the guest's vCPU still runs, the trace goes on */
    passes = guest_passes(vm.qts, c.layout, 0);
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 10);
    guest_await_pass(vm.qts, c.layout, passes);
    bt_msg("%s: %d vCPUs plugged during the trace, one unplugged and "
              "plugged again %d times", accel_name(accel), CPU_PLUGGED,
              CPU_REPLUG_CYCLES);
    bt_cancel(vm.qts);

    log = bt_log_parse(vm.log_path, true);
    log_check(log, &c, &ev);
    guest_cleanup(&vm);     /* quit must not hang */
    return NULL;
}

/*
 * 3. Soak: 10000 rounds of 10 ms (100 s) of a running guest under TCG.
 * QEMU's memory and descriptors must stay flat: VmRSS and the number of
 * open descriptors after 1000 rounds, 100 rounds before the end and after
 * the end.  The descriptors must not change at all while the trace runs,
 * and after its end there is one less: the log's.  Between round 1000 and
 * round 9900 the memory may grow by what the trace keeps by design, 8
 * bytes per iteration for its results (query-bitmap-trace's dirty-pages),
 * a GArray of at most 16384 of them (128 KiB) by the end, plus
 * SOAK_RSS_SLACK_KIB for the page granularity of RSS and the allocator's
 * free lists (measured here: 60 KiB in all): a leak of 64 bytes a round
 * would add 556 KiB over the 8900 rounds compared and fail.  After the end,
 * publishing the results builds them once more, a list of 10001
 * iterations and its text for the HMP monitors, which the allocator may
 * keep: SOAK_RSS_END_KIB more (measured: 160 KiB).  The log must be
 * complete, with 10000 exact windows.
 */
#define SOAK_RSS_SLACK_KIB      384
#define SOAK_RSS_RESULTS_KIB    128
#define SOAK_RSS_END_KIB        512

typedef struct SoakSample {
    int64_t rounds;
    int64_t rss_kib;
    int fds;
} SoakSample;

static void soak_sample(QTestState *qts, SoakSample *s, int64_t rounds)
{
    s->rounds = rounds;
    s->rss_kib = bt_qemu_status_kib(qtest_pid(qts), "VmRSS");
    s->fds = bt_qemu_fd_count(qtest_pid(qts));
}

/* A long wait: a poll every 100 ms is plenty */
static int64_t soak_await(QTestState *qts, int64_t n)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    int64_t done, last = -1;

    while ((done = bt_completed_brief(qts)) < n) {
        if (done != last) {
            last = done;
            deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
        } else if (g_get_monotonic_time() > deadline) {
            bt_msg("the trace is stuck at %" PRId64 " iterations",
                      done);
            bt_qemu_wedged(qts);
        }
        g_usleep(100 * 1000);
    }
    return done;
}

static char *fault_soak(GuestAccel accel)
{
    GuestCase c = {
        .accel = accel, .layout = &one_block, .ncpus = 1,
        .event = GUEST_EVENT_NONE, .period_ms = 10,
        .iterations = SOAK_ITERATIONS,
    };
    GuestTraceEvents ev = {
        .quiet_first = 1, .quiet_last = 0, .boot_first = 1, .boot_last = 0,
    };
    GuestVM vm = { .dir = fault_dir_new() };
    char *skip = guest_boot(&vm, accel, c.layout, 1);
    int64_t t0 = g_get_monotonic_time();
    g_autoptr(BTLog) log = NULL;
    SoakSample early, late, after;
    QDict *evt, *data;
    uint32_t passes;

    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    bt_start(vm.qts, vm.log_path, NULL, SOAK_ITERATIONS, c.period_ms);
    passes = guest_passes(vm.qts, c.layout, 0);
    g_assert_true(trace_await_full_pass(vm.qts, &c, &passes));

    soak_sample(vm.qts, &early, soak_await(vm.qts, 1000));
    passes = guest_passes(vm.qts, c.layout, 0);
    soak_sample(vm.qts, &late, soak_await(vm.qts, SOAK_ITERATIONS - 100));
    /* the guest ran on all along */
    g_assert_cmpuint(guest_passes(vm.qts, c.layout, 0), >, passes);

    evt = qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED");
    data = qdict_get_qdict(evt, "data");
    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "completed");
    g_assert_cmpint(qdict_get_int(data, "completed-iterations"), ==,
                    SOAK_ITERATIONS);
    qobject_unref(evt);
    soak_sample(vm.qts, &after, SOAK_ITERATIONS);

    bt_msg("%s soak: VmRSS %" PRId64 " KiB after %" PRId64 " rounds, %"
              PRId64 " KiB after %" PRId64 ", %" PRId64 " KiB after the "
              "end; open descriptors %d, %d, %d; %.1f s",
              accel_name(accel), early.rss_kib, early.rounds, late.rss_kib,
              late.rounds, after.rss_kib, early.fds, late.fds, after.fds,
              (g_get_monotonic_time() - t0) / 1e6);
    g_assert_cmpint(late.fds, ==, early.fds);
    g_assert_cmpint(after.fds, ==, early.fds - 1);     /* the log's */
#ifdef QEMU_SANITIZE_ADDRESS
    /*
     * Built with AddressSanitizer (make check-sanitizers), QEMU is too: its
     * allocator holds what is freed in a quarantine of up to 256 MiB, so
     * VmRSS grows with every allocation (94 MiB here) and says nothing of
     * leaks.  LeakSanitizer checks those at QEMU's exit; the normal build
     * checks the RSS.
     */
    bt_msg("AddressSanitizer build: VmRSS not checked");
#else
    g_assert_cmpint(late.rss_kib - early.rss_kib, <=,
                    SOAK_RSS_RESULTS_KIB + SOAK_RSS_SLACK_KIB);
    g_assert_cmpint(after.rss_kib - early.rss_kib, <=,
                    SOAK_RSS_RESULTS_KIB + SOAK_RSS_SLACK_KIB +
                    SOAK_RSS_END_KIB);
#endif

    log = bt_log_parse(vm.log_path, true);
    log_check(log, &c, &ev);
    guest_cleanup(&vm);
    return NULL;
}

/*
 * 4. QEMU exits under record/replay.  The main thread takes the replay
 * lock before the BQL and holds both in qemu_cleanup(), so at exit the
 * trace thread's last round, which parks the vCPU, waits for a vCPU that
 * waits for the replay lock.  A trace of 20 ms rounds runs on a guest
 * recorded with -icount rr=record; then QEMU is made to exit by quit, by
 * the guest (a reset under -no-reboot is a shutdown) and by SIGTERM, each
 * on a VM of its own: QEMU must exit within QUIT_TIMEOUT_MS, and the log
 * end as cancelled.  Record/replay is TCG only.
 */
typedef enum ReplayExit {
    REPLAY_EXIT_QUIT,
    REPLAY_EXIT_GUEST,
    REPLAY_EXIT_SIGTERM,
    REPLAY_EXITS,
} ReplayExit;

static const char *const replay_exit_names[REPLAY_EXITS] = {
    [REPLAY_EXIT_QUIT] = "quit",
    [REPLAY_EXIT_GUEST] = "a guest shutdown",
    [REPLAY_EXIT_SIGTERM] = "SIGTERM",
};

static char *replay_exit(GuestAccel accel, ReplayExit how)
{
    GuestVM vm = { .dir = fault_dir_new() };
    g_autofree char *extra = g_strdup_printf(
        "-icount shift=auto,rr=record,rrfile=%s/replay.bin%s", vm.dir,
        how == REPLAY_EXIT_GUEST ? " -no-reboot" : "");
    char *skip = guest_boot_args(&vm, accel, &one_block, 1, extra);
    g_autoptr(BTLog) log = NULL;
    uint32_t passes;
    int64_t exit_ms;

    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    bt_start(vm.qts, vm.log_path, NULL, ITERATIONS_UNTIL_CANCELLED, 20);
    passes = guest_passes(vm.qts, &one_block, 0);
    bt_await_completed(vm.qts, 3);
    /* the guest runs during the trace */
    guest_await_pass(vm.qts, &one_block, passes);

    switch (how) {
    case REPLAY_EXIT_QUIT:
        qtest_qmp_send(vm.qts, "{'execute': 'quit'}");
        break;
    case REPLAY_EXIT_GUEST:
        qtest_writel(vm.qts, one_block.hot[0] + SYM_REBOOT_REQ_OFF,
                     SYM_REBOOT_CF9);
        break;
    case REPLAY_EXIT_SIGTERM:
        g_assert_cmpint(kill(qtest_pid(vm.qts), SIGTERM), ==, 0);
        break;
    default:
        g_assert_not_reached();
    }
    exit_ms = bt_qemu_await_exit(vm.qts, NULL, 0, QUIT_TIMEOUT_MS);
    log = bt_log_parse(vm.log_path, true);
    log_check_cancelled(log);
    bt_msg("%s under rr=record: exit by %s: QEMU exited in %" PRId64 " ms, "
           "log of %u iterations", accel_name(accel), replay_exit_names[how],
           exit_ms, log->iters->len - 1);
    guest_cleanup(&vm);
    return NULL;
}

static char *fault_replay_exit(GuestAccel accel)
{
    for (int how = 0; how < REPLAY_EXITS; how++) {
        char *skip = replay_exit(accel, how);

        if (skip) {
            return skip;
        }
    }
    return NULL;
}

/*
 * A guest with a virtio-mem device that has plugged nothing (no driver in
 * the boot block; requested-size=0): the trace neither reads the device's
 * memory (QEMU's shared memory does not grow by its size) nor lists it,
 * while the guest's own writes are traced as usual.
 */
#define VMEM_GUEST_MIB          512

static char *fault_virtio_mem(GuestAccel accel)
{
    GuestCase c = {
        .accel = accel, .layout = &one_block, .ncpus = 1,
        .event = GUEST_EVENT_NONE, .period_ms = 20,
    };
    GuestVM vm = { .dir = fault_dir_new() };
    g_autofree char *extra = g_strdup_printf(
        "-m 128M,maxmem=4G -object memory-backend-memfd,id=vmem0,size=%dM "
        "-device virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0",
        VMEM_GUEST_MIB);
    char *skip = guest_boot_args(&vm, accel, c.layout, 1, extra);
    g_autoptr(BTLog) log = NULL;
    uint32_t passes;
    uint64_t first, last;
    int64_t shmem0, shmem1;
    QDict *resp, *data;
    uint64_t guest_pages = 0;

    if (!skip && accel == GUEST_ACCEL_KVM_RING &&
        dirty_ring_stalls_guest(vm.qts, c.layout)) {
        skip = g_strdup("the host's KVM stalls the guest once the dirty "
                        "ring is in use: a host kernel defect");
    }
    if (skip) {
        guest_cleanup(&vm);
        return skip;
    }
    resp = qtest_qmp(vm.qts, "{'execute': 'query-memory-devices'}");
    data = qdict_get_qdict(qobject_to(QDict, qlist_peek(
                               qdict_get_qlist(resp, "return"))), "data");
    first = qdict_get_int(data, "memaddr") / PAGE;
    last = first + VMEM_GUEST_MIB * (1024 * 1024 / PAGE) - 1;
    qobject_unref(resp);

    shmem0 = bt_qemu_status_kib(qtest_pid(vm.qts), "RssShmem");
    bt_start(vm.qts, vm.log_path, NULL, ITERATIONS_UNTIL_CANCELLED,
             c.period_ms);
    bt_await_baseline(vm.qts);
    passes = guest_passes(vm.qts, c.layout, 0);
    g_assert_true(trace_await_full_pass(vm.qts, &c, &passes));
    bt_await_completed(vm.qts, bt_completed(vm.qts) + 5);
    shmem1 = bt_qemu_status_kib(qtest_pid(vm.qts), "RssShmem");
    bt_msg("RssShmem %" PRId64 " KiB before the trace, %" PRId64
           " KiB during it", shmem0, shmem1);
    g_assert_cmpint(shmem1 - shmem0, <, 16 * 1024);
    qobject_unref(bt_stop(vm.qts));

    log = bt_log_parse(vm.log_path, true);
    for (guint i = 0; i < log->iters->len; i++) {
        BTLogIter *it = g_ptr_array_index(log->iters, i);

        for (guint j = 0; j < it->pfns->len; j++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, j);

            g_assert_false(pfn >= first && pfn <= last);
            guest_pages += i > 0;
        }
    }
    /* the guest's writes were traced */
    g_assert_cmpuint(guest_pages, >, 0);
    guest_cleanup(&vm);
    return NULL;
}

void bt_add_guest_fault_tests(void)
{
    for (size_t i = 0; i < 2; i++) {
        guest_add_fault_case("/bitmap-trace/guest-faults/guest-reboot",
                             guest_accels[i], fault_guest_reboot, true,
                             FAULT_CASE_TIMEOUT_S);
        guest_add_fault_case("/bitmap-trace/guest-faults/cpu-hotplug",
                             guest_accels[i], fault_cpu_hotplug, true,
                             FAULT_CASE_TIMEOUT_S);
    }
    /* the dirty ring's sync too: its flush drops the BQL */
    for (size_t i = 0; i < G_N_ELEMENTS(guest_accels); i++) {
        guest_add_fault_case("/bitmap-trace/guest-faults/virtio-mem",
                             guest_accels[i], fault_virtio_mem, true,
                             FAULT_CASE_TIMEOUT_S);
    }
    /* 100 s: once, under TCG, which every host has */
    guest_add_fault_case("/bitmap-trace/guest-faults/soak", GUEST_ACCEL_TCG,
                         fault_soak, false, SOAK_TIMEOUT_S);
    /* record/replay is TCG only */
    guest_add_fault_case("/bitmap-trace/guest-faults/replay-exit",
                         GUEST_ACCEL_TCG, fault_replay_exit, false,
                         FAULT_CASE_TIMEOUT_S);
}

#else

void bt_add_guest_fault_tests(void)
{
}

#endif /* CONFIG_LINUX */
