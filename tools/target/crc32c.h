/* SPDX-License-Identifier: MIT */
/*
 * CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 §13.1).
 */
#ifndef TARGET_CRC32C_H
#define TARGET_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC32C over buf; start with crc = 0xffffffff, finish with ~crc. */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);
/* The iSCSI digest of one buffer (initial ~0, final inversion), host order. */
uint32_t crc32c(const void *buf, size_t len);

#endif
