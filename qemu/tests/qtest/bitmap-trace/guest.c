/*
 * QTest for bitmap-trace with a real guest: the guest, its layouts and
 * accelerators, booting it, and the probes of what the host's KVM can do
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/bswap.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "guest.h"

#ifdef CONFIG_LINUX
#include <sys/ioctl.h>
#include "linux/kvm.h"
#endif

const GuestAccel guest_accels[3] = {
    GUEST_ACCEL_TCG, GUEST_ACCEL_KVM, GUEST_ACCEL_KVM_RING,
};

/*
 * Hot pages in low memory (below 640 KiB and in the first MiB), on both
 * sides of the 2 MiB boundaries at 2 and 4 MiB, and high in RAM.  The first
 * one also holds the guest's pass counter.
 */
const uint32_t one_block_hot[10] = {
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

const GuestLayout one_block = {
    .name = "one-block",
    .machine_args = "-m 128M",
    .hot = one_block_hot,
    .nhot = ARRAY_SIZE(one_block_hot),
    .sweep_start = 0x01000000,
    .sweep_end = 0x01400000,
};

/* The sweep crosses from node 0 into node 1. */
const GuestLayout two_blocks = {
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

const GuestLayout smp_blocks = {
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

const char *accel_name(GuestAccel accel)
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
char *accel_unusable_reason(GuestAccel accel)
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
GArray *layout_cpu_hot(const GuestLayout *l, int cpu)
{
    GArray *hot = g_array_new(false, false, sizeof(uint32_t));

    g_array_append_vals(hot, l->hot, l->nhot);
    for (size_t j = 0; j < l->npriv; j++) {
        uint32_t a = l->priv[j] + cpu * l->priv_stride;

        g_array_append_val(hot, a);
    }
    return hot;
}

bool layout_is_hot(const GuestLayout *l, int ncpus, uint64_t pfn)
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

bool layout_in_sweep(const GuestLayout *l, uint64_t pfn)
{
    return pfn >= l->sweep_start >> GUEST_PAGE_BITS &&
           pfn < l->sweep_end >> GUEST_PAGE_BITS;
}

static uint32_t layout_slice_size(const GuestLayout *l, int ncpus)
{
    return (l->sweep_end - l->sweep_start) / ncpus;
}

/* The first page and the number of pages of vCPU @cpu's sweep slice */
uint64_t layout_slice(const GuestLayout *l, int ncpus, int cpu,
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
bool layout_is_code(uint64_t pfn)
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
int serial_fifo_open(const char *path)
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
int serial_await_signals(int fd, unsigned char sig, int n,
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
            bt_msg("QEMU closed the guest's serial port");
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
        bt_msg("the guest did not boot in %d ms", FIRST_PASS_TIMEOUT_MS);
        g_assert_not_reached();
    }
}

/* Wait until every vCPU of the booted guest completed its first pass. */
void serial_await_passes(int fd, int ncpus)
{
    int got = serial_await_signals(fd, SYM_PASS_SIGNAL, ncpus,
                                   FIRST_PASS_TIMEOUT_MS);

    if (got < ncpus) {
        bt_msg("only %d of the guest's %d vCPUs finished a pass in %d ms",
                  got, ncpus, FIRST_PASS_TIMEOUT_MS);
        g_assert_not_reached();
    }
}

/* The pass counter of vCPU @cpu */
uint32_t guest_passes(QTestState *qts, const GuestLayout *l, int cpu)
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
bool dirty_ring_stalls_guest(QTestState *qts, const GuestLayout *l)
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

const char *event_name(GuestEvent event)
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

gint cmp_int64(gconstpointer a, gconstpointer b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * Boot the guest on @ncpus vCPUs, with @extra on QEMU's command line (its
 * -accel, if it has one, instead of @accel's), and wait for the first full
 * pass of each.  A subprocess takes the directory
 * its parent made (BT_GUEST_DIR).  Returns a reason to skip the case, or
 * NULL.
 */
char *guest_boot_args(GuestVM *vm, GuestAccel accel,
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
                          strstr(extra, "-accel ") ? "" :
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

char *guest_boot(GuestVM *vm, GuestAccel accel, const GuestLayout *l,
                 int ncpus)
{
    return guest_boot_args(vm, accel, l, ncpus, "");
}

/* Remove what guest_boot() left in directory @dir, and @dir */
static void guest_dir_remove(const char *dir)
{
    static const char *const files[] = {
        "guest.img", "serial", "trace.log", "skip",
        "events", "events.log", "log.fifo", "replay.bin",
    };

    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        g_autofree char *path = g_build_filename(dir, files[i], NULL);

        unlink(path);
    }
    rmdir(dir);
}

void guest_cleanup(GuestVM *vm)
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

/*
 * Whether the host's KVM runs a guest on several vCPUs, as far as this
 * guest needs: the APs come up through INIT-SIPI-SIPI and run.  Asked once,
 * by the case SMP_PROBE_PATH in a subprocess.
 */
#define SMP_PROBE_TIMEOUT_S 60

void smp_probe_child(void)
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
    bt_msg("KVM, 2 vCPUs: %d of them finished a pass in 10 s; pass "
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
bool run_subprocess(const char *path, int timeout_s, char **skip)
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
        bt_msg("%s did not finish in %d s: a wedged QEMU or trace? "
                  "(killed; its QEMU dies with it)", full ?: "the case",
                  timeout_s);
    }
    guest_dir_remove(dir);
    return passed;
}

const char *kvm_smp_unusable_reason(void)
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

/*
 * Whether the host's KVM can trace with the dirty ring at all: asked once,
 * of a guest on one vCPU, by the case RING_PROBE_PATH in a subprocess.
 */

/*
 * The stall comes and goes, and calc-dirty-rate does not always hit it:
 * probe as the cases run, on 2 vCPUs, then trace for half a second.  On
 * hosts with the defect QEMU may also abort in kvm_dirty_ring_reap_locked()
 * (KVM resets fewer ring entries than QEMU collected), which fails the
 * probe too.
 */
void ring_probe_child(void)
{
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, GUEST_ACCEL_KVM_RING,
                                       &smp_blocks, 2);
    uint32_t passes[2];

    if (skip) {
        bt_msg("%s", skip);
        g_assert_not_reached();
    }
    if (dirty_ring_stalls_guest(vm.qts, &smp_blocks)) {
        bt_msg("the guest stalls once the dirty ring is in use");
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
            bt_msg("vCPU %d stalls while tracing with the dirty ring",
                      cpu);
            g_assert_not_reached();
        }
    }
    guest_cleanup(&vm);
}

/* Also set when a case finds the stall that the probe missed */
char *kvm_ring_reason;

const char *kvm_ring_unusable_reason(void)
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

/*
 * A subprocess found that its case cannot run here: leave the reason for
 * the parent in the file "skip" of its directory.
 */
void subprocess_report_skip(const char *skip)
{
    const char *dir = g_getenv("BT_GUEST_DIR");
    g_autofree char *path = g_build_filename(dir, "skip", NULL);

    /* the case may have removed the directory with its files */
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    g_assert_true(g_file_set_contents(path, skip, -1, NULL));
}

#ifdef CONFIG_LINUX

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

void guest_add_fault_case(const char *path, GuestAccel accel, FaultFunc run,
                          bool smp, int timeout_s)
{
    FaultCase *f = g_new0(FaultCase, 1);
    g_autofree char *full = g_strdup_printf("%s/%s", path,
                                            accel_name(accel));

    f->accel = accel;
    f->run = run;
    f->smp = smp;
    f->timeout_s = timeout_s;
    qtest_add_data_func_full(full, f, test_fault, g_free);
}

#endif /* CONFIG_LINUX */

/* Check that the trace of @log ended cleanly, cancelled (by quit) */
void log_check_cancelled(const BTLog *log)
{
    g_assert_true(log->has_end);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_null(log->end_error);
    g_assert_cmpint(log->end_iterations, ==, (int64_t)log->iters->len - 1);
    g_assert_cmpint(log->end_iterations, >=, 1);
}

/* Wait until the guest's vCPU 0 has finished a pass since @passes */
void guest_await_pass(QTestState *qts, const GuestLayout *l,
                      uint32_t passes)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;

    while (guest_passes(qts, l, 0) == passes) {
        if (g_get_monotonic_time() > deadline) {
            bt_msg("the guest finished no pass in %d ms", PASS_TIMEOUT_MS);
            bt_qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

/* Make a directory for a VM of a fault case */
char *fault_dir_new(void)
{
    char *dir = g_dir_make_tmp("bitmap-trace-fault-XXXXXX", NULL);

    g_assert_nonnull(dir);
    return dir;
}

void guest_add_case(const char *path, GuestAccel accel,
                    void (*fn)(const void *))
{
    g_autofree char *full = g_strdup_printf("%s/%s", path,
                                            accel_name(accel));

    qtest_add_data_func(full, GINT_TO_POINTER(accel), fn);
}
