#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""validate.py: how well does bt-report predict real pre-copy migrations?

For each case of a grid (workload x max-bandwidth x downtime-limit) it
  1. boots a source guest (the demo guest under TCG, or the boot-block guest
     of the exactness tests under KVM) and waits for its workload to run
     (a console line);
  2. traces it with bitmap-trace over QMP (period 50 ms, long enough to
     cover ~10 s or the expected migration) and waits for
     BITMAP_TRACE_COMPLETED;
  3. runs scripts/bt-report LOG --json --bandwidth B --downtime-limit MS;
  4. really migrates the same running guest to a destination QEMU (same
     command line plus -incoming defer, then migrate-incoming on a port the
     kernel picks) after migrate-set-parameters max-bandwidth/downtime-limit
     on the source, follows query-migrate and the MIGRATION events until it
     completes or a time cap derived from the case passes (then
     migrate_cancel: recorded as not converging);
  5. compares prediction and reality.

It prints a table of signed errors per case, the median and p90 |error| of
each quantity and the verdict agreement, and writes everything, raw numbers
of both sides included, to OUT/results.json (default build/validate); the
table, in Markdown with the machine it ran on, to OUT/results.md and, for a
full run (not --quick), to a new dated file under docs/results/
(--results-dir elsewhere, --results-dir '' nowhere).

Rounds: bt-report's "rounds" counts the pre-copy rounds, round 0 (the bulk)
included, not the stop-and-copy.  QEMU 10.0's ram.dirty-sync-count counts
every migration_bitmap_sync(): one in ram_init_bitmaps() at setup (before
round 0), one in ram_state_pending_exact() each time the pending estimate
drops below the threshold (each ends a round: either another round starts
or the migration completes), and one in ram_save_complete() with the VM
stopped (migration_iteration_run() in migration.c completes only after an
exact sync, so the last pre-copy round always ends with one).  So

  real rounds = dirty-sync-count - 2   for a completed migration
  real rounds = dirty-sync-count - 1   for one cancelled at the cap (no
                                       final sync; rounds ended by a sync)

(Edge case: with a threshold of 0, before QEMU's first bandwidth
measurement, an empty bitmap completes without the exact sync; then this
under-counts by one.)  QEMU's rounds are not whole passes over RAM: the
exact sync comes whenever the pages left drop below bandwidth x
downtime-limit, so near the boundary a real migration syncs often, a few
pages apart.  The source also logs each sync with QEMU's trace events
(migration_bitmap_sync_end, migrate_pending_exact), so results.json has the
real length of every round and the pages it dirtied, next to the
prediction's per-round lists (round_s, and any other list bt-report adds).

  validate.py [--quick] [--cases REGEX] [--list] [--out DIR]

