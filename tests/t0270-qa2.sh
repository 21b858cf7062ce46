#!/bin/sh
# SPDX-License-Identifier: MIT
# Second QA pass (branch qa2): foreign images and vdisk commands the way a new user
# meets them. Images qemu-img makes that the other tests do not cover (a VHDX of 0
# bytes), images of formats the library does not read (qcow v1, VDI, QED,
# Parallels, LUKS: refused by name, never read as raw bytes), and the CLI mistakes
# of a qemu-img user (`create FILE SIZE`, `-f vpc`, `info -f`, fractional sizes,
# swapped operands, OUT named .img or .qcow2, OUT '-', a symlink OUT), check findings
# (QEMU's corrupt flag, a VMDK extent size the header contradicts), VMDK sparse files
# with capacity 0, backing names that are QEMU protocols, vdisk-target on a read-only file.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/foreign-lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

M=1048576

# ---- Images of 0 bytes: qemu-img makes them and reads them as an empty disk.
: >empty.raw
$QI convert -q -f raw -O vhdx empty.raw empty.vhdx
run_rc rc "$VDISK" info empty.vhdx
ok "vhdx of 0 bytes: info (was: bad virtual size 0)" sh -c "[ $rc -eq 0 ] && grep -q '(0 bytes)' '$T/out'"
same "vhdx of 0 bytes" empty.vhdx
run_rc rc "$VDISK" check empty.vhdx
ok "vhdx of 0 bytes: check clean" test "$rc" -eq 0
run_rc rc "$VDISK" convert empty.vhdx empty.vdk
ok "convert of an empty disk to vdk: exit 1" test "$rc" -eq 1
ok "  says why (was: 'a size is needed (-s SIZE)')" grep -q "disk of 0 bytes" "$T/err"
ok "  no OUT left" test ! -e empty.vdk

# ---- Formats qemu knows and we do not read: refused by name (were probed as raw).
$QI create -q -f qcow v1.qcow 4M
qemu-io -f qcow -c "write -P 5 0 64k" v1.qcow >/dev/null
run_rc rc "$VDISK" info v1.qcow
ok "qcow v1: info refuses it" sh -c "[ $rc -eq 1 ] && grep -q \"qcow version 1\" '$T/err'"
run_rc rc "$VDISK" convert -O raw v1.qcow v1.raw
ok "qcow v1: convert refuses it, nothing written" sh -c "[ $rc -eq 1 ] && [ ! -e v1.raw ]"
$QI create -q -f qcow2 v4.qcow2 4M
printf '\0\0\0\4' | dd of=v4.qcow2 bs=1 seek=4 conv=notrunc 2>/dev/null
run_rc rc "$VDISK" map v4.qcow2
ok "qcow2 version 4: refused, not raw" sh -c "[ $rc -eq 1 ] && grep -q 'unsupported qcow2 version 4' '$T/err'"
for f in vdi qed parallels; do
	$QI create -q -f $f u.$f 4M
	run_rc rc "$VDISK" info u.$f
	ok "$f: info refuses it by name" sh -c "[ $rc -eq 1 ] && grep -q 'images are not supported' '$T/err'"
	run_rc rc "$VDISK" create -b u.$f ov-$f.vdk
	ok "$f: not taken as a backing file" sh -c "[ $rc -eq 1 ] && [ ! -e ov-$f.vdk ]"
done
# A LUKS header's magic and version (qemu-img's PBKDF timing fails on a busy machine).
printf 'LUKS\272\276\0\1' >u.luks
truncate -s 4M u.luks
run_rc rc "$VDISK" convert -O raw u.luks u.raw
ok "LUKS: refused by name" sh -c "[ $rc -eq 1 ] && grep -q 'LUKS' '$T/err' && [ ! -e u.raw ]"
run_rc rc "$VDISK" info -f raw u.luks
ok "  a raw disk holding a LUKS volume still opens as raw when told so" \
	sh -c "[ $rc -eq 0 ] && grep -q 'file format: raw' '$T/out'"
mkdir mnt
cleanup_fn fusermount3 -u "$T/mnt"
"$VDISKFS" u.qed mnt >/dev/null 2>"$T/err"
rc=$?
ok "vdiskfs refuses a QED image" sh -c "[ $rc -ne 0 ] && grep -q 'QED' '$T/err' && ! mountpoint -q mnt"

