#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs on a full host filesystem: ENOSPC reaches the writer, df on the
# mount tells the host's free space, and the image stays consistent (checks
# clean, earlier fsync'd data intact, writable again once the host has room).
# Both cache modes: with -o writethrough the write() fails; with the
# writeback cache (the default) the fsync does, and the final commit at
# unmount may fail for lack of space too (reported as such, nothing else).
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
	avail=$(stat -f -c %a "$M")
	ok "$mode: df on the mount shows the host full ($avail blocks free)" test "$avail" -lt 256
	ok "$mode: the fsync'd data still reads back" same_region "$M/disk" 0 4194304 "$T/a"
	: >"$T/vdiskfs.log"
	if [ "$mode" = writethrough ]; then
		ok "$mode: unmount" fs_umount "$M"
		sed 's/^/# vdiskfs: /' "$T/vdiskfs.log"	# the daemon's last words, if any
	else
		fs_umount "$M"
		st=$?
		ok "$mode: unmount (status $st; a failed last commit only for lack of space)" \
			sh -c "[ $st = 0 ] || { grep -q 'No space left' '$T/vdiskfs.log' &&
				! grep -v 'No space left' '$T/vdiskfs.log' | grep -q .; }"
		sed 's/^/# vdiskfs: /' "$T/vdiskfs.log"
		ok "$mode: the mount is gone" sh -c "! grep -q ' $M fuse' /proc/mounts"
	fi
	ok "$mode: vdisk check is clean after ENOSPC" vcheck "$IMG"
	ok "$mode: mount again" fs_mount "$IMG" "$M" $opt
	ok "$mode: the data is there" same_region "$M/disk" 0 4194304 "$T/a"
	# Room again on the host. (A discard alone cannot make it on a host that is full to
	# the last block: the copy-on-write commit that frees the discarded blocks needs a
	# few free blocks first. README, Known limits.)
	ok "$mode: the host gets room again (tmpfs grown to 48 MiB)" mount -o remount,size=48M "$H"
	ok "$mode: discarding" fallocate -p -o 8388608 -l 48M "$M/disk"
	ok "$mode: and writes work again" dd if="$T/a" of="$M/disk" bs=1M seek=60 \
		conv=notrunc,fsync status=none
	ok "$mode: unmount" fs_umount "$M"
	ok "$mode: vdisk check is clean" vcheck "$IMG"
done
done_testing
