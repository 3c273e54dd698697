# SPDX-License-Identifier: GPL-2.0-or-later
"""The log read with numpy: the fast reader parse.parse() tries first.

parse_text_fast() reads a text log, parse_binary_fast() a binary one (its
lines from binlog.decode(), its ranges as arrays already); each returns the
Log, or None when the reference reader (textlog_ref.py, after
binlog.to_text() for a binary log) must read it instead.
"""

import numpy as np

from . import binlog
from .checks import check_counts, check_log
from .textlog import Log, LogError, read_head, read_records


# The same state machine (read_records) runs over the lines that are not PFN
# ranges; the pfns and zero lines are only collected, then decoded all at
# once with numpy (_decode_ranges) and checked as arrays (_check_ranges).
# Any error, or anything out of the ordinary (a number of more than 15 hex
# digits, a character that has no place in a range line), sends the log to
# the reference parser, which gives the first error in line order, as it
# always did.  So the fast path only has to be right on valid logs, and the
# tests compare it with the reference on tricky ones.

class _Fallback(Exception):
    pass


def parse_text_fast(data):
    """The text log data (bytes) read by the fast path, or None."""
    return _fast(_text_items, data)


def parse_binary_fast(data):
    """The binary log data read by the fast path, or None."""
    return _fast(_binary_items, data)


def _fast(items_of, data):
    """The log parsed by the fast path, or None: the reference must run."""
    try:
        log = Log()
        pending = {'pfns': ([], []), 'zero': ([], [])}

        def on_ranges(cur, word, rest, i):
            if len(rest):
                lines, owners = pending[word]
                lines.append(rest)
                owners.append(len(log.iters) - 1)

        read_records(log, items_of(log, data), on_ranges, lambda it: None)
        _check_ranges(log, pending)
        check_log(log)
        return log
    except (LogError, _Fallback, binlog.BinLogError):
        return None


def _text_items(log, data):
    """(line number, word, rest) of the lines after the meta line: rest as
    str, but as bytes for pfns and zero lines (collected, decoded later)."""
    if not data.endswith(b'\n'):
        raise _Fallback
    lines = data[:-1].split(b'\n')
    if len(lines) < 2:
        raise _Fallback
    read_head(log, lines[0].decode(), lines[1].decode())
    for i, line in enumerate(lines[2:], start=3):
        word, _, rest = line.partition(b' ')
        if word == b'pfns' or word == b'zero':
            yield i, word.decode(), rest
        else:
            yield i, word.decode(), rest.decode()


def _binary_items(log, data):
    """The same for a binary log (binlog.decode()): the lines to_text()
    would write, but each iteration's pfns and zero ranges as arrays."""
    items = binlog.decode(data)
    head = [next(items, None), next(items, None)]
    if not all(isinstance(x, str) for x in head):
        raise _Fallback
    read_head(log, *head)
    i = 3
    for item in items:
        if isinstance(item, tuple):
            word, parts, nranges, pages, nlines = item
            yield i, word, (parts, nranges, pages)
            i += nlines
            continue
        if '\n' in item:
            raise _Fallback                  # a string with a newline in it
        word, _, rest = item.partition(' ')
        yield i, word, rest
        i += 1


# A range line's characters: a hex digit -> its value, the separators -> 16
# (space), 17 (dash), 18 (newline), anything else -> 255
_CLS = np.full(256, 255, dtype=np.uint8)
_CLS[ord('0'):ord('9') + 1] = np.arange(10)
_CLS[ord('a'):ord('f') + 1] = np.arange(10, 16)
_SPACE, _DASH, _NL = 16, 17, 18
_CLS[ord(' ')], _CLS[ord('-')], _CLS[ord('\n')] = _SPACE, _DASH, _NL
_TABLE = bytes(_CLS.tolist())
_PAD = 16
_CHUNK = 1 << 23
# the low 4 x k bits of a word: the nibbles of the last k digits
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_U = np.uint64


def _nibbles(x, lens):
    """x: 8 digit values (bytes) a word, the last digit in the top byte;
    the number formed by the last lens of them."""
    x = x.byteswap()                    # the last digit in the low byte
    x &= _MASKS[lens]
    x = (x | (x >> _U(4))) & _U(0x00FF00FF00FF00FF)
    x = (x | (x >> _U(8))) & _U(0x0000FFFF0000FFFF)
    x = (x | (x >> _U(16))) & _U(0x00000000FFFFFFFF)
    return x


