# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-trace: trace a libvirt domain's dirty pages with bitmap-trace.

Opens the log itself and passes its descriptor to the domain's QEMU into
an fd set (QMP add-fd through libvirt, as virsh qemu-monitor-command
--pass-fds does), so a QEMU that libvirt confines writes a file you own;
starts the trace on /dev/fdset/N, shows its progress (from
query-bitmap-trace) until the BITMAP_TRACE_COMPLETED event, then prints
bt-report's summary of the log.  Ctrl-C stops the trace early (the log
then ends "cancelled") and still reports.  Options it does not know go to
bt-report (--bandwidth, --downtime-limit, --brief, ...).

libvirt marks the domain "tainted: custom-monitor" (it does not know the
commands).  Needs Debian's python3-libvirt (libvirt 8.2 or later on the
host, for passing descriptors).

Exit status: bt-report's; 1 when the trace cannot start or fails, 2 on a
usage error, 130 when a signal stopped it (after the report)."""

import argparse
import json
import os
import signal
import sys
import threading

EVENT = 'BITMAP_TRACE_COMPLETED'
OPAQUE = 'bt-trace log'
MIB = 1024 * 1024


def build_parser():
    doc = __doc__
    ap = argparse.ArgumentParser(
        prog='bt-trace', description=doc.split('\n\n', 1)[0],
        epilog=doc.split('\n\n', 1)[1], allow_abbrev=False,   # bt-report's abbreviations pass
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('domain', help='the libvirt domain\'s name')
    ap.add_argument('-c', '--connect', metavar='URI', default=None,
                    help='libvirt URI, e.g. qemu:///system or qemu:///session '
                         '(default: libvirt\'s, as for virsh)')
    ap.add_argument('--iterations', type=int, default=600,
                    help='measured iterations (default 600)')
    ap.add_argument('--period', type=int, default=100, metavar='MS',
                    help='length of an iteration in ms (default 100)')
    ap.add_argument('--format', choices=('text', 'binary'), default='text',
                    help='log format (default text)')
    ap.add_argument('-o', '--output', metavar='LOG', default=None,
                    help='the log file (default DOMAIN-dirty.log here)')
    ap.add_argument('--progress', type=float, default=1.0, metavar='S',
                    help='seconds between progress lines (default 1)')
    return ap


def parse_args(argv):
    """(our arguments, bt-report's): what argparse does not know is bt-report's."""
    ap = build_parser()
    args, rest = ap.parse_known_args(argv)
    if args.iterations < 1:
        ap.error('--iterations must be at least 1')
    if args.period < 1:
        ap.error('--period must be at least 1 ms')
    if args.progress <= 0:
        ap.error('--progress must be positive')
    if args.output is None:
        args.output = f'{args.domain}-dirty.log'
    return args, rest


def qmp(execute, **arguments):
    """A QMP command as the JSON text libvirt passes through."""
    cmd = {'execute': execute}
    if arguments:
        cmd['arguments'] = arguments
    return json.dumps(cmd)


def start_command(fdset, args):
    return qmp('bitmap-trace', state=True, filename=f'/dev/fdset/{fdset}',
               format=args.format, iterations=args.iterations, period=args.period)


def free_fdset(fdsets):
    """An fd set id not in query-fdsets' reply (a list of dicts)."""
    used = {s['fdset-id'] for s in fdsets}
    n = 0
    while n in used:
        n += 1
    return n


class Progress:
    """Accumulates query-bitmap-trace replies, asked with since=self.since."""

    def __init__(self):
        self.since = 1          # iteration 0 is the baseline: all pages
        self.dirty = 0          # pages dirtied in measured iterations so far
        self.info = {}

    def update(self, info):
        self.info = info
        pages = info.get('dirty-pages', [])
        start = info.get('since', 0)
        for i, n in enumerate(pages, start):
            if i >= self.since:
                self.dirty += n
        if pages:
            self.since = max(self.since, start + len(pages))

    def line(self):
        i = self.info
        done = i.get('completed-iterations', 0)
        text = f"{i.get('status', '?')}: round {done}/{i.get('iterations', '?')}"
        ms = i.get('elapsed-ms') or 0
        psize = i.get('page-size', 4096)
        if done and ms > 0:
            rate = self.dirty * psize / MIB / (ms / 1000)
            text += f', {ms / 1000:.1f} s, dirty rate {rate:.1f} MiB/s'
            if 'last-dirty-pages' in i:
                text += f" (last round {i['last-dirty-pages'] * psize / MIB:.1f} MiB)"
            if 'distinct-pages' in i:
                text += f", distinct {i['distinct-pages'] * psize / MIB:.1f} MiB"
        return text


def monitor(dom, libvirt_qemu, cmd, files=None):
    if files:
        out, _ = libvirt_qemu.qemuMonitorCommandWithFiles(dom, cmd, files, 0)
    else:
        out = libvirt_qemu.qemuMonitorCommand(dom, cmd, 0)
    reply = json.loads(out)
    return reply.get('return')


def run(args, rest):
    try:
        import libvirt
        import libvirt_qemu
    except ImportError as e:
        from .needs import missing
        print(missing('libvirt', 'python3-libvirt', 'bt-trace', e), file=sys.stderr)
        return 1
    libvirt.registerErrorHandler(lambda *a: None, None)   # errors are raised
    libvirt.virEventRegisterDefaultImpl()
    try:
        conn = libvirt.open(args.connect)
        dom = conn.lookupByName(args.domain)
    except libvirt.libvirtError as e:
        print(f'bt-trace: {e}', file=sys.stderr)
        return 1

    done = threading.Event()
    ended = {}

    def on_event(conn, dom, event, secs, usecs, details, opaque):
        ended.update(json.loads(details) if details else {})
        done.set()

    def loop():
        while not done.is_set():
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=loop, daemon=True).start()

    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fdset = None
    cb = None
    interrupted = False
    status = None
    try:
        fdset = free_fdset(monitor(dom, libvirt_qemu, qmp('query-fdsets')))
        monitor(dom, libvirt_qemu, qmp('add-fd', **{'fdset-id': fdset, 'opaque': OPAQUE}),
                [fd])
        os.close(fd)
        fd = None
        cb = libvirt_qemu.qemuMonitorEventRegister(conn, dom, EVENT, on_event, None, 0)
        monitor(dom, libvirt_qemu, start_command(fdset, args))
        print(f'bt-trace: {args.domain}: tracing {args.iterations} x {args.period} ms '
              f'into {args.output} (Ctrl-C stops it)', file=sys.stderr)
        prog = Progress()
        tty = sys.stderr.isatty()
        # a bound: the trace's own length, and as long again for slow rounds
        limit = args.iterations * args.period / 1000 * 2 + 60
        waited = 0.0
        while not done.is_set():
            try:
                if done.wait(args.progress):
                    break
                waited += args.progress
                prog.update(monitor(dom, libvirt_qemu,
                                    qmp('query-bitmap-trace', since=prog.since)))
                print(('\r' if tty else '') + 'bt-trace: ' + prog.line(),
                      end='' if tty else '\n', file=sys.stderr, flush=True)
                if prog.info.get('status') not in (None, 'active'):
                    break       # ended before we registered, or the event was lost
                if waited > limit:
                    raise SystemExit(f'bt-trace: no end after {waited:.0f} s')
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                print('\nbt-trace: stopping the trace', file=sys.stderr)
                monitor(dom, libvirt_qemu, qmp('bitmap-trace', state=False))
                limit = waited + 60
        if tty:
            print(file=sys.stderr)
        info = monitor(dom, libvirt_qemu, qmp('query-bitmap-trace', since=1 << 30))
        status = ended.get('status') or info.get('status')
        print(f"bt-trace: trace {status} after {info.get('completed-iterations')} "
              f"iterations", file=sys.stderr)
        if status == 'failed':
            print(f"bt-trace: {info.get('error-desc', 'failed')}", file=sys.stderr)
    except libvirt.libvirtError as e:
        print(f'bt-trace: {e}', file=sys.stderr)
        return 1
    finally:
        if fd is not None:
            os.close(fd)
        if cb is not None:
            try:
                libvirt_qemu.qemuMonitorEventDeregister(conn, cb)
            except libvirt.libvirtError:
                pass
        if fdset is not None:
            try:
                monitor(dom, libvirt_qemu, qmp('remove-fd', **{'fdset-id': fdset}))
            except libvirt.libvirtError:
                pass
        done.set()
    sys.stdout.flush()
    from .__main__ import main as report
    rc = report([args.output] + rest)
    if rc == 0 and status == 'failed':
        return 1
    if rc == 0 and interrupted:
        return 130
    return rc


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    # also when started in the background, where SIGINT comes ignored
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return run(args, rest)
    except KeyboardInterrupt:
        print('\nbt-trace: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
