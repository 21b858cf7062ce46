// SPDX-License-Identifier: MIT
/*
 * The public API (vdisk.h) over a chain: opening, I/O dispatch with capability
 * and bounds checks, layer and snapshot listing, checking.
 *
 * Locking: the chain's rwlock is held for reading around every I/O call, so
 * I/O runs in parallel (drivers lock for themselves, or the core serialises
 * them per their thread model); snapshot operations take it for writing,
 * which waits for in-flight I/O and so gives a clean point-in-time cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <pthread.h>

#include "chain.h"
#include "util.h"
#include "vdk.h"

static int
image_check_range(struct vd_image *img, uint64_t off, uint64_t len)
{
	uint64_t end;

	if (VD_ADD_OVERFLOW(off, len, &end) || end > img->top->size) {
		return vd_set_error(EINVAL, "%s: request %llu+%llu beyond the end of the disk (%llu)",
				    img->path, (unsigned long long)off, (unsigned long long)len,
				    (unsigned long long)img->top->size);
	}
	return 0;
}

static struct vd_image *
image_new(struct vd_chain *c, struct vd_layer *top, struct vd_layer *anchor, const char *path)
{
	struct vd_image *img = calloc(1, sizeof(*img));

	if (!img) {
		return NULL;
	}
	img->chain = c;
	img->top = top;
	img->anchor = anchor;
	img->path = strdup(path);
	img->merged = merged_new();
	if (!img->path || !img->merged) {
		free(img->path);
		merged_free(img->merged);
		free(img);
		return NULL;
	}
	return img;
}

static void
chain_destroy(struct vd_chain *c)
{
	for (int i = 0; i < c->n; i++) {
		chain_layer_close(c->layers[i]);
	}
	free(c->layers);
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

struct vd_image *
vd_open(const char *path, const struct vd_open_opts *opts)
{
	struct vd_open_opts def = { 0 };
	struct vd_chain *c;
	struct vd_layer *top;
	struct vd_image *img;
	int r;

	if (!opts) {
		opts = &def;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		vd_set_error(ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	{
		/*
		 * Writer first: a snapshot operation waits for the I/O in flight and
		 * then goes, even under a stream of overlapping reads (a reader
		 * without a copy holds the lock until its reply is out). The
		 * library never takes the read side twice in one thread.
		 */
		pthread_rwlockattr_t ra;

		pthread_rwlockattr_init(&ra);
		pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&c->lock, &ra);
		pthread_rwlockattr_destroy(&ra);
	}
	c->flags = opts->flags;
	c->passphrase = opts->passphrase;
	c->passphrase_opaque = opts->passphrase_opaque;
	r = chain_layer_open(path, opts->format, opts->flags & VD_OPEN_RDWR, false, c->passphrase,
			     c->passphrase_opaque, &top);
	if (r < 0) {
		goto err;
	}
	c->layers = malloc(sizeof(*c->layers));
	if (!c->layers) {
		chain_layer_close(top);
		r = vd_set_error(ENOMEM, "out of memory");
		goto err;
	}
	c->layers[0] = top;
	c->n = 1;
	top->chain = c;
	r = chain_open_backing(c);
	if (r < 0) {
		goto err;
	}
	/* An overlay smaller than its backing is fine; a layer of another size reads zeroes past its end. */
	img = image_new(c, top, top, path);
	if (!img) {
		r = vd_set_error(ENOMEM, "out of memory");
		goto err;
	}
	img->readonly = !(opts->flags & VD_OPEN_RDWR);
	c->main = img;
	return img;
err:
	chain_destroy(c);
	errno = -r;
	return NULL;
}

int
vd_close(struct vd_image *img)
{
	struct vd_chain *c;
	int r = 0;

	if (!img) {
		return 0;
	}
	c = img->chain;
	if (img->is_view) {
		pthread_rwlock_wrlock(&c->lock);
		if (!img->own_top) {
			img->top->refs--;
		}
		c->views--;
		pthread_rwlock_unlock(&c->lock);
		if (img->own_top) {
			chain_layer_close(img->top);
		}
	} else {
		if (!img->readonly) {
			r = vd_flush(img);
		}
		chain_destroy(c);
	}
	merged_free(img->merged);
	free(img->path);
	free(img);
	return r;
}

uint64_t
vd_get_size(const struct vd_image *img)
{
	uint64_t n;

	pthread_rwlock_rdlock(&img->chain->lock);
	n = img->top->size;
	pthread_rwlock_unlock(&img->chain->lock);
	return n;
}

