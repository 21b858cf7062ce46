// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the vhdx reader: open, map, read and check a hostile
 * image (fuzz-foreign.h). Headers and region tables carry a CRC-32C that a
 * mutation almost always breaks, so the harness recomputes it in the first
 * copy of each (a header at 64 KiB, a region table at 192 KiB, when their
 * signature is there) and leaves the second copies as the input has them:
 * mutated fields reach the parser, and the fallback to the second copy and
 * the CRC checks still run.
 */
#include "fuzz-foreign.h"
#include "foreign.h"

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
	uint8_t *p = malloc(size ? size : 1);
	int ret;

	if (!p) {
		return 0;
	}
	memcpy(p, data, size);
	fix_crc(p, size, 64 << 10, 4096, "head");
	fix_crc(p, size, 192 << 10, 64 << 10, "regi");
	ret = fuzz_driver(&vd_vhdx_driver, p, size);
	free(p);
	return ret;
}
