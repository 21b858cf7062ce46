/* SPDX-License-Identifier: MIT */
/*
 * The native format (.vdk): on-disk structures (see format/FORMAT.md) and the
 * driver state shared by vdk.c, vdk-snapshot.c, vdk-check.c and vdk-keys.c.
 */
#ifndef FORMAT_VDK_H
#define FORMAT_VDK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <pthread.h>

#include "internal.h"
#include "vdk-crypt.h"

#define VDK_MAGIC "\x89VDK\r\n\x1a\n"
#define VDK_VERSION 1
#define VDK_HDR_SIZE 4096
#define VDK_HDR_SLOTS 2
#define VDK_ENTRY_SIZE 32
#define VDK_MIN_NODE_ENTRIES 128
#define VDK_MAX_LEVELS 6

#define VDK_INCOMPAT_ENCRYPTED (1ull << 0)
#define VDK_INCOMPAT_KNOWN VDK_INCOMPAT_ENCRYPTED
#define VDK_FLAG_CORRUPT (1u << 0)

#define VDK_PTR_PRESENT 1ull
#define VDK_PTR_ZERO 2ull
#define VDK_PTR_FLAGS 4095ull

/* Header field offsets. */
enum {
	VDK_H_MAGIC = 0,
	VDK_H_VERSION = 8,
	VDK_H_HDRSIZE = 12,
	VDK_H_INCOMPAT = 16,
	VDK_H_COMPAT = 24,
	VDK_H_AUTOCLEAR = 32,
	VDK_H_UUID = 40,
	VDK_H_GEN = 56,
	VDK_H_SIZE = 64,
	VDK_H_BLOCK = 72,
	VDK_H_NODE_ENTRIES = 76,
	VDK_H_LEVELS = 80,
	VDK_H_FLAGS = 84,
	VDK_H_ROOT = 88,
	VDK_H_FILE_END = 120,
	VDK_H_CTR = 128,
	VDK_H_CREATED = 136,
	VDK_H_BACKING_CREATED = 144,
	VDK_H_BACKING_LEN = 152,
	VDK_H_BFMT_LEN = 154,
	VDK_H_BNAME_LEN = 156,
	VDK_H_BACKING = 160,
	VDK_H_BFMT = 1184,
	VDK_H_BNAME = 1216,
	VDK_H_CRYPT = 1280,
	VDK_H_ALLOCATED = 2816,
	VDK_H_BACKING_UUID = 2824,
	VDK_H_MAC = 4064,
	VDK_H_CSUM = 4080,
};
_Static_assert(VDK_H_CRYPT + VDK_CRYPT_AREA_SIZE <= VDK_H_MAC, "crypt area fits the header");

#define VDK_BACKING_MAX 1023
#define VDK_BFMT_MAX 31
#define VDK_BNAME_MAX 64

/* A map entry in host order. */
struct vdk_entry {
	uint64_t ptr;
	uint64_t ctr;
	uint8_t sum[16];
};

/* The header in host order. */
struct vdk_header {
	uint64_t incompat, compat, autoclear;
	uint8_t uuid[16];
	uint64_t gen;
	uint64_t size;
	uint32_t block_size;
	uint32_t node_entries;
	uint32_t levels;
	uint32_t flags;
	struct vdk_entry root;
	uint64_t file_end;
	uint64_t ctr_next;
	uint64_t allocated_blocks;
	int64_t created;
	int64_t backing_created;
	uint8_t backing_uuid[16];	/* UUID of a native backing file, zero if unknown */
	char backing[VDK_BACKING_MAX + 1];
	char backing_fmt[VDK_BFMT_MAX + 1];
	char backing_name[VDK_BNAME_MAX + 1];
	uint8_t crypt_area[VDK_CRYPT_AREA_SIZE];
	int slot;			/* which slot it was read from */
	int slots_ok;			/* copies that verify and carry this generation */
	bool slot_damaged[2];		/* a copy with the magic but a bad checksum or geometry */
};

struct vdk_node;
struct vdk_bitmap;
struct vdk_ahead;

struct vdk_state {
	/*
	 * Lock order: gate, then reuse, then lock.
	 * gate: read by writers (pwrite, zero) for their whole change; write by a
	 * flush or an automatic commit, which lets go of lock while it syncs (so
	 * that readers go on) but keeps the writers out until the commit is done.
	 * reuse: read by readers between look-up and pread; write while recycling
	 * freed blocks.
	 */
	pthread_rwlock_t gate;
	pthread_rwlock_t reuse;
	pthread_mutex_t lock;		/* protects everything below */
	pthread_cond_t commit_done;	/* committing went false */
	bool committing;		/* a commit is syncing without lock: another waits */
	struct vdk_header hdr;		/* as last committed */
	struct vdk_entry root;		/* in-memory root (== hdr.root when clean) */
	uint32_t bs;
	uint32_t bshift;
	uint32_t ne;			/* entries per node */
	uint32_t nshift;		/* log2(ne) */
	uint32_t node_size;		/* bytes */
	uint32_t node_blocks;		/* blocks per node */
	uint32_t levels;
	uint64_t nblocks;		/* virtual blocks */
	uint64_t data_start;		/* first allocatable byte */
	bool writable;
	bool broken;			/* a resize failed half-way: commit nothing more */
	bool dirty;			/* in-memory tree differs from the committed one */
	bool has_backing;

