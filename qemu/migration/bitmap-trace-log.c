/*
 * bitmap-trace: the log
 *
 * The text writer, the binary writer (docs/devel/migration/bitmap-trace.rst
 * gives both formats) and the sink they write to.  Everything here runs in
 * the trace thread without the BQL, reading only the tracer's own snapshot
 * of the last round, except bitmap_trace_open(), which the QMP handler
 * calls with the BQL held.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qapi/error.h"
#include "bitmap-trace-int.h"
#include "exec/target_page.h"
#include "trace.h"

/*
 * How long a log that is not a regular file (a FIFO, a socket) may take no
 * data before the trace fails, and how much longer once it is stopped
 */
#define BITMAP_TRACE_STALL_MS           2000
#define BITMAP_TRACE_STALL_STOP_MS      500

/* Ranges per "pfns"/"unmapped" line, to keep lines readable */
#define BITMAP_TRACE_RANGES_PER_LINE    256

/*
 * Binary log (format version 4): the magic, then self-delimiting records,
 * each a type byte, its payload's length as a varint and the payload.
 */
#define BITMAP_TRACE_BIN_MAGIC          "\x89" "BTR\r\n\x1a\n"
#define BITMAP_TRACE_BIN_MAGIC_LEN      8
#define BITMAP_TRACE_BIN_VERSION        4
#define BITMAP_TRACE_BIN_HEADER         'H'
#define BITMAP_TRACE_BIN_ITER           'I'
#define BITMAP_TRACE_BIN_END            'E'
#define BITMAP_TRACE_BIN_ADDED          'A'
#define BITMAP_TRACE_BIN_REMOVED        'R'
#define BITMAP_TRACE_BIN_BLOCKED        'B'
/* A block entry of an iteration record: what precedes its page sets */
#define BITMAP_TRACE_BIN_USED           1   /* its used pages changed */
#define BITMAP_TRACE_BIN_MAP            2   /* its memory map changed */
/* A page set is encoded as one of */
#define BITMAP_TRACE_BIN_RUNS           0
#define BITMAP_TRACE_BIN_BITMAP         1

typedef struct BitmapTraceRun {
    uint64_t first;
    uint64_t npages;
} BitmapTraceRun;

/* The text log */

/* A block's map as "first-pfn+pages" ranges separated by commas */
static void bitmap_trace_format_map(GString *out, const GArray *segs)
{
    for (guint s = 0; s < segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(segs, BitmapTraceSegment, s);

        g_string_append_printf(out, "%s%" PRIx64 "+%" PRIu64,
                               s ? "," : "", seg->pfn, seg->npages);
    }
}

static void bitmap_trace_format_header(BitmapTrace *bt, GString *out)
{
    g_string_append_printf(out, "bitmap-trace v3\n"
                           "meta qemu=%s accel=%s page-size=%d"
                           " period-ms=%" PRId64 " iterations=%" PRId64
                           " start=%s\n",
                           QEMU_VERSION, bt->accel, (int)TARGET_PAGE_SIZE,
                           bt->period_ms, bt->iterations, bt->start_time);
    for (guint i = 0; i < bt->blocked->len; i++) {
        g_string_append_printf(out, "blocked reason=%s\n",
                               (char *)g_ptr_array_index(bt->blocked, i));
    }
    bt->blocked_logged = bt->blocked->len;
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        g_string_append_printf(out, "block name=%s pages=%" PRIu64 " map=",
                               b->idstr, b->pages);
        bitmap_trace_format_map(out, b->segs);
        g_string_append_c(out, '\n');
    }
}

static gint bitmap_trace_run_cmp(gconstpointer a, gconstpointer b)
{
    const BitmapTraceRun *x = a, *y = b;

    return x->first < y->first ? -1 : x->first > y->first;
}

static void bitmap_trace_add_run(GArray *runs, uint64_t first, uint64_t n)
{
    BitmapTraceRun run = { .first = first, .npages = n };

    g_array_append_val(runs, run);
}

