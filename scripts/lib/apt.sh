# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The Debian archive this machine's apt already uses, for the private apt
# configurations the scripts build (scripts/fetch-qemu.sh: QEMU's source
# package; scripts/guest.sh: the demo guest's kernel; scripts/deps.sh:
# the backports suite for meson).  No archive is named here: the URIs are
# read from the machine's own apt sources, /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.list (one-line form) and *.sources (deb822
# form), and used with the suites each script needs.
#
#   . "$top/scripts/lib/apt.sh"
#   apt_archive_uri    prints the URI of the entries for this release
#                      (VERSION_CODENAME, then its -updates or -backports);
#                      fails, saying so on stderr, when there is none
#   apt_security_uri   prints the URI of this release's -security entries,
#                      or nothing when the machine has none
#   apt_source_line TYPE SUITE...   prints the sources.list lines, one per
#                      suite, with the archive (or, for SUITE-security, the
#                      security archive) and Debian's keyring: apt verifies
#                      every index against it
#
# APT_ARCHIVE_URI and APT_SECURITY_URI, when set, are used instead of the
# machine's sources; APT_ETC (default /etc/apt) and APT_CODENAME (default
# VERSION_CODENAME of /etc/os-release) are for tests.

apt_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# Every enabled deb/deb-src entry of the machine: "URI SUITE", one a line,
# in apt's order (sources.list, then sources.list.d/ sorted).
apt_machine_entries() {
    local etc=${APT_ETC:-/etc/apt} f
    {
        [ -f "$etc/sources.list" ] && echo "$etc/sources.list"
        for f in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
            [ -f "$f" ] && echo "$f"
        done | LC_ALL=C sort
    } | while read -r f; do
        case $f in
        *.sources) awk '
            function flush(   i, j, nu, ns, u, s) {
                if (types ~ /(^|[ \t])deb(-src)?([ \t]|$)/ && enabled !~ /^(no|false|0)$/) {
                    nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                        if (u[i] != "" && s[j] != "") print u[i], s[j]
                }
                types = uris = suites = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }                   # a continuation (e.g. a key block)
            {
                name = tolower($0); sub(/:.*/, "", name)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value); sub(/[ \t]+$/, "", value)
                if (name == "types") types = value
                else if (name == "uris") uris = value
                else if (name == "suites") suites = value
                else if (name == "enabled") enabled = tolower(value)
            }
            END { flush() }' "$f" ;;
        *) sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
               awk '$1 == "deb" || $1 == "deb-src" { if ($2 != "" && $3 != "") print $2, $3 }' ;;
        esac
    done | sed 's|/* | |' | grep -v '^cdrom:'
}

apt_codename() {
    if [ -n "${APT_CODENAME:-}" ]; then
        echo "$APT_CODENAME"
        return
    fi
    # shellcheck source=/dev/null
    (. /etc/os-release && echo "${VERSION_CODENAME:-}")
}

apt_archive_uri() {
    local c uri
    [ -n "${APT_ARCHIVE_URI:-}" ] && { echo "${APT_ARCHIVE_URI%/}"; return 0; }
    c=$(apt_codename)
    uri=$(apt_machine_entries | awk -v c="$c" '
        $2 == c { print $1; found = 1; exit }
        ($2 == c "-updates" || $2 == c "-backports") && alt == "" { alt = $1 }
        END { if (!found && alt != "") print alt }')
    if [ -z "$uri" ]; then
        echo "no Debian archive for ${c:-this release} in this machine's apt sources" \
             "(${APT_ETC:-/etc/apt}/sources.list, sources.list.d/): add one, or set" \
             "APT_ARCHIVE_URI" >&2
        return 1
    fi
    echo "$uri"
}

apt_security_uri() {
    local c
    [ -n "${APT_SECURITY_URI:-}" ] && { echo "${APT_SECURITY_URI%/}"; return 0; }
    c=$(apt_codename)
    apt_machine_entries | awk -v c="$c" '
        $2 == c "-security" || $2 == c "/updates" { print $1; exit }'
}

apt_source_line() {
    local type=$1 archive security suite
    shift
    archive=$(apt_archive_uri) || return 1
    security=$(apt_security_uri)
    for suite in "$@"; do
        case $suite in
        *-security)
            if [ -z "$security" ]; then
                echo "apt: no security archive in this machine's apt sources:" \
                     "$suite left out (APT_SECURITY_URI)" >&2
                continue
            fi
            echo "$type [signed-by=$apt_keyring] $security $suite main" ;;
        *)
            echo "$type [signed-by=$apt_keyring] $archive $suite main" ;;
        esac
    done
}