def _decode_chunk(rests):
    """The ranges of the range lines rests (bytes, the word taken off, none
    empty): (first, last) as int64 arrays, and the index of the first range
    of each line."""
    cb = b'\n'.join([b'\n' * (_PAD - 1)] + rests).translate(_TABLE)
    if cb.find(b'\xff', _PAD) >= 0:
        raise _Fallback                      # a character out of place
    cls = np.frombuffer(cb, dtype=np.uint8)
    body = cls[_PAD:]
    seps = np.flatnonzero(body >= _SPACE)   # each number ends at one, or at the end
    n = len(seps) + 1
    ends = np.empty(n, dtype=np.int64)
    ends[:-1] = seps
    ends[-1] = len(body)
    lens = np.empty(n, dtype=np.int64)
    lens[0] = ends[0]
    np.subtract(ends[1:], ends[:-1], out=lens[1:])
    lens[1:] -= 1
    if lens.min() < 1 or lens.max() > 15:
        raise _Fallback                      # an empty token, or a huge number
    # the 8 bytes that end at each number's end, read as one word
    words = np.ndarray(shape=(len(cb) - 7,), dtype='<u8', buffer=cb, strides=(1,))
    ends += _PAD - 8
    if lens.max() <= 8:
        vals = _nibbles(words[ends], lens)
    else:
        vals = _nibbles(words[ends], np.minimum(lens, 8))
        vals |= _nibbles(words[ends - 8], np.maximum(lens - 8, 0)) << _U(32)
    vals = vals.view(np.int64)
    sep = body[seps]
    dash = sep == _DASH                     # number k is followed by '-'
    if len(dash) > 1 and (dash[:-1] & dash[1:]).any():
        raise _Fallback                      # a-b-c
    is_last = np.zeros(n, dtype=bool)
    is_last[1:] = dash
    first = np.flatnonzero(~is_last)
    last = first + np.concatenate((dash, [False]))[first]
    # the number starting each line, and so the range starting it
    starts = np.concatenate(([0], np.flatnonzero(sep == _NL) + 1))
    return vals[first], vals[last], np.searchsorted(first, starts)


def _decode_ranges(rests):
    """_decode_chunk() over all rests, in chunks of about _CHUNK bytes:
    the ranges as an (n, 2) array of (first, last) and the range each line
    starts at."""
    parts, lines = [], []
    i = done = 0
    while i < len(rests):
        j, size = i, 0
        while j < len(rests) and (size < _CHUNK or j == i):
            size += len(rests[j]) + 1
            j += 1
        a, b, ls = _decode_chunk(rests[i:j])
        parts.append((a, b))
        lines.append(ls + done)
        done += len(a)
        i = j
    lines.append([done])
    r = np.empty((done, 2), dtype=np.int64, order='F')     # columns contiguous
    k = 0
    for a, b in parts:
        r[k:k + len(a), 0] = a
        r[k:k + len(a), 1] = b
        k += len(a)
    return r, np.concatenate(lines) if parts else np.zeros(1, dtype=np.int64)


def _check_ranges(log, pending):
    """Decode the collected pfns and zero lines, check them as the
    reference does (ascending, disjoint, not adjacent within an iteration;
    zero ranges among the pfns; the counts) and give each iteration its
    arrays."""
    nit = len(log.iters)
    arrays = {}
    binary = False
    for word, (rests, owners) in pending.items():
        owners = np.array(owners, dtype=np.int64)
        if rests and isinstance(rests[0], tuple):
            # decoded already (binary): one item an iteration, its ranges
            # as parts that binlog.decode() made ascending, disjoint and
            # not adjacent, and their pages; the zero ranges are the
            # pages of some of its pfns through the same maps, so among
            # them.  Nothing to check here
            sizes = [x[1] for x in rests]
            r = np.empty((sum(sizes), 2), dtype=np.int64, order='F')
            k = 0
            for parts, _, _ in rests:
                for x, y in parts:
                    r[k:k + len(x), 0] = x
                    r[k:k + len(x), 1] = y
                    k += len(x)
            line_start = np.concatenate(([0], np.cumsum(sizes)))
            bounds = line_start[np.searchsorted(owners, np.arange(nit + 1))]
            count = np.zeros(nit, dtype=np.int64)
            count[owners] = [x[2] for x in rests]
            binary = True
            arrays[word] = (r, r[:, 0], r[:, 1], bounds, count)
            continue
        r, line_start = _decode_ranges(rests)
        a, b = r[:, 0], r[:, 1]
        # the ranges of iteration k: bounds[k]..bounds[k + 1]
        bounds = line_start[np.searchsorted(owners, np.arange(nit + 1))]
        lens = b - a
        if (lens < 0).any():
            raise _Fallback
        if len(a) > 1:
            # ascending, disjoint, not adjacent, but across iterations
            bad = np.flatnonzero(a[1:] <= b[:-1] + 1) + 1
            if len(bad) and not np.isin(bad, bounds).all():
                raise _Fallback
        count = np.zeros(nit, dtype=np.int64)
        full = np.flatnonzero(bounds[1:] > bounds[:-1])
        if len(full):
            # pages per iteration: the empty ones in between start where
            # the next one does, so each sum runs to the next full one
            count[full] = np.add.reduceat(lens, bounds[full]) + np.diff(bounds)[full]
        arrays[word] = (r, a, b, bounds, count)
    pr, pa, pb, pbounds, pcount = arrays['pfns']
    zr, za, zb, zbounds, zcount = arrays['zero']
    if len(za) and not binary:
        # every zero range inside one pfns range of its iteration
        for k in np.flatnonzero(zcount):
            p0, p1 = pbounds[k], pbounds[k + 1]
            z0, z1 = zbounds[k], zbounds[k + 1]
            j = np.searchsorted(pa[p0:p1], za[z0:z1], side='right') - 1
            if j[0] < 0 or (pb[p0:p1][j] < zb[z0:z1]).any():
                raise _Fallback
    for k, it in enumerate(log.iters):
        it._pfns = pr[pbounds[k]:pbounds[k + 1]]
        it._zero_pfns = zr[zbounds[k]:zbounds[k + 1]]
        it.pfn_count = int(pcount[k])
        it.zero_count += int(zcount[k])     # plus the unmapped-zero pages
        check_counts(it, ranges_checked=True)
    log.all_pfns = pr
