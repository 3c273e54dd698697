#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench.py: what bitmap-trace costs, next to what migration's own sync costs.

For each case (a guest: accelerator, RAM, vCPUs, dirty fraction) it boots the
guest once and, on that same running guest, in turn:

  1. measures the guest's own throughput with no trace (the demo guest's
     bt-workload under TCG prints MiB/s every second; the boot-block guest
     under KVM counts its passes over the swept pages, read with HMP xp);
  2. traces it with bitmap-trace (binary log) at 1000, 100 and 10 ms for a
     few seconds each, measuring the throughput again and comparing it with
     an untraced window just before (the guest's speed drifts on a shared
     host), and takes from the
     log and the trace events, per round: sync-us, harvest-us (take, re-arm
     and map the pages), the vCPUs' pause (the two added up), zero-us, the
     time the trace thread waited for and held the BQL (the pause is within
     it, and the thread holds it a little longer), the encode and write
     time and bytes (trace event bitmap_trace_round), and the rounds that
     came late (after their deadline by more than a tenth of the period),
     and the slots missed (skipped after a round more than half a period
     late);
  3. converts the 100 ms binary log to text (bt-report's to_text, the text
     QEMU would have written) for the log bytes per dirty page in each
     format, and times the analyzer (parse.parse) on both;
  4. traces once more at 100 ms with the text log, for the text writer's
     encode time;
  5. migrates the guest to a destination QEMU throttled with max-bandwidth
     (so that pre-copy runs many rounds) for a few seconds, then cancels,
     timing each migration_bitmap_sync() with its trace events
     migration_bitmap_sync_start/end;
  6. runs calc-dirty-rate in dirty-bitmap mode and times the command and its
     result (QEMU has no trace event around its sync).

Then, with no guest, the analyzer alone on large synthetic logs of 16 GiB
guests, text and binary (scripts/analyzer-bench.py: MB/s next to a raw
read of the file); --analyzer-only runs only that.

Everything is repeated --repeat times (the machine is shared and noisy) and
printed as median [min-max] over the repeats, one line per case and figure;
OUT/results.json (default build/bench) has every raw number.

  bench.py [--quick] [--repeat N] [--cases REGEX] [--list] [--out DIR]
  bench.py --analyzer-only [--quick] [--repeat N]

--quick: a 256 MiB KVM case (when /dev/kvm is usable) and a 512 MiB TCG
case with short windows, well under 2 minutes: it checks the machinery
(tests/harness/bench-test.sh), not the numbers.

KVM runs only the boot-block guest of the exactness tests: this host's
/dev/kvm is PVM, under which Debian's kernel does not boot; the Linux guest
runs under TCG.  The KVM dirty ring is skipped: under PVM it stalls the
guest as soon as it is used (see docs/testing.md).

Environment: QEMU (default BUILD/qemu-system-x86_64), BUILD (default build/).
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time

from measure import MIB, TOP, analyzer_bench as ab, machine, markdown
from measure.guest import FAILED, READY, Qemu, bootblock_image, kvm_unusable_reason, trace_line

try:
    from btrace import binlog, parse
except ModuleNotFoundError as e:
    if e.name != 'btrace':
        raise
    # the analyzer's package is not on the path
    sys.exit(f'bench: {e}: run it as make bench, or with PYTHONPATH=scripts:analyzer')

PASS_COUNTER = 0x10000      # hot_pages[0] + PASS_COUNT_OFF of the boot block
TRACE_EVENTS = ('bitmap_trace_round', 'migration_bitmap_sync_start',
                'migration_bitmap_sync_end')


def case(accel, ram_gib, cpus, frac, rate=0):
    """@frac of the RAM is rewritten; under TCG at @rate MiB/s (0: as fast
    as the vCPU goes), pages drawn at random: a low rate over a large
    share is sparse random writes."""
    guest = 'bootblock' if accel == 'kvm' else 'linux'
    ram_mib = int(ram_gib * 1024)
    return {'name': f'{accel}-{ram_gib:g}G-{cpus}cpu-{frac * 100:g}pct' +
            (f'-r{rate}' if rate else ''),
            'accel': accel, 'guest': guest, 'ram_mib': ram_mib, 'cpus': cpus,
            'dirty_frac': frac, 'rate_mib_s': rate,
            'wss_mib': max(int(ram_mib * frac), 1)}


