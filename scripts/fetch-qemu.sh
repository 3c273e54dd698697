#!/bin/bash
# Fetch and unpack a pristine QEMU 10.0.x tree into $1 (default build/qemu-src).
# QEMU_BASE=10.2 (any major.minor with a queue under patches/) fetches that
# release instead: 10.2.x, from Debian's trixie-backports and sid sources
# (scripts/lib/base.sh says which suites carry which base).
#
# Sources, in order of preference:
#   QEMU_SRC=/path/to/tree        a user's own 10.0.x tree (copied, never modified)
#   QEMU_TARBALL=/path/to/qemu-10.0.x.tar.xz   an upstream release tarball
#   default                       Debian 13 "trixie"'s qemu source package, fetched
#                                 with apt-get source through a private apt config
#                                 under build/apt (the system's apt is not touched;
#                                 apt verifies the signature chain), unpacked with
#                                 dpkg-source -x so Debian's patches are applied.
#                                 The archive is the one this machine's apt
#                                 sources use (scripts/lib/apt.sh).
# Downloads are cached in build/dl, so a second run needs no network.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# $base (QEMU_BASE), its $build directory and the $base_suites carrying it
. "$top/scripts/lib/base.sh"
dest=${1:-$build/qemu-src}
dl=$build/dl
mkdir -p "$dl"

die() { echo "fetch-qemu: $*" >&2; exit 1; }

check_version() {
    local v
    v=$(cat "$1/VERSION" 2>/dev/null) || die "$1 has no VERSION file: not a QEMU tree"
    case "$v" in
    "$base".*) ;;
    *) die "$1 is QEMU $v; this series is for QEMU $base.x" ;;
    esac
    echo "$v"
}

rm -rf "$dest.tmp"
if [ -n "${QEMU_SRC:-}" ]; then
    check_version "$QEMU_SRC" >/dev/null
    echo "fetch-qemu: copying user tree $QEMU_SRC"
    mkdir -p "$dest.tmp"
    # Copy the tree, not a build directory that may sit inside it.
    tar -C "$QEMU_SRC" --exclude=./build --exclude=.git -cf - . | tar -C "$dest.tmp" -xf -
    origin="QEMU_SRC=$QEMU_SRC"
elif [ -n "${QEMU_TARBALL:-}" ]; then
    [ -f "$QEMU_TARBALL" ] || die "QEMU_TARBALL=$QEMU_TARBALL does not exist"
    echo "fetch-qemu: unpacking $QEMU_TARBALL"
    mkdir -p "$dest.tmp"
    tar -C "$dest.tmp" --strip-components=1 -xf "$QEMU_TARBALL"
    origin="QEMU_TARBALL=$QEMU_TARBALL"
else
    apt=$build/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/preferences.d" \
             "$apt/etc/apt.conf.d" "$apt/etc/trusted.gpg.d"
    # the suites, for messages: "trixie", "trixie-backports/sid"
    suites=$(for s in $base_suites; do echo "$s"; done | grep -v -- '-security$' |
             paste -sd /)
    . "$top/scripts/lib/apt.sh"
    # shellcheck disable=SC2086   # the suites, one argument each
    lines=$(apt_source_line deb-src $base_suites) ||
        die "no archive to fetch QEMU from"
    # another archive (the machine's sources changed): read its index anew
    if ! echo "$lines" | cmp -s - "$apt/sources.list"; then
        echo "$lines" > "$apt/sources.list"
        rm -rf "$apt/lists"
        mkdir -p "$apt/lists/partial"
    fi
    aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list"
             -o "Dir::Etc::SourceParts=$apt/none"
             -o "Dir::Etc::Preferences=$apt/none"
             -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
             -o "Dir::State=$apt"
             -o "Dir::State::Lists=$apt/lists"
             -o "Dir::State::status=$apt/status"
             -o "Dir::Cache=$apt/cache"
             -o "APT::Sandbox::User=root")
    touch "$apt/status"
    # Refresh the index only when it is missing or old: a second run needs no network.
    if [ -z "$(find "$apt/lists" -name '*Sources*' -mtime -7 2>/dev/null | head -1)" ]; then
        apt-get "${aptopts[@]}" update -q || die "apt-get update for $suites sources failed"
    fi
    # the newest version of the base's major.minor
    vers=$(apt-cache "${aptopts[@]}" showsrc qemu 2>/dev/null |
           awk '/^Version:/ {print $2}' | sort -uV)
    [ -n "$vers" ] || die "no qemu source package found in $suites"
    ver=
    for v in $vers; do
        upver=${v#*:}; upver=${upver%%+*}; upver=${upver%%-*}
        case "$upver" in "$base".*) ver=$v ;; esac
    done
    [ -n "$ver" ] || die "$suites carries qemu $(echo $vers), not $base.x"
    dsc=$(ls "$dl"/qemu_"${ver#*:}".dsc 2>/dev/null || true)
    if [ -z "$dsc" ]; then
        echo "fetch-qemu: downloading Debian qemu $ver source"
        (cd "$dl" && apt-get "${aptopts[@]}" source --download-only -q "qemu=$ver") ||
            die "apt-get source qemu=$ver failed"
        dsc=$(ls "$dl"/qemu_"${ver#*:}".dsc)
    fi
    echo "fetch-qemu: unpacking $dsc"
    dpkg-source --no-copy -x "$dsc" "$dest.tmp" >/dev/null ||
        die "dpkg-source -x $dsc failed"
    origin="debian $suites qemu $ver"
fi

v=$(check_version "$dest.tmp")
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$v ($origin)" > "$build/qemu-version"
echo "fetch-qemu: QEMU $v ($origin) in $dest"
