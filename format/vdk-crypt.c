// SPDX-License-Identifier: MIT
/*
 * Placeholder until the encryption work lands: unencrypted images only.
 * Every entry point that would need a key fails with -ENOTSUP.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "vdk-crypt.h"

int
vdk_crypt_area_used(const uint8_t *area)
{
	for (int i = 0; i < VDK_CRYPT_AREA_SIZE; i++) {
		if (area[i]) {
			return 1;
		}
	}
	return 0;
}

const char *
vdk_crypt_area_cipher(const uint8_t *area)
{
	(void)area;
	return NULL;
}

int
vdk_crypt_create(const char *cipher, const char *passphrase, uint64_t opslimit,
		 uint64_t memlimit, const uint8_t uuid[16], uint8_t *area, struct vdk_crypt **out)
{
	(void)cipher, (void)passphrase, (void)opslimit, (void)memlimit, (void)uuid, (void)area;
	*out = NULL;
	return vd_set_error(ENOTSUP, "encryption is not available in this build");
}

int
vdk_crypt_unlock(const uint8_t *area, const uint8_t uuid[16], const char *passphrase,
		 struct vdk_crypt **out)
{
	(void)area, (void)uuid, (void)passphrase;
	*out = NULL;
	return vd_set_error(ENOTSUP, "encryption is not available in this build");
}

void
vdk_crypt_destroy(struct vdk_crypt *c)
{
	(void)c;
}

int
vdk_crypt_seal(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in, void *out,
	       size_t len, uint8_t tag[VDK_TAG_SIZE])
{
	(void)c, (void)vblock, (void)ctr, (void)in, (void)out, (void)len, (void)tag;
	return -ENOTSUP;
}

int
vdk_crypt_open(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in, void *out,
	       size_t len, const uint8_t tag[VDK_TAG_SIZE])
{
	(void)c, (void)vblock, (void)ctr, (void)in, (void)out, (void)len, (void)tag;
	return -ENOTSUP;
}

void
vdk_crypt_mac(struct vdk_crypt *c, uint64_t context, const void *buf, size_t len,
	      uint8_t out[VDK_TAG_SIZE])
{
	(void)c, (void)context, (void)buf, (void)len;
	memset(out, 0, VDK_TAG_SIZE);
}
