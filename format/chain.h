/* SPDX-License-Identifier: MIT */
/*
 * The chain of layers behind a struct vd_image, and the merged map of the
 * frozen layers (chain.c). Shared by image.c and the native snapshot code.
 */
#ifndef FORMAT_CHAIN_H
#define FORMAT_CHAIN_H

#include <pthread.h>

#include "internal.h"

#define CHAIN_MAX_DEPTH 250

struct merged;

struct vd_chain {
	/* Read side: any I/O. Write side: changes to the layer list (snapshot operations). */
	pthread_rwlock_t lock;
	struct vd_layer **layers;	/* 0 = top; protected by lock */
	int n;				/* protected by lock */
	unsigned gen;			/* bumped on every layer-list change; protected by lock */
	unsigned flags;			/* VD_OPEN_* of the main image */
	vd_passphrase_fn passphrase;
	void *passphrase_opaque;
	int views;			/* open snapshot views; protected by lock */
	struct vd_image *main;
};

struct vd_image {
	struct vd_chain *chain;
	struct vd_layer *top;		/* the layer reads start at */
	struct vd_layer *anchor;	/* the chain member whose lower layers are below top */
	bool readonly;
	bool is_view;
	bool own_top;			/* top is a private view layer (internal snapshot) */
	char *path;
	struct merged *merged;		/* map of the layers below anchor */
};

/* Open one file as a layer (probe unless fmt). Caller frees with chain_layer_close. */
int chain_layer_open(const char *path, const char *fmt, bool rdwr, bool is_backing,
		     vd_passphrase_fn pass, void *pass_opaque, struct vd_layer **out);
void chain_layer_close(struct vd_layer *l);
/* Open the backing layers of chain->layers[chain->n - 1] until the end of the chain. */
int chain_open_backing(struct vd_chain *c);
/* Renumber layers after a change, bump gen. Caller holds the write lock. */
void chain_reindex(struct vd_chain *c);

struct merged *merged_new(void);
void merged_free(struct merged *m);
/* Read [off, off+len) from the layers below img->anchor (zeroes where none holds data). */
int chain_read_below(struct vd_image *img, void *buf, size_t len, uint64_t off);
/*
 * Where the bytes of a read come from, in order: `data` gives len bytes of
 * layer l at off (its own view, as layer_pread reads it), `zero` len bytes of
 * zeroes. A copying sink reads into p (chain_copy_sink); vd_pread_map's sink
 * collects mapped pieces (m).
 */
struct chain_sink {
	int (*data)(struct chain_sink *s, struct vd_layer *l, uint64_t off, size_t len);
	int (*zero)(struct chain_sink *s, size_t len);
	char *p;
	struct vd_mapped *m;
};
void chain_copy_sink(struct chain_sink *s, void *buf);
/* chain_read_below, into any sink. */
int chain_walk_below(struct vd_image *img, uint64_t off, size_t len, struct chain_sink *s);
/* Block status of the layers below img->anchor; ext->layer is the absolute chain index. */
int chain_status_below(struct vd_image *img, uint64_t off, uint64_t len, struct vd_extent *ext);

/* Flush one layer (its driver's flush hook, serialised if the driver asks). */
int vd_flush_layer_locked(struct vd_layer *l);
/* Call a layer's hook under its serialisation lock when the driver asks for one. */
int layer_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off);
int layer_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext);

#endif
