# SPDX-License-Identifier: GPL-2.0-or-later
"""RAM added and removed, and migration blockers found, during a trace:
the added, removed and blocked lines (A, R, B records), as parse, binlog,
model and bt-report read them."""

import json
import os
import subprocess
import unittest

from .helpers import REPORT, pages, parse
from btrace import binlog

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')

# pc.ram at PFN 0-7; a DIMM of 8 pages added at PFN 100-107 by the sync of
# iteration 1, written in window 2 (PFN 101, 102, and its page 7 while
# unmapped), removed by the sync of iteration 3; the boot RAM's page 3 is
# written in window 2 too.  Blockers: two at the start, one found at 1.
TEXT = """bitmap-trace v2
meta qemu=10.0.13 accel=qtest page-size=4096 period-ms=100 iterations=3 start=2026-01-01T00:00:00.000000Z
blocked reason=first reason
blocked reason=second reason
block name=ram pages=8 map=0+8
iter n=0 t-ms=0.000 dirty=8 unmapped=0 zero=8 sync-us=1 harvest-us=1 zero-us=1
pfns 0-7
zero 0-7
iter n=1 t-ms=100.000 dirty=0 unmapped=0 zero=0 sync-us=1 harvest-us=1 zero-us=1
added name=dimm pages=8 zero=6 map=100+7
blocked reason=a device plugged
iter n=2 t-ms=200.000 dirty=4 unmapped=1 zero=0 sync-us=1 harvest-us=1 zero-us=1
pfns 3 101-102
unmapped dimm:7
iter n=3 t-ms=300.000 dirty=0 unmapped=0 zero=0 sync-us=1 harvest-us=1 zero-us=1
removed name=dimm
end status=completed iterations=3
"""


def binary_twin():
    """TEXT as QEMU would write it in the binary format."""
    w = binlog.Writer()
    w.header('10.0.13', 'qtest', 4096, 100, 3, '2026-01-01T00:00:00.000000Z',
             [('ram', 8, [(0, 8, 0)])], blocked='first reason\nsecond reason')
    w.iteration(0, 0, 8, 0, 8, 1, 1, 1, {0: (range(8), range(8))})
    w.iteration(1, 100000, 0, 0, 0, 1, 1, 1, {})
    w.added('dimm', 8, 6, [(0, 7, 0x100)])
    w.blocked('a device plugged')
    w.iteration(2, 200000, 4, 1, 0, 1, 1, 1, {0: ([3], []), 1: ([1, 2, 7], [])})
    w.iteration(3, 300000, 0, 0, 0, 1, 1, 1, {})
    w.removed(1)
    w.end('completed', 3)
    return bytes(w.data)


