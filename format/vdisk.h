/* SPDX-License-Identifier: MIT */
/*
 * libvdisk: the public API of the vdiskfs image library.
 *
 * A struct vd_image is an open chain of layers: the top (writable unless opened
 * read-only) over zero or more backing layers (frozen snapshots, foreign images).
 * Reads fall through to lower layers where the upper ones hold nothing; writes
 * go to the top only.
 *
 * THREAD MODEL: one struct vd_image may be used from many threads at once for
 * vd_pread, vd_pwrite, vd_discard, vd_write_zeroes, vd_flush and vd_block_status.
 * Snapshot operations (vd_snapshot_*) may also run concurrently with I/O: they
 * quiesce the image internally (writes that returned before the call are in the
 * snapshot, writes that start after it returns are not). The library's only
 * threads of its own are a pool (one fewer than the online CPUs, started at the
 * first large request to an encrypted image, restarted after fork()) that seals
 * and opens the blocks of one large request in parallel; they hold no image
 * state and never call back into the application.
 *
 * ERRORS: functions return 0 (or a count) on success and -errno on failure;
 * constructors return NULL and set errno. In both cases vd_get_error() gives a
 * human-readable message for the calling thread ("PATH: what went wrong").
 *
 * STRING LIFETIME: every const char * returned is borrowed and lives as long as
 * the object it came from, unless the comment says "caller frees".
 */
#ifndef FORMAT_VDISK_H
#define FORMAT_VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vd_image;

/* The last error of the calling thread, e.g. "disk.vdk: bad header checksum". Never NULL. */
const char *vd_get_error(void);
/* The errno that goes with vd_get_error(), 0 if none. */
int vd_get_errno(void);

/* ---- opening ---------------------------------------------------------- */

#define VD_OPEN_RDWR	0x1u	/* open the top for writing (exclusive lock) */
#define VD_OPEN_NOCACHE	0x2u	/* hint: O_DIRECT-like use, keep caches small */

/*
 * Passphrase callback for encrypted layers: write a NUL-terminated passphrase of
 * at most size-1 bytes into buf (library-owned, wiped after use). Returns 0, or
 * -errno to abort the open. `path` names the layer that asks.
 */
typedef int (*vd_passphrase_fn)(void *opaque, const char *path, char *buf, size_t size);

struct vd_open_opts {
	unsigned flags;			/* VD_OPEN_* */
	const char *format;		/* driver name for the top, NULL to probe */
	vd_passphrase_fn passphrase;	/* NULL: encrypted layers fail with -EACCES */
	void *passphrase_opaque;
};

/* Open PATH and its whole backing chain. opts may be NULL (read-only, probe). */
struct vd_image *vd_open(const char *path, const struct vd_open_opts *opts);
/* Flush (when writable) and close; returns the flush result. vd_close(NULL) is a no-op. */
int vd_close(struct vd_image *img);

/* Virtual size in bytes. */
uint64_t vd_get_size(const struct vd_image *img);
/* Allocation granularity of the top layer in bytes (a power of two). */
uint32_t vd_get_block_size(const struct vd_image *img);
bool vd_is_readonly(const struct vd_image *img);
/* The top's path as given to vd_open. */
const char *vd_get_path(const struct vd_image *img);

/* ---- I/O: all of [offset, offset+count) must lie inside the virtual size -- */

/* Read exactly count bytes. -EIO (or -EBADMSG) names the bad block in vd_get_error(). */
int vd_pread(struct vd_image *img, void *buf, size_t count, uint64_t offset);
/*
 * A read without a copy: [offset, offset+count) as a list of pieces of memory,
 * the image files' own pages (mapped read-only, checksums verified) and a
 * shared area of zeroes, in order. Only layers whose file lives in memory
 * (tmpfs, ramfs) and is neither encrypted nor of a foreign format can be shown
 * so: for anything else, or more than VD_MAPPED_IOV pieces, the call returns
 * -EAGAIN with nothing held, and the caller uses vd_pread. Other errors as
 * vd_pread. On success the pieces stay valid, and the blocks they show are
 * neither reused nor moved, until vd_pread_map_done(m); meanwhile the calling
 * thread must not start other I/O or snapshot operations on the image
 * (vdiskfs holds it while it writes the FUSE reply). m is the caller's
 * (about 8 KiB: not on a small stack).
 */
