# SPDX-License-Identifier: GPL-2.0-or-later
"""A replay simulator of QEMU 10.0 pre-copy live migration.

It replays the guest writes of a bitmap-trace log against a model of what
QEMU 10.0's migration thread does, step by step, and reports what the real
migration would do: its rounds, total time, downtime and bytes.  Each rule
names the QEMU function it follows (migration/ram.c, migration/migration.c,
migration/migration-stats.c, migration/savevm.c, migration/qemu-file.c,
include/exec/ram_addr.h, accel/kvm/kvm-all.c of QEMU 10.0.13).

THE MIGRATION THREAD (migration_thread, migration_iteration_run)
  - Setup: the migration bitmap starts all ones (ram_list_init_bitmaps from
    ram_init_bitmaps), and the setup sync (migration_bitmap_sync_precopy in
    ram_init_bitmaps) is dirty-sync-count 1.  The setup section's few bytes
    (block names and sizes, ram_save_setup) count in the first window.
  - Then, again and again: unless the rate limit is exceeded,
    migration_iteration_run: the pending estimate is the pages still set in
    the bitmap x page size, whatever they will cost on the wire
    (ram_state_pending_estimate).  Only when it is below threshold_size does a
    dirty-log sync happen (ram_state_pending_exact ->
    migration_bitmap_sync_precopy); when the pending size, exact after a sync,
    is 0 or below threshold_size, the VM stops (migration_completion).
    Otherwise one ram_save_iterate; then migration_rate_limit.
  - threshold_size is 0 until the first bandwidth measurement, so nothing
    syncs or switches over in the first BUFFER_DELAY (migrate_init).

SENDING (ram_save_iterate, ram_find_and_save_block, find_dirty_block)
  - Pages go in migration order: block after block in the log's block order
    (RAMBLOCK_FOREACH_NOT_IGNORED / ram_list order), inside a block in page
    order, from where the last call stopped (rs->last_seen_block/last_page),
    wrapping at the end of the last block.  A page made dirty by a sync
    behind that point waits for the wrap.
  - ram_save_iterate sends while migration_rate_exceeded() is false, and
    stops after MAX_WAIT (50 ms), checked after every 64th page ((i & 63) ==
    0).  Each call adds a section header and footer (save_section_header /
    save_section_footer in qemu_savevm_state_iterate, 5 + 5 bytes) and
    RAM_SAVE_FLAG_EOS (8 bytes) and flushes the stream (qemu_fflush).
  - Wire cost (save_page_header, save_zero_page, save_normal_page): an 8-byte
    header, plus 1 + strlen(idstr) when the block differs from the last page
    sent (pss->last_sent_block, which survives from call to call); a normal
    page adds the page, a zero page adds 1 byte: zero-page-detection legacy,
    or multifd, QEMU's default, which without multifd detects zero pages in
    the migration thread as legacy does (ram_save_target_page calls
    save_zero_page unless multifd is on).  zero-page-detection=none sends
    zero pages as normal pages.
  - Time: the bytes go at the link bandwidth (--link-bandwidth); every page
    costs the migration thread's own time (--page-cpu-us: the bitmap search
    and clear, the header, the stats); a zero page also the CPU time of
    buffer_is_zero() over the page: from the log's zero-us when it has them
    (v2: the scan time of the trace's pages over the zero pages found, an
    upper bound as the non-zero pages' early exits are counted in), else
    --zero-scan-rate.  query-migrate's total-time also counts the setup
    (--setup-time).
  - The destination is a stage of its own, in parallel (ram_load_precopy
    in its incoming coroutine): a page costs it --dest-page-us, or, the
    first time it gets a normal page, --dest-first-page-us (qemu_get_buffer
    reads it straight into a host page not yet populated: a page fault),
    and a zero page --dest-zero-us (ram_handle_zero's buffer_is_zero), or
    --dest-zero-first-us for a page it never had (a read fault).  The
    source's write blocks (qemu_fflush on a blocking socket) while more
    than --socket-buffer bytes wait for it; the rate limit's sleep lets it
    catch up.  So with no rate limit a migration goes at the slower of the
    two, and under a rate limit at the limit while the destination keeps
    up.  scripts/validate.py --calibrate measures all of these
    on a host (bt-report --calibration); without it the link is an assumed
    10 Gbit/s and the other costs come from the log or are left out.

THE RATE LIMIT (migration-stats.c, migration.c)
  - migration_rate_set: rate_limit_max = max-bandwidth / XFER_LIMIT_RATIO
    bytes per BUFFER_DELAY (100 ms) window; 0 means unlimited.
  - migration_rate_exceeded: the bytes counted since the window began >
    rate_limit_max.  They are counted when the QEMUFile is flushed
    (qemu_fflush adds to mig_stats.qemu_file_transferred): every
    MAX_IOV_SIZE (64) iovecs, a normal page taking two (header, page), or
    when IO_BUF_SIZE (32 KiB) of headers and zero-page records have piled
    up.  So a window overshoots by up to a flush, not just by the last page.
  - migration_rate_limit (after each iteration): migration_update_counters
    once BUFFER_DELAY has passed since the window began: bandwidth = bytes
    of the window / its length; threshold_size = bandwidth x downtime-limit,
    or avail-switchover-bandwidth / 1000 x downtime-limit when set; the
    window restarts (migration_rate_reset).  Then, if the limit is
    exceeded, the thread sleeps to the end of the window.

DIRTY TRACKING AND THE KVM LAZY CLEAR
  - A sync ORs the pages written since their tracking was last re-armed
    into the migration bitmap (migration_bitmap_sync ->
    ramblock_sync_dirty_bitmap -> cpu_physical_memory_sync_dirty_bitmap).
  - TCG and KVM with a dirty ring: the sync re-arms at once (the TLB reset
    in cpu_physical_memory_dirty_bits_cleared; the ring reset); every write
    after the sync is caught by the next one.
  - KVM (dirty bitmap with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, as on any
    kernel since 5.x): the sync only marks the clear_bmap chunks
    (clear_bmap_set); KVM's log is cleared, and the pages re-protected,
    chunk by chunk (1 << x-clear-bitmap-shift pages, default 18) just before
    the chunk's first page is sent (migration_bitmap_clear_dirty ->
    migration_clear_memory_region_dirty_bitmap).  The clear only clears the
    bits the last sync reported (kvm_log_clear_one_slot uses the slot's
    dirty_bmap), so: a page the sync reported, written again between the
    sync and its chunk's clear, is absorbed (it is sent afterwards with its
    new contents); any other write is caught by the next sync.  QEMU asks
    for KVM_DIRTY_LOG_INITIALLY_SET (kvm_setup_dirty_ring, without a dirty
    ring), so the setup sync reports every page, and during the bulk round
    writes to chunks not yet reached are absorbed too.
  - After the stop, ram_save_complete syncs once more (the last
    dirty-sync-count) and sends every page left ignoring the rate limit, at
    the link bandwidth; then the devices' state (--device-state, a guess
    unless calibrated: ram.transferred - precopy-bytes - downtime-bytes, as
    ram_transferred_add counts only RAM in those two).  Each sync costs the
    mean sync-us of the trace.  Calibrated (--completion-time), the downtime
    is that measured fixed part (vm_stop_force_state, the final sync, the
    devices' state, the flush) plus the RAM pages left at the link.
    downtime_bytes is RAM only, as query-migrate's; sent_bytes adds the
    devices' state, as ram.transferred does.

THE GUEST'S WRITES
  - Window i of the trace (iterations 1..N) lists the pages written between
    the syncs of i-1 and i.  Migration time t is trace time t (the setup sync
    is the baseline sync).  A page of window i is written once at a point of
    the window, spread uniformly by a hash of the page and the window
    (--write-time spread, the default: a page listed in a window was written
    at some moment of it, and no moment is favoured; a page written at every
    moment, a hot page, is listed in every window anyway) or at the window's
    start (--write-time start, the earliest it can have been: pessimistic
    for the lazy clear's absorption, optimistic for the next sync).
  - Past the end of the trace, the windows 1..N are replayed again and
    again: the result says so (extrapolated).
  - Params(start_s=x) starts the migration at point x of the trace instead
    of its start (its writes before x have happened: a page's zero-ness is
    as they left it), the trace still replayed cyclically.  Where a real
    migration starts in the guest's cycle of writes is not known; for a
    sweeping workload near the threshold it decides a round (which pages
    the writer dirties while they are still pending cost nothing), so
    bt-report runs the same migration from a few points spread over
    the trace, predicts the median one and gives the spread
    (predict.from_start_points, --start-phases).
  - A page's zero-ness when sent is its state in the latest window that
    listed it before then (v2; the baseline's zero lines before any), as of
    the start of the ram_save_iterate call that sends it (a write during
    that call, at most MAX_WAIT or a rate window, is seen by the next).  A v1
    log has no zero information: every page is taken as non-zero, which is
    pessimistic, and the result says so.
  - The writes are not applied one by one as the migration goes: a sync
    works out which pages the log holds from the writes since each page was
    last re-armed (at most one pass of the trace: a span that long holds
    every page the trace writes), and a page being sent looks up its own
    latest write.  So a simulation costs in proportion to its syncs and the
    pages it sends, not to the guest's writes over the simulated time (a
    busy 16 GiB guest writes billions of pages in 600 s).
    analyzer/tests/test_simulate.py checks it, result for result, against an
    event-by-event replay of the writes and the clears.

THE TIME SERIES (Params(series=True), for bt-report's migration figure)
  The result's 'series' is a list of (t, pending_bytes, event) samples in
  the rounds' clock (t = 0 at the setup sync, as round_list's start_s and
  end_s; query-migrate's total-time adds setup_s): pending_bytes is the
  pages set in the migration bitmap x page size, what
  ram_state_pending_estimate returns.  Events: 'start' (after the setup
  sync: all RAM), 'iterate' and 'sent' at the start and end of each
  ram_save_iterate (it only goes down while sending; it stays flat while
  the thread sleeps), 'sync' after each mid-migration sync (the round's
  pending_bytes), 'stop' when the VM stops (switchover_s - setup_s),
  'final-sync' after ram_save_complete's sync and 'done' (0 bytes) when
  everything is sent (total_s - setup_s).  A migration that does not
  converge ends its series at its last sample.  Recording it changes no
  result; it is off by default (a few samples per 100 ms of migration).

ROUNDS
  A round is a sync-to-sync span.  Round 0 (the bulk round) starts at the
  setup sync; each mid-migration sync (ram_state_pending_exact) ends one;
  the last round ends at the sync whose exact pending size let the VM stop.
  query-migrate's dirty-sync-count counts the setup sync, each
  mid-migration sync and the final one in ram_save_complete: rounds + 2
  (rounds + 1 in the odd case of a VM stopped with nothing pending before
  any mid-migration sync, as a tiny guest may in its first 100 ms, when the
  threshold is still 0).  The result gives both.

NOT CONVERGING
  No switchover within --max-time (default 600 s) or --max-rounds rounds
  (default 1000), or, once the trace is being replayed, when ten rounds in
  a row each left more pending than the threshold and no less than the
  least of the ten before them: the replay repeats itself, so it would go
  on for ever (this only shortens the simulation; a migration that a lucky
  round would have let switch over is then called not converging).

OUT OF SCOPE
  multifd, compression, xbzrle, auto-converge and dirty-limit (no
  throttling), postcopy, RDMA, mapped-ram, host huge pages (one target page
  per host page), block migration, vhost/VFIO device state, remaps during
  the trace, the setup time (allocating the bitmaps and starting the dirty
  log are not timed).
"""

