// SPDX-License-Identifier: MIT
/*
 * vdiskfs FUSE operations: the tree
 *     /disk  /partitions/pN  /snapshots/NAME/{disk,info,changed}
 * on libfuse's high-level, path-based API.
 *
 * NOTES ON THE THREAD MODEL
 *
 * We use libfuse's high-level API with its multi-threaded loop (fuse_loop_mt,
 * one cloned /dev/fuse fd per worker), or with -o one_receiver our own loop
 * (loop.c: one thread receives every request and runs small I/O on disk
 * itself, a pool of workers runs the rest). The high-level API fits: the tree is
 * small and fixed, the hot path (read/write on an open file) needs no path at
 * all because we set nullpath_ok and keep everything in the file handle, so
 * libfuse skips its path lookup (and its tree lock) for those requests. The
 * low-level API would only save that bookkeeping on open/getattr.
 *
 * Several requests run at once, on several threads, with no lock of ours on
 * the I/O path: libvdisk allows vd_pread/vd_pwrite/vd_discard/vd_write_zeroes/
 * vd_flush/vd_block_status on one image from many threads, and snapshot
 * creation and deletion concurrently with that I/O (the library quiesces
 * internally, so a write that returned before mkdir is in the snapshot and one
 * that starts after it is not). Our own shared state (the snapshot list, the
 * views, the cached partition table) is protected by vdfs.lock, and mkdir/rmdir
 * are serialised by vdfs.snap_op_lock. A file handle holds a reference to its
 * snapshot entry and to the entry's view, so a rebuild of the list never frees
 * something a request is using; rmdir of a snapshot whose files are open
 * answers EBUSY. Every handle is also on fs->handles: at unmount the kernel
 * may not have delivered every RELEASE yet, and vdfs_handles_free() frees
 * what is left once no request runs any more.
 *
 * CACHING
 *
 * disk uses the kernel page cache with the writeback cache (FUSE_CAP_WRITEBACK_CACHE,
 * off with -o writethrough): write() returns once the bytes are in the page
 * cache, and the kernel sends them later as large WRITEs. What the issue asks
 * of disk is kept by flushing the kernel's dirty pages into the image wherever
 * it matters:
 * - fsync, fdatasync and close(2): the kernel writes back the file's dirty
 *   pages before it sends FSYNC/FLUSH, which commit the image (vdfs_flush);
 *   unmounting writes back everything before the daemon exits;
 * - mkdir snapshots/NAME: before the snapshot is taken the daemon fsyncs its
 *   own disk (nested I/O, below), so every write that returned before the mkdir
 *   is in the snapshot;
 * - partitions/pN stay uncached (direct_io) and are windows onto disk's bytes:
 *   while disk is open for writing, a partition request first writes back
 *   disk's dirty pages in its range, and while disk is open at all, a write
 *   through a partition drops disk's cached pages of that range. The partition
 *   table is read after a write-back of disk, likewise.
 * A WRITE that fails during write-back (ENOSPC, EIO) is reported by the kernel
 * at the next fsync or close of disk, and disk's cache is dropped then so that
 * reads show the image again.
 *
 * Nested I/O: a helper process (nested.c) opens MOUNTPOINT/disk (checking
 * st_dev is our mount) and calls fsync, sync_file_range or posix_fadvise on it
 * while the request handler waits for its answer; the requests this causes
 * (OPEN with keep_cache, WRITE, FLUSH) are served by the other worker threads
 * (loop.c never runs a request that can wait on its receiving thread itself).
 * It is done only while disk is open (for writing, for a write-back), so it
 * costs nothing when partitions are used alone.
 *
 * disk itself is opened with keep_cache too: nothing but this daemon changes
 * the image while it is mounted (it holds the image's lock), so what the page
 * cache holds of disk stays true across opens, and a program that opens disk
 * again (a second cmp, a loop mount, fio's next job) finds its pages still
 * there. The exceptions are the writes that bypass disk's page cache (an
 * uncached handle of disk, a partition) and a failed write-back: they set
 * disk_uncached, and the next cached open of disk lets the kernel drop the
 * cache instead (partition writes while disk is open also drop the range at
 * once, above).
 *
 * snapshots/NAME/disk is immutable and opened with keep_cache; the small text
 * files use direct_io. After a partition file was written, disk's cached
 * pages are also invalidated when that partition file is fsync'd or closed
 * (never from inside a write: a notification from a request handler could wait
 * on pages locked by a read queued behind it).
 *
 * Every op returns 0/count or -errno; library errors are logged with
 * vd_get_error() (stderr with -f, else syslog) and returned unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <linux/falloc.h>

#include <pthread.h>

#include "vdiskfs.h"

#include <fuse_lowlevel.h>

enum vdfs_kind {
	K_ROOT,
	K_DISK,
	K_PARTS_DIR,
	K_PART,
	K_SNAPS_DIR,
	K_SNAP_DIR,
	K_SNAP_DISK,
	K_SNAP_INFO,
	K_SNAP_CHANGED,
};

/* A path resolved to a node. snap holds a reference (vdfs_snap_put). */
struct vdfs_node {
	enum vdfs_kind kind;
	struct vdfs_part part;
	struct vdfs_snap *snap;
};

/* An open directory: its resolved node (readdir may get no path). */
struct vdfs_dh {
	struct vdfs_hlink link; /* first: vdfs_handles_free() casts */
	struct vdfs_node n;
};

/* One open file. */
struct vdfs_fh {
	struct vdfs_hlink link; /* first: vdfs_handles_free() casts */
	enum vdfs_kind kind;
	struct vd_image *img; /* disk, part: fs->img; snap disk: the view */
	uint64_t base, len;   /* window onto img */
	bool writable;
	bool counted_writer;	/* disk opened for writing: counted in disk_writers */
	bool direct;		/* disk opened uncached (DIRECT I/O below): counted in disk_direct */
	bool cached;		/* disk opened through the page cache: counted in disk_cached */
	struct vdfs_snap *snap; /* snapshot files: referenced, open_files counted */
	char *txt;		/* info/changed contents */
	size_t txt_len;
};

