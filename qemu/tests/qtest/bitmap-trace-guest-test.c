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
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/bswap.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "bitmap-trace-log.h"
#include "bitmap-trace/x86-bootblock.h"

#ifdef CONFIG_LINUX
#include <sys/ioctl.h>
#include "linux/kvm.h"
#endif

#define GUEST_PAGE_SIZE     SYM_PAGE_SIZE
#define GUEST_PAGE_BITS     12

/* Bounds on waiting for the guest; each case takes a few seconds. */
#define FIRST_PASS_TIMEOUT_MS   30000
#define PASS_TIMEOUT_MS         20000
/* A pass takes tens of ms without dirty logging, even under nested KVM. */
#define STALL_TIMEOUT_MS        3000

/* The dirty ring size the ring cases ask for, in entries */
#define DIRTY_RING_ENTRIES  4096

typedef enum GuestAccel {
    GUEST_ACCEL_TCG,
    GUEST_ACCEL_KVM,            /* dirty bitmap, manual protect */
    GUEST_ACCEL_KVM_RING,       /* dirty ring */
} GuestAccel;

/* What the guest writes; see x86-bootblock.S */
typedef struct GuestLayout {
    const char *name;
    const char *machine_args;
    const uint32_t *hot;        /* guest-physical page addresses */
    size_t nhot;
    uint32_t sweep_start;       /* [start, end), page aligned */
    uint32_t sweep_end;
    /* A RAM block other than the first that must hold some hot pages */
    const char *second_block;
} GuestLayout;

typedef struct GuestCase {
    GuestAccel accel;
    const GuestLayout *layout;
    int64_t period_ms;
    int64_t iterations;
} GuestCase;

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

