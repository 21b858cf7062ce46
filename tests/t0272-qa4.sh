#!/bin/sh
# SPDX-License-Identifier: MIT
# Fourth QA pass (branch qa4): interruptions, odd geometry and cross-feature
# use, with real oracles. Fixed here, each check failing on the old binaries:
# an interrupted `vdisk convert` (SIGINT/SIGTERM) left a full-size raw OUT or a
# vdk OUT that read as zeroes; a partition file reported its whole length as
# allocated (du said full; cp, whose --sparse=auto tries SEEK_DATA only on a
# file with fewer blocks than bytes, wrote every zero); and SIGTERM/SIGINT/
# SIGHUP to vdiskfs dropped the write()s still in the kernel's writeback cache.
# Also checked: random writes, unaligned punch/zero ranges across the end and
# across snapshots against a model (both cache modes, 4 KiB and 1 MiB blocks,
# a size that is no block multiple); kill -9 during `vdisk snapshot delete` and
# during `rmdir snapshots/NAME`; ENOSPC during convert and snapshot create; a
# 64 TiB disk's last bytes; a mixed vmdk <- qcow2 <- vdk chain written through
# the mount against qemu-img's view.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
cd "$T" || exit 1

ROUNDS=300
KROUNDS="0.05 0.15 0.3"
if [ "${VDISK_ASAN:-0}" = 1 ]; then
	ROUNDS=120
	KROUNDS="0.1 0.3"
fi

# dflt CMD...: run CMD with SIGINT/SIGQUIT at their defaults (a background job
# of a non-interactive shell ignores them, a terminal's Ctrl-C does not).
dflt() {
	exec perl -e '$SIG{INT} = "DEFAULT"; $SIG{QUIT} = "DEFAULT"; exec @ARGV or die "$ARGV[0]: $!"' "$@"
}

# wait_data FILE BYTES: wait (up to ~30 s) until FILE, or convert's temporary
# .FILE.vdisk-XXXXXX beside it, holds at least BYTES on the host.
wait_data() {
	for _i in $(seq 300); do
		for _f in "$1" "$(dirname "$1")/.$(basename "$1").vdisk-"*; do
			[ -e "$_f" ] && [ $(($(stat -c %b "$_f") * 512)) -ge "$2" ] && return 0
		done
		sleep 0.1
	done
	return 1
}

# ---- 1. vdisk convert interrupted: OUT removed, the signal's status.
head -c 384M /dev/zero | tr '\0' 'x' >in.raw
for ofmt in raw vdk; do
	for sig in INT TERM; do
		rm -f "out.$ofmt"
		dflt "$VDISK" convert -O $ofmt -f raw in.raw "out.$ofmt" 2>conv.err &
		cp=$!
		wait_data "out.$ofmt" 4194304
		kill -$sig $cp
		wait $cp
		rc=$?
		want=130
		[ $sig = TERM ] && want=143
		ok "convert -O $ofmt, SIG$sig mid-copy: OUT removed (was: left, full size or reading as zeroes)" \
			test ! -e "out.$ofmt"
		ok_eq "$rc" "$want" "  and it ends by the signal (status $want)"
		ok "  saying so" grep -q "out.$ofmt: interrupted" conv.err
	done
done
"$VDISK" convert -O raw -f raw in.raw out.raw &
cp=$!
wait_data out.raw 4194304
kill -INT $cp # ignored in a background job: the copy completes
wait $cp
ok "an ignored SIGINT (a background job) leaves the copy alone" cmp -s in.raw out.raw
rm -f in.raw out.raw

# ---- 2. st_blocks of a partition, and cp of it.
ok "create a 1 GiB image" mkimg p.vdk 1G
ok "mount it" fs_mount "$T/p.vdk" "$T/m"
ok "sgdisk: two partitions" quiet sgdisk -n 1:0:+512M -n 2:0:0 m/disk
randfile r2m 2097152 7
dd if=r2m of=m/partitions/p1 bs=1M seek=100 conv=notrunc,fsync status=none
blocks=$(stat -c %b m/partitions/p1)
ok "p1 (512 MiB, 2 MiB written) does not claim to be fully allocated (was: $((1 << 20)) blocks)" \
	test "$blocks" -lt $((1 << 20))
