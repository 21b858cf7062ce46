// SPDX-License-Identifier: MIT
/*
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.20): the copy
 * manager that lets a hypervisor (VMware's XCOPY, Windows ODX-less clones) copy
 * blocks between LUNs without moving the data over the network.
 *
 * Supported: identification target descriptors (E4h) naming a LUN of this
 * daemon by its NAA designator, and block-to-block segment descriptors (02h).
 * The parameter list is validated completely (lengths, descriptor counts and
 * types, indexes, ranges) before a single block moves; a failure then is a
 * COPY ABORTED with the segment reached. Data moves in 1 MiB chunks under
 * both LUNs' shared I/O lock. The results of the last copies are kept per
 * LUN for RECEIVE COPY RESULTS (COPY STATUS by list identifier).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

#define XC_MAX_TGT_DESC 2
#define XC_MAX_SEG_DESC 8
#define XC_MAX_DESC_LIST 1024
#define XC_MAX_SEG_BYTES (32u << 20)
#define XC_CHUNK (1u << 20)

#define SK_COPY_ABORTED 0xa

static int
xcopy_abort(struct scsi_cmd *cmd, uint16_t asc)
{
	return scsi_sense(cmd, SK_COPY_ABORTED, asc);
}

static void
xcopy_record(struct tgt_lun *lu, const char *iport, uint8_t list_id, uint8_t status, uint16_t segs,
	     uint64_t bytes)
{
	pthread_mutex_lock(&lu->lock);
	int slot = -1;
	for (int i = 0; i < XC_RESULTS; i++) {
		if (lu->xres[i].valid && lu->xres[i].list_id == list_id &&
		    !strcmp(lu->xres[i].iport, iport)) {
			slot = i;
		}
	}
	if (slot < 0) {
		slot = lu->xres_next;
		lu->xres_next = (lu->xres_next + 1) % XC_RESULTS;
	}
	lu->xres[slot].valid = true;
	lu->xres[slot].list_id = list_id;
	lu->xres[slot].status = status;
	lu->xres[slot].segs = segs;
	lu->xres[slot].bytes = bytes > 0xffffffffu ? 0xffffffffu : (uint32_t)bytes;
	snprintf(lu->xres[slot].iport, sizeof(lu->xres[slot].iport), "%s", iport);
	pthread_mutex_unlock(&lu->lock);
}

/* Copy n blocks between two LUNs (possibly the same one). */
static int
xcopy_blocks(struct tgt_lun *src, uint64_t slba, struct tgt_lun *dst, uint64_t dlba, uint64_t n)
{
	uint64_t bytes = n * src->block_size;
	uint64_t soff = slba * src->block_size, doff = dlba * dst->block_size;
	uint8_t *buf = malloc(XC_CHUNK);
	int r = 0;

	if (!buf) {
		return -ENOMEM;
	}
	pthread_rwlock_rdlock(&src->io_lock);
	if (dst != src) {
		pthread_rwlock_rdlock(&dst->io_lock);
	}
	/* overlapping ranges on one LUN: copy backwards when the target is above */
	bool backwards = src == dst && doff > soff && doff < soff + bytes;
	for (uint64_t done = 0; done < bytes && r == 0;) {
		uint64_t len = bytes - done < XC_CHUNK ? bytes - done : XC_CHUNK;
		uint64_t at = backwards ? bytes - done - len : done;
		r = lun_pread(src, buf, (size_t)len, soff + at);
		if (r == 0) {
			r = lun_pwrite(dst, buf, (size_t)len, doff + at);
		}
		done += len;
	}
	if (dst != src) {
		pthread_rwlock_unlock(&dst->io_lock);
	}
	pthread_rwlock_unlock(&src->io_lock);
	free(buf);
	return r;
}

