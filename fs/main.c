// SPDX-License-Identifier: MIT
/*
 * vdiskfs: mount a disk image chain with FUSE.
 *
 *     vdiskfs [-f] [-o OPTIONS] [--key-file FILE | --key-fd N] IMAGE MOUNTPOINT
 *
 * Design notes. The order of events is what makes errors visible: arguments
 * are parsed, the image is opened (and its passphrase asked for on the
 * terminal), the FUSE mount is made, and only then does the process
 * daemonize. Anything that can be seen before the mount (missing file,
 * corrupt header, locked by another writer, wrong passphrase) is printed as
 * "vdiskfs: IMAGE: message" with a non-zero exit while the caller still waits.
 * The image's lock is a flock() on the open file description, which the
 * daemonized child inherits, so opening before fuse_daemonize() is safe.
 *
 * Arguments may come in any order, so that mount(8) -> mount.fuse3 works from
 * /etc/fstab: it runs `vdiskfs IMAGE MOUNTPOINT -o rw,...`. Our own options
 * exist in both forms: --key-file FILE and -o key_file=FILE (the only form
 * an fstab line can pass), likewise key_fd and format. "ro" is noticed and
 * also handed on to the kernel mount.
 *
 * The image is opened by its real path: the daemon chdirs to /, and snapshot
 * files are created next to the image.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include <pthread.h>

#include "vdiskfs.h" /* FUSE_USE_VERSION, then <fuse.h> */
#include <fuse_lowlevel.h>

#include "qemu-lock.h"
#include "util.h"
#include "vdisk.h"
#ifdef VDFS_HAVE_PASSPHRASE
#include "passphrase.h"
#endif

#ifndef VDISK_VERSION
#define VDISK_VERSION "0.1.0"
#endif

struct vdfs_opts {
	char *key_file;
	int key_fd;
	char *format;
	int ro;
	int writethrough;
	int force_share;
	int one_receiver;
	int help;
	int version;
	char *image;
	char *mountpoint;
	int extra_args;
};

enum { KEY_RO, KEY_HELP, KEY_VERSION };

#define VDFS_OPT(t, p)                                                                             \
	{                                                                                          \
		t, offsetof(struct vdfs_opts, p), 1                                                \
	}

static const struct fuse_opt vdfs_opt_spec[] = {
	VDFS_OPT("--key-file=%s", key_file), VDFS_OPT("--key-file %s", key_file),
	VDFS_OPT("key_file=%s", key_file), VDFS_OPT("--key-fd=%d", key_fd),
	VDFS_OPT("--key-fd %d", key_fd), VDFS_OPT("key_fd=%d", key_fd),
	VDFS_OPT("--format=%s", format), VDFS_OPT("--format %s", format),
	VDFS_OPT("format=%s", format), VDFS_OPT("writethrough", writethrough),
	VDFS_OPT("force_share", force_share), VDFS_OPT("one_receiver", one_receiver),
	FUSE_OPT_KEY("ro", KEY_RO),
	/* fstab-only options that may reach us through mount(8): not for the kernel. */
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD), FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD), FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD), FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD), FUSE_OPT_KEY("owner", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("group", FUSE_OPT_KEY_DISCARD), FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-h", KEY_HELP), FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION), FUSE_OPT_KEY("--version", KEY_VERSION), FUSE_OPT_END};

static bool log_to_syslog;

/*
 * A signal that ends the daemon (SIGTERM, SIGINT, SIGHUP) while a program
 * still holds disk open with the writeback cache: the write()s that returned
 * sit in the kernel's page cache, and ending the session at once (libfuse's
 * handler) detached the mount and dropped them, though the README promises
 * that these signals unmount and flush. So the handler only wakes a thread
 * that first writes disk back through the mount (nested.c, as a snapshot
 * does) while the request loop still serves it, then ends the session and
 * wakes the loop's thread. A second signal ends the session at once.
 */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fuse_session *stop_se; /* NULL once the session ends; protected by stop_lock */
static int stop_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_asked;
static pthread_t stop_main;

static void
stop_on_signal(int sig)
{
	int e = errno;

	if (!stop_se) {
		return;
	}
	if (!stop_asked && stop_pipe[1] >= 0) {
		stop_asked = sig;
		if (write(stop_pipe[1], "x", 1) < 0) {
			fuse_session_exit(stop_se);
		}
	} else {
		fuse_session_exit(stop_se);
	}
	errno = e;
}

static void *
stop_thread(void *arg)
{
	struct vdfs *fs = arg;
	char c;

	while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
	}
	if (fs->writeback && atomic_load(&fs->disk_writers) > 0) {
		vdfs_nested(fs, VDFS_NESTED_FSYNC, 0, 0);
	}
	pthread_mutex_lock(&stop_lock);
	if (stop_se) {
		fuse_session_exit(stop_se);
		pthread_kill(stop_main, SIGTERM); /* interrupts the loop's wait */
	}
	pthread_mutex_unlock(&stop_lock);
	return NULL;
}

