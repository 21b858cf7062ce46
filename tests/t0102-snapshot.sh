#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk snapshot create/list/delete/revert/prune, diff and map, with every
# content checked against a raw oracle that qemu-io writes in the same steps.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

truncate -s 16M oracle.raw
ok "create 16M vdk" vd create -s 16M --block-size 64K d.vdk
step() {	# step OFF COUNT BUFSIZE PATTERN: same write to the image and the oracle
	vwrite d.vdk "$@" && owrite oracle.raw "$@"
}
step 0 4 65536 0x11			# A: 0 .. 256K
ok "snapshot create s1" vd snapshot create d.vdk s1
cp oracle.raw at-s1.raw
step 1048576 4 65536 0x22		# B: 1M .. 1M+256K
ok "snapshot create s2" vd snapshot create d.vdk s2
cp oracle.raw at-s2.raw
step 65536 1 65536 0x33			# C: 64K .. 128K (inside A)
step 4194304 2 4096 0x44		# D: 4M .. 4M+8K (part of one block)
ok "top reads as the oracle" same_as d.vdk oracle.raw
ok "the top keeps its path" test -f d.vdk

run_rc rc "$VDISK" snapshot create d.vdk s1
ok "duplicate snapshot name refused" test "$rc" -ne 0
ok "  with a message" grep -q "^vdisk: " "$T/err"
for bad in .hidden -dash "a/b" "" "$(printf 'x%.0s' $(seq 65))"; do
	run_rc rc "$VDISK" snapshot create d.vdk "$bad"
	ok "invalid name '$bad' refused" test "$rc" -eq 1
done

"$VDISK" snapshot list d.vdk >list.txt
ok "list shows s1 then s2" sh -c "grep -n 's1\|s2' list.txt | tr '\n' ' ' | grep -q '^2:1 *s1.*3:2 *s2'"
"$VDISK" snapshot list --json d.vdk >list.json
ok "list --json is valid" json_ok list.json
ok_eq "$(json_eval list.json 'join ",", map { $_->{name} } @$j')" "s1,s2" "json: names oldest first"
ok_eq "$(json_eval list.json '$j->[1]{parent}')" "s1" "json: s2's parent is s1"
ok_eq "$(json_eval list.json '$j->[0]{"changed-bytes"}')" 262144 "json: s1 holds 256 KiB"

# diff: the blocks written between two snapshots.
"$VDISK" diff --json d.vdk s1 s2 >d12.json
ok "diff --json is valid" json_ok d12.json
ok_eq "$(json_eval d12.json 'join " ", map { "$_->{start}+$_->{length}" } @{$j->{ranges}}')" \
	"1048576+262144" "diff s1 s2 = write B"
"$VDISK" diff --json d.vdk s2 >d2t.json
ok_eq "$(json_eval d2t.json 'join " ", map { "$_->{start}+$_->{length}" } @{$j->{ranges}}')" \
	"65536+65536 4194304+65536" "diff s2 top = writes C and D (whole blocks)"
"$VDISK" diff --json d.vdk s1 >d1t.json
ok_eq "$(json_eval d1t.json 'join " ", map { "$_->{start}+$_->{length}" } @{$j->{ranges}}')" \
	"65536+65536 1048576+262144 4194304+65536" "diff s1 top = B, C and D"
ok_eq "$(json_eval d1t.json '$j->{"changed-bytes"}')" $((65536 + 262144 + 65536)) "changed-bytes"
"$VDISK" diff d.vdk s1 s2 >d12.txt
ok "text diff lists the range" grep -q "^0x100000  *0x40000  *data" d12.txt
run_rc rc "$VDISK" diff d.vdk s2 s1
ok "diff newer older refused" test "$rc" -eq 1
run_rc rc "$VDISK" diff d.vdk nosuch
ok "diff with an unknown snapshot refused" test "$rc" -eq 1
ok "  naming it" grep -q "nosuch" "$T/err"

# map: which layer holds what (0 = top, 1 = s2, 2 = s1).
"$VDISK" map --json d.vdk >map.json
ok "map --json valid" json_ok map.json
ok_eq "$(json_eval map.json 'join " ", map { "$_->{start}:$_->{layer}" } grep { $_->{type} eq "data" } @$j')" \
	"0:2 65536:0 131072:2 1048576:1 4194304:0" "map: each range from the right layer"
"$VDISK" map d.vdk >map.txt
ok "text map names the top file" grep -q "^0x10000 .*data .* 0 .*d.vdk" map.txt

# revert to s2: the top reads as at s2; s2 stays, nothing newer.
ok "revert s2" vd snapshot revert d.vdk s2
ok "after revert the image reads as at s2" same_as d.vdk at-s2.raw
ok "check clean after revert" vd check d.vdk
cp at-s2.raw oracle.raw
step 8388608 1 65536 0x55		# E after the revert
ok "writes after revert" same_as d.vdk oracle.raw

