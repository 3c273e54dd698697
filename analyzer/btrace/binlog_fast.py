# SPDX-License-Identifier: GPL-2.0-or-later
"""The binary log read with numpy: what parse.parse() uses.

decode() gives the same log as binlog_ref.to_text(), but the PFN ranges
come as arrays, never as text; the other lines (few) are the text
to_text() writes.  Anything it does not expect raises BinLogError, and
parse then reads the log through to_text(), which gives the error.  Each
function here does what the one of the same name (without _np) does in
binlog_ref.py.
"""

import numpy as np

from .binlog_format import (BITMAP, CHANGES, MAP, RANGES_PER_LINE, RUNS, USED, VERSIONS,
                            BinLogError, Reader, change_line, records, vcpus_line)

_BIG = 1 << 50          # page numbers and varints beyond this: leave it to to_text()


# The value of a number of one or two bytes, by the 16-bit word of its
# last two bytes (the byte before its last, then its last): a number of one
# byte has a number's last byte (< 0x80) before it
_w = np.arange(1 << 16, dtype=np.uint16)
_VALUE2 = np.where(_w & 0x80, (_w >> 8) << 7 | (_w & 0x7f), _w >> 8).astype(np.uint16)
del _w


def _varints_np(b):
    """The LEB128 numbers of the bytes b (uint8 array) as int64."""
    if not len(b):
        return np.zeros(0, dtype=np.int64)
    term = np.flatnonzero(b < 0x80)
    if not len(term) or term[-1] != len(b) - 1:
        raise BinLogError('a number runs past its page set')
    starts = np.empty(len(term), dtype=np.int64)
    starts[0] = 0
    starts[1:] = term[:-1] + 1
    lens = term - starts + 1
    width = int(lens.max())
    if width > 7:
        raise BinLogError('a number too large')
    vals = (b[starts] & 0x7f).astype(np.int64)
    for k in range(1, width):
        m = np.flatnonzero(lens > k)
        vals[m] |= (b[starts[m] + k] & 0x7f).astype(np.int64) << (7 * k)
    return vals


def _varints2_np(data, start, n):
    """_varints_np() of the n bytes of data at start, which follow a
    number's last byte: with a table when no number has more than two
    bytes (the common case: gaps below 8192 pages), then as uint16."""
    b = np.frombuffer(data, dtype=np.uint8, count=n, offset=start)
    term = np.flatnonzero(b < 0x80)
    if not len(term) or term[-1] != n - 1:
        raise BinLogError('a number runs past its page set')
    # the two bytes that end at each number's last byte, as one word
    words = np.ndarray((n,), dtype='<u2', buffer=data, offset=start - 1, strides=(1,))
    w = words[term]
    # each number of two bytes has one byte >= 0x80 before its last; if
    # that accounts for every such byte, none has more
    if np.count_nonzero(w & 0x80) != n - len(term):
        return _varints_np(b)
    return _VALUE2.take(w)


def _runs_np(v):
    """The runs (starts, ends) of the numbers v (uint16 or int64) of a page
    set's runs."""
    m = len(v)
    if v.dtype == np.int64 and v.max() >= _BIG:
        raise BinLogError('a number too large')
    # a value is a run's first page, (gap << 1 | long), or the length of
    # the long run before it: it is a length when the value before is a
    # long run's first.  After any value with the low bit clear a first
    # comes, and from there, along odd values, firsts and lengths
    # alternate: the odd values at an even place of their stretch are long
    # runs' firsts
    odd = np.flatnonzero(v & 1)
    if len(odd):
        new = np.empty(len(odd), dtype=bool)
        new[0] = True
        np.not_equal(odd[1:], odd[:-1] + 1, out=new[1:])
        if not new.all():
            k = np.arange(len(odd), dtype=np.int64)
            place = k - np.maximum.accumulate(k * new)
            odd = odd[(place & 1) == 0]
        if odd[-1] == m - 1:
            raise BinLogError('a run without its length')
        lens = odd + 1                          # the lengths' places
        first = np.ones(m, dtype=bool)
        first[lens] = False
        gap = v[first]
        extra = v[lens].astype(np.int64) + 1    # a long run's pages - 1
        long_ = odd - np.arange(len(odd))       # the long runs, among all
    else:
        gap = v
    # each run takes gap + 1 + its pages of the bitmap: the cumulated sum is
    # each run's end + 1
    ends = np.right_shift(gap, 1, dtype=np.int64)
    ends += 2
    if len(odd):
        ends[long_] += extra
    ends[0] -= 1
    np.cumsum(ends, out=ends)
    starts = ends - 1
    if len(odd):
        starts[long_] -= extra
    return starts, ends


