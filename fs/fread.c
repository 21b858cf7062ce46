// SPDX-License-Identifier: MIT
/*
 * vdiskfs: READ replies written straight from the image file's pages.
 *
 * Design notes. A read of `disk` used to cost the daemon a pread from the
 * image file into a buffer, then the kernel a copy of that buffer into the
 * caller's pages (or the page cache) when the reply was written: two copies
 * where the raw file costs one. When the image's layers are in memory
 * (tmpfs), the library can show a read as a list of pieces of its mapped,
 * verified pages instead (vd_pread_map); the reply is then written from those
 * pages with one writev, and the kernel's copy is the only one.
 *
 * libfuse's high-level API hands a read_buf result to fuse_reply_data, which
 * writes a single memory buffer directly but copies several into one
 * temporary buffer first, and frees every memory buffer afterwards. So
 * vdiskfs defines fuse_reply_data itself, as it does fuse_reply_open
 * (fopen.c: libfuse's call binds to this definition): the pieces go out as
 * an iovec through fuse_reply_iov (which sends like any reply), then the
 * library's hold on the blocks is let go (vd_pread_map_done) and the pieces
 * are taken out of the bufvec so that libfuse frees none of them. The hold is
 * the calling thread's: read_buf (ops.c) takes it, the fuse_reply_data that
 * follows on the same thread (fuse_lib_read) ends it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <pthread.h>

#include "vdiskfs.h"

#include <fuse_lowlevel.h>

static pthread_key_t mapped_key;
static pthread_once_t mapped_once = PTHREAD_ONCE_INIT;
static bool mapped_key_ok;
static __thread struct vd_mapped *pending;

static void
mapped_key_init(void)
{
	mapped_key_ok = pthread_key_create(&mapped_key, free) == 0;
}

struct vd_mapped *
vdfs_mapped_get(void)
{
	struct vd_mapped *m;

	pthread_once(&mapped_once, mapped_key_init);
	if (!mapped_key_ok) {
		return NULL;
	}
	m = pthread_getspecific(mapped_key);
	if (!m) {
		m = calloc(1, sizeof(*m));
		if (m && pthread_setspecific(mapped_key, m) != 0) {
			free(m);
			m = NULL;
		}
	}
	return m;
}

int
vdfs_mapped_bufvec(struct vd_mapped *m, struct fuse_bufvec **bufp)
{
	int n = m->niov > 0 ? m->niov : 1;
	struct fuse_bufvec *bv = calloc(1, sizeof(*bv) + (size_t)(n - 1) * sizeof(bv->buf[0]));

	if (!bv) {
		vd_pread_map_done(m);
		return -ENOMEM;
	}
	bv->count = (size_t)m->niov;
	for (int i = 0; i < m->niov; i++) {
		bv->buf[i].size = m->iov[i].iov_len;
		bv->buf[i].mem = m->iov[i].iov_base;
		bv->buf[i].fd = -1;
	}
	pending = m;
	*bufp = bv;
	return 0;
}

/* A bufvec of anything else (not made by vdiskfs today): one buffer, the way libfuse does it. */
static int
reply_copy(fuse_req_t req, struct fuse_bufvec *bufv)
{
	size_t len = fuse_buf_size(bufv);
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
	ssize_t got;
	int r;

	dst.buf[0].mem = malloc(len ? len : 1);
	if (!dst.buf[0].mem) {
		return fuse_reply_err(req, ENOMEM);
	}
	got = fuse_buf_copy(&dst, bufv, 0);
	r = got < 0 ? fuse_reply_err(req, (int)-got) : fuse_reply_buf(req, dst.buf[0].mem, (size_t)got);
	free(dst.buf[0].mem);
	return r;
}

int
fuse_reply_data(fuse_req_t req, struct fuse_bufvec *bufv, enum fuse_buf_copy_flags flags)
{
	struct iovec iov[VD_MAPPED_IOV];
	struct vd_mapped *m = pending;
	size_t n = 0;
	int r;

	(void)flags;
	pending = NULL;
	for (size_t i = bufv->idx; i < bufv->count; i++) {
		const struct fuse_buf *b = &bufv->buf[i];
		size_t skip = i == bufv->idx ? bufv->off : 0;

		if ((b->flags & FUSE_BUF_IS_FD) || n == VD_MAPPED_IOV) {
			n = SIZE_MAX;
			break;
		}
		if (b->size > skip) {
			iov[n].iov_base = (char *)b->mem + skip;
			iov[n].iov_len = b->size - skip;
			n++;
		}
	}
	r = n == SIZE_MAX ? reply_copy(req, bufv) : fuse_reply_iov(req, iov, (int)n);
	if (m) {
		vd_pread_map_done(m);
		for (size_t i = 0; i < bufv->count; i++) {
			bufv->buf[i].mem = NULL;	/* the image's pages: not libfuse's to free */
		}
	}
	return r;
}
