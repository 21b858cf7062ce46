// SPDX-License-Identifier: MIT
/*
 * Encryption of native (.vdk) images with libsodium, behind the narrow
 * interface of vdk-crypt.h: vdk.c hands us bytes and a header area, never keys.
 *
 * Design notes
 * - Each image has one random 32-byte data key. It lives only in sodium_malloc'd
 *   memory (guard pages, mlock'd, excluded from core dumps) inside struct
 *   vdk_crypt and is wiped by sodium_free() in vdk_crypt_destroy().
 * - The data key is stored wrapped in up to VD_KEY_SLOTS key slots of the header
 *   area. A slot's key-encryption key comes from crypto_pwhash (Argon2id v1.3)
 *   with the slot's own salt and limits; the wrap is XChaCha20-Poly1305 whose
 *   additional data covers the area header, the slot's parameters
 *   and the image uuid, so no parameter can be edited without the slot failing to
 *   open. The Poly1305 tag of the wrap is the key check: a passphrase that opens
 *   no slot is -EACCES "wrong passphrase".
 * - Argon2 limits read from the file are bounded (VDK_CRYPT_*_MAX below): a
 *   hostile header cannot make us allocate gigabytes or spin for minutes.
 * - Per layer (uuid), two subkeys are derived from the data key: the block key
 *   and the MAC key (BLAKE2b keyed by the data key personalises a layer key from
 *   the uuid, then crypto_kdf). Layers that share a wrapped data key (snapshots,
 *   overlays) therefore never share a block key, and nonces cannot collide
 *   between them even if their counters do.
 * - Blocks: AEAD in detached mode (ciphertext as long as the plaintext, 16-byte
 *   tag kept by vdk.c in the map). Nonce = per-image random salt || ctr (LE64)
 *   for AES-GCM (4 + 8 bytes), salt (8) || vblock (LE64) || ctr (LE64) for
 *   XChaCha20; vdk.c guarantees ctr never repeats for one key and uuid, and
 *   XChaCha's wider nonce adds the block address as a second line of defence. Additional data =
 *   uuid || vblock (LE64) || ctr (LE64): a block moved to another address, or an
 *   older copy put back under a newer map entry, fails authentication.
 * - The area also holds a key check value: a MAC under the data key of the
 *   area header and the uuid, verified after a slot opens; it catches an area
 *   header (cipher id, nonce salt) edited behind the slots' back.
 *
 * Area layout (VDK_CRYPT_AREA_SIZE = 1536 bytes, integers little-endian):
 *   0    8   magic "VDKCRYPT"
 *   8    2   version (1)
 *   10   2   cipher: 1 = xchacha20poly1305, 2 = aes256gcm
 *   12   4   flags (0; anything else is refused)
 *   16   16  nonce salt (random per image; XChaCha uses the first 8 bytes, GCM 4)
 *   32   32  key check: BLAKE2b-256 keyed with KDF(data key, 3, "vdkcheck") of
 *            bytes 0..31 || uuid
 *   64   8 x 184 key slots:
 *        0    4   state: 0 free (the whole slot is then zero), 1 used
 *        4    4   algorithm: 2 = Argon2id v1.3
 *        8    8   opslimit
 *        16   8   memlimit (bytes)
 *        24   16  Argon2id salt
 *        40   24  wrap nonce (XChaCha20-Poly1305)
 *        64   32  wrapped data key
 *        96   16  wrap tag
 *        112  72  reserved, zero
 *   wrap additional data = area[0..64) || slot[0..40) || uuid
 *   (not the slot index: a slot may be copied to another index, or to another
 *   file of the same chain, and still open)
 *
 * Thread model: seal/open/mac only read the state and may run concurrently.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "vdisk.h"
#include "internal.h"
#include "util.h"
#include "vdk-crypt.h"

#define VDK_CRYPT_MAGIC "VDKCRYPT"
#define VDK_CRYPT_VERSION 1
#define VDK_CRYPT_HDR_SIZE 64
#define VDK_CRYPT_SLOT_SIZE 184
#define VDK_CRYPT_SLOT_AD_LEN 40
#define VDK_CRYPT_SLOT_USED 1
#define VDK_CRYPT_ALG_ARGON2ID13 2

#define VDK_CIPHER_XCHACHA 1
#define VDK_CIPHER_AESGCM 2

#define VDK_KEY_SIZE 32

/* Default limits: about one second to unlock on a 2020s x86 core (measured: ~0.8 s). */
#define VDK_CRYPT_OPSLIMIT_DEFAULT 8ull
#define VDK_CRYPT_MEMLIMIT_DEFAULT (256ull << 20)
/* Bounds accepted from a file or a caller. */
#define VDK_CRYPT_OPSLIMIT_MAX 64ull
#define VDK_CRYPT_MEMLIMIT_MAX (1ull << 30)
/* opslimit * memlimit: 16 GiB-passes, about 20x the default work. */
#define VDK_CRYPT_WORK_MAX (16ull << 30)

