#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs: errors seen before the mount are printed as "vdiskfs: IMAGE: ..."
# with a non-zero exit before daemonizing (missing, not an image, locked,
# wrong passphrase); read-only files mount read-only; the mount.fuse3 route
# that /etc/fstab uses works; daemonized mode; usage errors.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
mkdir -p "$M"
mkimg "$IMG" 64M

# Missing file: message names the image, non-zero, nothing mounted (daemonizing mode).
perr "$VDISKFS" "$T/nope.vdk" "$M"
ok_eq "$?" 1 "missing image: exit 1"
ok "missing image: message" grep -q "^vdiskfs: $T/nope.vdk: .*No such file" "$T/perr"
ok_fail "missing image: not mounted" is_mounted "$M"

# Usage.
perr "$VDISKFS" "$IMG"
ok_eq "$?" 1 "no mountpoint: exit 1"
ok "no mountpoint: usage" grep -q "usage: vdiskfs" "$T/perr"
ok "--help" sh -c "'$VDISKFS' --help | grep -q 'fuse.vdiskfs'"

# A corrupt native header: refused, whatever the layout, when both header copies are gone.
cp "$IMG" "$T/bad.vdk"
perl -e 'open(my $f, "+<", $ARGV[0]) or die; for my $o (8, 4096+8, 65536+8) { seek($f, $o, 0);
	print $f "\xde\xad\xbe\xef" x 8 }' "$T/bad.vdk"
perr timeout -k 5 20 "$VDISKFS" -f --format vdk "$T/bad.vdk" "$M"
ok_eq "$?" 1 "corrupt header: exit 1"
ok "corrupt header: message" grep -q "^vdiskfs: $T/bad.vdk: " "$T/perr"
ok_fail "corrupt header: not mounted" is_mounted "$M"

# Daemonized: returns once mounted; a second writer is refused with "locked".
ok "daemonized mount returns" "$VDISKFS" "$IMG" "$M"
ok "it is mounted" is_mounted "$M"
pid=$(daemon_pid "$M")
ok "daemon found ($pid)" test -n "$pid"
cleanup_fn fs_cleanup_one "$M" "$pid"
mkdir -p "$T/m2"
perr timeout -k 5 20 "$VDISKFS" -f "$IMG" "$T/m2"
ok_eq "$?" 1 "second writer: exit 1"
ok "second writer: says locked" grep -qi "lock\|in use" "$T/perr"
ok_fail "second writer: not mounted" is_mounted "$T/m2"
ok "unmount" fusermount3 -u "$M"
ok "daemon exits after the flush" wait_pid_gone "$pid"

# Relative paths, daemonized (the daemon chdirs to /), then SIGTERM: unmounts and exits 0.
ok "relative IMAGE and MOUNTPOINT" sh -c "cd '$T' && '$VDISKFS' img.vdk mnt"
pid=$(daemon_pid mnt)
cleanup_fn fs_cleanup_one "$M" "$pid"
ok "mounted ($pid)" is_mounted "$M"
ok "SIGTERM" kill -TERM "$pid"
ok "the daemon exits" wait_pid_gone "$pid"
ok_fail "and the mount is gone" is_mounted "$M"
perr "$VDISKFS" "$IMG" "$T/no-such-dir"
ok_eq "$?" 1 "missing mountpoint: exit 1"
ok "missing mountpoint: message" grep -q "^vdiskfs: $T/no-such-dir: No such file" "$T/perr"
ok "foreground, SIGHUP: exit 0" timeout 30 sh -c "'$VDISKFS' -f '$IMG' '$M' & p=\$!; \
	for i in \$(seq 100); do grep -q ' $M fuse' /proc/mounts && break; sleep 0.1; done; \
	kill -HUP \$p; wait \$p"
ok_fail "unmounted" is_mounted "$M"

# The /etc/fstab route: mount(8) runs mount.fuse3 IMAGE MNT -o rw -t fuse.vdiskfs,
# which runs `vdiskfs IMAGE MNT -o rw,dev,suid` from PATH.
ok "mount.fuse3 (as from fstab)" env PATH="$VDISK_BUILD:$PATH" /sbin/mount.fuse3 "$IMG" "$M" \
	-o rw,noatime -t fuse.vdiskfs
