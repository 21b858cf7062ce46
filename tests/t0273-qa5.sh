#!/bin/sh
# SPDX-License-Identifier: MIT
# Fifth QA pass (branch qa5). Fixed here, each check failing on the old
# binaries: `kill -9` (or a power cut) during `vdisk convert` left an OUT that
# looked finished (a vdk that `vdisk check` called clean and that read as
# zeroes, a full-size raw file with holes) — OUT is now written under a hidden
# temporary name and renamed at the end; a signal during the extent walk of a
# huge hole waited for the walk to end; `vdiskfs -f raw IMAGE MNT` said only
# "too many arguments"; and vdisk-target's findings (see the sections below).
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

# dflt CMD...: run CMD with SIGINT/SIGQUIT at their defaults (a background job
# of a non-interactive shell ignores them, a terminal's Ctrl-C does not).
dflt() {
	exec perl -e '$SIG{INT} = "DEFAULT"; $SIG{QUIT} = "DEFAULT"; exec @ARGV or die "$ARGV[0]: $!"' "$@"
}

# tmp_of OUT: convert's temporary file for OUT (.OUT.vdisk-XXXXXX), if there is one.
tmp_of() {
	for _f in ".$1.vdisk-"??????; do
		[ -e "$_f" ] && echo "$_f" && return 0
	done
	return 1
}

# wait_tmp OUT BYTES: wait (up to ~30 s) until OUT's temporary file (or OUT
# itself, as the old binaries wrote it) holds BYTES more on the host than at the start.
wait_tmp() {
	_b0=0
	[ -e "$1" ] && _b0=$(($(stat -c %b "$1") * 512))
	for _i in $(seq 3000); do
		_f=$(tmp_of "$1") && [ $(($(stat -c %b "$_f") * 512)) -ge "$2" ] && return 0
		[ -e "$1" ] && [ $(($(stat -c %b "$1") * 512 - _b0)) -ge "$2" ] && return 0
		sleep 0.01
	done
	return 1
}

# ---- 1. kill -9 of `vdisk convert`: OUT never looks finished.
head -c 256M /dev/zero | tr '\0' 'x' >in.raw
for ofmt in vdk raw; do
	rm -f "out.$ofmt" ".out.$ofmt.vdisk-"*
	"$VDISK" convert -O $ofmt -f raw in.raw "out.$ofmt" 2>conv.err &
	cp=$!
	wait_tmp "out.$ofmt" 4194304
	kill -9 $cp
	wait $cp 2>/dev/null
	ok "convert -O $ofmt, kill -9 mid-copy: no OUT (was: a plausible one)" test ! -e "out.$ofmt"
	ok "  the partial copy is the hidden .out.$ofmt.vdisk-XXXXXX" sh -c "ls -a | grep -q '^\.out\.$ofmt\.vdisk-'"
	ok "convert -O $ofmt again after it: works" "$VDISK" convert -O $ofmt -f raw in.raw "out.$ofmt"
	ok "  no temporary file of its own left" sh -c "[ \$(ls -a | grep -c '^\\.out\\.$ofmt\\.vdisk-') -eq 1 ]"
	rm -f ".out.$ofmt.vdisk-"*
