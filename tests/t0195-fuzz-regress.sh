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

# ---- qcow2 check: two entries of the active L1 table naming one L2 table
# (QEMU never writes that). Reported once, and that table walked once: a
# hostile image could make one table of compressed clusters stand for the
# whole disk, and check inflated it again for every L1 entry.
qemu-img create -q -f qcow2 -o cluster_size=65536 shared.qcow2 2G
qemu-io -c 'write -q -P 0x11 0 64k' -c 'write -q -P 0x22 512M 64k' shared.qcow2 >/dev/null
python3 - <<'PY'
import struct
f = open('shared.qcow2', 'r+b')
hdr = f.read(48)
l1_off = struct.unpack('>Q', hdr[40:48])[0]
f.seek(l1_off)
e0 = f.read(8)
f.seek(l1_off + 8)
f.write(e0)	# L1[1] = L1[0]
PY
rc=0
run_rc rc "$VDISK" check shared.qcow2
ok "qcow2, one L2 table under two L1 entries: check exits 2" test "$rc" -eq 2
ok "  names the table and both entries" grep -q "is used by L1 entries 0 and 1" "$T/out"
ok "  reported once" test "$(grep -c 'is used by L1 entries' "$T/out")" -eq 1

done_testing
