// SPDX-License-Identifier: MIT
/*
 * The native driver (.vdk): I/O through a mapping of the image file, for files
 * that live in memory (tmpfs, ramfs).
 *
 * Design notes. A read through pread copies the image file's pages into a
 * buffer, and vdiskfs then copies that buffer into the FUSE reply: two copies
 * where reading the raw file costs one. For a file in memory the daemon can
 * instead map the file and hand the kernel the mapped pages themselves
 * (vd_pread_map): the checksum of every block is verified on the mapping and
 * the FUSE reply is written straight from it, one copy in all. The blocks
 * shown must not be recycled until the reply is out, so the layer's `reuse`
 * lock is held for reading from the map look-up until .map_release (the same
 * rule a pread follows, only longer); blocks are never overwritten in place
 * (vdk.c, "Never overwriting committed bytes"), so what a reader sees stays
 * what it verified.
 *
 * Writes of whole blocks go through the mapping too (a memcpy instead of a
 * pwrite): tmpfs serialises pwrite on the inode lock, so the two halves of a
 * large request that vdiskfs writes on two threads ran one after the other.
 * A store into a page the host cannot provide (a full tmpfs, or past the end
 * of the file) would raise SIGBUS, so the pages are first populated with
 * MADV_POPULATE_WRITE, which fails with an error instead; then the write falls
 * back to pwrite, which extends the file or reports ENOSPC as before.
 *
 * Reads only touch blocks below `host_end`, a lower bound of the file's size
 * (the size at open, raised by every data write that succeeded): a map entry
 * that points past the end of a damaged file is read with pread, which
 * reports it, instead of faulting on the mapping.
 *
 * Verifying ahead. The checksums of a 1 MiB read cost about a third of the
 * daemon's time for it (the data comes from memory, not the cache), and a
 * program reading sequentially with one request in flight leaves the other
 * core idle meanwhile. So when a mapped read of a layer starts where the last
 * one ended and no other mapped read of that layer is in flight, the next
 * range of the same length is verified on a helper thread while the kernel
 * copies this one out. The next read takes the result for every block whose
 * map entry (place and checksum) is the one the helper verified, if the check
 * is less than VDK_AHEAD_NS old, and verifies the rest itself: the helper
 * publishes its results VDK_AHEAD_CHUNK blocks at a time, and stops when the
 * reader has come (a reader never waits for it). That keeps what the checksum
 * promises: a place is rewritten only after its entry changes (a recycled block
 * is re-entered with the checksum of the bytes written there, and a block of
 * the current generation rewritten in place gets the new bytes' checksum), so
 * an entry that is still the one verified still describes those bytes; only a
 * change made to the file from outside (despite its lock) within those 2 ms
 * could go unseen, as it could between any read's check and its copy. One
 * helper thread serves every layer; a job is only posted when it is idle.
 * VDISK_NO_AHEAD=1 in the environment turns this off (for comparisons).
 *
 * Allocating ahead of an appending writer. A write past the end of the file
 * goes through pwrite, which takes tmpfs's inode lock and allocates each page
 * on the writer's path (the two halves of a large write then run one after the
 * other). So when a write ends within VDK_GROW_LOW of what the file holds, a
 * short-lived thread allocates the next VDK_GROW_CHUNK (for a disk smaller
 * than 256 MiB, a quarter of its size: a small image gets little) with fallocate and
 * faults it in (the zeroing of each new page happens there), and later writes
 * land in the mapping. The allocator does not know of these pages: they are
 * the end of the file it extends into anyway. At most VDK_GROW_LOW +
 * VDK_GROW_CHUNK lie allocated past the last write, and never more than an
 * eighth of what the host has free (others may need it); closing the image
 * cuts them off (vdk_close_space), and so does freezing the layer in a snapshot
 * (vdk_grow_trim); after a crash they are free space inside the file, reused by
 * the next writer. A failed fallocate (a full host) ends it for that layer; the
 * writes then fall back to pwrite, which reports ENOSPC as before.
 * VDISK_NO_GROW=1 in the environment turns this off (for comparisons).
 *
 * A layer file that another program truncates while it is mapped (ignoring
 * the image lock) turns a load or store past its new end into SIGBUS. Every
 * access of the daemon's own to the mapping (checksums, the verify-ahead
 * helper, stores of written blocks) runs under a guard: a SIGBUS there jumps
 * back (siglongjmp from the handler of format/sigbus.h, which vdisk-target
 * shares, installed once) and the access fails
 * with EIO naming the file, and host_end is lowered to the file's new size so
 * that later reads take pread, which reports the short file. The kernel's own
 * copies from the mapping (a FUSE reply written from it) fail with EFAULT,
 * which the kernel turns into EIO for the reader. A SIGBUS elsewhere in the
 * process is not ours: it kills the process as before.
 *
 * Only memory-backed files are mapped: there a mapped page cannot fail to be
 * read (a disk's I/O error would be a SIGBUS in the checksum loop), and the
 * copy saved is the whole cost. Encrypted layers decrypt into a buffer anyway
 * and are not mapped. VDISK_NO_MAP=1 in the environment turns mapping off
 * (for comparisons).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "sigbus.h"
#include "util.h"
#include "vdk.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Address space reserved for a writable layer that grows: its size plus room for the map and churn. */
#define VDK_MAP_MAX (16ull << 40)

