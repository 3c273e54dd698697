# SPDX-License-Identifier: GPL-2.0-or-later
"""Read and validate a bitmap-trace log: text format v1 or v2, or binary v3.

A binary log (it starts with binlog.MAGIC) is read as the text log of the
same trace, which is checked like any other: binlog.decode() gives its lines
but the PFN ranges as arrays (what binlog.to_text() would write).

The format is docs/devel/migration/bitmap-trace.rst.  v2 is v1 plus zero-page
information:

  - the first line is "bitmap-trace v2";
  - each iter line also has zero=Z (how many of the iteration's dirty pages,
    mapped or not, were all zero bytes when scanned) and zero-us=T (how long
    that scan took); fields are read by key, not by position;
  - after an iteration's pfns and unmapped lines, optional "zero" lines (PFN
    ranges in the pfns syntax, a subset of the iteration's pfns) and
    "unmapped-zero" lines (block:first[-last], a subset of its unmapped
    pages), split over several lines like pfns.

parse() raises LogError with the line number on the first error.  The PFN
ranges are kept as (n, 2) int64 arrays of inclusive (first, last)
(Iteration.pfn_array, .zero_array; .pfns and .zero_pfns give them as lists
of tuples); model.PageSpace turns them into page indexes.  The fast path
(numpy, below) reads valid logs; parse_text_ref(), the line-by-line parser,
reads any log the fast path does not take, and gives the first error.
"""

import collections
import re

import numpy as np

from . import binlog

STATUSES = ('completed', 'cancelled', 'failed')
ACCELS = ('tcg', 'kvm', 'kvm-dirty-ring', 'qtest')
VERSIONS = (1, 2)


class LogError(Exception):
    pass


def split_fields(text, lineno):
    """Parse 'key=value key=value ...'.  A value may hold spaces: a word
    without '=' belongs to the value before it."""
    fields = collections.OrderedDict()
    key = None
    for word in text.split(' '):
        m = re.match(r'^([a-z][a-z0-9-]*)=(.*)$', word)
        if m and m.group(1) not in fields:
            key = m.group(1)
            fields[key] = m.group(2)
        elif key is not None:
            fields[key] += ' ' + word
        else:
            raise LogError(f'line {lineno}: expected key=value, got {word!r}')
    return fields


def need(fields, keys, what, lineno):
    missing = [k for k in keys if k not in fields]
    if missing:
        raise LogError(f'line {lineno}: {what} line lacks {", ".join(k + "=" for k in missing)}')


def dec(value, what, lineno, signed=False):
    if not re.fullmatch(r'-?[0-9]+' if signed else r'[0-9]+', value):
        raise LogError(f'line {lineno}: {what}={value!r} is not a decimal number')
    return int(value)


def hexnum(value, what, lineno):
    if not re.fullmatch(r'[0-9a-f]+', value):
        raise LogError(f'line {lineno}: {what} {value!r} is not lowercase hex')
    return int(value, 16)


def hex_range(token, what, lineno):
    first, sep, last = token.partition('-')
    a = hexnum(first, what, lineno)
    b = hexnum(last, what, lineno) if sep else a
    if b < a:
        raise LogError(f'line {lineno}: {what} range {token} ends before it starts')
    return a, b


RANGES_LINE = re.compile(r'[0-9a-f]+(?:-[0-9a-f]+)?(?: [0-9a-f]+(?:-[0-9a-f]+)?)*')


def _fast_ranges(rest, dest):
    """Append the ranges of a well-formed line to dest; returns (pages, _),
    or (None, what is wrong with which range) when a range ends before it
    starts or is not above the one before it."""
    last = dest[-1][1] if dest else -2
    n = 0
    append = dest.append
    for tok in rest.split(' '):
        first, sep, end = tok.partition('-')
        a = int(first, 16)
        b = int(end, 16) if sep else a
        if b < a:
            return None, f'{tok} ends before it starts'
        if a <= last + 1:
            return None, (f'{tok} is not above the one before it (ranges are '
                          'ascending, disjoint and not adjacent)')
        append((a, b))
        n += b - a + 1
        last = b
    return n, None


