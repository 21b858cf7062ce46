// SPDX-License-Identifier: MIT
/*
 * vdisk key list|add|remove: the passphrase key slots of an encrypted native
 * image (vd_key_list/add/remove). list reads the header only and asks for
 * nothing. add takes an existing passphrase from the global key source
 * (--key-file/--key-fd/terminal) and the new one from --new-key-file /
 * --new-key-fd or the terminal, asked twice. Both live in sodium_malloc'd
 * buffers that are wiped on the way out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"

#define VDISK_PASS_BUF 1024

static int
vdisk_key_list(const char *file, bool json)
{
	struct vd_key_slot_info slots[VD_KEY_SLOTS];
	const char *cipher = NULL;
	char hs[32];
	int i, n, first = 1;

	memset(slots, 0, sizeof(slots));
	n = vd_key_list(file, slots, &cipher);
	if (n < 0) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	if (json) {
		printf("{\n    \"filename\": ");
		vdisk_json_str(stdout, file);
		printf(",\n    \"cipher\": ");
		vdisk_json_str(stdout, cipher);
		printf(",\n    \"used\": %d,\n    \"slots\": [", n);
		for (i = 0; i < VD_KEY_SLOTS; i++) {
			if (!slots[i].used) {
				continue;
			}
			printf("%s\n        { \"slot\": %d, \"opslimit\": %" PRIu64
			       ", \"memlimit\": %" PRIu64 " }",
			       first ? "" : ",", i, slots[i].opslimit, slots[i].memlimit);
			first = 0;
		}
		printf("%s]\n}\n", first ? "" : "\n    ");
		return VDISK_EXIT_OK;
	}
	printf("cipher: %s\n", cipher ? cipher : "?");
	printf("key slots: %d of %d used\n", n, VD_KEY_SLOTS);
	for (i = 0; i < VD_KEY_SLOTS; i++) {
		if (slots[i].used) {
			printf("slot %d: used (argon2id, ops %" PRIu64 ", memory %s)\n", i,
			       slots[i].opslimit,
			       vdisk_human_size(slots[i].memlimit, hs, sizeof(hs)));
		} else {
			printf("slot %d: free\n", i);
		}
	}
	return VDISK_EXIT_OK;
}

static int
vdisk_key_add(const char *file, struct vd_pass_src *newsrc, uint64_t ops, uint64_t mem)
{
	char *old = NULL, *new = NULL;
	int rc = VDISK_EXIT_ERROR, slot;

	if (sodium_init() < 0) {
		vdisk_error(file, "libsodium cannot be initialised");
		return rc;
	}
	old = sodium_malloc(VDISK_PASS_BUF);
	new = sodium_malloc(VDISK_PASS_BUF);
	if (!old || !new) {
		vdisk_error(file, "out of secure memory");
		goto out;
	}
	vdisk_pass.prompt = "Existing passphrase: ";
	if (vd_pass_get(&vdisk_pass, file, old, VDISK_PASS_BUF) < 0) {
		vdisk_lib_error(file);
		goto out;
	}
	if (vd_pass_get(newsrc, file, new, VDISK_PASS_BUF) < 0) {
		if (vd_get_errno() == ENXIO && !newsrc->key_file && newsrc->key_fd < 0) {
			/* The shared message names --key-file, the old passphrase's option. */
			vdisk_error(file, "a new passphrase is needed and there is no terminal "
					  "to ask it on: use --new-key-file FILE or --new-key-fd N");
		} else {
			vdisk_lib_error(file);
		}
		goto out;
	}
	slot = vd_key_add(file, old, new, ops, mem);
	if (slot < 0) {
		vdisk_lib_error(file);
		goto out;
	}
	printf("added key slot %d\n", slot);
	rc = VDISK_EXIT_OK;
out:
	sodium_free(old);
	sodium_free(new);
	vd_pass_src_clear(newsrc);
	return rc;
}

static int
vdisk_key_remove(const char *file, const char *slotstr)
{
	char *old;
	uint64_t slot;
	int rc = VDISK_EXIT_ERROR;

	if (vdisk_parse_uint(slotstr, VD_KEY_SLOTS - 1, &slot) < 0) {
		return vdisk_usage_error("key", "SLOT '%s': a number from 0 to %d", slotstr,
					 VD_KEY_SLOTS - 1);
	}
	if (sodium_init() < 0 || !(old = sodium_malloc(VDISK_PASS_BUF))) {
		vdisk_error(file, "out of secure memory");
		return rc;
	}
	if (vd_pass_get(&vdisk_pass, file, old, VDISK_PASS_BUF) < 0) {
		vdisk_lib_error(file);
		goto out;
	}
	if (vd_key_remove(file, old, (int)slot) < 0) {
		vdisk_lib_error(file);
		goto out;
	}
	printf("removed key slot %d\n", (int)slot);
	rc = VDISK_EXIT_OK;
out:
	sodium_free(old);
	return rc;
}

int
vdisk_cmd_key(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"new-key-file", required_argument, NULL, OPT_NEW_FILE},
		{"new-key-fd", required_argument, NULL, OPT_NEW_FD},
		{"pwhash-ops", required_argument, NULL, OPT_PW_OPS},
		{"pwhash-mem", required_argument, NULL, OPT_PW_MEM},
		{NULL, 0, NULL, 0},
	};
	struct vd_pass_src newsrc = {.key_fd = -1, .confirm = 1, .prompt = "New passphrase: "};
	uint64_t ops = 0, mem = 0, v;
	const char *sub;
	bool json = false, newgiven = false;
	int c, nargs;

	if (argc < 2) {
		return vdisk_usage_error("key", "give list, add or remove");
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
		case OPT_NEW_FILE:
			newsrc.key_file = optarg;
			newgiven = true;
			break;
		case OPT_NEW_FD:
			if (vdisk_parse_uint(optarg, 1u << 20, &v) < 0) {
				return vdisk_usage_error("key",
							 "--new-key-fd '%s': not a file "
							 "descriptor",
							 optarg);
			}
			newsrc.key_fd = (int)v;
			newgiven = true;
			break;
		case OPT_PW_OPS:
		case OPT_PW_MEM:
			if (vdisk_parse_pwhash("key", c, optarg, &ops, &mem) < 0) {
				return VDISK_EXIT_ERROR;
			}
			break;
		default:
			return vdisk_usage_error("key", "bad option");
		}
	}
	nargs = argc - optind;
	if (newsrc.key_file && newsrc.key_fd >= 0) {
		return vdisk_usage_error("key", "give either --new-key-file or --new-key-fd");
	}
	if (strcmp(sub, "list") == 0) {
		if (nargs != 1 || newgiven) {
			return vdisk_usage_error("key", "usage: key list [--json] FILE");
		}
		return vdisk_key_list(argv[optind], json);
	}
	if (json) {
		return vdisk_usage_error("key", "--json is for key list");
	}
	if (strcmp(sub, "add") == 0) {
		if (nargs != 1) {
			return vdisk_usage_error("key", "usage: key add [OPTIONS] FILE");
		}
		return vdisk_key_add(argv[optind], &newsrc, ops, mem);
	}
	if (strcmp(sub, "remove") == 0) {
		if (nargs != 2 || newgiven) {
			return vdisk_usage_error("key", "usage: key remove FILE SLOT");
		}
		return vdisk_key_remove(argv[optind], argv[optind + 1]);
	}
	return vdisk_usage_error("key", "unknown subcommand '%s'", sub);
}