static const int stop_sigs[] = {SIGTERM, SIGINT, SIGHUP};

/* The session ends: the signals end the program again (as after libfuse's handlers). */
static void
stop_release(void)
{
	pthread_mutex_lock(&stop_lock);
	if (stop_se) {
		for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(stop_sigs[0]); i++) {
			struct sigaction cur;

			if (sigaction(stop_sigs[i], NULL, &cur) == 0 &&
			    cur.sa_handler == stop_on_signal) {
				signal(stop_sigs[i], SIG_DFL);
			}
		}
		stop_se = NULL;
	}
	pthread_mutex_unlock(&stop_lock);
}

/* After the daemon forked: catch the ending signals, for a write-back first. */
static void
stop_catch(struct vdfs *fs, struct fuse_session *se)
{
	struct sigaction sa = {0};
	sigset_t all, old;
	pthread_t t;

	if (!fs->writeback || fs->readonly || pipe2(stop_pipe, O_CLOEXEC) < 0) {
		return;
	}
	stop_se = se;
	stop_main = pthread_self();
	sigfillset(&all);
	/* Fault signals stay deliverable (the library guards mapped reads with them). */
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&t, NULL, stop_thread, fs) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		close(stop_pipe[0]);
		close(stop_pipe[1]);
		stop_pipe[0] = stop_pipe[1] = -1;
		return;
	}
	pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sa.sa_handler = stop_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(stop_sigs[0]); i++) {
		struct sigaction cur;

		/* libfuse leaves a signal the caller ignored ignored: so do we. */
		if (sigaction(stop_sigs[i], NULL, &cur) == 0 && cur.sa_handler != SIG_IGN) {
			sigaction(stop_sigs[i], &sa, NULL);
		}
	}
}