class Iteration:
    def __init__(self, n, t_ms, dirty, unmapped, sync_us, harvest_us, lineno,
                 zero=None, zero_us=None):
        self.n = n
        self.t_ms = t_ms
        self.dirty = dirty
        self.unmapped = unmapped
        self.sync_us = sync_us
        self.harvest_us = harvest_us
        self.lineno = lineno
        self.zero = zero            # v2: pages found all zero (None in v1)
        self.zero_us = zero_us      # v2: time the zero scan took
        # (first, last) inclusive, ascending: a list of tuples (the
        # reference parser) or an (n, 2) int64 array (the fast one); read
        # them as lists with .pfns / .zero_pfns, as arrays with .pfn_array /
        # .zero_array
        self._pfns = []
        self.unmapped_pages = []    # (block, first, last)
        self._zero_pfns = []        # v2: subset of pfns
        self.unmapped_zero = []     # v2: subset of unmapped_pages
        self.untraced = []          # (name, pages): RAM added, not traced (old logs)
        self.added = []             # names of RAM blocks this sync found added
        self.removed = []           # names of RAM blocks this sync found gone
        self.blocked = []           # migration blockers this sync found new
        self.pfn_count = 0
        self.unmapped_count = 0
        self.zero_count = 0

    @property
    def total(self):
        """Pages dirtied in the window, mapped or not."""
        return self.dirty

    @property
    def pfns(self):
        """The PFN ranges, [(first, last)] inclusive, ascending."""
        return _as_list(self._pfns)

    @property
    def zero_pfns(self):
        """v2: the zero PFN ranges, a subset of pfns."""
        return _as_list(self._zero_pfns)

    @property
    def pfn_array(self):
        """The PFN ranges as an (n, 2) int64 array of (first, last)."""
        return _as_array(self._pfns)

    @property
    def zero_array(self):
        return _as_array(self._zero_pfns)


def _as_list(r):
    if isinstance(r, np.ndarray):
        return [tuple(x) for x in r.tolist()]
    return r


def _as_array(r):
    if isinstance(r, np.ndarray):
        return r
    return np.array(r, dtype=np.int64).reshape(-1, 2)


class Log:
    def __init__(self):
        self.version = None
        self.meta = {}
        self.blocked = None     # the first reason migration was blocked at the start
        self.blocked_reasons = []   # every one of them
        self.blocks = []        # dicts: name, pages, map [(first, npages)]
        # RAM blocks added during the trace: dicts as blocks', plus zero (its
        # zero pages when found), added (the iteration whose sync found it)
        # and removed (the one that found it gone, or None); a block of
        # blocks that went away has removed too
        self.added = []
        self.iters = []
        self.end = None         # dict: status, iterations, error
        self.map = []           # sorted (first, last, block) for lookups
        self.binary = False     # read from a binary log (format v3)
        self.all_pfns = None    # fast path: every PFN range of every iteration, (n, 2)

    @property
    def has_zero(self):
        return self.version >= 2


def read_text(path):
    """The text of the log at path: its own, or, for a binary log, the text
    QEMU would have written for the same trace."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise LogError(f'{path}: {e.strerror}')
    if binlog.is_binary(data):
        try:
            return binlog.to_text(data), True
        except binlog.BinLogError as e:
            raise LogError(f'binary log: {e}')
    try:
        return data.decode('utf-8'), False
    except UnicodeDecodeError as e:
        raise LogError(f'not UTF-8 text (byte {e.start})')


def parse(path):
    """Parse and validate a log file (text v1 or v2, binary v3); raise
    LogError on the first error."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise LogError(f'{path}: {e.strerror}')
    binary = binlog.is_binary(data)
    log = None
    if binary:
        log = _fast(_binary_items, data)
    elif data.isascii():
        log = _fast(_text_items, data)
    if log is None:
        # the reference: slower, and gives the first error
        text, binary = read_text(path)
        log = parse_text_ref(text)
    log.binary = binary
    return log


