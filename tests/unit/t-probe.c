// SPDX-License-Identifier: MIT
/*
 * Probe scores of the foreign-format drivers, and hostile headers refused
 * cleanly at open (through a memfd, no other files): truncated files, absurd
 * cluster/grain/table sizes, encryption, unknown feature bits, bad checksums.
 * Also the shared helpers (foreign.c): CRC-32C, range checks, UTF-16, inflate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>

#include "tap.h"
#include "internal.h"
#include "util.h"
#include "foreign.h"

extern const struct vd_driver vd_vmdk_driver, vd_qcow2_driver, vd_vhd_driver, vd_vhdx_driver;

static const struct vd_driver *const drvs[] = {
	&vd_qcow2_driver,
	&vd_vmdk_driver,
	&vd_vhd_driver,
	&vd_vhdx_driver,
};

/* The driver with the best score (NULL if all are 0) and that score. */
static const struct vd_driver *
best(const uint8_t *buf, size_t len, uint64_t fsz, const char *name, int *score)
{
	const struct vd_driver *b = NULL;
	size_t i;

	*score = 0;
	for (i = 0; i < VD_ARRAY_SIZE(drvs); i++) {
		int s = drvs[i]->probe(buf, len, fsz, name);

		if (s > *score) {
			*score = s;
			b = drvs[i];
		}
	}
	return b;
}

/* Open buf through drv as a layer; returns open's result (the layer is closed again). */
static int
try_open(const struct vd_driver *drv, const void *buf, size_t len)
{
	struct vd_layer l;
	int fd = memfd_create("t-probe", MFD_CLOEXEC), ret;

	if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len)) {
		return -EIO;
	}
	memset(&l, 0, sizeof(l));
	l.drv = drv;
	l.fd = fd;
	l.readonly = true;
	l.path = (char *)"/nonexistent-t-probe/img";
	l.st = calloc(1, drv->instance_size);
	ret = drv->open(&l);
	if (ret == 0) {
		drv->close(&l);
	}
	free(l.backing);
	free(l.backing_format);
	free(l.name);
	free(l.st);
	close(fd);
	return ret;
}

static void
qcow2_header(uint8_t *h, uint32_t version, uint32_t cluster_bits, uint64_t size)
{
	memset(h, 0, 512);
	vd_put_be32(h, 0x514649fb);
	vd_put_be32(h + 4, version);
	vd_put_be32(h + 20, cluster_bits);
	vd_put_be64(h + 24, size);
	vd_put_be32(h + 36, 1);			   /* l1_size */
	vd_put_be64(h + 40, 1ull << cluster_bits); /* l1 at cluster 1 */
	if (version == 3) {
		vd_put_be32(h + 96, 4);
		vd_put_be32(h + 100, 104);
	}
}

static uint32_t
vhd_sum(const uint8_t *p, size_t n, size_t skip)
{
	uint32_t s = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (i < skip || i >= skip + 4) {
			s += p[i];
		}
	}
	return ~s;
}

