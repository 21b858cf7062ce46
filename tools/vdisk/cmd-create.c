// SPDX-License-Identifier: MIT
/*
 * vdisk create: a new native image, optionally an overlay over a backing file
 * of any format (-b, with its format recorded: -F or probed now, never a raw
 * guess) and optionally encrypted (--encrypt, --cipher). The new passphrase
 * comes from --key-file / --key-fd or is asked twice on the terminal; an
 * encrypted backing is unlocked with the same key source.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sodium.h>

#include "cli.h"

/*
 * A raw backing is never guessed (qemu's CVE-2008-2004 lesson: a guest could
 * write a header into a raw disk and have it taken for something else next
 * time). Without -F, probe the backing now and refuse if it only looks raw.
 * Returns true (after printing) when refused or unreadable.
 */
static bool
vdisk_backing_is_raw(const char *file, const char *backing, struct vd_pass_src *pass)
{
	struct vd_open_opts bo = { .passphrase = vd_pass_get, .passphrase_opaque = pass };
	struct vd_layer_info li;
	struct vd_image *b = vd_open(backing, &bo);
	bool raw;

	if (!b) {
		vdisk_lib_error(backing);
		return true;
	}
	raw = vd_layer_info(b, 0, &li) == 0 && strcmp(li.format, "raw") == 0;
	vd_close(b);
	if (raw) {
		vdisk_error(file, "backing file %s has no format header: give -F raw to use it as "
			    "a raw image (a raw backing is never guessed)", backing);
	}
	return raw;
}

/*
 * An overlay over a backing chain that something else is writing (a vdiskfs
 * mount takes an exclusive lock, which vd_create meets; a QEMU process takes
 * only its own byte lock) would show a disk that changes underneath it: the
 * backing chain is opened and refused if a layer has a writer, unless -U.
 * Returns true when refused or unreadable (after printing).
 */
static bool
vdisk_backing_busy(const char *file, const char *backing, const char *fmt, bool force)
{
	struct vd_image *b = vdisk_open(backing, fmt, 0);
	int r;

	if (!b) {
		return true;
	}
	r = vdisk_hold_still("create", file, b, force);
	vd_close(b);
	return r < 0;
}

/*
 * qemu-img create makes a raw image by default and the format its name says
 * otherwise: `vdisk create disk.img 10G` or `-b base.qcow2 top.qcow2` still makes
 * a vdk image, which other tools will not read as the name promises. Say so.
 */
static void
vdisk_create_name_warning(const char *file)
{
	static const char *const ext[][2] = {
		{".raw", "raw"},   {".img", "raw"}, {".qcow2", "qcow2"},
		{".vmdk", "vmdk"}, {".vhd", "vhd"}, {".vhdx", "vhdx"},
	};
	size_t n = strlen(file);

	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		size_t e = strlen(ext[i][0]);

		if (n > e && strcasecmp(file + n - e, ext[i][0]) == 0) {
			fprintf(stderr,
				"vdisk: %s: warning: this is a vdk image, whatever its name says "
				"(vdisk creates vdk images only; other tools will not take it for "
				"%s)\n",
				file, ext[i][1]);
			return;
		}
	}
}

