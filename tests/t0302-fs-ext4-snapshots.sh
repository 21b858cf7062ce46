#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs with a real filesystem inside: mkfs.ext4 on disk, loop-mount it,
# write files, mkdir snapshots/s1 while mounted, change files, loop-mount
# snapshots/s1/disk read-only and find the old files, rmdir snapshots/s1 while
# everything is mounted, unmount all, `vdisk check` clean, `vdisk snapshot list`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
E=$T/ext4
S=$T/snap
mkdir -p "$E" "$S"
ok "create a 256 MiB image" mkimg "$IMG" 256M
ok "mount" fs_mount "$IMG" "$M"
ok "mkfs.ext4 on disk" quiet mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$M/disk"
ok "loop-mount disk" mount -o loop "$M/disk" "$E"
cleanup_fn umount -l "$E"
randfile "$T/f1" 3000000 11
randfile "$T/f2" 200000 12
ok "write files" sh -c "cp '$T/f1' '$E/f1' && cp '$T/f2' '$E/f2' && mkdir '$E/dir' && echo old >'$E/dir/note' && sync"
ok "mkdir snapshots/s1 while the ext4 is mounted" mkdir "$M/snapshots/s1"
ok_eq "$(ls "$M/snapshots")" s1 "snapshots/ lists s1"
ok_eq "$(ls "$M/snapshots/s1" | tr '\n' ' ')" "changed disk info " "s1 holds disk, info, changed"
ok "change files after the snapshot" sh -c "echo new >'$E/dir/note' && rm '$E/f2' && \
	dd if=/dev/urandom of='$E/f1' bs=64k count=8 conv=notrunc status=none && \
	cp '$T/f2' '$E/f3' && sync"
ok "loop-mount snapshots/s1/disk read-only" mount -o loop,ro,noload "$M/snapshots/s1/disk" "$S"
cleanup_fn umount -l "$S"
ok "the old f1 is in the snapshot" cmp -s "$S/f1" "$T/f1"
ok "the deleted f2 is in the snapshot" cmp -s "$S/f2" "$T/f2"
ok_eq "$(cat "$S/dir/note")" old "the old note is in the snapshot"
ok_fail "the new f3 is not in the snapshot" test -e "$S/f3"
ok_eq "$(cat "$E/dir/note")" new "the live disk has the new note"
ok_fail "f1 changed on the live disk" cmp -s "$E/f1" "$T/f1"
ok "snapshot disk is read-only" test "$(stat -c %a "$M/snapshots/s1/disk")" = 444
ok_fail "opening it for writing fails" sh -c "printf x | dd of='$M/snapshots/s1/disk' conv=notrunc status=none 2>/dev/null"
ok_fail "rmdir snapshots/s1 while its disk is loop-mounted: EBUSY" perr rmdir "$M/snapshots/s1"
ok "said busy" grep -qi "busy" "$T/perr"
ok "unmount the snapshot's ext4" umount "$S"
# The loop device may hold the file a moment longer.
for i in $(seq 50); do rmdir "$M/snapshots/s1" 2>/dev/null && break; sleep 0.1; done
ok_fail "rmdir snapshots/s1 while disk's ext4 stays mounted" test -e "$M/snapshots/s1"
ok_eq "$(ls "$M/snapshots" | wc -l)" 0 "snapshots/ is empty again"
ok_eq "$(cat "$E/dir/note")" new "the live ext4 is unharmed"
ok "mkdir snapshots/s2" mkdir "$M/snapshots/s2"
ok "write after s2" sh -c "echo newer >'$E/dir/note' && sync"
ok "unmount the live ext4" umount "$E"
ok "e2fsck of the live disk is clean" quiet e2fsck -fn "$M/disk"
ok "e2fsck of snapshots/s2/disk is clean" quiet e2fsck -fn "$M/snapshots/s2/disk"
ok "unmount vdiskfs" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
ok "vdisk snapshot list shows s2 only" sh -c "'$VDISK' snapshot list '$IMG' >'$T/list' 2>&1 && \
	grep -qw s2 '$T/list' && ! grep -qw s1 '$T/list'"
ok "remount" fs_mount "$IMG" "$M"
ok_eq "$(ls "$M/snapshots")" s2 "s2 is still there after remount"
ok "loop-mount disk again" mount -o loop "$M/disk" "$E"
ok_eq "$(cat "$E/dir/note")" newer "the newest note survived"
ok "f3 survived" cmp -s "$E/f3" "$T/f2"
ok "umount" umount "$E"
ok "unmount vdiskfs" fs_umount "$M"
done_testing