/* Append "word r r r..." lines, BITMAP_TRACE_RANGES_PER_LINE at a time */
static void bitmap_trace_put_ranges(GString *out, const char *word,
                                    const char *prefix, GArray *runs)
{
    for (guint i = 0; i < runs->len; i++) {
        BitmapTraceRun *r = &g_array_index(runs, BitmapTraceRun, i);

        if (i % BITMAP_TRACE_RANGES_PER_LINE == 0) {
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

/*
 * Append the pages set in @bits (a subset of the block's harvested pages)
 * to @runs as PFN runs, through the block's memory map, and, if @unmapped
 * (some of them have no GPA), those with no GPA to @unmapped_runs as runs
 * of block pages.
 */
static void bitmap_trace_block_runs(BitmapTraceBlock *b,
                                    const unsigned long *bits,
                                    GArray *runs, GArray *unmapped_runs,
                                    bool unmapped)
{
    uint64_t p;

    for (guint s = 0; s < b->segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(b->segs,
                                                 BitmapTraceSegment, s);
        uint64_t end = MIN(seg->page + seg->npages, b->used_pages);

        for (p = find_next_bit(bits, end, seg->page); p < end;
             p = find_next_bit(bits, end, p)) {
            uint64_t q = find_next_zero_bit(bits, end, p);

            bitmap_trace_add_run(runs, seg->pfn + (p - seg->page), q - p);
            p = q;
        }
    }
    if (!unmapped) {
        return;
    }

    bitmap_andnot(b->scratch, bits, b->mapped, b->used_pages);
    for (p = find_first_bit(b->scratch, b->used_pages); p < b->used_pages;
         p = find_next_bit(b->scratch, b->used_pages, p)) {
        uint64_t q = find_next_zero_bit(b->scratch, b->used_pages, p);

        bitmap_trace_add_run(unmapped_runs, p, q - p);
        p = q;
    }
}

/* Segments of several blocks interleave in GPA order: sort and merge */
static GArray *bitmap_trace_merge_runs(GArray *runs)
{
    GArray *merged = g_array_new(false, false, sizeof(BitmapTraceRun));

    g_array_sort(runs, bitmap_trace_run_cmp);
    for (guint i = 0; i < runs->len; i++) {
        BitmapTraceRun *r = &g_array_index(runs, BitmapTraceRun, i);
        BitmapTraceRun *last = merged->len ?
            &g_array_index(merged, BitmapTraceRun, merged->len - 1) : NULL;

        if (last && last->first + last->npages == r->first) {
            last->npages += r->npages;
        } else {
            g_array_append_val(merged, *r);
        }
    }
    return merged;
}

/*
 * Translate the harvested pages to PFNs and append iteration @n, @r, to
 * @out, with the counts @c of bitmap_trace_count().
 */
static void bitmap_trace_format_iteration(BitmapTrace *bt, int64_t n,
                                          const BitmapTraceRound *r,
                                          const BitmapTraceCounts *c,
                                          GString *out)
{
    g_autoptr(GArray) runs = g_array_new(false, false, sizeof(BitmapTraceRun));
    g_autoptr(GArray) zero_runs = g_array_new(false, false,
                                              sizeof(BitmapTraceRun));
    g_autoptr(GArray) merged = NULL;
    g_autoptr(GArray) zero_merged = NULL;
    g_autoptr(GString) unmapped_lines = g_string_new(NULL);
    g_autoptr(GString) unmapped_zero_lines = g_string_new(NULL);
    int64_t t_us = (r->t_ns - bt->t0_ns) / SCALE_US;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        g_autoptr(GArray) urun = NULL;
        g_autoptr(GArray) uzero = NULL;
        g_autofree char *prefix = NULL;

        if (b->gone || b->arrived || !b->counts.dirty) {
            continue;
        }

        urun = g_array_new(false, false, sizeof(BitmapTraceRun));
        uzero = g_array_new(false, false, sizeof(BitmapTraceRun));
        bitmap_trace_block_runs(b, b->dirty, runs, urun, b->counts.unmapped);
        if (b->counts.zero) {
            bitmap_trace_block_runs(b, b->zero, zero_runs, uzero,
                                    b->counts.unmapped);
        }
        prefix = g_strdup_printf("%s:", b->idstr);
        bitmap_trace_put_ranges(unmapped_lines, "unmapped", prefix, urun);
        bitmap_trace_put_ranges(unmapped_zero_lines, "unmapped-zero", prefix,
                                uzero);
    }
    merged = bitmap_trace_merge_runs(runs);
    zero_merged = bitmap_trace_merge_runs(zero_runs);

    g_string_append_printf(out, "iter n=%" PRId64 " t-ms=%" PRId64 ".%03d"
                           " dirty=%" PRIu64 " unmapped=%" PRIu64
                           " zero=%" PRIu64 " sync-us=%" PRId64
                           " harvest-us=%" PRId64 " zero-us=%" PRId64 "\n",
                           n, t_us / 1000, (int)(t_us % 1000), c->dirty,
                           c->unmapped, c->zero, r->sync_us, r->harvest_us,
                           r->zero_us);
    g_string_append(out, "vcpus run-us=");
    for (guint i = 0; r->vcpu_us && i < r->vcpu_us->len; i++) {
        g_string_append_printf(out, "%s%" PRId64, i ? "," : "",
                               g_array_index(r->vcpu_us, int64_t, i));
    }
    g_string_append_c(out, '\n');
    bitmap_trace_put_ranges(out, "pfns", "", merged);
    g_string_append(out, unmapped_lines->str);
    bitmap_trace_put_ranges(out, "zero", "", zero_merged);
    g_string_append(out, unmapped_zero_lines->str);
}

/* The binary log */

static void bitmap_trace_put_varint(GString *out, uint64_t v)
{
    while (v >= 0x80) {
        g_string_append_c(out, (char)(v | 0x80));
        v >>= 7;
    }
    g_string_append_c(out, (char)v);
}

static void bitmap_trace_put_str(GString *out, const char *str)
{
    size_t len = strlen(str);

    bitmap_trace_put_varint(out, len);
    g_string_append_len(out, str, len);
}

/* Append a record: its type, the length of @payload, @payload */
static void bitmap_trace_put_record(GString *out, char type,
                                    const GString *payload)
{
    g_string_append_c(out, type);
    bitmap_trace_put_varint(out, payload->len);
    g_string_append_len(out, payload->str, payload->len);
}

static void bitmap_trace_put_segs(GString *out, const GArray *segs)
{
    bitmap_trace_put_varint(out, segs->len);
    for (guint s = 0; s < segs->len; s++) {
        BitmapTraceSegment *seg = &g_array_index(segs, BitmapTraceSegment, s);

        bitmap_trace_put_varint(out, seg->page);
        bitmap_trace_put_varint(out, seg->npages);
        bitmap_trace_put_varint(out, seg->pfn);
    }
}

/*
 * Append the set of pages [0, @npages) of @bits, @count of them, as the
 * cheaper of its runs and its bitmap: an encoding byte, the length of the
 * encoded set and the set.  Runs are varints: for each run, its distance
 * from the end of the run before it (the page after it: the runs are not
 * adjacent), shifted left by one, with bit 0 set when the run is longer
 * than a page; then, if so, its length less two.  The bitmap is
 * little-endian, page p at bit p % 8 of byte p / 8, cut after the byte of
 * the last page in the set.  @tmp is scratch space.
 */
static void bitmap_trace_put_set(GString *out, const unsigned long *bits,
                                 uint64_t npages, uint64_t count,
                                 GString *tmp)
{
    uint64_t bitmap_len, pos = 0, p, q;

    g_string_truncate(tmp, 0);
    if (!count) {
        g_string_append_c(out, BITMAP_TRACE_BIN_RUNS);
        bitmap_trace_put_varint(out, 0);
        return;
    }
    bitmap_len = find_last_bit(bits, npages) / BITS_PER_BYTE + 1;
    for (p = find_first_bit(bits, npages);
         p < npages && tmp->len <= bitmap_len;
         p = find_next_bit(bits, npages, q + 1)) {
        q = find_next_zero_bit(bits, npages, p);
        bitmap_trace_put_varint(tmp, (p - pos) << 1 | (q - p > 1));
        if (q - p > 1) {
            bitmap_trace_put_varint(tmp, q - p - 2);
        }
        pos = q + 1;
        if (q >= npages) {
            break;
        }
    }
    if (tmp->len <= bitmap_len) {
        g_string_append_c(out, BITMAP_TRACE_BIN_RUNS);
        bitmap_trace_put_varint(out, tmp->len);
        g_string_append_len(out, tmp->str, tmp->len);
        return;
    }
    g_string_append_c(out, BITMAP_TRACE_BIN_BITMAP);
    bitmap_trace_put_varint(out, bitmap_len);
    if (HOST_BIG_ENDIAN) {
        for (uint64_t i = 0; i < bitmap_len; i++) {
            g_string_append_c(out, (char)(bits[i / sizeof(long)] >>
                                          (i % sizeof(long) * BITS_PER_BYTE)));
        }
    } else {
        g_string_append_len(out, (const char *)bits, bitmap_len);
    }
}

/* The binary log now gives @b's map and its @used_pages */
static void bitmap_trace_logged(BitmapTraceBlock *b, uint64_t used_pages)
{
    g_array_set_size(b->logged_segs, 0);
    g_array_append_vals(b->logged_segs, b->segs->data, b->segs->len);
    b->logged_used_pages = used_pages;
}

static void bitmap_trace_encode_header(BitmapTrace *bt, GString *out)
{
    GString *rec = bt->rec;

    g_string_truncate(rec, 0);
    bitmap_trace_put_varint(rec, BITMAP_TRACE_BIN_VERSION);
    bitmap_trace_put_str(rec, QEMU_VERSION);
    bitmap_trace_put_str(rec, bt->accel);
    bitmap_trace_put_varint(rec, TARGET_PAGE_SIZE);
    bitmap_trace_put_varint(rec, bt->period_ms);
    bitmap_trace_put_varint(rec, bt->iterations);
    bitmap_trace_put_str(rec, bt->start_time);
    /*
     * The reasons, one per line.  @enc is scratch space that still holds
     * the last page set the previous trace encoded: empty it first.
     */
    g_string_truncate(bt->enc, 0);
    for (guint i = 0; i < bt->blocked->len; i++) {
        g_string_append_printf(bt->enc, "%s%s", i ? "\n" : "",
                               (char *)g_ptr_array_index(bt->blocked, i));
    }
    bitmap_trace_put_str(rec, bt->enc->str);
    g_string_truncate(bt->enc, 0);
    bt->blocked_logged = bt->blocked->len;
    bitmap_trace_put_varint(rec, bt->nblocks);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        bitmap_trace_put_str(rec, b->idstr);
        bitmap_trace_put_varint(rec, b->pages);
        bitmap_trace_put_segs(rec, b->segs);
        bitmap_trace_logged(b, b->pages);
    }
    g_string_append_len(out, BITMAP_TRACE_BIN_MAGIC,
                        BITMAP_TRACE_BIN_MAGIC_LEN);
    bitmap_trace_put_record(out, BITMAP_TRACE_BIN_HEADER, rec);
}

/*
 * The zero pages of @b's @ndirty dirty pages, as a set of ranks among
 * them, in @b->scratch.  A word at a time: a word with no zero page only
 * moves the rank on, and one of which every page is dirty (the baseline)
 * gives its zero bits as they are, so that the baseline of a big guest
 * costs O(words), not O(pages).
 */
static void bitmap_trace_zero_ranks(BitmapTraceBlock *b, uint64_t ndirty)
{
    unsigned long nwords = BITS_TO_LONGS(b->used_pages);
    uint64_t rank = 0;

    bitmap_zero(b->scratch, ndirty);
    for (unsigned long k = 0; k < nwords; k++) {
        unsigned long d = b->dirty[k];
        unsigned long z;

        if (k == nwords - 1 && b->used_pages % BITS_PER_LONG) {
            d &= BITMAP_LAST_WORD_MASK(b->used_pages);
        }
        z = b->zero[k] & d;
        if (z && d == ~0UL) {
            unsigned long w = BIT_WORD(rank);
            unsigned shift = rank % BITS_PER_LONG;

            b->scratch[w] |= z << shift;
            if (shift && z >> (BITS_PER_LONG - shift)) {
                b->scratch[w + 1] |= z >> (BITS_PER_LONG - shift);
            }
        } else {
            uint64_t r = rank;

            for (unsigned long m = d; z; m &= m - 1, r++) {
                unsigned long bit = m & -m;

                if (z & bit) {
                    set_bit(r, b->scratch);
                    z &= ~bit;
                }
            }
        }
        rank += ctpopl(d);
    }
}

/*
 * The binary twin of bitmap_trace_format_iteration(): the fields of the
 * iter line and the vcpus line, then an entry for each block that had
 * pages dirtied or whose map or size changed since the log last said: its
 * index, what changed and how it is now, its dirty pages, and which of
 * them (by their rank among the block's dirty pages) were zero.
 */
static void bitmap_trace_encode_iteration(BitmapTrace *bt, int64_t n,
                                          const BitmapTraceRound *r,
                                          const BitmapTraceCounts *c,
                                          GString *out)
{
    GString *rec = bt->rec;
    GString *entries = bt->ent;
    uint64_t nentries = 0;
    int64_t t_us = (r->t_ns - bt->t0_ns) / SCALE_US;

    g_string_truncate(entries, 0);
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];
        uint64_t flags = 0;

        if (b->gone || b->arrived) {
            continue;
        }
        if (b->used_pages != b->logged_used_pages) {
            flags |= BITMAP_TRACE_BIN_USED;
        }
        /* an empty GArray's data may be NULL, which memcmp may not get */
        if (b->segs->len != b->logged_segs->len ||
            (b->segs->len &&
             memcmp(b->segs->data, b->logged_segs->data,
                    b->segs->len * sizeof(BitmapTraceSegment)))) {
            flags |= BITMAP_TRACE_BIN_MAP;
        }
        if (!b->counts.dirty && !flags) {
            continue;
        }
        nentries++;
        bitmap_trace_put_varint(entries, i);
        bitmap_trace_put_varint(entries, flags);
        if (flags & BITMAP_TRACE_BIN_USED) {
            bitmap_trace_put_varint(entries, b->used_pages);
        }
        if (flags & BITMAP_TRACE_BIN_MAP) {
            bitmap_trace_put_segs(entries, b->segs);
        }
        if (flags) {
            bitmap_trace_logged(b, b->used_pages);
        }
        bitmap_trace_put_set(entries, b->dirty, b->used_pages,
                             b->counts.dirty, bt->enc);
        if (b->counts.zero) {
            bitmap_trace_zero_ranks(b, b->counts.dirty);
        }
        bitmap_trace_put_set(entries, b->scratch, b->counts.dirty,
                             b->counts.zero, bt->enc);
    }

    g_string_truncate(rec, 0);
    bitmap_trace_put_varint(rec, n);
    bitmap_trace_put_varint(rec, t_us);
    bitmap_trace_put_varint(rec, c->dirty);
    bitmap_trace_put_varint(rec, c->unmapped);
    bitmap_trace_put_varint(rec, c->zero);
    bitmap_trace_put_varint(rec, r->sync_us);
    bitmap_trace_put_varint(rec, r->harvest_us);
    bitmap_trace_put_varint(rec, r->zero_us);
    bitmap_trace_put_varint(rec, r->vcpu_us ? r->vcpu_us->len : 0);
    for (guint i = 0; r->vcpu_us && i < r->vcpu_us->len; i++) {
        bitmap_trace_put_varint(rec, g_array_index(r->vcpu_us, int64_t, i));
    }
    bitmap_trace_put_varint(rec, nentries);
    g_string_append_len(rec, entries->str, entries->len);
    bitmap_trace_put_record(out, BITMAP_TRACE_BIN_ITER, rec);
}

