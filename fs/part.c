// SPDX-License-Identifier: MIT
/*
 * Partition tables of the mounted disk, for partitions/pN.
 *
 * Design notes. Everything read here is untrusted (the image is whatever the
 * guest or an attacker wrote), so:
 *  - reads go through a callback that is only ever asked for ranges inside the
 *    disk; every count taken from the disk (GPT entry count and size, MBR
 *    sector numbers, the EBR chain) is bounded before it is used, and offset
 *    arithmetic is done in 64 bits with explicit overflow checks;
 *  - a GPT header counts only if its signature, header CRC32, sizes, LBA
 *    ranges and entry-array CRC32 all check out; the primary header is tried
 *    first, then the backup at the last LBA; sector sizes 512 and 4096 are tried;
 *  - the MBR is used when there is no valid GPT, or when it holds partitions
 *    and none of type 0xEE (then a GPT is a leftover that Linux ignores too:
 *    it needs a protective or hybrid MBR). Its logical partitions are
 *    found by walking the EBR chain, at most VDFS_PART_MAX links, each link
 *    required to stay inside the extended partition (which also ends loops);
 *  - a partition that starts beyond the end of the disk is dropped, one that
 *    ends beyond it is clipped to the disk (the window never leaves the disk).
 * Numbering follows Linux: MBR primaries 1-4, logicals from 5 (the logicals of
 * a second extended partition continue the count); GPT entry i is partition i+1.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "util.h"

#include "part.h"

#define GPT_SIG "EFI PART"
#define GPT_MAX_ENTRIES 4096u
#define GPT_MAX_ESIZE 4096u
#define GPT_MAX_ARRAY (1u << 20) /* entry array bytes we are willing to read */
#define MBR_EBR_MAX VDFS_PART_MAX

struct part_ctx {
	vdfs_part_read_fn rd;
	void *opaque;
	uint64_t disk_size;
	struct vdfs_part *out;
	int max;
	int n;
	unsigned next_logical; /* number of the next MBR logical partition (from 5) */
};

/* Read [off, off+len) if it lies inside the disk: 0, 1 when outside, or -errno. */
static int
part_read(struct part_ctx *c, void *buf, size_t len, uint64_t off)
{
	uint64_t end;

	if (VD_ADD_OVERFLOW(off, (uint64_t)len, &end) || end > c->disk_size) {
		return 1;
	}
	return c->rd(c->opaque, buf, len, off);
}

/* Record a partition of sectors [first, first+count) of size ssize, clipped to the disk. */
static void
part_add(struct part_ctx *c, unsigned num, uint64_t first, uint64_t count, uint64_t ssize)
{
	uint64_t start, len;

	if (c->n >= c->max || count == 0) {
		return;
	}
	if (VD_MUL_OVERFLOW(first, ssize, &start) || start >= c->disk_size) {
		return;
	}
	if (VD_MUL_OVERFLOW(count, ssize, &len) || len > c->disk_size - start) {
		len = c->disk_size - start;
	}
	c->out[c->n].num = num;
	c->out[c->n].start = start;
	c->out[c->n].length = len;
	c->n++;
}

static bool
part_is_zero(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i]) {
			return false;
		}
	}
	return true;
}

static uint32_t
part_crc32(const void *buf, size_t len)
{
	return (uint32_t)crc32(0L, buf, (uInt)len);
}

/*
 * Try the GPT header at sector lba with sector size ssize. Returns 1 when a
 * valid GPT was found (partitions added), 0 when not, -errno on read errors.
 */
static int
gpt_try(struct part_ctx *c, uint64_t lba, uint32_t ssize)
{
	uint8_t *hdr = NULL, *arr = NULL;
	uint64_t hoff, my_lba, first_usable, last_usable, arr_lba, arr_off, last_lba;
	uint32_t hsize, hcrc, nent, esize, acrc;
	size_t arr_len;
	int ret = 0, i, start_n = c->n;

	last_lba = c->disk_size / ssize;
	if (last_lba < 2) {
		return 0;
	}
	last_lba--;
	if (VD_MUL_OVERFLOW(lba, (uint64_t)ssize, &hoff)) {
		return 0;
	}
	hdr = malloc(ssize);
	if (!hdr) {
		return -ENOMEM;
	}
	ret = part_read(c, hdr, ssize, hoff);
	if (ret) {
		ret = ret < 0 ? ret : 0;
		goto out;
	}
	if (memcmp(hdr, GPT_SIG, 8) != 0) {
		goto out;
	}
	hsize = vd_le32(hdr + 12);
	if (hsize < 92 || hsize > ssize) {
		goto out;
	}
	hcrc = vd_le32(hdr + 16);
	memset(hdr + 16, 0, 4);
	if (part_crc32(hdr, hsize) != hcrc) {
		goto out;
	}
	my_lba = vd_le64(hdr + 24);
	first_usable = vd_le64(hdr + 40);
	last_usable = vd_le64(hdr + 48);
	arr_lba = vd_le64(hdr + 72);
	nent = vd_le32(hdr + 80);
	esize = vd_le32(hdr + 84);
	acrc = vd_le32(hdr + 88);
	if (my_lba != lba || first_usable > last_usable || last_usable > last_lba) {
		goto out;
	}
	if (nent == 0 || nent > GPT_MAX_ENTRIES || esize < 128 || esize > GPT_MAX_ESIZE ||
	    esize % 8 != 0) {
		goto out;
	}
	arr_len = (size_t)nent * esize;
	if (arr_len > GPT_MAX_ARRAY || arr_lba > last_lba ||
	    VD_MUL_OVERFLOW(arr_lba, (uint64_t)ssize, &arr_off)) {
		goto out;
	}
	arr = malloc(arr_len);
	if (!arr) {
		ret = -ENOMEM;
		goto out;
	}
	ret = part_read(c, arr, arr_len, arr_off);
	if (ret) {
		ret = ret < 0 ? ret : 0;
		goto out;
	}
	if (part_crc32(arr, arr_len) != acrc) {
		goto out;
	}
	for (i = 0; i < (int)nent && c->n < c->max; i++) {
		const uint8_t *e = arr + (size_t)i * esize;
		uint64_t first = vd_le64(e + 32), last = vd_le64(e + 40);

		if (part_is_zero(e, 16)) {
			continue; /* unused entry */
		}
		if (first > last || first < first_usable || last > last_usable) {
			continue;
		}
		part_add(c, (unsigned)i + 1, first, last - first + 1, ssize);
	}
	ret = 1;
out:
	if (ret != 1) {
		c->n = start_n;
	}
	free(arr);
	free(hdr);
	return ret;
}

