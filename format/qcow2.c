// SPDX-License-Identifier: MIT
/*
 * qcow2 reader (versions 2 and 3), after qemu's docs/interop/qcow2.txt.
 *
 * Read-only and PARALLEL: the L1 table is loaded at open and never changes;
 * L2 tables go through a small mutex-protected cache (foreign.h) that copies
 * entries out. Supported: zero clusters, zlib and zstd compressed clusters,
 * extended L2 entries (32 subclusters per cluster), external data files,
 * backing files with a recorded format, internal snapshots (each one opens
 * as a read-only view layer). Encrypted images (AES or LUKS) are refused
 * with a clear message. Refcounts are not needed for reading and are ignored.
 *
 * Hostile input: the header, every extension, the L1 table size (qemu's
 * 32 MiB limit), the snapshot table (65536 entries, bounded extra data and
 * names) and every table offset are checked against the file before use; a
 * bad L2 entry gives -EIO naming the virtual offset and the entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"
#include "foreign.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAP_EXTRA 1024
#define QCOW2_MAX_BACKING_LEN 1023

#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATAFILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_CTYPE (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_INCOMPAT_KNOWN UINT64_C(0x1f)

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO (UINT64_C(1) << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull

enum qcow2_kind { Q_HOLE, Q_ZERO, Q_DATA, Q_COMPRESSED };

struct qcow2_snap {
	char *name;
	int64_t date;
	uint64_t l1_off;
	uint32_t l1_size;
	uint64_t disk_size;
};

struct qcow2_state {
	int fd;
	bool own_fd;
	int data_fd; /* external data file, or fd */
	bool own_data_fd;
	uint64_t file_size;
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t size;
	uint64_t incompat;
	bool ext_l2;
	bool data_file;
	int ctype;	     /* 0 zlib, 1 zstd */
	uint32_t entry_size; /* bytes per L2 entry: 8, or 16 with extended L2 */
	uint32_t l2_bits;    /* log2 of entries per L2 table */
	uint32_t unit_bits;  /* log2 of the mapping unit: subcluster or cluster */
	uint64_t *l1;
	uint32_t l1_size;
	int csize_shift;
	uint64_t csize_mask, coffset_mask;
	struct qcow2_snap *snaps;
	int nb_snaps;
	struct ft_cache l2c;
};

/* One mapping run: [voff, voff+len) of one kind; host offset for DATA. */
struct qcow2_run {
	enum qcow2_kind kind;
	uint64_t len;
	uint64_t host;	/* DATA: host offset of voff; COMPRESSED: compressed offset */
	uint64_t csize; /* COMPRESSED: bytes of compressed data */
};

static int
qcow2_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)file_size;
	(void)filename;
	/*
	 * Any version: qemu's older "qcow" (version 1) and unknown versions have
	 * the same magic, and must be refused by open, not taken for raw bytes.
	 */
	if (len >= 8 && vd_be32(buf) == QCOW2_MAGIC) {
		return 100;
	}
	return 0;
}

static const char *
qcow2_fmt_name(const char *qemu_name)
{
	/* qemu's block driver names for the formats we read. */
	if (strcmp(qemu_name, "vpc") == 0) {
		return "vhd";
	}
	if (strcmp(qemu_name, "file") == 0) {
		return "raw";
	}
	return qemu_name;
}

static int
qcow2_read_exts(struct vd_layer *l, struct qcow2_state *s, uint64_t start, uint64_t end,
		char **data_file)
{
	uint8_t hdr[8];
	uint64_t off = start;
	int ret;

	while (off + 8 <= end) {
		uint32_t type, len;
		uint64_t next;

		ret = vd_full_pread(s->fd, hdr, 8, off);
		if (ret < 0) {
			return vd_set_error(EIO, "%s: cannot read header extension", l->path);
		}
		type = vd_be32(hdr);
		len = vd_be32(hdr + 4);
		if (type == QCOW2_EXT_END) {
			return 0;
		}
		next = off + 8 + VD_ALIGN_UP((uint64_t)len, 8);
		if (next > end) {
			return vd_set_error(EINVAL,
					    "%s: header extension 0x%08x overflows the header",
					    l->path, type);
		}
		if (type == QCOW2_EXT_BACKING_FMT || type == QCOW2_EXT_DATA_FILE) {
			char *str;

			if (len == 0 || len > QCOW2_MAX_BACKING_LEN) {
				return vd_set_error(EINVAL,
						    "%s: header extension 0x%08x: bad length %u",
						    l->path, type, len);
			}
			str = calloc(1, len + 1);
			if (!str) {
				return -ENOMEM;
			}
			ret = vd_full_pread(s->fd, str, len, off + 8);
			if (ret < 0) {
				free(str);
				return vd_set_error(EIO, "%s: cannot read header extension",
						    l->path);
			}
			if (type == QCOW2_EXT_BACKING_FMT) {
				free(l->backing_format);
				l->backing_format = strdup(qcow2_fmt_name(str));
				free(str);
				if (!l->backing_format) {
					return -ENOMEM;
				}
			} else {
				free(*data_file);
				*data_file = str;
			}
		}
		off = next;
	}
	return 0;
}