Environment: QEMU (default BUILD/qemu-system-x86_64; a private copy of it
runs), BUILD (default build/ of this tree), BT_REPORT (default
scripts/bt-report of this tree), BT_REPORT_ARGS (more bt-report options,
e.g. "--link-bandwidth 2GiB/s" for a simulator that has it).  A v2 log (with zero-page data) is
down-converted to v1 for a bt-report that reads only v1.
"""

import argparse
import atexit
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from measure import MIB, PY, TOP, machine, markdown
from measure.calibrate import calibrate, calibration_summary
from measure.compare import compare, per_round, summarise, table
from measure.compare import markdown as markdown_table
from measure.guest import (FAILED, READY, SRC_TRACE_EVENTS, Qemu, check_destination,
                           guest_cmd, kvm_case, kvm_unusable_reason, linux_case,
                           migrate)

# --------------------------------------------------------------------------
# The grids (the guests, linux_case and kvm_case: measure.guest)


def holdout_grid():
    """Cases the simulator was never tuned on (defined before any of them
    ran; run once, with the model frozen): other guest sizes, write rates,
    max-bandwidths and downtime limits, near the boundary and beyond it."""
    return [
        linux_case('seq', 96, 48, 64, 200, ram=768),
        linux_case('random', 192, 24, 48, 500, ram=768),
        linux_case('hotcold', 384, 96, 256, 100, ram=2048),
        linux_case('phases', 192, 80, 96, 150, fill=128, ram=768),
        linux_case('random', 64, 200, 512, 50, ram=768),
        linux_case('seq', 256, 160, 512, 50, fill=512, ram=2048),
        linux_case('hotcold', 128, 48, 48, 300, ram=768),
        linux_case('random', 256, 64, 64, 300, ram=768),
        # cannot converge (or barely)
        linux_case('seq', 160, 120, 96, 100, ram=768),
        linux_case('random', 384, 150, 128, 200, ram=2048),
        kvm_case(64, 96, 150),
        kvm_case(16, 48, 50),
    ]


def holdout2_grid():
    """A second held-out grid, defined after the first had been run and
    before the start-point median (bt-report --start-phases) was scored on
    anything but the first two grids' saved migrations; run once with the
    model frozen.  Sweeping and phase workloads near the threshold, where
    the start point matters, and the other modes, other sizes and limits."""
    return [
        linux_case('seq', 48, 40, 96, 250),
        linux_case('phases', 160, 64, 128, 200),
        linux_case('random', 96, 48, 80, 150, ram=768),
        linux_case('hotcold', 192, 80, 160, 120, fill=192),
        linux_case('seq', 128, 72, 192, 80, ram=1536),
        linux_case('phases', 96, 40, 64, 400, fill=64, ram=768),
        linux_case('random', 160, 120, 384, 60),
        linux_case('hotcold', 96, 24, 32, 250, ram=768),
        # cannot converge (or barely)
        linux_case('seq', 192, 150, 128, 150),
        linux_case('phases', 256, 110, 96, 100),
        kvm_case(48, 192, 200),
        kvm_case(24, 64, 100),
    ]


def grid(quick, which='default'):
    if which == 'holdout':
        return holdout_grid()
    if which == 'holdout2':
        return holdout2_grid()
    if quick:
        return [
            linux_case('seq', 32, 32, 128, 300, ram=512),
            linux_case('random', 64, 64, 32, 100, ram=512),
            linux_case('hotcold', 64, 32, 64, 300, fill=64, ram=512),
            kvm_case(16, 128, 300),
        ]
    return [
        # near the boundary (threshold = bw x downtime)
        linux_case('seq', 64, 64, 128, 300),
        linux_case('seq', 32, 16, 32, 300),
        linux_case('random', 128, 64, 128, 300),
        linux_case('random', 256, 128, 256, 300),
        linux_case('hotcold', 256, 64, 128, 300),
        linux_case('phases', 128, 64, 128, 300),
        # with static non-zero memory
        linux_case('seq', 64, 64, 128, 300, fill=256),
        linux_case('random', 128, 64, 128, 300, fill=256),
        linux_case('hotcold', 256, 64, 128, 300, fill=256),
        linux_case('phases', 128, 64, 128, 300, fill=256),
        # dirty rate close to the bandwidth: many rounds, or none enough
        linux_case('seq', 64, 96, 128, 100),
        linux_case('random', 128, 96, 128, 100),
        linux_case('hotcold', 256, 128, 128, 300),
        linux_case('phases', 256, 96, 128, 300),
        # cannot converge
        linux_case('seq', 128, 128, 128, 300),
        linux_case('random', 256, 128, 64, 100),
        linux_case('hotcold', 256, 128, 64, 100),
        linux_case('phases', 256, 128, 64, 300),
        # KVM (manual dirty log protect: lazy clear), boot-block guest
        kvm_case(32, 256, 300),
        kvm_case(128, 128, 300),
    ]


# --------------------------------------------------------------------------
# One case


def nonzero_mib(case):
    """Roughly how much of the guest's RAM is not zero: what a real
    migration sends in full in its bulk round."""
    if case['guest'] == 'bootblock':
        return case['wss_mib'] + 2
    return case['wss_mib'] + case['fill_mib'] + 80   # kernel, initramfs


def trace_iterations(case, period_ms, quick):
    # bt-report's round 0 sends all of RAM at the bandwidth: cover that
    # (and the real migration's bulk round, shorter: zero pages are cheap).
    bulk_s = case['ram_mib'] / case['bandwidth_mib_s']
    want_s = 4 if quick else min(max(10, 1.2 * bulk_s), 30)
    return int(math.ceil(want_s * 1000 / period_ms))


def migration_cap_s(case, prediction, quick):
    bulk_s = nonzero_mib(case) / case['bandwidth_mib_s']
    cap = 3 * bulk_s + 10
    if prediction and prediction.get('converges') and prediction.get('total_s'):
        cap = max(cap, 2 * prediction['total_s'] + 10)
    return min(max(cap, 15), 20 if quick else 90)


def log_v2_to_v1(src, dst):
    """Log format v2 is v1 plus zero-page fields and lines: drop them, for
    a bt-report that reads only v1."""
    with open(src) as f, open(dst, 'w') as g:
        for i, line in enumerate(f):
            if i == 0:
                line = 'bitmap-trace v1\n'
            elif line.startswith(('zero ', 'unmapped-zero ')):
                continue
            elif line.startswith('iter '):
                line = ' '.join(w for w in line.split()
                                if not w.startswith(('zero=', 'zero-us='))) + '\n'
            g.write(line)


def run_report(log, case, bt_report, calibration=None):
    """bt-report's prediction for @case; returns (json, how it was run)."""
    def run(path, calib):
        cmd = [PY, bt_report, path, '--json',
               '--bandwidth', f"{case['bandwidth_mib_s']}MiB/s",
               '--downtime-limit', str(case['downtime_ms'])]
        if calib:
            cmd += ['--calibration', calib]
        cmd += shlex.split(os.environ.get('BT_REPORT_ARGS', ''))
        return cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    cmd, r = run(log, calibration)
    how = {'command': cmd}
    if r.returncode != 0 and calibration and 'unrecognized arguments: --calibration' in r.stderr:
        cmd, r = run(log, None)
        how = {'command': cmd, 'calibration': 'this bt-report has no --calibration'}
    if r.returncode != 0 and "unsupported format 'v2'" in r.stderr:
        v1 = log + '.v1'
        log_v2_to_v1(log, v1)
        cmd, r = run(v1, None)
        how = {'command': cmd, 'converted': 'v2 log down-converted to v1 '
               '(zero-page data dropped): this bt-report reads only v1'}
    if r.returncode != 0:
        raise RuntimeError(f'bt-report failed ({r.returncode}): {r.stderr.strip()[-500:]}')
    return json.loads(r.stdout), how


