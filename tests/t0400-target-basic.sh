#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk-target basics with real initiators (libiscsi tools, qemu-img):
# discovery lists every portal with its TPGT, identical and stable VPD 0x80/0x83
# on both portals, qemu-img convert onto the LUN and back byte-identical, a
# read-only LUN refuses writes, config file + SIGHUP reload, the connections'
# TCP congestion control (auto/system/a name), bad options refused, SIGTERM
# exits cleanly.
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-inq iscsi-ls iscsi-perf qemu-img ss

P1=$(free_port)
P2=$(free_port)
truncate -s 64M "$T/disk"
truncate -s 16M "$T/ro"
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --portal "127.0.0.2:$P2" \
	--lun 0="$T/disk" --lun 1="$T/ro,ro"
ok "target listens on portal 1" wait_port 127.0.0.1 "$P1"
ok "target listens on portal 2" wait_port 127.0.0.2 "$P2"

iscsi-ls -s "iscsi://127.0.0.1:$P1" >"$T/ls" 2>&1
ok "SendTargets lists portal 1 with TPGT" grep -q "Portal:127.0.0.1:$P1,1" "$T/ls"
ok "SendTargets lists portal 2 with TPGT" grep -q "Portal:127.0.0.2:$P2,1" "$T/ls"
ok "LUN 0 and 1 reported" sh -c "grep -q 'Lun:0 ' '$T/ls' && grep -q 'Lun:1 ' '$T/ls'"

for p in 80 83; do
	iscsi-inq -e 1 -c $((0x$p)) "$(lun_url 127.0.0.1 "$P1" 0)" >"$T/vpd$p.a" 2>&1
	iscsi-inq -e 1 -c $((0x$p)) "$(lun_url 127.0.0.2 "$P2" 0)" >"$T/vpd$p.b" 2>&1
	ok "VPD 0x$p answered" test -s "$T/vpd$p.a"
	ok "VPD 0x$p identical on both portals" cmp -s "$T/vpd$p.a" "$T/vpd$p.b"
done
ok "VPD 0x83 has an NAA designator" grep -qi "naa" "$T/vpd83.a"
iscsi-inq -e 1 -c 131 "$(lun_url 127.0.0.1 "$P1" 1)" >"$T/vpd83.lun1" 2>&1
ok "LUNs have different identities" sh -c "! cmp -s '$T/vpd83.a' '$T/vpd83.lun1'"

# qemu-img as a second initiator: random image on and off the LUN
randfile "$T/src" $((8 * 1024 * 1024)) 42
truncate -s 64M "$T/src"
ok "qemu-img convert onto the LUN" qemu-img convert -n -f raw -O raw "$T/src" \
	"$(lun_url 127.0.0.1 "$P1" 0)"
ok "backing file holds the data" cmp -s "$T/src" "$T/disk"
ok "qemu-img convert back over portal 2" qemu-img convert -f raw -O raw \
	"$(lun_url 127.0.0.2 "$P2" 0)" "$T/back"
ok "round trip is byte-identical" cmp -s "$T/src" "$T/back"
# reads of ~1 MiB not aligned to pages (zero-copy ones must not outgrow the pipe)
ok "qemu-img dd with 1 MiB - 512 reads" timeout 60 qemu-img dd -f raw -O raw bs=1048064 \
	count=9 if="$(lun_url 127.0.0.1 "$P1" 0)" of="$T/back2"
ok "unaligned large reads are byte-identical" cmp -s "$T/back2" "$T/src" -n 9432576
ok_fail "writes to a read-only LUN fail" qemu-img convert -n -f raw -O raw "$T/src" \
	"$(lun_url 127.0.0.1 "$P1" 1)" 2>/dev/null
ok "read-only LUN unchanged" cmp -s "$T/ro" /dev/zero --bytes=16777216 2>/dev/null ||
	ok "read-only LUN unchanged (all zero)" sh -c "[ \"\$(tr -d '\\000' <'$T/ro' | wc -c)\" -eq 0 ]"

