// SPDX-License-Identifier: MIT
/*
 * LUN backing store over a plain file or block device (after tgt's bs_rdwr.c
 * and bs.c): full pread/pwrite loops, fdatasync for SYNCHRONIZE CACHE and FUA,
 * fallocate(PUNCH_HOLE) for UNMAP, SEEK_DATA/SEEK_HOLE for GET LBA STATUS, and
 * the worker pool that runs SCSI commands off the event loop.
 *
 * The pool is one FIFO shared by all LUNs (a pending list and a condition
 * variable, like tgt's bs_thread): on a small machine one set of threads per
 * LUN only adds context switches. A finished item moves to the done list and
 * the eventfd wakes the loop, which sends the response.
 *
 * A file on tmpfs or ramfs is marked mem_backed: its I/O is a memcpy that never
 * waits for a device, so conn.c runs READ/WRITE of it on the event loop; on
 * tmpfs with small pages it is also zerocopy (see lun_small_pages()). Writes to
 * such a file copy into a shared mapping of it rather than pwrite: the same
 * pages, without tmpfs's per-page write_begin/write_end (lookup, lock, unlock,
 * dirty) - about half the cost of the copy. Reads keep pread/splice, which
 * leave the holes of a sparse file alone (a fault on the mapping would fill
 * them). A file that shrank under the mapping raises SIGBUS on the copy: the
 * guard catches it and the write takes the pwrite path. Large writes go into
 * the mapping with non-temporal stores (no read for ownership of the cold
 * destination lines, nothing evicted for data that is not read back soon):
 * 120 -> 70 us per MiB for the copy on this machine.
 *
 * LUN identity: the NAA 6 id and the unit serial number are an MD5 of the
 * canonical path of the backing file (or of the serial given in the config),
 * so they are the same on every portal and across restarts of the daemon and
 * remounts of a vdiskfs file system.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <pthread.h>

#include <md5.h>

#include "sigbus.h"
#include "target.h"

#define LUN_MAP_READ_MIN (64u << 10) /* smaller reads: pread (mincore costs a call too) */
#define TGT_NAA_OUI 0x0d7e5au /* vendor part of the NAA id (locally chosen) */

/* Every open LUN, for EXTENDED COPY's target descriptors. */
static pthread_mutex_t lun_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static TAILQ_HEAD(, tgt_lun) lun_registry = TAILQ_HEAD_INITIALIZER(lun_registry);

struct tgt_lun *
tgt_lun_find_naa(const uint8_t naa[16])
{
	struct tgt_lun *lu, *found = NULL;
	pthread_mutex_lock(&lun_registry_lock);
	TAILQ_FOREACH(lu, &lun_registry, all_link)
	{
		if (!memcmp(lu->naa, naa, 16)) {
			found = tgt_lun_get(lu);
			break;
		}
	}
	pthread_mutex_unlock(&lun_registry_lock);
	return found;
}

/*
 * Zero-copy reads (conn.c) hand page-cache pages of the file to the socket by
 * reference, so their content is only final once the peer has copied it.
 * Atomic writes therefore never write into a page in place: they punch the
 * whole pages out of the file and write new ones (lun_pwrite_atomic), and a
 * read in flight keeps the old pages. That needs pages that a punch removes
 * whole: tmpfs without huge pages (a punch inside a huge folio zeroes it in
 * place). True when neither the mount nor shmem_enabled=force asks for them.
 */
static bool
lun_small_pages(const struct stat *st)
{
	char line[4096];
	bool ok = true;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");
	if (f) {
		if (fgets(line, sizeof(line), f) && strstr(line, "[force]")) {
			ok = false;
		}
		fclose(f);
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		return false;
	}
	char want[32];
	snprintf(want, sizeof(want), "%u:%u", major(st->st_dev), minor(st->st_dev));
	while (fgets(line, sizeof(line), f)) {
		/* id parent MAJ:MIN root mountpoint options ... - fstype source superoptions */
		char dev[32];
		if (sscanf(line, "%*s %*s %31s", dev) != 1 || strcmp(dev, want)) {
			continue;
		}
		const char *h = strstr(line, "huge=");
		if (h && strncmp(h, "huge=never", 10)) {
			ok = false;
		}
	}
	fclose(f);
	return ok;
}

