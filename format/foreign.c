// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the foreign-format readers (see foreign.h): the table
 * cache, file range checks, decompression wrappers around zlib and libzstd,
 * a table-driven CRC-32C and UTF-16 to UTF-8 decoding; and the "unsupported"
 * driver, which recognises the formats qemu knows and we do not read (VDI, QED,
 * LUKS, ...) so that they are refused by name instead of probed as raw.
 *
 * Every decompressor is bounded by the caller's output size: a hostile
 * compressed cluster cannot make us allocate or write more than one cluster.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include <zlib.h>
#include <zstd.h>

#include "internal.h"
#include "util.h"
#include "foreign.h"

int
ft_cache_init(struct ft_cache *c, size_t table_size, int nslots)
{
	int i;

	memset(c, 0, sizeof(*c));
	c->slots = calloc(nslots, sizeof(*c->slots));
	if (!c->slots) {
		return -ENOMEM;
	}
	c->table_size = table_size;
	c->nslots = nslots;
	for (i = 0; i < nslots; i++) {
		c->slots[i].off = UINT64_MAX;
		c->slots[i].fd = -1;
	}
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

void
ft_cache_destroy(struct ft_cache *c)
{
	int i;

	if (!c->slots) {
		return;
	}
	for (i = 0; i < c->nslots; i++) {
		free(c->slots[i].data);
	}
	free(c->slots);
	c->slots = NULL;
	pthread_mutex_destroy(&c->lock);
}

int
ft_cache_read(struct ft_cache *c, int fd, uint64_t off, size_t pos, void *out, size_t len)
{
	struct ft_slot *s = NULL;
	int i, victim = 0, ret = 0;

	if (pos > c->table_size || len > c->table_size - pos) {
		return vd_set_error(EIO, "table read out of range");
	}
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->nslots; i++) {
		if (c->slots[i].off == off && c->slots[i].fd == fd) {
			s = &c->slots[i];
			break;
		}
		if (c->slots[i].stamp < c->slots[victim].stamp) {
			victim = i;
		}
	}
	if (!s) {
		s = &c->slots[victim];
		if (!s->data) {
			s->data = malloc(c->table_size);
			if (!s->data) {
				ret = -ENOMEM;
				goto out;
			}
		}
		s->off = UINT64_MAX;
		ret = vd_full_pread(fd, s->data, c->table_size, off);
		if (ret < 0) {
			vd_set_error(-ret, "cannot read table at offset %llu: %s",
				     (unsigned long long)off, strerror(-ret));
			goto out;
		}
		s->off = off;
		s->fd = fd;
	}
	s->stamp = ++c->clock;
	memcpy(out, s->data + pos, len);
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int64_t
ft_file_size(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		return -errno;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		return end < 0 ? -errno : (int64_t)end;
	}
	if (!S_ISREG(st.st_mode)) {
		return -EINVAL;
	}
	return st.st_size;
}

int64_t
ft_file_mtime(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (int64_t)st.st_mtime : 0;
}

bool
ft_in_file(uint64_t off, uint64_t len, uint64_t file_size)
{
	uint64_t end;

	if (VD_ADD_OVERFLOW(off, len, &end)) {
		return false;
	}
	return end <= file_size;
}

int
ft_inflate(const void *in, size_t in_len, void *out, size_t out_len, size_t *got)
{
	z_stream zs;
	int ret;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit(&zs) != Z_OK) {
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = in_len > UINT32_MAX ? UINT32_MAX : (uInt)in_len;
	zs.next_out = out;
	zs.avail_out = (uInt)out_len;
	ret = inflate(&zs, Z_FINISH);
	*got = out_len - zs.avail_out;
	inflateEnd(&zs);
	if (ret != Z_STREAM_END) {
		return -EIO;
	}
	return 0;
}

