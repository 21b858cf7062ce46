// SPDX-License-Identifier: MIT
/*
 * The native driver (.vdk): header, map tree, allocator, I/O, commit.
 * The byte format is specified in format/FORMAT.md.
 *
 * Design notes.
 *
 * Map. A radix tree of nodes of `ne` 32-byte entries; leaves map virtual
 * blocks. Nodes live in a cache keyed by (level, index). A node changed since
 * the last commit is dirty and pinned (never evicted); clean nodes are kept in
 * an LRU list and evicted past cache_limit. Parent entries of dirty nodes are
 * stale until the commit, which writes dirty nodes level by level, bottom-up,
 * each to a newly allocated place, and fixes the parent entries as it goes.
 *
 * Never overwriting committed bytes. Every write of a block goes to a freshly
 * allocated place. The block it replaces is freed in one of two ways: if it
 * was allocated after the last commit ("fresh"), nothing on disk refers to it
 * and it goes to limbo at once; otherwise the committed tree still refers to
 * it and it waits in `pending` until the next commit succeeds, then goes to
 * limbo. Limbo blocks are not reused until no reader can still be reading
 * them: readers hold `reuse` for reading from the map look-up until their
 * pread is done, and recycling limbo takes `reuse` for writing.
 *
 * Free space is not stored on disk: opening for writing walks the committed
 * tree and marks what it references; the rest of the file is free. Blocks
 * written after the last commit before a crash thus become free again.
 *
 * THREAD MODEL: VD_THREAD_INTERNAL. `lock` protects the tree, the cache and
 * the allocator and is never held across data I/O, except during a commit.
 * Partial-block writes read-modify-write under a stripe lock per group of
 * blocks, so that two writes into different parts of one block cannot lose
 * each other's bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include <sodium.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
/* Debian's libxxhash picks SSE2, AVX2 or AVX-512 at run time through these entry points. */
#include <xxh_x86dispatch.h>
#endif

#include "chain.h"
#include "util.h"
#include "vdk.h"

/* Fuzzing builds accept bad checksums, so that the fuzzer reaches the structures behind them. */
#ifdef VD_FUZZING
#define VDK_FUZZING 1
#else
#define VDK_FUZZING 0
#endif

#define VDK_BATCH 256			/* blocks handled per lock acquisition */
#define VDK_STRIPE_SHIFT 4		/* 16 blocks per stripe group */
#define VDK_CACHE_TOP (64ull << 20)
#define VDK_CACHE_FROZEN (16ull << 20)
#define VDK_AUTOCOMMIT_DIRTY (64ull << 20)	/* dirty node bytes */
#define VDK_CTR_RESERVE (1ull << 20)
#define VDK_TRIM (1ull << 63)		/* in pending/limbo: a discarded block, punch when free */

struct vdk_node {
	uint32_t level;
	uint64_t index;
	uint64_t phys;			/* where this version is on disk, 0 if never written */
	bool dirty;
	struct vdk_node *hnext;
	struct vdk_node *prev, *next;	/* LRU (clean) */
	struct vdk_node *dnext;		/* dirty list */
	uint8_t *data;
};

static int vdk_alloc_init_locked(struct vd_layer *l);

/* ---- entries and header --------------------------------------------------- */

void
vdk_entry_decode(const uint8_t *p, struct vdk_entry *e)
{
	e->ptr = vd_le64(p);
	e->ctr = vd_le64(p + 8);
	memcpy(e->sum, p + 16, 16);
}

static void
vdk_entry_encode(uint8_t *p, const struct vdk_entry *e)
{
	vd_put_le64(p, e->ptr);
	vd_put_le64(p + 8, e->ctr);
	memcpy(p + 16, e->sum, 16);
}

static void
vdk_hash128(const void *buf, size_t len, uint64_t seed, uint8_t out[16])
{
	XXH128_hash_t h = XXH3_128bits_withSeed(buf, len, seed);

	vd_put_le64(out, h.low64);
	vd_put_le64(out + 8, h.high64);
}

static uint64_t
vdk_node_seed(uint32_t level, uint64_t index)
{
	return ((uint64_t)level << 56) ^ index;
}

static void
vdk_node_sum(struct vdk_state *st, uint32_t level, uint64_t index, const uint8_t *buf,
	     uint8_t out[16])
{
	if (st->crypt) {
		vdk_crypt_mac(st->crypt, vdk_node_seed(level, index), buf, st->node_size, out);
	} else {
		vdk_hash128(buf, st->node_size, vdk_node_seed(level, index), out);
	}
}

void
vdk_header_encode(const struct vdk_header *h, uint8_t *buf, struct vdk_crypt *crypt)
{
	size_t n;

	memset(buf, 0, VDK_HDR_SIZE);
	memcpy(buf + VDK_H_MAGIC, VDK_MAGIC, 8);
	vd_put_le32(buf + VDK_H_VERSION, VDK_VERSION);
	vd_put_le32(buf + VDK_H_HDRSIZE, VDK_HDR_SIZE);
	vd_put_le64(buf + VDK_H_INCOMPAT, h->incompat);
	vd_put_le64(buf + VDK_H_COMPAT, h->compat);
	vd_put_le64(buf + VDK_H_AUTOCLEAR, h->autoclear);
	memcpy(buf + VDK_H_UUID, h->uuid, 16);
	vd_put_le64(buf + VDK_H_GEN, h->gen);
	vd_put_le64(buf + VDK_H_SIZE, h->size);
	vd_put_le32(buf + VDK_H_BLOCK, h->block_size);
	vd_put_le32(buf + VDK_H_NODE_ENTRIES, h->node_entries);
	vd_put_le32(buf + VDK_H_LEVELS, h->levels);
	vd_put_le32(buf + VDK_H_FLAGS, h->flags);
	vdk_entry_encode(buf + VDK_H_ROOT, &h->root);
	vd_put_le64(buf + VDK_H_FILE_END, h->file_end);
	vd_put_le64(buf + VDK_H_CTR, h->ctr_next);
	vd_put_le64(buf + VDK_H_CREATED, (uint64_t)h->created);
	vd_put_le64(buf + VDK_H_BACKING_CREATED, (uint64_t)h->backing_created);
	n = strlen(h->backing);
	vd_put_le16(buf + VDK_H_BACKING_LEN, (uint16_t)n);
	memcpy(buf + VDK_H_BACKING, h->backing, n);
	n = strlen(h->backing_fmt);
	vd_put_le16(buf + VDK_H_BFMT_LEN, (uint16_t)n);
	memcpy(buf + VDK_H_BFMT, h->backing_fmt, n);
	n = strlen(h->backing_name);
	vd_put_le16(buf + VDK_H_BNAME_LEN, (uint16_t)n);
	memcpy(buf + VDK_H_BNAME, h->backing_name, n);
	memcpy(buf + VDK_H_CRYPT, h->crypt_area, VDK_CRYPT_AREA_SIZE);
	vd_put_le64(buf + VDK_H_ALLOCATED, h->allocated_blocks);
	memcpy(buf + VDK_H_BACKING_UUID, h->backing_uuid, 16);
	if (crypt) {
		vdk_crypt_mac(crypt, 0x4844520000000000ull, buf, VDK_H_MAC, buf + VDK_H_MAC);
	}
	vdk_hash128(buf, VDK_H_CSUM, 0, buf + VDK_H_CSUM);
}

/* Decode and validate one header slot; 0, or -EINVAL with a reason in *why. */
static int
vdk_header_decode(const uint8_t *buf, struct vdk_header *h, const char **why)
{
	uint8_t sum[16];
	unsigned bl, fl, nl;

	if (memcmp(buf + VDK_H_MAGIC, VDK_MAGIC, 8) != 0) {
		*why = "not a vdk image (bad magic)";
		return -EINVAL;
	}
	vdk_hash128(buf, VDK_H_CSUM, 0, sum);
	if (memcmp(sum, buf + VDK_H_CSUM, 16) != 0 && !VDK_FUZZING) {
		*why = "bad header checksum";
		return -EINVAL;
	}
	if (vd_le32(buf + VDK_H_VERSION) != VDK_VERSION ||
	    vd_le32(buf + VDK_H_HDRSIZE) != VDK_HDR_SIZE) {
		*why = "unsupported version";
		return -ENOTSUP;
	}
	memset(h, 0, sizeof(*h));
	h->incompat = vd_le64(buf + VDK_H_INCOMPAT);
	h->compat = vd_le64(buf + VDK_H_COMPAT);
	h->autoclear = vd_le64(buf + VDK_H_AUTOCLEAR);
	memcpy(h->uuid, buf + VDK_H_UUID, 16);
	h->gen = vd_le64(buf + VDK_H_GEN);
	h->size = vd_le64(buf + VDK_H_SIZE);
	h->block_size = vd_le32(buf + VDK_H_BLOCK);
	h->node_entries = vd_le32(buf + VDK_H_NODE_ENTRIES);
	h->levels = vd_le32(buf + VDK_H_LEVELS);
	h->flags = vd_le32(buf + VDK_H_FLAGS);
	vdk_entry_decode(buf + VDK_H_ROOT, &h->root);
	h->file_end = vd_le64(buf + VDK_H_FILE_END);
	h->ctr_next = vd_le64(buf + VDK_H_CTR);
	h->created = (int64_t)vd_le64(buf + VDK_H_CREATED);
	h->backing_created = (int64_t)vd_le64(buf + VDK_H_BACKING_CREATED);
	h->allocated_blocks = vd_le64(buf + VDK_H_ALLOCATED);
	memcpy(h->backing_uuid, buf + VDK_H_BACKING_UUID, 16);
	bl = vd_le16(buf + VDK_H_BACKING_LEN);
	fl = vd_le16(buf + VDK_H_BFMT_LEN);
	nl = vd_le16(buf + VDK_H_BNAME_LEN);
	if (bl > VDK_BACKING_MAX || fl > VDK_BFMT_MAX || nl > VDK_BNAME_MAX) {
		*why = "bad backing reference length";
		return -EINVAL;
	}
	memcpy(h->backing, buf + VDK_H_BACKING, bl);
	memcpy(h->backing_fmt, buf + VDK_H_BFMT, fl);
	memcpy(h->backing_name, buf + VDK_H_BNAME, nl);
	if (memchr(h->backing, '\0', bl) || memchr(h->backing_fmt, '\0', fl) ||
	    memchr(h->backing_name, '\0', nl)) {
		*why = "bad backing reference";
		return -EINVAL;
	}
	memcpy(h->crypt_area, buf + VDK_H_CRYPT, VDK_CRYPT_AREA_SIZE);
	return 0;
}

/* Check that the geometry in a header is sane and self-consistent. */
static int
vdk_header_validate(const struct vdk_header *h, const char **why)
{
	uint64_t nblocks, cap = 1;

	if (!VD_IS_POW2(h->block_size) || h->block_size < VD_MIN_BLOCK_SIZE ||
	    h->block_size > VD_MAX_BLOCK_SIZE) {
		*why = "bad block size";
		return -EINVAL;
	}
	if (h->size == 0 || h->size > VD_MAX_SIZE || h->size % 512) {
		*why = "bad virtual size";
		return -EINVAL;
	}
	if (!VD_IS_POW2(h->node_entries) ||
	    h->node_entries != VD_MAX((uint32_t)VDK_MIN_NODE_ENTRIES, h->block_size / 32)) {
		*why = "bad node size";
		return -EINVAL;
	}
	if (h->levels < 1 || h->levels > VDK_MAX_LEVELS) {
		*why = "bad tree depth";
		return -EINVAL;
	}
	nblocks = VD_DIV_ROUND_UP(h->size, h->block_size);
	for (uint32_t i = 0; i < h->levels; i++) {
		cap *= h->node_entries;
	}
	if (cap < nblocks || (h->levels > 1 && cap / h->node_entries >= nblocks)) {
		*why = "tree depth does not match the size";
		return -EINVAL;
	}
	if (h->incompat & ~VDK_INCOMPAT_KNOWN) {
		*why = "unsupported feature (incompatible feature bits set)";
		return -ENOTSUP;
	}
	if ((h->root.ptr & VDK_PTR_FLAGS) & ~VDK_PTR_PRESENT) {
		*why = "bad root entry";
		return -EINVAL;
	}
	return 0;
}

