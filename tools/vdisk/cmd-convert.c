// SPDX-License-Identifier: MIT
/*
 * vdisk convert: copy IN (any format the library reads, its whole chain
 * flattened) into a new raw file or a new native image.
 *
 * Sparse-aware in the manner of libnbd's nbdcopy: the source is walked with
 * vd_block_status; unallocated and zero extents are skipped (a hole in a raw
 * OUT, which is created with the full size by ftruncate, and unallocated in a
 * fresh vdk OUT, both of which read as zeroes), and data extents are copied
 * in chunks of up to 1 MiB, skipping block-sized pieces that turn out to be
 * all zeroes. A raw OUT is written with plain pwrite and fsync'd at the end.
 * -p prints progress in qemu-img's "(xx.xx/100%)" style. Without -O, an OUT
 * named .raw, .img, .bin or .iso is raw (qemu-img's default) and one named after
 * a format we do not write is refused; a failure removes OUT, but never a
 * symbolic link OUT (its target is emptied instead). SIGINT, SIGTERM and
 * SIGHUP during the copy are a failure too: the copy stops (checked at every
 * chunk, every zeroed piece and every step of the extent walk), OUT is
 * removed, then the signal ends the program as it would have (a half-copied
 * OUT of full size, or a vdk OUT that reads as zeroes, must not look like a
 * copy). A new OUT, or an existing regular one of one link, is written as
 * ".OUT.vdisk-XXXXXX" in OUT's folder and renamed onto OUT only once it is
 * complete and fsync'd (then the folder is fsync'd): a convert killed by
 * SIGKILL, or cut by a power failure, leaves OUT as it was (absent, or the
 * old file) and that hidden file, never a plausible OUT. Block devices,
 * symbolic links and files that cannot be replaced (a vdiskfs `disk`) are
 * written in place, as before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define VDISK_COPY_CHUNK (1u << 20)

/* The signal that interrupted the copy (0: none). */
static volatile sig_atomic_t vdisk_conv_sig;

static void
vdisk_conv_on_signal(int sig)
{
	vdisk_conv_sig = sig;
}

/* Catch the signals that end a program, unless they are ignored (nohup, a background job). */
static void
vdisk_conv_catch(bool on)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {0}, old;

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], NULL, &old);
		if (old.sa_handler == SIG_IGN) {
			continue;
		}
		sa.sa_handler = on ? vdisk_conv_on_signal : SIG_DFL;
		sigaction(sigs[i], &sa, NULL);
	}
}

/* true (and the reason printed) once a signal asked the copy to stop. */
static bool
vdisk_conv_stopped(const char *out_path)
{
	static bool said;

	if (!vdisk_conv_sig) {
		return false;
	}
	if (said) {
		return true;
	}
	said = true;
	vdisk_error(out_path, "interrupted (%s) before the copy was complete",
		    strsignal(vdisk_conv_sig));
	return true;
}

struct vdisk_conv {
	struct vd_image *in, *out_img;
	int out_fd;
	const char *in_path, *out_path;
	char *tmp_path;	    /* the file written, renamed onto OUT at the end (NULL: OUT in place) */
	uint64_t size, done;
	uint32_t zero_gran; /* granularity of the all-zero test */
	bool zero_out;	    /* OUT does not read as zeroes (a block device): write zeroes too */
	struct vdisk_progress prog;
	uint8_t *buf;
};

static bool
vdisk_is_zero(const uint8_t *p, size_t len)
{
	static const uint8_t zero[256];
	size_t n;

	while (len) {
		n = len < sizeof(zero) ? len : sizeof(zero);
		if (memcmp(p, zero, n) != 0) {
			return false;
		}
		p += n;
		len -= n;
	}
	return true;
}

static void
vdisk_conv_progress(struct vdisk_conv *cv, bool final)
{
	vdisk_progress(&cv->prog, cv->done, cv->size, final);
}