int
lun_pwrite_atomic(struct tgt_lun *lu, const void *buf, size_t len, uint64_t off)
{
	if (!lu->zerocopy || len == 0) {
		return lun_pwrite(lu, buf, len, off);
	}
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t a = off / pg * pg, b = (off + len + pg - 1) / pg * pg;
	struct stat st;
	if (fstat(lu->fd, &st) < 0) {
		return -errno;
	}
	uint64_t end = (uint64_t)st.st_size;
	uint64_t wend = b < end ? b : end; /* never extend the file */
	if (wend < off + len) {
		wend = off + len;
	}
	uint8_t *tmp = malloc((size_t)(b - a));
	if (!tmp) {
		return -ENOMEM;
	}
	int r = lun_pread(lu, tmp, (size_t)(wend - a), a);
	if (r == 0) {
		memcpy(tmp + (off - a), buf, len);
		if (fallocate(lu->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a,
			      (off_t)(b - a)) < 0) {
			r = -errno;
		}
		/* written even when the punch failed: the data must land */
		int w = lun_pwrite(lu, tmp, (size_t)(wend - a), a);
		if (r == 0) {
			r = w;
		}
	}
	free(tmp);
	return r;
}

/* ---- copies into the mapping of a tmpfs LUN, guarded against SIGBUS ---- */

/* memcpy with non-temporal stores, fenced: for large copies into the mapping */
static void
lun_copy_nt(void *dst, const void *src, size_t len)
{
#if defined(__SSE2__)
	uint8_t *d = dst;
	const uint8_t *s = src;
	size_t head = (16 - ((uintptr_t)d & 15)) & 15;
	if (head > len) {
		head = len;
	}
	memcpy(d, s, head);
	d += head;
	s += head;
	len -= head;
	for (; len >= 64; d += 64, s += 64, len -= 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)s);
		__m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
		__m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
		_mm_stream_si128((__m128i *)d, a);
		_mm_stream_si128((__m128i *)(d + 16), b);
		_mm_stream_si128((__m128i *)(d + 32), c);
		_mm_stream_si128((__m128i *)(d + 48), e);
	}
	memcpy(d, s, len);
	_mm_sfence(); /* visible before the lock is released and the command answered */
#else
	memcpy(dst, src, len);
#endif
}

#define LUN_NT_MIN (64u << 10) /* writes from this size on use lun_copy_nt */

/*
 * memcpy to or from the mapping (non-temporal stores for large copies into it
 * when nt); -EFAULT when the pages are gone (the file shrank)
 */
static int
lun_map_copy(void *dst, const void *src, size_t len, bool nt)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0)) {
		vd_bus_jmp = NULL;
		return -EFAULT;
	}
	vd_bus_jmp = &jb;
	__asm__ volatile("" ::: "memory");
	if (nt && len >= LUN_NT_MIN) {
		lun_copy_nt(dst, src, len);
	} else {
		memcpy(dst, src, len);
	}
	__asm__ volatile("" ::: "memory");
	vd_bus_jmp = NULL;
	return 0;
}

static void
lun_map_open(struct tgt_lun *lu, uint64_t size, bool ro)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	if (getenv("VDISK_TARGET_NO_MMAP") || size == 0 || size > (uint64_t)SIZE_MAX / 2) {
		return;
	}
	void *m = mmap(NULL, (size_t)size, PROT_READ | (ro ? 0 : PROT_WRITE), MAP_SHARED, lu->fd, 0);
	if (m == MAP_FAILED) {
		return; /* pwrite as usual */
	}
	pthread_once(&once, vd_bus_install);
	lu->map = m;
	lu->map_len = size;
}