cp m/partitions/p1 p1.copy
ok "cp of p1 equals p1" cmp -s m/partitions/p1 p1.copy
kb=$(du -k p1.copy | cut -f1)
ok "and stays sparse (du $kb KiB; was 512 MiB)" test "$kb" -lt 65536
ok "the 2 MiB are where they were written" same_region p1.copy $((100 << 20)) 2097152 r2m
rm -f p1.copy
ok "unmount" fs_umount "$T/m"

# ---- 3. SIGTERM/SIGINT/SIGHUP to the daemon while a writer holds dirty pages.
for mode in TERM HUP "TERM -o one_receiver" INT "TERM -o writethrough"; do
	set -- $mode
	sig=$1
	shift
	rm -f s.vdk ready
	mkimg s.vdk 64M
	mkdir -p ms
	dflt "$VDISKFS" -f s.vdk ms "$@" 2>>vdiskfs.log &
	dp=$!
	cleanup_fn fs_cleanup_one "$T/ms" "$dp"
	wait_mounted "$T/ms"
	python3 -c "
import os, time
fd = os.open('ms/disk', os.O_RDWR)
os.pwrite(fd, b'A' * 65536, 0)
os.fsync(fd)
os.pwrite(fd, b'B' * 1048576, 1048576)   # no fsync: in the page cache
open('ready', 'w').close()
time.sleep(3)
" 2>/dev/null &
wp=$!
	for _i in $(seq 100); do
		[ -e ready ] && break
		sleep 0.1
	done
	kill -$sig $dp
	wait $dp
	rc=$?
	wait $wp
	ok_eq "$rc" 0 "SIG$sig $*: the daemon exits 0"
	ok "  and the mount is gone" sh -c "! grep -q ' $T/ms fuse' /proc/mounts"
	ok "  the image checks clean" vcheck s.vdk
	"$VDISK" convert -O raw s.vdk s.raw
	ok "  the fsync'd write is there" sh -c "head -c 65536 s.raw | tr -d A | cmp -s - /dev/null"
	ok "  and so is the write that returned without fsync (was: lost)" \
		sh -c "dd if=s.raw bs=1M skip=1 count=1 status=none | tr -d B | cmp -s - /dev/null"
	rm -f s.raw
done
rm -f s.vdk
mkimg u.vdk 16M
"$VDISKFS" -f u.vdk ms 2>>vdiskfs.log &
dp=$!
cleanup_fn fs_cleanup_one "$T/ms" "$dp"
wait_mounted "$T/ms"
kill -TERM $dp
wait $dp
ok_eq "$?" 0 "SIGTERM with nothing open: exits 0 at once"

# ---- 4. A model: writes, unaligned punch/zero ranges (at and across the end,
# over snapshot boundaries), mkdir/rmdir of snapshots; then every disk compared.
cat >model.py <<'EOF'
import ctypes, os, random, sys
mnt, size, seed, rounds, wb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == 'wb'
libc = ctypes.CDLL(None, use_errno=True)
KEEP, PUNCH, ZERO = 1, 2, 0x10
def falloc(fd, mode, off, ln):
    return 0 if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(ln)) == 0 else -ctypes.get_errno()
