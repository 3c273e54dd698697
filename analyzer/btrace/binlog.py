# SPDX-License-Identifier: GPL-2.0-or-later
"""The binary bitmap-trace log (formats v3 and v4): read it as text, and write it.

docs/devel/migration/bitmap-trace.rst ("Binary log") has the format.  A
binary log carries exactly what the text log (v2 for v3, v3 for v4) of the
same trace does,
and to_text() gives that text byte for byte, as QEMU would have written it;
parse.parse() reads a binary log through decode(), the same with numpy.

This module is the one to import; the work is done by

  binlog_format.py  the constants, the records, the Reader of their fields
  binlog_ref.py     to_text(): the reference reader, in Python
  binlog_fast.py    decode(): the numpy reader parse.parse() uses
  binlog_write.py   Writer and encode_set(): a log written as QEMU writes it
"""

from .binlog_fast import decode
from .binlog_format import (BITMAP, MAGIC, MAP, RANGES_PER_LINE, RUNS, USED, VERSION,
                            VERSIONS, BinLogError, Reader, is_binary, records)
from .binlog_ref import to_text
from .binlog_write import Writer, encode_set

__all__ = ['BITMAP', 'MAGIC', 'MAP', 'RANGES_PER_LINE', 'RUNS', 'USED', 'VERSION',
           'VERSIONS',
           'BinLogError', 'Reader', 'Writer', 'decode', 'encode_set', 'is_binary',
           'records', 'to_text']