# ---- The CLI as a qemu-img user types it.
run_rc rc "$VDISK" create n.vdk 10M
ok "create FILE SIZE (qemu-img's order)" sh -c "[ $rc -eq 0 ] && '$VDISK' info n.vdk | grep -q '(10485760 bytes)'"
run_rc rc "$VDISK" create n.img 1M
ok "create FILE.img warns that it is a vdk image" \
	sh -c "[ $rc -eq 0 ] && grep -q 'warning: this is a vdk image' '$T/err' && '$VDISK' info n.img | grep -q 'format: vdk'"
run_rc rc "$VDISK" create n1.vdk 1M
ok "  FILE.vdk does not" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/err' ]"
run_rc rc "$VDISK" create n2.vdk 10M 20M
ok "create FILE SIZE SIZE: too many arguments" sh -c "[ $rc -eq 1 ] && [ ! -e n2.vdk ]"
run_rc rc "$VDISK" create -s 1.5G n3.vdk
ok "a fractional size is refused and the message says how" \
	sh -c "[ $rc -eq 1 ] && grep -q '1536M' '$T/err' && [ ! -e n3.vdk ]"
run_rc rc "$VDISK" create n3.vdk 1.5G
ok "  in the FILE SIZE order too" sh -c "[ $rc -eq 1 ] && grep -q '1536M' '$T/err' && [ ! -e n3.vdk ]"
head -c $((3 * M + 512)) /dev/urandom >d.raw
$QI convert -q -f raw -O vpc -o subformat=fixed d.raw fixed.img
$QI convert -q -f vpc -O raw fixed.img fixed-q.raw
$QI convert -q -f raw -O qcow2 d.raw d.qcow2
run_rc rc "$VDISK" info -f vpc fixed.img
ok "info -f vpc (qemu's name) on a fixed VHD not named .vhd" \
	sh -c "[ $rc -eq 0 ] && grep -q 'file format: vhd' '$T/out'"
run_rc rc "$VDISK" map --format vhd fixed.img
ok "map -f" sh -c "[ $rc -eq 0 ] && grep -q 'data' '$T/out'"
run_rc rc "$VDISK" check -f vhd fixed.img
ok "check -f" test "$rc" -eq 0
run_rc rc "$VDISK" convert -f vpc -O raw fixed.img fixed-v.raw
ok "convert -f vpc: the disk without its footer" sh -c "[ $rc -eq 0 ] && cmp -s fixed-v.raw fixed-q.raw"
run_rc rc "$VDISK" create -b fixed.img -F vpc ovf.vdk
ok "create -F vpc" sh -c "[ $rc -eq 0 ] && '$VDISK' info ovf.vdk | grep -q 'format: vhd'"
"$VDISKFS" --format vpc fixed.img mnt 2>"$T/err"
rc=$?
ok "vdiskfs --format vpc mounts the fixed VHD" sh -c "[ $rc -eq 0 ] && cmp -s mnt/disk fixed-q.raw"
fusermount3 -u mnt 2>/dev/null
# vdisk-target on a read-only file (a foreign image's vdiskfs disk) without ,ro: the
# refusal says how to export it (was: only "Read-only file system").
"$VDISKFS" d.qcow2 mnt 2>/dev/null
port=$(free_port)
run_rc rc timeout 10 "$TARGET" -f --iqn iqn.2026-11.org.example:qa2 --portal "127.0.0.1:$port" --lun "0=$T/mnt/disk"
ok "vdisk-target, read-only LUN file without ,ro: exit 2 with the hint" \
	sh -c "[ $rc -eq 2 ] && grep -q 'add ,ro to export it read-only' '$T/err'"
fusermount3 -u mnt 2>/dev/null
run_rc rc "$VDISK" info -f qcow2 fixed.img
ok "info -f with the wrong format: exit 1" sh -c "[ $rc -eq 1 ] && grep -q 'not a qcow2 image' '$T/err'"
run_rc rc "$VDISK" info -f vmdk d.qcow2
ok "info -f vmdk on a qcow2: 'not a VMDK image' (was: 'not a VMDK descriptor (too large)')" \
	sh -c "[ $rc -eq 1 ] && grep -q 'not a VMDK image' '$T/err'"
# convert with no -O: qemu-img's default is raw, so an OUT named .raw/.img is raw,
# and a name of a format vdisk does not write is refused (was: a vdk under that name).
run_rc rc "$VDISK" convert d.qcow2 byname.img
ok "convert IN OUT.img (no -O) writes raw" sh -c "[ $rc -eq 0 ] && cmp -s byname.img d.raw"
run_rc rc "$VDISK" convert d.qcow2 byname.qcow2
ok "convert IN OUT.qcow2 (no -O) is refused, nothing written" \
	sh -c "[ $rc -eq 1 ] && grep -q 'raw and vdk images only' '$T/err' && [ ! -e byname.qcow2 ]"
