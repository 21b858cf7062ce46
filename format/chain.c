// SPDX-License-Identifier: MIT
/*
 * Backing chains: opening layers, resolving backing references, and reading
 * through the layers below the top.
 *
 * Design notes.
 *
 * A chain is an array of layers, top first. Each layer's driver answers
 * block_status for its own file: DATA or ZERO means "I hold this range", HOLE
 * means "ask the layer below". Walking that per read costs O(depth), so the
 * layers below the top (frozen snapshots and foreign backing files, which never
 * change while they are below a top) get a merged map: for each slot of
 * `gran` bytes, the index of the newest layer holding it, 0 for none, or MIXED
 * when a layer holds only part of the slot (then that slot alone is walked).
 * The map is built lazily per region of REGION_SLOTS slots, kept in a small
 * bounded cache, and thrown away whenever the layer list changes (gen).
 * A read therefore costs one top look-up, one cache look-up and one look-up in
 * the layer that holds the data, whatever the depth.
 *
 * Backing files are opened read-only with a shared lock, so that no other
 * program can open one of them for writing while it is part of this chain.
 * A backing file is never probed as raw: its format must be recorded by its
 * overlay or be recognised by a real driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include "chain.h"
#include "util.h"

#define REGION_SLOTS 4096
#define MERGED_MAX_REGIONS 1024
#define MERGED_BUCKETS 1024
#define SLOT_NONE 0
#define SLOT_MIXED 255

struct mregion {
	uint64_t idx;
	struct mregion *next;
	uint8_t slot[REGION_SLOTS];
};

struct merged {
	pthread_mutex_t lock;
	unsigned gen;			/* chain gen this cache was built for */
	uint32_t gran;			/* slot size */
	int anchor;			/* anchor index it was built for */
	unsigned count;
	struct mregion *bucket[MERGED_BUCKETS];
};

int
layer_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	int r;

	if (l->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_lock(&l->serialize);
		r = l->drv->pread(l, buf, len, off);
		pthread_mutex_unlock(&l->serialize);
		return r;
	}
	return l->drv->pread(l, buf, len, off);
}

int
vd_flush_layer_locked(struct vd_layer *l)
{
	int r;

	if (!l->drv->flush) {
		return 0;
	}
	pthread_mutex_lock(&l->serialize);
	r = l->drv->flush(l);
	pthread_mutex_unlock(&l->serialize);
	return r;
}

int
layer_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	int r;

	if (off >= l->size) {
		ext->offset = off;
		ext->length = len;
		ext->type = VD_EXTENT_HOLE;
		ext->layer = -1;
		return 0;
	}
	len = VD_MIN(len, l->size - off);
	if (!l->drv->block_status) {
		ext->offset = off;
		ext->length = len;
		ext->type = VD_EXTENT_DATA;
		return 0;
	}
	if (l->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_lock(&l->serialize);
		r = l->drv->block_status(l, off, len, ext);
		pthread_mutex_unlock(&l->serialize);
	} else {
		r = l->drv->block_status(l, off, len, ext);
	}
	if (r == 0 && (ext->length == 0 || ext->length > len)) {
		return vd_set_error(EIO, "%s: driver %s returned a bad extent at %llu", l->path,
				    l->drv->name, (unsigned long long)off);
	}
	ext->offset = off;
	return r;
}

