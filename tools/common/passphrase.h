/* SPDX-License-Identifier: MIT */
/*
 * Where a passphrase comes from, for the CLI and vdiskfs: --key-file FILE,
 * --key-fd N, or else a prompt on the terminal without echo (and a clear error
 * when there is no terminal). Used as the library's vd_passphrase_fn.
 */
#ifndef TOOLS_COMMON_PASSPHRASE_H
#define TOOLS_COMMON_PASSPHRASE_H

#include <stddef.h>

struct vd_pass_src {
	const char *key_file;	/* NULL: not given */
	int key_fd;		/* -1: not given */
	int confirm;		/* ask twice on the terminal (new passphrases) */
	const char *prompt;	/* NULL: "Passphrase for PATH: " */
	/* The first passphrase obtained is cached (sodium_malloc'd) so a chain asks once. */
	char *cached;
};

/* vd_passphrase_fn: opaque is a struct vd_pass_src *. 0 or -errno (message set). */
int vd_pass_get(void *opaque, const char *path, char *buf, size_t size);
/* Wipe and free the cached passphrase. */
void vd_pass_src_clear(struct vd_pass_src *src);

#endif
