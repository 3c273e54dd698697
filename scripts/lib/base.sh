# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The QEMU bases, said once.  QEMU_BASE (default 10.0) names the QEMU
# release the series is laid on.  Each base has
#   its patch queue       patches/<base>/: the numbered patches and the one
#                         ordering file "series"
#   its build directory   build/ for 10.0, build/<base>/ for any other;
#                         BUILD=DIR, when set, is used instead
#   its QEMU source       the Debian suites whose qemu source package
#                         carries that release (scripts/fetch-qemu.sh)
# A base is known when its queue has a "series".
#
# Scripts source it:
#     . "$top/scripts/lib/base.sh"
# which sets
#     base         the QEMU base ($QEMU_BASE, or 10.0)
#     queue        its patch queue, an absolute path
#     queue_rel    the same relative to the repository, for messages
#     build        its build directory, an absolute path
#     base_suites  the Debian suites of its qemu source package, in order
# and defines
#     require_queue   exit 1 with a clear message when $base is unknown
#     base_queue B, base_build B, base_suites_of B
#                     the same facts for any base B (paths relative to the
#                     repository, build without BUILD)
#
# The Makefile runs it:
#     bash scripts/lib/base.sh --make
# prints "BUILD PATCHDIR", relative to the repository when inside it, or
# for an unknown base the error on stderr and exits 1.

base_lib_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# base_queue B: the patch queue of base B, relative to the repository
base_queue() {
    echo "patches/$1"
}

# base_build B: the build directory of base B, relative to the repository
base_build() {
    case $1 in
    10.0) echo build ;;
    *) echo "build/$1" ;;
    esac
}

# base_suites_of B: the Debian suites whose qemu source package carries B
base_suites_of() {
    case $1 in
    10.0) echo "trixie trixie-security" ;;
    # later releases: trixie-backports and sid (unstable) carry them
    *) echo "trixie-backports sid" ;;
    esac
}

base=${QEMU_BASE:-10.0}
queue_rel=$(base_queue "$base")
queue=$base_lib_top/$queue_rel
build=${BUILD:-$base_lib_top/$(base_build "$base")}
case $build in
/*) ;;
*) build=$PWD/$build ;;
esac
# shellcheck disable=SC2034   # for the scripts that source this file
base_suites=$(base_suites_of "$base")

require_queue() {
    [ -f "$queue/series" ] && return 0
    echo "QEMU_BASE=$base: there is no $queue_rel/series (docs/qemu-bases.md)" >&2
    exit 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # Run, not sourced: the Makefile's view.
    set -eu
    case ${1:-} in
    --make) ;;
    *) echo "usage: bash scripts/lib/base.sh --make" >&2; exit 2 ;;
    esac
    require_queue
    echo "${build#"$base_lib_top"/} $queue_rel"
fi
