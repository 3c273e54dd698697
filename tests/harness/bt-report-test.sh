#!/bin/bash
# Test scripts/bt-report (the shim that runs analyzer/btrace) against small
# hand-written v1 logs.  The expected numbers are worked out by hand below,
# not taken from the tool.
# Exit 0 = pass, 1 = fail.
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
report=$top/scripts/bt-report
use_tmp

failures=0
checks=0
pass() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*"; }

# --- the reference log -------------------------------------------------------
#
# Two blocks: "ram" (16 pages: pages 0-7 at PFN 0-7, pages 8-15 at PFN
# 0x100-0x107) and "rom" (4 pages, not mapped).  Period 100 ms, 4 windows:
#   window 1 (t=100 ms): PFN 0-3                          4 pages
#   window 2 (t=200 ms): PFN 2-5                          4 pages
#   window 3 (t=300 ms): nothing                          0 pages
#   window 4 (t=400 ms): PFN 0, 0x100-0x101 and rom:1     4 pages, 1 unmapped
# (window 4's PFNs are split over two pfns lines, as a long list may be.)
cat > "$tmp/ref.log" <<'EOF'
bitmap-trace v1
meta qemu=10.0.13 accel=tcg page-size=4096 period-ms=100 iterations=4 start=2026-01-01T00:00:00.000000Z
block name=ram pages=16 map=0+8,100+8
block name=rom pages=4 map=
iter n=0 t-ms=0.000 dirty=20 unmapped=4 sync-us=10 harvest-us=20
pfns 0-7 100-107
unmapped rom:0-3
iter n=1 t-ms=100.000 dirty=4 unmapped=0 sync-us=10 harvest-us=20
pfns 0-3
iter n=2 t-ms=200.000 dirty=4 unmapped=0 sync-us=10 harvest-us=20
pfns 2-5
iter n=3 t-ms=300.000 dirty=0 unmapped=0 sync-us=10 harvest-us=20
iter n=4 t-ms=400.000 dirty=4 unmapped=1 sync-us=10 harvest-us=20
pfns 0
pfns 100-101
unmapped rom:1
end status=completed iterations=4
EOF

# json_expect FILE EXPR VALUE: the Python expression EXPR over the JSON
# document `r` equals the Python value VALUE (floats, also in lists, to 1e-9
# relative).
json_expect() {
    local file=$1 expr=$2 want=$3 got
    got=$("$py" -c '
import json, math, sys
r = json.load(open(sys.argv[1]))
def same(got, want):
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(same, got, want))
    return got == want
got = eval(sys.argv[2])
print("ok" if same(got, eval(sys.argv[3])) else repr(got))
' "$file" "$expr" "$want") || got="(python failed)"
    if [ "$got" = ok ]; then pass; else fail "$file: $expr = $got, expected $want"; fi
}

# --- validation ------------------------------------------------------------

if out=$("$report" --check --require-end "$tmp/ref.log" 2>&1) && [[ $out == *": ok: "* ]]; then
    pass
else
    fail "reference log not accepted: $out"
fi

# --- summary (JSON) --------------------------------------------------------

# The summary; the prediction (the replay simulator) has its own unit tests
# in analyzer/tests/.  409600 B/s is 100 pages/s, 40960 B/s is 10 pages/s.
"$report" --json --bandwidth 409600B/s --bandwidth 40960B/s "$tmp/ref.log" > "$tmp/ref.json"
j="$tmp/ref.json"
json_expect "$j" "r['ram_pages']" 20
json_expect "$j" "r['baseline_pages']" 20
json_expect "$j" "[w['dirty'] for w in r['windows']]" "[4, 4, 0, 4]"
json_expect "$j" "[w['unmapped'] for w in r['windows']]" "[0, 0, 0, 1]"
json_expect "$j" "r['dirty_min']" 0
json_expect "$j" "r['dirty_max']" 4
json_expect "$j" "r['dirty_mean']" 3.0                 # (4+4+0+4)/4
json_expect "$j" "r['unmapped_total']" 1
# PFN 0-5, 0x100, 0x101 and rom:1
json_expect "$j" "r['distinct_pages']" 9
# 12 pages of 4096 bytes in 0.4 s: 122880 B/s = 0.1171875 MiB/s
json_expect "$j" "r['dirty_rate_mib_s']" 0.1171875
json_expect "$j" "r['window_ms']" 100.0
# Working set, mean over positions of k consecutive windows:
#   k=1: 3 (the mean window)
#   k=2: {1,2}: PFN 0-5 = 6; {2,3}: 4; {3,4}: 4            -> 14/3
#   k=3: {1,2,3}: 6; {2,3,4}: PFN 0,2-5,100,101, rom:1 = 8  -> 7
#   k=4: 9
json_expect "$j" "r['working_set']" "[3.0, 14/3, 7.0, 9.0]"

