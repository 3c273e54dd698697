/*
 * QTest: bitmap-trace with a real guest CPU doing the writing
 *
 * Boots a boot-sector guest of ours (bitmap-trace/x86-bootblock.S) under
 * TCG, KVM with the dirty bitmap and KVM with the dirty ring, traces it and
 * checks every window of the log against the pages the guest was told to
 * write: each hot page in every window in which the guest ran (recall),
 * nothing outside the hot pages, the sweep range and the guest's own code
 * page (precision), and the whole sweep range over the trace.  The
 * expected pages come from the layout the test patched into the guest,
 * never from the log.
 *
 * The same guest runs on 1, 2, 4 and 8 vCPUs (multi-threaded TCG, KVM),
 * each vCPU with hot pages of its own and a slice of the sweep, with the
 * trace undisturbed, across a system_reset (the guest boots again and
 * brings its APs up again) and across stop and cont.  The multi-vCPU cases
 * run in a subprocess with a time limit, so that a trace or a QEMU that
 * wedges fails its case instead of hanging the test.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "bitmap-trace/log-reader.h"
#include "bitmap-trace/x86-bootblock.h"

#ifdef CONFIG_LINUX
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include "linux/kvm.h"
#endif

#define GUEST_PAGE_SIZE     SYM_PAGE_SIZE
#define GUEST_PAGE_BITS     12

/* Bounds on waiting for the guest; each case takes a few seconds. */
#define FIRST_PASS_TIMEOUT_MS   30000
#define PASS_TIMEOUT_MS         20000
/* A multi-vCPU case, boot to cleanup; a wedged one fails at this limit */
#define SMP_CASE_TIMEOUT_S      90
/* The guest boots again in a few seconds after a reset, even under KVM */
#define REBOOT_TIMEOUT_MS       20000
/* A pass takes tens of ms without dirty logging, even under nested KVM. */
#define STALL_TIMEOUT_MS        3000

/* The dirty ring size the ring cases ask for, in entries */
#define DIRTY_RING_ENTRIES  4096

typedef enum GuestAccel {
    GUEST_ACCEL_TCG,
    GUEST_ACCEL_KVM,            /* dirty bitmap, manual protect */
    GUEST_ACCEL_KVM_RING,       /* dirty ring */
} GuestAccel;

/* What happens to the VM during the trace */
typedef enum GuestEvent {
    GUEST_EVENT_NONE,
    GUEST_EVENT_RESET,          /* system_reset: the guest boots again */
    GUEST_EVENT_STOP,           /* stop, then cont */
} GuestEvent;

/*
 * What the guest writes; see x86-bootblock.S.  Every vCPU writes the
 * shared hot pages; vCPU i also writes priv[j] + i * priv_stride, and
 * sweeps slice i of ncpus equal slices of [sweep_start, sweep_end).
 */
typedef struct GuestLayout {
    const char *name;
    const char *machine_args;
    const uint32_t *hot;        /* guest-physical page addresses */
    size_t nhot;
    const uint32_t *priv;       /* of vCPU 0 */
    size_t npriv;
    uint32_t priv_stride;
    uint32_t sweep_start;       /* [start, end), page aligned */
    uint32_t sweep_end;
    /* A RAM block other than the first that must hold some hot pages */
    const char *second_block;
} GuestLayout;

typedef struct GuestCase {
    GuestAccel accel;
    const GuestLayout *layout;
    int ncpus;
    GuestEvent event;
    int64_t period_ms;
    int64_t iterations;         /* 0: until enough windows after the event */
} GuestCase;

/*
 * Windows of a trace in which something other than the guest's loop was
 * going on; empty when first > last.
 */
typedef struct GuestTraceEvents {
    int64_t quiet_first;        /* the VM was stopped throughout */
    int64_t quiet_last;
    int64_t boot_first;         /* the guest was rebooting (BIOS writes) */
    int64_t boot_last;
    int64_t back;               /* all vCPUs back from the event by then */
} GuestTraceEvents;

/*
 * Progress messages.  A subprocess runs with -q, which drops
 * g_test_message(): print TAP comments to its inherited stdout instead.
 */
static void G_GNUC_PRINTF(1, 2) guest_msg(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (g_test_subprocess()) {
        printf("# %s\n", msg);
        fflush(stdout);
    } else {
        g_test_message("%s", msg);
    }
}

/*
 * Hot pages in low memory (below 640 KiB and in the first MiB), on both
 * sides of the 2 MiB boundaries at 2 and 4 MiB, and high in RAM.  The first
 * one also holds the guest's pass counter.
 */
static const uint32_t one_block_hot[] = {
    0x00010000, 0x00090000, 0x00100000, 0x001ff000, 0x00200000,
    0x003ff000, 0x00400000, 0x00654000, 0x04321000, 0x07ffe000,
};

/*
 * Low pages and 2 MiB boundaries in node 0 (RAM block "m0"), and three
 * pages in node 1 (RAM block "m1", which does not start at ram_addr 0):
 * its first page after the sweep, one inside and its last page.
 */
static const uint32_t two_blocks_hot[] = {
    0x00010000, 0x00090000, 0x00100000, 0x001ff000, 0x00200000,
    0x003ff000, 0x00400000, 0x04321000, 0x08200000, 0x0abcd000,
    0x0ffff000,
};

/*
 * For several vCPUs: shared hot pages low, at 2 MiB boundaries and in node
 * 1; private pages low, across the 2 MiB boundary (vCPUs 4 to 7) and in
 * node 1; the sweep crosses from node 0 into node 1, so that the slices of
 * some vCPUs lie in each node.
 */
static const uint32_t smp_hot[] = {
    0x00010000, 0x00090000, 0x00100000, 0x001ff000, 0x00200000,
    0x04321000, 0x08200000, 0x0ffff000,
};

static const uint32_t smp_priv[] = {
    0x00020000, 0x001c0000, 0x08400000, 0x0f800000,
};

static const GuestLayout one_block = {
    .name = "one-block",
    .machine_args = "-m 128M",
    .hot = one_block_hot,
    .nhot = ARRAY_SIZE(one_block_hot),
    .sweep_start = 0x01000000,
    .sweep_end = 0x01400000,
};

/* The sweep crosses from node 0 into node 1. */
static const GuestLayout two_blocks = {
    .name = "two-blocks",
    .machine_args = "-m 256M "
        "-object memory-backend-ram,id=m0,size=128M "
        "-object memory-backend-ram,id=m1,size=128M "
        "-numa node,nodeid=0,memdev=m0 "
        "-numa node,nodeid=1,memdev=m1",
    .hot = two_blocks_hot,
    .nhot = ARRAY_SIZE(two_blocks_hot),
    .sweep_start = 0x07e00000,
    .sweep_end = 0x08200000,
    .second_block = "m1",
};

static const GuestLayout smp_blocks = {
    .name = "two-blocks",
    .machine_args = "-m 256M "
        "-object memory-backend-ram,id=m0,size=128M "
        "-object memory-backend-ram,id=m1,size=128M "
        "-numa node,nodeid=0,memdev=m0 "
        "-numa node,nodeid=1,memdev=m1",
    .hot = smp_hot,
    .nhot = ARRAY_SIZE(smp_hot),
    .priv = smp_priv,
    .npriv = ARRAY_SIZE(smp_priv),
    .priv_stride = 0x11000,
    .sweep_start = 0x07e00000,
    .sweep_end = 0x08200000,
    .second_block = "m1",
};

static const char *accel_name(GuestAccel accel)
{
    switch (accel) {
    case GUEST_ACCEL_TCG:
        return "tcg";
    case GUEST_ACCEL_KVM:
        return "kvm";
    case GUEST_ACCEL_KVM_RING:
        return "kvm-dirty-ring";
    }
    g_assert_not_reached();
}

/*
 * With several vCPUs the known-write cases also stop the VM, and under KVM
 * SeaBIOS leaves kvmclock on for the BSP, its pvclock structure in the
 * BIOS area (0xe8c20 here): KVM writes it at every stop (the guest-stopped
 * flag) and cont, a write the guest did not make.  Hide kvmclock, so that
 * only the guest writes its memory.
 */
static const char *accel_args(GuestAccel accel, int ncpus)
{
    switch (accel) {
    case GUEST_ACCEL_TCG:
        return ncpus > 1 ? "-accel tcg,thread=multi" : "-accel tcg";
    case GUEST_ACCEL_KVM:
        return ncpus > 1 ? "-accel kvm -cpu qemu64,-kvmclock" : "-accel kvm";
    case GUEST_ACCEL_KVM_RING:
        return ncpus > 1 ?
               "-accel kvm,dirty-ring-size=" stringify(DIRTY_RING_ENTRIES)
               " -cpu qemu64,-kvmclock" :
               "-accel kvm,dirty-ring-size=" stringify(DIRTY_RING_ENTRIES);
    }
    g_assert_not_reached();
}

/*
 * Why the accelerator of @accel cannot be used here, or NULL if it may be.
 * For KVM this is only a first check: whether the accelerator really
 * started is asked of QEMU once it runs.
 */