uint32_t
vd_get_block_size(const struct vd_image *img)
{
	uint32_t n;

	pthread_rwlock_rdlock(&img->chain->lock);
	n = img->top->granularity;
	pthread_rwlock_unlock(&img->chain->lock);
	return n;
}

bool
vd_is_readonly(const struct vd_image *img)
{
	return img->readonly;
}

const char *
vd_get_path(const struct vd_image *img)
{
	return img->path;
}

/* The bytes of [offset, offset+count) of img, in order, into sink s. Caller holds the chain lock. */
static int
image_walk(struct vd_image *img, uint64_t offset, size_t count, struct chain_sink *s)
{
	int r = image_check_range(img, offset, count);

	while (r == 0 && count > 0) {
		struct vd_extent e;

		r = layer_block_status(img->top, offset, count, &e);
		if (r < 0) {
			break;
		}
		if (e.type == VD_EXTENT_DATA) {
			r = s->data(s, img->top, offset, (size_t)e.length);
		} else if (e.type == VD_EXTENT_ZERO) {
			r = s->zero(s, (size_t)e.length);
		} else {
			r = chain_walk_below(img, offset, (size_t)e.length, s);
		}
		offset += e.length;
		count -= (size_t)e.length;
	}
	return r;
}

int
vd_pread(struct vd_image *img, void *buf, size_t count, uint64_t offset)
{
	struct chain_sink s;
	int r;

	chain_copy_sink(&s, buf);
	pthread_rwlock_rdlock(&img->chain->lock);
	r = image_walk(img, offset, count, &s);
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

/* ---- reads without a copy (vd_pread_map) ----------------------------------- */

/* Zeroes for vd_pread_map: an untouched private mapping reads as the shared zero page. */
#define MAP_ZERO_SIZE (1u << 20)
static const uint8_t *map_zeroes;
static pthread_once_t map_zeroes_once = PTHREAD_ONCE_INIT;

static void
map_zeroes_init(void)
{
	void *p = mmap(NULL, MAP_ZERO_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	map_zeroes = p == MAP_FAILED ? NULL : p;
}

int
vd_mapped_add(struct vd_mapped *m, const void *p, size_t len)
{
	struct iovec *last = m->niov ? &m->iov[m->niov - 1] : NULL;

	if (len == 0) {
		return 0;
	}
	if (last && (const char *)last->iov_base + last->iov_len == (const char *)p) {
		last->iov_len += len;
		return 0;
	}
	if (m->niov == VD_MAPPED_IOV) {
		return -EAGAIN;
	}
	m->iov[m->niov].iov_base = (void *)(uintptr_t)p;
	m->iov[m->niov].iov_len = len;
	m->niov++;
	return 0;
}

int
vd_mapped_zero(struct vd_mapped *m, size_t len)
{
	pthread_once(&map_zeroes_once, map_zeroes_init);
	if (!map_zeroes) {
		return -EAGAIN;
	}
	while (len > 0) {
		struct iovec *last = m->niov ? &m->iov[m->niov - 1] : NULL;
		size_t n = VD_MIN(len, (size_t)MAP_ZERO_SIZE);

		if (last && last->iov_base == map_zeroes && last->iov_len + n <= MAP_ZERO_SIZE) {
			last->iov_len += n;
		} else if (m->niov == VD_MAPPED_IOV) {
			return -EAGAIN;
		} else {
			m->iov[m->niov].iov_base = (void *)(uintptr_t)map_zeroes;
			m->iov[m->niov].iov_len = n;
			m->niov++;
		}
		len -= n;
	}
	return 0;
}

int
vd_mapped_hold(struct vd_mapped *m, struct vd_layer *l)
{
	for (int i = 0; i < m->nheld; i++) {
		if (m->held[i] == l) {
			return 1;
		}
	}
	if (m->nheld == VD_MAPPED_HELD) {
		return -EAGAIN;
	}
	m->held[m->nheld++] = l;
	return 0;
}

static int
map_data(struct chain_sink *s, struct vd_layer *l, uint64_t off, size_t len)
{
	if (!l->drv->pread_map || l->drv->thread_model == VD_THREAD_SERIALIZE) {
		return -EAGAIN;
	}
	return l->drv->pread_map(l, off, len, s->m);
}

static int
map_zero(struct chain_sink *s, size_t len)
{
	return vd_mapped_zero(s->m, len);
}

/* Can any layer that img reads from be read through a mapping? Caller holds the chain lock. */
static bool
image_any_mapped(const struct vd_image *img)
{
	const struct vd_chain *c = img->chain;

	if (img->top->mapped) {
		return true;
	}
	for (int i = img->anchor->index + 1; i < c->n; i++) {
		if (c->layers[i]->mapped) {
			return true;
		}
	}
	return false;
}

int
vd_pread_map(struct vd_image *img, size_t count, uint64_t offset, struct vd_mapped *m)
{
	struct chain_sink s = { .data = map_data, .zero = map_zero, .m = m };
	int r;

	m->niov = 0;
	m->nheld = 0;
	m->img = img;
	pthread_rwlock_rdlock(&img->chain->lock);
	if (!image_any_mapped(img)) {
		/* On disk, encrypted, foreign: the caller copies (vd_pread), at once. */
		pthread_rwlock_unlock(&img->chain->lock);
		m->img = NULL;
		return -EAGAIN;
	}
	r = image_walk(img, offset, count, &s);
	if (r < 0) {
		vd_pread_map_done(m);
	}
	return r;
}

void
vd_pread_map_done(struct vd_mapped *m)
{
	if (!m->img) {
		return;
	}
	for (int i = m->nheld - 1; i >= 0; i--) {
		struct vd_layer *l = m->held[i];

		l->drv->map_release(l);
	}
	m->nheld = 0;
	m->niov = 0;
	pthread_rwlock_unlock(&m->img->chain->lock);
	m->img = NULL;
}

static int
image_check_writable(struct vd_image *img)
{
	if (img->readonly || img->is_view || !img->top->drv->pwrite) {
		return vd_set_error(EROFS, "%s: image is read-only", img->path);
	}
	return 0;
}

int
vd_pwrite(struct vd_image *img, const void *buf, size_t count, uint64_t offset)
{
	struct vd_layer *top;
	int r;

	pthread_rwlock_rdlock(&img->chain->lock);
	r = image_check_writable(img);
	if (r == 0) {
		r = image_check_range(img, offset, count);
	}
	if (r < 0 || count == 0) {
		pthread_rwlock_unlock(&img->chain->lock);
		return r;
	}
	top = img->top;
	if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_lock(&top->serialize);
	}
	r = top->drv->pwrite(top, buf, count, offset);
	if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_unlock(&top->serialize);
	}
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

int
vd_write_zeroes(struct vd_image *img, uint64_t offset, uint64_t length)
{
	struct vd_layer *top;
	int r;

	pthread_rwlock_rdlock(&img->chain->lock);
	r = image_check_writable(img);
	if (r == 0) {
		r = image_check_range(img, offset, length);
	}
	if (r < 0 || length == 0) {
		pthread_rwlock_unlock(&img->chain->lock);
		return r;
	}
	top = img->top;
	if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_lock(&top->serialize);
	}
	r = top->drv->zero ? top->drv->zero(top, offset, length) : -EOPNOTSUPP;
	if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
		pthread_mutex_unlock(&top->serialize);
	}
	pthread_rwlock_unlock(&img->chain->lock);
	if (r == -EOPNOTSUPP) {
		r = vd_set_error(EOPNOTSUPP, "%s: zeroing not supported", img->path);
	}
	return r;
}

