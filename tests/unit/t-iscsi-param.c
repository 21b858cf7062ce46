// SPDX-License-Identifier: MIT
/*
 * vdisk-target text keys, CHAP helpers and CRC32C: key=value parsing of
 * hostile data segments, negotiation results for every operational key, CHAP
 * value decoding and the MD5 response, and the CRC32C test vectors of RFC 3720
 * appendix B.4 (after SPDK's param_ut.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "../../tools/target/chap.c"
#include "../../tools/target/crc32c.c"
#include "../../tools/target/param.c"

#include "../target-log-stub.h"

struct kv {
	int n;
	char k[8][64];
	char v[8][256];
};

static int
collect(char *key, char *val, void *arg)
{
	struct kv *kv = arg;
	if (kv->n < 8) {
		snprintf(kv->k[kv->n], 64, "%s", key);
		snprintf(kv->v[kv->n], 256, "%s", val);
		kv->n++;
	}
	return 0;
}

/* Negotiate one key on fresh defaults; the answer for that key in ans. */
static void
nego(struct iscsi_params *p, const char *key, const char *val, bool disc, char *ans, size_t alen)
{
	struct text_buf tb;
	struct kv kv = {0};
	text_buf_init(&tb);
	if (!param_negotiate(p, key, val, disc, &tb)) {
		snprintf(ans, alen, "(unknown)");
		text_buf_free(&tb);
		return;
	}
	text_parse(tb.buf, tb.len, collect, &kv);
	snprintf(ans, alen, "%s", kv.n ? kv.v[0] : "(none)");
	text_buf_free(&tb);
}

#define NEGO_IS(key, val, want)                                                                    \
	do {                                                                                       \
		char a_[256];                                                                      \
		nego(&p, key, val, false, a_, sizeof(a_));                                         \
		ok(!strcmp(a_, want), "%s=%s -> %s (got %s)", key, val, want, a_);                 \
	} while (0)

