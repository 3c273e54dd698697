# SPDX-License-Identifier: GPL-2.0-or-later
"""Large synthetic bitmap-trace logs, text (v2) and binary (v3), fast.

synth.py builds small logs page by page in Python; this builds logs of
hundreds of MB with numpy, for the analyzer's benchmark
(scripts/analyzer-bench.py): a guest of `pages` pages in one block pc.ram
mapped as a PC maps it (below 3 GiB, the rest above 4 GiB) plus a small
unmapped ROM, whose windows each dirty a share of the RAM, at random or as
one sequential stretch moving through it, a tenth of them zero pages.

The text is the one QEMU would write (ranges of 256 a line), the binary the
one QEMU would write for the same trace (runs or a bitmap, the cheaper):
binlog.to_text() of the binary gives the text byte for byte.
"""

import numpy as np

from . import binlog, binlog_write

RANGES_PER_LINE = 256
LOW = 0xc0000                   # pages below 3 GiB (pc.ram's first part)
ROM_PAGES = 32


def _segs(pages):
    low = min(pages, LOW)
    segs = [(0, low, 0)]
    if pages > low:
        segs.append((low, pages - low, 0x100000))
    return segs


def windows(pages, n, frac, mode, seed=1, zero_share=0.1):
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
    toks = [f'{a:x}' if a == b else f'{a:x}-{b:x}'
            for a, b in zip(first.tolist(), last.tolist())]
    return [f'{word} ' + ' '.join(toks[i:i + RANGES_PER_LINE]) + '\n'
            for i in range(0, len(toks), RANGES_PER_LINE)]


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


def encode_set(pages):
    """binlog.encode_set() for a sorted int64 array, with numpy."""
    if not len(pages):
        return bytes([binlog.RUNS]) + binlog_write.encode_varint(0)
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
        return bytes([binlog.RUNS]) + binlog_write.encode_varint(len(runs)) + runs
    bits = np.zeros(bitmap_len * 8, dtype=np.uint8)
    bits[pages] = 1
    bm = np.packbits(bits, bitorder='little').tobytes()
    return bytes([binlog.BITMAP]) + binlog_write.encode_varint(bitmap_len) + bm


def write(text_path, bin_path, pages=4 << 20, n=100, frac=0.01, mode='random',
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
            w = binlog.Writer()
            w.header(meta['qemu'], meta['accel'], 4096, period_ms, n, meta['start'],
                     [('pc.ram', pages, segs), ('rom', ROM_PAGES, [])])
            fb.write(w.data)
        total = 0
        base = (np.arange(pages, dtype=np.int64), np.arange(pages // 2, pages, dtype=np.int64))
        gen = windows(pages, n, frac, mode, seed, zero_share)
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
                p = b''.join(binlog_write.encode_varint(v) for v in (
                    i, t_us, nd, len(rom), nz, head['sync'], head['harvest'], head['zus']))
                entries = [(0, dirty, zero)] + ([(1, rom, romz)] if len(rom) else [])
                entries = [e for e in entries if len(e[1])]
                p += binlog_write.encode_varint(len(entries))
                for bi, d, z in entries:
                    p += binlog_write.encode_varint(bi) + binlog_write.encode_varint(0)
                    p += encode_set(d)
                    p += encode_set(np.searchsorted(d, z).astype(np.int64))
                fb.write(binlog_write.encode_record('I', p))
        if ft:
            ft.write(f'end status=completed iterations={n}\n')
        if fb:
            fb.write(binlog_write.encode_record('E', binlog_write.encode_str('completed') + binlog_write.encode_varint(n)))
        return total
    finally:
        if ft:
            ft.close()
        if fb:
            fb.close()