int
main(void)
{
	static uint8_t img[1 << 17];
	uint8_t buf[4096], out[64];
	const struct vd_driver *d;
	int score, ret;
	char *s;

	/* ---- probes ---- */
	qcow2_header(img, 3, 16, 1 << 20);
	d = best(img, 512, sizeof(img), "x", &score);
	ok(d == &vd_qcow2_driver && score == 100, "qcow2 header probes as qcow2");
	memcpy(buf, "KDMV", 4);
	d = best(buf, 512, 512, "x", &score);
	ok(d == &vd_vmdk_driver && score == 100, "KDMV probes as vmdk");
	memcpy(buf, "COWD", 4);
	d = best(buf, 512, 512, "x", &score);
	ok(d == &vd_vmdk_driver, "COWD probes as vmdk");
	strcpy((char *)buf, "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n");
	d = best(buf, strlen((char *)buf), 60, "x.vmdk", &score);
	ok(d == &vd_vmdk_driver, "descriptor text probes as vmdk");
	strcpy((char *)buf, "createType=\"vmfs\"\nRW 8 VMFS \"a\"\n");
	d = best(buf, strlen((char *)buf), 40, "x", &score);
	ok(d == &vd_vmdk_driver && score < 100, "descriptor without its comment line: lower score");
	memcpy(buf, "conectix", 8);
	d = best(buf, 512, 1 << 20, "x", &score);
	ok(d == &vd_vhd_driver && score == 100, "conectix probes as vhd");
	memcpy(buf, "vhdxfile", 8);
	d = best(buf, 512, 1 << 20, "x", &score);
	ok(d == &vd_vhdx_driver && score == 100, "vhdxfile probes as vhdx");
	memset(buf, 0, sizeof(buf));
	d = best(buf, sizeof(buf), 1 << 20, "disk.VHD", &score);
	ok(d == &vd_vhd_driver && score == 2, "a .vhd name without a cookie scores just above raw");
	d = best(buf, sizeof(buf), 1 << 20, "disk.img", &score);
	ok(d == NULL, "zeroes probe as nothing");
	d = best(buf, 0, 0, "x", &score);
	ok(d == NULL, "empty file probes as nothing");
	memcpy(buf, "QFI\xfb\0\0\0\x09", 8);
	d = best(buf, 8, 8, "x", &score);
	/* The magic wins over raw whatever the version; open refuses unknown ones. */
	ok(d == &vd_qcow2_driver, "qcow2 magic with version 9 probes as qcow2 (not raw)");

	/* ---- hostile qcow2 ---- */
	ok(try_open(&vd_qcow2_driver, img, 10) == -EINVAL, "truncated qcow2 refused");
	memset(img + 512, 0, sizeof(img) - 512);
	ret = try_open(&vd_qcow2_driver, img, sizeof(img));
	ok(ret == 0, "minimal qcow2 opens (%s)", ret ? vd_get_error() : "ok");
	qcow2_header(img, 3, 40, 1 << 20);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EINVAL, "cluster_bits 40 refused");
	qcow2_header(img, 3, 16, 1ull << 40);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EINVAL, "L1 too small for the size");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be32(img + 36, 0xffffffff);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EFBIG, "4 Gi-entry L1 refused");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be32(img + 32, 2);
	ret = try_open(&vd_qcow2_driver, img, sizeof(img));
	ok(ret == -ENOTSUP && strstr(vd_get_error(), "not supported yet"),
	   "LUKS qcow2: not supported yet (%s)", vd_get_error());
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be64(img + 72, 1ull << 40);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -ENOTSUP, "unknown incompatible bit");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be32(img + 100, 1 << 20);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EINVAL, "header length > cluster");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be64(img + 8, 70000);
	vd_put_be32(img + 16, 5000);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EINVAL, "backing name out of range");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be32(img + 60, 100000);
	vd_put_be64(img + 64, 65536);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EFBIG, "100000 snapshots refused");
	qcow2_header(img, 3, 16, 1 << 20);
	vd_put_be32(img + 104, 0xe2792aca); /* backing format extension, absurd length */
	vd_put_be32(img + 108, 0x7fffffff);
	ok(try_open(&vd_qcow2_driver, img, sizeof(img)) == -EINVAL, "header extension overflow");

	/* ---- hostile vmdk ---- */
	memset(img, 0, sizeof(img));
	memcpy(img, "KDMV", 4);
	vd_put_le32(img + 4, 1);
	vd_put_le64(img + 12, 2048); /* capacity */
	vd_put_le64(img + 20, 0);    /* grain 0 */
	vd_put_le32(img + 44, 512);
	vd_put_le64(img + 56, 1);
	ok(try_open(&vd_vmdk_driver, img, sizeof(img)) == -EINVAL, "vmdk grain size 0 refused");
	vd_put_le64(img + 20, 3);
	ok(try_open(&vd_vmdk_driver, img, sizeof(img)) == -EINVAL, "vmdk grain size 3 refused");
	vd_put_le64(img + 20, 128);
	vd_put_le64(img + 56, 1ull << 60);
	ok(try_open(&vd_vmdk_driver, img, sizeof(img)) == -EINVAL, "grain directory offset huge");
	vd_put_le64(img + 56, 1);
	ret = try_open(&vd_vmdk_driver, img, sizeof(img));
	ok(ret == 0, "small sparse vmdk opens (%s)", ret ? vd_get_error() : "ok");
	vd_put_le64(img + 12, 1ull << 50);
	ok(try_open(&vd_vmdk_driver, img, sizeof(img)) == -EINVAL, "capacity 2^50 sectors refused");
	strcpy((char *)img, "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n");
	ok(try_open(&vd_vmdk_driver, img, strlen((char *)img)) == -EINVAL,
	   "descriptor without extents refused");
	strcpy((char *)img, "# Disk DescriptorFile\nRW 10 FLAT \"/dev/zero\" 0\n");
	ok(try_open(&vd_vmdk_driver, img, strlen((char *)img)) == -EINVAL,
	   "character device extent refused");
	strcpy((char *)img, "# Disk DescriptorFile\nRW 10 VMFSRDM \"x\"\n");
	ok(try_open(&vd_vmdk_driver, img, strlen((char *)img)) == -ENOTSUP, "RDM extent refused");
	{
		/* 1025 ZERO extents: over the cap. */
		size_t n = 0;
		int i;

		n += (size_t)sprintf((char *)img, "# Disk DescriptorFile\n");
		for (i = 0; i < 1025; i++) {
			n += (size_t)sprintf((char *)img + n, "RW 1 ZERO\n");
		}
		ok(try_open(&vd_vmdk_driver, img, n) == -EFBIG, "more than 1024 extents refused");
	}

	/* ---- hostile vhd ---- */
	memset(img, 0, sizeof(img));
	memcpy(img, "conectix", 8);
	vd_put_be32(img + 60, 3);
	vd_put_be64(img + 16, 512);
	vd_put_be32(img + 64, vhd_sum(img, 512, 64) + 1); /* bad checksum */
	ok(try_open(&vd_vhd_driver, img, 1024) == -EINVAL, "vhd footer checksum verified");
	vd_put_be32(img + 64, vhd_sum(img, 512, 64));
	memcpy(img + 512, "cxsparse", 8);
	vd_put_be64(img + 512 + 16, 2048);
	vd_put_be32(img + 512 + 28, 0xffffffff);
	vd_put_be32(img + 512 + 32, 1 << 21);
	vd_put_be32(img + 512 + 36, vhd_sum(img + 512, 1024, 36));
	ok(try_open(&vd_vhd_driver, img, 4096) == -EFBIG, "4 Gi-entry BAT refused");
	vd_put_be32(img + 512 + 28, 4);
	vd_put_be32(img + 512 + 32, 1000);
	vd_put_be32(img + 512 + 36, vhd_sum(img + 512, 1024, 36));
	ok(try_open(&vd_vhd_driver, img, 4096) == -EINVAL, "vhd block size 1000 refused");
	vd_put_be32(img + 60, 9);
	vd_put_be32(img + 64, vhd_sum(img, 512, 64));
	ok(try_open(&vd_vhd_driver, img, 4096) == -ENOTSUP, "vhd disk type 9 refused");

	/* ---- hostile vhdx ---- */
	memset(img, 0, sizeof(img));
	memcpy(img, "vhdxfile", 8);
	ok(try_open(&vd_vhdx_driver, img, sizeof(img)) == -EINVAL, "vhdx shorter than its tables");
	{
		size_t n = 512 << 10;
		uint8_t *big = calloc(1, n);

		memcpy(big, "vhdxfile", 8);
		memcpy(big + (64 << 10), "head", 4); /* CRC wrong */
		ok(try_open(&vd_vhdx_driver, big, n) == -EINVAL && strstr(vd_get_error(), "header"),
		   "vhdx header CRC verified (%s)", vd_get_error());
		free(big);
	}

	/* ---- helpers ---- */
	ok(ft_crc32c(0, "123456789", 9) == 0xe3069283u, "crc32c check value");
	ok(!ft_in_file(UINT64_MAX - 10, 100, UINT64_MAX), "ft_in_file catches overflow");
	ok(ft_in_file(10, 90, 100) && !ft_in_file(10, 91, 100), "ft_in_file bounds");
	s = ft_utf16_to_utf8((const uint8_t *)"a\0\xe9\0\x3d\xd8\x00\xde", 4, false);
	ok(s && strcmp(s, "a\xc3\xa9\xf0\x9f\x98\x80") == 0, "utf-16 with a surrogate pair");
	free(s);
	{
		z_stream zs;
		uint8_t src[4096], comp[8192];

		memset(src, 'x', sizeof(src));
		memset(&zs, 0, sizeof(zs));
		deflateInit2(&zs, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY);
		zs.next_in = src;
		zs.avail_in = sizeof(src);
		zs.next_out = comp;
		zs.avail_out = sizeof(comp);
		deflate(&zs, Z_FINISH);
		ok(ft_inflate_raw(comp, zs.total_out, buf, sizeof(buf)) == 0 &&
			   memcmp(buf, src, sizeof(buf)) == 0,
		   "raw inflate of one cluster");
		ok(ft_inflate_raw(comp, zs.total_out, img, 8192) == -EIO,
		   "raw inflate that does not fill the cluster fails");
		ok(ft_inflate_raw(comp, zs.total_out, out, sizeof(out)) == 0 && out[63] == 'x',
		   "raw inflate stops at the output size");
		deflateEnd(&zs);
	}
	return done_testing();
}
