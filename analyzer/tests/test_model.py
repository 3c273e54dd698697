# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.model: migration page numbers and the working set."""

import unittest

from .helpers import model, parse, synth


class PageSpaceTest(unittest.TestCase):
    def test_block_order_and_segments(self):
        # "ram": 12 pages, pages 8-9 have no GPA (a hole), the others are at
        # PFN 0-7 and 0x100-0x101; "rom" (4 pages) is not mapped at all.
        text = synth.make_log(
            [('ram', 12, [(0, 8), (0x100, 2)]), ('rom', 4, [])],
            [(100, [0x100, 7, ('rom', 1), ('ram', 9)], [])],
            baseline_unmapped=[('ram', 8), ('ram', 9), ('rom', 0), ('rom', 1), ('rom', 2),
                               ('rom', 3)])
        log = parse.parse_text(text)
        sp = model.PageSpace(log)
        self.assertEqual(sp.npages, 16)
        self.assertEqual(sp.warnings, [])
        # ram pages 0-7 are PFN 0-7; pages 8-9 the hole; 10-11 PFN 0x100-0x101;
        # rom's pages come after ram's: 12-15.
        self.assertEqual(sorted(sp.pages(log.iters[1]).tolist()), [7, 9, 10, 13])
        self.assertEqual(sp.pfns_to_index([(0x101, 0x101)]).tolist(), [11])
        self.assertEqual(sp.block_of.tolist(), [0] * 12 + [1] * 4)

    def test_segments_in_log_order_not_pfn_order(self):
        # A block whose second segment is at a lower PFN: the segments are
        # laid on the block's pages in the order the log lists them.
        text = synth.make_log([('a', 4, [(0x10, 2), (0x0, 2)])], [(100, [0x0], [])])
        log = parse.parse_text(text)
        sp = model.PageSpace(log)
        self.assertEqual(sp.pfns_to_index([(0x0, 0x1), (0x10, 0x11)]).tolist(), [2, 3, 0, 1])


class WorkingSetTest(unittest.TestCase):
    def test_by_hand(self):
        # The reference log of tests/harness/bt-report-test.sh: windows
        # {0-3}, {2-5}, {}, {0, 0x100, 0x101, rom:1}.
        text = synth.make_log(
            [('ram', 16, [(0, 8), (0x100, 8)]), ('rom', 4, [])],
            [(100, [0, 1, 2, 3], []), (200, [2, 3, 4, 5], []), (300, [], []),
             (400, [0, 0x100, 0x101, ('rom', 1)], [])],
            baseline_unmapped=[('rom', i) for i in range(4)], version=1)
        log = parse.parse_text(text)
        res = model.summarise(log)
        #   k=1: (4+4+0+4)/4 = 3
        #   k=2: {1,2}: 6 pages; {2,3}: 4; {3,4}: 4        -> 14/3
        #   k=3: {1,2,3}: 6; {2,3,4}: 0,2-5,100,101,rom:1 = 8  -> 7
        #   k=4: 9
        for got, want in zip(res['working_set'], [3.0, 14 / 3, 7.0, 9.0]):
            self.assertAlmostEqual(got, want)
        self.assertEqual(res['distinct_pages'], 9)


if __name__ == '__main__':
    unittest.main()
