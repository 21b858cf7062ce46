#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs partitions/: a GPT of three partitions made with sgdisk through the
# mount shows p1..p3 with the right sizes and windows; an MBR with an
# extended partition shows its logical partitions as p5, p6; garbage shows none.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
S=512
ok "create a 128 MiB image" mkimg "$IMG" 128M
ok "mount" fs_mount "$IMG" "$M"
ok_eq "$(ls "$M/partitions" | wc -l)" 0 "an empty disk has no partitions"
ok "sgdisk: three partitions on disk" quiet sgdisk -n1:2048:+10M -n2:0:+33M -n3:0:0 "$M/disk"
sgdisk -p "$M/disk" >"$T/sgdisk.out"
ok_eq "$(ls "$M/partitions" | tr '\n' ' ')" "p1 p2 p3 " "partitions/ shows p1 p2 p3"
# Sizes and starts as sgdisk reports them (start and end sectors, inclusive).
for n in 1 2 3; do
	set -- $(awk -v n=$n '$1 == n { print $2, $3 }' "$T/sgdisk.out")
	ok_eq "$(stat -c %s "$M/partitions/p$n")" $((($2 - $1 + 1) * S)) "p$n size"
	eval "start$n=$(($1 * S))"
done
ok_eq "$(stat -c %s "$M/partitions/p1")" 10485760 "p1 is 10 MiB"
ok_eq "$(stat -c %s "$M/partitions/p2")" 34603008 "p2 is 33 MiB"

# A window onto disk: write through p2, read through disk and the other way.
randfile "$T/r" 70000 5
ok "write into p2" dd if="$T/r" of="$M/partitions/p2" bs=70000 seek=3 conv=notrunc,fsync status=none
ok "disk shows it at p2's start" same_region "$M/disk" $((start2 + 210000)) 70000 "$T/r"
randfile "$T/q" 4096 6
ok "write into disk at p3's start" dd if="$T/q" of="$M/disk" bs=4096 seek=$((start3 / 4096)) \
	conv=notrunc status=none
ok "p3 shows it" same_region "$M/partitions/p3" 0 4096 "$T/q"
# disk's page cache does not hide a write made through a partition: an fd of disk
# that stays open (no invalidation by a fresh open) sees it once p1 is closed.
randfile "$T/s" 65536 8
fd_read() {	# fd_read OFF LEN OUT: read through the already-open fd 9
	perl -e 'open(my $f, "<&=", 9) or die "fd 9: $!"; sysseek($f, $ARGV[0], 0) or die;
		my $b = ""; while (length($b) < $ARGV[1]) { my $n = sysread($f, $b, $ARGV[1] - length($b),
		length($b)); die "read: $!" unless $n; } open(my $o, ">", $ARGV[2]) or die; print $o $b' "$@"
}
exec 9<"$M/disk"
fd_read $((start1 + 65536)) 65536 "$T/before"	# now in disk's page cache
ok "write into p1 (a cached range of disk)" dd if="$T/s" of="$M/partitions/p1" bs=64k seek=1 \
	conv=notrunc status=none
fd_read $((start1 + 65536)) 65536 "$T/after"
ok "the open disk fd sees the new bytes" cmp -s "$T/after" "$T/s"
exec 9<&-
ok_fail "p1 cannot grow" perr dd if="$T/q" of="$M/partitions/p1" bs=4096 seek=2560 conv=notrunc status=none
ok "unmount" fs_umount "$M"
ok "remount" fs_mount "$IMG" "$M"
ok_eq "$(ls "$M/partitions" | tr '\n' ' ')" "p1 p2 p3 " "after remount: p1 p2 p3"
ok "p2 data after remount" same_region "$M/partitions/p2" 210000 70000 "$T/r"

# MBR: primary 1 (1 MiB..9 MiB), extended 2 (16 MiB..64 MiB) with two logicals.
perl -e '
	sub ent { my ($boot, $type, $start, $count) = @_;
		return pack("C C3 C C3 V V", $boot, 0, 0, 0, $type, 0, 0, 0, $start, $count) }
	open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!";
	binmode $f;
	my $mbr = "\0" x 446 . ent(0x80, 0x83, 2048, 16384) . ent(0, 0x05, 32768, 98304)
		. ent(0, 0, 0, 0) . ent(0, 0, 0, 0) . "\x55\xaa";
	seek($f, 0, 0); print $f $mbr;
	# First EBR at the start of the extended partition: logical of 4 MiB at +2048,
	# next EBR at +16384 (relative to the extended start).
	my $ebr1 = "\0" x 446 . ent(0, 0x83, 2048, 8192) . ent(0, 0x05, 16384, 20480)
		. "\0" x 32 . "\x55\xaa";
	seek($f, 32768 * 512, 0); print $f $ebr1;
	my $ebr2 = "\0" x 446 . ent(0, 0x83, 2048, 10240) . "\0" x 48 . "\x55\xaa";
	seek($f, (32768 + 16384) * 512, 0); print $f $ebr2;
	# Wipe both GPT headers so the MBR is what counts.
	seek($f, 512, 0); print $f "\0" x 512;
	my $end = (stat($f))[7]; seek($f, $end - 512, 0); print $f "\0" x 512;
	close($f) or die;
' "$M/disk"
ok_eq "$(ls "$M/partitions" | tr '\n' ' ')" "p1 p5 p6 " "MBR: p1 and logicals p5 p6"
ok_eq "$(stat -c %s "$M/partitions/p1")" $((16384 * S)) "MBR p1 size"
ok_eq "$(stat -c %s "$M/partitions/p5")" $((8192 * S)) "MBR p5 size"
ok_eq "$(stat -c %s "$M/partitions/p6")" $((10240 * S)) "MBR p6 size"
randfile "$T/l" 8192 7
ok "write at p6's start through disk" dd if="$T/l" of="$M/disk" bs=512 \
	seek=$((32768 + 16384 + 2048)) conv=notrunc status=none
ok "p6 shows it" same_region "$M/partitions/p6" 0 8192 "$T/l"

# A loop in the EBR chain and garbage tables give no partitions, never a hang.
perl -e 'open(my $f, "+<", $ARGV[0]) or die; seek($f, (32768 + 16384) * 512 + 462, 0);
	print $f pack("C C3 C C3 V V", 0, 0, 0, 0, 5, 0, 0, 0, 0, 100)' "$M/disk"
ok "an EBR chain that points back is cut" sh -c "ls '$M/partitions' >/dev/null"
dd if=/dev/urandom of="$M/disk" bs=64K count=1 conv=notrunc status=none
ok "garbage in the first sectors: listing still works" sh -c "ls '$M/partitions' >/dev/null"
ok "unmount" fs_umount "$M"
done_testing
