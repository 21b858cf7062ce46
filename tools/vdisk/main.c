// SPDX-License-Identifier: MIT
/*
 * vdisk: the image tool of vdiskfs, in the spirit of qemu-img.
 *
 * main() strips the key options (--key-file FILE, --key-fd N), which may appear
 * anywhere before "--" because every command that opens an image needs them,
 * then looks the command up in vdisk_cmds[] (qemu-img's img_cmds[]) and hands
 * it the remaining argv, argv[0] being the command name. Each handler lives in
 * its own cmd-NAME.c and returns the exit status. Help comes from the same
 * table: `vdisk --help` lists it, `vdisk CMD --help` prints one entry.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define VDISK_VERSION "0.1.0"

struct vd_pass_src vdisk_pass = {.key_file = NULL, .key_fd = -1};

/* One entry per command, laid out like its help text. */
/* clang-format off */
const struct vdisk_cmd vdisk_cmds[] = {
	{ "create", vdisk_cmd_create,
	  "create [-s SIZE] [-b BACKING] [-F BACKING_FMT] [-U] [--block-size N]\n"
	  "             [--encrypt [--cipher C]] [--pwhash-ops N] [--pwhash-mem SIZE] FILE [SIZE]",
	  "create a native image (-b: an overlay over BACKING)",
	  "  -s, --size SIZE          virtual size: bytes or with a suffix K M G T (powers of 1024)\n"
	  "                           (default with -b: the backing's size); `FILE SIZE`, as\n"
	  "                           with qemu-img, works too\n"
	  "  -b, --backing BACKING    make an overlay: reads fall through to BACKING (any format);\n"
	  "                           stored relative to FILE's folder\n"
	  "  -F, --backing-format FMT the backing's format (default: probed now and recorded;\n"
	  "                           a raw backing is never guessed, say -F raw)\n"
	  "  -U, --force-share        make the overlay even while a writer (vdiskfs, QEMU) has\n"
	  "                           BACKING open\n"
	  "      --block-size N       allocation block, a power of two from 4K to 1M\n"
	  "      --encrypt            encrypt every block (libsodium AEAD); asks a new passphrase\n"
	  "      --cipher C           xchacha20poly1305 (default) or aes256gcm\n"
	  "      --pwhash-ops N       Argon2id operations limit of the first key slot\n"
	  "      --pwhash-mem SIZE    Argon2id memory limit (default: about 1 s to unlock)\n" },
	{ "info", vdisk_cmd_info, "info [--json] [-f FMT] FILE",
	  "describe the image and its whole backing chain, top first",
	  "      --json               machine-readable output: an array of layers, top first\n"
	  "  -f, --format FMT         format of FILE (default: probed; vpc is vhd)\n" },
	{ "check", vdisk_cmd_check, "check [--json] [-U] [-f FMT] FILE",
	  "verify the structure and every checksum of every layer",
	  "      --json               machine-readable report\n"
	  "  -f, --format FMT         format of FILE (default: probed; vpc is vhd)\n"
	  "  -U, --force-share        check FILE even while a writer (vdiskfs, QEMU) has it\n"
	  "                           open, with a warning\n"
	  "  Exit status: 0 clean (leaked space is reported, but harms no data),\n"
	  "  1 the check could not run, 2 corruption found.\n" },
	{ "convert", vdisk_cmd_convert,
	  "convert [-p] [-U] [-O raw|vdk] [-f FMT] [--block-size N] [--encrypt [--cipher C]] IN OUT",
	  "copy an image into a new raw or native file, keeping holes",
	  "  -p, --progress           show progress\n"
	  "  -O, --output-format FMT  raw or vdk (default: vdk; raw when OUT is named\n"
	  "                           *.raw, *.img, *.bin or *.iso, as qemu-img would)\n"
	  "  -f, --format FMT         format of IN (default: probed; vpc is vhd)\n"
	  "  -U, --force-share        convert IN even while a writer (vdiskfs, QEMU) has it open\n"
	  "      --block-size N       block size of a vdk OUT\n"
	  "      --encrypt            encrypt a vdk OUT (same passphrase as an encrypted IN)\n"
	  "      --cipher C           xchacha20poly1305 (default) or aes256gcm\n"
	  "      --pwhash-ops N, --pwhash-mem SIZE   Argon2id limits for the new key slot\n"
	  "  Unallocated and zero ranges of IN stay holes in a raw OUT and unallocated in a\n"
	  "  vdk OUT; all-zero data blocks are not written either.\n" },
	{ "resize", vdisk_cmd_resize, "resize [--shrink] [-f FMT] FILE [+|-]SIZE",
	  "change the virtual size of an image (+N/-N: relative), as qemu-img resize",
	  "      --shrink             allow a smaller size (the data past the new end is dropped\n"
	  "                           and its space given back); refused without it\n"
	  "  -f, --format FMT         format of FILE (default: probed): vdk or raw\n"
	  "  Only the top of a chain changes size; its snapshots keep theirs, and the grown\n"
	  "  range reads as zeroes even where a larger layer below holds data. A frozen\n"
	  "  snapshot file and an image in use (a vdiskfs mount) are refused. SIZE is\n"
	  "  rounded up to a multiple of 512 (a raw file takes it exactly).\n" },
	{ "map", vdisk_cmd_map, "map [--json] [-f FMT] FILE",
	  "list data / zero / unallocated ranges and the layer that holds each",
	  "      --json               machine-readable output\n"
	  "  -f, --format FMT         format of FILE (default: probed; vpc is vhd)\n" },
	{ "snapshot", vdisk_cmd_snapshot,
	  "snapshot create FILE NAME\n"
	  "       vdisk snapshot list [--json] FILE\n"
	  "       vdisk snapshot delete FILE NAME\n"
	  "       vdisk snapshot revert FILE NAME\n"
	  "       vdisk snapshot prune FILE --keep N",
	  "take, list, delete, revert to and prune snapshots",
	  "  create   freeze the current top as NAME and start a new empty top (FILE keeps its path)\n"
	  "  list     the snapshots, oldest first (--json: machine-readable)\n"
	  "  delete   merge NAME's blocks into the layer above it and remove its file\n"
	  "  revert   throw away the top and every newer snapshot: FILE then reads as NAME\n"
	  "  prune    delete the oldest snapshots until N remain\n" },
	{ "compare", vdisk_cmd_compare, "compare [-p] [-s] [-q] [-U] [-f FMT] [-F FMT] A B",
	  "do two images (any formats, chains) show the same disk? (as qemu-img compare)",
	  "  -f, --format FMT         format of A (default: probed; vpc is vhd)\n"
	  "  -F, --second-format FMT  format of B\n"
	  "  -s, --strict             the sizes must be equal, and a range must hold data in\n"
	  "                           both images or in neither (not only read as zeroes)\n"
	  "  -p, --progress           show progress\n"
	  "  -q, --quiet              print nothing; the exit status says it\n"
	  "  -U, --force-share        compare even while a writer (vdiskfs, QEMU) has A or B open\n"
	  "  Without -s, images of different sizes are equal when the longer one's tail\n"
	  "  reads as zeroes. Exit status: 0 identical, 1 they differ (\"Content mismatch\n"
	  "  at offset N!\", the first byte that differs), 2 an error.\n" },
	{ "diff", vdisk_cmd_diff, "diff [--json] FILE SNAP_A [SNAP_B]",
	  "block ranges changed between two snapshots (SNAP_B: the current top)",
	  "      --json               machine-readable output\n" },
	{ "bench", vdisk_cmd_bench,
	  "bench [-c COUNT] [-s BUFSIZE] [-d DEPTH] [-w] [--random] [-S STEP] [-o OFFSET]\n"
	  "             [-f FMT] [-t THREADS] [--pattern N] [-q] FILE",
	  "I/O benchmark with the options and output of `qemu-img bench`",
	  "  -c, --count COUNT        number of requests (default 75000)\n"
	  "  -s, --size BUFSIZE       bytes per request (default 4K)\n"
	  "  -d, --depth DEPTH        requests in flight (default 64): DEPTH threads each\n"
	  "                           issuing synchronous requests\n"
	  "  -t, --threads THREADS    number of threads (default: DEPTH)\n"
	  "  -w, --write              write instead of read (opens FILE read-write)\n"
	  "  -S, --step STEP          distance between requests (default BUFSIZE); offsets\n"
	  "                           wrap modulo the size (a request that would cross the\n"
	  "                           end goes to 0), like qemu-img bench\n"
	  "  -o, --offset OFFSET      first offset (default 0)\n"
	  "      --random             uniformly random BUFSIZE-aligned offsets instead\n"
	  "      --pattern N          byte written by -w (default 0)\n"
	  "  -f, --format FMT         format of FILE (default: probed)\n"
	  "  -q, --quiet              print nothing but errors\n" },
	{ "key", vdisk_cmd_key,
	  "key list [--json] FILE\n"
	  "       vdisk key add [--new-key-file F | --new-key-fd N] [--pwhash-ops N]\n"
	  "                     [--pwhash-mem SIZE] FILE\n"
	  "       vdisk key remove FILE SLOT",
	  "list, add and remove the passphrase key slots of an encrypted image",
	  "  list     the used slots, their Argon2id limits and the cipher (no passphrase needed)\n"
	  "  add      asks an existing passphrase (--key-file/--key-fd), then the new one\n"
	  "           twice (--new-key-file F / --new-key-fd N); prints the new slot\n"
	  "  remove   clears SLOT; the last used slot cannot be removed\n" },
	{ NULL, NULL, NULL, NULL, NULL },
};
/* clang-format on */

