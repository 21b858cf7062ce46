// SPDX-License-Identifier: MIT
/*
 * Key slots of an encrypted native image: vd_key_list, vd_key_add, vd_key_remove
 * (public API, format/vdisk.h). Headers are read with vdk_header_read(), the
 * encryption area edited by vdk-crypt.c, and headers committed with
 * vdk_header_write().
 *
 * Design notes
 * - list needs no passphrase: slot use and Argon2id limits are in the clear.
 * - The layers of a chain (the top and its frozen snapshots, same uuid) share
 *   one data key, and each file holds its own copy of the key slots. add and
 *   remove therefore apply to path and to every native backing file of its
 *   chain with the same uuid: otherwise a new passphrase would open the top
 *   but not its snapshots, and a removed one would still unwrap the data key
 *   from a snapshot's header. A slot added to the top is copied verbatim into
 *   the other files (the same index when free; no Argon2id run per file; a
 *   slot's wrap does not depend on its index); a slot is removed wherever an
 *   identical copy of it is found.
 * - Every file is locked exclusively first (a chain open elsewhere, a mount,
 *   is refused with -EBUSY), unlocked with the passphrase / checked against
 *   the data key (header MAC), and every change is checked before the first
 *   file is written: a refusal (last slot somewhere, no free slot) changes
 *   nothing. The files are then committed one by one, the top last; a crash
 *   in between leaves a slot added to (or removed from) some snapshot files
 *   only, which a second run completes.
 * - Each file's new header is written to both header copies (two commits):
 *   after a remove, the older copy must not keep the removed slot's wrapped
 *   key, or the old passphrase would still unwrap the data key from it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "vdisk.h"
#include "internal.h"
#include "vdk.h"
#include "vdk-crypt.h"

#define VDK_KEYS_MAX_LAYERS 256

struct vdk_keys_file {
	char *path;
	int fd;
	struct vdk_header h;
};

struct vdk_keys_chain {
	struct vdk_keys_file *f;
	int n;
	struct vdk_crypt *crypt;
};

static int
vdk_keys_open_fd(const char *path, bool rw, int *fdp)
{
	int fd = vd_open_file(path, rw ? O_RDWR : O_RDONLY);

	if (fd < 0) {
		return fd;
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

/* Check the MAC of the header copy h was read from against the data key. */
static int
vdk_keys_check_mac(const struct vdk_keys_file *f, struct vdk_crypt *c)
{
	uint8_t raw[VDK_HDR_SIZE], enc[VDK_HDR_SIZE];
	int r;

	vdk_header_encode(&f->h, enc, c);
	r = vd_full_pread(f->fd, raw, sizeof(raw), (uint64_t)f->h.slot * VDK_HDR_SIZE);
	if (r < 0) {
		return vd_set_error(r, "%s: cannot read header: %s", f->path, strerror(-r));
	}
	if (sodium_memcmp(raw + VDK_H_MAC, enc + VDK_H_MAC, VDK_TAG_SIZE) != 0) {
		return vd_set_error(EIO, "%s: header authentication failed (tampered)", f->path);
	}
	return 0;
}

static void
vdk_keys_chain_close(struct vdk_keys_chain *ch)
{
	for (int i = 0; i < ch->n; i++) {
		sodium_memzero(ch->f[i].h.crypt_area, sizeof(ch->f[i].h.crypt_area));
		close(ch->f[i].fd);
		free(ch->f[i].path);
	}
	free(ch->f);
	vdk_crypt_destroy(ch->crypt);
	memset(ch, 0, sizeof(*ch));
}

/*
 * Open and lock path, unlock it with passphrase, then follow its native
 * backing files while they share its uuid (the same data key), checking
 * each header's MAC.
 */