def _head(log, line1, line2):
    """The first two lines: the version and the meta line."""
    lines = [line1, line2] if line2 is not None else [line1]
    m = re.fullmatch(r'bitmap-trace v([0-9]+)', lines[0])
    if not m:
        if lines[0].startswith('bitmap-trace v'):
            raise LogError(f'line 1: unsupported format {lines[0][13:]!r}; '
                           'bt-report reads v1 and v2')
        raise LogError('line 1: not a bitmap-trace log (expected "bitmap-trace v1" or "v2")')
    log.version = int(m.group(1))
    if log.version not in VERSIONS:
        raise LogError(f'line 1: unsupported format {lines[0][13:]!r}; bt-report reads v1 and v2')
    if len(lines) < 2 or not lines[1].startswith('meta '):
        raise LogError('line 2: expected the meta line')

    m = split_fields(lines[1][5:], 2)
    need(m, ('qemu', 'accel', 'page-size', 'period-ms', 'iterations', 'start'), 'meta', 2)
    if m['accel'] not in ACCELS:
        raise LogError(f'line 2: accel={m["accel"]} is not one of {", ".join(ACCELS)}')
    log.meta = {
        'qemu': m['qemu'],
        'accel': m['accel'],
        'page_size': dec(m['page-size'], 'page-size', 2),
        'period_ms': dec(m['period-ms'], 'period-ms', 2),
        'iterations': dec(m['iterations'], 'iterations', 2),
        'start': m['start'],
    }
    if log.meta['page_size'] == 0 or log.meta['page_size'] & (log.meta['page_size'] - 1):
        raise LogError(f'line 2: page-size={log.meta["page_size"]} is not a power of two')


def parse_text(text):
    """Parse and validate the text of a log."""
    data = text.encode('utf-8', 'surrogatepass') if isinstance(text, str) else text
    log = _fast(_text_items, data) if data.isascii() else None
    return log if log is not None else parse_text_ref(text)


def parse_text_ref(text):
    """Parse and validate the text of a log, line by line in Python: the
    reference the fast path (parse_text) is checked against, and what gives
    the error when the fast path finds one."""
    log = Log()
    if not text:
        raise LogError('the log is empty')
    if not text.endswith('\n'):
        raise LogError('the last line is incomplete (no newline at the end)')
    lines = text[:-1].split('\n')

    _head(log, lines[0], lines[1] if len(lines) > 1 else None)
    items = ((i, *line.partition(' ')[::2]) for i, line in enumerate(lines[2:], start=3))
    _records(log, items, _ref_ranges, check_counts)
    _finish(log)
    return log


def _ref_ranges(cur, word, rest, i):
    """A pfns or zero line, parsed and checked at once."""
    dest = cur._pfns if word == 'pfns' else cur._zero_pfns
    what = 'pfn' if word == 'pfns' else 'zero pfn'
    if RANGES_LINE.fullmatch(rest):
        # the common case, checked as a whole line: no per-token regex
        n, prev = _fast_ranges(rest, dest)
        if n is None:
            raise LogError(f'line {i}: {what} range {prev}')
        if word == 'pfns':
            cur.pfn_count += n
        else:
            cur.zero_count += n
        return
    for tok in rest.split(' ') if rest else []:
        a, b = hex_range(tok, what, i)
        if dest and a <= dest[-1][1] + 1:
            raise LogError(f'line {i}: {what} range {tok} is not above the one before it '
                           '(ranges are ascending, disjoint and not adjacent)')
        dest.append((a, b))
        if word == 'pfns':
            cur.pfn_count += b - a + 1
        else:
            cur.zero_count += b - a + 1


