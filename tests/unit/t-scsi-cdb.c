// SPDX-License-Identifier: MIT
/*
 * vdisk-target SCSI layer without the network: CDBs run through scsi_exec()
 * against a LUN over a temporary file. Checks the decoding of the READ/WRITE
 * CDB sizes, range errors, sense data, COMPARE AND WRITE (match and miscompare
 * offset), UNMAP + GET LBA STATUS, persistent reservations seen from two I_T
 * nexuses, RESERVE(6), read-only LUNs and unknown opcodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

#include "../../tools/target/backing.c"
#include "../../tools/target/pr.c"
#include "../../tools/target/sbc.c"
#include "../../tools/target/scsi.c"
#include "../../tools/target/spc.c"
#include "../../tools/target/xcopy.c"

#include "../target-log-stub.h"

static struct tgt_lun *lu, *rolu;

static struct scsi_cmd *
run(struct tgt_lun *l, const char *nexus, const uint8_t *cdb, size_t cdblen, const void *out,
    uint32_t outlen, uint32_t edtl)
{
	struct scsi_cmd *c = calloc(1, sizeof(*c));
	c->lu = l;
	memcpy(c->cdb, cdb, cdblen);
	snprintf(c->nexus.iport, sizeof(c->nexus.iport), "%s", nexus);
	c->nexus.rtpi = 1;
	c->nexus.tpgt = 1;
	c->edtl = edtl;
	if (outlen) {
		c->out = malloc(outlen);
		memcpy(c->out, out, outlen);
		c->out_len = outlen;
	}
	scsi_exec(c);
	return c;
}

static void
done(struct scsi_cmd *c)
{
	free(c->in);
	free(c->out);
	free(c);
}

static uint16_t
asc(const struct scsi_cmd *c)
{
	return (uint16_t)(c->sense[12] << 8 | c->sense[13]);
}

#define EXPECT_SENSE(c, key, a, what)                                                              \
	ok((c)->status == SAM_STAT_CHECK_CONDITION && ((c)->sense[2] & 0xf) == (key) &&            \
		   asc(c) == (a),                                                                  \
	   "%s: sense %x/%04x", what, (c)->sense[2] & 0xf, asc(c))

static const char *A = "iqn.2026-11.org.example:a,i,0x800000000001";
static const char *B = "iqn.2026-11.org.example:b,i,0x800000000002";

static struct scsi_cmd *
pr_out_cmd(const char *nx, uint8_t sa, uint8_t type, uint64_t key, uint64_t sark)
{
	uint8_t cdb[10] = {0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0};
	uint8_t p[24] = {0};
	put_be64(p, key);
	put_be64(p + 8, sark);
	return run(lu, nx, cdb, 10, p, 24, 24);
}

int
main(void)
{
	char path[] = "/dev/shm/t-scsi-cdb.XXXXXX", ropath[] = "/dev/shm/t-scsi-ro.XXXXXX";
	int fd = mkstemp(path), rofd = mkstemp(ropath);
	struct scsi_cmd *c;
	uint8_t buf[8192];

	if (fd < 0 || rofd < 0 || ftruncate(fd, 4 << 20) < 0 || ftruncate(rofd, 1 << 20) < 0) {
		skip_all("no scratch file");
	}
	lu = tgt_lun_open(path, false, NULL, 4096);
	rolu = tgt_lun_open(ropath, true, "fixed-serial", 512);
	if (!check(lu && rolu)) {
		return done_testing();
	}
	check_int(lu->nblocks, 8192);
	check_int(rolu->pb_exp, 0);

	/* INQUIRY */
	uint8_t inq[6] = {0x12, 0, 0, 0, 255, 0};
	c = run(lu, A, inq, 6, NULL, 0, 255);
	ok(c->status == 0 && c->in_len == 66 && !memcmp(c->in + 8, "VDISKFS ", 8), "INQUIRY");
	done(c);
	uint8_t vpd83[6] = {0x12, 1, 0x83, 0, 255, 0};
	c = run(lu, A, vpd83, 6, NULL, 0, 255);
	ok(c->status == 0 && c->in[5] == 0x03 && c->in[7] == 16 && (c->in[8] >> 4) == 6,
	   "VPD 0x83 starts with an NAA 6 designator");
	done(c);
	uint8_t vpd80[6] = {0x12, 1, 0x80, 0, 255, 0};
	c = run(rolu, A, vpd80, 6, NULL, 0, 255);
	ok(c->status == 0 && c->in[3] == 12 && !memcmp(c->in + 4, "fixed-serial", 12),
	   "VPD 0x80 honours a configured serial");
	done(c);
	uint8_t inqbad[6] = {0x12, 0, 0x83, 0, 255, 0};
	c = run(lu, A, inqbad, 6, NULL, 0, 255);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, "page code without EVPD");
	done(c);
	c = run(NULL, A, inq, 6, NULL, 0, 255);
	ok(c->status == 0 && c->in[0] == 0x7f, "INQUIRY on an unmapped LUN: qualifier 3");
	done(c);
	uint8_t tur[6] = {0};
	c = run(NULL, A, tur, 6, NULL, 0, 0);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED, "TUR on an unmapped LUN");
	done(c);

	/* capacity */
	uint8_t rc16[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
	c = run(lu, A, rc16, 16, NULL, 0, 32);
	ok(c->status == 0 && get_be64(c->in) == 8191 && get_be32(c->in + 8) == 512 &&
		   c->in[13] == 3 && (c->in[14] & 0xc0) == 0xc0,
	   "READ CAPACITY(16): size, 4 KiB physical, LBPME+LBPRZ");
	done(c);

	/* WRITE(6/10/12/16) and READ back */
	for (int i = 0; i < 512; i++) {
		buf[i] = (uint8_t)(i * 13 + 1);
	}
	uint8_t w6[6] = {0x0a, 0, 0, 5, 1, 0};
	c = run(lu, A, w6, 6, buf, 512, 512);
	check_int(c->status, 0);
	done(c);
	uint8_t w10[10] = {0x2a, 0, 0, 0, 0, 6, 0, 0, 1, 0};
	c = run(lu, A, w10, 10, buf, 512, 512);
	check_int(c->status, 0);
	done(c);
	uint8_t r16[16] = {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0};
	c = run(lu, A, r16, 16, NULL, 0, 1024);
	ok(c->status == 0 && c->in_len == 1024 && !memcmp(c->in, buf, 512) &&
		   !memcmp(c->in + 512, buf, 512),
	   "READ(16) returns what WRITE(6) and WRITE(10) wrote");
	done(c);
	uint8_t r12[12] = {0xa8, 0, 0, 0, 0x1f, 0xff, 0, 0, 0, 2, 0, 0};
	c = run(lu, A, r12, 12, NULL, 0, 1024);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, "READ(12) past the end");
	done(c);
	uint8_t r10p[10] = {0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0};
	c = run(lu, A, r10p, 10, NULL, 0, 512);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, "RDPROTECT refused");
	done(c);
	uint8_t w10s[10] = {0x2a, 0, 0, 0, 0, 6, 0, 0, 2, 0};
	c = run(lu, A, w10s, 10, buf, 512, 512);
	ok(c->status == 0 && c->has_spdtl && c->spdtl == 1024, "EDTL < SPDTL: SPDTL reported");
	done(c);

	/* COMPARE AND WRITE */
	uint8_t caw[16] = {0x89, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0};
	uint8_t cw[1024];
	memcpy(cw, buf, 512);
	memset(cw + 512, 0x5a, 512);
	c = run(lu, A, caw, 16, cw, 1024, 1024);
	check_int(c->status, 0);
	done(c);
	c = run(lu, A, caw, 16, cw, 1024, 1024); /* block 5 is now 0x5a: miscompare at 0 */
	ok(c->status == SAM_STAT_CHECK_CONDITION && (c->sense[2] & 0xf) == SK_MISCOMPARE &&
		   (c->sense[0] & 0x80) && get_be32(c->sense + 3) == 0,
	   "COMPARE AND WRITE miscompare at offset 0");
	done(c);
	memset(cw, 0x5a, 512);
	cw[100] = 0;
	c = run(lu, A, caw, 16, cw, 1024, 1024);
	ok(c->status == SAM_STAT_CHECK_CONDITION && get_be32(c->sense + 3) == 100,
	   "miscompare reports the offset of the first differing byte");
	done(c);
	c = run(lu, A, caw, 16, cw, 512, 512);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, "CAW with half the data");
	done(c);

	/* UNMAP and GET LBA STATUS */
	uint8_t w16[16] = {0x8a, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 16, 0, 0};
	memset(buf, 0x77, sizeof(buf));
	c = run(lu, A, w16, 16, buf, 8192, 8192);
	check_int(c->status, 0);
	done(c);
	uint8_t unmap[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0};
	uint8_t ul[24] = {0, 22, 0, 16};
	put_be64(ul + 8, 0x1000);
	put_be32(ul + 16, 8);
	c = run(lu, A, unmap, 10, ul, 24, 24);
	check_int(c->status, 0);
	done(c);
	uint8_t gls[16] = {0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 200, 0, 0};
	c = run(lu, A, gls, 16, NULL, 0, 200);
	ok(c->status == 0 && get_be64(c->in + 8) == 0x1000 && get_be32(c->in + 16) == 8 &&
		   c->in[20] == 1 && get_be64(c->in + 24) == 0x1008 && c->in[36] == 0,
	   "GET LBA STATUS: 8 deallocated blocks, then mapped ones");
	done(c);
	uint8_t r10z[10] = {0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0};
	c = run(lu, A, r10z, 10, NULL, 0, 4096);
	bool zero = c->status == 0;
	for (uint32_t i = 0; zero && i < 4096; i++) {
		zero = c->in[i] == 0;
	}
	ok(zero, "unmapped blocks read back as zeros");
	done(c);
	ul[17] = 0;
	put_be64(ul + 8, 8190);
	put_be32(ul + 16, 4);
	c = run(lu, A, unmap, 10, ul, 24, 24);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, "UNMAP past the end");
	done(c);

	/* persistent reservations from two nexuses */
	c = pr_out_cmd(A, 0, 0, 0, 0xaaaa);
	check_int(c->status, 0);
	done(c);
	c = pr_out_cmd(B, 0, 0, 0, 0xbbbb);
	check_int(c->status, 0);
	done(c);
	c = pr_out_cmd(A, 1, 1, 0xaaaa, 0); /* RESERVE, Write Exclusive */
	check_int(c->status, 0);
	done(c);
	c = run(lu, B, w10, 10, buf, 512, 512);
	check_int(c->status, SAM_STAT_RESERVATION_CONFLICT);
	done(c);
	c = run(lu, B, r10z, 10, NULL, 0, 4096);
	ok(c->status == 0, "Write Exclusive: another nexus still reads");
	done(c);
	c = run(lu, A, w10, 10, buf, 512, 512);
	ok(c->status == 0, "Write Exclusive: the holder writes");
	done(c);
	uint8_t rres[10] = {0x5e, 1, 0, 0, 0, 0, 0, 0, 64, 0};
	c = run(lu, B, rres, 10, NULL, 0, 64);
	ok(c->status == 0 && get_be32(c->in + 4) == 16 && get_be64(c->in + 8) == 0xaaaa &&
		   c->in[21] == 1,
	   "READ RESERVATION shows the holder's key and type");
	done(c);
	c = pr_out_cmd(B, 4, 3, 0xbbbb, 0xaaaa); /* PREEMPT A, take Exclusive Access */
	check_int(c->status, 0);
	done(c);
	c = run(lu, A, r10z, 10, NULL, 0, 4096);
	ok(c->status == SAM_STAT_RESERVATION_CONFLICT, "preempted nexus has no access");
	done(c);
	uint8_t rkeys[10] = {0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0};
	c = run(lu, B, rkeys, 10, NULL, 0, 64);
	ok(c->status == 0 && get_be32(c->in + 4) == 8 && get_be64(c->in + 8) == 0xbbbb,
	   "READ KEYS after PREEMPT: only the preempting key");
	done(c);
	c = pr_out_cmd(A, 0, 0, 0x1234, 0x1);
	check_int(c->status, SAM_STAT_RESERVATION_CONFLICT);
	done(c);
	c = pr_out_cmd(B, 3, 0, 0xbbbb, 0); /* CLEAR */
	check_int(c->status, 0);
	done(c);

	/* RESERVE(6) */
	uint8_t res6[6] = {0x16, 0, 0, 0, 0, 0}, rel6[6] = {0x17, 0, 0, 0, 0, 0};
	c = run(lu, A, res6, 6, NULL, 0, 0);
	check_int(c->status, 0);
	done(c);
	c = run(lu, B, res6, 6, NULL, 0, 0);
	check_int(c->status, SAM_STAT_RESERVATION_CONFLICT);
	done(c);
	c = run(lu, B, inq, 6, NULL, 0, 255);
	ok(c->status == 0, "INQUIRY allowed under another's RESERVE(6)");
	done(c);
	pr_nexus_lost(lu, A, 1);
	c = run(lu, B, res6, 6, NULL, 0, 0);
	ok(c->status == 0, "I_T nexus loss releases RESERVE(6)");
	done(c);
	c = run(lu, B, rel6, 6, NULL, 0, 0);
	check_int(c->status, 0);
	done(c);

	/* EXTENDED COPY (LID1): 8 blocks from LBA 0x1008 to LBA 100 of the same LUN */
	uint8_t xp[16 + 32 + 28] = {0};
	xp[0] = 7; /* list id */
	put_be16(xp + 2, 32);
	put_be32(xp + 8, 28);
	uint8_t *td = xp + 16;
	td[0] = 0xe4;
	td[4] = 0x01; /* binary */
	td[5] = 0x03; /* NAA, LU association */
	td[7] = 16;
	memcpy(td + 8, lu->naa, 16);
	put_be24(td + 29, 512);
	uint8_t *sd = xp + 48;
	sd[0] = 0x02;
	put_be16(sd + 2, 0x18);
	put_be16(sd + 10, 8);
	put_be64(sd + 12, 0x1008);
	put_be64(sd + 20, 100);
	uint8_t xc[16] = {0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, sizeof(xp), 0, 0};
	c = run(lu, A, xc, 16, xp, sizeof(xp), sizeof(xp));
	check_int(c->status, 0);
	done(c);
	uint8_t r10x[10] = {0x28, 0, 0, 0, 0, 100, 0, 0, 8, 0};
	c = run(lu, A, r10x, 10, NULL, 0, 4096);
	ok(c->status == 0 && c->in[0] == 0x77 && c->in[4095] == 0x77,
	   "EXTENDED COPY moved the blocks");
	done(c);
	uint8_t rcr[16] = {0x84, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0};
	c = run(lu, A, rcr, 16, NULL, 0, 64);
	ok(c->status == 0 && c->in[4] == 1 && get_be32(c->in + 8) == 4096,
	   "RECEIVE COPY RESULTS: completed, 4096 bytes");
	done(c);
	put_be64(sd + 20, 8190); /* beyond the end */
	c = run(lu, A, xc, 16, xp, sizeof(xp), sizeof(xp));
	ok(c->status == SAM_STAT_CHECK_CONDITION && (c->sense[2] & 0xf) == 0xa,
	   "EXTENDED COPY past the end: COPY ABORTED");
	done(c);
	td[8] ^= 0xff; /* an NAA no LUN has */
	put_be64(sd + 20, 100);
	c = run(lu, A, xc, 16, xp, sizeof(xp), sizeof(xp));
	ok(c->status == SAM_STAT_CHECK_CONDITION && asc(c) == 0x0d02, "unknown copy target");
	done(c);

	/* read-only LUN, unknown opcode, REPORT LUNS */
	c = run(rolu, A, w10, 10, buf, 512, 512);
	EXPECT_SENSE(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED, "write to a read-only LUN");
	done(c);
	uint8_t bogus[6] = {0xc7, 0, 0, 0, 0, 0};
	c = run(lu, A, bogus, 6, NULL, 0, 0);
	EXPECT_SENSE(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, "unknown opcode");
	done(c);
	uint8_t rl[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
	struct scsi_cmd *q = calloc(1, sizeof(*q));
	memcpy(q->cdb, rl, 12);
	q->nluns = 2;
	q->luns[0] = 0;
	q->luns[1] = 300;
	q->edtl = 256;
	scsi_exec(q);
	ok(q->status == 0 && get_be32(q->in) == 16 && q->in[16] == 0x41 && q->in[17] == 0x2c,
	   "REPORT LUNS: flat addressing above 255");
	done(q);

	tgt_lun_put(lu);
	tgt_lun_put(rolu);
	unlink(path);
	unlink(ropath);
	return done_testing();
}
