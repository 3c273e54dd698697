# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.parse's fast path (numpy) against the reference parser.

parse.parse() and parse.parse_text() read a log through a fast path and
fall back to parse.parse_text_ref(), the line-by-line parser, on anything
unusual.  The reference for a binary log is binlog.to_text() read by
parse_text_ref().  These tests check that both give the same Log, or the
same error, on tricky logs: ranges split over lines in every way, several
blocks, unmapped and zero pages, v1 logs, long and odd numbers, truncated
logs, both binary encodings (runs and bitmaps), remaps, and random
mutations of valid logs.
"""

import os
import random
import tempfile
import unittest

import numpy as np

from .helpers import parse, synth
from btrace import binlog

FIELDS = ('n', 't_ms', 'dirty', 'unmapped', 'sync_us', 'harvest_us', 'lineno', 'zero',
          'zero_us', 'pfns', 'zero_pfns', 'unmapped_pages', 'unmapped_zero', 'untraced',
          'pfn_count', 'unmapped_count', 'zero_count')


def outcome(fn, *args):
    """('ok', the Log as plain data) or ('error', the message)."""
    try:
        log = fn(*args)
    except parse.LogError as e:
        return ('error', str(e))
    return ('ok', {
        'version': log.version, 'meta': log.meta, 'blocked': log.blocked,
        'blocks': log.blocks, 'end': log.end, 'map': log.map, 'binary': log.binary,
        'iters': [{k: getattr(it, k) for k in FIELDS} for it in log.iters]})


def ref_text(text):
    return parse.parse_text_ref(text)


def ref_file(data):
    """What parse.parse() gave before the fast path: read_text, then the
    line-by-line parser."""
    with tempfile.NamedTemporaryFile(suffix='.log') as f:
        f.write(data)
        f.flush()
        text, binary = parse.read_text(f.name)
    log = parse.parse_text_ref(text)
    log.binary = binary
    return log


def fast_file(data):
    with tempfile.NamedTemporaryFile(suffix='.log') as f:
        f.write(data)
        f.flush()
        return parse.parse(f.name)


def used_fast(data):
    """Did parse.parse() take the fast path (no fallback)?"""
    with tempfile.NamedTemporaryFile(suffix='.log') as f:
        f.write(data)
        f.flush()
        return parse.parse(f.name).all_pfns is not None


# Two blocks, ram in two PFN segments, rom unmapped; v2 with zero pages.
HEAD = """bitmap-trace v2
meta qemu=10.0.13 accel=kvm page-size=4096 period-ms=100 iterations=3 start=2026-01-01T00:00:00.000000Z
block name=ram pages=16 map=0+8,100+8
block name=rom pages=4 map=
iter n=0 t-ms=0.000 dirty=20 unmapped=4 zero=7 sync-us=10 harvest-us=20 zero-us=30
"""
BASE_LINES = ['pfns 0-7 100-107', 'unmapped rom:0-3', 'zero 4-7 106', 'unmapped-zero rom:2-3']
REST = """iter n=1 t-ms=100.012 dirty=3 unmapped=1 zero=2 sync-us=11 harvest-us=21 zero-us=5
pfns 1-2
unmapped rom:0
zero 2
unmapped-zero rom:0
iter n=2 t-ms=200.000 dirty=0 unmapped=0 zero=0 sync-us=10 harvest-us=20 zero-us=0
iter n=3 t-ms=300.999 dirty=5 unmapped=1 zero=1 sync-us=1 harvest-us=2 zero-us=3
pfns 0
pfns 2
pfns 100 107
unmapped ram:f
zero 107
end status=completed iterations=3
"""
LOG = HEAD + '\n'.join(BASE_LINES) + '\n' + REST


def split_ranges(line, cuts):
    """A pfns/zero line split into lines at the given token indexes."""
    word, toks = line.split(' ', 1)[0], line.split(' ')[1:]
    out, prev = [], 0
    for c in sorted(set(cuts)) + [len(toks)]:
        if c > prev:
            out.append(word + ' ' + ' '.join(toks[prev:c]))
            prev = c
    return out


class Text(unittest.TestCase):
    def same(self, text):
        want = outcome(ref_text, text)
        self.assertEqual(outcome(parse.parse_text, text), want, text)
        self.assertEqual(outcome(fast_file, text.encode()), outcome(ref_file, text.encode()))
        return want

    def test_valid_log_takes_the_fast_path(self):
        self.assertEqual(self.same(LOG)[0], 'ok')
        self.assertTrue(used_fast(LOG.encode()))

    def test_ranges_split_over_lines(self):
        toks = ' '.join(f'{2 * k:x}' for k in range(300))     # 300 single pages
        pages = 600
        for cuts in ([], [1], [255, 256], list(range(300)), [299], [7, 100, 256]):
            text = (f'bitmap-trace v1\nmeta qemu=x accel=tcg page-size=4096 period-ms=10 '
                    f'iterations=1 start=s\nblock name=ram pages={pages} map=0+{pages}\n'
                    f'iter n=0 t-ms=0.000 dirty={pages} unmapped=0 sync-us=1 harvest-us=1\n'
                    f'pfns 0-{pages - 1:x}\n'
                    f'iter n=1 t-ms=10.000 dirty=300 unmapped=0 sync-us=1 harvest-us=1\n' +
                    '\n'.join(split_ranges('pfns ' + toks, cuts)) +
                    '\nend status=completed iterations=1\n')
            self.assertEqual(self.same(text)[0], 'ok', cuts)
            self.assertTrue(used_fast(text.encode()))

    def test_empty_and_odd_range_lines(self):
        for a, b in (('pfns 1-2', 'pfns\npfns 1-2'),          # an empty pfns line: valid
                     ('pfns 1-2', 'pfns 1-2\npfns'),
                     ('pfns 1-2', 'pfns 1\npfns 2'),           # adjacent across lines
                     ('pfns 1-2', 'pfns 1-2 '),                # a trailing space
                     ('pfns 1-2', 'pfns  1-2'),
                     ('pfns 1-2', 'pfns 1--2'),
                     ('pfns 1-2', 'pfns 1-2-3'),
                     ('pfns 1-2', 'pfns 2-1'),
                     ('pfns 1-2', 'pfns 01-0002'),             # leading zeros: still hex
                     ('pfns 1-2', 'pfns 1-2\tx'),
                     ('pfns 1-2', 'pfns 1-2\r'),
                     ('pfns 1-2', 'pfns 1-2 3'),               # count wrong, not adjacent
                     ('pfns 1-2', 'pfns 1-A'),                 # uppercase
                     ('pfns 1-2', 'pfns 1-0000000000000002'),  # 16 digits
                     ('pfns 1-2', 'pfns 1-00000000000000000002'),
                     ('pfns 1-2', 'pfns 1-\u00e92'),
                     ('zero 2', 'zero 1'),                     # not among the pfns
                     ('zero 2', 'zero 2-3'),
                     ('zero 2', 'zero 2\nzero 2'),
                     ('pfns 100 107', 'pfns 100 1000000000'),  # not mapped
                     ('pfns 100 107', 'pfns 107 100'),         # not ascending
                     ('zero 107', 'zero 100'),
                     ('unmapped-zero rom:0', 'unmapped-zero rom:1')):
            text = LOG.replace(a, b, 1)
            self.assertNotEqual(text, LOG, a)
            self.same(text)

    def test_big_numbers(self):
        # PFNs of 9 to 15 hex digits take the other half of the word
        for first in (0xffffffff, 0x100000000, 0x123456789abc, 0xfffffffffffff, 0x7fffffffffffff):
            n = 40
            text = (f'bitmap-trace v1\nmeta qemu=x accel=tcg page-size=4096 period-ms=10 '
                    f'iterations=1 start=s\nblock name=ram pages={n} map=0+4,{first:x}+{n - 4}\n'
                    f'iter n=0 t-ms=0.000 dirty={n} unmapped=0 sync-us=1 harvest-us=1\n'
                    f'pfns 0-3 {first:x}-{first + n - 5:x}\n'
                    f'iter n=1 t-ms=10.000 dirty=4 unmapped=0 sync-us=1 harvest-us=1\n'
                    f'pfns 1 {first:x} {first + 2:x}-{first + 3:x}\n'
                    'end status=completed iterations=1\n')
            self.assertEqual(self.same(text)[0], 'ok', hex(first))

    def test_v1_and_versions(self):
        def pfn(p):
            return p if p < 32 else 0x1000 + p - 32
        v1 = synth.make_log([('a', 64, [(0, 32), (0x1000, 32)]), ('b', 8, [])],
                            [(10 * k, [pfn(i * 7 % 64) for i in range(k * 5)] + [('b', k % 8)], [])
                             for k in range(1, 6)],
                            baseline_unmapped=[('b', p) for p in range(8)], version=1)
        self.assertEqual(self.same(v1)[0], 'ok')
        self.assertTrue(used_fast(v1.encode()))
        for bad in ('bitmap-trace v3', 'bitmap-trace v0', 'bitmap-trace', 'bitmap-trace v2x'):
            self.same(v1.replace('bitmap-trace v1', bad, 1))
        # zero lines in a v1 log
        self.same(v1.replace('end ', 'zero 1\nend ', 1))

    def test_truncated(self):
        data = LOG
        for cut in (0, 1, 15, 16, len(HEAD) - 1, len(HEAD) + 5, len(data) // 2, len(data) - 1):
            self.same(data[:cut])
        # the end line cut off: valid (an unfinished trace)
        self.assertEqual(self.same(data[:data.index('end ')])[0], 'ok')

    def test_synthetic_logs(self):
        for seed in range(4):
            text = synth.random_log(pages=3000, windows=6, hot=50, sprinkle=300, seed=seed,
                                    version=1 + seed % 2)
            self.assertEqual(self.same(text)[0], 'ok')

    def test_random_mutations(self):
        rng = random.Random(9)
        chars = '0123456789abcdef -\nxz=:'
        for _ in range(400):
            s = list(LOG)
            for _ in range(rng.randint(1, 3)):
                k = rng.randrange(len(s))
                op = rng.randrange(3)
                if op == 0:
                    s[k] = rng.choice(chars)
                elif op == 1:
                    del s[k]
                else:
                    s.insert(k, rng.choice(chars))
            self.same(''.join(s))


def binary_log(seed, blocks=2, remap=False, bitmap=False, n=6):
    """A binary log with several blocks and segments, and its text."""
    rng = random.Random(seed)
    w = binlog.Writer()
    ram = 600
    segs = [(0, 200, 0), (200, 100, 0x300), (300, 300, 0x1000)]
    bl = [('ram', ram, segs), ('rom', 20, []), ('vga', 64, [(0, 64, 0x800)])][:blocks + 1]
    w.header('10.0.13', 'kvm', 4096, 100, n, 's', bl)
    w.iteration(0, 0, sum(b[1] for b in bl), 20 if blocks >= 1 else 0, 0, 1, 1, 1,
                {i: (range(b[1]), []) for i, b in enumerate(bl)})
    for k in range(1, n + 1):
        ent = {}
        for i, (name, pages, s) in enumerate(bl):
            dense = bitmap and rng.random() < 0.7
            p = sorted({rng.randrange(pages) for _ in range(pages // 2 if dense else 12)})
            if pages > 90 and rng.random() < 0.3:
                p = sorted(set(p) | set(range(40, 90)))
            z = [x for x in p if rng.random() < 0.3]
            e = (p, z)
            if remap and name == 'ram' and k == 3:
                # the same PFNs, given to other pages
                e = (p, z, pages, [(0, 300, 0x1000), (300, 200, 0), (500, 100, 0x300)])
            if remap and name == 'ram' and k == 4:
                # PFNs no block line maps: an error
                e = (p, z, pages, [(0, 300, 0x1000), (300, 300, 0x5000)])
            if remap == 'partial' and name == 'ram' and k == 2:
                # pages 500-599 mapped nowhere now: unmapped pages of ram
                # (the iteration's unmapped= is left wrong, an error)
                e = (p, z, pages, [(0, 300, 0x1000), (300, 200, 0)])
            ent[i] = e
        dirty = sum(len(e[0]) for e in ent.values())
        unm = len(ent.get(1, ([],))[0]) if blocks >= 1 else 0
        zero = sum(len(e[1]) for e in ent.values())
        w.iteration(k, k * 100000 + 3, dirty, unm, zero, 2, 3, 4, ent)
    w.end('completed', n)
    return bytes(w.data)


class Binary(unittest.TestCase):
    def same(self, data):
        want = outcome(ref_file, data)
        self.assertEqual(outcome(fast_file, data), want)
        return want

    def test_runs_and_bitmaps(self):
        for seed in range(6):
            for bitmap in (False, True):
                data = binary_log(seed, blocks=2, bitmap=bitmap)
                r = self.same(data)
                self.assertEqual(r[0], 'ok', r)
                self.assertTrue(used_fast(data))

    def test_bitmap_encoding_used(self):
        # the encoder picks a bitmap for a dense set
        s = binlog.encode_set(range(0, 400, 2))
        self.assertEqual(s[0], binlog.BITMAP)
        s = synth.encode_set_np(np.arange(0, 400, 2))
        self.assertEqual(s[0], binlog.BITMAP)
        self.assertEqual(s, binlog.encode_set(range(0, 400, 2)))
        for pages in ([], [0], [5], [0, 1], [3, 4, 5, 9], list(range(100)), [7, 1000, 1001, 5000]):
            self.assertEqual(synth.encode_set_np(np.array(pages, dtype=np.int64)),
                             binlog.encode_set(pages), pages)

    def test_remap_and_one_block(self):
        for seed in range(3):
            self.assertEqual(self.same(binary_log(seed, blocks=0))[0], 'ok')
            r = self.same(binary_log(seed, blocks=2, remap=True))
            self.assertEqual(r[0], 'error')
            self.assertIn('which no block maps', r[1])
            self.same(binary_log(seed, blocks=2, remap='partial'))
            data = binary_log(seed, blocks=2, remap=True, n=3)
            self.assertEqual(self.same(data)[0], 'ok')
            self.assertTrue(used_fast(data))

    def test_truncated_and_corrupt(self):
        data = binary_log(1, blocks=2, bitmap=True)
        ends = [e for _, _, e in binlog.records(data)]
        for cut in [len(binlog.MAGIC), ends[0], ends[1] - 1, ends[1], ends[3] + 3, len(data) - 1]:
            self.same(data[:cut])
        rng = random.Random(5)
        for _ in range(300):
            d = bytearray(data)
            for _ in range(rng.randint(1, 2)):
                k = rng.randrange(len(binlog.MAGIC), len(d))
                d[k] = rng.randrange(256)
            self.same(bytes(d))

    def test_version(self):
        data = bytearray(binary_log(0, blocks=1))
        # the header's version varint follows 'H' and the record's length
        r = binlog.Reader(data, len(binlog.MAGIC) + 1, len(data))
        r.varint()
        data[r.pos] = 5
        want = self.same(bytes(data))
        self.assertEqual(want[0], 'error')
        self.assertIn('version 5', want[1])

    def test_segments_that_meet_cross_or_overlap(self):
        # one block remapped: its segments' PFN ranges touching (joined),
        # out of order (sorted), or the same PFN twice (an error)
        def log(dirty, segs):
            w = binlog.Writer()
            w.header('10.0.13', 'kvm', 4096, 100, 1, 's',
                     [('ram', 200, [(0, 100, 0), (100, 100, 0x1000)])])
            w.iteration(0, 0, 200, 0, 0, 1, 1, 1, {0: (range(200), [])})
            w.iteration(1, 100000, len(dirty), 0, 1, 1, 1, 1,
                        {0: (dirty, dirty[-1:], 200, segs)})
            w.end('completed', 1)
            return bytes(w.data)
        meet = [(0, 100, 0), (100, 100, 0x50)]
        self.assertEqual(self.same(log([89, 110], meet))[0], 'ok')
        r = self.same(log([90, 110], meet))
        self.assertEqual(r[0], 'error')
        self.assertIn('not above the one before it', r[1])
        swapped = [(0, 100, 0x1000), (100, 100, 0)]
        data = log([3, 4, 98, 99, 100, 150, 199], swapped)
        self.assertEqual(self.same(data)[0], 'ok')
        self.assertTrue(used_fast(data))

    def test_large_iterations_unmapped(self):
        # iterations of many ranges (checked against the map by bisecting
        # each), with PFNs no block maps: a range that starts outside the
        # map, or one that starts in it and runs past its end
        def log(segs, dirty2):
            w = binlog.Writer()
            w.header('10.0.13', 'kvm', 4096, 100, 2, 's',
                     [('ram', 2000, [(0, 1000, 0), (1000, 1000, 0x1000)])])
            w.iteration(0, 0, 2000, 0, 0, 1, 1, 1, {0: (range(2000), [])})
            for k in (1, 2):
                dirty = sorted(dirty2) if k == 2 else list(range(0, 2000, 3))
                e = (dirty, dirty[::7]) + ((2000, segs) if k == 2 else ())
                w.iteration(k, k * 100000, len(dirty), 0, len(dirty[::7]), 1, 1, 1, {0: e})
            w.end('completed', 2)
            return bytes(w.data)
        some = set(range(0, 1400, 3)) | set(range(1400, 1600))
        ok = log([(0, 1000, 0), (1000, 1000, 0x1000)], some | set(range(1600, 2000, 3)))
        self.assertEqual(self.same(ok)[0], 'ok')
        self.assertTrue(used_fast(ok))
        # pages 1500-1999 now at PFNs no block maps
        for segs, dirty2 in (([(0, 1000, 0), (1000, 1000, 0x10000)], some),
                             ([(0, 1000, 0), (1000, 1000, 0x1000 + 500)], some)):
            r = self.same(log(segs, dirty2))
            self.assertEqual(r[0], 'error')
            self.assertIn('which no block maps', r[1])

    def test_huge_page_numbers(self):
        w = binlog.Writer()
        w.header('10.0.13', 'kvm', 4096, 100, 1, 's', [('ram', 16, [(0, 16, 0)])])
        w.iteration(0, 0, 16, 0, 0, 1, 1, 1, {0: (range(16), [])})
        w.iteration(1, 100000, 2, 0, 0, 1, 1, 1, {0: ([3, 1 << 51], [])})
        r = self.same(bytes(w.data))
        self.assertEqual(r[0], 'error')

    def test_big_synthetic_logs(self):
        with tempfile.TemporaryDirectory() as d:
            t, b = os.path.join(d, 'a.txt'), os.path.join(d, 'a.btl')
            for mode, frac in (('random', 0.01), ('random', 0.5), ('seq', 0.3)):
                synth.write_big(t, b, pages=0xc0000 + 3000, n=3, frac=frac, mode=mode)
                with open(t, 'rb') as f:
                    text = f.read()
                with open(b, 'rb') as f:
                    data = f.read()
                self.assertEqual(binlog.to_text(data).encode(), text)
                rt, rb = self.same(data), outcome(ref_file, text)
                self.assertEqual(rt[0], 'ok')
                self.assertEqual(outcome(fast_file, text), rb)
                self.assertTrue(used_fast(data) and used_fast(text))


if __name__ == '__main__':
    unittest.main()
