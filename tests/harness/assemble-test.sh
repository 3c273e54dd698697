#!/bin/bash
# Harness test: fetch-qemu.sh and assemble.sh on a small fake QEMU tree.
#  - QEMU_SRC and QEMU_TARBALL are accepted for 10.0.x and refused otherwise
#  - a full assembly applies the series and the overlay, read-only
#  - a re-assembly rewrites only files whose content changed
#  - a series that does not apply is a hard error naming patch and hunk
#  - QEMU_BASE=10.2 wants a 10.2.x tree and applies patches/10.2/
#  - scripts/lib/base.sh gives each base its queue and build directory
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
use_tmp

# root may write anything: look at the mode bits, not at access(2)
writable() { [[ "$(stat -c %A "$1")" == *w* ]]; }

# A fake repository: its own copy of the scripts, a series and an overlay
repo=$tmp/repo
mkdir -p "$repo/scripts" "$repo/patches/10.0" "$repo/qemu/migration"
cp "$top/scripts/fetch-qemu.sh" "$top/scripts/assemble.sh" "$repo/scripts/"
cp -r "$top/scripts/lib" "$repo/scripts/"
export BUILD=$repo/build
unset QEMU_BASE     # the default base; QEMU_BASE=10.2 is checked at the end
# the fetches below name their source: none may come from the environment
unset QEMU_SRC QEMU_TARBALL

src=$tmp/qemu-10.0.99
mkdir -p "$src/migration" "$src/util"
echo 10.0.99 > "$src/VERSION"
printf 'int a;\nint b;\nint c;\n' > "$src/migration/ram.c"
printf 'int u;\n' > "$src/util/u.c"

# QEMU_SRC: copied, never modified; the version is recorded
QEMU_SRC=$src bash "$repo/scripts/fetch-qemu.sh" > "$tmp/out" 2>&1 ||
    fail "QEMU_SRC fetch: $(cat "$tmp/out")"
grep -q '^10.0.99 (QEMU_SRC=' "$BUILD/qemu-version" || fail "qemu-version"
cmp -s "$src/migration/ram.c" "$BUILD/qemu-src/migration/ram.c" ||
    fail "QEMU_SRC not copied"

# QEMU_TARBALL works too; another version is refused
tar -C "$tmp" -cJf "$tmp/qemu.tar.xz" qemu-10.0.99
QEMU_TARBALL=$tmp/qemu.tar.xz bash "$repo/scripts/fetch-qemu.sh" \
    > "$tmp/out" 2>&1 || fail "QEMU_TARBALL fetch: $(cat "$tmp/out")"
mkdir -p "$tmp/old" && echo 9.2.0 > "$tmp/old/VERSION"
if QEMU_SRC=$tmp/old bash "$repo/scripts/fetch-qemu.sh" > "$tmp/out" 2>&1; then
    fail "a 9.2 tree was accepted"
fi
grep -q "QEMU 9.2.0; this series is for QEMU 10.0.x" "$tmp/out" ||
    fail "wrong refusal: $(cat "$tmp/out")"

# A series of one patch, and an overlay file, in the queue of the default
# base, patches/10.0/; its series names the overlay file the commit adds
cat > "$repo/patches/10.0/0001-b.patch" <<'EOF'
Subject: [PATCH] change b

---
--- a/migration/ram.c
+++ b/migration/ram.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+long b;
 int c;
EOF
printf '# a comment\n0001-b.patch migration/bitmap-trace.c\n' > "$repo/patches/10.0/series"
echo 'int trace;' > "$repo/qemu/migration/bitmap-trace.c"

bash "$repo/scripts/assemble.sh" full > "$tmp/out" 2>&1 ||
    fail "assembly: $(cat "$tmp/out")"
t=$BUILD/qemu
grep -q 'long b' "$t/migration/ram.c" || fail "patch not applied"
cmp -s "$repo/qemu/migration/bitmap-trace.c" "$t/migration/bitmap-trace.c" ||
    fail "overlay not laid"
! writable "$t/migration/bitmap-trace.c" || fail "overlay file is writable"
! writable "$t/migration/ram.c" || fail "patched file is writable"
writable "$t/util/u.c" || fail "an untouched file was made read-only"

# Incremental: only what changed is rewritten
touch -d '2000-01-01' "$t/util/u.c" "$t/migration/ram.c"
echo 'int trace2;' > "$repo/qemu/migration/bitmap-trace.c"
bash "$repo/scripts/assemble.sh" overlay > "$tmp/out" 2>&1 ||
    fail "overlay refresh: $(cat "$tmp/out")"
