#!/bin/bash
# Install the Debian packages needed to build QEMU with this series, run its
# tests and the demo.  Debian 12 (meson from bookworm-backports) or 13.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
stamp=$build/.stamp-deps

pkgs=(
    # ccache: the Makefile's configure flags always use it
    build-essential ninja-build pkg-config ccache
    libglib2.0-dev libpixman-1-dev libslirp-dev zlib1g-dev libfdt-dev
    flex bison python3 python3-venv python3-setuptools
    dpkg-dev gpgv debian-archive-keyring xz-utils bzip2 cpio file
    seabios ipxe-qemu
    # 32-bit capable toolchain for QEMU's own x86 option ROMs and our boot block
    gcc-multilib
    # the demo's guest: a Debian kernel (extracted, not installed) and busybox
    busybox-static
    # checkpatch.pl
    perl
    # make series; make docs (QEMU's sphinx setup, warnings as errors)
    git python3-sphinx python3-sphinx-rtd-theme
    # the analysis tools (analyzer/btrace)
    python3-numpy python3-matplotlib
    # tests/harness/libvirt-test.sh and bt-trace: a real libvirt daemon
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients python3-libvirt
)

. /etc/os-release
codename=${VERSION_CODENAME:-}

want_backports=
if [ "$codename" = bookworm ]; then
    want_backports=1
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
meson_ok=
if command -v meson >/dev/null &&
   dpkg --compare-versions "$(meson --version 2>/dev/null || echo 0)" ge 1.5; then
    meson_ok=1
fi

# libvirt's QEMU driver runs QEMU as the system user and group libvirt-qemu.
# Debian's libvirt-daemon-system creates them, with init scripts, polkit and a
# firewall we do not want; the daemon alone is enough for our tests.
qemu_user_ok=
getent passwd libvirt-qemu >/dev/null && getent group libvirt-qemu >/dev/null &&
    qemu_user_ok=1

if [ ${#missing[@]} -eq 0 ] && [ -n "$meson_ok" ] && [ -n "$qemu_user_ok" ]; then
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing: ${missing[*]}$([ -n "$meson_ok" ] || echo " meson>=1.5")$([ -n "$qemu_user_ok" ] || echo " user:libvirt-qemu")" >&2
    echo "deps: run as root:  sudo make deps" >&2
    echo "deps: which runs:" >&2
    if [ -n "$want_backports" ] && [ -z "$meson_ok" ]; then
        echo "  (adds bookworm-backports in" \
             "/etc/apt/sources.list.d/bitmap-trace-backports.sources)" >&2
    fi
    echo "  apt-get update && apt-get install -y --no-install-recommends" \
         "${missing[*]}" >&2
    if [ -z "$meson_ok" ]; then
        echo "  apt-get install -y --no-install-recommends" \
             "${want_backports:+-t bookworm-backports }meson" >&2
    fi
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$want_backports" ]; then
    src=/etc/apt/sources.list.d/bitmap-trace-backports.sources
    if [ ! -f "$src" ]; then
        # the archive this machine's apt sources use (scripts/lib/apt.sh)
        . "$top/scripts/lib/apt.sh"
        archive=$(apt_archive_uri) ||
            { echo "deps: no archive for bookworm-backports" >&2; exit 1; }
        cat > "$src" <<EOF
Types: deb
URIs: $archive
Suites: bookworm-backports
Components: main
Signed-By: $apt_keyring
EOF
    fi
fi
# wait for another apt or dpkg (unattended upgrades, a second make deps)
# rather than fail at once
apt=(apt-get -o DPkg::Lock::Timeout=600)
if [ ${#missing[@]} -gt 0 ] || [ -z "$meson_ok" ]; then
    "${apt[@]}" update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
    "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -z "$meson_ok" ]; then
    if [ -n "$want_backports" ]; then
        "${apt[@]}" install -y -q --no-install-recommends -t bookworm-backports meson
    else
        "${apt[@]}" install -y -q --no-install-recommends meson
    fi
fi
if [ -z "$qemu_user_ok" ]; then
    getent group kvm >/dev/null || groupadd --system kvm
    getent passwd libvirt-qemu >/dev/null ||
        useradd --system --gid kvm --home-dir /var/lib/libvirt --no-create-home \
                --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    usermod --append --groups libvirt-qemu libvirt-qemu
fi
mkdir -p "$(dirname "$stamp")" && touch "$stamp"
echo "deps: all build and test dependencies installed"
