/*
 * QTest: bitmap-trace with a real guest CPU doing the writing
 *
 * Boots a boot-sector guest of ours (bitmap-trace/x86-bootblock.S) under
 * TCG, KVM with the dirty bitmap and KVM with the dirty ring, traces it and
 * checks every window of the log against the pages the guest was told to
 * write (bitmap-trace/guest.h tells how).  The cases are in bitmap-trace/,
 * one file per topic: the guest's known writes on 1 to 8 vCPUs
 * (guest-tests.c), what happens to the VM (guest-vm-tests.c), the fault
 * suite (guest-fault-tests.c, guest-quit-tests.c).
 *
 * Test paths were renamed when the cases were split by topic
 * (/x86_64 in front of each; ACCEL is tcg, kvm or kvm-dirty-ring, N ms
 * the period):
 *   /bitmap-trace-guest/ACCEL/LAYOUT/period-Nms
 *       -> /bitmap-trace/guest/LAYOUT/period-Nms/ACCEL
 *   /bitmap-trace-guest/ACCEL/smpK/EVENT/period-Nms
 *       -> /bitmap-trace/guest/smpK/EVENT/period-Nms/ACCEL
 *   /bitmap-trace-guest/kvm/smp-probe -> /bitmap-trace/guest/smp-probe/kvm
 *   /bitmap-trace-guest/kvm-dirty-ring/probe
 *       -> /bitmap-trace/guest/ring-probe/kvm-dirty-ring
 *   /bitmap-trace-guest/ACCEL/vm-pause -> /bitmap-trace/guest-vm/pause/ACCEL
 *   /bitmap-trace-guest/ACCEL/CASE -> /bitmap-trace/guest-vm/CASE/ACCEL
 *       for reset-storm, reboots, record-replay, round-cost, dirty-limit
 *   /bitmap-trace-guest/ACCEL/faults/quit-phases
 *       -> /bitmap-trace/guest-quit/phases/ACCEL
 *   /bitmap-trace-guest/ACCEL/faults/CASE
 *       -> /bitmap-trace/guest-faults/CASE/ACCEL
 *       for guest-reboot, cpu-hotplug, soak
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "bitmap-trace/guest.h"

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    bt_add_guest_tests();
    bt_add_guest_vm_tests();
    bt_add_guest_fault_tests();
    bt_add_guest_quit_tests();

    return g_test_run();
}