def run_case(case, args, rundir, say):
    outdir = os.path.join(args.out, case['name'])
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    res = {'case': case, 'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    crun = tempfile.mkdtemp(prefix=case['name'][:20] + '.', dir=rundir)
    cmd = guest_cmd(case, args.qemu, args.build, outdir)
    src = Qemu('src', cmd, crun, outdir, SRC_TRACE_EVENTS)
    dst = Qemu('dst', cmd + ['-incoming', 'defer'], crun, outdir)
    try:
        t = time.monotonic()
        src.start()
        boot_timeout = 180 if case['accel'] == 'tcg' else 60
        m = src.await_console(READY[case['guest']], boot_timeout, FAILED[case['guest']])
        res['boot_s'] = round(time.monotonic() - t, 1)
        res['ready_line'] = m.group(0).strip()
        say(f'source ready after {res["boot_s"]} s: {res["ready_line"]}')

        # trace
        period = 50
        iterations = trace_iterations(case, period, args.quick)
        log = os.path.join(outdir, 'dirty.log')
        targs = {'state': True, 'filename': log, 'iterations': iterations,
                 'period': period}
        t = time.monotonic()
        src.cmd_('bitmap-trace', targs)
        ev = src.qmp.wait_event('BITMAP_TRACE_COMPLETED',
                                iterations * period * 4 / 1000 + 60)
        res['trace'] = {'arguments': targs, 'event': ev.get('data'),
                        'wall_s': round(time.monotonic() - t, 2)}
        if ev.get('data', {}).get('status') != 'completed':
            raise RuntimeError(f'trace did not complete: {ev}')
        say(f'traced {iterations} x {period} ms in {res["trace"]["wall_s"]} s')

        # prediction (the destination starts meanwhile)
        dst.start()
        t = time.monotonic()
        rep, res['report_run'] = run_report(log, case, args.bt_report, args.use_calibration)
        res['report_s'] = round(time.monotonic() - t, 2)
        pred = rep['prediction'][0] if rep.get('prediction') else None
        res['prediction'] = pred
        res['trace_summary'] = {k: rep.get(k) for k in (
            'ram_pages', 'baseline_pages', 'distinct_pages', 'dirty_min',
            'dirty_mean', 'dirty_max', 'span_ms', 'window_ms', 'dirty_rate_mib_s')}
        res['trace_summary']['accel'] = rep.get('meta', {}).get('accel')
        if pred:
            say('predicted: ' + (
                f"converges in {pred.get('rounds')} rounds, total "
                f"{pred.get('total_s'):.2f} s, downtime {pred.get('downtime_s') * 1000:.0f} ms"
                if pred.get('converges') else
                f"does not converge ({pred.get('why', '')})"))

        # the real migration
        cap = migration_cap_s(case, pred, args.quick)
        say(f"migrating at max-bandwidth {case['bandwidth_mib_s']} MiB/s, "
            f"downtime-limit {case['downtime_ms']} ms (cap {cap:.0f} s)")
        real = migrate(case, src, dst, cap, say)
        res['real'] = real
        if real['status'] not in ('completed', 'cancelled'):
            raise RuntimeError(
                f"migration {real['status']}: "
                f"{real['query_migrate'].get('error-desc', '')}; destination: {dst.tail(3)}")
        if real['status'] == 'completed':
            real['destination'] = check_destination(case, dst, say)
        res['real'] = real
        s = real['summary']
        say(f"real: {s['status']}" + (
            f" in {s['total_ms']} ms, downtime {s['downtime_ms']} ms, "
            f"dirty-sync-count {s['dirty_sync_count']} (rounds {s['rounds']}), "
            f"{(s['ram_transferred'] or 0) / MIB:.0f} MiB"
            if s['converged'] else
            f" (not converged in {cap:.0f} s; dirty-sync-count {s['dirty_sync_count']})"))
        res['comparison'] = compare(pred, s)
        res['comparison']['per_round'] = per_round(pred, real)
    except Exception as e:  # noqa: BLE001 - one case's failure is recorded
        res['error'] = f'{type(e).__name__}: {e}'
        say(f'error: {res["error"]}')
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(crun, ignore_errors=True)
    return res


# --------------------------------------------------------------------------


def rescore(args):
    """Predict again from the traces of an earlier run, and compare."""
    doc = json.load(open(args.rescore))
    base = os.path.dirname(os.path.abspath(args.rescore))
    for r in doc['cases']:
        if 'real' not in r or 'trace' not in r:
            continue
        log = r['trace']['arguments']['filename']
        if not os.path.exists(log):   # the results directory was moved
            log = os.path.join(base, r['case']['name'], 'dirty.log')
        try:
            rep, r['report_run'] = run_report(log, r['case'], args.bt_report, args.use_calibration)
        except (RuntimeError, OSError, ValueError) as e:
            r['error'] = f'rescore: {e}'
            r.pop('comparison', None)
            continue
        r.pop('error', None)
        pred = rep['prediction'][0] if rep.get('prediction') else None
        r['prediction'] = pred
        r['comparison'] = compare(pred, r['real']['summary'])
        r['comparison']['per_round'] = per_round(pred, r['real'])
    doc['bt_report'] = args.bt_report
    doc['rescored_from'] = os.path.abspath(args.rescore)
    doc['summary'] = summarise(doc['cases'])
    out = os.path.join(base, 'results-rescored.json')
    with open(out, 'w') as f:
        json.dump(doc, f, indent=1)
    print(table(doc['cases'], doc['summary']))
    print(f'\nvalidate: rescored with {args.bt_report}; JSON: {out}')
    return 1 if doc['summary']['errors'] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--quick', action='store_true',
                    help='a few small fast cases (the end-to-end test)')
    ap.add_argument('--cases', help='only the cases whose name matches this regex')
    ap.add_argument('--list', action='store_true', help='list the cases and exit')
    ap.add_argument('--out', help='results directory (default BUILD/validate)')
    ap.add_argument('--rescore', metavar='JSON',
                    help='no new run: predict again (BT_REPORT) from the logs of an '
                    'earlier results.json and compare with its real migrations; '
                    'writes results-rescored.json beside it')
    ap.add_argument('--show', metavar='JSON',
                    help='only print the table of an earlier results.json')
    ap.add_argument('--grid', choices=('default', 'holdout', 'holdout2'), default='default',
                    help='the default grid, or the held-out one (other guest sizes, rates, '
                    'bandwidths and downtime limits, never tuned on)')
    ap.add_argument('--calibrate', action='store_true',
                    help='(re)run the calibration migrations and exit (make validate runs '
                    'them first when the cache is missing or stale)')
    ap.add_argument('--calibration-file', metavar='JSON',
                    help='the calibration cache (default BUILD/validate/calibration.json)')
    ap.add_argument('--no-calibration', action='store_true',
                    help="predict with bt-report's uncalibrated defaults")
    ap.add_argument('--results-dir', metavar='DIR', default=None,
                    help='where a full run writes its dated Markdown results file '
                    "(default docs/results of this tree; '' for none; --quick writes "
                    'only OUT/results.md)')
    args = ap.parse_args()
    if args.show:
        doc = json.load(open(args.show))
        print(table(doc['cases'], summarise(doc['cases'])))
        return 0
    args.bt_report = os.environ.get('BT_REPORT') or os.path.join(TOP, 'scripts/bt-report')
    args.build = os.path.abspath(os.environ.get('BUILD') or os.path.join(TOP, 'build'))
    args.calibration_file = os.path.abspath(
        args.calibration_file or os.path.join(args.build, 'validate', 'calibration.json'))
    args.calib_dir = os.path.join(os.path.dirname(args.calibration_file), 'calibration')
    args.use_calibration = None
    if args.rescore:
        if not args.no_calibration and os.path.exists(args.calibration_file):
            args.use_calibration = args.calibration_file
        return rescore(args)
    args.qemu = os.environ.get('QEMU') or os.path.join(args.build, 'qemu-system-x86_64')
    args.out = os.path.abspath(args.out or os.path.join(args.build, 'validate'))

    cases = grid(args.quick, args.grid)
    if args.cases:
        cases = [c for c in cases if re.search(args.cases, c['name'])]
    if args.list:
        for c in cases:
            print(c['name'])
        return 0
    if not os.access(args.qemu, os.X_OK):
        print(f'validate: {args.qemu} not built (make, or QEMU=...)', file=sys.stderr)
        return 2
    if args.calibrate or not args.no_calibration or any(c['guest'] == 'linux' for c in cases):
        r = subprocess.run(['bash', os.path.join(TOP, 'scripts/guest.sh')],
                           env={**os.environ, 'BUILD': args.build},
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout + r.stderr, file=sys.stderr)
            print('validate: the demo guest cannot be prepared', file=sys.stderr)
            return 3
    os.makedirs(args.out, exist_ok=True)
    rundir = tempfile.mkdtemp(prefix='bt-validate.')
    atexit.register(shutil.rmtree, rundir, True)
    # Run a private copy: a rebuild of QEMU during the run must not give the
    # destination another binary than the source.
    qemu_copy = os.path.join(rundir, 'qemu-system-x86_64')
    shutil.copy2(os.path.realpath(args.qemu), qemu_copy)
    qemu_orig, args.qemu = args.qemu, qemu_copy
    args.qemu_orig = qemu_orig
    kvm_why = kvm_unusable_reason()
    host = machine.describe(qemu_orig, kvm_why)
    calibration = None
    if args.calibrate or not args.no_calibration:
        calibration = calibrate(args, rundir, args.quick, force=args.calibrate)
        args.use_calibration = args.calibration_file
        print('validate: calibration: ' + calibration_summary(calibration), flush=True)
        if args.calibrate:
            return 0

    t_all = time.monotonic()
    results = []
    out_json = os.path.join(args.out, 'results.json')

    def save(done):
        summary = summarise(results)
        doc = {'version': 1, 'complete': done, 'quick': args.quick,
               'qemu': qemu_orig, 'host': {'cpus': os.cpu_count(),
                                           'kvm_unusable': kvm_why},
               'machine': host,
               'bt_report': args.bt_report,
               'grid': args.grid,
               'calibration': ({k: v for k, v in calibration.items() if k != 'raw'}
                               if calibration else None),
               'calibration_file': args.use_calibration,
               'rounds_mapping': 'real rounds = dirty-sync-count - 2 (completed: '
                                 'setup sync in ram_init_bitmaps + one '
                                 'ram_state_pending_exact sync ending each round + '
                                 'the final sync in ram_save_complete); '
                                 'dirty-sync-count - 1 when cancelled at the cap',
               'wall_s': round(time.monotonic() - t_all, 1),
               'summary': summary, 'cases': results}
        tmp = out_json + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, out_json)
        return summary

    print(f'validate: {len(cases)} cases; QEMU {qemu_orig}; results in {args.out}',
          flush=True)
    for i, case in enumerate(cases, 1):
        def say(msg, _n=case['name']):
            print(f'  [{_n}] {msg}', flush=True)
        print(f'validate: case {i}/{len(cases)}: {case["name"]}', flush=True)
        if case['accel'] == 'kvm' and kvm_why:
            results.append({'case': case, 'skipped': f'KVM: {kvm_why}'})
            say(f'skipped: {kvm_why}')
        else:
            t = time.monotonic()
            results.append(run_case(case, args, rundir, say))
            results[-1]['wall_s'] = round(time.monotonic() - t, 1)
        save(False)
    summary = save(True)
    print()
    print(table(results, summary))
    print(f'\nvalidate: {len(cases)} cases in {time.monotonic() - t_all:.0f} s; '
          f'JSON: {out_json}')
    paths = markdown.publish('validate', results_markdown(args, host, calibration, results,
                                                          summary),
                             args.out, host['host'], args.quick, args.results_dir,
                             tag=None if args.grid == 'default' else args.grid)
    print('validate: Markdown: ' + ', '.join(paths))
    return 1 if summary['errors'] else 0