/*
 * For the request loop (loop.c): a READ or WRITE on this handle may run on the
 * receiving thread: `disk` and a snapshot's `disk` (a partition's I/O may
 * write back `disk` through the mount first, which needs that thread).
 * fh is the value our open gave the kernel, and the file is open while the
 * request is in flight.
 */
bool
vdfs_fh_runs_inline(uint64_t fh)
{
	const struct vdfs_fh *h = (const struct vdfs_fh *)(uintptr_t)fh;

	return h && (h->kind == K_DISK || h->kind == K_SNAP_DISK);
}

static struct vdfs *
vdfs_get(void)
{
	return fuse_get_context()->private_data;
}

static int
vdfs_err(struct vdfs *fs, const char *what, int ret)
{
	if (ret < 0 && ret != -ENOSPC) {
		vdfs_log(fs, "%s: %s", what, vd_get_error());
	}
	return ret;
}

/*
 * Make the image current for [off, off+len) of disk before a request that
 * reads or writes it without the page cache (a partition, the partition
 * table): while disk is open for writing, write back its dirty pages there
 * (nested I/O, see CACHING and nested.c).
 */
static void
disk_sync_range(struct vdfs *fs, uint64_t off, uint64_t len)
{
	if (fs->writeback && len > 0 && atomic_load(&fs->disk_writers) > 0) {
		vdfs_nested(fs, VDFS_NESTED_SYNC, off, len);
	}
}

/*
 * After a write through a partition: drop disk's cached pages of the range,
 * with the writeback cache or without (-o writethrough still caches reads).
 * Widened to whole pages: POSIX_FADV_DONTNEED leaves a page the range covers
 * only in part, and a write of 512 bytes (or any write not on page
 * boundaries) would stay invisible to a reader of disk.
 */
static void
disk_drop_range(struct vdfs *fs, uint64_t off, uint64_t len)
{
	long psz = sysconf(_SC_PAGESIZE);
	uint64_t pg = psz > 0 ? (uint64_t)psz : 4096, end = off + len;

	if (!fs->uncached && len > 0 && atomic_load(&fs->disk_opens) > 0) {
		off &= ~(pg - 1);
		end = (end + pg - 1) & ~(pg - 1);
		vdfs_nested(fs, VDFS_NESTED_DROP, off, end - off);
	}
}

/* Before a snapshot: every write to disk that returned is written back into the image. */
static int
disk_writeback_all(struct vdfs *fs)
{
	if (!fs->writeback || atomic_load(&fs->disk_writers) == 0) {
		return 0;
	}
	return vdfs_nested(fs, VDFS_NESTED_FSYNC, 0, 0);
}

static void
node_release(struct vdfs *fs, struct vdfs_node *n)
{
	vdfs_snap_put(fs, n->snap);
	n->snap = NULL;
}

static void
handle_link(struct vdfs *fs, struct vdfs_hlink *l, bool is_dir)
{
	l->is_dir = is_dir;
	pthread_mutex_lock(&fs->lock);
	if (!fs->handles.next) {
		fs->handles.next = fs->handles.prev = &fs->handles;
	}
	l->next = fs->handles.next;
	l->prev = &fs->handles;
	l->next->prev = l;
	fs->handles.next = l;
	pthread_mutex_unlock(&fs->lock);
}

static void
handle_unlink(struct vdfs *fs, struct vdfs_hlink *l)
{
	pthread_mutex_lock(&fs->lock);
	l->prev->next = l->next;
	l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->lock);
}

/* The partition table as the image has it once disk's dirty pages are written back. */
static int
parts_get(struct vdfs *fs, struct vdfs_part *parts, int max)
{
	disk_sync_range(fs, 0, __atomic_load_n(&fs->size, __ATOMIC_ACQUIRE));
	return vdfs_parts_get(fs, parts, max);
}

/* Resolve path; 0 or -ENOENT. */
static int
node_lookup(struct vdfs *fs, const char *path, struct vdfs_node *n)
{
	char name[256];
	const char *p, *slash;
	size_t len;

	memset(n, 0, sizeof(*n));
	if (strcmp(path, "/") == 0) {
		n->kind = K_ROOT;
		return 0;
	}
	if (strcmp(path, "/disk") == 0) {
		n->kind = K_DISK;
		return 0;
	}
	if (strcmp(path, "/partitions") == 0) {
		n->kind = K_PARTS_DIR;
		return 0;
	}
	if (strncmp(path, "/partitions/p", 13) == 0) {
		struct vdfs_part parts[VDFS_PART_MAX];
		char *end;
		unsigned long num;
		int i, np;

		p = path + 13;
		if (*p < '1' || *p > '9') {
			return -ENOENT;
		}
		errno = 0;
		num = strtoul(p, &end, 10);
		if (*end || errno || num > UINT_MAX) {
			return -ENOENT;
		}
		np = parts_get(fs, parts, VDFS_PART_MAX);
		for (i = 0; i < np; i++) {
			if (parts[i].num == num) {
				n->kind = K_PART;
				n->part = parts[i];
				return 0;
			}
		}
		return -ENOENT;
	}
	if (strcmp(path, "/snapshots") == 0) {
		n->kind = K_SNAPS_DIR;
		return 0;
	}
	if (strncmp(path, "/snapshots/", 11) != 0) {
		return -ENOENT;
	}
	p = path + 11;
	slash = strchr(p, '/');
	len = slash ? (size_t)(slash - p) : strlen(p);
	if (len == 0 || len >= sizeof(name)) {
		return -ENOENT;
	}
	memcpy(name, p, len);
	name[len] = '\0';
	n->snap = vdfs_snap_get(fs, name);
	if (!n->snap) {
		return -ENOENT;
	}
	if (!slash) {
		n->kind = K_SNAP_DIR;
	} else if (strcmp(slash, "/disk") == 0) {
		n->kind = K_SNAP_DISK;
	} else if (strcmp(slash, "/info") == 0) {
		n->kind = K_SNAP_INFO;
	} else if (strcmp(slash, "/changed") == 0) {
		n->kind = K_SNAP_CHANGED;
	} else {
		node_release(fs, n);
		return -ENOENT;
	}
	return 0;
}

