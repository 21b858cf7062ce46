#!/bin/sh
# SPDX-License-Identifier: MIT
# Benchmarks of the vdisk tool against qemu-img, in one run on one machine,
# images in /dev/shm (tmpfs: the disk is never the limit). Prints a markdown
# table with ratios (the figures of issue 2; README.md keeps one run).
#
#   1-6  `qemu-img bench` on a qcow2 image vs `vdisk bench` on a native image,
#        both holding the same 1 GiB of data: sequential 64 KiB read and write,
#        scattered 4 KiB read and write (-S 1052672 = 257 x 4 KiB, which visits
#        every 4 KiB slot of the 1 GiB image in scattered order) at depth 1 and
#        16. qemu-img keeps DEPTH AIO requests in flight; vdisk bench runs DEPTH
#        threads of synchronous calls. Each write run starts from a fresh copy of
#        the data image (overwrites: in place for qcow2, copy-on-write for vdk).
#   7    random 4 KiB reads on a 32-layer chain vs the same data in 1 layer.
#   8    `vdisk snapshot create` (the whole command) on a 100 GiB image with
#        10 GiB written in 1 MiB writes, one every 10 MiB (in tmpfs if memory
#        allows, else on the disk under $TMPDIR, as the row then says).
#   9    `vdisk check` throughput on the 1 GiB image (page cache = tmpfs), with
#        reading the file (cat > /dev/null) as the reference.
# Each timed row is the best of $ROUNDS runs (default 3) to damp a shared
# machine; the two sides of a row alternate run by run.
#
# usage: scripts/bench-vdisk.sh [-q]   (-q: smaller counts, for a smoke run)
set -eu
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
VDISK=${VDISK:-$SRCDIR/build/vdisk}
ROUNDS=${ROUNDS:-3}
QUICK=0
[ "${1:-}" = "-q" ] && QUICK=1
[ -x "$VDISK" ] || { echo "bench-vdisk: build first (make)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-vdisk: qemu-img is missing" >&2; exit 1; }

W=$(mktemp -d /dev/shm/vdisk-bench.XXXXXX)
SNAP_DIR=""
trap 'rm -rf "$W" ${SNAP_DIR:+"$SNAP_DIR"}' EXIT INT TERM
cd "$W"

SIZE_MB=1024
SEQ_R=16384 SEQ_W=8192 SC_N=65536 RND_N=100000 SNAP_GB=10
if [ $QUICK = 1 ]; then
	SIZE_MB=256 SEQ_R=4096 SEQ_W=2048 SC_N=16384 RND_N=20000 SNAP_GB=1 ROUNDS=1
fi
SIZE=$((SIZE_MB * 1048576))
# The snapshot row writes SNAP_GB GiB: in tmpfs when there is memory to spare,
# else on the disk under ${TMPDIR:-/tmp} (and the table says so).
avail_gb=$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)
SNAP_DIR=$W
SNAP_WHERE="tmpfs"
if [ "$avail_gb" -lt $((SNAP_GB + 6)) ]; then
	SNAP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-bench-snap.XXXXXX")
	SNAP_WHERE="$(findmnt -no FSTYPE -T "$SNAP_DIR" 2>/dev/null || echo disk) on disk, ${avail_gb} GiB of memory free"
fi

log() { printf '%s\n' "$*" >&2; }

# secs CMD...: run a bench command, print its "Run completed in X seconds".
secs() {
	"$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p'
}
# wall CMD...: wall-clock seconds of a whole command.
wall() {
	_s=$(date +%s%N)
	"$@" >/dev/null
	_e=$(date +%s%N)
	awk "BEGIN{printf \"%.6f\", ($_e - $_s) / 1e9}"
}
mbps() { awk "BEGIN{printf \"%.0f\", $1 / $2 / 1048576}"; }
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }

log "bench-vdisk: preparing ${SIZE_MB} MiB of data (qcow2 via qemu-img, vdk via vdisk convert)"
head -c "$SIZE" /dev/urandom >data.raw
qemu-img convert -f raw -O qcow2 data.raw data.qcow2
"$VDISK" convert -O vdk data.raw data.vdk
BS=$("$VDISK" info --json data.vdk | perl -MJSON::PP -e 'local $/; print decode_json(<STDIN>)->[0]{"block-size"}')
rm -f data.raw

