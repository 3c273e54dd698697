# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report --plot-dir: the trace and the prediction as pictures (matplotlib).

Four figures, each written as DIR/<name>.<format> for every --plot-format
(png, svg; pdf works too):

  heatmap          dirtied pages, time (the measured windows, left to right)
                   x guest-physical address (bottom to top), each cell the
                   number of (page, window) dirtyings in its bin of pages and
                   windows, on a log colour scale; empty cells are white.
                   The address axis is the mapped RAM of the log's block
                   lines, segment after segment in address order with the
                   holes between them left out; block boundaries are lines,
                   labelled with the block's name and the segment's address.
                   Pages dirtied while unmapped (block:page in the log) have
                   no address and are left out; the title counts them.
  working-set      the working-set curve: distinct pages dirtied in a span
                   of k consecutive windows (mean over the trace,
                   summary.working_set), against the span's length, with the
                   line k x (mean window) that a guest never rewriting a page
                   would follow and the distinct pages of the whole trace.
  dirty-per-window the pages dirtied in each window, split into those found
                   all zero and the others in a v2 log, and how many of them
                   were unmapped.
  migration        per max-bandwidth (rows) and downtime limit (columns):
                   the simulator's pending bytes over time (simulate.py, THE
                   TIME SERIES), the syncs that end the rounds (dots), the
                   threshold at each (dashes), the switchover (the VM stops)
                   and the end of the stop-and-copy; time in the rounds'
                   clock, 0 at the setup sync.

