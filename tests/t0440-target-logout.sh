#!/bin/sh
# SPDX-License-Identifier: MIT
# Logout right behind a burst of commands (tools/target/iscsi-peer.pl sends
# them back to back, then the Logout, without waiting for any answer). RFC 7143
# 4.2.2.1: a non-immediate Logout takes its turn by CmdSN, so every command
# before it is answered first, including those that run on the worker threads
# (WRITE and READ of 2 MiB on a tmpfs LUN, 1 MiB on a vdiskfs mount). 11.14 and
# 7.14: an immediate Logout, and any Logout for commands still waiting for
# Data-Out, terminates them: no answer, and nothing at all after the Logout
# Response. In every case the backing file holds each write answered GOOD (and
# a terminated one whole or not at all, never after the Logout Response: the
# target waits for its workers), and the daemon keeps serving.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq perl fusermount3
requires test -c /dev/fuse

IMG=$T/img.vdk
M=$T/mnt
P1=$(free_port)
truncate -s 64M "$T/disk"
ok "create a 64 MiB native image" mkimg "$IMG" 64M
ok "mount it" fs_mount "$IMG" "$M"
cat >"$T/conf" <<EOT
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/disk
lun 1 = $M/disk
EOT
ok "export a tmpfs file and MOUNT/disk" start_target --config "$T/conf"
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"
alive() {
	iscsi-inq "$(lun_url 127.0.0.1 "$P1" "${1:-0}")" >/dev/null 2>&1
}

# check_writes FILE OUT SIZE LBA ORIG: for each "good I" line of the peer's
# output, FILE holds command I's pattern (the 32-bit number I+1 repeated); a
# "terminated I" range holds that pattern or ORIG's bytes (whole, not torn).
check_writes() {
	perl -e '
		my ($file, $out, $size, $lba, $orig) = @ARGV;
		open(my $f, "<", $file) or die "$file: $!\n";
		open(my $o, "<", $orig) or die "$orig: $!\n";
		open(my $r, "<", $out) or die "$out: $!\n";
		my ($n, $bad) = (0, 0);
		while (<$r>) {
			next unless /^(good|terminated) (\d+)$/;
			my $off = $lba * 512 + $2 * $size;
			seek($f, $off, 0); read($f, my $got, $size);
			seek($o, $off, 0); read($o, my $old, $size);
			my $want = pack("N", $2 + 1) x ($size / 4);
			$n++;
			next if $got eq $want || ($1 eq "terminated" && $got eq $old);
			print STDERR "# command $2 ($1): wrong data at $off\n";
			$bad++;
		}
		exit($bad || !$n);
	' "$@"
}

# run NAME LUN FILE KIND COUNT SIZE LBA IMM: one burst + Logout; checks writes
run() {
	_rn=$1 _lun=$2 _file=$3
	shift 3
	cp "$_file" "$T/orig"
	PEER_LUN=$_lun $PEER logout-burst "$@" >"$T/out" 2>"$T/err"
	_st=$?
	sed 's/^/# /' "$T/err"
	ok "$_rn: $(grep -c '^good' "$T/out") GOOD, $(grep -c '^terminated' "$T/out") terminated, Logout Response last, connection closed" test $_st = 0
	case $1 in
	write) ok "$_rn: the LUN holds every write answered GOOD" \
		check_writes "$_file" "$T/out" "$3" "$4" "$T/orig" ;;
	r2t) ok "$_rn: nothing written" cmp -s "$_file" "$T/orig" ;;
	esac
	ok "$_rn: daemon still serves" alive "$_lun"
}

# tmpfs LUN: up to 1 MiB runs on the event loop, 2 MiB on the workers
run "4 WRITEs of 256 KiB, Logout" 0 "$T/disk" write 4 262144 0 0
run "4 WRITEs of 2 MiB (workers), Logout" 0 "$T/disk" write 4 2097152 2048 0
ok "... all four answered GOOD before the Logout Response" test "$(grep -c '^good' "$T/out")" = 4
run "8 READs of 2 MiB (workers), Logout" 0 "$T/disk" read 8 2097152 0 0
ok "... all eight answered GOOD with their data" test "$(grep -c '^good' "$T/out")" = 8
run "4 WRITEs of 2 MiB, immediate Logout" 0 "$T/disk" write 4 2097152 32768 1
run "8 READs of 2 MiB, immediate Logout" 0 "$T/disk" read 8 2097152 0 1
run "4 WRITEs waiting for Data-Out (R2T), Logout" 0 "$T/disk" r2t 4 262144 65536 0
ok "... terminated, none answered" test "$(grep -c '^terminated' "$T/out")" = 4
run "4 WRITEs waiting for Data-Out (R2T), immediate Logout" 0 "$T/disk" r2t 4 262144 65536 1

# vdiskfs LUN: every command goes through a worker and FUSE
run "vdiskfs: 8 READs of 1 MiB, Logout" 1 "$M/disk" read 8 1048576 0 0
ok "... all eight answered GOOD with their data" test "$(grep -c '^good' "$T/out")" = 8
run "vdiskfs: 4 WRITEs of 1 MiB, Logout" 1 "$M/disk" write 4 1048576 4096 0
ok "... all four answered GOOD before the Logout Response" test "$(grep -c '^good' "$T/out")" = 4
run "vdiskfs: 4 WRITEs of 1 MiB, immediate Logout" 1 "$M/disk" write 4 1048576 16384 1

ok "stop the target" stop_target
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
