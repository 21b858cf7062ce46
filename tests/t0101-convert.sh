#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk convert: raw -> vdk -> raw is byte-identical (cmp and qemu-img compare as
# the oracle) and sparse: holes and all-zero blocks stay holes in raw output and
# unallocated in vdk output; a chain is flattened; -p shows progress; bad
# arguments are refused and leave no output behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

# 64 MiB with data at 0, 1 MiB, 8 MiB + 4 KiB (unaligned to 64K), a written
# all-zero MiB at 16 MiB, and the last 4 KiB.
mkraw in.raw 64M "0:65536:1 1048576:196608:2 8392704:12288:3 67104768:4096:4"
dd if=/dev/zero of=in.raw bs=1M seek=16 count=1 conv=notrunc status=none

ok "convert raw -> vdk" vd convert -O vdk in.raw out.vdk
ok "vdk reads back like the raw input" same_as out.vdk in.raw
ok "convert vdk -> raw" vd convert -O raw out.vdk back.raw
ok "raw -> vdk -> raw byte-identical (cmp)" cmp in.raw back.raw
ok "qemu-img compare agrees" qemu-img compare -q -f raw -F raw in.raw back.raw
ok_eq "$(stat -c %s back.raw)" 67108864 "raw output has the full virtual size"
blocks=$(($(stat -c %b back.raw) * 512))
ok "raw output is sparse ($blocks bytes allocated for 272 KiB of data)" \
	test "$blocks" -le $((272 * 1024 + 64 * 1024))

"$VDISK" map --json out.vdk >map.json
ok "map --json is valid JSON" json_ok map.json
data=$(json_eval map.json 'my $s=0; $s += $_->{length} for grep { $_->{type} eq "data" } @$j; $s')
ok "vdk output holds only the data blocks ($data bytes for 272 KiB)" \
	test "$data" -ge $((272 * 1024)) -a "$data" -le $((272 * 1024 + 4 * 65536))
zero_mb=$(json_eval map.json 'my $n=0; for (@$j) { $n++ if $_->{type} eq "data" && $_->{start} < 17*1048576 && $_->{start}+$_->{length} > 16*1048576 } $n')
ok_eq "$zero_mb" 0 "written zeroes were not stored as data"

# Block size choice, progress and the default output format.
run_rc rc "$VDISK" convert -p --block-size 1M in.raw big.vdk
ok_eq "$rc" 0 "convert -p --block-size 1M (default -O vdk)"
ok "progress reaches 100%" grep -q "(100.00/100%)" "$T/out"
"$VDISK" info --json big.vdk >info.json
ok_eq "$(json_eval info.json '$j->[0]{"block-size"}')" 1048576 "block size 1 MiB recorded"
ok_eq "$(json_eval info.json '$j->[0]{format}')" vdk "output format vdk"
ok "1 MiB-block image reads back the same" same_as big.vdk in.raw

# A chain is flattened: overlay over a raw base, written through vdisk bench.
cp in.raw oracle.raw
ok "overlay over the raw input" vd create -b in.raw -F raw ov.vdk
vwrite ov.vdk 4096 3 4096 0x5a
owrite oracle.raw 4096 3 4096 0x5a
vwrite ov.vdk 1114112 2 65536 0xc3
owrite oracle.raw 1114112 2 65536 0xc3
ok "convert flattens the chain" vd convert -O raw ov.vdk flat.raw
ok "flattened chain equals the qemu-io oracle" cmp flat.raw oracle.raw
ok "overlay to vdk, then compared" sh -c "'$VDISK' convert ov.vdk flat.vdk"
ok "flat vdk equals the oracle" same_as flat.vdk oracle.raw
ok "the flat vdk has no backing" sh -c "'$VDISK' info flat.vdk | grep -q '^layer: 1' && exit 1 || exit 0"

# qcow2 input made by qemu-img, with -f.
qemu-img convert -f raw -O qcow2 in.raw in.qcow2
ok "convert -f qcow2 (made by qemu-img) -> raw" vd convert -f qcow2 -O raw in.qcow2 q.raw
ok "qcow2 -> raw equals the input" cmp q.raw in.raw

# Errors: clear message, non-zero status, no output file left behind.
run_rc rc "$VDISK" convert -O qcow2 in.raw x.img
ok "unknown output format refused" test "$rc" -eq 1 -a ! -e x.img
ok "  with a message" grep -q "output format is raw or vdk" "$T/err"
run_rc rc "$VDISK" convert -O vdk nonexistent.raw x.vdk
ok "missing input refused" test "$rc" -eq 1 -a ! -e x.vdk
ok "  naming the file" grep -q "^vdisk: nonexistent.raw: " "$T/err"
run_rc rc "$VDISK" convert -O vdk in.raw out.vdk
ok "existing vdk output refused" test "$rc" -eq 1
ok "  and left intact" same_as out.vdk in.raw
run_rc rc "$VDISK" convert -O raw in.raw in.raw
ok "IN = OUT refused" test "$rc" -eq 1
ok "  input untouched" cmp in.raw back.raw
run_rc rc "$VDISK" convert -O raw --block-size 64K in.raw y.raw
ok "--block-size with -O raw refused" test "$rc" -eq 1 -a ! -e y.raw
run_rc rc "$VDISK" convert in.raw
ok "missing OUT refused" test "$rc" -eq 1
done_testing
