#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk used the way a newcomer uses it (QA findings): options after the operands,
# as qemu-img and most GNU tools accept them, and convert refusing an OUT that is
# one of IN's own files (a vmdk flat extent, a qcow2 external data file), not only
# a layer, before it truncates it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

M=1048576
head -c $((2 * M + 4096)) /dev/urandom >data.raw

# Options after the operands.
run_rc rc "$VDISK" create n.vdk -s 4M
ok "create FILE -s SIZE" sh -c "[ $rc -eq 0 ] && [ -e n.vdk ]"
run_rc rc "$VDISK" info n.vdk --json
ok "info FILE --json" test "$rc" -eq 0
ok "  valid JSON" json_ok "$T/out"
run_rc rc "$VDISK" map n.vdk --json
ok "map FILE --json" sh -c "[ $rc -eq 0 ] && grep -q '\"type\"' '$T/out'"
run_rc rc "$VDISK" convert data.raw out.raw -O raw
ok "convert IN OUT -O raw" sh -c "[ $rc -eq 0 ] && cmp -s data.raw out.raw"
run_rc rc "$VDISK" convert data.raw out.vdk -f raw --block-size 64K
ok "convert IN OUT -f raw --block-size 64K" sh -c "[ $rc -eq 0 ] && [ -e out.vdk ]"
ok "  reads like IN" same_as out.vdk data.raw
run_rc rc "$VDISK" check out.vdk --json
ok "check FILE --json" sh -c "[ $rc -eq 0 ] && grep -q '\"clean\": true' '$T/out'"
run_rc rc "$VDISK" bench out.vdk -c 10 -q
ok "bench FILE -c 10 -q" sh -c "[ $rc -eq 0 ] && [ ! -s '$T/out' ]"
run_rc rc "$VDISK" snapshot create out.vdk s1
run_rc rc "$VDISK" diff out.vdk s1 --json
ok "diff FILE SNAP --json" sh -c "[ $rc -eq 0 ] && grep -q '\"from\": \"s1\"' '$T/out'"
run_rc rc "$VDISK" convert -- data.raw -dash.raw
ok "-- still ends the options" sh -c "[ $rc -eq 0 ] && [ -e ./-dash.raw ]"

# convert into one of IN's own files (not a layer, so not caught by the layer check).
qemu-img convert -f raw -O vmdk -o subformat=monolithicFlat data.raw flat.vmdk
qemu-img convert -f raw -O vmdk -o subformat=twoGbMaxExtentFlat data.raw split.vmdk
qemu-img convert -f raw -O qcow2 -o data_file=ext.data data.raw ext.qcow2
qemu-img convert -f raw -O vmdk -o subformat=twoGbMaxExtentSparse data.raw sparse.vmdk
for c in "flat.vmdk flat-flat.vmdk" "split.vmdk split-f001.vmdk" "ext.qcow2 ext.data" \
	 "sparse.vmdk sparse-s001.vmdk"; do
	set -- $c
	run_rc rc "$VDISK" convert -O raw "$1" "$2"
	ok "convert -O raw $1 into its own file $2 refused" \
		sh -c "[ $rc -eq 1 ] && grep -q 'overwritten while it is read' '$T/err'"
	ok "  $1 is intact" same_as "$1" data.raw
done

# key add with no terminal: the missing one is the new passphrase, whose options differ.
printf 'old-pass\n' >k
"$VDISK" --key-file k create --encrypt --pwhash-ops 1 --pwhash-mem 8K -s 1M e.vdk
run_rc rc "$VDISK" --key-file k key add e.vdk
ok "key add without the new passphrase and no terminal: exit 1" test "$rc" -eq 1
ok "  names --new-key-file / --new-key-fd" grep -q -- "--new-key-file FILE or --new-key-fd N" "$T/err"

# prune on an overlay over a foreign image: the foreign layer is listed as a snapshot
# but is not a native one to delete (prune tried it first and deleted nothing).
qemu-img convert -f raw -O qcow2 data.raw fbase.qcow2
"$VDISK" create -b fbase.qcow2 po.vdk
for s in a b c; do
	vwrite po.vdk $((M / 2)) 2 4096 7 && "$VDISK" snapshot create po.vdk $s
done
"$VDISK" convert -O raw po.vdk po-before.raw
run_rc rc "$VDISK" snapshot prune po.vdk --keep 1
ok "prune --keep 1 over a qcow2 base: exit 0" test "$rc" -eq 0
ok "  deleted a and b" sh -c "grep -q 'deleted snapshot a' '$T/out' && grep -q 'deleted snapshot b' '$T/out'"
"$VDISK" snapshot list --json po.vdk >pl.json
ok_eq "$(json_eval pl.json 'join ",", map { $_->{name} } @$j')" "fbase.qcow2,c" "  fbase.qcow2 and c remain"
ok "  the disk reads the same" same_as po.vdk po-before.raw
run_rc rc "$VDISK" snapshot prune po.vdk --keep 0
ok "prune --keep 0: deletes c, keeps the base" sh -c "[ $rc -eq 0 ] && grep -q 'deleted snapshot c' '$T/out'"
ok "  the disk reads the same" same_as po.vdk po-before.raw

