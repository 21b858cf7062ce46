// SPDX-License-Identifier: MIT
/*
 * Unit test of vdiskfs's partition table parser (fs/part.c), on disks built in
 * memory: GPT with 512- and 4096-byte sectors, the backup header when the
 * primary is damaged, entry-array CRC, bounds (entries outside the usable
 * range, huge entry counts), MBR primaries clipped or dropped at the end of
 * the disk, logical partitions (of one or two extended partitions), and a
 * boot sector that is not a table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tap.h"

#include "../../fs/part.c"

struct mem_disk {
	uint8_t *p;
	uint64_t size;
	int reads_outside;
};

static int
mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	struct mem_disk *d = opaque;

	if (off + len > d->size) {
		d->reads_outside++;
		return -5;
	}
	memcpy(buf, d->p + off, len);
	return 0;
}

static void
disk_new(struct mem_disk *d, uint64_t size)
{
	d->p = calloc(1, size);
	d->size = size;
	d->reads_outside = 0;
}

/* Write a GPT header at lba and its entry array at arr_lba (sector size ss). */
static void
gpt_write(struct mem_disk *d, uint32_t ss, uint64_t lba, uint64_t other, uint64_t arr_lba,
	  const uint8_t *arr, uint32_t nent, uint32_t esize)
{
	uint8_t *h = d->p + lba * ss;
	uint64_t last = d->size / ss - 1;

	memcpy(d->p + arr_lba * ss, arr, (size_t)nent * esize);
	memset(h, 0, ss);
	memcpy(h, "EFI PART", 8);
	vd_put_le32(h + 8, 0x00010000);
	vd_put_le32(h + 12, 92);
	vd_put_le64(h + 24, lba);
	vd_put_le64(h + 32, other);
	vd_put_le64(h + 40, 34);
	vd_put_le64(h + 48, last - 33);
	vd_put_le64(h + 72, arr_lba);
	vd_put_le32(h + 80, nent);
	vd_put_le32(h + 84, esize);
	vd_put_le32(h + 88, (uint32_t)crc32(0, arr, nent * esize));
	vd_put_le32(h + 16, (uint32_t)crc32(0, h, 92));
}

static void
gpt_entry(uint8_t *arr, int i, uint64_t first, uint64_t last)
{
	uint8_t *e = arr + (size_t)i * 128;

	memset(e, 0, 128);
	e[0] = 0xaf; /* any non-zero type GUID */
	e[16] = 1;
	vd_put_le64(e + 32, first);
	vd_put_le64(e + 40, last);
}

static void
mbr_entry(uint8_t *sec, int i, uint8_t type, uint32_t start, uint32_t count)
{
	uint8_t *e = sec + 446 + 16 * i;

	memset(e, 0, 16);
	e[4] = type;
	vd_put_le32(e + 8, start);
	vd_put_le32(e + 12, count);
	sec[510] = 0x55;
	sec[511] = 0xaa;
}

static int
scan(struct mem_disk *d, struct vdfs_part *p)
{
	return vdfs_part_scan(mem_read, d, d->size, p, VDFS_PART_MAX);
}

