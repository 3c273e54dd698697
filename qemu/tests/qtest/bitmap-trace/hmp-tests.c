/*
 * QTest for bitmap-trace: the HMP commands
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/un.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "framework.h"

static void test_hmp(void)
{
    g_autofree char *path = bt_tmp_path("hmp");
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
        g_autoptr(QDict) q = bt_query(qts);

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
        g_autoptr(QDict) q = bt_query(qts);

        if (strcmp(qdict_get_str(q, "status"), "active")) {
            break;
        }
        g_usleep(5000);
    }
    {
        g_autoptr(BTLog) log = bt_log_parse(path, true);
        g_autoptr(QDict) q = bt_query(qts);

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
    g_autofree char *path = bt_tmp_path("hmp-wait");
    g_autofree char *sock = bt_tmp_path("hmp-sock");
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
        g_autoptr(QDict) info = bt_query(qts);

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
    g_autofree char *sock = bt_tmp_path("hmp-sock");
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

    bt_assert_runs_on(qts);
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
    g_autofree char *path = bt_tmp_path("hmp-notice");
    g_autofree char *sock = bt_tmp_path("hmp-sock");
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

    bt_start(qts, path, NULL, 30, 10);
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

void bt_add_hmp_tests(void)
{
    qtest_add_func("/bitmap-trace/hmp/commands", test_hmp);
    qtest_add_func("/bitmap-trace/hmp/wait", test_hmp_wait);
    qtest_add_func("/bitmap-trace/hmp/wait-failed", test_hmp_wait_failed);
    qtest_add_func("/bitmap-trace/hmp/notice", test_hmp_notice);
}
