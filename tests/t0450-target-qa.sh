#!/bin/sh
# SPDX-License-Identifier: MIT
# The target as the README tells a new user to run it: a config file with two
# targets and an initiator ACL (allow), a SIGHUP reload that removes a LUN while
# an initiator reads it (the reads end with ILLEGAL REQUEST / LOGICAL UNIT NOT
# SUPPORTED, the session gets REPORTED LUNS DATA HAS CHANGED on the LUN left,
# nothing hangs), ABORT TASK of a running 1 MiB READ on a vdiskfs LUN (answered
# whole before the TMF Response or not at all), and SIGTERM while qemu-img
# writes (the daemon exits 0 within its 5 s drain). An allow entry that is no
# initiator name is refused; the pidfile is removed at exit only while it is
# still the daemon's own regular file.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq iscsi-ls qemu-img qemu-io perl fusermount3 timeout
requires test -c /dev/fuse

IQN2=iqn.2026-11.org.example:vdisk-test2
ME=iqn.2026-11.org.example:peer
IMG=$T/img.vdk
M=$T/mnt
P1=$(free_port)
truncate -s 64M "$T/a" "$T/b" "$T/c"
ok "create a 64 MiB native image" mkimg "$IMG" 64M
ok "mount it" fs_mount "$IMG" "$M"
randfile "$T/rand" $((16 * 1024 * 1024)) 31
dd if="$T/rand" of="$M/disk" bs=1M conv=notrunc status=none
# (data, not holes: qemu answers reads of what GET LBA STATUS calls unmapped itself)
dd if="$T/rand" of="$T/b" bs=1M conv=notrunc status=none
cat >"$T/conf" <<EOT
# two targets, the first only for two initiators
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/a
lun 1 = $T/b
lun 2 = $M/disk
allow = $ME
allow = iqn.2008-11.org.linux-kvm

[target $IQN2]
portal = 127.0.0.1:$P1
lun 0 = $T/c,ro
EOT
ok "two targets from a config file" start_target --config "$T/conf"
PEER="perl $SRCDIR/tools/target/iscsi-peer.pl 127.0.0.1 $P1 $IQN"
U=iscsi://127.0.0.1:$P1

iscsi-ls -s "$U" >"$T/ls0" 2>&1
iscsi-ls -s -i "$ME" "$U" >"$T/ls1" 2>&1
ok "discovery by a stranger lists only the open target" \
	sh -c "grep -q 'Target:$IQN2 ' '$T/ls0' && ! grep -q 'Target:$IQN ' '$T/ls0'"
ok "discovery by an allowed initiator lists both" \
	sh -c "grep -q 'Target:$IQN2 ' '$T/ls1' && grep -q 'Target:$IQN ' '$T/ls1'"
ok_fail "a stranger cannot log in to the first target" quiet iscsi-inq "$U/$IQN/0"
ok "an allowed initiator can" sh -c "iscsi-inq -i '$ME' '$U/$IQN/0' >/dev/null"
ok "anyone can log in to the second" sh -c "iscsi-inq '$U/$IQN2/0' >/dev/null"
ok_fail "whose LUN is read-only" quiet qemu-io -f raw -c "write 0 4k" "$U/$IQN2/0"

# a reload that removes LUN 1 while qemu-io reads it, and while a session that
# stays (the Perl peer) waits
# (300 reads 10 ms apart: far from done when the reload comes)
args=""
for i in $(seq 0 299); do
	args="$args -c 'read $(((i % 16) * 1048576)) 1M' -c 'sleep 10'"
done
eval timeout 60 qemu-io -f raw $args "$U/$IQN/1" >"$T/qio.out" 2>"$T/qio.err" &
QIO=$!
mkfifo "$T/fifo"
$PEER reload-luns 1 0 <"$T/fifo" >"$T/peer.out" 2>"$T/peer.err" &
HOLD=$!
exec 9>"$T/fifo"
for i in $(seq 50); do
	grep -q ready "$T/peer.out" && break
	sleep 0.1
