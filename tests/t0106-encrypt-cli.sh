#!/bin/sh
# SPDX-License-Identifier: MIT
# The CLI side of encrypted images: create --encrypt with --key-file and
# --key-fd, info without a passphrase (cipher and slot count), no terminal ->
# a clear error, wrong passphrase -> "wrong passphrase" and exit 1, convert
# --encrypt round trip with the plaintext nowhere in the file, key list / add
# / remove including last-slot protection, and snapshots and overlays that
# open with the same passphrase. Argon2id is set to its minimum to keep it fast.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cli-lib.sh"
cd "$T" || exit 1
fast="--pwhash-ops 1 --pwhash-mem 8K"

printf 'correct horse\n' >key1
printf 'battery staple\n' >key2
printf 'wrong one\n' >bad

# shellcheck disable=SC2086
ok "create --encrypt --key-file" vd --key-file key1 create --encrypt $fast -s 16M e.vdk
run_rc rc setsid -w "$VDISK" info e.vdk </dev/null
ok_eq "$rc" 0 "info without a passphrase and without a terminal"
ok "  says cipher and slots" grep -q "^encrypted: yes (xchacha20poly1305, 1 key slot)" "$T/out"

vwrite_k() {	# vwrite with a key file
	"$VDISK" --key-file "$1" bench -q -w -c "$4" -s "$5" -S "$5" -o "$3" -d 1 --pattern "$6" "$2"
}
# A recognisable plaintext: 64 KiB of 'VDISKPLAINTEXT!!' repeated.
perl -e 'print "VDISKPLAINTEXT!!" x 4096' >plain.bin
truncate -s 16M plain.raw
dd if=plain.bin of=plain.raw bs=64K seek=3 conv=notrunc status=none
cp plain.raw zeros.raw
ok "convert -O vdk --encrypt --key-file" vd --key-file key1 convert --encrypt $fast plain.raw ce.vdk
ok "the plaintext is nowhere in the encrypted file" sh -c "! grep -q 'VDISKPLAINTEXT!!' ce.vdk"
ok "it reads back with the key" sh -c "'$VDISK' --key-file key1 convert -O raw ce.vdk back.raw && cmp back.raw plain.raw"

run_rc rc "$VDISK" --key-file bad convert -O raw ce.vdk x.raw
ok_eq "$rc" 1 "wrong passphrase: exit 1"
ok "  'vdisk: ce.vdk: wrong passphrase'" grep -q "^vdisk: ce.vdk: wrong passphrase" "$T/err"
ok "  the passphrase is not in the message" sh -c "! grep -q 'wrong one' '$T/err'"
run_rc rc setsid -w "$VDISK" convert -O raw ce.vdk y.raw </dev/null
ok_eq "$rc" 1 "no key and no terminal: exit 1"
ok "  and the message says how to give one" grep -q -- "--key-file" "$T/err"
ok "--key-fd" sh -c "'$VDISK' --key-fd 3 check ce.vdk 3<key1 >/dev/null"
ok "--key-fd=N form" sh -c "'$VDISK' check --key-fd=4 ce.vdk 4<key1 >/dev/null"

# Key slots.
"$VDISK" key list --json ce.vdk >k.json
ok_eq "$(json_eval k.json '$j->{used}')" 1 "key list: one slot"
run_rc rc "$VDISK" --key-file key1 key add --new-key-file key2 $fast ce.vdk
ok_eq "$rc" 0 "key add"
ok "  prints the slot" grep -q "^added key slot [1-7]$" "$T/out"
ok "second passphrase opens it" vd --key-file key2 check ce.vdk
ok "first one still does" vd --key-file key1 check ce.vdk
run_rc rc "$VDISK" --key-file bad key add --new-key-file key2 ce.vdk
ok "key add with a wrong passphrase refused" test "$rc" -eq 1
ok "old and new passphrase on one fd (one per line)" \
	sh -c "printf 'battery staple\nthird key\n' | '$VDISK' --key-fd 0 key add --new-key-fd 0 $fast ce.vdk >/dev/null"
ok "  the third opens it" sh -c "printf 'third key\n' | '$VDISK' --key-fd 0 check ce.vdk >/dev/null"
ok "key remove slot 0" vd --key-file key2 key remove ce.vdk 0
run_rc rc "$VDISK" --key-file key1 check ce.vdk
ok "removed passphrase no longer opens it" test "$rc" -eq 1
"$VDISK" key list --json ce.vdk >k2.json
ok_eq "$(json_eval k2.json '$j->{used}')" 2 "two slots left"
slots=$(json_eval k2.json 'join " ", map { $_->{slot} } @{$j->{slots}}')
first=${slots%% *}
last=${slots##* }
"$VDISK" --key-file key2 key remove ce.vdk "$last" >/dev/null 2>&1 ||
	printf 'third key\n' | "$VDISK" --key-fd 0 key remove ce.vdk "$last"
run_rc rc "$VDISK" --key-file key2 key remove ce.vdk "$first"
ok "the last slot cannot be removed" test "$rc" -eq 1
run_rc rc "$VDISK" --key-file key2 key remove ce.vdk 9
ok "slot 9 refused" test "$rc" -eq 1

# Snapshots and overlays stay encrypted and open with the same passphrase.
ok "snapshot of an encrypted image" vd --key-file key1 snapshot create e.vdk s1
vwrite_k key1 e.vdk 0 1 65536 0x41
ok "diff on it" sh -c "'$VDISK' --key-file key1 diff e.vdk s1 | grep -q '^0 .* data'"
ok "check of the chain" vd --key-file key1 check e.vdk
ok "info shows every layer encrypted" sh -c "[ \$('$VDISK' --key-file key1 info e.vdk | grep -c '^encrypted: yes') -eq 2 ]"
ok "overlay over the encrypted image" vd --key-file key1 create $fast -b e.vdk ov.vdk
ok "overlay opens with the same passphrase" vd --key-file key1 map ov.vdk
done_testing
