/*
 * Guest for bitmap-trace-guest-test: an x86 boot sector with a known
 * write pattern.
 *
 * The BIOS loads this sector at 0x7c00 and jumps to it.  It switches to
 * flat 32-bit protected mode with interrupts off and then loops forever:
 *
 *   for each page p in [sweep_start, sweep_end), step 4 KiB:
 *       increment the dword at p + SWEEP_TICK_OFF
 *       for each of the hot_count pages h in hot_pages[]:
 *           increment the dword at h + HOT_TICK_OFF
 *   store the number of completed passes at hot_pages[0] + PASS_COUNT_OFF
 *   after the first pass only: write PASS_SIGNAL to COM1 (port 0x3f8)
 *
 * So each pass writes every sweep page once, and the hot pages are written
 * after every sweep page: far more often than any trace period.  Nothing
 * else is written: there is no stack, interrupts stay disabled, and the
 * accessed bits of the GDT descriptors are preset so that loading a segment
 * does not write to the GDT.  The only page that holds code or data of the
 * guest is the one this sector is loaded into, and it is only read.
 *
 * The parameter slots (hot_count, hot_pages, sweep_start, sweep_end) are
 * patched by the test in a copy of the image before booting; all values
 * are little-endian 32-bit guest-physical addresses.  hot_count must be at
 * least 1 (the pass counter lives in the first hot page) and at most
 * HOT_PAGES_MAX.  The generated header gives each global symbol as
 * SYM_<name>: an offset into the sector for labels, the value for the
 * constants.
 *
 * After editing, regenerate x86-bootblock.h with "make" in this directory
 * and commit both files.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/* The sector is assembled at offset 0: this turns a label into its address */
#define ADDR(label)     ((label) - bt_boot + LOAD_ADDR)

#define CODE_SEL        0x08
#define DATA_SEL        0x10
#define COM1            0x3f8
#define PORT_A          0x92    /* bit 1: A20 gate, bit 0: fast reset */

        .globl  LOAD_ADDR, PAGE_SIZE, HOT_PAGES_MAX
        .globl  HOT_TICK_OFF, SWEEP_TICK_OFF, PASS_COUNT_OFF, PASS_SIGNAL
        .set    LOAD_ADDR, 0x7c00
        .set    PAGE_SIZE, 4096
        .set    HOT_PAGES_MAX, 16
        .set    PASS_COUNT_OFF, 0       /* dword in hot_pages[0] */
        .set    HOT_TICK_OFF, 8         /* dword in every hot page */
        .set    SWEEP_TICK_OFF, 0       /* dword in every sweep page */
        .set    PASS_SIGNAL, 0x50       /* 'P' */

        .text
        .code16
        .globl  bt_boot
bt_boot:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
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

        /* Open the A20 gate; keep the reset bit clear */
        inb     $PORT_A, %al
        or      $0x02, %al
        and     $0xfe, %al
        outb    %al, $PORT_A

        xor     %ebp, %ebp              /* completed passes */

next_pass:
        mov     ADDR(sweep_start), %esi

sweep_step:
        cmp     ADDR(sweep_end), %esi
        jae     pass_done
        incl    SWEEP_TICK_OFF(%esi)
        add     $PAGE_SIZE, %esi

        mov     $ADDR(hot_pages), %ebx
        mov     ADDR(hot_count), %ecx
        jecxz   sweep_step
hot_step:
        mov     (%ebx), %eax
        incl    HOT_TICK_OFF(%eax)
        add     $4, %ebx
        loop    hot_step
        jmp     sweep_step

pass_done:
        inc     %ebp
        mov     ADDR(hot_count), %ecx
        jecxz   1f
        mov     ADDR(hot_pages), %eax
        mov     %ebp, PASS_COUNT_OFF(%eax)
1:
        cmp     $1, %ebp
        jne     next_pass
        mov     $PASS_SIGNAL, %al
        mov     $COM1, %dx
        outb    %al, %dx
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

        /* Parameters, patched by the test.  Defaults suit a 128 MiB guest. */
        .p2align 2
        .globl  hot_count, hot_pages, sweep_start, sweep_end
hot_count:
        .long   3
hot_pages:
        .long   0x00010000, 0x00200000, 0x00500000
        .fill   HOT_PAGES_MAX - 3, 4, 0
sweep_start:
        .long   0x01000000
sweep_end:
        .long   0x01400000

        /* Boot signature */
        .org    510
        .byte   0x55, 0xaa
