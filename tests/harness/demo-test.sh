#!/bin/bash
# Run `make demo` end to end, shortened, and check what it leaves behind:
#   - the log is valid v1 and complete (bt-report --check --require-end);
#   - the baseline lists every page of the traced blocks, guest RAM included;
#   - every window lists dirty pages, and the workload's pages (its guest
#     PFNs, printed on the console by bt-workload) all show up in the union
#     of the windows, at about the rate the workload was asked for;
#   - HMP's info bitmap_trace printed the results, and no QEMU is left;
#   - bt-report left its pictures (PNG and SVG) and CSV files, the CSV with
#     a row per window.
# Exit 0 = pass, 77 = skip (the reason is printed), anything else = fail.
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
out=$build/tests/demo-test

# the demo runs the build's binary, whatever QEMU says
need_qemu "$build/qemu-system-x86_64"
# The guest needs Debian's kernel package, once: without the archive and
# without a cached copy there is nothing to boot.
need_guest

# Shortened: 256 MiB of RAM; the workload sweeps 32 MiB at 64 MiB/s, so the
# 10 windows of 100 ms (1 s) see two full sweeps.
ram=256 wss=32 rate=64 iterations=10 period=100
mkdir -p "$build/tests"
start=$SECONDS
set +e
DEMO_DIR=$out DEMO_RAM=$ram DEMO_WSS=$wss DEMO_RATE=$rate \
DEMO_ITERATIONS=$iterations DEMO_PERIOD=$period DEMO_BANDWIDTH=10G \
    bash "$top/scripts/demo.sh" > "$build/tests/demo-test.out" 2>&1
rc=$?
set -e
cat "$build/tests/demo-test.out"
echo "demo-test: the demo took $((SECONDS - start)) s and exited with $rc"
[ "$rc" -eq 0 ] || fail "the demo failed"

# No QEMU of ours may be left running.
if pgrep -f -- "-serial file:$out/console.log" >/dev/null; then
    fail "a QEMU of the demo is still running"
fi

"$py" "$top/scripts/bt-report" --check --require-end "$out/dirty.log" ||
    fail "bt-report does not accept the log"

# The pictures and CSV files of bt-report --plot-dir / --csv-dir.
for name in heatmap working-set dirty-per-window migration; do
    [ "$(head -c 8 "$out/$name.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
        fail "$out/$name.png is missing or not a PNG file"
    grep -q '<svg' "$out/$name.svg" 2>/dev/null || fail "$out/$name.svg is missing or not SVG"
done
for name in windows working-set predictions rounds migration; do
    [ -s "$out/$name.csv" ] || fail "$out/$name.csv is missing or empty"
done
[ "$(head -n 1 "$out/windows.csv")" = n,t_ms,length_ms,dirty,unmapped,zero,sync_us,harvest_us,zero_us ] ||
    fail "windows.csv: unexpected header: $(head -n 1 "$out/windows.csv")"
[ "$(wc -l < "$out/windows.csv")" -eq $((iterations + 1)) ] ||
    fail "windows.csv has $(wc -l < "$out/windows.csv") lines, expected a header and $iterations windows"

grep -q 'bitmap-trace: completed' "$build/tests/demo-test.out" ||
    fail "HMP info bitmap_trace did not report a completed trace"
grep -q 'distinct pages' "$build/tests/demo-test.out" ||
    fail "HMP info bitmap_trace printed no totals"

# The rest is checked on the log itself, parsed here independently of
# bt-report, against what the guest says about itself.
"$py" - "$out/dirty.log" "$out/console.log" "$ram" "$wss" "$rate" "$iterations" "$period" <<'EOF'
import re
import sys

log_path, console_path = sys.argv[1:3]
ram_mib, wss_mib, rate, iterations, period = map(int, sys.argv[3:])


def expand(tokens):
    pages = set()
    for tok in tokens:
        a, _, b = tok.partition('-')
        pages.update(range(int(a, 16), int(b or a, 16) + 1))
    return pages


blocks = {}
iters = []
end = None
for line in open(log_path):
    word, _, rest = line.rstrip('\n').partition(' ')
    if word == 'block':
        m = re.fullmatch(r'name=(.*) pages=(\d+) map=(\S*)', rest)
        blocks[m.group(1)] = (int(m.group(2)), m.group(3))
    elif word == 'iter':
        f = dict(kv.split('=', 1) for kv in rest.split(' '))
        iters.append({'dirty': int(f['dirty']), 'unmapped': int(f['unmapped']),
                      'pfns': set(), 'unmapped_pages': 0})
    elif word == 'pfns':
        iters[-1]['pfns'] |= expand(rest.split(' '))
    elif word == 'unmapped':
        iters[-1]['unmapped_pages'] += len(rest.split(' '))
    elif word == 'end':
        end = rest

problems = []
if end != f'status=completed iterations={iterations}':
    problems.append(f'end line is "end {end}"')
if len(iters) != iterations + 1:
    problems.append(f'{len(iters)} iterations in the log, expected {iterations + 1}')

# Baseline: every page of every traced block, and the guest's RAM is there.
ram_pages = ram_mib * 256
if 'pc.ram' not in blocks or blocks['pc.ram'][0] != ram_pages:
    problems.append(f'no pc.ram block of {ram_pages} pages: {blocks}')
all_pages = sum(p for p, _ in blocks.values())
if iters and iters[0]['dirty'] != all_pages:
    problems.append(f'baseline has {iters[0]["dirty"]} pages, the blocks {all_pages}')
mapped = set()
for pages, ranges in blocks.values():
    for r in filter(None, ranges.split(',')):
        first, n = r.split('+')
        mapped.update(range(int(first, 16), int(first, 16) + int(n)))
if iters and iters[0]['pfns'] != mapped:
    problems.append(f'baseline PFNs ({len(iters[0]["pfns"])}) are not the blocks\' '
                    f'mapped pages ({len(mapped)})')

# The workload's pages, from the console.
workload = set()
for line in open(console_path, errors='replace'):
    line = line.strip()
    if line.startswith('bt-workload: pfns '):
        workload |= expand(line.split(' ')[2:])
if len(workload) != wss_mib * 256:
    problems.append(f'console lists {len(workload)} workload pages, expected {wss_mib * 256}')

windows = iters[1:]
empty = [i for i, w in enumerate(windows, 1) if w['dirty'] == 0]
if empty:
    problems.append(f'windows {empty} list no dirty page')
union = set().union(*(w['pfns'] for w in windows)) if windows else set()
missed = workload - union
seen = len(workload) - len(missed)
print(f'demo-test: workload pages seen in the windows: {seen} of {len(workload)}; '
      f'{len(union)} distinct pages dirtied, {len(union & workload)} of them the workload\'s')
if missed:
    problems.append(f'{len(missed)} workload pages never show up, e.g. PFN '
                    f'{min(missed):x}')
# Per window, the workload rewrites rate * period worth of pages.  The guest
# paces itself on its own clock: allow a wide margin for a loaded host.
expected = rate * 256 * period / 1000
mean = sum(len(w['pfns'] & workload) for w in windows) / max(len(windows), 1)
print(f'demo-test: workload pages per window: mean {mean:.0f}, expected about {expected:.0f}')
if not 0.25 * expected <= mean <= 1.5 * expected:
    problems.append(f'workload pages per window {mean:.0f}, expected about {expected:.0f}')

for p in problems:
    print(f'FAIL: {p}')
sys.exit(1 if problems else 0)
EOF
echo "demo-test: pass"
