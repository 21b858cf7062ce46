/* SPDX-License-Identifier: MIT */
/*
 * QEMU's image locks, as seen from outside QEMU, and the layer files they are
 * tested on (shared by vdisk and vdiskfs).
 *
 * QEMU (a running VM, qemu-io, qemu-nbd) takes a shared OFD lock on byte
 * 100 + the permission's bit of every image it holds a permission on; for
 * BLK_PERM_WRITE (bit 1) that is byte 101. qemu-img tests for it this way
 * before it reads an image without -U.
 */
#ifndef VDISK_QEMU_LOCK_H
#define VDISK_QEMU_LOCK_H

#include <fcntl.h>
#include <stdbool.h>

#include "vdisk.h"

/* true if another program holds QEMU's "write" permission lock on fd. */
static inline bool
vd_qemu_writer(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 101,
			    .l_len = 1 };

	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/*
 * Layer idx of img opened again read-only (without blocking on a FIFO), its
 * info in *li: a descriptor to test or lock, or -1 if it has no file.
 */
static inline int
vd_layer_file_open(struct vd_image *img, int idx, struct vd_layer_info *li)
{
	if (vd_layer_info(img, idx, li) < 0 || !li->path) {
		return -1;
	}
	return open(li->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

#endif
