# SPDX-License-Identifier: MIT
# Helpers for the vdisk-target end-to-end tests (tests/t04NN-*.sh); source
# after tests/lib.sh.
#   IQN                    the target name the tests use
#   start_target ARGS...   run "$TARGET -f ARGS" in the background, wait for $P1
#   stop_target            SIGTERM, wait; returns the daemon's exit status
#   lun_url HOST PORT LUN  an iscsi:// URL for the test target
IQN=iqn.2026-11.org.example:vdisk-test
TPID=

wait_port() {
	perl -MIO::Socket::INET -e '
		for (1..100) { exit 0 if IO::Socket::INET->new(PeerAddr=>$ARGV[0], PeerPort=>$ARGV[1]);
			select(undef,undef,undef,0.1) } exit 1' "$1" "$2"
}

_kill_target() {
	[ -n "$TPID" ] && kill "$TPID" 2>/dev/null && wait "$TPID" 2>/dev/null
	TPID=
}

start_target() {
	"$TARGET" -f "$@" >>"$T/target.log" 2>&1 &
	TPID=$!
	cleanup_fn _kill_target
	wait_port 127.0.0.1 "$P1"
}

stop_target() {
	kill -TERM "$TPID" 2>/dev/null || return 1
	wait "$TPID"
	_st=$?
	TPID=
	return $_st
}

lun_url() {
	echo "iscsi://$1:$2/$IQN/$3"
}