static char *accel_unusable_reason(GuestAccel accel)
{
#ifdef CONFIG_LINUX
    int fd, ret;
#endif

    if (accel == GUEST_ACCEL_TCG) {
        return qtest_has_accel("tcg") ? NULL :
               g_strdup("QEMU was built without TCG");
    }
    if (!qtest_has_accel("kvm")) {
        return g_strdup("KVM is not built in or /dev/kvm is not accessible");
    }
#ifdef CONFIG_LINUX
    fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return g_strdup_printf("cannot open /dev/kvm: %s", strerror(errno));
    }
    if (accel == GUEST_ACCEL_KVM_RING) {
        /* The capability is the largest ring the host allows, in bytes */
        ret = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
        if (ret < (int)(DIRTY_RING_ENTRIES * sizeof(struct kvm_dirty_gfn))) {
            close(fd);
            return g_strdup("the host's KVM has no dirty ring of "
                            stringify(DIRTY_RING_ENTRIES) " entries");
        }
    }
    close(fd);
    return NULL;
#else
    return g_strdup("KVM needs a Linux host");
#endif
}

/* The hot pages of vCPU @cpu, as addresses: the shared ones first */
static GArray *layout_cpu_hot(const GuestLayout *l, int cpu)
{
    GArray *hot = g_array_new(false, false, sizeof(uint32_t));

    g_array_append_vals(hot, l->hot, l->nhot);
    for (size_t j = 0; j < l->npriv; j++) {
        uint32_t a = l->priv[j] + cpu * l->priv_stride;

        g_array_append_val(hot, a);
    }
    return hot;
}

static bool layout_is_hot(const GuestLayout *l, int ncpus, uint64_t pfn)
{
    for (size_t i = 0; i < l->nhot; i++) {
        if (l->hot[i] >> GUEST_PAGE_BITS == pfn) {
            return true;
        }
    }
    for (int cpu = 0; cpu < ncpus; cpu++) {
        for (size_t j = 0; j < l->npriv; j++) {
            if ((l->priv[j] + cpu * l->priv_stride) >> GUEST_PAGE_BITS ==
                pfn) {
                return true;
            }
        }
    }
    return false;
}

static bool layout_in_sweep(const GuestLayout *l, uint64_t pfn)
{
    return pfn >= l->sweep_start >> GUEST_PAGE_BITS &&
           pfn < l->sweep_end >> GUEST_PAGE_BITS;
}

static uint32_t layout_slice_size(const GuestLayout *l, int ncpus)
{
    return (l->sweep_end - l->sweep_start) / ncpus;
}

/* The first page and the number of pages of vCPU @cpu's sweep slice */
static uint64_t layout_slice(const GuestLayout *l, int ncpus, int cpu,
                             uint64_t *npages)
{
    uint32_t size = layout_slice_size(l, ncpus);

    *npages = size >> GUEST_PAGE_BITS;
    return (l->sweep_start + cpu * size) >> GUEST_PAGE_BITS;
}

/*
 * The page the BIOS loads the boot sector into: the guest's code and data,
 * and the APs' trampoline, written at boot
 */
static bool layout_is_code(uint64_t pfn)
{
    return pfn >= SYM_LOAD_ADDR >> GUEST_PAGE_BITS &&
           pfn <= (SYM_LOAD_ADDR + sizeof(x86_bootblock) - 1) >>
                  GUEST_PAGE_BITS;
}

/*
 * The layout must describe what the guest can do on @ncpus vCPUs, or the
 * checks are moot.  The APIC IDs of the vCPUs are 0 to ncpus - 1 (see
 * guest_boot()); the trampoline for the APs is in the code page.
 */
static void layout_check(const GuestLayout *l, int ncpus)
{
    uint32_t slice = layout_slice_size(l, ncpus);
    g_autoptr(GArray) all = g_array_new(false, false, sizeof(uint32_t));

    g_assert_cmpint(ncpus, >=, 1);
    g_assert_cmpint(ncpus, <=, SYM_CPUS_MAX);
    g_assert_cmpuint(l->nhot, >=, 1);
    g_assert_cmpuint(l->nhot, <=, SYM_HOT_PAGES_MAX);
    g_assert_cmpuint(l->npriv, <=, SYM_PRIV_PAGES_MAX);
    g_assert_cmpuint(l->sweep_start % GUEST_PAGE_SIZE, ==, 0);
    g_assert_cmpuint(l->sweep_end % GUEST_PAGE_SIZE, ==, 0);
    g_assert_cmpuint(l->sweep_start, <, l->sweep_end);
    /* equal slices of at least two pages: see window_has_hot_round() */
    g_assert_cmpuint(l->sweep_start + slice * ncpus, ==, l->sweep_end);
    g_assert_cmpuint(slice % GUEST_PAGE_SIZE, ==, 0);
    g_assert_cmpuint(slice, >=, 2 * GUEST_PAGE_SIZE);
    g_assert_cmpuint(SYM_PASS_COUNT_OFF + 4, <=, SYM_CPU_SLOT_SIZE);
    g_assert_cmpuint(SYM_HOT_TICK_OFF + 4, <=, SYM_CPU_SLOT_SIZE);
    for (int cpu = 0; cpu < ncpus; cpu++) {
        g_autoptr(GArray) hot = layout_cpu_hot(l, cpu);
        guint skip = cpu ? l->nhot : 0;     /* the shared pages once */

        g_array_append_vals(all, &g_array_index(hot, uint32_t, skip),
                            hot->len - skip);
    }
    for (guint i = 0; i < all->len; i++) {
        uint32_t a = g_array_index(all, uint32_t, i);
        uint64_t pfn = a >> GUEST_PAGE_BITS;

        g_assert_cmpuint(a % GUEST_PAGE_SIZE, ==, 0);
        g_assert_false(layout_in_sweep(l, pfn));
        g_assert_false(layout_is_code(pfn));
        for (guint j = 0; j < i; j++) {
            g_assert_cmphex(g_array_index(all, uint32_t, j), !=, a);
        }
    }
    g_assert_false(layout_in_sweep(l, SYM_LOAD_ADDR >> GUEST_PAGE_BITS));
    g_assert_true(layout_is_code(SYM_TRAMPOLINE >> GUEST_PAGE_BITS));
}

/* Write the boot sector with @l for @ncpus patched into its slots */
static char *guest_image_create(const char *dir, const GuestLayout *l,
                                int ncpus)
{
    unsigned char img[sizeof(x86_bootblock)];
    char *path = g_build_filename(dir, "guest.img", NULL);

    g_assert_cmpuint(sizeof(img), ==, 512);
    memcpy(img, x86_bootblock, sizeof(img));
    stl_le_p(img + SYM_hot_count, l->nhot);
    for (size_t i = 0; i < l->nhot; i++) {
        stl_le_p(img + SYM_hot_pages + 4 * i, l->hot[i]);
    }
    stl_le_p(img + SYM_priv_count, l->npriv);
    for (size_t i = 0; i < l->npriv; i++) {
        stl_le_p(img + SYM_priv_pages + 4 * i, l->priv[i]);
    }
    stl_le_p(img + SYM_priv_stride, l->priv_stride);
    stl_le_p(img + SYM_sweep_start, l->sweep_start);
    stl_le_p(img + SYM_sweep_slice, layout_slice_size(l, ncpus));
    g_assert_true(g_file_set_contents(path, (const char *)img, sizeof(img),
                                      NULL));
    return path;
}

/*
 * The guest's serial port goes to a FIFO, so its signal can be waited for
 * with poll() instead of re-reading a file.  Open the read end first, non
 * blocking: QEMU's open of the write end then succeeds at once.
 */
static int serial_fifo_open(const char *path)
{
    int fd;

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

/*
 * Wait for the next @n signals of the guest, for at most @timeout_ms, and
 * check that they are @sig: once per boot SYM_BOOT_SIGNAL, when the
 * firmware is done, then one SYM_PASS_SIGNAL from each vCPU after its
 * first pass.  Returns how many came.
 */
static int serial_await_signals(int fd, unsigned char sig, int n,
                                int64_t timeout_ms)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000;
    int got = 0;

    while (got < n) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left_ms = (deadline - g_get_monotonic_time()) / 1000;
        unsigned char c;
        ssize_t len;

        if (left_ms <= 0) {
            break;
        }
        if (poll(&pfd, 1, left_ms) < 0) {
            g_assert_cmpint(errno, ==, EINTR);
            continue;
        }
        len = read(fd, &c, 1);
        if (len == 1) {
            g_assert_cmphex(c, ==, sig);
            got++;
            continue;
        }
        if (len == 0) {
            guest_msg("QEMU closed the guest's serial port");
            g_assert_not_reached();
        }
        g_assert_true(errno == EAGAIN || errno == EINTR);
    }
    return got;
}

/* Wait until the guest's boot block has started. */
static void serial_await_boot(int fd)
{
    if (!serial_await_signals(fd, SYM_BOOT_SIGNAL, 1, FIRST_PASS_TIMEOUT_MS)) {
        guest_msg("the guest did not boot in %d ms", FIRST_PASS_TIMEOUT_MS);
        g_assert_not_reached();
    }
}

