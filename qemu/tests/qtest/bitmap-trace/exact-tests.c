/*
 * QTest for bitmap-trace: exactness
 *
 * Under -accel qtest no vCPU runs: the only writes to guest RAM are the
 * test's own qtest_writeb()/qtest_memset(), so every window of the trace
 * must list exactly the pages the test wrote in it.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "framework.h"

/*
 * Baseline and one measured window, closed by state=false: the window
 * lists exactly the pages written, scattered and in a run.
 */
static void test_exact_stop(const void *fmt)
{
    BTFixture fx = bt_fixture(NONE_ARGS, "stop", fmt);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autoptr(BTLog) log = NULL;
    static const uint64_t expect[] = {
        0x0, 0x5, 0x100, 0x101, 0x102, 0x7ff, 0xfff
    };
    const BTLogIter *it0, *it1;
    struct stat st;

    bt_fixture_start(&fx, 100000, 100000);
    g_assert_cmpint(stat(fx.path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);

    qtest_writeb(fx.qts, 0x5 * PAGE + 17, 1);
    qtest_writeb(fx.qts, 0x0, 2);
    qtest_writeb(fx.qts, 0xfff * PAGE + PAGE - 1, 3);
    /* two writes to one page count once; a run spans three pages */
    qtest_writeb(fx.qts, 0x7ff * PAGE, 4);
    qtest_writeb(fx.qts, 0x7ff * PAGE + 8, 5);
    qtest_memset(fx.qts, 0x100 * PAGE + 100, 0xaa, 2 * PAGE);

    ev = bt_stop(fx.qts);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "cancelled");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(ev, "data"),
                                  "completed-iterations"), ==, 1);

    log = bt_fixture_log(&fx);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    g_assert_cmpstr(log->accel, ==, "qtest");
    g_assert_cmpint(log->page_size, ==, 4096);
    g_assert_cmpint(log->period_ms, ==, 100000);
    g_assert_cmpint(log->iterations, ==, 100000);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_cmpuint(log->iters->len, ==, 2);

    /* -M none: one block "ram" at GPA 0 */
    g_assert_cmpuint(log->blocks->len, ==, 1);
    {
        const BTLogBlock *b = bt_log_find_block(log, "ram");

        g_assert_nonnull(b);
        g_assert_cmpuint(b->pages, ==, NONE_PAGES);
        g_assert_cmpuint(b->map->len, ==, 1);
        g_assert_cmphex(g_array_index(b->map, BTLogRange, 0).first, ==, 0);
        g_assert_cmpuint(g_array_index(b->map, BTLogRange, 0).npages, ==,
                         NONE_PAGES);
    }

    /* The baseline lists all RAM */
    it0 = g_ptr_array_index(log->iters, 0);
    g_assert_cmpuint(it0->dirty, ==, NONE_PAGES);
    for (uint64_t p = 0; p < NONE_PAGES; p++) {
        g_assert_cmphex(g_array_index(it0->pfns, uint64_t, p), ==, p);
    }

    it1 = g_ptr_array_index(log->iters, 1);
    bt_assert_exact(it1, expect, G_N_ELEMENTS(expect));

    info = bt_query(fx.qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "cancelled");
    g_assert_cmpint(qdict_get_int(info, "completed-iterations"), ==, 1);
    g_assert_cmpint(qdict_get_int(info, "last-dirty-pages"), ==,
                    G_N_ELEMENTS(expect));
    g_assert_cmpint(qdict_get_int(info, "distinct-pages"), ==,
                    G_N_ELEMENTS(expect));
    g_assert_cmpstr(qdict_get_str(info, "filename"), ==, fx.path);
    g_assert_cmpstr(qdict_get_str(info, "format"), ==, fmt);
    g_assert_false(qdict_haskey(info, "since"));

    bt_fixture_end(&fx);
}

/*
 * Zero pages (log v2): the baseline says which pages hold only zero bytes,
 * and each window which of its dirtied pages do at its sync.  -M none's RAM
 * starts zeroed, and the test is the only writer.  Pages 0x100-0x13f are
 * one word of the bitmap, all dirty and all zero but 0x120, after 5 dirty
 * pages: the binary log's ranks of zero pages take a whole word at a time
 * there, at an offset.
 */
