// SPDX-License-Identifier: MIT
/*
 * VHDX reader, after Microsoft's [MS-VHDX] specification: dynamic, fixed
 * and differencing disks.
 *
 * Layout: a file identifier at 0, two 4 KiB headers (64 KiB and 128 KiB; the
 * valid one with the higher sequence number rules), two region tables
 * (192 KiB, 256 KiB) that place the block allocation table (BAT) and the
 * metadata region. Metadata items give the block size, the virtual size, the
 * logical sector size, the disk ID and, for a differencing disk, the parent
 * locator. The BAT interleaves payload block entries with one sector bitmap
 * entry per chunk (2^23 logical sectors); a partially present block of a
 * differencing disk takes its sectors from this file where the bitmap bit is
 * set and from the parent elsewhere.
 *
 * A VHDX whose header names an active log (non-zero log GUID) has metadata
 * updates that were never applied: we refuse it with a clear message rather
 * than read stale tables (replaying needs write access to the file).
 *
 * Read-only and PARALLEL: the BAT is loaded at open (capped at 128 MiB);
 * sector bitmap pieces are read per call. Hostile input: CRC-32C of headers,
 * region tables and the metadata table is verified; every count, offset and
 * size is bounded and checked against the file; unknown required regions or
 * metadata items are refused.
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

#define VHDX_HDR1 (64u << 10)
#define VHDX_HDR2 (128u << 10)
#define VHDX_RT1 (192u << 10)
#define VHDX_RT2 (256u << 10)
#define VHDX_RT_SIZE (64u << 10)
#define VHDX_MAX_BAT_BYTES (128u << 20)
#define VHDX_MAX_SIZE (UINT64_C(64) << 40)
#define VHDX_MB (UINT64_C(1) << 20)

enum {
	PB_NOT_PRESENT = 0,
	PB_UNDEFINED = 1,
	PB_ZERO = 2,
	PB_UNMAPPED = 3,
	PB_FULLY_PRESENT = 6,
	PB_PARTIALLY_PRESENT = 7,
	SB_PRESENT = 6,
};

static const char *const vhdx_guid_bat = "2DC27766-F623-4200-9D64-115E9BFD4A08";
static const char *const vhdx_guid_meta = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
static const char *const vhdx_guid_fparams = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
static const char *const vhdx_guid_vsize = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
static const char *const vhdx_guid_diskid = "BECA12AB-B2E6-4523-93EF-C309E000C746";
static const char *const vhdx_guid_lss = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
static const char *const vhdx_guid_pss = "CDA348C7-445D-4471-9CC9-E9885251C556";
static const char *const vhdx_guid_parent = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";

struct vhdx_state {
	uint64_t file_size;
	uint32_t block;	      /* payload block size, bytes */
	uint32_t lss;	      /* logical sector size */
	uint64_t chunk_ratio; /* payload blocks per sector bitmap block */
	bool has_parent;
	uint64_t *bat;
	uint64_t bat_n;
};

/* GUID "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX" to its on-disk bytes (mixed-endian). */
static void
vhdx_guid(const char *s, uint8_t out[16])
{
	static const int pos[16] = {6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34};
	int i;

	for (i = 0; i < 16; i++) {
		char hex[3] = {s[pos[i]], s[pos[i] + 1], 0};

		out[i] = (uint8_t)strtoul(hex, NULL, 16);
	}
}

static bool
vhdx_guid_is(const uint8_t *p, const char *s)
{
	uint8_t g[16];

	vhdx_guid(s, g);
	return memcmp(p, g, 16) == 0;
}

/* On-disk GUID bytes to "{XXXXXXXX-...}" upper case. */
static void
vhdx_guid_str(const uint8_t *g, char out[39])
{
	snprintf(out, 39, "{%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}", vd_le32(g),
		 vd_le16(g + 4), vd_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
		 g[15]);
}

static int
vhdx_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)file_size;
	(void)filename;
	return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

static bool
vhdx_crc_ok(uint8_t *buf, size_t len)
{
	uint32_t want = vd_le32(buf + 4), got;

	vd_put_le32(buf + 4, 0);
	got = ft_crc32c(0, buf, len);
	vd_put_le32(buf + 4, want);
	return got == want;
}