void
vdfs_log(struct vdfs *fs, const char *fmt, ...)
{
	va_list ap;

	(void)fs;
	va_start(ap, fmt);
	if (log_to_syslog) {
		vsyslog(LOG_NOTICE, fmt, ap);
	} else {
		fputs("vdiskfs: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

static int
vdfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct vdfs_opts *o = data;

	(void)outargs;
	switch (key) {
	case KEY_RO:
		o->ro = 1;
		return 1; /* keep: the kernel mount is read-only too */
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->image) {
			o->image = strdup(arg);
		} else if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
		} else {
			o->extra_args = 1;
		}
		return 0;
	default:
		return 1;
	}
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: vdiskfs [options] IMAGE MOUNTPOINT\n"
		"\n"
		"Mount a disk image (and its chain of snapshots) as files:\n"
		"  MOUNTPOINT/disk                    the current disk (read-write unless -o ro)\n"
		"  MOUNTPOINT/partitions/pN           its MBR/GPT partitions\n"
		"  MOUNTPOINT/snapshots/NAME/         disk, info, changed of each snapshot\n"
		"  mkdir snapshots/NAME takes a snapshot, rmdir snapshots/NAME deletes one.\n"
		"Unmount with fusermount3 -u MOUNTPOINT (the image is flushed, then closed).\n"
		"\n"
		"options:\n"
		"  -f                     stay in the foreground\n"
		"  -d                     debug output (implies -f)\n"
		"  -s                     single-threaded\n"
		"  -o ro                  read-only\n"
		"  -o writethrough        no kernel writeback cache on disk: every write()\n"
		"                         reaches the image before it returns\n"
		"  -o allow_other         let other users in (needs user_allow_other)\n"
		"  -o force_share         mount even if another program (QEMU, a read-write\n"
		"                         mount) is writing a layer of the image\n"
		"  -o one_receiver        one thread receives every request and runs small and\n"
		"                         O_DIRECT I/O itself (faster when the CPUs are busy)\n"
		"  --key-file FILE        passphrase of an encrypted image from FILE\n"
		"  --key-fd N             passphrase from file descriptor N\n"
		"                         (-o key_file=FILE, -o key_fd=N for /etc/fstab)\n"
		"  --format FMT           driver of the top image (default: probe)\n"
		"  -o format=FMT          the same\n"
		"  -h, --help             this help\n"
		"  -V, --version          version\n"
		"\n"
		"/etc/fstab: IMAGE MOUNTPOINT fuse.vdiskfs defaults 0 0\n"
		"Without a key option an encrypted image asks for its passphrase on the "
		"terminal.\n");
}

/*
 * Another writer of a layer: the mount would show the disk changing under its
 * caches (stale pages, stale map tables), so it is refused (exit 1, said) unless
 * -o force_share. A QEMU process (a running VM, qemu-nbd, qemu-io) writing a
 * layer holds a lock on byte 101 of that file (its WRITE permission), which
 * qemu-img tests too. A read-only open takes no lock in the library, so for
 * a read-only mount (-o ro, or an image the library opens read-only) each
 * layer is opened again and share-locked here, as `vdisk check` does: that
 * fails while a writer (another vdiskfs mount, vdisk bench -w) holds its
 * exclusive lock, and the held lock keeps a writer out for as long as we are
 * mounted (the descriptors are inherited by the daemon and live until it
 * exits). *held gets them (-1 where none), freed by the caller.
 */
static bool
writer_elsewhere(struct vd_image *img, const char *image, bool lock, bool force, int **held)
{
	int n = vd_layer_count(img);

	*held = lock && n > 0 ? malloc((size_t)n * sizeof(**held)) : NULL;
	for (int i = 0; *held && i < n; i++) {
		(*held)[i] = -1;
	}
	for (int i = 0; i < n; i++) {
		struct vd_layer_info li;
		int fd = vd_layer_file_open(img, i, &li);
		const char *who = NULL;

		if (fd < 0) {
			continue;
		}
		if (lock && flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
			who = "open for writing elsewhere (mounted read-write by vdiskfs?)";
		} else if (vd_qemu_writer(fd)) {
			who = "being written by QEMU (it holds its write lock)";
		}
		if (who && force) {
			fprintf(stderr, "vdiskfs: %s: warning: %s is %s; mounting anyway as "
				"-o force_share asks: the disk may change under the mount\n",
				image, li.path, who);
		} else if (who) {
			fprintf(stderr, "vdiskfs: %s: %s is %s; stop it first, or mount with "
				"-o force_share to see it as it changes\n", image, li.path, who);
			close(fd);
			return true;
		}
		if (*held) {
			(*held)[i] = fd;
		} else {
			close(fd);
		}
	}
	return false;
}

/* The library's message, without a leading "PATH: " that we print ourselves. */
static const char *
strip_path(const char *msg, const char *a, const char *b)
{
	const char *paths[2] = {a, b};
	size_t i, n;

	for (i = 0; i < 2; i++) {
		if (!paths[i]) {
			continue;
		}
		n = strlen(paths[i]);
		if (strncmp(msg, paths[i], n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') {
			return msg + n + 2;
		}
	}
	return msg;
}

static bool
no_write_permission(const char *path)
{
	struct stat st;

	/* root ignores the mode bits: look at them ourselves. */
	return stat(path, &st) == 0 && !(st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH));
}

