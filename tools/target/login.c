// SPDX-License-Identifier: MIT
/*
 * Login phase and text requests (after tgt's iscsid.c login_start/login_finish
 * and RFC 7143 §6, §12).
 *
 * Stages: security (AuthMethod, then CHAP_A -> CHAP_I/CHAP_C -> CHAP_N/CHAP_R,
 * with the initiator's own CHAP_I/CHAP_C for mutual CHAP), operational (every
 * key in param.c), full feature. AuthMethod=None is accepted only when the
 * target has no CHAP secret; a normal session whose target needs CHAP cannot
 * jump to the operational stage. The first request names the initiator, the
 * session type and (normal sessions) the target, checked against the target's
 * ACL; the first response carries TargetPortalGroupTag. On the last response a
 * new session gets its TSIH and an older session of the same initiator port
 * (initiator name + ISID) is reinstated, that is, closed.
 *
 * A failed login gets a response with the status class and detail, then the
 * connection is closed once that response is on the wire. Continued requests
 * (C bit) are collected up to ISCSI_TEXT_MAX. SendTargets lists, for each
 * target the initiator may see, every portal with its TPGT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "conn.h"

struct login_ctx {
	struct iscsi_conn *c;
	struct text_buf rsp;
	int csg;
	uint16_t status;
	bool first;
	bool got_initiator;
	bool got_target;
	char target[TGT_NAME_MAX];
	bool session_type_bad;
	char chap_n[256];
	uint8_t chap_r[64];
	int chap_r_len;
	bool got_chap_a;
	bool chap_a_ok;
	int mutual_id; /* -1 when absent */
	uint8_t mutual_chal[1024];
	int mutual_chal_len;
	bool got_auth_method;
	char auth_methods[256];
};

static void
login_fail(struct login_ctx *lc, uint16_t status)
{
	if (!lc->status) {
		lc->status = status;
	}
}

static bool
list_has(const char *list, const char *want)
{
	char tmp[256];
	char *save = NULL;
	snprintf(tmp, sizeof(tmp), "%s", list);
	for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, want)) {
			return true;
		}
	}
	return false;
}

static int
login_key(char *key, char *val, void *arg)
{
	struct login_ctx *lc = arg;
	struct iscsi_conn *c = lc->c;

	if (!strcmp(key, "InitiatorName")) {
		if (!*val || strlen(val) >= TGT_NAME_MAX) {
			login_fail(lc, ISCSI_LOGIN_INVALID_REQUEST);
			return 0;
		}
		if (c->login_started && !lc->first && strcmp(val, c->initiator)) {
			login_fail(lc, ISCSI_LOGIN_INVALID_REQUEST);
			return 0;
		}
		snprintf(c->initiator, sizeof(c->initiator), "%s", val);
		lc->got_initiator = true;
	} else if (!strcmp(key, "TargetName")) {
		if (strlen(val) >= TGT_NAME_MAX) {
			login_fail(lc, ISCSI_LOGIN_NOT_FOUND);
			return 0;
		}
		snprintf(lc->target, sizeof(lc->target), "%s", val);
		lc->got_target = true;
	} else if (!strcmp(key, "SessionType")) {
		if (!strcmp(val, "Discovery")) {
			c->discovery = true;
		} else if (!strcmp(val, "Normal")) {
			c->discovery = false;
		} else {
			lc->session_type_bad = true;
		}
	} else if (!strcmp(key, "InitiatorAlias") || !strcmp(key, "TargetAlias") ||
		   !strcmp(key, "TargetPortalGroupTag") || !strcmp(key, "TargetAddress")) {
		/* declarative from the initiator, or ours: nothing to answer */
	} else if (!strcmp(key, "AuthMethod")) {
		/* answered once the target (and so its secrets) is known */
		lc->got_auth_method = true;
		snprintf(lc->auth_methods, sizeof(lc->auth_methods), "%s", val);
	} else if (!strcmp(key, "CHAP_A")) {
		lc->got_chap_a = true;
		lc->chap_a_ok = list_has(val, "5");
	} else if (!strcmp(key, "CHAP_N")) {
		snprintf(lc->chap_n, sizeof(lc->chap_n), "%s", val);
	} else if (!strcmp(key, "CHAP_R")) {
		lc->chap_r_len = chap_decode(val, lc->chap_r, sizeof(lc->chap_r));
	} else if (!strcmp(key, "CHAP_I")) {
		char *end;
		long id = strtol(val, &end, 0);
		lc->mutual_id = (*val && !*end && id >= 0 && id <= 255) ? (int)id : -2;
	} else if (!strcmp(key, "CHAP_C")) {
		lc->mutual_chal_len = chap_decode(val, lc->mutual_chal, sizeof(lc->mutual_chal));
		if (lc->mutual_chal_len < 0) {
			lc->mutual_chal_len = -2;
		}
	} else if (param_negotiate(&c->params, key, val, c->discovery, &lc->rsp)) {
		/* answered */
	} else {
		text_add(&lc->rsp, key, "NotUnderstood");
	}
	return 0;
}