static int
vdisk_conv_write(struct vdisk_conv *cv, const uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t n;

	if (cv->out_img) {
		if (vd_pwrite(cv->out_img, p, len, off) < 0) {
			vdisk_lib_error(cv->out_path);
			return -1;
		}
		return 0;
	}
	while (done < len) {
		n = pwrite(cv->out_fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			vdisk_error(cv->out_path, "write failed: %s",
				    n < 0 ? strerror(errno) : "short write");
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/*
 * Write zeroes over [off, off + len) of a raw OUT that does not read as zeroes
 * already, in pieces of at most 64 MiB (or 64 KiB written), a signal looked
 * for before each: a long run on a slow device must not hold up a Ctrl-C.
 */
static int
vdisk_conv_zero(struct vdisk_conv *cv, uint64_t off, uint64_t len)
{
	static const uint8_t zero[65536];
	bool falloc = true;

	while (len) {
		uint64_t n = len < (64u << 20) ? len : (64u << 20);

		if (vdisk_conv_stopped(cv->out_path)) {
			return -1;
		}
		if (falloc && fallocate(cv->out_fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
					(off_t)off, (off_t)n) == 0) {
			off += n;
			len -= n;
			cv->done += n;
			vdisk_conv_progress(cv, false);
			continue;
		}
		falloc = false;
		n = len < sizeof(zero) ? len : sizeof(zero);
		if (vdisk_conv_write(cv, zero, (size_t)n, off) < 0) {
			return -1;
		}
		off += n;
		len -= n;
		cv->done += n;
		vdisk_conv_progress(cv, false);
	}
	return 0;
}

/* Copy one data extent, skipping all-zero pieces. */
static int
vdisk_conv_data(struct vdisk_conv *cv, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < VDISK_COPY_CHUNK ? (size_t)len : VDISK_COPY_CHUNK;
		size_t pos = 0;

		if (vdisk_conv_stopped(cv->out_path)) {
			return -1;
		}
		if (vd_pread(cv->in, cv->buf, n, off) < 0) {
			vdisk_lib_error(cv->in_path);
			return -1;
		}
		while (pos < n) {
			/* Pieces end on zero_gran boundaries of the virtual disk. */
			uint64_t abs = off + pos;
			size_t piece = cv->zero_gran - (size_t)(abs % cv->zero_gran);
			size_t start = pos;

			if (piece > n - pos) {
				piece = n - pos;
			}
			if (!cv->zero_out && vdisk_is_zero(cv->buf + pos, piece)) {
				pos += piece;
				continue;
			}
			/* Extend over the following non-zero pieces: one write. */
			pos += piece;
			while (pos < n) {
				size_t p2 = cv->zero_gran < n - pos ? cv->zero_gran : n - pos;

				if (!cv->zero_out && vdisk_is_zero(cv->buf + pos, p2)) {
					break;
				}
				pos += p2;
			}
			if (vdisk_conv_write(cv, cv->buf + start, pos - start, off + start) < 0) {
				return -1;
			}
		}
		off += n;
		len -= n;
		cv->done += n;
		vdisk_conv_progress(cv, false);
	}
	return 0;
}

static int
vdisk_conv_extent(void *opaque, const struct vd_extent *e)
{
	struct vdisk_conv *cv = opaque;

	if (e->type != VD_EXTENT_DATA) {
		if (vdisk_conv_stopped(cv->out_path)) {
			return -ECANCELED;
		}
		if (cv->zero_out) {
			/* Counts its progress piece by piece. */
			return vdisk_conv_zero(cv, e->offset, e->length) < 0 ? -ECANCELED : 0;
		}
		cv->done += e->length;
		vdisk_conv_progress(cv, false);
		return 0;
	}
	/* -ECANCELED: the failure is reported already. */
	return vdisk_conv_data(cv, e->offset, e->length) < 0 ? -ECANCELED : 0;
}

/*
 * No -O: vdk, unless OUT's name says otherwise. qemu-img's default is raw, so
 * `convert disk.qcow2 disk.raw` (or .img) is meant as raw and made so; a name
 * of a format vdisk does not write (disk.qcow2, disk.vmdk...) would get a vdk
 * image under a misleading name, which qemu could then not open: refused.
 */
static int
vdisk_out_format_by_name(const char *out, const char **ofmt)
{
	static const char *const raw_ext[] = {".raw", ".img", ".bin", ".iso", NULL};
	static const char *const other_ext[] = {".qcow2", ".qcow", ".vmdk", ".vhd", ".vhdx",
						".vdi",	  ".qed",  NULL};
	size_t n = strlen(out);

	for (int i = 0; raw_ext[i]; i++) {
		size_t e = strlen(raw_ext[i]);

		if (n > e && strcasecmp(out + n - e, raw_ext[i]) == 0) {
			*ofmt = "raw";
			return 0;
		}
	}
	for (int i = 0; other_ext[i]; i++) {
		size_t e = strlen(other_ext[i]);

		if (n > e && strcasecmp(out + n - e, other_ext[i]) == 0) {
			vdisk_usage_error("convert",
					  "'%s': vdisk writes raw and vdk images only; give -O vdk "
					  "to make a vdk under that name anyway (qemu-img convert "
					  "-O %s writes that format)",
					  out, other_ext[i] + 1);
			return -1;
		}
	}
	return 0;
}

/* The file descriptors open in this process (from /proc/self/fd), sorted; NULL if unknown. */
static int *
vdisk_open_fds(size_t *count)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int *fds = NULL;
	size_t n = 0, cap = 0;

	*count = 0;
	if (!d) {
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(de->d_name, &end, 10);

		if (*end != '\0' || end == de->d_name || fd < 0 || fd == dirfd(d)) {
			continue;
		}
		if (n == cap) {
			int *nf = realloc(fds, (cap ? cap * 2 : 64) * sizeof(*fds));

			if (!nf) {
				free(fds);
				closedir(d);
				return NULL;
			}
			fds = nf;
			cap = cap ? cap * 2 : 64;
		}
		fds[n++] = (int)fd;
	}
	closedir(d);
	*count = n;
	return fds;
}

/*
 * true if path names (the same inode as) a file of img: a layer, or a file a
 * layer reads through (a vmdk extent, a qcow2 external data file). Those are
 * the files opened while img was opened: every fd open now that was not open
 * before (before[nbefore]) is compared, so that an inherited descriptor (a
 * shell's /dev/null, say) is not taken for one of IN's files.
 */
static bool
vdisk_same_file_in_chain(struct vd_image *img, const char *path, const int *before,
			 size_t nbefore)
{
	struct stat so, sl;
	int n = vd_layer_count(img);
	bool found = false;
	size_t nnow = 0;
	int *now;

	if (stat(path, &so) < 0) {
		return false;	/* does not exist yet */
	}
	for (int i = 0; i < n; i++) {
		struct vd_layer_info li;

		if (vd_layer_info(img, i, &li) == 0 && li.path && stat(li.path, &sl) == 0 &&
		    sl.st_dev == so.st_dev && sl.st_ino == so.st_ino) {
			return true;
		}
	}
	now = vdisk_open_fds(&nnow);
	for (size_t i = 0; i < nnow && !found; i++) {
		bool old = false;

		for (size_t j = 0; j < nbefore && !old; j++) {
			old = before[j] == now[i];
		}
		found = !old && fstat(now[i], &sl) == 0 && sl.st_dev == so.st_dev &&
			sl.st_ino == so.st_ino;
	}
	free(now);
	return found;
}

/*
 * Make a new file beside OUT named ".OUT.vdisk-XXXXXX" (X: random letters):
 * raw (open, *fd set) or vdk (vd_create with co). cv->tmp_path is its name.
 * 0, or -1 with errno set (nothing left behind).
 */
static int
vdisk_conv_tmp_create(struct vdisk_conv *cv, const struct vd_create_opts *co, int *fd)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	const char *slash = strrchr(cv->out_path, '/');
	const char *base = slash ? slash + 1 : cv->out_path;
	size_t dlen = slash ? (size_t)(slash - cv->out_path) + 1 : 0;
	size_t blen = strlen(base) > 200 ? 200 : strlen(base); /* within NAME_MAX */
	size_t len = dlen + 1 + blen + sizeof(".vdisk-XXXXXX");
	char *p = malloc(len), *x;

	if (!p || sodium_init() < 0) {
		free(p);
		errno = ENOMEM;
		return -1;
	}
	snprintf(p, len, "%.*s.%.*s.vdisk-XXXXXX", (int)dlen, cv->out_path, (int)blen, base);
	x = p + strlen(p) - 6;
	for (int tries = 0; tries < 100; tries++) {
		for (int i = 0; i < 6; i++) {
			x[i] = letters[randombytes_uniform(sizeof(letters) - 1)];
		}
		if (fd) {
			*fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (*fd >= 0) {
				cv->tmp_path = p;
				return 0;
			}
		} else {
			if (vd_create(p, co) == 0) {
				cv->tmp_path = p;
				return 0;
			}
			errno = vd_get_errno();
		}
		if (errno != EEXIST) {
			break;
		}
	}
	free(p);
	return -1;
}