static void test_zero_pages(const void *fmt)
{
    BTFixture fx = bt_fixture(NONE_ARGS, "zero", fmt);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    g_autoptr(GArray) dirty = g_array_new(false, false, sizeof(uint64_t));
    g_autoptr(GArray) zero = g_array_new(false, false, sizeof(uint64_t));
    static const uint64_t dirty_few[] = { 0x10, 0x20, 0x30, 0x40, 0x50 };
    static const uint64_t zero_few[] = { 0x10, 0x30, 0x50 };
    const uint64_t last = 0xfff;
    const BTLogIter *it0, *it1;

    g_array_append_vals(dirty, dirty_few, G_N_ELEMENTS(dirty_few));
    g_array_append_vals(zero, zero_few, G_N_ELEMENTS(zero_few));
    for (uint64_t p = 0x100; p < 0x140; p++) {
        g_array_append_val(dirty, p);
        if (p != 0x120) {
            g_array_append_val(zero, p);
        }
    }
    g_array_append_val(dirty, last);

    /* non-zero before the trace: pages 0x10-0x13, and the last byte of 0x7 */
    qtest_memset(fx.qts, 0x10 * PAGE, 0x5a, 4 * PAGE);
    qtest_writeb(fx.qts, 0x7 * PAGE + PAGE - 1, 1);

    bt_fixture_start(&fx, 100000, 100000);
    bt_await_baseline(fx.qts);
    qtest_memset(fx.qts, 0x20 * PAGE, 0xaa, PAGE);  /* non-zero */
    qtest_memset(fx.qts, 0x30 * PAGE, 0, PAGE);     /* zero written on zero */
    qtest_memset(fx.qts, 0x10 * PAGE, 0, PAGE);     /* non-zero made zero */
    qtest_writeb(fx.qts, 0x40 * PAGE + PAGE - 1, 1); /* only the last byte */
    qtest_memset(fx.qts, 0x50 * PAGE, 0x77, PAGE);  /* zeroed again ... */
    qtest_memset(fx.qts, 0x50 * PAGE, 0, PAGE);     /* ... before the sync */
    qtest_memset(fx.qts, 0x100 * PAGE, 0, 0x40 * PAGE); /* a word, zero ... */
    qtest_writeb(fx.qts, 0x120 * PAGE + 9, 1);      /* ... but one page */
    qtest_writeb(fx.qts, last * PAGE, 0x80);        /* first byte of the last */
    ev = bt_stop(fx.qts);

    log = bt_fixture_log(&fx);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    g_assert_cmpint(log->version, ==, 3);
    g_assert_cmpuint(log->iters->len, ==, 2);

    it0 = g_ptr_array_index(log->iters, 0);
    g_assert_cmpuint(it0->dirty, ==, NONE_PAGES);
    g_assert_cmpuint(it0->zero, ==, NONE_PAGES - 5);
    for (uint64_t p = 0; p < NONE_PAGES; p++) {
        bool nonzero = p == 0x7 || (p >= 0x10 && p <= 0x13);

        g_assert_cmpint(bt_log_iter_has_zero_pfn(it0, p), ==, !nonzero);
    }

    it1 = g_ptr_array_index(log->iters, 1);
    bt_assert_exact(it1, (const uint64_t *)dirty->data, dirty->len);
    g_assert_cmpuint(it1->zero, ==, zero->len);
    g_assert_cmpuint(it1->zero_pfns->len, ==, zero->len);
    for (size_t i = 0; i < zero->len; i++) {
        g_assert_cmphex(g_array_index(it1->zero_pfns, uint64_t, i), ==,
                        g_array_index(zero, uint64_t, i));
    }
    g_assert_cmpuint(it1->unmapped_zero->len, ==, 0);

    bt_fixture_end(&fx);
}

/*
 * Several windows.  Each window gets one qtest_memset, which is atomic with
 * respect to the tracer's sync (both run under the BQL): so each memset
 * lands in exactly one window, and each window holds at most one.  Page
 * HOT is in every memset and must be in every non-empty window; a page
 * written in one window must not reappear in the next.
 */