	/* node cache */
	struct vdk_node **hash;
	uint32_t hash_size;
	struct vdk_node *lru_head, *lru_tail;	/* clean nodes, most recent first */
	uint64_t cached_bytes, cache_limit;
	struct vdk_node *dirty_list;
	uint64_t ndirty;

	/* allocator (writable only), in units of blocks */
	uint8_t *used;			/* bitmap: referenced or pending or limbo */
	uint8_t *fresh;			/* bitmap: allocated since the last commit */
	uint64_t nbits;			/* bitmap capacity in blocks */
	uint64_t file_blocks;		/* blocks in use up to the end of the file */
	uint64_t cursor;		/* next-fit position */
	uint64_t free_count;		/* clear bits in [data_start, file_blocks) */
	uint64_t walk_limit;		/* blocks in the file while walking the tree at open */
	bool alloc_ready;		/* the allocator has been built from the tree */
	uint64_t *freshv;		/* runs (first << 20 | count) allocated since the last commit */
	uint64_t nfreshv, cfreshv;
	uint64_t *pending;		/* freed, referenced by the committed tree */
	uint64_t npending, cpending;
	uint64_t *limbo;		/* freed, maybe still being read */
	uint64_t nlimbo, climbo;
	uint64_t allocated_blocks;	/* data blocks referenced by the in-memory tree */
	bool no_punch;			/* the host file system cannot punch holes */
	/*
	 * Room on the host for the next commit: node-sized runs inside the file,
	 * allocated on the host (fallocate), marked used, referenced by nothing;
	 * a commit writes a node there when the host is full. A change first
	 * claims what it may add to the map (`claimed`, in leaves), and is refused
	 * with ENOSPC if the reserve cannot cover the map it would leave dirty.
	 */
	uint64_t *resv;			/* first block of each reserved node run */
	uint64_t nresv, cresv;
	uint64_t claimed;		/* leaves claimed by changes in progress */
	bool no_resv;			/* the host has no fallocate: no reserve */

	/* encryption */
	struct vdk_crypt *crypt;
	uint64_t ctr_next;		/* next counter to hand out; < hdr.ctr_next */

	/* the file mapped (vdk-map.c; memory-backed files only), else NULL */
	uint8_t *map;
	uint64_t map_len;
	bool map_rw;			/* mapped for writing too */
	uint64_t host_end;		/* bytes known to be in the file (atomic) */
	struct vdk_ahead *ahead;	/* checksums verified ahead of a sequential reader */

	/* partial-block writes take the stripe of each block group they touch */
	pthread_mutex_t stripes[256];
};

/* vdk.c */
int vdk_header_read(int fd, const char *path, struct vdk_header *h);
int vdk_header_write(int fd, const char *path, struct vdk_header *h, struct vdk_crypt *crypt);
void vdk_header_encode(const struct vdk_header *h, uint8_t *buf, struct vdk_crypt *crypt);
/* Create a fresh image file (must not exist), optionally with a backing reference. */
int vdk_create_file(const char *path, uint64_t size, uint32_t block_size, const char *backing,
		    const char *backing_fmt, const char *backing_name, int64_t backing_created,
		    const uint8_t *backing_uuid,
		    const uint8_t *crypt_area, const uint8_t *uuid, struct vdk_crypt *crypt,
		    uint64_t ctr_start);
/* Commit the in-memory tree (flush hook without locks). Caller holds st->lock. */
int vdk_commit_locked(struct vd_layer *l);
/* Look up virtual block vb: fills *e (zeroed if unallocated). Caller holds st->lock. */
int vdk_lookup_locked(struct vd_layer *l, uint64_t vb, struct vdk_entry *e);
/* Change the backing reference and commit. */
int vdk_set_backing(struct vd_layer *l, const char *backing, const char *fmt, const char *name,
		    int64_t created, const uint8_t *uuid);
/* Reopen a read-only layer for writing (merging into a frozen layer). */
int vdk_make_writable(struct vd_layer *l);
/* Verify one data block against its entry; 0 or -EIO (message names the block). */
int vdk_verify_block(struct vd_layer *l, uint64_t vb, const struct vdk_entry *e, uint8_t *buf);
/* The checksum of an unencrypted data block (virtual block vb) matches sum. */
bool vdk_data_sum_ok(const void *buf, size_t len, uint64_t vb, const uint8_t sum[16]);
void vdk_entry_decode(const uint8_t *p, struct vdk_entry *e);
int vdk_node_read(struct vd_layer *l, const struct vdk_entry *e, uint32_t level, uint64_t index,
		  uint8_t *buf);

/* vdk-map.c: I/O through a mapping of a memory-backed file */
void vdk_map_open(struct vd_layer *l);
void vdk_map_close(struct vd_layer *l);
/* Write len bytes of whole blocks at file offset off (through the mapping when it can). */
int vdk_write_phys(struct vd_layer *l, const void *buf, size_t len, uint64_t off);
int vdk_pread_map(struct vd_layer *l, uint64_t off, size_t len, struct vd_mapped *m);
extern atomic_ulong vdk_ahead_taken;	/* blocks whose check a reader took from the helper */
void vdk_map_release(struct vd_layer *l);
/* Stop allocating ahead of the writer and cut what it allocated past the last block (a freeze). */
void vdk_grow_trim(struct vd_layer *l);
/* Holes are about to be punched in l's file (no store without a fault-in there). */
void vdk_map_punched(struct vd_layer *l);

/* vdk-check.c */
int vdk_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	      struct vd_check_result *res);

extern const struct vd_driver vd_vdk_driver;

#endif
