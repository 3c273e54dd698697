/*
 * bitmap-trace log (format v1) parser for qtests
 *
 * The parser is strict: every line must match the format documented in
 * docs/devel/migration/bitmap-trace.rst, and a malformed log fails the test.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#ifndef BITMAP_TRACE_LOG_H
#define BITMAP_TRACE_LOG_H

typedef struct BTLogRange {
    uint64_t first;
    uint64_t npages;
} BTLogRange;

typedef struct BTLogBlock {
    char *name;
    uint64_t pages;
    GArray *map;            /* BTLogRange: GPA ranges as first PFN + pages */
} BTLogBlock;

typedef struct BTLogIter {
    int64_t n;
    double t_ms;
    uint64_t dirty;
    uint64_t unmapped;
    int64_t sync_us;
    int64_t harvest_us;
    GArray *pfns;           /* uint64_t, ascending, every page expanded */
    GPtrArray *unmapped_pages; /* "block:hexpage" strings, expanded */
    GPtrArray *untraced;    /* names of RAM blocks found not traced */
} BTLogIter;

typedef struct BTLog {
    char *qemu_version;
    char *accel;
    int64_t page_size;
    int64_t period_ms;
    int64_t iterations;
    char *start;
    char *blocked;          /* why migration was blocked, or NULL */
    GPtrArray *blocks;      /* BTLogBlock * */
    GPtrArray *iters;       /* BTLogIter *, n == index */
    bool has_end;
    char *end_status;
    int64_t end_iterations;
    char *end_error;        /* NULL when absent */
} BTLog;

/*
 * Parse the log at @path.  Asserts that it is well formed: the header,
 * block lines, iterations numbered from 0 without gaps, PFN ranges ascending
 * and disjoint, dirty == listed pages, unmapped == listed unmapped pages.
 * When @need_end is true the log must end with an "end" line.
 */
BTLog *bt_log_parse(const char *path, bool need_end);
void bt_log_free(BTLog *log);

/* Does iteration @it list guest page frame number @pfn? */
bool bt_log_iter_has_pfn(const BTLogIter *it, uint64_t pfn);

/* Does iteration @it list page @page (hex index) of block @block unmapped? */
bool bt_log_iter_has_unmapped(const BTLogIter *it, const char *block,
                              uint64_t page);

/* Find a block by name, or NULL. */
const BTLogBlock *bt_log_find_block(const BTLog *log, const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BTLog, bt_log_free)

#endif