/* clang-format off */
static const char vdisk_global_help[] =
	"Options for every command that opens an encrypted image:\n"
	"  --key-file FILE   read the passphrase from FILE (one trailing newline is dropped)\n"
	"  --key-fd N        read the passphrase from file descriptor N (up to a newline)\n"
	"  (neither: ask on the terminal without echo; no terminal: an error)\n";
/* clang-format on */

const struct vdisk_cmd *
vdisk_cmd_find(const char *name)
{
	const struct vdisk_cmd *c;

	for (c = vdisk_cmds; c->name; c++) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	return NULL;
}

void
vdisk_cmd_usage(FILE *f, const struct vdisk_cmd *cmd, bool verbose)
{
	fprintf(f, "Usage: vdisk %s\n", cmd->synopsis);
	if (!verbose) {
		return;
	}
	fprintf(f, "%s.\n", cmd->summary);
	if (cmd->options) {
		fprintf(f, "\n%s", cmd->options);
	}
	fprintf(f, "\n%s", vdisk_global_help);
}

int
vdisk_usage_error(const char *cmdname, const char *fmt, ...)
{
	const struct vdisk_cmd *cmd = vdisk_cmd_find(cmdname);
	va_list ap;

	fprintf(stderr, "vdisk: %s: ", cmdname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd) {
		vdisk_cmd_usage(stderr, cmd, false);
	}
	fprintf(stderr, "Try 'vdisk %s --help' for more information.\n", cmdname);
	return VDISK_EXIT_ERROR;
}

