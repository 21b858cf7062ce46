#!/bin/sh
# SPDX-License-Identifier: MIT
# Changing the virtual size of a disk, end to end.
#  1. vdisk resize on single native images (grow across tree depths, +N/-N,
#     shrink only with --shrink, space given back, a partial last block),
#     chains whose lower layers are larger or smaller (qemu-img resize on the
#     same qcow2 chain is the oracle), raw files, refusals (qcow2, a frozen
#     snapshot, 64 TiB, a locked image), encrypted images, and crashes
#     (SIGKILL at every write and sync of a resize, by strace's fault
#     injection): the image opens with the old or the new size and content,
#     `vdisk check` clean.
#  2. online grow through a real vdiskfs mount: truncate -s of MOUNT/disk,
#     fio --verify across the old end, st_size of an open fd, partitions/,
#     a snapshot after the grow; shrinking refused.
#  3. vdisk-target: a LUN whose file grew raises CAPACITY DATA HAS CHANGED
#     once per I_T nexus; READ CAPACITY(16) then has the new size (libiscsi
#     tools, qemu-img over iscsi://).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
. "$(dirname "$0")/fs-lib.sh"
. "$SRCDIR/tools/target/test-lib.sh"
cd "$T" || exit 1

MIB=1048576
info_size() {	# the virtual size vdisk info gives for layer 0, in bytes
	"$VDISK" info --json "$1" | perl -MJSON::PP -e 'local $/; print decode_json(<STDIN>)->[0]{"virtual-size"}'
}
check_clean() {
	"$VDISK" check "$1" >"$T/check.out" 2>&1
}

# ---- 1. single native images ------------------------------------------------

mkraw o.raw 6M "0:1048576:1 4194304:65536:2 6225920:65536:3"
ok "convert 6M raw -> vdk" vd convert -O vdk o.raw d.vdk
ok "grow 6M -> 1G (tree one level deeper)" vd resize d.vdk 1G
truncate -s 1G o.raw
ok_eq "$(info_size d.vdk)" $((1024 * MIB)) "info: 1 GiB"
ok "reads as the raw oracle truncated to 1G" same_as d.vdk o.raw
ok "check clean after grow" check_clean d.vdk
ok "write past the old end" vwrite d.vdk $((900 * MIB)) 4 4096 0x5a
owrite o.raw $((900 * MIB)) 4 4096 0x5a
ok "grow +(64T - 1G) (64 TiB: tree at full depth)" vd resize d.vdk +$((64 * 1024 * 1024 * MIB - 1024 * MIB))
ok_eq "$(info_size d.vdk)" $((64 * 1024 * 1024 * MIB)) "info: 64 TiB"
ok "write the last block of 64 TiB" vwrite d.vdk $((64 * 1024 * 1024 * MIB - 4096)) 1 4096 0x77
ok "check clean at 64 TiB" check_clean d.vdk
run_rc rc "$VDISK" resize d.vdk +512
ok_eq "$rc" 1 "past 64 TiB refused"
ok "  says the limit" grep -q "64 TiB" err
run_rc rc "$VDISK" resize d.vdk 1G
ok_eq "$rc" 1 "shrink without --shrink refused"
ok "  names --shrink" grep -q -- "--shrink" err
ok_eq "$(info_size d.vdk)" $((64 * 1024 * 1024 * MIB)) "  size unchanged"
ok "--shrink 64T -> 1G" vd resize --shrink d.vdk 1G
ok "reads as the oracle (data at 900M kept)" same_as d.vdk o.raw
ok "check clean after shrink" check_clean d.vdk
ok "relative shrink -1018M (to 6M)" vd resize --shrink d.vdk -1018M
truncate -s 6M o.raw
ok "reads as the oracle at 6M" same_as d.vdk o.raw
# a partial last block: its tail past the end must read as zeroes after a grow
ok "--shrink to 4194816 (block 1024 partly inside)" vd resize --shrink d.vdk 4194816
ok "grow back to 8M" vd resize d.vdk 8M
truncate -s 4194816 o.raw
truncate -s 8M o.raw
ok "the old data past the cut reads as zeroes" same_as d.vdk o.raw
ok "check clean" check_clean d.vdk
vwrite d.vdk $((4 * MIB)) 1024 4096 0x71
before=$(du -k d.vdk | cut -f1)
ok "--shrink 8M -> 1M" vd resize --shrink d.vdk 1M
after=$(du -k d.vdk | cut -f1)
ok "shrink gives the space back ($before KiB -> $after KiB)" test "$after" -le $((before - 3000))
run_rc rc "$VDISK" resize d.vdk -2M
ok_eq "$rc" 1 "shrinking by more than the size refused"
run_rc rc "$VDISK" resize d.vdk 0
ok_eq "$rc" 1 "size 0 refused"
run_rc rc "$VDISK" resize d.vdk 1.5G
ok_eq "$rc" 1 "a fraction refused"
run_rc rc "$VDISK" resize --shrink d.vdk 1000001
ok_eq "$rc" 0 "1000001 is rounded up to 512"
ok_eq "$(info_size d.vdk)" 1000448 "  to 1000448"

