# SPDX-License-Identifier: GPL-2.0-or-later
"""A bitmap-trace log as read: Log, Iteration, and the reading both text
readers share.

Log holds the meta line, the blocks, the iterations and the end line;
Iteration one iteration, its PFN ranges as (first, last) inclusive, either
a list of tuples (the reference reader, textlog_ref.py) or an (n, 2) int64
array (the fast one, textlog_fast.py).  read_head() reads the first two
lines; read_records() is the state machine over the lines after them,
which both readers run: it checks every record but the pfns and zero
lines, which it hands to the reader's own on_ranges().
"""

import collections
import re

import numpy as np

STATUSES = ('completed', 'cancelled', 'failed')
ACCELS = ('tcg', 'kvm', 'kvm-dirty-ring', 'qtest')
VERSIONS = (1, 2, 3)


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
        # v3: per vCPU by cpu_index, the microseconds its thread ran in the
        # window (from its start for the baseline); None before v3
        self.vcpu_run_us = None
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


def read_head(log, line1, line2):
    """The first two lines: the version and the meta line."""
    lines = [line1, line2] if line2 is not None else [line1]
    m = re.fullmatch(r'bitmap-trace v([0-9]+)', lines[0])
    if not m:
        if lines[0].startswith('bitmap-trace v'):
            raise LogError(f'line 1: unsupported format {lines[0][13:]!r}; '
                           'bt-report reads v1 to v3')
        raise LogError('line 1: not a bitmap-trace log (expected "bitmap-trace v1", "v2" or "v3")')
    log.version = int(m.group(1))
    if log.version not in VERSIONS:
        raise LogError(f'line 1: unsupported format {lines[0][13:]!r}; bt-report reads v1 to v3')
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


def read_records(log, items, on_ranges, on_counts):
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
    want_vcpus = False          # v3: the line after an iter line is its vcpus line
    for i, word, rest in items:
        if log.end is not None:
            raise LogError(f'line {i}: text after the end line')
        if word == 'vcpus' and log.version < 3:
            raise LogError(f'line {i}: unknown record {word!r} (vcpus lines are v3)')
        if want_vcpus != (word == 'vcpus'):
            raise LogError(f'line {i}: ' + ('expected the vcpus line of the iteration' if want_vcpus
                                            else 'vcpus line not right after an iter line'))
        want_vcpus = False
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
            want_vcpus = log.version >= 3
        elif word == 'vcpus':
            mv = re.fullmatch(r'run-us=((?:[0-9]+(?:,[0-9]+)*)?)', rest)
            if not mv:
                raise LogError(f'line {i}: expected "vcpus run-us=<us>[,<us>...]"')
            cur.vcpu_run_us = [int(x) for x in mv.group(1).split(',')] if mv.group(1) else []
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
    if want_vcpus:
        raise LogError('the last iter line has no vcpus line')
    if cur is not None and log.end is None:
        on_counts(cur)
