// SPDX-License-Identifier: MIT
/*
 * foreign-cat: a test program that drives the foreign-format readers
 * (vmdk, qcow2, vhd, vhdx) directly through their struct vd_driver, without
 * the core library, so the readers are checked against qemu-img on their own.
 *
 *   foreign-cat [-f FMT] [-s SNAP] IMAGE          raw bytes of the chain to stdout
 *   foreign-cat -m IMAGE                          map: "offset length type layer"
 *   foreign-cat -i IMAGE                          one line per layer
 *   foreign-cat -c IMAGE                          structure check of every layer
 *   foreign-cat -S IMAGE                          internal snapshots of the top
 *   foreign-cat -T N IMAGE                        N threads of random reads checked
 *                                                 against one sequential read
 *
 * It opens the backing chain itself (backing names relative to each layer's
 * folder, the recorded format, else a probe among the non-raw formats: never
 * raw by guess), and reads through it the way the core does: block_status on
 * the top, falling through HOLE extents to the layer below.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"

extern const struct vd_driver vd_vmdk_driver, vd_qcow2_driver, vd_vhd_driver, vd_vhdx_driver;

static const struct vd_driver *const drivers[] = {
	&vd_qcow2_driver,
	&vd_vmdk_driver,
	&vd_vhdx_driver,
	&vd_vhd_driver,
};

#define MAX_LAYERS 64

/* A raw layer for backing files recorded as raw. */
static int
raw_open(struct vd_layer *l)
{
	struct stat st;

	if (fstat(l->fd, &st) < 0) {
		return -errno;
	}
	l->size = (uint64_t)st.st_size;
	l->granularity = 512;
	return 0;
}

static int
raw_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	return vd_pread_zerofill(l->fd, buf, len, off);
}

static int
raw_bs(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	(void)l;
	ext->offset = off;
	ext->length = len;
	ext->type = VD_EXTENT_DATA;
	return 0;
}

static const struct vd_driver raw_driver = {
	.name = "raw",
	.open = raw_open,
	.pread = raw_pread,
	.block_status = raw_bs,
};

int
vd_layer_open_related(struct vd_layer *l, const char *path, int flags)
{
	char *p = vd_resolve_relative(l->path, path);
	int fd;

	if (!p) {
		return -ENOMEM;
	}
	fd = open(p, flags);
	free(p);
	return fd < 0 ? -errno : fd;
}

int
vd_layer_read_below(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	(void)l;
	(void)off;
	memset(buf, 0, len);
	return 0;
}

static const struct vd_driver *
find_driver(const char *name)
{
	size_t i;

	if (strcmp(name, "raw") == 0) {
		return &raw_driver;
	}
	for (i = 0; i < VD_ARRAY_SIZE(drivers); i++) {
		if (strcmp(drivers[i]->name, name) == 0) {
			return drivers[i];
		}
	}
	return NULL;
}

static const struct vd_driver *
probe(int fd, const char *path)
{
	uint8_t buf[65536];
	struct stat st;
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	const struct vd_driver *best = NULL;
	int score = 0;
	size_t i;

	if (n < 0 || fstat(fd, &st) < 0) {
		return NULL;
	}
	for (i = 0; i < VD_ARRAY_SIZE(drivers); i++) {
		int s = drivers[i]->probe(buf, (size_t)n, (uint64_t)st.st_size, path);

		if (s > score) {
			score = s;
			best = drivers[i];
		}
	}
	return best;
}