# One prediction per bandwidth, in the order given, by the simulator.
json_expect "$j" "[p['bandwidth_bytes_s'] for p in r['prediction']]" "[409600.0, 40960.0]"
json_expect "$j" "[p['model'] for p in r['prediction']]" "['sim', 'sim']"

# Bandwidth units: bits by default (as links are sold), bytes with B.
"$report" --json --bandwidth 1G,2.5Gbit/s,128MiB/s,500MB/s "$tmp/ref.log" > "$tmp/bw.json"
json_expect "$tmp/bw.json" "[p['bandwidth_bytes_s'] for p in r['prediction']]" \
    "[125e6, 312.5e6, 128.0 * 2**20, 500e6]"
# The default: 1, 2.5, 10 and 25 Gbit/s.
"$report" --json "$tmp/ref.log" > "$tmp/default.json"
json_expect "$tmp/default.json" "[p['bandwidth_bytes_s'] for p in r['prediction']]" \
    "[125e6, 312.5e6, 1250e6, 3125e6]"
if "$report" --bandwidth 10X "$tmp/ref.log" >/dev/null 2>&1; then
    fail "--bandwidth 10X accepted"
else
    pass
fi

# --- summary (text) --------------------------------------------------------

"$report" "$tmp/ref.log" > "$tmp/ref.txt"
for want in \
    'ended: completed after 4 iterations' \
    'traced RAM: 2 blocks, 20 pages' \
    'dirty pages per window: min 0, mean 3.0, max 4' \
    'dirty rate: 0.1 MiB/s' \
    'distinct pages dirtied: 9 ' \
    'pages dirtied while unmapped: 1'; do
    if grep -qF -- "$want" "$tmp/ref.txt"; then pass; else fail "text report lacks '$want'"; fi
done

# The default prediction is the replay simulator; a v1 log has no zero-page
# information, which it must say.
"$report" "$tmp/ref.log" > "$tmp/sim.txt"
for want in \
    'pre-copy prediction: a replay of QEMU 10.0 pre-copy' \
    'WARNING: a v1 log has no zero-page information'; do
    if grep -qF -- "$want" "$tmp/sim.txt"; then pass; else fail "text report lacks '$want'"; fi
done

# --- logs that end early -----------------------------------------------------

# A prefix (QEMU killed after window 2) is valid, but not with --require-end.
head -n 11 "$tmp/ref.log" > "$tmp/prefix.log"
if "$report" --check "$tmp/prefix.log" >/dev/null; then pass; else fail "valid prefix rejected"; fi
if "$report" --check --require-end "$tmp/prefix.log" >/dev/null 2>&1; then
    fail "prefix accepted with --require-end"
else
    pass
fi
"$report" --json "$tmp/prefix.log" > "$tmp/prefix.json"
json_expect "$tmp/prefix.json" "len(r['windows'])" 2
json_expect "$tmp/prefix.json" "r['end']" None

# Cancelled after 2 windows, and failed with an error text holding spaces.
{ head -n 11 "$tmp/ref.log"; echo 'end status=cancelled iterations=2'; } > "$tmp/cancelled.log"
if "$report" --check --require-end "$tmp/cancelled.log" >/dev/null; then pass; else fail "cancelled log rejected"; fi
{ head -n 11 "$tmp/ref.log"
  echo "end status=failed iterations=2 error=cannot write bitmap-trace log '/x': No space left on device"
} > "$tmp/failed.log"
"$report" --json "$tmp/failed.log" > "$tmp/failed.json"
json_expect "$tmp/failed.json" "r['end']['error']" \
    "\"cannot write bitmap-trace log '/x': No space left on device\""

