// SPDX-License-Identifier: MIT
/*
 * SCSI command dispatch (after tgt's scsi.c and sbc_template.ops): one table
 * indexed by opcode (and service action for 9Eh/A3h) gives the handler, the
 * checks that apply before it runs (LUN present, write protection, persistent
 * reservations / RESERVE(6), ALUA state) and the CDB usage data that REPORT
 * SUPPORTED OPERATION CODES returns. Handlers return a SAM status; errors fill
 * fixed-format sense through scsi_sense(), and scsi_sense_errno() is the one
 * place where a backend -errno becomes sense data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

struct scsi_op_entry {
	uint8_t op;
	bool has_sa;
	struct scsi_op o;
};

// clang-format off
/* one line per opcode reads better as a table */
#define U6 { 0, 0xff, 0xff, 0xff, 0xff, 0x07 }
#define U10 { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07 }
#define U12 { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07 }
#define U16 { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07 }

#define M SCSI_OP_MEDIA
#define W (SCSI_OP_WRITE | SCSI_OP_MEDIA)
#define R (SCSI_OP_MEDIA | SCSI_OP_READ_LIKE)
#define ANY (SCSI_OP_READ_LIKE | SCSI_OP_RES6_OK | SCSI_OP_ALUA_OK)

static const struct scsi_op_entry scsi_ops[] = {
	{ 0x00, false, { spc_test_unit_ready, ANY, 0, 6, U6 } },
	{ 0x03, false, { spc_request_sense, ANY | SCSI_OP_NO_LUN, 0, 6, U6 } },
	{ 0x08, false, { sbc_read, R, 0, 6, U6 } },
	{ 0x0a, false, { sbc_write, W, 0, 6, U6 } },
	{ 0x12, false, { spc_inquiry, ANY | SCSI_OP_NO_LUN, 0, 6, U6 } },
	{ 0x15, false, { spc_mode_select, SCSI_OP_ALUA_OK, 0, 6, U6 } },
	{ 0x16, false, { spc_reserve6, SCSI_OP_ALUA_OK, 0, 6, U6 } },
	{ 0x17, false, { spc_release6, SCSI_OP_ALUA_OK | SCSI_OP_RES6_OK, 0, 6, U6 } },
	{ 0x1a, false, { spc_mode_sense, SCSI_OP_READ_LIKE | SCSI_OP_ALUA_OK, 0, 6, U6 } },
	{ 0x1b, false, { spc_start_stop, 0, 0, 6, U6 } },
	{ 0x1e, false, { spc_prevent_allow, SCSI_OP_ALUA_OK, 0, 6, U6 } },
	{ 0x25, false, { sbc_read_capacity10, ANY, 0, 10, U10 } },
	{ 0x28, false, { sbc_read, R, 0, 10, U10 } },
	{ 0x2a, false, { sbc_write, W, 0, 10, U10 } },
	{ 0x2e, false, { sbc_write, W, 0, 10, U10 } },
	{ 0x2f, false, { sbc_verify, R, 0, 10, U10 } },
	{ 0x34, false, { sbc_prefetch, R, 0, 10, U10 } },
	{ 0x35, false, { sbc_sync_cache, M, 0, 10, U10 } },
	{ 0x37, false, { sbc_read_defect_data, R, 0, 10, U10 } },
	{ 0x41, false, { sbc_write_same, W, 0, 10, U10 } },
	{ 0x42, false, { sbc_unmap, W, 0, 10, U10 } },
	{ 0x48, true, { sbc_sanitize, W, 0x02, 10, U10 } },
	{ 0x48, true, { sbc_sanitize, W, 0x1f, 10, U10 } },
	{ 0x55, false, { spc_mode_select, SCSI_OP_ALUA_OK, 0, 10, U10 } },
	{ 0x5a, false, { spc_mode_sense, SCSI_OP_READ_LIKE | SCSI_OP_ALUA_OK, 0, 10, U10 } },
	{ 0x5e, false, { pr_in, SCSI_OP_RES6_OK | SCSI_OP_READ_LIKE | SCSI_OP_ALUA_OK, 0, 10, U10 } },
	{ 0x5f, false, { pr_out, SCSI_OP_RES6_OK | SCSI_OP_READ_LIKE | SCSI_OP_ALUA_OK, 0, 10, U10 } },
	{ 0x83, false, { xcopy_extended_copy, W, 0, 16, U16 } },
	{ 0x84, false, { xcopy_receive_results, SCSI_OP_READ_LIKE, 0, 16, U16 } },
	{ 0x88, false, { sbc_read, R, 0, 16, U16 } },
	{ 0x89, false, { sbc_compare_and_write, W, 0, 16, U16 } },
	{ 0x8a, false, { sbc_write, W, 0, 16, U16 } },
	{ 0x8b, false, { sbc_write, W, 0, 16, U16 } }, /* ORWRITE(16) */
	{ 0x8e, false, { sbc_write, W, 0, 16, U16 } },
	{ 0x8f, false, { sbc_verify, R, 0, 16, U16 } },
	{ 0x90, false, { sbc_prefetch, R, 0, 16, U16 } },
	{ 0x91, false, { sbc_sync_cache, M, 0, 16, U16 } },
	{ 0x93, false, { sbc_write_same, W, 0, 16, U16 } },
	{ 0x9c, false, { sbc_write, W, 0, 16, U16 } }, /* WRITE ATOMIC(16) */
	{ 0x9e, true, { sbc_service_action_in16, ANY, 0x10, 16, U16 } },
	{ 0x9e, true, { sbc_service_action_in16, R, 0x12, 16, U16 } },
	{ 0xa0, false, { spc_report_luns, ANY | SCSI_OP_NO_LUN, 0, 12, U12 } },
	{ 0xa3, true, { spc_report_tpgs, ANY, 0x0a, 12, U12 } },
	{ 0xa3, true, { spc_report_opcodes, ANY, 0x0c, 12, U12 } },
	{ 0xa8, false, { sbc_read, R, 0, 12, U12 } },
	{ 0xaa, false, { sbc_write, W, 0, 12, U12 } },
	{ 0xae, false, { sbc_write, W, 0, 12, U12 } },
	{ 0xaf, false, { sbc_verify, R, 0, 12, U12 } },
	{ 0xb7, false, { sbc_read_defect_data, R, 0, 12, U12 } },
};
// clang-format on

