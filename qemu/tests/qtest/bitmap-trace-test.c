/*
 * QTest for bitmap-trace under the qtest accelerator: exactness, the log
 * formats, the QMP and HMP interface, the log sinks and their faults,
 * fuzzing, and what a trace excludes
 *
 * Under -accel qtest no vCPU runs: the only writes to guest RAM are the
 * test's own, so every window of the trace must list exactly the pages the
 * test wrote in it.  The cases are in bitmap-trace/, one file per topic,
 * over bitmap-trace/framework.h.
 *
 * Test paths were renamed when the cases were split by topic
 * (/x86_64 in front of each):
 *   /bitmap-trace/exact/stop                -> exact/stop/text
 *   /bitmap-trace/binary/stop               -> exact/stop/binary
 *   /bitmap-trace/exact/windows             -> exact/windows
 *   /bitmap-trace/exact/pc-above-4g         -> exact/pc-above-4g/text
 *   /bitmap-trace/binary/pc-above-4g        -> exact/pc-above-4g/binary
 *   /bitmap-trace/exact/two-blocks          -> exact/two-blocks/text
 *   /bitmap-trace/binary/two-blocks         -> exact/two-blocks/binary
 *   /bitmap-trace/exact/zero-pages          -> exact/zero-pages/text
 *   /bitmap-trace/binary/zero-pages         -> exact/zero-pages/binary
 *   /bitmap-trace/exact/baseline-queue      -> exact/baseline-queue/text
 *   /bitmap-trace/binary/baseline-queue     -> exact/baseline-queue/binary
 *   /bitmap-trace/exact/map-change          -> exact/map-change/text
 *   /bitmap-trace/binary/map-change         -> exact/map-change/binary
 *   /bitmap-trace/iface/late-baseline       -> exact/late-baseline
 *   /bitmap-trace/iface/ram-hotplug         -> devices/ram-hotplug/text
 *   /bitmap-trace/binary/ram-hotplug        -> devices/ram-hotplug/binary
 *   /bitmap-trace/iface/blocker-recorded    -> devices/blocker-recorded/text
 *   /bitmap-trace/binary/blocker-recorded   -> devices/blocker-recorded/binary
 *   /bitmap-trace/binary/bitmap             -> format/bitmap/binary
 *   /bitmap-trace/binary/same-as-text       -> format/same-as-text
 *   /bitmap-trace/binary/header-after-trace -> format/header-after-trace/binary
 *   /bitmap-trace/iface/query-since         -> qmp/query-since
 *   /bitmap-trace/iface/defaults            -> qmp/defaults
 *   /bitmap-trace/iface/ranges              -> qmp/ranges
 *   /bitmap-trace/iface/errors              -> qmp/errors
 *   /bitmap-trace/iface/quit                -> qmp/quit
 *   /bitmap-trace/iface/fdset               -> sinks/fdset
 *   /bitmap-trace/iface/fdset-twice         -> sinks/fdset-twice
 *   /bitmap-trace/iface/fifo-no-reader      -> sinks/fifo-no-reader
 *   /bitmap-trace/iface/fifo-stream         -> sinks/fifo-stream
 *   /bitmap-trace/iface/fifo-stalled        -> sinks/fifo-stalled
 *   /bitmap-trace/iface/fifo-reader-gone    -> sinks/fifo-reader-gone
 *   /bitmap-trace/iface/pty-eio             -> sinks/pty-eio
 *   /bitmap-trace/iface/write-error         -> faults/write-error/text
 *   /bitmap-trace/binary/write-error        -> faults/write-error/binary
 *   /bitmap-trace/iface/disk-full           -> faults/disk-full/text
 *   /bitmap-trace/binary/disk-full          -> faults/disk-full/binary
 *   /bitmap-trace/iface/file-too-big        -> faults/file-too-big/text
 *   /bitmap-trace/binary/file-too-big       -> faults/file-too-big/binary
 *   /bitmap-trace/iface/fuzz-args           -> fuzz/args
 *   /bitmap-trace/iface/dirty-rate-exclusion -> exclusions/dirty-rate
 *   /bitmap-trace/iface/savevm-refused      -> exclusions/savevm
 *   /bitmap-trace/iface/loadvm-refused      -> exclusions/loadvm
 *   /bitmap-trace/iface/refused-during-migration -> exclusions/migration
 *   /bitmap-trace/iface/refused-on-postcopy-destination
 *                                     -> exclusions/postcopy-destination
 *   /bitmap-trace/iface/hmp                 -> hmp/commands
 *   /bitmap-trace/iface/hmp-wait            -> hmp/wait
 *   /bitmap-trace/iface/hmp-wait-failed     -> hmp/wait-failed
 *   /bitmap-trace/iface/hmp-notice          -> hmp/notice
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "bitmap-trace/framework.h"

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    bt_add_exact_tests();
    bt_add_format_tests();
    bt_add_qmp_tests();
    bt_add_exclusion_tests();
    bt_add_device_tests();
    bt_add_fault_tests();
    bt_add_sink_tests();
    bt_add_fuzz_tests();
    bt_add_hmp_tests();

    return g_test_run();
}
