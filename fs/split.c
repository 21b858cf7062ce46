// SPDX-License-Identifier: MIT
/*
 * vdiskfs: large reads and writes on two cores at once.
 *
 * Design notes. A 1 MiB request costs the daemon a copy between the image
 * file and the request buffer plus a checksum over every block, and the
 * kernel's copy between that buffer and the caller (done while the daemon
 * writes the reply or reads the request). With one request in flight (a
 * program doing sequential O_DIRECT I/O, psync) that is all on one core while
 * the caller sleeps. So the request stays one 1 MiB FUSE request, but the
 * library call is cut in two at a block boundary: one helper thread does the
 * second half while the request's own thread does the first, and the reply
 * goes out when both are done. The library allows concurrent I/O on one image
 * (the halves touch different blocks).
 *
 * There is one helper with one job slot: if it is busy with another request,
 * the request does its whole call itself (several requests in flight already
 * keep the cores busy). Small requests (< VDFS_SPLIT_MIN) are never cut.
 * The helper logs its own library errors (vd_get_error is per thread).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>

#include "util.h"
#include "vdiskfs.h"

#define VDFS_SPLIT_MIN (256u * 1024u)

static struct {
	pthread_mutex_t lock;
	pthread_cond_t posted_cond, done_cond;
	pthread_t thread;
	bool started, stop;
	bool busy;   /* the slot is taken (posted, running or not yet collected) */
	bool posted; /* a job waits for the helper */
	bool done;   /* the helper finished the job */
	struct vdfs *fs;
	struct vd_image *img;
	bool write;
	void *buf;
	size_t len;
	uint64_t off;
	int ret;
} sp = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.posted_cond = PTHREAD_COND_INITIALIZER,
	.done_cond = PTHREAD_COND_INITIALIZER,
};

static int
do_io(struct vd_image *img, bool write, void *buf, size_t len, uint64_t off)
{
	return write ? vd_pwrite(img, buf, len, off) : vd_pread(img, buf, len, off);
}

static void *
helper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sp.lock);
	for (;;) {
		while (!sp.posted && !sp.stop) {
			pthread_cond_wait(&sp.posted_cond, &sp.lock);
		}
		if (sp.stop) {
			break;
		}
		sp.posted = false;
		pthread_mutex_unlock(&sp.lock);
		sp.ret = do_io(sp.img, sp.write, sp.buf, sp.len, sp.off);
		if (sp.ret < 0 && sp.ret != -ENOSPC) {
			vdfs_log(sp.fs, "%s: %s", sp.write ? "write" : "read", vd_get_error());
		}
		pthread_mutex_lock(&sp.lock);
		sp.done = true;
		pthread_cond_signal(&sp.done_cond);
	}
	pthread_mutex_unlock(&sp.lock);
	return NULL;
}

int
vdfs_split_io(struct vdfs *fs, struct vd_image *img, bool write, void *buf, size_t len,
	      uint64_t off, bool *logged)
{
	uint64_t bs = vd_get_block_size(img), mid;
	int r1, r2;

	*logged = false;
	if (len < VDFS_SPLIT_MIN || bs == 0 || (bs & (bs - 1))) {
		return do_io(img, write, buf, len, off);
	}
	mid = (off + len / 2) & ~(bs - 1);
	if (mid <= off || mid >= off + len || pthread_mutex_trylock(&sp.lock) != 0) {
		return do_io(img, write, buf, len, off);
	}
	if (sp.busy || sp.stop) {
		pthread_mutex_unlock(&sp.lock);
		return do_io(img, write, buf, len, off);
	}
	if (!sp.started) {
		if (vd_thread_start(&sp.thread, NULL, helper_main, NULL) != 0) {
			pthread_mutex_unlock(&sp.lock);
			return do_io(img, write, buf, len, off);
		}
		sp.started = true;
	}
	sp.busy = true;
	sp.posted = true;
	sp.done = false;
	sp.fs = fs;
	sp.img = img;
	sp.write = write;
	sp.buf = (uint8_t *)buf + (mid - off);
	sp.len = (size_t)(off + len - mid);
	sp.off = mid;
	pthread_cond_signal(&sp.posted_cond);
	pthread_mutex_unlock(&sp.lock);

	r1 = do_io(img, write, buf, (size_t)(mid - off), off);
	if (r1 < 0 && r1 != -ENOSPC) {
		vdfs_log(fs, "%s: %s", write ? "write" : "read", vd_get_error());
	}

	pthread_mutex_lock(&sp.lock);
	while (!sp.done) {
		pthread_cond_wait(&sp.done_cond, &sp.lock);
	}
	r2 = sp.ret;
	sp.busy = false;
	pthread_mutex_unlock(&sp.lock);
	*logged = true;
	return r1 < 0 ? r1 : r2;
}

void
vdfs_split_stop(void)
{
	pthread_mutex_lock(&sp.lock);
	sp.stop = true;
	pthread_cond_signal(&sp.posted_cond);
	pthread_mutex_unlock(&sp.lock);
	if (sp.started) {
		pthread_join(sp.thread, NULL);
		sp.started = false;
	}
}
