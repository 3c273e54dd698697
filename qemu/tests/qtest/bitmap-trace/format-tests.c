/*
 * QTest for bitmap-trace: the binary log format against the text one
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
 * Two binary traces in a row: the second header must not carry what the
 * first left in the tracer's scratch strings (its last page set, taken
 * for blocked reasons).
 */
static void test_binary_header_after_trace(void)
{
    g_autofree char *path = bt_tmp_path("header-after");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(BTLog) first = NULL;
    g_autoptr(BTLog) second = NULL;
    const BTLogIter *it;

    /*
     * Every third page, every other one of them left zero, the first
     * not: the zero set's runs then have no NUL byte.
     */
    bt_start(qts, path, "binary", 100000, 100000);
    bt_await_baseline(qts);
    for (uint64_t pfn = 0; pfn < NONE_PAGES; pfn += 3) {
        qtest_writeb(qts, pfn * PAGE, (pfn / 3 + 1) % 2);
    }
    qobject_unref(bt_stop(qts));
    first = bt_log_parse(path, true);
    g_assert_cmpuint(first->blocked->len, ==, 0);
    g_assert_cmpuint(first->iters->len, ==, 2);
    it = g_ptr_array_index(first->iters, 1);
    g_assert_cmpuint(it->dirty, ==, DIV_ROUND_UP(NONE_PAGES, 3));
    g_assert_cmpuint(it->zero, ==, DIV_ROUND_UP(NONE_PAGES, 3) / 2);

    bt_start(qts, path, "binary", 100000, 100000);
    qobject_unref(bt_stop(qts));
    second = bt_log_parse(path, true);
    g_assert_cmpuint(second->blocked->len, ==, 0);
    g_assert_cmpuint(second->iters->len, ==, 2);
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
    g_autofree char *path = bt_tmp_path("bitmap");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    g_autoptr(GArray) expect = g_array_new(false, false, sizeof(uint64_t));
    const BTLogIter *it1;
    struct stat st;

    bt_start(qts, path, "binary", 100000, 100000);
    /* the baseline's zero scan must not see these writes (its size) */
    bt_await_baseline(qts);
    for (uint64_t p = 0; p < NONE_PAGES / 2; p += 2) {
        g_array_append_val(expect, p);
        /* pages 0, 4, 8...: non-zero; 2, 6, 10...: zero written on zero */
        qtest_memset(qts, p * PAGE, p % 4 ? 0 : 0x11, PAGE);
    }
    ev = bt_stop(qts);

    log = bt_log_parse(path, true);
    g_assert_true(log->binary);
    it1 = g_ptr_array_index(log->iters, 1);
    bt_assert_exact(it1, &g_array_index(expect, uint64_t, 0), expect->len);
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
                                       "run-us|start)=\\S*", 0, 0, NULL);

    return g_regex_replace_literal(re, text, -1, 0, "\\1=X", 0, NULL);
}

/* One run of the writes of test_pc_high() (text and binary alike) */
static char *pc_high_log(const char *fmt)
{
    g_autofree char *path = bt_tmp_path(fmt);
    QTestState *qts = qtest_init(PC_HIGH_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autofree char *data = NULL;
    g_autofree char *text = NULL;
    gsize len;

    bt_start(qts, path, fmt, 100000, 100000);
    bt_await_baseline(qts);
    for (uint64_t p = 0; p < 600; p += 3) {
        /* sparse and dense, below and above 4 GiB, zero and not */
        qtest_writeb(qts, p * p * PAGE, p % 2);
        qtest_writeb(qts, 0x100000000ULL + p * PAGE, p % 5 ? 1 : 0);
    }
    qtest_memset(qts, 0xc0000, 0, 0x40000);     /* ROMs: unmapped RAM */
    ev = bt_stop(qts);
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

/*
 * The vcpus line (text v3, binary v4): each iteration gives one run time
 * per vCPU, in cpu_index order, and a vCPU plugged during the trace is in
 * the list from the first sync that finds it on.  Under the qtest
 * accelerator a vCPU thread only waits for signals, so every run time is
 * a few milliseconds at most, the baseline (from the threads' start)
 * included.
 */
static void test_vcpus(const void *opaque)
{
    BTFixture fx = bt_fixture("-M pc -nodefaults -m 32M "
                              "-smp 2,maxcpus=3,sockets=1,cores=3,threads=1",
                              "vcpus", opaque);
    g_autoptr(BTLog) log = NULL;
    int64_t before, after;
    guint three = 0;

    bt_fixture_start(&fx, 100000, 10);
    bt_await_completed(fx.qts, 2);
    before = bt_completed(fx.qts);
    qtest_qmp_assert_success(fx.qts, "{'execute': 'device_add', "
                             "'arguments': {'driver': 'qemu64-x86_64-cpu', "
                             "'id': 'cpu2', 'socket-id': 0, 'core-id': 2, "
                             "'thread-id': 0}}");
    /* iteration after + 1 may have synced before the plug, not later ones */
    after = bt_completed(fx.qts);
    bt_await_completed(fx.qts, after + 3);
    qobject_unref(bt_stop(fx.qts));

    log = bt_fixture_log(&fx);
    g_assert_cmpint(log->version, ==, 3);
    for (guint n = 0; n < log->iters->len; n++) {
        const BTLogIter *it = g_ptr_array_index(log->iters, n);

        g_assert_nonnull(it->vcpu_us);
        if (n <= before) {
            g_assert_cmpuint(it->vcpu_us->len, ==, 2);
        } else if (n >= after + 2) {
            g_assert_cmpuint(it->vcpu_us->len, ==, 3);
        } else {
            g_assert_cmpuint(it->vcpu_us->len, >=, three ? 3 : 2);
            g_assert_cmpuint(it->vcpu_us->len, <=, 3);
        }
        three += it->vcpu_us->len == 3;
        for (guint v = 0; v < it->vcpu_us->len; v++) {
            g_assert_cmpint(g_array_index(it->vcpu_us, int64_t, v), >=, 0);
            g_assert_cmpint(g_array_index(it->vcpu_us, int64_t, v), <=,
                            5000);
        }
    }
    g_assert_cmpuint(three, >=, 2);
    bt_fixture_end(&fx);
}

void bt_add_format_tests(void)
{
    bt_add_formats("/bitmap-trace/format/vcpus", test_vcpus);
    qtest_add_func("/bitmap-trace/format/bitmap/binary", test_binary_bitmap);
    qtest_add_func("/bitmap-trace/format/same-as-text",
                   test_binary_same_as_text);
    qtest_add_func("/bitmap-trace/format/header-after-trace/binary",
                   test_binary_header_after_trace);
}
