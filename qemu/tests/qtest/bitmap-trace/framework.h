/*
 * QTest for bitmap-trace: the framework every case uses
 *
 * bitmap-trace-test (cases under the qtest accelerator) and
 * bitmap-trace-guest-test (a real guest doing the writing) are each a
 * main() that calls the registration function of every topic, one file
 * per topic in this directory (*-tests.c), on top of the helpers here,
 * the log reader (log-reader.h) and, for the guests, guest.h.
 *
 * Test paths are /bitmap-trace/TOPIC/CASE[/VARIANT]; VARIANT is the log
 * format (text or binary) of a case run in both, or the accelerator of a
 * guest case (tcg, kvm, kvm-dirty-ring).
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BITMAP_TRACE_FRAMEWORK_H
#define BITMAP_TRACE_FRAMEWORK_H

#include "libqtest.h"
#include "log-reader.h"

#define PAGE 4096ULL
#define NONE_ARGS "-M none -cpu qemu64,apic-id=0 -m 16M"
#define NONE_PAGES 4096

/* -M pc with RAM above 4 GiB: pc.ram offset 128M is GPA 4G */
#define PC_HIGH_ARGS "-M pc,max-ram-below-4g=128M -m 256M -nodefaults"

/* Iterations run with no end of their own until the test cancels them */
#define ITERATIONS_UNTIL_CANCELLED  100000

/*
 * The fixture of a case: its QEMU and its log, a path that does not
 * exist yet (the trace must create it), in @format ("text", "binary", or
 * NULL for the default).
 */
typedef struct BTFixture {
    QTestState *qts;
    char *path;
    const char *format;
} BTFixture;

/* Start QEMU with @args; the log's file name has @name in it */
BTFixture bt_fixture(const char *args, const char *name, const char *format);
/* Start a trace of @iterations x @period ms to the fixture's log */
void bt_fixture_start(BTFixture *f, int64_t iterations, int64_t period);
/* Parse the fixture's log, which must be complete */
BTLog *bt_fixture_log(BTFixture *f);
/* Quit QEMU (unless f->qts is NULL) and remove the log */
void bt_fixture_end(BTFixture *f);

/* A temporary file name with @name in it; the file does not exist */
char *bt_tmp_path(const char *name);

/*
 * Start a trace of @iterations x @period ms to @path, in @format ("text"
 * or "binary"; NULL: the default, given no format argument)
 */
void bt_start(QTestState *qts, const char *path, const char *format,
              int64_t iterations, int64_t period);
/* Stop the trace and wait for its end; returns the event */
QDict *bt_stop(QTestState *qts);
/* Stop the trace, wait for its end and check it says cancelled */
void bt_cancel(QTestState *qts);
/* The return of query-bitmap-trace */
QDict *bt_query(QTestState *qts);
/* completed-iterations of query-bitmap-trace */
int64_t bt_completed(QTestState *qts);
/* The same, without the list of every iteration */
int64_t bt_completed_brief(QTestState *qts);

/*
 * Wait until the trace has completed @n iterations.  Iterations have no
 * event of their own: poll query-bitmap-trace, bounded; a QEMU that makes
 * no progress fails the case with where its threads wait.
 */
void bt_await_completed(QTestState *qts, int64_t n);
/*
 * Wait until the baseline is in the log.  The command takes the
 * baseline's sync; the trace thread then reads every page for the
 * zero-page scan, which a write made before it is done could be seen by.
 */
void bt_await_baseline(QTestState *qts);
/*
 * Wait until the trace is no longer active; fail, rather than hang, if it
 * does not end in @timeout_ms.  Returns its final status.
 */
char *bt_await_end(QTestState *qts, int64_t timeout_ms);
/*
 * Wait for the end of a trace that must fail because of @cause (a
 * strerror() text) writing @path.  Returns the error; the measured
 * iterations it completed go to @completed.
 */
char *bt_await_failed(QTestState *qts, const char *path, const char *cause,
                      int64_t *completed);

/* Assert @it lists exactly the sorted PFN set @pfns of size @n */
void bt_assert_exact(const BTLogIter *it, const uint64_t *pfns, size_t n);
/* After a fault: the guest's RAM still works and so does a new trace */
void bt_assert_runs_on(QTestState *qts);
/* The "desc" of @resp, an error qtest_qmp_assert_failure_ref() returned */
const char *bt_error_desc(QDict *resp);

/*
 * Progress messages.  A subprocess runs with -q, which drops
 * g_test_message(): print TAP comments to its inherited stdout instead.
 */
void G_GNUC_PRINTF(1, 2) bt_msg(const char *fmt, ...);
/*
 * QEMU stopped making progress: show where its threads wait, kill it and
 * fail the case.
 */
void G_NORETURN bt_qemu_wedged(QTestState *qts);

#ifdef CONFIG_LINUX
/* A pipe QEMU writes to, which the test reads into @data (or drops) */
typedef struct BTPipeSink {
    int fd;                     /* non-blocking; -1 once at its end */
    GString *data;              /* NULL: drop what comes */
} BTPipeSink;

void bt_pipe_drain(BTPipeSink *s);
/*
 * Wait until QEMU has exited, for at most @timeout_ms, reading whatever it
 * writes to the pipes @sinks meanwhile.  Returns how long it took, in ms.
 */
int64_t bt_qemu_await_exit(QTestState *qts, BTPipeSink *sinks, int nsinks,
                           int64_t timeout_ms);
/* QEMU's descriptor for the file at @path, or -1 */
int bt_qemu_fd_of(pid_t pid, const char *path);
/* How many descriptors QEMU has open */
int bt_qemu_fd_count(pid_t pid);
/* A "Name: value kB" field of /proc/PID/status, in KiB */
int64_t bt_qemu_status_kib(pid_t pid, const char *field);
/*
 * Is a thread of QEMU whose name starts with @comm blocked in one of the
 * system calls @nrs (ending with -1), with first argument @arg0 unless
 * that is -1?
 */
bool bt_qemu_thread_in_syscall(pid_t pid, const char *comm, const long *nrs,
                               long arg0);
/* Wait until bt_qemu_thread_in_syscall(); fail with where QEMU waits if not */
void bt_qemu_await_thread_in_syscall(QTestState *qts, const char *comm,
                                     const long *nrs, long arg0,
                                     const char *what);
#endif

/* Add case @path in both log formats: PATH/text and PATH/binary */
void bt_add_formats(const char *path, void (*fn)(const void *));

/* The topics of bitmap-trace-test */
void bt_add_exact_tests(void);
void bt_add_device_tests(void);
void bt_add_format_tests(void);
void bt_add_qmp_tests(void);
void bt_add_sink_tests(void);
void bt_add_fault_tests(void);
void bt_add_fuzz_tests(void);
void bt_add_exclusion_tests(void);
void bt_add_hmp_tests(void);

#endif
