/*
 * QTest for bitmap-trace: exactness under the qtest accelerator, and the
 * QMP/HMP interface.
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
#include <poll.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <termios.h>
#ifdef __linux__
#include <sys/mount.h>
#endif
#include "libqtest.h"
#include "qapi/error.h"
#include "qobject/qbool.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qnull.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "bitmap-trace/log-reader.h"

#define PAGE 4096ULL
#define NONE_ARGS "-M none -cpu qemu64,apic-id=0 -m 16M"
#define NONE_PAGES 4096

/* -M pc with RAM above 4 GiB: pc.ram offset 128M is GPA 4G */
#define PC_HIGH_ARGS "-M pc,max-ram-below-4g=128M -m 256M -nodefaults"

static char *tmp_path(const char *name)
{
    int fd;
    GError *err = NULL;
    char *path = NULL;
    g_autofree char *tmpl = g_strdup_printf("bitmap-trace-%s-XXXXXX", name);

    fd = g_file_open_tmp(tmpl, &path, &err);
    g_assert_no_error(err);
    close(fd);
    unlink(path);       /* the trace must create it */
    return path;
}

static void start_trace(QTestState *qts, const char *path, int iterations,
                        int period)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'iterations': %d, 'period': %d}}",
        path, iterations, period);
}

/* Start a trace whose log is in @format, "text" or "binary" */
static void start_trace_fmt(QTestState *qts, const char *path,
                            const char *format, int iterations, int period)
{
    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'format': %s, 'iterations': %d,"
        " 'period': %d}}", path, format, iterations, period);
}

/* Stop the trace and wait for its end; returns the event's data */
static QDict *stop_trace(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    return qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
}

static QDict *query_trace(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{'execute': 'query-bitmap-trace'}");
    QDict *ret;

    g_assert(qdict_haskey(resp, "return"));
    ret = qdict_get_qdict(resp, "return");
    qobject_ref(ret);
    qobject_unref(resp);
    return ret;
}

static int64_t completed_iterations(QTestState *qts)
{
    g_autoptr(QDict) info = query_trace(qts);

    return qdict_get_int(info, "completed-iterations");
}

/*
 * Wait until the trace has completed @n iterations.  Iterations have no
 * event of their own, so poll query-bitmap-trace (bounded).
 */
static void wait_completed(QTestState *qts, int64_t n)
{
    for (int i = 0; i < 6000; i++) {
        if (completed_iterations(qts) >= n) {
            return;
        }
        g_usleep(5000);
    }
    g_assert_not_reached();
}

/*
 * Wait until the baseline is in the log.  The command takes the baseline's
 * sync; the trace thread then reads every page for the zero-page scan,
 * which a write made before it is done could be seen by.
 */
static void wait_baseline(QTestState *qts)
{
    for (int i = 0; i < 6000; i++) {
        g_autoptr(QDict) info = query_trace(qts);

        if (qlist_size(qdict_get_qlist(info, "dirty-pages")) >= 1) {
            return;
        }
        g_usleep(5000);
    }
    g_assert_not_reached();
}

/* Assert @it lists exactly the sorted PFN set @pfns of size @n */
static void assert_exact(const BTLogIter *it, const uint64_t *pfns, size_t n)
{
    g_assert_cmpuint(it->pfns->len, ==, n);
    g_assert_cmpuint(it->dirty, ==, n);
    g_assert_cmpuint(it->unmapped, ==, 0);
    for (size_t i = 0; i < n; i++) {
        g_assert_cmphex(g_array_index(it->pfns, uint64_t, i), ==, pfns[i]);
    }
}

/* @err is what qtest_qmp_assert_failure_ref() returns */
static const char *error_desc(QDict *resp)
{
    return qdict_get_str(resp, "desc");
}

/*
 * Baseline and one measured window, closed by state=false: the window
 * lists exactly the pages written, scattered and in a run.
 */
static void test_exact_stop(const void *fmt)
{
    g_autofree char *path = tmp_path("stop");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autoptr(BTLog) log = NULL;
    static const uint64_t expect[] = {
        0x0, 0x5, 0x100, 0x101, 0x102, 0x7ff, 0xfff
    };
    const BTLogIter *it0, *it1;
    struct stat st;

    start_trace_fmt(qts, path, fmt, 100000, 100000);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0600);

    qtest_writeb(qts, 0x5 * PAGE + 17, 1);
    qtest_writeb(qts, 0x0, 2);
    qtest_writeb(qts, 0xfff * PAGE + PAGE - 1, 3);
    /* two writes to one page count once; a run spans three pages */
    qtest_writeb(qts, 0x7ff * PAGE, 4);
    qtest_writeb(qts, 0x7ff * PAGE + 8, 5);
    qtest_memset(qts, 0x100 * PAGE + 100, 0xaa, 2 * PAGE);

    ev = stop_trace(qts);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "cancelled");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(ev, "data"),
                                  "completed-iterations"), ==, 1);

    log = bt_log_parse(path, true);
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
    assert_exact(it1, expect, G_N_ELEMENTS(expect));

    info = query_trace(qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "cancelled");
    g_assert_cmpint(qdict_get_int(info, "completed-iterations"), ==, 1);
    g_assert_cmpint(qdict_get_int(info, "last-dirty-pages"), ==,
                    G_N_ELEMENTS(expect));
    g_assert_cmpint(qdict_get_int(info, "distinct-pages"), ==,
                    G_N_ELEMENTS(expect));
    g_assert_cmpstr(qdict_get_str(info, "filename"), ==, path);
    g_assert_cmpstr(qdict_get_str(info, "format"), ==, fmt);
    g_assert_false(qdict_haskey(info, "since"));

    qtest_quit(qts);
    unlink(path);
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
    g_autofree char *path = tmp_path("zero");
    QTestState *qts = qtest_init(NONE_ARGS);
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
    qtest_memset(qts, 0x10 * PAGE, 0x5a, 4 * PAGE);
    qtest_writeb(qts, 0x7 * PAGE + PAGE - 1, 1);

    start_trace_fmt(qts, path, fmt, 100000, 100000);
    wait_baseline(qts);
    qtest_memset(qts, 0x20 * PAGE, 0xaa, PAGE);     /* non-zero */
    qtest_memset(qts, 0x30 * PAGE, 0, PAGE);        /* zero written on zero */
    qtest_memset(qts, 0x10 * PAGE, 0, PAGE);        /* non-zero made zero */
    qtest_writeb(qts, 0x40 * PAGE + PAGE - 1, 1);   /* only the last byte */
    qtest_memset(qts, 0x50 * PAGE, 0x77, PAGE);     /* zeroed again ... */
    qtest_memset(qts, 0x50 * PAGE, 0, PAGE);        /* ... before the sync */
    qtest_memset(qts, 0x100 * PAGE, 0, 0x40 * PAGE); /* a word, zero ... */
    qtest_writeb(qts, 0x120 * PAGE + 9, 1);         /* ... but one page */
    qtest_writeb(qts, last * PAGE, 0x80);           /* first byte of the last */
    ev = stop_trace(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    g_assert_cmpint(log->version, ==, 2);
    g_assert_cmpuint(log->iters->len, ==, 2);

    it0 = g_ptr_array_index(log->iters, 0);
    g_assert_cmpuint(it0->dirty, ==, NONE_PAGES);
    g_assert_cmpuint(it0->zero, ==, NONE_PAGES - 5);
    for (uint64_t p = 0; p < NONE_PAGES; p++) {
        bool nonzero = p == 0x7 || (p >= 0x10 && p <= 0x13);

        g_assert_cmpint(bt_log_iter_has_zero_pfn(it0, p), ==, !nonzero);
    }

    it1 = g_ptr_array_index(log->iters, 1);
    assert_exact(it1, (const uint64_t *)dirty->data, dirty->len);
    g_assert_cmpuint(it1->zero, ==, zero->len);
    g_assert_cmpuint(it1->zero_pfns->len, ==, zero->len);
    for (size_t i = 0; i < zero->len; i++) {
        g_assert_cmphex(g_array_index(it1->zero_pfns, uint64_t, i), ==,
                        g_array_index(zero, uint64_t, i));
    }
    g_assert_cmpuint(it1->unmapped_zero->len, ==, 0);

    qtest_quit(qts);
    unlink(path);
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
    g_autofree char *path = tmp_path("windows");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autoptr(BTLog) log = NULL;
    const uint64_t hot = 0x200;
    const int windows = 6;
    guint w = 1;
    int found = 0;
    int64_t done;

    start_trace(qts, path, 100000, 30);
    for (int k = 1; k <= windows; k++) {
        int64_t c = completed_iterations(qts);

        /* pages hot .. hot + k: a different set every time */
        qtest_memset(qts, hot * PAGE, k, (k + 1) * PAGE);
        /* two syncs after @c: the one that took this memset is done */
        wait_completed(qts, c + 2);
    }
    ev = stop_trace(qts);
    done = qdict_get_int(qdict_get_qdict(ev, "data"), "completed-iterations");

    log = bt_log_parse(path, true);
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
            assert_exact(it, expect, k + 1);
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

    info = query_trace(qts);
    g_assert_cmpint(qdict_get_int(info, "distinct-pages"), ==, windows + 1);
    qtest_quit(qts);
    unlink(path);
}

/*
 * Guest-physical PFNs through the memory map: RAM above 4 GiB, an aliased
 * ROM logged at its lowest address, RAM shadowed by ROMs logged unmapped.
 */
static void test_pc_high(const void *fmt)
{
    g_autofree char *path = tmp_path("high");
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
    start_trace_fmt(qts, path, fmt, 100000, 100000);
    qtest_writeb(qts, 0x1000, 1);
    qtest_writeb(qts, 0x7fff000, 1);
    qtest_writeb(qts, 0x100000000ULL, 1);
    qtest_writeb(qts, 0x107fff000ULL, 1);
    ev = stop_trace(qts);

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
    assert_exact(it1, expect, G_N_ELEMENTS(expect));

    qtest_quit(qts);
    unlink(path);
}

/* Two RAM blocks (NUMA nodes with their own memdevs) */
static void test_two_blocks(const void *fmt)
{
    g_autofree char *path = tmp_path("numa");
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
    start_trace_fmt(qts, path, fmt, 100000, 100000);
    for (size_t i = 0; i < G_N_ELEMENTS(expect); i++) {
        qtest_writeb(qts, expect[i] * PAGE + 7, 0x55);
    }
    ev = stop_trace(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpint(log->binary, ==, !strcmp(fmt, "binary"));
    m0 = bt_log_find_block(log, "m0");
    m1 = bt_log_find_block(log, "m1");
    g_assert_nonnull(m0);
    g_assert_nonnull(m1);
    g_assert_cmpuint(m1->pages, ==, 32 * 256);
    g_assert_cmphex(g_array_index(m1->map, BTLogRange, 0).first, ==, 0x2000);
    assert_exact(g_ptr_array_index(log->iters, 1), expect,
                 G_N_ELEMENTS(expect));
    qtest_quit(qts);
    unlink(path);
}

/* Defaults: 3 iterations of 10 ms, ending by itself */
static void test_defaults(void)
{
    g_autofree char *path = tmp_path("defaults");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autoptr(BTLog) log = NULL;
    QDict *data;

    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', 'arguments':"
                             " {'state': true, 'filename': %s}}", path);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    data = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "completed");
    g_assert_cmpint(qdict_get_int(data, "completed-iterations"), ==, 3);
    g_assert_false(qdict_haskey(data, "error"));

    info = query_trace(qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "completed");
    g_assert_cmpint(qdict_get_int(info, "iterations"), ==, 3);
    g_assert_cmpint(qdict_get_int(info, "period"), ==, 10);
    g_assert_cmpint(qdict_get_int(info, "completed-iterations"), ==, 3);
    g_assert_cmpint(qlist_size(qdict_get_qlist(info, "dirty-pages")), ==, 4);

    log = bt_log_parse(path, true);
    g_assert_cmpint(log->iterations, ==, 3);
    g_assert_cmpint(log->period_ms, ==, 10);
    g_assert_cmpstr(log->end_status, ==, "completed");
    g_assert_cmpint(log->end_iterations, ==, 3);
    g_assert_cmpuint(log->iters->len, ==, 4);
    /* deadlines are t0 + i * period: never early */
    for (guint i = 1; i < log->iters->len; i++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, i);

        g_assert_cmpfloat(it->t_ms, >=, i * 10.0);
        g_assert_cmpuint(it->dirty, ==, 0);
    }
    qtest_quit(qts);
    unlink(path);
}

