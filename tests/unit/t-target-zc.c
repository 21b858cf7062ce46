// SPDX-License-Identifier: MIT
/*
 * vdisk-target's fast paths for LUNs on tmpfs, without the network: the
 * detection of a memory-backed file, READ/WRITE in nowait mode (what the event
 * loop runs inline: done at once, or would_block with nothing touched when
 * io_lock is taken), the zero-copy decision for large reads, and the property
 * zero-copy relies on: a COMPARE AND WRITE (and the other atomic writes)
 * replaces whole pages, so file pages already spliced into a pipe - what a
 * read still in flight on a socket holds - keep the old data, and the file
 * gets the new data with its other bytes and its size unchanged.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "tap.h"

#include "../../tools/target/backing.c"
#include "../../tools/target/pr.c"
#include "../../tools/target/sbc.c"
#include "../../tools/target/scsi.c"
#include "../../tools/target/spc.c"
#include "../../tools/target/xcopy.c"

#include "../target-log-stub.h"

static const char *A = "iqn.2026-11.org.example:a,i,0x800000000001";

static struct scsi_cmd *
cmd_new(struct tgt_lun *l, const uint8_t *cdb, size_t cdblen, const void *out, uint32_t outlen,
	uint32_t edtl)
{
	struct scsi_cmd *c = calloc(1, sizeof(*c));
	c->lu = l;
	memcpy(c->cdb, cdb, cdblen);
	snprintf(c->nexus.iport, sizeof(c->nexus.iport), "%s", A);
	c->nexus.rtpi = 1;
	c->nexus.tpgt = 1;
	c->edtl = edtl;
	if (outlen) {
		c->out = malloc(outlen);
		memcpy(c->out, out, outlen);
		c->out_len = outlen;
	}
	return c;
}

static void
cmd_free(struct scsi_cmd *c)
{
	free(c->in);
	free(c->out);
	free(c);
}

static void
rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(cdb, 0, 10);
	cdb[0] = op;
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, n);
}

static uint8_t
pat(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

static char *
make_file(const char *dir, size_t size)
{
	char *path = malloc(4096);
	snprintf(path, 4096, "%s/t-target-zc.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		free(path);
		return NULL;
	}
	uint8_t *b = malloc(size);
	for (size_t i = 0; i < size; i++) {
		b[i] = pat(i);
	}
	ssize_t w = write(fd, b, size);
	(void)w;
	free(b);
	close(fd);
	return path;
}

static bool
file_is(const char *path, size_t size, size_t off, const uint8_t *data, size_t len)
{
	int fd = open(path, O_RDONLY);
	uint8_t *b = malloc(size + 1);
	ssize_t n = pread(fd, b, size + 1, 0);
	close(fd);
	bool good = n == (ssize_t)size;
	for (size_t i = 0; good && i < size; i++) {
		uint8_t want = i >= off && i < off + len ? data[i - off] : pat(i);
		good = b[i] == want;
	}
	free(b);
	return good;
}

int
main(void)
{
	const char *shm = getenv("T") && *getenv("T") ? getenv("T") : "/dev/shm";
	struct statfs sf;
	if (statfs(shm, &sf) < 0 || sf.f_type != TMPFS_MAGIC) {
		shm = "/dev/shm";
	}
	const size_t size = 64 * 4096 + 512; /* the last page is partial */
	char *path = make_file(shm, size);
	ok(path != NULL, "a LUN file in %s", shm);
	if (!path) {
		return done_testing();
	}
	struct tgt_lun *lu = tgt_lun_open(path, false, NULL, 4096);
	ok(lu && lu->mem_backed && lu->zerocopy, "a file on tmpfs is memory-backed, zero-copy");
	if (!lu) {
		unlink(path);
		return done_testing();
	}

	/* a file elsewhere (the work tree: a disk here) takes the worker paths */
	char *dpath = make_file(".", 8192);
	struct statfs df;
	if (dpath && statfs(dpath, &df) == 0) {
		struct tgt_lun *dl = tgt_lun_open(dpath, false, NULL, 4096);
		bool mem = df.f_type == TMPFS_MAGIC || df.f_type == RAMFS_MAGIC;
		ok(dl && dl->mem_backed == mem && dl->zerocopy == (df.f_type == TMPFS_MAGIC),
		   "memory-backed exactly on tmpfs/ramfs (f_type 0x%lx)", (unsigned long)df.f_type);
		uint8_t cdb[10], blk[512];
		memset(blk, 0x5a, sizeof(blk));
		rw10(cdb, 0x2a, 1, 1);
		struct scsi_cmd *c = cmd_new(dl, cdb, 10, blk, 512, 512);
		c->nowait = true;
		scsi_exec(c);
		ok(c->would_block == !mem, "nowait WRITE on a disk file goes to a worker");
		cmd_free(c);
		tgt_lun_put(dl);
	} else {
		ok(0, "a LUN file in the work tree");
		ok(0, "nowait WRITE on a disk file");
	}
	if (dpath) {
		unlink(dpath);
		free(dpath);
	}

	/* nowait WRITE and READ on the tmpfs LUN: done at once */
	uint8_t cdb[16], blk[1024];
	for (size_t i = 0; i < sizeof(blk); i++) {
		blk[i] = (uint8_t)(0xc0 ^ i);
	}
	rw10(cdb, 0x2a, 40, 2);
	struct scsi_cmd *c = cmd_new(lu, cdb, 10, blk, 1024, 1024);
	c->nowait = true;
	scsi_exec(c);
	ok(!c->would_block && c->status == SAM_STAT_GOOD, "nowait WRITE(10) on tmpfs completes");
	cmd_free(c);
	ok(file_is(path, size, 40 * 512, blk, 1024), "... and the data is in the file");

	/* io_lock held exclusively (an ATS on a worker): nothing is touched */
	uint8_t other[512];
	memset(other, 0xee, sizeof(other));
	pthread_rwlock_wrlock(&lu->io_lock);
	rw10(cdb, 0x2a, 40, 1);
	c = cmd_new(lu, cdb, 10, other, 512, 512);
	c->nowait = true;
	scsi_exec(c);
	bool wb = c->would_block;
	cmd_free(c);
	rw10(cdb, 0x28, 0, 8);
	c = cmd_new(lu, cdb, 10, NULL, 0, 4096);
	c->nowait = true;
	scsi_exec(c);
	bool rb = c->would_block;
	cmd_free(c);
	pthread_rwlock_unlock(&lu->io_lock);
	ok(wb && rb, "nowait WRITE and READ give way to a held io_lock");
	ok(file_is(path, size, 40 * 512, blk, 1024), "... without writing anything");

	/* the zero-copy decision: large reads by reference, small ones copied */
	rw10(cdb, 0x28, 8, 128);
	c = cmd_new(lu, cdb, 10, NULL, 0, 65536);
	c->nowait = true;
	c->zc_ok = true;
	c->zc_max = 1u << 20;
	scsi_exec(c);
	ok(c->status == SAM_STAT_GOOD && !c->zc && c->mapped && c->zc_off == 8 * 512 &&
		   c->in == NULL && c->in_len == 65536,
	   "64 KiB READ with zc_ok, every page in memory: sent from the mapping");
	cmd_free(c);
	rw10(cdb, 0x28, 1, 128);
	c = cmd_new(lu, cdb, 10, NULL, 0, 65536);
	c->nowait = true;
	c->zc_ok = true;
	c->zc_max = 65536;
	scsi_exec(c);
	ok(c->status == SAM_STAT_GOOD && !c->zc && c->mapped && c->zc_off == 512,
	   "64 KiB READ spanning 17 pages, pipe of 16: from the mapping all the same");
	cmd_free(c);
	rw10(cdb, 0x28, 8, 8);
	c = cmd_new(lu, cdb, 10, NULL, 0, 4096);
	c->nowait = true;
	c->zc_ok = true;
	c->zc_max = 1u << 20;
	scsi_exec(c);
	ok(c->status == SAM_STAT_GOOD && !c->zc && c->in && c->in[0] == pat(8 * 512),
	   "4 KiB READ: copied");
	cmd_free(c);
	rw10(cdb, 0x28, 8, 128);
	c = cmd_new(lu, cdb, 10, NULL, 0, 65536);
	c->nowait = true;
	scsi_exec(c);
	ok(!c->zc && c->in && c->in[100] == pat(8 * 512 + 100), "without zc_ok: copied");
	cmd_free(c);
	rw10(cdb, 0x28, (uint32_t)(size / 512), 128);
	c = cmd_new(lu, cdb, 10, NULL, 0, 65536);
	c->nowait = true;
	c->zc_ok = true;
	c->zc_max = 1u << 20;
	scsi_exec(c);
	ok(c->status == SAM_STAT_CHECK_CONDITION && !c->zc, "zero-copy READ past the end: range error");
	cmd_free(c);

	/* a sparse LUN: large reads over a hole go by reference and fill nothing */
	{
		char *sp_path = make_file(shm, 4096);
		int sfd = sp_path ? open(sp_path, O_RDWR) : -1;
		ok(sfd >= 0 && ftruncate(sfd, 1 << 20) == 0, "a sparse 1 MiB file");
		struct tgt_lun *sl = sp_path ? tgt_lun_open(sp_path, false, NULL, 4096) : NULL;
		ok(sl && sl->map && sl->map_len == 1u << 20, "a tmpfs LUN is mapped");
		struct stat s0, s1;
		fstat(sfd, &s0);
		ok(sl && lun_map_resident(sl, 0, 4096) && !lun_map_resident(sl, 0, 8192) &&
			   !lun_map_resident(sl, 65536, 65536),
		   "lun_map_resident: the written page yes, the holes no");
		rw10(cdb, 0x28, 0, 256);
		c = cmd_new(sl, cdb, 10, NULL, 0, 131072);
		c->nowait = true;
		c->zc_ok = true;
		c->zc_max = 1u << 20;
		scsi_exec(c);
		ok(c->status == SAM_STAT_GOOD && c->zc && !c->mapped && c->zc_off == 0 &&
			   c->in == NULL,
		   "128 KiB READ over a hole with zc_ok: by reference");
		cmd_free(c);
		rw10(cdb, 0x28, 0, 256);
		c = cmd_new(sl, cdb, 10, NULL, 0, 131072);
		scsi_exec(c);
		bool zeros = c->status == SAM_STAT_GOOD && c->in && c->in[0] == pat(0);
		for (size_t i = 4096; zeros && i < 131072; i++) {
			zeros = c->in[i] == 0;
		}
		ok(zeros, "128 KiB READ over a hole without zc_ok: the data, then zeros");
		cmd_free(c);
		rw10(cdb, 0x28, 1, 128);
		c = cmd_new(sl, cdb, 10, NULL, 0, 65536);
		c->nowait = true;
		c->zc_ok = true;
		c->zc_max = 65536;
		scsi_exec(c);
		ok(c->status == SAM_STAT_GOOD && !c->zc && !c->mapped && c->in &&
			   c->in[0] == pat(512) && c->in[65535] == 0,
		   "64 KiB READ over holes spanning 17 pages, pipe of 16: copied");
		cmd_free(c);
		uint8_t m4[4096];
		ok(lun_map_read(sl, m4, 4096, 0) == 0 && m4[0] == pat(0) && m4[4095] == pat(4095) &&
			   lun_map_read(sl, m4, 4096, (1u << 20) - 2048) == -EFAULT,
		   "lun_map_read: in the mapping, and -EFAULT past its end");
		fstat(sfd, &s1);
		ok(s1.st_blocks == s0.st_blocks, "... and the holes stay holes (%lld blocks)",
		   (long long)s1.st_blocks);
		/* the file shrinks under the mapping: a write past the new end raises
		 * SIGBUS in the copy; it is refused (what was there is gone) and the
		 * LUN is marked for the loop to reread its size */
		ok(ftruncate(sfd, 65536) == 0, "the file shrinks to 64 KiB under the mapping");
		uint8_t w64[4096];
		memset(w64, 0x5a, sizeof(w64));
		rw10(cdb, 0x2a, 1024, 8);
		c = cmd_new(sl, cdb, 10, w64, 4096, 4096);
		scsi_exec(c);
		struct stat s2;
		ok(c->status == SAM_STAT_CHECK_CONDITION && c->sense[2] == SK_ILLEGAL_REQUEST &&
			   c->sense[12] == 0x21 && c->sense[13] == 0 && fstat(sfd, &s2) == 0 &&
			   s2.st_size == 65536,
		   "a WRITE past the end of the shrunk file: LBA OUT OF RANGE, no SIGBUS, "
		   "the file not grown back");
		cmd_free(c);
		ok(atomic_load(&sl->recheck) && tgt_lun_update_size(sl) && sl->nblocks == 128,
		   "the LUN was marked shrunk; its capacity reread: 128 blocks");
		rw10(cdb, 0x28, 1024, 8);
		c = cmd_new(sl, cdb, 10, NULL, 0, 4096);
		scsi_exec(c);
		ok(c->status == SAM_STAT_CHECK_CONDITION && c->sense[12] == 0x21,
		   "a READ there now: LBA OUT OF RANGE");
		cmd_free(c);
		tgt_lun_put(sl);
		if (sfd >= 0) {
			close(sfd);
		}
		if (sp_path) {
			unlink(sp_path);
		}
		free(sp_path);
	}

	/* pages of the file spliced into a pipe, as conn.c does for Data-In */
	int pfd[2];
	ok(pipe(pfd) == 0, "pipe");
	loff_t o = 0;
	ssize_t sp = splice(lu->fd, &o, pfd[1], NULL, 3 * 4096, 0);
	ok(sp == 3 * 4096, "splice of 3 pages into the pipe (%zd)", sp);

	/* COMPARE AND WRITE of blocks 3..4 (inside page 0) */
	uint8_t caw[16] = {0x89};
	put_be64(caw + 2, 3);
	caw[13] = 2;
	uint8_t cw[2048];
	for (size_t i = 0; i < 1024; i++) {
		cw[i] = pat(3 * 512 + i);
		cw[1024 + i] = (uint8_t)(0x11 + i);
	}
	c = cmd_new(lu, caw, 16, cw, 2048, 2048);
	scsi_exec(c);
	ok(c->status == SAM_STAT_GOOD, "COMPARE AND WRITE matches and writes");
	cmd_free(c);
	uint8_t got[3 * 4096];
	ssize_t n = read(pfd[0], got, sizeof(got));
	bool old = n == (ssize_t)sizeof(got);
	for (size_t i = 0; old && i < sizeof(got); i++) {
		old = got[i] == pat(i);
	}
	ok(old, "the pages in the pipe still hold the data from before the ATS");
	close(pfd[0]);
	close(pfd[1]);
	uint8_t expect_new[1024];
	memcpy(expect_new, cw + 1024, 1024);
	/* the file: the new blocks, the earlier WRITE, everything else intact */
	int fd = open(path, O_RDONLY);
	uint8_t *all = malloc(size);
	ssize_t rn = pread(fd, all, size, 0);
	close(fd);
	bool good = rn == (ssize_t)size;
	for (size_t i = 0; good && i < size; i++) {
		uint8_t want = pat(i);
		if (i >= 3 * 512 && i < 5 * 512) {
			want = expect_new[i - 3 * 512];
		} else if (i >= 40 * 512 && i < 42 * 512) {
			want = blk[i - 40 * 512];
		}
		good = all[i] == want;
	}
	free(all);
	ok(good, "the file has the ATS data, all other bytes and its size unchanged");

	/* the partial last page: the size must not grow */
	uint64_t last = size / 512 - 1;
	put_be64(caw + 2, last);
	caw[13] = 1;
	uint8_t cw2[1024];
	for (size_t i = 0; i < 512; i++) {
		cw2[i] = pat(last * 512 + i);
		cw2[512 + i] = 0x77;
	}
	c = cmd_new(lu, caw, 16, cw2, 1024, 1024);
	scsi_exec(c);
	ok(c->status == SAM_STAT_GOOD, "COMPARE AND WRITE of the last block");
	cmd_free(c);
	struct stat st;
	ok(stat(path, &st) == 0 && (size_t)st.st_size == size, "the file size is unchanged");
	fd = open(path, O_RDONLY);
	uint8_t tail[512 + 512];
	rn = pread(fd, tail, sizeof(tail), (off_t)(last * 512 - 512));
	close(fd);
	bool tgood = rn == 1024;
	for (size_t i = 0; tgood && i < 512; i++) {
		tgood = tail[i] == pat(last * 512 - 512 + i) && tail[512 + i] == 0x77;
	}
	ok(tgood, "the last block is new, the one before it intact");

	/* a miscompare writes nothing */
	c = cmd_new(lu, caw, 16, cw2, 1024, 1024);
	scsi_exec(c);
	ok(c->status == SAM_STAT_CHECK_CONDITION && (c->sense[2] & 0xf) == SK_MISCOMPARE,
	   "a second identical ATS miscompares");
	cmd_free(c);

	/* large writes go into the mapping with non-temporal stores: every
	 * alignment of both ends and lengths around the 64-byte steps, then a
	 * lun_pwrite above the threshold read back through the file */
	{
		size_t cap = (LUN_NT_MIN + 256) * 2;
		uint8_t *src = malloc(cap), *dst = malloc(cap), *want = malloc(cap);
		bool same = src && dst && want;
		for (size_t i = 0; same && i < cap; i++) {
			src[i] = (uint8_t)(i * 131 + 7);
		}
		size_t lens[] = {0, 1, 15, 16, 63, 64, 65, 127, 1000, LUN_NT_MIN - 1, LUN_NT_MIN + 77};
		for (size_t so = 0; same && so < 17; so += 3) {
			for (size_t doff = 0; same && doff < 17; doff += 5) {
				for (size_t k = 0; same && k < sizeof(lens) / sizeof(lens[0]); k++) {
					memset(dst, 0xee, cap);
					memset(want, 0xee, cap);
					memcpy(want + doff, src + so, lens[k]);
					lun_copy_nt(dst + doff, src + so, lens[k]);
					same = !memcmp(dst, want, cap);
				}
			}
		}
		ok(same, "non-temporal copy: every alignment and length, nothing past the end");
		free(src);
		free(dst);
		free(want);
	}
	{
		size_t n = LUN_NT_MIN + 4096;
		uint8_t *w = malloc(n), *r = malloc(n);
		for (size_t i = 0; w && i < n; i++) {
			w[i] = (uint8_t)(i * 7 + 3);
		}
		int rc = w && r ? lun_pwrite(lu, w + 3, n - 512, 512) : -ENOMEM;
		bool back = lu->map && rc == 0 && pread(lu->fd, r, n - 512, 512) == (ssize_t)(n - 512) &&
			    !memcmp(r, w + 3, n - 512);
		ok(back, "a %zu-byte write through the mapping reads back from the file", n - 512);
		free(w);
		free(r);
	}

	tgt_lun_put(lu);
	unlink(path);
	free(path);
	return done_testing();
}