#define VD_MAPPED_IOV 512
#define VD_MAPPED_HELD 16
struct vd_mapped {
	struct iovec iov[VD_MAPPED_IOV];
	int niov;
	/* private to the library */
	struct vd_image *img;
	void *held[VD_MAPPED_HELD];	/* layers whose blocks are held */
	int nheld;
};
int vd_pread_map(struct vd_image *img, size_t count, uint64_t offset, struct vd_mapped *m);
void vd_pread_map_done(struct vd_mapped *m);
/* Write exactly count bytes to the top. -EROFS when read-only. */
int vd_pwrite(struct vd_image *img, const void *buf, size_t count, uint64_t offset);
/* Deallocate; the range reads back as zeroes afterwards (whatever the backing holds). */
int vd_discard(struct vd_image *img, uint64_t offset, uint64_t length);
/* Make the range read as zeroes, deallocating whole blocks where possible. */
int vd_write_zeroes(struct vd_image *img, uint64_t offset, uint64_t length);
/* Make every write that has returned durable. */
int vd_flush(struct vd_image *img);

enum vd_extent_type {
	VD_EXTENT_DATA = 0,	/* allocated, holds data in layer `layer` */
	VD_EXTENT_ZERO = 1,	/* reads as zeroes, recorded as such in layer `layer` */
	VD_EXTENT_HOLE = 2,	/* allocated nowhere in the chain: reads as zeroes, layer = -1 */
};

struct vd_extent {
	uint64_t offset;
	uint64_t length;
	enum vd_extent_type type;
	int layer;		/* 0 = top, 1 = its backing, ...; -1 for VD_EXTENT_HOLE */
};

/*
 * Describe the chain at [offset, offset+length): fills *ext with the first
 * extent (ext->offset == offset, 0 < ext->length <= length).
 */
int vd_block_status(struct vd_image *img, uint64_t offset, uint64_t length,
		    struct vd_extent *ext);

/*
 * Change the virtual size of the disk (of its top layer; the layers below keep
 * theirs). size: a multiple of 512, at most VD_MAX_SIZE. Growing: the new range
 * reads as zeroes, also where a larger layer below holds data there. Shrinking
 * needs VD_RESIZE_SHRINK (else -EINVAL): what lies past the new end is dropped
 * and its space given back. One commit: after a crash the image has the old
 * size or the new one. Waits for in-flight I/O (like a snapshot operation);
 * I/O that starts after it returns sees the new size. The image must be
 * writable and its top native (vdk): else -EROFS / -ENOTSUP. Snapshot views
 * keep their size.
 */
#define VD_RESIZE_SHRINK 0x1u
int vd_resize(struct vd_image *img, uint64_t size, unsigned flags);

/* ---- layers and snapshots ----------------------------------------------- */

struct vd_layer_info {
	const char *path;	/* the layer's file */
	const char *format;	/* driver name: "vdk", "raw", "qcow2", ... */
	const char *name;	/* snapshot name, NULL for the top */
	int64_t created;	/* seconds since the epoch, 0 if unknown */
	uint64_t size;		/* virtual size */
	uint64_t allocated;	/* bytes of data this layer holds (its changed blocks) */
	uint64_t file_size;	/* bytes used on the host (st_blocks * 512) */
	uint32_t block_size;	/* allocation granularity */
	bool readonly;
	bool encrypted;
	const char *cipher;	/* NULL when not encrypted */
	const char *backing;	/* backing reference as stored in the layer, NULL if none */
	uint8_t uuid[16];	/* all zero if the format has none */
};

/* Number of layers in the chain, top included (>= 1). */
int vd_layer_count(const struct vd_image *img);
/* Fill *info for layer idx (0 = top). Strings live until the next snapshot operation or close. */
int vd_layer_info(struct vd_image *img, int idx, struct vd_layer_info *info);

/*
 * The snapshots of a chain are its layers below the top, oldest first, plus the
 * internal snapshots of foreign images that have them (qcow2). A native frozen
 * layer is named when it was taken; a foreign layer is named from its metadata
 * or else from its file name.
 */
struct vd_snapshot_info {
	const char *name;
	int64_t created;	/* seconds since the epoch */
	int layer;		/* its layer index in the chain */
	uint64_t allocated;	/* bytes of data its layer holds (zeroed/discarded ranges not counted) */
	uint64_t size;		/* its disk's virtual size (a qcow2 may have been resized since) */
	const char *parent;	/* name of the snapshot before it, NULL for the oldest */
	bool internal;		/* an internal snapshot of a foreign image (qcow2), not a layer */
};

