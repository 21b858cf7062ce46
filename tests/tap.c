// SPDX-License-Identifier: MIT
/* Minimal TAP producer: see tap.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tap.h"

static int tap_count, tap_failed, tap_planned = -1;

void
plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

void
skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

void
diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("# ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
}

bool
ok_(bool cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("%sok %d - ", cond ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

bool
check_int_(long long a, long long b, const char *as, const char *bs, const char *file, int line)
{
	bool r = ok_(a == b, file, line, "%s == %s", as, bs);

	if (!r) {
		printf("#   left: %lld\n#  right: %lld\n", a, b);
	}
	return r;
}

int
done_testing(void)
{
	if (tap_planned < 0) {
		printf("1..%d\n", tap_count);
	}
	fflush(stdout);
	return tap_failed ? 1 : 0;
}
