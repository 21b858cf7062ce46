#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-fs.sh: vdiskfs against the raw file and the existing FUSE routes to a
# qcow2 chain, with fio, in one run (ratios only mean something inside a run).
#
#   scripts/bench-fs.sh [-s SIZE] [-t SECONDS] [-r N] [-d DIR] [-o OUT.md] [-m]
#     -s SIZE     virtual disk size (default 4G); the data fills all of it
#     -t SECONDS  fio runtime per cell (default 5, plus 1 s ramp)
#     -r N        N passes over the routes, keep each cell's best (default 1); the
#                 passes alternate in direction: vdiskfs first, then last, ...
#     -d DIR      scratch directory (default /dev/shm/bench-fs.PID, removed after)
#     -o OUT.md   also write the tables there
#     -m          only the memory figure (1 TiB image, 16 snapshots)
#
# Columns (same data in each):
#   raw        the raw file on the host (the ceiling)
#   vdiskfs    vdiskfs on a native .vdk chain of 4 layers (3 snapshots + top),
#              each layer holding a quarter of the data
#   qsd-fuse   qemu-storage-daemon --export type=fuse over a qcow2 chain of 4
#   nbdfuse    nbdfuse + qemu-nbd (socket activation) over the same qcow2 chain
#   qcowmount  libyal's qcowmount (read-only; it does not follow backing files,
#              so it gets a flattened qcow2 with the same data)
# Rows: sequential 1 MiB read/write, random 4 KiB read/write at depth 1 and with
# 4 jobs, each with O_DIRECT and buffered (page cache dropped before reads).
# Figures are MiB/s. The daemon's CPU time per MiB moved and its peak RSS are
# read from /proc (for nbdfuse: nbdfuse plus qemu-nbd).
set -eu

SIZE=4G
RT=5
REPEAT=1
DIR=
OUT=
MEM_ONLY=0
while getopts s:t:r:d:o:m opt; do
	case $opt in
	r) REPEAT=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	t) RT=$OPTARG ;;
	d) DIR=$OPTARG ;;
	o) OUT=$OPTARG ;;
	m) MEM_ONLY=1 ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${VDISK_BUILD:-$SRC/build}
VDISK=$B/vdisk
VDISKFS=$B/vdiskfs
[ -x "$VDISKFS" ] && [ -x "$VDISK" ] || { echo "bench-fs: build first (make)" >&2; exit 1; }
[ -n "$DIR" ] || DIR=/dev/shm/bench-fs.$$
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
TICK=$(getconf CLK_TCK)
MOUNTS=""
PIDS=""

cleanup() {
	for m in $MOUNTS; do
		grep -q " $m fuse" /proc/mounts && fusermount3 -uz "$m"
	done
	for p in $PIDS; do
		kill "$p" 2>/dev/null || :
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "bench-fs: $*" >&2; }

bytes() {
	numfmt --from=iec "$1"
}

wait_mount() {
	for _i in $(seq 200); do
		grep -q " $1 fuse" /proc/mounts && return 0
		sleep 0.2
	done
	log "mount of $1 did not appear"
	return 1
}

wait_gone() {
	for _i in $(seq 600); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.2
	done
	return 1
}

# pid of the process whose command line mentions $1 and whose name is $2.
find_pid() {
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = "$2" ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$1" && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}

# CPU ticks (user + system) of a list of pids.
cpu_ticks() {
	_t=0
	for p in "$@"; do
		set -- $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null || echo "x x x x x x x x x x x 0 0")
		_t=$((_t + ${12} + ${13}))
	done
	echo "$_t"
}

peak_rss_mib() {
	_k=0
	for p in "$@"; do
		_v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		_k=$((_k + ${_v:-0}))
	done
	echo $((_k / 1024))
}

# The daemon's own memory in KiB: RssAnon + RssFile. vdiskfs maps images that
# live in tmpfs (format/vdk-map.c); the pages of the image it touches count in
# its VmRSS as RssShmem, but they are the image itself, in memory whether or
# not anything maps them, so they are left out.
own_rss_kib() {
	awk '/^RssAnon:|^RssFile:/ { k += $2 } END { print k + 0 }' "/proc/$1/status" 2>/dev/null ||
		echo 0
}

# own_rss_watch PID FILE &: the peak of own_rss_kib, sampled every 200 ms, into FILE.
own_rss_watch() {
	_max=0
	while [ -d "/proc/$1" ]; do
		_v=$(own_rss_kib "$1")
		if [ "${_v:-0}" -gt "$_max" ]; then
			_max=$_v
			echo "$_max" >"$2"
		fi
		sleep 0.2
	done
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || :
}