int vd_snapshot_count(struct vd_image *img);
/* idx 0 = oldest. */
int vd_snapshot_info(struct vd_image *img, int idx, struct vd_snapshot_info *info);
/* Index of the snapshot named name, or -ENOENT. */
int vd_snapshot_find(struct vd_image *img, const char *name);

/* Valid snapshot names: 1-64 of [A-Za-z0-9._+:@-], not starting with '.' or '-'. */
bool vd_snapshot_name_valid(const char *name);

/*
 * Freeze the current top as snapshot NAME and start a new empty top over it, in
 * O(1). The top keeps its path. The image must be writable and native (vdk).
 */
int vd_snapshot_create(struct vd_image *img, const char *name);
/* Delete snapshot NAME: its blocks are merged into its child, then its file removed. */
int vd_snapshot_delete(struct vd_image *img, const char *name);
/* Throw away the top and every snapshot newer than NAME; the top then reads as NAME. */
int vd_snapshot_revert(struct vd_image *img, const char *name);

/*
 * A read-only view of the chain as snapshot idx saw it (for vdiskfs snapshot
 * folders and the CLI). It shares layers with img and must be closed before img.
 */
struct vd_image *vd_snapshot_open(struct vd_image *img, int idx);

/* ---- creating ------------------------------------------------------------ */

#define VD_DEFAULT_BLOCK_SIZE	4096u
#define VD_MIN_BLOCK_SIZE	4096u
#define VD_MAX_BLOCK_SIZE	(1024u * 1024u)
#define VD_MAX_SIZE		(64ull << 40)	/* 64 TiB */

struct vd_create_opts {
	uint64_t size;			/* 0 with a backing file: take the backing's size */
	uint32_t block_size;		/* 0: VD_DEFAULT_BLOCK_SIZE */
	const char *backing;		/* backing file (any format), NULL for none */
	const char *backing_format;	/* NULL: probe it now (never raw by accident) and record it */
	/* Encryption (issue: encrypted images). cipher NULL = not encrypted. */
	const char *cipher;		/* "xchacha20poly1305" or "aes256gcm" */
	const char *passphrase;		/* for the first key slot */
	uint64_t pwhash_opslimit;	/* 0: default (about 1 s) */
	uint64_t pwhash_memlimit;	/* 0: default */
	vd_passphrase_fn backing_passphrase;	/* to open an encrypted backing */
	void *backing_passphrase_opaque;
};

/* Create a native image at path (which must not exist). */
int vd_create(const char *path, const struct vd_create_opts *opts);

/* ---- checking ------------------------------------------------------------ */

enum vd_check_severity { VD_CHECK_INFO, VD_CHECK_LEAK, VD_CHECK_CORRUPT };

/* One finding: which layer, where (byte offset in the file or virtual, see msg). */
typedef void (*vd_check_fn)(void *opaque, int layer, enum vd_check_severity sev,
			    const char *msg);

struct vd_check_result {
	uint64_t blocks_checked;
	uint64_t bytes_checked;
	uint64_t corrupt;	/* findings of severity CORRUPT */
	uint64_t leaks;		/* space not referenced by any table */
};

/* Verify every layer's structure and every checksum. Returns 0 if it ran (see res), -errno if not. */
int vd_check(struct vd_image *img, vd_check_fn report, void *opaque, struct vd_check_result *res);

/* ---- key slots of an encrypted native image (one file, not a chain) ------ */

#define VD_KEY_SLOTS 8

struct vd_key_slot_info {
	bool used;
	uint64_t opslimit;	/* Argon2id parameters stored with the slot */
	uint64_t memlimit;
};

/* Fill slots[VD_KEY_SLOTS]; no passphrase needed. Returns the number of used slots. */
int vd_key_list(const char *path, struct vd_key_slot_info *slots, const char **cipher);
/* Unlock with passphrase, add new_passphrase in a free slot; returns the slot number. */
int vd_key_add(const char *path, const char *passphrase, const char *new_passphrase,
	       uint64_t opslimit, uint64_t memlimit);
/* Unlock with passphrase, then clear slot; refuses (-EBUSY) to clear the last used slot. */
int vd_key_remove(const char *path, const char *passphrase, int slot);

#ifdef __cplusplus
}
#endif
#endif