# A qcow2 that a QEMU process has open for writing (a running VM): qemu-img refuses to
# read it without -U, and so must check and convert (they only knew vdiskfs's lock).
qemu-img convert -f raw -O qcow2 data.raw busy.qcow2
qemu-io -c 'sleep 60000' busy.qcow2 >/dev/null 2>&1 &
qpid=$!
cleanup_fn kill "$qpid"
# Wait for its locks in /proc/locks (polling with qemu-img info would race: its own lock
# can make qemu-io's open fail).
ino=$(stat -c %i busy.qcow2)
for _i in $(seq 200); do
	grep -q "OFDLCK .*:$ino " /proc/locks && break
	sleep 0.1
done
run_rc rc "$VDISK" convert -O raw busy.qcow2 busy.raw
ok "convert of a qcow2 a QEMU process writes: refused" \
	sh -c "[ $rc -eq 1 ] && grep -q 'open for writing elsewhere' '$T/err' && [ ! -e busy.raw ]"
run_rc rc "$VDISK" check busy.qcow2
ok "check of it: refused" test "$rc" -eq 1
run_rc rc "$VDISK" convert -U -O raw busy.qcow2 busy.raw
ok "convert -U: done, with a warning" sh -c "[ $rc -eq 0 ] && grep -q warning '$T/err'"
ok "  the copy" cmp -s busy.raw data.raw
run_rc rc "$VDISK" create -b busy.qcow2 -F qcow2 busy-top.vdk
ok "create of an overlay over it: refused, nothing made" \
	sh -c "[ $rc -eq 1 ] && grep -q 'open for writing elsewhere' '$T/err' && [ ! -e busy-top.vdk ]"
run_rc rc "$VDISK" create -U -b busy.qcow2 -F qcow2 busy-top.vdk
ok "create -U: made, with a warning" sh -c "[ $rc -eq 0 ] && grep -q warning '$T/err' && [ -e busy-top.vdk ]"
kill "$qpid"
wait "$qpid" 2>/dev/null
run_rc rc "$VDISK" check busy.qcow2
ok "check once QEMU is gone" test "$rc" -eq 0

# convert -O raw onto a block device (a loop device over a file of 0xff bytes, named
# through a symlink so that a regression unlinks the link, not the device node): it
# cannot be truncated, and its holes must be written as zeroes.
head -c $((2 * M + 4096)) /dev/zero | tr '\0' '\377' >dev.img
loopdev=$(losetup -f --show dev.img)
cleanup_fn losetup -d "$loopdev"
ln -s "$loopdev" dev-link
qemu-img create -q -f qcow2 holes.qcow2 $((2 * M))
qemu-io -c "write -P 7 64k 64k" -c "write -z 512k 64k" -c "write -P 0 1M 8k" holes.qcow2 >/dev/null
qemu-img convert -O raw holes.qcow2 holes.raw
cat holes.raw >expect-dev.raw
dd if=/dev/zero bs=4096 count=1 2>/dev/null | tr '\0' '\377' >>expect-dev.raw
run_rc rc "$VDISK" convert -O raw holes.qcow2 dev-link
ok "convert -O raw onto a block device" test "$rc" -eq 0
ok "  the device holds IN, zeroes where IN has holes, its tail untouched" \
	cmp -s "$loopdev" expect-dev.raw
ok "  the device node is still there" test -b dev-link
head -c $((3 * M)) /dev/urandom >big.raw
run_rc rc "$VDISK" convert -O raw big.raw dev-link
ok "convert onto a smaller block device: refused" sh -c "[ $rc -eq 1 ] && grep -q smaller '$T/err'"
ok "  the device node is still there" test -b dev-link
run_rc rc "$VDISK" convert -O raw holes.qcow2 /dev/null
ok "convert onto a character device: refused" sh -c "[ $rc -eq 1 ] && [ -c /dev/null ]"

# convert -O raw into an existing file that O_TRUNC does not empty (a vdiskfs disk of the
# same size): IN's holes must not keep the old bytes.
"$VDISK" create -s $((2 * M)) target.vdk
mkdir mnt
"$VDISKFS" target.vdk mnt && cleanup_fn fusermount3 -u "$T/mnt"
wait_mounted "$T/mnt"
head -c $((2 * M)) /dev/zero | tr '\0' '\377' | dd of=mnt/disk bs=1M conv=notrunc,fsync 2>/dev/null
run_rc rc "$VDISK" convert -O raw holes.qcow2 mnt/disk
ok "convert -O raw into a vdiskfs disk" test "$rc" -eq 0
ok "  it reads as IN (zeroes in IN's holes)" cmp -s mnt/disk holes.raw
fusermount3 -u mnt
done_testing
