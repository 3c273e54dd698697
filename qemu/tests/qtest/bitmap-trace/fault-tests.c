/*
 * QTest for bitmap-trace: faults writing the log, a stop in the baseline
 *
 * A log that cannot be written (a full disk, a file over its size limit,
 * /dev/full; the sinks' own faults are in sink-tests.c) ends the trace as
 * failed, with an error that names the log
 * and the cause; what is left of the log is a valid log; QEMU and the
 * guest run on, and a later trace works.  A stop (state=false, quit)
 * while the baseline is scanned ends the trace promptly with a valid log.
 * Memory that a virtio-mem device has not plugged is neither read nor
 * listed.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/resource.h>
#include <sys/statvfs.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "framework.h"

#ifdef CONFIG_LINUX
#include <sys/mount.h>
#endif

/* 128 MiB: a window of every 8th page takes more than 4 KiB in both formats */
#define BIG_ARGS "-M none -cpu qemu64,apic-id=0 -m 128M"
#define BIG_PAGES 32768

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* The size of the end record of a failed trace, as the tracer writes it */
static size_t failed_end_len(bool binary, int64_t completed,
                             const char *error)
{
    size_t payload;

    if (!binary) {
        g_autofree char *line = g_strdup_printf("end status=failed "
                                                "iterations=%" PRId64
                                                " error=%s\n", completed,
                                                error);
        return strlen(line);
    }
    payload = 1 + strlen("failed") + varint_len(completed) +
              varint_len(strlen(error)) + strlen(error);
    return 1 + varint_len(payload) + payload;
}

/*
 * A window whose record is larger than the room left after the baseline,
 * @room in all: the write is short, then fails with @err.  The file must
 * be cut back to the baseline, whose room the end record then fits in.
 */
static void big_window_cut(QTestState *qts, const char *path,
                           const char *fmt, size_t room, int err)
{
    bool binary = !strcmp(fmt, "binary");
    g_autofree char *base = NULL;
    g_autofree char *all = NULL;
    g_autofree char *error = NULL;
    g_autoptr(BTLog) log = NULL;
    size_t base_len, all_len;
    int64_t completed;

    bt_start(qts, path, fmt, 100000, 100000);
    bt_await_baseline(qts);
    g_assert_true(g_file_get_contents(path, &base, &base_len, NULL));
    /* room is left: the next record is written in part, then fails */
    g_assert_cmpuint(base_len, <, room - 512);
    for (uint64_t pfn = 0; pfn < BIG_PAGES; pfn += 8) {
        qtest_writeb(qts, pfn * PAGE, 1);
    }
    /*
     * 4096 pages 8 apart: about 20 KiB of text, 4 KiB of runs or bitmap,
     * more than @room.
     */
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    error = bt_await_failed(qts, path, g_strerror(err), &completed);
    g_assert_cmpint(completed, ==, 0);
    g_assert_true(g_file_get_contents(path, &all, &all_len, NULL));
    g_assert_cmpuint(all_len, ==,
                     base_len + failed_end_len(binary, 0, error));
    g_assert_true(!memcmp(all, base, base_len));
    log = bt_log_parse(path, true);
    g_assert_cmpint(log->binary, ==, binary);
    g_assert_cmpuint(log->iters->len, ==, 1);
    g_assert_cmpstr(log->end_status, ==, "failed");
    g_assert_cmpint(log->end_iterations, ==, 0);
    g_assert_cmpstr(log->end_error, ==, error);
    unlink(path);
}

