# SPDX-License-Identifier: GPL-2.0-or-later
"""The trace's summaries: per-window counts, min/mean/max, dirty rate,
distinct pages, and the working-set curve: the mean number of distinct pages
dirtied in k consecutive windows (summarise(), the top level of bt-report's
JSON document)."""

import numpy as np

from .formatting import MIB
from .pages import PageSpace


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
    return res