def _page_set_np(r, npages):
    """Reader.page_set() as (starts, ends) int64 arrays (ends exclusive)."""
    if r.pos >= r.end:
        raise BinLogError('a page set runs past the end of its record')
    kind = r.data[r.pos]
    r.pos += 1
    n = r.varint()
    start, stop = r.pos, r.pos + n
    if stop > r.end:
        raise BinLogError('a page set runs past the end of its record')
    r.pos = stop
    if kind == RUNS:
        if not n:
            z = np.zeros(0, dtype=np.int64)
            return z, z
        starts, ends = _runs_np(_varints2_np(r.data, start, n))
    elif kind == BITMAP:
        if not n:
            z = np.zeros(0, dtype=np.int64)
            return z, z
        # a zero byte either side: the bits change an even number of times
        b = np.zeros(n + 2, dtype=np.uint8)
        b[1:-1] = np.frombuffer(r.data, dtype=np.uint8, count=n, offset=start)
        bits = np.unpackbits(b, bitorder='little')
        t = np.flatnonzero(bits[1:] != bits[:-1])
        t -= 7
        starts, ends = t[0::2], t[1::2]
    else:
        raise BinLogError(f'unknown page set encoding {kind}')
    if len(ends) and ends[-1] > npages:
        raise BinLogError(f'a page set goes past page {npages}')
    return starts, ends


def _select_np(s, e, ra, rb):
    """_select(): the pages of the runs [s, e) whose rank is in [ra, rb)."""
    if not len(ra):
        return ra, rb
    c = np.empty(len(s) + 1, dtype=np.int64)
    c[0] = 0
    np.cumsum(e - s, out=c[1:])
    if rb[-1] > c[-1]:
        raise BinLogError('a zero page rank beyond the dirty pages')
    if 8 * len(s) < len(ra):
        # few runs of pages (long ones): the runs of ranks each holds
        j0 = np.repeat(np.arange(len(s)), np.diff(np.searchsorted(ra, c, side='left')))
    else:
        j0 = np.searchsorted(c, ra, side='right') - 1
    over = np.flatnonzero(rb > c[j0 + 1])
    if not len(over):
        # each run of ranks within one run of pages; the runs of ranks are
        # apart, and so are the runs they give
        first = s[j0] + (ra - c[j0])
        return first, first + (rb - ra)
    # the runs of ranks that go on into the next runs of pages
    j1 = j0.copy()
    j1[over] = np.searchsorted(c, rb[over] - 1, side='right') - 1
    pieces = j1 - j0 + 1
    rep = np.repeat(np.arange(len(ra)), pieces)
    off = np.concatenate(([0], np.cumsum(pieces)[:-1]))
    j = j0[rep] + (np.arange(len(rep)) - off[rep])
    lo = np.maximum(ra[rep], c[j])
    hi = np.minimum(rb[rep], c[j + 1])
    first = s[j] + lo - c[j]
    return _join(first, first + (hi - lo))


def _join(a, b):
    """Runs [a, b), ascending: the ones that touch joined."""
    if len(a) < 2:
        return a, b
    new = np.concatenate(([True], a[1:] != b[:-1]))
    if new.all():
        return a, b
    g = np.flatnonzero(new)
    last = np.concatenate((g[1:] - 1, [len(a) - 1]))
    return a[g], b[last]