static void test_windows(void)
{
    BTFixture fx = bt_fixture(NONE_ARGS, "windows", NULL);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autoptr(BTLog) log = NULL;
    const uint64_t hot = 0x200;
    const int windows = 6;
    guint w = 1;
    int found = 0;
    int64_t done;

    bt_fixture_start(&fx, 100000, 30);
    for (int k = 1; k <= windows; k++) {
        int64_t c = bt_completed(fx.qts);

        /* pages hot .. hot + k: a different set every time */
        qtest_memset(fx.qts, hot * PAGE, k, (k + 1) * PAGE);
        /* two syncs after @c: the one that took this memset is done */
        bt_await_completed(fx.qts, c + 2);
    }
    ev = bt_stop(fx.qts);
    done = qdict_get_int(qdict_get_qdict(ev, "data"), "completed-iterations");

    log = bt_fixture_log(&fx);
    g_assert_cmpuint(log->iters->len, ==, done + 1);
    for (int k = 1; k <= windows; k++) {
        /* skip the empty windows between memsets */
        for (; w < log->iters->len; w++) {
            const BTLogIter *it = g_ptr_array_index(log->iters, w);

            if (it->dirty) {
                break;
            }
        }
        g_assert_cmpuint(w, <, log->iters->len);
        {
            const BTLogIter *it = g_ptr_array_index(log->iters, w);
            g_autofree uint64_t *expect = g_new(uint64_t, k + 1);

            for (int i = 0; i <= k; i++) {
                expect[i] = hot + i;
            }
            bt_assert_exact(it, expect, k + 1);
            g_assert_true(bt_log_iter_has_pfn(it, hot));
            found++;
        }
        w++;
    }
    g_assert_cmpint(found, ==, windows);
    /* no other window has any page */
    for (; w < log->iters->len; w++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, w);

        g_assert_cmpuint(it->dirty, ==, 0);
    }

    info = bt_query(fx.qts);
    g_assert_cmpint(qdict_get_int(info, "distinct-pages"), ==, windows + 1);
    bt_fixture_end(&fx);
}

/*
 * Guest-physical PFNs through the memory map: RAM above 4 GiB, an aliased
 * ROM logged at its lowest address, RAM shadowed by ROMs logged unmapped.
 */