def results_markdown(args, host, calibration, results, summary):
    """The run as a results file: the machine, how it was run, the
    calibration, the table and the summary."""
    command = 'validate.py ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
    for var in ('BT_REPORT', 'BT_REPORT_ARGS'):
        if os.environ.get(var):
            command = f'{var}={shlex.quote(os.environ[var])} {command}'
    cal = ('none: bt-report\'s uncalibrated defaults (--no-calibration)' if not calibration
           else f"{calibration_summary(calibration)}; measured {calibration.get('when')}"
           f"{' (quick)' if calibration.get('quick') else ''}, `{args.use_calibration}`")
    title = (f"make validate: the {args.grid} grid{' (quick)' if args.quick else ''}, "
             f"{len(results)} cases, {host['when'][:10]}")
    accel = ('the demo guest (Linux) under TCG; the boot-block guest under KVM '
             '(dirty bitmap, manual protect: lazy clear)')
    return markdown.document(title, machine.markdown(host, accel), [
        ('How it was run', markdown.code(command, 'sh') +
         f"\n\nbt-report: `{args.bt_report}`; {summary['cases']} cases, "
         f"{summary['errors']} errors, {summary['skipped']} skipped."),
        ('Calibration', cal),
        ('Results', 'Signed errors are predicted - real (in % of real; in ms for the '
         'downtime). Times, downtime and bytes are compared only when both sides '
         'converge. Rounds: bt-report counts the pre-copy rounds, round 0 included; '
         'the real ones are dirty-sync-count - 2 (docs/accuracy.md says why).\n\n' +
         markdown_table(results, summary)),
    ])


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