# ---- chains: qemu-img resize on the same qcow2 chain is the oracle ------------
# A layer shows through only below the sizes of the layers above it: a top
# grown past its old size must not let a larger lower layer's old data
# reappear (qemu zero-fills the new range when the backing is large enough).

qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -q -P 0x11 0 8M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 3000000
qemu-io -c 'write -q -P 0x22 1M 64k' top.qcow2 >/dev/null
vd create -s 3000000 -b base.qcow2 t.vdk
vwrite t.vdk $MIB 16 4096 34
qsame() {	# qsame VDK QCOW2: both read the same (qemu-img is the oracle)
	rm -f q.raw v.raw
	qemu-img convert -O raw "$2" q.raw && "$VDISK" convert -O raw "$1" v.raw && cmp -s q.raw v.raw
}
ok "chain over a larger base reads as qemu's" qsame t.vdk top.qcow2
qemu-img resize -q top.qcow2 12M
ok "grow the top 3000000 -> 12M over an 8M base" vd resize t.vdk 12M
ok "  reads as qemu's after its resize (base hidden past the old end)" qsame t.vdk top.qcow2
ok "  check clean" check_clean t.vdk
qemu-img resize -q --shrink top.qcow2 1M
qemu-img resize -q top.qcow2 20M
vd resize --shrink t.vdk 1M
ok "shrink to 1M, grow to 20M" vd resize t.vdk 20M
ok "  reads as qemu's" qsame t.vdk top.qcow2
ok "  check clean" check_clean t.vdk
# QA1's chain: a middle layer smaller than the base, the top grown past both
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 2M
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top2.qcow2 4M
vd create -s 4M -b mid.qcow2 t2.vdk
qemu-img resize -q top2.qcow2 10M
ok "grow over a smaller middle layer" vd resize t2.vdk 10M
ok "  reads as qemu's" qsame t2.vdk top2.qcow2
# a native chain: the snapshot keeps its size
vd create -s 8M n.vdk
vwrite n.vdk 0 2048 4096 0x33
ok "snapshot s1 of the 8M disk" vd snapshot create n.vdk s1
ok "shrink the top to 2M" vd resize --shrink n.vdk 2M
ok "grow the top to 16M" vd resize n.vdk 16M
mkraw nexp.raw 16M ""
owrite nexp.raw 0 512 4096 0x33
ok "the top: 2M of data, zeroes after (s1's data hidden)" same_as n.vdk nexp.raw
"$VDISK" info --json n.vdk >sl.json
ok_eq "$(json_eval sl.json '$j->[1]{"virtual-size"}')" $((8 * MIB)) "snapshot s1 keeps 8M"
ok_eq "$(json_eval sl.json '$j->[0]{"virtual-size"}')" $((16 * MIB)) "the top has 16M"
ok "check clean (both layers)" check_clean n.vdk
run_rc rc "$VDISK" resize n@s1.vdk 32M
ok_eq "$rc" 1 "a frozen snapshot file refused"
ok "  says why" grep -q "frozen snapshot" err