int
vdk_header_read(int fd, const char *path, struct vdk_header *h)
{
	uint8_t buf[VDK_HDR_SIZE];
	struct vdk_header cand;
	const char *why = "no valid header", *why0 = NULL;
	int best = -1, r, err = -EINVAL;
	uint64_t gens[VDK_HDR_SLOTS] = { 0 };
	bool valid[VDK_HDR_SLOTS] = { false }, damaged[VDK_HDR_SLOTS] = { false };

	for (int s = 0; s < VDK_HDR_SLOTS; s++) {
		r = vd_pread_zerofill(fd, buf, sizeof(buf), (uint64_t)s * VDK_HDR_SIZE);
		if (r < 0) {
			return vd_set_error(r, "%s: cannot read header: %s", path, strerror(-r));
		}
		r = vdk_header_decode(buf, &cand, &why);
		if (r == 0) {
			r = vdk_header_validate(&cand, &why);
		}
		if (r < 0) {
			if (!why0) {
				why0 = why;
				err = r;
			}
			/* A copy that was written once (magic present) but does not verify. */
			damaged[s] = memcmp(buf, VDK_MAGIC, 8) == 0;
			continue;
		}
		if (best < 0 || cand.gen > h->gen) {
			*h = cand;
			h->slot = s;
			best = s;
		}
		gens[s] = cand.gen;
		valid[s] = true;
	}
	h->slots_ok = 0;
	for (int s = 0; s < VDK_HDR_SLOTS; s++) {
		h->slots_ok += valid[s] && gens[s] == h->gen;
		h->slot_damaged[s] = damaged[s];
	}
	if (best < 0) {
		return vd_set_error(err == -ENOTSUP ? ENOTSUP : EINVAL, "%s: %s", path,
				    why0 ? why0 : "no valid header");
	}
	return 0;
}

/*
 * The commit point. Order: fdatasync (everything written before — tree nodes,
 * data, and the previous commit's second copy — is durable), copy 0, fdatasync,
 * copy 1. Copy 1 is made durable by the next commit's first fdatasync (or at
 * close), so a crash while copy 0 is being written always finds copy 1 whole
 * with the previous commit: two syncs per commit, never a moment with no valid
 * header.
 */
int
vdk_header_write(int fd, const char *path, struct vdk_header *h, struct vdk_crypt *crypt)
{
	uint8_t buf[VDK_HDR_SIZE];
	int r;

	h->gen++;
	vdk_header_encode(h, buf, crypt);
	r = vd_fdatasync(fd);
	if (r == 0) {
		r = vd_full_pwrite(fd, buf, sizeof(buf), 0);
	}
	if (r == 0) {
		r = vd_fdatasync(fd);
	}
	if (r == 0) {
		r = vd_full_pwrite(fd, buf, sizeof(buf), VDK_HDR_SIZE);
	}
	if (r < 0) {
		h->gen--;
		return vd_set_error(r, "%s: cannot write header: %s", path, strerror(-r));
	}
	h->slot = 0;
	h->slots_ok = VDK_HDR_SLOTS;
	return 0;
}

static uint32_t
vdk_levels_for(uint64_t nblocks, uint32_t ne)
{
	uint32_t levels = 1;
	uint64_t cap = ne;

	while (cap < nblocks) {
		cap *= ne;
		levels++;
	}
	return levels;
}

static uint64_t
vdk_data_start(uint32_t bs)
{
	return VD_ALIGN_UP((uint64_t)VDK_HDR_SIZE * VDK_HDR_SLOTS, (uint64_t)bs);
}

int
vdk_create_file(const char *path, uint64_t size, uint32_t block_size, const char *backing,
		const char *backing_fmt, const char *backing_name, int64_t backing_created,
		const uint8_t *backing_uuid, const uint8_t *crypt_area, const uint8_t *uuid,
		struct vdk_crypt *crypt, uint64_t ctr_start)
{
	struct vdk_header h;
	uint8_t buf[VDK_HDR_SIZE];
	int fd, r;

	memset(&h, 0, sizeof(h));
	if (uuid) {
		memcpy(h.uuid, uuid, 16);
	} else {
		randombytes_buf(h.uuid, 16);
	}
	h.size = size;
	h.block_size = block_size;
	h.node_entries = VD_MAX((uint32_t)VDK_MIN_NODE_ENTRIES, block_size / 32);
	h.levels = vdk_levels_for(VD_DIV_ROUND_UP(size, block_size), h.node_entries);
	h.created = vd_now();
	h.file_end = vdk_data_start(block_size);
	if (backing) {
		if (strlen(backing) > VDK_BACKING_MAX || strlen(backing_fmt) > VDK_BFMT_MAX ||
		    (backing_name && strlen(backing_name) > VDK_BNAME_MAX)) {
			return vd_set_error(ENAMETOOLONG, "%s: backing reference too long", path);
		}
		strcpy(h.backing, backing);
		strcpy(h.backing_fmt, backing_fmt);
		if (backing_name) {
			strcpy(h.backing_name, backing_name);
		}
		h.backing_created = backing_created;
		if (backing_uuid) {
			memcpy(h.backing_uuid, backing_uuid, 16);
		}
	}
	if (crypt_area) {
		memcpy(h.crypt_area, crypt_area, VDK_CRYPT_AREA_SIZE);
		h.incompat |= VDK_INCOMPAT_ENCRYPTED;
		h.ctr_next = ctr_start + VDK_CTR_RESERVE;
	}
	h.gen = 1;
	vdk_header_encode(&h, buf, crypt);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		return vd_set_error(errno, "%s: %s", path, strerror(errno));
	}
	r = vd_full_pwrite(fd, buf, sizeof(buf), 0);
	if (r == 0) {
		r = vd_full_pwrite(fd, buf, sizeof(buf), VDK_HDR_SIZE);
	}
	if (r == 0 && ftruncate(fd, (off_t)h.file_end) < 0) {
		r = -errno;
	}
	if (r == 0) {
		r = vd_fdatasync(fd);
	}
	close(fd);
	if (r < 0) {
		unlink(path);
		return vd_set_error(r, "%s: %s", path, strerror(-r));
	}
	return 0;
}

/* ---- node cache ------------------------------------------------------------ */

static uint32_t
vdk_hash_key(uint32_t level, uint64_t index, uint32_t size)
{
	uint64_t k = (index << 3) ^ level;

	k *= 0x9E3779B97F4A7C15ull;
	return (uint32_t)(k >> 32) & (size - 1);
}

static struct vdk_node *
vdk_cache_find(struct vdk_state *st, uint32_t level, uint64_t index)
{
	struct vdk_node *n = st->hash[vdk_hash_key(level, index, st->hash_size)];

	for (; n; n = n->hnext) {
		if (n->level == level && n->index == index) {
			return n;
		}
	}
	return NULL;
}

static void
vdk_lru_unlink(struct vdk_state *st, struct vdk_node *n)
{
	if (n->prev) {
		n->prev->next = n->next;
	} else if (st->lru_head == n) {
		st->lru_head = n->next;
	}
	if (n->next) {
		n->next->prev = n->prev;
	} else if (st->lru_tail == n) {
		st->lru_tail = n->prev;
	}
	n->prev = n->next = NULL;
}

static void
vdk_lru_push(struct vdk_state *st, struct vdk_node *n)
{
	n->prev = NULL;
	n->next = st->lru_head;
	if (st->lru_head) {
		st->lru_head->prev = n;
	}
	st->lru_head = n;
	if (!st->lru_tail) {
		st->lru_tail = n;
	}
}

static void
vdk_cache_remove(struct vdk_state *st, struct vdk_node *n)
{
	struct vdk_node **pp = &st->hash[vdk_hash_key(n->level, n->index, st->hash_size)];

	while (*pp != n) {
		pp = &(*pp)->hnext;
	}
	*pp = n->hnext;
	vdk_lru_unlink(st, n);
	st->cached_bytes -= st->node_size;
	free(n->data);
	free(n);
}

static void
vdk_cache_evict(struct vdk_state *st)
{
	while (st->cached_bytes > st->cache_limit && st->lru_tail) {
		vdk_cache_remove(st, st->lru_tail);
	}
}

static struct vdk_node *
vdk_cache_insert(struct vdk_state *st, uint32_t level, uint64_t index)
{
	struct vdk_node *n = calloc(1, sizeof(*n));
	uint32_t h;

	if (!n) {
		return NULL;
	}
	n->data = malloc(st->node_size);
	if (!n->data) {
		free(n);
		return NULL;
	}
	n->level = level;
	n->index = index;
	h = vdk_hash_key(level, index, st->hash_size);
	n->hnext = st->hash[h];
	st->hash[h] = n;
	st->cached_bytes += st->node_size;
	vdk_lru_push(st, n);
	return n;
}

int
vdk_node_read(struct vd_layer *l, const struct vdk_entry *e, uint32_t level, uint64_t index,
	      uint8_t *buf)
{
	struct vdk_state *st = l->st;
	uint64_t off = e->ptr & ~VDK_PTR_FLAGS;
	uint8_t sum[16];
	int r;

	if (off < st->data_start || off % st->bs) {
		return vd_set_error(EIO, "%s: map node (level %u, #%llu) has a bad offset %llu",
				    l->path, level, (unsigned long long)index,
				    (unsigned long long)off);
	}
	r = vd_full_pread(l->fd, buf, st->node_size, off);
	if (r < 0) {
		return vd_set_error(EIO, "%s: cannot read map node at %llu: %s", l->path,
				    (unsigned long long)off, strerror(-r));
	}
	vdk_node_sum(st, level, index, buf, sum);
	if (sodium_memcmp(sum, e->sum, 16) != 0 && !VDK_FUZZING) {
		return vd_set_error(EIO, "%s: map node (level %u, #%llu) at offset %llu: bad checksum",
				    l->path, level, (unsigned long long)index,
				    (unsigned long long)off);
	}
	return 0;
}

static void
vdk_mark_dirty(struct vdk_state *st, struct vdk_node *n)
{
	if (!n->dirty) {
		n->dirty = true;
		vdk_lru_unlink(st, n);
		n->dnext = st->dirty_list;
		st->dirty_list = n;
		st->ndirty++;
	}
	st->dirty = true;
}

/*
 * The node (level, index), loaded through its parents. With create, a missing
 * node is made empty and dirty. Returns NULL with *err = 0 for "not present".
 */
static struct vdk_node *
vdk_get_node(struct vd_layer *l, uint32_t level, uint64_t index, bool create, int *err)
{
	struct vdk_state *st = l->st;
	struct vdk_node *n = vdk_cache_find(st, level, index);
	struct vdk_entry e;

	*err = 0;
	if (n) {
		if (!n->dirty && n != st->lru_head) {
			vdk_lru_unlink(st, n);
			vdk_lru_push(st, n);
		}
		return n;
	}
	if (level == st->levels - 1) {
		e = st->root;
	} else {
		struct vdk_node *p = vdk_get_node(l, level + 1, index >> st->nshift, create, err);

		if (!p) {
			return NULL;
		}
		vdk_entry_decode(p->data + (index & (st->ne - 1)) * VDK_ENTRY_SIZE, &e);
	}
	if (!(e.ptr & VDK_PTR_PRESENT) && !create) {
		return NULL;
	}
	n = vdk_cache_insert(st, level, index);
	if (!n) {
		*err = vd_set_error(ENOMEM, "out of memory");
		return NULL;
	}
	if (e.ptr & VDK_PTR_PRESENT) {
		*err = vdk_node_read(l, &e, level, index, n->data);
		if (*err < 0) {
			vdk_cache_remove(st, n);
			return NULL;
		}
		n->phys = e.ptr & ~VDK_PTR_FLAGS;
	} else {
		memset(n->data, 0, st->node_size);
		vdk_mark_dirty(st, n);
	}
	vdk_cache_evict(st);
	return n;
}

int
vdk_lookup_locked(struct vd_layer *l, uint64_t vb, struct vdk_entry *e)
{
	struct vdk_state *st = l->st;
	struct vdk_node *n;
	int err;

	n = vdk_get_node(l, 0, vb >> st->nshift, false, &err);
	if (!n) {
		memset(e, 0, sizeof(*e));
		return err;
	}
	vdk_entry_decode(n->data + (vb & (st->ne - 1)) * VDK_ENTRY_SIZE, e);
	return 0;
}

/* ---- allocator ------------------------------------------------------------- */

static bool
bit_get(const uint8_t *bm, uint64_t i)
{
	return bm[i >> 3] & (1u << (i & 7));
}