int
vd_discard(struct vd_image *img, uint64_t offset, uint64_t length)
{
	return vd_write_zeroes(img, offset, length);
}

int
vd_flush(struct vd_image *img)
{
	struct vd_layer *top;
	int r = 0;

	if (img->readonly || img->is_view) {
		return 0;
	}
	pthread_rwlock_rdlock(&img->chain->lock);
	top = img->top;
	if (top->drv->flush) {
		if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
			pthread_mutex_lock(&top->serialize);
		}
		r = top->drv->flush(top);
		if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
			pthread_mutex_unlock(&top->serialize);
		}
	}
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

/*
 * The chain is held for writing: in-flight I/O (and mapped reads, which hold
 * it for reading until vd_pread_map_done) ends first, and I/O that starts
 * after sees the new size. The driver commits before it returns.
 */
int
vd_resize(struct vd_image *img, uint64_t size, unsigned flags)
{
	struct vd_layer *top;
	int r;

	if (flags & ~VD_RESIZE_SHRINK) {
		return vd_set_error(EINVAL, "%s: unknown resize flags %#x", img->path, flags);
	}
	if (size == 0 || size % 512 || size > VD_MAX_SIZE) {
		return vd_set_error(EINVAL, "%s: bad size %llu: a multiple of 512 from 512 bytes "
				    "to 64 TiB", img->path, (unsigned long long)size);
	}
	pthread_rwlock_wrlock(&img->chain->lock);
	top = img->top;
	r = image_check_writable(img);
	if (r == 0 && !top->drv->resize) {
		r = vd_set_error(ENOTSUP, "%s: resize supports native .vdk images; use qemu-img "
				 "resize for %s", img->path, top->drv->name);
	}
	if (r == 0 && size < top->size && !(flags & VD_RESIZE_SHRINK)) {
		r = vd_set_error(EINVAL, "%s: shrinking from %llu to %llu bytes drops data past "
				 "the new end; allow it with the shrink flag", img->path,
				 (unsigned long long)top->size, (unsigned long long)size);
	}
	if (r == 0 && size != top->size) {
		if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
			pthread_mutex_lock(&top->serialize);
		}
		r = top->drv->resize(top, size);
		if (top->drv->thread_model == VD_THREAD_SERIALIZE) {
			pthread_mutex_unlock(&top->serialize);
		}
	}
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

