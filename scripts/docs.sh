#!/bin/bash
# make docs: build QEMU's manual from the assembled tree (build/qemu) with
# QEMU's own sphinx setup and warnings as errors (--enable-werror makes
# docs/meson.build pass -W to sphinx-build), in build/docs-obj.  This covers
# the series' rst page and the QAPI reference generated from its schema
# documentation.  Arguments: the configure flags of the main build.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
obj=$build/docs-obj

/usr/bin/python3 -c 'import sphinx, sphinx_rtd_theme' 2>/dev/null ||
    { echo "docs: sphinx or its rtd theme is missing (run: sudo make deps)" >&2; exit 2; }
mkdir -p "$obj"
flags=()
for f in "$@"; do
    [ "$f" = --disable-docs ] || flags+=("$f")
done
flags+=(--enable-docs --enable-werror)
if ! printf '%q ' "${flags[@]}" | cmp -s - "$obj/configure-flags"; then
    (cd "$obj" && "$build/qemu/configure" "${flags[@]}") > "$obj/configure.log" 2>&1 ||
        { tail -30 "$obj/configure.log"; exit 1; }
    printf '%q ' "${flags[@]}" > "$obj/configure-flags"
fi
flock "$build/.lock" bash "$top/scripts/assemble.sh" overlay >/dev/null
ninja -C "$obj" html
echo "docs: $obj/docs/manual/devel/migration/bitmap-trace.html"
