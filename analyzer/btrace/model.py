# SPDX-License-Identifier: GPL-2.0-or-later
"""The pages of a log as migration sees them, and the trace's summaries.

PageSpace numbers every page of the traced RAM the way migration walks it:
block after block in the log's block order (the order of the block lines,
which is migration's RAMBLOCK_FOREACH_NOT_IGNORED order), and inside a block
in its page order.  A block's pages are its mapped pages and its unmapped
ones: the log gives the mapped ones as PFN segments (map=first+pages,...),
the unmapped ones by their page number in the block (block:page), and the
baseline (iteration 0) lists every page.  The block pages without a GPA at
the baseline are the baseline's unmapped pages; the others are given to the
segments in the order the segments are listed.  The log does not say which
page of its block a segment starts at, and the tracer lists the segments in
GPA order: that is the block's page order for ordinary RAM (pc.ram's parts
below and above 4 GiB), not for an aliased ROM such as pc.bios, whose last
32 pages show first at 0xe0000 (isa-bios): there the order of a few pages
within their block comes out wrong, which moves nothing but when they are
sent within the bulk round.  The map is the one taken when the trace
started: a later remap (firmware shadowing, a PCI BAR moved over RAM) is
not followed.

Summaries (summarise()): per-window counts, min/mean/max, dirty rate,
distinct pages, and the working-set curve: the mean number of distinct pages
dirtied in k consecutive windows.
"""

import math

import numpy as np

MIB = 1024 * 1024


