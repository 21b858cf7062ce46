/* SPDX-License-Identifier: MIT */
/*
 * iSCSI wire format (RFC 7143): opcodes, Basic Header Segment offsets, login
 * status codes, and big-endian accessors. The BHS is handled as a 48-byte
 * array with named offsets rather than packed structs, so that every field
 * access is an explicit, alignment-safe load or store.
 */
#ifndef TARGET_ISCSI_PROTO_H
#define TARGET_ISCSI_PROTO_H

#include <stdint.h>
#include <string.h>

#define ISCSI_BHS_LEN 48
#define ISCSI_DIGEST_LEN 4
#define ISCSI_RSVD_TAG 0xffffffffu

/* Initiator opcodes. */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK 0x10
/* Target opcodes. */
#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

#define ISCSI_OP_MASK 0x3f
#define ISCSI_OP_IMMEDIATE 0x40

/* Flags (byte 1). */
#define ISCSI_FLAG_FINAL 0x80
#define ISCSI_FLAG_CMD_READ 0x40
#define ISCSI_FLAG_CMD_WRITE 0x20
#define ISCSI_FLAG_CMD_ATTR_MASK 0x07
#define ISCSI_FLAG_TEXT_CONTINUE 0x40
#define ISCSI_FLAG_LOGIN_TRANSIT 0x80
#define ISCSI_FLAG_LOGIN_CONTINUE 0x40
#define ISCSI_FLAG_DATA_ACK 0x40
#define ISCSI_FLAG_DATA_STATUS 0x01
#define ISCSI_FLAG_RSP_OVERFLOW 0x04
#define ISCSI_FLAG_RSP_UNDERFLOW 0x02

/* Common BHS offsets. */
#define BHS_OPCODE 0
#define BHS_FLAGS 1
#define BHS_AHSLEN 4
#define BHS_DLEN 5
#define BHS_LUN 8
#define BHS_ITT 16
#define BHS_TTT 20
#define BHS_CMDSN 24	 /* requests */
#define BHS_EXPSTATSN 28 /* requests */
#define BHS_STATSN 24	 /* responses */
#define BHS_EXPCMDSN 28	 /* responses */
#define BHS_MAXCMDSN 32	 /* responses */
#define BHS_DATASN 36
#define BHS_BUFOFF 40
#define BHS_RESID 44
/* SCSI Command. */
#define BHS_CMD_EDTL 20
#define BHS_CMD_CDB 32
/* Login. */
#define BHS_LOGIN_VMAX 2
#define BHS_LOGIN_VMIN 3
#define BHS_LOGIN_ISID 8
#define BHS_LOGIN_TSIH 14
#define BHS_LOGIN_CID 20
#define BHS_LOGIN_STATUS_CLASS 36
#define BHS_LOGIN_STATUS_DETAIL 37
/* Task management. */
#define BHS_TMF_RTT 20
#define BHS_TMF_REFCMDSN 32
/* R2T. */
#define BHS_R2T_R2TSN 36
#define BHS_R2T_DDTL 44

#define ISCSI_LOGIN_CSG(f) (((f) >> 2) & 3)
#define ISCSI_LOGIN_NSG(f) ((f)&3)
#define ISCSI_STAGE_SECURITY 0
#define ISCSI_STAGE_OPERATIONAL 1
#define ISCSI_STAGE_FULL_FEATURE 3

/* Login status (class << 8 | detail). */
#define ISCSI_LOGIN_OK 0x0000
#define ISCSI_LOGIN_AUTH_FAILED 0x0201
#define ISCSI_LOGIN_AUTHORIZATION 0x0202
#define ISCSI_LOGIN_NOT_FOUND 0x0203
#define ISCSI_LOGIN_TARGET_REMOVED 0x0204
#define ISCSI_LOGIN_UNSUPPORTED_VERSION 0x0205
#define ISCSI_LOGIN_TOO_MANY_CONNS 0x0206
#define ISCSI_LOGIN_MISSING_PARAM 0x0207
#define ISCSI_LOGIN_NO_SESSION_SPANNING 0x0208
#define ISCSI_LOGIN_UNSUPPORTED_SESSION_TYPE 0x0209
#define ISCSI_LOGIN_SESSION_NOT_EXIST 0x020a
#define ISCSI_LOGIN_INVALID_REQUEST 0x020b
#define ISCSI_LOGIN_TARGET_ERROR 0x0300
#define ISCSI_LOGIN_SERVICE_UNAVAILABLE 0x0301
#define ISCSI_LOGIN_OUT_OF_RESOURCES 0x0302

/* Task management functions and responses. */
#define ISCSI_TMF_ABORT_TASK 1
#define ISCSI_TMF_ABORT_TASK_SET 2
#define ISCSI_TMF_CLEAR_ACA 3
#define ISCSI_TMF_CLEAR_TASK_SET 4
#define ISCSI_TMF_LUN_RESET 5
#define ISCSI_TMF_TARGET_WARM_RESET 6
#define ISCSI_TMF_TARGET_COLD_RESET 7
#define ISCSI_TMF_TASK_REASSIGN 8
#define ISCSI_TMF_RSP_COMPLETE 0
#define ISCSI_TMF_RSP_NO_TASK 1
#define ISCSI_TMF_RSP_NO_LUN 2
#define ISCSI_TMF_RSP_NOT_SUPPORTED 5
#define ISCSI_TMF_RSP_REJECTED 255

/* Reject reasons. */
#define ISCSI_REJECT_DIGEST 0x02
#define ISCSI_REJECT_SNACK 0x03
#define ISCSI_REJECT_PROTOCOL 0x04
#define ISCSI_REJECT_CMD_NOT_SUPPORTED 0x05
#define ISCSI_REJECT_INVALID_FIELD 0x09
#define ISCSI_REJECT_WAITING_LOGOUT 0x0d

static inline uint16_t
get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
get_be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static inline void
put_be16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline void
put_be24(uint8_t *p, uint32_t v)
{
	p[0] = v >> 16;
	p[1] = v >> 8;
	p[2] = v;
}

static inline void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, (uint32_t)v);
}

/* Serial number arithmetic (RFC 1982, 32 bits): a < b. */
static inline int
sn_lt(uint32_t a, uint32_t b)
{
	return a != b && (int32_t)(a - b) < 0;
}

/* Decode the 8-byte LUN field (flat/peripheral addressing) to a LUN number. */
static inline uint64_t
iscsi_lun_decode(const uint8_t *p)
{
	return ((uint64_t)(p[0] & 0x3f) << 8) | p[1];
}

static inline void
iscsi_lun_encode(uint8_t *p, uint64_t lun)
{
	memset(p, 0, 8);
	if (lun < 256) {
		p[1] = (uint8_t)lun;
	} else {
		p[0] = 0x40 | ((lun >> 8) & 0x3f);
		p[1] = (uint8_t)lun;
	}
}

#endif
