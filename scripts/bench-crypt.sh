#!/bin/sh
# SPDX-License-Identifier: MIT
# Encryption benchmark: encrypted (xchacha20poly1305, aes256gcm) versus plain
# native images, and versus qemu's LUKS-encrypted qcow2, all in one run on the
# same machine, images in /dev/shm. Prints Markdown tables (MiB/s, and the
# ratio encrypted / plain).
#
#   1. `vdisk bench` (in process): sequential 1 MiB write/read, random 4 KiB
#      write/read (--random);
#   2. the same 4 KiB rows with the access pattern qemu-img bench can do
#      (scattered: step 1 MiB + 4 KiB), side by side with `qemu-img bench` on a
#      LUKS qcow2 (aes-256-xts) served by qemu-storage-daemon over NBD on a
#      unix socket (qemu-img bench takes no --object, so it cannot open an
#      encrypted image itself; a plain qcow2 through the same NBD path is listed
#      to show that path's own cost);
#   3. fio through FUSE: vdiskfs MOUNT/disk versus qemu-storage-daemon's FUSE
#      export of the LUKS qcow2.
#
# Usage: scripts/bench-crypt.sh [SIZE_MIB]   (VDISK_BUILD=dir of the binaries)
# Unlock cost: the first row times one open with the default Argon2id limits.
set -u

