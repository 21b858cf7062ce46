// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the public open path: probing, the backing chain and
 * the core over it (format/image.c, chain.c). The input becomes the file
 * top.img in a scratch folder and is opened with vd_open() without a format,
 * as `vdisk info` and vdiskfs do. The folder also holds base.raw (64 KiB),
 * base.vdk (a native image of 64 KiB, 4 KiB blocks, half of them written) and
 * mid.qcow2 (an overlay of base.raw made by the library's own bytes: see
 * below), so that a hostile top's backing name, format and size meet real
 * layers, and a name pointing back at top.img meets the loop check.
 *
 * Read-only: the merged map is walked (vd_block_status must cover the disk
 * with extents in order), data read, every layer described, every snapshot
 * (layers and qcow2 internal ones) described and opened, and the chain
 * checked. Then read-write, which only a native top accepts: a write across
 * blocks the backing holds, zeroes, a discard, a flush.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk.h"
#include "fuzz-scratch.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const open_files[] = { "top.img", "base.raw", "base.vdk", "mid.qcow2", NULL };
static char top[128];

static void
be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
be64(uint8_t *p, uint64_t v)
{
	be32(p, (uint32_t)(v >> 32));
	be32(p + 4, (uint32_t)v);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static uint8_t b[65536];
	struct vd_create_opts co = {.size = 65536, .block_size = 4096};
	char p[128];
	struct vd_image *img;
	size_t i;

	(void)argc;
	(void)argv;
	/* tmpfs when there is one: every execution writes top.img and flushes it. */
	if (!scratch_make("/dev/shm/fuzz-open.XXXXXX", open_files) &&
	    !scratch_make("/tmp/fuzz-open.XXXXXX", open_files)) {
		return 0;
	}
	snprintf(top, sizeof(top), "%s/top.img", scratch);
	for (i = 0; i < sizeof(b); i++) {
		b[i] = (uint8_t)(i * 7 + 3);
	}
	scratch_put("base.raw", b, sizeof(b));
	snprintf(p, sizeof(p), "%s/base.vdk", scratch);
	if (vd_create(p, &co) == 0) {
		struct vd_open_opts rw = {.flags = VD_OPEN_RDWR, .format = "vdk"};

		img = vd_open(p, &rw);
		if (img) {
			for (i = 0; i < 16; i += 2) {
				(void)vd_pwrite(img, b + i * 4096, 4096, i * 4096);
			}
			vd_close(img);
		}
	}
	/*
	 * mid.qcow2: qcow2 v3, 4 KiB clusters, 64 KiB, backing base.raw (raw):
	 * header + name in cluster 0, L1 in 1, L2 in 2, data cluster 1 at 3.
	 */
	memset(b, 0, 4 * 4096);
	be32(b, 0x514649fbu);
	be32(b + 4, 3);
	be64(b + 8, 200);	    /* backing name offset */
	be32(b + 16, 8);	    /* its length */
	be32(b + 20, 12);	    /* cluster bits */
	be64(b + 24, 65536);	    /* size */
	be32(b + 36, 1);	    /* L1 entries */
	be64(b + 40, 4096);	    /* L1 offset */
	be32(b + 96, 4);	    /* refcount order */
	be32(b + 100, 104);	    /* header length */
	be32(b + 104, 0xe2792acau); /* backing format extension: "raw" */
	be32(b + 108, 3);
	memcpy(b + 112, "raw", 3);
	memcpy(b + 200, "base.raw", 8);
	be64(b + 4096, 2 * 4096 | (1ull << 63));
	be64(b + 2 * 4096 + 8, 3 * 4096 | (1ull << 63));
	memset(b + 3 * 4096, 0x5a, 4096);
	scratch_put("mid.qcow2", b, 4 * 4096);
	return 0;
}

static int
fuzz_pass(void *opaque, const char *path, char *buf, size_t size)
{
	(void)opaque;
	(void)path;
	snprintf(buf, size, "fuzz");
	return 0;
}

static void
fuzz_walk(struct vd_image *img)
{
	static uint8_t buf[65536];
	uint64_t size = vd_get_size(img), off = 0;
	int i;

	for (i = 0; i < 256 && off < size; i++) {
		struct vd_extent e;

		if (vd_block_status(img, off, size - off, &e) < 0) {
			break;
		}
		if (e.offset != off || e.length == 0 || e.length > size - off) {
			abort(); /* the merged map must tile the disk */
		}
		(void)vd_pread(img, buf, e.length < sizeof(buf) ? e.length : sizeof(buf), off);
		off += e.length;
	}
	if (size) {
		(void)vd_pread(img, buf, size < 5000 ? size : 5000,
			       size - (size < 5000 ? size : 5000));
	}
}

static void
fuzz_describe(struct vd_image *img)
{
	struct vd_check_result res;
	int i, n = vd_layer_count(img);

	if (n < 1) {
		abort();
	}
	for (i = 0; i < n; i++) {
		struct vd_layer_info li;

		if (vd_layer_info(img, i, &li) == 0 && (!li.path || !li.format)) {
			abort();
		}
	}
	n = vd_snapshot_count(img);
	for (i = 0; i < n && i < 4; i++) {
		struct vd_snapshot_info si;
		struct vd_image *v;

		if (vd_snapshot_info(img, i, &si) < 0) {
			continue;
		}
		if (!si.name) {
			abort();
		}
		v = vd_snapshot_open(img, i);
		if (v) {
			fuzz_walk(v);
			vd_close(v);
		}
	}
	(void)vd_check(img, NULL, NULL, &res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd_open_opts ro = {.passphrase = fuzz_pass};
	struct vd_open_opts rw = {.flags = VD_OPEN_RDWR, .passphrase = fuzz_pass};
	static uint8_t w[70000];
	struct vd_image *img;
	int fd;

	if (!scratch[0]) {
		return 0;
	}
	fd = open(top, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		return 0;
	}
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	close(fd);
	img = vd_open(top, &ro);
	if (img) {
		fuzz_walk(img);
		fuzz_describe(img);
		vd_close(img);
	}
	img = vd_open(top, &rw);
	if (img) {
		uint64_t vs = vd_get_size(img);

		memset(w, 0xa5, sizeof(w));
		(void)vd_pwrite(img, w, vs < 6000 ? vs : 6000, vs > 10000 ? 1000 : 0);
		if (vs > 8192) {
			(void)vd_write_zeroes(img, 4096, vs / 2 < 70000 ? vs / 2 : 70000);
			(void)vd_discard(img, vs / 2, vs - vs / 2 < 70000 ? vs - vs / 2 : 70000);
		}
		(void)vd_flush(img);
		fuzz_walk(img);
		vd_close(img);
	}
	return 0;
}