ok "SIGTERM: clean exit" stop_target

# the identity is stable across restarts
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk"
iscsi-inq -e 1 -c 131 "$(lun_url 127.0.0.1 "$P1" 0)" >"$T/vpd83.c" 2>&1
ok "VPD 0x83 stable across restarts" cmp -s "$T/vpd83.a" "$T/vpd83.c"
ok "SIGTERM again" stop_target

# config file, then SIGHUP adds a LUN without dropping the target
cat >"$T/conf" <<EOT
# test config
workers = 2
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/disk
EOT
start_target --config "$T/conf"
iscsi-ls -s "iscsi://127.0.0.1:$P1" >"$T/ls2" 2>&1
ok "config file: one LUN" sh -c "grep -q 'Lun:0 ' '$T/ls2' && ! grep -q 'Lun:1 ' '$T/ls2'"
echo "lun 1 = $T/ro,ro" >>"$T/conf"
kill -HUP "$TPID"
sleep 0.5
iscsi-ls -s "iscsi://127.0.0.1:$P1" >"$T/ls3" 2>&1
ok "SIGHUP reload adds LUN 1" grep -q 'Lun:1 ' "$T/ls3"
cat >>"$T/conf" <<EOT
[target $IQN-second]
portal = 127.0.0.1:$P1
lun 3 = $T/ro,ro,serial=second-target-lun
EOT
kill -HUP "$TPID"
sleep 0.5
iscsi-ls -s "iscsi://127.0.0.1:$P1" >"$T/ls5" 2>&1
ok "reload adds a second target; discovery lists both" \
	sh -c "grep -q 'Target:$IQN Portal' '$T/ls5' && grep -q 'Target:$IQN-second Portal' '$T/ls5'"
iscsi-inq -e 1 -c 128 "iscsi://127.0.0.1:$P1/$IQN-second/3" >"$T/vpd80.second" 2>&1
ok "serial= overrides the LUN identity" grep -q "second-target-lun" "$T/vpd80.second"
echo "bogus line" >>"$T/conf"
kill -HUP "$TPID"
sleep 0.3
ok "a broken reload keeps serving" sh -c "iscsi-inq '$(lun_url 127.0.0.1 "$P1" 1)' >/dev/null"
ok "SIGTERM after reloads" stop_target

# two portal groups, the second one ALUA standby: discovery shows both TPGTs,
# media access through the standby group is refused, the active one serves
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --portal "127.0.0.2:$P2,2" --tpg 2=standby \
	--lun 0="$T/disk"
iscsi-ls -s "iscsi://127.0.0.1:$P1" >"$T/ls4" 2>&1
ok "SendTargets shows TPGT 2 for the second portal" grep -q "Portal:127.0.0.2:$P2,2" "$T/ls4"
ok "active group serves reads" qemu-img convert -f raw -O raw "$(lun_url 127.0.0.1 "$P1" 0)" "$T/b1"
ok_fail "standby group refuses reads" qemu-img convert -f raw -O raw \
	"$(lun_url 127.0.0.2 "$P2" 0)" "$T/b2" 2>/dev/null
iscsi-inq -e 1 -c 128 "$(lun_url 127.0.0.2 "$P2" 0)" >"$T/vpd80.s" 2>&1
ok "standby group still answers INQUIRY with the same serial" cmp -s "$T/vpd80.a" "$T/vpd80.s"
ok "SIGTERM with two groups" stop_target