import math

import numpy as np

# migration/migration-stats.h, ram.c, qemu-file.c, savevm.c
BUFFER_DELAY = 0.100          # s
MAX_WAIT = 0.050              # s; the check is "t1 > MAX_WAIT" in whole ms
XFER_LIMIT_RATIO = 10         # 1000 / BUFFER_DELAY(ms)
MAX_IOV_SIZE = 64
IO_BUF_SIZE = 32768
HEADER = 8                    # save_page_header(): be64 offset | flags
ITERATE_OVERHEAD = 5 + 5 + 8  # section header + footer + RAM_SAVE_FLAG_EOS
CLEAR_BITMAP_SHIFT_MIN, CLEAR_BITMAP_SHIFT_MAX = 6, 31
STEADY_ROUNDS = 10            # see NOT CONVERGING
BUCKETS = 1024                # Trace: time buckets per window

DEFAULTS = {
    'max_bandwidth': 128 * 1024 * 1024,    # MAX_THROTTLE, options.c
    'downtime_limit_s': 0.300,             # DEFAULT_MIGRATE_SET_DOWNTIME
    'avail_switchover_bandwidth': 0,
    'clear_bitmap_shift': 18,              # CLEAR_BITMAP_SHIFT_DEFAULT
    'zero_page_detection': 'multifd',
    # The host's costs.  None of them is read off a validation run: measure
    # them on your host with scripts/validate.py --calibrate (workload-free
    # migrations: a paused guest, RAM mostly non-zero, mostly zero, into a
    # fresh and into a preallocated destination) and pass its JSON with
    # bt-report --calibration; without it, the defaults are stated
    # assumptions, or the log's own measurements.
    'link_bandwidth': 1.25e9,              # bytes/s with no rate limit: a 10 Gbit/s link (assumed)
    'page_cpu_s': 0.0,                     # the migration thread's own time per page (calibrated)
    'zero_page_s': None,                   # a zero page's own time: the log's zero-us, else
                                           # page / zero_scan_rate
    # The destination, a stage of its own in parallel with the source
    # (ram_load_precopy in the destination's incoming coroutine): its time
    # per page, by whether it has had the page before.  The source blocks
    # once socket_buffer_bytes are in flight (the loopback's TCP buffers).
    # All 0 (not modelled) unless calibrated.
    'dest_page_s': 0.0,                    # a normal page it has had
    'dest_first_page_s': 0.0,              # a normal page new to it: its RAM faulted in
    'dest_zero_s': 0.0,                    # a zero page (ram_handle_zero: buffer_is_zero)
    'dest_zero_first_s': 0.0,              # ... to a page it never had (a read fault)
    'socket_buffer_bytes': 4 * 1024 * 1024,
    'setup_s': None,                       # setup-time: the log's mean sync-us (the setup sync),
                                           # else 1 ms
    'completion_s': None,                  # the downtime's fixed part (vm stop, final sync,
                                           # device state, flush): calibrated, else the log's
                                           # sync-us + device_state_bytes at link_bandwidth
    'zero_scan_rate': 8e9,                 # buffer_is_zero() bytes/s, when the log has no zero-us
    'device_state_bytes': 256 * 1024,      # a guess; calibrated: measured
    'sync_s': None,                        # from the log, else 1 ms
    'max_time_s': 600.0,
    'max_rounds': 1000,
    'write_time': 'spread',
    'accel': None,                         # from the log
    'series': False,                       # record the pending-bytes time series
    'start_s': 0.0,                        # the point of the trace the migration starts at
}