static const char *accel_args(GuestAccel accel)
{
    switch (accel) {
    case GUEST_ACCEL_TCG:
        return "-accel tcg";
    case GUEST_ACCEL_KVM:
        return "-accel kvm";
    case GUEST_ACCEL_KVM_RING:
        return "-accel kvm,dirty-ring-size=" stringify(DIRTY_RING_ENTRIES);
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

static bool layout_is_hot(const GuestLayout *l, uint64_t pfn)
{
    for (size_t i = 0; i < l->nhot; i++) {
        if (l->hot[i] >> GUEST_PAGE_BITS == pfn) {
            return true;
        }
    }
    return false;
}

static bool layout_in_sweep(const GuestLayout *l, uint64_t pfn)
{
    return pfn >= l->sweep_start >> GUEST_PAGE_BITS &&
           pfn < l->sweep_end >> GUEST_PAGE_BITS;
}

/* The page the BIOS loads the boot sector into: the guest's code and data */
static bool layout_is_code(uint64_t pfn)
{
    return pfn >= SYM_LOAD_ADDR >> GUEST_PAGE_BITS &&
           pfn <= (SYM_LOAD_ADDR + sizeof(x86_bootblock) - 1) >>
                  GUEST_PAGE_BITS;
}

/* The layout must describe what the guest can do, or the checks are moot */
static void layout_check(const GuestLayout *l)
{
    g_assert_cmpuint(l->nhot, >=, 1);
    g_assert_cmpuint(l->nhot, <=, SYM_HOT_PAGES_MAX);
    g_assert_cmpuint(l->sweep_start % GUEST_PAGE_SIZE, ==, 0);
    g_assert_cmpuint(l->sweep_end % GUEST_PAGE_SIZE, ==, 0);
    g_assert_cmpuint(l->sweep_start, <, l->sweep_end);
    for (size_t i = 0; i < l->nhot; i++) {
        uint64_t pfn = l->hot[i] >> GUEST_PAGE_BITS;

        g_assert_cmpuint(l->hot[i] % GUEST_PAGE_SIZE, ==, 0);
        g_assert_false(layout_in_sweep(l, pfn));
        g_assert_false(layout_is_code(pfn));
        for (size_t j = 0; j < i; j++) {
            g_assert_cmphex(l->hot[j], !=, l->hot[i]);
        }
    }
    g_assert_false(layout_in_sweep(l, SYM_LOAD_ADDR >> GUEST_PAGE_BITS));
}

/* Write the boot sector with @l patched into its parameter slots */
static char *guest_image_create(const char *dir, const GuestLayout *l)
{
    unsigned char img[sizeof(x86_bootblock)];
    char *path = g_build_filename(dir, "guest.img", NULL);

    g_assert_cmpuint(sizeof(img), ==, 512);
    memcpy(img, x86_bootblock, sizeof(img));
    stl_le_p(img + SYM_hot_count, l->nhot);
    for (size_t i = 0; i < l->nhot; i++) {
        stl_le_p(img + SYM_hot_pages + 4 * i, l->hot[i]);
    }
    stl_le_p(img + SYM_sweep_start, l->sweep_start);
    stl_le_p(img + SYM_sweep_end, l->sweep_end);
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

/* Wait until the guest reports that it completed its first pass. */
static void serial_await_first_pass(int fd)
{
    int64_t deadline = g_get_monotonic_time() + FIRST_PASS_TIMEOUT_MS * 1000;

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left_ms = (deadline - g_get_monotonic_time()) / 1000;
        unsigned char c;
        ssize_t n;

        if (left_ms <= 0) {
            g_test_message("the guest did not finish a pass in %d ms",
                           FIRST_PASS_TIMEOUT_MS);
            g_assert_not_reached();
        }
        if (poll(&pfd, 1, left_ms) < 0) {
            g_assert_cmpint(errno, ==, EINTR);
            continue;
        }
        n = read(fd, &c, 1);
        if (n == 1) {
            g_assert_cmphex(c, ==, SYM_PASS_SIGNAL);
            return;
        }
        if (n == 0) {
            g_test_message("QEMU closed the guest's serial port");
            g_assert_not_reached();
        }
        g_assert_true(errno == EAGAIN || errno == EINTR);
    }
}

static uint32_t guest_passes(QTestState *qts, const GuestLayout *l)
{
    return qtest_readl(qts, l->hot[0] + SYM_PASS_COUNT_OFF);
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

    passes = guest_passes(qts, l);
    deadline = g_get_monotonic_time() + STALL_TIMEOUT_MS * 1000;
    while (guest_passes(qts, l) == passes) {
        if (g_get_monotonic_time() > deadline) {
            return true;
        }
        g_usleep(1000);
    }
    return false;
}

/*
 * Make sure the trace holds a complete pass of the guest, so that the union
 * of its windows must cover the whole sweep range.  @passes_at_start was
 * read after the start command returned, when the baseline was taken: the
 * pass that ends with counter passes_at_start + 2 started after it.  Once
 * the counter shows that, every sync that starts later sees all of that
 * pass's writes, and at least one more sync is due while fewer than
 * iterations - 1 iterations are complete.
 */
static void trace_await_full_pass(QTestState *qts, const GuestCase *c,
                                  uint32_t passes_at_start)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;
    QDict *info;
    int64_t done;

    while (guest_passes(qts, c->layout) - passes_at_start < 2) {
        if (g_get_monotonic_time() > deadline) {
            g_test_message("the guest finished no pass in %d ms of tracing",
                           PASS_TIMEOUT_MS);
            g_assert_not_reached();
        }
        g_usleep(1000);
    }
    info = qtest_qmp_assert_success_ref(qts,
                                        "{'execute': 'query-bitmap-trace'}");
    done = qdict_get_int(info, "completed-iterations");
    if (strcmp(qdict_get_str(info, "status"), "active") ||
        done > c->iterations - 2) {
        g_test_message("trace of %" PRId64 " x %" PRId64 " ms too short for "
                       "a full pass of the guest (%" PRId64 " iterations "
                       "done when it finished one)", c->iterations,
                       c->period_ms, done);
        g_assert_not_reached();
    }
    qobject_unref(info);
}

/* Run the trace, logging to @log_path, until it completes */
static void trace_run(QTestState *qts, const GuestCase *c,
                      const char *log_path)
{
    uint32_t passes;
    QDict *ev, *data;

    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s,"
        " 'iterations': %" PRId64 ", 'period': %" PRId64 " }}",
        log_path, c->iterations, c->period_ms);
    passes = guest_passes(qts, c->layout);
    trace_await_full_pass(qts, c, passes);

    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    data = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "completed");
    g_assert_cmpint(qdict_get_int(data, "completed-iterations"), ==,
                    c->iterations);
    qobject_unref(ev);
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
 * Did the guest run a whole round of hot writes within window @it?  After
 * each sweep page the guest writes every hot page, then the next sweep
 * page (after the last one: the first one, in the next pass).  So a window
 * that lists two sweep pages written one after the other also holds the
 * hot writes between them, whatever pass each of them came from.  Windows
 * in which the host did not run the vCPU long enough (a loaded host, or a
 * round right after a late one) show no such pair, and the guest wrote
 * nothing that could be asked of them.
 */
