/*
 * QTest for bitmap-trace with a real guest: the guest, its layouts and
 * accelerators, booting it, and running and checking a traced case
 *
 * bitmap-trace-guest-test boots a boot-sector guest of ours
 * (x86-bootblock.S) under TCG, KVM with the dirty bitmap and KVM with the
 * dirty ring, traces it and checks every window of the log against the
 * pages the guest was told to write: each hot page in every window in
 * which the guest ran (recall), nothing outside the hot pages, the sweep
 * range and the guest's own code page (precision), and the whole sweep
 * range over the trace.  The expected pages come from the layout the test
 * patched into the guest, never from the log.  guest.c has the guest,
 * guest-run.c runs a case and checks its log; the cases are in
 * guest*-tests.c.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BITMAP_TRACE_GUEST_H
#define BITMAP_TRACE_GUEST_H

#include "framework.h"
#include "x86-bootblock.h"

#define GUEST_PAGE_SIZE     SYM_PAGE_SIZE
#define GUEST_PAGE_BITS     12

/* Bounds on waiting for the guest; each case takes a few seconds. */
#define FIRST_PASS_TIMEOUT_MS   30000
#define PASS_TIMEOUT_MS         20000
/* A multi-vCPU case, boot to cleanup; a wedged one fails at this limit */
#define SMP_CASE_TIMEOUT_S      90
/* The guest boots again in a few seconds after a reset, even under KVM */
#define REBOOT_TIMEOUT_MS       20000
/* A pass takes tens of ms without dirty logging, even under nested KVM. */
#define STALL_TIMEOUT_MS        3000

/* The dirty ring size the ring cases ask for, in entries */
#define DIRTY_RING_ENTRIES  4096

typedef enum GuestAccel {
    GUEST_ACCEL_TCG,
    GUEST_ACCEL_KVM,            /* dirty bitmap, manual protect */
    GUEST_ACCEL_KVM_RING,       /* dirty ring */
} GuestAccel;

/* What happens to the VM during the trace */
typedef enum GuestEvent {
    GUEST_EVENT_NONE,
    GUEST_EVENT_RESET,          /* system_reset: the guest boots again */
    GUEST_EVENT_STOP,           /* stop, then cont */
} GuestEvent;

/*
 * What the guest writes; see x86-bootblock.S.  Every vCPU writes the
 * shared hot pages; vCPU i also writes priv[j] + i * priv_stride, and
 * sweeps slice i of ncpus equal slices of [sweep_start, sweep_end).
 */
typedef struct GuestLayout {
    const char *name;
    const char *machine_args;
    const uint32_t *hot;        /* guest-physical page addresses */
    size_t nhot;
    const uint32_t *priv;       /* of vCPU 0 */
    size_t npriv;
    uint32_t priv_stride;
    uint32_t sweep_start;       /* [start, end), page aligned */
    uint32_t sweep_end;
    /* A RAM block other than the first that must hold some hot pages */
    const char *second_block;
} GuestLayout;

typedef struct GuestCase {
    GuestAccel accel;
    const GuestLayout *layout;
    int ncpus;
    GuestEvent event;
    int64_t period_ms;
    int64_t iterations;         /* 0: until enough windows after the event */
} GuestCase;

/*
 * Windows of a trace in which something other than the guest's loop was
 * going on; empty when first > last.
 */
typedef struct GuestTraceEvents {
    int64_t quiet_first;        /* the VM was stopped throughout */
    int64_t quiet_last;
    int64_t boot_first;         /* the guest was rebooting (BIOS writes) */
    int64_t boot_last;
    int64_t back;               /* all vCPUs back from the event by then */
} GuestTraceEvents;

/* A booted guest and the files it needs */
typedef struct GuestVM {
    char *dir;
    char *image;
    char *serial;
    char *log_path;
    int serial_fd;
    QTestState *qts;
} GuestVM;

/* QEMU exits within this after quit, whatever the trace was doing */
#define QUIT_TIMEOUT_MS         10000
/* Boot to cleanup of a fault case */
#define FAULT_CASE_TIMEOUT_S    150