/* Either */

void bitmap_trace_put_header(BitmapTrace *bt, GString *out)
{
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        bitmap_trace_encode_header(bt, out);
    } else {
        bitmap_trace_format_header(bt, out);
    }
}

/*
 * After an iteration, what its sync found changed: the blocks that
 * arrived (their baseline: size, map and zero pages), those that went
 * away, and new migration blockers (of @bt->blocked, up to the first
 * @blocked: those found by the iteration's sync).
 */
static void bitmap_trace_put_changes(BitmapTrace *bt, GString *out,
                                     guint blocked)
{
    bool binary = bt->format == BITMAP_TRACE_FORMAT_BINARY;
    GString *rec = bt->rec;

    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        if (!b->arrived) {
            continue;
        }
        /* the sync that finds a block gone comes after this is logged */
        b->arrived = false;
        bitmap_trace_block_counts(b, false);
        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_str(rec, b->idstr);
            bitmap_trace_put_varint(rec, b->pages);
            bitmap_trace_put_varint(rec, b->counts.zero);
            bitmap_trace_put_segs(rec, b->segs);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_ADDED, rec);
            bitmap_trace_logged(b, b->pages);
        } else {
            g_string_append_printf(out, "added name=%s pages=%" PRIu64
                                   " zero=%" PRIu64 " map=", b->idstr,
                                   b->pages, b->counts.zero);
            bitmap_trace_format_map(out, b->segs);
            g_string_append_c(out, '\n');
        }
    }
    for (unsigned i = 0; i < bt->nblocks; i++) {
        BitmapTraceBlock *b = &bt->blocks[i];

        if (!b->removed) {
            continue;
        }
        b->removed = false;
        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_varint(rec, i);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_REMOVED, rec);
        } else {
            g_string_append_printf(out, "removed name=%s\n", b->idstr);
        }
    }
    for (; bt->blocked_logged < blocked; bt->blocked_logged++) {
        const char *reason = g_ptr_array_index(bt->blocked,
                                               bt->blocked_logged);

        if (binary) {
            g_string_truncate(rec, 0);
            bitmap_trace_put_str(rec, reason);
            bitmap_trace_put_record(out, BITMAP_TRACE_BIN_BLOCKED, rec);
        } else {
            g_string_append_printf(out, "blocked reason=%s\n", reason);
        }
    }
}

