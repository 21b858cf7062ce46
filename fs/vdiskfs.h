/* SPDX-License-Identifier: MIT */
/*
 * vdiskfs: shared state of the FUSE daemon (main.c, tree.c, ops.c). The one
 * place that sets FUSE_USE_VERSION (as libnbd's fuse/nbdfuse.h does).
 */
#ifndef FS_VDISKFS_H
#define FS_VDISKFS_H

#define FUSE_USE_VERSION 314

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <sys/types.h>

#include <pthread.h>

#include <fuse.h>

#include "vdisk.h"

#include "part.h"

#define VDFS_MAX_IO (1024u * 1024u) /* max_write, max_read, request size */
#define VDFS_READAHEAD_KB 4096	    /* kernel readahead on the mount: four requests */
#define VDFS_BDI_MAX_RATIO 10	    /* % of the dirty limit the mount may hold (FUSE: 1) */

/* One folder under snapshots/. Refcounted: file handles keep it alive. */
struct vdfs_snap {
	char *name;
	char *entry;	/* its folder under snapshots/: the name, escaped if it cannot be one */
	char *parent; /* NULL for the oldest */
	int64_t created;
	uint64_t allocated;
	uint64_t size;	/* its disk's size */
	int layer;	/* layer index in the chain when last listed */
	int refs;	/* protected by vdfs.lock */
	int open_files; /* open handles on its files; protected by vdfs.lock */
	int view_users; /* open handles on its disk (users of view); protected by vdfs.lock */
	bool gone;	/* deleted (rmdir) or no longer listed; protected by vdfs.lock */
	/* vd_snapshot_open view while view_users > 0; protected by vdfs.lock */
	struct vd_image *view;
	int view_layer; /* in the view: index of this snapshot's own layer */
	char *changed;	/* cached "changed" text; protected by vdfs.lock */
	size_t changed_len;
	unsigned changed_gen; /* vdfs.snap_gen the cache was made for */
};

/* Links every open file and directory handle (ops.c), so none outlives the daemon. */
struct vdfs_hlink {
	struct vdfs_hlink *prev, *next;
	bool is_dir; /* a directory handle (else a file handle) */
};

/* Whole-daemon state, created in main.c, passed to FUSE as private_data. */
struct vdfs {
	const char *image_arg; /* IMAGE as given on the command line */
	char *image_path;      /* its realpath (the daemon chdirs to /) */
	char *image_dir;       /* directory holding it, for statfs */
	struct vd_image *img;
	bool readonly;
	bool foreground;
	uint64_t size;
	struct timespec mount_time;
	struct fuse *fuse;

	pthread_mutex_t lock;	      /* protects snaps, parts, the fields marked above */
	pthread_mutex_t snap_op_lock; /* serialises mkdir/rmdir (create/delete) */
	struct vdfs_snap **snaps;     /* oldest first; protected by lock */
	int nsnaps;
	unsigned snap_gen; /* bumped by every snapshot change; protected by lock */

	struct vdfs_part parts[VDFS_PART_MAX]; /* protected by lock */
	int nparts;
	uint64_t parts_gen; /* write_gen the table was read at */
	bool parts_valid;

	atomic_uint_fast64_t write_gen; /* bumped by writes/discards that may touch a table */
	atomic_bool disk_stale;		/* partitions were written: invalidate disk's cache */
	atomic_bool size_stale;		/* the kernel grew disk past its end (write-back) */
	atomic_bool disk_uncached;	/* disk's bytes changed outside its page cache: the
					   next cached open of disk does not keep the cache */

	/* Kernel writeback cache on disk (ops.c, "CACHING"); off with -o writethrough. */
	bool writeback;
	/*
	 * -s: disk is never cached (every open direct_io, no writeback cache), so
	 * no nested I/O is ever needed: the one thread could not serve it.
	 */
	bool uncached;
	const char *mountpoint;	 /* absolute: nested I/O opens MOUNTPOINT/disk */
	dev_t mnt_dev;		 /* st_dev of the mount (0: unknown) */
	char bdi_path[48];	 /* /sys/class/bdi/MAJ:MIN, or "" */
	atomic_bool bdi_done;	 /* its read_ahead_kb, max_ratio written (once, after FUSE_INIT) */
	atomic_int disk_opens;	 /* open handles on disk */
	atomic_int disk_writers; /* writable ones among them (may hold dirty pages) */
	pthread_mutex_t disk_mode_lock; /* cached or uncached opens of disk (ops.c, DIRECT I/O) */
	int disk_cached;		/* handles of disk through the page cache */
	int disk_direct;		/* uncached handles of disk */
	atomic_bool disk_wb_error; /* a write-back WRITE failed: drop disk's cache at fsync */
	atomic_int nested_pid;	   /* the nested-I/O helper process (nested.c), 0 if none */
	atomic_bool enospc;	   /* a write met ENOSPC: refuse writes until a flush or discard */

