#!/bin/bash
# Every other per-base queue patches/X.Y/ (docs/qemu-bases.md) holds the same
# patches as the 10.0 queue, in the same order and with the same subjects: a
# patch added to or renamed in the 10.0 queue must be rebased into each queue.
# Exit 0 = pass, 77 = skip (no other queue), anything else = fail.
set -uo pipefail
. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp

names() { grep -v '^[[:space:]]*\(#\|$\)' "$1/series"; }
subject() { sed -n 's/^Subject: //p;/^$/q' "$1" | head -1; }

ref=$(base_queue 10.0)     # scripts/lib/base.sh
queues=$(cd "$top/patches" && ls -d */ 2>/dev/null | tr -d / | while read -r d; do
    [ -f "$top/patches/$d/series" ] && [ "patches/$d" != "$ref" ] && echo "$d"; done)
[ -n "$queues" ] || skip "no queue but $ref/"

fail=0
for q in $queues; do
    if ! out=$(diff <(names "$top/$ref") <(names "$top/patches/$q") 2>&1); then
        echo "FAIL: patches/$q/series differs from $ref/series:"
        echo "$out" | sed 's/^/    /'
        fail=1
        continue
    fi
    for p in $(names "$top/$ref"); do
        a=$(subject "$top/$ref/$p") b=$(subject "$top/patches/$q/$p")
        if [ "$a" != "$b" ]; then
            echo "FAIL: $q/$p: subject \"$b\", $ref/ has \"$a\""
            fail=1
        fi
    done
    echo "patches/$q: $(names "$top/patches/$q" | wc -l) patches, as $ref/"
done
exit $fail
