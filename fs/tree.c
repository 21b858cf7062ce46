// SPDX-License-Identifier: MIT
/*
 * The parts of the vdiskfs tree that change while mounted: the snapshot
 * folders and the partition files.
 *
 * Design notes. The snapshot list is a copy of vd_snapshot_info() taken at
 * mount and after every mkdir/rmdir (nothing else can change it: the daemon
 * holds the image's write lock). Entries are refcounted and matched by name
 * across refreshes, so an open file keeps its struct vdfs_snap (and the
 * snapshot's read-only view) even while the list is rebuilt. A view
 * (vd_snapshot_open) is opened when the first file of the folder is opened and
 * closed with the last one, so an idle mount holds no views; rmdir of a folder
 * with open files answers EBUSY rather than pulling layers from under a view.
 *
 * "changed" is computed from vd_block_status on the snapshot's view: the
 * extents whose layer is the snapshot's own layer are exactly the blocks
 * written between the snapshot before it and this one. The text is cached per
 * snapshot generation (a delete merges layers, so it can change then).
 *
 * Folder names. A foreign snapshot's name is free text (a qcow2 tag, a VMware
 * displayName: "before 1/2"), and a directory entry cannot hold '/', be empty,
 * "." or "..", or be longer than 255 bytes; one bad name in a READDIR reply
 * makes the kernel refuse the whole listing. Such a name gets an escaped entry:
 * '/' is %2F, '%' is %25, the dots of "." and ".." are %2E, an empty name is
 * "%", a long one is cut at 240 bytes; an entry that two snapshots would share
 * gets "~ID" (the snapshot's number in `vdisk snapshot list`) on the later one.
 * Every other name is its own entry. The real name is in the folder's info.
 *
 * The partition table is re-read lazily: writes bump write_gen, and the next
 * lookup of partitions/ re-parses when the generation moved.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include "vdiskfs.h"

static void
snap_free(struct vdfs_snap *s)
{
	if (!s) {
		return;
	}
	free(s->name);
	free(s->entry);
	free(s->parent);
	free(s->changed);
	free(s);
}

/* Caller holds fs->lock. */
static void
snap_put_locked(struct vdfs *fs, struct vdfs_snap *s)
{
	(void)fs;
	if (--s->refs == 0) {
		if (s->view) {
			vd_close(s->view);
		}
		snap_free(s);
	}
}

void
vdfs_snap_put(struct vdfs *fs, struct vdfs_snap *s)
{
	if (!s) {
		return;
	}
	pthread_mutex_lock(&fs->lock);
	snap_put_locked(fs, s);
	pthread_mutex_unlock(&fs->lock);
}