# delete s1 (merged into s2): content unchanged, only s2 left.
ok "delete s1" vd snapshot delete d.vdk s1
ok "content unchanged by delete" same_as d.vdk oracle.raw
"$VDISK" snapshot list --json d.vdk >list2.json
ok_eq "$(json_eval list2.json 'join ",", map { $_->{name} } @$j')" "s2" "only s2 left"
ok "diff from s2 still right" sh -c "'$VDISK' diff --json d.vdk s2 >d.json"
ok_eq "$(json_eval d.json 'join " ", map { "$_->{start}+$_->{length}" } @{$j->{ranges}}')" \
	"8388608+65536" "diff s2 top after delete = E"
run_rc rc "$VDISK" snapshot delete d.vdk s1
ok "deleting it again fails" test "$rc" -eq 1

# prune: keep the newest N.
for n in 3 4 5; do
	step $((n * 1048576 + 8388608)) 1 65536 0x6$n
	"$VDISK" snapshot create d.vdk s$n
done
ok "prune --keep 2" vd snapshot prune d.vdk --keep 2
"$VDISK" snapshot list --json d.vdk >list3.json
ok_eq "$(json_eval list3.json 'join ",", map { $_->{name} } @$j')" "s4,s5" "the newest two remain"
ok "content unchanged by prune" same_as d.vdk oracle.raw
ok "check clean after prune" vd check d.vdk
ok "prune --keep 0" vd snapshot prune d.vdk --keep 0
ok_eq "$("$VDISK" snapshot list d.vdk)" "No snapshots." "none left"
ok "content unchanged" same_as d.vdk oracle.raw
run_rc rc "$VDISK" snapshot prune d.vdk
ok "prune without --keep refused" test "$rc" -eq 1

# A second writer is refused while one has the image open.
"$VDISK" bench -q -w -c 2000000000 -d 1 -s 4096 d.vdk &
bpid=$!
# Wait (up to 10 s on a loaded machine) until that writer has the image open.
for _i in $(seq 100); do
	ls -l "/proc/$bpid/fd" 2>/dev/null | grep -q "d.vdk\$" && break
	sleep 0.1
done
sleep 0.3
run_rc rc "$VDISK" snapshot create d.vdk busy
ok "snapshot while another writer holds the image is refused" test "$rc" -eq 1
kill "$bpid" 2>/dev/null
wait "$bpid" 2>/dev/null
ok "image still clean after that writer was killed" vd check d.vdk

run_rc rc "$VDISK" snapshot create oracle.raw s1
ok "snapshot of a raw image refused" test "$rc" -eq 1
run_rc rc "$VDISK" snapshot frobnicate d.vdk
ok "unknown subcommand refused" test "$rc" -eq 1
# Through a symbolic link: refused (it would freeze the real file under its own
# name and put the new top where the link is), with the real path named.
mkdir -p sl/real sl/links
vd create -s 4M sl/real/l.vdk >/dev/null
ln -s ../real/l.vdk sl/links/l.vdk
run_rc rc "$VDISK" snapshot create sl/links/l.vdk s1
ok "snapshot through a symlink refused" test "$rc" -eq 1
ok "  naming the real path" grep -q "symbolic link.*real/l.vdk" "$T/err"
ok "  nothing renamed" sh -c "test -L sl/links/l.vdk && test -f sl/real/l.vdk &&
	! ls sl/real sl/links | grep -q @"
ok "by its real path it works" vd snapshot create sl/real/l.vdk s1
# An internal snapshot of a qcow2 base: its name is taken, and it is not ours to delete.
qemu-img create -q -f qcow2 ib.qcow2 4M && qemu-img snapshot -c first ib.qcow2
vd create -b ib.qcow2 io.vdk >/dev/null
run_rc rc "$VDISK" snapshot create io.vdk first
ok "a native snapshot cannot take an internal snapshot's name" test "$rc" -eq 1
ok "  (exists)" grep -q "exists" "$T/err"
run_rc rc "$VDISK" snapshot delete io.vdk first
ok "deleting an internal snapshot is refused" test "$rc" -eq 1
ok "  as an internal snapshot of the base" grep -q "internal snapshot of .*ib.qcow2" "$T/err"
run_rc rc "$VDISK" snapshot revert io.vdk first
ok "reverting to it is refused the same way" sh -c "[ $rc -eq 1 ] && grep -q 'internal snapshot' '$T/err'"
# A snapshot file replaced by another image (restored from the wrong copy) is refused.
vd create -s 4M rb.vdk >/dev/null
vwrite rb.vdk 0 4 65536 0x55
vd snapshot create rb.vdk s1 >/dev/null
chmod u+w rb@s1.vdk && mv rb@s1.vdk rb-keep.vdk && vd create -s 4M rb@s1.vdk >/dev/null
run_rc rc "$VDISK" check rb.vdk
ok "a replaced backing file is refused" test "$rc" -ne 0
ok "  as not the image the layer was made over" grep -q "not the image this layer was made over" "$T/err"
rm rb@s1.vdk && mv rb-keep.vdk rb@s1.vdk
ok "the right one opens again" vd check rb.vdk
vd snapshot create rb.vdk s2 >/dev/null
ok "after a delete (merge) the chain still opens" sh -c "'$VDISK' snapshot delete rb.vdk s1 && '$VDISK' check rb.vdk >/dev/null"
done_testing
