// SPDX-License-Identifier: MIT
/*
 * vdiskfs -o one_receiver: its own request loop.
 *
 * Design notes. libfuse's multi-threaded loop keeps every idle worker blocked
 * in read() on /dev/fuse, and the kernel hands each request to the worker
 * that has waited longest: with 16 workers a program doing one small request
 * at a time meets a different, cold thread each time, usually on the other
 * CPU. Measured on this 2-core VM (fio 4 KiB O_DIRECT at depth 1 on `disk`):
 * 16 workers 345-351 MiB/s reads and 285-334 writes; one worker 512/453; the
 * single-threaded loop 533/500. That was while other work kept both CPUs
 * busy; on the idle VM it is the other way round (reads 22-29 against 66-123
 * MiB/s with libfuse's loop): with one receiver every request and every reply
 * wakes a halted vCPU through the hypervisor. So this loop is an option, not
 * the default (README, "Requests and threads").
 *
 * So one thread receives every request, and runs the short ones itself at
 * once: READ and WRITE of at most VDFS_LOOP_INLINE_MAX bytes on `disk` or a
 * snapshot's `disk`, and INTERRUPT. O_DIRECT READ and WRITE of any size on
 * them too: such a program waits for each request (a large one is still cut
 * over two threads, split.c), and handing it to a worker cost 3-7 % of a
 * 1 MiB request's time. Everything else goes to a pool of worker
 * threads: large I/O (so that several 1 MiB requests run in parallel, as the
 * kernel's readahead and write-back send them), opens, flushes, fsync, the
 * tree, mkdir/rmdir of snapshots, and all I/O of partition files. What
 * runs inline never waits for another FUSE request to be served: only the
 * dispatched operations do nested I/O (a snapshot or a partition request
 * writing back `disk` through the mount, fs/nested.c), and the receiving
 * thread is free meanwhile to serve the requests that causes.
 *
 * The pool keeps its idle workers on a LIFO list, so the most recently busy
 * (cache-warm) worker takes the next job. The workers block the signals that
 * end the session, so SIGTERM/SIGINT/SIGHUP interrupt the receiving thread's
 * read() and it leaves the loop; the workers finish their jobs and exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/fuse.h>
#include <pthread.h>

#include "util.h"
#include "vdiskfs.h" /* FUSE_USE_VERSION first */

#include <fuse_lowlevel.h>

#define VDFS_LOOP_INLINE_MAX (128u * 1024u)

struct loop_job {
	struct loop_job *next;
	struct fuse_buf buf;
};

struct loop_worker {
	struct loop_worker *next_idle;
	pthread_cond_t cond;
	struct loop_job *job;	/* handed over by the receiver */
	bool stop;
	pthread_t thread;
	struct vdfs_loop *lp;
};

struct vdfs_loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	struct loop_worker *idle;	/* LIFO */
	struct loop_job *queue, *queue_tail; /* jobs no idle worker could take */
	struct loop_job *free_jobs;	/* buffers to receive into */
	struct loop_worker **workers;
	unsigned nworkers, max_workers;
};

static void
job_free(struct loop_job *j)
{
	free(j->buf.mem);
	free(j);
}

/* A job back on the free list (its buffer is reused). */
static void
job_put(struct vdfs_loop *lp, struct loop_job *j)
{
	pthread_mutex_lock(&lp->lock);
	j->next = lp->free_jobs;
	lp->free_jobs = j;
	pthread_mutex_unlock(&lp->lock);
}

static struct loop_job *
job_get(struct vdfs_loop *lp)
{
	struct loop_job *j;

	pthread_mutex_lock(&lp->lock);
	j = lp->free_jobs;
	if (j) {
		lp->free_jobs = j->next;
	}
	pthread_mutex_unlock(&lp->lock);
	if (!j) {
		j = calloc(1, sizeof(*j));	/* libfuse allocates the buffer at receive */
	}
	return j;
}

static void *
worker_main(void *arg)
{
	struct loop_worker *w = arg;
	struct vdfs_loop *lp = w->lp;

	pthread_mutex_lock(&lp->lock);
	for (;;) {
		struct loop_job *j = w->job;

		if (!j && lp->queue) {
			j = lp->queue;
			lp->queue = j->next;
			if (!lp->queue) {
				lp->queue_tail = NULL;
			}
		}
		if (!j) {
			if (w->stop) {
				break;
			}
			w->next_idle = lp->idle;
			lp->idle = w;
			pthread_cond_wait(&w->cond, &lp->lock);
			continue;
		}
		w->job = NULL;
		pthread_mutex_unlock(&lp->lock);
		fuse_session_process_buf(lp->se, &j->buf);
		job_put(lp, j);
		pthread_mutex_lock(&lp->lock);
	}
	pthread_mutex_unlock(&lp->lock);
	return NULL;
}