/* Wait until every vCPU of the booted guest completed its first pass. */
static void serial_await_passes(int fd, int ncpus)
{
    int got = serial_await_signals(fd, SYM_PASS_SIGNAL, ncpus,
                                   FIRST_PASS_TIMEOUT_MS);

    if (got < ncpus) {
        guest_msg("only %d of the guest's %d vCPUs finished a pass in %d ms",
                  got, ncpus, FIRST_PASS_TIMEOUT_MS);
        g_assert_not_reached();
    }
}

/* The pass counter of vCPU @cpu */
static uint32_t guest_passes(QTestState *qts, const GuestLayout *l, int cpu)
{
    return qtest_readl(qts, l->hot[0] + SYM_PASS_COUNT_OFF +
                       cpu * SYM_CPU_SLOT_SIZE);
}

/*
 * On some hosts KVM stops the guest for good once dirty logging with the
 * dirty ring is on: the vCPU keeps exiting with KVM_EXIT_DIRTY_RING_FULL
 * while its ring holds nothing QEMU can collect.  Probe with QEMU's own
 * user of the dirty ring, calc-dirty-rate, before tracing: on such a host
 * the case is skipped with the reason instead of failing on a defect that
 * bitmap-trace cannot work around.
 */
static bool dirty_ring_stalls_guest(QTestState *qts, const GuestLayout *l)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    uint32_t passes;

    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {"
        " 'calc-time': 200, 'calc-time-unit': 'millisecond',"
        " 'mode': 'dirty-ring' }}");
    /* calc-dirty-rate has no completion event */
    for (;;) {
        QDict *info = qtest_qmp_assert_success_ref(qts,
                          "{'execute': 'query-dirty-rate'}");
        bool measured = !strcmp(qdict_get_str(info, "status"), "measured");

        qobject_unref(info);
        if (measured) {
            break;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }

    passes = guest_passes(qts, l, 0);
    deadline = g_get_monotonic_time() + STALL_TIMEOUT_MS * 1000;
    while (guest_passes(qts, l, 0) == passes) {
        if (g_get_monotonic_time() > deadline) {
            return true;
        }
        g_usleep(1000);
    }
    return false;
}

/* Iterations run with no end of their own until the test cancels them */
#define ITERATIONS_UNTIL_CANCELLED  100000

static int64_t trace_completed(QTestState *qts)
{
    QDict *info = qtest_qmp_assert_success_ref(qts,
                      "{'execute': 'query-bitmap-trace'}");
    int64_t done = qdict_get_int(info, "completed-iterations");

    qobject_unref(info);
    return done;
}

/*
 * QEMU stopped making progress: show where its threads wait (a system call
 * number and its first arguments), then fail at once.  Kill it first, as
 * it could not quit (its main loop or the trace, which quitting joins, is
 * stuck) and libqtest would wait for it.
 */
static void G_NORETURN qemu_wedged(QTestState *qts)
{
    pid_t pid = qtest_pid(qts);
#ifdef CONFIG_LINUX
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    GDir *tasks = g_dir_open(dir, 0, NULL);
    const char *tid;

    while (tasks && (tid = g_dir_read_name(tasks))) {
        static const char *const files[] = { "comm", "wchan", "syscall" };
        g_autoptr(GString) line = g_string_new("");

        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
            g_autofree char *path = g_build_filename(dir, tid, files[i],
                                                     NULL);
            g_autofree char *text = NULL;

            if (g_file_get_contents(path, &text, NULL, NULL)) {
                g_string_append_printf(line, " %s=%s", files[i],
                                       g_strstrip(text));
            }
        }
        guest_msg("QEMU thread %s:%s", tid, line->str);
    }
    if (tasks) {
        g_dir_close(tasks);
    }
#endif
    kill(pid, SIGKILL);
    g_assert_not_reached();
}

/* Iterations have no event of their own: poll query-bitmap-trace, bounded */
static void trace_await_completed(QTestState *qts, int64_t n)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    int64_t done;

    while ((done = trace_completed(qts)) < n) {
        if (g_get_monotonic_time() > deadline) {
            guest_msg("the trace is stuck: %" PRId64 " iterations complete, "
                      "waited %d ms for %" PRId64, done, PASS_TIMEOUT_MS, n);
            qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

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
static bool trace_await_full_pass(QTestState *qts, const GuestCase *c,
                                  const uint32_t *passes_at_start)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    int64_t iterations = c->iterations ?: ITERATIONS_UNTIL_CANCELLED;
    QDict *info;
    int64_t done;

    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        while (guest_passes(qts, c->layout, cpu) - passes_at_start[cpu] < 2) {
            if (g_get_monotonic_time() > deadline) {
                guest_msg("vCPU %d of the guest finished no pass in %d ms "
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
        guest_msg("trace of %" PRId64 " x %" PRId64 " ms too short for "
                  "a full pass of the guest (%" PRId64 " iterations "
                  "done when it finished one)", iterations,
                  c->period_ms, done);
        g_assert_not_reached();
    }
    qobject_unref(info);
    return true;
}

/* A booted guest and the files it needs */
typedef struct GuestVM {
    char *dir;
    char *image;
    char *serial;
    char *log_path;
    int serial_fd;
    QTestState *qts;
} GuestVM;

/* Cancel the trace and wait until it ends */
static void trace_cancel(QTestState *qts)
{
    QDict *ev;

    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"), ==,
                    "cancelled");
    qobject_unref(ev);
}

/*
 * Once the guest is back from the event, wait until every vCPU has run a
 * whole pass again: a starved vCPU may need more than the windows below to
 * be seen running.
 */
static void trace_await_all_back(QTestState *qts, const GuestCase *c)
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
static int64_t windows_around_event(const GuestCase *c)
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
    ev->boot_first = trace_completed(vm->qts) + 1;
    qtest_qmp_assert_success(vm->qts, "{'execute': 'system_reset'}");
    guest_msg("system_reset: %" PRId64 " iterations complete",
              ev->boot_first - 1);
    if (!serial_await_signals(vm->serial_fd, SYM_BOOT_SIGNAL, 1,
                              REBOOT_TIMEOUT_MS)) {
        guest_msg("the guest did not boot again in %d ms after "
                  "system_reset: QEMU's reset is stuck", REBOOT_TIMEOUT_MS);
        qemu_wedged(vm->qts);
    }
    ev->boot_last = trace_completed(vm->qts) + 2;
    serial_await_passes(vm->serial_fd, c->ncpus);
    ev->back = trace_completed(vm->qts) + 2;
    guest_msg("reset: the firmware ran in windows %" PRId64 "-%" PRId64
              ", all %d vCPUs back by window %" PRId64, ev->boot_first,
              ev->boot_last, c->ncpus, ev->back);
    trace_await_all_back(vm->qts, c);
    trace_await_completed(vm->qts, ev->back + windows_around_event(c));
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
    stopped = trace_completed(vm->qts);
    guest_msg("stop: %" PRId64 " iterations complete", stopped);
    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        passes[cpu] = guest_passes(vm->qts, c->layout, cpu);
    }
    trace_await_completed(vm->qts, stopped + 5);
    for (int cpu = 0; cpu < c->ncpus; cpu++) {
        g_assert_cmpuint(guest_passes(vm->qts, c->layout, cpu), ==,
                         passes[cpu]);
    }
    resumed = trace_completed(vm->qts);
    qtest_qmp_assert_success(vm->qts, "{'execute': 'cont'}");
    guest_msg("cont: %" PRId64 " iterations complete", resumed);
    ev->quiet_first = stopped + 3;
    ev->quiet_last = resumed;
    ev->back = resumed + 1;
    trace_await_all_back(vm->qts, c);
    trace_await_completed(vm->qts, resumed + windows_around_event(c));
}

/*
 * Run the trace of @c, logging to the VM's log, until it completes; or
 * with an event, until enough windows after it, then cancel it.  Returns a
 * reason to skip the case, or NULL.
 */
