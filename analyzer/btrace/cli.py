# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report: summarise a bitmap-trace log and predict pre-copy.

Reads the log that QEMU's bitmap-trace command writes, checks that it follows
the text format v1 or v2 or the binary format v3
(docs/devel/migration/bitmap-trace.rst), and prints:

  - the trace: QEMU version, accelerator, period, status, the traced RAM blocks;
  - per window (iterations 1..N; iteration 0 is the baseline, all RAM): dirty
    pages, min/mean/max, the dirty rate, distinct pages dirtied over the whole
    trace, and pages that were dirtied while not mapped in the guest;
  - the working-set curve: the mean number of distinct pages dirtied in any
    span of 1, 2, ... consecutive windows;
  - a pre-copy live-migration prediction for each max-bandwidth (--bandwidth)
    and downtime limit (--downtime-limit): a replay of QEMU 10.0's pre-copy
    over the trace's writes (the rules below), with the rounds, total time,
    downtime and bytes sent, or that it does not converge and the smallest
    max-bandwidth and downtime limit at which it would.

--bandwidth is QEMU's max-bandwidth parameter (the rate limit of pre-copy);
the link is taken to carry at least that, up to --link-bandwidth, which is
also the speed of the stop-and-copy (ram_save_complete ignores the rate
limit).  The host's own costs (the link with no rate limit, what a page
costs, a page new to the destination, the setup, the downtime's fixed part,
the device state) are properties of the hosts and the link, not of the log:
measure them with scripts/validate.py --calibrate (workload-free migrations
of a paused guest on the same hosts and link) and pass --calibration FILE.
That is how to get an accurate prediction.  Without it the link is an
assumed 10 Gbit/s, zero pages cost the log's own zero-us, and the setup and
the final sync the log's sync time.  QEMU's own default max-bandwidth is 128 MiB/s: pass --bandwidth
128MiB/s to predict a migration that does not set it.

--plot-dir DIR draws, with matplotlib, four figures into DIR, each as
heatmap.png, heatmap.svg, ... (--plot-format): heatmap (dirtied pages over
time x guest-physical address), working-set (the working-set curve),
dirty-per-window (dirty and zero pages per window) and migration (the
predicted pending bytes over time per max-bandwidth and downtime limit, with
the syncs and the switchover).  --csv-dir DIR writes the figures behind
them as CSV: windows.csv, working-set.csv, predictions.csv, rounds.csv and
migration.csv.  What each holds: scripts/btrace/plot.py and export.py.

--to-text prints the text (format v2) of a log instead: a binary log as
the text log QEMU would have written for the same trace, byte for byte; a
text log as it is.

--model rounds gives the older round model instead (round 0 sends all RAM,
round k+1 what round k's length dirtied by the working-set curve, every page
a full page at exactly the bandwidth, one sync per round); it is kept for
comparison: it was found off by +233% (median) on total time.
"""

import argparse
import math
import re
import sys

from . import model, parse, report, simulate

DEFAULT_BANDWIDTHS = '1G,2.5G,10G,25G'


def parse_bandwidth(text):
    """'10G', '2.5Gbit/s', '1000M' are bits per second (decimal, as links are
    sold); '128MiB/s', '500MB/s', '1GiB' are bytes per second."""
    m = re.fullmatch(r'\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?)(bit/s|bit|bps|b|B/s|Bps|B|)\s*', text)
    if not m:
        raise argparse.ArgumentTypeError(f'bad bandwidth {text!r} (examples: 10G, 2.5Gbit/s, 128MiB/s)')
    value = float(m.group(1))
    power = ' kmgt'.index(m.group(2).lower() or ' ')
    base = 1024 if m.group(3) else 1000
    bits = m.group(4) in ('bit/s', 'bit', 'bps', 'b', '')
    if m.group(3) and not m.group(4):
        bits = False        # '1Gi' reads as GiB/s
    bytes_s = value * base ** power / (8 if bits else 1)
    if bytes_s <= 0:
        raise argparse.ArgumentTypeError(f'bandwidth {text!r} is not positive')
    if bits:
        label = f'{m.group(1)} {m.group(2).upper() if m.group(2) else ""}bit/s'
    else:
        label = f'{m.group(1)} {m.group(2).upper() if m.group(2) else ""}{m.group(3)}B/s'
    return label, bytes_s


def parse_bandwidths(text):
    return [parse_bandwidth(t) for t in text.split(',') if t.strip()]


def bandwidth_bytes(text):
    return parse_bandwidth(text)[1]


def parse_ms(text):
    """Milliseconds, or seconds with s: returns seconds."""
    m = re.fullmatch(r'\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|)\s*', text)
    if not m:
        raise argparse.ArgumentTypeError(f'bad time {text!r} (examples: 300, 300ms, 0.5s)')
    v = float(m.group(1))
    return v if m.group(2) == 's' else v / 1000


def parse_downtime(text):
    v = parse_ms(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f'downtime {text!r} is not positive')
    return v


def parse_downtimes(text):
    return [parse_downtime(t) for t in text.split(',') if t.strip()]


def parse_bytes(text):
    m = re.fullmatch(r'\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(i?)B?\s*', text)
    if not m:
        raise argparse.ArgumentTypeError(f'bad size {text!r} (examples: 256KiB, 1MB, 4096)')
    power = ' kmg'.index(m.group(2).lower() or ' ')
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def build_parser():
    doc = __doc__
    epilog = doc.split('\n\n', 1)[1] + '\n' + simulate.__doc__ + """