run_rc rc "$VDISK" convert -O vdk d.qcow2 byname.qcow2
ok "  -O vdk makes it anyway" sh -c "[ $rc -eq 0 ] && '$VDISK' info byname.qcow2 | grep -q 'file format: vdk'"
run_rc rc "$VDISK" convert --block-size 64K d.qcow2 bs.img
ok "  --block-size (a vdk option) keeps vdk" sh -c "[ $rc -eq 0 ] && '$VDISK' info bs.img | grep -q 'file format: vdk'"
# A split sparse VMDK whose descriptor and extent header disagree on the size:
# qemu reads the header's, we the descriptor's; check must call it corrupt (was: clean).
$QI convert -q -f raw -O vmdk -o subformat=twoGbMaxExtentSparse d.raw sp.vmdk
sed 's/^RW [0-9]* SPARSE/RW 4000 SPARSE/' sp.vmdk >spbad.vmdk
run_rc rc "$VDISK" check spbad.vmdk
ok "split sparse vmdk, extent size != capacity: check exits 2" \
	sh -c "[ $rc -eq 2 ] && grep -q 'the descriptor gives 4000 sectors' '$T/out'"
run_rc rc "$VDISK" check sp.vmdk
ok "  the consistent one is clean" test "$rc" -eq 0
# A qcow2 external data file that is a FIFO: named as such (was: "Invalid argument").
$QI create -q -f qcow2 -o data_file=fifo.data dfifo.qcow2 4M
rm -f fifo.data && mkfifo fifo.data
run_rc rc "$VDISK" info dfifo.qcow2
ok "qcow2 data file that is a FIFO: refused, named" \
	sh -c "[ $rc -eq 1 ] && grep -q 'not a regular file or block device' '$T/err'"
# qcow2 header flags QEMU sets: "corrupt" is corruption for check (was: clean), "dirty"
# refcounts (lazy_refcounts, killed writer) an Info line, clean otherwise.
cp d.qcow2 corr.qcow2
printf '\2' | dd of=corr.qcow2 bs=1 seek=79 conv=notrunc 2>/dev/null
run_rc rc "$VDISK" check corr.qcow2
ok "qcow2 marked corrupt by QEMU: check exits 2, says so" \
	sh -c "[ $rc -eq 2 ] && grep -q 'marked corrupt by QEMU' '$T/out'"
cp d.qcow2 dirty.qcow2
printf '\1' | dd of=dirty.qcow2 bs=1 seek=79 conv=notrunc 2>/dev/null
run_rc rc "$VDISK" check dirty.qcow2
ok "qcow2 with dirty refcounts: clean, with an Info line" \
	sh -c "[ $rc -eq 0 ] && grep -q '^Info: .*refcounts marked dirty' '$T/out'"
ok "  and reads as qemu-img reads it" same_as dirty.qcow2 d.raw
# A sparse VMDK file is its own only extent: a header capacity of 0 is taken from a
# streamOptimized footer (VMware writes those), never by following the embedded
# descriptor's extent line, which names the file as it was first called (was: a renamed
# copy read the original file's data, or the original was read instead of the copy).
head -c $((2 * M)) /dev/urandom >sa.raw
head -c $((2 * M)) /dev/urandom >sb.raw
$QI convert -q -f raw -O vmdk -o subformat=streamOptimized sa.raw orig.vmdk
python3 - orig.vmdk foot.vmdk <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
hdr = bytes(b[:512])
b += b'\0' * ((-len(b)) % 512)
m = bytearray(512)
m[0:8] = (1).to_bytes(8, 'little')
m[12:16] = (3).to_bytes(4, 'little')          # footer marker
b += m + hdr + bytearray(512)                  # footer, end-of-stream marker
b[12:20] = (0).to_bytes(8, 'little')           # header capacity 0
b[56:64] = (2**64 - 1).to_bytes(8, 'little')   # grain directory at the end
open(sys.argv[2], 'wb').write(b)
PY
$QI convert -q -f raw -O vmdk -o subformat=streamOptimized sb.raw orig.vmdk
run_rc rc "$VDISK" convert -O raw foot.vmdk foot.raw
ok "streamOptimized with its capacity in the footer reads its own grains" \
	sh -c "[ $rc -eq 0 ] && cmp -s foot.raw sa.raw"