static int
vdk_keys_chain_open(const char *path, const char *passphrase, struct vdk_keys_chain *ch)
{
	struct vdk_keys_file *f;
	int r;

	memset(ch, 0, sizeof(*ch));
	ch->f = calloc(VDK_KEYS_MAX_LAYERS, sizeof(*ch->f));
	if (!ch->f) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	f = &ch->f[0];
	f->path = strdup(path);
	if (!f->path) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	r = vdk_keys_open_fd(path, true, &f->fd);
	if (r < 0) {
		free(f->path);
		return r;
	}
	ch->n = 1;
	r = vdk_keys_read(f->fd, path, &f->h);
	if (r < 0) {
		return r;
	}
	r = vdk_crypt_unlock(f->h.crypt_area, f->h.uuid, passphrase, &ch->crypt);
	if (r < 0) {
		vd_error_prefix("%s", path);
		return r;
	}
	r = vdk_keys_check_mac(f, ch->crypt);
	while (r == 0 && f->h.backing[0] && strcmp(f->h.backing_fmt, "vdk") == 0) {
		struct vdk_keys_file *b = &ch->f[ch->n];
		struct vdk_header h;
		int fd;

		if (ch->n == VDK_KEYS_MAX_LAYERS) {
			return vd_set_error(ELOOP, "%s: backing chain longer than %d files", path,
					    VDK_KEYS_MAX_LAYERS);
		}
		b->path = vd_resolve_relative(f->path, f->h.backing);
		if (!b->path) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		/* Read-only first: a backing with another key is left alone, even unwritable. */
		r = vdk_keys_open_fd(b->path, false, &fd);
		if (r == 0) {
			r = vdk_header_read(fd, b->path, &h);
			close(fd);
		}
		if (r < 0 || !(h.incompat & VDK_INCOMPAT_ENCRYPTED) ||
		    memcmp(h.uuid, ch->f[0].h.uuid, 16) != 0) {
			free(b->path);
			b->path = NULL;
			return r < 0 ? r : 0;
		}
		r = vdk_keys_open_fd(b->path, true, &b->fd);
		if (r < 0) {
			vd_error_prefix("%s: snapshot file %s holds a copy of the key slots", path,
					b->path);
			free(b->path);
			b->path = NULL;
			return r;
		}
		ch->n++;
		r = vdk_header_read(b->fd, b->path, &b->h);
		if (r == 0) {
			r = vdk_keys_check_mac(b, ch->crypt);
		}
		f = b;
	}
	return r;
}

/* Commit every file's header to both copies, the top last. */
static int
vdk_keys_chain_commit(struct vdk_keys_chain *ch)
{
	int r = 0;

	for (int i = ch->n - 1; i >= 0 && r == 0; i--) {
		struct vdk_keys_file *f = &ch->f[i];

		r = vdk_header_write(f->fd, f->path, &f->h, ch->crypt);
		if (r == 0) {
			r = vdk_header_write(f->fd, f->path, &f->h, ch->crypt);
		}
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
	struct vdk_keys_chain ch;
	int r, slot;

	r = vdk_keys_chain_open(path, passphrase, &ch);
	if (r < 0) {
		goto out;
	}
	slot = vdk_crypt_slot_add(ch.crypt, ch.f[0].h.crypt_area, new_passphrase, opslimit,
				  memlimit);
	if (slot < 0) {
		vd_error_prefix("%s", path);
		r = slot;
		goto out;
	}
	for (int i = 1; i < ch.n; i++) {
		uint8_t *area = ch.f[i].h.crypt_area;

		r = vdk_crypt_slot_copy(ch.f[0].h.crypt_area, slot, area);
		if (r < 0) {
			vd_error_prefix("%s", ch.f[i].path);
			goto out;
		}
	}
	r = vdk_keys_chain_commit(&ch);
	if (r == 0) {
		r = slot;
	}
out:
	vdk_keys_chain_close(&ch);
	return r;
}

int
vd_key_remove(const char *path, const char *passphrase, int slot)
{
	uint8_t ref[VDK_CRYPT_AREA_SIZE];
	struct vdk_keys_chain ch;
	int r;

	r = vdk_keys_chain_open(path, passphrase, &ch);
	if (r < 0) {
		goto out;
	}
	memcpy(ref, ch.f[0].h.crypt_area, sizeof(ref));
	r = vdk_crypt_slot_remove(ch.f[0].h.crypt_area, slot);
	if (r < 0) {
		vd_error_prefix("%s", path);
		goto out;
	}
	for (int i = 1; i < ch.n; i++) {
		uint8_t *area = ch.f[i].h.crypt_area;
		int s = vdk_crypt_slot_find(area, ref, slot);

		/* Bring over the slots that stay, so this file keeps opening. */
		for (int j = 0; s >= 0 && j < VD_KEY_SLOTS; j++) {
			if (vdk_crypt_slot_find(area, ch.f[0].h.crypt_area, j) == -ENOENT) {
				(void)vdk_crypt_slot_copy(ch.f[0].h.crypt_area, j, area);
			}
		}
		if (s >= 0) {
			r = vdk_crypt_slot_remove(ch.f[i].h.crypt_area, s);
			if (r < 0) {
				vd_error_prefix("%s", ch.f[i].path);
				goto out;
			}
		}
	}
	r = vdk_keys_chain_commit(&ch);
out:
	sodium_memzero(ref, sizeof(ref));
	vdk_keys_chain_close(&ch);
	return r;
}
