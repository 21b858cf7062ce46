/* SPDX-License-Identifier: MIT */
/*
 * Test helper: wrap vd_create/vd_open so that a test written for plain images
 * (#included after this header) runs on encrypted ones: every image created
 * gets model_cipher and a fixed passphrase with the minimum Argon2id limits,
 * every open gets the passphrase callback.
 */
#ifndef TESTS_CRYPT_WRAP_H
#define TESTS_CRYPT_WRAP_H

#include <string.h>

#include <sodium.h>

#include "vdisk.h"

static const char *model_cipher __attribute__((unused)) = "xchacha20poly1305";

static int
model_pass(void *opaque, const char *path, char *buf, size_t size)
{
	(void)opaque;
	(void)path;
	strncpy(buf, "model passphrase", size - 1);
	buf[size - 1] = '\0';
	return 0;
}

static int
crypt_create(const char *path, const struct vd_create_opts *opts)
{
	struct vd_create_opts o = *opts;

	o.cipher = model_cipher;
	o.passphrase = "model passphrase";
	o.pwhash_opslimit = crypto_pwhash_OPSLIMIT_MIN;
	o.pwhash_memlimit = crypto_pwhash_MEMLIMIT_MIN;
	o.backing_passphrase = model_pass;
	return vd_create(path, &o);
}

static struct vd_image *
crypt_open(const char *path, const struct vd_open_opts *opts)
{
	struct vd_open_opts o = {0};

	if (opts) {
		o = *opts;
	}
	o.passphrase = model_pass;
	return vd_open(path, &o);
}

#define vd_create(p, o) crypt_create(p, o)
#define vd_open(p, o) crypt_open(p, o)

#endif
