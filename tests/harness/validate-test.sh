#!/bin/bash
# Run `make validate QUICK=1` (scripts/measure/validate.py --quick) end to end and
# check the machinery, not the accuracy: results.json is complete, every
# case has both bt-report's prediction and a real migration (or is skipped
# with a reason, e.g. the KVM case without a usable /dev/kvm), a migration
# that completed has its times and byte counts and left the guest running
# on the destination, one that did not was cancelled at its time cap, the
# calibration (run first, quick, or cached) is there, no QEMU is left
# running, and the Markdown results (OUT/results.md) have the machine and the
# table, while a quick run writes nothing under docs/.
# Exit 0 = pass, 77 = skip (the reason is printed), anything else = fail.
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
out=$build/tests/validate-test

need_qemu "${QEMU:-}"
need_guest

rm -rf "$out"
mkdir -p "$out"
touch "$out/.start"
start=$SECONDS
set +e
# Through the Makefile target; QEMU= keeps make from building.
BUILD=$build timeout 300 make -s -C "$top" validate QUICK=1 QEMU="$qemu" \
    VALIDATE_ARGS="--out $out" > "$out.out" 2>&1
rc=$?
set -e
cat "$out.out"
echo "validate-test: make validate QUICK=1 took $((SECONDS - start)) s and exited with $rc"

[ "$rc" -eq 0 ] || fail "make validate QUICK=1 failed"

if pgrep -f -- "file:$out/" >/dev/null; then
    fail "a QEMU of the run is still running: $(pgrep -af -- "file:$out/")"
fi

"$py" - "$out/results.json" <<'EOF'
import json
import sys

doc = json.load(open(sys.argv[1]))
problems = []
if not doc.get('complete'):
    problems.append('results.json is not marked complete')
cases = doc.get('cases', [])
if len(cases) < 3:
    problems.append(f'{len(cases)} cases, expected at least 3')
cal = doc.get('calibration') or {}
if not (isinstance(cal.get('link_bandwidth'), (int, float)) and cal['link_bandwidth'] > 0):
    problems.append(f'no calibration in results.json (link_bandwidth {cal.get("link_bandwidth")!r})')
for k in ('dest_page_s', 'dest_first_page_s', 'dest_zero_s', 'dest_zero_first_s',
          'device_state_bytes', 'socket_buffer_bytes'):
    if not isinstance(cal.get(k), (int, float)) or cal[k] < 0:
        problems.append(f'calibration {k} = {cal.get(k)!r}')
if not all(isinstance(v, (int, float)) and v >= 0 for v in (cal.get('setup_s') or {'': None}).values()):
    problems.append(f'calibration setup_s = {cal.get("setup_s")!r}')
print('validate-test: calibration: link %.0f MB/s, destination %.2f / %.2f us a page'
      % ((cal.get('link_bandwidth') or 0) / 1e6, (cal.get('dest_page_s') or 0) * 1e6,
         (cal.get('dest_first_page_s') or 0) * 1e6))
ran = 0
for r in cases:
    name = r.get('case', {}).get('name', '?')
    if 'skipped' in r:
        if not r['skipped']:
            problems.append(f'{name}: skipped without a reason')
        print(f'validate-test: {name}: skipped: {r["skipped"]}')
        continue
    if 'error' in r:
        problems.append(f'{name}: {r["error"]}')
        continue
    ran += 1
    pred = r.get('prediction')
    real = r.get('real', {})
    s = real.get('summary', {})
    if not pred or 'converges' not in pred or 'rounds' not in pred:
        problems.append(f'{name}: no prediction from bt-report')
    elif pred['converges'] and not all(isinstance(pred.get(k), (int, float))
                                       for k in ('total_s', 'downtime_s', 'sent_bytes')):
        problems.append(f'{name}: converging prediction without times/bytes: {pred}')
    if r.get('trace', {}).get('event', {}).get('status') != 'completed':
        problems.append(f'{name}: the trace did not complete')
    if not real:
        problems.append(f'{name}: no real migration')
        continue
    if s.get('converged'):
        for k in ('total_ms', 'downtime_ms', 'setup_ms', 'ram_transferred',
                  'ram_normal_pages', 'ram_duplicate_pages', 'precopy_bytes',
                  'dirty_sync_count'):
            if not isinstance(s.get(k), (int, float)) or s[k] < 0:
                problems.append(f'{name}: real {k} = {s.get(k)!r}')
        if (s.get('dirty_sync_count') or 0) < 3:
            problems.append(f'{name}: dirty-sync-count {s.get("dirty_sync_count")} < 3')
        if (s.get('ram_transferred') or 0) < r['case']['wss_mib'] * 1048576:
            problems.append(f'{name}: transferred {s.get("ram_transferred")} bytes, '
                            f'less than the working set')
        if real.get('destination', {}).get('status') != 'running':
            problems.append(f'{name}: destination not running: {real.get("destination")}')
        if r['case']['guest'] == 'linux' and not real['destination'].get('workload_progress'):
            problems.append(f'{name}: the workload does not run on the destination')
        sync = (real.get('sync_trace') or {}).get('syncs') or []
        if len(sync) != s.get('dirty_sync_count'):
            problems.append(f'{name}: {len(sync)} syncs in the trace log, '
                            f'dirty-sync-count {s.get("dirty_sync_count")}')
    else:
        if s.get('status') != 'cancelled' or not real.get('cancelled_at_cap'):
            problems.append(f'{name}: not completed, and not cancelled at the cap: '
                            f'{s.get("status")}')
    c = r.get('comparison', {})
    if c.get('verdict_agrees') is None:
        problems.append(f'{name}: no comparison')
    print(f'validate-test: {name}: predicted '
          f'{"converges" if c.get("predicted_converges") else "does not converge"}, '
          f'real {s.get("status")}')
if ran == 0:
    problems.append('no case ran')
for p in problems:
    print(f'FAIL: {p}')
sys.exit(1 if problems else 0)
EOF
md=$out/results.md
[ -s "$md" ] || fail "no $md"
for want in '^- CPU: ' '^- QEMU: ' '^| case | predicted | real |' '^- verdict (converges or not) agrees'; do
    grep -q -- "$want" "$md" || fail "$md has no line matching /$want/"
done
if [ -n "$(find "$top/docs" -newer "$out/.start" -name 'validate-*' 2>/dev/null)" ]; then
    fail "a quick run wrote under docs/"
fi
echo "validate-test: pass"
