// SPDX-License-Identifier: MIT
/*
 * aead-speed: what libsodium's two AEADs cost on this machine, alone, as the
 * native format uses them (one detached seal/open per block, 32 bytes of
 * additional data), on THREADS threads at once. scripts/bench-crypt.sh runs it
 * in the same run as the image benchmarks: an encrypted image has to move every
 * byte as a plain one does and also seal or open it, so plain and AEAD speed
 * together bound what the encrypted image can reach.
 *
 * Usage: aead-speed [-t THREADS] [-b BLOCK] [-s SECONDS]
 * Prints "CIPHER seal|open MiB/s", one line each.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

struct job {
	int cipher;		/* 0 xchacha20poly1305, 1 aes256gcm */
	int open;		/* 0 seal, 1 open */
	size_t bs;
	double seconds;
	unsigned char key[32];
	crypto_aead_aes256gcm_state *aes;
	double bytes;
	int bad;
};

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *
run(void *arg)
{
	struct job *j = arg;
	unsigned char *in = malloc(j->bs), *out = malloc(j->bs), tag[16], nonce[24] = { 0 },
		      ad[32] = { 0 };
	double t0, n = 0;

	if (!in || !out) {
		j->bad = 1;
		free(in);
		free(out);
		return NULL;
	}
	randombytes_buf(in, j->bs);
	if (j->cipher == 0) {
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(in, tag, NULL, in, j->bs, ad,
								    sizeof(ad), NULL, nonce, j->key);
	} else {
		crypto_aead_aes256gcm_encrypt_detached_afternm(in, tag, NULL, in, j->bs, ad,
							       sizeof(ad), NULL, nonce, j->aes);
	}
	t0 = now();
	do {
		for (int k = 0; k < 64; k++) {
			int r = 0;

			if (j->cipher == 0 && j->open) {
				r = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
					out, NULL, in, j->bs, tag, ad, sizeof(ad), nonce, j->key);
			} else if (j->cipher == 0) {
				nonce[0]++;
				crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
					out, tag, NULL, in, j->bs, ad, sizeof(ad), NULL, nonce, j->key);
			} else if (j->open) {
				r = crypto_aead_aes256gcm_decrypt_detached_afternm(
					out, NULL, in, j->bs, tag, ad, sizeof(ad), nonce, j->aes);
			} else {
				nonce[0]++;
				crypto_aead_aes256gcm_encrypt_detached_afternm(
					out, tag, NULL, in, j->bs, ad, sizeof(ad), NULL, nonce, j->aes);
			}
			j->bad |= r != 0;
		}
		n += 64;
	} while (now() - t0 < j->seconds);
	j->bytes = n * (double)j->bs / (now() - t0);
	free(in);
	free(out);
	return NULL;
}

int
main(int argc, char **argv)
{
	static const char *names[] = { "xchacha20poly1305", "aes256gcm" };
	static const char *ops[] = { "seal", "open" };
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
	size_t bs = 4096;
	double seconds = 1.0;
	crypto_aead_aes256gcm_state aes;

	while ((c = getopt(argc, argv, "t:b:s:")) != -1) {
		switch (c) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'b':
			bs = (size_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: aead-speed [-t THREADS] [-b BLOCK] [-s SECONDS]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > 256 || bs < 16 || bs > (64u << 20) || seconds <= 0) {
		fprintf(stderr, "aead-speed: bad arguments\n");
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "aead-speed: sodium_init failed\n");
		return 1;
	}
	for (int ci = 0; ci < 2; ci++) {
		if (ci == 1 && !crypto_aead_aes256gcm_is_available()) {
			printf("%s unavailable\n", names[ci]);
			continue;
		}
		for (int op = 0; op < 2; op++) {
			struct job *jobs = calloc((size_t)threads, sizeof(*jobs));
			pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
			unsigned char key[32];
			double total = 0;
			int bad = 0;

			if (!jobs || !tids) {
				fprintf(stderr, "aead-speed: out of memory\n");
				return 1;
			}
			randombytes_buf(key, sizeof(key));
			crypto_aead_aes256gcm_beforenm(&aes, key);
			for (int t = 0; t < threads; t++) {
				jobs[t] = (struct job){ .cipher = ci, .open = op, .bs = bs,
							.seconds = seconds, .aes = &aes };
				memcpy(jobs[t].key, key, sizeof(key));
				if (pthread_create(&tids[t], NULL, run, &jobs[t]) != 0) {
					fprintf(stderr, "aead-speed: pthread_create: %s\n", strerror(errno));
					return 1;
				}
			}
			for (int t = 0; t < threads; t++) {
				pthread_join(tids[t], NULL);
				total += jobs[t].bytes;
				bad |= jobs[t].bad;
			}
			if (bad) {
				fprintf(stderr, "aead-speed: %s %s: a round trip failed\n", names[ci],
					ops[op]);
				return 1;
			}
			printf("%s %s %.0f\n", names[ci], ops[op], total / 1048576.0);
			free(jobs);
			free(tids);
		}
	}
	return 0;
}
