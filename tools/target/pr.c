// SPDX-License-Identifier: MIT
/*
 * Persistent reservations (SPC-4 §5.12): PERSISTENT RESERVE IN (READ KEYS,
 * READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS) and OUT (REGISTER,
 * RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND IGNORE
 * EXISTING KEY), all six reservation types, plus the access check every command
 * passes through (pr_check_access) and the RESERVE(6) conflict rule.
 *
 * The state lives in the LUN, under lu->lock, so it is one and the same for
 * every session on every portal. An I_T nexus is (initiator port name with its
 * ISID, relative target port id); a registration made with ALL_TG_PT matches
 * the initiator port through any target port. APTPL is not supported (the
 * state does not survive a restart) and REPORT CAPABILITIES says so.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "target.h"

#define PR_WE 1
#define PR_EA 3
#define PR_WE_RO 5
#define PR_EA_RO 6
#define PR_WE_AR 7
#define PR_EA_AR 8

static bool
pr_type_valid(uint8_t t)
{
	return t == PR_WE || t == PR_EA || t == PR_WE_RO || t == PR_EA_RO || t == PR_WE_AR ||
	       t == PR_EA_AR;
}

static bool
pr_type_all_reg(uint8_t t)
{
	return t == PR_WE_AR || t == PR_EA_AR;
}

static bool
pr_type_reg_only(uint8_t t)
{
	return t == PR_WE_RO || t == PR_EA_RO || pr_type_all_reg(t);
}

static bool
pr_reg_matches(const struct pr_reg *r, const struct scsi_nexus *nx)
{
	return !strcmp(r->iport, nx->iport) && (r->all_tg_pt || r->rtpi == nx->rtpi);
}

static int
pr_find(const struct pr_state *pr, const struct scsi_nexus *nx)
{
	for (int i = 0; i < pr->nregs; i++) {
		if (pr_reg_matches(&pr->regs[i], nx)) {
			return i;
		}
	}
	return -1;
}

static bool
pr_is_holder(const struct pr_state *pr, const struct scsi_nexus *nx)
{
	if (!pr->reserved) {
		return false;
	}
	if (pr_type_reg_only(pr->type)) {
		/* RO: only the reserving nexus is "the" holder for RELEASE/READ RESERVATION,
		 * but every registrant has access; AR: every registrant is a holder. */
		if (pr_type_all_reg(pr->type)) {
			return pr_find(pr, nx) >= 0;
		}
	}
	int i = pr_find(pr, nx);
	if (i < 0) {
		return false;
	}
	return !strcmp(pr->holder_iport, pr->regs[i].iport) &&
	       (pr->regs[i].all_tg_pt || pr->holder_rtpi == nx->rtpi);
}

static void
pr_remove(struct pr_state *pr, int i)
{
	bool holder = pr->reserved && !pr_type_all_reg(pr->type) &&
		      !strcmp(pr->holder_iport, pr->regs[i].iport) &&
		      (pr->regs[i].all_tg_pt || pr->holder_rtpi == pr->regs[i].rtpi);
	memmove(&pr->regs[i], &pr->regs[i + 1], sizeof(pr->regs[0]) * (size_t)(pr->nregs - i - 1));
	pr->nregs--;
	if (holder || (pr->reserved && pr_type_all_reg(pr->type) && pr->nregs == 0)) {
		pr->reserved = false;
	}
}

bool
pr_check_access(struct tgt_lun *lu, const struct scsi_nexus *nx, const struct scsi_op *op,
		const uint8_t *cdb)
{
	struct pr_state *pr = &lu->pr;

	(void)cdb;
	if (lu->res6 && !(op->flags & SCSI_OP_RES6_OK) &&
	    (strcmp(lu->res6_iport, nx->iport) || lu->res6_rtpi != nx->rtpi)) {
		return false;
	}
	if (!pr->reserved || (op->flags & SCSI_OP_RES6_OK)) {
		return true;
	}
	if (pr_is_holder(pr, nx)) {
		return true;
	}
	if (pr_type_reg_only(pr->type) && pr_find(pr, nx) >= 0) {
		return true;
	}
	bool we = pr->type == PR_WE || pr->type == PR_WE_RO || pr->type == PR_WE_AR;
	if (we && (op->flags & SCSI_OP_READ_LIKE)) {
		return true;
	}
	/* Non-media commands that are neither reads nor writes (RESERVE/RELEASE(6),
	 * MODE SELECT, START STOP...) conflict too. */
	return false;
}

