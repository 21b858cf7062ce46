// SPDX-License-Identifier: MIT
/*
 * vdisk bench: the I/O benchmark of `qemu-img bench`, with the same options,
 * the same offset sequence and the same output, so that the two can be run
 * side by side on equal terms.
 *
 * Request i goes to (OFFSET + i * STEP) mod SIZE, which is the sequence
 * qemu-img bench issues (a stride such as -S 1052672 = 257 * 4 KiB visits
 * every 4 KiB slot of a power-of-two-sized image in scattered order); with
 * --random, to a uniformly random BUFSIZE-aligned offset instead (xorshift,
 * one fixed seed per thread, so runs repeat). qemu-img keeps DEPTH requests in
 * flight through its AIO engine; the library is synchronous and thread-safe,
 * so DEPTH threads each issue one vd_pread/vd_pwrite at a time, taking the
 * next request number from a shared atomic counter. As in qemu-img, the time
 * covers the requests only, not the open or the final close and flush.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "cli.h"

#define VDISK_BENCH_MAX_THREADS 1024

struct vdisk_bench {
	struct vd_image *img;
	const char *file;
	bool write, random;
	size_t bufsize;
	uint64_t count, step, offset, size;
	int pattern;
	atomic_uint_fast64_t next;
	atomic_bool failed;
	pthread_mutex_t lock;
	char errmsg[1024]; /* first error; protected by lock */
};

struct vdisk_bench_thread {
	struct vdisk_bench *b;
	pthread_t tid;
	uint64_t seed;
};

static uint64_t
vdisk_xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint64_t
vdisk_bench_offset(struct vdisk_bench *b, uint64_t i, uint64_t *seed)
{
	uint64_t off;

	if (b->random) {
		uint64_t slots = (b->size - b->bufsize) / b->bufsize + 1;

		return (vdisk_xorshift(seed) % slots) * b->bufsize;
	}
	off = (uint64_t)(((unsigned __int128)i * b->step + b->offset) % b->size);
	if (off + b->bufsize > b->size) {
		off = 0;
	}
	return off;
}

static void *
vdisk_bench_worker(void *arg)
{
	struct vdisk_bench_thread *t = arg;
	struct vdisk_bench *b = t->b;
	void *buf = NULL;
	uint64_t i, off;
	int rc;

	if (posix_memalign(&buf, 4096, b->bufsize) != 0) {
		pthread_mutex_lock(&b->lock);
		snprintf(b->errmsg, sizeof(b->errmsg), "%s: out of memory", b->file);
		pthread_mutex_unlock(&b->lock);
		atomic_store(&b->failed, true);
		return NULL;
	}
	memset(buf, b->pattern, b->bufsize);
	while (!atomic_load_explicit(&b->failed, memory_order_relaxed)) {
		i = atomic_fetch_add(&b->next, 1);
		if (i >= b->count) {
			break;
		}
		off = vdisk_bench_offset(b, i, &t->seed);
		if (b->write) {
			rc = vd_pwrite(b->img, buf, b->bufsize, off);
		} else {
			rc = vd_pread(b->img, buf, b->bufsize, off);
		}
		if (rc < 0) {
			pthread_mutex_lock(&b->lock);
			if (!b->errmsg[0]) {
				snprintf(b->errmsg, sizeof(b->errmsg), "%s", vd_get_error());
			}
			pthread_mutex_unlock(&b->lock);
			atomic_store(&b->failed, true);
			break;
		}
	}
	free(buf);
	return NULL;
}

