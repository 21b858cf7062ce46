#!/bin/sh
# SPDX-License-Identifier: MIT
# Tampering with an encrypted image is detected, never read back as data:
# hundreds of random bit flips over data blocks, tree nodes and the header
# copies; a block's ciphertext copied over another block; an old version of a
# block put back where the map now points. `vdisk check` names the damaged
# block and nothing else; reads of the damaged image fail.
. "$(dirname "$0")/lib.sh"

cd "$T" || exit 1
PW="--pwhash-ops 1 --pwhash-mem 8K"
ENTRIES="perl $SRCDIR/tests/vdk-entries.pl"
ROUNDS=${VDISK_ASAN:+40}
ROUNDS=${ROUNDS:-100}	# per kind: data, node, header
printf 'tamper test key\n' >key
printf 'second key\n' >key2

randfile pat.raw 1048576 6100
ok "encrypted image from random data" \
	$VDISK --key-file key convert -f raw -O vdk --encrypt $PW pat.raw e.vdk
# key add commits twice: both header copies then describe the same tree.
ok "second key slot" sh -c "$VDISK --key-file key key add --new-key-file key2 $PW e.vdk >/dev/null"
ok "clean image checks clean" sh -c "$VDISK --key-file key check e.vdk >/dev/null"
$ENTRIES e.vdk >e.map
ok_eq "$(grep -c '^D' e.map)" 256 "256 data blocks mapped"
ok "tree nodes mapped" test "$(grep -c '^N' e.map)" -ge 1

# flip FILE OFFSET BIT
flip() {
	perl -e 'my ($f, $o, $b) = @ARGV; open F, "+<:raw", $f or die; seek F, $o, 0;
		read F, $c, 1; seek F, $o, 0; print F chr(ord($c) ^ (1 << $b)); close F' "$@"
}
# Deterministic "random" offsets: rnd N SEED -> N lines "offset bit" within [0, range)
rnd() {
	perl -e 'my ($n, $seed, @r) = @ARGV; srand($seed);
		for (1..$n) { my $k = int(rand(@r / 2)); my ($o, $l) = @r[2*$k, 2*$k+1];
		printf "%d %d\n", $o + int(rand($l)), int(rand(8)) }' "$@"
}

# Data blocks: every flip makes check report exactly that block.
awk '/^D/ {print $3, $4}' e.map | tr '\n' ' ' >d.ranges
awk '/^D/ {print $3, $2}' e.map >d.vb	# offset -> virtual block
bad=0
rnd "$ROUNDS" 1 $(cat d.ranges) >d.flips
while read -r off bit; do
	cp e.vdk t.vdk
	flip t.vdk "$off" "$bit"
	$VDISK --key-file key check t.vdk >out 2>&1
	rc=$?
	vb=$(awk -v o=$((off - off % 4096)) '$1 == o {print $2}' d.vb)
	if [ $rc -ne 2 ] || [ "$(grep -c '^ERROR' out)" -ne 1 ] ||
		! grep -q "block $vb (" out; then
		diag "data flip at $off bit $bit (block $vb): check rc $rc"
		bad=$((bad + 1))
	fi
done <d.flips
ok_eq "$bad" 0 "$ROUNDS data-block bit flips: each reported as exactly its block"
# And a read of the damaged disk fails instead of returning data.
cp e.vdk t.vdk
flip t.vdk "$(head -1 d.flips | cut -d' ' -f1)" 3
$VDISK --key-file key convert -O raw t.vdk t.raw 2>err
ok_eq "$?" 1 "reading a damaged block fails"
ok "the error names the block" grep -q 'authentication failed' err

# Tree node: any flip (used or unused entries) fails the node MAC.
bad=0
rnd "$ROUNDS" 2 $(awk '/^N/ {print $4, $5}' e.map) >n.flips
while read -r off bit; do
	cp e.vdk t.vdk
	flip t.vdk "$off" "$bit"
	$VDISK --key-file key check t.vdk >out 2>&1
	rc=$?
	if [ $rc -ne 2 ] && [ $rc -ne 1 ]; then
		diag "node flip at $off bit $bit: check rc $rc"
		bad=$((bad + 1))
	fi
	if $VDISK --key-file key convert -O raw t.vdk t.raw 2>/dev/null; then
		diag "node flip at $off bit $bit: image still reads"
		bad=$((bad + 1))
	fi
	rm -f t.raw
