# SPDX-License-Identifier: GPL-2.0-or-later
"""btrace.simulate: the replay of QEMU 10.0 pre-copy, on logs small enough
to follow by hand.  Every expected number is worked out in the comments from
QEMU's rules, not taken from the simulator's output.

Common ground: a sync costs nothing (sync_s=0), nor does setup or the
migration thread's own work on a page (setup_s=0, page_cpu_s=0), the device
state is 0 bytes unless said, the link carries 1e9 bytes/s, pages are 4096
bytes, writes happen at the start of their window (write_time 'start').
"""

import random
import unittest

import numpy as np

from .helpers import ITER, NORMAL, PAGE, ZERO, build, empty_windows, run, setup_bytes, simulate, synth

L = 1e9


def one_block(pages, windows, **kw):
    return synth.make_log([('ram', pages, [(0, pages)])], windows, **kw)


class WireBytes(unittest.TestCase):
    def test_bulk_round_unlimited(self):
        # 64 normal pages, no rate limit (max-bandwidth 0): the first
        # ram_save_iterate sends them all (MAX_WAIT is checked at page 0 and
        # 64 only), the block name ("ram": 1 + 3 bytes) goes with the first.
        # Nothing is pending then: migration_iteration_run switches over at
        # once (pending 0), before any bandwidth measurement.
        _, _, tr = build(one_block(64, empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0, device_state_bytes=1000)
        bulk = 64 * NORMAL + 4 + ITER
        self.assertTrue(r['converges'])
        self.assertEqual(r['rounds'], 1)
        self.assertEqual(r['dirty_sync_count'], 2)      # setup + ram_save_complete
        self.assertEqual(r['normal_pages'], 64)
        self.assertEqual(r['zero_pages'], 0)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + bulk + 8 + 1000)
        self.assertAlmostEqual(r['downtime_s'], (8 + 1000) / L, places=12)
        self.assertAlmostEqual(r['total_s'], bulk / L + (8 + 1000) / L, places=12)

    def test_bulk_round_skips_unplugged(self):
        # The same block, of which a virtio-mem device has plugged only
        # pages 0-15: the baseline lists those, and migration clears the
        # rest from rb->bmap at setup (ramblock_dirty_bitmap_clear_discarded_
        # pages), so the bulk round sends 16 pages, not 64.
        text = one_block(64, empty_windows(10, 100)).replace(
            'dirty=64 ', 'dirty=16 ').replace('pfns 0-3f\n', 'pfns 0-f\n')
        _, _, tr = build(text)
        r = run(tr, max_bandwidth=0, device_state_bytes=1000)
        bulk = 16 * NORMAL + 4 + ITER
        self.assertTrue(r['converges'])
        self.assertEqual(r['normal_pages'], 16)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + bulk + 8 + 1000)

    def test_setup_and_per_page_time(self):
        # The same with 1 us of the migration thread's time per page and a
        # setup of 10 ms, which query-migrate's total-time counts.
        _, _, tr = build(one_block(64, empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0, device_state_bytes=1000, page_cpu_s=1e-6, setup_s=0.01)
        bulk = 64 * NORMAL + 4 + ITER
        self.assertAlmostEqual(r['total_s'], 0.01 + bulk / L + 64e-6 + (8 + 1000) / L, places=12)
        self.assertAlmostEqual(r['downtime_s'], (8 + 1000) / L, places=12)

    def test_block_name_when_the_block_changes(self):
        # Blocks "bb" then "a", two pages each: 1 + 2 bytes before bb's first
        # page, 1 + 1 before a's.
        text = synth.make_log([('bb', 2, [(0, 2)]), ('a', 2, [(0x10, 2)])],
                              empty_windows(3, 100))
        _, _, tr = build(text)
        r = run(tr, max_bandwidth=0)
        self.assertEqual(r['sent_bytes'], setup_bytes(['bb', 'a']) + 4 * NORMAL + 3 + 2 + ITER + 8)


class ZeroPages(unittest.TestCase):
    def log(self, windows, version=2):
        # pages 32-63 zero at the start; the baseline's scan took 2 us a zero page
        return one_block(64, windows, baseline_zero=list(range(32, 64)), version=version,
                         zero_us=lambda n, z: 2 * z)

    def test_zero_pages_cost_nine_bytes_and_scan_time(self):
        _, _, tr = build(self.log(empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0)
        bulk = 32 * NORMAL + 4 + 32 * ZERO + ITER
        self.assertEqual((r['normal_pages'], r['zero_pages']), (32, 32))
        self.assertEqual(r['zero_page_cost_from'], 'log')
        self.assertAlmostEqual(r['zero_page_s'], 2e-6)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + bulk + 8)
        self.assertAlmostEqual(r['total_s'], bulk / L + 32 * 2e-6 + 8 / L, places=12)

    def test_zero_page_detection_none(self):
        _, _, tr = build(self.log(empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0, zero_page_detection='none')
        bulk = 64 * NORMAL + 4 + ITER
        self.assertEqual((r['normal_pages'], r['zero_pages']), (64, 0))
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + bulk + 8)
        self.assertAlmostEqual(r['total_s'], bulk / L + 8 / L, places=12)

    def test_v1_counts_every_page_as_normal(self):
        _, _, tr = build(self.log(empty_windows(10, 100), version=1))
        r = run(tr, max_bandwidth=0)
        self.assertEqual((r['normal_pages'], r['zero_pages']), (64, 0))
        self.assertEqual(r['zero_page_cost_from'], 'zero-scan-rate')

    def test_zero_state_of_the_latest_window(self):
        # Window 1 (written at t=0) rewrites page 40 with data and page 41
        # with zeros.  The bulk round sends both as zero pages (their state
        # when its ram_save_iterate began); the switchover's sync finds them
        # dirty and ram_save_complete sends 40 as a normal page, 41 as a zero
        # page (scanned: 2 us).
        _, _, tr = build(self.log([(50, [40, 41], [41])] + empty_windows(9, 100)[1:]))
        r = run(tr, max_bandwidth=0, accel='tcg')
        self.assertEqual((r['normal_pages'], r['zero_pages']), (33, 33))
        self.assertEqual(r['final_dirty_pages'], 2)
        self.assertEqual(r['downtime_bytes'], NORMAL + ZERO + 8)
        self.assertAlmostEqual(r['downtime_s'], (NORMAL + ZERO + 8) / L + 2e-6, places=12)


class WrittenWhileAsleep(unittest.TestCase):
    def test_zero_state_after_the_rate_limit_sleep(self):
        # Pages 0-31 hold data, 32-63 zeros; page 40 gets data at 50 ms.
        # max-bandwidth 1e6: the first call sends pages 0-31 (the flush
        # after page 31 goes over the 1e5-byte budget) and the thread sleeps
        # to 100 ms.  The threshold then is 131400 B / 100 ms x 50 ms =
        # 65700 bytes, below the 32 pages pending: the second call sends
        # pages 32-63, page 40 as a normal page since its write at 50 ms came
        # before the call.  Then the estimate is 0: sync, which finds page 40
        # (written after the setup sync): 4096 bytes < 65700, switchover,
        # page 40 goes again, as a normal page.
        text = one_block(64, [(50, [], []), (100, [40], [])] + empty_windows(10, 100)[2:],
                         baseline_zero=list(range(32, 64)))
        _, _, tr = build(text)
        r = run(tr, max_bandwidth=1e6, downtime_limit_s=0.05, accel='tcg')
        self.assertEqual((r['normal_pages'], r['zero_pages']), (34, 31))
        self.assertEqual(r['round_list'][0]['dirty_pages'], 1)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + 32 * NORMAL + 4 + ITER
                         + 31 * ZERO + NORMAL + ITER + NORMAL + 8)