# TCP congestion control of the connections (seen on the target's side of a
# live iscsi-perf session): auto turns the system's BBR into cubic or reno and
# keeps anything else; system keeps it; a name forces it, also from the config
SYSCC=$(sysctl -n net.ipv4.tcp_congestion_control)
conn_cc() { # PORT: the algorithm of the target's side of a live session
	timeout 20 iscsi-perf -m 1 -b 1 -t 4 "$(lun_url 127.0.0.1 "$1" 0)" >/dev/null 2>&1 &
	_pp=$!
	_cc=
	for _i in $(seq 60); do
		_cc=$(ss -Htin state established "( sport = :$1 )" |
			awk '/rto:/ { print $1; exit }')
		[ -n "$_cc" ] && break
		sleep 0.1
	done
	# The connection shows up before the target has set its algorithm after
	# accept(): read it again once the session runs.
	if [ -n "$_cc" ]; then
		sleep 0.5
		_cc=$(ss -Htin state established "( sport = :$1 )" |
			awk '/rto:/ { print $1; exit }')
	fi
	kill "$_pp" 2>/dev/null
	wait "$_pp" 2>/dev/null
	echo "${_cc:-none}"
}
case $SYSCC in
bbr) AUTOCC="cubic reno" ;;
*) AUTOCC=$SYSCC ;;
esac
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk"
cc=$(conn_cc "$P1")
ok "auto congestion control: $cc (system: $SYSCC)" sh -c "echo '$AUTOCC' | grep -qw '$cc'"
ok "SIGTERM (auto)" stop_target
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk" --tcp-congestion system
ok_eq "$(conn_cc "$P1")" "$SYSCC" "--tcp-congestion system keeps the system's algorithm"
ok "SIGTERM (system)" stop_target
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk" --tcp-congestion reno
ok_eq "$(conn_cc "$P1")" reno "--tcp-congestion reno"
ok "  data through it: qemu-img convert onto the LUN and back" sh -c "
	qemu-img convert -n -f raw -O raw '$T/src' '$(lun_url 127.0.0.1 "$P1" 0)' &&
	qemu-img convert -f raw -O raw '$(lun_url 127.0.0.1 "$P1" 0)' '$T/back-reno' &&
	cmp -s '$T/src' '$T/back-reno'"
ok "SIGTERM (reno)" stop_target
cat >"$T/conf-cc" <<EOT
tcp-congestion = reno
[target $IQN]
portal = 127.0.0.1:$P1
lun 0 = $T/disk
EOT
start_target --config "$T/conf-cc"
ok_eq "$(conn_cc "$P1")" reno "config file: tcp-congestion = reno"
sed -i 's/^tcp-congestion = reno/tcp-congestion = system/' "$T/conf-cc"
kill -HUP "$TPID"
sleep 0.5
ok_eq "$(conn_cc "$P1")" "$SYSCC" "  SIGHUP: new connections get the reloaded setting"
ok "SIGTERM (config)" stop_target

# bad input: clear error, non-zero exit
quiet() {
	"$@" 2>/dev/null
}
ok_fail "missing LUN refused" quiet "$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1"
ok_fail "bad IQN refused" quiet "$TARGET" -f --iqn "nonsense" --portal "127.0.0.1:$P1" --lun 0="$T/disk"
for f in "$T/nope" "$T" /dev/null; do
	quiet "$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$f"
	ok_eq "$?" 2 "LUN file $f refused as a usage error (exit 2)"
done
"$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0=/dev/null >"$T/err" 2>&1
ok "  a character device: said what is wrong" grep -q "not a regular file or block device" "$T/err"
ok_fail "bad portal refused" quiet "$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:99999" --lun 0="$T/disk"
ok_fail "bad ALUA state refused" quiet "$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1" \
	--tpg 1=sleepy --lun 0="$T/disk"
"$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk" \
	--tcp-congestion no_such_cc >"$T/err" 2>&1
ok_eq "$?" 2 "an unknown TCP congestion control is a usage error (exit 2)"
ok "  said so" grep -q "TCP congestion control 'no_such_cc': not available" "$T/err"
quiet "$TARGET" -f --iqn "$IQN" --portal "127.0.0.1:$P1" --lun 0="$T/disk" --tcp-congestion 'B@d'
ok_eq "$?" 2 "a malformed TCP congestion control name is refused (exit 2)"
"$TARGET" -f --iqn "$IQN" --lun 0="$T/disk,bogus" >"$T/err" 2>&1
ok "error message names the problem" grep -q "unknown LUN option 'bogus'" "$T/err"
done_testing
