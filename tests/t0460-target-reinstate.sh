#!/bin/sh
# SPDX-License-Identifier: MIT
# Session reinstatement against commands still running (RFC 7143 6.3.5):
# a 2 MiB WRITE goes to a worker thread, its connection drops (or stays), and a
# new connection logs in at once with the same initiator name and ISID, then
# READs the same blocks twice, a few seconds apart. The old WRITE cannot be
# called back once a worker has started it, so the target must hold the new
# session's Login Response until it is done: both READs see the same data
# (the WRITE's), never old data first and the WRITE landing under the new
# session afterwards. The window is made wide by the test-only hook
# VDISK_TARGET_TEST_WRITE_DELAY_MS (a started WRITE sleeps before it touches
# the LUN), which stands for a slow disk or a busy FUSE daemon.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq perl

P1=$(free_port)
truncate -s 64M "$T/disk"
DELAY=2000
VDISK_TARGET_TEST_WRITE_DELAY_MS=$DELAY
export VDISK_TARGET_TEST_WRITE_DELAY_MS
ok "start the target (started WRITEs wait ${DELAY} ms)" \
	start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$T/disk"
unset VDISK_TARGET_TEST_WRITE_DELAY_MS
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"

# run MODE LBA: one reinstatement round; the WRITE must be in the file
run() {
	$PEER reinstate-write "$1" 2097152 "$2" 0.5 2.5 >"$T/out" 2>"$T/err"
	_st=$?
	sed 's/^/# /' "$T/err" "$T/out"
	ok "$1: the new session's READs agree (the old WRITE did not land under it)" test $_st = 0
	ok "$1: the WRITE landed before the new Login Response" grep -q '^landed' "$T/out"
	ok "$1: the backing file holds the whole WRITE" perl -e '
		open(my $f, "<", $ARGV[0]) or die; seek($f, $ARGV[1], 0);
		read($f, my $b, 2097152); exit($b ne substr($b, 0, 4) x 524288 || $b eq "\0" x 2097152)' \
		"$T/disk" $(($2 * 512))
}
run drop 0
run keep 8192
ok "a reinstatement with nothing in flight is answered at once" \
	$PEER reinstate
alive() {
	iscsi-inq "$(lun_url 127.0.0.1 "$P1" 0)" >/dev/null 2>&1
}
ok "the daemon still serves" alive
ok "stop the target" stop_target
grep -q "login waits for 1 command" "$T/target.log"
ok "the daemon logged that the login waited" test $? = 0
done_testing