# ---- formats, locks, encryption -------------------------------------------------

run_rc rc "$VDISK" resize top.qcow2 30M
ok_eq "$rc" 1 "qcow2 refused"
ok "  points to qemu-img resize" grep -q "use qemu-img resize for qcow2" err
truncate -s 1M r.raw
ok "raw: grow (ftruncate)" vd resize -f raw r.raw 3M
ok_eq "$(stat -c %s r.raw)" $((3 * MIB)) "  file is 3M"
run_rc rc "$VDISK" resize -f raw r.raw 2M
ok_eq "$rc" 1 "raw: shrink without --shrink refused"
ok "raw: --shrink" vd resize -f raw --shrink r.raw 2M
ok_eq "$(stat -c %s r.raw)" $((2 * MIB)) "  file is 2M"
# a writer holds the image (as a vdiskfs mount does): "in use"
flock -x d.vdk sleep 30 &
lockpid=$!
sleep 0.3
run_rc rc "$VDISK" resize d.vdk 2G
kill $lockpid 2>/dev/null
wait $lockpid 2>/dev/null
ok_eq "$rc" 1 "an image in use is refused"
ok "  says so" grep -q "in use" err
printf 'resize passphrase\n' >key
ok "encrypted: create" vd --key-file key create --encrypt --pwhash-ops 1 --pwhash-mem 8K -s 4M e.vdk
vwrite_e() { "$VDISK" --key-file key bench -q -w -c "$3" -s "$4" -S "$4" -o "$2" -d 1 --pattern "$5" "$1"; }
ok "encrypted: write" vwrite_e e.vdk 0 256 4096 0x44
run_rc rc "$VDISK" resize e.vdk 8M </dev/null
ok_eq "$rc" 1 "encrypted: resize without the key refused (the header is authenticated)"
ok "encrypted: grow with the key" vd --key-file key resize e.vdk 64M
ok "encrypted: shrink with the key" vd --key-file key resize --shrink e.vdk 2M
ok_eq "$("$VDISK" --key-file key info --json e.vdk | json_eval /dev/stdin '$j->[0]{"virtual-size"}')" $((2 * MIB)) "encrypted: info 2M"
mkraw eexp.raw 2M ""
owrite eexp.raw 0 256 4096 0x44
rm -f ee.raw
ok "encrypted: content kept" sh -c "'$VDISK' --key-file key convert -O raw e.vdk ee.raw && cmp -s ee.raw eexp.raw"
ok "encrypted: check clean" sh -c "'$VDISK' --key-file key check e.vdk >/dev/null"

