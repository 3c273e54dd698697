# SPDX-License-Identifier: GPL-2.0-or-later
"""bt-trace's pure parts: its command line, the QMP it sends, its progress."""

import json
import unittest

from btrace import trace


class Args(unittest.TestCase):
    def test_defaults_and_report_options(self):
        args, rest = trace.parse_args(['vm1', '--iterations', '50', '--bandwidth', '1G',
                                       '--downtime-limit', '300', '-c', 'qemu:///session'])
        self.assertEqual(args.domain, 'vm1')
        self.assertEqual(args.iterations, 50)
        self.assertEqual(args.period, 100)
        self.assertEqual(args.format, 'text')
        self.assertEqual(args.connect, 'qemu:///session')
        self.assertEqual(args.output, 'vm1-dirty.log')
        # what bt-trace does not know goes to bt-report, in order
        self.assertEqual(rest, ['--bandwidth', '1G', '--downtime-limit', '300'])

    def test_abbreviations_are_bt_reports(self):
        # --p could be --period or --progress here, --plot-dir there
        args, rest = trace.parse_args(['vm1', '--plot', 'figs', '--per', '5'])
        self.assertEqual(args.period, 100)
        self.assertEqual(rest, ['--plot', 'figs', '--per', '5'])

    def test_bad_values(self):
        for bad in (['vm1', '--iterations', '0'], ['vm1', '--period', '0'],
                    ['vm1', '--format', 'xml'], []):
            with self.assertRaises(SystemExit, msg=bad):
                trace.parse_args(bad)


class Qmp(unittest.TestCase):
    def test_start(self):
        args, _ = trace.parse_args(['vm1', '--format', 'binary', '--period', '50',
                                    '--iterations', '7'])
        self.assertEqual(json.loads(trace.start_command(3, args)),
                         {'execute': 'bitmap-trace',
                          'arguments': {'state': True, 'filename': '/dev/fdset/3',
                                        'format': 'binary', 'iterations': 7,
                                        'period': 50}})
        self.assertEqual(json.loads(trace.qmp('query-fdsets')), {'execute': 'query-fdsets'})

    def test_free_fdset(self):
        self.assertEqual(trace.free_fdset([]), 0)
        self.assertEqual(trace.free_fdset([{'fdset-id': 0}, {'fdset-id': 2}]), 1)
        self.assertEqual(trace.free_fdset([{'fdset-id': 1}, {'fdset-id': 0}]), 2)


class ProgressLine(unittest.TestCase):
    def test_accumulates_only_new_measured_iterations(self):
        p = trace.Progress()
        self.assertEqual(p.since, 1)
        # replies to since=1, then since=3; a repeated iteration is not counted twice
        p.update({'status': 'active', 'iterations': 10, 'page-size': 4096,
                  'completed-iterations': 2, 'elapsed-ms': 200, 'since': 1,
                  'dirty-pages': [256, 256], 'last-dirty-pages': 256,
                  'distinct-pages': 512})
        self.assertEqual((p.dirty, p.since), (512, 3))
        p.update({'status': 'active', 'iterations': 10, 'page-size': 4096,
                  'completed-iterations': 4, 'elapsed-ms': 400, 'since': 2,
                  'dirty-pages': [256, 512, 512], 'last-dirty-pages': 512,
                  'distinct-pages': 1024})
        self.assertEqual((p.dirty, p.since), (1536, 5))
        # 1536 pages of 4 KiB in 0.4 s: 15 MiB/s
        self.assertEqual(p.line(), 'active: round 4/10, 0.4 s, dirty rate 15.0 MiB/s '
                                   '(last round 2.0 MiB), distinct 4.0 MiB')

    def test_before_the_first_round(self):
        p = trace.Progress()
        p.update({'status': 'active', 'iterations': 10, 'completed-iterations': 0,
                  'elapsed-ms': 0, 'since': 1, 'dirty-pages': []})
        self.assertEqual(p.line(), 'active: round 0/10')
        self.assertEqual(p.since, 1)


if __name__ == '__main__':
    unittest.main()
