/*
 * bitmap-trace: the QEMU interfaces that moved or were renamed between
 * the releases the series is kept for (10.0, 10.2), so that the tracer's
 * sources, migration/bitmap-trace*.c, are one for all of them.  They use
 * the newest names; older bases get them here.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_MIGRATION_BITMAP_TRACE_COMPAT_H
#define QEMU_MIGRATION_BITMAP_TRACE_COMPAT_H

#define BITMAP_TRACE_QEMU_AT_LEAST(major, minor)                   \
    (QEMU_VERSION_MAJOR > (major) ||                                \
     (QEMU_VERSION_MAJOR == (major) && QEMU_VERSION_MINOR >= (minor)))

/* 10.1 moved these headers from include/exec/ to include/system/. */
#if BITMAP_TRACE_QEMU_AT_LEAST(10, 1)
#include "system/address-spaces.h"
#include "system/memory.h"
#include "system/ram_addr.h"
#else
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "exec/ram_addr.h"
#endif

/*
 * 10.2 renamed cpu_physical_memory_*() to physical_memory_*(), declared in
 * system/physmem.h, and qemu_wait_io_event_common() to
 * qemu_process_cpu_events_common().
 */
#if BITMAP_TRACE_QEMU_AT_LEAST(10, 2)
#include "system/physmem.h"
#else
#include "system/cpus.h"

static inline void physical_memory_dirty_bits_cleared(ram_addr_t start,
                                                      ram_addr_t length)
{
    cpu_physical_memory_dirty_bits_cleared(start, length);
}

static inline void qemu_process_cpu_events_common(CPUState *cpu)
{
    qemu_wait_io_event_common(cpu);
}
#endif

#endif
