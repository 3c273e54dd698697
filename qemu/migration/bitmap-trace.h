/*
 * bitmap-trace: shadow migration dirty page tracer
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#ifndef QEMU_MIGRATION_BITMAP_TRACE_H
#define QEMU_MIGRATION_BITMAP_TRACE_H

/*
 * Stop an active trace and join its thread.  Called with the BQL held
 * from migration_shutdown(), while the vCPUs are still alive.
 */
void bitmap_trace_shutdown(void);

#endif
