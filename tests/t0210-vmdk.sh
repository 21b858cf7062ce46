#!/bin/sh
# SPDX-License-Identifier: MIT
# VMDK reader against qemu-img: every subformat qemu-img writes (monolithicSparse,
# monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized), extents
# split across the 2 GiB boundary, zeroed grains, sparse delta chains with CID
# checks, mixed chains (qcow2 over vmdk), and corrupt headers/tables.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/foreign-lib.sh"
cd "$T" || exit 1

M=1048576
rnd data.raw $((6 * M))
dd if=/dev/zero of=data.raw bs=1M seek=1 count=1 conv=notrunc 2>/dev/null
truncate -s 9M data.raw
for st in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized; do
	$QI convert -f raw -O vmdk -o subformat=$st data.raw c-$st.vmdk
	same "convert $st" c-$st.vmdk
done
ok "8 threads of random reads agree: streamOptimized" "$FCAT" -T 8 c-streamOptimized.vmdk
ok "8 threads of random reads agree: twoGbMaxExtentSparse" "$FCAT" -T 8 c-twoGbMaxExtentSparse.vmdk
# Partial last grain (size not a multiple of 64 KiB).
head -c $((3 * M + 1536)) /dev/urandom >odd.raw
for st in monolithicSparse streamOptimized; do
	$QI convert -f raw -O vmdk -o subformat=$st odd.raw odd-$st.vmdk
	same "odd size $st" odd-$st.vmdk
done

# Writes across the 2 GiB extent boundary of the split subformats.
big="twoGbMaxExtentSparse twoGbMaxExtentFlat monolithicSparse"
[ "${VDISK_ASAN:-0}" = 1 ] && big="twoGbMaxExtentSparse"
for st in $big; do
	$QI create -q -f vmdk -o subformat=$st b-$st.vmdk 2200M
	qwrite b-$st.vmdk vmdk 0:65536 $((2047 * M + 4096)):$((2 * M)) $((2199 * M)):$M
	same "2 GiB boundary $st" b-$st.vmdk
done
rnd tail.raw $M
$QI create -q -f raw bs.raw 2100M
dd if=tail.raw of=bs.raw bs=1M seek=2047 conv=notrunc 2>/dev/null
$QI convert -f raw -O vmdk -o subformat=streamOptimized bs.raw b-stream.vmdk
rm -f bs.raw
same "2 GiB boundary streamOptimized" b-stream.vmdk

# Zeroed grains (zeroed_grain=on) and sparse deltas (qemu-img create -b).
$QI create -q -f vmdk -o zeroed_grain=on zg.vmdk 16M
qwrite zg.vmdk vmdk 0:$((4 * M))
qemu-io -f vmdk -c "write -z $M $M" zg.vmdk >/dev/null
same "zeroed grains" zg.vmdk
ok "zeroed grains: map shows zero" sh -c "'$FCAT' -m zg.vmdk | grep -q zero"
$QI create -q -f vmdk base.vmdk 16M
qwrite base.vmdk vmdk 0:$((8 * M))
prev=base.vmdk
for i in 1 2 3; do
	$QI create -q -f vmdk -b $prev -F vmdk d$i.vmdk
	qwrite d$i.vmdk vmdk $((i * M + 512)):$((M / 2)) $((12 * M + i * 65536)):4096
	same "sparse delta depth $i" d$i.vmdk
	prev=d$i.vmdk
done
ok_eq "$("$FCAT" -i d3.vmdk | awk '{print $5}' | tr '\n' ' ')" \
	"backing=d2.vmdk backing=d1.vmdk backing=base.vmdk backing=- " "delta chain backing names"