def grid(quick, big):
    if quick:
        return [case('kvm', 0.25, 1, 0.1), case('tcg', 0.5, 1, 0.1)]
    cases = []
    # KVM, the boot-block guest: RAM x vCPUs x swept share of RAM
    for ram in (1, 4, 16) + ((64,) if big else ()):
        for cpus in (1, 8):
            for frac in (0.001, 0.1):
                cases.append(case('kvm', ram, cpus, frac))
    cases += [case('kvm', 16, 8, 0.01), case('kvm', 4, 4, 0.01),
              case('kvm', 1, 1, 0.5)]
    # TCG, the Linux guest
    for ram in (1, 4):
        for cpus in (1, 4):
            cases.append(case('tcg', ram, cpus, 0.01))
    cases += [case('tcg', 1, 1, 0.001), case('tcg', 1, 1, 0.1),
              case('tcg', 1, 1, 0.5),
              # sparse random writes: 0.16 % and 1.6 % of the pages a round
              case('tcg', 1, 1, 0.5, rate=8), case('tcg', 1, 1, 0.5, rate=80)]
    return cases


def guest_cmd(c, qemu, build, outdir):
    cmd = [qemu, '-nodefaults', '-no-user-config', '-display', 'none',
           '-machine', 'pc', '-m', str(c['ram_mib']), '-smp', str(c['cpus']),
           '-no-reboot']
    if c['ram_mib'] > 16 * 1024:
        # more than the host has: never touched, so never reserved
        cmd[cmd.index('pc')] = 'pc,memory-backend=ram0'
        cmd += ['-object', f"memory-backend-ram,id=ram0,size={c['ram_mib']}M,reserve=off"]
    if c['guest'] == 'linux':
        append = (f"console=ttyS0 panic=-1 quiet bt.wss={c['wss_mib']} "
                  f"bt.rate={c.get('rate_mib_s', 0)} bt.report=1 bt.mode=random")
        return cmd + ['-accel', 'tcg',
                      '-kernel', os.path.join(build, 'guest/vmlinuz'),
                      '-initrd', os.path.join(build, 'guest/initramfs.cpio.gz'),
                      '-append', append]
    img = os.path.join(outdir, 'bootblock.img')
    start = 16 * MIB
    bootblock_image(img, start, start + c['wss_mib'] * MIB)
    return cmd + ['-accel', 'kvm', '-drive', f'file={img},format=raw,if=ide']


# --------------------------------------------------------------------------
# Throughput


class Throughput:
    """The guest's own progress: MiB/s of bt-workload, or passes of the
    boot block per second."""

    def __init__(self, q, c):
        self.q = q
        self.c = c

    def word(self, addr):
        out = self.q.cmd_('human-monitor-command',
                          {'command-line': f'xp /1wu {addr:#x}'})
        return int(out.split(':')[1].split()[0])

    def passes(self):
        """Passes over the swept pages, with the fraction of the current
        one: each pass increments a dword in every page in order, so the
        first page whose count is still the completed passes' is where the
        guest is (a binary search, ~log2(pages) reads)."""
        done = self.word(PASS_COUNTER)
        start = 16 * MIB
        npages = self.c['wss_mib'] * MIB // 4096
        lo, hi = 0, npages
        while lo < hi:
            mid = (lo + hi) // 2
            if self.word(start + mid * 4096) > done:
                lo = mid + 1
            else:
                hi = mid
        return done + lo / npages

    def measure(self, seconds, during=None):
        """Throughput over @seconds while during() (if any) runs first."""
        if self.c['guest'] == 'linux':
            start = len(self.q.console_text())
            if during:
                during()
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                time.sleep(0.2)
            text = self.q.console_text()[start:]
            rates = [float(x) for x in
                     re.findall(r'^bt-workload: progress .*MiB/s=([0-9.]+)', text, re.M)]
            # the first line may cover time before the window
            rates = rates[1:] if len(rates) > 2 else rates
            return statistics.mean(rates) if rates else None
        p0, t0 = self.passes(), time.monotonic()
        if during:
            during()
        t_end = t0 + seconds
        while time.monotonic() < t_end:
            time.sleep(0.1)
        p1, t1 = self.passes(), time.monotonic()
        return (p1 - p0) / (t1 - t0)


# --------------------------------------------------------------------------
# Trace events

