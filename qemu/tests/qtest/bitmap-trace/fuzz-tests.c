/*
 * QTest for bitmap-trace: fuzzing the arguments of the QMP and HMP commands
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qapi/error.h"
#include "qobject/qbool.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qnull.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "framework.h"

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
    f->before = bt_query(f->qts);
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
    g_autoptr(QDict) info = bt_query(f->qts);
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
    f->before = bt_query(f->qts);
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
    g_autoptr(QDict) ev = bt_stop(f->qts);
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
        error = bt_await_failed(f->qts, "/proc/self/status", "", &completed);
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

    bt_start(f->qts, active, NULL, 100000, 100000);
    bt_await_baseline(f->qts);
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
    info = bt_query(f->qts);
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
    info = bt_query(f->qts);
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

void bt_add_fuzz_tests(void)
{
    qtest_add_func("/bitmap-trace/fuzz/args", test_fuzz_args);
}
