#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs: data written into MOUNTPOINT/disk (dd, fio --verify) survives an
# unmount and a remount; holes (SEEK_DATA/SEEK_HOLE, punch, zero range,
# cp --sparse), fsync, statfs, fixed size, -o ro.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
ok "create a 256 MiB image" mkimg "$IMG" 256M
ok "mount" fs_mount "$IMG" "$M"
ok_eq "$(ls "$M" | tr '\n' ' ')" "disk partitions snapshots " "top-level entries"
ok_eq "$(stat -c %s "$M/disk")" 268435456 "disk has the virtual size"

# dd: unaligned offsets and sizes, three regions.
randfile "$T/a" 3000000 1
randfile "$T/b" 1048576 2
randfile "$T/c" 5000 3
ok "dd region a (unaligned)" dd if="$T/a" of="$M/disk" bs=1000 seek=3145 conv=notrunc status=none
ok "dd region b (1 MiB at 100 MiB)" dd if="$T/b" of="$M/disk" bs=1M seek=100 conv=notrunc,fsync status=none
ok "dd region c (last 5000 bytes)" dd if="$T/c" of="$M/disk" bs=5000 \
	seek=$((268435456 - 5000)) oflag=seek_bytes conv=notrunc status=none
ok "region a reads back" same_region "$M/disk" 3145000 3000000 "$T/a"
ok "region b reads back" same_region "$M/disk" 104857600 1048576 "$T/b"
ok "region c reads back (end of disk)" same_region "$M/disk" $((268435456 - 5000)) 5000 "$T/c"
ok "untouched space reads as zeroes" is_zero "$M/disk" 50000000 1000000

# fio with verification: random 4 KiB direct, sequential 1 MiB buffered, 4 jobs.
FIO="fio --output=$T/fio.out --minimal"
ok "fio randwrite 4k O_DIRECT --verify" $FIO --name=r --filename="$M/disk" --rw=randwrite --bs=4k \
	--offset=128M --size=32M --direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	--randrepeat=1 --randseed=42
ok "fio write 1M buffered --verify" $FIO --name=s --filename="$M/disk" --rw=write --bs=1M \
	--offset=160M --size=32M --verify=md5 --verify_fatal=1 --verify_state_save=0
ok "fio 4 jobs randrw --verify" $FIO --name=j --filename="$M/disk" --rw=randwrite --bs=16k \
	--offset=192M --size=8M --offset_increment=8M --numjobs=4 --direct=1 --verify=crc32c \
	--verify_fatal=1 --verify_state_save=0 --randseed=7
ok "fsync" sh -c "dd if='$T/b' of='$M/disk' bs=1M seek=200 conv=notrunc,fsync status=none"

# Fixed size: no growing, no shrinking.
ok_fail "write past the end fails" dd if="$T/c" of="$M/disk" bs=5000 oflag=seek_bytes \
	conv=notrunc seek=268435456 status=none 2>/dev/null
ok_fail "truncate to another size fails" perr truncate -s 1M "$M/disk"
ok "truncate to the same size is fine" truncate -s 268435456 "$M/disk"
ok_fail "open with O_TRUNC fails" perr dd if="$T/c" of="$M/disk" bs=5000 count=1 status=none
ok "... with EPERM" grep -q "not permitted" "$T/perr"
ok_eq "$(stat -c %s "$M/disk")" 268435456 "and the size is still 256 MiB"
# A write across the end: with the writeback cache the write() lands in the page
# cache, the write-back of the part past the end fails, fsync says so (ENOSPC),
# and the part inside the disk is written.
# (Its first half is what region c holds there already.)
{ tail -c 4096 "$T/c"; head -c 4096 "$T/b"; } >"$T/x"
ok_fail "a write across the end fails (at write() or at fsync)" perr dd if="$T/x" \
	of="$M/disk" bs=8192 count=1 oflag=seek_bytes seek=268431360 conv=notrunc,fsync status=none
ok "... with ENOSPC" grep -q "No space" "$T/perr"
ok "the part inside the disk is written" cmp -n 4096 "$T/x" "$M/disk" 0 268431360
ok_eq "$(stat -c %s "$M/disk")" 268435456 "once closed, disk has its size again"

# statfs is the host filesystem's.
ok_eq "$(stat -f -c '%b %S' "$M")" "$(stat -f -c '%b %S' "$T")" "statfs tells the host's size"

ok "unmount (daemon exits 0)" fs_umount "$M"
ok "remount" fs_mount "$IMG" "$M"
ok "region a after remount" same_region "$M/disk" 3145000 3000000 "$T/a"
ok "region b after remount" same_region "$M/disk" 104857600 1048576 "$T/b"
ok "region c after remount" same_region "$M/disk" $((268435456 - 5000)) 5000 "$T/c"
ok "fio verify-only after remount (4k random)" $FIO --name=r --filename="$M/disk" --rw=randwrite \
	--bs=4k --offset=128M --size=32M --direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
	--randrepeat=1 --randseed=42 --verify_only
ok "fio verify-only after remount (1M sequential)" $FIO --name=s --filename="$M/disk" --rw=write \
	--bs=1M --offset=160M --size=32M --verify=md5 --verify_fatal=1 --verify_state_save=0 --verify_only

# Holes. Nothing was written in [64M, 100M): SEEK_DATA from 64M lands on region b.
d=$(seek_data "$M/disk" 67108864)
ok "SEEK_DATA skips the hole up to region b ($d)" test "$d" -gt 67108864 -a "$d" -le 104857600
h=$(seek_hole "$M/disk" 104857600)
ok "SEEK_HOLE finds the end of region b ($h)" test "$h" -ge 105906176 -a "$h" -le 134217728
d=$(seek_data "$M/disk" 260000000)
ok "SEEK_DATA near the end finds region c ($d)" test "$d" -gt 260000000 -a "$d" -le $((268435456 - 5000))
ok_eq "$(seek_hole "$M/disk" 268435456)" ENXIO "SEEK_HOLE at the size is ENXIO"
ok "punch a hole in region b" fallocate -p -o 104857600 -l 524288 "$M/disk"
ok "the punched range reads zeroes" is_zero "$M/disk" 104857600 524288
ok "the rest of region b is intact" same_region "$M/disk" 105381888 524288 "$T/b" 524288
d=$(seek_data "$M/disk" 104857600)
ok "SEEK_DATA skips the punched hole ($d)" test "$d" -ge 105381888
ok "zero range in region a" fallocate -z -o 3200000 -l 100000 "$M/disk"
ok "the zeroed range reads zeroes" is_zero "$M/disk" 3200000 100000
ok "before it region a is intact" same_region "$M/disk" 3145000 55000 "$T/a"
ok "after it region a is intact" same_region "$M/disk" 3300000 100000 "$T/a" 155000
ok "cp --sparse=always of disk" cp --sparse=always "$M/disk" "$T/copy"
ok "the copy is identical" cmp -s "$M/disk" "$T/copy"
used=$(du -k "$T/copy" | cut -f1)
ok "the copy stays sparse (${used} KiB used of 262144)" test "$used" -lt 150000
ok "unmount" fs_umount "$M"

# Read-only mount.
ok "mount -o ro" fs_mount "$IMG" "$M" -o ro
ok "disk is read-only (mode)" test "$(stat -c %a "$M/disk")" = 444
ok_fail "writing fails" sh -c "printf x | dd of='$M/disk' conv=notrunc status=none 2>/dev/null"
ok_fail "mkdir snapshots/x fails" perr mkdir "$M/snapshots/x"
ok "data readable read-only" same_region "$M/disk" 3145000 55000 "$T/a"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
