// SPDX-License-Identifier: MIT
/*
 * Text-key negotiation (after SPDK's and tgt's param.c): one table of the
 * operational keys with their kind (list, boolean AND/OR, numeric min/max,
 * declarative), range and the target's own value. An offer outside its range
 * or of the wrong form is answered "Reject", an unknown key "NotUnderstood",
 * and keys that make no sense in a discovery session "Irrelevant". The parser
 * never trusts the data segment to be NUL-terminated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "param.h"

enum param_kind { PK_DIGEST, PK_AND, PK_OR, PK_MIN, PK_MAX, PK_DECL, PK_NO };

struct param_def {
	const char *name;
	enum param_kind kind;
	uint32_t lo, hi;
	uint32_t ours;	   /* numeric value or boolean 0/1 */
	bool session_only; /* irrelevant in discovery sessions */
	size_t off;	   /* field in struct iscsi_params */
	bool is_bool;
};

#define PO(f) offsetof(struct iscsi_params, f)

static const struct param_def param_defs[] = {
	{"HeaderDigest", PK_DIGEST, 0, 0, 0, false, PO(header_digest), true},
	{"DataDigest", PK_DIGEST, 0, 0, 0, false, PO(data_digest), true},
	{"MaxConnections", PK_MIN, 1, 65535, 1, true, PO(max_conns), false},
	{"InitialR2T", PK_OR, 0, 1, 0, true, PO(initial_r2t), true},
	{"ImmediateData", PK_AND, 0, 1, 1, true, PO(immediate_data), true},
	{"MaxRecvDataSegmentLength", PK_DECL, 512, 16777215, TGT_MAX_RECV_DSL, false,
	 PO(max_xmit_dsl), false},
	{"MaxBurstLength", PK_MIN, 512, 16777215, TGT_MAX_BURST, true, PO(max_burst), false},
	{"FirstBurstLength", PK_MIN, 512, 16777215, TGT_MAX_BURST, true, PO(first_burst), false},
	{"DefaultTime2Wait", PK_MAX, 0, 3600, 2, false, PO(time2wait), false},
	{"DefaultTime2Retain", PK_MIN, 0, 3600, 20, false, PO(time2retain), false},
	{"MaxOutstandingR2T", PK_MIN, 1, 65535, TGT_MAX_OUTSTANDING_R2T, true,
	 PO(max_outstanding_r2t), false},
	{"DataPDUInOrder", PK_OR, 0, 1, 1, true, PO(data_pdu_in_order), true},
	{"DataSequenceInOrder", PK_OR, 0, 1, 1, true, PO(data_seq_in_order), true},
	{"ErrorRecoveryLevel", PK_MIN, 0, 2, 0, false, PO(erl), false},
	{"IFMarker", PK_NO, 0, 1, 0, false, 0, true},
	{"OFMarker", PK_NO, 0, 1, 0, false, 0, true},
};

void
text_buf_init(struct text_buf *tb)
{
	memset(tb, 0, sizeof(*tb));
}

void
text_buf_free(struct text_buf *tb)
{
	free(tb->buf);
	memset(tb, 0, sizeof(*tb));
}

