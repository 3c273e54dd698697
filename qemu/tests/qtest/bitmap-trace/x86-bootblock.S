/*
 * Guest for bitmap-trace-guest-test: an x86 boot sector with a known
 * write pattern, on one vCPU or on several at once.
 *
 * The BIOS loads this sector at 0x7c00 and jumps to it on the boot
 * processor (BSP).  The BSP switches to flat 32-bit protected mode with
 * interrupts off, writes BOOT_SIGNAL to COM1 (port 0x3f8): the firmware is
 * done, and wakes the application processors (APs), if any, with
 * INIT-SIPI-SIPI broadcast through its local APIC.  A SIPI starts an AP in
 * real mode at the start of a page: the BSP first stores a far jump to
 * ap_entry at TRAMPOLINE, the start of the page this sector is loaded into,
 * so the APs come in here too and switch to protected mode the same way.
 * Then every vCPU, whose index is its APIC ID (0 for the BSP), loops
 * forever:
 *
 *   for each page p of its sweep slice, [sweep_start + index * sweep_slice,
 *   sweep_start + (index + 1) * sweep_slice), step 4 KiB:
 *       increment the dword at p + SWEEP_TICK_OFF
 *       for each of the hot_count shared hot pages h in hot_pages[],
 *       then each of its priv_count private hot pages
 *       h = priv_pages[j] + index * priv_stride:
 *           increment the dword at h + HOT_TICK_OFF + index * CPU_SLOT_SIZE
 *   store its number of completed passes at
 *       hot_pages[0] + PASS_COUNT_OFF + index * CPU_SLOT_SIZE
 *   after its first pass only: write PASS_SIGNAL to COM1 (port 0x3f8)
 *   the BSP only: if the dword at hot_pages[0] + REBOOT_REQ_OFF is not 0,
 *       clear it and reset the machine itself: REBOOT_KBC through the
 *       keyboard controller (0xfe to port 0x64), any other value through
 *       the reset control register (0x06 to port 0xcf9)
 *
 * So each pass of a vCPU writes every page of its slice once, and its hot
 * pages are written after every page of the slice: far more often than any
 * trace period.  Nothing else is written once the vCPUs run their loops:
 * there is no stack, interrupts stay disabled, and the accessed bits of the
 * GDT descriptors are preset so that loading a segment does not write to
 * the GDT.  The only page that holds code or data of the guest is the one
 * this sector is loaded into; the BSP writes the trampoline into it once
 * at boot, and it is only read after that.
 *
 * The test asks for a reboot by writing the request dword (through qtest,
 * while the guest runs); nothing else writes it, and the BSP clears it
 * before it resets, so that the next boot does not reset again.  It lies
 * in the BSP's slot of the first hot page, between its pass counter and
 * its hot tick, so the reset request dirties no page the guest does not
 * write anyway.
 *
 * The parameter slots (hot_count, hot_pages, priv_count, priv_pages,
 * priv_stride, sweep_start, sweep_slice) are patched by the test in a copy
 * of the image before booting; all values are little-endian 32-bit
 * guest-physical addresses or sizes in bytes.  hot_count must be at least
 * 1 (the pass counters live in the first hot page) and at most
 * HOT_PAGES_MAX, priv_count at most PRIV_PAGES_MAX, the APIC IDs below
 * CPUS_MAX.  With one vCPU, no private page and sweep_slice the whole sweep
 * range, this is the single-processor guest it was before APs came in.
 * The generated header gives each global symbol as SYM_<name>: an offset
 * into the sector for labels, the value for the constants.
 *
 * After editing, regenerate x86-bootblock.h with "make" in this directory
 * and commit both files.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/* The sector is assembled at offset 0: this turns a label into its address */
#define ADDR(label)     ((label) - bt_boot + LOAD_ADDR)

#define CODE_SEL        0x08
#define DATA_SEL        0x10
#define COM1            0x3f8
#define PORT_A          0x92    /* bit 1: A20 gate, bit 0: fast reset */

/* Local APIC registers, xAPIC mode, at its reset base address */
#define APIC_ID         0xfee00020      /* bits 31:24 */
#define APIC_ICR_LO     0xfee00300
/* Shorthand "all excluding self", level assert, INIT / start-up */
#define ICR_INIT        0x000c4500
#define ICR_SIPI        0x000c4600
/* Busy-wait iterations after INIT and after each SIPI */
#define IPI_DELAY       0x40000

        .globl  LOAD_ADDR, PAGE_SIZE, HOT_PAGES_MAX, PRIV_PAGES_MAX
        .globl  CPUS_MAX, CPU_SLOT_SIZE, TRAMPOLINE
        .globl  HOT_TICK_OFF, SWEEP_TICK_OFF, PASS_COUNT_OFF, PASS_SIGNAL
        .globl  BOOT_SIGNAL, REBOOT_REQ_OFF, REBOOT_CF9, REBOOT_KBC
        .set    LOAD_ADDR, 0x7c00
        .set    PAGE_SIZE, 4096
        .set    HOT_PAGES_MAX, 16
        .set    PRIV_PAGES_MAX, 4
        .set    CPUS_MAX, 64
        .set    CPU_SLOT_SIZE, 64       /* per-vCPU dwords in a hot page */
        .set    TRAMPOLINE, LOAD_ADDR & ~(PAGE_SIZE - 1)
        .set    PASS_COUNT_OFF, 0       /* dword in hot_pages[0] */
        .set    HOT_TICK_OFF, 8         /* dword in every hot page */
        .set    SWEEP_TICK_OFF, 0       /* dword in every sweep page */
        .set    PASS_SIGNAL, 0x50       /* 'P' */
        .set    BOOT_SIGNAL, 0x42       /* 'B' */
        .set    REBOOT_REQ_OFF, 4       /* dword in hot_pages[0] */
        .set    REBOOT_CF9, 1           /* reset control register */
        .set    REBOOT_KBC, 2           /* keyboard controller */

        .text
        .code16
        .globl  bt_boot, ap_entry
