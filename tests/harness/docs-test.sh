#!/bin/bash
# QEMU's manual, with the series' rst page and the QAPI reference generated
# from its schema, builds with QEMU's own sphinx setup and warnings as
# errors (make docs).  Exit 0 = pass, 77 = skip (the reason is printed).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$top/build}
if ! /usr/bin/python3 -c 'import sphinx, sphinx_rtd_theme' 2>/dev/null; then
    echo "SKIP: python3-sphinx or python3-sphinx-rtd-theme is not installed (make deps)"
    exit 77
fi
make -s -C "$top" docs || { echo "FAIL: the manual does not build with -W"; exit 1; }
html=$build/docs-obj/docs/manual/devel/migration/bitmap-trace.html
qmp=$build/docs-obj/docs/manual/interop/qemu-qmp-ref.html
grep -q 'Log format, version 2' "$html" || { echo "FAIL: $html lacks the log format"; exit 1; }
grep -q 'query-bitmap-trace' "$qmp" || { echo "FAIL: $qmp lacks query-bitmap-trace"; exit 1; }
echo "the manual builds with -W; bitmap-trace.html and the QMP reference have the series"
