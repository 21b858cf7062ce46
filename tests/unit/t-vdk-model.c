// SPDX-License-Identifier: MIT
/*
 * Model-based test of the native format and chains: long random sequences of
 * write / zero / flush / snapshot create / delete / revert / reopen on chains
 * up to depth 32 and several block sizes; every read is compared with a
 * plain in-memory model, every snapshot view with the model's copy taken
 * when the snapshot was made, and the image is checked at the end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapped-read.h"
#include "tap.h"
#include "vdisk.h"

#define MAXSIZE (6u << 20)
#define MAXSNAP 40

struct snap {
	char name[32];
	uint8_t *data;
};

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int
compare_range(struct vd_image *img, const uint8_t *model, uint64_t off, size_t len, uint8_t *buf)
{
	int r = read_mapped(img, buf, len, off);

	if (r < 0) {
		diag("mapped read %llu+%zu: %s", (unsigned long long)off, len, vd_get_error());
		return -1;
	}
	if (r == 0 && memcmp(buf, model + off, len) != 0) {
		diag("mapped read %llu+%zu differs from the model", (unsigned long long)off, len);
		return -1;
	}
	r = vd_pread(img, buf, len, off);

	if (r < 0) {
		diag("read %llu+%zu: %s", (unsigned long long)off, len, vd_get_error());
		return -1;
	}
	if (memcmp(buf, model + off, len) != 0) {
		for (size_t i = 0; i < len; i++) {
			if (buf[i] != model[off + i]) {
				diag("mismatch at %llu: got %02x want %02x",
				     (unsigned long long)(off + i), buf[i], model[off + i]);
				break;
			}
		}
		return -1;
	}
	return 0;
}

static int
run_sized(const char *dir, uint32_t bs, int ops, uint64_t seed, uint64_t SIZE)
{
	char path[512];
	struct vd_create_opts co = { .size = SIZE, .block_size = bs };
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	struct vd_image *img;
	uint8_t *model = calloc(1, MAXSIZE), *buf = malloc(MAXSIZE), *wbuf = malloc(4 * 65536 + 8192);
	struct snap snaps[MAXSNAP];
	int nsnap = 0, nameseq = 0, fails = 0;

	rng_state = seed;
	snprintf(path, sizeof(path), "%s/model-%u-%llu.vdk", dir, bs, (unsigned long long)seed);
	unlink(path);
	if (vd_create(path, &co) < 0) {
		diag("create: %s", vd_get_error());
		return -1;
	}
	img = vd_open(path, &oo);
	if (!img) {
		diag("open: %s", vd_get_error());
		return -1;
	}
	for (int op = 0; op < ops && fails == 0; op++) {
		unsigned k = (unsigned)(rnd() % 100);

		if (getenv("VDISK_MODEL_TRACE")) {
			struct vd_check_result cr = { 0 };
			int d = vd_layer_count(img);

			for (int li = 1; li < d; li++) {
				struct vd_layer_info inf;
				struct vd_image *o;

				vd_layer_info(img, li, &inf);
				o = vd_open(inf.path, NULL);
				if (o) {
					struct vd_check_result c1;

					vd_check(o, NULL, NULL, &c1);
					cr.corrupt += c1.corrupt;
					if (c1.corrupt) {
						fprintf(stderr, "corrupt layer %d %s\n", li, inf.path);
					}
					vd_close(o);
				}
			}
			fprintf(stderr, "op %d k=%u corrupt=%llu depth=%d\n", op, k,
				(unsigned long long)cr.corrupt, d);
		}
		uint64_t off = rnd() % SIZE;
		size_t len = (size_t)(rnd() % (3 * bs)) + 1;

		if (rnd() % 4 == 0) {
			off &= ~(uint64_t)(bs - 1);
			len = (size_t)((rnd() % 4) + 1) * bs;
		}
		if (off + len > SIZE) {
			len = (size_t)(SIZE - off);
		}
		if (k < 40) {
			uint8_t pat = (uint8_t)rnd();

			for (size_t i = 0; i < len; i++) {
				wbuf[i] = (rnd() % 8 == 0) ? 0 : (uint8_t)(pat + i);
			}
			if (rnd() % 5 == 0) {
				memset(wbuf, 0, len);	/* zero-detect path */
			}
			if (vd_pwrite(img, wbuf, len, off) < 0) {
				diag("write: %s", vd_get_error());
				fails++;
			}
			memcpy(model + off, wbuf, len);
		} else if (k < 48) {
			if (vd_discard(img, off, len) < 0) {
				diag("discard: %s", vd_get_error());
				fails++;
			}
			memset(model + off, 0, len);
		} else if (k < 68) {
			if (compare_range(img, model, off, len, buf) < 0) {
				fails++;
			}
		} else if (k < 73) {
			if (vd_flush(img) < 0) {
				diag("flush: %s", vd_get_error());
				fails++;
			}
		} else if (k < 81 && nsnap < 31) {
			struct snap *s = &snaps[nsnap];

			snprintf(s->name, sizeof(s->name), "s%d", nameseq++);
			if (vd_snapshot_create(img, s->name) < 0) {
				diag("snapshot create: %s", vd_get_error());
				fails++;
				break;
			}
			s->data = malloc(MAXSIZE);
			memcpy(s->data, model, SIZE);
			nsnap++;
		} else if (k < 85 && nsnap > 0) {
			int i = (int)(rnd() % (uint64_t)nsnap);

			if (vd_snapshot_delete(img, snaps[i].name) < 0) {
				diag("snapshot delete %s: %s", snaps[i].name, vd_get_error());
				fails++;
				break;
			}
			free(snaps[i].data);
			memmove(snaps + i, snaps + i + 1, sizeof(*snaps) * (size_t)(nsnap - i - 1));
			nsnap--;
		} else if (k < 87 && nsnap > 0) {
			int i = (int)(rnd() % (uint64_t)nsnap);

			if (vd_snapshot_revert(img, snaps[i].name) < 0) {
				diag("snapshot revert %s: %s", snaps[i].name, vd_get_error());
				fails++;
				break;
			}
			memcpy(model, snaps[i].data, SIZE);
			for (int j = i + 1; j < nsnap; j++) {
				free(snaps[j].data);
			}
			nsnap = i + 1;
		} else if (k < 92 && nsnap > 0) {
			int i = (int)(rnd() % (uint64_t)nsnap);
			int idx = vd_snapshot_find(img, snaps[i].name);
			struct vd_image *v = idx >= 0 ? vd_snapshot_open(img, idx) : NULL;

			if (!v) {
				diag("snapshot view %s: %s", snaps[i].name, vd_get_error());
				fails++;
				break;
			}
			if (compare_range(v, snaps[i].data, off, len, buf) < 0) {
				diag("in snapshot %s", snaps[i].name);
				fails++;
			}
			vd_close(v);
		} else if (k < 94) {
			if (vd_close(img) < 0) {
				diag("close: %s", vd_get_error());
				fails++;
			}
			img = vd_open(path, &oo);
			if (!img) {
				diag("reopen: %s", vd_get_error());
				return -1;
			}
		}
	}
	if (fails == 0 && compare_range(img, model, 0, SIZE, buf) < 0) {
		fails++;
	}
	if (fails == 0) {
		struct vd_check_result res;

		if (vd_check(img, NULL, NULL, &res) < 0 || res.corrupt) {
			diag("check: corrupt=%llu %s", (unsigned long long)res.corrupt, vd_get_error());
			fails++;
		}
	}
	if (vd_snapshot_count(img) != nsnap) {
		diag("snapshot count %d, model %d", vd_snapshot_count(img), nsnap);
		fails++;
	}
	vd_close(img);
	for (int i = 0; i < nsnap; i++) {
		free(snaps[i].data);
	}
	free(model);
	free(buf);
	free(wbuf);
	return fails ? -1 : 0;
}

