// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the vdisk subcommands: error reporting in the one format
 * the tool uses ("vdisk: FILE: message", the message from vd_get_error()),
 * opening an image with the global key source, strict size and number
 * parsing (garbage, overflow and negative values are errors, never wrapped),
 * human-readable sizes and times, and JSON string escaping.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "../common/qemu-lock.h"

void
vdisk_error(const char *file, const char *fmt, ...)
{
	va_list ap;

	if (file) {
		fprintf(stderr, "vdisk: %s: ", file);
	} else {
		fprintf(stderr, "vdisk: ");
	}
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
vdisk_lib_error(const char *file)
{
	const char *msg = vd_get_error();

	if (!msg || !*msg) {
		msg = vd_get_errno() ? strerror(vd_get_errno()) : "unknown error";
	}
	vdisk_msg_error(file, msg);
}

void
vdisk_msg_error(const char *file, const char *msg)
{
	size_t n = file ? strlen(file) : 0;

	/* The library's messages usually start with the path already. */
	if (!file || (strncmp(msg, file, n) == 0 && msg[n] == ':')) {
		fprintf(stderr, "vdisk: %s\n", msg);
	} else {
		fprintf(stderr, "vdisk: %s: %s\n", file, msg);
	}
}

const char *
vdisk_format_name(const char *format)
{
	/* qemu's name of the VHD format, as in `qemu-img -f vpc`. */
	if (format && strcmp(format, "vpc") == 0) {
		return "vhd";
	}
	return format;
}

void
vdisk_order_hint(const char *missing, const char *other, const char *usage)
{
	struct stat st;

	if (access(missing, F_OK) < 0 && errno == ENOENT && other && stat(other, &st) == 0 &&
	    (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		fprintf(stderr, "vdisk: (%s does exist: the order is %s)\n", other, usage);
	}
}

const char *
vdisk_size_hint(const char *s)
{
	uint64_t v;

	if (s && vdisk_parse_size(s, &v) == 0 && v == 0) {
		return " (a disk cannot be empty; the smallest is 512 bytes)";
	}
	if (s && strpbrk(s, ".,")) {
		return " (whole numbers only: 1536M, not 1.5G)";
	}
	if (s && *s == '-') {
		return " (negative)";
	}
	if (s && *s) {
		return " (bytes, or a whole number with K, M, G, T, P or E)";
	}
	return "";
}

struct vd_image *
vdisk_open(const char *path, const char *format, unsigned flags)
{
	struct vd_open_opts opts = {
		.flags = flags,
		.format = vdisk_format_name(format),
		.passphrase = vd_pass_get,
		.passphrase_opaque = &vdisk_pass,
	};
	struct vd_image *img = vd_open(path, &opts);

	if (!img) {
		vdisk_lib_error(path);
	}
	return img;
}

int
vdisk_hold_still(const char *cmd, const char *file, struct vd_image *img, bool force)
{
	int n = vd_layer_count(img);

	for (int i = 0; i < n; i++) {
		struct vd_layer_info li;
		/* Kept open on purpose: the lock lasts until the command exits. */
		int fd = vd_layer_file_open(img, i, &li);

		if (fd < 0) {
			continue;
		}
		if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
			if (!vd_qemu_writer(fd)) {
				continue;
			}
		} else {
			close(fd);
			if (errno != EWOULDBLOCK) {
				continue;
			}
		}
		if (force) {
			fprintf(stderr,
				"vdisk: %s: warning: %s is open for writing elsewhere (mounted?); "
				"going on as -U asks, but writes in flight can show up as "
				"differences or errors\n",
				file, li.path);
			continue;
		}
		vdisk_error(file,
			    "%s is open for writing elsewhere (mounted by vdiskfs, or in use by "
			    "QEMU?); unmount or stop it first, or give -U (--force-share) to %s "
			    "it as it changes",
			    li.path, cmd);
		return -1;
	}
	return 0;
}

int
vdisk_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s)) {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno == ERANGE || v > max) {
		return -ERANGE;
	}
	if (errno || *end != '\0') {
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int
vdisk_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift;

	if (!s || !isdigit((unsigned char)*s)) {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE) {
		return -ERANGE;
	}
	switch (toupper((unsigned char)*end)) {
	case '\0':
	case 'B':
		shift = 0;
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	case 'P':
		shift = 50;
		break;
	case 'E':
		shift = 60;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		if (toupper((unsigned char)*end) != 'B') {
			end++;
			if (*end == 'i') {
				end++;
			}
		}
		if (*end == 'B' || *end == 'b') {
			end++;
		}
		if (*end != '\0') {
			return -EINVAL;
		}
	}
	if (shift && v > (UINT64_MAX >> shift)) {
		return -ERANGE;
	}
	*out = (uint64_t)v << shift;
	return 0;
}