/* CHAP steps of the security stage. */
static void
login_chap(struct login_ctx *lc)
{
	struct iscsi_conn *c = lc->c;
	struct tgt_target *t = c->tgt;

	if (c->auth == AUTH_WAIT_A && lc->got_chap_a) {
		if (!lc->chap_a_ok) {
			text_add(&lc->rsp, "CHAP_A", "Reject");
			login_fail(lc, ISCSI_LOGIN_AUTH_FAILED);
			return;
		}
		if (getrandom(c->chap_chal, sizeof(c->chap_chal), 0) != sizeof(c->chap_chal)) {
			login_fail(lc, ISCSI_LOGIN_TARGET_ERROR);
			return;
		}
		uint8_t id;
		if (getrandom(&id, 1, 0) != 1) {
			login_fail(lc, ISCSI_LOGIN_TARGET_ERROR);
			return;
		}
		c->chap_id = id;
		char hex[64];
		chap_encode_hex(c->chap_chal, sizeof(c->chap_chal), hex, sizeof(hex));
		text_add(&lc->rsp, "CHAP_A", "5");
		text_add(&lc->rsp, "CHAP_I", "%u", c->chap_id);
		text_add(&lc->rsp, "CHAP_C", "%s", hex);
		c->auth = AUTH_WAIT_R;
		return;
	}
	if (c->auth != AUTH_WAIT_R || (!lc->chap_n[0] && lc->chap_r_len == 0)) {
		return;
	}
	uint8_t want[16];
	chap_md5_response(c->chap_id, t->chap.secret, c->chap_chal, sizeof(c->chap_chal), want);
	if (strcmp(lc->chap_n, t->chap.user) || lc->chap_r_len != 16 ||
	    memcmp(want, lc->chap_r, 16)) {
		tgt_info("%s: CHAP authentication of '%s' failed", c->peer, lc->chap_n);
		login_fail(lc, ISCSI_LOGIN_AUTH_FAILED);
		return;
	}
	if (lc->mutual_id != -1 || lc->mutual_chal_len != 0) {
		/* mutual CHAP: the initiator challenges us */
		if (!t->mutual_on || lc->mutual_id < 0 || lc->mutual_chal_len <= 0 ||
		    (lc->mutual_chal_len == (int)sizeof(c->chap_chal) &&
		     !memcmp(lc->mutual_chal, c->chap_chal, sizeof(c->chap_chal)))) {
			login_fail(lc, ISCSI_LOGIN_AUTH_FAILED);
			return;
		}
		uint8_t resp[16];
		char hex[64];
		chap_md5_response((uint8_t)lc->mutual_id, t->mutual.secret, lc->mutual_chal,
				  (size_t)lc->mutual_chal_len, resp);
		chap_encode_hex(resp, sizeof(resp), hex, sizeof(hex));
		text_add(&lc->rsp, "CHAP_N", "%s", t->mutual.user);
		text_add(&lc->rsp, "CHAP_R", "%s", hex);
	} else if (t->mutual_on) {
		/* we insist on proving ourselves only when asked; a target with a mutual
		 * secret still accepts one-way CHAP from an initiator that does not ask */
	}
	c->auth = AUTH_DONE;
}

