#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Harness test: scripts/lib/apt.sh takes the archive from the machine's own
# apt sources, in both forms apt reads (one-line .list, deb822 .sources),
# for the private apt configurations of fetch-qemu.sh, guest.sh and
# deps.sh, and no script names an archive of its own.
# Exit 0 = pass, anything else = fail.
set -euo pipefail

. "$(dirname "$0")/lib.sh"     # top, build, py; skip, fail, need_qemu, need_guest, use_tmp
use_tmp

# lines ETC CODENAME TYPE SUITE...: apt_source_line over the sources in ETC
lines() {
    local etc=$1 codename=$2
    shift 2
    APT_ETC=$etc APT_CODENAME=$codename bash -c \
        '. "$1/scripts/lib/apt.sh"; shift; apt_source_line "$@"' _ "$top" "$@"
}
key=/usr/share/keyrings/debian-archive-keyring.gpg

# deb822, as Debian 12 installs it: a comment inside, two paragraphs, the
# security archive apart; a disabled paragraph and another release are not used
etc=$tmp/a
mkdir -p "$etc/sources.list.d"
cat > "$etc/sources.list.d/debian.sources" <<'EOF'
Types: deb
# a comment
URIs: http://archive-a.invalid/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive-a.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat > "$etc/sources.list.d/0-off.sources" <<'EOF'
Types: deb
URIs: http://disabled.invalid/debian
Suites: bookworm
Enabled: no
Components: main
EOF
cat > "$etc/sources.list.d/0-other.sources" <<'EOF'
Types: deb
URIs: http://other.invalid/apt
Suites: nodistro
Components: main
EOF
got=$(lines "$etc" bookworm deb-src trixie trixie-security)
want="deb-src [signed-by=$key] http://archive-a.invalid/debian trixie main
deb-src [signed-by=$key] http://archive-a.invalid/debian-security trixie-security main"
[ "$got" = "$want" ] || fail "deb822: got
$got"
got=$(lines "$etc" bookworm deb-src trixie-backports sid)
want="deb-src [signed-by=$key] http://archive-a.invalid/debian trixie-backports main
deb-src [signed-by=$key] http://archive-a.invalid/debian sid main"
[ "$got" = "$want" ] || fail "deb822, 10.2's suites: got
$got"

# one-line form with options, in sources.list; no security entry: the
# security suite is left out, saying so
etc=$tmp/b
mkdir -p "$etc/sources.list.d"
cat > "$etc/sources.list" <<'EOF'
# deb http://commented.invalid/debian bookworm main
deb [ arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ] http://archive-b.invalid/debian bookworm main contrib
EOF
got=$(lines "$etc" bookworm deb bookworm bookworm-security 2> "$tmp/err")
[ "$got" = "deb [signed-by=$key] http://archive-b.invalid/debian bookworm main" ] ||
    fail "one-line: got
$got"
grep -q 'no security archive' "$tmp/err" || fail "no word on the missing security archive"

# no archive for this release: an error that says where it looked
etc=$tmp/c
mkdir -p "$etc"
if lines "$etc" bookworm deb bookworm > /dev/null 2> "$tmp/err"; then
    fail "no sources, yet lines were made"
fi
grep -q "no Debian archive for bookworm in this machine's apt sources" "$tmp/err" ||
    fail "unclear error: $(cat "$tmp/err")"

# No script writes an archive of its own
if grep -n -E 'https?://' "$top"/scripts/*.sh "$top"/scripts/lib/*.sh; then
    fail "a script names a URI (above)"
fi
echo "apt-sources-test: all checks passed"
