#!/bin/sh
# SPDX-License-Identifier: MIT
# `make check` installs every test dependency, so a skipped test is a bug: fail on any.
fail=0
for b in build build-asan; do
	if [ -s "$b/skips.log" ]; then
		echo "check-skips: tests were skipped ($b):" >&2
		cat "$b/skips.log" >&2
		fail=1
	fi
done
[ "${VDISK_ALLOW_SKIP:-0}" = 1 ] && exit 0
exit $fail
