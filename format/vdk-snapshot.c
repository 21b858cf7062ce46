// SPDX-License-Identifier: MIT
/*
 * Snapshots of native chains: create (freeze the top in O(1)), delete (merge a
 * layer into its child), revert (a new empty top over an older layer).
 * The file-level protocol and its crash analysis are in format/FORMAT.md.
 *
 * All three take the chain lock for writing while they change the layer list,
 * so in-flight I/O drains first and later I/O sees the new chain. Deleting
 * copies data in chunks, each under the write lock, so that reads and writes
 * go on between chunks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "chain.h"
#include "util.h"
#include "vdk.h"

#define MERGE_CHUNK (8ull << 20)

static int
snap_fsync_dir(const char *path)
{
	char *dir = vd_dirname(path);
	int fd, r = 0;

	if (!dir) {
		return -ENOMEM;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0) {
		return -errno;
	}
	if (fsync(fd) < 0) {
		r = -errno;
	}
	close(fd);
	return r;
}

/* "dir/vm.vdk" + "s1" -> "dir/vm@s1.vdk" (caller frees); a free name if that exists. */
static char *
snap_frozen_path(const char *top, const char *name)
{
	size_t n = strlen(top);
	const char *ext = (n > 4 && strcmp(top + n - 4, ".vdk") == 0) ? ".vdk" : "";
	size_t stem = n - strlen(ext);
	char *p = NULL;

	for (int i = 1; i < 1000; i++) {
		char suffix[16] = "";

		if (i > 1) {
			snprintf(suffix, sizeof(suffix), "-%d", i);
		}
		free(p);
		if (asprintf(&p, "%.*s@%s%s%s", (int)stem, top, name, suffix, ext) < 0) {
			return NULL;
		}
		if (access(p, F_OK) < 0 && errno == ENOENT) {
			return p;
		}
	}
	free(p);
	errno = EEXIST;
	return NULL;
}