static void
bit_set(uint8_t *bm, uint64_t i)
{
	bm[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static void
bit_clear(uint8_t *bm, uint64_t i)
{
	bm[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

static int
vdk_bitmap_grow(struct vdk_state *st, uint64_t blocks)
{
	uint64_t nb = st->nbits ? st->nbits : 4096;
	uint8_t *u, *f;

	if (blocks <= st->nbits) {
		return 0;
	}
	while (nb < blocks) {
		nb *= 2;
	}
	u = realloc(st->used, nb / 8);
	if (!u) {
		return -ENOMEM;
	}
	st->used = u;
	f = realloc(st->fresh, nb / 8);
	if (!f) {
		return -ENOMEM;
	}
	st->fresh = f;
	memset(st->used + st->nbits / 8, 0, (nb - st->nbits) / 8);
	memset(st->fresh + st->nbits / 8, 0, (nb - st->nbits) / 8);
	st->nbits = nb;
	return 0;
}

static int
vec_push(uint64_t **v, uint64_t *n, uint64_t *cap, uint64_t x)
{
	if (*n == *cap) {
		uint64_t nc = *cap ? *cap * 2 : 1024;
		uint64_t *nv = realloc(*v, nc * sizeof(**v));

		if (!nv) {
			return -ENOMEM;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = x;
	return 0;
}

/* Mark [b, b+n) used while walking the tree at open. -EIO if already used (cross-link). */
static int
vdk_mark_used(struct vdk_state *st, uint64_t b, uint64_t n)
{
	if (b + n > st->walk_limit) {
		return -EEXIST;	/* outside the file: as bad as a cross-link */
	}
	if (vdk_bitmap_grow(st, b + n) < 0) {
		return -ENOMEM;
	}
	for (uint64_t i = b; i < b + n; i++) {
		if (bit_get(st->used, i)) {
			return -EEXIST;
		}
		bit_set(st->used, i);
	}
	if (b + n > st->file_blocks) {
		st->file_blocks = b + n;
	}
	return 0;
}

/*
 * Allocate up to want contiguous blocks (at least 1; exactly want if exact):
 * next-fit over the free blocks inside the file, else at the end of the file.
 * Returns the first block in *first and the count in *got.
 */
static int
vdk_alloc(struct vdk_state *st, uint64_t want, uint64_t *first, uint64_t *got, bool exact)
{
	uint64_t start = st->data_start >> st->bshift, i = 0, n = 0, scanned = 0;

	if (!st->alloc_ready) {
		return vd_set_error(EIO, "internal error: allocator not ready");
	}
	uint64_t span = st->file_blocks - start;
	bool found = false;

	if (st->cursor < start || st->cursor >= st->file_blocks) {
		st->cursor = start;
	}
	for (i = st->cursor; st->free_count > 0 && scanned < span;) {
		if ((i & 7) == 0 && i + 8 <= st->file_blocks && st->used[i >> 3] == 0xff) {
			i += 8;
			scanned += 8;
		} else if (bit_get(st->used, i)) {
			i++;
			scanned++;
		} else {
			for (n = 1; n < want && i + n < st->file_blocks && !bit_get(st->used, i + n);
			     n++) {
			}
			if (n == want || (!exact && i + n < st->file_blocks) ||
			    i + n == st->file_blocks) {
				found = true;
				break;
			}
			i += n;
			scanned += n;
		}
		if (i >= st->file_blocks) {
			i = start;
		}
	}
	if (!found) {
		i = st->file_blocks;
		n = 0;
	}
	if (i + n == st->file_blocks && n < want) {
		/* The run reaches the end of the file: extend it there. */
		uint64_t grow = want - n;

		if (vdk_bitmap_grow(st, st->file_blocks + grow) < 0) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		st->file_blocks += grow;
		st->free_count += grow;
		n = want;
	}
	for (uint64_t k = i; k < i + n; k++) {
		bit_set(st->used, k);
		bit_set(st->fresh, k);
	}
	if (vec_push(&st->freshv, &st->nfreshv, &st->cfreshv, (i << 20) | n) < 0) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	st->free_count -= n;
	st->cursor = i + n;
	*first = i;
	*got = n;
	return 0;
}

/*
 * A block (or node run) is no longer referenced by the in-memory tree. trim:
 * its data was discarded (not replaced): once free, its space goes back to the
 * host file system (a hole is punched) instead of waiting for reuse.
 */
static int
vdk_release(struct vdk_state *st, uint64_t b, uint64_t n, bool trim)
{
	for (uint64_t k = b; k < b + n; k++) {
		uint64_t x = k | (trim ? VDK_TRIM : 0);
		int r;

		if (bit_get(st->fresh, k)) {
			bit_clear(st->fresh, k);
			r = vec_push(&st->limbo, &st->nlimbo, &st->climbo, x);
		} else {
			r = vec_push(&st->pending, &st->npending, &st->cpending, x);
		}
		if (r < 0) {
			return vd_set_error(ENOMEM, "out of memory");
		}
	}
	return 0;
}

static void
vdk_free_block_locked(struct vdk_state *st, uint64_t b)
{
	if (bit_get(st->used, b)) {
		bit_clear(st->used, b);
		st->free_count++;
	}
	if (b < st->cursor) {
		st->cursor = b;
	}
}

static int
vdk_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Punch runs of `each` blocks starting at v[0..n) (sorted here) out of the host file. */
static void
vdk_punch_list(struct vd_layer *l, uint64_t *v, uint64_t n, uint64_t each)
{
	struct vdk_state *st = l->st;

	if (n == 0) {
		return;
	}
	qsort(v, n, sizeof(*v), vdk_cmp_u64);
	vdk_map_punched(l);	/* before the holes exist: stores there must fault in first */
	for (uint64_t i = 0, j; i < n && !st->no_punch; i = j) {
		int r;

		for (j = i + 1; j < n && v[j] == v[j - 1] + each; j++) {
		}
		r = vd_punch_hole(l->fd, v[i] << st->bshift, (j - i) * each << st->bshift);
		if (r == -EOPNOTSUPP || r == -ENOSYS) {
			st->no_punch = true;	/* the host cannot: the blocks are reused instead */
		}
	}
}

/*
 * Make limbo blocks allocatable once no reader can be using them: taking
 * `reuse` for writing waits for every reader that may have looked them up.
 * Discarded blocks are punched out of the host file first (outside the locks:
 * they stay marked used, so nothing can be allocated there meanwhile), so
 * that a discard in the image gives the host its space back. Takes the locks
 * itself.
 */
static void
vdk_reclaim(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	uint64_t *trim = NULL, nt = 0;

	pthread_rwlock_wrlock(&st->reuse);
	pthread_mutex_lock(&st->lock);
	for (uint64_t i = 0; i < st->nlimbo; i++) {
		if ((st->limbo[i] & VDK_TRIM) && !st->no_punch) {
			if (!trim) {
				trim = malloc(st->nlimbo * sizeof(*trim));
			}
			if (trim) {
				trim[nt++] = st->limbo[i] & ~VDK_TRIM;
				continue;
			}
		}
		vdk_free_block_locked(st, st->limbo[i] & ~VDK_TRIM);
	}
	st->nlimbo = 0;
	pthread_mutex_unlock(&st->lock);
	pthread_rwlock_unlock(&st->reuse);
	if (!nt) {
		free(trim);
		return;
	}
	vdk_punch_list(l, trim, nt, 1);
	pthread_mutex_lock(&st->lock);
	for (uint64_t i = 0; i < nt; i++) {
		vdk_free_block_locked(st, trim[i]);
	}
	pthread_mutex_unlock(&st->lock);
	free(trim);
}

static void
vdk_maybe_reclaim(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	uint64_t n;

	bool go;

	pthread_mutex_lock(&st->lock);
	n = st->nlimbo;
	go = n >= 1024 || (n > 0 && n * 16 >= st->file_blocks);
	pthread_mutex_unlock(&st->lock);
	if (go) {
		vdk_reclaim(l);
	}
}

/* Give back blocks vdk_alloc handed out that nothing refers to. Caller holds st->lock. */
static void
vdk_unalloc_locked(struct vdk_state *st, uint64_t first, uint64_t n)
{
	for (uint64_t k = first; k < first + n; k++) {
		bit_clear(st->fresh, k);
		bit_clear(st->used, k);
	}
	st->free_count += n;
	st->cursor = VD_MIN(st->cursor, first);
}

/* ---- room for a commit on a full host -------------------------------------- */

/* Node runs a commit writes at most when `dirty` nodes are dirty: theirs and their parents'. */
static uint64_t
vdk_commit_need(const struct vdk_state *st, uint64_t dirty)
{
	uint64_t need = dirty, nodes = VD_DIV_ROUND_UP(st->nblocks, st->ne);

	for (uint32_t lv = 1; lv < st->levels; lv++) {
		nodes = VD_DIV_ROUND_UP(nodes, st->ne);
		need += VD_MIN(dirty, nodes);
	}
	return need;
}

/* Grow the reserve to `want` node runs, allocated on the host. Caller holds st->lock. */
static int
vdk_resv_fill_locked(struct vd_layer *l, uint64_t want)
{
	struct vdk_state *st = l->st;

	while (st->nresv < want && !st->no_resv) {
		uint64_t first, got, runs, nbl = st->node_blocks;
		int r = vdk_alloc(st, (want - st->nresv) * nbl, &first, &got, false);

		if (r < 0) {
			return r;
		}
		runs = got / nbl;
		if (runs == 0) {
			vdk_unalloc_locked(st, first, got);
			r = vdk_alloc(st, nbl, &first, &got, true);
			if (r < 0) {
				return r;
			}
			runs = 1;
		}
		vdk_unalloc_locked(st, first + runs * nbl, got - runs * nbl);
		if (fallocate(l->fd, 0, (off_t)(first << st->bshift),
			      (off_t)((runs * nbl) << st->bshift)) < 0) {
			int e = errno;

			vdk_unalloc_locked(st, first, runs * nbl);
			if (e == EOPNOTSUPP || e == ENOSYS) {
				st->no_resv = true;	/* the host cannot reserve: best effort */
				return 0;
			}
			return vd_set_error(e, "%s: no room on the host for the image's map: %s",
					    l->path, strerror(e));
		}
		for (uint64_t k = 0; k < runs; k++) {
			for (uint64_t b = first + k * nbl; b < first + (k + 1) * nbl; b++) {
				bit_clear(st->fresh, b);	/* not written: nothing to commit */
			}
			if (vec_push(&st->resv, &st->nresv, &st->cresv, first + k * nbl) < 0) {
				vdk_unalloc_locked(st, first + k * nbl, (runs - k) * nbl);
				return vd_set_error(ENOMEM, "out of memory");
			}
		}
	}
	return 0;
}

/*
 * Before a change of blocks [vb, vb+nb): claim the leaves it may dirty, and
 * make sure the reserve holds room for a commit of all the map that may be
 * dirty then. ENOSPC (nothing changed) if the host has no room for it. Pair
 * with vdk_unclaim once the change is in the map.
 */
static int
vdk_claim(struct vd_layer *l, uint64_t vb, uint64_t nb, uint64_t *claim)
{
	struct vdk_state *st = l->st;
	uint64_t c = ((vb + VD_MAX(nb, 1) - 1) >> st->nshift) - (vb >> st->nshift) + 1;
	int r;

	*claim = 0;
	pthread_mutex_lock(&st->lock);
	r = vdk_alloc_init_locked(l);
	if (r == 0 && !st->no_resv) {
		uint64_t want = vdk_commit_need(st, st->ndirty + st->claimed + c);

		if (st->nresv < want) {
			/* A little more than needed, so that this is rare; exactly, when short. */
			r = vdk_resv_fill_locked(l, want + VD_MAX(want / 4, 16));
			if (r < 0 && st->nresv < want) {
				r = vdk_resv_fill_locked(l, want);
			} else {
				r = 0;
			}
		}
	}
	if (r == 0) {
		st->claimed += c;
		*claim = c;
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

static void
vdk_unclaim(struct vdk_state *st, uint64_t claim)
{
	pthread_mutex_lock(&st->lock);
	st->claimed -= claim;
	pthread_mutex_unlock(&st->lock);
}

/*
 * After a commit the map is clean: what the reserve holds beyond the needs of
 * the changes in progress goes back to free space, where the next writes reuse
 * it (it is allocated on the host), instead of staying a gap in the file.
 */
static void
vdk_resv_trim_locked(struct vdk_state *st)
{
	uint64_t keep = vdk_commit_need(st, st->ndirty + st->claimed) + 16;

	while (st->nresv > keep) {
		vdk_unalloc_locked(st, st->resv[--st->nresv], st->node_blocks);
	}
}

/* A commit takes a reserved run for a node: it is fresh like any new block. */
static int
vdk_take_resv_locked(struct vdk_state *st, uint64_t *first)
{
	uint64_t b = st->resv[st->nresv - 1];

	if (vec_push(&st->freshv, &st->nfreshv, &st->cfreshv, (b << 20) | st->node_blocks) < 0) {
		return -ENOMEM;
	}
	st->nresv--;
	for (uint64_t k = b; k < b + st->node_blocks; k++) {
		bit_set(st->fresh, k);
	}
	*first = b;
	return 0;
}

/* ---- commit ---------------------------------------------------------------- */

static int
vdk_reserve_ctr_locked(struct vd_layer *l, uint64_t need)
{
	struct vdk_state *st = l->st;

	if (st->ctr_next + need < st->hdr.ctr_next) {
		return 0;
	}
	if (st->broken) {
		return vd_set_error(EIO, "%s: a failed resize left the map inconsistent in memory",
				    l->path);
	}
	/* Commit a bigger reservation with the committed tree (root unchanged). */
	st->hdr.ctr_next = st->ctr_next + need + VDK_CTR_RESERVE;
	return vdk_header_write(l->fd, l->path, &st->hdr, st->crypt);
}

/*
 * Commit with st->lock held. unlock_syncs: the caller also holds st->gate for
 * writing (no writer can change the tree), so lock is let go during the syncs
 * of the header write and readers are not held up by them.
 */
static int
vdk_commit(struct vd_layer *l, bool unlock_syncs)
{
	struct vdk_state *st = l->st;
	struct vdk_header h;
	struct vdk_node *n, *next;
	uint8_t sum[16];
	int r;

	/* One commit at a time (vd_check may commit while a flush syncs). */
	while (st->committing) {
		pthread_cond_wait(&st->commit_done, &st->lock);
	}
	if (st->broken) {
		return vd_set_error(EIO, "%s: a failed resize left the map inconsistent in memory; "
				    "nothing more is committed (reopen the image)", l->path);
	}
	if (!st->dirty) {
		return 0;
	}
	r = vdk_alloc_init_locked(l);
	if (r < 0) {
		return r;
	}
	/* Write dirty nodes bottom-up; each write may dirty its parent (added to the list). */
	for (uint32_t level = 0; level < st->levels; level++) {
		for (n = st->dirty_list; n; n = n->dnext) {
			uint64_t first, got;
			struct vdk_entry e;

			if (n->level != level) {
				continue;
			}
			r = vdk_alloc(st, st->node_blocks, &first, &got, true);
			if (r < 0) {
				return r;
			}
			vdk_node_sum(st, level, n->index, n->data, sum);
			r = vd_full_pwrite(l->fd, n->data, st->node_size, first << st->bshift);
			if ((r == -ENOSPC || r == -EDQUOT) && st->nresv > 0) {
				/* The host is full: write the node into the reserve. */
				vdk_unalloc_locked(st, first, got);
				r = vdk_take_resv_locked(st, &first);
				if (r < 0) {
					return vd_set_error(-r, "out of memory");
				}
				got = st->node_blocks;
				r = vd_full_pwrite(l->fd, n->data, st->node_size, first << st->bshift);
			}
			if (r < 0) {
				vdk_unalloc_locked(st, first, got);
				return vd_set_error(r, "%s: cannot write map: %s", l->path,
						    strerror(-r));
			}
			if (n->phys) {
				vdk_release(st, n->phys >> st->bshift, st->node_blocks, false);
			}
			n->phys = first << st->bshift;
			e.ptr = n->phys | VDK_PTR_PRESENT;
			e.ctr = 0;
			memcpy(e.sum, sum, 16);
			if (level == st->levels - 1) {
				st->root = e;
			} else {
				struct vdk_node *p = vdk_get_node(l, level + 1, n->index >> st->nshift,
								  true, &r);

				if (!p) {
					return r;
				}
				vdk_entry_encode(p->data + (n->index & (st->ne - 1)) * VDK_ENTRY_SIZE,
						 &e);
				vdk_mark_dirty(st, p);
			}
		}
	}
	/* vdk_header_write syncs the nodes and data first. */
	h = st->hdr;
	h.root = st->root;
	h.size = l->size;	/* a resize changes them in memory first (vdk_resize) */
	h.levels = st->levels;
	h.file_end = st->file_blocks << st->bshift;
	h.allocated_blocks = st->allocated_blocks;
	if (st->crypt && h.ctr_next < st->ctr_next + VDK_CTR_RESERVE / 2) {
		h.ctr_next = st->ctr_next + VDK_CTR_RESERVE;
	}
	if (unlock_syncs) {
		/* Readers may load nodes meanwhile; the dirty ones stay as written. */
		st->committing = true;
		pthread_mutex_unlock(&st->lock);
		r = vdk_header_write(l->fd, l->path, &h, st->crypt);
		pthread_mutex_lock(&st->lock);
		st->committing = false;
		pthread_cond_broadcast(&st->commit_done);
	} else {
		r = vdk_header_write(l->fd, l->path, &h, st->crypt);
	}
	if (r < 0) {
		return r;
	}
	st->hdr = h;
	/* Committed: the nodes are clean, pending blocks may be recycled, nothing is fresh. */
	for (n = st->dirty_list; n; n = next) {
		next = n->dnext;
		n->dirty = false;
		n->dnext = NULL;
		vdk_lru_push(st, n);
	}
	st->dirty_list = NULL;
	st->ndirty = 0;
	st->dirty = false;
	for (uint64_t i = 0; i < st->npending; i++) {
		if (vec_push(&st->limbo, &st->nlimbo, &st->climbo, st->pending[i]) < 0) {
			break;	/* leaked until the next open: harmless */
		}
	}
	st->npending = 0;
	for (uint64_t i = 0; i < st->nfreshv; i++) {
		uint64_t b = st->freshv[i] >> 20, n = st->freshv[i] & ((1u << 20) - 1);

		for (uint64_t k = b; k < b + n; k++) {
			bit_clear(st->fresh, k);
		}
	}
	st->nfreshv = 0;
	vdk_resv_trim_locked(st);
	vdk_cache_evict(st);
	return 0;
}

int
vdk_commit_locked(struct vd_layer *l)
{
	return vdk_commit(l, false);
}

/* Commit without holding readers up during the syncs. Takes gate and lock itself. */
static int
vdk_commit_gated(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	int r;

	pthread_rwlock_wrlock(&st->gate);
	pthread_mutex_lock(&st->lock);
	r = vdk_commit(l, true);
	pthread_mutex_unlock(&st->lock);
	pthread_rwlock_unlock(&st->gate);
	return r;
}

/* ---- data path ------------------------------------------------------------- */

static void
vdk_data_sum(const void *buf, size_t len, uint64_t vb, uint8_t out[16])
{
	vdk_hash128(buf, len, vb, out);
}

bool
vdk_data_sum_ok(const void *buf, size_t len, uint64_t vb, const uint8_t sum[16])
{
	uint8_t mine[16];

	vdk_data_sum(buf, len, vb, mine);
	return memcmp(mine, sum, 16) == 0 || VDK_FUZZING;
}

int
vdk_verify_block(struct vd_layer *l, uint64_t vb, const struct vdk_entry *e, uint8_t *buf)
{
	struct vdk_state *st = l->st;
	uint8_t sum[16];

	if (st->crypt) {
		if (vdk_crypt_open(st->crypt, vb, e->ctr, buf, buf, st->bs, e->sum) < 0) {
			return vd_set_error(EIO,
					    "%s: block %llu (offset %llu): authentication failed "
					    "(corrupt or tampered)",
					    l->path, (unsigned long long)vb,
					    (unsigned long long)(vb << st->bshift));
		}
		return 0;
	}
	vdk_data_sum(buf, st->bs, vb, sum);
	if (memcmp(sum, e->sum, 16) != 0 && !VDK_FUZZING) {
		return vd_set_error(EIO, "%s: block %llu (offset %llu): bad checksum", l->path,
				    (unsigned long long)vb, (unsigned long long)(vb << st->bshift));
	}
	return 0;
}

/*
 * The AEAD of a run of blocks: spread over the library's worker threads in
 * chunks of VDK_PAR_CHUNK blocks when the run is long enough to pay for it.
 * A 1 MiB request of 4 KiB blocks is 16 chunks.
 */
#define VDK_PAR_CHUNK 16
#define VDK_PAR_MIN 32

struct vdk_par {
	struct vd_layer *l;
	uint64_t vb;			/* virtual block of blocks[0] */
	struct vdk_entry *ents;
	const uint8_t *in;
	uint8_t *out;
	uint64_t n;
	atomic_uint_fast64_t bad;	/* lowest failing index, or n */
};

static void
vdk_par_open(void *arg, size_t c)
{
	struct vdk_par *w = arg;
	struct vdk_state *st = w->l->st;
	uint64_t k0 = (uint64_t)c * VDK_PAR_CHUNK, k1 = VD_MIN(w->n, k0 + VDK_PAR_CHUNK);

	for (uint64_t k = k0; k < k1; k++) {
		uint8_t *b = w->out + (k << st->bshift);

		if (vdk_crypt_open(st->crypt, w->vb + k, w->ents[k].ctr, b, b, st->bs,
				   w->ents[k].sum) < 0) {
			uint_fast64_t cur = atomic_load(&w->bad);

			while (k < cur && !atomic_compare_exchange_weak(&w->bad, &cur, k)) {
			}
		}
	}
}

static void
vdk_par_seal(void *arg, size_t c)
{
	struct vdk_par *w = arg;
	struct vdk_state *st = w->l->st;
	uint64_t k0 = (uint64_t)c * VDK_PAR_CHUNK, k1 = VD_MIN(w->n, k0 + VDK_PAR_CHUNK);

	for (uint64_t k = k0; k < k1; k++) {
		vdk_crypt_seal(st->crypt, w->vb + k, w->ents[k].ctr, w->in + (k << st->bshift),
			       w->out + (k << st->bshift), st->bs, w->ents[k].sum);
	}
}

/* Verify (or decrypt in place) n whole blocks at buf, the first one virtual block vb. */
static int
vdk_verify_run(struct vd_layer *l, uint64_t vb, struct vdk_entry *ents, uint8_t *buf, uint64_t n)
{
	struct vdk_state *st = l->st;
	int r = 0;

	if (st->crypt && n >= VDK_PAR_MIN) {
		struct vdk_par w = { .l = l, .vb = vb, .ents = ents, .out = buf, .n = n };

		atomic_init(&w.bad, n);
		vd_pool_run((size_t)((n + VDK_PAR_CHUNK - 1) / VDK_PAR_CHUNK), vdk_par_open, &w);
		if (atomic_load(&w.bad) < n) {
			/* Again here, for the message (a worker's message is its own thread's). */
			uint64_t k = atomic_load(&w.bad);

			return vd_set_error(EIO,
					    "%s: block %llu (offset %llu): authentication failed "
					    "(corrupt or tampered)",
					    l->path, (unsigned long long)(vb + k),
					    (unsigned long long)((vb + k) << st->bshift));
		}
		return 0;
	}
	for (uint64_t k = 0; k < n && r == 0; k++) {
		r = vdk_verify_block(l, vb + k, &ents[k], buf + (k << st->bshift));
	}
	return r;
}

static int
vdk_read_phys(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	int r = vd_full_pread(l->fd, buf, len, off);

	if (r < 0) {
		return vd_set_error(EIO, "%s: read at %llu: %s", l->path, (unsigned long long)off,
				    strerror(-r));
	}
	return 0;
}

static int
vdk_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	struct vdk_state *st = l->st;
	struct vdk_entry ents[VDK_BATCH];
	uint8_t *bounce = NULL, *p = buf;
	uint64_t vb = off >> st->bshift;
	uint32_t head = (uint32_t)(off & (st->bs - 1));
	int r = 0;

	while (len > 0) {
		uint64_t nb = VD_MIN((uint64_t)VDK_BATCH, (head + len + st->bs - 1) >> st->bshift);
		uint64_t i, j;

		pthread_rwlock_rdlock(&st->reuse);
		pthread_mutex_lock(&st->lock);
		for (i = 0; i < nb && r == 0; i++) {
			r = vdk_lookup_locked(l, vb + i, &ents[i]);
		}
		pthread_mutex_unlock(&st->lock);
		for (i = 0; i < nb && r == 0; i = j) {
			uint64_t boff = i == 0 ? head : 0;
			size_t want = (size_t)VD_MIN((uint64_t)len, st->bs - boff);
			bool whole = boff == 0 && want == st->bs;

			j = i + 1;

			if (!(ents[i].ptr & VDK_PTR_PRESENT)) {
				memset(p, 0, want);
				p += want;
				len -= want;
				continue;
			}
			if (whole) {
				/* A run of whole blocks contiguous on disk: one pread into buf. */
				while (j < nb && len >= (j - i + 1) * (uint64_t)st->bs &&
				       (ents[j].ptr & VDK_PTR_PRESENT) &&
				       (ents[j].ptr & ~VDK_PTR_FLAGS) ==
					       (ents[i].ptr & ~VDK_PTR_FLAGS) + ((j - i) << st->bshift)) {
					j++;
				}
				want = (size_t)((j - i) << st->bshift);
				r = vdk_read_phys(l, p, want, ents[i].ptr & ~VDK_PTR_FLAGS);
				if (r == 0) {
					r = vdk_verify_run(l, vb + i, &ents[i], p, j - i);
				}
			} else {
				if (!bounce) {
					bounce = malloc(st->bs);
					if (!bounce) {
						r = vd_set_error(ENOMEM, "out of memory");
						break;
					}
				}
				r = vdk_read_phys(l, bounce, st->bs, ents[i].ptr & ~VDK_PTR_FLAGS);
				if (r == 0) {
					r = vdk_verify_block(l, vb + i, &ents[i], bounce);
				}
				memcpy(p, bounce + boff, want);
			}
			if (r < 0) {
				memset(p, 0, want);	/* never hand out unverified bytes */
			}
			p += want;
			len -= want;
		}
		pthread_rwlock_unlock(&st->reuse);
		if (r < 0) {
			break;
		}
		vb += nb;
		head = 0;
	}
	free(bounce);
	return r;
}

/* The full current content of block vb as this layer (and those below) show it. */
static int
vdk_read_block_full(struct vd_layer *l, uint64_t vb, uint8_t *buf)
{
	struct vdk_state *st = l->st;
	struct vdk_entry e;
	uint64_t off = vb << st->bshift;
	size_t len = st->bs;
	int r;

	pthread_mutex_lock(&st->lock);
	r = vdk_lookup_locked(l, vb, &e);
	pthread_mutex_unlock(&st->lock);
	if (r < 0) {
		return r;
	}
	if (off + len > l->size) {
		memset(buf, 0, len);
		len = (size_t)(l->size - off);
	}
	if (e.ptr & VDK_PTR_PRESENT) {
		return vdk_pread(l, buf, len, off);
	}
	if (e.ptr & VDK_PTR_ZERO) {
		memset(buf, 0, len);
		return 0;
	}
	return vd_layer_read_below(l, buf, len, off);
}

static void
vdk_lock_stripes(struct vdk_state *st, uint64_t vb, uint64_t nb, bool lock)
{
	uint64_t g0 = vb >> VDK_STRIPE_SHIFT, g1 = (vb + nb - 1) >> VDK_STRIPE_SHIFT;
	size_t ns = VD_ARRAY_SIZE(st->stripes);

	if (g1 - g0 + 1 >= ns) {
		for (size_t s = 0; s < ns; s++) {
			lock ? pthread_mutex_lock(&st->stripes[s]) : pthread_mutex_unlock(&st->stripes[s]);
		}
		return;
	}
	/* Ascending stripe order whatever the wrap-around: two passes. */
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t g = g0; g <= g1; g++) {
			size_t s = g % ns;
			bool low = s < g0 % ns;

			if ((pass == 0) == low) {
				lock ? pthread_mutex_lock(&st->stripes[s])
				     : pthread_mutex_unlock(&st->stripes[s]);
			}
		}
	}
}

/* Point block vb at `ne` (new entry); release what it pointed at. Caller holds st->lock. */
static int
vdk_set_entry_locked(struct vd_layer *l, uint64_t vb, const struct vdk_entry *ne)
{
	struct vdk_state *st = l->st;
	struct vdk_node *n;
	struct vdk_entry old;
	uint8_t *p;
	int r;

	r = vdk_alloc_init_locked(l);
	if (r < 0) {
		return r;
	}
	/* Writing "unallocated" or "zero" where it already is changes nothing: no new nodes. */
	if (!(ne->ptr & VDK_PTR_PRESENT)) {
		n = vdk_get_node(l, 0, vb >> st->nshift, false, &r);
		if (!n && r < 0) {
			return r;
		}
		if (!n && ne->ptr == 0) {
			return 0;
		}
		if (n) {
			vdk_entry_decode(n->data + (vb & (st->ne - 1)) * VDK_ENTRY_SIZE, &old);
			if (old.ptr == ne->ptr) {
				return 0;
			}
		}
	}
	n = vdk_get_node(l, 0, vb >> st->nshift, true, &r);
	if (!n) {
		return r;
	}
	p = n->data + (vb & (st->ne - 1)) * VDK_ENTRY_SIZE;
	vdk_entry_decode(p, &old);
	vdk_entry_encode(p, ne);
	vdk_mark_dirty(st, n);
	if (old.ptr & VDK_PTR_PRESENT) {
		st->allocated_blocks--;
		r = vdk_release(st, (old.ptr & ~VDK_PTR_FLAGS) >> st->bshift, 1,
				!(ne->ptr & VDK_PTR_PRESENT));
		if (r < 0) {
			return r;
		}
	}
	if (ne->ptr & VDK_PTR_PRESENT) {
		st->allocated_blocks++;
	}
	return 0;
}

/* Write nb whole blocks from data (nb*bs bytes, may be modified when encrypting) at vb. */
static int
vdk_write_blocks(struct vd_layer *l, uint64_t vb, uint64_t nb, const uint8_t *data)
{
	struct vdk_state *st = l->st;
	struct vdk_entry ents[VDK_BATCH];
	uint8_t *enc = NULL;
	uint64_t i = 0;
	int r = 0;

	if (st->crypt) {
		enc = malloc(nb << st->bshift);
		if (!enc) {
			return vd_set_error(ENOMEM, "out of memory");
		}
	}
	while (i < nb && r == 0) {
		uint64_t j = i, first, got, ctr0 = 0;

		/* A run of blocks: all zero (no data), or all data. */
		bool zero = !st->crypt && vd_is_zero(data + (i << st->bshift), st->bs);

		while (j < nb && j - i < VDK_BATCH &&
		       (!st->crypt && vd_is_zero(data + (j << st->bshift), st->bs)) == zero) {
			j++;
		}
		if (zero) {
			pthread_mutex_lock(&st->lock);
			for (uint64_t k = i; k < j && r == 0; k++) {
				struct vdk_entry ze = { .ptr = st->has_backing ? VDK_PTR_ZERO : 0 };

				r = vdk_set_entry_locked(l, vb + k, &ze);
			}
			pthread_mutex_unlock(&st->lock);
			i = j;
			continue;
		}
		pthread_mutex_lock(&st->lock);
		r = vdk_alloc_init_locked(l);
		if (r == 0) {
			r = vdk_alloc(st, j - i, &first, &got, false);
		}
		if (r == 0 && st->crypt) {
			r = vdk_reserve_ctr_locked(l, got);
			ctr0 = st->ctr_next;
			st->ctr_next += got;
		}
		pthread_mutex_unlock(&st->lock);
		if (r < 0) {
			break;
		}
		const uint8_t *src = data + (i << st->bshift);

		for (uint64_t k = 0; k < got; k++) {
			struct vdk_entry *e = &ents[k];

			e->ptr = ((first + k) << st->bshift) | VDK_PTR_PRESENT;
			e->ctr = st->crypt ? ctr0 + k : 0;
		}
		if (st->crypt && got >= VDK_PAR_MIN) {
			struct vdk_par w = { .l = l, .vb = vb + i, .ents = ents, .in = src,
					     .out = enc, .n = got };

			vd_pool_run((size_t)((got + VDK_PAR_CHUNK - 1) / VDK_PAR_CHUNK), vdk_par_seal,
				    &w);
		} else {
			for (uint64_t k = 0; k < got; k++) {
				if (st->crypt) {
					vdk_crypt_seal(st->crypt, vb + i + k, ents[k].ctr,
						       src + (k << st->bshift),
						       enc + (k << st->bshift), st->bs, ents[k].sum);
				} else {
					vdk_data_sum(src + (k << st->bshift), st->bs, vb + i + k,
						     ents[k].sum);
				}
			}
		}
		if (r == 0) {
			r = vdk_write_phys(l, st->crypt ? enc : src, got << st->bshift,
					   first << st->bshift);
		}
		pthread_mutex_lock(&st->lock);
		if (r < 0) {
			/* Nothing refers to the new blocks: give them back at once. */
			vdk_unalloc_locked(st, first, got);
		}
		for (uint64_t k = 0; k < got && r == 0; k++) {
			r = vdk_set_entry_locked(l, vb + i + k, &ents[k]);
		}
		pthread_mutex_unlock(&st->lock);
		i += got;
	}
	free(enc);
	return r;
}

/* Called by a writer after it let go of gate. */
static int
vdk_maybe_autocommit(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	bool go;

	pthread_mutex_lock(&st->lock);
	/* Bound what a commit owes: dirty map, and space held back for the committed tree. */
	go = (uint64_t)st->ndirty * st->node_size > VDK_AUTOCOMMIT_DIRTY ||
	     st->npending > VD_MAX(4096u, st->file_blocks / 16);
	pthread_mutex_unlock(&st->lock);
	return go ? vdk_commit_gated(l) : 0;
}

/* The change of a write; the caller holds gate for reading. */
static int
vdk_pwrite_gated(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	struct vdk_state *st = l->st;
	const uint8_t *src = buf;
	uint8_t *tmp = NULL;
	uint64_t vb = off >> st->bshift;
	uint64_t vb_end = (off + len + st->bs - 1) >> st->bshift;
	int r = 0;

	vdk_maybe_reclaim(l);
	vdk_lock_stripes(st, vb, vb_end - vb, true);
	while (len > 0 && r == 0) {
		uint32_t head = (uint32_t)(off & (st->bs - 1));

		if (head || len < st->bs) {
			/* Partial block: read, merge, write the whole block. */
			size_t n = (size_t)VD_MIN((uint64_t)len, (uint64_t)st->bs - head);

			if (!tmp) {
				tmp = malloc(st->bs);
				if (!tmp) {
					r = vd_set_error(ENOMEM, "out of memory");
					break;
				}
			}
			r = vdk_read_block_full(l, off >> st->bshift, tmp);
			if (r == 0) {
				memcpy(tmp + head, src, n);
				r = vdk_write_blocks(l, off >> st->bshift, 1, tmp);
			}
			src += n;
			off += n;
			len -= n;
		} else {
			uint64_t nb = VD_MIN((uint64_t)len >> st->bshift, (uint64_t)VDK_BATCH * 16);

			r = vdk_write_blocks(l, off >> st->bshift, nb, src);
			src += nb << st->bshift;
			off += nb << st->bshift;
			len -= (size_t)(nb << st->bshift);
		}
	}
	vdk_lock_stripes(st, vb, vb_end - vb, false);
	free(tmp);
	return r;
}

/*
 * The host file system is full: blocks freed since the last commit (a discard,
 * overwritten data) become usable once a commit no longer refers to them, and
 * discarded ones go back to the host. Commit (the reserve has room for its map
 * nodes) and recycle, so that the change can be tried once more. true if there
 * was anything to win.
 */
static bool
vdk_make_room(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	bool some;

	pthread_mutex_lock(&st->lock);
	some = st->npending > 0 || st->nlimbo > 0;
	pthread_mutex_unlock(&st->lock);
	if (!some) {
		return false;
	}
	vdk_reclaim(l);
	if (vdk_commit_gated(l) < 0) {
		return false;
	}
	vdk_reclaim(l);
	return true;
}

static bool
vdk_is_full(int r)
{
	return r == -ENOSPC || r == -EDQUOT;
}

static int
vdk_pwrite_once(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	struct vdk_state *st = l->st;
	uint64_t claim;
	int r;

	pthread_rwlock_rdlock(&st->gate);
	r = vdk_claim(l, off >> st->bshift,
		      ((off + len - 1) >> st->bshift) - (off >> st->bshift) + 1, &claim);
	if (r == 0) {
		r = vdk_pwrite_gated(l, buf, len, off);
		vdk_unclaim(st, claim);
	}
	pthread_rwlock_unlock(&st->gate);
	return r;
}

static int
vdk_pwrite(struct vd_layer *l, const void *buf, size_t len, uint64_t off)
{
	int r;

	if (len == 0) {
		return 0;
	}
	r = vdk_pwrite_once(l, buf, len, off);
	if (vdk_is_full(r) && vdk_make_room(l)) {
		r = vdk_pwrite_once(l, buf, len, off);
	}
	if (r == 0) {
		r = vdk_maybe_autocommit(l);
	}
	return r;
}

/* Mark nb whole blocks from vb zero (or unallocated); their blocks are discarded. */
static int
vdk_zero_blocks(struct vd_layer *l, uint64_t vb, uint64_t nb)
{
	struct vdk_state *st = l->st;
	struct vdk_entry ze = { .ptr = st->has_backing ? VDK_PTR_ZERO : 0 };
	uint64_t claim;
	int r;

	pthread_rwlock_rdlock(&st->gate);
	r = vdk_claim(l, vb, nb, &claim);
	if (r == 0) {
		vdk_lock_stripes(st, vb, nb, true);
		pthread_mutex_lock(&st->lock);
		for (uint64_t k = 0; k < nb && r == 0; k++) {
			r = vdk_set_entry_locked(l, vb + k, &ze);
		}
		pthread_mutex_unlock(&st->lock);
		vdk_lock_stripes(st, vb, nb, false);
		vdk_unclaim(st, claim);
	}
	pthread_rwlock_unlock(&st->gate);
	return r;
}

/*
 * The host is too full for the map changes of a large discard: go one leaf at
 * a time, and when even that finds no room, commit, so that the blocks
 * discarded so far go back to the host, and try again. Only a host with no
 * room at all for one leaf and its parents stops it.
 */
static int
vdk_zero_full_host(struct vd_layer *l, uint64_t vb, uint64_t nb)
{
	struct vdk_state *st = l->st;
	int r = 0;

	for (uint64_t k = 0, step; k < nb && r == 0; k += step) {
		step = VD_MIN((uint64_t)st->ne - ((vb + k) & (st->ne - 1)), nb - k);
		r = vdk_zero_blocks(l, vb + k, step);
		if (vdk_is_full(r) && vdk_make_room(l)) {
			r = vdk_zero_blocks(l, vb + k, step);
		}
	}
	return r;
}

/*
 * Zero (discard) [off, off+len), in pieces: each takes gate and claims room
 * for its map changes by itself, and the map is committed between pieces
 * when it has grown large, so that a discard of a whole disk neither keeps
 * flushes out for long nor piles up an unbounded dirty map.
 */
static int
vdk_zero(struct vd_layer *l, uint64_t off, uint64_t len)
{
	struct vdk_state *st = l->st;
	uint8_t *zeroes;
	int r = 0;

	zeroes = calloc(1, st->bs);
	if (!zeroes) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	while (len > 0 && r == 0) {
		uint32_t head = (uint32_t)(off & (st->bs - 1));
		uint64_t n;

		if (head || len < st->bs) {
			n = VD_MIN(len, (uint64_t)st->bs - head);
			r = vdk_pwrite(l, zeroes, (size_t)n, off);
		} else {
			n = VD_MIN(len >> st->bshift, (uint64_t)VDK_BATCH * 64) << st->bshift;
			r = vdk_zero_blocks(l, off >> st->bshift, n >> st->bshift);
			if (vdk_is_full(r)) {
				r = vdk_zero_full_host(l, off >> st->bshift, n >> st->bshift);
			}
			if (r == 0) {
				r = vdk_maybe_autocommit(l);
			}
		}
		off += n;
		len -= n;
	}
	free(zeroes);
	return r;
}

static int
vdk_flush(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	bool freed;
	int r;

	if (!st->writable) {
		return 0;
	}
	r = vdk_commit_gated(l);
	pthread_mutex_lock(&st->lock);
	freed = st->nlimbo > 0;
	pthread_mutex_unlock(&st->lock);
	if (r == 0 && freed) {
		vdk_reclaim(l);	/* what was discarded goes back to the host now */
	}
	return r;
}

static int
vdk_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct vdk_state *st = l->st;
	uint64_t vb = off >> st->bshift, vb_end = (off + len + st->bs - 1) >> st->bshift;
	int type = -1, r = 0;

	pthread_mutex_lock(&st->lock);
	while (vb < vb_end && vb - (off >> st->bshift) < (1ull << 24)) {
		uint64_t leaf_end = ((vb >> st->nshift) + 1) << st->nshift;
		struct vdk_node *n = vdk_get_node(l, 0, vb >> st->nshift, false, &r);

		if (!n) {
			if (r < 0 || (type >= 0 && type != VD_EXTENT_HOLE)) {
				break;
			}
			type = VD_EXTENT_HOLE;	/* a missing leaf: the whole leaf is a hole */
			vb = leaf_end;
			continue;
		}
		for (; vb < vb_end && vb < leaf_end; vb++) {
			uint64_t ptr = vd_le64(n->data + (vb & (st->ne - 1)) * VDK_ENTRY_SIZE);
			int t = (ptr & VDK_PTR_PRESENT) ? VD_EXTENT_DATA
				: (ptr & VDK_PTR_ZERO)  ? VD_EXTENT_ZERO
							: VD_EXTENT_HOLE;

			if (type >= 0 && t != type) {
				goto done;
			}
			type = t;
		}
	}
done:
	pthread_mutex_unlock(&st->lock);
	if (r < 0) {
		return r;
	}
	ext->offset = off;
	ext->length = VD_MIN(vb << st->bshift, off + len) - off;
	ext->type = (enum vd_extent_type)type;
	ext->layer = 0;
	return 0;
}

static uint64_t
vdk_allocated(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	uint64_t n;

	pthread_mutex_lock(&st->lock);
	n = (st->writable ? st->allocated_blocks : st->hdr.allocated_blocks) << st->bshift;
	pthread_mutex_unlock(&st->lock);
	return n;
}

/* ---- open / close ----------------------------------------------------------- */

static int
vdk_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)file_size;
	(void)filename;
	if (len >= 8 && memcmp(buf, VDK_MAGIC, 8) == 0) {
		return 100;
	}
	/* Slot 0 may be torn while slot 1 is good. */
	if (len >= VDK_HDR_SIZE + 8 && memcmp(buf + VDK_HDR_SIZE, VDK_MAGIC, 8) == 0) {
		return 100;
	}
	return 0;
}

static void
vdk_count_free(struct vdk_state *st)
{
	st->free_count = 0;
	for (uint64_t b = st->data_start >> st->bshift; b < st->file_blocks; b++) {
		st->free_count += !bit_get(st->used, b);
	}
}

/* Walk the committed tree, marking every node and data block used. */
static int
vdk_walk_mark(struct vd_layer *l, const struct vdk_entry *e, uint32_t level, uint64_t index,
	      uint8_t *bufs)
{
	struct vdk_state *st = l->st;
	uint8_t *buf = bufs + (size_t)level * st->node_size;
	int r;

	r = vdk_node_read(l, e, level, index, buf);
	if (r < 0) {
		return r;
	}
	if (vdk_mark_used(st, (e->ptr & ~VDK_PTR_FLAGS) >> st->bshift, st->node_blocks) < 0) {
		return vd_set_error(EIO, "%s: map node (level %u, #%llu) overlaps other data "
				    "or lies outside the file",
				    l->path, level, (unsigned long long)index);
	}
	for (uint32_t i = 0; i < st->ne; i++) {
		struct vdk_entry c;
		uint64_t ci = (index << st->nshift) + i;

		vdk_entry_decode(buf + (size_t)i * VDK_ENTRY_SIZE, &c);
		if (!(c.ptr & VDK_PTR_PRESENT)) {
			continue;
		}
		if (level == 0) {
			uint64_t b = (c.ptr & ~VDK_PTR_FLAGS) >> st->bshift;

			if (ci >= st->nblocks || (c.ptr & ~VDK_PTR_FLAGS) < st->data_start ||
			    (c.ptr & ~VDK_PTR_FLAGS) % st->bs) {
				return vd_set_error(EIO, "%s: block %llu: bad map entry", l->path,
						    (unsigned long long)ci);
			}
			if (vdk_mark_used(st, b, 1) < 0) {
				return vd_set_error(EIO, "%s: block %llu shares space with other data "
						    "or lies outside the file",
						    l->path, (unsigned long long)ci);
			}
			st->allocated_blocks++;
		} else {
			r = vdk_walk_mark(l, &c, level - 1, ci, bufs);
			if (r < 0) {
				return r;
			}
			buf = bufs + (size_t)level * st->node_size;
		}
	}
	return 0;
}

/*
 * Build the allocator from the committed tree: every node and data block it
 * references is used, the rest of the file is free. Done lazily, at the first
 * change after opening for writing, so that opening a large image to read it,
 * snapshot it or flush it costs no walk. Caller holds st->lock.
 */
static int
vdk_alloc_init_locked(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	struct stat sb;
	uint8_t *bufs;
	int r = 0;

	if (st->alloc_ready) {
		return 0;
	}
	if (fstat(l->fd, &sb) < 0) {
		return vd_set_error(errno, "%s: %s", l->path, strerror(errno));
	}
	if (st->nbits) {
		memset(st->used, 0, st->nbits / 8);
		memset(st->fresh, 0, st->nbits / 8);
	}
	st->nlimbo = st->npending = st->nfreshv = st->nresv = 0;
	st->cursor = 0;
	st->allocated_blocks = 0;
	st->file_blocks = st->data_start >> st->bshift;
	if (vdk_bitmap_grow(st, st->file_blocks + 1) < 0) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	for (uint64_t b = 0; b < st->file_blocks; b++) {
		bit_set(st->used, b);
	}
	st->walk_limit = (uint64_t)sb.st_size >> st->bshift;
	if (st->root.ptr & VDK_PTR_PRESENT) {
		bufs = malloc((size_t)st->node_size * st->levels);
		if (!bufs) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		r = vdk_walk_mark(l, &st->root, st->levels - 1, 0, bufs);
		free(bufs);
		if (r < 0) {
			return r;
		}
	}
	/* Everything past the tree up to the end of the file is free space. */
	if (st->walk_limit > st->file_blocks) {
		if (vdk_bitmap_grow(st, st->walk_limit) < 0) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		st->file_blocks = st->walk_limit;
	}
	vdk_count_free(st);
	st->alloc_ready = true;
	return 0;
}

static int
vdk_unlock(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	char *pass;
	int r;

	if (!l->passphrase) {
		return vd_set_error(EACCES, "%s: image is encrypted: a passphrase is needed", l->path);
	}
	if (sodium_init() < 0) {
		return vd_set_error(EIO, "libsodium failed to initialise");
	}
	pass = sodium_malloc(1024);
	if (!pass) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	pass[0] = '\0';
	r = l->passphrase(l->passphrase_opaque, l->path, pass, 1024);
	if (r == 0) {
		r = vdk_crypt_unlock(st->hdr.crypt_area, st->hdr.uuid, pass, &st->crypt);
		if (r < 0) {
			vd_error_prefix("%s", l->path);
		}
	}
	sodium_free(pass);
	return r;
}

static int
vdk_open_layer(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	uint8_t buf[VDK_HDR_SIZE];
	int r;

	pthread_rwlockattr_t ra;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->reuse, &ra);
	pthread_rwlock_init(&st->gate, &ra);	/* a waiting flush is not starved by writers */
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->commit_done, NULL);
	for (size_t i = 0; i < VD_ARRAY_SIZE(st->stripes); i++) {
		pthread_mutex_init(&st->stripes[i], NULL);
	}
	r = vdk_header_read(l->fd, l->path, &st->hdr);
	if (r < 0) {
		return r;
	}
	st->bs = st->hdr.block_size;
	st->bshift = (uint32_t)__builtin_ctz(st->bs);
	st->ne = st->hdr.node_entries;
	st->nshift = (uint32_t)__builtin_ctz(st->ne);
	st->node_size = st->ne * VDK_ENTRY_SIZE;
	st->node_blocks = VD_MAX(1u, st->node_size / st->bs);
	st->levels = st->hdr.levels;
	st->nblocks = VD_DIV_ROUND_UP(st->hdr.size, st->bs);
	st->data_start = vdk_data_start(st->bs);
	st->root = st->hdr.root;
	st->writable = !l->readonly;
	st->has_backing = st->hdr.backing[0] != '\0';
	st->cache_limit = st->writable ? VDK_CACHE_TOP : VDK_CACHE_FROZEN;
	st->hash_size = 16384;
	st->hash = calloc(st->hash_size, sizeof(*st->hash));
	if (!st->hash) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	if (st->writable && st->hdr.slots_ok < VDK_HDR_SLOTS && !(st->hdr.incompat & VDK_INCOMPAT_ENCRYPTED)) {
		/* One copy is stale or damaged (a crash during a commit): rewrite both. */
		r = vdk_header_write(l->fd, l->path, &st->hdr, NULL);
		if (r < 0) {
			return r;
		}
	}
	if (st->writable && (st->hdr.flags & VDK_FLAG_CORRUPT)) {
		return vd_set_error(EIO, "%s: image is marked corrupt; open it read-only", l->path);
	}
	l->size = st->hdr.size;
	l->granularity = st->bs;
	l->created = st->hdr.created;
	memcpy(l->uuid, st->hdr.uuid, 16);
	if (st->has_backing) {
		l->backing = strdup(st->hdr.backing);
		l->backing_format = st->hdr.backing_fmt[0] ? strdup(st->hdr.backing_fmt) : NULL;
		if (st->hdr.backing_name[0]) {
			l->backing_name = strdup(st->hdr.backing_name);
		}
		l->backing_created = st->hdr.backing_created;
		memcpy(l->backing_uuid, st->hdr.backing_uuid, 16);
		if (!l->backing) {
			return vd_set_error(ENOMEM, "out of memory");
		}
	}
	if (st->hdr.incompat & VDK_INCOMPAT_ENCRYPTED) {
		l->encrypted = true;
		l->cipher = vdk_crypt_area_cipher(st->hdr.crypt_area);
		r = vdk_unlock(l);
		if (r < 0) {
			return r;
		}
		/* Now that the key is known, the header MAC must match. */
		vdk_header_encode(&st->hdr, buf, st->crypt);
		{
			uint8_t raw[VDK_HDR_SIZE];

			r = vd_full_pread(l->fd, raw, sizeof(raw), (uint64_t)st->hdr.slot * VDK_HDR_SIZE);
			if (r < 0 || sodium_memcmp(raw + VDK_H_MAC, buf + VDK_H_MAC, 16) != 0) {
				return vd_set_error(EIO, "%s: header authentication failed (tampered)",
						    l->path);
			}
		}
		st->ctr_next = st->hdr.ctr_next;
	}
	st->allocated_blocks = st->hdr.allocated_blocks;
	if (st->writable) {
		/* The allocator is built at the first change (vdk_alloc_init_locked). */
		if (st->crypt) {
			/* Counters up to the committed reservation may have been used: skip them. */
			st->ctr_next = st->hdr.ctr_next;
			st->hdr.ctr_next = st->ctr_next + VDK_CTR_RESERVE;
			r = vdk_header_write(l->fd, l->path, &st->hdr, st->crypt);
			if (r < 0) {
				return r;
			}
		}
	}
	vdk_map_open(l);
	return 0;
}

