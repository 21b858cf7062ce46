// SPDX-License-Identifier: MIT
/*
 * vdisk compare: do two images (of any formats the library reads, chains
 * included) show the same disk? The answer and the exit status are those of
 * `qemu-img compare`, so that scripts written for it work: "Images are
 * identical." and 0, or "Content mismatch at offset N!" (the first byte that
 * differs) and 1; any error is 2, so that 1 always means "they differ".
 *
 * Design notes. Both images are walked with vd_block_status() side by side,
 * a run at a time: where both read as zeroes (a hole or a zero extent in
 * either chain) nothing is read, so two sparse images of 64 TiB compare in
 * the time their maps take; elsewhere both sides are read in chunks of
 * CMP_CHUNK and compared with memcmp (a side that reads as zeroes is not
 * read: the other one is checked for zeroes). Without -s, images of
 * different sizes are equal when the longer one's tail reads as zeroes (a
 * warning says the sizes differ); with -s (strict) the sizes must be equal
 * and a range must hold data in both or in neither. Both images are held
 * still while they are compared (a shared lock on every layer, as check and
 * convert do), unless -U. -p shows how far the walk is, as convert's does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CMP_EXIT_SAME 0
#define CMP_EXIT_DIFFER 1
#define CMP_EXIT_ERROR 2
#define CMP_CHUNK (1u << 20)

struct cmp_side {
	struct vd_image *img;
	const char *file;
	uint64_t size;
	struct vd_extent e; /* the extent around the walk's offset */
	uint8_t *buf;
};

/* -p: the share of the longer disk looked at so far. */
static struct vdisk_progress cmp_prog = {.last = -1};
static uint64_t cmp_total;


/* Point s->e at the extent holding off (< end <= s->size); 0 or -errno. */
static int
cmp_status(struct cmp_side *s, uint64_t off, uint64_t end)
{
	if (s->e.length && off >= s->e.offset && off < s->e.offset + s->e.length) {
		return 0;
	}
	int rc = vd_block_status(s->img, off, end - off, &s->e);
	if (rc < 0) {
		return rc;
	}
	if (s->e.offset != off || s->e.length == 0 || s->e.length > end - off) {
		return -EIO;
	}
	return 0;
}

/* Index of the first non-zero byte of p[0, len), or len. */
static size_t
cmp_first_nonzero(const uint8_t *p, size_t len)
{
	static const uint8_t zero[4096];
	size_t i = 0;

	while (i + sizeof(zero) <= len && memcmp(p + i, zero, sizeof(zero)) == 0) {
		i += sizeof(zero);
	}
	while (i < len && p[i] == 0) {
		i++;
	}
	return i;
}

/* Index of the first byte where a and b differ in [0, len), or len. */
static size_t
cmp_first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i = 0;

	while (i + 4096 <= len && memcmp(a + i, b + i, 4096) == 0) {
		i += 4096;
	}
	while (i < len && a[i] == b[i]) {
		i++;
	}
	return i;
}

static int
cmp_read(struct cmp_side *s, uint64_t off, size_t len)
{
	int rc = vd_pread(s->img, s->buf, len, off);

	if (rc < 0) {
		vdisk_lib_error(s->file);
	}
	return rc;
}

/*
 * Compare [off, end) of a and b (both at least end long). 0 when equal, 1
 * with *where set at the first difference (or at the run whose allocation
 * differs, with *alloc, in strict mode), -1 after an error (said).
 */
static int
cmp_range(struct cmp_side *a, struct cmp_side *b, uint64_t off, uint64_t end, bool strict,
	  uint64_t *where, bool *alloc)
{
	while (off < end) {
		int rc = cmp_status(a, off, end);
		if (rc < 0 || (rc = cmp_status(b, off, end)) < 0) {
			vdisk_lib_error(rc == 0 ? b->file : a->file);
			return -1;
		}
		uint64_t stop = a->e.offset + a->e.length;
		if (b->e.offset + b->e.length < stop) {
			stop = b->e.offset + b->e.length;
		}
		bool za = a->e.type != VD_EXTENT_DATA, zb = b->e.type != VD_EXTENT_DATA;
		if (strict && za != zb) {
			*where = off;
			*alloc = true;
			return 1;
		}
		if (za && zb) {
			off = stop;
			vdisk_progress(&cmp_prog, off, cmp_total, false);
			continue;
		}
		size_t n = stop - off < CMP_CHUNK ? (size_t)(stop - off) : CMP_CHUNK;
		size_t i;
		if (za || zb) {
			struct cmp_side *d = za ? b : a;
			if (cmp_read(d, off, n) < 0) {
				return -1;
			}
			i = cmp_first_nonzero(d->buf, n);
		} else {
			if (cmp_read(a, off, n) < 0 || cmp_read(b, off, n) < 0) {
				return -1;
			}
			i = cmp_first_diff(a->buf, b->buf, n);
		}
		if (i < n) {
			*where = off + i;
			*alloc = false;
			return 1;
		}
		off += n;
		vdisk_progress(&cmp_prog, off, cmp_total, false);
	}
	return 0;
}