static bool window_has_hot_round(const BTLogIter *it, const GuestLayout *l)
{
    uint64_t first = l->sweep_start >> GUEST_PAGE_BITS;
    uint64_t last = (l->sweep_end >> GUEST_PAGE_BITS) - 1;

    for (guint i = 0; i + 1 < it->pfns->len; i++) {
        uint64_t pfn = g_array_index(it->pfns, uint64_t, i);

        if (layout_in_sweep(l, pfn) && pfn != last &&
            g_array_index(it->pfns, uint64_t, i + 1) == pfn + 1) {
            return true;
        }
    }
    return bt_log_iter_has_pfn(it, first) && bt_log_iter_has_pfn(it, last);
}

/*
 * Check the windows (iterations >= 1) of @log against @c's layout.  Every
 * deviation is reported before the assertions, so that a failure shows all
 * of them:
 * - recall: each window in which the guest ran a round of hot writes lists
 *   every hot page; at least half of the windows must be such windows;
 * - precision: no window lists a page outside the hot pages, the sweep and
 *   the guest's code page, nor a page without a guest-physical address;
 * - the windows together list every sweep page (the caller made sure that
 *   a whole pass of the guest falls within the trace).
 */
static void log_check(const BTLog *log, const GuestCase *c)
{
    const GuestLayout *l = c->layout;
    uint64_t sweep_first = l->sweep_start >> GUEST_PAGE_BITS;
    uint64_t sweep_pages = (l->sweep_end - l->sweep_start) >> GUEST_PAGE_BITS;
    g_autofree bool *sweep_seen = g_new0(bool, sweep_pages);
    uint64_t windows = log->iters->len - 1;
    uint64_t hot_found = 0, busy_windows = 0, busy_hot_found = 0;
    uint64_t listed = 0, outside = 0, code = 0, sweep_covered = 0;
    uint64_t second_block_windows = 0;
    size_t second_block_hot = 0;

    g_assert_cmpint(log->page_size, ==, GUEST_PAGE_SIZE);
    g_assert_cmpint(log->period_ms, ==, c->period_ms);
    g_assert_cmpint(log->iterations, ==, c->iterations);
    g_assert_cmpstr(log->accel, ==, accel_name(c->accel));
    g_assert_true(log->has_end);
    g_assert_cmpstr(log->end_status, ==, "completed");
    g_assert_cmpint(log->end_iterations, ==, c->iterations);
    g_assert_cmpuint(windows, ==, c->iterations);

    if (l->second_block) {
        for (size_t h = 0; h < l->nhot; h++) {
            if (block_maps_pfn(log, l->second_block,
                               l->hot[h] >> GUEST_PAGE_BITS)) {
                second_block_hot++;
            }
        }
        g_assert_cmpuint(second_block_hot, >, 0);
    }

    /*
     * The trace starts after the guest's first full pass: its code, hot
     * and sweep pages are not zero pages at the baseline.
     */
    {
        const BTLogIter *it0 = g_ptr_array_index(log->iters, 0);

        g_assert_cmpint(log->version, ==, 2);
        for (size_t h = 0; h < l->nhot; h++) {
            g_assert_false(bt_log_iter_has_zero_pfn(it0,
                           l->hot[h] >> GUEST_PAGE_BITS));
        }
        for (uint64_t i = 0; i < sweep_pages; i++) {
            g_assert_false(bt_log_iter_has_zero_pfn(it0, sweep_first + i));
        }
        g_assert_cmpuint(it0->zero, >, 0);
    }

    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        const BTLogIter *prev = g_ptr_array_index(log->iters, n - 1);
        bool busy = window_has_hot_round(it, l);
        g_autoptr(GString) missed = g_string_new("");
        size_t found = 0, second_found = 0;

        for (size_t h = 0; h < l->nhot; h++) {
            uint64_t pfn = l->hot[h] >> GUEST_PAGE_BITS;

            if (bt_log_iter_has_pfn(it, pfn)) {
                found++;
                if (l->second_block &&
                    block_maps_pfn(log, l->second_block, pfn)) {
                    second_found++;
                }
            } else {
                g_string_append_printf(missed, " %" PRIx64, pfn);
            }
        }
        hot_found += found;
        if (busy) {
            busy_windows++;
            busy_hot_found += found;
        }
        if (l->second_block && second_found == second_block_hot) {
            second_block_windows++;
        }
        if (missed->len) {
            g_test_message("window %u (%.3f ms, %" PRIu64 " pages, sync %"
                           PRId64 " us, harvest %" PRId64 " us%s) misses "
                           "hot pages%s", n, it->t_ms - prev->t_ms,
                           it->dirty, it->sync_us, it->harvest_us,
                           busy ? "" : ", guest not seen running",
                           missed->str);
        }

        /*
         * Every page the guest writes holds a non-zero counter from its
         * first write on, so no page a window lists is a zero page.
         */
        g_assert_cmpuint(it->zero, ==, 0);

        listed += it->pfns->len + it->unmapped;
        outside += it->unmapped;
        for (guint i = 0; i < it->unmapped_pages->len; i++) {
            g_test_message("window %u lists unmapped page %s", n,
                           (char *)g_ptr_array_index(it->unmapped_pages, i));
        }
        for (guint i = 0; i < it->pfns->len; i++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, i);

            if (layout_in_sweep(l, pfn)) {
                sweep_seen[pfn - sweep_first] = true;
            } else if (layout_is_code(pfn)) {
                code++;
            } else if (!layout_is_hot(l, pfn)) {
                outside++;
                g_test_message("window %u lists page %" PRIx64
                               ", which the guest does not write", n, pfn);
            }
        }
    }
    for (uint64_t i = 0; i < sweep_pages; i++) {
        if (sweep_seen[i]) {
            sweep_covered++;
        } else {
            g_test_message("no window lists sweep page %" PRIx64,
                           sweep_first + i);
        }
    }

    g_test_message("%s %s period %" PRId64 " ms: recall %.2f%% "
                   "(%" PRIu64 "/%" PRIu64 " hot pages in %" PRIu64
                   " windows with a round of hot writes; %.2f%% over all %"
                   PRIu64 " windows), precision %.2f%% (%" PRIu64 "/%"
                   PRIu64 " listed pages), sweep %" PRIu64 "/%" PRIu64
                   " pages, code page listed %" PRIu64 " times",
                   accel_name(c->accel), l->name, c->period_ms,
                   busy_windows ?
                   100.0 * busy_hot_found / (busy_windows * l->nhot) : 0.0,
                   busy_hot_found, busy_windows * l->nhot, busy_windows,
                   100.0 * hot_found / (windows * l->nhot), windows,
                   listed ? 100.0 * (listed - outside) / listed : 100.0,
                   listed - outside, listed, sweep_covered, sweep_pages,
                   code);
    if (l->second_block) {
        g_test_message("all %zu hot pages of block %s listed in %" PRIu64
                       "/%" PRIu64 " windows", second_block_hot,
                       l->second_block, second_block_windows, windows);
    }

    g_assert_cmpuint(busy_hot_found, ==, busy_windows * l->nhot);
    g_assert_cmpuint(busy_windows * 2, >=, windows);
    g_assert_cmpuint(outside, ==, 0);
    g_assert_cmpuint(sweep_covered, ==, sweep_pages);
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

