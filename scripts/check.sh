#!/bin/bash
# Run every test of the series and print one line "N passed, N failed, N skipped".
#
#   1. checkpatch.pl over the series' C files and patches
#   2. the series' qtests and the upstream tests that exercise every QMP and
#      HMP command and the QAPI schema, through meson test
#   3. the quick pre-copy cases of upstream migration-test
#   4. harness-level tests: tests/harness/*-test.sh (exit 0 pass, 77 skip)
#   5. sanitizers: the qtests of 2. built with ASan and UBSan in
#      build/asan-obj (scripts/sanitizers-build.sh), any report a failure
#
# CHECK_ONLY="checkpatch qtest migration harness sanitizers" picks suites.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# $build, and $queue: QEMU_BASE's patch queue (patches/10.0/, patches/10.2/)
. "$top/scripts/lib/base.sh"
tree=$build/qemu
obj=$build/obj
logs=$build/check
# shellcheck source=lib/queue.sh
. "$top/scripts/lib/queue.sh"
suites=${CHECK_ONLY:-checkpatch qtest migration harness sanitizers}
mkdir -p "$logs"

pass=0 fail=0 skip=0
failed=()

result() {  # result pass|fail|skip NAME [why]
    case $1 in
    pass) pass=$((pass + 1)); echo "PASS  $2" ;;
    fail) fail=$((fail + 1)); failed+=("$2"); echo "FAIL  $2${3:+: $3}" ;;
    skip) skip=$((skip + 1)); echo "SKIP  $2${3:+: $3}" ;;
    esac
}

# Count the TAP results of a test's output ($2) under suite name $1
count_tap() {
    local name=$1 out=$2 line
    while IFS= read -r line; do
        case "$line" in
        "not ok "*) result fail "$name ${line#not ok }" ;;
        "ok "*"# SKIP"*) result skip "$name ${line#ok }" ;;
        "ok "*) result pass "$name ${line#ok }" ;;
        esac
    done < "$out"
}

# meson test ARGS..., then count its results (TAP subtests one by one).
# $obj is the build directory; $tag, if set, prefixes the tests' names.
meson_run() {
    local name res proto tapfile
    (cd "$obj" && meson test --no-rebuild --print-errorlogs "$@") \
        > "$logs/meson.log" 2>&1
    grep -E '^ *[0-9]+/[0-9]+ |ERROR' "$logs/meson.log"
    python3 - "$obj/meson-logs/testlog.json" "$logs" "${tag:-}" \
        > "$logs/meson-results" <<'EOF'
import json, re, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    name = sys.argv[3] + t["name"].split(" / ")[-1].replace(" ", "_")
    tap = re.search(r"^1\.\.[0-9]+$", t.get("stdout", ""), re.M)
    print(name, t["result"], "tap" if tap else "exitcode")
    if tap:
        tap = sys.argv[2] + "/" + name.replace("/", "_") + ".tap"
        open(tap, "w").write(t.get("stdout", ""))
EOF
    [ -s "$logs/meson-results" ] || result fail "meson test $*" "no results"
    while read -r name res proto; do
        if [ "$proto" = tap ]; then
            tapfile=$logs/${name//\//_}.tap
            count_tap "$name" "$tapfile"
            # a crash or a timeout may leave no "not ok" line
            case "$res" in
            OK|SKIP|EXPECTEDFAIL) ;;
            *) result fail "$name" "meson says $res" ;;
            esac
        else
            case "$res" in
            OK) result pass "$name" ;;
            SKIP) result skip "$name" ;;
            *) result fail "$name" "$res" ;;
            esac
        fi
    done < "$logs/meson-results"
}

