// SPDX-License-Identifier: MIT
/*
 * VMDK reader, after VMware's "Virtual Disk Format 5.0" and the ESXi formats
 * qemu's block/vmdk.c reads.
 *
 * A VMDK disk is a descriptor (a text file, or text embedded in a hosted
 * sparse file) that lists extents: FLAT/VMFS (raw bytes in a file at an
 * offset), ZERO, SPARSE (hosted sparse "KDMV" files: monolithicSparse,
 * twoGbMaxExtentSparse, streamOptimized with deflate-compressed grains and
 * markers), VMFSSPARSE (ESXi "COWD" redo logs, -delta.vmdk) and SESPARSE
 * (ESXi space-efficient sparse, -sesparse.vmdk). A snapshot delta names its
 * parent in parentFileNameHint and carries the parent's content ID in
 * parentCID: we check it against the parent's CID at open, as VMware does.
 * Snapshot names come from the VM's .vmsd file beside the disk, when there is
 * one (snapshotN.diskM.fileName names the disk that snapshot N froze).
 *
 * Read-only and PARALLEL: the grain directories are loaded at open; grain
 * tables go through a per-extent mutex-protected cache that copies entries out.
 *
 * Hostile input: descriptor files are read up to 1 MiB, extent counts are
 * capped (1024), grain sizes are powers of two up to 2 MiB, grain directories
 * up to 32 MiB, every table and grain offset is checked against its file, and
 * compressed grains inflate into one bounded grain buffer. Extent files must
 * be regular files or block devices (never a FIFO or a terminal).
 */
#include <ctype.h>
#include <dirent.h>
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

#define VMDK4_MAGIC 0x564d444bu /* "KDMV" read little-endian */
#define VMDK3_MAGIC 0x44574f43u /* "COWD" */
#define SESPARSE_MAGIC UINT64_C(0x00000000cafebabe)
#define SESPARSE_VMAGIC UINT64_C(0x00000000cafecafe)
#define SESPARSE_VERSION UINT64_C(0x0000000200000001)
#define VMDK_GD_AT_END UINT64_C(0xffffffffffffffff)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESSED (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)
#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_FOOTER 3

#define VMDK_MAX_DESC (1u << 20)
#define VMDK_MAX_EXTENTS 1024
#define VMDK_MAX_GRAIN (2u << 20)
#define VMDK_MAX_GD_BYTES (32u << 20)
#define VMDK_MAX_SECTORS (UINT64_C(1) << 41) /* 1 PiB per extent */

enum vmdk_kind { VX_FLAT, VX_ZERO, VX_SPARSE, VX_COWD, VX_SESPARSE };
enum vmdk_map { VM_HOLE, VM_ZERO, VM_DATA, VM_COMPRESSED };

struct vmdk_extent {
	enum vmdk_kind kind;
	int fd;
	bool own_fd;
	char *file;	   /* name as in the descriptor, for messages */
	uint64_t start;	   /* virtual byte offset of the extent */
	uint64_t len;	   /* bytes */
	uint64_t flat_off; /* FLAT: byte offset of the data in the file */
	uint64_t file_size;
	/* sparse kinds */
	uint64_t grain;	   /* bytes */
	uint64_t capacity; /* hosted sparse: the header's capacity in bytes (0: none) */
	uint32_t gtes;	   /* entries per grain table */
	uint32_t esize;	   /* bytes per entry: 4, or 8 for seSparse */
	uint64_t *gd;
	uint32_t gd_size;
	bool compressed, markers, zero_grain;
	uint64_t se_gt_off, se_grains_off; /* seSparse, bytes */
	struct ft_cache gtc;
};

struct vmdk_state {
	struct vmdk_extent *ext;
	int n;
	uint32_t cid, parent_cid;
};

struct vmdk_run {
	enum vmdk_map kind;
	uint64_t len;
	uint64_t host; /* DATA: file offset of the first byte; COMPRESSED: grain marker */
};

/* ---- descriptor text ---------------------------------------------------- */

static bool
vmdk_is_text(const uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] == 0 || (buf[i] < 32 && !isspace(buf[i]))) {
			return false;
		}
	}
	return true;
}

static int
vmdk_probe(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
	(void)file_size;
	(void)filename;
	if (!buf || len == 0) {
		return 0;
	}
	if (len >= 4 && (vd_le32(buf) == VMDK4_MAGIC || vd_le32(buf) == VMDK3_MAGIC)) {
		return 100;
	}
	if (len >= 16 && vd_le64(buf) == SESPARSE_MAGIC && vd_le64(buf + 8) == SESPARSE_VERSION) {
		return 100;
	}
	if (len >= 21 && memcmp(buf, "# Disk DescriptorFile", 21) == 0) {
		return 100;
	}
	/* A descriptor without the comment line: text with a createType key. */
	if (len > 0 && vmdk_is_text(buf, VD_MIN(len, 4096))) {
		const char *p = memmem(buf, VD_MIN(len, 4096), "createType=", 11);

		if (p && ((const uint8_t *)p == buf || p[-1] == '\n')) {
			return 90;
		}
	}
	return 0;
}

/* Value of key in descriptor text ("key=value", quotes stripped), or NULL. Caller frees. */
static char *
vmdk_desc_get(const char *desc, const char *key)
{
	size_t klen = strlen(key);
	const char *p = desc;

	while (*p) {
		const char *eol = strchr(p, '\n'), *q = p, *v, *ve;

		if (!eol) {
			eol = p + strlen(p);
		}
		while (q < eol && (*q == ' ' || *q == '\t')) {
			q++;
		}
		if ((size_t)(eol - q) > klen && strncmp(q, key, klen) == 0) {
			v = q + klen;
			while (v < eol && (*v == ' ' || *v == '\t')) {
				v++;
			}
			if (v < eol && *v == '=') {
				v++;
				while (v < eol && (*v == ' ' || *v == '\t')) {
					v++;
				}
				ve = eol;
				while (ve > v && isspace((unsigned char)ve[-1])) {
					ve--;
				}
				if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
					v++;
					ve--;
				}
				return strndup(v, (size_t)(ve - v));
			}
		}
		p = *eol ? eol + 1 : eol;
	}
	return NULL;
}

