#!/bin/sh
# SPDX-License-Identifier: MIT
# Snapshots of an encrypted image: every layer of the chain shares the data key
# and uuid, so AEAD counters must be unique across all the files of the chain,
# also after snapshot deletes that merge into a middle layer (which writes into
# a frozen file) and after a revert. Contents are checked at every step.
. "$(dirname "$0")/lib.sh"

cd "$T" || exit 1
PW="--pwhash-ops 1 --pwhash-mem 8K"
ENTRIES="perl $SRCDIR/tests/vdk-entries.pl"
K="--key-file key"
printf 'snapshot key\n' >key

# Counters of every data block of every file of the chain: none may repeat.
ctr_unique() {
	for f in n.vdk n@*.vdk; do
		$ENTRIES "$f" | awk -v f="$f" '/^D/ {print $5, f, $2}'
	done >ctrs
	[ "$(awk '{print $1}' ctrs | sort | uniq -d | wc -l)" -eq 0 ] && return 0
	awk '{print $1}' ctrs | sort | uniq -d | head -3 | while read -r c; do
		diag "counter $c used by: $(grep "^$c " ctrs | cut -d' ' -f2- | tr '\n' ';')"
	done
	return 1
}
# expect BLOCK BYTE: block BLOCK of the top reads as 4096 bytes of BYTE
expect() {
	$VDISK $K convert -O raw n.vdk cur.raw 2>/dev/null &&
		[ "$(dd if=cur.raw bs=4096 skip="$1" count=1 2>/dev/null | od -An -v -tx1 | tr -s ' \n' '\n' | sort -u | grep -v '^$')" = "$2" ]
}

ok "create" $VDISK $K create --encrypt $PW -s 1M n.vdk
for i in 0 1 2 3; do
	$VDISK $K bench -q -w --pattern $((i + 1)) -c 1 -s 4096 -o $((i * 4096)) -d 1 n.vdk
	ok "snapshot s$i" $VDISK $K snapshot create n.vdk s$i
done
ok "write the top" $VDISK $K bench -q -w --pattern 9 -c 1 -s 4096 -o 16384 -d 1 n.vdk
ok "counters unique in a chain of 5" ctr_unique

# Three deletes merging into the same middle layer (s3), each a write into a frozen file.
for s in s2 s1 s0; do
	ok "delete $s" $VDISK $K snapshot delete n.vdk $s
	ok "counters unique after deleting $s" ctr_unique
done
for i in 0 1 2 3; do
	ok "block $i intact after the merges" expect $i "0$((i + 1))"
done
ok "block 4 (top) intact" expect 4 09
ok "check clean" sh -c "$VDISK $K check n.vdk >/dev/null"

# Revert and write again: the new top must not reuse the old top's counters.
ok "snapshot s4" $VDISK $K snapshot create n.vdk s4
ok "write over s4" $VDISK $K bench -q -w --pattern 7 -c 4 -s 4096 -o 0 -d 1 n.vdk
cp n.vdk n@discarded.vdk	# the counters of the discarded top count too
ok "revert to s4" $VDISK $K snapshot revert n.vdk s4
ok "write after the revert" $VDISK $K bench -q -w --pattern 6 -c 4 -s 4096 -o 0 -d 1 n.vdk
ok "counters unique after a revert" ctr_unique
ok "reverted top reads the new writes" expect 0 06
ok "check clean at the end" sh -c "$VDISK $K check n.vdk >/dev/null"

done_testing
