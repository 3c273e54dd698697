#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The README's "With libvirt" section, run as written against a real libvirt
# daemon (Debian's libvirtd, make deps) that this test starts and stops.
#
# A private libvirtd runs as root in system mode (its own sockets, pid file
# and host UUID; the QEMU driver's state under /run/libvirt and
# /var/lib/libvirt as usual) with virtlogd, which it needs for QEMU's output;
# a second one is user nobody's, for qemu:///session.  A transient domain
# "vm1" on the first, whose <emulator> is the built QEMU, runs the demo's
# guest under TCG as the system user libvirt-qemu: libvirt confines QEMU, so
# the log is a file the test owns that QEMU reaches only through the
# descriptor passed with --pass-fds.  Each ```sh block of the README section
# then runs with bash -e and only these substitutions:
#     /var/tmp/vm1-dirty.log    -> a log in the scratch directory
#     qemu+ssh://host2/system   -> the session daemon, another host to libvirt
#     scripts/bt-               -> the repository's
# and LIBVIRT_DEFAULT_URI naming the system daemon.  Checked: the logs parse
# with the analyzer, have every iteration and end "completed"; the event came
# through qemu-monitor-event; virsh migrate failed with bitmap-trace's
# blocker while the trace ran; bt-trace showed progress and the report.
# bt-trace stopped by SIGINT cancels the trace and leaves the domain running.
# After the traces, virsh migrate --live moves vm1 to the session daemon,
# where its workload goes on, bt-trace -c qemu:///session traces it as
# nobody, and domstate, shutdown and destroy work.
#
# BT_LIBVIRT_KEEP=1 keeps the scratch directory (daemon logs, console).

set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_qemu
[ "$(id -u)" = 0 ] || skip "needs root: starts libvirtd in system mode"
for tool in /usr/sbin/libvirtd /usr/sbin/virtlogd virsh; do
    command -v "$tool" >/dev/null || skip "$tool not installed (make deps)"
done
"$py" -c 'import libvirt' 2>/dev/null || skip "python3-libvirt not installed (make deps)"
getent passwd libvirt-qemu >/dev/null ||
    skip "no system user libvirt-qemu (make deps creates it)"
for pidf in /run/libvirtd.pid /run/libvirt/libvirtd.pid /run/libvirt/virtqemud.pid; do
    if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        skip "a libvirt daemon already runs here ($pidf): this test starts its own"
    fi
done
need_guest
use_tmp