void
pr_nexus_lost(struct tgt_lun *lu, const char *iport, uint16_t rtpi)
{
	pthread_mutex_lock(&lu->lock);
	if (lu->res6 && !strcmp(lu->res6_iport, iport) && lu->res6_rtpi == rtpi) {
		lu->res6 = false;
	}
	pthread_mutex_unlock(&lu->lock);
}

void
pr_lun_reset(struct tgt_lun *lu)
{
	pthread_mutex_lock(&lu->lock);
	lu->res6 = false;
	pthread_mutex_unlock(&lu->lock);
}

static int
pr_in_read_keys(struct scsi_cmd *cmd, struct pr_state *pr)
{
	if (scsi_alloc_in(cmd, 8 + 8 * (uint32_t)pr->nregs) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be32(cmd->in, pr->generation);
	put_be32(cmd->in + 4, 8 * (uint32_t)pr->nregs);
	for (int i = 0; i < pr->nregs; i++) {
		put_be64(cmd->in + 8 + 8 * i, pr->regs[i].key);
	}
	return SAM_STAT_GOOD;
}

static int
pr_in_read_reservation(struct scsi_cmd *cmd, struct pr_state *pr)
{
	if (scsi_alloc_in(cmd, 24) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be32(cmd->in, pr->generation);
	if (!pr->reserved) {
		cmd->in_len = 8;
		return SAM_STAT_GOOD;
	}
	put_be32(cmd->in + 4, 16);
	uint64_t key = 0;
	if (!pr_type_all_reg(pr->type)) {
		for (int i = 0; i < pr->nregs; i++) {
			if (!strcmp(pr->regs[i].iport, pr->holder_iport) &&
			    (pr->regs[i].all_tg_pt || pr->regs[i].rtpi == pr->holder_rtpi)) {
				key = pr->regs[i].key;
				break;
			}
		}
	}
	put_be64(cmd->in + 8, key);
	cmd->in[21] = (uint8_t)(pr->scope << 4 | pr->type);
	return SAM_STAT_GOOD;
}

static int
pr_in_report_caps(struct scsi_cmd *cmd)
{
	if (scsi_alloc_in(cmd, 8) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	put_be16(cmd->in, 8);
	cmd->in[2] = 0x04; /* ATP_C */
	cmd->in[3] = 0x80; /* TMV */
	cmd->in[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
	cmd->in[5] = 0x01;
	return SAM_STAT_GOOD;
}

static int
pr_in_full_status(struct scsi_cmd *cmd, struct pr_state *pr)
{
	if (scsi_alloc_in(cmd, 8 + (uint32_t)pr->nregs * (24 + TGT_IPORT_MAX + 8)) < 0) {
		return scsi_sense_errno(cmd, -ENOMEM);
	}
	uint8_t *p = cmd->in + 8;
	put_be32(cmd->in, pr->generation);
	for (int i = 0; i < pr->nregs; i++) {
		const struct pr_reg *r = &pr->regs[i];
		struct scsi_nexus nx;
		snprintf(nx.iport, sizeof(nx.iport), "%s", r->iport);
		nx.rtpi = r->rtpi;
		put_be64(p, r->key);
		p[12] = (r->all_tg_pt ? 0x02 : 0) | (pr_is_holder(pr, &nx) ? 0x01 : 0);
		if (p[12] & 0x01) {
			p[13] = (uint8_t)(pr->scope << 4 | pr->type);
		}
		put_be16(p + 18, r->rtpi);
		/* iSCSI TransportID, format 01b: "name,i,0xISID" */
		size_t nl = strlen(r->iport) + 1;
		size_t tl = (nl + 3) & ~(size_t)3;
		uint8_t *t = p + 24;
		t[0] = 0x45;
		put_be16(t + 2, (uint16_t)tl);
		memcpy(t + 4, r->iport, nl);
		memset(t + 4 + nl, 0, tl - nl);
		put_be32(p + 20, (uint32_t)(4 + tl));
		p += 24 + 4 + tl;
	}
	put_be32(cmd->in + 4, (uint32_t)(p - cmd->in) - 8);
	cmd->in_len = (uint32_t)(p - cmd->in);
	return SAM_STAT_GOOD;
}

int
pr_in(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	uint32_t alloc = get_be16(cmd->cdb + 7);
	int st;

	pthread_mutex_lock(&lu->lock);
	switch (cmd->cdb[1] & 0x1f) {
	case 0:
		st = pr_in_read_keys(cmd, &lu->pr);
		break;
	case 1:
		st = pr_in_read_reservation(cmd, &lu->pr);
		break;
	case 2:
		st = pr_in_report_caps(cmd);
		break;
	case 3:
		st = pr_in_full_status(cmd, &lu->pr);
		break;
	default:
		st = scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		break;
	}
	pthread_mutex_unlock(&lu->lock);
	if (st == SAM_STAT_GOOD && cmd->in_len > alloc) {
		cmd->in_len = alloc;
	}
	return st;
}

static int
pr_out_register(struct scsi_cmd *cmd, struct pr_state *pr, uint64_t key, uint64_t sark, bool ignore,
		bool all_tg_pt)
{
	int i = pr_find(pr, &cmd->nexus);

	if (i < 0) {
		if (!ignore && key != 0) {
			return SAM_STAT_RESERVATION_CONFLICT;
		}
		if (sark == 0) {
			return SAM_STAT_GOOD;
		}
		if (pr->nregs >= PR_MAX_REGS) {
			return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
		}
		struct pr_reg *r = &pr->regs[pr->nregs++];
		memset(r, 0, sizeof(*r));
		snprintf(r->iport, sizeof(r->iport), "%s", cmd->nexus.iport);
		r->rtpi = cmd->nexus.rtpi;
		r->all_tg_pt = all_tg_pt;
		r->key = sark;
		pr->generation++;
		return SAM_STAT_GOOD;
	}
	if (!ignore && key != pr->regs[i].key) {
		return SAM_STAT_RESERVATION_CONFLICT;
	}
	if (sark == 0) {
		pr_remove(pr, i);
	} else {
		pr->regs[i].key = sark;
	}
	pr->generation++;
	return SAM_STAT_GOOD;
}

static int
pr_out_preempt(struct scsi_cmd *cmd, struct pr_state *pr, int me, uint64_t sark, uint8_t type,
	       uint8_t scope)
{
	bool found = false;
	struct pr_reg self = pr->regs[me];

	if (pr->reserved && pr_type_all_reg(pr->type)) {
		/* all-registrants: SARK 0 preempts everyone else and takes over */
		for (int i = pr->nregs - 1; i >= 0; i--) {
			if (i != me && (sark == 0 || pr->regs[i].key == sark)) {
				memmove(&pr->regs[i], &pr->regs[i + 1],
					sizeof(pr->regs[0]) * (size_t)(pr->nregs - i - 1));
				pr->nregs--;
				if (i < me) {
					me--;
				}
				found = true;
			}
		}
		if (sark == 0) {
			pr->type = type;
			pr->scope = scope;
			snprintf(pr->holder_iport, sizeof(pr->holder_iport), "%s", self.iport);
			pr->holder_rtpi = self.rtpi;
		}
		pr->generation++;
		return SAM_STAT_GOOD;
	}
	if (sark == 0) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	}
	bool preempt_holder = false;
	if (pr->reserved) {
		int h = -1;
		for (int i = 0; i < pr->nregs; i++) {
			if (!strcmp(pr->regs[i].iport, pr->holder_iport) &&
			    (pr->regs[i].all_tg_pt || pr->regs[i].rtpi == pr->holder_rtpi)) {
				h = i;
			}
		}
		preempt_holder = h >= 0 && pr->regs[h].key == sark;
	}
	for (int i = pr->nregs - 1; i >= 0; i--) {
		if (pr->regs[i].key == sark && !(i == me && preempt_holder)) {
			if (i == me) {
				continue;
			}
			memmove(&pr->regs[i], &pr->regs[i + 1],
				sizeof(pr->regs[0]) * (size_t)(pr->nregs - i - 1));
			pr->nregs--;
			if (i < me) {
				me--;
			}
			found = true;
		}
	}
	if (preempt_holder) {
		pr->reserved = true;
		pr->type = type;
		pr->scope = scope;
		snprintf(pr->holder_iport, sizeof(pr->holder_iport), "%s", self.iport);
		pr->holder_rtpi = self.rtpi;
		found = true;
	}
	if (!found) {
		return SAM_STAT_RESERVATION_CONFLICT;
	}
	pr->generation++;
	return SAM_STAT_GOOD;
}

int
pr_out(struct scsi_cmd *cmd)
{
	struct tgt_lun *lu = cmd->lu;
	struct pr_state *pr = &lu->pr;
	uint8_t sa = cmd->cdb[1] & 0x1f;
	uint8_t scope = cmd->cdb[2] >> 4;
	uint8_t type = cmd->cdb[2] & 0x0f;
	uint32_t plen = get_be32(cmd->cdb + 5);
	int st = SAM_STAT_GOOD;

	if (sa > 6) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	if (plen != 24 || cmd->out_len < 24) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	}
	const uint8_t *d = cmd->out;
	uint64_t key = get_be64(d);
	uint64_t sark = get_be64(d + 8);
	bool spec_i_pt = d[20] & 0x08, all_tg_pt = d[20] & 0x04, aptpl = d[20] & 0x01;

	if (spec_i_pt || aptpl) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	}
	if ((sa == 1 || sa == 4 || sa == 5) && (scope != 0 || !pr_type_valid(type))) {
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	pthread_mutex_lock(&lu->lock);
	if (sa == 0 || sa == 6) {
		st = pr_out_register(cmd, pr, key, sark, sa == 6, all_tg_pt);
		goto out;
	}
	int me = pr_find(pr, &cmd->nexus);
	if (me < 0 || pr->regs[me].key != key) {
		st = SAM_STAT_RESERVATION_CONFLICT;
		goto out;
	}
	switch (sa) {
	case 1: /* RESERVE */
		if (pr->reserved) {
			if (!pr_is_holder(pr, &cmd->nexus) || pr->type != type) {
				st = SAM_STAT_RESERVATION_CONFLICT;
			}
			break;
		}
		pr->reserved = true;
		pr->type = type;
		pr->scope = scope;
		snprintf(pr->holder_iport, sizeof(pr->holder_iport), "%s", cmd->nexus.iport);
		pr->holder_rtpi = cmd->nexus.rtpi;
		break;
	case 2: /* RELEASE */
		if (!pr->reserved || !pr_is_holder(pr, &cmd->nexus)) {
			break;
		}
		if (pr->type != type || pr->scope != scope) {
			st = scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
			break;
		}
		pr->reserved = false;
		break;
	case 3: /* CLEAR */
		pr->nregs = 0;
		pr->reserved = false;
		pr->generation++;
		break;
	case 4: /* PREEMPT */
	case 5: /* PREEMPT AND ABORT: tasks of the preempted nexuses are not aborted here */
		st = pr_out_preempt(cmd, pr, me, sark, type, scope);
		break;
	}
out:
	pthread_mutex_unlock(&lu->lock);
	return st;
}