/*
 * Append iteration @n, @r, whose pages are in the blocks' @dirty and
 * @zero, and what its sync found changed; its counts go to @c.
 */
void bitmap_trace_put_iteration(BitmapTrace *bt, int64_t n,
                                const BitmapTraceRound *r, GString *out,
                                BitmapTraceCounts *c)
{
    bitmap_trace_count(bt, n, c);
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        bitmap_trace_encode_iteration(bt, n, r, c, out);
    } else {
        bitmap_trace_format_iteration(bt, n, r, c, out);
    }
    trace_bitmap_trace_iteration(n, c->dirty, c->unmapped, r->sync_us,
                                 r->harvest_us, r->late_ms);
    trace_bitmap_trace_zero_scan(n, c->zero, r->zero_us);
    bitmap_trace_put_changes(bt, out, r->blocked);
}

/* The end record; @error (for status failed) has no newline */
void bitmap_trace_put_end(BitmapTrace *bt, GString *out,
                          BitmapTraceStatus status, const char *error)
{
    if (bt->format == BITMAP_TRACE_FORMAT_BINARY) {
        GString *rec = bt->rec;

        g_string_truncate(rec, 0);
        bitmap_trace_put_str(rec, BitmapTraceStatus_str(status));
        bitmap_trace_put_varint(rec, bt->completed);
        if (error) {
            bitmap_trace_put_str(rec, error);
        }
        bitmap_trace_put_record(out, BITMAP_TRACE_BIN_END, rec);
        return;
    }
    g_string_append_printf(out, "end status=%s iterations=%" PRId64 "%s%s\n",
                           BitmapTraceStatus_str(status), bt->completed,
                           error ? " error=" : "", error ? error : "");
}