static char *trace_run(GuestVM *vm, const GuestCase *c, GuestTraceEvents *ev)
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
        trace_await_completed(qts, trace_completed(qts) +
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
    trace_cancel(qts);
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
static bool window_has_hot_round(const BTLogIter *it, const GuestLayout *l,
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

static const char *event_name(GuestEvent event)
{
    switch (event) {
    case GUEST_EVENT_NONE:
        return "known-writes";
    case GUEST_EVENT_RESET:
        return "reset";
    case GUEST_EVENT_STOP:
        return "stop-cont";
    }
    g_assert_not_reached();
}

static gint cmp_int64(gconstpointer a, gconstpointer b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
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
static void log_check(const BTLog *log, const GuestCase *c,
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

        g_assert_cmpint(log->version, ==, 2);
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
            guest_msg("window %u (%.3f ms, %" PRIu64 " pages, sync %"
                      PRId64 " us, harvest %" PRId64 " us) misses hot pages "
                      "of vCPUs that ran a round in it:%s", n,
                      it->t_ms - prev->t_ms, it->dirty, it->sync_us,
                      it->harvest_us, missed->str);
        }
        if (idle->len && ncpus > 1 && g_test_verbose()) {
            guest_msg("window %u: no round of hot writes by vCPU%s", n,
                      idle->str);
        }

        if (quiet && it->dirty + it->unmapped) {
            quiet_listed += it->dirty + it->unmapped;
            guest_msg("window %u lists %" PRIu64 " pages while the VM was "
                      "stopped", n, it->dirty + it->unmapped);
        }

        /*
         * Every page the guest writes holds a non-zero counter from its
         * first write on, so no page a window lists is a zero page.
         */
        if (it->zero) {
            zero_listed += it->zero;
            guest_msg("window %u lists %" PRIu64 " zero pages", n, it->zero);
        }

        listed += it->pfns->len + it->unmapped;
        outside += it->unmapped;
        for (guint i = 0; i < it->unmapped_pages->len; i++) {
            guest_msg("window %u lists unmapped page %s", n,
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
                guest_msg("window %u lists page %" PRIx64
                          ", which the guest does not write", n, pfn);
            }
        }
    }
    for (uint64_t i = 0; i < sweep_pages; i++) {
        if (sweep_seen[i]) {
            sweep_covered++;
        } else {
            guest_msg("no window lists sweep page %" PRIx64,
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
        guest_msg("%s %s %d vCPU%s %s period %" PRId64 " ms: recall %.2f%% "
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
        guest_msg("timing %s %d vCPU%s %s period %" PRId64 " ms: "
                  "sync-us %s; harvest-us %s", accel_name(c->accel), ncpus,
                  ncpus > 1 ? "s" : "", event_name(c->event), c->period_ms,
                  sync_str, harvest_str);
        if (l->second_block) {
            guest_msg("all %u hot pages of block %s listed in %" PRIu64
                      "/%" PRIu64 " windows", second_hot->len,
                      l->second_block, second_block_windows, windows);
        }
        if (ev->boot_first <= ev->boot_last) {
            guest_msg("windows %" PRId64 "-%" PRId64 " (the reboot) list %"
                      PRIu64 " pages, not checked",
                      ev->boot_first, ev->boot_last, boot_listed);
        }
        if (ev->quiet_first <= ev->quiet_last) {
            guest_msg("windows %" PRId64 "-%" PRId64 " (VM stopped) list %"
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

/*
 * Boot the guest on @ncpus vCPUs, with @extra on QEMU's command line, and
 * wait for the first full pass of each.  A subprocess takes the directory
 * its parent made (BT_GUEST_DIR).  Returns a reason to skip the case, or
 * NULL.
 */
static char *guest_boot_args(GuestVM *vm, GuestAccel accel,
                             const GuestLayout *l, int ncpus,
                             const char *extra)
{
    char *skip = accel_unusable_reason(accel);
    g_autofree char *smp = NULL;
    const char *dir = g_getenv("BT_GUEST_DIR");

    if (skip) {
        return skip;
    }
    layout_check(l, ncpus);
    if (!vm->dir) {             /* unless the caller made it */
        vm->dir = dir ? g_strdup(dir) :
                  g_dir_make_tmp("bitmap-trace-guest-XXXXXX", NULL);
    }
    g_assert_nonnull(vm->dir);
    vm->image = guest_image_create(vm->dir, l, ncpus);
    vm->serial = g_build_filename(vm->dir, "serial", NULL);
    vm->log_path = g_build_filename(vm->dir, "trace.log", NULL);
    vm->serial_fd = serial_fifo_open(vm->serial);
    /* one socket of ncpus cores, one thread each: APIC IDs 0..ncpus-1 */
    smp = ncpus > 1 ? g_strdup_printf("-smp %d,sockets=1,cores=%d,threads=1",
                                      ncpus, ncpus) : g_strdup("");
    vm->qts = qtest_initf("-M pc -nodefaults %s %s %s %s "
                          "-serial file:%s -drive file=%s,format=raw",
                          accel_args(accel, ncpus), smp, l->machine_args,
                          extra, vm->serial, vm->image);

    /* libqtest adds "-accel qtest", which QEMU falls back to */
    if (accel != GUEST_ACCEL_TCG) {
        QDict *kvm = qtest_qmp_assert_success_ref(vm->qts,
                                                  "{'execute': 'query-kvm'}");
        bool enabled = qdict_get_bool(kvm, "enabled");

        qobject_unref(kvm);
        if (!enabled) {
            return g_strdup("the KVM accelerator did not start "
                            "(QEMU's stderr tells why)");
        }
    }
    serial_await_boot(vm->serial_fd);
    serial_await_passes(vm->serial_fd, ncpus);
    return NULL;
}

static char *guest_boot(GuestVM *vm, GuestAccel accel, const GuestLayout *l,
                        int ncpus)
{
    return guest_boot_args(vm, accel, l, ncpus, "");
}

/* Remove what guest_boot() left in directory @dir, and @dir */
static void guest_dir_remove(const char *dir)
{
    static const char *const files[] = {
        "guest.img", "serial", "trace.log", "skip",
        "events", "events.log", "log.fifo",
    };

    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        g_autofree char *path = g_build_filename(dir, files[i], NULL);

        unlink(path);
    }
    rmdir(dir);
}

static void guest_cleanup(GuestVM *vm)
{
    if (vm->qts) {
        qtest_quit(vm->qts);
        close(vm->serial_fd);
        guest_dir_remove(vm->dir);
    }
    g_free(vm->dir);
    g_free(vm->image);
    g_free(vm->serial);
    g_free(vm->log_path);
}

/* Run case @c.  Returns a reason to skip it, or NULL. */
static char *guest_case_run(const GuestCase *c)
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
    guest_msg("%s %s %d vCPU%s %s period %" PRId64 " ms took %.1f s",
              accel_name(c->accel), l->name, c->ncpus,
              c->ncpus > 1 ? "s" : "", event_name(c->event), c->period_ms,
              (g_get_monotonic_time() - t0) / 1e6);
    guest_cleanup(&vm);
    return NULL;
}

static void test_guest(const void *opaque)
{
    g_autofree char *skip = guest_case_run(opaque);

    if (skip) {
        g_test_skip(skip);
    }
}

/*
 * Whether the host's KVM runs a guest on several vCPUs, as far as this
 * guest needs: the APs come up through INIT-SIPI-SIPI and run.  Asked once,
 * by the case /bitmap-trace-guest/kvm/smp-probe in a subprocess.
 */
#define SMP_PROBE_PATH      "/bitmap-trace-guest/kvm/smp-probe"
#define SMP_PROBE_TIMEOUT_S 60

static void smp_probe_child(void)
{
    GuestVM vm = { 0 };
    g_autofree char *skip = accel_unusable_reason(GUEST_ACCEL_KVM);
    const GuestLayout *l = &smp_blocks;
    int got;

    g_assert_null(skip);
    layout_check(l, 2);
    vm.dir = g_strdup(g_getenv("BT_GUEST_DIR"));
    vm.image = guest_image_create(vm.dir, l, 2);
    vm.serial = g_build_filename(vm.dir, "serial", NULL);
    vm.log_path = g_build_filename(vm.dir, "trace.log", NULL);
    vm.serial_fd = serial_fifo_open(vm.serial);
    vm.qts = qtest_initf("-M pc -nodefaults -accel kvm "
                         "-smp 2,sockets=1,cores=2,threads=1 %s "
                         "-serial file:%s -drive file=%s,format=raw",
                         l->machine_args, vm.serial, vm.image);
    g_assert_cmpint(serial_await_signals(vm.serial_fd, SYM_BOOT_SIGNAL, 1,
                                         10000), ==, 1);
    got = serial_await_signals(vm.serial_fd, SYM_PASS_SIGNAL, 2, 10000);
    guest_msg("KVM, 2 vCPUs: %d of them finished a pass in 10 s; pass "
              "counters %u %u", got, guest_passes(vm.qts, l, 0),
              guest_passes(vm.qts, l, 1));
    g_assert_cmpint(got, ==, 2);
    guest_cleanup(&vm);
}

/*
 * Run @path in a subprocess with a directory of its own, within @timeout_s.
 * A case that the subprocess found it cannot run leaves the reason in the
 * file "skip" there: returned in @skip.
 */
static bool run_subprocess(const char *path, int timeout_s, char **skip)
{
    g_autofree char *dir = g_dir_make_tmp("bitmap-trace-guest-XXXXXX", NULL);
    bool passed;
    /* qtest_add_func() puts the architecture in front of the path */
    g_autofree char *full = path ? g_strdup_printf("/%s%s", qtest_get_arch(),
                                                   path) : NULL;

    g_assert_nonnull(dir);
    g_setenv("BT_GUEST_DIR", dir, true);
    g_test_trap_subprocess(full, timeout_s * G_USEC_PER_SEC,
                           G_TEST_SUBPROCESS_INHERIT_STDOUT |
                           G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_unsetenv("BT_GUEST_DIR");
    passed = g_test_trap_has_passed();
    if (skip) {
        g_autofree char *path_skip = g_build_filename(dir, "skip", NULL);

        if (!g_file_get_contents(path_skip, skip, NULL, NULL)) {
            *skip = NULL;
        }
    }
    if (g_test_trap_reached_timeout()) {
        guest_msg("%s did not finish in %d s: a wedged QEMU or trace? "
                  "(killed; its QEMU dies with it)", full ?: "the case",
                  timeout_s);
    }
    guest_dir_remove(dir);
    return passed;
}

static const char *kvm_smp_unusable_reason(void)
{
    static bool probed;
    static const char *reason;

    if (!probed) {
        probed = true;
        if (!accel_unusable_reason(GUEST_ACCEL_KVM) &&
            !run_subprocess(SMP_PROBE_PATH, SMP_PROBE_TIMEOUT_S, NULL)) {
            reason = "the host's KVM did not run a guest on 2 vCPUs: "
                     "QEMU failed, or the APs did not come up through "
                     "INIT-SIPI-SIPI (see " SMP_PROBE_PATH ")";
        }
    }
    return reason;
}

static void test_smp_probe(void)
{
    g_autofree char *skip = NULL;
    const char *reason;

    if (g_test_subprocess()) {
        smp_probe_child();
        return;
    }
    skip = accel_unusable_reason(GUEST_ACCEL_KVM);
    reason = skip ?: kvm_smp_unusable_reason();
    if (reason) {
        g_test_skip(reason);
        return;
    }
    guest_msg("the host's KVM runs a guest on 2 vCPUs: the APs came up "
              "through INIT-SIPI-SIPI and ran");
}

/*
 * Whether the host's KVM can trace with the dirty ring at all: asked once,
 * of a guest on one vCPU, by the case
 * /bitmap-trace-guest/kvm-dirty-ring/probe in a subprocess.
 */
#define RING_PROBE_PATH     "/bitmap-trace-guest/kvm-dirty-ring/probe"

/*
 * The stall comes and goes, and calc-dirty-rate does not always hit it:
 * probe as the cases run, on 2 vCPUs, then trace for half a second.  On
 * hosts with the defect QEMU may also abort in kvm_dirty_ring_reap_locked()
 * (KVM resets fewer ring entries than QEMU collected), which fails the
 * probe too.
 */
static void ring_probe_child(void)
{
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, GUEST_ACCEL_KVM_RING,
                                       &smp_blocks, 2);
    uint32_t passes[2];

    if (skip) {
        guest_msg("%s", skip);
        g_assert_not_reached();
    }
    if (dirty_ring_stalls_guest(vm.qts, &smp_blocks)) {
        guest_msg("the guest stalls once the dirty ring is in use");
        g_assert_not_reached();
    }
    qtest_qmp_assert_success(vm.qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': 50, 'period': 10 }}",
        vm.log_path);
    for (int cpu = 0; cpu < 2; cpu++) {
        passes[cpu] = guest_passes(vm.qts, &smp_blocks, cpu);
    }
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "BITMAP_TRACE_COMPLETED"));
    for (int cpu = 0; cpu < 2; cpu++) {
        if (guest_passes(vm.qts, &smp_blocks, cpu) == passes[cpu]) {
            guest_msg("vCPU %d stalls while tracing with the dirty ring",
                      cpu);
            g_assert_not_reached();
        }
    }
    guest_cleanup(&vm);
}

/* Also set when a case finds the stall that the probe missed */
static char *kvm_ring_reason;

static const char *kvm_ring_unusable_reason(void)
{
    static bool probed;
    char *reason = NULL;

    if (!probed) {
        probed = true;
        reason = accel_unusable_reason(GUEST_ACCEL_KVM_RING);
        if (!reason && !run_subprocess(RING_PROBE_PATH, SMP_PROBE_TIMEOUT_S,
                                       NULL)) {
            reason = g_strdup("the host's KVM dirty ring fails a guest on "
                              "2 vCPUs: it stalls the guest (so does "
                              "calc-dirty-rate in dirty-ring mode) or QEMU "
                              "aborts reaping it, a host kernel defect "
                              "(see " RING_PROBE_PATH ")");
        }
        if (reason && !kvm_ring_reason) {
            kvm_ring_reason = reason;
        } else {
            g_free(reason);
        }
    }
    return kvm_ring_reason;
}

static void test_ring_probe(void)
{
    const char *reason;

    if (g_test_subprocess()) {
        ring_probe_child();
        return;
    }
    reason = kvm_ring_unusable_reason();
    if (reason) {
        g_test_skip(reason);
        return;
    }
    guest_msg("the host's KVM traces with the dirty ring");
}

/*
 * A subprocess found that its case cannot run here: leave the reason for
 * the parent in the file "skip" of its directory.
 */
static void subprocess_report_skip(const char *skip)
{
    const char *dir = g_getenv("BT_GUEST_DIR");
    g_autofree char *path = g_build_filename(dir, "skip", NULL);

    /* the case may have removed the directory with its files */
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    g_assert_true(g_file_set_contents(path, skip, -1, NULL));
}

/*
 * A multi-vCPU case.  Whether it can run is found out here, the case
 * itself runs in a subprocess: a wedged QEMU or trace fails it after
 * SMP_CASE_TIMEOUT_S instead of hanging the test.
 */
static void test_guest_smp(const void *opaque)
{
    const GuestCase *c = opaque;
    g_autofree char *unusable = NULL;
    const char *reason;

    if (g_test_subprocess()) {
        g_autofree char *skip = guest_case_run(c);

        if (skip) {
            subprocess_report_skip(skip);
        }
        return;
    }
    unusable = accel_unusable_reason(c->accel);
    reason = unusable;
    if (!reason && c->accel != GUEST_ACCEL_TCG) {
        reason = kvm_smp_unusable_reason();
    }
    if (!reason && c->accel == GUEST_ACCEL_KVM_RING) {
        reason = kvm_ring_unusable_reason();
    }
    if (reason) {
        g_test_skip(reason);
        return;
    }
    if (!run_subprocess(NULL, SMP_CASE_TIMEOUT_S, &unusable)) {
        g_test_fail();
    } else if (unusable) {
        if (c->accel == GUEST_ACCEL_KVM_RING && !kvm_ring_reason) {
            kvm_ring_reason = g_strdup(unusable);
        }
        g_test_skip(unusable);
    }
}

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
    trace_await_completed(vm.qts, 2);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'stop'}");
    /*
     * Iteration stopped + 1 may be in progress and window stopped + 2 may
     * start before "stop" took effect; window stopped + 3 starts at a sync
     * that began after it.
     */
    stopped = trace_completed(vm.qts);
    passes = guest_passes(vm.qts, l, 0);
    trace_await_completed(vm.qts, stopped + 5);
    g_assert_cmpuint(guest_passes(vm.qts, l, 0), ==, passes);
    resumed = trace_completed(vm.qts);  /* window resumed ends before cont */
    qtest_qmp_assert_success(vm.qts, "{'execute': 'cont'}");
    trace_await_completed(vm.qts, resumed + 10);

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
    guest_msg("%s: windows %" PRId64 "-%" PRId64 " inside the pause "
              "list no page", accel_name(accel), stopped + 3, resumed);
    guest_cleanup(&vm);
}

/*
 * Wait until the trace is no longer active; fail, rather than hang, if it
 * does not end in @timeout_ms.  Returns its final status.
 */
static char *trace_await_end(QTestState *qts, int64_t timeout_ms)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000;

    for (;;) {
        QDict *info = qtest_qmp_assert_success_ref(qts,
                          "{'execute': 'query-bitmap-trace'}");
        char *status = g_strdup(qdict_get_str(info, "status"));

        qobject_unref(info);
        if (strcmp(status, "active")) {
            return status;
        }
        g_free(status);
        if (g_get_monotonic_time() > deadline) {
            g_test_message("the trace did not end %" PRId64 " ms after "
                           "state=false", timeout_ms);
            g_assert_not_reached();
        }
        g_usleep(10 * 1000);
    }
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
    trace_await_completed(vm.qts, 2);

    before = trace_completed(vm.qts);
    for (int i = 0; i < 200; i++) {
        qtest_qmp_assert_success(vm.qts, "{'execute': 'system_reset'}");
        g_usleep(g_test_rand_int_range(0, 3000));
    }
    /* the trace still takes rounds after the storm */
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 5);
    after = trace_completed(vm.qts);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = trace_await_end(vm.qts, 10000);
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
    trace_await_completed(vm.qts, 2);

    before = trace_completed(vm.qts);
    for (int i = 0; i < 12; i++) {
        qtest_qmp_assert_success(vm.qts, "{'execute': 'system_reset'}");
        if (!serial_await_signals(vm.serial_fd, SYM_BOOT_SIGNAL, 1,
                                  REBOOT_TIMEOUT_MS)) {
            guest_msg("reboot %d: the guest did not boot again in %d ms: "
                      "QEMU's reset or a vCPU is stuck", i,
                      REBOOT_TIMEOUT_MS);
            qemu_wedged(vm.qts);
        }
        serial_await_passes(vm.serial_fd, 2);
    }
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 5);
    g_test_message("%s: %" PRId64 " rounds during 12 reboots",
                   accel_name(accel), trace_completed(vm.qts) - before);

    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = trace_await_end(vm.qts, 10000);
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
    trace_await_completed(vm.qts, 20);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    status = trace_await_end(vm.qts, 10000);
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
 * and syncing the dirty log) and harvest-us of the windows of a 50 x
 * 10 ms trace.  Reported, not checked beyond the trace completing: the
 * numbers depend on the host and on what else it runs.
 */
