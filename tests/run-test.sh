#!/bin/sh
# SPDX-License-Identifier: MIT
# prove --exec wrapper (after git's t/run-test.sh): shell tests run under sh,
# a unit test source tests/unit/t-x.c runs its binary from $VDISK_BUILD.
# Every SKIP is recorded in $VDISK_BUILD/skips.log so `make check` can refuse them.
# The TAP output is kept in $VDISK_BUILD/logs/; when a test fails, its
# diagnostics go to stderr so that the CI log shows why.
: "${VDISK_BUILD:=$(pwd)/build}"
export VDISK_BUILD
t="$1"
case "$t" in
*.sh) set -- sh "$t" ;;
*.c) set -- "$VDISK_BUILD/${t%.c}" ;;
esac
mkdir -p "$VDISK_BUILD/logs"
log="$VDISK_BUILD/logs/$(basename "$t").log"
rm -f "$log.new"
st=$(mktemp)
{ "$@"; echo $? >"$st"; } | while IFS= read -r line; do
	printf '%s\n' "$line"
	printf '%s\n' "$line" >>"$log.new"
done
rc=$(cat "$st")
rm -f "$st"
mv -f "$log.new" "$log" 2>/dev/null
# A TAP skip: "1..0 # SKIP why" for the whole test, or "ok N - x # SKIP why" for one.
grep -iE '^(1\.\.0|ok [0-9]+[^#]*) *# *skip' "$log" 2>/dev/null | sed "s|^|$t: |" >>"$VDISK_BUILD/skips.log"
if [ "${rc:-1}" != 0 ] || grep -q '^not ok' "$log" 2>/dev/null; then
	{
		echo "---- $t failed (exit ${rc:-?}); its failures and diagnostics:"
		grep -E '^not ok|^#' "$log" | head -80
	} >&2
fi
exit "${rc:-1}"