# QEMU runs as libvirt-qemu, which may not reach into the build tree (a
# checkout under /root): stage the binary, the option ROMs -kernel needs
# (found in ../share/qemu next to the binary) and the guest where it can.
chmod 755 "$tmp"
mkdir -p "$tmp/bin" "$tmp/share/qemu" "$tmp/guest" "$tmp/sock"
cp "$(readlink -f "$qemu")" "$tmp/bin/qemu-system-x86_64"
cp "$build"/obj/pc-bios/optionrom/*.bin "$tmp/share/qemu/"
cp "$build/guest/vmlinuz" "$build/guest/initramfs.cpio.gz" "$tmp/guest/"
# and bt-trace, for the ordinary user of qemu:///session
mkdir -p "$tmp/tree/scripts" "$tmp/tree/analyzer"
cp "$top/scripts/bt-trace" "$tmp/tree/scripts/"
cp -r "$top/analyzer/btrace" "$tmp/tree/analyzer/"
chmod -R a+rX "$tmp/bin" "$tmp/share" "$tmp/guest" "$tmp/tree"

# its own host UUID: to libvirt, the session daemon below is another host
cat > "$tmp/libvirtd.conf" <<EOF
unix_sock_dir = "$tmp/sock"
log_outputs = "3:file:$tmp/libvirtd.log"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
EOF

daemons=()
stop_daemons() {
    local pid
    for pid in "${daemons[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
# the domain dies with the daemon's destroy; a leftover QEMU would not
cleanup() {
    virsh destroy vm1 >/dev/null 2>&1 || true
    [ -z "${user_env:-}" ] || as_user virsh -c qemu:///session destroy vm1 >/dev/null 2>&1 || true
    if [ -s "${sess:-/nonexistent}/run/libvirt/virtlogd.pid" ]; then
        daemons+=("$(cat "$sess/run/libvirt/virtlogd.pid")")
    fi
    stop_daemons
}
if [ -n "${BT_LIBVIRT_KEEP:-}" ]; then
    trap 'cleanup; echo "kept $tmp"' EXIT
else
    trap 'cleanup; rm -rf "$tmp"' EXIT
fi

/usr/sbin/virtlogd --pid-file "$tmp/virtlogd.pid" 2>>"$tmp/virtlogd.err" &
daemons+=($!)
/usr/sbin/libvirtd --config "$tmp/libvirtd.conf" --pid-file "$tmp/libvirtd.pid" \
    2>>"$tmp/libvirtd.err" &
daemons=($! "${daemons[@]}")

export LIBVIRT_DEFAULT_URI="qemu:///system?socket=$tmp/sock/libvirt-sock"
uri=$LIBVIRT_DEFAULT_URI
# libvirtd probes the emulator's capabilities (QMP) at the first create;
# until then it must only answer
for _ in $(seq 300); do
    virsh -q list >/dev/null 2>&1 && break
    kill -0 "${daemons[0]}" 2>/dev/null || { tail -n 20 "$tmp/libvirtd.log"; fail "libvirtd exited"; }
    sleep 0.1
done
virsh -q list >/dev/null || fail "libvirtd does not answer on $uri"

# nobody's own libvirtd for qemu:///session (it starts its own virtlogd):
# the migration target, where QEMU runs as nobody
sess=$tmp/session
mkdir -p "$sess"
chown nobody:nogroup "$sess"
user_env=(setpriv --reuid=nobody --regid=nogroup --clear-groups
          env -u LIBVIRT_DEFAULT_URI HOME="$sess" XDG_RUNTIME_DIR="$sess/run"
          XDG_CONFIG_HOME="$sess/config" XDG_CACHE_HOME="$sess/cache"
          XDG_DATA_HOME="$sess/data" LIBVIRT_AUTOSTART=0)   # only ours
as_user() {
    "${user_env[@]}" "$@"
}
as_user mkdir -m 700 "$sess/run"
# not through the function: $! must be libvirtd itself (setpriv and env exec)
"${user_env[@]}" /usr/sbin/libvirtd >"$sess/libvirtd.out" 2>&1 &
daemons=($! "${daemons[@]}")
for _ in $(seq 300); do
    as_user virsh -c qemu:///session -q list >/dev/null 2>&1 && break
    kill -0 "${daemons[0]}" 2>/dev/null || { cat "$sess/libvirtd.out"; fail "session libvirtd exited"; }
    sleep 0.1
done
sess_uri="qemu:///session?socket=$sess/run/libvirt/libvirt-sock"

cat > "$tmp/vm1.xml" <<EOF
<domain type='qemu'>
  <name>vm1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$tmp/guest/vmlinuz</kernel>
    <initrd>$tmp/guest/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet bt.wss=32 bt.rate=64 bt.report=1</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>$tmp/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='$tmp/console.log' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
t0=$SECONDS
if ! virsh create "$tmp/vm1.xml" >"$tmp/create.out" 2>&1; then
    cat "$tmp/create.out"
    tail -n 20 "$tmp/libvirtd.log"
    fail "virsh create failed"
fi
echo "libvirt: vm1 created in $((SECONDS - t0)) s"
qemu_pid=$(cat /run/libvirt/qemu/vm1.pid)
[ "$(ps -o user= -p "$qemu_pid")" = libvirt-qemu ] ||
    fail "QEMU runs as $(ps -o user= -p "$qemu_pid"), not libvirt-qemu"
# the workload reports once a second: the guest has booted
for _ in $(seq 600); do
    grep -aq '^bt-workload:' "$tmp/console.log" 2>/dev/null && break
    sleep 0.2
done
grep -aq '^bt-workload:' "$tmp/console.log" ||
    { tail -n 20 "$tmp/console.log"; fail "the guest did not start its workload in 120 s"; }
echo "libvirt: guest running its workload after $((SECONDS - t0)) s"

# The README's blocks, with the substitutions above
awk '/^## With libvirt/ { in_s = 1; next }
     /^## / { in_s = 0 }
     in_s && /^```sh/ { n++; f = sprintf("'"$tmp"'/block%d.sh", n); next }
     in_s && /^```/ { f = ""; next }
     f != "" { print > f }' "$top/README.md"
if [ ! -s "$tmp/block1.sh" ] || [ ! -s "$tmp/block2.sh" ] || [ ! -s "$tmp/block3.sh" ] ||
   [ -e "$tmp/block4.sh" ]; then
    fail "README's libvirt section: expected three sh blocks"
fi

run_block() {       # N LOG: run block N writing LOG; its transcript in blockN.out
    local n=$1 log=$2
    sed -e "s|/var/tmp/vm1-dirty.log|$log|g" \
        -e "s|qemu+ssh://host2/system|$sess_uri|g" \
        -e "s|^scripts/bt-|$top/scripts/bt-|" \
        -e 's|^virsh migrate |! virsh migrate |' \
        "$tmp/block$n.sh" > "$tmp/block$n.run"
    t0=$SECONDS
    if ! (cd "$tmp" && timeout 600 bash -e -x "$tmp/block$n.run") >"$tmp/block$n.out" 2>&1; then
        cat "$tmp/block$n.out"
        fail "README libvirt block $n failed"
    fi
    echo "libvirt: README block $n ran in $((SECONDS - t0)) s"
}

check_log() {       # LOG ITERATIONS
    PYTHONPATH=$top/analyzer "$py" - "$1" "$2" <<'EOF' || fail "log $1"
import sys
from btrace.parse import parse
log = parse(sys.argv[1])
want = int(sys.argv[2])
measured = len(log.iters) - 1
assert measured == want, f'{measured} measured iterations, not {want}'
assert log.end and log.end['status'] == 'completed', f'end line: {log.end}'
print(f'libvirt: {sys.argv[1]}: {measured} iterations, end {log.end["status"]}')
EOF
}
# --- block 1: QMP, the event, migration refused --------------------------
run_block 1 "$tmp/qmp.log"
out=$tmp/block1.out
grep -q 'error: .*Live migration disabled: bitmap-trace in progress' "$out" ||
    { cat "$out"; fail "virsh migrate was not refused with bitmap-trace's blocker"; }
grep -q 'BITMAP_TRACE_COMPLETED.*"status":"completed"' "$out" ||
    { cat "$out"; fail "no BITMAP_TRACE_COMPLETED (completed) through qemu-monitor-event"; }
grep -qi 'completed' <(sed -n '/info bitmap_trace/,$p' "$out") ||
    { cat "$out"; fail "info bitmap_trace does not say completed"; }
[ "$(stat -c %U "$tmp/qmp.log")" = root ] || fail "the log is not the test's own file"
iters=$(grep -o '"iterations":[0-9]*' "$tmp/block1.sh" | cut -d: -f2)
check_log "$tmp/qmp.log" "$iters"
grep -q 'pre-copy prediction' "$out" || fail "bt-report printed no prediction"

# --- block 2: HMP ----------------------------------------------------------
run_block 2 "$tmp/hmp.log"
out=$tmp/block2.out
grep -q 'BITMAP_TRACE_COMPLETED.*"status":"completed"' "$out" ||
    { cat "$out"; fail "no BITMAP_TRACE_COMPLETED after the HMP trace"; }
iters=$(grep -o "bitmap-trace on [^ ]* [0-9]*" "$tmp/block2.sh" | awk '{print $4}')
check_log "$tmp/hmp.log" "$iters"

# --- block 3: bt-trace ------------------------------------------------------
run_block 3 "$tmp/bt.log"
out=$tmp/block3.out
iters=$(grep -o -- '--iterations [0-9]*' "$tmp/block3.sh" | awk '{print $2}')
grep -q "bt-trace: active: round [1-9][0-9]*/$iters, .* dirty rate [0-9.]* MiB/s" "$out" ||
    { cat "$out"; fail "bt-trace showed no progress"; }