static void test_guest_round_cost(const void *opaque)
{
    GuestAccel accel = GPOINTER_TO_INT(opaque);
    static const int ncpus[] = { 1, 4, 8 };
    GuestCase c = {
        .accel = accel, .layout = &one_block, .period_ms = 10,
        .iterations = 50,
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

#ifdef CONFIG_LINUX     /* the fault suite reads /proc */

/*
 * The fault suite: the guest reboots itself, CPUs are plugged and
 * unplugged, QEMU quits in every phase of a round, and a soak of 10000
 * rounds.  Whatever happens, QEMU must neither crash nor hang, the guest
 * must go on running, the trace must keep taking rounds or end cleanly,
 * and the log on disk must be a valid log with its end record.  Each case
 * runs in a subprocess with a time limit, and every wait in it is bounded:
 * a QEMU that stops making progress is killed, with where its threads
 * wait, and fails the case.
 */

/* QEMU exits within this after quit, whatever the trace was doing */
#define QUIT_TIMEOUT_MS         10000
/* Boot to cleanup of a fault case */
#define FAULT_CASE_TIMEOUT_S    150
/* The soak: 10000 rounds of 10 ms (100 s), the boot and the checks */
#define SOAK_ITERATIONS         10000
#define SOAK_TIMEOUT_S          400
/* How long a thread of QEMU may take to get where a case sends it */
#define THREAD_STATE_TIMEOUT_MS 10000

typedef char *(*FaultFunc)(GuestAccel accel);

typedef struct FaultCase {
    GuestAccel accel;
    FaultFunc run;
    bool smp;                   /* needs several vCPUs under KVM */
    int timeout_s;
} FaultCase;

static void test_fault(const void *opaque)
{
    const FaultCase *f = opaque;
    g_autofree char *unusable = NULL;
    g_autofree char *skip = NULL;
    const char *reason;

    if (g_test_subprocess()) {
        skip = f->run(f->accel);
        if (skip) {
            subprocess_report_skip(skip);
        }
        return;
    }
    unusable = accel_unusable_reason(f->accel);
    reason = unusable;
    if (!reason && f->accel != GUEST_ACCEL_TCG && f->smp) {
        reason = kvm_smp_unusable_reason();
    }
    if (reason) {
        g_test_skip(reason);
        return;
    }
    if (!run_subprocess(NULL, f->timeout_s, &skip)) {
        g_test_fail();
    } else if (skip) {
        g_test_skip(skip);
    }
}

/* completed-iterations, without the list of every iteration */
static int64_t trace_completed_brief(QTestState *qts)
{
    QDict *info = qtest_qmp_assert_success_ref(qts,
                      "{'execute': 'query-bitmap-trace',"
                      " 'arguments': {'since': %d}}",
                      ITERATIONS_UNTIL_CANCELLED + 1);
    int64_t done = qdict_get_int(info, "completed-iterations");

    qobject_unref(info);
    return done;
}

/* A pipe QEMU writes to, which the test reads into @data (or drops) */
typedef struct PipeSink {
    int fd;                     /* non-blocking; -1 once at its end */
    GString *data;              /* NULL: drop what comes */
} PipeSink;

static void pipe_drain(PipeSink *s)
{
    char buf[65536];
    ssize_t n;

    while (s->fd >= 0 && (n = read(s->fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            g_assert_true(errno == EAGAIN || errno == EINTR);
            if (errno == EAGAIN) {
                return;
            }
            continue;
        }
        if (s->data) {
            g_string_append_len(s->data, buf, n);
        }
    }
    s->fd = -1;                 /* every writer closed it */
}

/*
 * Wait until QEMU has exited, for at most @timeout_ms, reading whatever it
 * writes to the pipes @sinks meanwhile, so that none of its threads stays
 * blocked on them.  A QEMU that does not exit is wedged: the case fails
 * with where its threads wait.  Returns how long it took, in ms.
 */
static int64_t qemu_await_exit(QTestState *qts, PipeSink *sinks, int nsinks,
                               int64_t timeout_ms)
{
    int64_t t0 = g_get_monotonic_time();
    int64_t deadline = t0 + timeout_ms * 1000;
    int pidfd = -1;

#ifdef SYS_pidfd_open
    pidfd = syscall(SYS_pidfd_open, qtest_pid(qts), 0);
#endif
    g_assert_cmpint(nsinks, <=, 3);
    for (;;) {
        struct pollfd pfd[4];
        int64_t left_ms;
        int n = 0;

        for (int i = 0; i < nsinks; i++) {
            pipe_drain(&sinks[i]);
        }
        if (!qtest_probe_child(qts)) {
            break;
        }
        left_ms = (deadline - g_get_monotonic_time()) / 1000;
        if (left_ms <= 0) {
            guest_msg("QEMU did not exit in %" PRId64 " ms after quit",
                      timeout_ms);
            qemu_wedged(qts);
        }
        for (int i = 0; i < nsinks; i++) {
            if (sinks[i].fd >= 0) {
                pfd[n++] = (struct pollfd) {
                    .fd = sinks[i].fd, .events = POLLIN,
                };
            }
        }
        if (pidfd >= 0) {
            pfd[n++] = (struct pollfd) { .fd = pidfd, .events = POLLIN };
        }
        /* without a pidfd, see whether QEMU is gone every 10 ms */
        poll(pfd, n, pidfd >= 0 ? left_ms : MIN(left_ms, 10));
    }
    for (int i = 0; i < nsinks; i++) {
        pipe_drain(&sinks[i]);
    }
    if (pidfd >= 0) {
        close(pidfd);
    }
    return (g_get_monotonic_time() - t0) / 1000;
}

/* QEMU's descriptor for the file at @path, or -1 */
static int qemu_fd_of(pid_t pid, const char *path)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    g_autofree char *real = realpath(path, NULL);
    GDir *fds = g_dir_open(dir, 0, NULL);
    const char *name;
    int fd = -1;

    g_assert_nonnull(real);
    while (fds && fd < 0 && (name = g_dir_read_name(fds))) {
        g_autofree char *link = g_build_filename(dir, name, NULL);
        g_autofree char *target = g_file_read_link(link, NULL);

        if (target && !strcmp(target, real)) {
            fd = atoi(name);
        }
    }
    if (fds) {
        g_dir_close(fds);
    }
    return fd;
}

/* How many descriptors QEMU has open */
static int qemu_fd_count(pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    GDir *fds = g_dir_open(dir, 0, NULL);
    int n = 0;

    g_assert_nonnull(fds);
    while (g_dir_read_name(fds)) {
        n++;
    }
    g_dir_close(fds);
    return n;
}

/* A "Name: value kB" field of /proc/PID/status, in KiB */
static int64_t qemu_status_kib(pid_t pid, const char *field)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree char *text = NULL;
    g_autofree char *key = g_strdup_printf("\n%s:", field);
    const char *p;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    p = strstr(text, key);
    g_assert_nonnull(p);
    return g_ascii_strtoll(p + strlen(key), NULL, 10);
}

/*
 * Is a thread of QEMU whose name starts with @comm (QEMU runs with
 * -name debug-threads=on) blocked in one of the system calls @nrs (ending
 * with -1), with first argument @arg0 unless that is -1?  The kernel tells
 * in /proc/PID/task/TID/syscall.
 */
static bool qemu_thread_in_syscall(pid_t pid, const char *comm,
                                   const long *nrs, long arg0)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    GDir *tasks = g_dir_open(dir, 0, NULL);
    const char *tid;
    bool found = false;

    while (tasks && !found && (tid = g_dir_read_name(tasks))) {
        g_autofree char *comm_path = g_build_filename(dir, tid, "comm", NULL);
        g_autofree char *sc_path = g_build_filename(dir, tid, "syscall",
                                                    NULL);
        g_autofree char *name = NULL;
        g_autofree char *sc = NULL;
        const char *end;
        long nr, arg;

        if (!g_file_get_contents(comm_path, &name, NULL, NULL) ||
            !g_str_has_prefix(name, comm) ||
            !g_file_get_contents(sc_path, &sc, NULL, NULL) ||
            !g_ascii_isdigit(sc[0])) {
            continue;           /* not the thread, or running */
        }
        if (qemu_strtol(sc, &end, 10, &nr) ||
            qemu_strtol(end, &end, 0, &arg)) {
            continue;
        }
        for (int i = 0; nrs[i] >= 0; i++) {
            found |= nr == nrs[i] && (arg0 < 0 || arg == arg0);
        }
    }
    if (tasks) {
        g_dir_close(tasks);
    }
    return found;
}