/*
 * At close, after the last commit: the reserve is free space in the file again
 * (the host gets it back), and free space at the end of the file is cut off.
 */
static void
vdk_close_space(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	uint64_t end = st->file_blocks, start = st->data_start >> st->bshift;
	struct stat sb;

	if (!st->alloc_ready || st->dirty || st->npending || st->nlimbo) {
		return;	/* the last commit failed: leave the file as it is */
	}
	for (uint64_t i = 0; i < st->nresv; i++) {
		vdk_unalloc_locked(st, st->resv[i], st->node_blocks);
	}
	while (end > start && !bit_get(st->used, end - 1)) {
		end--;
	}
	vdk_punch_list(l, st->resv, st->nresv, st->node_blocks);
	st->nresv = 0;
	if (fstat(l->fd, &sb) == 0 && (uint64_t)sb.st_size > end << st->bshift) {
		(void)!ftruncate(l->fd, (off_t)(end << st->bshift));
	}
}

static void
vdk_close(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	struct vdk_node *n, *next;

	vdk_map_close(l);	/* no data I/O from here on; the file may shrink */
	if (st->writable) {
		pthread_mutex_lock(&st->lock);
		vdk_commit_locked(l);
		pthread_mutex_unlock(&st->lock);
		if (st->nlimbo > 0) {
			vdk_reclaim(l);	/* punch what was discarded */
		}
		vdk_close_space(l);
		vd_fdatasync(l->fd);	/* the second header copy of the last commit */
	}
	if (st->hash) {
		for (uint32_t i = 0; i < st->hash_size; i++) {
			for (n = st->hash[i]; n; n = next) {
				next = n->hnext;
				free(n->data);
				free(n);
			}
		}
	}
	free(st->hash);
	free(st->used);
	free(st->fresh);
	free(st->pending);
	free(st->limbo);
	free(st->freshv);
	free(st->resv);
	vdk_crypt_destroy(st->crypt);
	pthread_mutex_destroy(&st->lock);
	pthread_rwlock_destroy(&st->reuse);
	pthread_rwlock_destroy(&st->gate);
	pthread_cond_destroy(&st->commit_done);
	for (size_t i = 0; i < VD_ARRAY_SIZE(st->stripes); i++) {
		pthread_mutex_destroy(&st->stripes[i]);
	}
}