bool
vdisk_wants_help(const char *cmdname, int argc, char **argv)
{
	const struct vdisk_cmd *cmd = vdisk_cmd_find(cmdname);
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			break;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			vdisk_cmd_usage(stdout, cmd, true);
			return true;
		}
	}
	return false;
}

bool
vdisk_pass_given(void)
{
	return vdisk_pass.key_file != NULL || vdisk_pass.key_fd >= 0;
}

static void
vdisk_main_help(FILE *f)
{
	const struct vdisk_cmd *c;

	fprintf(f, "Usage: vdisk [--key-file FILE | --key-fd N] COMMAND [OPTIONS] ARGS\n"
		   "       vdisk --help | --version | COMMAND --help\n\n"
		   "The image tool of vdiskfs: native .vdk images with snapshots, and raw,\n"
		   "qcow2, vmdk and vhd/vhdx images read through the same library.\n\n"
		   "Commands:\n");
	for (c = vdisk_cmds; c->name; c++) {
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	}
	fprintf(f, "\n%s", vdisk_global_help);
	fprintf(f, "\nErrors are printed as 'vdisk: FILE: message' with a non-zero exit status.\n");
}

/*
 * Take the global key options out of argv (anywhere before "--"). Returns the
 * new argc, or -1 after printing an error.
 */
