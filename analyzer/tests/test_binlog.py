# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.binlog: the binary log (format v3; v4 in test_vcpus.py) read as text, and written."""

import os
import random
import re
import subprocess
import tempfile
import unittest

from .helpers import REPORT, parse
from btrace import binlog, binlog_ref

HERE = os.path.dirname(os.path.abspath(__file__))

# ram: pages 0-7 at PFN 0, pages 8-15 at PFN 0x100; rom: not mapped
TEXT = """bitmap-trace v2
meta qemu=10.0.13 accel=kvm page-size=4096 period-ms=100 iterations=3 start=2026-01-01T00:00:00.000000Z
block name=ram pages=16 map=0+8,100+8
block name=rom pages=4 map=
iter n=0 t-ms=0.000 dirty=20 unmapped=4 zero=7 sync-us=10 harvest-us=20 zero-us=30
pfns 0-7 100-107
unmapped rom:0-3
zero 4-7 106
unmapped-zero rom:2-3
iter n=1 t-ms=100.012 dirty=3 unmapped=1 zero=2 sync-us=11 harvest-us=21 zero-us=5
pfns 1-2
unmapped rom:0
zero 2
unmapped-zero rom:0
iter n=2 t-ms=200.000 dirty=0 unmapped=0 zero=0 sync-us=10 harvest-us=20 zero-us=0
iter n=3 t-ms=300.999 dirty=4 unmapped=1 zero=0 sync-us=1 harvest-us=2 zero-us=3
pfns 0 100 107
unmapped ram:f
end status=failed iterations=3 error=cannot write bitmap-trace log 'x': No space left
"""


def build_binary():
    """TEXT, written by hand as a binary log."""
    w = binlog.Writer()
    w.header('10.0.13', 'kvm', 4096, 100, 3, '2026-01-01T00:00:00.000000Z',
             [('ram', 16, [(0, 8, 0), (8, 8, 0x100)]), ('rom', 4, [])])
    w.iteration(0, 0, 20, 4, 7, 10, 20, 30,
                {0: (range(16), [4, 5, 6, 7, 14]), 1: (range(4), [2, 3])})
    w.iteration(1, 100012, 3, 1, 2, 11, 21, 5, {0: ([1, 2], [2]), 1: ([0], [0])})
    w.iteration(2, 200000, 0, 0, 0, 10, 20, 0, {})
    # the guest remapped ram: pages 0-7 now at PFN 0x100, 8-14 at 0, 15 nowhere
    w.iteration(3, 300999, 4, 1, 0, 1, 2, 3,
                {0: ([7, 8, 0, 15], [], 16, [(8, 7, 0), (0, 8, 0x100)])})
    w.end('failed', 3, "cannot write bitmap-trace log 'x': No space left")
    return bytes(w.data)