def read_events(path, start):
    """(wall time, name, args) of the trace events after byte @start."""
    out = []
    try:
        with open(path, 'rb') as f:
            f.seek(start)
            text = f.read().decode(errors='replace')
    except OSError:
        return out
    for line in text.splitlines():
        # QEMU 10.0's and 10.2's line formats: guest.trace_line()
        m = trace_line(line)
        if m:
            out.append(m)
    return out


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def rounds_from_events(evs):
    """bitmap_trace_round: iter N bql wait Wus held Hus encode Eus write Wus bytes B"""
    out = []
    for _, name, args in evs:
        if name != 'bitmap_trace_round':
            continue
        nums = [int(x) for x in re.findall(r'-?\d+', args)]
        if len(nums) >= 6:
            out.append({'n': nums[0], 'bql_wait_us': nums[1], 'bql_us': nums[2],
                        'encode_us': nums[3], 'write_us': nums[4], 'bytes': nums[5]})
    return out


def syncs_from_events(evs):
    out, start = [], None
    for t, name, args in evs:
        if name == 'migration_bitmap_sync_start':
            start = t
        elif name == 'migration_bitmap_sync_end' and start is not None:
            nums = re.findall(r'\d+', args)
            out.append({'us': round((t - start) * 1e6),
                        'dirty_pages': int(nums[-1]) if nums else None})
            start = None
    return out


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {'median': pct(xs, 50), 'p99': pct(xs, 99), 'max': max(xs), 'n': len(xs)}


# --------------------------------------------------------------------------
# One case