def _translate_np(s, e, segs, used, npages):
    """_translate(): the PFN ranges (first, last) of each contributing
    segment, the unmapped runs as (first, n) arrays, and how many pages the
    PFN ranges hold (of the npages of the runs)."""
    parts = []
    mapped = []
    for page, seg_pages, pfn in segs:
        end = min(page + seg_pages, used)
        if page >= end:
            continue
        mapped.append((page, end))
        j = max(int(np.searchsorted(s, page, side='right')) - 1, 0)
        k = int(np.searchsorted(s, end, side='left'))
        if j < k and e[j] <= page:
            j += 1              # the run before the segment
        if j >= k:
            continue
        off = pfn - page
        # only the first and the last run may stick out of the segment
        a = s[j:k] + off if off else s[j:k]
        last = e[j:k] + (off - 1)
        if s[j] < page:
            if not off:
                a = a.copy()
            a[0] = pfn
        if e[k - 1] > end:
            last[-1] = end - 1 + off
        parts.append((a, last))
    mapped.sort()
    merged = []
    stretched = 0
    for a, b in mapped:
        stretched += b - a
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    z = np.zeros(0, dtype=np.int64)
    if merged == [(0, used)] or not len(s):
        ua, un = z, z
    else:
        # the runs less the mapped stretches: clipped to each gap between them
        gaps, x = [], 0
        for a, b in merged:
            if a > x:
                gaps.append((x, a))
            x = max(x, b)
        gaps.append((x, 1 << 62))
        ua, un = [], []
        for ga, gb in gaps:
            a = np.maximum(s, ga)
            b = np.minimum(e, gb)
            keep = a < b
            ua.append(a[keep])
            un.append((b - a)[keep])
        ua, un = np.concatenate(ua), np.concatenate(un)
        order = np.argsort(ua, kind='stable')
        ua, un = ua[order], un[order]
    if stretched == sum(b - a for a, b in merged):
        # no page in two segments: each mapped page has one PFN
        count = npages - int(un.sum())
    else:
        count = sum(int((b - a).sum()) + len(a) for a, b in parts)
    return parts, (ua, un), count


def _merge_np(parts):
    """_merge() of the PFN ranges (first, last) of several segments: the
    parts as they are (without the empty ones) when they follow each other
    apart (one segment's runs are ascending and apart), else as one part,
    sorted, the ones that touch joined; and how many ranges."""
    parts = [p for p in parts if len(p[0])]
    prev = None
    for a, last in parts:
        if prev is not None and a[0] <= prev + 1:
            break
        prev = last[-1]
    else:
        return parts, sum(len(p[0]) for p in parts)
    a = np.concatenate([p[0] for p in parts])
    last = np.concatenate([p[1] for p in parts])
    if not (a[1:] >= a[:-1]).all():
        order = np.lexsort((last, a))
        a, last = a[order], last[order]
    a, b = _join(a, last + 1)
    last = b - 1
    if (a[1:] <= last[:-1] + 1).any():
        # PFNs twice: to_text() gives ranges that are not ascending
        raise BinLogError('PFN ranges overlap')
    return [(a, last)], len(a)