const struct scsi_op *
scsi_op_find(uint8_t op, uint8_t sa)
{
	for (size_t i = 0; i < sizeof(scsi_ops) / sizeof(scsi_ops[0]); i++) {
		if (scsi_ops[i].op == op && (!scsi_ops[i].has_sa || scsi_ops[i].o.sa == sa)) {
			return &scsi_ops[i].o;
		}
	}
	return NULL;
}

/* Entry i of the table (op in *op), NULL past the end; has_sa in o->sa != 0 marker. */
const struct scsi_op *
scsi_op_at(int i, uint8_t *op)
{
	if (i < 0 || (size_t)i >= sizeof(scsi_ops) / sizeof(scsi_ops[0])) {
		return NULL;
	}
	*op = scsi_ops[i].op;
	return &scsi_ops[i].o;
}

int
scsi_cdb_len(uint8_t op)
{
	switch (op >> 5) {
	case 0:
		return 6;
	case 1:
	case 2:
		return 10;
	case 4:
		return 16;
	case 5:
		return 12;
	default:
		return 16;
	}
}

int
scsi_sense_info(struct scsi_cmd *cmd, uint8_t key, uint16_t asc_ascq, uint64_t info)
{
	uint8_t *s = cmd->sense;
	memset(s, 0, 18);
	s[0] = 0x70;
	if (info != UINT64_MAX) {
		s[0] |= 0x80;
		put_be32(s + 3, (uint32_t)info);
	}
	s[2] = key & 0x0f;
	s[7] = 10;
	s[12] = asc_ascq >> 8;
	s[13] = asc_ascq & 0xff;
	cmd->sense_len = 18;
	cmd->status = SAM_STAT_CHECK_CONDITION;
	return SAM_STAT_CHECK_CONDITION;
}

int
scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc_ascq)
{
	return scsi_sense_info(cmd, key, asc_ascq, UINT64_MAX);
}

