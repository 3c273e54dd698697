# SPDX-License-Identifier: GPL-2.0-or-later
"""The binary bitmap-trace log (format v3): read it as text, and write it.

docs/devel/migration/bitmap-trace.rst ("Binary log") has the format.  A
binary log carries exactly what the text log (v2) of the same trace does,
and to_text() gives that text byte for byte, as QEMU would have written it;
parse.parse() reads a binary log through it.

Writer builds a binary log the way QEMU does (the cheaper of runs and a
bitmap for every page set); the tests use it to build logs by hand.
"""

import bisect
import re

MAGIC = b'\x89BTR\r\n\x1a\n'
VERSION = 3
RANGES_PER_LINE = 256
USED, MAP = 1, 2            # block entry flags
RUNS, BITMAP = 0, 1         # page set encodings


class BinLogError(Exception):
    pass


def is_binary(data):
    return data[:len(MAGIC)] == MAGIC


class _Reader:
    __slots__ = ('data', 'pos', 'end')

    def __init__(self, data, pos, end):
        self.data = data
        self.pos = pos
        self.end = end

    def varint(self):
        data, pos, end = self.data, self.pos, self.end
        v = shift = 0
        while True:
            if pos >= end:
                raise BinLogError(f'byte {pos}: a number runs past the end of its record')
            c = data[pos]
            pos += 1
            v |= (c & 0x7f) << shift
            if c < 0x80:
                self.pos = pos
                return v
            shift += 7
            if shift > 63:
                raise BinLogError(f'byte {pos}: a number longer than 64 bits')

    def str(self):
        n = self.varint()
        if self.pos + n > self.end:
            raise BinLogError(f'byte {self.pos}: a string runs past the end of its record')
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return s.decode('utf-8')
        except UnicodeDecodeError:
            raise BinLogError(f'byte {self.pos}: a string that is not UTF-8')

    def segs(self):
        return [(self.varint(), self.varint(), self.varint()) for _ in range(self.varint())]

    def page_set(self, npages):
        """A page set as runs [(first, end)), ascending, maximal."""
        if self.pos >= self.end:
            raise BinLogError(f'byte {self.pos}: a page set runs past the end of its record')
        kind = self.data[self.pos]
        self.pos += 1
        n = self.varint()
        start, stop = self.pos, self.pos + n
        if stop > self.end:
            raise BinLogError(f'byte {start}: a page set runs past the end of its record')
        self.pos = stop
        runs = []
        if kind == RUNS:
            data = self.data
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
                bits = bin(int.from_bytes(self.data[start:stop], 'little'))[:1:-1]
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


def records(data):
    """(type, offset, end) of each record of a binary log, after the magic."""
    if not is_binary(data):
        raise BinLogError('not a binary bitmap-trace log (no magic)')
    pos = len(MAGIC)
    while pos < len(data):
        rtype = data[pos]
        r = _Reader(data, pos + 1, len(data))
        n = r.varint()
        if r.pos + n > len(data):
            raise BinLogError(f'byte {pos}: the last record is incomplete '
                              f'({len(data) - r.pos} of {n} bytes)')
        yield rtype, r.pos, r.pos + n
        pos = r.pos + n


# What a sync found changed, after its iteration record: A, a RAM block
# added (it takes the next block number); R, a block removed; B, a new
# migration blocker; U (logs of earlier versions), a block not traced
_CHANGES = {ord('A'), ord('R'), ord('B'), ord('U')}


def _change(rtype, r, blocks):
    """The text line of an A, R, B or U record."""
    if rtype == ord('A'):
        name, pages, zero, segs = r.str(), r.varint(), r.varint(), r.segs()
        blocks.append([name, pages, segs])
        return (f'added name={name} pages={pages} zero={zero} map=' +
                ','.join(f'{pfn:x}+{n}' for _, n, pfn in segs))
    if rtype == ord('R'):
        i = r.varint()
        if i >= len(blocks):
            raise BinLogError(f'byte {r.pos}: removed block {i} is unknown')
        return f'removed name={blocks[i][0]}'
    if rtype == ord('B'):
        return f'blocked reason={r.str()}'
    name, pages = r.str(), r.varint()
    return f'untraced name={name} pages={pages}'


def to_text(data):
    """The text (format v2) of the binary log data (bytes)."""
    out = []
    blocks = None
    for rtype, start, end in records(data):
        r = _Reader(data, start, end)
        if rtype == ord('H'):
            if blocks is not None:
                raise BinLogError(f'byte {start}: a second header')
            version = r.varint()
            if version != VERSION:
                raise BinLogError(f'unsupported binary format version {version}; '
                                  f'bt-report reads version {VERSION}')
            qemu, accel = r.str(), r.str()
            page_size, period, iterations = r.varint(), r.varint(), r.varint()
            start_time, blocked = r.str(), r.str()
            out.append('bitmap-trace v2\n')
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
            _iteration(r, blocks, out)
        elif rtype in _CHANGES:
            out.append(_change(rtype, r, blocks) + '\n')
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


def _iteration(r, blocks, out):
    n, t_us, dirty, unmapped, zero, sync_us, harvest_us, zero_us = \
        (r.varint() for _ in range(8))
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
        runs = r.page_set(b[1])
        ndirty = sum(e - a for a, e in runs)
        zruns = _select(runs, r.page_set(ndirty))
        urun, uzero = [], []
        sources += _translate(runs, b[2], b[1], pfn_runs, urun)
        zsources += _translate(zruns, b[2], b[1], zero_runs, uzero)
        _put_ranges(ulines, 'unmapped', b[0] + ':', urun)
        _put_ranges(uzlines, 'unmapped-zero', b[0] + ':', uzero)
    out.append(f'iter n={n} t-ms={t_us // 1000}.{t_us % 1000:03d} dirty={dirty} '
               f'unmapped={unmapped} zero={zero} sync-us={sync_us} '
               f'harvest-us={harvest_us} zero-us={zero_us}\n')
    # the runs of one segment are sorted and apart already
    _put_ranges(out, 'pfns', '', _merge(pfn_runs) if sources > 1 else pfn_runs)
    out.extend(ulines)
    _put_ranges(out, 'zero', '', _merge(zero_runs) if zsources > 1 else zero_runs)
    out.extend(uzlines)