grep -q "bt-trace: trace completed after $iters iterations" "$out" ||
    { cat "$out"; fail "bt-trace did not see the trace complete"; }
grep -q '^  1 Gbit/s' "$out" || { cat "$out"; fail "bt-trace: no bt-report prediction at 1G"; }
check_log "$tmp/bt.log" "$iters"

# bt-trace stopped by SIGINT (Ctrl-C): the trace is cancelled, the log ends
# so, the descriptor is given back, the domain runs on
"$top/scripts/bt-trace" vm1 --iterations 3000 -o "$tmp/int.log" --brief \
    >"$tmp/int.out" 2>"$tmp/int.err" &
bt_pid=$!
for _ in $(seq 300); do
    grep -q 'bt-trace: active: round [1-9]' "$tmp/int.err" && break
    kill -0 "$bt_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q 'bt-trace: active: round [1-9]' "$tmp/int.err" ||
    { cat "$tmp/int.err"; fail "bt-trace shows no progress"; }
kill -INT "$bt_pid"
rc=0
timeout 60 tail --pid="$bt_pid" -f /dev/null || fail "bt-trace did not end 60 s after SIGINT"
wait "$bt_pid" || rc=$?
[ "$rc" = 130 ] || { cat "$tmp/int.err"; fail "bt-trace after SIGINT: exit $rc, not 130"; }
grep -q 'ended: cancelled' "$tmp/int.out" || { cat "$tmp/int.out"; fail "bt-trace: no report of the cancelled trace"; }
tail -n 1 "$tmp/int.log" | grep -q '^end status=cancelled ' ||
    fail "the log of the interrupted trace ends: $(tail -n 1 "$tmp/int.log")"