def trace(q, tp, path, fmt, period, seconds):
    """Trace @q for about @seconds; returns the raw record."""
    iterations = max(3, int(seconds * 1000 / period))
    ev_start = log_size(q.trace_log)
    args = {'state': True, 'filename': path, 'format': fmt,
            'iterations': iterations, 'period': period}
    rec = {'arguments': args}
    t = time.monotonic()

    def start():
        q.cmd_('bitmap-trace', args)
    rec['throughput'] = tp.measure(iterations * period / 1000, start)
    ev = q.qmp.wait_event('BITMAP_TRACE_COMPLETED', iterations * period / 1000 * 4 + 60)
    rec['wall_s'] = round(time.monotonic() - t, 2)
    rec['status'] = ev.get('data', {}).get('status')
    log = parse.parse(path)
    its = log.iters[1:]
    # each round's lateness, against its deadline as the trace thread sets
    # them (bitmap_trace_thread()): t0 + n * period, started again from a
    # round more than half a period late, the slots it missed skipped
    lat, deadline, missed = [], 0.0, 0
    for it in its:
        deadline += period
        lat.append(it.t_ms - deadline)
        if 2 * lat[-1] > period:
            missed += int(lat[-1] // period)
            deadline = it.t_ms
    rec['rounds'] = len(its)
    rec['late'] = sum(1 for x in lat if x > period / 10)
    rec['missed'] = missed
    rec['late_ms'] = summary(lat)
    rec['dirty'] = summary([it.dirty for it in its])
    rec['dirty_total'] = sum(it.dirty for it in its)
    rec['sync_us'] = summary([it.sync_us for it in its])
    rec['harvest_us'] = summary([it.harvest_us for it in its])
    # the vCPUs are parked from the start of sync-us to the end of
    # harvest-us (less a memory map reread after them, when it changed)
    rec['pause_us'] = summary([it.sync_us + it.harvest_us for it in its])
    rec['zero_us'] = summary([it.zero_us for it in its])
    rec['baseline'] = {'sync_us': log.iters[0].sync_us,
                       'harvest_us': log.iters[0].harvest_us,
                       'zero_us': log.iters[0].zero_us}
    time.sleep(0.2)         # the log backend flushes per line; be safe
    rr = rounds_from_events(read_events(q.trace_log, ev_start))
    for k in ('bql_wait_us', 'bql_us', 'encode_us', 'write_us', 'bytes'):
        rec[k] = summary([r[k] for r in rr])
    rec['log_bytes'] = log_size(path)
    return rec


def bytes_per_page(path):
    """Log bytes per dirty page of the measured iterations, for the binary
    log at @path and for its text (what QEMU's text log of the same trace
    holds), and the analyzer's speed on each."""
    with open(path, 'rb') as f:
        data = f.read()
    ends = [(t, e) for t, _, e in binlog.records(data)]
    # the header and the baseline (iteration 0) are not per-round costs
    base_bin = ends[1][1]
    end_bin = ends[-1][1] if ends[-1][0] != ord('E') else ends[-2][1]
    text = binlog.to_text(data)
    i1 = text.find('\niter n=1 ')
    ie = text.find('\nend ')
    base_txt = i1 + 1 if i1 >= 0 else len(text)
    end_txt = ie + 1 if ie >= 0 else len(text)
    log = parse.parse_text(text)
    dirty = sum(it.dirty for it in log.iters[1:])
    out = {'dirty_pages': dirty,
           'binary_bytes': end_bin - base_bin, 'text_bytes': end_txt - base_txt,
           'binary_file': len(data), 'text_file': len(text)}
    if dirty:
        out['binary_per_page'] = round(out['binary_bytes'] / dirty, 3)
        out['text_per_page'] = round(out['text_bytes'] / dirty, 3)
    tdir = tempfile.mkdtemp(prefix='bench-parse.')
    try:
        tpath = os.path.join(tdir, 'log.txt')
        with open(tpath, 'w') as f:
            f.write(text)
        for name, p, size in (('binary', path, len(data)), ('text', tpath, len(text))):
            t = time.perf_counter()
            parse.parse(p)
            dt = time.perf_counter() - t
            out[f'parse_{name}_s'] = round(dt, 4)
            out[f'parse_{name}_mb_s'] = round(size / 1e6 / dt, 2)
            # per dirty page: what matters for a log of any format
            out[f'parse_{name}_mpages_s'] = round((dirty + log.iters[0].dirty) / 1e6 / dt, 3)
    finally:
        shutil.rmtree(tdir, ignore_errors=True)
    return out


def migrate(src, dst, seconds, bw_mib_s):
    """Pre-copy for @seconds at @bw_mib_s, then cancel; per-sync timings."""
    ev_start = log_size(src.trace_log)
    src.cmd_('migrate-set-parameters', {'max-bandwidth': bw_mib_s * MIB,
                                        'downtime-limit': 1})
    dst.cmd_('migrate-incoming', {'uri': 'tcp:127.0.0.1:0'})
    port = None
    for a in dst.cmd_('query-migrate').get('socket-address', []):
        if 'port' in a:
            port = int(a['port'])
    if not port:
        raise RuntimeError('the destination reports no port')
    src.cmd_('migrate', {'uri': f'tcp:127.0.0.1:{port}'})
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        st = src.cmd_('query-migrate').get('status')
        if st in ('completed', 'failed', 'cancelled'):
            break
        time.sleep(0.2)
    final = src.cmd_('query-migrate')
    if final.get('status') not in ('completed', 'failed', 'cancelled'):
        src.cmd_('migrate_cancel')
        for _ in range(100):
            if src.cmd_('query-migrate').get('status') in ('cancelled', 'failed',
                                                           'completed'):
                break
            time.sleep(0.1)
    time.sleep(0.2)
    syncs = syncs_from_events(read_events(src.trace_log, ev_start))
    ram = final.get('ram', {})
    return {'status': final.get('status'), 'bandwidth_mib_s': bw_mib_s,
            'dirty_sync_count': ram.get('dirty-sync-count'),
            'syncs': len(syncs),
            # the first sync (ram_init_bitmaps) has every bit set: apart
            'first_sync_us': syncs[0]['us'] if syncs else None,
            'sync_us': summary([s['us'] for s in syncs[1:]]),
            'sync_dirty': summary([s['dirty_pages'] for s in syncs[1:]])}


def calc_dirty_rate(q, tp):
    t = time.monotonic()

    def start():
        q.cmd_('calc-dirty-rate', {'calc-time': 1, 'mode': 'dirty-bitmap'})
    thr = tp.measure(1.0, start)
    for _ in range(100):
        r = q.cmd_('query-dirty-rate')
        if r.get('status') == 'measured':
            break
        time.sleep(0.1)
    return {'wall_s': round(time.monotonic() - t, 2), 'status': r.get('status'),
            'dirty_rate_mb_s': r.get('dirty-rate'), 'throughput': thr}


def run_case(c, args, rundir, say, rep):
    outdir = os.path.join(args.out, f"{c['name']}.{rep}")
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    res = {'case': c, 'repeat': rep}
    crun = tempfile.mkdtemp(prefix='bench.', dir=rundir)
    cmd = guest_cmd(c, args.qemu, args.build, outdir)
    src = Qemu('src', cmd, crun, outdir, TRACE_EVENTS)
    dst = Qemu('dst', cmd + ['-incoming', 'defer'], crun, outdir)
    win = args.window
    try:
        t = time.monotonic()
        src.start()
        ready = READY[c['guest']]
        src.await_console(ready, 300 if c['accel'] == 'tcg' else 60,
                          FAILED[c['guest']])
        if c['guest'] == 'linux':
            src.await_console(r'^bt-workload: progress', 60)
        res['boot_s'] = round(time.monotonic() - t, 1)
        tp = Throughput(src, c)
        tp.measure(0.5 if args.quick else 1.0)           # settle
        res['base'] = tp.measure(win)
        say(f"ready after {res['boot_s']} s; throughput {res['base']:.1f} "
            f"{'MiB/s' if c['guest'] == 'linux' else 'passes/s'}")
        res['traces'] = {}
        for period in args.periods:
            path = os.path.join(outdir, f'trace-{period}.btl')
            # the guest's speed drifts (a shared host): compare each traced
            # window with an untraced one just before it
            base = tp.measure(win)
            r = trace(src, tp, path, 'binary', period, win)
            r['base'] = base
            res['traces'][str(period)] = r
            loss = 100 * (1 - r['throughput'] / base) if base else None
            r['throughput_loss_pct'] = round(loss, 2) if loss is not None else None
            say(f"trace {period} ms: {r['rounds']} rounds, held "
                f"{(r['bql_us'] or {}).get('median')} us median, late {r['late']}, "
                f"missed {r['missed']}, throughput loss "
                f"{'-' if loss is None else f'{loss:+.1f}'} %")
        p100 = os.path.join(outdir, 'trace-100.btl')
        if os.path.exists(p100):
            res['log_size'] = bytes_per_page(p100)
            res['text'] = trace(src, tp, os.path.join(outdir, 'trace-100.txt'),
                                'text', 100, win)
        dst.start()
        # the bulk round scans all RAM (zero pages too) before the next sync
        res['migration'] = migrate(src, dst, args.migrate_s + c['ram_mib'] / 1024,
                                   args.migrate_bw)
        say(f"migration: {res['migration']['syncs']} syncs, "
            f"{(res['migration']['sync_us'] or {}).get('median')} us median")
        dst.stop()
        res['calc_dirty_rate'] = calc_dirty_rate(src, tp)
    except Exception as e:  # noqa: BLE001 - one case's failure is recorded
        res['error'] = f'{type(e).__name__}: {e}'
        say(f'error: {res["error"]}')
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(crun, ignore_errors=True)
    return res


# --------------------------------------------------------------------------
# The table


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs, f='{:.0f}'):
    xs = [x for x in xs if x is not None]
    if not xs:
        return '-'
    if len(xs) == 1:
        return f.format(xs[0])
    return f'{f.format(statistics.median(xs))} [{f.format(min(xs))}-{f.format(max(xs))}]'