/* The current header (valid, highest sequence number) into h (4 KiB). */
static int
vhdx_read_header(int fd, const char *path, uint8_t *h)
{
	uint8_t a[4096], b[4096];
	bool va, vb;

	va = vd_full_pread(fd, a, sizeof(a), VHDX_HDR1) == 0 && memcmp(a, "head", 4) == 0 &&
	     vhdx_crc_ok(a, sizeof(a));
	vb = vd_full_pread(fd, b, sizeof(b), VHDX_HDR2) == 0 && memcmp(b, "head", 4) == 0 &&
	     vhdx_crc_ok(b, sizeof(b));
	if (!va && !vb) {
		return vd_set_error(EINVAL, "%s: no valid VHDX header", path);
	}
	if (va && (!vb || vd_le64(a + 8) >= vd_le64(b + 8))) {
		memcpy(h, a, 4096);
	} else {
		memcpy(h, b, 4096);
	}
	if (vd_le16(h + 66) != 1) {
		return vd_set_error(ENOTSUP, "%s: unsupported VHDX version %u", path,
				    vd_le16(h + 66));
	}
	return 0;
}

/* Read a metadata item (bounded by its region) into a fresh buffer (caller frees). */
static uint8_t *
vhdx_item(struct vd_layer *l, uint64_t meta_off, uint64_t meta_len, const uint8_t *ent,
	  uint32_t min_len)
{
	uint32_t off = vd_le32(ent + 16), len = vd_le32(ent + 20);
	uint8_t *buf;

	if (len < min_len || len > VHDX_MB || off < VHDX_RT_SIZE ||
	    !ft_in_file(off, len, meta_len) || !ft_in_file(meta_off + off, len, UINT64_MAX) ||
	    !ft_in_file(meta_off + off, len, ((struct vhdx_state *)l->st)->file_size)) {
		vd_set_error(EINVAL, "%s: metadata item outside its region", l->path);
		return NULL;
	}
	buf = malloc(len);
	if (!buf) {
		vd_set_error(ENOMEM, "out of memory");
		return NULL;
	}
	if (vd_full_pread(l->fd, buf, len, meta_off + off) < 0) {
		free(buf);
		vd_set_error(EIO, "%s: cannot read a metadata item", l->path);
		return NULL;
	}
	return buf;
}

/* The value of key in a parent locator item (UTF-8, caller frees), or NULL. */
static char *
vhdx_locator_get(const uint8_t *loc, uint32_t len, const char *key)
{
	uint32_t i, n;

	if (len < 20) {
		return NULL;
	}
	n = vd_le16(loc + 18);
	for (i = 0; i < n && 20 + 12 * (uint64_t)(i + 1) <= len; i++) {
		const uint8_t *e = loc + 20 + 12 * i;
		uint32_t ko = vd_le32(e), vo = vd_le32(e + 4), kl = vd_le16(e + 8),
			 vl = vd_le16(e + 10);
		char *k;

		if (!ft_in_file(ko, kl, len) || !ft_in_file(vo, vl, len)) {
			continue;
		}
		k = ft_utf16_to_utf8(loc + ko, kl / 2, false);
		if (k && strcmp(k, key) == 0) {
			free(k);
			return ft_utf16_to_utf8(loc + vo, vl / 2, false);
		}
		free(k);
	}
	return NULL;
}

