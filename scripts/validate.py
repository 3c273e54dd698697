#!/usr/bin/python3
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
of both sides included, to OUT/results.json (default build/validate).

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
import ctypes
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import qmp as qmplib  # noqa: E402

MIB = 1024 * 1024
PY = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else sys.executable

# --------------------------------------------------------------------------
# The grid


def linux_case(mode, wss, rate, bw, dt, fill=0, ram=1024, phase=3):
    name = f'{mode}-w{wss}-r{rate}' + (f'-f{fill}' if fill else '') + f'-bw{bw}-dt{dt}'
    return {'name': name, 'guest': 'linux', 'accel': 'tcg', 'ram_mib': ram,
            'mode': mode, 'wss_mib': wss, 'rate_mib_s': rate, 'fill_mib': fill,
            'phase_s': phase, 'bandwidth_mib_s': bw, 'downtime_ms': dt}


def kvm_case(sweep_mib, bw, dt, ram=256):
    return {'name': f'bootblock-kvm-s{sweep_mib}-bw{bw}-dt{dt}', 'guest': 'bootblock',
            'accel': 'kvm', 'ram_mib': ram, 'mode': 'sweep', 'wss_mib': sweep_mib,
            'rate_mib_s': None, 'fill_mib': 0, 'bandwidth_mib_s': bw,
            'downtime_ms': dt}


def grid(quick):
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
# Processes: every QEMU we start dies with us, whatever the exit path.

LIVE = []
PR_SET_PDEATHSIG = 1


def _pdeathsig():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


def kill_all():
    for p in list(LIVE):
        stop_process(p)


def stop_process(p, grace=3.0):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in LIVE:
        LIVE.remove(p)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


