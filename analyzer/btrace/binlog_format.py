# SPDX-License-Identifier: GPL-2.0-or-later
"""The binary bitmap-trace log (formats v3 and v4): its constants and its records.

docs/devel/migration/bitmap-trace.rst ("Binary log") has the format.  A
binary log is the magic, then records: a type byte, the payload's length
(a varint) and the payload.  Both readers, binlog_ref.py (to the text, in
Python) and binlog_fast.py (with numpy), walk the records with records()
and read their numbers and strings with a Reader; binlog_write.py writes
them.
"""

MAGIC = b'\x89BTR\r\n\x1a\n'
VERSION = 4                 # what QEMU writes: v3 and the vCPUs' run times
VERSIONS = (3, 4)           # what the readers read; the text of v(N) is v(N - 1)
RANGES_PER_LINE = 256
USED, MAP = 1, 2            # block entry flags
RUNS, BITMAP = 0, 1         # page set encodings


class BinLogError(Exception):
    pass


def is_binary(data):
    return data[:len(MAGIC)] == MAGIC


class Reader:
    __slots__ = ('data', 'pos', 'end')

    def __init__(self, data, pos, end):
        self.data = data
        self.pos = pos
        self.end = end

    def varint(self):
        data, pos, end = self.data, self.pos, self.end
        v = shift = 0
        while True:
            if pos >= end:
                raise BinLogError(f'byte {pos}: a number runs past the end of its record')
            c = data[pos]
            pos += 1
            v |= (c & 0x7f) << shift
            if c < 0x80:
                self.pos = pos
                return v
            shift += 7
            if shift > 63:
                raise BinLogError(f'byte {pos}: a number longer than 64 bits')

    def str(self):
        n = self.varint()
        if self.pos + n > self.end:
            raise BinLogError(f'byte {self.pos}: a string runs past the end of its record')
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return s.decode('utf-8')
        except UnicodeDecodeError:
            raise BinLogError(f'byte {self.pos}: a string that is not UTF-8')

    def segs(self):
        return [(self.varint(), self.varint(), self.varint()) for _ in range(self.varint())]


def vcpus_line(r):
    """v4: the vcpus line of an iteration record's run times."""
    return 'vcpus run-us=' + ','.join(str(r.varint()) for _ in range(r.varint()))


def records(data):
    """(type, offset, end) of each record of a binary log, after the magic."""
    if not is_binary(data):
        raise BinLogError('not a binary bitmap-trace log (no magic)')
    pos = len(MAGIC)
    while pos < len(data):
        rtype = data[pos]
        r = Reader(data, pos + 1, len(data))
        n = r.varint()
        if r.pos + n > len(data):
            raise BinLogError(f'byte {pos}: the last record is incomplete '
                              f'({len(data) - r.pos} of {n} bytes)')
        yield rtype, r.pos, r.pos + n
        pos = r.pos + n


# What a sync found changed, after its iteration record: A, a RAM block
# added (it takes the next block number); R, a block removed; B, a new
# migration blocker; U (logs of earlier versions), a block not traced
CHANGES = {ord('A'), ord('R'), ord('B'), ord('U')}


def change_line(rtype, r, blocks):
    """The text line of an A, R, B or U record."""
    if rtype == ord('A'):
        name, pages, zero, segs = r.str(), r.varint(), r.varint(), r.segs()
        blocks.append([name, pages, segs])
        return (f'added name={name} pages={pages} zero={zero} map=' +
                ','.join(f'{pfn:x}+{n}' for _, n, pfn in segs))
    if rtype == ord('R'):
        i = r.varint()
        if i >= len(blocks):
            raise BinLogError(f'byte {r.pos}: removed block {i} is unknown')
        return f'removed name={blocks[i][0]}'
    if rtype == ord('B'):
        return f'blocked reason={r.str()}'
    name, pages = r.str(), r.varint()
    return f'untraced name={name} pages={pages}'
