#!/bin/sh
# SPDX-License-Identifier: MIT
# Golden output (qemu-iotests *.out style) of the other text commands: map,
# snapshot list, diff (text and JSON), key list, bench's header line and some
# errors (check's findings depend on the allocator: t0103 tests them), on a fixed sequence of operations. Times and the scratch
# path are normalised. VDISK_GOLDEN_UPDATE=1 rewrites
# tests/golden/t0107-golden-text.out (review the diff!).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
golden="$SRCDIR/tests/golden/t0107-golden-text.out"
cd "$T" || exit 1

norm() {
	sed -e "s#$T#TEST_DIR#g" \
		-e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9:]*Z/YYYY-MM-DDTHH:MM:SSZ/g' \
		-e 's/"created-epoch": [0-9]*/"created-epoch": EPOCH/' \
		-e 's/^Run completed in [0-9.]* seconds\.$/Run completed in X seconds./'
}
cmd() {
	echo "\$ vdisk $*"
	"$VDISK" "$@" >cmd.out 2>&1
	_rc=$?
	norm <cmd.out
	echo "[exit $_rc]"
}

{
	cmd create -s 32M --block-size 64K d.vdk
	vwrite d.vdk 0 4 65536 0x11
	vwrite d.vdk 4194304 1 4096 0x12
	cmd snapshot create d.vdk monday
	vwrite d.vdk 65536 2 65536 0x21
	vwrite d.vdk 16777216 3 65536 0x22
	cmd snapshot create d.vdk tuesday
	vwrite d.vdk 33488896 1 65536 0x31
	cmd map d.vdk
	cmd map --json d.vdk
	cmd snapshot list d.vdk
	cmd snapshot list --json d.vdk
	cmd diff d.vdk monday tuesday
	cmd diff d.vdk monday
	cmd diff --json d.vdk tuesday
	cmd diff d.vdk tuesday monday
	cmd bench -c 100 -d 2 -s 4K -S 1052672 d.vdk
	cmd bench -w -c 10 -d 1 -s 64K -o 1M --pattern 0x41 d.vdk
	cmd snapshot prune d.vdk --keep 1
	cmd snapshot list d.vdk
	cmd snapshot revert d.vdk nosuch
	cmd snapshot create d.vdk "bad/name"
	cmd diff d.vdk
	cmd create -s 1M --block-size 3K x.vdk
	printf 'pass\n' >key
	cmd --key-file key create --encrypt --pwhash-ops 1 --pwhash-mem 8K -s 8M e.vdk
	cmd key list e.vdk
	cmd key list --json e.vdk
	cmd info e.vdk
	cmd resize d.vdk 16M
	cmd resize d.vdk +1M
	cmd resize --shrink d.vdk -2M
	cmd resize d.vdk 65T
	cmd resize d.vdk
	cmd resize --help
} >actual.out 2>&1

if [ "${VDISK_GOLDEN_UPDATE:-0}" = 1 ]; then
	cp actual.out "$golden"
fi
if diff -u "$golden" actual.out >diff.txt; then
	ok "text outputs match $(basename "$golden")" true
else
	sed 's/^/# /' diff.txt
	ok "text outputs match $(basename "$golden")" false
fi
done_testing