/* Wait until qemu_thread_in_syscall(); fail with where QEMU waits if not */
static void qemu_await_thread_in_syscall(QTestState *qts, const char *comm,
                                         const long *nrs, long arg0,
                                         const char *what)
{
    int64_t deadline = g_get_monotonic_time() +
                       THREAD_STATE_TIMEOUT_MS * 1000;

    while (!qemu_thread_in_syscall(qtest_pid(qts), comm, nrs, arg0)) {
        if (g_get_monotonic_time() > deadline) {
            guest_msg("thread %s of QEMU did not get %s in %d ms", comm,
                      what, THREAD_STATE_TIMEOUT_MS);
            qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

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

/* Check that the trace of @log ended cleanly, cancelled (by quit) */
static void log_check_cancelled(const BTLog *log)
{
    g_assert_true(log->has_end);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_null(log->end_error);
    g_assert_cmpint(log->end_iterations, ==, (int64_t)log->iters->len - 1);
    g_assert_cmpint(log->end_iterations, >=, 1);
}

/* Start a trace of @iterations x @period_ms ms to @filename */
static void trace_start(QTestState *qts, const char *filename,
                        int64_t iterations, int64_t period_ms)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s,"
        " 'iterations': %" PRId64 ", 'period': %" PRId64 " }}",
        filename, iterations, period_ms);
}

/* Wait until the guest's vCPU 0 has finished a pass since @passes */
static void guest_await_pass(QTestState *qts, const GuestLayout *l,
                             uint32_t passes)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;

    while (guest_passes(qts, l, 0) == passes) {
        if (g_get_monotonic_time() > deadline) {
            guest_msg("the guest finished no pass in %d ms", PASS_TIMEOUT_MS);
            qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

/* Make a directory for a VM of a fault case */
static char *fault_dir_new(void)
{
    char *dir = g_dir_make_tmp("bitmap-trace-fault-XXXXXX", NULL);

    g_assert_nonnull(dir);
    return dir;
}

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
    trace_start(vm.qts, vm.log_path, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    for (int cpu = 0; cpu < c.ncpus; cpu++) {
        passes[cpu] = guest_passes(vm.qts, c.layout, cpu);
    }
    g_assert_true(trace_await_full_pass(vm.qts, &c, passes));
    trace_await_completed(vm.qts, trace_completed(vm.qts) +
                          windows_around_event(&c));

    ev.boot_first = trace_completed(vm.qts) + 1;
    for (int i = 0; i < GUEST_REBOOTS; i++) {
        uint32_t how = i % 2 ? SYM_REBOOT_KBC : SYM_REBOOT_CF9;
        int64_t before = trace_completed(vm.qts);
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
            guest_msg("reboot %d (%s): the guest did not boot again in %d "
                      "ms", i, how == SYM_REBOOT_KBC ? "0xfe to port 0x64" :
                      "0x06 to port 0xcf9", REBOOT_TIMEOUT_MS);
            qemu_wedged(vm.qts);
        }
        /* the guest took the request before it reset */
        g_assert_cmphex(qtest_readl(vm.qts, req), ==, 0);
        serial_await_passes(vm.serial_fd, c.ncpus);
        /* the trace went on through the reboot */
        trace_await_completed(vm.qts, before + 2);
    }
    ev.boot_last = trace_completed(vm.qts) + 2;
    ev.back = ev.boot_last;
    trace_await_all_back(vm.qts, &c);
    trace_await_completed(vm.qts, ev.back + windows_around_event(&c));
    guest_msg("%s: %d reboots by the guest in windows %" PRId64 "-%" PRId64,
              accel_name(accel), GUEST_REBOOTS, ev.boot_first,
              ev.boot_last);
    trace_cancel(vm.qts);

    log = bt_log_parse(vm.log_path, true);
    log_check(log, &c, &ev);
    g_clear_pointer(&log, bt_log_free);

    /*
     * Another trace, and quit while the guest reboots once more (its
     * firmware runs; under KVM the vapic option ROM has the main loop
     * queue work on the vCPUs): QEMU must exit, the log end cleanly.
     */
    trace_start(vm.qts, vm.log_path, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    trace_await_completed(vm.qts, 3);
    qtest_writel(vm.qts, req, SYM_REBOOT_CF9);
    qobject_unref(qtest_qmp_eventwait_ref(vm.qts, "RESET"));
    qtest_qmp_send(vm.qts, "{'execute': 'quit'}");
    exit_ms = qemu_await_exit(vm.qts, NULL, 0, QUIT_TIMEOUT_MS);
    log = bt_log_parse(vm.log_path, true);
    log_check_cancelled(log);
    guest_msg("%s: quit during a reboot: QEMU exited in %" PRId64 " ms, "
              "log of %u iterations", accel_name(accel), exit_ms,
              log->iters->len - 1);
    guest_msg("%s guest-reboot took %.1f s", accel_name(accel),
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
    trace_start(vm.qts, vm.log_path, ITERATIONS_UNTIL_CANCELLED,
                c.period_ms);
    passes = guest_passes(vm.qts, c.layout, 0);
    g_assert_true(trace_await_full_pass(vm.qts, &c, &passes));
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 5);

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
        trace_await_completed(vm.qts, trace_completed(vm.qts) + 5);
    }
    g_assert_cmpint(plugged, ==, CPU_PLUGGED);
    g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
    /* the guest's vCPU ran on */
    passes = guest_passes(vm.qts, c.layout, 0);
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 10);
    g_assert_cmpuint(guest_passes(vm.qts, c.layout, 0), >, passes);

    /* the last one plugged: unplug it, and again, at random times */
    props = qdict_clone_shallow(props);
    qobject_unref(resp);
    qtest_qmp_assert_success(vm.qts, "{'execute': 'device_del',"
                             " 'arguments': {'id': %s}}", id);
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 20);
    /* pending until the guest ejects it */
    g_assert_null(qtest_qmp_event_ref(vm.qts, "DEVICE_DELETED"));
    g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
    for (int i = 0; i < CPU_REPLUG_CYCLES; i++) {
        cpu_eject(vm.qts, id, core);
        g_assert_cmpint(cpus_count(vm.qts), ==, CPU_PLUGGED);
        trace_await_completed(vm.qts, trace_completed(vm.qts) + 3);

        g_free(id);
        id = g_strdup_printf("bt-cpu%d", ++plugged);
        cpu_plug(vm.qts, props, type, id);
        g_assert_cmpint(cpus_count(vm.qts), ==, 1 + CPU_PLUGGED);
        trace_await_completed(vm.qts, trace_completed(vm.qts) + 3);
        qtest_qmp_assert_success(vm.qts, "{'execute': 'device_del',"
                                 " 'arguments': {'id': %s}}", id);
        g_usleep(g_test_rand_int_range(0, c.period_ms * 1000));
    }
    cpu_eject(vm.qts, id, core);
    g_assert_cmpint(cpus_count(vm.qts), ==, CPU_PLUGGED);
    qobject_unref(props);
    /* the guest's vCPU still runs, the trace goes on */
    passes = guest_passes(vm.qts, c.layout, 0);
    trace_await_completed(vm.qts, trace_completed(vm.qts) + 10);
    guest_await_pass(vm.qts, c.layout, passes);
    guest_msg("%s: %d vCPUs plugged during the trace, one unplugged and "
              "plugged again %d times", accel_name(accel), CPU_PLUGGED,
              CPU_REPLUG_CYCLES);
    trace_cancel(vm.qts);

    log = bt_log_parse(vm.log_path, true);
    log_check(log, &c, &ev);
    guest_cleanup(&vm);     /* quit must not hang */
    return NULL;
}