/* The sink */

/*
 * Create or truncate the log.  The open does not block, so that a FIFO
 * with no reader fails here instead of freezing the main loop, which runs
 * the QMP handler.  Anything but a regular file stays non-blocking and is
 * written as bitmap_trace_write_buf() says.  Called with the BQL held.
 */
int bitmap_trace_open(const char *filename, bool *seekable, Error **errp)
{
    Error *local_err = NULL;
    struct stat st;
    int fd;

    fd = qemu_create(filename, O_WRONLY | O_TRUNC | O_BINARY | O_NONBLOCK,
                     0600, &local_err);
    if (fd < 0) {
        if (errno == ENXIO && stat(filename, &st) == 0 &&
            S_ISFIFO(st.st_mode)) {
            error_free(local_err);
            error_setg(errp, "bitmap-trace log '%s' is a FIFO with no "
                       "reader: start the reader first", filename);
        } else {
            error_propagate(errp, local_err);
        }
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        error_setg_errno(errp, errno, "cannot stat bitmap-trace log '%s'",
                         filename);
        qemu_close(fd);
        return -1;
    }
    *seekable = S_ISREG(st.st_mode);
    return fd;
}

/*
 * Append @len bytes of @buf to the log.  A regular file is written with
 * pwrite() at the log's length, whatever the offset of the descriptor: one
 * dup'd from an fdset shares its offset with the fdset's own.  Anything
 * else (a FIFO, a socket) was opened non-blocking and is waited for with
 * poll(), but never for longer than BITMAP_TRACE_STALL_MS without taking
 * data, and for at most BITMAP_TRACE_STALL_STOP_MS more once the trace is
 * asked to stop, so that a reader that stopped reading cannot hold up
 * state=false or QEMU's exit.
 */