done
ok "the raw copy is IN" cmp -s in.raw out.raw
"$VDISK" convert -O raw out.vdk check.raw
ok "the vdk copy reads back as IN" cmp -s in.raw check.raw
rm -f check.raw
# An existing raw OUT being replaced: a kill -9 leaves the old file whole.
head -c 1M /dev/zero | tr '\0' 'o' >old.raw
cp old.raw out.raw
chmod 600 out.raw
"$VDISK" convert -O raw -f raw in.raw out.raw 2>conv.err &
cp=$!
wait_tmp out.raw 4194304
kill -9 $cp
wait $cp 2>/dev/null
ok "kill -9 while replacing a raw OUT: the old OUT is left as it was" cmp -s old.raw out.raw
rm -f .out.raw.vdisk-*
ok "replacing a raw OUT" "$VDISK" convert -O raw -f raw in.raw out.raw
ok "  gives the copy" cmp -s in.raw out.raw
ok_eq "$(stat -c %a out.raw)" 600 "  and keeps the old OUT's mode"
ok_eq "$(ls -a | grep -c 'vdisk-')" 0 "  no temporary file left"
# SIGINT: the temporary file is removed, OUT never created.
rm -f out.vdk
dflt "$VDISK" convert -O vdk -f raw in.raw out.vdk 2>conv.err &
cp=$!
wait_tmp out.vdk 4194304
kill -INT $cp
wait $cp
rc=$?
ok_eq "$rc" 130 "SIGINT mid-copy: status 130"
ok "  no OUT, no temporary file" sh -c '[ ! -e out.vdk ] && [ $(ls -a | grep -c vdisk-) -eq 0 ]'
# Hard-linked and symlinked OUTs are written in place (their other names see the copy).
rm -f out.raw
cp old.raw out.raw
ln out.raw hard.raw
ln -s out.raw sym.raw
ok "a hard-linked raw OUT" "$VDISK" convert -O raw -f raw in.raw out.raw
ok "  is written in place (its other name is the copy)" cmp -s in.raw hard.raw
cp old.raw out.raw
ok "a symlink OUT" "$VDISK" convert -O raw -f raw in.raw sym.raw
ok "  is written through (the link stays a link)" sh -c 'test -L sym.raw && cmp -s in.raw out.raw'
ok "a vdk OUT in a missing folder: refused" sh -c \
	'"$VDISK" convert -O vdk -f raw old.raw nodir/x.vdk 2>err; [ $? -eq 1 ] && grep -q "nodir/x.vdk: cannot create: No such file" err'
: >out.vdk
ok "an existing vdk OUT: still refused" sh -c \
	'"$VDISK" convert -O vdk -f raw old.raw out.vdk 2>err; [ $? -eq 1 ] && grep -q "out.vdk: exists" err'
rm -f in.raw out.raw hard.raw sym.raw out.vdk old.raw

# ---- 2. A signal during the extent walk of a huge hole (one extent, no callback yet).
# The walk of an empty 64 TiB image takes seconds; it used to end before the signal was seen.
"$VDISK" create -s 64T e.vdk >/dev/null
t0=$(date +%s%N)
"$VDISK" convert -O raw e.vdk e.raw
full=$((($(date +%s%N) - t0) / 1000000))
rm -f e.raw
dflt "$VDISK" convert -O raw e.vdk e.raw 2>conv.err &
cp=$!
for _i in $(seq 100); do tmp_of e.raw >/dev/null && break; sleep 0.01; done
t0=$(date +%s%N)
kill -INT $cp
wait $cp
rc=$?
stop=$((($(date +%s%N) - t0) / 1000000))
diag "64 TiB hole: whole convert ${full} ms, stopped ${stop} ms after SIGINT"
ok_eq "$rc" 130 "SIGINT during the walk of a 64 TiB hole: status 130"
ok "  it stops within a third of the whole convert's time (was: after the walk)" \
	test $((stop * 3)) -lt "$full"
ok "  no OUT, no temporary file" sh -c '[ ! -e e.raw ] && [ $(ls -a | grep -c vdisk-) -eq 0 ]'
rm -f e.vdk

# ---- 3. `vdiskfs -f raw IMAGE MNT`: -f is FUSE's foreground flag; say so.
"$VDISK" create -s 1M f.vdk >/dev/null
mkdir mnt
"$VDISKFS" -f raw f.vdk mnt 2>fs.err
rc=$?
ok "vdiskfs -f raw IMAGE MNT: refused" test "$rc" -ne 0
ok "  saying -f is foreground and the format is --format raw" \
	sh -c 'grep -q "foreground" fs.err && grep -q -- "--format raw" fs.err'
