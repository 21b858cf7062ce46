# SPDX-License-Identifier: MIT
# Helpers for the vdiskfs tests (t03NN-*.sh), sourced after lib.sh.
#   fs_mount IMG MNT [ARGS...]   run vdiskfs -f in the background, wait for the mount;
#                                the daemon's pid is in $FS_PID (unmounted at exit)
#   fs_umount MNT                fusermount3 -u, then wait for the daemon: its exit status
#   fs_kill9 MNT                 kill -9 the daemon, then detach the dead mount
#   seek_data FILE OFF / seek_hole FILE OFF   print lseek(SEEK_DATA/SEEK_HOLE) or "ENXIO"
#   is_mounted MNT               MNT is a FUSE mount right now
#   daemon_pid MNT               pid of a daemonized vdiskfs serving MNT (from /proc)
#   perr CMD...                  run CMD, stderr into $T/perr; success status of CMD

FS_PID=
_fs_pids=""

is_mounted() {
	grep -q " $1 fuse" /proc/mounts
}

fs_mount() {
	_img=$1
	_mnt=$2
	shift 2
	mkdir -p "$_mnt"
	"$VDISKFS" -f "$_img" "$_mnt" "$@" 2>>"$T/vdiskfs.log" &
	FS_PID=$!
	cleanup_fn fs_cleanup_one "$_mnt" "$FS_PID"
	wait_mounted "$_mnt"
}

fs_cleanup_one() {
	if is_mounted "$1"; then
		fusermount3 -uz "$1"
	fi
	kill "$2" 2>/dev/null
	return 0
}

fs_umount() {
	_pid=$FS_PID
	[ -n "${2:-}" ] && _pid=$2
	fusermount3 -u "$1" || return 1
	wait "$_pid"
}

fs_kill9() {
	kill -9 "$FS_PID"
	wait "$FS_PID" 2>/dev/null
	fusermount3 -uz "$1"
}

seek_data() {
	perl -e 'open(my $f, "<", $ARGV[0]) or die "$ARGV[0]: $!"; my $r = sysseek($f, $ARGV[1], 3);
		print defined $r ? $r + 0 : ($!{ENXIO} ? "ENXIO" : "ERR $!")' "$1" "$2"
}

seek_hole() {
	perl -e 'open(my $f, "<", $ARGV[0]) or die "$ARGV[0]: $!"; my $r = sysseek($f, $ARGV[1], 4);
		print defined $r ? $r + 0 : ($!{ENXIO} ? "ENXIO" : "ERR $!")' "$1" "$2"
}

daemon_pid() {
	for _p in /proc/[0-9]*; do
		_c=$(cat "$_p/cmdline" 2>/dev/null | tr '\0' ' ')
		case "$_c" in
		*vdiskfs*" $1 "* | *vdiskfs*" $1")
			# Ours only: a daemon of another test (or person) may have the same arguments;
			# ours inherited this test's $T (lib.sh exports it).
			tr '\0' '\n' <"$_p/environ" 2>/dev/null | grep -qxF "T=$T" || continue
			echo "${_p#/proc/}"
			return 0
			;;
		esac
	done
	return 1
}

# Wait (up to ~20 s) for a pid that is not our child to exit.
wait_pid_gone() {
	for _i in $(seq 200); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

perr() {
	"$@" 2>"$T/perr"
}

# Bytes [OFF, OFF+LEN) of FILE to stdout.
region() {
	dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}

# A native image: mkimg FILE SIZE [vdisk create options...]
mkimg() {
	_f=$1
	_s=$2
	shift 2
	"$VDISK" create -s "$_s" "$@" "$_f" >/dev/null
}

# is_zero FILE OFF LEN: the range reads as zeroes.
is_zero() {
	region "$1" "$2" "$3" | cmp -s -n "$3" - /dev/zero
}

# same_region FILE OFF LEN REF [REF_OFF]: the range equals REF's bytes from REF_OFF.
same_region() {
	region "$1" "$2" "$3" | cmp -s -n "$3" - "$4" 0 "${5:-0}"
}

# vcheck IMG: `vdisk check` finds the chain clean (output kept in $T/check.out).
vcheck() {
	"$VDISK" check "$1" >"$T/check.out" 2>&1 || { sed 's/^/# /' "$T/check.out"; return 1; }
}

# quiet CMD...: run CMD with its output in $T/quiet.out (out of the TAP stream).
quiet() {
	"$@" >"$T/quiet.out" 2>&1
}