_Static_assert(VDK_CRYPT_HDR_SIZE + VD_KEY_SLOTS * VDK_CRYPT_SLOT_SIZE == VDK_CRYPT_AREA_SIZE,
	       "crypt area layout");
_Static_assert(crypto_pwhash_SALTBYTES == 16, "Argon2 salt size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == VDK_TAG_SIZE, "tag size");
_Static_assert(crypto_aead_aes256gcm_ABYTES == VDK_TAG_SIZE, "tag size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24, "nonce size");
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12, "nonce size");
_Static_assert(crypto_pwhash_ALG_ARGON2ID13 == VDK_CRYPT_ALG_ARGON2ID13, "alg id");

/* Offsets in the area header and in a slot. */
enum {
	A_MAGIC = 0,
	A_VERSION = 8,
	A_CIPHER = 10,
	A_FLAGS = 12,
	A_SALT = 16,
	A_CHECK = 32,
	S_STATE = 0,
	S_ALG = 4,
	S_OPS = 8,
	S_MEM = 16,
	S_SALT = 24,
	S_NONCE = 40,
	S_WKEY = 64,
	S_TAG = 96,
	S_RESERVED = 112,
};

/* All key material; sodium_malloc'd, so its size must keep the AES state aligned. */
struct vdk_crypt {
	crypto_aead_aes256gcm_state aes; /* expanded block key, aes256gcm only */
	uint8_t data_key[VDK_KEY_SIZE];
	uint8_t blk_key[VDK_KEY_SIZE];
	uint8_t mac_key[VDK_KEY_SIZE];
	uint8_t uuid[16];
	uint8_t nonce_salt[16];
	int cipher;
};

static const char *const vdk_cipher_names[] = {
	[VDK_CIPHER_XCHACHA] = "xchacha20poly1305",
	[VDK_CIPHER_AESGCM] = "aes256gcm",
};

static int
vdk_crypt_init(void)
{
	if (sodium_init() < 0) {
		return vd_set_error(EIO, "libsodium failed to initialise");
	}
	return 0;
}

static uint8_t *
vdk_slot(uint8_t *area, int i)
{
	return area + VDK_CRYPT_HDR_SIZE + (size_t)i * VDK_CRYPT_SLOT_SIZE;
}

static const uint8_t *
vdk_slot_c(const uint8_t *area, int i)
{
	return area + VDK_CRYPT_HDR_SIZE + (size_t)i * VDK_CRYPT_SLOT_SIZE;
}

static int
vdk_cipher_id(const char *name)
{
	if (name == NULL) {
		return VDK_CIPHER_XCHACHA;
	}
	for (size_t i = 1; i < VD_ARRAY_SIZE(vdk_cipher_names); i++) {
		if (strcmp(name, vdk_cipher_names[i]) == 0) {
			return (int)i;
		}
	}
	return 0;
}

/* Check Argon2id limits (from a caller or from the file); 0 or -EINVAL with a message. */
static int
vdk_check_limits(uint64_t ops, uint64_t mem, const char *what)
{
	if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > VDK_CRYPT_OPSLIMIT_MAX) {
		return vd_set_error(EINVAL, "%sArgon2id opslimit %llu out of range [%llu, %llu]",
				    what, (unsigned long long)ops,
				    (unsigned long long)crypto_pwhash_OPSLIMIT_MIN,
				    VDK_CRYPT_OPSLIMIT_MAX);
	}
	if (mem < crypto_pwhash_MEMLIMIT_MIN || mem > VDK_CRYPT_MEMLIMIT_MAX) {
		return vd_set_error(EINVAL, "%sArgon2id memlimit %llu out of range [%llu, %llu]",
				    what, (unsigned long long)mem,
				    (unsigned long long)crypto_pwhash_MEMLIMIT_MIN,
				    VDK_CRYPT_MEMLIMIT_MAX);
	}
	if (ops * mem > VDK_CRYPT_WORK_MAX) {
		return vd_set_error(EINVAL,
				    "%sArgon2id opslimit %llu x memlimit %llu is more work than "
				    "allowed (%llu)",
				    what, (unsigned long long)ops, (unsigned long long)mem,
				    VDK_CRYPT_WORK_MAX);
	}
	return 0;
}