static int
qcow2_load_l1(struct vd_layer *l, struct qcow2_state *s, uint64_t off, uint32_t n, uint64_t size)
{
	uint64_t need, bytes = (uint64_t)n * 8, span;
	uint32_t i;
	int ret;

	span = 1ull << (s->cluster_bits + s->l2_bits);
	need = VD_DIV_ROUND_UP(size, span);
	if (bytes > QCOW2_MAX_L1_BYTES) {
		return vd_set_error(EFBIG, "%s: L1 table too big (%u entries)", l->path, n);
	}
	if (need > n) {
		return vd_set_error(EINVAL, "%s: L1 table too small for the virtual size", l->path);
	}
	if (n && ((off & (s->cluster_size - 1)) || !ft_in_file(off, bytes, s->file_size))) {
		return vd_set_error(EINVAL,
				    "%s: L1 table at offset %" PRIu64 " is outside the file",
				    l->path, off);
	}
	s->l1 = calloc(n ? n : 1, 8);
	if (!s->l1) {
		return -ENOMEM;
	}
	s->l1_size = n;
	if (n) {
		ret = vd_full_pread(s->fd, s->l1, bytes, off);
		if (ret < 0) {
			return vd_set_error(EIO, "%s: cannot read the L1 table", l->path);
		}
	}
	for (i = 0; i < n; i++) {
		s->l1[i] = be64toh(s->l1[i]);
	}
	return 0;
}

static int
qcow2_read_snapshots(struct vd_layer *l, struct qcow2_state *s, uint64_t off, uint32_t n)
{
	uint8_t h[40];
	uint32_t i;
	int ret;

	if (n == 0) {
		return 0;
	}
	if (n > QCOW2_MAX_SNAPSHOTS) {
		return vd_set_error(EFBIG, "%s: too many internal snapshots (%u)", l->path, n);
	}
	if (off & 7) {
		return vd_set_error(EINVAL, "%s: snapshot table offset unaligned", l->path);
	}
	s->snaps = calloc(n, sizeof(*s->snaps));
	if (!s->snaps) {
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct qcow2_snap *sn = &s->snaps[i];
		uint32_t extra, id_len, name_len;
		uint8_t ex[QCOW2_MAX_SNAP_EXTRA];
		uint64_t need;

		if (!ft_in_file(off, 40, s->file_size)) {
			return vd_set_error(EINVAL, "%s: snapshot table runs past the file",
					    l->path);
		}
		ret = vd_full_pread(s->fd, h, 40, off);
		if (ret < 0) {
			return vd_set_error(EIO, "%s: cannot read the snapshot table", l->path);
		}
		sn->l1_off = vd_be64(h);
		sn->l1_size = vd_be32(h + 8);
		id_len = vd_be16(h + 12);
		name_len = vd_be16(h + 14);
		sn->date = vd_be32(h + 16);
		extra = vd_be32(h + 36);
		if (extra > QCOW2_MAX_SNAP_EXTRA) {
			return vd_set_error(EINVAL, "%s: snapshot %u: extra data too large",
					    l->path, i);
		}
		need = 40ull + extra + id_len + name_len;
		if (!ft_in_file(off, need, s->file_size)) {
			return vd_set_error(EINVAL, "%s: snapshot %u runs past the file", l->path,
					    i);
		}
		sn->disk_size = s->size;
		if (extra >= 16) {
			ret = vd_full_pread(s->fd, ex, extra, off + 40);
			if (ret < 0) {
				return vd_set_error(EIO, "%s: cannot read snapshot %u", l->path, i);
			}
			sn->disk_size = vd_be64(ex + 8);
		}
		sn->name = calloc(1, (name_len ? name_len : id_len) + 1);
		if (!sn->name) {
			return -ENOMEM;
		}
		/* Name, or the numeric ID when the name is empty. */
		ret = vd_full_pread(s->fd, sn->name, name_len ? name_len : id_len,
				    off + 40 + extra + (name_len ? id_len : 0));
		if (ret < 0) {
			return vd_set_error(EIO, "%s: cannot read snapshot %u", l->path, i);
		}
		off = VD_ALIGN_UP(off + need, 8);
		s->nb_snaps = (int)i + 1;
	}
	return 0;
}