# A baseline may list fewer pages than the blocks hold: memory a virtio-mem
# device has not plugged is neither read nor listed, and not sent.
sed 's/^pfns 0-7 100-107$/pfns 0-7 100-106/; s/dirty=20/dirty=19/' "$tmp/ref.log" \
    > "$tmp/unplugged.log"
if out=$("$report" --check --require-end "$tmp/unplugged.log" 2>&1); then
    pass
else
    fail "a baseline of less than all RAM rejected: $out"
fi
want='baseline (iteration 0): 19 pages, of the 20 of the traced RAM'
if "$report" "$tmp/unplugged.log" | grep -qF -- "$want"; then
    pass
else
    fail "the report of a short baseline lacks '$want'"
fi

# --- invalid logs --------------------------------------------------------------

# invalid NAME SED-SCRIPT MESSAGE: the reference log edited by SED-SCRIPT must
# be rejected with MESSAGE in the error.
invalid() {
    local name=$1 script=$2 msg=$3 out
    sed "$script" "$tmp/ref.log" > "$tmp/$name.log"
    if out=$("$report" --check "$tmp/$name.log" 2>&1); then
        fail "$name: accepted: $out"
    elif [[ $out != *"$msg"* ]]; then
        fail "$name: error '$out' does not say '$msg'"
    else
        pass
    fi
}
invalid version      '1s/v1/v4/'                                    'unsupported format'
invalid v1-zero      '7a zero 0'                                    "unknown record 'zero'"
invalid not-a-log    '1s/.*/hello/'                                 'not a bitmap-trace log'
invalid meta-key     '2s/ period-ms=100//'                          'lacks period-ms='
invalid accel        '2s/accel=tcg/accel=xen/'                      'accel=xen'
invalid dirty-count  's/^iter n=1 t-ms=100.000 dirty=4/iter n=1 t-ms=100.000 dirty=5/' \
                                                                    'says dirty=5 but lists 4'
invalid unmapped-cnt 's/^iter n=4 \(.*\) unmapped=1/iter n=4 \1 unmapped=0/' \
                                                                    'says unmapped=0 but lists 1'
invalid descending   's/^pfns 2-5$/pfns 4-5 2-3/'                   'not above the one before'
invalid adjacent     's/^pfns 2-5$/pfns 2-3 4-5/'                   'not adjacent'
invalid reversed     's/^pfns 2-5$/pfns 5-2/'                       'ends before it starts'
invalid uppercase    's/^pfns 100-101$/pfns 100-10A/'               'not lowercase hex'
invalid unmapped-pfn 's/^pfns 2-5$/pfns 2-4 50/'                    'which no block maps'
invalid no-block     's/^unmapped rom:1$/unmapped flash:1/'         'does not name a block'
invalid beyond-block 's/^unmapped rom:1$/unmapped rom:4/'           'beyond the end of block rom'
invalid gap          '/^iter n=3 /d'                                'expected n=3'
invalid backwards    's/t-ms=300.000/t-ms=150.000/'                 't-ms goes backwards'
invalid t-ms-format  's/t-ms=300.000/t-ms=300/'                     '3 decimals'
invalid baseline     's/^block name=ram pages=16/block name=ram pages=15/' \
                                                                    'blocks hold 19'
invalid end-count    's/^end status=completed iterations=4/end status=completed iterations=3/' \
                                                                    'iterations=3, but the log has 4'
invalid short        's/iterations=4 start/iterations=5 start/'     '5 were asked for'
invalid after-end    '$a iter n=5 t-ms=500.000 dirty=0 unmapped=0 sync-us=1 harvest-us=1' \
                                                                    'after the end line'
invalid record       '5a hello world'                               "unknown record 'hello'"
invalid stray-error  's/^end status=completed iterations=4$/& error=oops/' \
                                                                    'error= goes with status=failed'
invalid overlap      's/^block name=rom pages=4 map=$/block name=rom pages=4 map=6+2/' \
                                                                    'both mapped at pfn 6'

# No newline at the end: the last line was cut.
printf '%s' "$(cat "$tmp/ref.log")" > "$tmp/cut.log"
if out=$("$report" --check "$tmp/cut.log" 2>&1); then
    fail "cut log accepted"
elif [[ $out == *"incomplete"* ]]; then pass; else fail "cut log: $out"; fi

echo "bt-report-test: $((checks - failures)) of $checks checks passed"
[ "$failures" -eq 0 ]