int
vd_block_status(struct vd_image *img, uint64_t offset, uint64_t length, struct vd_extent *ext)
{
	int r;

	if (length == 0) {
		return vd_set_error(EINVAL, "%s: empty block status request", img->path);
	}
	pthread_rwlock_rdlock(&img->chain->lock);
	r = image_check_range(img, offset, length);
	if (r == 0) {
		r = layer_block_status(img->top, offset, length, ext);
	}
	if (r == 0) {
		if (ext->type != VD_EXTENT_HOLE) {
			ext->layer = 0;
		} else {
			r = chain_status_below(img, offset, ext->length, ext);
			if (r == 0 && ext->layer >= 0) {
				ext->layer -= img->anchor->index;
			}
		}
	}
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

/* ---- layers and snapshots ------------------------------------------------- */

/* The layers an image sees: its top, then the chain below its anchor. */
static int
image_depth(const struct vd_image *img)
{
	return 1 + img->chain->n - (img->anchor->index + 1);
}

static struct vd_layer *
image_layer(const struct vd_image *img, int idx)
{
	if (idx == 0) {
		return img->top;
	}
	return img->chain->layers[img->anchor->index + idx];
}

int
vd_layer_count(const struct vd_image *img)
{
	int n;

	/* A snapshot taken or deleted meanwhile changes the chain (under its lock). */
	pthread_rwlock_rdlock(&img->chain->lock);
	n = image_depth(img);
	pthread_rwlock_unlock(&img->chain->lock);
	return n;
}

/* Host bytes of every file a layer reads, each file counted once. */
static uint64_t
layer_host_bytes(struct vd_layer *l)
{
	int fds[65], n = 0;
	struct stat seen[65];
	uint64_t sum = 0;
	int ns = 0;

	fds[n++] = l->fd;
	if (l->drv->files) {
		int k = l->drv->files(l, fds + 1, 64);

		n += k > 0 ? VD_MIN(k, 64) : 0;
	}
	for (int i = 0; i < n; i++) {
		struct stat st;
		bool dup = false;

		if (fds[i] < 0 || fstat(fds[i], &st) < 0) {
			continue;
		}
		for (int k = 0; k < ns && !dup; k++) {
			dup = seen[k].st_dev == st.st_dev && seen[k].st_ino == st.st_ino;
		}
		if (!dup) {
			seen[ns++] = st;
			sum += (uint64_t)st.st_blocks * 512;
		}
	}
	return sum;
}

int
vd_layer_info(struct vd_image *img, int idx, struct vd_layer_info *info)
{
	struct vd_layer *l;
	int r = 0;

	pthread_rwlock_rdlock(&img->chain->lock);
	if (idx < 0 || idx >= image_depth(img)) {
		r = vd_set_error(EINVAL, "%s: no layer %d", img->path, idx);
		goto out;
	}
	l = image_layer(img, idx);
	memset(info, 0, sizeof(*info));
	info->path = l->path;
	info->format = l->drv->name;
	info->name = (idx == 0 && !img->is_view) ? NULL : l->name;
	info->created = l->created;
	info->size = l->size;
	info->allocated = l->drv->allocated ? l->drv->allocated(l) : 0;
	info->file_size = layer_host_bytes(l);
	info->block_size = l->granularity;
	info->readonly = l->readonly;
	info->encrypted = l->encrypted;
	info->cipher = l->cipher;
	info->backing = l->backing;
	memcpy(info->uuid, l->uuid, 16);
out:
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

bool
vd_snapshot_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-') {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      strchr("._+:@-", ch))) {
			return false;
		}
	}
	return true;
}