if [[ " $suites " == *" checkpatch "* ]]; then
    echo "== checkpatch"
    require_queue
    (cd "$top/qemu" && find . -name '*.[ch]' | sed 's|^\./||' | sort) \
        > "$logs/checkpatch-files"
    while read -r f; do
        if (cd "$tree" && scripts/checkpatch.pl --no-tree -q -f "$f") \
                > "$logs/checkpatch.out" 2>&1; then
            result pass "checkpatch $f"
        else
            cat "$logs/checkpatch.out"
            result fail "checkpatch $f"
        fi
    done < "$logs/checkpatch-files"
    while read -r p; do
        if (cd "$tree" && scripts/checkpatch.pl --no-tree -q "$queue/$p") \
                > "$logs/checkpatch.out" 2>&1; then
            result pass "checkpatch $p"
        else
            cat "$logs/checkpatch.out"
            result fail "checkpatch $p"
        fi
done < <(queue_patches "$queue/series")
    # The series as qemu-devel would get it (make series): new files need
    # what checkpatch only checks in a patch (SPDX tags, MAINTAINERS).
    if bash "$top/scripts/series.sh" > "$logs/series.log" 2>&1; then
        for p in "$build"/series/out/0*.patch; do
            case "$p" in */0000-cover-letter.patch) continue ;; esac
            if (cd "$tree" && scripts/checkpatch.pl -q "$p") \
                    > "$logs/checkpatch.out" 2>&1; then
                result pass "checkpatch series/$(basename "$p")"
            else
                cat "$logs/checkpatch.out"
                result fail "checkpatch series/$(basename "$p")"
            fi
        done
    else
        tail -20 "$logs/series.log"
        result fail "make series"
    fi
fi

kvm_note() {
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        echo "== /dev/kvm is usable: KVM cases run"
    else
        echo "== /dev/kvm is not usable here: KVM cases are skipped"
    fi
}

if [[ " $suites " == *" qtest "* ]]; then
    echo "== meson test: series qtests, qmp-cmd-test, test-hmp, QAPI schema"
    kvm_note
    qtests="bitmap-trace-test bitmap-trace-guest-test qmp-cmd-test test-hmp"
    targets=()
    for t in $qtests; do targets+=("tests/qtest/$t"); done
    bash "$top/scripts/build.sh" "${targets[@]}" > "$logs/build.log" 2>&1 ||
        { cat "$logs/build.log"; result fail "build tests"; }
    names=()
    for t in $qtests; do names+=("qtest-x86_64/$t"); done
    meson_run "${names[@]}"
    meson_run --suite qapi-schema
fi

if [[ " $suites " == *" migration "* ]]; then
    echo "== migration-test: quick pre-copy cases"
    bash "$top/scripts/build.sh" tests/qtest/migration-test > "$logs/build.log" 2>&1 ||
        { cat "$logs/build.log"; result fail "build migration-test"; }
    (cd "$obj" && QTEST_QEMU_BINARY=./qemu-system-x86_64 timeout 600 \
        tests/qtest/migration-test --tap -k \
        -p /x86_64/migration/precopy/file \
        -p /x86_64/migration/precopy/unix/plain \
        -p /x86_64/migration/precopy/tcp/plain) > "$logs/migration.tap" 2>&1
    rc=$?
    count_tap migration-test "$logs/migration.tap"
    [ $rc = 0 ] || result fail migration-test "exit status $rc"
fi

