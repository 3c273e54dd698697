# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report: summarise a bitmap-trace log and predict pre-copy.

Reads the log that QEMU's bitmap-trace command writes, checks that it follows
the text format v1 to v3 or the binary format v3 or v4
(docs/devel/migration/bitmap-trace.rst), and prints:

  - the trace: QEMU version, accelerator, period, status, the traced RAM blocks;
  - per window (iterations 1..N; iteration 0 is the baseline, all RAM
    but memory a virtio-mem device has not plugged): dirty
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
migration.csv.  What each holds: btrace/plot.py and export.py.

--to-text prints the text (format v2) of a log instead: a binary log as
the text log QEMU would have written for the same trace, byte for byte; a
text log as it is.
"""

import argparse
import dataclasses
import re
import sys

from . import parse, predict, report, simulate
from .formatting import plural
from .needs import missing

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
    ap.add_argument('log', help='the bitmap-trace log (text v1 to v3, binary v3 or v4)')
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
    ap.add_argument('--max-rounds', type=int, default=predict.Options.max_rounds,
                    help='nor one without it after this many rounds (default 1000)')
    ap.add_argument('--no-search', action='store_true',
                    help='when a migration does not converge, do not look for the smallest '
                         'max-bandwidth and downtime limit at which it would')
    ap.add_argument('--model', choices=('sim',), default='sim',
                    help='the prediction: sim, the replay (the only one: the old round '
                         'model was retired; kept for the command lines that name it)')
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



def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
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
        print(f'{args.log}: ok: {f"binary v{log.version + 1} (as text v{log.version})" if log.binary else f"v{log.version}"}, {plural(len(log.blocks), "block")}, '
              f'baseline and {plural(windows, "iteration")}, {end}')
        return 0

    opts = predict.Options(**{f.name: getattr(args, f.name)
                              for f in dataclasses.fields(predict.Options) if f.name != 'series'},
                           series=bool(args.plot_dir or args.csv_dir))
    try:
        res = predict.analyse(log, opts, bandwidths, downtimes)
    except predict.CalibrationError as e:
        raise SystemExit(f'bt-report: {e}')
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
                print(missing('matplotlib', 'python3-matplotlib', 'bt-report --plot-dir', e),
                      file=sys.stderr)
                return 1
            trace_s = res['span_ms'] / 1000 if res.get('span_ms') else None
            written += plot.write_all(args.plot_dir, log, res, args.log, args.plot_format,
                                      trace_s)
    except OSError as e:
        print(f'bt-report: cannot write {e.filename or ""}: {e.strerror or e}', file=sys.stderr)
        return 1
    for path in written:
        print(f'bt-report: wrote {path}', file=sys.stderr)
    return 0
