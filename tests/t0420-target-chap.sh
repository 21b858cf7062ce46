#!/bin/sh
# SPDX-License-Identifier: MIT
# CHAP and ACLs: the right secret logs in, a wrong secret or user and a missing
# one are refused, an initiator not in --allow is refused; mutual CHAP: the
# target proves itself with its own secret and a wrong target secret makes the
# initiator give up. Header digests (CRC32C) are negotiated on the way. A
# SIGHUP that changes the ACL keeps the sessions still allowed, drops the others.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq iscsi-ls

P1=$(free_port)
truncate -s 16M "$T/disk"
GOOD=iqn.2026-11.org.example:good-host
BAD=iqn.2026-11.org.example:other-host
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk" \
	--chap "alice:alice-secret-12" --mutual-chap "tgt:target-secret-34" --allow "$GOOD"

inq() { # INITIATOR URL
	iscsi-inq -i "$1" "$2" >/dev/null 2>&1
}
U="127.0.0.1:$P1/$IQN/0"
ok "right secret logs in" inq "$GOOD" "iscsi://alice%alice-secret-12@$U"
randfile "$T/src" $((4 * 1024 * 1024)) 7
ok "qemu-img with CHAP and HeaderDigest=CRC32C writes" qemu-img convert -n -f raw \
	--target-image-opts "$T/src" "driver=iscsi,transport=tcp,portal=127.0.0.1:$P1,target=$IQN,lun=0,header-digest=crc32c,user=alice,password-secret=sec0,initiator-name=$GOOD" \
	--object secret,id=sec0,data=alice-secret-12
ok "header digest was in force" grep -q "digests: header CRC32C" "$T/target.log"
ok "data arrived intact" cmp -s "$T/src" "$T/disk" -n $((4 * 1024 * 1024))
ok_fail "wrong secret refused" inq "$GOOD" "iscsi://alice%wrong-secret-99@$U"
ok_fail "wrong user refused" inq "$GOOD" "iscsi://bob%alice-secret-12@$U"
ok_fail "no CHAP refused" inq "$GOOD" "iscsi://$U"
ok_fail "initiator outside the ACL refused" inq "$BAD" "iscsi://alice%alice-secret-12@$U"
ok "mutual CHAP with the right target secret" inq "$GOOD" \
	"iscsi://alice%alice-secret-12@$U?target_user=tgt&target_password=target-secret-34"
ok_fail "mutual CHAP: initiator rejects a wrong target secret" inq "$GOOD" \
	"iscsi://alice%alice-secret-12@$U?target_user=tgt&target_password=not-the-secret"
ok "failures are logged" grep -q "CHAP authentication of 'bob' failed" "$T/target.log"
ok "SIGTERM: clean exit" stop_target

# SIGHUP with a changed ACL: the session that stays allowed goes on, the
# other one is asked to log out and closed
KEEPI=iqn.2026-11.org.example:stays
GONEI=iqn.2026-11.org.example:evicted
cat >"$T/conf" <<EOT
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/disk
allow = $KEEPI
allow = $GONEI
EOT
start_target --config "$T/conf"
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"
PEER_INITIATOR=$KEEPI $PEER hold 3 >"$T/keep.out" 2>&1 &
K1=$!
PEER_INITIATOR=$GONEI $PEER hold 3 >"$T/gone.out" 2>&1 &
K2=$!
for i in $(seq 50); do
	[ "$(cat "$T/keep.out" "$T/gone.out" | grep -c ready)" = 2 ] && break
	sleep 0.1
done
ok "two sessions logged in" test "$(cat "$T/keep.out" "$T/gone.out" | grep -c ready)" = 2
sed -i "/allow = $GONEI/d" "$T/conf"
kill -HUP "$TPID"
ok "the session still allowed survives the reload" wait $K1
ok_fail "the session no longer allowed is logged out" wait $K2
ok "reload logged the new ACL in effect" sh -c "! PEER_INITIATOR=$GONEI $PEER hold 0 2>/dev/null"
ok "SIGTERM: clean exit" stop_target

# a target without secrets takes AuthMethod=None and refuses nobody
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk"
ok "no secret configured: AuthMethod=None" inq "$BAD" "iscsi://$U"
ok "SIGTERM: clean exit" stop_target
done_testing
