#!/bin/bash
# Refresh the overlay and build the given ninja targets (default: the emulator
# and option ROMs).  Serialised with a lock: several makes may share build/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/base.sh"     # $build: QEMU_BASE's build directory
obj=$build/obj
exec 9>"$build/.lock"
flock 9
bash "$top/scripts/assemble.sh" overlay
ninja -C "$obj" qemu-system-x86_64 "$@"
make -s -C "$obj/pc-bios/optionrom" >/dev/null
bash "$top/scripts/firmware-links.sh" "$obj"
ln -sf "$obj/qemu-system-x86_64" "$build/qemu-system-x86_64"
