// SPDX-License-Identifier: MIT
/*
 * CRC32C for iSCSI digests. On x86-64 with SSE4.2 the crc32 instruction does
 * eight bytes per step; elsewhere a byte-wise table (built once, lazily) is used.
 * The digest goes on the wire in little-endian byte order (RFC 7143 §13.1,
 * the same order as the CRC's reflected polynomial), see conn.c.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "crc32c.h"

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void
crc32c_init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++) {
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		}
		crc32c_table[i] = c;
	}
}

static uint32_t
crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init_table);
	while (len--) {
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	}
	return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <string.h>

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len--) {
		crc = __builtin_ia32_crc32qi(crc, *p++);
	}
	return crc;
}

uint32_t
crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	static atomic_int have_hw = -1;	/* the loop and the workers may ask first */
	int hw = atomic_load_explicit(&have_hw, memory_order_relaxed);

	if (hw < 0) {
		__builtin_cpu_init();
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		atomic_store_explicit(&have_hw, hw, memory_order_relaxed);
	}
	return hw ? crc32c_hw(crc, buf, len) : crc32c_sw(crc, buf, len);
}
#else
uint32_t
crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}
#endif

uint32_t
crc32c(const void *buf, size_t len)
{
	return ~crc32c_update(0xffffffffu, buf, len);
}
