#!/bin/bash
# make series: the patch queue and the qemu/ overlay as a git format-patch
# series against pristine QEMU, ready for qemu-devel.
#
#   build/series/repo   a git repository: pristine QEMU (tag "base"), then
#                       one commit per line of patches/<base>/series
#   build/series/out    0000-cover-letter.patch and the patches, from
#                       git format-patch --cover-letter; the cover letter is
#                       patches/cover-letter.txt with the shortlog, diffstat
#                       and scripts/get_maintainer.pl's answer
#
# Fails, naming it, when a patch of the queue or an overlay file is not in
# its series exactly once, or when a patch does not apply.
#
# The queue is patches/<base>/ (QEMU_BASE, 10.0 by default, scripts/lib/base.sh;
# build/10.2/series for 10.2); cover-letter.txt is patches/'s unless the
# queue has its own.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# $build, and $queue: QEMU_BASE's patch queue (patches/10.0/, patches/10.2/)
. "$top/scripts/lib/base.sh"
require_queue
commits=$queue/series
# shellcheck source=lib/queue.sh
. "$top/scripts/lib/queue.sh"
cover_txt=$queue/cover-letter.txt
[ -f "$cover_txt" ] || cover_txt=$top/patches/cover-letter.txt
pristine=$build/qemu-src
repo=$build/series/repo
out=$build/series/out

die() { echo "series: $*" >&2; exit 1; }

# One user of build/series at a time (series-check holds it for its run)
mkdir -p "$build/series"
exec 8>"$build/series/.lock"
flock 8

[ -d "$pristine" ] || die "$pristine missing: run make first"
[ -f "$commits" ] || die "$commits missing: no queue for QEMU ${QEMU_BASE:-10.0}"
command -v git >/dev/null || die "git not found (run: sudo make deps)"

# --- check the map ----------------------------------------------------------
series_name=${commits#"$top"/}
overlay=$(cd "$top/qemu" && find . -type f ! -name '*~' ! -name '.*' | sed 's|^\./||' | sort)
# overlay_under WORD: the overlay files a FILE word places (a dir/ all below)
overlay_under() {
    case "$1" in
    */) grep "^$1" <<< "$overlay" || true ;;
    *) echo "$1" ;;
    esac
}
map=$(queue_lines "$commits")
mapped=$(for w in $map; do
             case "$w" in *.patch) echo "$w" ;; *) overlay_under "$w" ;; esac
         done | sort)
dups=$(echo "$mapped" | uniq -d)
[ -z "$dups" ] || die "$series_name names these more than once: $dups"
for p in $(cd "$queue" && ls ./*.patch 2>/dev/null | sed 's|^\./||'); do
    grep -qxF "$p" <<< "$mapped" || die "$series_name does not place patch $p"
done
for f in $overlay; do
    grep -qxF "$f" <<< "$mapped" || die "$series_name does not place overlay file qemu/$f"
done
# the patches are numbered in the order they apply
numbers=$(queue_patches "$commits" | cut -c1-4)
[ "$numbers" = "$(echo "$numbers" | sort)" ] ||
    die "$series_name: the patches are not numbered in the order they apply"

# --- the pristine base, once ------------------------------------------------
git_() { git -C "$repo" -c user.name="bitmap-trace developers" \
             -c user.email=bitmap-trace@example.org -c commit.gpgsign=false "$@"; }
version=$(cat "$build/qemu-version" 2>/dev/null || cat "$pristine/VERSION")
if ! git_ rev-parse -q --verify base >/dev/null 2>&1 ||
   [ "$(git_ log -1 --format=%s base)" != "QEMU $version" ]; then
    echo "series: importing pristine QEMU $version"
    rm -rf "$repo"
    mkdir -p "$repo"
    git_ init -q
    tar -C "$pristine" --exclude=.git -cf - . | tar -C "$repo" -xf -
    git_ add -A -f
    git_ commit -q -m "QEMU $version"
    git_ tag base
fi
git_ checkout -q -f -B series base
git_ clean -q -fdx

# --- one commit per line of the map -----------------------------------------
# header PATCH: the patch's author line, subject and message (no [PATCH])
header_field() { sed -n "s/^$2: //p;/^$/q" "$queue/$1" | head -1; }
message() {
    # from the blank line after the header to the first ---, not beyond:
    # notes may follow the --- (the rebased queues' say what changed)
    sed '/^---$/q' "$queue/$1" | sed -n '/^$/,$p' | sed '1d;$d' | sed '/^Signed-off-by:/d'
}

n=0
while read -r first rest; do
    n=$((n + 1))
    msg=$(mktemp)
    subject=$(header_field "$first" Subject | sed 's/^\[PATCH[^]]*\] *//')
    author=$(header_field "$first" From)
    patches=("$first")
    files=()
    for w in $rest; do
        case "$w" in
        *.patch) patches+=("$w") ;;
        *) while read -r f; do files+=("$f"); done < <(overlay_under "$w") ;;
        esac
    done
    {
        echo "$subject"
        echo
        message "$first"
        for p in "${patches[@]:1}"; do
            header_field "$p" Subject | sed 's/^\[PATCH[^]]*\] *//;s/$/:/'
            message "$p" | sed '${/^$/d}'
            echo
        done
    } | cat -s > "$msg"
    for p in "${patches[@]}"; do
        git_ apply --index "$queue/$p" || die "patch $p does not apply at commit $n"
    done
    for f in "${files[@]}"; do
        mkdir -p "$repo/$(dirname "$f")"
        cp "$top/qemu/$f" "$repo/$f"
        git_ add -f "$f"
    done
    # keep a trailing Signed-off-by block
    sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$msg"
    printf '\nSigned-off-by: %s\n' "$author" >> "$msg"
    git_ commit -q --author="$author" -F "$msg"
    rm -f "$msg"
    echo "series: $(git_ log -1 --format='%h %s')"
done <<< "$map"

# --- format-patch with the cover letter --------------------------------------
rm -rf "$out"
git_ format-patch -q --cover-letter --thread=shallow -o "$out" base..series >/dev/null
cover=$out/0000-cover-letter.patch
maint=$(cd "$repo" && perl scripts/get_maintainer.pl --no-git --no-git-fallback \
            --no-rolestats "$out"/0*.patch 2>/dev/null | grep -v cover-letter || true)
python3 - "$cover" "$cover_txt" "$maint" <<'PY'
import sys
cover, tmpl, maint = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
subject, _, blurb = tmpl.partition('\n\n')
text = open(cover).read()
text = text.replace('*** SUBJECT HERE ***', subject.strip())
blurb = blurb.rstrip() + '\n\nscripts/get_maintainer.pl:\n' + \
    ''.join('  %s\n' % l for l in maint.splitlines() if l.strip())
text = text.replace('*** BLURB HERE ***', blurb.rstrip())
open(cover, 'w').write(text)
PY
echo "series: $(ls "$out" | wc -l) files in $out (base $(git_ rev-parse --short base), QEMU $version)"