struct tgt_lun *
tgt_lun_open(const char *path, bool ro, const char *serial_override, uint32_t pbsize)
{
	struct tgt_lun *lu = calloc(1, sizeof(*lu));
	char real[PATH_MAX];
	struct stat st;
	uint8_t digest[16];
	MD5_CTX md5;
	int e;

	if (!lu) {
		return NULL;
	}
	lu->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (lu->fd < 0) {
		e = errno;
		goto err;
	}
	if (fstat(lu->fd, &st) < 0) {
		e = errno;
		goto err;
	}
	uint64_t size;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(lu->fd, BLKGETSIZE64, &size) < 0) {
			e = errno;
			goto err;
		}
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
		lu->can_unmap = !ro;
		/* page-cache-only file systems: a read or write is a memcpy */
		struct statfs sf;
		if (fstatfs(lu->fd, &sf) == 0 &&
		    (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC)) {
			lu->mem_backed = true;
			lu->zerocopy = sf.f_type == TMPFS_MAGIC && lun_small_pages(&st);
			lun_map_open(lu, size, ro);
		}
	} else {
		e = EINVAL;
		goto err;
	}
	lu->block_size = 512;
	lu->pb_exp = 0;
	while ((512u << lu->pb_exp) < pbsize && lu->pb_exp < 7) {
		lu->pb_exp++;
	}
	lu->nblocks = size / lu->block_size;
	if (lu->nblocks == 0) {
		e = EINVAL;
		goto err;
	}
	lu->ro = ro;
	lu->wce = 1;
	lu->refs = 1;
	lu->dev_key = (uint64_t)st.st_dev << 32 ^ st.st_ino;
	lu->path = strdup(path);
	if (!lu->path) {
		e = ENOMEM;
		goto err;
	}
	if (!realpath(path, real)) {
		snprintf(real, sizeof(real), "%s", path);
	}
	MD5Init(&md5);
	if (serial_override && *serial_override) {
		MD5Update(&md5, (const uint8_t *)serial_override, strlen(serial_override));
		snprintf(lu->serial, sizeof(lu->serial), "%s", serial_override);
		lu->serial_set = true;
	} else {
		MD5Update(&md5, (const uint8_t *)real, strlen(real));
	}
	MD5Final(digest, &md5);
	if (!serial_override || !*serial_override) {
		for (int i = 0; i < 8; i++) {
			snprintf(lu->serial + 2 * i, 3, "%02x", digest[i]);
		}
	}
	/* NAA 6: 4-bit NAA, 24-bit OUI, 36 + 64 bits vendor specific */
	lu->naa[0] = 0x60 | (TGT_NAA_OUI >> 20);
	lu->naa[1] = (uint8_t)(TGT_NAA_OUI >> 12);
	lu->naa[2] = (uint8_t)(TGT_NAA_OUI >> 4);
	lu->naa[3] = (uint8_t)((TGT_NAA_OUI & 0xf) << 4) | (digest[0] & 0x0f);
	memcpy(lu->naa + 4, digest + 1, 12);

	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&lu->io_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&lu->lock, NULL);
	pthread_mutex_lock(&lun_registry_lock);
	TAILQ_INSERT_TAIL(&lun_registry, lu, all_link);
	pthread_mutex_unlock(&lun_registry_lock);
	return lu;
err:
	if (lu->map) {
		munmap(lu->map, (size_t)lu->map_len);
	}
	if (lu->fd >= 0) {
		close(lu->fd);
	}
	free(lu->path);
	free(lu);
	errno = e;
	return NULL;
}

struct tgt_lun *
tgt_lun_get(struct tgt_lun *lu)
{
	if (lu) {
		atomic_fetch_add_explicit((_Atomic int *)&lu->refs, 1, memory_order_relaxed);
	}
	return lu;
}