class HostCosts(unittest.TestCase):
    """The calibrated host costs: a page new to the destination, the
    downtime's fixed part."""

    def test_destination_bound(self):
        # The link carries 1e9 B/s: the source puts a page out in 4.104 us
        # (the first, with the block name, 4.108 us: a).  The destination
        # takes 10 us for a page new to it, and the socket holds 2 pages
        # (8208 bytes).  The destination finishes page j at D_j = a + 10 us
        # x (j + 1) (it is always behind).  Page j (cumulative bytes 4108 +
        # 4104 j) can leave once everything but the last 8208 bytes is
        # taken: page j - 3 (the last page more than 8208 bytes before it),
        # D_j-3 = a + 10 us x (j - 2).  The last, page 63: a + 610 us, which
        # is later than the source's own a + 63 x 4.104 us.  No rate limit,
        # nothing pending: the VM stops; nothing is left for the downtime,
        # whose flush goes into the buffer at once.
        _, _, tr = build(one_block(64, empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0, dest_first_page_s=10e-6, socket_buffer_bytes=8208)
        a = (NORMAL + 4) / L
        self.assertAlmostEqual(r['total_s'], a + 610e-6 + ITER / L + 8 / L, places=12)
        self.assertAlmostEqual(r['downtime_s'], 8 / L, places=12)

    def test_pages_the_destination_has(self):
        # The source takes 1 ms a page (link 4104000 B/s; the first page,
        # with the block name, a = 4108 / 4104000 s); the destination 1.5 ms
        # for a page new to it, 0.1 ms for one it has; the socket holds one
        # page.  Bulk: page j leaves once page j - 2 is loaded (D_j =
        # a + 1.5 ms x (j + 1)); the last at D_61 = a + 93 ms, then the
        # iterate overhead: t1 = a + 93 ms + 18 / link, under BUFFER_DELAY,
        # nothing pending: the VM stops.  The destination still has until
        # D_63 = a + 96 ms: dcur = 3 ms - 18 / link of work left.  Pages 0-3,
        # written at t = 0, go in the downtime; it has them (0.1 ms each):
        # it finishes page 0 at dcur + 0.1 ms, so page 2, which waits for
        # page 0, leaves at dcur + 0.1 ms instead of the source's 3 ms;
        # page 3 (waiting for page 1, done at dcur + 0.2 ms) at 4 ms +
        # (dcur + 0.1 ms - 3 ms), the source being behind by then.
        link = 4104000.0
        _, _, tr = build(one_block(64, [(100, [0, 1, 2, 3], [])] + empty_windows(9, 100)[1:]))
        r = run(tr, max_bandwidth=0, link_bandwidth=link, dest_first_page_s=1.5e-3,
                dest_page_s=0.1e-3, socket_buffer_bytes=4104)
        a = (NORMAL + 4) / link
        t1 = a + 93e-3 + ITER / link
        dcur = 3e-3 - ITER / link
        down = 4e-3 + (dcur + 0.1e-3 - 3e-3) + 8 / link
        self.assertEqual(r['normal_pages'], 68)
        self.assertEqual(r['final_pages'], 4)
        self.assertAlmostEqual(r['downtime_s'], down, places=12)
        self.assertAlmostEqual(r['total_s'], t1 + down, places=12)

    def test_zero_pages_at_the_destination(self):
        # Pages 32-63 zero (their scan at the source free: zero_page_s=0),
        # a socket big enough never to block: the source's time is the link
        # only, whatever the destination's costs; the destination's finish
        # is 32 x 20 us + 32 x 5 us after the first arrival, for the next
        # call to wait on.  No wait here (one call, nothing left).
        text = one_block(64, empty_windows(10, 100), baseline_zero=list(range(32, 64)))
        _, _, tr = build(text)
        r = run(tr, max_bandwidth=0, zero_page_s=0.0, dest_first_page_s=20e-6,
                dest_zero_first_s=5e-6, dest_zero_s=1e-6)
        bulk = 32 * NORMAL + 4 + 32 * ZERO + ITER
        self.assertEqual(r['zero_page_cost_from'], 'parameter')
        self.assertAlmostEqual(r['total_s'], bulk / L + 8 / L, places=12)

    def test_completion_time(self):
        # A measured fixed downtime (vm stop, final sync, device state,
        # flush) of 5 ms replaces the sync's 2 ms and the device state at
        # the link; the device state's bytes still count in sent_bytes
        # (ram.transferred) but not in downtime_bytes (ram_transferred_add
        # counts RAM only): 8 bytes of RAM_SAVE_FLAG_EOS.
        _, _, tr = build(one_block(64, empty_windows(10, 100)))
        r = run(tr, max_bandwidth=0, device_state_bytes=1000, completion_s=0.005, sync_s=0.002)
        bulk = 64 * NORMAL + 4 + ITER
        self.assertAlmostEqual(r['downtime_s'], 8 / L + 0.005, places=12)
        self.assertEqual(r['downtime_bytes'], 8)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + bulk + 8 + 1000)
        self.assertAlmostEqual(r['total_s'], 0.002 + bulk / L + 8 / L + 0.005, places=12)