/*
 * Structural check of an area: magic, version, known cipher, zero reserved
 * fields, free slots all-zero, used slots with sane parameters. Sets *nused.
 */
static int
vdk_area_validate(const uint8_t *area, int *nused)
{
	char what[48];
	int n = 0;

	if (memcmp(area + A_MAGIC, VDK_CRYPT_MAGIC, 8) != 0) {
		return vd_set_error(EINVAL, "encryption header: bad magic");
	}
	if (vd_le16(area + A_VERSION) != VDK_CRYPT_VERSION) {
		return vd_set_error(ENOTSUP, "encryption header: unsupported version %u",
				    vd_le16(area + A_VERSION));
	}
	if (vd_le16(area + A_CIPHER) != VDK_CIPHER_XCHACHA &&
	    vd_le16(area + A_CIPHER) != VDK_CIPHER_AESGCM) {
		return vd_set_error(ENOTSUP, "encryption header: unknown cipher id %u",
				    vd_le16(area + A_CIPHER));
	}
	if (vd_le32(area + A_FLAGS) != 0) {
		return vd_set_error(ENOTSUP, "encryption header: unknown flags 0x%x",
				    vd_le32(area + A_FLAGS));
	}
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		const uint8_t *s = vdk_slot_c(area, i);
		uint32_t state = vd_le32(s + S_STATE);

		if (state == 0) {
			if (!vd_is_zero(s, VDK_CRYPT_SLOT_SIZE)) {
				return vd_set_error(
					EINVAL, "encryption header: free key slot %d is not empty",
					i);
			}
			continue;
		}
		if (state != VDK_CRYPT_SLOT_USED) {
			return vd_set_error(EINVAL, "encryption header: key slot %d: bad state %u",
					    i, state);
		}
		if (vd_le32(s + S_ALG) != VDK_CRYPT_ALG_ARGON2ID13) {
			return vd_set_error(ENOTSUP,
					    "encryption header: key slot %d: unknown algorithm %u",
					    i, vd_le32(s + S_ALG));
		}
		if (!vd_is_zero(s + S_RESERVED, VDK_CRYPT_SLOT_SIZE - S_RESERVED)) {
			return vd_set_error(
				EINVAL, "encryption header: key slot %d: reserved bytes set", i);
		}
		snprintf(what, sizeof(what), "encryption header: key slot %d: ", i);
		if (vdk_check_limits(vd_le64(s + S_OPS), vd_le64(s + S_MEM), what) < 0) {
			return -EINVAL;
		}
		n++;
	}
	if (n == 0) {
		return vd_set_error(EINVAL, "encryption header: no key slot in use");
	}
	*nused = n;
	return 0;
}

/* Additional data of slot i's wrap. */
static void
vdk_slot_ad(const uint8_t *area, int i, const uint8_t uuid[16],
	    uint8_t ad[VDK_CRYPT_HDR_SIZE + VDK_CRYPT_SLOT_AD_LEN + 16])
{
	memcpy(ad, area, VDK_CRYPT_HDR_SIZE);
	memcpy(ad + VDK_CRYPT_HDR_SIZE, vdk_slot_c(area, i), VDK_CRYPT_SLOT_AD_LEN);
	memcpy(ad + VDK_CRYPT_HDR_SIZE + VDK_CRYPT_SLOT_AD_LEN, uuid, 16);
}

/* Argon2id: the key-encryption key for a passphrase and slot parameters (kek is sodium_malloc'd).
 */
