# SPDX-License-Identifier: GPL-2.0-or-later
"""The vCPUs' run times: the vcpus line of text v3 and the binary v4
iteration record, read by both readers of each format (Iteration.vcpu_run_us);
older logs read as before, with vcpu_run_us None."""

import os
import re
import tempfile
import unittest

from .helpers import parse
from btrace import binlog, binlog_ref
from btrace.textlog_ref import parse_text_ref

HEAD = """bitmap-trace v3
meta qemu=10.0.13 accel=tcg page-size=4096 period-ms=100 iterations=3 start=2026-01-01T00:00:00.000000Z
block name=ram pages=16 map=0+16
"""
# vCPU 0 spins, vCPU 1 is halted; a third vCPU is plugged in window 2
TEXT = HEAD + """iter n=0 t-ms=0.000 dirty=16 unmapped=0 zero=16 sync-us=10 harvest-us=20 zero-us=30
vcpus run-us=1503000,2100
pfns 0-f
zero 0-f
iter n=1 t-ms=100.012 dirty=2 unmapped=0 zero=0 sync-us=11 harvest-us=21 zero-us=5
vcpus run-us=99870,41
pfns 1-2
iter n=2 t-ms=200.000 dirty=0 unmapped=0 zero=0 sync-us=10 harvest-us=20 zero-us=0
vcpus run-us=99001,38,1200
iter n=3 t-ms=300.999 dirty=1 unmapped=0 zero=0 sync-us=1 harvest-us=2 zero-us=3
vcpus run-us=100990,40,35
pfns 7
end status=completed iterations=3
"""
RUNS = [[1503000, 2100], [99870, 41], [99001, 38, 1200], [100990, 40, 35]]


HERE = os.path.dirname(os.path.abspath(__file__))


def build_binary():
    """TEXT as QEMU writes it in binary (format v4)."""
    w = binlog.Writer(version=4)
    w.header('10.0.13', 'tcg', 4096, 100, 3, '2026-01-01T00:00:00.000000Z',
             [('ram', 16, [(0, 16, 0)])])
    w.iteration(0, 0, 16, 0, 16, 10, 20, 30, {0: (range(16), range(16))}, RUNS[0])
    w.iteration(1, 100012, 2, 0, 0, 11, 21, 5, {0: ([1, 2], [])}, RUNS[1])
    w.iteration(2, 200000, 0, 0, 0, 10, 20, 0, {}, RUNS[2])
    w.iteration(3, 300999, 1, 0, 0, 1, 2, 3, {0: ([7], [])}, RUNS[3])
    w.end('completed', 3)
    return bytes(w.data)


def parse_binary(data):
    with tempfile.NamedTemporaryFile(suffix='.btl') as f:
        f.write(data)
        f.flush()
        return parse.parse(f.name)