static const struct vd_driver *
chain_probe(int fd, const char *path, bool is_backing)
{
	uint8_t *buf;
	struct stat st;
	ssize_t n;
	const struct vd_driver *best = NULL;
	int best_score = 0;

	if (fstat(fd, &st) < 0) {
		vd_set_error(errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = calloc(1, 65536);
	if (!buf) {
		vd_set_error(ENOMEM, "%s: out of memory", path);
		return NULL;
	}
	n = pread(fd, buf, 65536, 0);
	if (n < 0) {
		vd_set_error(errno, "%s: %s", path, strerror(errno));
		free(buf);
		return NULL;
	}
	for (int i = 0; vd_drivers[i]; i++) {
		int s = vd_drivers[i]->probe(buf, (size_t)n, (uint64_t)st.st_size, path);

		if (s > best_score) {
			best_score = s;
			best = vd_drivers[i];
		}
	}
	free(buf);
	if (best && is_backing && strcmp(best->name, "raw") == 0) {
		vd_set_error(EINVAL,
			     "%s: backing file format not recorded and not recognised; "
			     "refusing to guess raw (create the overlay with -F raw)",
			     path);
		return NULL;
	}
	if (!best) {
		vd_set_error(EINVAL, "%s: unknown image format", path);
	}
	return best;
}

int
chain_layer_open(const char *path, const char *fmt, bool rdwr, bool is_backing,
		 vd_passphrase_fn pass, void *pass_opaque, struct vd_layer **out)
{
	struct vd_layer *l;
	const struct vd_driver *drv;
	struct stat st;
	int fd, r;

	fd = vd_open_file(path, rdwr ? O_RDWR : O_RDONLY);
	if (fd < 0) {
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		r = vd_set_error(errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	/* Root ignores permissions: a file without write bits is read-only all the same. */
	if (rdwr && S_ISREG(st.st_mode) && !(st.st_mode & 0222)) {
		close(fd);
		return vd_set_error(EACCES, "%s: file is read-only (no write permission)", path);
	}
	if (fmt) {
		drv = vd_driver_find(fmt);
		if (!drv) {
			close(fd);
			return vd_set_error(EINVAL, "%s: unknown format '%s'", path, fmt);
		}
	} else {
		drv = chain_probe(fd, path, is_backing);
		if (!drv) {
			close(fd);
			return -vd_get_errno();
		}
	}
	if (rdwr && !drv->pwrite) {
		close(fd);
		return vd_set_error(EROFS, "%s: %s images are read-only here", path, drv->name);
	}
	/*
	 * A writer locks its top exclusively; readers take no lock, so that
	 * `vdisk info` or `snapshot list` work on an image that is mounted.
	 * Backing layers of a writer are locked shared (chain_open_backing).
	 */
	if (rdwr) {
		r = vd_lock_fd(fd, path, true);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return vd_set_error(ENOMEM, "out of memory");
	}
	l->drv = drv;
	l->fd = fd;
	l->readonly = !rdwr;
	l->path = strdup(path);
	l->refs = 1;
	l->passphrase = pass;
	l->passphrase_opaque = pass_opaque;
	pthread_mutex_init(&l->serialize, NULL);
	if (drv->instance_size) {
		l->st = calloc(1, drv->instance_size);
	}
	if (!l->path || (drv->instance_size && !l->st)) {
		chain_layer_close(l);
		return vd_set_error(ENOMEM, "out of memory");
	}
	r = drv->open(l);
	if (r < 0) {
		if (vd_get_errno() == 0) {
			vd_set_error(r, "%s: %s", path, strerror(-r));
		}
		l->drv = NULL;	/* not opened: no close hook */
		chain_layer_close(l);
		return r;
	}
	if (l->size > VD_MAX_SIZE * 16 || !VD_IS_POW2(l->granularity)) {
		l->granularity = VD_IS_POW2(l->granularity) ? l->granularity : 4096;
	}
	*out = l;
	return 0;
}

void
chain_layer_close(struct vd_layer *l)
{
	if (!l) {
		return;
	}
	if (l->drv && l->drv->close) {
		l->drv->close(l);
	}
	if (l->fd >= 0) {
		close(l->fd);
	}
	pthread_mutex_destroy(&l->serialize);
	free(l->st);
	free(l->path);
	free(l->backing);
	free(l->backing_format);
	free(l->backing_name);
	free(l->name);
	free(l);
}

static char *
chain_default_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return strdup(b ? b + 1 : path);
}

int
chain_open_backing(struct vd_chain *c)
{
	for (;;) {
		struct vd_layer *l = c->layers[c->n - 1], *b, **nl;
		struct stat st_b;
		char *bpath;
		int r;

		if (!l->backing) {
			return 0;
		}
		if (c->n >= CHAIN_MAX_DEPTH) {
			return vd_set_error(ELOOP, "%s: backing chain deeper than %d layers",
					    c->layers[0]->path, CHAIN_MAX_DEPTH);
		}
		bpath = vd_resolve_relative(l->path, l->backing);
		if (!bpath) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		r = chain_layer_open(bpath, l->backing_format, false, true, c->passphrase,
				     c->passphrase_opaque, &b);
		if (r < 0) {
			vd_error_prefix("%s: backing file", l->path);
			free(bpath);
			return r;
		}
		free(bpath);
		if (c->flags & VD_OPEN_RDWR) {
			r = vd_lock_fd(b->fd, b->path, false);
			if (r < 0) {
				vd_set_error(EBUSY, "%s: backing file %s is open for writing elsewhere",
					     l->path, b->path);
				chain_layer_close(b);
				return -EBUSY;
			}
		}
		/* A native layer records which native file it was made over. */
		if (!vd_is_zero(l->backing_uuid, 16) && strcmp(b->drv->name, "vdk") == 0 &&
		    memcmp(b->uuid, l->backing_uuid, 16) != 0) {
			vd_set_error(EINVAL, "%s: backing file %s is not the image this layer was "
				     "made over (another image under that name: restored from "
				     "another copy, or replaced)", l->path, b->path);
			chain_layer_close(b);
			return -EINVAL;
		}
		/* The same file twice in one chain is a loop. */
		if (fstat(b->fd, &st_b) == 0) {
			for (int i = 0; i < c->n; i++) {
				struct stat st_i;

				if (fstat(c->layers[i]->fd, &st_i) == 0 && st_i.st_dev == st_b.st_dev &&
				    st_i.st_ino == st_b.st_ino) {
					chain_layer_close(b);
					return vd_set_error(ELOOP, "%s: backing chain loops back to %s",
							    l->path, c->layers[i]->path);
				}
			}
		}
		if (l->backing_name) {
			free(b->name);
			b->name = strdup(l->backing_name);
			b->created = l->backing_created;
		} else if (!b->name) {
			b->name = chain_default_name(b->path);
		}
		nl = realloc(c->layers, sizeof(*nl) * (size_t)(c->n + 1));
		if (!nl || !b->name) {
			chain_layer_close(b);
			return vd_set_error(ENOMEM, "out of memory");
		}
		c->layers = nl;
		c->layers[c->n++] = b;
		b->chain = c;
		b->index = c->n - 1;
	}
}

void
chain_reindex(struct vd_chain *c)
{
	for (int i = 0; i < c->n; i++) {
		c->layers[i]->index = i;
		c->layers[i]->chain = c;
	}
	c->gen++;
}

/* ---- merged map ----------------------------------------------------------- */

struct merged *
merged_new(void)
{
	struct merged *m = calloc(1, sizeof(*m));

	if (m) {
		pthread_mutex_init(&m->lock, NULL);
		m->gen = ~0u;
	}
	return m;
}

static void
merged_clear(struct merged *m)
{
	for (int i = 0; i < MERGED_BUCKETS; i++) {
		struct mregion *r = m->bucket[i], *n;

		for (; r; r = n) {
			n = r->next;
			free(r);
		}
		m->bucket[i] = NULL;
	}
	m->count = 0;
}

void
merged_free(struct merged *m)
{
	if (m) {
		merged_clear(m);
		pthread_mutex_destroy(&m->lock);
		free(m);
	}
}

/*
 * Fill region ridx from layers first..n-1 (newest first). A layer's disk ends
 * at its size, and so does everything below it: a layer shows through only
 * below the smallest size of the layers above it and its own (as in qemu).
 * Caller holds the chain read lock.
 */
static int
merged_build(struct vd_chain *c, int first, uint32_t gran, struct mregion *reg)
{
	uint64_t rstart = reg->idx * REGION_SLOTS * (uint64_t)gran;
	uint64_t rlen = REGION_SLOTS * (uint64_t)gran;
	uint64_t lim = UINT64_MAX;

	memset(reg->slot, SLOT_NONE, sizeof(reg->slot));
	for (int i = first; i < c->n; i++) {
		struct vd_layer *l = c->layers[i];
		uint64_t pos = rstart, end;

		lim = VD_MIN(lim, l->size);
		if (rstart >= lim) {
			break;
		}
		end = VD_MIN(rstart + rlen, lim);
		while (pos < end) {
			struct vd_extent e;
			int r = layer_block_status(l, pos, end - pos, &e);

			if (r < 0) {
				return r;
			}
			if (e.type != VD_EXTENT_HOLE) {
				uint64_t s = (pos - rstart) / gran, last = (pos + e.length - 1 - rstart) / gran;

				for (uint64_t k = s; k <= last; k++) {
					uint64_t ks = rstart + k * gran, ke = ks + gran;
					bool full = pos <= ks && pos + e.length >= ke;

					if (reg->slot[k] == SLOT_NONE) {
						reg->slot[k] = full ? (uint8_t)i : SLOT_MIXED;
					}
				}
			}
			pos += e.length;
		}
	}
	return 0;
}

/*
 * The slot value for off, building the region when needed, and in *end where
 * the run of slots with that value ends within the region (off's slot alone for
 * MIXED). One look-up per run, not per slot: a 64 TiB hole below a top is 4 Mi
 * regions, not 16 Gi slots (`vdisk convert` of such a chain took 7.5 minutes).
 * Caller holds the chain read lock.
 */
static int
merged_lookup(struct vd_image *img, uint64_t off, uint8_t *val, uint64_t *end, bool *reg_end)
{
	struct vd_chain *c = img->chain;
	struct merged *m = img->merged;
	int first = img->anchor->index + 1;
	uint32_t gran;
	uint64_t ridx;
	struct mregion *reg;
	unsigned h, k, e;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	if (m->gen != c->gen || m->anchor != first) {
		merged_clear(m);
		m->gen = c->gen;
		m->anchor = first;
		gran = 0;
		for (int i = first; i < c->n; i++) {
			if (!gran || c->layers[i]->granularity < gran) {
				gran = c->layers[i]->granularity;
			}
		}
		m->gran = VD_MAX(gran, 4096u);
	}
	gran = m->gran;
	ridx = off / gran / REGION_SLOTS;
	h = (unsigned)(ridx % MERGED_BUCKETS);
	for (reg = m->bucket[h]; reg; reg = reg->next) {
		if (reg->idx == ridx) {
			break;
		}
	}
	if (!reg) {
		if (m->count >= MERGED_MAX_REGIONS) {
			merged_clear(m);
		}
		reg = malloc(sizeof(*reg));
		if (!reg) {
			pthread_mutex_unlock(&m->lock);
			return vd_set_error(ENOMEM, "out of memory");
		}
		reg->idx = ridx;
		r = merged_build(c, first, gran, reg);
		if (r < 0) {
			free(reg);
			pthread_mutex_unlock(&m->lock);
			return r;
		}
		reg->next = m->bucket[h];
		m->bucket[h] = reg;
		m->count++;
	}
	k = (off / gran) % REGION_SLOTS;
	*val = reg->slot[k];
	e = k + 1;
	while (*val != SLOT_MIXED && e < REGION_SLOTS && reg->slot[e] == *val) {
		e++;
	}
	*end = (ridx * REGION_SLOTS + e) * (uint64_t)gran;
	*reg_end = e == REGION_SLOTS;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int chain_walk_status(struct vd_chain *c, int first, uint64_t off, uint64_t len,
			     struct vd_extent *ext);

/*
 * The run of slots from off (at most len bytes) that share the value of off's
 * slot: the value, and the run's length in *run.
 */
static int
merged_run(struct vd_image *img, uint64_t off, uint64_t len, uint8_t *val, uint64_t *run)
{
	uint8_t v, v2;
	uint64_t n, end;
	bool reg_end;
	int r = merged_lookup(img, off, &v, &end, &reg_end);

	if (r < 0) {
		return r;
	}
	n = VD_MIN(len, end - off);
	/* A MIXED slot is walked on its own. */
	while (v != SLOT_MIXED && n < len) {
		if (v == SLOT_NONE && reg_end) {
			/*
			 * A hole up to the region's end: ask the layers how far it goes
			 * (O(depth)), rather than building every region of a hole of
			 * terabytes.
			 */
			struct vd_extent e;

			r = chain_walk_status(img->chain, img->anchor->index + 1, off + n, len - n,
					      &e);
			if (r < 0) {
				return r;
			}
			if (e.type == VD_EXTENT_HOLE) {
				n += e.length;
				if (n >= len) {
					break;
				}
			}
		}
		r = merged_lookup(img, off + n, &v2, &end, &reg_end);
		if (r < 0) {
			return r;
		}
		if (v2 != v) {
			break;
		}
		n = VD_MIN(len, end - off);
	}
	*val = v;
	*run = n;
	return 0;
}

/* Walk the layers from `first` for [off, off+len) (slow path for MIXED slots). */
static int
chain_walk_status(struct vd_chain *c, int first, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	uint64_t best = len, lim = UINT64_MAX;

	for (int i = first; i < c->n; i++) {
		struct vd_extent e;
		int r;

		lim = VD_MIN(lim, c->layers[i]->size);	/* nothing below shows past it */
		if (off >= lim) {
			break;
		}
		best = VD_MIN(best, lim - off);
		r = layer_block_status(c->layers[i], off, best, &e);

		if (r < 0) {
			return r;
		}
		if (e.type != VD_EXTENT_HOLE) {
			*ext = e;
			ext->layer = i;
			return 0;
		}
		/* A hole here: what lies below decides at most e.length bytes. */
		best = VD_MIN(best, e.length);
	}
	ext->offset = off;
	ext->length = best;
	ext->type = VD_EXTENT_HOLE;
	ext->layer = -1;
	return 0;
}

int
chain_status_below(struct vd_image *img, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct vd_chain *c = img->chain;
	int first = img->anchor->index + 1;
	uint8_t v;
	uint64_t run;
	int r;

	if (first >= c->n) {
		ext->offset = off;
		ext->length = len;
		ext->type = VD_EXTENT_HOLE;
		ext->layer = -1;
		return 0;
	}
	r = merged_run(img, off, len, &v, &run);
	if (r < 0) {
		return r;
	}
	if (v == SLOT_MIXED) {
		return chain_walk_status(c, first, off, run, ext);
	}
	if (v == SLOT_NONE) {
		ext->offset = off;
		ext->length = run;
		ext->type = VD_EXTENT_HOLE;
		ext->layer = -1;
		return 0;
	}
	r = layer_block_status(c->layers[v], off, run, ext);
	if (r < 0) {
		return r;
	}
	if (ext->type == VD_EXTENT_HOLE) {
		/* The map said this layer holds it: the layer disagrees (changed under us). */
		return chain_walk_status(c, first, off, run, ext);
	}
	ext->layer = v;
	return 0;
}

int
chain_walk_below(struct vd_image *img, uint64_t off, size_t len, struct chain_sink *s)
{
	struct vd_chain *c = img->chain;
	int first = img->anchor->index + 1;

	while (len > 0) {
		struct vd_extent e;
		uint8_t v;
		uint64_t run;
		int r;

		if (first >= c->n) {
			return s->zero(s, len);
		}
		r = merged_run(img, off, len, &v, &run);
		if (r < 0) {
			return r;
		}
		if (v != SLOT_MIXED && v != SLOT_NONE) {
			/* The layer that holds the slot reads it directly (ZERO reads as zeroes). */
			struct vd_layer *l = c->layers[v];
			uint64_t in = off >= l->size ? 0 : VD_MIN(run, l->size - off);

			r = in ? s->data(s, l, off, (size_t)in) : 0;
			if (r == 0 && run > in) {
				r = s->zero(s, (size_t)(run - in));
			}
			if (r < 0) {
				return r;
			}
			off += run;
			len -= (size_t)run;
			continue;
		}
		r = chain_status_below(img, off, len, &e);
		if (r < 0) {
			return r;
		}
		if (e.type == VD_EXTENT_DATA) {
			r = s->data(s, c->layers[e.layer], off, (size_t)e.length);
		} else {
			r = s->zero(s, (size_t)e.length);
		}
		if (r < 0) {
			return r;
		}
		off += e.length;
		len -= (size_t)e.length;
	}
	return 0;
}

static int
copy_data(struct chain_sink *s, struct vd_layer *l, uint64_t off, size_t len)
{
	int r = layer_pread(l, s->p, len, off);

	s->p += len;
	return r;
}

static int
copy_zero(struct chain_sink *s, size_t len)
{
	memset(s->p, 0, len);
	s->p += len;
	return 0;
}

void
chain_copy_sink(struct chain_sink *s, void *buf)
{
	s->data = copy_data;
	s->zero = copy_zero;
	s->p = buf;
}

int
chain_read_below(struct vd_image *img, void *buf, size_t len, uint64_t off)
{
	struct chain_sink s;

	chain_copy_sink(&s, buf);
	return chain_walk_below(img, off, len, &s);
}
