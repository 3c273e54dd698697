#!/bin/bash
# Prepare the demo guest under build/guest/:
#   vmlinuz              a Debian kernel, extracted from Debian's kernel package
#                        for this machine's release (downloaded, never installed)
#   initramfs.cpio.gz    busybox + bt-workload (scripts/guest/), /init runs the
#                        workload with the parameters given on the kernel command
#                        line:  bt.wss=<MiB> bt.rate=<MiB/s, 0 = unlimited>
#                        bt.mode=seq|random|hotcold|phases bt.fill=<MiB> (see init)
#   kernel-version       which package the kernel came from
#
# The kernel package is fetched with apt-get download through a private apt
# configuration under build/apt-guest (the system's apt state is not touched;
# apt verifies the archive signatures; the archive is the one this machine's
# apt sources use, scripts/lib/apt.sh) into build/dl.  Everything is cached:
# a second run needs no network.  GUEST_REFRESH=1 fetches the current kernel
# again.
#
# The guest needs no kernel module: the serial console (8250), devtmpfs,
# initramfs (gzip) and everything the workload uses are built into Debian's
# kernel, and the guest has no disk or network.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
guest=$build/guest
dl=$build/dl
apt=$build/apt-guest

die() { echo "guest: $*" >&2; exit 1; }

for tool in apt-get dpkg-deb cpio gzip gcc; do
    command -v "$tool" >/dev/null || die "$tool not found (run: sudo make deps)"
done
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    die "$busybox is not a static busybox (install busybox-static: sudo make deps)"

mkdir -p "$guest" "$dl"

# --- kernel ---------------------------------------------------------------

aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list"
         -o "Dir::Etc::SourceParts=$apt/empty.d"
         -o "Dir::Etc::Preferences=$apt/empty.d/preferences"
         -o "Dir::Etc::PreferencesParts=$apt/empty.d"
         -o "Dir::State=$apt"
         -o "Dir::State::Lists=$apt/lists"
         -o "Dir::State::status=$apt/status"
         -o "Dir::Cache=$apt/cache"
         -o "APT::Sandbox::User=root")

fetch_kernel() {
    # shellcheck source=/dev/null
    . /etc/os-release
    local codename=${VERSION_CODENAME:-}
    [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: not Debian?"
    local arch
    arch=$(dpkg --print-architecture)
    [ "$arch" = amd64 ] || die "the demo guest is x86_64; this machine is $arch"

    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/empty.d"
    touch "$apt/status"
    . "$top/scripts/lib/apt.sh"
    [ -f "$apt_keyring" ] || die "$apt_keyring missing (install debian-archive-keyring)"
    # the archive this machine's apt sources use, verified with Debian's keyring
    apt_source_line deb "$codename" "$codename-updates" "$codename-security" \
        > "$apt/sources.list" || die "no archive to fetch the kernel from"
    echo "guest: reading Debian $codename package lists"
    apt-get "${aptopts[@]}" update -q >/dev/null ||
        die "apt-get update for Debian $codename failed"

    # linux-image-amd64 is the metapackage that names the current kernel ABI.
    local image
    image=$(apt-cache "${aptopts[@]}" depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\)$/\1/p' | head -1)
    [ -n "$image" ] || die "cannot tell which kernel linux-image-amd64 depends on"
    # Prefer the unsigned build; the signed one holds the same kernel.
    local pkg=$image-unsigned
    apt-cache "${aptopts[@]}" show "$pkg" >/dev/null 2>&1 || pkg=$image
    local ver
    ver=$(apt-cache "${aptopts[@]}" show "$pkg" | sed -n 's/^Version: //p' | sort -V | tail -1)

    local deb
    deb=$(ls "$dl/${pkg}_${ver//:/%3a}_amd64.deb" 2>/dev/null || true)
    if [ -z "$deb" ]; then
        echo "guest: downloading $pkg $ver"
        (cd "$dl" && apt-get "${aptopts[@]}" download -q "$pkg=$ver" >/dev/null) ||
            die "apt-get download $pkg=$ver failed"
        deb=$(ls "$dl/${pkg}_"*"_amd64.deb" | sort -V | tail -1)
    fi

    local x=$guest/kernel.tmp
    rm -rf "$x"
    mkdir -p "$x"
    # Only the kernel image is needed, not the modules.
    dpkg-deb --fsys-tarfile "$deb" | tar -C "$x" -xf - --wildcards './boot/vmlinuz-*'
    local vmlinuz
    vmlinuz=$(ls "$x"/boot/vmlinuz-* | head -1)
    [ -s "$vmlinuz" ] || die "$deb holds no /boot/vmlinuz-*"
    mv "$vmlinuz" "$guest/vmlinuz"
    rm -rf "$x"
    echo "$pkg $ver ($(basename "$deb"))" > "$guest/kernel-version"
}

if [ ! -s "$guest/vmlinuz" ] || [ -n "${GUEST_REFRESH:-}" ]; then
    fetch_kernel
fi

# --- workload -------------------------------------------------------------

src=$top/scripts/guest/bt-workload.c
if [ ! -x "$guest/bt-workload" ] || [ "$src" -nt "$guest/bt-workload" ]; then
    echo "guest: building bt-workload (static)"
    gcc -static -O2 -Wall -o "$guest/bt-workload.tmp" "$src"
    mv "$guest/bt-workload.tmp" "$guest/bt-workload"
fi

# --- initramfs ------------------------------------------------------------

init=$top/scripts/guest/init
img=$guest/initramfs.cpio.gz
if [ ! -s "$img" ] || [ "$init" -nt "$img" ] || [ "$guest/bt-workload" -nt "$img" ] ||
   [ "$busybox" -nt "$img" ] || [ "$top/scripts/guest.sh" -nt "$img" ]; then
    echo "guest: building initramfs"
    root=$guest/root
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,tmp}
    cp "$busybox" "$root/bin/busybox"
    for applet in sh mount cat echo sleep poweroff uname free; do
        ln -s busybox "$root/bin/$applet"
    done
    cp "$guest/bt-workload" "$root/bin/bt-workload"
    cp "$init" "$root/init"
    chmod 755 "$root/init" "$root/bin/bt-workload"
    # The kernel opens /dev/console for /init before /init mounts devtmpfs;
    # without root, /init redirects its output itself once /dev is there.
    if [ "$(id -u)" = 0 ]; then
        mknod -m 600 "$root/dev/console" c 5 1
    fi
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
         cpio --quiet -o -H newc -R 0:0) | gzip -9 > "$img.tmp"
    mv "$img.tmp" "$img"
    rm -rf "$root"
fi

echo "guest: $(cat "$guest/kernel-version"); initramfs $(du -k "$img" | cut -f1) KiB"
