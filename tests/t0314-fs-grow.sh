#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs on an image in memory allocates ahead of a writer that appends to
# the image file (format/vdk-map.c, "Allocating ahead"): while mounted, the
# file holds more than its blocks in use; a snapshot cuts that off the frozen
# layer, an unmount off the top; after kill -9 the extra space is free space
# inside the file (`vdisk check` clean, the data fsync'd before is there) and
# the next unmount cuts it off; on a small host it takes at most an eighth
# of the free space; VDISK_NO_GROW=1 turns it off.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

case $(stat -f -c %T "$T") in
tmpfs | ramfs) ;;
*) skip_all "scratch directory $T is not on tmpfs" ;;
esac

IMG=$T/img.vdk
M=$T/mnt
MIB=1048576

size() { stat -c %s "$1"; }

# at_most FILE BYTES / at_least FILE BYTES: the file's size against a bound.
at_most() {
	[ "$(size "$1")" -le "$2" ] || { diag "$1: $(size "$1") bytes, more than $2"; return 1; }
}
at_least() {
	[ "$(size "$1")" -ge "$2" ] || { diag "$1: $(size "$1") bytes, less than $2"; return 1; }
}

# write_at MiB_OFFSET MiB_COUNT SEED: O_DIRECT writes of random data, fsync'd,
# kept in $T/data.SEED for the comparisons.
write_at() {
	randfile "$T/data.$3" $(($2 * MIB)) "$3" &&
		dd if="$T/data.$3" of="$M/disk" bs=1M seek="$1" count="$2" oflag=direct \
			conv=notrunc,fsync status=none
}

ok "create a 256 MiB image" mkimg "$IMG" 256M
ok "mount" fs_mount "$IMG" "$M"
ok "write 40 MiB" write_at 0 40 11
# The blocks in use are the 40 MiB plus the header and the map: well under 41 MiB.
# Allocated ahead: at least 32 MiB more (one step after the first write).
ok "the image file holds more than its blocks while mounted" at_least "$IMG" $((72 * MIB))
ok "a snapshot" mkdir "$M/snapshots/s1"
ok "the frozen layer is cut back to its blocks" at_most "$T/img@s1.vdk" $((41 * MIB))
ok "the snapshot's disk reads the 40 MiB" same_region "$M/snapshots/s1/disk" 0 $((40 * MIB)) \
	"$T/data.11"
ok "write 48 MiB into the new top" write_at 100 48 12
ok "the new top grows ahead too" at_least "$IMG" $((80 * MIB))
ok "unmount" fs_umount "$M"
ok "the top is cut back at unmount" at_most "$IMG" $((49 * MIB))
ok "vdisk check is clean" vcheck "$IMG"

ok "mount again" fs_mount "$IMG" "$M"
ok "write 24 MiB more (appended)" write_at 180 24 13
ok "grown again" at_least "$IMG" $((49 * MIB + 24 * MIB + 32 * MIB))
fs_kill9 "$M"
ok "vdisk check is clean after kill -9 (the extra space is free space)" vcheck "$IMG"
ok "the check says so" grep -q "free blocks" "$T/check.out"
ok "mount after the crash" fs_mount "$IMG" "$M"
ok "the first 40 MiB are there" same_region "$M/disk" 0 $((40 * MIB)) "$T/data.11"
ok "the 48 MiB are there" same_region "$M/disk" $((100 * MIB)) $((48 * MIB)) "$T/data.12"
ok "the 24 MiB written before the crash are there" same_region "$M/disk" $((180 * MIB)) \
	$((24 * MIB)) "$T/data.13"
ok "write 16 MiB into the free space left by the crash" write_at 220 16 14
ok "unmount" fs_umount "$M"
ok "the top is cut back to its blocks" at_most "$IMG" $((49 * MIB + 24 * MIB + 16 * MIB + MIB))
ok "vdisk check is clean" vcheck "$IMG"
ok "mount" fs_mount "$IMG" "$M"
ok "the 16 MiB are there" same_region "$M/disk" $((220 * MIB)) $((16 * MIB)) "$T/data.14"
ok "unmount" fs_umount "$M"

# A small host: the writer takes at most an eighth of its free space.
H=$T/host
mkdir -p "$H"
ok "a 64 MiB tmpfs as the host" mount -t tmpfs -o size=64M vdisk-t0314 "$H"
cleanup_fn umount -l "$H"
ok "create an image on it" mkimg "$H/img.vdk" 48M
ok "mount" fs_mount "$H/img.vdk" "$M"
ok "write 16 MiB" write_at 0 16 21
ok "ahead by at most an eighth of the free space (~6 MiB)" at_most "$H/img.vdk" $((23 * MIB))
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$H/img.vdk"
umount "$H"

rm -f "$T"/img*.vdk
ok "create an image" mkimg "$IMG" 256M
export VDISK_NO_GROW=1
ok "mount with VDISK_NO_GROW=1" fs_mount "$IMG" "$M"
unset VDISK_NO_GROW
ok "write 40 MiB" write_at 0 40 15
ok "the file holds only its blocks" at_most "$IMG" $((41 * MIB))
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"

# A small disk gets little ahead: a quarter of its size.
rm -f "$T"/img*.vdk
ok "create a 16 MiB image" mkimg "$IMG" 16M
ok "mount it" fs_mount "$IMG" "$M"
ok "write 12 MiB" write_at 0 12 16
ok "allocated ahead by at most 4 MiB and a step's rounding" at_most "$IMG" $((19 * MIB))
ok "the 12 MiB read back" same_region "$M/disk" 0 $((12 * MIB)) "$T/data.16"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"

done_testing
