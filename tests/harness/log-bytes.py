#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A trace whose log is the same from build to build, with its times masked.

    log-bytes.py run QEMU FORMAT LOG     trace a qtest-accel VM into LOG
    log-bytes.py mask FORMAT LOG OUT     LOG with its time fields masked

`run` starts QEMU with -accel qtest (no vCPU runs: every page write is one
this script makes through the qtest protocol) and takes a 3-iteration
trace with a 1 s period.  Between the rounds it writes a fixed set of
pages: non-zero bytes, zero bytes over zero pages, a page written in every
round, pages written again after the first round.  It waits for round k to
be in the results, its zero scan done (query-bitmap-trace, polled:
there is no event per round) before it writes round k+1's pages, which the next round, a period
later, takes.  So every field of the log but the times is fixed.

`mask` sets the fields that carry times to a constant:
  text    the start= of the meta line; t-ms=, sync-us=, harvest-us= and
          zero-us= of every iter line; each vCPU's run time on a vcpus
          line (v3), which stays a list as long
  binary  the start time of the header record (to the empty string); t_us,
          sync_us, harvest_us and zero_us of every iteration record and,
          in v4, each vCPU's run time (to 0),
          each record framed again with its new length
Everything else stays byte for byte, the QEMU version included.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

PAGE = 4096
PERIOD_MS = 1000
ITERATIONS = 3
MAGIC = b"\x89BTR\r\n\x1a\n"

# (page, byte) writes before round 1, 2, 3; byte 0 writes a zero page
ROUNDS = [
    [(0x100 + i, 0x5a) for i in range(16)] + [(0x200, 0), (0x3000, 0xa5)],
    [(0x100 + i, 0x11) for i in range(0, 16, 2)] + [(0x3000, 0xa6),
                                                    (0x2800, 0x01)],
    [(0x100 + i, 0) for i in range(4)] + [(0x3000, 0xa7), (0x3fff, 0x7f)],
]


class Qtest:
    def __init__(self, sock):
        self.f = sock.makefile("rwb", buffering=0)

    def cmd(self, line):
        self.f.write(line.encode() + b"\n")
        while True:
            reply = self.f.readline().decode()
            if not reply:
                raise RuntimeError("qtest: QEMU went away")
            if not reply.startswith("IRQ"):
                break
        if not reply.startswith("OK"):
            raise RuntimeError("qtest: %s: %s" % (line, reply.strip()))


class Qmp:
    def __init__(self, sock):
        self.f = sock.makefile("rwb", buffering=0)
        self.events = []
        self.read()                             # the greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("qmp: QEMU went away")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name,
                                 "arguments": args}).encode() + b"\n")
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise RuntimeError("qmp: %s: %s" % (name, msg["error"]))
            return msg["return"]

    def event(self, name):
        while True:
            for e in self.events:
                if e["event"] == name:
                    return e
            self.events.append(self.read())


def write_pages(qt, writes):
    for page, byte in writes:
        # the whole page: a zero page must read as zero
        qt.cmd("memset 0x%x 0x%x 0x%x" % (page * PAGE, PAGE, byte))


def run(qemu, fmt, log):
    with tempfile.TemporaryDirectory() as tmp:
        qt_path, qmp_path = tmp + "/qtest.sock", tmp + "/qmp.sock"
        listeners = []
        for path in (qt_path, qmp_path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            s.settimeout(60)
            listeners.append(s)
        proc = subprocess.Popen(
            [qemu, "-machine", "pc", "-accel", "qtest", "-m", "64M",
             "-nodefaults", "-display", "none", "-qtest-log", "/dev/null",
             "-qtest", "unix:" + qt_path,
             "-chardev", "socket,path=%s,id=qmp" % qmp_path,
             "-mon", "chardev=qmp,mode=control"])
        try:
            qt = Qtest(listeners[0].accept()[0])
            qmp = Qmp(listeners[1].accept()[0])
            qmp.cmd("bitmap-trace", state=True, filename=log, format=fmt,
                    iterations=ITERATIONS, period=PERIOD_MS)
            for k, writes in enumerate(ROUNDS):
                # iteration k, zero scan included, is in the log
                deadline = time.monotonic() + 30
                while len(qmp.cmd("query-bitmap-trace").get(
                        "dirty-pages", [])) < k + 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("iteration %d never came" % k)
                    time.sleep(0.01)
                write_pages(qt, writes)
            end = qmp.event("BITMAP_TRACE_COMPLETED")["data"]
            if end["status"] != "completed":
                raise RuntimeError("the trace ended %s" % end)
            info = qmp.cmd("query-bitmap-trace")
            # the writes of round k must be in round k, not the next
            want = [len(set(p for p, _ in w)) for w in ROUNDS]
            if info["dirty-pages"][1:] != want:
                raise RuntimeError("rounds took %s pages, not %s: the "
                                   "host was too slow for the period"
                                   % (info["dirty-pages"][1:], want))
            qmp.cmd("quit")
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if b < 0x80:
            return v, pos


def put_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def mask_binary(data):
    if not data.startswith(MAGIC):
        raise RuntimeError("not a binary bitmap-trace log")
    out = bytearray(MAGIC)
    pos = len(MAGIC)
    version = 3
    while pos < len(data):
        rtype = data[pos]
        n, pos = varint(data, pos + 1)
        payload, pos = data[pos:pos + n], pos + n
        fields, p = [], 0
        if rtype == ord("H"):
            # version, qemu, accel, page size, period, iterations, start
            for kind in "vssvvvs":
                start = p
                v, p = varint(payload, p)
                if kind == "s":
                    p += v
                fields.append(payload[start:p])
            fields[6] = put_varint(0)           # start time: ""
            version = varint(payload, 0)[0]
        elif rtype == ord("I"):
            # n, t_us, dirty, unmapped, zero, sync, harvest, zero scan
            for i in range(8):
                start = p
                v, p = varint(payload, p)
                fields.append(put_varint(0) if i in (1, 5, 6, 7)
                              else payload[start:p])
            if version >= 4:
                # the number of vCPUs, then their run times
                nvcpus, p2 = varint(payload, p)
                fields.append(payload[p:p2])
                p = p2
                for _ in range(nvcpus):
                    _, p = varint(payload, p)
                    fields.append(put_varint(0))
        payload = b"".join(fields) + payload[p:]
        out += bytes([rtype]) + put_varint(len(payload)) + payload
    return bytes(out)


def mask_text(data):
    text = data.decode()
    text = re.sub(r"^(meta .* start=)\S+", r"\1-", text, flags=re.M)
    text = re.sub(r" (t-ms|sync-us|harvest-us|zero-us)=[0-9.]+", r" \1=-",
                  text)
    text = re.sub(r"^vcpus run-us=.*$",
                  lambda m: re.sub(r"[0-9]+", "-", m.group(0)), text,
                  flags=re.M)
    return text.encode()


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        run(os.path.abspath(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "mask":
        data = open(sys.argv[3], "rb").read()
        data = mask_binary(data) if sys.argv[2] == "binary" \
            else mask_text(data)
        open(sys.argv[4], "wb").write(data)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