static int
vdk_derive_kek(uint8_t *kek, const char *passphrase, const uint8_t *salt, uint64_t ops,
	       uint64_t mem)
{
	size_t plen = strlen(passphrase);

	if (plen > crypto_pwhash_PASSWD_MAX) {
		return vd_set_error(EINVAL, "passphrase too long");
	}
	if (crypto_pwhash(kek, VDK_KEY_SIZE, passphrase, plen, salt, ops, (size_t)mem,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		return vd_set_error(ENOMEM, "Argon2id key derivation failed (out of memory?)");
	}
	return 0;
}

/* Key check value of the area header for data_key and uuid. */
static void
vdk_key_check(const uint8_t *data_key, const uint8_t *area, const uint8_t uuid[16], uint8_t out[32])
{
	uint8_t k[VDK_KEY_SIZE];
	crypto_generichash_state st;

	crypto_kdf_derive_from_key(k, sizeof(k), 3, "vdkcheck", data_key);
	crypto_generichash_init(&st, k, sizeof(k), 32);
	crypto_generichash_update(&st, area, A_CHECK);
	crypto_generichash_update(&st, uuid, 16);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(&st, sizeof(st));
}

/* Fill c's derived keys from c->data_key, c->uuid, c->cipher. */
static int
vdk_crypt_setup(struct vdk_crypt *c)
{
	static const uint8_t personal[crypto_generichash_blake2b_PERSONALBYTES] = "vdk layer key 1";
	uint8_t *layer_key = sodium_malloc(VDK_KEY_SIZE);

	if (layer_key == NULL) {
		return vd_set_error(ENOMEM, "out of secure memory");
	}
	crypto_generichash_blake2b_salt_personal(layer_key, VDK_KEY_SIZE, c->uuid, 16, c->data_key,
						 VDK_KEY_SIZE, NULL, personal);
	crypto_kdf_derive_from_key(c->blk_key, VDK_KEY_SIZE, 1, "vdkblock", layer_key);
	crypto_kdf_derive_from_key(c->mac_key, VDK_KEY_SIZE, 2, "vdk-mac_", layer_key);
	sodium_free(layer_key);
	if (c->cipher == VDK_CIPHER_AESGCM) {
		if (!crypto_aead_aes256gcm_is_available()) {
			return vd_set_error(ENOTSUP, "cipher aes256gcm needs a CPU with AES-NI and "
						     "PCLMUL, which this one lacks");
		}
		crypto_aead_aes256gcm_beforenm(&c->aes, c->blk_key);
	}
	return 0;
}

static struct vdk_crypt *
vdk_crypt_alloc(void)
{
	struct vdk_crypt *c = sodium_malloc(sizeof(*c));

	if (c == NULL) {
		vd_set_error(ENOMEM, "out of secure memory for the image key");
		return NULL;
	}
	sodium_memzero(c, sizeof(*c));
	return c;
}

/* Wrap c->data_key into free slot i of area under passphrase. */
static int
vdk_slot_write(struct vdk_crypt *c, uint8_t *area, int i, const char *passphrase, uint64_t ops,
	       uint64_t mem)
{
	uint8_t ad[VDK_CRYPT_HDR_SIZE + VDK_CRYPT_SLOT_AD_LEN + 16];
	uint8_t *s = vdk_slot(area, i);
	uint8_t *kek;
	int r;

	if (passphrase == NULL || passphrase[0] == '\0') {
		return vd_set_error(EINVAL, "empty passphrase");
	}
	if (ops == 0) {
		ops = VDK_CRYPT_OPSLIMIT_DEFAULT;
	}
	if (mem == 0) {
		mem = VDK_CRYPT_MEMLIMIT_DEFAULT;
	}
	r = vdk_check_limits(ops, mem, "");
	if (r < 0) {
		return r;
	}
	kek = sodium_malloc(VDK_KEY_SIZE);
	if (kek == NULL) {
		return vd_set_error(ENOMEM, "out of secure memory");
	}
	memset(s, 0, VDK_CRYPT_SLOT_SIZE);
	vd_put_le32(s + S_STATE, VDK_CRYPT_SLOT_USED);
	vd_put_le32(s + S_ALG, VDK_CRYPT_ALG_ARGON2ID13);
	vd_put_le64(s + S_OPS, ops);
	vd_put_le64(s + S_MEM, mem);
	randombytes_buf(s + S_SALT, crypto_pwhash_SALTBYTES);
	randombytes_buf(s + S_NONCE, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	r = vdk_derive_kek(kek, passphrase, s + S_SALT, ops, mem);
	if (r < 0) {
		memset(s, 0, VDK_CRYPT_SLOT_SIZE);
		goto out;
	}
	vdk_slot_ad(area, i, c->uuid, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(s + S_WKEY, s + S_TAG, NULL,
							    c->data_key, VDK_KEY_SIZE, ad,
							    sizeof(ad), NULL, s + S_NONCE, kek);
out:
	sodium_free(kek);
	return r;
}

int
vdk_crypt_area_used(const uint8_t *area)
{
	return !vd_is_zero(area, VDK_CRYPT_AREA_SIZE);
}

const char *
vdk_crypt_area_cipher(const uint8_t *area)
{
	uint16_t id;

	if (memcmp(area + A_MAGIC, VDK_CRYPT_MAGIC, 8) != 0 ||
	    vd_le16(area + A_VERSION) != VDK_CRYPT_VERSION) {
		return NULL;
	}
	id = vd_le16(area + A_CIPHER);
	if (id != VDK_CIPHER_XCHACHA && id != VDK_CIPHER_AESGCM) {
		return NULL;
	}
	return vdk_cipher_names[id];
}

int
vdk_crypt_create(const char *cipher, const char *passphrase, uint64_t opslimit, uint64_t memlimit,
		 const uint8_t uuid[16], uint8_t *area, struct vdk_crypt **out)
{
	struct vdk_crypt *c;
	int id, r;

	*out = NULL;
	r = vdk_crypt_init();
	if (r < 0) {
		return r;
	}
	id = vdk_cipher_id(cipher);
	if (id == 0) {
		return vd_set_error(EINVAL, "unknown cipher '%s' (xchacha20poly1305, aes256gcm)",
				    cipher);
	}
	if (id == VDK_CIPHER_AESGCM && !crypto_aead_aes256gcm_is_available()) {
		return vd_set_error(ENOTSUP, "cipher aes256gcm needs a CPU with AES-NI and PCLMUL, "
					     "which this one lacks; use xchacha20poly1305");
	}
	c = vdk_crypt_alloc();
	if (c == NULL) {
		return -ENOMEM;
	}
	c->cipher = id;
	memcpy(c->uuid, uuid, 16);
	crypto_aead_xchacha20poly1305_ietf_keygen(c->data_key);
	randombytes_buf(c->nonce_salt, sizeof(c->nonce_salt));

	memset(area, 0, VDK_CRYPT_AREA_SIZE);
	memcpy(area + A_MAGIC, VDK_CRYPT_MAGIC, 8);
	vd_put_le16(area + A_VERSION, VDK_CRYPT_VERSION);
	vd_put_le16(area + A_CIPHER, (uint16_t)id);
	memcpy(area + A_SALT, c->nonce_salt, 16);
	vdk_key_check(c->data_key, area, uuid, area + A_CHECK);

	r = vdk_crypt_setup(c);
	if (r == 0) {
		r = vdk_slot_write(c, area, 0, passphrase, opslimit, memlimit);
	}
	if (r < 0) {
		memset(area, 0, VDK_CRYPT_AREA_SIZE);
		vdk_crypt_destroy(c);
		return r;
	}
	*out = c;
	return 0;
}

int
vdk_crypt_unlock(const uint8_t *area, const uint8_t uuid[16], const char *passphrase,
		 struct vdk_crypt **out)
{
	uint8_t ad[VDK_CRYPT_HDR_SIZE + VDK_CRYPT_SLOT_AD_LEN + 16];
	uint8_t check[32];
	struct vdk_crypt *c;
	uint8_t *kek = NULL;
	int nused, r, i;

	*out = NULL;
	r = vdk_crypt_init();
	if (r < 0) {
		return r;
	}
	r = vdk_area_validate(area, &nused);
	if (r < 0) {
		return r;
	}
	if (passphrase == NULL) {
		return vd_set_error(EACCES, "image is encrypted and no passphrase was given");
	}
	c = vdk_crypt_alloc();
	kek = sodium_malloc(VDK_KEY_SIZE);
	if (c == NULL || kek == NULL) {
		r = vd_set_error(ENOMEM, "out of secure memory for the image key");
		goto err;
	}
	for (i = 0; i < VD_KEY_SLOTS; i++) {
		const uint8_t *s = vdk_slot_c(area, i);

		if (vd_le32(s + S_STATE) != VDK_CRYPT_SLOT_USED) {
			continue;
		}
		r = vdk_derive_kek(kek, passphrase, s + S_SALT, vd_le64(s + S_OPS),
				   vd_le64(s + S_MEM));
		if (r < 0) {
			goto err;
		}
		vdk_slot_ad(area, i, uuid, ad);
		if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
			    c->data_key, NULL, s + S_WKEY, VDK_KEY_SIZE, s + S_TAG, ad, sizeof(ad),
			    s + S_NONCE, kek) == 0) {
			break;
		}
	}
	sodium_free(kek);
	kek = NULL;
	if (i == VD_KEY_SLOTS) {
		r = vd_set_error(EACCES, "wrong passphrase");
		goto err;
	}
	vdk_key_check(c->data_key, area, uuid, check);
	if (sodium_memcmp(check, area + A_CHECK, sizeof(check)) != 0) {
		r = vd_set_error(EBADMSG, "encryption header: key check failed (header tampered "
					  "or belongs to another image)");
		goto err;
	}
	c->cipher = vd_le16(area + A_CIPHER);
	memcpy(c->uuid, uuid, 16);
	memcpy(c->nonce_salt, area + A_SALT, 16);
	r = vdk_crypt_setup(c);
	if (r < 0) {
		goto err;
	}
	vd_debug("crypt", "unlocked with key slot %d of %d", i, nused);
	*out = c;
	return 0;
err:
	sodium_free(kek);
	vdk_crypt_destroy(c);
	return r;
}

void
vdk_crypt_destroy(struct vdk_crypt *c)
{
	if (c != NULL) {
		sodium_free(c); /* wipes */
	}
}

const char *
vdk_crypt_cipher(const struct vdk_crypt *c)
{
	return vdk_cipher_names[c->cipher];
}

/* Nonce and additional data for block (vblock, ctr). */
static void
vdk_block_nonce_ad(const struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, uint8_t nonce[24],
		   uint8_t ad[32])
{
	if (c->cipher == VDK_CIPHER_AESGCM) {
		memcpy(nonce, c->nonce_salt, 4);
		vd_put_le64(nonce + 4, ctr);
	} else {
		/* vblock too: a counter repeated by mistake in two places still differs */
		memcpy(nonce, c->nonce_salt, 8);
		vd_put_le64(nonce + 8, vblock);
		vd_put_le64(nonce + 16, ctr);
	}
	memcpy(ad, c->uuid, 16);
	vd_put_le64(ad + 16, vblock);
	vd_put_le64(ad + 24, ctr);
}

int
vdk_crypt_seal(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in, void *out,
	       size_t len, uint8_t tag[VDK_TAG_SIZE])
{
	uint8_t nonce[24], ad[32];

	vdk_block_nonce_ad(c, vblock, ctr, nonce, ad);
	if (c->cipher == VDK_CIPHER_AESGCM) {
		crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag, NULL, in, len, ad,
							       sizeof(ad), NULL, nonce, &c->aes);
	} else {
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
			out, tag, NULL, in, len, ad, sizeof(ad), NULL, nonce, c->blk_key);
	}
	return 0;
}

