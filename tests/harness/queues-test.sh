#!/bin/bash
# The patch queues patches/X.Y/ (docs/qemu-bases.md), one per QEMU base, are
# laid out alike: each has an ordering file "series" (one commit of `make
# series` per line: patches, then the overlay files it adds), names every
# patch file of its directory exactly once, and numbers them in the order
# they apply.  Every queue holds the same commits as patches/10.0/, the
# same patches in the same order with the same subjects: a patch added to
# or renamed in one queue must be rebased into each.
# Exit 0 = pass, 77 = skip (no other queue), anything else = fail.
set -uo pipefail
. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
# shellcheck source=../../scripts/lib/queue.sh
. "$top/scripts/lib/queue.sh"

ref=10.0
subject() { sed -n 's/^Subject: //p;/^$/q' "$1" | head -1; }

fail=0
queues=$(cd "$top/patches" && ls -d */ 2>/dev/null | tr -d / | sort)
[ -n "$queues" ] || { echo "FAIL: no queue under patches/"; exit 1; }
for q in $queues; do
    dir=$top/patches/$q
    if [ ! -f "$dir/series" ]; then
        echo "FAIL: patches/$q/ has no series"
        fail=1
        continue
    fi
    listed=$(queue_patches "$dir/series")
    files=$(cd "$dir" && ls ./*.patch 2>/dev/null | sed 's|^\./||')
    if [ "$(echo "$listed" | sort)" != "$files" ]; then
        echo "FAIL: patches/$q/series does not name each patch file once:"
        diff <(echo "$listed" | sort) <(echo "$files") | sed 's/^/    /'
        fail=1
    fi
    n=0
    for p in $listed; do
        n=$((n + 1))
        if [ "${p%%-*}" != "$(printf %04d $n)" ]; then
            echo "FAIL: patches/$q: $p applies as patch $n"
            fail=1
        fi
    done
done
[ -d "$top/patches/$ref" ] || { echo "FAIL: no patches/$ref/"; exit 1; }
others=$(echo "$queues" | grep -vxF "$ref")
[ -n "$others" ] || { echo "SKIP: no queue but patches/$ref/"; exit 77; }

for q in $others; do
    if ! out=$(diff <(queue_lines "$top/patches/$ref/series") \
                    <(queue_lines "$top/patches/$q/series") 2>&1); then
        echo "FAIL: patches/$q/series differs from patches/$ref/series:"
        echo "$out" | sed 's/^/    /'
        fail=1
        continue
    fi
    for p in $(queue_patches "$top/patches/$ref/series"); do
        a=$(subject "$top/patches/$ref/$p") b=$(subject "$top/patches/$q/$p")
        if [ "$a" != "$b" ]; then
            echo "FAIL: $q/$p: subject \"$b\", patches/$ref/ has \"$a\""
            fail=1
        fi
    done
    echo "patches/$q: $(queue_patches "$top/patches/$q/series" | wc -l) patches, as patches/$ref/"
done
exit $fail
