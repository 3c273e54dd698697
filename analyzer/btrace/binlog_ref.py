# SPDX-License-Identifier: GPL-2.0-or-later
"""The binary log read as its text, in Python: the reference reader.

to_text() gives the text log (v2) QEMU would have written for the same
trace, byte for byte, or raises BinLogError at the first thing wrong: it
is how bt-report --to-text converts a log, and what parse.parse() falls
back on to name the error when the fast reader (binlog_fast.py) gives up.
"""

import bisect
import re

from .binlog_format import (BITMAP, CHANGES, MAP, RANGES_PER_LINE, RUNS, USED, VERSIONS,
                            BinLogError, Reader, change_line, records, vcpus_line)

def page_set(r, npages):
    """The page set at r (a Reader) as runs [(first, end)), ascending, maximal."""
    if r.pos >= r.end:
        raise BinLogError(f'byte {r.pos}: a page set runs past the end of its record')
    kind = r.data[r.pos]
    r.pos += 1
    n = r.varint()
    start, stop = r.pos, r.pos + n
    if stop > r.end:
        raise BinLogError(f'byte {start}: a page set runs past the end of its record')
    r.pos = stop
    runs = []
    if kind == RUNS:
        data = r.data
        pos = 0
        i = start
        append = runs.append
        try:
            while i < stop:
                c = data[i]
                i += 1
                if c < 0x80:
                    v = c
                else:
                    v, shift = c & 0x7f, 7
                    while True:
                        c = data[i]
                        i += 1
                        v |= (c & 0x7f) << shift
                        if c < 0x80:
                            break
                        shift += 7
                first = pos + (v >> 1)
                if v & 1:
                    c = data[i]
                    i += 1
                    if c < 0x80:
                        n = c
                    else:
                        n, shift = c & 0x7f, 7
                        while True:
                            c = data[i]
                            i += 1
                            n |= (c & 0x7f) << shift
                            if c < 0x80:
                                break
                            shift += 7
                    end = first + n + 2
                else:
                    end = first + 1
                append((first, end))
                pos = end + 1
        except IndexError:
            raise BinLogError(f'byte {start}: a page set runs past the end of its record')
        if i != stop:
            raise BinLogError(f'byte {start}: a page set runs past its length')
    elif kind == BITMAP:
        if n:
            bits = bin(int.from_bytes(r.data[start:stop], 'little'))[:1:-1]
            runs = [(m.start(), m.end()) for m in re.finditer('1+', bits)]
    else:
        raise BinLogError(f'byte {start - 1}: unknown page set encoding {kind}')
    if runs and runs[-1][1] > npages:
        raise BinLogError(f'byte {start}: a page set goes past page {npages}')
    return runs


def _select(runs, rank_runs):
    """The pages of runs whose rank (index in ascending order) is in
    rank_runs, as runs."""
    out = []
    j = 0
    base = 0                    # rank of runs[j][0]
    for ra, rb in rank_runs:
        while ra < rb:
            while j < len(runs) and base + runs[j][1] - runs[j][0] <= ra:
                base += runs[j][1] - runs[j][0]
                j += 1
            if j >= len(runs):
                raise BinLogError('a zero page rank beyond the dirty pages')
            a, b = runs[j]
            first = a + ra - base
            take = min(rb - ra, b - first)
            if out and out[-1][1] == first:
                out[-1] = (out[-1][0], first + take)
            else:
                out.append((first, first + take))
            ra += take
    return out


def _translate(runs, segs, used, pfn_runs, unmapped_runs):
    """QEMU's bitmap_trace_block_runs(): runs of block pages to PFN runs
    through segs, and the pages no segment maps to unmapped runs.  Returns
    how many segments contributed PFN runs (one: they need no merging)."""
    starts = [a for a, _ in runs]
    mapped = []
    used_segs = 0
    for page, npages, pfn in segs:
        end = min(page + npages, used)
        if page >= end:
            continue
        mapped.append((page, end))
        j = max(bisect.bisect_right(starts, page) - 1, 0)
        k = bisect.bisect_left(starts, end)
        if j >= k:
            continue
        used_segs += 1
        first, last = runs[j], runs[k - 1]
        if first[0] >= page and last[1] <= end:
            off = pfn - page
            pfn_runs.extend([(a + off, b - a) for a, b in runs[j:k]])
            continue
        for a, b in runs[j:k]:
            a, b = max(a, page), min(b, end)
            if a < b:
                pfn_runs.append((pfn + a - page, b - a))
    mapped.sort()
    merged = []
    for a, b in mapped:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    if merged == [(0, used)] or not runs:
        return used_segs
    k = 0
    for a, b in runs:
        while k < len(merged) and merged[k][1] <= a:
            k += 1
        x, i = a, k
        while x < b:
            if i < len(merged) and merged[i][0] < b:
                if merged[i][0] > x:
                    unmapped_runs.append((x, merged[i][0] - x))
                x = max(x, merged[i][1])
                i += 1
            else:
                unmapped_runs.append((x, b - x))
                x = b
    return used_segs


