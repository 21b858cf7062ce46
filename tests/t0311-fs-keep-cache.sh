#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs: disk keeps its page cache across opens (ops.c, CACHING), and never
# shows stale bytes for it: after a write through a partition or through an
# uncached (O_DIRECT) handle made while disk was closed, the next open of disk
# reads the image again. Both with the writeback cache and -o writethrough.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/d.vdk
M=$T/mnt
S=512
MIB=1048576
ok "create a 64 MiB image" mkimg "$IMG" 64M

# resident FILE: pages of FILE in the page cache (fincore opens FILE itself)
resident() {
	fincore -nb -o PAGES "$1" | tr -d ' '
}

for mode in writeback writethrough; do
	opt=
	[ "$mode" = writethrough ] && opt="-o writethrough"
	ok "$mode: mount" fs_mount "$IMG" "$M" $opt
	ok "$mode: one partition (sgdisk)" quiet sgdisk -o -n1:2048:+16M "$M/disk"
	ok_eq "$(ls "$M/partitions")" p1 "$mode: partitions/p1"
	P1=$((2048 * S))

	randfile "$T/a" $((4 * MIB)) 1
	ok "$mode: 4 MiB written through disk" dd if="$T/a" of="$M/disk" bs=1M seek=32 \
		conv=notrunc,fsync status=none
	cat "$M/disk" >/dev/null
	n=$(resident "$M/disk")
	ok "$mode: a new open of disk keeps its cached pages ($n of 16384)" \
		test "$n" -ge 8192

	# disk closed, a partition writes a range disk has cached: the next open reads anew.
	randfile "$T/b" $MIB 2
	ok "$mode: the range (zeroes) is cached through disk" is_zero "$M/disk" $((P1 + MIB)) $MIB
	ok "$mode: write through p1 while disk is closed" dd if="$T/b" of="$M/partitions/p1" \
		bs=1M seek=1 conv=notrunc,fsync status=none
	ok "$mode: disk opened again shows the partition's write" \
		same_region "$M/disk" $((P1 + MIB)) $MIB "$T/b"

	# Again, with p1 still open after its write (its close would drop disk's cache).
	randfile "$T/b2" $MIB 4
	ok "$mode: the range is cached through disk" same_region "$M/disk" $((P1 + MIB)) $MIB "$T/b"
	exec 8<>"$M/partitions/p1"
	ok "$mode: write through a p1 handle that stays open" perl -e '
		open(my $f, "+<&=", 8) or die "fd 8: $!"; open(my $i, "<", $ARGV[0]) or die;
		local $/; my $b = <$i>; sysseek($f, $ARGV[1], 0) or die;
		syswrite($f, $b) == length($b) or die "write: $!"' "$T/b2" $MIB
	ok "$mode: disk opened again shows it while p1 is open" \
		same_region "$M/disk" $((P1 + MIB)) $MIB "$T/b2"
	exec 8<&-

	# disk closed, an O_DIRECT writer (the only handle: uncached) writes a cached range.
	randfile "$T/c" $MIB 3
	ok "$mode: range cached" same_region "$M/disk" $((32 * MIB)) $MIB "$T/a"
	ok "$mode: O_DIRECT write of it, disk otherwise closed" dd if="$T/c" of="$M/disk" \
		bs=1M seek=32 oflag=direct conv=notrunc status=none
	ok "$mode: disk opened again shows the O_DIRECT write" \
		same_region "$M/disk" $((32 * MIB)) $MIB "$T/c"
	# Only that one open dropped the cache: later opens keep it again.
	cat "$M/disk" >/dev/null
	n=$(resident "$M/disk")
	ok "$mode: after that, opens keep the cache again ($n of 16384)" test "$n" -ge 8192

	ok "$mode: unmount" fs_umount "$M"
	ok "$mode: vdisk check clean" vcheck "$IMG"
	ok "$mode: the image holds the last writes" sh -c "
		'$VDISK' convert -O raw '$IMG' '$T/out.raw' &&
		cmp -s -i $((32 * MIB)):0 -n $MIB '$T/out.raw' '$T/c' &&
		cmp -s -i $((P1 + MIB)):0 -n $MIB '$T/out.raw' '$T/b2'"
	rm -f "$T/out.raw"
	# Back to an empty disk for the next mode.
	rm -f "$IMG"
	mkimg "$IMG" 64M
done
done_testing
