#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Harness test: on a fresh machine, the first make installs ccache (its
# make deps step) and the next make must not configure, so build, QEMU
# again.  The Makefile's deps, fetch, assemble and configure steps run on
# stubs in a copy of the repository, no QEMU: deps puts a ccache on PATH
# as installing the package does, configure records its arguments.
# Exit 0 = pass, anything else = fail.
set -euo pipefail
. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
use_tmp

repo=$tmp/repo
queue10=$(base_queue 10.0)
mkdir -p "$repo/scripts" "$repo/$queue10" "$tmp/bin" "$tmp/installed"
cp "$top/Makefile" "$repo/"
cp -r "$top/scripts/lib" "$repo/scripts/"
cp "$top/$queue10/series" "$repo/$queue10/"

# A PATH without ccache: this machine's /usr/bin less ccache, then the
# directory the deps stub installs it into
for f in /usr/bin/*; do
    [ "${f##*/}" = ccache ] || ln -s "$f" "$tmp/bin/"
done
path=$tmp/installed:$tmp/bin

cat > "$repo/scripts/deps.sh" <<EOF
#!/bin/bash
printf '#!/bin/sh\nexec "\$@"\n' > "$tmp/installed/ccache"
chmod +x "$tmp/installed/ccache"
mkdir -p build && touch build/.stamp-deps
EOF
cat > "$repo/scripts/fetch-qemu.sh" <<EOF
#!/bin/bash
mkdir -p build/qemu
printf '#!/bin/bash\necho "\$*" >> "$tmp/configure-runs"\n' > build/qemu/configure
chmod +x build/qemu/configure
EOF
printf '#!/bin/bash\nexit 0\n' > "$repo/scripts/assemble.sh"

unset BUILD QEMU_BASE MAKEFLAGS
[ -z "$(PATH=$path command -v ccache)" ] || fail "ccache is on the stubs' PATH before deps"
for run in 1 2; do
    PATH=$path make -s -C "$repo" build/.stamp-configure > "$tmp/make.out" 2>&1 ||
        fail "make, run $run: $(cat "$tmp/make.out")"
done
runs=$(wc -l < "$tmp/configure-runs")
[ "$runs" = 1 ] || fail "QEMU was configured $runs times: $(cat "$tmp/configure-runs")"
grep -q -- '--cc=ccache gcc' "$tmp/configure-runs" ||
    fail "configured without ccache: $(cat "$tmp/configure-runs")"
echo "configure-once-test: a make that installs ccache, then another: QEMU configured once, with ccache"
