// SPDX-License-Identifier: MIT
/*
 * vdisk info: every layer of the chain, top first, as text (in the manner of
 * `qemu-img info --backing-chain`) or as a JSON array. The output holds no
 * wall-clock data except the snapshot creation times, so tests compare it with
 * golden files after normalising those.
 *
 * An encrypted image is described without asking for its passphrase: unless
 * --key-file/--key-fd was given, an encrypted native top is described from
 * its header alone (vd_key_list: cipher and number of key slots), and any
 * other chain is opened with no passphrase callback, so that an encrypted
 * layer further down gives a clear error rather than a prompt.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void
vdisk_uuid_str(const uint8_t u[16], char *buf, size_t len)
{
	static const uint8_t zero[16];

	if (memcmp(u, zero, 16) == 0) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

/* Number of used key slots of an encrypted layer, -1 if unknown. */
static int
vdisk_slots_used(const char *path)
{
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	const char *cipher = NULL;
	int n = vd_key_list(path, slots, &cipher);

	return n < 0 ? -1 : n;
}

static void
vdisk_info_text(struct vd_image *img)
{
	int i, n = vd_layer_count(img), nsnap;
	char h1[32], h2[32], uu[40], ts[40];

	for (i = 0; i < n; i++) {
		struct vd_layer_info li;
		struct vd_layer_info below;

		if (vd_layer_info(img, i, &li) < 0) {
			vdisk_lib_error(vd_get_path(img));
			continue;
		}
		if (i > 0) {
			printf("\n");
		}
		printf("image: %s\n", li.path);
		printf("layer: %d%s\n", i, i == 0 ? " (top)" : "");
		printf("file format: %s\n", li.format);
		printf("virtual size: %s (%llu bytes)\n", vdisk_human_size(li.size, h1, sizeof(h1)),
		       (unsigned long long)li.size);
		printf("disk size: %s\n", vdisk_human_size(li.file_size, h1, sizeof(h1)));
		printf("allocated: %s (%llu bytes)\n",
		       vdisk_human_size(li.allocated, h2, sizeof(h2)),
		       (unsigned long long)li.allocated);
		printf("block size: %s (%u bytes)\n",
		       vdisk_human_size(li.block_size, h1, sizeof(h1)), li.block_size);
		if (li.encrypted) {
			int slots = vdisk_slots_used(li.path);

			if (slots >= 0) {
				printf("encrypted: yes (%s, %d key slot%s)\n",
				       li.cipher ? li.cipher : "?", slots, slots == 1 ? "" : "s");
			} else {
				printf("encrypted: yes (%s)\n", li.cipher ? li.cipher : "?");
			}
		} else {
			printf("encrypted: no\n");
		}
		if (li.name) {
			printf("snapshot: %s\n", li.name);
		}
		if (li.created) {
			printf("created: %s\n", vdisk_time_str(li.created, ts, sizeof(ts)));
		}
		vdisk_uuid_str(li.uuid, uu, sizeof(uu));
		printf("uuid: %s\n", uu);
		if (li.backing) {
			if (i + 1 < n && vd_layer_info(img, i + 1, &below) == 0) {
				printf("backing file: %s (format: %s)\n", li.backing, below.format);
			} else {
				printf("backing file: %s\n", li.backing);
			}
		}
	}
	nsnap = vd_snapshot_count(img);
	if (nsnap > 0) {
		printf("\nSnapshot list (oldest first):\n");
		printf("%-4s %-24s %-21s %12s  %s\n", "ID", "NAME", "CREATED", "CHANGED", "LAYER");
		for (i = 0; i < nsnap; i++) {
			struct vd_snapshot_info si;

			if (vd_snapshot_info(img, i, &si) < 0) {
				continue;
			}
			printf("%-4d %-24s %-21s %12s  %s\n", i + 1, si.name,
			       vdisk_time_str(si.created, ts, sizeof(ts)),
			       vdisk_human_size(si.allocated, h1, sizeof(h1)),
			       si.internal ? "internal"
					   : (snprintf(uu, sizeof(uu), "%d", si.layer), uu));
		}
	}
}