class RunTimes(unittest.TestCase):
    def test_text_both_readers(self):
        for log in (parse.parse_text(TEXT), parse_text_ref(TEXT)):
            self.assertEqual(log.version, 3)
            self.assertEqual([it.vcpu_run_us for it in log.iters], RUNS)

    def test_fast_reader_is_used(self):
        """parse_text() takes the fast path on this log (it falls back on
        the reference reader only when the fast one gives up)."""
        from btrace.textlog_fast import parse_text_fast
        log = parse_text_fast(TEXT.encode())
        self.assertIsNotNone(log)
        self.assertEqual([it.vcpu_run_us for it in log.iters], RUNS)

    def test_binary_v4_is_its_text(self):
        data = build_binary()
        self.assertEqual(binlog_ref.to_text(data), TEXT)
        log = parse_binary(data)
        self.assertTrue(log.binary)
        self.assertEqual([it.vcpu_run_us for it in log.iters], RUNS)

    def test_older_logs_have_none(self):
        v2 = TEXT.replace('bitmap-trace v3', 'bitmap-trace v2')
        v2 = ''.join(line for line in v2.splitlines(True) if not line.startswith('vcpus '))
        for log in (parse.parse_text(v2), parse_text_ref(v2)):
            self.assertEqual([it.vcpu_run_us for it in log.iters], [None] * 4)
        w = binlog.Writer()
        w.header('10.0.13', 'tcg', 4096, 100, 3, 'T', [('ram', 16, [(0, 16, 0)])])
        w.iteration(0, 0, 16, 0, 0, 1, 2, 3, {0: (range(16), [])})
        text = binlog.to_text(bytes(w.data))
        self.assertTrue(text.startswith('bitmap-trace v2\n'))
        self.assertIsNone(parse_binary(bytes(w.data)).iters[0].vcpu_run_us)

    def test_no_vcpu(self):
        text = HEAD + ('iter n=0 t-ms=0.000 dirty=0 unmapped=0 zero=0 sync-us=1 '
                       'harvest-us=1 zero-us=1\nvcpus run-us=\n')
        for log in (parse.parse_text(text), parse_text_ref(text)):
            self.assertEqual(log.iters[0].vcpu_run_us, [])

    def errors(self, text, message):
        """Both readers reject text with message."""
        with self.assertRaisesRegex(parse.LogError, message):
            parse.parse_text(text)
        with self.assertRaisesRegex(parse.LogError, message):
            parse_text_ref(text)

    def test_malformed(self):
        lines = TEXT.splitlines(True)
        self.errors(''.join(lines[:4] + lines[5:]), 'line 5: expected the vcpus line')
        self.errors(''.join(lines[:4] + lines[5:6] + lines[4:5] + lines[6:]),
                    'line 5: expected the vcpus line')
        self.errors(TEXT.replace('vcpus run-us=99870,41', 'vcpus run-us=99870,,41'),
                    'expected "vcpus run-us=')
        self.errors(TEXT.replace('vcpus run-us=99870,41', 'vcpus run-us=-1'),
                    'expected "vcpus run-us=')
        self.errors(TEXT.replace('end status', 'vcpus run-us=1\nend status'),
                    'vcpus line not right after an iter line')
        v2 = TEXT.replace('bitmap-trace v3', 'bitmap-trace v2')
        self.errors(v2, r"unknown record 'vcpus' \(vcpus lines are v3\)")

    def test_truncated_after_iter(self):
        lines = TEXT.splitlines(True)
        self.errors(''.join(lines[:4]), 'the last iter line has no vcpus line')

    def test_longer_than_the_window(self):
        # window 1: 100012 us + sync 11 us; 1000 us of slack
        self.errors(TEXT.replace('run-us=99870,41', 'run-us=101024,41'),
                    'vCPU 0 ran 101024 us in iteration 1, longer than its window')
        parse.parse_text(TEXT.replace('run-us=99870,41', 'run-us=101023,41'))

    def test_qemu_logs(self):
        """The same writes traced by QEMU (qtest accelerator, one vCPU) in
        text v3 and binary v4 (tests/harness/log-bytes.py run): the same
        text but for times, a run time for the one vCPU in each iteration."""
        with open(os.path.join(HERE, 'data', 'qtest-v4.btl'), 'rb') as f:
            data = f.read()
        with open(os.path.join(HERE, 'data', 'qtest-v3.txt')) as f:
            ref = f.read()

        def mask(s):
            return re.sub(r'(t-ms|sync-us|harvest-us|zero-us|run-us|start)=[^ \n]*', r'\1=X', s)
        self.assertEqual(mask(binlog.to_text(data)), mask(ref))
        for log in (parse_binary(data), parse.parse_text(ref), parse_text_ref(ref)):
            self.assertEqual([len(it.vcpu_run_us) for it in log.iters], [1] * 4)

    def test_binary_errors(self):
        data = bytearray(build_binary())
        _, start, _ = next(binlog.records(bytes(data)))
        data[start] = 5
        with self.assertRaisesRegex(binlog.BinLogError, 'version 5'):
            binlog.to_text(bytes(data))
        # a v4 record cut inside its run times
        w = binlog.Writer(version=4)
        w.header('10.0.13', 'tcg', 4096, 100, 3, 'T', [('ram', 16, [(0, 16, 0)])])
        w.iteration(0, 0, 16, 0, 0, 1, 2, 3, {0: (range(16), [])}, [5, 6])
        good = bytes(w.data)
        bad = binlog.Writer(version=4)
        bad.header('10.0.13', 'tcg', 4096, 100, 3, 'T', [('ram', 16, [(0, 16, 0)])])
        bad.data += b'I' + bytes([10]) + bytes([0, 0, 16, 0, 0, 1, 2, 3, 3, 5])
        with self.assertRaises(binlog.BinLogError):
            binlog.to_text(bytes(bad.data))
        with self.assertRaises(parse.LogError):
            parse_binary(bytes(bad.data))
        self.assertIn('vcpus run-us=5,6\n', binlog.to_text(good))


if __name__ == '__main__':
    unittest.main()