def get(r, *path):
    for k in path:
        if r is None:
            return None
        r = r.get(k) if isinstance(r, dict) else None
    return r


def table(results, periods):
    by = {}
    for r in results:
        by.setdefault(r['case']['name'], []).append(r)
    lines = []
    for name, rs in by.items():
        ok = [r for r in rs if 'error' not in r]
        errs = [r['error'] for r in rs if 'error' in r]
        lines.append(f'{name}  ({len(ok)} of {len(rs)} runs' +
                     (f'; error: {errs[0]}' if errs else '') + ')')
        if not ok:
            continue
        unit = 'MiB/s' if rs[0]['case']['guest'] == 'linux' else 'passes/s'
        lines.append(f"  throughput, no trace: {spread([r.get('base') for r in ok], '{:.1f}')} {unit}")
        hdr = (f"  {'period':>7} {'loss %':>14} {'sync us':>14} {'harvest us':>14} "
               f"{'zero us':>12} {'pause us':>14} {'p99':>8} {'BQL held us':>14} {'p99':>8} "
               f"{'encode us':>12} "
               f"{'write us':>10} {'late/missed':>11}")
        lines.append(hdr)
        for p in periods:
            t = [get(r, 'traces', str(p)) for r in ok]
            t = [x for x in t if x]
            if not t:
                continue
            lines.append(
                f"  {p:>5}ms {spread([x.get('throughput_loss_pct') for x in t], '{:+.1f}'):>14} "
                f"{spread([get(x, 'sync_us', 'median') for x in t]):>14} "
                f"{spread([get(x, 'harvest_us', 'median') for x in t]):>14} "
                f"{spread([get(x, 'zero_us', 'median') for x in t]):>12} "
                f"{spread([get(x, 'pause_us', 'median') for x in t]):>14} "
                f"{spread([get(x, 'pause_us', 'p99') for x in t]):>8} "
                f"{spread([get(x, 'bql_us', 'median') for x in t]):>14} "
                f"{spread([get(x, 'bql_us', 'p99') for x in t]):>8} "
                f"{spread([get(x, 'encode_us', 'median') for x in t]):>12} "
                f"{spread([get(x, 'write_us', 'median') for x in t]):>10} "
                f"{sum(x['late'] for x in t)}/{sum(x['missed'] for x in t)} of "
                f"{sum(x['rounds'] for x in t)}")
        ls = [r.get('log_size') for r in ok if r.get('log_size')]
        if ls:
            lines.append(
                f"  log bytes/dirty page (100 ms): binary "
                f"{spread([x.get('binary_per_page') for x in ls], '{:.3f}')}, text "
                f"{spread([x.get('text_per_page') for x in ls], '{:.3f}')}; dirty pages/round "
                f"{spread([get(r, 'traces', '100', 'dirty', 'median') for r in ok])}")
            lines.append(
                f"  analyzer: binary {spread([x.get('parse_binary_mb_s') for x in ls], '{:.2f}')} MB/s "
                f"({spread([x.get('parse_binary_mpages_s') for x in ls], '{:.2f}')} Mpages/s), text "
                f"{spread([x.get('parse_text_mb_s') for x in ls], '{:.2f}')} MB/s "
                f"({spread([x.get('parse_text_mpages_s') for x in ls], '{:.2f}')} Mpages/s)")
        tx = [r.get('text') for r in ok if r.get('text')]
        if tx:
            lines.append(
                f"  text log at 100 ms: encode {spread([get(x, 'encode_us', 'median') for x in tx])} us, "
                f"write {spread([get(x, 'write_us', 'median') for x in tx])} us median per round")
        mg = [r.get('migration') for r in ok if r.get('migration')]
        if mg:
            lines.append(
                f"  migration_bitmap_sync (pre-copy at {mg[0]['bandwidth_mib_s']} MiB/s): "
                f"{spread([get(x, 'sync_us', 'median') for x in mg])} us median, p99 "
                f"{spread([get(x, 'sync_us', 'p99') for x in mg])} us, "
                f"{spread([x.get('syncs') for x in mg])} syncs; first (all bits) "
                f"{spread([x.get('first_sync_us') for x in mg])} us")
        cd = [r.get('calc_dirty_rate') for r in ok if r.get('calc_dirty_rate')]
        if cd:
            lines.append(
                f"  calc-dirty-rate dirty-bitmap (1 s): {spread([x.get('dirty_rate_mb_s') for x in cd])} MB/s, "
                f"wall {spread([x.get('wall_s') for x in cd], '{:.2f}')} s")
    return '\n'.join(lines)