/*
 * Whether the host's KVM runs a guest on several vCPUs, and its dirty
 * ring one that writes, are asked once, each by a case of its own in a
 * subprocess
 */
#define SMP_PROBE_PATH      "/bitmap-trace/guest/smp-probe/kvm"
#define RING_PROBE_PATH     "/bitmap-trace/guest/ring-probe/kvm-dirty-ring"

/* The layouts (guest.c) */
extern const uint32_t one_block_hot[10];
extern const GuestLayout one_block;
extern const GuestLayout two_blocks;
extern const GuestLayout smp_blocks;

/* Every accelerator; the first two: TCG, KVM with the dirty bitmap */
extern const GuestAccel guest_accels[3];

/* Why the dirty ring cases skip, once a probe or a case found out */
extern char *kvm_ring_reason;

/* A case of a fault suite, run by itself in a subprocess */
typedef char *(*FaultFunc)(GuestAccel accel);

/* guest.c */
const char *accel_name(GuestAccel accel);
char *accel_unusable_reason(GuestAccel accel);
GArray *layout_cpu_hot(const GuestLayout *l, int cpu);
bool layout_is_hot(const GuestLayout *l, int ncpus, uint64_t pfn);
bool layout_in_sweep(const GuestLayout *l, uint64_t pfn);
uint64_t layout_slice(const GuestLayout *l, int ncpus, int cpu,
                      uint64_t *npages);
bool layout_is_code(uint64_t pfn);
int serial_fifo_open(const char *path);
int serial_await_signals(int fd, unsigned char sig, int n,
                         int64_t timeout_ms);
void serial_await_passes(int fd, int ncpus);
uint32_t guest_passes(QTestState *qts, const GuestLayout *l, int cpu);
bool dirty_ring_stalls_guest(QTestState *qts, const GuestLayout *l);
const char *event_name(GuestEvent event);
gint cmp_int64(gconstpointer a, gconstpointer b);
char *guest_boot_args(GuestVM *vm, GuestAccel accel,
                      const GuestLayout *l, int ncpus,
                      const char *extra);
char *guest_boot(GuestVM *vm, GuestAccel accel, const GuestLayout *l,
                 int ncpus);
void guest_cleanup(GuestVM *vm);
void smp_probe_child(void);
bool run_subprocess(const char *path, int timeout_s, char **skip);
const char *kvm_smp_unusable_reason(void);
void ring_probe_child(void);
const char *kvm_ring_unusable_reason(void);
void subprocess_report_skip(const char *skip);
void log_check_cancelled(const BTLog *log);
void guest_await_pass(QTestState *qts, const GuestLayout *l,
                      uint32_t passes);
char *fault_dir_new(void);
/* Add PATH/ACCEL, running @fn with data @accel */
void guest_add_case(const char *path, GuestAccel accel,
                    void (*fn)(const void *));
#ifdef CONFIG_LINUX
/*
 * Add PATH/ACCEL, the fault case @run in a subprocess of at most
 * @timeout_s; @smp: needs several vCPUs under KVM
 */
void guest_add_fault_case(const char *path, GuestAccel accel, FaultFunc run,
                          bool smp, int timeout_s);
#endif

/* guest-run.c */
bool trace_await_full_pass(QTestState *qts, const GuestCase *c,
                           const uint32_t *passes_at_start);
void trace_await_all_back(QTestState *qts, const GuestCase *c);
int64_t windows_around_event(const GuestCase *c);
char *trace_run(GuestVM *vm, const GuestCase *c, GuestTraceEvents *ev);
bool window_has_hot_round(const BTLogIter *it, const GuestLayout *l,
                          int ncpus, int cpu);
void log_check(const BTLog *log, const GuestCase *c,
               const GuestTraceEvents *ev);
char *guest_case_run(const GuestCase *c);

/* The topics of bitmap-trace-guest-test */
void bt_add_guest_tests(void);
void bt_add_guest_vm_tests(void);
void bt_add_guest_fault_tests(void);
void bt_add_guest_quit_tests(void);

#endif
