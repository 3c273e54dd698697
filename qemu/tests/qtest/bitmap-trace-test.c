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