def summary_table(results):
    """One row per case, in Markdown: the figures of the targets
    (docs/cost.md)."""
    by = {}
    for r in results:
        if 'error' not in r:
            by.setdefault(r['case']['name'], []).append(r)
    rows = ['| case | dirty pages/round @100ms | vCPU pause @100ms median / p99 us '
            '| BQL held @100ms median / p99 us | vCPU pause @10ms median / p99 us '
            '| sync / harvest+map / zero / encode / write us @100ms '
            '| migration_bitmap_sync median / p99 us '
            '| throughput loss % @1000 / 100 / 10 ms | late / missed @10ms '
            '| log B/dirty page binary / text |',
            '|---|---|---|---|---|---|---|---|---|---|']
    for name, ok in by.items():
        def s(*path, f='{:.0f}'):
            return spread([get(r, *path) for r in ok], f)
        t10 = [get(r, 'traces', '10') for r in ok]
        t10 = [x for x in t10 if x]
        late = (f"{sum(x['late'] for x in t10)} / {sum(x['missed'] for x in t10)} of "
                f"{sum(x['rounds'] for x in t10)}") if t10 else '-'
        rows.append(
            f"| {name} | {s('traces', '100', 'dirty', 'median')} "
            f"| {s('traces', '100', 'pause_us', 'median')} / {s('traces', '100', 'pause_us', 'p99')} "
            f"| {s('traces', '100', 'bql_us', 'median')} / {s('traces', '100', 'bql_us', 'p99')} "
            f"| {s('traces', '10', 'pause_us', 'median')} / {s('traces', '10', 'pause_us', 'p99')} "
            f"| {s('traces', '100', 'sync_us', 'median')} / {s('traces', '100', 'harvest_us', 'median')}"
            f" / {s('traces', '100', 'zero_us', 'median')} / {s('traces', '100', 'encode_us', 'median')}"
            f" / {s('traces', '100', 'write_us', 'median')} "
            f"| {s('migration', 'sync_us', 'median')} / {s('migration', 'sync_us', 'p99')} "
            f"| {s('traces', '1000', 'throughput_loss_pct', f='{:+.1f}')} / "
            f"{s('traces', '100', 'throughput_loss_pct', f='{:+.1f}')} / "
            f"{s('traces', '10', 'throughput_loss_pct', f='{:+.1f}')} "
            f"| {late} "
            f"| {s('log_size', 'binary_per_page', f='{:.2f}')} / {s('log_size', 'text_per_page', f='{:.2f}')} |")
    return '\n'.join(rows)