int
vdk_crypt_open(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in, void *out,
	       size_t len, const uint8_t tag[VDK_TAG_SIZE])
{
	uint8_t nonce[24], ad[32];
	int r;

	vdk_block_nonce_ad(c, vblock, ctr, nonce, ad);
	if (c->cipher == VDK_CIPHER_AESGCM) {
		r = crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, in, len, tag, ad,
								   sizeof(ad), nonce, &c->aes);
	} else {
		r = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
			out, NULL, in, len, tag, ad, sizeof(ad), nonce, c->blk_key);
	}
	if (r != 0) {
		sodium_memzero(out, len);
		return vd_set_error(EBADMSG,
				    "block %llu: authentication failed (corrupt or "
				    "tampered data)",
				    (unsigned long long)vblock);
	}
	return 0;
}

void
vdk_crypt_mac(struct vdk_crypt *c, uint64_t context, const void *buf, size_t len,
	      uint8_t out[VDK_TAG_SIZE])
{
	crypto_generichash_state st;
	uint8_t pre[24];

	vd_put_le64(pre, context);
	memcpy(pre + 8, c->uuid, 16);
	crypto_generichash_init(&st, c->mac_key, VDK_KEY_SIZE, VDK_TAG_SIZE);
	crypto_generichash_update(&st, pre, sizeof(pre));
	crypto_generichash_update(&st, buf, len);
	crypto_generichash_final(&st, out, VDK_TAG_SIZE);
	sodium_memzero(&st, sizeof(st));
}