/* Used by t-crypt-model.c, which includes this file. */
__attribute__((unused)) static int
run(const char *dir, uint32_t bs, int ops, uint64_t seed)
{
	return run_sized(dir, bs, ops, seed, MAXSIZE);
}

int
main(void)
{
	char dir[] = "/dev/shm/t-vdk-model.XXXXXX";
	static const uint32_t sizes[] = { 4096, 16384, 65536 };
	int ops = getenv("VDISK_ASAN") ? 1500 : 6000;

	if (!mkdtemp(dir)) {
		strcpy(dir, "/tmp/t-vdk-model.XXXXXX");
		if (!mkdtemp(dir)) {
			skip_all("no scratch directory");
		}
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (uint64_t seed = 1; seed <= 2; seed++) {
			/* The second run's size is not a multiple of the block size. */
			uint64_t size = seed == 1 ? MAXSIZE : MAXSIZE - 3 * 512;

			ok(run_sized(dir, sizes[i], ops, seed * 7919 + sizes[i], size) == 0,
			   "model: block size %u, size %llu, seed %llu, %d ops", sizes[i],
			   (unsigned long long)size, (unsigned long long)seed, ops);
		}
	}
	diag("reads without a copy: %lu, left to vd_pread: %lu", mapped_reads, mapped_again);
	if (strncmp(dir, "/dev/shm/", 9) == 0) {
		/* tmpfs: most reads are shown from the mapping (deep chains may not be). */
		ok(mapped_reads > mapped_again, "most reads were served from the mapped files");
	}
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0) {
			diag("cleanup failed");
		}
	}
	return done_testing();
}
