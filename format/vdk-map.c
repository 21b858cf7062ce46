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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <linux/magic.h>

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
	const char *env = getenv("VDISK_NO_MAP");
	struct statfs sf;
	struct stat sb;
	uint64_t len;
	void *p;

	if (st->crypt || (env && *env && strcmp(env, "0") != 0)) {
		return;
	}
	if (fstatfs(l->fd, &sf) < 0 || (sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC) ||
	    fstat(l->fd, &sb) < 0 || sb.st_size <= 0) {
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

int
vdk_write_phys(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	struct vdk_state *st = l->st;
	int r;

	if (st->map && st->map_rw && off + len <= st->map_len &&
	    madvise(st->map + off, len, MADV_POPULATE_WRITE) == 0) {
		memcpy(st->map + off, buf, len);
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
 * Checksums of a batch of mapped blocks, on the library's pool when the batch
 * is large (a 1 MiB read of 4 KiB blocks: 256 checksums, about 85 us on one
 * core here, as much as the copy the mapping saves).
 */
#define MAP_PAR_CHUNK 32
#define MAP_PAR_MIN 64

struct map_verify {
	struct vd_layer *l;
	uint64_t vb;			/* virtual block of ents[0] */
	const struct vdk_entry *ents;
	uint64_t n;
	atomic_uint_fast64_t bad;	/* lowest failing index, or n */
};

static void
map_verify_chunk(void *arg, size_t c)
{
	struct map_verify *w = arg;
	struct vdk_state *st = w->l->st;
	uint64_t k0 = (uint64_t)c * MAP_PAR_CHUNK, k1 = VD_MIN(w->n, k0 + MAP_PAR_CHUNK);

	for (uint64_t k = k0; k < k1; k++) {
		const struct vdk_entry *e = &w->ents[k];

		if ((e->ptr & VDK_PTR_PRESENT) &&
		    !vdk_data_sum_ok(st->map + (e->ptr & ~VDK_PTR_FLAGS), st->bs, w->vb + k, e->sum)) {
			uint_fast64_t cur = atomic_load(&w->bad);

			while (k < cur && !atomic_compare_exchange_weak(&w->bad, &cur, k)) {
			}
			return;
		}
	}
}

static int
map_verify(struct vd_layer *l, uint64_t vb, const struct vdk_entry *ents, uint64_t n)
{
	struct vdk_state *st = l->st;
	struct map_verify w = { .l = l, .vb = vb, .ents = ents, .n = n };
	size_t chunks = (size_t)((n + MAP_PAR_CHUNK - 1) / MAP_PAR_CHUNK);
	uint64_t k;

	atomic_init(&w.bad, n);
	if (n >= MAP_PAR_MIN) {
		vd_pool_run(chunks, map_verify_chunk, &w);
	} else {
		for (size_t c = 0; c < chunks; c++) {
			map_verify_chunk(&w, c);
		}
	}
	k = atomic_load(&w.bad);
	if (k == n) {
		return 0;
	}
	return vd_set_error(EIO, "%s: block %llu (offset %llu): bad checksum", l->path,
			    (unsigned long long)(vb + k), (unsigned long long)((vb + k) << st->bshift));
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