static void
stat_dir(struct vdfs *fs, struct stat *st, mode_t mode, nlink_t nlink)
{
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = nlink;
	st->st_mtim = fs->mount_time;
	st->st_ctim = fs->mount_time;
	st->st_atim = fs->mount_time;
}

static void
stat_file(struct stat *st, mode_t mode, uint64_t size, uint64_t allocated, struct timespec t)
{
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((allocated + 511) / 512);
	st->st_blksize = 65536;
	st->st_mtim = t;
	st->st_ctim = t;
	st->st_atim = t;
}

/*
 * st_blocks of a disk file: what the chain holds (for a partition, at most
 * that: an exact figure would walk the window's map at every stat). Reporting
 * the full length made a sparse partition look fully allocated, so `du` said
 * so and `cp` (whose --sparse=auto tries SEEK_DATA only on a file with fewer
 * blocks than its size) copied every zero of it into a non-sparse file.
 */
static uint64_t
file_allocated(struct vdfs *fs, enum vdfs_kind kind, uint64_t len, const struct vdfs_snap *snap)
{
	uint64_t a;

	if (kind == K_SNAP_DISK && snap) {
		a = snap->allocated;
	} else if (kind == K_DISK || kind == K_PART) {
		a = vdfs_allocated(fs);
	} else {
		a = len;
	}
	return a < len ? a : len;
}

/*
 * The size of disk. It grows while mounted (vdfs_truncate), so it is read
 * atomically here and stored under fs->lock (tree.c reads it under the lock).
 */
static uint64_t
disk_size(struct vdfs *fs)
{
	return __atomic_load_n(&fs->size, __ATOMIC_ACQUIRE);
}

/* The length of an open file: disk's handles follow a grow. */
static uint64_t
fh_len(const struct vdfs_fh *fh)
{
	return fh->kind == K_DISK ? disk_size(vdfs_get()) : fh->len;
}

static int
vdfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_node n;
	struct timespec t;
	mode_t rw = fs->readonly ? 0444 : 0644;
	int ret;

	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (!path && fi) {
		struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;

		/* Only files reach here without a path (nullpath_ok). */
		t = fs->mount_time;
		if (fh->snap) {
			t.tv_sec = (time_t)fh->snap->created;
			t.tv_nsec = 0;
		}
		if (fh->kind == K_SNAP_INFO || fh->kind == K_SNAP_CHANGED) {
			stat_file(st, 0444, fh->txt_len, fh->txt_len, t);
		} else {
			stat_file(st, fh->writable ? 0644 : 0444, fh_len(fh),
				  file_allocated(fs, fh->kind, fh_len(fh), fh->snap), t);
		}
		return 0;
	}
	ret = node_lookup(fs, path, &n);
	if (ret < 0) {
		return ret;
	}
	switch (n.kind) {
	case K_ROOT:
		stat_dir(fs, st, 0755, 4);
		break;
	case K_PARTS_DIR:
		stat_dir(fs, st, 0755, 2);
		break;
	case K_SNAPS_DIR:
		stat_dir(fs, st, fs->readonly ? 0555 : 0755, 2);
		break;
	case K_DISK:
		stat_file(st, rw, disk_size(fs), vdfs_allocated(fs), fs->mount_time);
		break;
	case K_PART:
		stat_file(st, rw, n.part.length, file_allocated(fs, K_PART, n.part.length, NULL),
			  fs->mount_time);
		break;
	case K_SNAP_DIR:
	case K_SNAP_DISK:
	case K_SNAP_INFO:
	case K_SNAP_CHANGED: {
		char *txt = NULL;
		size_t len = 0;

		t.tv_sec = (time_t)n.snap->created;
		t.tv_nsec = 0;
		if (n.kind == K_SNAP_DIR) {
			stat_dir(fs, st, 0555, 2);
			st->st_mtim = st->st_ctim = st->st_atim = t;
		} else if (n.kind == K_SNAP_DISK) {
			stat_file(st, 0444, n.snap->size, n.snap->allocated, t);
		} else {
			ret = n.kind == K_SNAP_INFO
				      ? vdfs_snap_info_text(fs, n.snap, &txt, &len)
				      : vdfs_snap_changed_text(fs, n.snap, &txt, &len);
			free(txt);
			if (ret < 0) {
				break;
			}
			stat_file(st, 0444, len, len, t);
		}
		break;
	}
	}
	node_release(fs, &n);
	return ret;
}

/* Directories keep their resolved node in the handle (readdir may get no path). */
static int
vdfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_dh *dh = malloc(sizeof(*dh));
	struct vdfs_node *n;
	int ret;

	if (!dh) {
		return -ENOMEM;
	}
	n = &dh->n;
	ret = node_lookup(fs, path, n);
	if (ret == 0 && n->kind != K_ROOT && n->kind != K_PARTS_DIR && n->kind != K_SNAPS_DIR &&
	    n->kind != K_SNAP_DIR) {
		node_release(fs, n);
		ret = -ENOTDIR;
	}
	if (ret < 0) {
		free(dh);
		return ret;
	}
	handle_link(fs, &dh->link, true);
	fi->fh = (uint64_t)(uintptr_t)dh;
	return 0;
}