int
scsi_sense_field(struct scsi_cmd *cmd, uint16_t field_byte)
{
	scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	cmd->sense[15] = 0x80 | 0x40; /* SKSV, C/D: the error is in the CDB */
	put_be16(cmd->sense + 16, field_byte);
	return SAM_STAT_CHECK_CONDITION;
}

int
scsi_sense_errno(struct scsi_cmd *cmd, int err)
{
	switch (err) {
	case -ENOSPC:
	case -EDQUOT:
		return scsi_sense(cmd, SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED);
	case -EROFS:
	case -EPERM:
	case -EACCES:
		return scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	case -ENOMEM:
		cmd->status = SAM_STAT_TASK_SET_FULL;
		cmd->sense_len = 0;
		return cmd->status;
	case -EOPNOTSUPP:
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	case -ENXIO: /* beyond the end of a backing file that shrank */
		return scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	case -EIO:
	case -EBADMSG:
	default:
		/* (-ENOTCONN too: a FUSE file system whose daemon died) */
		return scsi_sense(cmd, SK_MEDIUM_ERROR, cmd->out ? ASC_WRITE_ERROR : ASC_READ_ERROR);
	}
}

int
scsi_alloc_in(struct scsi_cmd *cmd, uint32_t len)
{
	free(cmd->in);
	cmd->in = calloc(1, len ? len : 1);
	if (!cmd->in) {
		cmd->in_len = 0;
		return -ENOMEM;
	}
	cmd->in_len = len;
	return 0;
}

int
scsi_alloc_in_raw(struct scsi_cmd *cmd, uint32_t len)
{
	free(cmd->in);
	cmd->in = malloc(len ? len : 1);
	if (!cmd->in) {
		cmd->in_len = 0;
		return -ENOMEM;
	}
	cmd->in_len = len;
	return 0;
}

static bool
scsi_alua_allows(const struct scsi_cmd *cmd, const struct scsi_op *op)
{
	uint8_t st = cmd->nexus.alua_state;
	if (st <= 1 || (op->flags & SCSI_OP_ALUA_OK)) {
		return true;
	}
	/* Standby still serves the non-media commands; unavailable serves fewer. */
	if (st == 2 && !(op->flags & SCSI_OP_MEDIA)) {
		return true;
	}
	return false;
}

void
scsi_exec(struct scsi_cmd *cmd)
{
	uint8_t opc = cmd->cdb[0];
	const struct scsi_op *op = scsi_op_find(opc, cmd->cdb[1] & 0x1f);

	cmd->status = SAM_STAT_GOOD;
	cmd->sense_len = 0;
	if (!op) {
		if (!cmd->lu && opc != 0x12 && opc != 0xa0) {
			scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
			return;
		}
		for (size_t i = 0; i < sizeof(scsi_ops) / sizeof(scsi_ops[0]); i++) {
			if (scsi_ops[i].op == opc) {
				/* a known opcode, an unknown service action */
				scsi_sense_field(cmd, 1);
				return;
			}
		}
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (!cmd->lu && !(op->flags & SCSI_OP_NO_LUN)) {
		scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	if (cmd->lu) {
		if (!scsi_alua_allows(cmd, op)) {
			scsi_sense(cmd, SK_NOT_READY,
				   cmd->nexus.alua_state == 2 ? ASC_ALUA_STANDBY
							      : ASC_ALUA_UNAVAILABLE);
			return;
		}
		if (cmd->nowait) {
			if (pthread_mutex_trylock(&cmd->lu->lock) != 0) {
				cmd->would_block = true;
				return;
			}
		} else {
			pthread_mutex_lock(&cmd->lu->lock);
		}
		bool allowed = pr_check_access(cmd->lu, &cmd->nexus, op, cmd->cdb);
		pthread_mutex_unlock(&cmd->lu->lock);
		if (!allowed) {
			cmd->status = SAM_STAT_RESERVATION_CONFLICT;
			return;
		}
		if ((op->flags & SCSI_OP_WRITE) && (cmd->lu->ro || cmd->lu->swp)) {
			scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
			return;
		}
	}
	cmd->status = (uint8_t)op->fn(cmd);
}
