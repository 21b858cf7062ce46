/* SPDX-License-Identifier: MIT */
/*
 * Shared body of the foreign-format fuzz harnesses (fuzz-vmdk.c, fuzz-qcow2.c,
 * fuzz-vhd.c, fuzz-vhdx.c): the input becomes a memfd opened through the
 * driver, then the map is walked and data read, as the core would. The layer's
 * path lies in a folder that does not exist, so relative extent, data-file and
 * parent names (and .vmsd files) resolve to nothing; fuzz-vmdk.c instead points
 * it at a folder of small real extents so that descriptors can reach them.
 * After the walk come the driver's check (every finding's text is read), its
 * allocated/files answers and each internal snapshot's info, map and check.
 */
#ifndef FUZZ_FOREIGN_H
#define FUZZ_FOREIGN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"

static void
fuzz_walk(struct vd_layer *l)
{
	static uint8_t buf[1 << 16];
	uint64_t off = 0;
	int i;

	/* At most 256 extents, at most 64 KiB read from each. */
	for (i = 0; i < 256 && off < l->size; i++) {
		struct vd_extent e;

		if (l->drv->block_status(l, off, l->size - off, &e) < 0) {
			break;
		}
		if (e.offset != off || e.length == 0 || e.length > l->size - off) {
			abort(); /* a driver contract violation is a finding */
		}
		if (e.type == VD_EXTENT_DATA) {
			(void)l->drv->pread(l, buf, VD_MIN(e.length, sizeof(buf)), off);
		}
		off += e.length;
	}
	/* An unaligned read across the start, and one at the end. */
	if (l->size > 0) {
		(void)l->drv->pread(l, buf, VD_MIN(l->size, 4097), 0);
		(void)l->drv->pread(l, buf, VD_MIN(l->size, 1000), l->size - VD_MIN(l->size, 1000));
	}
}

static void
fuzz_report(void *opaque, int layer, enum vd_check_severity sev, const char *msg)
{
	(void)opaque;
	(void)layer;
	(void)sev;
	if (strlen(msg) > 4096) {
		abort(); /* findings are one line */
	}
}

/* The driver's check, allocated and files answers. */
static void
fuzz_check(struct vd_layer *l)
{
	struct vd_check_result res;
	int fds[16], n;

	if (l->drv->check) {
		memset(&res, 0, sizeof(res));
		(void)l->drv->check(l, fuzz_report, NULL, 0, &res);
	}
	if (l->drv->allocated) {
		(void)l->drv->allocated(l);
	}
	if (l->drv->files) {
		n = l->drv->files(l, fds, 16);
		if (n > 16) {
			abort();
		}
	}
}

static void
fuzz_free_strings(struct vd_layer *l)
{
	free(l->backing);
	free(l->backing_format);
	free(l->name);
	l->backing = l->backing_format = l->name = NULL;
}

/* The folder the layer's path lies in (fuzz-vmdk.c points it at real extent files). */
static const char *fuzz_dir = "/nonexistent-fuzz-dir";

static int
fuzz_driver(const struct vd_driver *drv, const uint8_t *data, size_t size)
{
	char path[512];
	struct vd_layer l;
	int fd = memfd_create("fuzz", MFD_CLOEXEC), i, n;

	if (fd < 0) {
		return 0;
	}
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	(void)drv->probe(data, VD_MIN(size, 65536), size, "fuzz.img");
	memset(&l, 0, sizeof(l));
	l.drv = drv;
	l.fd = fd;
	l.readonly = true;
	snprintf(path, sizeof(path), "%s/fuzz.img", fuzz_dir);
	l.path = path;
	l.st = calloc(1, drv->instance_size);
	if (drv->open(&l) == 0) {
		if (!VD_IS_POW2(l.granularity) || l.granularity < 512 ||
		    l.granularity > (2u << 20)) {
			abort();
		}
		fuzz_walk(&l);
		fuzz_check(&l);
		n = drv->snapshot_count ? drv->snapshot_count(&l) : 0;
		for (i = 0; i < n && i < 4; i++) {
			struct vd_layer v;
			const char *name = NULL;
			int64_t created;

			if (drv->snapshot_info && drv->snapshot_info(&l, i, &name, &created) == 0 &&
			    name) {
				(void)strlen(name);
			}

			memset(&v, 0, sizeof(v));
			v.drv = drv;
			v.fd = fd;
			v.path = l.path;
			v.st = calloc(1, drv->instance_size);
			if (drv->snapshot_open(&l, i, &v) == 0) {
				fuzz_walk(&v);
				fuzz_check(&v);
				drv->close(&v);
				fuzz_free_strings(&v);
			}
			free(v.st);
		}
		drv->close(&l);
	}
	fuzz_free_strings(&l);
	free(l.st);
	close(fd);
	return 0;
}

#endif
