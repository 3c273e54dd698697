/*
 * QTest for bitmap-trace: what a trace excludes (dirty rate, snapshots,
 * migration)
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
    g_autofree char *path = bt_tmp_path("dirtyrate");
    QTestState *qts = qtest_init(NONE_ARGS);
    QDict *resp;

    bt_start(qts, path, NULL, 100000, 100000);
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    g_assert_nonnull(strstr(bt_error_desc(resp), "bitmap-trace state=false"));
    qobject_unref(resp);
    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'page-sampling'}}");
    wait_dirty_rate_measured(qts);
    qobject_unref(bt_stop(qts));
    unlink(path);

    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 500,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    resp = qtest_qmp_assert_failure_ref(qts,
        "{'execute': 'bitmap-trace', 'arguments': {'state': true,"
        " 'filename': %s}}", path);
    g_assert_nonnull(strstr(bt_error_desc(resp), "calc-dirty-rate"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    qobject_unref(resp);
    wait_dirty_rate_measured(qts);

    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
}

/* savevm is refused while a trace runs */
static void test_savevm_refused(void)
{
    g_autofree char *path = bt_tmp_path("savevm");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *out = NULL;
    g_autoptr(QDict) ev = NULL;

    bt_start(qts, path, NULL, 100000, 100000);
    out = qtest_hmp(qts, "savevm snap0");
    g_assert_nonnull(strstr(out, "bitmap-trace in progress"));
    ev = bt_stop(qts);
    qtest_quit(qts);
    unlink(path);
}

/*
 * loadvm is refused while a trace runs: loading a snapshot rewrites RAM
 * without dirty logging.  Without a trace it fails for its own reasons.
 */
static void test_loadvm_refused(void)
{
    g_autofree char *path = bt_tmp_path("loadvm");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *during = NULL;
    g_autofree char *after = NULL;
    QDict *resp;

    bt_start(qts, path, NULL, 100000, 100000);
    during = qtest_hmp(qts, "loadvm snap0");
    g_assert_nonnull(strstr(during, "bitmap-trace state=false"));
    /* refused before the VM is stopped for the load */
    resp = qtest_qmp_assert_success_ref(qts, "{'execute': 'query-status'}");
    g_assert_true(qdict_get_bool(resp, "running"));
    qobject_unref(resp);
    qobject_unref(bt_stop(qts));
    after = qtest_hmp(qts, "loadvm snap0");
    g_assert_null(strstr(after, "bitmap-trace"));
    qtest_quit(qts);
    unlink(path);
}

/* A trace is refused while a migration runs (held in pre-switchover) */
static void test_refused_during_migration(void)
{
    g_autofree char *path = bt_tmp_path("mig");
    g_autofree char *mig = bt_tmp_path("mig-stream");
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
    g_assert_nonnull(strstr(bt_error_desc(resp), "migration"));
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
    bt_start(qts, path, NULL, 3, 10);
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
    g_autofree char *path = bt_tmp_path("postcopy");
    g_autofree char *sock = bt_tmp_path("postcopy-sock");
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
    g_assert_nonnull(strstr(bt_error_desc(resp), "postcopy"));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    qobject_unref(resp);

    qtest_quit(src);
    qtest_quit(dst);
    unlink(sock);
}

/*
 * A trace that ends while the VM is stopped leaves dirty logging on until
 * the VM runs again (memory_global_dirty_log_stop() postpones the stop),
 * but it is over: what it excludes may run at once.
 */
static void test_ended_while_stopped(void)
{
    g_autofree char *path = bt_tmp_path("stopped");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autofree char *out = NULL;
    QDict *info;

    qtest_qmp_assert_success(qts, "{'execute': 'stop'}");
    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));

    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    wait_dirty_rate_measured(qts);
    /* the VM is stopped: nothing was written, nothing counted */
    info = qtest_qmp_assert_success_ref(qts, "{'execute': 'query-dirty-rate'}");
    g_assert_cmpint(qdict_get_int(info, "dirty-rate"), ==, 0);
    qobject_unref(info);

    /* no snapshot to load here, but not refused for the trace */
    out = qtest_hmp(qts, "loadvm snap0");
    g_assert_null(strstr(out, "bitmap-trace"));
    g_free(out);
    /* its migration blocker is gone too */
    out = qtest_hmp(qts, "savevm snap0");
    g_assert_null(strstr(out, "bitmap-trace"));

    /* a new trace while the VM is still stopped, and it ends */
    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_qmp_assert_success(qts, "{'execute': 'cont'}");
    qtest_qmp_assert_success(qts,
        "{'execute': 'calc-dirty-rate', 'arguments': {'calc-time': 100,"
        " 'calc-time-unit': 'millisecond', 'mode': 'dirty-bitmap'}}");
    wait_dirty_rate_measured(qts);
    qtest_quit(qts);
    unlink(path);
}

/*
 * The other way round: a migration that completed leaves the source
 * stopped and its dirty logging postponed to stop; it is over, a trace
 * may start.
 */
static void test_after_migration_completed(void)
{
    g_autofree char *path = bt_tmp_path("mig-done");
    g_autofree char *mig = bt_tmp_path("mig-done-stream");
    g_autofree char *uri = g_strdup_printf("file:%s", mig);
    /* -M none cannot migrate an x86 CPU */
    QTestState *qts = qtest_init("-M pc -m 64M -nodefaults");
    QDict *resp;
    int64_t deadline;

    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-capabilities',"
        " 'arguments': {'capabilities': ["
        "  {'capability': 'events', 'state': true}]}}");
    qtest_qmp_assert_success(qts, "{'execute': 'migrate', 'arguments': "
                             "{'uri': %s}}", uri);
    wait_migration_status(qts, "completed");
    /*
     * The status is completed before the migration thread, in
     * migration_iteration_finish(), moves the VM from finish-migrate to
     * postmigrate; no event says when: ask until it has (a slow host,
     * e.g. under ASan, sees finish-migrate first).
     */
    deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    for (;;) {
        resp = qtest_qmp_assert_success_ref(qts,
                                            "{'execute': 'query-status'}");
        if (strcmp(qdict_get_str(resp, "status"), "finish-migrate") ||
            g_get_monotonic_time() > deadline) {
            break;
        }
        qobject_unref(resp);
        g_usleep(1000);
    }
    g_assert_cmpstr(qdict_get_str(resp, "status"), ==, "postmigrate");
    qobject_unref(resp);

    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
    unlink(mig);
}

void bt_add_exclusion_tests(void)
{
    qtest_add_func("/bitmap-trace/exclusions/dirty-rate",
                   test_dirty_rate_exclusion);
    qtest_add_func("/bitmap-trace/exclusions/savevm", test_savevm_refused);
    qtest_add_func("/bitmap-trace/exclusions/loadvm", test_loadvm_refused);
    qtest_add_func("/bitmap-trace/exclusions/migration",
                   test_refused_during_migration);
    qtest_add_func("/bitmap-trace/exclusions/postcopy-destination",
                   test_refused_on_postcopy_destination);
    qtest_add_func("/bitmap-trace/exclusions/ended-while-stopped",
                   test_ended_while_stopped);
    qtest_add_func("/bitmap-trace/exclusions/after-migration-completed",
                   test_after_migration_completed);
}