static void
login_send(struct iscsi_conn *c, const uint8_t *req, struct login_ctx *lc, bool transit, int nsg)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	uint8_t *data = NULL;
	uint32_t dlen = 0;

	h[0] = ISCSI_OP_LOGIN_RSP;
	if (lc->status == 0) {
		h[1] = (uint8_t)((lc->csg & 3) << 2);
		if (transit) {
			h[1] |= ISCSI_FLAG_LOGIN_TRANSIT | (nsg & 3);
		}
	}
	h[2] = 0;
	h[3] = 0;
	memcpy(h + BHS_LOGIN_ISID, c->isid, 6);
	put_be16(h + BHS_LOGIN_TSIH, lc->status == 0 && transit && nsg == ISCSI_STAGE_FULL_FEATURE
					     ? c->tsih
					     : get_be16(req + BHS_LOGIN_TSIH));
	put_be32(h + BHS_ITT, get_be32(req + BHS_ITT));
	conn_stamp(c, h, true);
	h[BHS_LOGIN_STATUS_CLASS] = lc->status >> 8;
	h[BHS_LOGIN_STATUS_DETAIL] = lc->status & 0xff;
	if (lc->status == 0 && lc->rsp.len) {
		data = malloc(lc->rsp.len);
		if (data) {
			memcpy(data, lc->rsp.buf, lc->rsp.len);
			dlen = (uint32_t)lc->rsp.len;
		}
	}
	conn_queue_pdu(c, h, data, dlen, data, NULL);
}

