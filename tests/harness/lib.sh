# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# What the harness tests do before they test, said once.  A test sources
# it first thing:
#     . "$(dirname "$0")/lib.sh"
# which sets
#     top    the repository
#     build  QEMU_BASE's build directory (scripts/lib/base.sh; BUILD wins)
#     py     the Python that runs the analyzer: Debian's /usr/bin/python3
#            (make deps gives it numpy and matplotlib), else python3
# and defines
#     skip REASON...      print "SKIP: REASON..." and exit 77: check.sh counts
#                         a skip and shows that last line as the reason
#     fail MESSAGE...     print "FAIL: MESSAGE..." and exit 1
#     need_qemu [BINARY]  skip unless BINARY (default: the build's
#                         qemu-system-x86_64) is built; sets qemu to it
#     need_guest          prepare the demo guest (scripts/guest.sh, cached
#                         after the first time); skip when it cannot be
#                         fetched and none is cached, fail on another error
#     use_tmp             a scratch directory in tmp, removed at exit (even
#                         where a test made files in it read-only)
# A test's exit status: 0 pass, 77 skip, anything else fail.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/base.sh
. "$top/scripts/lib/base.sh"
py=/usr/bin/python3
[ -x "$py" ] || py=python3

skip() {
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*"
    exit 1
}

need_qemu() {
    qemu=${1:-$build/qemu-system-x86_64}
    [ -x "$qemu" ] || skip "$qemu not built"
}

need_guest() {
    local out
    if ! out=$(BUILD=$build bash "$top/scripts/guest.sh" 2>&1); then
        echo "$out"
        if [ ! -s "$build/guest/vmlinuz" ]; then
            skip "the demo guest cannot be prepared (is the Debian archive reachable?)"
        fi
        fail "scripts/guest.sh failed"
    fi
}

use_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
    # shellcheck disable=SC2064   # $tmp now: the test may reuse the name
    trap "chmod -R u+w '$tmp'; rm -rf '$tmp'" EXIT
}