matplotlib is imported only here, with the Agg backend through Figure
objects (no pyplot, no display).  heatmap_bins() is the binning, kept apart
from the drawing so that it can be tested.
"""

import math
import os

import numpy as np

import matplotlib
matplotlib.use('Agg')
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .formatting import MIB, fmt_s  # noqa: E402

FORMATS = ('png', 'svg', 'pdf')
DPI = 100
MAX_ROWS = 600          # address bins of the heatmap, at most
MAX_COLS = 600          # time bins of the heatmap, at most


# ---------------------------------------------------------------------------
# The heatmap's binning

class Heatmap:
    """The heatmap's cells.

    counts[c, r]: the (page, window) dirtyings of the mapped pages of
    address row r in the windows of time column c.
    Time column c holds windows c*windows_per_col+1 .. (c+1)*windows_per_col
    (the last one fewer when N is not a multiple), from t_edges_ms[c] to
    t_edges_ms[c+1] (the t-ms of the iterations that bound them).
    Address rows: the log's mapped segments (block map ranges) in PFN order;
    segment s is rows seg_row[s] .. seg_row[s+1]-1, row seg_row[s]+j holding
    PFNs seg_first[s] + j*row_pages .. (the last row of a segment may hold
    fewer pages)."""

    def __init__(self, counts, row_pages, windows_per_col, t_edges_ms, segments, seg_row,
                 unmapped):
        self.counts = counts
        self.row_pages = row_pages
        self.windows_per_col = windows_per_col
        self.t_edges_ms = t_edges_ms
        self.segments = segments        # [(first_pfn, last_pfn, block)]
        self.seg_first = np.array([s[0] for s in segments], dtype=np.int64)
        self.seg_row = seg_row          # len(segments) + 1 row boundaries
        self.unmapped = unmapped        # pages dirtied while unmapped, all windows

    def cell(self, window, pfn):
        """The (column, row) of a page of window n (1..N) at a PFN."""
        s = int(np.searchsorted(self.seg_first, pfn, side='right')) - 1
        first, last, _ = self.segments[s]
        if not first <= pfn <= last:
            raise ValueError(f'pfn {pfn:x} is not mapped')
        return ((window - 1) // self.windows_per_col,
                int(self.seg_row[s]) + (pfn - first) // self.row_pages)


def _rows_needed(lengths, row_pages):
    return int(sum(-(-n // row_pages) for n in lengths))


def heatmap_bins(log, row_pages=None, windows_per_col=None, max_rows=MAX_ROWS,
                 max_cols=MAX_COLS):
    """Bin the measured windows' mapped pages: a Heatmap.

    row_pages (pages per address row) defaults to the smallest power of two
    that needs at most max_rows rows (a segment starts a new row);
    windows_per_col (windows per time column) to the fewest that need at
    most max_cols columns."""
    segments = list(log.map)
    lengths = [b - a + 1 for a, b, _ in segments]
    if row_pages is None:
        row_pages = 1
        while _rows_needed(lengths, row_pages) > max_rows and row_pages < (1 << 40):
            row_pages *= 2
    windows = log.iters[1:]
    n = len(windows)
    if windows_per_col is None:
        windows_per_col = max(1, -(-n // max_cols))
    ncols = -(-n // windows_per_col)
    seg_row = np.concatenate(([0], np.cumsum([-(-x // row_pages) for x in lengths]))).astype(
        np.int64)
    nrows = int(seg_row[-1])

    # The PFN bounds of every row: [row_lo, row_hi)
    row_lo = np.zeros(nrows, dtype=np.int64)
    row_hi = np.zeros(nrows, dtype=np.int64)
    for s, (first, last, _) in enumerate(segments):
        k = np.arange(seg_row[s + 1] - seg_row[s], dtype=np.int64)
        row_lo[seg_row[s]:seg_row[s + 1]] = first + k * row_pages
        row_hi[seg_row[s]:seg_row[s + 1]] = np.minimum(first + (k + 1) * row_pages, last + 1)

    counts = np.zeros((ncols, nrows), dtype=np.int64)
    unmapped = 0
    for i, it in enumerate(windows):
        unmapped += it.unmapped
        r = it.pfn_array
        if not len(r):
            continue
        starts = r[:, 0]
        lens = r[:, 1] - r[:, 0] + 1
        before = np.concatenate(([0], np.cumsum(lens)))     # pages in the ranges before j

        def below(x):
            # listed pages < x: the ranges are ascending and disjoint
            j = np.searchsorted(starts, x, side='right') - 1
            jj = np.maximum(j, 0)
            inside = np.clip(x - starts[jj], 0, lens[jj])
            return np.where(j < 0, 0, before[jj] + inside)
        counts[i // windows_per_col] += below(row_hi) - below(row_lo)

    t = [it.t_ms for it in log.iters]
    t_edges = [t[0]] + [t[min((c + 1) * windows_per_col, n)] for c in range(ncols)] \
        if n else [t[0]] if t else [0.0]
    return Heatmap(counts, row_pages, windows_per_col, np.array(t_edges, dtype=float),
                   segments, seg_row, unmapped)


# ---------------------------------------------------------------------------
# Drawing

def _pages_text(pages, ps):
    b = pages * ps
    if b >= MIB:
        return f'{b / MIB:g} MiB'
    return f'{b / 1024:g} KiB'


def _subtitle(log, path):
    m = log.meta
    ram = sum(b['pages'] for b in log.blocks) * m['page_size'] / MIB
    return (f'{os.path.basename(path)}: QEMU {m["qemu"]}, {m["accel"]}, '
            f'{max(len(log.iters) - 1, 0)} windows of {m["period_ms"]} ms, '
            f'{ram:.1f} MiB traced')


def _save(fig, outdir, name, formats):
    paths = []
    for fmt in formats:
        path = os.path.join(outdir, f'{name}.{fmt}')
        meta = {'png': {'Software': None}, 'svg': {'Date': None},
                'pdf': {'CreationDate': None}}[fmt]
        with matplotlib.rc_context({'svg.hashsalt': 'bitmap-trace'}):
            fig.savefig(path, format=fmt, dpi=DPI, metadata=meta, bbox_inches='tight',
                        pad_inches=0.15)
        paths.append(path)
    return paths


def _gpa(pfn, ps):
    b = pfn * ps
    for unit, shift in (('G', 30), ('M', 20)):
        if b and b % (1 << shift) == 0:
            return f'0x{b:x} ({b >> shift} {unit}iB)'
    return f'0x{b:x}'


def _block_labels(ax, hm, ps, nrows):
    """Segment boundaries as dashed lines (a hole in the address space or
    another block), address ticks at the segment starts and at round
    addresses inside, block names on the right; labels that would overlap
    are left out (segment starts win)."""
    min_gap = max(nrows * 0.045, 1)
    total = sum(last - first + 1 for first, last, _ in hm.segments)
    step = 1
    while step * 8 < total:
        step *= 2
    starts, inner = [], []
    for s, (first, last, block) in enumerate(hm.segments):
        r0 = int(hm.seg_row[s])
        if s:
            ax.axhline(r0, color='0.35', lw=0.8, ls='--')
            end = hm.segments[s - 1][1] + 1
            if end < first:
                up = r0 < nrows / 2         # keep the note inside the axes
                ax.annotate(f'hole 0x{end * ps:x}-0x{first * ps - 1:x} left out',
                            (0.005, r0), xycoords=('axes fraction', 'data'),
                            xytext=(0, 2 if up else -2), textcoords='offset points',
                            va='bottom' if up else 'top', ha='left', fontsize=7,
                            color='0.3')
        starts.append((r0, first))
        k = (first // step + 1) * step
        while k <= last:
            inner.append((r0 + (k - first) / hm.row_pages, k))
            k += step
    if hm.segments:
        starts.append((nrows, hm.segments[-1][1] + 1))
    kept = []
    for r, pfn in starts + inner:
        if all(abs(r - x) >= min_gap for x, _ in kept):
            kept.append((r, pfn))
    kept.sort()
    ax.set_yticks([r for r, _ in kept])
    ax.set_yticklabels([_gpa(pfn, ps) for _, pfn in kept], fontsize=8)
    last_name = -math.inf
    for s, (first, last, block) in enumerate(hm.segments):
        mid = (int(hm.seg_row[s]) + int(hm.seg_row[s + 1])) / 2
        if mid - last_name >= min_gap:
            ax.text(1.01, mid / nrows, f'{block}\n{_pages_text(last - first + 1, ps)}',
                    transform=ax.transAxes, va='center', ha='left', fontsize=8)
            last_name = mid


def plot_heatmap(log, path, outdir, formats, hm=None):
    hm = hm or heatmap_bins(log)
    ps = log.meta['page_size']
    ncols, nrows = hm.counts.shape
    fig = Figure(figsize=(10, 6.2))
    ax = fig.add_axes([0.17, 0.1, 0.62, 0.76])
    cax = fig.add_axes([0.87, 0.1, 0.02, 0.76])
    t = hm.t_edges_ms / 1000
    vmax = max(int(hm.counts.max()) if hm.counts.size else 1, 2)
    data = np.ma.masked_equal(hm.counts.T, 0)
    cmap = matplotlib.colormaps['inferno_r'].copy()
    cmap.set_bad('white')
    if ncols and nrows:
        mesh = ax.pcolormesh(t, np.arange(nrows + 1), data, cmap=cmap,
                             norm=LogNorm(vmin=1, vmax=vmax), rasterized=True,
                             shading='flat')
        cb = fig.colorbar(mesh, cax=cax)
    else:
        cb = None
    if cb is not None:
        cb.set_label(f'dirtied pages in the cell (at most {hm.row_pages * hm.windows_per_col})')
    _block_labels(ax, hm, ps, nrows)
    ax.set_xlim(t[0], t[-1] if len(t) > 1 and t[-1] > t[0] else t[0] + 1)
    ax.set_ylim(0, max(nrows, 1))
    if not (ncols and nrows):
        ax.text(0.5, 0.5, 'nothing to draw: ' + ('no measured window' if not ncols
                                                 else 'no block is mapped'),
                transform=ax.transAxes, ha='center', va='center')
    ax.set_xlabel('time since the baseline sync, s')
    ax.set_ylabel('guest-physical address (unmapped holes left out)')
    win = 'window' if hm.windows_per_col == 1 else f'{hm.windows_per_col} windows'
    fig.suptitle('Dirtied pages over time and guest-physical address', fontsize=13)
    note = (f'a cell: {win} x {hm.row_pages} pages ({_pages_text(hm.row_pages, ps)}); '
            f'log colour scale, white = none dirtied')
    if hm.unmapped:
        note += f'; {hm.unmapped} page dirtyings while unmapped not shown'
    ax.set_title(_subtitle(log, path) + '\n' + note, fontsize=8.5)
    return _save(fig, outdir, 'heatmap', formats)


def plot_working_set(log, res, path, outdir, formats):
    ps = log.meta['page_size']
    curve = res.get('working_set') or []
    n = len(curve)
    w_s = res['window_ms'] / 1000
    x = np.arange(1, n + 1) * w_s
    y = np.array(curve) * ps / MIB
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, y, marker='o' if n <= 60 else None, ms=3.5, lw=1.8, color='C0',
            label='distinct pages dirtied in a span (mean over the trace)')
    distinct = res['distinct_pages'] * ps / MIB
    ax.plot(x, np.arange(1, n + 1) * (y[0] if n else 0), ls=':', color='0.4',
            label='span x mean window (if no page were dirtied twice)')
    ax.axhline(distinct, color='C3', ls='--', lw=1,
               label=f'distinct pages of the whole trace: {distinct:.1f} MiB')
    if n > 100:
        ax.set_xscale('log')
    ax.set_xlim(0 if n <= 100 else w_s * 0.9, x[-1] * 1.02 if n else 1)
    ax.set_ylim(0, max(distinct * 1.2, 1e-3))
    ax.set_xlabel('span: consecutive windows, s')
    ax.set_ylabel('distinct pages dirtied, MiB')
    sec = ax.secondary_yaxis('right', functions=(lambda m: m * MIB / ps, lambda p: p * ps / MIB))
    sec.set_ylabel('pages')
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right', fontsize=9)
    fig.suptitle('Working set: how much RAM the guest dirties in a span of time', fontsize=13)
    ax.set_title(_subtitle(log, path), fontsize=8.5)
    fig.tight_layout()
    return _save(fig, outdir, 'working-set', formats)


def plot_dirty(log, res, path, outdir, formats):
    ps = log.meta['page_size']
    wins = res['windows']
    t0 = log.iters[0].t_ms
    edges = np.array([t0] + [w['t_ms'] for w in wins]) / 1000
    dirty = np.array([w['dirty'] for w in wins], dtype=float)
    unm = np.array([w['unmapped'] for w in wins], dtype=float)
    fig = Figure(figsize=(10, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    def steps(v):           # fill_between(step='post') wants the last value twice
        return np.append(v, v[-1]) if len(v) else np.zeros(1)
    if log.has_zero:
        zero = np.array([w['zero'] for w in wins], dtype=float)
        ax.fill_between(edges, 0, steps(dirty - zero), step='post', color='C0', lw=0,
                        label=f'dirtied, not zero (sent as {_pages_text(1, ps)} pages): '
                              f'{int((dirty - zero).sum())}')
        ax.fill_between(edges, steps(dirty - zero), steps(dirty), step='post', color='C2',
                        lw=0, label='dirtied, all zero when scanned (sent as 9-byte '
                                    f'records): {int(zero.sum())}')
    else:
        ax.fill_between(edges, 0, steps(dirty), step='post', color='C0', lw=0,
                        label='dirtied (v1 log: no zero-page information)')
    ax.stairs(dirty, edges, color='k', lw=0.6)
    if unm.any():
        ax.stairs(unm, edges, color='C3', lw=1.5,
                  label=f'of them unmapped (no GPA): {int(unm.sum())}')
    mean = res['dirty_mean']
    ax.axhline(mean, color='0.3', ls='--', lw=1, label=f'mean {mean:.{0 if mean >= 100 else 1}f} pages a window')
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(dirty.max() * 1.25 if len(dirty) else 1, 1))
    ax.set_xlabel('time since the baseline sync, s (each step is one window)')
    ax.set_ylabel('pages dirtied in the window')
    sec = ax.secondary_yaxis('right', functions=(lambda p: p * ps / MIB, lambda m: m * MIB / ps))
    sec.set_ylabel('MiB')
    ax.grid(alpha=0.3, axis='y')
    ax.legend(loc='upper right', fontsize=9, ncol=2)
    rate = res.get('dirty_rate_mib_s')
    fig.suptitle('Dirty pages per window' + (f' (dirty rate {rate:.1f} MiB/s)' if rate else ''),
                 fontsize=13)
    ax.set_title(_subtitle(log, path), fontsize=8.5)
    fig.tight_layout()
    return _save(fig, outdir, 'dirty-per-window', formats)


def _pred_title(p):
    head = f'max-bandwidth {p["bandwidth"]}, downtime limit {p["downtime_limit_s"] * 1000:g} ms: '
    if p['converges']:
        rounds = f'{p["rounds"]} round' + ('' if p['rounds'] == 1 else 's')
        return (head + f'{rounds}, total {fmt_s(p["total_s"])}, '
                f'downtime {fmt_s(p["downtime_s"])}')
    return head + f'does not converge ({p["rounds"]} rounds simulated)'


def plot_migration(log, res, path, outdir, formats, trace_s=None):
    preds = [p for p in res.get('prediction') or [] if p.get('series')]
    if not preds:
        return []
    bws = list(dict.fromkeys(p['bandwidth'] for p in preds))
    dls = list(dict.fromkeys(p['downtime_limit_s'] for p in preds))
    nr, nc = len(bws), len(dls)
    fig = Figure(figsize=(10 * (1 if nc == 1 else 0.75 * nc), 1.2 + 2.4 * nr))
    axes = fig.subplots(nr, nc, squeeze=False, sharey=True)
    for p in preds:
        ax = axes[bws.index(p['bandwidth'])][dls.index(p['downtime_limit_s'])]
        s = p['series']
        # the bitmap changes at a sync at once: a step, not a slope
        pts = []
        for x in s:
            if x[2] in ('sync', 'final-sync') and pts:
                pts.append((x[0], pts[-1][1]))
            pts.append(x[:2])
        t = np.array([x[0] for x in pts])
        b = np.array([x[1] for x in pts]) / MIB
        ax.plot(t, b, color='C0', lw=1.2, label='pending (migration bitmap)')
        syncs = [(x[0], x[1] / MIB) for x in s if x[2] == 'sync']
        if syncs:
            ax.plot(*zip(*syncs), 'o', ms=4, color='C1', label='sync: a round ends')
        th = [(r['end_s'], r['threshold_bytes'] / MIB) for r in p['round_list']
              if 'threshold_bytes' in r]
        if th:
            ax.plot(*zip(*th), '_', ms=10, mew=2, color='C3',
                    label='threshold at the sync (bandwidth x downtime limit)')
        stop = [x for x in s if x[2] == 'stop']
        if stop:
            ax.axvline(stop[0][0], color='C3', ls='--', lw=1.2, label='switchover: the VM stops')
            ax.axvspan(stop[0][0], t[-1], color='C3', alpha=0.12,
                       label=f'downtime ({fmt_s(p["downtime_s"])})')
        if trace_s and t[-1] > trace_s:
            ax.axvline(trace_s, color='0.5', ls=':', lw=1,
                       label='end of the trace (replayed from its start after)')
        ax.set_xlim(0, t[-1] * 1.01 if t[-1] > 0 else 1)
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
        ax.set_title(_pred_title(p), fontsize=9,
                     color='k' if p['converges'] else 'C3')
        ax.set_ylabel('pending, MiB')
        ax.set_xlabel('time since the setup sync, s')
    handles, labels = {}, []
    for row in axes:
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                key = lab.split(' (')[0] if lab.startswith('downtime') else lab
                if key not in handles:
                    handles[key] = h
                    labels.append(lab if not lab.startswith('downtime') else 'downtime')
    fig.legend(list(handles.values()), labels, loc='lower center', ncol=3, fontsize=8.5,
               frameon=False)
    h = fig.get_figheight()
    fig.suptitle('Predicted pre-copy migration: data left to send over time', fontsize=13,
                 y=1 - 0.1 / h, va='top')
    fig.text(0.5, 1 - 0.42 / h, _subtitle(log, path) +
             '; a replay of QEMU 10.0 pre-copy (bt-report --help)',
             ha='center', va='top', fontsize=8.5)
    fig.tight_layout(rect=(0, 0.55 / h, 1, 1 - 0.55 / h))
    return _save(fig, outdir, 'migration', formats)


def write_all(outdir, log, res, path, formats=('png', 'svg'), trace_s=None):
    """Draw every figure the log allows into outdir; return the paths written."""
    os.makedirs(outdir, exist_ok=True)
    out = plot_heatmap(log, path, outdir, formats)
    if res.get('windows') and res.get('working_set') and res.get('span_ms', 0) > 0:
        out += plot_working_set(log, res, path, outdir, formats)
        out += plot_dirty(log, res, path, outdir, formats)
    out += plot_migration(log, res, path, outdir, formats, trace_s)
    return out