static int
vmdk_desc_hex(const char *desc, const char *key, uint32_t *out)
{
	char *v = vmdk_desc_get(desc, key), *end;
	unsigned long x;

	if (!v) {
		return -ENOENT;
	}
	errno = 0;
	x = strtoul(v, &end, 16);
	if (errno || end == v || *end || x > UINT32_MAX) {
		free(v);
		return -EINVAL;
	}
	free(v);
	*out = (uint32_t)x;
	return 0;
}

/*
 * The descriptor of a VMDK file: embedded in a hosted sparse file, or the file
 * itself when it is text. *desc is NULL for COWD/seSparse files (no descriptor).
 */
static int
vmdk_read_desc(int fd, const char *path, char **desc)
{
	uint8_t h[512];
	int64_t fsz = ft_file_size(fd);

	*desc = NULL;
	if (fsz < 0) {
		return vd_set_error(EINVAL, "%s: not a regular file", path);
	}
	memset(h, 0, sizeof(h));
	if (vd_full_pread(fd, h, VD_MIN(512, (uint64_t)fsz), 0) < 0) {
		return vd_set_error(EIO, "%s: cannot read", path);
	}
	if (vd_le32(h) == VMDK4_MAGIC) {
		uint64_t doff = vd_le64(h + 28), dsz = vd_le64(h + 36);
		char *t;

		if (doff == 0) {
			return 0;
		}
		if (dsz == 0 || dsz > VMDK_MAX_DESC / 512 || doff > UINT64_MAX / 512 ||
		    !ft_in_file(doff * 512, dsz * 512, (uint64_t)fsz)) {
			return vd_set_error(EINVAL, "%s: embedded descriptor outside the file",
					    path);
		}
		t = calloc(1, dsz * 512 + 1);
		if (!t) {
			return -ENOMEM;
		}
		if (vd_full_pread(fd, t, dsz * 512, doff * 512) < 0) {
			free(t);
			return vd_set_error(EIO, "%s: cannot read the embedded descriptor", path);
		}
		*desc = t;
		return 0;
	}
	if (vd_le32(h) == VMDK3_MAGIC || vd_le64(h) == SESPARSE_MAGIC) {
		return 0;
	}
	if ((uint64_t)fsz > VMDK_MAX_DESC) {
		return vd_set_error(EINVAL,
				    "%s: not a VMDK image (no sparse header, and too large for a "
				    "descriptor)",
				    path);
	}
	*desc = ft_read_text(fd, VMDK_MAX_DESC, NULL);
	if (!*desc) {
		return vd_set_error(EIO, "%s: cannot read the descriptor", path);
	}
	return 0;
}

/* ---- extents ------------------------------------------------------------ */

static int
vmdk_load_gd(struct vd_layer *l, struct vmdk_extent *e, uint64_t gd_off, uint64_t n_avail)
{
	uint64_t span, need, bytes;
	uint32_t i;

	if (!VD_IS_POW2(e->grain) || e->grain < 512 || e->grain > VMDK_MAX_GRAIN) {
		return vd_set_error(EINVAL, "%s: extent %s: bad grain size %" PRIu64, l->path,
				    e->file, e->grain);
	}
	if (e->gtes == 0 || e->gtes > 4096) {
		return vd_set_error(EINVAL, "%s: extent %s: bad grain table size %u", l->path,
				    e->file, e->gtes);
	}
	span = e->grain * e->gtes;
	need = VD_DIV_ROUND_UP(e->len, span);
	if (n_avail < need) {
		need = n_avail; /* grains past the directory read as unallocated */
	}
	if (need * e->esize > VMDK_MAX_GD_BYTES) {
		return vd_set_error(EFBIG, "%s: extent %s: grain directory too big", l->path,
				    e->file);
	}
	bytes = need * e->esize;
	if (need && !ft_in_file(gd_off, bytes, e->file_size)) {
		return vd_set_error(EINVAL, "%s: extent %s: grain directory outside the file",
				    l->path, e->file);
	}
	e->gd = calloc(need ? need : 1, sizeof(uint64_t));
	if (!e->gd) {
		return -ENOMEM;
	}
	e->gd_size = (uint32_t)need;
	if (need) {
		uint8_t *raw = malloc(bytes);

		if (!raw) {
			return -ENOMEM;
		}
		if (vd_full_pread(e->fd, raw, bytes, gd_off) < 0) {
			free(raw);
			return vd_set_error(EIO, "%s: extent %s: cannot read the grain directory",
					    l->path, e->file);
		}
		for (i = 0; i < need; i++) {
			e->gd[i] = e->esize == 8 ? vd_le64(raw + 8 * i) : vd_le32(raw + 4 * i);
		}
		free(raw);
	}
	/* Grain tables are small: keep up to 4 MiB of them (16 to 256 tables). */
	return ft_cache_init(&e->gtc, (size_t)e->gtes * e->esize,
			     (int)VD_MIN(VD_MAX((4u << 20) / ((size_t)e->gtes * e->esize), 16u), 256u));
}

