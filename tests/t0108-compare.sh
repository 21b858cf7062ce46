#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk compare: the verdict, the offset of the first difference and the exit
# status of `qemu-img compare` (the oracle wherever it reads both formats, and
# cmp for the offset), across raw, vdk chains, qcow2 chains, vmdk and an
# encrypted vdk; holes against written zeroes, different sizes, -s, -q, a
# 64 TiB sparse pair, a corrupt block, a held lock, and usage errors.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

# cmp's first differing byte, 0-based ("differ: byte N" is 1-based).
first_diff() {
	cmp "$1" "$2" 2>/dev/null | sed -n 's/.*differ: \(char\|byte\) \([0-9]*\),.*/\2/p' |
		awk '{print $1 - 1}'
}
# vdisk compare ARGS: the exit status in $rc, stdout in $T/out.
vcmp() {
	run_rc rc "$VDISK" compare "$@"
}
qcmp_out() {
	qemu-img compare "$@" 2>/dev/null
}

# A 64 MiB disk with data in several places, as raw, vdk, a vdk chain, a
# qcow2 chain and vmdk.
mkraw base.raw 64M "0:65536:1 1048576:196608:2 8392704:12288:3 67104768:4096:4"
vd convert -O vdk base.raw base.vdk
vd create -b base.vdk top.vdk
vwrite top.vdk 20971520 4 65536 7
cp base.raw all.raw
owrite all.raw 20971520 4 65536 7
qemu-img convert -f raw -O qcow2 base.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -q -P 7 20971520 262144" top.qcow2 >/dev/null
qemu-img convert -f raw -O vmdk all.raw all.vmdk

vcmp base.raw base.vdk
ok_eq "$rc" 0 "raw and its vdk: exit 0"
ok_eq "$(cat "$T/out")" "Images are identical." "... says the images are identical"
vcmp top.vdk all.raw
ok_eq "$rc" 0 "a vdk chain and the raw of what it shows are identical"
vcmp top.qcow2 top.vdk
ok_eq "$rc" 0 "a qcow2 chain and a vdk chain with the same data are identical"
vcmp all.vmdk top.qcow2
ok_eq "$rc" 0 "vmdk and qcow2 chain identical"
ok_eq "$(qcmp_out all.vmdk top.qcow2)" "Images are identical." "qemu-img agrees"
vcmp base.vdk base.vdk
ok_eq "$rc" 0 "an image with itself"

# One byte changed inside data, then one in a hole of the other side.
cp all.raw d1.raw
printf '\377' | dd of=d1.raw bs=1 seek=8400001 conv=notrunc status=none
want=$(first_diff all.raw d1.raw)
vcmp top.vdk d1.raw
ok_eq "$rc" 1 "one byte changed in a data range: exit 1"
ok_eq "$(cat "$T/out")" "Content mismatch at offset $want!" "... at the byte cmp finds ($want)"
ok_eq "$(qcmp_out -f qcow2 -F raw top.qcow2 d1.raw)" "Content mismatch at offset $((want / 512 * 512))!" \
	"... and qemu-img the 512-byte sector that holds it"
cp all.raw d2.raw
printf '\1' | dd of=d2.raw bs=1 seek=40000003 conv=notrunc status=none
vcmp top.vdk d2.raw
ok_eq "$(cat "$T/out")" "Content mismatch at offset 40000003!" \
	"a byte in what is a hole of A: found at its offset"
vcmp d2.raw top.qcow2
ok_eq "$rc:$(cat "$T/out")" "1:Content mismatch at offset 40000003!" "... either way round"

# Written zeroes against a hole: equal, except with -s.
truncate -s 4M z1.raw
dd if=/dev/zero of=z2.raw bs=1M count=4 status=none
vd convert -O vdk z1.raw z1.vdk
vcmp z1.vdk z2.raw
ok_eq "$rc" 0 "a hole and written zeroes compare equal"
vcmp -s z1.vdk z2.raw
ok_eq "$rc:$(cat "$T/out")" "1:Strict mode: Offset 0 block status mismatch!" \
	"-s: data against a hole is a difference"
mkdir copy
cp base.vdk top.vdk copy/
vcmp -s top.vdk copy/top.vdk
ok_eq "$rc" 0 "-s: a chain and its copy are identical"
vcmp -s top.vdk top.qcow2
ok_eq "$rc" 1 "-s: the same data allocated in 4 KiB blocks and in 64 KiB clusters differ"