def _records(log, items, on_ranges, on_counts):
    """The lines after the meta line, (line number, first word, the rest)
    each: on_ranges(iteration, word, rest, line number) takes the pfns and
    zero lines, on_counts(iteration) checks an iteration once all its
    lines are read."""
    names = {}                  # the blocks present, by name
    cur = None
    # Within an iteration the records come in this order (v2 adds zero and
    # unmapped-zero; what the sync found changed comes last)
    order = {'pfns': 0, 'unmapped': 1, 'zero': 2, 'unmapped-zero': 3,
             'untraced': 4, 'added': 4, 'removed': 5, 'blocked': 6}
    stage = -1
    for i, word, rest in items:
        if log.end is not None:
            raise LogError(f'line {i}: text after the end line')
        if word in order and not (word == 'blocked' and cur is None):
            if cur is None:
                raise LogError(f'line {i}: {word} line before any iteration')
            if word in ('zero', 'unmapped-zero') and log.version < 2:
                raise LogError(f'line {i}: unknown record {word!r} (zero lines are v2)')
            if order[word] < stage:
                after = [w for w, k in order.items() if k == stage][0]
                raise LogError(f'line {i}: {word} line after the {after} line')
            stage = order[word]
        if word == 'blocked':
            if not rest.startswith('reason=') or rest == 'reason=':
                raise LogError(f'line {i}: expected "blocked reason=<text>"')
            reason = rest[len('reason='):]
            if cur is not None:
                cur.blocked.append(reason)
            elif log.blocks:
                raise LogError(f'line {i}: blocked line between the block lines '
                               'and the first iteration')
            else:
                log.blocked_reasons.append(reason)
                log.blocked = log.blocked_reasons[0]
        elif word == 'removed':
            mr = re.fullmatch(r'name=(.+)', rest)
            if not mr or mr.group(1) not in names:
                raise LogError(f'line {i}: expected "removed name=<id>" of a block present')
            names.pop(mr.group(1))['removed'] = cur.n
            cur.removed.append(mr.group(1))
        elif word == 'untraced':
            mu = re.fullmatch(r'name=(\S+) pages=([0-9]+)', rest)
            if not mu:
                raise LogError(f'line {i}: expected "untraced name=<id> pages=<n>"')
            cur.untraced.append((mu.group(1), int(mu.group(2))))
        elif word in ('block', 'added'):
            if word == 'block' and log.iters:
                raise LogError(f'line {i}: block line after the first iteration')
            if word == 'block':
                mb = re.fullmatch(r'name=(.*) pages=([0-9]+)()() map=(\S*)', rest)
            else:
                mb = re.fullmatch(r'name=(.*) pages=([0-9]+)( zero=([0-9]+)) map=(\S*)',
                                  rest)
            if not mb:
                raise LogError(f'line {i}: expected "{word} name=<id> pages=<n>'
                               f'{" zero=<n>" if word == "added" else ""} map=<ranges>"')
            name = mb.group(1)
            if not name:
                raise LogError(f'line {i}: block with an empty name')
            if name in names:
                raise LogError(f'line {i}: block {name} listed twice')
            ranges = []
            for r in mb.group(5).split(',') if mb.group(5) else []:
                first, plus, npages = r.partition('+')
                if not plus:
                    raise LogError(f'line {i}: map range {r!r} is not <first-pfn>+<pages>')
                ranges.append((hexnum(first, 'map pfn', i), dec(npages, 'map pages', i)))
            block = {'name': name, 'pages': int(mb.group(2)), 'map': ranges}
            names[name] = block
            if word == 'block':
                log.blocks.append(block)
            else:
                block.update(zero=int(mb.group(4)), added=cur.n, removed=None)
                if block['zero'] > block['pages']:
                    raise LogError(f'line {i}: added block {name} has more zero pages '
                                   'than pages')
                log.added.append(block)
                cur.added.append(name)
        elif word == 'iter':
            if cur is not None:
                on_counts(cur)
            f = split_fields(rest, i)
            keys = ['n', 't-ms', 'dirty', 'unmapped', 'sync-us', 'harvest-us']
            if log.version >= 2:
                keys += ['zero', 'zero-us']
            need(f, keys, 'iter', i)
            if not re.fullmatch(r'[0-9]+\.[0-9]{3}', f['t-ms']):
                raise LogError(f'line {i}: t-ms={f["t-ms"]} is not milliseconds with 3 decimals')
            cur = Iteration(dec(f['n'], 'n', i), float(f['t-ms']),
                            dec(f['dirty'], 'dirty', i), dec(f['unmapped'], 'unmapped', i),
                            dec(f['sync-us'], 'sync-us', i), dec(f['harvest-us'], 'harvest-us', i),
                            i)
            if log.version >= 2:
                cur.zero = dec(f['zero'], 'zero', i)
                cur.zero_us = dec(f['zero-us'], 'zero-us', i)
            if cur.n != len(log.iters):
                raise LogError(f'line {i}: iteration n={cur.n}, expected n={len(log.iters)}')
            if log.iters and cur.t_ms < log.iters[-1].t_ms:
                raise LogError(f'line {i}: t-ms goes backwards ({cur.t_ms} after {log.iters[-1].t_ms})')
            log.iters.append(cur)
            stage = -1
        elif word in ('pfns', 'zero'):
            on_ranges(cur, word, rest, i)
        elif word in ('unmapped', 'unmapped-zero'):
            dest = cur.unmapped_pages if word == 'unmapped' else cur.unmapped_zero
            for tok in rest.split(' ') if rest else []:
                block, colon, pages = tok.rpartition(':')
                if not colon or block not in names:
                    raise LogError(f'line {i}: {word} page {tok!r} does not name a block')
                a, b = hex_range(pages, f'{word} page', i)
                if b >= names[block]['pages']:
                    raise LogError(f'line {i}: {word} page {tok} is beyond the end of block {block}')
                dest.append((block, a, b))
                if word == 'unmapped':
                    cur.unmapped_count += b - a + 1
                else:
                    cur.zero_count += b - a + 1
        elif word == 'end':
            if cur is not None:
                on_counts(cur)
            f = split_fields(rest, i)
            need(f, ('status', 'iterations'), 'end', i)
            if f['status'] not in STATUSES:
                raise LogError(f'line {i}: status={f["status"]} is not one of {", ".join(STATUSES)}')
            log.end = {'status': f['status'],
                       'iterations': dec(f['iterations'], 'iterations', i),
                       'error': f.get('error')}
            extra = set(f) - {'status', 'iterations', 'error'}
            if extra:
                raise LogError(f'line {i}: unknown end field {sorted(extra)[0]}=')
            if (f['status'] == 'failed') != ('error' in f):
                raise LogError(f'line {i}: error= goes with status=failed, and only with it')
        elif word not in order:
            raise LogError(f'line {i}: unknown record {word!r}')
    if cur is not None and log.end is None:
        on_counts(cur)


