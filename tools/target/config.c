// SPDX-License-Identifier: MIT
/*
 * Configuration: the command-line one-liner and the config file both fill a
 * struct tgt_config (targets with portals, TPG states, LUN specs, CHAP and
 * ACL); tgt_config_check() validates it before anything is opened. The file
 * is INI-like, one "[target IQN]" section per target:
 *
 *   workers = 4
 *   tcp-congestion = auto            # auto, system or an algorithm (cubic...)
 *   [target iqn.2026-11.org.example:lab]
 *   portal = 127.0.0.1:3260          # ADDR:PORT[,TPGT], TPGT 1 by default
 *   tpg 2 = standby                  # ALUA state of a portal group
 *   lun 0 = /mnt/vm/disk             # N = PATH[,ro][,serial=TEXT]
 *   chap = user:secret
 *   mutual-chap = target-user:secret
 *   allow = iqn.1993-08.org.debian:01:host   # repeatable; none = everyone
 *
 * Also here: the ACL check and the relative target port numbering (the index
 * of a TPGT among the target's portal groups, plus one).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "target.h"

static void cfg_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
cfg_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
tgt_config_add_target(struct tgt_config *cfg, const char *iqn)
{
	struct tgt_config_target *nt =
		realloc(cfg->targets, sizeof(*nt) * (size_t)(cfg->ntargets + 1));
	if (!nt) {
		return -ENOMEM;
	}
	cfg->targets = nt;
	struct tgt_config_target *ct = &cfg->targets[cfg->ntargets++];
	memset(ct, 0, sizeof(*ct));
	snprintf(ct->t.iqn, sizeof(ct->t.iqn), "%s", iqn);
	return 0;
}

static bool
cfg_valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= TGT_NAME_MAX) {
		return false;
	}
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr(".-:", *p)) {
			return false;
		}
	}
	return !strncmp(s, "iqn.", 4) || !strncmp(s, "eui.", 4) || !strncmp(s, "naa.", 4);
}

/*
 * One initiator name of a target's ACL: a valid iSCSI name, or "*" (everyone).
 * Anything else could never match, and would shut every initiator out.
 */
/*
 * A target name in one of RFC 7143's formats (section 4.2.7.2):
 * iqn.YYYY-MM.naming-authority[:anything], eui. and 16 hex digits, naa. and
 * 16 or 32 hex digits. (Initiator names in allow stay loose: they must match
 * what an initiator sends, conforming or not.)
 */
static bool
cfg_valid_target_name(const char *s)
{
	size_t n = strlen(s), hex = 0;

	if (!cfg_valid_name(s)) {
		return false;
	}
	if (!strncmp(s, "iqn.", 4)) {
		/* iqn.2026-11.org.example[:x]: a date with a real month, then an authority */
		return n > 12 && isdigit((unsigned char)s[4]) && isdigit((unsigned char)s[5]) &&
		       isdigit((unsigned char)s[6]) && isdigit((unsigned char)s[7]) &&
		       s[8] == '-' && ((s[9] == '0' && s[10] >= '1' && s[10] <= '9') ||
				       (s[9] == '1' && s[10] >= '0' && s[10] <= '2')) &&
		       s[11] == '.' && isalnum((unsigned char)s[12]);
	}
	while (s[4 + hex] && isxdigit((unsigned char)s[4 + hex])) {
		hex++;
	}
	if (s[4 + hex] != '\0') {
		return false;
	}
	return !strncmp(s, "eui.", 4) ? hex == 16 : hex == 16 || hex == 32;
}

int
tgt_config_allow(struct tgt_config_target *ct, const char *name, char *err, size_t errlen)
{
	if (strcmp(name, "*") && !cfg_valid_name(name)) {
		snprintf(err, errlen,
			 "allow '%s': not an initiator name (iqn.YYYY-MM.domain[:x], eui., naa.) "
			 "nor *",
			 name);
		return -EINVAL;
	}
	if (ct->t.nacl >= TGT_MAX_ACL) {
		snprintf(err, errlen, "more than %d allow entries", TGT_MAX_ACL);
		return -EINVAL;
	}
	snprintf(ct->t.acl[ct->t.nacl++], TGT_NAME_MAX, "%s", name);
	return 0;
}

