// SPDX-License-Identifier: MIT
/*
 * The crash test of the native format (t-vdk-crash.c: versioned writes,
 * flushes, snapshot create/delete, SIGKILL at random instants, then open,
 * check, no torn or lost unit, still a chain) run on encrypted images.
 */
#include "crypt-wrap.h"

#define main vdk_crash_main
#include "t-vdk-crash.c"
#undef main

int
main(void)
{
	char dir[] = "/dev/shm/t-crypt-vdk-crash.XXXXXX";
	int rounds = getenv("VDISK_ASAN") ? 40 : 150;
	char cmd[600];

	if (sodium_init() < 0 || !mkdtemp(dir)) {
		return 1;
	}
	ok(crash_rounds(dir, 4096, rounds) == 0, "encrypted: %d SIGKILL rounds, 4 KiB blocks",
	   rounds);
	model_cipher = "aes256gcm";
	if (crypto_aead_aes256gcm_is_available()) {
		ok(crash_rounds(dir, 16384, rounds / 2) == 0,
		   "encrypted (aes256gcm): %d SIGKILL rounds, 16 KiB blocks", rounds / 2);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	return done_testing();
}