void
login_handle(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	struct login_ctx lc;
	uint8_t flags = bhs[1];
	bool transit = flags & ISCSI_FLAG_LOGIN_TRANSIT;
	int csg = ISCSI_LOGIN_CSG(flags), nsg = ISCSI_LOGIN_NSG(flags);

	memset(&lc, 0, sizeof(lc));
	lc.c = c;
	lc.csg = csg;
	lc.mutual_id = -1;
	text_buf_init(&lc.rsp);

	if (!(bhs[0] & ISCSI_OP_IMMEDIATE) && !c->login_started) {
		/* the I bit is mandatory on login requests; be lenient, many stacks set it */
	}
	if (!c->login_started) {
		lc.first = true;
		c->login_started = true;
		memcpy(c->isid, bhs + BHS_LOGIN_ISID, 6);
		c->tsih = get_be16(bhs + BHS_LOGIN_TSIH);
		c->cid = get_be16(bhs + BHS_LOGIN_CID);
		c->exp_cmdsn = get_be32(bhs + BHS_CMDSN);
		c->csg = csg;
		c->login_itt = get_be32(bhs + BHS_ITT);
		uint32_t r;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
			r = 1;
		}
		c->statsn = r & 0xffff;
	} else {
		if (memcmp(c->isid, bhs + BHS_LOGIN_ISID, 6)) {
			login_fail(&lc, ISCSI_LOGIN_INVALID_REQUEST);
		}
	}
	if (bhs[BHS_LOGIN_VMIN] > 0 || bhs[BHS_LOGIN_VMAX] < bhs[BHS_LOGIN_VMIN]) {
		login_fail(&lc, ISCSI_LOGIN_UNSUPPORTED_VERSION);
	}
	if (csg == 2 || (transit && (nsg == 2 || nsg <= csg)) || csg != c->csg) {
		login_fail(&lc, ISCSI_LOGIN_INVALID_REQUEST);
	}
	if (lc.status) {
		goto respond;
	}

	/* collect a continued request */
	if (dlen) {
		if (c->login_text_len + dlen > ISCSI_TEXT_MAX) {
			login_fail(&lc, ISCSI_LOGIN_OUT_OF_RESOURCES);
			goto respond;
		}
		char *nb = realloc(c->login_text, c->login_text_len + dlen);
		if (!nb) {
			login_fail(&lc, ISCSI_LOGIN_OUT_OF_RESOURCES);
			goto respond;
		}
		c->login_text = nb;
		memcpy(c->login_text + c->login_text_len, data, dlen);
		c->login_text_len += dlen;
	}
	if (flags & ISCSI_FLAG_LOGIN_CONTINUE) {
		/* acknowledge and wait for the rest */
		login_send(c, bhs, &lc, false, 0);
		text_buf_free(&lc.rsp);
		return;
	}
	if (c->login_text_len && text_parse(c->login_text, c->login_text_len, login_key, &lc) < 0) {
		login_fail(&lc, ISCSI_LOGIN_INVALID_REQUEST);
	}
	free(c->login_text);
	c->login_text = NULL;
	c->login_text_len = 0;
	if (lc.status) {
		goto respond;
	}

	if (lc.first) {
		if (!lc.got_initiator) {
			login_fail(&lc, ISCSI_LOGIN_MISSING_PARAM);
			goto respond;
		}
		if (lc.session_type_bad) {
			login_fail(&lc, ISCSI_LOGIN_UNSUPPORTED_SESSION_TYPE);
			goto respond;
		}
		if (!c->discovery) {
			if (!lc.got_target) {
				login_fail(&lc, ISCSI_LOGIN_MISSING_PARAM);
				goto respond;
			}
			c->tgt = server_find_target(lc.target);
			uint16_t tpgt = 1;
			if (!c->tgt ||
			    !server_has_portal(c->tgt, c->local_host, c->local_port, &tpgt)) {
				tgt_info("%s: login to unknown target '%s'", c->peer, lc.target);
				login_fail(&lc, ISCSI_LOGIN_NOT_FOUND);
				goto respond;
			}
			if (!tgt_target_allows(c->tgt, c->initiator)) {
				tgt_info("%s: initiator '%s' not allowed on %s", c->peer,
					 c->initiator, c->tgt->iqn);
				login_fail(&lc, ISCSI_LOGIN_AUTHORIZATION);
				goto respond;
			}
			c->tpgt = tpgt;
			c->rtpi = tgt_target_rtpi(c->tgt, tpgt);
			c->auth_required = c->tgt->chap_on;
			text_add(&lc.rsp, "TargetPortalGroupTag", "%u", tpgt);
		}
		if (c->tsih != 0) {
			/* adding a connection to a session: MaxConnections is 1 */
			login_fail(&lc, ISCSI_LOGIN_SESSION_NOT_EXIST);
			goto respond;
		}
		snprintf(c->iport, sizeof(c->iport), "%s,i,0x%02x%02x%02x%02x%02x%02x",
			 c->initiator, c->isid[0], c->isid[1], c->isid[2], c->isid[3], c->isid[4],
			 c->isid[5]);
	}

	if (lc.got_auth_method) {
		const char *am = lc.auth_methods;
		if (csg != ISCSI_STAGE_SECURITY) {
			text_add(&lc.rsp, "AuthMethod", "Irrelevant");
		} else if (c->auth_required) {
			if (list_has(am, "CHAP")) {
				text_add(&lc.rsp, "AuthMethod", "CHAP");
				c->auth = AUTH_WAIT_A;
			} else {
				text_add(&lc.rsp, "AuthMethod", "Reject");
				login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
				goto respond;
			}
		} else if (list_has(am, "None")) {
			text_add(&lc.rsp, "AuthMethod", "None");
			c->auth = AUTH_DONE;
		} else {
			text_add(&lc.rsp, "AuthMethod", "Reject");
			login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
			goto respond;
		}
	}
	if (csg == ISCSI_STAGE_SECURITY) {
		if (c->auth_required) {
			login_chap(&lc);
		} else if (lc.got_auth_method && c->auth != AUTH_DONE && !lc.status) {
			login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
		} else if (!lc.got_auth_method && c->auth != AUTH_DONE) {
			c->auth = AUTH_DONE; /* no AuthMethod offered and none needed */
		}
		if (lc.status) {
			goto respond;
		}
		if (transit && c->auth != AUTH_DONE) {
			if (c->auth_required && c->auth != AUTH_WAIT_R) {
				/* the initiator wants to move on without authenticating */
				if (c->auth == AUTH_NONE) {
					login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
					goto respond;
				}
			}
			transit = false; /* stay until the CHAP exchange is done */
			if (c->auth == AUTH_WAIT_R && lc.chap_r_len) {
				login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
				goto respond;
			}
		}
	} else if (c->auth_required && c->auth != AUTH_DONE) {
		tgt_info("%s: operational stage without CHAP", c->peer);
		login_fail(&lc, ISCSI_LOGIN_AUTH_FAILED);
		goto respond;
	}

	if (transit && nsg == ISCSI_STAGE_FULL_FEATURE) {
		if (!c->params.declared_mrdsl) {
			text_add(&lc.rsp, "MaxRecvDataSegmentLength", "%u", TGT_MAX_RECV_DSL);
			c->params.declared_mrdsl = true;
		}
		if (lc.rsp.overflow) {
			login_fail(&lc, ISCSI_LOGIN_OUT_OF_RESOURCES);
			goto respond;
		}
		param_finish(&c->params);
		c->tsih = conn_new_tsih();
		login_send(c, bhs, &lc, true, nsg);
		c->ffp = true;
		c->hdigest = c->params.header_digest;
		c->ddigest = c->params.data_digest;
		if (!c->discovery) {
			conn_reinstate(c);
		}
		tgt_info("%s: %s session of %s%s%s (digests: header %s, data %s)", c->peer,
			 c->discovery ? "discovery" : "normal", c->iport,
			 c->discovery ? "" : " on ", c->discovery ? "" : c->tgt->iqn,
			 c->hdigest ? "CRC32C" : "none", c->ddigest ? "CRC32C" : "none");
		text_buf_free(&lc.rsp);
		return;
	}
