/*
 * QTest for bitmap-trace: the framework every case uses, under the qtest
 * accelerator and with a real guest alike
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/cutils.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "framework.h"

#ifdef CONFIG_LINUX
#include <sys/syscall.h>
#endif

/* How long a thread of QEMU may take to get where a case sends it */
#define THREAD_STATE_TIMEOUT_MS 10000

/* Bound on waiting for the trace to complete iterations */
#define COMPLETED_TIMEOUT_MS    30000

char *bt_tmp_path(const char *name)
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

void bt_start(QTestState *qts, const char *path, const char *format,
              int64_t iterations, int64_t period)
{
    if (!format) {
        qtest_qmp_assert_success(qts,
            "{'execute': 'bitmap-trace', 'arguments': {"
            " 'state': true, 'filename': %s, 'iterations': %" PRId64 ","
            " 'period': %" PRId64 "}}", path, iterations, period);
        return;
    }
    qtest_qmp_assert_success(qts,
        "{'execute': 'bitmap-trace', 'arguments': {"
        " 'state': true, 'filename': %s, 'format': %s,"
        " 'iterations': %" PRId64 ", 'period': %" PRId64 "}}",
        path, format, iterations, period);
}

QDict *bt_stop(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'bitmap-trace', "
                             "'arguments': {'state': false}}");
    return qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
}

void bt_cancel(QTestState *qts)
{
    g_autoptr(QDict) ev = bt_stop(qts);

    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"), ==,
                    "cancelled");
}

QDict *bt_query(QTestState *qts)
{
    return qtest_qmp_assert_success_ref(qts,
                                        "{'execute': 'query-bitmap-trace'}");
}

int64_t bt_completed(QTestState *qts)
{
    g_autoptr(QDict) info = bt_query(qts);

    return qdict_get_int(info, "completed-iterations");
}

