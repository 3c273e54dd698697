/*
 * QTest for bitmap-trace: the QMP commands and their arguments
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "framework.h"

/* Defaults: 3 iterations of 10 ms, ending by itself */
static void test_defaults(void)
{
    g_autofree char *path = bt_tmp_path("defaults");
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

    info = bt_query(qts);
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
        g_autofree char *path = bt_tmp_path("range");
        g_autoptr(QDict) resp = NULL;

        if (cases[i].ok) {
            g_autoptr(QDict) ev = NULL;

            bt_start(qts, path, NULL, cases[i].iterations, cases[i].period);
            g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
            ev = bt_stop(qts);
            unlink(path);
            continue;
        }
        resp = qtest_qmp_assert_failure_ref(qts,
            "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
            " 'filename': %s, 'iterations': %d, 'period': %d}}",
            path, cases[i].iterations, cases[i].period);
        g_assert_nonnull(strstr(bt_error_desc(resp), cases[i].param));
        g_assert_nonnull(strstr(bt_error_desc(resp),
                                cases[i].param[1] == 'i' ? "3-100000"
                                                         : "10-100000"));
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    }
    qtest_quit(qts);
}

static void test_errors(void)
{
    g_autofree char *path = bt_tmp_path("errors");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) idle = NULL;
    g_autoptr(QDict) ev = NULL;
    QDict *resp;

    /* query and stop when idle */
    idle = bt_query(qts);
    g_assert_cmpstr(qdict_get_str(idle, "status"), ==, "none");
    g_assert_cmpint(qdict_get_int(idle, "completed-iterations"), ==, 0);
    g_assert_false(qdict_haskey(idle, "filename"));
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");

    /* missing filename */
    resp = qtest_qmp_assert_failure_ref(qts, "{'execute': 'bitmap-trace', "
                                        "'arguments': {'state': true}}");
    g_assert_nonnull(strstr(bt_error_desc(resp), "'filename'"));
    qobject_unref(resp);

    /* unwritable path: the error names the file, nothing starts */
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': '/nonexistent-dir/dirty.log'}}");
    g_assert_nonnull(strstr(bt_error_desc(resp), "/nonexistent-dir/dirty.log"));
    qobject_unref(resp);
    qobject_unref(idle);
    idle = bt_query(qts);
    g_assert_cmpstr(qdict_get_str(idle, "status"), ==, "none");

    /* double start */
    bt_start(qts, path, NULL, 100000, 100000);
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': '/tmp/other'}}");
    g_assert_nonnull(strstr(bt_error_desc(resp), "already active"));
    qobject_unref(resp);

    /* migration is refused while the trace runs */
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'migrate', 'arguments': {'uri': 'file:/dev/null'}}");
    g_assert_nonnull(strstr(bt_error_desc(resp), "bitmap-trace"));
    qobject_unref(resp);

    ev = bt_stop(qts);
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "cancelled");
    qtest_quit(qts);
    unlink(path);
}

/* QEMU exits during a trace: the log is complete and valid */
static void test_quit_during_trace(void)
{
    g_autofree char *path = bt_tmp_path("quit");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(BTLog) log = NULL;

    bt_start(qts, path, NULL, 100000, 100000);
    qtest_writeb(qts, 0x3000, 1);
    qtest_quit(qts);

    log = bt_log_parse(path, true);
    g_assert_cmpstr(log->end_status, ==, "cancelled");
    g_assert_cmpuint(log->iters->len, ==, 2);
    g_assert_true(bt_log_iter_has_pfn(g_ptr_array_index(log->iters, 1), 3));
    unlink(path);
}

/* query-bitmap-trace with since: only the iterations from there on */
static void test_query_since(void)
{
    g_autofree char *path = bt_tmp_path("since");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    QDict *resp, *info;
    QList *list;

    bt_start(qts, path, NULL, 100000, 100000);
    qtest_writeb(qts, 0x5 * PAGE, 1);
    qtest_writeb(qts, 0x9 * PAGE, 1);
    ev = bt_stop(qts);

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

void bt_add_qmp_tests(void)
{
    qtest_add_func("/bitmap-trace/qmp/query-since", test_query_since);
    qtest_add_func("/bitmap-trace/qmp/defaults", test_defaults);
    qtest_add_func("/bitmap-trace/qmp/ranges", test_ranges);
    qtest_add_func("/bitmap-trace/qmp/errors", test_errors);
    qtest_add_func("/bitmap-trace/qmp/quit", test_quit_during_trace);
}