/* ---- SIGBUS from a file that shrank under its mapping (design notes above) ---- */

/*
 * After a SIGBUS on l's mapping: reads go below the file's real end only
 * (pread reports the rest), and the error says what happened.
 */
static int
map_lost(struct vd_layer *l, const char *what)
{
	struct vdk_state *st = l->st;
	struct stat sb;

	if (fstat(l->fd, &sb) == 0) {
		uint64_t cur = __atomic_load_n(&st->host_end, __ATOMIC_RELAXED);

		while ((uint64_t)sb.st_size < cur &&
		       !__atomic_compare_exchange_n(&st->host_end, &cur, (uint64_t)sb.st_size, true,
						    __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
		}
	}
	return vd_set_error(EIO, "%s: %s past the end of the file: it was truncated while open "
			    "(by another program?)", l->path, what);
}

/* ---- verifying ahead (design notes above) --------------------------------------- */

#define VDK_AHEAD_MAX 256		/* blocks per job: what one vdk_pread_map batch looks up */
#define VDK_AHEAD_MIN (128u << 10)	/* reads smaller than this are not followed */
#define VDK_AHEAD_NS 2000000		/* a result is taken within 2 ms of the check, or not */
#define VDK_AHEAD_CHUNK 32		/* blocks the helper verifies between two publications */

struct vdk_ahead {
	pthread_mutex_t lock;		/* the result below */
	uint64_t vb0;			/* the job: blocks [vb0, vb0 + total) */
	uint32_t total;
	uint32_t n;			/* [vb0, vb0 + n) are verified (ok[]) */
	uint64_t stamp;			/* when they were looked up (CLOCK_MONOTONIC ns) */
	atomic_bool stop;		/* a reader has come to the job's range */
	struct vdk_entry ents[VDK_AHEAD_MAX];	/* the entries checked */
	uint8_t ok[VDK_AHEAD_MAX];	/* the block's bytes matched its checksum */
	atomic_uint_fast64_t next_vb;	/* where the last mapped read of the layer ended */
	atomic_int readers;		/* mapped reads of the layer in flight */

	/* allocating ahead of an appending writer (design notes above) */
	pthread_mutex_t grow_lock;
	pthread_cond_t grow_cond;	/* a grow thread finished */
	bool grow_busy;			/* a grow thread runs for this layer */
	bool grow_stop;			/* no more: an error, a freeze, the close */
	bool grew;			/* the file was allocated past its size at open */
	bool punched;			/* a hole was punched while the grow thread ran */
	uint64_t grow_from, grow_to;	/* the running thread's range */
	atomic_uint_fast64_t grow_end;	/* the file is allocated up to here */
	atomic_uint_fast64_t solid_from; /* and has no hole in [solid_from, grow_end) */
};

/* The helper thread and its one job slot. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a job was posted, or one finished */
	pid_t pid;			/* the process the thread runs in (0: none) */
	struct vd_layer *l;		/* the job's layer; NULL: the slot is free */
	uint64_t vb0;
	uint32_t n;
	bool running;			/* the thread took the job */
} ahead_job = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/* Blocks whose check a reader took from the helper (for tests and comparisons). */
atomic_ulong vdk_ahead_taken;

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Look up and verify [vb0, vb0 + n) of l, publishing the results in l's
 * vdk_ahead as they come, until done or a reader has come to the range.
 */
