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
import datetime
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
    name = (f'{mode}-w{wss}-r{rate}' + (f'-f{fill}' if fill else '') + f'-bw{bw}-dt{dt}' +
            (f'-m{ram}' if ram not in (512, 1024) else ''))
    return {'name': name, 'guest': 'linux', 'accel': 'tcg', 'ram_mib': ram,
            'mode': mode, 'wss_mib': wss, 'rate_mib_s': rate, 'fill_mib': fill,
            'phase_s': phase, 'bandwidth_mib_s': bw, 'downtime_ms': dt}


def kvm_case(sweep_mib, bw, dt, ram=256):
    return {'name': f'bootblock-kvm-s{sweep_mib}-bw{bw}-dt{dt}', 'guest': 'bootblock',
            'accel': 'kvm', 'ram_mib': ram, 'mode': 'sweep', 'wss_mib': sweep_mib,
            'rate_mib_s': None, 'fill_mib': 0, 'bandwidth_mib_s': bw,
            'downtime_ms': dt}


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
    tests/qtest/bitmap-trace/guest.c does)."""
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
    return base + ['-accel', case['accel'], '-drive', f'file={img},format=raw,if=ide']


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


TERMINAL = ('completed', 'failed', 'cancelled')
SRC_TRACE_EVENTS = ('migration_bitmap_sync_end', 'migrate_pending_exact',
                    'migration_completion_vm_stop', 'vmstate_downtime_checkpoint')
# QEMU 10.0: "PID@SECONDS.USEC:EVENT ARGS".  From 10.2 on the log backend
# leaves the timestamp to qemu_log(), which writes "ISO-8601-UTC EVENT ARGS"
TRACE_LINE = re.compile(r'^\d+@(\d+\.\d+):(\w+) ?(.*)$')
TRACE_LINE_ISO = re.compile(r'^(\d{4}-\d\d-\d\dT[\d:.]+Z) (\w+) ?(.*)$')


def trace_line(line):
    """(epoch seconds, event, arguments) of a trace log line, or None"""
    m = TRACE_LINE.match(line)
    if m:
        return float(m.group(1)), m.group(2), m.group(3)
    m = TRACE_LINE_ISO.match(line)
    if m:
        when = datetime.datetime.fromisoformat(m.group(1).replace('Z', '+00:00'))
        return when.timestamp(), m.group(2), m.group(3)
    return None


def real_rounds(trace_log, t0_wall):
    """The source's bitmap syncs during the migration, from QEMU's trace
    log: [{t_s, dirty_pages}], times from the migrate command.  Round k
    runs from sync k to sync k+1; the last sync is ram_save_complete's."""
    syncs, exact, stop, checkpoints = [], [], None, []
    try:
        lines = open(trace_log, errors='replace').read().splitlines()
    except OSError:
        return None
    for line in lines:
        m = trace_line(line)
        if not m:
            continue
        when, event, args = m
        t = round(when - t0_wall, 4)
        if event == 'migration_bitmap_sync_end':
            syncs.append({'t_s': t, 'dirty_pages': int(args.split()[-1])})
        elif event == 'migrate_pending_exact':
            exact.append({'t_s': t, 'pending_bytes': int(args.split()[3])})
        elif event == 'migration_completion_vm_stop':
            stop = t
        elif event == 'vmstate_downtime_checkpoint':
            # migration_stop_vm, qemu_savevm_state_complete_precopy,
            # migration_downtime_end: where the downtime goes
            checkpoints.append({'t_s': t, 'what': args.strip()})
    rounds = [{'start_s': a['t_s'], 'length_s': round(b['t_s'] - a['t_s'], 4),
               'dirtied_pages': b['dirty_pages']}
              for a, b in zip(syncs, syncs[1:])]
    return {'syncs': syncs, 'pending_exact': exact, 'vm_stop_s': stop,
            'rounds': rounds, 'downtime_checkpoints': checkpoints[-5:]}


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
# Calibration: the host's own costs, measured by migrations that are not
# the grid's (no workload running, or none that matters), on the same host
# and the same loopback link.  What the simulator needs (scripts/btrace/
# simulate.py) and where each figure comes from:
#
#   link_bandwidth, dest_page_s, dest_zero_s
#                  a normal / zero page the destination already has, with no
#                  rate limit (the source: ram_save_target_page ->
#                  save_normal_page / save_zero_page; the destination:
#                  ram_load_precopy -> qemu_get_buffer / ram_handle_zero):
#                  paused guests (nothing dirties RAM: one pass), RAM mostly
#                  non-zero (the demo guest with bt.fill) and mostly zero
#                  (the boot-block guest under TCG), into a destination
#                  started with -mem-prealloc.  The span from the setup sync
#                  (migration_bitmap_sync_end in ram_init_bitmaps) to the
#                  stop (migration_completion_vm_stop) is the pages sent,
#                  ram.normal and ram.duplicate count them: two equations,
#                  two unknowns.
#   dest_first_page_s, dest_zero_first_s
#                  the same into a fresh destination, whose RAM is populated
#                  page by page as they arrive; the non-zero run under a rate
#                  limit of LIMITED_MIB_S (with none, the destination's page
#                  faults race the source and come out several times slower
#                  and very noisy: recorded as first_page_unlimited_s, not
#                  used)
#   socket_buffer_bytes  the host's TCP sysctls (socket_buffer_bytes())
#   setup_s        query-migrate's total-time minus what followed the setup
#                  sync (qmp_migrate / migrate_init -> migration_thread ->
#                  qemu_savevm_state_setup -> ram_init_bitmaps), per accel
#   completion_s   the downtime of a migration with nothing left to send
#                  (downtime-limit 1 ms: the last pre-copy sync leaves
#                  nothing): migration_stop_vm (vm_stop_force_state),
#                  ram_save_complete's sync, the devices' state
#                  (qemu_savevm_state_complete_precopy_non_iterable) and the
#                  flush; for TCG from a RUNNING guest (pause_all_vcpus is
#                  part of it), minus the RAM it still sent at normal_page_s;
#                  for KVM from the paused boot-block guest
#   device_state_bytes  ram.transferred - precopy-bytes - downtime-bytes
#                  (ram_transferred_add counts RAM only)

