#!/bin/bash
# Lay the series on a pristine QEMU tree:
#   assemble.sh full     pristine + the patch queue + qemu/ overlay, from scratch
#   assemble.sh overlay  only refresh the qemu/ overlay files that changed
#
# The assembled tree is build/qemu.  A file is rewritten only when its content
# changes, so ninja rebuilds only what depends on it.  Files that the series
# adds or patches are left read-only: edit qemu/ or patches/, never build/qemu.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# $build, and $queue: QEMU_BASE's patch queue (patches/10.0/, patches/10.2/)
. "$top/scripts/lib/base.sh"
pristine=$build/qemu-src
tree=$build/qemu
stage=$build/qemu-stage
mode=${1:-full}
# shellcheck source=lib/queue.sh
. "$top/scripts/lib/queue.sh"

die() { echo "assemble: $*" >&2; exit 1; }

# install_if_changed SRC DST: replace DST by SRC (read-only) if they differ
install_if_changed() {
    if ! cmp -s "$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        rm -f "$2"
        cp "$1" "$2"
        chmod a-w "$2"
        echo "  $3"
    fi
}

overlay_files() {
    (cd "$top/qemu" && find . -type f ! -name '*~' ! -name '.*' | sed 's|^\./||' | sort)
}

if [ "$mode" = overlay ]; then
    [ -d "$tree" ] || die "$tree missing: run a full assembly first"
    # A file that left the overlay needs a full assembly to be restored.
    if ! overlay_files | cmp -s - "$build/overlay-files"; then
        exec bash "$0" full
    fi
    overlay_files | while read -r f; do
        install_if_changed "$top/qemu/$f" "$tree/$f" "overlay $f"
    done
    exit 0
fi

[ -d "$pristine" ] || die "$pristine missing: run scripts/fetch-qemu.sh"
require_queue

echo "assemble: staging pristine QEMU $(cat "$pristine/VERSION")"
rm -rf "$stage"
cp -a "$pristine" "$stage"

n=0
while read -r p; do
    n=$((n + 1))
    [ -f "$queue/$p" ] || die "$queue_rel/series names $p, which does not exist"
    if ! out=$(patch -d "$stage" -p1 -F0 -N --no-backup-if-mismatch -r - \
                     -i "$queue/$p" 2>&1); then
        echo "$out" | sed 's/^/    /' >&2
        rm -rf "$stage"
        die "patch $p does not apply (see the failed hunk above)"
    fi
    if echo "$out" | grep -q 'offset\|fuzz'; then
        echo "$out" | grep 'offset\|fuzz' | sed "s|^|    $p: |"
    fi
    echo "  patch $p"
done < <(queue_patches "$queue/series")

overlay_files > "$stage.overlay-files"
while read -r f; do
    mkdir -p "$(dirname "$stage/$f")"
    cp "$top/qemu/$f" "$stage/$f"
done < "$stage.overlay-files"

# Move the result into place, touching only files whose content changed.
if [ ! -d "$tree" ]; then
    mv "$stage" "$tree"
else
    { diff -rq --no-dereference "$tree" "$stage" 2>/dev/null || true; } | while read -r line; do
        case "$line" in
        "Files "*" differ")
            f=${line#Files "$tree"/}; f=${f%% and *}
            install_if_changed "$stage/$f" "$tree/$f" "update $f" ;;
        "Only in $stage"*)
            d=${line#Only in }; d=${d%%: *}; name=${line##*: }
            rel=${d#"$stage"}; rel=${rel#/}
            mkdir -p "$tree/$rel"
            cp -a "$d/$name" "$tree/$rel/"
            echo "  add ${rel:+$rel/}$name" ;;
        "Only in $tree"*)
            d=${line#Only in }; d=${d%%: *}; name=${line##*: }
            rm -rf "${d:?}/$name"
            echo "  remove ${d#"$tree"/}/$name" ;;
        esac
    done
    rm -rf "$stage"
fi
mv "$stage.overlay-files" "$build/overlay-files"

# Everything the series touches is read-only in the assembled tree.
while read -r f; do chmod a-w "$tree/$f"; done < "$build/overlay-files"
while read -r p; do
    sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$queue/$p" |
        while read -r f; do
            if [ -e "$tree/$f" ]; then chmod a-w "$tree/$f"; fi
        done
done < <(queue_patches "$queue/series")
echo "assemble: $n patches and $(wc -l < "$build/overlay-files") overlay files on QEMU in $tree"