/* The core calls no close hook after a failed open: free what was set up (and wipe the key). */
static int
vdk_open(struct vd_layer *l)
{
	int r = vdk_open_layer(l);

	if (r < 0) {
		struct vdk_state *st = l->st;

		st->dirty = false;
		vdk_close(l);
	}
	return r;
}

/* ---- resize ------------------------------------------------------------------ */

/*
 * Changing the virtual size (vd_resize). The caller (image.c) holds the chain
 * lock for writing, so no I/O of the image runs; this takes gate for writing
 * too, so that no commit of another path interleaves, and ends with one
 * commit: the header with the new size and tree depth is the commit point,
 * and a crash before it leaves the image as it was (what was written for the
 * new tree is free space).
 *
 * Growing. A deeper tree gets new root nodes above the old root (index 0 at
 * every level: the old root's entry, checksum and seed unchanged, becomes
 * entry 0 of the new one). The new range must read as zeroes even where a
 * layer below is larger and holds data there (the chain shows a layer only
 * below the sizes of the layers above it, so that data was hidden by the old
 * size): those blocks get ZERO entries, and the old last block, if partial and
 * held below, is copied up with zeroes past the old end, all in the same
 * commit. Blocks the top holds itself past the old end cannot exist (a shrink
 * drops them), and the tail of a partial last block the top holds is zero (a
 * write of the last block zero-fills past the size, and a shrink rewrites it).
 *
 * Shrinking. Every entry at or past the new end is dropped (data blocks and
 * whole subtrees; their space goes back to the host after the commit, as for
 * a discard), the tail of a partial new last block is rewritten as zeroes,
 * and a shallower tree keeps only node 0 of the new root level.
 */
