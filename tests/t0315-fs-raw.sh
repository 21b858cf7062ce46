#!/bin/sh
# SPDX-License-Identifier: MIT
# A raw image read a MiB at a time asks the file for its holes once per data
# run, not at every read (SEEK_HOLE walks the whole run on tmpfs: reading a
# 4 GiB raw file took a minute), and what it remembers never hides a hole
# punched or data written through the library: vdiskfs on a raw image,
# fallocate -p and writes into holes, then SEEK_HOLE/SEEK_DATA on disk.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
. "$(dirname "$0")/fs-lib.sh"
cd "$T" || exit 1

# 64 MiB of data, no hole: 64 reads of 1 MiB by vdisk compare on each side.
mkraw a.raw 64M "0:67108864:1"
cp a.raw b.raw
# (LeakSanitizer cannot run under ptrace)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
	strace -f -qq -e trace=lseek -o st.log "$VDISK" compare a.raw b.raw >/dev/null
n=$(grep -c "SEEK_HOLE" st.log)
ok "compare of two all-data raw files: SEEK_HOLE asked $n times (not at each of 128 reads)" \
	test "$n" -le 4
ok "... and they are identical" "$VDISK" compare -q a.raw b.raw

# Sparse raw: data at 0-4 MiB and 8-12 MiB, mounted read-write.
mkraw s.raw 16M "0:4194304:2 8388608:4194304:3"
fs_mount s.raw "$T/mnt" --format raw
ok "raw image mounted" is_mounted "$T/mnt"
cat mnt/disk >/dev/null
ok_eq "$(seek_hole mnt/disk 0)" 4194304 "SEEK_HOLE after a full read: end of the first run"
fallocate -p -o 1048576 -l 1048576 mnt/disk
ok_eq "$(seek_hole mnt/disk 0)" 1048576 "a hole punched inside the remembered run is seen at once"
ok_eq "$(seek_data mnt/disk 1048576)" 2097152 "... and the data after it"
dd if=a.raw of=mnt/disk bs=64k count=1 seek=80 conv=notrunc status=none
ok_eq "$(seek_data mnt/disk 4194304)" 5242880 "data written into a hole is seen"
fs_umount "$T/mnt"
ok "raw file reads as expected after unmount" sh -c '
	cmp -s -n 65536 -i 0:5242880 a.raw s.raw &&
	[ "$(od -An -tx1 -j 1048576 -N 4 s.raw | tr -d " ")" = 00000000 ]'

done_testing