static void
dh_free(struct vdfs *fs, struct vdfs_dh *dh)
{
	node_release(fs, &dh->n);
	free(dh);
}

static int
vdfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_dh *dh = (struct vdfs_dh *)(uintptr_t)fi->fh;

	(void)path;
	handle_unlink(fs, &dh->link);
	dh_free(fs, dh);
	return 0;
}

static int
vdfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
	     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_node *n = &((struct vdfs_dh *)(uintptr_t)fi->fh)->n;
	char name[32];
	int i;

	(void)path;
	(void)offset;
	(void)flags;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	switch (n->kind) {
	case K_ROOT:
		filler(buf, "disk", NULL, 0, 0);
		filler(buf, "partitions", NULL, 0, 0);
		filler(buf, "snapshots", NULL, 0, 0);
		break;
	case K_PARTS_DIR: {
		struct vdfs_part parts[VDFS_PART_MAX];
		int np = parts_get(fs, parts, VDFS_PART_MAX);

		for (i = 0; i < np; i++) {
			snprintf(name, sizeof(name), "p%u", parts[i].num);
			filler(buf, name, NULL, 0, 0);
		}
		break;
	}
	case K_SNAPS_DIR:
		/* Oldest first, as the library lists them. */
		pthread_mutex_lock(&fs->lock);
		for (i = 0; i < fs->nsnaps; i++) {
			filler(buf, fs->snaps[i]->entry, NULL, 0, 0);
		}
		pthread_mutex_unlock(&fs->lock);
		break;
	case K_SNAP_DIR:
		filler(buf, "disk", NULL, 0, 0);
		filler(buf, "info", NULL, 0, 0);
		filler(buf, "changed", NULL, 0, 0);
		break;
	default:
		return -ENOTDIR;
	}
	return 0;
}

/* Write "VALUE\n" to the bdi attribute NAME of our mount; best effort. */
static void
bdi_set(struct vdfs *fs, const char *name, int value)
{
	char path[80], v[16];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", fs->bdi_path, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	n = snprintf(v, sizeof(v), "%d\n", value);
	if (write(fd, v, (size_t)n) != n) {
		/* best effort: the kernel's default stays */
	}
	close(fd);
}

/*
 * The kernel gives a FUSE mount 128 KiB of readahead and caps it at what
 * FUSE_INIT asked for; a larger window (four 1 MiB requests in flight, which
 * measured better than two: buffered sequential read 1380-1750 -> 1400-1970
 * MiB/s, and less daemon CPU per MiB) must be set through sysfs after the
 * INIT reply, so on the first open of a disk. With the writeback cache the
 * mount may also hold a larger share of the dirty-page limit than FUSE's 1 %
 * (max_ratio; strict_limit stays): the writer is throttled less often while
 * the daemon writes back (buffered sequential write 1030-1230 -> 1300 MiB/s).
 * Only root may; otherwise the kernel's defaults stay.
 */
static void
bdi_tune(struct vdfs *fs)
{
	if (!fs->bdi_path[0] || atomic_exchange(&fs->bdi_done, true)) {
		return;
	}
	bdi_set(fs, "read_ahead_kb", VDFS_READAHEAD_KB);
	if (fs->writeback) {
		bdi_set(fs, "max_ratio", VDFS_BDI_MAX_RATIO);
	}
}

/*
 * DIRECT I/O. The kernel serves concurrent O_DIRECT writes to disk one at a
 * time unless the open is answered with FOPEN_DIRECT_IO and
 * FOPEN_PARALLEL_DIRECT_WRITES (fopen.c). Such a handle bypasses the page
 * cache, so it must not meet cached handles of disk: their cached pages would
 * go stale and their dirty pages could later overwrite its writes (and
 * writing them back from inside its write would deadlock in the kernel). So
 * disk is in one of two modes while it is open: an O_DIRECT open for writing
 * when no handle uses the cache makes disk uncached, and every later open of
 * it is uncached too (no page cache at all, so nothing to keep coherent) until
 * the last of them is closed; otherwise opens use the cache, and an O_DIRECT
 * one goes the kernel's usual coherent (serialised) way. The nested helper's
 * opens are not counted (it only writes back and drops cached pages).
 */
static void
disk_open_mode(struct vdfs *fs, struct vdfs_fh *fh, struct fuse_file_info *fi, bool want_write)
{
	pthread_mutex_lock(&fs->disk_mode_lock);
	if (fs->uncached || (fs->disk_cached == 0 &&
	    (fs->disk_direct > 0 || ((fi->flags & O_DIRECT) && want_write)))) {
		fi->direct_io = 1;
		fh->direct = true;
		fs->disk_direct++;
	} else {
		fh->cached = true;
		fs->disk_cached++;
		/* Keep the page cache unless disk changed beside it (CACHING above). */
		fi->keep_cache = !atomic_exchange(&fs->disk_uncached, false);
	}
	pthread_mutex_unlock(&fs->disk_mode_lock);
}

static void
disk_close_mode(struct vdfs *fs, struct vdfs_fh *fh)
{
	pthread_mutex_lock(&fs->disk_mode_lock);
	fs->disk_direct -= fh->direct;
	fs->disk_cached -= fh->cached;
	pthread_mutex_unlock(&fs->disk_mode_lock);
}