/* Every range boundary; a refused start creates no file */
static void test_ranges(void)
{
    QTestState *qts = qtest_init(NONE_ARGS);
    static const struct {
        int iterations, period;
        bool ok;
        const char *param;
    } cases[] = {
        { 2, 10, false, "'iterations'" },
        { 3, 10, true },
        { 100000, 10, true },
        { 100001, 10, false, "'iterations'" },
        { 3, 9, false, "'period'" },
        { 3, 100000, true },
        { 3, 100001, false, "'period'" },
        { -1, 10, false, "'iterations'" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = tmp_path("range");
        g_autoptr(QDict) resp = NULL;

        if (cases[i].ok) {
            g_autoptr(QDict) ev = NULL;

            start_trace(qts, path, cases[i].iterations, cases[i].period);
            g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
            ev = stop_trace(qts);
            unlink(path);
            continue;
        }
        resp = qtest_qmp_assert_failure_ref(qts,
            "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
            " 'filename': %s, 'iterations': %d, 'period': %d}}",
            path, cases[i].iterations, cases[i].period);
        g_assert_nonnull(strstr(error_desc(resp), cases[i].param));
        g_assert_nonnull(strstr(error_desc(resp),
                                cases[i].param[1] == 'i' ? "3-100000"
                                                         : "10-100000"));
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    }
    qtest_quit(qts);
}

static void test_errors(void)
{
    g_autofree char *path = tmp_path("errors");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) idle = NULL;
    g_autoptr(QDict) ev = NULL;
    QDict *resp;

    /* query and stop when idle */
    idle = query_trace(qts);
    g_assert_cmpstr(qdict_get_str(idle, "status"), ==, "none");
    g_assert_cmpint(qdict_get_int(idle, "completed-iterations"), ==, 0);
    g_assert_false(qdict_haskey(idle, "filename"));
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");

    /* missing filename */
    resp = qtest_qmp_assert_failure_ref(qts, "{'execute': 'bitmap-trace', "
                                        "'arguments': {'state': true}}");
    g_assert_nonnull(strstr(error_desc(resp), "'filename'"));
    qobject_unref(resp);

    /* unwritable path: the error names the file, nothing starts */
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': '/nonexistent-dir/dirty.log'}}");
    g_assert_nonnull(strstr(error_desc(resp), "/nonexistent-dir/dirty.log"));
    qobject_unref(resp);
    qobject_unref(idle);
    idle = query_trace(qts);
    g_assert_cmpstr(qdict_get_str(idle, "status"), ==, "none");

    /* double start */
    start_trace(qts, path, 100000, 100000);
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': '/tmp/other'}}");
    g_assert_nonnull(strstr(error_desc(resp), "already active"));
    qobject_unref(resp);

    /* migration is refused while the trace runs */
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'migrate', 'arguments': {'uri': 'file:/dev/null'}}");
    g_assert_nonnull(strstr(error_desc(resp), "bitmap-trace"));
    qobject_unref(resp);

    ev = stop_trace(qts);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "cancelled");
    qtest_quit(qts);
    unlink(path);
}

/* The log may be a descriptor passed with add-fd, as for dump-guest-memory */
static void test_fdset(void)
{
    g_autofree char *path = tmp_path("fdset");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    int fd = open(path, O_CREAT | O_WRONLY, 0600);

    g_assert_cmpint(fd, >=, 0);
    qobject_unref(qtest_qmp_fds_assert_success_ref(qts, &fd, 1,
        "{'execute': 'add-fd', 'arguments': {'fdset-id': 1}}"));
    close(fd);
    start_trace(qts, "/dev/fdset/1", 100000, 100000);
    qtest_writeb(qts, 0x9000, 1);
    ev = stop_trace(qts);
    log = bt_log_parse(path, true);
    g_assert_true(bt_log_iter_has_pfn(g_ptr_array_index(log->iters, 1), 9));
    qtest_quit(qts);
    unlink(path);
}

/*
 * The same fdset for two traces in a row: the descriptor dup'd from it
 * shares its file offset with the fdset's own, so the second log must
 * still start at offset 0 (not after NUL bytes where the first log was),
 * and the fdset must be released once its descriptor is removed.
 */
static void test_fdset_twice(void)
{
    g_autofree char *path = tmp_path("fdset-twice");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(BTLog) log = NULL;
    g_autofree char *text = NULL;
    QDict *resp;
    QList *fdsets;
    gsize len;
    int fd = open(path, O_CREAT | O_WRONLY, 0600);

    g_assert_cmpint(fd, >=, 0);
    qobject_unref(qtest_qmp_fds_assert_success_ref(qts, &fd, 1,
        "{'execute': 'add-fd', 'arguments': {'fdset-id': 1}}"));
    close(fd);

    /* a long first log, then a shorter second one */
    start_trace(qts, "/dev/fdset/1", 100000, 100000);
    for (int i = 0; i < 64; i++) {
        qtest_writeb(qts, (2 * i + 16) * PAGE, 1);
    }
    qobject_unref(stop_trace(qts));
    start_trace(qts, "/dev/fdset/1", 100000, 100000);
    qtest_writeb(qts, 0x5000, 1);
    qobject_unref(stop_trace(qts));

    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    g_assert_cmpuint(strlen(text), ==, len);
    g_assert_true(g_str_has_prefix(text, "bitmap-trace v2\n"));
    log = bt_log_parse(path, true);
    g_assert_cmpuint(log->iters->len, ==, 2);
    assert_exact(g_ptr_array_index(log->iters, 1), (uint64_t[]){ 5 }, 1);

    qtest_qmp_assert_success(qts, "{'execute': 'remove-fd', "
                             "'arguments': {'fdset-id': 1}}");
    resp = qtest_qmp(qts, "{'execute': 'query-fdsets'}");
    fdsets = qdict_get_qlist(resp, "return");
    g_assert_nonnull(fdsets);
    g_assert_true(qlist_empty(fdsets));
    qobject_unref(resp);
    qtest_quit(qts);
    unlink(path);
}

/* Open @path for reading after @delay_ms, then close it again */
typedef struct FifoLateReader {
    char *path;
    int delay_ms;
} FifoLateReader;

static gpointer fifo_late_reader(gpointer opaque)
{
    FifoLateReader *r = opaque;
    int fd;

    g_usleep(r->delay_ms * 1000);
    fd = open(r->path, O_RDONLY | O_NONBLOCK);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return NULL;
}

/* Read the FIFO whose read end is @opaque until EOF */
static gpointer fifo_drain(gpointer opaque)
{
    int fd = GPOINTER_TO_INT(opaque);
    GString *data = g_string_new("");
    char buf[4096];

    g_assert_cmpint(fcntl(fd, F_SETFL, 0), ==, 0);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        g_assert_cmpint(n, >=, 0);
        if (!n) {
            break;
        }
        g_string_append_len(data, buf, n);
    }
    close(fd);
    return data;
}

static char *fifo_create(const char *name)
{
    char *path = tmp_path(name);

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    return path;
}

/*
 * A FIFO with no reader: the command must fail at once with an error that
 * says so, and must not wait (with the main loop) for a reader to come.
 */
static void test_fifo_no_reader(void)
{
    g_autofree char *path = fifo_create("fifo-none");
    QTestState *qts = qtest_init(NONE_ARGS);
    FifoLateReader late = { .path = path, .delay_ms = 2000 };
    GThread *reader = g_thread_new("late-reader", fifo_late_reader, &late);
    int64_t t0 = g_get_monotonic_time();
    QDict *resp;

    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': %s}}", path);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1000 * 1000);
    g_assert_nonnull(strstr(error_desc(resp), "no reader"));
    qobject_unref(resp);
    g_thread_join(reader);

    /* nothing is left behind: a trace to a file starts */
    g_free(path);
    path = tmp_path("fifo-none-after");
    start_trace(qts, path, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
}

/* A reader that reads everything gets a complete, valid log */
static void test_fifo_stream(void)
{
    g_autofree char *path = fifo_create("fifo-stream");
    g_autofree char *copy = tmp_path("fifo-copy");
    QTestState *qts = qtest_init(NONE_ARGS);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    g_autoptr(BTLog) log = NULL;
    g_autoptr(QDict) ev = NULL;
    GThread *reader;
    GString *data;

    /* QEMU opens the FIFO while a reader has it open */
    g_assert_cmpint(rfd, >=, 0);
    start_trace(qts, path, 20, 10);
    reader = g_thread_new("reader", fifo_drain, GINT_TO_POINTER(rfd));
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "completed");
    data = g_thread_join(reader);
    g_assert_true(g_file_set_contents(copy, data->str, data->len, NULL));
    log = bt_log_parse(copy, true);
    g_assert_cmpuint(log->iters->len, ==, 21);
    g_assert_cmpstr(log->end_status, ==, "completed");
    g_string_free(data, true);
    qtest_quit(qts);
    unlink(copy);
    unlink(path);
}

/* Start a trace to a FIFO whose reader never reads; wait until it is full */
static int fifo_stall(QTestState *qts, const char *path)
{
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    int64_t done, last = -1;

    g_assert_cmpint(rfd, >=, 0);
#ifdef F_SETPIPE_SZ
    fcntl(rfd, F_SETPIPE_SZ, 4096);
#endif
    start_trace(qts, path, 100000, 10);
    /* full once the iterations stop for a while */
    for (int i = 0; i < 1000; i++) {
        g_usleep(100 * 1000);
        done = completed_iterations(qts);
        if (done == last) {
            return rfd;
        }
        last = done;
    }
    g_assert_not_reached();
}

/* Wait, bounded, until no trace is active; returns its status */
static char *wait_inactive(QTestState *qts, int64_t timeout_ms)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000;

    for (;;) {
        g_autoptr(QDict) info = query_trace(qts);

        if (strcmp(qdict_get_str(info, "status"), "active")) {
            return g_strdup(qdict_get_str(info, "status"));
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/*
 * A reader that stops reading: the trace thread must not block for good.
 * The trace fails by itself after a while, state=false ends it at once,
 * and QEMU quits.
 */
static void test_fifo_stalled(void)
{
    g_autofree char *path = fifo_create("fifo-stall");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *status = NULL;
    g_autoptr(QDict) info = NULL;
    int rfd;
    int64_t t0;

    /* left alone, the trace fails with an error that says why */
    rfd = fifo_stall(qts, path);
    status = wait_inactive(qts, 10000);
    g_assert_cmpstr(status, ==, "failed");
    info = query_trace(qts);
    g_assert_nonnull(strstr(qdict_get_str(info, "error-desc"),
                            "stopped reading"));
    close(rfd);

    /* state=false ends it without waiting for the reader */
    rfd = fifo_stall(qts, path);
    t0 = g_get_monotonic_time();
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    g_free(status);
    status = wait_inactive(qts, 10000);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1500 * 1000);
    g_assert_cmpstr(status, ==, "failed");
    close(rfd);

    /* and so does quit */
    rfd = fifo_stall(qts, path);
    t0 = g_get_monotonic_time();
    qtest_quit(qts);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1500 * 1000);
    close(rfd);
    unlink(path);
}

/*
 * Faults: a log that cannot be written (disk full, an I/O error, a reader
 * that went away) ends the trace as failed, with an error that names the
 * log and the cause; what is left of the log is a valid log; QEMU and the
 * guest run on, and a later trace works.
 */

/* 128 MiB: a window of every 8th page takes more than 4 KiB in both formats */
#define BIG_ARGS "-M none -cpu qemu64,apic-id=0 -m 128M"
#define BIG_PAGES 32768

