/*
 * bitmap-trace log (formats v1 and v2) parser for qtests
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "bitmap-trace-log.h"

/* Split "key=value" fields of @line after its leading word. */
static GHashTable *parse_fields(const char *line, const char *word)
{
    GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal,
                                          g_free, g_free);
    g_auto(GStrv) tok = g_strsplit(line, " ", -1);

    g_assert_cmpstr(tok[0], ==, word);
    for (int i = 1; tok[i]; i++) {
        char *eq = strchr(tok[i], '=');

        g_assert_nonnull(eq);
        g_assert_false(g_hash_table_contains(h, tok[i]));
        g_hash_table_insert(h, g_strndup(tok[i], eq - tok[i]),
                            g_strdup(eq + 1));
    }
    return h;
}

static const char *field(GHashTable *h, const char *key)
{
    const char *v = g_hash_table_lookup(h, key);

    if (!v) {
        g_error("bitmap-trace log: missing field '%s'", key);
    }
    return v;
}

static int64_t dec_field(GHashTable *h, const char *key)
{
    const char *v = field(h, key);
    char *end;
    int64_t r;

    g_assert(g_ascii_isdigit(v[0]));
    r = g_ascii_strtoll(v, &end, 10);
    g_assert(*end == '\0');
    return r;
}

static uint64_t parse_hex(const char *s, const char **end)
{
    char *e;
    uint64_t v;

    /* lowercase hex without prefix */
    g_assert(g_ascii_isdigit(s[0]) || (s[0] >= 'a' && s[0] <= 'f'));
    v = g_ascii_strtoull(s, &e, 16);
    for (const char *p = s; p < e; p++) {
        g_assert(!g_ascii_isupper(*p));
    }
    *end = e;
    return v;
}

/* "first" or "first-last", hex, inclusive */
static void parse_range(const char *s, uint64_t *first, uint64_t *last)
{
    const char *end;

    *first = parse_hex(s, &end);
    if (*end == '-') {
        *last = parse_hex(end + 1, &end);
        g_assert_cmpuint(*last, >, *first);
    } else {
        *last = *first;
    }
    g_assert(*end == '\0');
}

static BTLogIter *parse_iter(const char *line, int64_t expect_n,
                             int version)
{
    g_autoptr(GHashTable) h = parse_fields(line, "iter");
    BTLogIter *it = g_new0(BTLogIter, 1);
    const char *t = field(h, "t-ms");
    const char *dot = strchr(t, '.');

    it->n = dec_field(h, "n");
    g_assert_cmpint(it->n, ==, expect_n);
    g_assert(dot && strlen(dot + 1) == 3);
    it->t_ms = g_ascii_strtod(t, NULL);
    it->dirty = dec_field(h, "dirty");
    it->unmapped = dec_field(h, "unmapped");
    it->sync_us = dec_field(h, "sync-us");
    it->harvest_us = dec_field(h, "harvest-us");
    if (version >= 2) {
        it->zero = dec_field(h, "zero");
        it->zero_us = dec_field(h, "zero-us");
    } else {
        g_assert_null(g_hash_table_lookup(h, "zero"));
    }
    it->pfns = g_array_new(false, false, sizeof(uint64_t));
    it->unmapped_pages = g_ptr_array_new_with_free_func(g_free);
    it->zero_pfns = g_array_new(false, false, sizeof(uint64_t));
    it->unmapped_zero = g_ptr_array_new_with_free_func(g_free);
    it->untraced = g_ptr_array_new_with_free_func(g_free);
    return it;
}

/* "untraced name=<id> pages=<n>": RAM added after the trace started */
static void parse_untraced(BTLogIter *it, const char *line)
{
    g_autoptr(GHashTable) h = parse_fields(line, "untraced");

    g_assert_cmpuint(g_hash_table_size(h), ==, 2);
    dec_field(h, "pages");
    g_ptr_array_add(it->untraced, g_strdup(field(h, "name")));
}

/* A "pfns" or "zero" line: PFN ranges, appended to @pfns */
static void parse_pfns(GArray *pfns, const char *word, const char *line)
{
    g_auto(GStrv) tok = g_strsplit(line, " ", -1);

    g_assert_cmpstr(tok[0], ==, word);
    g_assert_nonnull(tok[1]);
    for (int i = 1; tok[i]; i++) {
        uint64_t first, last;

        parse_range(tok[i], &first, &last);
        if (pfns->len) {
            /* ascending and disjoint; adjacent ranges would be merged */
            g_assert_cmpuint(first, >,
                             g_array_index(pfns, uint64_t, pfns->len - 1) + 1);
        }
        for (uint64_t p = first; p <= last; p++) {
            g_array_append_val(pfns, p);
        }
    }
}

