# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-report's command line (python3 -m btrace): the JSON prediction others rely on."""

import json
import subprocess
import tempfile
import unittest

from .helpers import ITER, NORMAL, REPORT, empty_windows, setup_bytes, synth



class Json(unittest.TestCase):
    def report(self, text, *args):
        with tempfile.NamedTemporaryFile('w', suffix='.log') as f:
            f.write(text)
            f.flush()
            out = subprocess.run([*REPORT, f.name, '--json', *args],
                                 check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def test_prediction_fields(self):
        # 64 pages, nothing written, sync-us=10 in every iteration: a sync
        # costs 10 us.  At 128 MiB/s the whole RAM (262678 bytes with the
        # block name and the iterate overhead) fits in the first window's
        # budget (13421772 bytes); nothing is pending then: the VM stops.
        # total = setup sync + bulk + final sync + EOS, the link at 1e9 B/s.
        text = synth.make_log([('ram', 64, [(0, 64)])], empty_windows(10, 100))
        r = self.report(text, '--bandwidth', '128MiB/s', '--downtime-limit', '300,100',
                        '--link-bandwidth', '1000MB/s', '--page-cpu-us', '0',
                        '--setup-time', '0', '--device-state', '0')
        self.assertEqual(len(r['prediction']), 2)
        bulk = 64 * NORMAL + 4 + ITER
        for p, dl in zip(r['prediction'], (0.3, 0.1)):
            self.assertEqual(p['downtime_limit_s'], dl)
            self.assertEqual(p['bandwidth_bytes_s'], 128 * 2 ** 20)
            self.assertTrue(p['converges'])
            self.assertEqual(p['rounds'], 1)
            self.assertAlmostEqual(p['total_s'], 2e-5 + (bulk + 8) / 1e9, places=12)
            self.assertAlmostEqual(p['downtime_s'], 1e-5 + 8 / 1e9, places=12)
            self.assertEqual(p['sent_bytes'], setup_bytes(['ram']) + bulk + 8)
            self.assertFalse(p['zero_pages_unknown'])
        self.assertEqual(r['format'], 2)
        self.assertEqual(r['simulation']['clear_bitmap_shift'], 18)

    def test_start_phases(self):
        # 20 windows of 100 ms: the trace is 2 s; by default each prediction
        # is run from 5 points of it, j x 0.618... of the way in (mod 1),
        # and the prediction is the median run by total time (one that does
        # not converge counting as the longest), with the spread of all.
        text = synth.random_log(pages=2048, windows=20, hot=300, sprinkle=50, seed=5)
        args = ('--bandwidth', '8MB/s,64MB/s,20MB/s', '--downtime-limit', '50',
                '--link-bandwidth', '1000MB/s', '--no-search')
        r = self.report(text, *args)
        golden = (5 ** 0.5 - 1) / 2
        for p in r['prediction']:
            sp = p['start_phases']
            self.assertEqual(sp['count'], 5)
            self.assertEqual(len(sp['runs']), 5)
            for j, got in enumerate(sp['start_s']):
                self.assertAlmostEqual(got, (j * golden) % 1 * 2.0, places=9)
            self.assertAlmostEqual(p['trace_start_s'], sp['start_s'][sp['picked']], places=12)
            key = [(0, x['total_s']) if x['converges'] else (1, 0) for x in sp['runs']]
            ranked = sorted(range(5), key=lambda i: (key[i], i))
            self.assertEqual(sp['picked'], ranked[2])
            mine = sp['runs'][sp['picked']]
            self.assertEqual((mine['converges'], mine['total_s'], mine['rounds']),
                             (p['converges'], p['total_s'], p['rounds']))
            conv = [x for x in sp['runs'] if x['converges']]
            self.assertEqual(sp['converges'], len(conv))
            if conv:
                self.assertEqual(sp['total_s'], [min(x['total_s'] for x in conv),
                                                 max(x['total_s'] for x in conv)])
                self.assertEqual(sp['rounds'], [min(x['rounds'] for x in conv),
                                                max(x['rounds'] for x in conv)])
            else:
                self.assertIsNone(sp['total_s'])
        # 8 MB/s converges from no start point, 64 MB/s from every one
        self.assertEqual([p['start_phases']['converges'] for p in r['prediction']][:2], [0, 5])
        # --start-phases 1: from the trace's start only
        r1 = self.report(text, *args, '--start-phases', '1')
        for p in r1['prediction']:
            self.assertNotIn('start_phases', p)
            self.assertEqual(p['trace_start_s'], 0.0)
        with tempfile.NamedTemporaryFile('w', suffix='.log') as f:
            f.write(text)
            f.flush()
            bad = subprocess.run([*REPORT, f.name, '--start-phases', '0'],
                                 capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn('--start-phases must be at least 1', bad.stderr)

    def test_v1_says_it_is_pessimistic(self):
        text = synth.make_log([('ram', 64, [(0, 64)])], empty_windows(3, 100), version=1)
        r = self.report(text, '--bandwidth', '128MiB/s')
        self.assertTrue(r['prediction'][0]['zero_pages_unknown'])
        self.assertTrue(r['simulation']['zero_pages_unknown'])
        self.assertTrue(any('no zero-page information' in w for w in r['warnings']))

    def test_calibration_file(self):
        # The host costs from a calibration (per accel for setup and
        # completion); an option overrides one figure.  64 normal pages,
        # TCG log, nothing written: total = setup 3 ms + the setup sync
        # (10 us) + bulk at the link (2e9 B/s) + EOS + completion 4 ms (the
        # destination, at 1 us a page, keeps up: a page leaves the source
        # every 2.05 us).
        text = synth.make_log([('ram', 64, [(0, 64)])], empty_windows(10, 100))
        cal = {'link_bandwidth': 2e9, 'page_cpu_s': 0.0, 'dest_first_page_s': 1e-6,
               'dest_page_s': 1e-6, 'dest_zero_s': 0.0, 'dest_zero_first_s': 0.0,
               'socket_buffer_bytes': 1 << 20, 'zero_page_s': 0.0,
               'setup_s': {'tcg': 0.003, 'kvm': 0.05},
               'completion_s': {'tcg': 0.004, 'kvm': 0.02}, 'device_state_bytes': 500}
        with tempfile.NamedTemporaryFile('w', suffix='.json') as f:
            json.dump(cal, f)
            f.flush()
            r = self.report(text, '--bandwidth', '128MiB/s', '--calibration', f.name)
            p = r['prediction'][0]
            bulk = 64 * NORMAL + 4 + ITER
            self.assertAlmostEqual(p['total_s'], 0.003 + 1e-5 + bulk / 2e9 + 8 / 2e9
                                   + 0.004, places=12)
            self.assertAlmostEqual(p['downtime_s'], 8 / 2e9 + 0.004, places=12)
            self.assertEqual(p['sent_bytes'], setup_bytes(['ram']) + bulk + 8 + 500)
            self.assertEqual(r['simulation']['host_costs_from']['link_bandwidth'], 'calibration')
            r = self.report(text, '--bandwidth', '128MiB/s', '--calibration', f.name,
                            '--completion-time', '1', '--accel', 'kvm')
            p = r['prediction'][0]
            self.assertAlmostEqual(p['setup_s'], 0.05, places=12)
            self.assertAlmostEqual(p['downtime_s'], 8 / 2e9 + 0.001, places=12)
            self.assertEqual(r['simulation']['host_costs_from']['completion_s'], 'option')


if __name__ == '__main__':
    unittest.main()