int
vdisk_cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"size", required_argument, NULL, 's'},
		{"backing", required_argument, NULL, 'b'},
		{"backing-format", required_argument, NULL, 'F'},
		{"force-share", no_argument, NULL, 'U'},
		VDISK_IMAGE_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	struct vd_create_opts o = {0};
	struct vd_pass_src newpass = {
		.key_file = vdisk_pass.key_file, .key_fd = vdisk_pass.key_fd, .confirm = 1};
	const char *file, *cipher = NULL, *size_str = "";
	char *pass = NULL;
	bool encrypt = false, have_size = false, force = false;
	char hs[32];
	int c, rc = VDISK_EXIT_ERROR;

	while ((c = getopt_long(argc, argv, "s:b:F:U", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (vdisk_parse_size(optarg, &o.size) < 0 || o.size == 0) {
				return vdisk_usage_error("create", "invalid size '%s'%s", optarg,
							 vdisk_size_hint(optarg));
			}
			have_size = true;
			size_str = optarg;
			break;
		case 'b':
			o.backing = optarg;
			break;
		case 'F':
			o.backing_format = vdisk_format_name(optarg);
			break;
		case 'U':
			force = true;
			break;
		default:
			switch (vdisk_image_opt("create", c, optarg, &o, &encrypt, &cipher)) {
			case 1:
				break;
			case 0:
				return vdisk_usage_error("create", "bad option");
			default:
				return VDISK_EXIT_ERROR;
			}
		}
	}
	if (optind + 2 == argc && !have_size) {
		/* qemu-img's order, `create FILE SIZE`, is what many type first. */
		if (vdisk_parse_size(argv[optind + 1], &o.size) < 0 || o.size == 0) {
			return vdisk_usage_error("create", "invalid size '%s'%s", argv[optind + 1],
						 vdisk_size_hint(argv[optind + 1]));
		}
		have_size = true;
		size_str = argv[optind + 1];
		argc--;
	}
	if (optind + 1 != argc) {
		return vdisk_usage_error("create",
					 optind >= argc ? "FILE is missing" : "too many arguments");
	}
	file = argv[optind];
	if (!have_size && !o.backing) {
		return vdisk_usage_error("create", "give a size (-s SIZE) or a backing file (-b)");
	}
	if (o.backing_format && !o.backing) {
		return vdisk_usage_error("create", "-F needs -b");
	}
	if (have_size && o.size > VD_MAX_SIZE) {
		vdisk_error(file, "size %s is above the limit of %s", size_str,
			    vdisk_human_size(VD_MAX_SIZE, hs, sizeof(hs)));
		return VDISK_EXIT_ERROR;
	}
	if (cipher && !encrypt) {
		return vdisk_usage_error("create", "--cipher needs --encrypt");
	}
	if (cipher && strcmp(cipher, "xchacha20poly1305") != 0 &&
	    strcmp(cipher, "aes256gcm") != 0) {
		return vdisk_usage_error("create",
					 "unknown cipher '%s' (xchacha20poly1305 or "
					 "aes256gcm)",
					 cipher);
	}
	if (encrypt) {
		if (sodium_init() < 0) {
			vdisk_error(file, "libsodium cannot be initialised");
			return VDISK_EXIT_ERROR;
		}
		pass = sodium_malloc(1024);
		if (!pass) {
			vdisk_error(file, "out of secure memory");
			return VDISK_EXIT_ERROR;
		}
		if (vd_pass_get(&newpass, file, pass, 1024) < 0) {
			vdisk_lib_error(file);
			goto out;
		}
		/* An encrypted backing opens with the same passphrase, asked once. */
		if (!vdisk_pass.cached) {
			vdisk_pass.cached = newpass.cached;
			newpass.cached = NULL;
		}
		o.cipher = cipher ? cipher : "xchacha20poly1305";
		o.passphrase = pass;
	}
	o.backing_passphrase = vd_pass_get;
	o.backing_passphrase_opaque = &vdisk_pass;
	if (o.backing && !o.backing_format && vdisk_backing_is_raw(file, o.backing, &vdisk_pass)) {
		goto out;
	}
	if (o.backing && vdisk_backing_busy(file, o.backing, o.backing_format, force)) {
		goto out;
	}
	if (vd_create(file, &o) < 0) {
		struct stat st;

		if (vd_get_errno() == EEXIST && stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
			vdisk_error(file, "is a directory: FILE is the new image's file name");
		} else {
			vdisk_lib_error(file);
		}
		goto out;
	}
	vdisk_create_name_warning(file);
	rc = VDISK_EXIT_OK;
out:
	vd_pass_src_clear(&newpass);
	sodium_free(pass);
	return rc;
}
