# SPDX-License-Identifier: GPL-2.0-or-later
"""measure: the harness that measures bitmap-trace and bt-report on real
QEMUs (make validate, make bench).

  measure.guest           the guests, the QEMU children, a real migration
  measure.machine         what the host is (CPU, memory, kernel, QEMU, KVM)
  measure.markdown        Markdown tables and the dated results files
                          under docs/results/
  measure.validate        make validate: bt-report's predictions against
                          real migrations (measure.calibrate: the host's
                          costs; measure.compare: the errors and the table)
  measure.bench           make bench: what a trace costs the guest and the
                          host (measure.analyzer_bench: the analyzer alone)

Run with PYTHONPATH=scripts:analyzer (the Makefile sets it), e.g.
`python3 -m measure.validate --list`; scripts/validate.py and
scripts/bench.py are the same entry points.
"""

import os
import sys

# The top of the source tree: scripts/measure/ is two levels below it
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1024 * 1024
GIB = 1024 * MIB
# Debian's Python, which has numpy and matplotlib, for the bt-report runs
PY = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else sys.executable