def _finish(log):
    if not log.blocks:
        raise LogError('no block line: the log names no traced RAM')
    check_map(log)
    check_pfns_mapped(log)
    check_baseline(log)
    check_end(log)


# ---------------------------------------------------------------------------
# The fast path
#
# The same state machine (_records) runs over the lines that are not PFN
# ranges; the pfns and zero lines are only collected, then decoded all at
# once with numpy (_decode_ranges) and checked as arrays (_check_ranges).
# Any error, or anything out of the ordinary (a number of more than 15 hex
# digits, a character that has no place in a range line), sends the log to
# the reference parser, which gives the first error in line order, as it
# always did.  So the fast path only has to be right on valid logs, and the
# tests compare it with the reference on tricky ones.

class _Fallback(Exception):
    pass


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

        _records(log, items_of(log, data), on_ranges, lambda it: None)
        _check_ranges(log, pending)
        _finish(log)
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
    _head(log, lines[0].decode(), lines[1].decode())
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
    _head(log, *head)
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


def _ascending_per_block(it, ranges, what):
    seen = {}
    for block, a, b in ranges:
        prev = seen.get(block)
        if prev is not None and a <= prev + 1:
            raise LogError(f'line {it.lineno}: iteration {it.n}: {what} pages of '
                           f'{block} are not ascending, disjoint and not adjacent')
        seen[block] = b


def _subset(small, big):
    """Is every range of the ascending list small inside a range of big?
    Both are ascending, disjoint and not adjacent, so a range of small lies
    inside one range of big or is not covered.  Returns the first range that
    is not covered, or None."""
    j = 0
    for a, b in small:
        while j < len(big) and big[j][1] < a:
            j += 1
        if j >= len(big) or big[j][0] > a or big[j][1] < b:
            return (a, b)
    return None


def check_counts(it, ranges_checked=False):
    """dirty counts every page listed, on pfns and unmapped lines alike;
    unmapped counts those on unmapped lines; v2: zero counts those on zero
    and unmapped-zero lines, each a subset of its pfns or unmapped lines."""
    if it.unmapped_count != it.unmapped:
        raise LogError(f'line {it.lineno}: iteration {it.n} says unmapped={it.unmapped} '
                       f'but lists {it.unmapped_count} unmapped pages')
    if it.pfn_count + it.unmapped_count != it.dirty:
        raise LogError(f'line {it.lineno}: iteration {it.n} says dirty={it.dirty} '
                       f'but lists {it.pfn_count + it.unmapped_count} pages '
                       f'({it.pfn_count} mapped, {it.unmapped_count} unmapped)')
    _ascending_per_block(it, it.unmapped_pages, 'unmapped')
    if it.zero is None:
        return
    _ascending_per_block(it, it.unmapped_zero, 'unmapped-zero')
    if it.zero_count != it.zero:
        raise LogError(f'line {it.lineno}: iteration {it.n} says zero={it.zero} '
                       f'but lists {it.zero_count} zero pages')
    bad = None if ranges_checked else _subset(it.zero_pfns, it.pfns)
    if bad:
        raise LogError(f'line {it.lineno}: iteration {it.n}: zero pfn range '
                       f'{bad[0]:x}-{bad[1]:x} is not among its pfns')
    blocks = sorted({blk for blk, _, _ in it.unmapped_zero})
    for blk in blocks:
        small = [(a, b) for x, a, b in it.unmapped_zero if x == blk]
        big = [(a, b) for x, a, b in it.unmapped_pages if x == blk]
        bad = _subset(small, big)
        if bad:
            raise LogError(f'line {it.lineno}: iteration {it.n}: unmapped-zero page '
                           f'{blk}:{bad[0]:x}-{bad[1]:x} is not among its unmapped pages')


