# SPDX-License-Identifier: GPL-2.0-or-later
"""The rules of the format that span records: the counts of an iteration
against the ranges it lists, the block maps, every PFN in a block's map,
the baseline listing no more than all RAM, the end line's count, no vCPU
running longer than its window (v3).  Both readers run them:
check_counts() per iteration, check_log() once the log is read.
"""

import numpy as np

from .textlog import LogError

def check_log(log):
    if not log.blocks:
        raise LogError('no block line: the log names no traced RAM')
    check_map(log)
    check_pfns_mapped(log)
    check_baseline(log)
    check_vcpus(log)
    check_end(log)


def _ascending_per_block(it, ranges, what):
    seen = {}
    for block, a, b in ranges:
        prev = seen.get(block)
        if prev is not None and a <= prev + 1:
            raise LogError(f'line {it.lineno}: iteration {it.n}: {what} pages of '
                           f'{block} are not ascending, disjoint and not adjacent')
        seen[block] = b


def _subset(small, big):
    """Is every range of the ascending list small inside a range of big?
    Both are ascending, disjoint and not adjacent, so a range of small lies
    inside one range of big or is not covered.  Returns the first range that
    is not covered, or None."""
    j = 0
    for a, b in small:
        while j < len(big) and big[j][1] < a:
            j += 1
        if j >= len(big) or big[j][0] > a or big[j][1] < b:
            return (a, b)
    return None


def check_counts(it, ranges_checked=False):
    """dirty counts every page listed, on pfns and unmapped lines alike;
    unmapped counts those on unmapped lines; v2: zero counts those on zero
    and unmapped-zero lines, each a subset of its pfns or unmapped lines."""
    if it.unmapped_count != it.unmapped:
        raise LogError(f'line {it.lineno}: iteration {it.n} says unmapped={it.unmapped} '
                       f'but lists {it.unmapped_count} unmapped pages')
    if it.pfn_count + it.unmapped_count != it.dirty:
        raise LogError(f'line {it.lineno}: iteration {it.n} says dirty={it.dirty} '
                       f'but lists {it.pfn_count + it.unmapped_count} pages '
                       f'({it.pfn_count} mapped, {it.unmapped_count} unmapped)')
    _ascending_per_block(it, it.unmapped_pages, 'unmapped')
    if it.zero is None:
        return
    _ascending_per_block(it, it.unmapped_zero, 'unmapped-zero')
    if it.zero_count != it.zero:
        raise LogError(f'line {it.lineno}: iteration {it.n} says zero={it.zero} '
                       f'but lists {it.zero_count} zero pages')
    bad = None if ranges_checked else _subset(it.zero_pfns, it.pfns)
    if bad:
        raise LogError(f'line {it.lineno}: iteration {it.n}: zero pfn range '
                       f'{bad[0]:x}-{bad[1]:x} is not among its pfns')
    blocks = sorted({blk for blk, _, _ in it.unmapped_zero})
    for blk in blocks:
        small = [(a, b) for x, a, b in it.unmapped_zero if x == blk]
        big = [(a, b) for x, a, b in it.unmapped_pages if x == blk]
        bad = _subset(small, big)
        if bad:
            raise LogError(f'line {it.lineno}: iteration {it.n}: unmapped-zero page '
                           f'{blk}:{bad[0]:x}-{bad[1]:x} is not among its unmapped pages')


def check_map(log):
    spans = []
    for b in log.blocks:
        for first, npages in b['map']:
            if npages == 0:
                raise LogError(f'block {b["name"]}: empty map range at pfn {first:x}')
            spans.append((first, first + npages - 1, b['name']))
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 <= a1:
            raise LogError(f'blocks {an} and {bn} are both mapped at pfn {b0:x}')
    log.map = spans