static int
vdfs_open(const char *path, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	bool want_write = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct vdfs_fh *fh;
	struct vdfs_node n;
	int ret;

	ret = node_lookup(fs, path, &n);
	if (ret < 0) {
		return ret;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		ret = -ENOMEM;
		goto out;
	}
	fh->kind = n.kind;
	switch (n.kind) {
	case K_DISK:
	case K_PART:
		if (want_write && fs->readonly) {
			ret = -EROFS;
			break;
		}
		if (fi->flags & O_TRUNC) {
			/* A size change, like truncate (the kernel would show size 0). */
			ret = -EPERM;
			break;
		}
		fh->img = fs->img;
		fh->writable = !fs->readonly;
		if (n.kind == K_DISK) {
			fh->base = 0;
			fh->len = disk_size(fs);	/* fh_len() follows a grow */
			bdi_tune(fs);
			/*
			 * Counted before disk_open_mode reads disk_uncached: a partition
			 * write sets disk_uncached and then looks at disk_opens, so it
			 * either drops the range itself or this open sees the flag.
			 */
			atomic_fetch_add(&fs->disk_opens, 1);
			if (fuse_get_context()->pid == atomic_load(&fs->nested_pid)) {
				fi->keep_cache = 1; /* nested I/O: do not drop disk's cache */
			} else {
				disk_open_mode(fs, fh, fi, want_write);
			}
			if (want_write) {
				fh->counted_writer = true;
				atomic_fetch_add(&fs->disk_writers, 1);
			}
		} else {
			fh->base = n.part.start;
			fh->len = n.part.length;
			fi->direct_io = 1;
		}
		break;
	case K_SNAP_DISK:
	case K_SNAP_INFO:
	case K_SNAP_CHANGED:
		if (want_write) {
			ret = -EROFS;
			break;
		}
		if (n.kind == K_SNAP_INFO) {
			ret = vdfs_snap_info_text(fs, n.snap, &fh->txt, &fh->txt_len);
		} else if (n.kind == K_SNAP_CHANGED) {
			ret = vdfs_snap_changed_text(fs, n.snap, &fh->txt, &fh->txt_len);
		}
		if (ret < 0) {
			break;
		}
		ret = vdfs_snap_open_file(fs, n.snap, n.kind == K_SNAP_DISK ? &fh->img : NULL);
		if (ret < 0) {
			break;
		}
		fh->snap = n.snap;
		n.snap = NULL; /* the handle keeps the reference */
		if (fh->kind == K_SNAP_DISK) {
			bdi_tune(fs);
			fh->len = vd_get_size(fh->img);
			fi->keep_cache = 1; /* immutable */
		} else {
			fh->len = fh->txt_len;
			fi->direct_io = 1;
		}
		break;
	default:
		ret = -EISDIR;
		break;
	}
	if (ret < 0) {
		free(fh->txt);
		free(fh);
		goto out;
	}
	handle_link(fs, &fh->link, false);
	fi->fh = (uint64_t)(uintptr_t)fh;
out:
	node_release(fs, &n);
	return ret;
}

/* What RELEASE undoes of an open (the handle is unlinked already). */
static void
fh_free(struct vdfs *fs, struct vdfs_fh *fh)
{
	if (fh->kind == K_DISK) {
		if (fh->counted_writer) {
			atomic_fetch_sub(&fs->disk_writers, 1);
		}
		disk_close_mode(fs, fh);
		atomic_fetch_sub(&fs->disk_opens, 1);
	}
	if (fh->snap) {
		vdfs_snap_close_file(fs, fh->snap, fh->kind == K_SNAP_DISK);
		vdfs_snap_put(fs, fh->snap);
	}
	free(fh->txt);
	free(fh);
}

static int
vdfs_release(const char *path, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;

	(void)path;
	if (fh->kind == K_PART && atomic_exchange(&fs->disk_stale, false)) {
		fuse_invalidate_path(fs->fuse, "/disk");
	}
	if (fh->kind == K_DISK && atomic_load(&fs->disk_opens) == 1 &&
	    atomic_exchange(&fs->size_stale, false)) {
		/*
		 * The kernel's size of disk grew with a write past its end (with the
		 * writeback cache the kernel keeps the size): at the last close, drop
		 * its entry, so that the next lookup reads the real size. (Here, not
		 * in fh_free: that also runs after fuse_destroy, without a session.)
		 */
		fuse_lowlevel_notify_inval_entry(fuse_get_session(fs->fuse), FUSE_ROOT_ID, "disk",
						 4);
	}
	handle_unlink(fs, &fh->link);
	fh_free(fs, fh);
	return 0;
}

void
vdfs_handles_free(struct vdfs *fs)
{
	struct vdfs_hlink *l, *next;

	if (!fs->handles.next) {
		return;
	}
	for (l = fs->handles.next; l != &fs->handles; l = next) {
		next = l->next;
		if (l->is_dir) {
			dh_free(fs, (struct vdfs_dh *)l);
		} else {
			fh_free(fs, (struct vdfs_fh *)l);
		}
	}
	fs->handles.next = fs->handles.prev = &fs->handles;
}

/* Clip [off, off+*size) to the window; returns false at/after its end. */
static bool
fh_clip(const struct vdfs_fh *fh, off_t off, size_t *size)
{
	uint64_t len = fh_len(fh);

	if (off < 0 || (uint64_t)off >= len) {
		return false;
	}
	if (*size > len - (uint64_t)off) {
		*size = (size_t)(len - (uint64_t)off);
	}
	return true;
}

static int
vdfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	bool logged;
	int ret;

	(void)path;
	if (size > INT_MAX) {
		size = INT_MAX;
	}
	if (!fh_clip(fh, off, &size) || size == 0) {
		return 0;
	}
	if (fh->kind == K_SNAP_INFO || fh->kind == K_SNAP_CHANGED) {
		memcpy(buf, fh->txt + off, size);
		return (int)size;
	}
	if (fh->kind == K_PART) {
		disk_sync_range(fs, fh->base + (uint64_t)off, size);
	}
	ret = vdfs_split_io(fs, fh->img, false, buf, size, fh->base + (uint64_t)off, &logged);
	if (ret < 0) {
		return logged ? ret : vdfs_err(fs, "read", ret);
	}
	return (int)size;
}