done
sleep 0.5
sed -i '/^lun 1 =/d' "$T/conf"
kill -HUP "$TPID"
sleep 0.5
echo go >&9
exec 9>&-
wait $QIO
st=$?
ok "qemu-io reading the removed LUN ends, no hang" test "$st" != 124
ok "... after $(grep -c '^read 1048576' "$T/qio.out") good reads, the rest refused: LOGICAL UNIT NOT SUPPORTED" \
	grep -q "LOGICAL_UNIT_NOT_SUPPORTED" "$T/qio.err"
ok "... and nothing else went wrong" sh -c "! grep -q -v LOGICAL_UNIT_NOT_SUPPORTED '$T/qio.err'"
sed 's/^/# /' "$T/peer.err"
ok "the session kept: REPORTED LUNS DATA HAS CHANGED once, then GOOD; the removed LUN refused" wait $HOLD
ok "LUN 0 still serves" sh -c "iscsi-inq -i '$ME' '$U/$IQN/0' >/dev/null"

# ABORT TASK of a 1 MiB READ on workers (vdiskfs): whole answer or none
for i in 1 2 3 4 5 6; do
	PEER_LUN=2 $PEER abort-read 1048576 $((i * 4096)) >>"$T/abort.out" 2>>"$T/abort.err" ||
		echo "failed $i" >>"$T/abort.out"
done
sed 's/^/# /' "$T/abort.out" "$T/abort.err"
ok "ABORT TASK of a running 1 MiB READ: never part of it, TMF Response last, session goes on" \
	sh -c "! grep -q failed '$T/abort.out'"
ok "the LUN's data is still right" same_region "$M/disk" 0 16777216 "$T/rand"

# SIGTERM while qemu-img writes (slowed down to 20 MB/s)
qemu-img convert -r 20M -n -f raw -O raw "$T/rand" "$U/$IQN/0" >"$T/conv.out" 2>&1 &
QI=$!
sleep 1
t0=$(date +%s)
ok "SIGTERM in the middle of the writes: exit 0" stop_target
t1=$(date +%s)
ok "... within the 5 s drain ($((t1 - t0)) s)" test $((t1 - t0)) -le 6
# (qemu's iSCSI driver then tries to reconnect for ever: stop it)
kill "$QI" 2>/dev/null
wait "$QI" 2>/dev/null

# an allow entry that can never match would shut everyone out: refused
ONE="--iqn $IQN --portal 127.0.0.1:$P1 --lun 0=$T/a"
"$TARGET" -f $ONE --allow esx01 >"$T/bad.out" 2>&1
ok_eq "$?" 2 "--allow with something that is not an initiator name: exit 2"
ok "... saying why" grep -q "allow 'esx01': not an initiator name" "$T/bad.out"
printf '[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\nallow = iqn.1998-01.com.vmware:esx01 extra\n' \
	"$IQN" "$P1" "$T/a" >"$T/bad.conf"
"$TARGET" -f --config "$T/bad.conf" >"$T/bad.out" 2>&1
ok_eq "$?" 2 "the same in a config file: exit 2"

# the pidfile: written, removed at exit only while it is still the daemon's
ok "--pidfile" start_target $ONE --pidfile "$T/pid"
ok_eq "$(cat "$T/pid")" "$TPID" "the pidfile holds the daemon's PID"
ok "SIGTERM" stop_target
ok "the pidfile is gone" test ! -e "$T/pid"
: >"$T/pid.real"
ln -s "$T/pid.real" "$T/pid.link"
start_target $ONE --pidfile "$T/pid.link"
ok "SIGTERM" stop_target
ok "a pidfile that is not a regular file (a symlink, /dev/null...) is left alone" test -L "$T/pid.link"
start_target $ONE --pidfile "$T/pid"
echo 1 >"$T/pid"
ok "SIGTERM" stop_target
ok "a pidfile rewritten by someone else is left alone" test -e "$T/pid"
"$TARGET" -f $ONE --pidfile "$T/no/such/dir/pid" >"$T/bad.out" 2>&1
ok_eq "$?" 1 "a pidfile that cannot be written: exit 1"
ok "... saying why" grep -q "cannot write the pidfile" "$T/bad.out"

ok "unmount" fs_umount "$M"
ok "vdisk check is clean" vcheck "$IMG"
done_testing