# ---- crashes: SIGKILL at each write / sync of a resize -------------------------
# strace stops the process at the Nth call, for N = 1, 2, ... until the resize
# runs through; each time the image must open with the old size and content or
# the new one, and check clean.
crash_loop() {	# crash_loop NAME IMG ORIG NEWSIZE OLDRAW NEWRAW [--shrink]
	_name=$1 _img=$2 _orig=$3 _new=$4 _old=$5 _newraw=$6
	shift 6
	_bad=0 _n=0 _olds=0 _news=0
	for call in pwrite64 fdatasync fallocate; do
		_k=1
		while [ $_k -le 40 ]; do
			cp "$_orig" "$_img"
			# (LeakSanitizer cannot run under ptrace: leaks are looked for elsewhere)
			ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
				strace -f -o /dev/null -e trace=$call -e inject=$call:signal=KILL:when=$_k \
				"$VDISK" resize "$@" "$_img" "$_new" >/dev/null 2>&1
			_rc=$?
			_n=$((_n + 1))
			rm -f "$T/.cr.raw"
			if ! "$VDISK" convert -O raw "$_img" "$T/.cr.raw" 2>/dev/null ||
				! check_clean "$_img"; then
				diag "$_name: $call #$_k: does not open or check clean"
				_bad=$((_bad + 1))
			elif cmp -s "$T/.cr.raw" "$_old"; then
				_olds=$((_olds + 1))
			elif cmp -s "$T/.cr.raw" "$_newraw"; then
				_news=$((_news + 1))
			else
				diag "$_name: $call #$_k: neither the old nor the new content"
				_bad=$((_bad + 1))
			fi
			[ $_rc -eq 0 ] && break
			_k=$((_k + 1))
		done
	done
	diag "$_name: $_n runs, $_olds old, $_news new"
	[ $_bad -eq 0 ] && [ $_olds -gt 0 ] && [ $_news -gt 0 ] && [ $_n -lt 120 ]
}
# grow over a larger base (ZERO entries hide it, tree one level deeper)
vd create -s 3000000 -b base.qcow2 c.vdk
vwrite c.vdk 0 300 4096 0x66
cp c.vdk c0.vdk
"$VDISK" convert -O raw c0.vdk c-old.raw
vd resize c.vdk 200M
"$VDISK" convert -O raw c.vdk c-new.raw
ok "crash during a grow over a larger base: old or new, never torn" \
	crash_loop grow c.vdk c0.vdk 200M c-old.raw c-new.raw
# shrink across tree levels, partial last block
vd create -s 2G s.vdk
vwrite s.vdk 0 64 4096 0x12
vwrite s.vdk $((1536 * MIB)) 64 4096 0x13
cp s.vdk s0.vdk
"$VDISK" convert -O raw s0.vdk s-old.raw
vd resize --shrink s.vdk 130560
"$VDISK" convert -O raw s.vdk s-new.raw
ok "crash during a shrink: old or new, never torn" \
	crash_loop shrink s.vdk s0.vdk 130560 s-old.raw s-new.raw --shrink

# ---- 2. online grow through a vdiskfs mount ------------------------------------

M=$T/mnt
FIO="fio --output=$T/fio.out --minimal --verify_fatal=1 --verify_state_save=0"
vd create -s 64M f.vdk
ok "mount" fs_mount f.vdk "$M"
ok "sgdisk: a GPT partition" sh -c "sgdisk -n1:2048:+16M '$M/disk' >/dev/null"
ok "partitions/p1" test -e "$M/partitions/p1"
ok "snapshot before the grow" mkdir "$M/snapshots/before"
ok "fill the last MiB" sh -c "dd if=/dev/urandom of='$T/tail' bs=1M count=1 status=none &&
	dd if='$T/tail' of='$M/disk' bs=1M seek=63 conv=notrunc,fsync status=none"
# a reader and a writer (fio --verify) keep going while the disk grows under them
$FIO --name=bg --filename="$M/disk" --rw=randrw --bs=4k --offset=20M --size=16M --time_based \
	--runtime=4 --ioengine=psync --verify=crc32c --randseed=3 >/dev/null 2>&1 &
fiopid=$!
grow_fd() {	# grow_fd FILE SIZE: fstat of an fd opened before `truncate -s SIZE` has SIZE
	perl -e 'open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!";
		system("truncate", "-s", $ARGV[1], $ARGV[0]) == 0 or die "truncate failed";
		my $n = (stat($f))[7]; sysseek($f, 0, 2) == $ARGV[1] or die "seek end: $n";
		$n == $ARGV[1] or die "fstat says $n"' "$1" "$2"
}
ok "truncate -s 96M: an open fd sees the new size at once" grow_fd "$M/disk" $((96 * MIB))
ok "ftruncate to 112M through the open fd" \
	perl -e 'open(my $f, "+<", $ARGV[0]) or die; truncate($f, $ARGV[1]) or die "$!";
		(stat($f))[7] == $ARGV[1] or die' "$M/disk" $((112 * MIB))