/*
 * Wait for the end of a trace that must fail because of @cause (a
 * strerror() text) writing @path.  Returns the error; the measured
 * iterations it completed go to @completed.
 */
static char *wait_failed(QTestState *qts, const char *path,
                         const char *cause, int64_t *completed)
{
    g_autoptr(QDict) ev = qtest_qmp_eventwait_ref(qts,
                                                  "BITMAP_TRACE_COMPLETED");
    g_autoptr(QDict) info = query_trace(qts);
    QDict *data = qdict_get_qdict(ev, "data");
    const char *error = qdict_get_try_str(data, "error");

    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "failed");
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error, path));
    g_assert_nonnull(strstr(error, cause));
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "failed");
    g_assert_cmpstr(qdict_get_str(info, "error-desc"), ==, error);
    *completed = qdict_get_int(data, "completed-iterations");
    g_assert_cmpint(qdict_get_int(info, "completed-iterations"), ==,
                    *completed);
    return g_strdup(error);
}

/* After a fault: the guest's RAM still works and so does a new trace */
static void assert_runs_on(QTestState *qts)
{
    g_autofree char *path = tmp_path("after-fault");
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;

    qtest_writeb(qts, 0x1000, 0x5a);
    g_assert_cmpint(qtest_readb(qts, 0x1000), ==, 0x5a);
    start_trace(qts, path, 3, 10);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "completed");
    log = bt_log_parse(path, true);
    g_assert_cmpstr(log->end_status, ==, "completed");
    g_assert_cmpuint(log->iters->len, ==, 4);
    unlink(path);
}

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

    start_trace_fmt(qts, path, fmt, 100000, 100000);
    wait_baseline(qts);
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
    error = wait_failed(qts, path, g_strerror(err), &completed);
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

#ifdef __linux__
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
#ifdef __linux__
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
    start_trace_fmt(qts, path, fmt, 100000, 100000);
    error = wait_failed(qts, path, g_strerror(ENOSPC), &completed);
    g_assert_cmpint(completed, ==, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 0);
    unlink(path);
    g_clear_pointer(&error, g_free);

    /* Small records: the last one does not fit, nor does an end record */
    qtest_memset(qts, 0, 0, BIG_PAGES * PAGE);
    start_trace_fmt(qts, path, fmt, 100000, 10);
    error = wait_failed(qts, path, g_strerror(ENOSPC), &completed);
    g_assert_cmpint(completed, >, 0);
    prefix = bt_log_parse(path, false);
    g_assert_false(prefix->has_end);
    g_assert_cmpuint(prefix->iters->len, ==, completed + 1);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpuint(st.st_size, <=, disk);
    g_assert_cmpuint(disk - st.st_size, <,
                     failed_end_len(binary, completed, error));
    unlink(path);

    assert_runs_on(qts);
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
    g_autofree char *path = tmp_path("fsize");
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
    assert_runs_on(qts);
    qtest_quit(qts);
}

/*
 * Two binary traces in a row: the second header must not carry what the
 * first left in the tracer's scratch strings (its last page set, taken
 * for blocked reasons).
 */
static void test_binary_header_after_trace(void)
{
    g_autofree char *path = tmp_path("header-after");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(BTLog) first = NULL;
    g_autoptr(BTLog) second = NULL;
    const BTLogIter *it;

    /*
     * Every third page, every other one of them left zero, the first
     * not: the zero set's runs then have no NUL byte.
     */
    start_trace_fmt(qts, path, "binary", 100000, 100000);
    wait_baseline(qts);
    for (uint64_t pfn = 0; pfn < NONE_PAGES; pfn += 3) {
        qtest_writeb(qts, pfn * PAGE, (pfn / 3 + 1) % 2);
    }
    qobject_unref(stop_trace(qts));
    first = bt_log_parse(path, true);
    g_assert_cmpuint(first->blocked->len, ==, 0);
    g_assert_cmpuint(first->iters->len, ==, 2);
    it = g_ptr_array_index(first->iters, 1);
    g_assert_cmpuint(it->dirty, ==, DIV_ROUND_UP(NONE_PAGES, 3));
    g_assert_cmpuint(it->zero, ==, DIV_ROUND_UP(NONE_PAGES, 3) / 2);

    start_trace_fmt(qts, path, "binary", 100000, 100000);
    qobject_unref(stop_trace(qts));
    second = bt_log_parse(path, true);
    g_assert_cmpuint(second->blocked->len, ==, 0);
    g_assert_cmpuint(second->iters->len, ==, 2);
    qtest_quit(qts);
    unlink(path);
}

/*
 * An I/O error: the log is the slave of a pseudo-terminal whose master is
 * closed during the trace, after which writes to the slave fail with EIO.
 * A terminal is not a regular file: the log is a stream, which may end
 * inside a record; what the master read up to the last record it got
 * whole is a valid log.
 */
static void test_pty_eio(void)
{
    g_autoptr(GString) data = g_string_new(NULL);
    g_autofree char *copy = tmp_path("pty-copy");
    g_autofree char *pts = NULL;
    g_autofree char *error = NULL;
    g_autoptr(BTLog) log = NULL;
    gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
    struct termios tio;
    QTestState *qts;
    int64_t completed;
    const char *last;
    int master, slave;

    /* close-on-exec: the master must not stay open in QEMU */
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    g_assert_cmpint(master, >=, 0);
    g_assert_cmpint(grantpt(master), ==, 0);
    g_assert_cmpint(unlockpt(master), ==, 0);
    pts = g_strdup(ptsname(master));
    /* raw: the log goes through as written, no LF to CR LF */
    slave = open(pts, O_RDWR | O_NOCTTY | O_CLOEXEC);
    g_assert_cmpint(slave, >=, 0);
    g_assert_cmpint(tcgetattr(slave, &tio), ==, 0);
    cfmakeraw(&tio);
    g_assert_cmpint(tcsetattr(slave, TCSANOW, &tio), ==, 0);

    qts = qtest_init(NONE_ARGS);
    start_trace(qts, pts, 100000, 10);
    /* read the log until iteration 3 starts, so 0 to 2 are whole */
    while (!strstr(data->str, "\niter n=3 ")) {
        struct pollfd pfd = { .fd = master, .events = POLLIN };
        char buf[4096];
        ssize_t n;

        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        n = read(master, buf, sizeof(buf));
        g_assert_cmpint(n, >, 0);
        g_string_append_len(data, buf, n);
    }
    close(master);
    /* the terminal is hung up: writes to it fail with EIO */
    g_assert_cmpint(write(slave, "x", 1), ==, -1);
    g_assert_cmpint(errno, ==, EIO);

    error = wait_failed(qts, pts, g_strerror(EIO), &completed);
    g_assert_cmpint(completed, >=, 2);
    last = strstr(data->str, "\niter n=3 ");
    g_string_truncate(data, last + 1 - data->str);
    g_assert_true(g_file_set_contents(copy, data->str, data->len, NULL));
    log = bt_log_parse(copy, false);
    g_assert_cmpuint(log->iters->len, ==, 3);
    close(slave);
    unlink(copy);

    assert_runs_on(qts);
    qtest_quit(qts);
}

/*
 * The reader of a FIFO goes away during the trace: the next write fails
 * with EPIPE (QEMU ignores SIGPIPE) at once, not after the time a reader
 * that stopped reading is given.
 */
static void test_fifo_reader_gone(void)
{
    g_autofree char *path = fifo_create("fifo-gone");
    g_autofree char *error = NULL;
    QTestState *qts = qtest_init(NONE_ARGS);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    int64_t completed, t0;

    g_assert_cmpint(rfd, >=, 0);
    start_trace(qts, path, 100000, 10);
    wait_completed(qts, 2);
    t0 = g_get_monotonic_time();
    close(rfd);
    error = wait_failed(qts, path, g_strerror(EPIPE), &completed);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1500 * 1000);
    g_assert_cmpint(completed, >=, 2);

    assert_runs_on(qts);
    qtest_quit(qts);
    unlink(path);
}

/*
 * Argument fuzzing of bitmap-trace and query-bitmap-trace, over QMP and
 * HMP.  A refused command must say what is wrong (the argument's name, or
 * the file and why), start nothing, and touch no file: no file is created
 * and a file that exists (@keep) is not truncated.  QEMU must stay up.
 */
#define FUZZ_KEEP_TEXT "a file that no refused command may truncate\n"
#define FUZZ_SEED 0x62697466

typedef struct Fuzz {
    QTestState *qts;
    char *dir;          /* the directory the file names point into */
    char *keep;         /* a file there, whose content must stay */
    char *fresh;        /* a name there that refused commands must not create */
    char *long_path;    /* longer than PATH_MAX */
    char *huge;         /* a 1 MiB file name */
    char *cut;          /* a name that HMP would cut to a valid one */
    struct stat keep_st;
    QDict *before;      /* query-bitmap-trace before the command */
} Fuzz;

static void fuzz_init(Fuzz *f)
{
    GString *s;

    f->qts = qtest_init(NONE_ARGS);
    f->dir = g_dir_make_tmp("bitmap-trace-fuzz-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->keep = g_build_filename(f->dir, "keep", NULL);
    f->fresh = g_build_filename(f->dir, "fresh", NULL);
    g_assert_true(g_file_set_contents(f->keep, FUZZ_KEEP_TEXT, -1, NULL));
    g_assert_cmpint(stat(f->keep, &f->keep_st), ==, 0);

    s = g_string_new(f->dir);
    while (s->len <= PATH_MAX) {
        g_string_append(s, "/long");
    }
    f->long_path = g_string_free(s, false);
    f->huge = g_malloc(1024 * 1024 + 1);
    memset(f->huge, 'x', 1024 * 1024);
    f->huge[1024 * 1024] = 0;
    /* ./ up to byte 1000, then a name: cut at 1023, it names a new file */
    s = g_string_new(f->dir);
    g_string_append_c(s, '/');
    while (s->len < 1000) {
        g_string_append(s, "./");
    }
    g_string_append(s, "cut-here-if-you-cut-argument-strings-silently");
    f->cut = g_string_free(s, false);
    f->before = query_trace(f->qts);
}

static void fuzz_cleanup(Fuzz *f)
{
    qtest_quit(f->qts);
    unlink(f->keep);
    g_assert_cmpint(rmdir(f->dir), ==, 0);
    g_free(f->dir);
    g_free(f->keep);
    g_free(f->fresh);
    g_free(f->long_path);
    g_free(f->huge);
    g_free(f->cut);
    qobject_unref(f->before);
}

/* @tmpl with @DIR@, @KEEP@, @FRESH@, @LONG@, @HUGE@ and @CUT@ replaced */
static char *fuzz_subst(Fuzz *f, const char *tmpl)
{
    static const char *const keys[] = {
        "@DIR@", "@KEEP@", "@FRESH@", "@LONG@", "@HUGE@", "@CUT@"
    };
    const char *vals[] = {
        f->dir, f->keep, f->fresh, f->long_path, f->huge, f->cut
    };
    GString *s = g_string_new(tmpl);

    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
        const char *at;
        gssize pos = 0;

        while ((at = strstr(s->str + pos, keys[i]))) {
            pos = at - s->str;
            g_string_erase(s, pos, strlen(keys[i]));
            g_string_insert(s, pos, vals[i]);
            pos += strlen(vals[i]);
        }
    }
    return g_string_free(s, false);
}