# Writing

def _varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7f | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _str(s):
    b = s.encode('utf-8')
    return _varint(len(b)) + b


def _segs(segs):
    return _varint(len(segs)) + b''.join(
        _varint(p) + _varint(n) + _varint(f) for p, n, f in segs)


def encode_set(pages):
    """A set of page numbers, as QEMU encodes it: the cheaper of its runs and
    its bitmap (runs when equal)."""
    pages = sorted(set(pages))
    if not pages:
        return bytes([RUNS]) + _varint(0)
    runs = bytearray()
    pos, i = 0, 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        length = j - i + 1
        runs += _varint((pages[i] - pos) << 1 | (length > 1))
        if length > 1:
            runs += _varint(length - 2)
        pos = pages[j] + 2
        i = j + 1
    bitmap_len = pages[-1] // 8 + 1
    if len(runs) <= bitmap_len:
        return bytes([RUNS]) + _varint(len(runs)) + bytes(runs)
    value = 0
    for p in pages:
        value |= 1 << p
    return bytes([BITMAP]) + _varint(bitmap_len) + value.to_bytes(bitmap_len, 'little')


def _record(rtype, payload):
    return rtype.encode() + _varint(len(payload)) + payload


class Writer:
    """Build a binary log: header(), iteration() for each iteration, end()."""

    def __init__(self):
        self.data = bytearray()
        self.blocks = []        # [used pages, segs] as the reader knows them

    def header(self, qemu, accel, page_size, period_ms, iterations, start, blocks,
               blocked=''):
        """blocks: (name, pages, segs), segs [(page, npages, pfn)] in GPA order;
        blocked: the reasons, separated by newlines."""
        p = _varint(VERSION) + _str(qemu) + _str(accel) + _varint(page_size)
        p += _varint(period_ms) + _varint(iterations) + _str(start) + _str(blocked)
        p += _varint(len(blocks))
        for name, pages, segs in blocks:
            p += _str(name) + _varint(pages) + _segs(segs)
            self.blocks.append([pages, list(segs)])
        self.data += MAGIC + _record('H', p)

    def iteration(self, n, t_us, dirty, unmapped, zero, sync_us, harvest_us,
                  zero_us, entries):
        """entries: {block index: (dirty pages, zero pages[, used[, segs]])}."""
        p = b''.join(_varint(v) for v in (n, t_us, dirty, unmapped, zero,
                                          sync_us, harvest_us, zero_us))
        p += _varint(len(entries))
        for i in sorted(entries):
            e = entries[i]
            pages, zpages = sorted(set(e[0])), set(e[1])
            used = e[2] if len(e) > 2 else self.blocks[i][0]
            segs = list(e[3]) if len(e) > 3 else self.blocks[i][1]
            flags = (USED if used != self.blocks[i][0] else 0) | \
                (MAP if segs != self.blocks[i][1] else 0)
            p += _varint(i) + _varint(flags)
            if flags & USED:
                p += _varint(used)
            if flags & MAP:
                p += _segs(segs)
            self.blocks[i] = [used, segs]
            p += encode_set(pages)
            p += encode_set([k for k, pg in enumerate(pages) if pg in zpages])
        self.data += _record('I', p)

    def untraced(self, name, pages):
        self.data += _record('U', _str(name) + _varint(pages))

    def added(self, name, pages, zero, segs):
        self.data += _record('A', _str(name) + _varint(pages) + _varint(zero) +
                             _segs(segs))
        self.blocks.append([pages, list(segs)])

    def removed(self, index):
        self.data += _record('R', _varint(index))

    def blocked(self, reason):
        self.data += _record('B', _str(reason))

    def end(self, status, iterations, error=None):
        p = _str(status) + _varint(iterations)
        if error is not None:
            p += _str(error)
        self.data += _record('E', p)


# Reading with numpy: what parse.parse() uses.  The same log as to_text(),
# but the PFN ranges come as arrays, never as text; the other lines (few)
# are the text to_text() writes.  Anything it does not expect raises
# BinLogError, and parse then reads the log through to_text(), which gives
# the error.

import numpy as np  # noqa: E402

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
    """_Reader.page_set() as (starts, ends) int64 arrays (ends exclusive)."""
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
        r = _Reader(data, start, end)
        if rtype == ord('H'):
            if blocks is not None:
                raise BinLogError('a second header')
            version = r.varint()
            if version != VERSION:
                raise BinLogError('unsupported binary format version')
            qemu, accel = r.str(), r.str()
            page_size, period, iterations = r.varint(), r.varint(), r.varint()
            start_time, blocked = r.str(), r.str()
            yield 'bitmap-trace v2'
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
            yield from _iteration_np(r, blocks)
        elif rtype in _CHANGES:
            yield _change(rtype, r, blocks)
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


def _iteration_np(r, blocks):
    n, t_us, dirty, unmapped, zero, sync_us, harvest_us, zero_us = \
        (r.varint() for _ in range(8))
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
    for word, parts, count, after in (('pfns', pparts, pcount, ulines),
                                      ('zero', zparts, zcount, uzlines)):
        parts, nranges = _merge_np(parts)
        if nranges:
            yield (word, parts, nranges, count, -(-nranges // RANGES_PER_LINE))
        yield from after
