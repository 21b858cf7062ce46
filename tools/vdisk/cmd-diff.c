// SPDX-License-Identifier: MIT
/*
 * vdisk diff: the block ranges changed between snapshot A and snapshot B (or
 * the current top). A native layer holds exactly the blocks written since the
 * snapshot below it, so the blocks changed after A up to B are the blocks held
 * by the layers above A's layer, up to and including B's. We open the chain
 * as B saw it (vd_snapshot_open, or the image itself for the top) and walk it
 * with vd_block_status: every extent whose top-most holder sits above A's
 * layer is a change (data, or a range zeroed/discarded: type "zero"). Runs are
 * merged whatever layer holds them, since the answer is about ranges.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct vdisk_diff_ctx {
	bool json;
	int limit; /* view layers 0 .. limit-1 hold the changes */
	int n;
	uint64_t bytes;
	bool have;
	struct vd_extent run; /* pending output range; type DATA or ZERO */
};

static void
vdisk_diff_emit(struct vdisk_diff_ctx *ctx)
{
	const struct vd_extent *e = &ctx->run;

	if (ctx->json) {
		printf("%s\n        { \"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"type\": \"%s\" }",
		       ctx->n ? "," : "", e->offset, e->length, vdisk_extent_type_name(e->type));
	} else {
		printf("%-#18" PRIx64 "  %-#18" PRIx64 "  %s\n", e->offset, e->length,
		       vdisk_extent_type_name(e->type));
	}
	ctx->bytes += e->length;
	ctx->n++;
}

static int
vdisk_diff_extent(void *opaque, const struct vd_extent *e)
{
	struct vdisk_diff_ctx *ctx = opaque;

	if (e->type == VD_EXTENT_HOLE || e->layer < 0 || e->layer >= ctx->limit) {
		return 0;
	}
	if (ctx->have && ctx->run.offset + ctx->run.length == e->offset &&
	    ctx->run.type == e->type) {
		ctx->run.length += e->length;
		return 0;
	}
	if (ctx->have) {
		vdisk_diff_emit(ctx);
	}
	ctx->run = *e;
	ctx->have = true;
	return 0;
}

/* Index of the native snapshot called name, with its layer; reports errors itself. */
static int
vdisk_diff_find(struct vd_image *img, const char *file, const char *name,
		struct vd_snapshot_info *si)
{
	int idx = vd_snapshot_find(img, name);

	if (idx < 0) {
		vdisk_error(file, "no snapshot named '%s'", name);
		return -1;
	}
	if (vd_snapshot_info(img, idx, si) < 0) {
		vdisk_lib_error(file);
		return -1;
	}
	if (si->internal) {
		vdisk_error(file,
			    "'%s' is an internal snapshot of a foreign image: "
			    "it has no changed-block layer",
			    name);
		return -1;
	}
	return idx;
}

int
vdisk_cmd_diff(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	struct vdisk_diff_ctx ctx = {0};
	struct vd_snapshot_info sa, sb;
	struct vd_image *img, *view = NULL;
	const char *file, *a, *b = NULL;
	int c, ia, ib, layer_b = 0, rc = VDISK_EXIT_ERROR;
	char hs[32];

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			ctx.json = true;
			break;
		default:
			return vdisk_usage_error("diff", "bad option");
		}
	}
	if (argc - optind < 2 || argc - optind > 3) {
		return vdisk_usage_error("diff", "give FILE SNAP_A [SNAP_B]");
	}
	file = argv[optind];
	a = argv[optind + 1];
	if (argc - optind == 3) {
		b = argv[optind + 2];
	}
	img = vdisk_open(file, NULL, 0);
	if (!img) {
		vdisk_order_hint(file, a, "FILE SNAP_A [SNAP_B]");
		return VDISK_EXIT_ERROR;
	}
	ia = vdisk_diff_find(img, file, a, &sa);
	if (ia < 0) {
		goto out;
	}
	if (b) {
		ib = vdisk_diff_find(img, file, b, &sb);
		if (ib < 0) {
			goto out;
		}
		layer_b = sb.layer;
		if (sb.layer > sa.layer) {
			vdisk_error(file,
				    "snapshot '%s' is older than '%s': give the older one first", b,
				    a);
			goto out;
		}
		view = vd_snapshot_open(img, ib);
		if (!view) {
			vdisk_lib_error(file);
			goto out;
		}
	}
	/* In B's view, B's layer is layer 0 and A's is sa.layer - layer_b. */
	ctx.limit = sa.layer - layer_b;
	if (ctx.json) {
		printf("{\n    \"from\": ");
		vdisk_json_str(stdout, a);
		printf(",\n    \"to\": ");
		vdisk_json_str(stdout, b);
		printf(",\n    \"ranges\": [");
	} else {
		printf("Changed from %s to %s:\n", a, b ? b : "the current top");
		printf("%-18s  %-18s  %s\n", "Offset", "Length", "Type");
	}
	if (vdisk_extents_walk(view ? view : img, vdisk_diff_extent, &ctx) < 0) {
		if (ctx.json) {
			printf("]\n}\n");
		}
		vdisk_lib_error(file);
		goto out;
	}
	if (ctx.have) {
		vdisk_diff_emit(&ctx);
	}
	if (ctx.json) {
		printf("%s],\n    \"changed-bytes\": %" PRIu64 "\n}\n", ctx.n ? "\n    " : "",
		       ctx.bytes);
	} else {
		printf("%d range%s, %s changed\n", ctx.n, ctx.n == 1 ? "" : "s",
		       vdisk_human_size(ctx.bytes, hs, sizeof(hs)));
	}
	rc = VDISK_EXIT_OK;
out:
	vd_close(view);
	vd_close(img);
	return rc;
}