class RateLimit(unittest.TestCase):
    """128 pages, max-bandwidth 1e6 bytes/s: rate_limit_max = 1e5 bytes a
    100 ms window (migration_rate_set).  migration_rate_exceeded() sees the
    bytes only when the QEMUFile is flushed, every 64 iovecs = 32 normal
    pages: pages 0-31 go (their bytes not counted yet), the flush after page
    31 counts 32 * 4104 (+ 4 for the block name in the first call) > 1e5, so
    each window sends exactly 32 pages, then EOS and the flush (+18)."""

    def setUp(self):
        _, _, self.tr = build(one_block(128, empty_windows(10, 100)))
        self.first = 32 * NORMAL + 4 + ITER
        self.next = 32 * NORMAL + ITER

    def test_threshold_from_measured_bandwidth(self):
        # downtime limit 100 ms.  Window 0 (0-100 ms) sends pages 0-31 with
        # the setup bytes: threshold = (setup + first) / 100 ms * 100 ms.
        # Window 1 sends pages 32-63, window 2 64-95, each measuring
        # threshold = 131346 bytes.  At 300 ms the estimate, 32 pages =
        # 131072 bytes, is below it: sync (nothing written), the exact
        # pending is the same 131072 < 131346: switchover.  The last 32
        # pages go in the downtime, unlimited.
        r = run(self.tr, max_bandwidth=1e6, downtime_limit_s=0.1, accel='tcg')
        self.assertTrue(r['converges'])
        self.assertEqual(r['rounds'], 1)
        self.assertEqual(r['dirty_sync_count'], 3)
        rnd = r['round_list'][0]
        self.assertEqual(rnd['pages'], 96)
        self.assertAlmostEqual(rnd['end_s'], 0.3)
        self.assertAlmostEqual(rnd['threshold_bytes'], self.next)
        self.assertEqual(r['final_pages'], 32)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + self.first + 2 * self.next
                         + 32 * NORMAL + 8)
        self.assertAlmostEqual(r['downtime_s'], (32 * NORMAL + 8) / L, places=12)
        self.assertAlmostEqual(r['total_s'], 0.3 + (32 * NORMAL + 8) / L, places=12)

    def test_avail_switchover_bandwidth(self):
        # threshold = 1e6 / 1000 * 100 ms = 1e5 bytes from the first
        # measurement: at 300 ms the 32 pages left (131072 bytes) are above
        # it, so window 3 sends them; at 400 ms the estimate is 0: sync,
        # switchover with nothing left.
        r = run(self.tr, max_bandwidth=1e6, downtime_limit_s=0.1,
                avail_switchover_bandwidth=1e6, accel='tcg')
        self.assertEqual(r['rounds'], 1)
        self.assertEqual(r['round_list'][0]['pages'], 128)
        self.assertAlmostEqual(r['round_list'][0]['threshold_bytes'], 1e5)
        self.assertEqual(r['final_pages'], 0)
        self.assertAlmostEqual(r['total_s'], 0.4 + 8 / L, places=12)
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + self.first + 3 * self.next + 8)

    def test_extrapolated_past_the_trace(self):
        # The same migration over a trace of 200 ms: it lasts 300 ms, so the
        # trace is replayed past its end, and the result says so.
        _, _, tr = build(one_block(128, empty_windows(2, 100)))
        r = run(tr, max_bandwidth=1e6, downtime_limit_s=0.1, accel='tcg')
        self.assertTrue(r['extrapolated'])
        r = run(self.tr, max_bandwidth=1e6, downtime_limit_s=0.1, accel='tcg')
        self.assertFalse(r['extrapolated'])


