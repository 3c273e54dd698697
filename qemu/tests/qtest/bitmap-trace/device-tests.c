/*
 * QTest for bitmap-trace: devices plugged during a trace (RAM, migration
 * blockers)
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "framework.h"

/*
 * How many times the windows of @log from @from on list a page in [@first,
 * @first + @n); *@where is the last window that listed @pfn.
 */
static uint64_t windows_count_in(const BTLog *log, guint from, uint64_t first,
                                 uint64_t n, uint64_t pfn, int64_t *where)
{
    uint64_t found = 0;

    for (guint w = from; w < log->iters->len; w++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, w);

        for (guint i = 0; i < it->pfns->len; i++) {
            uint64_t p = g_array_index(it->pfns, uint64_t, i);

            if (p >= first && p < first + n) {
                found++;
                if (p == pfn) {
                    *where = w;
                }
            }
        }
    }
    return found;
}

/*
 * Memory hotplug during a trace (pc-dimm): the new RAM block is traced from
 * the sync that finds it.  The log says, after that iteration, that it was
 * added, with its size, map and zero pages; it never lists its baseline
 * (all of it: ram_block_add() marks it dirty) as dirtied; every later write
 * to it is in exactly one window, after its arrival.  Unplugged (the ACPI
 * eject the guest would do, then the backend deleted), the log says it
 * was removed.
 */
static void test_ram_hotplug(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("ram-hotplug");
    QTestState *qts = qtest_init("-M pc -m 64M,slots=2,maxmem=256M "
                                 "-nodefaults");
    const uint64_t dimm_pages = 4096, low = 0x300;
    g_autoptr(BTLog) log = NULL;
    g_autoptr(QDict) resp = NULL;
    const BTLogBlock *b;
    int64_t plugged, written, added = -1, removed = -1, where;
    uint64_t addr, base;

    bt_start(qts, path, fmt, 100000, 20);
    bt_await_completed(qts, 2);
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {"
                             " 'qom-type': 'memory-backend-ram',"
                             " 'id': 'hp0', 'size': 16777216 }}");
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': {"
                             " 'driver': 'pc-dimm', 'id': 'dimm0',"
                             " 'memdev': 'hp0' }}");
    plugged = bt_completed(qts);
    resp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': {"
                     " 'path': '/machine/peripheral/dimm0',"
                     " 'property': 'addr' }}");
    addr = qdict_get_int(resp, "return");
    base = addr / PAGE;
    /* the sync of iteration plugged + 2 at the latest found the block */
    bt_await_completed(qts, plugged + 3);

    written = bt_completed(qts);
    for (int k = 1; k <= 3; k++) {
        int64_t c = bt_completed(qts);

        qtest_writeb(qts, addr + k * 0x100 * PAGE, k);
        qtest_writeb(qts, (low + k) * PAGE, k);
        bt_await_completed(qts, c + 2);
    }

    /* unplug: device_del, the guest's ACPI eject of slot 0, the backend */
    qtest_qmp_assert_success(qts, "{'execute': 'device_del', 'arguments': {"
                             " 'id': 'dimm0' }}");
    qtest_outl(qts, 0x0a00, 0);     /* MEMORY_HOTPLUG_BASE: slot selector */
    qtest_outb(qts, 0x0a14, 8);     /* eject */
    qobject_unref(qtest_qmp_eventwait_ref(qts, "DEVICE_DELETED"));
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', 'arguments': {"
                             " 'id': 'hp0' }}");
    bt_await_completed(qts, bt_completed(qts) + 2);
    qobject_unref(bt_stop(qts));

    log = bt_log_parse(path, true);
    for (guint n = 0; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_cmpuint(it->untraced->len, ==, 0);
        if (it->added->len) {
            g_assert_cmpint(added, ==, -1);
            g_assert_cmpuint(it->added->len, ==, 1);
            g_assert_cmpstr(g_ptr_array_index(it->added, 0), ==, "hp0");
            added = n;
        }
        if (it->removed->len) {
            g_assert_cmpint(removed, ==, -1);
            g_assert_cmpuint(it->removed->len, ==, 1);
            g_assert_cmpstr(g_ptr_array_index(it->removed, 0), ==, "hp0");
            removed = n;
        }
    }
    g_assert_cmpint(added, >=, plugged);
    g_assert_cmpint(added, <=, plugged + 2);
    g_assert_cmpint(removed, >, written + 3);

    b = bt_log_find_block(log, "hp0");
    g_assert_nonnull(b);
    g_assert_cmpint(b->added, ==, added);
    g_assert_cmpint(b->removed, ==, removed);
    g_assert_cmpuint(b->pages, ==, dimm_pages);
    g_assert_cmpuint(b->zero, ==, dimm_pages);  /* fresh RAM is zero */
    g_assert_cmpuint(b->map->len, ==, 1);
    g_assert_cmphex(g_array_index(b->map, BTLogRange, 0).first, ==, base);
    g_assert_cmpuint(g_array_index(b->map, BTLogRange, 0).npages, ==,
                     dimm_pages);

    /*
     * Of the DIMM, the log lists the three pages written, once each, in a
     * window after its arrival, and nothing else; the same for the boot
     * RAM's pages written alongside.
     */
    g_assert_cmpuint(windows_count_in(log, 1, base, dimm_pages, base, &where),
                     ==, 3);
    for (int k = 1; k <= 3; k++) {
        where = -1;
        g_assert_cmpuint(windows_count_in(log, 1, base + k * 0x100, 1,
                                          base + k * 0x100, &where), ==, 1);
        g_assert_cmpint(where, >, added);
        g_assert_cmpint(where, >, written);
        where = -1;
        g_assert_cmpuint(windows_count_in(log, 1, low + k, 1, low + k,
                                          &where), ==, 1);
        g_assert_cmpint(where, >, written);
    }
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        /* nothing but the six pages written: no baseline, no unmapped */
        g_assert_cmpuint(it->unmapped, ==, 0);
        g_assert_cmpuint(it->dirty, ==, it->pfns->len);
    }
    g_assert_cmpuint(windows_count_in(log, 1, 0, UINT64_MAX, UINT64_MAX,
                                      &where), ==, 6);
    qtest_quit(qts);
    unlink(path);
}