[ "$(virsh domstate vm1)" = running ] || fail "vm1 is $(virsh domstate vm1) after bt-trace's SIGINT"
virsh qemu-monitor-command vm1 '{"execute":"query-fdsets"}' >"$tmp/fdsets.out"
grep -q 'bt-trace log' "$tmp/fdsets.out" && fail "bt-trace left its fd set: $(cat "$tmp/fdsets.out")"
echo "libvirt: bt-trace stopped by SIGINT: $(grep 'trace cancelled' "$tmp/int.err")"

# --- after the traces: a live migration to the session daemon ---------------
# The guest's console moves to a file nobody may write; the workload must go
# on reporting there
virsh dumpxml --migratable vm1 | sed "s|$tmp/console.log|$sess/console.log|" \
    >"$tmp/vm1-dest.xml"
t0=$SECONDS
virsh migrate --live --xml "$tmp/vm1-dest.xml" vm1 "$sess_uri" \
    --migrateuri tcp://127.0.0.1 >"$tmp/migrate.out" 2>&1 ||
    { cat "$tmp/migrate.out"; fail "virsh migrate after the trace failed"; }
echo "libvirt: virsh migrate --live to qemu:///session after the trace: $((SECONDS - t0)) s"
if virsh domstate vm1 >/dev/null 2>&1; then
    fail "vm1 is still on the source after the migration"
fi
kill -0 "$qemu_pid" 2>/dev/null && fail "the source QEMU still runs after the migration"
svirsh() { as_user virsh -c qemu:///session "$@"; }
[ "$(svirsh domstate vm1)" = running ] || fail "vm1 is $(svirsh domstate vm1) on the target"
qemu_pid=$(cat "$sess/run/libvirt/qemu/run/vm1.pid")
[ "$(ps -o user= -p "$qemu_pid")" = nobody ] || fail "the target's QEMU does not run as nobody"
for _ in $(seq 100); do
    grep -aq '^bt-workload:' "$sess/console.log" 2>/dev/null && break
    sleep 0.2
done
grep -aq '^bt-workload:' "$sess/console.log" ||
    fail "the migrated guest's workload does not report"

# --- bt-trace -c qemu:///session, as nobody, on the migrated guest ------------
as_user "$tmp/tree/scripts/bt-trace" -c qemu:///session vm1 --iterations 20 \
    -o "$sess/bt.log" --brief >"$sess/bt.out" 2>&1 ||
    { cat "$sess/bt.out"; fail "bt-trace -c qemu:///session failed"; }
grep -q 'bt-trace: trace completed after 20 iterations' "$sess/bt.out" ||
    { cat "$sess/bt.out"; fail "bt-trace -c qemu:///session: the trace did not complete"; }
grep -q 'dirty rate: [1-9][0-9.]* MiB/s' "$sess/bt.out" ||
    { cat "$sess/bt.out"; fail "bt-trace -c qemu:///session: the migrated guest writes nothing"; }
[ "$(stat -c %U "$sess/bt.log")" = nobody ] || fail "the session log is not nobody's"
check_log "$sess/bt.log" 20
echo "libvirt: bt-trace -c qemu:///session on the migrated guest: ok"

# --- libvirt still manages the domain -------------------------------------------
[ "$(svirsh domstate vm1)" = running ] || fail "vm1 is $(svirsh domstate vm1)"
svirsh shutdown vm1 >/dev/null || fail "virsh shutdown failed"
svirsh destroy vm1 >/dev/null || fail "virsh destroy failed"
if svirsh domstate vm1 >/dev/null 2>&1; then
    fail "transient vm1 still exists after destroy"
fi
kill -0 "$qemu_pid" 2>/dev/null && fail "QEMU $qemu_pid still runs after destroy"
echo "libvirt: domstate, shutdown, destroy: ok"