class OneIterate(unittest.TestCase):
    """What a single ram_save_iterate call sends."""

    def sim(self, text, **kw):
        _, _, tr = build(text)
        base = dict(sync_s=0.0, device_state_bytes=0, page_cpu_s=0.0, setup_s=0.0, accel='tcg')
        base.update(kw)
        sim = simulate.Simulation(tr, simulate.Params(**base))
        sim.wb = 0
        return sim

    def test_max_wait(self):
        # One normal page a ms (4104000 bytes/s), no rate limit: MAX_WAIT
        # (50 ms) is looked at after pages 0, 64, 128...: after page 64,
        # at 65 ms, the call stops: 65 pages.
        sim = self.sim(one_block(128, empty_windows(3, 100)), max_bandwidth=0,
                       link_bandwidth=4104000)
        dt, nbytes, normal, zero = sim.send(0.0, True)
        self.assertEqual((normal, zero), (65, 0))
        self.assertEqual(nbytes, 65 * NORMAL + 4 + ITER)
        self.assertAlmostEqual(dt, (65 * NORMAL + 4 + ITER) / 4104000, places=12)
        self.assertEqual(sim.npending, 128 - 65)

    def test_zero_records_flush_every_32_kib(self):
        # Every page zero, 9-byte records (13 for the first, with "ram"),
        # rate_limit_max = 10000 bytes.  The buffered records are flushed
        # when the 32768-byte buffer is full, inside page 3640's record
        # (13 + 9 * 3640 >= 32768 > 13 + 9 * 3639): only then does
        # migration_rate_exceeded() see more than 10000 bytes, and the call
        # stops before page 3641: 3641 pages.
        text = one_block(4000, empty_windows(3, 100), baseline_zero=list(range(4000)))
        sim = self.sim(text, max_bandwidth=100000, link_bandwidth=1e9)
        dt, nbytes, normal, zero = sim.send(0.0, True)
        self.assertEqual((normal, zero), (0, 3641))
        self.assertEqual(nbytes, 13 + 9 * 3640 + ITER)