# Different sizes: the longer tail reads as zeroes, or not.
vd create -s 80M long.vdk
vd convert -O vdk all.raw tmp.vdk
qemu-img create -q -f qcow2 long.qcow2 80M
qemu-img convert -n -f raw -O qcow2 all.raw long.qcow2
vcmp all.raw long.qcow2
ok_eq "$rc" 0 "a longer image whose tail reads as zeroes: identical (exit 0)"
ok_eq "$(cat "$T/out")" "Warning: Image size mismatch!
Images are identical." "... with qemu-img's size warning"
ok_eq "$(qcmp_out -f raw -F qcow2 all.raw long.qcow2)" "$(cat "$T/out")" "... word for word as qemu-img"
qemu-io -f qcow2 -c "write -q -P 9 75000000 512" long.qcow2 >/dev/null
vcmp all.raw long.qcow2
ok_eq "$rc:$(tail -1 "$T/out")" "1:Content mismatch at offset 75000000!" \
	"data in the longer tail: mismatch at its first byte"
ok_eq "$(qcmp_out -f raw -F qcow2 all.raw long.qcow2 | tail -1)" \
	"Content mismatch at offset $((75000000 / 512 * 512))!" "... in the sector qemu-img names"
vcmp -s all.raw long.qcow2
ok_eq "$rc:$(cat "$T/out")" "1:Strict mode: Image size mismatch!" "-s: different sizes differ"

# -p: qemu-img's progress, each share once, 100 % only when all was looked at.
vcmp -p top.vdk all.raw
ok_eq "$rc:$(tr '\r' '\n' <"$T/out" | grep -c '(100.00/100%)')" "0:1" "-p: identical, 100% said once"
ok_eq "$(tail -1 "$T/out")" "Images are identical." "... then the verdict on its own line"
vcmp -p top.vdk d1.raw
ok "-p on a mismatch stops short of 100%" sh -c "! grep -q '100.00/100' '$T/out'"
ok_eq "$(tail -1 "$T/out")" "Content mismatch at offset $want!" "... and gives the offset"
run_rc rc "$VDISK" convert -p -O raw top.vdk p.raw
ok_eq "$rc:$(tr '\r' '\n' <"$T/out" | grep -c '(100.00/100%)')" "0:1" "convert -p says 100% once (it said it twice)"

# -q: nothing printed, the status says it.
vcmp -q top.vdk d1.raw
ok_eq "$rc:$(cat "$T/out")" "1:" "-q: exit 1 and no output"

# 64 TiB sparse images: only the maps are walked.
vd create -s 64T big1.vdk
vd create -s 64T big2.vdk
vwrite big2.vdk 70368744173568 1 4096 5
vcmp big1.vdk big2.vdk
ok_eq "$rc:$(cat "$T/out")" "1:Content mismatch at offset 70368744173568!" \
	"64 TiB: a block written at the very end is found"
vcmp big1.vdk big1.vdk
ok_eq "$rc" 0 "64 TiB sparse with itself"

# An encrypted vdk (its passphrase from --key-file) against the raw.
printf 'correct horse battery staple\n' >pass
vd --key-file pass convert --encrypt --pwhash-ops 1 --pwhash-mem 8M -O vdk all.raw enc.vdk
vcmp --key-file pass enc.vdk all.raw
ok_eq "$rc" 0 "encrypted vdk against raw: identical"
printf 'wrong\n' >bad
vcmp --key-file bad enc.vdk all.raw
ok_eq "$rc" 2 "wrong passphrase: exit 2 (an error, not a difference)"

# Errors are 2, never 1.
vcmp top.vdk nosuch.raw
ok_eq "$rc" 2 "a missing image: exit 2"
ok "... named in the message" grep -q "nosuch.raw" "$T/err"
vcmp top.vdk
ok_eq "$rc" 2 "one operand: exit 2"
vcmp -x a b
ok_eq "$rc" 2 "a bad option: exit 2"
# A vdk that is nearly all data blocks, 16 bytes flipped in its middle.
mkraw full.raw 8M "0:8388608:9"
vd convert -O vdk full.raw crc.vdk
size=$(stat -c %s crc.vdk)
printf 'XXXXXXXXXXXXXXXX' | dd of=crc.vdk bs=1 seek=$((size / 2)) conv=notrunc status=none
run_rc crc "$VDISK" check crc.vdk
ok_eq "$crc" 2 "(the damage is in a data block: vdisk check finds it)"
vcmp crc.vdk full.raw
ok_eq "$rc" 2 "a corrupt block: exit 2, not a difference"
ok "... the error names the image" grep -q "crc.vdk" "$T/err"

# A writer's lock (a vdiskfs mount holds an exclusive flock) refuses, -U overrides.
flock -x top.vdk sleep 30 &
lockpid=$!
cleanup_fn "kill $lockpid 2>/dev/null"
sleep 0.3
vcmp top.vdk all.raw
ok_eq "$rc" 2 "an image locked by a writer: exit 2"
ok "... saying it is open for writing elsewhere" grep -q "open for writing elsewhere" "$T/err"
vcmp -U top.vdk all.raw
ok_eq "$rc" 0 "-U compares anyway"
kill "$lockpid" 2>/dev/null

done_testing
