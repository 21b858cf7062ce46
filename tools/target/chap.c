// SPDX-License-Identifier: MIT
/*
 * CHAP helpers for the login (RFC 1994, RFC 7143 §12.1.3): MD5 from libmd (a
 * maintained library, not our own), and decoding of binary values, which iSCSI
 * writes either as hexadecimal "0x..." or base64 "0b...".
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <md5.h>

#include "target.h"

static int
chap_hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

static int
chap_b64val(char c)
{
	if (c >= 'A' && c <= 'Z') {
		return c - 'A';
	}
	if (c >= 'a' && c <= 'z') {
		return c - 'a' + 26;
	}
	if (c >= '0' && c <= '9') {
		return c - '0' + 52;
	}
	if (c == '+') {
		return 62;
	}
	if (c == '/') {
		return 63;
	}
	return -1;
}

int
chap_decode(const char *s, uint8_t *buf, size_t buflen)
{
	size_t n = 0;

	if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X' && s[1] != 'b' && s[1] != 'B')) {
		return -EINVAL;
	}
	if (s[1] == 'x' || s[1] == 'X') {
		const char *p = s + 2;
		size_t len = strlen(p);
		if (len == 0) {
			return -EINVAL;
		}
		if (len % 2) { /* an odd number of digits: leading nibble */
			int v = chap_hexval(*p++);
			if (v < 0 || buflen < 1) {
				return -EINVAL;
			}
			buf[n++] = (uint8_t)v;
		}
		for (; *p; p += 2) {
			int hi = chap_hexval(p[0]), lo = chap_hexval(p[1]);
			if (hi < 0 || lo < 0 || n >= buflen) {
				return -EINVAL;
			}
			buf[n++] = (uint8_t)(hi << 4 | lo);
		}
		return (int)n;
	}
	uint32_t acc = 0;
	int bits = 0;
	for (const char *p = s + 2; *p && *p != '='; p++) {
		int v = chap_b64val(*p);
		if (v < 0) {
			return -EINVAL;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= buflen) {
				return -EINVAL;
			}
			buf[n++] = (uint8_t)(acc >> bits);
		}
	}
	return n ? (int)n : -EINVAL;
}

void
chap_encode_hex(const uint8_t *buf, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	if (outlen < 3) {
		return;
	}
	out[o++] = '0';
	out[o++] = 'x';
	for (size_t i = 0; i < len && o + 3 <= outlen; i++) {
		snprintf(out + o, 3, "%02x", buf[i]);
		o += 2;
	}
	out[o] = '\0';
}

void
chap_md5_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
		  uint8_t resp[16])
{
	MD5_CTX ctx;
	MD5Init(&ctx);
	MD5Update(&ctx, &id, 1);
	MD5Update(&ctx, (const uint8_t *)secret, strlen(secret));
	MD5Update(&ctx, chal, chal_len);
	MD5Final(resp, &ctx);
}