# Deltas whose descriptor is a separate file (split sparse), over split and flat bases.
$QI create -q -f vmdk -o subformat=twoGbMaxExtentSparse tb.vmdk 8M
qwrite tb.vmdk vmdk 0:$((4 * M))
$QI create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b tb.vmdk -F vmdk tbd.vmdk
qwrite tbd.vmdk vmdk $M:$M
same "split sparse delta over split sparse base" tbd.vmdk
$QI create -q -f vmdk -o subformat=monolithicFlat fb.vmdk 4M
qwrite fb.vmdk vmdk 0:$M
$QI create -q -f vmdk -b fb.vmdk -F vmdk fbd.vmdk
qwrite fbd.vmdk vmdk $((M / 2)):4096
same "sparse delta over a flat base" fbd.vmdk
# A parent modified after the snapshot: CID mismatch is refused.
cp base.vmdk pbase.vmdk
$QI create -q -f vmdk -b pbase.vmdk -F vmdk pd.vmdk
qwrite pbase.vmdk vmdk 0:4096
refuses "modified parent" "CID mismatch" pd.vmdk

# A mixed chain: qcow2 overlay over a VMDK base.
$QI create -q -f qcow2 -b c-monolithicSparse.vmdk -F vmdk q-over-v.qcow2
qwrite q-over-v.qcow2 qcow2 $((M / 2)):$M
same "qcow2 over vmdk" q-over-v.qcow2

# Hostile input.
cp c-monolithicSparse.vmdk g.vmdk
printf '\377\377\377\177' | dd of=g.vmdk bs=1 seek=44 conv=notrunc 2>/dev/null
refuses "huge grain table" "grain table" g.vmdk
cp c-monolithicSparse.vmdk gd.vmdk
gdo=$(od -An -tu8 -j56 -N8 gd.vmdk | tr -d ' ')
printf '\377\377\377\017' | dd of=gd.vmdk bs=1 seek=$((gdo * 512)) conv=notrunc 2>/dev/null
out=$("$FCAT" gd.vmdk 2>&1 >/dev/null)
ok "grain table outside the file: EIO naming it ($out)" sh -c "printf '%s' \"\$1\" | grep -q 'grain table 0 outside'" _ "$out"
cp c-streamOptimized.vmdk so.vmdk
sz=$(stat -c %s so.vmdk)
dd if=/dev/urandom of=so.vmdk bs=1 seek=$((sz / 2)) count=4096 conv=notrunc 2>/dev/null
no_crash "streamOptimized with garbage in the grains" so.vmdk
head -c 300000 c-twoGbMaxExtentSparse-s001.vmdk >tr-s001.vmdk
sed 's/c-twoGbMaxExtentSparse-s001/tr-s001/' c-twoGbMaxExtentSparse.vmdk >tr.vmdk
no_crash "truncated sparse extent" tr.vmdk
printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 100 FLAT "/dev/stdin" 0\n' >fifo.vmdk
refuses "extent that is not a regular file" "not a regular file" fifo.vmdk
printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 99999999999999999 FLAT "x" 0\n' >huge.vmdk
refuses "absurd extent size" "bad size" huge.vmdk
printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 100 FLAT "missing-flat.vmdk" 0\n' >miss.vmdk
refuses "missing extent file" "missing-flat.vmdk" miss.vmdk
# check on a truncated sparse extent: each bad grain once (was: a bad grain reported
# again for every hole grain before it, the count inflated).
head -c 65536 c-monolithicSparse.vmdk >trc.vmdk
"$VDISK" check trc.vmdk >trc.out 2>&1
rc=$?
ok "check of a truncated monolithicSparse: exit 2" test "$rc" -eq 2
ok "  no grain reported twice" sh -c "[ -z \"\$(grep '^ERROR' trc.out | sort | uniq -d)\" ]"
ok "  the count is the number of lines" sh -c "grep -q \"^\$(grep -c '^ERROR' trc.out) errors were found\" trc.out"
# The last data grain cut short by a truncation: reads give zeroes there (as qemu's do),
# so check must say so.
$QI create -q -f vmdk te.vmdk 1M
qemu-io -f vmdk -c "write -P 0xff 0 64k" te.vmdk >/dev/null
truncate -s -1 te.vmdk
"$VDISK" check te.vmdk >te.out 2>&1
rc=$?
ok "check of a vmdk whose last grain is cut short: exit 2" test "$rc" -eq 2
ok "  names it" grep -q "runs past the end of the file" te.out
done_testing
