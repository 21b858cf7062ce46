#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-target.sh: vdisk-target against tgtd (Debian tgt), same backing file in
# /dev/shm, same run, and qemu-img bench on the file itself as the local ceiling.
#   scripts/bench-target.sh [SIZE_MIB]        (needs root for tgtd; default 512)
#   BACKING=FILE scripts/bench-target.sh ...  serve an existing file instead (a vdiskfs
#                                             disk, say); its first SIZE_MIB MiB are overwritten
#   ROWS=1m|4k                                only the 1 MiB or the 4 KiB rows
#   TARGET_OPTS="--tcp-congestion system"     more vdisk-target options
#   N4=40000 N1=4000 REPS=3                   I/Os per 4 KiB and 1 MiB run, runs per cell
# For each target: iscsi-perf reads (4 KiB, depth 32) and qemu-img bench reads
# and writes (4 KiB at depth 1, 32, 128; 1 MiB sequential at depth 8), each the
# best of REPS (3) runs, the runs of the local file and the two targets taking turns. Besides IOPS/throughput it reports each daemon's CPU
# time per I/O (utime+stime from /proc divided by the I/Os, the lowest of the
# runs), steadier than IOPS on a shared machine, and qemu-img's own CPU time per
# I/O (the initiator shares the 2 cores: what it spends is what the target's
# protocol choices cost it).
# Prints a Markdown table. Numbers are only comparable within one run.
set -eu
SIZE_MIB=${1:-512}
B=${VDISK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
TARGET=$B/vdisk-target
W=$(mktemp -d /dev/shm/bench-target.XXXXXX)
IMG=${BACKING:-$W/disk.img}
IQN_V=iqn.2026-11.org.example:bench-vdisk
IQN_T=iqn.2026-11.org.example:bench-tgt
PV=${PV:-23260}
PT=${PT:-23261}
CTL=${CTL:-23262}
TCK=$(getconf CLK_TCK)
VPID=
TPID=

cleanup() {
	[ -n "$VPID" ] && kill "$VPID" 2>/dev/null || :
	if [ -n "$TPID" ]; then
		# tgtd ignores SIGTERM: remove the target, stop the system, then kill
		tgtadm -C "$CTL" --lld iscsi --op unbind --mode target --tid 1 -I ALL >/dev/null 2>&1 || :
		tgtadm -C "$CTL" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || :
		tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || :
		kill "$TPID" 2>/dev/null || :
		sleep 1
		kill -9 "$TPID" 2>/dev/null || :
	fi
	wait 2>/dev/null || :
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

wait_port() {
	perl -MIO::Socket::INET -e '
		for (1..100) { exit 0 if IO::Socket::INET->new(PeerAddr=>"127.0.0.1", PeerPort=>$ARGV[0]);
			select(undef,undef,undef,0.1) } exit 1' "$1"
}

# CPU ticks (utime + stime) of a process
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# qemu-img bench: prints "seconds cpu_seconds" (the initiator's own utime+stime)
qbench() { # URL_OR_FILE COUNT DEPTH SIZE [-w]
	perl -e 'system(@ARGV); my @t = times; printf "CPU %.3f\n", $t[2] + $t[3]' \
		qemu-img bench -f raw -t writeback -c "$2" -d "$3" -s "$4" $5 "$1" 2>&1 |
		sed -n -e 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' -e 's/^CPU \(.*\)/\1/p' |
		tr '\n' ' '
}

# One run: PID URL COUNT DEPTH SIZE [-w];
#   prints "iops:mibps:us_cpu_per_io:us_initiator_cpu_per_io". Each cell is the
# best of $REPS runs (the machine is shared: a run that lost the CPU to someone
# else says nothing about the target).
REPS=${REPS:-3}
measure_once() {
	_pid=$1
	shift
	_c0=$([ -n "$_pid" ] && cpu_ticks "$_pid" || echo 0)
	_s=$(qbench "$@")
	_c1=$([ -n "$_pid" ] && cpu_ticks "$_pid" || echo 0)
	echo "$_s" | awk -v n="$2" -v sz="$4" -v c="$((_c1 - _c0))" -v tck="$TCK" '{
		s = $1; if (s <= 0) s = 0.000001
		printf "%d:%.0f:%.1f:%.1f", n / s, n * sz / s / 1048576, c / tck * 1e6 / n,
			$2 * 1e6 / n }'
}
# the best of several measure_once results: the most I/Os, the least CPU
best_of() {
	echo "$*" | tr ' ' '\n' | grep : | awk -F: '
		{ if ($1 > i) { i = $1; m = $2 } if (c == "" || $3 < c) c = $3
		  if (q == "" || $4 < q) q = $4 }
		END { printf "%d %d %.1f %.1f\n", i, m, c, q }'
}

# iscsi-perf reads for 5 s at depth 32, 4 KiB (one run): prints "iops us_cpu_per_io"
iperf() { # PID URL
	_c0=$(cpu_ticks "$1")
	_o=$(timeout 15 iscsi-perf -m 32 -b 8 -t 5 "$2" 2>&1 | tr '\r' '\n' | grep 'iops average' | tail -1)
	_c1=$(cpu_ticks "$1")
	_iops=$(echo "$_o" | sed -n 's/.*iops average \([0-9]*\).*/\1/p')
	awk -v i="${_iops:-0}" -v c="$((_c1 - _c0))" -v tck="$TCK" 'BEGIN {
		n = i * 5; if (n <= 0) n = 1; printf "%d %.1f\n", i, c / tck * 1e6 / n }'
}

