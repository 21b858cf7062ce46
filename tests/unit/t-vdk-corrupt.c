// SPDX-License-Identifier: MIT
/*
 * Corruption test: random bit flips anywhere in a native image (header copies,
 * map nodes, data) must never come back as data. Each flip is detected by
 * opening (a clear error), by reading (EIO naming the block) or by check;
 * a read that succeeds returns exactly what was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapped-read.h"
#include "tap.h"
#include "vdisk.h"
#include "vdk-map-walk.h"

#define SIZE (4u << 20)
#define BS 4096u

/* The blocks of the file the committed image refers to (headers, nodes, data). */
struct used_map {
	uint8_t *used;		/* one byte per block of the file */
	size_t nblocks;
	uint64_t phys3;		/* where virtual block 3 lives */
};

static void
mark_block(void *opaque, uint64_t vb, const struct vdk_entry *e)
{
	struct used_map *u = opaque;
	uint64_t b = (e->ptr & ~VDK_PTR_FLAGS) / BS;

	if (b < u->nblocks) {
		u->used[b] = 1;
	}
	if (vb == 3) {
		u->phys3 = e->ptr & ~VDK_PTR_FLAGS;
	}
}

static void
mark_node(void *opaque, uint64_t index, const struct vdk_entry *e)
{
	struct used_map *u = opaque;
	uint64_t b = (e->ptr & ~VDK_PTR_FLAGS) / BS;

	(void)index;
	if (b < u->nblocks) {
		u->used[b] = 1;	/* nodes are one block with 4 KiB blocks */
	}
}

static int
copy_file(const char *from, const char *to, uint8_t **content, size_t *len)
{
	int fd = open(from, O_RDONLY);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		return -1;
	}
	*len = (size_t)st.st_size;
	*content = malloc(*len);
	if (pread(fd, *content, *len, 0) != (ssize_t)*len) {
		close(fd);
		return -1;
	}
	close(fd);
	(void)to;
	return 0;
}

static int
write_file(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		return -1;
	}
	close(fd);
	return 0;
}

int
main(void)
{
	char dir[] = "/dev/shm/t-vdk-corrupt.XXXXXX", path[512], work[512];
	struct vd_create_opts co = { .size = SIZE, .block_size = 4096 };
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	struct vd_image *img;
	uint8_t *model = malloc(SIZE), *buf = malloc(SIZE), *orig;
	size_t olen;
	int flips = getenv("VDISK_ASAN") ? 150 : 500;
	int by_open = 0, by_read = 0, by_check = 0, silent = 0, missed = 0;

	if (!mkdtemp(dir)) {
		skip_all("no scratch directory in /dev/shm");
	}
	snprintf(path, sizeof(path), "%s/c.vdk", dir);
	snprintf(work, sizeof(work), "%s/w.vdk", dir);
	srandom(42);
	for (size_t i = 0; i < SIZE; i++) {
		model[i] = (uint8_t)random();
	}
	memset(model + 65536, 0, 8192);	/* zero blocks are not stored */
	if (vd_create(path, &co) < 0 || !(img = vd_open(path, &oo)) ||
	    vd_pwrite(img, model, SIZE, 0) < 0 || vd_close(img) < 0) {
		diag("setup: %s", vd_get_error());
		return 1;
	}
	if (copy_file(path, work, &orig, &olen) < 0) {
		return 1;
	}
	ok(olen > SIZE, "image holds the data (%zu bytes)", olen);
	/*
	 * Free space inside the file (the room kept for commits on a full host,
	 * given back at close) holds nothing: flips are aimed at the blocks the
	 * image refers to.
	 */
	struct used_map um = { .nblocks = olen / BS + 1 };

	um.used = calloc(um.nblocks, 1);
	um.used[0] = um.used[1] = 1;
	map_walk_node_hook = mark_node;
	check(map_walk(path, NULL, mark_block, &um) == 0);
	map_walk_node_hook = NULL;
	for (int f = 0; f < flips; f++) {
		/* One flip in five lands in the header copies, the rest anywhere in use. */
		size_t off;

		do {
			off = f % 5 == 0 ? (size_t)random() % 8192 : (size_t)random() % olen;
		} while (!um.used[off / BS]);
		uint8_t bit = (uint8_t)(1u << (random() % 8));
		struct vd_check_result res;
		int r;

		orig[off] ^= bit;
		write_file(work, orig, olen);
		orig[off] ^= bit;
		img = vd_open(work, NULL);
		if (!img) {
			if (strlen(vd_get_error()) < 5) {
				diag("flip at %zu: open failed without a message", off);
				silent++;
			}
			by_open++;
			continue;
		}
		r = read_mapped(img, buf, SIZE, 0);
		if (r == 0 && memcmp(buf, model, SIZE) != 0) {
			diag("flip at %zu: mapped read returned wrong data", off);
			silent++;
		}
		r = vd_pread(img, buf, SIZE, 0);
		if (r == 0 && memcmp(buf, model, SIZE) != 0) {
			diag("flip at %zu: read returned wrong data", off);
			silent++;
		}
		if (r < 0) {
			by_read++;
		}
		if (vd_check(img, NULL, NULL, &res) < 0 || res.corrupt) {
			by_check++;
		} else if (r == 0) {
			diag("flip at %zu (bit %u) not detected", off, bit);
			missed++;
		}
		vd_close(img);
	}
	ok(silent == 0, "no flip came back as data (%d flips: %d by open, %d by read, %d by check)",
	   flips, by_open, by_read, by_check);
	ok(missed == 0, "every flip was detected by open, read or check (%d missed)", missed);
	/* A bad data block gives EIO naming it; the rest of the disk still reads. */
	{
		uint8_t blk[4096];
		int r1, r2;

		/* Flip a byte in the middle of block 3 (where the map walk found it). */
		check(um.phys3 >= 8192 && um.phys3 + 4096 <= olen);
		orig[um.phys3 + 100] ^= 0x10;
		write_file(work, orig, olen);
		orig[um.phys3 + 100] ^= 0x10;
		img = vd_open(work, NULL);
		r1 = vd_pread(img, blk, sizeof(blk), 3 * 4096);
		ok(r1 == -EIO && strstr(vd_get_error(), "block 3"), "bad block: EIO naming it (%s)",
		   vd_get_error());
		r2 = vd_pread(img, blk, sizeof(blk), 4 * 4096);
		ok(r2 == 0 && memcmp(blk, model + 4 * 4096, 4096) == 0, "the next block still reads");
		r1 = read_mapped(img, blk, sizeof(blk), 3 * 4096);
		ok(r1 == -EIO && strstr(vd_get_error(), "block 3"),
		   "bad block through the mapping: EIO naming it (%s)", vd_get_error());
		r2 = read_mapped(img, blk, sizeof(blk), 4 * 4096);
		ok(r2 == 0 && memcmp(blk, model + 4 * 4096, 4096) == 0,
		   "the next block still reads through the mapping");
		ok(mapped_reads > 0, "reads were served from the mapped file (%lu, %lu left to pread)",
		   mapped_reads, mapped_again);
		vd_close(img);
	}
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0) {
			diag("cleanup failed");
		}
	}
	free(orig);
	free(um.used);
	free(model);
	free(buf);
	return done_testing();
}
