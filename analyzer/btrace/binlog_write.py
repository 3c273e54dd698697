# SPDX-License-Identifier: GPL-2.0-or-later
"""Write a binary bitmap-trace log (format v3 or v4) the way QEMU does.

Writer builds a log record by record (the cheaper of runs and a bitmap for
every page set, as QEMU chooses); the tests build logs by hand with it, and
synth.py writes large logs with its encoders.
"""

from .binlog_format import BITMAP, MAGIC, MAP, RUNS, USED

def encode_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7f | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_str(s):
    b = s.encode('utf-8')
    return encode_varint(len(b)) + b


def encode_segs(segs):
    return encode_varint(len(segs)) + b''.join(
        encode_varint(p) + encode_varint(n) + encode_varint(f) for p, n, f in segs)


def encode_set(pages):
    """A set of page numbers, as QEMU encodes it: the cheaper of its runs and
    its bitmap (runs when equal)."""
    pages = sorted(set(pages))
    if not pages:
        return bytes([RUNS]) + encode_varint(0)
    runs = bytearray()
    pos, i = 0, 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        length = j - i + 1
        runs += encode_varint((pages[i] - pos) << 1 | (length > 1))
        if length > 1:
            runs += encode_varint(length - 2)
        pos = pages[j] + 2
        i = j + 1
    bitmap_len = pages[-1] // 8 + 1
    if len(runs) <= bitmap_len:
        return bytes([RUNS]) + encode_varint(len(runs)) + bytes(runs)
    value = 0
    for p in pages:
        value |= 1 << p
    return bytes([BITMAP]) + encode_varint(bitmap_len) + value.to_bytes(bitmap_len, 'little')


def encode_record(rtype, payload):
    return rtype.encode() + encode_varint(len(payload)) + payload


class Writer:
    """Build a binary log: header(), iteration() for each iteration, end()."""

    def __init__(self, version=3):
        """version 3 (the default: logs of earlier versions of the series)
        or 4, whose iterations give the vCPUs' run times."""
        self.version = version
        self.data = bytearray()
        self.blocks = []        # [used pages, segs] as the reader knows them

    def header(self, qemu, accel, page_size, period_ms, iterations, start, blocks,
               blocked=''):
        """blocks: (name, pages, segs), segs [(page, npages, pfn)] in GPA order;
        blocked: the reasons, separated by newlines."""
        p = encode_varint(self.version) + encode_str(qemu) + encode_str(accel) + encode_varint(page_size)
        p += encode_varint(period_ms) + encode_varint(iterations) + encode_str(start) + encode_str(blocked)
        p += encode_varint(len(blocks))
        for name, pages, segs in blocks:
            p += encode_str(name) + encode_varint(pages) + encode_segs(segs)
            self.blocks.append([pages, list(segs)])
        self.data += MAGIC + encode_record('H', p)

    def iteration(self, n, t_us, dirty, unmapped, zero, sync_us, harvest_us,
                  zero_us, entries, vcpu_us=()):
        """entries: {block index: (dirty pages, zero pages[, used[, segs]])};
        vcpu_us (version 4): each vCPU's run time in microseconds."""
        p = b''.join(encode_varint(v) for v in (n, t_us, dirty, unmapped, zero,
                                          sync_us, harvest_us, zero_us))
        if self.version >= 4:
            p += encode_varint(len(vcpu_us))
            p += b''.join(encode_varint(v) for v in vcpu_us)
        p += encode_varint(len(entries))
        for i in sorted(entries):
            e = entries[i]
            pages, zpages = sorted(set(e[0])), set(e[1])
            used = e[2] if len(e) > 2 else self.blocks[i][0]
            segs = list(e[3]) if len(e) > 3 else self.blocks[i][1]
            flags = (USED if used != self.blocks[i][0] else 0) | \
                (MAP if segs != self.blocks[i][1] else 0)
            p += encode_varint(i) + encode_varint(flags)
            if flags & USED:
                p += encode_varint(used)
            if flags & MAP:
                p += encode_segs(segs)
            self.blocks[i] = [used, segs]
            p += encode_set(pages)
            p += encode_set([k for k, pg in enumerate(pages) if pg in zpages])
        self.data += encode_record('I', p)

    def untraced(self, name, pages):
        self.data += encode_record('U', encode_str(name) + encode_varint(pages))

    def added(self, name, pages, zero, segs):
        self.data += encode_record('A', encode_str(name) + encode_varint(pages) + encode_varint(zero) +
                             encode_segs(segs))
        self.blocks.append([pages, list(segs)])

    def removed(self, index):
        self.data += encode_record('R', encode_varint(index))

    def blocked(self, reason):
        self.data += encode_record('B', encode_str(reason))

    def end(self, status, iterations, error=None):
        p = encode_str(status) + encode_varint(iterations)
        if error is not None:
            p += encode_str(error)
        self.data += encode_record('E', p)