#define VDK_RESIZE_HIDE_MAX (1ull << 22)	/* ZERO entries one grow may write */

/* Forget a cached node that the tree no longer holds (dirty or not). Caller holds lock. */
static void
vdk_node_forget(struct vdk_state *st, struct vdk_node *n)
{
	if (n->dirty) {
		struct vdk_node **pp = &st->dirty_list;

		while (*pp && *pp != n) {
			pp = &(*pp)->dnext;
		}
		if (*pp) {
			*pp = n->dnext;
			st->ndirty--;
		}
		n->dirty = false;
	}
	vdk_cache_remove(st, n);
}

/* Release a whole subtree (node `e` at level, index) and every block it maps. Caller holds lock. */
static int
vdk_drop_subtree(struct vd_layer *l, const struct vdk_entry *e, uint32_t level, uint64_t index)
{
	struct vdk_state *st = l->st;
	struct vdk_node *n = vdk_cache_find(st, level, index);
	uint8_t *buf = malloc(st->node_size);
	int r = 0;

	if (!buf) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	if (n) {
		memcpy(buf, n->data, st->node_size);
	} else {
		r = vdk_node_read(l, e, level, index, buf);
	}
	for (uint32_t i = 0; i < st->ne && r == 0; i++) {
		struct vdk_entry c;
		uint64_t ci = (index << st->nshift) + i;

		vdk_entry_decode(buf + (size_t)i * VDK_ENTRY_SIZE, &c);
		if (!(c.ptr & VDK_PTR_PRESENT)) {
			continue;
		}
		if (level == 0) {
			st->allocated_blocks--;
			r = vdk_release(st, (c.ptr & ~VDK_PTR_FLAGS) >> st->bshift, 1, true);
		} else {
			r = vdk_drop_subtree(l, &c, level - 1, ci);
		}
	}
	free(buf);
	if (r < 0) {
		return r;
	}
	n = vdk_cache_find(st, level, index);
	if (n) {
		vdk_node_forget(st, n);
	}
	return vdk_release(st, (e->ptr & ~VDK_PTR_FLAGS) >> st->bshift, st->node_blocks, true);
}

