/*
 * bitmap-trace: what the tracer's three parts share
 *
 * bitmap-trace.c        the job: QMP and HMP, the trace thread, the
 *                       rounds queued while the baseline is scanned
 * bitmap-trace-round.c  one round: the traced blocks and their memory map,
 *                       parking the vCPUs, sync, harvest, re-arm, zero scan
 * bitmap-trace-log.c    the log: the text and binary writers, the sink
 *
 * Locking: the QMP handlers and a round's sync run with the BQL held; the
 * trace thread encodes and writes a round without it, reading only the
 * tracer's own snapshot; the results that query-bitmap-trace reads are
 * protected by BitmapTrace.lock.  Each function says which it needs.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_MIGRATION_BITMAP_TRACE_INT_H
#define QEMU_MIGRATION_BITMAP_TRACE_INT_H

#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qapi/qapi-types-migration.h"
#include "bitmap-trace-compat.h"   /* the memory API headers */

/* Pages [page, page + npages) of a block are seen at PFN pfn onwards */
typedef struct BitmapTraceSegment {
    uint64_t page;
    uint64_t npages;
    uint64_t pfn;
} BitmapTraceSegment;

/* What a round found, in a block or in all of them */
typedef struct BitmapTraceCounts {
    uint64_t dirty;             /* pages dirtied */
    uint64_t zero;              /* of those, the zero pages */
    uint64_t unmapped;          /* of those, the pages with no GPA */
    uint64_t fresh;             /* of those, dirtied for the first time */
} BitmapTraceCounts;

typedef struct BitmapTraceBlock {
    RAMBlock *rb;
    char *idstr;
    ram_addr_t offset;          /* ram_addr of page 0, 64-page aligned */
    uint64_t max_pages;         /* bitmaps cover a resize up to this */
    uint64_t pages;             /* used pages at start */
    uint64_t used_pages;        /* used pages at the last harvest */
    bool gone;                  /* the block was freed during the trace */
    /* added during the trace, found by the last sync: @dirty is its base */
    bool arrived;
    bool removed;               /* found gone by the last sync */
    unsigned long *dirty;       /* dirtied in the current iteration */
    unsigned long *seen;        /* dirtied in any measured iteration */
    unsigned long *mapped;      /* has a GPA, at the last harvest */
    unsigned long *zero;        /* of @dirty, all zero bytes when scanned */
    unsigned long *scratch;
    /*
     * Of a block with a RamDiscardManager (virtio-mem), the pages it had
     * populated (plugged) at the last sync, and scratch for a query of
     * them; NULL for any other block, all of whose pages are memory
     */
    unsigned long *plugged;
    unsigned long *plug_query;
    GArray *segs;               /* BitmapTraceSegment, in GPA order */
    BitmapTraceCounts counts;   /* of @dirty, by bitmap_trace_count() */
    /* binary log: the map and used pages its reader knows of */
    GArray *logged_segs;
    uint64_t logged_used_pages;
} BitmapTraceBlock;

/* A round taken: when, and what its sync and its zero scan measured */
typedef struct BitmapTraceRound {
    int64_t t_lock;             /* when it asked for the BQL */
    int64_t t_ns;               /* its sync, under the BQL */
    int64_t t_unlocked;         /* when it let the BQL go */
    int64_t sync_us;
    int64_t harvest_us;
    int64_t zero_us;
    int64_t late_ms;            /* how late it was */
    guint blocked;              /* of @blocked, how many it had found */
    /*
     * int64_t per vCPU present at its sync, by ascending cpu_index: the
     * microseconds of CPU time its thread used since the round before
     * (bitmap_trace_read_vcpus()); owned by the round
     */
    GArray *vcpu_us;
} BitmapTraceRound;

/* A vCPU's thread CPU time at the last round */
typedef struct BitmapTraceVcpu {
    void *cpu;                  /* the CPUState, only compared */
    QemuThread *thread;         /* the thread that runs it */
    int index;                  /* its cpu_index */
    int64_t ns;                 /* its thread's CPU time */
} BitmapTraceVcpu;

typedef struct BitmapTrace {
    /* Set up by the QMP handler, then owned by the trace thread */
    char *filename;
    int fd;
    BitmapTraceFormat format;
    bool seekable;              /* a regular file, written with pwrite() */
    int64_t iterations;
    int64_t period_ms;
    const char *accel;
    char *start_time;
    /* why migration is blocked (char *), at the start, then as it comes */
    GPtrArray *blocked;
    guint blocked_logged;       /* of @blocked, how many the log gives */
    int64_t t0_ns;
    BitmapTraceBlock *blocks;
    unsigned nblocks;
    GArray *vcpu_last;          /* BitmapTraceVcpu, at the last round */
    /* iteration 0, taken by the QMP handler, logged by the thread */
    BitmapTraceRound baseline;
    /* the trace's own migration blocker, kept from trace to trace */
    Error *blocker;
    /* Tells the BQL holder that the memory map changed since it was read */
    MemoryListener map_listener;
    bool map_stale;
    off_t log_length;           /* bytes of complete records written */
    GString *enc;               /* binary log: scratch for an encoding */
    GString *rec;               /* binary log: a record being built */
    GString *ent;               /* binary log: its block entries */

    QemuThread thread;
    bool thread_created;        /* created and not joined yet */
    QemuSemaphore wakeup;
    bool stop_requested;        /* atomic */

    /* How the thread ended, published by bitmap_trace_end() */
    bool end_pending;           /* atomic */
    BitmapTraceStatus end_status;
    char *end_error;

    /* Results, read by query-bitmap-trace; protected by @lock */
    QemuMutex lock;
    BitmapTraceStatus status;
    int64_t completed;
    int64_t elapsed_ms;
    uint64_t distinct;
    GArray *dirty_pages;        /* uint64_t per iteration, 0 first */
    char *error;
} BitmapTrace;

static inline int64_t bitmap_trace_now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

/* bitmap-trace-round.c */
void bitmap_trace_init_blocks(BitmapTrace *bt);
void bitmap_trace_free_blocks(BitmapTrace *bt);
void bitmap_trace_watch_map(BitmapTrace *bt);
bool bitmap_trace_sync(BitmapTrace *bt, bool main_loop, bool if_unchanged,
                       BitmapTraceRound *r);
void bitmap_trace_scan_zero(BitmapTrace *bt, BitmapTraceRound *r);
void bitmap_trace_round_free(BitmapTraceRound *r);
void bitmap_trace_scan_slice(BitmapTraceBlock *b, unsigned long k0,
                             unsigned long k1, bool all);
void bitmap_trace_set_baseline(BitmapTraceBlock *b);
void bitmap_trace_count(BitmapTrace *bt, int64_t n, BitmapTraceCounts *total);
void bitmap_trace_block_counts(BitmapTraceBlock *b, bool measured);

/* bitmap-trace-log.c */
int bitmap_trace_open(const char *filename, bool *seekable, Error **errp);
bool bitmap_trace_write(BitmapTrace *bt, GString *out, Error **errp);
void bitmap_trace_put_header(BitmapTrace *bt, GString *out);
void bitmap_trace_put_iteration(BitmapTrace *bt, int64_t n,
                                const BitmapTraceRound *r, GString *out,
                                BitmapTraceCounts *counts);
void bitmap_trace_put_end(BitmapTrace *bt, GString *out,
                          BitmapTraceStatus status, const char *error);

#endif
