// SPDX-License-Identifier: MIT
/*
 * Foreign images through the public library API (vd_open, vd_pread,
 * vd_snapshot_*, vd_check), with qemu-img as the oracle:
 *   - a mixed chain: a native .vdk top (vd_create + vd_pwrite) over a qcow2
 *     overlay over a VMDK base; the qcow2 also holds an internal snapshot;
 *     every snapshot (layers and the internal one) reads as qemu-img reads it;
 *   - the ESXi chain of tests/gen-vmdk.py: names and times from the .vmsd;
 *   - foreign layers are read-only: opening one for writing fails with EROFS.
 * Scratch files live in a fresh folder under /dev/shm.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "vdisk.h"

static char dir[256];
static char srcdir[1024] = ".";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Whole file into memory (caller frees); *len its size. */
static uint8_t *
slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0) {
		return NULL;
	}
	*len = 0;
	b = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (b && pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* Read all of img and compare with the raw file expect. */
static bool
same_as(struct vd_image *img, const char *expect)
{
	size_t n = 0;
	uint8_t *e = slurp(expect, &n), *g;
	bool r;

	if (!img || !e || vd_get_size(img) != n) {
		diag("size %llu vs %zu (%s)", img ? (unsigned long long)vd_get_size(img) : 0ull, n,
		     img ? "" : vd_get_error());
		free(e);
		return false;
	}
	g = malloc(n);
	r = g && vd_pread(img, g, n, 0) == 0 && memcmp(g, e, n) == 0;
	if (!r) {
		diag("content differs from %s (%s)", expect, vd_get_error());
	}
	free(g);
	free(e);
	return r;
}

static int
find_snapshot(struct vd_image *img, const char *name)
{
	int i, n = vd_snapshot_count(img);

	for (i = 0; i < n; i++) {
		struct vd_snapshot_info si;

		if (vd_snapshot_info(img, i, &si) == 0 && strcmp(si.name, name) == 0) {
			return i;
		}
	}
	return -1;
}

static void
check_view(struct vd_image *img, const char *name, const char *expect)
{
	int i = find_snapshot(img, name);
	struct vd_image *v;

	if (!ok(i >= 0, "snapshot '%s' listed", name)) {
		return;
	}
	v = vd_snapshot_open(img, i);
	ok(v && same_as(v, expect), "snapshot '%s' reads as %s", name, expect);
	vd_close(v);
}

static void
mixed_chain(void)
{
	struct vd_create_opts co;
	struct vd_open_opts oo;
	struct vd_image *img;
	struct vd_check_result res;
	char top[512], path[512];
	static uint8_t w[65536];
	size_t i;
	FILE *f;

	sh("cd %s && qemu-img create -q -f vmdk base.vmdk 8M && "
	   "head -c 3M /dev/urandom > r1 && qemu-io -f vmdk -c 'write -s r1 0 3M' base.vmdk "
	   ">/dev/null && qemu-img create -q -f qcow2 -b base.vmdk -F vmdk mid.qcow2 && "
	   "head -c 1M /dev/urandom > r2 && qemu-io -f qcow2 -c 'write -s r2 2M 1M' mid.qcow2 "
	   ">/dev/null && qemu-img snapshot -c snapA mid.qcow2 && "
	   "qemu-io -f qcow2 -c 'write -s r2 5M 1M' -c 'write -z 0 64k' mid.qcow2 >/dev/null && "
	   "qemu-img convert -O raw base.vmdk base.raw && qemu-img convert -O raw mid.qcow2 "
	   "mid.raw && qemu-img convert -O raw -l snapshot.name=snapA mid.qcow2 snapA.raw",
	   dir);
	snprintf(top, sizeof(top), "%s/top.vdk", dir);
	memset(&co, 0, sizeof(co));
	co.backing = "mid.qcow2";
	co.backing_format = "qcow2";
	snprintf(path, sizeof(path), "%s/mid.qcow2", dir);
	co.backing = path;
	ok(vd_create(top, &co) == 0, "vd_create a .vdk over a qcow2 over a vmdk (%s)",
	   vd_get_error());
	memset(&oo, 0, sizeof(oo));
	oo.flags = VD_OPEN_RDWR;
	img = vd_open(top, &oo);
	if (!ok(img != NULL, "open the mixed chain read-write (%s)", vd_get_error())) {
		return;
	}
	ok(vd_layer_count(img) == 3, "three layers");
	for (i = 0; i < sizeof(w); i++) {
		w[i] = (uint8_t)(i * 7 + 3);
	}
	ok(vd_pwrite(img, w, sizeof(w), 1 << 20) == 0, "write to the native top");
	/* Expected: mid.raw with the write applied. */
	snprintf(path, sizeof(path), "%s/top.raw", dir);
	sh("cp %s/mid.raw %s", dir, path);
	f = fopen(path, "r+b");
	if (f) {
		fseek(f, 1 << 20, SEEK_SET);
		fwrite(w, 1, sizeof(w), f);
		fclose(f);
	}
	ok(same_as(img, path), "the mixed chain reads as qemu-img's view plus our write");
	ok(vd_snapshot_count(img) == 3, "snapshots: two layers and one internal (%d)",
	   vd_snapshot_count(img));
	snprintf(path, sizeof(path), "%s/base.raw", dir);
	check_view(img, "base.vmdk", path);
	snprintf(path, sizeof(path), "%s/mid.raw", dir);
	check_view(img, "mid.qcow2", path);
	snprintf(path, sizeof(path), "%s/snapA.raw", dir);
	check_view(img, "snapA", path);
	{
		int i = find_snapshot(img, "snapA");
		struct vd_snapshot_info si;

		ok(i >= 0 && vd_snapshot_info(img, i, &si) == 0 && si.internal && si.created > 0,
		   "snapA is internal with a creation time");
	}
	memset(&res, 0, sizeof(res));
	ok(vd_check(img, NULL, NULL, &res) == 0 && res.corrupt == 0, "vd_check: no corruption");
	vd_close(img);

	/* A foreign top cannot be opened for writing. */
	snprintf(path, sizeof(path), "%s/mid.qcow2", dir);
	img = vd_open(path, &oo);
	ok(img == NULL && vd_get_errno() == EROFS, "qcow2 opened read-write: EROFS (%s)",
	   vd_get_error());
	vd_close(img);
	img = vd_open(path, NULL);
	ok(img && vd_is_readonly(img), "qcow2 opens read-only");
	vd_close(img);
}

static void
esxi_chain(void)
{
	struct vd_image *img;
	char path[512], exp[512];
	int i;
	struct vd_snapshot_info si;

	if (!ok(sh("python3 %s/tests/gen-vmdk.py %s/vm 3", srcdir, dir) == 0, "gen-vmdk.py")) {
		return;
	}
	snprintf(path, sizeof(path), "%s/vm/vm-000002.vmdk", dir);
	img = vd_open(path, NULL);
	if (!ok(img != NULL, "open the ESXi chain (%s)", vd_get_error())) {
		return;
	}
	snprintf(exp, sizeof(exp), "%s/vm/expect-000002.raw", dir);
	ok(same_as(img, exp), "the current disk reads as generated");
	i = find_snapshot(img, "before upgrade");
	ok(i == 0 && vd_snapshot_info(img, i, &si) == 0 && si.created == 1700000000,
	   "oldest snapshot named from vm.vmsd, with its time");
	i = find_snapshot(img, "after upgrade");
	ok(i == 1 && vd_snapshot_info(img, i, &si) == 0 && si.created == 1710000000 && si.parent &&
		   strcmp(si.parent, "before upgrade") == 0,
	   "second snapshot named from vm.vmsd, parent the first");
	snprintf(exp, sizeof(exp), "%s/vm/expect-vm.raw", dir);
	check_view(img, "before upgrade", exp);
	snprintf(exp, sizeof(exp), "%s/vm/expect-000001.raw", dir);
	check_view(img, "after upgrade", exp);
	vd_close(img);
}

int
main(void)
{
	const char *b = getenv("VDISK_BUILD");

	if (b) {
		char *s;

		snprintf(srcdir, sizeof(srcdir), "%s", b);
		s = strrchr(srcdir, '/');
		if (s) {
			*s = '\0';
		}
	}
	snprintf(dir, sizeof(dir), "/dev/shm/t-foreign-api.XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(dir, sizeof(dir), "/tmp/t-foreign-api.XXXXXX");
		if (!mkdtemp(dir)) {
			return 1;
		}
	}
	mixed_chain();
	esxi_chain();
	sh("rm -rf %s", dir);
	return done_testing();
}
