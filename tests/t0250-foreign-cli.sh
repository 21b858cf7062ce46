#!/bin/sh
# SPDX-License-Identifier: MIT
# The vdisk commands on foreign images: info (names from the metadata), map
# (covers the disk), check (clean chain passes, a bad L1 entry is reported with a
# non-zero status), convert -O vdk (then raw: equal to qemu-img's view), and a
# native overlay over a foreign chain (create -b).
. "$(dirname "$0")/lib.sh"
requires test -x "$VDISK"
cd "$T" || exit 1
QI=qemu-img
M=1048576

python3 "$SRCDIR/tests/gen-vmdk.py" vm 21 >/dev/null || exit 1
python3 "$SRCDIR/tests/gen-vhd.py" vh 22 >/dev/null || exit 1
head -c $((3 * M)) /dev/urandom >r
$QI create -q -f qcow2 q0.qcow2 12M
qemu-io -f qcow2 -c "write -s r 1M 3M" q0.qcow2 >/dev/null
$QI create -q -f qcow2 -b q0.qcow2 -F qcow2 q1.qcow2
qemu-io -f qcow2 -c "write -s r 6M 2M" -c "write -z 2M 1M" q1.qcow2 >/dev/null
$QI convert -O raw q1.qcow2 q1.raw

"$VDISK" info vm/vm-000002.vmdk >info.out 2>&1
ok "info: ESXi chain, three vmdk layers" [ "$(grep -c '^file format: vmdk' info.out)" -eq 3 ]
ok "info: snapshot names from the .vmsd" grep -q '^snapshot: after upgrade' info.out
ok "snapshot list: both .vmsd names" sh -c "'$VDISK' snapshot list vm/vm-000002.vmdk | grep -q 'before upgrade' && '$VDISK' snapshot list vm/vm-000002.vmdk | grep -q 'after upgrade'"
for img in q1.qcow2 vm/vm-000002.vmdk vh/diff2.vhdx vh/diff2.vhd; do
	"$VDISK" map "$img" >map.out 2>&1
	total=$(perl -lane 'next if $. == 1; $s += hex($F[1]); END { print $s }' map.out)
	size=$("$VDISK" info "$img" | sed -n '1,/^virtual size/s/.*(\([0-9]*\) bytes).*/\1/p' | head -1)
	ok_eq "$total" "$size" "map of $img covers the disk"
	ok "check $img" sh -c "'$VDISK' check '$img' >/dev/null 2>&1"
done

# A corrupt qcow2: check reports it and fails.
cp q0.qcow2 bad.qcow2
l1=$(od -An -tu8 -j40 -N8 --endian=big bad.qcow2 | tr -d ' ')
printf '\177\377\377\377\377\377\0\0' | dd of=bad.qcow2 bs=1 seek="$l1" conv=notrunc 2>/dev/null
"$VDISK" check bad.qcow2 >check.out 2>&1
rc=$?
ok "check of a bad L1 entry fails (rc $rc)" [ $rc -ne 0 ]
ok "check names the L1 entry" grep -q "L1 entry 0" check.out
ok "convert of a corrupt image fails" sh -c "! '$VDISK' convert -O raw bad.qcow2 bad.raw 2>/dev/null"

# A streamOptimized VMDK with garbage over its compressed grains: check inflates
# every grain and fails, naming the grain.
head -c $((2 * M)) /dev/urandom >so.raw
$QI convert -f raw -O vmdk -o subformat=streamOptimized so.raw so.vmdk
sz=$(stat -c %s so.vmdk)
dd if=/dev/zero of=so.vmdk bs=1 seek=$((sz / 3)) count=8192 conv=notrunc 2>/dev/null
"$VDISK" check so.vmdk >check2.out 2>&1
rc=$?
ok "check of damaged compressed grains fails (rc $rc)" [ $rc -ne 0 ]
ok "check names the damaged grain" grep -q "compressed grain at virtual offset" check2.out

# convert -O vdk, then back to raw.
ok "convert qcow2 chain -O vdk" "$VDISK" convert -O vdk q1.qcow2 q1.vdk
ok "the vdk holds qemu-img's view" sh -c "'$VDISK' convert -O raw q1.vdk q1b.raw && cmp -s q1.raw q1b.raw"
ok "convert vhdx chain -O vdk" "$VDISK" convert -O vdk vh/diff2.vhdx x.vdk
ok "the vdk holds the vhdx chain" sh -c "'$VDISK' convert -O raw x.vdk x.raw && cmp -s x.raw vh/expect-diff2.vhdx.raw"

# A native overlay over a foreign chain.
ok "create -b over an ESXi chain" "$VDISK" create -b vm/vm-000002.vmdk top.vdk
ok "the overlay reads as the chain" sh -c "'$VDISK' convert -O raw top.vdk top.raw && cmp -s top.raw vm/expect-000002.raw"
ok_eq "$("$VDISK" info top.vdk | grep -c '^file format: vmdk')" 3 "overlay info lists the three vmdk layers"
# "disk size" counts every file a layer reads (VMDK extents), as qemu-img does.
head -c 3145728 /dev/urandom >as.raw
for sf in twoGbMaxExtentSparse monolithicFlat; do
	qemu-img convert -f raw -O vmdk -o subformat=$sf as.raw "as-$sf.vmdk"
	q=$(qemu-img info --output=json "as-$sf.vmdk" | sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p')
	v=$("$VDISK" info --json "as-$sf.vmdk" | sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p')
	ok_eq "$v" "$q" "$sf: actual-size is the extents' too, as qemu-img says"
done
done_testing