int
ft_inflate_raw(const void *in, size_t in_len, void *out, size_t out_len)
{
	z_stream zs;
	int ret;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -12) != Z_OK) {
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = in_len > UINT32_MAX ? UINT32_MAX : (uInt)in_len;
	zs.next_out = out;
	zs.avail_out = (uInt)out_len;
	ret = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	/* Trailing bytes of the last sector follow the stream: a full output is what counts. */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && zs.avail_out == 0) {
		return 0;
	}
	return -EIO;
}

int
ft_zstd(const void *in, size_t in_len, void *out, size_t out_len)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer ib = {in, in_len, 0};
	ZSTD_outBuffer ob = {out, out_len, 0};
	int ret = -EIO;

	if (!dctx) {
		return -ENOMEM;
	}
	while (ob.pos < ob.size) {
		size_t r = ZSTD_decompressStream(dctx, &ob, &ib);

		if (ZSTD_isError(r)) {
			break;
		}
		if (ob.pos == ob.size) {
			ret = 0;
			break;
		}
		if (r == 0 || ib.pos == ib.size) {
			break; /* frame ended or input exhausted before the cluster was full */
		}
	}
	if (ob.pos == ob.size) {
		ret = 0;
	}
	ZSTD_freeDCtx(dctx);
	return ret;
}

static uint32_t ft_crc32c_table[256];
static pthread_once_t ft_crc32c_once = PTHREAD_ONCE_INIT;

static void
ft_crc32c_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++) {
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		}
		ft_crc32c_table[i] = c;
	}
}

uint32_t
ft_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&ft_crc32c_once, ft_crc32c_init);
	crc = ~crc;
	while (len--) {
		crc = ft_crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	}
	return ~crc;
}

char *
ft_utf16_to_utf8(const uint8_t *p, size_t nchars, bool big_endian)
{
	char *out = malloc(nchars * 3 + 1);
	size_t i, o = 0;

	if (!out) {
		return NULL;
	}
	for (i = 0; i < nchars; i++) {
		uint32_t c = big_endian ? vd_be16(p + 2 * i) : vd_le16(p + 2 * i);

		if (c == 0) {
			break;
		}
		if (c >= 0xd800 && c < 0xdc00 && i + 1 < nchars) {
			uint32_t d = big_endian ? vd_be16(p + 2 * i + 2) : vd_le16(p + 2 * i + 2);

			if (d >= 0xdc00 && d < 0xe000) {
				c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
				i++;
			}
		}
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xc0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xe0 | (c >> 12));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			/* 4-byte sequence: fits because a surrogate pair used 2 units (6 bytes). */
			out[o++] = (char)(0xf0 | (c >> 18));
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	out[o] = '\0';
	return out;
}

char *
ft_read_text(int fd, size_t max, size_t *len)
{
	int64_t fsz = ft_file_size(fd);
	size_t n;
	char *buf;

	if (fsz < 0) {
		errno = (int)-fsz;
		return NULL;
	}
	n = (uint64_t)fsz > max ? max : (size_t)fsz;
	buf = malloc(n + 1);
	if (!buf) {
		return NULL;
	}
	if (vd_full_pread(fd, buf, n, 0) < 0) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	buf[n] = '\0';
	if (len) {
		*len = n;
	}
	return buf;
}

int
ft_map(struct vd_layer *l, ft_map1_fn map1, uint64_t off, uint64_t len,
       enum vd_extent_type *type, uint64_t *n, uint64_t *host)
{
	int ret = map1(l, off, len, type, n, host);

	while (ret == 0 && *n < len && *n < (UINT64_C(1) << 30)) {
		enum vd_extent_type t2;
		uint64_t n2, h2 = 0;

		if (map1(l, off + *n, len - *n, &t2, &n2, &h2) < 0 || t2 != *type ||
		    (t2 == VD_EXTENT_DATA && h2 != *host + *n)) {
			break;
		}
		*n += n2;
	}
	return ret;
}

int
ft_block_status(struct vd_layer *l, ft_map1_fn map1, uint64_t off, uint64_t len,
		struct vd_extent *ext)
{
	enum vd_extent_type t;
	uint64_t n, host;
	int ret = ft_map(l, map1, off, len, &t, &n, &host);

