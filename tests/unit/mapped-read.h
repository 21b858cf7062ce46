/* SPDX-License-Identifier: MIT */
/*
 * Test helper: read a range through vd_pread_map and gather the pieces into a
 * buffer, so that tests can compare the mapped path with vd_pread and with
 * their models. Counts the reads it served and those the library left to
 * vd_pread (-EAGAIN).
 */
#ifndef TESTS_MAPPED_READ_H
#define TESTS_MAPPED_READ_H

#include <errno.h>
#include <string.h>

#include "tap.h"
#include "vdisk.h"

static unsigned long mapped_reads, mapped_again;
static struct vd_mapped mapped;

/* 0: buf holds the range; 1: -EAGAIN (nothing read); <0: the library's error (or pieces gone wrong). */
static int
read_mapped(struct vd_image *img, uint8_t *buf, size_t len, uint64_t off)
{
	int r = vd_pread_map(img, len, off, &mapped);
	size_t got = 0;

	if (r == -EAGAIN) {
		mapped_again++;
		return 1;
	}
	if (r < 0) {
		return r;
	}
	for (int i = 0; i < mapped.niov; i++) {
		if (got + mapped.iov[i].iov_len > len) {
			diag("mapped read %llu+%zu: pieces longer than the read", (unsigned long long)off,
			     len);
			vd_pread_map_done(&mapped);
			return -EFAULT;
		}
		memcpy(buf + got, mapped.iov[i].iov_base, mapped.iov[i].iov_len);
		got += mapped.iov[i].iov_len;
	}
	vd_pread_map_done(&mapped);
	mapped_reads++;
	if (got != len) {
		diag("mapped read %llu+%zu: %zu bytes in pieces", (unsigned long long)off, len, got);
		return -EFAULT;
	}
	return 0;
}

#endif
