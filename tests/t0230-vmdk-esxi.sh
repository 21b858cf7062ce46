#!/bin/sh
# SPDX-License-Identifier: MIT
# ESXi snapshot chains that qemu-img cannot write, built by tests/gen-vmdk.py from
# the VMDK spec: a VMFS flat base, a vmfsSparse (COWD) delta and a seSparse delta,
# with snapshot names in the VM's .vmsd. Every member reads as the generator says
# (and as qemu-img reads it); names, times, CID checks and corruption handling.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/foreign-lib.sh"
cd "$T" || exit 1

python3 "$SRCDIR/tests/gen-vmdk.py" vm 5 || exit 1
for f in vm vm-000001 vm-000002; do
	e=vm/expect-${f#vm-}.raw
	[ $f = vm ] && e=vm/expect-vm.raw
	ok "$f.vmdk reads as the generator wrote it" sh -c "'$FCAT' vm/$f.vmdk | cmp -s - $e"
	ok "qemu-img agrees with the generator on $f.vmdk" sh -c "$QI convert -O raw vm/$f.vmdk q.raw && cmp -s q.raw $e"
	if [ -x "$VDISK" ]; then
		ok "$f.vmdk: vdisk convert" sh -c "'$VDISK' convert -O raw vm/$f.vmdk v.raw && cmp -s v.raw $e"
	fi
done
info=$("$FCAT" -i vm/vm-000002.vmdk)
ok_eq "$(printf '%s\n' "$info" | awk '{print $5}' | tr '\n' ' ')" \
	"backing=vm-000001.vmdk backing=vm.vmdk backing=- " "chain through parentFileNameHint"
# Names and times from the .vmsd: "name=after upgrade created=..." per layer.
got=$(printf '%s\n' "$info" | tail -n +2 | sed -n 's/.* name=\(.*\) created=\([0-9]*\) .*/\1|\2/p' | tr '\n' ';')
exp=$(awk -F'\t' '{printf "%s|%s\n", $2, $3}' vm/expect-names.txt | tac | tr '\n' ';')
ok_eq "$got" "$exp" "snapshot names and times from vm.vmsd"
ok "seSparse map reports zero grains" sh -c "'$FCAT' -m vm/vm-000002.vmdk | grep -q zero"
ok "check passes on the chain" sh -c "'$FCAT' -c vm/vm-000002.vmdk >/dev/null"

ok "8 threads of random reads agree on the ESXi chain" "$FCAT" -T 8 vm/vm-000002.vmdk
# Without the .vmsd the layers have no names (the core falls back to file names).
mkdir novmsd
cp vm/vm*.vmdk novmsd/
ok_eq "$("$FCAT" -i novmsd/vm-000002.vmdk | grep -c 'name=-')" 3 "no .vmsd: no names"
# A parentCID that does not match the parent's CID is refused.
sed 's/^parentCID=.*/parentCID=deadbeef/' vm/vm-000001.vmdk >novmsd/vm-000001.vmdk
refuses "parentCID mismatch" "CID mismatch" novmsd/vm-000002.vmdk
# seSparse with a dirty journal is refused, not read stale.
cp vm/vm*.vmdk novmsd/
printf '\1' | dd of=novmsd/vm-000002-sesparse.vmdk bs=1 seek=$((512 + 24)) conv=notrunc 2>/dev/null
refuses "seSparse journal needing replay" "journal" novmsd/vm-000002.vmdk
# Corrupt tables: grain directory entries and grain table entries with garbage.
cp vm/vm*.vmdk novmsd/
printf '\377\377\377\377' | dd of=novmsd/vm-000001-delta.vmdk bs=1 seek=2048 conv=notrunc 2>/dev/null
out=$("$FCAT" novmsd/vm-000001.vmdk 2>&1 >/dev/null)
ok "COWD grain table outside the file: EIO ($out)" sh -c "printf '%s' \"\$1\" | grep -q 'outside the file'" _ "$out"
ok "check reports the COWD corruption" sh -c "'$FCAT' -c novmsd/vm-000001.vmdk | grep -q corrupt"
cp vm/vm*.vmdk novmsd/
dd if=/dev/urandom of=novmsd/vm-000002-sesparse.vmdk bs=1 seek=$((8 * 512)) count=64 conv=notrunc 2>/dev/null
no_crash "seSparse with a garbage grain directory" novmsd/vm-000002.vmdk
# A hostile .vmsd (1 MiB of snapshot keys) costs one linear scan, not a hang.
mkdir big
cp vm/vm*.vmdk big/
python3 -c '
import sys
out = [
    "snapshot%d.disk%d.fileName = \"other%d.vmdk\"\n" % (n // 64, n % 64, n)
    for n in range(30000)]
open("big/vm.vmsd", "w").write("".join(out))'
ok "1 MiB .vmsd is scanned quickly" sh -c "timeout 10 '$FCAT' -i big/vm-000002.vmdk >/dev/null"
done_testing
