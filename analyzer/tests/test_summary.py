# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.summary: the working set."""

import unittest

from .helpers import parse, summary, synth


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
        res = summary.summarise(log)
        #   k=1: (4+4+0+4)/4 = 3
        #   k=2: {1,2}: 6 pages; {2,3}: 4; {3,4}: 4        -> 14/3
        #   k=3: {1,2,3}: 6; {2,3,4}: 0,2-5,100,101,rom:1 = 8  -> 7
        #   k=4: 9
        for got, want in zip(res['working_set'], [3.0, 14 / 3, 7.0, 9.0]):
            self.assertAlmostEqual(got, want)
        self.assertEqual(res['distinct_pages'], 9)


if __name__ == '__main__':
    unittest.main()