void
tgt_lun_put(struct tgt_lun *lu)
{
	if (!lu) {
		return;
	}
	/* the registry lock orders the last put against tgt_lun_find_naa() */
	pthread_mutex_lock(&lun_registry_lock);
	if (atomic_fetch_sub_explicit((_Atomic int *)&lu->refs, 1, memory_order_acq_rel) != 1) {
		pthread_mutex_unlock(&lun_registry_lock);
		return;
	}
	TAILQ_REMOVE(&lun_registry, lu, all_link);
	pthread_mutex_unlock(&lun_registry_lock);
	if (lu->map) {
		munmap(lu->map, (size_t)lu->map_len);
	}
	close(lu->fd);
	pthread_rwlock_destroy(&lu->io_lock);
	pthread_mutex_destroy(&lu->lock);
	free(lu->path);
	free(lu);
}

/*
 * Every page of [off, off + len) of the mapping is in memory: copying from it
 * then fills no hole (a read fault on a hole of a tmpfs mapping allocates).
 */
bool
lun_map_resident(struct tgt_lun *lu, uint64_t off, size_t len)
{
	unsigned char vec[256];
	if (!lu->map || off > lu->map_len || len > lu->map_len - off || len == 0) {
		return false;
	}
	uint64_t a = off & ~(uint64_t)4095, end = off + len;
	while (a < end) {
		uint64_t pages = (end - a + 4095) >> 12;
		if (pages > sizeof(vec)) {
			pages = sizeof(vec);
		}
		if (mincore(lu->map + a, (size_t)(pages << 12), vec) < 0) {
			return false;
		}
		for (uint64_t i = 0; i < pages; i++) {
			if (!(vec[i] & 1)) {
				return false;
			}
		}
		a += pages << 12;
	}
	return true;
}

int
lun_map_read(struct tgt_lun *lu, void *buf, size_t len, uint64_t off)
{
	if (!lu->map || off > lu->map_len || len > lu->map_len - off) {
		return -EFAULT;
	}
	return lun_map_copy(buf, lu->map + off, len, false);
}

_Atomic int tgt_lun_resize_pending;

void
tgt_lun_mark_shrunk(struct tgt_lun *lu)
{
	atomic_store(&lu->recheck, true);
	atomic_store(&tgt_lun_resize_pending, 1);
}

void
tgt_lun_mark_resized(struct tgt_lun *lu)
{
	atomic_store(&lu->resized, true);
	atomic_store(&tgt_lun_resize_pending, 1);
}

/* The size of the LUN's file or block device now; false if it cannot be read. */
static bool
lun_file_size(const struct tgt_lun *lu, uint64_t *size)
{
	struct stat st;
	if (fstat(lu->fd, &st) < 0) {
		return false;
	}
	if (S_ISBLK(st.st_mode)) {
		return ioctl(lu->fd, BLKGETSIZE64, size) == 0;
	}
	*size = (uint64_t)st.st_size;
	return true;
}

bool
tgt_lun_update_size(struct tgt_lun *lu)
{
	uint64_t size;
	if (!lun_file_size(lu, &size)) {
		return false;
	}
	uint64_t n = size / lu->block_size;
	uint64_t old = atomic_load(&lu->nblocks);
	if (n == old) {
		return false;
	}
	atomic_store(&lu->nblocks, n);
	tgt_info("LUN %s: now %llu bytes (was %llu): capacity changed", lu->path,
		 (unsigned long long)(n * lu->block_size),
		 (unsigned long long)(old * lu->block_size));
	return true;
}

bool
tgt_lun_check_grown(struct tgt_lun *lu)
{
	uint64_t size;
	if (!lun_file_size(lu, &size)) {
		return false;
	}
	if (size / lu->block_size <= atomic_load(&lu->nblocks)) {
		return false;
	}
	return tgt_lun_update_size(lu);
}