ok "truncate -s 128M" truncate -s 128M "$M/disk"
ok "fio randrw --verify ran through the grows" wait $fiopid
ok_eq "$(stat -c %s "$M/disk")" $((128 * MIB)) "st_size 128M"
ok "the old last MiB is intact" sh -c "cmp -s -n $MIB -i $((63 * MIB)):0 '$M/disk' '$T/tail'"
ok "the new range reads as zeroes" sh -c "cmp -s -n $((64 * MIB)) -i $((64 * MIB)):0 '$M/disk' /dev/zero"
ok "fio write --verify across the old end (48M..112M)" $FIO --name=x --filename="$M/disk" \
	--rw=write --bs=64k --offset=48M --size=64M --verify=md5
ok "fio O_DIRECT randwrite --verify past the old end" $FIO --name=d --filename="$M/disk" \
	--rw=randwrite --bs=4k --offset=100M --size=8M --direct=1 --ioengine=psync --verify=crc32c
run_rc rc truncate -s 100M "$M/disk"
ok_eq "$rc" 1 "shrinking the mounted disk refused"
ok "  with EPERM" grep -q "Operation not permitted" "$T/err"
run_rc rc truncate -s $((200 * MIB + 100)) "$M/disk"
ok_eq "$rc" 1 "a size not a multiple of 512 refused"
ok_eq "$(stat -c %s "$M/disk")" $((128 * MIB)) "  size unchanged"
run_rc rc "$VDISK" resize f.vdk 1G
ok_eq "$rc" 1 "vdisk resize of the mounted image refused"
ok "  in use" grep -q "in use" "$T/err"
ok "partitions/p1 still there (16M)" sh -c "[ \$(stat -c %s '$M/partitions/p1') -eq $((16 * MIB)) ]"
ok "sgdisk -e moves the backup GPT to the new end" sh -c "sgdisk -e '$M/disk' >/dev/null 2>&1"
ok "sgdisk: a second partition in the grown space" sh -c "sgdisk -n2:0:+40M '$M/disk' >/dev/null"
ok "partitions/p2 (40M)" sh -c "[ \$(stat -c %s '$M/partitions/p2') -eq $((40 * MIB)) ]"
ok "snapshot after the grow" mkdir "$M/snapshots/after"
ok_eq "$(stat -c %s "$M/snapshots/before/disk")" $((64 * MIB)) "the older snapshot keeps 64M"
ok_eq "$(stat -c %s "$M/snapshots/after/disk")" $((128 * MIB)) "the new snapshot has 128M"
ok "unmount" fs_umount "$M"
ok_eq "$(info_size f.vdk)" $((128 * MIB)) "vdisk info: 128M"
ok_eq "$("$VDISK" snapshot list f.vdk | awk 'NR > 1 { printf "%s ", $2 }')" "before after " \
	"vdisk snapshot list: before after"
ok "vdisk check clean (three layers)" check_clean f.vdk
# writethrough mode: the daemon, not the kernel, owns the size
ok "mount -o writethrough" fs_mount f.vdk "$M" -o writethrough
ok "truncate -s 160M (writethrough): open fd sees it" grow_fd "$M/disk" $((160 * MIB))
ok "write the last block" sh -c "dd if='$T/tail' of='$M/disk' bs=4k count=1 seek=$((160 * 256 - 1)) conv=notrunc,fsync status=none"
ok "unmount" fs_umount "$M"
ok_eq "$(info_size f.vdk)" $((160 * MIB)) "vdisk info: 160M"
ok "check clean" check_clean f.vdk
# a foreign image cannot grow: EPERM, and the mount goes on
qemu-img create -q -f qcow2 fq.qcow2 8M
ok "mount a qcow2 image" fs_mount fq.qcow2 "$M"
run_rc rc truncate -s 16M "$M/disk"
ok_eq "$rc" 1 "qcow2: grow refused"
ok "unmount" fs_umount "$M"

