#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench.py: make bench's entry point; the code is scripts/measure/bench.py.

Python puts this script's directory, scripts/, first on the path, so the
measure package is found; the analyzer's btrace package comes from
PYTHONPATH (make bench sets PYTHONPATH=scripts:analyzer).
"""

import sys

from measure.bench import main

if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
