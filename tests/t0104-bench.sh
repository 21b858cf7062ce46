#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk bench mirrors qemu-img bench: same output lines, and the same offset
# sequence -- a write run of each on identical raw images leaves identical
# bytes, with a scattered stride (-S 1052672), an offset, and at depth 1 and
# 16 (threads); --random writes land aligned; bad arguments are refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

truncate -s 64M q.raw
"$VDISK" create -s 64M v1.vdk
"$VDISK" create -s 64M v16.vdk
cp q.raw r.raw
n=600
[ "${VDISK_ASAN:-0}" = 1 ] && n=200
qemu-img bench -f raw -w -c $n -d 1 -s 4096 -S 1052672 -o 8192 --pattern=90 q.raw >qout.txt
run_rc rc "$VDISK" bench -w -c $n -d 1 -s 4096 -S 1052672 -o 8192 --pattern 90 v1.vdk
ok_eq "$rc" 0 "bench -w depth 1"
ok_eq "$(head -1 "$T/out")" "$(head -1 qout.txt)" "first line identical to qemu-img bench"
ok "second line like qemu-img's" grep -Eq '^Run completed in [0-9]+\.[0-9]{3} seconds\.$' "$T/out"
ok "scattered writes at depth 1 land where qemu-img's do" same_as v1.vdk q.raw
ok "bench -w -d 16" vd bench -q -w -c $n -d 16 -s 4096 -S 1052672 -o 8192 --pattern 90 v16.vdk
ok "depth 16 (16 threads) writes the same set of blocks" same_as v16.vdk q.raw
ok "bench -w -f raw on a raw file" vd bench -q -w -f raw -c $n -d 4 -s 4096 -S 1052672 -o 8192 --pattern 90 r.raw
ok "  same bytes as qemu-img" cmp r.raw q.raw

# Sequential 64 KiB, wrapping around the end like qemu-img.
truncate -s 1M w.raw
cp w.raw w2.raw
qemu-img bench -f raw -w -c 40 -d 1 -s 65536 --pattern=7 -o 983040 w.raw >/dev/null
"$VDISK" create -s 1M w.vdk
ok "sequential 64 KiB writes wrapping at the end" vd bench -q -w -c 40 -d 2 -s 64K --pattern 7 -o 983040 w.vdk
ok "  same bytes as qemu-img" same_as w.vdk w.raw

run_rc rc "$VDISK" bench -c 2000 -d 4 -s 4096 -S 1052672 v1.vdk
ok_eq "$rc" 0 "read bench"
ok "read header" grep -Eq '^Sending 2000 read requests, 4096 bytes each, 4 in parallel \(starting at offset 0, step size 1052672\)$' "$T/out"
ok "read bench leaves the image alone" same_as v1.vdk q.raw

"$VDISK" create -s 16M rnd.vdk
run_rc rc "$VDISK" bench -w --random -c 300 -d 4 -s 8192 --pattern 1 rnd.vdk
ok_eq "$rc" 0 "--random writes"
ok "  header says random" grep -q "random offsets" "$T/out"
"$VDISK" map --json rnd.vdk >m.json
ok "  every data range is 8 KiB-aligned" test "$(json_eval m.json 'scalar grep { $_->{type} eq "data" && ($_->{start} % 8192 || $_->{length} % 8192) } @$j')" = 0
ok "  and the image is clean" vd check rnd.vdk

# Chain: reads fall through a depth-4 chain.
for i in 1 2 3; do "$VDISK" snapshot create v1.vdk "s$i"; done
ok "read bench on a chain" vd bench -q -c 2000 -d 4 -s 4096 -S 1052672 v1.vdk

for args in "-c 0" "-s 0" "-d 0" "-d 5000" "-s 128M" "-o 64M" "-c x" "--pattern 300"; do
	# shellcheck disable=SC2086
	run_rc rc "$VDISK" bench $args v1.vdk
	ok "bench $args refused" test "$rc" -eq 1
done
run_rc rc "$VDISK" bench -w -c 10 missing.vdk
ok "missing file refused" test "$rc" -eq 1 -a ! -e missing.vdk
done_testing