	/*
	 * Open handles (circular list; next == NULL until the first open);
	 * protected by lock. The kernel may not have sent every RELEASE when the
	 * session ends (unmount): vdfs_handles_free() frees what is left.
	 */
	struct vdfs_hlink handles;

	uint64_t alloc_cache; /* st_blocks source for disk; protected by lock */
	time_t alloc_cache_time;
};

/* ops.c */
extern const struct fuse_operations vdfs_ops;
/* Free the handles the kernel never released (after the session, no request running). */
void vdfs_handles_free(struct vdfs *fs);

/* tree.c: all take vdfs.lock themselves. */
/* Re-read the snapshot list from the image. 0 or -errno. */
int vdfs_snaps_refresh(struct vdfs *fs);
/* Find a snapshot by name and take a reference (NULL if none). */
struct vdfs_snap *vdfs_snap_get(struct vdfs *fs, const char *name);
void vdfs_snap_put(struct vdfs *fs, struct vdfs_snap *s);
/*
 * Count an open file of the folder (rmdir answers EBUSY while any is open). With
 * view != NULL also take a reference on the snapshot's read-only view (opened on
 * first use, closed with the last user) and return it.
 */
int vdfs_snap_open_file(struct vdfs *fs, struct vdfs_snap *s, struct vd_image **view);
void vdfs_snap_close_file(struct vdfs *fs, struct vdfs_snap *s, bool had_view);
/* The info text (caller frees) and the changed text (caller frees). */
int vdfs_snap_info_text(struct vdfs *fs, struct vdfs_snap *s, char **txt, size_t *len);
int vdfs_snap_changed_text(struct vdfs *fs, struct vdfs_snap *s, char **txt, size_t *len);
/* Copy of the partition table (re-read when the disk was written since). Returns n. */
int vdfs_parts_get(struct vdfs *fs, struct vdfs_part *out, int max);
/* Bytes allocated in the chain (for st_blocks of disk), cached for a second. */
uint64_t vdfs_allocated(struct vdfs *fs);
/* Close every view and drop every snapshot (at unmount). */
void vdfs_tree_destroy(struct vdfs *fs);

/*
 * split.c: vd_pread (write false) or vd_pwrite of [off, off+len) of img, a large
 * one cut in two halves done on two threads at once. *logged: library errors
 * were logged already. 0 or -errno.
 */
int vdfs_split_io(struct vdfs *fs, struct vd_image *img, bool write, void *buf, size_t len,
		  uint64_t off, bool *logged);
/* Stop the helper thread (at unmount, with no request in flight). */
void vdfs_split_stop(void);

/* loop.c: serve the session until it ends (unmount, signal); 0 or -errno. */
int vdfs_loop_run(struct fuse_session *se, unsigned max_workers);
/* ops.c: a READ/WRITE on this file handle may run on the receiving thread. */
bool vdfs_fh_runs_inline(uint64_t fh);

/*
 * fread.c: the calling thread's struct vd_mapped (NULL when out of memory), and
 * the bufvec of a successful vd_pread_map into it: the reply (fuse_reply_data)
 * lets go of the hold. On failure the hold is let go at once.
 */
struct fuse_bufvec;
struct vd_mapped *vdfs_mapped_get(void);
int vdfs_mapped_bufvec(struct vd_mapped *m, struct fuse_bufvec **bufp);

/* nested.c: nested I/O on MOUNTPOINT/disk, done by a helper process. */
#define VDFS_NESTED_SYNC 1  /* write back dirty pages of [off, off+len) and wait */
#define VDFS_NESTED_DROP 2  /* then drop the clean cached pages of the range */
#define VDFS_NESTED_FSYNC 4 /* fsync the whole disk */
int vdfs_nested(struct vdfs *fs, int op, uint64_t off, uint64_t len);
void vdfs_nested_stop(struct vdfs *fs);
bool vdfs_nested_is_helper(const char *argv0);
int vdfs_nested_main(void);

/* main.c: log to stderr in the foreground, else syslog. */
void vdfs_log(struct vdfs *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
