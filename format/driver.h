/* SPDX-License-Identifier: MIT */
/*
 * The format driver interface: one const struct vd_driver per format, one file
 * each (vdk.c, raw.c, vmdk.c, qcow2.c, vhd.c, vhdx.c), listed in driver.c.
 *
 * The core (image.c, chain.c) allocates struct vd_layer and the driver's
 * instance state (instance_size bytes, zeroed, at layer->st), opens the file
 * descriptor, and calls .open. A driver fills in layer->size, ->granularity and,
 * if the layer has a backing file, ->backing / ->backing_format (malloc'd,
 * freed by the core). Read-only drivers leave the write hooks NULL and the core
 * answers -EROFS.
 *
 * Offsets and lengths given to the hooks are always inside [0, layer->size).
 * Hooks return 0 or -errno and set the error message with vd_set_error().
 */
#ifndef FORMAT_DRIVER_H
#define FORMAT_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include "vdisk.h"

enum vd_thread_model {
	VD_THREAD_PARALLEL,	/* every hook may run concurrently (pread-only readers) */
	VD_THREAD_SERIALIZE,	/* the core serialises all hooks with a mutex */
	VD_THREAD_INTERNAL,	/* the driver locks for itself and allows concurrency */
};

struct vd_layer;
struct vd_chain;

struct vd_driver {
	const char *name;
	size_t instance_size;
	enum vd_thread_model thread_model;

	/*
	 * Score 0-100 for the first bytes of a file (len up to 64 KiB, less if the
	 * file is shorter). raw answers 1. filename may help (vmdk descriptors).
	 */
	int (*probe)(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename);

	/* Open: layer->fd is open (O_RDWR when layer->readonly is false). */
	int (*open)(struct vd_layer *l);
	void (*close)(struct vd_layer *l);

	/*
	 * Read [off, off+len): allocated ranges give their data, ZERO ranges give
	 * zeroes; unallocated ranges give zeroes too (the core only asks for them
	 * when it wants this layer's own view).
	 */
	int (*pread)(struct vd_layer *l, void *buf, size_t len, uint64_t off);
	/*
	 * Optional (vd_pread_map): append [off, off+len) of this layer's own view
	 * (as .pread reads it) to m as pieces of mapped, verified memory, with
	 * vd_mapped_add/vd_mapped_zero; -EAGAIN when it cannot. A layer keeps what
	 * it showed in place until .map_release, called once for each layer the
	 * driver put in m->held (vd_mapped_hold).
	 */
	int (*pread_map)(struct vd_layer *l, uint64_t off, size_t len, struct vd_mapped *m);
	void (*map_release)(struct vd_layer *l);
	/* Write: a native top fills partial blocks from the layers below via vd_layer_read_below(). */
	int (*pwrite)(struct vd_layer *l, const void *buf, size_t len, uint64_t off);
	/* Make the range read as zeroes in this layer (hides the backing). */
	int (*zero)(struct vd_layer *l, uint64_t off, uint64_t len);
	int (*flush)(struct vd_layer *l);

	/*
	 * First extent at off: ext->type DATA/ZERO (held by this layer) or HOLE
	 * (not held: the core falls through to the backing). ext->length > 0.
	 * Must be cheap: called on every read.
	 */
	int (*block_status)(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext);

	/* Bytes of data this layer holds; NULL: unknown (core reports 0). */
	uint64_t (*allocated)(struct vd_layer *l);

	/*
	 * The other files this layer reads (VMDK extents, a qcow2 data file):
	 * up to max descriptors into fds, the count returned. NULL: only l->fd.
	 * For the host space a layer takes ("disk size", actual-size).
	 */
	int (*files)(struct vd_layer *l, int *fds, int max);

	/* Structural and checksum verification of this layer alone. NULL: nothing to check. */
	int (*check)(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
		     struct vd_check_result *res);