/*
 * Snapshot k (oldest first) of an image: walk its layers bottom-up; each layer
 * contributes its internal snapshots, then itself if it is below the top.
 * Returns the layer and, for an internal snapshot, its index in that layer (else -1).
 */
static int
image_snapshot_at(struct vd_image *img, int k, struct vd_layer **lp, int *internal)
{
	int depth = image_depth(img);

	for (int i = depth - 1; i >= 0; i--) {
		struct vd_layer *l = image_layer(img, i);
		int ni = l->drv->snapshot_count ? l->drv->snapshot_count(l) : 0;

		if (ni < 0) {
			ni = 0;
		}
		if (k < ni) {
			*lp = l;
			*internal = k;
			return 0;
		}
		k -= ni;
		if (i > 0) {
			if (k == 0) {
				*lp = l;
				*internal = -1;
				return 0;
			}
			k--;
		}
	}
	return -ENOENT;
}

static int
image_snapshot_count_locked(struct vd_image *img)
{
	int n = 0, depth = image_depth(img);

	for (int i = 0; i < depth; i++) {
		struct vd_layer *l = image_layer(img, i);
		int ni = l->drv->snapshot_count ? l->drv->snapshot_count(l) : 0;

		n += (ni > 0 ? ni : 0) + (i > 0);
	}
	return n;
}

int
vd_snapshot_count(struct vd_image *img)
{
	int n;

	pthread_rwlock_rdlock(&img->chain->lock);
	n = image_snapshot_count_locked(img);
	pthread_rwlock_unlock(&img->chain->lock);
	return n;
}

/* A read-only layer showing internal snapshot in of layer l (qcow2), or NULL with the error set. */
static struct vd_layer *
internal_view_open(struct vd_layer *l, int in)
{
	struct vd_layer *view = calloc(1, sizeof(*view));

	if (!view) {
		vd_set_error(ENOMEM, "out of memory");
		return NULL;
	}
	view->drv = l->drv;
	view->fd = -1;
	view->readonly = true;
	view->refs = 1;
	pthread_mutex_init(&view->serialize, NULL);
	view->path = strdup(l->path);
	view->st = l->drv->instance_size ? calloc(1, l->drv->instance_size) : NULL;
	if (!view->path || (l->drv->instance_size && !view->st)) {
		view->drv = NULL;
		chain_layer_close(view);
		vd_set_error(ENOMEM, "out of memory");
		return NULL;
	}
	if (l->drv->snapshot_open(l, in, view) < 0) {
		view->drv = NULL;
		chain_layer_close(view);
		return NULL;
	}
	return view;
}

static int
image_snapshot_info_locked(struct vd_image *img, int idx, struct vd_snapshot_info *info)
{
	struct vd_layer *l;
	int in;

	memset(info, 0, sizeof(*info));
	if (idx < 0 || image_snapshot_at(img, idx, &l, &in) < 0) {
		return vd_set_error(ENOENT, "%s: no snapshot %d", img->path, idx);
	}
	info->layer = l == img->top ? 0 : l->index - img->anchor->index;
	info->internal = in >= 0;
	if (in >= 0) {
		int r = l->drv->snapshot_info(l, in, &info->name, &info->created);

		if (r < 0) {
			return r;
		}
		/* Its size, and what it holds in its own tables, as its "changed" lists it. */
		{
			struct vd_layer *view = internal_view_open(l, in);

			info->size = l->size;
			if (view) {
				info->size = view->size;
				if (view->drv->allocated) {
					info->allocated = view->drv->allocated(view);
				}
				chain_layer_close(view);
			}
		}
	} else {
		info->name = l->name;
		info->created = l->created;
		info->size = l->size;
		info->allocated = l->drv->allocated ? l->drv->allocated(l) : 0;
	}
	if (idx > 0) {
		struct vd_snapshot_info prev;

		if (image_snapshot_info_locked(img, idx - 1, &prev) == 0) {
			info->parent = prev.name;
		}
	}
	return 0;
}

int
vd_snapshot_info(struct vd_image *img, int idx, struct vd_snapshot_info *info)
{
	int r;

	pthread_rwlock_rdlock(&img->chain->lock);
	r = image_snapshot_info_locked(img, idx, info);
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}