/* Put the finished temporary file in OUT's place (never over a vdk OUT made meanwhile). */
static int
vdisk_conv_commit(struct vdisk_conv *cv, bool noreplace)
{
	char *dir = strdup(cv->out_path), *slash;
	int r, dfd;

	if (noreplace) {
		r = renameat2(AT_FDCWD, cv->tmp_path, AT_FDCWD, cv->out_path, RENAME_NOREPLACE);
		if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
			/* A file system without RENAME_NOREPLACE: link refuses an existing OUT. */
			r = link(cv->tmp_path, cv->out_path);
			if (r == 0) {
				unlink(cv->tmp_path);
			}
		}
	} else {
		r = rename(cv->tmp_path, cv->out_path);
	}
	if (r < 0) {
		vdisk_error(cv->out_path, errno == EEXIST ? "appeared during the copy: not "
							    "overwritten"
							  : "cannot rename %s onto it: %s",
			    cv->tmp_path, strerror(errno));
		free(dir);
		return -1;
	}
	/* The rename itself must survive a power failure. */
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash) {
		slash[slash == dir ? 1 : 0] = '\0';
	}
	dfd = dir ? open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd < 0 || (fsync(dfd) < 0 && errno != EINVAL)) {
		fprintf(stderr, "vdisk: warning: %s: the folder could not be fsync'd: %s\n",
			cv->out_path, strerror(errno));
	}
	if (dfd >= 0) {
		close(dfd);
	}
	free(dir);
	return 0;
}

