#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk create + info, golden output (qemu-iotests *.out style): the output of
# a fixed sequence of commands, with the scratch path, creation times, UUIDs
# and host disk usage normalised, must match tests/golden/t0100-create-info.out.
# VDISK_GOLDEN_UPDATE=1 rewrites the golden file (review the diff!).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
golden="$SRCDIR/tests/golden/t0100-create-info.out"
cd "$T" || exit 1

norm() {
	sed -e "s#$T#TEST_DIR#g" \
		-e 's/^disk size: .*/disk size: SIZE/' \
		-e 's/"actual-size": [0-9]*/"actual-size": SIZE/' \
		-e 's/^uuid: [0-9a-f-]*$/uuid: UUID/' \
		-e 's/"uuid": "[0-9a-f-]*"/"uuid": "UUID"/' \
		-e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9:]*Z/TIME/g' \
		-e 's/"created-epoch": [0-9]*/"created-epoch": EPOCH/'
}
cmd() {	# run and record a command, its output and its exit status
	echo "\$ vdisk $*"
	"$VDISK" "$@" >cmd.out 2>&1
	_rc=$?
	norm <cmd.out
	echo "[exit $_rc]"
}

{
	truncate -s 8M base.raw
	cmd create -s 64M --block-size 64K plain.vdk
	cmd info plain.vdk
	cmd info --json plain.vdk
	cmd create -s 1G --block-size 1M big.vdk
	cmd info big.vdk
	cmd create -b base.raw -F raw --block-size 4K over-raw.vdk
	cmd info over-raw.vdk
	vwrite plain.vdk 0 3 65536 0x11
	cmd info plain.vdk
	cmd snapshot create plain.vdk first
	vwrite plain.vdk 1048576 1 65536 0x22
	cmd snapshot create plain.vdk second
	cmd create -b plain.vdk --block-size 4K top.vdk
	vwrite top.vdk 0 1 4096 0x33
	cmd info top.vdk
	cmd info --json top.vdk
	cmd snapshot list plain.vdk
	cmd info nonexistent.vdk
	cmd info base.raw
} >actual.out 2>&1

if [ "${VDISK_GOLDEN_UPDATE:-0}" = 1 ]; then
	cp actual.out "$golden"
fi
if diff -u "$golden" actual.out >diff.txt; then
	ok "info output matches $(basename "$golden")" true
else
	sed 's/^/# /' diff.txt
	ok "info output matches $(basename "$golden")" false
fi
ok "info --json outputs are valid JSON" sh -c "'$VDISK' info --json top.vdk | perl -MJSON::PP -e 'local \$/; decode_json(<STDIN>)'"
"$VDISK" info --json top.vdk >top.json
ok_eq "$(json_eval top.json 'scalar @$j')" 4 "chain top.vdk has 4 layers (top, plain, second, first)"
ok_eq "$(json_eval top.json 'join ",", map { $_->{filename} } @$j')" \
	"top.vdk,plain.vdk,plain@second.vdk,plain@first.vdk" "layer files, top first"
ok_eq "$(json_eval top.json 'join ",", map { $_->{snapshot} // "-" } @$j')" "-,plain.vdk,second,first" \
	"layers top first, snapshots named (a plain layer below the top by its file name)"
ok_eq "$(json_eval top.json '$j->[0]{"backing-filename"}')" "plain.vdk" "backing stored relative"
done_testing
