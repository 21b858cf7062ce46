// SPDX-License-Identifier: MIT
/*
 * Crash test of the native format: a child process writes versioned blocks,
 * flushes, takes and deletes snapshots, and is killed with SIGKILL at a random
 * instant. After every kill the image must open for writing, `check` must find
 * no damage, every unit must hold a whole version (never torn) no older than
 * the version that was flushed, and the chain must still be a chain.
 *
 * The child publishes, in shared memory, the version of each unit as of its
 * last completed flush; the parent compares with that after the kill.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "vdisk.h"

#define UNIT 4096u
#define NUNITS 2048u
#define SIZE ((uint64_t)UNIT * NUNITS)

struct shared {
	uint32_t durable[NUNITS];	/* version at the child's last completed flush */
	uint32_t next_version;
};

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static void
fill_unit(uint8_t *p, uint32_t u, uint32_t v)
{
	uint64_t *w = (uint64_t *)p;

	w[0] = u;
	w[1] = v;
	for (unsigned i = 2; i < UNIT / 8; i++) {
		w[i] = mix(((uint64_t)u << 32 | v) + i);
	}
}

/* The version a unit holds, or -1 if it is torn or garbage. Zeroes = version 0. */
static long
unit_version(const uint8_t *p, uint32_t u)
{
	const uint64_t *w = (const uint64_t *)p;
	uint8_t ref[UNIT];

	if (w[0] == 0 && w[1] == 0) {
		for (unsigned i = 0; i < UNIT; i++) {
			if (p[i]) {
				return -1;
			}
		}
		return 0;
	}
	if (w[0] != u || w[1] > 0xffffffffu) {
		return -1;
	}
	fill_unit(ref, u, (uint32_t)w[1]);
	return memcmp(ref, p, UNIT) == 0 ? (long)w[1] : -1;
}

static void
child(const char *path, struct shared *sh, uint64_t seed)
{
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	struct vd_image *img = vd_open(path, &oo);
	uint32_t cur[NUNITS];
	uint8_t *buf = malloc(UNIT * 8);
	int snapseq = 0;

	if (!img) {
		fprintf(stderr, "child: open: %s\n", vd_get_error());
		_exit(3);
	}
	memcpy(cur, sh->durable, sizeof(cur));
	srandom((unsigned)seed);
	for (;;) {
		long k = random() % 100;

		if (k < 80) {
			uint32_t u = (uint32_t)(random() % NUNITS), n = (uint32_t)(random() % 8) + 1;

			if (u + n > NUNITS) {
				n = NUNITS - u;
			}
			for (uint32_t i = 0; i < n; i++) {
				uint32_t v = __atomic_add_fetch(&sh->next_version, 1, __ATOMIC_SEQ_CST);

				fill_unit(buf + i * UNIT, u + i, v);
				cur[u + i] = v;
			}
			if (vd_pwrite(img, buf, (size_t)n * UNIT, (uint64_t)u * UNIT) < 0) {
				fprintf(stderr, "child: write: %s\n", vd_get_error());
				_exit(4);
			}
		} else if (k < 90) {
			if (vd_flush(img) < 0) {
				_exit(5);
			}
			memcpy(sh->durable, cur, sizeof(cur));
		} else if (k < 94 && vd_layer_count(img) < 8) {
			char name[32];

			snprintf(name, sizeof(name), "c%ld-%d", (long)getpid(), snapseq++);
			if (vd_snapshot_create(img, name) < 0) {
				fprintf(stderr, "child: snapshot: %s\n", vd_get_error());
				_exit(6);
			}
			memcpy(sh->durable, cur, sizeof(cur));
		} else if (k < 97 && vd_snapshot_count(img) > 0) {
			struct vd_snapshot_info si;
			char name[80];

			vd_snapshot_info(img, (int)(random() % vd_snapshot_count(img)), &si);
			snprintf(name, sizeof(name), "%s", si.name);
			if (vd_snapshot_delete(img, name) < 0) {
				fprintf(stderr, "child: delete %s: %s\n", name, vd_get_error());
				_exit(7);
			}
		} else {
			uint32_t u = (uint32_t)(random() % NUNITS);

			if (vd_pread(img, buf, UNIT, (uint64_t)u * UNIT) < 0 ||
			    unit_version(buf, u) < 0) {
				fprintf(stderr, "child: read back unit %u: bad\n", u);
				_exit(8);
			}
		}
	}
}