static void
ahead_run(struct vd_layer *l, uint64_t vb0, uint32_t n)
{
	struct vdk_state *st = l->st;
	struct vdk_ahead *a = st->ahead;
	struct vdk_entry ents[VDK_AHEAD_MAX];
	uint64_t end, stamp;
	int r = 0;

	/* Recycling must not be kept waiting. */
	if (pthread_rwlock_tryrdlock(&st->reuse) != 0) {
		return;
	}
	end = VD_MIN(__atomic_load_n(&st->host_end, __ATOMIC_ACQUIRE), st->map_len);
	pthread_mutex_lock(&st->lock);
	for (uint32_t i = 0; i < n && r == 0; i++) {
		r = vdk_lookup_locked(l, vb0 + i, &ents[i]);
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0) {
		pthread_rwlock_unlock(&st->reuse);
		return;
	}
	stamp = mono_ns();	/* the results are at least this old */
	pthread_mutex_lock(&a->lock);
	a->vb0 = vb0;
	a->total = n;
	a->n = 0;
	a->stamp = stamp;
	memcpy(a->ents, ents, n * sizeof(ents[0]));
	atomic_store(&a->stop, false);
	pthread_mutex_unlock(&a->lock);
	sigjmp_buf jb;

	if (sigsetjmp(jb, 0)) {
		vd_bus_jmp = NULL;
		(void)map_lost(l, "a check ahead read");	/* the reader finds out itself */
		pthread_rwlock_unlock(&st->reuse);
		return;
	}
	vd_bus_jmp = &jb;
	for (uint32_t i = 0; i < n && !atomic_load(&a->stop); i += VDK_AHEAD_CHUNK) {
		uint32_t k = VD_MIN(n - i, (uint32_t)VDK_AHEAD_CHUNK);
		uint8_t ok[VDK_AHEAD_CHUNK];

		for (uint32_t j = 0; j < k; j++) {
			uint64_t phys = ents[i + j].ptr & ~VDK_PTR_FLAGS;

			ok[j] = (ents[i + j].ptr & VDK_PTR_PRESENT) && phys <= end &&
				end - phys >= st->bs &&
				vdk_data_sum_ok(st->map + phys, st->bs, vb0 + i + j, ents[i + j].sum);
		}
		vd_bus_jmp = NULL;	/* no jump while a->lock is held */
		pthread_mutex_lock(&a->lock);
		memcpy(a->ok + i, ok, k);
		a->n = i + k;
		pthread_mutex_unlock(&a->lock);
		vd_bus_jmp = &jb;
	}
	vd_bus_jmp = NULL;
	pthread_rwlock_unlock(&st->reuse);
}

static void *
ahead_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ahead_job.lock);
	for (;;) {
		while (!ahead_job.l || ahead_job.running) {
			pthread_cond_wait(&ahead_job.cond, &ahead_job.lock);
		}
		struct vd_layer *l = ahead_job.l;
		uint64_t vb0 = ahead_job.vb0;
		uint32_t n = ahead_job.n;

		ahead_job.running = true;
		pthread_mutex_unlock(&ahead_job.lock);
		ahead_run(l, vb0, n);
		pthread_mutex_lock(&ahead_job.lock);
		ahead_job.l = NULL;
		ahead_job.running = false;
		pthread_cond_broadcast(&ahead_job.cond);
	}
	return NULL;
}