rnd = random.Random(seed)
model = bytearray(size)
snaps, errs, nsnap = {}, 0, 0
fd = os.open(mnt + '/disk', os.O_RDWR)
def pick():
    r = rnd.random()
    if r < 0.3:
        return max(0, size - rnd.randint(0, 200000))
    if r < 0.5:
        return (rnd.randint(0, size // 65536) * 65536 + rnd.choice([-1, 0, 1, 511, 4095])) % size
    return rnd.randint(0, size - 1)
for i in range(rounds):
    op, off, ln = rnd.random(), pick(), rnd.randint(1, 300000)
    if op < 0.45:
        data = bytes([rnd.randint(1, 255)]) * ln
        n = os.pwrite(fd, data, off)
        exp = min(ln, size - off)
        if n == ln and exp < ln and wb:
            # The writeback cache takes it; fsync reports ENOSPC for the part past the end.
            try:
                os.fsync(fd)
                print('# fsync after a write across the end succeeded'); errs += 1
            except OSError as e:
                if e.errno != 28:
                    print('# fsync:', e); errs += 1
            n = exp
        if n != exp:
            print('# pwrite', off, ln, 'returned', n, 'not', exp); errs += 1
        model[off:off + exp] = data[:exp]
    elif op < 0.85:
        mode = PUNCH | KEEP if op < 0.65 else ZERO
        r, end = falloc(fd, mode, off, ln), min(off + ln, size)
        if r == 0:
            model[off:end] = bytes(end - off)
        elif off + ln <= size:
            print('# fallocate', hex(mode), off, ln, 'failed', r); errs += 1
    elif op < 0.93:
        nsnap += 1
        os.mkdir('%s/snapshots/q%d' % (mnt, nsnap))
        snaps['q%d' % nsnap] = bytes(model)
    elif snaps:
        name = rnd.choice(sorted(snaps))
        os.rmdir(mnt + '/snapshots/' + name)
        del snaps[name]
    if i % 25 == 0:
        os.fsync(fd)
os.fsync(fd)
os.close(fd)
if open(mnt + '/disk', 'rb').read()[:size] != model:
    print('# disk differs from the model'); errs += 1
for name, m in snaps.items():
    if open(mnt + '/snapshots/' + name + '/disk', 'rb').read() != m:
        print('# snapshot', name, 'differs from the model'); errs += 1
open('model.bin', 'wb').write(model)
sys.exit(1 if errs else 0)
EOF
seed=1
for cfg in "10486272 4096 wb" "3000000 1048576 wb" "10486272 65536 wt" "1000448 16384 wt"; do
	set -- $cfg
	rm -f md.vdk md@*.vdk model.bin
	"$VDISK" create -s "$1" --block-size "$2" md.vdk >/dev/null
	size=$(stat -c %s md.vdk >/dev/null && "$VDISK" info --json md.vdk |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["virtual-size"])')
	opt=
	[ "$3" = wt ] && opt="-o writethrough"
	ok "model $cfg: mount" fs_mount "$T/md.vdk" "$T/mm" $opt
	ok "model $cfg: $ROUNDS random operations match" python3 model.py "$T/mm" "$size" $seed $ROUNDS "$3"
	ok "model $cfg: unmount" fs_umount "$T/mm"
	ok "model $cfg: check clean" vcheck md.vdk
	"$VDISK" convert -O raw md.vdk md.raw
	ok "model $cfg: vdisk convert equals the model" cmp -s md.raw model.bin
	rm -f md.raw
	seed=$((seed + 1))
done

# ---- 5. kill -9 during `vdisk snapshot delete` and during `rmdir snapshots/NAME`.
mkimg k.vdk 256M
"$VDISK" bench -q -w -c 1024 -s 64k --pattern 1 k.vdk
"$VDISK" snapshot create k.vdk a
"$VDISK" bench -q -w -c 800 -s 64k -S 196608 --pattern 2 k.vdk
"$VDISK" snapshot create k.vdk b
"$VDISK" bench -q -w -c 300 -s 4k -S 1052672 --pattern 3 k.vdk
"$VDISK" convert -O raw k.vdk kref.raw
mkdir korig
cp -a k.vdk k@a.vdk k@b.vdk korig/
for d in $KROUNDS; do
	rm -f k.vdk k@*.vdk
	cp -a korig/* .
	"$VDISK" snapshot delete k.vdk a &
	kp=$!
	sleep "$d"
	kill -9 $kp 2>/dev/null
	wait $kp 2>/dev/null
	ok "kill -9 of snapshot delete after ${d}s: check clean" vcheck k.vdk
	"$VDISK" convert -O raw k.vdk k.raw
	ok "  the disk is unchanged" cmp -s k.raw kref.raw
	ok "  the delete can be done (again)" sh -c \
		"'$VDISK' snapshot list k.vdk | grep -qw a || exit 0; '$VDISK' snapshot delete k.vdk a"
	"$VDISK" convert -O raw k.vdk k.raw
	ok "  after it, the disk is unchanged" cmp -s k.raw kref.raw
	rm -f k.vdk k@*.vdk
	cp -a korig/* .
	fs_mount "$T/k.vdk" "$T/mk"
	rmdir mk/snapshots/a 2>/dev/null &
	rp=$!
	sleep "$d"
	fs_kill9 "$T/mk"
	wait $rp
	ok "kill -9 of vdiskfs during rmdir after ${d}s: check clean" vcheck k.vdk
	ok "  remount" fs_mount "$T/k.vdk" "$T/mk"
	ok "  disk is unchanged" cmp -s mk/disk kref.raw
	ok "  unmount" fs_umount "$T/mk"
done
rm -f k*.vdk k*.raw
rm -rf korig

# ---- 6. A full host: convert and snapshot create fail cleanly.
mkdir host
ok "a 24 MiB tmpfs" mount -t tmpfs -o size=24M tmpfs host
cleanup_fn umount -l "$T/host"
mkimg big.vdk 64M
"$VDISK" bench -q -w -c 512 -s 64k --pattern 4 big.vdk
ok_fail "convert -O vdk onto a full host fails" sh -c "'$VDISK' convert big.vdk host/o.vdk 2>conv.err"
ok "  with ENOSPC, and OUT removed" sh -c "grep -q 'No space left' conv.err && test ! -e host/o.vdk"
ok_fail "convert -O raw too" sh -c "'$VDISK' convert -O raw big.vdk host/o.raw 2>/dev/null"
ok "  OUT removed" test ! -e host/o.raw
mkimg host/s.vdk 32M
"$VDISK" bench -q -w -c 200 -s 64k --pattern 5 host/s.vdk
"$VDISK" convert -O raw host/s.vdk s-ref.raw
dd if=/dev/zero of=host/fill bs=64k status=none 2>/dev/null
ok_fail "snapshot create on the full host fails" sh -c "'$VDISK' snapshot create host/s.vdk one 2>/dev/null"
ok "  nothing left behind" sh -c "[ \$(ls host | wc -l) -eq 2 ]"
ok "  the image checks clean" vcheck host/s.vdk
"$VDISK" convert -O raw host/s.vdk s.raw
ok "  and reads as before" cmp -s s.raw s-ref.raw
rm -f s.raw s-ref.raw big.vdk host/fill
ok "with room again, snapshot create works" quiet "$VDISK" snapshot create host/s.vdk one

# ---- 7. Sizes at the edges; the end of a 64 TiB disk.
ok_fail "create -s 0 is refused" sh -c "'$VDISK' create -s 0 z.vdk 2>z.err"
ok "  saying why (was: 'bytes, or a whole number with K, M...')" grep -q "cannot be empty" z.err
ok "create -s 1 makes a 512-byte disk" sh -c \
	"'$VDISK' create -s 1 one.vdk >/dev/null && '$VDISK' info one.vdk | grep -q '(512 bytes)'"
ok "create a 64 TiB image" mkimg h.vdk 64T
ok "mount it" fs_mount "$T/h.vdk" "$T/mh"
S=$(stat -c %s mh/disk)
ok_eq "$S" 70368744177664 "disk is 64 TiB"
printf 'last' | dd of=mh/disk bs=1 seek=$((S - 4)) conv=notrunc status=none
ok "4 bytes at the very end are written and read back" sh -c \
	"sync mh/disk && [ \"\$(tail -c 4 mh/disk)\" = last ]"
ok_fail "a write across the end fails at fsync (ENOSPC)" sh -c \
	"printf 'xx' | dd of=mh/disk bs=1 seek=$((S - 1)) conv=notrunc,fsync status=none 2>/dev/null"
ok_eq "$(seek_data mh/disk 0)" $((S - 4096)) "SEEK_DATA finds the last block"
ok_eq "$(stat -c %s mh/disk)" "$S" "  and the size did not change"
ok "unmount" fs_umount "$T/mh"
ok_eq "$("$VDISK" map h.vdk | tail -1 | awk '{print $1, $2, $3}')" "0x3ffffffff000 0x1000 data" \
	"vdisk map: the last block is data"

# A hole of terabytes below the top: the merged map was walked one 4 KiB slot at a
# time (16 Gi look-ups for 64 TiB: `vdisk convert` or `map` of such a chain took
# 7.5 minutes; 8 TiB 24 s), now a run at a time, and a hole that reaches past a
# region is asked of the layers at once.
ok "an 8 TiB image with data at both ends, then a snapshot" sh -c \
	"'$VDISK' create -s 8T w.vdk >/dev/null &&
	 '$VDISK' bench -q -w -c 1 -s 64k --pattern 6 w.vdk &&
	 '$VDISK' bench -q -w -c 1 -s 64k -o \$((8 * 1099511627776 - 65536)) --pattern 7 w.vdk &&
	 '$VDISK' snapshot create w.vdk s1"
timeout 10 "$VDISK" map w.vdk >wmap.out
ok_eq "$?" 0 "vdisk map of it ends within 10 s (was: 24 s here, 7.5 min for 64 TiB)"
ok_eq "$(awk 'NR > 1 {print $1, $2, $3, $4}' wmap.out | tr '\n' ';')" \
	"0 0x10000 data 1;0x10000 0x7fffffe0000 unallocated -;0x7ffffff0000 0x10000 data 1;" \
	"  and is right"
rm -f w.vdk w@s1.vdk wmap.out

# ---- 8. vmdk <- qcow2 <- vdk, written through vdiskfs, against qemu-img.
qemu-img create -q -f vmdk base.vmdk 100M
qemu-io -f vmdk -c 'write -P 0x11 0 30M' -c 'write -P 0x12 50M 1M' base.vmdk >/dev/null
qemu-img create -q -f qcow2 -b base.vmdk -F vmdk mid.qcow2 100M
qemu-io -c 'write -P 0x21 10M 20M' -c 'write -z 50M 512k' mid.qcow2 >/dev/null
ok "a vdk overlay over qcow2 over vmdk" quiet "$VDISK" create -b mid.qcow2 top.vdk
qemu-img convert -O raw mid.qcow2 want.raw
ok "mount it" fs_mount "$T/top.vdk" "$T/mx"
ok "fio --verify through it" quiet fio --name=w --filename=mx/disk --rw=randwrite --bs=12k \
	--offset=5M --size=20M --io_size=8M --verify=crc32c --direct=1 --ioengine=psync
mkdir mx/snapshots/s1
fallocate -p -o 1000 -l 777777 mx/disk
fallocate -z -o $((60 * 1048576 + 3)) -l 1234567 mx/disk
dd if=mx/disk of=want.raw bs=1M skip=5 seek=5 count=20 conv=notrunc status=none
dd if=/dev/zero of=want.raw bs=1 seek=1000 count=777777 conv=notrunc status=none
dd if=/dev/zero of=want.raw bs=1 seek=$((60 * 1048576 + 3)) count=1234567 conv=notrunc status=none
ok "disk = qemu-img's view of the base + what was written" cmp -s mx/disk want.raw
ok_eq "$(seek_data mx/disk $((50 * 1048576)))" $((50 * 1048576 + 524288)) \
	"SEEK_DATA skips the range mid.qcow2 zeroed over base.vmdk's data"
cp --sparse=always mx/disk sparse.raw
ok "cp --sparse=always equals it" cmp -s sparse.raw want.raw
ok "unmount" fs_umount "$T/mx"
"$VDISK" convert -O raw top.vdk top.raw
ok "vdisk convert equals it (qemu-img compare)" quiet qemu-img compare -f raw -F raw top.raw want.raw
ok "check clean" vcheck top.vdk
ok "  all 4 layers" grep -q 'in 4 layers' check.out
ok "base.vmdk and mid.qcow2 untouched (qemu-img check)" sh -c \
	"qemu-img check -q base.vmdk && qemu-img check -q mid.qcow2"

done_testing
