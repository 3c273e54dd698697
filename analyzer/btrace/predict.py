# SPDX-License-Identifier: GPL-2.0-or-later
"""What bt-report computes: the trace's summary and its pre-copy predictions.

analyse() gives the result that bt-report prints (report.py) and writes
(plot.py, export.py): the summary (summary.py) and, per max-bandwidth and
downtime limit, the simulator's prediction (simulate.py), run from several
points of the trace, with, for a migration that does not converge, the
smallest max-bandwidth and downtime limit at which it would.  Options holds
what it takes from bt-report's command line (cli.py), by the options' names.
"""

import dataclasses
import json
import math

from . import simulate, summary
from .pages import PageSpace


@dataclasses.dataclass
class Options:
    """The prediction's options, named as bt-report's (cli.py) and with its
    defaults; the host costs left None come from the calibration, else
    simulate.DEFAULTS (host_costs())."""
    calibration: str = None             # a JSON file of scripts/validate.py --calibrate
    link_bandwidth: float = None        # bytes/s
    page_cpu_us: float = None
    dest_page_us: float = None
    dest_first_page_us: float = None
    dest_zero_us: float = None
    dest_zero_first_us: float = None
    socket_buffer: int = None           # bytes
    zero_page_us: float = None
    setup_time: float = None            # s
    completion_time: float = None       # s
    device_state: int = None            # bytes
    avail_switchover_bandwidth: float = 0
    x_clear_bitmap_shift: int = 18
    zero_page_detection: str = 'multifd'
    zero_scan_rate: float = simulate.DEFAULTS['zero_scan_rate']
    accel: str = None                   # default: the trace's
    write_time: str = 'spread'
    start_phases: int = 5
    max_time: float = simulate.DEFAULTS['max_time_s']
    max_rounds: int = simulate.DEFAULTS['max_rounds']
    no_search: bool = False
    series: bool = False                # record the pending bytes over time (figures, CSV)


class CalibrationError(Exception):
    pass