static int
vhdx_parent(struct vd_layer *l, const uint8_t *loc, uint32_t len)
{
	static const char *const keys[] = {"relative_path", "absolute_win32_path", "volume_path"};
	char *link, *link2, *p = NULL, *q;
	size_t i;
	int fd, ret = 0;
	uint8_t h[4096];

	if (len < 20 || !vhdx_guid_is(loc, "B04AEFB7-D19E-4A81-B789-25B8E9445913")) {
		return vd_set_error(EINVAL, "%s: unknown parent locator type", l->path);
	}
	for (i = 0; i < VD_ARRAY_SIZE(keys) && !p; i++) {
		p = vhdx_locator_get(loc, len, keys[i]);
		if (p && !*p) {
			free(p);
			p = NULL;
		}
		if (p && i > 0) {
			/* An absolute Windows path: keep the file name, beside this disk. */
			q = strrchr(p, '\\');
			if (q) {
				memmove(p, q + 1, strlen(q + 1) + 1);
			}
		}
	}
	if (!p) {
		return vd_set_error(EINVAL, "%s: differencing VHDX without a parent path", l->path);
	}
	for (q = p; *q; q++) {
		if (*q == '\\') {
			*q = '/';
		}
	}
	if (strncmp(p, "./", 2) == 0) {
		memmove(p, p + 2, strlen(p + 2) + 1);
	}
	l->backing = p;
	l->backing_format = strdup("vhdx");
	/* parent_linkage is the parent's data write GUID: a changed parent is refused. */
	link = vhdx_locator_get(loc, len, "parent_linkage");
	link2 = vhdx_locator_get(loc, len, "parent_linkage2");
	fd = vd_layer_open_related(l, p, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd >= 0 && link && ft_file_size(fd) >= 0 && vhdx_read_header(fd, p, h) == 0) {
		char g[39];

		vhdx_guid_str(h + 32, g);
		if (strcasecmp(g, link) != 0 && (!link2 || strcasecmp(g, link2) != 0)) {
			ret = vd_set_error(EINVAL,
					   "%s: parent %s was modified after this differencing "
					   "disk was made (data write GUID %s, expected %s)",
					   l->path, p, g, link);
		}
	}
	if (fd >= 0) {
		close(fd);
	}
	free(link);
	free(link2);
	return ret;
}

