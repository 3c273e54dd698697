#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""analyzer-bench.py: how fast bt-report reads a log, text and binary; the
code is scripts/measure/analyzer_bench.py (its --help says more).  The
analyzer's btrace package comes from PYTHONPATH=scripts:analyzer."""

import sys

from measure.analyzer_bench import main

if __name__ == '__main__':
    sys.exit(main())
