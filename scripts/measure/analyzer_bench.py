#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""analyzer-bench.py (measure.analyzer_bench): how fast bt-report reads a log, text and binary.

Writes synthetic logs of a 16 GiB guest (4M pages, btrace.synth.write_big():
pc.ram below 3 GiB and above 4 GiB, a small unmapped ROM, a tenth of the
dirty pages zero) in both formats, for each case (a share of the RAM dirtied per
100 ms window, at random or as one sequential stretch), and times, each
--repeat times, interleaved:

  raw      reading the file and counting its newlines (like wc -l): the
           floor for any reader;
  parse    btrace.parse.parse(), what bt-report does first: the log read,
           checked and its ranges decoded;
  report   (--report) the whole `bt-report LOG --json --bandwidth 128MiB/s
           --downtime-limit 300`, as a command: parse, summary, working set
           and the pre-copy simulation (whose cost grows with the simulated
           migration time x the dirty rate, not with the log);
  old      (--old) the reference parser, the line-by-line one bt-report had
           before the numpy path (parse.parse_text_ref, after
           binlog.to_text() for a binary log).

MB/s are of the log's bytes (10^6), given as median [min-max] over the
repeats, with the ratio of the medians to raw and to old.  A binary byte
holds far more pages than a text byte, so Mpages/s (the dirty pages of all
iterations, the baseline's included) are given too.

  analyzer-bench.py [--quick] [--repeat N] [--scale X] [--report] [--old]
                    [--cases REGEX] [--dir DIR] [--keep] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from measure import TOP

try:
    from btrace import binlog, parse, synth
except ModuleNotFoundError as e:
    if e.name != 'btrace':
        raise
    # the analyzer's package is not on the path
    sys.exit(f'analyzer-bench: {e}: run it with PYTHONPATH=scripts:analyzer')

PAGES = 4 << 20                 # 16 GiB of 4 KiB pages
# name, share dirtied per window, mode, windows (at --scale 1)
CASES = [('random-1pct', 0.01, 'random', 400),
         ('random-50pct', 0.50, 'random', 8),
         ('seq-10pct', 0.10, 'seq', 400)]
REPORT_ARGS = ['--json', '--bandwidth', '128MiB/s', '--downtime-limit', '300']


def raw_read(path):
    with open(path, 'rb') as f:
        data = f.read()
    return data.count(b'\n')


def old_parse(path):
    with open(path, 'rb') as f:
        data = f.read()
    text = binlog.to_text(data) if binlog.is_binary(data) else data.decode()
    return parse.parse_text_ref(text)


def report(path):
    subprocess.run([sys.executable, os.path.join(TOP, 'scripts', 'bt-report'), path] + REPORT_ARGS,
                   check=True, stdout=subprocess.DEVNULL)


def timed(fn, path):
    t = time.perf_counter()
    fn(path)
    return time.perf_counter() - t


def spread(xs, fmt='{:.1f}'):
    xs = [x for x in xs if x is not None]
    if not xs:
        return '-'
    med = statistics.median(xs)
    if len(xs) == 1:
        return fmt.format(med)
    return f'{fmt.format(med)} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]'


def run(args, say=print):
    """Run the benchmark; returns the results (a list of dicts)."""
    out = []
    tmp = args.dir or tempfile.mkdtemp(prefix='az-bench.')
    os.makedirs(tmp, exist_ok=True)
    try:
        for name, frac, mode, windows in CASES:
            if args.cases and not re.search(args.cases, name):
                continue
            n = max(int(windows * args.scale), 2)
            tp, bp = os.path.join(tmp, name + '.txt'), os.path.join(tmp, name + '.btl')
            t = time.perf_counter()
            synth.write_big(tp, bp, pages=args.pages, n=n, frac=frac, mode=mode)
            log = parse.parse(bp)
            pages = sum(it.dirty for it in log.iters)
            del log
            say(f'analyzer-bench: {name}: {n} windows of {frac * 100:g} % {mode}, '
                f'{pages / 1e6:.1f} M dirty pages; written in {time.perf_counter() - t:.0f} s')
            for fmt, path in (('text', tp), ('binary', bp)):
                size = os.path.getsize(path)
                rec = {'case': name, 'format': fmt, 'bytes': size, 'pages': pages,
                       'windows': n, 'frac': frac, 'mode': mode, 'ram_pages': args.pages}
                steps = [('raw', raw_read), ('parse', parse.parse)]
                if args.old:
                    steps.append(('old', old_parse))
                if args.report:
                    steps.append(('report', report))
                for k, _ in steps:
                    rec[k + '_s'] = []
                for _ in range(args.repeat):
                    for k, fn in steps:
                        rec[k + '_s'].append(timed(fn, path))
                for k, _ in steps:
                    rec[k + '_mb_s'] = [size / 1e6 / s for s in rec[k + '_s']]
                    rec[k + '_mpages_s'] = [pages / 1e6 / s for s in rec[k + '_s']]
                out.append(rec)
                say(line(rec))
            if not args.keep:
                os.unlink(tp)
                os.unlink(bp)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def line(rec):
    med = {k: statistics.median(rec[k + '_mb_s'])
           for k in ('raw', 'parse', 'old', 'report') if k + '_mb_s' in rec}
    parts = [f"  {rec['case']:13} {rec['format']:6} {rec['bytes'] / 1e6:7.1f} MB: "
             f"parse {spread(rec['parse_mb_s'])} MB/s "
             f"({spread(rec['parse_mpages_s'])} Mpages/s)"]
    for k in ('report', 'old'):
        if k in med:
            parts.append(f'{k} {spread(rec[k + "_mb_s"], "{:.2f}")} MB/s')
    parts.append(f"raw {spread(rec['raw_mb_s'], '{:.0f}')} MB/s")
    ratios = [f"parse/raw {med['parse'] / med['raw']:.2f}"]
    if 'old' in med:
        ratios.append(f"parse/old {med['parse'] / med['old']:.1f} x")
    return ', '.join(parts) + '; ' + ', '.join(ratios)


def build_parser():
    ap = argparse.ArgumentParser(description='time the analyzer on large synthetic logs')
    ap.add_argument('--quick', action='store_true',
                    help='a tenth of the windows, one repeat (checks the machinery)')
    ap.add_argument('--repeat', type=int, default=None, help='runs per log (default 3)')
    ap.add_argument('--scale', type=float, default=None,
                    help='windows per case x this (default 1: about 100 MB of text a case)')
    ap.add_argument('--pages', type=int, default=PAGES, help='guest pages (default 4M: 16 GiB)')
    ap.add_argument('--cases', help='only the cases matching this regex')
    ap.add_argument('--report', action='store_true',
                    help='also time the whole bt-report command (slow: the simulation)')
    ap.add_argument('--old', action='store_true',
                    help='also time the old line-by-line parser (slow)')
    ap.add_argument('--dir', help='write the logs here (default: a temporary directory)')
    ap.add_argument('--keep', action='store_true', help='keep the logs')
    ap.add_argument('--json', help='write the raw figures here')
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.scale = args.scale or (0.1 if args.quick else 1.0)
    print(f'analyzer-bench: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; '
          f'median [min-max] of {args.repeat} run(s)', flush=True)
    res = run(args, say=lambda m: print(m, flush=True))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
