/*
 * bt-workload: the memory-writing workload of the bitmap-trace demo guest.
 *
 * It does what QEMU's tests/migration-stress/stress.c does (sweep a buffer,
 * rewriting every page of it, forever) with the knobs the demo needs: the
 * buffer size in MiB rather than GiB, and a write rate.  It also prints the
 * guest page frame numbers of its buffer, so that a test can check that
 * exactly these pages show up in the bitmap-trace log.
 *
 *   bt-workload [--wss MIB] [--rate MIB_PER_S] [--report-s SECONDS]
 *               [--mode seq|random|hotcold|phases] [--fill MIB]
 *               [--phase-s SECONDS] [--seed N]
 *
 *   --wss       size of the buffer written, in MiB (default 64)
 *   --rate      pages rewritten per second, as MiB/s (default 0: as fast
 *               as the CPU goes)
 *   --report-s  seconds between progress lines (default 10)
 *   --mode      which pages of the buffer are rewritten (default seq):
 *                 seq      sweep the buffer in order, again and again
 *                 random   pages drawn uniformly from the whole buffer
 *                 hotcold  90% of the writes go to the first 10% of the
 *                          buffer (uniformly), 10% to the other 90%
 *                 phases   sweep a quarter of the buffer; every --phase-s
 *                          seconds the swept quarter moves to the next one
 *   --fill      also fill this many MiB of other memory, once, at start,
 *               with non-zero data that never changes (so that the guest's
 *               RAM is not mostly zero pages, which migration sends almost
 *               for free); default 0
 *   --phase-s   seconds per phase of --mode phases (default 3)
 *   --seed      seed of the random modes (default 1)
 *
 * Output (one line each, "bt-workload: " first):
 *   pfns <ranges>      the buffer's guest PFNs, hex, "first" or
 *                      "first-last", ascending (several lines)
 *   ready ...          the buffer is allocated, locked and being written
 *                      (with mode=... fill=... unless the mode is seq and
 *                      there is no fill)
 *   progress ...       every --report-s seconds
 *
 * The buffer is mlock()ed and the kernel is asked not to compact locked
 * pages (vm.compact_unevictable_allowed=0, set by the guest's init), so the
 * PFNs printed stay those of the buffer.  Built with gcc -static; it needs
 * nothing from the guest but /proc.
 *
 * Copyright (c) 2026 The bitmap-trace authors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096
#define HUGE_SIZE (2 * 1024 * 1024)
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_PFN_MASK ((1ULL << 55) - 1)
#define PFN_LINE_MAX 16         /* ranges per "pfns" line */

static const char *prog = "bt-workload";

static void die(const char *what)
{
    fprintf(stderr, "%s: error: %s: %s\n", prog, what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static unsigned long parse_ulong(const char *opt, const char *s)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "%s: error: %s wants a number, not '%s'\n",
                prog, opt, s);
        exit(2);
    }
    return v;
}

static void print_range(unsigned *nline, uint64_t first, uint64_t last)
{
    if (*nline == 0) {
        printf("%s: pfns", prog);
    }
    if (first == last) {
        printf(" %" PRIx64, first);
    } else {
        printf(" %" PRIx64 "-%" PRIx64, first, last);
    }
    if (++*nline == PFN_LINE_MAX) {
        printf("\n");
        *nline = 0;
    }
}

enum mode { MODE_SEQ, MODE_RANDOM, MODE_HOTCOLD, MODE_PHASES };
static const char *const mode_names[] = { "seq", "random", "hotcold", "phases" };

/* xorshift64*: fast, and good enough to pick pages */
static uint64_t rng_state = 1;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* A uniform page in [0, n) (n > 0; the modulo bias is negligible) */
static size_t rng_page(size_t n)
{
    return (size_t)((rng_next() >> 11) % n);
}