int
vdk_crypt_slot_add(struct vdk_crypt *c, uint8_t *area, const char *new_passphrase,
		   uint64_t opslimit, uint64_t memlimit)
{
	int nused, r;

	r = vdk_area_validate(area, &nused);
	if (r < 0) {
		return r;
	}
	if (memcmp(area + A_SALT, c->nonce_salt, 16) != 0 ||
	    vd_le16(area + A_CIPHER) != c->cipher) {
		return vd_set_error(EINVAL, "encryption header does not belong to this key");
	}
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		if (vd_le32(vdk_slot(area, i) + S_STATE) == 0) {
			r = vdk_slot_write(c, area, i, new_passphrase, opslimit, memlimit);
			return r < 0 ? r : i;
		}
	}
	return vd_set_error(ENOSPC, "all %d key slots are in use", VD_KEY_SLOTS);
}

int
vdk_crypt_slot_remove(uint8_t *area, int slot)
{
	int nused, r;

	r = vdk_area_validate(area, &nused);
	if (r < 0) {
		return r;
	}
	if (slot < 0 || slot >= VD_KEY_SLOTS) {
		return vd_set_error(EINVAL, "key slot %d out of range [0, %d]", slot,
				    VD_KEY_SLOTS - 1);
	}
	if (vd_le32(vdk_slot(area, slot) + S_STATE) != VDK_CRYPT_SLOT_USED) {
		return vd_set_error(ENOENT, "key slot %d is not in use", slot);
	}
	if (nused == 1) {
		return vd_set_error(EBUSY, "refusing to remove key slot %d: it is the last one",
				    slot);
	}
	sodium_memzero(vdk_slot(area, slot), VDK_CRYPT_SLOT_SIZE);
	return 0;
}