int
tgt_config_portal(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen)
{
	struct tgt_portal p = {.tpgt = 1};
	char tmp[128];
	char *host, *port, *tag;

	snprintf(tmp, sizeof(tmp), "%s", spec);
	tag = strchr(tmp, ',');
	if (tag) {
		*tag++ = '\0';
	}
	if (tmp[0] == '[') {
		host = tmp + 1;
		char *e = strchr(host, ']');
		if (!e) {
			cfg_err(err, errlen, "bad portal '%s'", spec);
			return -EINVAL;
		}
		*e = '\0';
		port = e[1] == ':' ? e + 2 : NULL;
	} else {
		host = tmp;
		port = strrchr(tmp, ':');
		if (port) {
			*port++ = '\0';
		}
	}
	char *pend = NULL, *tend = NULL;
	long pn = port ? strtol(port, &pend, 10) : 3260;
	if (!*host || pn <= 0 || pn > 65535 || (pend && *pend)) {
		cfg_err(err, errlen, "bad portal '%s' (want ADDR:PORT[,TPGT])", spec);
		return -EINVAL;
	}
	if (tmp[0] != '[' && strchr(host, ':')) {
		/* "::1" would be host "::", port 1 */
		cfg_err(err, errlen, "bad portal '%s' (an IPv6 address is written [ADDR]:PORT)",
			spec);
		return -EINVAL;
	}
	if (tag) {
		long t = strtol(tag, &tend, 10);
		if (t <= 0 || t > 65535 || *tend) {
			cfg_err(err, errlen, "bad TPGT in portal '%s'", spec);
			return -EINVAL;
		}
		p.tpgt = (uint16_t)t;
	}
	if (strlen(host) >= sizeof(p.host)) {
		cfg_err(err, errlen, "portal address too long in '%s'", spec);
		return -EINVAL;
	}
	memcpy(p.host, host, strlen(host) + 1);
	p.port = (int)pn;
	for (int i = 0; i < ct->t.nportals; i++) {
		/* one socket, one portal group: a second TPGT could never be reached */
		if (ct->t.portals[i].port == p.port && !strcmp(ct->t.portals[i].host, p.host)) {
			cfg_err(err, errlen, "portal %s given twice", spec);
			return -EINVAL;
		}
	}
	if (ct->t.nportals >= TGT_MAX_PORTALS) {
		cfg_err(err, errlen, "too many portals");
		return -E2BIG;
	}
	ct->t.portals[ct->t.nportals++] = p;
	return 0;
}

int
tgt_config_lun(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen)
{
	struct tgt_lun_spec *s;
	char tmp[4200];
	char *eq, *opt, *save = NULL;

	if (ct->nspecs >= TGT_MAX_LUNS) {
		cfg_err(err, errlen, "too many LUNs");
		return -E2BIG;
	}
	s = &ct->specs[ct->nspecs];
	memset(s, 0, sizeof(*s));
	snprintf(tmp, sizeof(tmp), "%s", spec);
	eq = strchr(tmp, '=');
	if (!eq) {
		cfg_err(err, errlen, "bad LUN '%s' (want N=PATH[,ro])", spec);
		return -EINVAL;
	}
	*eq = '\0';
	char *end;
	long n = strtol(tmp, &end, 10);
	if (*end || end == tmp || n < 0 || n > 16383) {
		cfg_err(err, errlen, "bad LUN number in '%s'", spec);
		return -EINVAL;
	}
	s->lun = (uint64_t)n;
	s->pbsize = 4096;
	char *path = strtok_r(eq + 1, ",", &save);
	if (!path || !*path) {
		cfg_err(err, errlen, "missing path in LUN '%s'", spec);
		return -EINVAL;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strcmp(opt, "ro")) {
			s->ro = true;
		} else if (!strcmp(opt, "rw")) {
			s->ro = false;
		} else if (!strncmp(opt, "pbsize=", 7)) {
			char *pend;
			long v = strtol(opt + 7, &pend, 10);
			if (*pend || v < 512 || v > 65536 || (v & (v - 1))) {
				cfg_err(err, errlen, "pbsize must be a power of two, 512..65536");
				return -EINVAL;
			}
			s->pbsize = (uint32_t)v;
		} else if (!strncmp(opt, "serial=", 7)) {
			if (!opt[7] || strlen(opt + 7) >= sizeof(s->serial)) {
				cfg_err(err, errlen, "serial= wants 1 to %zu characters",
					sizeof(s->serial) - 1);
				return -EINVAL;
			}
			snprintf(s->serial, sizeof(s->serial), "%s", opt + 7);
		} else {
			cfg_err(err, errlen, "unknown LUN option '%s'", opt);
			return -EINVAL;
		}
	}
	for (int i = 0; i < ct->nspecs; i++) {
		if (ct->specs[i].lun == s->lun) {
			cfg_err(err, errlen, "LUN %ld given twice", n);
			return -EINVAL;
		}
	}
	ct->nspecs++;
	return 0;
}

