#!/bin/sh
# SPDX-License-Identifier: MIT
# A LUN's file that shrinks under the target (truncated by someone else). What
# was beyond the new end is gone: a READ there must not come back GOOD with
# zeros, a WRITE there must not grow the file back in silence. The I/O that
# finds it gets ILLEGAL REQUEST / LBA OUT OF RANGE, every session gets UNIT
# ATTENTION / CAPACITY DATA HAS CHANGED on the LUN, READ CAPACITY tells the new
# size, what is left reads back right, and the daemon keeps serving. Run on a
# tmpfs file (writes into its mapping, reads by splice or from the mapping)
# and with VDISK_TARGET_NO_MMAP=1 (pread/pwrite only). Last, a LUN on a
# vdiskfs mount whose daemon dies: reads get MEDIUM ERROR / UNRECOVERED READ
# ERROR, writes MEDIUM ERROR / WRITE ERROR, and the target lives on; mounted
# again, a reload serves the new mount. A file that grows is seen by READ
# CAPACITY; a file replaced at the same path is served after a reload.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which perl xxd iscsi-inq fusermount3
requires test -c /dev/fuse

PEER_CDB() {
	perl "$SRCDIR/tools/target/iscsi-peer.pl" 127.0.0.1 "$P1" "$IQN" cdb "$@"
}
# sense KEY ASC: the line of a CHECK CONDITION with that key and ASC/ASCQ
sense() {
	printf '2 sense 7000%02x000000000a00000000%s00000000\n' "$1" "$2"
}
OOR=$(sense 5 2100)
UA=$(sense 6 2a09)

round() {
	_n=$1
	P1=$(free_port)
	head -c 16M /dev/urandom >"$T/disk"
	ok "$_n: start the target on a 16 MiB file" \
		start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$T/disk"
	ok_eq "$(PEER_CDB 4096 28000000400000000800 | cut -c1-2)" "0 " "$_n: a READ at 8 MiB works"
	truncate -s 4M "$T/disk"
	_head=$(head -c 4096 "$T/disk" | xxd -p | tr -d '\n')
	# READ 4 KiB at 5 MiB, TUR, READ 64 KiB at 6 MiB, READ CAPACITY(16),
	# READ 4 KiB at 0, WRITE 4 KiB at 6 MiB
	PEER_CDB 4096 28000000280000000800 0 000000000000 65536 28000000300000008000 \
		32 9e100000000000000000000000200000 4096 28000000000000000800 \
		"w:$(printf '%08192d' 0)" 2a000000300000000800 >"$T/out" 2>&1
	sed 's/^/# /' "$T/out" | cut -c1-100
	ok_eq "$(sed -n 1p "$T/out")" "$OOR" "$_n: READ past the new end: ILLEGAL REQUEST, LBA OUT OF RANGE"
	ok_eq "$(sed -n 2p "$T/out")" "$UA" "$_n: then UNIT ATTENTION, CAPACITY DATA HAS CHANGED"
	ok_eq "$(sed -n 3p "$T/out")" "$OOR" "$_n: a 64 KiB READ past the end: LBA OUT OF RANGE"
	ok_eq "$(sed -n 4p "$T/out" | cut -c1-18)" "0 0000000000001fff" \
		"$_n: READ CAPACITY(16): the last LBA is now 8191"
	ok_eq "$(sed -n 5p "$T/out")" "0 $_head" "$_n: what is left reads back right"
	ok_eq "$(sed -n 6p "$T/out")" "$OOR" "$_n: WRITE past the new end: LBA OUT OF RANGE"
	ok_eq "$(stat -c %s "$T/disk")" 4194304 "$_n: ... and the file did not grow back"
	# once more, the first I/O after the shrink a READ of 64 KiB (by reference on tmpfs)
	truncate -s 2M "$T/disk"
	PEER_CDB 65536 28000000180000008000 0 000000000000 >"$T/out" 2>&1
	ok_eq "$(sed -n 1p "$T/out")" "$OOR" "$_n: shrunk again, a 64 KiB READ past the end: LBA OUT OF RANGE"
	ok_eq "$(sed -n 2p "$T/out")" "$UA" "$_n: ... CAPACITY DATA HAS CHANGED"
	ok "$_n: the daemon still serves" sh -c "iscsi-inq '$(lun_url 127.0.0.1 "$P1" 0)' >/dev/null"
	ok "$_n: stop the target" stop_target
	ok "$_n: the daemon logged it" grep -q "capacity changed" "$T/target.log"
}
round tmpfs
VDISK_TARGET_NO_MMAP=1
export VDISK_TARGET_NO_MMAP
round no-mmap
unset VDISK_TARGET_NO_MMAP

