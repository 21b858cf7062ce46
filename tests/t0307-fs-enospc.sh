#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs on a full host filesystem: ENOSPC reaches the writer, df on the
# mount tells the host's free space, and the image stays consistent (checks
# clean, earlier fsync'd data intact, writable again once there is room).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

H=$T/host
M=$T/mnt
mkdir -p "$H"
ok "a 24 MiB tmpfs as the host filesystem" mount -t tmpfs -o size=24M vdisk-t0307 "$H"
cleanup_fn umount -l "$H"
IMG=$H/img.vdk
ok "create a 64 MiB image on it" mkimg "$IMG" 64M
ok "mount" fs_mount "$IMG" "$M"
ok_eq "$(stat -f -c '%b %S' "$M")" "$(stat -f -c '%b %S' "$H")" "statfs is the host's (24 MiB)"
randfile "$T/a" 4194304 61
ok "4 MiB written and fsync'd" dd if="$T/a" of="$M/disk" bs=1M conv=notrunc,fsync status=none
ok_fail "filling the host fails with an error" perr dd if=/dev/urandom of="$M/disk" bs=1M seek=8 \
	count=40 conv=notrunc,fsync status=none
ok "the writer saw ENOSPC" grep -qi "no space" "$T/perr"
avail=$(stat -f -c %a "$M")
ok "df on the mount shows the host full ($avail blocks free)" test "$avail" -lt 256
ok "the fsync'd data still reads back" same_region "$M/disk" 0 4194304 "$T/a"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean after ENOSPC" vcheck "$IMG"
rm -f "$T/a.copy"
ok "mount again" fs_mount "$IMG" "$M"
ok "the data is there" same_region "$M/disk" 0 4194304 "$T/a"
ok "discarding makes room" fallocate -p -o 8388608 -l 48M "$M/disk"
ok "and writes work again" dd if="$T/a" of="$M/disk" bs=1M seek=60 conv=notrunc,fsync status=none
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
