#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs: O_DIRECT writers of disk are served uncached and in parallel
# (fs/fopen.c: FOPEN_PARALLEL_DIRECT_WRITES; ops.c: DIRECT I/O). Four O_DIRECT
# writers verify their data; an O_DIRECT write is never hidden by stale cached
# pages of another handle, nor overwritten later by older dirty ones; opens
# made while an O_DIRECT writer holds disk are uncached and see its writes
# (both modes: writeback cache and -o writethrough).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/d.vdk
M=$T/mnt
ok "create a 256 MiB image" mkimg "$IMG" 256M

# The python3 helper: O_DIRECT and cached handles of one file, in one process.
cat >"$T/mix.py" <<'EOF'
import mmap, os, sys

path, case = sys.argv[1], sys.argv[2]
BS = 65536
OFF = 8 * 1048576

def direct_write(pattern):
    buf = mmap.mmap(-1, BS)
    buf.write(bytes([pattern]) * BS)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    assert os.pwrite(fd, buf, OFF) == BS
    os.close(fd)

def direct_read():
    buf = mmap.mmap(-1, BS)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    n = os.preadv(fd, [buf], OFF)
    os.close(fd)
    assert n == BS
    return bytes(buf)

if case == "direct-first":
    # An O_DIRECT writer holds disk open: a later plain open is uncached too,
    # and both always see each other's writes.
    d = os.open(path, os.O_RDWR | os.O_DIRECT)
    plain = os.open(path, os.O_RDWR)
    os.pwrite(plain, b"\x55" * BS, OFF)
    direct_write(0x66)
    got = os.pread(plain, BS, OFF)
    os.pwrite(plain, b"\x77" * BS, OFF + BS)
    os.fsync(plain)
    buf = mmap.mmap(-1, BS)
    n = os.preadv(d, [buf], OFF + BS)
    print("plain handle reads %#x, O_DIRECT handle reads %#x" % (got[0], buf[0]))
    sys.exit(0 if got == b"\x66" * BS and n == BS and bytes(buf) == b"\x77" * BS else 1)
cached = os.open(path, os.O_RDWR)
if case == "stale":
    # The cached handle has the range in the page cache; an O_DIRECT write
    # changes it; the cached handle must see the new bytes.
    os.pwrite(cached, b"\x11" * BS, OFF)
    os.fsync(cached)
    assert os.pread(cached, BS, OFF) == b"\x11" * BS
    direct_write(0x22)
    got = os.pread(cached, BS, OFF)
    print("cached handle reads %#x" % got[0])
    sys.exit(0 if got == b"\x22" * BS else 1)
if case == "dirty":
    # The cached handle leaves dirty pages (no fsync); a later O_DIRECT write
    # of the same range must win over their write-back.
    os.pwrite(cached, b"\x33" * BS, OFF)
    direct_write(0x44)
    os.fsync(cached)
    got = direct_read()
    print("the image holds %#x" % got[0])
    sys.exit(0 if got == b"\x44" * BS else 1)
EOF

for mode in writeback writethrough; do
	opt=
	[ "$mode" = writethrough ] && opt="-o writethrough"
	ok "$mode: mount" fs_mount "$IMG" "$M" $opt
	ok "$mode: 4 O_DIRECT writers, fio --verify" fio --output="$T/fio.out" --minimal \
		--name=p --filename="$M/disk" --rw=randwrite --bs=4k --direct=1 --numjobs=4 \
		--size=16M --offset_increment=32M --ioengine=psync --verify=crc32c \
		--verify_fatal=1 --do_verify=1
	ok "$mode: an O_DIRECT write is seen by a cached handle" \
		python3 "$T/mix.py" "$M/disk" stale
	ok "$mode: an O_DIRECT write wins over older dirty pages" \
		python3 "$T/mix.py" "$M/disk" dirty
	ok "$mode: opens after an O_DIRECT writer's are uncached and coherent" \
		python3 "$T/mix.py" "$M/disk" direct-first
	ok "$mode: unmount" fs_umount "$M"
	ok "$mode: vdisk check clean" vcheck "$IMG"
done
done_testing