int
main(void)
{
	struct iscsi_params p;
	struct kv kv;

	/* parsing */
	char t1[] = "A=1\0B=two\0C=\0";
	memset(&kv, 0, sizeof(kv));
	check_int(text_parse(t1, sizeof(t1) - 1, collect, &kv), 0);
	check_int(kv.n, 3);
	check(!strcmp(kv.k[1], "B") && !strcmp(kv.v[1], "two"));
	check(!strcmp(kv.k[2], "C") && !strcmp(kv.v[2], ""));
	char t2[] = "A=1\0B=unterminated";
	memset(&kv, 0, sizeof(kv));
	check_int(text_parse(t2, sizeof(t2) - 1, collect, &kv), -EINVAL);
	char t3[] = "novalue\0";
	check_int(text_parse(t3, sizeof(t3) - 1, collect, &kv), -EINVAL);
	char t4[] = "=x\0";
	check_int(text_parse(t4, sizeof(t4) - 1, collect, &kv), -EINVAL);
	char t5[] = "A=1\0\0\0\0";
	memset(&kv, 0, sizeof(kv));
	check_int(text_parse(t5, sizeof(t5) - 1, collect, &kv), 0);
	check_int(kv.n, 1);

	/* negotiation */
	param_defaults(&p);
	NEGO_IS("HeaderDigest", "CRC32C,None", "CRC32C");
	check(p.header_digest);
	NEGO_IS("HeaderDigest", "None,CRC32C", "None");
	check(!p.header_digest);
	NEGO_IS("DataDigest", "MD5,CRC32C", "CRC32C");
	NEGO_IS("DataDigest", "MD5", "Reject");
	NEGO_IS("InitialR2T", "Yes", "Yes");
	check(p.initial_r2t);
	NEGO_IS("InitialR2T", "No", "No");
	check(!p.initial_r2t);
	NEGO_IS("ImmediateData", "No", "No");
	check(!p.immediate_data);
	NEGO_IS("ImmediateData", "Yes", "Yes");
	NEGO_IS("ImmediateData", "Maybe", "Reject");
	NEGO_IS("MaxBurstLength", "262144", "262144");
	check_int(p.max_burst, 262144);
	NEGO_IS("MaxBurstLength", "16777215", "16776192");
	NEGO_IS("MaxBurstLength", "100", "Reject");
	NEGO_IS("MaxBurstLength", "-5", "Reject");
	NEGO_IS("MaxBurstLength", "12abc", "Reject");
	NEGO_IS("MaxBurstLength", "0x10000", "65536");
	NEGO_IS("FirstBurstLength", "1048576", "1048576");
	param_finish(&p);
	check_int(p.first_burst, 65536); /* clamped to MaxBurstLength */
	NEGO_IS("MaxOutstandingR2T", "64", "16");
	NEGO_IS("MaxConnections", "8", "1");
	NEGO_IS("ErrorRecoveryLevel", "2", "0");
	NEGO_IS("DefaultTime2Wait", "0", "2");
	NEGO_IS("DefaultTime2Retain", "60", "20");
	NEGO_IS("DataPDUInOrder", "No", "Yes");
	NEGO_IS("DataSequenceInOrder", "No", "Yes");
	NEGO_IS("IFMarker", "Yes", "No");
	NEGO_IS("OFMarkInt", "2048~8192", "Irrelevant");
	NEGO_IS("X-com.example.Foo", "1", "(unknown)");
	param_defaults(&p);
	NEGO_IS("MaxRecvDataSegmentLength", "65536", "262144");
	check_int(p.max_xmit_dsl, 65536);
	param_finish(&p);
	check_int(p.max_recv_dsl, TGT_MAX_RECV_DSL);
	NEGO_IS("MaxRecvDataSegmentLength", "100", "Reject");
	char a[64];
	nego(&p, "MaxBurstLength", "65536", true, a, sizeof(a));
	ok(!strcmp(a, "Irrelevant"), "session-only key in a discovery session is Irrelevant");

	struct text_buf tb;
	text_buf_init(&tb);
	char big[900];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 200; i++) {
		text_add(&tb, "K", "%s", big);
	}
	ok(tb.overflow && tb.len <= ISCSI_TEXT_MAX, "text answer is bounded");
	text_buf_free(&tb);

	/* CHAP */
	uint8_t buf[64];
	check_int(chap_decode("0x0a0B", buf, sizeof(buf)), 2);
	check(buf[0] == 0x0a && buf[1] == 0x0b);
	check_int(chap_decode("0xabc", buf, sizeof(buf)), 2);
	check(buf[0] == 0x0a && buf[1] == 0xbc);
	check_int(chap_decode("0bAQID", buf, sizeof(buf)), 3);
	check(buf[0] == 1 && buf[1] == 2 && buf[2] == 3);
	check_int(chap_decode("0xzz", buf, sizeof(buf)), -EINVAL);
	check_int(chap_decode("1234", buf, sizeof(buf)), -EINVAL);
	check_int(chap_decode("0x", buf, sizeof(buf)), -EINVAL);
	check_int(chap_decode("0x0102030405", buf, 2), -EINVAL);
	uint8_t chal[16], resp[16];
	for (int i = 0; i < 16; i++) {
		chal[i] = (uint8_t)i;
	}
	chap_md5_response(7, "secret-of-12", chal, 16, resp);
	char hex[40];
	chap_encode_hex(resp, 16, hex, sizeof(hex));
	ok(!strcmp(hex, "0xf3d85c26a067a3be375f2c6816495e6c"), "CHAP MD5 response (%s)", hex);

	/* CRC32C: "123456789" and RFC 3720 B.4 vectors */
	check_int(crc32c("123456789", 9), 0xe3069283);
	uint8_t z[32] = {0}, f[32], inc[32];
	memset(f, 0xff, sizeof(f));
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
	}
	check_int(crc32c(z, 32), 0x8a9136aa);
	check_int(crc32c(f, 32), 0x62a8ab43);
	check_int(crc32c(inc, 32), 0x46dd794e);
	check_int(crc32c_sw(0xffffffffu, inc, 32) ^ 0xffffffffu, 0x46dd794e);
	return done_testing();
}
