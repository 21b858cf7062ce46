// SPDX-License-Identifier: MIT
/*
 * Consistency check of one native layer (the `vdisk check` backend): every
 * tree node's checksum, every entry's sanity, no two references to the same
 * file block, and every data block's checksum (or AEAD tag). Blocks inside the
 * file that nothing references are free space (reported as information):
 * what copy-on-write leaves behind and what a crash leaves (written but never
 * committed); a writer finds and reuses them, so they are neither damage nor
 * a leak.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chain.h"
#include "util.h"
#include "vdk.h"

struct check_ctx {
	struct vd_layer *l;
	vd_check_fn report;
	void *opaque;
	int layer_idx;
	struct vd_check_result *res;
	uint8_t *seen;		/* bitmap of referenced file blocks */
	uint64_t file_blocks;
	uint8_t *nodes;		/* one node buffer per level */
	uint8_t *data;		/* one block, verified in place */
	uint8_t *ra;		/* read-ahead window: data is mostly laid out in order */
	uint64_t ra_off, ra_len;
};

#define CHECK_RA_SIZE (1u << 20)

/* Read one block at file offset off through the read-ahead window. */
static int
check_read_block(struct check_ctx *cx, uint64_t off)
{
	struct vdk_state *st = cx->l->st;
	int r;

	if (off < cx->ra_off || off + st->bs > cx->ra_off + cx->ra_len) {
		r = vd_pread_zerofill(cx->l->fd, cx->ra, CHECK_RA_SIZE, off);
		if (r < 0) {
			cx->ra_len = 0;
			return r;
		}
		cx->ra_off = off;
		cx->ra_len = CHECK_RA_SIZE;
	}
	memcpy(cx->data, cx->ra + (off - cx->ra_off), st->bs);
	return 0;
}

static void
check_say(struct check_ctx *cx, enum vd_check_severity sev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
check_say(struct check_ctx *cx, enum vd_check_severity sev, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == VD_CHECK_CORRUPT) {
		cx->res->corrupt++;
	}
	if (cx->report) {
		cx->report(cx->opaque, cx->layer_idx, sev, msg);
	}
}

/* Mark [b, b+n) referenced; false (and a finding) if out of the file or referenced twice. */
static bool
check_claim(struct check_ctx *cx, uint64_t b, uint64_t n, const char *what, uint64_t which)
{
	if (b + n > cx->file_blocks) {
		check_say(cx, VD_CHECK_CORRUPT, "%s %llu points past the end of the file", what,
			  (unsigned long long)which);
		return false;
	}
	for (uint64_t k = b; k < b + n; k++) {
		if (cx->seen[k >> 3] & (1u << (k & 7))) {
			check_say(cx, VD_CHECK_CORRUPT, "%s %llu shares file block %llu with other data",
				  what, (unsigned long long)which, (unsigned long long)k);
			return false;
		}
		cx->seen[k >> 3] |= (uint8_t)(1u << (k & 7));
	}
	return true;
}