static int
vmdk_open_kdmv(struct vd_layer *l, struct vmdk_extent *e, const uint8_t *h0)
{
	uint8_t h[512];
	uint32_t version, flags;
	uint64_t cap, gd_off, gdn;

	memcpy(h, h0, 512);
	if (vd_le64(h + 56) == VMDK_GD_AT_END) {
		/* streamOptimized: the footer (after its marker, before the EOS marker) rules. */
		uint8_t f[1536];

		if (e->file_size < 1536 + 512 ||
		    vd_full_pread(e->fd, f, sizeof(f), e->file_size - 1536) < 0) {
			return vd_set_error(EINVAL, "%s: extent %s: cannot read the footer",
					    l->path, e->file);
		}
		if (vd_le32(f + 12) != VMDK_MARKER_FOOTER || vd_le32(f + 8) != 0 ||
		    vd_le32(f + 512) != VMDK4_MAGIC || vd_le64(f + 1024) != 0 ||
		    vd_le32(f + 1032) != 0 || vd_le32(f + 1036) != VMDK_MARKER_EOS) {
			return vd_set_error(EINVAL, "%s: extent %s: invalid footer", l->path,
					    e->file);
		}
		memcpy(h, f + 512, 512);
	}
	version = vd_le32(h + 4);
	flags = vd_le32(h + 8);
	cap = vd_le64(h + 12);
	e->grain = vd_le64(h + 20);
	e->gtes = vd_le32(h + 44);
	gd_off = vd_le64(h + 56);
	if (version == 0 || version > 3) {
		return vd_set_error(ENOTSUP, "%s: extent %s: unsupported VMDK version %u", l->path,
				    e->file, version);
	}
	if (e->grain == 0 || e->grain > VMDK_MAX_GRAIN / 512 || cap > VMDK_MAX_SECTORS ||
	    gd_off > UINT64_MAX / 512) {
		return vd_set_error(EINVAL, "%s: extent %s: bad sparse header", l->path, e->file);
	}
	if (e->gtes > 512) {
		return vd_set_error(EINVAL, "%s: extent %s: grain table too big", l->path, e->file);
	}
	e->grain *= 512;
	e->capacity = cap * 512;
	e->esize = 4;
	e->zero_grain = flags & VMDK_FLAG_ZERO_GRAIN;
	e->markers = flags & VMDK_FLAG_MARKERS;
	e->compressed = vd_le16(h + 77) == 1;
	if (vd_le16(h + 77) > 1) {
		return vd_set_error(ENOTSUP, "%s: extent %s: unknown compression %u", l->path,
				    e->file, vd_le16(h + 77));
	}
	gdn = e->gtes && e->grain ? VD_DIV_ROUND_UP(cap * 512, e->grain * e->gtes) : 0;
	return vmdk_load_gd(l, e, gd_off * 512, gdn);
}

static int
vmdk_open_cowd(struct vd_layer *l, struct vmdk_extent *e, const uint8_t *h)
{
	uint64_t gd_off = (uint64_t)vd_le32(h + 20) * 512;

	e->grain = (uint64_t)vd_le32(h + 16) * 512;
	e->gtes = 4096;
	e->esize = 4;
	return vmdk_load_gd(l, e, gd_off, vd_le32(h + 24));
}

static int
vmdk_open_sesparse(struct vd_layer *l, struct vmdk_extent *e, const uint8_t *h)
{
	uint8_t v[512];
	uint64_t voff = vd_le64(h + 80), gd_off = vd_le64(h + 128), gd_sz = vd_le64(h + 136);
	uint64_t gto = vd_le64(h + 144), go = vd_le64(h + 192);
	int i;

	if (vd_le64(h + 8) != SESPARSE_VERSION || vd_le64(h + 24) != 8 || vd_le64(h + 32) != 64 ||
	    vd_le64(h + 40) != 0) {
		return vd_set_error(ENOTSUP, "%s: extent %s: unsupported seSparse header", l->path,
				    e->file);
	}
	for (i = 48; i < 80; i += 8) {
		if (vd_le64(h + i) != 0) {
			return vd_set_error(ENOTSUP, "%s: extent %s: seSparse reserved fields set",
					    l->path, e->file);
		}
	}
	if (voff > UINT64_MAX / 512 || gd_off > UINT64_MAX / 512 || gd_sz > UINT64_MAX / 512 ||
	    gto > UINT64_MAX / 512 || go > UINT64_MAX / 512 ||
	    !ft_in_file(voff * 512, 512, e->file_size) ||
	    vd_full_pread(e->fd, v, 512, voff * 512) < 0) {
		return vd_set_error(EINVAL,
				    "%s: extent %s: cannot read the seSparse volatile header",
				    l->path, e->file);
	}
	if (vd_le64(v) != SESPARSE_VMAGIC) {
		return vd_set_error(EINVAL, "%s: extent %s: bad seSparse volatile header", l->path,
				    e->file);
	}
	if (vd_le64(v + 24) != 0) {
		return vd_set_error(ENOTSUP,
				    "%s: extent %s: seSparse journal needs replaying "
				    "(open the disk once in ESXi)",
				    l->path, e->file);
	}
	e->grain = 8 * 512;
	e->gtes = 64 * 512 / 8;
	e->esize = 8;
	e->se_gt_off = gto * 512;
	e->se_grains_off = go * 512;
	return vmdk_load_gd(l, e, gd_off * 512, gd_sz * 512 / 8);
}

/* Open extent e from its file header (sparse kinds). */
static int
vmdk_open_sparse(struct vd_layer *l, struct vmdk_extent *e)
{
	uint8_t h[512];

	memset(h, 0, sizeof(h));
	if (e->file_size < 512 || vd_full_pread(e->fd, h, 512, 0) < 0) {
		return vd_set_error(EINVAL, "%s: extent %s: too short for a sparse header", l->path,
				    e->file);
	}
	if (vd_le32(h) == VMDK4_MAGIC) {
		e->kind = VX_SPARSE;
		return vmdk_open_kdmv(l, e, h);
	}
	if (vd_le32(h) == VMDK3_MAGIC) {
		e->kind = VX_COWD;
		return vmdk_open_cowd(l, e, h);
	}
	if (vd_le64(h) == SESPARSE_MAGIC) {
		e->kind = VX_SESPARSE;
		return vmdk_open_sesparse(l, e, h);
	}
	return vd_set_error(EINVAL, "%s: extent %s: not a sparse extent", l->path, e->file);
}

