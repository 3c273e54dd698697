#!/usr/bin/python3
"""Talk to a running QEMU over QMP or HMP sockets (stdlib only).

Used by scripts/demo.sh; handy by hand too.

  qmp.py qmp ADDR [--timeout S] [--wait-event NAME] [--event-timeout S]
             [--wait-for-server S] COMMAND [ARGUMENTS-JSON]
      Connect to the QMP server at ADDR (HOST:PORT or a unix socket path),
      negotiate capabilities, run COMMAND with ARGUMENTS-JSON (an object) and
      print its "return" as JSON.  With --wait-event, stay on the same
      connection (so the event cannot be missed) until event NAME arrives,
      then print it as JSON on a second line.  Exit status 1 on a QMP error
      (its class and description go to stderr), 2 on a timeout or a lost
      connection.

  qmp.py hmp ADDR [--timeout S] COMMAND-LINE
      Run one HMP command on the human monitor at ADDR and print its output.

  qmp.py free-port
      Print a TCP port on 127.0.0.1 that is free right now.
"""

import argparse
import json
import re
import socket
import sys
import time


class QMPError(Exception):
    pass


def connect(addr, timeout, wait_for_server=0.0):
    """Connect to HOST:PORT or a unix socket path, retrying while the
    server is not up yet for at most wait_for_server seconds."""
    deadline = time.monotonic() + wait_for_server
    while True:
        try:
            if ':' in addr and not addr.startswith('/'):
                host, port = addr.rsplit(':', 1)
                sock = socket.create_connection((host, int(port)), timeout)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(addr)
            sock.settimeout(timeout)
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


class QMP:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b''
        self.events = []

    def _read_message(self, deadline):
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('timed out waiting for QMP')
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('QMP connection closed by QEMU')
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def greeting(self, timeout):
        msg = self._read_message(time.monotonic() + timeout)
        if 'QMP' not in msg:
            raise QMPError(f'not a QMP greeting: {msg}')
        self.command('qmp_capabilities', None, timeout)

    def command(self, name, arguments, timeout):
        req = {'execute': name}
        if arguments:
            req['arguments'] = arguments
        self.sock.sendall(json.dumps(req).encode() + b'\n')
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if 'event' in msg:
                self.events.append(msg)
            elif 'error' in msg:
                err = msg['error']
                raise QMPError(f"{err.get('class')}: {err.get('desc')}")
            elif 'return' in msg:
                return msg['return']

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev['event'] == name:
                    return self.events.pop(i)
            msg = self._read_message(deadline)
            if 'event' in msg:
                self.events.append(msg)


def cmd_qmp(args):
    arguments = json.loads(args.arguments) if args.arguments else None
    sock = connect(args.addr, args.timeout, args.wait_for_server)
    try:
        qmp = QMP(sock)
        qmp.greeting(args.timeout)
        try:
            ret = qmp.command(args.command, arguments, args.timeout)
        except ConnectionError:
            # QEMU may close the connection before it answers a quit.
            if args.command != 'quit':
                raise
            ret = {}
        print(json.dumps(ret), flush=True)
        if args.wait_event:
            ev = qmp.wait_event(args.wait_event, args.event_timeout)
            print(json.dumps(ev), flush=True)
    finally:
        sock.close()


# HMP over a socket is a terminal: the monitor echoes what it reads and
# redraws the line with escape sequences.  Output ends at the next prompt.
PROMPT = b'(qemu) '
ESCAPE = re.compile(rb'\x1b\[[0-9;]*[A-Za-z]|\x1b[^\[]')


def hmp_read_prompt(sock, deadline):
    buf = b''
    while not buf.endswith(PROMPT):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('timed out waiting for the HMP prompt')
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise ConnectionError('HMP connection closed by QEMU')
        buf += data
    return buf[:-len(PROMPT)]


def cmd_hmp(args):
    sock = connect(args.addr, args.timeout, args.wait_for_server)
    try:
        deadline = time.monotonic() + args.timeout
        hmp_read_prompt(sock, deadline)          # the banner
        sock.sendall(args.command.encode() + b'\n')
        out = hmp_read_prompt(sock, time.monotonic() + args.timeout)
    finally:
        sock.close()
    # Everything up to the first newline is the monitor echoing (and
    # redrawing, character by character) the command line.
    _, _, out = out.partition(b'\n')
    text = ESCAPE.sub(b'', out).decode(errors='replace').replace('\r', '')
    sys.stdout.write(text.rstrip('\n') + '\n')


def cmd_free_port(_args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        print(s.getsockname()[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    sub = ap.add_subparsers(dest='what', required=True)

    q = sub.add_parser('qmp', help='run a QMP command')
    q.add_argument('addr')
    q.add_argument('command')
    q.add_argument('arguments', nargs='?')
    q.add_argument('--timeout', type=float, default=10)
    q.add_argument('--wait-for-server', type=float, default=0)
    q.add_argument('--wait-event')
    q.add_argument('--event-timeout', type=float, default=60)
    q.set_defaults(func=cmd_qmp)

    h = sub.add_parser('hmp', help='run an HMP command')
    h.add_argument('addr')
    h.add_argument('command')
    h.add_argument('--timeout', type=float, default=10)
    h.add_argument('--wait-for-server', type=float, default=0)
    h.set_defaults(func=cmd_hmp)

    f = sub.add_parser('free-port', help='print a free TCP port on 127.0.0.1')
    f.set_defaults(func=cmd_free_port)

    args = ap.parse_args()
    try:
        args.func(args)
    except QMPError as e:
        print(f'qmp.py: {getattr(args, "command", "")}: {e}', file=sys.stderr)
        sys.exit(1)
    except (OSError, TimeoutError, ValueError) as e:
        print(f'qmp.py: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
