// SPDX-License-Identifier: MIT
/*
 * Unit test of tools/common/passphrase.c: --key-file (trailing newline,
 * CRLF, empty, missing, too long), --key-fd (one passphrase per line, so one
 * fd can carry the old and the new passphrase), the cache (a chain asks once),
 * no controlling terminal (a clear -ENXIO naming --key-file), and the real
 * terminal prompt on a pseudo-terminal: the prompt appears, the typed
 * passphrase is not echoed, echo is back on afterwards, and the confirmation
 * catches a mismatch.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "tap.h"
#include "../../tools/common/passphrase.c"

static char tmpdir[] = "/tmp/t-passphrase.XXXXXX";

static const char *
write_file(const char *name, const char *content, size_t len)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(content, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
	return path;
}

static int
get_from_file(const char *name, const char *content, char *buf, size_t size)
{
	struct vd_pass_src s = {.key_file = write_file(name, content, strlen(content)),
				.key_fd = -1};
	int rc = vd_pass_get(&s, "img.vdk", buf, size);

	vd_pass_src_clear(&s);
	return rc;
}

/* Read what the terminal shows until `want` appears (or 5 s pass); appends to acc. */
static bool
pty_expect(int master, char *acc, size_t cap, const char *want)
{
	size_t len = strlen(acc);
	struct pollfd p = {.fd = master, .events = POLLIN};

	while (!strstr(acc, want)) {
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0) {
			return false;
		}
		n = read(master, acc + len, cap - 1 - len);
		if (n <= 0) {
			return false;
		}
		len += (size_t)n;
		acc[len] = '\0';
	}
	return true;
}

/*
 * Run vd_pass_get in a child whose controlling terminal is a new pty; type
 * each of answers after each prompt. Returns the child's vd_pass_get result
 * (negated errno as exit code), and in *out what the terminal showed.
 */
static int
pty_session(int confirm, const char *const *answers, int nanswers, const char *expect, char *out,
	    size_t cap, bool *echo_restored)
{
	int master, status, i;
	pid_t pid;
	char *sname;

	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    !(sname = ptsname(master))) {
		perror("pty");
		exit(1);
	}
	pid = fork();
	if (pid == 0) {
		struct vd_pass_src s = {.key_fd = -1, .confirm = confirm};
		struct termios tio;
		char buf[64];
		int slave, rc;

		setsid();
		slave = open(sname, O_RDWR); /* becomes the controlling terminal */
		if (slave < 0) {
			_exit(100);
		}
		rc = vd_pass_get(&s, "img.vdk", buf, sizeof(buf));
		if (tcgetattr(slave, &tio) < 0 || !(tio.c_lflag & ECHO)) {
			_exit(101);
		}
		if (rc == 0 && strcmp(buf, expect) != 0) {
			_exit(102);
		}
		vd_pass_src_clear(&s);
		_exit(rc < 0 ? -rc : 0);
	}
	out[0] = '\0';
	for (i = 0; i < nanswers; i++) {
		const char *want = i == 0 ? (confirm ? "New passphrase for img.vdk: "
						     : "Passphrase for img.vdk: ")
					  : "Repeat the passphrase: ";

		if (!pty_expect(master, out, cap, want)) {
			diag("prompt '%s' not seen; terminal showed '%s'", want, out);
			break;
		}
		/* Echo is switched off before the prompt's read: wait for it. */
		for (int k = 0; k < 1000; k++) { /* up to 10 s on a loaded machine */
			struct termios t;

			if (tcgetattr(master, &t) == 0 && !(t.c_lflag & ECHO)) {
				break;
			}
			usleep(10000);
		}
		if (write(master, answers[i], strlen(answers[i])) < 0) {
			break;
		}
	}
	waitpid(pid, &status, 0);
	/* Collect whatever else the child printed (newlines after each answer). */
	{
		struct pollfd p = {.fd = master, .events = POLLIN};
		size_t len = strlen(out);
		ssize_t n;

		while (poll(&p, 1, 100) > 0 && (n = read(master, out + len, cap - 1 - len)) > 0) {
			len += (size_t)n;
			out[len] = '\0';
		}
	}
	close(master);
	*echo_restored = !(WIFEXITED(status) && WEXITSTATUS(status) == 101);
	if (!WIFEXITED(status)) {
		return -1000;
	}
	return WEXITSTATUS(status) >= 100 ? -WEXITSTATUS(status) : -WEXITSTATUS(status);
}