static struct vmdk_extent *
vmdk_add(struct vd_layer *l, struct vmdk_state *s, const char *file, uint64_t sectors)
{
	struct vmdk_extent *e, *ne;
	uint64_t start = 0;

	if (s->n >= VMDK_MAX_EXTENTS) {
		vd_set_error(EFBIG, "%s: too many extents", l->path);
		return NULL;
	}
	if (sectors == 0 || sectors > VMDK_MAX_SECTORS) {
		vd_set_error(EINVAL, "%s: extent %s: bad size %" PRIu64 " sectors", l->path, file,
			     sectors);
		return NULL;
	}
	if (s->n) {
		start = s->ext[s->n - 1].start + s->ext[s->n - 1].len;
	}
	ne = realloc(s->ext, (size_t)(s->n + 1) * sizeof(*ne));
	if (!ne) {
		vd_set_error(ENOMEM, "out of memory");
		return NULL;
	}
	s->ext = ne;
	e = &s->ext[s->n++];
	memset(e, 0, sizeof(*e));
	e->fd = -1;
	e->start = start;
	e->len = sectors * 512;
	e->file = strdup(file);
	if (!e->file || start + e->len > (UINT64_C(1) << 56)) {
		vd_set_error(EFBIG, "%s: disk too large", l->path);
		return NULL;
	}
	return e;
}

static int
vmdk_open_file(struct vd_layer *l, struct vmdk_extent *e)
{
	int64_t fsz;

	e->fd = vd_layer_open_related(l, e->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (e->fd < 0) {
		int err = -e->fd;

		e->fd = -1;
		return vd_set_error(err, "%s: cannot open extent '%s': %s", l->path, e->file,
				    strerror(err));
	}
	e->own_fd = true;
	fsz = ft_file_size(e->fd);
	if (fsz < 0) {
		return vd_set_error(EINVAL, "%s: extent '%s' is not a regular file or block device",
				    l->path, e->file);
	}
	e->file_size = (uint64_t)fsz;
	return 0;
}

/* Parse the extent lines of a descriptor file. */
static int
vmdk_parse_extents(struct vd_layer *l, struct vmdk_state *s, const char *desc)
{
	const char *p = desc;
	int ret;

	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[1100], access[16], type[16], *q, *fname = NULL, *fend;
		unsigned long long sectors, foff = 0;
		size_t n;
		struct vmdk_extent *e;
		int used = 0;

		if (!eol) {
			eol = p + strlen(p);
		}
		n = (size_t)(eol - p);
		if (n >= sizeof(line)) {
			p = *eol ? eol + 1 : eol;
			continue;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p = *eol ? eol + 1 : eol;
		if (n && line[n - 1] == '\r') {
			line[--n] = '\0';
		}
		if (sscanf(line, "%15s %llu %15s%n", access, &sectors, type, &used) != 3) {
			continue;
		}
		if (strcmp(access, "RW") && strcmp(access, "RDONLY") &&
		    strcmp(access, "NOACCESS")) {
			continue;
		}
		q = line + used;
		while (*q == ' ' || *q == '\t') {
			q++;
		}
		if (*q == '"') {
			fname = q + 1;
			fend = strchr(fname, '"');
			if (!fend) {
				return vd_set_error(EINVAL, "%s: invalid extent line: %s", l->path,
						    line);
			}
			*fend = '\0';
			q = fend + 1;
			if (sscanf(q, "%llu", &foff) != 1) {
				foff = 0;
			}
		}
		if (strcmp(type, "ZERO") == 0 || strcmp(access, "NOACCESS") == 0) {
			e = vmdk_add(l, s, fname ? fname : "(zero)", sectors);
			if (!e) {
				return -vd_get_errno();
			}
			e->kind = VX_ZERO;
			continue;
		}
		if (!fname || !*fname) {
			return vd_set_error(EINVAL, "%s: extent line without a file: %s", l->path,
					    line);
		}
		e = vmdk_add(l, s, fname, sectors);
		if (!e) {
			return -vd_get_errno();
		}
		if (strcmp(type, "FLAT") == 0 || strcmp(type, "VMFS") == 0 ||
		    strcmp(type, "VMFSRAW") == 0) {
			e->kind = VX_FLAT;
			if (foff > UINT64_MAX / 512) {
				return vd_set_error(EINVAL, "%s: bad flat extent offset", l->path);
			}
			e->flat_off = foff * 512;
		} else if (strcmp(type, "SPARSE") == 0 || strcmp(type, "VMFSSPARSE") == 0 ||
			   strcmp(type, "SESPARSE") == 0) {
			e->kind = VX_SPARSE;
		} else {
			return vd_set_error(ENOTSUP, "%s: unsupported extent type '%s'", l->path,
					    type);
		}
		ret = vmdk_open_file(l, e);
		if (ret < 0) {
			return ret;
		}
		if (e->kind != VX_FLAT) {
			ret = vmdk_open_sparse(l, e);
			if (ret < 0) {
				return ret;
			}
		}
	}
	if (s->n == 0) {
		return vd_set_error(EINVAL, "%s: descriptor lists no extents", l->path);
	}
	return 0;
}

/* ---- snapshot names from the .vmsd -------------------------------------- */

/*
 * One line of a .vmsd: 'key = "value"'. Returns false for other lines; key and
 * value point into line (modified in place).
 */
static bool
vmdk_kv(char *line, char **key, char **val)
{
	char *eq = strchr(line, '='), *k = line, *ke, *v, *ve;

	if (!eq) {
		return false;
	}
	while (*k == ' ' || *k == '\t') {
		k++;
	}
	ke = eq;
	while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) {
		ke--;
	}
	*ke = '\0';
	v = eq + 1;
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	ve = v + strlen(v);
	while (ve > v && isspace((unsigned char)ve[-1])) {
		ve--;
	}
	*ve = '\0';
	if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
		ve[-1] = '\0';
		v++;
	}
	*key = k;
	*val = v;
	return *k != '\0';
}

