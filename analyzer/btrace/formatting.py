# SPDX-License-Identifier: GPL-2.0-or-later
"""Numbers for people, shared by the report, the figures and the CSV files."""

MIB = 1024 * 1024


def fmt_s(s):
    """Seconds for people: 4.2 ms, 420 ms, 4.20 s."""
    if s is None:
        return '-'
    if s < 0.01:
        return f'{s * 1000:.1f} ms'
    if s < 1:
        return f'{s * 1000:.0f} ms'
    return f'{s:.2f} s'


def plural(n, word):
    return f'{n} {word}' + ('' if n == 1 else 's')
