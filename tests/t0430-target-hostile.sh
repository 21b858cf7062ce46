#!/bin/sh
# SPDX-License-Identifier: MIT
# Hostile and broken peers against vdisk-target (tools/target/iscsi-peer.pl, an
# independent mini initiator): CRC32C header and data digests end to end, bad
# digests, an unknown opcode (Reject, session goes on), a data segment beyond
# MaxRecvDataSegmentLength, a truncated PDU, a malformed login, a login that
# never finishes, a connection dropped in the middle of a write (the backing
# file is not touched), 64 sessions at once (memory stays small), session
# reinstatement, and the target's NOP-In keep-alive on an idle session. After each,
# the daemon keeps serving a real initiator.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq perl

P1=$(free_port)
truncate -s 32M "$T/disk"
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk"
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"
alive() {
	iscsi-inq "$(lun_url 127.0.0.1 "$P1" 0)" >/dev/null 2>&1
}

# a login that never finishes, running while everything else goes on
$PEER hang-login 30 2>"$T/hang.err" &
HANG=$!
# an idle session, which the target must ping (NOP-In) after 15 s
$PEER keepalive 2>"$T/keepalive.err" &
KEEP=$!

ok "CRC32C digests, immediate data, R2T, Data-In, NOP, Logout" $PEER digests
for sc in bad-data-digest bad-header-digest bad-opcode oversized bad-login-text; do
	ok "$sc: answered as RFC 7143 wants" $PEER $sc
	ok "$sc: daemon still serves" alive
done
ok "truncated PDU then hang-up" $PEER truncated
ok "truncated PDU: daemon still serves" alive

dd if="$T/disk" of="$T/before" bs=512 skip=2048 count=256 2>/dev/null
ok "connection dropped in the middle of a write" $PEER drop-mid-write 2048
sleep 0.3
dd if="$T/disk" of="$T/after" bs=512 skip=2048 count=256 2>/dev/null
ok "half-written command left the backing file alone" cmp -s "$T/before" "$T/after"
ok "dropped write: daemon still serves" alive
ok "connection dropped inside a large Data-Out" $PEER drop-mid-pdu 2048
sleep 0.3
dd if="$T/disk" of="$T/after" bs=512 skip=2048 count=256 2>/dev/null
ok "cut-off Data-Out left the backing file alone" cmp -s "$T/before" "$T/after"
ok "cut-off Data-Out: daemon still serves" alive
ok "connection dropped inside large immediate data" $PEER drop-mid-imm 2048
sleep 0.3
dd if="$T/disk" of="$T/after" bs=512 skip=2048 count=256 2>/dev/null
ok "cut-off immediate data left the backing file alone" cmp -s "$T/before" "$T/after"
ok "cut-off immediate data: daemon still serves" alive
ok "a WRITE outside the CmdSN window with 64 KiB of immediate data: ignored, session in step" \
	$PEER imm-ignored 2048
dd if="$T/disk" of="$T/after" bs=512 skip=2048 count=256 2>/dev/null
ok "... and nothing written" cmp -s "$T/before" "$T/after"

$PEER sessions 64 4 >"$T/sessions.out" 2>&1 &
SESS=$!
for i in $(seq 50); do
	grep -q ready "$T/sessions.out" && break
	sleep 0.1
done
ok "64 sessions logged in at once" grep -q ready "$T/sessions.out"
# the daemon's own memory: VmRSS without RssShmem, the pages of the tmpfs LUN it maps
rss=$(awk '/^VmRSS/ { r = $2 } /^RssShmem/ { s = $2 } END { print r - s }' /proc/"$TPID"/status)
diag "daemon RSS with 64 sessions: ${rss} KiB (VmRSS less the mapped LUN's tmpfs pages)"
if [ "${VDISK_ASAN:-0}" != 1 ]; then
	ok "under 64 MiB with 64 sessions" test "$rss" -lt 65536
fi
ok "a 65th initiator is served meanwhile" alive
ok "64 sessions worked and logged out" wait $SESS

ok "session reinstatement (same initiator and ISID) closes the old one" $PEER reinstate
ok "the never-finishing login was cut off by the target" wait $HANG
cat "$T/keepalive.err" | sed "s/^/# /"
ok "idle session pinged with NOP-In, answered, kept" wait $KEEP
ok "login timeout logged" grep -q "login not finished" "$T/target.log"
ok "still serving at the end" alive
$PEER await-async >"$T/async.out" 2>&1 &
ASYNC=$!
for i in $(seq 50); do
	grep -q ready "$T/async.out" && break
	sleep 0.1
done
ok "SIGTERM: clean exit" stop_target
ok "SIGTERM sent an Async logout request, the session logged out" wait $ASYNC
done_testing
