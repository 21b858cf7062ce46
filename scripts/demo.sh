#!/bin/sh
# SPDX-License-Identifier: MIT
# `make demo`: build an example native image under demo/ and show what vdisk
# does with it. `make demo-clean` (scripts/demo.sh clean) removes demo/.
#
#   demo/files/      a few hundred files (text from this source tree, generated logs)
#   demo/disk.vdk    a 256 MiB disk: an ext4 filesystem made from demo/files by
#                    mke2fs -d (no mount needed), converted to the native format
#                    (holes stay unallocated), then two snapshots:
#                      installed  the freshly made filesystem
#                      updated    after a burst of writes to the scratch area
#                    and more writes on the current top after that.
# Later issues extend this with a FUSE mount and an iSCSI export of the same image.
set -eu
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
VDISK=${VDISK:-$SRCDIR/build/vdisk}
cd "$SRCDIR"
D=demo

if [ "${1:-}" = clean ]; then
	rm -rf "$D"
	echo "demo: removed $SRCDIR/$D"
	exit 0
fi
[ -x "$VDISK" ] || { echo "demo: build first (make)" >&2; exit 1; }
MKFS=$(command -v mkfs.ext4 || command -v /sbin/mkfs.ext4 || echo /usr/sbin/mkfs.ext4)

show() {	# print and run a vdisk command
	echo
	echo "\$ vdisk $*"
	"$VDISK" "$@"
}

rm -rf "$D"
mkdir -p "$D/files/src" "$D/files/logs"
# Some files' worth of data: this source tree, and generated log files.
(find format tools tests scripts -type f \( -name '*.c' -o -name '*.h' -o -name '*.sh' -o -name '*.md' \) |
	while read -r f; do
		mkdir -p "$D/files/src/$(dirname "$f")"
		cp "$f" "$D/files/src/$f"
	done)
i=0
while [ $i -lt 64 ]; do
	seq 1 2000 | sed "s/^/log $i line /" >"$D/files/logs/day-$i.log"
	i=$((i + 1))
done
echo "demo: $(find "$D/files" -type f | wc -l) files, $(du -sh "$D/files" | cut -f1) in demo/files"

# A 256 MiB disk whose first 128 MiB hold an ext4 filesystem with those files;
# the last 128 MiB are a scratch area the demo writes to.
truncate -s 256M "$D/disk.raw"
"$MKFS" -q -F -L vdisk-demo -d "$D/files" "$D/disk.raw" 128M
show convert -p -O vdk "$D/disk.raw" "$D/disk.vdk"
rm -f "$D/disk.raw"
show snapshot create "$D/disk.vdk" installed

# Changes between the snapshots: 6 scattered 64 KiB writes in the scratch area.
"$VDISK" bench -q -w -c 6 -d 1 -s 64K -S 3M -o 130M --pattern 0x42 "$D/disk.vdk"
show snapshot create "$D/disk.vdk" updated
# And after the last snapshot: 3 writes of 4 KiB.
"$VDISK" bench -q -w -c 3 -d 1 -s 4K -S 4M -o 200M --pattern 0x24 "$D/disk.vdk"

show info "$D/disk.vdk"
show snapshot list "$D/disk.vdk"
show diff "$D/disk.vdk" installed updated
show diff "$D/disk.vdk" updated
echo
echo "\$ vdisk map $D/disk.vdk | head -12"
"$VDISK" map "$D/disk.vdk" | head -12
show check "$D/disk.vdk"

# ---- the mount (vdiskfs) and the export (vdisk-target) ------------------------
VDISKFS=${VDISKFS:-$SRCDIR/build/vdiskfs}
TARGET=${TARGET:-$SRCDIR/build/vdisk-target}
M="$D/mnt"
TPID=""
demo_stop() {
	[ -n "$TPID" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
	TPID=""
	if grep -q " $SRCDIR/$M fuse" /proc/mounts 2>/dev/null; then
		fusermount3 -u "$M" 2>/dev/null || umount "$M" 2>/dev/null
	fi
}
trap demo_stop EXIT INT TERM

if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	echo
	echo "demo: no /dev/fuse or fusermount3 here: skipping the mount and the export"
else
	mkdir -p "$M"
	echo
	echo "\$ vdiskfs $D/disk.vdk $M"
	"$VDISKFS" "$D/disk.vdk" "$M"
	echo
	echo "\$ ls -l $M $M/partitions $M/snapshots"
	ls -l "$M" "$M/partitions" "$M/snapshots"
	echo
	echo "\$ cat $M/snapshots/updated/info"
	cat "$M/snapshots/updated/info"
	echo
	echo "\$ head -3 $M/snapshots/updated/changed"
	head -3 "$M/snapshots/updated/changed"
	echo
	echo "\$ mkdir $M/snapshots/live     # a live snapshot"
	mkdir "$M/snapshots/live"
	echo "\$ ls $M/snapshots"
	ls "$M/snapshots"
	if command -v debugfs >/dev/null || [ -x /sbin/debugfs ]; then
		DEBUGFS=$(command -v debugfs || echo /sbin/debugfs)
		echo
		echo "\$ debugfs -R 'ls /' $M/snapshots/installed/disk   # the ext4 inside a snapshot, no mount needed"
		"$DEBUGFS" -R 'ls /' "$M/snapshots/installed/disk" 2>/dev/null | head -5
	fi
	if command -v iscsi-inq >/dev/null; then
		PORT=$(perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0,ReuseAddr=>1) or die; print $s->sockport')
		IQN=iqn.2026-11.org.vdiskfs:demo
		echo
		echo "\$ vdisk-target --iqn $IQN --portal 127.0.0.1:$PORT --portal 127.0.0.2:$PORT \\"
		echo "      --lun 0=$M/disk --lun 1=$M/snapshots/installed/disk,ro -f &"
		"$TARGET" --iqn "$IQN" --portal "127.0.0.1:$PORT" --portal "127.0.0.2:$PORT" \
			--lun "0=$M/disk" --lun "1=$M/snapshots/installed/disk,ro" -f -q &
		TPID=$!
		sleep 1
		echo
		echo "\$ iscsi-ls -s iscsi://127.0.0.1:$PORT"
		iscsi-ls -s "iscsi://127.0.0.1:$PORT" 2>&1 | head -12
		echo
		for p in 127.0.0.1 127.0.0.2; do
			echo "\$ iscsi-inq -e 1 -c 131 iscsi://$p:$PORT/$IQN/0 | grep -A1 T10   # the LUN's identity, the same on both portals"
			iscsi-inq -e 1 -c 131 "iscsi://$p:$PORT/$IQN/0" 2>&1 | grep -A1 T10
		done
	fi
	demo_stop
	echo
	echo "\$ fusermount3 -u $M; vdisk snapshot list $D/disk.vdk   # the live snapshot is there"
	"$VDISK" snapshot list "$D/disk.vdk"
fi
echo
echo "demo: done; the image is $SRCDIR/$D/disk.vdk ('make demo-clean' removes demo/)"
