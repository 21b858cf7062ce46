#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs -o one_receiver (fs/loop.c): one thread receives every request and runs
# small and O_DIRECT I/O of disk itself; the rest goes to a pool of workers. With
# the pool at its smallest (11 workers) and 120 programs at once (O_DIRECT reads
# of a snapshot, large cached reads and 256 KiB writes of disk, so that jobs queue
# for a worker), every request is answered and right; a snapshot taken while
# writers hold dirty pages (nested write-back through the mount) completes; SIGTERM
# during I/O ends the daemon cleanly; the default loop (libfuse's) serves the same.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/l.vdk
M=$T/mnt
N=40
[ "${VDISK_ASAN:-0}" = 1 ] && N=16
ok "create a 256 MiB image" mkimg "$IMG" 256M
ok "mount with -o one_receiver and the smallest pool" fs_mount "$IMG" "$M" -o one_receiver,max_threads=11
randfile "$T/a" $((256 * 1048576)) 13
ok "256 MiB written and fsync'd" dd if="$T/a" of="$M/disk" bs=1M conv=notrunc,fsync status=none
ok "snapshot s1" mkdir "$M/snapshots/s1"

pids=
for i in $(seq $N); do
	dd if="$M/snapshots/s1/disk" bs=1M iflag=direct skip=$((i * 5)) count=16 status=none \
		>"$T/r$i" 2>"$T/e$i" &
	pids="$pids $!"
	dd if="$M/disk" of=/dev/null bs=4M skip=$((i % 60)) count=4 status=none 2>>"$T/e$i" &
	pids="$pids $!"
	dd if=/dev/zero of="$M/disk" bs=256k seek=$((i * 4)) count=4 conv=notrunc status=none \
		2>>"$T/e$i" &
	pids="$pids $!"
done
fails=0
for p in $pids; do
	wait "$p" || fails=$((fails + 1))
done
ok_eq "$fails" 0 "$((N * 3)) programs at once: none failed"
ok "no error messages" sh -c "! cat '$T'/e* | grep -q ."
bad=0
for i in $(seq $N); do
	cmp -s -i 0:$((i * 5 * 1048576)) -n $((16 * 1048576)) "$T/r$i" "$T/a" || bad=$((bad + 1))
done
ok_eq "$bad" 0 "every O_DIRECT read of the snapshot returned its bytes"
ok "the writes of zeroes are in disk" cmp -s -i 1048576:0 -n $((N * 1048576)) "$M/disk" /dev/zero

# Writers holding dirty pages, and a snapshot meanwhile: the daemon writes them back
# through the mount (the receiving thread serves those requests).
# (The writer says when its writes have returned: on a loaded machine 0.5 s
# was not always enough for python to start and write.)
python3 - "$M/disk" "$T/wrote" <<'EOF' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
for k in range(64):
    os.pwrite(fd, bytes([k]) * 65536, 64 * 1048576 + k * 65536)
open(sys.argv[2], "w").close()
time.sleep(2)
os.close(fd)
EOF
wpid=$!
for _ in $(seq 300); do
	[ -e "$T/wrote" ] && break
	sleep 0.1
done
ok "snapshot s2 while a writer holds dirty pages" mkdir "$M/snapshots/s2"
wait $wpid
ok "s2 has the writer's bytes" python3 -c "
import sys
with open('$M/snapshots/s2/disk', 'rb') as f:
    for k in range(64):
        f.seek(64 * 1048576 + k * 65536)
        if f.read(65536) != bytes([k]) * 65536:
            sys.exit(1)
"

# SIGTERM while requests are in flight: a clean exit.
dd if="$M/disk" of=/dev/null bs=1M iflag=direct status=none &
rpid=$!
sleep 0.2
kill -TERM "$FS_PID"
wait "$FS_PID"
ok_eq "$?" 0 "SIGTERM during I/O: the daemon exits 0"
wait $rpid 2>/dev/null
fusermount3 -uz "$M" 2>/dev/null
ok "vdisk check is clean" vcheck "$IMG"

# libfuse's own loop, for comparisons, still serves the same.
fs_mount "$IMG" "$M"
ok "the default loop (libfuse's): mounted" is_mounted "$M"
ok "the default loop: the snapshot reads back" same_region "$M/snapshots/s1/disk" 0 \
	$((256 * 1048576)) "$T/a"
ok "the default loop: unmount" fs_umount "$M"
done_testing
