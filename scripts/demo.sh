#!/bin/bash
# make demo: profile a real Linux guest with bitmap-trace.
#
# Boots Debian's kernel with a small initramfs whose /init runs bt-workload
# (scripts/guest/) on build/qemu-system-x86_64, with QMP on a TCP socket and
# HMP on a unix socket, both on this machine only.  Once the workload runs, it
# starts a trace over QMP, waits for BITMAP_TRACE_COMPLETED on the same QMP
# connection, prints HMP's "info bitmap_trace" and scripts/bt-report's summary
# and pre-copy prediction, and quits QEMU.  Then bt-report draws the trace and
# the prediction (PNG and SVG) and writes their figures as CSV.
#
# Knobs (environment or make variables):
#   DEMO_RAM=512          guest RAM, MiB
#   DEMO_WSS=256          memory the workload rewrites, MiB (at most DEMO_RAM-128)
#   DEMO_RATE=256         its write rate, MiB/s (0: as fast as the vCPU goes)
#   DEMO_ITERATIONS=30    bitmap-trace iterations (measured windows)
#   DEMO_PERIOD=100       bitmap-trace period, ms
#   DEMO_ACCEL=auto       kvm | kvm-dirty-ring | tcg | auto (kvm when /dev/kvm
#                         is usable with hardware virtualization, else tcg)
#   DEMO_BANDWIDTH=...    bandwidths for the prediction (bt-report --bandwidth)
#   DEMO_DIR=build/demo   where the log and console output are left
#   DEMO_BOOT_TIMEOUT     seconds to wait for the workload (60 on KVM, 180 on TCG)
#
# Leaves in DEMO_DIR: dirty.log (the trace), console.log (guest serial
# console), qemu.log (QEMU's stderr), qemu.cmdline, report.txt, the pictures
# heatmap, working-set, dirty-per-window and migration (.png and .svg) and
# the CSV files windows, working-set, predictions, rounds and migration
# (bt-report --plot-dir, --csv-dir; analyzer/btrace/plot.py and export.py).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
qemu=$build/qemu-system-x86_64
out=${DEMO_DIR:-$build/demo}
py=/usr/bin/python3
[ -x "$py" ] || py=python3

ram=${DEMO_RAM:-512}
wss=${DEMO_WSS:-256}
rate=${DEMO_RATE:-256}
iterations=${DEMO_ITERATIONS:-30}
period=${DEMO_PERIOD:-100}
accel=${DEMO_ACCEL:-auto}
bandwidth=${DEMO_BANDWIDTH:-}

die() { echo "demo: error: $*" >&2; exit 1; }
say() { echo "demo: $*"; }

for v in ram wss rate iterations period; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "DEMO_${v^^}=${!v} is not a number"
done
[ "$ram" -ge 128 ] || die "DEMO_RAM=$ram: the guest needs at least 128 MiB"
if [ "$wss" -lt 1 ] || [ "$wss" -gt $((ram - 128)) ]; then
    die "DEMO_WSS=$wss: must be 1..$((ram - 128)) MiB with DEMO_RAM=$ram (the guest kernel needs ~128 MiB)"
fi
[ -x "$qemu" ] || die "$qemu not built (run: make)"
"$py" -c 'import numpy, matplotlib' 2>/dev/null ||
    die "$py lacks numpy or matplotlib (Debian's python3-numpy, python3-matplotlib: make deps)"

start_s=$(date +%s.%N)
elapsed() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
                "$start_s" "$(date +%s.%N)"; }

# --- accelerator -------------------------------------------------------------

# KVM is worth trying for a Linux guest only with hardware virtualization: a
# /dev/kvm without it (e.g. PVM, kvm_pvm) runs unmodified kernels in its
# instruction emulator, where Debian's kernel does not even finish
# decompressing in minutes.
kvm_unusable_reason() {
    if [ ! -c /dev/kvm ]; then
        echo "/dev/kvm does not exist"
    elif ! "$py" -c 'import os, fcntl; fd = os.open("/dev/kvm", os.O_RDWR); \
                     assert fcntl.ioctl(fd, 0xAE00) == 12' 2>/dev/null; then
        echo "/dev/kvm cannot be opened read-write (or speaks another KVM API)"
    elif ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
        if [ -d /sys/module/kvm_pvm ]; then
            echo "/dev/kvm is PVM (kvm_pvm, no hardware virtualization): it boots only PVM-enabled guest kernels, not Debian's"
        else
            echo "the CPU has no hardware virtualization (vmx/svm)"
        fi
    fi
}

accel_opt=
case "$accel" in
auto)
    why=$(kvm_unusable_reason)
    if [ -z "$why" ]; then
        accel=kvm
    else
        say "using TCG: $why"
        accel=tcg
    fi ;;
kvm|kvm-dirty-ring)
    why=$(kvm_unusable_reason)
    [ -z "$why" ] || say "warning: DEMO_ACCEL=$accel, but $why" ;;
tcg) ;;
*) die "DEMO_ACCEL=$accel: use kvm, kvm-dirty-ring, tcg or auto" ;;
esac
case "$accel" in
kvm) accel_opt=kvm ;;
kvm-dirty-ring) accel_opt=kvm,dirty-ring-size=4096 ;;
tcg) accel_opt=tcg ;;
esac
if [ "$accel" = tcg ]; then
    boot_timeout=${DEMO_BOOT_TIMEOUT:-180}
else
    boot_timeout=${DEMO_BOOT_TIMEOUT:-60}
fi

# --- guest -------------------------------------------------------------------

bash "$top/scripts/guest.sh"

# --- QEMU --------------------------------------------------------------------

