// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: unlock a hostile encryption header area (vdk-crypt.c).
 *
 * Input: uuid (16 bytes) || area (VDK_CRYPT_AREA_SIZE) || rest. The passphrase is
 * "fuzz" (the seed corpus holds areas made with it, so mutations reach past the
 * key-slot AEAD now and then). When the area unlocks, the rest is treated as
 * tag (16) || ciphertext of block 0 and opened, and the slot operations run.
 *
 * Argon2id limits: values the library refuses (absurd opslimit/memlimit) are
 * passed through unchanged so that the refusal path is fuzzed; values it would
 * accept but that cost more than a few milliseconds are lowered to the minimum
 * in the harness's copy, or every execution would take up to seconds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "util.h"
#include "vdk-crypt.h"

#define SLOT0 64
#define SLOT_SIZE 184

static void
harness_clamp(uint8_t *area)
{
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		uint8_t *s = area + SLOT0 + i * SLOT_SIZE;
		uint64_t ops = vd_le64(s + 8), mem = vd_le64(s + 16);

		/* Within the library's bounds (vdk-crypt.c) but slow: make it cheap. */
		if (ops >= 1 && ops <= 64 && mem >= crypto_pwhash_MEMLIMIT_MIN &&
		    mem <= (1ull << 30) && ops * mem <= (16ull << 30) &&
		    (ops > 2 || mem > (64u << 10))) {
			vd_put_le64(s + 8, 1);
			vd_put_le64(s + 16, crypto_pwhash_MEMLIMIT_MIN);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t uuid[16], area[VDK_CRYPT_AREA_SIZE];
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	struct vdk_crypt *c = NULL;
	uint8_t mac[VDK_TAG_SIZE];

	if (size < sizeof(uuid) + sizeof(area)) {
		return 0;
	}
	memcpy(uuid, data, sizeof(uuid));
	memcpy(area, data + sizeof(uuid), sizeof(area));
	data += sizeof(uuid) + sizeof(area);
	size -= sizeof(uuid) + sizeof(area);
	harness_clamp(area);

	(void)vdk_crypt_area_used(area);
	(void)vdk_crypt_area_cipher(area);
	vdk_crypt_slot_list(area, slots);
	if (vdk_crypt_unlock(area, uuid, "fuzz", &c) != 0) {
		if (c != NULL) {
			abort(); /* a failed unlock must not return a handle */
		}
		return 0;
	}
	if (size >= VDK_TAG_SIZE) {
		size_t len = size - VDK_TAG_SIZE;
		uint8_t *buf = malloc(len ? len : 1);

		if (buf != NULL) {
			if (vdk_crypt_open(c, 0, 0, data + VDK_TAG_SIZE, buf, len, data) == 0) {
				/* Authentic: sealing the plaintext again must give the same bytes.
				 */
				uint8_t tag[VDK_TAG_SIZE];

				vdk_crypt_seal(c, 0, 0, buf, buf, len, tag);
				if (memcmp(buf, data + VDK_TAG_SIZE, len) != 0 ||
				    memcmp(tag, data, VDK_TAG_SIZE) != 0) {
					abort();
				}
			}
			free(buf);
		}
	}
	vdk_crypt_mac(c, 1, area, sizeof(area), mac);
	if (vdk_crypt_slot_add(c, area, "fuzz2", 1, crypto_pwhash_MEMLIMIT_MIN) >= 0) {
		struct vdk_crypt *d = NULL;

		if (vdk_crypt_unlock(area, uuid, "fuzz2", &d) != 0) {
			abort(); /* a slot just added must open */
		}
		vdk_crypt_destroy(d);
	}
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		(void)vdk_crypt_slot_remove(area, i);
	}
	vdk_crypt_slot_list(area, slots);
	vdk_crypt_destroy(c);
	return 0;
}
