// SPDX-License-Identifier: MIT
/*
 * Unit tests of format/vdk-crypt.c: key slots, per-block AEAD, metadata MAC.
 * Round trips for both ciphers, wrong passphrase, hundreds of random bit flips
 * (ciphertext, tag, header area) all detected, blocks moved to another address
 * or replayed under a newer counter detected, slot add/remove/last-slot
 * refusal, hostile Argon2 limits refused. Argon2 runs with the minimum limits
 * (except one create with the defaults) so the test stays fast.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tap.h"
#include "internal.h"
#include "util.h"
#include "vdk-crypt.h"

#define OPS crypto_pwhash_OPSLIMIT_MIN
#define MEM crypto_pwhash_MEMLIMIT_MIN
#define BLK 65536

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* Deterministic xorshift64* so a failure can be replayed. */
static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static const uint8_t uuid_a[16] = "uuid-of-image-A";
static const uint8_t uuid_b[16] = "uuid-of-image-B";

static uint8_t plain[BLK], ct[BLK], out[BLK];

static void
test_cipher(const char *cipher)
{
	uint8_t area[VDK_CRYPT_AREA_SIZE], area2[VDK_CRYPT_AREA_SIZE];
	uint8_t tag[VDK_TAG_SIZE], tag2[VDK_TAG_SIZE], t2[VDK_TAG_SIZE];
	uint8_t ct2[BLK];
	struct vdk_crypt *c = NULL, *u = NULL;
	int r, bad, i;

	diag("cipher %s", cipher);
	r = vdk_crypt_create(cipher, "correct horse", OPS, MEM, uuid_a, area, &c);
	if (!ok(r == 0 && c != NULL, "%s: create (%s)", cipher, r ? vd_get_error() : "ok")) {
		return;
	}
	ok(vdk_crypt_area_used(area), "%s: area marked used", cipher);
	ok(strcmp(vdk_crypt_area_cipher(area), cipher) == 0, "%s: area names the cipher", cipher);
	ok(strcmp(vdk_crypt_cipher(c), cipher) == 0, "%s: handle names the cipher", cipher);

	for (i = 0; i < BLK; i++) {
		plain[i] = (uint8_t)rnd();
	}
	check_int(vdk_crypt_seal(c, 7, 1, plain, ct, BLK, tag), 0);
	ok(memcmp(ct, plain, BLK) != 0, "%s: ciphertext differs from plaintext", cipher);
	check_int(vdk_crypt_open(c, 7, 1, ct, out, BLK, tag), 0);
	ok(memcmp(out, plain, BLK) == 0, "%s: round trip", cipher);

	/* Zero blocks must not be stored as zeros. */
	memset(out, 0, BLK);
	vdk_crypt_seal(c, 8, 2, out, ct2, BLK, t2);
	ok(!vd_is_zero(ct2, BLK), "%s: an all-zero block does not encrypt to zeros", cipher);

	/* In place, both ways. */
	memcpy(out, plain, BLK);
	vdk_crypt_seal(c, 7, 1, out, out, BLK, tag2);
	ok(memcmp(out, ct, BLK) == 0 && memcmp(tag, tag2, VDK_TAG_SIZE) == 0,
	   "%s: in-place seal gives the same ciphertext", cipher);
	check_int(vdk_crypt_open(c, 7, 1, out, out, BLK, tag), 0);
	ok(memcmp(out, plain, BLK) == 0, "%s: in-place open", cipher);

	/* A second handle from the area opens what the first sealed. */
	r = vdk_crypt_unlock(area, uuid_a, "correct horse", &u);
	ok(r == 0, "%s: unlock with the passphrase (%s)", cipher, r ? vd_get_error() : "ok");
	if (u != NULL) {
		check_int(vdk_crypt_open(u, 7, 1, ct, out, BLK, tag), 0);
		ok(memcmp(out, plain, BLK) == 0, "%s: unlocked handle decrypts", cipher);
	}

	/* Wrong passphrase, other image's uuid. */
	struct vdk_crypt *w = (struct vdk_crypt *)1;
	r = vdk_crypt_unlock(area, uuid_a, "correct horse ", &w);
	check_int(r, -EACCES);
	ok(w == NULL, "%s: no handle on failure", cipher);
	ok(strcmp(vd_get_error(), "wrong passphrase") == 0, "%s: message: %s", cipher,
	   vd_get_error());
	check_int(vdk_crypt_unlock(area, uuid_b, "correct horse", &w), -EACCES);

	/* Hundreds of random bit flips over ciphertext and tag, each detected. */
	bad = 0;
	for (i = 0; i < 400; i++) {
		uint8_t *b;
		size_t bit;

		memcpy(ct2, ct, BLK);
		memcpy(t2, tag, VDK_TAG_SIZE);
		if (i % 4 == 0) {
			bit = rnd() % (VDK_TAG_SIZE * 8);
			b = t2;
		} else {
			bit = rnd() % ((size_t)BLK * 8);
			b = ct2;
		}
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		memset(out, 0xaa, BLK);
		r = vdk_crypt_open(c, 7, 1, ct2, out, BLK, t2);
		if (r != -EBADMSG || !vd_is_zero(out, BLK)) {
			bad++;
		}
	}
	check_int(bad, 0);
	ok(strstr(vd_get_error(), "block 7") != NULL, "%s: error names the block: %s", cipher,
	   vd_get_error());

	/* Moved or swapped blocks. */
	check_int(vdk_crypt_open(c, 8, 1, ct, out, BLK, tag), -EBADMSG);
	vdk_crypt_seal(c, 8, 2, plain + 1, ct2, BLK - 1, t2);
	check_int(vdk_crypt_open(c, 7, 2, ct2, out, BLK - 1, t2), -EBADMSG);
	check_int(vdk_crypt_open(c, 8, 1, ct, out, BLK, tag), -EBADMSG);
	check_int(vdk_crypt_open(c, 8, 2, ct2, out, BLK - 1, t2), 0);

	/*
	 * XChaCha: the nonce also holds the block address, so a counter repeated
	 * by mistake for two blocks still gives two keystreams.
	 */
	if (strcmp(cipher, "xchacha20poly1305") == 0) {
		memset(out, 0, BLK);
		vdk_crypt_seal(c, 100, 42, out, ct2, 4096, t2);
		vdk_crypt_seal(c, 101, 42, out, out, 4096, tag2);
		ok(memcmp(ct2, out, 4096) != 0, "xchacha: same ctr, other block: other keystream");
	}

	/* Replay: an older version of block 7 under the newer map entry (ctr 3). */
	memset(out, 0x55, BLK);
	vdk_crypt_seal(c, 7, 3, out, ct2, BLK, tag2);
	check_int(vdk_crypt_open(c, 7, 3, ct, out, BLK, tag), -EBADMSG);
	check_int(vdk_crypt_open(c, 7, 3, ct, out, BLK, tag2), -EBADMSG);
	check_int(vdk_crypt_open(c, 7, 1, ct2, out, BLK, tag2), -EBADMSG);
	check_int(vdk_crypt_open(c, 7, 3, ct2, out, BLK, tag2), 0);
	/* Same key and counter, another image (uuid): different keystream, and not accepted. */
	if (u != NULL) {
		struct vdk_crypt *cb = NULL;

		memcpy(area2, area, sizeof(area));
		/* The same wrapped key opened for another layer uuid fails (the uuid is bound). */
		check_int(vdk_crypt_unlock(area2, uuid_b, "correct horse", &cb), -EACCES);
	}

	/* Hundreds of random bit flips over the header area, each detected at unlock. */
	bad = 0;
	for (i = 0; i < 300; i++) {
		size_t bit = rnd() % (VDK_CRYPT_AREA_SIZE * 8);
		struct vdk_crypt *t = NULL;

		memcpy(area2, area, sizeof(area));
		area2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		r = vdk_crypt_unlock(area2, uuid_a, "correct horse", &t);
		if (r == 0 || t != NULL) {
			diag("flip of area bit %zu not detected", bit);
			bad++;
			vdk_crypt_destroy(t);
		}
	}
	check_int(bad, 0);

	vdk_crypt_destroy(u);
	vdk_crypt_destroy(c);
}