grep -q trace2 "$t/migration/bitmap-trace.c" || fail "overlay not refreshed"
bash "$repo/scripts/assemble.sh" full > "$tmp/out" 2>&1 ||
    fail "re-assembly: $(cat "$tmp/out")"
[ "$(stat -c %Y "$t/util/u.c")" = "$(stat -c %Y "$t/migration/ram.c")" ] ||
    fail "re-assembly touched unchanged files"
[ "$(date -r "$t/util/u.c" +%Y)" = 2000 ] || fail "unchanged file rewritten"

# A patch that does not apply: hard error naming the patch and the hunk
cat > "$repo/patches/10.0/0002-bad.patch" <<'EOF'
--- a/migration/ram.c
+++ b/migration/ram.c
@@ -1,3 +1,3 @@
 int a;
-int nope;
+int yes;
 int c;
EOF
echo 0002-bad.patch >> "$repo/patches/10.0/series"
if bash "$repo/scripts/assemble.sh" full > "$tmp/out" 2>&1; then
    fail "a broken series was accepted"
fi
grep -q "patch 0002-bad.patch does not apply" "$tmp/out" || fail "no patch name"
grep -q "Hunk #1 FAILED" "$tmp/out" || fail "no hunk: $(cat "$tmp/out")"
grep -q 'long b' "$t/migration/ram.c" || fail "a failed assembly changed the tree"
# QEMU_BASE=10.2: a 10.2.x tree and the queue patches/10.2/
mkdir -p "$tmp/q102/migration" "$repo/patches/10.2"
echo 10.2.99 > "$tmp/q102/VERSION"
printf 'int a;\nint b;\nint c;\n' > "$tmp/q102/migration/ram.c"
if QEMU_SRC=$src QEMU_BASE=10.2 bash "$repo/scripts/fetch-qemu.sh" > "$tmp/out" 2>&1; then
    fail "QEMU_BASE=10.2 accepted a 10.0 tree"
fi
grep -q "QEMU 10.0.99; this series is for QEMU 10.2.x" "$tmp/out" ||
    fail "wrong refusal: $(cat "$tmp/out")"
export BUILD=$tmp/build-10.2
QEMU_SRC=$tmp/q102 QEMU_BASE=10.2 bash "$repo/scripts/fetch-qemu.sh" \
    > "$tmp/out" 2>&1 || fail "QEMU_BASE=10.2 fetch: $(cat "$tmp/out")"
sed 's/long b/short b/' "$repo/patches/10.0/0001-b.patch" > "$repo/patches/10.2/0001-b.patch"
echo 0001-b.patch migration/bitmap-trace.c > "$repo/patches/10.2/series"
QEMU_BASE=10.2 bash "$repo/scripts/assemble.sh" full > "$tmp/out" 2>&1 ||
    fail "QEMU_BASE=10.2 assembly: $(cat "$tmp/out")"
grep -q 'short b' "$BUILD/qemu/migration/ram.c" || fail "patches/10.2 not applied"
cmp -s "$repo/qemu/migration/bitmap-trace.c" "$BUILD/qemu/migration/bitmap-trace.c" ||
    fail "overlay not laid on 10.2"
# scripts/lib/base.sh: each base's queue and build directory, when BUILD
# does not say; an unknown base is an error naming its missing queue
dirs() { (unset BUILD; cd "$tmp" && QEMU_BASE=$1 bash -c \
          '. "$1/scripts/lib/base.sh" && require_queue && echo "$queue $build"' _ "$repo"); }
[ "$(dirs 10.0)" = "$repo/patches/10.0 $repo/build" ] || fail "10.0 dirs: $(dirs 10.0)"
[ "$(dirs 10.2)" = "$repo/patches/10.2 $repo/build/10.2" ] || fail "10.2 dirs: $(dirs 10.2)"
if out=$(dirs 10.9 2>&1); then fail "QEMU_BASE=10.9 accepted: $out"; fi
[ "$out" = "QEMU_BASE=10.9: there is no patches/10.9/series (docs/qemu-bases.md)" ] ||
    fail "unknown base: $out"
[ "$(unset BUILD; QEMU_BASE=10.2 bash "$repo/scripts/lib/base.sh" --make)" = \
  "build/10.2 patches/10.2" ] || fail "the Makefile's view of 10.2"
echo "assemble-test: all checks passed"
