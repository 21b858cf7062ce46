#!/bin/sh
# SPDX-License-Identifier: MIT
# vdisk's command line: help and version, usage errors, and the error format
# "vdisk: FILE: message" with a non-zero status (never a crash) for bad sizes,
# block sizes, missing files, missing backing files, garbage and absurd input.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1

run_rc rc "$VDISK"
ok "no arguments: exit 1 and the usage on stderr" test "$rc" -eq 1 -a -s "$T/err"
run_rc rc "$VDISK" --help
ok_eq "$rc" 0 "--help"
cp "$T/out" help.txt
for c in create info check convert resize map snapshot diff bench key; do
	ok "--help lists $c" grep -q "^  $c " help.txt
	run_rc rc "$VDISK" "$c" --help
	ok "$c --help: exit 0 and its usage" sh -c "[ $rc -eq 0 ] && grep -q '^Usage: vdisk $c' '$T/out'"
done
ok "--help mentions --key-file" grep -q -- "--key-file FILE" help.txt
ok_eq "$("$VDISK" --version | sed 's/[0-9][0-9.]*$/X/')" "vdisk version X" "--version"
run_rc rc "$VDISK" frobnicate
ok "unknown command: exit 1" sh -c "[ $rc -eq 1 ] && grep -q \"unknown command 'frobnicate'\" '$T/err'"
run_rc rc "$VDISK" info --bogus x
ok "unknown option: exit 1" test "$rc" -eq 1

# create
run_rc rc "$VDISK" create n.vdk
ok "create without size or backing refused" sh -c "[ $rc -eq 1 ] && [ ! -e n.vdk ]"
for s in 0 1X -5 12.5G 99999999999999999999 17E; do
	run_rc rc "$VDISK" create -s "$s" n.vdk
	ok "create -s '$s' refused" sh -c "[ $rc -eq 1 ] && [ ! -e n.vdk ]"
done
run_rc rc "$VDISK" create -s 65T n.vdk
ok "create above 64 TiB refused" sh -c "[ $rc -eq 1 ] && [ ! -e n.vdk ]"
ok "  'vdisk: n.vdk: ...'" grep -q "^vdisk: n.vdk: size 65T is above the limit of 64 TiB" "$T/err"
for b in 0 1000 2048 3000 2M 65537; do
	run_rc rc "$VDISK" create -s 1M --block-size "$b" n.vdk
	ok "--block-size $b refused" sh -c "[ $rc -eq 1 ] && [ ! -e n.vdk ]"
done
for b in 4K 64K 1M; do
	rm -f "b$b.vdk"
	"$VDISK" create -s 8M --block-size "$b" "b$b.vdk" && "$VDISK" info --json "b$b.vdk" >i.json
	ok "--block-size $b accepted" test "$(json_eval i.json '$j->[0]{"block-size"}')" = \
		"$(numfmt --from=iec "$b")"
done
ok "create 64 TiB" vd create -s 64T huge.vdk
"$VDISK" info --json huge.vdk >h.json
ok_eq "$(json_eval h.json '$j->[0]{"virtual-size"}')" 70368744177664 "  virtual size 64 TiB"
ok "  a 64 TiB image is small on the host" test "$(stat -c %s huge.vdk)" -lt $((64 * 1048576))
ok "  last byte readable" vd bench -q -c 1 -s 4096 -o $((70368744177664 - 4096)) huge.vdk
run_rc rc "$VDISK" create -s 1M huge.vdk
ok "create over an existing file refused" sh -c "[ $rc -eq 1 ] && grep -q '^vdisk: huge.vdk: ' '$T/err'"
ok "  and the file is untouched" test "$(json_eval h.json '$j->[0]{"virtual-size"}')" = \
	"$("$VDISK" info --json huge.vdk | perl -MJSON::PP -e 'local $/; print decode_json(<STDIN>)->[0]{"virtual-size"}')"
run_rc rc "$VDISK" create -b nonexistent.vdk ov.vdk
ok "missing backing refused" sh -c "[ $rc -eq 1 ] && [ ! -e ov.vdk ] && grep -q nonexistent.vdk '$T/err'"
run_rc rc "$VDISK" create -s 1M -F raw n.vdk
ok "-F without -b refused" test "$rc" -eq 1
run_rc rc "$VDISK" create -s 1M --cipher aes256gcm n.vdk
ok "--cipher without --encrypt refused" test "$rc" -eq 1
run_rc rc "$VDISK" create -s 1M --encrypt --cipher rot13 n.vdk
ok "unknown cipher refused" sh -c "[ $rc -eq 1 ] && grep -q rot13 '$T/err'"
run_rc rc "$VDISK" create -s 1M a.vdk b.vdk
ok "two files refused" test "$rc" -eq 1

