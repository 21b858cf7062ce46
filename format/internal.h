/* SPDX-License-Identifier: MIT */
/*
 * Core-only declarations of libvdisk: error reporting, the chain, and helpers
 * shared by the drivers. Nothing here is part of the public API (vdisk.h).
 */
#ifndef FORMAT_INTERNAL_H
#define FORMAT_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vdisk.h"
#include "driver.h"

/*
 * Set the calling thread's last error: vd_set_error(EIO, "%s: block %llu: bad checksum", ...).
 * Returns -errnum so that `return vd_set_error(...)` reads naturally.
 */
int vd_set_error(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " (adding context on the way up). */
void vd_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Debug output, enabled per subsystem by VDISK_DEBUG=vdk,chain,... (stderr). */
bool vd_debug_enabled(const char *subsys);
void vd_debug_print(const char *subsys, const char *func, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define vd_debug(subsys, ...)                                                  \
	do {                                                                   \
		if (vd_debug_enabled(subsys)) {                                \
			vd_debug_print(subsys, __func__, __LINE__, __VA_ARGS__);\
		}                                                              \
	} while (0)

/* io.c: full-length I/O loops; return 0 or -errno (a short read past EOF is -EIO). */
int vd_full_pread(int fd, void *buf, size_t len, uint64_t off);
int vd_full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Like vd_full_pread but zero-fills past the end of the file. */
int vd_pread_zerofill(int fd, void *buf, size_t len, uint64_t off);
int vd_fdatasync(int fd);
/* Best-effort punch of a hole (keeps the file size); 0, or -EOPNOTSUPP. */
int vd_punch_hole(int fd, uint64_t off, uint64_t len);
/*
 * The file behind fd lives in memory (tmpfs, ramfs), so mapping it for I/O
 * without a copy is safe (no I/O error can become a SIGBUS), and
 * VDISK_NO_MAP=1 does not forbid it (vdk-map.c, raw.c).
 */
bool vd_fd_mappable(int fd);
/* The directory part of path (caller frees). */
char *vd_dirname(const char *path);
/* Resolve ref relative to the directory of base unless absolute (caller frees). */
char *vd_resolve_relative(const char *base, const char *ref);
/* Express target relative to the directory of base when possible (caller frees). */
char *vd_make_relative(const char *base, const char *target);
/* true if every byte of buf is zero. */
bool vd_is_zero(const void *buf, size_t len);

/* Lock the file: exclusive for writers, shared for readers. 0, or -EBUSY with a message. */
int vd_lock_fd(int fd, const char *path, bool exclusive);

/*
 * Call fn(arg, i) for every i in [0, n) on the library's worker threads and the
 * calling thread; return when all are done (format/pool.c). For CPU-bound work
 * within one request (AEAD); fn must not take image locks.
 */
void vd_pool_run(size_t n, void (*fn)(void *arg, size_t i), void *arg);
/*
 * open(2) for an image or one of its parts: O_CLOEXEC, and anything that is not
 * a regular file or a block device (a FIFO, a tty, /dev/zero) refused without
 * blocking. Returns the fd, or -errno with the error message set.
 */
int vd_open_file(const char *path, int flags);

#endif
