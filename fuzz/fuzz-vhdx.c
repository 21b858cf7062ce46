// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the vhdx reader: open, map, read and check a hostile
 * image (fuzz-foreign.h).
 *
 * A VHDX file is mostly zeroes at 1 MiB-aligned regions (metadata, BAT, data
 * blocks), at least 3 MiB, and libFuzzer caps inputs at 1 MiB: the input is
 * therefore a compact form of the file. Its first 320 KiB are the file's
 * first 320 KiB (file identifier, both headers, both region tables); each
 * following 128 KiB chunk k becomes the first 128 KiB of MiB k+1 of the file,
 * the rest of that MiB zeroes. A file laid out as qemu-img makes it (log at
 * 1 MiB, metadata at 2, BAT at 3, blocks from 4) keeps every table whole.
 * Seeds are made from real files by fuzz/vhdx-compact.py.
 *
 * Headers and region tables carry a CRC-32C that a mutation almost always
 * breaks, so the harness recomputes it in the first copy of each (a header at
 * 64 KiB, a region table at 192 KiB, when their signature is there) and leaves
 * the second copies as the input has them: mutated fields reach the parser,
 * and the fallback to the second copy and the CRC checks still run.
 */
#include "fuzz-foreign.h"
#include "foreign.h"

#define HEAD (320u << 10)
#define CHUNK (128u << 10)
#define MIB (1u << 20)

extern const struct vd_driver vd_vhdx_driver;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fix_crc(uint8_t *p, size_t size, size_t off, size_t len, const char *sig)
{
	if (size < off + len || memcmp(p + off, sig, 4) != 0) {
		return;
	}
	vd_put_le32(p + off + 4, 0);
	vd_put_le32(p + off + 4, ft_crc32c(0, p + off, len));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t fsize = size, k, n;
	uint8_t *p;
	int ret;

	if (size > HEAD) {
		n = (size - HEAD + CHUNK - 1) / CHUNK;
		fsize = (n + 1) * MIB;
	}
	p = calloc(1, fsize ? fsize : 1);
	if (!p) {
		return 0;
	}
	memcpy(p, data, VD_MIN(size, HEAD));
	for (k = 0; size > HEAD && HEAD + k * CHUNK < size; k++) {
		memcpy(p + (k + 1) * MIB, data + HEAD + k * CHUNK,
		       VD_MIN(CHUNK, size - HEAD - k * CHUNK));
	}
	fix_crc(p, fsize, 64 << 10, 4096, "head");
	fix_crc(p, fsize, 192 << 10, 64 << 10, "regi");
	ret = fuzz_driver(&vd_vhdx_driver, p, fsize);
	free(p);
	return ret;
}
