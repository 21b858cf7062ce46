/* SPDX-License-Identifier: MIT */
/*
 * iSCSI text keys (RFC 7143 §6, §13): parsing a key=value data segment and
 * negotiating the operational keys against the target's own preferences.
 */
#ifndef TARGET_PARAM_H
#define TARGET_PARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISCSI_TEXT_MAX 65536	/* a whole (possibly continued) text or login request */
#define TGT_MAX_RECV_DSL 262144 /* what we declare as our MaxRecvDataSegmentLength */
#define TGT_MAX_BURST 16776192
#define TGT_MAX_OUTSTANDING_R2T 16

/* Negotiated session/connection parameters. */
struct iscsi_params {
	uint32_t max_recv_dsl; /* our receive limit (declared by us) */
	uint32_t max_xmit_dsl; /* initiator's MaxRecvDataSegmentLength */
	uint32_t max_burst;
	uint32_t first_burst;
	uint32_t max_outstanding_r2t;
	uint32_t time2wait;
	uint32_t time2retain;
	uint32_t erl;
	uint32_t max_conns;
	bool initial_r2t;
	bool immediate_data;
	bool data_pdu_in_order;
	bool data_seq_in_order;
	bool header_digest;
	bool data_digest;
	bool declared_mrdsl; /* our MaxRecvDataSegmentLength was sent */
};

/* A growing text answer of key=value\0 pairs. */
struct text_buf {
	char *buf;
	size_t len;
	size_t cap;
	bool overflow;
};

void text_buf_init(struct text_buf *tb);
void text_buf_free(struct text_buf *tb);
/* Append "key=value\0"; sets overflow past ISCSI_TEXT_MAX. */
void text_add(struct text_buf *tb, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* RFC 7143 defaults (the values in force before and without negotiation). */
void param_defaults(struct iscsi_params *p);
/* Split a data segment into pairs: calls fn(key, value, arg) for each; stops on
 * a non-zero return. Returns 0, fn's value, or -EINVAL for a malformed pair. */
int text_parse(char *data, size_t len, int (*fn)(char *key, char *val, void *arg), void *arg);
/* Negotiate one operational key; appends the answer to out. Returns 1 if the key
 * was an operational key (answered), 0 if unknown to this table. */
int param_negotiate(struct iscsi_params *p, const char *key, const char *val, bool discovery,
		    struct text_buf *out);
/* After the operational stage: clamp dependent values (FirstBurst <= MaxBurst). */
void param_finish(struct iscsi_params *p);

#endif
