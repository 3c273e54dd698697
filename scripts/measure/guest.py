# SPDX-License-Identifier: GPL-2.0-or-later
"""measure.guest: the guests and the QEMUs of the measurements.

Shared by measure.validate, measure.calibrate and measure.bench:

  - the guests: the demo guest (Debian's kernel and bt-workload, under TCG)
    and the boot-block guest of the exactness tests (under KVM, or TCG),
    described as cases (linux_case, kvm_case) and turned into a QEMU
    command line (guest_cmd);
  - Qemu: one QEMU child with QMP on a unix socket, its serial console in a
    file and, optionally, QEMU's trace events in a log; every child dies
    with the script, whatever the exit path (PR_SET_PDEATHSIG, atexit,
    SIGTERM/SIGHUP);
  - migrate(): a real pre-copy migration between two of them, followed with
    query-migrate and the MIGRATION events, cancelled at a time cap, and
    the source's bitmap syncs read back from its trace log (trace_line,
    real_rounds).
"""

import atexit
import ctypes
import datetime
import os
import re
import signal
import subprocess
import time

import qmp as qmplib

from measure import MIB, TOP

# --------------------------------------------------------------------------
# Cases: what a guest is and what it does


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
# Migration


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
