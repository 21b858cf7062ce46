// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for vdiskfs's partition table parser (fs/part.c). The
 * input is the start of a disk; the disk is 2 MiB (or the input's size if
 * larger), reads beyond the input are zeroes, and the last 64 KiB of the input
 * are also mirrored at the end of the disk so the backup GPT header path is
 * reached. Checks that every partition returned lies inside the disk and
 * that partition numbers are unique (they name partitions/pN).
 * A mutation almost always breaks a GPT's two CRC32s, so for inputs of even
 * length the harness recomputes them in the primary header (at 512 or 4096)
 * and its entry array; odd lengths keep the input's CRCs, and the backup
 * header is never fixed, so the CRC checks and the fallback still run.
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

static void
fix_gpt(uint8_t *p, size_t size, uint32_t ss)
{
	uint8_t *h = p + ss;
	uint32_t hsize, nent, esize;
	uint64_t arr;

	if (size < 2 * (size_t)ss || memcmp(h, GPT_SIG, 8) != 0) {
		return;
	}
	hsize = vd_le32(h + 12);
	nent = vd_le32(h + 80);
	esize = vd_le32(h + 84);
	arr = vd_le64(h + 72);
	if (hsize < 92 || hsize > ss) {
		return;
	}
	if (nent <= GPT_MAX_ENTRIES && esize <= GPT_MAX_ESIZE && arr < size / ss &&
	    (uint64_t)nent * esize <= size - arr * ss) {
		vd_put_le32(h + 88, part_crc32(p + arr * ss, (size_t)nent * esize));
	}
	memset(h + 16, 0, 4);
	vd_put_le32(h + 16, part_crc32(h, hsize));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdfs_part parts[VDFS_PART_MAX];
	struct fz_disk d = {.data = data, .len = size, .size = 2u << 20};
	int n, i;

	uint8_t *copy = NULL;

	if (size > d.size) {
		d.size = size;
	}
	if (size % 2 == 0 && size) {
		copy = malloc(size);
		if (!copy) {
			return 0;
		}
		memcpy(copy, data, size);
		fix_gpt(copy, size, 512);
		fix_gpt(copy, size, 4096);
		d.data = copy;
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
		if (i > 0 && parts[i].num <= parts[i - 1].num) {
			abort(); /* partition numbers name files (partitions/pN): unique */
		}
	}
	free(copy);
	return 0;
}
