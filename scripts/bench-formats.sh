#!/bin/sh
# SPDX-License-Identifier: MIT
# Foreign-format read benchmarks (issue 5), one run on one machine, images in
# /dev/shm (tmpfs: the disk is never the limit). Prints a markdown table.
#
# Images: a 4 GiB qcow2 chain of depth 4 (base with 1 GiB of data, three
# overlays with 128 MiB each, scattered) and a streamOptimized VMDK holding
# the same disk (qemu-img convert of the chain's top).
#
#   library: `vdisk bench` vs `qemu-img bench`, same options (the offset
#            sequence of qemu-img bench): sequential 1 MiB reads (depth 1),
#            scattered 4 KiB reads (-S 1052672 = 257 x 4 KiB) at depth 1 and 16.
#            Also the CPU time (user + system) of each, steadier than the wall
#            clock on a shared machine.
#   FUSE:    fio through a vdiskfs mount vs the best existing FUSE route:
#            qemu-storage-daemon's FUSE export (else qemu-nbd + nbdfuse).
#            Sequential 1 MiB and random 4 KiB reads (psync, page cache
#            dropped for the file before each run with fio --invalidate=1).
# Rows whose tool is not built yet print "n/a". Each row is the best of $ROUNDS
# runs (default 3) per tool, the two tools alternating round after round.
#
# usage: scripts/bench-formats.sh [-q]   (-q: smaller images and counts, a smoke run)
set -eu
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
VDISK=${VDISK:-$SRCDIR/build/vdisk}
VDISKFS=${VDISKFS:-$SRCDIR/build/vdiskfs}
ROUNDS=${ROUNDS:-3}
QUICK=0
[ "${1:-}" = "-q" ] && QUICK=1
command -v qemu-img >/dev/null || { echo "bench-formats: qemu-img is missing" >&2; exit 1; }

W=$(mktemp -d /dev/shm/vdisk-bench-formats.XXXXXX)
MOUNTS=""
cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || :
	done
	[ -n "${QSD_PID:-}" ] && kill "$QSD_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$W"

M=1048576
SIZE_G=4 BASE_M=1024 OVL_M=128 SEQ_N=4096 RND_N=100000 VSEQ_N=2048 VRND_N=20000 FIO_T=5
if [ $QUICK = 1 ]; then
	SIZE_G=1 BASE_M=128 OVL_M=16 SEQ_N=1024 RND_N=20000 VSEQ_N=512 VRND_N=4000 FIO_T=3 ROUNDS=1
fi
SIZE=$((SIZE_G * 1024 * M))
log() { printf '%s\n' "$*" >&2; }

# ---- images -----------------------------------------------------------------
log "bench-formats: building a ${SIZE_G} GiB qcow2 chain of depth 4 in $W"
head -c $((64 * M)) /dev/urandom >rnd
qemu-img create -q -f qcow2 c0.qcow2 ${SIZE_G}G
# Base: BASE_M MiB in 64 MiB pieces spread over the disk; every other piece compressible.
n=$((BASE_M / 64)) cmds=""
i=0
while [ $i -lt $n ]; do
	off=$((i * (SIZE / n)))
	if [ $((i % 2)) = 0 ]; then
		cmds="$cmds -c \"write -s rnd $off 64M\""
	else
		cmds="$cmds -c \"write -P $((i % 251 + 1)) $off 64M\""
	fi
	i=$((i + 1))
done
eval qemu-io -f qcow2 $cmds c0.qcow2 >/dev/null
for l in 1 2 3; do
	qemu-img create -q -f qcow2 -b c$((l - 1)).qcow2 -F qcow2 c$l.qcow2
	n=$((OVL_M / 4)) cmds=""
	i=0
	while [ $i -lt $n ]; do
		off=$(((i * 7919 + l * 131) % (SIZE / (4 * M)) * 4 * M))
		cmds="$cmds -c \"write -s rnd $off 4M\""
		i=$((i + 1))
	done
	eval qemu-io -f qcow2 $cmds c$l.qcow2 >/dev/null
