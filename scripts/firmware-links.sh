#!/bin/bash
# A binary run from its build tree looks up its firmware path inside
# qemu-bundle/: make the configured firmware directories visible there.
#   firmware-links.sh OBJ     OBJ: a configured QEMU build directory
set -euo pipefail
obj=$1
sed -n 's/^#define CONFIG_QEMU_FIRMWAREPATH //p' "$obj/config-host.h" |
    tr ',' '\n' | tr -d '" ' | grep . > "$obj/firmware-dirs"
while read -r d; do
    mkdir -p "$obj/qemu-bundle$(dirname "$d")"
    ln -sfn "$d" "$obj/qemu-bundle$d"
done < "$obj/firmware-dirs"