class LazyClear(unittest.TestCase):
    """128 pages; the link carries 4104000 bytes/s, one normal page a ms;
    no rate limit.  ram_save_iterate #1 sends pages 0-64 (MAX_WAIT is seen
    after page 64, at 65 ms), #2 pages 65-127 (to ~128 ms).  Then the first
    measurement sets a threshold of ~41 KB (10 ms of ~4.1 MB/s): the
    estimate is 0, sync, and whatever it finds (a page or two) is below the
    threshold: switchover.

    Writes: page 100 at 50 ms, page 20 at 100 ms."""

    def setUp(self):
        windows = [(50, [], []), (100, [100], []), (150, [20], [])] + \
            [(200 + 50 * i, [], []) for i in range(7)]
        self.text = one_block(128, windows, accel='kvm')
        _, _, self.tr = build(self.text)

    def found(self, **kw):
        r = run(self.tr, max_bandwidth=0, downtime_limit_s=0.01, link_bandwidth=4104000, **kw)
        self.assertTrue(r['converges'])
        self.assertEqual(r['rounds'], 1)
        self.assertEqual(r['dirty_sync_count'], 3)
        n = r['round_list'][0]['dirty_pages']
        self.assertEqual(r['sent_bytes'], setup_bytes(['ram']) + 128 * NORMAL + 4 + 2 * ITER
                         + n * NORMAL + 8)
        return n

    def test_kvm_small_chunks_absorb(self):
        # x-clear-bitmap-shift 6: chunks of 64 pages.  KVM_DIRTY_LOG_INITIALLY_SET
        # makes the setup sync report every page, so page 100's write at 50
        # ms, before chunk 64-127 is cleared (when page 64 is sent, at 64
        # ms), is absorbed; page 20's at 100 ms, after chunk 0-63 was
        # cleared (at 0), is caught.
        self.assertEqual(self.found(clear_bitmap_shift=6), 1)

    def test_kvm_one_chunk(self):
        # shift 18: one chunk, cleared before page 0 is sent: both caught.
        self.assertEqual(self.found(clear_bitmap_shift=18), 2)

    def test_tcg_has_no_lazy_clear(self):
        self.assertEqual(self.found(clear_bitmap_shift=6, accel='tcg'), 2)

    def test_dirty_ring_has_no_lazy_clear(self):
        self.assertEqual(self.found(clear_bitmap_shift=6, accel='kvm-dirty-ring'), 2)


class Writes(unittest.TestCase):
    def test_replayed_cyclically(self):
        # Two windows of 50 ms: page 1 written at 0, page 2 at 50 ms.  The
        # trace is 100 ms; from 100 ms on it starts again at window 1.
        _, _, tr = build(one_block(4, [(50, [1], []), (100, [2], [])]))
        pages, times, _, extra = tr.writes(0.12, 0.3)
        self.assertEqual(pages.tolist(), [2, 1, 2])
        for got, want in zip(times.tolist(), [0.15, 0.2, 0.25]):
            self.assertAlmostEqual(got, want)
        self.assertTrue(extra)
        pages, _, _, extra = tr.writes(0.0, 0.1)
        self.assertEqual((pages.tolist(), extra), ([1, 2], False))

    def test_spread_within_the_window(self):
        windows = [(100 * (i + 1), list(range(64)), []) for i in range(3)]
        _, _, tr = build(one_block(64, windows), write_time='spread')
        for w in range(3):
            _, times, _, _ = tr.writes(0.1 * w, 0.1 * (w + 1))
            self.assertEqual(len(times), 64)
            self.assertTrue(((times >= 0.1 * w) & (times < 0.1 * (w + 1))).all())
            # not all at one moment
            self.assertGreater(times.max() - times.min(), 0.05)