done <n.flips
ok_eq "$bad" 0 "$ROUNDS tree-node bit flips: each detected by check and by reads"

# Header copies: a flip is detected (open or check fails), or the other copy,
# which describes the same tree, is used: never different data.
bad=0
silent=0
rnd "$ROUNDS" 3 0 8192 >h.flips
while read -r off bit; do
	cp e.vdk t.vdk
	flip t.vdk "$off" "$bit"
	if $VDISK --key-file key check t.vdk >/dev/null 2>&1; then
		if ! $VDISK --key-file key convert -O raw t.vdk t.raw 2>/dev/null ||
			! cmp -s t.raw pat.raw; then
			diag "header flip at $off bit $bit: wrong data read back"
			bad=$((bad + 1))
		fi
		silent=$((silent + 1))
		rm -f t.raw
	fi
done <h.flips
ok_eq "$bad" 0 "$ROUNDS header bit flips: detected or harmless, never wrong data"
diag "header flips absorbed by the other header copy: $silent of $ROUNDS"

# A header copy damaged while the other one holds an older tree: opening falls back to
# the older generation (crash recovery). `vdisk check` should say so.
cp e.vdk t.vdk
ok "one more commit (older copy now holds older state)" \
	$VDISK --key-file key bench -q -w --pattern 0x33 -c 1 -s 4096 -o 8192 -d 1 t.vdk
active=$($ENTRIES t.vdk | awk '/^A/ {print $2}')
flip t.vdk $((active * 4096 + 200)) 0
$VDISK --key-file key check t.vdk >out 2>&1
rc=$?
ok "damaged newest header copy reported by check (rc $rc)" test "$rc" -ne 0
diag "$(grep -i header out | head -1)"

# A block copied over another: check names the overwritten block only.
set -- $(awk '/^D/ && $2 == 5 {print $3}' e.map) $(awk '/^D/ && $2 == 9 {print $3}' e.map)
cp e.vdk t.vdk
dd if=e.vdk of=t.vdk bs=4096 skip=$(($1 / 4096)) seek=$(($2 / 4096)) count=1 conv=notrunc 2>/dev/null
$VDISK --key-file key check t.vdk >out 2>&1
ok_eq "$?" 2 "block 5 copied over block 9: check finds damage"
ok_eq "$(grep '^ERROR' out | grep -c 'block 9 (')" 1 "... and names block 9"
ok_eq "$(grep -c '^ERROR' out)" 1 "... and nothing else"
# Swap two blocks' ciphertexts.
cp e.vdk t.vdk
dd if=e.vdk of=t.vdk bs=4096 skip=$(($1 / 4096)) seek=$(($2 / 4096)) count=1 conv=notrunc 2>/dev/null
dd if=e.vdk of=t.vdk bs=4096 skip=$(($2 / 4096)) seek=$(($1 / 4096)) count=1 conv=notrunc 2>/dev/null
$VDISK --key-file key check t.vdk >out 2>&1
ok_eq "$(grep -c '^ERROR' out)" 2 "blocks 5 and 9 swapped: both reported"

# An old version of a block put back: block 3 rewritten (copy-on-write puts
# the new version elsewhere), then the old ciphertext copied over the new one.
old=$(awk '/^D/ && $2 == 3 {print $3}' e.map)
cp e.vdk t.vdk
ok "rewrite block 3" $VDISK --key-file key bench -q -w --pattern 0x77 -c 1 -s 4096 -o 12288 -d 1 t.vdk
new=$($ENTRIES t.vdk | awk '/^D/ && $2 == 3 {print $3}')
ok "new version went elsewhere" test "$new" != "$old"
dd if=e.vdk of=t.vdk bs=4096 skip=$((old / 4096)) seek=$((new / 4096)) count=1 conv=notrunc 2>/dev/null
$VDISK --key-file key check t.vdk >out 2>&1
ok_eq "$?" 2 "old version of block 3 put back: detected"
ok "... naming block 3" grep -q 'block 3 (' out

done_testing