ok "  not mounted" sh -c '! grep -q " $T/mnt " /proc/mounts'


# ---- 4. vdisk-target: config mistakes that were accepted or explained wrongly.
. "$SRCDIR/tools/target/test-lib.sh"
truncate -s 16M lun.raw
P1=$(free_port)
# tgt ARGS...: run the target in the foreground (at most 5 s: a wrongly accepted
# configuration serves); its status, output in tgt.out.
tgt() {
	timeout 5 "$TARGET" -f "$@" >tgt.out 2>&1
}
for name in iqn.2026.example iqn.2026-13.org.example:x iqn.2026-11. eui.0123 naa.0123456789abcdef0; do
	printf '[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\n' "$name" "$P1" "$T/lun.raw" >bad.conf
	tgt --config bad.conf
	ok "target name '$name' (not RFC 7143's iqn./eui./naa. form): exit 2 (was: served)" \
		sh -c "[ $? -eq 2 ] && grep -q 'bad target name' tgt.out"
done
"$TARGET" -f -q --iqn eui.0123456789ABCDEF --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw" &
GP=$!
ok "eui. with 16 hex digits is a good name" wait_port 127.0.0.1 $P1
kill $GP
wait $GP
LONG=$(head -c 300 /dev/zero | tr '\0' k)
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw" --chap "alice:$LONG"
ok "a 300-character CHAP secret: exit 2 saying the limit (was: 'want USER:SECRET')" \
	sh -c "[ $? -eq 2 ] && grep -q 'secret longer than 255' tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw,serial=$(head -c 50 /dev/zero | tr '\0' s)"
ok "a 50-character serial=: exit 2 saying the limit (was: 'unknown LUN option')" \
	sh -c "[ $? -eq 2 ] && grep -q 'serial= wants 1 to 39' tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw,pbsize=4096k"
ok "pbsize=4096k: exit 2 (was: taken as 4096)" sh -c "[ $? -eq 2 ] && grep -q pbsize tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw" --workers 4x
ok "--workers 4x: exit 2 (was: taken as 4)" sh -c "[ $? -eq 2 ] && grep -q workers tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw" --workers 4294967297
ok "--workers 2^32+1: exit 2 (was: wrapped to 1 and taken)" \
	sh -c "[ $? -eq 2 ] && grep -q 'workers must be 1..64' tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:${P1}x --lun 0="$T/lun.raw"
ok "a portal port with junk after it: exit 2 (was: the number before it)" \
	sh -c "[ $? -eq 2 ] && grep -q 'bad portal' tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1,1 --portal 127.0.0.1:$P1,2 --lun 0="$T/lun.raw"
ok "one ADDR:PORT in two portal groups: exit 2 (was: discovery listed TPGT 2, logins got 1)" \
	sh -c "[ $? -eq 2 ] && grep -q 'given twice' tgt.out"
tgt --iqn $IQN --portal 127.0.0.1:$P1 --lun 0="$T/lun.raw" --chap alice:secret-one-1234 \
	--chap bob:secret-two-12345
ok "--chap twice: exit 2 (was: the last one silently)" sh -c "[ $? -eq 2 ] && grep -q 'given twice' tgt.out"
printf '[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\nmutual-chap = t:secret-one-1234\nmutual-chap = u:secret-two-12345\nchap = a:secret-three-123\n' \
	"$IQN" "$P1" "$T/lun.raw" >bad.conf
tgt --config bad.conf
ok "mutual-chap twice in a section: exit 2, the line named" \
	sh -c "[ $? -eq 2 ] && grep -q \"bad.conf:5: 'mutual-chap' given twice\" tgt.out"