int
tgt_config_chap(struct tgt_chap *c, const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	if (!colon || colon == spec || !colon[1]) {
		cfg_err(err, errlen, "bad CHAP credentials (want USER:SECRET, neither empty)");
		return -EINVAL;
	}
	if ((size_t)(colon - spec) >= sizeof(c->user) || strlen(colon + 1) >= sizeof(c->secret)) {
		cfg_err(err, errlen, "CHAP %s longer than %zu characters",
			(size_t)(colon - spec) >= sizeof(c->user) ? "user name" : "secret",
			sizeof(c->secret) - 1);
		return -EINVAL;
	}
	if (strlen(colon + 1) < 12) {
		/* RFC 7143 §12.1.3 wants at least 96 bits; warn, do not refuse */
		tgt_info("warning: CHAP secret shorter than 12 characters");
	}
	memcpy(c->user, spec, (size_t)(colon - spec));
	c->user[colon - spec] = '\0';
	snprintf(c->secret, sizeof(c->secret), "%s", colon + 1);
	return 0;
}

static int
cfg_alua_state(const char *s)
{
	if (!strcmp(s, "active") || !strcmp(s, "active/optimized") || !strcmp(s, "optimized")) {
		return 0;
	}
	if (!strcmp(s, "non-optimized") || !strcmp(s, "active/non-optimized")) {
		return 1;
	}
	if (!strcmp(s, "standby")) {
		return 2;
	}
	if (!strcmp(s, "unavailable")) {
		return 3;
	}
	return -1;
}

int
tgt_config_tpg(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen)
{
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s", spec);
	char *eq = strchr(tmp, '=');
	if (!eq) {
		cfg_err(err, errlen, "bad TPG state '%s' (want TPGT=STATE)", spec);
		return -EINVAL;
	}
	*eq = '\0';
	long tag = strtol(tmp, NULL, 10);
	int st = cfg_alua_state(eq + 1);
	if (tag <= 0 || tag > 65535 || st < 0) {
		cfg_err(err, errlen,
			"bad TPG state '%s' (states: active, non-optimized, standby, "
			"unavailable)",
			spec);
		return -EINVAL;
	}
	for (int i = 0; i < ct->t.ntpgs; i++) {
		if (ct->t.tpgs[i].tag == tag) {
			ct->t.tpgs[i].alua_state = (uint8_t)st;
			return 0;
		}
	}
	if (ct->t.ntpgs >= TGT_MAX_TPGS) {
		cfg_err(err, errlen, "too many portal groups");
		return -E2BIG;
	}
	ct->t.tpgs[ct->t.ntpgs].tag = (uint16_t)tag;
	ct->t.tpgs[ct->t.ntpgs].alua_state = (uint8_t)st;
	ct->t.ntpgs++;
	return 0;
}

static char *
cfg_trim(char *s)
{
	while (isspace((unsigned char)*s)) {
		s++;
	}
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1])) {
		*--e = '\0';
	}
	return s;
}

