// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness for the qcow2 reader: open, map, read and check a hostile
 * image (fuzz-foreign.h). The layer lives in a scratch folder holding a 64 KiB
 * data.raw, so that an image with an external data file (qemu-img create -o
 * data_file=data.raw) opens and its mapping and check run against a real file.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz-foreign.h"

extern const struct vd_driver vd_qcow2_driver;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char scratch[64];
static char datapath[128];

static void
cleanup(void)
{
	unlink(datapath);
	rmdir(scratch);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static uint8_t b[65536];
	FILE *f;
	size_t i;

	(void)argc;
	(void)argv;
	snprintf(scratch, sizeof(scratch), "/tmp/fuzz-qcow2.XXXXXX");
	if (!mkdtemp(scratch)) {
		return 0;
	}
	atexit(cleanup);
	for (i = 0; i < sizeof(b); i++) {
		b[i] = (uint8_t)(i * 13 + 1);
	}
	snprintf(datapath, sizeof(datapath), "%s/data.raw", scratch);
	f = fopen(datapath, "wb");
	if (f) {
		fwrite(b, 1, sizeof(b), f);
		fclose(f);
	}
	fuzz_dir = scratch;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_driver(&vd_qcow2_driver, data, size);
}
