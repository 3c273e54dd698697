# SPDX-License-Identifier: GPL-2.0-or-later
"""The text log read line by line in Python: the reference reader.

parse_text_ref() reads any log and raises LogError with the line number of
the first thing wrong; the fast reader (textlog_fast.py) is checked against
it, and parse.parse() falls back on it whenever the fast one gives up.
"""

import re

from .checks import check_counts, check_log
from .textlog import Log, LogError, hex_range, read_head, read_records

RANGES_LINE = re.compile(r'[0-9a-f]+(?:-[0-9a-f]+)?(?: [0-9a-f]+(?:-[0-9a-f]+)?)*')


def fast_ranges(rest, dest):
    """Append the ranges of a well-formed line to dest; returns (pages, _),
    or (None, what is wrong with which range) when a range ends before it
    starts or is not above the one before it."""
    last = dest[-1][1] if dest else -2
    n = 0
    append = dest.append
    for tok in rest.split(' '):
        first, sep, end = tok.partition('-')
        a = int(first, 16)
        b = int(end, 16) if sep else a
        if b < a:
            return None, f'{tok} ends before it starts'
        if a <= last + 1:
            return None, (f'{tok} is not above the one before it (ranges are '
                          'ascending, disjoint and not adjacent)')
        append((a, b))
        n += b - a + 1
        last = b
    return n, None


def parse_text_ref(text):
    """Parse and validate the text of a log, line by line in Python: the
    reference the fast path (parse_text) is checked against, and what gives
    the error when the fast path finds one."""
    log = Log()
    if not text:
        raise LogError('the log is empty')
    if not text.endswith('\n'):
        raise LogError('the last line is incomplete (no newline at the end)')
    lines = text[:-1].split('\n')

    read_head(log, lines[0], lines[1] if len(lines) > 1 else None)
    items = ((i, *line.partition(' ')[::2]) for i, line in enumerate(lines[2:], start=3))
    read_records(log, items, _ref_ranges, check_counts)
    check_log(log)
    return log


def _ref_ranges(cur, word, rest, i):
    """A pfns or zero line, parsed and checked at once."""
    dest = cur._pfns if word == 'pfns' else cur._zero_pfns
    what = 'pfn' if word == 'pfns' else 'zero pfn'
    if RANGES_LINE.fullmatch(rest):
        # the common case, checked as a whole line: no per-token regex
        n, prev = fast_ranges(rest, dest)
        if n is None:
            raise LogError(f'line {i}: {what} range {prev}')
        if word == 'pfns':
            cur.pfn_count += n
        else:
            cur.zero_count += n
        return
    for tok in rest.split(' ') if rest else []:
        a, b = hex_range(tok, what, i)
        if dest and a <= dest[-1][1] + 1:
            raise LogError(f'line {i}: {what} range {tok} is not above the one before it '
                           '(ranges are ascending, disjoint and not adjacent)')
        dest.append((a, b))
        if word == 'pfns':
            cur.pfn_count += b - a + 1
        else:
            cur.zero_count += b - a + 1