CALIBRATION_VERSION = 2
UNLIMITED_MIB_S = 1 << 20      # 1 TiB/s: migration_rate_exceeded() never trips
LIMITED_MIB_S = 512            # the highest max-bandwidth of the grids


def calibration_runs(quick):
    ram = 512 if quick else 1024
    fill = 320 if quick else 768
    reps = 1 if quick else 3
    # RAM mostly zero: the boot-block guest under TCG (a few hundred
    # non-zero pages); mostly non-zero: the demo guest with bt.fill
    zero = dict(kvm_case(4, UNLIMITED_MIB_S, 1, ram=ram), accel='tcg')
    nonzero = linux_case('seq', 1, 1, UNLIMITED_MIB_S, 1, fill=fill, ram=ram)
    # the same under a rate limit as high as the grids' highest: the
    # destination populating its RAM then, not racing an unlimited source
    limited = dict(nonzero, bandwidth_mib_s=LIMITED_MIB_S)
    runs = [
        {'name': 'tcg-nonzero-limited', 'case': limited, 'paused': True, 'reps': reps},
        {'name': 'tcg-zero', 'case': zero, 'paused': True, 'reps': reps},
        # the destination's RAM populated before the pages arrive
        # (-mem-prealloc): what a page it already has costs
        {'name': 'tcg-nonzero-prealloc', 'case': nonzero, 'paused': True, 'reps': reps,
         'dst_args': ['-mem-prealloc']},
        {'name': 'tcg-zero-prealloc', 'case': zero, 'paused': True, 'reps': reps,
         'dst_args': ['-mem-prealloc']},
        {'name': 'kvm-paused', 'case': kvm_case(4, UNLIMITED_MIB_S, 1),
         'paused': True, 'reps': 1 if quick else 2},
    ]
    if not quick:
        runs.append({'name': 'tcg-nonzero', 'case': nonzero, 'paused': True, 'reps': reps})
        runs.append({'name': 'tcg-running',
                     'case': linux_case('seq', 1, 1, UNLIMITED_MIB_S, 1, ram=ram),
                     'paused': False, 'reps': 1})
    for r in runs:
        r['case'] = dict(r['case'], name='calibrate-' + r['name'])
    return runs


def socket_buffer_bytes():
    """What a loopback TCP connection holds in flight before the sender's
    write blocks: the sender's send buffer, which Linux autotunes up to
    tcp_wmem's maximum on a fast path, and the receiver's window, half its
    receive buffer (tcp_adv_win_scale 1), which dynamic right-sizing grows
    only as fast as the application reads: a slow destination keeps it near
    tcp_rmem's default.  A host property, read off its sysctls."""
    try:
        w = int(open('/proc/sys/net/ipv4/tcp_wmem').read().split()[2])
        r = int(open('/proc/sys/net/ipv4/tcp_rmem').read().split()[1])
        scale = int(open('/proc/sys/net/ipv4/tcp_adv_win_scale').read())
    except (OSError, ValueError, IndexError):
        return 4 * MIB
    win = r - (r >> scale) if scale > 0 else r >> -scale
    return w + win