/* Drop what the subtree of node (level, index) maps at or past virtual block `from`. */
static int
vdk_cut_node(struct vd_layer *l, uint32_t level, uint64_t index, uint64_t from)
{
	struct vdk_state *st = l->st;
	uint64_t span = 1ull << (st->nshift * level);	/* blocks per entry */
	int r = 0;

	for (uint32_t i = 0; i < st->ne; i++) {
		uint64_t ci = (index << st->nshift) + i;
		struct vdk_node *n;
		struct vdk_entry c;
		uint8_t *p;

		if ((ci + 1) * span <= from) {
			continue;
		}
		n = vdk_get_node(l, level, index, false, &r);	/* again: recursion may evict it */
		if (!n) {
			return r;
		}
		p = n->data + (size_t)i * VDK_ENTRY_SIZE;
		vdk_entry_decode(p, &c);
		if (c.ptr == 0) {
			continue;
		}
		if (level == 0) {
			struct vdk_entry z = { 0 };

			r = vdk_set_entry_locked(l, ci, &z);
		} else if (!(c.ptr & VDK_PTR_PRESENT)) {
			memset(p, 0, VDK_ENTRY_SIZE);
			vdk_mark_dirty(st, n);
		} else if (ci * span >= from) {
			r = vdk_drop_subtree(l, &c, level - 1, ci);
			n = vdk_get_node(l, level, index, false, &r);
			if (!n) {
				return r < 0 ? r : vd_set_error(EIO, "%s: map node vanished", l->path);
			}
			memset(n->data + (size_t)i * VDK_ENTRY_SIZE, 0, VDK_ENTRY_SIZE);
			vdk_mark_dirty(st, n);
		} else {
			r = vdk_cut_node(l, level - 1, ci, from);
		}
		if (r < 0) {
			return r;
		}
	}
	return 0;
}

/* Shrink the tree to nlevels (after vdk_cut_node): keep node 0 of level nlevels-1. */
static int
vdk_lower_tree(struct vd_layer *l, uint32_t nlevels)
{
	struct vdk_state *st = l->st;
	struct vdk_entry root = { 0 };
	struct vdk_node *n;
	int r;

	if (!(st->root.ptr & VDK_PTR_PRESENT) && !vdk_cache_find(st, st->levels - 1, 0)) {
		st->levels = nlevels;
		return 0;
	}
	n = vdk_get_node(l, nlevels, 0, false, &r);
	if (!n && r < 0) {
		return r;
	}
	if (n) {
		vdk_entry_decode(n->data, &root);
	}
	for (uint32_t k = nlevels; k < st->levels; k++) {
		n = vdk_get_node(l, k, 0, false, &r);
		if (!n) {
			if (r < 0) {
				return r;
			}
			continue;
		}
		if (n->phys) {
			r = vdk_release(st, n->phys >> st->bshift, st->node_blocks, true);
			if (r < 0) {
				return r;
			}
		}
		vdk_node_forget(st, n);
	}
	st->levels = nlevels;
	st->root = root;	/* a dirty new root replaces it at the commit */
	return 0;
}

/* Make the tree nlevels deep: new nodes 0 above the old root. Caller holds lock. */
static int
vdk_raise_tree(struct vd_layer *l, uint32_t nlevels)
{
	struct vdk_state *st = l->st;
	bool any = (st->root.ptr & VDK_PTR_PRESENT) || vdk_cache_find(st, st->levels - 1, 0);

	for (uint32_t k = st->levels; k < nlevels && any; k++) {
		struct vdk_node *n = vdk_cache_insert(st, k, 0);

		if (!n) {
			return vd_set_error(ENOMEM, "out of memory");
		}
		memset(n->data, 0, st->node_size);
		if (k == st->levels && (st->root.ptr & VDK_PTR_PRESENT)) {
			vdk_entry_encode(n->data, &st->root);	/* a dirty old root refreshes it */
		}
		vdk_mark_dirty(st, n);
	}
	st->levels = nlevels;
	st->root = (struct vdk_entry){ 0 };
	return 0;
}

/* The layers below hold data in [off, off+len): count (and with set, ZERO) the blocks. */
static int
vdk_hide_below(struct vd_layer *l, uint64_t off, uint64_t len, uint64_t first_vb, bool set,
	       uint64_t *count)
{
	struct vdk_state *st = l->st;
	uint64_t pos = off, end = off + len;
	struct vdk_entry ze = { .ptr = VDK_PTR_ZERO };
	int r = 0;

	*count = 0;
	while (pos < end) {
		struct vd_extent e;

		r = vd_layer_status_below(l, pos, end - pos, &e);
		if (r < 0) {
			return r;
		}
		if (e.length == 0) {
			return vd_set_error(EIO, "%s: block status made no progress", l->path);
		}
		if (e.type == VD_EXTENT_DATA) {
			uint64_t vb = VD_MAX(pos >> st->bshift, first_vb);
			uint64_t vb_end = (pos + e.length + st->bs - 1) >> st->bshift;

			for (; vb < vb_end; vb++) {
				(*count)++;
				if (set) {
					r = vdk_set_entry_locked(l, vb, &ze);
					if (r < 0) {
						return r;
					}
				}
			}
		}
		pos += e.length;
	}
	return 0;
}

