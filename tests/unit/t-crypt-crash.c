// SPDX-License-Identifier: MIT
/*
 * Crash test with encryption on: a child process writes versioned blocks to an
 * encrypted image and flushes now and then; the parent kills it with SIGKILL
 * at a random instant, reopens the image and checks that
 *   - it opens with the passphrase and vd_check finds no damage;
 *   - every block holds exactly one whole version (never torn, never
 *     garbage), at least the version flushed before the kill;
 *   - no AEAD counter was reused: every counter in the map that is new since
 *     the previous round is at or above the counter ceiling the header had
 *     committed before the child started (so counters handed out before a
 *     crash are never handed out again), and all counters in the map differ.
 * The map is read straight from the file (vdk-map-walk.h) after each round.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tap.h"
#include "vdisk.h"
#include "vdk.h"
#include "util.h"
#include "vdk-map-walk.h"

#define BS 4096u
#define NB 1024u

struct shared {
	uint32_t written[NB]; /* highest version whose write started */
	uint32_t flushed[NB]; /* version known durable (flush returned after it) */
	uint64_t writes;
};

static char dir[] = "/dev/shm/t-crypt-crash.XXXXXX";
static char path[256];
static struct shared *sh;

static int
pass_cb(void *opaque, const char *p, char *out, size_t size)
{
	(void)opaque;
	(void)p;
	snprintf(out, size, "crash test");
	return 0;
}

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

/* Block content for (b, v): header words then pseudo-random words. */
static void
fill(uint8_t *p, uint32_t b, uint32_t v)
{
	uint64_t s = mix(((uint64_t)b << 32) | v);

	vd_put_le32(p, b);
	vd_put_le32(p + 4, v);
	for (unsigned i = 8; i < BS; i += 8) {
		s = mix(s + i);
		vd_put_le64(p + i, s);
	}
}

static void
child(uint64_t seed)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR, .passphrase = pass_cb};
	uint32_t ver[NB];
	uint8_t *buf = malloc(16 * BS);
	struct vd_image *img = vd_open(path, &o);
	uint64_t s = seed;

	if (!img || !buf) {
		_exit(3);
	}
	memcpy(ver, sh->written, sizeof(ver));
	for (unsigned n = 0;; n++) {
		uint32_t b, k;

		s = mix(s + n);
		k = (s & 7) == 0 ? 1 + (uint32_t)((s >> 8) % 16) : 1;
		b = (uint32_t)((s >> 16) % (NB - k + 1));
		for (uint32_t j = 0; j < k; j++) {
			ver[b + j]++;
			sh->written[b + j] = ver[b + j];
			fill(buf + j * BS, b + j, ver[b + j]);
		}
		if (vd_pwrite(img, buf, k * BS, (uint64_t)b * BS) != 0) {
			_exit(4);
		}
		sh->writes++;
		if (n % 8 == 7) {
			if (vd_flush(img) != 0) {
				_exit(5);
			}
			memcpy(sh->flushed, ver, sizeof(ver));
		}
	}
}

static void
ctr_cb(void *opaque, uint64_t vb, const struct vdk_entry *e)
{
	uint64_t *ctr = opaque;

	if (vb < NB) {
		ctr[vb] = e->ctr;
	}
}