int
main(void)
{
	char buf[64], big[3000], shown[4096];
	struct vd_pass_src s = {.key_fd = -1};
	const char *path;
	int fds[2], rc;
	bool echo_ok;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}

	/* --key-file */
	check_int(get_from_file("k1", "hunter2\n", buf, sizeof(buf)), 0);
	ok(strcmp(buf, "hunter2") == 0, "key file: one trailing newline dropped");
	check_int(get_from_file("k2", "two words\r\n", buf, sizeof(buf)), 0);
	ok(strcmp(buf, "two words") == 0, "key file: CRLF dropped, spaces kept");
	check_int(get_from_file("k3", "a\n\n", buf, sizeof(buf)), 0);
	ok(strcmp(buf, "a\n") == 0, "key file: only one newline dropped");
	check_int(get_from_file("k4", "", buf, sizeof(buf)), -EINVAL);
	ok(strstr(vd_get_error(), "key file is empty") != NULL, "empty key file: %s",
	   vd_get_error());
	check_int(get_from_file("k5", "hunter2", buf, 4), -EINVAL);
	ok(strstr(vd_get_error(), "longer than 3 bytes") != NULL, "too long for the buffer: %s",
	   vd_get_error());
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	check_int(get_from_file("k6", big, buf, sizeof(buf)), -EINVAL);
	ok(strstr(vd_get_error(), "longer than") != NULL, "huge key file refused: %s",
	   vd_get_error());
	s.key_file = "/nonexistent/key";
	check_int(vd_pass_get(&s, "img.vdk", buf, sizeof(buf)), -ENOENT);
	ok(strstr(vd_get_error(), "/nonexistent/key: cannot open key file") != NULL,
	   "missing key file: %s", vd_get_error());

	/* The cache: asked once, still there after the file went away. */
	path = write_file("k7", "cached-one\n", 11);
	s.key_file = path;
	check_int(vd_pass_get(&s, "a.vdk", buf, sizeof(buf)), 0);
	unlink(path);
	memset(buf, 0, sizeof(buf));
	check_int(vd_pass_get(&s, "b.vdk", buf, sizeof(buf)), 0);
	ok(strcmp(buf, "cached-one") == 0, "second layer of a chain gets the cached passphrase");
	ok(s.cached != NULL, "cached copy kept");
	vd_pass_src_clear(&s);
	ok(s.cached == NULL, "clear drops the cache");
	vd_pass_src_clear(&s); /* twice is fine */

	/* --key-fd: one passphrase per line. */
	if (pipe(fds) < 0 || write(fds[1], "old pass\nnew pass\r\n", 19) != 19) {
		perror("pipe");
		return 1;
	}
	close(fds[1]);
	{
		struct vd_pass_src a = {.key_fd = fds[0]}, b = {.key_fd = fds[0]},
				   c = {.key_fd = fds[0]};

		check_int(vd_pass_get(&a, "img.vdk", buf, sizeof(buf)), 0);
		ok(strcmp(buf, "old pass") == 0, "key fd: first line");
		check_int(vd_pass_get(&b, "img.vdk", buf, sizeof(buf)), 0);
		ok(strcmp(buf, "new pass") == 0, "key fd: second line, CR dropped");
		check_int(vd_pass_get(&c, "img.vdk", buf, sizeof(buf)), -EINVAL);
		ok(strstr(vd_get_error(), "no passphrase") != NULL, "key fd at EOF: %s",
		   vd_get_error());
		vd_pass_src_clear(&a);
		vd_pass_src_clear(&b);
	}
	close(fds[0]);
	s.key_file = NULL;
	s.key_fd = 999;
	check_int(vd_pass_get(&s, "img.vdk", buf, sizeof(buf)), -EBADF);

	/* No controlling terminal: a clear error, never a hang. */
	{
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			struct vd_pass_src t = {.key_fd = -1};

			setsid();
			rc = vd_pass_get(&t, "img.vdk", buf, sizeof(buf));
			_exit(rc == -ENXIO &&
					      strstr(vd_get_error(),
						     "img.vdk: a passphrase is needed") &&
					      strstr(vd_get_error(), "--key-file")
				      ? 0
				      : 1);
		}
		waitpid(pid, &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "no terminal: -ENXIO and a message naming --key-file");
	}

	/* The prompt on a real (pseudo) terminal. */
	{
		const char *one[] = {"tty secret\n"};
		const char *two_ok[] = {"tty secret\n", "tty secret\n"};
		const char *two_bad[] = {"tty secret\n", "other\n"};

		rc = pty_session(0, one, 1, "tty secret", shown, sizeof(shown), &echo_ok);
		check_int(rc, 0);
		ok(strstr(shown, "Passphrase for img.vdk: ") != NULL, "prompt shown");
		ok(strstr(shown, "tty secret") == NULL, "typed passphrase not echoed");
		ok(echo_ok, "echo back on afterwards");

		rc = pty_session(1, two_ok, 2, "tty secret", shown, sizeof(shown), &echo_ok);
		check_int(rc, 0);
		ok(strstr(shown, "Repeat the passphrase: ") != NULL, "confirmation asked");
		ok(strstr(shown, "tty secret") == NULL, "neither answer echoed");

		rc = pty_session(1, two_bad, 2, "", shown, sizeof(shown), &echo_ok);
		check_int(rc, -EINVAL);
		ok(echo_ok, "echo back on after a mismatch");
	}

	rmdir(tmpdir);
	return done_testing();
}
