// SPDX-License-Identifier: MIT
/*
 * Encrypted native images through the public library API (vd_create, vd_open
 * with a passphrase callback, vd_pread/vd_pwrite, vd_check, vd_key_*): round
 * trip for both ciphers, wrong passphrase, a tampered block is -EIO/-EBADMSG
 * for that block only while the rest of the disk reads, a forged header (valid
 * XXH3, no or foreign MAC, e.g. a rolled-back AEAD counter) refuses to open,
 * key slots through the public API, and -EBUSY while the image is open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "tap.h"
#include "vdisk.h"
#include "vdk.h"
#include "util.h"
#include "vdk-map-walk.h"

#define BS 4096u
#define NB 64u

static char dir[] = "/dev/shm/t-crypt-image.XXXXXX";
static char path[256];
static uint8_t data[NB * BS], buf[NB * BS];

static int
pass_cb(void *opaque, const char *p, char *out, size_t size)
{
	(void)p;
	snprintf(out, size, "%s", (const char *)opaque);
	return 0;
}

static struct vd_image *
open_img(const char *pass, bool rw)
{
	struct vd_open_opts o = {
		.flags = rw ? VD_OPEN_RDWR : 0,
		.passphrase = pass ? pass_cb : NULL,
		.passphrase_opaque = (void *)pass,
	};

	return vd_open(path, &o);
}

struct find_block {
	uint64_t vb, off;
};

static void
find_cb(void *opaque, uint64_t vb, const struct vdk_entry *e)
{
	struct find_block *f = opaque;

	if (vb == f->vb) {
		f->off = e->ptr & ~VDK_PTR_FLAGS;
	}
}

/* File offset of virtual block vb, 0 if none. */
static uint64_t
block_offset(uint64_t vb)
{
	struct find_block f = {.vb = vb};

	map_walk(path, NULL, find_cb, &f);
	return f.off;
}

static void
flip_byte(uint64_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	if (fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1) {
		b ^= mask;
		if (pwrite(fd, &b, 1, (off_t)off) != 1) {
			diag("pwrite failed");
		}
	}
	if (fd >= 0) {
		close(fd);
	}
}

static void
count_cb(void *opaque, int layer, enum vd_check_severity sev, const char *msg)
{
	(void)layer;
	if (sev == VD_CHECK_CORRUPT) {
		(*(int *)opaque)++;
		diag("check: %s", msg);
	}
}