/*
 * Growth of a LUN's file is looked for by a thread of its own, once a second:
 * one fstat (or BLKGETSIZE64) per LUN, off the I/O path and off the event
 * loop (an fstat on a vdiskfs mount whose daemon hangs would hang the loop).
 * The LUNs are taken from the registry with a reference each, so that a
 * reload may drop them meanwhile. Found growth is at most about two seconds
 * old when the unit attention is raised (this sleep plus the loop's
 * one-second epoll timeout).
 */
static void *
lun_watch_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct tgt_lun *lus[64], *lu;
		int n = 0;
		sleep(1);
		pthread_mutex_lock(&lun_registry_lock);
		TAILQ_FOREACH(lu, &lun_registry, all_link)
		{
			if (n < (int)(sizeof(lus) / sizeof(lus[0]))) {
				lus[n++] = tgt_lun_get(lu);
			}
		}
		pthread_mutex_unlock(&lun_registry_lock);
		for (int i = 0; i < n; i++) {
			if (tgt_lun_check_grown(lus[i])) {
				tgt_lun_mark_resized(lus[i]);
			}
			tgt_lun_put(lus[i]);
		}
	}
	return NULL;
}

static void
lun_watch_spawn(void)
{
	pthread_t th;
	pthread_attr_t a;
	sigset_t all, old;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the loop's signalfd */
	if (pthread_create(&th, &a, lun_watch_main, NULL) != 0) {
		tgt_info("cannot start the LUN size watcher: a grown LUN is seen at READ CAPACITY");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
}

void
tgt_lun_watch_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, lun_watch_spawn);
}