ok "mounted as fuse.vdiskfs" grep -q " $M fuse.vdiskfs " /proc/mounts
pid=$(daemon_pid "$M")
cleanup_fn fs_cleanup_one "$M" "$pid"
ok "writable through the fstab route" dd if=/dev/zero of="$M/disk" bs=4k count=1 conv=notrunc status=none
ok "unmount" fusermount3 -u "$M"
ok "daemon exits" wait_pid_gone "$pid"
ok "mount.fuse3 -o ro and fstab-only options" env PATH="$VDISK_BUILD:$PATH" /sbin/mount.fuse3 \
	"$IMG" "$M" -o ro,noauto,_netdev,defaults,comment=x -t fuse.vdiskfs
pid=$(daemon_pid "$M")
cleanup_fn fs_cleanup_one "$M" "$pid"
ok "mounted read-only" grep -q " $M fuse.vdiskfs ro," /proc/mounts
ok "unmount" fusermount3 -u "$M"
ok "daemon exits" wait_pid_gone "$pid"

# A file without write permission mounts read-only.
chmod 0444 "$IMG"
ok "mount a 0444 image" fs_mount "$IMG" "$M"
ok "said so" grep -q "read-only" "$T/vdiskfs.log"
ok_eq "$(stat -c %a "$M/disk")" 444 "disk is 0444"
ok_fail "write fails" sh -c "printf x | dd of='$M/disk' conv=notrunc status=none 2>/dev/null"
ok "unmount" fs_umount "$M"
chmod 0644 "$IMG"

# Encrypted image: wrong passphrase refused before the mount, right one mounts.
printf 'correct horse\n' >"$T/key"
printf 'wrong horse\n' >"$T/badkey"
ok "create an encrypted image" mkimg "$T/enc.vdk" 16M --encrypt --key-file "$T/key" \
	--pwhash-ops 1 --pwhash-mem 8M
perr "$VDISKFS" --key-file "$T/badkey" "$T/enc.vdk" "$M"
ok_eq "$?" 1 "wrong passphrase: exit 1"
ok "wrong passphrase: message" grep -q "^vdiskfs: $T/enc.vdk: .*passphrase" "$T/perr"
ok_fail "wrong passphrase: not mounted" is_mounted "$M"
perr "$VDISKFS" "$T/enc.vdk" "$M" </dev/null
ok_eq "$?" 1 "no passphrase and no terminal: exit 1"
ok "right passphrase (--key-file) mounts" fs_mount "$T/enc.vdk" "$M" --key-file "$T/key"
ok "write to the encrypted disk" dd if="$T/key" of="$M/disk" conv=notrunc,fsync status=none
ok "unmount" fs_umount "$M"
exec 7<"$T/key"
ok "right passphrase (-o key_fd=7) mounts" fs_mount "$T/enc.vdk" "$M" -o key_fd=7
exec 7<&-
ok "data is there" same_region "$M/disk" 0 14 "$T/key"
ok "unmount" fs_umount "$M"
# The connection aborted while a file is open (the kernel never sends its RELEASE,
# as when the daemon ends before a RELEASE still on its way): the daemon exits and
# frees the handle itself (in the sanitizer pass LeakSanitizer would fail its exit).
[ -d /sys/fs/fuse/connections ] && [ -e /sys/fs/fuse/connections/. ] &&
	! grep -q ' /sys/fs/fuse/connections ' /proc/mounts &&
	mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
ok "mount for the abort" fs_mount "$T/enc.vdk" "$M" --key-file "$T/key"
exec 7<"$M/disk"
ok "open disk and a snapshots file" sh -c "mkdir '$M/snapshots/s1' && cat '$M/snapshots/s1/info' >/dev/null"
exec 8<"$M/snapshots/s1/disk"
ok "abort the connection" sh -c "echo 1 >/sys/fs/fuse/connections/$(stat -c %d "$M")/abort"
wait "$FS_PID"
ok_eq "$?" 0 "the daemon exits cleanly with two handles never released"
exec 7<&- 8<&-
fusermount3 -uz "$M"
ok "the image is closed and clean" quiet "$VDISK" check --key-file "$T/key" "$T/enc.vdk"
done_testing
