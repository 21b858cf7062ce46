#!/bin/sh
# SPDX-License-Identifier: MIT
# Encrypted native images through the CLI: create/info/key list without a
# passphrase, round trips through convert with --key-file and --key-fd, the
# stored file never holds the plaintext (nor zeros for zero writes), wrong
# passphrase / no terminal errors, key add/remove and last-slot protection,
# AES-256-GCM, snapshots and overlays opening with the same passphrase, and
# AEAD counters never repeated within a chain.
. "$(dirname "$0")/lib.sh"

cd "$T" || exit 1
PW="--pwhash-ops 1 --pwhash-mem 8K"	# tests use the minimum Argon2id limits
ENTRIES="perl $SRCDIR/tests/vdk-entries.pl"
printf 'correct horse battery\n' >key
printf 'second passphrase\n' >key2
printf 'wrong\n' >bad

# A 4 MiB disk whose every 16-byte line is a recognisable pattern.
perl -e 'for $i (0..262143) { printf "PLAIN%08dTX\n", $i }' >pat.raw
ok_eq "$(stat -c %s pat.raw)" 4194304 "pattern file"

ok "create --encrypt" $VDISK --key-file key create --encrypt $PW -s 4M e.vdk
info=$($VDISK info e.vdk </dev/null 2>&1)
ok "info needs no passphrase" sh -c "$VDISK info e.vdk </dev/null >/dev/null"
ok "info names the cipher and slots" sh -c "echo '$info' | grep -q 'xchacha20poly1305, 1 key slot'"
ok "key list needs no passphrase" sh -c "$VDISK key list e.vdk </dev/null | grep -q '^key slots: 1 of 8 used'"

# Round trip through convert, passphrase from a file; the pattern never hits the disk.
ok "convert raw -> encrypted vdk (--key-file)" \
	$VDISK --key-file key convert -f raw -O vdk --encrypt $PW pat.raw p.vdk
ok "no plaintext pattern in the image" sh -c "! grep -q -a 'PLAIN0000' p.vdk"
ok "no plaintext line anywhere" sh -c "! grep -q -a 'TX.PLAIN' p.vdk"
ok "convert back to raw (--key-fd)" sh -c "$VDISK --key-fd 3 convert -O raw p.vdk back.raw 3<key"
ok "round trip is identical" cmp -s pat.raw back.raw

# Wrong passphrase: exact message, exit 1, nothing written.
cp p.vdk p.copy
$VDISK --key-file bad convert -O raw p.vdk x.raw 2>err
ok_eq "$?" 1 "wrong passphrase exits 1"
ok_eq "$(cat err)" "vdisk: p.vdk: wrong passphrase" "wrong passphrase message"
ok "no output file after a wrong passphrase" test ! -e x.raw
ok "image untouched by a failed open" cmp -s p.vdk p.copy
# No key source and no terminal.
setsid -w $VDISK check p.vdk </dev/null >/dev/null 2>err
ok_eq "$?" 1 "no terminal: exit 1"
ok "no terminal: says how to give a key" grep -q -- '--key-file' err
# A passphrase given on a fd, several per fd (old, new) for key add.
ok "check through --key-fd" sh -c "$VDISK --key-fd 4 check p.vdk >/dev/null 4<key"

# All-zero writes are encrypted like any other data.
ok "create an empty encrypted image" $VDISK --key-file key create --encrypt $PW -s 1M z.vdk
ok "write zeros to 64 blocks" $VDISK --key-file key bench -q -w --pattern 0 -c 64 -s 4096 -d 1 z.vdk
$ENTRIES z.vdk >z.map
ok_eq "$(grep -c '^D' z.map)" 64 "zero writes stored as 64 data blocks"
nz=$(grep '^D' z.map | while read -r _ vb off len ctr; do
	dd if=z.vdk bs=4096 skip=$((off / 4096)) count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n' |
		grep -qv '^0*$' && echo x
done | wc -l)
ok_eq "$nz" 64 "no stored block of zero writes is zeros"
ok "zeros read back" sh -c "$VDISK --key-file key convert -O raw z.vdk z.raw && cmp -s z.raw /dev/zero -n 262144"

# Key slots: add (old and new passphrase on one fd), list, remove, last slot.
ok "key add through one fd (old, new)" sh -c \
	"printf 'correct horse battery\nsecond passphrase\n' | $VDISK --key-fd 0 key add --new-key-fd 0 $PW p.vdk >out && grep -q 'slot 1' out"
ok "two slots listed" sh -c "$VDISK key list p.vdk | grep -q '^key slots: 2 of 8 used'"
ok "the new passphrase opens" sh -c "$VDISK --key-file key2 check p.vdk >/dev/null"
ok "remove slot 0" sh -c "$VDISK --key-file key2 key remove p.vdk 0 >/dev/null"
$VDISK --key-file key check p.vdk >/dev/null 2>err
ok_eq "$?" 1 "removed passphrase no longer opens"
ok_eq "$(cat err)" "vdisk: p.vdk: wrong passphrase" "removed passphrase: wrong passphrase"
ok "removed slot gone from both header copies" perl -e '
	open F, "<:raw", "p.vdk" or die; for $h (0, 4096) { seek F, $h + 1280 + 64, 0;
	read F, $b, 184; exit 1 if $b ne "\0" x 184 } exit 0'
$VDISK --key-file key2 key remove p.vdk 1 2>err
ok_eq "$?" 1 "last slot cannot be removed"
ok "last slot refusal says why" grep -q 'last one' err
$VDISK --key-file key key add --new-key-file key $PW p.vdk 2>err
ok_eq "$?" 1 "key add with a wrong passphrase fails"
ok "data intact after key changes" sh -c "$VDISK --key-file key2 convert -O raw p.vdk back2.raw && cmp -s pat.raw back2.raw"

