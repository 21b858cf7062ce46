// SPDX-License-Identifier: MIT
/*
 * vdisk snapshot create|list|delete|revert|prune: thin wrappers over
 * vd_snapshot_*. Everything that changes the chain opens the image
 * read-write, so the library's exclusive lock refuses a second writer (a
 * mounted image, say) with its own message. prune deletes the oldest
 * native snapshots (a foreign backing layer is listed, but not deletable)
 * one at a time (each delete merges into the next newer layer and is
 * crash-safe by itself) until N remain.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int
vdisk_snap_list(struct vd_image *img, bool json)
{
	int i, n = vd_snapshot_count(img);
	char ts[40], hs[32];

	if (n < 0) {
		return n;
	}
	if (json) {
		printf("[");
	} else if (n > 0) {
		printf("%-4s %-24s %-21s %12s  %-6s %s\n", "ID", "NAME", "CREATED", "CHANGED",
		       "LAYER", "PARENT");
	}
	for (i = 0; i < n; i++) {
		struct vd_snapshot_info si;
		int rc = vd_snapshot_info(img, i, &si);

		if (rc < 0) {
			if (json) {
				printf("]\n");
			}
			return rc;
		}
		if (json) {
			printf("%s\n    { \"id\": %d, \"name\": ", i ? "," : "", i + 1);
			vdisk_json_str(stdout, si.name);
			printf(", \"created\": ");
			vdisk_json_str(stdout, vdisk_time_str(si.created, ts, sizeof(ts)));
			printf(", \"created-epoch\": %lld, \"changed-bytes\": %llu, \"layer\": ",
			       (long long)si.created, (unsigned long long)si.allocated);
			if (si.internal) {
				printf("null");
			} else {
				printf("%d", si.layer);
			}
			printf(", \"internal\": %s, \"parent\": ", si.internal ? "true" : "false");
			vdisk_json_str(stdout, si.parent);
			printf(" }");
		} else {
			char lay[16];

			snprintf(lay, sizeof(lay), "%d", si.layer);
			printf("%-4d %-24s %-21s %12s  %-6s %s\n", i + 1, si.name,
			       vdisk_time_str(si.created, ts, sizeof(ts)),
			       vdisk_human_size(si.allocated, hs, sizeof(hs)),
			       si.internal ? "int" : lay, si.parent ? si.parent : "-");
		}
	}
	if (json) {
		printf("%s]\n", n ? "\n" : "");
	} else if (n == 0) {
		printf("No snapshots.\n");
	}
	return 0;
}

static int
vdisk_snap_prune(struct vd_image *img, const char *file, uint64_t keep)
{
	int n;

	for (;;) {
		struct vd_snapshot_info si;
		char name[128];
		int i, rc, native = 0, oldest = -1;

		n = vd_snapshot_count(img);
		if (n < 0) {
			return n;
		}
		/*
		 * Only native (vdk layer) snapshots count: internal ones are a foreign
		 * image's, and a foreign backing layer is listed but cannot be deleted.
		 */
		for (i = 0; i < n; i++) {
			struct vd_layer_info li;

			if (vd_snapshot_info(img, i, &si) == 0 && !si.internal &&
			    vd_layer_info(img, si.layer, &li) == 0 && li.format &&
			    strcmp(li.format, "vdk") == 0) {
				if (oldest < 0) {
					oldest = i;
				}
				native++;
			}
		}
		if ((uint64_t)native <= keep || oldest < 0) {
			return 0;
		}
		if ((rc = vd_snapshot_info(img, oldest, &si)) < 0) {
			return rc;
		}
		snprintf(name, sizeof(name), "%s", si.name);
		if ((rc = vd_snapshot_delete(img, name)) < 0) {
			return rc;
		}
		printf("deleted snapshot %s\n", name);
		(void)file;
	}
}

int
vdisk_cmd_snapshot(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"keep", required_argument, NULL, 'k'},
		{NULL, 0, NULL, 0},
	};
	const char *sub, *file, *name = NULL;
	struct vd_image *img;
	bool json = false, have_keep = false;
	uint64_t keep = 0;
	unsigned flags;
	int c, rc, nargs;

	if (argc < 2) {
		return vdisk_usage_error("snapshot", "give create, list, delete, revert or prune");
	}
	sub = argv[1];
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'k':
			if (vdisk_parse_uint(optarg, (uint64_t)1 << 30, &keep) < 0) {
				return vdisk_usage_error("snapshot", "--keep '%s': not a number",
							 optarg);
			}
			have_keep = true;
			break;
		default:
			return vdisk_usage_error("snapshot", "bad option");
		}
	}
	nargs = argc - optind;
	if (strcmp(sub, "list") == 0) {
		if (nargs != 1) {
			return vdisk_usage_error("snapshot", "usage: snapshot list [--json] FILE");
		}
	} else if (strcmp(sub, "prune") == 0) {
		if (nargs != 1 || !have_keep) {
			return vdisk_usage_error("snapshot", "usage: snapshot prune FILE --keep N");
		}
	} else if (strcmp(sub, "create") == 0 || strcmp(sub, "delete") == 0 ||
		   strcmp(sub, "revert") == 0) {
		if (nargs != 2) {
			return vdisk_usage_error("snapshot", "usage: snapshot %s FILE NAME", sub);
		}
		name = argv[optind + 1];
	} else {
		return vdisk_usage_error("snapshot", "unknown subcommand '%s'", sub);
	}
	if (json && strcmp(sub, "list") != 0) {
		return vdisk_usage_error("snapshot", "--json is for snapshot list");
	}
	if (have_keep && strcmp(sub, "prune") != 0) {
		return vdisk_usage_error("snapshot", "--keep is for snapshot prune");
	}
	file = argv[optind];
	if (name && !vd_snapshot_name_valid(name)) {
		vdisk_error(file,
			    "invalid snapshot name '%s' (1-64 of A-Z a-z 0-9 . _ + : @ -, "
			    "not starting with . or -)",
			    name);
		return VDISK_EXIT_ERROR;
	}
	flags = strcmp(sub, "list") == 0 ? 0 : VD_OPEN_RDWR;
	img = vdisk_open(file, NULL, flags);
	if (!img) {
		vdisk_order_hint(file, name, "FILE NAME");
		return VDISK_EXIT_ERROR;
	}
	if (strcmp(sub, "list") == 0) {
		rc = vdisk_snap_list(img, json);
	} else if (strcmp(sub, "create") == 0) {
		rc = vd_snapshot_create(img, name);
	} else if (strcmp(sub, "delete") == 0) {
		rc = vd_snapshot_delete(img, name);
	} else if (strcmp(sub, "revert") == 0) {
		rc = vd_snapshot_revert(img, name);
	} else {
		rc = vdisk_snap_prune(img, file, keep);
	}
	if (rc < 0) {
		vdisk_lib_error(file);
		vd_close(img);
		return VDISK_EXIT_ERROR;
	}
	if (vd_close(img) < 0) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	return VDISK_EXIT_OK;
}
