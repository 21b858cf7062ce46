// SPDX-License-Identifier: MIT
/*
 * Passphrase sources for the CLI and vdiskfs (see passphrase.h).
 *
 * In order: --key-file FILE (the whole file, one trailing newline dropped),
 * --key-fd N (read byte by byte up to a newline or EOF, so that one fd can
 * carry several passphrases, one per line, e.g. the old and the new one of
 * `vdisk key add`), else /dev/tty with echo off (asked twice when confirm is
 * set). With none of these the caller gets -ENXIO and a message saying how to
 * pass a key. Nothing here reads the environment or argv.
 *
 * The passphrase only ever lives in sodium_malloc'd memory (guard pages,
 * mlock'd and excluded from core dumps by libsodium), is compared with
 * sodium_memcmp, and is wiped by sodium_free. The terminal state is restored on
 * every path, also when SIGINT/SIGTERM/SIGQUIT/SIGTSTP arrive while echo is off.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"
#include "passphrase.h"

/* The longest passphrase accepted, in bytes (without the NUL). */
#define VD_PASS_MAX 1023

static int vd_pass_tty_fd = -1;
static struct termios vd_pass_saved_tio;
static volatile sig_atomic_t vd_pass_tty_raw;

static void
vd_pass_restore_tty(void)
{
	if (vd_pass_tty_raw) {
		tcsetattr(vd_pass_tty_fd, TCSAFLUSH, &vd_pass_saved_tio);
		vd_pass_tty_raw = 0;
	}
}

static void
vd_pass_on_signal(int sig)
{
	vd_pass_restore_tty();
	if (write(vd_pass_tty_fd, "\n", 1) < 0) {
		/* nothing to do */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Strip one trailing "\n" or "\r\n". */
static void
vd_pass_chomp(char *p, size_t *len)
{
	if (*len && p[*len - 1] == '\n') {
		(*len)--;
		if (*len && p[*len - 1] == '\r') {
			(*len)--;
		}
	}
	p[*len] = '\0';
}

static int
vd_pass_from_file(const char *file, char *p)
{
	size_t len = 0;
	ssize_t n;
	int fd, rc = 0;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return vd_set_error(errno, "%s: cannot open key file: %s", file, strerror(errno));
	}
	for (;;) {
		n = read(fd, p + len, VD_PASS_MAX + 1 - len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			rc = vd_set_error(errno, "%s: cannot read key file: %s", file,
					  strerror(errno));
			goto out;
		}
		if (n == 0) {
			break;
		}
		len += (size_t)n;
		if (len > VD_PASS_MAX) {
			rc = vd_set_error(EINVAL, "%s: key file longer than %d bytes", file,
					  VD_PASS_MAX);
			goto out;
		}
	}
	vd_pass_chomp(p, &len);
	if (len == 0) {
		rc = vd_set_error(EINVAL, "%s: key file is empty", file);
	} else if (memchr(p, '\0', len)) {
		rc = vd_set_error(EINVAL, "%s: key file contains a NUL byte", file);
	}
out:
	close(fd);
	return rc;
}

/* Read up to a newline or EOF, one byte at a time so nothing after it is consumed. */
static int
vd_pass_read_line(int fd, char *p, size_t *lenp, bool *eof)
{
	size_t len = 0;
	ssize_t n;
	char c;

	*eof = false;
	for (;;) {
		n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -errno;
		}
		if (n == 0) {
			*eof = true;
			break;
		}
		if (c == '\n') {
			break;
		}
		if (len >= VD_PASS_MAX) {
			return -E2BIG;
		}
		p[len++] = c;
	}
	if (len && p[len - 1] == '\r') {
		len--;
	}
	p[len] = '\0';
	*lenp = len;
	return 0;
}

static int
vd_pass_from_fd(int fd, char *p)
{
	size_t len;
	bool eof;
	int rc;

	rc = vd_pass_read_line(fd, p, &len, &eof);
	if (rc == -E2BIG) {
		return vd_set_error(EINVAL, "key fd %d: passphrase longer than %d bytes", fd,
				    VD_PASS_MAX);
	}
	if (rc < 0) {
		return vd_set_error(-rc, "key fd %d: cannot read: %s", fd, strerror(-rc));
	}
	if (len == 0) {
		return vd_set_error(EINVAL, "key fd %d: no passphrase (empty or at end of file)",
				    fd);
	}
	if (memchr(p, '\0', len)) {
		return vd_set_error(EINVAL, "key fd %d: passphrase contains a NUL byte", fd);
	}
	return 0;
}