static void
qcow2_free(struct qcow2_state *s)
{
	int i;

	for (i = 0; i < s->nb_snaps; i++) {
		free(s->snaps[i].name);
	}
	free(s->snaps);
	s->snaps = NULL;
	s->nb_snaps = 0;
	free(s->l1);
	s->l1 = NULL;
	ft_cache_destroy(&s->l2c);
	if (s->own_data_fd && s->data_fd >= 0) {
		close(s->data_fd);
	}
	if (s->own_fd && s->fd >= 0) {
		close(s->fd);
	}
	s->own_fd = s->own_data_fd = false;
}

static int
qcow2_init_cache(struct qcow2_state *s)
{
	int nslots = (int)VD_MAX(4, VD_MIN(32, (16u << 20) / s->cluster_size));

	return ft_cache_init(&s->l2c, s->cluster_size, nslots);
}

/*
 * QEMU also takes protocols where a backing file name goes: "file:NAME" is
 * NAME; a URL (nbd://, iscsi://, http://...), "json:{...}" or a legacy
 * "nbd:"/"rbd:"-style string names no file here, and is refused as such
 * rather than reported as a missing file.
 */
static int
qcow2_backing_name(struct vd_layer *l)
{
	static const char *const proto[] = {"json:", "nbd:",	 "rbd:", "gluster:", "sheepdog:",
					    "ssh:",  "iscsi:", "nfs:", "vxhs:",	   NULL};
	char *b = l->backing;
	const char *p = b;

	if (strncmp(b, "file:", 5) == 0) {
		memmove(b, b + 5, strlen(b + 5) + 1);
		return 0;
	}
	while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '+' || *p == '.' ||
	       *p == '-') {
		p++;
	}
	for (int i = 0; proto[i]; i++) {
		if (strncmp(b, proto[i], strlen(proto[i])) == 0) {
			p = NULL;
			break;
		}
	}
	if (!p || (p != b && strncmp(p, "://", 3) == 0)) {
		return vd_set_error(ENOTSUP,
				    "%s: the backing file '%s' is a QEMU protocol or option string, "
				    "not a file: not supported",
				    l->path, b);
	}
	return 0;
}