static void
test_slots(void)
{
	uint8_t area[VDK_CRYPT_AREA_SIZE], tag[VDK_TAG_SIZE];
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	struct vdk_crypt *c = NULL, *u = NULL;
	char pass[32];
	int r, i;

	r = vdk_crypt_create(NULL, "first", OPS, MEM, uuid_a, area, &c);
	if (!ok(r == 0, "slots: create with the default cipher")) {
		return;
	}
	ok(strcmp(vdk_crypt_cipher(c), "xchacha20poly1305") == 0, "default cipher is xchacha");
	vdk_crypt_seal(c, 1, 1, plain, ct, 4096, tag);
	vdk_crypt_slot_list(area, slots);
	ok(slots[0].used && slots[0].opslimit == OPS && slots[0].memlimit == MEM,
	   "slot 0 listed with its limits");
	for (i = 1; i < VD_KEY_SLOTS; i++) {
		if (slots[i].used) {
			break;
		}
	}
	check_int(i, VD_KEY_SLOTS);
	check_int(vdk_crypt_slot_remove(area, 0), -EBUSY);
	ok(strstr(vd_get_error(), "last") != NULL, "last slot refusal says why: %s",
	   vd_get_error());

	r = vdk_crypt_slot_add(c, area, "second", OPS + 1, MEM * 2);
	check_int(r, 1);
	vdk_crypt_slot_list(area, slots);
	ok(slots[1].used && slots[1].opslimit == OPS + 1 && slots[1].memlimit == MEM * 2,
	   "slot 1 listed with its own limits");
	r = vdk_crypt_unlock(area, uuid_a, "second", &u);
	ok(r == 0, "unlock through the new slot");
	if (u != NULL) {
		check_int(vdk_crypt_open(u, 1, 1, ct, out, 4096, tag), 0);
		ok(memcmp(out, plain, 4096) == 0, "new slot gives the same data key");
		vdk_crypt_destroy(u);
		u = NULL;
	}
	check_int(vdk_crypt_slot_remove(area, 0), 0);
	check_int(vdk_crypt_unlock(area, uuid_a, "first", &u), -EACCES);
	check_int(vdk_crypt_slot_remove(area, 0), -ENOENT);
	check_int(vdk_crypt_slot_remove(area, 8), -EINVAL);
	check_int(vdk_crypt_slot_remove(area, -1), -EINVAL);
	check_int(vdk_crypt_slot_remove(area, 1), -EBUSY);
	r = vdk_crypt_unlock(area, uuid_a, "second", &u);
	ok(r == 0, "remaining slot still unlocks");
	vdk_crypt_destroy(u);
	u = NULL;

	/* Fill every slot; the ninth passphrase has nowhere to go. */
	for (i = 0; i < VD_KEY_SLOTS - 1; i++) {
		snprintf(pass, sizeof(pass), "pass-%d", i);
		r = vdk_crypt_slot_add(c, area, pass, OPS, MEM);
		if (r < 0) {
			break;
		}
	}
	check_int(i, VD_KEY_SLOTS - 1);
	check_int(vdk_crypt_slot_add(c, area, "ninth", OPS, MEM), -ENOSPC);
	r = vdk_crypt_unlock(area, uuid_a, "pass-6", &u);
	ok(r == 0, "the last slot filled unlocks (%s)", r ? vd_get_error() : "ok");
	vdk_crypt_destroy(u);
	u = NULL;
	check_int(vdk_crypt_slot_add(c, area, "", OPS, MEM), -ENOSPC);
	check_int(vdk_crypt_slot_remove(area, 3), 0);
	check_int(vdk_crypt_slot_add(c, area, "", OPS, MEM), -EINVAL);
	check_int(vdk_crypt_slot_add(c, area, "x", 1000, MEM), -EINVAL);
	check_int(vdk_crypt_slot_add(c, area, "x", OPS, 1ull << 40), -EINVAL);
	check_int(vdk_crypt_slot_add(c, area, "again", OPS, MEM), 3);

	/* Slots copy between copies of one area (the files of a chain), at any index. */
	{
		uint8_t a2[VDK_CRYPT_AREA_SIZE];
		struct vdk_crypt *t = NULL;

		memcpy(a2, area, sizeof(a2)); /* all 8 slots used */
		check_int(vdk_crypt_slot_copy(area, 3, a2), -ENOSPC);
		check_int(vdk_crypt_slot_remove(a2, 3), 0);
		check_int(vdk_crypt_slot_find(a2, area, 3), -ENOENT);
		check_int(vdk_crypt_slot_find(a2, area, 4), 4);
		check_int(vdk_crypt_slot_copy(area, 3, a2), 3); /* same index when free */
		check_int(vdk_crypt_slot_find(a2, area, 3), 3);
		check_int(vdk_crypt_slot_remove(a2, 3), 0);
		check_int(vdk_crypt_slot_remove(a2, 6), 0);
		check_int(vdk_crypt_slot_copy(area, 3, a2), 3);
		check_int(vdk_crypt_slot_remove(a2, 3), 0);
		memcpy(a2 + 64 + 3 * 184, area + 64 + 4 * 184, 184); /* slot 3 taken by another */
		check_int(vdk_crypt_slot_remove(a2, 4), 0);
		check_int(vdk_crypt_slot_copy(area, 3, a2), 4); /* else the first free index */
		check_int(vdk_crypt_slot_find(a2, area, 3), 4);
		r = vdk_crypt_unlock(a2, uuid_a, "again", &t);
		ok(r == 0, "a slot copied to another index still opens (%s)",
		   r ? vd_get_error() : "ok");
		vdk_crypt_destroy(t);
	}

	/*
	 * Key check: a header field edited and a slot re-made around it (an
	 * attacker who knows one passphrase but not the key) is caught.
	 */
	{
		struct vdk_crypt *t = NULL;
		uint8_t a2[VDK_CRYPT_AREA_SIZE];

		memcpy(a2, area, sizeof(a2));
		a2[40] ^= 1; /* inside the key check value */
		check_int(vdk_crypt_unlock(a2, uuid_a, "again", &t), -EACCES);
		check_int(vdk_crypt_slot_remove(a2, 3), 0);
		r = vdk_crypt_slot_add(c, a2, "again", OPS, MEM);
		check_int(r, 3);
		check_int(vdk_crypt_unlock(a2, uuid_a, "again", &t), -EBADMSG);
		ok(strstr(vd_get_error(), "key check") != NULL, "key check message: %s",
		   vd_get_error());
	}
	vdk_crypt_destroy(c);
}