/* An "unmapped" or "unmapped-zero" line, appended to @pages */
static void parse_unmapped(GPtrArray *pages, const char *word,
                           const char *line)
{
    g_auto(GStrv) tok = g_strsplit(line, " ", -1);

    g_assert_cmpstr(tok[0], ==, word);
    g_assert_nonnull(tok[1]);
    for (int i = 1; tok[i]; i++) {
        char *colon = strrchr(tok[i], ':');
        g_autofree char *block = NULL;
        uint64_t first, last;

        g_assert_nonnull(colon);
        block = g_strndup(tok[i], colon - tok[i]);
        parse_range(colon + 1, &first, &last);
        for (uint64_t p = first; p <= last; p++) {
            g_ptr_array_add(pages, g_strdup_printf("%s:%" PRIx64, block, p));
        }
    }
}

static void parse_block(BTLog *log, const char *line)
{
    g_autoptr(GHashTable) h = parse_fields(line, "block");
    BTLogBlock *b = g_new0(BTLogBlock, 1);
    const char *map = field(h, "map");
    uint64_t mapped = 0;

    b->name = g_strdup(field(h, "name"));
    b->pages = dec_field(h, "pages");
    b->map = g_array_new(false, false, sizeof(BTLogRange));
    if (*map) {
        g_auto(GStrv) ranges = g_strsplit(map, ",", -1);

        for (int i = 0; ranges[i]; i++) {
            BTLogRange r;
            const char *end;
            char *e;

            r.first = parse_hex(ranges[i], &end);
            g_assert(*end == '+');
            /* the page count is decimal, like every number but PFNs */
            g_assert(g_ascii_isdigit(end[1]));
            r.npages = g_ascii_strtoull(end + 1, &e, 10);
            g_assert(*e == '\0');
            g_assert_cmpuint(r.npages, >, 0);
            mapped += r.npages;
            g_array_append_val(b->map, r);
        }
    }
    /* a page is logged once, at its lowest GPA: ranges never exceed it */
    g_assert_cmpuint(mapped, <=, b->pages);
    g_assert_null(bt_log_find_block(log, b->name));
    g_ptr_array_add(log->blocks, b);
}

static bool has_unmapped(const GPtrArray *pages, const char *key)
{
    for (guint i = 0; i < pages->len; i++) {
        if (!strcmp(g_ptr_array_index(pages, i), key)) {
            return true;
        }
    }
    return false;
}

static void finish_iter(BTLogIter *it)
{
    if (it) {
        g_assert_cmpuint(it->unmapped, ==, it->unmapped_pages->len);
        g_assert_cmpuint(it->dirty, ==, it->pfns->len + it->unmapped);
        /* zero pages are dirty pages, and as many as zero= says */
        g_assert_cmpuint(it->zero, ==,
                         it->zero_pfns->len + it->unmapped_zero->len);
        for (guint i = 0; i < it->zero_pfns->len; i++) {
            g_assert_true(bt_log_iter_has_pfn(it,
                          g_array_index(it->zero_pfns, uint64_t, i)));
        }
        for (guint i = 0; i < it->unmapped_zero->len; i++) {
            g_assert_true(has_unmapped(it->unmapped_pages,
                          g_ptr_array_index(it->unmapped_zero, i)));
        }
    }
}

static void iter_free(gpointer p)
{
    BTLogIter *it = p;

    g_array_free(it->pfns, true);
    g_ptr_array_free(it->unmapped_pages, true);
    g_array_free(it->zero_pfns, true);
    g_ptr_array_free(it->unmapped_zero, true);
    g_ptr_array_free(it->untraced, true);
    g_free(it);
}

static void block_free(gpointer p)
{
    BTLogBlock *b = p;

    g_free(b->name);
    g_array_free(b->map, true);
    g_free(b);
}

