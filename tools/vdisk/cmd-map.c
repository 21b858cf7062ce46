// SPDX-License-Identifier: MIT
/*
 * vdisk map: walk the whole virtual disk with vd_block_status() and print one
 * line per run of extents of the same type held by the same layer (the
 * library may split a run at block or table boundaries; adjacent pieces are
 * merged here). Like `qemu-img map`, but unallocated and zero ranges are
 * listed too, and the layer is named.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int
vdisk_extents_walk(struct vd_image *img, int (*fn)(void *opaque, const struct vd_extent *e),
		   void *opaque)
{
	return vdisk_extents_walk_until(img, fn, opaque, NULL);
}

int
vdisk_extents_walk_until(struct vd_image *img,
			 int (*fn)(void *opaque, const struct vd_extent *e), void *opaque,
			 const volatile sig_atomic_t *stop)
{
	uint64_t size = vd_get_size(img), off = 0;
	struct vd_extent run = {0}, e;
	bool have = false;
	int rc;

	while (off < size) {
		/* A long run of one type is merged before fn sees it: look here too. */
		if (stop && *stop) {
			return -ECANCELED;
		}
		rc = vd_block_status(img, off, size - off, &e);
		if (rc < 0) {
			return rc;
		}
		if (e.length == 0 || e.offset != off || e.length > size - off) {
			errno = EIO;
			return -EIO;
		}
		if (have && run.type == e.type && run.layer == e.layer) {
			run.length += e.length;
		} else {
			if (have && (rc = fn(opaque, &run)) < 0) {
				return rc;
			}
			run = e;
			have = true;
		}
		off += e.length;
	}
	if (have) {
		return fn(opaque, &run);
	}
	return 0;
}

struct vdisk_map_ctx {
	struct vd_image *img;
	bool json;
	int n;
};

static int
vdisk_map_line(void *opaque, const struct vd_extent *e)
{
	struct vdisk_map_ctx *ctx = opaque;
	struct vd_layer_info li;
	const char *path = NULL;

	if (e->layer >= 0 && vd_layer_info(ctx->img, e->layer, &li) == 0) {
		path = li.path;
	}
	if (ctx->json) {
		printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"type\": \"%s\", \"layer\": ",
		       ctx->n ? ",\n" : "", e->offset, e->length, vdisk_extent_type_name(e->type));
		if (e->layer >= 0) {
			printf("%d", e->layer);
		} else {
			printf("null");
		}
		printf(", \"file\": ");
		vdisk_json_str(stdout, path);
		printf(" }");
	} else {
		char lay[16];

		snprintf(lay, sizeof(lay), "%d", e->layer);
		printf("%-#18" PRIx64 "  %-#18" PRIx64 "  %-12s %-6s %s\n", e->offset, e->length,
		       vdisk_extent_type_name(e->type), e->layer >= 0 ? lay : "-",
		       path ? path : "-");
	}
	ctx->n++;
	return 0;
}

int
vdisk_cmd_map(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	struct vdisk_map_ctx ctx = {0};
	const char *file, *fmt = NULL;
	int c, rc = VDISK_EXIT_OK;

	while ((c = getopt_long(argc, argv, "f:", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			ctx.json = true;
			break;
		case 'f':
			fmt = optarg;
			break;
		default:
			return vdisk_usage_error("map", "bad option");
		}
	}
	if (optind + 1 != argc) {
		return vdisk_usage_error("map",
					 optind >= argc ? "FILE is missing" : "too many arguments");
	}
	file = argv[optind];
	ctx.img = vdisk_open(file, fmt, 0);
	if (!ctx.img) {
		return VDISK_EXIT_ERROR;
	}
	if (ctx.json) {
		printf("[");
	} else {
		printf("%-18s  %-18s  %-12s %-6s %s\n", "Offset", "Length", "Type", "Layer",
		       "File");
	}
	if (vdisk_extents_walk(ctx.img, vdisk_map_line, &ctx) < 0) {
		if (ctx.json) {
			printf("]\n");
		}
		vdisk_lib_error(file);
		rc = VDISK_EXIT_ERROR;
	} else if (ctx.json) {
		printf("]\n");
	}
	vd_close(ctx.img);
	return rc;
}