ROWS=""
row() {	# row NAME BYTES QEMU_SECS VDISK_SECS GOAL
	_q=$(mbps "$2" "$3")
	_v=$(mbps "$2" "$4")
	ROWS="$ROWS| $1 | $_q MB/s | $_v MB/s | $(ratio "$3" "$4")x | $5 |
"
	log "  $1: qemu-img $_q MB/s, vdisk $_v MB/s"
}

# pair NAME BYTES FRESH "QEMU-CMD" "VDISK-CMD": the two alternate, ROUNDS times
# each, so that a change of load on a shared machine hits both; the best time
# of each makes the row. FRESH=1: w.qcow2 / w.vdk are fresh copies of the data
# images before every run.
pair() {
	_qb="" _vb=""
	for _i in $(seq "$ROUNDS"); do
		if [ "$3" = 1 ]; then
			rm -f w.qcow2 w.vdk
			cp --sparse=always data.qcow2 w.qcow2
			cp --sparse=always data.vdk w.vdk
		fi
		_q=$(eval "secs $4")
		_v=$(eval "secs $5")
		[ -n "$_q" ] && [ -n "$_v" ] || { log "bench-vdisk: failed: $4 / $5"; exit 1; }
		if [ -z "$_qb" ] || awk "BEGIN{exit !($_q < $_qb)}"; then _qb=$_q; fi
		if [ -z "$_vb" ] || awk "BEGIN{exit !($_v < $_vb)}"; then _vb=$_v; fi
	done
	row "$1" "$2" "$_qb" "$_vb" ">= 1.0x"
}

log "bench-vdisk: sequential 64 KiB"
pair "sequential read 64 KiB, depth 1" $((SEQ_R * 65536)) 0 \
	"qemu-img bench -f qcow2 -c $SEQ_R -d 1 -s 65536 data.qcow2" \
	"'$VDISK' bench -f vdk -c $SEQ_R -d 1 -s 65536 data.vdk"
pair "sequential write 64 KiB, depth 1" $((SEQ_W * 65536)) 1 \
	"qemu-img bench -f qcow2 -w -c $SEQ_W -d 1 -s 65536 --pattern=165 w.qcow2" \
	"'$VDISK' bench -f vdk -w -c $SEQ_W -d 1 -s 65536 --pattern 165 w.vdk"
for d in 1 16; do
	log "bench-vdisk: scattered 4 KiB, depth $d"
	pair "scattered read 4 KiB, depth $d" $((SC_N * 4096)) 0 \
		"qemu-img bench -f qcow2 -c $SC_N -d $d -s 4096 -S 1052672 data.qcow2" \
		"'$VDISK' bench -f vdk -c $SC_N -d $d -s 4096 -S 1052672 data.vdk"
	pair "scattered write 4 KiB, depth $d" $((SC_N * 4096)) 1 \
		"qemu-img bench -f qcow2 -w -c $SC_N -d $d -s 4096 -S 1052672 --pattern=165 w.qcow2" \
		"'$VDISK' bench -f vdk -w -c $SC_N -d $d -s 4096 -S 1052672 --pattern 165 w.vdk"
done
rm -f w.qcow2 w.vdk

log "bench-vdisk: chain of 32 layers vs 1"
cp --sparse=always data.vdk chain.vdk
for i in $(seq 31); do
	# each layer rewrites 16 scattered 64 KiB pieces
	"$VDISK" bench -q -f vdk -w -c 16 -d 1 -s 65536 -S $((SIZE / 16 + 65536 * i)) -o $((i * 65536)) --pattern "$i" chain.vdk
	"$VDISK" snapshot create chain.vdk "s$i" >/dev/null
