/*
 * bitmap-trace: shadow migration dirty page tracer
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_MIGRATION_BITMAP_TRACE_H
#define QEMU_MIGRATION_BITMAP_TRACE_H

#include "qapi/qapi-types-migration.h"

/*
 * Stop an active trace and join its thread.  Called with the BQL held
 * from migration_shutdown(), while the vCPUs are still alive.
 */
void bitmap_trace_shutdown(void);

/*
 * Append the results of a trace, as query-bitmap-trace gives them, to
 * @out as text: status, file, dirty pages per iteration and totals.  With
 * @max_rows > 0, a longer table keeps its first and last @max_rows / 2
 * rows and says where the others are.
 */
void bitmap_trace_format_results(GString *out, const BitmapTraceInfo *info,
                                 int64_t max_rows);

#endif
