# SPDX-License-Identifier: MIT
# Shared helpers for the end-to-end shell tests (after nbdkit's functions.sh.in
# and git's test-lib.sh). Source it, then call plan N or use ok/done_testing.
#   VDISK       path to the vdisk binary      VDISKFS  path to vdiskfs
#   TARGET      path to vdisk-target          T        a fresh scratch directory
#   requires CMD...      skip the whole test (recorded: make check fails on skips)
#   cleanup_fn CMD...    run at exit, in reverse order
#   ok COND-CMD... / ok_eq A B NAME / not_ok NAME / plan N / done_testing
set -u
: "${VDISK_BUILD:=$(cd "$(dirname "$0")/.." && pwd)/build}"
VDISK="$VDISK_BUILD/vdisk"
VDISKFS="$VDISK_BUILD/vdiskfs"
TARGET="$VDISK_BUILD/vdisk-target"
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
export VDISK VDISKFS TARGET SRCDIR
# Sanitizer builds: leaks are reported at exit, and reported errors fail the program.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

_tap_n=0
_tap_fail=0
_cleanups=""

# Scratch space: tmpfs when it has room (fast, and /tmp is a real disk here).
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	T=$(mktemp -d /dev/shm/vdisk-test.XXXXXX)
else
	T=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-test.XXXXXX")
fi
export T

_run_cleanups() {
	for c in $_cleanups; do
		eval "$(printf '%s' "$c" | base64 -d)" >/dev/null 2>&1 || :
	done
	[ -n "${VDISK_KEEP:-}" ] || rm -rf "$T"
}
trap '_run_cleanups' EXIT
trap 'exit 130' INT TERM

# cleanup_fn CMD ARGS...: run CMD at exit (last registered runs first).
cleanup_fn() {
	_c=$(printf '%s ' "$@" | base64 -w0)
	_cleanups="$_c $_cleanups"
}

plan() { echo "1..$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
diag() { printf '# %s\n' "$*"; }

requires() {
	"$@" >/dev/null 2>&1 || skip_all "requires: $*"
}

# ok NAME CMD ARGS...: passes when CMD succeeds.
ok() {
	_name=$1
	shift
	_tap_n=$((_tap_n + 1))
	if "$@"; then
		echo "ok $_tap_n - $_name"
	else
		echo "not ok $_tap_n - $_name"
		_tap_fail=$((_tap_fail + 1))
	fi
}

# ok_fail NAME CMD ARGS...: passes when CMD fails (non-zero exit).
ok_fail() {
	_name=$1
	shift
	_tap_n=$((_tap_n + 1))
	if "$@"; then
		echo "not ok $_tap_n - $_name (unexpected success)"
		_tap_fail=$((_tap_fail + 1))
	else
		echo "ok $_tap_n - $_name"
	fi
}

# ok_eq ACTUAL EXPECTED NAME
ok_eq() {
	_tap_n=$((_tap_n + 1))
	if [ "$1" = "$2" ]; then
		echo "ok $_tap_n - $3"
	else
		echo "not ok $_tap_n - $3"
		printf '#   got:      %s\n#   expected: %s\n' "$1" "$2"
		_tap_fail=$((_tap_fail + 1))
	fi
}

done_testing() {
	echo "1..$_tap_n"
	[ "$_tap_fail" -eq 0 ]
	exit $?
}

# Deterministic pseudo-random data: randfile FILE BYTES SEED
randfile() {
	perl -e 'my ($n,$s)=@ARGV; srand($s); my $b=""; while(length($b)<$n){ $b.=pack("L*", map { int(rand(4294967296)) } 1..1024) } print substr($b,0,$n)' "$2" "$3" >"$1"
}

# Wait until a path is a FUSE mount (or give up after ~10 s).
wait_mounted() {
	for _i in $(seq 100); do
		grep -q " $1 fuse" /proc/mounts && return 0
		sleep 0.1
	done
	return 1
}

# Pick a free TCP port on 127.0.0.1 (for iSCSI tests running in parallel).
free_port() {
	perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0,ReuseAddr=>1) or die; print $s->sockport'
}