class Params:
    def __init__(self, **kw):
        for k, v in DEFAULTS.items():
            setattr(self, k, kw.pop(k, v))
        if kw:
            raise TypeError(f'unknown parameter {sorted(kw)[0]}')

    def copy(self, **kw):
        d = dict(self.__dict__)
        d.update(kw)
        return Params(**d)


def _hash01(pages, n):
    """A deterministic number in [0, 1) per (page, window): splitmix64."""
    with np.errstate(over='ignore'):
        x = pages.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= np.uint64((n * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(32)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Trace:
    """The log's writes, prepared once for any number of simulations."""

    def __init__(self, log, space, write_time='spread'):
        self.log = log
        self.space = space
        self.page_size = log.meta['page_size']
        self.npages = space.npages
        self.has_zero = log.has_zero
        self.accel = log.meta['accel']
        self.idlen = np.array([len(n.encode()) for n in space.names], dtype=np.int64)
        self.zero0 = np.zeros(self.npages, dtype=bool)
        if self.has_zero and log.iters:
            self.zero0[space.zero_pages(log.iters[0])] = True
        self.write_time = write_time
        t0 = log.iters[0].t_ms / 1000 if log.iters else 0.0
        self.starts, self.ends, self.wpages, self.wtimes, self.wzero = [], [], [], [], []
        # each window's writes sorted by a bucket of their time (a radix
        # sort, O(n)), not by their time: writes() only needs the writes of a
        # span, in any order within a window; per bucket its first write and
        # the earliest and latest time
        self.wbucket = []
        prev = t0
        mark = np.zeros(self.npages, dtype=bool)
        for it in log.iters[1:]:
            start, end = prev - t0, it.t_ms / 1000 - t0
            prev = it.t_ms / 1000
            pages = space.pages(it)
            zero = np.zeros(len(pages), dtype=bool)
            if self.has_zero and it.zero:
                # np.isin(pages, zero pages), in O(n)
                zp = space.zero_pages(it)
                mark[zp] = True
                zero = mark[pages]
                mark[zp] = False
            if write_time == 'start':
                frac = np.zeros(len(pages))
            else:
                frac = _hash01(pages, it.n)
            times = start + frac * (end - start)
            key = np.minimum(frac * BUCKETS, BUCKETS - 1).astype(np.uint16)
            order = np.argsort(key, kind='stable')
            key = key[order]
            times = times[order]
            first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) \
                if len(key) else np.zeros(0, dtype=np.int64)
            self.starts.append(start)
            self.ends.append(end)
            self.wpages.append(pages[order])
            self.wtimes.append(times)
            self.wzero.append(zero[order])
            self.wbucket.append((first, np.minimum.reduceat(times, first) if len(first) else times,
                                 np.maximum.reduceat(times, first) if len(first) else times))
        self.starts = np.array(self.starts)
        self.ends = np.array(self.ends)
        self.length = float(self.ends[-1]) if len(self.ends) else 0.0
        self._by_page()

        # Costs measured by the trace
        its = log.iters
        self.sync_s = (sum(it.sync_us for it in its) / len(its) / 1e6) if its else None
        self.zero_page_s = None
        if self.has_zero:
            z = sum(it.zero for it in its)
            us = sum(it.zero_us for it in its)
            if z > 0 and us > 0:
                self.zero_page_s = us / z / 1e6

    def _by_page(self):
        """The writes again, page by page (CSR): the writes of page p are
        ptimes[pstart[p]:pstart[p + 1]], in time order, and pzero says
        whether each left the page zero; ever, whether a page is written at
        all; varies, whether it is ever left other than the baseline found
        it.  For zero_at(), which looks up only the pages being sent."""
        n = self.npages
        counts = np.bincount(np.concatenate(self.wpages), minlength=n) if self.wpages \
            else np.zeros(n, dtype=np.int64)
        self.pstart = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=self.pstart[1:])
        self.ever = counts > 0
        total = int(self.pstart[-1])
        self.ptimes = np.empty(total)
        self.pzero = np.empty(total, dtype=bool)
        nxt = self.pstart[:-1].copy()
        # windows in time order, a page at most once per window: each
        # window's writes go to the next free slot of their page
        for pg, tw, zw in zip(self.wpages, self.wtimes, self.wzero):
            pos = nxt[pg]
            self.ptimes[pos] = tw
            self.pzero[pos] = zw
            nxt[pg] += 1
        if not np.array_equal(nxt, self.pstart[1:]):
            # a page listed twice in a window: sort them all
            pg = np.concatenate(self.wpages)
            tw = np.concatenate(self.wtimes)
            order = np.lexsort((tw, pg))
            self.ptimes = tw[order]
            self.pzero = np.concatenate(self.wzero)[order]
        # the pages whose zero-ness changes at all (most pages a guest
        # writes are never zero): zero_at() looks only these up
        differ = self.pzero != np.repeat(self.zero0, counts)
        nz = np.flatnonzero(counts)
        self.varies = np.zeros(n, dtype=bool)
        if len(nz):
            self.varies[nz] = np.add.reduceat(differ, self.pstart[nz]) > 0

    def zero_at(self, pages, t):
        """Whether each of pages is zero at migration time t: as the latest
        window that wrote it before t left it (the trace replayed past its
        end), else as the baseline found it."""
        z = self.zero0[pages]
        T = self.length
        if T <= 0 or not len(pages):
            return z
        k = int(t // T)
        r = t - k * T
        w = np.flatnonzero(self.varies[pages])
        if not len(w):
            return z
        lo, hi = self.pstart[pages[w]], self.pstart[pages[w] + 1]
        # a, vectorised bisection: the first write of each page at or after r
        a, b = lo.copy(), hi.copy()
        last = len(self.ptimes) - 1
        while True:
            act = a < b
            if not act.any():
                break
            mid = (a + b) >> 1
            before = act & (self.ptimes[np.minimum(mid, last)] < r)
            a = np.where(before, mid + 1, a)
            b = np.where(act & ~before, mid, b)
        inc = a > lo
        z[w[inc]] = self.pzero[a[inc] - 1]
        if k >= 1:
            # none yet in this pass of the trace: the last of the pass before
            prev = ~inc
            z[w[prev]] = self.pzero[hi[prev] - 1]
        return z

    def writes(self, a, b):
        """The writes in migration time [a, b): (pages, times, zero), window
        after window (within a window in no particular order: a window lists
        a page once), and whether the trace was replayed past its end for
        them."""
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool))
        T = self.length
        if T <= 0 or b <= a:
            return empty + (False,)
        pages, times, zero = [], [], []
        k = int(a // T)
        while k * T < b:
            lo, hi = max(a - k * T, 0.0), min(b - k * T, T)
            i0 = int(np.searchsorted(self.ends, lo, side='right'))
            i1 = int(np.searchsorted(self.starts, hi, side='left'))
            # a window of length 0 holds its writes at its start
            i0 = min(i0, int(np.searchsorted(self.ends, lo, side='left')))
            for w in range(i0, min(i1, len(self.ends))):
                tw = self.wtimes[w]
                first, bmin, bmax = self.wbucket[w]
                # the buckets with a time in [lo, hi): times ascend from
                # bucket to bucket, not within one
                b0 = int(np.searchsorted(bmax, lo, side='left'))
                b1 = int(np.searchsorted(bmin, hi, side='left'))
                if b1 <= b0:
                    continue
                ends = first[1:]
                # whole buckets as a slice; only the edge ones filtered by time
                m0 = b0 + (bmin[b0] < lo)
                m1 = b1 - (bmax[b1 - 1] >= hi)
                parts = []
                for e in ([b0] if m0 > b0 else []) + ([b1 - 1] if m1 < b1 and b1 - 1 >= m0 else []):
                    j0 = int(first[e])
                    j1 = int(ends[e]) if e < len(ends) else len(tw)
                    t = tw[j0:j1]
                    parts.append(np.flatnonzero((t >= lo) & (t < hi)) + j0)
                if m1 > m0:
                    j1 = int(ends[m1 - 1]) if m1 - 1 < len(ends) else len(tw)
                    parts.append(slice(int(first[m0]), j1))
                for sel in parts:
                    if isinstance(sel, slice) or len(sel):
                        pages.append(self.wpages[w][sel])
                        times.append(tw[sel] + k * T)
                        zero.append(self.wzero[w][sel])
            k += 1
        extrapolated = b > T
        if not pages:
            return empty + (extrapolated,)
        return (np.concatenate(pages), np.concatenate(times), np.concatenate(zero),
                extrapolated)


class Simulation:
    def __init__(self, trace, params):
        self.tr = tr = trace
        self.p = p = params
        n = tr.npages
        self.ps = ps = tr.page_size
        self.accel = p.accel or tr.accel
        # KVM's dirty bitmap with manual protect has the lazy clear; TCG, the
        # dirty ring (and qtest, no guest) re-arm at the sync.
        self.lazy = self.accel == 'kvm'
        shift = min(max(int(p.clear_bitmap_shift), CLEAR_BITMAP_SHIFT_MIN),
                    CLEAR_BITMAP_SHIFT_MAX)           # ram_list_init_bitmaps
        self.shift = shift
        sp = tr.space
        in_block = np.arange(n, dtype=np.int64) - sp.block_base[sp.block_of]
        nchunks = -(-sp.block_pages // (1 << shift))
        self.chunk_base = np.concatenate(([0], np.cumsum(nchunks)[:-1])).astype(np.int64)
        self.chunk_of = self.chunk_base[sp.block_of] + (in_block >> shift)
        self.nchunks = int(nchunks.sum())

        # zero-page-detection multifd (QEMU's default) without multifd
        # detects zero pages like legacy (ram_save_target_page)
        self.zdp_none = p.zero_page_detection == 'none'
        self.link = float(p.link_bandwidth)
        if p.zero_page_s is not None:
            self.zero_page_s = float(p.zero_page_s)
            self.zero_cost_source = 'parameter'
        elif tr.zero_page_s is not None:
            self.zero_page_s = tr.zero_page_s
            self.zero_cost_source = 'log'
        else:
            self.zero_page_s = ps / float(p.zero_scan_rate)
            self.zero_cost_source = 'zero-scan-rate'
        self.sync_s = p.sync_s if p.sync_s is not None else (
            tr.sync_s if tr.sync_s is not None else 0.001)
        self.rate_max = int(p.max_bandwidth) // XFER_LIMIT_RATIO   # migration_rate_set
        self.dl_ms = p.downtime_limit_s * 1000

        # State
        # rb->bmap: all ones (ram_init_bitmaps), but for what a virtio-mem
        # device has not plugged (ramblock_dirty_bitmap_clear_discarded_pages),
        # which the baseline does not list
        self.pending = np.ones(n, dtype=bool)
        if tr.log.iters and tr.log.iters[0].total < n:
            self.pending[:] = False
            self.pending[tr.space.pages(tr.log.iters[0])] = True
        self.npending = int(self.pending.sum())
        # normal pages the destination has received: the first one into a
        # page faults the destination's RAM in (ram_load_precopy reads the
        # page straight into the host page, qemu_get_buffer); later ones do not
        self.at_dest = np.zeros(n, dtype=bool)
        self.dest_free = 0.0                        # when the destination has loaded all sent
        self.dest_model = any((p.dest_page_s, p.dest_first_page_s, p.dest_zero_s,
                               p.dest_zero_first_s))
        # any page record received: a zero page's check there
        # (ram_handle_zero -> buffer_is_zero) reads the host page, a read
        # fault the first time
        self.seen_dest = np.zeros(n, dtype=bool)
        # The dirty log (KVM's, or ram_list's for TCG) is not kept page by
        # page as the guest writes: a sync works out what it holds from the
        # writes since each page's tracking was last re-armed (sync()), so
        # the cost of a simulation grows with the syncs and the pages sent,
        # not with the guest's writes.  snap: the pages the last sync
        # reported (KVM: their bits stay in the log until their chunk is
        # cleared); clear_time: when each chunk was cleared since (inf: not
        # yet).  KVM_DIRTY_LOG_INITIALLY_SET: every page starts dirty in
        # KVM's log, as if reported and never cleared.
        self.snap = np.full(n, self.lazy, dtype=bool)
        self.clear_time = np.full(self.nchunks, np.inf)
        self.clear_pending = np.zeros(self.nchunks, dtype=bool)   # rb->clear_bmap
        self.last_sync = 0.0
        # migration time t is trace time t + off (--start-phases)
        self.off = float(p.start_s) % tr.length if tr.length > 0 else 0.0
        self.cursor = 0
        self.last_block = -1
        self.extrapolated = False
        self.syncs = 0

    # -- the guest ------------------------------------------------------

    def sync(self, t):
        """migration_bitmap_sync: the dirty log into the migration bitmap.
        Returns the pages newly set.

        A page is in the log at t when it was written since its tracking
        was re-armed, x: the last sync for TCG and the dirty ring, whose
        sync re-arms at once.  KVM's dirty bitmap re-arms a page the last
        sync reported only when its chunk is cleared (the log bit stays set
        until then, and a write before the clear is absorbed); any other
        page since the last sync.  The writes in [x, t) are those the trace
        lists in that span, replayed past its end; a span as long as the
        trace holds every page it ever writes."""
        tr = self.tr
        n = tr.npages
        T = tr.length
        s0 = self.last_sync
        if self.lazy:
            ct = self.clear_time[self.chunk_of]
            x = np.where(self.snap, ct, s0)
            logged = self.snap & np.isinf(ct)
        else:
            x = None
            logged = np.zeros(n, dtype=bool)
        lo = s0 if T <= 0 else max(s0, t - T)
        pages, times, _, extra = tr.writes(lo + self.off, t + self.off)
        if self.off:
            times = times - self.off
        self.extrapolated |= extra
        if len(pages):
            if x is None:
                logged[pages] = True
            else:
                logged[pages[times >= x[pages]]] = True
        if T > 0 and t - s0 >= T:
            logged |= tr.ever & ((x <= t - T) if x is not None else True)
        new = logged & ~self.pending
        found = int(np.count_nonzero(new))
        self.pending |= logged
        self.npending += found
        if self.lazy:
            # cpu_physical_memory_sync_dirty_bitmap: clear_bmap_set over the
            # whole block; KVM's bits stay until the chunk is cleared.
            self.snap = logged
            self.clear_time[:] = np.inf
            self.clear_pending[:] = True
        self.last_sync = t
        self.syncs += 1
        return found

    # -- sending ----------------------------------------------------------

    def _next_pending(self, count):
        """Up to count pending pages in migration order from the cursor,
        wrapping at the end (find_dirty_block)."""
        n = self.tr.npages
        out = []
        got = 0
        width = max(4 * count, 4096)
        # [cursor, n) then [0, cursor)
        for lo, hi in ((self.cursor, n), (0, self.cursor)):
            pos = lo
            while got < count and pos < hi:
                end = min(pos + width, hi)
                idx = np.flatnonzero(self.pending[pos:end])[:count - got] + pos
                out.append(idx)
                got += len(idx)
                pos = end
                width *= 2
        if not out:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(out)

    def _dest(self, idx, is_zero, wire, cbytes, ctime, dcur):
        """The destination as a stage of its own: page j arrives when the
        source has sent it (ctime_j) and is loaded (ram_load_precopy) after
        the pages before it, D_j = max(D_j-1, arrival_j) + d_j, from dcur,
        its work left when the batch began.  The source's write blocks while
        more than socket_buffer_bytes are in flight (qemu_fflush ->
        qio_channel_writev_all on a blocking socket): page j cannot leave
        before the destination has taken everything but the last
        socket_buffer_bytes, S_j = max(S_j-1 + s_j, D_k), k the last page more
        than that before j (within the batch: the first ones of a batch
        are not held back).  Returns the source's times and D (relative to
        the call's start)."""
        p = self.p
        d = np.where(is_zero,
                     np.where(self.seen_dest[idx], p.dest_zero_s, p.dest_zero_first_s),
                     np.where(self.at_dest[idx], p.dest_page_s, p.dest_first_page_s))
        cd = np.cumsum(d)
        # D_j = cd_j + max(dcur, max_k<=j (arrival_k - cd_k-1))
        dfin = cd + np.maximum(dcur, np.maximum.accumulate(ctime - (cd - d)))
        k = np.searchsorted(cbytes, cbytes - p.socket_buffer_bytes, side='left')
        gate = np.where(k > 0, dfin[np.maximum(k - 1, 0)], -np.inf)
        base = ctime
        src = base + np.maximum(0.0, np.maximum.accumulate(gate - base))
        # arrivals later than the source-only times: the destination's
        # finish is at least each arrival + its cost
        dfin = np.maximum(dfin, cd + np.maximum.accumulate(src - (cd - d)))
        return src, dfin

    def send(self, t, limited):
        """One ram_save_iterate (limited) or the rest of ram_save_complete.
        Returns (seconds, bytes, normal pages, zero pages); records when
        each chunk was cleared (KVM), for the next sync.  A page goes as
        zero or not as it was at the call's start: the guest's writes during
        the call are seen by the next one."""
        ps = self.ps
        link = self.link
        elapsed = 0.0
        nbytes = 0
        normal_n = zero_n = 0
        flushed = 0         # bytes flushed in this call so far
        fill = 0.0          # how full the QEMUFile's iovec / buffer is, in flushes
        count = 0           # pages sent in this call (the i of ram_save_iterate)
        dcur = max(self.dest_free - t, 0.0)   # the destination's work left, from t
        clear_ids, clear_times = [], []
        batch = 256
        if limited and self.rate_max:
            batch = max(256, 2 * self.rate_max // ps)
        while self.npending:
            idx = self._next_pending(batch)
            if not len(idx):
                break
            blk = self.tr.space.block_of[idx]
            prev = np.concatenate(([self.last_block], blk[:-1]))
            change = blk != prev
            is_zero = self.tr.zero_at(idx, t + self.off) & (not self.zdp_none)
            wire = HEADER + np.where(change, 1 + self.tr.idlen[blk], 0) + np.where(is_zero, 1, ps)
            ptime = wire / link + np.where(is_zero, self.zero_page_s, 0.0) + self.p.page_cpu_s
            cbytes = np.cumsum(wire)
            ctime = elapsed + np.cumsum(ptime)
            if self.dest_model:
                ctime, dfin = self._dest(idx, is_zero, wire, cbytes, ctime, dcur)
            m = len(idx)
            stop = m
            if limited:
                # the QEMUFile is flushed every MAX_IOV_SIZE iovecs (two per
                # normal page) or IO_BUF_SIZE buffered bytes
                f = np.where(is_zero, wire / IO_BUF_SIZE, 2.0 / MAX_IOV_SIZE)
                cfill = fill + np.cumsum(f)
                flush = np.floor(cfill) > np.floor(np.concatenate(([fill], cfill[:-1])))
                # bytes of this call counted (flushed) after each page
                fb = np.maximum.accumulate(np.where(flush, nbytes + cbytes, flushed))
                # bytes counted when page j is considered
                before = self.wb + np.concatenate(([flushed], fb[:-1]))
                if self.rate_max:
                    over = np.flatnonzero(before > self.rate_max)
                    if len(over):
                        stop = min(stop, int(over[0]))
                k = count + np.arange(m)
                waited = np.flatnonzero(((k & 63) == 0) & (ctime >= MAX_WAIT + 0.001))
                if len(waited):
                    stop = min(stop, int(waited[0]) + 1)
            if stop == 0:
                break
            sent = idx[:stop]
            self.pending[sent] = False
            if self.dest_model:
                self.at_dest[sent[~is_zero[:stop]]] = True
                self.seen_dest[sent] = True
            self.npending -= stop
            self.cursor = int(sent[-1]) + 1
            if self.cursor >= self.tr.npages:
                self.cursor = 0
            self.last_block = int(blk[stop - 1])
            if self.lazy:
                ch = self.chunk_of[sent]
                uc, first = np.unique(ch, return_index=True)
                want = self.clear_pending[uc]
                if want.any():
                    start_t = ctime[first] - ptime[first]
                    clear_ids.extend(uc[want].tolist())
                    clear_times.extend(start_t[want].tolist())
                    self.clear_pending[uc[want]] = False
            nz = int(np.count_nonzero(is_zero[:stop]))
            zero_n += nz
            normal_n += stop - nz
            nbytes += int(cbytes[stop - 1])
            elapsed = float(ctime[stop - 1])
            if self.dest_model:
                dcur = float(dfin[stop - 1])
            count += stop
            if limited:
                flushed = int(fb[stop - 1])
                fill = float(cfill[stop - 1])
            if stop < m:
                break
            batch *= 2
        if limited:
            nbytes += ITERATE_OVERHEAD
            elapsed += ITERATE_OVERHEAD / link
        if self.dest_model:
            self.dest_free = t + dcur
        if clear_ids:
            self.clear_time[clear_ids] = t + np.array(clear_times)
        if limited and 0 < self.tr.length < t + elapsed + self.off:
            self.extrapolated = True
        return elapsed, nbytes, normal_n, zero_n

    # -- the migration thread --------------------------------------------------

    def run(self):
        p = self.p
        tr = self.tr
        ps = self.ps
        rounds = []
        setup_bytes = 8 + int(sum(1 + tr.idlen + 8)) + 8 + 17 + 5   # ram_save_setup
        t = 0.0
        self.sync(0.0)                  # ram_init_bitmaps: dirty-sync-count 1
        t += self.sync_s
        self.wb = setup_bytes           # bytes counted in this window
        # The first window began when the migration thread started, before
        # the setup (update_iteration_initial_status in migration_thread)
        # qmp_migrate (migrate_init: start_time) to the setup sync: the
        # connection, migration_thread, qemu_savevm_state_setup
        setup = p.setup_s if p.setup_s is not None else self.sync_s
        ws = -setup                     # the window's start (iteration_start_time)
        threshold = 0.0                 # s->threshold_size, 0 at migrate_init
        total_bytes = setup_bytes
        cur = {'start_s': 0.0, 'pages': 0, 'normal_pages': 0, 'zero_pages': 0, 'bytes': 0}
        total_normal = total_zero = 0
        bandwidth_ms = None
        why = None
        eps = 1e-9
        last_pending = []
        series = [] if p.series else None
        if series is not None:
            series.append((0.0, self.npending * ps, 'start'))   # round 0's start_s
        while True:
            if t > p.max_time_s:
                why = f'no switchover within {p.max_time_s:g} s'
                break
            if len(rounds) >= p.max_rounds:
                why = f'no switchover within {p.max_rounds} rounds'
                break
            if not (self.rate_max and self.wb > self.rate_max):
                # migration_iteration_run
                pending = self.npending * ps           # ram_state_pending_estimate
                if pending < threshold:
                    found = self.sync(t)               # ram_state_pending_exact
                    t += self.sync_s
                    pending = self.npending * ps
                    cur.update(end_s=t, length_s=t - cur['start_s'], dirty_pages=found,
                               pending_bytes=pending, threshold_bytes=threshold)
                    rounds.append(cur)
                    cur = {'start_s': t, 'pages': 0, 'normal_pages': 0, 'zero_pages': 0,
                           'bytes': 0}
                    if series is not None:
                        series.append((t, pending, 'sync'))
                    last_pending.append((pending, threshold))
                    if self.extrapolated and len(last_pending) >= 2 * STEADY_ROUNDS:
                        recent = last_pending[-STEADY_ROUNDS:]
                        before = last_pending[-2 * STEADY_ROUNDS:-STEADY_ROUNDS]
                        low = min(x for x, _ in recent)
                        if (low >= max(th for _, th in recent) and
                                low >= 0.99 * min(x for x, _ in before)):
                            why = (f'steady: {STEADY_ROUNDS} rounds in a row each left at '
                                   f'least {low / 2**20:.1f} MiB pending, no less than the '
                                   f'{STEADY_ROUNDS} before, above the threshold '
                                   f'({threshold / 2**20:.1f} MiB)')
                            break
                if pending == 0 or pending < threshold:
                    break                               # migration_completion
                if series is not None:
                    series.append((t, self.npending * ps, 'iterate'))
                dt, nb, nn, nz = self.send(t, True)     # ram_save_iterate
                t += dt
                if series is not None:
                    series.append((t, self.npending * ps, 'sent'))
                self.wb += nb
                total_bytes += nb
                cur['pages'] += nn + nz
                cur['normal_pages'] += nn
                cur['zero_pages'] += nz
                cur['bytes'] += nb
                total_normal += nn
                total_zero += nz
            # migration_rate_limit -> migration_update_counters
            if t - ws >= BUFFER_DELAY - eps:
                bandwidth_ms = self.wb / ((t - ws) * 1000)
                if p.avail_switchover_bandwidth:
                    threshold = p.avail_switchover_bandwidth / 1000 * self.dl_ms
                else:
                    threshold = bandwidth_ms * self.dl_ms
                ws = t
                self.wb = 0
            if self.rate_max and self.wb > self.rate_max:
                t = max(t, ws + BUFFER_DELAY)           # sleep to the window's end

        res = {
            'converges': why is None,
            'rounds': len(rounds),
            'dirty_sync_count': self.syncs,
            'round_list': rounds,
            'extrapolated': self.extrapolated,
            'accel': self.accel,
            'lazy_clear': self.lazy,
            'clear_bitmap_shift': self.shift,
            'zero_page_s': self.zero_page_s,
            'zero_page_cost_from': self.zero_cost_source,
            'sync_s': self.sync_s,
            'normal_pages': total_normal,
            'zero_pages': total_zero,
            'precopy_bytes': total_bytes,
            'last_bandwidth_bytes_s': bandwidth_ms * 1000 if bandwidth_ms is not None else None,
            'threshold_bytes': threshold,
        }
        if series is not None:
            res['series'] = series
        if why is not None:
            res.update(total_s=None, downtime_s=None, sent_bytes=None, why=why,
                       stuck_bytes=self.npending * ps, time_simulated_s=t)
            res['round_s'] = [r['length_s'] for r in rounds]
            return res
        if cur['pages'] or not rounds:
            # the VM stopped with nothing pending and no sync since the last
            # round's end (threshold still 0): close the round at the stop
            cur.update(end_s=t, length_s=t - cur['start_s'], dirty_pages=0,
                       pending_bytes=self.npending * ps, threshold_bytes=threshold)
            rounds.append(cur)
        # migration_completion -> ram_save_complete: the VM is stopped
        stop_t = t
        if series is not None:
            series.append((t, self.npending * ps, 'stop'))
        # migration_completion_precopy: migration_stop_vm (vm_stop_force_state),
        # then qemu_savevm_state_complete_precopy: ram_save_complete (the
        # final sync, every page left, rate limit off: migration_rate_set(
        # RATE_LIMIT_DISABLED) in migration_switchover_start), the devices'
        # state (qemu_savevm_state_complete_precopy_non_iterable), the
        # flush; migration_completion_end ends the downtime.  completion_s,
        # when calibrated, is all of that but the RAM pages.
        found = self.sync(t)
        t += self.sync_s if p.completion_s is None else 0.0
        left = self.npending
        if series is not None:
            series.append((t, left * ps, 'final-sync'))
        dt, nb, nn, nz = self.send(t, False)
        t += dt + 8 / self.link                          # + RAM_SAVE_FLAG_EOS
        nb += 8
        ram_downtime_bytes = nb      # ram_transferred_add: RAM only in downtime-bytes
        if p.completion_s is None:
            t += p.device_state_bytes / self.link
        else:
            t += p.completion_s
        nb += p.device_state_bytes
        if series is not None:
            series.append((t, self.npending * ps, 'done'))
        downtime = t - stop_t
        res.update(
            rounds=len(rounds), round_s=[r['length_s'] for r in rounds],
            total_s=setup + t, setup_s=setup, downtime_s=downtime, sent_bytes=total_bytes + nb,
            downtime_bytes=ram_downtime_bytes, device_state_bytes=p.device_state_bytes,
            final_dirty_pages=found, final_pages=left,
            normal_pages=total_normal + nn, zero_pages=total_zero + nz,
            switchover_s=setup + stop_t, dirty_sync_count=self.syncs)
        return res


def simulate(trace, params):
    return Simulation(trace, params).run()


def search_min(trace, params, what, lo, hi, steps=8, ratio=1.05):
    """The smallest value of params.<what> in (lo, hi] at which the migration
    converges, by bisection over the simulator (in log space).  Assumes more
    is better.  Returns (value, result) or (None, None) when hi does not
    converge either."""
    top = simulate(trace, params.copy(**{what: hi}))
    if not top['converges']:
        return None, None
    best = (hi, top)
    for _ in range(steps):
        if best[0] / lo <= ratio:
            break
        mid = math.sqrt(lo * best[0])
        r = simulate(trace, params.copy(**{what: mid}))
        if r['converges']:
            best = (mid, r)
        else:
            lo = mid
    return best
