#!/usr/bin/perl
# SPDX-License-Identifier: MIT
# A small, deliberately independent iSCSI initiator for the vdisk-target tests:
# it speaks just enough RFC 7143 (single-PDU login, SCSI commands with
# immediate data and R2T, NOP, Logout, CRC32C header and data digests) to
# check digests end to end and to misbehave on purpose.
#   iscsi-peer.pl HOST PORT TARGET SCENARIO [ARGS]
# (environment: PEER_INITIATOR, the initiator name; PEER_LUN, the LUN of the
# SCSI commands, 0 by default)
# Exit 0 when the scenario saw what it expected, 1 otherwise (message on stderr).
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

my ($host, $port, $target, $scenario, @args) = @ARGV;
die "usage: iscsi-peer.pl HOST PORT TARGET SCENARIO [ARGS]\n" unless $scenario;
my $INIT = $ENV{PEER_INITIATOR} // "iqn.2026-11.org.example:peer";
# the LUN of scsi_cmd and data_out (single level, below 256)
our $LUN = pack("C C x6", 0, $ENV{PEER_LUN} // 0);
$SIG{ALRM} = sub { die "timeout in scenario $scenario\n" };
alarm(60);

my @crctab;
for my $i (0 .. 255) {
	my $c = $i;
	for (1 .. 8) { $c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1); }
	$crctab[$i] = $c;
}
sub crc32c {
	my $crc = 0xFFFFFFFF;
	for my $b (unpack("C*", $_[0])) { $crc = $crctab[($crc ^ $b) & 0xFF] ^ ($crc >> 8); }
	return pack("V", $crc ^ 0xFFFFFFFF);
}

my ($hd, $dd) = (0, 0);
my $cmdsn = 1;
my $itt = 0x100;
my $expstatsn = 0;
# ISID: type "random" (80h), 24 random bits per process, 16-bit counter per session
srand($$ ^ time);
my $isid_rand = substr(pack("N", int(rand(2**32))), 0, 3);
my $isid_n = 1;

sub conn { IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 5)
	or die "connect: $!\n" }

sub pad4 { my $l = length($_[0]); return $_[0] . ("\0" x ((4 - $l % 4) % 4)); }