class NotConverging(unittest.TestCase):
    def setUp(self):
        # Every page rewritten in every 50 ms window: 64 pages each 50 ms,
        # 5 MB/s of writes.  At max-bandwidth 1e6 bytes/s (~32 pages per
        # 100 ms) a sync always finds every page again.
        windows = [(50 * (i + 1), list(range(64)), []) for i in range(10)]
        _, _, self.tr = build(one_block(64, windows))
        self.params = simulate.Params(max_bandwidth=1e6, downtime_limit_s=0.01, sync_s=0.0,
                                      device_state_bytes=0, link_bandwidth=1e9,
                                      max_time_s=20, accel='tcg', page_cpu_s=0.0, setup_s=0.0)

    def test_does_not_converge(self):
        r = simulate.simulate(self.tr, self.params)
        self.assertFalse(r['converges'])
        self.assertIsNone(r['total_s'])
        self.assertTrue(r['why'])
        self.assertGreater(r['stuck_bytes'], 0)

    def test_search_smallest_bandwidth(self):
        v, res = simulate.search_min(self.tr, self.params, 'max_bandwidth', 1e6, 1e9)
        self.assertIsNotNone(v)
        self.assertTrue(res['converges'])
        self.assertGreater(v, 1e6)
        self.assertTrue(simulate.simulate(self.tr, self.params.copy(max_bandwidth=v))['converges'])

    def test_search_smallest_downtime_limit(self):
        # At the top, 64 pages / (1e6 / 1000) ms: everything fits.
        top = 64 * PAGE / 1e6 * 1.05
        v, res = simulate.search_min(self.tr, self.params, 'downtime_limit_s', 0.01, top)
        self.assertIsNotNone(v)
        self.assertTrue(res['converges'])
        self.assertGreater(v, 0.01)


class Series(unittest.TestCase):
    """Params(series=True): the (t, pending_bytes, event) samples."""

    def test_by_hand(self):
        # RateLimit's migration: 128 pages, max-bandwidth 1e6 bytes/s,
        # downtime limit 100 ms.  Pages 0-31 go at 0, 32-63 at 100 ms, 64-95
        # at 200 ms (the thread sleeps to the end of each 100 ms window);
        # at 300 ms the sync leaves 32 pages, below the threshold: the VM
        # stops and the 32 pages go unlimited, with EOS.
        _, _, tr = build(one_block(128, empty_windows(10, 100)))
        r = run(tr, max_bandwidth=1e6, downtime_limit_s=0.1, accel='tcg', series=True)
        first = 32 * NORMAL + 4 + ITER
        nxt = 32 * NORMAL + ITER
        want = [(0.0, 128 * PAGE, 'start'),
                (0.0, 128 * PAGE, 'iterate'), (first / L, 96 * PAGE, 'sent'),
                (0.1, 96 * PAGE, 'iterate'), (0.1 + nxt / L, 64 * PAGE, 'sent'),
                (0.2, 64 * PAGE, 'iterate'), (0.2 + nxt / L, 32 * PAGE, 'sent'),
                (0.3, 32 * PAGE, 'sync'), (0.3, 32 * PAGE, 'stop'),
                (0.3, 32 * PAGE, 'final-sync'), (0.3 + (32 * NORMAL + 8) / L, 0, 'done')]
        got = r['series']
        self.assertEqual([(b, e) for _, b, e in got], [(b, e) for _, b, e in want])
        for (tg, _, _), (tw, _, _) in zip(got, want):
            self.assertAlmostEqual(tg, tw, places=12)

    def check(self, r, npages):
        s = r['series']
        self.assertEqual(s[0], (0.0, npages * PAGE, 'start'))
        times = [t for t, _, _ in s]
        self.assertEqual(times, sorted(times))
        for (_, b0, _), (_, b1, e1) in zip(s, s[1:]):
            if b1 > b0:         # pending grows only with what a sync finds
                self.assertIn(e1, ('sync', 'final-sync'))
        # one 'sync' sample per round that a sync ended, at its end, with its pending
        syncs = [(t, b) for t, b, e in s if e == 'sync']
        closed = r['round_list'][:len(syncs)]
        self.assertGreaterEqual(len(syncs), len(r['round_list']) - 1)
        for (t, b), rnd in zip(syncs, closed):
            self.assertAlmostEqual(t, rnd['end_s'], places=12)
            self.assertEqual(b, rnd['pending_bytes'])
        # what the ram_save_iterate calls of a round sent is the round's pages
        for i, rnd in enumerate(r['round_list']):
            drop = sum(b0 - b1 for (t0, b0, e0), (_, b1, e1) in zip(s, s[1:])
                       if e0 == 'iterate' and e1 == 'sent'
                       and rnd['start_s'] - 1e-12 <= t0 < rnd['end_s'])
            self.assertEqual(drop, rnd['pages'] * PAGE, f'round {i}')
        if r['converges']:
            setup = r['setup_s']
            stop = [x for x in s if x[2] == 'stop']
            self.assertEqual(len(stop), 1)
            self.assertAlmostEqual(stop[0][0] + setup, r['switchover_s'], places=9)
            self.assertEqual(stop[0][1], r['round_list'][-1]['pending_bytes'])
            fs = [x for x in s if x[2] == 'final-sync']
            self.assertEqual(fs[0][1], r['final_pages'] * PAGE)
            self.assertEqual(s[-1][1:], (0, 'done'))
            self.assertAlmostEqual(s[-1][0] + setup, r['total_s'], places=9)
        else:
            self.assertNotIn('done', [e for _, _, e in s])

    def test_consistent_with_the_rounds(self):
        # A hot set rewritten in every window plus a random sprinkle, KVM's
        # lazy clear and TCG, bandwidths from hopeless to ample: the series
        # agrees with the rounds, and recording it changes no result.
        text = synth.random_log(pages=4096, windows=20, hot=600, sprinkle=100, seed=3)
        _, _, tr = build(text, write_time='spread')
        seen = set()
        for accel in ('kvm', 'tcg'):
            for bw in (2e6, 2e7, 2e8):
                kw = dict(max_bandwidth=bw, downtime_limit_s=0.05, accel=accel, max_time_s=30,
                          sync_s=1e-4, page_cpu_s=1e-6, setup_s=0.01)
                plain = run(tr, **kw)
                r = run(tr, series=True, **kw)
                self.assertNotIn('series', plain)
                self.check(r, 4096)
                series = r.pop('series')
                self.assertEqual(r, plain)
                self.assertGreater(len(series), 3)
                seen.add(r['converges'])
        self.assertEqual(seen, {True, False})


