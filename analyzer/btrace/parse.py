# SPDX-License-Identifier: GPL-2.0-or-later
"""Read and validate a bitmap-trace log: text format v1 to v3, or binary v3 or v4.

A binary log (it starts with binlog.MAGIC) is read as the text log of the
same trace, which is checked like any other: binlog.decode() gives its lines
but the PFN ranges as arrays (what binlog.to_text() would write).

The format is docs/devel/migration/bitmap-trace.rst.  v2 is v1 plus zero-page
information:

  - the first line is "bitmap-trace v2";
  - each iter line also has zero=Z (how many of the iteration's dirty pages,
    mapped or not, were all zero bytes when scanned) and zero-us=T (how long
    that scan took); fields are read by key, not by position;
  - after an iteration's pfns and unmapped lines, optional "zero" lines (PFN
    ranges in the pfns syntax, a subset of the iteration's pfns) and
    "unmapped-zero" lines (block:first[-last], a subset of its unmapped
    pages), split over several lines like pfns.

v3 is v2 plus the vCPUs' run times: the first line is "bitmap-trace v3" and
each iter line is followed by a "vcpus run-us=U,U,..." line (one number per
vCPU, by cpu_index: the microseconds its thread ran in the window), read as
Iteration.vcpu_run_us (None in v1 and v2).  The binary v4 is v3 as binary
v3 is v2, its iteration records holding the run times.

parse() raises LogError with the line number on the first error.  The PFN
ranges are kept as (n, 2) int64 arrays of inclusive (first, last)
(Iteration.pfn_array, .zero_array; .pfns and .zero_pfns give them as lists
of tuples); pages.PageSpace turns them into page indexes.

This module is the one to import; the work is done by

  textlog.py       Log and Iteration, and the record reading both readers share
  textlog_fast.py  the fast path (numpy): reads valid logs, text or binary
  textlog_ref.py   parse_text_ref(), the line-by-line reader: reads any log
                   the fast path does not take, and gives the first error
  checks.py        the rules that span records, which both run
"""

from . import binlog
from .textlog import Iteration, Log, LogError
from .textlog_fast import parse_binary_fast, parse_text_fast
from .textlog_ref import parse_text_ref

__all__ = ['Iteration', 'Log', 'LogError', 'parse', 'parse_text', 'parse_text_ref',
           'read_text']


def read_text(path):
    """The text of the log at path: its own, or, for a binary log, the text
    QEMU would have written for the same trace."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise LogError(f'{path}: {e.strerror}')
    if binlog.is_binary(data):
        try:
            return binlog.to_text(data), True
        except binlog.BinLogError as e:
            raise LogError(f'binary log: {e}')
    try:
        return data.decode('utf-8'), False
    except UnicodeDecodeError as e:
        raise LogError(f'not UTF-8 text (byte {e.start})')


def parse(path):
    """Parse and validate a log file (text v1 to v3, binary v3 or v4); raise
    LogError on the first error."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise LogError(f'{path}: {e.strerror}')
    binary = binlog.is_binary(data)
    log = None
    if binary:
        log = parse_binary_fast(data)
    elif data.isascii():
        log = parse_text_fast(data)
    if log is None:
        # the reference: slower, and gives the first error
        text, binary = read_text(path)
        log = parse_text_ref(text)
    log.binary = binary
    return log


def parse_text(text):
    """Parse and validate the text of a log."""
    data = text.encode('utf-8', 'surrogatepass') if isinstance(text, str) else text
    log = parse_text_fast(data) if data.isascii() else None
    return log if log is not None else parse_text_ref(text)