# A raw backing is never guessed: it needs -F raw.
truncate -s 4M base.raw
run_rc rc "$VDISK" create -b base.raw ov.vdk
ok "raw backing without -F refused (no raw probing)" sh -c "[ $rc -eq 1 ] && [ ! -e ov.vdk ]"
ok "raw backing with -F raw" vd create -b base.raw -F raw ov.vdk
"$VDISK" info --json ov.vdk >ov.json
ok_eq "$(json_eval ov.json '$j->[0]{"virtual-size"}')" 4194304 "overlay takes the backing's size"
ok_eq "$(json_eval ov.json '$j->[1]{format}')" raw "backing layer is raw"

# A chain moves as a folder: relative backing paths.
mkdir sub && "$VDISK" create -s 4M sub/b.vdk && (cd sub && "$VDISK" create -b b.vdk t.vdk)
mv sub moved
ok "chain opens after its folder moved" vd info moved/t.vdk
rm moved/b.vdk
run_rc rc "$VDISK" info moved/t.vdk
ok "missing backing at open: exit 1" test "$rc" -eq 1
ok "  the message names the backing file" grep -q "b.vdk" "$T/err"

# Garbage and empty files, and paths that are not files.
head -c 100000 /dev/urandom >garbage.img
: >empty.img
for f in empty.img . /dev/null; do
	run_rc rc "$VDISK" info "$f"
	ok "info '$f': no crash ($rc)" no_crash "$rc"
done
run_rc rc "$VDISK" info nonexistent.vdk
ok_eq "$rc" 1 "missing file: exit 1"
ok "  'vdisk: nonexistent.vdk: ...'" grep -q "^vdisk: nonexistent.vdk: " "$T/err"
printf 'VDK' >short.vdk
run_rc rc "$VDISK" info -- short.vdk
ok "3-byte file: no crash ($rc)" no_crash "$rc"
# Not a disk: a FIFO (the open must not block waiting for a writer), a character device.
mkfifo fifo
run_rc rc timeout 10 "$VDISK" info fifo
ok "a FIFO is refused at once" sh -c "[ $rc -eq 1 ] && grep -q '^vdisk: fifo: not a disk image' '$T/err'"
run_rc rc timeout 10 "$VDISK" convert -O raw fifo out.raw
ok "  also as a convert source" sh -c "[ $rc -eq 1 ] && [ ! -e out.raw ]"
run_rc rc "$VDISK" info /dev/zero
ok "a character device is refused" sh -c "[ $rc -eq 1 ] && grep -q 'not a disk image' '$T/err'"
run_rc rc "$VDISK" info .
ok "a directory is refused" sh -c "[ $rc -eq 1 ] && grep -q 'is a directory' '$T/err'"

# convert must never write over what it reads: IN itself (under another spelling) or a backing file.
vd create -s 1M sf.vdk >/dev/null
vd bench -q -w --pattern 0x77 -c 16 -s 64K sf.vdk
vd convert -O raw sf.vdk sf.raw
vd create -b sf.raw -F raw sfo.vdk >/dev/null
sum_before=$(md5sum <sf.raw)
run_rc rc "$VDISK" convert -O raw sf.raw ./sf.raw
ok "convert IN onto itself (./IN) refused" sh -c "[ $rc -eq 1 ] && grep -q 'would be overwritten' '$T/err'"
run_rc rc "$VDISK" convert -O raw sfo.vdk "$T/sf.raw"
ok "convert onto a backing file of IN refused" sh -c "[ $rc -eq 1 ] && grep -q 'backing files' '$T/err'"
ok_eq "$(md5sum <sf.raw)" "$sum_before" "  and the file is untouched"

# An image a writer has open (a real read-write vdiskfs mount) holds still for nobody:
# check and convert refuse it unless -U.
. "$SRCDIR/tests/fs-lib.sh"
fs_mount sf.vdk "$T/mnt"
run_rc rc "$VDISK" check sf.vdk
ok "check of a mounted image refused" sh -c "[ $rc -eq 1 ] && grep -q 'open for writing elsewhere' '$T/err'"
run_rc rc "$VDISK" check -U sf.vdk
ok "check -U goes on, with a warning" sh -c "[ $rc -eq 0 ] && grep -q 'warning' '$T/err'"
run_rc rc "$VDISK" convert sf.vdk cp.vdk
ok "convert of a mounted image refused" sh -c "[ $rc -eq 1 ] && [ ! -e cp.vdk ]"
run_rc rc "$VDISK" convert --force-share sf.vdk cp.vdk
ok "convert --force-share goes on" test "$rc" -eq 0
ok "info works on a mounted image" vd info sf.vdk
ok "unmount" fs_umount "$T/mnt"
ok "check after unmount" vd check sf.vdk

run_rc rc "$VDISK" --key-file
ok "--key-file without an argument refused" test "$rc" -eq 1
run_rc rc "$VDISK" --key-fd x info huge.vdk
ok "--key-fd x refused" test "$rc" -eq 1
done_testing
