#!/bin/sh
# SPDX-License-Identifier: MIT
# An encrypted image mounted with vdiskfs: wrong passphrase mounts nothing;
# mkfs.ext4 on MOUNTPOINT/disk, a loop mount of it, files written and read back
# across a remount; the image file never holds the plaintext; a tampered block
# is EIO through the mount while the rest of the disk reads; --key-fd works.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

cd "$T" || exit 1
PW="--pwhash-ops 1 --pwhash-mem 8K"
ENTRIES="perl $SRCDIR/tests/vdk-entries.pl"
IMG=$T/secret.vdk
M=$T/mnt
L=$T/loop
printf 'mount passphrase\n' >key
printf 'not it\n' >bad
mkdir -p "$L"

ok "create a 64 MiB encrypted image" $VDISK --key-file key create --encrypt $PW -s 64M "$IMG"

# Wrong passphrase: the error, exit 1, no mount left behind.
mkdir -p "$M"
"$VDISKFS" --key-file bad "$IMG" "$M" 2>err
ok_eq "$?" 1 "wrong passphrase: vdiskfs exits 1"
ok "wrong passphrase: message" grep -q 'secret.vdk: wrong passphrase' err
ok_fail "wrong passphrase: nothing mounted" is_mounted "$M"

ok "mount with --key-file" fs_mount "$IMG" "$M" --key-file "$T/key"
ok "mkfs.ext4 on the encrypted disk" mkfs.ext4 -q -F -E nodiscard "$M/disk"
ok "loop mount" mount -o loop "$M/disk" "$L"
cleanup_fn umount -l "$L"
perl -e 'for $i (0..99999) { printf "SECRET-LINE-%08d\n", $i }' >plain.txt
ok "write a file on ext4" cp plain.txt "$L/plain.txt"
ok "write a random file" sh -c "head -c 3000000 /dev/urandom >'$L/r.bin' && cp '$L/r.bin' r.bin"
ok "sync" sync
ok "loop umount" umount "$L"
ok "fuse umount" fs_umount "$M"
ok "no plaintext in the image" sh -c "! grep -q -a 'SECRET-LINE' '$IMG'"
ok "vdisk check: clean after the filesystem work" sh -c "$VDISK --key-file key check '$IMG' >/dev/null"

# Remount with the key on a file descriptor, loop mount again, read back.
"$VDISKFS" -f --key-fd 5 "$IMG" "$M" 5<"$T/key" 2>>"$T/vdiskfs.log" &
FS_PID=$!
cleanup_fn fs_cleanup_one "$M" "$FS_PID"
ok "remount with --key-fd" wait_mounted "$M"
ok "loop mount again" mount -o loop,ro "$M/disk" "$L"
ok "text file intact" cmp -s plain.txt "$L/plain.txt"
ok "random file intact" cmp -s r.bin "$L/r.bin"
ok "loop umount" umount "$L"
ok "fuse umount" fusermount3 -u "$M"
wait "$FS_PID" 2>/dev/null

# The passphrase typed on a terminal (a pty from script(1)): asked before vdiskfs
# daemonizes, not echoed; a wrong one mounts nothing.
(sleep 1; printf 'not it\n') | script -qec "'$VDISKFS' '$IMG' '$M'" /dev/null >tty.out 2>&1
ok_fail "terminal, wrong passphrase: nothing mounted" is_mounted "$M"
ok "terminal, wrong passphrase: said so" grep -q 'wrong passphrase' tty.out
(sleep 1; printf 'mount passphrase\n') | script -qec "'$VDISKFS' '$IMG' '$M'" /dev/null >tty.out 2>&1
cleanup_fn fusermount3 -uz "$M"
ok "terminal: prompted for the passphrase" grep -q 'Passphrase for' tty.out
ok "terminal: mounted in the background" wait_mounted "$M"
ok "terminal: the passphrase was not echoed" sh -c "! grep -q 'mount passphrase' tty.out"
ok "terminal: the disk reads" dd if="$M/disk" of=/dev/null bs=1M count=4 status=none
ok "terminal: unmount" fusermount3 -u "$M"
for _i in $(seq 50); do pgrep -f "vdiskfs $IMG" >/dev/null || break; sleep 0.1; done

# A tampered block: EIO for it through the mount, the rest reads.
# (Past the first MiB, which the last step reads whole.)
vb=$($ENTRIES "$IMG" | awk '/^D/ && $2 >= 256 {print $2, $3; exit}')
ok "a data block past the first MiB to tamper with ($vb)" test -n "$vb"
set -- $vb
off=$(($2 + 123))
perl -e 'open F, "+<:raw", $ARGV[0] or die; seek F, $ARGV[1], 0; read F, $c, 1;
	seek F, $ARGV[1], 0; print F chr(ord($c) ^ 1)' "$IMG" "$off"
ok "mount the tampered image read-only" fs_mount "$IMG" "$M" --key-file "$T/key" -o ro
ok_fail "the tampered block is an I/O error" sh -c \
	"dd if='$M/disk' of=/dev/null bs=4096 skip=$1 count=1 iflag=direct status=none 2>/dev/null"
ok "the block before it reads" dd if="$M/disk" of=/dev/null bs=4096 skip=$(($1 - 1)) count=1 \
	iflag=direct status=none
ok "the block after it reads" dd if="$M/disk" of=/dev/null bs=4096 skip=$(($1 + 1)) count=1 \
	iflag=direct status=none
ok "the first MiB reads" dd if="$M/disk" of=/dev/null bs=1M count=1 iflag=direct status=none
ok "fuse umount" fs_umount "$M"

done_testing
