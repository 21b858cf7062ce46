#!/bin/sh
# SPDX-License-Identifier: MIT
# Regressions of the findings of the deep fuzzing pass (branch fuzz3): each
# case is the minimised hostile input, rebuilt here byte by byte, and the
# clear error or bounded answer the parser must give for it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
requires which python3
cd "$T" || exit 1

# ---- VMDK check: a grain directory whose 64 entries all name grain tables
# outside the file (512 grains of 512 bytes each). Each bad entry is one
# finding, and the check skips its table; it used to report every grain of
# it (32768 findings, and a 256 KiB file of such entries kept the check
# busy for minutes).
python3 - <<'PY'
import struct
n = 64
h = bytearray(512)
h[0:4] = b'KDMV'
struct.pack_into('<I', h, 4, 1)
struct.pack_into('<Q', h, 12, n * 512)	# capacity (sectors)
struct.pack_into('<Q', h, 20, 1)	# grain: 1 sector
struct.pack_into('<I', h, 44, 512)	# grain table entries
struct.pack_into('<Q', h, 56, 1)	# grain directory at sector 1
open('badgd.vmdk', 'wb').write(bytes(h) + struct.pack('<I', 0x7fffffff) * n)
PY
rc=0
run_rc rc "$VDISK" check badgd.vmdk
ok "vmdk, 64 bad grain directory entries: check exits 2" test "$rc" -eq 2
ok "  one finding per bad entry (was: one per grain, 32768)" \
	grep -q "^64 errors were found" "$T/out"
ok "  names the grain table" grep -q "grain table 63 outside the file" "$T/out"

done_testing
