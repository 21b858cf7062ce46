#!/bin/sh
# SPDX-License-Identifier: MIT
# VHD ("vpc") and VHDX readers against qemu-img (fixed and dynamic, written by
# qemu-img), and differencing chains built by tests/gen-vhd.py from the specs
# (qemu-img writes none): each chain member reads as the generator says it does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/foreign-lib.sh"
cd "$T" || exit 1

M=1048576
rnd data.raw $((5 * M))
dd if=/dev/zero of=data.raw bs=1M seek=2 count=1 conv=notrunc 2>/dev/null
truncate -s 13M data.raw
for o in subformat=dynamic subformat=fixed subformat=dynamic,force_size=on \
	subformat=fixed,force_size=on; do
	$QI convert -f raw -O vpc -o $o data.raw v.vhd
	qwrite v.vhd vpc $((7 * M + 512)):$((M + 4096))
	FCAT_OPTS="-f vhd" same "vpc $o" v.vhd -f vpc
done
# A fixed VHD probes as vhd by its name (its footer is at the end only).
$QI convert -f raw -O vpc -o subformat=fixed data.raw fixed.vhd
qsize=$($QI info -f vpc fixed.vhd | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p' | head -1)
ok_eq "$("$FCAT" -i fixed.vhd | awk '{print $2, $3}')" "vhd size=$qsize" "fixed .vhd probed by name"
for o in subformat=dynamic subformat=fixed subformat=dynamic,block_size=1M \
	subformat=dynamic,block_size=8M,log_size=1M; do
	$QI convert -f raw -O vhdx -o $o data.raw v.vhdx
	qwrite v.vhdx vhdx $((9 * M)):$((M / 2))
	qemu-io -f vhdx -c "write -z $M $M" v.vhdx >/dev/null
	same "vhdx $o" v.vhdx
done

# Differencing chains from the generator.
python3 "$SRCDIR/tests/gen-vhd.py" gen 7 || exit 1
for f in base.vhd diff1.vhd diff2.vhd base.vhdx diff1.vhdx diff2.vhdx base-4k.vhdx \
	diff1-4k.vhdx diff2-4k.vhdx; do
	ok "generated $f reads as expected" sh -c "'$FCAT' gen/$f | cmp -s - gen/expect-$f.raw"
	if [ -x "$VDISK" ]; then
		ok "generated $f: vdisk convert" sh -c "'$VDISK' convert -O raw gen/$f gen/out.raw && cmp -s gen/out.raw gen/expect-$f.raw"
	fi
done
for f in base.vhd base.vhdx; do
	ok "qemu-img agrees with the generator on $f" sh -c "$QI convert -O raw gen/$f gen/q.raw && cmp -s gen/q.raw gen/expect-$f.raw"
done
ok_eq "$("$FCAT" -i gen/diff2.vhd | awk '{print $5}' | tr '\n' ' ')" \
	"backing=diff1.vhd backing=base.vhd backing=- " "vhd chain through parent locators"
ok_eq "$("$FCAT" -i gen/diff2.vhdx | awk '{print $5}' | tr '\n' ' ')" \
	"backing=diff1.vhdx backing=base.vhdx backing=- " "vhdx chain through parent locators"
ok "8 threads of random reads agree: vhd chain" "$FCAT" -T 8 gen/diff2.vhd
ok "8 threads of random reads agree: vhdx chain" "$FCAT" -T 8 gen/diff2.vhdx
refuses "vhdx with a stale parent_linkage" "modified after" gen/stale.vhdx
refuses "vhdx with an active log" "log holds unapplied" gen/log.vhdx
# A VHD parent replaced by another disk: unique ID mismatch.
cp gen/base.vhd gen/keep.vhd
python3 "$SRCDIR/tests/gen-vhd.py" gen2 8 && cp gen2/base.vhd gen/base.vhd
refuses "vhd parent with another unique ID" "different unique ID" gen/diff1.vhd
cp gen/keep.vhd gen/base.vhd

# Hostile input.
cp gen/diff1.vhd gen/bat.vhd
printf '\177\377\377\377' | dd of=gen/bat.vhd bs=1 seek=1536 conv=notrunc 2>/dev/null
out=$("$FCAT" -m gen/bat.vhd 2>&1 >/dev/null)
ok "vhd BAT entry outside the file: EIO naming it ($out)" sh -c "printf '%s' \"\$1\" | grep -q 'block 0 '" _ "$out"
cp gen/base.vhd ck.vhd
printf 'X' | dd of=ck.vhd bs=1 seek=600 conv=notrunc 2>/dev/null
refuses "vhd dynamic header checksum" "bad dynamic header" ck.vhd
cp gen/base.vhdx hb.vhdx
printf '\005' | dd of=hb.vhdx bs=1 seek=$((3 * M)) conv=notrunc 2>/dev/null
out=$("$FCAT" hb.vhdx 2>&1 >/dev/null)
ok "vhdx BAT entry with a bad state: EIO ($out)" sh -c "printf '%s' \"\$1\" | grep -q 'BAT entry state'" _ "$out"
cp gen/base.vhdx rt.vhdx
dd if=/dev/urandom of=rt.vhdx bs=1 seek=$((192 * 1024 + 20)) count=16 conv=notrunc 2>/dev/null
dd if=/dev/urandom of=rt.vhdx bs=1 seek=$((256 * 1024 + 20)) count=16 conv=notrunc 2>/dev/null
refuses "vhdx region tables with bad CRCs" "region table" rt.vhdx
head -c 300000 gen/base.vhdx >tr.vhdx
refuses "truncated vhdx" "VHDX" tr.vhdx
# A dynamic VHD whose footer at the end is damaged (the copy at offset 0 still reads):
# check names the footer, not the last block (which is intact).
$QI create -q -f vpc -o subformat=dynamic tf.vhd 6M
qemu-io -f vpc -c "write -P 5 4M 2M" tf.vhd >/dev/null
truncate -s -1 tf.vhd
"$VDISK" check tf.vhd >tf.out 2>&1
rc=$?
ok "vhd with a damaged end footer: check exits 2" test "$rc" -eq 2
ok "  and names the footer" grep -q "footer at the end of the file" tf.out
ok "  not a block" sh -c "! grep -q 'runs past the end' tf.out"
done_testing