#ifdef CONFIG_LINUX
static void tmpfs_abort(void *dir)
{
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/*
 * Mount a tmpfs of @size bytes on a new directory, to fill it up.  Returns
 * NULL, the test skipped with the reason, when that cannot be done.
 */
static char *tmpfs_mount(size_t size)
{
    g_autofree char *opts = g_strdup_printf("size=%zu,mode=0700", size);
    g_autofree char *why = NULL;
    char *dir;

    if (geteuid() != 0) {
        g_test_skip("mounting a small tmpfs to fill up needs root");
        return NULL;
    }
    dir = g_dir_make_tmp("bitmap-trace-full-XXXXXX", NULL);
    g_assert_nonnull(dir);
    if (mount("bitmap-trace", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              opts) == 0) {
        /* a failed assertion must not leave it mounted */
        qtest_add_abrt_handler(tmpfs_abort, dir);
        return dir;
    }
    why = g_strdup_printf("cannot mount a tmpfs to fill up: %s",
                          g_strerror(errno));
    rmdir(dir);
    g_free(dir);
    g_test_skip(why);
    return NULL;
}

static void tmpfs_umount(char *dir)
{
    qtest_remove_abrt_handler(dir);
    g_assert_cmpint(umount(dir), ==, 0);
    g_assert_cmpint(rmdir(dir), ==, 0);
    g_free(dir);
}
#endif

/*
 * The disk fills up in the middle of a record: the write is short, then
 * fails with ENOSPC.  The design (bitmap_trace_write(), the trace thread):
 * a regular file is cut back to its last complete record, then the end
 * record of the failed trace is written if it fits in what is left, so the
 * log is valid either way, with "end status=failed error=..." when there
 * was room for it and as a prefix without an end record when there was
 * not (the header included: a baseline that does not fit leaves the file
 * empty).  Each case is made to happen on a 4 KiB tmpfs:
 *
 * - a window whose record is larger than the whole disk: the short write
 *   took all the room after the baseline, cutting it back gives that room
 *   back, and the end record must be there;
 * - a baseline larger than the disk: an empty file;
 * - windows with no dirty page, whose records are smaller than the end
 *   record: the one that does not fit leaves less room than an end record
 *   takes, and the log must end with the last complete iteration.
 */
static void test_disk_full(const void *fmt)
{
#ifdef CONFIG_LINUX
    bool binary = !strcmp(fmt, "binary");
    char *dir = tmpfs_mount(4096);
    g_autofree char *path = NULL;
    g_autofree char *error = NULL;
    g_autoptr(BTLog) prefix = NULL;
    struct statvfs vfs;
    struct stat st;
    QTestState *qts;
    int64_t completed;
    size_t disk;

    if (!dir) {
        return;
    }
    g_assert_cmpint(statvfs(dir, &vfs), ==, 0);
    disk = vfs.f_blocks * vfs.f_frsize;
    g_assert_cmpuint(disk, ==, 4096);
    path = g_build_filename(dir, "dirty.log", NULL);
    qts = qtest_init(BIG_ARGS);

    /* A window larger than the disk */
    big_window_cut(qts, path, fmt, disk, ENOSPC);

    /*
     * A baseline larger than the disk: the pages written above make its
     * zero pages 4096 ranges.  Without a header there is no log to end:
     * the file is cut back to empty.
     */
    bt_start(qts, path, fmt, 100000, 100000);
    error = bt_await_failed(qts, path, g_strerror(ENOSPC), &completed);
    g_assert_cmpint(completed, ==, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 0);
    unlink(path);
    g_clear_pointer(&error, g_free);

    /* Small records: the last one does not fit, nor does an end record */
    qtest_memset(qts, 0, 0, BIG_PAGES * PAGE);
    bt_start(qts, path, fmt, 100000, 10);
    error = bt_await_failed(qts, path, g_strerror(ENOSPC), &completed);
    g_assert_cmpint(completed, >, 0);
    prefix = bt_log_parse(path, false);
    g_assert_false(prefix->has_end);
    g_assert_cmpuint(prefix->iters->len, ==, completed + 1);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, <=, disk);
    g_assert_cmpuint(disk - st.st_size, <,
                     failed_end_len(binary, completed, error));
    unlink(path);

    bt_assert_runs_on(qts);
    qtest_quit(qts);
    tmpfs_umount(dir);
#else
    g_test_skip("a small tmpfs to fill up is Linux only");
#endif
}

/*
 * The same cut with a file size limit instead of a full disk: QEMU
 * inherits RLIMIT_FSIZE, and SIGXFSZ ignored, from the test, so a write
 * past the limit is short, then fails with EFBIG.  This needs no root.
 */
