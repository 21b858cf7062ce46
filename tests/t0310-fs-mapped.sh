#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs on images in memory (tmpfs): reads are answered from the mapped
# image files and whole-block writes go through the mapping (format/vdk-map.c,
# fs/fread.c). What one path writes the other reads back (VDISK_NO_MAP=1 is
# the pread/pwrite path); a damaged block is still EIO; a map entry that points
# past the end of a truncated file is EIO, not a crash; a chain deeper than
# the mapped path holds reads right through the copying path; snapshots taken
# and deleted while mapped reads run stay consistent; raw files are mapped too
# (a raw base under an overlay, a raw image on its own).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

requires fio --version
case $(stat -f -c %T "$T") in
tmpfs | ramfs) ;;
*) skip_all "scratch directory $T is not on tmpfs" ;;
esac

IMG=$T/img.vdk
M=$T/mnt
runs=2
[ -n "${VDISK_ASAN:-}" ] && runs=1

fio_job() {
	# fio_job FILE RW EXTRA...: 1 MiB and 4 KiB patterns with a verify header per block
	_f=$1 _rw=$2
	shift 2
	fio --name=m --filename="$_f" --rw="$_rw" --bs=64k --size=32M --ioengine=psync \
		--verify=crc32c --verify_backlog=64 --randseed=7 "$@" --output="$T/fio.out" \
		>/dev/null 2>&1 || { sed 's/^/# /' "$T/fio.out" | tail -5; return 1; }
}

ok "create a 64 MiB image" mkimg "$IMG" 64M
for k in $(seq $runs); do
	ok "run $k: mount (mapped)" fs_mount "$IMG" "$M"
	ok "run $k: fio writes through the mapping (O_DIRECT)" fio_job "$M/disk" randwrite \
		--direct=1 --do_verify=0
	ok "run $k: unmount" fs_umount "$M"
	export VDISK_NO_MAP=1
	ok "run $k: mount with VDISK_NO_MAP=1 (pread and pwrite)" fs_mount "$IMG" "$M"
	unset VDISK_NO_MAP
	ok "run $k: pread path reads back what the mapping wrote" fio_job "$M/disk" randread \
		--direct=1 --verify_only
	ok "run $k: pread path writes (buffered)" fio_job "$M/disk" write --direct=0 \
		--do_verify=0 --randseed=9
	ok "run $k: unmount" fs_umount "$M"
	ok "run $k: mount (mapped) again" fs_mount "$IMG" "$M"
	ok "run $k: mapped reads (O_DIRECT) read back the pread path's data" fio_job "$M/disk" \
		read --direct=1 --verify_only --randseed=9
	ok "run $k: mapped reads (page cache) too" fio_job "$M/disk" read --direct=0 \
		--verify_only --randseed=9
	ok "run $k: unmount" fs_umount "$M"
done
ok "vdisk check is clean" vcheck "$IMG"

# A damaged block: EIO through the mapped path, the rest reads. The block has
# its own pattern, so that it can be found in the image file.
rm -f "$IMG"
ok "create an image for damage" mkimg "$IMG" 16M
ok "mount" fs_mount "$IMG" "$M"
perl -e 'print "VDISKMAPPEDTEST1" x 4096' >"$T/pat"
perl -e 'print "VDISKDAMAGEDBLK1" x 256' >"$T/bad"
ok "64 KiB of a pattern at 1 MiB" dd if="$T/pat" of="$M/disk" bs=64k count=1 seek=16 \
	conv=notrunc,fsync status=none
ok "a block of its own at 1 MiB + 8 KiB" dd if="$T/bad" of="$M/disk" bs=4k count=1 seek=258 \
	conv=notrunc,fsync status=none
randfile "$T/r" 1048576 3
ok "1 MiB of random data at 4 MiB" dd if="$T/r" of="$M/disk" bs=1M count=1 seek=4 \
	conv=notrunc,fsync status=none