static int
check_node(struct check_ctx *cx, const struct vdk_entry *e, uint32_t level, uint64_t index)
{
	struct vd_layer *l = cx->l;
	struct vdk_state *st = l->st;
	uint8_t *buf = cx->nodes + (size_t)level * st->node_size;
	uint64_t off = e->ptr & ~VDK_PTR_FLAGS;
	int r;

	if (off < st->data_start || off % st->bs) {
		check_say(cx, VD_CHECK_CORRUPT, "map node (level %u, #%llu) has a bad offset %llu",
			  level, (unsigned long long)index, (unsigned long long)off);
		return 0;
	}
	if (!check_claim(cx, off >> st->bshift, st->node_blocks, "map node",
			 index)) {
		return 0;
	}
	r = vdk_node_read(l, e, level, index, buf);
	if (r < 0) {
		check_say(cx, VD_CHECK_CORRUPT, "%s", vd_get_error());
		return 0;
	}
	cx->res->bytes_checked += st->node_size;
	for (uint32_t i = 0; i < st->ne; i++) {
		struct vdk_entry c;
		uint64_t ci = (index << st->nshift) + i;

		vdk_entry_decode(buf + (size_t)i * VDK_ENTRY_SIZE, &c);
		if ((c.ptr & VDK_PTR_FLAGS) & ~(VDK_PTR_PRESENT | VDK_PTR_ZERO) ||
		    ((c.ptr & VDK_PTR_ZERO) && (c.ptr & ~VDK_PTR_FLAGS))) {
			check_say(cx, VD_CHECK_CORRUPT, "entry %llu at level %u is malformed",
				  (unsigned long long)ci, level);
			continue;
		}
		if (!(c.ptr & VDK_PTR_PRESENT)) {
			continue;
		}
		if (level > 0) {
			r = check_node(cx, &c, level - 1, ci);
			if (r < 0) {
				return r;
			}
			continue;
		}
		/* A data block. */
		uint64_t doff = c.ptr & ~VDK_PTR_FLAGS;

		if (ci >= st->nblocks || doff < st->data_start || doff % st->bs) {
			check_say(cx, VD_CHECK_CORRUPT, "block %llu: bad map entry",
				  (unsigned long long)ci);
			continue;
		}
		if (!check_claim(cx, doff >> st->bshift, 1, "block", ci)) {
			continue;
		}
		r = check_read_block(cx, doff);
		if (r < 0) {
			check_say(cx, VD_CHECK_CORRUPT, "block %llu: cannot read file offset %llu: %s",
				  (unsigned long long)ci, (unsigned long long)doff, strerror(-r));
			continue;
		}
		cx->res->blocks_checked++;
		cx->res->bytes_checked += st->bs;
		if (vdk_verify_block(l, ci, &c, cx->data) < 0) {
			check_say(cx, VD_CHECK_CORRUPT, "%s", vd_get_error());
		}
	}
	return 0;
}

int
vdk_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	  struct vd_check_result *res)
{
	struct vdk_state *st = l->st;
	struct check_ctx cx = {
		.l = l, .report = report, .opaque = opaque, .layer_idx = layer_idx, .res = res,
	};
	struct vdk_entry root;
	struct stat sb;
	uint64_t leaks = 0;
	int r = 0;

	/* Check the committed state: commit the writer's pending changes first. */
	pthread_mutex_lock(&st->lock);
	if (st->writable) {
		r = vdk_commit_locked(l);
	}
	root = st->hdr.root;
	pthread_mutex_unlock(&st->lock);
	if (r < 0) {
		return r;
	}
	if (fstat(l->fd, &sb) < 0) {
		return vd_set_error(errno, "%s: %s", l->path, strerror(errno));
	}
	{
		struct vdk_header h;

		if (vdk_header_read(l->fd, l->path, &h) == 0) {
			for (int i = 0; i < VDK_HDR_SLOTS; i++) {
				if (h.slot_damaged[i]) {
					check_say(&cx, VD_CHECK_CORRUPT,
						  "header copy %d is damaged (the other copy is used; "
						  "the next write open rewrites it)", i);
				}
			}
		}
	}
	cx.file_blocks = VD_DIV_ROUND_UP((uint64_t)sb.st_size, st->bs);
	cx.seen = calloc(1, cx.file_blocks / 8 + 1);
	cx.nodes = malloc((size_t)st->node_size * st->levels);
	cx.data = malloc(st->bs);
	cx.ra = malloc(VD_MAX((uint32_t)CHECK_RA_SIZE, st->bs));
	if (!cx.seen || !cx.nodes || !cx.data || !cx.ra) {
		r = vd_set_error(ENOMEM, "out of memory");
		goto out;
	}
	for (uint64_t b = 0; b < (st->data_start >> st->bshift) && b < cx.file_blocks; b++) {
		cx.seen[b >> 3] |= (uint8_t)(1u << (b & 7));
	}
	if (root.ptr & VDK_PTR_PRESENT) {
		r = check_node(&cx, &root, st->levels - 1, 0);
	}
	for (uint64_t b = st->data_start >> st->bshift; b < cx.file_blocks; b++) {
		if (!(cx.seen[b >> 3] & (1u << (b & 7)))) {
			leaks++;
		}
	}
	if (leaks) {
		/* Free space is derived from the tree, never recorded: it cannot leak. */
		check_say(&cx, VD_CHECK_INFO,
			  "%llu free blocks (%llu bytes) inside the file: free space, reused by "
			  "the next writer",
			  (unsigned long long)leaks, (unsigned long long)(leaks << st->bshift));
	}
out:
	free(cx.seen);
	free(cx.nodes);
	free(cx.data);
	free(cx.ra);
	return r;
}
