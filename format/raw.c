// SPDX-License-Identifier: MIT
/*
 * The raw driver: the file is the disk. PARALLEL (pread/pwrite only). It probes
 * with score 1 so that any real format wins, and the core never probes raw for a
 * backing file (the format must be recorded: see qemu's CVE-2008-2004 note).
 * Holes come from SEEK_DATA/SEEK_HOLE; zeroing punches holes. A raw file that
 * lives in memory (tmpfs, ramfs) is also mapped for reads without a copy
 * (vd_pread_map; see vdk-map.c): nothing is verified or moved, so the pieces
 * are the file's own pages, and nothing needs to be held.
 *
 * SEEK_HOLE costs the length of the data run it walks on tmpfs (the page
 * index is scanned page by page): asked at every read of a 4 GiB raw file
 * that is all data, it took 14 ms per MiB read. So the last DATA extent
 * found is remembered and answers the reads inside it. Only data is
 * remembered: a read of data is a pread, right even if another program
 * punched a hole there since, whereas a remembered hole would hide data
 * written since. A zeroing through the library forgets it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include "internal.h"
#include "util.h"

static int
raw_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)buf;
	(void)len;
	(void)file_size;
	(void)filename;
	return 1;
}

struct raw_state {
	uint8_t *map;		/* the file mapped read-only (memory-backed files), or NULL */
	uint64_t map_len;
	pthread_mutex_t data_lock;
	uint64_t data_lo, data_hi; /* the last DATA extent found ([0, 0): none) */
};

/* Map a regular file that lives in memory (vd_fd_mappable). */
static void
raw_map(struct vd_layer *l, const struct stat *st)
{
	struct raw_state *rs = l->st;
	void *p;

	if (!S_ISREG(st->st_mode) || st->st_size <= 0 || !vd_fd_mappable(l->fd)) {
		return;
	}
	p = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, l->fd, 0);
	if (p != MAP_FAILED) {
		rs->map = p;
		rs->map_len = (uint64_t)st->st_size;
		l->mapped = true;
	}
}

static void
raw_close(struct vd_layer *l)
{
	struct raw_state *rs = l->st;

	pthread_mutex_destroy(&rs->data_lock);
	if (rs->map) {
		munmap(rs->map, rs->map_len);
		rs->map = NULL;
		l->mapped = false;
	}
}

static int
raw_pread_map(struct vd_layer *l, uint64_t off, size_t len, struct vd_mapped *m)
{
	struct raw_state *rs = l->st;

	if (!rs->map || off > rs->map_len || len > rs->map_len - off) {
		return -EAGAIN;
	}
	return vd_mapped_add(m, rs->map + off, len);
}

static int
raw_open(struct vd_layer *l)
{
	struct raw_state *rs = l->st;
	struct stat st;

	pthread_mutex_init(&rs->data_lock, NULL);
	if (fstat(l->fd, &st) < 0) {
		return vd_set_error(errno, "%s: %s", l->path, strerror(errno));
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(l->fd, 0, SEEK_END);

		if (end < 0) {
			return vd_set_error(errno, "%s: %s", l->path, strerror(errno));
		}
		l->size = (uint64_t)end;
	} else {
		l->size = (uint64_t)st.st_size;
	}
	l->granularity = 4096;
	raw_map(l, &st);
	return 0;
}

static int
raw_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	int r = vd_pread_zerofill(l->fd, buf, len, off);

	if (r < 0) {
		return vd_set_error(r, "%s: read at %llu: %s", l->path, (unsigned long long)off,
				    strerror(-r));
	}
	return 0;
}

static int
raw_pwrite(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	int r = vd_full_pwrite(l->fd, buf, len, off);

	if (r < 0) {
		return vd_set_error(r, "%s: write at %llu: %s", l->path, (unsigned long long)off,
				    strerror(-r));
	}
	return 0;
}

static int
raw_zero(struct vd_layer *l, uint64_t off, uint64_t len)
{
	static const char zeroes[65536];
	struct raw_state *rs = l->st;
	int r;

	pthread_mutex_lock(&rs->data_lock);
	rs->data_lo = rs->data_hi = 0;
	pthread_mutex_unlock(&rs->data_lock);
	if (fallocate(l->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0 ||
	    vd_punch_hole(l->fd, off, len) == 0) {
		return 0;
	}
	while (len > 0) {
		size_t n = (size_t)VD_MIN(len, sizeof(zeroes));

		r = raw_pwrite(l, zeroes, n, off);
		if (r < 0) {
			return r;
		}
		off += n;
		len -= n;
	}
	return 0;
}

static int
raw_flush(struct vd_layer *l)
{
	int r = vd_fdatasync(l->fd);

	if (r < 0) {
		return vd_set_error(r, "%s: flush: %s", l->path, strerror(-r));
	}
	return 0;
}

/* Holes of a sparse raw file are HOLE extents (the backing shows through, as in qemu). */
static int
raw_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct raw_state *rs = l->st;
	off_t data, hole;
	bool known;

	ext->offset = off;
	ext->layer = 0;
	pthread_mutex_lock(&rs->data_lock);
	known = off >= rs->data_lo && off < rs->data_hi;
	if (known) {
		ext->type = VD_EXTENT_DATA;
		ext->length = VD_MIN(rs->data_hi - off, len);
	}
	pthread_mutex_unlock(&rs->data_lock);
	if (known) {
		return 0;
	}
	data = lseek(l->fd, (off_t)off, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) {
			/* No data from here to the end of the file. */
			ext->type = VD_EXTENT_HOLE;
			ext->length = len;
			return 0;
		}
		ext->type = VD_EXTENT_DATA;
		ext->length = len;
		return 0;
	}
	if ((uint64_t)data > off) {
		ext->type = VD_EXTENT_HOLE;
		ext->length = VD_MIN((uint64_t)data - off, len);
		return 0;
	}
	hole = lseek(l->fd, (off_t)off, SEEK_HOLE);
	ext->type = VD_EXTENT_DATA;
	ext->length = hole < 0 ? len : VD_MIN((uint64_t)hole - off, len);
	if (ext->length == 0) {
		ext->length = len;
	}
	if (hole > (off_t)off) {
		pthread_mutex_lock(&rs->data_lock);
		rs->data_lo = off;
		rs->data_hi = (uint64_t)hole;
		pthread_mutex_unlock(&rs->data_lock);
	}
	return 0;
}

static uint64_t
raw_allocated(struct vd_layer *l)
{
	struct stat st;

	if (fstat(l->fd, &st) < 0) {
		return 0;
	}
	return S_ISREG(st.st_mode) ? (uint64_t)st.st_blocks * 512 : l->size;
}

const struct vd_driver vd_raw_driver = {
	.name = "raw",
	.instance_size = sizeof(struct raw_state),
	.thread_model = VD_THREAD_PARALLEL,
	.probe = raw_probe,
	.open = raw_open,
	.close = raw_close,
	.pread = raw_pread,
	.pread_map = raw_pread_map,
	.pwrite = raw_pwrite,
	.zero = raw_zero,
	.flush = raw_flush,
	.block_status = raw_block_status,
	.allocated = raw_allocated,
};