/* -o fsname=PATH, with the characters that would split the option list escaped. */
static int
add_fsname(struct fuse_args *args, const char *path)
{
	char *opt = malloc(strlen(path) * 2 + 16), *p;

	if (!opt) {
		return -ENOMEM;
	}
	p = opt + sprintf(opt, "-ofsname=");
	for (; *path; path++) {
		if (*path == ',' || *path == '\\') {
			*p++ = '\\';
		}
		*p++ = *path;
	}
	*p = '\0';
	if (fuse_opt_add_arg(args, opt) < 0) {
		free(opt);
		return -ENOMEM;
	}
	free(opt);
	return 0;
}

/* mountinfo's octal escapes (\040 for a space...) decoded in place. */
static void
unescape_mountinfo(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/*
 * The device number of our FUSE mount on MOUNTPOINT (the last such line of
 * /proc/self/mountinfo): nested I/O checks it opened our own disk, and the
 * mount's readahead and dirty share are set through /sys/class/bdi/MAJ:MIN.
 * 0 if not found.
 */
static dev_t
find_mount_dev(struct vdfs *fs, const char *mountpoint)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	unsigned maj, min;
	dev_t dev = 0;

	if (!f) {
		return 0;
	}
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX + 1], *dash;

		dash = strstr(line, " - fuse");
		if (!dash || sscanf(line, "%*u %*u %u:%u %*s %4096s", &maj, &min, mp) != 3) {
			continue;
		}
		unescape_mountinfo(mp);
		if (strcmp(mp, mountpoint) == 0) {
			dev = makedev(maj, min);
			snprintf(fs->bdi_path, sizeof(fs->bdi_path), "/sys/class/bdi/%u:%u", maj,
				 min);
		}
	}
	free(line);
	fclose(f);
	return dev;
}

int
main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct vdfs_opts o = {.key_fd = -1};
	struct fuse_cmdline_opts co = {0};
	struct vd_open_opts oo = {0};
	struct fuse_session *se;
	struct vdfs fs = {0};
	char *slash;
	int ret = 1, r;
	bool mounted = false;
	int *held = NULL, nheld = 0; /* share locks of a read-only mount's layers */
#ifdef VDFS_HAVE_PASSPHRASE
	struct vd_pass_src ps = {.key_fd = -1};
