#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the foreign-format fuzz harnesses (fuzz/fuzz-{vmdk,qcow2,vhd,vhdx}.c) with
# the Makefile's fuzz rule and run each for a short while on its seed corpus:
# any crash, sanitizer report, leak or timeout fails the test. The binaries go to
# build-fuzz/foreign/ (private to this test, reused by the sanitizer pass).
. "$(dirname "$0")/lib.sh"

secs=10
[ "${VDISK_ASAN:-0}" = 1 ] && secs=3
FB="$SRCDIR/build-fuzz/foreign"
NAMES="fuzz-vmdk fuzz-qcow2 fuzz-vhd fuzz-vhdx"
targets=""
for n in $NAMES; do
	targets="$targets $FB/$n"
done
# shellcheck disable=SC2086
if ! make -s -C "$SRCDIR" FUZZ_B="$FB" $targets >"$T/build.log" 2>&1; then
	sed 's/^/# /' "$T/build.log" | tail -20
	ok "fuzz harnesses build" false
	done_testing
fi
ok "fuzz harnesses build" true
for n in $NAMES; do
	mkdir -p "$T/$n"
	"$FB/$n" -max_total_time=$secs -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
		-artifact_prefix="$T/$n-" "$T/$n" "$SRCDIR/fuzz/corpus/$n" >"$T/$n.log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$n.log")
	if [ $rc -ne 0 ]; then
		grep -E 'ERROR|SUMMARY|==[0-9]+==' "$T/$n.log" | head -10 | sed 's/^/# /'
	fi
	ok "$n: ${runs:-0} runs in ${secs}s without a finding" [ $rc -eq 0 ]
done
done_testing