static void
test_image(const char *cipher)
{
	struct vd_create_opts co = {
		.size = NB * BS,
		.block_size = BS,
		.cipher = cipher,
		.passphrase = "pw one",
		.pwhash_opslimit = crypto_pwhash_OPSLIMIT_MIN,
		.pwhash_memlimit = crypto_pwhash_MEMLIMIT_MIN,
	};
	struct vd_layer_info li;
	struct vd_check_result res;
	struct vd_image *img;
	uint64_t off;
	int r, bad, ncorrupt = 0;

	snprintf(path, sizeof(path), "%s/%s.vdk", dir, cipher);
	r = vd_create(path, &co);
	if (!ok(r == 0, "%s: vd_create (%s)", cipher, r ? vd_get_error() : "ok")) {
		return;
	}
	img = open_img(NULL, false);
	ok(img == NULL && vd_get_errno() == EACCES, "%s: no passphrase callback: EACCES", cipher);
	img = open_img("pw two", false);
	ok(img == NULL && vd_get_errno() == EACCES, "%s: wrong passphrase: EACCES", cipher);
	ok(strstr(vd_get_error(), "wrong passphrase") != NULL, "%s: message: %s", cipher,
	   vd_get_error());

	img = open_img("pw one", true);
	if (!ok(img != NULL, "%s: open read-write (%s)", cipher, img ? "ok" : vd_get_error())) {
		return;
	}
	vd_layer_info(img, 0, &li);
	ok(li.encrypted && li.cipher && strcmp(li.cipher, cipher) == 0, "%s: layer info", cipher);
	randombytes_buf(data, sizeof(data));
	check_int(vd_pwrite(img, data, sizeof(data), 0), 0);
	check_int(vd_close(img), 0);

	img = open_img("pw one", false);
	if (!ok(img != NULL, "%s: reopen", cipher)) {
		return;
	}
	check_int(vd_pread(img, buf, sizeof(buf), 0), 0);
	ok(memcmp(buf, data, sizeof(buf)) == 0, "%s: round trip", cipher);
	vd_close(img);

	/* One flipped bit in block 17: that block fails, every other reads. */
	off = block_offset(17);
	if (!ok(off != 0, "%s: block 17 located at %llu", cipher, (unsigned long long)off)) {
		return;
	}
	flip_byte(off + 1000, 0x10);
	img = open_img("pw one", false);
	if (!ok(img != NULL, "%s: open after tampering a block", cipher)) {
		return;
	}
	bad = 0;
	for (unsigned i = 0; i < NB; i++) {
		r = vd_pread(img, buf, BS, (uint64_t)i * BS);
		if (i == 17) {
			ok(r == -EIO || r == -EBADMSG, "%s: tampered block 17: %d (%s)", cipher, r,
			   vd_get_error());
			ok(strstr(vd_get_error(), "block 17") != NULL, "%s: error names block 17",
			   cipher);
		} else if (r != 0 || memcmp(buf, data + (size_t)i * BS, BS) != 0) {
			bad++;
		}
	}
	check_int(bad, 0);
	/* The same in one large read, whose blocks are opened on several threads. */
	memset(buf, 0xee, sizeof(buf));
	r = vd_pread(img, buf, sizeof(buf), 0);
	ok(r == -EIO && strstr(vd_get_error(), "block 17 ") != NULL,
	   "%s: one %u-block read: EIO naming block 17: %d (%s)", cipher, NB, r, vd_get_error());
	ok(vd_is_zero(buf, sizeof(buf)), "%s: and it hands out no unverified byte", cipher);
	vd_close(img);
	/* Two bad blocks in different chunks: the error names the first one, whichever fails first. */
	{
		uint64_t off2 = block_offset(50);

		flip_byte(off2 + 7, 0x01);
		img = open_img("pw one", false);
		for (int k = 0; k < 20 && img; k++) {
			r = vd_pread(img, buf, sizeof(buf), 0);
			if (r != -EIO || !strstr(vd_get_error(), "block 17 ")) {
				break;
			}
		}
		ok(img && r == -EIO && strstr(vd_get_error(), "block 17 ") != NULL,
		   "%s: blocks 17 and 50 bad: the error names 17 (%s)", cipher,
		   img ? vd_get_error() : "no image");
		r = img ? vd_pread(img, buf, 8 * BS, 48 * BS) : -1;
		ok(r == -EIO && strstr(vd_get_error(), "block 50 ") != NULL, "%s: and 50 from 48 on",
		   cipher);
		vd_close(img);
		flip_byte(off2 + 7, 0x01);
	}
	img = open_img("pw one", false);
	if (!ok(img != NULL, "%s: reopen", cipher)) {
		return;
	}
	memset(&res, 0, sizeof(res));
	check_int(vd_check(img, count_cb, &ncorrupt, &res), 0);
	check_int(ncorrupt, 1);
	check_int(res.corrupt, 1);
	vd_close(img);
	flip_byte(off + 1000, 0x10);

	/*
	 * Forged headers: valid XXH3 but no MAC, or the MAC of another key. The
	 * forgery rolls the AEAD counter back, which would make a writer reuse nonces.
	 */
	{
		struct vdk_header h;
		struct vdk_crypt *other = NULL;
		uint8_t area[VDK_CRYPT_AREA_SIZE], hb[VDK_HDR_SIZE];
		int fd = open(path, O_RDWR);

		if (!ok(fd >= 0 && vdk_header_read(fd, path, &h) == 0, "%s: read header", cipher)) {
			return;
		}
		h.ctr_next = 0;
		vdk_header_encode(&h, hb, NULL);
		check_int(vd_full_pwrite(fd, hb, sizeof(hb), 0), 0);
		check_int(vd_full_pwrite(fd, hb, sizeof(hb), VDK_HDR_SIZE), 0);
		img = open_img("pw one", true);
		ok(img == NULL && strstr(vd_get_error(), "authentication") != NULL,
		   "%s: header without MAC refused: %s", cipher, img ? "opened!" : vd_get_error());
		vd_close(img);
		check_int(vdk_crypt_create(cipher, "x", crypto_pwhash_OPSLIMIT_MIN,
					   crypto_pwhash_MEMLIMIT_MIN, h.uuid, area, &other),
			  0);
		vdk_header_encode(&h, hb, other);
		check_int(vd_full_pwrite(fd, hb, sizeof(hb), 0), 0);
		check_int(vd_full_pwrite(fd, hb, sizeof(hb), VDK_HDR_SIZE), 0);
		img = open_img("pw one", true);
		ok(img == NULL && strstr(vd_get_error(), "authentication") != NULL,
		   "%s: header with another key's MAC refused: %s", cipher,
		   img ? "opened!" : vd_get_error());
		vd_close(img);
		vdk_crypt_destroy(other);
		close(fd);
	}
}