/* Nothing started since the last fuzz_mark(), no file touched, QEMU up */
static void fuzz_assert_untouched(Fuzz *f)
{
    g_autoptr(QDict) info = query_trace(f->qts);
    g_autofree char *text = NULL;
    g_autoptr(GDir) dir = NULL;
    const char *name;
    struct stat st;

    g_assert_cmpstr(qdict_get_str(info, "status"), ==,
                    qdict_get_str(f->before, "status"));
    g_assert_cmpstr(qdict_get_try_str(info, "filename"), ==,
                    qdict_get_try_str(f->before, "filename"));
    g_assert_cmpint(stat(f->keep, &st), ==, 0);
    g_assert_cmpuint(st.st_ino, ==, f->keep_st.st_ino);
    g_assert_cmpint(st.st_size, ==, f->keep_st.st_size);
    g_assert_cmpint(st.st_mtim.tv_sec, ==, f->keep_st.st_mtim.tv_sec);
    g_assert_cmpint(st.st_mtim.tv_nsec, ==, f->keep_st.st_mtim.tv_nsec);
    g_assert_true(g_file_get_contents(f->keep, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, FUZZ_KEEP_TEXT);
    dir = g_dir_open(f->dir, 0, NULL);
    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir))) {
        g_assert_cmpstr(name, ==, "keep");
    }
}

static void fuzz_mark(Fuzz *f)
{
    qobject_unref(f->before);
    f->before = query_trace(f->qts);
}

/* Send @cmd with the arguments @args (consumed), return the response */
static QDict *fuzz_qmp(Fuzz *f, const char *cmd, QObject *args)
{
    fuzz_mark(f);
    return qtest_qmp(f->qts, "{'execute': %s, 'arguments': %p}", cmd, args);
}

/* @resp is an error whose description has @needle (with the keys) */
static void fuzz_assert_error(Fuzz *f, QDict *resp, const char *needle,
                              const char *what)
{
    g_autofree char *want = fuzz_subst(f, needle);
    QDict *err = qdict_get_qdict(resp, "error");

    if (!err) {
        g_error("fuzz: %s: succeeded, expected an error with \"%.200s\"",
                what, want);
    }
    g_assert_cmpstr(qdict_get_str(err, "class"), ==, "GenericError");
    if (!strstr(qdict_get_str(err, "desc"), want)) {
        g_error("fuzz: %s: error \"%.300s\" does not have \"%.200s\"", what,
                qdict_get_str(err, "desc"), want);
    }
}

/* Stop the trace a command started and check its log */
static void fuzz_end_trace(Fuzz *f, const char *path)
{
    g_autoptr(QDict) ev = stop_trace(f->qts);
    const char *status = qdict_get_str(qdict_get_qdict(ev, "data"),
                                       "status");

    g_assert_true(!strcmp(status, "cancelled") ||
                  !strcmp(status, "completed"));
    if (path && g_str_has_prefix(path, f->dir)) {
        g_autoptr(BTLog) log = bt_log_parse(path, true);

        g_assert_cmpstr(log->end_status, ==, status);
        g_assert_cmpint(unlink(path), ==, 0);
    }
}

/* QMP: each argument of bitmap-trace and query-bitmap-trace, wrong */
static void fuzz_qmp_table(Fuzz *f)
{
    static const struct {
        const char *cmd, *args, *needle;
    } cases[] = {
        /* state */
        { "bitmap-trace", "{}", "'state'" },
        { "bitmap-trace", "{'filename': '@FRESH@'}", "'state'" },
        { "bitmap-trace", "{'state': 'on', 'filename': '@FRESH@'}",
          "'state'" },
        { "bitmap-trace", "{'state': 1, 'filename': '@FRESH@'}", "'state'" },
        { "bitmap-trace", "{'state': null, 'filename': '@FRESH@'}",
          "'state'" },
        { "bitmap-trace", "{'state': [true], 'filename': '@FRESH@'}",
          "'state'" },
        { "bitmap-trace", "{'state': {}, 'filename': '@KEEP@'}", "'state'" },
        /* filename */
        { "bitmap-trace", "{'state': true}", "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': 7}", "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': null}", "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': true}", "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': ['@FRESH@']}",
          "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': {'a': '@FRESH@'}}",
          "'filename'" },
        { "bitmap-trace", "{'state': false, 'filename': 1}", "'filename'" },
        { "bitmap-trace", "{'state': true, 'filename': ''}",
          "Could not create '': No such file or directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@DIR@'}",
          "'@DIR@': Is a directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@DIR@/'}",
          "'@DIR@/': Is a directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@DIR@/none/x.log'}",
          "'@DIR@/none/x.log': No such file or directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@/x.log'}",
          "'@KEEP@/x.log': Not a directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@DIR@/none/%n%s%x'}",
          "'@DIR@/none/%n%s%x': No such file or directory" },
        { "bitmap-trace", "{'state': true, 'filename': '@LONG@'}",
          "File name too long" },
        { "bitmap-trace", "{'state': true, 'filename': '@HUGE@'}",
          "File name too long" },
        { "bitmap-trace", "{'state': true, 'filename': '/dev/fdset/99'}",
          "/dev/fdset/99" },
        { "bitmap-trace", "{'state': true, 'filename': '/dev/fdset/x'}",
          "/dev/fdset/x" },
        /* iterations */
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 'ten'}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'iterations': '5'}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 5.5}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': null}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': true}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': [5]}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': {}}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 18446744073709551615}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 18446744073709551616}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 1e308}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': -1e308}", "'iterations'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 2}", "'iterations' must be in the range 3-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'iterations': 100001}",
          "'iterations' must be in the range 3-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 0}", "'iterations' must be in the range 3-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': -1}", "'iterations' must be in the range 3-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 9223372036854775807}",
          "'iterations' must be in the range 3-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'iterations': -9223372036854775808}",
          "'iterations' must be in the range 3-100000" },
        /* period */
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 'x'}", "'period'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 10.5}", "'period'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': null}", "'period'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': [10]}", "'period'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 18446744073709551616}", "'period'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 9}", "'period' must be in the range 10-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'period': 100001}", "'period' must be in the range 10-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 0}", "'period' must be in the range 10-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': -10}", "'period' must be in the range 10-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'period': 9223372036854775807}",
          "'period' must be in the range 10-100000" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'iterations': 3, 'period': -9223372036854775808}",
          "'period' must be in the range 10-100000" },
        /* format */
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'format': 'xml'}", "'format'" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'format': ''}", "'format'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'format': 'TEXT'}", "'format'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'format': 1}", "'format'" },
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'format': null}", "'format'" },
        { "bitmap-trace", "{'state': false, 'format': 'xml'}", "'format'" },
        /* unknown arguments */
        { "bitmap-trace", "{'state': true, 'filename': '@KEEP@',"
          " 'foo': 1}", "'foo'" },
        { "bitmap-trace", "{'state': false, 'bar': null}", "'bar'" },
        { "bitmap-trace", "{'state': true, 'filename': '@FRESH@',"
          " 'iterations': 3, 'period': 10, 'format': 'text', 'x': {}}",
          "'x'" },
        /* query-bitmap-trace */
        { "query-bitmap-trace", "{'since': 'x'}", "'since'" },
        { "query-bitmap-trace", "{'since': 1.5}", "'since'" },
        { "query-bitmap-trace", "{'since': null}", "'since'" },
        { "query-bitmap-trace", "{'since': true}", "'since'" },
        { "query-bitmap-trace", "{'since': [1]}", "'since'" },
        { "query-bitmap-trace", "{'since': {}}", "'since'" },
        { "query-bitmap-trace", "{'since': 18446744073709551616}",
          "'since'" },
        { "query-bitmap-trace", "{'since': 1e308}", "'since'" },
        { "query-bitmap-trace", "{'foo': 1}", "'foo'" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *json = fuzz_subst(f, cases[i].args);
        g_autoptr(QDict) resp = fuzz_qmp(f, cases[i].cmd,
                                         qobject_from_json(json,
                                                           &error_abort));

        fuzz_assert_error(f, resp, cases[i].needle, cases[i].args);
        fuzz_assert_untouched(f);
    }

    /* state=false with no trace running: nothing to stop, no error */
    {
        g_autoptr(QDict) resp = fuzz_qmp(f, "bitmap-trace",
                                         qobject_from_json("{'state': false}",
                                                           &error_abort));

        g_assert_true(qdict_haskey(resp, "return"));
        fuzz_assert_untouched(f);
    }

    /* arguments that are not an object */
    for (int i = 0; i < 3; i++) {
        static const char *const args[] = { "[]", "'x'", "1" };
        g_autoptr(QDict) resp = fuzz_qmp(f, "bitmap-trace",
                                         qobject_from_json(args[i],
                                                           &error_abort));

        fuzz_assert_error(f, resp, "'arguments' must be an object", args[i]);
        fuzz_assert_untouched(f);
    }
}

/*
 * A file name that is not UTF-8 is not JSON: the QMP parser refuses it.
 * It may answer a malformed message with more than one error; the
 * command with the id is where they end.
 */
static void fuzz_qmp_not_utf8(Fuzz *f)
{
    bool refused = false;

    fuzz_mark(f);
    qtest_qmp_send_raw(f->qts, "{\"execute\": \"bitmap-trace\", \"arguments\":"
                       " {\"state\": true, \"filename\": \"%s/\xff\xfe.log\"}}"
                       "\n{\"execute\": \"query-status\", \"id\": \"sync\"}\n",
                       f->dir);
    for (;;) {
        g_autoptr(QDict) resp = qtest_qmp_receive(f->qts);

        if (qdict_haskey(resp, "id")) {
            g_assert_true(qdict_haskey(resp, "return"));
            break;
        }
        g_assert_true(qdict_haskey(resp, "error"));
        g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(resp, "error"),
                                              "desc"), "JSON parse error"));
        refused = true;
    }
    g_assert_true(refused);
    fuzz_assert_untouched(f);
}

/* Odd but valid: a trace starts, the log is what it should be */
static void fuzz_qmp_odd_names(Fuzz *f)
{
    static const char *const names[] = {
        "@DIR@/new\nline \"dq\" 'sq' \\back\tslash %s %n.log",
        "@DIR@/-",
        "@DIR@/ ",
        "@DIR@/\xc3\xa9t\xc3\xa9 \xe2\x9c\x93.log",
        "/dev/null",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *path = fuzz_subst(f, names[i]);

        qtest_qmp_assert_success(f->qts, "{'execute': 'bitmap-trace', "
                                 "'arguments': {'state': true, "
                                 "'filename': %s, 'iterations': 100000, "
                                 "'period': 100000}}", path);
        fuzz_end_trace(f, path);
    }

    /*
     * /proc/self/status takes no write: refused if it cannot be opened for
     * writing, else the trace fails at its first write, with no log.
     */
    {
        g_autoptr(QDict) resp = fuzz_qmp(f, "bitmap-trace",
            qobject_from_json("{'state': true, "
                              "'filename': '/proc/self/status'}",
                              &error_abort));
        g_autofree char *error = NULL;
        int64_t completed;

        if (qdict_haskey(resp, "error")) {
            fuzz_assert_error(f, resp, "/proc/self/status", "/proc");
            fuzz_assert_untouched(f);
            return;
        }
        error = wait_failed(f->qts, "/proc/self/status", "", &completed);
        g_assert_cmpint(completed, ==, 0);
    }
}

/*
 * While a trace runs: a second start is refused, whatever its file, and
 * truncates neither that file nor the running trace's log.
 */
static void fuzz_qmp_while_active(Fuzz *f)
{
    g_autofree char *active = g_build_filename(f->dir, "active", NULL);
    g_autofree char *log_before = NULL;
    g_autofree char *log_after = NULL;
    g_autoptr(QDict) info = NULL;
    gsize len_before, len_after;
    const char *const files[] = { f->keep, f->fresh, active };

    start_trace(f->qts, active, 100000, 100000);
    wait_baseline(f->qts);
    g_assert_true(g_file_get_contents(active, &log_before, &len_before,
                                      NULL));
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autoptr(QDict) resp = fuzz_qmp(f, "bitmap-trace",
            qobject_from_jsonf_nofail("{'state': true, 'filename': %s, "
                                      "'iterations': 3}", files[i]));

        fuzz_assert_error(f, resp, "already active", files[i]);
        g_assert_true(g_file_get_contents(active, &log_after, &len_after,
                                          NULL));
        g_assert_cmpuint(len_after, ==, len_before);
        g_assert_true(!memcmp(log_after, log_before, len_before));
        g_free(log_after);
        log_after = NULL;
        g_assert_false(g_file_test(f->fresh, G_FILE_TEST_EXISTS));
    }
    info = query_trace(f->qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "active");
    g_assert_cmpstr(qdict_get_str(info, "filename"), ==, active);
    fuzz_end_trace(f, active);

    /* since out of range is clamped, not refused */
    qobject_unref(info);
    info = qtest_qmp_assert_success_ref(f->qts,
        "{'execute': 'query-bitmap-trace', 'arguments': "
        "{'since': -9223372036854775808}}");
    g_assert_cmpint(qdict_get_int(info, "since"), ==, 0);
    g_assert_cmpuint(qlist_size(qdict_get_qlist(info, "dirty-pages")), ==, 2);
    qobject_unref(info);
    info = qtest_qmp_assert_success_ref(f->qts,
        "{'execute': 'query-bitmap-trace', 'arguments': "
        "{'since': 9223372036854775807}}");
    g_assert_cmpint(qdict_get_int(info, "since"), ==, 2);
    g_assert_true(qlist_empty(qdict_get_qlist(info, "dirty-pages")));
}

