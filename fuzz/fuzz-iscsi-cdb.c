// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: SCSI CDB decoding and execution. Input: 16 bytes of CDB,
 * one byte choosing the nexus, then the Data-Out buffer. Runs scsi_exec() on
 * a 1 MiB LUN in memory (memfd) and checks the invariants the transport relies
 * on: sense length bounded, Data-In allocated when reported.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backing.c"
#include "pr.c"
#include "sbc.c"
#include "scsi.c"
#include "spc.c"
#include "xcopy.c"

#include "../tests/target-log-stub.h"

static struct tgt_lun *fuzz_lu;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fuzz_lu) {
		int fd = memfd_create("fuzz-lun", 0);
		char path[64];
		if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		fuzz_lu = tgt_lun_open(path, false, "fuzz", 4096);
		if (!fuzz_lu) {
			abort();
		}
	}
	if (size < 17) {
		return 0;
	}
	struct scsi_cmd *c = calloc(1, sizeof(*c));
	if (!c) {
		return 0;
	}
	memcpy(c->cdb, data, 16);
	uint8_t sel = data[16];
	c->lu = (sel & 0x80) ? NULL : fuzz_lu;
	snprintf(c->nexus.iport, sizeof(c->nexus.iport), "iqn.fuzz:%d,i,0x80000000000%d", sel & 3,
		 sel & 3);
	c->nexus.rtpi = 1 + ((sel >> 2) & 1);
	c->nexus.tpgt = c->nexus.rtpi;
	c->nexus.alua_state = (sel >> 3) & 3;
	c->ntpgs = 1;
	c->tpgs[0].tag = 1;
	c->nluns = 1;
	c->out_len = (uint32_t)(size - 17);
	c->edtl = c->out_len ? c->out_len : (uint32_t)(sel << 4);
	if (!c->out_len && (sel & 0x20)) {
		/* a large read as the event loop asks for it: the transport may take it
		 * from the mapping or by reference (conn.c task_try_inline) */
		c->edtl = (uint32_t)((sel & 3) + 1) << 18;
		c->zc_ok = true;
		c->zc_max = 1u << 20;
		c->nowait = sel & 0x40;
	}
	if (c->out_len) {
		c->out = malloc(c->out_len);
		memcpy(c->out, data + 17, c->out_len);
	}
	scsi_exec(c);
	bool byref = c->mapped || c->zc;
	if (c->sense_len > SCSI_SENSE_MAX || (c->in_len && !c->in && !byref) ||
	    (byref && (c->in || !c->zc_ok || (c->mapped && c->zc)))) {
		abort();
	}
	if (byref) {
		/* what the transport will send: within the file (and its mapping) */
		uint64_t n = c->in_len < c->edtl ? c->in_len : c->edtl;
		if (c->zc_off + n > (1u << 20) ||
		    (c->mapped && (!c->lu->map || c->zc_off + n > c->lu->map_len))) {
			abort();
		}
		c->in_len = 0;
	}
	if (c->in_len) {
		volatile uint8_t sink = c->in[c->in_len - 1];
		(void)sink;
	}
	free(c->in);
	free(c->out);
	free(c);
	return 0;
}
