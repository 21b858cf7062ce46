#!/bin/sh
# SPDX-License-Identifier: MIT
# A reload (SIGHUP) that revokes an initiator's access while it has a command
# in flight (RFC 7143 11.9.1): the initiator gets an Async Message asking it to
# log out, its WRITE still completes and is answered GOOD (and is in the
# file), a command sent after the Async Message is rejected "waiting for
# logout", and its Logout is answered before the connection closes. An
# initiator that ignores the request is disconnected once the time the Async
# Message gave has passed. The other initiator's session goes on untouched.
# The WRITE is held on its worker by the test-only hook
# VDISK_TARGET_TEST_WRITE_DELAY_MS, so the reload surely comes while it runs.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which perl

P1=$(free_port)
truncate -s 64M "$T/disk"
KEEPI=iqn.2026-11.org.example:stays
GONEI=iqn.2026-11.org.example:evicted
cat >"$T/conf" <<EOT
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/disk
allow = $KEEPI
allow = $GONEI
EOT
VDISK_TARGET_TEST_WRITE_DELAY_MS=1500
export VDISK_TARGET_TEST_WRITE_DELAY_MS
ok "start the target (started WRITEs wait 1500 ms)" start_target --config "$T/conf"
unset VDISK_TARGET_TEST_WRITE_DELAY_MS
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"

wait_ready() {
	for _i in $(seq 100); do
		[ "$(cat "$@" | grep -c ready)" = $# ] && return 0
		sleep 0.1
	done
	return 1
}

# has_write LBA: the 2 MiB at LBA are one 32-bit pattern repeated, not zero
has_write() {
	perl -e 'open(my $f, "<", $ARGV[0]) or die; seek($f, $ARGV[1], 0);
		read($f, my $b, 2097152); exit($b ne substr($b, 0, 4) x 524288 || $b eq "\0" x 2097152)' \
		"$T/disk" $(($1 * 512))
}

# revoke MODE LBA: one round; the access comes back afterwards
revoke() {
	PEER_INITIATOR=$KEEPI $PEER hold 4 >"$T/keep.out" 2>&1 &
	_k=$!
	PEER_INITIATOR=$GONEI $PEER revoke-inflight "$1" 2097152 "$2" >"$T/gone.out" 2>"$T/gone.err" &
	_g=$!
	ok "$1: both initiators logged in, the WRITE sent" wait_ready "$T/keep.out" "$T/gone.out"
	sleep 0.3
	sed -i "/allow = $GONEI/d" "$T/conf"
	kill -HUP "$TPID"
	wait $_g
	_st=$?
	sed 's/^/# /' "$T/gone.err" "$T/gone.out"
	case $1 in
	logout) ok "logout: Async Message, WRITE answered GOOD, new command rejected, Logout answered" test $_st = 0 ;;
	ignore) ok "ignore: Async Message, WRITE answered GOOD, closed by the target in time" test $_st = 0 ;;
	esac
	ok "$1: the WRITE is in the file" has_write "$2"
	ok "$1: the session still allowed goes on" wait $_k
	ok "$1: the revoked initiator cannot log in again" \
		sh -c "! PEER_INITIATOR=$GONEI $PEER hold 0 2>/dev/null"
	echo "allow = $GONEI" >>"$T/conf"
	kill -HUP "$TPID"
}
revoke logout 0
sleep 0.5
revoke ignore 8192
ok "stop the target" stop_target
done_testing
