// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: iSCSI text keys as they arrive in login and text
 * requests. The input is a data segment (key=value pairs, NUL-separated, not
 * trusted to be terminated); every pair is negotiated in a normal and a
 * discovery session and every value is also decoded as a CHAP binary value.
 */
#include <stdlib.h>
#include <string.h>

#include "chap.c"
#include "crc32c.c"
#include "param.c"

#include "../tests/target-log-stub.h"

struct fuzz_ctx {
	struct iscsi_params p;
	struct text_buf out;
	bool discovery;
};

static int
fuzz_key(char *key, char *val, void *arg)
{
	struct fuzz_ctx *fc = arg;
	uint8_t bin[1024];
	param_negotiate(&fc->p, key, val, fc->discovery, &fc->out);
	chap_decode(val, bin, sizeof(bin));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int disc = 0; disc < 2; disc++) {
		struct fuzz_ctx fc;
		char *copy = malloc(size ? size : 1);
		if (!copy) {
			return 0;
		}
		memcpy(copy, data, size);
		param_defaults(&fc.p);
		text_buf_init(&fc.out);
		fc.discovery = disc;
		text_parse(copy, size, fuzz_key, &fc);
		param_finish(&fc.p);
		if (fc.p.first_burst > fc.p.max_burst || fc.out.len > ISCSI_TEXT_MAX) {
			abort();
		}
		/* the answer must itself parse (into a separate context) */
		if (fc.out.len) {
			struct fuzz_ctx fc2;
			param_defaults(&fc2.p);
			text_buf_init(&fc2.out);
			fc2.discovery = disc;
			if (text_parse(fc.out.buf, fc.out.len, fuzz_key, &fc2) < 0) {
				abort();
			}
			text_buf_free(&fc2.out);
		}
		text_buf_free(&fc.out);
		free(copy);
	}
	(void)crc32c(data, size);
	return 0;
}