static void test_pc_high(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("high");
    QTestState *qts;
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    static const uint64_t expect[] = { 0x1, 0x7fff, 0x100000, 0x107fff };
    const BTLogIter *it0, *it1;
    const BTLogBlock *ram, *bios;
    uint64_t total = 0;

    if (!qtest_has_machine("pc")) {
        g_test_skip("no pc machine");
        return;
    }
    qts = qtest_init(PC_HIGH_ARGS);
    bt_start(qts, path, fmt, 100000, 100000);
    qtest_writeb(qts, 0x1000, 1);
    qtest_writeb(qts, 0x7fff000, 1);
    qtest_writeb(qts, 0x100000000ULL, 1);
    qtest_writeb(qts, 0x107fff000ULL, 1);
    ev = bt_stop(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    ram = bt_log_find_block(log, "pc.ram");
    g_assert_nonnull(ram);
    g_assert_cmpuint(ram->pages, ==, 256 * 256);

    /* pc.ram: offset 128M is at 4 GiB */
    {
        bool high = false;

        for (guint i = 0; i < ram->map->len; i++) {
            BTLogRange *r = &g_array_index(ram->map, BTLogRange, i);

            if (r->first == 0x100000) {
                g_assert_cmpuint(r->npages, ==, 128 * 256);
                high = true;
            }
        }
        g_assert_true(high);
    }

    it0 = g_ptr_array_index(log->iters, 0);
    for (guint i = 0; i < log->blocks->len; i++) {
        total += ((BTLogBlock *)g_ptr_array_index(log->blocks, i))->pages;
    }
    g_assert_cmpuint(it0->dirty, ==, total);
    g_assert_true(bt_log_iter_has_pfn(it0, 0x100000));
    g_assert_true(bt_log_iter_has_pfn(it0, 0x107fff));
    g_assert_false(bt_log_iter_has_pfn(it0, 0x108000));
    /* pc.ram under the option ROM / BIOS windows has no GPA */
    g_assert_true(bt_log_iter_has_unmapped(it0, "pc.ram", 0xc0));
    g_assert_true(bt_log_iter_has_unmapped(it0, "pc.ram", 0xff));

    /* the last 128K of pc.bios show at 0xe0000 and below 4 GiB: lowest */
    bios = bt_log_find_block(log, "pc.bios");
    g_assert_nonnull(bios);
    g_assert_true(bt_log_iter_has_pfn(it0, 0xff));
    g_assert_true(bt_log_iter_has_pfn(it0, 0xfffc0));
    g_assert_false(bt_log_iter_has_pfn(it0, 0xfffff));

    it1 = g_ptr_array_index(log->iters, 1);
    bt_assert_exact(it1, expect, G_N_ELEMENTS(expect));

    qtest_quit(qts);
    unlink(path);
}

/* Two RAM blocks (NUMA nodes with their own memdevs) */
static void test_two_blocks(const void *fmt)
{
    g_autofree char *path = bt_tmp_path("numa");
    QTestState *qts;
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    /* node 1 starts at 32M: PFN 0x2000 */
    static const uint64_t expect[] = { 0x10, 0x1fff, 0x2000, 0x2abc, 0x3fff };
    const BTLogBlock *m0, *m1;

    if (!qtest_has_machine("pc")) {
        g_test_skip("no pc machine");
        return;
    }
    qts = qtest_init("-M pc -m 64M -nodefaults "
                     "-object memory-backend-ram,id=m0,size=32M "
                     "-object memory-backend-ram,id=m1,size=32M "
                     "-numa node,memdev=m0 -numa node,memdev=m1");
    bt_start(qts, path, fmt, 100000, 100000);
    for (size_t i = 0; i < G_N_ELEMENTS(expect); i++) {
        qtest_writeb(qts, expect[i] * PAGE + 7, 0x55);
    }
    ev = bt_stop(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    m0 = bt_log_find_block(log, "m0");
    m1 = bt_log_find_block(log, "m1");
    g_assert_nonnull(m0);
    g_assert_nonnull(m1);
    g_assert_cmpuint(m1->pages, ==, 32 * 256);
    g_assert_cmphex(g_array_index(m1->map, BTLogRange, 0).first, ==, 0x2000);
    bt_assert_exact(g_ptr_array_index(log->iters, 1), expect,
                 G_N_ELEMENTS(expect));
    qtest_quit(qts);
    unlink(path);
}

/*
 * The memory map changes during a trace: the i440FX's PAM register that
 * steers 0xc0000-0xc7fff to RAM instead of the option ROM area.  A write
 * there after the change is to pc.ram, mapped now, and must be logged at
 * its PFN, not as an unmapped page of pc.ram (the map the trace read
 * before): the trace reads the map again when it changes.
 */
static void test_map_change(const void *fmt)
{
    BTFixture fx = bt_fixture("-M pc -m 64M -nodefaults", "map-change", fmt);
    g_autoptr(BTLog) log = NULL;
    int64_t c, where = -1;

    bt_fixture_start(&fx, 100000, 20);
    bt_await_completed(fx.qts, 2);
    /* PAM1 (config byte 0x5a of 00:00.0): 0xc0000-0xc7fff read/write RAM */
    qtest_outl(fx.qts, 0xcf8, 0x80000058);
    qtest_outb(fx.qts, 0xcfe, 0x33);
    c = bt_completed(fx.qts);
    qtest_writeb(fx.qts, 0xc1000, 0x5a);
    g_assert_cmpuint(qtest_readb(fx.qts, 0xc1000), ==, 0x5a);
    bt_await_completed(fx.qts, c + 2);
    qobject_unref(bt_stop(fx.qts));

    log = bt_fixture_log(&fx);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_cmpuint(it->unmapped, ==, 0);
        if (it->dirty) {
            g_assert_cmpint(where, ==, -1);
            bt_assert_exact(it, (const uint64_t[]) { 0xc1 }, 1);
            where = n;
        }
    }
    g_assert_cmpint(where, >, 0);
    bt_fixture_end(&fx);
}

/*
 * The baseline's zero scan of 4 GiB of never-touched RAM takes several
 * periods of 10 ms: the rounds that fall due meanwhile are taken on time,
 * and logged once the baseline is.  The test writes a new page at a time
 * until the baseline is in the log: each is logged in exactly one round,
 * no round has any other page or calls one of them zero, and the rounds
 * follow the order of the writes.  The case is met when the scan took
 * several periods and some rounds taken before it ended got writes.
 */
static void test_baseline_queue(const void *fmt)
{
    BTFixture fx = bt_fixture("-M pc -m 4G -nodefaults", "queue", fmt);
    g_autoptr(GHashTable) round_of = g_hash_table_new(NULL, NULL);
    g_autoptr(BTLog) log = NULL;
    const uint64_t first = 0x1000;      /* from 16 MiB, plain RAM */
    uint64_t written = 0;
    int64_t last = 1, queued = 0, queued_written = 0;
    const BTLogIter *it0;

    bt_fixture_start(&fx, 100000, 10);
    for (;;) {
        qtest_writeb(fx.qts, (first + written) * PAGE + written % PAGE, 0x5a);
        written++;
        if (written % 16 == 0) {
            g_autoptr(QDict) info = bt_query(fx.qts);

            if (qlist_size(qdict_get_qlist(info, "dirty-pages")) >= 1) {
                break;
            }
        }
        g_assert_cmpuint(written, <, 256 * 1024);   /* 1 GiB of pages */
    }
    qobject_unref(bt_stop(fx.qts));

    log = bt_fixture_log(&fx);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    it0 = g_ptr_array_index(log->iters, 0);
    g_test_message("baseline zero scan %" PRId64 " us, %" PRIu64 " writes, "
                   "%u rounds", it0->zero_us, written, log->iters->len - 1);
    g_assert_cmpint(it0->zero_us, >, 4 * 10000);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_cmpuint(it->unmapped, ==, 0);
        g_assert_cmpuint(it->zero, ==, 0);
        for (guint i = 0; i < it->pfns->len; i++) {
            uint64_t pfn = g_array_index(it->pfns, uint64_t, i);

            g_assert_cmphex(pfn, >=, first);
            g_assert_cmphex(pfn, <, first + written);
            g_assert_false(g_hash_table_contains(round_of,
                                                 GSIZE_TO_POINTER(pfn)));
            g_hash_table_insert(round_of, GSIZE_TO_POINTER(pfn),
                                GSIZE_TO_POINTER(n));
        }
        /* taken before the scan, which began after t0, ended */
        if (it->t_ms * 1000 < it0->zero_us) {
            queued++;
            queued_written += it->dirty > 0;
        }
    }
    g_assert_cmpuint(g_hash_table_size(round_of), ==, written);
    for (uint64_t i = 0; i < written; i++) {
        int64_t n = GPOINTER_TO_SIZE(g_hash_table_lookup(round_of,
                                         GSIZE_TO_POINTER(first + i)));

        g_assert_cmpint(n, >=, last);
        last = n;
    }
    g_assert_cmpint(queued, >=, 2);
    g_assert_cmpint(queued_written, >=, 2);
    bt_fixture_end(&fx);
}