/* The TCP congestion control setting: auto, system or an algorithm name. */
int
tgt_config_tcp_cc(struct tgt_config *cfg, const char *val, char *err, size_t errlen)
{
	size_t n = strlen(val);
	bool ok = n > 0 && n < sizeof(cfg->tcp_cc);
	for (size_t i = 0; ok && i < n; i++) {
		ok = islower((unsigned char)val[i]) || isdigit((unsigned char)val[i]) ||
		     val[i] == '_';
	}
	if (!ok) {
		cfg_err(err, errlen, "bad TCP congestion control '%s'", val);
		return -EINVAL;
	}
	snprintf(cfg->tcp_cc, sizeof(cfg->tcp_cc), "%s", val);
	return 0;
}

/* The number of I/O worker threads, 1..64 (`what` names the setting in the message). */
int
tgt_config_workers(struct tgt_config *cfg, const char *what, const char *val, char *err,
		   size_t errlen)
{
	char *end;
	long n = strtol(val, &end, 10);
	if (end == val || *end || n < 1 || n > 64) {
		cfg_err(err, errlen, "%s must be 1..64", what);
		return -EINVAL;
	}
	cfg->workers = (int)n;
	return 0;
}

int
tgt_config_parse_file(struct tgt_config *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[4400];
	int lineno = 0, r = 0;
	struct tgt_config_target *ct = NULL;
	char e2[256];

	if (!f) {
		cfg_err(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash) {
			*hash = '\0';
		}
		char *s = cfg_trim(line);
		if (!*s) {
			continue;
		}
		if (*s == '[') {
			char *e = strchr(s, ']');
			if (!e || strncmp(s, "[target ", 8)) {
				cfg_err(err, errlen, "%s:%d: want [target IQN]", path, lineno);
				r = -EINVAL;
				break;
			}
			*e = '\0';
			r = tgt_config_add_target(cfg, cfg_trim(s + 8));
			if (r < 0) {
				break;
			}
			ct = &cfg->targets[cfg->ntargets - 1];
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			cfg_err(err, errlen, "%s:%d: want KEY = VALUE", path, lineno);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		char *key = cfg_trim(s), *val = cfg_trim(eq + 1);
		e2[0] = '\0';
		if (!strcmp(key, "workers")) {
			r = tgt_config_workers(cfg, "workers", val, e2, sizeof(e2));
		} else if (!strcmp(key, "pidfile")) {
			snprintf(cfg->pidfile, sizeof(cfg->pidfile), "%s", val);
		} else if (!strcmp(key, "tcp-congestion")) {
			r = tgt_config_tcp_cc(cfg, val, e2, sizeof(e2));
		} else if (!ct) {
			snprintf(e2, sizeof(e2), "'%s' outside a [target] section", key);
			r = -EINVAL;
		} else if (!strcmp(key, "portal")) {
			r = tgt_config_portal(ct, val, e2, sizeof(e2));
		} else if (!strncmp(key, "lun ", 4) || !strncmp(key, "lun\t", 4)) {
			char spec[4400];
			snprintf(spec, sizeof(spec), "%s=%s", cfg_trim(key + 4), val);
			r = tgt_config_lun(ct, spec, e2, sizeof(e2));
		} else if (!strncmp(key, "tpg ", 4)) {
			char spec[128];
			snprintf(spec, sizeof(spec), "%s=%s", cfg_trim(key + 4), val);
			r = tgt_config_tpg(ct, spec, e2, sizeof(e2));
		} else if ((!strcmp(key, "chap") && ct->t.chap_on) ||
			   (!strcmp(key, "mutual-chap") && ct->t.mutual_on)) {
			/* the first would be ignored: an initiator set up with it is refused */
			snprintf(e2, sizeof(e2), "'%s' given twice (one USER:SECRET per target)", key);
			r = -EINVAL;
		} else if (!strcmp(key, "chap")) {
			r = tgt_config_chap(&ct->t.chap, val, e2, sizeof(e2));
			ct->t.chap_on = r == 0;
		} else if (!strcmp(key, "mutual-chap")) {
			r = tgt_config_chap(&ct->t.mutual, val, e2, sizeof(e2));
			ct->t.mutual_on = r == 0;
		} else if (!strcmp(key, "allow")) {
			r = tgt_config_allow(ct, val, e2, sizeof(e2));
		} else if (!strcmp(key, "alias")) {
			if (strlen(val) >= sizeof(ct->t.alias)) {
				snprintf(e2, sizeof(e2), "alias longer than %zu characters",
					 sizeof(ct->t.alias) - 1);
				r = -EINVAL;
			}
			snprintf(ct->t.alias, sizeof(ct->t.alias), "%s", val);
		} else {
			snprintf(e2, sizeof(e2), "unknown key '%s'", key);
			r = -EINVAL;
		}
		if (r < 0) {
			cfg_err(err, errlen, "%s:%d: %s", path, lineno, e2);
			break;
		}
	}
	fclose(f);
	return r;
}

int
tgt_config_check(struct tgt_config *cfg, char *err, size_t errlen)
{
	if (cfg->ntargets == 0) {
		cfg_err(err, errlen, "no target configured (--iqn or --config)");
		return -EINVAL;
	}
	for (int i = 0; i < cfg->ntargets; i++) {
		struct tgt_config_target *ct = &cfg->targets[i];
		struct tgt_target *t = &ct->t;
		if (!cfg_valid_target_name(t->iqn)) {
			cfg_err(err, errlen,
				"bad target name '%s' (want iqn.YYYY-MM.reversed.domain[:name], "
				"eui. and 16 hex digits, or naa. and 16 or 32)",
				t->iqn);
			return -EINVAL;
		}
		for (int j = 0; j < i; j++) {
			if (!strcmp(cfg->targets[j].t.iqn, t->iqn)) {
				cfg_err(err, errlen, "target %s given twice", t->iqn);
				return -EINVAL;
			}
		}
		if (t->nportals == 0) {
			tgt_config_portal(ct, "0.0.0.0:3260", err, errlen);
		}
		if (ct->nspecs == 0) {
			cfg_err(err, errlen, "target %s has no LUN", t->iqn);
			return -EINVAL;
		}
		if (t->mutual_on && !t->chap_on) {
			cfg_err(err, errlen, "target %s: mutual CHAP needs --chap too", t->iqn);
			return -EINVAL;
		}
		if (t->mutual_on && !strcmp(t->mutual.secret, t->chap.secret)) {
			cfg_err(err, errlen, "target %s: mutual CHAP secret must differ", t->iqn);
			return -EINVAL;
		}
		/* every portal's TPGT is a portal group; states default to active */
		for (int p = 0; p < t->nportals; p++) {
			bool have = false;
			for (int g = 0; g < t->ntpgs; g++) {
				have |= t->tpgs[g].tag == t->portals[p].tpgt;
			}
			if (!have) {
				if (t->ntpgs >= TGT_MAX_TPGS) {
					cfg_err(err, errlen, "too many portal groups");
					return -E2BIG;
				}
				t->tpgs[t->ntpgs].tag = t->portals[p].tpgt;
				t->tpgs[t->ntpgs].alua_state = 0;
				t->ntpgs++;
			}
		}
		for (int g = 0; g < t->ntpgs; g++) {
			bool used = false;
			for (int p = 0; p < t->nportals; p++) {
				used |= t->tpgs[g].tag == t->portals[p].tpgt;
			}
			if (!used) {
				cfg_err(err, errlen, "target %s: tpg %u has no portal", t->iqn,
					t->tpgs[g].tag);
				return -EINVAL;
			}
		}
	}
	return 0;
}

void
tgt_config_free(struct tgt_config *cfg)
{
	free(cfg->targets);
	cfg->targets = NULL;
	cfg->ntargets = 0;
}

bool
tgt_target_allows(const struct tgt_target *t, const char *initiator)
{
	if (t->nacl == 0) {
		return true;
	}
	for (int i = 0; i < t->nacl; i++) {
		if (!strcasecmp(t->acl[i], initiator) || !strcmp(t->acl[i], "*")) {
			return true;
		}
	}
	return false;
}

uint16_t
tgt_target_rtpi(const struct tgt_target *t, uint16_t tpgt)
{
	for (int i = 0; i < t->ntpgs; i++) {
		if (t->tpgs[i].tag == tpgt) {
			return (uint16_t)(i + 1);
		}
	}
	return 1;
}
