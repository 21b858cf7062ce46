/* SPDX-License-Identifier: MIT */
/*
 * A silent tgt_log() for the unit tests and fuzzers that build vdisk-target's
 * protocol and SCSI code without its main.c (which owns the real one).
 * Included once, after the target's sources.
 */
#ifndef VDISK_TARGET_LOG_STUB_H
#define VDISK_TARGET_LOG_STUB_H

int tgt_verbose;
void
tgt_log(int level, const char *func, int line, const char *fmt, ...)
{
	(void)level;
	(void)func;
	(void)line;
	(void)fmt;
}

#endif
