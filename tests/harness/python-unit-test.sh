#!/bin/bash
# Run the unit tests of the analyzer (analyzer/btrace; analyzer/tests, unittest).
# Exit 0 = pass, 1 = fail (also without python3-numpy or python3-matplotlib,
# which make deps installs).
set -uo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
if ! "$py" -c 'import numpy' 2>/dev/null; then
    echo "python-unit-test: FAIL: $py has no numpy (Debian's python3-numpy; make deps)"
    exit 1
fi
if ! "$py" -c 'import matplotlib' 2>/dev/null; then
    echo "python-unit-test: FAIL: $py has no matplotlib (Debian's python3-matplotlib; make deps)"
    exit 1
fi
cd "$top/analyzer" || exit 1
if "$py" -m unittest discover -s tests -t . "$@"; then
    exit 0
fi
exit 1