B=${VDISK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
VDISK=$B/vdisk
VDISKFS=$B/vdiskfs
MIB=${1:-512}
SEQ=$((MIB / 2))	# 1 MiB requests per sequential run
RND=20000		# 4 KiB requests per random run
DEPTH=16
FIO_TIME=5
W=$(mktemp -d /dev/shm/bench-crypt.XXXXXX)
QSD_PIDS=""
MOUNTS=""
PW="--pwhash-ops 1 --pwhash-mem 8K"	# throughput runs: the open cost is measured apart

cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	for p in $QSD_PIDS; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for t in "$VDISK" "$VDISKFS" qemu-img qemu-storage-daemon fio; do
	command -v "$t" >/dev/null 2>&1 || { echo "bench-crypt: $t not found" >&2; exit 1; }
done
cd "$W" || exit 1
printf 'benchmark passphrase\n' >key
printf 'benchmark passphrase' >qkey

# secs OUTPUT-OF-BENCH -> seconds from "Run completed in X seconds."
secs() { sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p' "$1" | tail -1; }
# mibs BYTES SECONDS
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / s / 1048576; else print "?" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }

# vb IMG BYTES ARGS...: vdisk bench, best MiB/s of $REPS runs (the machine is shared)
REPS=${REPS:-3}
vb() {
	_img=$1
	_bytes=$2
	shift 2
	_best=0
	for _r in $(seq "$REPS"); do
		"$VDISK" --key-file key bench "$@" "$_img" >vb.out 2>vb.err || { cat vb.err >&2; echo "?"; return; }
		_best=$(awk -v a="$_best" -v b="$(mibs "$_bytes" "$(secs vb.out)")" 'BEGIN { print (b > a ? b : a) }')
	done
	echo "$_best"
}
# qb URL BYTES ARGS...: qemu-img bench over NBD, best of $REPS
qb() {
	_url=$1
	_bytes=$2
	shift 2
	_best=0
	for _r in $(seq "$REPS"); do
		qemu-img bench -f raw "$@" "$_url" >qb.out 2>qb.err || { cat qb.err >&2; echo "?"; return; }
		_best=$(awk -v a="$_best" -v b="$(mibs "$_bytes" "$(secs qb.out)")" 'BEGIN { print (b > a ? b : a) }')
	done
	echo "$_best"
}

echo "# bench-crypt: $(date -u '+%F %T') UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), images ${MIB} MiB in /dev/shm"
echo

# Unlock cost with the default Argon2id limits.
"$VDISK" --key-file key create --encrypt -s 16M unlock.vdk >/dev/null
t0=$(date +%s.%N)
"$VDISK" --key-file key check unlock.vdk >/dev/null
t1=$(date +%s.%N)
"$VDISK" key list unlock.vdk | sed -n 's/^slot 0: used (argon2id, ops \([0-9]*\), memory \(.*\))/\1 \2/p' >lim
echo "Unlock (open) with the default Argon2id limits (ops $(cut -d' ' -f1 lim), memory $(cut -d' ' -f2- lim)): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
echo

# ---- 1. vdisk bench: encrypted vs plain ----------------------------------------
"$VDISK" create -s "${MIB}M" plain.vdk >/dev/null
"$VDISK" --key-file key create --encrypt $PW -s "${MIB}M" x.vdk >/dev/null
"$VDISK" --key-file key create --encrypt --cipher aes256gcm $PW -s "${MIB}M" g.vdk >/dev/null
SEQB=$((SEQ * 1048576))
RNDB=$((RND * 4096))
STEP=1052672
# Rows in turn, the three images inside each row, so that they share the load of the moment.
for img in plain x g; do eval "sw_$img=\$(vb $img.vdk $SEQB -w --pattern 0x5a -s 1M -c $SEQ -d 4)"; done
for img in plain x g; do eval "sr_$img=\$(vb $img.vdk $SEQB -s 1M -c $SEQ -d 4)"; done
for img in plain x g; do eval "rw_$img=\$(vb $img.vdk $RNDB -w --random --pattern 0x33 -s 4K -c $RND -d $DEPTH)"; done
for img in plain x g; do eval "rr_$img=\$(vb $img.vdk $RNDB --random -s 4K -c $RND -d $DEPTH)"; done
for img in plain x g; do eval "xw_$img=\$(vb $img.vdk $RNDB -w --pattern 0x44 -s 4K -S $STEP -c $RND -d $DEPTH)"; done
for img in plain x g; do eval "xr_$img=\$(vb $img.vdk $RNDB -s 4K -S $STEP -c $RND -d $DEPTH)"; done

echo "## vdisk bench (in process), MiB/s"
echo
echo "| workload | plain | xchacha20poly1305 | ratio | aes256gcm | ratio |"
echo "|---|---|---|---|---|---|"
for row in "sw:sequential write 1 MiB" "sr:sequential read 1 MiB" \
	"rw:random write 4 KiB" "rr:random read 4 KiB" \
	"xw:scattered write 4 KiB" "xr:scattered read 4 KiB"; do
	k=${row%%:*}
	eval "p=\$${k}_plain x=\$${k}_x g=\$${k}_g"
	echo "| ${row#*:} | $p | $x | $(ratio "$x" "$p") | $g | $(ratio "$g" "$p") |"
done
echo

# ---- 2. qemu LUKS qcow2 over NBD, qemu-img bench --------------------------------
qemu-img create -q -f qcow2 --object secret,id=sec0,file=qkey \
	-o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100 luks.qcow2 "${MIB}M"
qemu-img create -q -f qcow2 plainq.qcow2 "${MIB}M"
qemu-storage-daemon --object secret,id=sec0,file=qkey \
	--blockdev driver=file,node-name=f1,filename=luks.qcow2 \
	--blockdev driver=qcow2,node-name=luks,file=f1,encrypt.format=luks,encrypt.key-secret=sec0 \
	--blockdev driver=file,node-name=f2,filename=plainq.qcow2 \
	--blockdev driver=qcow2,node-name=plainq,file=f2 \
	--nbd-server addr.type=unix,addr.path="$W/nbd.sock" \
	--export type=nbd,id=e1,node-name=luks,writable=on \
	--export type=nbd,id=e2,node-name=plainq,writable=on >qsd.log 2>&1 &
QSD_PIDS="$QSD_PIDS $!"
for _i in $(seq 50); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
for q in luks plainq; do
	u="nbd+unix:///$q?socket=$W/nbd.sock"
	eval "sw_$q=\$(qb '$u' $SEQB -w --pattern 0x5a -s 1M -c $SEQ -d 4)"
	eval "sr_$q=\$(qb '$u' $SEQB -s 1M -c $SEQ -d 4)"
	eval "xw_$q=\$(qb '$u' $RNDB -w --pattern 0x44 -s 4K -S $STEP -c $RND -d $DEPTH)"
	eval "xr_$q=\$(qb '$u' $RNDB -s 4K -S $STEP -c $RND -d $DEPTH)"
done
# The images stay locked by this daemon: stop it before the FUSE export.
for p in $QSD_PIDS; do
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
done
QSD_PIDS=""

# ---- 1b. the AEAD alone, and the bound it sets -----------------------------------
# An encrypted image moves every byte as the plain one does and also seals or opens
# it: at best 1 / (1/plain + 1/aead), where aead is libsodium's speed on as many
# threads as the run keeps busy (vdisk bench runs 4-16 threads: every core).
: >aead.out
for _r in $(seq "$REPS"); do	# best of $REPS, like the image rows
	"$B/tests/aead-speed" -t "$(nproc)" >>aead.out 2>aead.err || cat aead.err >&2
done
aead() { awk -v k="$1 $2" '$1 " " $2 == k && $3 > m { m = $3 } END { print m + 0 }' aead.out; }
# bound PLAIN AEAD -> MiB/s; of MEASURED BOUND -> the fraction reached
bound() { awk -v p="$1" -v a="$2" 'BEGIN { if (p > 0 && a > 0) printf "%.0f", 1 / (1 / p + 1 / a); else print "?" }'; }
echo "## The bound set by the AEAD (libsodium alone on $(nproc) threads, 4 KiB messages, same run), MiB/s"
echo
echo "| cipher | seal | open |"
echo "|---|---|---|"
for c in xchacha20poly1305 aes256gcm; do
	echo "| $c | $(aead $c seal) | $(aead $c open) |"
done
echo
echo "| workload | plain | xchacha: bound | reached | aes: bound | reached |"
echo "|---|---|---|---|---|---|"
for row in "sw:seal:sequential write 1 MiB" "sr:open:sequential read 1 MiB" \
	"rw:seal:random write 4 KiB" "rr:open:random read 4 KiB" \
	"xw:seal:scattered write 4 KiB" "xr:open:scattered read 4 KiB"; do
	k=${row%%:*}
	op=${row#*:}
	op=${op%%:*}
	eval "p=\$${k}_plain x=\$${k}_x g=\$${k}_g"
	bx=$(bound "$p" "$(aead xchacha20poly1305 "$op")")
	bg=$(bound "$p" "$(aead aes256gcm "$op")")
	echo "| ${row##*:} | $p | $bx ($(ratio "$bx" "$p")x plain) | $(ratio "$x" "$bx") | $bg ($(ratio "$bg" "$p")x plain) | $(ratio "$g" "$bg") |"
done
echo

echo "## versus qemu LUKS qcow2 (qemu-img bench over NBD), MiB/s, same request pattern"
echo
echo "| workload | vdk xchacha20poly1305 | vdk aes256gcm | qcow2 LUKS (aes-xts) | vdk xchacha / LUKS | vdk aes / LUKS | qcow2 plain, same NBD path |"
echo "|---|---|---|---|---|---|---|"
for row in "sw:sequential write 1 MiB" "sr:sequential read 1 MiB" \
	"xw:scattered write 4 KiB" "xr:scattered read 4 KiB"; do
	k=${row%%:*}
	eval "x=\$${k}_x g=\$${k}_g l=\$${k}_luks q=\$${k}_plainq"
	echo "| ${row#*:} | $x | $g | $l | $(ratio "$x" "$l") | $(ratio "$g" "$l") | $q |"
done
echo

# ---- 3. fio through FUSE ------------------------------------------------------------
# fio_row NAME FILE: four fio runs, results in f_<rw>_NAME (MiB/s)
fio_one() {
	_f=$1
	shift
	fio --minimal --output=fio.out --name=b --filename="$_f" --ioengine=psync --direct=1 \
		--time_based --runtime=$FIO_TIME --size=$((MIB / 2))M --randrepeat=1 "$@" \
		>/dev/null 2>fio.err || { cat fio.err >&2; echo "?"; return; }
	# terse v3: field 7 read KiB/s, field 48 write KiB/s; sum over jobs
	awk -F';' '{ r += $7; w += $48 } END { printf "%.0f", (r + w) / 1024 }' fio.out
}
fio_row() {
	_n=$1
	_f=$2
	eval "f_sw_$_n=\$(fio_one '$_f' --rw=write --bs=1M)"
	eval "f_sr_$_n=\$(fio_one '$_f' --rw=read --bs=1M)"
	eval "f_rw_$_n=\$(fio_one '$_f' --rw=randwrite --bs=4k --numjobs=4 --group_reporting=0)"
	eval "f_rr_$_n=\$(fio_one '$_f' --rw=randread --bs=4k --numjobs=4 --group_reporting=0)"
}
for img in plain x g; do
	mkdir -p "m_$img"
	"$VDISKFS" --key-file key "$img.vdk" "m_$img" 2>>vdiskfs.log || echo "vdiskfs $img failed" >&2
	MOUNTS="$MOUNTS $W/m_$img"
done
for k in "sw:--rw=write --bs=1M" "sr:--rw=read --bs=1M" \
	"rw:--rw=randwrite --bs=4k --numjobs=4" "rr:--rw=randread --bs=4k --numjobs=4"; do
	for img in plain x g; do
		eval "f_${k%%:*}_$img=\$(fio_one m_$img/disk ${k#*:})"
	done
done
touch luks.fuse
qemu-storage-daemon --object secret,id=sec0,file=qkey \
	--blockdev driver=file,node-name=f1,filename=luks.qcow2 \
	--blockdev driver=qcow2,node-name=luks,file=f1,encrypt.format=luks,encrypt.key-secret=sec0 \
	--export type=fuse,id=e,node-name=luks,mountpoint="$W/luks.fuse",writable=on >qsd2.log 2>&1 &
QSD_PIDS="$QSD_PIDS $!"
MOUNTS="$MOUNTS $W/luks.fuse"
for _i in $(seq 50); do grep -q " $W/luks.fuse fuse" /proc/mounts && break; sleep 0.1; done
if grep -q " $W/luks.fuse fuse" /proc/mounts; then
	fio_row luks luks.fuse
else
	echo "bench-crypt: the qemu-storage-daemon FUSE export did not come up:" >&2
	cat qsd2.log >&2
	for k in sw sr rw rr; do eval "f_${k}_luks=?"; done
fi

echo "## fio through FUSE (psync, O_DIRECT; 4 KiB rows: 4 jobs), MiB/s"
echo
echo "| workload | vdiskfs plain | vdiskfs xchacha20poly1305 | ratio | vdiskfs aes256gcm | ratio | qemu-storage-daemon FUSE, qcow2 LUKS | xchacha / LUKS | aes / LUKS |"
echo "|---|---|---|---|---|---|---|---|---|"
for row in "sw:sequential write 1 MiB" "sr:sequential read 1 MiB" \
	"rw:random write 4 KiB" "rr:random read 4 KiB"; do
	k=${row%%:*}
	eval "p=\$f_${k}_plain x=\$f_${k}_x g=\$f_${k}_g l=\$f_${k}_luks"
	echo "| ${row#*:} | $p | $x | $(ratio "$x" "$p") | $g | $(ratio "$g" "$p") | $l | $(ratio "$x" "$l") | $(ratio "$g" "$l") |"
done
