#!/bin/bash
# Every per-base queue patches/X.Y/ (docs/qemu-bases.md) holds the same
# patches as patches/, in the same order and with the same subjects: a
# patch added to or renamed in patches/ must be rebased into each queue.
# Exit 0 = pass, 77 = skip (no other queue), anything else = fail.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)

names() { grep -v '^[[:space:]]*\(#\|$\)' "$1/series"; }
subject() { sed -n 's/^Subject: //p;/^$/q' "$1" | head -1; }

queues=$(cd "$top/patches" && ls -d */ 2>/dev/null | tr -d / | while read -r d; do
    [ -f "$top/patches/$d/series" ] && echo "$d"; done)
[ -n "$queues" ] || { echo "SKIP: no queue but patches/"; exit 77; }

fail=0
for q in $queues; do
    if ! out=$(diff <(names "$top/patches") <(names "$top/patches/$q") 2>&1); then
        echo "FAIL: patches/$q/series differs from patches/series:"
        echo "$out" | sed 's/^/    /'
        fail=1
        continue
    fi
    for p in $(names "$top/patches"); do
        a=$(subject "$top/patches/$p") b=$(subject "$top/patches/$q/$p")
        if [ "$a" != "$b" ]; then
            echo "FAIL: $q/$p: subject \"$b\", patches/ has \"$a\""
            fail=1
        fi
    done
    echo "patches/$q: $(names "$top/patches/$q" | wc -l) patches, as patches/"
done
exit $fail