const char *
vdisk_human_size(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	int u = 0;
	double d = (double)v;

	while (d >= 1024.0 && u < 6) {
		d /= 1024.0;
		u++;
	}
	if (u == 0) {
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	} else if (v % (1ull << (10 * u)) == 0) {
		snprintf(buf, len, "%llu %s", (unsigned long long)(v >> (10 * u)), units[u]);
	} else {
		snprintf(buf, len, "%.3g %s", d, units[u]);
	}
	return buf;
}

const char *
vdisk_time_str(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || !gmtime_r(&tt, &tm)) {
		snprintf(buf, len, "-");
	} else {
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	return buf;
}

const char *
vdisk_basename(const char *path)
{
	const char *p = strrchr(path, '/');

	return p && p[1] ? p + 1 : path;
}

void
vdisk_progress(struct vdisk_progress *p, uint64_t done, uint64_t total, bool final)
{
	double pct;

	if (!p->on) {
		return;
	}
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	/* Each whole percent once; the final line only if it says something new. */
	if (p->last < 0 || pct - p->last >= 1.0 || (final && pct != p->last)) {
		printf("    (%.2f/100%%)\r", pct);
		fflush(stdout);
		p->last = pct;
	}
	if (final) {
		printf("\n");
	}
}

double
vdisk_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
vdisk_json_str(FILE *f, const char *s)
{
	const unsigned char *p;

	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < 0x20) {
				fprintf(f, "\\u%04x", *p);
			} else {
				fputc(*p, f);
			}
		}
	}
	fputc('"', f);
}

const char *
vdisk_extent_type_name(enum vd_extent_type t)
{
	switch (t) {
	case VD_EXTENT_DATA:
		return "data";
	case VD_EXTENT_ZERO:
		return "zero";
	case VD_EXTENT_HOLE:
		return "unallocated";
	}
	return "?";
}

int
vdisk_parse_block_size(const char *cmd, const char *s, uint32_t *out)
{
	uint64_t v;

	if (vdisk_parse_size(s, &v) < 0 || v < VD_MIN_BLOCK_SIZE || v > VD_MAX_BLOCK_SIZE ||
	    (v & (v - 1)) != 0) {
		vdisk_usage_error(cmd,
				  "--block-size '%s': must be a power of two from "
				  "%uK to %uM",
				  s, VD_MIN_BLOCK_SIZE >> 10, VD_MAX_BLOCK_SIZE >> 20);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

int
vdisk_parse_pwhash(const char *cmd, int opt, const char *s, uint64_t *ops, uint64_t *mem)
{
	uint64_t v;

	if (opt == OPT_PW_OPS) {
		if (vdisk_parse_uint(s, crypto_pwhash_OPSLIMIT_MAX, &v) < 0 ||
		    v < crypto_pwhash_OPSLIMIT_MIN) {
			vdisk_usage_error(cmd, "--pwhash-ops '%s': must be %u to %u", s,
					  (unsigned)crypto_pwhash_OPSLIMIT_MIN,
					  (unsigned)crypto_pwhash_OPSLIMIT_MAX);
			return -EINVAL;
		}
		*ops = v;
	} else {
		if (vdisk_parse_size(s, &v) < 0 || v < crypto_pwhash_MEMLIMIT_MIN ||
		    v > (uint64_t)crypto_pwhash_MEMLIMIT_MAX) {
			vdisk_usage_error(cmd, "--pwhash-mem '%s': must be %uK or more", s,
					  (unsigned)crypto_pwhash_MEMLIMIT_MIN >> 10);
			return -EINVAL;
		}
		*mem = v;
	}
	return 0;
}

int
vdisk_image_opt(const char *cmd, int c, const char *arg, struct vd_create_opts *o,
		bool *encrypt, const char **cipher)
{
	switch (c) {
	case OPT_BLOCK_SIZE:
		return vdisk_parse_block_size(cmd, arg, &o->block_size) < 0 ? -1 : 1;
	case OPT_ENCRYPT:
		*encrypt = true;
		return 1;
	case OPT_CIPHER:
		*cipher = arg;
		return 1;
	case OPT_PW_OPS:
	case OPT_PW_MEM:
		return vdisk_parse_pwhash(cmd, c, arg, &o->pwhash_opslimit, &o->pwhash_memlimit) < 0
			       ? -1
			       : 1;
	}
	return 0;
}
