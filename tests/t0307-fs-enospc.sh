#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs on a full host filesystem: ENOSPC reaches the writer, df on the
# mount tells the host's free space, and the image stays consistent (checks
# clean, earlier fsync'd data intact), the last commit at unmount still
# succeeds (the image keeps room on the host for its map), and a discard
# inside the image alone gives the host its space back and makes the image
# writable again. Both cache modes: with -o writethrough the write() fails;
# with the writeback cache (the default) the fsync does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

for mode in writethrough writeback; do
	H=$T/host-$mode
	M=$T/mnt-$mode
	mkdir -p "$H"
	ok "$mode: a 24 MiB tmpfs as the host filesystem" mount -t tmpfs -o size=24M \
		"vdisk-t0307-$mode" "$H"
	cleanup_fn umount -l "$H"
	IMG=$H/img.vdk
	opt=
	[ "$mode" = writethrough ] && opt="-o writethrough"
	ok "$mode: create a 64 MiB image on it" mkimg "$IMG" 64M
	ok "$mode: mount" fs_mount "$IMG" "$M" $opt
	ok_eq "$(stat -f -c '%b %S' "$M")" "$(stat -f -c '%b %S' "$H")" \
		"$mode: statfs is the host's (24 MiB)"
	randfile "$T/a" 4194304 61
	ok "$mode: 4 MiB written and fsync'd" dd if="$T/a" of="$M/disk" bs=1M \
		conv=notrunc,fsync status=none
	ok_fail "$mode: filling the host fails with an error" perr dd if=/dev/urandom \
		of="$M/disk" bs=1M seek=8 count=40 conv=notrunc,fsync status=none
	ok "$mode: the writer saw ENOSPC" grep -qi "no space" "$T/perr"
	if [ "$mode" = writethrough ]; then
		ok "$mode: at write()" grep -q "error writing" "$T/perr"
	else
		ok "$mode: at fsync" grep -q "fsync failed" "$T/perr"
	fi
	# "Full": under 4 MiB of the 24 left (the image's room for its next commit,
	# and the free end of its file cut off at close, are a few hundred KiB that
	# vary with timing); the discard below must give back over 8 MiB.
	avail=$(stat -f -c %a "$M")
	ok "$mode: df on the mount shows the host full ($avail blocks free)" test "$avail" -lt 1024
	ok "$mode: the fsync'd data still reads back" same_region "$M/disk" 0 4194304 "$T/a"
	: >"$T/vdiskfs.log"
	ok "$mode: unmount: the last commit had room" fs_umount "$M"
	sed 's/^/# vdiskfs: /' "$T/vdiskfs.log"	# the daemon's last words, if any
	ok "$mode: nothing went wrong at unmount" sh -c "! grep -q . '$T/vdiskfs.log'"
	ok "$mode: the mount is gone" sh -c "! grep -q ' $M fuse' /proc/mounts"
	ok "$mode: vdisk check is clean after ENOSPC" vcheck "$IMG"
	ok "$mode: mount again" fs_mount "$IMG" "$M" $opt
	ok "$mode: the data is there" same_region "$M/disk" 0 4194304 "$T/a"
	avail=$(stat -f -c %a "$M")
	ok "$mode: the host is still full ($avail blocks free)" test "$avail" -lt 1024
	# A discard inside the image gives the host its space back (after the commit of
	# an fsync), with nothing else done on the host.
	ok "$mode: discarding 12 MiB" fallocate -p -o 8388608 -l 12M "$M/disk"
	ok "$mode: fsync" python3 -c "import os; os.fsync(os.open('$M/disk', os.O_RDWR))"
	avail=$(stat -f -c %a "$M")
	ok "$mode: the host has room again ($avail blocks free)" test "$avail" -gt 2048
	ok "$mode: and writes work again" dd if="$T/a" of="$M/disk" bs=1M seek=40 \
		conv=notrunc,fsync status=none
	ok "$mode: the data written before is intact" same_region "$M/disk" 0 4194304 "$T/a"
	ok "$mode: unmount" fs_umount "$M"
	ok "$mode: vdisk check is clean" vcheck "$IMG"
done
done_testing
