// SPDX-License-Identifier: MIT
/*
 * SBC-3 block commands over the LUN's plain file (after tgt's sbc.c): READ and
 * WRITE of every CDB size, WRITE AND VERIFY, VERIFY, ORWRITE, WRITE ATOMIC,
 * READ CAPACITY, SYNCHRONIZE CACHE (fdatasync), WRITE SAME with UNMAP, UNMAP
 * (fallocate PUNCH_HOLE), GET LBA STATUS (SEEK_DATA/SEEK_HOLE), PRE-FETCH and
 * COMPARE AND WRITE.
 *
 * Atomicity: ordinary I/O holds the LUN's io_lock shared; COMPARE AND WRITE,
 * ORWRITE and WRITE ATOMIC hold it exclusive, so the read-compare-write of an
 * ATS cannot interleave with any other command on any session or portal.
 * Large reads of a tmpfs LUN are not copied here (cmd->zc): conn.c splices
 * the file's pages into the socket under io_lock, and the atomic writes
 * replace whole pages (lun_pwrite_atomic) instead of writing into pages a read
 * may still be sending, so such a read sees all or none of an ATS too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "target.h"

#define SBC_MAX_WS_BLOCKS 16384 /* VPD B0 MAXIMUM WRITE SAME LENGTH */
#define SBC_MAX_CAW_BLOCKS 255
#define SBC_MAX_UNMAP_DESC 256
#define SBC_ZC_MIN (64u << 10) /* smaller reads are copied: a splice costs more */

struct sbc_rw {
	uint64_t lba;
	uint32_t nblocks;
	uint8_t prot; /* RD/WR/VRPROTECT */
	bool fua;
};

static void
sbc_decode_rw(const uint8_t *cdb, struct sbc_rw *rw)
{
	memset(rw, 0, sizeof(*rw));
	switch (cdb[0]) {
	case 0x08:
	case 0x0a:
		rw->lba = ((uint32_t)(cdb[1] & 0x1f) << 16) | get_be16(cdb + 2);
		rw->nblocks = cdb[4] ? cdb[4] : 256;
		return;
	case 0x28:
	case 0x2a:
	case 0x2e:
	case 0x2f:
	case 0x34:
	case 0x35:
	case 0x41:
		rw->lba = get_be32(cdb + 2);
		rw->nblocks = get_be16(cdb + 7);
		break;
	case 0xa8:
	case 0xaa:
	case 0xae:
	case 0xaf:
		rw->lba = get_be32(cdb + 2);
		rw->nblocks = get_be32(cdb + 6);
		break;
	case 0x9c:
		rw->lba = get_be64(cdb + 2);
		rw->nblocks = get_be16(cdb + 12);
		break;
	default: /* 16-byte CDBs */
		rw->lba = get_be64(cdb + 2);
		rw->nblocks = get_be32(cdb + 10);
		break;
	}
	rw->prot = cdb[1] >> 5;
	rw->fua = (cdb[1] & 0x08) != 0;
}

static bool
sbc_range_ok(const struct tgt_lun *lu, uint64_t lba, uint64_t n)
{
	return lba <= lu->nblocks && n <= lu->nblocks - lba;
}

/* Common CDB checks; returns 0 to go on, else a status already set. */
static int
sbc_check_rw(struct scsi_cmd *cmd, const struct sbc_rw *rw, uint32_t max_blocks)
{
	if (rw->prot) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (!sbc_range_ok(cmd->lu, rw->lba, rw->nblocks)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	}
	if (rw->nblocks > max_blocks) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	return 0;
}

