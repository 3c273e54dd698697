# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report --csv-dir: the CSV files, every value worked out by hand from
the synthetic logs below."""

import csv
import os
import subprocess
import tempfile
import unittest

from .helpers import ITER, NORMAL, PAGE, L_DEFAULT, REPORT, empty_windows, synth


# Blocks: "ram", 16 pages at PFN 0-7 and 0x100-0x107; "rom", 4 pages at PFN
# 0x200-0x203; "nv", 2 pages never mapped.  sync-us 10, harvest-us 20, and
# zero-us 1 per zero page (synth's defaults).  Windows:
#   1, t=100 ms: PFN 0-3, of them PFN 2 zero
#   2, t=250 ms: PFN 2-5, 0x100 and nv:1, of them 0x100 and nv:1 zero
#   3, t=300 ms: nothing
#   4, t=400 ms: PFN 7, 0x107, 0x200, 0x203
BLOCKS = [('ram', 16, [(0, 8), (0x100, 8)]), ('rom', 4, [(0x200, 4)]), ('nv', 2, [])]
WINDOWS = [(100, [0, 1, 2, 3], [2]),
           (250, [2, 3, 4, 5, 0x100, ('nv', 1)], [('nv', 1), 0x100]),
           (300, [], []),
           (400, [7, 0x107, 0x200, 0x203], [])]
BASE_UNMAPPED = [('nv', 0), ('nv', 1)]


def small_log(version=2):
    return synth.make_log(BLOCKS, WINDOWS, baseline_unmapped=BASE_UNMAPPED, version=version)


def bt_report(text, *args):
    """Run bt-report on the log text with --csv-dir; return {name: rows}."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 't.log')
        with open(path, 'w') as f:
            f.write(text)
        out = os.path.join(d, 'csv')
        subprocess.run([*REPORT, path, '--csv-dir', out, *args],
                       check=True, capture_output=True, text=True)
        tables = {}
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), newline='') as f:
                tables[name] = list(csv.DictReader(f))
        return tables


class Windows(unittest.TestCase):
    def test_v2(self):
        t = bt_report(small_log(), '--bandwidth', '1G')
        want = [  # n, t_ms, length_ms, dirty, unmapped, zero, sync_us, harvest_us, zero_us
            (1, 100, 100, 4, 0, 1, 10, 20, 1),
            (2, 250, 150, 6, 1, 2, 10, 20, 2),
            (3, 300, 50, 0, 0, 0, 10, 20, 0),
            (4, 400, 100, 4, 0, 0, 10, 20, 0)]
        rows = t['windows.csv']
        self.assertEqual(list(rows[0]), ['n', 't_ms', 'length_ms', 'dirty', 'unmapped', 'zero',
                                         'sync_us', 'harvest_us', 'zero_us'])
        self.assertEqual([tuple(float(v) for v in r.values()) for r in rows],
                         [tuple(float(v) for v in w) for w in want])

    def test_v1_has_no_zero(self):
        rows = bt_report(small_log(version=1), '--bandwidth', '1G')['windows.csv']
        self.assertEqual([r['dirty'] for r in rows], ['4', '6', '0', '4'])
        self.assertEqual({r['zero'] for r in rows} | {r['zero_us'] for r in rows}, {''})

    def test_working_set(self):
        # k=1: (4+6+0+4)/4 = 3.5
        # k=2: {1,2}: PFN 0-5, 0x100, nv:1 = 8; {2,3}: 6; {3,4}: 4   -> 18/3
        # k=3: {1,2,3}: 8; {2,3,4}: 6 + 4 = 10                        -> 9
        # k=4: 12 distinct pages
        rows = bt_report(small_log(), '--bandwidth', '1G')['working-set.csv']
        want = [3.5, 6.0, 9.0, 12.0]
        self.assertEqual([int(r['windows']) for r in rows], [1, 2, 3, 4])
        for r, k, d in zip(rows, range(1, 5), want):
            self.assertAlmostEqual(float(r['span_ms']), 100.0 * k)
            self.assertAlmostEqual(float(r['distinct_pages']), d)
            self.assertAlmostEqual(float(r['distinct_mib']), d * PAGE / 2 ** 20)