# a file grown by its owner: READ CAPACITY tells the new size (an initiator's
# rescan), and the new blocks can be used; a file replaced by another one at
# the same path: a reload (SIGHUP) serves the new file, not the deleted one
P1=$(free_port)
head -c 16M /dev/urandom >"$T/disk"
ok "start the target on a 16 MiB file" \
	start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$T/disk"
truncate -s 32M "$T/disk"
sleep 3	# the target's watcher sees the growth first (else the session could get the UA)
PEER_CDB 32 9e100000000000000000000000200000 4096 28000000c00000000800 >"$T/out" 2>&1
ok_eq "$(sed -n 1p "$T/out" | cut -c1-18)" "0 000000000000ffff" \
	"grown to 32 MiB: READ CAPACITY(16) says the last LBA is 65535"
ok_eq "$(sed -n 2p "$T/out")" "0 $(printf '%08192d' 0)" "... a READ at 24 MiB works: zeros"
mv "$T/disk" "$T/disk.old"
head -c 8M /dev/urandom >"$T/disk"
kill -HUP "$TPID"
sleep 1
PEER_CDB 4096 28000000000000000800 32 9e100000000000000000000000200000 >"$T/out" 2>&1
ok_eq "$(sed -n 1p "$T/out")" "0 $(head -c 4096 "$T/disk" | xxd -p | tr -d '\n')" \
	"replaced by another file and reloaded: the new file's data"
ok_eq "$(sed -n 2p "$T/out" | cut -c1-18)" "0 0000000000003fff" "... and its size"
ok "stop the target" stop_target

P1=$(free_port)
ok "create a 16 MiB native image" mkimg "$T/img.vdk" 16M
ok "mount it" fs_mount "$T/img.vdk" "$T/mnt"
ok "export MOUNT/disk" start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$T/mnt/disk"
ok_eq "$(PEER_CDB 4096 28000000000000000800 | cut -c1-2)" "0 " "a READ works"
kill -KILL "$FS_PID"
wait "$FS_PID" 2>/dev/null
# (LBA 0 is in the kernel's page cache: a READ there, or a WRITE without FUA,
# still succeeds; SYNCHRONIZE CACHE tells the loss)
PEER_CDB 4096 28000000400000000800 "w:$(printf '%08192d' 0)" 2a080000400000000800 \
	0 350000000000000000 >"$T/out" 2>&1
sed 's/^/# /' "$T/out" | cut -c1-100
ok_eq "$(sed -n 1p "$T/out")" "$(sense 3 1100)" "vdiskfs died: READ gets MEDIUM ERROR, UNRECOVERED READ ERROR"
ok_eq "$(sed -n 2p "$T/out")" "$(sense 3 0c00)" "... WRITE (FUA) gets MEDIUM ERROR, WRITE ERROR"
ok_eq "$(sed -n 3p "$T/out")" "$(sense 3 0c00)" "... SYNCHRONIZE CACHE gets MEDIUM ERROR, WRITE ERROR"
ok "the daemon still serves" sh -c "iscsi-inq '$(lun_url 127.0.0.1 "$P1" 0)' >/dev/null"
# vdiskfs started again on the same mount point, the target reloaded: served again
ok "detach the dead mount" fusermount3 -u -z "$T/mnt"
ok "mount the image again" fs_mount "$T/img.vdk" "$T/mnt"
kill -HUP "$TPID"
sleep 1
ok_eq "$(PEER_CDB 4096 28000000400000000800 | cut -c1-2)" "0 " "reloaded: the new mount's disk is served"
ok "stop the target" stop_target
ok "unmount" fs_umount "$T/mnt"
done_testing