done
log "bench-formats: converting to a streamOptimized VMDK"
qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized c3.qcow2 s.vmdk
rm -f rnd

# ---- library: vdisk bench vs qemu-img bench ----------------------------------
# secs CMD...: the "Run completed in X seconds" of a bench run; its CPU time
# (user + system, from /usr/bin/time) is left in $W/cpu.
secs() {
	/usr/bin/time -f '%U %S' -o "$W/cpu.1" "$@" 2>/dev/null |
		sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p'
	awk '{ print $1 + $2 }' "$W/cpu.1" >"$W/cpu" 2>/dev/null
}
# rate COUNT BUFSIZE SECS: MiB/s for >= 64 KiB requests, else IOPS
rate() {
	[ -z "$3" ] && { echo "n/a"; return; }
	if [ "$2" -ge 65536 ]; then
		echo "$1 * $2 / 1048576 / $3" | bc -l | xargs printf '%.0f MiB/s'
	else
		echo "$1 / $3" | bc -l | xargs printf '%.0f IOPS'
	fi
}
ratio() {
	if [ -z "$1" ] || [ -z "$2" ]; then
		echo "n/a"
	else
		echo "$1 / $2" | bc -l | xargs printf '%.2fx'
	fi
}
ROWS=""
row() {
	ROWS="$ROWS
| $1 | $2 | $3 | $4 |"
}
# min A B: the smaller of two times ("" counts as missing)
min() {
	if [ -z "$1" ]; then
		echo "$2"
	elif [ -z "$2" ] || [ "$(echo "$1 < $2" | bc -l)" = 1 ]; then
		echo "$1"
	else
		echo "$2"
	fi
}
# The two tools alternate, round after round, so that a busy moment on the shared
# machine does not land on one of them only.
lib_row() {
	name=$1 fmt=$2 img=$3 count=$4 bs=$5
	shift 5
	log "bench-formats: $name"
	q="" v="" qc="" vc=""
	for _r in $(seq "$ROUNDS"); do
		q=$(min "$q" "$(secs qemu-img bench -f "$fmt" -c "$count" -s "$bs" "$@" "$img")")
		qc=$(min "$qc" "$(cat "$W/cpu")")
		if [ -x "$VDISK" ]; then
			v=$(min "$v" "$(secs "$VDISK" bench -f "$fmt" -c "$count" -s "$bs" "$@" "$img")")
			vc=$(min "$vc" "$(cat "$W/cpu")")
		fi
	done
	ROWS="$ROWS
| $name | $(rate "$count" "$bs" "$q") | $(rate "$count" "$bs" "$v") | $(ratio "$q" "$v") | ${qc:-n/a} s / ${vc:-n/a} s |"
}
lib_row "qcow2 chain (4 layers): sequential 1 MiB, depth 1" qcow2 c3.qcow2 $SEQ_N 1048576 -d 1
lib_row "qcow2 chain (4 layers): scattered 4 KiB, depth 1" qcow2 c3.qcow2 $RND_N 4096 -d 1 -S 1052672
lib_row "qcow2 chain (4 layers): scattered 4 KiB, depth 16" qcow2 c3.qcow2 $RND_N 4096 -d 16 -S 1052672
lib_row "streamOptimized VMDK: sequential 1 MiB, depth 1" vmdk s.vmdk $VSEQ_N 1048576 -d 1
lib_row "streamOptimized VMDK: scattered 4 KiB, depth 1" vmdk s.vmdk $VRND_N 4096 -d 1 -S 1052672
LIB_ROWS=$ROWS