# The images live in RAM (tmpfs) on a shared machine: stop before memory runs out.
mem_guard() {
	_avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
	if [ "$_avail" -lt 2048 ]; then
		log "only $_avail MiB of memory left: stopping ($(du -shx "$DIR" | cut -f1) in $DIR)"
		exit 3
	fi
}

# run_fio FILE RW BS JOBS DIRECT -> "MiB/s bytes_moved"
run_fio() {
	_f=$1 _rw=$2 _bs=$3 _j=$4 _d=$5
	mem_guard
	case $_rw in *read*) [ "$_d" = 0 ] && drop_caches ;; esac
	fio --name=b --filename="$_f" --rw="$_rw" --bs="$_bs" --numjobs="$_j" --group_reporting \
		--ioengine=psync --direct="$_d" --size="$SIZE_B" --time_based --runtime="$RT" \
		--ramp_time=1 --randrepeat=0 --norandommap --output-format=terse --terse-version=3 \
		2>/dev/null | awk -F';' -v rt="$RT" '
		{ kb = $6 + $47; bw = $7 + $48 }
		END { printf "%.0f %.0f\n", bw / 1024, kb * 1024 }'
}

ROWS="read:1M:1 write:1M:1 randread:4k:1 randwrite:4k:1 randread:4k:4 randwrite:4k:4"

row_name() {
	case $1 in
	read:1M:1) echo "seq read 1 MiB" ;;
	write:1M:1) echo "seq write 1 MiB" ;;
	randread:4k:1) echo "rand read 4 KiB QD1" ;;
	randwrite:4k:1) echo "rand write 4 KiB QD1" ;;
	randread:4k:4) echo "rand read 4 KiB 4 jobs" ;;
	randwrite:4k:4) echo "rand write 4 KiB 4 jobs" ;;
	esac
}