int
vd_snapshot_find(struct vd_image *img, const char *name)
{
	int n, found = -ENOENT;

	pthread_rwlock_rdlock(&img->chain->lock);
	n = image_snapshot_count_locked(img);
	for (int i = 0; i < n; i++) {
		struct vd_snapshot_info si;

		if (image_snapshot_info_locked(img, i, &si) == 0 && si.name &&
		    strcmp(si.name, name) == 0) {
			found = i;
		}
	}
	pthread_rwlock_unlock(&img->chain->lock);
	if (found < 0) {
		vd_set_error(ENOENT, "%s: no snapshot named '%s'", img->path, name);
	}
	return found;
}

struct vd_image *
vd_snapshot_open(struct vd_image *img, int idx)
{
	struct vd_chain *c = img->chain;
	struct vd_layer *l, *view = NULL;
	struct vd_image *v = NULL;
	int in;

	pthread_rwlock_wrlock(&c->lock);
	if (idx < 0 || image_snapshot_at(img, idx, &l, &in) < 0) {
		vd_set_error(ENOENT, "%s: no snapshot %d", img->path, idx);
		goto out;
	}
	if (in >= 0) {
		view = internal_view_open(l, in);
		if (!view) {
			goto out;
		}
		view->chain = c;
		view->index = l->index;
		v = image_new(c, view, l, l->path);
		if (!v) {
			chain_layer_close(view);
			goto out;
		}
		v->own_top = true;
	} else {
		v = image_new(c, l, l, l->path);
		if (!v) {
			goto out;
		}
		l->refs++;
	}
	v->is_view = true;
	v->readonly = true;
	c->views++;
out:
	pthread_rwlock_unlock(&c->lock);
	if (!v) {
		errno = vd_get_errno() ? vd_get_errno() : ENOMEM;
	}
	return v;
}

/* ---- layer helpers used by drivers ----------------------------------------- */

/*
 * A view of the chain from layer l down, for a layer that is not the main
 * image's top (a snapshot being merged or resized under it): walked without
 * the main image's cache, with a merged map of its own (merged_free it).
 */
static int
layer_view(struct vd_image *tmp, struct vd_layer *l)
{
	memset(tmp, 0, sizeof(*tmp));
	tmp->chain = l->chain;
	tmp->top = l;
	tmp->anchor = l;
	tmp->path = l->path;
	tmp->merged = merged_new();
	return tmp->merged ? 0 : vd_set_error(ENOMEM, "out of memory");
}

int
vd_layer_read_below(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	struct vd_chain *c = l->chain;
	struct vd_image tmp;

	if (!c || l->index + 1 >= c->n) {
		memset(buf, 0, len);
		return 0;
	}
	if (c->main && c->main->anchor == l) {
		return chain_read_below(c->main, buf, len, off);
	}
	/* A layer other than the top (merging a snapshot): walk without the cache. */
	int r = layer_view(&tmp, l);
	if (r < 0) {
		return r;
	}
	r = chain_read_below(&tmp, buf, len, off);

	merged_free(tmp.merged);
	return r;
}

int
vd_layer_status_below(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct vd_chain *c = l->chain;
	struct vd_image tmp;
	int r;

	if (!c || l->index + 1 >= c->n) {
		ext->offset = off;
		ext->length = len;
		ext->type = VD_EXTENT_HOLE;
		ext->layer = -1;
		return 0;
	}
	if (c->main && c->main->anchor == l) {
		return chain_status_below(c->main, off, len, ext);
	}
	r = layer_view(&tmp, l);
	if (r < 0) {
		return r;
	}
	r = chain_status_below(&tmp, off, len, ext);
	merged_free(tmp.merged);
	return r;
}

int
vd_layer_open_related(struct vd_layer *l, const char *path, int flags)
{
	char *full = vd_resolve_relative(l->path, path);
	int fd;

	if (!full) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	fd = vd_open_file(full, flags);
	if (fd < 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", vd_get_error());
		vd_set_error(-fd, "%s: cannot open %s", l->path, why);
	}
	free(full);
	return fd;
}

/* ---- checking --------------------------------------------------------------- */

int
vd_check(struct vd_image *img, vd_check_fn report, void *opaque, struct vd_check_result *res)
{
	int r = 0, depth;

	memset(res, 0, sizeof(*res));
	pthread_rwlock_rdlock(&img->chain->lock);
	depth = image_depth(img);
	for (int i = 0; i < depth && r == 0; i++) {
		struct vd_layer *l = image_layer(img, i);

		if (l->drv->check) {
			r = l->drv->check(l, report, opaque, i, res);
		}
	}
	pthread_rwlock_unlock(&img->chain->lock);
	return r;
}
