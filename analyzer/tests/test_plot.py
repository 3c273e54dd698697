# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.plot: the heatmap's binning, worked out by hand, and the figures
as valid, non-trivial PNG and SVG files."""

import os
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

import numpy as np

from .helpers import empty_windows, pages, parse, simulate, summary, synth
from .test_export import REPORT, small_log

from btrace import plot

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
SVG_ROOT = '{http://www.w3.org/2000/svg}svg'


class Binning(unittest.TestCase):
    """test_export's small log: segments (PFN order) ram 0-7, ram 0x100-0x107,
    rom 0x200-0x203; windows 1: PFN 0-3; 2: PFN 2-5, 0x100, nv:1 (unmapped);
    3: nothing; 4: PFN 7, 0x107, 0x200, 0x203."""

    def setUp(self):
        self.log = parse.parse_text(small_log())

    def test_four_pages_a_row(self):
        hm = plot.heatmap_bins(self.log, row_pages=4, windows_per_col=1)
        # rows: 0 = PFN 0-3, 1 = 4-7, 2 = 0x100-0x103, 3 = 0x104-0x107, 4 = 0x200-0x203
        want = [[4, 0, 0, 0, 0],        # window 1: 0-3
                [2, 2, 1, 0, 0],        # window 2: 2-3, 4-5, 0x100
                [0, 0, 0, 0, 0],        # window 3
                [0, 1, 0, 1, 2]]        # window 4: 7, 0x107, 0x200 and 0x203
        self.assertEqual(hm.counts.tolist(), want)
        self.assertEqual(hm.seg_row.tolist(), [0, 2, 4, 5])
        self.assertEqual(hm.t_edges_ms.tolist(), [0, 100, 250, 300, 400])
        self.assertEqual(hm.unmapped, 1)            # nv:1 in window 2, not drawn
        self.assertEqual(hm.cell(4, 0x107), (3, 3))

    def test_rows_not_a_divisor_and_two_windows_a_column(self):
        # 3 pages a row: ram 0-7 is rows 0 (0-2), 1 (3-5), 2 (6-7); ram
        # 0x100-0x107 rows 3-5; rom 0x200-0x203 rows 6 (0x200-0x202), 7 (0x203).
        # Columns: windows 1-2 (0-250 ms) and 3-4 (250-400 ms).
        hm = plot.heatmap_bins(self.log, row_pages=3, windows_per_col=2)
        want = [[3 + 1, 1 + 3, 0, 1, 0, 0, 0, 0],   # 0-2 | 3, 2 | 3-5 and 0x100
                [0, 0, 1, 0, 0, 1, 1, 1]]           # 7, 0x107, 0x200, 0x203
        self.assertEqual(hm.counts.tolist(), want)
        self.assertEqual(hm.t_edges_ms.tolist(), [0, 250, 400])

    def test_default_sizes(self):
        # At most 5 rows: 2 pages a row would need 4 + 4 + 2 = 10, 4 pages 2 + 2 + 1.
        hm = plot.heatmap_bins(self.log, max_rows=5)
        self.assertEqual((hm.row_pages, hm.counts.shape), (4, (4, 5)))
        # At most 3 columns for 4 windows: 2 windows a column.
        hm = plot.heatmap_bins(self.log, max_rows=5, max_cols=3)
        self.assertEqual((hm.windows_per_col, hm.counts.shape), (2, (2, 5)))

    def test_adjacent_blocks(self):
        # Block a at PFN 0-5 and block b right after it, at PFN 6-9; 4 pages
        # a row: a is rows 0 (PFN 0-3) and 1 (4-5, a short row), b is row 2
        # (6-9).  One window writes PFN 5-6: one page in row 1, one in row 2.
        log = parse.parse_text(synth.make_log([('a', 6, [(0, 6)]), ('b', 4, [(6, 4)])],
                                              [(100, [5, 6], [])]))
        hm = plot.heatmap_bins(log, row_pages=4)
        self.assertEqual(hm.counts.tolist(), [[0, 1, 1]])
        self.assertEqual(hm.seg_row.tolist(), [0, 2, 3])

    def test_one_page_in_a_big_log(self):
        # 4096 pages in two segments of 2048 with a hole between them, at
        # PFN 0 and 0x100000; 10 windows, one page written, PFN 0x100000 +
        # 1000, in window 7.  At most 600 rows: 8 pages a row (512 rows; 4
        # would need 1024).  At most 4 columns: 3 windows a column, window 7
        # in column 2; the page in row 256 + 1000 // 8 = 381.
        windows = empty_windows(10, 100)
        windows[6] = (700, [0x100000 + 1000], [])
        log = parse.parse_text(synth.make_log([('ram', 4096, [(0, 2048), (0x100000, 2048)])],
                                              windows))
        hm = plot.heatmap_bins(log, max_cols=4)
        self.assertEqual((hm.row_pages, hm.windows_per_col), (8, 3))
        self.assertEqual(hm.counts.shape, (4, 512))
        self.assertEqual(np.argwhere(hm.counts).tolist(), [[2, 381]])
        self.assertEqual(int(hm.counts.sum()), 1)
        self.assertEqual(hm.t_edges_ms.tolist(), [0, 300, 600, 900, 1000])


def check_png(test, path):
    with open(path, 'rb') as f:
        data = f.read()
    test.assertEqual(data[:8], PNG_MAGIC, path)
    test.assertGreater(len(data), 10000, path)
    # not a blank picture: many colours
    import matplotlib.image
    img = (matplotlib.image.imread(path) * 255).astype(np.uint32)
    packed = img[..., 0] << 16 | img[..., 1] << 8 | img[..., 2]
    test.assertGreater(len(np.unique(packed)), 20, path)


def check_svg(test, path):
    test.assertGreater(os.path.getsize(path), 10000, path)
    root = ET.parse(path).getroot()
    test.assertEqual(root.tag, SVG_ROOT, path)
    test.assertTrue(root.findall('.//{http://www.w3.org/2000/svg}text')
                    or root.findall('.//{http://www.w3.org/2000/svg}path'), path)


class Figures(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.log = parse.parse_text(small_log())
        self.space = pages.PageSpace(self.log)
        self.res = summary.summarise(self.log, self.space)

    def tearDown(self):
        self.tmp.cleanup()

    def check(self, paths, name):
        self.assertEqual(sorted(os.path.basename(p) for p in paths),
                         [f'{name}.png', f'{name}.svg'])
        for p in paths:
            (check_png if p.endswith('.png') else check_svg)(self, p)

    def test_heatmap(self):
        self.check(plot.plot_heatmap(self.log, 't.log', self.dir, ['png', 'svg']), 'heatmap')

    def test_working_set(self):
        self.check(plot.plot_working_set(self.log, self.res, 't.log', self.dir, ['png', 'svg']),
                   'working-set')

    def test_dirty_per_window(self):
        self.check(plot.plot_dirty(self.log, self.res, 't.log', self.dir, ['png', 'svg']),
                   'dirty-per-window')

    def test_migration(self):
        tr = simulate.Trace(self.log, self.space)
        preds = []
        for bw in (1e5, 1e7):
            p = simulate.simulate(tr, simulate.Params(max_bandwidth=bw, series=True))
            p.update(bandwidth=f'{bw:g} B/s', bandwidth_bytes_s=bw, downtime_limit_s=0.3)
            preds.append(p)
        self.res['prediction'] = preds
        self.check(plot.plot_migration(self.log, self.res, 't.log', self.dir, ['png', 'svg'],
                                       trace_s=0.4), 'migration')

    def test_no_series_no_migration_figure(self):
        self.assertEqual(plot.plot_migration(self.log, self.res, 't.log', self.dir, ['png']), [])


class CommandLine(unittest.TestCase):
    def test_plot_dir(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, 't.log')
            with open(log, 'w') as f:
                f.write(small_log())
            out = os.path.join(d, 'pics')
            r = subprocess.run([*REPORT, log, '--plot-dir', out,
                                '--bandwidth', '1G,10G'],
                               check=True, capture_output=True, text=True)
            names = ['heatmap', 'working-set', 'dirty-per-window', 'migration']
            self.assertEqual(sorted(os.listdir(out)),
                             sorted(f'{n}.{x}' for n in names for x in ('png', 'svg')))
            for n in names:
                check_png(self, os.path.join(out, n + '.png'))
                check_svg(self, os.path.join(out, n + '.svg'))
                self.assertIn(f'wrote {out}/{n}.png', r.stderr)
            self.assertIn('pre-copy prediction', r.stdout)
            # --plot-format
            out2 = os.path.join(d, 'svg-only')
            subprocess.run([*REPORT, log, '--plot-dir', out2,
                            '--plot-format', 'svg', '--bandwidth', '1G'],
                           check=True, capture_output=True)
            self.assertEqual(sorted(os.listdir(out2)), sorted(f'{n}.svg' for n in names))
            r = subprocess.run([*REPORT, log, '--plot-dir', out2,
                                '--plot-format', 'gif'], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("bad format 'gif'", r.stderr)


if __name__ == '__main__':
    unittest.main()
