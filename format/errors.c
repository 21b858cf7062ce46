// SPDX-License-Identifier: MIT
/*
 * Thread-local "last error" (after libnbd lib/errors.c): the library never
 * writes to stderr; callers print vd_get_error().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "util.h"

#define VD_ERRLEN 1024

static _Thread_local char vd_errbuf[VD_ERRLEN];
static _Thread_local int vd_errnum;

const char *
vd_get_error(void)
{
	if (vd_errbuf[0] == '\0' && vd_errnum) {
		return strerror(vd_errnum);
	}
	return vd_errbuf;
}

int
vd_get_errno(void)
{
	return vd_errnum;
}

int
vd_set_error(int errnum, const char *fmt, ...)
{
	va_list ap;

	if (errnum < 0) {
		errnum = -errnum;
	}
	va_start(ap, fmt);
	vsnprintf(vd_errbuf, sizeof(vd_errbuf), fmt, ap);
	va_end(ap);
	vd_errnum = errnum;
	return -errnum;
}

void
vd_error_prefix(const char *fmt, ...)
{
	char old[VD_ERRLEN];
	size_t n;
	va_list ap;

	memcpy(old, vd_errbuf, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(vd_errbuf, sizeof(vd_errbuf), fmt, ap);
	va_end(ap);
	n = strlen(vd_errbuf);
	if (n + 2 < sizeof(vd_errbuf)) {
		memcpy(vd_errbuf + n, ": ", 3);
		n += 2;
		size_t m = strnlen(old, sizeof(old) - 1);

		if (m > sizeof(vd_errbuf) - n - 1) {
			m = sizeof(vd_errbuf) - n - 1;
		}
		memcpy(vd_errbuf + n, old, m);
		vd_errbuf[n + m] = '\0';
	}
}

bool
vd_debug_enabled(const char *subsys)
{
	static const char *flags;
	static int init;
	const char *p;
	size_t n = strlen(subsys);

	if (!init) {
		flags = getenv("VDISK_DEBUG");
		init = 1;
	}
	if (!flags) {
		return false;
	}
	for (p = flags; (p = strstr(p, subsys)) != NULL; p += n) {
		if ((p == flags || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) {
			return true;
		}
	}
	return strcmp(flags, "all") == 0;
}

void
vd_debug_print(const char *subsys, const char *func, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vdisk: debug: %s: %s:%d: ", subsys, func, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
