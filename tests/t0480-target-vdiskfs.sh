#!/bin/sh
# SPDX-License-Identifier: MIT
# End to end with vdiskfs: mount a native image, export its disk over iSCSI,
# write through the initiator, take a live snapshot with mkdir, export the
# snapshot's disk read-only with a SIGHUP reload, overwrite through iSCSI and
# read the old data back through the snapshot LUN. Discard through iSCSI turns
# into holes in the image and gives the host its space back. Unmount, and the
# image checks clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
qio() {
	qemu-io "$@" >"$T/qio.out" 2>&1
}
requires which qemu-img qemu-io iscsi-inq fusermount3
requires test -c /dev/fuse

IMG=$T/img.vdk
M=$T/mnt
P1=$(free_port)
ok "create a 64 MiB native image" mkimg "$IMG" 64M
ok "mount it" fs_mount "$IMG" "$M"
cat >"$T/conf" <<EOT
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $M/disk
EOT
ok "export MOUNT/disk" start_target --config "$T/conf"
U0=$(lun_url 127.0.0.1 "$P1" 0)
U1=$(lun_url 127.0.0.1 "$P1" 1)

randfile "$T/a" $((8 * 1024 * 1024)) 11
randfile "$T/b" $((2 * 1024 * 1024)) 12
ok "write 8 MiB through iSCSI" qio -f raw -c "write -s $T/a 0 8M" "$U0"
ok "the mounted disk has it" same_region "$M/disk" 0 8388608 "$T/a"
ok "live snapshot with mkdir while exported" mkdir "$M/snapshots/s1"
ok "snapshot disk exists" test -f "$M/snapshots/s1/disk"
echo "lun 1 = $M/snapshots/s1/disk,ro" >>"$T/conf"
kill -HUP "$TPID"
sleep 0.5
ok "reload exports the snapshot as LUN 1" sh -c "iscsi-inq '$U1' >/dev/null 2>&1"
ok "overwrite 2 MiB at 1 MiB through iSCSI" qio -f raw -c "write -s $T/b 1M 2M" "$U0"
qemu-img convert -f raw -O raw "$U0" "$T/now"
qemu-img convert -f raw -O raw "$U1" "$T/then"
ok "LUN 0 has the new data" same_region "$T/now" 1048576 2097152 "$T/b"
ok "LUN 0 keeps the rest" same_region "$T/now" 4194304 4194304 "$T/a" 4194304
ok "snapshot LUN has the old data" same_region "$T/then" 0 8388608 "$T/a"
ok_fail "snapshot LUN refuses writes" qio -f raw -c "write 0 4k" "$U1"
ok "discard 4 MiB through iSCSI (UNMAP)" qio -f raw -c "discard 4M 4M" "$U0"
ok "discarded range reads as zeros" sh -c "qemu-io -f raw -c 'read -P 0 4M 4M' '$U0' | grep -q 'read 4194304'"
ok "the image reports a hole there" test "$(seek_hole "$M/disk" 4194304)" = 4194304
# Thin provisioning end to end: an UNMAP plus SYNCHRONIZE CACHE gives the host its space back.
du0=$(du -k "$IMG" | cut -f1)
# (The top layer holds the 2 MiB written after the snapshot.)
ok "discard them and flush through iSCSI" qio -f raw -c "discard 1M 2M" -c flush "$U0"
du1=$(du -k "$IMG" | cut -f1)
ok "the image file shrank on the host ($du0 -> $du1 KiB)" test "$du1" -le $((du0 - 1800))
ok "stop the target" stop_target
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
