// SPDX-License-Identifier: MIT
/* libFuzzer harness for the qcow2 reader: open, map and read a hostile image (fuzz-foreign.h). */
#include "fuzz-foreign.h"

extern const struct vd_driver vd_qcow2_driver;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_driver(&vd_qcow2_driver, data, size);
}