/*
 * READ through read_buf: for disk, a snapshot's disk and a partition, first
 * without a copy (fread.c: the reply is written from the image file's own
 * pages when the library can show them so), else into a buffer as vdfs_read.
 */
static int
vdfs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	struct fuse_bufvec *bv;
	size_t n = size > INT_MAX ? INT_MAX : size;
	void *mem;
	int ret;

	if ((fh->kind == K_DISK || fh->kind == K_SNAP_DISK || fh->kind == K_PART) &&
	    fh_clip(fh, off, &n) && n > 0) {
		struct vd_mapped *m = vdfs_mapped_get();

		if (m) {
			if (fh->kind == K_PART) {
				disk_sync_range(fs, fh->base + (uint64_t)off, n);
			}
			ret = vd_pread_map(fh->img, n, fh->base + (uint64_t)off, m);
			if (ret == 0) {
				return vdfs_mapped_bufvec(m, bufp);
			}
			if (ret != -EAGAIN) {
				return vdfs_err(fs, "read", ret);
			}
		}
	}
	mem = malloc(size ? size : 1);
	bv = malloc(sizeof(*bv));
	if (!mem || !bv) {
		free(mem);
		free(bv);
		return -ENOMEM;
	}
	ret = vdfs_read(path, mem, size, off, fi);
	if (ret < 0) {
		free(mem);
		free(bv);
		return ret;
	}
	*bv = (struct fuse_bufvec)FUSE_BUFVEC_INIT((size_t)ret);
	bv->buf[0].mem = mem;
	*bufp = bv;
	return 0;
}

/*
 * After a write the partition table may have changed (MBR logical tables can
 * sit anywhere in the disk, so every write counts): the next lookup under
 * partitions/ re-reads it. A write through a partition also makes disk's
 * page cache stale.
 */
static void
note_write(struct vdfs *fs, const struct vdfs_fh *fh)
{
	atomic_fetch_add_explicit(&fs->write_gen, 1, memory_order_relaxed);
	if (fh->kind == K_PART) {
		atomic_store(&fs->disk_stale, true);
	}
}

static int
vdfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	bool logged, past_end;
	size_t want;
	int ret;

	(void)path;
	if (!fh->writable) {
		return -EBADF;
	}
	if (size > INT_MAX) {
		size = INT_MAX;
	}
	want = size;
	if (size == 0) {
		return 0;
	}
	if (!fh_clip(fh, off, &size)) {
		if (fi->writepage) {
			atomic_store(&fs->size_stale, true);
		}
		return -ENOSPC; /* a disk does not grow */
	}
	/*
	 * A write() across the end is short, as on a block device. The kernel's
	 * write-back cannot report a short write: the bytes past the end would
	 * be dropped without a word, so its request fails with ENOSPC (after
	 * writing the part inside the disk) and fsync/close report it.
	 */
	past_end = fi->writepage && size < want;
	if (past_end) {
		atomic_store(&fs->size_stale, true);
	}
	/*
	 * After ENOSPC, the kernel's write-back goes on sending the rest of the dirty
	 * pages; each would take what little room is left, until not even a commit
	 * fits. Refuse them until a flush or a discard succeeds (as a writer that
	 * stopped at its first error would have left it).
	 */
	if (fs->writeback && atomic_load(&fs->enospc)) {
		atomic_store(&fs->disk_wb_error, true);
		atomic_store(&fs->disk_uncached, true);
		return -ENOSPC;
	}
	if (fh->kind == K_PART) {
		disk_sync_range(fs, fh->base + (uint64_t)off, size);
		ret = vdfs_split_io(fs, fh->img, true, (void *)buf, size, fh->base + (uint64_t)off,
				    &logged);
		atomic_store(&fs->disk_uncached, true);
		disk_drop_range(fs, fh->base + (uint64_t)off, size);
	} else {
		ret = vdfs_split_io(fs, fh->img, true, (void *)buf, size, fh->base + (uint64_t)off,
				    &logged);
		if (fh->direct || (ret < 0 && fs->writeback)) {
			/* Past the page cache, or a write-back that failed. */
			atomic_store(&fs->disk_uncached, true);
		}
		if (ret < 0 && fs->writeback) {
			atomic_store(&fs->disk_wb_error, true);
		}
	}
	if (ret < 0) {
		if (ret == -ENOSPC) {
			atomic_store(&fs->enospc, true);
		}
		return logged ? ret : vdfs_err(fs, "write", ret);
	}
	note_write(fs, fh);
	return past_end ? -ENOSPC : (int)size;
}

static int
vdfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	int ret;

	(void)path;
	(void)datasync;
	if (!fh->writable) {
		return 0;
	}
	ret = vd_flush(fs->img);
	if (ret < 0) {
		return vdfs_err(fs, "fsync", ret);
	}
	atomic_store(&fs->enospc, false);
	if ((fh->kind == K_PART && atomic_exchange(&fs->disk_stale, false)) ||
	    (fh->kind == K_DISK && atomic_exchange(&fs->disk_wb_error, false))) {
		/* After a failed write-back the cache holds bytes the image does not. */
		fuse_invalidate_path(fs->fuse, "/disk");
	}
	return 0;
}