int
xcopy_extended_copy(struct scsi_cmd *cmd)
{
	uint32_t plen = get_be32(cmd->cdb + 10);
	const uint8_t *p = cmd->out;
	struct tgt_lun *luns[XC_MAX_TGT_DESC] = {NULL};
	int ntgt = 0, nseg = 0, st = SAM_STAT_GOOD;

	if ((cmd->cdb[1] & 0x1f) != 0) { /* only LID1 */
		return scsi_sense_field(cmd, 1);
	}
	if (plen == 0) {
		return SAM_STAT_GOOD;
	}
	if (plen < 16 || cmd->out_len < plen) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	uint8_t list_id = p[0];
	uint8_t usage = (p[1] >> 3) & 3;
	uint32_t tdl = get_be16(p + 2);
	uint32_t sdl = get_be32(p + 8);
	uint32_t inl = get_be32(p + 12);
	if ((uint64_t)16 + tdl + sdl + inl > plen) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	if ((uint64_t)tdl + sdl > XC_MAX_DESC_LIST) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	if (inl) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	}
	if (tdl % 32) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	}
	if (tdl / 32 > XC_MAX_TGT_DESC) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST,
				  0x2606); /* too many target descriptors */
	}
	/* count and check the segment descriptors */
	for (uint32_t off = 0; off < sdl;) {
		const uint8_t *s = p + 16 + tdl + off;
		if (sdl - off < 4) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		}
		uint32_t len = 4 + get_be16(s + 2);
		if (++nseg > XC_MAX_SEG_DESC) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, 0x2608); /* too many segments */
		}
		if (s[0] != 0x02) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST,
					  0x2609); /* unsupported segment */
		}
		if (len != 0x1c || sdl - off < len) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		}
		off += len;
	}
	/* resolve the target descriptors to LUNs of this daemon */
	for (uint32_t i = 0; i < tdl / 32; i++) {
		const uint8_t *t = p + 16 + 32 * i;
		if (t[0] != 0xe4) {
			st = scsi_sense(cmd, SK_ILLEGAL_REQUEST, 0x2607); /* unsupported target */
			goto out;
		}
		if ((t[1] & 0x1f) != 0) { /* peripheral device type: block only */
			st = xcopy_abort(cmd, ASC_COPY_TARGET_DEVICE_NOT_REACHABLE);
			goto out;
		}
		/* designator: code set binary, type NAA, 16 bytes */
		if ((t[5] & 0x0f) != 3 || t[7] != 16) {
			st = xcopy_abort(cmd, ASC_COPY_TARGET_DEVICE_NOT_REACHABLE);
			goto out;
		}
		luns[ntgt] = tgt_lun_find_naa(t + 8);
		if (!luns[ntgt] || get_be24(t + 29) != luns[ntgt]->block_size) {
			tgt_lun_put(luns[ntgt]);
			luns[ntgt] = NULL;
			st = xcopy_abort(cmd, ASC_COPY_TARGET_DEVICE_NOT_REACHABLE);
			goto out;
		}
		ntgt++;
	}
	/* validate every segment before moving anything */
	const uint8_t *seg = p + 16 + tdl;
	for (int i = 0; i < nseg; i++) {
		const uint8_t *s = seg + 0x1c * i;
		uint16_t si = get_be16(s + 4), di = get_be16(s + 6);
		uint64_t n = get_be16(s + 10);
		if (si >= ntgt || di >= ntgt) {
			st = xcopy_abort(cmd, ASC_COPY_TARGET_DEVICE_NOT_REACHABLE);
			goto out;
		}
		uint64_t sl = get_be64(s + 12), dl = get_be64(s + 20);
		struct tgt_lun *sl_lu = luns[si], *dl_lu = luns[di];
		if (sl > sl_lu->nblocks || n > sl_lu->nblocks - sl || dl > dl_lu->nblocks ||
		    n > dl_lu->nblocks - dl) {
			st = xcopy_abort(
				cmd, ASC_NONE); /* beyond a LUN: no more specific ASC is defined */
			goto out;
		}
		if (n * sl_lu->block_size > XC_MAX_SEG_BYTES || dl_lu->ro) {
			st = xcopy_abort(cmd, dl_lu->ro ? ASC_WRITE_PROTECTED : ASC_NONE);
			goto out;
		}
	}
	uint64_t moved = 0;
	int done_segs = 0;
	for (int i = 0; i < nseg; i++) {
		const uint8_t *s = seg + 0x1c * i;
		struct tgt_lun *src = luns[get_be16(s + 4)], *dst = luns[get_be16(s + 6)];
		uint64_t n = get_be16(s + 10);
		int r = xcopy_blocks(src, get_be64(s + 12), dst, get_be64(s + 20), n);
		if (r < 0) {
			st = scsi_sense_info(cmd, SK_COPY_ABORTED, ASC_NONE, (uint64_t)i);
			break;
		}
		moved += n * src->block_size;
		done_segs++;
	}
	if (usage != 3) { /* 11b: the initiator will not ask for the results */
		xcopy_record(cmd->lu, cmd->nexus.iport, list_id, st == SAM_STAT_GOOD ? 1 : 2,
			     (uint16_t)done_segs, moved);
	}
out:
	for (int i = 0; i < ntgt; i++) {
		tgt_lun_put(luns[i]);
	}
	return st;
}

int
xcopy_receive_results(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint8_t sa = cmd->cdb[1] & 0x1f;
	uint8_t list_id = cmd->cdb[2];
	uint32_t alloc = get_be32(cmd->cdb + 10);
	int st = SAM_STAT_GOOD;

	switch (sa) {
	case 0x00: { /* COPY STATUS */
		int found = -1;
		pthread_mutex_lock(&lu->lock);
		for (int i = 0; i < XC_RESULTS; i++) {
			if (lu->xres[i].valid && lu->xres[i].list_id == list_id &&
			    !strcmp(lu->xres[i].iport, cmd->nexus.iport)) {
				found = i;
			}
		}
		if (found < 0 || scsi_alloc_in(cmd, 12) < 0) {
			pthread_mutex_unlock(&lu->lock);
			return found < 0 ? scsi_sense_field(cmd, 2)
					 : scsi_sense_errno(cmd, -ENOMEM);
		}
		put_be32(cmd->in, 8);
		cmd->in[4] = lu->xres[found].status;
		put_be16(cmd->in + 5, lu->xres[found].segs);
		cmd->in[7] = 0; /* transfer count in bytes */
		put_be32(cmd->in + 8, lu->xres[found].bytes);
		pthread_mutex_unlock(&lu->lock);
		break;
	}
	case 0x03: { /* OPERATING PARAMETERS */
		if (scsi_alloc_in(cmd, 46) < 0) {
			return scsi_sense_errno(cmd, -ENOMEM);
		}
		uint8_t *d = cmd->in;
		put_be32(d, 46 - 4);
		d[4] = 0x01; /* SNLID: list identifiers are held per I_T nexus */
		put_be16(d + 8, XC_MAX_TGT_DESC);
		put_be16(d + 10, XC_MAX_SEG_DESC);
		put_be32(d + 12, XC_MAX_DESC_LIST);
		put_be32(d + 16, XC_MAX_SEG_BYTES);
		put_be16(d + 34, 1); /* total concurrent copies */
		d[36] = 1;
		d[37] = 9; /* data segment granularity: 2^9 */
		d[38] = 9;
		d[39] = 9;
		d[43] = 2;
		d[44] = 0x02; /* block -> block */
		d[45] = 0xe4; /* identification descriptor target */
		break;
	}
	default:
		return scsi_sense_field(cmd, 1);
	}
	if (cmd->in_len > alloc) {
		cmd->in_len = alloc;
	}
	return st;
}