# ---- FUSE: vdiskfs vs qemu-storage-daemon FUSE export --------------------------
ROWS=""
# fio_rate FILE RW BS: MiB/s (sequential) or IOPS (random) over FIO_T seconds.
fio_rate() {
	fio --name=b --filename="$1" --rw="$2" --bs="$3" --ioengine=psync --invalidate=1 \
		--time_based --runtime="$FIO_T" --readonly --output-format=terse --terse-version=3 \
		2>/dev/null | awk -F';' -v rw="$2" '{ if (rw == "read") printf "%.0f\n", $7 / 1024; else print $8 }'
}
max() {
	if [ -z "$1" ]; then
		echo "$2"
	elif [ -z "$2" ] || [ "$1" -gt "$2" ]; then
		echo "$1"
	else
		echo "$2"
	fi
}
fuse_pair() {
	label=$1 ref=$2 ours=$3
	for w in "read 1M MiB/s" "randread 4k IOPS"; do
		set -- $w
		r="" o=""
		for _r in $(seq "$ROUNDS"); do
			r=$(max "$r" "$(fio_rate "$ref" "$1" "$2")")
			[ -n "$ours" ] && o=$(max "$o" "$(fio_rate "$ours" "$1" "$2")")
		done
		rat="n/a"
		[ -n "$o" ] && [ -n "$r" ] && [ "$r" != 0 ] && rat=$(echo "$o / $r" | bc -l | xargs printf '%.2fx')
		ROWS="$ROWS
| $label: fio $1 $2 | ${r:-n/a} $3 | ${o:-n/a}${o:+ $3} | $rat |"
	done
}
qsd_mount() {	# FMT IMG MOUNTFILE
	: >"$3"
	qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$2",read-only=on \
		--blockdev driver="$1",node-name=d,file=f,read-only=on \
		--export type=fuse,id=e,node-name=d,mountpoint="$3",writable=off >/dev/null 2>&1 &
	QSD_PID=$!
	for _i in $(seq 100); do
		grep -q " $3 fuse" /proc/mounts && return 0
		sleep 0.1
	done
	return 1
}
for pair in "qcow2 c3.qcow2" "vmdk s.vmdk"; do
	set -- $pair
	fmt=$1 img=$2
	log "bench-formats: FUSE $fmt"
	if ! qsd_mount "$fmt" "$img" "$W/qsd-$fmt"; then
		log "bench-formats: qemu-storage-daemon FUSE export failed"
		continue
	fi
	MOUNTS="$MOUNTS $W/qsd-$fmt"
	ours=""
	if [ -x "$VDISKFS" ]; then
		mkdir -p "$W/mnt-$fmt"
		if "$VDISKFS" "$img" "$W/mnt-$fmt" >/dev/null 2>&1; then
			MOUNTS="$MOUNTS $W/mnt-$fmt"
			ours="$W/mnt-$fmt/disk"
		fi
	fi
	fuse_pair "$fmt ($img)" "$W/qsd-$fmt" "$ours"
	fusermount3 -u "$W/qsd-$fmt" 2>/dev/null || :
	kill "$QSD_PID" 2>/dev/null || :
	wait "$QSD_PID" 2>/dev/null || :
	QSD_PID=""
	[ -n "$ours" ] && fusermount3 -u "$W/mnt-$fmt" 2>/dev/null || :
done
FUSE_ROWS=$ROWS

cat <<EOF
Foreign-format reads, $(date -u +%Y-%m-%d), $(nproc) CPUs shared, images in /dev/shm:
a ${SIZE_G} GiB qcow2 chain of depth 4 ($BASE_M MiB + 3 x $OVL_M MiB written) and the same
disk as a streamOptimized VMDK ($(du -m s.vmdk | cut -f1) MiB). Best of $ROUNDS.

| library (bench) | qemu-img bench | vdisk bench | vdisk / qemu-img | CPU time qemu-img / vdisk |
|---|---|---|---|---|$LIB_ROWS

| FUSE | qemu-storage-daemon FUSE export | vdiskfs | vdiskfs / qemu |
|---|---|---|---|$FUSE_ROWS
EOF