static bool bitmap_trace_write_buf(BitmapTrace *bt, const char *buf,
                                   size_t len, Error **errp)
{
    int64_t deadline = bitmap_trace_now_ns() +
                       BITMAP_TRACE_STALL_MS * SCALE_MS;
    bool stopping = false;
    size_t done = 0;

    while (done < len) {
        ssize_t n;

        if (bt->seekable) {
            n = pwrite(bt->fd, buf + done, len - done, bt->log_length + done);
        } else {
            n = write(bt->fd, buf + done, len - done);
        }
        if (n > 0) {
            done += n;
            deadline = bitmap_trace_now_ns() +
                       BITMAP_TRACE_STALL_MS * SCALE_MS;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = { .fd = bt->fd, .events = POLLOUT };
            int64_t left_ms;

            if (!stopping && qatomic_read(&bt->stop_requested)) {
                stopping = true;
                deadline = MIN(deadline, bitmap_trace_now_ns() +
                               BITMAP_TRACE_STALL_STOP_MS * SCALE_MS);
            }
            left_ms = DIV_ROUND_UP(deadline - bitmap_trace_now_ns(),
                                   SCALE_MS);
            if (left_ms <= 0) {
                error_setg(errp, "the reader of bitmap-trace log '%s' "
                           "stopped reading: it must read the log as it "
                           "is written, or log to a regular file",
                           bt->filename);
                return false;
            }
            /* wake up now and then to see whether the trace is stopped */
            if (poll(&pfd, 1, MIN(left_ms, 100)) < 0 && errno != EINTR) {
                error_setg_errno(errp, errno, "cannot write bitmap-trace "
                                 "log '%s'", bt->filename);
                return false;
            }
            continue;
        }
        error_setg_errno(errp, n < 0 ? errno : ENOSPC,
                         "cannot write bitmap-trace log '%s'", bt->filename);
        return false;
    }
    return true;
}

/*
 * Write complete records only.  On error, cut a regular file back to the
 * last complete record so that what was written stays a valid log.
 */
bool bitmap_trace_write(BitmapTrace *bt, GString *out, Error **errp)
{
    bool ok = bitmap_trace_write_buf(bt, out->str, out->len, errp);

    if (ok) {
        bt->log_length += out->len;
    } else if (bt->seekable && ftruncate(bt->fd, bt->log_length) < 0) {
        /* nothing more to do: the error above is what the user sees */
    }
    g_string_truncate(out, 0);
    return ok;
}
