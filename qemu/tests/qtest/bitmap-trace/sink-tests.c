/*
 * QTest for bitmap-trace: logs that are not regular files (fdset, FIFO, pty)
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <termios.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "framework.h"

/* The log may be a descriptor passed with add-fd, as for dump-guest-memory */
static void test_fdset(void)
{
    g_autofree char *path = bt_tmp_path("fdset");
    QTestState *qts = qtest_init(NONE_ARGS);
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;
    int fd = open(path, O_CREAT | O_WRONLY, 0600);

    g_assert_cmpint(fd, >=, 0);
    qobject_unref(qtest_qmp_fds_assert_success_ref(qts, &fd, 1,
        "{'execute': 'add-fd', 'arguments': {'fdset-id': 1}}"));
    close(fd);
    bt_start(qts, "/dev/fdset/1", NULL, 100000, 100000);
    qtest_writeb(qts, 0x9000, 1);
    ev = bt_stop(qts);
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
    g_autofree char *path = bt_tmp_path("fdset-twice");
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
    bt_start(qts, "/dev/fdset/1", NULL, 100000, 100000);
    for (int i = 0; i < 64; i++) {
        qtest_writeb(qts, (2 * i + 16) * PAGE, 1);
    }
    qobject_unref(bt_stop(qts));
    bt_start(qts, "/dev/fdset/1", NULL, 100000, 100000);
    qtest_writeb(qts, 0x5000, 1);
    qobject_unref(bt_stop(qts));

    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    g_assert_cmpuint(strlen(text), ==, len);
    g_assert_true(g_str_has_prefix(text, "bitmap-trace v3\n"));
    log = bt_log_parse(path, true);
    g_assert_cmpuint(log->iters->len, ==, 2);
    bt_assert_exact(g_ptr_array_index(log->iters, 1), (uint64_t[]){ 5 }, 1);

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
    char *path = bt_tmp_path(name);

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
    g_assert_nonnull(strstr(bt_error_desc(resp), "no reader"));
    qobject_unref(resp);
    g_thread_join(reader);

    /* nothing is left behind: a trace to a file starts */
    g_free(path);
    path = bt_tmp_path("fifo-none-after");
    bt_start(qts, path, NULL, 3, 10);
    qobject_unref(qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED"));
    qtest_quit(qts);
    unlink(path);
}

/* A reader that reads everything gets a complete, valid log */
static void test_fifo_stream(void)
{
    g_autofree char *path = fifo_create("fifo-stream");
    g_autofree char *copy = bt_tmp_path("fifo-copy");
    QTestState *qts = qtest_init(NONE_ARGS);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    g_autoptr(BTLog) log = NULL;
    g_autoptr(QDict) ev = NULL;
    GThread *reader;
    GString *data;

    /* QEMU opens the FIFO while a reader has it open */
    g_assert_cmpint(rfd, >=, 0);
    bt_start(qts, path, NULL, 20, 10);
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
    bt_start(qts, path, NULL, 100000, 10);
    /* full once the iterations stop for a while */
    for (int i = 0; i < 1000; i++) {
        g_usleep(100 * 1000);
        done = bt_completed(qts);
        if (done == last) {
            return rfd;
        }
        last = done;
    }
    g_assert_not_reached();
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
    status = bt_await_end(qts, 10000);
    g_assert_cmpstr(status, ==, "failed");
    info = bt_query(qts);
    g_assert_nonnull(strstr(qdict_get_str(info, "error-desc"),
                            "stopped reading"));
    close(rfd);

    /* state=false ends it without waiting for the reader */
    rfd = fifo_stall(qts, path);
    t0 = g_get_monotonic_time();
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    g_free(status);
    status = bt_await_end(qts, 10000);
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
 * An I/O error: the log is the slave of a pseudo-terminal whose master is
 * closed during the trace, after which writes to the slave fail with EIO.
 * A terminal is not a regular file: the log is a stream, which may end
 * inside a record; what the master read up to the last record it got
 * whole is a valid log.
 */
static void test_pty_eio(void)
{
    g_autoptr(GString) data = g_string_new(NULL);
    g_autofree char *copy = bt_tmp_path("pty-copy");
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
    bt_start(qts, pts, NULL, 100000, 10);
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

    error = bt_await_failed(qts, pts, g_strerror(EIO), &completed);
    g_assert_cmpint(completed, >=, 2);
    last = strstr(data->str, "\niter n=3 ");
    g_string_truncate(data, last + 1 - data->str);
    g_assert_true(g_file_set_contents(copy, data->str, data->len, NULL));
    log = bt_log_parse(copy, false);
    g_assert_cmpuint(log->iters->len, ==, 3);
    close(slave);
    unlink(copy);

    bt_assert_runs_on(qts);
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
    bt_start(qts, path, NULL, 100000, 10);
    bt_await_completed(qts, 2);
    t0 = g_get_monotonic_time();
    close(rfd);
    error = bt_await_failed(qts, path, g_strerror(EPIPE), &completed);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 1500 * 1000);
    g_assert_cmpint(completed, >=, 2);

    bt_assert_runs_on(qts);
    qtest_quit(qts);
    unlink(path);
}

void bt_add_sink_tests(void)
{
    qtest_add_func("/bitmap-trace/sinks/fdset", test_fdset);
    qtest_add_func("/bitmap-trace/sinks/fdset-twice", test_fdset_twice);
    qtest_add_func("/bitmap-trace/sinks/fifo-no-reader", test_fifo_no_reader);
    qtest_add_func("/bitmap-trace/sinks/fifo-stream", test_fifo_stream);
    qtest_add_func("/bitmap-trace/sinks/fifo-stalled", test_fifo_stalled);
    qtest_add_func("/bitmap-trace/sinks/fifo-reader-gone",
                   test_fifo_reader_gone);
    qtest_add_func("/bitmap-trace/sinks/pty-eio", test_pty_eio);
}
