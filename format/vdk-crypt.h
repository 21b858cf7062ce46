/* SPDX-License-Identifier: MIT */
/*
 * The narrow interface between the native driver (vdk*.c) and its encryption
 * (vdk-crypt.c, libsodium). vdk.c never touches keys; vdk-crypt.c never touches
 * the file. The crypt state owns a header area of VDK_CRYPT_AREA_SIZE bytes
 * (cipher id, Argon2id parameters and wrapped data keys of the key slots),
 * stored verbatim in the image header.
 */
#ifndef FORMAT_VDK_CRYPT_H
#define FORMAT_VDK_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

#define VDK_CRYPT_AREA_SIZE 1536
#define VDK_TAG_SIZE 16

struct vdk_crypt;

/* true if this header area describes an encrypted image (any slot or cipher set). */
int vdk_crypt_area_used(const uint8_t *area);
/* Cipher name from the area ("xchacha20poly1305", "aes256gcm"), NULL if unknown. */
const char *vdk_crypt_area_cipher(const uint8_t *area);

/*
 * New random data key for cipher, wrapped under passphrase in slot 0; fills area.
 * uuid binds the key to the image. -ENOTSUP if the cipher is unavailable (AES-GCM without AES-NI).
 */
int vdk_crypt_create(const char *cipher, const char *passphrase, uint64_t opslimit,
		     uint64_t memlimit, const uint8_t uuid[16], uint8_t *area,
		     struct vdk_crypt **out);
/* Unlock: tries every used slot. -EACCES and "wrong passphrase" when none opens. */
int vdk_crypt_unlock(const uint8_t *area, const uint8_t uuid[16], const char *passphrase,
		     struct vdk_crypt **out);
void vdk_crypt_destroy(struct vdk_crypt *c);
const char *vdk_crypt_cipher(const struct vdk_crypt *c);

/*
 * Encrypt len bytes of the block at virtual block index vblock. ctr must never
 * repeat for this image (vdk.c keeps a persistent counter). out may equal in.
 */
int vdk_crypt_seal(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in,
		   void *out, size_t len, uint8_t tag[VDK_TAG_SIZE]);
/* Decrypt and verify; -EBADMSG on a bad tag (out is then wiped). */
int vdk_crypt_open(struct vdk_crypt *c, uint64_t vblock, uint64_t ctr, const void *in, void *out,
		   size_t len, const uint8_t tag[VDK_TAG_SIZE]);
/* Keyed MAC of metadata (tree nodes, header), bound to a context number. */
void vdk_crypt_mac(struct vdk_crypt *c, uint64_t context, const void *buf, size_t len,
		   uint8_t out[VDK_TAG_SIZE]);

/* Key slots: add new_passphrase to a free slot (returns its number), or clear one. */
int vdk_crypt_slot_add(struct vdk_crypt *c, uint8_t *area, const char *new_passphrase,
		       uint64_t opslimit, uint64_t memlimit);
int vdk_crypt_slot_remove(uint8_t *area, int slot);
void vdk_crypt_slot_list(const uint8_t *area, struct vd_key_slot_info *slots);

/*
 * For vdk-keys.c, which keeps the files of a chain (one data key, one uuid,
 * copies of one area) in step. Copy used slot `slot` of from into to, at the
 * same index if it is free, else the first free one: returns the index,
 * -ENOSPC, or -EINVAL if the areas are not copies of one another.
 */
int vdk_crypt_slot_copy(const uint8_t *from, int slot, uint8_t *to);
/* The used slot of area identical to slot `slot` of ref, or -ENOENT. */
int vdk_crypt_slot_find(const uint8_t *area, const uint8_t *ref, int slot);

#endif