static const char *
snap_basename(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static int
snap_check_native_top(struct vd_image *img)
{
	if (img->is_view || img->readonly) {
		return vd_set_error(EROFS, "%s: image is open read-only", img->path);
	}
	if (img->top->drv != &vd_vdk_driver) {
		return vd_set_error(ENOTSUP, "%s: snapshots need a native (vdk) top layer; "
				    "create an overlay with vdisk create -b", img->path);
	}
	/*
	 * Taking or reverting a snapshot renames files next to the top: through
	 * a symbolic link that would freeze the real file under its own name and
	 * put the new top where the link was.
	 */
	{
		struct stat sb;

		if (lstat(img->top->path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
			char *real = realpath(img->top->path, NULL);

			vd_set_error(EINVAL, "%s is a symbolic link: snapshots rename files next to "
				     "the image, open it by its real path (%s)", img->top->path,
				     real ? real : "unknown");
			free(real);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * The layer of the chain holding an internal snapshot (qcow2) called name, or
 * NULL. Caller holds the chain lock.
 */
static struct vd_layer *
snap_internal_named(struct vd_chain *c, const char *name)
{
	for (int i = 0; i < c->n; i++) {
		struct vd_layer *l = c->layers[i];
		int n = l->drv->snapshot_count ? l->drv->snapshot_count(l) : 0;

		for (int k = 0; k < n; k++) {
			const char *sn = NULL;
			int64_t created;

			if (l->drv->snapshot_info(l, k, &sn, &created) == 0 && sn &&
			    strcmp(sn, name) == 0) {
				return l;
			}
		}
	}
	return NULL;
}

/* Name already used by a layer or an internal snapshot of the chain? Caller holds the chain lock. */
static bool
snap_name_used(struct vd_chain *c, const char *name)
{
	for (int i = 1; i < c->n; i++) {
		if (c->layers[i]->name && strcmp(c->layers[i]->name, name) == 0) {
			return true;
		}
	}
	return snap_internal_named(c, name) != NULL;
}

/* No layer is called name: say so, or that it is an internal snapshot we do not change. */
static int
snap_not_found(struct vd_image *img, const char *name, const char *what)
{
	struct vd_layer *l = snap_internal_named(img->chain, name);

	if (l) {
		return vd_set_error(ENOTSUP, "%s: '%s' is an internal snapshot of %s; it cannot be "
				    "%s here (qemu-img snapshot can)", img->path, name, l->path,
				    what);
	}
	return vd_set_error(ENOENT, "%s: no snapshot named '%s'", img->path, name);
}

int
vd_snapshot_create(struct vd_image *img, const char *name)
{
	struct vd_chain *c = img->chain;
	struct vd_layer *top, *nt = NULL, **nl;
	struct vdk_state *st;
	char *frozen = NULL, *tmp = NULL;
	int64_t now = vd_now();
	int r;

	r = snap_check_native_top(img);
	if (r < 0) {
		return r;
	}
	if (!vd_snapshot_name_valid(name)) {
		return vd_set_error(EINVAL, "%s: invalid snapshot name '%s' (1-64 of A-Z a-z 0-9 . _ + : @ -)",
				    img->path, name);
	}
	pthread_rwlock_wrlock(&c->lock);
	top = c->layers[0];
	st = top->st;
	if (snap_name_used(c, name)) {
		r = vd_set_error(EEXIST, "%s: a snapshot named '%s' exists", img->path, name);
		goto out;
	}
	if (c->n >= CHAIN_MAX_DEPTH - 1) {
		r = vd_set_error(EMLINK, "%s: chain too deep for another snapshot", img->path);
		goto out;
	}
	/* 1. everything written so far is in the snapshot */
	r = vd_flush_layer_locked(top);
	if (r < 0) {
		goto out;
	}
	frozen = snap_frozen_path(top->path, name);
	if (!frozen || asprintf(&tmp, "%s.tmp", top->path) < 0) {
		r = vd_set_error(errno ? errno : ENOMEM, "%s: cannot name the snapshot file", img->path);
		goto out;
	}
	/* 2. the frozen name */
	if (link(top->path, frozen) < 0) {
		r = vd_set_error(errno, "%s: cannot link %s: %s", img->path, frozen, strerror(errno));
		goto out;
	}
	/* 3. the new empty top, naming the frozen file as its backing */
	unlink(tmp);
	r = vdk_create_file(tmp, top->size, st->bs, snap_basename(frozen), "vdk", name, now,
			    st->hdr.uuid, st->crypt ? st->hdr.crypt_area : NULL, st->crypt ? st->hdr.uuid : NULL,
			    st->crypt, st->hdr.ctr_next);
	if (r < 0) {
		unlink(frozen);
		goto out;
	}
	r = chain_layer_open(tmp, "vdk", true, false, c->passphrase, c->passphrase_opaque, &nt);
	if (r < 0) {
		unlink(tmp);
		unlink(frozen);
		goto out;
	}
	/* 4. the commit point */
	if (rename(tmp, top->path) < 0) {
		r = vd_set_error(errno, "%s: cannot install the new top: %s", img->path,
				 strerror(errno));
		chain_layer_close(nt);
		nt = NULL;
		unlink(tmp);
		unlink(frozen);
		goto out;
	}
	snap_fsync_dir(top->path);
	free(nt->path);
	nt->path = strdup(top->path);
	/* 5. the old top is now the frozen layer */
	free(top->path);
	top->path = frozen;
	frozen = NULL;
	vdk_grow_trim(top);
	fchmod(top->fd, 0444);
	flock(top->fd, LOCK_SH | LOCK_NB);
	top->readonly = true;
	st->writable = false;
	st->cache_limit = (16ull << 20);
	free(top->name);
	top->name = strdup(name);
	top->created = now;
	nl = realloc(c->layers, sizeof(*nl) * (size_t)(c->n + 1));
	if (!nl || !nt->path || !top->name) {
		r = vd_set_error(ENOMEM, "out of memory");
		if (nl) {
			c->layers = nl;
		}
		goto out;
	}
	c->layers = nl;
	memmove(c->layers + 1, c->layers, sizeof(*nl) * (size_t)c->n);
	c->layers[0] = nt;
	c->n++;
	nt->chain = c;
	if (c->main->top == top) {
		c->main->top = nt;
		c->main->anchor = nt;
	}
	chain_reindex(c);
	nt = NULL;
out:
	pthread_rwlock_unlock(&c->lock);
	if (nt) {
		chain_layer_close(nt);
	}
	free(frozen);
	free(tmp);
	return r;
}

/*
 * Before a merge writes n bytes into ch, a frozen encrypted layer: every layer
 * of the chain with the same uuid shares its data key, hence its block key, so
 * ch must seal with counters no other layer has used or will use. Take them
 * above the highest counter reservation in the chain, and move the writable
 * top's reservation past them (committed before they are used). Chain write
 * lock held.
 */
static int
snap_merge_counters(struct vd_chain *c, struct vd_layer *ch, uint64_t n)
{
	struct vdk_state *cst = ch->st, *tst;
	struct vd_layer *top = c->layers[0];
	uint64_t base = 0, need;
	int r = 0;

	if (!cst->crypt || top == ch) {
		return 0;
	}
	need = (n >> cst->bshift) + 2;
	for (int i = 0; i < c->n; i++) {
		struct vdk_state *ls = c->layers[i]->st;

		if (c->layers[i]->drv != &vd_vdk_driver || !ls->crypt ||
		    memcmp(ls->hdr.uuid, cst->hdr.uuid, 16) != 0) {
			continue;
		}
		pthread_mutex_lock(&ls->lock);
		base = VD_MAX(base, VD_MAX(ls->ctr_next, ls->hdr.ctr_next));
		pthread_mutex_unlock(&ls->lock);
	}
	tst = top->st;
	if (top->drv == &vd_vdk_driver && tst->crypt && tst->writable &&
	    memcmp(tst->hdr.uuid, cst->hdr.uuid, 16) == 0) {
		pthread_mutex_lock(&tst->lock);
		if (base + need >= tst->hdr.ctr_next) {
			uint64_t old = tst->hdr.ctr_next;

			tst->hdr.ctr_next = base + need + (1ull << 20);
			r = vdk_header_write(top->fd, top->path, &tst->hdr, tst->crypt);
			if (r < 0) {
				tst->hdr.ctr_next = old;
			}
		}
		if (r == 0) {
			tst->ctr_next = base + need;
		}
		pthread_mutex_unlock(&tst->lock);
	}
	if (r == 0) {
		pthread_mutex_lock(&cst->lock);
		cst->ctr_next = base;
		pthread_mutex_unlock(&cst->lock);
	}
	return r;
}

/* Copy what layer s holds and its child ch does not into ch. Chunked; takes the write lock per chunk. */
static int
snap_merge_into_child(struct vd_chain *c, struct vd_layer *s, struct vd_layer *ch)
{
	uint64_t size = VD_MIN(s->size, ch->size), pos = 0;
	uint8_t *buf = malloc(MERGE_CHUNK);
	int r = 0;

	if (!buf) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	while (pos < size && r == 0) {
		uint64_t end = VD_MIN(size, pos + MERGE_CHUNK);

		pthread_rwlock_wrlock(&c->lock);
		while (pos < end && r == 0) {
			struct vd_extent es, ec;
			uint64_t n;

			r = layer_block_status(s, pos, end - pos, &es);
			if (r < 0) {
				break;
			}
			if (es.type == VD_EXTENT_HOLE) {
				pos += es.length;
				continue;
			}
			r = layer_block_status(ch, pos, es.length, &ec);
			if (r < 0) {
				break;
			}
			n = ec.length;
			if (ec.type == VD_EXTENT_HOLE) {
				if (es.type == VD_EXTENT_ZERO) {
					r = ch->drv->zero(ch, pos, n);
				} else {
					r = layer_pread(s, buf, (size_t)n, pos);
					if (r == 0) {
						r = snap_merge_counters(c, ch, n);
					}
					if (r == 0) {
						r = ch->drv->pwrite(ch, buf, (size_t)n, pos);
					}
				}
			}
			pos += n;
		}
		if (r == 0) {
			r = vd_flush_layer_locked(ch);
		}
		pthread_rwlock_unlock(&c->lock);
	}
	free(buf);
	return r;
}

int
vd_snapshot_delete(struct vd_image *img, const char *name)
{
	struct vd_chain *c = img->chain;
	struct vd_layer *s = NULL, *ch, *below;
	int idx = -1, r;

	if (img->is_view || img->readonly) {
		return vd_set_error(EROFS, "%s: image is open read-only", img->path);
	}
	pthread_rwlock_rdlock(&c->lock);
	for (int i = 1; i < c->n; i++) {
		if (c->layers[i]->name && strcmp(c->layers[i]->name, name) == 0) {
			idx = i;
		}
	}
	if (idx < 0) {
		r = snap_not_found(img, name, "deleted");
		pthread_rwlock_unlock(&c->lock);
		return r;
	}
	s = c->layers[idx];
	ch = c->layers[idx - 1];
	below = idx + 1 < c->n ? c->layers[idx + 1] : NULL;
	if (s->drv != &vd_vdk_driver || ch->drv != &vd_vdk_driver) {
		pthread_rwlock_unlock(&c->lock);
		return vd_set_error(ENOTSUP, "%s: snapshot '%s' is not a native layer; "
				    "it cannot be deleted here", img->path, name);
	}
	if (s->refs > 1) {
		pthread_rwlock_unlock(&c->lock);
		return vd_set_error(EBUSY, "%s: snapshot '%s' is in use", img->path, name);
	}
	pthread_rwlock_unlock(&c->lock);

	pthread_rwlock_wrlock(&c->lock);
	r = vdk_make_writable(ch);
	pthread_rwlock_unlock(&c->lock);
	if (r < 0) {
		return r;
	}
	r = snap_merge_into_child(c, s, ch);
	if (r < 0) {
		return r;
	}
	pthread_rwlock_wrlock(&c->lock);
	if (s->refs > 1) {
		r = vd_set_error(EBUSY, "%s: snapshot '%s' is in use", img->path, name);
		goto out;
	}
	/* The child now names what was below the deleted layer: one header commit. */
	if (below) {
		char *rel = vd_make_relative(ch->path, below->path);

		if (!rel) {
			r = vd_set_error(ENOMEM, "out of memory");
			goto out;
		}
		r = vdk_set_backing(ch, rel, below->drv->name, below->name, below->created,
				    below->drv == &vd_vdk_driver ? below->uuid : NULL);
		free(rel);
	} else {
		r = vdk_set_backing(ch, NULL, NULL, NULL, 0, NULL);
	}
	if (r < 0) {
		goto out;
	}
	if (unlink(s->path) < 0 && errno != ENOENT) {
		/* Not referenced any more: only space is lost. */
		vd_set_error(errno, "%s: snapshot deleted but %s could not be removed: %s",
			     img->path, s->path, strerror(errno));
	}
	snap_fsync_dir(ch->path);
	memmove(c->layers + idx, c->layers + idx + 1, sizeof(*c->layers) * (size_t)(c->n - idx - 1));
	c->n--;
	chain_reindex(c);
	chain_layer_close(s);
	/* A frozen child stays frozen: give up the write access again. */
	if (idx - 1 > 0) {
		struct vdk_state *cst = ch->st;

		pthread_mutex_lock(&cst->lock);
		vdk_commit_locked(ch);
		cst->writable = false;
		pthread_mutex_unlock(&cst->lock);
		ch->readonly = true;
		flock(ch->fd, LOCK_SH | LOCK_NB);
	}
out:
	pthread_rwlock_unlock(&c->lock);
	return r;
}

int
vd_snapshot_revert(struct vd_image *img, const char *name)
{
	struct vd_chain *c = img->chain;
	struct vd_layer *top, *s, *nt = NULL;
	struct vdk_state *st;
	char *tmp = NULL;
	int idx = -1, r;

	r = snap_check_native_top(img);
	if (r < 0) {
		return r;
	}
	pthread_rwlock_wrlock(&c->lock);
	top = c->layers[0];
	st = top->st;
	for (int i = 1; i < c->n; i++) {
		if (c->layers[i]->name && strcmp(c->layers[i]->name, name) == 0) {
			idx = i;
		}
	}
	if (idx < 0) {
		r = snap_not_found(img, name, "reverted to");
		goto out;
	}
	for (int i = 1; i < idx; i++) {
		if (c->layers[i]->refs > 1 || c->layers[i]->drv != &vd_vdk_driver) {
			r = vd_set_error(EBUSY, "%s: snapshot '%s' is in use or not native",
					 img->path, c->layers[i]->name);
			goto out;
		}
	}
	s = c->layers[idx];
	if (asprintf(&tmp, "%s.tmp", top->path) < 0) {
		r = vd_set_error(ENOMEM, "out of memory");
		tmp = NULL;
		goto out;
	}
	unlink(tmp);
	{
		char *rel = vd_make_relative(top->path, s->path);

		r = rel ? vdk_create_file(tmp, top->size, st->bs, rel, s->drv->name, s->name,
					  s->created,
					  s->drv == &vd_vdk_driver ? s->uuid : NULL, st->crypt ? st->hdr.crypt_area : NULL,
					  st->crypt ? st->hdr.uuid : NULL, st->crypt,
					  VD_MAX(st->hdr.ctr_next, st->ctr_next))
			: vd_set_error(ENOMEM, "out of memory");
		free(rel);
	}
	if (r < 0) {
		goto out;
	}
	r = chain_layer_open(tmp, "vdk", true, false, c->passphrase, c->passphrase_opaque, &nt);
	if (r < 0) {
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, top->path) < 0) {
		r = vd_set_error(errno, "%s: cannot install the new top: %s", img->path,
				 strerror(errno));
		chain_layer_close(nt);
		unlink(tmp);
		goto out;
	}
	snap_fsync_dir(top->path);
	free(nt->path);
	nt->path = strdup(top->path);
	/* The old top is gone (its file was replaced); drop the newer snapshots too. */
	st->dirty = false;	/* do not commit into the replaced file */
	chain_layer_close(top);
	for (int i = 1; i < idx; i++) {
		unlink(c->layers[i]->path);
		chain_layer_close(c->layers[i]);
	}
	memmove(c->layers + 1, c->layers + idx, sizeof(*c->layers) * (size_t)(c->n - idx));
	c->n -= idx - 1;
	c->layers[0] = nt;
	nt->chain = c;
	c->main->top = nt;
	c->main->anchor = nt;
	chain_reindex(c);
out:
	pthread_rwlock_unlock(&c->lock);
	free(tmp);
	return r;
}