int
lun_pread(struct tgt_lun *lu, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	if (len >= LUN_MAP_READ_MIN && lun_map_resident(lu, off, len) &&
	    lun_map_copy(buf, lu->map + off, len, false) == 0) {
		return 0;
	}
	while (len) {
		ssize_t n = pread(lu->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (n == 0) {
			/* past the end of a file that shrank: what was there is gone,
			 * zeros would be silent wrong data */
			tgt_lun_mark_shrunk(lu);
			return -ENXIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int
lun_pread_nowait(struct tgt_lun *lu, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	if (lu->mem_backed) {
		return lun_pread(lu, buf, len, off); /* tmpfs has no RWF_NOWAIT, never waits */
	}
	while (len) {
		struct iovec iov = {.iov_base = p, .iov_len = len};
		ssize_t n = preadv2(lu->fd, &iov, 1, (off_t)off, RWF_NOWAIT);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EOPNOTSUPP || errno == EAGAIN ? -EAGAIN : -errno;
		}
		if (n == 0) {
			return -EAGAIN; /* let the blocking path handle short files */
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int
lun_pwrite(struct tgt_lun *lu, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	if (lu->map && !lu->ro && off <= lu->map_len && len <= lu->map_len - off) {
		if (lun_map_copy(lu->map + off, buf, len, true) == 0) {
			return 0;
		}
		/* SIGBUS: the file shrank; a pwrite would grow it back in silence */
		tgt_lun_mark_shrunk(lu);
		return -ENXIO;
	}
	while (len) {
		ssize_t n = pwrite(lu->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int
lun_flush(struct tgt_lun *lu)
{
	return fdatasync(lu->fd) < 0 ? -errno : 0;
}

int
lun_punch(struct tgt_lun *lu, uint64_t off, uint64_t len)
{
	if (fallocate(lu->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
	    0) {
		return 0;
	}
	if (errno != EOPNOTSUPP && errno != ENOSYS) {
		return -errno;
	}
	/* No hole punching here: unmapped blocks must still read as zeros (LBPRZ). */
	static const uint8_t zero[65536];
	while (len) {
		size_t n = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		int r = lun_pwrite(lu, zero, n, off);
		if (r < 0) {
			return r;
		}
		off += n;
		len -= n;
	}
	return 0;
}

int
lun_block_status(struct tgt_lun *lu, uint64_t off, bool *mapped, uint64_t *run)
{
	uint64_t end = lu->nblocks * lu->block_size;
	off_t d = lseek(lu->fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) { /* a hole up to the end of the file */
			*mapped = false;
			*run = end - off;
			return 0;
		}
		*mapped = true; /* no SEEK_DATA: everything is data */
		*run = end - off;
		return 0;
	}
	if ((uint64_t)d > off) {
		*mapped = false;
		*run = (uint64_t)d - off;
		return 0;
	}
	off_t h = lseek(lu->fd, (off_t)off, SEEK_HOLE);
	*mapped = true;
	*run = h < 0 || (uint64_t)h > end ? end - off : (uint64_t)h - off;
	if (*run == 0) {
		*run = 1;
	}
	return 0;
}

/* ---- worker pool ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	TAILQ_HEAD(, tgt_work) pending; /* protected by lock */
	TAILQ_HEAD(, tgt_work) done;	/* protected by lock */
	bool stop;			/* protected by lock */
	int efd;
	int nthreads;
	pthread_t *threads;
} workq = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .efd = -1};

static void *
workq_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&workq.lock);
	for (;;) {
		while (!workq.stop && TAILQ_EMPTY(&workq.pending)) {
			pthread_cond_wait(&workq.cond, &workq.lock);
		}
		if (workq.stop && TAILQ_EMPTY(&workq.pending)) {
			break;
		}
		struct tgt_work *w = TAILQ_FIRST(&workq.pending);
		TAILQ_REMOVE(&workq.pending, w, link);
		pthread_mutex_unlock(&workq.lock);
		w->fn(w);
		pthread_mutex_lock(&workq.lock);
		bool was_empty = TAILQ_EMPTY(&workq.done);
		TAILQ_INSERT_TAIL(&workq.done, w, link);
		if (was_empty) {
			uint64_t one = 1;
			ssize_t r = write(workq.efd, &one, sizeof(one));
			(void)r;
		}
	}
	pthread_mutex_unlock(&workq.lock);
	return NULL;
}

int
workq_start(int n)
{
	TAILQ_INIT(&workq.pending);
	TAILQ_INIT(&workq.done);
	workq.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (workq.efd < 0) {
		return -errno;
	}
	workq.threads = calloc((size_t)n, sizeof(pthread_t));
	if (!workq.threads) {
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		int r = pthread_create(&workq.threads[i], NULL, workq_thread, NULL);
		if (r) {
			return -r;
		}
		workq.nthreads++;
	}
	return workq.efd;
}

void
workq_stop(void)
{
	pthread_mutex_lock(&workq.lock);
	workq.stop = true;
	pthread_cond_broadcast(&workq.cond);
	pthread_mutex_unlock(&workq.lock);
	for (int i = 0; i < workq.nthreads; i++) {
		pthread_join(workq.threads[i], NULL);
	}
	free(workq.threads);
	workq.threads = NULL;
	workq.nthreads = 0;
	if (workq.efd >= 0) {
		close(workq.efd);
		workq.efd = -1;
	}
}

void
workq_submit(struct tgt_work *w)
{
	pthread_mutex_lock(&workq.lock);
	TAILQ_INSERT_TAIL(&workq.pending, w, link);
	pthread_cond_signal(&workq.cond);
	pthread_mutex_unlock(&workq.lock);
}

struct tgt_work *
workq_pop_done(void)
{
	pthread_mutex_lock(&workq.lock);
	struct tgt_work *w = TAILQ_FIRST(&workq.done);
	if (w) {
		TAILQ_REMOVE(&workq.done, w, link);
	}
	pthread_mutex_unlock(&workq.lock);
	return w;
}

int
workq_eventfd(void)
{
	return workq.efd;
}
