# SPDX-License-Identifier: GPL-2.0-or-later
"""The pages of a log as migration sees them.

PageSpace numbers every page of the traced RAM the way migration walks it:
block after block in the log's block order (the order of the block lines,
which is migration's RAMBLOCK_FOREACH_NOT_IGNORED order), and inside a block
in its page order.  A block's pages are its mapped pages and its unmapped
ones: the log gives the mapped ones as PFN segments (map=first+pages,...),
the unmapped ones by their page number in the block (block:page), and the
baseline (iteration 0) lists every page.  The block pages without a GPA at
the baseline are the baseline's unmapped pages; the others are given to the
segments in the order the segments are listed.  The log does not say which
page of its block a segment starts at, and the tracer lists the segments in
GPA order: that is the block's page order for ordinary RAM (pc.ram's parts
below and above 4 GiB), not for an aliased ROM such as pc.bios, whose last
32 pages show first at 0xe0000 (isa-bios): there the order of a few pages
within their block comes out wrong, which moves nothing but when they are
sent within the bulk round.  The map is the one taken when the trace
started: a later remap (firmware shadowing, a PCI BAR moved over RAM) is
not followed.
"""

import numpy as np


class PageSpace:
    """Migration page indexes (0..npages-1) for the pages of a log."""

    def __init__(self, log):
        self.log = log
        self.warnings = []
        blocks = log.blocks
        self.names = [b['name'] for b in blocks]
        self.index = {b['name']: i for i, b in enumerate(blocks)}
        sizes = np.array([b['pages'] for b in blocks], dtype=np.int64)
        self.block_pages = sizes
        self.block_base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.npages = int(sizes.sum())
        # block number of each page
        self.block_of = np.repeat(np.arange(len(blocks), dtype=np.int32), sizes)

        base_unmapped = {}
        if log.iters:
            for name, a, b in log.iters[0].unmapped_pages:
                base_unmapped.setdefault(name, []).append((a, b))
        seg_pfn, seg_len, seg_ord = [], [], []
        ord_to_index = []
        ordinal = 0
        for i, b in enumerate(blocks):
            um = np.zeros(b['pages'], dtype=bool)
            for a, z in base_unmapped.get(b['name'], []):
                um[a:z + 1] = True
            mapped = np.flatnonzero(~um)
            want = sum(n for _, n in b['map'])
            if want != len(mapped):
                self.warnings.append(
                    f'block {b["name"]}: its map has {want} pages but the baseline has '
                    f'{len(mapped)} mapped pages; the segments are laid on its pages in order')
                mapped = np.minimum(np.arange(want), max(b['pages'] - 1, 0))
            ord_to_index.append(self.block_base[i] + mapped)
            for first, n in b['map']:
                seg_pfn.append(first)
                seg_len.append(n)
                seg_ord.append(ordinal)
                ordinal += n
        order = np.argsort(np.array(seg_pfn, dtype=np.int64), kind='stable')
        self.seg_pfn = np.array(seg_pfn, dtype=np.int64)[order]
        self.seg_len = np.array(seg_len, dtype=np.int64)[order]
        self.seg_ord = np.array(seg_ord, dtype=np.int64)[order]
        self.ord_to_index = (np.concatenate(ord_to_index) if ord_to_index
                             else np.zeros(0, dtype=np.int64)).astype(np.int64)
        added = getattr(log, 'added', [])
        if added:
            self.warnings.append(
                'RAM was added during the trace (' +
                ', '.join(f'{b["name"]}: {b["pages"]} pages at iteration {b["added"]}'
                          for b in added) +
                '): migration refuses memory hotplug while it runs, so the prediction is '
                'for the RAM of the start, and writes to the RAM added are left out')
        gone = [b['name'] for b in log.blocks if b.get('removed') is not None]
        if gone:
            self.warnings.append(
                f'RAM was removed during the trace ({", ".join(gone)}): the prediction '
                'still sends it whole, as a migration started before the unplug would')

    # -- ranges to page indexes ---------------------------------------------

    @staticmethod
    def _expand(ranges):
        """Inclusive (first, last) ranges -> an int64 array of every number."""
        r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        if not len(r):
            return np.zeros(0, dtype=np.int64)
        lens = r[:, 1] - r[:, 0] + 1
        starts = np.repeat(r[:, 0] - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
        return starts + np.arange(int(lens.sum()), dtype=np.int64)

    def pfns_to_index(self, ranges):
        pfns = self._expand(ranges)
        if not len(pfns):
            return pfns
        j = np.searchsorted(self.seg_pfn, pfns, side='right') - 1
        inside = (j >= 0) & (pfns - self.seg_pfn[np.maximum(j, 0)] <
                             self.seg_len[np.maximum(j, 0)])
        if not inside.all():
            # the pages of RAM added during the trace, not in the start's map
            pfns, j = pfns[inside], j[inside]
        return self.ord_to_index[self.seg_ord[j] + (pfns - self.seg_pfn[j])]

    def unmapped_to_index(self, ranges):
        # the blocks of the start; RAM added during the trace is left out
        parts = [self.block_base[self.index[name]] + np.arange(a, b + 1, dtype=np.int64)
                 for name, a, b in ranges if name in self.index]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def pages(self, it):
        """Every page an iteration lists, as migration page indexes."""
        return np.concatenate((self.pfns_to_index(it.pfn_array),
                               self.unmapped_to_index(it.unmapped_pages)))

    def zero_pages(self, it):
        """The pages of a (v2) iteration that were all zero."""
        return np.concatenate((self.pfns_to_index(it.zero_array),
                               self.unmapped_to_index(it.unmapped_zero)))
