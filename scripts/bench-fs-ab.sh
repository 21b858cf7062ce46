#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-fs-ab.sh: A/B of one vdiskfs switch, in one run. Builds a native chain
# of 4 layers in memory (as bench-fs.sh does), then mounts it N times with and
# N times without VAR=1 in the daemon's environment, alternating, and runs the
# same fio job on `disk` each time; then the raw file with the same job.
#
#   scripts/bench-fs-ab.sh [-e VAR] [-w RW] [-b BS] [-d 0|1] [-n N] [-s SIZE] [-t SECONDS]
#     -e VAR      the switch (default VDISK_NO_AHEAD; also VDISK_NO_MAP)
#     -w RW       fio --rw (default read)
#     -b BS       block size (default 1M)
#     -d 0|1      O_DIRECT (default 1)
#     -n N        rounds (default 4)
#     -s SIZE     disk size (default 2G)
#     -t SECONDS  fio runtime (default 4, plus 1 s ramp)
# Prints MiB/s and the daemon's CPU time per MiB moved for each mount.
set -eu

VAR=VDISK_NO_AHEAD
RW=read
BS=1M
DIRECT=1
N=4
SIZE=2G
RT=4
while getopts e:w:b:d:n:s:t: opt; do
	case $opt in
	e) VAR=$OPTARG ;;
	w) RW=$OPTARG ;;
	b) BS=$OPTARG ;;
	d) DIRECT=$OPTARG ;;
	n) N=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	t) RT=$OPTARG ;;
	*) sed -n '2,15p' "$0"; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${VDISK_BUILD:-$SRC/build}
[ -x "$B/vdiskfs" ] && [ -x "$B/vdisk" ] || { echo "bench-fs-ab: build first (make)" >&2; exit 1; }
DIR=$(mktemp -d /dev/shm/bench-fs-ab.XXXXXX)
M=$DIR/mnt
PID=

cleanup() {
	grep -q " $M fuse" /proc/mounts && fusermount3 -uz "$M"
	[ -n "$PID" ] && kill "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mounted() {
	for _i in $(seq 100); do
		grep -q " $M fuse" /proc/mounts && return 0
		sleep 0.1
	done
	echo "bench-fs-ab: the mount did not appear" >&2
	exit 1
}

SIZE_B=$(numfmt --from=iec "$SIZE")
QM=$((SIZE_B / 4 / 1048576))
fio --name=fill --filename="$DIR/raw.img" --rw=write --bs=1M --size="$SIZE_B" --refill_buffers \
	--output=/dev/null
"$B/vdisk" create -s "$SIZE_B" "$DIR/chain.vdk" >/dev/null
mkdir -p "$M"
"$B/vdiskfs" "$DIR/chain.vdk" "$M"
mounted
for k in 0 1 2 3; do
	dd if="$DIR/raw.img" of="$M/disk" bs=1M skip=$((k * QM)) seek=$((k * QM)) count=$QM \
		conv=notrunc,fsync status=none
	[ $k -lt 3 ] && mkdir "$M/snapshots/layer$k"
done
fusermount3 -u "$M"
sleep 1

# job FILE -> "MiB/s bytes"
job() {
	case $RW in *read*) [ "$DIRECT" = 0 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; } ;; esac
	fio --name=ab --filename="$1" --rw="$RW" --bs="$BS" --direct="$DIRECT" --ioengine=psync \
		--size="$SIZE_B" --time_based --runtime="$RT" --ramp_time=1 --randrepeat=0 \
		--norandommap --output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' '{ printf "%.0f %.0f\n", ($7 + $48) / 1024, ($6 + $47) * 1024 }'
}

TICK=$(getconf CLK_TCK)
echo "fio $RW $BS direct=$DIRECT ${RT} s, $SIZE chain of 4 in memory, $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$N"); do
	for v in 0 1; do
		if [ $v = 1 ]; then
			env "$VAR=1" "$B/vdiskfs" -f "$DIR/chain.vdk" "$M" &
		else
			"$B/vdiskfs" -f "$DIR/chain.vdk" "$M" &
		fi
		PID=$!
		mounted
		c0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
		set -- $(job "$M/disk")
		c1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
		# (CPU of the whole job, ramp included; bytes of the timed part: a slight overcount)
		echo "$VAR=$v: $1 MiB/s, daemon $(awk -v c=$((c1 - c0)) -v t="$TICK" -v b="$2" \
			'BEGIN { printf "%.0f", c / t * 1e6 / (b / 1048576) }') us/MiB, load $(cut -d' ' -f1 /proc/loadavg)"
		fusermount3 -u "$M"
		wait "$PID" || :
		PID=
	done
done
set -- $(job "$DIR/raw.img")
echo "raw file: $1 MiB/s"
