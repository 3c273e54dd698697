/*
 * QTest for bitmap-trace with a real guest: the guest's known writes, on 1
 * to 8 vCPUs
 *
 * Every window of the log is checked against the pages the guest was
 * told to write (guest-run.c), under TCG, KVM with the dirty bitmap and
 * KVM with the dirty ring: one vCPU on one RAM block and on two, and 2, 4
 * and 8 vCPUs with the trace undisturbed, across a system_reset and across
 * stop and cont.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "guest.h"

static void test_guest(const void *opaque)
{
    g_autofree char *skip = guest_case_run(opaque);

    if (skip) {
        g_test_skip(skip);
    }
}

static void test_smp_probe(void)
{
    g_autofree char *skip = NULL;
    const char *reason;

    if (g_test_subprocess()) {
        smp_probe_child();
        return;
    }
    skip = accel_unusable_reason(GUEST_ACCEL_KVM);
    reason = skip ?: kvm_smp_unusable_reason();
    if (reason) {
        g_test_skip(reason);
        return;
    }
    bt_msg("the host's KVM runs a guest on 2 vCPUs: the APs came up "
              "through INIT-SIPI-SIPI and ran");
}

static void test_ring_probe(void)
{
    const char *reason;

    if (g_test_subprocess()) {
        ring_probe_child();
        return;
    }
    reason = kvm_ring_unusable_reason();
    if (reason) {
        g_test_skip(reason);
        return;
    }
    bt_msg("the host's KVM traces with the dirty ring");
}

/*
 * A multi-vCPU case.  Whether it can run is found out here, the case
 * itself runs in a subprocess: a wedged QEMU or trace fails it after
 * SMP_CASE_TIMEOUT_S instead of hanging the test.
 */
static void test_guest_smp(const void *opaque)
{
    const GuestCase *c = opaque;
    g_autofree char *unusable = NULL;
    const char *reason;

    if (g_test_subprocess()) {
        g_autofree char *skip = guest_case_run(c);

        if (skip) {
            subprocess_report_skip(skip);
        }
        return;
    }
    unusable = accel_unusable_reason(c->accel);
    reason = unusable;
    if (!reason && c->accel != GUEST_ACCEL_TCG) {
        reason = kvm_smp_unusable_reason();
    }
    if (!reason && c->accel == GUEST_ACCEL_KVM_RING) {
        reason = kvm_ring_unusable_reason();
    }
    if (reason) {
        g_test_skip(reason);
        return;
    }
    if (!run_subprocess(NULL, SMP_CASE_TIMEOUT_S, &unusable)) {
        g_test_fail();
    } else if (unusable) {
        if (c->accel == GUEST_ACCEL_KVM_RING && !kvm_ring_reason) {
            kvm_ring_reason = g_strdup(unusable);
        }
        g_test_skip(unusable);
    }
}

/* About a second of trace; a pass takes tens of ms even under KVM. */
static const struct {
    int64_t period_ms;
    int64_t iterations;
} trace_lengths[] = {
    { 10, 100 },
    { 100, 12 },
};

static void add_cases(GuestAccel accel, const GuestLayout *layout)
{
    for (size_t i = 0; i < ARRAY_SIZE(trace_lengths); i++) {
        GuestCase *c = g_new0(GuestCase, 1);
        g_autofree char *path = NULL;

        c->accel = accel;
        c->layout = layout;
        c->ncpus = 1;
        c->period_ms = trace_lengths[i].period_ms;
        c->iterations = trace_lengths[i].iterations;
        path = g_strdup_printf("/bitmap-trace/guest/%s/period-%" PRId64
                               "ms/%s", layout->name, c->period_ms,
                               accel_name(accel));
        qtest_add_data_func_full(path, c, test_guest, g_free);
    }
}

/*
 * The multi-vCPU cases: the trace undisturbed, across a reset, across stop
 * and cont; the last two run until enough windows after the event.
 */
static void add_smp_cases(GuestAccel accel, int ncpus)
{
    static const GuestEvent events[] = {
        GUEST_EVENT_NONE, GUEST_EVENT_RESET, GUEST_EVENT_STOP,
    };

    for (size_t e = 0; e < ARRAY_SIZE(events); e++) {
        for (size_t i = 0; i < ARRAY_SIZE(trace_lengths); i++) {
            GuestCase *c = g_new0(GuestCase, 1);
            g_autofree char *path = NULL;

            c->accel = accel;
            c->layout = &smp_blocks;
            c->ncpus = ncpus;
            c->event = events[e];
            c->period_ms = trace_lengths[i].period_ms;
            c->iterations = events[e] == GUEST_EVENT_NONE ?
                            trace_lengths[i].iterations : 0;
            path = g_strdup_printf("/bitmap-trace/guest/smp%d/%s/"
                                   "period-%" PRId64 "ms/%s", ncpus,
                                   event_name(c->event), c->period_ms,
                                   accel_name(accel));
            qtest_add_data_func_full(path, c, test_guest_smp, g_free);
        }
    }
}

void bt_add_guest_tests(void)
{
    static const int smp_ncpus[] = { 2, 4, 8 };

    for (size_t i = 0; i < ARRAY_SIZE(guest_accels); i++) {
        add_cases(guest_accels[i], &one_block);
        add_cases(guest_accels[i], &two_blocks);
    }
    qtest_add_func(SMP_PROBE_PATH, test_smp_probe);
    qtest_add_func(RING_PROBE_PATH, test_ring_probe);
    for (size_t n = 0; n < ARRAY_SIZE(smp_ncpus); n++) {
        for (size_t i = 0; i < ARRAY_SIZE(guest_accels); i++) {
            add_smp_cases(guest_accels[i], smp_ncpus[n]);
        }
    }
}
