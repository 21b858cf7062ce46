// SPDX-License-Identifier: MIT
/*
 * Concurrency test of one image shared by many threads, the way vdiskfs and
 * vdisk-target drive it: four writers own interleaved 512-byte sectors (so
 * they read-modify-write the same blocks at once), two readers check that
 * every sector they see is whole, and a third thread flushes, takes and
 * deletes snapshots meanwhile. At the end every sector holds its owner's
 * last write, in the image and after reopening, and check is clean.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "vdisk.h"

#define SECTOR 512u
#define NSECT 8192u		/* 4 MiB */
#define WRITERS 4

static struct vd_image *img;
static uint32_t last[NSECT];	/* written by the owner only */
static atomic_int stop, errors;
static int iters;

static void
fill(uint8_t *p, uint32_t s, uint32_t v)
{
	for (unsigned i = 0; i < SECTOR / 8; i++) {
		uint64_t w = ((uint64_t)s << 32 | v) * 0x9E3779B97F4A7C15ull + i;

		memcpy(p + i * 8, &w, 8);
	}
	memcpy(p, &s, 4);
	memcpy(p + 4, &v, 4);
}

static bool
whole(const uint8_t *p, uint32_t s)
{
	uint8_t ref[SECTOR];
	uint32_t ss, v;

	memcpy(&ss, p, 4);
	memcpy(&v, p + 4, 4);
	if (ss == 0 && v == 0) {
		for (unsigned i = 0; i < SECTOR; i++) {
			if (p[i]) {
				return false;
			}
		}
		return true;
	}
	if (ss != s) {
		return false;
	}
	fill(ref, s, v);
	return memcmp(ref, p, SECTOR) == 0;
}

static void *
writer(void *arg)
{
	uint32_t t = (uint32_t)(uintptr_t)arg, seed = t * 7 + 1;
	uint8_t buf[SECTOR];

	for (int i = 0; i < iters && !errors; i++) {
		uint32_t s;

		seed = seed * 1103515245u + 12345u;
		s = ((seed >> 8) % (NSECT / WRITERS)) * WRITERS + t;
		fill(buf, s, ++last[s]);
		if (vd_pwrite(img, buf, SECTOR, (uint64_t)s * SECTOR) < 0) {
			fprintf(stderr, "write: %s\n", vd_get_error());
			errors++;
		}
	}
	return NULL;
}

static void *
reader(void *arg)
{
	uint32_t seed = (uint32_t)(uintptr_t)arg;
	uint8_t buf[16384];

	while (!stop && !errors) {
		uint32_t s;

		seed = seed * 1103515245u + 12345u;
		s = (seed >> 8) % (NSECT - 32);
		if (vd_pread(img, buf, sizeof(buf), (uint64_t)s * SECTOR) < 0) {
			fprintf(stderr, "read: %s\n", vd_get_error());
			errors++;
			break;
		}
		for (uint32_t k = 0; k < sizeof(buf) / SECTOR; k++) {
			if (!whole(buf + k * SECTOR, s + k)) {
				fprintf(stderr, "sector %u torn\n", s + k);
				errors++;
			}
		}
	}
	return NULL;
}

static void *
snapper(void *arg)
{
	int n = 0;

	(void)arg;
	while (!stop && !errors) {
		char name[32];

		usleep(2000);
		if (vd_flush(img) < 0) {
			errors++;
		}
		snprintf(name, sizeof(name), "t%d", n++);
		if (vd_snapshot_create(img, name) < 0) {
			fprintf(stderr, "snapshot: %s\n", vd_get_error());
			errors++;
		}
		if (vd_snapshot_count(img) > 6) {
			struct vd_snapshot_info si;
			char del[80];

			vd_snapshot_info(img, 1, &si);
			snprintf(del, sizeof(del), "%s", si.name);
			if (vd_snapshot_delete(img, del) < 0) {
				fprintf(stderr, "delete %s: %s\n", del, vd_get_error());
				errors++;
			}
		}
	}
	return NULL;
}

static int
verify_all(const char *what)
{
	uint8_t *buf = malloc((size_t)NSECT * SECTOR), ref[SECTOR];
	int bad = 0;

	if (vd_pread(img, buf, (size_t)NSECT * SECTOR, 0) < 0) {
		diag("%s: read: %s", what, vd_get_error());
		free(buf);
		return -1;
	}
	for (uint32_t s = 0; s < NSECT; s++) {
		if (last[s]) {
			fill(ref, s, last[s]);
		} else {
			memset(ref, 0, SECTOR);
		}
		if (memcmp(ref, buf + (size_t)s * SECTOR, SECTOR) != 0) {
			if (bad++ < 3) {
				diag("%s: sector %u does not hold v%u", what, s, last[s]);
			}
		}
	}
	free(buf);
	return bad ? -1 : 0;
}

int
main(void)
{
	char dir[] = "/dev/shm/t-vdk-threads.XXXXXX", path[512], cmd[600];
	struct vd_create_opts co = { .size = (uint64_t)NSECT * SECTOR };
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	pthread_t w[WRITERS], r[2], sn;
	struct vd_check_result res;

	iters = getenv("VDISK_ASAN") ? 3000 : 20000;
	if (!mkdtemp(dir)) {
		skip_all("no scratch directory in /dev/shm");
	}
	snprintf(path, sizeof(path), "%s/th.vdk", dir);
	if (vd_create(path, &co) < 0 || !(img = vd_open(path, &oo))) {
		diag("setup: %s", vd_get_error());
		return 1;
	}
	for (int i = 0; i < 2; i++) {
		pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(i + 99));
	}
	pthread_create(&sn, NULL, snapper, NULL);
	for (int i = 0; i < WRITERS; i++) {
		pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i);
	}
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(w[i], NULL);
	}
	stop = 1;
	pthread_join(sn, NULL);
	for (int i = 0; i < 2; i++) {
		pthread_join(r[i], NULL);
	}
	ok(errors == 0, "%d writers x %d sector writes, 2 readers, snapshots meanwhile: no error",
	   WRITERS, iters);
	ok(verify_all("live") == 0, "every sector holds its owner's last write");
	ok(vd_check(img, NULL, NULL, &res) == 0 && res.corrupt == 0, "check is clean (%d layers)",
	   vd_layer_count(img));
	vd_close(img);
	img = vd_open(path, &oo);
	ok(img && verify_all("reopened") == 0, "and after reopening");
	vd_close(img);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	return done_testing();
}