/*
 * fork(): the child has no helper thread and must not inherit a job or a held
 * lock. So a fork waits until the helper is between jobs, with the lock held;
 * the child starts with an empty slot and starts its own helper when needed.
 */
static void
ahead_prefork(void)
{
	pthread_mutex_lock(&ahead_job.lock);
	while (ahead_job.running) {
		pthread_cond_wait(&ahead_job.cond, &ahead_job.lock);
	}
}

static void
ahead_postfork_parent(void)
{
	pthread_mutex_unlock(&ahead_job.lock);
}

static void
ahead_postfork_child(void)
{
	ahead_job.pid = 0;
	ahead_job.l = NULL;
	pthread_cond_init(&ahead_job.cond, NULL);
	pthread_mutex_unlock(&ahead_job.lock);
}

static void
ahead_atfork(void)
{
	pthread_atfork(ahead_prefork, ahead_postfork_parent, ahead_postfork_child);
}

/* Post [vb0, vb0 + n) of l if the helper is idle (started on first use, again after fork). */
static void
ahead_post(struct vd_layer *l, uint64_t vb0, uint32_t n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	static atomic_int off = -1;	/* read by every reader thread */
	pid_t me = getpid();

	if (vd_env_flag_once(&off, "VDISK_NO_AHEAD")) {
		return;
	}
	pthread_once(&once, ahead_atfork);
	if (pthread_mutex_trylock(&ahead_job.lock) != 0) {
		return;
	}
	if (ahead_job.pid != me) {
		/* No helper in this process (a fork's child has none of the parent's threads). */
		pthread_attr_t at;
		pthread_t t;

		ahead_job.l = NULL;
		ahead_job.running = false;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (vd_thread_start(&t, &at, ahead_main, NULL) == 0) {
			ahead_job.pid = me;
		}
		pthread_attr_destroy(&at);
	}
	if (ahead_job.pid == me && !ahead_job.l) {
		ahead_job.l = l;
		ahead_job.vb0 = vb0;
		ahead_job.n = n;
		pthread_cond_broadcast(&ahead_job.cond);
	}
	pthread_mutex_unlock(&ahead_job.lock);
}

/* Before a layer's mapping goes: take back its job, or wait until the helper is done with it. */
static void
ahead_cancel(struct vd_layer *l)
{
	pthread_mutex_lock(&ahead_job.lock);
	if (ahead_job.pid == getpid()) {
		while (ahead_job.l == l && ahead_job.running) {
			pthread_cond_wait(&ahead_job.cond, &ahead_job.lock);
		}
		if (ahead_job.l == l) {
			ahead_job.l = NULL;
		}
	}
	pthread_mutex_unlock(&ahead_job.lock);
}

/*
 * Mark in skip[] the blocks of [vb, vb + nb) that the helper verified with
 * entries equal to ents[] less than VDK_AHEAD_NS ago. If the helper is on
 * this range, tell it to stop: the caller verifies the rest itself.
 */
static void
ahead_take(struct vd_layer *l, uint64_t vb, uint64_t nb, const struct vdk_entry *ents,
	   uint8_t *skip)
{
	struct vdk_state *st = l->st;
	struct vdk_ahead *a = st->ahead;
	uint64_t now = mono_ns();

	memset(skip, 0, nb);
	pthread_mutex_lock(&a->lock);
	if (a->vb0 < vb + nb && vb < a->vb0 + a->total) {
		atomic_store(&a->stop, true);
	}
	if (a->n > 0 && now - a->stamp < VDK_AHEAD_NS && a->vb0 < vb + nb && vb < a->vb0 + a->n) {
		for (uint64_t i = 0; i < nb; i++) {
			uint64_t j = vb + i - a->vb0;

			if (vb + i >= a->vb0 && j < a->n && a->ok[j] && a->ents[j].ptr == ents[i].ptr &&
			    memcmp(a->ents[j].sum, ents[i].sum, sizeof(ents[i].sum)) == 0) {
				skip[i] = 1;
				atomic_fetch_add_explicit(&vdk_ahead_taken, 1, memory_order_relaxed);
			}
		}
	}
	pthread_mutex_unlock(&a->lock);
}