static void
test_keys(void)
{
	struct vd_create_opts co = {
		.size = 1 << 20,
		.cipher = "xchacha20poly1305",
		.passphrase = "alpha",
		.pwhash_opslimit = crypto_pwhash_OPSLIMIT_MIN,
		.pwhash_memlimit = crypto_pwhash_MEMLIMIT_MIN,
	};
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	const char *cipher = NULL;
	struct vd_image *img;
	int r;

	snprintf(path, sizeof(path), "%s/keys.vdk", dir);
	if (!ok(vd_create(path, &co) == 0, "keys: create")) {
		return;
	}
	r = vd_key_list(path, slots, &cipher);
	check_int(r, 1);
	ok(cipher && strcmp(cipher, "xchacha20poly1305") == 0, "keys: cipher listed");
	ok(slots[0].used && slots[0].opslimit == crypto_pwhash_OPSLIMIT_MIN, "keys: slot 0");
	check_int(vd_key_add(path, "wrong", "beta", 1, crypto_pwhash_MEMLIMIT_MIN), -EACCES);
	ok(strcmp(vd_get_error(), "") != 0 && strstr(vd_get_error(), "wrong passphrase"),
	   "keys: %s", vd_get_error());
	check_int(vd_key_add(path, "alpha", "beta", 1, crypto_pwhash_MEMLIMIT_MIN), 1);
	check_int(vd_key_list(path, slots, NULL), 2);
	check_int(vd_key_remove(path, "beta", 1), 0);
	check_int(vd_key_remove(path, "beta", 0), -EACCES);
	check_int(vd_key_remove(path, "alpha", 0), -EBUSY);
	check_int(vd_key_remove(path, "alpha", 5), -ENOENT);
	check_int(vd_key_add(path, "alpha", "gamma", 1000, crypto_pwhash_MEMLIMIT_MIN), -EINVAL);

	img = open_img("alpha", true);
	if (ok(img != NULL, "keys: open for writing")) {
		check_int(vd_key_add(path, "alpha", "beta", 1, crypto_pwhash_MEMLIMIT_MIN), -EBUSY);
		vd_close(img);
	}
	img = open_img("alpha", false);
	ok(img != NULL, "keys: still opens after the key changes");
	vd_close(img);

	co.cipher = NULL;
	snprintf(path, sizeof(path), "%s/plain.vdk", dir);
	if (ok(vd_create(path, &co) == 0, "keys: plain image")) {
		check_int(vd_key_list(path, slots, &cipher), -EINVAL);
		ok(strstr(vd_get_error(), "not encrypted") != NULL, "keys: %s", vd_get_error());
	}
	snprintf(path, sizeof(path), "%s/missing.vdk", dir);
	check_int(vd_key_list(path, slots, &cipher), -ENOENT);
}

int
main(void)
{
	char cmd[300];

	if (sodium_init() < 0 || !mkdtemp(dir)) {
		return 1;
	}
	test_image("xchacha20poly1305");
	if (crypto_aead_aes256gcm_is_available()) {
		test_image("aes256gcm");
	}
	test_keys();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	return done_testing();
}