/* Fill @mib MiB of fresh memory with non-zero data, once, and lock it */
static void fill_memory(unsigned long mib)
{
    size_t len = (size_t)mib * 1024 * 1024, i;
    uint64_t *p;

    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        die("mmap (fill)");
    }
    for (i = 0; i < len / sizeof(*p); i++) {
        p[i] = (i * 0x9e3779b97f4a7c15ULL) | 1;
    }
    if (mlock(p, len) < 0) {
        die("mlock (fill)");
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * Print the guest PFNs backing @buf as ascending ranges.  Physical pages of
 * a virtual buffer are not in PFN order, so collect, sort, then merge.
 * Returns the number of ranges.
 */
static unsigned long print_pfns(char *buf, size_t npages)
{
    uint64_t *pfns = calloc(npages, sizeof(*pfns));
    uint64_t entry;
    unsigned long nranges = 0;
    unsigned nline = 0;
    size_t i;
    int fd;

    if (!pfns) {
        die("calloc");
    }
    fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) {
        die("open /proc/self/pagemap");
    }
    for (i = 0; i < npages; i++) {
        off_t off = ((uintptr_t)buf / PAGE_SIZE + i) * sizeof(entry);

        if (pread(fd, &entry, sizeof(entry), off) != sizeof(entry)) {
            die("read /proc/self/pagemap");
        }
        if (!(entry & PAGEMAP_PRESENT) || !(entry & PAGEMAP_PFN_MASK)) {
            /* Without CAP_SYS_ADMIN the kernel reports PFN 0. */
            errno = EPERM;
            die("page not present or PFN hidden in /proc/self/pagemap");
        }
        pfns[i] = entry & PAGEMAP_PFN_MASK;
    }
    close(fd);

    qsort(pfns, npages, sizeof(*pfns), cmp_u64);

    for (i = 0; i < npages; ) {
        size_t j = i;

        while (j + 1 < npages && pfns[j + 1] == pfns[j] + 1) {
            j++;
        }
        print_range(&nline, pfns[i], pfns[j]);
        nranges++;
        i = j + 1;
    }
    if (nline) {
        printf("\n");
    }
    free(pfns);
    return nranges;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "wss", required_argument, NULL, 'w' },
        { "rate", required_argument, NULL, 'r' },
        { "report-s", required_argument, NULL, 'p' },
        { "mode", required_argument, NULL, 'm' },
        { "fill", required_argument, NULL, 'f' },
        { "phase-s", required_argument, NULL, 'P' },
        { "seed", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    unsigned long wss_mib = 64, rate_mib = 0, report_s = 10;
    unsigned long fill_mib = 0, phase_s = 3;
    enum mode mode = MODE_SEQ;
    size_t npages, page, batch, nhot = 0, nregion = 0, region_start = 0;
    uint64_t phase = 0, phase_end = 0;
    uint64_t pages_per_s, start, next_report, written = 0, sweeps = 0;
    uint64_t last_written = 0, last_report;
    unsigned long nranges;
    char *buf;
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            wss_mib = parse_ulong("--wss", optarg);
            break;
        case 'r':
            rate_mib = parse_ulong("--rate", optarg);
            break;
        case 'p':
            report_s = parse_ulong("--report-s", optarg);
            break;
        case 'm':
            for (mode = 0; mode < 4; mode++) {
                if (!strcmp(optarg, mode_names[mode])) {
                    break;
                }
            }
            if (mode == 4) {
                fprintf(stderr, "%s: error: --mode seq, random, hotcold or "
                        "phases, not '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'f':
            fill_mib = parse_ulong("--fill", optarg);
            break;
        case 'P':
            phase_s = parse_ulong("--phase-s", optarg);
            break;
        case 's':
            rng_state = parse_ulong("--seed", optarg) | 1;
            break;
        default:
            fprintf(stderr, "usage: %s [--wss MIB] [--rate MIB_PER_S] "
                    "[--report-s SECONDS] [--mode seq|random|hotcold|phases] "
                    "[--fill MIB] [--phase-s SECONDS] [--seed N]\n", prog);
            return c == 'h' ? 0 : 2;
        }
    }
    if (wss_mib == 0) {
        fprintf(stderr, "%s: error: --wss must be at least 1 MiB\n", prog);
        return 2;
    }
    if (phase_s == 0) {
        fprintf(stderr, "%s: error: --phase-s must be at least 1\n", prog);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fill_mib) {
        fill_memory(fill_mib);
    }

    npages = wss_mib * (1024 * 1024 / PAGE_SIZE);
    /* Ask for huge pages: fewer, longer PFN ranges.  A hint only. */
    buf = mmap(NULL, npages * PAGE_SIZE + HUGE_SIZE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        die("mmap");
    }
    buf = (char *)(((uintptr_t)buf + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1));
    madvise(buf, npages * PAGE_SIZE, MADV_HUGEPAGE);
    /* Fault every page in with a non-zero byte (zero pages may be shared). */
    memset(buf, 0xfe, npages * PAGE_SIZE);
    if (mlock(buf, npages * PAGE_SIZE) < 0) {
        die("mlock");
    }
    nranges = print_pfns(buf, npages);

    pages_per_s = (uint64_t)rate_mib * (1024 * 1024 / PAGE_SIZE);
    /* Pace in steps of about a millisecond of work. */
    batch = pages_per_s ? (pages_per_s + 999) / 1000 : 256;
    nhot = npages / 10 ? npages / 10 : 1;
    nregion = npages / 4 ? npages / 4 : npages;
    {
        char extra[96] = "";

        if (mode != MODE_SEQ || fill_mib) {
            snprintf(extra, sizeof(extra), " mode=%s fill=%luMiB",
                     mode_names[mode], fill_mib);
        }
        if (rate_mib) {
            printf("%s: ready wss=%luMiB pages=%zu ranges=%lu rate=%luMiB/s%s\n",
                   prog, wss_mib, npages, nranges, rate_mib, extra);
        } else {
            printf("%s: ready wss=%luMiB pages=%zu ranges=%lu rate=unlimited%s\n",
                   prog, wss_mib, npages, nranges, extra);
        }
    }

    start = last_report = now_ns();
    next_report = start + report_s * 1000000000ULL;
    phase_end = start + phase_s * 1000000000ULL;
    page = 0;
    for (;;) {
        uint64_t t;

        if (mode == MODE_SEQ) {
            size_t end = page + batch < npages ? page + batch : npages;

            written += end - page;

            /* Rewrite whole pages, as stress.c does, with a value that
             * changes on every sweep so no write is ever a no-op. */
            for (; page < end; page++) {
                uint64_t *p = (uint64_t *)(buf + page * PAGE_SIZE);
                size_t k;

                for (k = 0; k < PAGE_SIZE / sizeof(*p); k++) {
                    p[k] = sweeps ^ (page << 9) ^ k;
                }
            }
            if (page == npages) {
                page = 0;
                sweeps++;
            }
        } else {
            size_t i;

            for (i = 0; i < batch; i++) {
                size_t pg;
                uint64_t *p;
                size_t k;

                switch (mode) {
                case MODE_RANDOM:
                    pg = rng_page(npages);
                    break;
                case MODE_HOTCOLD:
                    if (npages <= nhot || rng_next() % 10 < 9) {
                        pg = rng_page(nhot);
                    } else {
                        pg = nhot + rng_page(npages - nhot);
                    }
                    break;
                default: /* MODE_PHASES: sweep the current region */
                    pg = region_start + page;
                    if (++page == nregion) {
                        page = 0;
                    }
                    break;
                }
                p = (uint64_t *)(buf + pg * PAGE_SIZE);
                for (k = 0; k < PAGE_SIZE / sizeof(*p); k++) {
                    p[k] = written ^ (pg << 9) ^ k;
                }
                written++;
            }
            sweeps = written / npages;
        }

        t = now_ns();
        if (mode == MODE_PHASES && t >= phase_end) {
            phase++;
            region_start = (phase % 4) * nregion;
            if (region_start + nregion > npages) {
                region_start = 0;
            }
            page = 0;
            phase_end = t + phase_s * 1000000000ULL;
        }
        if (pages_per_s) {
            uint64_t due = start + written * 1000000000ULL / pages_per_s;

            if (due > t) {
                struct timespec ts = {
                    .tv_sec = due / 1000000000ULL,
                    .tv_nsec = due % 1000000000ULL,
                };
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
                t = now_ns();
            } else if (t - due > 1000000000ULL) {
                /* More than a second behind (a slow CPU, a paused VM):
                 * do not try to catch up in a burst. */
                start = t - written * 1000000000ULL / pages_per_s;
            }
        }
        if (report_s && t >= next_report) {
            double secs = (t - last_report) / 1e9;

            printf("%s: progress sweeps=%" PRIu64 " MiB/s=%.1f\n", prog, sweeps,
                   (written - last_written) * PAGE_SIZE / 1048576.0 / secs);
            last_written = written;
            last_report = t;
            next_report = t + report_s * 1000000000ULL;
        }
    }
}
