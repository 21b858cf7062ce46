/* SPDX-License-Identifier: MIT */
/*
 * Small helpers: byte order, rounding, checked arithmetic (after nbdkit's
 * common/include/byte-swapping.h, rounding.h and checked-overflow.h).
 */
#ifndef FORMAT_UTIL_H
#define FORMAT_UTIL_H

#include <endian.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define VD_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
/* Round down/up to a power-of-two alignment. */
#define VD_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a) - 1))
#define VD_ALIGN_UP(x, a) VD_ALIGN_DOWN((x) + (a) - 1, (a))
#define VD_DIV_ROUND_UP(x, d) (((x) + (d) - 1) / (d))

/* Checked arithmetic: true on overflow. */
#define VD_ADD_OVERFLOW(a, b, r) __builtin_add_overflow((a), (b), (r))
#define VD_MUL_OVERFLOW(a, b, r) __builtin_mul_overflow((a), (b), (r))

static inline uint16_t
vd_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16toh(v);
}

static inline uint32_t
vd_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t
vd_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline uint16_t
vd_be16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline uint32_t
vd_be32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline uint64_t
vd_be64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline void
vd_put_le16(void *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static inline void
vd_put_le32(void *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void
vd_put_le64(void *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline void
vd_put_be32(void *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void
vd_put_be64(void *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/*
 * Seconds since the epoch, as `date +%s` reads them. time(2) in glibc reads the
 * kernel's coarse clock, which can still show the previous second for up to a
 * tick after `date` (and a user) saw the new one.
 */
static inline int64_t
vd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* An environment switch (VDISK_NO_MAP=1 and the like): set, not empty and not "0". */
static inline bool
vd_env_flag(const char *name)
{
	const char *e = getenv(name);

	return e && *e && strcmp(e, "0") != 0;
}

/*
 * vd_env_flag read once and kept in *cache (initialised to -1), for switches
 * looked at on a hot path by several threads.
 */
static inline bool
vd_env_flag_once(atomic_int *cache, const char *name)
{
	int v = atomic_load_explicit(cache, memory_order_relaxed);

	if (v < 0) {
		v = vd_env_flag(name);
		atomic_store_explicit(cache, v, memory_order_relaxed);
	}
	return v;
}

/*
 * pthread_create with every signal blocked in the new thread: signals go to
 * the program's own threads (vdiskfs's receiving thread must see SIGTERM in
 * its read()), never to a helper of the library or of the daemon. Not the
 * signals of a faulting instruction: blocked, those kill the process even
 * where a handler would recover (vdk-map.c catches SIGBUS from a mapped file
 * that shrank).
 */
static inline int
vd_thread_start(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

#endif