static void test_file_too_big(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("fsize");
    struct rlimit old, lim;
    QTestState *qts;

    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 4096) {
        g_test_skip("RLIMIT_FSIZE is below 4 KiB already");
        return;
    }
    lim = (struct rlimit) { .rlim_cur = 4096, .rlim_max = old.rlim_max };
    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    qts = qtest_init(BIG_ARGS);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    signal(SIGXFSZ, SIG_DFL);

    big_window_cut(qts, path, fmt, 4096, EFBIG);
    /* QEMU keeps the limit: a baseline of few zero ranges fits in it */
    qtest_memset(qts, 0, 0, BIG_PAGES * PAGE);
    bt_assert_runs_on(qts);
    qtest_quit(qts);
}

/* A write error ends the trace as failed; QEMU and the guest stay up */
static void test_write_error(const void *fmt)
{
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autofree char *path = bt_tmp_path("after-error");
    QDict *data;

    bt_start(qts, "/dev/full", fmt, 100000, 10);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    data = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "failed");
    g_assert_nonnull(strstr(qdict_get_str(data, "error"), "/dev/full"));

    info = bt_query(qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "failed");
    g_assert_nonnull(strstr(qdict_get_str(info, "error-desc"),
                            "No space left"));

    /* the blocker is gone and logging can start again */
    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
}

/*
 * A stop while the baseline's zero scan runs: the scan reads every page
 * of the guest, which here is 4 GiB of memfd RAM that nothing populated
 * yet, so that each page it reads is faulted in (seconds).  state=false
 * or quit 0.2 s after the start must not wait for the rest of the scan:
 * BITMAP_TRACE_COMPLETED (cancelled), or QEMU's exit, must come within
 * STOP_TIMEOUT_MS, and the log must be a valid one, whose iteration 0
 * lists every page and, as zero, only the pages scanned before the stop
 * (every page of this RAM is zero, so fewer than all).
 */
#define STOP_RAM_PAGES          ((4ULL << 30) / PAGE)
#define STOP_RAM_ARGS           "-M none,memory-backend=bt-mem -m 4G " \
                                "-object memory-backend-memfd,id=bt-mem," \
                                "size=4G"
#define STOP_AFTER_MS           200
#define STOP_TIMEOUT_MS         2000

static void test_stop_in_baseline(const void *how)
{
    bool quit = !strcmp(how, "quit");
    g_autofree char *path = bt_tmp_path("stop-in-baseline");
    QTestState *qts = qtest_init(STOP_RAM_ARGS);
    g_autoptr(BTLog) log = NULL;
    const BTLogIter *base;
    int64_t t0, ms;

    bt_start(qts, path, NULL, 100000, 10);
    /* the stop is to land in the scan, which takes seconds before a stop */
    g_usleep(STOP_AFTER_MS * 1000);
    t0 = g_get_monotonic_time();
    if (quit) {
        qtest_qmp_send(qts, "{'execute': 'quit'}");
        ms = bt_qemu_await_exit(qts, NULL, 0, STOP_TIMEOUT_MS);
    } else {
        g_autoptr(QDict) ev = NULL;

        qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                                 "'arguments': {'state': false}}");
        /* the status and the event change together, in the main loop */
        for (;;) {
            g_autoptr(QDict) info = bt_query(qts);

            ms = (g_get_monotonic_time() - t0) / 1000;
            if (strcmp(qdict_get_str(info, "status"), "active")) {
                break;
            }
            if (ms > STOP_TIMEOUT_MS) {
                bt_msg("state=false during the baseline's zero scan: the "
                       "trace still active after %d ms", STOP_TIMEOUT_MS);
                bt_qemu_wedged(qts);
            }
            g_usleep(5000);
        }
        ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
        g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"),
                                      "status"), ==, "cancelled");
    }

    log = bt_log_parse(path, true);
    g_assert_true(log->has_end);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_cmpint(log->end_iterations, ==, (int64_t)log->iters->len - 1);
    base = g_ptr_array_index(log->iters, 0);
    g_assert_cmpuint(base->dirty, ==, STOP_RAM_PAGES);
    /* the stop landed in the scan: not every (zero) page was scanned */
    g_assert_cmpuint(base->zero, <, base->dirty);
    bt_msg("%s %d ms into the baseline: %s in %" PRId64 " ms; %" PRIu64
           " of %" PRIu64 " pages scanned as zero in %" PRId64 " ms",
           quit ? "quit" : "state=false", STOP_AFTER_MS,
           quit ? "QEMU exited" : "BITMAP_TRACE_COMPLETED", ms, base->zero,
           base->dirty, base->zero_us / 1000);
    qtest_quit(qts);
    unlink(path);
}

