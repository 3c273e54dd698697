# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.parse: logs v1 and v2, and what makes them invalid."""

import unittest

from .helpers import parse, synth

V2 = """bitmap-trace v2
meta qemu=10.0.13 accel=kvm page-size=4096 period-ms=100 iterations=2 start=2026-01-01T00:00:00.000000Z
block name=ram pages=16 map=0+8,100+8
block name=rom pages=4 map=
iter n=0 t-ms=0.000 dirty=20 unmapped=4 zero=7 sync-us=10 harvest-us=20 zero-us=30
pfns 0-7 100-107
unmapped rom:0-3
zero 4-7 106
unmapped-zero rom:2-3
iter zero-us=5 n=1 t-ms=100.000 dirty=3 unmapped=1 zero=2 sync-us=10 harvest-us=20
pfns 1-2
unmapped rom:0
zero 2
unmapped-zero rom:0
iter n=2 t-ms=200.000 dirty=0 unmapped=0 zero=0 sync-us=10 harvest-us=20 zero-us=0
end status=completed iterations=2
"""


class ParseV2(unittest.TestCase):
    def test_reads_zero_information(self):
        log = parse.parse_text(V2)
        self.assertEqual(log.version, 2)
        self.assertTrue(log.has_zero)
        base, one, two = log.iters
        # baseline: PFN 4-7 and 0x106 (5 pages) and rom:2-3 (2 pages) were zero
        self.assertEqual(base.zero, 7)
        self.assertEqual(base.zero_pfns, [(4, 7), (0x106, 0x106)])
        self.assertEqual(base.unmapped_zero, [('rom', 2, 3)])
        self.assertEqual(base.zero_us, 30)
        # fields are read by key: zero-us came first on iteration 1's line
        self.assertEqual((one.n, one.dirty, one.zero, one.zero_us), (1, 3, 2, 5))
        self.assertEqual(two.zero, 0)

    def test_v1_has_no_zero_information(self):
        text = synth.make_log([('ram', 4, [(0, 4)])], [(100, [1], [])], version=1)
        log = parse.parse_text(text)
        self.assertEqual(log.version, 1)
        self.assertFalse(log.has_zero)
        self.assertIsNone(log.iters[1].zero)

    def test_v1_rejects_zero_lines(self):
        text = synth.make_log([('ram', 4, [(0, 4)])], [(100, [1], [])], version=1)
        text = text.replace('pfns 1\n', 'pfns 1\nzero 1\n')
        with self.assertRaisesRegex(parse.LogError, "unknown record 'zero'"):
            parse.parse_text(text)

    def bad(self, old, new, message):
        self.assertIn(old, V2)
        with self.assertRaisesRegex(parse.LogError, message):
            parse.parse_text(V2.replace(old, new, 1))

    def test_blocked_and_untraced_records(self):
        text = V2.replace('block name=ram', 'blocked reason=vfio: no dirty tracking\nblock name=ram', 1)
        text = text.replace('unmapped-zero rom:0\n', 'unmapped-zero rom:0\nuntraced name=dimm1 pages=32768\n', 1)
        log = parse.parse_text(text)
        self.assertEqual(log.blocked, 'vfio: no dirty tracking')
        self.assertEqual(log.iters[1].untraced, [('dimm1', 32768)])
        self.assertEqual(log.iters[0].untraced, [])
        self.assertEqual(log.iters[1].dirty, 3)     # its pages are not counted

    def test_untraced_comes_last(self):
        self.bad('pfns 1-2\n', 'untraced name=dimm1 pages=4\npfns 1-2\n',
                 'pfns line after the untraced line')

    def test_blocked_before_blocks(self):
        # at the start, blocked lines come before the block lines
        self.bad('iter n=0', 'blocked reason=x\niter n=0',
                 'blocked line between the block lines and the first iteration')

    def test_zero_must_be_among_pfns(self):
        # PFN 8 is not listed by iteration 1 (nor mapped at all)
        self.bad('zero 2\n', 'zero 8\n', 'zero pfn range 8-8 is not among its pfns')
        # a range straddling the end of a pfns range
        self.bad('zero 2\n', 'zero 2-3\n', 'zero=2 but lists 3')

    def test_zero_straddling_pfns(self):
        text = V2.replace('zero=2 sync', 'zero=3 sync').replace('zero 2\n', 'zero 2-3\n')
        with self.assertRaisesRegex(parse.LogError, 'zero pfn range 2-3 is not among its pfns'):
            parse.parse_text(text)

    def test_unmapped_zero_must_be_among_unmapped(self):
        self.bad('unmapped-zero rom:0\n', 'unmapped-zero rom:1\n',
                 'unmapped-zero page rom:1-1 is not among its unmapped pages')

    def test_zero_count(self):
        self.bad('zero=7', 'zero=6', 'says zero=6 but lists 7')

    def test_zero_lacks_fields(self):
        self.bad(' zero-us=30', '', 'lacks zero-us=')
        self.bad(' zero=7', '', 'lacks zero=')

    def test_zero_order(self):
        # zero lines come after the pfns and unmapped lines
        self.bad('unmapped rom:0\nzero 2\n', 'zero 2\nunmapped rom:0\n',
                 'unmapped line after the zero line')
        self.bad('zero 2\nunmapped-zero rom:0\n', 'unmapped-zero rom:0\nzero 2\n',
                 'zero line after the unmapped-zero line')

    def test_zero_ranges_ascending(self):
        self.bad('zero 4-7 106', 'zero 106 4-7', 'not above the one before')

    def test_unknown_version(self):
        with self.assertRaisesRegex(parse.LogError, 'unsupported format'):
            parse.parse_text(V2.replace('v2', 'v4', 1))


class Synth(unittest.TestCase):
    def test_long_lists_split_over_lines(self):
        # 300 separate pages: 300 ranges, 256 on the first pfns line
        pages = list(range(0, 600, 2))
        text = synth.make_log([('ram', 600, [(0, 600)])], [(100, pages, pages[:260])])
        lines = text.split('\n')
        pfns = [ln for ln in lines if ln.startswith('pfns ')]
        zero = [ln for ln in lines if ln.startswith('zero ')]
        # baseline: one range; window 1: 256 + 44 ranges
        self.assertEqual([len(ln.split()) - 1 for ln in pfns], [1, 256, 44])
        self.assertEqual([len(ln.split()) - 1 for ln in zero], [256, 4])
        log = parse.parse_text(text)
        self.assertEqual(log.iters[1].dirty, 300)
        self.assertEqual(log.iters[1].zero, 260)

    def test_unmapped_pages(self):
        text = synth.make_log([('ram', 8, [(0, 6)])], [(100, [('ram', 7), 3], [('ram', 7)])],
                              baseline_unmapped=[('ram', 6), ('ram', 7)])
        log = parse.parse_text(text)
        self.assertEqual(log.iters[0].unmapped_pages, [('ram', 6, 7)])
        self.assertEqual(log.iters[1].unmapped_zero, [('ram', 7, 7)])
        self.assertEqual((log.iters[1].dirty, log.iters[1].unmapped), (2, 1))


if __name__ == '__main__':
    unittest.main()