# AES-256-GCM (this machine has AES-NI; the library refuses it elsewhere).
ok "convert to aes256gcm" $VDISK --key-file key convert -f raw -O vdk --encrypt --cipher aes256gcm $PW pat.raw g.vdk
ok "info names aes256gcm" sh -c "$VDISK info g.vdk | grep -q aes256gcm"
ok "aes256gcm: no plaintext" sh -c "! grep -q -a 'PLAIN0000' g.vdk"
ok "aes256gcm round trip" sh -c "$VDISK --key-file key convert -O raw g.vdk g.raw && cmp -s pat.raw g.raw"
$VDISK --key-file key create --encrypt --cipher rot13 -s 1M r.vdk 2>err
ok_eq "$?" 1 "unknown cipher refused"

# Encrypted -> encrypted convert, with a new key.
ok "convert encrypted -> encrypted" sh -c \
	"$VDISK --key-file key2 convert -O vdk --encrypt $PW p.vdk pp.vdk"
ok "converted copy reads back" sh -c "$VDISK --key-file key2 convert -O raw pp.vdk pp.raw && cmp -s pat.raw pp.raw"

# Snapshots and overlays stay encrypted and open with the same passphrase.
ok "snapshot create" $VDISK --key-file key2 snapshot create p.vdk s1
ok "write over the snapshot" $VDISK --key-file key2 bench -q -w --pattern 0x41 -c 16 -s 4096 -d 1 p.vdk
ok "frozen layer is encrypted" sh -c "$VDISK --key-file key2 info --json p.vdk | grep -c '\"encrypted\": true' | grep -q 2"
ok "snapshot reads as before" sh -c "$VDISK --key-file key2 convert -O raw p@s1.vdk s1.raw && cmp -s pat.raw s1.raw"
ok "no plaintext in the new top" sh -c "! grep -q -a 'AAAAAAAAAAAAAAAA' p.vdk"
ok "overlay over an encrypted backing" \
	$VDISK --key-file key2 create --encrypt $PW -b pp.vdk ov.vdk
ok "overlay without --encrypt over an encrypted image" \
	$VDISK --key-file key2 create $PW -b pp.vdk ov2.vdk
ok "... is encrypted too" sh -c "$VDISK info ov2.vdk | grep -q 'encrypted: yes'"
ok "... and opens with the same passphrase" sh -c "$VDISK --key-file key2 convert -O raw ov2.vdk ov2.raw && cmp -s pat.raw ov2.raw"
ok "... and writes to it are not in the clear" sh -c \
	"$VDISK --key-file key2 bench -q -w --pattern 0x41 -c 8 -s 4096 -d 1 ov2.vdk && ! grep -q -a AAAAAAAAAAAAAAAA ov2.vdk"
ok "overlay reads through" sh -c "$VDISK --key-file key2 convert -O raw ov.vdk ov.raw && cmp -s pat.raw ov.raw"

# Key slots are kept in step over the files of a chain (each holds a copy).
printf 'third passphrase\n' >key3
printf 'fourth passphrase\n' >key4
nslots() { $VDISK key list "$1" | sed -n 's/^key slots: \([0-9]*\) of 8 used/\1/p'; }
ok "key add on a top with a snapshot" sh -c "$VDISK --key-file key2 key add --new-key-file key3 $PW p.vdk >/dev/null"
ok_eq "$(nslots p@s1.vdk)" 2 "the snapshot file got the new slot too"
ok "the whole chain opens with the new passphrase" sh -c "$VDISK --key-file key3 check p.vdk >/dev/null"
ok "remove the old passphrase's slot" sh -c "$VDISK --key-file key3 key remove p.vdk 1 >/dev/null"
ok_eq "$(nslots p@s1.vdk)" 1 "removed from the snapshot file too"
$VDISK --key-file key2 convert -O raw p@s1.vdk x2.raw 2>err
ok_eq "$?" 1 "the removed passphrase opens no file of the chain"
ok "snapshot still opens with the remaining one" sh -c "$VDISK --key-file key3 convert -O raw p@s1.vdk s1b.raw && cmp -s pat.raw s1b.raw"
# A slot added to the snapshot file alone takes the index the next top slot wants.
ok "slot added to the snapshot file alone" sh -c "$VDISK --key-file key3 key add --new-key-file key4 $PW p@s1.vdk >/dev/null"
ok_eq "$(nslots p.vdk)" 1 "... not to the top"
ok "another key on the top" sh -c "$VDISK --key-file key3 key add --new-key-file key2 $PW p.vdk >added"
slot=$(sed -n 's/^added key slot //p' added)
ok_eq "$(nslots p@s1.vdk)" 3 "... copied to another index of the snapshot file"
ok "whole chain opens with it" sh -c "$VDISK --key-file key2 check p.vdk >/dev/null"
ok "remove it (slot $slot) from the top" sh -c "$VDISK --key-file key3 key remove p.vdk $slot >/dev/null"
ok_eq "$(nslots p@s1.vdk)" 2 "... and it is gone from the snapshot file, whatever its index there"
$VDISK --key-file key2 check p.vdk >/dev/null 2>&1
ok_eq "$?" 1 "... so it opens nothing"

# Counters never repeat within a chain: no two data blocks of p.vdk and its
# snapshot share a counter unless they are the same block (same vblock and offset in one file).
$ENTRIES p.vdk | awk '/^D/ {print $5}' >c.top
$ENTRIES p@s1.vdk | awk '/^D/ {print $5}' >c.s1
ok_eq "$(cat c.top c.s1 | sort | uniq -d | wc -l)" 0 "AEAD counters unique across the chain"
ok_eq "$(wc -l <c.top)" 16 "top holds the 16 written blocks"

done_testing
