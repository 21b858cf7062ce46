// SPDX-License-Identifier: MIT
/*
 * vdiskfs: nested I/O on our own disk file, from a helper process.
 *
 * Design notes. With the kernel's writeback cache on disk (ops.c, CACHING),
 * the daemon sometimes needs the kernel to write disk's dirty pages back into
 * the image before it goes on: before a snapshot (fsync of disk), before a
 * partition request or a partition-table read (sync_file_range of a range),
 * and after a write through a partition (drop disk's cached pages there,
 * posix_fadvise DONTNEED). That means opening MOUNTPOINT/disk and waiting for
 * WRITE requests that our own worker threads serve.
 *
 * Those waits are uninterruptible in the kernel (waiting for page write-back).
 * Done by a thread of the daemon, a SIGKILL of the daemon would leave that
 * thread waiting for requests nobody can serve any more, the daemon a zombie
 * holding /dev/fuse, and the mount hung. So a helper process does them: the
 * daemon starts it on first use (fork + exec of /proc/self/exe, every
 * inherited descriptor closed, so it holds neither /dev/fuse nor the image's
 * lock) and talks to it over a socketpair; a request thread waits in a plain
 * read(), which SIGKILL ends. If the daemon dies, /dev/fuse closes, the kernel
 * aborts the connection, the helper's waits fail and it exits on EOF.
 *
 * Opens of disk by the helper are answered with keep_cache (ops.c): an open
 * without it drops disk's whole page cache (and waits for its write-back).
 * One operation at a time (a mutex); the helper checks that the file it
 * opened is on our mount (st_dev).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include "vdiskfs.h"

#define NESTED_ARGV0 "vdiskfs-nested"
#define NESTED_FD 3

struct nested_req {
	int op;
	uint64_t off, len;
};

static pthread_mutex_t nested_lock = PTHREAD_MUTEX_INITIALIZER;
static int nested_sock = -1; /* protected by nested_lock */

static int
full_io(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return n == 0 ? -EPIPE : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Start the helper; nested_lock held. */
static int
nested_start(struct vdfs *fs)
{
	char path[PATH_MAX];
	uint64_t dev = fs->mnt_dev;
	uint32_t plen;
	int sv[2];
	pid_t pid;

	if (snprintf(path, sizeof(path), "%s/disk", fs->mountpoint) >= (int)sizeof(path)) {
		return -ENAMETOOLONG;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	if (pid == 0) {
		char *argv[] = {NESTED_ARGV0, NULL};

		/* Only the socket, as fd 3 (dup2 clears CLOEXEC); nothing else is inherited. */
		if (dup2(sv[1], NESTED_FD) < 0) {
			_exit(127);
		}
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(sv[1]);
	plen = (uint32_t)strlen(path);
	if (full_io(sv[0], &dev, sizeof(dev), true) < 0 ||
	    full_io(sv[0], &plen, sizeof(plen), true) < 0 || full_io(sv[0], path, plen, true) < 0) {
		close(sv[0]);
		waitpid(pid, NULL, 0);
		return -EIO;
	}
	nested_sock = sv[0];
	atomic_store(&fs->nested_pid, pid);
	return 0;
}

int
vdfs_nested(struct vdfs *fs, int op, uint64_t off, uint64_t len)
{
	struct nested_req rq = {.op = op, .off = off, .len = len};
	int32_t ret = 0;
	int r;

	pthread_mutex_lock(&nested_lock);
	if (nested_sock < 0) {
		r = nested_start(fs);
		if (r < 0) {
			pthread_mutex_unlock(&nested_lock);
			vdfs_log(fs, "starting the write-back helper: %s", strerror(-r));
			return r;
		}
	}
	r = full_io(nested_sock, &rq, sizeof(rq), true);
	if (r == 0) {
		r = full_io(nested_sock, &ret, sizeof(ret), false);
	}
	if (r < 0) {
		/* The helper is gone: start a new one next time. */
		close(nested_sock);
		nested_sock = -1;
		waitpid(atomic_exchange(&fs->nested_pid, 0), NULL, 0);
		ret = r;
	}
	pthread_mutex_unlock(&nested_lock);
	if (ret < 0) {
		vdfs_log(fs, "writing back disk's cache: %s", strerror(-ret));
	}
	return ret;
}

void
vdfs_nested_stop(struct vdfs *fs)
{
	pid_t pid;

	pthread_mutex_lock(&nested_lock);
	if (nested_sock >= 0) {
		close(nested_sock); /* EOF: the helper exits */
		nested_sock = -1;
		pid = atomic_exchange(&fs->nested_pid, 0);
		if (pid > 0) {
			waitpid(pid, NULL, 0);
		}
	}
	pthread_mutex_unlock(&nested_lock);
}

bool
vdfs_nested_is_helper(const char *argv0)
{
	return argv0 && strcmp(argv0, NESTED_ARGV0) == 0;
}

/* The helper process: one request at a time from fd 3 until EOF. */
int
vdfs_nested_main(void)
{
	char path[PATH_MAX];
	uint64_t dev;
	uint32_t plen;
	struct nested_req rq;

	/* Nothing but stdio and the socket: never /dev/fuse or the image. */
	close_range(NESTED_FD + 1, ~0u, 0);
	signal(SIGPIPE, SIG_IGN);
	if (full_io(NESTED_FD, &dev, sizeof(dev), false) < 0 ||
	    full_io(NESTED_FD, &plen, sizeof(plen), false) < 0 || plen >= sizeof(path) ||
	    full_io(NESTED_FD, path, plen, false) < 0) {
		return 1;
	}
	path[plen] = '\0';
	while (full_io(NESTED_FD, &rq, sizeof(rq), false) == 0) {
		struct stat st;
		int32_t ret = 0;
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			ret = -errno;
		} else if (dev && (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != dev)) {
			ret = -EIO; /* something is mounted over the mountpoint */
		} else if (rq.op == VDFS_NESTED_FSYNC) {
			ret = fsync(fd) < 0 ? -errno : 0;
		} else {
			if ((rq.op & VDFS_NESTED_SYNC) &&
			    sync_file_range(fd, (off_t)rq.off, (off_t)rq.len,
					    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						    SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
				ret = -errno;
			}
			if (ret == 0 && (rq.op & VDFS_NESTED_DROP)) {
				/* Clean pages only, without waiting on any. */
				posix_fadvise(fd, (off_t)rq.off, (off_t)rq.len, POSIX_FADV_DONTNEED);
			}
		}
		if (fd >= 0) {
			close(fd);
		}
		if (full_io(NESTED_FD, &ret, sizeof(ret), true) < 0) {
			break;
		}
	}
	return 0;
}