int
vdisk_cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"count", required_argument, NULL, 'c'},
		{"size", required_argument, NULL, 's'},
		{"depth", required_argument, NULL, 'd'},
		{"write", no_argument, NULL, 'w'},
		{"random", no_argument, NULL, OPT_RANDOM},
		{"step", required_argument, NULL, 'S'},
		{"offset", required_argument, NULL, 'o'},
		{"format", required_argument, NULL, 'f'},
		{"threads", required_argument, NULL, 't'},
		{"pattern", required_argument, NULL, OPT_PATTERN},
		{"quiet", no_argument, NULL, 'q'},
		{NULL, 0, NULL, 0},
	};
	struct vdisk_bench b = {.count = 75000, .bufsize = 4096};
	struct vdisk_bench_thread *th = NULL;
	uint64_t depth = 64, nthreads = 0, v;
	bool have_step = false, quiet = false;
	const char *fmt = NULL;
	double t0, t1;
	uint64_t k;
	int c, rc = VDISK_EXIT_ERROR;
	uint64_t started = 0;

	while ((c = getopt_long(argc, argv, "c:s:d:wS:o:f:t:q", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (vdisk_parse_uint(optarg, INT32_MAX, &b.count) < 0 || b.count == 0) {
				return vdisk_usage_error("bench", "invalid request count '%s'",
							 optarg);
			}
			break;
		case 's':
			if (vdisk_parse_size(optarg, &v) < 0 || v == 0 || v > INT32_MAX) {
				return vdisk_usage_error("bench", "invalid buffer size '%s'",
							 optarg);
			}
			b.bufsize = (size_t)v;
			break;
		case 'd':
			if (vdisk_parse_uint(optarg, VDISK_BENCH_MAX_THREADS, &depth) < 0 ||
			    depth == 0) {
				return vdisk_usage_error("bench", "invalid depth '%s' (1 to %d)",
							 optarg, VDISK_BENCH_MAX_THREADS);
			}
			break;
		case 't':
			if (vdisk_parse_uint(optarg, VDISK_BENCH_MAX_THREADS, &nthreads) < 0 ||
			    nthreads == 0) {
				return vdisk_usage_error("bench",
							 "invalid thread count '%s' (1 to %d)",
							 optarg, VDISK_BENCH_MAX_THREADS);
			}
			break;
		case 'w':
			b.write = true;
			break;
		case OPT_RANDOM:
			b.random = true;
			break;
		case 'S':
			if (vdisk_parse_size(optarg, &b.step) < 0 || b.step > INT32_MAX) {
				return vdisk_usage_error("bench", "invalid step size '%s'", optarg);
			}
			have_step = true;
			break;
		case 'o':
			if (vdisk_parse_size(optarg, &b.offset) < 0) {
				return vdisk_usage_error("bench", "invalid offset '%s'", optarg);
			}
			break;
		case 'f':
			fmt = optarg;
			break;
		case OPT_PATTERN:
			if (vdisk_parse_uint(optarg, 255, &v) < 0) {
				return vdisk_usage_error("bench", "invalid pattern byte '%s'",
							 optarg);
			}
			b.pattern = (int)v;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			return vdisk_usage_error("bench", "bad option");
		}
	}
	if (optind + 1 != argc) {
		return vdisk_usage_error("bench",
					 optind >= argc ? "FILE is missing" : "too many arguments");
	}
	b.file = argv[optind];
	if (!have_step) {
		b.step = b.bufsize;
	}
	if (!nthreads) {
		nthreads = depth;
	}
	if (nthreads > b.count) {
		nthreads = b.count;
	}
	b.img = vdisk_open(b.file, fmt, b.write ? VD_OPEN_RDWR : 0);
	if (!b.img) {
		return VDISK_EXIT_ERROR;
	}
	b.size = vd_get_size(b.img);
	if (b.bufsize > b.size) {
		vdisk_error(b.file, "buffer size %zu is larger than the image (%" PRIu64 " bytes)",
			    b.bufsize, b.size);
		goto out;
	}
	if (b.offset >= b.size) {
		vdisk_error(b.file, "offset %" PRIu64 " is past the end of the image", b.offset);
		goto out;
	}
	pthread_mutex_init(&b.lock, NULL);
	atomic_init(&b.next, 0);
	atomic_init(&b.failed, false);
	th = calloc(nthreads, sizeof(*th));
	if (!th) {
		vdisk_error(b.file, "out of memory");
		goto out_lock;
	}
	if (!quiet) {
		if (b.random) {
			printf("Sending %" PRIu64 " %s requests, %zu bytes each, %" PRIu64
			       " in parallel (random offsets, aligned to %zu)\n",
			       b.count, b.write ? "write" : "read", b.bufsize, nthreads, b.bufsize);
		} else {
			printf("Sending %" PRIu64 " %s requests, %zu bytes each, %" PRIu64
			       " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64
			       ")\n",
			       b.count, b.write ? "write" : "read", b.bufsize, nthreads, b.offset,
			       b.step);
		}
		fflush(stdout);
	}
	t0 = vdisk_now();
	for (k = 0; k < nthreads; k++) {
		th[k].b = &b;
		th[k].seed = 0x9e3779b97f4a7c15ull * (k + 1);
		if (pthread_create(&th[k].tid, NULL, vdisk_bench_worker, &th[k]) != 0) {
			atomic_store(&b.failed, true);
			snprintf(b.errmsg, sizeof(b.errmsg), "%s: cannot start threads", b.file);
			break;
		}
		started++;
	}
	for (k = 0; k < started; k++) {
		pthread_join(th[k].tid, NULL);
	}
	t1 = vdisk_now();
	if (atomic_load(&b.failed)) {
		vdisk_msg_error(b.file, b.errmsg);
		goto out_lock;
	}
	if (!quiet) {
		printf("Run completed in %3.3f seconds.\n", t1 - t0);
	}
	rc = VDISK_EXIT_OK;
out_lock:
	pthread_mutex_destroy(&b.lock);
out:
	free(th);
	if (vd_close(b.img) < 0 && rc == VDISK_EXIT_OK) {
		vdisk_lib_error(b.file);
		rc = VDISK_EXIT_ERROR;
	}
	return rc;
}
