#!/bin/sh
# SPDX-License-Identifier: MIT
# qcow2 reader against qemu-img: v2/v3, cluster sizes 512 B..2 MiB, zlib and zstd
# compressed clusters, extended L2 (subclusters), zero clusters, external data
# file, backing chains of depth 1..8, internal snapshots, LUKS refused, corruption.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/foreign-lib.sh"
cd "$T" || exit 1

M=1048576
# Cluster sizes and compat levels.
for cs in 512 4096 65536 2097152; do
	for compat in 0.10 1.1; do
		f=c$cs-$compat.qcow2
		$QI create -q -f qcow2 -o cluster_size=$cs,compat=$compat $f 24M
		qwrite $f qcow2 0:65536 $((3 * M + 1000)):$((2 * M)) $((23 * M + 512)):$((M - 512))
		qemu-io -f qcow2 -c "write -z $((4 * M)) 8192" $f >/dev/null
		same "cluster $cs compat $compat" $f
	done
done

# Compressed clusters: zlib and zstd, mixed with plain and zero clusters.
rnd data.raw $((6 * M))
dd if=/dev/zero of=data.raw bs=1M seek=2 count=1 conv=notrunc 2>/dev/null
head -c $((2 * M)) /dev/zero | tr '\0' 'A' | dd of=data.raw bs=1M seek=4 conv=notrunc 2>/dev/null
truncate -s 16M data.raw
for ct in zlib zstd; do
	for cs in 4096 65536 2097152; do
		$QI convert -c -f raw -O qcow2 -o compression_type=$ct,cluster_size=$cs data.raw z.qcow2
		qwrite z.qcow2 qcow2 $((M + 4096)):12288
		same "compressed $ct cluster $cs" z.qcow2
	done
	$QI create -q -f qcow2 -o compression_type=$ct zw.qcow2 8M
	rnd w.bin 65536
	qemu-io -f qcow2 -c "write -c -s w.bin 0 64k" -c "write -c -P 0x5a 128k 64k" zw.qcow2 >/dev/null
	same "qemu-io compressed writes $ct" zw.qcow2
done

# Extended L2: subcluster writes, zeroes and discards.
for cs in 16384 65536 2097152; do
	$QI create -q -f qcow2 -o extended_l2=on,cluster_size=$cs e.qcow2 16M
	sc=$((cs / 32))
	qwrite e.qcow2 qcow2 $sc:$sc $((5 * sc)):$((3 * sc)) $((4 * M)):$((M + 7 * sc))
	qemu-io -f qcow2 -c "write -z $((4 * M + 2 * sc)) $sc" e.qcow2 >/dev/null
	same "extended_l2 cluster $cs" e.qcow2
	$QI create -q -f qcow2 -o extended_l2=on,cluster_size=$cs -b e.qcow2 -F qcow2 eo.qcow2
	qwrite eo.qcow2 qcow2 $((2 * sc)):$sc $((4 * M + 5 * sc)):$((2 * sc))
	qemu-io -f qcow2 -c "write -z $sc $sc" eo.qcow2 >/dev/null
	same "extended_l2 overlay cluster $cs" eo.qcow2
done

# External data file.
$QI create -q -f qcow2 -o data_file=ext.raw d.qcow2 8M
qwrite d.qcow2 qcow2 0:4096 $((3 * M)):$M
same "external data file" d.qcow2
$QI create -q -f qcow2 -o data_file=ext2.raw,data_file_raw=on d2.qcow2 8M
qwrite d2.qcow2 qcow2 0:65536 $((5 * M)):$((M / 2))
same "external raw data file" d2.qcow2

# Backing chains of depth 1..8, every layer writing somewhere.
depth=8
[ "${VDISK_ASAN:-0}" = 1 ] && depth=4
$QI create -q -f qcow2 l0.qcow2 32M
qwrite l0.qcow2 qcow2 0:$((8 * M))
i=1
while [ $i -le $depth ]; do
	$QI create -q -f qcow2 -b l$((i - 1)).qcow2 -F qcow2 l$i.qcow2
	qwrite l$i.qcow2 qcow2 $((i * M + i * 4096)):$((M / 2)) $((20 * M + i * 65536)):4096
	qemu-io -f qcow2 -c "write -z $((i * 3 * M)) 65536" l$i.qcow2 >/dev/null
	same "chain depth $i" l$i.qcow2
	i=$((i + 1))
done
ok "8 threads of random reads agree on the depth-$depth chain" "$FCAT" -T 8 l$depth.qcow2
ok "8 threads of random reads agree on compressed clusters" "$FCAT" -T 8 z.qcow2
# A raw base under a qcow2 overlay (the format is recorded, so raw is allowed).
rnd base.raw $((4 * M))
$QI create -q -f qcow2 -b base.raw -F raw ov.qcow2
qwrite ov.qcow2 qcow2 4096:4096
same "qcow2 over raw" ov.qcow2
# A smaller backing file: the overlay reads zeroes past its end.
$QI create -q -f qcow2 small.qcow2 2M
qwrite small.qcow2 qcow2 0:$((2 * M))
$QI create -q -f qcow2 -b small.qcow2 -F qcow2 big.qcow2 6M
same "overlay larger than its backing" big.qcow2