BTLog *bt_log_parse(const char *path, bool need_end)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = NULL;
    BTLog *log = g_new0(BTLog, 1);
    BTLogIter *cur = NULL;
    int i;

    log->blocks = g_ptr_array_new_with_free_func(block_free);
    log->iters = g_ptr_array_new_with_free_func(iter_free);

    g_assert_true(g_file_get_contents(path, &text, NULL, &err));
    /* Every record, the last one included, ends with a newline. */
    g_assert(text[0] == '\0' || g_str_has_suffix(text, "\n"));
    lines = g_strsplit(text, "\n", -1);

    if (!strcmp(lines[0], "bitmap-trace v1")) {
        log->version = 1;
    } else {
        g_assert_cmpstr(lines[0], ==, "bitmap-trace v2");
        log->version = 2;
    }
    {
        g_autoptr(GHashTable) h = parse_fields(lines[1], "meta");

        log->qemu_version = g_strdup(field(h, "qemu"));
        log->accel = g_strdup(field(h, "accel"));
        log->page_size = dec_field(h, "page-size");
        log->period_ms = dec_field(h, "period-ms");
        log->iterations = dec_field(h, "iterations");
        log->start = g_strdup(field(h, "start"));
        g_assert(g_str_has_suffix(log->start, "Z"));
    }

    for (i = 2; lines[i] && lines[i][0]; i++) {
        const char *l = lines[i];

        g_assert_false(log->has_end);
        if (g_str_has_prefix(l, "blocked reason=")) {
            g_assert_cmpuint(log->blocks->len, ==, 0);
            g_assert_null(log->blocked);
            log->blocked = g_strdup(l + strlen("blocked reason="));
        } else if (g_str_has_prefix(l, "block ")) {
            g_assert_null(cur);
            g_assert_cmpuint(log->iters->len, ==, 0);
            parse_block(log, l);
        } else if (g_str_has_prefix(l, "iter ")) {
            finish_iter(cur);
            cur = parse_iter(l, log->iters->len, log->version);
            g_ptr_array_add(log->iters, cur);
        } else if (g_str_has_prefix(l, "pfns ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->unmapped_pages->len, ==, 0);
            g_assert_cmpuint(cur->zero_pfns->len, ==, 0);
            g_assert_cmpuint(cur->untraced->len, ==, 0);
            parse_pfns(cur->pfns, "pfns", l);
        } else if (g_str_has_prefix(l, "unmapped ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->zero_pfns->len, ==, 0);
            g_assert_cmpuint(cur->untraced->len, ==, 0);
            parse_unmapped(cur->unmapped_pages, "unmapped", l);
        } else if (log->version >= 2 && g_str_has_prefix(l, "zero ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->unmapped_zero->len, ==, 0);
            g_assert_cmpuint(cur->untraced->len, ==, 0);
            parse_pfns(cur->zero_pfns, "zero", l);
        } else if (log->version >= 2 &&
                   g_str_has_prefix(l, "unmapped-zero ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->untraced->len, ==, 0);
            parse_unmapped(cur->unmapped_zero, "unmapped-zero", l);
        } else if (g_str_has_prefix(l, "untraced ")) {
            g_assert_nonnull(cur);
            parse_untraced(cur, l);
        } else if (g_str_has_prefix(l, "end ")) {
            const char *err_txt = strstr(l, " error=");
            g_autofree char *head = err_txt ? g_strndup(l, err_txt - l)
                                            : g_strdup(l);
            g_autoptr(GHashTable) h = parse_fields(head, "end");

            finish_iter(cur);
            cur = NULL;
            log->has_end = true;
            log->end_status = g_strdup(field(h, "status"));
            log->end_iterations = dec_field(h, "iterations");
            log->end_error = err_txt ? g_strdup(err_txt + 7) : NULL;
            g_assert_cmpint(log->end_iterations, ==,
                            (int64_t)log->iters->len - 1);
        } else {
            g_error("bitmap-trace log: unexpected line '%s'", l);
        }
    }
    finish_iter(cur);
    /* only the final empty string after the last newline may remain */
    g_assert(lines[i] == NULL || (lines[i][0] == '\0' && !lines[i + 1]));
    g_assert_cmpuint(log->blocks->len, >, 0);
    if (need_end) {
        g_assert_true(log->has_end);
    }
    return log;
}

void bt_log_free(BTLog *log)
{
    g_free(log->qemu_version);
    g_free(log->accel);
    g_free(log->start);
    g_free(log->blocked);
    g_ptr_array_free(log->blocks, true);
    g_ptr_array_free(log->iters, true);
    g_free(log->end_status);
    g_free(log->end_error);
    g_free(log);
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

bool bt_log_iter_has_pfn(const BTLogIter *it, uint64_t pfn)
{
    return bsearch(&pfn, it->pfns->data, it->pfns->len, sizeof(uint64_t),
                   cmp_u64) != NULL;
}

bool bt_log_iter_has_zero_pfn(const BTLogIter *it, uint64_t pfn)
{
    return bsearch(&pfn, it->zero_pfns->data, it->zero_pfns->len,
                   sizeof(uint64_t), cmp_u64) != NULL;
}

bool bt_log_iter_has_unmapped(const BTLogIter *it, const char *block,
                              uint64_t page)
{
    g_autofree char *key = g_strdup_printf("%s:%" PRIx64, block, page);

    for (guint i = 0; i < it->unmapped_pages->len; i++) {
        if (!strcmp(g_ptr_array_index(it->unmapped_pages, i), key)) {
            return true;
        }
    }
    return false;
}

const BTLogBlock *bt_log_find_block(const BTLog *log, const char *name)
{
    for (guint i = 0; i < log->blocks->len; i++) {
        BTLogBlock *b = g_ptr_array_index(log->blocks, i);

        if (!strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}