def check_pfns_mapped(log):
    """Every logged PFN must lie in a block's map, at the start or that of a
    block added during the trace."""
    spans = sorted(log.map + [(first, first + n - 1, b['name'])
                              for b in log.added for first, n in b['map']])
    # adjacent spans joined: a range lies in one of them or is not mapped
    joined = []
    for a, b, _ in spans:
        if joined and a == joined[-1][1] + 1:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    starts = [a for a, _ in joined]
    ends = np.array([b for _, b in joined] + [-1])

    def mapped(firsts, lasts):
        k = np.searchsorted(starts, firsts, side='right') - 1
        return ((k >= 0) & (np.asarray(lasts) <= ends[k])).all()

    def all_mapped(firsts, lasts):
        """mapped() of ranges ascending, disjoint and not adjacent: the
        ranges that start in each joined span (few), found by bisection,
        must be all of them and end in it"""
        lo = np.searchsorted(firsts, jstarts, side='left')
        hi = np.searchsorted(firsts, ends[:-1], side='right')
        if int((hi - lo).sum()) != len(firsts):
            return False
        full = hi > lo
        return bool((lasts[hi[full] - 1] <= ends[:-1][full]).all())

    bad = None
    whole = log.all_pfns
    if whole is not None:
        # the fast path's iterations each ascending: bisect them when they
        # are large, instead of bisecting every range
        if len(whole) < 64 * len(log.iters):
            if mapped(whole[:, 0], whole[:, 1]):
                return
        else:
            jstarts = np.array(starts, dtype=np.int64)
            if all(all_mapped(it._pfns[:, 0], it._pfns[:, 1])
                   for it in log.iters if len(it._pfns)):
                return
    for it in log.iters:
        if not len(it._pfns):
            continue
        if isinstance(it._pfns, np.ndarray):
            firsts, lasts = it._pfns[:, 0], it._pfns[:, 1]
        else:
            firsts, lasts = zip(*it._pfns)
        if not mapped(firsts, lasts):
            bad = it
            break
    if bad is None:
        return
    for it in [bad]:
        j = 0
        for a, b in it.pfns:
            while j < len(spans) and spans[j][1] < a:
                j += 1
            # [a, b] may cross several adjacent spans.
            x = a
            k = j
            while x <= b:
                if k >= len(spans) or spans[k][0] > x:
                    raise LogError(f'line {it.lineno}: iteration {it.n} lists pfn {x:x}, '
                                   'which no block maps')
                x = spans[k][1] + 1
                k += 1


def check_baseline(log):
    if not log.iters:
        return
    base = log.iters[0]
    ram = sum(b['pages'] for b in log.blocks)
    # all of it, but for memory a virtio-mem device has not plugged, which
    # the tracer neither reads nor lists (format v2 logs of 2026-12 on)
    if base.total > ram:
        raise LogError(f'line {base.lineno}: the baseline (iteration 0) lists {base.total} '
                       f'pages, but the blocks hold {ram}')


# A vCPU's run time is its thread's CPU time between the vCPU time readings
# of two rounds, taken sync-us after each round's t-ms: no more than the
# window plus the later sync.  Slack for the three truncations to whole
# microseconds, and then some.
VCPU_SLACK_US = 1000


def check_vcpus(log):
    """v3: from iteration 1 on, no vCPU ran longer than its window (the
    baseline counts from each vCPU thread's start: anything goes)."""
    for prev, it in zip(log.iters, log.iters[1:]):
        if it.vcpu_run_us is None:
            continue
        window = round((it.t_ms - prev.t_ms) * 1000) + it.sync_us + VCPU_SLACK_US
        for k, us in enumerate(it.vcpu_run_us):
            if us > window:
                raise LogError(f'line {it.lineno + 1}: vCPU {k} ran {us} us in iteration '
                               f'{it.n}, longer than its window ({window - VCPU_SLACK_US} us)')


def check_end(log):
    if log.end is None:
        return
    windows = len(log.iters) - 1 if log.iters else 0
    if log.end['iterations'] != windows:
        raise LogError(f'end line: iterations={log.end["iterations"]}, but the log has '
                       f'{windows} iterations after the baseline')
    if log.end['status'] == 'completed' and windows != log.meta['iterations']:
        raise LogError(f'end line: status completed after {windows} iterations, '
                       f'but {log.meta["iterations"]} were asked for')
    if windows > log.meta['iterations']:
        raise LogError(f'{windows} iterations logged, more than the {log.meta["iterations"]} asked for')
