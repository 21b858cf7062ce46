/* SPDX-License-Identifier: MIT */
/*
 * Private helpers shared by the foreign-format readers (vmdk.c, qcow2.c,
 * vhd.c, vhdx.c): a small mutex-protected cache of on-disk tables (qcow2 L2
 * tables, VMDK grain tables, VHDX sector bitmaps), range checks against the
 * file size, decompression (zlib, raw deflate, zstd), CRC32C and UTF-16
 * decoding. None of this is part of the library API.
 *
 * The table cache copies entries out under its lock, so a caller never holds
 * a pointer into a slot that another thread may evict: this keeps the readers
 * PARALLEL with no other shared mutable state.
 */
#ifndef FORMAT_FOREIGN_H
#define FORMAT_FOREIGN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ft_slot {
	int fd;
	uint64_t off;	/* file offset of the table, UINT64_MAX when empty */
	uint64_t stamp; /* last use, for LRU eviction */
	uint8_t *data;
};

struct ft_cache {
	pthread_mutex_t lock;
	size_t table_size; /* bytes per table */
	int nslots;
	uint64_t clock;	       /* protected by lock */
	struct ft_slot *slots; /* protected by lock */
};

/* Cache of nslots tables of table_size bytes each. 0 or -ENOMEM. */
int ft_cache_init(struct ft_cache *c, size_t table_size, int nslots);
void ft_cache_destroy(struct ft_cache *c);
/*
 * Copy len bytes at byte pos of the table at file offset off of fd into out,
 * loading the table if needed. The caller has checked that the table lies in
 * the file. Returns 0 or -errno (-EIO with a message on a short read).
 */
int ft_cache_read(struct ft_cache *c, int fd, uint64_t off, size_t pos, void *out, size_t len);

/* Size of the file behind fd, or -errno. */
int64_t ft_file_size(int fd);
/* Modification time of the file behind fd (seconds), 0 if unknown: the time a
 * frozen layer was last written, used when the format records no creation time. */
int64_t ft_file_mtime(int fd);
/* true if [off, off+len) lies inside a file of file_size bytes (overflow-safe). */
bool ft_in_file(uint64_t off, uint64_t len, uint64_t file_size);

/*
 * Decompressors: fill exactly out_len bytes or fail with -EIO. ft_inflate
 * takes a zlib stream (VMDK grains); ft_inflate_raw a raw deflate stream
 * (qcow2); ft_zstd a zstd frame (qcow2), trailing bytes after the frame ignored.
 */
int ft_inflate(const void *in, size_t in_len, void *out, size_t out_len, size_t *got);
int ft_inflate_raw(const void *in, size_t in_len, void *out, size_t out_len);
int ft_zstd(const void *in, size_t in_len, void *out, size_t out_len);

/* CRC-32C (Castagnoli), as VHDX uses it. */
uint32_t ft_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * Decode nchars UTF-16 code units (little- or big-endian) into a NUL-terminated
 * UTF-8 string, stopping at a NUL. Returns malloc'd string (caller frees) or NULL.
 */
char *ft_utf16_to_utf8(const uint8_t *p, size_t nchars, bool big_endian);

/* Read a whole small file (at most max bytes) as a NUL-terminated string (caller frees). */
char *ft_read_text(int fd, size_t max, size_t *len);

/*
 * Formats whose map is "this range is data at that offset of l->fd, or a hole"
 * (vhd, vhdx) give one mapping step; these build the rest on it.
 * map1 describes the run starting at off (at most len bytes): *type DATA with
 * its host offset in *host, or HOLE/ZERO.
 */
typedef int (*ft_map1_fn)(struct vd_layer *l, uint64_t off, uint64_t len,
			  enum vd_extent_type *type, uint64_t *n, uint64_t *host);
/* Merge consecutive map1 runs of the same kind (contiguous on the host for data). */
int ft_map(struct vd_layer *l, ft_map1_fn map1, uint64_t off, uint64_t len,
	   enum vd_extent_type *type, uint64_t *n, uint64_t *host);
int ft_block_status(struct vd_layer *l, ft_map1_fn map1, uint64_t off, uint64_t len,
		    struct vd_extent *ext);
int ft_pread(struct vd_layer *l, ft_map1_fn map1, void *buf, size_t len, uint64_t off);
/* Bytes of data the layer holds, by walking its block_status. */
uint64_t ft_allocated(struct vd_layer *l);

#endif
