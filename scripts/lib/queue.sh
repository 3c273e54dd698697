# shellcheck shell=bash
# The ordering file of a patch queue, patches/<base>/series: one commit of
# `make series` per line, "PATCH [PATCH...] [FILE...]", comments with #.
# Sourced by scripts/assemble.sh, scripts/series.sh and scripts/check.sh.

# queue_lines SERIES: its lines, without comments and blank lines
queue_lines() {
    grep -v '^[[:space:]]*\(#\|$\)' "$1" || true
}

# queue_patches SERIES: its patches, one a line, in the order they apply
queue_patches() {
    queue_lines "$1" | tr -s ' \t' '\n\n' | grep '\.patch$' || true
}
