// SPDX-License-Identifier: MIT
/*
 * vdisk check: vd_check() over every layer of the chain (structure and every
 * checksum or AEAD tag), findings printed as they come (text) or collected
 * into one JSON object. Exit status: 0 clean, 1 the check could not run, 2
 * corruption. Leaked space (free or unreferenced blocks inside a file) is
 * reported but is no harm to data, so it exits 0 (qemu-img check would say 3).
 * An image whose header fails its checksum cannot even be opened: that too is
 * corruption (2).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct vdisk_finding {
	int layer;
	enum vd_check_severity sev;
	char *msg;
};

struct vdisk_check_ctx {
	bool json;
	struct vd_image *img;
	struct vdisk_finding *f;
	size_t n, cap;
	bool oom;
};

static const char *
vdisk_sev_name(enum vd_check_severity s)
{
	switch (s) {
	case VD_CHECK_INFO:
		return "info";
	case VD_CHECK_LEAK:
		return "leak";
	case VD_CHECK_CORRUPT:
		return "corrupt";
	}
	return "?";
}

static void
vdisk_check_report(void *opaque, int layer, enum vd_check_severity sev, const char *msg)
{
	struct vdisk_check_ctx *ctx = opaque;
	struct vd_layer_info li;
	const char *path = "?";

	if (!ctx->json) {
		if (vd_layer_info(ctx->img, layer, &li) == 0) {
			path = li.path;
		}
		printf("%s: layer %d (%s): %s\n",
		       sev == VD_CHECK_CORRUPT ? "ERROR"
		       : sev == VD_CHECK_LEAK  ? "Leak"
					       : "Info",
		       layer, path, msg);
		return;
	}
	if (ctx->n == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 16;
		struct vdisk_finding *nf = realloc(ctx->f, cap * sizeof(*nf));

		if (!nf) {
			ctx->oom = true;
			return;
		}
		ctx->f = nf;
		ctx->cap = cap;
	}
	ctx->f[ctx->n].layer = layer;
	ctx->f[ctx->n].sev = sev;
	ctx->f[ctx->n].msg = strdup(msg);
	if (!ctx->f[ctx->n].msg) {
		ctx->oom = true;
		return;
	}
	ctx->n++;
}

static int
vdisk_check_status(const struct vd_check_result *r)
{
	return r->corrupt ? VDISK_EXIT_CORRUPT : VDISK_EXIT_OK;
}

int
vdisk_cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"force-share", no_argument, NULL, 'U'},
		{"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	struct vdisk_check_ctx ctx = {0};
	struct vd_check_result res = {0};
	struct vd_image *img;
	const char *file, *fmt = NULL;
	bool force = false;
	char hs[32];
	size_t i;
	int c, rc;

	while ((c = getopt_long(argc, argv, "Uf:", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			ctx.json = true;
			break;
		case 'U':
			force = true;
			break;
		case 'f':
			fmt = optarg;
			break;
		default:
			return vdisk_usage_error("check", "bad option");
		}
	}
	if (optind + 1 != argc) {
		return vdisk_usage_error("check",
					 optind >= argc ? "FILE is missing" : "too many arguments");
	}
	file = argv[optind];
	img = vdisk_open(file, fmt, 0);
	if (!img) {
		int e = vd_get_errno();

		return e == EBADMSG || e == EUCLEAN ? VDISK_EXIT_CORRUPT : VDISK_EXIT_ERROR;
	}
	ctx.img = img;
	if (vdisk_hold_still("check", file, img, force) < 0) {
		rc = VDISK_EXIT_ERROR;
		goto out;
	}
	rc = vd_check(img, vdisk_check_report, &ctx, &res);
	if (rc < 0) {
		vdisk_lib_error(file);
		rc = VDISK_EXIT_ERROR;
		goto out;
	}
	if (ctx.oom) {
		vdisk_error(file, "out of memory collecting the findings");
		rc = VDISK_EXIT_ERROR;
		goto out;
	}
	rc = vdisk_check_status(&res);
	if (ctx.json) {
		printf("{\n    \"filename\": ");
		vdisk_json_str(stdout, file);
		printf(",\n    \"layers\": %d,\n", vd_layer_count(img));
		printf("    \"blocks-checked\": %llu,\n", (unsigned long long)res.blocks_checked);
		printf("    \"bytes-checked\": %llu,\n", (unsigned long long)res.bytes_checked);
		printf("    \"corruptions\": %llu,\n", (unsigned long long)res.corrupt);
		printf("    \"leaks\": %llu,\n", (unsigned long long)res.leaks);
		printf("    \"clean\": %s,\n", res.corrupt ? "false" : "true");
		printf("    \"findings\": [");
		for (i = 0; i < ctx.n; i++) {
			printf("%s\n        { \"layer\": %d, \"severity\": \"%s\", \"message\": ",
			       i ? "," : "", ctx.f[i].layer, vdisk_sev_name(ctx.f[i].sev));
			vdisk_json_str(stdout, ctx.f[i].msg);
			printf(" }");
		}
		printf("%s]\n}\n", ctx.n ? "\n    " : "");
	} else {
		if (res.corrupt) {
			printf("\n%llu error%s found on the image.\n"
			       "Data may be corrupted, or further writes to the image may "
			       "corrupt it.\n",
			       (unsigned long long)res.corrupt,
			       res.corrupt == 1 ? " was" : "s were");
		}
		if (res.leaks) {
			printf("\n%llu leaked block%s found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n",
			       (unsigned long long)res.leaks, res.leaks == 1 ? " was" : "s were");
		}
		if (!res.corrupt) {
			printf("%sNo errors were found on the image.\n", res.leaks ? "\n" : "");
		}
		printf("Checked %llu blocks (%s) in %d layer%s.\n",
		       (unsigned long long)res.blocks_checked,
		       vdisk_human_size(res.bytes_checked, hs, sizeof(hs)), vd_layer_count(img),
		       vd_layer_count(img) == 1 ? "" : "s");
	}
out:
	for (i = 0; i < ctx.n; i++) {
		free(ctx.f[i].msg);
	}
	free(ctx.f);
	if (vd_close(img) < 0 && rc == VDISK_EXIT_OK) {
		vdisk_lib_error(file);
		rc = VDISK_EXIT_ERROR;
	}
	return rc;
}
