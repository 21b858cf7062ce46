// SPDX-License-Identifier: MIT
/*
 * VHD reader (Microsoft "Virtual Hard Disk Image Format Specification" 1.0;
 * qemu calls it "vpc"): fixed, dynamic and differencing disks.
 *
 * A VHD ends with a 512-byte footer (copied at offset 0 in dynamic and
 * differencing disks). Fixed disks are raw data before the footer. Dynamic
 * and differencing disks have a dynamic header with a block allocation table
 * (BAT); each allocated block is a sector bitmap followed by the block's data.
 * In a differencing disk the bitmap says which sectors this file holds (the
 * others come from the parent, named by a parent locator); in a dynamic disk
 * an allocated block is read whole, as qemu does.
 *
 * The virtual size follows qemu's rule so that both agree byte for byte:
 * CHS geometry for images from Virtual PC, qemu and unknown creators, the
 * footer's current size for Hyper-V ("win "), qemu force_size ("qem2"),
 * Disk2vhd, XenServer and XenConverter, or when the geometry is the maximum.
 *
 * Read-only and PARALLEL: the BAT is loaded at open; bitmaps are read per call.
 * Hostile input: footer and header checksums are verified, the BAT is capped
 * at 16 Mi entries and must lie in the file, block sizes are powers of two up
 * to 256 MiB, and every block must start inside the file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"
#include "foreign.h"

#define VHD_FIXED 2
#define VHD_DYNAMIC 3
#define VHD_DIFF 4
#define VHD_UNALLOC 0xffffffffu
#define VHD_MAX_BAT (16u << 20)
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_EPOCH 946684800 /* 2000-01-01T00:00:00Z */
#define VHD_MAX_GEOMETRY (65535ull * 16 * 255)

struct vhd_state {
	int type;
	uint64_t file_size;
	uint32_t block;	 /* bytes */
	uint32_t bitmap; /* bytes of the sector bitmap before each block's data */
	uint32_t bat_n;
	uint32_t *bat;
	bool end_footer_bad; /* the footer at the end is damaged: the copy at 0 was read */
};

static uint32_t
vhd_checksum(const uint8_t *p, size_t len, size_t skip)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i < skip || i >= skip + 4) {
			sum += p[i];
		}
	}
	return ~sum;
}

static bool
vhd_footer_ok(const uint8_t *f)
{
	return memcmp(f, "conectix", 8) == 0 && vhd_checksum(f, 512, 64) == vd_be32(f + 64);
}

static int
vhd_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	size_t n = filename ? strlen(filename) : 0;

	if (len >= 8 && memcmp(buf, "conectix", 8) == 0) {
		return 100;
	}
	if (file_size >= 512 && file_size <= len && vhd_footer_ok(buf + file_size - 512)) {
		return 100;
	}
	/* A fixed VHD has its footer only at the end: trust the name, just above raw. */
	if (n > 4 && strcasecmp(filename + n - 4, ".vhd") == 0 && file_size % 512 == 0 &&
	    file_size >= 512) {
		return 2;
	}
	return 0;
}

/* Read and verify the footer (at the end, else the copy at offset 0: *from_copy set). */
static int
vhd_read_footer(int fd, uint64_t file_size, uint8_t *f, const char *path, bool *from_copy)
{
	*from_copy = false;
	if (file_size < 512) {
		return vd_set_error(EINVAL, "%s: too short for a VHD", path);
	}
	if (vd_full_pread(fd, f, 512, file_size - 512) == 0 && vhd_footer_ok(f)) {
		return 0;
	}
	if (vd_full_pread(fd, f, 512, 0) == 0 && vhd_footer_ok(f)) {
		*from_copy = true;
		return 0;
	}
	return vd_set_error(EINVAL, "%s: no valid VHD footer (bad cookie or checksum)", path);
}