	if (ret < 0) {
		return ret;
	}
	ext->offset = off;
	ext->length = n;
	ext->type = t;
	return 0;
}

int
ft_pread(struct vd_layer *l, ft_map1_fn map1, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	int ret;

	while (len > 0) {
		enum vd_extent_type t;
		uint64_t n, host = 0;

		ret = ft_map(l, map1, off, len, &t, &n, &host);
		if (ret < 0) {
			return ret;
		}
		if (t == VD_EXTENT_DATA) {
			ret = vd_pread_zerofill(l->fd, p, n, host);
			if (ret < 0) {
				return vd_set_error(EIO, "%s: read error at virtual offset %" PRIu64,
						    l->path, off);
			}
		} else {
			memset(p, 0, n);
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

uint64_t
ft_allocated(struct vd_layer *l)
{
	uint64_t total = 0, off = 0;

	while (off < l->size) {
		struct vd_extent e;

		if (l->drv->block_status(l, off, l->size - off, &e) < 0) {
			break;
		}
		if (e.type == VD_EXTENT_DATA) {
			total += e.length;
		}
		off += e.length;
	}
	return total;
}

/*
 * Formats qemu-img knows and this library does not read: without this table a
 * VDI, QED, LUKS, Parallels or Bochs image would be probed as raw and its
 * bytes (headers, tables) shown as the disk, silently wrong. The probe scores
 * them above raw, and open refuses them with a message naming the format.
 */
static const struct {
	size_t off;
	const char *magic;
	size_t len;
	const char *what;
	const char *hint;
} ft_unsupported[] = {
	{0x40, "\x7f\x10\xda\xbe", 4, "VDI (VirtualBox)",
	 "qemu-img convert -O qcow2 makes one that is"},
	{0, "QED\0", 4, "QED", "qemu-img convert -O qcow2 makes one that is"},
	/* A whole-disk LUKS volume's image starts so too: raw, as the user may say. */
	{0, "LUKS\xba\xbe", 6, "LUKS (qemu's encrypted raw)",
	 "a raw disk image holding a LUKS volume opens with the format given as raw"},
	{0, "WithoutFreeSpace", 16, "Parallels", "qemu-img convert -O qcow2 makes one that is"},
	{0, "WithouFreSpacExt", 16, "Parallels", "qemu-img convert -O qcow2 makes one that is"},
	{0, "Bochs Virtual HD Image", 22, "Bochs", "qemu-img convert -O qcow2 makes one that is"},
	{0, "#!/bin/sh\n#V2.0 Format\n", 23, "cloop",
	 "qemu-img convert -O qcow2 makes one that is"},
};

static int
ft_unsupported_find(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(ft_unsupported) / sizeof(ft_unsupported[0]); i++) {
		if (len >= ft_unsupported[i].off + ft_unsupported[i].len &&
		    memcmp(buf + ft_unsupported[i].off, ft_unsupported[i].magic,
			   ft_unsupported[i].len) == 0) {
			return (int)i;
		}
	}
	return -1;
}

static int
ft_unsupported_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)file_size;
	(void)filename;
	return buf && ft_unsupported_find(buf, len) >= 0 ? 100 : 0;
}

static int
ft_unsupported_open(struct vd_layer *l)
{
	uint8_t buf[512];
	ssize_t n = pread(l->fd, buf, sizeof(buf), 0);
	int i = n > 0 ? ft_unsupported_find(buf, (size_t)n) : -1;

	if (i < 0) {
		return vd_set_error(EINVAL, "%s: not an image of a format vdisk reads", l->path);
	}
	return vd_set_error(ENOTSUP, "%s: %s images are not supported (%s)", l->path,
			    ft_unsupported[i].what, ft_unsupported[i].hint);
}

const struct vd_driver vd_unsupported_driver = {
	.name = "unsupported",
	.instance_size = 0,
	.thread_model = VD_THREAD_PARALLEL,
	.probe = ft_unsupported_probe,
	.open = ft_unsupported_open,
};
