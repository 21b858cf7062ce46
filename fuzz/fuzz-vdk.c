// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the native format (.vdk): a hostile image is opened
 * read-only (map walk, reads, check), then read-write (the free-space walk,
 * a write, zeroes, a discard, a commit). Any crash, sanitizer report, leak
 * or hang is a finding, and so is a read without a copy (vd_pread_map; a memfd
 * is tmpfs, so the image is mapped) that differs from vd_pread.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vdisk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
fuzz_pass(void *opaque, const char *path, char *buf, size_t size)
{
	(void)opaque;
	(void)path;
	snprintf(buf, size, "fuzz");
	return 0;
}

/*
 * The same range through vd_pread_map: the pieces must lie in the mapping
 * (touching them here would fault otherwise) and, when both reads succeed,
 * hold what vd_pread read.
 */
static void
fuzz_mapped(struct vd_image *img, const uint8_t *want, int want_r, size_t len, uint64_t off)
{
	static struct vd_mapped m;
	static uint8_t got[65536];
	size_t n = 0;

	if (len > sizeof(got) || vd_pread_map(img, len, off, &m) < 0) {
		return;
	}
	for (int i = 0; i < m.niov; i++) {
		if (n + m.iov[i].iov_len > len) {
			abort();
		}
		memcpy(got + n, m.iov[i].iov_base, m.iov[i].iov_len);
		n += m.iov[i].iov_len;
	}
	vd_pread_map_done(&m);
	if (n != len || (want_r == 0 && memcmp(got, want, len) != 0)) {
		abort();
	}
}

static void
fuzz_image(struct vd_image *img, bool write)
{
	static uint8_t buf[65536];
	uint64_t size = vd_get_size(img), off = 0;
	struct vd_check_result res;

	for (int i = 0; i < 64 && off < size; i++) {
		struct vd_extent e;

		if (vd_block_status(img, off, size - off, &e) < 0) {
			break;
		}
		if (e.length == 0 || e.length > size - off) {
			abort();
		}
		size_t n = e.length < sizeof(buf) ? (size_t)e.length : sizeof(buf);
		int r = vd_pread(img, buf, n, off);

		fuzz_mapped(img, buf, r, n, off);
		off += e.length;
	}
	(void)vd_pread(img, buf, size < 5000 ? size : 5000, 0);
	if (write) {
		memset(buf, 0xa5, sizeof(buf));
		(void)vd_pwrite(img, buf, size < 6000 ? size : 6000, 0);
		/* Zeroes and a discard over blocks the walk above found (whole and partial). */
		if (size > 8192) {
			(void)vd_write_zeroes(img, 4096, size / 2 < 70000 ? size / 2 : 70000);
			(void)vd_discard(img, size / 2, size - size / 2 < 140000 ? size - size / 2
									     : 140000);
		}
		(void)vd_flush(img);
	}
	(void)vd_check(img, NULL, NULL, &res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd_open_opts ro = { .format = "vdk", .passphrase = fuzz_pass };
	struct vd_open_opts rw = { .format = "vdk", .flags = VD_OPEN_RDWR, .passphrase = fuzz_pass };
	char path[64];
	struct vd_image *img;
	int fd = memfd_create("fuzz-vdk", MFD_CLOEXEC);

	if (fd < 0) {
		return 0;
	}
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	img = vd_open(path, &ro);
	if (img) {
		fuzz_image(img, false);
		vd_close(img);
	}
	img = vd_open(path, &rw);
	if (img) {
		fuzz_image(img, true);
		vd_close(img);
	}
	close(fd);
	return 0;
}