/*
 * Memory a virtio-mem device has not plugged is no memory of the guest:
 * migration neither sends it nor reads it, and reading it would populate
 * it on the host again (or SIGBUS on hugetlbfs).  With requested-size=0
 * (no guest driver needed) none of the device's memory is plugged: the
 * trace must not read it (QEMU's shared memory does not grow by its
 * size), nor list any of it, in the baseline or any round, even after a
 * qtest write to it (which populates a page on the host and sets its
 * dirty bit, but plugs nothing).  A write to RAM is listed as usual.
 */
#define VMEM_MIB 512
#define VMEM_ARGS "-M q35 -m 256M,maxmem=4G " \
    "-object memory-backend-memfd,id=vmem0,size=512M " \
    "-device virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0"

static uint64_t vmem_addr(QTestState *qts)
{
    g_autoptr(QDict) resp = qtest_qmp(qts,
                                      "{'execute': 'query-memory-devices'}");
    QList *list = qdict_get_qlist(resp, "return");
    QDict *dev, *data;

    g_assert_cmpint(qlist_size(list), ==, 1);
    dev = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(dev, "type"), ==, "virtio-mem");
    data = qdict_get_qdict(dev, "data");
    g_assert_cmpint(qdict_get_int(data, "size"), ==, 0);
    return qdict_get_int(data, "memaddr");
}

static void test_virtio_mem_unplugged(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("virtio-mem");
    uint64_t first, last, ram_pfn = 0x2345;
    int64_t shmem0, shmem1, n;
    QTestState *qts;
    BTLog *log;
    bool found = false;

    if (!qtest_has_device("virtio-mem-pci")) {
        g_test_skip("no virtio-mem-pci in this QEMU");
        return;
    }
    qts = qtest_init(VMEM_ARGS);
    first = vmem_addr(qts) / PAGE;
    last = first + VMEM_MIB * (1024 * 1024 / PAGE) - 1;
    shmem0 = bt_qemu_status_kib(qtest_pid(qts), "RssShmem");

    bt_start(qts, path, fmt, 100000, 20);
    bt_await_baseline(qts);
    shmem1 = bt_qemu_status_kib(qtest_pid(qts), "RssShmem");
    bt_msg("RssShmem %" PRId64 " KiB before the trace, %" PRId64
           " KiB after its baseline", shmem0, shmem1);
    /* not the device's 512 MiB: a few MiB of slack for anything else */
    g_assert_cmpint(shmem1 - shmem0, <, 16 * 1024);

    n = bt_completed(qts);
    qtest_writeb(qts, first * PAGE + 5 * PAGE, 0x5a);
    qtest_writeb(qts, ram_pfn * PAGE, 0x5a);
    bt_await_completed(qts, n + 2);
    qobject_unref(bt_stop(qts));

    log = bt_log_parse(path, true);
    for (guint i = 0; i < log->blocks->len; i++) {
        BTLogBlock *b = g_ptr_array_index(log->blocks, i);

        if (g_str_has_suffix(b->name, "vmem0")) {
            g_assert_cmpuint(b->pages, ==, last - first + 1);
            found = true;
        }
    }
    g_assert_true(found);
    found = false;
    for (guint i = 0; i < log->iters->len; i++) {
        BTLogIter *it = g_ptr_array_index(log->iters, i);
        uint64_t listed = 0;

        for (guint j = 0; j < it->pfns->len; j++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, j);

            listed += pfn >= first && pfn <= last;
        }
        if (listed) {
            bt_msg("iteration %u lists %" PRIu64 " pages of virtio-mem "
                   "memory that is not plugged", i, listed);
        }
        g_assert_cmpuint(listed, ==, 0);
        found |= i > 0 && bt_log_iter_has_pfn(it, ram_pfn);
    }
    g_assert_true(found);
    bt_log_free(log);
    unlink(path);

    bt_assert_runs_on(qts);
    qtest_quit(qts);
}