/* Hand j to an idle worker, a new one, or the queue. Caller holds lp->lock. */
static void
dispatch_locked(struct vdfs_loop *lp, struct loop_job *j)
{
	struct loop_worker *w = lp->idle;

	if (w) {
		lp->idle = w->next_idle;
		w->job = j;
		pthread_cond_signal(&w->cond);
		return;
	}
	if (lp->nworkers < lp->max_workers) {
		w = calloc(1, sizeof(*w));
		if (w) {
			pthread_cond_init(&w->cond, NULL);
			w->lp = lp;
			w->job = j;
			if (vd_thread_start(&w->thread, NULL, worker_main, w) == 0) {
				lp->workers[lp->nworkers++] = w;
				return;
			}
			pthread_cond_destroy(&w->cond);
			free(w);
		}
	}
	/* Every worker is busy: the first to finish takes it. */
	j->next = NULL;
	if (lp->queue_tail) {
		lp->queue_tail->next = j;
	} else {
		lp->queue = j;
	}
	lp->queue_tail = j;
}

/* May the receiving thread run this request itself (short, never waits for another)? */
static bool
runs_inline(const struct fuse_buf *b)
{
	const struct fuse_in_header *h = b->mem;

	if (b->flags & FUSE_BUF_IS_FD || b->size < sizeof(*h)) {
		return false;
	}
	switch (h->opcode) {
	case FUSE_INTERRUPT:
		return true;
	case FUSE_READ: {
		const struct fuse_read_in *r = (const void *)(h + 1);

		return b->size >= sizeof(*h) + sizeof(*r) &&
		       (r->size <= VDFS_LOOP_INLINE_MAX || (r->flags & O_DIRECT)) &&
		       vdfs_fh_runs_inline(r->fh);
	}
	case FUSE_WRITE: {
		const struct fuse_write_in *w = (const void *)(h + 1);

		return b->size >= sizeof(*h) + sizeof(*w) &&
		       (w->size <= VDFS_LOOP_INLINE_MAX || (w->flags & O_DIRECT)) &&
		       vdfs_fh_runs_inline(w->fh);
	}
	default:
		return false;
	}
}

int
vdfs_loop_run(struct fuse_session *se, unsigned max_workers)
{
	struct vdfs_loop lp = {
		.se = se,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.max_workers = max_workers ? max_workers : 1,
	};
	struct loop_job *j;
	int res = 0;

	lp.workers = calloc(lp.max_workers, sizeof(*lp.workers));
	if (!lp.workers) {
		return -ENOMEM;
	}
	while (!fuse_session_exited(se)) {
		j = job_get(&lp);
		if (!j) {
			res = -ENOMEM;
			break;
		}
		res = fuse_session_receive_buf(se, &j->buf);
		if (res == -EINTR || res == -EAGAIN) {
			job_put(&lp, j);
			res = 0;
			continue;
		}
		if (res <= 0) {
			job_put(&lp, j);
			break;
		}
		if (runs_inline(&j->buf)) {
			fuse_session_process_buf(se, &j->buf);
			job_put(&lp, j);
			continue;
		}
		pthread_mutex_lock(&lp.lock);
		dispatch_locked(&lp, j);
		pthread_mutex_unlock(&lp.lock);
	}
	/* Let the workers finish what they hold and what is queued, then exit. */
	pthread_mutex_lock(&lp.lock);
	for (unsigned i = 0; i < lp.nworkers; i++) {
		lp.workers[i]->stop = true;
		pthread_cond_signal(&lp.workers[i]->cond);
	}
	pthread_mutex_unlock(&lp.lock);
	for (unsigned i = 0; i < lp.nworkers; i++) {
		pthread_join(lp.workers[i]->thread, NULL);
		pthread_cond_destroy(&lp.workers[i]->cond);
		free(lp.workers[i]);
	}
	free(lp.workers);
	while ((j = lp.free_jobs)) {
		lp.free_jobs = j->next;
		job_free(j);
	}
	fuse_session_reset(se);
	return res < 0 ? res : 0;
}