sub send_pdu {
	my ($s, $bhs, $data, %o) = @_;
	$data //= "";
	substr($bhs, 5, 3) = substr(pack("N", $o{dlen} // length($data)), 1, 3);
	my $buf = $bhs;
	$buf .= ($o{bad_hd} ? "XXXX" : crc32c($bhs)) if $hd;
	if (length $data) {
		my $p = pad4($data);
		$buf .= $p;
		$buf .= ($o{bad_dd} ? "XXXX" : crc32c($p)) if $dd;
	}
	if ($o{into}) {
		${$o{into}} .= $buf; # collected, sent later in one write
		return;
	}
	print $s $buf or die "send: $!\n";
}

sub read_n {
	my ($s, $n) = @_;
	my $buf = "";
	while (length($buf) < $n) {
		my $r = sysread($s, $buf, $n - length($buf), length($buf));
		return undef unless $r;
	}
	return $buf;
}

# returns (bhs, data) or () on EOF; dies on a digest mismatch
sub recv_pdu {
	my ($s) = @_;
	my $bhs = read_n($s, 48);
	return () unless defined $bhs;
	my $ahs = unpack("C", substr($bhs, 4, 1)) * 4;
	my $dlen = unpack("N", "\0" . substr($bhs, 5, 3));
	read_n($s, $ahs) if $ahs;
	if ($hd) {
		my $d = read_n($s, 4);
		die "header digest mismatch\n" unless $d eq crc32c($bhs);
	}
	my $data = "";
	if ($dlen) {
		my $p = read_n($s, $dlen + (4 - $dlen % 4) % 4);
		if ($dd) {
			my $d = read_n($s, 4);
			die "data digest mismatch\n" unless $d eq crc32c($p);
		}
		$data = substr($p, 0, $dlen);
	}
	my $op = unpack("C", $bhs) & 0x3f;
	$expstatsn = unpack("N", substr($bhs, 24, 4)) + 1
		if $op == 0x21 || $op == 0x26 || $op == 0x20 || $op == 0x3f || $op == 0x23
		|| ($op == 0x25 && (unpack("C", substr($bhs, 1, 1)) & 1));
	return ($bhs, $data);
}

sub keys_str { join("", map { "$_\0" } @_) }

# one-PDU login straight to the full feature phase; returns the answer keys
sub login {
	my ($s, @extra) = @_;
	my $bhs = pack("C C C C C a3 a6 n N n n N N a16",
		0x43, 0x87, 0, 0, 0, "", "\x80" . $isid_rand . pack("n", $isid_n++), 0, $itt++, 1, 0,
		$cmdsn, 0, "");
	my $keys = keys_str("InitiatorName=$INIT", "TargetName=$target", "SessionType=Normal",
		"AuthMethod=None", @extra);
	my ($shd, $sdd) = ($hd, $dd);
	($hd, $dd) = (0, 0);
	send_pdu($s, $bhs, $keys);
	my ($r, $data) = recv_pdu($s);
	die "no login response\n" unless $r;
	my ($class, $detail) = unpack("CC", substr($r, 36, 2));
	my %k = map { split(/=/, $_, 2) } grep { length } split(/\0/, $data);
	$k{_status} = $class * 256 + $detail;
	$k{_transit} = unpack("C", substr($r, 1, 1)) & 0x80;
	($hd, $dd) = ($shd, $sdd);
	$hd = 1 if ($k{HeaderDigest} // "") eq "CRC32C";
	$dd = 1 if ($k{DataDigest} // "") eq "CRC32C";
	return \%k;
}

sub scsi_cmd {
	my ($s, $flags, $edtl, $cdb, $imm) = @_;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x01, $flags, 0, 0, "", $LUN, $itt,
		$edtl, $cmdsn++, $expstatsn, pack("a16", $cdb));
	send_pdu($s, $bhs, $imm // "");
	return $itt++;
}

sub data_out {
	my ($s, $task, $ttt, $datasn, $off, $data, $final) = @_;
	my $bhs = pack("C C n C a3 a8 N N N N N N N", 0x05, $final ? 0x80 : 0, 0, 0, "",
		$LUN, $task, $ttt, 0, $expstatsn, 0, $datasn, $off) . "\0" x 4;
	send_pdu($s, $bhs, $data);
}

# run a write to completion through R2Ts; returns the SCSI status
sub write10 {
	my ($s, $lba, $data, $immlen) = @_;
	my $n = length($data) / 512;
	my $imm = substr($data, 0, $immlen // 0);
	my $task = scsi_cmd($s, 0xA0, length $data, pack("C C N C n C", 0x2a, 0, $lba, 0, $n, 0), $imm);
	for (;;) {
		my ($r, $d) = recv_pdu($s);
		die "connection closed during write\n" unless $r;
		my $op = unpack("C", $r) & 0x3f;
		if ($op == 0x31) {
			my ($ttt, $off, $len) = (unpack("N", substr($r, 20, 4)),
				unpack("N", substr($r, 40, 4)), unpack("N", substr($r, 44, 4)));
			my $sn = 0;
			for (my $o = $off; $o < $off + $len; $o += 8192) {
				my $l = $off + $len - $o < 8192 ? $off + $len - $o : 8192;
				data_out($s, $task, $ttt, $sn++, $o, substr($data, $o, $l), $o + $l >= $off + $len);
			}
		} elsif ($op == 0x21) {
			return unpack("C", substr($r, 3, 1));
		}
	}
}

# Log in for unsolicited data of SIZE bytes, then a WRITE(10) of SIZE bytes at
# LBA (a pattern from SEED) with all its data sent unsolicited (immediate data
# and Data-Out): returns (task tag, blocks, the data).
sub unsolicited_write {
	my ($s, $size, $lba, $seed) = @_;
	my $k = login($s, "InitialR2T=No", "ImmediateData=Yes", "FirstBurstLength=$size",
		"MaxBurstLength=$size", "MaxRecvDataSegmentLength=262144");
	fail("login status $k->{_status}") if $k->{_status};
	my $tmrdsl = $k->{MaxRecvDataSegmentLength} // 8192;
	my $n = $size / 512;
	my $data = pack("N", $seed + $$ % 65536) x ($size / 4);
	my $first = $size < $tmrdsl ? $size : $tmrdsl;
	my $t = scsi_cmd($s, $first == $size ? 0xA0 : 0x20, $size,
		pack("C C N C n C", 0x2a, 0, $lba, 0, $n, 0), substr($data, 0, $first));
	my $sn = 0;
	for (my $o = $first; $o < $size; $o += $tmrdsl) {
		my $len = $size - $o < $tmrdsl ? $size - $o : $tmrdsl;
		data_out($s, $t, 0xFFFFFFFF, $sn++, $o, substr($data, $o, $len), $o + $len >= $size);
	}
	return ($t, $n, $data);
}

sub read10 {
	my ($s, $lba, $n) = @_;
	scsi_cmd($s, 0xC0, $n * 512, pack("C C N C n C", 0x28, 0, $lba, 0, $n, 0));
	my $buf = "\0" x ($n * 512);
	for (;;) {
		my ($r, $d) = recv_pdu($s);
		die "connection closed during read\n" unless $r;
		my $op = unpack("C", $r) & 0x3f;
		if ($op == 0x25) {
			substr($buf, unpack("N", substr($r, 40, 4)), length $d) = $d;
			return (unpack("C", substr($r, 3, 1)), $buf) if unpack("C", substr($r, 1, 1)) & 1;
		} elsif ($op == 0x21) {
			return (unpack("C", substr($r, 3, 1)), $buf);
		}
	}
}

sub nop {
	my ($s, $payload) = @_;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x40, 0x80, 0, 0, "", "\0" x 8, $itt++,
		0xFFFFFFFF, $cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, $payload // "");
	my ($r, $d) = recv_pdu($s);
	return $r && (unpack("C", $r) & 0x3f) == 0x20 && $d eq ($payload // "");
}

sub logout {
	my ($s) = @_;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x46, 0x80, 0, 0, "", "\0" x 8, $itt++, 0,
		$cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, "");
	my ($r) = recv_pdu($s);
	return $r && (unpack("C", $r) & 0x3f) == 0x26 && unpack("C", substr($r, 2, 1)) == 0;
}

sub expect_closed {
	my ($s, $secs) = @_;
	my $sel = IO::Select->new($s);
	my $end = time + $secs;
	while (time < $end) {
		next unless $sel->can_read(0.5);
		my $r = sysread($s, my $buf, 65536);
		return 1 if !$r;
	}
	return 0;
}

sub fail { print STDERR "iscsi-peer $scenario: @_\n"; exit 1 }

my $s = conn();
if ($scenario eq "digests") {
	# CRC32C on both header and data, immediate data, R2T, Data-In, NOP, Logout
	my $k = login($s, "HeaderDigest=CRC32C", "DataDigest=CRC32C", "InitialR2T=Yes",
		"ImmediateData=Yes", "MaxRecvDataSegmentLength=8192", "FirstBurstLength=4096",
		"MaxBurstLength=16384");
	fail("login status $k->{_status}") if $k->{_status};
	fail("digests not negotiated") unless $hd && $dd;
	my $data = join("", map { chr(($_ * 7 + 3) & 0xff) } 0 .. 65535);
	my $st = write10($s, 100, $data, 4096);
	fail("write status $st") if $st;
	my ($rst, $back) = read10($s, 100, 128);
	fail("read status $rst") if $rst;
	fail("data differs") unless $back eq $data;
	fail("NOP-Out/NOP-In echo") unless nop($s, "ping" x 100);
	fail("logout") unless logout($s);
} elsif ($scenario eq "bad-data-digest") {
	login($s, "HeaderDigest=CRC32C", "DataDigest=CRC32C", "ImmediateData=Yes");
	fail("digests not negotiated") unless $dd;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x01, 0xA0, 0, 0, "", "\0" x 8, $itt++, 512,
		$cmdsn++, $expstatsn, pack("a16", pack("C C N C n C", 0x2a, 0, 0, 0, 1, 0)));
	send_pdu($s, $bhs, "\xAA" x 512, bad_dd => 1);
	my ($r) = recv_pdu($s);
	fail("no Reject for a bad data digest") unless $r && (unpack("C", $r) & 0x3f) == 0x3f
		&& unpack("C", substr($r, 2, 1)) == 2;
	fail("connection kept after a digest error") unless expect_closed($s, 5);
} elsif ($scenario eq "bad-header-digest") {
	login($s, "HeaderDigest=CRC32C");
	fail("header digest not negotiated") unless $hd;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x40, 0x80, 0, 0, "", "\0" x 8, $itt++,
		0xFFFFFFFF, $cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, "", bad_hd => 1);
	fail("connection kept after a header digest error") unless expect_closed($s, 5);
} elsif ($scenario eq "bad-opcode") {
	login($s);
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x1c, 0x80, 0, 0, "", "\0" x 8, $itt++, 0,
		$cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, "");
	my ($r) = recv_pdu($s);
	fail("no Reject for opcode 0x1c") unless $r && (unpack("C", $r) & 0x3f) == 0x3f
		&& unpack("C", substr($r, 2, 1)) == 5;
	fail("session unusable after a Reject") unless nop($s, "still here");
	fail("logout") unless logout($s);
} elsif ($scenario eq "oversized") {
	login($s);
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x40, 0x80, 0, 0, "", "\0" x 8, $itt++,
		0xFFFFFFFF, $cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, "", dlen => 0xFFFFFF);
	print $s "\0" x 4096;
	my ($r) = recv_pdu($s);
	fail("no Reject for a 16 MiB data segment") unless $r && (unpack("C", $r) & 0x3f) == 0x3f;
	fail("connection kept after an oversized PDU") unless expect_closed($s, 5);
} elsif ($scenario eq "truncated") {
	print $s "\x43\x87\0\0\0\0\0\x40" . ("\0" x 12);
	close($s);
} elsif ($scenario eq "bad-login-text") {
	my $bhs = pack("C C C C C a3 a6 n N n n N N a16",
		0x43, 0x87, 0, 0, 0, "", "\x80\x12\x34\x56\x00\x02", 0, 1, 1, 0, 1, 0, "");
	send_pdu($s, $bhs, "InitiatorName$INIT\0garbage");
	my ($r) = recv_pdu($s);
	fail("no login reject") unless $r && unpack("C", substr($r, 36, 1)) == 2;
	fail("connection kept after a failed login") unless expect_closed($s, 5);
} elsif ($scenario eq "hang-login") {
	# half a login PDU, then silence: the target must give up on us
	print $s "\x43\x87\0\0\0\0\0\x40";
	fail("half-finished login not closed in time") unless expect_closed($s, $args[0] // 25);
} elsif ($scenario eq "drop-mid-write") {
	login($s, "InitialR2T=Yes", "ImmediateData=No");
	my $n = 256;
	scsi_cmd($s, 0xA0, $n * 512, pack("C C N C n C", 0x2a, 0, $args[0] // 0, 0, $n, 0));
	my ($r) = recv_pdu($s);
	fail("no R2T") unless $r && (unpack("C", $r) & 0x3f) == 0x31;
	data_out($s, $itt - 1, unpack("N", substr($r, 20, 4)), 0, 0, "\xEE" x 8192, 0);
	close($s);
} elsif ($scenario eq "drop-mid-imm") {
	# a WRITE whose 64 KiB of immediate data (received straight into the
	# command's buffer) is cut off: then a hang-up
	login($s, "InitialR2T=Yes", "ImmediateData=Yes", "FirstBurstLength=65536");
	my $n = 256;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x01, 0xA0, 0, 0, "", "\0" x 8, $itt++,
		$n * 512, $cmdsn++, $expstatsn,
		pack("a16", pack("C C N C n C", 0x2a, 0, $args[0] // 0, 0, $n, 0)));
	substr($bhs, 5, 3) = substr(pack("N", 65536), 1, 3);
	print $s $bhs, "\xEE" x 30000 or die "send: $!\n";
	select(undef, undef, undef, 0.3);
	print $s "\xEE" x 20000 or die "send: $!\n";
	select(undef, undef, undef, 0.3);
	close($s);
} elsif ($scenario eq "imm-ignored") {
	# a WRITE outside the CmdSN window with 64 KiB of immediate data, sent in
	# two pieces: the command is ignored and its data read and dropped, so the
	# next PDUs are still understood
	login($s, "InitialR2T=Yes", "ImmediateData=Yes", "FirstBurstLength=65536");
	my $n = 128;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x01, 0xA0, 0, 0, "", "\0" x 8, $itt++,
		$n * 512, $cmdsn + 100000, $expstatsn,
		pack("a16", pack("C C N C n C", 0x2a, 0, $args[0] // 0, 0, $n, 0)));
	substr($bhs, 5, 3) = substr(pack("N", 65536), 1, 3);
	print $s $bhs, "\xEE" x 30000 or die "send: $!\n";
	select(undef, undef, undef, 0.2);
	print $s "\xEE" x 35536 or die "send: $!\n";
	fail("session out of step after the ignored command") unless nop($s, "ping");
	fail("no logout") unless logout($s);
} elsif ($scenario eq "drop-mid-pdu") {
	# a large Data-Out cut off inside its data segment (the target receives
	# such data straight into the command's buffer): then a hang-up
	login($s, "InitialR2T=Yes", "ImmediateData=No");
	my $n = 256;
	scsi_cmd($s, 0xA0, $n * 512, pack("C C N C n C", 0x2a, 0, $args[0] // 0, 0, $n, 0));
	my ($r) = recv_pdu($s);
	fail("no R2T") unless $r && (unpack("C", $r) & 0x3f) == 0x31;
	my $bhs = pack("C C n C a3 a8 N N N N N N N", 0x05, 0x80, 0, 0, "", "\0" x 8, $itt - 1,
		unpack("N", substr($r, 20, 4)), 0, $expstatsn, 0, 0, 0) . "\0" x 4;
	substr($bhs, 5, 3) = substr(pack("N", 131072), 1, 3);
	print $s $bhs, "\xEE" x 40000 or die "send: $!\n";
	select(undef, undef, undef, 0.3);
	print $s "\xEE" x 40000 or die "send: $!\n";
	select(undef, undef, undef, 0.3);
	close($s);
} elsif ($scenario eq "logout-burst") {
	# COUNT commands of SIZE bytes at LBA, sent back to back, then a Logout
	# right away, without waiting for any answer (RFC 7143 4.2.2.1, 7.14, 11.14):
	#   KIND write: WRITEs whose data all goes out unsolicited (immediate data
	#               plus Data-Out up to FirstBurstLength), pattern per command
	#   KIND read:  READs
	#   KIND r2t:   WRITEs with InitialR2T=Yes and no immediate data, whose R2Ts
	#               are never answered (the commands wait for Data-Out)
	#   IMM 1:      the Logout carries the I bit (immediate)
	# A non-immediate Logout must come after the answers of every command that
	# could run; an immediate one may terminate them, but nothing may follow
	# the Logout Response, and the connection must then close. Prints
	# "good ITT-INDEX" for each command answered GOOD, "terminated INDEX" for
	# the others, "logout ok".
	my ($kind, $count, $size, $lba, $imm) = @args;
	my $mrdsl = 262144;
	my @k = $kind eq "r2t"
		? ("InitialR2T=Yes", "ImmediateData=No")
		: ("InitialR2T=No", "ImmediateData=Yes", "FirstBurstLength=$size",
		   "MaxBurstLength=$size");
	my $k = login($s, @k, "MaxRecvDataSegmentLength=$mrdsl");
	fail("login status $k->{_status}") if $k->{_status};
	my $tmrdsl = $k->{MaxRecvDataSegmentLength} // 8192;
	my $n = $size / 512;
	my (%idx, @itts);
	for my $i (0 .. $count - 1) {
		my $l = $lba + $i * $n;
		my $t;
		if ($kind eq "read") {
			$t = scsi_cmd($s, 0xC0, $size, pack("C C N C n C", 0x28, 0, $l, 0, $n, 0));
		} elsif ($kind eq "r2t") {
			$t = scsi_cmd($s, 0xA0, $size, pack("C C N C n C", 0x2a, 0, $l, 0, $n, 0));
		} else {
			my $data = pack("N", $i + 1) x ($size / 4);
			my $first = $size < $tmrdsl ? $size : $tmrdsl;
			# F bit only when the immediate data is all of it
			my $fl = $first == $size ? 0xA0 : 0x20;
			$t = scsi_cmd($s, $fl, $size, pack("C C N C n C", 0x2a, 0, $l, 0, $n, 0),
				substr($data, 0, $first));
			my $sn = 0;
			for (my $o = $first; $o < $size; $o += $tmrdsl) {
				my $len = $size - $o < $tmrdsl ? $size - $o : $tmrdsl;
				data_out($s, $t, 0xFFFFFFFF, $sn++, $o, substr($data, $o, $len),
					$o + $len >= $size);
			}
		}
		$idx{$t} = $i;
		push @itts, $t;
	}
	# opcode 0x06; an immediate request does not take a CmdSN of its own
	my $bhs = pack("C C n C a3 a8 N N N N a16", $imm ? 0x46 : 0x06, 0x80, 0, 0, "",
		"\0" x 8, $itt++, 0, $imm ? $cmdsn : $cmdsn++, $expstatsn, "");
	send_pdu($s, $bhs, "");
	my (%status, $logout, $after);
	my %rd;
	for (;;) {
		my ($r, $d) = recv_pdu($s);
		last unless $r;
		my $op = unpack("C", $r) & 0x3f;
		my $t = unpack("N", substr($r, 16, 4));
		if (defined $logout) {
			$after = sprintf("opcode 0x%02x (ITT 0x%x)", $op, $t);
			last;
		}
		if ($op == 0x26) {
			$logout = unpack("C", substr($r, 2, 1));
		} elsif ($op == 0x21 && exists $idx{$t}) {
			$status{$t} = unpack("C", substr($r, 3, 1));
		} elsif ($op == 0x25 && exists $idx{$t}) {
			$rd{$t} += length $d;
			$status{$t} = unpack("C", substr($r, 3, 1)) if unpack("C", substr($r, 1, 1)) & 1;
		} elsif ($op == 0x31 && exists $idx{$t}) {
			# an R2T: never answered
		} else {
			fail(sprintf("unexpected PDU opcode 0x%02x ITT 0x%x", $op, $t));
		}
	}
	fail("a PDU after the Logout Response: $after") if defined $after;
	fail("no Logout Response") unless defined $logout;
	fail("Logout Response $logout") if $logout;
	for my $t (@itts) {
		if (!exists $status{$t}) {
			fail("command $idx{$t} not answered before a non-immediate Logout")
				if !$imm && $kind ne "r2t";
			print "terminated $idx{$t}\n";
		} elsif ($status{$t} == 0) {
			fail("READ $idx{$t}: $rd{$t} bytes") if $kind eq "read" && ($rd{$t} // 0) != $size;
			print "good $idx{$t}\n";
		} else {
			fail("command $idx{$t} status $status{$t}");
		}
	}
	print "logout ok\n";
} elsif ($scenario eq "abort-read") {
	# a READ of SIZE bytes at LBA and, right behind it, ABORT TASK for it
	# (RFC 7143 11.5, 11.6): the READ is answered whole before the TMF
	# Response (function complete or task does not exist) or not at all, and
	# the session goes on. Prints "answered" or "aborted", and the response.
	my ($size, $lba) = @args;
	my $k = login($s, "MaxRecvDataSegmentLength=262144");
	fail("login status $k->{_status}") if $k->{_status};
	my $n = $size / 512;
	my $rsn = $cmdsn;
	my $t = $itt++;
	my $out = "";
	send_pdu($s, pack("C C n C a3 a8 N N N N a16", 0x01, 0xC0, 0, 0, "", $LUN, $t, $size,
		$cmdsn++, $expstatsn, pack("a16", pack("C C N C n C", 0x28, 0, $lba, 0, $n, 0))),
		"", into => \$out);
	send_pdu($s, pack("C C n C a3 a8 N N N N N N a8", 0x42, 0x81, 0, 0, "", $LUN, $itt++, $t,
		$cmdsn, $expstatsn, $rsn, 0, ""), "", into => \$out);
	print $s $out or die "send: $!\n"; # both in one segment
	my ($got, $status, $tmf) = (0);
	while (!defined $tmf) {
		my ($r, $d) = recv_pdu($s);
		fail("connection closed") unless $r;
		my $op = unpack("C", $r) & 0x3f;
		my $it = unpack("N", substr($r, 16, 4));
		if ($op == 0x22) {
			$tmf = unpack("C", substr($r, 2, 1));
		} elsif ($op == 0x25 && $it == $t) {
			$got += length $d;
			$status = unpack("C", substr($r, 3, 1)) if unpack("C", substr($r, 1, 1)) & 1;
		} elsif ($op == 0x21 && $it == $t) {
			$status = unpack("C", substr($r, 3, 1));
		} else {
			fail(sprintf("unexpected PDU opcode 0x%02x", $op));
		}
	}
	fail("TMF response $tmf") unless $tmf == 0 || $tmf == 1;
	if (defined $status) {
		fail("READ status $status, $got bytes") unless $status == 0 && $got == $size;
		print "answered, TMF response $tmf\n";
	} else {
		fail("part of an aborted READ came: $got bytes") if $got;
		fail("aborted READ but TMF response $tmf") if $tmf;
		print "aborted, TMF response $tmf\n";
	}
	fail("session unusable after the abort") unless nop($s, "after abort");
	fail("logout") unless logout($s);
} elsif ($scenario eq "reload-luns") {
	# log in, print "ready", wait for a line on stdin (the test reloads the
	# target without LUN GONE meanwhile), then: TEST UNIT READY on LUN KEPT gets
	# UNIT ATTENTION / REPORTED LUNS DATA HAS CHANGED once, then GOOD; a READ of
	# LUN GONE gets ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED
	my ($gone, $kept) = @args;
	my $k = login($s);
	fail("login status $k->{_status}") if $k->{_status};
	print "ready\n";
	STDOUT->flush();
	my $line = <STDIN>;
	my $cmd = sub {
		my ($lun, $flags, $edtl, $cdb) = @_;
		local $LUN = pack("C C x6", 0, $lun);
		my $t = scsi_cmd($s, $flags, $edtl, $cdb);
		for (;;) {
			my ($r, $d) = recv_pdu($s);
			fail("connection closed") unless $r;
			my $op = unpack("C", $r) & 0x3f;
			next if $op == 0x25 && !(unpack("C", substr($r, 1, 1)) & 1);
			fail(sprintf("unexpected PDU opcode 0x%02x", $op))
				unless ($op == 0x21 || $op == 0x25) && unpack("N", substr($r, 16, 4)) == $t;
			my $st = unpack("C", substr($r, 3, 1));
			return ($st) unless $st == 2 && length($d) >= 16;
			return ($st, unpack("C", substr($d, 4, 1)) & 0xf,
				unpack("n", substr($d, 14, 2)));
		}
	};
	my @r = $cmd->($kept, 0x80, 0, "\0" x 6);
	fail("TUR after the reload: @r") unless "@r" eq sprintf("2 6 %d", 0x3f0e);
	@r = $cmd->($kept, 0x80, 0, "\0" x 6);
	fail("second TUR: @r") unless "@r" eq "0";
	@r = $cmd->($gone, 0xC0, 4096, pack("C C N C n C", 0x28, 0, 0, 0, 8, 0));
	fail("READ of the removed LUN: @r") unless "@r" eq sprintf("2 5 %d", 0x2500);
	fail("logout") unless logout($s);
} elsif ($scenario eq "keepalive") {
	# stay idle: the target must ping with NOP-In (TTT set), we answer, it keeps us
	login($s);
	my ($r) = recv_pdu($s);
	fail("no NOP-In ping from the target") unless $r && (unpack("C", $r) & 0x3f) == 0x20;
	my ($itt_in, $ttt) = (unpack("N", substr($r, 16, 4)), unpack("N", substr($r, 20, 4)));
	fail("NOP-In ping without a TTT") unless $itt_in == 0xFFFFFFFF && $ttt != 0xFFFFFFFF;
	my $bhs = pack("C C n C a3 a8 N N N N a16", 0x40, 0x80, 0, 0, "", "\0" x 8, 0xFFFFFFFF,
		$ttt, $cmdsn, $expstatsn, "");
	send_pdu($s, $bhs, "");
	fail("session gone after answering the ping") unless nop($s, "after ping");
	fail("logout") unless logout($s);
} elsif ($scenario eq "hold") {
	# log in, stay for SECS seconds, then check the session still works
	my $k = login($s);
	fail("login status $k->{_status}") if $k->{_status};
	print "ready\n";
	STDOUT->flush();
	sleep($args[0] // 3);
	fail("session did not survive") unless nop($s, "still there?");
	fail("logout") unless logout($s);
} elsif ($scenario eq "await-async") {
	# log in and wait: a stopping target sends Async Message "logout requested"
	my $k = login($s);
	fail("login status $k->{_status}") if $k->{_status};
	print "ready\n";
	STDOUT->flush();
	my ($r) = recv_pdu($s);
	fail("no Async Message") unless $r && (unpack("C", $r) & 0x3f) == 0x32;
	fail("Async event is not a logout request") unless unpack("C", substr($r, 36, 1)) == 1;
	fail("logout after the Async Message") unless logout($s);
} elsif ($scenario eq "reinstate") {
	# a second login with the same initiator name and ISID replaces the first session
	my $k = login($s);
	fail("login 1 status $k->{_status}") if $k->{_status};
	$isid_n--;
	my $s2 = conn();
	$k = login($s2);
	fail("login 2 status $k->{_status}") if $k->{_status};
	fail("old session not closed on reinstatement") unless expect_closed($s, 5);
	fail("new session unusable") unless nop($s2, "new one");
	fail("logout") unless logout($s2);
} elsif ($scenario eq "reinstate-write") {
	# A WRITE of SIZE bytes at LBA, all of its data sent unsolicited, then
	# after WAIT seconds (the write is on a worker: a target started with
	# VDISK_TARGET_TEST_WRITE_DELAY_MS holds it there) MODE "drop" closes the
	# connection, MODE "keep" leaves it open; at once a new connection logs in
	# with the same initiator name and ISID (session reinstatement, RFC 7143
	# 6.3.5) and READs the blocks, then again after SETTLE seconds. The old
	# WRITE must land before the new session's Login Response or never: both
	# READs see the same data. Prints "landed" or "not landed" and the login time.
	my ($mode, $size, $lba, $wait, $settle) = @args;
	my ($t, $n, $data) = unsolicited_write($s, $size, $lba, 0x5eed0000);
	select(undef, undef, undef, $wait);
	close($s) if $mode eq "drop";
	$isid_n--;
	($cmdsn, $expstatsn) = (1, 0);
	my $s2 = conn();
	my $t0 = time;
	my $k = login($s2, "MaxRecvDataSegmentLength=262144");
	my $lt = time - $t0;
	fail("login status $k->{_status}") if $k->{_status};
	fail("old session not closed on reinstatement") if $mode eq "keep" && !expect_closed($s, 5);
	my ($st1, $r1) = read10($s2, $lba, $n);
	fail("READ 1 status $st1") if $st1;
	select(undef, undef, undef, $settle);
	my ($st2, $r2) = read10($s2, $lba, $n);
	fail("READ 2 status $st2") if $st2;
	fail("the old session's WRITE landed after the new session's READ") if $r1 ne $r2;
	fail("a torn WRITE") if $r2 ne $data && index($r2, substr($data, 0, 512)) >= 0;
	printf "%s, login took %.1f s\n", $r2 eq $data ? "landed" : "not landed", $lt;
	fail("logout") unless logout($s2);
} elsif ($scenario eq "revoke-inflight") {
	# A WRITE of SIZE bytes at LBA, all data unsolicited, then "ready": the
	# test revokes our access by a reload meanwhile (RFC 7143 11.9.1). Expected:
	# an Async Message "logout requested", the WRITE still answered GOOD, a new
	# command after the Async Message rejected with "waiting for logout"
	# (reason 0x0d); then MODE "logout": Logout, its Response, the connection
	# closed; MODE "ignore": no Logout, the target closes the connection itself
	# within the time the Async Message gave plus a little.
	my ($mode, $size, $lba) = @args;
	my ($t, $n, $data) = unsolicited_write($s, $size, $lba, 0x7e40000);
	print "ready\n";
	STDOUT->flush();
	my ($async, $wst, $rej, $tur, $secs);
	while (!defined $async || !defined $wst || ($mode eq "logout" && !defined $rej)) {
		my ($r, $d) = recv_pdu($s);
		fail("connection closed: Async " . ($async // "none") . ", WRITE status "
			. ($wst // "none")) unless $r;
		my $op = unpack("C", $r) & 0x3f;
		my $it = unpack("N", substr($r, 16, 4));
		if ($op == 0x32) {
			$async = unpack("C", substr($r, 36, 1));
			$secs = unpack("n", substr($r, 38, 2));
			fail("Async event $async, not a logout request") unless $async == 1;
			# a new command now: refused, the session waits for our Logout
			$tur = scsi_cmd($s, 0x80, 0, "\0" x 6) if $mode eq "logout";
		} elsif ($op == 0x21 && $it == $t) {
			$wst = unpack("C", substr($r, 3, 1));
		} elsif ($op == 0x3f) {
			$rej = unpack("C", substr($r, 2, 1));
			fail("Reject for another PDU") unless unpack("N", substr($d, 16, 4)) == $tur;
		} else {
			fail(sprintf("unexpected PDU opcode 0x%02x ITT 0x%x", $op, $it));
		}
	}
	fail("WRITE status $wst") if $wst;
	if ($mode eq "logout") {
		fail(sprintf("Reject reason 0x%02x", $rej)) unless $rej == 0x0d;
		fail("logout") unless logout($s);
		fail("not closed after the Logout Response") unless expect_closed($s, 5);
		print "async, write GOOD, reject 0x0d, logout\n";
	} else {
		my $t0 = time;
		fail("not closed after ignoring the logout request") unless expect_closed($s, $secs + 8);
		printf "async (%d s), write GOOD, closed after %.1f s\n", $secs, time - $t0;
	}
} elsif ($scenario eq "cdb") {
	# send each CDB (hex) with a READ of ALLOC bytes (0: no data), or with
	# ALLOC "w:HEX" these bytes written as immediate data (up to 64 KiB), and
	# print "status HEX-DATA" or "status sense HEX-SENSE", one line per CDB:
	#   cdb ALLOC HEXCDB [ALLOC HEXCDB]...
	# ALLOC "p:FILE" (HEXCDB ignored) prints nothing: it waits until FILE
	# exists (at most 30 s), for a test to change something in between.
	my $k = login($s, "MaxRecvDataSegmentLength=262144", "ImmediateData=Yes",
		"FirstBurstLength=65536");
	fail("login status $k->{_status}") if $k->{_status};
	while (my ($alloc, $hex) = splice(@args, 0, 2)) {
		my $t;
		if ($alloc =~ /^p:(.+)$/) {
			my $until = time + 30;
			select(undef, undef, undef, 0.05) while !-e $1 && time < $until;
			next;
		}
		if ($alloc =~ /^w:([0-9a-f]*)$/i) {
			my $out = pack("H*", $1);
			$t = scsi_cmd($s, 0xA0, length $out, pack("H*", $hex), $out);
		} else {
			$t = scsi_cmd($s, $alloc ? 0xC0 : 0x80, $alloc, pack("H*", $hex));
		}
		my $buf = "";
		for (;;) {
			my ($r, $d) = recv_pdu($s);
			fail("connection closed") unless $r;
			my $op = unpack("C", $r) & 0x3f;
			fail(sprintf("unexpected PDU opcode 0x%02x", $op))
				unless ($op == 0x21 || $op == 0x25) && unpack("N", substr($r, 16, 4)) == $t;
			if ($op == 0x25) {
				substr($buf, unpack("N", substr($r, 40, 4)), length $d) = $d;
				next unless unpack("C", substr($r, 1, 1)) & 1;
				print unpack("C", substr($r, 3, 1)), " ", unpack("H*", $buf), "\n";
			} else {
				my $st = unpack("C", substr($r, 3, 1));
				print $st, $st == 2 && length $d > 2
					? " sense " . unpack("H*", substr($d, 2)) : " " . unpack("H*", $buf), "\n";
			}
			last;
		}
	}
	fail("logout") unless logout($s);
} elsif ($scenario eq "sessions") {
	# N sessions logged in at once, each doing a TEST UNIT READY, held open
	my $n = $args[0] // 64;
	my @s = ($s);
	push @s, conn() for 2 .. $n;
	for my $i (0 .. $#s) {
		my $k = login($s[$i]);
		fail("login $i status $k->{_status}") if $k->{_status};
	}
	for my $i (0 .. $#s) {
		scsi_cmd($s[$i], 0x80, 0, "\0" x 6);
		my ($r) = recv_pdu($s[$i]);
		fail("TUR on session $i") unless $r && (unpack("C", $r) & 0x3f) == 0x21
			&& unpack("C", substr($r, 3, 1)) == 0;
	}
	print "ready\n";
	STDOUT->flush();
	sleep($args[1] // 1);
	logout($_) for @s;
} else {
	fail("unknown scenario");
}
exit 0;
