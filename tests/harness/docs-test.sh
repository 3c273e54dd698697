#!/bin/bash
# QEMU's manual, with the series' rst page and the QAPI reference generated
# from its schema, builds with QEMU's own sphinx setup and warnings as
# errors (make docs).  Exit 0 = pass, 77 = skip (the reason is printed).
set -uo pipefail
. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
/usr/bin/python3 -c 'import sphinx, sphinx_rtd_theme' 2>/dev/null ||
    skip "python3-sphinx or python3-sphinx-rtd-theme is not installed (make deps)"
make -s -C "$top" docs || fail "the manual does not build with -W"
html=$build/docs-obj/docs/manual/devel/migration/bitmap-trace.html
qmp=$build/docs-obj/docs/manual/interop/qemu-qmp-ref.html
grep -q 'Log format, version 3' "$html" || fail "$html lacks the log format"
grep -q 'query-bitmap-trace' "$qmp" || fail "$qmp lacks query-bitmap-trace"
echo "the manual builds with -W; bitmap-trace.html and the QMP reference have the series"