respond:
	if (lc.status) {
		login_send(c, bhs, &lc, false, 0);
		c->closing = true;
		text_buf_free(&lc.rsp);
		return;
	}
	login_send(c, bhs, &lc, transit, nsg);
	if (transit) {
		c->csg = nsg;
	}
	text_buf_free(&lc.rsp);
}

/* ---- text requests: SendTargets ---- */

static void
text_send_targets(struct iscsi_conn *c, const char *what, struct text_buf *tb)
{
	struct tgt_target *t;
	TAILQ_FOREACH(t, server_targets(), link)
	{
		if (t->removed || !tgt_target_allows(t, c->initiator)) {
			continue;
		}
		if (c->discovery) {
			if (strcmp(what, "All") && strcmp(what, t->iqn)) {
				continue;
			}
		} else if (t != c->tgt || (strcmp(what, "All") && *what && strcmp(what, t->iqn))) {
			continue;
		}
		text_add(tb, "TargetName", "%s", t->iqn);
		for (int i = 0; i < t->nportals; i++) {
			const struct tgt_portal *p = &t->portals[i];
			const char *host = p->host;
			if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::")) {
				host = c->local_host; /* a wildcard portal: the address we were
							 reached on */
			}
			if (strchr(host, ':')) {
				text_add(tb, "TargetAddress", "[%s]:%d,%u", host, p->port, p->tpgt);
			} else {
				text_add(tb, "TargetAddress", "%s:%d,%u", host, p->port, p->tpgt);
			}
		}
	}
}