/*
 * Boot the guest, with @extra on QEMU's command line, and wait for its
 * first full pass.  Returns a reason to skip the case, or NULL.
 */
static char *guest_boot_args(GuestVM *vm, GuestAccel accel,
                             const GuestLayout *l, const char *extra)
{
    char *skip = accel_unusable_reason(accel);

    if (skip) {
        return skip;
    }
    layout_check(l);
    vm->dir = g_dir_make_tmp("bitmap-trace-guest-XXXXXX", NULL);
    g_assert_nonnull(vm->dir);
    vm->image = guest_image_create(vm->dir, l);
    vm->serial = g_build_filename(vm->dir, "serial", NULL);
    vm->log_path = g_build_filename(vm->dir, "trace.log", NULL);
    vm->serial_fd = serial_fifo_open(vm->serial);
    vm->qts = qtest_initf("-M pc -nodefaults %s %s %s "
                          "-serial file:%s -drive file=%s,format=raw",
                          accel_args(accel), l->machine_args, extra,
                          vm->serial, vm->image);

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
    serial_await_first_pass(vm->serial_fd);
    return NULL;
}

static char *guest_boot(GuestVM *vm, GuestAccel accel, const GuestLayout *l)
{
    return guest_boot_args(vm, accel, l, "");
}

static void guest_cleanup(GuestVM *vm)
{
    if (vm->qts) {
        qtest_quit(vm->qts);
        close(vm->serial_fd);
        unlink(vm->log_path);
        unlink(vm->serial);
        unlink(vm->image);
        rmdir(vm->dir);
    }
    g_free(vm->dir);
    g_free(vm->image);
    g_free(vm->serial);
    g_free(vm->log_path);
}

