/* SPDX-License-Identifier: MIT */
/*
 * Shared declarations of the `vdisk` command-line tool: the command table
 * (main.c), one handler per subcommand (cmd-*.c) and the small helpers they
 * share (common.c): error printing, opening an image with the global key
 * source, size parsing and formatting, and a minimal JSON writer.
 * The tool uses only the public library API, format/vdisk.h.
 */
#ifndef TOOLS_VDISK_CLI_H
#define TOOLS_VDISK_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vdisk.h"
#include "../common/passphrase.h"

/* Exit statuses (the first three as qemu-img check). */
#define VDISK_EXIT_OK 0
#define VDISK_EXIT_ERROR 1
#define VDISK_EXIT_CORRUPT 2

/* getopt_long codes of the long-only options, shared by the commands. */
enum {
	OPT_BLOCK_SIZE = 256,
	OPT_ENCRYPT,
	OPT_CIPHER,
	OPT_PW_OPS,
	OPT_PW_MEM,
	OPT_RANDOM,
	OPT_PATTERN,
	OPT_NEW_FILE,
	OPT_NEW_FD,
};

struct vdisk_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis; /* usage line(s) after "vdisk " */
	const char *summary;  /* one line for `vdisk --help` */
	const char *options;  /* option help for `vdisk CMD --help`, may be NULL */
};

/* The command table and the help printer (main.c). */
extern const struct vdisk_cmd vdisk_cmds[];
const struct vdisk_cmd *vdisk_cmd_find(const char *name);
/* Print the usage of cmd (full with options when verbose) to f. */
void vdisk_cmd_usage(FILE *f, const struct vdisk_cmd *cmd, bool verbose);
/* Usage error: message and one usage line on stderr; returns VDISK_EXIT_ERROR. */
int vdisk_usage_error(const char *cmdname, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* `vdisk CMD --help` when argv holds --help or -h before any "--"; true if printed. */
bool vdisk_wants_help(const char *cmdname, int argc, char **argv);

/* Handlers: argv[0] is the command name; return an exit status. */
int vdisk_cmd_create(int argc, char **argv);
int vdisk_cmd_info(int argc, char **argv);
int vdisk_cmd_check(int argc, char **argv);
int vdisk_cmd_convert(int argc, char **argv);
int vdisk_cmd_map(int argc, char **argv);
int vdisk_cmd_snapshot(int argc, char **argv);
int vdisk_cmd_diff(int argc, char **argv);
int vdisk_cmd_compare(int argc, char **argv);
int vdisk_cmd_bench(int argc, char **argv);
int vdisk_cmd_key(int argc, char **argv);
int vdisk_cmd_resize(int argc, char **argv);

/* The key source given by --key-file / --key-fd (else the terminal). */
extern struct vd_pass_src vdisk_pass;
/* true when --key-file or --key-fd was given. */
bool vdisk_pass_given(void);

/* "vdisk: FILE: MSG" on stderr. */
void vdisk_error(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report the library's last error about file (does not repeat the file name). */
void vdisk_lib_error(const char *file);
/* The same for a saved message. */
void vdisk_msg_error(const char *file, const char *msg);

/* Open path (and its chain) with the global key source; reports errors itself. */
struct vd_image *vdisk_open(const char *path, const char *format, unsigned flags);
/*
 * For commands that need the image to hold still (check, convert): take a shared
 * lock on every layer file of img until the process exits, so that no writer
 * (a vdiskfs mount) can start meanwhile. If a writer already holds one, say so
 * and return -1, unless force (-U): then warn and return 0.
 */
int vdisk_hold_still(const char *cmd, const char *file, struct vd_image *img, bool force);

/* FMT as the library names it: qemu's "vpc" is "vhd"; others unchanged. */
const char *vdisk_format_name(const char *format);
/*
 * After a failed open of `missing`: if it does not exist and `other` (the next
 * operand) is an existing file, the operands were likely swapped; say the order.
 */
void vdisk_order_hint(const char *missing, const char *other, const char *usage);
/* What a refused SIZE string should have been, for the message ("" if nothing to add). */
const char *vdisk_size_hint(const char *s);
/* Parse "10G", "512M", "4096", "64K", "1TiB"; 0 or -EINVAL/-ERANGE. */
int vdisk_parse_size(const char *s, uint64_t *out);
/* Parse a non-negative decimal integer that fits in max; 0 or -EINVAL/-ERANGE. */
int vdisk_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* --block-size: a power of two in [VD_MIN_BLOCK_SIZE, VD_MAX_BLOCK_SIZE]; 0 or usage error. */
int vdisk_parse_block_size(const char *cmd, const char *s, uint32_t *out);
/* --pwhash-ops (opt OPT_PW_OPS) / --pwhash-mem (OPT_PW_MEM) within libsodium's limits. */
int vdisk_parse_pwhash(const char *cmd, int opt, const char *s, uint64_t *ops, uint64_t *mem);
/* The long options of a new native image, shared by create and convert. */
#define VDISK_IMAGE_LONGOPTS                                                   \
	{"block-size", required_argument, NULL, OPT_BLOCK_SIZE},               \
	{"encrypt", no_argument, NULL, OPT_ENCRYPT},                           \
	{"cipher", required_argument, NULL, OPT_CIPHER},                       \
	{"pwhash-ops", required_argument, NULL, OPT_PW_OPS},                   \
	{"pwhash-mem", required_argument, NULL, OPT_PW_MEM}
/*
 * Handle getopt result c if it is one of VDISK_IMAGE_LONGOPTS: 1 handled, 0 not
 * one of them, -1 bad value (message printed).
 */
int vdisk_image_opt(const char *cmd, int c, const char *arg, struct vd_create_opts *o,
		    bool *encrypt, const char **cipher);
/* "1 GiB", "64 KiB", "1.5 MiB", "512 B" into buf. */
const char *vdisk_human_size(uint64_t v, char *buf, size_t len);
/* "2026-11-21T07:00:00Z" (UTC) into buf, "-" for 0. */
const char *vdisk_time_str(int64_t t, char *buf, size_t len);
/* The file name part of a path (borrowed). */
const char *vdisk_basename(const char *path);
/* -p of convert and compare: qemu-img's "    (xx.xx/100%)" on stdout, \r-updated. */
struct vdisk_progress {
	bool on;
	double last; /* the share printed last; start with -1 */
};
/* Print the share done/total if it moved by a percent (final: always, then a newline). */
void vdisk_progress(struct vdisk_progress *p, uint64_t done, uint64_t total, bool final);
/* Monotonic seconds. */
double vdisk_now(void);

/* A JSON string literal with escapes, or null for NULL. */
void vdisk_json_str(FILE *f, const char *s);

/*
 * Walk [0, size) with vd_block_status, calling fn for each maximal run of one
 * type in one layer. 0, or the first -errno (of the library or of fn).
 */
int vdisk_extents_walk(struct vd_image *img, int (*fn)(void *opaque, const struct vd_extent *e),
		       void *opaque);
/* The same, ending with -ECANCELED as soon as *stop is non-zero (a signal's flag). */
int vdisk_extents_walk_until(struct vd_image *img,
			     int (*fn)(void *opaque, const struct vd_extent *e), void *opaque,
			     const volatile sig_atomic_t *stop);

const char *vdisk_extent_type_name(enum vd_extent_type t);

#endif