static void
test_mac(void)
{
	uint8_t area[VDK_CRYPT_AREA_SIZE], area_b[VDK_CRYPT_AREA_SIZE];
	uint8_t m1[VDK_TAG_SIZE], m2[VDK_TAG_SIZE], buf[512];
	struct vdk_crypt *c = NULL, *u = NULL, *b = NULL;

	memset(buf, 0x42, sizeof(buf));
	if (vdk_crypt_create(NULL, "mac", OPS, MEM, uuid_a, area, &c) != 0 ||
	    vdk_crypt_unlock(area, uuid_a, "mac", &u) != 0 ||
	    vdk_crypt_create(NULL, "mac", OPS, MEM, uuid_b, area_b, &b) != 0) {
		ok(0, "mac: setup: %s", vd_get_error());
		return;
	}
	vdk_crypt_mac(c, 1, buf, sizeof(buf), m1);
	vdk_crypt_mac(u, 1, buf, sizeof(buf), m2);
	ok(memcmp(m1, m2, VDK_TAG_SIZE) == 0, "mac: same key, context, data -> same MAC");
	vdk_crypt_mac(c, 2, buf, sizeof(buf), m2);
	ok(memcmp(m1, m2, VDK_TAG_SIZE) != 0, "mac: context is bound");
	buf[100] ^= 0x10;
	vdk_crypt_mac(c, 1, buf, sizeof(buf), m2);
	ok(memcmp(m1, m2, VDK_TAG_SIZE) != 0, "mac: one flipped bit changes it");
	buf[100] ^= 0x10;
	vdk_crypt_mac(c, 1, buf, sizeof(buf) - 1, m2);
	ok(memcmp(m1, m2, VDK_TAG_SIZE) != 0, "mac: length is bound");
	vdk_crypt_mac(b, 1, buf, sizeof(buf), m2);
	ok(memcmp(m1, m2, VDK_TAG_SIZE) != 0, "mac: another image's key gives another MAC");
	vdk_crypt_destroy(b);
	vdk_crypt_destroy(u);
	vdk_crypt_destroy(c);
}