/* ---- the mapping ------------------------------------------------------------------ */

static void
host_end_raise(struct vdk_state *st, uint64_t end)
{
	uint64_t cur = __atomic_load_n(&st->host_end, __ATOMIC_RELAXED);

	while (end > cur &&
	       !__atomic_compare_exchange_n(&st->host_end, &cur, end, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED)) {
	}
}

/* ---- allocating ahead of an appending writer ---------------------------------- */

#define VDK_GROW_CHUNK (64ull << 20)	/* allocated per step */
#define VDK_GROW_LOW (32ull << 20)	/* a step starts when a write ends this close to the end */
#define VDK_GROW_MIN (2ull << 20)	/* the smallest step (a disk under 256 MiB steps by a
					   quarter of its size) */

static void *
grow_main(void *arg)
{
	struct vd_layer *l = arg;
	struct vdk_state *st = l->st;
	struct vdk_ahead *a = st->ahead;
	uint64_t from, to;
	int r;

	pthread_mutex_lock(&a->grow_lock);
	from = a->grow_from;
	to = a->grow_to;
	a->punched = false;
	pthread_mutex_unlock(&a->grow_lock);
	r = fallocate(l->fd, 0, (off_t)from, (off_t)(to - from));
	if (r == 0) {
		/* Zero the new pages here, not on the writer's path (a hint: errors do not matter). */
		(void)madvise(st->map + from, to - from, MADV_POPULATE_WRITE);
	}
	pthread_mutex_lock(&a->grow_lock);
	if (r == 0) {
		/*
		 * A gap before `from` (a write past the end) may be a hole: start
		 * again there. A hole punched meanwhile may lie in [from, to) itself
		 * (a block written there and discarded): then nothing is known solid.
		 */
		if (a->punched) {
			atomic_store(&a->solid_from, to);
		} else if (from != atomic_load(&a->grow_end)) {
			atomic_store(&a->solid_from, from);
		}
		atomic_store(&a->grow_end, to);	/* after solid_from: readers load in the other order */
		a->grew = true;
	} else {
		a->grow_stop = true;	/* a full host, or no fallocate: pwrite as before */
	}
	a->grow_busy = false;
	pthread_cond_broadcast(&a->grow_cond);
	pthread_mutex_unlock(&a->grow_lock);
	return NULL;
}

