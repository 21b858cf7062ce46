#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs snapshot folders: info (size, created, parent, allocated), changed
# (the ranges written since the snapshot before), mtime = creation time,
# names checked, EEXIST, rmdir EBUSY while a file is open, deletion merges
# into the child (whose "changed" grows), `vdisk snapshot list` agrees.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
K=65536
ok "create a 64 MiB image, 64 KiB blocks" mkimg "$IMG" 64M --block-size 64K
ok "mount" fs_mount "$IMG" "$M"
randfile "$T/x" 262144 51
dd if="$T/x" of="$M/disk" bs=64k count=1 seek=16 conv=notrunc status=none	# 1 MiB
dd if="$T/x" of="$M/disk" bs=100 count=1 seek=10485770 oflag=seek_bytes conv=notrunc status=none
t0=$(date +%s)
ok "mkdir snapshots/s1" mkdir "$M/snapshots/s1"
t1=$(date +%s)
dd if="$T/x" of="$M/disk" bs=128k count=1 seek=16 conv=notrunc status=none	# 2 MiB
ok "mkdir snapshots/s2" mkdir "$M/snapshots/s2"
dd if="$T/x" of="$M/disk" bs=64k count=1 seek=48 conv=notrunc status=none	# 3 MiB, top only

ok_eq "$(cat "$M/snapshots/s1/changed" | tr '\n' ,)" "1048576 65536,10485760 65536," "s1/changed"
ok_eq "$(cat "$M/snapshots/s2/changed" | tr '\n' ,)" "2097152 131072," "s2/changed"
ok_eq "$(stat -c %s "$M/snapshots/s2/changed")" 15 "changed: st_size matches its text"
ok_eq "$(grep '^parent:' "$M/snapshots/s2/info")" "parent: s1" "s2 info: parent s1"
ok_eq "$(grep '^parent:' "$M/snapshots/s1/info")" "parent: -" "s1 info: no parent"
ok_eq "$(grep '^size:' "$M/snapshots/s1/info")" "size: 67108864" "info: size"
ok_eq "$(grep '^allocated:' "$M/snapshots/s2/info")" "allocated: 131072" "s2 info: allocated"
ok_eq "$(grep '^name:' "$M/snapshots/s1/info")" "name: s1" "info: name"
c=$(sed -n 's/^created: //p' "$M/snapshots/s1/info")
ok "info: created ($c) is when mkdir ran" test "$c" -ge "$t0" -a "$c" -le "$t1"
ok_eq "$(stat -c %Y "$M/snapshots/s1")" "$c" "folder mtime = created"
ok_eq "$(stat -c %Y "$M/snapshots/s1/disk")" "$c" "disk mtime = created"
ok_eq "$(stat -c %s "$M/snapshots/s1/disk")" 67108864 "snapshot disk size"
ok "s1/disk has the 1 MiB data" same_region "$M/snapshots/s1/disk" 1048576 65536 "$T/x"
ok "s1/disk is zero at 2 MiB" is_zero "$M/snapshots/s1/disk" 2097152 131072
ok "s2/disk has the 2 MiB data" same_region "$M/snapshots/s2/disk" 2097152 131072 "$T/x"
ok "s2/disk is zero at 3 MiB" is_zero "$M/snapshots/s2/disk" 3145728 65536
ok_eq "$(seek_data "$M/snapshots/s1/disk" 0)" 1048576 "SEEK_DATA on a snapshot disk"
ok_eq "$(seek_hole "$M/snapshots/s1/disk" 1048576)" 1114112 "SEEK_HOLE on a snapshot disk"
ok_eq "$(ls -U "$M/snapshots" | tr '\n' ' ')" "s1 s2 " "oldest first"
ok_eq "$("$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { printf "%s ", $2 }')" "s1 s2 " \
	"vdisk snapshot list agrees while mounted"

ok_fail "mkdir an existing name" perr mkdir "$M/snapshots/s1"
ok "EEXIST" grep -q "exists" "$T/perr"
ok_fail "mkdir .hidden is refused" perr mkdir "$M/snapshots/.hidden"
ok_fail "mkdir -x is refused" perr mkdir -- "$M/snapshots/-x"
ok_fail "mkdir outside snapshots/" perr mkdir "$M/foo"
ok_fail "mkdir inside a snapshot folder" perr mkdir "$M/snapshots/s1/x"
ok_fail "rm of a snapshot file" perr rm -f "$M/snapshots/s1/info"

exec 8<"$M/snapshots/s1/info"
ok_fail "rmdir while s1/info is open" perr rmdir "$M/snapshots/s1"
ok "EBUSY" grep -qi "busy" "$T/perr"
exec 8<&-
sleep 0.2	# release is asynchronous
ok "rmdir s1 once closed" rmdir "$M/snapshots/s1"
ok_eq "$(ls -U "$M/snapshots" | tr '\n' ' ')" "s2 " "s2 is left"
ok_eq "$("$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { printf "%s ", $2 }')" "s2 " \
	"vdisk snapshot list agrees after rmdir, while mounted"
ok_eq "$(cat "$M/snapshots/s2/changed" | tr '\n' ,)" "1048576 65536,2097152 131072,10485760 65536," \
	"s2/changed now holds s1's blocks too"
ok_eq "$(grep '^parent:' "$M/snapshots/s2/info")" "parent: -" "s2 has no parent now"
ok "s2/disk still has the 1 MiB data" same_region "$M/snapshots/s2/disk" 1048576 65536 "$T/x"
ok "disk has the 3 MiB data" same_region "$M/disk" 3145728 65536 "$T/x"
ok_fail "rmdir of a missing snapshot" perr rmdir "$M/snapshots/nope"
ok "unmount" fs_umount "$M"
"$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { print $2 }' >"$T/list"
ok_eq "$(cat "$T/list")" s2 "vdisk snapshot list agrees"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