static int
vdfs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	uint64_t end, flen = fh_len(fh);
	int ret;

	(void)path;
	if (!fh->writable) {
		return fh->kind == K_DISK || fh->kind == K_PART ? -EBADF : -EROFS;
	}
	if (off < 0 || len <= 0) {
		return -EINVAL;
	}
	if (__builtin_add_overflow((uint64_t)off, (uint64_t)len, &end)) {
		return -EFBIG;
	}
	switch (mode & ~FALLOC_FL_KEEP_SIZE) {
	case 0:
		/* Preallocation: the virtual disk has its full size already. */
		return end > flen && !(mode & FALLOC_FL_KEEP_SIZE) ? -EFBIG : 0;
	case FALLOC_FL_PUNCH_HOLE:
		if (!(mode & FALLOC_FL_KEEP_SIZE)) {
			return -EINVAL;
		}
		break;
	case FALLOC_FL_ZERO_RANGE:
		break;
	default:
		return -EOPNOTSUPP;
	}
	if ((uint64_t)off >= flen) {
		return (mode & FALLOC_FL_KEEP_SIZE) ? 0 : -EFBIG;
	}
	if (end > flen) {
		if (!(mode & FALLOC_FL_KEEP_SIZE)) {
			return -EFBIG;
		}
		end = flen;
	}
	/* disk: the kernel writes back and drops its cache of the range itself. */
	if (fh->kind == K_PART) {
		disk_sync_range(fs, fh->base + (uint64_t)off, end - (uint64_t)off);
	}
	if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_PUNCH_HOLE) {
		ret = vd_discard(fh->img, fh->base + (uint64_t)off, end - (uint64_t)off);
	} else {
		ret = vd_write_zeroes(fh->img, fh->base + (uint64_t)off, end - (uint64_t)off);
	}
	if (fh->kind == K_PART) {
		atomic_store(&fs->disk_uncached, true);
		disk_drop_range(fs, fh->base + (uint64_t)off, end - (uint64_t)off);
	}
	if (ret < 0) {
		return vdfs_err(fs, "fallocate", ret);
	}
	atomic_store(&fs->enospc, false); /* a discard may have made room */
	note_write(fs, fh);
	return 0;
}

static off_t
vdfs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;
	uint64_t pos, flen = fh_len(fh);
	int ret;

	(void)path;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		return -EINVAL;
	}
	if (off < 0 || (uint64_t)off >= flen) {
		return -ENXIO;
	}
	if (fh->kind == K_SNAP_INFO || fh->kind == K_SNAP_CHANGED) {
		return whence == SEEK_DATA ? off : (off_t)flen;
	}
	if (fh->kind == K_PART || fh->kind == K_DISK) {
		/* The kernel does not write back before FUSE_LSEEK: dirty pages are data. */
		disk_sync_range(vdfs_get(), fh->base + (uint64_t)off, flen - (uint64_t)off);
	}
	pos = (uint64_t)off;
	while (pos < flen) {
		struct vd_extent e;
		bool data;

		ret = vd_block_status(fh->img, fh->base + pos, flen - pos, &e);
		if (ret < 0) {
			return vdfs_err(vdfs_get(), "lseek", ret);
		}
		if (e.length == 0) {
			return -EIO;
		}
		data = e.type == VD_EXTENT_DATA;
		if (data == (whence == SEEK_DATA)) {
			return (off_t)pos;
		}
		pos += e.length < flen - pos ? e.length : flen - pos;
	}
	/* No more data: ENXIO; the end of the file is the last hole. */
	return whence == SEEK_DATA ? -ENXIO : (off_t)flen;
}

static int
vdfs_statfs(const char *path, struct statvfs *sv)
{
	struct vdfs *fs = vdfs_get();

	(void)path;
	if (statvfs(fs->image_dir, sv) < 0) {
		return -errno;
	}
	return 0;
}

static int
vdfs_mkdir(const char *path, mode_t mode)
{
	struct vdfs *fs = vdfs_get();
	const char *name;
	int ret;

	(void)mode;
	if (strncmp(path, "/snapshots/", 11) != 0 || strchr(path + 11, '/')) {
		return strcmp(path, "/snapshots") == 0 || strcmp(path, "/partitions") == 0 ? -EEXIST
											   : -EPERM;
	}
	name = path + 11;
	if (fs->readonly) {
		return -EROFS;
	}
	if (!vd_snapshot_name_valid(name)) {
		return -EINVAL;
	}
	/* Writes that returned before the mkdir may still be dirty pages: into the image first. */
	ret = disk_writeback_all(fs);
	if (ret < 0) {
		return ret;
	}
	pthread_mutex_lock(&fs->snap_op_lock);
	struct vdfs_snap *other = vdfs_snap_get(fs, name);	/* a folder of that name */

	if (other || vd_snapshot_find(fs->img, name) >= 0) {
		vdfs_snap_put(fs, other);
		ret = -EEXIST;
	} else {
		ret = vd_snapshot_create(fs->img, name);
		if (ret < 0) {
			vdfs_err(fs, "mkdir", ret);
		} else {
			vdfs_log(fs, "snapshot %s created", name);
		}
		vdfs_snaps_refresh(fs);
	}
	pthread_mutex_unlock(&fs->snap_op_lock);
	return ret;
}

static int
vdfs_rmdir(const char *path)
{
	struct vdfs *fs = vdfs_get();
	struct vdfs_snap *s;
	int ret;

	if (strncmp(path, "/snapshots/", 11) != 0 || strchr(path + 11, '/')) {
		return -EPERM;
	}
	if (fs->readonly) {
		return -EROFS;
	}
	pthread_mutex_lock(&fs->snap_op_lock);
	s = vdfs_snap_get(fs, path + 11);
	if (!s) {
		ret = -ENOENT;
		goto out;
	}
	pthread_mutex_lock(&fs->lock);
	ret = s->open_files > 0 ? -EBUSY : 0;
	pthread_mutex_unlock(&fs->lock);
	if (ret == 0) {
		ret = vd_snapshot_delete(fs->img, s->name);
		if (ret < 0) {
			vdfs_err(fs, "rmdir", ret);
		} else {
			vdfs_log(fs, "snapshot %s deleted", s->name);
		}
		vdfs_snaps_refresh(fs);
	}
	vdfs_snap_put(fs, s);
out:
	pthread_mutex_unlock(&fs->snap_op_lock);
	return ret;
}