class ToText(unittest.TestCase):
    def test_hand_built_log_is_its_text(self):
        self.assertEqual(binlog.to_text(build_binary()), TEXT)

    def test_parse_reads_binary_as_text(self):
        with tempfile.NamedTemporaryFile(suffix='.btl') as f:
            f.write(build_binary())
            f.flush()
            log = parse.parse(f.name)
        ref = parse.parse_text(TEXT)
        self.assertTrue(log.binary)
        self.assertFalse(ref.binary)
        self.assertEqual([(i.n, i.dirty, i.pfns, i.unmapped_pages, i.zero_pfns, i.unmapped_zero)
                          for i in log.iters],
                         [(i.n, i.dirty, i.pfns, i.unmapped_pages, i.zero_pfns, i.unmapped_zero)
                          for i in ref.iters])
        self.assertEqual(log.end['status'], 'failed')

    def test_qemu_log_is_its_text(self):
        """The same guest writes traced by QEMU in each format (qtest
        /bitmap-trace/format/same-as-text): equal but for times."""
        with open(os.path.join(HERE, 'data', 'pc-high.btl'), 'rb') as f:
            text = binlog.to_text(f.read())
        with open(os.path.join(HERE, 'data', 'pc-high.txt')) as f:
            ref = f.read()

        def mask(s):
            return re.sub(r'(t-ms|sync-us|harvest-us|zero-us|start)=[^ \n]*', r'\1=X', s)
        self.assertEqual(mask(text), mask(ref))
        self.assertIn('unmapped pc.ram:', text)
        parse.parse_text(text)

    def test_blocked_and_untraced(self):
        w = binlog.Writer()
        w.header('10.0.13', 'kvm', 4096, 100, 3, 'T', [('ram', 8, [(0, 8, 0)])],
                 blocked='ivshmem: memory-backend-file shared')
        w.iteration(0, 0, 8, 0, 0, 1, 2, 3, {0: (range(8), [])})
        w.iteration(1, 100000, 1, 0, 0, 1, 2, 3, {0: ([3], [])})
        w.untraced('dimm0', 32768)
        text = binlog.to_text(bytes(w.data))
        self.assertEqual(text.splitlines()[2], 'blocked reason=ivshmem: memory-backend-file shared')
        self.assertEqual(text.splitlines()[-1], 'untraced name=dimm0 pages=32768')
        log = parse.parse_text(text)
        self.assertEqual(log.blocked, 'ivshmem: memory-backend-file shared')

    def test_prefix_and_truncation(self):
        data = build_binary()
        ends = [end for _, _, end in binlog.records(data)]
        # every record boundary is a valid log without an end
        for end in ends[:-1]:
            text = binlog.to_text(data[:end])
            self.assertNotIn('\nend ', text)
            parse.parse_text(text)
        with self.assertRaisesRegex(binlog.BinLogError, 'incomplete'):
            binlog.to_text(data[:ends[2] - 1])
        with self.assertRaisesRegex(binlog.BinLogError, 'magic'):
            binlog.to_text(b'bitmap-trace v2\n')
        with tempfile.NamedTemporaryFile(suffix='.btl') as f:
            f.write(data[:ends[1] + 3])
            f.flush()
            with self.assertRaisesRegex(parse.LogError, 'binary log: .*incomplete'):
                parse.parse(f.name)

    def test_bad_version(self):
        data = bytearray(build_binary())
        # the header's payload starts with the version
        _, start, _ = next(binlog.records(bytes(data)))
        data[start] = 5
        with self.assertRaisesRegex(binlog.BinLogError, 'version 5'):
            binlog.to_text(bytes(data))


class Encoding(unittest.TestCase):
    def test_cheaper_of_runs_and_bitmap(self):
        self.assertEqual(binlog.encode_set([]), b'\x00\x00')
        # one run of 1000 pages from page 5: gap 5, long -> (5 << 1 | 1), 998
        self.assertEqual(binlog.encode_set(range(5, 1005)), b'\x00\x03\x0b\xe6\x07')
        # every other page: a byte a page as runs, an eighth as a bitmap
        enc = binlog.encode_set(range(0, 1024, 2))
        self.assertEqual(enc[0], binlog.BITMAP)
        self.assertEqual(len(enc), 1 + 2 + 128)

    def test_random_writes_cost(self):
        """At most 2 bytes a dirty page from one page in 1000 dirtied on (3
        down to one in 2^19), 1 from one in 10, and never more than the
        bitmap (plus its 1 + varint bytes)."""
        rnd = random.Random(1)
        npages = 1 << 20
        for frac in (1 / (1 << 19), 1 / 8192, 0.001, 0.01, 0.04, 0.1, 0.5, 0.9):
            pages = rnd.sample(range(npages), max(int(npages * frac), 1))
            enc = binlog.encode_set(pages)
            per_page = 3 if frac < 0.001 else 1 if frac >= 0.1 else 2
            self.assertLessEqual(len(enc), per_page * len(pages) + 2, frac)
            self.assertLessEqual(len(enc), max(pages) // 8 + 1 + 4, frac)
            # and it decodes to the same pages
            runs = binlog_ref.page_set(binlog.Reader(enc, 0, len(enc)), npages)
            got = [p for a, b in runs for p in range(a, b)]
            self.assertEqual(got, sorted(pages))


class ToTextCommand(unittest.TestCase):
    def test_bt_report_to_text(self):
        with tempfile.NamedTemporaryFile(suffix='.btl') as f:
            f.write(build_binary())
            f.flush()
            out = subprocess.run([*REPORT, '--to-text', f.name],
                                 capture_output=True, text=True, check=True)
            self.assertEqual(out.stdout, TEXT)
            out = subprocess.run([*REPORT, '--check', f.name],
                                 capture_output=True, text=True, check=True)
            self.assertIn('ok: binary v3', out.stdout)


if __name__ == '__main__':
    unittest.main()