void
text_add(struct text_buf *tb, const char *key, const char *fmt, ...)
{
	char val[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	size_t need = strlen(key) + 1 + strlen(val) + 1;
	if (tb->len + need > ISCSI_TEXT_MAX) {
		tb->overflow = true;
		return;
	}
	if (tb->len + need > tb->cap) {
		size_t cap = tb->cap ? tb->cap * 2 : 1024;
		while (cap < tb->len + need) {
			cap *= 2;
		}
		char *nb = realloc(tb->buf, cap);
		if (!nb) {
			tb->overflow = true;
			return;
		}
		tb->buf = nb;
		tb->cap = cap;
	}
	tb->len += (size_t)sprintf(tb->buf + tb->len, "%s=%s", key, val) + 1;
}

void
param_defaults(struct iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_recv_dsl = 8192;
	p->max_xmit_dsl = 8192;
	p->max_burst = 262144;
	p->first_burst = 65536;
	p->max_outstanding_r2t = 1;
	p->time2wait = 2;
	p->time2retain = 20;
	p->max_conns = 1;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->data_pdu_in_order = true;
	p->data_seq_in_order = true;
}

int
text_parse(char *data, size_t len, int (*fn)(char *key, char *val, void *arg), void *arg)
{
	size_t i = 0;

	while (i < len) {
		char *pair = data + i;
		size_t n = strnlen(pair, len - i);
		if (n == len - i) {
			return -EINVAL; /* last pair not NUL-terminated */
		}
		i += n + 1;
		if (n == 0) {
			continue; /* padding NULs */
		}
		char *eq = memchr(pair, '=', n);
		if (!eq || eq == pair || eq - pair > 63) {
			return -EINVAL;
		}
		*eq = '\0';
		int r = fn(pair, eq + 1, arg);
		if (r) {
			return r;
		}
	}
	return 0;
}

static int
param_parse_num(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+' || *s == ' ') {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v < lo || v > hi) {
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static int
param_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "Yes")) {
		*out = true;
		return 0;
	}
	if (!strcmp(s, "No")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

int
param_negotiate(struct iscsi_params *p, const char *key, const char *val, bool discovery,
		struct text_buf *out)
{
	const struct param_def *d = NULL;

	for (size_t i = 0; i < sizeof(param_defs) / sizeof(param_defs[0]); i++) {
		if (!strcmp(param_defs[i].name, key)) {
			d = &param_defs[i];
			break;
		}
	}
	if (!d) {
		if (!strcmp(key, "IFMarkInt") || !strcmp(key, "OFMarkInt")) {
			text_add(out, key, "Irrelevant");
			return 1;
		}
		return 0;
	}
	if (discovery && d->session_only) {
		text_add(out, key, "Irrelevant");
		return 1;
	}
	uint8_t *field = (uint8_t *)p + d->off;
	uint32_t v;
	bool b;

	switch (d->kind) {
	case PK_DIGEST: {
		/* a list: pick the first of the initiator's values that we support */
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "%s", val);
		char *save = NULL;
		for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (!strcmp(tok, "CRC32C") || !strcmp(tok, "None")) {
				*(bool *)field = tok[0] == 'C';
				text_add(out, key, "%s", tok);
				return 1;
			}
		}
		text_add(out, key, "Reject");
		return 1;
	}
	case PK_AND:
	case PK_OR:
		if (param_parse_bool(val, &b) < 0) {
			text_add(out, key, "Reject");
			return 1;
		}
		b = d->kind == PK_AND ? (b && d->ours) : (b || d->ours);
		*(bool *)field = b;
		text_add(out, key, "%s", b ? "Yes" : "No");
		return 1;
	case PK_NO:
		if (param_parse_bool(val, &b) < 0) {
			text_add(out, key, "Reject");
			return 1;
		}
		text_add(out, key, "No");
		return 1;
	case PK_MIN:
	case PK_MAX:
		if (param_parse_num(val, d->lo, d->hi, &v) < 0) {
			text_add(out, key, "Reject");
			return 1;
		}
		if (d->kind == PK_MIN) {
			v = v < d->ours ? v : d->ours;
		} else {
			v = v > d->ours ? v : d->ours;
		}
		*(uint32_t *)field = v;
		text_add(out, key, "%u", v);
		return 1;
	case PK_DECL:
		if (param_parse_num(val, d->lo, d->hi, &v) < 0) {
			text_add(out, key, "Reject");
			return 1;
		}
		*(uint32_t *)field = v;
		/* Our declaration of the same key, once. */
		if (!p->declared_mrdsl) {
			text_add(out, key, "%u", d->ours);
			p->declared_mrdsl = true;
		}
		return 1;
	}
	return 0;
}

void
param_finish(struct iscsi_params *p)
{
	if (p->first_burst > p->max_burst) {
		p->first_burst = p->max_burst;
	}
	p->max_recv_dsl = p->declared_mrdsl ? TGT_MAX_RECV_DSL : 8192;
}