/* HMP: each argument wrong; the monitor prints an error */
static void fuzz_hmp_table(Fuzz *f)
{
    static const struct {
        const char *cmd, *needle;
    } cases[] = {
        { "bitmap-trace", "Expected 'on' or 'off'" },
        { "bitmap-trace maybe \"@FRESH@\"", "Expected 'on' or 'off'" },
        { "bitmap-trace 1 \"@FRESH@\"", "Expected 'on' or 'off'" },
        { "bitmap-trace on", "Parameter 'filename' is required" },
        { "bitmap-trace on \"@KEEP@\" abc", "invalid char 'a'" },
        { "bitmap-trace on \"@KEEP@\" 3 (", "unexpected end of expression" },
        { "bitmap-trace on \"@KEEP@\" 4294967296",
          "integer is for 32-bit values" },
        { "bitmap-trace on \"@KEEP@\" -1", "integer is for 32-bit values" },
        { "bitmap-trace on \"@KEEP@\" 3 -2147483648",
          "integer is for 32-bit values" },
        { "bitmap-trace on \"@KEEP@\" 2147483647",
          "'iterations' must be in the range 3-100000" },
        { "bitmap-trace on \"@KEEP@\" 2",
          "'iterations' must be in the range 3-100000" },
        { "bitmap-trace -b on \"@FRESH@\" 100001 10",
          "'iterations' must be in the range 3-100000" },
        { "bitmap-trace on \"@KEEP@\" 3 9",
          "'period' must be in the range 10-100000" },
        { "bitmap-trace -d on \"@FRESH@\" 3 100001",
          "'period' must be in the range 10-100000" },
        { "bitmap-trace on \"@FRESH@\" 3 10 7", "extraneous characters" },
        { "bitmap-trace -x on \"@FRESH@\"", "unsupported option -x" },
        { "bitmap-trace on \"\"", "Could not create ''" },
        { "bitmap-trace on \"@DIR@\"", "Is a directory" },
        { "bitmap-trace on \"@DIR@/none/x.log\"", "No such file" },
        { "bitmap-trace on \"@FRESH@", "filename expected" },
        { "bitmap-trace on \"@DIR@/a\\qb\"", "filename expected" },
        { "bitmap-trace on \"@HUGE@\"", "too long for HMP" },
        { "bitmap-trace on \"@CUT@\"", "too long for HMP" },
        { "info bitmap_trace x", "extraneous characters" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *cmd = fuzz_subst(f, cases[i].cmd);
        g_autofree char *out = NULL;

        fuzz_mark(f);
        out = qtest_hmp(f->qts, "%s", cmd);
        if (!strstr(out, cases[i].needle)) {
            g_error("fuzz: HMP %.200s: \"%.300s\" does not have \"%s\"",
                    cases[i].cmd, out, cases[i].needle);
        }
        fuzz_assert_untouched(f);
    }

    /* off with no trace running: nothing to do, and no error */
    {
        g_autofree char *out = NULL;

        fuzz_mark(f);
        out = qtest_hmp(f->qts, "bitmap-trace off");
        g_assert_cmpstr(out, ==, "");
        fuzz_assert_untouched(f);
    }
}

/* A value of a wrong type; never a string when @no_str */
static QObject *fuzz_junk(GRand *r, bool no_str)
{
    switch (g_rand_int_range(r, no_str ? 1 : 0, 7)) {
    case 0:
        return QOBJECT(qstring_from_str("junk"));
    case 1:
        return QOBJECT(qnum_from_double(g_rand_double_range(r, -1e300,
                                                             1e300)));
    case 2:
        return QOBJECT(qnull());
    case 3:
        return QOBJECT(qbool_from_bool(g_rand_boolean(r)));
    case 4:
        return QOBJECT(qlist_new());
    case 5:
        return QOBJECT(qdict_new());
    default:
        /* above INT64_MAX: not an 'int' */
        return QOBJECT(qnum_from_uint(UINT64_MAX - g_rand_int(r)));
    }
}

/*
 * An integer argument, in [@min, @max] or not, or not an integer;
 * *@type_ok and *@in_range say which.
 */
static QObject *fuzz_int(GRand *r, int64_t min, int64_t max, bool *type_ok,
                         bool *in_range)
{
    int64_t v;

    *type_ok = true;
    switch (g_rand_int_range(r, 0, 6)) {
    case 0:
    case 1:
        v = g_rand_int_range(r, min, max + 1);
        break;
    case 2:
        v = min - 1 - g_rand_int_range(r, 0, 1000);
        break;
    case 3:
        v = max + 1 + g_rand_int(r);
        break;
    case 4:
        v = g_rand_boolean(r) ? INT64_MAX : INT64_MIN;
        break;
    default:
        *type_ok = false;
        return fuzz_junk(r, false);
    }
    *in_range = v >= min && v <= max;
    return QOBJECT(qnum_from_int(v));
}

/*
 * One random bitmap-trace command over QMP; what the arguments are
 * decides whether it must succeed.
 */
static void fuzz_qmp_random(Fuzz *f, GRand *r, int round)
{
    g_autofree char *fresh = g_strdup_printf("%s/fresh-%d", f->dir, round);
    const char *const bad_paths[] = {
        "", f->dir, f->long_path, "/dev/fdset/99", "/dev/fdset/x",
    };
    QDict *args = qdict_new();
    g_autoptr(QDict) resp = NULL;
    bool types_ok = true, in_range = true, start = false;
    const char *path = NULL;
    bool path_ok = false;
    int pick;

    pick = g_rand_int_range(r, 0, 10);
    if (pick < 6) {
        start = true;
        qdict_put_bool(args, "state", true);
    } else if (pick < 8) {
        qdict_put_bool(args, "state", false);
    } else if (pick < 9) {
        types_ok = false;
        qdict_put_obj(args, "state", fuzz_junk(r, false));
    } else {
        types_ok = false;
    }

    pick = g_rand_int_range(r, 0, 10);
    if (pick < 5) {
        path = fresh;
        path_ok = true;
    } else if (pick < 6) {
        path = "/dev/null";
        path_ok = true;
    } else if (pick < 8) {
        path = bad_paths[g_rand_int_range(r, 0, G_N_ELEMENTS(bad_paths))];
    } else if (pick < 9) {
        types_ok = false;
        qdict_put_obj(args, "filename", fuzz_junk(r, true));
    }
    if (path) {
        qdict_put_str(args, "filename", path);
    }

    for (int i = 0; i < 2; i++) {
        const char *name = i ? "period" : "iterations";
        bool type_ok, ok = true;

        if (g_rand_int_range(r, 0, 3)) {
            qdict_put_obj(args, name, fuzz_int(r, i ? 10 : 3, 100000,
                                               &type_ok, &ok));
            types_ok &= type_ok;
            in_range &= ok;
        }
    }

    pick = g_rand_int_range(r, 0, 8);
    if (pick == 0) {
        qdict_put_str(args, "format", "text");
    } else if (pick == 1) {
        qdict_put_str(args, "format", "binary");
    } else if (pick == 2) {
        types_ok = false;
        qdict_put_str(args, "format", "xml");
    } else if (pick == 3) {
        types_ok = false;
        qdict_put_obj(args, "format", fuzz_junk(r, false));
    }
    if (!g_rand_int_range(r, 0, 12)) {
        types_ok = false;
        qdict_put_obj(args, "x-unknown", fuzz_junk(r, false));
    }

    resp = fuzz_qmp(f, "bitmap-trace", QOBJECT(args));
    if (types_ok && (!start || (path_ok && in_range))) {
        if (!qdict_haskey(resp, "return")) {
            g_error("fuzz: round %d: refused: %s", round,
                    qdict_get_str(qdict_get_qdict(resp, "error"), "desc"));
        }
        if (start) {
            fuzz_end_trace(f, path);
            fuzz_mark(f);
        }
        fuzz_assert_untouched(f);
        return;
    }
    if (!qdict_haskey(resp, "error")) {
        g_error("fuzz: round %d: succeeded, expected an error", round);
    }
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(resp, "error"), "class"),
                    ==, "GenericError");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(resp, "error"), "desc"),
                    !=, "");
    fuzz_assert_untouched(f);
}

/* An HMP number token; @val < 0 when the HMP parser refuses it */
typedef struct FuzzTok {
    const char *tok;
    int64_t val;
} FuzzTok;

/* One random bitmap-trace command over HMP */
static void fuzz_hmp_random(Fuzz *f, GRand *r, int round)
{
    static const FuzzTok nums[] = {
        { "3", 3 }, { "10", 10 }, { "100000", 100000 }, { "2", 2 },
        { "9", 9 }, { "100001", 100001 }, { "0x10", 16 }, { "3+4", 7 },
        { "(2*5)", 10 }, { "-1", -1 }, { "4294967296", -1 }, { "abc", -1 },
        { "(", -1 }, { "3.5", -1 },
    };
    g_autofree char *fresh = g_strdup_printf("%s/fresh-%d", f->dir, round);
    g_autofree char *out = NULL;
    g_autoptr(GString) cmd = g_string_new("bitmap-trace");
    g_autoptr(QDict) info = NULL;
    bool on = false, ok = true, started;
    const char *state;
    int pick;

    if (!g_rand_int_range(r, 0, 2)) {
        g_string_append(cmd, " -d");
    }
    if (!g_rand_int_range(r, 0, 3)) {
        g_string_append(cmd, " -b");
    }
    if (!g_rand_int_range(r, 0, 20)) {
        g_string_append(cmd, " -x");
        ok = false;
    }
    pick = g_rand_int_range(r, 0, 10);
    state = pick < 7 ? "on" : pick < 9 ? "off" : "maybe";
    on = !strcmp(state, "on");
    ok &= on;
    g_string_append_printf(cmd, " %s", state);

    /* a number where the file name should be would be a relative file */
    pick = g_rand_int_range(r, 0, 10);
    if (pick < 6) {
        g_string_append_printf(cmd, " \"%s\"", fresh);
    } else if (pick < 9) {
        static const char *const bad[] = {
            " \"\"", " \"@DIR@\"", " \"@DIR@/none/x\"", " \"@FRESH@",
            " \"@DIR@/a\\qb\"",
        };
        g_autofree char *tok = fuzz_subst(f, bad[g_rand_int_range(r, 0,
                                                 G_N_ELEMENTS(bad))]);

        g_string_append(cmd, tok);
        ok = false;
    } else {
        ok = false;
        pick = 3;
    }
    for (int i = 0; i < 2 && pick < 9; i++) {
        const FuzzTok *t;

        if (!g_rand_int_range(r, 0, 3)) {
            break;
        }
        t = &nums[g_rand_int_range(r, 0, G_N_ELEMENTS(nums))];
        g_string_append_printf(cmd, " %s", t->tok);
        ok &= t->val >= (i ? 10 : 3) && t->val <= 100000;
    }
    if (!g_rand_int_range(r, 0, 20)) {
        g_string_append(cmd, " 7 7 7");
        ok = false;
    }

    fuzz_mark(f);
    out = qtest_hmp(f->qts, "%s", cmd->str);
    info = query_trace(f->qts);
    started = !g_strcmp0(qdict_get_try_str(info, "filename"), fresh);
    if (started != ok) {
        g_error("fuzz: HMP %s: %s, expected %s: \"%s\"", cmd->str,
                started ? "started" : "did not start",
                ok ? "a trace" : "an error", out);
    }
    if (started) {
        fuzz_end_trace(f, fresh);
        fuzz_mark(f);
    } else if (on) {
        /* refused: the monitor says why */
        g_assert_cmpstr(out, !=, "");
    }
    fuzz_assert_untouched(f);
}