/*
 * The same for a virtio-mem device plugged into a running trace: its RAM
 * block is found added with none of its memory plugged, so none of it is
 * read (its zero pages: none) or listed, even after a write to it.
 */
static void test_virtio_mem_hotplug(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("virtio-mem-hotplug");
    uint64_t first, last;
    int64_t shmem0, shmem1, n;
    QTestState *qts;
    BTLog *log;
    const BTLogBlock *added = NULL;

    if (!qtest_has_device("virtio-mem-pci")) {
        g_test_skip("no virtio-mem-pci in this QEMU");
        return;
    }
    qts = qtest_init("-M q35 -m 256M,maxmem=4G "
                     "-device pcie-root-port,id=rp0,bus=pcie.0,chassis=1");
    bt_start(qts, path, fmt, 100000, 20);
    bt_await_baseline(qts);
    shmem0 = bt_qemu_status_kib(qtest_pid(qts), "RssShmem");
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {"
                             " 'qom-type': 'memory-backend-memfd',"
                             " 'id': 'vmem1', 'size': %d}}", 256 << 20);
    qtest_qmp_device_add(qts, "virtio-mem-pci", "vm1",
                         "{'memdev': 'vmem1', 'bus': 'rp0',"
                         " 'requested-size': 0}");
    first = vmem_addr(qts) / PAGE;
    last = first + 256 * (1024 * 1024 / PAGE) - 1;

    /* two rounds: the first finds the block, the second reads its pages */
    n = bt_completed(qts);
    bt_await_completed(qts, n + 2);
    qtest_writeb(qts, first * PAGE + 7 * PAGE, 0x5a);
    bt_await_completed(qts, n + 4);
    shmem1 = bt_qemu_status_kib(qtest_pid(qts), "RssShmem");
    bt_msg("RssShmem %" PRId64 " KiB before the device, %" PRId64
           " KiB after", shmem0, shmem1);
    g_assert_cmpint(shmem1 - shmem0, <, 16 * 1024);
    qobject_unref(bt_stop(qts));

    log = bt_log_parse(path, true);
    for (guint i = 0; i < log->blocks->len; i++) {
        BTLogBlock *b = g_ptr_array_index(log->blocks, i);

        if (g_str_has_suffix(b->name, "vmem1")) {
            added = b;
        }
    }
    g_assert_nonnull(added);
    g_assert_cmpint(added->added, >, 0);
    g_assert_cmpuint(added->pages, ==, last - first + 1);
    g_assert_cmpuint(added->zero, ==, 0);
    for (guint i = 0; i < log->iters->len; i++) {
        BTLogIter *it = g_ptr_array_index(log->iters, i);

        for (guint j = 0; j < it->pfns->len; j++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, j);

            g_assert_false(pfn >= first && pfn <= last);
        }
    }
    bt_log_free(log);
    unlink(path);
    qtest_quit(qts);
}

void bt_add_fault_tests(void)
{
    bt_add_formats("/bitmap-trace/faults/write-error", test_write_error);
    bt_add_formats("/bitmap-trace/faults/disk-full", test_disk_full);
    bt_add_formats("/bitmap-trace/faults/file-too-big", test_file_too_big);
    qtest_add_data_func("/bitmap-trace/faults/stop-in-baseline/state-false",
                        "state-false", test_stop_in_baseline);
    qtest_add_data_func("/bitmap-trace/faults/stop-in-baseline/quit",
                        "quit", test_stop_in_baseline);
    bt_add_formats("/bitmap-trace/faults/virtio-mem-unplugged",
                   test_virtio_mem_unplugged);
    bt_add_formats("/bitmap-trace/faults/virtio-mem-hotplug",
                   test_virtio_mem_hotplug);
}
