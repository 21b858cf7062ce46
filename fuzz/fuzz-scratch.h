/* SPDX-License-Identifier: MIT */
/*
 * A scratch folder of small real files for harnesses whose inputs name other
 * files (fuzz-vmdk.c: extents and a .vmsd; fuzz-open.c: backing files): made
 * once in LLVMFuzzerInitialize, removed with its files at exit.
 */
#ifndef FUZZ_SCRATCH_H
#define FUZZ_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char scratch[64];
static const char *const *scratch_names;	/* NULL-terminated, removed at exit */

static void
scratch_put(const char *name, const void *buf, size_t len)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", scratch, name);
	f = fopen(p, "wb");
	if (f) {
		fwrite(buf, 1, len, f);
		fclose(f);
	}
}

static void
scratch_cleanup(void)
{
	char p[128];

	for (size_t i = 0; scratch_names && scratch_names[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", scratch, scratch_names[i]);
		unlink(p);
	}
	rmdir(scratch);
}

/* Make the folder from TEMPLATE (mkdtemp's "...XXXXXX"); false if it cannot. */
static int
scratch_make(const char *tmpl, const char *const *names)
{
	snprintf(scratch, sizeof(scratch), "%s", tmpl);
	if (!mkdtemp(scratch)) {
		scratch[0] = '\0';
		return 0;
	}
	scratch_names = names;
	atexit(scratch_cleanup);
	return 1;
}

#endif