/*
 * Look for our file in one .vmsd (text, modified): snapshotN.diskM.fileName
 * naming it gives snapshotN's displayName and createTimeHigh/Low (microseconds).
 * Two linear passes, whatever the file holds.
 */
static void
vmdk_vmsd_scan(struct vd_layer *l, char *text, const char *base)
{
	char *copy = strdup(text), *line, *save = NULL, *key, *val, want[48];
	long snap = -1;
	int64_t hi = 0, lo = 0;
	bool have_hi = false, have_lo = false;
	size_t wl;

	if (!copy) {
		return;
	}
	for (line = strtok_r(copy, "\n", &save); line && snap < 0;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *slash;
		char *end;
		long n;

		if (!vmdk_kv(line, &key, &val) || strncmp(key, "snapshot", 8) != 0) {
			continue;
		}
		n = strtol(key + 8, &end, 10);
		if (end == key + 8 || n < 0 || strncmp(end, ".disk", 5) != 0) {
			continue;
		}
		end = strchr(end + 5, '.');
		if (!end || strcmp(end, ".fileName") != 0) {
			continue;
		}
		slash = strrchr(val, '/');
		if (strcmp(val, base) == 0 || (slash && strcmp(slash + 1, base) == 0)) {
			snap = n;
		}
	}
	free(copy);
	if (snap < 0) {
		return;
	}
	snprintf(want, sizeof(want), "snapshot%ld.", snap);
	wl = strlen(want);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!vmdk_kv(line, &key, &val) || strncmp(key, want, wl) != 0) {
			continue;
		}
		if (strcmp(key + wl, "displayName") == 0 && *val && !l->name) {
			l->name = strdup(val);
		} else if (strcmp(key + wl, "createTimeHigh") == 0) {
			hi = strtoll(val, NULL, 0);
			have_hi = true;
		} else if (strcmp(key + wl, "createTimeLow") == 0) {
			lo = strtoll(val, NULL, 0);
			have_lo = true;
		}
	}
	if (l->name && have_hi && have_lo) {
		uint64_t us = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo;

		l->created = (int64_t)(us / 1000000);
	}
}

/* Name this layer from a .vmsd file beside it (the first 16 .vmsd files looked at). */
static void
vmdk_vmsd_name(struct vd_layer *l)
{
	char *dir = vd_dirname(l->path), *base = strrchr(l->path, '/');
	DIR *d;
	struct dirent *de;
	int seen = 0;

	base = base ? base + 1 : l->path;
	if (!dir) {
		return;
	}
	d = opendir(dir);
	while (d && !l->name && seen < 16 && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char *path, *text;
		int fd;

		if (n < 6 || strcmp(de->d_name + n - 5, ".vmsd") != 0) {
			continue;
		}
		seen++;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
			break;
		}
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		free(path);
		if (fd < 0) {
			continue;
		}
		text = ft_file_size(fd) >= 0 ? ft_read_text(fd, VMDK_MAX_DESC, NULL) : NULL;
		close(fd);
		if (text) {
			vmdk_vmsd_scan(l, text, base);
			free(text);
		}
	}
	if (d) {
		closedir(d);
	}
	free(dir);
}

/* ---- open / close ------------------------------------------------------- */

static void
vmdk_free(struct vmdk_state *s)
{
	int i;

	for (i = 0; i < s->n; i++) {
		struct vmdk_extent *e = &s->ext[i];

		if (e->own_fd && e->fd >= 0) {
			close(e->fd);
		}
		free(e->gd);
		free(e->file);
		ft_cache_destroy(&e->gtc);
	}
	free(s->ext);
	s->ext = NULL;
	s->n = 0;
}