static int
qcow2_open(struct vd_layer *l)
{
	struct qcow2_state *s = l->st;
	uint8_t h[112];
	uint32_t header_len = 72, crypt, l1_size, nb_snaps, bfsize;
	uint64_t l1_off, snap_off, bfoff, ext_end;
	char *data_file = NULL;
	int64_t fsz;
	int ret;

	s->fd = l->fd;
	s->data_fd = l->fd;
	fsz = ft_file_size(s->fd);
	if (fsz < 0) {
		return vd_set_error((int)-fsz, "%s: not a regular file", l->path);
	}
	s->file_size = (uint64_t)fsz;
	memset(h, 0, sizeof(h));
	if (s->file_size < 72 || vd_full_pread(s->fd, h, VD_MIN(sizeof(h), s->file_size), 0) < 0) {
		return vd_set_error(EINVAL, "%s: file too short for a qcow2 header", l->path);
	}
	if (vd_be32(h) != QCOW2_MAGIC) {
		return vd_set_error(EINVAL, "%s: not a qcow2 image", l->path);
	}
	s->version = vd_be32(h + 4);
	if (s->version == 1) {
		return vd_set_error(ENOTSUP,
				    "%s: qcow version 1 images (qemu's older 'qcow' format) are "
				    "not supported: convert it with qemu-img convert -O qcow2",
				    l->path);
	}
	if (s->version != 2 && s->version != 3) {
		return vd_set_error(ENOTSUP, "%s: unsupported qcow2 version %u", l->path,
				    s->version);
	}
	bfoff = vd_be64(h + 8);
	bfsize = vd_be32(h + 16);
	s->cluster_bits = vd_be32(h + 20);
	/* qemu counts whole 512-byte sectors: a hand-made odd size reads as it rounds down. */
	s->size = vd_be64(h + 24) & ~UINT64_C(511);
	crypt = vd_be32(h + 32);
	l1_size = vd_be32(h + 36);
	l1_off = vd_be64(h + 40);
	nb_snaps = vd_be32(h + 60);
	snap_off = vd_be64(h + 64);
	if (s->cluster_bits < 9 || s->cluster_bits > 21) {
		return vd_set_error(EINVAL, "%s: bad cluster size 2^%u", l->path, s->cluster_bits);
	}
	s->cluster_size = 1ull << s->cluster_bits;
	if (s->version == 3) {
		header_len = vd_be32(h + 100);
		s->incompat = vd_be64(h + 72);
		if (header_len < 104 || header_len > s->cluster_size || header_len % 8) {
			return vd_set_error(EINVAL, "%s: bad header length %u", l->path,
					    header_len);
		}
		if (vd_be32(h + 96) > 6) {
			return vd_set_error(EINVAL, "%s: bad refcount order", l->path);
		}
		if (header_len > 104) {
			s->ctype = h[104];
		}
	}
	if (crypt != 0) {
		return vd_set_error(ENOTSUP,
				    "%s: encrypted qcow2 images (%s) are not supported yet",
				    l->path, crypt == 2 ? "LUKS" : "AES");
	}
	if (s->incompat & ~QCOW2_INCOMPAT_KNOWN) {
		return vd_set_error(ENOTSUP,
				    "%s: unsupported qcow2 incompatible features 0x%" PRIx64,
				    l->path, s->incompat & ~QCOW2_INCOMPAT_KNOWN);
	}
	if (!(s->incompat & QCOW2_INCOMPAT_CTYPE) && s->ctype != 0) {
		return vd_set_error(EINVAL, "%s: compression type set without its feature bit",
				    l->path);
	}
	if (s->ctype > 1) {
		return vd_set_error(ENOTSUP, "%s: unknown compression type %d", l->path, s->ctype);
	}
	s->ext_l2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
	s->data_file = s->incompat & QCOW2_INCOMPAT_DATAFILE;
	if (s->ext_l2 && s->cluster_bits < 14) {
		return vd_set_error(EINVAL, "%s: extended L2 entries need 16 KiB clusters",
				    l->path);
	}
	if (s->size > (1ull << 62)) {
		return vd_set_error(EFBIG, "%s: virtual size too large", l->path);
	}
	s->entry_size = s->ext_l2 ? 16 : 8;
	s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
	s->unit_bits = s->ext_l2 ? s->cluster_bits - 5 : s->cluster_bits;
	s->csize_shift = 62 - ((int)s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->coffset_mask = (1ull << s->csize_shift) - 1;

	/* Extensions live between the header and the backing name (or the cluster end). */
	ext_end = VD_MIN(s->cluster_size, s->file_size);
	if (bfoff) {
		if (bfsize == 0 || bfsize > QCOW2_MAX_BACKING_LEN ||
		    !ft_in_file(bfoff, bfsize, VD_MIN(s->cluster_size, s->file_size))) {
			return vd_set_error(EINVAL, "%s: bad backing file name location", l->path);
		}
		ext_end = VD_MIN(ext_end, bfoff);
	}
	ret = qcow2_read_exts(l, s, header_len, ext_end, &data_file);
	if (ret < 0) {
		goto fail;
	}
	if (bfoff) {
		l->backing = calloc(1, bfsize + 1);
		if (!l->backing) {
			ret = -ENOMEM;
			goto fail;
		}
		if (vd_full_pread(s->fd, l->backing, bfsize, bfoff) < 0) {
			ret = vd_set_error(EIO, "%s: cannot read the backing file name", l->path);
			goto fail;
		}
		if (strlen(l->backing) != bfsize) {
			ret = vd_set_error(EINVAL, "%s: backing file name contains a NUL", l->path);
			goto fail;
		}
		ret = qcow2_backing_name(l);
		if (ret < 0) {
			goto fail;
		}
	} else {
		free(l->backing_format);
		l->backing_format = NULL;
	}
	if (s->data_file) {
		int dfd;
		int64_t dsz;

		if (!data_file) {
			ret = vd_set_error(EINVAL, "%s: external data file name not recorded",
					   l->path);
			goto fail;
		}
		dfd = vd_layer_open_related(l, data_file,
					    O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (dfd < 0) {
			/* vd_layer_open_related: EINVAL for FIFOs, terminals, sockets. */
			ret = vd_set_error(-dfd, "%s: cannot open external data file '%s': %s",
					   l->path, data_file,
					   dfd == -EINVAL ? "not a regular file or block device"
							  : strerror(-dfd));
			goto fail;
		}
		s->data_fd = dfd;
		s->own_data_fd = true;
		dsz = ft_file_size(dfd);
		if (dsz < 0) {
			ret = vd_set_error(EINVAL, "%s: data file '%s' is not a file", l->path,
					   data_file);
			goto fail;
		}
	}
	ret = qcow2_load_l1(l, s, l1_off, l1_size, s->size);
	if (ret < 0) {
		goto fail;
	}
	ret = qcow2_read_snapshots(l, s, snap_off, nb_snaps);
	if (ret < 0) {
		goto fail;
	}
	ret = qcow2_init_cache(s);
	if (ret < 0) {
		goto fail;
	}
	free(data_file);
	l->created = ft_file_mtime(s->fd);
	l->size = s->size;
	l->granularity = 1u << VD_MIN(s->unit_bits, 21);
	return 0;
fail:
	free(data_file);
	qcow2_free(s);
	return ret;
}

static void
qcow2_close(struct vd_layer *l)
{
	qcow2_free(l->st);
}

/*
 * Describe the run starting at virtual offset off (at most len bytes): its
 * kind, and where its data lives. A run of DATA has contiguous host offsets.
 * A bad entry ends the run before it (the next call, starting there, fails),
 * so that check reports each bad cluster once and a read gets the good part.
 */
static int
qcow2_map(struct vd_layer *l, uint64_t off, uint64_t len, struct qcow2_run *run)
{
	struct qcow2_state *s = l->st;
	uint64_t end = off + len, pos = off, next_host = 0;
	uint64_t unit = 1ull << s->unit_bits;
	uint64_t ent[2 * 64];
	bool have = false;
	int ret;

	while (pos < end) {
		uint64_t l1_idx = pos >> (s->cluster_bits + s->l2_bits);
		uint64_t table_end = (l1_idx + 1) << (s->cluster_bits + s->l2_bits);
		uint64_t first_l2 = (pos >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
		uint64_t bend = VD_MIN(end, table_end), base = pos, l2_off;
		size_t nent, ci;

		if (l1_idx >= s->l1_size) {
			return have ? 0
				    : vd_set_error(EIO, "%s: offset %" PRIu64 " beyond the L1 table",
						   l->path, pos);
		}
		l2_off = s->l1[l1_idx] & QCOW2_OFFSET_MASK;
		if (l2_off == 0) {
			if (have && run->kind != Q_HOLE) {
				break;
			}
			run->kind = Q_HOLE;
			run->len = (have ? run->len : 0) + (bend - pos);
			have = true;
			pos = bend;
			continue;
		}
		if ((l2_off & (s->cluster_size - 1)) ||
		    !ft_in_file(l2_off, s->cluster_size, s->file_size)) {
			return have ? 0 : vd_set_error(EIO,
					    "%s: L1 entry %" PRIu64 " points outside the file "
					    "(0x%" PRIx64 ")",
					    l->path, l1_idx, l2_off);
		}
		nent = (size_t)VD_MIN(
			VD_DIV_ROUND_UP(bend - (pos & ~(s->cluster_size - 1)), s->cluster_size),
			64);
		ret = ft_cache_read(&s->l2c, s->fd, l2_off, first_l2 * s->entry_size, ent,
				    nent * s->entry_size);
		if (ret < 0) {
			return have ? 0 : ret;
		}
		while (pos < bend) {
			uint64_t e, bm = 0, host, ulen;
			unsigned sc = (unsigned)((pos & (s->cluster_size - 1)) >> s->unit_bits);
			enum qcow2_kind k;
			bool normal;

			ci = (size_t)((pos >> s->cluster_bits) - (base >> s->cluster_bits));
			if (ci >= nent) {
				break;
			}
			e = be64toh(ent[ci * (s->entry_size / 8)]);
			if (s->ext_l2) {
				bm = be64toh(ent[ci * 2 + 1]);
			}
			if (e & QCOW2_OFLAG_COMPRESSED) {
				uint64_t nsec;

				if (s->data_file) {
					return have ? 0 : vd_set_error(
						EIO,
						"%s: compressed cluster with an external "
						"data file at offset %" PRIu64,
						l->path, pos);
				}
				if (have) {
					return 0;
				}
				run->kind = Q_COMPRESSED;
				run->host = e & s->coffset_mask;
				nsec = ((e >> s->csize_shift) & s->csize_mask) + 1;
				run->csize = nsec * 512 - (run->host & 511);
				run->len = VD_MIN(end, ((pos >> s->cluster_bits) + 1)
							       << s->cluster_bits) -
					   pos;
				if (run->host >= s->file_size) {
					return have ? 0 : vd_set_error(
						EIO,
						"%s: compressed cluster at offset %" PRIu64
						" points outside the file",
						l->path, pos);
				}
				return 0;
			}
			host = e & QCOW2_OFFSET_MASK;
			normal = host != 0 || (s->data_file && (e & QCOW2_OFLAG_COPIED));
			if (!s->ext_l2) {
				if (e & QCOW2_OFLAG_ZERO) {
					k = Q_ZERO;
				} else {
					k = normal ? Q_DATA : Q_HOLE;
				}
			} else {
				bool a = (bm >> sc) & 1, z = (bm >> (32 + sc)) & 1;

				if ((a && z) || (!normal && a)) {
					return have ? 0 : vd_set_error(
						EIO,
						"%s: invalid subcluster bitmap at offset %" PRIu64,
						l->path, pos);
				}
				k = z ? Q_ZERO : a ? Q_DATA : Q_HOLE;
			}
			if (k == Q_DATA) {
				if (host & (s->cluster_size - 1)) {
					return have ? 0 : vd_set_error(
						EIO,
						"%s: unaligned cluster offset 0x%" PRIx64
						" at virtual offset %" PRIu64,
						l->path, host, pos);
				}
				host += pos & (s->cluster_size - 1);
				if (!s->data_file && host >= s->file_size) {
					return have ? 0 : vd_set_error(EIO,
							    "%s: cluster at virtual offset %" PRIu64
							    " points outside the file",
							    l->path, pos);
				}
			}
			if (!have) {
				run->kind = k;
				run->host = host;
				run->len = 0;
				have = true;
			} else if (k != run->kind || (k == Q_DATA && host != next_host)) {
				return 0;
			}
			ulen = VD_MIN(unit - (pos & (unit - 1)), end - pos);
			run->len += ulen;
			next_host = host + ulen;
			pos += ulen;
		}
	}
	if (!have) {
		return vd_set_error(EIO, "%s: mapping failed at offset %" PRIu64, l->path, off);
	}
	return 0;
}

static int
qcow2_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct qcow2_run run;
	int ret = qcow2_map(l, off, len, &run);

	if (ret < 0) {
		return ret;
	}
	ext->offset = off;
	ext->length = run.len;
	ext->type = run.kind == Q_HOLE	 ? VD_EXTENT_HOLE
		    : run.kind == Q_ZERO ? VD_EXTENT_ZERO
					 : VD_EXTENT_DATA;
	return 0;
}

static int
qcow2_read_compressed(struct vd_layer *l, struct qcow2_run *run, uint64_t off, uint8_t *buf,
		      uint64_t n)
{
	struct qcow2_state *s = l->st;
	uint64_t csize = VD_MIN(run->csize, s->file_size - run->host);
	uint8_t *in = malloc(csize ? csize : 1), *out = malloc(s->cluster_size);
	int ret;

	if (!in || !out) {
		ret = -ENOMEM;
		goto out;
	}
	ret = vd_full_pread(s->fd, in, csize, run->host);
	if (ret < 0) {
		ret = vd_set_error(EIO, "%s: cannot read compressed cluster at offset %" PRIu64,
				   l->path, off);
		goto out;
	}
	ret = s->ctype == 1 ? ft_zstd(in, csize, out, s->cluster_size)
			    : ft_inflate_raw(in, csize, out, s->cluster_size);
	if (ret < 0) {
		ret = vd_set_error(EIO, "%s: corrupt compressed cluster at virtual offset %" PRIu64,
				   l->path, off & ~(s->cluster_size - 1));
		goto out;
	}
	memcpy(buf, out + (off & (s->cluster_size - 1)), n);
out:
	free(in);
	free(out);
	return ret;
}

static int
qcow2_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	struct qcow2_state *s = l->st;
	uint8_t *p = buf;
	int ret;

	while (len > 0) {
		struct qcow2_run run;
		uint64_t n;

		ret = qcow2_map(l, off, len, &run);
		if (ret < 0) {
			return ret;
		}
		n = VD_MIN(run.len, len);
		switch (run.kind) {
		case Q_HOLE:
		case Q_ZERO:
			memset(p, 0, n);
			break;
		case Q_DATA:
			if (s->data_file) {
				ret = vd_pread_zerofill(s->data_fd, p, n, run.host);
			} else {
				ret = vd_pread_zerofill(s->fd, p, n, run.host);
			}
			if (ret < 0) {
				return vd_set_error(EIO,
						    "%s: read error at virtual offset %" PRIu64,
						    l->path, off);
			}
			break;
		case Q_COMPRESSED:
			ret = qcow2_read_compressed(l, &run, off, p, n);
			if (ret < 0) {
				return ret;
			}
			break;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static uint64_t
qcow2_allocated(struct vd_layer *l)
{
	return ft_allocated(l);	/* compressed clusters/grains are data too */
}

/* An external data file. */
static int
qcow2_files(struct vd_layer *l, int *fds, int max)
{
	struct qcow2_state *s = l->st;

	if (max < 1 || s->data_fd < 0 || s->data_fd == s->fd) {
		return 0;
	}
	fds[0] = s->data_fd;
	return 1;
}

static void
qcow2_report(vd_check_fn report, void *opaque, int idx, struct vd_check_result *res,
	     const char *msg)
{
	res->corrupt++;
	if (report && res->corrupt <= 100) {
		report(opaque, idx, VD_CHECK_CORRUPT, msg);
	}
}

static int
qcow2_cmp_pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] > y[1]) - (x[1] < y[1]);
}

/*
 * L2 tables used by two entries of the active L1 table (QEMU never writes
 * that: such a table's refcount would be 2). Each is reported once, and the
 * walk of qcow2_check visits it once: a hostile image could otherwise make one
 * table of compressed clusters stand for the whole disk, and the check inflate
 * the same clusters for every L1 entry. Returns the L1 indices to skip as a
 * bitmap (NULL: none, or out of memory).
 */
static uint8_t *
qcow2_l1_shared(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
		struct vd_check_result *res)
{
	struct qcow2_state *s = l->st;
	uint64_t *v = malloc((size_t)s->l1_size * 2 * sizeof(*v));
	uint8_t *skip = NULL;
	uint32_t n = 0;
	char msg[256];

	if (!v) {
		return NULL;
	}
	for (uint32_t i = 0; i < s->l1_size; i++) {
		uint64_t l2_off = s->l1[i] & QCOW2_OFFSET_MASK;

		if (l2_off) {
			v[2 * n] = l2_off;
			v[2 * n + 1] = i;
			n++;
		}
	}
	qsort(v, n, 2 * sizeof(*v), qcow2_cmp_pair);
	for (uint32_t k = 1; k < n; k++) {
		if (v[2 * k] != v[2 * (k - 1)]) {
			continue;
		}
		if (!skip) {
			skip = calloc((s->l1_size + 7) / 8, 1);
			if (!skip) {
				break;
			}
		}
		skip[v[2 * k + 1] / 8] |= (uint8_t)(1u << (v[2 * k + 1] % 8));
		snprintf(msg, sizeof(msg),
			 "%s: L2 table at offset %" PRIu64 " is used by L1 entries %" PRIu64
			 " and %" PRIu64 " (an active table is never shared)",
			 l->path, v[2 * k], v[2 * (k - 1) + 1], v[2 * k + 1]);
		qcow2_report(report, opaque, layer_idx, res, msg);
	}
	free(v);
	return skip;
}

static int
qcow2_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	    struct vd_check_result *res)
{
	struct qcow2_state *s = l->st;
	uint64_t off = 0, data_end = s->file_size;
	uint8_t *skip;
	char msg[256];

	if (s->data_file) {
		int64_t n = ft_file_size(s->data_fd);

		data_end = n < 0 ? UINT64_MAX : (uint64_t)n;
	}
	/* QEMU's own verdicts in the header: it sets these, and refuses to write while set. */
	if (s->incompat & QCOW2_INCOMPAT_CORRUPT) {
		snprintf(msg, sizeof(msg),
			 "%s: marked corrupt by QEMU (incompatible feature bit 1): it found "
			 "inconsistent metadata; qemu-img check -r all may repair it",
			 l->path);
		qcow2_report(report, opaque, layer_idx, res, msg);
	}
	if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && report) {
		snprintf(msg, sizeof(msg),
			 "%s: refcounts marked dirty (lazy_refcounts, not closed cleanly); "
			 "QEMU rebuilds them at its next read-write open, the data is not affected",
			 l->path);
		report(opaque, layer_idx, VD_CHECK_INFO, msg);
	}
	/* Every mapping run is validated by qcow2_map; compressed clusters are inflated. */
	skip = qcow2_l1_shared(l, report, opaque, layer_idx, res);
	while (off < l->size) {
		struct qcow2_run run;
		uint64_t l1_at = off >> (s->cluster_bits + s->l2_bits);
		int ret;

		if (skip && l1_at < s->l1_size && (skip[l1_at / 8] & (1u << (l1_at % 8)))) {
			off = (l1_at + 1) << (s->cluster_bits + s->l2_bits);
			continue;
		}
		ret = qcow2_map(l, off, l->size - off, &run);

		if (ret < 0) {
			uint64_t l1_idx = off >> (s->cluster_bits + s->l2_bits), l2_off;

			snprintf(msg, sizeof(msg), "%s", vd_get_error());
			qcow2_report(report, opaque, layer_idx, res, msg);
			if (l1_idx >= s->l1_size) {
				break;
			}
			l2_off = s->l1[l1_idx] & QCOW2_OFFSET_MASK;
			if ((l2_off & (s->cluster_size - 1)) ||
			    !ft_in_file(l2_off, s->cluster_size, s->file_size)) {
				/* A bad L1 entry: its whole L2 table, reported once. */
				off = (l1_idx + 1) << (s->cluster_bits + s->l2_bits);
			} else {
				/* Skip the rest of this cluster. */
				off = (off | (s->cluster_size - 1)) + 1;
			}
			continue;
		}
		if (run.kind == Q_COMPRESSED) {
			uint8_t *tmp = malloc(run.len);

			if (!tmp) {
				free(skip);
				return -ENOMEM;
			}
			if (qcow2_read_compressed(l, &run, off, tmp, run.len) < 0) {
				snprintf(msg, sizeof(msg), "%s", vd_get_error());
				qcow2_report(report, opaque, layer_idx, res, msg);
			}
			free(tmp);
		}
		if (run.kind == Q_DATA && run.host + run.len > data_end) {
			/* A truncated file: reads give zeroes there (as qemu's do). */
			snprintf(msg, sizeof(msg),
				 "%s: data at virtual offset %" PRIu64 " runs past the end of the %s",
				 l->path, off + (run.host < data_end ? data_end - run.host : 0),
				 s->data_file ? "data file" : "file");
			qcow2_report(report, opaque, layer_idx, res, msg);
		}
		if (run.kind == Q_DATA || run.kind == Q_COMPRESSED) {
			res->blocks_checked += VD_DIV_ROUND_UP(run.len, s->cluster_size);
			res->bytes_checked += run.len;
		}
		off += run.len;
	}
	free(skip);
	return 0;
}