atexit.register(kill_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


class Qemu:
    def __init__(self, name, cmd, rundir, outdir, trace_events=()):
        self.name = name
        self.cmd = cmd
        self.sock = os.path.join(rundir, f'{name}.qmp')
        self.console = os.path.join(outdir, f'console-{name}.log')
        self.log = os.path.join(outdir, f'qemu-{name}.log')
        self.trace_log = os.path.join(outdir, f'trace-{name}.log')
        self.full = cmd + ['-qmp', f'unix:{self.sock},server=on,wait=off',
                           '-serial', f'file:{self.console}']
        if trace_events:
            # QEMU's "log" trace backend, with wall-clock timestamps
            for ev in trace_events:
                self.full += ['-trace', ev]
            self.full += ['-D', self.trace_log, '-msg', 'timestamp=on']
        with open(os.path.join(outdir, f'qemu-{name}.cmdline'), 'w') as f:
            f.write(' '.join(self.full) + '\n')
        self.proc = None
        self.qmp = None
        self.conn = None

    def start(self):
        logf = open(self.log, 'w')
        self.proc = subprocess.Popen(self.full, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     preexec_fn=_pdeathsig)
        logf.close()
        LIVE.append(self.proc)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f'{self.name} QEMU exited at start: {self.tail()}')
            try:
                self.conn = qmplib.connect(self.sock, 10)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f'{self.name}: no QMP socket after 15 s')
                time.sleep(0.05)
        self.qmp = qmplib.QMP(self.conn)
        self.qmp.greeting(10)

    def cmd_(self, name, args=None, timeout=30):
        return self.qmp.command(name, args, timeout)

    def tail(self, n=10):
        try:
            return ' | '.join(open(self.log, errors='replace').read().splitlines()[-n:])
        except OSError:
            return ''

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None and self.qmp is not None:
            try:
                self.qmp.command('quit', None, 5)
            except Exception:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.conn is not None:
            self.conn.close()
        stop_process(self.proc)

    def console_text(self):
        try:
            with open(self.console, 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def await_console(self, pattern, timeout, fail_pattern=None, start=0):
        """Wait for a console line matching @pattern (a regex, MULTILINE)."""
        rx = re.compile(pattern, re.M)
        frx = re.compile(fail_pattern, re.M) if fail_pattern else None
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()[start:]
            m = rx.search(text)
            if m:
                return m
            if frx and frx.search(text):
                raise RuntimeError(f'{self.name}: guest failed: '
                                   f'{frx.search(text).group(0)!r}')
            if self.proc.poll() is not None:
                raise RuntimeError(f'{self.name}: QEMU exited: {self.tail()}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'{self.name}: no console line /{pattern}/ '
                                   f'after {timeout:.0f} s')
            time.sleep(0.1)

    def next_message(self, timeout):
        """The next QMP message (an event), or None after @timeout s."""
        try:
            return self.qmp._read_message(time.monotonic() + timeout)
        except TimeoutError:
            return None


# --------------------------------------------------------------------------
# Guests


def kvm_unusable_reason():
    if not os.path.exists('/dev/kvm'):
        return '/dev/kvm does not exist'
    try:
        import fcntl
        fd = os.open('/dev/kvm', os.O_RDWR)
        try:
            if fcntl.ioctl(fd, 0xAE00) != 12:
                return '/dev/kvm speaks another KVM API'
        finally:
            os.close(fd)
    except OSError as e:
        return f'/dev/kvm cannot be opened read-write: {e}'
    return None


def bootblock_image(path, sweep_start, sweep_end):
    """Write the boot-block guest of the exactness tests, extracted from its
    generated header, with the sweep range patched in (as
    bitmap-trace-guest-test.c does)."""
    hdr = os.path.join(TOP, 'qemu/tests/qtest/bitmap-trace/x86-bootblock.h')
    text = open(hdr).read()
    body = re.search(r'x86_bootblock\[\]\s*=\s*\{(.*?)\};', text, re.S).group(1)
    img = bytearray(int(x, 16) for x in re.findall(r'0x([0-9a-fA-F]{2})', body))
    sym = {m.group(1): int(m.group(2), 16)
           for m in re.finditer(r'#define SYM_(\w+) 0x([0-9a-fA-F]+)', text)}
    if len(img) != 512 or img[510:] != b'\x55\xaa':
        raise RuntimeError(f'{hdr}: not a 512-byte boot sector')
    img[sym['sweep_start']:sym['sweep_start'] + 4] = sweep_start.to_bytes(4, 'little')
    # one vCPU (-smp 1): its slice is the whole sweep range
    slice_ = sweep_end - sweep_start
    img[sym['sweep_slice']:sym['sweep_slice'] + 4] = slice_.to_bytes(4, 'little')
    with open(path, 'wb') as f:
        f.write(img)


def guest_cmd(case, qemu, build, outdir):
    base = [qemu, '-nodefaults', '-no-user-config', '-display', 'none',
            '-machine', 'pc', '-m', str(case['ram_mib']), '-smp', '1',
            '-no-reboot']
    if case['guest'] == 'linux':
        append = (f"console=ttyS0 panic=-1 quiet bt.wss={case['wss_mib']} "
                  f"bt.rate={case['rate_mib_s']} bt.report=2 bt.mode={case['mode']} "
                  f"bt.fill={case['fill_mib']} bt.phase={case.get('phase_s', 3)}")
        return base + ['-accel', 'tcg',
                       '-kernel', os.path.join(build, 'guest/vmlinuz'),
                       '-initrd', os.path.join(build, 'guest/initramfs.cpio.gz'),
                       '-append', append]
    img = os.path.join(outdir, 'bootblock.img')
    start = 16 * MIB
    bootblock_image(img, start, start + case['wss_mib'] * MIB)
    return base + ['-accel', 'kvm', '-drive', f'file={img},format=raw,if=ide']


READY = {'linux': r'^bt-workload: ready.*$', 'bootblock': 'P'}
FAILED = {'linux': r'^bt-workload: error.*$|Kernel panic.*$', 'bootblock': None}


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


def run_report(log, case, bt_report):
    """bt-report's prediction for @case; returns (json, how it was run)."""
    def run(path):
        cmd = [PY, bt_report, path, '--json',
               '--bandwidth', f"{case['bandwidth_mib_s']}MiB/s",
               '--downtime-limit', str(case['downtime_ms'])]
        cmd += shlex.split(os.environ.get('BT_REPORT_ARGS', ''))
        return cmd, subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    cmd, r = run(log)
    how = {'command': cmd}
    if r.returncode != 0 and "unsupported format 'v2'" in r.stderr:
        v1 = log + '.v1'
        log_v2_to_v1(log, v1)
        cmd, r = run(v1)
        how = {'command': cmd, 'converted': 'v2 log down-converted to v1 '
               '(zero-page data dropped): this bt-report reads only v1'}
    if r.returncode != 0:
        raise RuntimeError(f'bt-report failed ({r.returncode}): {r.stderr.strip()[-500:]}')
    return json.loads(r.stdout), how


TERMINAL = ('completed', 'failed', 'cancelled')
SRC_TRACE_EVENTS = ('migration_bitmap_sync_end', 'migrate_pending_exact',
                    'migration_completion_vm_stop')
TRACE_LINE = re.compile(r'^\d+@(\d+\.\d+):(\w+) ?(.*)$')


def real_rounds(trace_log, t0_wall):
    """The source's bitmap syncs during the migration, from QEMU's trace
    log: [{t_s, dirty_pages}], times from the migrate command.  Round k
    runs from sync k to sync k+1; the last sync is ram_save_complete's."""
    syncs, exact, stop = [], [], None
    try:
        lines = open(trace_log, errors='replace').read().splitlines()
    except OSError:
        return None
    for line in lines:
        m = TRACE_LINE.match(line)
        if not m:
            continue
        t = round(float(m.group(1)) - t0_wall, 4)
        if m.group(2) == 'migration_bitmap_sync_end':
            syncs.append({'t_s': t, 'dirty_pages': int(m.group(3).split()[-1])})
        elif m.group(2) == 'migrate_pending_exact':
            exact.append({'t_s': t, 'pending_bytes': int(m.group(3).split()[3])})
        elif m.group(2) == 'migration_completion_vm_stop':
            stop = t
    rounds = [{'start_s': a['t_s'], 'length_s': round(b['t_s'] - a['t_s'], 4),
               'dirtied_pages': b['dirty_pages']}
              for a, b in zip(syncs, syncs[1:])]
    return {'syncs': syncs, 'pending_exact': exact, 'vm_stop_s': stop,
            'rounds': rounds}


def migrate(case, src, dst, cap_s, say):
    """Migrate @src to @dst; return the raw record."""
    bw = case['bandwidth_mib_s'] * MIB
    rec = {'cap_s': cap_s}
    for q in (src, dst):
        q.cmd_('migrate-set-capabilities',
               {'capabilities': [{'capability': 'events', 'state': True}]})
    src.cmd_('migrate-set-parameters',
             {'max-bandwidth': bw, 'downtime-limit': case['downtime_ms']})
    rec['parameters'] = src.cmd_('query-migrate-parameters')
    dst.cmd_('migrate-incoming', {'uri': 'tcp:127.0.0.1:0'})
    info = dst.cmd_('query-migrate')
    port = None
    for a in info.get('socket-address', []):
        if a.get('type') in ('inet', 'tcp') or 'port' in a:
            port = int(a['port'])
    if not port:
        raise RuntimeError(f'destination reports no listening port: {info}')
    rec['port'] = port
    t0 = time.monotonic()
    rec['t0_wall'] = time.time()
    src.cmd_('migrate', {'uri': f'tcp:127.0.0.1:{port}'})
    timeline = []
    events = []
    status = None
    cancelled_at_cap = False
    next_poll = t0
    while True:
        now = time.monotonic()
        if now >= next_poll:
            q = src.cmd_('query-migrate')
            ram = q.get('ram', {})
            timeline.append({'t_s': round(now - t0, 3), 'status': q.get('status'),
                             'transferred': ram.get('transferred'),
                             'remaining': ram.get('remaining'),
                             'dirty_sync_count': ram.get('dirty-sync-count'),
                             'dirty_pages_rate': ram.get('dirty-pages-rate'),
                             'mbps': ram.get('mbps'),
                             'expected_downtime': q.get('expected-downtime')})
            status = q.get('status')
            next_poll = now + 0.25
        # events the command above may have collected
        for ev in src.qmp.events:
            events.append({'t_s': round(time.monotonic() - t0, 3), **ev})
        src.qmp.events.clear()
        if any(e.get('event') == 'MIGRATION' and
               e.get('data', {}).get('status') in TERMINAL for e in events) or \
                status in TERMINAL:
            break
        if now - t0 > cap_s and not cancelled_at_cap:
            say(f'still {status} after the cap of {cap_s:.0f} s: migrate_cancel')
            cancelled_at_cap = True
            rec['at_cap'] = src.cmd_('query-migrate')
            src.cmd_('migrate_cancel')
        if now - t0 > cap_s + 30:
            raise RuntimeError(f'migration still {status} 30 s after migrate_cancel')
        msg = src.next_message(max(0.0, next_poll - time.monotonic()))
        if msg is not None and 'event' in msg:
            src.qmp.events.append(msg)
    final = src.cmd_('query-migrate')
    rec['wall_s'] = round(time.monotonic() - t0, 3)
    rec['status'] = final.get('status')
    rec['cancelled_at_cap'] = cancelled_at_cap
    rec['query_migrate'] = final
    rec['timeline'] = timeline
    rec['events'] = [e for e in events if e.get('event') == 'MIGRATION']
    rec['sync_trace'] = real_rounds(src.trace_log, rec['t0_wall'])
    ram = final.get('ram', {})
    syncs = ram.get('dirty-sync-count')
    if rec['status'] == 'completed':
        rounds = syncs - 2 if syncs is not None else None
    else:
        if rec.get('at_cap'):
            syncs = rec['at_cap'].get('ram', {}).get('dirty-sync-count', syncs)
        rounds = syncs - 1 if syncs is not None else None
    rec['summary'] = {
        'converged': rec['status'] == 'completed',
        'status': rec['status'],
        'total_ms': final.get('total-time'),
        'downtime_ms': final.get('downtime'),
        'setup_ms': final.get('setup-time'),
        'ram_transferred': ram.get('transferred'),
        'ram_total': ram.get('total'),
        'ram_normal_pages': ram.get('normal'),
        'ram_normal_bytes': ram.get('normal-bytes'),
        'ram_duplicate_pages': ram.get('duplicate'),
        'precopy_bytes': ram.get('precopy-bytes'),
        'downtime_bytes': ram.get('downtime-bytes'),
        'mbps': ram.get('mbps'),
        'dirty_sync_count': syncs,
        'rounds': rounds,
    }
    return rec


def check_destination(case, dst, say):
    """After a completed migration: is the guest running on the destination?"""
    st = dst.cmd_('query-status')
    alive = {'status': st.get('status')}
    if case['guest'] == 'linux' and st.get('status') == 'running':
        try:
            dst.await_console(r'^bt-workload: progress.*$', 8)
            alive['workload_progress'] = True
        except (TimeoutError, RuntimeError) as e:
            alive['workload_progress'] = False
            say(f'warning: {e}')
    return alive


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
        rep, res['report_run'] = run_report(log, case, args.bt_report)
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
# Comparison


# (prediction field, real summary field, comparison key): compared when the
# prediction has the field
EXTRA_FIELDS = [('dirty_sync_count', 'dirty_sync_count', 'syncs'),
                ('precopy_bytes', 'precopy_bytes', 'precopy_bytes'),
                ('downtime_bytes', 'downtime_bytes', 'downtime_bytes'),
                ('normal_pages', 'ram_normal_pages', 'normal_pages'),
                ('zero_pages', 'ram_duplicate_pages', 'zero_pages')]


def pct(pred, real):
    if pred is None or real is None or real == 0:
        return None
    return 100.0 * (pred - real) / real


def compare(pred, real):
    c = {'predicted_converges': bool(pred and pred.get('converges')),
         'real_converged': real['converged']}
    c['verdict_agrees'] = c['predicted_converges'] == c['real_converged']
    if pred and pred.get('rounds') is not None and real.get('rounds') is not None:
        c['rounds_pred'] = pred['rounds']
        c['rounds_real'] = real['rounds']
    if c['predicted_converges'] and c['real_converged']:
        # A non-converging prediction stops counting at --max-rounds or at
        # the first round no shorter than the one before; a cancelled
        # migration at the cap: neither count means anything to compare.
        if 'rounds_pred' in c:
            c['rounds_err'] = c['rounds_pred'] - c['rounds_real']
        # Tolerate a prediction without some of the fields.
        tp = pred.get('total_s')
        dp = pred.get('downtime_s')
        if tp is not None:
            c['total_ms_pred'] = tp * 1000
            c['total_ms_real'] = real['total_ms']
            c['total_err_pct'] = pct(tp * 1000, real['total_ms'])
        if dp is not None:
            c['downtime_ms_pred'] = dp * 1000
            c['downtime_ms_real'] = real['downtime_ms']
            if real['downtime_ms'] is not None:
                c['downtime_err_ms'] = dp * 1000 - real['downtime_ms']
            c['downtime_err_pct'] = pct(dp * 1000, real['downtime_ms'])
        # Fields a simulator may add, next to what query-migrate says
        for pk, rk, ck in EXTRA_FIELDS:
            if pred.get(pk) is not None and real.get(rk) is not None:
                c[ck + '_pred'] = pred[pk]
                c[ck + '_real'] = real[rk]
                c[ck + '_err_pct'] = pct(pred[pk], real[rk])
        c['bytes_pred'] = pred.get('sent_bytes')
        c['bytes_real'] = real['ram_transferred']
        c['bytes_err_pct'] = pct(pred.get('sent_bytes'), real['ram_transferred'])
    return c


def per_round(pred, real):
    """Round by round: the prediction's round lengths (round_s) and any
    other per-round list it has, next to the real rounds from the sync
    trace (the interval from the last pre-copy sync to the final one is the
    switchover, not a round)."""
    st = real.get('sync_trace') or {}
    rr = st.get('rounds') or []
    n_real = real['summary'].get('rounds')
    if n_real is not None:
        rr = rr[:max(n_real, 0)]
    pred = pred or {}
    extra = {k: v for k, v in pred.items()
             if isinstance(v, list) and k != 'round_s'}
    out = []
    for k in range(max(len(pred.get('round_s') or []), len(rr))):
        row = {'round': k}
        if k < len(pred.get('round_s') or []):
            row['pred_s'] = pred['round_s'][k]
        if k < len(rr):
            row['real_s'] = rr[k]['length_s']
            row['real_dirtied_pages'] = rr[k]['dirtied_pages']
        for key, v in extra.items():
            if k < len(v):
                row['pred_' + key] = v[k]
        out.append(row)
    return out


def p90(xs):
    xs = sorted(xs)
    if not xs:
        return None
    k = 0.9 * (len(xs) - 1)
    f = math.floor(k)
    return xs[f] + (xs[min(f + 1, len(xs) - 1)] - xs[f]) * (k - f)


QUANTITIES = [('total_err_pct', 'total time', '%'),
              ('downtime_err_ms', 'downtime', 'ms'),
              ('downtime_err_pct', 'downtime', '%'),
              ('rounds_err', 'rounds', ''),
              ('bytes_err_pct', 'bytes sent', '%'),
              # only when the prediction has these fields
              ('syncs_err_pct', 'dirty-sync-count', '%'),
              ('precopy_bytes_err_pct', 'precopy bytes', '%'),
              ('downtime_bytes_err_pct', 'downtime bytes', '%'),
              ('normal_pages_err_pct', 'normal pages', '%'),
              ('zero_pages_err_pct', 'zero pages', '%')]
CORE = 5


def summarise(results):
    s = {}
    done = [r for r in results if 'comparison' in r]
    for key, _, _ in QUANTITIES:
        xs = [abs(r['comparison'][key]) for r in done
              if r['comparison'].get(key) is not None]
        s[key] = {'n': len(xs),
                  'median_abs': statistics.median(xs) if xs else None,
                  'p90_abs': p90(xs)}
    s['verdict_agree'] = sum(1 for r in done if r['comparison']['verdict_agrees'])
    s['verdict_cases'] = len(done)
    s['cases'] = len(results)
    s['errors'] = sum(1 for r in results if 'error' in r)
    s['skipped'] = sum(1 for r in results if 'skipped' in r)
    return s


def fmt(v, f='{:+.0f}'):
    return '-' if v is None else f.format(v)


def table(results, summary):
    lines = []
    hdr = (f"{'case':38} {'pred':>5} {'real':>5} {'total pred/real s':>17} "
           f"{'err%':>6} {'dt pred/real ms':>15} {'err ms':>7} "
           f"{'rnd p/r':>7} {'MiB pred/real':>13} {'err%':>6}")
    lines.append(hdr)
    lines.append('-' * len(hdr))
    for r in results:
        name = r['case']['name']
        if 'skipped' in r:
            lines.append(f"{name:38} skipped: {r['skipped']}")
            continue
        if 'comparison' not in r:
            lines.append(f"{name:38} error: {r.get('error')}")
            continue
        c = r['comparison']
        v = lambda b: 'conv' if b else 'no'  # noqa: E731
        tot = (f"{c['total_ms_pred'] / 1000:.1f}/{c['total_ms_real'] / 1000:.1f}"
               if 'total_ms_pred' in c else '-')
        dt = (f"{c['downtime_ms_pred']:.0f}/{c['downtime_ms_real']}"
              if 'downtime_ms_pred' in c else '-')
        rnd = f"{c.get('rounds_pred', '-')}/{c.get('rounds_real', '-')}"
        by = (f"{c['bytes_pred'] / MIB:.0f}/{c['bytes_real'] / MIB:.0f}"
              if c.get('bytes_pred') is not None and c.get('bytes_real') is not None else '-')
        lines.append(f"{name:38} {v(c['predicted_converges']):>5} {v(c['real_converged']):>5} "
                     f"{tot:>17} {fmt(c.get('total_err_pct')):>6} {dt:>15} "
                     f"{fmt(c.get('downtime_err_ms')):>7} {rnd:>7} {by:>13} "
                     f"{fmt(c.get('bytes_err_pct')):>6}")
    lines.append('')
    for i, (key, what, unit) in enumerate(QUANTITIES):
        q = summary[key]
        if i >= CORE and not q['n']:
            continue
        lines.append(f"|error| of {what + (' (' + unit + ')' if unit else ''):22}: "
                     f"median {fmt(q['median_abs'], '{:.1f}')}, "
                     f"p90 {fmt(q['p90_abs'], '{:.1f}')} (n={q['n']})")
    lines.append(f"verdict (converges or not) agrees in {summary['verdict_agree']} of "
                 f"{summary['verdict_cases']} cases; {summary['errors']} errors, "
                 f"{summary['skipped']} skipped")
    return '\n'.join(lines)


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
            rep, r['report_run'] = run_report(log, r['case'], args.bt_report)
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
    args = ap.parse_args()
    if args.show:
        doc = json.load(open(args.show))
        print(table(doc['cases'], summarise(doc['cases'])))
        return 0
    args.bt_report = os.environ.get('BT_REPORT') or os.path.join(TOP, 'scripts/bt-report')
    if args.rescore:
        return rescore(args)
    args.build = os.path.abspath(os.environ.get('BUILD') or os.path.join(TOP, 'build'))
    args.qemu = os.environ.get('QEMU') or os.path.join(args.build, 'qemu-system-x86_64')
    args.out = os.path.abspath(args.out or os.path.join(args.build, 'validate'))

    cases = grid(args.quick)
    if args.cases:
        cases = [c for c in cases if re.search(args.cases, c['name'])]
    if args.list:
        for c in cases:
            print(c['name'])
        return 0
    if not os.access(args.qemu, os.X_OK):
        print(f'validate: {args.qemu} not built (make, or QEMU=...)', file=sys.stderr)
        return 2
    if any(c['guest'] == 'linux' for c in cases):
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
    kvm_why = kvm_unusable_reason()

    t_all = time.monotonic()
    results = []
    out_json = os.path.join(args.out, 'results.json')

    def save(done):
        summary = summarise(results)
        doc = {'version': 1, 'complete': done, 'quick': args.quick,
               'qemu': qemu_orig, 'host': {'cpus': os.cpu_count(),
                                           'kvm_unusable': kvm_why},
               'bt_report': args.bt_report,
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
    return 1 if summary['errors'] else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