/*
 * A round more than half a period late starts the deadlines again, and
 * the rounds it made late must not then run back to back, each with a
 * window of next to nothing: every window after the first is at least half
 * a period long.  Rounds are late when the baseline's zero scan (4 GiB of
 * never-touched RAM, several periods of 10 ms) cannot queue them: the
 * memory map changed (the PAM register of test_map_change()), so a round
 * would translate its pages with a map the baseline's are not.  A write
 * to the RAM the change mapped is logged once, at its PFN, and the
 * baseline has that page where it was: in no GPA.
 */
static void test_late_baseline(void)
{
    BTFixture fx = bt_fixture("-M pc -m 4G -nodefaults", "late", NULL);
    g_autoptr(BTLog) log = NULL;
    bool restarted = false;
    int64_t where = -1;

    bt_fixture_start(&fx, 20, 10);
    qtest_outl(fx.qts, 0xcf8, 0x80000058);
    qtest_outb(fx.qts, 0xcfe, 0x33);
    qtest_writeb(fx.qts, 0xc1000, 0x5a);
    qobject_unref(qtest_qmp_eventwait_ref(fx.qts, "BITMAP_TRACE_COMPLETED"));
    log = bt_fixture_log(&fx);
    g_assert_cmpuint(log->iters->len, ==, 21);
    g_test_message("baseline zero scan %" PRId64 " us, round 1 at %.3f ms",
                   ((BTLogIter *)g_ptr_array_index(log->iters, 0))->zero_us,
                   ((BTLogIter *)g_ptr_array_index(log->iters, 1))->t_ms);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);
        const BTLogIter *prev = g_ptr_array_index(log->iters, n - 1);

        if (n > 1) {
            g_assert_cmpfloat(it->t_ms - prev->t_ms, >=, 5.0);
        }
        /* later than its deadline by more than half a period */
        restarted |= it->t_ms - prev->t_ms > 15.0;
        g_assert_cmpuint(it->unmapped, ==, 0);
        if (it->dirty) {
            g_assert_cmpint(where, ==, -1);
            bt_assert_exact(it, (const uint64_t[]) { 0xc1 }, 1);
            where = n;
        }
    }
    /* the baseline's pages are where they were when it was taken */
    g_assert_true(bt_log_iter_has_unmapped(g_ptr_array_index(log->iters, 0),
                                           "pc.ram", 0xc1));
    /* the case is met */
    g_assert_true(restarted);
    g_assert_cmpint(where, >, 0);
    bt_fixture_end(&fx);
}

void bt_add_exact_tests(void)
{
    bt_add_formats("/bitmap-trace/exact/stop", test_exact_stop);
    qtest_add_func("/bitmap-trace/exact/windows", test_windows);
    bt_add_formats("/bitmap-trace/exact/pc-above-4g", test_pc_high);
    bt_add_formats("/bitmap-trace/exact/two-blocks", test_two_blocks);
    bt_add_formats("/bitmap-trace/exact/zero-pages", test_zero_pages);
    bt_add_formats("/bitmap-trace/exact/baseline-queue", test_baseline_queue);
    bt_add_formats("/bitmap-trace/exact/map-change", test_map_change);
    qtest_add_func("/bitmap-trace/exact/late-baseline", test_late_baseline);
}