static int
qcow2_snapshot_count(struct vd_layer *l)
{
	struct qcow2_state *s = l->st;

	return s->nb_snaps;
}

static int
qcow2_snapshot_info(struct vd_layer *l, int idx, const char **name, int64_t *created)
{
	struct qcow2_state *s = l->st;

	if (idx < 0 || idx >= s->nb_snaps) {
		return -ENOENT;
	}
	*name = s->snaps[idx].name;
	*created = s->snaps[idx].date;
	return 0;
}

static int
qcow2_snapshot_open(struct vd_layer *l, int idx, struct vd_layer *view)
{
	struct qcow2_state *s = l->st, *v = view->st;
	struct qcow2_snap *sn;
	int ret;

	if (idx < 0 || idx >= s->nb_snaps) {
		return -ENOENT;
	}
	sn = &s->snaps[idx];
	memset(v, 0, sizeof(*v));
	v->fd = dup(s->fd);
	if (v->fd < 0) {
		return -errno;
	}
	v->own_fd = true;
	v->data_fd = v->fd;
	if (s->data_file) {
		v->data_fd = dup(s->data_fd);
		if (v->data_fd < 0) {
			ret = -errno;
			goto fail;
		}
		v->own_data_fd = true;
	}
	v->file_size = s->file_size;
	v->version = s->version;
	v->cluster_bits = s->cluster_bits;
	v->cluster_size = s->cluster_size;
	v->incompat = s->incompat;
	v->ext_l2 = s->ext_l2;
	v->data_file = s->data_file;
	v->ctype = s->ctype;
	v->entry_size = s->entry_size;
	v->l2_bits = s->l2_bits;
	v->unit_bits = s->unit_bits;
	v->csize_shift = s->csize_shift;
	v->csize_mask = s->csize_mask;
	v->coffset_mask = s->coffset_mask;
	v->size = sn->disk_size & ~UINT64_C(511);
	if (v->size > (1ull << 62)) {
		ret = vd_set_error(EINVAL, "%s: snapshot '%s': bad disk size", l->path, sn->name);
		goto fail;
	}
	ret = qcow2_load_l1(l, v, sn->l1_off, sn->l1_size, v->size);
	if (ret < 0) {
		vd_error_prefix("snapshot '%s'", sn->name);
		goto fail;
	}
	ret = qcow2_init_cache(v);
	if (ret < 0) {
		goto fail;
	}
	view->size = v->size;
	view->granularity = l->granularity;
	view->readonly = true;
	view->created = sn->date;
	view->name = strdup(sn->name);
	if (l->backing) {
		view->backing = strdup(l->backing);
	}
	if (l->backing_format) {
		view->backing_format = strdup(l->backing_format);
	}
	return 0;
fail:
	qcow2_free(v);
	return ret;
}

const struct vd_driver vd_qcow2_driver = {
	.name = "qcow2",
	.instance_size = sizeof(struct qcow2_state),
	.thread_model = VD_THREAD_PARALLEL,
	.probe = qcow2_probe,
	.open = qcow2_open,
	.close = qcow2_close,
	.pread = qcow2_pread,
	.block_status = qcow2_block_status,
	.allocated = qcow2_allocated,
	.files = qcow2_files,
	.check = qcow2_check,
	.snapshot_count = qcow2_snapshot_count,
	.snapshot_info = qcow2_snapshot_info,
	.snapshot_open = qcow2_snapshot_open,
};
