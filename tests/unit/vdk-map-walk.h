/* SPDX-License-Identifier: MIT */
/*
 * Test helper: walk the committed map of a native image file (format/FORMAT.md,
 * any number of tree levels) and call back for every data entry. Reads the
 * plaintext node entries directly; node checksums/MACs are not verified here.
 */
#ifndef TESTS_VDK_MAP_WALK_H
#define TESTS_VDK_MAP_WALK_H

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "vdk.h"

typedef void (*map_walk_fn)(void *opaque, uint64_t vb, const struct vdk_entry *e);

/* Optional: called for every map node the walk reads (index: the node's index in its level). */
static map_walk_fn map_walk_node_hook;

static int
map_walk_node(int fd, uint32_t ne, const struct vdk_entry *ent, int level, uint64_t index,
	      map_walk_fn fn, void *opaque)
{
	uint8_t *node;
	int r = 0;

	if (level < 0) {
		if (ent->ptr & VDK_PTR_PRESENT) {
			fn(opaque, index, ent);
		}
		return 0;
	}
	if (!(ent->ptr & VDK_PTR_PRESENT)) {
		return 0;
	}
	if (map_walk_node_hook) {
		map_walk_node_hook(opaque, index, ent);
	}
	node = malloc((size_t)ne * VDK_ENTRY_SIZE);
	if (!node) {
		return -1;
	}
	if (vd_full_pread(fd, node, (size_t)ne * VDK_ENTRY_SIZE, ent->ptr & ~VDK_PTR_FLAGS) != 0) {
		free(node);
		return -1;
	}
	for (uint32_t i = 0; i < ne && r == 0; i++) {
		struct vdk_entry e;

		vdk_entry_decode(node + (size_t)i * VDK_ENTRY_SIZE, &e);
		if (e.ptr != 0) {
			r = map_walk_node(fd, ne, &e, level - 1, index * ne + i, fn, opaque);
		}
	}
	free(node);
	return r;
}

/* Walk path's committed map; *hdr (optional) receives the header. 0, or -1. */
static inline int
map_walk(const char *path, struct vdk_header *hdr, map_walk_fn fn, void *opaque)
{
	struct vdk_header h;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = -1;

	if (fd >= 0 && vdk_header_read(fd, path, &h) == 0) {
		r = map_walk_node(fd, h.node_entries, &h.root, (int)h.levels - 1, 0, fn, opaque);
		if (hdr) {
			*hdr = h;
		}
	}
	if (fd >= 0) {
		close(fd);
	}
	return r;
}

#endif