def decode(data):
    """The log as to_text() gives it, line by line (str, no newline), but
    each iteration's pfns and zero lines as one ('pfns' or 'zero', parts,
    ranges, pages, lines): its ranges as parts, (first, last) int64 arrays
    that one after the other are ascending, disjoint and not adjacent (as
    to_text() writes them), how many ranges and pages they hold and how
    many lines they would take."""
    blocks = None
    for rtype, start, end in records(data):
        r = Reader(data, start, end)
        if rtype == ord('H'):
            if blocks is not None:
                raise BinLogError('a second header')
            version = r.varint()
            if version not in VERSIONS:
                raise BinLogError('unsupported binary format version')
            qemu, accel = r.str(), r.str()
            page_size, period, iterations = r.varint(), r.varint(), r.varint()
            start_time, blocked = r.str(), r.str()
            yield f'bitmap-trace v{version - 1}'
            yield (f'meta qemu={qemu} accel={accel} page-size={page_size} '
                   f'period-ms={period} iterations={iterations} start={start_time}')
            if blocked:
                yield from (f'blocked reason={x}' for x in blocked.split('\n'))
            blocks = []
            for _ in range(r.varint()):
                name, pages, segs = r.str(), r.varint(), r.segs()
                blocks.append([name, pages, segs])
                yield (f'block name={name} pages={pages} map=' +
                       ','.join(f'{pfn:x}+{n}' for _, n, pfn in segs))
        elif blocks is None:
            raise BinLogError('a record before the header')
        elif rtype == ord('I'):
            yield from _iteration_np(r, blocks, version)
        elif rtype in CHANGES:
            yield change_line(rtype, r, blocks)
        elif rtype == ord('E'):
            status, iterations = r.str(), r.varint()
            error = r.str() if r.pos < end else None
            yield (f'end status={status} iterations={iterations}' +
                   (f' error={error}' if error is not None else ''))
        else:
            raise BinLogError('unknown record type')
        if r.pos != end:
            raise BinLogError('bytes left over in a record')
    if blocks is None:
        raise BinLogError('the log has no header')


def _lines_of(out, word, prefix, a, n):
    runs = list(zip(a.tolist(), n.tolist()))
    for i in range(0, len(runs), RANGES_PER_LINE):
        out.append(word + ''.join(
            f' {prefix}{x:x}' if k == 1 else f' {prefix}{x:x}-{x + k - 1:x}'
            for x, k in runs[i:i + RANGES_PER_LINE]))


def _iteration_np(r, blocks, version):
    n, t_us, dirty, unmapped, zero, sync_us, harvest_us, zero_us = \
        (r.varint() for _ in range(8))
    vcpus = vcpus_line(r) if version >= 4 else None
    pparts, zparts, ulines, uzlines = [], [], [], []
    pcount = zcount = 0
    last = -1
    for _ in range(r.varint()):
        i = r.varint()
        if i <= last or i >= len(blocks):
            raise BinLogError('block entry out of order or unknown')
        last = i
        b = blocks[i]
        flags = r.varint()
        if flags & ~(USED | MAP):
            raise BinLogError('unknown block entry flags')
        if flags & USED:
            b[1] = r.varint()
        if flags & MAP:
            b[2] = r.segs()
        s, e = _page_set_np(r, b[1])
        ndirty = int((e - s).sum())
        ra, rb = _page_set_np(r, ndirty)
        nzero = int((rb - ra).sum())
        zs, ze = _select_np(s, e, ra, rb)
        p, (ua, un), c = _translate_np(s, e, b[2], b[1], ndirty)
        zp, (za, zn), zc = _translate_np(zs, ze, b[2], b[1], nzero)
        pparts += p
        zparts += zp
        pcount += c
        zcount += zc
        if len(ua):
            _lines_of(ulines, 'unmapped', b[0] + ':', ua, un)
        if len(za):
            _lines_of(uzlines, 'unmapped-zero', b[0] + ':', za, zn)
    yield (f'iter n={n} t-ms={t_us // 1000}.{t_us % 1000:03d} dirty={dirty} '
           f'unmapped={unmapped} zero={zero} sync-us={sync_us} '
           f'harvest-us={harvest_us} zero-us={zero_us}')
    if vcpus is not None:
        yield vcpus
    for word, parts, count, after in (('pfns', pparts, pcount, ulines),
                                      ('zero', zparts, zcount, uzlines)):
        parts, nranges = _merge_np(parts)
        if nranges:
            yield (word, parts, nranges, count, -(-nranges // RANGES_PER_LINE))
        yield from after