# ---- 3. vdisk-target: a LUN whose file grew ---------------------------------------

PEER_CDB() {
	perl "$SRCDIR/tools/target/iscsi-peer.pl" 127.0.0.1 "$P1" "$IQN" cdb "$@"
}
RC16=9e100000000000000000000000200000
TUR=000000000000
UA="2 sense 700006000000000a000000002a0900000000"
P1=$(free_port)
head -c 16M /dev/urandom >"$T/lun"
ok "target on a 16 MiB file in $T" start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$T/lun"
# two sessions (two I_T nexus): READ CAPACITY, wait for the grow, TUR, TUR, READ CAPACITY
rm -f "$T/go"
PEER_CDB 32 $RC16 "p:$T/go" - 0 $TUR 0 $TUR 32 $RC16 >"$T/sess.a" 2>&1 &
pa=$!
PEER_CDB 32 $RC16 "p:$T/go" - 0 $TUR 0 $TUR 32 $RC16 >"$T/sess.b" 2>&1 &
pb=$!
sleep 1
truncate -s 32M "$T/lun"
sleep 3	# the target looks once a second
touch "$T/go"
wait $pa $pb
for s in a b; do
	sed 's/^/# /' "$T/sess.$s" | cut -c1-60
	ok_eq "$(sed -n 1p "$T/sess.$s" | cut -c1-18)" "0 0000000000007fff" "session $s: 16 MiB before"
	ok_eq "$(sed -n 2p "$T/sess.$s")" "$UA" "session $s: UNIT ATTENTION, CAPACITY DATA HAS CHANGED"
	ok_eq "$(sed -n 3p "$T/sess.$s")" "0 " "session $s: ... once (the next TUR is GOOD)"
	ok_eq "$(sed -n 4p "$T/sess.$s" | cut -c1-18)" "0 000000000000ffff" "session $s: READ CAPACITY(16): 32 MiB"
done
ok "iscsi-readcapacity16: 33554432 bytes" sh -c \
	"iscsi-readcapacity16 '$(lun_url 127.0.0.1 "$P1" 0)' | grep -q 'Total size:33554432'"
ok "stop the target" stop_target

# a vdiskfs disk grown with truncate, exported: qemu-img over iscsi:// sees it
vd create -s 32M g.vdk
ok "mount g.vdk" fs_mount g.vdk "$M"
P1=$(free_port)
ok "export MOUNT/disk" start_target --iqn "$IQN" --portal "127.0.0.1:$P1" --lun "0=$M/disk"
U0=$(lun_url 127.0.0.1 "$P1" 0)
ok_eq "$(qemu-img info --output=json -f raw "$U0" | json_eval /dev/stdin '$j->{"virtual-size"}')" \
	$((32 * MIB)) "qemu-img info iscsi://: 32 MiB"
ok "iscsi-inq works" sh -c "iscsi-inq '$U0' >/dev/null"
ok "truncate -s 48M MOUNT/disk" truncate -s 48M "$M/disk"
sleep 3
ok_eq "$(qemu-img info --output=json -f raw "$U0" | json_eval /dev/stdin '$j->{"virtual-size"}')" \
	$((48 * MIB)) "qemu-img info iscsi://: 48 MiB"
randfile "$T/x" $MIB 21
ok "qemu-io: write 1 MiB across the old end through iSCSI" \
	sh -c "qemu-io -f raw -c 'write -s $T/x 31M 1M' -c flush '$U0' >/dev/null"
ok "the mounted disk has it" sh -c "cmp -s -n $MIB -i $((31 * MIB)):0 '$M/disk' '$T/x'"
ok "stop the target" stop_target
ok "unmount" fs_umount "$M"
ok "vdisk check clean" check_clean g.vdk

done_testing