static int
vmdk_check_parent(struct vd_layer *l, struct vmdk_state *s)
{
	int fd = vd_layer_open_related(l, l->backing, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	char *desc = NULL;
	uint32_t pcid;
	int ret;

	if (fd < 0) {
		return 0; /* the core reports the missing parent with its path */
	}
	ret = vmdk_read_desc(fd, l->backing, &desc);
	close(fd);
	if (ret < 0 || !desc) {
		free(desc);
		return 0; /* not a VMDK with a descriptor: the core's open will tell */
	}
	if (vmdk_desc_hex(desc, "CID", &pcid) == 0 && pcid != s->parent_cid) {
		free(desc);
		return vd_set_error(EINVAL,
				    "%s: parent CID mismatch: the parent %s (CID %08x) was "
				    "modified after this snapshot (parentCID %08x)",
				    l->path, l->backing, pcid, s->parent_cid);
	}
	free(desc);
	return 0;
}

static int
vmdk_open(struct vd_layer *l)
{
	struct vmdk_state *s = l->st;
	uint8_t h[512];
	char *desc = NULL, *hint = NULL;
	struct vmdk_extent *e;
	int64_t fsz = ft_file_size(l->fd);
	uint64_t i, gran = VMDK_MAX_GRAIN;
	int ret;

	if (fsz < 0) {
		return vd_set_error(EINVAL, "%s: not a regular file", l->path);
	}
	memset(h, 0, sizeof(h));
	if (vd_full_pread(l->fd, h, VD_MIN(512, (uint64_t)fsz), 0) < 0) {
		return vd_set_error(EIO, "%s: cannot read", l->path);
	}
	ret = vmdk_read_desc(l->fd, l->path, &desc);
	if (ret < 0) {
		return ret;
	}
	s->parent_cid = UINT32_MAX;
	if (desc) {
		vmdk_desc_hex(desc, "CID", &s->cid);
		vmdk_desc_hex(desc, "parentCID", &s->parent_cid);
	}
	if (vd_le32(h) == VMDK3_MAGIC || vd_le64(h) == SESPARSE_MAGIC ||
	    vd_le32(h) == VMDK4_MAGIC) {
		/*
		 * One sparse file: this file is the only extent, whatever the
		 * embedded descriptor's extent line names (the file's name when it
		 * was made: a renamed copy would read the original). A capacity of
		 * 0 is taken from a streamOptimized footer, else refused.
		 */
		uint64_t cap = vd_le32(h) == VMDK3_MAGIC   ? vd_le32(h + 12)
			       : vd_le32(h) == VMDK4_MAGIC ? vd_le64(h + 12)
							   : vd_le64(h + 16);

		if (vd_le32(h) == VMDK4_MAGIC && vd_le64(h + 56) == VMDK_GD_AT_END &&
		    (uint64_t)fsz >= 1536) {
			uint8_t f[512];

			/* streamOptimized: the capacity may only be right in the footer. */
			if (vd_full_pread(l->fd, f, 512, (uint64_t)fsz - 1024) == 0 &&
			    vd_le32(f) == VMDK4_MAGIC) {
				cap = vd_le64(f + 12);
			}
		}
		e = vmdk_add(l, s, l->path, cap);
		if (!e) {
			ret = -vd_get_errno();
			goto fail;
		}
		e->fd = l->fd;
		e->file_size = (uint64_t)fsz;
		ret = vmdk_open_sparse(l, e);
	} else if (desc) {
		if (!vmdk_is_text((const uint8_t *)desc, strlen(desc))) {
			ret = vd_set_error(EINVAL, "%s: not a VMDK descriptor", l->path);
			goto fail;
		}
		ret = vmdk_parse_extents(l, s, desc);
	} else {
		ret = vd_set_error(EINVAL, "%s: not a VMDK image", l->path);
	}
	if (ret < 0) {
		goto fail;
	}
	for (i = 0; i < (uint64_t)s->n; i++) {
		if (s->ext[i].kind != VX_FLAT && s->ext[i].kind != VX_ZERO) {
			gran = VD_MIN(gran, s->ext[i].grain);
		}
	}
	l->size = s->ext[s->n - 1].start + s->ext[s->n - 1].len;
	l->granularity = gran == VMDK_MAX_GRAIN && s->n && s->ext[0].kind == VX_FLAT
				 ? 65536
				 : (uint32_t)gran;
	if (desc && s->parent_cid != UINT32_MAX) {
		hint = vmdk_desc_get(desc, "parentFileNameHint");
		if (hint && *hint) {
			l->backing = hint;
			l->backing_format = strdup("vmdk");
			hint = NULL;
			ret = vmdk_check_parent(l, s);
			if (ret < 0) {
				goto fail;
			}
		}
	}
	free(hint);
	free(desc);
	vmdk_vmsd_name(l);
	if (!l->created) {
		/* No .vmsd time: when the extents were last written (the data, not the descriptor).
		 */
		l->created = ft_file_mtime(s->ext[s->n - 1].fd >= 0 ? s->ext[s->n - 1].fd : l->fd);
	}
	return 0;
fail:
	free(hint);
	free(desc);
	vmdk_free(s);
	return ret;
}

static void
vmdk_close(struct vd_layer *l)
{
	vmdk_free(l->st);
}

/* ---- mapping and reads -------------------------------------------------- */

static struct vmdk_extent *
vmdk_find(struct vmdk_state *s, uint64_t off)
{
	int lo = 0, hi = s->n - 1;

	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;

		if (s->ext[mid].start <= off) {
			lo = mid;
		} else {
			hi = mid - 1;
		}
	}
	return &s->ext[lo];
}

/* Decode one grain table entry into kind + file offset of the grain. */
static int
vmdk_entry(struct vd_layer *l, struct vmdk_extent *e, uint64_t v, uint64_t voff,
	   enum vmdk_map *kind, uint64_t *host)
{
	*host = 0;
	if (e->kind == VX_SESPARSE) {
		uint64_t idx;

		switch (v >> 60) {
		case 0:
			if (v != 0) {
				goto bad;
			}
			*kind = VM_HOLE;
			return 0;
		case 1:
		case 2:
			*kind = VM_ZERO;
			return 0;
		case 3:
			idx = ((v & UINT64_C(0x0fff000000000000)) >> 48) |
			      ((v & UINT64_C(0x0000ffffffffffff)) << 12);
			if (idx > (UINT64_C(1) << 48)) {
				goto bad;
			}
			*host = e->se_grains_off + idx * e->grain;
			*kind = VM_DATA;
			break;
		default:
			goto bad;
		}
	} else {
		if (v == 0) {
			*kind = VM_HOLE;
			return 0;
		}
		if (v == 1 && e->zero_grain) {
			*kind = VM_ZERO;
			return 0;
		}
		*host = v * 512;
		*kind = e->compressed ? VM_COMPRESSED : VM_DATA;
	}
	if (*host >= e->file_size) {
		return vd_set_error(EIO,
				    "%s: extent %s: grain at virtual offset %" PRIu64
				    " points outside the file",
				    l->path, e->file, voff);
	}
	return 0;
bad:
	return vd_set_error(EIO,
			    "%s: extent %s: bad grain table entry 0x%" PRIx64
			    " at virtual offset %" PRIu64,
			    l->path, e->file, v, voff);
}

/*
 * File offset of grain table gdi of sparse extent e (0: none, the grains read as
 * unallocated); -EIO when the directory entry is bad or names a table outside the file.
 */
static int
vmdk_gt_off(struct vd_layer *l, struct vmdk_extent *e, uint64_t gdi, uint64_t *gt_off)
{
	uint64_t gt = gdi < e->gd_size ? e->gd[gdi] : 0;

	*gt_off = 0;
	if (gt && e->kind == VX_SESPARSE) {
		if ((gt & UINT64_C(0xffffffff00000000)) != UINT64_C(0x1000000000000000)) {
			return vd_set_error(EIO,
					    "%s: extent %s: bad grain directory entry %" PRIu64,
					    l->path, e->file, gdi);
		}
		gt = e->se_gt_off + (gt & 0xffffffffu) * ((uint64_t)e->gtes * 8);
	} else {
		gt *= 512;
	}
	if (gt && !ft_in_file(gt, (uint64_t)e->gtes * e->esize, e->file_size)) {
		return vd_set_error(EIO, "%s: extent %s: grain table %" PRIu64 " outside the file",
				    l->path, e->file, gdi);
	}
	*gt_off = gt;
	return 0;
}