static void
test_hostile(void)
{
	uint8_t area[VDK_CRYPT_AREA_SIZE], zero[VDK_CRYPT_AREA_SIZE] = {0};
	struct vdk_crypt *c = NULL;
	int r;

	ok(!vdk_crypt_area_used(zero), "an all-zero area is not encrypted");
	ok(vdk_crypt_area_cipher(zero) == NULL, "no cipher in an all-zero area");
	check_int(vdk_crypt_unlock(zero, uuid_a, "x", &c), -EINVAL);

	check_int(vdk_crypt_create("rot13", "x", OPS, MEM, uuid_a, area, &c), -EINVAL);
	ok(strstr(vd_get_error(), "rot13") != NULL, "unknown cipher named: %s", vd_get_error());
	check_int(vdk_crypt_create(NULL, "", OPS, MEM, uuid_a, area, &c), -EINVAL);
	check_int(vdk_crypt_create(NULL, "x", 65, MEM, uuid_a, area, &c), -EINVAL);
	check_int(vdk_crypt_create(NULL, "x", OPS, 2ull << 30, uuid_a, area, &c), -EINVAL);
	check_int(vdk_crypt_create(NULL, "x", 32, 1ull << 30, uuid_a, area, &c), -EINVAL);
	ok(c == NULL, "no handle after a refused create");

	if (vdk_crypt_create(NULL, "x", OPS, MEM, uuid_a, area, &c) != 0) {
		ok(0, "hostile: setup");
		return;
	}
	vdk_crypt_destroy(c);
	c = NULL;
	/* A slot asking for 1 TiB of memory or 2^40 passes is refused before any hashing. */
	vd_put_le64(area + 64 + 16, 1ull << 40);
	r = vdk_crypt_unlock(area, uuid_a, "x", &c);
	check_int(r, -EINVAL);
	ok(strstr(vd_get_error(), "memlimit") != NULL, "absurd memlimit refused: %s",
	   vd_get_error());
	vd_put_le64(area + 64 + 16, MEM);
	vd_put_le64(area + 64 + 8, 1ull << 40);
	check_int(vdk_crypt_unlock(area, uuid_a, "x", &c), -EINVAL);
	ok(strstr(vd_get_error(), "opslimit") != NULL, "absurd opslimit refused: %s",
	   vd_get_error());
	vd_put_le64(area + 64 + 8, OPS);
	check_int(vdk_crypt_unlock(area, uuid_a, "x", &c), 0);
	vdk_crypt_destroy(c);
	c = NULL;
	area[10] = 9;
	check_int(vdk_crypt_unlock(area, uuid_a, "x", &c), -ENOTSUP);
	ok(vdk_crypt_area_cipher(area) == NULL, "unknown cipher id gives no name");
	ok(vdk_crypt_area_used(area), "but the area is still marked used");
}

