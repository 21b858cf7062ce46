// SPDX-License-Identifier: MIT
/*
 * vdiskfs: the reply to OPEN, with the one open flag libfuse 3.14 cannot say.
 *
 * Design notes. The kernel (6.2 and later) runs concurrent O_DIRECT writes to
 * one file in parallel only if the server answered the open with
 * FOPEN_PARALLEL_DIRECT_WRITES (and FOPEN_DIRECT_IO); otherwise it holds the
 * inode lock across each write and four writers are served one at a time.
 * libfuse's high-level API builds the OPEN reply from struct fuse_file_info,
 * which in libfuse 3.14 (Debian 12) has no bit for that flag (3.15 added
 * `parallel_direct_writes`).
 *
 * So vdiskfs defines fuse_reply_open itself. The dynamic linker binds
 * libfuse's own call (through its PLT) to this definition (symbol
 * interposition), which sends exactly the struct fuse_open_out that libfuse
 * would (the same fields from fuse_file_info, through fuse_reply_buf, which
 * sends a reply the same way) and adds FOPEN_PARALLEL_DIRECT_WRITES to every
 * direct_io open (ops.c, DIRECT I/O, says which opens of disk are). The
 * library's worker threads and vd_pwrite are made for concurrent writers. A
 * kernel that does not know the flag ignores it. The effect is measured by
 * scripts/bench-fs.sh (O_DIRECT random writes with 4 jobs); t0309 tests the
 * cache coherence around it.
 */
#include <string.h>

#include <linux/fuse.h>

#include "vdiskfs.h"

#include <fuse_lowlevel.h>

int
fuse_reply_open(fuse_req_t req, const struct fuse_file_info *f)
{
	struct fuse_open_out arg;

	memset(&arg, 0, sizeof(arg));
	arg.fh = f->fh;
	if (f->direct_io) {
		arg.open_flags |= FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	}
	if (f->keep_cache) {
		arg.open_flags |= FOPEN_KEEP_CACHE;
	}
	if (f->cache_readdir) {
		arg.open_flags |= FOPEN_CACHE_DIR;
	}
	if (f->nonseekable) {
		arg.open_flags |= FOPEN_NONSEEKABLE;
	}
	if (f->noflush) {
		arg.open_flags |= FOPEN_NOFLUSH;
	}
	return fuse_reply_buf(req, (const char *)&arg, sizeof(arg));
}