class PageSpace:
    """Migration page indexes (0..npages-1) for the pages of a log."""

    def __init__(self, log):
        self.log = log
        self.warnings = []
        blocks = log.blocks
        self.names = [b['name'] for b in blocks]
        self.index = {b['name']: i for i, b in enumerate(blocks)}
        sizes = np.array([b['pages'] for b in blocks], dtype=np.int64)
        self.block_pages = sizes
        self.block_base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.npages = int(sizes.sum())
        # block number of each page
        self.block_of = np.repeat(np.arange(len(blocks), dtype=np.int32), sizes)

        base_unmapped = {}
        if log.iters:
            for name, a, b in log.iters[0].unmapped_pages:
                base_unmapped.setdefault(name, []).append((a, b))
        seg_pfn, seg_len, seg_ord = [], [], []
        ord_to_index = []
        ordinal = 0
        for i, b in enumerate(blocks):
            um = np.zeros(b['pages'], dtype=bool)
            for a, z in base_unmapped.get(b['name'], []):
                um[a:z + 1] = True
            mapped = np.flatnonzero(~um)
            want = sum(n for _, n in b['map'])
            if want != len(mapped):
                self.warnings.append(
                    f'block {b["name"]}: its map has {want} pages but the baseline has '
                    f'{len(mapped)} mapped pages; the segments are laid on its pages in order')
                mapped = np.minimum(np.arange(want), max(b['pages'] - 1, 0))
            ord_to_index.append(self.block_base[i] + mapped)
            for first, n in b['map']:
                seg_pfn.append(first)
                seg_len.append(n)
                seg_ord.append(ordinal)
                ordinal += n
        order = np.argsort(np.array(seg_pfn, dtype=np.int64), kind='stable')
        self.seg_pfn = np.array(seg_pfn, dtype=np.int64)[order]
        self.seg_len = np.array(seg_len, dtype=np.int64)[order]
        self.seg_ord = np.array(seg_ord, dtype=np.int64)[order]
        self.ord_to_index = (np.concatenate(ord_to_index) if ord_to_index
                             else np.zeros(0, dtype=np.int64)).astype(np.int64)
        added = getattr(log, 'added', [])
        if added:
            self.warnings.append(
                'RAM was added during the trace (' +
                ', '.join(f'{b["name"]}: {b["pages"]} pages at iteration {b["added"]}'
                          for b in added) +
                '): migration refuses memory hotplug while it runs, so the prediction is '
                'for the RAM of the start, and writes to the RAM added are left out')
        gone = [b['name'] for b in log.blocks if b.get('removed') is not None]
        if gone:
            self.warnings.append(
                f'RAM was removed during the trace ({", ".join(gone)}): the prediction '
                'still sends it whole, as a migration started before the unplug would')

    # -- ranges to page indexes ---------------------------------------------

    @staticmethod
    def _expand(ranges):
        """Inclusive (first, last) ranges -> an int64 array of every number."""
        r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        if not len(r):
            return np.zeros(0, dtype=np.int64)
        lens = r[:, 1] - r[:, 0] + 1
        starts = np.repeat(r[:, 0] - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
        return starts + np.arange(int(lens.sum()), dtype=np.int64)

    def pfns_to_index(self, ranges):
        pfns = self._expand(ranges)
        if not len(pfns):
            return pfns
        j = np.searchsorted(self.seg_pfn, pfns, side='right') - 1
        inside = (j >= 0) & (pfns - self.seg_pfn[np.maximum(j, 0)] <
                             self.seg_len[np.maximum(j, 0)])
        if not inside.all():
            # the pages of RAM added during the trace, not in the start's map
            pfns, j = pfns[inside], j[inside]
        return self.ord_to_index[self.seg_ord[j] + (pfns - self.seg_pfn[j])]

    def unmapped_to_index(self, ranges):
        # the blocks of the start; RAM added during the trace is left out
        parts = [self.block_base[self.index[name]] + np.arange(a, b + 1, dtype=np.int64)
                 for name, a, b in ranges if name in self.index]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def pages(self, it):
        """Every page an iteration lists, as migration page indexes."""
        return np.concatenate((self.pfns_to_index(it.pfn_array),
                               self.unmapped_to_index(it.unmapped_pages)))

    def zero_pages(self, it):
        """The pages of a (v2) iteration that were all zero."""
        return np.concatenate((self.pfns_to_index(it.zero_array),
                               self.unmapped_to_index(it.unmapped_zero)))


def fmt_s(s):
    """Seconds for people: 4.2 ms, 420 ms, 4.20 s."""
    if s is None:
        return '-'
    if s < 0.01:
        return f'{s * 1000:.1f} ms'
    if s < 1:
        return f'{s * 1000:.0f} ms'
    return f'{s:.2f} s'


# ---------------------------------------------------------------------------
# Summaries

def working_set(space, windows):
    """D[k] for k = 0..N: the mean number of distinct pages dirtied in k
    consecutive windows, over all N-k+1 positions of such a span.

    For one page, a span misses it exactly when the span fits in a gap
    between two windows that dirty it (or before the first, after the last).
    A gap of g windows holds max(0, g-k+1) spans of k windows, so
      D[k] = distinct - sum_gaps max(0, g-k+1) / (N-k+1)."""
    n = len(windows)
    last = np.zeros(space.npages, dtype=np.int64)
    hist = np.zeros(n + 2, dtype=np.int64)
    for i, it in enumerate(windows, start=1):
        pages = space.pages(it)
        gaps = i - last[pages] - 1
        gaps = gaps[gaps > 0]
        if len(gaps):
            hist += np.bincount(gaps, minlength=n + 2)[:n + 2]
        last[pages] = i
    seen = last[last > 0]
    tail = n - seen
    tail = tail[tail > 0]
    if len(tail):
        hist += np.bincount(tail, minlength=n + 2)[:n + 2]
    distinct = int(len(seen))

    g = np.arange(n + 2, dtype=np.int64)
    count = np.cumsum(hist[::-1])[::-1]           # sum_{g'>=g} H[g']
    weight = np.cumsum((g * hist)[::-1])[::-1]    # sum_{g'>=g} g' H[g']
    curve = [0.0] * (n + 1)
    for k in range(1, n + 1):
        missed = int(weight[k]) - (k - 1) * int(count[k])
        curve[k] = distinct - missed / (n - k + 1)
    return curve, distinct


def summarise(log, space=None):
    """The trace's summary as a dict (the JSON output's top level)."""
    ps = log.meta['page_size']
    res = {
        'format': log.version,
        'meta': log.meta,
        'blocks': log.blocks,
        'end': log.end,
        'ram_pages': sum(b['pages'] for b in log.blocks),
        'baseline_pages': log.iters[0].total if log.iters else None,
        'windows': [],
    }
    if log.blocked_reasons or any(it.blocked for it in log.iters):
        # every reason migration was blocked: at the start, then as found
        res['blocked'] = [{'iteration': None, 'reason': r} for r in log.blocked_reasons] + \
            [{'iteration': it.n, 'reason': r} for it in log.iters for r in it.blocked]
    if log.added:
        res['added_blocks'] = log.added
    if log.iters and log.has_zero:
        res['baseline_zero_pages'] = log.iters[0].zero
    windows = log.iters[1:]
    prev = log.iters[0] if log.iters else None
    for it in windows:
        length = it.t_ms - prev.t_ms
        w = {'n': it.n, 't_ms': it.t_ms, 'length_ms': length,
             'dirty': it.dirty, 'unmapped': it.unmapped,
             'sync_us': it.sync_us, 'harvest_us': it.harvest_us}
        if log.has_zero:
            w['zero'] = it.zero
            w['zero_us'] = it.zero_us
        res['windows'].append(w)
        prev = it
    if not windows:
        return res
    totals = [it.total for it in windows]
    span_ms = windows[-1].t_ms - log.iters[0].t_ms
    res['dirty_min'] = min(totals)
    res['dirty_mean'] = sum(totals) / len(totals)
    res['dirty_max'] = max(totals)
    res['unmapped_total'] = sum(it.unmapped for it in windows)
    res['span_ms'] = span_ms
    res['window_ms'] = span_ms / len(windows)
    res['dirty_rate_mib_s'] = (sum(totals) * ps / MIB / (span_ms / 1000)) if span_ms > 0 else None
    if space is None:
        space = PageSpace(log)
    curve, distinct = working_set(space, windows)
    res['distinct_pages'] = distinct
    res['working_set'] = curve[1:]
    res['_curve'] = curve
    return res


# ---------------------------------------------------------------------------
# The round model (bt-report before the simulator; --model rounds)

class DirtyModel:
    """D(t): pages dirtied in t seconds, from the working-set curve.

    For t a multiple of the mean window length D is exact; between multiples
    it is interpolated linearly, below one window it is D(1 window) scaled by
    t, and beyond the trace it grows at the rate of the last half of the
    curve, never above all traced pages."""

    def __init__(self, curve, window_s, all_pages):
        self.curve = curve
        self.n = len(curve) - 1
        self.window_s = window_s
        self.all_pages = all_pages
        half = self.n // 2
        if self.n >= 2:
            self.tail_slope = max(0.0, (curve[self.n] - curve[half]) / (self.n - half))
        else:
            self.tail_slope = curve[self.n]

    def __call__(self, t):
        """Return (pages, extrapolated)."""
        x = t / self.window_s
        if x <= self.n:
            k = math.floor(x)
            if k >= self.n:
                return self.curve[self.n], False
            frac = x - k
            return self.curve[k] + (self.curve[k + 1] - self.curve[k]) * frac, False
        pages = self.curve[self.n] + self.tail_slope * (x - self.n)
        return min(pages, self.all_pages), True


def predict_rounds(model, all_pages, page_size, bandwidth, downtime_s, max_rounds):
    """The round model: round 0 sends every page, round k+1 the pages dirtied
    while round k was sent, D(t) pages; stop when they fit in the downtime.
    Every page costs page_size bytes at exactly bandwidth bytes/s."""
    pages_per_s = bandwidth / page_size
    limit_pages = pages_per_s * downtime_s
    to_send = float(all_pages)
    total_s = 0.0
    sent = 0.0
    extrapolated = False
    rounds = []
    while True:
        t = to_send / pages_per_s
        rounds.append(t)
        total_s += t
        sent += to_send
        dirtied, extra = model(t)
        extrapolated |= extra
        if dirtied <= limit_pages:
            downtime = dirtied / pages_per_s
            return {'model': 'rounds', 'converges': True, 'rounds': len(rounds),
                    'round_s': rounds, 'total_s': total_s + downtime, 'downtime_s': downtime,
                    'sent_bytes': (sent + dirtied) * page_size,
                    'extrapolated': extrapolated}
        next_s = dirtied / pages_per_s
        if next_s >= t or len(rounds) >= max_rounds:
            why = ('each round is as long as the one before: {:.1f} MiB dirtied in {}'
                   .format(dirtied * page_size / MIB, fmt_s(t))
                   if next_s >= t else
                   f'not within {max_rounds} rounds')
            return {'model': 'rounds', 'converges': False, 'rounds': len(rounds),
                    'round_s': rounds, 'total_s': None, 'downtime_s': None,
                    'sent_bytes': None, 'stuck_bytes': dirtied * page_size, 'why': why,
                    'extrapolated': extrapolated}
        to_send = dirtied
