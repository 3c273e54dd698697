#!/bin/bash
# Build the series with AddressSanitizer and UndefinedBehaviorSanitizer in a
# build directory of its own, build/asan-obj, from the same assembled tree
# (build/qemu) as the normal build: the emulator, its option ROMs and the
# qtests given as arguments (tests/qtest/NAME).  The configure flags are
# the main build's, from $CONFIGURE_FLAGS, plus
#   --enable-asan --enable-ubsan --extra-cflags=-fno-sanitize-recover=undefined
# as in QEMU's own CI (clang-system in .gitlab-ci.d/buildtest.yml): any UBSan
# report aborts the process, so it cannot go unnoticed.  The firmware path
# points at this directory's option ROMs instead of build/obj's.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
build=$(cd "$build" && pwd)
obj=$build/asan-obj

[ -n "${CONFIGURE_FLAGS:-}" ] ||
    { echo "sanitizers-build: CONFIGURE_FLAGS is not set (run it through make)" >&2; exit 2; }
[ -d "$build/qemu" ] ||
    { echo "sanitizers-build: $build/qemu missing: assemble first (make)" >&2; exit 2; }

eval "main_flags=($CONFIGURE_FLAGS)"   # shell words, quotes and all, as in make
flags=()
for f in "${main_flags[@]}"; do
    case $f in
    --firmwarepath=*) f=${f//"$build/obj/"/"$obj/"} ;;
    esac
    flags+=("$f")
done
flags+=(--enable-asan --enable-ubsan --extra-cflags=-fno-sanitize-recover=undefined)

mkdir -p "$obj"
exec 9>"$build/.lock"
flock 9
bash "$top/scripts/assemble.sh" overlay
if ! printf '%q ' "${flags[@]}" | cmp -s - "$obj/configure-flags" ||
        [ ! -f "$obj/build.ninja" ]; then
    (cd "$obj" && "$build/qemu/configure" "${flags[@]}") > "$obj/configure.log" 2>&1 ||
        { tail -30 "$obj/configure.log"; exit 1; }
    printf '%q ' "${flags[@]}" > "$obj/configure-flags"
fi
ninja -C "$obj" qemu-system-x86_64 "$@"
flock -u 9
make -s -C "$obj/pc-bios/optionrom" >/dev/null
bash "$top/scripts/firmware-links.sh" "$obj"