ok "unmount" fs_umount "$M"
off=$(grep -obUa VDISKDAMAGEDBLK1 "$IMG" | head -1 | cut -d: -f1)
ok "the block is in the image file" test -n "$off"
printf 'X' | dd of="$IMG" bs=1 seek=$((off + 1000)) conv=notrunc status=none
ok "mount the damaged image" fs_mount "$IMG" "$M"
ok_fail "reading the damaged block fails (O_DIRECT)" perr dd if="$M/disk" of=/dev/null bs=4k \
	skip=258 count=1 iflag=direct
ok "EIO" grep -q "Input/output error" "$T/perr"
ok_fail "reading it through the page cache fails too" perr dd if="$M/disk" of=/dev/null \
	bs=4k skip=258 count=1
ok_eq "$(dd if="$M/disk" bs=64k skip=16 count=1 2>/dev/null | wc -c)" 8192 \
	"a read across it stops short before it (as any file with a bad block)"
ok "the daemon logged the bad checksum" grep -q "bad checksum" "$T/vdiskfs.log"
ok "the blocks before it read" same_region "$M/disk" 1048576 8192 "$T/pat"
ok "the random MiB reads" same_region "$M/disk" 4194304 1048576 "$T/r"
ok "unmount" fs_umount "$M"

# The file cut short in the middle: reads of what is gone are EIO, never a
# fault on the mapping; the daemon goes on answering.
cp "$IMG" "$T/short.vdk"
truncate -s $(($(stat -c %s "$IMG") * 2 / 3)) "$T/short.vdk"
ok "mount a truncated image read-only" fs_mount "$T/short.vdk" "$M" -o ro
ok "reading all of it fails with EIO" sh -c \
	"! dd if='$M/disk' of=/dev/null bs=1M iflag=direct 2>'$T/perr' && grep -q 'Input/output' '$T/perr'"
ok "the daemon is still serving" test -f "$M/snapshots/../disk"
ok "unmount" fs_umount "$M"

# The file cut short by another program while mounted and mapped (the image
# lock is advisory): a checksum over a page that is gone would be SIGBUS; it is
# EIO naming the file, and the daemon goes on answering.
"$VDISK" create -s 16M "$T/live.vdk" >/dev/null
randfile "$T/r4" 16777216 17
ok "mount a new image read-write" fs_mount "$T/live.vdk" "$M"
ok "fill it" dd if="$T/r4" of="$M/disk" bs=1M conv=notrunc,fsync status=none
ok "read it all once (mapped)" sh -c \
	"dd if='$M/disk' bs=1M iflag=direct status=none | cmp -s - '$T/r4'"
truncate -s 8M "$T/live.vdk"
ok "reading all of it after a truncate fails with EIO" sh -c \
	"! dd if='$M/disk' of=/dev/null bs=1M iflag=direct 2>'$T/perr' && grep -q 'Input/output' '$T/perr'"
ok "the daemon is still serving" sh -c "ls '$M' >/dev/null && test -f '$M/disk'"
# (the reader meets the missing page itself, or the helper that checks ahead
# did and the read then took pread, which finds the file short)
# (or, when the file's end was found first, the error of the block or map node
# that lies past it: any error naming the file; make check once saw another)
ok "the log names the truncated file" grep -q "live.vdk: " "$T/vdiskfs.log" ||
	sed 's/^/# log: /' "$T/vdiskfs.log" | tail -5
# A write now takes new blocks where the file was allocated ahead and is gone:
# EIO (or it lands, extending the file), never a crash.
dd if=/dev/urandom of="$M/disk" bs=1M count=4 conv=notrunc,fsync status=none 2>/dev/null
ok "the daemon is still serving after a write" sh -c "ls '$M' >/dev/null && test -f '$M/disk'"
ok "unmount" fs_umount "$M"
ok_fail "vdisk check finds the damage" "$VDISK" check "$T/live.vdk"
rm -f "$T/live.vdk" "$T/r4"