class Changes(unittest.TestCase):
    def check(self, log):
        self.assertEqual(log.blocked_reasons, ['first reason', 'second reason'])
        self.assertEqual(log.blocked, 'first reason')
        self.assertEqual([it.blocked for it in log.iters], [[], ['a device plugged'], [], []])
        self.assertEqual([it.added for it in log.iters], [[], ['dimm'], [], []])
        self.assertEqual([it.removed for it in log.iters], [[], [], [], ['dimm']])
        self.assertEqual(len(log.blocks), 1)
        (dimm,) = log.added
        self.assertEqual((dimm['name'], dimm['pages'], dimm['zero'], dimm['map']),
                         ('dimm', 8, 6, [(0x100, 7)]))
        self.assertEqual((dimm['added'], dimm['removed']), (1, 3))
        self.assertEqual(log.iters[2].pfns, [(3, 3), (0x101, 0x102)])
        self.assertEqual(log.iters[2].unmapped_pages, [('dimm', 7, 7)])

    def test_text(self):
        self.check(parse.parse_text(TEXT))

    def test_reference_parser(self):
        self.check(parse.parse_text_ref(TEXT))

    def test_binary(self):
        data = binary_twin()
        self.assertEqual(binlog.to_text(data), TEXT)
        path = os.path.join(DATA, '..', 'hotplug-twin.btl')
        try:
            with open(path, 'wb') as f:
                f.write(data)
            self.check(parse.parse(path))       # the numpy decoder
        finally:
            os.unlink(path)

    def test_model_leaves_added_ram_out(self):
        log = parse.parse_text(TEXT)
        space = pages.PageSpace(log)
        self.assertEqual(space.npages, 8)
        # window 2: the boot RAM's page 3 only
        self.assertEqual(space.pages(log.iters[2]).tolist(), [3])
        self.assertTrue(any('RAM was added' in w for w in space.warnings))

    def test_invalid(self):
        cases = [
            (TEXT.replace('removed name=dimm', 'removed name=nodimm'), 'removed'),
            (TEXT.replace('iter n=3 t-ms=300.000', 'iter n=3 t-ms=300.000')
             .replace('removed name=dimm\n', 'removed name=dimm\nunmapped dimm:0\n'),
             'unmapped line after the removed line'),
            (TEXT.replace('added name=dimm pages=8 zero=6', 'added name=dimm pages=8'),
             'expected "added'),
            (TEXT.replace('added name=dimm pages=8 zero=6', 'added name=ram pages=8 zero=6'),
             'listed twice'),
            (TEXT.replace('block name=ram pages=8 map=0+8\n',
                          'block name=ram pages=8 map=0+8\nblocked reason=late\n'),
             'blocked line between'),
            (TEXT.replace('added name=dimm pages=8 zero=6 map=100+7\nblocked reason=a device '
                          'plugged\n', 'blocked reason=a device plugged\n'
                          'added name=dimm pages=8 zero=6 map=100+7\n'),
             'added line after the blocked line'),
            (TEXT.replace('zero=6 map', 'zero=9 map'), 'more zero pages'),
        ]
        for text, msg in cases:
            for parser in (parse.parse_text, parse.parse_text_ref):
                with self.assertRaises(parse.LogError, msg=msg) as cm:
                    parser(text)
                self.assertIn(msg, str(cm.exception))

    def test_a_unmapped_page_of_a_removed_block(self):
        text = TEXT.replace('iter n=3 t-ms=300.000 dirty=0 unmapped=0',
                            'iter n=3 t-ms=300.000 dirty=0 unmapped=0')
        text = text.replace('end status=completed iterations=3\n',
                            'iter n=4 t-ms=400.000 dirty=1 unmapped=1 zero=0 sync-us=1 '
                            'harvest-us=1 zero-us=1\nunmapped dimm:0\n'
                            'end status=completed iterations=4\n')
        with self.assertRaisesRegex(parse.LogError, 'does not name a block'):
            parse.parse_text(text)


class FromQEMU(unittest.TestCase):
    """Logs QEMU wrote (qtest accelerator): a pc-dimm of 16 MiB plugged, with
    a rocker switch (not migratable), then ejected and its backend deleted."""

    def check(self, log):
        (dimm,) = log.added
        self.assertEqual((dimm['name'], dimm['pages'], dimm['zero']), ('hp0', 4096, 4096))
        self.assertEqual(dimm['map'], [(0x100000, 4096)])
        self.assertIsNotNone(dimm['removed'])
        self.assertGreater(dimm['removed'], dimm['added'])
        found = [(it.n, r) for it in log.iters for r in it.blocked]
        self.assertEqual(found, [(dimm['added'], 'non-migratable device: 0000:00:02.0/rocker')])
        self.assertEqual(log.blocked_reasons, [])

    def test_text(self):
        self.check(parse.parse(os.path.join(DATA, 'hotplug.txt')))

    def test_binary(self):
        log = parse.parse(os.path.join(DATA, 'hotplug.btl'))
        self.assertTrue(log.binary)
        self.check(log)

    def test_bt_report(self):
        out = subprocess.run([*REPORT, os.path.join(DATA, 'hotplug.btl'), '--json',
                              '--bandwidth', '128MiB/s', '--downtime-limit', '300'],
                             check=True, capture_output=True, text=True).stdout
        doc = json.loads(out)
        self.assertEqual([b['name'] for b in doc['added_blocks']], ['hp0'])
        self.assertEqual(doc['blocked'][0]['reason'],
                         'non-migratable device: 0000:00:02.0/rocker')
        self.assertTrue(any('RAM was added' in w for w in doc['warnings']))
        self.assertTrue(doc['prediction'][0]['converges'])


if __name__ == '__main__':
    unittest.main()