echo "# preparing a ${SIZE_MIB} MiB backing file in $W" >&2
dd if=/dev/urandom of="$IMG" bs=1M count="$SIZE_MIB" conv=notrunc status=none

# shellcheck disable=SC2086 # TARGET_OPTS: more vdisk-target options, split
"$TARGET" -f -q --iqn "$IQN_V" --portal "127.0.0.1:$PV" --lun 0="$IMG" ${TARGET_OPTS:-} &
VPID=$!
tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$PT" >/dev/null 2>&1 &
TPID=$!
wait_port "$PV"
wait_port "$PT"
sleep 0.5
tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T "$IQN_T"
tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$IMG"
tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
UV="iscsi://127.0.0.1:$PV/$IQN_V/0"
UT="iscsi://127.0.0.1:$PT/$IQN_T/1"

N4=${N4:-40000}
N1=${N1:-4000} # 1 MiB runs of 1000 lasted 0.25 s against vdisk-target: too short
echo "| workload | local file | vdisk-target | tgtd | vdisk/tgtd | vdisk/local | CPU µs/IO vdisk | CPU µs/IO tgtd | initiator CPU µs/IO, vdisk / tgtd |"
echo "|---|---|---|---|---|---|---|---|---|"
ROWS=${ROWS:-all} # "1m": only the 1 MiB rows; "4k": only the 4 KiB ones
row() { # LABEL UNIT COUNT DEPTH SIZE [-w]
	case "$ROWS:$5" in
	1m:4096 | 4k:1048576) return 0 ;;
	esac
	_label=$1
	_unit=$2
	shift 2
	set -- "$@" ""
	# The runs alternate (local, vdisk-target, tgtd, local, ...), so that a
	# machine whose speed drifts favours neither target.
	_lb= _vb= _tb=
	for _r in $(seq "$REPS"); do
		_lb="$_lb $(measure_once "" "$IMG" "$1" "$2" "$3" "$4")"
		_vb="$_vb $(measure_once "$VPID" "$UV" "$1" "$2" "$3" "$4")"
		_tb="$_tb $(measure_once "$TPID" "$UT" "$1" "$2" "$3" "$4")"
	done
	_l=$(best_of $_lb)
	_v=$(best_of $_vb)
	_t=$(best_of $_tb)
	echo "$_l|$_v|$_t" | awk -F'|' -v label="$_label" -v unit="$_unit" '{
		split($1, l, " "); split($2, v, " "); split($3, t, " ")
		f = (unit == "MiB/s") ? 2 : 1
		printf "| %s | %d %s | %d %s | %d %s | %.2f× | %.2f× | %.1f | %.1f | %.1f / %.1f |\n",
			label, l[f], unit, v[f], unit, t[f], unit, v[f] / (t[f] ? t[f] : 1),
			v[f] / (l[f] ? l[f] : 1), v[3], t[3], v[4], t[4] }'
}
row "4 KiB read, depth 1" IOPS $((N4 / 4)) 1 4096
row "4 KiB read, depth 32" IOPS "$N4" 32 4096
row "4 KiB read, depth 128" IOPS "$N4" 128 4096
row "4 KiB write, depth 1" IOPS $((N4 / 4)) 1 4096 -w
row "4 KiB write, depth 32" IOPS "$N4" 32 4096 -w
row "4 KiB write, depth 128" IOPS "$N4" 128 4096 -w
row "1 MiB sequential read, depth 8" MiB/s "$N1" 8 1048576
row "1 MiB sequential write, depth 8" MiB/s "$N1" 8 1048576 -w
[ "$ROWS" = 1m ] || {
pv=$(iperf "$VPID" "$UV")
pt=$(iperf "$TPID" "$UT")
echo "$pv|$pt" | awk -F'|' '{ split($1, v, " "); split($2, t, " ")
	printf "| iscsi-perf 4 KiB read, depth 32 | | %d IOPS | %d IOPS | %.2f× | | %.1f | %.1f | |\n",
		v[1], t[1], v[1] / (t[1] ? t[1] : 1), v[2], t[2] }'
}
echo
# (a tmpfs LUN is mapped by vdisk-target: its pages count in VmRSS as RssShmem,
# the file's own memory, not the daemon's; RssAnon is what the daemon allocated)
rss() { awk '/^(VmRSS|RssAnon|RssShmem)/ { printf "%s %s kB  ", $1, $2 }' "/proc/$1/status"; }
echo "vdisk-target: $(rss "$VPID")"
echo "tgtd: $(rss "$TPID")"