if [[ " $suites " == *" sanitizers "* ]]; then
    echo "== sanitizers: series qtests, qmp-cmd-test, test-hmp under ASan and UBSan"
    kvm_note
    san_logs=$logs/sanitizers
    qtests="bitmap-trace-test bitmap-trace-guest-test qmp-cmd-test test-hmp"
    targets=() names=()
    for t in $qtests; do
        targets+=("tests/qtest/$t")
        names+=("qtest-x86_64/$t")
    done
    if bash "$top/scripts/sanitizers-build.sh" "${targets[@]}" \
            > "$logs/sanitizers-build.log" 2>&1; then
        rm -rf "$san_logs"
        mkdir -p "$san_logs"
        # Every report aborts the process that made it (QEMU or the test)
        # and goes to a file of its own under $san_logs, so a report is a
        # failure even where an exit status goes unchecked.
        # Leaks: tests/sanitizers/lsan.supp (narrow, documented).
        ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_summary=1:detect_leaks=1:log_path=$san_logs/asan" \
        UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1:log_path=$san_logs/ubsan" \
        LSAN_OPTIONS="suppressions=$top/tests/sanitizers/lsan.supp:print_suppressions=0" \
        obj=$build/asan-obj tag=asan+ubsan/ \
            meson_run --timeout-multiplier 3 "${names[@]}"
        # A file with only ASan's warning that it does not fully support
        # swapcontext (QEMU's coroutines; QEMU annotates its stack
        # switches) is no report.  UBSan writes its SUMMARY line to the
        # file but the report itself to stderr: meson's log has it.
        for r in "$san_logs"/*; do
            [ -e "$r" ] || continue
            case $r in */canary.*) continue ;; esac
            grep -q -E 'ERROR: |SUMMARY: ' "$r" || continue
            cat "$r"
            case $r in
            */ubsan.*) grep -h -A12 'runtime error: ' \
                           "$build/asan-obj/meson-logs/testlog.txt" ;;
            esac
            result fail "sanitizer report $(basename "$r")" \
                "$(grep -m1 -E 'ERROR: |SUMMARY: ' "$r")"
        done
        instrumented=true
        for b in qemu-system-x86_64 "${targets[@]}"; do
            libs=$(ldd "$build/asan-obj/$b" 2>&1)
            [[ $libs == *libasan* && $libs == *libubsan* ]] ||
                { echo "$b: not linked with libasan and libubsan"; instrumented=false; }
        done
        if $instrumented; then
            result pass "sanitizers: QEMU and the qtests link libasan and libubsan"
        else
            result fail "sanitizers: QEMU and the qtests link libasan and libubsan"
        fi
        # The canary: with the same options, a leak in QEMU (malloc'ed by
        # a preloaded library) must be reported, or the runs above prove
        # nothing.
        printf '%s\n' '#include <stdlib.h>' 'void *canary;' \
            '__attribute__((constructor)) static void leak(void)' \
            '{ canary = malloc(4242); canary = NULL; }' > "$san_logs/leak.c"
        if gcc -shared -fPIC -o "$san_logs/leak.so" "$san_logs/leak.c" &&
           { (LD_PRELOAD="$(gcc -print-file-name=libasan.so) $san_logs/leak.so" \
              ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:log_path=$san_logs/canary" \
              "$build/asan-obj/qemu-system-x86_64" -M none -display none \
                  -monitor none -serial none -S -qmp stdio \
                  <<< '{"execute": "qmp_capabilities"} {"execute": "quit"}' \
                  > /dev/null 2>&1; true) 2>/dev/null; } &&
           grep -qs 'LeakSanitizer: detected memory leaks' "$san_logs"/canary.* &&
           grep -qs 'Direct leak of 4242 byte' "$san_logs"/canary.*; then
            result pass "sanitizers canary: a leak in QEMU is reported"
        else
            cat "$san_logs"/canary.* 2>/dev/null
            result fail "sanitizers canary: a leak in QEMU is reported"
        fi
    else
        tail -30 "$logs/sanitizers-build.log"
        result fail "build with sanitizers"
    fi
fi

if [[ " $suites " == *" harness "* ]]; then
    echo "== harness tests"
    for t in "$top"/tests/harness/*-test.sh; do     # not lib.sh
        [ -e "$t" ] || continue
        name=harness/$(basename "$t" .sh)
        bash "$t" > "$logs/$(basename "$t").log" 2>&1
        rc=$?
        case $rc in
        0) result pass "$name" ;;
        77) result skip "$name" "$(tail -1 "$logs/$(basename "$t").log")" ;;
        *) tail -30 "$logs/$(basename "$t").log"; result fail "$name" "exit $rc" ;;
        esac
    done
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "Failed:"
    printf '  %s\n' "${failed[@]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