#endif

	/*
	 * Each worker thread would get its own malloc arena, which keeps freed
	 * 1 MiB request buffers around: a few arenas are plenty and keep the
	 * daemon's memory small (measured: 50 -> 40 MiB peak under 8 x 1 MiB jobs).
	 */
	if (argc == 1 && vdfs_nested_is_helper(argv[0])) {
		return vdfs_nested_main();
	}
	mallopt(M_ARENA_MAX, 4);
	pthread_mutex_init(&fs.lock, NULL);
	pthread_mutex_init(&fs.snap_op_lock, NULL);
	pthread_mutex_init(&fs.disk_mode_lock, NULL);
	if (fuse_opt_parse(&args, &o, vdfs_opt_spec, vdfs_opt_proc) < 0) {
		usage(stderr);
		goto out_args;
	}
	if (o.help) {
		usage(stdout);
		ret = 0;
		goto out_args;
	}
	if (o.version) {
		printf("vdiskfs %s (libfuse %s)\n", VDISK_VERSION, fuse_pkgversion());
		ret = 0;
		goto out_args;
	}
	if (!o.image || !o.mountpoint || o.extra_args) {
		fprintf(stderr, "vdiskfs: %s\n",
			o.extra_args ? "too many arguments" : "IMAGE and MOUNTPOINT are required");
		/* `vdisk -f FMT` habit: here -f is FUSE's foreground flag, FMT became IMAGE. */
		for (int i = 1; o.extra_args && i + 1 < argc; i++) {
			if (strcmp(argv[i], "-f") == 0 && strcmp(argv[i + 1], o.image) == 0) {
				fprintf(stderr,
					"vdiskfs: '%s' after -f was taken as IMAGE: -f means \"stay in "
					"the foreground\" here; give the image format with --format %s "
					"(or -o format=%s)\n",
					o.image, o.image, o.image);
				break;
			}
		}
		usage(stderr);
		goto out_args;
	}
	if (fuse_parse_cmdline(&args, &co) != 0) {
		goto out_args;
	}
	/* Absolute, so that unmounting works after the daemon chdir()s to /. */
	{
		char *mp = realpath(o.mountpoint, NULL);
		struct stat st;

		if (!mp) {
			fprintf(stderr, "vdiskfs: %s: %s\n", o.mountpoint, strerror(errno));
			goto out_args;
		}
		/*
		 * libfuse would mount a file-rooted mount over a file, whose root
		 * (our directory) the kernel then refuses: every access is EIO.
		 */
		if (stat(mp, &st) == 0 && !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "vdiskfs: %s: %s\n", o.mountpoint, strerror(ENOTDIR));
			free(mp);
			goto out_args;
		}
		free(o.mountpoint);
		o.mountpoint = mp;
	}
	fs.image_arg = o.image;
	fs.foreground = co.foreground;

	/* Open the image: every error here is printed, before the mount. */
	fs.image_path = realpath(o.image, NULL);
	if (!fs.image_path) {
		fprintf(stderr, "vdiskfs: %s: %s\n", o.image, strerror(errno));
		goto out_args;
	}
	fs.image_dir = strdup(fs.image_path);
	if (!fs.image_dir) {
		goto out_args;
	}
	slash = strrchr(fs.image_dir, '/');
	if (slash == fs.image_dir) {
		slash[1] = '\0';
	} else if (slash) {
		*slash = '\0';
	}
	oo.format = o.format;
#ifdef VDFS_HAVE_PASSPHRASE
	ps.key_file = o.key_file;
	ps.key_fd = o.key_fd;
	oo.passphrase = vd_pass_get;
	oo.passphrase_opaque = &ps;
#else
	if (o.key_file || o.key_fd >= 0) {
		fprintf(stderr, "vdiskfs: encryption support is not built in\n");
		goto out_args;
	}
