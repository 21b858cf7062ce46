#!/bin/sh
# SPDX-License-Identifier: MIT
# Third QA pass (branch qa3): vdiskfs and vdisk used as the README describes them,
# on inputs the other tests do not cover. A read-only mount of an image that
# another mount is writing is refused (it would show stale pages and map
# tables), and holds a share lock that keeps a writer out while it is mounted;
# a write through a partition is seen through an fd of disk that stays open,
# when it does not cover whole pages (POSIX_FADV_DONTNEED keeps partial pages)
# and with -o writethrough (whose reads of disk are cached too). A regular file
# as MOUNTPOINT is refused. A GPT left under a plain MBR is ignored, as Linux does.
# Under -s, a snapshot or a partition write while disk is open no longer hangs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
cd "$T" || exit 1

# watched OUT CMD...: run CMD with its output in OUT; if it has not ended after
# 10 s (a hung mount), kill -9 the daemon ($FS_PID), which ends it, and say "hung".
# Its status: 0 if it ended by itself.
watched() {
	_out=$1
	shift
	"$@" >"$_out" 2>&1 &
	_wp=$!
	for _i in $(seq 100); do
		kill -0 $_wp 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 $_wp 2>/dev/null; then
		fs_kill9 "$T/m1"
		wait $_wp
		echo hung >"$_out"
		return 1
	fi
	wait $_wp
	return 0
}

# ---- A read-only mount under a read-write one (and the other way round).
ok "create an image" mkimg a.vdk 16M
ok "mount it read-write" fs_mount "$T/a.vdk" "$T/m1"
rwpid=$FS_PID
mkdir -p m2
cleanup_fn fusermount3 -uz "$T/m2"
"$VDISKFS" -o ro a.vdk m2 2>ro.err
rc=$?
ok "a -o ro mount of the image mounted read-write elsewhere is refused (was: mounted, stale)" \
	sh -c "[ $rc -eq 1 ] && ! grep -q ' $T/m2 fuse' /proc/mounts"
ok "  saying why" grep -q "open for writing elsewhere.*force_share" ro.err
"$VDISKFS" -o ro,force_share a.vdk m2 2>fs.err
rc=$?
ok "-o force_share mounts it anyway" sh -c "[ $rc -eq 0 ] && grep -q ' $T/m2 fuse' /proc/mounts"
ok "  with a warning" grep -q "warning: .*a.vdk is open for writing elsewhere" fs.err
fpid=$(daemon_pid "$T/m2")
fusermount3 -u m2
wait_pid_gone "$fpid"
ok "unmount the read-write mount" fs_umount "$T/m1" "$rwpid"
ok "mount -o ro" fs_mount "$T/a.vdk" "$T/m2" -o ro
ropid=$FS_PID
"$VDISKFS" a.vdk m1 2>rw.err
rc=$?
ok "a read-write mount while it is mounted read-only is refused" \
	sh -c "[ $rc -eq 1 ] && ! grep -q ' $T/m1 fuse' /proc/mounts && grep -q locked rw.err"
ok_fail "so is vdisk snapshot create" sh -c "\"$VDISK\" snapshot create a.vdk s1 2>/dev/null"
ok "a second -o ro mount is fine" fs_mount "$T/a.vdk" "$T/m3" -o ro
ok "unmount both" sh -c "fusermount3 -u '$T/m3' && fusermount3 -u '$T/m2'"
wait "$FS_PID" "$ropid"
ok "then a read-write mount works" fs_mount "$T/a.vdk" "$T/m1"
ok "unmount" fs_umount "$T/m1"

# ---- A MOUNTPOINT that is a regular file: libfuse mounted a file-rooted mount
# there, and every access to it was EIO; refused before the mount now.
: >afile
cleanup_fn fusermount3 -uz "$T/afile"
"$VDISKFS" a.vdk afile 2>file.err
rc=$?
ok "a regular file as MOUNTPOINT is refused (was: mounted, EIO)" \
	sh -c "[ $rc -eq 1 ] && ! grep -q ' $T/afile fuse' /proc/mounts"
ok "  saying why" grep -q "afile: Not a directory" file.err