/* Parent path from the locators (relative Windows path preferred), else the unicode name. */
static char *
vhd_parent_name(struct vd_layer *l, struct vhd_state *s, const uint8_t *dh)
{
	static const char *const codes[] = {"W2ru", "MacX", "W2ku"};
	char *name = NULL, *p;
	size_t c;
	int i;

	for (c = 0; c < VD_ARRAY_SIZE(codes) && !name; c++) {
		for (i = 0; i < 8 && !name; i++) {
			const uint8_t *e = dh + 576 + 24 * i;
			uint32_t dlen = vd_be32(e + 8);
			uint64_t doff = vd_be64(e + 16);
			uint8_t *d;

			if (memcmp(e, codes[c], 4) != 0 || dlen == 0 || dlen > 65536 ||
			    !ft_in_file(doff, dlen, s->file_size)) {
				continue;
			}
			d = malloc(dlen + 2);
			if (!d || vd_full_pread(l->fd, d, dlen, doff) < 0) {
				free(d);
				continue;
			}
			d[dlen] = d[dlen + 1] = 0;
			if (c == 1) {
				name = strndup((char *)d, dlen);
				if (name && strncmp(name, "file://", 7) == 0) {
					memmove(name, name + 7, strlen(name + 7) + 1);
				}
			} else {
				name = ft_utf16_to_utf8(d, dlen / 2, false);
			}
			free(d);
			if (name && c == 2 && strlen(name) > 2 && name[1] == ':') {
				/* An absolute Windows path: keep the file name, beside this disk.
				 */
				char *b = strrchr(name, '\\');

				if (b) {
					memmove(name, b + 1, strlen(b + 1) + 1);
				}
			}
			if (name && !*name) {
				free(name);
				name = NULL;
			}
		}
	}
	if (!name) {
		name = ft_utf16_to_utf8(dh + 64, 256, true);
		if (name && !*name) {
			free(name);
			return NULL;
		}
	}
	if (!name) {
		return NULL;
	}
	for (p = name; *p; p++) {
		if (*p == '\\') {
			*p = '/';
		}
	}
	if (strncmp(name, "./", 2) == 0) {
		memmove(name, name + 2, strlen(name + 2) + 1);
	}
	return name;
}

