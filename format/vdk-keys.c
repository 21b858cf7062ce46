// SPDX-License-Identifier: MIT
/*
 * Key slots of an encrypted native image: vd_key_list, vd_key_add, vd_key_remove
 * (public API, format/vdisk.h). One file, not a chain: the header is read with
 * vdk_header_read(), the encryption area edited by vdk-crypt.c, and the header
 * committed with vdk_header_write().
 *
 * Design notes
 * - list needs no passphrase: slot use and Argon2id limits are in the clear.
 * - add and remove first unlock with an existing passphrase and verify the
 *   header MAC with the data key, so a tampered header is never re-signed.
 * - They take the exclusive lock of a writer: an image open for writing
 *   elsewhere (a vdiskfs mount) is refused with -EBUSY rather than racing its
 *   header commits.
 * - The new header is written to both header copies (two commits): after a
 *   remove, the older copy must not keep the removed slot's wrapped key, or the
 *   old passphrase would still unwrap the data key from it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "vdisk.h"
#include "internal.h"
#include "vdk.h"
#include "vdk-crypt.h"

static int
vdk_keys_open_fd(const char *path, bool rw, int *fdp)
{
	int fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);

	if (fd < 0) {
		return vd_set_error(errno, "%s: %s", path, strerror(errno));
	}
	if (rw) {
		int r = vd_lock_fd(fd, path, true);

		if (r < 0) {
			close(fd);
			return r;
		}
	}
	*fdp = fd;
	return 0;
}

static int
vdk_keys_read(int fd, const char *path, struct vdk_header *h)
{
	int r = vdk_header_read(fd, path, h);

	if (r < 0) {
		return r;
	}
	if (!(h->incompat & VDK_INCOMPAT_ENCRYPTED)) {
		return vd_set_error(EINVAL, "%s: image is not encrypted", path);
	}
	return 0;
}

/* Unlock with passphrase and check the header MAC of the copy h was read from. */
static int
vdk_keys_unlock(int fd, const char *path, struct vdk_header *h, const char *passphrase,
		struct vdk_crypt **c)
{
	uint8_t raw[VDK_HDR_SIZE], enc[VDK_HDR_SIZE];
	int r;

	r = vdk_crypt_unlock(h->crypt_area, h->uuid, passphrase, c);
	if (r < 0) {
		vd_error_prefix("%s", path);
		return r;
	}
	vdk_header_encode(h, enc, *c);
	r = vd_full_pread(fd, raw, sizeof(raw), (uint64_t)h->slot * VDK_HDR_SIZE);
	if (r < 0) {
		return vd_set_error(r, "%s: cannot read header: %s", path, strerror(-r));
	}
	if (sodium_memcmp(raw + VDK_H_MAC, enc + VDK_H_MAC, VDK_TAG_SIZE) != 0) {
		return vd_set_error(EIO, "%s: header authentication failed (tampered)", path);
	}
	return 0;
}

/* Commit h into both header copies. */
static int
vdk_keys_commit(int fd, const char *path, struct vdk_header *h, struct vdk_crypt *c)
{
	int r = vdk_header_write(fd, path, h, c);

	if (r == 0) {
		r = vdk_header_write(fd, path, h, c);
	}
	return r;
}

int
vd_key_list(const char *path, struct vd_key_slot_info *slots, const char **cipher)
{
	struct vdk_header h;
	int fd, r, n = 0;

	r = vdk_keys_open_fd(path, false, &fd);
	if (r < 0) {
		return r;
	}
	r = vdk_keys_read(fd, path, &h);
	close(fd);
	if (r < 0) {
		return r;
	}
	vdk_crypt_slot_list(h.crypt_area, slots);
	for (int i = 0; i < VD_KEY_SLOTS; i++) {
		n += slots[i].used;
	}
	if (cipher) {
		*cipher = vdk_crypt_area_cipher(h.crypt_area);
	}
	return n;
}

int
vd_key_add(const char *path, const char *passphrase, const char *new_passphrase, uint64_t opslimit,
	   uint64_t memlimit)
{
	struct vdk_crypt *c = NULL;
	struct vdk_header h;
	int fd, r, slot;

	r = vdk_keys_open_fd(path, true, &fd);
	if (r < 0) {
		return r;
	}
	r = vdk_keys_read(fd, path, &h);
	if (r == 0) {
		r = vdk_keys_unlock(fd, path, &h, passphrase, &c);
	}
	if (r < 0) {
		goto out;
	}
	slot = vdk_crypt_slot_add(c, h.crypt_area, new_passphrase, opslimit, memlimit);
	if (slot < 0) {
		vd_error_prefix("%s", path);
		r = slot;
		goto out;
	}
	r = vdk_keys_commit(fd, path, &h, c);
	if (r == 0) {
		r = slot;
	}
out:
	vdk_crypt_destroy(c);
	close(fd);
	return r;
}

int
vd_key_remove(const char *path, const char *passphrase, int slot)
{
	struct vdk_crypt *c = NULL;
	struct vdk_header h;
	int fd, r;

	r = vdk_keys_open_fd(path, true, &fd);
	if (r < 0) {
		return r;
	}
	r = vdk_keys_read(fd, path, &h);
	if (r == 0) {
		r = vdk_keys_unlock(fd, path, &h, passphrase, &c);
	}
	if (r < 0) {
		goto out;
	}
	r = vdk_crypt_slot_remove(h.crypt_area, slot);
	if (r < 0) {
		vd_error_prefix("%s", path);
		goto out;
	}
	r = vdk_keys_commit(fd, path, &h, c);
	sodium_memzero(h.crypt_area, sizeof(h.crypt_area));
out:
	vdk_crypt_destroy(c);
	close(fd);
	return r;
}