/* A write of l ended at file offset end: allocate ahead if it came close to the end. */
static void
grow_maybe(struct vd_layer *l, uint64_t end)
{
	static atomic_int off = -1;
	struct vdk_state *st = l->st;
	struct vdk_ahead *a = st->ahead;
	uint64_t ge = atomic_load_explicit(&a->grow_end, memory_order_relaxed);
	/* A small disk gets little: a quarter of its size (2 MiB at least). */
	uint64_t chunk = VD_MIN(VDK_GROW_CHUNK, VD_MAX(st->nblocks << st->bshift >> 2,
						       (uint64_t)VDK_GROW_MIN));
	uint64_t low = VD_MIN(VDK_GROW_LOW, chunk / 2);

	if (end + low <= ge || !st->writable || vd_env_flag_once(&off, "VDISK_NO_GROW")) {
		return;
	}
	pthread_mutex_lock(&a->grow_lock);
	if (!a->grow_busy && !a->grow_stop) {
		uint64_t from = VD_MAX(atomic_load(&a->grow_end), end);
		uint64_t ahead = low + chunk, to;
		struct statfs sf;
		pthread_attr_t at;
		pthread_t t;

		/* Never more than an eighth of what the host has free: others may need it. */
		if (fstatfs(l->fd, &sf) == 0) {
			ahead = VD_MIN(ahead, (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize / 8);
		}
		to = VD_MIN(VD_MIN(from + chunk, end + ahead) & ~(uint64_t)0x1fffff, st->map_len);
		if (to > from) {
			a->grow_from = from;
			a->grow_to = to;
			a->grow_busy = true;
			pthread_attr_init(&at);
			pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			if (vd_thread_start(&t, &at, grow_main, l) != 0) {
				a->grow_busy = false;
				a->grow_stop = true;
			}
			pthread_attr_destroy(&at);
		}
	}
	pthread_mutex_unlock(&a->grow_lock);
}

/* No more growing for l; wait for a grow thread still running. */
static void
grow_halt(struct vdk_ahead *a)
{
	pthread_mutex_lock(&a->grow_lock);
	a->grow_stop = true;
	while (a->grow_busy) {
		pthread_cond_wait(&a->grow_cond, &a->grow_lock);
	}
	pthread_mutex_unlock(&a->grow_lock);
}

void
vdk_map_punched(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	struct vdk_ahead *a = st->ahead;

	if (a) {
		pthread_mutex_lock(&a->grow_lock);
		atomic_store(&a->solid_from, atomic_load(&a->grow_end));
		a->punched = true;	/* for a grow thread running now */
		pthread_mutex_unlock(&a->grow_lock);
	}
}

/*
 * [off, off + len) lies where the grow thread allocated and faulted in the
 * pages, with no hole punched since: a store there cannot fault for lack of a
 * page, so it needs no MADV_POPULATE_WRITE (which costs a page walk and an LRU
 * update per page, on the writer's path).
 */
static bool
grow_solid(struct vdk_ahead *a, uint64_t off, uint64_t len)
{
	uint64_t end = atomic_load_explicit(&a->grow_end, memory_order_acquire);

	return off + len <= end && off >= atomic_load_explicit(&a->solid_from, memory_order_acquire);
}

void
vdk_grow_trim(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	struct stat sb;
	uint64_t end;

	if (!st->ahead) {
		return;
	}
	grow_halt(st->ahead);
	if (!st->ahead->grew || !st->alloc_ready) {
		return;
	}
	end = VD_MAX(st->file_blocks << st->bshift,
		     __atomic_load_n(&st->host_end, __ATOMIC_ACQUIRE));
	if (fstat(l->fd, &sb) == 0 && (uint64_t)sb.st_size > end) {
		(void)!ftruncate(l->fd, (off_t)end);
	}
}

/*
 * Where the file of size `size` has no hole up to its end (a store there
 * needs no page allocated): after its last hole, found with SEEK_HOLE and
 * SEEK_DATA; `size` if there are too many holes to look at.
 */
static uint64_t
solid_start(int fd, uint64_t size)
{
	uint64_t pos = 0, from = 0;

	for (int i = 0; i < 1024; i++) {
		off_t h = lseek(fd, (off_t)pos, SEEK_HOLE), d;

		if (h < 0) {
			return size;
		}
		if ((uint64_t)h >= size) {
			return from;
		}
		d = lseek(fd, h, SEEK_DATA);
		if (d < 0) {
			return size;	/* a hole up to the end (ENXIO), or no answer */
		}
		from = (uint64_t)d;
		pos = (uint64_t)d;
	}
	return size;
}

void
vdk_map_open(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	struct stat sb;
	uint64_t len;
	void *p;

	if (st->crypt || !vd_fd_mappable(l->fd) || fstat(l->fd, &sb) < 0 || sb.st_size <= 0) {
		return;
	}
	len = (uint64_t)sb.st_size;
	if (st->writable) {
		/* The file grows by data, map nodes, blocks waiting for reuse: 1/4 more and 64 MiB. */
		len = VD_MAX(len, st->data_start + st->hdr.size + st->hdr.size / 4 + (64u << 20));
		len = VD_MIN(len, VDK_MAP_MAX);
	}
	len = (len + 0x1fffff) & ~(uint64_t)0x1fffff;
	p = mmap(NULL, len, st->writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, l->fd,
		 0);
	if (p == MAP_FAILED) {
		return;	/* no address space: pread and pwrite as before */
	}
	st->ahead = calloc(1, sizeof(*st->ahead));
	if (!st->ahead) {
		munmap(p, len);
		return;
	}
	pthread_mutex_init(&st->ahead->lock, NULL);
	pthread_mutex_init(&st->ahead->grow_lock, NULL);
	pthread_cond_init(&st->ahead->grow_cond, NULL);
	atomic_init(&st->ahead->grow_end, (uint64_t)sb.st_size);
	atomic_init(&st->ahead->solid_from, st->writable ? solid_start(l->fd, (uint64_t)sb.st_size)
							 : (uint64_t)sb.st_size);
	static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

	pthread_once(&guard_once, vd_bus_install);
	st->map = p;
	l->mapped = true;
	st->map_len = len;
	st->map_rw = st->writable;
	st->host_end = (uint64_t)sb.st_size;
}

void
vdk_map_close(struct vd_layer *l)
{
	struct vdk_state *st = l->st;

	if (st->map) {
		ahead_cancel(l);
		grow_halt(st->ahead);
		munmap(st->map, st->map_len);
		st->map = NULL;
		l->mapped = false;
		pthread_mutex_destroy(&st->ahead->lock);
		pthread_mutex_destroy(&st->ahead->grow_lock);
		pthread_cond_destroy(&st->ahead->grow_cond);
		free(st->ahead);
		st->ahead = NULL;
	}
}

/*
 * Whole blocks into the mapping. Large runs use non-temporal stores: the
 * destination is not read first (a normal store fetches every line it writes
 * to) and does not push the caller's data out of the cache; nothing reads the
 * new block soon. Small runs (and other CPUs) use memcpy.
 */
#define VDK_NT_MIN (64u * 1024u)

static void
vdk_copy_out(uint8_t *dst, const uint8_t *src, size_t len)
{
#if defined(__x86_64__)
	if (len >= VDK_NT_MIN && ((uintptr_t)dst & 63) == 0 && (len & 63) == 0) {
		__m128i *d = (__m128i *)(void *)dst;
		const __m128i *s = (const __m128i *)(const void *)src;

		for (size_t i = 0; i < len / 16; i += 4) {
			__m128i a = _mm_loadu_si128(s + i), b = _mm_loadu_si128(s + i + 1);
			__m128i c = _mm_loadu_si128(s + i + 2), e = _mm_loadu_si128(s + i + 3);

			_mm_stream_si128(d + i, a);
			_mm_stream_si128(d + i + 1, b);
			_mm_stream_si128(d + i + 2, c);
			_mm_stream_si128(d + i + 3, e);
		}
		_mm_sfence();	/* ordered before whatever publishes the block */
		return;
	}
#endif
	memcpy(dst, src, len);
}

int
vdk_write_phys(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	struct vdk_state *st = l->st;
	int r;

	if (st->map && st->map_rw && off + len <= st->map_len) {
		grow_maybe(l, off + len);
		if (grow_solid(st->ahead, off, len) ||
		    madvise(st->map + off, len, MADV_POPULATE_WRITE) == 0) {
			sigjmp_buf jb;

			if (sigsetjmp(jb, 0)) {
				vd_bus_jmp = NULL;
				return map_lost(l, "a write");
			}
			vd_bus_jmp = &jb;
			vdk_copy_out(st->map + off, buf, len);
			vd_bus_jmp = NULL;
			host_end_raise(st, off + len);
			return 0;
		}
	}
	r = vd_full_pwrite(l->fd, buf, len, off);
	if (r < 0) {
		return vd_set_error(r, "%s: write: %s", l->path, strerror(-r));
	}
	host_end_raise(st, off + len);
	return 0;
}

/*
 * Checksums of a batch of mapped blocks, on the calling thread: it then
 * writes the reply from the same pages, now in its cache. (Spreading the
 * checksums over the library's pool was measured slower: the copy then reads
 * half the data from the other core's cache.)
 */
static int
map_verify(struct vd_layer *l, uint64_t vb, const struct vdk_entry *ents, uint64_t n)
{
	struct vdk_state *st = l->st;
	uint8_t skip[VDK_AHEAD_MAX];

	sigjmp_buf jb;

	ahead_take(l, vb, n, ents, skip);
	if (sigsetjmp(jb, 0)) {
		vd_bus_jmp = NULL;
		return map_lost(l, "a read");
	}
	vd_bus_jmp = &jb;
	for (uint64_t k = 0; k < n; k++) {
		const struct vdk_entry *e = &ents[k];

		if ((e->ptr & VDK_PTR_PRESENT) && !skip[k] &&
		    !vdk_data_sum_ok(st->map + (e->ptr & ~VDK_PTR_FLAGS), st->bs, vb + k, e->sum)) {
			vd_bus_jmp = NULL;
			return vd_set_error(EIO, "%s: block %llu (offset %llu): bad checksum", l->path,
					    (unsigned long long)(vb + k),
					    (unsigned long long)((vb + k) << st->bshift));
		}
	}
	vd_bus_jmp = NULL;
	return 0;
}

int
vdk_pread_map(struct vd_layer *l, uint64_t off, size_t len, struct vd_mapped *m)
{
	struct vdk_state *st = l->st;
	struct vdk_entry ents[256];
	uint64_t vb = off >> st->bshift;
	uint32_t head = (uint32_t)(off & (st->bs - 1));
	int r;

	if (!st->map) {
		return -EAGAIN;
	}
	r = vd_mapped_hold(m, l);
	if (r < 0) {
		return r;
	}
	if (r == 0) {
		pthread_rwlock_rdlock(&st->reuse);	/* until vdk_map_release */
	}
	r = 0;
	uint64_t vb_first = vb;
	size_t len_first = len;
	bool alone = atomic_fetch_add(&st->ahead->readers, 1) == 0;

	while (len > 0 && r == 0) {
		uint64_t nb = VD_MIN((uint64_t)VD_ARRAY_SIZE(ents),
				     (head + len + st->bs - 1) >> st->bshift);
		uint64_t end = __atomic_load_n(&st->host_end, __ATOMIC_ACQUIRE);

		end = VD_MIN(end, st->map_len);
		pthread_mutex_lock(&st->lock);
		for (uint64_t i = 0; i < nb && r == 0; i++) {
			r = vdk_lookup_locked(l, vb + i, &ents[i]);
		}
		pthread_mutex_unlock(&st->lock);
		for (uint64_t i = 0; i < nb && r == 0; i++) {
			uint64_t phys = ents[i].ptr & ~VDK_PTR_FLAGS;

			if ((ents[i].ptr & VDK_PTR_PRESENT) && (phys > end || end - phys < st->bs)) {
				r = -EAGAIN;	/* past what is known to be in the file: pread says what */
			}
		}
		if (r == 0) {
			r = map_verify(l, vb, ents, nb);
		}
		for (uint64_t i = 0; i < nb && r == 0; i++) {
			size_t want = (size_t)VD_MIN((uint64_t)len, st->bs - head);

			if (ents[i].ptr & VDK_PTR_PRESENT) {
				r = vd_mapped_add(m, st->map + (ents[i].ptr & ~VDK_PTR_FLAGS) + head,
						  want);
			} else {
				r = vd_mapped_zero(m, want);
			}
			len -= want;
			head = 0;
		}
		vb += nb;
	}
	/*
	 * A sequential reader on its own: verify its next range while the kernel
	 * copies this one (design notes).
	 */
	uint64_t was = atomic_exchange(&st->ahead->next_vb, (off + len_first) >> st->bshift);
	uint64_t nvb = st->nblocks;	/* not hdr: a commit rewrites hdr under lock */

	if (r == 0 && alone && was == vb_first && len_first >= VDK_AHEAD_MIN && vb < nvb) {
		ahead_post(l, vb, (uint32_t)VD_MIN(VD_MIN(vb - vb_first, (uint64_t)VDK_AHEAD_MAX),
						   nvb - vb));
	}
	atomic_fetch_sub(&st->ahead->readers, 1);
	return r;
}

void
vdk_map_release(struct vd_layer *l)
{
	struct vdk_state *st = l->st;

	pthread_rwlock_unlock(&st->reuse);
}