class Rounds(unittest.TestCase):
    """test_simulate.py's RateLimit migration, through the
    command line: 128 pages, nothing written, syncs free (sync-us 0),
    max-bandwidth 1e6 bytes/s (32 pages per 100 ms window), the link at
    1e9 bytes/s, downtime limits 100 and 50 ms.
      100 ms: windows 0, 1, 2 send pages 0-31, 32-63, 64-95; at 300 ms the
              32 pages left (131072 B) are below the threshold, 32 pages'
              bytes over 100 ms x 100 ms (131346 B): sync (nothing found),
              stop; the 32 pages go in the downtime.
      50 ms:  the threshold is half that; window 3 sends the last 32 pages,
              at 400 ms the sync finds nothing: stop with nothing left."""

    def setUp(self):
        text = synth.make_log([('ram', 128, [(0, 128)])], empty_windows(10, 100), sync_us=0)
        self.t = bt_report(text, '--bandwidth', '1000000B/s', '--downtime-limit', '100,50',
                           '--link-bandwidth', '1000MB/s', '--page-cpu-us', '0',
                           '--setup-time', '0', '--device-state', '0', '--accel', 'tcg',
                           '--no-search')
        self.first = 32 * NORMAL + 4 + ITER      # with the block name "ram"
        self.next = 32 * NORMAL + ITER

    def test_rounds(self):
        rows = self.t['rounds.csv']
        want = [
            {'bandwidth': '1000000 B/s', 'bandwidth_bytes_s': 1e6, 'downtime_limit_ms': 100,
             'round': 0, 'start_s': 0, 'end_s': 0.3, 'length_s': 0.3, 'pages': 96,
             'normal_pages': 96, 'zero_pages': 0, 'bytes': self.first + 2 * self.next,
             'dirty_pages': 0, 'pending_bytes': 32 * PAGE, 'threshold_bytes': self.next},
            {'bandwidth': '1000000 B/s', 'bandwidth_bytes_s': 1e6, 'downtime_limit_ms': 50,
             'round': 0, 'start_s': 0, 'end_s': 0.4, 'length_s': 0.4, 'pages': 128,
             'normal_pages': 128, 'zero_pages': 0, 'bytes': self.first + 3 * self.next,
             'dirty_pages': 0, 'pending_bytes': 0, 'threshold_bytes': self.next / 2}]
        self.assertEqual(len(rows), 2)
        for got, exp in zip(rows, want):
            self.assertEqual(set(got), set(exp))
            self.assertEqual(got['bandwidth'], exp['bandwidth'])
            for k, v in exp.items():
                if k != 'bandwidth':
                    self.assertAlmostEqual(float(got[k]), v, places=9, msg=k)

    def test_predictions(self):
        rows = self.t['predictions.csv']
        self.assertEqual([r['converges'] for r in rows], ['true', 'true'])
        self.assertEqual([r['rounds'] for r in rows], ['1', '1'])
        self.assertAlmostEqual(float(rows[0]['total_s']), 0.3 + (32 * NORMAL + 8) / L_DEFAULT)
        self.assertAlmostEqual(float(rows[0]['switchover_s']), 0.3)
        self.assertAlmostEqual(float(rows[1]['total_s']), 0.4 + 8 / L_DEFAULT)
        self.assertEqual(rows[0]['why'], '')

    def test_migration_series(self):
        rows = [r for r in self.t['migration.csv'] if r['downtime_limit_ms'] == '100']
        want = [(0.0, 128, 'start'),
                (0.0, 128, 'iterate'), (self.first / L_DEFAULT, 96, 'sent'),
                (0.1, 96, 'iterate'), (0.1 + self.next / L_DEFAULT, 64, 'sent'),
                (0.2, 64, 'iterate'), (0.2 + self.next / L_DEFAULT, 32, 'sent'),
                (0.3, 32, 'sync'), (0.3, 32, 'stop'), (0.3, 32, 'final-sync'),
                (0.3 + (32 * NORMAL + 8) / L_DEFAULT, 0, 'done')]
        self.assertEqual([(int(r['pending_bytes']), r['event']) for r in rows],
                         [(p * PAGE, e) for _, p, e in want])
        for r, (t, _, _) in zip(rows, want):
            self.assertAlmostEqual(float(r['t_s']), t, places=12)


if __name__ == '__main__':
    unittest.main()
