// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the whole receive path of a connection. The input is the
 * byte stream an initiator sends on one TCP connection (login, text, SCSI
 * commands, Data-Out, NOP, TMF, logout...): it is cut into PDUs by
 * conn_parse(), and every SCSI command is executed synchronously against a
 * 1 MiB in-memory LUN. Responses go to a socketpair that is drained.
 *
 * Two targets: ...:fuzz needs no authentication; ...:fuzz-chap requires CHAP
 * (user fuzzuser, secret fuzzsecret12; mutual: tgtuser, tgtsecret123) and
 * admits only the initiator iqn.2026-11.org.example:i. getrandom() is
 * replaced by a constant (challenge of 16 bytes 0x5a, identifier 0x5a,
 * StatSN 0x5a5a), so a seed can carry the right CHAP_R and the fuzzer gets
 * past authentication into mutual CHAP and the full-feature phase.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t
fuzz_getrandom(void *buf, size_t len, unsigned int flags)
{
	(void)flags;
	memset(buf, 0x5a, len);
	return (ssize_t)len;
}
#define getrandom fuzz_getrandom

#include "backing.c"
#include "chap.c"
#include "config.c"
#include "conn.c"
#include "crc32c.c"
#include "login.c"
#include "param.c"
#include "pr.c"
#include "sbc.c"
#include "scsi.c"
#include "spc.c"
#include "xcopy.c"

#include "../tests/target-log-stub.h"

void main_handle_signal(int sig);
void
main_handle_signal(int sig)
{
	(void)sig;
}

static struct tgt_target *fuzz_tgt;

static void
fuzz_setup(void)
{
	int fd = memfd_create("fuzz-lun", 0);
	char path[64];

	if (server_init() < 0 || fd < 0 || ftruncate(fd, 1 << 20) < 0) {
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fuzz_tgt = calloc(1, sizeof(*fuzz_tgt));
	snprintf(fuzz_tgt->iqn, sizeof(fuzz_tgt->iqn), "iqn.2026-11.org.example:fuzz");
	snprintf(fuzz_tgt->portals[0].host, sizeof(fuzz_tgt->portals[0].host), "127.0.0.1");
	fuzz_tgt->portals[0].port = 3260;
	fuzz_tgt->portals[0].tpgt = 1;
	fuzz_tgt->nportals = 1;
	fuzz_tgt->tpgs[0].tag = 1;
	fuzz_tgt->ntpgs = 1;
	fuzz_tgt->luns[0].lu = tgt_lun_open(path, false, "fuzz", 4096);
	fuzz_tgt->nluns = 1;
	if (!fuzz_tgt->luns[0].lu) {
		abort();
	}
	TAILQ_INSERT_TAIL(server_targets(), fuzz_tgt, link);

	struct tgt_target *t2 = calloc(1, sizeof(*t2));

	if (!t2) {
		abort();
	}
	*t2 = *fuzz_tgt;
	snprintf(t2->iqn, sizeof(t2->iqn), "iqn.2026-11.org.example:fuzz-chap");
	t2->chap_on = true;
	snprintf(t2->chap.user, sizeof(t2->chap.user), "fuzzuser");
	snprintf(t2->chap.secret, sizeof(t2->chap.secret), "fuzzsecret12");
	t2->mutual_on = true;
	snprintf(t2->mutual.user, sizeof(t2->mutual.user), "tgtuser");
	snprintf(t2->mutual.secret, sizeof(t2->mutual.secret), "tgtsecret123");
	t2->nacl = 1;
	snprintf(t2->acl[0], sizeof(t2->acl[0]), "iqn.2026-11.org.example:i");
	TAILQ_INSERT_TAIL(server_targets(), t2, link);
	TAILQ_INIT(&workq.pending);
	TAILQ_INIT(&workq.done);
}

/* Run queued commands inline: the worker pool is not started here. */
static void
fuzz_run_work(void)
{
	struct tgt_work *w;
	while ((w = TAILQ_FIRST(&workq.pending))) {
		TAILQ_REMOVE(&workq.pending, w, link);
		w->fn(w);
		TAILQ_INSERT_TAIL(&workq.done, w, link);
	}
	task_complete_all();
}

static void
fuzz_drain(int fd)
{
	char buf[65536];
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool setup;
	int sv[2];

	if (!setup) {
		fuzz_setup();
		setup = true;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
		return 0;
	}
	struct iscsi_conn *c = calloc(1, sizeof(*c));
	if (!c || conn_rx_grow(c, 65536) < 0) {
		abort();
	}
	c->ev.fd = sv[0];
	c->ev.cb = conn_event;
	TAILQ_INIT(&c->txq);
	TAILQ_INIT(&c->tasks);
	param_defaults(&c->params);
	c->next_ttt = 1;
	snprintf(c->peer, sizeof(c->peer), "fuzz");
	snprintf(c->local_host, sizeof(c->local_host), "127.0.0.1");
	c->local_port = 3260;
	TAILQ_INSERT_TAIL(&srv.conns, c, link);

	/* feed the stream in chunks, as reads would deliver it */
	size_t off = 0;
	while (off < size && !c->dead && !c->closing) {
		size_t n = size - off < 4096 ? size - off : 4096;
		if (conn_rx_grow(c, c->rxlen + n) < 0) {
			break;
		}
		memcpy(c->rxbuf + c->rxlen, data + off, n);
		c->rxlen += n;
		off += n;
		conn_parse(c);
		fuzz_run_work();
		if (!c->dead) {
			conn_flush(c);
		}
		fuzz_drain(sv[1]);
	}
	fuzz_run_work();
	conn_close(c);
	server_sweep();
	/* a cold reset may have closed other (none here) or this connection */
	struct iscsi_conn *o, *n2;
	TAILQ_FOREACH_SAFE(o, &srv.conns, link, n2)
	{
		conn_close(o);
	}
	server_sweep();
	close(sv[1]);
	return 0;
}