static void
text_send_chunk(struct iscsi_conn *c, uint32_t itt)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	size_t left = c->text_rsp_len - c->text_rsp_off;
	size_t n = left < c->params.max_xmit_dsl ? left : c->params.max_xmit_dsl;
	bool last = n == left;
	uint8_t *data = NULL;

	h[0] = ISCSI_OP_TEXT_RSP;
	h[1] = last ? ISCSI_FLAG_FINAL : ISCSI_FLAG_TEXT_CONTINUE;
	put_be32(h + BHS_ITT, itt);
	if (last) {
		put_be32(h + BHS_TTT, ISCSI_RSVD_TAG);
	} else {
		c->text_ttt = c->next_ttt++;
		put_be32(h + BHS_TTT, c->text_ttt);
	}
	if (n) {
		data = malloc(n);
		if (data) {
			memcpy(data, c->text_rsp + c->text_rsp_off, n);
		} else {
			n = 0;
		}
	}
	c->text_rsp_off += n;
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, data, (uint32_t)n, data, NULL);
	if (last) {
		free(c->text_rsp);
		c->text_rsp = NULL;
		c->text_rsp_len = c->text_rsp_off = 0;
	}
}

struct text_ctx {
	struct iscsi_conn *c;
	struct text_buf rsp;
};

static int
text_key(char *key, char *val, void *arg)
{
	struct text_ctx *tc = arg;
	if (!strcmp(key, "SendTargets")) {
		text_send_targets(tc->c, val, &tc->rsp);
	} else if (!param_negotiate(&tc->c->params, key, val, tc->c->discovery, &tc->rsp)) {
		text_add(&tc->rsp, key, "NotUnderstood");
	}
	return 0;
}

void
text_handle(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	uint32_t itt = get_be32(bhs + BHS_ITT);
	uint32_t ttt = get_be32(bhs + BHS_TTT);

	if (ttt != ISCSI_RSVD_TAG) {
		/* the initiator asks for the next part of a long answer */
		if (c->text_rsp && ttt == c->text_ttt) {
			text_send_chunk(c, itt);
		} else {
			conn_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
		}
		conn_flush(c);
		return;
	}
	if (dlen) {
		if (c->login_text_len + dlen > ISCSI_TEXT_MAX) {
			conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
			free(c->login_text);
			c->login_text = NULL;
			c->login_text_len = 0;
			conn_flush(c);
			return;
		}
		char *nb = realloc(c->login_text, c->login_text_len + dlen);
		if (!nb) {
			conn_close(c);
			return;
		}
		c->login_text = nb;
		memcpy(c->login_text + c->login_text_len, data, dlen);
		c->login_text_len += dlen;
	}
	if (bhs[1] & ISCSI_FLAG_TEXT_CONTINUE) {
		uint8_t h[ISCSI_BHS_LEN] = {0};
		h[0] = ISCSI_OP_TEXT_RSP;
		put_be32(h + BHS_ITT, itt);
		c->text_ttt = c->next_ttt++;
		put_be32(h + BHS_TTT, c->text_ttt);
		conn_stamp(c, h, true);
		conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
		conn_flush(c);
		return;
	}
	struct text_ctx tc = {.c = c};
	text_buf_init(&tc.rsp);
	if (c->login_text_len && text_parse(c->login_text, c->login_text_len, text_key, &tc) < 0) {
		free(c->login_text);
		c->login_text = NULL;
		c->login_text_len = 0;
		text_buf_free(&tc.rsp);
		conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		conn_flush(c);
		return;
	}
	free(c->login_text);
	c->login_text = NULL;
	c->login_text_len = 0;
	free(c->text_rsp);
	c->text_rsp = tc.rsp.buf;
	c->text_rsp_len = tc.rsp.len;
	c->text_rsp_off = 0;
	text_send_chunk(c, itt);
	conn_flush(c);
}