printf '[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\nalias = %s\n' "$IQN" "$P1" "$T/lun.raw" "$LONG" >bad.conf
tgt --config bad.conf
ok "an alias of 300 characters: exit 2 (was: cut to 63)" sh -c "[ $? -eq 2 ] && grep -q 'alias longer than 63' tgt.out"
tgt --iqn $IQN --portal ::1 --lun 0="$T/lun.raw"
ok "an IPv6 portal without brackets: exit 2, saying how to write it" \
	sh -c "[ $? -eq 2 ] && grep -q 'written \[ADDR\]:PORT' tgt.out"

# A reload whose new portal cannot listen fails as a whole: it must not leave
# the new portals before it listening.
perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0,ReuseAddr=>1) or die; open F,">held.port"; print F $s->sockport; close F; sleep 60' &
HOLD=$!
cleanup_fn kill $HOLD
for _i in $(seq 50); do [ -s held.port ] && break; sleep 0.1; done
PH=$(cat held.port)
PN=$(free_port)
printf 'pidfile = %s/t1.pid\n[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\n' "$T" "$IQN" "$P1" "$T/lun.raw" >r.conf
start_target --config "$T/r.conf"
printf '[target iqn.2026-11.org.example:two]\nportal = 127.0.0.1:%s\nportal = 127.0.0.1:%s\nlun 0 = %s\n' \
	"$PN" "$PH" "$T/lun.raw" >>r.conf
kill -HUP $TPID
for _i in $(seq 50); do grep -q "reload failed" target.log && break; sleep 0.1; done
ok "a reload with a portal in use fails" grep -q "reload failed" target.log
ok "  and listens on none of its new portals (was: the one before it)" \
	sh -c "! perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr=>\"127.0.0.1\",PeerPort=>$PN) or exit 1'"
ok "  the running target still serves" sh -c "iscsi-inq '$(lun_url 127.0.0.1 $P1 0)' >/dev/null"
# pidfile and workers are read once: a reload that changes them says so.
printf 'pidfile = %s/t2.pid\n[target %s]\nportal = 127.0.0.1:%s\nlun 0 = %s\n' "$T" "$IQN" "$P1" "$T/lun.raw" >r.conf
: >target.log
kill -HUP $TPID
for _i in $(seq 50); do grep -q "reloading" target.log && sleep 0.2 && break; sleep 0.1; done
ok "a reload that changes the pidfile says it takes effect at the next start (was: silent)" \
	grep -q "pidfile changed: it takes effect at the next start" target.log
ok "  the daemon still stops cleanly" stop_target

# A daemon (no -f) works in /: relative paths given at the start (the config
# file, LUN files, the pidfile) were looked for in / by a reload (and the
# pidfile was written there).
PN=$(free_port)
PIDN=qa5-t0273-$$.pid
printf 'pidfile = %s\n[target %s]\nportal = 127.0.0.1:%s\nlun 0 = lun.raw\n' "$PIDN" "$IQN" "$PN" >rel.conf
"$TARGET" --config rel.conf -q
wait_port 127.0.0.1 $PN
DP=$(cat "$PIDN" 2>/dev/null || cat "/$PIDN")
ok "a daemon with a relative pidfile writes it in the folder it started in (was: in /)" test -s "$PIDN"
truncate -s 8M lun2.raw
echo "lun 1 = lun2.raw" >>rel.conf
kill -HUP "$DP"
for _i in $(seq 30); do
	iscsi-ls -s "iscsi://127.0.0.1:$PN" 2>/dev/null | grep -q "^Lun:1" && break
	sleep 0.1
done
ok "  SIGHUP rereads the relative config and adds the relative LUN (was: not found in /)" \
	sh -c "iscsi-ls -s iscsi://127.0.0.1:$PN | grep -q '^Lun:1'"
kill "$DP"
for _i in $(seq 50); do kill -0 "$DP" 2>/dev/null || break; sleep 0.1; done
ok "  stops and removes its pidfile" sh -c "! kill -0 $DP 2>/dev/null && [ ! -e '$PIDN' ] && [ ! -e '/$PIDN' ]"

done_testing