int
sbc_read(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	struct sbc_rw rw;
	int st, r;

	sbc_decode_rw(cmd->cdb, &rw);
	if (cmd->cdb[0] == 0x08) {
		rw.prot = 0;
	}
	st = sbc_check_rw(cmd, &rw, SCSI_MAX_XFER / lu->block_size);
	if (st) {
		return st;
	}
	if (rw.nblocks == 0) {
		return SAM_STAT_GOOD;
	}
	size_t len = (size_t)rw.nblocks * lu->block_size;
	/* Only what the initiator will take travels; the residual tells the rest. */
	size_t want = len;
	if (cmd->edtl < want) {
		want = cmd->edtl;
	}
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t pg_off = rw.lba * lu->block_size % pg;
	struct stat fst;
	if (cmd->zc_ok && want >= SBC_ZC_MIN && fstat(lu->fd, &fst) == 0 && S_ISREG(fst.st_mode) &&
	    (uint64_t)fst.st_size < rw.lba * lu->block_size + want) {
		/* by reference, GOOD goes out before the data is read: a file that
		 * shrank is caught here (one fstat per read of 64 KiB or more) */
		tgt_lun_mark_shrunk(lu);
		return scsi_sense_errno(cmd, -ENXIO);
	}
	if (cmd->zc_ok && want >= SBC_ZC_MIN && lun_map_resident(lu, rw.lba * lu->block_size, want)) {
		/* every page in memory: the transport sends it from the file's mapping
		 * (sendmsg copies it into the socket under io_lock) */
		cmd->mapped = true;
		cmd->zc_off = rw.lba * lu->block_size;
		cmd->in_len = (uint32_t)len;
		return SAM_STAT_GOOD;
	}
	/* holes (or no mapping): by reference, a splice that fills no hole */
	if (cmd->zc_ok && lu->zerocopy && want >= SBC_ZC_MIN &&
	    (pg_off + want + pg - 1) / pg * pg <= cmd->zc_max) {
		/* the pages it spans fit in the pipe: one splice, under io_lock once */
		/* by reference: the transport splices the pages under io_lock when it sends */
		cmd->zc = true;
		cmd->zc_off = rw.lba * lu->block_size;
		cmd->in_len = (uint32_t)len;
		return SAM_STAT_GOOD;
	}
	/* not zeroed: the first `want` bytes are read, the rest is never sent */
	if (scsi_alloc_in_raw(cmd, (uint32_t)len) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	if (cmd->nowait) {
		/* on the event loop: only what the page cache has, never wait for a lock */
		if (pthread_rwlock_tryrdlock(&lu->io_lock) != 0) {
			cmd->would_block = true;
			return SAM_STAT_GOOD;
		}
		r = want ? lun_pread_nowait(lu, cmd->in, want, rw.lba * lu->block_size) : 0;
		pthread_rwlock_unlock(&lu->io_lock);
		if (r == -EAGAIN) {
			cmd->would_block = true;
			return SAM_STAT_GOOD;
		}
	} else {
		pthread_rwlock_rdlock(&lu->io_lock);
		r = want ? lun_pread(lu, cmd->in, want, rw.lba * lu->block_size) : 0;
		pthread_rwlock_unlock(&lu->io_lock);
	}
	if (r < 0) {
		return scsi_sense_errno(cmd, r);
	}
	return SAM_STAT_GOOD;
}

static int
sbc_data_short(struct scsi_cmd *cmd, size_t need)
{
	/* The data to compare did not all arrive: refuse (FCP-4 option b). */
	(void)need;
	return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
}

static int
sbc_orwrite(struct scsi_cmd *cmd, const uint8_t *data, size_t len, uint64_t off)
{
	uint8_t *cur = malloc(len);
	int r;

	if (!cur) {
		return -ENOMEM;
	}
	r = lun_pread(cmd->lu, cur, len, off);
	if (r == 0) {
		for (size_t i = 0; i < len; i++) {
			cur[i] |= data[i];
		}
		r = lun_pwrite_atomic(cmd->lu, cur, len, off);
	}
	free(cur);
	return r;
}

int
sbc_write(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	struct sbc_rw rw;
	uint8_t op = cmd->cdb[0];
	bool excl = op == 0x8b || op == 0x9c;
	int st, r;

	sbc_decode_rw(cmd->cdb, &rw);
	if (op == 0x0a) {
		rw.prot = 0;
	}
	uint32_t max = SCSI_MAX_XFER / lu->block_size;
	if (op == 0x9c) {
		max = 2048; /* VPD B0 maximum atomic transfer length */
	}
	if (op == 0x9c && !rw.prot && rw.nblocks && (rw.lba % 8 || rw.nblocks % 8)) {
		/* atomic alignment / granularity in VPD B0: 8 blocks */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	st = sbc_check_rw(cmd, &rw, max);
	if (st) {
		return st;
	}
	if (rw.nblocks == 0) {
		cmd->has_spdtl = true;
		cmd->spdtl = 0;
		return SAM_STAT_GOOD;
	}
	size_t len = (size_t)rw.nblocks * lu->block_size;
	cmd->has_spdtl = true;
	cmd->spdtl = (uint32_t)len;
	if (cmd->out_len < len) {
		/* EDTL < SPDTL: FCP-4 (a), process the command but transfer no more
		 * than EDTL; only whole blocks reach the medium. */
		len = cmd->out_len / lu->block_size * lu->block_size;
		if (len == 0) {
			return SAM_STAT_GOOD;
		}
	}
	uint64_t off = rw.lba * lu->block_size;
	if (cmd->nowait) {
		/* on the event loop: only a memory-backed file, only if the lock is free */
		int lr = !lu->mem_backed ? -1
		       : excl		  ? pthread_rwlock_trywrlock(&lu->io_lock)
					  : pthread_rwlock_tryrdlock(&lu->io_lock);
		if (lr != 0) {
			cmd->would_block = true;
			return SAM_STAT_GOOD;
		}
	} else if (excl) {
		pthread_rwlock_wrlock(&lu->io_lock);
	} else {
		pthread_rwlock_rdlock(&lu->io_lock);
	}
	if (op == 0x8b) {
		r = sbc_orwrite(cmd, cmd->out, len, off);
	} else if (excl) {
		r = lun_pwrite_atomic(lu, cmd->out, len, off);
	} else {
		r = lun_pwrite(lu, cmd->out, len, off);
	}
	pthread_rwlock_unlock(&lu->io_lock);
	if (r == 0 && (rw.fua || op == 0x2e || op == 0xae || op == 0x8e || !lu->wce)) {
		r = lun_flush(lu);
	}
	if (r < 0) {
		return r == -EIO ? scsi_sense(cmd, SK_MEDIUM_ERROR, ASC_WRITE_ERROR)
				 : scsi_sense_errno(cmd, r);
	}
	return SAM_STAT_GOOD;
}

int
sbc_verify(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	struct sbc_rw rw;
	int st, r;

	sbc_decode_rw(cmd->cdb, &rw);
	uint8_t bytchk = (cmd->cdb[1] >> 1) & 3;
	st = sbc_check_rw(cmd, &rw, SCSI_MAX_XFER / lu->block_size);
	if (st) {
		return st;
	}
	if (bytchk == 2) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (rw.nblocks == 0) {
		return SAM_STAT_GOOD;
	}
	size_t len = (size_t)rw.nblocks * lu->block_size;
	size_t cmp_len = bytchk == 3 ? lu->block_size : len;
	cmd->has_spdtl = true;
	cmd->spdtl = bytchk ? (uint32_t)cmp_len : 0;
	if (bytchk && cmd->out_len < cmp_len) {
		return sbc_data_short(cmd, cmp_len);
	}
	uint8_t *buf = malloc(len);
	if (!buf) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	pthread_rwlock_rdlock(&lu->io_lock);
	r = lun_pread(lu, buf, len, rw.lba * lu->block_size);
	pthread_rwlock_unlock(&lu->io_lock);
	if (r < 0) {
		free(buf);
		return scsi_sense_errno(cmd, r);
	}
	st = SAM_STAT_GOOD;
	if (bytchk) {
		for (size_t i = 0; i < len; i++) {
			uint8_t want = bytchk == 3 ? cmd->out[i % lu->block_size] : cmd->out[i];
			if (buf[i] != want) {
				st = scsi_sense_info(cmd, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, i);
				break;
			}
		}
	}
	free(buf);
	return st;
}

int
sbc_prefetch(struct scsi_cmd *cmd)
{
	struct sbc_rw rw;

	sbc_decode_rw(cmd->cdb, &rw);
	rw.prot = 0;
	int st = sbc_check_rw(cmd, &rw, UINT32_MAX);
	if (st) {
		return st;
	}
	return SAM_STAT_CONDITION_MET;
}

/*
 * READ CAPACITY rereads the size of the file (or device): a LUN file grown
 * (or shrunk) by its owner is seen when the initiator rescans; the other
 * sessions get CAPACITY DATA HAS CHANGED.
 */
static void
sbc_capacity_refresh(struct scsi_cmd *cmd)
{
	if (tgt_lun_update_size(cmd->lu)) {
		tgt_lun_mark_resized(cmd->lu);
		cmd->capacity_seen = true;
	}
}

int
sbc_read_capacity10(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	sbc_capacity_refresh(cmd);
	uint64_t last = lu->nblocks ? lu->nblocks - 1 : 0;

	if (!(cmd->cdb[8] & 1) && get_be32(cmd->cdb + 2)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (scsi_alloc_in(cmd, 8) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be32(cmd->in, last > 0xfffffffeu ? 0xffffffffu : (uint32_t)last);
	put_be32(cmd->in + 4, lu->block_size);
	return SAM_STAT_GOOD;
}

static int
sbc_read_capacity16(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint32_t alloc = get_be32(cmd->cdb + 10);

	sbc_capacity_refresh(cmd);
	if (scsi_alloc_in(cmd, 32) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be64(cmd->in, lu->nblocks ? lu->nblocks - 1 : 0);
	put_be32(cmd->in + 8, lu->block_size);
	cmd->in[13] = lu->pb_exp & 0x0f;
	if (lu->can_unmap) {
		cmd->in[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
	}
	if (alloc < cmd->in_len) {
		cmd->in_len = alloc;
	}
	return SAM_STAT_GOOD;
}

static int
sbc_get_lba_status(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint64_t lba = get_be64(cmd->cdb + 2);
	uint32_t alloc = get_be32(cmd->cdb + 10);
	uint32_t bs = lu->block_size;
	int r;

	if (lba >= lu->nblocks) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	}
	uint32_t maxdesc = alloc > 8 ? (alloc - 8) / 16 : 0;
	if (maxdesc > 64) {
		maxdesc = 64;
	}
	if (maxdesc == 0) {
		maxdesc = 1; /* compute one, return the header (truncated below) */
	}
	if (scsi_alloc_in(cmd, 8 + 16 * maxdesc) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	uint32_t n = 0;
	uint64_t cur = lba;
	while (n < maxdesc && cur < lu->nblocks) {
		bool mapped;
		uint64_t run;
		r = lun_block_status(lu, cur * bs, &mapped, &run);
		if (r < 0) {
			return scsi_sense_errno(cmd, r);
		}
		uint64_t end = (cur * bs + run + bs - 1) / bs;
		if (!mapped) {
			/* A hole only counts for the blocks it covers entirely. */
			end = (cur * bs + run) / bs;
			if (end <= cur) {
				mapped = true;
				end = cur + 1;
			}
		}
		if (end > lu->nblocks) {
			end = lu->nblocks;
		}
		uint64_t cnt = end - cur;
		if (cnt > 0xffffffffu) {
			cnt = 0xffffffffu;
		}
		/* merge with the previous descriptor of the same kind */
		if (n > 0 && cmd->in[8 + 16 * (n - 1) + 12] == (mapped ? 0 : 1) &&
		    (uint64_t)get_be32(cmd->in + 8 + 16 * (n - 1) + 8) + cnt <= 0xffffffffu) {
			uint8_t *d = cmd->in + 8 + 16 * (n - 1);
			put_be32(d + 8, get_be32(d + 8) + (uint32_t)cnt);
		} else {
			uint8_t *d = cmd->in + 8 + 16 * n;
			put_be64(d, cur);
			put_be32(d + 8, (uint32_t)cnt);
			d[12] = mapped ? 0 : 1;
			n++;
		}
		cur += cnt;
	}
	put_be32(cmd->in, 4 + 16 * n);
	cmd->in_len = 8 + 16 * n;
	if (alloc < cmd->in_len) {
		cmd->in_len = alloc;
	}
	return SAM_STAT_GOOD;
}

int
sbc_read_defect_data(struct scsi_cmd *cmd)
{
	bool twelve = cmd->cdb[0] == 0xb7;
	uint32_t alloc = twelve ? get_be32(cmd->cdb + 6) : get_be16(cmd->cdb + 7);
	uint8_t fmt = twelve ? cmd->cdb[1] : cmd->cdb[2];

	/* a file has no defects: an empty list in the format asked for */
	if (scsi_alloc_in(cmd, twelve ? 8 : 4) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	cmd->in[1] = fmt & 0x1f;
	if (cmd->in_len > alloc) {
		cmd->in_len = alloc;
	}
	return SAM_STAT_GOOD;
}

/*
 * SANITIZE (SBC-4 §5.30): BLOCK ERASE deallocates every block (the file is
 * punched whole; reads return zeros, WABEREQ=01b in VPD B1) and EXIT FAILURE
 * MODE is accepted. OVERWRITE and CRYPTO ERASE are not offered: REPORT
 * SUPPORTED OPERATION CODES does not list them. The command completes before
 * the status is returned, IMMED or not.
 */
int
sbc_sanitize(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint8_t sa = cmd->cdb[1] & 0x1f;
	uint32_t plen = get_be16(cmd->cdb + 7);
	int r;

	if (cmd->cdb[1] & 0x40) {
		return scsi_sense_field(cmd, 1);
	}
	for (int i = 2; i <= 6; i++) {
		if (cmd->cdb[i]) {
			return scsi_sense_field(cmd, (uint16_t)i);
		}
	}
	if (plen) {
		return scsi_sense_field(cmd, 7);
	}
	if (sa == 0x1f) {
		return SAM_STAT_GOOD;
	}
	if (sa != 0x02 || !lu->can_unmap) {
		return scsi_sense_field(cmd, 1);
	}
	pthread_rwlock_wrlock(&lu->io_lock);
	r = lun_punch(lu, 0, lu->nblocks * lu->block_size);
	pthread_rwlock_unlock(&lu->io_lock);
	if (r == 0) {
		r = lun_flush(lu);
	}
	return r < 0 ? scsi_sense_errno(cmd, r) : SAM_STAT_GOOD;
}

int
sbc_service_action_in16(struct scsi_cmd *cmd)
{
	switch (cmd->cdb[1] & 0x1f) {
	case 0x10:
		return sbc_read_capacity16(cmd);
	case 0x12:
		return sbc_get_lba_status(cmd);
	default:
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
}

int
sbc_sync_cache(struct scsi_cmd *cmd)
{
	struct sbc_rw rw;
	int r;

	sbc_decode_rw(cmd->cdb, &rw);
	rw.prot = 0;
	int st = sbc_check_rw(cmd, &rw, UINT32_MAX);
	if (st) {
		return st;
	}
	r = lun_flush(cmd->lu);
	if (r < 0) {
		return scsi_sense(cmd, SK_MEDIUM_ERROR, ASC_WRITE_ERROR);
	}
	return SAM_STAT_GOOD;
}

int
sbc_write_same(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	struct sbc_rw rw;
	uint8_t flags = cmd->cdb[1];
	bool unmap = flags & 0x08;
	bool ndob = cmd->cdb[0] == 0x93 && (flags & 0x01);
	uint32_t bs = lu->block_size;
	int r = 0;

	sbc_decode_rw(cmd->cdb, &rw);
	if (rw.prot || (flags & 0x06) || (flags & 0x10)) { /* protection, PBDATA/LBDATA, ANCHOR */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (!sbc_range_ok(lu, rw.lba, rw.nblocks)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	}
	if (rw.nblocks == 0) {
		/* WSNZ is clear in VPD B0: zero blocks means up to the last LBA */
		if (rw.lba >= lu->nblocks || lu->nblocks - rw.lba > SBC_MAX_WS_BLOCKS) {
			return scsi_sense(
				cmd, rw.lba > lu->nblocks ? SK_ILLEGAL_REQUEST : SK_ILLEGAL_REQUEST,
				rw.lba > lu->nblocks ? ASC_LBA_OUT_OF_RANGE
						     : ASC_INVALID_FIELD_IN_CDB);
		}
		rw.nblocks = (uint32_t)(lu->nblocks - rw.lba);
	}
	if (rw.nblocks > SBC_MAX_WS_BLOCKS) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if ((!ndob && cmd->out_len != bs) || (ndob && cmd->out_len)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (unmap && !lu->can_unmap) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	uint64_t off = rw.lba * bs;
	uint64_t total = (uint64_t)rw.nblocks * bs;

	pthread_rwlock_rdlock(&lu->io_lock);
	if (unmap) {
		/* UNMAP wins over the pattern (as LIO and tgt do, and libiscsi expects):
		 * the blocks are deallocated and read back as zeros (LBPRZ). */
		r = lun_punch(lu, off, total);
	} else {
		size_t chunk = total < (1u << 20) ? (size_t)total : (1u << 20);
		uint8_t *buf = malloc(chunk);
		if (!buf) {
			r = -ENOMEM;
		} else {
			for (size_t i = 0; i < chunk; i += bs) {
				if (ndob) {
					memset(buf + i, 0, bs);
				} else {
					memcpy(buf + i, cmd->out, bs);
				}
			}
			for (uint64_t done = 0; done < total && r == 0;) {
				size_t n = total - done < chunk ? (size_t)(total - done) : chunk;
				r = lun_pwrite(lu, buf, n, off + done);
				done += n;
			}
			free(buf);
		}
	}
	pthread_rwlock_unlock(&lu->io_lock);
	if (r < 0) {
		return scsi_sense_errno(cmd, r);
	}
	return SAM_STAT_GOOD;
}

int
sbc_unmap(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint32_t plen = get_be16(cmd->cdb + 7);
	int r = 0;

	if (cmd->cdb[1] & 0x01) { /* ANCHOR */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (!lu->can_unmap) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	}
	if (plen == 0) {
		return SAM_STAT_GOOD;
	}
	if (plen < 8 || cmd->out_len < plen) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	uint32_t dlen = get_be16(cmd->out + 2);
	if (dlen > plen - 8) {
		dlen = (plen - 8) & ~15u;
	}
	uint32_t ndesc = dlen / 16;
	if (ndesc > SBC_MAX_UNMAP_DESC) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	}
	/* Validate every descriptor first: an error must not leave a partial unmap. */
	for (uint32_t i = 0; i < ndesc; i++) {
		const uint8_t *d = cmd->out + 8 + 16 * i;
		if (!sbc_range_ok(lu, get_be64(d), get_be32(d + 8))) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		}
	}
	pthread_rwlock_rdlock(&lu->io_lock);
	for (uint32_t i = 0; i < ndesc && r == 0; i++) {
		const uint8_t *d = cmd->out + 8 + 16 * i;
		uint64_t n = get_be32(d + 8);
		if (n) {
			r = lun_punch(lu, get_be64(d) * lu->block_size, n * lu->block_size);
		}
	}
	pthread_rwlock_unlock(&lu->io_lock);
	if (r < 0) {
		return scsi_sense_errno(cmd, r);
	}
	return SAM_STAT_GOOD;
}

int
sbc_compare_and_write(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint64_t lba = get_be64(cmd->cdb + 2);
	uint32_t n = cmd->cdb[13];
	uint32_t bs = lu->block_size;
	int st = SAM_STAT_GOOD, r;

	if (cmd->cdb[1] >> 5) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (!sbc_range_ok(lu, lba, n)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	}
	if (n == 0) {
		/* nothing to compare; data with it means the CDB and the transfer disagree */
		return cmd->out_len ? scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB)
				    : SAM_STAT_GOOD;
	}
	if (n > SBC_MAX_CAW_BLOCKS) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	size_t len = (size_t)n * bs;
	if (cmd->out_len != 2 * len) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	uint8_t *cur = malloc(len);
	if (!cur) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	pthread_rwlock_wrlock(&lu->io_lock);
	r = lun_pread(lu, cur, len, lba * bs);
	if (r == 0) {
		for (size_t i = 0; i < len; i++) {
			if (cur[i] != cmd->out[i]) {
				st = scsi_sense_info(cmd, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, i);
				break;
			}
		}
		if (st == SAM_STAT_GOOD) {
			r = lun_pwrite_atomic(lu, cmd->out + len, len, lba * bs);
		}
	}
	pthread_rwlock_unlock(&lu->io_lock);
	free(cur);
	if (r == 0 && (cmd->cdb[1] & 0x08)) {
		r = lun_flush(lu);
	}
	if (r < 0) {
		return scsi_sense_errno(cmd, r);
	}
	return st;
}