static int
vmdk_map(struct vd_layer *l, uint64_t off, uint64_t len, struct vmdk_run *run,
	 struct vmdk_extent **pe)
{
	struct vmdk_state *s = l->st;
	struct vmdk_extent *e = vmdk_find(s, off);
	uint64_t eoff = off - e->start, end = VD_MIN(eoff + len, e->len), pos = eoff;
	uint64_t next_host = 0;
	bool have = false;
	int ret;

	*pe = e;
	if (e->kind == VX_FLAT || e->kind == VX_ZERO) {
		run->kind = e->kind == VX_FLAT ? VM_DATA : VM_ZERO;
		run->len = end - eoff;
		run->host = e->flat_off + eoff;
		if (e->kind == VX_FLAT && run->host < e->flat_off) {
			return vd_set_error(EIO, "%s: flat extent offset overflow", l->path);
		}
		return 0;
	}
	while (pos < end) {
		uint64_t gi = pos / e->grain, gdi = gi / e->gtes, gti = gi % e->gtes;
		uint64_t gt_end = (gdi + 1) * e->grain * e->gtes, gt, raw[64];
		uint64_t bend = VD_MIN(end, gt_end);
		size_t nent, ci;

		ret = vmdk_gt_off(l, e, gdi, &gt);
		if (ret < 0) {
			/* The run before the bad table is good: the next call reports it. */
			return have ? 0 : ret;
		}
		if (gt == 0) {
			if (have && run->kind != VM_HOLE) {
				break;
			}
			run->kind = VM_HOLE;
			run->len = (have ? run->len : 0) + (bend - pos);
			have = true;
			pos = bend;
			continue;
		}
		nent = (size_t)VD_MIN(
			VD_MIN(VD_DIV_ROUND_UP(bend - pos + (pos % e->grain), e->grain), 64),
			e->gtes - gti);
		ret = ft_cache_read(&e->gtc, e->fd, gt, gti * e->esize, raw, nent * e->esize);
		if (ret < 0) {
			return have ? 0 : ret;
		}
		for (ci = 0; ci < nent && pos < bend; ci++) {
			uint64_t v = e->esize == 8 ? vd_le64((uint8_t *)raw + 8 * ci)
						   : vd_le32((uint8_t *)raw + 4 * ci);
			uint64_t host, glen;
			enum vmdk_map k = VM_HOLE;

			ret = vmdk_entry(l, e, v, e->start + pos, &k, &host);
			if (ret < 0) {
				/* The run before the bad entry is good: the next call reports it. */
				return have ? 0 : ret;
			}
			if (k == VM_DATA) {
				host += pos % e->grain;
			}
			glen = VD_MIN(e->grain - pos % e->grain, bend - pos);
			if (k == VM_COMPRESSED) {
				if (have) {
					goto out;
				}
				run->kind = k;
				run->host = host;
				run->len = glen;
				return 0;
			}
			if (!have) {
				run->kind = k;
				run->host = host;
				run->len = 0;
				have = true;
			} else if (k != run->kind || (k == VM_DATA && host != next_host)) {
				goto out;
			}
			run->len += glen;
			next_host = host + glen;
			pos += glen;
		}
	}
out:
	return 0;
}

static int
vmdk_block_status(struct vd_layer *l, uint64_t off, uint64_t len, struct vd_extent *ext)
{
	struct vmdk_extent *e;
	struct vmdk_run run;
	int ret = vmdk_map(l, off, len, &run, &e);

	if (ret < 0) {
		return ret;
	}
	ext->offset = off;
	ext->length = run.len;
	ext->type = run.kind == VM_HOLE	  ? VD_EXTENT_HOLE
		    : run.kind == VM_ZERO ? VD_EXTENT_ZERO
					  : VD_EXTENT_DATA;
	return 0;
}

/*
 * Inflate the grain whose marker (or data, without markers) is at file offset
 * host and copy n bytes at voff out of it. One read fetches the marker and, in
 * the usual case, all of the compressed data; a second read gets the rest.
 */
static int
vmdk_read_compressed(struct vd_layer *l, struct vmdk_extent *e, uint64_t host, uint64_t voff,
		     uint8_t *buf, uint64_t n)
{
	uint64_t gpos = (voff - e->start) % e->grain, avail = e->file_size - host;
	uint64_t cap = 12 + 2 * e->grain + 4096, first, in_len, skip = 0;
	uint8_t *in = malloc(cap), *out = malloc(e->grain);
	size_t got = 0;
	int ret;

	if (!in || !out) {
		ret = -ENOMEM;
		goto out;
	}
	if (e->markers) {
		first = VD_MIN(avail, 12 + e->grain + 1024);
		if (first < 12 || vd_full_pread(e->fd, in, first, host) < 0) {
			ret = vd_set_error(EIO, "%s: cannot read grain marker at %" PRIu64, l->path,
					   host);
			goto out;
		}
		in_len = vd_le32(in + 8);
		skip = 12;
		if (in_len == 0 || in_len > 2 * e->grain + 4096 || in_len > avail - 12) {
			ret = vd_set_error(EIO,
					   "%s: bad compressed grain at virtual offset %" PRIu64,
					   l->path, voff - gpos);
			goto out;
		}
		if (12 + in_len > first &&
		    vd_full_pread(e->fd, in + first, 12 + in_len - first, host + first) < 0) {
			ret = vd_set_error(EIO, "%s: cannot read compressed grain at %" PRIu64,
					   l->path, host);
			goto out;
		}
	} else {
		in_len = VD_MIN(2 * e->grain, avail);
		if (vd_full_pread(e->fd, in, in_len, host) < 0) {
			ret = vd_set_error(EIO, "%s: cannot read compressed grain at %" PRIu64,
					   l->path, host);
			goto out;
		}
	}
	ret = ft_inflate(in + skip, in_len, out, e->grain, &got);
	if (ret < 0 || gpos + n > got) {
		ret = vd_set_error(EIO, "%s: corrupt compressed grain at virtual offset %" PRIu64,
				   l->path, voff - gpos);
		goto out;
	}
	memcpy(buf, out + gpos, n);
out:
	free(in);
	free(out);
	return ret;
}

