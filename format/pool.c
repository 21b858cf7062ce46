// SPDX-License-Identifier: MIT
/*
 * A small pool of worker threads for CPU-bound work inside one request: the
 * AEAD of the blocks of a large read or write of an encrypted image. One
 * request (a 1 MiB read through vdiskfs, say) is otherwise sealed or opened on
 * one core while the others sit idle; the AEAD, not the copy, is its cost.
 *
 * vd_pool_run(n, fn, arg) calls fn(arg, i) for every i in [0, n) and returns
 * when all are done. The caller works on its own job too, so a job always
 * progresses even when every worker is busy with other callers' jobs: the pool
 * adds parallelism, never a wait. Workers take indices from the oldest queued
 * job with an atomic counter. The pool starts on first use with one thread
 * fewer than the online CPUs (none on one CPU: the caller does everything), at
 * most VD_POOL_MAX; it restarts in a child after fork() (vdiskfs opens the
 * image, then daemonizes), since a child has none of its parent's threads.
 * Its threads live until the process exits; they hold no image state.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"

#define VD_POOL_MAX 16

struct vd_pool_job {
	void (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t next;		/* next index to hand out */
	atomic_size_t done;		/* indices finished */
	struct vd_pool_job *qnext;	/* queue link */
	int users;			/* workers inside vd_pool_work() on it (vd_pool.lock) */
	bool queued;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job was queued */
	pthread_cond_t finished;	/* a job's last index finished */
	struct vd_pool_job *head, *tail;
	int nthreads;
	pid_t pid;			/* the process that started the threads */
	bool started;
} vd_pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.work = PTHREAD_COND_INITIALIZER,
	.finished = PTHREAD_COND_INITIALIZER,
};

static pthread_mutex_t vd_pool_start_lock = PTHREAD_MUTEX_INITIALIZER;

/* Run indices of job until none is left. */
static void
vd_pool_work(struct vd_pool_job *job)
{
	size_t i, k = 0;

	while ((i = atomic_fetch_add(&job->next, 1)) < job->n) {
		job->fn(job->arg, i);
		k++;
	}
	atomic_fetch_add(&job->done, k);
}

/* Unlink job from the queue if it is there. Caller holds vd_pool.lock. */
static void
vd_pool_dequeue_locked(struct vd_pool_job *job)
{
	struct vd_pool_job **pp = &vd_pool.head, *prev = NULL;

	if (!job->queued) {
		return;
	}
	while (*pp && *pp != job) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (*pp) {
		*pp = job->qnext;
		if (vd_pool.tail == job) {
			vd_pool.tail = prev;
		}
	}
	job->queued = false;
}

static void *
vd_pool_thread(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&vd_pool.lock);
	for (;;) {
		struct vd_pool_job *job = vd_pool.head;

		if (!job) {
			pthread_cond_wait(&vd_pool.work, &vd_pool.lock);
			continue;
		}
		if (atomic_load(&job->next) >= job->n) {
			/* Every index is handed out: nothing more to take from this one. */
			vd_pool_dequeue_locked(job);
			continue;
		}
		/* users > 0 keeps the job (on its caller's stack) alive while we are inside. */
		job->users++;
		pthread_mutex_unlock(&vd_pool.lock);
		vd_pool_work(job);
		pthread_mutex_lock(&vd_pool.lock);
		if (--job->users == 0) {
			pthread_cond_broadcast(&vd_pool.finished);
		}
	}
	return NULL;
}

/* Start the threads once per process. */
static void
vd_pool_start(void)
{
	pid_t me = getpid();

	pthread_mutex_lock(&vd_pool_start_lock);
	if (!vd_pool.started || vd_pool.pid != me) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		int want = ncpu > 1 ? (int)(ncpu - 1) : 0;
		pthread_attr_t attr;

		if (vd_pool.started) {
			/* A forked child: the parent's threads and queue are not here. */
			pthread_mutex_init(&vd_pool.lock, NULL);
			pthread_cond_init(&vd_pool.work, NULL);
			pthread_cond_init(&vd_pool.finished, NULL);
			vd_pool.head = vd_pool.tail = NULL;
		}
		vd_pool.nthreads = 0;
		want = want > VD_POOL_MAX ? VD_POOL_MAX : want;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		for (int i = 0; i < want; i++) {
			pthread_t t;

			if (vd_thread_start(&t, &attr, vd_pool_thread, NULL) != 0) {
				break;	/* fewer workers: the callers still do the work */
			}
			vd_pool.nthreads++;
		}
		pthread_attr_destroy(&attr);
		vd_pool.pid = me;
		vd_pool.started = true;
	}
	pthread_mutex_unlock(&vd_pool_start_lock);
}

void
vd_pool_run(size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	struct vd_pool_job job = { .fn = fn, .arg = arg, .n = n };

	if (n == 0) {
		return;
	}
	vd_pool_start();
	if (n == 1 || vd_pool.nthreads == 0) {
		for (size_t i = 0; i < n; i++) {
			fn(arg, i);
		}
		return;
	}
	atomic_init(&job.next, 0);
	atomic_init(&job.done, 0);
	pthread_mutex_lock(&vd_pool.lock);
	job.queued = true;
	if (vd_pool.tail) {
		vd_pool.tail->qnext = &job;
	} else {
		vd_pool.head = &job;
	}
	vd_pool.tail = &job;
	pthread_cond_broadcast(&vd_pool.work);
	pthread_mutex_unlock(&vd_pool.lock);

	vd_pool_work(&job);

	pthread_mutex_lock(&vd_pool.lock);
	/*
	 * Every index is handed out. Once the job is off the queue no worker can
	 * pick it up; wait for those still inside it (their indices finish too).
	 */
	vd_pool_dequeue_locked(&job);
	while (job.users > 0 || atomic_load(&job.done) < n) {
		pthread_cond_wait(&vd_pool.finished, &vd_pool.lock);
	}
	pthread_mutex_unlock(&vd_pool.lock);
}