def check_map(log):
    spans = []
    for b in log.blocks:
        for first, npages in b['map']:
            if npages == 0:
                raise LogError(f'block {b["name"]}: empty map range at pfn {first:x}')
            spans.append((first, first + npages - 1, b['name']))
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise LogError(f'blocks {an} and {bn} are both mapped at pfn {b0:x}')
    log.map = spans


def check_pfns_mapped(log):
    """Every logged PFN must lie in a block's map, at the start or that of a
    block added during the trace."""
    spans = sorted(log.map + [(first, first + n - 1, b['name'])
                              for b in log.added for first, n in b['map']])
    # adjacent spans joined: a range lies in one of them or is not mapped
    joined = []
    for a, b, _ in spans:
        if joined and a == joined[-1][1] + 1:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    starts = [a for a, _ in joined]
    ends = np.array([b for _, b in joined] + [-1])

    def mapped(firsts, lasts):
        k = np.searchsorted(starts, firsts, side='right') - 1
        return ((k >= 0) & (np.asarray(lasts) <= ends[k])).all()

    def all_mapped(firsts, lasts):
        """mapped() of ranges ascending, disjoint and not adjacent: the
        ranges that start in each joined span (few), found by bisection,
        must be all of them and end in it"""
        lo = np.searchsorted(firsts, jstarts, side='left')
        hi = np.searchsorted(firsts, ends[:-1], side='right')
        if int((hi - lo).sum()) != len(firsts):
            return False
        full = hi > lo
        return bool((lasts[hi[full] - 1] <= ends[:-1][full]).all())

    bad = None
    whole = log.all_pfns
    if whole is not None:
        # the fast path's iterations each ascending: bisect them when they
        # are large, instead of bisecting every range
        if len(whole) < 64 * len(log.iters):
            if mapped(whole[:, 0], whole[:, 1]):
                return
        else:
            jstarts = np.array(starts, dtype=np.int64)
            if all(all_mapped(it._pfns[:, 0], it._pfns[:, 1])
                   for it in log.iters if len(it._pfns)):
                return
    for it in log.iters:
        if not len(it._pfns):
            continue
        if isinstance(it._pfns, np.ndarray):
            firsts, lasts = it._pfns[:, 0], it._pfns[:, 1]
        else:
            firsts, lasts = zip(*it._pfns)
        if not mapped(firsts, lasts):
            bad = it
            break
    if bad is None:
        return
    for it in [bad]:
        j = 0
        for a, b in it.pfns:
            while j < len(spans) and spans[j][1] < a:
                j += 1
            # [a, b] may cross several adjacent spans.
            x = a
            k = j
            while x <= b:
                if k >= len(spans) or spans[k][0] > x:
                    raise LogError(f'line {it.lineno}: iteration {it.n} lists pfn {x:x}, '
                                   'which no block maps')
                x = spans[k][1] + 1
                k += 1


def check_baseline(log):
    if not log.iters:
        return
    base = log.iters[0]
    ram = sum(b['pages'] for b in log.blocks)
    if base.total != ram:
        raise LogError(f'line {base.lineno}: the baseline (iteration 0) lists {base.total} '
                       f'pages, but the blocks hold {ram}')


def check_end(log):
    if log.end is None:
        return
    windows = len(log.iters) - 1 if log.iters else 0
    if log.end['iterations'] != windows:
        raise LogError(f'end line: iterations={log.end["iterations"]}, but the log has '
                       f'{windows} iterations after the baseline')
    if log.end['status'] == 'completed' and windows != log.meta['iterations']:
        raise LogError(f'end line: status completed after {windows} iterations, '
                       f'but {log.meta["iterations"]} were asked for')
    if windows > log.meta['iterations']:
        raise LogError(f'{windows} iterations logged, more than the {log.meta["iterations"]} asked for')
