# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report --csv-dir: the trace's and the prediction's figures as CSV.

One file per table, comma-separated, a header line first, numbers as Python
prints them (floats in their shortest exact form), an empty field for a
value the log or the prediction does not have (zero and zero_us of a v1 log,
the total time of a migration that does not converge):

  windows.csv      one row per measured window (iterations 1..N; the
                   baseline, iteration 0, lists all RAM and is left out):
                   n, t_ms (end of the window, ms since the baseline's
                   sync), length_ms, dirty, unmapped, zero, sync_us,
                   harvest_us, zero_us; the log's fields, dirty counting the
                   unmapped pages too, zero the pages found all zero
  working-set.csv  windows, span_ms, distinct_pages, distinct_mib: the
                   mean number of distinct pages dirtied in a span of that
                   many consecutive windows (summary.working_set)
  predictions.csv  one row per max-bandwidth x downtime limit: the result
                   of the prediction (converges, rounds, total_s, ...)
  rounds.csv       one row per round of each prediction: bandwidth,
                   downtime_limit_ms, round, start_s, end_s, length_s,
                   pages (sent in the round), normal_pages, zero_pages,
                   bytes, dirty_pages (what the sync that ended it found),
                   pending_bytes (after that sync), threshold_bytes
  migration.csv    the simulator's time series per prediction: bandwidth,
                   downtime_limit_ms, t_s, pending_bytes, event (see
                   simulate.py, THE TIME SERIES)

Times of the prediction (start_s, end_s, t_s) are in the rounds' clock:
0 at the setup sync; query-migrate's total-time adds setup_s (in
predictions.csv).
"""

import csv
import os

from .formatting import MIB

WINDOW_FIELDS = ('n', 't_ms', 'length_ms', 'dirty', 'unmapped', 'zero', 'sync_us',
                 'harvest_us', 'zero_us')
WORKING_SET_FIELDS = ('windows', 'span_ms', 'distinct_pages', 'distinct_mib')
PREDICTION_FIELDS = ('bandwidth', 'bandwidth_bytes_s', 'downtime_limit_ms', 'model',
                     'converges', 'rounds', 'dirty_sync_count', 'setup_s', 'switchover_s',
                     'total_s', 'downtime_s', 'sent_bytes', 'downtime_bytes', 'normal_pages',
                     'zero_pages', 'extrapolated', 'why', 'min_bandwidth_bytes_s',
                     'min_downtime_limit_ms')
ROUND_FIELDS = ('bandwidth', 'bandwidth_bytes_s', 'downtime_limit_ms', 'round', 'start_s',
                'end_s', 'length_s', 'pages', 'normal_pages', 'zero_pages', 'bytes',
                'dirty_pages', 'pending_bytes', 'threshold_bytes')
SERIES_FIELDS = ('bandwidth', 'bandwidth_bytes_s', 'downtime_limit_ms', 't_s',
                 'pending_bytes', 'event')


def _ms(seconds):
    return None if seconds is None else seconds * 1000


def window_rows(log):
    """windows.csv: the measured windows, as dicts of WINDOW_FIELDS."""
    rows = []
    for prev, it in zip(log.iters, log.iters[1:]):
        # t-ms has three decimals in the log: so has the difference
        rows.append({'n': it.n, 't_ms': it.t_ms, 'length_ms': round(it.t_ms - prev.t_ms, 3),
                     'dirty': it.dirty, 'unmapped': it.unmapped, 'zero': it.zero,
                     'sync_us': it.sync_us, 'harvest_us': it.harvest_us,
                     'zero_us': it.zero_us})
    return rows


def working_set_rows(log, res):
    ps = log.meta['page_size']
    return [{'windows': k, 'span_ms': k * res['window_ms'], 'distinct_pages': d,
             'distinct_mib': d * ps / MIB}
            for k, d in enumerate(res.get('working_set') or [], start=1)]


def _key(p):
    return {'bandwidth': p['bandwidth'], 'bandwidth_bytes_s': p['bandwidth_bytes_s'],
            'downtime_limit_ms': _ms(p['downtime_limit_s'])}


def prediction_rows(res):
    rows = []
    for p in res.get('prediction') or []:
        row = _key(p)
        row.update({k: p.get(k) for k in PREDICTION_FIELDS if k in p and k not in row})
        row['model'] = p.get('model', res.get('model'))
        row['min_downtime_limit_ms'] = _ms(p.get('min_downtime_limit_s'))
        rows.append(row)
    return rows


def round_rows(res):
    rows = []
    for p in res.get('prediction') or []:
        for i, r in enumerate(p['round_list']):
            row = _key(p)
            row['round'] = i
            row.update({k: r.get(k) for k in ROUND_FIELDS if k in r})
            rows.append(row)
    return rows


def series_rows(res):
    rows = []
    for p in res.get('prediction') or []:
        for t, pending, event in p.get('series') or []:
            row = _key(p)
            row.update(t_s=t, pending_bytes=pending, event=event)
            rows.append(row)
    return rows


def _cell(v):
    if v is None:
        return ''
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def write_csv(path, fields, rows):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(fields)
        for row in rows:
            w.writerow([_cell(row.get(k)) for k in fields])
    return path


def write_all(outdir, log, res):
    """Write the CSV files into outdir (created if need be); return their paths."""
    os.makedirs(outdir, exist_ok=True)
    out = [write_csv(os.path.join(outdir, 'windows.csv'), WINDOW_FIELDS, window_rows(log))]
    if res.get('working_set'):
        out.append(write_csv(os.path.join(outdir, 'working-set.csv'), WORKING_SET_FIELDS,
                             working_set_rows(log, res)))
    if res.get('prediction'):
        out.append(write_csv(os.path.join(outdir, 'predictions.csv'), PREDICTION_FIELDS,
                             prediction_rows(res)))
        out.append(write_csv(os.path.join(outdir, 'rounds.csv'), ROUND_FIELDS,
                             round_rows(res)))
        if any('series' in p for p in res['prediction']):
            out.append(write_csv(os.path.join(outdir, 'migration.csv'), SERIES_FIELDS,
                                 series_rows(res)))
    return out