# Internal snapshots.
$QI create -q -f qcow2 s.qcow2 8M
qwrite s.qcow2 qcow2 0:$M
$QI snapshot -c first s.qcow2
qwrite s.qcow2 qcow2 $((M / 2)):$M
$QI snapshot -c second s.qcow2
qwrite s.qcow2 qcow2 $((3 * M)):$M
same "internal snapshots: current" s.qcow2
ok_eq "$("$FCAT" -S s.qcow2 | cut -d' ' -f2 | tr '\n' ' ')" "first second " "internal snapshot names"
FCAT_OPTS="-s 0" same "internal snapshot first" s.qcow2 -l snapshot.name=first
FCAT_OPTS="-s 1" same "internal snapshot second" s.qcow2 -l snapshot.name=second

# LUKS encryption is refused clearly.
# qemu-img times its PBKDF when it makes the LUKS header and gives up ("Unable to get
# accurate CPU usage") when the machine is busy: try a few times.
for _try in 1 2 3 4 5; do
	$QI create -q -f qcow2 --object secret,id=s0,data=pw \
		-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=200 lk.qcow2 4M 2>/dev/null &&
		break
	rm -f lk.qcow2
	sleep 1
done
refuses "LUKS qcow2" "not supported yet" lk.qcow2

# Corruption: an L1 entry pointing past the end, a truncated file, garbage header fields.
$QI create -q -f qcow2 bad.qcow2 16M
qwrite bad.qcow2 qcow2 0:$M
l1=$(od -An -tu8 -j40 -N8 --endian=big bad.qcow2 | tr -d ' ')
printf '\177\377\377\377\377\377\0\0' | dd of=bad.qcow2 bs=1 seek="$l1" conv=notrunc 2>/dev/null
out=$("$FCAT" bad.qcow2 2>&1 >/dev/null)
ok "bad L1 entry: EIO naming it ($out)" sh -c "printf '%s' \"\$1\" | grep -q 'L1 entry 0'" _ "$out"
ok "bad L1 entry: check reports it" sh -c "'$FCAT' -c bad.qcow2 | grep -q corrupt"
$QI create -q -f qcow2 tr.qcow2 16M
qwrite tr.qcow2 qcow2 0:$((4 * M))
truncate -s 300000 tr.qcow2
# A middle layer smaller than the layer below it hides what lies below past its end
# (and a vdk layer in the chain does the same).
$QI create -q -f qcow2 sb.qcow2 5M
qemu-io -f qcow2 -c 'write -P 0x11 0 5M' sb.qcow2 >/dev/null
$QI create -q -f qcow2 -b sb.qcow2 -F qcow2 sm.qcow2 2M
$QI create -q -f qcow2 -b sm.qcow2 -F qcow2 st.qcow2 6M
same "a smaller middle layer hides the base past its end" st.qcow2
"$VDISK" create -s 2M -b sb.qcow2 sn2.vdk >/dev/null && "$VDISK" create -s 6M -b sn2.vdk sn3.vdk >/dev/null
ok "the same with a vdk middle layer" sh -c "'$VDISK' convert -O raw sn3.vdk sn3.raw &&
	$QI convert -O raw st.qcow2 st.raw && cmp -s sn3.raw st.raw"
no_crash "truncated qcow2" tr.qcow2
$QI create -q -f qcow2 hd.qcow2 16M
printf '\377\377\377\377' | dd of=hd.qcow2 bs=1 seek=36 conv=notrunc 2>/dev/null
refuses "huge L1 size" "L1 table" hd.qcow2
# check on truncated images: each bad cluster once (was: a bad cluster reported again
# for every hole or zero subcluster before it in the same L2 table).
for o in extended_l2=on cluster_size=512; do
	head -c $((2 * M)) /dev/urandom >tc.raw
	dd if=/dev/zero of=tc.raw bs=4096 seek=1 count=2 conv=notrunc 2>/dev/null
	$QI convert -f raw -O qcow2 -o $o tc.raw tc.qcow2
	truncate -s $(($(stat -c %s tc.qcow2) / 2)) tc.qcow2
	"$VDISK" check tc.qcow2 >tc.out 2>&1
	rc=$?
	ok "check of a truncated qcow2 ($o): exit 2" test "$rc" -eq 2
	ok "  no cluster reported twice" sh -c "[ -z \"\$(grep '^ERROR' tc.out | sort | uniq -d)\" ]"
done
# The last data cluster cut short by a truncation: reads give zeroes there (as qemu's do),
# so check must say so.
$QI create -q -f qcow2 te.qcow2 1M
qemu-io -f qcow2 -c "write -P 0xff 0 64k" te.qcow2 >/dev/null
truncate -s -1 te.qcow2
"$VDISK" check te.qcow2 >te.out 2>&1
rc=$?
ok "check of a qcow2 whose last cluster is cut short: exit 2" test "$rc" -eq 2
ok "  names it" grep -q "runs past the end of the file" te.out
# The same with an external data file cut short.
head -c $((2 * M)) /dev/urandom >tdf.raw
$QI convert -f raw -O qcow2 -o data_file=tdf.data tdf.raw tdf.qcow2
truncate -s $M tdf.data
"$VDISK" check tdf.qcow2 >tdf.out 2>&1
rc=$?
ok "check of a qcow2 whose data file is cut short: exit 2" test "$rc" -eq 2
ok "  names it" grep -q "runs past the end of the data file" tdf.out
done_testing