static void
vdisk_info_json(struct vd_image *img)
{
	int i, n = vd_layer_count(img);
	char uu[40], ts[40];

	printf("[");
	for (i = 0; i < n; i++) {
		struct vd_layer_info li, below;
		int slots = -1;

		if (vd_layer_info(img, i, &li) < 0) {
			continue;
		}
		if (li.encrypted) {
			slots = vdisk_slots_used(li.path);
		}
		printf("%s\n    {\n", i ? "," : "");
		printf("        \"layer\": %d,\n", i);
		printf("        \"filename\": ");
		vdisk_json_str(stdout, li.path);
		printf(",\n        \"format\": ");
		vdisk_json_str(stdout, li.format);
		printf(",\n        \"virtual-size\": %llu,\n", (unsigned long long)li.size);
		printf("        \"actual-size\": %llu,\n", (unsigned long long)li.file_size);
		printf("        \"allocated\": %llu,\n", (unsigned long long)li.allocated);
		printf("        \"block-size\": %u,\n", li.block_size);
		printf("        \"read-only\": %s,\n", li.readonly ? "true" : "false");
		printf("        \"encrypted\": %s,\n", li.encrypted ? "true" : "false");
		printf("        \"cipher\": ");
		vdisk_json_str(stdout, li.encrypted ? li.cipher : NULL);
		if (slots >= 0) {
			printf(",\n        \"key-slots\": %d", slots);
		} else {
			printf(",\n        \"key-slots\": null");
		}
		printf(",\n        \"snapshot\": ");
		vdisk_json_str(stdout, li.name);
		printf(",\n        \"created\": ");
		vdisk_json_str(stdout,
			       li.created ? vdisk_time_str(li.created, ts, sizeof(ts)) : NULL);
		vdisk_uuid_str(li.uuid, uu, sizeof(uu));
		printf(",\n        \"uuid\": ");
		vdisk_json_str(stdout, strcmp(uu, "-") ? uu : NULL);
		printf(",\n        \"backing-filename\": ");
		vdisk_json_str(stdout, li.backing);
		printf(",\n        \"backing-format\": ");
		vdisk_json_str(stdout,
			       li.backing && i + 1 < n && vd_layer_info(img, i + 1, &below) == 0
				       ? below.format
				       : NULL);
		printf("\n    }");
	}
	printf("\n]\n");
}

/* Header-only description of an encrypted image opened without its passphrase. */
static int
vdisk_info_locked(const char *file, bool json)
{
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	const char *cipher = NULL;
	int n = vd_key_list(file, slots, &cipher);

	if (n < 0) {
		return n;
	}
	if (json) {
		printf("[\n    {\n        \"layer\": 0,\n        \"filename\": ");
		vdisk_json_str(stdout, file);
		printf(",\n        \"format\": \"vdk\",\n        \"encrypted\": true,\n"
		       "        \"cipher\": ");
		vdisk_json_str(stdout, cipher);
		printf(",\n        \"key-slots\": %d,\n        \"locked\": true\n    }\n]\n", n);
	} else {
		printf("image: %s\nlayer: 0 (top)\nfile format: vdk\n", file);
		printf("encrypted: yes (%s, %d key slot%s)\n", cipher ? cipher : "?", n,
		       n == 1 ? "" : "s");
		printf("(locked: give --key-file FILE or --key-fd N for the rest)\n");
	}
	return 0;
}

int
vdisk_cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	struct vd_open_opts opts = {0};
	struct vd_image *img;
	const char *file;
	bool json = false;
	int c;

	while ((c = getopt_long(argc, argv, "f:", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'f':
			opts.format = vdisk_format_name(optarg);
			break;
		default:
			return vdisk_usage_error("info", "bad option");
		}
	}
	if (optind + 1 != argc) {
		return vdisk_usage_error("info",
					 optind >= argc ? "FILE is missing" : "too many arguments");
	}
	file = argv[optind];
	if (vdisk_pass_given()) {
		opts.passphrase = vd_pass_get;
		opts.passphrase_opaque = &vdisk_pass;
	} else if (vdisk_info_locked(file, json) == 0) {
		/* An encrypted native top, and no key given: its header is all we show. */
		return VDISK_EXIT_OK;
	}
	img = vd_open(file, &opts);
	if (!img) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	if (json) {
		vdisk_info_json(img);
	} else {
		vdisk_info_text(img);
	}
	if (vd_close(img) < 0) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	return VDISK_EXIT_OK;
}