void bt_await_completed(QTestState *qts, int64_t n)
{
    int64_t deadline = g_get_monotonic_time() + COMPLETED_TIMEOUT_MS * 1000;
    int64_t done;

    while ((done = bt_completed(qts)) < n) {
        if (g_get_monotonic_time() > deadline) {
            bt_msg("the trace is stuck: %" PRId64 " iterations complete, "
                   "waited %d ms for %" PRId64, done, COMPLETED_TIMEOUT_MS,
                   n);
            bt_qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

void bt_await_baseline(QTestState *qts)
{
    int64_t deadline = g_get_monotonic_time() + COMPLETED_TIMEOUT_MS * 1000;

    for (;;) {
        g_autoptr(QDict) info = bt_query(qts);

        if (qlist_size(qdict_get_qlist(info, "dirty-pages")) >= 1) {
            return;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(5000);
    }
}

void bt_add_formats(const char *path, void (*fn)(const void *))
{
    g_autofree char *text = g_strdup_printf("%s/text", path);
    g_autofree char *binary = g_strdup_printf("%s/binary", path);

    qtest_add_data_func(text, "text", fn);
    qtest_add_data_func(binary, "binary", fn);
}

BTFixture bt_fixture(const char *args, const char *name, const char *format)
{
    return (BTFixture) {
        .qts = qtest_init(args),
        .path = bt_tmp_path(name),
        .format = format,
    };
}

void bt_fixture_start(BTFixture *f, int64_t iterations, int64_t period)
{
    bt_start(f->qts, f->path, f->format, iterations, period);
}

BTLog *bt_fixture_log(BTFixture *f)
{
    return bt_log_parse(f->path, true);
}

void bt_fixture_end(BTFixture *f)
{
    if (f->qts) {
        qtest_quit(f->qts);
    }
    unlink(f->path);
    g_free(f->path);
}

/* Assert @it lists exactly the sorted PFN set @pfns of size @n */
void bt_assert_exact(const BTLogIter *it, const uint64_t *pfns, size_t n)
{
    g_assert_cmpuint(it->pfns->len, ==, n);
    g_assert_cmpuint(it->dirty, ==, n);
    g_assert_cmpuint(it->unmapped, ==, 0);
    for (size_t i = 0; i < n; i++) {
        g_assert_cmphex(g_array_index(it->pfns, uint64_t, i), ==, pfns[i]);
    }
}

/* @err is what qtest_qmp_assert_failure_ref() returns */
const char *bt_error_desc(QDict *resp)
{
    return qdict_get_str(resp, "desc");
}

/*
 * Wait for the end of a trace that must fail because of @cause (a
 * strerror() text) writing @path.  Returns the error; the measured
 * iterations it completed go to @completed.
 */
char *bt_await_failed(QTestState *qts, const char *path,
                         const char *cause, int64_t *completed)
{
    g_autoptr(QDict) ev = qtest_qmp_eventwait_ref(qts,
                                                  "BITMAP_TRACE_COMPLETED");
    g_autoptr(QDict) info = bt_query(qts);
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
void bt_assert_runs_on(QTestState *qts)
{
    g_autofree char *path = bt_tmp_path("after-fault");
    g_autoptr(QDict) ev = NULL;
    g_autoptr(BTLog) log = NULL;

    qtest_writeb(qts, 0x1000, 0x5a);
    g_assert_cmpint(qtest_readb(qts, 0x1000), ==, 0x5a);
    bt_start(qts, path, NULL, 3, 10);
    ev = qtest_qmp_eventwait_ref(qts, "BITMAP_TRACE_COMPLETED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "status"),
                    ==, "completed");
    log = bt_log_parse(path, true);
    g_assert_cmpstr(log->end_status, ==, "completed");
    g_assert_cmpuint(log->iters->len, ==, 4);
    unlink(path);
}

/*
 * Progress messages.  A subprocess runs with -q, which drops
 * g_test_message(): print TAP comments to its inherited stdout instead.
 */
void bt_msg(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (g_test_subprocess()) {
        printf("# %s\n", msg);
        fflush(stdout);
    } else {
        g_test_message("%s", msg);
    }
}

/*
 * QEMU stopped making progress: show where its threads wait (a system call
 * number and its first arguments), then fail at once.  Kill it first, as
 * it could not quit (its main loop or the trace, which quitting joins, is
 * stuck) and libqtest would wait for it.
 */
void bt_qemu_wedged(QTestState *qts)
{
    pid_t pid = qtest_pid(qts);
#ifdef CONFIG_LINUX
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    GDir *tasks = g_dir_open(dir, 0, NULL);
    const char *tid;

    while (tasks && (tid = g_dir_read_name(tasks))) {
        const char *const files[] = { "comm", "wchan", "syscall" };
        g_autoptr(GString) line = g_string_new("");

        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
            g_autofree char *path = g_build_filename(dir, tid, files[i],
                                                     NULL);
            g_autofree char *text = NULL;

            if (g_file_get_contents(path, &text, NULL, NULL)) {
                g_string_append_printf(line, " %s=%s", files[i],
                                       g_strstrip(text));
            }
        }
        bt_msg("QEMU thread %s:%s", tid, line->str);
    }
    if (tasks) {
        g_dir_close(tasks);
    }
#endif
    kill(pid, SIGKILL);
    g_assert_not_reached();
}

/*
 * Wait until the trace is no longer active; fail, rather than hang, if it
 * does not end in @timeout_ms.  Returns its final status.
 */
char *bt_await_end(QTestState *qts, int64_t timeout_ms)
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

/* completed-iterations, without the list of every iteration */
int64_t bt_completed_brief(QTestState *qts)
{
    QDict *info = qtest_qmp_assert_success_ref(qts,
                      "{'execute': 'query-bitmap-trace',"
                      " 'arguments': {'since': %d}}",
                      ITERATIONS_UNTIL_CANCELLED + 1);
    int64_t done = qdict_get_int(info, "completed-iterations");

    qobject_unref(info);
    return done;
}

#ifdef CONFIG_LINUX

void bt_pipe_drain(BTPipeSink *s)
{
    char buf[65536];
    ssize_t n;

    while (s->fd >= 0 && (n = read(s->fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            g_assert_true(errno == EAGAIN || errno == EINTR);
            if (errno == EAGAIN) {
                return;
            }
            continue;
        }
        if (s->data) {
            g_string_append_len(s->data, buf, n);
        }
    }
    s->fd = -1;                 /* every writer closed it */
}

/*
 * Wait until QEMU has exited, for at most @timeout_ms, reading whatever it
 * writes to the pipes @sinks meanwhile, so that none of its threads stays
 * blocked on them.  A QEMU that does not exit is wedged: the case fails
 * with where its threads wait.  Returns how long it took, in ms.
 */
int64_t bt_qemu_await_exit(QTestState *qts, BTPipeSink *sinks, int nsinks,
                               int64_t timeout_ms)
{
    int64_t t0 = g_get_monotonic_time();
    int64_t deadline = t0 + timeout_ms * 1000;
    int pidfd = -1;

#ifdef SYS_pidfd_open
    pidfd = syscall(SYS_pidfd_open, qtest_pid(qts), 0);
#endif
    g_assert_cmpint(nsinks, <=, 3);
    for (;;) {
        struct pollfd pfd[4];
        int64_t left_ms;
        int n = 0;

        for (int i = 0; i < nsinks; i++) {
            bt_pipe_drain(&sinks[i]);
        }
        if (!qtest_probe_child(qts)) {
            break;
        }
        left_ms = (deadline - g_get_monotonic_time()) / 1000;
        if (left_ms <= 0) {
            bt_msg("QEMU did not exit in %" PRId64 " ms after quit",
                      timeout_ms);
            bt_qemu_wedged(qts);
        }
        for (int i = 0; i < nsinks; i++) {
            if (sinks[i].fd >= 0) {
                pfd[n++] = (struct pollfd) {
                    .fd = sinks[i].fd, .events = POLLIN,
                };
            }
        }
        if (pidfd >= 0) {
            pfd[n++] = (struct pollfd) { .fd = pidfd, .events = POLLIN };
        }
        /* without a pidfd, see whether QEMU is gone every 10 ms */
        poll(pfd, n, pidfd >= 0 ? left_ms : MIN(left_ms, 10));
    }
    for (int i = 0; i < nsinks; i++) {
        bt_pipe_drain(&sinks[i]);
    }
    if (pidfd >= 0) {
        close(pidfd);
    }
    return (g_get_monotonic_time() - t0) / 1000;
}

/* QEMU's descriptor for the file at @path, or -1 */
int bt_qemu_fd_of(pid_t pid, const char *path)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    g_autofree char *real = realpath(path, NULL);
    GDir *fds = g_dir_open(dir, 0, NULL);
    const char *name;
    int fd = -1;

    g_assert_nonnull(real);
    while (fds && fd < 0 && (name = g_dir_read_name(fds))) {
        g_autofree char *link = g_build_filename(dir, name, NULL);
        g_autofree char *target = g_file_read_link(link, NULL);

        if (target && !strcmp(target, real)) {
            fd = atoi(name);
        }
    }
    if (fds) {
        g_dir_close(fds);
    }
    return fd;
}

/* How many descriptors QEMU has open */
int bt_qemu_fd_count(pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    GDir *fds = g_dir_open(dir, 0, NULL);
    int n = 0;

    g_assert_nonnull(fds);
    while (g_dir_read_name(fds)) {
        n++;
    }
    g_dir_close(fds);
    return n;
}

/* A "Name: value kB" field of /proc/PID/status, in KiB */
int64_t bt_qemu_status_kib(pid_t pid, const char *field)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree char *text = NULL;
    g_autofree char *key = g_strdup_printf("\n%s:", field);
    const char *p;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    p = strstr(text, key);
    g_assert_nonnull(p);
    return g_ascii_strtoll(p + strlen(key), NULL, 10);
}

/*
 * Is a thread of QEMU whose name starts with @comm (QEMU runs with
 * -name debug-threads=on) blocked in one of the system calls @nrs (ending
 * with -1), with first argument @arg0 unless that is -1?  The kernel tells
 * in /proc/PID/task/TID/syscall.
 */
bool bt_qemu_thread_in_syscall(pid_t pid, const char *comm,
                                   const long *nrs, long arg0)
{
    g_autofree char *dir = g_strdup_printf("/proc/%d/task", (int)pid);
    GDir *tasks = g_dir_open(dir, 0, NULL);
    const char *tid;
    bool found = false;

    while (tasks && !found && (tid = g_dir_read_name(tasks))) {
        g_autofree char *comm_path = g_build_filename(dir, tid, "comm", NULL);
        g_autofree char *sc_path = g_build_filename(dir, tid, "syscall",
                                                    NULL);
        g_autofree char *name = NULL;
        g_autofree char *sc = NULL;
        const char *end;
        long nr, arg;

        if (!g_file_get_contents(comm_path, &name, NULL, NULL) ||
            !g_str_has_prefix(name, comm) ||
            !g_file_get_contents(sc_path, &sc, NULL, NULL) ||
            !g_ascii_isdigit(sc[0])) {
            continue;           /* not the thread, or running */
        }
        if (qemu_strtol(sc, &end, 10, &nr) ||
            qemu_strtol(end, &end, 0, &arg)) {
            continue;
        }
        for (int i = 0; nrs[i] >= 0; i++) {
            found |= nr == nrs[i] && (arg0 < 0 || arg == arg0);
        }
    }
    if (tasks) {
        g_dir_close(tasks);
    }
    return found;
}

/* Wait until bt_qemu_thread_in_syscall(); fail with where QEMU waits if not */
void bt_qemu_await_thread_in_syscall(QTestState *qts, const char *comm,
                                         const long *nrs, long arg0,
                                         const char *what)
{
    int64_t deadline = g_get_monotonic_time() +
                       THREAD_STATE_TIMEOUT_MS * 1000;

    while (!bt_qemu_thread_in_syscall(qtest_pid(qts), comm, nrs, arg0)) {
        if (g_get_monotonic_time() > deadline) {
            bt_msg("thread %s of QEMU did not get %s in %d ms", comm,
                      what, THREAD_STATE_TIMEOUT_MS);
            bt_qemu_wedged(qts);
        }
        g_usleep(1000);
    }
}

#endif /* CONFIG_LINUX */
