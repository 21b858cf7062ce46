// SPDX-License-Identifier: MIT
/*
 * POSIX I/O helpers used by every driver: full-length pread/pwrite loops,
 * hole punching, file locks and path arithmetic for backing references.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "internal.h"
#include "util.h"

int
vd_full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (r == 0) {
			return -EIO;	/* short file */
		}
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int
vd_pread_zerofill(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		if (r == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int
vd_full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int
vd_fdatasync(int fd)
{
	while (fdatasync(fd) < 0) {
		if (errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

bool
vd_fd_mappable(int fd)
{
	struct statfs sf;

	if (vd_env_flag("VDISK_NO_MAP")) {
		return false;
	}
	return fstatfs(fd, &sf) == 0 && (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC);
}

int
vd_punch_hole(int fd, uint64_t off, uint64_t len)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0) {
		return -errno;
	}
	return 0;
}

bool
vd_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	/* Check the first 16 bytes, then compare the buffer with itself shifted. */
	for (i = 0; i < len && i < 16; i++) {
		if (p[i]) {
			return false;
		}
	}
	return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

int
vd_open_file(const char *path, int flags)
{
	struct stat st;
	int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		int e = errno;

		if ((flags & O_ACCMODE) == O_RDWR && (e == EACCES || e == EROFS)) {
			return vd_set_error(e, "%s: cannot open for writing: %s", path, strerror(e));
		}
		return vd_set_error(e, "%s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return vd_set_error(e, "%s: %s", path, strerror(e));
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return vd_set_error(EISDIR, "%s: is a directory", path);
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return vd_set_error(EINVAL, "%s: not a disk image (neither a regular file nor a "
					    "block device)", path);
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		return vd_set_error(e, "%s: %s", path, strerror(e));
	}
	return fd;
}

int
vd_lock_fd(int fd, const char *path, bool exclusive)
{
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			return vd_set_error(EBUSY, "%s: image is in use by another %s (locked)", path,
					    exclusive ? "program" : "writer");
		}
		return vd_set_error(errno, "%s: cannot lock: %s", path, strerror(errno));
	}
	return 0;
}

char *
vd_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		return strdup(".");
	}
	if (slash == path) {
		return strdup("/");
	}
	return strndup(path, (size_t)(slash - path));
}

char *
vd_resolve_relative(const char *base, const char *ref)
{
	char *dir, *out;

	if (ref[0] == '/') {
		return strdup(ref);
	}
	dir = vd_dirname(base);
	if (!dir) {
		return NULL;
	}
	if (strcmp(dir, ".") == 0) {
		out = strdup(ref);
	} else if (asprintf(&out, "%s/%s", dir, ref) < 0) {
		out = NULL;
	}
	free(dir);
	return out;
}

char *
vd_make_relative(const char *base, const char *target)
{
	char bdir[PATH_MAX], tabs[PATH_MAX], *d, *out;
	const char *b, *t;
	size_t common = 0, i, ups = 0;

	d = vd_dirname(base);
	if (!d) {
		return NULL;
	}
	if (!realpath(d, bdir) || !realpath(target, tabs)) {
		free(d);
		return strdup(target);
	}
	free(d);
	/* Longest common directory prefix. */
	for (i = 0; bdir[i] && bdir[i] == tabs[i]; i++) {
		if (bdir[i] == '/') {
			common = i;
		}
	}
	if (bdir[i] == '\0' && tabs[i] == '/') {
		common = i;
	}
	b = bdir + common;
	t = tabs + common + 1;
	for (; *b; b++) {
		if (*b == '/') {
			ups++;
		}
	}
	out = malloc(ups * 3 + strlen(t) + 1);
	if (!out) {
		return NULL;
	}
	out[0] = '\0';
	for (i = 0; i < ups; i++) {
		strcat(out, "../");
	}
	strcat(out, t);
	return out;
}
