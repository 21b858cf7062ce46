// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for vdiskfs's partition table parser (fs/part.c). The
 * input is the start of a disk; the disk is 2 MiB (or the input's size if
 * larger), reads beyond the input are zeroes, and the last 64 KiB of the input
 * are also mirrored at the end of the disk so the backup GPT header path is
 * reached. Checks that every partition returned lies inside the disk.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../fs/part.c"

struct fz_disk {
	const uint8_t *data;
	size_t len;
	uint64_t size;
};

static int
fz_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	struct fz_disk *d = opaque;
	uint8_t *p = buf;
	size_t i;

	if (off + len > d->size) {
		abort(); /* the parser promised to stay inside the disk */
	}
	for (i = 0; i < len; i++) {
		uint64_t o = off + i;
		uint64_t tail = d->size - (d->len < 65536 ? d->len : 65536);

		if (o < d->len) {
			p[i] = d->data[o];
		} else if (o >= tail && d->len) {
			p[i] = d->data[(o - tail) % d->len];
		} else {
			p[i] = 0;
		}
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdfs_part parts[VDFS_PART_MAX];
	struct fz_disk d = {.data = data, .len = size, .size = 2u << 20};
	int n, i;

	if (size > d.size) {
		d.size = size;
	}
	n = vdfs_part_scan(fz_read, &d, d.size, parts, VDFS_PART_MAX);
	if (n < 0 || n > VDFS_PART_MAX) {
		abort();
	}
	for (i = 0; i < n; i++) {
		if (parts[i].length == 0 || parts[i].start >= d.size ||
		    parts[i].length > d.size - parts[i].start) {
			abort();
		}
	}
	return 0;
}