static int
vhd_check_parent(struct vd_layer *l, const uint8_t *dh)
{
	static const uint8_t zero[16];
	int fd = vd_layer_open_related(l, l->backing, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	uint8_t f[512];
	int64_t fsz;
	bool copy;
	int ret = 0;

	if (fd < 0) {
		return 0; /* the core reports the missing parent */
	}
	fsz = ft_file_size(fd);
	if (fsz >= 0 && vhd_read_footer(fd, (uint64_t)fsz, f, l->backing, &copy) == 0 &&
	    memcmp(dh + 40, zero, 16) != 0 && memcmp(f + 68, dh + 40, 16) != 0) {
		ret = vd_set_error(EINVAL,
				   "%s: parent %s has a different unique ID than this "
				   "differencing disk expects",
				   l->path, l->backing);
	}
	close(fd);
	return ret;
}

static int
vhd_open(struct vd_layer *l)
{
	struct vhd_state *s = l->st;
	uint8_t f[512], dh[1024];
	int64_t fsz = ft_file_size(l->fd);
	uint64_t size, doff, bat_off, chs;
	uint32_t i;
	const char *app;
	bool use_chs;
	int ret;

	if (fsz < 0) {
		return vd_set_error(EINVAL, "%s: not a regular file", l->path);
	}
	s->file_size = (uint64_t)fsz;
	ret = vhd_read_footer(l->fd, s->file_size, f, l->path, &s->end_footer_bad);
	if (ret < 0) {
		return ret;
	}
	s->type = (int)vd_be32(f + 60);
	if (s->type != VHD_FIXED && s->type != VHD_DYNAMIC && s->type != VHD_DIFF) {
		return vd_set_error(ENOTSUP, "%s: unsupported VHD disk type %d", l->path, s->type);
	}
	app = (const char *)f + 28;
	chs = (uint64_t)vd_be16(f + 56) * f[58] * f[59];
	use_chs = memcmp(app, "win ", 4) && memcmp(app, "qem2", 4) && memcmp(app, "d2v ", 4) &&
		  memcmp(app, "CTXS", 4) && memcmp(app, "tap", 4);
	size = (!use_chs || chs == VHD_MAX_GEOMETRY) ? vd_be64(f + 48) / 512 * 512 : chs * 512;
	if (size > (UINT64_C(1) << 44)) {
		return vd_set_error(EFBIG, "%s: virtual size too large", l->path);
	}
	memcpy(l->uuid, f + 68, 16);
	l->created = (int64_t)vd_be32(f + 24) + VHD_EPOCH;
	l->size = size;
	if (s->type == VHD_FIXED) {
		if (size > s->file_size - 512) {
			return vd_set_error(EINVAL, "%s: fixed VHD shorter than its size", l->path);
		}
		l->granularity = 1u << 21;
		return 0;
	}
	doff = vd_be64(f + 16);
	if (!ft_in_file(doff, 1024, s->file_size) || vd_full_pread(l->fd, dh, 1024, doff) < 0) {
		return vd_set_error(EINVAL, "%s: dynamic header outside the file", l->path);
	}
	if (memcmp(dh, "cxsparse", 8) != 0 || vhd_checksum(dh, 1024, 36) != vd_be32(dh + 36)) {
		return vd_set_error(EINVAL, "%s: bad dynamic header (cookie or checksum)", l->path);
	}
	bat_off = vd_be64(dh + 16);
	s->bat_n = vd_be32(dh + 28);
	s->block = vd_be32(dh + 32);
	if (!VD_IS_POW2(s->block) || s->block < 512 || s->block > VHD_MAX_BLOCK) {
		return vd_set_error(EINVAL, "%s: bad block size %u", l->path, s->block);
	}
	if (s->bat_n > VHD_MAX_BAT) {
		return vd_set_error(EFBIG, "%s: block table too big (%u entries)", l->path,
				    s->bat_n);
	}
	if ((uint64_t)s->bat_n * s->block < size) {
		return vd_set_error(EINVAL, "%s: block table too small for the disk size", l->path);
	}
	if (!ft_in_file(bat_off, (uint64_t)s->bat_n * 4, s->file_size)) {
		return vd_set_error(EINVAL, "%s: block table outside the file", l->path);
	}
	s->bitmap = VD_ALIGN_UP(s->block / 512 / 8, 512u);
	if (s->bitmap == 0) {
		s->bitmap = 512;
	}
	s->bat = malloc(((size_t)s->bat_n + 1) * 4);
	if (!s->bat) {
		return -ENOMEM;
	}
	if (vd_full_pread(l->fd, s->bat, (size_t)s->bat_n * 4, bat_off) < 0) {
		ret = vd_set_error(EIO, "%s: cannot read the block table", l->path);
		goto fail;
	}
	for (i = 0; i < s->bat_n; i++) {
		s->bat[i] = be32toh(s->bat[i]);
	}
	l->granularity = VD_MIN(s->block, 1u << 21);
	if (s->type == VHD_DIFF) {
		l->granularity = 512;
		l->backing = vhd_parent_name(l, s, dh);
		if (!l->backing) {
			ret = vd_set_error(EINVAL, "%s: differencing disk without a parent locator",
					   l->path);
			goto fail;
		}
		l->backing_format = strdup("vhd");
		ret = vhd_check_parent(l, dh);
		if (ret < 0) {
			goto fail;
		}
	}
	return 0;
fail:
	free(s->bat);
	s->bat = NULL;
	return ret;
}

static void
vhd_close(struct vd_layer *l)
{
	struct vhd_state *s = l->st;

	free(s->bat);
	s->bat = NULL;
}

/* Map [off, off+len) up to the end of its block: kind and file offset of off. */
static int
vhd_map1(struct vd_layer *l, uint64_t off, uint64_t len, enum vd_extent_type *type, uint64_t *n,
	 uint64_t *host)
{
	struct vhd_state *s = l->st;
	uint64_t blk, in, e, data;
	uint8_t bm[512];

	if (s->type == VHD_FIXED) {
		*type = VD_EXTENT_DATA;
		*n = len;
		*host = off;
		return 0;
	}
	blk = off / s->block;
	in = off % s->block;
	*n = VD_MIN(len, s->block - in);
	if (blk >= s->bat_n) {
		return vd_set_error(EIO, "%s: offset %" PRIu64 " beyond the block table", l->path,
				    off);
	}
	e = s->bat[blk];
	if (e == VHD_UNALLOC) {
		*type = VD_EXTENT_HOLE;
		return 0;
	}
	data = e * 512 + s->bitmap;
	if (data + in >= s->file_size) {
		return vd_set_error(EIO,
				    "%s: block %" PRIu64 " (virtual offset %" PRIu64
				    ") points outside the file",
				    l->path, blk, off);
	}
	*host = data + in;
	*type = VD_EXTENT_DATA;
	if (s->type == VHD_DIFF) {
		/* Sectors present in this file: the run of equal bits from off's sector. */
		uint64_t sec = in / 512, last = (in + *n - 1) / 512, i;
		uint64_t b0 = sec / 8, nb = VD_MIN(last / 8 - b0 + 1, sizeof(bm));
		int first;

		if (vd_full_pread(l->fd, bm, nb, e * 512 + b0) < 0) {
			return vd_set_error(EIO,
					    "%s: cannot read the sector bitmap of block %" PRIu64,
					    l->path, blk);
		}
		first = (bm[0] >> (7 - sec % 8)) & 1;
		for (i = sec + 1; i <= last && i / 8 - b0 < nb; i++) {
			if (((bm[i / 8 - b0] >> (7 - i % 8)) & 1) != first) {
				break;
			}
		}
		*n = VD_MIN(*n, i * 512 - in);
		*type = first ? VD_EXTENT_DATA : VD_EXTENT_HOLE;
	}
	return 0;
}

static int
vhd_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	return ft_block_status(l, vhd_map1, off, len, ext);
}

