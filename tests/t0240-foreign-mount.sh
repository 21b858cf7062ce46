#!/bin/sh
# SPDX-License-Identifier: MIT
# Foreign chains through a real vdiskfs mount: the mount is read-only and says so,
# `disk` equals `qemu-img convert -O raw`, and every snapshot folder's `disk`
# equals the view of the chain member it stands for: qcow2 backing files and an
# internal snapshot, an ESXi VMDK chain named from its .vmsd, VHDX and VHD chains.
. "$(dirname "$0")/lib.sh"
requires test -x "$VDISKFS"
requires test -c /dev/fuse
requires command -v fusermount3
cd "$T" || exit 1
QI=qemu-img
M=1048576

# mount_ro IMAGE DIR: mount, expect the read-only notice, register the unmount.
mount_ro() {
	mkdir -p "$2"
	"$VDISKFS" "$1" "$2" 2>"$T/mount.err"
	_rc=$?
	cleanup_fn fusermount3 -u "$T/$2"
	ok "mount $1 (rc $_rc)" [ $_rc -eq 0 ]
	ok "mount $1 says read-only" grep -q "read-only" "$T/mount.err"
	wait_mounted "$T/$2" || diag "not mounted: $(cat "$T/mount.err")"
}
# same_file NAME FILE EXPECTED
same_file() {
	ok "$1" cmp -s "$2" "$3"
}

# qcow2: c0 <- c1 <- c2, internal snapshot "snapA" in the top.
head -c $((4 * M)) /dev/urandom >r
$QI create -q -f qcow2 c0.qcow2 16M
qemu-io -f qcow2 -c "write -s r 0 4M" c0.qcow2 >/dev/null
for i in 1 2; do
	$QI create -q -f qcow2 -b c$((i - 1)).qcow2 -F qcow2 c$i.qcow2
	qemu-io -f qcow2 -c "write -s r $((i * 3))M 2M" c$i.qcow2 >/dev/null
done
$QI snapshot -c snapA c2.qcow2
qemu-io -f qcow2 -c "write -s r 12M 1M" -c "write -z 0 1M" c2.qcow2 >/dev/null
for f in c0 c1 c2; do
	$QI convert -O raw $f.qcow2 $f.raw
done
$QI convert -O raw -l snapshot.name=snapA c2.qcow2 snapA.raw
mount_ro c2.qcow2 mq
same_file "qcow2 chain: disk" mq/disk c2.raw
same_file "qcow2 chain: snapshots/c0.qcow2/disk" mq/snapshots/c0.qcow2/disk c0.raw
same_file "qcow2 chain: snapshots/c1.qcow2/disk" mq/snapshots/c1.qcow2/disk c1.raw
same_file "qcow2 internal snapshot: snapshots/snapA/disk" mq/snapshots/snapA/disk snapA.raw
ok "writing to a foreign disk fails" sh -c "! dd if=/dev/zero of=mq/disk bs=4k count=1 conv=notrunc 2>/dev/null"
ok_eq "$(ls mq/snapshots | wc -l)" 3 "three snapshot folders"
# snapA holds what c2 held when it was taken: the 2 MiB written at 6 MiB.
ok_eq "$(cat mq/snapshots/snapA/changed)" "6291456 2097152" "internal snapshot: changed"
ok "internal snapshot: info says the same allocated bytes" grep -qx "allocated: 2097152" mq/snapshots/snapA/info
fusermount3 -u mq

# ESXi VMDK chain with .vmsd names.
python3 "$SRCDIR/tests/gen-vmdk.py" vm 11 || exit 1
mount_ro vm/vm-000002.vmdk mv
same_file "esxi chain: disk" mv/disk vm/expect-000002.raw
same_file "esxi chain: snapshots/before upgrade/disk" "mv/snapshots/before upgrade/disk" vm/expect-vm.raw
same_file "esxi chain: snapshots/after upgrade/disk" "mv/snapshots/after upgrade/disk" vm/expect-000001.raw
ok "snapshot info carries the .vmsd time" grep -q "^created: 1700000000" "mv/snapshots/before upgrade/info"
fusermount3 -u mv

# VHDX differencing chain.
python3 "$SRCDIR/tests/gen-vhd.py" vh 12 || exit 1
mount_ro vh/diff2.vhdx mx
same_file "vhdx chain: disk" mx/disk vh/expect-diff2.vhdx.raw
same_file "vhdx chain: snapshots/base.vhdx/disk" mx/snapshots/base.vhdx/disk vh/expect-base.vhdx.raw
same_file "vhdx chain: snapshots/diff1.vhdx/disk" mx/snapshots/diff1.vhdx/disk vh/expect-diff1.vhdx.raw
fusermount3 -u mx
mount_ro vh/diff2.vhd mh
same_file "vhd chain: disk" mh/disk vh/expect-diff2.vhd.raw
same_file "vhd chain: snapshots/base.vhd/disk" mh/snapshots/base.vhd/disk vh/expect-base.vhd.raw
same_file "vhd chain: snapshots/diff1.vhd/disk" mh/snapshots/diff1.vhd/disk vh/expect-diff1.vhd.raw
fusermount3 -u mh

# Internal snapshots taken at other sizes (qemu-img resize in between): each snapshot's
# disk has its own size. Oracle: qemu-img snapshot -a on a copy, then convert.
qemu-img create -q -f qcow2 rs.qcow2 4M
qemu-io -c 'write -P 1 0 4M' rs.qcow2 >/dev/null
qemu-img snapshot -c small rs.qcow2 && qemu-img resize -q rs.qcow2 8M
qemu-io -c 'write -P 2 6M 1M' rs.qcow2 >/dev/null
qemu-img snapshot -c big rs.qcow2 && qemu-img resize -q --shrink rs.qcow2 2M
for sn in small big; do
	cp rs.qcow2 "rs-$sn.qcow2" && qemu-img snapshot -a "$sn" "rs-$sn.qcow2" &&
		qemu-img convert -O raw "rs-$sn.qcow2" "rs-$sn.raw"
done
mount_ro rs.qcow2 mr
ok_eq "$(stat -c %s mr/snapshots/big/disk)" 8388608 "resized qcow2: the snapshot's disk has its size"
same_file "resized qcow2: snapshots/big/disk" mr/snapshots/big/disk rs-big.raw
same_file "resized qcow2: snapshots/small/disk" mr/snapshots/small/disk rs-small.raw
ok "resized qcow2: info says the snapshot's size" grep -qx "size: 4194304" mr/snapshots/small/info
ok_eq "$(stat -c %s mr/disk)" 2097152 "resized qcow2: disk has the current size"
fusermount3 -u mr

# An image QEMU is writing (qemu-io stands for a VM) is refused, as qemu-img does,
# unless -o force_share.
qemu-img create -q -f qcow2 busy.qcow2 4M
qemu-io -c 'sleep 60000' busy.qcow2 &
qio=$!
cleanup_fn kill "$qio"
ino=$(stat -c %i busy.qcow2)
for _i in $(seq 100); do grep -q ":$ino " /proc/locks && break; sleep 0.1; done
mkdir -p mb
ok_fail "an image QEMU writes is refused" "$VDISKFS" busy.qcow2 mb 2>"$T/busy.err"
ok "  saying so" grep -q "being written by QEMU.*force_share" "$T/busy.err"
ok "-o force_share mounts it" "$VDISKFS" -o force_share busy.qcow2 mb 2>/dev/null
ok "  and it reads" dd if=mb/disk of=/dev/null bs=1M status=none
fusermount3 -u mb
kill "$qio"
done_testing