bt_boot:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        /* The APs' start: ljmp $0, $ap_entry */
        movb    $0xea, TRAMPOLINE
        movw    $ADDR(ap_entry), TRAMPOLINE + 1
        movw    %ax, TRAMPOLINE + 3
        movl    $1, %edi                /* the BSP */
        jmp     enter_protected

ap_entry:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        xor     %edi, %edi              /* an AP */
enter_protected:
        lgdtl   ADDR(gdt_desc)
        mov     %cr0, %eax
        or      $1, %eax                /* CR0.PE */
        mov     %eax, %cr0
        ljmpl   $CODE_SEL, $ADDR(protected)

        .code32
protected:
        mov     $DATA_SEL, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        test    %edi, %edi
        jz      cpu_start

        /* BSP: open the A20 gate; keep the reset bit clear */
        inb     $PORT_A, %al
        or      $0x02, %al
        and     $0xfe, %al
        outb    %al, $PORT_A

        mov     $BOOT_SIGNAL, %al
        mov     $COM1, %dx
        outb    %al, %dx

        /* Wake the APs: INIT, then SIPI twice, to TRAMPOLINE's page */
        movl    $ICR_INIT, APIC_ICR_LO
        mov     $IPI_DELAY, %ecx
1:      loop    1b
        movl    $ICR_SIPI | (TRAMPOLINE >> 12), APIC_ICR_LO
        mov     $IPI_DELAY, %ecx
1:      loop    1b
        movl    $ICR_SIPI | (TRAMPOLINE >> 12), APIC_ICR_LO

cpu_start:
        /*
         * Registers from here on: %edi this vCPU's slot offset in a hot
         * page, %ebx its private page offset, %edx the end of its sweep
         * slice, %esi the sweep cursor, %ebp its completed passes.
         */
        mov     APIC_ID, %eax
        shr     $24, %eax               /* index */
        mov     %eax, %edi
        shl     $6, %edi                /* * CPU_SLOT_SIZE */
        mov     ADDR(priv_stride), %ebx
        imul    %eax, %ebx
        mov     ADDR(sweep_slice), %edx
        inc     %eax
        imul    %eax, %edx
        add     ADDR(sweep_start), %edx
        xor     %ebp, %ebp

next_pass:
        mov     %edx, %esi
        sub     ADDR(sweep_slice), %esi

sweep_step:
        cmp     %edx, %esi
        jae     pass_done
        incl    SWEEP_TICK_OFF(%esi)
        add     $PAGE_SIZE, %esi

        mov     ADDR(hot_count), %ecx
        jecxz   2f
1:      mov     ADDR(hot_pages) - 4(,%ecx,4), %eax
        incl    HOT_TICK_OFF(%eax,%edi)
        loop    1b
2:      mov     ADDR(priv_count), %ecx
        jecxz   sweep_step
1:      mov     ADDR(priv_pages) - 4(,%ecx,4), %eax
        add     %ebx, %eax
        incl    HOT_TICK_OFF(%eax,%edi)
        loop    1b
        jmp     sweep_step

pass_done:
        inc     %ebp
        mov     ADDR(hot_count), %ecx
        jecxz   1f
        mov     ADDR(hot_pages), %eax
        mov     %ebp, PASS_COUNT_OFF(%eax,%edi)
        test    %edi, %edi              /* the BSP: a reboot asked for? */
        jnz     1f
        mov     REBOOT_REQ_OFF(%eax), %ecx
        jecxz   1f
        movl    $0, REBOOT_REQ_OFF(%eax)
        cmp     $REBOOT_KBC, %ecx
        je      2f
        mov     $0x06, %al              /* hard reset */
        mov     $0xcf9, %dx
        outb    %al, %dx
        jmp     3f
2:      mov     $0xfe, %al              /* pulse the reset line */
        outb    %al, $0x64
3:      hlt                             /* interrupts are off: wait */
        jmp     3b
1:
        cmp     $1, %ebp
        jne     next_pass
        mov     %edx, %esi
        mov     $PASS_SIGNAL, %al
        mov     $COM1, %dx
        outb    %al, %dx
        mov     %esi, %edx
        jmp     next_pass

        /*
         * Flat 4 GiB code and data segments.  The type bytes have the
         * accessed bit set (0x9b, 0x93): the CPU would otherwise write it.
         */
        .p2align 3
gdt:
        .quad   0
        .quad   0x00cf9b000000ffff      /* CODE_SEL */
        .quad   0x00cf93000000ffff      /* DATA_SEL */
gdt_end:

gdt_desc:
        .word   gdt_end - gdt - 1
        .long   ADDR(gdt)

        /*
         * Parameters, patched by the test.  The defaults suit a 128 MiB
         * guest with one vCPU.
         */
        .p2align 2
        .globl  hot_count, hot_pages, priv_count, priv_pages, priv_stride
        .globl  sweep_start, sweep_slice
hot_count:
        .long   3
hot_pages:
        .long   0x00010000, 0x00200000, 0x00500000
        .fill   HOT_PAGES_MAX - 3, 4, 0
priv_count:
        .long   0
priv_pages:
        .fill   PRIV_PAGES_MAX, 4, 0
priv_stride:
        .long   PAGE_SIZE
sweep_start:
        .long   0x01000000
sweep_slice:
        .long   0x00400000

        /* Boot signature */
        .org    510
        .byte   0x55, 0xaa