	/*
	 * Optional: change the virtual size of a writable top to size (the core
	 * checked it: a multiple of 512, at most VD_MAX_SIZE, a shrink allowed) and
	 * commit, so that the new range reads as zeroes whatever the layers below
	 * hold there (vd_layer_status_below). Called with the chain held for
	 * writing (no I/O runs); sets l->size. NULL: the format cannot be resized.
	 */
	int (*resize)(struct vd_layer *l, uint64_t size);

	/* Internal snapshots (qcow2): count, describe, open one as a read-only view layer. */
	int (*snapshot_count)(struct vd_layer *l);
	int (*snapshot_info)(struct vd_layer *l, int idx, const char **name, int64_t *created);
	/* Fill `view` (fresh layer, same driver, st allocated) with a read-only view of snapshot idx. */
	int (*snapshot_open)(struct vd_layer *l, int idx, struct vd_layer *view);
};

struct vd_layer {
	const struct vd_driver *drv;
	void *st;			/* driver instance state (instance_size bytes) */
	char *path;			/* the file as opened (malloc'd by the core) */
	int fd;				/* opened by the core; the driver may open more files */
	bool readonly;
	bool encrypted;
	const char *cipher;		/* static string or NULL */

	/* Set by .open: */
	uint64_t size;			/* virtual size in bytes */
	uint32_t granularity;		/* allocation unit, power of two, 512..2 MiB */
	char *backing;			/* backing reference as stored (malloc'd), NULL if none */
	char *backing_format;		/* recorded backing format (malloc'd), NULL if unknown */
	char *name;			/* snapshot name of this layer if its format names it (malloc'd) */
	int64_t created;		/* seconds since the epoch, 0 if unknown */
	uint8_t uuid[16];
	/*
	 * Set by the driver: .pread_map can serve this layer (its file is mapped).
	 * Changed only at open, close, and while the chain is held for writing.
	 */
	bool mapped;
	/* What this layer records about its backing (native overlays): the core names the backing layer so. */
	char *backing_name;		/* malloc'd, NULL if not recorded */
	int64_t backing_created;
	uint8_t backing_uuid[16];	/* the backing layer's uuid, all zero if not recorded */

	/* Core-owned: */
	struct vd_chain *chain;		/* the chain this layer is in (NULL while creating) */
	int index;			/* position in the chain, 0 = top */
	int refs;			/* shared by snapshot views; protected by the chain lock */
	pthread_mutex_t serialize;	/* taken around hooks of VD_THREAD_SERIALIZE drivers */
	vd_passphrase_fn passphrase;	/* for encrypted native layers */
	void *passphrase_opaque;
};

/*
 * For .pread_map: append a piece (merged with the last one when it follows
 * it), or len bytes of zeroes; -EAGAIN when m is full. vd_mapped_hold: 1 if
 * l already holds its blocks for m; else 0 after recording l in m->held (the
 * driver then takes its hold), or -EAGAIN when m holds as many layers as it can.
 */
int vd_mapped_add(struct vd_mapped *m, const void *p, size_t len);
int vd_mapped_zero(struct vd_mapped *m, size_t len);
int vd_mapped_hold(struct vd_mapped *m, struct vd_layer *l);

/* The driver table (driver.c). */
extern const struct vd_driver *const vd_drivers[];
const struct vd_driver *vd_driver_find(const char *name);

/* Read [off, off+len) as the layers below l see it (zeroes past the end or with no backing). */
int vd_layer_read_below(struct vd_layer *l, void *buf, size_t len, uint64_t off);

/* Block status of [off, off+len) as the layers below l show it (a hole with no backing). */
int vd_layer_status_below(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext);

/*
 * Open a file a driver refers to (VMDK extents, data files): path is resolved
 * relative to the directory of l->path unless absolute. Returns an fd or -errno.
 */
int vd_layer_open_related(struct vd_layer *l, const char *path, int flags);

#endif
