#!/bin/bash
# The log bytes do not change (issue 17): a trace of a qtest-accel VM with
# fixed page writes between its rounds (tests/harness/log-bytes.py), in
# text and in binary, with its time fields masked, is compared byte for
# byte with tests/harness/golden/log-bytes.{txt,bin}.  The golden files
# were written by the tracer before it was split into bitmap-trace.c,
# bitmap-trace-round.c and bitmap-trace-log.c:
#   tests/harness/log-bytes.py run QEMU text LOG
#   tests/harness/log-bytes.py mask text LOG tests/harness/golden/log-bytes.txt
# (the same with binary).  log-bytes.py says which fields are masked.
# They were written again so when the logs gained the vCPUs' run times
# (text v3, binary v4; issue 20): the version, and a vcpus line (binary:
# the vCPU count and the masked times in each iteration record) after each
# iteration; nothing else changed.
# Exit 0 = pass, 77 = skip (the reason is printed), anything else = fail.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$top/build}
qemu=${QEMU:-$build/qemu-system-x86_64}
golden=$top/tests/harness/golden
py=/usr/bin/python3
[ -x "$py" ] || py=python3

[ -x "$qemu" ] || { echo "SKIP: $qemu not built"; exit 77; }

tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

fail=0
for fmt in text binary; do
    ext=txt
    [ "$fmt" = binary ] && ext=bin
    "$py" "$top/tests/harness/log-bytes.py" run "$qemu" "$fmt" "$tmp/log.$ext"
    "$py" "$top/tests/harness/log-bytes.py" mask "$fmt" "$tmp/log.$ext" \
        "$tmp/masked.$ext"
    if [ "$fmt" = text ]; then
        # the golden files are of one QEMU release (the default base)
        want=$(sed -n 's/^meta qemu=\([^ ]*\) .*/\1/p' "$golden/log-bytes.txt")
        got=$(sed -n 's/^meta qemu=\([^ ]*\) .*/\1/p' "$tmp/masked.txt")
        if [ "$want" != "$got" ]; then
            echo "SKIP: the golden logs are of QEMU $want, this is $got"
            exit 77
        fi
    fi
    if cmp -s "$golden/log-bytes.$ext" "$tmp/masked.$ext"; then
        echo "$fmt log: $(wc -c < "$tmp/masked.$ext") bytes, as the golden file"
    else
        echo "FAIL: the $fmt log differs from tests/harness/golden/log-bytes.$ext:"
        if [ "$fmt" = text ]; then
            diff -u "$golden/log-bytes.txt" "$tmp/masked.txt" | head -40 || true
        else
            cmp -l "$golden/log-bytes.bin" "$tmp/masked.bin" | head -20 || true
            cmp "$golden/log-bytes.bin" "$tmp/masked.bin" || true
        fi
        fail=1
    fi
done
exit $fail