static int
vhdx_open(struct vd_layer *l)
{
	struct vhdx_state *s = l->st;
	uint8_t h[4096], *rt = NULL, *mt = NULL, *it;
	uint64_t bat_off = 0, bat_len = 0, meta_off = 0, meta_len = 0, size = 0, data_blocks, i;
	uint32_t n, fparams_flags = 0, seen = 0;
	bool have_fp = false, have_size = false, have_lss = false;
	int64_t fsz = ft_file_size(l->fd);
	int ret;

	if (fsz < 0) {
		return vd_set_error(EINVAL, "%s: not a regular file", l->path);
	}
	s->file_size = (uint64_t)fsz;
	if (s->file_size < VHDX_RT2 + VHDX_RT_SIZE || vd_full_pread(l->fd, h, 8, 0) < 0 ||
	    memcmp(h, "vhdxfile", 8) != 0) {
		return vd_set_error(EINVAL, "%s: not a VHDX file", l->path);
	}
	ret = vhdx_read_header(l->fd, l->path, h);
	if (ret < 0) {
		return ret;
	}
	{
		static const uint8_t zero[16];

		if (memcmp(h + 48, zero, 16) != 0) {
			return vd_set_error(ENOTSUP,
					    "%s: the VHDX log holds unapplied updates (the "
					    "disk was not closed cleanly); open it once in Hyper-V "
					    "or with `qemu-img check -r all` to replay it",
					    l->path);
		}
	}
	rt = malloc(VHDX_RT_SIZE);
	if (!rt) {
		return -ENOMEM;
	}
	if (!(vd_full_pread(l->fd, rt, VHDX_RT_SIZE, VHDX_RT1) == 0 && memcmp(rt, "regi", 4) == 0 &&
	      vhdx_crc_ok(rt, VHDX_RT_SIZE)) &&
	    !(vd_full_pread(l->fd, rt, VHDX_RT_SIZE, VHDX_RT2) == 0 && memcmp(rt, "regi", 4) == 0 &&
	      vhdx_crc_ok(rt, VHDX_RT_SIZE))) {
		ret = vd_set_error(EINVAL, "%s: no valid VHDX region table", l->path);
		goto out;
	}
	n = vd_le32(rt + 8);
	if (n > 2047) {
		ret = vd_set_error(EINVAL, "%s: too many regions (%u)", l->path, n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const uint8_t *e = rt + 16 + 32 * i;
		uint64_t off = vd_le64(e + 16), len = vd_le32(e + 24);

		if (off % VHDX_MB || len % VHDX_MB || len == 0 ||
		    !ft_in_file(off, len, s->file_size)) {
			ret = vd_set_error(EINVAL, "%s: region %" PRIu64 " outside the file",
					   l->path, i);
			goto out;
		}
		if (vhdx_guid_is(e, vhdx_guid_bat)) {
			bat_off = off;
			bat_len = len;
		} else if (vhdx_guid_is(e, vhdx_guid_meta)) {
			meta_off = off;
			meta_len = len;
		} else if (vd_le32(e + 28) & 1) {
			ret = vd_set_error(ENOTSUP, "%s: unknown required region", l->path);
			goto out;
		}
	}
	if (!bat_off || !meta_off) {
		ret = vd_set_error(EINVAL, "%s: BAT or metadata region missing", l->path);
		goto out;
	}
	mt = malloc(VHDX_RT_SIZE);
	if (!mt) {
		ret = -ENOMEM;
		goto out;
	}
	if (vd_full_pread(l->fd, mt, VHDX_RT_SIZE, meta_off) < 0 ||
	    memcmp(mt, "metadata", 8) != 0) {
		ret = vd_set_error(EINVAL, "%s: bad metadata table", l->path);
		goto out;
	}
	n = vd_le16(mt + 10);
	if (n > 2047) {
		ret = vd_set_error(EINVAL, "%s: too many metadata items (%u)", l->path, n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const uint8_t *e = mt + 32 + 32 * i;
		int kind = vhdx_guid_is(e, vhdx_guid_fparams)  ? 1
			   : vhdx_guid_is(e, vhdx_guid_vsize)  ? 2
			   : vhdx_guid_is(e, vhdx_guid_lss)    ? 3
			   : vhdx_guid_is(e, vhdx_guid_diskid) ? 4
			   : vhdx_guid_is(e, vhdx_guid_parent) ? 5
							       : 0;

		if (kind && (seen & (1u << kind))) {
			ret = vd_set_error(EINVAL, "%s: duplicate metadata item", l->path);
			goto out;
		}
		seen |= 1u << kind;
		if (vhdx_guid_is(e, vhdx_guid_fparams)) {
			it = vhdx_item(l, meta_off, meta_len, e, 8);
			if (!it) {
				ret = -vd_get_errno();
				goto out;
			}
			s->block = vd_le32(it);
			fparams_flags = vd_le32(it + 4);
			have_fp = true;
			free(it);
		} else if (vhdx_guid_is(e, vhdx_guid_vsize)) {
			it = vhdx_item(l, meta_off, meta_len, e, 8);
			if (!it) {
				ret = -vd_get_errno();
				goto out;
			}
			size = vd_le64(it);
			have_size = true;
			free(it);
		} else if (vhdx_guid_is(e, vhdx_guid_lss)) {
			it = vhdx_item(l, meta_off, meta_len, e, 4);
			if (!it) {
				ret = -vd_get_errno();
				goto out;
			}
			s->lss = vd_le32(it);
			have_lss = true;
			free(it);
		} else if (vhdx_guid_is(e, vhdx_guid_diskid)) {
			it = vhdx_item(l, meta_off, meta_len, e, 16);
			if (!it) {
				ret = -vd_get_errno();
				goto out;
			}
			memcpy(l->uuid, it, 16);
			free(it);
		} else if (vhdx_guid_is(e, vhdx_guid_parent)) {
			it = vhdx_item(l, meta_off, meta_len, e, 20);
			if (!it) {
				ret = -vd_get_errno();
				goto out;
			}
			ret = vhdx_parent(l, it, vd_le32(e + 20));
			free(it);
			if (ret < 0) {
				goto out;
			}
		} else if (vhdx_guid_is(e, vhdx_guid_pss)) {
			continue;
		} else if (vd_le32(e + 24) & 4) {
			ret = vd_set_error(ENOTSUP, "%s: unknown required metadata item", l->path);
			goto out;
		}
	}
	if (!have_fp || !have_size || !have_lss) {
		ret = vd_set_error(EINVAL, "%s: required metadata missing", l->path);
		goto out;
	}
	s->has_parent = fparams_flags & 2;
	if (s->has_parent && !l->backing) {
		ret = vd_set_error(EINVAL, "%s: differencing VHDX without a parent locator",
				   l->path);
		goto out;
	}
	if (!VD_IS_POW2(s->block) || s->block < VHDX_MB || s->block > 256 * VHDX_MB) {
		ret = vd_set_error(EINVAL, "%s: bad block size %u", l->path, s->block);
		goto out;
	}
	if (s->lss != 512 && s->lss != 4096) {
		ret = vd_set_error(EINVAL, "%s: bad logical sector size %u", l->path, s->lss);
		goto out;
	}
	if (size > VHDX_MAX_SIZE || size % s->lss) {
		ret = vd_set_error(EINVAL, "%s: bad virtual size %" PRIu64, l->path, size);
		goto out;
	}
	s->chunk_ratio = ((UINT64_C(1) << 23) * s->lss) / s->block;
	data_blocks = VD_DIV_ROUND_UP(size, s->block);
	if (data_blocks == 0) {
		s->bat_n = 0; /* a disk of 0 bytes (qemu-img makes them): nothing to map */
	} else if (s->has_parent) {
		s->bat_n = VD_DIV_ROUND_UP(data_blocks, s->chunk_ratio) * (s->chunk_ratio + 1);
	} else {
		s->bat_n = data_blocks + (data_blocks - 1) / s->chunk_ratio;
	}
	if (s->bat_n * 8 > bat_len || s->bat_n * 8 > VHDX_MAX_BAT_BYTES) {
		ret = vd_set_error(EINVAL,
				   "%s: BAT region too small or too big (%" PRIu64 " entries)",
				   l->path, s->bat_n);
		goto out;
	}
	s->bat = malloc(s->bat_n ? s->bat_n * 8 : 8);
	if (!s->bat) {
		ret = -ENOMEM;
		goto out;
	}
	if (vd_full_pread(l->fd, s->bat, s->bat_n * 8, bat_off) < 0) {
		ret = vd_set_error(EIO, "%s: cannot read the BAT", l->path);
		goto out;
	}
	for (i = 0; i < s->bat_n; i++) {
		s->bat[i] = le64toh(s->bat[i]);
	}
	l->size = size;
	l->created = ft_file_mtime(l->fd);
	l->granularity = s->has_parent ? s->lss : VD_MIN(s->block, 1u << 21);
	ret = 0;
out:
	free(rt);
	free(mt);
	if (ret < 0) {
		free(s->bat);
		s->bat = NULL;
	}
	return ret;
}

static void
vhdx_close(struct vd_layer *l)
{
	struct vhdx_state *s = l->st;

	free(s->bat);
	s->bat = NULL;
}

static int
vhdx_map1(struct vd_layer *l, uint64_t off, uint64_t len, enum vd_extent_type *type, uint64_t *n,
	  uint64_t *host)
{
	struct vhdx_state *s = l->st;
	uint64_t blk = off / s->block, in = off % s->block, idx, e, foff;
	unsigned state;

	*n = VD_MIN(len, s->block - in);
	idx = blk + blk / s->chunk_ratio;
	if (idx >= s->bat_n) {
		return vd_set_error(EIO, "%s: offset %" PRIu64 " beyond the BAT", l->path, off);
	}
	e = s->bat[idx];
	state = e & 7;
	foff = e & ~(VHDX_MB - 1);
	switch (state) {
	case PB_NOT_PRESENT:
	case PB_UNDEFINED:
		*type = VD_EXTENT_HOLE;
		return 0;
	case PB_ZERO:
	case PB_UNMAPPED:
		*type = VD_EXTENT_ZERO;
		return 0;
	case PB_FULLY_PRESENT:
		break;
	case PB_PARTIALLY_PRESENT:
		if (s->has_parent) {
			break;
		}
		/* fall through */
	default:
		return vd_set_error(EIO, "%s: bad BAT entry state %u for block %" PRIu64, l->path,
				    state, blk);
	}
	if (foff == 0 || foff + in >= s->file_size) {
		return vd_set_error(EIO,
				    "%s: block %" PRIu64 " (virtual offset %" PRIu64
				    ") points outside the file",
				    l->path, blk, off);
	}
	*host = foff + in;
	*type = VD_EXTENT_DATA;
	if (state == PB_PARTIALLY_PRESENT) {
		uint64_t chunk = blk / s->chunk_ratio;
		uint64_t sbi = chunk * (s->chunk_ratio + 1) + s->chunk_ratio, sbe, sboff;
		uint64_t base = (blk % s->chunk_ratio) * (s->block / s->lss);
		uint64_t sec = base + in / s->lss, last = base + (in + *n - 1) / s->lss;
		uint64_t b0 = sec / 8, nb, i;
		uint8_t bm[512];
		int first;

		if (sbi >= s->bat_n) {
			return vd_set_error(EIO, "%s: sector bitmap entry missing", l->path);
		}
		sbe = s->bat[sbi];
		sboff = sbe & ~(VHDX_MB - 1);
		if ((sbe & 7) != SB_PRESENT || sboff == 0 ||
		    !ft_in_file(sboff, VHDX_MB, s->file_size)) {
			return vd_set_error(EIO,
					    "%s: sector bitmap of chunk %" PRIu64 " is missing or "
					    "outside the file",
					    l->path, chunk);
		}
		nb = VD_MIN(last / 8 - b0 + 1, sizeof(bm));
		if (vd_full_pread(l->fd, bm, nb, sboff + b0) < 0) {
			return vd_set_error(EIO,
					    "%s: cannot read the sector bitmap of chunk %" PRIu64,
					    l->path, chunk);
		}
		first = (bm[0] >> (sec % 8)) & 1;
		for (i = sec + 1; i <= last && i / 8 - b0 < nb; i++) {
			if (((bm[i / 8 - b0] >> (i % 8)) & 1) != first) {
				break;
			}
		}
		/* Bytes from off to the end of sector i-1. */
		*n = VD_MIN(*n, (i - sec) * s->lss - in % s->lss);
		*type = first ? VD_EXTENT_DATA : VD_EXTENT_HOLE;
	}
	return 0;
}

static int
vhdx_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	return ft_block_status(l, vhdx_map1, off, len, ext);
}

static int
vhdx_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	return ft_pread(l, vhdx_map1, buf, len, off);
}

