// SPDX-License-Identifier: MIT
/*
 * vdisk resize: change the virtual size of an image, as `qemu-img resize`.
 * SIZE is absolute or relative (+N / -N, the same units as create) and is
 * rounded up to a multiple of 512. Shrinking needs --shrink (data past the new
 * end is dropped). A native image is resized by vd_resize (one commit: the
 * image has the old size or the new one after a crash); only its top changes,
 * the snapshots under it keep their own size. A raw file is simply truncated
 * (it has no backing, so nothing can show through). A frozen layer (a
 * snapshot file, mode 0444) is refused: the layers above it read through it,
 * and a snapshot must not change. Other foreign formats are refused with a
 * pointer to qemu-img. The lock is the same as any writer's: an image
 * mounted by vdiskfs or open by another writer is "in use".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* A raw top: ftruncate under an exclusive lock (a vdiskfs mount holds one). */
static int
vdisk_resize_raw(const char *file, uint64_t cur, uint64_t size, bool shrink)
{
	int fd;

	if (size < cur && !shrink) {
		vdisk_error(file, "shrinking from %llu to %llu bytes drops the data past the new "
			    "end: give --shrink to do it",
			    (unsigned long long)cur, (unsigned long long)size);
		return VDISK_EXIT_ERROR;
	}
	fd = open(file, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		vdisk_error(file, "%s", strerror(errno));
		return VDISK_EXIT_ERROR;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		vdisk_error(file, "%s", errno == EWOULDBLOCK
					? "image is in use by another program (locked)"
					: strerror(errno));
		close(fd);
		return VDISK_EXIT_ERROR;
	}
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		vdisk_error(file, "cannot resize: %s", strerror(errno));
		close(fd);
		return VDISK_EXIT_ERROR;
	}
	close(fd);
	return VDISK_EXIT_OK;
}

int
vdisk_cmd_resize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"shrink", no_argument, NULL, 'S'},
		{"format", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	const char *file, *fmt = NULL, *arg, *neg = NULL;
	struct vd_layer_info li;
	struct vd_image *img;
	struct stat sb;
	bool shrink = false, raw;
	uint64_t cur, n, size;
	char hs[32];
	int c, r, rel = 0;

	/* A negative SIZE looks like an option to getopt: take it first (as qemu-img does). */
	if (argc >= 2 && argv[argc - 1][0] == '-' && argv[argc - 1][1] >= '0' &&
	    argv[argc - 1][1] <= '9') {
		neg = argv[argc - 1];
		argc--;
	}
	while ((c = getopt_long(argc, argv, "f:", longopts, NULL)) != -1) {
		switch (c) {
		case 'S':
			shrink = true;
			break;
		case 'f':
			fmt = optarg;
			break;
		default:
			return vdisk_usage_error("resize", "bad option");
		}
	}
	if (argc - optind != (neg ? 1 : 2)) {
		return vdisk_usage_error(argv[0], "expected FILE and SIZE");
	}
	file = argv[optind];
	arg = neg ? neg : argv[optind + 1];
	if (*arg == '+' || *arg == '-') {
		rel = *arg == '+' ? 1 : -1;
		arg++;
	}
	r = vdisk_parse_size(arg, &n);
	if (r < 0) {
		return vdisk_usage_error(argv[0], "bad size '%s'%s", neg ? neg : argv[optind + 1],
					 vdisk_size_hint(arg));
	}
	if (stat(file, &sb) == 0 && S_ISREG(sb.st_mode) && !(sb.st_mode & 0222)) {
		vdisk_error(file, "is read-only: a frozen snapshot layer cannot be resized (the "
			    "layers above read through it); resize the top of the chain");
		return VDISK_EXIT_ERROR;
	}
	/* The format and current size first, read-only (a raw file is not opened by the library). */
	img = vdisk_open(file, fmt, 0);
	if (!img) {
		return VDISK_EXIT_ERROR;
	}
	cur = vd_get_size(img);
	r = vd_layer_info(img, 0, &li);
	raw = r == 0 && strcmp(li.format, "raw") == 0;
	if (r == 0 && !raw && strcmp(li.format, "vdk") != 0) {
		vdisk_error(file, "resize supports native .vdk images and raw files; use qemu-img "
			    "resize for %s", li.format);
		vd_close(img);
		return VDISK_EXIT_ERROR;
	}
	vd_close(img);
	if (r < 0) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	if (rel > 0) {
		if (n > VD_MAX_SIZE || cur + n > VD_MAX_SIZE + (raw ? 0 : 511)) {
			vdisk_error(file, "%llu + %llu bytes is more than the largest disk (64 TiB)",
				    (unsigned long long)cur, (unsigned long long)n);
			return VDISK_EXIT_ERROR;
		}
		size = cur + n;
	} else if (rel < 0) {
		if (n >= cur) {
			vdisk_error(file, "cannot shrink by %llu bytes: the disk has %llu",
				    (unsigned long long)n, (unsigned long long)cur);
			return VDISK_EXIT_ERROR;
		}
		size = cur - n;
	} else {
		size = n;
	}
	if (size == 0) {
		vdisk_error(file, "a disk cannot be empty; the smallest is 512 bytes");
		return VDISK_EXIT_ERROR;
	}
	if (raw) {
		if (size > VD_MAX_SIZE) {
			vdisk_error(file, "%llu bytes is more than the largest disk (64 TiB)",
				    (unsigned long long)size);
			return VDISK_EXIT_ERROR;
		}
		return vdisk_resize_raw(file, cur, size, shrink);
	}
	size = (size + 511) & ~511ull;
	if (size > VD_MAX_SIZE) {
		vdisk_error(file, "%llu bytes is more than the largest disk (64 TiB)",
			    (unsigned long long)size);
		return VDISK_EXIT_ERROR;
	}
	if (size < cur && !shrink) {
		vdisk_error(file, "shrinking from %llu to %llu bytes (%s) drops the data past the new "
			    "end: give --shrink to do it", (unsigned long long)cur,
			    (unsigned long long)size, vdisk_human_size(size, hs, sizeof(hs)));
		return VDISK_EXIT_ERROR;
	}
	img = vdisk_open(file, "vdk", VD_OPEN_RDWR);
	if (!img) {
		return VDISK_EXIT_ERROR;
	}
	r = vd_resize(img, size, shrink ? VD_RESIZE_SHRINK : 0);
	if (r < 0) {
		vdisk_lib_error(file);
		vd_close(img);
		return VDISK_EXIT_ERROR;
	}
	r = vd_close(img);
	if (r < 0) {
		vdisk_lib_error(file);
		return VDISK_EXIT_ERROR;
	}
	printf("Image resized.\n");
	return VDISK_EXIT_OK;
}
