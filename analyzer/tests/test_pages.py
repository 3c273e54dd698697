# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.pages: migration page numbers."""

import unittest

from .helpers import pages, parse, synth


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
        sp = pages.PageSpace(log)
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
        sp = pages.PageSpace(log)
        self.assertEqual(sp.pfns_to_index([(0x0, 0x1), (0x10, 0x11)]).tolist(), [2, 3, 0, 1])


if __name__ == '__main__':
    unittest.main()