static uint64_t
vhdx_allocated(struct vd_layer *l)
{
	return ft_allocated(l);
}

static int
vhdx_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	   struct vd_check_result *res)
{
	struct vhdx_state *s = l->st;
	uint64_t off = 0;
	char msg[256];

	while (off < l->size) {
		struct vd_extent e;
		uint64_t blk = off / s->block, host = 0;

		e.length = 0;
		if (vhdx_map1(l, off, l->size - off, &e.type, &e.length, &host) < 0) {
			res->corrupt++;
			snprintf(msg, sizeof(msg), "%s", vd_get_error());
			if (report && res->corrupt <= 100) {
				report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
			}
			off = (blk + 1) * s->block;
			continue;
		}
		if (e.type == VD_EXTENT_DATA) {
			uint64_t idx = blk + blk / s->chunk_ratio;
			uint64_t foff = s->bat[idx] & ~(VHDX_MB - 1);

			if (!ft_in_file(foff, s->block, s->file_size)) {
				res->corrupt++;
				snprintf(msg, sizeof(msg),
					 "%s: block %" PRIu64 " runs past the end "
					 "of the file",
					 l->path, blk);
				if (report && res->corrupt <= 100) {
					report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
				}
			}
			res->blocks_checked++;
			res->bytes_checked += e.length;
		}
		off += e.length;
	}
	return 0;
}

const struct vd_driver vd_vhdx_driver = {
	.name = "vhdx",
	.instance_size = sizeof(struct vhdx_state),
	.thread_model = VD_THREAD_PARALLEL,
	.probe = vhdx_probe,
	.open = vhdx_open,
	.close = vhdx_close,
	.pread = vhdx_pread,
	.block_status = vhdx_block_status,
	.allocated = vhdx_allocated,
	.check = vhdx_check,
};