/* Read the committed map: ctr of every data entry (0 if none) and the header ceiling. */
static int
read_map(uint64_t ctr[NB], uint64_t *ceiling)
{
	struct vdk_header h;
	int r;

	memset(ctr, 0, NB * sizeof(*ctr));
	r = map_walk(path, &h, ctr_cb, ctr);
	if (r == 0) {
		*ceiling = h.ctr_next;
	}
	return r;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
main(void)
{
	struct vd_create_opts co = {
		.size = NB * BS,
		.block_size = BS,
		.cipher = "xchacha20poly1305",
		.passphrase = "crash test",
		.pwhash_opslimit = crypto_pwhash_OPSLIMIT_MIN,
		.pwhash_memlimit = crypto_pwhash_MEMLIMIT_MIN,
	};
	struct vd_open_opts ro = {.passphrase = pass_cb};
	static uint64_t prev[NB], cur[NB], sorted[NB];
	static uint8_t buf[BS], want[BS];
	int rounds = getenv("VDISK_ASAN") ? 60 : 200;
	int bad_open = 0, bad_check = 0, bad_data = 0, bad_ctr = 0, bad_lost = 0, mapped = 0;
	uint64_t ceiling = 0, seed, total = 0;
	char cmd[300];

	seed = getenv("VDISK_SEED") ? strtoull(getenv("VDISK_SEED"), NULL, 0)
				    : (uint64_t)time(NULL);
	if (sodium_init() < 0 || !mkdtemp(dir)) {
		return 1;
	}
	snprintf(path, sizeof(path), "%s/crash.vdk", dir);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || !ok(vd_create(path, &co) == 0, "create: %s", vd_get_error())) {
		return done_testing();
	}
	diag("seed %llu, %d rounds", (unsigned long long)seed, rounds);
	for (int round = 0; round < rounds; round++) {
		struct vd_check_result res;
		struct vd_image *img;
		pid_t pid;
		int st;

		if (read_map(prev, &ceiling) != 0) {
			diag("round %d: cannot read the map", round);
			bad_ctr++;
			break;
		}
		pid = fork();
		if (pid == 0) {
			child(seed * 1000003 + (uint64_t)round);
		}
		usleep(2000 + (useconds_t)(mix(seed + (uint64_t)round) % 25000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (!WIFSIGNALED(st)) {
			diag("round %d: child exited with %d", round, WEXITSTATUS(st));
			bad_open++;
			break;
		}
		img = vd_open(path, &ro);
		if (!img) {
			diag("round %d: open: %s", round, vd_get_error());
			bad_open++;
			break;
		}
		memset(&res, 0, sizeof(res));
		if (vd_check(img, NULL, NULL, &res) != 0 || res.corrupt != 0) {
			diag("round %d: check found %llu corrupt", round,
			     (unsigned long long)res.corrupt);
			bad_check++;
		}
		for (uint32_t b = 0; b < NB; b++) {
			uint32_t v;

			if (vd_pread(img, buf, BS, (uint64_t)b * BS) != 0) {
				diag("round %d: block %u: %s", round, b, vd_get_error());
				bad_data++;
				continue;
			}
			v = vd_le32(buf + 4);
			if (vd_is_zero(buf, BS)) {
				v = 0;
			} else {
				fill(want, b, v);
				if (vd_le32(buf) != b || memcmp(buf, want, BS) != 0) {
					diag("round %d: block %u: torn or foreign content", round,
					     b);
					bad_data++;
					continue;
				}
			}
			if (v < sh->flushed[b] || v > sh->written[b]) {
				diag("round %d: block %u: version %u, flushed %u, written %u",
				     round, b, v, sh->flushed[b], sh->written[b]);
				bad_lost++;
			}
			/* What survived is what the next round builds on. */
			sh->written[b] = v;
			sh->flushed[b] = v;
		}
		vd_close(img);
		if (read_map(cur, &(uint64_t){0}) != 0) {
			diag("round %d: cannot read the map", round);
			bad_ctr++;
			break;
		}
		mapped = 0;
		for (unsigned i = 0; i < NB; i++) {
			mapped += cur[i] != 0;
		}
		for (unsigned i = 0; i < NB; i++) {
			if (cur[i] && cur[i] != prev[i] && cur[i] < ceiling) {
				diag("round %d: block %u: counter %llu below the ceiling %llu "
				     "committed "
				     "before the crash",
				     round, i, (unsigned long long)cur[i],
				     (unsigned long long)ceiling);
				bad_ctr++;
			}
		}
		memcpy(sorted, cur, sizeof(sorted));
		qsort(sorted, NB, sizeof(*sorted), cmp_u64);
		for (unsigned i = 1; i < NB; i++) {
			if (sorted[i] && sorted[i] == sorted[i - 1]) {
				diag("round %d: counter %llu used twice", round,
				     (unsigned long long)sorted[i]);
				bad_ctr++;
			}
		}
	}
	total = sh->writes;
	diag("%llu writes in all", (unsigned long long)total);
	ok(total > (uint64_t)rounds, "the children wrote (%llu writes)", (unsigned long long)total);
	ok(mapped > (int)NB / 2, "the map read from the file has %d encrypted blocks", mapped);
	check_int(bad_open, 0);
	check_int(bad_check, 0);
	check_int(bad_data, 0);
	check_int(bad_lost, 0);
	check_int(bad_ctr, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0) {
		diag("cleanup failed");
	}
	munmap(sh, sizeof(*sh));
	return done_testing();
}