Exit status: 0 on success, 1 when the log is not valid (the errors are
printed) or the pictures or CSV files cannot be written, 2 on a usage error.
"""
    ap = argparse.ArgumentParser(
        prog='bt-report', description=doc.split('\n\n', 1)[0],
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('log', help='the bitmap-trace log (text v1 or v2, binary v3)')
    ap.add_argument('--to-text', action='store_true',
                    help='print the log as text (format v2), converting a binary log, and exit')
    ap.add_argument('--check', action='store_true',
                    help='only validate the log: print "ok" or the error, exit 0 or 1')
    ap.add_argument('--require-end', action='store_true',
                    help='a log without its end line is an error (default: a valid prefix is fine)')
    ap.add_argument('--bandwidth', '--max-bandwidth', action='append', type=parse_bandwidths,
                    metavar='BW[,BW...]',
                    help='max-bandwidth for the prediction: 10G = 10 Gbit/s, 128MiB/s = bytes '
                         f'(default {DEFAULT_BANDWIDTHS}); may be repeated')
    ap.add_argument('--downtime-limit', action='append', type=parse_downtimes, metavar='MS[,MS...]',
                    help="downtime-limit, ms (or with s); QEMU's default is 300 ms; may be repeated")
    ap.add_argument('--avail-switchover-bandwidth', type=bandwidth_bytes, default=0, metavar='BW',
                    help='avail-switchover-bandwidth (default 0: use the measured bandwidth)')
    ap.add_argument('--x-clear-bitmap-shift', type=int, default=18, metavar='N',
                    help='x-clear-bitmap-shift: KVM clears its dirty log in chunks of 2^N '
                         'pages (default 18, range 6..31)')
    ap.add_argument('--zero-page-detection', choices=('multifd', 'legacy', 'none'),
                    default='multifd',
                    help="zero-page-detection (default multifd, QEMU's, which without multifd "
                         'is legacy: zero pages go as 9-byte records; none sends them whole)')
    ap.add_argument('--calibration', metavar='JSON',
                    help="the host's costs measured by scripts/validate.py --calibrate "
                         '(workload-free migrations on the host and link the prediction is '
                         'for): link bandwidth, per-page costs, setup and completion times, '
                         'device state.  The way to an accurate prediction; the options below '
                         'override single figures of it')
    ap.add_argument('--link-bandwidth', '--stop-copy-bandwidth', type=bandwidth_bytes,
                    default=None, metavar='BW',
                    help='the link and host throughput with no rate limit: the stop-and-copy '
                         'goes at it, pre-copy at most at it (default: calibrated, else an '
                         'assumed 10 Gbit/s link)')
    ap.add_argument('--page-cpu-us', type=float, default=None, metavar='US',
                    help="the migration thread's own time per page sent, us (default: "
                         'calibrated, else 0: not modelled)')
    ap.add_argument('--dest-page-us', type=float, default=None, metavar='US',
                    help='the destination\'s time for a normal page it has had, us '
                         '(default: calibrated, else 0: the destination is not modelled)')
    ap.add_argument('--dest-first-page-us', type=float, default=None, metavar='US',
                    help='... for a normal page new to it (its RAM faulted in), us')
    ap.add_argument('--dest-zero-us', type=float, default=None, metavar='US',
                    help='... for a zero page, us')
    ap.add_argument('--dest-zero-first-us', type=float, default=None, metavar='US',
                    help='... for a zero page to a page it never had, us')
    ap.add_argument('--socket-buffer', type=parse_bytes, default=None, metavar='BYTES',
                    help='bytes in flight before the source\'s write blocks (default: '
                         'calibrated, from the host\'s TCP buffer sysctls, else 4MiB)')
    ap.add_argument('--zero-page-us', type=float, default=None, metavar='US',
                    help="a zero page's own time, us (default: calibrated, else the log's "
                         'zero-us per zero page, else page size / --zero-scan-rate)')
    ap.add_argument('--setup-time', type=parse_ms, default=None, metavar='MS',
                    help='setup-time, counted in the total (default: calibrated for the '
                         "log's accelerator, else the log's mean sync time)")
    ap.add_argument('--completion-time', type=parse_ms, default=None, metavar='MS',
                    help='the fixed part of the downtime: vm stop, final sync, device state, '
                         'flush (default: calibrated, else the log\'s sync time + '
                         '--device-state at the link bandwidth)')
    ap.add_argument('--zero-scan-rate', type=bandwidth_bytes,
                    default=simulate.DEFAULTS['zero_scan_rate'], metavar='BW',
                    help='buffer_is_zero() throughput, when the log (v1) gives no zero-us '
                         '(default 8000MB/s)')
    ap.add_argument('--device-state', type=parse_bytes, metavar='BYTES', default=None,
                    help='device state sent in the downtime (default: calibrated, else '
                         '256KiB, a guess)')
    ap.add_argument('--accel', choices=('kvm', 'kvm-dirty-ring', 'tcg'),
                    help='the accelerator of the migration (default: the trace\'s)')
    ap.add_argument('--write-time', choices=('spread', 'start'), default='spread',
                    help='when in its window a page is written (default spread; see below)')
    ap.add_argument('--start-phases', type=int, default=5, metavar='K',
                    help='run each prediction from K points spread over the trace '
                         '(where in the guest\'s cycle of writes the migration starts is not '
                         'known); the prediction is the median run, with the spread of all '
                         '(default 5; 1: only from its start)')
    ap.add_argument('--max-time', type=float, default=simulate.DEFAULTS['max_time_s'], metavar='S',
                    help='a migration without switchover after this many seconds does not '
                         'converge (default 600)')
    ap.add_argument('--max-rounds', type=int, default=None,
                    help='nor one without it after this many rounds (default 1000; 30 for '
                         '--model rounds)')
    ap.add_argument('--no-search', action='store_true',
                    help='when a migration does not converge, do not look for the smallest '
                         'max-bandwidth and downtime limit at which it would')
    ap.add_argument('--model', choices=('sim', 'rounds'), default='sim',
                    help='the prediction: sim, the replay (default), or rounds, the old round model')
    ap.add_argument('--show-rounds', action='store_true',
                    help='list the rounds of each prediction')
    ap.add_argument('--all-windows', action='store_true',
                    help='list every window (default: 20 of them when there are more than 40)')
    ap.add_argument('--brief', action='store_true',
                    help='leave out the table of windows')
    ap.add_argument('--json', action='store_true', help='print the results as JSON')
    ap.add_argument('--plot-dir', metavar='DIR',
                    help='draw the figures into DIR (created if need be): heatmap, '
                         'working-set, dirty-per-window, migration; needs matplotlib')
    ap.add_argument('--plot-format', type=parse_formats, default=['png', 'svg'],
                    metavar='FMT[,FMT...]',
                    help='the figures\' formats, png, svg or pdf (default png,svg)')
    ap.add_argument('--csv-dir', metavar='DIR',
                    help='write the per-window, working-set, per-prediction, per-round and '
                         'pending-bytes tables into DIR as CSV')
    return ap


PLOT_FORMATS = ('png', 'svg', 'pdf')      # plot.FORMATS, without importing matplotlib


def parse_formats(text):
    formats = [t.strip().lower() for t in text.split(',') if t.strip()]
    bad = [f for f in formats if f not in PLOT_FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f'bad format {(bad or [text])[0]!r} '
                                         f'(use {", ".join(PLOT_FORMATS)})')
    return list(dict.fromkeys(formats))



def load_calibration(path):
    import json
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f'bt-report: --calibration {path}: {e}')
    if 'link_bandwidth' not in doc:
        raise SystemExit(f'bt-report: --calibration {path}: no link_bandwidth: not a '
                         'calibration (scripts/validate.py --calibrate writes one)')
    return doc


def host_costs(args, accel):
    """The host's costs: the options, else the calibration, else the
    defaults.  Returns simulate.Params keywords and where each came from."""
    cal = load_calibration(args.calibration) if args.calibration else {}
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
            ('link_bandwidth', args.link_bandwidth, 'link_bandwidth', 1.0, False),
            ('page_cpu_s', args.page_cpu_us, 'page_cpu_s', 1e-6, False),
            ('dest_page_s', args.dest_page_us, 'dest_page_s', 1e-6, False),
            ('dest_first_page_s', args.dest_first_page_us, 'dest_first_page_s', 1e-6, False),
            ('dest_zero_s', args.dest_zero_us, 'dest_zero_s', 1e-6, False),
            ('dest_zero_first_s', args.dest_zero_first_us, 'dest_zero_first_s', 1e-6, False),
            ('socket_buffer_bytes', args.socket_buffer, 'socket_buffer_bytes', 1.0, False),
            ('zero_page_s', args.zero_page_us, 'zero_page_s', 1e-6, False),
            ('setup_s', args.setup_time, 'setup_s', 1.0, True),
            ('completion_s', args.completion_time, 'completion_s', 1.0, True),
            ('device_state_bytes', args.device_state, 'device_state_bytes', 1.0, False)):
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


def predict(log, space, res, args, bandwidths, downtimes):
    """The prediction list of res, by the simulator, one per bandwidth x downtime limit."""
    ps = log.meta['page_size']
    trace = simulate.Trace(log, space, args.write_time)
    costs, cost_src = host_costs(args, args.accel or log.meta['accel'])
    args.link_bandwidth = costs['link_bandwidth']
    base = simulate.Params(
        avail_switchover_bandwidth=args.avail_switchover_bandwidth,
        clear_bitmap_shift=args.x_clear_bitmap_shift,
        zero_page_detection=args.zero_page_detection,
        zero_scan_rate=args.zero_scan_rate,
        **costs,
        max_time_s=args.max_time,
        max_rounds=args.max_rounds,
        write_time=args.write_time,
        accel=args.accel,
        series=bool(args.plot_dir or args.csv_dir))
    preds = []
    info = None
    for dl in downtimes:
        for text, bw in bandwidths:
            params = base.copy(max_bandwidth=bw, downtime_limit_s=dl)
            p, spread = from_start_points(trace, params, args.start_phases)
            params = params.copy(start_s=p['trace_start_s'])
            if info is None:
                info = {
                    'accel': p['accel'], 'lazy_clear': p['lazy_clear'],
                    'clear_bitmap_shift': p['clear_bitmap_shift'],
                    'zero_page_detection': args.zero_page_detection,
                    'avail_switchover_bandwidth': args.avail_switchover_bandwidth,
                    'calibration': args.calibration,
                    'host_costs': costs,
                    'host_costs_from': cost_src,
                    'link_bandwidth': args.link_bandwidth,
                    'page_cpu_s': costs['page_cpu_s'],
                    'zero_page_s': p['zero_page_s'],
                    'zero_page_cost_from': p['zero_page_cost_from'],
                    'zero_pages_unknown': not log.has_zero,
                    'sync_s': p['sync_s'],
                    'device_state_bytes': costs['device_state_bytes'],
                    'write_time': args.write_time,
                    'max_time_s': args.max_time,
                    'max_rounds': args.max_rounds,
                    'trace_s': trace.length,
                }
            p.update(bandwidth=text, bandwidth_bytes_s=bw, downtime_limit_s=dl,
                     model='sim', zero_pages_unknown=not log.has_zero)
            if spread['count'] > 1:
                p['start_phases'] = spread
            if not p['converges'] and not args.no_search:
                link = args.link_bandwidth
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


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.max_rounds is None:
        args.max_rounds = 30 if args.model == 'rounds' else simulate.DEFAULTS['max_rounds']
    if args.max_rounds < 1:
        ap.error('--max-rounds must be at least 1')
    if args.start_phases < 1:
        ap.error('--start-phases must be at least 1')
    if not simulate.CLEAR_BITMAP_SHIFT_MIN <= args.x_clear_bitmap_shift <= \
            simulate.CLEAR_BITMAP_SHIFT_MAX:
        ap.error('--x-clear-bitmap-shift must be 6..31 (QEMU clamps it there)')
    bandwidths = [b for group in (args.bandwidth or [parse_bandwidths(DEFAULT_BANDWIDTHS)])
                  for b in group]
    downtimes = [d for group in (args.downtime_limit or [[0.3]]) for d in group]

    if args.to_text:
        try:
            text, _ = parse.read_text(args.log)
        except parse.LogError as e:
            print(f'bt-report: {args.log}: invalid: {e}', file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0

    try:
        log = parse.parse(args.log)
        if args.require_end and log.end is None:
            raise parse.LogError('no end line: the trace did not finish (or the log was cut short)')
    except parse.LogError as e:
        print(f'bt-report: {args.log}: invalid: {e}', file=sys.stderr)
        return 1

    if args.check:
        windows = max(len(log.iters) - 1, 0)
        end = f'end status={log.end["status"]}' if log.end else 'no end line'
        print(f'{args.log}: ok: {"binary v3 (as text v2)" if log.binary else f"v{log.version}"}, {report.plural(len(log.blocks), "block")}, '
              f'baseline and {report.plural(windows, "iteration")}, {end}')
        return 0

    space = model.PageSpace(log)
    res = model.summarise(log, space)
    res['warnings'] = list(space.warnings)
    res['model'] = args.model
    res['downtime_limit_s'] = downtimes[0]
    res['downtime_limits_s'] = downtimes
    if res['windows'] and res['span_ms'] > 0:
        if args.model == 'rounds':
            dm = model.DirtyModel(res['_curve'], res['window_ms'] / 1000, res['baseline_pages'])
            res['prediction'] = []
            for dl in downtimes:
                for text, bw in bandwidths:
                    p = model.predict_rounds(dm, res['baseline_pages'], log.meta['page_size'],
                                             bw, dl, args.max_rounds)
                    p['bandwidth'] = text
                    p['bandwidth_bytes_s'] = bw
                    p['downtime_limit_s'] = dl
                    res['prediction'].append(p)
        else:
            res['prediction'], res['simulation'] = predict(log, space, res, args,
                                                           bandwidths, downtimes)
            if not log.has_zero:
                res['warnings'].append('v1 log: no zero-page information; every page is '
                                       'taken as non-zero (a pessimistic prediction)')
    elif res['windows']:
        res['prediction'] = []
    if args.json:
        print(report.json_doc(log, res))
    else:
        report.print_report(args.log, log, res,
                            None if args.brief else 'all' if args.all_windows else 'some',
                            args.show_rounds)
    sys.stdout.flush()
    return write_files(args, log, res)


def write_files(args, log, res):
    """--plot-dir and --csv-dir; the paths written go to stderr."""
    written = []
    try:
        if args.csv_dir:
            from . import export
            written += export.write_all(args.csv_dir, log, res)
        if args.plot_dir:
            try:
                from . import plot
            except ImportError as e:
                print(f'bt-report: --plot-dir needs matplotlib (Debian\'s python3-matplotlib, '
                      f'which make deps installs): {e}', file=sys.stderr)
                return 1
            trace_s = res['span_ms'] / 1000 if res.get('span_ms') else None
            written += plot.write_all(args.plot_dir, log, res, args.log, args.plot_format,
                                      trace_s)
            if res.get('model') == 'rounds':
                print('bt-report: --model rounds: no migration figure (it needs the simulator)',
                      file=sys.stderr)
    except OSError as e:
        print(f'bt-report: cannot write {e.filename or ""}: {e.strerror or e}', file=sys.stderr)
        return 1
    for path in written:
        print(f'bt-report: wrote {path}', file=sys.stderr)
    return 0
