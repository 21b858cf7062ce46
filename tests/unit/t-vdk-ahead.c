// SPDX-License-Identifier: MIT
/*
 * Verifying ahead (format/vdk-map.c): a sequential reader of a mapped image
 * has its next range's checksums checked by a helper thread. What a reader
 * takes from the helper must never let a bad block through as data: a block
 * that was already damaged when the helper looked is EIO; a check older than
 * the window is not taken (a block damaged after it is EIO); a range rewritten
 * after the helper's check reads as the new bytes. And the helper is used at
 * all: sequential reads take checks from it, VDISK_NO_AHEAD=1 reads none.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapped-read.h"
#include "tap.h"
#include "vdisk.h"
#include "vdk-map-walk.h"

#define MIB (1u << 20)
#define SIZE (8u * MIB)
#define BS 4096u
#define NB (SIZE / BS)

static uint64_t phys[NB];

static void
note_phys(void *opaque, uint64_t vb, const struct vdk_entry *e)
{
	(void)opaque;
	if (vb < NB) {
		phys[vb] = e->ptr & ~VDK_PTR_FLAGS;
	}
}

/* Flip one bit of virtual block vb in the image file itself (seen through the daemon's mapping). */
static int
flip(const char *path, uint64_t vb)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	int r = -1;

	if (fd >= 0 && pread(fd, &b, 1, (off_t)phys[vb] + 77) == 1) {
		b ^= 0x04;
		r = pwrite(fd, &b, 1, (off_t)phys[vb] + 77) == 1 ? 0 : -1;
	}
	if (fd >= 0) {
		close(fd);
	}
	return r;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

int
main(void)
{
	char dir[] = "/dev/shm/t-vdk-ahead.XXXXXX", path[512];
	struct vd_create_opts co = { .size = SIZE, .block_size = BS };
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	struct vd_image *img;
	uint8_t *model = malloc(SIZE), *buf = malloc(MIB), *fresh = malloc(MIB);
	unsigned long t0;
	int r, bad;

	if (!mkdtemp(dir)) {
		skip_all("no scratch directory in /dev/shm");
	}
	snprintf(path, sizeof(path), "%s/a.vdk", dir);
	srandom(7);
	for (size_t i = 0; i < SIZE; i++) {
		model[i] = (uint8_t)random();
	}
	for (size_t i = 0; i < MIB; i++) {
		fresh[i] = (uint8_t)random();
	}
	if (vd_create(path, &co) < 0 || !(img = vd_open(path, &oo)) ||
	    vd_pwrite(img, model, SIZE, 0) < 0 || vd_close(img) < 0) {
		diag("setup: %s", vd_get_error());
		return 1;
	}
	ok(map_walk(path, NULL, note_phys, NULL) == 0 && phys[NB - 1] != 0, "map of the image read");

	/* VDISK_NO_AHEAD=1 (read at the first read of a process): no check comes from the helper. */
	{
		pid_t pid = fork();
		int status = -1;

		if (pid == 0) {
			int fail = 0;

			setenv("VDISK_NO_AHEAD", "1", 1);
			img = vd_open(path, &oo);
			for (uint32_t off = 0; img && off < SIZE; off += MIB) {
				fail |= read_mapped(img, buf, MIB, off) != 0 ||
					memcmp(buf, model + off, MIB) != 0;
			}
			_exit(!img || fail ? 2 : vdk_ahead_taken != 0);
		}
		waitpid(pid, &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "VDISK_NO_AHEAD=1: sequential reads right, no check from the helper (status %d)",
		   status);
	}

	/* Sequential 1 MiB reads take checks from the helper, and read right. */
	img = vd_open(path, &oo);
	t0 = vdk_ahead_taken;
	bad = 0;
	/* (More passes if a loaded machine let every check expire: up to 10.) */
	for (int pass = 0; pass < 3 || (pass < 10 && vdk_ahead_taken == t0); pass++) {
		for (uint32_t off = 0; off < SIZE; off += MIB) {
			r = read_mapped(img, buf, MIB, off);
			bad += r != 0 || memcmp(buf, model + off, MIB) != 0;
		}
	}
	ok(bad == 0, "sequential mapped reads return the data (%lu mapped, %lu to pread)",
	   mapped_reads, mapped_again);
	ok(vdk_ahead_taken > t0, "they took %lu block checks from the helper", vdk_ahead_taken - t0);
	vd_close(img);

	/* A block already damaged when the helper checks it is EIO for the reader. */
	img = vd_open(path, &oo);
	check(flip(path, 300) == 0);	/* in [1 MiB, 2 MiB) */
	r = read_mapped(img, buf, MIB, 0);	/* the helper now checks [1 MiB, 2 MiB) */
	ok(r == 0 && memcmp(buf, model, MIB) == 0, "the range before it reads");
	r = read_mapped(img, buf, MIB, MIB);
	ok(r == -EIO && strstr(vd_get_error(), "block 300"),
	   "a block damaged before the helper's check: EIO naming it (%s)", vd_get_error());
	check(flip(path, 300) == 0);
	r = read_mapped(img, buf, MIB, MIB);
	ok(r == 0 && memcmp(buf, model + MIB, MIB) == 0, "mended, it reads again");

	/* A check older than the window is not taken: damage after it is EIO. */
	r = read_mapped(img, buf, MIB, 2 * MIB);	/* the helper checks [3 MiB, 4 MiB) */
	check(r == 0);
	sleep_ms(30);
	check(flip(path, 3 * 256 + 100) == 0);
	r = read_mapped(img, buf, MIB, 3 * MIB);
	ok(r == -EIO && strstr(vd_get_error(), "block 868"),
	   "damage after an expired check: EIO naming the block (%s)", vd_get_error());
	check(flip(path, 3 * 256 + 100) == 0);

	/* A range rewritten after the helper's check reads as the new bytes. */
	r = read_mapped(img, buf, MIB, 4 * MIB);	/* the helper checks [5 MiB, 6 MiB) */
	check(r == 0);
	ok(vd_pwrite(img, fresh, MIB, 5 * MIB) == 0, "rewrite [5 MiB, 6 MiB)");
	r = read_mapped(img, buf, MIB, 5 * MIB);
	ok(r == 0 && memcmp(buf, fresh, MIB) == 0, "the rewritten range reads as the new bytes");
	r = vd_pread(img, buf, MIB, 5 * MIB);
	ok(r == 0 && memcmp(buf, fresh, MIB) == 0, "and so through pread");
	/* The same, with a new block of the rewrite damaged: the helper checked the old ones. */
	r = read_mapped(img, buf, MIB, 6 * MIB);	/* the helper checks [7 MiB, 8 MiB) */
	check(r == 0);
	check(vd_pwrite(img, fresh, MIB, 7 * MIB) == 0 && vd_flush(img) == 0);
	check(map_walk(path, NULL, note_phys, NULL) == 0);
	check(flip(path, 7 * 256 + 10) == 0);
	r = read_mapped(img, buf, MIB, 7 * MIB);
	ok(r == -EIO && strstr(vd_get_error(), "block 1802"),
	   "a damaged block of a range rewritten after the helper's check: EIO (%s)",
	   vd_get_error());
	check(flip(path, 7 * 256 + 10) == 0);
	ok(vd_close(img) == 0, "close while the helper may still hold a job");

	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0) {
			diag("cleanup failed");
		}
	}
	free(model);
	free(buf);
	free(fresh);
	return done_testing();
}
