#!/bin/sh
# SPDX-License-Identifier: MIT
# vdiskfs snapshot folders for names that cannot be directory entries as they
# are (fs/tree.c, "Folder names"): foreign snapshot names are free text (qcow2
# tags with '/', "." and "..", '%'), and one bad entry would make the kernel
# refuse the whole listing. Each gets an escaped folder whose disk is that
# snapshot's and whose info names it as it is; ordinary names stay as they are;
# mkdir of a name that is an escaped folder already is EEXIST.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fs-lib.sh"
requires command -v qemu-img
cd "$T" || exit 1
M=1048576

qemu-img create -q -f qcow2 s.qcow2 4M
i=1
for tag in 'a/b' '..' '.' 'before upgrade (2024)' '50%' 'a%2Fb'; do
	qemu-io -f qcow2 -c "write -P $i 0 1M" s.qcow2 >/dev/null
	qemu-img snapshot -c "$tag" s.qcow2
	qemu-img convert -O raw -l "snapshot.name=$tag" s.qcow2 "snap$i.raw"
	i=$((i + 1))
done
ok "qemu-img lists six snapshots" test "$(qemu-img snapshot -l s.qcow2 | tail -n +3 | wc -l)" -eq 6

mkdir -p m
"$VDISKFS" s.qcow2 m 2>mount.err
cleanup_fn fusermount3 -u "$T/m"
ok "mount" wait_mounted "$T/m"
ls -U m/snapshots >ls.out 2>ls.err
ok "ls snapshots/ works" test -s ls.out
ok_eq "$(tr '\n' '|' <ls.out)" "a%2Fb|%2E%2E|%2E|before upgrade (2024)|50%|a%2Fb~6|" \
	"folders: escaped where needed, in the library's order"
i=1
for d in 'a%2Fb' '%2E%2E' '%2E' 'before upgrade (2024)' '50%' 'a%2Fb~6'; do
	ok "snapshots/$d/disk is that snapshot's disk" cmp -s "m/snapshots/$d/disk" "snap$i.raw"
	i=$((i + 1))
done
ok "info names it as it is (a/b)" grep -qx 'name: a/b' "m/snapshots/a%2Fb/info"
ok "info names it as it is (..)" grep -qx 'name: \.\.' "m/snapshots/%2E%2E/info"
ok "info names it as it is (a%2Fb)" grep -qx 'name: a%2Fb' "m/snapshots/a%2Fb~6/info"
ok "fusermount3 -u" fusermount3 -u "$T/m"

# A native top over it: the folders stay, and mkdir/rmdir work beside them.
"$VDISK" create -b s.qcow2 n.vdk >/dev/null
mkdir -p n
"$VDISKFS" n.vdk n 2>mount2.err
cleanup_fn fusermount3 -u "$T/n"
ok "mount a native top over it" wait_mounted "$T/n"
ok "mkdir snapshots/s1" mkdir n/snapshots/s1
ok_eq "$(ls -U n/snapshots | tr '\n' '|')" \
	"a%2Fb|%2E%2E|%2E|before upgrade (2024)|50%|a%2Fb~6|s.qcow2|s1|" \
	"the escaped folders, the qcow2 layer and the new snapshot"
ok "snapshots/%2E%2E/disk still reads its snapshot" cmp -s "n/snapshots/%2E%2E/disk" snap2.raw
ok_fail "mkdir of an escaped folder's name fails" perr mkdir "n/snapshots/a%2Fb"
ok "with EEXIST" grep -q "File exists" "$T/perr"
ok "rmdir snapshots/s1" rmdir n/snapshots/s1
ok "fusermount3 -u" fusermount3 -u "$T/n"
done_testing