static void test_fuzz_args(void)
{
    g_autoptr(GRand) r = g_rand_new_with_seed(FUZZ_SEED);
    Fuzz f = { 0 };

    fuzz_init(&f);
    fuzz_qmp_table(&f);
    fuzz_qmp_not_utf8(&f);
    fuzz_hmp_table(&f);
    fuzz_qmp_odd_names(&f);
    fuzz_qmp_while_active(&f);
    for (int i = 0; i < 300; i++) {
        fuzz_qmp_random(&f, r, i);
    }
    for (int i = 0; i < 150; i++) {
        fuzz_hmp_random(&f, r, i);
    }
    fuzz_cleanup(&f);
}

static void wait_dirty_rate_measured(QTestState *qts)
{
    for (int i = 0; i < 1000; i++) {
        QDict *info = qtest_qmp_assert_success_ref(qts,
                          "{'execute': 'query-dirty-rate'}");
        bool measured = !strcmp(qdict_get_str(info, "status"), "measured");

        qobject_unref(info);
        if (measured) {
            return;
        }
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}

/*
 * calc-dirty-rate with dirty logging and a trace refuse each other: the
 * trace's rounds would look like guest writes to it.  Page sampling does
 * not log and may run during a trace.
 */
static void test_dirty_rate_exclusion(void)
{
    g_autofree char *path = tmp_path("dirtyrate");
    QTestState *qts = qtest_init(NONE_ARGS);
    QDict *resp;

    start_trace(qts, path, 100000, 100000);
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    g_assert_nonnull(strstr(error_desc(resp), "bitmap-trace state=false"));
    qobject_unref(resp);
    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'page-sampling'}}");
    wait_dirty_rate_measured(qts);
    qobject_unref(stop_trace(qts));
    unlink(path);

    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 500,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': %s}}", path);
    g_assert_nonnull(strstr(error_desc(resp), "calc-dirty-rate"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    qobject_unref(resp);
    wait_dirty_rate_measured(qts);

    start_trace(qts, path, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
}

/* savevm is refused while a trace runs */
static void test_savevm_refused(void)
{
    g_autofree char *path = tmp_path("savevm");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *out = NULL;
    g_autoptr(QDict) ev = NULL;

    start_trace(qts, path, 100000, 100000);
    out = qtest_hmp(qts, "savevm snap0");
    g_assert_nonnull(strstr(out, "bitmap-trace in progress"));
    ev = stop_trace(qts);
    qtest_quit(qts);
    unlink(path);
}

/*
 * loadvm is refused while a trace runs: loading a snapshot rewrites RAM
 * without dirty logging.  Without a trace it fails for its own reasons.
 */
static void test_loadvm_refused(void)
{
    g_autofree char *path = tmp_path("loadvm");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *during = NULL;
    g_autofree char *after = NULL;
    QDict *resp;

    start_trace(qts, path, 100000, 100000);
    during = qtest_hmp(qts, "loadvm snap0");
    g_assert_nonnull(strstr(during, "bitmap-trace state=false"));
    /* refused before the VM is stopped for the load */
    resp = qtest_qmp_assert_success_ref(qts, "{'execute': 'query-status'}");
    g_assert_true(qdict_get_bool(resp, "running"));
    qobject_unref(resp);
    qobject_unref(stop_trace(qts));
    after = qtest_hmp(qts, "loadvm snap0");
    g_assert_null(strstr(after, "bitmap-trace"));
    qtest_quit(qts);
    unlink(path);
}

/* A trace is refused while a migration runs (held in pre-switchover) */
static void test_refused_during_migration(void)
{
    g_autofree char *path = tmp_path("mig");
    g_autofree char *mig = tmp_path("mig-stream");
    g_autofree char *uri = g_strdup_printf("file:%s", mig);
    QTestState *qts = qtest_init(NONE_ARGS);
    QDict *resp;

    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-capabilities',"
        " 'arguments': {'capabilities': ["
        "  {'capability': 'pause-before-switchover', 'state': true},"
        "  {'capability': 'events', 'state': true}]}}");
    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
    for (;;) {
        g_autoptr(QDict) ev = qtest_qmp_eventwait_ref(qts, "MIGRATION");
        const char *st = qdict_get_str(qdict_get_qdict(ev, "data"), "status");

        g_assert_cmpstr(st, !=, "failed");
        if (!strcmp(st, "pre-switchover")) {
            break;
        }
    }
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': %s}}", path);
    g_assert_nonnull(strstr(error_desc(resp), "migration"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    qobject_unref(resp);

    qtest_qmp_assert_success(qts, "{'execute': 'migrate_cancel'}");
    for (;;) {
        g_autoptr(QDict) ev = qtest_qmp_eventwait_ref(qts, "MIGRATION");
        const char *st = qdict_get_str(qdict_get_qdict(ev, "data"), "status");

        if (!strcmp(st, "cancelled")) {
            break;
        }
    }
    /* and once the migration is gone, a trace may start */
    start_trace(qts, path, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
    unlink(mig);
}

static void wait_migration_status(QTestState *qts, const char *status)
{
    for (;;) {
        g_autoptr(QDict) ev = qtest_qmp_eventwait_ref(qts, "MIGRATION");
        const char *st = qdict_get_str(qdict_get_qdict(ev, "data"), "status");

        if (!strcmp(st, "failed")) {
            g_autoptr(QDict) info = qtest_qmp_assert_success_ref(qts,
                                        "{'execute': 'query-migrate'}");

            g_test_message("migration failed: %s",
                           qdict_haskey(info, "error-desc") ?
                           qdict_get_str(info, "error-desc") : "?");
        }
        g_assert_cmpstr(st, !=, "failed");
        if (!strcmp(st, status)) {
            return;
        }
    }
}

/*
 * The destination of a postcopy migration runs while pages still arrive
 * (placed with userfaultfd, not dirty-logged): a trace is refused there.
 */
static void test_refused_on_postcopy_destination(void)
{
    g_autofree char *path = tmp_path("postcopy");
    g_autofree char *sock = tmp_path("postcopy-sock");
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    QTestState *src, *dst;
    QDict *resp;

    /* -M none cannot migrate an x86 CPU */
    dst = qtest_initf("-M pc -m 64M -nodefaults -incoming defer");
    src = qtest_init("-M pc -m 64M -nodefaults");
    resp = qtest_qmp(dst, "{'execute': 'migrate-set-capabilities',"
        " 'arguments': {'capabilities': ["
        "  {'capability': 'postcopy-ram', 'state': true},"
        "  {'capability': 'events', 'state': true}]}}");
    if (!qdict_haskey(resp, "return")) {
        g_test_skip("postcopy is not supported here (no userfaultfd?)");
        qobject_unref(resp);
        qtest_quit(src);
        qtest_quit(dst);
        return;
    }
    qobject_unref(resp);
    qtest_qmp_assert_success(src, "{'execute': 'migrate-set-capabilities',"
        " 'arguments': {'capabilities': ["
        "  {'capability': 'postcopy-ram', 'state': true}]}}");
    /* keep the migration in postcopy long enough to ask */
    qtest_qmp_assert_success(src, "{'execute': 'migrate-set-parameters',"
        " 'arguments': {'max-bandwidth': 65536,"
        "  'max-postcopy-bandwidth': 65536}}");
    qtest_qmp_assert_success(dst, "{'execute': 'migrate-incoming',"
                             " 'arguments': {'uri': %s}}", uri);
    qtest_qmp_assert_success(src, "{'execute': 'migrate',"
                             " 'arguments': {'uri': %s}}", uri);
    qtest_qmp_assert_success(src, "{'execute': 'migrate-start-postcopy'}");
    wait_migration_status(dst, "postcopy-active");

    resp = qtest_qmp_assert_failure_ref(dst,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': %s}}", path);
    g_assert_nonnull(strstr(error_desc(resp), "postcopy"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    qobject_unref(resp);

    qtest_quit(src);
    qtest_quit(dst);
    unlink(sock);
}

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
    g_autofree char *path = tmp_path("ram-hotplug");
    QTestState *qts = qtest_init("-M pc -m 64M,slots=2,maxmem=256M "
                                 "-nodefaults");
    const uint64_t dimm_pages = 4096, low = 0x300;
    g_autoptr(BTLog) log = NULL;
    g_autoptr(QDict) resp = NULL;
    const BTLogBlock *b;
    int64_t plugged, written, added = -1, removed = -1, where;
    uint64_t addr, base;

    start_trace_fmt(qts, path, fmt, 100000, 20);
    wait_completed(qts, 2);
    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments': {"
                             " 'qom-type': 'memory-backend-ram',"
                             " 'id': 'hp0', 'size': 16777216 }}");
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': {"
                             " 'driver': 'pc-dimm', 'id': 'dimm0',"
                             " 'memdev': 'hp0' }}");
    plugged = completed_iterations(qts);
    resp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments': {"
                     " 'path': '/machine/peripheral/dimm0',"
                     " 'property': 'addr' }}");
    addr = qdict_get_int(resp, "return");
    base = addr / PAGE;
    /* the sync of iteration plugged + 2 at the latest found the block */
    wait_completed(qts, plugged + 3);

    written = completed_iterations(qts);
    for (int k = 1; k <= 3; k++) {
        int64_t c = completed_iterations(qts);

        qtest_writeb(qts, addr + k * 0x100 * PAGE, k);
        qtest_writeb(qts, (low + k) * PAGE, k);
        wait_completed(qts, c + 2);
    }

    /* unplug: device_del, the guest's ACPI eject of slot 0, the backend */
    qtest_qmp_assert_success(qts, "{'execute': 'device_del', 'arguments': {"
                             " 'id': 'dimm0' }}");
    qtest_outl(qts, 0x0a00, 0);     /* MEMORY_HOTPLUG_BASE: slot selector */
    qtest_outb(qts, 0x0a14, 8);     /* eject */
    qobject_unref(qtest_qmp_eventwait_ref(qts, "DEVICE_DELETED"));
    qtest_qmp_assert_success(qts, "{'execute': 'object-del', 'arguments': {"
                             " 'id': 'hp0' }}");
    wait_completed(qts, completed_iterations(qts) + 2);
    qobject_unref(stop_trace(qts));

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
    g_autofree char *path = tmp_path("blocker");
    g_autofree char *shm = tmp_path("blocker-shm");
    QTestState *qts = qtest_initf("-M pc -m 64M -nodefaults -object "
                                  "memory-backend-file,id=mb,size=1M,"
                                  "mem-path=%s,share=on -device "
                                  "ivshmem-plain,memdev=mb,master=off "
                                  "-device rocker,name=sw0,addr=4", shm);
    g_autoptr(BTLog) log = NULL;
    g_autoptr(BTLog) clean = NULL;
    int64_t plugged, found = -1;

    start_trace_fmt(qts, path, fmt, 100000, 20);
    wait_completed(qts, 2);
    qtest_qmp_assert_success(qts, "{'execute': 'device_add', 'arguments': {"
                             " 'driver': 'rocker', 'name': 'sw1',"
                             " 'addr': '5' }}");
    plugged = completed_iterations(qts);
    wait_completed(qts, plugged + 3);
    qobject_unref(stop_trace(qts));
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
    start_trace_fmt(qts, path, fmt, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    clean = bt_log_parse(path, true);
    g_assert_cmpuint(clean->blocked->len, ==, 0);
    qtest_quit(qts);
    unlink(path);
}

/* A write error ends the trace as failed; QEMU and the guest stay up */
static void test_write_error(const void *fmt)
{
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(QDict) info = NULL;
    g_autofree char *path = tmp_path("after-error");
    QDict *data;

    start_trace_fmt(qts, "/dev/full", fmt, 100000, 10);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    data = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(data, "status"), ==, "failed");
    g_assert_nonnull(strstr(qdict_get_str(data, "error"), "/dev/full"));

    info = query_trace(qts);
    g_assert_cmpstr(qdict_get_str(info, "status"), ==, "failed");
    g_assert_nonnull(strstr(qdict_get_str(info, "error-desc"),
                            "No space left"));

    /* the blocker is gone and logging can start again */
    start_trace(qts, path, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
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
    g_autofree char *path = tmp_path("map-change");
    QTestState *qts = qtest_init("-M pc -m 64M -nodefaults");
    g_autoptr(BTLog) log = NULL;
    int64_t c, where = -1;

    start_trace_fmt(qts, path, fmt, 100000, 20);
    wait_completed(qts, 2);
    /* PAM1 (config byte 0x5a of 00:00.0): 0xc0000-0xc7fff read/write RAM */
    qtest_outl(qts, 0xcf8, 0x80000058);
    qtest_outb(qts, 0xcfe, 0x33);
    c = completed_iterations(qts);
    qtest_writeb(qts, 0xc1000, 0x5a);
    g_assert_cmpuint(qtest_readb(qts, 0xc1000), ==, 0x5a);
    wait_completed(qts, c + 2);
    qobject_unref(stop_trace(qts));

    log = bt_log_parse(path, true);
    for (guint n = 1; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_cmpuint(it->unmapped, ==, 0);
        if (it->dirty) {
            g_assert_cmpint(where, ==, -1);
            assert_exact(it, (const uint64_t[]) { 0xc1 }, 1);
            where = n;
        }
    }
    g_assert_cmpint(where, >, 0);
    qtest_quit(qts);
    unlink(path);
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
    g_autofree char *path = tmp_path("queue");
    QTestState *qts = qtest_init("-M pc -m 4G -nodefaults");
    g_autoptr(GHashTable) round_of = g_hash_table_new(NULL, NULL);
    g_autoptr(BTLog) log = NULL;
    const uint64_t first = 0x1000;      /* from 16 MiB, plain RAM */
    uint64_t written = 0;
    int64_t last = 1, queued = 0, queued_written = 0;
    const BTLogIter *it0;

    start_trace_fmt(qts, path, fmt, 100000, 10);
    for (;;) {
        qtest_writeb(qts, (first + written) * PAGE + written % PAGE, 0x5a);
        written++;
        if (written % 16 == 0) {
            g_autoptr(QDict) info = query_trace(qts);

            if (qlist_size(qdict_get_qlist(info, "dirty-pages")) >= 1) {
                break;
            }
        }
        g_assert_cmpuint(written, <, 256 * 1024);   /* 1 GiB of pages */
    }
    qobject_unref(stop_trace(qts));

    log = bt_log_parse(path, true);
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
    qtest_quit(qts);
    unlink(path);
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
    g_autofree char *path = tmp_path("late");
    QTestState *qts = qtest_init("-M pc -m 4G -nodefaults");
    g_autoptr(BTLog) log = NULL;
    bool restarted = false;
    int64_t where = -1;

    start_trace(qts, path, 20, 10);
    qtest_outl(qts, 0xcf8, 0x80000058);
    qtest_outb(qts, 0xcfe, 0x33);
    qtest_writeb(qts, 0xc1000, 0x5a);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    log = bt_log_parse(path, true);
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
            assert_exact(it, (const uint64_t[]) { 0xc1 }, 1);
            where = n;
        }
    }
    /* the baseline's pages are where they were when it was taken */
    g_assert_true(bt_log_iter_has_unmapped(g_ptr_array_index(log->iters, 0),
                                           "pc.ram", 0xc1));
    /* the case is met */
    g_assert_true(restarted);
    g_assert_cmpint(where, >, 0);
    qtest_quit(qts);
    unlink(path);
}

/* QEMU exits during a trace: the log is complete and valid */
static void test_quit_during_trace(void)
{
    g_autofree char *path = tmp_path("quit");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(BTLog) log = NULL;

    start_trace(qts, path, 100000, 100000);
    qtest_writeb(qts, 0x3000, 1);
    qtest_quit(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_cmpuint(log->iters->len, ==, 2);
    g_assert_true(bt_log_iter_has_pfn(g_ptr_array_index(log->iters, 1), 3));
    unlink(path);
}

static void test_hmp(void)
{
    g_autofree char *path = tmp_path("hmp");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *help = qtest_hmp(qts, "help bitmap-trace");
    g_autofree char *idle = qtest_hmp(qts, "info bitmap_trace");
    g_autofree char *bad = NULL;
    g_autofree char *start = NULL;
    g_autofree char *off = NULL;
    g_autofree char *info = NULL;

    g_assert_nonnull(strstr(help, "bitmap-trace [-d] [-b] on|off [filename] "
                            "[iterations] [period]"));
    g_assert_nonnull(strstr(help, "-b: write a compact binary log"));
    g_assert_nonnull(strstr(help, "iterations: 3-100000 (default 3)"));
    g_assert_nonnull(strstr(help, "period: 10-100000 ms (default 10)"));
    g_assert_nonnull(strstr(idle, "bitmap-trace: none"));

    bad = qtest_hmp(qts, "bitmap-trace on \"%s\" 2 1000", path);
    g_assert_nonnull(strstr(bad, "'iterations' must be in the range"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));

    /* human-monitor-command cannot wait: the trace runs detached */
    start = qtest_hmp(qts, "bitmap-trace on \"%s\" 10 100000", path);
    g_assert_nonnull(strstr(start, "runs in the background"));
    info = qtest_hmp(qts, "info bitmap_trace");
    g_assert_nonnull(strstr(info, "bitmap-trace: active"));
    g_assert_nonnull(strstr(info, path));
    g_free(info);

    qtest_writeb(qts, 0x2000, 1);
    qtest_writeb(qts, 0x4000, 1);
    off = qtest_hmp(qts, "bitmap-trace off");
    g_assert_nonnull(strstr(off, "stops in the background"));
    for (int i = 0; i < 2000; i++) {
        g_autoptr(QDict) q = query_trace(qts);

        if (strcmp(qdict_get_str(q, "status"), "active")) {
            break;
        }
        g_usleep(5000);
    }
    info = qtest_hmp(qts, "info bitmap_trace");
    g_assert_nonnull(strstr(info, "bitmap-trace: cancelled"));
    g_assert_nonnull(strstr(info, "iterations: 1 of 10"));
    g_assert_nonnull(strstr(info, "(baseline: all pages)"));
    /* iteration 1 saw the two pages written */
    g_assert_nonnull(strstr(info, "        1             2\r\n"));
    g_assert_nonnull(strstr(info, "distinct pages dirtied: 2 "));
    g_assert_nonnull(strstr(info, "min 2, mean 2.0, max 2"));
    g_assert_nonnull(strstr(info, "dirty rate:"));

    /* -b: a binary log; the arguments after it as without */
    g_free(start);
    start = qtest_hmp(qts, "bitmap-trace -d -b on \"%s\" 3 10", path);
    g_assert_cmpstr(start, ==, "");
    for (int i = 0; i < 2000; i++) {
        g_autoptr(QDict) q = query_trace(qts);

        if (strcmp(qdict_get_str(q, "status"), "active")) {
            break;
        }
        g_usleep(5000);
    }
    {
        g_autoptr(BTLog) log = bt_log_parse(path, true);
        g_autoptr(QDict) q = query_trace(qts);

        g_assert_true(log->binary);
        g_assert_cmpint(log->end_iterations, ==, 3);
        g_assert_cmpstr(qdict_get_str(q, "format"), ==, "binary");
    }
    qtest_quit(qts);
    unlink(path);
}

/* Read from @fd until @out ends with @suffix; fails after 60 s */
static void read_until(int fd, GString *out, const char *suffix)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

    while (!g_str_has_suffix(out->str, suffix)) {
        char buf[512];
        ssize_t n;

        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        n = read(fd, buf, sizeof(buf));
        g_assert_cmpint(n, >, 0);
        g_string_append_len(out, buf, n);
    }
}

/*
 * Start QEMU with an interactive HMP monitor on the unix socket @sock and
 * connect to it: the socket, once the monitor's first prompt is in @out.
 */
static int hmp_socket_init(QTestState **qts, const char *sock, GString *out)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 60 };
    int fd;

    *qts = qtest_initf(NONE_ARGS " -chardev socket,id=hmp,path=%s,server=on,"
                       "wait=off -mon chardev=hmp,mode=readline", sock);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(addr.sun_path, sock, sizeof(addr.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), ==,
                    0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    read_until(fd, out, "(qemu) ");
    return fd;
}

/*
 * On an interactive monitor, bitmap-trace waits like migrate: the prompt
 * comes back only after a line per iteration and the results.
 */
static void test_hmp_wait(void)
{
    g_autofree char *path = tmp_path("hmp-wait");
    g_autofree char *sock = tmp_path("hmp-sock");
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *cmd = NULL;
    QTestState *qts;
    int fd;

    fd = hmp_socket_init(&qts, sock, out);

    g_string_truncate(out, 0);
    cmd = g_strdup_printf("bitmap-trace on \"%s\" 3 20\n", path);
    g_assert_cmpint(write(fd, cmd, strlen(cmd)), ==, strlen(cmd));
    read_until(fd, out, "(qemu) ");

    /* by the time the prompt is back, the trace is over */
    g_assert_nonnull(strstr(out->str, "iteration 1: 0 dirty pages"));
    g_assert_nonnull(strstr(out->str, "iteration 3: 0 dirty pages"));
    g_assert_nonnull(strstr(out->str, "bitmap-trace: completed"));
    /* once: the notice other monitors get is not shown on this one */
    g_assert_null(strstr(strstr(out->str, "bitmap-trace: completed") + 1,
                         "bitmap-trace: completed"));
    g_assert_nonnull(strstr(out->str, "iterations: 3 of 3"));
    g_assert_nonnull(strstr(out->str, "dirty rate: 0.00 MiB/s"));
    {
        g_autoptr(QDict) info = query_trace(qts);

        g_assert_cmpstr(qdict_get_str(info, "status"), ==, "completed");
    }
    close(fd);
    qtest_quit(qts);
    unlink(path);
    unlink(sock);
}

/*
 * A monitor that waits for a trace (bitmap-trace without -d) gets its
 * prompt back when the trace fails, with the failure: a fault does not
 * leave it suspended.
 */
static void test_hmp_wait_failed(void)
{
    g_autofree char *sock = tmp_path("hmp-sock");
    g_autoptr(GString) out = g_string_new(NULL);
    static const char cmd[] = "bitmap-trace on \"/dev/full\" 100000 10\n";
    QTestState *qts;
    int fd;

    fd = hmp_socket_init(&qts, sock, out);

    g_string_truncate(out, 0);
    g_assert_cmpint(write(fd, cmd, strlen(cmd)), ==, strlen(cmd));
    read_until(fd, out, "(qemu) ");
    g_assert_nonnull(strstr(out->str, "bitmap-trace: failed"));
    g_assert_nonnull(strstr(out->str, g_strerror(ENOSPC)));
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    close(fd);

    assert_runs_on(qts);
    qtest_quit(qts);
    unlink(sock);
}

/*
 * A trace started over QMP shows its results on an idle HMP monitor when it
 * ends, with the table cut short, and without garbling a command being
 * typed there: the line is erased, the results printed, and the prompt and
 * the line drawn again, so that finishing the command runs it.
 */
static void test_hmp_notice(void)
{
    g_autofree char *path = tmp_path("hmp-notice");
    g_autofree char *sock = tmp_path("hmp-sock");
    g_autoptr(GString) out = g_string_new(NULL);
    g_autoptr(QDict) ev = NULL;
    g_autofree char *file_line = NULL;
    const char *results;
    QTestState *qts;
    int fd;

    fd = hmp_socket_init(&qts, sock, out);

    /* half a command typed, echoed back */
    g_assert_cmpint(write(fd, "info sta", 8), ==, 8);
    read_until(fd, out, "info sta\033[K");
    g_string_truncate(out, 0);

    start_trace(qts, path, 30, 10);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    read_until(fd, out, "(qemu) info sta\033[K");

    /* the monitor ends lines with CR LF; the typed line is erased first */
    g_assert_true(g_str_has_prefix(out->str, "\r\033[Kbitmap-trace: "
                                   "completed\r\n"));
    results = out->str;
    file_line = g_strdup_printf("\nfile: %s\r\n", path);
    g_assert_nonnull(strstr(results, file_line));
    g_assert_nonnull(strstr(results, "iterations: 30 of 30, period: 10 ms"));
    /* 31 rows: the first ten and the last ten, and where the others are */
    g_assert_nonnull(strstr(results, "\n        0          4096  (baseline"));
    g_assert_nonnull(strstr(results, "\n        9             0\r\n"));
    g_assert_null(strstr(results, "\n       10             0\r\n"));
    g_assert_nonnull(strstr(results, "(11 more iterations"));
    g_assert_null(strstr(results, "\n       20             0\r\n"));
    g_assert_nonnull(strstr(results, "\n       21             0\r\n"));
    g_assert_nonnull(strstr(results, "\n       30             0\r\n"));
    g_assert_nonnull(strstr(results, "\ndistinct pages dirtied: 0"));

    /* the command typed before the notice still runs as typed */
    g_string_truncate(out, 0);
    g_assert_cmpint(write(fd, "tus\n", 4), ==, 4);
    read_until(fd, out, "(qemu) ");
    g_assert_nonnull(strstr(out->str, "VM status: running"));

    close(fd);
    qtest_quit(qts);
    unlink(path);
    unlink(sock);
}

/* query-bitmap-trace with since: only the iterations from there on */
static void test_query_since(void)
{
    g_autofree char *path = tmp_path("since");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    QDict *resp, *info;
    QList *list;

    start_trace(qts, path, 100000, 100000);
    qtest_writeb(qts, 0x5 * PAGE, 1);
    qtest_writeb(qts, 0x9 * PAGE, 1);
    ev = stop_trace(qts);

    /* iterations 0 and 1: [NONE_PAGES, 2] */
    for (int since = 0; since <= 3; since++) {
        resp = qtest_qmp(qts, "{'execute': 'query-bitmap-trace', "
                         "'arguments': {'since': %d}}", since);
        info = qdict_get_qdict(resp, "return");
        list = qdict_get_qlist(info, "dirty-pages");
        g_assert_cmpint(qdict_get_int(info, "since"), ==, MIN(since, 2));
        g_assert_cmpint(qlist_size(list), ==, MAX(2 - since, 0));
        if (since == 1) {
            g_assert_cmpint(qnum_get_int(qobject_to(QNum,
                                                    qlist_peek(list))), ==, 2);
        }
        g_assert_cmpint(qdict_get_int(info, "last-dirty-pages"), ==, 2);
        qobject_unref(resp);
    }
    qtest_quit(qts);
    unlink(path);
}

/*
 * The binary log picks, per block and iteration, the cheaper of runs and
 * a bitmap: every other page of the first half of RAM is a bitmap (half a
 * byte per page as runs, an eighth as a bitmap), the baseline is runs.
 * The zero pages are every other dirty page: their set (by rank) is a
 * bitmap too.  Either way the decoded pages are exactly those written.
 */
static void test_binary_bitmap(void)
{
    g_autofree char *path = tmp_path("bitmap");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    g_autoptr(GArray) expect = g_array_new(false, false, sizeof(uint64_t));
    const BTLogIter *it1;
    struct stat st;

    start_trace_fmt(qts, path, "binary", 100000, 100000);
    /* the baseline's zero scan must not see these writes (its size) */
    wait_baseline(qts);
    for (uint64_t p = 0; p < NONE_PAGES / 2; p += 2) {
        g_array_append_val(expect, p);
        /* pages 0, 4, 8...: non-zero; 2, 6, 10...: zero written on zero */
        qtest_memset(qts, p * PAGE, p % 4 ? 0 : 0x11, PAGE);
    }
    ev = stop_trace(qts);

    log = bt_log_parse(path, true);
    g_assert_true(log->binary);
    it1 = g_ptr_array_index(log->iters, 1);
    assert_exact(it1, &g_array_index(expect, uint64_t, 0), expect->len);
    g_assert_cmpuint(it1->zero, ==, expect->len / 2);
    for (guint i = 0; i < expect->len; i++) {
        uint64_t p = g_array_index(expect, uint64_t, i);

        g_assert_cmpint(bt_log_iter_has_zero_pfn(it1, p), ==, p % 4 != 0);
    }
    /*
     * Header, baseline and end are a few dozen bytes; the window is a
     * bitmap of half of RAM (256 bytes) and one of its ranks (128 bytes).
     */
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, <, 256 + 128 + 200);
    qtest_quit(qts);
    unlink(path);
}

