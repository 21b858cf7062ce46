#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs under concurrency: 4 writers (fio, verifying as they go) and 4
# readers on disk while a snapshot is taken every 100 ms and older ones are
# deleted; no error anywhere, the data verifies, the image checks clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"

IMG=$T/img.vdk
M=$T/mnt
RUN=6
[ "${VDISK_ASAN:-0}" = 1 ] && RUN=4
ok "create a 128 MiB image" mkimg "$IMG" 128M
ok "mount" fs_mount "$IMG" "$M"
randfile "$T/base" 1048576 41
dd if="$T/base" of="$M/disk" bs=1M seek=100 conv=notrunc,fsync status=none

fio --name=writers --filename="$M/disk" --rw=randwrite --bsrange=4k-64k --offset=0 --size=16M \
	--offset_increment=16M --numjobs=4 --ioengine=psync --direct=1 --time_based --runtime=$RUN \
	--verify=crc32c --verify_backlog=64 --verify_fatal=1 --verify_state_save=0 --randseed=5 \
	--output="$T/fio-w.out" >/dev/null 2>&1 &
w_pid=$!
fio --name=readers --filename="$M/disk" --rw=randread --bsrange=4k-1M --size=128M --numjobs=4 \
	--ioengine=psync --direct=0 --time_based --runtime=$RUN \
	--output="$T/fio-r.out" >/dev/null 2>&1 &
r_pid=$!
# Snapshots every 100 ms; every third one deletes the one taken three steps before.
(
	i=0 err=0 del=0
	end=$(($(date +%s) + RUN))
	while [ "$(date +%s)" -lt "$end" ]; do
		mkdir "$M/snapshots/c$i" || err=$((err + 1))
		if [ $((i % 3)) -eq 2 ] && [ $i -ge 3 ]; then
			rmdir "$M/snapshots/c$((i - 3))" || err=$((err + 1))
			del=$((del + 1))
		fi
		i=$((i + 1))
		sleep 0.1
	done
	echo "$i $err $del" >"$T/snaps"
) 2>"$T/snap.err" &
s_pid=$!
wait "$w_pid"
ok_eq "$?" 0 "4 writers: no error, data verified"
wait "$r_pid"
ok_eq "$?" 0 "4 readers: no error"
wait "$s_pid"
read -r nsnap nerr ndel <"$T/snaps"
# At least one a second: the count depends on the load of the machine, not on correctness.
ok "snapshots taken every 100 ms: $nsnap in $RUN s" test "$nsnap" -ge "$RUN"
ok_eq "$nerr" 0 "no mkdir/rmdir error"
[ "$nerr" = 0 ] || sed 's/^/# /' "$T/snap.err"
ok_eq "$(ls "$M/snapshots" | wc -l)" "$((nsnap - ndel))" "$ndel deleted, the others are listed"
ok_eq "$("$VDISK" snapshot list "$IMG" 2>&1 | awk 'NR > 1 { printf "%s ", $2 }')" \
	"$(ls -U "$M/snapshots" | tr '\n' ' ')" "vdisk snapshot list agrees with snapshots/"
ok "untouched data is intact" same_region "$M/disk" 104857600 1048576 "$T/base"
ok "mkdir snapshots/last" mkdir "$M/snapshots/last"
ok "snapshots/last/disk equals disk" cmp -s "$M/snapshots/last/disk" "$M/disk"
first=$(ls -U "$M/snapshots" | head -1)
ok "the oldest snapshot ($first) reads fully" sh -c "cat '$M/snapshots/$first/disk' >/dev/null"
ok "and holds the untouched data" same_region "$M/snapshots/$first/disk" 104857600 1048576 "$T/base"
ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
