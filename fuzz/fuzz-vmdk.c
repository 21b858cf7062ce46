// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the vmdk reader: open, map and read a hostile image
 * (fuzz-foreign.h). The layer lives in a scratch folder that holds small real
 * extents a hostile descriptor can name: f.bin (flat, 64 KiB), s.vmdk (hosted
 * sparse, 4 KiB grains), c.vmdk (COWD) and a vm.vmsd naming fuzz.img, so the
 * descriptor parser, multi-extent mapping and .vmsd scan all see fuzzed input.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz-foreign.h"
#include "fuzz-scratch.h"

extern const struct vd_driver vd_vmdk_driver;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const vmdk_files[] = { "f.bin", "s.vmdk", "c.vmdk", "vm.vmsd", NULL };

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static uint8_t b[45 * 512];
	static const char vmsd[] = "snapshot0.disk0.fileName = \"fuzz.img\"\n"
				   "snapshot0.displayName = \"fuzzed\"\n"
				   "snapshot0.createTimeHigh = \"1\"\nsnapshot0.createTimeLow = \"-2\"\n";
	size_t i;

	(void)argc;
	(void)argv;
	if (!scratch_make("/tmp/fuzz-vmdk.XXXXXX", vmdk_files)) {
		return 0;
	}
	for (i = 0; i < 65536; i++) {
		b[i % sizeof(b)] = (uint8_t)(i * 31 + 7);
	}
	scratch_put("f.bin", b, sizeof(b));
	/* Hosted sparse: 128 sectors, 8-sector grains, GD at sector 1, GT at 2, grains 0 and 3. */
	memset(b, 0, sizeof(b));
	memcpy(b, "KDMV", 4);
	vd_put_le32(b + 4, 1);
	vd_put_le64(b + 12, 128);
	vd_put_le64(b + 20, 8);
	vd_put_le32(b + 44, 512);
	vd_put_le64(b + 56, 1);
	vd_put_le64(b + 64, 6);
	vd_put_le32(b + 512, 2);
	vd_put_le32(b + 1024, 6);
	vd_put_le32(b + 1024 + 12, 14);
	memset(b + 6 * 512, 0x5a, 16 * 512);
	scratch_put("s.vmdk", b, 22 * 512);
	/* COWD: 128 sectors, 8-sector grains, GD at sector 4, GT at 5 (32 sectors), grain 1 at 37. */
	memset(b, 0, sizeof(b));
	memcpy(b, "COWD", 4);
	vd_put_le32(b + 4, 1);
	vd_put_le32(b + 8, 3);
	vd_put_le32(b + 12, 128);
	vd_put_le32(b + 16, 8);
	vd_put_le32(b + 20, 4);
	vd_put_le32(b + 24, 1);
	vd_put_le32(b + 4 * 512, 5);
	vd_put_le32(b + 5 * 512 + 4, 37);
	memset(b + 37 * 512, 0xa5, 8 * 512);
	scratch_put("c.vmdk", b, 45 * 512);
	scratch_put("vm.vmsd", vmsd, sizeof(vmsd) - 1);
	fuzz_dir = scratch;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_driver(&vd_vmdk_driver, data, size);
}