def _merge(runs):
    runs.sort()
    out = []
    for first, n in runs:
        if out and out[-1][0] + out[-1][1] == first:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((first, n))
    return out


def _put_ranges(out, word, prefix, runs):
    for i in range(0, len(runs), RANGES_PER_LINE):
        out.append(word + ''.join(
            f' {prefix}{a:x}' if n == 1 else f' {prefix}{a:x}-{a + n - 1:x}'
            for a, n in runs[i:i + RANGES_PER_LINE]) + '\n')


def to_text(data):
    """The text (format v2, or v3 for binary v4) of the binary log data (bytes)."""
    out = []
    blocks = None
    for rtype, start, end in records(data):
        r = Reader(data, start, end)
        if rtype == ord('H'):
            if blocks is not None:
                raise BinLogError(f'byte {start}: a second header')
            version = r.varint()
            if version not in VERSIONS:
                raise BinLogError(f'unsupported binary format version {version}; '
                                  f'bt-report reads versions {VERSIONS[0]} and {VERSIONS[1]}')
            qemu, accel = r.str(), r.str()
            page_size, period, iterations = r.varint(), r.varint(), r.varint()
            start_time, blocked = r.str(), r.str()
            out.append(f'bitmap-trace v{version - 1}\n')
            out.append(f'meta qemu={qemu} accel={accel} page-size={page_size} '
                       f'period-ms={period} iterations={iterations} start={start_time}\n')
            # the reasons at the start, one per line
            out.extend(f'blocked reason={x}\n' for x in blocked.split('\n') if blocked)
            blocks = []
            for _ in range(r.varint()):
                name, pages, segs = r.str(), r.varint(), r.segs()
                blocks.append([name, pages, segs])
                out.append(f'block name={name} pages={pages} map=' +
                           ','.join(f'{pfn:x}+{n}' for _, n, pfn in segs) + '\n')
        elif blocks is None:
            raise BinLogError(f'byte {start}: a record before the header')
        elif rtype == ord('I'):
            _iteration(r, blocks, out, version)
        elif rtype in CHANGES:
            out.append(change_line(rtype, r, blocks) + '\n')
        elif rtype == ord('E'):
            status, iterations = r.str(), r.varint()
            error = r.str() if r.pos < end else None
            out.append(f'end status={status} iterations={iterations}' +
                       (f' error={error}' if error is not None else '') + '\n')
        else:
            raise BinLogError(f'byte {start}: unknown record type {rtype:#x}')
        if r.pos != end:
            raise BinLogError(f'byte {r.pos}: {end - r.pos} bytes left over in a record')
    if blocks is None:
        raise BinLogError('the log has no header')
    return ''.join(out)


def _iteration(r, blocks, out, version):
    n, t_us, dirty, unmapped, zero, sync_us, harvest_us, zero_us = \
        (r.varint() for _ in range(8))
    vcpus = vcpus_line(r) if version >= 4 else None
    pfn_runs, zero_runs, ulines, uzlines = [], [], [], []
    sources = zsources = 0
    last = -1
    for _ in range(r.varint()):
        i = r.varint()
        if i <= last or i >= len(blocks):
            raise BinLogError(f'byte {r.pos}: block entry {i} out of order or unknown')
        last = i
        b = blocks[i]
        flags = r.varint()
        if flags & ~(USED | MAP):
            raise BinLogError(f'byte {r.pos}: unknown block entry flags {flags:#x}')
        if flags & USED:
            b[1] = r.varint()
        if flags & MAP:
            b[2] = r.segs()
        runs = page_set(r, b[1])
        ndirty = sum(e - a for a, e in runs)
        zruns = _select(runs, page_set(r, ndirty))
        urun, uzero = [], []
        sources += _translate(runs, b[2], b[1], pfn_runs, urun)
        zsources += _translate(zruns, b[2], b[1], zero_runs, uzero)
        _put_ranges(ulines, 'unmapped', b[0] + ':', urun)
        _put_ranges(uzlines, 'unmapped-zero', b[0] + ':', uzero)
    out.append(f'iter n={n} t-ms={t_us // 1000}.{t_us % 1000:03d} dirty={dirty} '
               f'unmapped={unmapped} zero={zero} sync-us={sync_us} '
               f'harvest-us={harvest_us} zero-us={zero_us}\n')
    if vcpus is not None:
        out.append(vcpus + '\n')
    # the runs of one segment are sorted and apart already
    _put_ranges(out, 'pfns', '', _merge(pfn_runs) if sources > 1 else pfn_runs)
    out.extend(ulines)
    _put_ranges(out, 'zero', '', _merge(zero_runs) if zsources > 1 else zero_runs)
    out.extend(uzlines)
