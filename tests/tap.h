/* SPDX-License-Identifier: MIT */
/*
 * Minimal TAP producer for the C unit tests, after git's t/unit-tests/test-lib.h.
 * plan(n) or done_testing() at the end; check*() print "ok N - ..." lines and
 * return whether they passed, so a test can stop early on a failed precondition.
 */
#ifndef TESTS_TAP_H
#define TESTS_TAP_H

#undef NDEBUG
#include <stdbool.h>
#include <stdint.h>

void plan(int n);
void skip_all(const char *why);
bool ok_(bool cond, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
bool check_int_(long long a, long long b, const char *as, const char *bs, const char *file,
		int line);
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the plan if none was given; returns the exit status for main(). */
int done_testing(void);

#define ok(cond, ...) ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define check(cond) ok_(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define check_int(a, b) check_int_((long long)(a), (long long)(b), #a, #b, __FILE__, __LINE__)

#endif