done
"$VDISK" convert -O vdk chain.vdk flat.vdk
depth=$("$VDISK" info --json chain.vdk | perl -MJSON::PP -e 'local $/; print scalar @{decode_json(<STDIN>)}')
c1="" c32=""
for _i in $(seq "$ROUNDS"); do
	_a=$(secs "$VDISK" bench -f vdk --random -c $RND_N -d 1 -s 4096 flat.vdk)
	_b=$(secs "$VDISK" bench -f vdk --random -c $RND_N -d 1 -s 4096 chain.vdk)
	if [ -z "$c1" ] || awk "BEGIN{exit !($_a < $c1)}"; then c1=$_a; fi
	if [ -z "$c32" ] || awk "BEGIN{exit !($_b < $c32)}"; then c32=$_b; fi
done
CHAIN_ROW="| random read 4 KiB, chain of $depth layers vs 1 layer | $(mbps $((RND_N * 4096)) "$c1") MB/s (1 layer) | $(mbps $((RND_N * 4096)) "$c32") MB/s ($depth layers) | $(ratio "$c1" "$c32")x | >= 0.9x |"
log "  chain: depth 1 ${c1}s, depth $depth ${c32}s"
rm -f chain.vdk flat.vdk "$W"/*.s[0-9]* 2>/dev/null || true

log "bench-vdisk: vdisk check"
bytes=$("$VDISK" check --json data.vdk | perl -MJSON::PP -e 'local $/; print decode_json(<STDIN>)->{"bytes-checked"}')
tc=""
for _i in $(seq "$ROUNDS"); do
	_t=$(wall "$VDISK" check data.vdk)
	if [ -z "$tc" ] || awk "BEGIN{exit !($_t < $tc)}"; then tc=$_t; fi
done
tr=$(wall cat data.vdk)
fsize=$(stat -c %s data.vdk)
CHECK_ROW="| vdisk check (structure + every checksum), data in page cache | $(awk "BEGIN{printf \"%.2f\", $fsize / $tr / 1e9}") GB/s (cat > /dev/null) | $(awk "BEGIN{printf \"%.2f\", $bytes / $tc / 1e9}") GB/s | $(awk "BEGIN{printf \"%.2f\", ($bytes / $tc) / ($fsize / $tr)}")x | >= 1 GB/s |"
log "  check: $bytes bytes in ${tc}s"
rm -f data.qcow2 data.vdk

# snap_row DIR GIB WHERE: create 100 GiB, write GIB GiB, time the snapshot that freezes it.
snap_row() {
	log "bench-vdisk: snapshot create, 100 GiB image with $2 GiB written ($3)"
	"$VDISK" create -s 100G "$1/big.vdk"
	"$VDISK" bench -q -f vdk -w -c $(($2 * 1024)) -d 2 -s 1M -S 10M --pattern 7 "$1/big.vdk"
	# Only the first snapshot freezes the layer holding the data: time that one.
	_t1=$(wall "$VDISK" snapshot create "$1/big.vdk" snap1)
	_t2=$(wall "$VDISK" snapshot create "$1/big.vdk" snap2)
	log "  snapshot create: ${_t1}s, next ${_t2}s"
	rm -rf "$1"/big*
	echo "| snapshot create, 100 GiB image with $2 GiB written ($3), whole command | - | $(awk "BEGIN{printf \"%.1f\", $_t1 * 1000}") ms (then $(awk "BEGIN{printf \"%.1f\", $_t2 * 1000}") ms for the next) | - | < 50 ms |"
}
SNAP_ROW=$(snap_row "$SNAP_DIR" "$SNAP_GB" "$SNAP_WHERE")
if [ "$SNAP_DIR" != "$W" ]; then
	# Not enough memory for all of it in tmpfs: the same with 2 GiB written, in tmpfs.
	SNAP_ROW="$SNAP_ROW
$(snap_row "$W" 2 tmpfs)"
fi

echo
echo "vdisk $("$VDISK" --version | sed 's/^vdisk version //'), $(qemu-img --version | head -1), default block size $((BS / 1024)) KiB,"
echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), images in /dev/shm, best of $ROUNDS, $(date -u +%Y-%m-%d)."
echo
echo "| test | qemu-img bench (qcow2) | vdisk bench (vdk) | ratio | goal |"
echo "|---|---|---|---|---|"
printf '%s' "$ROWS"
echo "$CHAIN_ROW"
echo "$SNAP_ROW"
echo "$CHECK_ROW"