static int
gpt_scan(struct part_ctx *c)
{
	static const uint32_t ssizes[] = {512, 4096};
	size_t i;
	int ret;

	for (i = 0; i < VD_ARRAY_SIZE(ssizes); i++) {
		uint64_t nsec = c->disk_size / ssizes[i];

		ret = gpt_try(c, 1, ssizes[i]);
		if (ret != 0) {
			return ret;
		}
		if (nsec > 2) {
			ret = gpt_try(c, nsec - 1, ssizes[i]);
			if (ret != 0) {
				return ret;
			}
		}
	}
	return 0;
}

static bool
mbr_is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

/* Walk the EBR chain of the extended partition at sectors [ext_start, ext_start+ext_len). */
static int
mbr_logicals(struct part_ctx *c, uint64_t ext_start, uint64_t ext_len)
{
	uint8_t sec[512];
	uint64_t ebr = 0; /* relative to ext_start */
	int links, ret;

	for (links = 0; links < MBR_EBR_MAX && c->n < c->max; links++) {
		const uint8_t *e1 = sec + 446, *e2 = sec + 462;
		uint64_t next, lstart;

		if (ebr >= ext_len) {
			break;
		}
		ret = part_read(c, sec, sizeof(sec), (ext_start + ebr) * 512);
		if (ret) {
			return ret < 0 ? ret : 0;
		}
		if (sec[510] != 0x55 || sec[511] != 0xaa) {
			break;
		}
		if (e1[4] != 0 && vd_le32(e1 + 12) != 0) {
			lstart = ext_start + ebr + vd_le32(e1 + 8);
			if (vd_le32(e1 + 8) + (uint64_t)vd_le32(e1 + 12) <= ext_len - ebr) {
				part_add(c, c->next_logical, lstart, vd_le32(e1 + 12), 512);
			}
			c->next_logical++;
		}
		if (!mbr_is_extended(e2[4])) {
			break;
		}
		next = vd_le32(e2 + 8);
		if (next <= ebr) {
			break; /* must move forward: no loops */
		}
		ebr = next;
	}
	return 0;
}

static int
mbr_scan(struct part_ctx *c, bool *protective)
{
	uint8_t sec[512];
	int i, ret;

	*protective = false;
	ret = part_read(c, sec, sizeof(sec), 0);
	if (ret) {
		return ret < 0 ? ret : 0;
	}
	if (sec[510] != 0x55 || sec[511] != 0xaa) {
		return 0;
	}
	for (i = 0; i < 4; i++) {
		const uint8_t *e = sec + 446 + 16 * i;

		if (e[0] != 0 && e[0] != 0x80) {
			return 0; /* not a partition table (e.g. a boot sector) */
		}
		if (e[4] == 0xee) {
			*protective = true;
		}
	}
	if (*protective) {
		return 0;
	}
	for (i = 0; i < 4; i++) {
		const uint8_t *e = sec + 446 + 16 * i;
		uint32_t start = vd_le32(e + 8), count = vd_le32(e + 12);

		if (e[4] == 0 || count == 0) {
			continue;
		}
		if (mbr_is_extended(e[4])) {
			ret = mbr_logicals(c, start, count);
			if (ret < 0) {
				return ret;
			}
			continue;
		}
		part_add(c, (unsigned)i + 1, start, count, 512);
	}
	return 0;
}

static int
part_cmp(const void *a, const void *b)
{
	const struct vdfs_part *x = a, *y = b;

	return x->num < y->num ? -1 : x->num > y->num;
}

int
vdfs_part_scan(vdfs_part_read_fn rd, void *opaque, uint64_t disk_size, struct vdfs_part *out,
	       int max)
{
	struct part_ctx c = {
		.rd = rd,
		.opaque = opaque,
		.disk_size = disk_size,
		.out = out,
		.max = max,
		.next_logical = 5,
	};
	bool protective;
	int ret;

	if (max <= 0) {
		return 0;
	}
	/*
	 * An MBR that is a partition table of its own (partitions, none of type
	 * 0xEE) wins over a GPT: that GPT is a leftover of an earlier layout that
	 * an MBR tool did not wipe, and Linux ignores a GPT without a protective
	 * (or hybrid) MBR too. A GPT with no MBR partitions at all still counts.
	 */
	ret = mbr_scan(&c, &protective);
	if (ret < 0) {
		return ret;
	}
	if (protective || c.n == 0) {
		c.n = 0;
		c.next_logical = 5;
		ret = gpt_scan(&c);
		if (ret < 0) {
			return ret;
		}
		if (ret == 0) {
			c.n = 0; /* no valid GPT (a protective MBR alone: nothing trustworthy) */
		}
	}
	qsort(out, (size_t)c.n, sizeof(*out), part_cmp);
	return c.n;
}
