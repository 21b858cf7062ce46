/* SPDX-License-Identifier: MIT */
/*
 * MBR and GPT partition table parsing for vdiskfs's partitions/ folder. The
 * bytes come from the disk image and are untrusted: every size and offset is
 * bounded and checked, and a table that does not make sense yields fewer (or
 * no) partitions, never a crash or a window outside the disk.
 */
#ifndef FS_PART_H
#define FS_PART_H

#include <stddef.h>
#include <stdint.h>

#define VDFS_PART_MAX 256 /* at most this many partitions are exposed */

struct vdfs_part {
	unsigned num;	 /* Linux-style number: MBR 1-4 primary, 5+ logical; GPT entry+1 */
	uint64_t start;	 /* byte offset in the disk */
	uint64_t length; /* bytes, > 0, start + length <= disk size */
};

/* Read len bytes at off of the disk (off + len <= disk size is guaranteed). 0 or -errno. */
typedef int (*vdfs_part_read_fn)(void *opaque, void *buf, size_t len, uint64_t off);

/*
 * Find the partitions of a disk of disk_size bytes: a valid GPT (primary, else
 * backup header; 512- or 4096-byte sectors) wins, else the MBR with its logical
 * partitions. Fills out[0..n) sorted by num and returns n (0 when there is no
 * table), or -errno when reading failed.
 */
int vdfs_part_scan(vdfs_part_read_fn rd, void *opaque, uint64_t disk_size, struct vdfs_part *out,
		   int max);

#endif