def load_calibration(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise CalibrationError(f'--calibration {path}: {e}')
    if 'link_bandwidth' not in doc:
        raise CalibrationError(f'--calibration {path}: no link_bandwidth: not a '
                               'calibration (scripts/validate.py --calibrate writes one)')
    return doc


def host_costs(opts, accel):
    """The host's costs: the options, else the calibration, else the
    defaults.  Returns simulate.Params keywords and where each came from."""
    cal = load_calibration(opts.calibration) if opts.calibration else {}
    kind = 'kvm' if (accel or '').startswith('kvm') else 'tcg'

    def pick(opt, key, scale=1.0, per_accel=False):
        if opt is not None:
            return opt * scale, 'option'
        if key in cal:
            v = cal[key]
            if per_accel and isinstance(v, dict):
                v = v.get(kind, v.get('tcg'))
            if v is not None:
                return v, 'calibration'
        return simulate.DEFAULTS[key], 'default'

    out, src = {}, {}
    for name, opt, key, scale, pa in (
            ('link_bandwidth', opts.link_bandwidth, 'link_bandwidth', 1.0, False),
            ('page_cpu_s', opts.page_cpu_us, 'page_cpu_s', 1e-6, False),
            ('dest_page_s', opts.dest_page_us, 'dest_page_s', 1e-6, False),
            ('dest_first_page_s', opts.dest_first_page_us, 'dest_first_page_s', 1e-6, False),
            ('dest_zero_s', opts.dest_zero_us, 'dest_zero_s', 1e-6, False),
            ('dest_zero_first_s', opts.dest_zero_first_us, 'dest_zero_first_s', 1e-6, False),
            ('socket_buffer_bytes', opts.socket_buffer, 'socket_buffer_bytes', 1.0, False),
            ('zero_page_s', opts.zero_page_us, 'zero_page_s', 1e-6, False),
            ('setup_s', opts.setup_time, 'setup_s', 1.0, True),
            ('completion_s', opts.completion_time, 'completion_s', 1.0, True),
            ('device_state_bytes', opts.device_state, 'device_state_bytes', 1.0, False)):
        out[name], src[name] = pick(opt, key, scale, pa)
    out['device_state_bytes'] = int(out['device_state_bytes'])
    out['socket_buffer_bytes'] = int(out['socket_buffer_bytes'])
    return out, src


GOLDEN = (math.sqrt(5) - 1) / 2


def from_start_points(trace, params, k):
    """The migration started at k points spread over the trace: where
    in the guest's cycle of writes a real migration starts is not known,
    and for a sweeping workload near the threshold it decides rounds (the
    pages the writer dirties while they are still pending cost nothing).
    Returns the median run (by total time, a migration that does not
    converge counting as the longest; the lower of the two middle ones
    for an even k), as the prediction, and the spread: per figure the
    least and the most over the runs that converge."""
    # Points j x the golden ratio (mod 1) of the trace, from its start: a
    # low-discrepancy sequence, which evenly spaced points are not for a
    # workload whose period divides the trace (a 1 s sweep in a 10 s trace
    # is at the same point every 2 s)
    starts = [(j * GOLDEN) % 1.0 * trace.length for j in range(k)] \
        if trace.length > 0 else [0.0]
    runs = [simulate.simulate(trace, params.copy(start_s=st)) for st in starts]
    order = sorted(range(len(runs)), key=lambda i: (
        (0, runs[i]['total_s']) if runs[i]['converges'] else (1, 0.0), i))
    pick = order[(len(runs) - 1) // 2]
    conv = [r for r in runs if r['converges']]
    spread = {'count': len(runs), 'converges': len(conv), 'start_s': starts,
              'picked': pick,
              'runs': [{f: r.get(f) for f in ('converges', 'rounds', 'total_s', 'downtime_s',
                                              'sent_bytes')} for r in runs]}
    for f in ('rounds', 'total_s', 'downtime_s', 'sent_bytes'):
        vals = [r[f] for r in conv]
        spread[f] = [min(vals), max(vals)] if vals else None
    res = runs[pick]
    res['trace_start_s'] = starts[pick]
    return res, spread


def predict(log, space, opts, bandwidths, downtimes):
    """The predictions by the simulator, one per bandwidth x downtime limit
    (bandwidths: (text, bytes/s) pairs; downtimes in s), and what they
    share (the JSON document's "simulation")."""
    ps = log.meta['page_size']
    trace = simulate.Trace(log, space, opts.write_time)
    costs, cost_src = host_costs(opts, opts.accel or log.meta['accel'])
    link = costs['link_bandwidth']
    base = simulate.Params(
        avail_switchover_bandwidth=opts.avail_switchover_bandwidth,
        clear_bitmap_shift=opts.x_clear_bitmap_shift,
        zero_page_detection=opts.zero_page_detection,
        zero_scan_rate=opts.zero_scan_rate,
        **costs,
        max_time_s=opts.max_time,
        max_rounds=opts.max_rounds,
        write_time=opts.write_time,
        accel=opts.accel,
        series=opts.series)
    preds = []
    info = None
    for dl in downtimes:
        for text, bw in bandwidths:
            params = base.copy(max_bandwidth=bw, downtime_limit_s=dl)
            p, spread = from_start_points(trace, params, opts.start_phases)
            params = params.copy(start_s=p['trace_start_s'])
            if info is None:
                info = {
                    'accel': p['accel'], 'lazy_clear': p['lazy_clear'],
                    'clear_bitmap_shift': p['clear_bitmap_shift'],
                    'zero_page_detection': opts.zero_page_detection,
                    'avail_switchover_bandwidth': opts.avail_switchover_bandwidth,
                    'calibration': opts.calibration,
                    'host_costs': costs,
                    'host_costs_from': cost_src,
                    'link_bandwidth': link,
                    'page_cpu_s': costs['page_cpu_s'],
                    'zero_page_s': p['zero_page_s'],
                    'zero_page_cost_from': p['zero_page_cost_from'],
                    'zero_pages_unknown': not log.has_zero,
                    'sync_s': p['sync_s'],
                    'device_state_bytes': costs['device_state_bytes'],
                    'write_time': opts.write_time,
                    'max_time_s': opts.max_time,
                    'max_rounds': opts.max_rounds,
                    'trace_s': trace.length,
                }
            p.update(bandwidth=text, bandwidth_bytes_s=bw, downtime_limit_s=dl,
                     model='sim', zero_pages_unknown=not log.has_zero)
            if spread['count'] > 1:
                p['start_phases'] = spread
            if not p['converges'] and not opts.no_search:
                if bw < link:
                    v, _ = simulate.search_min(trace, params.copy(series=False),
                                               'max_bandwidth', bw, link)
                    p['min_bandwidth_bytes_s'] = v
                ram = space.npages * ps
                rate = min(bw, link)
                top = max(dl * 2, ram / rate * 1.05)
                v, _ = simulate.search_min(trace, params.copy(series=False),
                                           'downtime_limit_s', dl, top)
                p['min_downtime_limit_s'] = v
            preds.append(p)
    return preds, info


def analyse(log, opts, bandwidths, downtimes):
    """bt-report's result for a log: the summary (summary.summarise()), its
    warnings, and the predictions ("prediction", "simulation") when the
    trace has windows of some length."""
    space = PageSpace(log)
    res = summary.summarise(log, space)
    res['warnings'] = list(space.warnings)
    res['model'] = 'sim'
    res['downtime_limit_s'] = downtimes[0]
    res['downtime_limits_s'] = downtimes
    if res['windows'] and res['span_ms'] > 0:
        res['prediction'], res['simulation'] = predict(log, space, opts, bandwidths, downtimes)
        if not log.has_zero:
            res['warnings'].append('v1 log: no zero-page information; every page is '
                                   'taken as non-zero (a pessimistic prediction)')
    elif res['windows']:
        res['prediction'] = []
    return res
