/*
 * bitmap-trace log (text formats v1 to v3, binary v3 and v4) parser for qtests
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "log-reader.h"

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
    it->added = g_ptr_array_new_with_free_func(g_free);
    it->removed = g_ptr_array_new_with_free_func(g_free);
    it->blocked = g_ptr_array_new_with_free_func(g_free);
    return it;
}

/* "vcpus run-us=<us>,<us>...": one per vCPU, by cpu_index (v3) */
static void parse_vcpus(BTLogIter *it, const char *line)
{
    const char *p = line;

    g_assert(g_str_has_prefix(line, "vcpus run-us="));
    p += strlen("vcpus run-us=");
    it->vcpu_us = g_array_new(false, false, sizeof(int64_t));
    while (*p) {
        char *end;
        int64_t us;

        g_assert(g_ascii_isdigit(*p));
        us = g_ascii_strtoll(p, &end, 10);
        g_array_append_val(it->vcpu_us, us);
        p = end;
        if (*p) {
            g_assert_cmpint(*p, ==, ',');
            p++;
            g_assert(*p);
        }
    }
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

/*
 * A "block" line, or (@it) an "added" line after iteration @it: a block
 * found by its sync, with its zero pages then.
 */
static void parse_block(BTLog *log, const char *line, BTLogIter *it)
{
    g_autoptr(GHashTable) h = parse_fields(line, it ? "added" : "block");
    BTLogBlock *b = g_new0(BTLogBlock, 1);
    const char *map = field(h, "map");
    const BTLogBlock *other;
    uint64_t mapped = 0;

    b->name = g_strdup(field(h, "name"));
    b->pages = dec_field(h, "pages");
    b->added = it ? it->n : -1;
    b->removed = -1;
    if (it) {
        b->zero = dec_field(h, "zero");
        g_assert_cmpuint(b->zero, <=, b->pages);
        g_assert_cmpuint(g_hash_table_size(h), ==, 4);
        g_ptr_array_add(it->added, g_strdup(b->name));
    } else {
        g_assert_cmpuint(g_hash_table_size(h), ==, 3);
    }
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
    /* a name is unique among the blocks present */
    other = bt_log_find_block(log, b->name);
    g_assert(!other || other->removed >= 0);
    g_ptr_array_add(log->blocks, b);
}

/* "removed name=<id>": the sync of @it found that block gone */
static void parse_removed(BTLog *log, BTLogIter *it, const char *line)
{
    g_autoptr(GHashTable) h = parse_fields(line, "removed");
    BTLogBlock *b = (BTLogBlock *)bt_log_find_block(log, field(h, "name"));

    g_assert_cmpuint(g_hash_table_size(h), ==, 1);
    g_assert_nonnull(b);
    g_assert_cmpint(b->removed, ==, -1);
    b->removed = it->n;
    g_ptr_array_add(it->removed, g_strdup(b->name));
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

/* Did iteration @it already list what its sync found changed? */
static bool changes_listed(const BTLogIter *it)
{
    return it->untraced->len || it->added->len || it->removed->len ||
           it->blocked->len;
}

static void iter_free(gpointer p)
{
    BTLogIter *it = p;

    g_array_free(it->pfns, true);
    g_ptr_array_free(it->unmapped_pages, true);
    g_array_free(it->zero_pfns, true);
    g_ptr_array_free(it->unmapped_zero, true);
    g_ptr_array_free(it->untraced, true);
    g_ptr_array_free(it->added, true);
    g_ptr_array_free(it->removed, true);
    g_ptr_array_free(it->blocked, true);
    if (it->vcpu_us) {
        g_array_free(it->vcpu_us, true);
    }
    g_free(it);
}

static void block_free(gpointer p)
{
    BTLogBlock *b = p;

    g_free(b->name);
    g_array_free(b->map, true);
    g_free(b);
}

/*
 * The binary log (format version 3), turned into the text of the same log
 * (version 2) exactly as QEMU would have written it, so that one parser
 * checks both.
 */
#define BIN_MAGIC       "\x89" "BTR\r\n\x1a\n"
#define BIN_MAGIC_LEN   8
#define RANGES_PER_LINE 256

typedef struct BinReader {
    const uint8_t *p;
    const uint8_t *end;
} BinReader;

typedef struct BinSeg {
    uint64_t page;
    uint64_t npages;
    uint64_t pfn;
} BinSeg;

typedef struct BinBlock {
    char *name;
    uint64_t used_pages;
    GArray *segs;           /* BinSeg */
} BinBlock;

static uint64_t bin_varint(BinReader *r)
{
    uint64_t v = 0;

    for (int shift = 0; ; shift += 7) {
        uint8_t c;

        g_assert(r->p < r->end);
        g_assert_cmpint(shift, <, 64);
        c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            return v;
        }
    }
}

static char *bin_str(BinReader *r)
{
    uint64_t len = bin_varint(r);
    char *s;

    g_assert_cmpuint(len, <=, r->end - r->p);
    s = g_strndup((const char *)r->p, len);
    g_assert_cmpuint(strlen(s), ==, len);
    r->p += len;
    return s;
}

static void bin_segs(BinReader *r, GArray *segs)
{
    uint64_t n = bin_varint(r);

    g_array_set_size(segs, 0);
    for (uint64_t i = 0; i < n; i++) {
        BinSeg seg;

        seg.page = bin_varint(r);
        seg.npages = bin_varint(r);
        seg.pfn = bin_varint(r);
        g_assert_cmpuint(seg.npages, >, 0);
        g_array_append_val(segs, seg);
    }
}

/* A set of pages [0, @npages), as runs or a bitmap, into @bits */
static void bin_set(BinReader *r, unsigned long *bits, uint64_t npages)
{
    uint8_t kind;
    uint64_t len, pos = 0;
    BinReader sub;

    g_assert(r->p < r->end);
    kind = *r->p++;
    len = bin_varint(r);
    g_assert_cmpuint(len, <=, r->end - r->p);
    sub.p = r->p;
    sub.end = r->p + len;
    r->p += len;
    bitmap_zero(bits, npages);
    if (kind == 0) {
        while (sub.p < sub.end) {
            uint64_t v = bin_varint(&sub);
            uint64_t first = pos + (v >> 1);
            uint64_t n = (v & 1) ? bin_varint(&sub) + 2 : 1;

            g_assert_cmpuint(first + n, <=, npages);
            bitmap_set(bits, first, n);
            pos = first + n + 1;
        }
    } else {
        g_assert_cmpint(kind, ==, 1);
        g_assert_cmpuint(len, <=, DIV_ROUND_UP(npages, 8));
        for (uint64_t i = 0; i < len * 8; i++) {
            if (sub.p[i / 8] & (1 << (i % 8))) {
                g_assert_cmpuint(i, <, npages);
                set_bit(i, bits);
            }
        }
    }
}

static gint run_cmp(gconstpointer a, gconstpointer b)
{
    const BTLogRange *x = a, *y = b;

    return x->first < y->first ? -1 : x->first > y->first;
}

static void add_run(GArray *runs, uint64_t first, uint64_t n)
{
    BTLogRange r = { .first = first, .npages = n };

    g_array_append_val(runs, r);
}

static void put_ranges(GString *out, const char *word, const char *prefix,
                       GArray *runs)
{
    for (guint i = 0; i < runs->len; i++) {
        BTLogRange *r = &g_array_index(runs, BTLogRange, i);

        if (i % RANGES_PER_LINE == 0) {
            g_string_append_printf(out, "%s%s", i ? "\n" : "", word);
        }
        g_string_append_printf(out, " %s%" PRIx64, prefix, r->first);
        if (r->npages > 1) {
            g_string_append_printf(out, "-%" PRIx64, r->first + r->npages - 1);
        }
    }
    if (runs->len) {
        g_string_append_c(out, '\n');
    }
}

/* bitmap_trace_block_runs() of QEMU, on the decoded block */
static void block_runs(BinBlock *b, const unsigned long *bits,
                       GArray *runs, GArray *unmapped_runs)
{
    g_autofree unsigned long *mapped = bitmap_new(b->used_pages);
    uint64_t p;

    for (guint s = 0; s < b->segs->len; s++) {
        BinSeg *seg = &g_array_index(b->segs, BinSeg, s);
        uint64_t end = MIN(seg->page + seg->npages, b->used_pages);

        if (seg->page < end) {
            bitmap_set(mapped, seg->page, end - seg->page);
        }
        for (p = find_next_bit(bits, end, seg->page); p < end;
             p = find_next_bit(bits, end, p)) {
            uint64_t q = find_next_zero_bit(bits, end, p);

            add_run(runs, seg->pfn + (p - seg->page), q - p);
            p = q;
        }
    }
    for (p = find_first_bit(bits, b->used_pages); p < b->used_pages;
         p = find_next_bit(bits, b->used_pages, p + 1)) {
        uint64_t q = p;

        if (test_bit(p, mapped)) {
            continue;
        }
        while (q < b->used_pages && test_bit(q, bits) && !test_bit(q, mapped)) {
            q++;
        }
        add_run(unmapped_runs, p, q - p);
        p = q - 1;
    }
}

static GArray *merge_runs(GArray *runs)
{
    GArray *merged = g_array_new(false, false, sizeof(BTLogRange));

    g_array_sort(runs, run_cmp);
    for (guint i = 0; i < runs->len; i++) {
        BTLogRange *r = &g_array_index(runs, BTLogRange, i);
        BTLogRange *last = merged->len ?
            &g_array_index(merged, BTLogRange, merged->len - 1) : NULL;

        if (last && last->first + last->npages == r->first) {
            last->npages += r->npages;
        } else {
            g_array_append_val(merged, *r);
        }
    }
    return merged;
}

static void bin_iter(BinReader *r, GPtrArray *blocks, GString *out,
                     uint64_t version)
{
    g_autoptr(GArray) runs = g_array_new(false, false, sizeof(BTLogRange));
    g_autoptr(GArray) zero_runs = g_array_new(false, false,
                                              sizeof(BTLogRange));
    g_autoptr(GArray) merged = NULL;
    g_autoptr(GArray) zero_merged = NULL;
    g_autoptr(GString) unmapped_lines = g_string_new(NULL);
    g_autoptr(GString) unmapped_zero_lines = g_string_new(NULL);
    uint64_t n, t_us, dirty, unmapped, zero, sync_us, harvest_us, zero_us;
    uint64_t nentries, nvcpus;
    g_autoptr(GString) vcpus = g_string_new("vcpus run-us=");
    int64_t last = -1;

    n = bin_varint(r);
    t_us = bin_varint(r);
    dirty = bin_varint(r);
    unmapped = bin_varint(r);
    zero = bin_varint(r);
    sync_us = bin_varint(r);
    harvest_us = bin_varint(r);
    zero_us = bin_varint(r);
    if (version >= 4) {
        nvcpus = bin_varint(r);
        for (uint64_t v = 0; v < nvcpus; v++) {
            g_string_append_printf(vcpus, "%s%" PRIu64, v ? "," : "",
                                   bin_varint(r));
        }
    }
    nentries = bin_varint(r);
    for (uint64_t e = 0; e < nentries; e++) {
        uint64_t i = bin_varint(r), flags, ndirty, rank = 0, p;
        g_autofree unsigned long *bits = NULL;
        g_autofree unsigned long *zbits = NULL;
        g_autofree unsigned long *ranks = NULL;
        g_autoptr(GArray) urun = g_array_new(false, false, sizeof(BTLogRange));
        g_autoptr(GArray) uzero = g_array_new(false, false,
                                              sizeof(BTLogRange));
        g_autofree char *prefix = NULL;
        BinBlock *b;

        /* blocks in ascending order, each once */
        g_assert_cmpint((int64_t)i, >, last);
        g_assert_cmpuint(i, <, blocks->len);
        last = i;
        b = g_ptr_array_index(blocks, i);
        flags = bin_varint(r);
        g_assert_cmpuint(flags & ~3ULL, ==, 0);
        if (flags & 1) {
            b->used_pages = bin_varint(r);
        }
        if (flags & 2) {
            bin_segs(r, b->segs);
        }
        bits = bitmap_new(b->used_pages);
        zbits = bitmap_new(b->used_pages);
        bin_set(r, bits, b->used_pages);
        ndirty = bitmap_count_one(bits, b->used_pages);
        /* an entry for a changed map or size may have no dirty page */
        ranks = bitmap_new(MAX(ndirty, 1));
        bin_set(r, ranks, ndirty);
        for (p = find_first_bit(bits, b->used_pages); p < b->used_pages;
             p = find_next_bit(bits, b->used_pages, p + 1)) {
            if (test_bit(rank, ranks)) {
                set_bit(p, zbits);
            }
            rank++;
        }
        block_runs(b, bits, runs, urun);
        block_runs(b, zbits, zero_runs, uzero);
        prefix = g_strdup_printf("%s:", b->name);
        put_ranges(unmapped_lines, "unmapped", prefix, urun);
        put_ranges(unmapped_zero_lines, "unmapped-zero", prefix, uzero);
    }
    g_assert(r->p == r->end);
    merged = merge_runs(runs);
    zero_merged = merge_runs(zero_runs);

    g_string_append_printf(out, "iter n=%" PRIu64 " t-ms=%" PRIu64 ".%03d"
                           " dirty=%" PRIu64 " unmapped=%" PRIu64
                           " zero=%" PRIu64 " sync-us=%" PRIu64
                           " harvest-us=%" PRIu64 " zero-us=%" PRIu64 "\n",
                           n, t_us / 1000, (int)(t_us % 1000), dirty,
                           unmapped, zero, sync_us, harvest_us, zero_us);
    if (version >= 4) {
        g_string_append_printf(out, "%s\n", vcpus->str);
    }
    put_ranges(out, "pfns", "", merged);
    g_string_append(out, unmapped_lines->str);
    put_ranges(out, "zero", "", zero_merged);
    g_string_append(out, unmapped_zero_lines->str);
}

static void bin_block_free(gpointer p)
{
    BinBlock *b = p;

    g_free(b->name);
    g_array_free(b->segs, true);
    g_free(b);
}

char *bt_log_binary_to_text(const void *data, size_t len)
{
    g_autoptr(GPtrArray) blocks = g_ptr_array_new_with_free_func(
        bin_block_free);
    GString *out = g_string_new(NULL);
    BinReader file = { .p = data, .end = (const uint8_t *)data + len };
    bool header = false;
    uint64_t version = 0;

    g_assert_cmpuint(len, >=, BIN_MAGIC_LEN);
    g_assert(!memcmp(data, BIN_MAGIC, BIN_MAGIC_LEN));
    file.p += BIN_MAGIC_LEN;
    while (file.p < file.end) {
        uint8_t type = *file.p++;
        uint64_t rlen = bin_varint(&file);
        BinReader r = { .p = file.p, .end = file.p + rlen };

        /* a record is written whole or not at all */
        g_assert_cmpuint(rlen, <=, file.end - file.p);
        file.p += rlen;
        g_assert(header || type == 'H');
        if (type == 'H') {
            g_autofree char *qemu = NULL, *accel = NULL, *start = NULL;
            g_autofree char *blocked = NULL;
            uint64_t page_size, period, iterations, nblocks;

            g_assert_false(header);
            header = true;
            version = bin_varint(&r);
            g_assert(version == 3 || version == 4);
            qemu = bin_str(&r);
            accel = bin_str(&r);
            page_size = bin_varint(&r);
            period = bin_varint(&r);
            iterations = bin_varint(&r);
            start = bin_str(&r);
            blocked = bin_str(&r);
            g_string_append_printf(out, "bitmap-trace v%d\nmeta qemu=%s "
                                   "accel=%s page-size=%" PRIu64
                                   " period-ms=%" PRIu64 " iterations=%"
                                   PRIu64 " start=%s\n",
                                   (int)version - 1, qemu, accel,
                                   page_size, period, iterations, start);
            if (*blocked) {
                g_auto(GStrv) reasons = g_strsplit(blocked, "\n", -1);

                /* one reason per line */
                for (int i = 0; reasons[i]; i++) {
                    g_assert(reasons[i][0]);
                    g_string_append_printf(out, "blocked reason=%s\n",
                                           reasons[i]);
                }
            }
            nblocks = bin_varint(&r);
            for (uint64_t i = 0; i < nblocks; i++) {
                BinBlock *b = g_new0(BinBlock, 1);

                b->name = bin_str(&r);
                b->used_pages = bin_varint(&r);
                b->segs = g_array_new(false, false, sizeof(BinSeg));
                bin_segs(&r, b->segs);
                g_ptr_array_add(blocks, b);
                g_string_append_printf(out, "block name=%s pages=%" PRIu64
                                       " map=", b->name, b->used_pages);
                for (guint s = 0; s < b->segs->len; s++) {
                    BinSeg *seg = &g_array_index(b->segs, BinSeg, s);

                    g_string_append_printf(out, "%s%" PRIx64 "+%" PRIu64,
                                           s ? "," : "", seg->pfn,
                                           seg->npages);
                }
                g_string_append_c(out, '\n');
            }
            g_assert(r.p == r.end);
        } else if (type == 'I') {
            bin_iter(&r, blocks, out, version);
        } else if (type == 'A') {
            BinBlock *b = g_new0(BinBlock, 1);
            uint64_t zero;

            b->name = bin_str(&r);
            b->used_pages = bin_varint(&r);
            zero = bin_varint(&r);
            b->segs = g_array_new(false, false, sizeof(BinSeg));
            bin_segs(&r, b->segs);
            g_assert(r.p == r.end);
            g_ptr_array_add(blocks, b);
            g_string_append_printf(out, "added name=%s pages=%" PRIu64
                                   " zero=%" PRIu64 " map=", b->name,
                                   b->used_pages, zero);
            for (guint s = 0; s < b->segs->len; s++) {
                BinSeg *seg = &g_array_index(b->segs, BinSeg, s);

                g_string_append_printf(out, "%s%" PRIx64 "+%" PRIu64,
                                       s ? "," : "", seg->pfn, seg->npages);
            }
            g_string_append_c(out, '\n');
        } else if (type == 'R') {
            uint64_t i = bin_varint(&r);

            g_assert(r.p == r.end);
            g_assert_cmpuint(i, <, blocks->len);
            g_string_append_printf(out, "removed name=%s\n",
                                   ((BinBlock *)blocks->pdata[i])->name);
        } else if (type == 'B') {
            g_autofree char *reason = bin_str(&r);

            g_assert(r.p == r.end);
            g_string_append_printf(out, "blocked reason=%s\n", reason);
        } else if (type == 'U') {
            g_autofree char *name = bin_str(&r);
            uint64_t pages = bin_varint(&r);

            g_assert(r.p == r.end);
            g_string_append_printf(out, "untraced name=%s pages=%" PRIu64
                                   "\n", name, pages);
        } else {
            g_autofree char *status = NULL;
            g_autofree char *error = NULL;
            uint64_t iterations;

            g_assert_cmpint(type, ==, 'E');
            status = bin_str(&r);
            iterations = bin_varint(&r);
            error = r.p < r.end ? bin_str(&r) : NULL;
            g_assert(r.p == r.end);
            g_string_append_printf(out, "end status=%s iterations=%" PRIu64
                                   "%s%s\n", status, iterations,
                                   error ? " error=" : "",
                                   error ? error : "");
        }
    }
    return g_string_free(out, false);
}

BTLog *bt_log_parse(const char *path, bool need_end)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = NULL;
    BTLog *log = g_new0(BTLog, 1);
    BTLogIter *cur = NULL;
    gsize len;
    int i;

    log->blocks = g_ptr_array_new_with_free_func(block_free);
    log->blocked = g_ptr_array_new_with_free_func(g_free);
    log->iters = g_ptr_array_new_with_free_func(iter_free);

    g_assert_true(g_file_get_contents(path, &text, &len, &err));
    if (len >= BIN_MAGIC_LEN && !memcmp(text, BIN_MAGIC, BIN_MAGIC_LEN)) {
        char *bin = text;

        text = bt_log_binary_to_text(bin, len);
        g_free(bin);
        log->binary = true;
    }
    /* Every record, the last one included, ends with a newline. */
    g_assert(text[0] == '\0' || g_str_has_suffix(text, "\n"));
    lines = g_strsplit(text, "\n", -1);

    if (!strcmp(lines[0], "bitmap-trace v1")) {
        log->version = 1;
    } else if (!strcmp(lines[0], "bitmap-trace v2")) {
        log->version = 2;
    } else {
        g_assert_cmpstr(lines[0], ==, "bitmap-trace v3");
        log->version = 3;
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
            /* at the start, before the blocks, or found by an iteration */
            const char *reason = l + strlen("blocked reason=");

            g_assert(*reason);
            if (cur) {
                g_ptr_array_add(cur->blocked, g_strdup(reason));
            } else {
                g_assert_cmpuint(log->blocks->len, ==, 0);
                g_ptr_array_add(log->blocked, g_strdup(reason));
            }
        } else if (g_str_has_prefix(l, "block ")) {
            g_assert_null(cur);
            g_assert_cmpuint(log->iters->len, ==, 0);
            parse_block(log, l, NULL);
        } else if (g_str_has_prefix(l, "added ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->removed->len, ==, 0);
            g_assert_cmpuint(cur->blocked->len, ==, 0);
            parse_block(log, l, cur);
        } else if (g_str_has_prefix(l, "removed ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->blocked->len, ==, 0);
            parse_removed(log, cur, l);
        } else if (g_str_has_prefix(l, "iter ")) {
            finish_iter(cur);
            cur = parse_iter(l, log->iters->len, log->version);
            g_ptr_array_add(log->iters, cur);
            if (log->version >= 3) {
                /* v3: the vCPUs' run times, right after the iter line */
                g_assert_nonnull(lines[i + 1]);
                parse_vcpus(cur, lines[++i]);
            }
        } else if (g_str_has_prefix(l, "pfns ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->unmapped_pages->len, ==, 0);
            g_assert_cmpuint(cur->zero_pfns->len, ==, 0);
            g_assert_false(changes_listed(cur));
            parse_pfns(cur->pfns, "pfns", l);
        } else if (g_str_has_prefix(l, "unmapped ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->zero_pfns->len, ==, 0);
            g_assert_false(changes_listed(cur));
            parse_unmapped(cur->unmapped_pages, "unmapped", l);
        } else if (log->version >= 2 && g_str_has_prefix(l, "zero ")) {
            g_assert_nonnull(cur);
            g_assert_cmpuint(cur->unmapped_zero->len, ==, 0);
            g_assert_false(changes_listed(cur));
            parse_pfns(cur->zero_pfns, "zero", l);
        } else if (log->version >= 2 &&
                   g_str_has_prefix(l, "unmapped-zero ")) {
            g_assert_nonnull(cur);
            g_assert_false(changes_listed(cur));
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
    g_ptr_array_free(log->blocked, true);
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

/* An empty GArray's data may be NULL, which bsearch may not get */
static bool has_u64(const GArray *a, uint64_t v)
{
    return a->len &&
           bsearch(&v, a->data, a->len, sizeof(uint64_t), cmp_u64) != NULL;
}

bool bt_log_iter_has_pfn(const BTLogIter *it, uint64_t pfn)
{
    return has_u64(it->pfns, pfn);
}

bool bt_log_iter_has_zero_pfn(const BTLogIter *it, uint64_t pfn)
{
    return has_u64(it->zero_pfns, pfn);
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
    for (guint i = log->blocks->len; i-- > 0;) {
        BTLogBlock *b = g_ptr_array_index(log->blocks, i);

        if (!strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}