# ---- Writes through a partition seen through an fd of disk that stays open:
# writes that cover pages of disk only in part, and with -o writethrough too
# (reads of disk are cached there as well).
ok "create a 32 MiB image" mkimg g.vdk 32M
cat >coh.py <<'EOF'
import os, subprocess, sys
mnt, start, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = os.open(mnt + "/disk", os.O_RDONLY)
p = os.open(mnt + "/partitions/p1", os.O_RDWR)
bad = []
# (offset in p1, length): a sector inside a page, the end of a page, two partial
# pages, a whole page, one byte
for i, (off, ln) in enumerate([(512, 512), (4096 + 100, 3996), (12288 + 3000, 5000),
                                (65536, 4096), (200000, 1)]):
    os.pread(d, 1 << 20, start + off - off % 4096)  # disk's pages of the range cached
    data = bytes([(i * 37 + j + seed) % 251 + 1 for j in range(ln)])
    if os.pwrite(p, data, off) != ln:
        bad.append("short write %d" % off)
    if os.pread(d, ln, start + off) != data:
        bad.append("%d+%d" % (off, ln))
# a hole punched through p1 (fallocate -p), inside a page
os.pwrite(p, b"x" * 4096, 0)
os.pread(d, 1 << 20, start)
subprocess.check_call(["fallocate", "-p", "-o", "1024", "-l", "1024", mnt + "/partitions/p1"])
if os.pread(d, 1024, start + 1024) != bytes(1024):
    bad.append("punch")
print(" ".join(bad) if bad else "ok")
EOF
seed=0
for mode in writeback writethrough single; do
	seed=$((seed + 100))
	opt=
	[ $mode = writethrough ] && opt="-o writethrough"
	[ $mode = single ] && opt="-s"
	ok "$mode: mount" fs_mount "$T/g.vdk" "$T/m1" $opt
	[ $mode = writeback ] && ok "sgdisk: p1 at sector 2048" quiet sgdisk -n1:2048:+8M "$T/m1/disk"
	watched coh.out python3 coh.py "$T/m1" $((2048 * 512)) $seed
	st=$?
	ok_eq "$(cat coh.out)" ok \
		"$mode: an open fd of disk sees writes through p1, whole pages or not (was: stale; -s: hung)"
	[ $st = 0 ] && ok "$mode: unmount" fs_umount "$T/m1"
done
ok "vdisk check is clean" vcheck g.vdk

# ---- -s (single-threaded): a snapshot taken while a writer holds dirty pages
# of disk hung for ever (the one thread waited for the nested write-back, whose
# WRITE requests only it could serve); disk is uncached under -s now.
ok "mount -s" fs_mount "$T/g.vdk" "$T/m1" -s
cat >snap.py <<'EOF'
import os, sys
m = sys.argv[1]
fd = os.open(m + "/disk", os.O_RDWR)
os.pwrite(fd, b"D" * 65536, 0)
os.mkdir(m + "/snapshots/s1")
os.pwrite(fd, b"E" * 65536, 0)
s = open(m + "/snapshots/s1/disk", "rb").read(4)
d = os.pread(fd, 4, 0)
os.close(fd)
print("ok" if (s, d) == (b"DDDD", b"EEEE") else "snapshot %r disk %r" % (s, d))
EOF
watched snap.out python3 snap.py "$T/m1"
st=$?
ok_eq "$(cat snap.out)" ok "-s: mkdir snapshots/s1 while a writer holds dirty pages (was: hung)"
if [ $st = 0 ]; then
	ok "-s: rmdir" rmdir "$T/m1/snapshots/s1"
	ok "-s: unmount" fs_umount "$T/m1"
fi
ok "vdisk check is clean" vcheck g.vdk

# ---- A GPT left behind under a new MBR (an MBR tool that did not wipe it):
# Linux ignores a GPT without a protective MBR and shows the MBR's partitions;
# so do we now (were: the stale GPT's partitions, windows across the real p1).
ok "create a 64 MiB image" mkimg mg.vdk 64M
ok "mount it" fs_mount "$T/mg.vdk" "$T/m1"
ok "sgdisk: two GPT partitions of 8 MiB" quiet sgdisk -n1:2048:+8M -n2:0:+8M "$T/m1/disk"
ok_eq "$(ls "$T/m1/partitions" | tr '\n' ' ')" "p1 p2 " "partitions/: p1 p2"
# An MBR with one Linux partition of 30 MiB at 1 MiB over the protective one.
perl -e 'open(my $f, "+<", $ARGV[0]) or die; sysseek($f, 446, 0);
	syswrite($f, pack("C4 C4 V V", 0, 0, 0, 0, 0x83, 0, 0, 0, 2048, 61440) . "\0" x 48 . "\x55\xaa")
	== 66 or die; close($f) or die' "$T/m1/disk"
ok_eq "$(ls "$T/m1/partitions" | tr '\n' ' ')" "p1 " "a new MBR over it: partitions/ shows the MBR's p1 only"
ok_eq "$(stat -c %s "$T/m1/partitions/p1" 2>&1)" $((61440 * 512)) "  of the MBR's size (30 MiB)"
ok "unmount" fs_umount "$T/m1"

done_testing