static void test_guest(const void *opaque)
{
    const GuestCase *c = opaque;
    const GuestLayout *l = c->layout;
    int64_t t0 = g_get_monotonic_time();
    GuestVM vm = { 0 };
    g_autofree char *skip = guest_boot(&vm, c->accel, l);
    g_autoptr(BTLog) log = NULL;

    if (!skip && c->accel == GUEST_ACCEL_KVM_RING &&
        dirty_ring_stalls_guest(vm.qts, l)) {
        skip = g_strdup("the host's KVM stalls the guest once the dirty "
                        "ring is in use (so does calc-dirty-rate in "
                        "dirty-ring mode): a host kernel defect");
    }
    if (skip) {
        g_test_skip(skip);
        guest_cleanup(&vm);
        return;
    }
    trace_run(vm.qts, c, vm.log_path);
    log = bt_log_parse(vm.log_path, true);
    log_check(log, c);
    g_test_message("%s %s period %" PRId64 " ms took %.1f s",
                   accel_name(c->accel), l->name, c->period_ms,
                   (g_get_monotonic_time() - t0) / 1e6);
    guest_cleanup(&vm);
}

static int64_t trace_completed(QTestState *qts)
{
    QDict *info = qtest_qmp_assert_success_ref(qts,
                                               "{'execute': 'query-bitmap-trace'}");
    int64_t done = qdict_get_int(info, "completed-iterations");

    qobject_unref(info);
    return done;
}

/* Iterations have no event of their own: poll query-bitmap-trace, bounded */
static void trace_await_completed(QTestState *qts, int64_t n)
{
    int64_t deadline = g_get_monotonic_time() + PASS_TIMEOUT_MS * 1000;

    while (trace_completed(qts) < n) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
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
    g_autofree char *skip = guest_boot(&vm, accel, l);
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
    passes = guest_passes(vm.qts, l);
    trace_await_completed(vm.qts, stopped + 5);
    g_assert_cmpuint(guest_passes(vm.qts, l), ==, passes);
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
    g_test_message("%s: windows %" PRId64 "-%" PRId64 " inside the pause "
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
    g_autofree char *skip = guest_boot_args(&vm, accel, l, "-smp 4");
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
    g_autofree char *skip = guest_boot_args(&vm, GUEST_ACCEL_TCG, l, args);
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
    passes = guest_passes(vm.qts, l);
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
    g_assert_cmpuint(guest_passes(vm.qts, l), >, passes);

    log = bt_log_parse(vm.log_path, true);
    g_assert_cmpuint(log->iters->len, >=, 21);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        size_t found = 0;

        for (size_t h = 0; h < l->nhot; h++) {
            found += bt_log_iter_has_pfn(it, l->hot[h] >> GUEST_PAGE_BITS);
        }
        /* a window in which the guest ran a round lists all hot pages */
        if (window_has_hot_round(it, l)) {
            busy++;
            g_assert_cmpuint(found, ==, l->nhot);
        }
    }
    g_assert_cmpuint(busy * 2, >=, log->iters->len - 1);
    guest_cleanup(&vm);
    unlink(rrfile);
    rmdir(dir);
}

static gint cmp_int64(gconstpointer a, gconstpointer b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
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
        g_autofree char *smp = g_strdup_printf("-smp %d", ncpus[i]);
        GuestVM vm = { 0 };
        g_autofree char *skip = guest_boot_args(&vm, accel, c.layout, smp);
        g_autoptr(GArray) sync = g_array_new(false, false, sizeof(int64_t));
        g_autoptr(GArray) harvest = g_array_new(false, false,
                                                sizeof(int64_t));
        g_autoptr(BTLog) log = NULL;
        g_autofree char *sync_sum = NULL;
        g_autofree char *harvest_sum = NULL;

        if (skip) {
            g_test_skip(skip);
            guest_cleanup(&vm);
            return;
        }
        trace_run(vm.qts, &c, vm.log_path);
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
    g_autofree char *skip = guest_boot(&vm, GUEST_ACCEL_KVM_RING, l);
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

static void add_cases(GuestAccel accel, const GuestLayout *layout)
{
    /* About a second of trace; a pass takes tens of ms even under KVM. */
    static const struct {
        int64_t period_ms;
        int64_t iterations;
    } trace[] = {
        { 10, 100 },
        { 100, 12 },
    };

    for (size_t i = 0; i < ARRAY_SIZE(trace); i++) {
        GuestCase *c = g_new0(GuestCase, 1);
        g_autofree char *path = NULL;

        c->accel = accel;
        c->layout = layout;
        c->period_ms = trace[i].period_ms;
        c->iterations = trace[i].iterations;
        path = g_strdup_printf("/bitmap-trace-guest/%s/%s/period-%" PRId64
                               "ms", accel_name(accel), layout->name,
                               c->period_ms);
        qtest_add_data_func_full(path, c, test_guest, g_free);
    }
}

int main(int argc, char **argv)
{
    static const GuestAccel accels[] = {
        GUEST_ACCEL_TCG, GUEST_ACCEL_KVM, GUEST_ACCEL_KVM_RING,
    };

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

    return g_test_run();
}