def analyzer_bench(args, lines=None):
    """scripts/analyzer-bench.py: the analyzer's MB/s on 16 GiB guests'
    synthetic logs, text and binary, next to a raw read (--quick: 4 GiB
    guests, a few windows, once)."""
    rep = args.repeat if args.analyzer_only and args.repeat else (1 if args.quick else 3)
    argv = ['--repeat', str(rep)]
    if args.quick:
        argv += ['--quick', '--pages', str(1 << 20), '--scale', '0.05']
    else:
        argv += ['--scale', '1']     # run() takes no defaults: main()'s
    a = ab.build_parser().parse_args(argv)
    lines = [] if lines is None else lines

    def say(msg):
        lines.append(msg)
        print(msg, flush=True)
    say(f'analyzer (scripts/analyzer-bench.py {" ".join(argv)}): MB/s of log read by '
        'parse.parse(), median [min-max]')
    return ab.run(a, say=say)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 epilog=__doc__.split('\n\n', 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--big', action='store_true', help='also 64 GiB guests (KVM)')
    ap.add_argument('--repeat', type=int, default=None)
    ap.add_argument('--cases', default=None, help='regex of case names')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--out', default=None)
    ap.add_argument('--markdown', metavar='RESULTS_JSON',
                    help='print the table of an earlier run as Markdown, and exit')
    ap.add_argument('--window', type=float, default=None,
                    help='seconds per measurement (default 4; quick 1.5)')
    ap.add_argument('--results-dir', metavar='DIR', default=None,
                    help='where a full run writes its dated Markdown results file '
                    "(default docs/results of this tree; '' for none; --quick writes "
                    'only OUT/results.md)')
    ap.add_argument('--analyzer-only', action='store_true',
                    help='only the analyzer on large synthetic logs (scripts/analyzer-bench.py; '
                         'no QEMU needed), and exit')
    args = ap.parse_args()
    if args.markdown:
        with open(args.markdown) as f:
            print(summary_table(json.load(f)['results']))
        return 0
    if args.analyzer_only:
        analyzer_bench(args)
        return 0
    args.build = os.environ.get('BUILD', os.path.join(TOP, 'build'))
    args.qemu = os.environ.get('QEMU', os.path.join(args.build, 'qemu-system-x86_64'))
    args.out = args.out or os.path.join(args.build, 'bench')
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.window = args.window or (1.5 if args.quick else 4.0)
    args.periods = (1000, 100, 10)
    args.migrate_s = 2.0 if args.quick else 6.0
    args.migrate_bw = 64 if args.quick else 256
    cases = grid(args.quick, args.big)
    if args.cases:
        cases = [c for c in cases if re.search(args.cases, c['name'])]
    if args.list:
        for c in cases:
            print(c['name'])
        return 0
    os.makedirs(args.out, exist_ok=True)
    kvm_why = kvm_unusable_reason()
    skipped = []
    if kvm_why:
        skipped += [{'case': c['name'], 'why': kvm_why} for c in cases if c['accel'] == 'kvm']
        cases = [c for c in cases if c['accel'] != 'kvm']
    if any(c['guest'] == 'linux' for c in cases) and \
            not os.path.exists(os.path.join(args.build, 'guest/vmlinuz')):
        why = 'no demo guest (scripts/guest.sh)'
        skipped += [{'case': c['name'], 'why': why} for c in cases if c['guest'] == 'linux']
        cases = [c for c in cases if c['guest'] != 'linux']
    host = machine.describe(args.qemu, kvm_why)
    mach = {'cpus': host['cpus'], 'model': host['cpu_model'], 'mem_gib': host['mem_gib'],
            'kernel': host['kernel'], 'kvm': kvm_why or 'usable',
            'dirty_ring': 'skipped: PVM /dev/kvm stalls the guest once the ring is used'}
    rundir = tempfile.mkdtemp(prefix='bt-bench.')
    results = []
    t0 = time.monotonic()

    def save():
        with open(os.path.join(args.out, 'results.json'), 'w') as f:
            json.dump({'machine': mach, 'host': host, 'quick': args.quick, 'repeat': args.repeat,
                       'window_s': args.window, 'skipped': skipped,
                       'results': results}, f, indent=1)
    try:
        for s in skipped:
            print(f"bench: {s['case']}: skipped: {s['why']}", flush=True)
        for rep in range(args.repeat):
            for c in cases:
                def say(msg, name=c['name']):
                    print(f'bench: [{time.monotonic() - t0:6.1f}s] {name}: {msg}', flush=True)
                results.append(run_case(c, args, rundir, say, rep))
                save()
    finally:
        save()
        shutil.rmtree(rundir, ignore_errors=True)
    print()
    print(f"machine: {mach['cpus']} x {mach['model']}, {mach['mem_gib']} GiB, "
          f"Linux {mach['kernel']}; KVM: {mach['kvm']}; dirty ring: {mach['dirty_ring']}")
    how = (f'{args.repeat} run(s) per case, {args.window:g} s per measurement; '
           'median [min-max] over the runs of the per-run medians')
    print(how)
    text = table(results, args.periods)
    print(text)
    analyzer_lines = []
    try:
        analyzer = analyzer_bench(args, analyzer_lines)
    except Exception as e:      # a benchmark of its own: report, go on
        analyzer = {'error': str(e)}
        print(f'bench: analyzer-bench failed: {e}')
    with open(os.path.join(args.out, 'results.json')) as f:
        doc = json.load(f)
    doc['analyzer'] = analyzer
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(doc, f, indent=1)
    print(f"bench: done in {time.monotonic() - t0:.0f} s; {os.path.join(args.out, 'results.json')}")
    md = results_markdown(args, host, mach, skipped, results, how, text, analyzer_lines)
    paths = markdown.publish('bench', md, args.out, host['host'], args.quick,
                             args.results_dir)
    print('bench: Markdown: ' + ', '.join(paths))
    return 1 if any('error' in r for r in results) else 0


def results_markdown(args, host, mach, skipped, results, how, text, analyzer_lines):
    """The run as a results file: the machine, how it was run, the summary
    table, every figure per case as printed, and the analyzer's speed."""
    command = 'bench.py ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
    names = sorted({r['case']['name'] for r in results})
    title = (f"make bench{' (quick)' if args.quick else ''}: {len(names)} cases, "
             f"{host['when'][:10]}")
    accel = ('the boot-block guest under KVM (dirty bitmap), the demo guest (Linux) '
             f"under TCG; KVM dirty ring {mach['dirty_ring']}")
    sections = [('How it was run', markdown.code(command, 'sh') + f'\n\n{how}.' +
                 ''.join(f"\n- skipped `{s['case']}`: {s['why']}" for s in skipped)),
                ('Summary', 'Per case, medians over the rounds of a run, then median '
                 '[min-max] over the runs; the columns are described in docs/cost.md.'
                 '\n\n' + summary_table(results)),
                ('Every figure, as printed', markdown.code(text))]
    if analyzer_lines:
        sections.append(('The analyzer on synthetic logs', markdown.code('\n'.join(analyzer_lines))))
    return markdown.document(title, machine.markdown(host, accel), sections)


if __name__ == '__main__':
    sys.exit(main())