static int
vdisk_strip_key_opts(int argc, char **argv)
{
	int i, j = 1;
	bool done = false;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		int which = 0; /* 1 key-file, 2 key-fd */

		if (!done && strcmp(a, "--") == 0) {
			done = true;
		}
		if (!done) {
			if (strcmp(a, "--key-file") == 0 || strcmp(a, "--key-fd") == 0) {
				which = a[6] == 'f' && a[7] == 'i' ? 1 : 2;
				if (i + 1 >= argc) {
					fprintf(stderr, "vdisk: %s needs an argument\n", a);
					return -1;
				}
				val = argv[++i];
			} else if (strncmp(a, "--key-file=", 11) == 0) {
				which = 1;
				val = a + 11;
			} else if (strncmp(a, "--key-fd=", 9) == 0) {
				which = 2;
				val = a + 9;
			}
		}
		if (which == 1) {
			if (*val == '\0') {
				fprintf(stderr, "vdisk: --key-file: empty file name\n");
				return -1;
			}
			vdisk_pass.key_file = val;
		} else if (which == 2) {
			uint64_t fd;

			if (vdisk_parse_uint(val, 1u << 20, &fd) < 0) {
				fprintf(stderr, "vdisk: --key-fd: '%s' is not a file descriptor\n",
					val);
				return -1;
			}
			vdisk_pass.key_fd = (int)fd;
		} else {
			argv[j++] = argv[i];
		}
	}
	argv[j] = NULL;
	if (vdisk_pass.key_file && vdisk_pass.key_fd >= 0) {
		fprintf(stderr, "vdisk: give either --key-file or --key-fd, not both\n");
		return -1;
	}
	return j;
}

int
main(int argc, char **argv)
{
	const struct vdisk_cmd *cmd;
	int rc;

	argc = vdisk_strip_key_opts(argc, argv);
	if (argc < 0) {
		return VDISK_EXIT_ERROR;
	}
	if (argc < 2) {
		vdisk_main_help(stderr);
		return VDISK_EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		if (argc > 2 && (cmd = vdisk_cmd_find(argv[2])) != NULL) {
			vdisk_cmd_usage(stdout, cmd, true);
		} else {
			vdisk_main_help(stdout);
		}
		return VDISK_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("vdisk version " VDISK_VERSION "\n");
		return VDISK_EXIT_OK;
	}
	cmd = vdisk_cmd_find(argv[1]);
	if (!cmd) {
		fprintf(stderr, "vdisk: unknown command '%s'\nTry 'vdisk --help'.\n", argv[1]);
		return VDISK_EXIT_ERROR;
	}
	if (vdisk_wants_help(cmd->name, argc - 1, argv + 1)) {
		return VDISK_EXIT_OK;
	}
	rc = cmd->fn(argc - 1, argv + 1);
	vd_pass_src_clear(&vdisk_pass);
	fflush(stdout);
	if (ferror(stdout)) {
		fprintf(stderr, "vdisk: error writing output: %s\n", strerror(errno));
		return VDISK_EXIT_ERROR;
	}
	return rc;
}