#endif
	fs.readonly = o.ro;
	fs.writeback = !o.writethrough;
	if (co.singlethread) {
		/*
		 * The one thread cannot serve the requests that nested write-back
		 * (a snapshot, a partition request with disk's pages dirty or cached)
		 * makes while it waits: disk goes uncached instead.
		 */
		fs.writeback = false;
		fs.uncached = true;
	}
	if (!fs.readonly && no_write_permission(fs.image_path)) {
		fprintf(stderr, "vdiskfs: %s: no write permission, mounting read-only\n", o.image);
		fs.readonly = true;
	}
	oo.flags = fs.readonly ? 0 : VD_OPEN_RDWR;
	fs.img = vd_open(fs.image_path, &oo);
	if (!fs.img && !fs.readonly && (errno == EROFS || errno == EPERM)) {
		/* Said only once the read-only open worked (else its error is the news). */
		char *why = strdup(strip_path(vd_get_error(), fs.image_path, o.image));

		fs.readonly = true;
		oo.flags = 0;
		fs.img = vd_open(fs.image_path, &oo);
		if (fs.img) {
			fprintf(stderr, "vdiskfs: %s: %s; mounting read-only\n", o.image,
				why ? why : "read-only");
		}
		free(why);
	}
	if (!fs.img) {
		fprintf(stderr, "vdiskfs: %s: %s\n", o.image,
			strip_path(vd_get_error(), fs.image_path, o.image));
		goto out_args;
	}
	if (vd_is_readonly(fs.img)) {
		fs.readonly = true;
	}
	nheld = vd_layer_count(fs.img);
	if (writer_elsewhere(fs.img, o.image, vd_is_readonly(fs.img), o.force_share, &held)) {
		goto out_close;
	}
	if (fs.readonly && !o.ro) {
		fuse_opt_add_arg(&args, "-oro");
	}
	fs.size = vd_get_size(fs.img);
	clock_gettime(CLOCK_REALTIME, &fs.mount_time);
	r = vdfs_snaps_refresh(&fs);
	if (r < 0) {
		fprintf(stderr, "vdiskfs: %s: listing snapshots: %s\n", o.image,
			strip_path(vd_get_error(), fs.image_path, o.image));
		goto out_close;
	}
	/* Name the mount after the image (shown by mount(8) and in /proc/mounts). */
	r = add_fsname(&args, fs.image_path);
	if (r < 0) {
		goto out_close;
	}
	fuse_opt_add_arg(&args, "-odefault_permissions");

	fs.fuse = fuse_new(&args, &vdfs_ops, sizeof(vdfs_ops), &fs);
	if (!fs.fuse) {
		goto out_close;
	}
	/*
	 * The handlers before the mount: a SIGTERM or SIGHUP sent as soon as the
	 * mount shows in /proc/mounts must end the session cleanly, not kill us
	 * and leave a dead mount (the daemonized child inherits them).
	 */
	se = fuse_get_session(fs.fuse);
	if (fuse_set_signal_handlers(se) != 0) {
		goto out_destroy;
	}
	if (fuse_mount(fs.fuse, o.mountpoint) != 0) {
		goto out_signals;
	}
	mounted = true;
	fs.mountpoint = o.mountpoint;
	fs.mnt_dev = find_mount_dev(&fs, o.mountpoint);
	if (!co.foreground) {
		log_to_syslog = true;
		openlog("vdiskfs", LOG_PID, LOG_DAEMON);
	}
	if (fuse_daemonize(co.foreground) != 0) {
		goto out_unmount;
	}
	stop_catch(&fs, se);
	if (co.singlethread) {
		r = fuse_loop(fs.fuse);
	} else if (o.one_receiver || vd_env_flag("VDISK_ONE_RECEIVER")) {
		/* loop.c: one receiving thread, a pool for what may take long. */
		r = vdfs_loop_run(se, co.max_threads > 10 ? co.max_threads : 16);
	} else {
		/* libfuse's multi-threaded loop, a cloned /dev/fuse fd per worker. */
		struct fuse_loop_config *lc = fuse_loop_cfg_create();

		if (!lc) {
			goto out_unmount;
		}
		fuse_loop_cfg_set_clone_fd(lc, 1);
		fuse_loop_cfg_set_max_threads(lc, co.max_threads > 10 ? co.max_threads : 16);
		fuse_loop_cfg_set_idle_threads(lc, 16);
		r = fuse_loop_mt(fs.fuse, lc);
		fuse_loop_cfg_destroy(lc);
	}
	/* A positive value is the signal that ended the loop (SIGTERM...): a clean exit. */
	ret = r >= 0 ? 0 : 1;
out_unmount:
	if (mounted) {
		fuse_unmount(fs.fuse);
	}
out_signals:
	stop_release();
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_destroy(fs.fuse); /* calls vdfs_destroy: flush */
	vdfs_handles_free(&fs);
out_close:
	vdfs_tree_destroy(&fs);
	r = vd_close(fs.img);
	if (r < 0) {
		vdfs_log(&fs, "%s: closing: %s", o.image, vd_get_error());
		ret = 1;
	}
out_args:
	for (int i = 0; held && i < nheld; i++) {
		if (held[i] >= 0) {
			close(held[i]);
		}
	}
	free(held);
#ifdef VDFS_HAVE_PASSPHRASE
	vd_pass_src_clear(&ps);
#endif
	free(fs.image_path);
	free(fs.image_dir);
	free(co.mountpoint);
	free(o.image);
	free(o.mountpoint);
	free(o.key_file);
	free(o.format);
	fuse_opt_free_args(&args);
	if (log_to_syslog) {
		closelog();
	}
	return ret;
}
