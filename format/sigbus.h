// SPDX-License-Identifier: MIT
/*
 * A guard for loads and stores into a mapping of a file that another program
 * may truncate meanwhile: a SIGBUS there jumps back to the guarded access,
 * which then fails with an error instead of killing the process.
 *
 * Design notes. Header-only, with the handler's state static: the library's
 * mapped image I/O (format/vdk-map.c) and vdisk-target's mapped LUNs
 * (tools/target/backing.c, which does not link the library) each include it
 * in one file. A guarded access:
 *
 *	sigjmp_buf jb;
 *
 *	if (sigsetjmp(jb, 0)) {
 *		vd_bus_jmp = NULL;
 *		return -EFAULT;			(the pages are gone)
 *	}
 *	vd_bus_jmp = &jb;
 *	memcpy(...);				(no lock taken in between)
 *	vd_bus_jmp = NULL;
 *
 * vd_bus_install() once (pthread_once) before the first access. A SIGBUS with
 * no guarded access on its thread is not ours: the handler that was there
 * before runs, or the default action kills the process as it would have. A
 * thread that blocks SIGBUS cannot be saved (the kernel kills the process):
 * threads must leave the fault signals unblocked (vd_thread_start does).
 */
#ifndef VD_SIGBUS_H
#define VD_SIGBUS_H

#include <setjmp.h>
#include <signal.h>
#include <string.h>

/* The guarded access running on this thread; volatile: the handler reads it. */
static __thread sigjmp_buf *volatile vd_bus_jmp;
static struct sigaction vd_bus_old;

static void
vd_bus_on_signal(int sig, siginfo_t *si, void *uc)
{
	if (vd_bus_jmp) {
		siglongjmp(*vd_bus_jmp, 1);	/* SA_NODEFER: nothing stays blocked */
	}
	if ((vd_bus_old.sa_flags & SA_SIGINFO) && vd_bus_old.sa_sigaction) {
		vd_bus_old.sa_sigaction(sig, si, uc);
	} else if (vd_bus_old.sa_handler != SIG_DFL && vd_bus_old.sa_handler != SIG_IGN) {
		vd_bus_old.sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);	/* the access faults again, and the process dies */
	}
}

static inline void
vd_bus_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = vd_bus_on_signal;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &vd_bus_old);
}

#endif