def calibration_key(qemu):
    st = os.stat(os.path.realpath(qemu))
    import hashlib
    h = hashlib.sha256()
    with open(os.path.realpath(qemu), 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    cpu = ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return {'version': CALIBRATION_VERSION, 'qemu_sha256': h.hexdigest(),
            'qemu_size': st.st_size, 'host': socket.gethostname(),
            'cpus': os.cpu_count(), 'cpu_model': cpu}


def one_calibration_migration(run, src, dst, say):
    case = run['case']
    real = migrate(case, src, dst, 30, say)
    s = real['summary']
    if real['status'] != 'completed':
        raise RuntimeError(f"calibration migration {real['status']}")
    st = real.get('sync_trace') or {}
    # the source's trace log has every migration of it: this one's events
    # come after its migrate command (t >= 0)
    syncs = [x for x in st.get('syncs') or [] if x['t_s'] >= 0]
    stop = st.get('vm_stop_s')
    qm = real['query_migrate']
    ram = qm.get('ram', {})
    m = {'total_s': s['total_ms'] / 1000, 'setup_time_s': s['setup_ms'] / 1000,
         'downtime_s': s['downtime_ms'] / 1000, 'normal': s['ram_normal_pages'],
         'zero': s['ram_duplicate_pages'], 'transferred': s['ram_transferred'],
         'precopy_bytes': s['precopy_bytes'], 'downtime_bytes': s['downtime_bytes'],
         'dirty_sync_count': s['dirty_sync_count'], 'mbps': s['mbps'],
         'page_size': ram.get('page-size', 4096),
         'max_bandwidth': real['parameters'].get('max-bandwidth'),
         'timeline': real['timeline']}
    if syncs and stop is not None:
        m['setup_sync_s'] = syncs[0]['t_s']
        m['send_s'] = stop - syncs[0]['t_s']       # setup sync -> vm stop
        m['stop_s'] = stop
        m['setup_s'] = m['total_s'] - m['downtime_s'] - m['send_s']
    m['device_state_bytes'] = (m['transferred'] - (m['precopy_bytes'] or 0) -
                               (m['downtime_bytes'] or 0))
    return m


def run_calibration(args, rundir, quick):
    """Migrate the calibration guests; returns the raw measurements."""
    kvm_why = kvm_unusable_reason()
    raw = {}
    for run in calibration_runs(quick):
        case = run['case']
        def say(msg, _n=run['name']):
            print(f'  [calibrate {_n}] {msg}', flush=True)
        if case['accel'] == 'kvm' and kvm_why:
            say(f'skipped: KVM: {kvm_why}')
            continue
        ms = []
        errors = []
        for k in range(run['reps']):
            # a fresh source each time: QEMU refuses to migrate a VM paused
            # by an earlier migration
            outdir = os.path.join(args.calib_dir, f"{run['name']}-{k}")
            shutil.rmtree(outdir, ignore_errors=True)
            os.makedirs(outdir)
            crun = tempfile.mkdtemp(prefix='cal-' + run['name'] + '.', dir=rundir)
            cmd = guest_cmd(case, args.qemu, args.build, outdir)
            src = Qemu('src', cmd, crun, outdir, SRC_TRACE_EVENTS)
            dst = Qemu('dst', cmd + ['-incoming', 'defer'] + run.get('dst_args', []),
                       crun, outdir)
            try:
                src.start()
                src.await_console(READY[case['guest']], 180, FAILED[case['guest']])
                if case['guest'] == 'linux' and not run['paused']:
                    time.sleep(1.0)
                if run['paused']:
                    src.cmd_('stop')
                dst.start()
                m = one_calibration_migration(run, src, dst, say)
                ms.append(m)
                say(f"total {m['total_s'] * 1000:.0f} ms, setup-time {m['setup_time_s'] * 1000:.0f}"
                    f" ms, send {m.get('send_s', 0) * 1000:.1f} ms, downtime "
                    f"{m['downtime_s'] * 1000:.0f} ms, normal {m['normal']}, zero {m['zero']}, "
                    f"{m['mbps']:.0f} Mbit/s, max-bandwidth {m['max_bandwidth']}")
            except Exception as e:  # noqa: BLE001
                errors.append(f'{type(e).__name__}: {e}')
                say(f'error: {errors[-1]}')
            finally:
                src.stop()
                dst.stop()
                shutil.rmtree(crun, ignore_errors=True)
        raw[run['name']] = {'case': case, 'paused': run['paused'], 'runs': ms,
                            'errors': errors}
    return raw


def derive_calibration(raw):
    """The simulator's parameters from the calibration migrations."""
    med = statistics.median

    def runs(name):
        r = raw.get(name) or {}
        return [m for m in r.get('runs', []) if m.get('send_s') is not None]

    out = {}

    def solve(a, b):
        """send_s = normal x Tn + zero x Tz, one equation per run (the
        medians of its repetitions): Cramer's rule."""
        an, az, at = (med([m[k] for m in a]) for k in ('normal', 'zero', 'send_s'))
        bn, bz, bt = (med([m[k] for m in b]) for k in ('normal', 'zero', 'send_s'))
        det = an * bz - az * bn
        return (at * bz - az * bt) / det, (an * bt - at * bn) / det

    a, b = runs('tcg-nonzero-limited'), runs('tcg-zero')
    if not a or not b:
        raise RuntimeError('calibration: the paused TCG migrations failed: ' +
                           '; '.join(str((raw.get(n) or {}).get('errors')) for n in
                                     ('tcg-nonzero-limited', 'tcg-zero')))
    ps = a[0]['page_size']
    # into a fresh destination: every page is new there.  The non-zero run
    # is rate-limited at LIMITED_MIB_S: its per-page figure is the
    # destination's when it is the slower, else the limit's (an upper bound
    # of the destination's: it kept up)
    tn, tz = solve(a, b)
    if tn <= 0:
        raise RuntimeError(f'calibration: a normal page costs {tn:g} s: too noisy')
    tz = max(tz, 0.0)
    u = runs('tcg-nonzero')
    if u:
        # with no rate limit: recorded, not used (the destination's page
        # faults race an unlimited source and come out much slower)
        out['first_page_unlimited_s'] = solve(u, b)[0]
    out['limited_check'] = {
        'max_bandwidth': LIMITED_MIB_S * MIB,
        'throughput': med([(m['transferred'] - m['device_state_bytes']) / m['send_s']
                           for m in a])}
    # into a preallocated one: what a page the destination already has costs
    pa, pb = runs('tcg-nonzero-prealloc'), runs('tcg-zero-prealloc')
    if pa and pb:
        rn, rz = solve(pa, pb)
    else:
        rn, rz = tn, tz
    rn = min(max(rn, 1e-9), tn)
    rz = min(max(rz, 0.0), tz)
    out['first_page_s'] = tn
    out['zero_page_total_s'] = tz
    out['normal_page_s'] = rn
    out['zero_page_again_s'] = rz
    # The simulator's source sends a normal page in (page + 8) / link;
    # the destination, a stage of its own, takes each page in its own time.
    # The figures above are the slower of the two stages; they are put on
    # the destination too, which the fresh-against-preallocated difference
    # shows to be the slower one for pages new to it.  A zero page's scan
    # at the source is the log's zero-us.
    out['link_bandwidth'] = (ps + 8) / rn
    out['dest_page_s'] = rn
    out['dest_first_page_s'] = tn
    out['dest_zero_s'] = rz
    out['dest_zero_first_s'] = tz
    out['page_cpu_s'] = 0.0
    out['socket_buffer_bytes'] = socket_buffer_bytes()
    out['device_state_bytes'] = int(med([m['device_state_bytes'] for m in a + b]))
    setup = {'tcg': med([m['setup_s'] for m in a + pa + u])}
    # paused: nothing was sent in the downtime but the devices' state
    completion = {'tcg-paused': med([m['downtime_s'] for m in a + pa + u])}
    c = runs('tcg-running')
    if c:
        ram_s = [max(m['downtime_bytes'] or 0, 0) / out['link_bandwidth'] for m in c]
        completion['tcg'] = med([max(m['downtime_s'] - r, 0.0) for m, r in zip(c, ram_s)])
        setup['tcg-running'] = med([m['setup_s'] for m in c])
    else:
        completion['tcg'] = completion['tcg-paused']
    k = runs('kvm-paused')
    if k:
        setup['kvm'] = med([m['setup_s'] for m in k])
        completion['kvm'] = med([m['downtime_s'] for m in k])
    out['setup_s'] = setup
    out['completion_s'] = completion
    return out


def calibrate(args, rundir, quick, force=False):
    """Cached calibration: OUT/calibration.json, keyed by the QEMU binary and
    the host; runs it when missing, stale or forced."""
    path = args.calibration_file
    key = calibration_key(args.qemu_orig)
    if not force and os.path.exists(path):
        try:
            doc = json.load(open(path))
            if doc.get('key') == key and (quick or not doc.get('quick')):
                print(f'validate: calibration from {path} (cached)', flush=True)
                return doc
        except (OSError, ValueError):
            pass
    print(f'validate: calibrating (workload-free migrations on this host; '
          f'{"quick" if quick else "full"})', flush=True)
    t = time.monotonic()
    raw = run_calibration(args, rundir, quick)
    derived = derive_calibration(raw)
    doc = {'key': key, 'quick': quick, 'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
           'wall_s': round(time.monotonic() - t, 1), 'raw': raw}
    doc.update(derived)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(doc, f, indent=1)
    os.replace(path + '.tmp', path)
    print('validate: calibration: ' + calibration_summary(doc), flush=True)
    return doc


def calibration_summary(doc):
    return (f"link {doc['link_bandwidth'] / 1e6:.0f} MB/s (normal page sent again "
            f"{doc['normal_page_s'] * 1e6:.2f} us, first time "
            f"{doc['first_page_s'] * 1e6:.2f} us), zero page {doc['zero_page_again_s'] * 1e6:.2f}"
            f" us (first time {doc['zero_page_total_s'] * 1e6:.2f} us), setup " + ', '.join(f'{k} {v * 1000:.1f} ms' for k, v in doc['setup_s'].items())
            + ', completion ' + ', '.join(f'{k} {v * 1000:.1f} ms'
                                          for k, v in doc['completion_s'].items())
            + f", device state {doc['device_state_bytes'] / 1024:.0f} KiB")


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
    # bt-report's spread over where in the trace the migration starts
    # (--start-phases): is the real migration inside it?
    sp = (pred or {}).get('start_phases')
    if sp and sp.get('count', 1) > 1:
        c['phases'] = sp['count']
        c['phases_converge'] = sp['converges']
        if c['real_converged'] and sp.get('total_s'):
            lo, hi = sp['total_s']
            c['total_ms_range'] = [lo * 1000, hi * 1000]
            # the error of the nearer end: 0 inside the spread
            near = min(max(real['total_ms'], lo * 1000), hi * 1000)
            c['total_err_spread_pct'] = pct(near, real['total_ms'])
        if real.get('rounds') is not None and sp.get('rounds') and c['real_converged']:
            c['rounds_range'] = sp['rounds']
            c['rounds_in_range'] = sp['rounds'][0] <= real['rounds'] <= sp['rounds'][1]
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
    rr = [r['comparison']['rounds_err'] for r in done
          if r['comparison'].get('rounds_err') is not None]
    s['rounds_within_1'] = sum(1 for x in rr if abs(x) <= 1)
    s['rounds_compared'] = len(rr)
    s['verdict_agree'] = sum(1 for r in done if r['comparison']['verdict_agrees'])
    xs = [r['comparison']['rounds_in_range'] for r in done
          if 'rounds_in_range' in r['comparison']]
    s['rounds_in_range'] = [sum(xs), len(xs)]
    xs = [abs(r['comparison']['total_err_spread_pct']) for r in done
          if r['comparison'].get('total_err_spread_pct') is not None]
    s['total_err_spread_pct'] = {'n': len(xs), 'median_abs': statistics.median(xs) if xs else None,
                                 'p90_abs': p90(xs)}
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
    if summary.get('rounds_compared'):
        lines.append(f"rounds within +-1 of the real sync rounds: {summary['rounds_within_1']} "
                     f"of {summary['rounds_compared']} "
                     f"({100 * summary['rounds_within_1'] / summary['rounds_compared']:.0f} %)")
    n, m = summary.get('rounds_in_range', [0, 0])
    if m:
        lines.append(f"real sync rounds within the predicted spread over start points: "
                     f"{n} of {m}")
    q = summary.get('total_err_spread_pct')
    if q and q['n']:
        lines.append(f"|error| of total time to that spread (%, 0 inside): median "
                     f"{fmt(q['median_abs'], '{:.1f}')}, p90 {fmt(q['p90_abs'], '{:.1f}')} "
                     f"(n={q['n']})")
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
    return 1 if summary['errors'] else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