class EventReplay(simulate.Simulation):
    """The dirty log kept as QEMU and KVM keep it, event by event: each
    write sets its page's log bit, except a write to a page the last sync
    reported whose chunk is not cleared yet (KVM: still write-enabled, its
    bit still set: absorbed); a chunk's clear drops the bits the last sync
    reported; TCG's sync re-arms every page at once.  The zero-ness of a
    page is that of its latest write.  Slow, for small logs; the simulator
    must give exactly what this gives."""

    def __init__(self, trace, params):
        super().__init__(trace, params)
        n = trace.npages
        self.log_bits = np.full(n, self.lazy, dtype=bool)
        self.reported = np.zeros(n, dtype=bool)
        self.done = 0.0
        trace.zero_at = self.zero_at

    def zero_at(self, pages, t):
        zero = self.tr.zero0.copy()
        for page, when, z in zip(*self.tr.writes(0.0, t)[:3]):
            zero[page] = z          # window after window: the latest wins
        return zero[pages]

    def sync(self, t):
        pages, times, _, extra = self.tr.writes(self.done, t)
        self.extrapolated |= extra
        events = [(float(w), 1, int(p)) for p, w in zip(pages, times)]
        events += [(float(c), 0, k) for k, c in enumerate(self.clear_time)
                   if self.done <= c < t]
        chunk_of = self.chunk_of
        cleared = set()
        for when, kind, x in sorted(events):
            if kind == 0:
                chunk = chunk_of == x
                self.log_bits[chunk] &= ~self.reported[chunk]
                cleared.add(x)
            elif not (self.lazy and self.reported[x] and chunk_of[x] not in cleared):
                self.log_bits[x] = True
        self.done = t
        new = self.log_bits & ~self.pending
        found = int(np.count_nonzero(new))
        self.pending |= self.log_bits
        self.npending += found
        if self.lazy:
            self.reported = self.log_bits.copy()
            self.clear_time[:] = np.inf
            self.clear_pending[:] = True
        else:
            self.log_bits[:] = False
        self.syncs += 1
        return found


