/*
 * bitmap-trace log (text formats v1 to v3, binary v3 and v4) parser for qtests
 *
 * The parser is strict: every line must match the format documented in
 * docs/devel/migration/bitmap-trace.rst, and a malformed log fails the test.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BITMAP_TRACE_LOG_READER_H
#define BITMAP_TRACE_LOG_READER_H

typedef struct BTLogRange {
    uint64_t first;
    uint64_t npages;
} BTLogRange;

typedef struct BTLogBlock {
    char *name;
    uint64_t pages;
    GArray *map;            /* BTLogRange: GPA ranges as first PFN + pages */
    int64_t added;          /* the iteration that found it, -1: a "block" */
    uint64_t zero;          /* of an added block, its zero pages then */
    int64_t removed;        /* the iteration that found it gone, or -1 */
} BTLogBlock;

typedef struct BTLogIter {
    int64_t n;
    double t_ms;
    uint64_t dirty;
    uint64_t unmapped;
    uint64_t zero;          /* v2: how many dirty pages were all zero */
    int64_t sync_us;
    int64_t harvest_us;
    int64_t zero_us;        /* v2 */
    GArray *pfns;           /* uint64_t, ascending, every page expanded */
    GPtrArray *unmapped_pages; /* "block:hexpage" strings, expanded */
    GArray *zero_pfns;      /* v2: the zero pages of @pfns, ascending */
    GPtrArray *unmapped_zero; /* v2: the zero pages of @unmapped_pages */
    GPtrArray *untraced;    /* names of RAM blocks found not traced (old) */
    GPtrArray *added;       /* names of RAM blocks this sync found added */
    GPtrArray *removed;     /* names of RAM blocks this sync found gone */
    GPtrArray *blocked;     /* migration blockers this sync found new */
    /*
     * v3: int64_t per vCPU, by cpu_index: the microseconds its thread ran
     * in the window (from its start for the baseline); NULL before v3
     */
    GArray *vcpu_us;
} BTLogIter;

typedef struct BTLog {
    int version;            /* of the text: 1, 2 or 3 */
    /* a binary log (v3 or v4), read as its text (v2 or v3) */
    bool binary;
    char *qemu_version;
    char *accel;
    int64_t page_size;
    int64_t period_ms;
    int64_t iterations;
    char *start;
    GPtrArray *blocked;     /* char *: why migration was blocked at start */
    GPtrArray *blocks;      /* BTLogBlock *: at the start, then added ones */
    GPtrArray *iters;       /* BTLogIter *, n == index */
    bool has_end;
    char *end_status;
    int64_t end_iterations;
    char *end_error;        /* NULL when absent */
} BTLog;

/*
 * Parse the log at @path.  Asserts that it is well formed: the header,
 * block lines, iterations numbered from 0 without gaps, PFN ranges ascending
 * and disjoint, dirty == listed pages, unmapped == listed unmapped pages,
 * and in v2 zero pages a subset of the dirty ones, as many as zero=.
 * When @need_end is true the log must end with an "end" line.  A binary
 * log (format v3 or v4) is read as its text (v2 or v3).
 */
BTLog *bt_log_parse(const char *path, bool need_end);

/*
 * The text (format v2 or v3) of the binary log (v3 or v4) @data, as
 * QEMU would have written it.  Asserts that the binary log is well formed.
 */
char *bt_log_binary_to_text(const void *data, size_t len);
void bt_log_free(BTLog *log);

/* Does iteration @it list guest page frame number @pfn? */
bool bt_log_iter_has_pfn(const BTLogIter *it, uint64_t pfn);

/* Does iteration @it list guest page frame number @pfn as a zero page? */
bool bt_log_iter_has_zero_pfn(const BTLogIter *it, uint64_t pfn);

/* Does iteration @it list page @page (hex index) of block @block unmapped? */
bool bt_log_iter_has_unmapped(const BTLogIter *it, const char *block,
                              uint64_t page);

/* Find a block by name, or NULL (of several, the last one added). */
const BTLogBlock *bt_log_find_block(const BTLog *log, const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BTLog, bt_log_free)

#endif