/*
 * The tail of the longer image, [from, its size): equal when it reads as
 * zeroes. Same returns as cmp_range.
 */
static int
cmp_tail(struct cmp_side *s, uint64_t from, uint64_t *where)
{
	uint64_t off = from;

	while (off < s->size) {
		if (cmp_status(s, off, s->size) < 0) {
			vdisk_lib_error(s->file);
			return -1;
		}
		uint64_t stop = s->e.offset + s->e.length;
		if (s->e.type != VD_EXTENT_DATA) {
			off = stop;
			vdisk_progress(&cmp_prog, off, cmp_total, false);
			continue;
		}
		size_t n = stop - off < CMP_CHUNK ? (size_t)(stop - off) : CMP_CHUNK;
		if (cmp_read(s, off, n) < 0) {
			return -1;
		}
		size_t i = cmp_first_nonzero(s->buf, n);
		if (i < n) {
			*where = off + i;
			return 1;
		}
		off += n;
		vdisk_progress(&cmp_prog, off, cmp_total, false);
	}
	return 0;
}

int
vdisk_cmd_compare(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"format", required_argument, NULL, 'f'},
		{"second-format", required_argument, NULL, 'F'},
		{"strict", no_argument, NULL, 's'},
		{"quiet", no_argument, NULL, 'q'},
		{"force-share", no_argument, NULL, 'U'},
		{"progress", no_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *fmt_a = NULL, *fmt_b = NULL;
	bool strict = false, quiet = false, force = false;
	struct cmp_side a = {0}, b = {0};
	int c, rc = CMP_EXIT_ERROR;

	while ((c = getopt_long(argc, argv, "f:F:sqUp", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt_a = optarg;
			break;
		case 'F':
			fmt_b = optarg;
			break;
		case 's':
			strict = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'U':
			force = true;
			break;
		case 'p':
			cmp_prog.on = true;
			break;
		default:
			vdisk_usage_error("compare", "bad option");
			return CMP_EXIT_ERROR;
		}
	}
	if (optind + 2 != argc) {
		vdisk_usage_error("compare", optind + 2 > argc ? "two images are needed"
							     : "too many arguments");
		return CMP_EXIT_ERROR;
	}
	a.file = argv[optind];
	b.file = argv[optind + 1];
	a.img = vdisk_open(a.file, fmt_a, 0);
	if (!a.img) {
		return CMP_EXIT_ERROR;
	}
	b.img = vdisk_open(b.file, fmt_b, 0);
	if (!b.img) {
		goto out;
	}
	if (vdisk_hold_still("compare", a.file, a.img, force) < 0 ||
	    vdisk_hold_still("compare", b.file, b.img, force) < 0) {
		goto out;
	}
	a.size = vd_get_size(a.img);
	b.size = vd_get_size(b.img);
	a.buf = malloc(CMP_CHUNK);
	b.buf = malloc(CMP_CHUNK);
	if (!a.buf || !b.buf) {
		vdisk_error(a.file, "out of memory");
		goto out;
	}
	if (a.size != b.size) {
		if (strict) {
			if (!quiet) {
				printf("Strict mode: Image size mismatch!\n");
			}
			rc = CMP_EXIT_DIFFER;
			goto out;
		}
	}

	uint64_t common = a.size < b.size ? a.size : b.size, where = 0;
	cmp_total = a.size > b.size ? a.size : b.size;
	cmp_prog.on = cmp_prog.on && !quiet;
	vdisk_progress(&cmp_prog, 0, cmp_total, false);
	bool alloc = false;
	int r = cmp_range(&a, &b, 0, common, strict, &where, &alloc);
	if (r == 0 && a.size == b.size) {
		vdisk_progress(&cmp_prog, cmp_total, cmp_total, true);
	} else if (r != 0) {
		vdisk_progress(&cmp_prog, where, cmp_total, true);
	}
	if (r == 0 && a.size != b.size) {
		/* As qemu-img: said once the common part is found equal. */
		if (!quiet) {
			printf("Warning: Image size mismatch!\n");
		}
		r = cmp_tail(a.size > b.size ? &a : &b, common, &where);
		vdisk_progress(&cmp_prog, r == 0 ? cmp_total : where, cmp_total, true);
	}
	if (r < 0) {
		if (cmp_prog.on) {
			printf("\n");
		}
		goto out;
	}
	if (!quiet) {
		if (r == 0) {
			printf("Images are identical.\n");
		} else if (alloc) {
			printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", where);
		} else {
			printf("Content mismatch at offset %" PRIu64 "!\n", where);
		}
	}
	rc = r == 0 ? CMP_EXIT_SAME : CMP_EXIT_DIFFER;
out:
	free(a.buf);
	free(b.buf);
	if (b.img) {
		vd_close(b.img);
	}
	vd_close(a.img);
	return rc;
}