static int
vhd_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	return ft_pread(l, vhd_map1, buf, len, off);
}

static uint64_t
vhd_allocated(struct vd_layer *l)
{
	struct vhd_state *s = l->st;

	return s->type == VHD_FIXED ? l->size : ft_allocated(l);
}

static int
vhd_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	  struct vd_check_result *res)
{
	struct vhd_state *s = l->st;
	/* Blocks end before the footer at the end, or at the end if that one is damaged. */
	uint64_t limit = s->end_footer_bad ? s->file_size : s->file_size - 512;
	uint32_t i;
	char msg[256];

	if (s->end_footer_bad) {
		res->corrupt++;
		snprintf(msg, sizeof(msg),
			 "%s: the footer at the end of the file is missing or damaged (the copy "
			 "at offset 0 was used)",
			 l->path);
		if (report) {
			report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
		}
	}
	for (i = 0; s->type != VHD_FIXED && i < s->bat_n; i++) {
		uint64_t e = s->bat[i];

		if (e == VHD_UNALLOC || (uint64_t)i * s->block >= l->size) {
			continue;
		}
		res->blocks_checked++;
		if (!ft_in_file(e * 512, (uint64_t)s->bitmap + s->block, limit)) {
			res->corrupt++;
			snprintf(msg, sizeof(msg),
				 "%s: block %u at sector %" PRIu64 " runs past the end of the file",
				 l->path, i, e);
			if (report && res->corrupt <= 100) {
				report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
			}
		} else {
			res->bytes_checked += s->block;
		}
	}
	return 0;
}

const struct vd_driver vd_vhd_driver = {
	.name = "vhd",
	.instance_size = sizeof(struct vhd_state),
	.thread_model = VD_THREAD_PARALLEL,
	.probe = vhd_probe,
	.open = vhd_open,
	.close = vhd_close,
	.pread = vhd_pread,
	.block_status = vhd_block_status,
	.allocated = vhd_allocated,
	.check = vhd_check,
};
