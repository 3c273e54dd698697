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