/* @text without what differs between two runs: times and start */
static char *mask_times(const char *text)
{
    g_autoptr(GRegex) re = g_regex_new("(t-ms|sync-us|harvest-us|zero-us|"
                                       "start)=\\S*", 0, 0, NULL);

    return g_regex_replace_literal(re, text, -1, 0, "\\1=X", 0, NULL);
}

/* One run of the writes of test_pc_high() (text and binary alike) */
static char *pc_high_log(const char *fmt)
{
    g_autofree char *path = tmp_path(fmt);
    QTestState *qts = qtest_init(PC_HIGH_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autofree char *data = NULL;
    g_autofree char *text = NULL;
    gsize len;

    start_trace_fmt(qts, path, fmt, 100000, 100000);
    wait_baseline(qts);
    for (uint64_t p = 0; p < 600; p += 3) {
        /* sparse and dense, below and above 4 GiB, zero and not */
        qtest_writeb(qts, p * p * PAGE, p % 2);
        qtest_writeb(qts, 0x100000000ULL + p * PAGE, p % 5 ? 1 : 0);
    }
    qtest_memset(qts, 0xc0000, 0, 0x40000);     /* ROMs: unmapped RAM */
    ev = stop_trace(qts);
    qtest_quit(qts);
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    unlink(path);
    text = strcmp(fmt, "binary") ? g_strdup(data)
                                 : bt_log_binary_to_text(data, len);
    return mask_times(text);
}

/*
 * The binary log holds what the text log does: the same writes, traced
 * once in each format, give the same text, times aside.
 */
static void test_binary_same_as_text(void)
{
    g_autofree char *text = NULL;
    g_autofree char *binary = NULL;

    if (!qtest_has_machine("pc")) {
        g_test_skip("no pc machine");
        return;
    }
    text = pc_high_log("text");
    binary = pc_high_log("binary");
    g_assert_cmpstr(binary, ==, text);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_data_func("/bitmap-trace/exact/stop", "text", test_exact_stop);
    qtest_add_func("/bitmap-trace/exact/windows", test_windows);
    qtest_add_data_func("/bitmap-trace/exact/pc-above-4g", "text",
                        test_pc_high);
    qtest_add_data_func("/bitmap-trace/exact/two-blocks", "text",
                        test_two_blocks);
    qtest_add_data_func("/bitmap-trace/exact/zero-pages", "text",
                        test_zero_pages);
    qtest_add_data_func("/bitmap-trace/binary/stop", "binary",
                        test_exact_stop);
    qtest_add_data_func("/bitmap-trace/binary/pc-above-4g", "binary",
                        test_pc_high);
    qtest_add_data_func("/bitmap-trace/binary/two-blocks", "binary",
                        test_two_blocks);
    qtest_add_data_func("/bitmap-trace/binary/zero-pages", "binary",
                        test_zero_pages);
    qtest_add_func("/bitmap-trace/binary/bitmap", test_binary_bitmap);
    qtest_add_func("/bitmap-trace/binary/same-as-text",
                   test_binary_same_as_text);
    qtest_add_func("/bitmap-trace/iface/query-since", test_query_since);
    qtest_add_func("/bitmap-trace/iface/defaults", test_defaults);
    qtest_add_func("/bitmap-trace/iface/ranges", test_ranges);
    qtest_add_func("/bitmap-trace/iface/errors", test_errors);
    qtest_add_func("/bitmap-trace/iface/refused-during-migration",
                   test_refused_during_migration);
    qtest_add_func("/bitmap-trace/iface/refused-on-postcopy-destination",
                   test_refused_on_postcopy_destination);
    qtest_add_data_func("/bitmap-trace/iface/write-error", "text",
                        test_write_error);
    qtest_add_data_func("/bitmap-trace/binary/write-error", "binary",
                        test_write_error);
    qtest_add_data_func("/bitmap-trace/iface/ram-hotplug", "text",
                        test_ram_hotplug);
    qtest_add_data_func("/bitmap-trace/binary/ram-hotplug", "binary",
                        test_ram_hotplug);
    qtest_add_data_func("/bitmap-trace/iface/blocker-recorded", "text",
                        test_blocker_recorded);
    qtest_add_data_func("/bitmap-trace/binary/blocker-recorded", "binary",
                        test_blocker_recorded);
    qtest_add_func("/bitmap-trace/iface/fdset", test_fdset);
    qtest_add_func("/bitmap-trace/iface/fdset-twice", test_fdset_twice);
    qtest_add_func("/bitmap-trace/iface/fifo-no-reader", test_fifo_no_reader);
    qtest_add_func("/bitmap-trace/iface/fifo-stream", test_fifo_stream);
    qtest_add_func("/bitmap-trace/iface/fifo-stalled", test_fifo_stalled);
    qtest_add_func("/bitmap-trace/iface/fifo-reader-gone",
                   test_fifo_reader_gone);
    qtest_add_data_func("/bitmap-trace/iface/disk-full", "text",
                        test_disk_full);
    qtest_add_data_func("/bitmap-trace/binary/disk-full", "binary",
                        test_disk_full);
    qtest_add_data_func("/bitmap-trace/iface/file-too-big", "text",
                        test_file_too_big);
    qtest_add_data_func("/bitmap-trace/binary/file-too-big", "binary",
                        test_file_too_big);
    qtest_add_func("/bitmap-trace/binary/header-after-trace",
                   test_binary_header_after_trace);
    qtest_add_func("/bitmap-trace/iface/pty-eio", test_pty_eio);
    qtest_add_func("/bitmap-trace/iface/hmp-wait-failed",
                   test_hmp_wait_failed);
    qtest_add_func("/bitmap-trace/iface/fuzz-args", test_fuzz_args);
    qtest_add_func("/bitmap-trace/iface/dirty-rate-exclusion",
                   test_dirty_rate_exclusion);
    qtest_add_func("/bitmap-trace/iface/savevm-refused", test_savevm_refused);
    qtest_add_func("/bitmap-trace/iface/loadvm-refused", test_loadvm_refused);
    qtest_add_func("/bitmap-trace/iface/late-baseline", test_late_baseline);
    qtest_add_data_func("/bitmap-trace/exact/baseline-queue", "text",
                        test_baseline_queue);
    qtest_add_data_func("/bitmap-trace/binary/baseline-queue", "binary",
                        test_baseline_queue);
    qtest_add_data_func("/bitmap-trace/exact/map-change", "text",
                        test_map_change);
    qtest_add_data_func("/bitmap-trace/binary/map-change", "binary",
                        test_map_change);
    qtest_add_func("/bitmap-trace/iface/quit", test_quit_during_trace);
    qtest_add_func("/bitmap-trace/iface/hmp", test_hmp);
    qtest_add_func("/bitmap-trace/iface/hmp-wait", test_hmp_wait);
    qtest_add_func("/bitmap-trace/iface/hmp-notice", test_hmp_notice);
    return g_test_run();
}