/*
 * The default opslimit (0 = default) with a tiny memlimit; the default memlimit
 * (256 MiB) is not exercised here so that tests stay light on a shared
 * machine (scripts/bench-crypt.sh times an unlock with both defaults).
 */
static void
test_defaults(void)
{
	uint8_t area[VDK_CRYPT_AREA_SIZE];
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	struct vdk_crypt *c = NULL;

	if (!ok(vdk_crypt_create(NULL, "defaults", 0, MEM, uuid_a, area, &c) == 0,
		"create with the default Argon2id opslimit")) {
		return;
	}
	vdk_crypt_slot_list(area, slots);
	ok(slots[0].opslimit > crypto_pwhash_OPSLIMIT_MODERATE && slots[0].memlimit == MEM,
	   "default opslimit above MODERATE (ops %llu)", (unsigned long long)slots[0].opslimit);
	vdk_crypt_destroy(c);
	/* An opslimit over the bound is refused before any hashing. */
	check_int(vdk_crypt_create(NULL, "x", 65, 0, uuid_a, area, &c), -EINVAL);
}

int
main(void)
{
	if (sodium_init() < 0) {
		return 1;
	}
	test_cipher("xchacha20poly1305");
	if (crypto_aead_aes256gcm_is_available()) {
		test_cipher("aes256gcm");
	} else {
		uint8_t area[VDK_CRYPT_AREA_SIZE];
		struct vdk_crypt *c = NULL;

		diag("no AES-NI: checking the refusal only");
		check_int(vdk_crypt_create("aes256gcm", "x", OPS, MEM, uuid_a, area, &c), -ENOTSUP);
	}
	test_slots();
	test_mac();
	test_hostile();
	test_defaults();
	return done_testing();
}