static int
vdk_resize(struct vd_layer *l, uint64_t size)
{
	struct vdk_state *st = l->st;
	uint64_t old = l->size, nnb = VD_DIV_ROUND_UP(size, st->bs), hide = 0;
	uint32_t nlevels = vdk_levels_for(nnb, st->ne);
	uint8_t *buf = NULL;
	int r;

	if (!st->writable) {
		return vd_set_error(EROFS, "%s: image is read-only", l->path);
	}
	if (size == old) {
		return 0;
	}
	buf = malloc(st->bs);
	if (!buf) {
		return vd_set_error(ENOMEM, "out of memory");
	}
	pthread_rwlock_wrlock(&st->gate);
	pthread_mutex_lock(&st->lock);
	r = vdk_commit(l, false);	/* start from a clean tree: a crash keeps the old image */
	if (r == 0) {
		r = vdk_alloc_init_locked(l);
	}
	pthread_mutex_unlock(&st->lock);
	if (r < 0) {
		goto out;
	}
	if (size > old) {
		/* What the layers below would show in the new range: hidden by ZERO entries. */
		if (st->has_backing) {
			r = vdk_hide_below(l, old, size - old, VD_DIV_ROUND_UP(old, st->bs), false,
					   &hide);
			if (r < 0) {
				goto out;
			}
			if (hide > VDK_RESIZE_HIDE_MAX) {
				r = vd_set_error(EFBIG, "%s: the layers below hold %llu blocks of data in "
						 "the new range, which the grown disk must hide; at most "
						 "%llu blocks in one resize (grow in steps)",
						 l->path, (unsigned long long)hide,
						 (unsigned long long)VDK_RESIZE_HIDE_MAX);
				goto out;
			}
		}
		if (old % st->bs && st->has_backing) {
			/* The old partial last block: held below past the old end? Copy it up. */
			uint64_t vb0 = old >> st->bshift, n0;
			struct vdk_entry e0;

			pthread_mutex_lock(&st->lock);
			r = vdk_lookup_locked(l, vb0, &e0);
			pthread_mutex_unlock(&st->lock);
			if (r == 0 && e0.ptr == 0) {
				r = vdk_hide_below(l, old,
						   VD_MIN(size, (vb0 + 1) << st->bshift) - old, 0,
						   false, &n0);
				if (r == 0 && n0 > 0) {
					r = vdk_read_block_full(l, vb0, buf);	/* zeroes past old */
					if (r == 0) {
						r = vdk_write_blocks(l, vb0, 1, buf);
					}
				}
			}
			if (r < 0) {
				goto out;
			}
		}
		pthread_mutex_lock(&st->lock);
		if (nlevels > st->levels) {
			r = vdk_raise_tree(l, nlevels);
		}
		st->nblocks = nnb;
		l->size = size;
		if (r == 0 && hide > 0) {
			r = vdk_hide_below(l, old, size - old, VD_DIV_ROUND_UP(old, st->bs), true,
					   &hide);
		}
	} else {
		uint64_t vbl = size >> st->bshift;
		struct vdk_entry el;

		pthread_mutex_lock(&st->lock);
		r = vdk_lookup_locked(l, vbl, &el);
		pthread_mutex_unlock(&st->lock);
		if (r == 0 && size % st->bs && (el.ptr & VDK_PTR_PRESENT)) {
			/* The new partial last block: zeroes past the new end (a grow shows them). */
			l->size = size;
			r = vdk_read_block_full(l, vbl, buf);
			l->size = old;
			if (r == 0) {
				r = vdk_write_blocks(l, vbl, 1, buf);
			}
		}
		if (r < 0) {
			goto out;
		}
		pthread_mutex_lock(&st->lock);
		if (st->root.ptr & VDK_PTR_PRESENT) {
			r = vdk_cut_node(l, st->levels - 1, 0, nnb);
		}
		if (r == 0 && nlevels < st->levels) {
			r = vdk_lower_tree(l, nlevels);
		}
		st->nblocks = nnb;
		l->size = size;
	}
	if (r == 0) {
		/*
		 * st->hdr stays the last committed header until the commit is done
		 * (vdk_reserve_ctr_locked may write it meanwhile); the commit takes
		 * the size and depth from l->size and st->levels. A failed commit:
		 * the new map is in memory only, and the next flush commits it.
		 */
		st->dirty = true;
		r = vdk_commit(l, false);
	} else {
		/* Half-changed in memory: never commit it (the file keeps the old size). */
		st->broken = true;
		vd_error_prefix("%s: resize failed, the image must be reopened", l->path);
	}
	pthread_mutex_unlock(&st->lock);
out:
	pthread_rwlock_unlock(&st->gate);
	free(buf);
	if (r == 0) {
		vdk_reclaim(l);	/* what a shrink dropped goes back to the host */
	}
	return r;
}

/* ---- helpers for snapshots and merging ---------------------------------------- */

int
vdk_set_backing(struct vd_layer *l, const char *backing, const char *fmt, const char *name,
		int64_t created, const uint8_t *uuid)
{
	struct vdk_state *st = l->st;
	struct vdk_header h;
	int r;

	if ((backing && strlen(backing) > VDK_BACKING_MAX) || (fmt && strlen(fmt) > VDK_BFMT_MAX) ||
	    (name && strlen(name) > VDK_BNAME_MAX)) {
		return vd_set_error(ENAMETOOLONG, "%s: backing reference too long", l->path);
	}
	pthread_mutex_lock(&st->lock);
	r = vdk_commit_locked(l);
	if (r == 0) {
		h = st->hdr;
		memset(h.backing, 0, sizeof(h.backing));
		memset(h.backing_fmt, 0, sizeof(h.backing_fmt));
		memset(h.backing_name, 0, sizeof(h.backing_name));
		if (backing) {
			strcpy(h.backing, backing);
			strcpy(h.backing_fmt, fmt ? fmt : "");
			strcpy(h.backing_name, name ? name : "");
		}
		h.backing_created = backing ? created : 0;
		memset(h.backing_uuid, 0, 16);
		if (backing && uuid) {
			memcpy(h.backing_uuid, uuid, 16);
		}
		r = vdk_header_write(l->fd, l->path, &h, st->crypt);
		if (r == 0) {
			st->hdr = h;
			st->has_backing = backing != NULL;
		}
	}
	pthread_mutex_unlock(&st->lock);
	if (r == 0) {
		free(l->backing);
		free(l->backing_format);
		free(l->backing_name);
		l->backing = backing ? strdup(backing) : NULL;
		l->backing_format = backing && fmt ? strdup(fmt) : NULL;
		l->backing_name = backing && name ? strdup(name) : NULL;
		l->backing_created = backing ? created : 0;
		memcpy(l->backing_uuid, h.backing_uuid, 16);
	}
	return r;
}

int
vdk_make_writable(struct vd_layer *l)
{
	struct vdk_state *st = l->st;
	int fd, r;

	if (st->writable) {
		return 0;
	}
	fd = open(l->path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		return vd_set_error(errno, "%s: cannot open for writing: %s", l->path, strerror(errno));
	}
	/*
	 * A mapping keeps the old open file, and with it its shared lock: let it
	 * go first (no reader is in flight: the caller holds the chain for writing).
	 */
	vdk_map_close(l);
	if (dup3(fd, l->fd, O_CLOEXEC) < 0) {
		r = -errno;
		close(fd);
		vdk_map_open(l);
		return vd_set_error(-r, "%s: %s", l->path, strerror(-r));
	}
	close(fd);
	r = vd_lock_fd(l->fd, l->path, true);
	if (r < 0) {
		return r;
	}
	pthread_mutex_lock(&st->lock);
	/* The allocator starts afresh from the committed tree (the layer may have been a top before). */
	st->alloc_ready = false;
	r = vdk_alloc_init_locked(l);
	if (r == 0) {
		st->writable = true;
		l->readonly = false;
		st->cache_limit = VDK_CACHE_TOP;
		if (st->crypt) {
			st->ctr_next = st->hdr.ctr_next;
			st->hdr.ctr_next = st->ctr_next + VDK_CTR_RESERVE;
			r = vdk_header_write(l->fd, l->path, &st->hdr, st->crypt);
		}
	}
	pthread_mutex_unlock(&st->lock);
	vdk_map_open(l);
	return r;
}

/* ---- creating ------------------------------------------------------------------ */

/* Passes the backing's passphrase through and keeps the first one (see vd_create). */
struct vdk_pass_capture {
	vd_passphrase_fn fn;
	void *opaque;
	char *buf; /* sodium_malloc'd, VDK_PASS_MAX bytes */
};

#define VDK_PASS_MAX 1024

static int
vdk_pass_capture(void *opaque, const char *path, char *buf, size_t size)
{
	struct vdk_pass_capture *pc = opaque;
	int r = pc->fn(pc->opaque, path, buf, size);

	if (r == 0 && pc->buf[0] == '\0' && size > 0) {
		buf[size - 1] = '\0';
		snprintf(pc->buf, VDK_PASS_MAX, "%s", buf);
	}
	return r;
}

int
vd_create(const char *path, const struct vd_create_opts *opts)
{
	uint64_t size = opts->size;
	uint32_t bs = opts->block_size ? opts->block_size : VD_DEFAULT_BLOCK_SIZE;
	char *rel = NULL, *fmt = NULL;
	uint8_t area[VDK_CRYPT_AREA_SIZE], uuid[16], buuid[16] = { 0 };
	struct vdk_crypt *crypt = NULL;
	struct vdk_pass_capture pc = { .fn = opts->backing_passphrase,
					.opaque = opts->backing_passphrase_opaque,
					.buf = NULL };
	const char *cipher = opts->cipher, *pass = opts->passphrase;
	int r;

	if (sodium_init() < 0) {
		return vd_set_error(EIO, "libsodium failed to initialise");
	}
	if (!VD_IS_POW2(bs) || bs < VD_MIN_BLOCK_SIZE || bs > VD_MAX_BLOCK_SIZE) {
		return vd_set_error(EINVAL, "%s: block size must be a power of two from 4K to 1M",
				    path);
	}
	if (opts->backing) {
		struct vd_open_opts bo = {
			.format = opts->backing_format,
			.passphrase = opts->backing_passphrase ? vdk_pass_capture : NULL,
			.passphrase_opaque = &pc,
		};
		struct vd_image *b;
		struct vd_layer_info bi;

		pc.buf = sodium_malloc(VDK_PASS_MAX);
		if (!pc.buf) {
			return vd_set_error(ENOMEM, "out of secure memory");
		}
		pc.buf[0] = '\0';
		b = vd_open(opts->backing, &bo);
		if (!b) {
			sodium_free(pc.buf);
			return -vd_get_errno();
		}
		/*
		 * Writes over an encrypted chain must not land in the clear: without a
		 * cipher of its own, the overlay is encrypted like the backing's top
		 * encrypted layer, under the passphrase that opened the backing.
		 */
		for (int i = 0; i < vd_layer_count(b) && !cipher; i++) {
			if (vd_layer_info(b, i, &bi) == 0 && bi.encrypted) {
				cipher = bi.cipher ? bi.cipher : "xchacha20poly1305";
				pass = pc.buf;
			}
		}
		vd_layer_info(b, 0, &bi);
		fmt = strdup(bi.format);
		if (strcmp(bi.format, "vdk") == 0) {
			memcpy(buuid, bi.uuid, 16);	/* checked when the chain opens */
		}
		if (size == 0) {
			size = vd_get_size(b);
		}
		vd_close(b);
		rel = vd_make_relative(path, opts->backing);
		if (!rel || !fmt) {
			r = vd_set_error(ENOMEM, "out of memory");
			goto out;
		}
	}
	if (size == 0) {
		r = vd_set_error(EINVAL, "%s: a size is needed (-s SIZE)", path);
		goto out;
	}
	size = VD_ALIGN_UP(size, 512ull);
	if (size > VD_MAX_SIZE) {
		r = vd_set_error(EFBIG, "%s: size too large (the maximum is 64 TiB)", path);
		goto out;
	}
	randombytes_buf(uuid, sizeof(uuid));
	if (cipher) {
		memset(area, 0, sizeof(area));
		r = vdk_crypt_create(cipher, pass ? pass : "", opts->pwhash_opslimit,
				     opts->pwhash_memlimit, uuid, area, &crypt);
		if (r < 0) {
			vd_error_prefix("%s", path);
			goto out;
		}
	}
	r = vdk_create_file(path, size, bs, rel, fmt, NULL, 0, rel ? buuid : NULL,
			    cipher ? area : NULL, uuid, crypt, 0);
out:
	vdk_crypt_destroy(crypt);
	sodium_memzero(area, sizeof(area));
	sodium_free(pc.buf);
	free(rel);
	free(fmt);
	return r;
}

const struct vd_driver vd_vdk_driver = {
	.name = "vdk",
	.instance_size = sizeof(struct vdk_state),
	.thread_model = VD_THREAD_INTERNAL,
	.probe = vdk_probe,
	.open = vdk_open,
	.close = vdk_close,
	.pread = vdk_pread,
	.pread_map = vdk_pread_map,
	.map_release = vdk_map_release,
	.pwrite = vdk_pwrite,
	.zero = vdk_zero,
	.flush = vdk_flush,
	.block_status = vdk_block_status,
	.allocated = vdk_allocated,
	.check = vdk_check,
	.resize = vdk_resize,
};
