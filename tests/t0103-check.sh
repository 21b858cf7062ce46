#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk check: exit 0 on clean images and chains, 2 when a data block or the
# metadata was damaged (the bad block is named, reads of it fail, the rest
# still reads), 1 when it cannot run; --json is valid and agrees; damaged,
# truncated and garbage files never crash the tool.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

"$VDISK" create -s 32M --block-size 64K c.vdk
vwrite c.vdk 0 16 65536 0x5a
vwrite c.vdk 8388608 4 65536 0xa7
run_rc rc "$VDISK" check c.vdk
ok_eq "$rc" 0 "clean image: exit 0"
ok "  says so" grep -q "^No errors were found on the image." "$T/out"
"$VDISK" check --json c.vdk >clean.json
ok "check --json valid" json_ok clean.json
ok_eq "$(json_eval clean.json '$j->{clean} ? 1 : 0')" 1 "json: clean"
ok "json: checked at least the 1.25 MiB of data" \
	test "$(json_eval clean.json '$j->{"bytes-checked"}')" -ge $((20 * 65536))

"$VDISK" snapshot create c.vdk s1
vwrite c.vdk 65536 2 65536 0x3c
"$VDISK" create -b c.vdk ov.vdk
vwrite ov.vdk 131072 1 65536 0x77
ok "clean chain of 3 layers: exit 0" vd check ov.vdk
"$VDISK" check --json ov.vdk >chain.json
ok_eq "$(json_eval chain.json '$j->{layers}')" 3 "json: 3 layers checked"

# Flip one byte inside a stored data block of the 0xa7 pattern (frozen in s1's file,
# or in c.vdk: search every file of the chain for it).
for f in *; do
	off=$(perl -e 'local $/; open my $h, "<", $ARGV[0] or exit; binmode $h; my $d = <$h>; my $i = index($d, chr(0xa7) x 65536); print $i if $i >= 0' "$f")
	if [ -n "$off" ]; then
		hit=$f
		break
	fi
done
ok "found the stored data block (${hit:-none} @ ${off:-?})" test -n "${off:-}"
cp "$hit" "$hit.orig"
printf '\001' | dd of="$hit" bs=1 seek=$((off + 1000)) conv=notrunc status=none
run_rc rc "$VDISK" check ov.vdk
ok_eq "$rc" 2 "damaged data block: exit 2"
ok "  an ERROR line names the layer" grep -q "^ERROR: layer [0-9]" "$T/out"
ok "  and the summary counts it" grep -q "error.* found on the image" "$T/out"
"$VDISK" check --json ov.vdk >bad.json
ok_eq "$(json_eval bad.json '$j->{clean} ? 1 : 0')" 0 "json: not clean"
ok "json: a corrupt finding" test "$(json_eval bad.json 'scalar grep { $_->{severity} eq "corrupt" } @{$j->{findings}}')" -ge 1
run_rc rc "$VDISK" convert -O raw ov.vdk out.raw
ok "reading the damaged block fails" test "$rc" -eq 1
ok "  with an error naming the block, not bad data" grep -qi "block\|checksum" "$T/err"
run_rc rc "$VDISK" bench -q -c 1 -s 65536 -o 0 -d 1 ov.vdk
ok "the rest of the disk still reads" test "$rc" -eq 0
mv "$hit.orig" "$hit"
ok "restored: clean again" vd check ov.vdk

# Metadata damage: flip bytes across the first 64 KiB of the top's file, one
# copy per position; each copy must be refused or reported, never crash.
crashes=0
found=0
for pos in 8 64 100 200 512 1024 4096 4200 8192 12288 16384 32768 65535; do
	cp c.vdk m.vdk
	size=$(stat -c %s m.vdk)
	[ "$pos" -lt "$size" ] || continue
	perl -e 'open my $h, "+<", $ARGV[0] or die; binmode $h; seek $h, $ARGV[1], 0; read $h, my $b, 1; seek $h, $ARGV[1], 0; print $h chr(ord($b) ^ 0x5a); close $h' m.vdk "$pos"
	"$VDISK" check m.vdk >/dev/null 2>&1
	rc=$?
	[ "$rc" -ge 128 ] && crashes=$((crashes + 1))
	[ "$rc" -ne 0 ] && found=$((found + 1))
	"$VDISK" info m.vdk >/dev/null 2>&1
	[ $? -ge 128 ] && crashes=$((crashes + 1))
done
ok_eq "$crashes" 0 "metadata flips: no crash in check or info"
ok "metadata flips: most are detected ($found)" test "$found" -ge 3

# Truncated and garbage files.
head -c 4096 c.vdk >trunc.vdk
run_rc rc "$VDISK" check trunc.vdk
ok "truncated image: non-zero, no crash ($rc)" test "$rc" -ne 0 -a "$rc" -lt 128
ok "  with a message naming it" grep -q "^vdisk: trunc.vdk: " "$T/err"
head -c 512 c.vdk >garbage.vdk
head -c 65536 /dev/urandom >>garbage.vdk
run_rc rc "$VDISK" check garbage.vdk
ok "header + garbage: non-zero, no crash ($rc)" test "$rc" -ne 0 -a "$rc" -lt 128
run_rc rc "$VDISK" check missing.vdk
ok_eq "$rc" 1 "missing file: exit 1"
ok "  'vdisk: missing.vdk: ...'" grep -q "^vdisk: missing.vdk: " "$T/err"
run_rc rc "$VDISK" check
ok_eq "$rc" 1 "no FILE: exit 1"
done_testing
