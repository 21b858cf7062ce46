#!/bin/sh
# SPDX-License-Identifier: MIT
# Every libFuzzer harness (fuzz/fuzz-*.c) runs for a short while on its seed
# corpus in make check: the native format, the foreign formats (vmdk, qcow2,
# vhd, vhdx), the key-slot area, partition tables, iSCSI PDUs, text keys and
# CDBs. The library is built once for all of them (build-fuzz/all, reused by
# the sanitizer pass). Any crash, sanitizer report, leak or timeout fails.
. "$(dirname "$0")/lib.sh"
requires which clang

secs=8
[ "${VDISK_ASAN:-0}" = 1 ] && secs=3
FB="$SRCDIR/build-fuzz/all"
names=""
for f in "$SRCDIR"/fuzz/fuzz-*.c; do
	names="$names $(basename "$f" .c)"
done
targets=""
for n in $names; do
	targets="$targets $FB/$n"
done
# shellcheck disable=SC2086
if ! make -s -C "$SRCDIR" FUZZ_B="$FB" $targets >"$T/build.log" 2>&1; then
	sed 's/^/# /' "$T/build.log" | tail -20
	ok "fuzz harnesses build" false
	done_testing
fi
ok "fuzz harnesses build:$names" true
# RSS limit: libFuzzer's default. The native harness maps its images (memfd,
# like tmpfs), whose pages count in the RSS; one run of fuzz-vdk on a loaded
# machine reached 1041 MB against the 1024 set before (2026-11-22, cause not
# found; 200-320 MB in every run since).
for n in $names; do
	mkdir -p "$T/$n"
	"$FB/$n" -max_total_time=$secs -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$T/$n-" "$T/$n" "$SRCDIR/fuzz/corpus/$n" >"$T/$n.log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$n.log")
	if [ $rc -ne 0 ]; then
		grep -E 'ERROR|SUMMARY|==[0-9]+==' "$T/$n.log" | head -10 | sed 's/^/# /'
	fi
	ok "$n: ${runs:-0} runs in ${secs}s without a finding" [ $rc -eq 0 ]
done
done_testing
