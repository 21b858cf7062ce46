// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the vhd reader: open, map, read and check a hostile
 * image (fuzz-foreign.h). A mutation almost always breaks the footer and
 * dynamic-header checksums, so the harness recomputes them in the footer at
 * the end of the input and in the dynamic header it names (when their cookie
 * is there); the footer copy at offset 0 keeps the input's checksum, so the
 * fallback to it and the checksum checks still run.
 */
#include "fuzz-foreign.h"

extern const struct vd_driver vd_vhd_driver;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fix_sum(uint8_t *p, size_t len, size_t at)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i < at || i >= at + 4) {
			sum += p[i];
		}
	}
	vd_put_be32(p + at, ~sum);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1), *f;
	uint64_t doff;
	int ret;

	if (!p) {
		return 0;
	}
	memcpy(p, data, size);
	if (size >= 512 && memcmp(p + size - 512, "conectix", 8) == 0) {
		f = p + size - 512;
		doff = vd_be64(f + 16);
		if (doff <= size - 512 && size - 512 - doff >= 1024 &&
		    memcmp(p + doff, "cxsparse", 8) == 0) {
			fix_sum(p + doff, 1024, 36);
		}
		fix_sum(f, 512, 64);
	}
	ret = fuzz_driver(&vd_vhd_driver, p, size);
	free(p);
	return ret;
}
