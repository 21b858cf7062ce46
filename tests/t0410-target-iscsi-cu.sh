#!/bin/sh
# SPDX-License-Identifier: MIT
# libiscsi's conformance suite against vdisk-target, two portals (multipath
# tests), two initiator names (reservations), on a sparse LUN:
#   iscsi-test-cu --dataloss -S -i IQN1 -I IQN2 -t ALL URL_PORTAL1 URL_PORTAL2
# (-S: the SANITIZE tests too; BLOCK ERASE and EXIT FAILURE MODE are implemented)
# CUnit counts a skipped test as passed, so the results are recounted per test
# (tools/target/cu-count.awk): any failure fails this test, and the real passes
# must not fall under a floor. Variants unlock what the main run cannot reach:
# a read-only LUN, and a LUN with 4 KiB physical blocks for the tests that
# need several logical blocks per physical block. (The main run uses 512-byte
# physical blocks: libiscsi 1.19's GetLBAStatus.UnmapSingle is wrong otherwise.)
. "$(dirname "$0")/lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
requires which iscsi-test-cu

P1=$(free_port)
P2=$(free_port)
truncate -s 256M "$T/thin"
truncate -s 64M "$T/thin4k"
truncate -s 16M "$T/ro"
start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --portal "127.0.0.2:$P2" \
	--lun 0="$T/thin,pbsize=512" --lun 1="$T/ro,ro" --lun 2="$T/thin4k"
I1=iqn.2026-11.org.example:initiator-one
I2=iqn.2026-11.org.example:initiator-two
COUNT="$SRCDIR/tools/target/cu-count.awk"

run_cu() { # OUT TESTS URL...
	_out=$1
	_tests=$2
	shift 2
	timeout 600 iscsi-test-cu --dataloss -i "$I1" -I "$I2" -t "$_tests" "$@" >"$_out" 2>&1
}

run_cu "$T/all.out" ALL -S "$(lun_url 127.0.0.1 "$P1" 0)" "$(lun_url 127.0.0.2 "$P2" 0)"
ok "iscsi-test-cu ALL ran to its summary" grep -q "Run Summary" "$T/all.out"
set -- $(CU_SKIPS="$T/skips" awk -f "$COUNT" "$T/all.out")
total=$1 pass=$2 skip=$3 fail=$4
diag "ALL: $total tests, $pass real passes, $skip skipped, $fail failed"
diag "skipped:$(cat "$T/skips")"
ok_eq "$fail" 0 "iscsi-test-cu ALL: no failure"
ok "iscsi-test-cu ALL: at least 210 real passes (got $pass)" test "$pass" -ge 210
if [ "$fail" -ne 0 ]; then
	grep -B2 -A4 -E '(^|\.\.\.)FAILED' "$T/all.out" | sed 's/^/# /' | head -60
fi

run_cu "$T/ro.out" ALL.ReadOnly "$(lun_url 127.0.0.1 "$P1" 1)"
set -- $(awk -f "$COUNT" "$T/ro.out")
diag "read-only LUN: $1 tests, $2 real passes, $3 skipped, $4 failed"
ok "ReadOnly suite passes on a read-only LUN" test "$2" -eq 1 -a "$4" -eq 0
extra=$2

V4K=ALL.WriteSame10.UnmapUnaligned,ALL.WriteSame16.UnmapUnaligned
V4K=$V4K,ALL.WriteSame10.InvalidDataOutSize,ALL.WriteSame16.InvalidDataOutSize
V4K=$V4K,ALL.CompareAndWrite.InvalidDataOutSize
run_cu "$T/4k.out" "$V4K" "$(lun_url 127.0.0.1 "$P1" 2)"
set -- $(awk -f "$COUNT" "$T/4k.out")
diag "4 KiB physical blocks: $1 tests, $2 real passes, $3 skipped, $4 failed"
ok "4 KiB-physical variant: 5 real passes" test "$2" -eq 5 -a "$4" -eq 0
extra=$((extra + $2))
diag "summary: $((pass + extra)) distinct real passes of $total, 0 failures"
ok "at least 216 distinct real passes (got $((pass + extra)))" test $((pass + extra)) -ge 216
ok "the daemon survived the suite" sh -c "iscsi-inq '$(lun_url 127.0.0.1 "$P1" 0)' >/dev/null"
ok "SIGTERM: clean exit" stop_target
done_testing
