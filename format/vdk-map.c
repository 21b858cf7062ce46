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
 * Only memory-backed files are mapped: there a mapped page cannot fail to be
 * read (a disk's I/O error would be a SIGBUS in the checksum loop), and the
 * copy saved is the whole cost. Encrypted layers decrypt into a buffer anyway
 * and are not mapped. VDISK_NO_MAP=1 in the environment turns mapping off
 * (for comparisons).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "util.h"
#include "vdk.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Address space reserved for a writable layer that grows: its size plus room for the map and churn. */
#define VDK_MAP_MAX (16ull << 40)

static void
host_end_raise(struct vdk_state *st, uint64_t end)
{
	uint64_t cur = __atomic_load_n(&st->host_end, __ATOMIC_RELAXED);

	while (end > cur &&
	       !__atomic_compare_exchange_n(&st->host_end, &cur, end, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED)) {
	}
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
	st->map = p;
	st->map_len = len;
	st->map_rw = st->writable;
	st->host_end = (uint64_t)sb.st_size;
}

void
vdk_map_close(struct vd_layer *l)
{
	struct vdk_state *st = l->st;

	if (st->map) {
		munmap(st->map, st->map_len);
		st->map = NULL;
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

	if (st->map && st->map_rw && off + len <= st->map_len &&
	    madvise(st->map + off, len, MADV_POPULATE_WRITE) == 0) {
		vdk_copy_out(st->map + off, buf, len);
		host_end_raise(st, off + len);
		return 0;
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

	for (uint64_t k = 0; k < n; k++) {
		const struct vdk_entry *e = &ents[k];

		if ((e->ptr & VDK_PTR_PRESENT) &&
		    !vdk_data_sum_ok(st->map + (e->ptr & ~VDK_PTR_FLAGS), st->bs, vb + k, e->sum)) {
			return vd_set_error(EIO, "%s: block %llu (offset %llu): bad checksum", l->path,
					    (unsigned long long)(vb + k),
					    (unsigned long long)((vb + k) << st->bshift));
		}
	}
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
	return r;
}

void
vdk_map_release(struct vd_layer *l)
{
	struct vdk_state *st = l->st;

	pthread_rwlock_unlock(&st->reuse);
}