/*
 * truncate/ftruncate of disk to a larger size grows the image's top layer
 * (vd_resize: one commit, the new range reads as zeroes). The library holds
 * the chain for writing meanwhile, so in-flight reads and writes finish
 * before and the next ones see the new size; with the writeback cache the
 * kernel has written back disk's dirty pages before it sends the SETATTR,
 * and sets its own i_size from our answer. Snapshot operations wait
 * (snap_op_lock); the snapshots keep their own size. The partition table is
 * re-read at the next look (a GPT's backup header is now before the end, as
 * after any disk grow: sgdisk -e moves it). A size that is not a multiple of
 * 512 is EINVAL, past 64 TiB EFBIG, an image whose top cannot be resized
 * (a foreign format) EPERM.
 */
static int
disk_grow(struct vdfs *fs, uint64_t size)
{
	int ret;

	if (size % 512) {
		return -EINVAL;
	}
	if (size > VD_MAX_SIZE) {
		return -EFBIG;
	}
	pthread_mutex_lock(&fs->snap_op_lock);
	ret = vd_resize(fs->img, size, 0);
	if (ret == 0) {
		pthread_mutex_lock(&fs->lock);
		__atomic_store_n(&fs->size, size, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&fs->lock);
		atomic_fetch_add(&fs->write_gen, 1);	/* re-read the partition table */
		vdfs_log(fs, "disk grown to %" PRIu64 " bytes", size);
	}
	pthread_mutex_unlock(&fs->snap_op_lock);
	if (ret == -ENOTSUP) {
		vdfs_err(fs, "truncate", ret);
		return -EPERM;
	}
	return ret < 0 ? vdfs_err(fs, "truncate", ret) : 0;
}

static int
vdfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct vdfs *fs = vdfs_get();
	enum vdfs_kind kind;
	struct vdfs_node n;
	uint64_t len;
	int ret;

	if (fi) {
		kind = ((struct vdfs_fh *)(uintptr_t)fi->fh)->kind;
		len = fh_len((struct vdfs_fh *)(uintptr_t)fi->fh);
	} else {
		ret = node_lookup(fs, path, &n);
		if (ret < 0) {
			return ret;
		}
		kind = n.kind;
		len = n.kind == K_DISK ? disk_size(fs) : n.kind == K_PART ? n.part.length : 0;
		ret = n.kind == K_DISK || n.kind == K_PART ? 0 : -EROFS;
		node_release(fs, &n);
		if (ret < 0) {
			return ret;
		}
	}
	if (fs->readonly) {
		return -EROFS;
	}
	if (kind != K_DISK || size < 0 || (uint64_t)size <= len) {
		/* A partition has a fixed size, and disk does not shrink: only a no-op succeeds. */
		return (uint64_t)size == len ? 0 : -EPERM;
	}
	return disk_grow(fs, (uint64_t)size);
}

static int
vdfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)path;
	(void)tv;
	(void)fi;
	return 0; /* times are not stored; accept so that touch works */
}

static int
vdfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)path;
	(void)mode;
	(void)fi;
	return -EPERM;
}

static int
vdfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)path;
	(void)uid;
	(void)gid;
	(void)fi;
	return -EPERM;
}

static void *
vdfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct vdfs *fs = vdfs_get();

	cfg->nullpath_ok = 1;
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0;
	cfg->use_ino = 0;
	conn->max_write = VDFS_MAX_IO;
	conn->max_readahead = VDFS_MAX_IO;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	if (conn->capable & FUSE_CAP_ASYNC_DIO) {
		conn->want |= FUSE_CAP_ASYNC_DIO;
	}
	if (conn->capable & FUSE_CAP_ASYNC_READ) {
		conn->want |= FUSE_CAP_ASYNC_READ;
	}
	if (fs->writeback && !fs->readonly && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	} else {
		fs->writeback = false;
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	}
	return fs;
}

static void
vdfs_destroy(void *private_data)
{
	struct vdfs *fs = private_data;
	int ret;

	vdfs_split_stop();
	vdfs_nested_stop(fs);
	if (!fs->readonly) {
		ret = vd_flush(fs->img);
		if (ret < 0) {
			vdfs_log(fs, "flush at unmount: %s", vd_get_error());
		}
	}
}

/*
 * close(2) of a writable file commits the image: FUSE_FLUSH is synchronous
 * (release is not), so what was written through a file is durable once it is
 * closed, and so before fusermount3 -u can succeed, even though the daemon
 * exits a moment later. Nothing written: the commit costs nothing.
 */
static int
vdfs_flush(const char *path, struct fuse_file_info *fi)
{
	struct vdfs_fh *fh = (struct vdfs_fh *)(uintptr_t)fi->fh;

	if (!fh || !fh->writable) {
		return 0;
	}
	return vdfs_fsync(path, 1, fi);
}

const struct fuse_operations vdfs_ops = {
	.init = vdfs_init,
	.destroy = vdfs_destroy,
	.getattr = vdfs_getattr,
	.opendir = vdfs_opendir,
	.readdir = vdfs_readdir,
	.releasedir = vdfs_releasedir,
	.open = vdfs_open,
	.release = vdfs_release,
	.read = vdfs_read,
	.read_buf = vdfs_read_buf,
	.write = vdfs_write,
	.fsync = vdfs_fsync,
	.flush = vdfs_flush,
	.fallocate = vdfs_fallocate,
	.lseek = vdfs_lseek,
	.statfs = vdfs_statfs,
	.mkdir = vdfs_mkdir,
	.rmdir = vdfs_rmdir,
	.truncate = vdfs_truncate,
	.utimens = vdfs_utimens,
	.chmod = vdfs_chmod,
	.chown = vdfs_chown,
};