# bench_col NAME PASS FILE READONLY PIDS...: every row once, into $DIR/res.NAME.PASS;
# then $DIR/res.NAME holds, per row, the pass with the most MiB/s so far.
bench_col() {
	_name=$1 _pass=$2 _file=$3 _ro=$4
	shift 4
	_res=$DIR/res.$_name.$_pass
	: >"$_res"
	for d in 1 0; do
		for r in $ROWS; do
			IFS=: read -r rw bs j <<EOF
$r
EOF
			case $rw in *write*) [ "$_ro" = 1 ] && { echo "$d $r - -" >>"$_res"; continue; } ;; esac
			c0=$(cpu_ticks "$@")
			res=$(run_fio "$_file" "$rw" "$bs" "$j" "$d")
			c1=$(cpu_ticks "$@")
			mibs=${res% *}
			moved=${res#* }
			if [ $# -gt 0 ] && [ "$moved" -gt 0 ]; then
				# µs of daemon CPU per MiB moved
				cpu=$(awk -v c="$((c1 - c0))" -v t="$TICK" -v b="$moved" \
					'BEGIN { printf "%.0f", c / t * 1e6 / (b / 1048576) }')
			else
				cpu=-
			fi
			echo "$d $r $mibs $cpu" >>"$_res"
			log "$_name $(row_name "$r") direct=$d: $mibs MiB/s, cpu $cpu us/MiB ($(du -shx "$DIR" | cut -f1) used)"
		done
	done
	cat "$DIR/res.$_name".* | awk '
		{ k = $1 " " $2 }
		!(k in best) { order[++n] = k }
		!(k in best) || ($3 != "-" && (best[k] == "-" || $3 + 0 > best[k] + 0)) { best[k] = $3; cpu[k] = $4 }
		END { for (i = 1; i <= n; i++) print order[i], best[order[i]], cpu[order[i]] }' \
		>"$DIR/res.$_name"
	if [ -s "$DIR/own.$_name.$_pass" ]; then
		_v=$(($(cat "$DIR/own.$_name.$_pass") / 1024))
	elif [ $# -gt 0 ]; then
		_v=$(peak_rss_mib "$@")
	else
		_v=-
	fi
	if [ ! -s "$DIR/rss.$_name" ] || { [ "$_v" != - ] && [ "$_v" -gt "$(cat "$DIR/rss.$_name")" ]; }; then
		echo "$_v" >"$DIR/rss.$_name"
	fi
}

mem_figure() {
	log "memory: 1 TiB image with 16 snapshots"
	"$VDISK" create -s 1T "$DIR/big.vdk" >/dev/null
	mkdir -p "$DIR/mnt-big"
	"$VDISKFS" "$DIR/big.vdk" "$DIR/mnt-big"
	MOUNTS="$MOUNTS $DIR/mnt-big"
	pid=$(find_pid "$DIR/mnt-big" vdiskfs)
	PIDS="$PIDS $pid"
	echo 0 >"$DIR/own.big"
	own_rss_watch "$pid" "$DIR/own.big" &
	for i in $(seq 16); do
		fio --name=m --filename="$DIR/mnt-big/disk" --rw=randwrite --bs=64k --size=1T \
			--io_size=32M --norandommap --randrepeat=0 --direct=1 --output=/dev/null
		mkdir "$DIR/mnt-big/snapshots/s$i"
	done
	fio --name=m --filename="$DIR/mnt-big/disk" --rw=randread --bs=4k --size=1T --direct=1 \
		--norandommap --time_based --runtime="$RT" --numjobs=4 --output=/dev/null
	for i in $(seq 16); do
		cat "$DIR/mnt-big/snapshots/s$i/info" >/dev/null
		dd if="$DIR/mnt-big/snapshots/s$i/disk" of=/dev/null bs=1M count=64 skip=$((i * 4096)) \
			status=none
	done
	MEM_RSS=$(($(own_rss_kib "$pid") / 1024))
	MEM_HWM=$(($(cat "$DIR/own.big") / 1024))
	MEM_VMHWM=$(peak_rss_mib "$pid")
	fusermount3 -u "$DIR/mnt-big"
	wait_gone "$pid"
	rm -f "$DIR"/big*.vdk
	log "memory: RSS $MEM_RSS MiB now, peak $MEM_HWM MiB (RssAnon + RssFile; VmHWM with the mapped image pages $MEM_VMHWM MiB)"
}

if [ "$MEM_ONLY" = 1 ]; then
	mem_figure
	echo "vdiskfs with a 1 TiB image and 16 snapshots mounted: RSS $MEM_RSS MiB, peak $MEM_HWM MiB (RssAnon + RssFile; VmHWM with the mapped image pages: $MEM_VMHWM MiB)"
	exit 0
fi

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
# Memory left for the page cache is part of the buffered figures (the kernel
# reclaims readahead pages early when it is short): say what there was.
MEM0="$(awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo) MiB available, \
$(df -m --output=used /dev/shm | tail -1 | tr -d ' ') MiB already in /dev/shm"
log "memory at the start: $MEM0"
SIZE_B=$(bytes "$SIZE")
Q=$((SIZE_B / 4))
QM=$((Q / 1048576))
log "data: $SIZE of random bytes in $DIR"
fio --name=fill --filename="$DIR/raw.img" --rw=write --bs=1M --size="$SIZE_B" --refill_buffers \
	--output=/dev/null

# ---- the data of each route, made just before its columns, removed after them ----

prep_native() {
	log "native chain of 4 (vdiskfs, mkdir snapshots/ between quarters)"
	"$VDISK" create -s "$SIZE_B" "$DIR/chain.vdk" >/dev/null
	mkdir -p "$DIR/mnt-vd"
	"$VDISKFS" "$DIR/chain.vdk" "$DIR/mnt-vd"
	MOUNTS="$MOUNTS $DIR/mnt-vd"
	pid=$(find_pid "$DIR/mnt-vd" vdiskfs)
	for k in 0 1 2 3; do
		dd if="$DIR/raw.img" of="$DIR/mnt-vd/disk" bs=1M skip=$((k * QM)) seek=$((k * QM)) \
			count=$QM conv=notrunc,fsync status=none
		[ $k -lt 3 ] && mkdir "$DIR/mnt-vd/snapshots/layer$k"
	done
	fusermount3 -u "$DIR/mnt-vd"
	wait_gone "$pid"
}

drop_native() {
	# Memory: keep at most two copies of the data in /dev/shm at a time.
	rm -f "$DIR"/chain*.vdk "$DIR"/*.vdk
}

prep_qcow2() {
	log "qcow2 chain of 4 (qemu-io write -s)"
	prev=
	for k in 0 1 2 3; do
		if [ -z "$prev" ]; then
			qemu-img create -q -f qcow2 "$DIR/q$k.qcow2" "$SIZE_B"
		else
			qemu-img create -q -f qcow2 -b "$prev" -F qcow2 "$DIR/q$k.qcow2"
		fi
		dd if="$DIR/raw.img" of="$DIR/part" bs=1M skip=$((k * QM)) count=$QM status=none
		step=$((256 * 1048576))
		[ "$step" -gt "$Q" ] && step=$Q
		o=0
		while [ $o -lt "$Q" ]; do
			dd if="$DIR/part" of="$DIR/piece" bs=1M skip=$((o / 1048576)) \
				count=$((step / 1048576)) status=none
			qemu-io -f qcow2 -c "write -q -s $DIR/piece $((k * Q + o)) $step" \
				"$DIR/q$k.qcow2" >/dev/null
			o=$((o + step))
		done
		rm -f "$DIR/part" "$DIR/piece"
		prev=q$k.qcow2
	done
	TOPQ=$DIR/q3.qcow2
}

drop_qcow2() {
	rm -f "$DIR"/q?.qcow2
}

# ---- the columns; $1 is the pass ----

col_vdiskfs() {
	log "column vdiskfs (pass $1)"
	"$VDISKFS" "$DIR/chain.vdk" "$DIR/mnt-vd"
	pid=$(find_pid "$DIR/mnt-vd" vdiskfs)
	PIDS="$PIDS $pid"
	cmp -s -n $((64 * 1048576)) "$DIR/mnt-vd/disk" "$DIR/raw.img" || log "WARNING: vdiskfs data differs"
	echo 0 >"$DIR/own.vdiskfs.$1"
	own_rss_watch "$pid" "$DIR/own.vdiskfs.$1" &
	bench_col vdiskfs "$1" "$DIR/mnt-vd/disk" 0 "$pid"
	fusermount3 -u "$DIR/mnt-vd"
	wait_gone "$pid"
}

col_qsd() {
	log "column qsd-fuse (pass $1)"
	: >"$DIR/qsd.img"
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=f,filename=$TOPQ" \
		--blockdev driver=qcow2,node-name=q,file=f \
		--export "type=fuse,id=e,node-name=q,mountpoint=$DIR/qsd.img,writable=on" \
		--pidfile "$DIR/qsd.pid" --daemonize
	MOUNTS="$MOUNTS $DIR/qsd.img"
	wait_mount "$DIR/qsd.img"
	pid=$(cat "$DIR/qsd.pid")
	PIDS="$PIDS $pid"
	bench_col qsd "$1" "$DIR/qsd.img" 0 "$pid"
	fusermount3 -u "$DIR/qsd.img"
	kill "$pid"
	wait_gone "$pid"
}

col_nbdfuse() {
	log "column nbdfuse (pass $1)"
	mkdir -p "$DIR/mnt-nbd"
	nbdfuse "$DIR/mnt-nbd/disk" [ qemu-nbd -f qcow2 --shared=8 "$TOPQ" ] &
	nbd_pid=$!
	PIDS="$PIDS $nbd_pid"
	MOUNTS="$MOUNTS $DIR/mnt-nbd"
	wait_mount "$DIR/mnt-nbd"
	qnbd=$(find_pid "$TOPQ" qemu-nbd)
	bench_col nbdfuse "$1" "$DIR/mnt-nbd/disk" 0 "$nbd_pid" "$qnbd"
	fusermount3 -u "$DIR/mnt-nbd"
	wait_gone "$nbd_pid" || kill "$nbd_pid"
	kill "$qnbd" 2>/dev/null || :
}

# qcowmount (read-only) does not follow backing files: a flattened qcow2.
col_qcowmount() {
	log "column qcowmount, flattened qcow2 (pass $1)"
	qemu-img convert -O qcow2 -f raw "$DIR/raw.img" "$DIR/flat.qcow2"
	mkdir -p "$DIR/mnt-qc"
	qcowmount "$DIR/flat.qcow2" "$DIR/mnt-qc" >/dev/null
	MOUNTS="$MOUNTS $DIR/mnt-qc"
	wait_mount "$DIR/mnt-qc"
	pid=$(find_pid "$DIR/mnt-qc" qcowmount)
	PIDS="$PIDS $pid"
	bench_col qcowmount "$1" "$DIR/mnt-qc/qcow1" 1 "$pid"
	fusermount3 -u "$DIR/mnt-qc"
	wait_gone "$pid" || :
	rm -f "$DIR/flat.qcow2"
}

# Passes alternate in direction (vdiskfs first, then last, ...), so that a
# machine whose speed drifts during the run favours no route: every cell is
# measured once per pass and the best is kept.
for n in $(seq "$REPEAT"); do
	if [ $((n % 2)) = 1 ]; then
		prep_native
		col_vdiskfs "$n"
		drop_native
		prep_qcow2
		col_qsd "$n"
		col_nbdfuse "$n"
		drop_qcow2
		col_qcowmount "$n"
	else
		col_qcowmount "$n"
		prep_qcow2
		col_nbdfuse "$n"
		col_qsd "$n"
		drop_qcow2
		prep_native
		col_vdiskfs "$n"
		drop_native
	fi
done

# ---- raw, last: its writes change raw.img, which the other columns were made from ----
log "column raw"
for n in $(seq "$REPEAT"); do
	bench_col raw "$n" "$DIR/raw.img" 0
done
rm -f "$DIR/raw.img"

mem_figure

# ---- tables ----
COLS="raw vdiskfs qsd nbdfuse qcowmount"
{
	echo "Disk $SIZE, fio ${RT} s per cell (psync, best of $REPEAT passes, alternating in direction), $(nproc) CPUs, kernel $(uname -r),"
	echo "load average at the start $LOAD0, at the end $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine);"
	echo "memory at the start: $MEM0."
	echo "MiB/s; vdiskfs/best = vdiskfs over the best FUSE route of the row; vdiskfs/raw = over the ceiling."
	echo
	echo "| pattern | I/O | raw | vdiskfs | qsd-fuse | nbdfuse | qcowmount | vdiskfs/best | vdiskfs/raw |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
	for d in 1 0; do
		for r in $ROWS; do
			line="| $(row_name "$r") | $([ $d = 1 ] && echo O_DIRECT || echo buffered) |"
			vals=""
			for c in $COLS; do
				v=$(awk -v d="$d" -v r="$r" '$1 == d && $2 == r { print $3 }' "$DIR/res.$c")
				line="$line ${v:--} |"
				vals="$vals $c=${v:--}"
			done
			ratios=$(echo "$vals" | awk '{
				for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
				best = 0
				split("qsd nbdfuse qcowmount", o, " ")
				for (i in o) if (v[o[i]] != "-" && v[o[i]] + 0 > best) best = v[o[i]] + 0
				vb = (best > 0 && v["vdiskfs"] != "-") ? sprintf("%.2f", v["vdiskfs"] / best) : "-"
				vr = (v["raw"] + 0 > 0 && v["vdiskfs"] != "-") ? sprintf("%.2f", v["vdiskfs"] / v["raw"]) : "-"
				print vb " | " vr }')
			echo "$line $ratios |"
		done
	done
	echo
	echo "Daemon CPU, microseconds per MiB moved (nbdfuse: nbdfuse + qemu-nbd):"
	echo
	echo "| pattern | I/O | vdiskfs | qsd-fuse | nbdfuse | qcowmount |"
	echo "|---|---|---:|---:|---:|---:|"
	for d in 1 0; do
		for r in $ROWS; do
			line="| $(row_name "$r") | $([ $d = 1 ] && echo O_DIRECT || echo buffered) |"
			for c in vdiskfs qsd nbdfuse qcowmount; do
				v=$(awk -v d="$d" -v r="$r" '$1 == d && $2 == r { print $4 }' "$DIR/res.$c")
				line="$line ${v:--} |"
			done
			echo "$line"
		done
	done
	echo
	echo "Peak RSS of the daemons (MiB): vdiskfs $(cat "$DIR/rss.vdiskfs") (RssAnon + RssFile, sampled: without the image pages in tmpfs it maps), qsd-fuse $(cat "$DIR/rss.qsd"), nbdfuse+qemu-nbd $(cat "$DIR/rss.nbdfuse"), qcowmount $(cat "$DIR/rss.qcowmount")."
	echo "vdiskfs with a 1 TiB image and 16 snapshots mounted (after writes, random reads, every snapshot read): RSS $MEM_RSS MiB, peak $MEM_HWM MiB (RssAnon + RssFile, sampled every 200 ms; VmHWM, which counts the image pages in tmpfs that vdiskfs mapped: $MEM_VMHWM MiB)."
} >"$DIR/table.md"
cat "$DIR/table.md"
[ -n "$OUT" ] && cp "$DIR/table.md" "$OUT"
exit 0
