// SPDX-License-Identifier: MIT
/*
 * SPC-4 primary commands (after tgt's spc.c): INQUIRY with the VPD pages a
 * hypervisor reads (00, 80, 83, 86, B0, B1, B2), REPORT LUNS, TEST UNIT READY,
 * REQUEST SENSE, MODE SENSE/SELECT (caching, control, read-write error recovery),
 * REPORT TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES, RESERVE(6)/RELEASE(6),
 * START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL.
 *
 * Multipath identity: everything INQUIRY returns is derived from the LUN (its
 * NAA id and serial come from the backing file, see backing.c) and from the
 * target port group the command arrived through, never from the TCP portal,
 * so every portal of a target port group answers byte for byte the same.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

#define SPC_VENDOR "VDISKFS "
#define SPC_PRODUCT "vdisk-target    "
#define SPC_REVISION "0001"

static void
spc_trim(struct scsi_cmd *cmd, uint32_t alloc)
{
	if (cmd->in_len > alloc) {
		cmd->in_len = alloc;
	}
}

static int
spc_inquiry_std(struct scsi_cmd *cmd)
{
	uint8_t *d;

	if (scsi_alloc_in(cmd, 66) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	d = cmd->in;
	d[0] = cmd->lu ? 0x00 : 0x7f;
	d[2] = 0x06; /* SPC-4 */
	d[3] = 0x12; /* HiSup, response data format 2 */
	d[4] = 66 - 5;
	d[5] = 0x10 | 0x08; /* TPGS: implicit ALUA; 3PC: EXTENDED COPY */
	d[7] = 0x02;	    /* CmdQue */
	memcpy(d + 8, SPC_VENDOR, 8);
	memcpy(d + 16, SPC_PRODUCT, 16);
	memcpy(d + 32, SPC_REVISION, 4);
	put_be16(d + 58, 0x00c0); /* SAM-5 */
	put_be16(d + 60, 0x0960); /* iSCSI */
	put_be16(d + 62, 0x0460); /* SPC-4 */
	put_be16(d + 64, 0x04c0); /* SBC-3 */
	return SAM_STAT_GOOD;
}