/*
 * 3. quit in every phase of a round.  Each attempt boots a guest, traces
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
 *   and the event bitmap_trace_zero_scan (its end, and its length) checks
 *   afterwards that it landed in it, or the attempt is made again.
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
static bool zero_scan_times(const char *path, int64_t *end_us,
                            int64_t *scan_us)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
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
            guest_msg("the log never held \"%s\"", text);
            qemu_wedged(qts);
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
    PipeSink sinks[2];
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
        sinks[nsinks++] = (PipeSink) { .fd = gate.rfd };
        break;
    case QUIT_ZERO_SCAN:
        args = g_strdup_printf("-name debug-threads=on -D %s "
                               "-msg timestamp=on "
                               "-trace enable=bitmap_trace_zero_scan",
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
        sinks[nsinks++] = (PipeSink) { .fd = log_fd, .data = stream };
        filename = fifo;
    }
    trace_start(vm.qts, filename, ITERATIONS_UNTIL_CANCELLED, period);

    switch (phase) {
    case QUIT_WAIT:
        /* iteration 0 is in the log, and the thread sleeps for round 1 */
        log_await_text(vm.qts, vm.log_path, "\niter n=0 ");
        qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_futex,
                                     -1, "to sleep until round 1");
        g_assert_cmpint(trace_completed(vm.qts), ==, 0);
        break;
    case QUIT_ZERO_SCAN:
        /* the scan of 4 GiB takes a while: quit in the midst of it */
        g_usleep(zero_delay_ms * 1000);
        break;
    case QUIT_WRITE:
        while ((done = trace_completed(vm.qts)) < 3) {
            struct pollfd pfd = { .fd = log_fd, .events = POLLIN };

            pipe_drain(&sinks[nsinks - 1]);
            poll(&pfd, 1, 10);
        }
        /* stop reading: the FIFO fills and the trace thread waits */
        qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_poll,
                                     -1, "to wait for the log's reader");
        break;
    default:
        trace_await_completed(vm.qts, 3);
        break;
    }
    if (phase != QUIT_ZERO_SCAN && phase != QUIT_WRITE) {
        /* the guest runs during the trace */
        guest_await_pass(vm.qts, l, passes);
    }

    if (phase == QUIT_PARK) {
        int fd = qemu_fd_of(qtest_pid(vm.qts), gate.path);

        gate_shut(&gate, vm.qts, accel == GUEST_ACCEL_TCG ?
                  "memory_notdirty_write_access" : "kvm_vcpu_ioctl");
        qemu_await_thread_in_syscall(vm.qts, "CPU 0/", syscalls_write, fd,
                                     "held in a trace event");
        /*
         * The trace thread now waits for it: after the round in progress
         * (the vCPU may be held just after one), no more rounds.  There is
         * no event for nothing happening: look twice, 20 periods apart.
         */
        g_usleep(20 * period * 1000);
        done = trace_completed_brief(vm.qts);
        g_usleep(20 * period * 1000);
        g_assert_cmpint(trace_completed_brief(vm.qts), ==, done);
        g_assert_true(qemu_thread_in_syscall(qtest_pid(vm.qts), TRACE_THREAD,
                                             syscalls_futex, -1));
    } else if (phase == QUIT_SYNC || phase == QUIT_ENCODE) {
        int fd = qemu_fd_of(qtest_pid(vm.qts), gate.path);

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
        qemu_await_thread_in_syscall(vm.qts, TRACE_THREAD, syscalls_write,
                                     fd, "held in a trace event");
    }

    t_quit_us = g_get_real_time();
    qtest_qmp_send(vm.qts, "{'execute': 'quit'}");
    exit_ms = qemu_await_exit(vm.qts, sinks, nsinks, QUIT_TIMEOUT_MS);

    if (phase == QUIT_ZERO_SCAN) {
        int64_t end_us, scan_us;

        g_assert_true(zero_scan_times(events, &end_us, &scan_us));
        /* sent in the scan, and early enough for QEMU to take it in it */
        landed = t_quit_us >= end_us - scan_us && t_quit_us + 20000 <= end_us;
        *scan_ms = scan_us / 1000;
        guest_msg("%s: quit sent %.1f ms into the %.1f ms zero scan of the "
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
    guest_msg("%s: quit in phase %s: QEMU exited in %" PRId64 " ms, log of "
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
    guest_msg("%s: quit landed in: %s; %.1f s", accel_name(accel),
              counts->str, (g_get_monotonic_time() - t0) / 1e6);
    return NULL;
}

/*
 * 4. Soak: 10000 rounds of 10 ms (100 s) of a running guest under TCG.
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
    s->rss_kib = qemu_status_kib(qtest_pid(qts), "VmRSS");
    s->fds = qemu_fd_count(qtest_pid(qts));
}

/* A long wait: a poll every 100 ms is plenty */
static int64_t soak_await(QTestState *qts, int64_t n)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    int64_t done, last = -1;

    while ((done = trace_completed_brief(qts)) < n) {
        if (done != last) {
            last = done;
            deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
        } else if (g_get_monotonic_time() > deadline) {
            guest_msg("the trace is stuck at %" PRId64 " iterations",
                      done);
            qemu_wedged(qts);
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
    trace_start(vm.qts, vm.log_path, SOAK_ITERATIONS, c.period_ms);
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

    guest_msg("%s soak: VmRSS %" PRId64 " KiB after %" PRId64 " rounds, %"
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
    guest_msg("AddressSanitizer build: VmRSS not checked");
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

#endif /* CONFIG_LINUX */

/* About a second of trace; a pass takes tens of ms even under KVM. */
static const struct {
    int64_t period_ms;
    int64_t iterations;
} trace_lengths[] = {
    { 10, 100 },
    { 100, 12 },
};

static void add_cases(GuestAccel accel, const GuestLayout *layout)
{
    for (size_t i = 0; i < ARRAY_SIZE(trace_lengths); i++) {
        GuestCase *c = g_new0(GuestCase, 1);
        g_autofree char *path = NULL;

        c->accel = accel;
        c->layout = layout;
        c->ncpus = 1;
        c->period_ms = trace_lengths[i].period_ms;
        c->iterations = trace_lengths[i].iterations;
        path = g_strdup_printf("/bitmap-trace-guest/%s/%s/period-%" PRId64
                               "ms", accel_name(accel), layout->name,
                               c->period_ms);
        qtest_add_data_func_full(path, c, test_guest, g_free);
    }
}

/*
 * The multi-vCPU cases: the trace undisturbed, across a reset, across stop
 * and cont; the last two run until enough windows after the event.
 */
static void add_smp_cases(GuestAccel accel, int ncpus)
{
    static const GuestEvent events[] = {
        GUEST_EVENT_NONE, GUEST_EVENT_RESET, GUEST_EVENT_STOP,
    };

    for (size_t e = 0; e < ARRAY_SIZE(events); e++) {
        for (size_t i = 0; i < ARRAY_SIZE(trace_lengths); i++) {
            GuestCase *c = g_new0(GuestCase, 1);
            g_autofree char *path = NULL;

            c->accel = accel;
            c->layout = &smp_blocks;
            c->ncpus = ncpus;
            c->event = events[e];
            c->period_ms = trace_lengths[i].period_ms;
            c->iterations = events[e] == GUEST_EVENT_NONE ?
                            trace_lengths[i].iterations : 0;
            path = g_strdup_printf("/bitmap-trace-guest/%s/smp%d/%s/"
                                   "period-%" PRId64 "ms", accel_name(accel),
                                   ncpus, event_name(c->event),
                                   c->period_ms);
            qtest_add_data_func_full(path, c, test_guest_smp, g_free);
        }
    }
}

#ifdef CONFIG_LINUX
/* /bitmap-trace-guest/ACCEL/faults/NAME, TCG and KVM (dirty bitmap) */
static void add_fault_case(GuestAccel accel, const char *name, FaultFunc run,
                           bool smp, int timeout_s)
{
    FaultCase *f = g_new0(FaultCase, 1);
    g_autofree char *path = g_strdup_printf("/bitmap-trace-guest/%s/faults/"
                                            "%s", accel_name(accel), name);

    f->accel = accel;
    f->run = run;
    f->smp = smp;
    f->timeout_s = timeout_s;
    qtest_add_data_func_full(path, f, test_fault, g_free);
}
#endif

int main(int argc, char **argv)
{
    static const GuestAccel accels[] = {
        GUEST_ACCEL_TCG, GUEST_ACCEL_KVM, GUEST_ACCEL_KVM_RING,
    };
    static const int smp_ncpus[] = { 2, 4, 8 };

    g_test_init(&argc, &argv, NULL);

    for (size_t i = 0; i < ARRAY_SIZE(accels); i++) {
        add_cases(accels[i], &one_block);
        add_cases(accels[i], &two_blocks);
    }
    qtest_add_data_func("/bitmap-trace-guest/tcg/vm-pause",
                        GINT_TO_POINTER(GUEST_ACCEL_TCG), test_guest_pause);
    qtest_add_data_func("/bitmap-trace-guest/kvm/vm-pause",
                        GINT_TO_POINTER(GUEST_ACCEL_KVM), test_guest_pause);

    qtest_add_data_func("/bitmap-trace-guest/tcg/reset-storm",
                        GINT_TO_POINTER(GUEST_ACCEL_TCG),
                        test_guest_reset_storm);
    qtest_add_data_func("/bitmap-trace-guest/kvm/reset-storm",
                        GINT_TO_POINTER(GUEST_ACCEL_KVM),
                        test_guest_reset_storm);
    qtest_add_data_func("/bitmap-trace-guest/tcg/reboots",
                        GINT_TO_POINTER(GUEST_ACCEL_TCG),
                        test_guest_reboots);
    qtest_add_data_func("/bitmap-trace-guest/kvm/reboots",
                        GINT_TO_POINTER(GUEST_ACCEL_KVM),
                        test_guest_reboots);
    qtest_add_data_func("/bitmap-trace-guest/tcg/record-replay", NULL,
                        test_guest_record);
    qtest_add_func("/bitmap-trace-guest/kvm-dirty-ring/dirty-limit",
                   test_guest_dirty_limit);
    qtest_add_data_func("/bitmap-trace-guest/tcg/round-cost",
                        GINT_TO_POINTER(GUEST_ACCEL_TCG),
                        test_guest_round_cost);
    qtest_add_data_func("/bitmap-trace-guest/kvm/round-cost",
                        GINT_TO_POINTER(GUEST_ACCEL_KVM),
                        test_guest_round_cost);

#ifdef CONFIG_LINUX
    for (size_t i = 0; i < 2; i++) {
        add_fault_case(accels[i], "guest-reboot", fault_guest_reboot, true,
                       FAULT_CASE_TIMEOUT_S);
        add_fault_case(accels[i], "cpu-hotplug", fault_cpu_hotplug, true,
                       FAULT_CASE_TIMEOUT_S);
        add_fault_case(accels[i], "quit-phases", fault_quit_phases, false,
                       FAULT_CASE_TIMEOUT_S);
    }
    /* 100 s: once, under TCG, which every host has */
    add_fault_case(GUEST_ACCEL_TCG, "soak", fault_soak, false,
                   SOAK_TIMEOUT_S);
#endif

    qtest_add_func(SMP_PROBE_PATH, test_smp_probe);
    qtest_add_func(RING_PROBE_PATH, test_ring_probe);
    for (size_t n = 0; n < ARRAY_SIZE(smp_ncpus); n++) {
        for (size_t i = 0; i < ARRAY_SIZE(accels); i++) {
            add_smp_cases(accels[i], smp_ncpus[n]);
        }
    }

    return g_test_run();
}
