# SPDX-License-Identifier: GPL-2.0-or-later
"""Write synthetic bitmap-trace logs, for tests and benchmarks: the one
writer of them.

Small logs, page by page in Python (text v1 or v2): make_log() builds a log
from a description: blocks with their PFN segments, the baseline's unmapped
pages and zero pages, and per window the pages written and which of them
were zero.  A page is a PFN (int) when mapped, or (block, page) when not.
random_log() is such a log of a one-block guest whose windows each rewrite
a hot set plus a random sprinkle of pages (a benchmark for the simulator's
speed):

  python3 -m btrace.synth --pages 262144 --windows 100 --hot 5000 > big.log

Large logs, hundreds of MB, with numpy, text (v2) and binary (v3):
write_big() writes a guest of `pages` pages in one block pc.ram mapped as a
PC maps it (below 3 GiB, the rest above 4 GiB) plus a small unmapped ROM,
whose windows each dirty a share of the RAM, at random or as one sequential
stretch moving through it, a tenth of them zero pages; the analyzer's
benchmark (scripts/analyzer-bench.py) times bt-report on them.  Its
binary log is the one QEMU would write for the same trace (runs or a
bitmap, the cheaper): binlog.to_text() of it gives its text byte for byte.

Either text follows docs/devel/migration/bitmap-trace.rst: ranges
ascending, split over lines of 256 ranges.
"""

import argparse
import random
import sys

import numpy as np

from .binlog_format import BITMAP, RANGES_PER_LINE, RUNS
from .binlog_write import Writer, encode_record, encode_str, encode_varint


# Small logs (make_log, random_log)

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


# Large logs (write_big)

LOW = 0xc0000                   # pages below 3 GiB (pc.ram's first part)
ROM_PAGES = 32


def _segs(pages):
    low = min(pages, LOW)
    segs = [(0, low, 0)]
    if pages > low:
        segs.append((low, pages - low, 0x100000))
    return segs


def big_windows(pages, n, frac, mode, seed=1, zero_share=0.1):
    """Per window the dirty block pages (sorted int64) and the zero ones."""
    rng = np.random.default_rng(seed)
    k = max(int(pages * frac), 1)
    for i in range(n):
        if mode == 'random':
            dirty = np.flatnonzero(rng.random(pages) < frac)
        else:
            start = (i * k) % pages
            dirty = (start + np.arange(k)) % pages
            dirty.sort()
        zero = dirty[rng.random(len(dirty)) < zero_share]
        yield dirty.astype(np.int64), zero.astype(np.int64)


def _runs(p):
    """Sorted distinct ints -> (first, end) of maximal runs (end exclusive)."""
    if not len(p):
        return p[:0], p[:0]
    br = np.flatnonzero(np.diff(p) != 1) + 1
    starts = p[np.concatenate(([0], br))]
    ends = p[np.concatenate((br - 1, [len(p) - 1]))] + 1
    return starts, ends


def _to_pfn(pages, segs):
    out = np.empty_like(pages)
    for page, n, pfn in segs:
        m = (pages >= page) & (pages < page + n)
        out[m] = pages[m] - page + pfn
    return out


def _range_lines(word, first, last):
    """range_lines() of the ranges first..last (arrays), each with its newline."""
    return [line + '\n' for line in range_lines(
        word, [fmt_range(a, b) for a, b in zip(first.tolist(), last.tolist())])]


def _varints(v):
    """The LEB128 bytes of every value of v (uint64), concatenated."""
    v = np.asarray(v, dtype=np.uint64)
    if not len(v):
        return b''
    nb = np.ones(len(v), dtype=np.int64)
    for s in range(7, 64, 7):
        nb += v >= np.uint64(1 << s)
    width = int(nb.max())
    shifts = (np.arange(width, dtype=np.uint64) * np.uint64(7))
    m = ((v[:, None] >> shifts[None, :]) & np.uint64(0x7f)).astype(np.uint8)
    k = np.arange(width)[None, :]
    m |= np.where(k < nb[:, None] - 1, 0x80, 0).astype(np.uint8)
    return m[k < nb[:, None]].tobytes()