/* Ask once on the terminal fd with echo off. */
static int
vd_pass_ask(int fd, const char *prompt, char *p)
{
	struct sigaction sa, old[4];
	static const int sigs[4] = {SIGINT, SIGTERM, SIGQUIT, SIGTSTP};
	struct termios tio;
	size_t len;
	bool eof;
	int i, rc;

	if (write(fd, prompt, strlen(prompt)) < 0) {
		return vd_set_error(errno, "cannot write to the terminal: %s", strerror(errno));
	}
	if (tcgetattr(fd, &vd_pass_saved_tio) < 0) {
		return vd_set_error(errno, "cannot set up the terminal: %s", strerror(errno));
	}
	vd_pass_tty_fd = fd;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = vd_pass_on_signal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < 4; i++) {
		sigaction(sigs[i], &sa, &old[i]);
	}
	tio = vd_pass_saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	tio.c_lflag |= ICANON;
	vd_pass_tty_raw = 1;
	if (tcsetattr(fd, TCSAFLUSH, &tio) < 0) {
		vd_pass_tty_raw = 0;
		rc = vd_set_error(errno, "cannot turn off echo: %s", strerror(errno));
		goto out;
	}
	rc = vd_pass_read_line(fd, p, &len, &eof);
	vd_pass_restore_tty();
	if (write(fd, "\n", 1) < 0) {
		/* the answer is in; a lost newline does not matter */
	}
	if (rc == -E2BIG) {
		rc = vd_set_error(EINVAL, "passphrase longer than %d bytes", VD_PASS_MAX);
	} else if (rc < 0) {
		rc = vd_set_error(-rc, "cannot read the passphrase: %s", strerror(-rc));
	} else if (len == 0) {
		rc = vd_set_error(EINVAL, "empty passphrase");
	}
out:
	for (i = 0; i < 4; i++) {
		sigaction(sigs[i], &old[i], NULL);
	}
	return rc;
}

static int
vd_pass_from_tty(struct vd_pass_src *src, const char *path, char *p)
{
	char prompt[512];
	char *again = NULL;
	int fd, rc;

	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || !isatty(fd)) {
		if (fd >= 0) {
			close(fd);
		}
		return vd_set_error(ENXIO,
				    "%s: a passphrase is needed and there is no terminal to ask "
				    "it on: use --key-file FILE or --key-fd N",
				    path);
	}
	if (src->prompt) {
		snprintf(prompt, sizeof(prompt), "%s", src->prompt);
	} else {
		snprintf(prompt, sizeof(prompt),
			 "%s for %s: ", src->confirm ? "New passphrase" : "Passphrase", path);
	}
	rc = vd_pass_ask(fd, prompt, p);
	if (rc < 0 || !src->confirm) {
		goto out;
	}
	again = sodium_malloc(VD_PASS_MAX + 1);
	if (!again) {
		rc = vd_set_error(ENOMEM, "out of secure memory");
		goto out;
	}
	rc = vd_pass_ask(fd, "Repeat the passphrase: ", again);
	if (rc == 0 && (strlen(again) != strlen(p) || sodium_memcmp(again, p, strlen(p)) != 0)) {
		rc = vd_set_error(EINVAL, "%s: the two passphrases do not match", path);
	}
out:
	sodium_free(again);
	close(fd);
	return rc;
}

int
vd_pass_get(void *opaque, const char *path, char *buf, size_t size)
{
	struct vd_pass_src *src = opaque;
	char *p;
	size_t len;
	int rc;

	if (!src) {
		return vd_set_error(EACCES, "%s: image is encrypted and no passphrase was given",
				    path);
	}
	if (sodium_init() < 0) {
		return vd_set_error(ENOMEM, "libsodium cannot be initialised");
	}
	if (!src->cached) {
		p = sodium_malloc(VD_PASS_MAX + 1);
		if (!p) {
			return vd_set_error(ENOMEM, "out of secure memory");
		}
		if (src->key_file) {
			rc = vd_pass_from_file(src->key_file, p);
		} else if (src->key_fd >= 0) {
			rc = vd_pass_from_fd(src->key_fd, p);
		} else {
			rc = vd_pass_from_tty(src, path, p);
		}
		if (rc < 0) {
			sodium_free(p);
			return rc;
		}
		src->cached = p;
	}
	len = strlen(src->cached);
	if (len + 1 > size) {
		return vd_set_error(EINVAL, "%s: passphrase longer than %zu bytes", path,
				    size ? size - 1 : 0);
	}
	memcpy(buf, src->cached, len + 1);
	return 0;
}

void
vd_pass_src_clear(struct vd_pass_src *src)
{
	if (src && src->cached) {
		sodium_free(src->cached); /* wipes before freeing */
		src->cached = NULL;
	}
}