static struct vd_layer *
layer_open(const char *path, const char *fmt, bool allow_probe)
{
	struct vd_layer *l = calloc(1, sizeof(*l));
	const struct vd_driver *drv;
	int ret;

	l->path = strdup(path);
	l->readonly = true;
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0) {
		fprintf(stderr, "foreign-cat: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	drv = fmt ? find_driver(fmt) : allow_probe ? probe(l->fd, path) : NULL;
	if (!drv) {
		fprintf(stderr, "foreign-cat: %s: unknown format\n", path);
		exit(2);
	}
	l->drv = drv;
	l->st = calloc(1, drv->instance_size ? drv->instance_size : 1);
	ret = drv->open(l);
	if (ret < 0) {
		fprintf(stderr, "foreign-cat: %s\n", vd_get_error());
		exit(2);
	}
	if (!VD_IS_POW2(l->granularity) || l->granularity < 512 || l->granularity > (2u << 20)) {
		fprintf(stderr, "foreign-cat: %s: bad granularity %u\n", path, l->granularity);
		exit(2);
	}
	return l;
}

static void
layer_close(struct vd_layer *l)
{
	if (l->drv->close) {
		l->drv->close(l);
	}
	close(l->fd);
	free(l->st);
	free(l->path);
	free(l->backing);
	free(l->backing_format);
	free(l->name);
	free(l);
}

static struct vd_layer *layers[MAX_LAYERS];
static int nlayers;

static void
chain_open(struct vd_layer *top)
{
	struct vd_layer *l = top;

	layers[nlayers++] = top;
	while (l->backing) {
		char *p = vd_resolve_relative(l->path, l->backing);

		if (nlayers == MAX_LAYERS) {
			fprintf(stderr, "foreign-cat: chain too deep\n");
			exit(2);
		}
		l = layer_open(p, l->backing_format, true);
		free(p);
		l->index = nlayers;
		layers[nlayers++] = l;
	}
}

/* Read [off, off+len) as layer i sees it. */
static int
chain_read(int i, uint8_t *buf, uint64_t len, uint64_t off)
{
	struct vd_layer *l = layers[i];

	while (len > 0) {
		struct vd_extent e;
		uint64_t n;
		int ret;

		if (off >= l->size) {
			memset(buf, 0, len);
			return 0;
		}
		ret = l->drv->block_status(l, off, VD_MIN(len, l->size - off), &e);
		if (ret < 0) {
			return ret;
		}
		if (e.offset != off || e.length == 0 || e.length > VD_MIN(len, l->size - off)) {
			fprintf(stderr,
				"foreign-cat: %s: bad extent %" PRIu64 "+%" PRIu64 " for %" PRIu64
				"+%" PRIu64 "\n",
				l->path, e.offset, e.length, off, len);
			return -EIO;
		}
		n = e.length;
		if (e.type == VD_EXTENT_HOLE && i + 1 < nlayers) {
			ret = chain_read(i + 1, buf, n, off);
		} else if (e.type == VD_EXTENT_DATA) {
			ret = l->drv->pread(l, buf, n, off);
		} else {
			memset(buf, 0, n);
		}
		if (ret < 0) {
			return ret;
		}
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* -T: the whole disk read once, then threads compare random reads with it. */
static uint8_t *whole;
static uint64_t whole_size;
static int thread_errors;

static void *
reader(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	uint8_t *buf = malloc(256 << 10);
	int i;

	for (i = 0; i < 3000; i++) {
		uint64_t off, len;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		off = seed % whole_size;
		len = 1 + (seed >> 40) % (256 << 10);
		if (i % 2 == 0) {
			off &= ~4095ull;
			len = 4096;
		}
		len = VD_MIN(len, whole_size - off);
		if (chain_read(0, buf, len, off) < 0 || memcmp(buf, whole + off, len) != 0) {
			__atomic_add_fetch(&thread_errors, 1, __ATOMIC_RELAXED);
			fprintf(stderr,
				"foreign-cat: thread read at %" PRIu64 "+%" PRIu64 " differs\n",
				off, len);
			break;
		}
	}
	free(buf);
	return NULL;
}

static int
threads_check(struct vd_layer *top, int n)
{
	pthread_t th[64];
	int i;

	whole_size = top->size;
	whole = malloc(whole_size ? whole_size : 1);
	if (!whole || chain_read(0, whole, whole_size, 0) < 0) {
		fprintf(stderr, "foreign-cat: %s\n", vd_get_error());
		return 1;
	}
	n = VD_MIN(VD_MAX(n, 1), 64);
	for (i = 0; i < n && whole_size; i++) {
		pthread_create(&th[i], NULL, reader, (void *)(uintptr_t)(i + 1));
	}
	for (i = 0; i < n && whole_size; i++) {
		pthread_join(th[i], NULL);
	}
	free(whole);
	return thread_errors ? 1 : 0;
}

static void
report(void *opaque, int layer, enum vd_check_severity sev, const char *msg)
{
	(void)opaque;
	printf("layer %d: %s: %s\n", layer, sev == VD_CHECK_CORRUPT ? "corrupt" : "note", msg);
}

int
main(int argc, char **argv)
{
	const char *fmt = NULL;
	int opt, snap = -1, mode = 0, ret = 0, i, nthreads = 0;
	struct vd_layer *top, *orig = NULL;
	uint64_t off;
	static uint8_t buf[1 << 20];

	while ((opt = getopt(argc, argv, "f:s:micST:")) != -1) {
		switch (opt) {
		case 'f':
			fmt = optarg;
			break;
		case 's':
			snap = atoi(optarg);
			break;
		case 'T':
			mode = 'T';
			nthreads = atoi(optarg);
			break;
		case 'm':
		case 'i':
		case 'c':
		case 'S':
			mode = opt;
			break;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: foreign-cat [-f FMT] [-s SNAP] [-m|-i|-c|-S] IMAGE\n");
		return 2;
	}
	top = layer_open(argv[optind], fmt, true);
	if (snap >= 0) {
		struct vd_layer *v = calloc(1, sizeof(*v));

		v->drv = top->drv;
		v->path = strdup(top->path);
		v->fd = dup(top->fd);
		v->st = calloc(1, top->drv->instance_size);
		if (!top->drv->snapshot_open || top->drv->snapshot_open(top, snap, v) < 0) {
			fprintf(stderr, "foreign-cat: snapshot %d: %s\n", snap, vd_get_error());
			return 2;
		}
		orig = top;
		top = v;
	}
	chain_open(top);
	switch (mode) {
	case 'T':
		ret = threads_check(top, nthreads);
		break;
	case 'i':
		for (i = 0; i < nlayers; i++) {
			struct vd_layer *l = layers[i];

			printf("%d %s size=%" PRIu64
			       " gran=%u backing=%s fmt=%s name=%s created=%" PRId64
			       " allocated=%" PRIu64 "\n",
			       i, l->drv->name, l->size, l->granularity,
			       l->backing ? l->backing : "-",
			       l->backing_format ? l->backing_format : "-", l->name ? l->name : "-",
			       l->created, l->drv->allocated ? l->drv->allocated(l) : 0);
		}
		break;
	case 'S':
		if (top->drv->snapshot_count) {
			for (i = 0; i < top->drv->snapshot_count(top); i++) {
				const char *name;
				int64_t created;

				top->drv->snapshot_info(top, i, &name, &created);
				printf("%d %s %" PRId64 "\n", i, name, created);
			}
		}
		break;
	case 'c':
		for (i = 0; i < nlayers; i++) {
			struct vd_check_result res = {0};

			if (layers[i]->drv->check &&
			    layers[i]->drv->check(layers[i], report, NULL, i, &res) < 0) {
				fprintf(stderr, "foreign-cat: check: %s\n", vd_get_error());
				ret = 2;
			}
			printf("layer %d: %" PRIu64 " blocks, %" PRIu64 " corrupt\n", i,
			       res.blocks_checked, res.corrupt);
			if (res.corrupt) {
				ret = 1;
			}
		}
		break;
	case 'm':
		for (off = 0; off < top->size;) {
			struct vd_extent e;

			if (top->drv->block_status(top, off, top->size - off, &e) < 0) {
				fprintf(stderr, "foreign-cat: %s\n", vd_get_error());
				return 1;
			}
			printf("%" PRIu64 " %" PRIu64 " %s\n", e.offset, e.length,
			       e.type == VD_EXTENT_DATA	  ? "data"
			       : e.type == VD_EXTENT_ZERO ? "zero"
							  : "hole");
			off += e.length;
		}
		break;
	default:
		for (off = 0; off < top->size;) {
			uint64_t n = VD_MIN(sizeof(buf), top->size - off);

			if (chain_read(0, buf, n, off) < 0) {
				fprintf(stderr, "foreign-cat: read at %" PRIu64 ": %s\n", off,
					vd_get_error());
				return 1;
			}
			if (fwrite(buf, 1, n, stdout) != n) {
				return 1;
			}
			off += n;
		}
	}
	for (i = nlayers - 1; i >= 0; i--) {
		layer_close(layers[i]);
	}
	if (orig) {
		layer_close(orig);
	}
	return ret;
}