$QI convert -q -f raw -O vmdk sa.raw ms.vmdk
cp ms.vmdk ms-copy.vmdk
printf '\0\0\0\0\0\0\0\0' | dd of=ms-copy.vmdk bs=1 seek=12 conv=notrunc 2>/dev/null
run_rc rc "$VDISK" convert -O raw ms-copy.vmdk msc.raw
ok "monolithicSparse copy with capacity 0: refused (was: read ms.vmdk instead)" \
	sh -c "[ $rc -eq 1 ] && grep -q 'bad size 0' '$T/err' && [ ! -e msc.raw ]"
# A qcow2 whose header size is not a multiple of 512 (hand-made): qemu reads whole
# sectors, so must we (was: 65 bytes more than qemu-img's raw output).
$QI create -q -f qcow2 odd.qcow2 1M
qemu-io -f qcow2 -c "write -P 7 0 1M" odd.qcow2 >/dev/null
printf '\0\0\0\0\0\17\102\101' | dd of=odd.qcow2 bs=1 seek=24 conv=notrunc 2>/dev/null
same "qcow2 with a header size of 1000001 bytes" odd.qcow2
# A failed convert into a symbolic link (/dev/stdout > file, say): the link stays and
# its target is emptied (was: the link removed, the target left half-written).
head -c $((2 * M)) /dev/urandom >tc.raw
$QI convert -q -f raw -O qcow2 tc.raw tc.qcow2
truncate -s $M tc.qcow2
echo keep >tgt.raw
ln -s tgt.raw lk.raw
run_rc rc "$VDISK" convert -O raw tc.qcow2 lk.raw
ok "failed convert into a symlink: exit 1, the link kept, its target emptied" \
	sh -c "[ $rc -eq 1 ] && [ -L lk.raw ] && [ ! -s tgt.raw ]"
run_rc rc "$VDISK" convert -O raw d.qcow2 -
ok "convert to '-' (stdout) is refused, no file named - (was: a file named -)" \
	sh -c "[ $rc -eq 1 ] && grep -q 'output to a pipe is not supported' '$T/err' && [ ! -e ./- ]"
# Operands swapped, a common slip: the message says the order.
run_rc rc "$VDISK" snapshot create s1 n.vdk
ok "snapshot create NAME FILE: exit 1, the order is named" \
	sh -c "[ $rc -eq 1 ] && grep -q 'the order is FILE NAME' '$T/err'"
cp d.raw d-keep.raw
run_rc rc "$VDISK" convert out.raw d.raw
ok "convert OUT IN: exit 1, the order is named, IN untouched" \
	sh -c "[ $rc -eq 1 ] && grep -q 'the order is IN OUT' '$T/err' && cmp -s d.raw d-keep.raw && [ ! -e out.raw ]"
# Backing names QEMU takes as protocols: "file:NAME" is NAME (was: "No such file");
# a URL or json: string is refused as what it is (was: "No such file or directory").
$QI create -q -f qcow2 -u -b file:d.qcow2 -F qcow2 fp.qcow2 4M
qemu-io -f qcow2 -c "write -P 5 64k 64k" fp.qcow2 >/dev/null
same "qcow2 over file:NAME" fp.qcow2
$QI create -q -f qcow2 -u -b nbd://127.0.0.1:10809/x -F raw nb.qcow2 4M
run_rc rc "$VDISK" info nb.qcow2
ok "qcow2 over an nbd:// URL: refused as a protocol" \
	sh -c "[ $rc -eq 1 ] && grep -q 'QEMU protocol or option string' '$T/err'"
# convert onto an existing vdk or a directory: the message says why (was: "File exists").
run_rc rc "$VDISK" convert d.qcow2 n.vdk
ok "convert onto an existing vdk: exit 1, says it is never overwritten" \
	sh -c "[ $rc -eq 1 ] && grep -q 'never overwritten' '$T/err' && '$VDISK' info n.vdk | grep -q '(10485760 bytes)'"
mkdir outdir
run_rc rc "$VDISK" convert d.qcow2 outdir
ok "convert onto a directory: exit 1, says so" sh -c "[ $rc -eq 1 ] && grep -q 'is a directory' '$T/err'"
run_rc rc "$VDISK" create -s 1M outdir
ok "create onto a directory: exit 1, says so" sh -c "[ $rc -eq 1 ] && grep -q 'is a directory' '$T/err'"
done_testing