static int
verify(const char *path, struct shared *sh, int round)
{
	struct vd_open_opts oo = { .flags = VD_OPEN_RDWR };
	struct vd_image *img = vd_open(path, &oo);
	struct vd_check_result res;
	uint8_t *buf = malloc(SIZE);
	int bad = 0;

	if (!img) {
		diag("round %d: reopen: %s", round, vd_get_error());
		free(buf);
		return -1;
	}
	if (vd_check(img, NULL, NULL, &res) < 0 || res.corrupt) {
		diag("round %d: check: %llu corrupt (%s)", round, (unsigned long long)res.corrupt,
		     vd_get_error());
		bad++;
	}
	if (vd_pread(img, buf, SIZE, 0) < 0) {
		diag("round %d: read: %s", round, vd_get_error());
		bad++;
	}
	for (uint32_t u = 0; u < NUNITS && !bad; u++) {
		long v = unit_version(buf + (uint64_t)u * UNIT, u);

		if (v < 0) {
			diag("round %d: unit %u is torn", round, u);
			bad++;
		} else if ((uint32_t)v < sh->durable[u]) {
			diag("round %d: unit %u lost a flushed write (v%ld < v%u)", round, u, v,
			     sh->durable[u]);
			bad++;
		} else {
			sh->durable[u] = (uint32_t)v;	/* what survived is the new baseline */
		}
	}
	if (vd_close(img) < 0) {
		diag("round %d: close: %s", round, vd_get_error());
		bad++;
	}
	free(buf);
	return bad ? -1 : 0;
}

static int
crash_rounds(const char *dir, uint32_t bs, int rounds)
{
	char path[512];
	struct vd_create_opts co = { .size = SIZE, .block_size = bs };
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fails = 0;

	snprintf(path, sizeof(path), "%s/crash-%u.vdk", dir, bs);
	if (sh == MAP_FAILED || vd_create(path, &co) < 0) {
		diag("setup: %s", vd_get_error());
		return -1;
	}
	memset(sh, 0, sizeof(*sh));
	for (int round = 0; round < rounds && !fails; round++) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			child(path, sh, (uint64_t)round * 31 + bs);
		}
		/* Let it run 0-15 ms, sometimes not at all. */
		usleep((useconds_t)(random() % 15000));
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
			diag("round %d: child exited early (status %d)", round,
			     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			fails++;
			break;
		}
		if (verify(path, sh, round) < 0) {
			fails++;
		}
	}
	munmap(sh, sizeof(*sh));
	return fails ? -1 : 0;
}

int
main(void)
{
	char dir[] = "/dev/shm/t-vdk-crash.XXXXXX";
	int rounds = getenv("VDISK_ASAN") ? 60 : 200;
	char cmd[600];

	if (!mkdtemp(dir)) {
		strcpy(dir, "/tmp/t-vdk-crash.XXXXXX");
		if (!mkdtemp(dir)) {
			skip_all("no scratch directory");
		}
	}
	srandom((unsigned)time(NULL));
	ok(crash_rounds(dir, 4096, rounds) == 0, "%d SIGKILL rounds, 4 KiB blocks", rounds);
	ok(crash_rounds(dir, 16384, rounds / 2) == 0,
	   "%d SIGKILL rounds, 16 KiB blocks (4 KiB writes: read-modify-write)", rounds / 2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	return done_testing();
}
