# SPDX-License-Identifier: GPL-2.0-or-later
"""Write synthetic bitmap-trace logs (v1 or v2), for tests and benchmarks.

make_log() builds a log from a description: blocks with their PFN segments,
the baseline's unmapped pages and zero pages, and per window the pages
written and which of them were zero.  A page is a PFN (int) when mapped, or
(block, page) when not.  The text follows docs/devel/migration/bitmap-trace.rst:
ranges ascending, split over lines of 256 ranges.

  python3 -m btrace.synth --pages 262144 --windows 100 --hot 5000 > big.log

writes a one-block guest whose windows each rewrite a hot set plus a random
sprinkle of pages (a benchmark for the simulator's speed).
"""

import argparse
import random
import sys

RANGES_PER_LINE = 256


def to_ranges(numbers):
    """Sorted distinct ints -> [(first, last)] of maximal runs."""
    out = []
    for x in sorted(set(numbers)):
        if out and x == out[-1][1] + 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return [tuple(r) for r in out]


def fmt_range(a, b):
    return f'{a:x}' if a == b else f'{a:x}-{b:x}'


def range_lines(word, tokens):
    return [f'{word} ' + ' '.join(tokens[i:i + RANGES_PER_LINE])
            for i in range(0, len(tokens), RANGES_PER_LINE)]


def page_lines(pages, zero, version):
    """The pfns / unmapped (/ zero / unmapped-zero) lines of one iteration."""
    pfns = [p for p in pages if isinstance(p, int)]
    unm = [p for p in pages if not isinstance(p, int)]
    lines = range_lines('pfns', [fmt_range(a, b) for a, b in to_ranges(pfns)])

    def block_tokens(items):
        tokens = []
        for blk in sorted({b for b, _ in items}):
            for a, b in to_ranges([p for x, p in items if x == blk]):
                tokens.append(f'{blk}:{fmt_range(a, b)}')
        return tokens
    lines += range_lines('unmapped', block_tokens(unm))
    if version >= 2:
        zp = [p for p in zero if isinstance(p, int)]
        zu = [p for p in zero if not isinstance(p, int)]
        lines += range_lines('zero', [fmt_range(a, b) for a, b in to_ranges(zp)])
        lines += range_lines('unmapped-zero', block_tokens(zu))
    return lines, len(unm)


def make_log(blocks, windows, baseline_unmapped=(), baseline_zero=(), version=2,
             accel='tcg', page_size=4096, period_ms=100, sync_us=10, harvest_us=20,
             zero_us=None, end='completed'):
    """blocks: [(name, pages, [(first_pfn, npages), ...])];
    windows: [(t_ms, pages, zero_pages)] for iterations 1..N (zero_pages a
    subset of pages; ignored in v1); baseline_unmapped: the (block, page)
    pages without a GPA, the baseline lists them and every mapped PFN;
    baseline_zero: the pages zero at the start.  zero_us(n, zero_count) gives
    an iteration's zero-us (default: 1 us per zero page)."""
    if zero_us is None:
        def zero_us(n, z):
            return z
    out = [f'bitmap-trace v{version}',
           f'meta qemu=10.0.13 accel={accel} page-size={page_size} period-ms={period_ms} '
           f'iterations={len(windows)} start=2026-01-01T00:00:00.000000Z']
    base = []
    for name, pages, segs in blocks:
        out.append(f'block name={name} pages={pages} map=' +
                   ','.join(f'{a:x}+{n}' for a, n in segs))
        for a, n in segs:
            base.extend(range(a, a + n))
    base.extend(baseline_unmapped)
    iters = [(0.0, base, list(baseline_zero))] + [(t, list(p), list(z)) for t, p, z in windows]
    for n, (t_ms, pages, zero) in enumerate(iters):
        lines, unmapped = page_lines(pages, zero, version)
        head = (f'iter n={n} t-ms={t_ms:.3f} dirty={len(set(pages))} unmapped={unmapped}'
                + (f' zero={len(set(zero))}' if version >= 2 else '')
                + f' sync-us={sync_us} harvest-us={harvest_us}'
                + (f' zero-us={zero_us(n, len(set(zero)))}' if version >= 2 else ''))
        out.append(head)
        out.extend(lines)
    if end:
        out.append(f'end status={end} iterations={len(windows)}')
    return '\n'.join(out) + '\n'


def random_log(pages=262144, windows=100, hot=5000, sprinkle=500, zero_fraction=0.5,
               period_ms=100, seed=1, version=2, accel='kvm'):
    rng = random.Random(seed)
    hot_set = list(range(pages // 4, pages // 4 + hot))
    base_zero = [p for p in range(pages) if p >= pages * (1 - zero_fraction)]
    ws = []
    for i in range(1, windows + 1):
        written = set(hot_set) | {rng.randrange(pages) for _ in range(sprinkle)}
        ws.append((i * period_ms, sorted(written), []))
    return make_log([('pc.ram', pages, [(0, pages)])], ws, baseline_zero=base_zero,
                    version=version, accel=accel, period_ms=period_ms)


def main():
    ap = argparse.ArgumentParser(description='write a synthetic bitmap-trace log')
    ap.add_argument('--pages', type=int, default=262144)
    ap.add_argument('--windows', type=int, default=100)
    ap.add_argument('--hot', type=int, default=5000, help='pages rewritten in every window')
    ap.add_argument('--sprinkle', type=int, default=500, help='random pages per window')
    ap.add_argument('--zero-fraction', type=float, default=0.5,
                    help='share of RAM (at the top) zero at the start')
    ap.add_argument('--period-ms', type=int, default=100)
    ap.add_argument('--version', type=int, default=2, choices=(1, 2))
    ap.add_argument('--accel', default='kvm')
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    sys.stdout.write(random_log(a.pages, a.windows, a.hot, a.sprinkle, a.zero_fraction,
                                a.period_ms, a.seed, a.version, a.accel))


if __name__ == '__main__':
    main()
