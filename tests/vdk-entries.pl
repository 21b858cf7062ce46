#!/usr/bin/perl
# SPDX-License-Identifier: MIT
# Walk the map of a native image (format/FORMAT.md) and print where things are,
# for tests that tamper with specific parts of an encrypted image:
#   H SLOT GEN              a header copy that passes its XXH3-free sanity checks
#   A SLOT                  the active header copy (higher generation)
#   N LEVEL INDEX OFF LEN   a tree node
#   D VBLOCK OFF LEN CTR    a data block (LEN = block size)
#   Z VBLOCK                a zero entry
# Only reads plaintext metadata (node entries are MAC'd, not encrypted).
use strict;
use warnings;

my $path = shift or die "usage: vdk-entries.pl IMAGE\n";
open(my $f, '<:raw', $path) or die "$path: $!\n";

sub rd {
	my ($off, $len) = @_;
	my $b;
	seek($f, $off, 0) or die "seek: $!\n";
	my $n = read($f, $b, $len);
	die "$path: short read at $off\n" unless defined $n && $n == $len;
	return $b;
}

my ($best, $bestgen, %h) = (-1, -1);
for my $s (0, 1) {
	my $b = rd($s * 4096, 4096);
	next unless substr($b, 0, 8) eq "\x89VDK\r\n\x1a\n";
	my $gen = unpack('Q<', substr($b, 56, 8));
	print "H $s $gen\n";
	if ($gen > $bestgen) {
		($best, $bestgen) = ($s, $gen);
		%h = (
			bs => unpack('L<', substr($b, 72, 4)),
			ne => unpack('L<', substr($b, 76, 4)),
			levels => unpack('L<', substr($b, 80, 4)),
			root => substr($b, 88, 32),
		);
	}
}
die "$path: no header\n" if $best < 0;
print "A $best\n";

my $bs = $h{bs};
my $ne = $h{ne};
my $nsize = $ne * 32;

sub walk {
	my ($entry, $level, $index) = @_;
	my ($ptr, $ctr) = unpack('Q< Q<', $entry);
	my $off = $ptr & ~4095;
	if ($level < 0) {
		# a data entry; $index is the virtual block
		if ($ptr == 2) {
			print "Z $index\n";
		} elsif ($ptr & 1) {
			print "D $index $off $bs $ctr\n";
		}
		return;
	}
	return unless $ptr & 1;
	print "N $level $index $off $nsize\n";
	my $node = rd($off, $nsize);
	for my $i (0 .. $ne - 1) {
		my $e = substr($node, $i * 32, 32);
		next if $e eq "\0" x 32;
		walk($e, $level - 1, $index * $ne + $i);
	}
}

walk($h{root}, $h{levels} - 1, 0);
