#!/bin/bash
# make series-check: check that the series of `make series` is bisectable
# and clean.  For every commit, in order, against a build of its own
# (build/series/obj, configured once like build/obj):
#   - scripts/checkpatch.pl on the commit's patch;
#   - it builds (qemu-system-x86_64 and the qtests present at that commit);
#   - the tests present at that commit pass: the series' qtests once they
#     exist, qmp-cmd-test and test-hmp (which run every QMP and HMP command),
#     and the QAPI schema tests.
# Ends with "N passed, N failed" over all of them; exit 1 on any failure.
#
# Needs `make series` first.  CONFIGURE_FLAGS comes from the Makefile.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
repo=$build/series/repo
out=$build/series/out
obj=$build/series/obj
logs=$build/series/logs
mkdir -p "$logs"

die() { echo "series-check: $*" >&2; exit 2; }

# Hold build/series for the whole run: make series would rewrite the repo
exec 8>"$build/series/.lock"
flock 8
[ -d "$repo/.git" ] && [ -d "$out" ] || die "no series: run make series first"

pass=0 fail=0 failed=()
result() {
    if [ "$1" = pass ]; then pass=$((pass + 1)); echo "PASS  $2"
    else fail=$((fail + 1)); failed+=("$2"); echo "FAIL  $2"; fi
}

git_() { git -C "$repo" "$@"; }
commits=$(git_ rev-list --reverse base..series)
[ -n "$commits" ] || die "the series is empty"

if [ ! -f "$obj/build.ninja" ]; then
    git_ checkout -q -f base
    mkdir -p "$obj"
    # the Makefile's flags, with their shell quoting (--cc="ccache gcc")
    eval "flags=(${CONFIGURE_FLAGS:-})"
    (cd "$obj" && "$repo/configure" "${flags[@]}") > "$logs/configure.log" 2>&1 ||
        { tail -20 "$logs/configure.log"; die "configure failed"; }
fi

i=0
for c in $commits; do
    i=$((i + 1))
    name="$(printf '%02d' $i) $(git_ log -1 --format=%s "$c")"
    git_ checkout -q -f "$c"
    patch=$(ls "$out"/"$(printf '%04d' $i)"-*.patch)

    if (cd "$repo" && scripts/checkpatch.pl -q "$patch") > "$logs/$i-checkpatch.log" 2>&1; then
        result pass "$name: checkpatch"
    else
        cat "$logs/$i-checkpatch.log"; result fail "$name: checkpatch"
    fi

    tests=(qmp-cmd-test test-hmp)
    for t in bitmap-trace-test bitmap-trace-guest-test; do
        [ -f "$repo/tests/qtest/$t.c" ] && tests+=("$t")
    done
    targets=(qemu-system-x86_64)
    for t in "${tests[@]}"; do targets+=("tests/qtest/$t"); done
    if ninja -C "$obj" "${targets[@]}" > "$logs/$i-build.log" 2>&1; then
        result pass "$name: builds"
        bash "$top/scripts/firmware-links.sh" "$obj"
    else
        grep -E 'error|Error' "$logs/$i-build.log" | head -20
        result fail "$name: builds"
        continue
    fi

    suites=()
    for t in "${tests[@]}"; do suites+=("qtest-x86_64/$t"); done
    if (cd "$obj" && meson test --no-rebuild "${suites[@]}" &&
        meson test --no-rebuild --suite qapi-schema) > "$logs/$i-test.log" 2>&1; then
        result pass "$name: tests (${tests[*]}, qapi-schema)"
    else
        grep -E '^ *[0-9]+/[0-9]+ .*(FAIL|ERROR|TIMEOUT)' "$logs/$i-test.log"
        result fail "$name: tests (${tests[*]}, qapi-schema)"
    fi
done

echo
[ ${#failed[@]} -eq 0 ] || { echo "Failed:"; printf '  %s\n' "${failed[@]}"; }
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
