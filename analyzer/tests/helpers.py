# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared by the unit tests: bt-report as a command, small logs.

The tests are the package tests (run them from analyzer/ or with
analyzer/ as the top-level directory: python3 -m unittest discover -s
analyzer/tests -t analyzer), so btrace is importable; REPORT runs bt-report
as python3 -m btrace of that same package."""

import os
import sys

import btrace
from btrace import pages, parse, simulate, summary, synth  # noqa: F401

# bt-report of the btrace under test, whichever way it was found
REPORT = [sys.executable, '-m', 'btrace']
os.environ['PYTHONPATH'] = os.pathsep.join(
    [os.path.dirname(os.path.dirname(os.path.abspath(btrace.__file__)))] +
    [p for p in [os.environ.get('PYTHONPATH')] if p])

PAGE = 4096
NORMAL = 8 + PAGE        # save_page_header() + the page
ZERO = 8 + 1             # save_page_header() + the zero byte
ITER = 5 + 5 + 8         # section header, footer, RAM_SAVE_FLAG_EOS per ram_save_iterate


def setup_bytes(names):
    """ram_save_setup's stream: total size, then per block its idstr (with a
    length byte) and used_length, then EOS; the section's start header is
    1 + 4 + 1 + strlen("ram") + 4 + 4 and its footer 1 + 4."""
    return 8 + sum(1 + len(n) + 8 for n in names) + 8 + 17 + 5


def build(text, write_time='start'):
    log = parse.parse_text(text)
    space = pages.PageSpace(log)
    return log, space, simulate.Trace(log, space, write_time)


def run(trace, **kw):
    base = dict(sync_s=0.0, device_state_bytes=0, link_bandwidth=1e9, page_cpu_s=0.0, setup_s=0.0)
    base.update(kw)
    return simulate.simulate(trace, simulate.Params(**base))


def empty_windows(n, ms):
    return [((i + 1) * ms, [], []) for i in range(n)]

L_DEFAULT = 1e9          # the link the tests pass to bt-report: --link-bandwidth 1000MB/s