static int
vmdk_pread(struct vd_layer *l, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	int ret;

	while (len > 0) {
		struct vmdk_extent *e;
		struct vmdk_run run;
		uint64_t n;

		ret = vmdk_map(l, off, len, &run, &e);
		if (ret < 0) {
			return ret;
		}
		n = VD_MIN(run.len, len);
		switch (run.kind) {
		case VM_HOLE:
		case VM_ZERO:
			memset(p, 0, n);
			break;
		case VM_DATA:
			if (e->kind != VX_FLAT && run.host >= e->file_size) {
				return vd_set_error(EIO, "%s: grain outside the file", l->path);
			}
			ret = vd_pread_zerofill(e->fd, p, n, run.host);
			if (ret < 0) {
				return vd_set_error(
					EIO, "%s: extent %s: read error at virtual offset %" PRIu64,
					l->path, e->file, off);
			}
			break;
		case VM_COMPRESSED:
			ret = vmdk_read_compressed(l, e, run.host, off, p, n);
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
vmdk_allocated(struct vd_layer *l)
{
	return ft_allocated(l);	/* compressed clusters/grains are data too */
}

/* The extent files (the descriptor is l->fd). */
static int
vmdk_files(struct vd_layer *l, int *fds, int max)
{
	struct vmdk_state *s = l->st;
	int n = 0;

	for (int i = 0; i < s->n && n < max; i++) {
		if (s->ext[i].kind != VX_ZERO && s->ext[i].fd >= 0) {
			fds[n++] = s->ext[i].fd;
		}
	}
	return n;
}

static int
vmdk_check(struct vd_layer *l, vd_check_fn report, void *opaque, int layer_idx,
	   struct vd_check_result *res)
{
	struct vmdk_state *s = l->st;
	uint64_t off = 0;
	char msg[256];

	/*
	 * A descriptor's extent size and the sparse header's capacity disagree:
	 * reads follow the descriptor (VMware's layout), qemu follows the header,
	 * so the disk's size and everything after that extent differ between them.
	 */
	for (int i = 0; i < s->n; i++) {
		struct vmdk_extent *x = &s->ext[i];

		if (x->kind == VX_SPARSE && x->capacity && x->capacity != x->len) {
			res->corrupt++;
			snprintf(msg, sizeof(msg),
				 "%s: extent %s: the descriptor gives %" PRIu64
				 " sectors, its header a capacity of %" PRIu64 " sectors",
				 l->path, x->file, x->len / 512, x->capacity / 512);
			if (report) {
				report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
			}
		}
	}
	while (off < l->size) {
		struct vmdk_extent *e;
		struct vmdk_run run;
		int ret = vmdk_map(l, off, l->size - off, &run, &e);

		if (ret == 0 && run.kind == VM_COMPRESSED) {
			uint8_t *tmp = malloc(run.len);

			ret = tmp ? vmdk_read_compressed(l, e, run.host, off, tmp, run.len)
				  : -ENOMEM;
			free(tmp);
		}
		if (ret < 0) {
			res->corrupt++;
			snprintf(msg, sizeof(msg), "%s", vd_get_error());
			if (report && res->corrupt <= 100) {
				report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
			}
			e = vmdk_find(l->st, off);
			if (e->kind == VX_FLAT || e->kind == VX_ZERO) {
				off = e->start + e->len;
			} else {
				uint64_t span = e->grain * e->gtes, gt;
				uint64_t gdi = (off - e->start) / span;

				/*
				 * A bad grain directory entry: its whole grain table, reported
				 * once (not once per grain: a small file could name billions).
				 */
				if (vmdk_gt_off(l, e, gdi, &gt) < 0) {
					off = e->start + VD_MIN((gdi + 1) * span, e->len);
				} else {
					off = (off - e->start) / e->grain * e->grain + e->grain +
					      e->start;
				}
			}
			continue;
		}
		if (run.kind == VM_DATA && run.host + run.len > e->file_size) {
			/* A truncated extent: reads give zeroes there (as qemu's do). */
			res->corrupt++;
			snprintf(msg, sizeof(msg),
				 "%s: extent %s: data at virtual offset %" PRIu64
				 " runs past the end of the file",
				 l->path, e->file,
				 run.host < e->file_size ? off + (e->file_size - run.host) : off);
			if (report && res->corrupt <= 100) {
				report(opaque, layer_idx, VD_CHECK_CORRUPT, msg);
			}
		}
		if (run.kind == VM_DATA || run.kind == VM_COMPRESSED) {
			res->blocks_checked += VD_DIV_ROUND_UP(run.len, l->granularity);
			res->bytes_checked += run.len;
		}
		off += run.len;
	}
	return 0;
}

const struct vd_driver vd_vmdk_driver = {
	.name = "vmdk",
	.instance_size = sizeof(struct vmdk_state),
	.thread_model = VD_THREAD_PARALLEL,
	.probe = vmdk_probe,
	.open = vmdk_open,
	.close = vmdk_close,
	.pread = vmdk_pread,
	.block_status = vmdk_block_status,
	.allocated = vmdk_allocated,
	.files = vmdk_files,
	.check = vmdk_check,
};
