#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs with the kernel's writeback cache on disk: writes that returned but
# were never fsync'd or closed are still in every snapshot taken after them,
# visible through partitions/pN, and seen by SEEK_DATA; a write through a
# partition is seen through an fd of disk that stays open; -o writethrough
# works; the mount's readahead is 4 MiB and its share of the dirty limit 10 %
# (1 % with -o writethrough, the kernel's FUSE default).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
ok "create a 64 MiB image" mkimg "$IMG" 64M
ok "mount" fs_mount "$IMG" "$M"

# A writer that keeps disk open (no close, no fsync) around a mkdir.
perl -e '
	my ($disk, $snap) = @ARGV;
	open(my $f, "+<", $disk) or die "$disk: $!";
	sysseek($f, 0, 0); syswrite($f, "A" x 65536) == 65536 or die "write A: $!";
	sysseek($f, 1048576 + 100, 0); syswrite($f, "B" x 3000) == 3000 or die "write B: $!";
	sysseek($f, 33554432, 0); syswrite($f, "D" x 8192) == 8192 or die "write D: $!";
	# SEEK_DATA sees the dirty pages (the kernel does not write back before FUSE_LSEEK).
	my $d = sysseek($f, 16777216, 3);
	open(my $o, ">", "$ENV{T}/seek") or die; print $o (defined $d ? $d + 0 : "none");
	close($o);
	mkdir($snap) or die "mkdir $snap: $!";
	sysseek($f, 0, 0); syswrite($f, "C" x 65536) == 65536 or die "write C: $!";
	sleep 1;	# still open: C is only in the page cache while the checks below run
	close($f) or die "close: $!";
' "$M/disk" "$M/snapshots/s1" &
wpid=$!
sleep 0.5
perl -e 'print "A" x 65536' >"$T/A"
perl -e 'print "B" x 3000' >"$T/B"
perl -e 'print "C" x 65536' >"$T/C"
perl -e 'print "D" x 8192' >"$T/D"
ok "the writer finished" wait "$wpid"
ok_eq "$(cat "$T/seek")" 33554432 "SEEK_DATA from 16 MiB finds a write not yet written back"
ok "snapshot s1 has the unsynced write made before it" same_region "$M/snapshots/s1/disk" 0 65536 "$T/A"
ok "and the partial-page one" same_region "$M/snapshots/s1/disk" 1048676 3000 "$T/B"
ok "and not the one made after it" is_zero "$M/snapshots/s1/disk" 1048576 100
ok "disk has the newer write" same_region "$M/disk" 0 65536 "$T/C"

# Partitions: a GPT, then a writer holding disk open writes into p1's range.
ok "sgdisk: one partition" quiet sgdisk -n1:2048:+16M "$M/disk"
ok_eq "$(ls "$M/partitions" | tr '\n' ' ')" "p1 " "partitions/ shows p1"
start=$((2048 * 512))
randfile "$T/x" 65536 21
randfile "$T/y" 65536 22
perl -e '
	my ($disk, $p1, $start, $x, $y, $out1, $out2) = @ARGV;
	sub slurp { open(my $h, "<", $_[0]) or die "$_[0]: $!"; local $/; my $b = <$h>; $b }
	sub rd { my ($h, $off, $len) = @_; sysseek($h, $off, 0) or die; my $b = "";
		while (length($b) < $len) { my $n = sysread($h, $b, $len - length($b), length($b));
			die "read: $!" unless $n; } $b }
	sub spit { open(my $h, ">", $_[0]) or die; print $h $_[1]; close($h) }
	open(my $d, "+<", $disk) or die "$disk: $!";
	open(my $p, "+<", $p1) or die "$p1: $!";
	# disk -> p1: a write still in disk page cache is read through p1.
	sysseek($d, $start + 65536, 0); syswrite($d, slurp($x)) == 65536 or die "write x: $!";
	spit($out1, rd($p, 65536, 65536));
	# p1 -> disk: cache that range of disk, write it through p1, read it again
	# through the same open fd of disk (nothing closed in between).
	rd($d, $start + 131072, 65536);
	sysseek($p, 131072, 0); syswrite($p, slurp($y)) == 65536 or die "write y: $!";
	spit($out2, rd($d, $start + 131072, 65536));
	close($p) or die; close($d) or die;
' "$M/disk" "$M/partitions/p1" "$start" "$T/x" "$T/y" "$T/out1" "$T/out2"
ok "p1 shows a write to disk not yet written back" cmp -s "$T/out1" "$T/x"
ok "an open fd of disk shows a write made through p1" cmp -s "$T/out2" "$T/y"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"

ok "mount -o writethrough" fs_mount "$IMG" "$M" -o writethrough
ok "the data is there" same_region "$M/disk" 17408 48128 "$T/C" 17408
ok "write through the write-through mount" dd if="$T/y" of="$M/disk" bs=64k seek=100 \
	conv=notrunc status=none
ok "snapshot s2" mkdir "$M/snapshots/s2"
ok "s2 has it" same_region "$M/snapshots/s2/disk" 6553600 65536 "$T/y"
ok_eq "$(cat "/sys/class/bdi/$(mountpoint -d "$M")/max_ratio")" 1 \
	"-o writethrough: the dirty share stays the kernel's 1 %"
ok "unmount" fs_umount "$M"

ok "mount again" fs_mount "$IMG" "$M"
head -c 4096 "$M/disk" >/dev/null
dev=$(mountpoint -d "$M")
ok_eq "$(cat "/sys/class/bdi/$dev/read_ahead_kb")" 4096 "readahead of the mount is 4 MiB"
ok_eq "$(cat "/sys/class/bdi/$dev/max_ratio")" 10 "its share of the dirty limit is 10 %"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
ok_eq "$("$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { printf "%s ", $2 }')" "s1 s2 " \
	"vdisk snapshot list: s1 s2"
done_testing