mkdir -p "$out"
out=$(cd "$out" && pwd)
# Only what an earlier run left: DEMO_DIR may be a directory of the user's.
plots=(heatmap working-set dirty-per-window migration)
tables=(windows working-set predictions rounds migration)
old=("$out"/{dirty.log,console.log,qemu.log,qemu.cmdline,report.txt})
for f in "${plots[@]}"; do old+=("$out/$f.png" "$out/$f.svg"); done
for f in "${tables[@]}"; do old+=("$out/$f.csv"); done
rm -f "${old[@]}"
rt=$(mktemp -d "${TMPDIR:-/tmp}/bt-demo.XXXXXX")
qemu_pid=

cleanup() {
    local rc=$?
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$rt"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

qmp_port=$("$py" "$top/scripts/qmp.py" free-port)
qmp_addr=127.0.0.1:$qmp_port
hmp_sock=$rt/hmp.sock
log=$out/dirty.log

qmp() { "$py" "$top/scripts/qmp.py" qmp "$qmp_addr" "$@"; }
hmp() { "$py" "$top/scripts/qmp.py" hmp "$hmp_sock" "$@"; }

# Firmware (Debian's SeaBIOS, the option ROMs built with QEMU for -kernel)
# comes from the firmware path the build configured.
cmd=("$qemu" -name bt-demo -nodefaults -no-user-config -display none
     -machine pc -accel "$accel_opt" -m "$ram" -smp 1
     -kernel "$build/guest/vmlinuz" -initrd "$build/guest/initramfs.cpio.gz"
     -append "console=ttyS0 panic=-1 quiet bt.wss=$wss bt.rate=$rate bt.report=5"
     -serial "file:$out/console.log"
     -qmp "tcp:$qmp_addr,server=on,wait=off"
     -monitor "unix:$hmp_sock,server=on,wait=off"
     -no-reboot)
printf '%q ' "${cmd[@]}" > "$out/qemu.cmdline"
echo >> "$out/qemu.cmdline"

say "guest: ${ram} MiB RAM, workload rewrites ${wss} MiB at ${rate} MiB/s; accelerator $accel_opt"
"${cmd[@]}" </dev/null >"$out/qemu.log" 2>&1 &
qemu_pid=$!

guest_failed() {
    echo "--- $out/qemu.log" >&2
    tail -n 20 "$out/qemu.log" >&2 || true
    echo "--- $out/console.log (last lines)" >&2
    grep -av '^bt-workload: pfns' "$out/console.log" 2>/dev/null | tail -n 20 >&2 || true
    die "$*"
}

# Wait for the workload to report that it runs.
say "booting; waiting up to ${boot_timeout}s for the workload (console: $out/console.log)"
deadline=$((SECONDS + boot_timeout))
until grep -aq '^bt-workload: ready' "$out/console.log" 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || guest_failed "QEMU exited during boot"
    if grep -aq '^bt-workload: error\|Kernel panic' "$out/console.log" 2>/dev/null; then
        guest_failed "the guest failed"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        why=
        [ "$accel" = tcg ] || why=$(kvm_unusable_reason)
        guest_failed "no 'bt-workload: ready' on the console after ${boot_timeout}s${why:+ ($why; try DEMO_ACCEL=tcg)}"
    fi
    sleep 0.2
done
grep -a '^bt-guest:\|^bt-workload: ready' "$out/console.log" | tr -d '\r' | sed 's/^/  guest: /'
say "workload running after $(elapsed)s"

# --- trace -------------------------------------------------------------------

args=$(printf '{"state": true, "filename": "%s", "iterations": %d, "period": %d}' \
              "$log" "$iterations" "$period")
# Generous: a sync takes longer under TCG and with a large guest.
event_timeout=$(( iterations * period * 4 / 1000 + 60 ))
say "QMP $qmp_addr: bitmap-trace $args"
# In the background, so that a signal is handled at once, not after the trace.
qmp --wait-for-server 10 --wait-event BITMAP_TRACE_COMPLETED \
    --event-timeout "$event_timeout" bitmap-trace "$args" > "$rt/trace.out" &
wait $! || die "bitmap-trace over QMP failed"
say "event: $(sed -n 2p "$rt/trace.out")"
say "QMP query-bitmap-trace: $(qmp query-bitmap-trace | "$py" -c '
import json, sys
q = json.load(sys.stdin)
print(" ".join(f"{k}={q[k]}" for k in ("status", "completed-iterations",
      "distinct-pages", "elapsed-ms") if k in q))')"

echo
say "HMP $hmp_sock: info bitmap_trace"
hmp --wait-for-server 5 'info bitmap_trace' | sed 's/^/  /'

echo
# HMP has just shown the dirty pages of every iteration.
report_args=(--brief --plot-dir "$out" --csv-dir "$out")
[ -z "$bandwidth" ] || report_args+=(--bandwidth "$bandwidth")
"$py" "$top/scripts/bt-report" "${report_args[@]}" "$log" 2>"$rt/report.err" |
    tee "$out/report.txt" || { cat "$rt/report.err" >&2; die "bt-report failed"; }
echo
say "pictures: ${plots[*]/%/.png} (and .svg); CSV: ${tables[*]/%/.csv}"

# --- done --------------------------------------------------------------------

echo
qmp quit >/dev/null || true
for _ in $(seq 100); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$qemu_pid" 2>/dev/null; then
    say "warning: QEMU did not quit in 10 s; killing it"
else
    wait "$qemu_pid" || say "warning: QEMU exited with status $?"
    qemu_pid=
fi
say "done in $(elapsed)s; left in $out: dirty.log console.log qemu.log report.txt, the pictures and CSV"