# A chain deeper than the mapped path holds (16 layers): 20 snapshots, each
# with its own 64 KiB; every one reads back.
rm -f "$T"/img*.vdk
randfile "$T/r2" 1310720 5
ok "create a chain image" mkimg "$IMG" 16M --block-size 64K
ok "mount" fs_mount "$IMG" "$M"
for i in $(seq 0 19); do
	dd if="$T/r2" of="$M/disk" bs=64k skip="$i" seek="$i" count=1 conv=notrunc status=none
	mkdir "$M/snapshots/s$i" || break
done
ok_eq "$(ls "$M/snapshots" | wc -l)" 20 "20 snapshots"
ok "the 20 pieces read back across 21 layers (O_DIRECT)" sh -c \
	"dd if='$M/disk' bs=64k count=20 iflag=direct status=none | cmp -s -n 1310720 - '$T/r2'"
ok "snapshot s10's disk holds the first 11 pieces" same_region "$M/snapshots/s10/disk" 0 720896 \
	"$T/r2"
ok "and zeroes after them" is_zero "$M/snapshots/s10/disk" 720896 65536

# Snapshots taken and deleted while mapped reads run.
fio --name=rd --filename="$M/disk" --rw=randread --bs=64k --size=16M --direct=1 \
	--time_based --runtime=3 --numjobs=2 --output="$T/fio-rd.out" >/dev/null 2>&1 &
fpid=$!
for i in $(seq 0 9); do
	mkdir "$M/snapshots/live$i" && rmdir "$M/snapshots/s$i" || break
done
wait "$fpid"
ok "readers ran without an error during snapshot changes" grep -q "err= 0" "$T/fio-rd.out"
ok_eq "$(ls "$M/snapshots" | wc -l)" 20 "10 taken, 10 deleted"
ok "the 20 pieces still read back" sh -c \
	"dd if='$M/disk' bs=64k count=20 iflag=direct status=none | cmp -s -n 1310720 - '$T/r2'"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"

# A raw base (mapped too) under a native overlay, and a raw image on its own.
randfile "$T/base.raw" 8388608 11
ok "overlay over the raw base" "$VDISK" create -b "$T/base.raw" -F raw "$T/ov.vdk"
ok "mount the overlay" fs_mount "$T/ov.vdk" "$M"
ok "64 KiB into the overlay at 1 MiB" dd if="$T/pat" of="$M/disk" bs=64k seek=16 count=1 \
	conv=notrunc,fsync status=none
cp "$T/base.raw" "$T/want"
dd if="$T/pat" of="$T/want" bs=64k seek=16 count=1 conv=notrunc status=none
ok "the disk is the base with the overlay's 64 KiB (O_DIRECT)" sh -c \
	"dd if='$M/disk' bs=1M iflag=direct status=none | cmp -s - '$T/want'"
ok "and through the page cache" cmp -s "$M/disk" "$T/want"
ok "unmount" fs_umount "$M"
export VDISK_NO_MAP=1
ok "mount it with VDISK_NO_MAP=1" fs_mount "$T/ov.vdk" "$M"
ok "the same bytes through pread" sh -c \
	"dd if='$M/disk' bs=1M iflag=direct status=none | cmp -s - '$T/want'"
ok "unmount" fs_umount "$M"
unset VDISK_NO_MAP
ok "mount the raw image itself" fs_mount "$T/base.raw" "$M"
ok "it reads as the file (O_DIRECT)" sh -c \
	"dd if='$M/disk' bs=1M iflag=direct status=none | cmp -s - '$T/base.raw'"
randfile "$T/r3" 65536 13
ok "a write into it" dd if="$T/r3" of="$M/disk" bs=64k seek=3 count=1 conv=notrunc,fsync \
	status=none
ok "reads back through the mapping" sh -c \
	"dd if='$M/disk' bs=64k skip=3 count=1 iflag=direct status=none | cmp -s - '$T/r3'"
ok "unmount" fs_umount "$M"
ok "the file holds the write" same_region "$T/base.raw" 196608 65536 "$T/r3"
done_testing