def encode_set_np(pages):
    """binlog.encode_set() for a sorted int64 array, with numpy."""
    if not len(pages):
        return bytes([RUNS]) + encode_varint(0)
    starts, ends = _runs(pages)
    pos = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    first = ((starts - pos) << 1) | (length > 1)
    vals = np.empty(2 * len(starts), dtype=np.int64)
    vals[0::2] = first
    vals[1::2] = length - 2
    keep = np.ones(len(vals), dtype=bool)
    keep[1::2] = length > 1
    runs = _varints(vals[keep])
    bitmap_len = int(pages[-1]) // 8 + 1
    if len(runs) <= bitmap_len:
        return bytes([RUNS]) + encode_varint(len(runs)) + runs
    bits = np.zeros(bitmap_len * 8, dtype=np.uint8)
    bits[pages] = 1
    bm = np.packbits(bits, bitorder='little').tobytes()
    return bytes([BITMAP]) + encode_varint(bitmap_len) + bm


def write_big(text_path, bin_path, pages=4 << 20, n=100, frac=0.01, mode='random',
          seed=1, period_ms=100, zero_share=0.1):
    """Write the text and/or binary log (either path may be None) of one
    trace; returns the number of dirty pages of the windows."""
    segs = _segs(pages)
    ft = open(text_path, 'w') if text_path else None
    fb = open(bin_path, 'wb') if bin_path else None
    meta = dict(qemu='10.0.13', accel='kvm', start='2026-01-01T00:00:00.000000Z')
    try:
        if ft:
            ft.write('bitmap-trace v2\n')
            ft.write(f'meta qemu={meta["qemu"]} accel={meta["accel"]} page-size=4096 '
                     f'period-ms={period_ms} iterations={n} start={meta["start"]}\n')
            ft.write(f'block name=pc.ram pages={pages} map=' +
                     ','.join(f'{pfn:x}+{k}' for _, k, pfn in segs) + '\n')
            ft.write(f'block name=rom pages={ROM_PAGES} map=\n')
        if fb:
            w = Writer()
            w.header(meta['qemu'], meta['accel'], 4096, period_ms, n, meta['start'],
                     [('pc.ram', pages, segs), ('rom', ROM_PAGES, [])])
            fb.write(w.data)
        total = 0
        base = (np.arange(pages, dtype=np.int64), np.arange(pages // 2, pages, dtype=np.int64))
        gen = big_windows(pages, n, frac, mode, seed, zero_share)
        for i in range(n + 1):
            dirty, zero = base if i == 0 else next(gen)
            t_us = i * period_ms * 1000 + (7 * i) % 1000
            rom = np.arange(ROM_PAGES, dtype=np.int64) if i == 0 else np.zeros(0, np.int64)
            romz = rom[:ROM_PAGES // 2]
            nd = len(dirty) + len(rom)
            nz = len(zero) + len(romz)
            if i:
                total += nd
            head = dict(n=i, dirty=nd, unmapped=len(rom), zero=nz, sync=300 + i % 50,
                        harvest=400 + i % 70, zus=nz // 20 + 1)
            if ft:
                out = [f'iter n={i} t-ms={t_us // 1000}.{t_us % 1000:03d} dirty={nd} '
                       f'unmapped={len(rom)} zero={nz} sync-us={head["sync"]} '
                       f'harvest-us={head["harvest"]} zero-us={head["zus"]}\n']
                for word, p in (('pfns', dirty), ('zero', zero)):
                    pf = _to_pfn(p, segs)
                    s, e = _runs(pf)
                    out += _range_lines(word, s, e - 1)
                    if word == 'pfns' and len(rom):
                        out.append(f'unmapped rom:0-{ROM_PAGES - 1:x}\n')
                    if word == 'zero' and len(romz):
                        out.append(f'unmapped-zero rom:0-{len(romz) - 1:x}\n')
                ft.write(''.join(out))
            if fb:
                p = b''.join(encode_varint(v) for v in (
                    i, t_us, nd, len(rom), nz, head['sync'], head['harvest'], head['zus']))
                entries = [(0, dirty, zero)] + ([(1, rom, romz)] if len(rom) else [])
                entries = [e for e in entries if len(e[1])]
                p += encode_varint(len(entries))
                for bi, d, z in entries:
                    p += encode_varint(bi) + encode_varint(0)
                    p += encode_set_np(d)
                    p += encode_set_np(np.searchsorted(d, z).astype(np.int64))
                fb.write(encode_record('I', p))
        if ft:
            ft.write(f'end status=completed iterations={n}\n')
        if fb:
            fb.write(encode_record('E', encode_str('completed') + encode_varint(n)))
        return total
    finally:
        if ft:
            ft.close()
        if fb:
            fb.close()


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
