#!/bin/bash
# Refresh the overlay and build the given ninja targets (default: the emulator
# and option ROMs).  Serialised with a lock: several makes may share build/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
obj=$top/build/obj
exec 9>"$top/build/.lock"
flock 9
bash "$top/scripts/assemble.sh" overlay
ninja -C "$obj" qemu-system-x86_64 "$@"
make -s -C "$obj/pc-bios/optionrom" >/dev/null
# A binary run from the build tree looks up its firmware path inside
# qemu-bundle/: make the configured firmware directories visible there.
sed -n 's/^#define CONFIG_QEMU_FIRMWAREPATH //p' "$obj/config-host.h" |
    tr ',' '\n' | tr -d '" ' | grep . > "$obj/firmware-dirs"
while read -r d; do
    mkdir -p "$obj/qemu-bundle$(dirname "$d")"
    ln -sfn "$d" "$obj/qemu-bundle$d"
done < "$obj/firmware-dirs"
ln -sf "$obj/qemu-system-x86_64" "$top/build/qemu-system-x86_64"
