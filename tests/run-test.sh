#!/bin/sh
# SPDX-License-Identifier: MIT
# prove --exec wrapper (after git's t/run-test.sh): shell tests run under sh,
# a unit test source tests/unit/t-x.c runs its binary from $VDISK_BUILD.
# Every SKIP is recorded in $VDISK_BUILD/skips.log so `make check` can refuse them.
: "${VDISK_BUILD:=$(pwd)/build}"
export VDISK_BUILD
t="$1"
case "$t" in
*.sh) set -- sh "$t" ;;
*.c) set -- "$VDISK_BUILD/${t%.c}" ;;
esac
st=$(mktemp)
{ "$@"; echo $? >"$st"; } | while IFS= read -r line; do
	printf '%s\n' "$line"
	case "$line" in
	*"# SKIP"* | *"# skip"*) printf '%s: %s\n' "$t" "$line" >>"$VDISK_BUILD/skips.log" ;;
	esac
done
rc=$(cat "$st")
rm -f "$st"
exit "${rc:-1}"