static int
spc_vpd(struct scsi_cmd *cmd, uint8_t page)
{
	static const uint8_t pages[] = {0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2};
	struct tgt_lun *lu = cmd->lu;
	uint8_t *d;
	uint32_t n = 0;

	if (scsi_alloc_in(cmd, 256) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	d = cmd->in;
	d[1] = page;
	switch (page) {
	case 0x00:
		memcpy(d + 4, pages, sizeof(pages));
		n = sizeof(pages);
		break;
	case 0x80:
		n = (uint32_t)strlen(lu->serial);
		memcpy(d + 4, lu->serial, n);
		break;
	case 0x83: {
		uint8_t *p = d + 4;
		/* NAA 6 logical unit designator */
		p[0] = 0x01;
		p[1] = 0x03;
		p[3] = 16;
		memcpy(p + 4, lu->naa, 16);
		p += 20;
		/* T10 vendor id + serial, ASCII */
		size_t sl = strlen(lu->serial);
		p[0] = 0x02;
		p[1] = 0x01;
		p[3] = (uint8_t)(8 + sl);
		memcpy(p + 4, SPC_VENDOR, 8);
		memcpy(p + 12, lu->serial, sl);
		p += 4 + 8 + sl;
		/* relative target port (iSCSI, PIV, target port association) */
		p[0] = 0x51;
		p[1] = 0x94;
		p[3] = 4;
		put_be16(p + 6, cmd->nexus.rtpi);
		p += 8;
		/* target port group */
		p[0] = 0x51;
		p[1] = 0x95;
		p[3] = 4;
		put_be16(p + 6, cmd->nexus.tpgt);
		p += 8;
		n = (uint32_t)(p - (d + 4));
		break;
	}
	case 0x86:
		n = 0x3c;
		d[5] = 0x07; /* HEADSUP, ORDSUP, SIMPSUP */
		d[6] = 0x01; /* V_SUP */
		break;
	case 0xb0: {
		uint32_t bs = lu->block_size;
		n = 0x3c;
		d[5] = 255; /* maximum COMPARE AND WRITE length */
		put_be16(d + 6, 1u << lu->pb_exp);
		put_be32(d + 8, SCSI_MAX_XFER / bs);
		put_be32(d + 12, (1u << 20) / bs);
		put_be32(d + 16, SCSI_MAX_XFER / bs);
		if (lu->can_unmap) {
			put_be32(d + 20, 0xffffffffu);
			put_be32(d + 24, 256);
			put_be32(d + 28, 1u << lu->pb_exp);
			put_be32(d + 32, 0x80000000u);
		}
		put_be64(d + 36, 16384);
		put_be32(d + 44, 2048); /* maximum atomic transfer length */
		put_be32(d + 48, 8);	/* atomic alignment */
		put_be32(d + 52, 8);	/* atomic transfer length granularity */
		break;
	}
	case 0xb1:
		n = 0x3c;
		put_be16(d + 4, 1); /* non-rotating medium */
		if (lu->can_unmap) {
			d[7] = 0x40; /* WABEREQ 01b: reads after BLOCK ERASE succeed (zeros) */
		}
		break;
	case 0xb2:
		n = 4;
		if (lu->can_unmap) {
			d[5] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU, LBPWS, LBPWS10, LBPRZ */
			d[6] = 0x02;			  /* thin provisioned */
		}
		break;
	default:
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	put_be16(d + 2, (uint16_t)n);
	cmd->in_len = 4 + n;
	return SAM_STAT_GOOD;
}

int
spc_inquiry(struct scsi_cmd *cmd)
{
	uint8_t evpd = cmd->cdb[1] & 0x01;
	uint8_t page = cmd->cdb[2];
	uint32_t alloc = get_be16(cmd->cdb + 3);
	int st;

	if (cmd->cdb[1] & 0xfe) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (!evpd && page) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (evpd && !cmd->lu) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
	}
	st = evpd ? spc_vpd(cmd, page) : spc_inquiry_std(cmd);
	if (st == SAM_STAT_GOOD) {
		spc_trim(cmd, alloc);
	}
	return st;
}

int
spc_report_luns(struct scsi_cmd *cmd)
{
	uint32_t alloc = get_be32(cmd->cdb + 6);
	uint8_t sel = cmd->cdb[2];

	if (sel > 2 && sel != 0x10 && sel != 0x11 && sel != 0x12) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (alloc < 16) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	int n = sel == 0x01 || sel == 0x11 ? 0 : cmd->nluns;
	if (scsi_alloc_in(cmd, 8 + 8 * (n ? n : 0)) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be32(cmd->in, 8 * n);
	for (int i = 0; i < n; i++) {
		iscsi_lun_encode(cmd->in + 8 + 8 * i, cmd->luns[i]);
	}
	spc_trim(cmd, alloc);
	return SAM_STAT_GOOD;
}

int
spc_test_unit_ready(struct scsi_cmd *cmd)
{
	(void)cmd;
	return SAM_STAT_GOOD;
}

int
spc_request_sense(struct scsi_cmd *cmd)
{
	uint32_t alloc = cmd->cdb[4];
	bool desc = cmd->cdb[1] & 0x01;

	if (scsi_alloc_in(cmd, desc ? 8 : 18) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	uint16_t asc = cmd->lu ? ASC_NONE : ASC_LUN_NOT_SUPPORTED;
	uint8_t key = cmd->lu ? SK_NO_SENSE : SK_ILLEGAL_REQUEST;
	if (desc) {
		cmd->in[0] = 0x72;
		cmd->in[1] = key;
		cmd->in[2] = asc >> 8;
		cmd->in[3] = asc & 0xff;
	} else {
		cmd->in[0] = 0x70;
		cmd->in[2] = key;
		cmd->in[7] = 10;
		cmd->in[12] = asc >> 8;
		cmd->in[13] = asc & 0xff;
	}
	spc_trim(cmd, alloc);
	return SAM_STAT_GOOD;
}

/* Append mode page `page` (pc: 0 current, 1 changeable, 2 default) at p; its length. */
static uint32_t
spc_mode_page(struct tgt_lun *lu, uint8_t page, uint8_t pc, uint8_t *p)
{
	switch (page) {
	case 0x01: /* read-write error recovery */
		p[0] = 0x01;
		p[1] = 0x0a;
		if (pc != 1) {
			p[2] = 0x80; /* AWRE */
		}
		return 12;
	case 0x08: /* caching */
		p[0] = 0x08;
		p[1] = 0x12;
		if (pc == 1) {
			p[2] = 0x04;
		} else if (pc == 2) {
			p[2] = 0x04;
		} else {
			p[2] = lu->wce ? 0x04 : 0;
		}
		return 20;
	case 0x0a: /* control */
		p[0] = 0x0a;
		p[1] = 0x0a;
		if (pc == 1) {
			p[4] = 0x08; /* SWP is changeable */
		} else {
			p[3] = 0x10; /* unrestricted reordering */
			p[4] = pc == 0 && (lu->ro || lu->swp) ? 0x08 : 0; /* SWP */
			put_be16(p + 8, 0xffff); /* busy timeout period: unlimited */
		}
		return 12;
	default:
		return 0;
	}
}

int
spc_mode_sense(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	bool ten = cmd->cdb[0] == 0x5a;
	bool dbd = cmd->cdb[1] & 0x08;
	bool llba = ten && (cmd->cdb[1] & 0x10);
	uint8_t pc = cmd->cdb[2] >> 6;
	uint8_t page = cmd->cdb[2] & 0x3f;
	uint8_t sub = cmd->cdb[3];
	uint32_t alloc = ten ? get_be16(cmd->cdb + 7) : cmd->cdb[4];
	uint32_t hl = ten ? 8 : 4, bdl = dbd ? 0 : (llba ? 16 : 8);
	uint8_t *d;

	if (pc == 3) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_SAVING_PARAMS_UNSUP);
	}
	if (sub != 0 && !(page == 0x3f && sub == 0xff)) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (page != 0x3f && page != 0x01 && page != 0x08 && page != 0x0a) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (scsi_alloc_in(cmd, 512) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	d = cmd->in;
	uint8_t *p = d + hl;
	if (bdl == 8) {
		put_be32(p, lu->nblocks > 0xffffffffu ? 0xffffffffu : (uint32_t)lu->nblocks);
		put_be32(p + 4, lu->block_size);
	} else if (bdl == 16) {
		put_be64(p, lu->nblocks);
		put_be32(p + 12, lu->block_size);
	}
	p += bdl;
	pthread_mutex_lock(&lu->lock);
	if (page == 0x3f) {
		p += spc_mode_page(lu, 0x01, pc, p);
		p += spc_mode_page(lu, 0x08, pc, p);
		p += spc_mode_page(lu, 0x0a, pc, p);
	} else {
		p += spc_mode_page(lu, page, pc, p);
	}
	pthread_mutex_unlock(&lu->lock);
	uint32_t total = (uint32_t)(p - d);
	uint8_t dsp = (lu->ro || lu->swp ? 0x80 : 0) | 0x10; /* WP, DPOFUA */
	if (ten) {
		put_be16(d, (uint16_t)(total - 2));
		d[3] = dsp;
		d[4] = llba ? 1 : 0;
		put_be16(d + 6, (uint16_t)bdl);
	} else {
		d[0] = (uint8_t)(total - 1);
		d[2] = dsp;
		d[3] = (uint8_t)bdl;
	}
	cmd->in_len = total;
	spc_trim(cmd, alloc);
	return SAM_STAT_GOOD;
}

int
spc_mode_select(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	bool ten = cmd->cdb[0] == 0x55;
	uint32_t plen = ten ? get_be16(cmd->cdb + 7) : cmd->cdb[4];
	uint32_t hl = ten ? 8 : 4;

	if (cmd->cdb[1] & 0x01) { /* SP: we cannot save pages */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (plen == 0) {
		return SAM_STAT_GOOD;
	}
	if (plen < hl || cmd->out_len < plen) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	const uint8_t *d = cmd->out;
	uint32_t bdl = ten ? get_be16(d + 6) : d[3];
	uint32_t off = hl + bdl;
	if (off > plen) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	int wce = -1, swp = -1;
	while (off + 2 <= plen) {
		uint8_t pg = d[off] & 0x3f;
		uint32_t len = d[off + 1];
		if (d[off] & 0x40 || off + 2 + len > plen) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
		}
		if (pg == 0x08 && len >= 1) {
			wce = (d[off + 2] & 0x04) ? 1 : 0;
		} else if (pg == 0x0a && len >= 3) {
			swp = (d[off + 4] & 0x08) ? 1 : 0;
		} else if (pg != 0x01 && pg != 0x0a) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
		}
		off += 2 + len;
	}
	if (wce >= 0) {
		pthread_mutex_lock(&lu->lock);
		lu->wce = (uint8_t)wce;
		pthread_mutex_unlock(&lu->lock);
	}
	if (swp >= 0) {
		lu->swp = (uint8_t)swp; /* a read-only LUN stays read-only either way */
	}
	return SAM_STAT_GOOD;
}

int
spc_report_tpgs(struct scsi_cmd *cmd)
{
	uint32_t alloc = get_be32(cmd->cdb + 6);
	uint8_t fmt = cmd->cdb[1] >> 5;
	uint32_t hl = fmt == 1 ? 8 : 4;

	if (fmt > 1) {
		return scsi_sense_field(cmd, 1);
	}
	if (scsi_alloc_in(cmd, hl + 12 * (uint32_t)cmd->ntpgs) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	uint8_t *p = cmd->in + hl;
	for (int i = 0; i < cmd->ntpgs; i++) {
		p[0] = 0x80 | (cmd->tpgs[i].alua_state & 0x0f); /* PREF */
		p[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;	/* T, U, S, AN, AO supported */
		put_be16(p + 2, cmd->tpgs[i].tag);
		p[7] = 1;
		put_be16(p + 10, (uint16_t)(i + 1));
		p += 12;
	}
	put_be32(cmd->in, (uint32_t)(p - cmd->in) - 4);
	if (fmt == 1) {
		cmd->in[4] = 0x10;
		cmd->in[5] = 0;
	}
	spc_trim(cmd, alloc);
	return SAM_STAT_GOOD;
}

static bool
spc_op_has_sa(uint8_t op)
{
	return op == 0x9e || op == 0xa3 || op == 0x48;
}

int
spc_report_opcodes(struct scsi_cmd *cmd)
{
	uint8_t opts = cmd->cdb[2] & 0x07;
	bool rctd = cmd->cdb[2] & 0x80;
	uint8_t req_op = cmd->cdb[3];
	uint16_t req_sa = get_be16(cmd->cdb + 4);
	uint32_t alloc = get_be32(cmd->cdb + 6);
	const struct scsi_op *o;
	uint8_t op;

	if (opts == 0) {
		if (scsi_alloc_in(cmd, 4 + 64 * 20) < 0) {
			return scsi_sense_errno(cmd, -ENOMEM);
		}
		uint8_t *p = cmd->in + 4;
		for (int i = 0; (o = scsi_op_at(i, &op)); i++) {
			p[0] = op;
			if (spc_op_has_sa(op)) {
				put_be16(p + 2, o->sa);
				p[5] = 0x01;
			}
			put_be16(p + 6, o->cdb_len);
			if (rctd) {
				p[5] |= 0x02;
				put_be16(p + 8, 0x0a);
				p += 20;
			} else {
				p += 8;
			}
		}
		put_be32(cmd->in, (uint32_t)(p - cmd->in) - 4);
		cmd->in_len = (uint32_t)(p - cmd->in);
		spc_trim(cmd, alloc);
		return SAM_STAT_GOOD;
	}
	if (opts > 3) {
		return scsi_sense_field(cmd, 2);
	}
	bool has_sa = spc_op_has_sa(req_op);
	if ((opts == 1 && has_sa) || (opts == 2 && !has_sa)) {
		return scsi_sense_field(cmd, 2);
	}
	o = scsi_op_find(req_op, has_sa ? (uint8_t)req_sa : 0);
	if (o && has_sa && o->sa != req_sa) {
		o = NULL;
	}
	if (scsi_alloc_in(cmd, 4 + 16 + 12) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	uint8_t *d = cmd->in;
	if (!o) {
		d[1] = 0x01; /* not supported */
		cmd->in_len = 4;
	} else {
		d[1] = 0x03 | (rctd ? 0x80 : 0);
		put_be16(d + 2, o->cdb_len);
		memcpy(d + 4, o->usage, o->cdb_len);
		d[4] = req_op;
		if (has_sa) {
			d[5] = (d[5] & 0xe0) | (req_sa & 0x1f);
			d[5] = req_sa & 0x1f;
		}
		cmd->in_len = 4 + o->cdb_len;
		if (rctd) {
			uint8_t *t = d + cmd->in_len;
			put_be16(t, 0x0a);
			cmd->in_len += 12;
		}
	}
	spc_trim(cmd, alloc);
	return SAM_STAT_GOOD;
}

int
spc_reserve6(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	int st = SAM_STAT_GOOD;

	if (cmd->cdb[1] & 0x01) { /* extents are obsolete */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	pthread_mutex_lock(&lu->lock);
	if (lu->pr.reserved || lu->pr.nregs) {
		st = SAM_STAT_RESERVATION_CONFLICT;
	} else if (lu->res6 &&
		   (strcmp(lu->res6_iport, cmd->nexus.iport) || lu->res6_rtpi != cmd->nexus.rtpi)) {
		st = SAM_STAT_RESERVATION_CONFLICT;
	} else {
		lu->res6 = true;
		snprintf(lu->res6_iport, sizeof(lu->res6_iport), "%s", cmd->nexus.iport);
		lu->res6_rtpi = cmd->nexus.rtpi;
	}
	pthread_mutex_unlock(&lu->lock);
	return st;
}

int
spc_release6(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;

	pthread_mutex_lock(&lu->lock);
	if (lu->res6 && !strcmp(lu->res6_iport, cmd->nexus.iport) &&
	    lu->res6_rtpi == cmd->nexus.rtpi) {
		lu->res6 = false;
	}
	pthread_mutex_unlock(&lu->lock);
	return SAM_STAT_GOOD;
}

int
spc_start_stop(struct scsi_cmd *cmd)
{
	/* A disk that is always spinning: accept START/STOP; LOEJ of a fixed medium fails. */
	uint8_t pc = cmd->cdb[4] >> 4;
	if ((cmd->cdb[4] & 0x02) && pc == 0) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	return SAM_STAT_GOOD;
}

int
spc_prevent_allow(struct scsi_cmd *cmd)
{
	/* Nothing removable: PREVENT is recorded by no one, ALLOW is a no-op. */
	if ((cmd->cdb[4] & 0x03) > 1) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	return SAM_STAT_GOOD;
}
