#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs killed with SIGKILL in the middle of writes (and of snapshot
# creation): the image checks clean, every fsync'd write is there, the
# snapshots taken before are intact, and it mounts again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
ROUNDS=4
[ "${VDISK_ASAN:-0}" = 1 ] && ROUNDS=2
ok "create a 128 MiB image" mkimg "$IMG" 128M
ok "mount" fs_mount "$IMG" "$M"
randfile "$T/a" 4194304 21
ok "write A (fsync)" dd if="$T/a" of="$M/disk" bs=1M conv=notrunc,fsync status=none
ok "snapshot s0" mkdir "$M/snapshots/s0"
ok "unmount" fs_umount "$M"

for r in $(seq "$ROUNDS"); do
	ok "round $r: mount" fs_mount "$IMG" "$M"
	randfile "$T/r$r" 65536 $((30 + r))
	ok "round $r: fsync'd block" dd if="$T/r$r" of="$M/disk" bs=64k seek=$((64 + r)) \
		conv=notrunc,fsync status=none
	# Background: random writes all over [32M, 96M) plus snapshots in a loop.
	fio --name=w --filename="$M/disk" --rw=randwrite --bs=64k --offset=32M --size=32M \
		--time_based --runtime=30 --ioengine=psync --direct=$((r % 2)) >/dev/null 2>&1 &
	fio_pid=$!
	(
		i=0
		while [ $i -lt 100 ]; do
			mkdir "$M/snapshots/r$r-$i" 2>/dev/null || exit 0
			i=$((i + 1))
			sleep 0.05
		done
	) &
	snap_pid=$!
	sleep 1.$((r * 2))
	ok "round $r: kill -9 the daemon during writes" kill -9 "$FS_PID"
	wait "$FS_PID" 2>/dev/null
	fusermount3 -uz "$M"
	kill "$fio_pid" 2>/dev/null
	wait "$fio_pid" 2>/dev/null
	wait "$snap_pid" 2>/dev/null
	ok "round $r: vdisk check is clean" vcheck "$IMG"
done

ok "mount after the crashes" fs_mount "$IMG" "$M"
ok "A is there" same_region "$M/disk" 0 4194304 "$T/a"
for r in $(seq "$ROUNDS"); do
	ok "round $r's fsync'd block is there" same_region "$M/disk" $(((64 + r) * 65536)) 65536 "$T/r$r"
done
ok "snapshot s0 survived" test -d "$M/snapshots/s0"
ok "s0 holds A" same_region "$M/snapshots/s0/disk" 0 4194304 "$T/a"
ok "s0 is zero beyond A" is_zero "$M/snapshots/s0/disk" 4194304 1048576
ls -U "$M/snapshots" >"$T/fs-list"	# readdir order: oldest first
n=$(wc -l <"$T/fs-list")
ok "snapshots were taken during the rounds ($n)" test "$n" -gt $((ROUNDS + 1))
ok_eq "$(head -1 "$T/fs-list")" s0 "s0 is listed first (oldest)"
ok "writes work after the crashes" dd if="$T/a" of="$M/disk" bs=1M seek=100 conv=notrunc,fsync status=none
ok "unmount" fs_umount "$M"
ok "vdisk check is clean at the end" vcheck "$IMG"
"$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { print $2 }' >"$T/list"
ok_eq "$(tr '\n' ' ' <"$T/list")" "$(tr '\n' ' ' <"$T/fs-list")" "vdisk snapshot list agrees with snapshots/ (same order)"
done_testing