int
main(void)
{
	struct vdfs_part p[VDFS_PART_MAX];
	uint8_t arr[128 * 128];
	struct mem_disk d;
	uint64_t last;
	int n;

	/* GPT, 512-byte sectors, entries 0 and 5 used. */
	disk_new(&d, 8 << 20);
	last = d.size / 512 - 1;
	memset(arr, 0, sizeof(arr));
	gpt_entry(arr, 0, 2048, 4095);
	gpt_entry(arr, 5, 4096, 10239);
	mbr_entry(d.p, 0, 0xee, 1, (uint32_t)last);
	gpt_write(&d, 512, 1, last, 2, arr, 128, 128);
	n = scan(&d, p);
	check_int(n, 2);
	check_int(p[0].num, 1);
	check_int(p[0].start, 2048 * 512);
	check_int(p[0].length, 2048 * 512);
	check_int(p[1].num, 6);
	check_int(p[1].start, 4096 * 512);
	check_int(p[1].length, 6144 * 512);

	/* Primary header damaged: the backup at the last LBA is used. */
	gpt_write(&d, 512, last, 1, last - 32, arr, 128, 128);
	d.p[512 + 20] ^= 0xff; /* inside the primary header: CRC fails */
	n = scan(&d, p);
	ok(n == 2 && p[1].num == 6, "backup GPT header used when the primary is damaged");

	/* Both damaged: the protective MBR alone yields nothing. */
	d.p[last * 512 + 20] ^= 0xff;
	check_int(scan(&d, p), 0);

	/* Entry array CRC mismatch: refused. */
	gpt_write(&d, 512, 1, last, 2, arr, 128, 128);
	d.p[2 * 512 + 40] ^= 1;
	check_int(scan(&d, p), 0);

	/* An entry beyond last_usable is skipped, the others kept. */
	gpt_entry(arr, 1, 12000, last); /* past last_usable */
	gpt_write(&d, 512, 1, last, 2, arr, 128, 128);
	n = scan(&d, p);
	ok(n == 2 && p[0].num == 1 && p[1].num == 6, "entry outside the usable range skipped");

	/* A hostile entry count is refused (no huge allocation, no read outside). */
	gpt_write(&d, 512, 1, last, 2, arr, 128, 128);
	vd_put_le32(d.p + 512 + 80, 0x40000000);
	vd_put_le32(d.p + 512 + 16, 0);
	vd_put_le32(d.p + 512 + 16, (uint32_t)crc32(0, d.p + 512, 92));
	check_int(scan(&d, p), 0);
	check_int(d.reads_outside, 0);
	free(d.p);

	/* GPT with 4096-byte sectors. */
	disk_new(&d, 16 << 20);
	last = d.size / 4096 - 1;
	memset(arr, 0, sizeof(arr));
	gpt_entry(arr, 0, 256, 511);
	gpt_entry(arr, 1, 512, last - 33);
	mbr_entry(d.p, 0, 0xee, 1, (uint32_t)last);
	gpt_write(&d, 4096, 1, last, 2, arr, 128, 128);
	n = scan(&d, p);
	check_int(n, 2);
	check_int(p[0].start, 256 * 4096);
	check_int(p[0].length, 256 * 4096);
	check_int(p[1].start + p[1].length, (last - 32) * 4096);
	free(d.p);

	/* MBR: one partition fine, one crossing the end (clipped), one past it (dropped). */
	disk_new(&d, 4 << 20);
	mbr_entry(d.p, 0, 0x83, 2048, 2048);
	mbr_entry(d.p, 1, 0x83, 6144, 4096);
	mbr_entry(d.p, 2, 0x83, 9000, 100);
	n = scan(&d, p);
	check_int(n, 2);
	check_int(p[0].num, 1);
	check_int(p[0].length, 2048 * 512);
	check_int(p[1].num, 2);
	check_int(p[1].start + p[1].length, d.size);

	/* Extended partition with two logicals -> p5, p6. */
	memset(d.p, 0, 512);
	mbr_entry(d.p, 0, 0x83, 64, 64);
	mbr_entry(d.p, 1, 0x05, 1024, 4096);
	mbr_entry(d.p + 1024 * 512, 0, 0x83, 8, 100);
	mbr_entry(d.p + 1024 * 512, 1, 0x05, 512, 1000);
	mbr_entry(d.p + (1024 + 512) * 512, 0, 0x83, 8, 200);
	n = scan(&d, p);
	check_int(n, 3);
	ok(n == 3 && p[1].num == 5 && p[1].start == (1024 + 8) * 512ull &&
		   p[1].length == 100 * 512ull,
	   "first logical is p5");
	ok(n == 3 && p[2].num == 6 && p[2].start == (1024 + 512 + 8) * 512ull &&
		   p[2].length == 200 * 512ull,
	   "second logical is p6");

	/* An EBR that points back to itself ends the chain. */
	mbr_entry(d.p + (1024 + 512) * 512, 1, 0x05, 0, 1000);
	check_int(scan(&d, p), 3);

	/*
	 * A second extended partition: its logical continues the count (as in
	 * Linux), never a second p5 (partitions/p5 twice in vdiskfs).
	 */
	mbr_entry(d.p, 2, 0x0f, 6144, 1024);
	mbr_entry(d.p + 6144 * 512, 0, 0x83, 16, 300);
	n = scan(&d, p);
	check_int(n, 4);
	ok(n == 4 && p[3].num == 7 && p[3].start == (6144 + 16) * 512ull &&
		   p[3].length == 300 * 512ull,
	   "logical of a second extended partition is p7 (was a second p5)");
	memset(d.p + 446 + 32, 0, 16);

	/* A boot sector that is not a partition table (bad status byte). */
	d.p[446] = 0x12;
	check_int(scan(&d, p), 0);
	free(d.p);

	/* A disk smaller than a sector. */
	disk_new(&d, 100);
	check_int(scan(&d, p), 0);
	check_int(d.reads_outside, 0);
	free(d.p);
	return done_testing();
}
