// SPDX-License-Identifier: MIT
/*
 * The model-based test of the native format (t-vdk-model.c: random writes,
 * zeroes, flushes, snapshot create/delete/revert and reopens on deep chains,
 * every read compared with an in-memory model) run again on encrypted images:
 * vd_create and vd_open are wrapped to add a cipher and a passphrase.
 */
#include "crypt-wrap.h"

#define main model_main
#include "t-vdk-model.c"
#undef main

int
main(void)
{
	char dir[] = "/dev/shm/t-crypt-model.XXXXXX";
	int ops = getenv("VDISK_ASAN") ? 800 : 3000;
	char cmd[600];

	if (sodium_init() < 0 || !mkdtemp(dir)) {
		return 1;
	}
	ok(run(dir, 4096, ops, 4242) == 0,
	   "encrypted model (xchacha20poly1305): block size 4096, %d ops", ops);
	ok(run(dir, 65536, ops, 4343) == 0,
	   "encrypted model (xchacha20poly1305): block size 65536, %d ops", ops);
	if (crypto_aead_aes256gcm_is_available()) {
		model_cipher = "aes256gcm";
		ok(run(dir, 16384, ops, 4444) == 0,
		   "encrypted model (aes256gcm): block size 16384, %d ops", ops);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	return done_testing();
}