struct vdfs_snap *
vdfs_snap_get(struct vdfs *fs, const char *name)
{
	struct vdfs_snap *s = NULL;
	int i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->nsnaps; i++) {
		if (strcmp(fs->snaps[i]->entry, name) == 0) {
			s = fs->snaps[i];
			s->refs++;
			break;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return s;
}

/* The folder name of snapshot name (design notes); malloc'd, NULL without memory. */
static char *
snap_entry(const char *name)
{
	size_t len = strlen(name);
	bool dots = strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
	char *e, *o;

	if (len > 0 && len <= 255 && !strchr(name, '/') && !dots) {
		return strdup(name);
	}
	e = malloc(3 * len + 2);
	if (!e) {
		return NULL;
	}
	o = e;
	if (len == 0) {
		*o++ = '%';
	}
	for (const char *c = name; *c; c++) {
		if (*c == '/' || *c == '%' || (dots && *c == '.')) {
			o += sprintf(o, "%%%02X", (unsigned char)*c);
		} else {
			*o++ = *c;
		}
	}
	*o = '\0';
	if (o - e > 240) {
		e[240] = '\0';
	}
	return e;
}

/* Give each snapshot of list[0..n) its folder name; a name taken already gets "~ID". */
static int
snap_entries(struct vdfs_snap **list, int n)
{
	for (int i = 0; i < n; i++) {
		char *e = snap_entry(list[i]->name);
		bool taken = false;

		if (!e) {
			return -ENOMEM;
		}
		for (int j = 0; j < i && !taken; j++) {
			taken = strcmp(list[j]->entry, e) == 0;
		}
		if (taken) {
			char *t = malloc(strlen(e) + 16);

			if (!t) {
				free(e);
				return -ENOMEM;
			}
			sprintf(t, "%.240s~%d", e, i + 1);	/* (still at most 255 bytes) */
			free(e);
			e = t;
		}
		free(list[i]->entry);
		list[i]->entry = e;
	}
	return 0;
}

int
vdfs_snaps_refresh(struct vdfs *fs)
{
	struct vdfs_snap **list = NULL;
	int n, i, j, ret = 0;

	pthread_mutex_lock(&fs->lock);
	n = vd_snapshot_count(fs->img);
	if (n < 0) {
		ret = n;
		goto out;
	}
	list = calloc((size_t)n + 1, sizeof(*list));
	if (!list) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct vd_snapshot_info si;
		struct vdfs_snap *s = NULL;

		ret = vd_snapshot_info(fs->img, i, &si);
		if (ret < 0) {
			goto err;
		}
		for (j = 0; j < fs->nsnaps; j++) {
			if (fs->snaps[j] && strcmp(fs->snaps[j]->name, si.name) == 0) {
				s = fs->snaps[j];
				fs->snaps[j] = NULL; /* moved to the new list */
				break;
			}
		}
		if (!s) {
			s = calloc(1, sizeof(*s));
			if (!s || !(s->name = strdup(si.name))) {
				snap_free(s);
				ret = -ENOMEM;
				goto err;
			}
			s->refs = 1;
		}
		free(s->parent);
		s->parent = si.parent ? strdup(si.parent) : NULL;
		s->created = si.created;
		s->allocated = si.allocated;
		s->size = si.size;
		s->layer = si.layer;
		list[i] = s;
	}
	ret = snap_entries(list, n);
	if (ret < 0) {
		goto err;
	}
	/* Whatever is left in the old list is gone. */
	for (j = 0; j < fs->nsnaps; j++) {
		if (fs->snaps[j]) {
			fs->snaps[j]->gone = true;
			snap_put_locked(fs, fs->snaps[j]);
		}
	}
	free(fs->snaps);
	fs->snaps = list;
	fs->nsnaps = n;
	fs->snap_gen++;
	goto out;
err:
	/* Put back what was moved, drop what was new. */
	for (i = 0; i < n && list[i]; i++) {
		for (j = 0; j < fs->nsnaps; j++) {
			if (!fs->snaps[j]) {
				fs->snaps[j] = list[i];
				list[i] = NULL;
				break;
			}
		}
		if (list[i]) {
			snap_put_locked(fs, list[i]);
		}
	}
	free(list);
out:
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/* Index of the snapshot's own layer inside its view. Caller holds fs->lock. */
static int
snap_view_layer(struct vdfs *fs, struct vdfs_snap *s, struct vd_image *view)
{
	struct vd_layer_info li, vi;
	char *path;
	int i, n;

	if (vd_layer_info(fs->img, s->layer, &li) < 0 || !li.path) {
		return 0;
	}
	path = strdup(li.path);
	if (!path) {
		return 0;
	}
	n = vd_layer_count(view);
	for (i = 0; i < n; i++) {
		if (vd_layer_info(view, i, &vi) == 0 && vi.path && strcmp(vi.path, path) == 0) {
			free(path);
			return i;
		}
	}
	free(path);
	return 0; /* a view's top is the snapshot itself */
}

/* Open the view of s if needed. Caller holds fs->lock. */
static int
snap_view_open_locked(struct vdfs *fs, struct vdfs_snap *s)
{
	int idx;

	if (s->view) {
		return 0;
	}
	if (s->gone) {
		return -ENOENT;
	}
	idx = vd_snapshot_find(fs->img, s->name);
	if (idx < 0) {
		return idx;
	}
	s->view = vd_snapshot_open(fs->img, idx);
	if (!s->view) {
		vdfs_log(fs, "snapshot %s: %s", s->name, vd_get_error());
		return errno ? -errno : -EIO;
	}
	s->view_layer = snap_view_layer(fs, s, s->view);
	return 0;
}

int
vdfs_snap_open_file(struct vdfs *fs, struct vdfs_snap *s, struct vd_image **view)
{
	int ret = 0;

	pthread_mutex_lock(&fs->lock);
	if (s->gone) {
		ret = -ENOENT;
	} else if (view) {
		ret = snap_view_open_locked(fs, s);
		if (ret == 0) {
			s->view_users++;
			*view = s->view;
		}
	}
	if (ret == 0) {
		s->open_files++;
	}
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

void
vdfs_snap_close_file(struct vdfs *fs, struct vdfs_snap *s, bool had_view)
{
	pthread_mutex_lock(&fs->lock);
	s->open_files--;
	if (had_view && --s->view_users == 0 && s->view) {
		vd_close(s->view);
		s->view = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
}

int
vdfs_snap_info_text(struct vdfs *fs, struct vdfs_snap *s, char **txt, size_t *len)
{
	char when[64];
	struct tm tm;
	time_t t;
	int n;

	pthread_mutex_lock(&fs->lock);
	t = (time_t)s->created;
	if (gmtime_r(&t, &tm)) {
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	} else {
		snprintf(when, sizeof(when), "-");
	}
	n = asprintf(txt,
		     "name: %s\n"
		     "size: %" PRIu64 "\n"
		     "created: %" PRId64 "\n"
		     "created_utc: %s\n"
		     "parent: %s\n"
		     "allocated: %" PRIu64 "\n",
		     s->name, s->size, s->created, when, s->parent ? s->parent : "-",
		     s->allocated);
	pthread_mutex_unlock(&fs->lock);
	if (n < 0) {
		*txt = NULL;
		return -ENOMEM;
	}
	*len = (size_t)n;
	return 0;
}

struct strbuf {
	char *p;
	size_t len, cap;
};

static int
sb_printf(struct strbuf *b, uint64_t off, uint64_t len)
{
	char line[48];
	int n = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", off, len);

	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		char *p = realloc(b->p, cap);

		if (!p) {
			return -ENOMEM;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, line, (size_t)n + 1);
	b->len += (size_t)n;
	return 0;
}

/* Build the changed-ranges text from the view. Caller holds fs->lock and the view is open. */
static int
snap_changed_build(struct vdfs *fs, struct vd_image *view, int layer, struct strbuf *b)
{
	uint64_t size = vd_get_size(view), off = 0, run_off = 0, run_len = 0;
	int ret;

	(void)fs;
	while (off < size) {
		struct vd_extent e;

		ret = vd_block_status(view, off, size - off, &e);
		if (ret < 0) {
			return ret;
		}
		if (e.length == 0 || e.length > size - off) {
			return -EIO;
		}
		if (e.type != VD_EXTENT_HOLE && e.layer == layer) {
			if (run_len && run_off + run_len == off) {
				run_len += e.length;
			} else {
				if (run_len && (ret = sb_printf(b, run_off, run_len)) < 0) {
					return ret;
				}
				run_off = off;
				run_len = e.length;
			}
		}
		off += e.length;
	}
	if (run_len && (ret = sb_printf(b, run_off, run_len)) < 0) {
		return ret;
	}
	return 0;
}

int
vdfs_snap_changed_text(struct vdfs *fs, struct vdfs_snap *s, char **txt, size_t *len)
{
	struct strbuf b = {0};
	bool temp_view = false;
	int ret = 0;

	pthread_mutex_lock(&fs->lock);
	if (s->changed && s->changed_gen == fs->snap_gen) {
		goto copy;
	}
	if (!s->view) {
		ret = snap_view_open_locked(fs, s);
		if (ret < 0) {
			goto out;
		}
		temp_view = true;
	}
	ret = snap_changed_build(fs, s->view, s->view_layer, &b);
	if (temp_view) {
		vd_close(s->view);
		s->view = NULL;
	}
	if (ret < 0) {
		free(b.p);
		goto out;
	}
	free(s->changed);
	s->changed = b.p ? b.p : strdup("");
	s->changed_len = b.len;
	s->changed_gen = fs->snap_gen;
	if (!s->changed) {
		ret = -ENOMEM;
		goto out;
	}
copy:
	*txt = malloc(s->changed_len + 1);
	if (!*txt) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(*txt, s->changed, s->changed_len + 1);
	*len = s->changed_len;
out:
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

static int
parts_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	struct vdfs *fs = opaque;

	return vd_pread(fs->img, buf, len, off);
}

int
vdfs_parts_get(struct vdfs *fs, struct vdfs_part *out, int max)
{
	uint64_t gen = atomic_load(&fs->write_gen);
	int n, ret;

	pthread_mutex_lock(&fs->lock);
	if (!fs->parts_valid || fs->parts_gen != gen) {
		ret = vdfs_part_scan(parts_read, fs, fs->size, fs->parts, VDFS_PART_MAX);
		if (ret < 0) {
			vdfs_log(fs, "reading the partition table: %s", vd_get_error());
			ret = 0;
		}
		fs->nparts = ret;
		fs->parts_gen = gen;
		fs->parts_valid = true;
	}
	n = fs->nparts < max ? fs->nparts : max;
	memcpy(out, fs->parts, (size_t)n * sizeof(*out));
	pthread_mutex_unlock(&fs->lock);
	return n;
}

uint64_t
vdfs_allocated(struct vdfs *fs)
{
	time_t now = time(NULL);
	uint64_t sum = 0;
	int i, n;

	pthread_mutex_lock(&fs->lock);
	if (fs->alloc_cache_time == now) {
		sum = fs->alloc_cache;
		goto out;
	}
	n = vd_layer_count(fs->img);
	for (i = 0; i < n; i++) {
		struct vd_layer_info li;

		if (vd_layer_info(fs->img, i, &li) == 0) {
			sum += li.allocated;
		}
	}
	if (sum > fs->size) {
		sum = fs->size;
	}
	fs->alloc_cache = sum;
	fs->alloc_cache_time = now;
out:
	pthread_mutex_unlock(&fs->lock);
	return sum;
}

void
vdfs_tree_destroy(struct vdfs *fs)
{
	int i;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < fs->nsnaps; i++) {
		struct vdfs_snap *s = fs->snaps[i];

		if (s->view) {
			vd_close(s->view);
			s->view = NULL;
		}
		s->gone = true;
		snap_put_locked(fs, s);
	}
	free(fs->snaps);
	fs->snaps = NULL;
	fs->nsnaps = 0;
	pthread_mutex_unlock(&fs->lock);
}