void
vdk_crypt_slot_list(const uint8_t *area, struct vd_key_slot_info *slots)
{
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		const uint8_t *s = vdk_slot_c(area, i);

		slots[i].used = vd_le32(s + S_STATE) == VDK_CRYPT_SLOT_USED;
		slots[i].opslimit = slots[i].used ? vd_le64(s + S_OPS) : 0;
		slots[i].memlimit = slots[i].used ? vd_le64(s + S_MEM) : 0;
	}
}

int
vdk_crypt_slot_copy(const uint8_t *from, int slot, uint8_t *to)
{
	int i;

	if (slot < 0 || slot >= VD_KEY_SLOTS ||
	    vd_le32(vdk_slot_c(from, slot) + S_STATE) != VDK_CRYPT_SLOT_USED ||
	    memcmp(from, to, VDK_CRYPT_HDR_SIZE) != 0) {
		return vd_set_error(EINVAL, "key areas are not copies of one another");
	}
	/* The same index when it is free, else the first free one. */
	i = vd_le32(vdk_slot(to, slot) + S_STATE) == 0 ? slot : 0;
	while (i < VD_KEY_SLOTS && vd_le32(vdk_slot(to, i) + S_STATE) != 0) {
		i++;
	}
	if (i == VD_KEY_SLOTS) {
		return vd_set_error(ENOSPC, "all %d key slots are in use", VD_KEY_SLOTS);
	}
	memcpy(vdk_slot(to, i), vdk_slot_c(from, slot), VDK_CRYPT_SLOT_SIZE);
	return i;
}

int
vdk_crypt_slot_find(const uint8_t *area, const uint8_t *ref, int slot)
{
	if (slot < 0 || slot >= VD_KEY_SLOTS ||
	    vd_le32(vdk_slot_c(ref, slot) + S_STATE) != VDK_CRYPT_SLOT_USED) {
		return -ENOENT;
	}
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		if (memcmp(vdk_slot_c(area, i), vdk_slot_c(ref, slot), VDK_CRYPT_SLOT_SIZE) == 0) {
			return i;
		}
	}
	return -ENOENT;
}