class AgainstEventReplay(unittest.TestCase):
    """The simulator works out the dirty log at each sync from the writes
    since each page was re-armed, and a page's zero-ness from its own
    writes: it must agree with EventReplay in every result, rounds longer
    than the trace (replayed) and chunks cleared mid-round included."""

    def test_random_logs(self):
        rng = random.Random(7)
        for seed in range(4):
            blocks = [('pc.ram', 300, [(0, 200), (0x400, 100)]), ('vga', 130, [(0x1000, 130)])]
            windows = []
            pfns = list(range(200)) + list(range(0x400, 0x464)) + list(range(0x1000, 0x1082))
            for i in range(8):
                pages = sorted(rng.sample(pfns, rng.choice((5, 40, 150))))
                zero = [p for p in pages if rng.random() < 0.3]
                windows.append((25 * (i + 1) + rng.choice((0, 3)), pages, zero))
            base_zero = [p for p in range(200) if rng.random() < 0.5]
            text = synth.make_log(blocks, windows, baseline_zero=base_zero,
                                  accel=rng.choice(('kvm', 'tcg')))
            for wt in ('start', 'spread'):
                log, space, _ = build(text, write_time=wt)
                for accel in ('kvm', 'tcg'):
                    for bw, dl in ((2e6, 0.02), (8e6, 0.05), (3e5, 0.3), (4e7, 0.01), (4e7, 0.001)):
                        kw = dict(sync_s=0.0, device_state_bytes=0, link_bandwidth=1e9,
                                  page_cpu_s=0.0, setup_s=0.0, max_bandwidth=bw,
                                  downtime_limit_s=dl, accel=accel, clear_bitmap_shift=6,
                                  max_time_s=20, write_time=wt, series=True)
                        want = EventReplay(simulate.Trace(log, space, wt),
                                           simulate.Params(**kw)).run()
                        got = simulate.simulate(simulate.Trace(log, space, wt),
                                                simulate.Params(**kw))
                        self.assertEqual(got, want, f'seed {seed} {wt} {accel} {bw} {dl}')


class StartPoint(unittest.TestCase):
    """Params(start_s=x): the migration starts at point x of the trace.
    With writes at their windows' starts and x at a window boundary, that is
    the migration of the trace rotated by x, whose baseline has the pages
    zero as the windows before x left them."""

    def test_same_as_the_rotated_trace(self):
        rng = random.Random(11)
        # windows of 62.5 ms: their boundaries and the start points are
        # exact binary fractions, so t + x lands where t does in the rotated
        # trace (writes at a window's start can coincide with a sync)
        n, w, ms = 256, 12, 62.5
        windows = []
        for i in range(w):
            pages = sorted(rng.sample(range(n), rng.choice((10, 60, 120))))
            windows.append((pages, [p for p in pages if rng.random() < 0.4]))
        base_zero = [p for p in range(n) if rng.random() < 0.5]

        def log(ws, zero0, accel):
            return one_block(n, [(ms * (i + 1), p, z) for i, (p, z) in enumerate(ws)],
                             baseline_zero=zero0, accel=accel)
        for k in (3, 7):
            zero = set(base_zero)
            for pages, zp in windows[:k]:
                zero -= set(pages)
                zero |= set(zp)
            for accel in ('kvm', 'tcg'):
                _, _, whole = build(log(windows, base_zero, accel))
                _, _, rotated = build(log(windows[k:] + windows[:k], sorted(zero), accel))
                for bw, dl in ((3e6, 0.02), (1e6, 0.3), (3e7, 0.005)):
                    kw = dict(max_bandwidth=bw, downtime_limit_s=dl, clear_bitmap_shift=6,
                              max_time_s=10)
                    got = run(whole, start_s=k * ms / 1000, **kw)
                    want = run(rotated, **kw)
                    for r in (got, want):
                        r.pop('extrapolated')
                    self.assertEqual(got.keys(), want.keys())
                    for key in got:
                        if key in ('round_list', 'round_s', 'total_s', 'downtime_s',
                                   'switchover_s', 'time_simulated_s', 'why'):
                            continue
                        self.assertEqual(got[key], want[key], f'{key}, k={k} {accel} {bw}')
                    self.assertEqual(len(got['round_list']), len(want['round_list']))
                    for a, b in zip(got['round_list'], want['round_list']):
                        self.assertEqual((a['pages'], a['dirty_pages'], a['bytes']),
                                         (b['pages'], b['dirty_pages'], b['bytes']))
                        self.assertAlmostEqual(a['end_s'], b['end_s'], places=9)
                    if want['converges']:
                        self.assertAlmostEqual(got['total_s'], want['total_s'], places=9)

    def test_start_zero_is_the_default(self):
        _, _, tr = build(one_block(64, [(50, [1, 2], [2]), (100, [3], [])]))
        self.assertEqual(run(tr, max_bandwidth=1e5, start_s=0.0),
                         run(tr, max_bandwidth=1e5))


if __name__ == '__main__':
    unittest.main()