int
vdisk_cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"progress", no_argument, NULL, 'p'},
		{"output-format", required_argument, NULL, 'O'},
		{"format", required_argument, NULL, 'f'},
		{"force-share", no_argument, NULL, 'U'},
		VDISK_IMAGE_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	struct vdisk_conv cv = {.out_fd = -1, .prog.last = -1};
	struct vd_create_opts co = {0};
	const char *ofmt = "vdk", *ifmt = NULL, *cipher = NULL;
	bool encrypt = false, created = false, force = false, ofmt_given = false, same;
	bool out_link;
	struct stat ost;
	size_t nfds_before = 0;
	int *fds_before;
	char *pass = NULL;
	int c, rc = VDISK_EXIT_ERROR, walk;

	while ((c = getopt_long(argc, argv, "pO:f:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			cv.prog.on = true;
			break;
		case 'U':
			force = true;
			break;
		case 'O':
			ofmt = optarg;
			ofmt_given = true;
			break;
		case 'f':
			ifmt = optarg;
			break;
		default:
			switch (vdisk_image_opt("convert", c, optarg, &co, &encrypt, &cipher)) {
			case 1:
				break;
			case 0:
				return vdisk_usage_error("convert", "bad option");
			default:
				return VDISK_EXIT_ERROR;
			}
		}
	}
	if (argc - optind != 2) {
		return vdisk_usage_error("convert", "give IN and OUT");
	}
	cv.in_path = argv[optind];
	cv.out_path = argv[optind + 1];
	if (strcmp(cv.out_path, "-") == 0) {
		return vdisk_usage_error("convert", "OUT '-': output to a pipe is not supported (OUT "
						    "is written out of order, with holes); give a "
						    "file name (./- for a file named -)");
	}
	if (!ofmt_given && !encrypt && !co.block_size &&
	    vdisk_out_format_by_name(cv.out_path, &ofmt) < 0) {
		return VDISK_EXIT_ERROR;
	}
	if (strcmp(ofmt, "raw") != 0 && strcmp(ofmt, "vdk") != 0) {
		return vdisk_usage_error("convert", "-O '%s': the output format is raw or vdk",
					 ofmt);
	}
	if (strcmp(ofmt, "raw") == 0 && (encrypt || co.block_size)) {
		return vdisk_usage_error("convert", "--encrypt and --block-size are for -O vdk");
	}
	if (cipher && !encrypt) {
		return vdisk_usage_error("convert", "--cipher needs --encrypt");
	}
	if (strcmp(cv.in_path, cv.out_path) == 0) {
		vdisk_error(cv.out_path, "IN and OUT are the same file");
		return VDISK_EXIT_ERROR;
	}
	/* A symbolic link OUT (/dev/stdout, say) is written through, never removed. */
	out_link = lstat(cv.out_path, &ost) == 0 && S_ISLNK(ost.st_mode);
	fds_before = vdisk_open_fds(&nfds_before);
	cv.in = vdisk_open(cv.in_path, ifmt, 0);
	if (!cv.in) {
		vdisk_order_hint(cv.in_path, cv.out_path, "IN OUT");
		free(fds_before);
		return VDISK_EXIT_ERROR;
	}
	same = vdisk_same_file_in_chain(cv.in, cv.out_path, fds_before, nfds_before);
	free(fds_before);
	if (same) {
		vdisk_error(cv.out_path, "is %s, one of its backing files or a file it "
					 "reads through (an extent, a data file): it would be "
					 "overwritten while it is read",
			    cv.in_path);
		goto out;
	}
	if (vdisk_hold_still("convert", cv.in_path, cv.in, force) < 0) {
		goto out;
	}
	cv.size = vd_get_size(cv.in);
	cv.buf = malloc(VDISK_COPY_CHUNK);
	if (!cv.buf) {
		vdisk_error(cv.out_path, "out of memory");
		goto out;
	}
	if (strcmp(ofmt, "raw") == 0 && stat(cv.out_path, &ost) == 0 && S_ISBLK(ost.st_mode)) {
		/* A block device: written in place (never truncated, never removed). */
		off_t dsize;

		cv.zero_gran = 4096;
		cv.zero_out = true;
		cv.out_fd = open(cv.out_path, O_WRONLY | O_CLOEXEC);
		if (cv.out_fd < 0) {
			vdisk_error(cv.out_path, "cannot open: %s", strerror(errno));
			goto out;
		}
		dsize = lseek(cv.out_fd, 0, SEEK_END);
		if (dsize < 0 || (uint64_t)dsize < cv.size) {
			vdisk_error(cv.out_path,
				    "the device is smaller than %s (%" PRId64 " < %" PRIu64 " bytes)",
				    cv.in_path, (int64_t)dsize, cv.size);
			goto out;
		}
	} else if (strcmp(ofmt, "raw") == 0) {
		bool exists = stat(cv.out_path, &ost) == 0;
		int terr;

		if (exists && !S_ISREG(ost.st_mode)) {
			vdisk_error(cv.out_path, "not a regular file or block device");
			goto out;
		}
		cv.zero_gran = 4096;
		/*
		 * A new OUT, or a regular file of one link (not a symbolic link):
		 * under a temporary name, renamed onto OUT when complete. An OUT
		 * whose folder takes no new file (a vdiskfs `disk`) is written in
		 * place, as is a hard-linked one (the other names keep seeing it).
		 */
		if (!out_link && (!exists || ost.st_nlink == 1)) {
			if (vdisk_conv_tmp_create(&cv, NULL, &cv.out_fd) == 0) {
				created = true;
				if (exists) {
					/* The new file keeps the old one's mode and owner. */
					if (fchown(cv.out_fd, ost.st_uid, ost.st_gid) < 0) {
						/* not ours to give: the defaults stay */
					}
					fchmod(cv.out_fd, ost.st_mode & 07777);
				}
				if (ftruncate(cv.out_fd, (off_t)cv.size) < 0) {
					vdisk_error(cv.out_path, "cannot set the size: %s",
						    strerror(errno));
					goto out;
				}
			} else if (!exists) {
				vdisk_error(cv.out_path, "cannot create: %s", strerror(errno));
				goto out;
			}
		}
		if (cv.out_fd >= 0) {
			/* the temporary file: new, empty, full size */
		} else if ((cv.out_fd = open(cv.out_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
			vdisk_error(cv.out_path, "cannot create: %s", strerror(errno));
			goto out;
		} else if ((terr = ftruncate(cv.out_fd, 0) < 0 ? errno : 0) == 0) {
			created = true;
			if (ftruncate(cv.out_fd, (off_t)cv.size) < 0) {
				vdisk_error(cv.out_path, "cannot set the size: %s", strerror(errno));
				goto out;
			}
			/*
			 * Truncated, OUT holds no blocks. One that still does was not
			 * emptied: IN's holes are then written as zeroes too.
			 */
			if (fstat(cv.out_fd, &ost) < 0 || ost.st_blocks > 0) {
				cv.zero_out = true;
			}
		} else if (fstat(cv.out_fd, &ost) == 0 && (uint64_t)ost.st_size == cv.size) {
			/* A file of IN's size that cannot be truncated (a vdiskfs disk): in place. */
			cv.zero_out = true;
		} else {
			vdisk_error(cv.out_path, "cannot set the size: %s", strerror(terr));
			goto out;
		}
	} else {
		if (cv.size == 0) {
			/* vd_create would ask for "-s SIZE", an option convert does not have. */
			vdisk_error(cv.in_path, "is a disk of 0 bytes, and a vdk image cannot be "
						"empty (-O raw makes an empty file)");
			goto out;
		}
		co.size = cv.size;
		if (encrypt) {
			if (sodium_init() < 0 || !(pass = sodium_malloc(1024))) {
				vdisk_error(cv.out_path, "out of secure memory");
				goto out;
			}
			/* An encrypted IN already gave its passphrase: OUT takes the same. */
			if (!vdisk_pass.cached) {
				vdisk_pass.confirm = 1;
			}
			if (vd_pass_get(&vdisk_pass, cv.out_path, pass, 1024) < 0) {
				vdisk_lib_error(cv.out_path);
				goto out;
			}
			co.cipher = cipher ? cipher : "xchacha20poly1305";
			co.passphrase = pass;
		}
		if (lstat(cv.out_path, &ost) == 0) {
			if (stat(cv.out_path, &ost) == 0 && S_ISDIR(ost.st_mode)) {
				vdisk_error(cv.out_path, "is a directory: OUT is the new image's file "
							 "name");
			} else {
				vdisk_error(cv.out_path, "exists: a vdk OUT is never overwritten (remove "
							 "it first; -O raw overwrites a raw one)");
			}
			goto out;
		}
		/* Made under a temporary name, renamed onto OUT when complete. */
		if (vdisk_conv_tmp_create(&cv, &co, NULL) < 0) {
			int e = errno;

			if (e == ENOENT || e == ENOTDIR || e == EACCES || e == EPERM || e == EROFS ||
			    e == ENOSPC || e == EDQUOT || e == ENAMETOOLONG || e == ELOOP) {
				/* the folder's fault: not the temporary name's */
				vdisk_error(cv.out_path, "cannot create: %s", strerror(e));
			} else {
				vdisk_lib_error(cv.out_path);
			}
			goto out;
		}
		created = true;
		cv.out_img = vdisk_open(cv.tmp_path, "vdk", VD_OPEN_RDWR);
		if (!cv.out_img) {
			goto out;
		}
		cv.zero_gran = vd_get_block_size(cv.out_img);
	}
	vdisk_conv_progress(&cv, false);
	vdisk_conv_catch(true);
	walk = vdisk_extents_walk_until(cv.in, vdisk_conv_extent, &cv, &vdisk_conv_sig);
	if (walk < 0) {
		if (cv.prog.on) {
			printf("\n");
		}
		if (walk == -ECANCELED) {
			vdisk_conv_stopped(cv.out_path); /* says why, if a signal did it */
		} else {
			vdisk_lib_error(cv.in_path);
		}
		goto out;
	}
	vdisk_conv_progress(&cv, true);
	if (cv.out_img) {
		if (vd_flush(cv.out_img) < 0) {
			vdisk_lib_error(cv.out_path);
			goto out;
		}
	} else if (fsync(cv.out_fd) < 0) {
		vdisk_error(cv.out_path, "fsync failed: %s", strerror(errno));
		goto out;
	}
	if (vdisk_conv_stopped(cv.out_path)) {
		goto out;
	}
	rc = VDISK_EXIT_OK;
out:
	if (cv.out_img && vd_close(cv.out_img) < 0 && rc == VDISK_EXIT_OK) {
		vdisk_lib_error(cv.out_path);
		rc = VDISK_EXIT_ERROR;
	}
	if (rc != VDISK_EXIT_OK && created && out_link && cv.out_fd >= 0 &&
	    ftruncate(cv.out_fd, 0) < 0) {
		vdisk_error(cv.out_path, "cannot empty it after the failure: %s", strerror(errno));
	}
	if (cv.out_fd >= 0 && close(cv.out_fd) < 0 && rc == VDISK_EXIT_OK) {
		vdisk_error(cv.out_path, "close failed: %s", strerror(errno));
		rc = VDISK_EXIT_ERROR;
	}
	if (rc == VDISK_EXIT_OK && cv.tmp_path &&
	    (vdisk_conv_stopped(cv.out_path) || vdisk_conv_commit(&cv, cv.out_img != NULL) < 0)) {
		rc = VDISK_EXIT_ERROR;
	}
	if (rc != VDISK_EXIT_OK && created && !out_link) {
		/* no half-written output left behind (an OUT being replaced stays as it was) */
		unlink(cv.tmp_path ? cv.tmp_path : cv.out_path);
	}
	free(cv.tmp_path);
	vd_close(cv.in);
	free(cv.buf);
	sodium_free(pass);
	vdisk_conv_catch(false);
	if (vdisk_conv_sig) {
		/* OUT is gone: now end as the signal would have (status 128 + N to a shell). */
		raise(vdisk_conv_sig);
	}
	return rc;
}
