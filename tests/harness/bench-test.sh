#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Run `make bench QUICK=1` (scripts/measure/bench.py --quick) and check the
# machinery, not the numbers: every case ran without error or was skipped
# with a reason, and results.json has, per case, the throughput with no
# trace and with a trace at each period, the per-round timings from the log
# and the trace events, the log size in both formats, the analyzer's speed,
# the migration's syncs and calc-dirty-rate; no QEMU is left running; the
# Markdown results (OUT/results.md) have the machine and the summary table.
# Exit 0 = pass, 77 = skip (the reason is printed), anything else = fail.
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
out=$build/tests/bench-test

need_qemu "${QEMU:-}"
need_guest

rm -rf "$out"
mkdir -p "$out"
start=$SECONDS
set +e
BUILD=$build timeout 170 make -s -C "$top" bench QUICK=1 QEMU="$qemu" \
    BENCH_ARGS="--out $out" > "$out.out" 2>&1
rc=$?
set -e
cat "$out.out"
echo "bench-test: make bench QUICK=1 took $((SECONDS - start)) s and exited with $rc"
[ "$rc" -eq 0 ] || fail "make bench QUICK=1 failed"

"$py" - "$out/results.json" <<'PYEOF'
import json
import sys

r = json.load(open(sys.argv[1]))
fail = []
if not r['results']:
    print('bench-test: SKIP: no case ran: ' +
          '; '.join(f"{s['case']}: {s['why']}" for s in r['skipped']))
    sys.exit(77)
for s in r['skipped']:
    print(f"bench-test: {s['case']}: skipped: {s['why']}")
for res in r['results']:
    name = res['case']['name']
    if 'error' in res:
        fail.append(f'{name}: {res["error"]}')
        continue
    if not res.get('base'):
        fail.append(f'{name}: no throughput without a trace')
    for p in ('1000', '100', '10'):
        t = res.get('traces', {}).get(p)
        if not t or t.get('status') != 'completed':
            fail.append(f'{name}: no completed trace at {p} ms')
            continue
        for k in ('sync_us', 'harvest_us', 'pause_us', 'zero_us', 'bql_us', 'encode_us', 'write_us'):
            if not t.get(k) or t[k].get('median') is None:
                fail.append(f'{name}: {p} ms: no {k}')
        if t.get('throughput') is None:
            fail.append(f'{name}: {p} ms: no throughput')
        if t['rounds'] < 3:
            fail.append(f'{name}: {p} ms: {t["rounds"]} rounds')
    ls = res.get('log_size') or {}
    if not ls.get('binary_bytes') or not ls.get('text_bytes') or \
            ls['binary_bytes'] > ls['text_bytes']:
        fail.append(f'{name}: log sizes {ls}')
    if not ls.get('parse_binary_s') or not ls.get('parse_text_s'):
        fail.append(f'{name}: analyzer not timed')
    if not (res.get('text') or {}).get('encode_us'):
        fail.append(f'{name}: no text trace')
    m = res.get('migration') or {}
    if not m.get('syncs'):
        fail.append(f'{name}: migration: no migration_bitmap_sync traced: {m}')
    if (res.get('calc_dirty_rate') or {}).get('status') != 'measured':
        fail.append(f'{name}: calc-dirty-rate: {res.get("calc_dirty_rate")}')
    print(f'bench-test: {name}: ok')
if fail:
    print('bench-test: FAIL:\n  ' + '\n  '.join(fail))
    sys.exit(1)
PYEOF
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
if pgrep -f "$out" >/dev/null; then
    echo "FAIL: a QEMU of the bench is still running"
    exit 1
fi
md=$out/results.md
for want in '^- CPU: ' '^- QEMU: ' '^| case | dirty pages/round' '^## Every figure, as printed'; do
    grep -q -- "$want" "$md" 2>/dev/null || { echo "FAIL: $md has no line matching /$want/"; exit 1; }
done
echo "bench-test: pass"