/*
 * A device that blocks migration may write guest RAM without dirty
 * logging: the log names every blocker, those present at the start (after
 * the meta line) and those that appear during the trace (after the
 * iteration whose sync found them), each once, and not the trace's own.
 * ivshmem in peer mode and rocker (not migratable) are blockers that run
 * under qtest.  Without a blocker there is no such line.
 */
static void test_blocker_recorded(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("blocker");
    g_autofree char *shm = bt_tmp_path("blocker-shm");
    QTestState *qts = qtest_initf("-M pc -m 64M -nodefaults -object "
                                  "memory-backend-file,id=mb,size=1M,"
                                  "mem-path=%s,share=on -device "
                                  "ivshmem-plain,memdev=mb,master=off "
                                  "-device rocker,name=sw0,addr=4", shm);
    g_autoptr(BTLog) log = NULL;
    g_autoptr(BTLog) clean = NULL;
    int64_t plugged, found = -1;

    bt_start(qts, path, fmt, 100000, 20);
    bt_await_completed(qts, 2);
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': {"
                             " 'driver': 'rocker', 'name': 'sw1',"
                             " 'addr': '5' }}");
    plugged = bt_completed(qts);
    bt_await_completed(qts, plugged + 3);
    qobject_unref(bt_stop(qts));
    log = bt_log_parse(path, true);

    g_assert_cmpuint(log->blocked->len, ==, 2);
    for (guint i = 0; i < 2; i++) {
        const char *r = g_ptr_array_index(log->blocked, i);

        g_assert(strstr(r, "'ivshmem'") ||
                 !strcmp(r, "non-migratable device: 0000:00:04.0/rocker"));
        g_assert_null(strstr(r, "bitmap-trace"));
    }
    g_assert_cmpstr(g_ptr_array_index(log->blocked, 0), !=,
                    g_ptr_array_index(log->blocked, 1));
    for (guint n = 0; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        if (it->blocked->len) {
            g_assert_cmpint(found, ==, -1);
            g_assert_cmpuint(it->blocked->len, ==, 1);
            g_assert_cmpstr(g_ptr_array_index(it->blocked, 0), ==,
                            "non-migratable device: 0000:00:05.0/rocker");
            found = n;
        }
    }
    g_assert_cmpint(found, >=, plugged);
    g_assert_cmpint(found, <=, plugged + 2);
    qtest_quit(qts);
    unlink(shm);

    qts = qtest_init(NONE_ARGS);
    bt_start(qts, path, fmt, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    clean = bt_log_parse(path, true);
    g_assert_cmpuint(clean->blocked->len, ==, 0);
    qtest_quit(qts);
    unlink(path);
}

void bt_add_device_tests(void)
{
    bt_add_formats("/bitmap-trace/devices/ram-hotplug", test_ram_hotplug);
    bt_add_formats("/bitmap-trace/devices/blocker-recorded",
                   test_blocker_recorded);
}
