// SPDX-License-Identifier: MIT
/*
 * The event loop and the full feature phase (after tgt's tgtd.c event loop and
 * iscsi/conn.c, and SPDK's iscsi.c PDU dispatch).
 *
 * One epoll loop owns the listening portals, every connection and the worker
 * completion eventfd. Receiving: each connection reads as much as fits into
 * one buffer and cuts whole PDUs out of it (BHS, AHS, header digest, data,
 * padding, data digest), checking lengths against the negotiated limits
 * before anything is trusted; the rest of a large Data-Out whose header checked
 * out is read straight into its command's buffer. Sending: responses are
 * queued per connection as (header, data pointer, trailer) and written with
 * one sendmsg; Data-In points into the task's buffer, or, for large reads of a
 * tmpfs LUN, names a range of the file that is spliced (file -> pipe ->
 * socket, page references, no copy) when its turn in the queue comes.
 *
 * Where commands run: READ and WRITE of a LUN on tmpfs run right on the loop
 * (a memcpy; no thread hand-off, no futex, no eventfd), reads of other files
 * when the page cache has the data (RWF_NOWAIT); everything else, and anything
 * that would wait for io_lock, goes to the worker pool. Once a command of a
 * session is on a worker, the following ones queue behind it, so a session's
 * commands never overtake each other.
 *
 * A SCSI command flows: PDU -> task (CmdSN window checked) -> Data-Out gathered
 * (immediate data, unsolicited Data-Out up to FirstBurstLength, then R2Ts of at
 * most MaxBurstLength, MaxOutstandingR2T at a time; DataSN and offsets checked
 * so a wrong sequence closes the connection) -> worker runs scsi_exec() ->
 * completion on the eventfd -> Data-In (status in the last PDU when there is
 * no sense) or SCSI Response with residual counts.
 *
 * Connections get TCP_NODELAY and, where the system would give them BBR,
 * CUBIC (conn_set_cc): BBR's pacing made the sender's half of loopback TCP
 * the daemon's largest cost for large reads.
 *
 * Errors: a malformed PDU gets a Reject (bad opcode, SNACK) or closes only its
 * own connection (length beyond limits, digest error, sequence errors); other
 * connections never wait on it. A connection that dies with tasks on workers
 * is kept as a zombie until they come back, so no worker touches freed memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "crc32c.h"

#define MAX_LISTENERS 32
#define RX_HDR_MAX (ISCSI_BHS_LEN + 255 * 4 + ISCSI_DIGEST_LEN)

struct listener {
	struct ev_handler ev;
	char host[64];
	int port;
};

static struct {
	int epfd;
	struct ev_handler wq_ev;
	int nlisteners;
	struct listener listeners[MAX_LISTENERS];
	TAILQ_HEAD(, iscsi_conn) conns;
	TAILQ_HEAD(, iscsi_conn) zombies; /* closed, freed by server_sweep() */
	struct tgt_target_list targets;
	uint16_t next_tsih;
	bool stopping;
	time_t stop_deadline;
	bool zc_retry; /* some connection waits for an io_lock to splice */
	int nfenced;   /* logins waiting for a replaced session's workers */
	/* tests only (VDISK_TARGET_TEST_WRITE_DELAY_MS): a WRITE that a worker
	 * has started sleeps this long before it touches the LUN, which makes the
	 * window between "started" and "landed" wide enough to test against */
	unsigned test_write_delay_ms;
	char tcp_cc[16]; /* "" = auto (see conn_set_cc), "system", or a name */
} srv;

static void conn_rx(struct iscsi_conn *c);
static void conn_update_events(struct iscsi_conn *c, bool want_out);

static void task_put(struct iscsi_task *t);
static bool conn_parse(struct iscsi_conn *c);
static void conn_set_events(struct iscsi_conn *c, bool want_out);
static void conn_fence_release(void);
static void server_check_resized(void);

struct tgt_target_list *
server_targets(void)
{
	return &srv.targets;
}

struct tgt_target *
server_find_target(const char *iqn)
{
	struct tgt_target *t;
	TAILQ_FOREACH(t, &srv.targets, link)
	{
		if (!t->removed && !strcmp(t->iqn, iqn)) {
			return t;
		}
	}
	return NULL;
}

bool
server_has_portal(const struct tgt_target *t, const char *host, int port, uint16_t *tpgt)
{
	for (int i = 0; i < t->nportals; i++) {
		const struct tgt_portal *p = &t->portals[i];
		if (p->port == port && (!strcmp(p->host, host) || !strcmp(p->host, "0.0.0.0") ||
					!strcmp(p->host, "::"))) {
			*tpgt = p->tpgt;
			return true;
		}
	}
	return false;
}

uint16_t
conn_new_tsih(void)
{
	if (++srv.next_tsih == 0) {
		srv.next_tsih = 1;
	}
	return srv.next_tsih;
}

/* ---- sending ---- */

void
conn_stamp(struct iscsi_conn *c, uint8_t *bhs, bool advance)
{
	put_be32(bhs + BHS_STATSN, advance ? c->statsn++ : c->statsn);
	put_be32(bhs + BHS_EXPCMDSN, c->exp_cmdsn);
	/* The window is what the task table still has room for, so an initiator never
	 * gets TASK SET FULL for commands it was allowed to send. An initiator ignores
	 * a MaxCmdSN that goes back (RFC 7143 §4.2.2.1), so it only ever advances. */
	int room = CONN_QUEUE_DEPTH - c->ntasks;
	uint32_t cand = c->exp_cmdsn + (uint32_t)(room > 0 ? room : 0) - 1;
	if (!c->max_cmdsn_set || sn_lt(c->max_cmdsn, cand)) {
		c->max_cmdsn = cand;
		c->max_cmdsn_set = true;
	}
	put_be32(bhs + BHS_MAXCMDSN, c->max_cmdsn);
}

static struct tx_pdu *
conn_queue_pdu_ex(struct iscsi_conn *c, uint8_t *bhs, const uint8_t *data, uint32_t dlen,
		  uint8_t *owned, struct iscsi_task *task)
{
	if (c->dead || c->closing) {
		free(owned);
		return NULL;
	}
	struct tx_pdu *p = calloc(1, sizeof(*p));
	if (!p) {
		free(owned);
		conn_close(c);
		return NULL;
	}
	put_be24(bhs + BHS_DLEN, dlen);
	bhs[BHS_AHSLEN] = 0;
	memcpy(p->hdr, bhs, ISCSI_BHS_LEN);
	p->hlen = ISCSI_BHS_LEN;
	if (c->hdigest) {
		uint32_t crc = crc32c(p->hdr, ISCSI_BHS_LEN);
		p->hdr[48] = (uint8_t)crc;
		p->hdr[49] = (uint8_t)(crc >> 8);
		p->hdr[50] = (uint8_t)(crc >> 16);
		p->hdr[51] = (uint8_t)(crc >> 24);
		p->hlen += 4;
	}
	p->data = data;
	p->dlen = dlen;
	p->owned = owned;
	uint32_t pad = (4 - (dlen & 3)) & 3;
	p->tlen = pad;
	if (dlen && c->ddigest) {
		uint32_t crc = crc32c_update(0xffffffffu, data, dlen);
		static const uint8_t zeros[4];
		crc = ~crc32c_update(crc, zeros, pad);
		p->trailer[pad] = (uint8_t)crc;
		p->trailer[pad + 1] = (uint8_t)(crc >> 8);
		p->trailer[pad + 2] = (uint8_t)(crc >> 16);
		p->trailer[pad + 3] = (uint8_t)(crc >> 24);
		p->tlen += 4;
	}
	if (task) {
		task->refs++;
		p->task = task;
	}
	TAILQ_INSERT_TAIL(&c->txq, p, link);
	return p;
}

void
conn_queue_pdu(struct iscsi_conn *c, uint8_t *bhs, const uint8_t *data, uint32_t dlen,
	       uint8_t *owned, struct iscsi_task *task)
{
	conn_queue_pdu_ex(c, bhs, data, dlen, owned, task);
}

/* A Data-In PDU whose dlen bytes come from the task's file at off (zero-copy). */
static void
conn_queue_pdu_zc(struct iscsi_conn *c, uint8_t *bhs, uint32_t dlen, struct iscsi_task *t,
		  uint64_t off, uint64_t end)
{
	/* no data digest and no padding on this path (task_try_inline checks) */
	struct tx_pdu *p = conn_queue_pdu_ex(c, bhs, NULL, dlen, NULL, t);
	if (p) {
		p->zc = true;
		p->zc_off = off;
		p->zc_end = end;
	}
}

/* The connection's pipe for zero-copy Data-In; its capacity, 0 when unavailable. */
static uint32_t
conn_pipe(struct iscsi_conn *c)
{
	if (c->pipe[0] >= 0) {
		return c->pipe_cap;
	}
	if (pipe2(c->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		c->pipe[0] = c->pipe[1] = -1;
		c->pipe_cap = 0;
		return 0;
	}
	int cap = fcntl(c->pipe[1], F_SETPIPE_SZ, (int)CONN_PIPE_SIZE);
	if (cap < 0) {
		cap = fcntl(c->pipe[1], F_GETPIPE_SZ); /* over the user's pipe quota */
	}
	c->pipe_cap = cap > 0 ? (uint32_t)cap : 0;
	return c->pipe_cap;
}

/*
 * Send the data of the head PDU p (header already sent) by splicing: the pipe
 * is filled from the file under io_lock, for the rest of the task's data at
 * once (it fits: task_try_inline checked), so a read sees an atomic write
 * (which runs with io_lock exclusive) all or not at all. 1: data sent;
 * 0: wait (socket full, or io_lock busy: retried after the next loop event);
 * -1: connection closed.
 */
static int
conn_flush_zc(struct iscsi_conn *c, struct tx_pdu *p)
{
	struct tgt_lun *lu = p->task->cmd.lu;
	for (;;) {
		uint64_t dsent = p->sent - p->hlen;
		if (dsent == p->dlen) {
			return 1;
		}
		if (c->pipe_len == 0) {
			uint64_t from = p->zc_off + dsent;
			uint64_t n = p->zc_end - from;
			uint64_t filled = 0;
			if (n > c->pipe_cap) {
				n = c->pipe_cap;
			}
			if (pthread_rwlock_tryrdlock(&lu->io_lock) != 0) {
				c->zc_wait = true;
				srv.zc_retry = true;
				conn_update_events(c, false);
				return 0;
			}
			bool eof = false;
			while (filled < n) {
				loff_t o = (loff_t)(from + filled);
				ssize_t k = splice(lu->fd, &o, c->pipe[1], NULL, (size_t)(n - filled),
						   SPLICE_F_NONBLOCK);
				if (k < 0 && errno == EINTR) {
					continue;
				}
				eof = k == 0;
				if (k <= 0) {
					break; /* pipe full (EAGAIN): the rest comes in the next fill */
				}
				filled += (uint64_t)k;
			}
			pthread_rwlock_unlock(&lu->io_lock);
			if (!eof && filled == 0) {
				tgt_info("%s: zero-copy read failed, closing", c->peer);
				conn_close(c);
				return -1;
			}
			if (eof && filled < n) {
				/* the file shrank after the READ was answered GOOD: the
				 * data is gone; zeros now, and the LUN's capacity is
				 * reread (CAPACITY DATA HAS CHANGED for what follows) */
				tgt_lun_mark_shrunk(lu);
			}
			while (eof && filled < n) {
				static const uint8_t zeros[4096];
				size_t z = n - filled < sizeof(zeros) ? (size_t)(n - filled)
								      : sizeof(zeros);
				ssize_t k = write(c->pipe[1], zeros, z);
				if (k <= 0) {
					tgt_info("%s: zero-copy read failed, closing", c->peer);
					conn_close(c);
					return -1;
				}
				filled += (uint64_t)k;
			}
			c->pipe_len = (uint32_t)filled;
		}
		uint64_t chunk = p->dlen - dsent;
		if (chunk > c->pipe_len) {
			chunk = c->pipe_len;
		}
		bool more = chunk < p->dlen - dsent || TAILQ_NEXT(p, link) != NULL;
		ssize_t m = splice(c->pipe[0], NULL, c->ev.fd, NULL, (size_t)chunk,
				   SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));
		if (m < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_update_events(c, true);
				return 0;
			}
			tgt_dbg("%s: splice: %s", c->peer, strerror(errno));
			conn_close(c);
			return -1;
		}
		if (m == 0) {
			conn_close(c);
			return -1;
		}
		c->pipe_len -= (uint32_t)m;
		p->sent += (size_t)m;
	}
}

static void
tx_pdu_free(struct tx_pdu *p)
{
	free(p->owned);
	if (p->task) {
		task_put(p->task);
	}
	free(p);
}

static void
conn_set_events(struct iscsi_conn *c, bool want_out)
{
	uint32_t e = (c->fenced ? 0 : EPOLLIN) | (want_out ? EPOLLOUT : 0);
	struct epoll_event ev = {.events = e, .data.ptr = &c->ev};
	epoll_ctl(srv.epfd, EPOLL_CTL_MOD, c->ev.fd, &ev);
	c->want_out = want_out;
}

static void
conn_update_events(struct iscsi_conn *c, bool want_out)
{
	if (c->want_out == want_out || c->dead) {
		return;
	}
	conn_set_events(c, want_out);
}

/*
 * Under mlu's io_lock, after a sendmsg: the Data-In still queued of tasks whose
 * data went out in part is copied from the mapping now, so the initiator gets
 * one consistent image of every task's data (an atomic write may come before
 * the rest is sent). False when the mapping faulted.
 */
static bool
conn_unmap_started(struct iscsi_conn *c, struct tgt_lun *mlu)
{
	struct tx_pdu *p;
	TAILQ_FOREACH(p, &c->txq, link)
	{
		if (!p->mapped || !p->task->map_started || p->task->cmd.lu != mlu) {
			continue;
		}
		uint8_t *b = malloc(p->dlen ? p->dlen : 1);
		if (!b || lun_map_read(mlu, b, p->dlen, (uint64_t)(p->data - mlu->map)) < 0) {
			free(b);
			return false;
		}
		p->data = b;
		p->owned = b;
		p->mapped = false;
	}
	return true;
}

void
conn_flush(struct iscsi_conn *c)
{
	if (c->fenced) {
		return; /* the Login Response waits for the old session's workers */
	}
	while (!c->dead && !TAILQ_EMPTY(&c->txq)) {
		struct iovec iov[64];
		int n = 0;
		struct tx_pdu *p = TAILQ_FIRST(&c->txq);
		bool more = false;
		if (p->zc && p->sent >= p->hlen) {
			if (conn_flush_zc(c, p) <= 0) {
				return;
			}
			TAILQ_REMOVE(&c->txq, p, link);
			tx_pdu_free(p);
			continue;
		}
		struct tgt_lun *mlu = NULL; /* the LUN whose mapping this sendmsg reads */
		TAILQ_FOREACH(p, &c->txq, link)
		{
			if (n + 3 > 64) {
				break;
			}
			if (p->mapped) {
				if (mlu && mlu != p->task->cmd.lu) {
					break; /* one io_lock per sendmsg */
				}
				mlu = p->task->cmd.lu;
			}
			if (p->zc) {
				/* its header; the data follows by splice, corked with it */
				if (p->sent < p->hlen) {
					iov[n].iov_base = p->hdr + p->sent;
					iov[n].iov_len = p->hlen - p->sent;
					n++;
				}
				more = true;
				break;
			}
			size_t skip = p->sent;
			const uint8_t *parts[3] = {p->hdr, p->data, p->trailer};
			size_t lens[3] = {p->hlen, p->dlen, p->tlen};
			for (int k = 0; k < 3; k++) {
				if (skip >= lens[k]) {
					skip -= lens[k];
					continue;
				}
				iov[n].iov_base = (void *)(parts[k] + skip);
				iov[n].iov_len = lens[k] - skip;
				skip = 0;
				n++;
			}
		}
		if (mlu && pthread_rwlock_tryrdlock(&mlu->io_lock) != 0) {
			/* an atomic write holds it on a worker: after the next loop event */
			c->zc_wait = true;
			srv.zc_retry = true;
			conn_update_events(c, false);
			return;
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(c->ev.fd, &mh, more ? MSG_MORE : 0);
		int err = errno;
		if (w < 0) {
			if (mlu) {
				pthread_rwlock_unlock(&mlu->io_lock);
			}
			if (err == EINTR) {
				continue;
			}
			if (err == EAGAIN || err == EWOULDBLOCK) {
				conn_update_events(c, true);
				return;
			}
			tgt_dbg("%s: write: %s", c->peer, strerror(err));
			conn_close(c);
			return;
		}
		size_t left = (size_t)w;
		while (left && (p = TAILQ_FIRST(&c->txq))) {
			size_t total = p->hlen + p->dlen + p->tlen;
			size_t rem = total - p->sent;
			if (p->mapped && left > p->hlen - (p->sent < p->hlen ? p->sent : p->hlen)) {
				p->task->map_started = true; /* some of its data went out */
			}
			if (left >= rem) {
				left -= rem;
				TAILQ_REMOVE(&c->txq, p, link);
				tx_pdu_free(p);
			} else {
				p->sent += left;
				left = 0;
			}
		}
		if (mlu) {
			bool ok = conn_unmap_started(c, mlu);
			pthread_rwlock_unlock(&mlu->io_lock);
			if (!ok) {
				tgt_info("%s: the LUN's file shrank under a read, closing", c->peer);
				tgt_lun_mark_shrunk(mlu);
				conn_close(c);
				return;
			}
		}
	}
	if (!c->dead) {
		conn_update_events(c, false);
		if (c->closing && TAILQ_EMPTY(&c->txq)) {
			conn_close(c);
		}
	}
}

void
conn_reject(struct iscsi_conn *c, const uint8_t *bhs, uint8_t reason)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	uint8_t *copy = malloc(ISCSI_BHS_LEN);

	if (!copy) {
		conn_close(c);
		return;
	}
	memcpy(copy, bhs, ISCSI_BHS_LEN);
	h[0] = ISCSI_OP_REJECT;
	h[1] = 0x80;
	h[2] = reason;
	put_be32(h + BHS_ITT, ISCSI_RSVD_TAG);
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, copy, ISCSI_BHS_LEN, copy, NULL);
}

/* ---- tasks ---- */

static void
task_free(struct iscsi_task *t)
{
	if (t->cmd.out) {
		t->conn->write_buf -= t->edtl;
	}
	tgt_lun_put(t->cmd.lu);
	free(t->cmd.out);
	free(t->cmd.in);
	free(t);
}

/* Free closed connections whose tasks have all come back from the workers. */
static void
server_sweep(void)
{
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.zombies, link, n)
	{
		if (c->ntasks_queued == 0 && TAILQ_EMPTY(&c->tasks)) {
			TAILQ_REMOVE(&srv.zombies, c, link);
			free(c->rxbuf);
			free(c->login_text);
			free(c->text_rsp);
			free(c);
		}
	}
}

static void
task_put(struct iscsi_task *t)
{
	if (--t->refs == 0) {
		task_free(t);
	}
}

/* Unlink a task from its connection; freed once no PDU points into it. */
static void
task_finish(struct iscsi_task *t)
{
	struct iscsi_conn *c = t->conn;
	TAILQ_REMOVE(&c->tasks, t, link);
	c->ntasks--;
	t->state = TASK_DONE;
	task_put(t);
}

static struct iscsi_task *
task_find(struct iscsi_conn *c, uint32_t itt)
{
	struct iscsi_task *t;
	TAILQ_FOREACH(t, &c->tasks, link)
	{
		if (t->itt == itt) {
			return t;
		}
	}
	return NULL;
}

static void
conn_tmf_send(struct iscsi_conn *c, struct tmf_wait *w)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	h[0] = ISCSI_OP_TMF_RSP;
	h[1] = 0x80;
	h[2] = w->response;
	put_be32(h + BHS_ITT, w->itt);
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	if (w->cold_reset) {
		/* a cold reset drops every connection to the target, this one last */
		struct iscsi_conn *o, *n;
		TAILQ_FOREACH_SAFE(o, &srv.conns, link, n)
		{
			if (o != c && o->tgt == c->tgt && o->ffp) {
				conn_close(o);
			}
		}
		c->closing = true;
	}
	free(w);
	conn_flush(c);
}

static void
task_exec(struct tgt_work *w)
{
	struct iscsi_task *t = (struct iscsi_task *)w;
	if (atomic_load_explicit(&t->aborted, memory_order_relaxed)) {
		return; /* terminated before it started: it never touches the LUN */
	}
	uint8_t op = t->cmd.cdb[0];
	if (srv.test_write_delay_ms && (op == 0x0a || op == 0x2a || op == 0xaa || op == 0x8a)) {
		struct timespec ts = {.tv_sec = srv.test_write_delay_ms / 1000,
				      .tv_nsec = (long)(srv.test_write_delay_ms % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	scsi_exec(&t->cmd);
}

static void task_respond(struct iscsi_conn *c, struct iscsi_task *t);
static void conn_logout_respond(struct iscsi_conn *c);

/*
 * Fast path, saving two thread hand-offs: READ/WRITE of a LUN on tmpfs (up to
 * 1 MiB) and a small READ of another file whose data is in the page cache
 * (preadv2 RWF_NOWAIT) complete right here, with try-locks only. Anything that
 * could block - a page-cache miss, a FUSE file, io_lock held by an atomic
 * write - goes to the workers as usual. Only when none of this session's
 * commands is on a worker, so a command never overtakes an earlier one of the
 * same initiator.
 */
static bool
task_try_inline(struct iscsi_conn *c, struct iscsi_task *t)
{
	uint8_t op = t->cmd.cdb[0];
	bool rd = op == 0x08 || op == 0x28 || op == 0xa8 || op == 0x88;
	bool wr = op == 0x0a || op == 0x2a || op == 0xaa || op == 0x8a;
	struct tgt_lun *lu = t->cmd.lu;
	if (c->ntasks_queued || !lu || !(rd || (wr && lu->mem_backed)) ||
	    t->edtl > (lu->mem_backed ? TGT_INLINE_MEM_MAX : TGT_INLINE_READ_MAX)) {
		return false;
	}
	/* large reads of a tmpfs file go by reference when the pipe holds them whole */
	/* (Data-In PDUs without padding: every length a multiple of 4) */
	t->cmd.zc_ok = rd && lu->zerocopy && !c->ddigest && t->edtl % 4 == 0 &&
		       c->params.max_xmit_dsl % 4 == 0 && c->params.max_burst % 4 == 0 &&
		       t->edtl <= CONN_PIPE_SIZE && conn_pipe(c) >= t->edtl;
	t->cmd.zc_max = c->pipe_cap;
	t->cmd.nowait = true;
	scsi_exec(&t->cmd);
	t->cmd.nowait = false;
	t->cmd.zc_ok = false;
	if (t->cmd.would_block) {
		t->cmd.zc = false;
		t->cmd.mapped = false;
		t->cmd.would_block = false;
		free(t->cmd.in);
		t->cmd.in = NULL;
		t->cmd.in_len = 0;
		t->cmd.status = SAM_STAT_GOOD;
		t->cmd.sense_len = 0;
		t->cmd.has_spdtl = false;
		t->cmd.spdtl = 0;
		return false;
	}
	task_respond(c, t);
	task_finish(t);
	return true;
}

static void
task_dispatch(struct iscsi_conn *c, struct iscsi_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;
	uint64_t lun = iscsi_lun_decode(t->lun_raw);
	struct tgt_target *tg = c->tgt;

	cmd->lun = lun;
	for (int i = 0; i < tg->nluns; i++) {
		if (tg->luns[i].lun == lun) {
			cmd->lu = tgt_lun_get(tg->luns[i].lu);
		}
	}
	snprintf(cmd->nexus.iport, sizeof(cmd->nexus.iport), "%s", c->iport);
	cmd->nexus.tpgt = c->tpgt;
	cmd->nexus.rtpi = tgt_target_rtpi(tg, c->tpgt);
	cmd->nexus.alua_state = 0;
	for (int i = 0; i < tg->ntpgs; i++) {
		if (tg->tpgs[i].tag == c->tpgt) {
			cmd->nexus.alua_state = tg->tpgs[i].alua_state;
		}
	}
	if (cmd->cdb[0] == 0xa0) {
		cmd->nluns = tg->nluns;
		for (int i = 0; i < tg->nluns; i++) {
			cmd->luns[i] = tg->luns[i].lun;
		}
	} else if (cmd->cdb[0] == 0xa3) {
		cmd->ntpgs = tg->ntpgs;
		memcpy(cmd->tpgs, tg->tpgs, sizeof(tg->tpgs[0]) * (size_t)tg->ntpgs);
	}
	cmd->edtl = t->edtl;
	cmd->out_len = t->got;
	if (task_try_inline(c, t)) {
		return;
	}
	t->state = TASK_QUEUED;
	c->ntasks_queued++;
	t->work.fn = task_exec;
	workq_submit(&t->work);
}

/*
 * A READ CAPACITY that found a new size: the other sessions get CAPACITY DATA
 * HAS CHANGED now, not this one, which has just been told the new capacity.
 * (The command's own flag, not the LUN's: the loop may have raised the unit
 * attentions already, between the command and its answer.)
 */
static void
task_capacity_seen(struct iscsi_conn *c, struct iscsi_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;
	if (!cmd->capacity_seen || !cmd->lu) {
		return;
	}
	server_check_resized();
	for (int k = 0; k < c->nua; k++) {
		if (c->ua[k].lun == cmd->lun && c->ua[k].asc == ASC_CAPACITY_CHANGED) {
			c->ua[k--] = c->ua[--c->nua];
		}
	}
}

/* Send the SCSI result of a completed task. */
static void
task_respond(struct iscsi_conn *c, struct iscsi_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;
	if (cmd->status == SAM_STAT_GOOD) {
		task_capacity_seen(c, t);
	}
	uint32_t edtl = t->edtl;
	uint32_t xfer = 0, resid = 0;
	uint8_t rflags = 0;
	bool read = t->flags & ISCSI_FLAG_CMD_READ;

	if (cmd->in_len || read) {
		uint32_t have = cmd->in_len;
		xfer = have < edtl ? have : edtl;
		if (!read) {
			xfer = 0;
		}
		if (have > edtl) {
			rflags = ISCSI_FLAG_RSP_OVERFLOW;
			resid = have - edtl;
		} else if (have < edtl) {
			rflags = ISCSI_FLAG_RSP_UNDERFLOW;
			resid = edtl - have;
		}
	} else if (cmd->has_spdtl) {
		if (cmd->spdtl > edtl) {
			rflags = ISCSI_FLAG_RSP_OVERFLOW;
			resid = cmd->spdtl - edtl;
		} else if (cmd->spdtl < edtl) {
			rflags = ISCSI_FLAG_RSP_UNDERFLOW;
			resid = edtl - cmd->spdtl;
		}
	}
	bool status_in_data =
		xfer > 0 && cmd->sense_len == 0 && cmd->status != SAM_STAT_CHECK_CONDITION;
	uint32_t max_pdu = c->params.max_xmit_dsl;
	uint32_t burst = c->params.max_burst;
	uint32_t off = 0, seq = 0, datasn = 0;
	if (cmd->status != SAM_STAT_GOOD && cmd->status != SAM_STAT_CONDITION_MET) {
		xfer = 0; /* no data with an error status */
		status_in_data = false;
		if (read && cmd->in_len) {
			rflags = edtl ? ISCSI_FLAG_RSP_UNDERFLOW : 0;
			resid = edtl;
		}
	}
	while (off < xfer) {
		uint32_t n = xfer - off;
		if (n > max_pdu) {
			n = max_pdu;
		}
		if (n > burst - seq) {
			n = burst - seq;
		}
		uint8_t h[ISCSI_BHS_LEN] = {0};
		h[0] = ISCSI_OP_DATA_IN;
		bool last = off + n == xfer;
		seq += n;
		if (last || seq == burst) {
			h[1] |= ISCSI_FLAG_FINAL;
			seq = 0;
		}
		memcpy(h + BHS_LUN, t->lun_raw, 8);
		put_be32(h + BHS_ITT, t->itt);
		put_be32(h + BHS_TTT, ISCSI_RSVD_TAG);
		put_be32(h + BHS_DATASN, datasn++);
		put_be32(h + BHS_BUFOFF, off);
		if (last && status_in_data) {
			h[1] |= ISCSI_FLAG_DATA_STATUS | rflags;
			h[3] = cmd->status;
			put_be32(h + BHS_RESID, resid);
			conn_stamp(c, h, true);
		} else {
			conn_stamp(c, h, false);
			put_be32(h + BHS_STATSN, 0);
		}
		if (cmd->zc) {
			conn_queue_pdu_zc(c, h, n, t, cmd->zc_off + off, cmd->zc_off + xfer);
		} else if (cmd->mapped) {
			struct tx_pdu *p = conn_queue_pdu_ex(
				c, h, cmd->lu->map + cmd->zc_off + off, n, NULL, t);
			if (p) {
				p->mapped = true;
			}
		} else {
			conn_queue_pdu(c, h, cmd->in + off, n, NULL, t);
		}
		off += n;
	}
	if (!status_in_data) {
		uint8_t h[ISCSI_BHS_LEN] = {0};
		uint8_t *sense = NULL;
		uint32_t slen = 0;
		h[0] = ISCSI_OP_SCSI_RSP;
		h[1] = 0x80 | rflags;
		h[2] = 0; /* command completed at target */
		h[3] = cmd->status;
		put_be32(h + BHS_ITT, t->itt);
		put_be32(h + BHS_DATASN, datasn); /* ExpDataSN */
		put_be32(h + BHS_RESID, resid);
		if (cmd->sense_len) {
			slen = 2u + cmd->sense_len;
			sense = malloc(slen);
			if (sense) {
				put_be16(sense, cmd->sense_len);
				memcpy(sense + 2, cmd->sense, cmd->sense_len);
			} else {
				slen = 0;
			}
		}
		conn_stamp(c, h, true);
		conn_queue_pdu(c, h, sense, slen, sense, NULL);
	}
}

static void
task_complete_all(void)
{
	struct tgt_work *w;
	while ((w = workq_pop_done())) {
		struct iscsi_task *t = (struct iscsi_task *)w;
		struct iscsi_conn *c = t->conn;
		c->ntasks_queued--;
		if (!c->dead && !t->aborted) {
			task_respond(c, t);
		}
		struct tmf_wait *tw = t->tmf;
		task_finish(t);
		if (tw && --tw->pending == 0) {
			if (!c->dead) {
				conn_tmf_send(c, tw);
			} else {
				free(tw);
			}
		}
		if (c->logout_wait && c->ntasks_queued == 0) {
			conn_logout_respond(c);
		}
		c->need_flush = !c->dead;
	}
	if (srv.nfenced) {
		conn_fence_release();
	}
	/* one writev per connection for the whole batch of completions */
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, n)
	{
		if (c->need_flush) {
			c->need_flush = false;
			conn_flush(c);
		}
	}
}

static void
server_wq_event(struct ev_handler *h, uint32_t events)
{
	uint64_t v;
	(void)events;
	ssize_t r = read(h->fd, &v, sizeof(v));
	(void)r;
	task_complete_all();
}

/* ---- Data-Out and R2T ---- */

static void
task_send_r2ts(struct iscsi_conn *c, struct iscsi_task *t)
{
	while (t->r2t_next < t->edtl && t->r2t_outstanding < (int)c->params.max_outstanding_r2t) {
		struct r2t_slot *s = NULL;
		for (int i = 0; i < TGT_MAX_OUTSTANDING_R2T; i++) {
			if (!t->r2t[i].used) {
				s = &t->r2t[i];
				break;
			}
		}
		if (!s) {
			break;
		}
		uint32_t len = t->edtl - t->r2t_next;
		if (len > c->params.max_burst) {
			len = c->params.max_burst;
		}
		s->used = true;
		s->ttt = c->next_ttt++;
		if (c->next_ttt == ISCSI_RSVD_TAG) {
			c->next_ttt = 1;
		}
		s->off = t->r2t_next;
		s->len = len;
		s->next = s->off;
		s->datasn = 0;
		t->r2t_next += len;
		t->r2t_outstanding++;
		uint8_t h[ISCSI_BHS_LEN] = {0};
		h[0] = ISCSI_OP_R2T;
		h[1] = 0x80;
		memcpy(h + BHS_LUN, t->lun_raw, 8);
		put_be32(h + BHS_ITT, t->itt);
		put_be32(h + BHS_TTT, s->ttt);
		conn_stamp(c, h, false);
		put_be32(h + BHS_R2T_R2TSN, t->r2tsn++);
		put_be32(h + BHS_BUFOFF, s->off);
		put_be32(h + BHS_R2T_DDTL, len);
		conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	}
}

static void
task_data_progress(struct iscsi_conn *c, struct iscsi_task *t)
{
	if (t->unsol_open) {
		return;
	}
	if (t->got == t->edtl && t->r2t_outstanding == 0) {
		task_dispatch(c, t);
		return;
	}
	if (t->r2t_next < t->unsol_next) {
		t->r2t_next = t->unsol_next;
	}
	task_send_r2ts(c, t);
}

static void
conn_protocol_error(struct iscsi_conn *c, const uint8_t *bhs, const char *why)
{
	tgt_info("%s: protocol error: %s, closing", c->peer, why);
	if (bhs) {
		conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
	}
	c->closing = true;
	conn_flush(c);
}

/* A broken Data-Out sequence: end the command with CHECK CONDITION, keep the session. */
static void
task_fail_data(struct iscsi_conn *c, struct iscsi_task *t, const char *why)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	uint8_t *sense = malloc(2 + 18);
	struct scsi_cmd tmp;

	tgt_info("%s: task 0x%x: %s", c->peer, t->itt, why);
	memset(&tmp, 0, sizeof(tmp));
	scsi_sense(&tmp, SK_ABORTED_COMMAND, 0x4b00); /* DATA PHASE ERROR */
	h[0] = ISCSI_OP_SCSI_RSP;
	h[1] = 0x80;
	h[3] = SAM_STAT_CHECK_CONDITION;
	put_be32(h + BHS_ITT, t->itt);
	conn_stamp(c, h, true);
	if (sense) {
		put_be16(sense, 18);
		memcpy(sense + 2, tmp.sense, 18);
	}
	conn_queue_pdu(c, h, sense, sense ? 20 : 0, sense, NULL);
	task_finish(t);
	conn_flush(c);
}

/*
 * Where the data of a Data-Out PDU goes: its task, and its R2T slot (NULL for
 * unsolicited data), when offset, length, DataSN and TTT are all right; NULL
 * otherwise, with nothing changed (conn_handle_data_out then tells why).
 */
static struct iscsi_task *
data_out_target(struct iscsi_conn *c, const uint8_t *bhs, uint32_t dlen, struct r2t_slot **slot)
{
	uint32_t ttt = get_be32(bhs + BHS_TTT);
	uint32_t datasn = get_be32(bhs + BHS_DATASN);
	uint32_t off = get_be32(bhs + BHS_BUFOFF);
	struct iscsi_task *t = task_find(c, get_be32(bhs + BHS_ITT));

	*slot = NULL;
	if (!t || t->state != TASK_DATA_OUT || off > t->edtl || dlen > t->edtl - off) {
		return NULL;
	}
	if (ttt == ISCSI_RSVD_TAG) {
		if (!t->unsol_open || off != t->unsol_next || datasn != t->unsol_datasn ||
		    off + dlen > t->unsol_end) {
			return NULL;
		}
		return t;
	}
	for (int i = 0; i < TGT_MAX_OUTSTANDING_R2T; i++) {
		if (t->r2t[i].used && t->r2t[i].ttt == ttt) {
			*slot = &t->r2t[i];
		}
	}
	struct r2t_slot *s = *slot;
	if (!s || off != s->next || datasn != s->datasn || off + dlen > s->off + s->len) {
		return NULL;
	}
	return t;
}

/* The data of a checked Data-Out PDU is in t->cmd.out: advance the sequence. */
static void
data_out_commit(struct iscsi_conn *c, struct iscsi_task *t, struct r2t_slot *s, bool final,
		uint32_t dlen)
{
	t->got += dlen;
	if (!s) {
		t->unsol_next += dlen;
		t->unsol_datasn++;
		if (final) {
			t->unsol_open = false;
		}
		task_data_progress(c, t);
		return;
	}
	s->next += dlen;
	s->datasn++;
	if (final) {
		if (s->next != s->off + s->len) {
			task_fail_data(c, t, "R2T sequence ended early");
			return;
		}
		s->used = false;
		t->r2t_outstanding--;
		task_data_progress(c, t);
	}
}

static void
conn_handle_data_out(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	uint32_t itt = get_be32(bhs + BHS_ITT);
	uint32_t off = get_be32(bhs + BHS_BUFOFF);
	struct iscsi_task *t = task_find(c, itt);
	struct r2t_slot *s;

	if (!t || t->state != TASK_DATA_OUT) {
		/* a task that was answered early or aborted: drop the data */
		tgt_dbg("%s: Data-Out for unknown task 0x%x", c->peer, itt);
		return;
	}
	if (data_out_target(c, bhs, dlen, &s) != t) {
		if (off > t->edtl || dlen > t->edtl - off) {
			task_fail_data(c, t, "Data-Out beyond the expected length");
		} else if (get_be32(bhs + BHS_TTT) == ISCSI_RSVD_TAG) {
			task_fail_data(c, t, "bad unsolicited Data-Out (offset or DataSN)");
		} else {
			task_fail_data(c, t, "bad solicited Data-Out (offset, DataSN or TTT)");
		}
		return;
	}
	memcpy(t->cmd.out + off, data, dlen);
	data_out_commit(c, t, s, bhs[1] & ISCSI_FLAG_FINAL, dlen);
}

/* ---- SCSI command ---- */

static void
conn_respond_now(struct iscsi_conn *c, const uint8_t *bhs, uint8_t key, uint16_t asc)
{
	struct scsi_cmd tmp;
	uint8_t h[ISCSI_BHS_LEN] = {0};
	uint8_t *sense = malloc(2 + 18);

	memset(&tmp, 0, sizeof(tmp));
	scsi_sense(&tmp, key, asc);
	h[0] = ISCSI_OP_SCSI_RSP;
	h[1] = 0x80;
	h[3] = SAM_STAT_CHECK_CONDITION;
	put_be32(h + BHS_ITT, get_be32(bhs + BHS_ITT));
	if (get_be32(bhs + BHS_CMD_EDTL)) {
		h[1] |= ISCSI_FLAG_RSP_UNDERFLOW;
		put_be32(h + BHS_RESID, get_be32(bhs + BHS_CMD_EDTL));
	}
	conn_stamp(c, h, true);
	if (!sense) {
		conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
		return;
	}
	put_be16(sense, 18);
	memcpy(sense + 2, tmp.sense, 18);
	conn_queue_pdu(c, h, sense, 20, sense, NULL);
}

/* Queue a unit attention on every session of target tg (for one LUN, or all). */
static void
conn_set_ua(struct tgt_target *tg, bool all, uint64_t lun, uint16_t asc)
{
	struct iscsi_conn *c;
	TAILQ_FOREACH(c, &srv.conns, link)
	{
		if (!c->ffp || c->tgt != tg) {
			continue;
		}
		for (int i = 0; i < tg->nluns; i++) {
			if (!all && tg->luns[i].lun != lun) {
				continue;
			}
			bool have = false;
			for (int k = 0; k < c->nua; k++) {
				have |= c->ua[k].lun == tg->luns[i].lun;
			}
			if (!have && c->nua < (int)(sizeof(c->ua) / sizeof(c->ua[0]))) {
				c->ua[c->nua].lun = tg->luns[i].lun;
				c->ua[c->nua].asc = asc;
				c->nua++;
			}
		}
	}
}

/*
 * A reload changed the LUNs of tg (SPC-4 REPORT LUNS): every session of it gets
 * REPORTED LUNS DATA HAS CHANGED on each LUN, so the initiator rescans; unit
 * attentions of LUNs that are gone are dropped (those LUNs now answer
 * LOGICAL UNIT NOT SUPPORTED).
 */
void
server_luns_changed(struct tgt_target *tg)
{
	struct iscsi_conn *c;
	TAILQ_FOREACH(c, &srv.conns, link)
	{
		if (!c->ffp || c->tgt != tg) {
			continue;
		}
		for (int k = 0; k < c->nua; k++) {
			bool have = false;
			for (int i = 0; i < tg->nluns; i++) {
				have |= tg->luns[i].lun == c->ua[k].lun;
			}
			if (!have) {
				c->ua[k--] = c->ua[--c->nua];
			}
		}
	}
	conn_set_ua(tg, true, 0, ASC_REPORTED_LUNS_CHANGED);
}

/* Report (and clear) a pending unit attention instead of running the command. */
static bool
conn_take_ua(struct iscsi_conn *c, const uint8_t *bhs)
{
	uint8_t op = bhs[BHS_CMD_CDB];
	if (op == 0xa0) {
		/* REPORT LUNS reports the new inventory: that unit attention is done */
		for (int k = 0; k < c->nua; k++) {
			if (c->ua[k].asc == ASC_REPORTED_LUNS_CHANGED) {
				c->ua[k--] = c->ua[--c->nua];
			}
		}
	}
	if (c->nua == 0 || op == 0x12 || op == 0xa0 || op == 0x03) {
		return false;
	}
	uint64_t lun = iscsi_lun_decode(bhs + BHS_LUN);
	for (int k = 0; k < c->nua; k++) {
		if (c->ua[k].lun == lun) {
			uint16_t asc = c->ua[k].asc;
			c->ua[k] = c->ua[--c->nua];
			conn_respond_now(c, bhs, SK_UNIT_ATTENTION, asc);
			conn_flush(c);
			return true;
		}
	}
	return false;
}

/* CmdSN window check for a non-immediate request; false: silently ignore it. */
static bool
conn_check_cmdsn(struct iscsi_conn *c, const uint8_t *bhs)
{
	uint32_t cmdsn = get_be32(bhs + BHS_CMDSN);
	if (bhs[0] & ISCSI_OP_IMMEDIATE) {
		return true;
	}
	uint32_t max = c->max_cmdsn; /* the highest MaxCmdSN we have announced */
	if (sn_lt(cmdsn, c->exp_cmdsn) || sn_lt(max, cmdsn)) {
		tgt_dbg("%s: CmdSN %u outside [%u, %u], ignored", c->peer, cmdsn, c->exp_cmdsn,
			max);
		return false;
	}
	c->exp_cmdsn = cmdsn + 1;
	return true;
}

/*
 * A SCSI Command PDU. data == NULL with dlen > 0: the immediate data is still
 * on its way and conn_rx reads it straight into the buffer of the task this
 * returns (task_imm_data() completes it); NULL when no task waits for it (the
 * command was answered or ignored: the data is dropped).
 */
static struct iscsi_task *
conn_handle_scsi_cmd(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *ahs, uint32_t ahslen,
		     const uint8_t *data, uint32_t dlen)
{
	uint8_t flags = bhs[1];
	uint32_t edtl = get_be32(bhs + BHS_CMD_EDTL);
	uint32_t itt = get_be32(bhs + BHS_ITT);
	bool w = flags & ISCSI_FLAG_CMD_WRITE, r = flags & ISCSI_FLAG_CMD_READ;

	(void)ahs;
	if (c->logout_wait) {
		return NULL; /* after a Logout (direct receive): ignored, data dropped */
	}
	if (c->discovery) {
		conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		return NULL;
	}
	if (!conn_check_cmdsn(c, bhs)) {
		return NULL;
	}
	if (c->revoked) {
		/* access revoked by a reload: only the Logout is welcome (11.9.1) */
		conn_reject(c, bhs, ISCSI_REJECT_WAITING_LOGOUT);
		return NULL;
	}
	if (task_find(c, itt)) {
		conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL); /* task tag in use */
		return NULL;
	}
	if (conn_take_ua(c, bhs)) {
		return NULL;
	}
	if (dlen &&
	    (!w || !c->params.immediate_data || dlen > edtl || dlen > c->params.first_burst)) {
		conn_protocol_error(c, bhs, "bad immediate data");
		return NULL;
	}
	if (ahslen) {
		/* extended CDBs (> 16 bytes) are not used by any command we implement */
		conn_respond_now(c, bhs, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		conn_flush(c);
		return NULL;
	}
	bool busy =
		c->ntasks >= CONN_QUEUE_DEPTH || (w && c->write_buf + edtl > CONN_MAX_WRITE_BUF);
	if ((w && r) || (w && edtl > SCSI_MAX_XFER + 4096) || busy) {
		/* bidirectional, too large or too many: answer now, drop any data that follows */
		if (busy) {
			uint8_t h[ISCSI_BHS_LEN] = {0};
			h[0] = ISCSI_OP_SCSI_RSP;
			h[1] = 0x80;
			h[3] = SAM_STAT_TASK_SET_FULL;
			put_be32(h + BHS_ITT, itt);
			conn_stamp(c, h, true);
			conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
		} else {
			conn_respond_now(c, bhs, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		}
		conn_flush(c);
		return NULL;
	}
	struct iscsi_task *t = calloc(1, sizeof(*t));
	if (!t) {
		conn_close(c);
		return NULL;
	}
	t->conn = c;
	t->refs = 1;
	t->itt = itt;
	t->cmdsn = get_be32(bhs + BHS_CMDSN);
	t->flags = flags;
	t->edtl = edtl;
	memcpy(t->lun_raw, bhs + BHS_LUN, 8);
	memcpy(t->cmd.cdb, bhs + BHS_CMD_CDB, 16);
	TAILQ_INSERT_TAIL(&c->tasks, t, link);
	c->ntasks++;
	t->state = TASK_DATA_OUT;
	if (w && edtl) {
		t->cmd.out = malloc(edtl);
		if (!t->cmd.out) {
			task_finish(t);
			conn_close(c);
			return NULL;
		}
		c->write_buf += edtl;
		uint32_t fb = c->params.first_burst < edtl ? c->params.first_burst : edtl;
		t->unsol_end = fb;
		t->unsol_open = !c->params.initial_r2t && !(flags & ISCSI_FLAG_FINAL) && dlen < fb;
		if (!data && dlen) {
			return t; /* task_imm_data() goes on once the data is in */
		}
		memcpy(t->cmd.out, data, dlen);
		t->got = dlen;
		t->unsol_next = dlen;
		task_data_progress(c, t);
	} else {
		task_dispatch(c, t);
	}
	/* the response (or R2T) goes out with the others when conn_event flushes */
	return NULL;
}

/* The immediate data of t (dlen bytes) was received into its buffer. */
static void
task_imm_data(struct iscsi_conn *c, struct iscsi_task *t, uint32_t dlen)
{
	t->got = dlen;
	t->unsol_next = dlen;
	task_data_progress(c, t);
}

/* ---- task management ---- */

static void
conn_tmf_abort_task(struct iscsi_task *t, struct tmf_wait *w)
{
	if (t->state == TASK_DATA_OUT) {
		task_finish(t);
		return;
	}
	if (t->state == TASK_QUEUED && !t->aborted) {
		t->aborted = true;
		if (!t->tmf) {
			t->tmf = w;
			w->pending++;
		}
	}
}

static void
conn_tmf_abort_matching(struct iscsi_conn *c, struct tmf_wait *w, bool all_luns, const uint8_t *lun)
{
	struct iscsi_task *t, *n;
	TAILQ_FOREACH_SAFE(t, &c->tasks, link, n)
	{
		if (all_luns || !memcmp(t->lun_raw, lun, 8)) {
			conn_tmf_abort_task(t, w);
		}
	}
}

static void
conn_tmf_reset_luns(struct tgt_target *tg, bool all, uint64_t lun)
{
	for (int i = 0; i < tg->nluns; i++) {
		if (all || tg->luns[i].lun == lun) {
			pr_lun_reset(tg->luns[i].lu);
		}
	}
}

static void
conn_handle_tmf(struct iscsi_conn *c, const uint8_t *bhs)
{
	uint8_t fn = bhs[1] & 0x7f;
	struct tmf_wait *w = calloc(1, sizeof(*w));
	uint64_t lun = iscsi_lun_decode(bhs + BHS_LUN);
	bool lun_ok = false;

	if (!w) {
		conn_close(c);
		return;
	}
	if (!conn_check_cmdsn(c, bhs)) {
		free(w);
		return;
	}
	w->itt = get_be32(bhs + BHS_ITT);
	w->response = ISCSI_TMF_RSP_COMPLETE;
	for (int i = 0; i < c->tgt->nluns; i++) {
		if (c->tgt->luns[i].lun == lun) {
			lun_ok = true;
		}
	}
	switch (fn) {
	case ISCSI_TMF_ABORT_TASK: {
		struct iscsi_task *t = task_find(c, get_be32(bhs + BHS_TMF_RTT));
		if (t) {
			conn_tmf_abort_task(t, w);
		} else if (sn_lt(get_be32(bhs + BHS_TMF_REFCMDSN), c->exp_cmdsn)) {
			/* RFC 7143 11.5.1 c): the command came and is done already (a
			 * RefCmdSN still to come is b): function complete) */
			w->response = ISCSI_TMF_RSP_NO_TASK;
		}
		break;
	}
	case ISCSI_TMF_ABORT_TASK_SET:
	case ISCSI_TMF_CLEAR_TASK_SET:
		if (!lun_ok) {
			w->response = ISCSI_TMF_RSP_NO_LUN;
			break;
		}
		conn_tmf_abort_matching(c, w, false, bhs + BHS_LUN);
		break;
	case ISCSI_TMF_LUN_RESET:
		if (!lun_ok) {
			w->response = ISCSI_TMF_RSP_NO_LUN;
			break;
		}
		conn_tmf_abort_matching(c, w, false, bhs + BHS_LUN);
		conn_tmf_reset_luns(c->tgt, false, lun);
		conn_set_ua(c->tgt, false, lun, 0x2903); /* BUS DEVICE RESET FUNCTION OCCURRED */
		break;
	case ISCSI_TMF_TARGET_WARM_RESET:
	case ISCSI_TMF_TARGET_COLD_RESET:
		conn_tmf_abort_matching(c, w, true, NULL);
		conn_tmf_reset_luns(c->tgt, true, 0);
		conn_set_ua(c->tgt, true, 0, 0x2900); /* POWER ON, RESET, OR BUS DEVICE RESET */
		w->cold_reset = fn == ISCSI_TMF_TARGET_COLD_RESET;
		break;
	case ISCSI_TMF_CLEAR_ACA:
		break;
	default:
		w->response = ISCSI_TMF_RSP_NOT_SUPPORTED;
		break;
	}
	if (w->pending == 0) {
		conn_tmf_send(c, w);
	}
}

/* ---- NOP, logout ---- */

static void
conn_handle_nop_out(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen)
{
	uint32_t itt = get_be32(bhs + BHS_ITT);

	if (itt == ISCSI_RSVD_TAG) {
		/* the answer to our ping (or an unanswered initiator ping) */
		if (c->nop_out && get_be32(bhs + BHS_TTT) == c->nop_ttt) {
			c->nop_out = false;
		}
		return;
	}
	if (!conn_check_cmdsn(c, bhs)) {
		return;
	}
	uint8_t h[ISCSI_BHS_LEN] = {0};
	uint8_t *echo = NULL;
	h[0] = ISCSI_OP_NOP_IN;
	h[1] = 0x80;
	memcpy(h + BHS_LUN, bhs + BHS_LUN, 8);
	put_be32(h + BHS_ITT, itt);
	put_be32(h + BHS_TTT, ISCSI_RSVD_TAG);
	if (dlen) {
		echo = malloc(dlen);
		if (echo) {
			memcpy(echo, data, dlen);
		} else {
			dlen = 0;
		}
	}
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, echo, dlen, echo, NULL);
	conn_flush(c);
}

/*
 * The Logout Response of a Logout that closes the session (or its only
 * connection), once no command of the session is on a worker any more: it is
 * the initiator's word that the cleanup is complete (RFC 7143 11.15), so a
 * terminated WRITE can never land after it, under a new session's writes.
 */
static void
conn_logout_respond(struct iscsi_conn *c)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};

	if (c->dead || !c->logout_wait) {
		return;
	}
	c->logout_wait = false;
	h[0] = ISCSI_OP_LOGOUT_RSP;
	h[1] = 0x80;
	put_be32(h + BHS_ITT, c->logout_itt);
	put_be16(h + 40, (uint16_t)c->params.time2wait);
	put_be16(h + 42, (uint16_t)c->params.time2retain);
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	c->closing = true;
	conn_flush(c);
}

/*
 * Logout (RFC 7143 11.14). A non-immediate Logout takes its turn by CmdSN
 * (4.2.2.1): every command before it that runs is answered first. "Close the
 * session" and "close the connection" terminate what is still pending (11.14,
 * 7.14): a command still waiting for Data-Out (its data never reached the
 * LUN), and with the I bit also the commands on workers, which then get no
 * answer (ErrorRecoveryLevel 0: nothing to reassign). Either way the Logout
 * Response waits until no command of the session runs any more.
 */
static void
conn_handle_logout(struct iscsi_conn *c, const uint8_t *bhs)
{
	uint8_t reason = bhs[1] & 0x7f;
	bool imm = bhs[0] & ISCSI_OP_IMMEDIATE;
	uint8_t h[ISCSI_BHS_LEN] = {0};

	conn_check_cmdsn(c, bhs);
	if (reason != 2 && (reason != 1 || get_be16(bhs + BHS_LOGIN_CID) == c->cid)) {
		struct iscsi_task *t, *n;
		TAILQ_FOREACH_SAFE(t, &c->tasks, link, n)
		{
			if (t->state == TASK_DATA_OUT) {
				task_finish(t);
			} else if (imm && t->state == TASK_QUEUED) {
				t->aborted = true;
			}
		}
		c->logout_wait = true;
		c->logout_itt = get_be32(bhs + BHS_ITT);
		if (c->ntasks_queued == 0) {
			conn_logout_respond(c);
		} else {
			tgt_dbg("%s: logout waits for %d command(s)%s", c->peer, c->ntasks_queued,
				imm ? ", terminated" : "");
		}
		return;
	}
	h[0] = ISCSI_OP_LOGOUT_RSP;
	h[1] = 0x80;
	put_be32(h + BHS_ITT, get_be32(bhs + BHS_ITT));
	/* connection recovery is not supported (reason 2), or CID not found */
	h[2] = reason == 1 ? 1 : 2;
	put_be16(h + 40, (uint16_t)c->params.time2wait);
	put_be16(h + 42, (uint16_t)c->params.time2retain);
	conn_stamp(c, h, true);
	conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	conn_flush(c);
}

static void
conn_send_nop_in(struct iscsi_conn *c)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	h[0] = ISCSI_OP_NOP_IN;
	h[1] = 0x80;
	put_be32(h + BHS_ITT, ISCSI_RSVD_TAG);
	c->nop_ttt = c->next_ttt++;
	if (c->next_ttt == ISCSI_RSVD_TAG) {
		c->next_ttt = 1;
	}
	put_be32(h + BHS_TTT, c->nop_ttt);
	conn_stamp(c, h, false);
	c->nop_out = true;
	c->nop_sent = time(NULL);
	conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	conn_flush(c);
}

static void
conn_send_async_logout(struct iscsi_conn *c)
{
	uint8_t h[ISCSI_BHS_LEN] = {0};
	h[0] = ISCSI_OP_ASYNC;
	h[1] = 0x80;
	put_be32(h + BHS_ITT, ISCSI_RSVD_TAG);
	conn_stamp(c, h, true);
	h[36] = 1;	     /* target requests logout */
	put_be16(h + 38, CONN_REVOKE_LOGOUT_SECS); /* seconds to log out */
	put_be16(h + 40, 2);
	put_be16(h + 42, 0);
	conn_queue_pdu(c, h, NULL, 0, NULL, NULL);
	conn_flush(c);
}

/* ---- PDU dispatch ---- */

static void
conn_handle_pdu(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *ahs, uint32_t ahslen,
		const uint8_t *data, uint32_t dlen)
{
	uint8_t op = bhs[0] & ISCSI_OP_MASK;

	if (!c->ffp) {
		if (op == ISCSI_OP_LOGIN_REQ) {
			login_handle(c, bhs, data, dlen);
		} else if (op == ISCSI_OP_LOGOUT_REQ && c->login_started) {
			c->closing = true;
			conn_flush(c);
		} else {
			tgt_info("%s: opcode 0x%02x before login, closing", c->peer, op);
			conn_close(c);
		}
		return;
	}
	if (c->logout_wait) {
		/* RFC 7143 11.14: no new request after a Logout; Data-Out of a
		 * terminated command is dropped the same way */
		tgt_dbg("%s: opcode 0x%02x after Logout, ignored", c->peer, op);
		return;
	}
	switch (op) {
	case ISCSI_OP_SCSI_CMD:
		conn_handle_scsi_cmd(c, bhs, ahs, ahslen, data, dlen);
		break;
	case ISCSI_OP_DATA_OUT:
		conn_handle_data_out(c, bhs, data, dlen);
		break;
	case ISCSI_OP_NOP_OUT:
		conn_handle_nop_out(c, bhs, data, dlen);
		break;
	case ISCSI_OP_TMF_REQ:
		if (c->discovery) {
			conn_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
			conn_flush(c);
			break;
		}
		conn_handle_tmf(c, bhs);
		break;
	case ISCSI_OP_TEXT_REQ:
		if (!conn_check_cmdsn(c, bhs)) {
			break;
		}
		text_handle(c, bhs, data, dlen);
		break;
	case ISCSI_OP_LOGOUT_REQ:
		conn_handle_logout(c, bhs);
		break;
	case ISCSI_OP_LOGIN_REQ:
		conn_protocol_error(c, bhs, "login in full feature phase");
		break;
	case ISCSI_OP_SNACK:
		conn_reject(c, bhs, ISCSI_REJECT_SNACK);
		conn_flush(c);
		break;
	default:
		conn_reject(c, bhs, ISCSI_REJECT_CMD_NOT_SUPPORTED);
		conn_flush(c);
		break;
	}
}

/* ---- receiving ---- */

static int
conn_rx_grow(struct iscsi_conn *c, size_t need)
{
	if (need <= c->rxcap) {
		return 0;
	}
	uint8_t *nb = realloc(c->rxbuf, need);
	if (!nb) {
		return -ENOMEM;
	}
	c->rxbuf = nb;
	c->rxcap = need;
	return 0;
}

/*
 * A large Data-Out whose header is in and checked, or a SCSI Command with a
 * large immediate data segment, data still on the way: handle the header, copy
 * what arrived, then conn_rx reads the rest of the data directly into the
 * task's buffer (one copy less). Only without data digest and AHS; any
 * Data-Out that fails a check takes the buffered path, which reports it.
 */
static bool
conn_rx_direct(struct iscsi_conn *c, const uint8_t *bhs, size_t avail, uint32_t hd, uint32_t dlen,
	       uint32_t pad, uint32_t dd)
{
	struct r2t_slot *s = NULL;
	uint8_t op = bhs[0] & ISCSI_OP_MASK;
	if (!c->ffp || (op != ISCSI_OP_DATA_OUT && op != ISCSI_OP_SCSI_CMD) || dd ||
	    bhs[BHS_AHSLEN] || dlen < CONN_DIRECT_MIN || avail < ISCSI_BHS_LEN + hd) {
		return false;
	}
	if (hd) {
		const uint8_t *p = bhs + ISCSI_BHS_LEN;
		uint32_t got = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
		if (crc32c(bhs, ISCSI_BHS_LEN) != got) {
			return false; /* the buffered path closes the connection */
		}
	}
	struct iscsi_task *t;
	uint32_t off = 0;
	memcpy(c->drx_bhs, bhs, ISCSI_BHS_LEN);
	if (op == ISCSI_OP_SCSI_CMD) {
		if (!(bhs[1] & ISCSI_FLAG_CMD_WRITE) || !c->params.immediate_data ||
		    dlen > get_be32(bhs + BHS_CMD_EDTL) || dlen > c->params.first_burst) {
			return false; /* the buffered path reports it */
		}
		t = conn_handle_scsi_cmd(c, c->drx_bhs, NULL, 0, NULL, dlen);
		if (c->dead) {
			return true;
		}
	} else {
		t = data_out_target(c, bhs, dlen, &s);
		if (!t) {
			return false;
		}
		off = get_be32(bhs + BHS_BUFOFF);
	}
	size_t have = avail - ISCSI_BHS_LEN - hd;
	size_t take = have < dlen ? have : dlen;
	if (t) {
		memcpy(t->cmd.out + off, bhs + ISCSI_BHS_LEN + hd, take);
	}
	c->drx_on = true;
	c->drx_imm = op == ISCSI_OP_SCSI_CMD;
	c->drx_task = t;
	c->drx_slot = s;
	c->drx_dst = t ? t->cmd.out + off + take : NULL;
	c->drx_left = dlen - (uint32_t)take;
	c->drx_pad = pad - (uint32_t)(have - take);
	c->drx_dlen = dlen;
	c->rxpos = c->rxlen = 0;
	tgt_dbg("%s: %s of task 0x%x: %u bytes received into the task", c->peer,
		c->drx_imm ? "immediate data" : "Data-Out", get_be32(bhs + BHS_ITT), dlen);
	return true;
}

/* Go on with a direct receive; false when the connection went away. */
static bool
conn_rx_direct_more(struct iscsi_conn *c, bool *again)
{
	static uint8_t sink[65536]; /* the data of a command answered at once */
	*again = false;
	while (c->drx_left || c->drx_pad) {
		uint8_t scratch[4];
		uint8_t *dst = c->drx_left ? (c->drx_dst ? c->drx_dst : sink) : scratch;
		size_t want = c->drx_left ? c->drx_left : c->drx_pad;
		if (dst == sink && want > sizeof(sink)) {
			want = sizeof(sink);
		}
		ssize_t n = read(c->ev.fd, dst, want);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				conn_close(c);
				return false;
			}
			return true; /* wait for more */
		}
		if (n == 0) {
			tgt_dbg("%s: connection closed by peer", c->peer);
			conn_close(c);
			return false;
		}
		c->last_rx = time(NULL);
		if (c->drx_left) {
			if (c->drx_dst) {
				c->drx_dst += n;
			}
			c->drx_left -= (uint32_t)n;
		} else {
			c->drx_pad -= (uint32_t)n;
		}
	}
	struct iscsi_task *t = c->drx_task;
	c->drx_on = false;
	c->drx_task = NULL;
	if (t && c->drx_imm) {
		task_imm_data(c, t, c->drx_dlen);
	} else if (t) {
		data_out_commit(c, t, c->drx_slot, c->drx_bhs[1] & ISCSI_FLAG_FINAL, c->drx_dlen);
	}
	*again = !c->dead;
	return !c->dead;
}

/* Cut whole PDUs out of the receive buffer; false when the connection went away. */
static bool
conn_parse(struct iscsi_conn *c)
{
	while (!c->dead && !c->closing && !c->fenced) {
		size_t avail = c->rxlen - c->rxpos;
		if (avail < ISCSI_BHS_LEN) {
			break;
		}
		uint8_t *bhs = c->rxbuf + c->rxpos;
		uint32_t ahslen = bhs[BHS_AHSLEN] * 4u;
		uint32_t dlen = get_be24(bhs + BHS_DLEN);
		uint32_t limit = c->ffp ? c->params.max_recv_dsl : 8192;
		uint32_t hd = c->hdigest ? 4 : 0;
		uint32_t dd = c->ddigest && dlen ? 4 : 0;
		uint32_t pad = (4 - (dlen & 3)) & 3;
		if (dlen > limit) {
			conn_protocol_error(c, bhs, "data segment beyond MaxRecvDataSegmentLength");
			return false;
		}
		size_t total = ISCSI_BHS_LEN + ahslen + hd + dlen + pad + dd;
		if (avail < total && conn_rx_direct(c, bhs, avail, hd, dlen, pad, dd)) {
			break; /* the rest of the data goes straight into the task's buffer */
		}
		if (avail < total) {
			if (conn_rx_grow(c, total) < 0) {
				conn_close(c);
				return false;
			}
			break;
		}
		if (hd) {
			const uint8_t *p = bhs + ISCSI_BHS_LEN + ahslen;
			uint32_t got = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
			if (crc32c(bhs, ISCSI_BHS_LEN + ahslen) != got) {
				tgt_info("%s: header digest error, closing", c->peer);
				conn_close(c);
				return false;
			}
		}
		const uint8_t *data = bhs + ISCSI_BHS_LEN + ahslen + hd;
		if (dd) {
			const uint8_t *p = data + dlen + pad;
			uint32_t got = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
			if (crc32c(data, dlen + pad) != got) {
				/* ERL 0: reject the PDU and drop the connection (the data is lost)
				 */
				conn_reject(c, bhs, ISCSI_REJECT_DIGEST);
				c->closing = true;
				conn_flush(c);
				return false;
			}
		}
		c->rxpos += total;
		conn_handle_pdu(c, bhs, bhs + ISCSI_BHS_LEN, ahslen, data, dlen);
	}
	if (c->dead) {
		return false;
	}
	if (c->rxpos == c->rxlen) {
		c->rxpos = c->rxlen = 0;
	} else if (c->rxpos > 0 && c->rxcap - c->rxlen < 65536) {
		memmove(c->rxbuf, c->rxbuf + c->rxpos, c->rxlen - c->rxpos);
		c->rxlen -= c->rxpos;
		c->rxpos = 0;
	}
	return true;
}

static void
conn_rx(struct iscsi_conn *c)
{
	for (int rounds = 0; rounds < 8 && !c->dead && !c->closing; rounds++) {
		if (c->drx_on) {
			bool again;
			if (!conn_rx_direct_more(c, &again) || !again) {
				return;
			}
		}
		if (c->rxcap - c->rxlen < 4096) {
			if (c->rxpos > 0) {
				memmove(c->rxbuf, c->rxbuf + c->rxpos, c->rxlen - c->rxpos);
				c->rxlen -= c->rxpos;
				c->rxpos = 0;
			}
			if (c->rxcap - c->rxlen < 4096 && conn_rx_grow(c, c->rxcap * 2) < 0) {
				conn_close(c);
				return;
			}
		}
		ssize_t n = read(c->ev.fd, c->rxbuf + c->rxlen, c->rxcap - c->rxlen);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				conn_close(c);
			}
			return;
		}
		if (n == 0) {
			tgt_dbg("%s: connection closed by peer", c->peer);
			conn_close(c);
			return;
		}
		c->last_rx = time(NULL);
		c->rxlen += (size_t)n;
		if (!conn_parse(c)) {
			return;
		}
		if (c->drx_on) {
			continue; /* read the rest of that data now */
		}
		if (c->rxlen < c->rxcap) {
			return; /* drained the socket */
		}
	}
}

static void
conn_event(struct ev_handler *h, uint32_t events)
{
	struct iscsi_conn *c = (struct iscsi_conn *)h;

	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(c);
		return;
	}
	if (events & EPOLLOUT) {
		conn_flush(c);
	}
	if ((events & EPOLLIN) && !c->dead) {
		conn_rx(c);
	}
	if (!c->dead) {
		conn_flush(c);
	}
}

void
conn_close(struct iscsi_conn *c)
{
	if (c->dead) {
		return;
	}
	tgt_dbg("%s: closing connection", c->peer);
	c->dead = true;
	if (c->fenced) {
		c->fenced = false;
		srv.nfenced--;
	}
	c->drx_task = NULL;
	c->drx_on = false;
	epoll_ctl(srv.epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
	close(c->ev.fd);
	if (c->pipe[0] >= 0) {
		close(c->pipe[0]);
		close(c->pipe[1]);
		c->pipe[0] = c->pipe[1] = -1;
		c->pipe_len = 0;
	}
	TAILQ_REMOVE(&srv.conns, c, link);
	TAILQ_INSERT_TAIL(&srv.zombies, c, link);
	struct tx_pdu *p;
	while ((p = TAILQ_FIRST(&c->txq))) {
		TAILQ_REMOVE(&c->txq, p, link);
		tx_pdu_free(p);
	}
	/* I_T nexus loss: RESERVE(6) held through this session goes away */
	if (c->ffp && c->tgt) {
		for (int i = 0; i < c->tgt->nluns; i++) {
			pr_nexus_lost(c->tgt->luns[i].lu, c->iport, c->rtpi);
		}
	}
	struct iscsi_task *t, *n;
	TAILQ_FOREACH_SAFE(t, &c->tasks, link, n)
	{
		if (t->state == TASK_DATA_OUT) {
			task_finish(t);
		} else {
			t->aborted = true;
		}
	}
}

/* Whether o is (or was, before its connection dropped) c's session: same I_T nexus. */
static bool
conn_same_session(const struct iscsi_conn *o, const struct iscsi_conn *c)
{
	return o != c && o->ffp && !o->discovery && o->tgt == c->tgt &&
	       !memcmp(o->isid, c->isid, 6) && !strcmp(o->initiator, c->initiator);
}

/* Commands still on workers of the sessions that c reinstates (live or dropped). */
static int
conn_reinstate_pending(const struct iscsi_conn *c)
{
	const struct iscsi_conn *o;
	int n = 0;
	TAILQ_FOREACH(o, &srv.zombies, link)
	{
		if (conn_same_session(o, c)) {
			n += o->ntasks_queued;
		}
	}
	return n;
}

/*
 * Session reinstatement (RFC 7143 6.3.5) and the new login of a session whose
 * connection dropped: the old session's commands are terminated (those not
 * started never run), but a WRITE already on a worker cannot be called back.
 * The new session must not see it land after its own reads and writes, so
 * its Login Response - the initiator's licence to send commands - is held
 * back, and its socket left unread, until those commands are done (the way
 * the Logout Response waits, conn_logout_respond). A worker that never comes
 * back leaves the login to the login timeout (server_tick).
 */
void
conn_reinstate(struct iscsi_conn *c)
{
	struct iscsi_conn *o, *n;
	TAILQ_FOREACH_SAFE(o, &srv.conns, link, n)
	{
		if (conn_same_session(o, c)) {
			tgt_info("%s: session reinstatement closes %s", c->peer, o->peer);
			conn_close(o);
		}
	}
	int pending = conn_reinstate_pending(c);
	if (pending) {
		tgt_info("%s: login waits for %d command(s) of the session it replaces", c->peer,
			 pending);
		c->fenced = true;
		srv.nfenced++;
		conn_set_events(c, false);
	}
}

/* After completions: answer the logins whose old session has no command left on a worker. */
static void
conn_fence_release(void)
{
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, n)
	{
		if (!c->fenced || conn_reinstate_pending(c)) {
			continue;
		}
		tgt_dbg("%s: the replaced session's commands are done, login answered", c->peer);
		c->fenced = false;
		srv.nfenced--;
		conn_set_events(c, false);
		conn_flush(c);
		if (!c->dead && c->rxpos < c->rxlen) {
			conn_parse(c); /* what the initiator sent behind its login */
			if (!c->dead) {
				conn_flush(c);
			}
		}
	}
}

/*
 * A reload that removes the target, or whose ACL no longer allows the
 * initiator, does not cut the connection under commands in flight (RFC 7143
 * 11.9.1, AsyncEvent 1): they finish and are answered; the Async Message asks
 * for a Logout within CONN_REVOKE_LOGOUT_SECS; new SCSI commands meanwhile are
 * rejected with "waiting for logout"; the Logout is answered as usual, once
 * nothing runs. An initiator that does not log out in time is disconnected
 * (server_tick) once its last command is back from the workers.
 */
void
server_revalidate_sessions(void)
{
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, n)
	{
		if (!c->ffp || c->discovery || !c->tgt) {
			continue;
		}
		if (!c->revoked && (c->tgt->removed || !tgt_target_allows(c->tgt, c->initiator))) {
			tgt_info("%s: access of %s revoked, logout requested (%d command(s) in "
				 "flight)",
				 c->peer, c->iport, c->ntasks);
			c->revoked = true;
			c->revoke_deadline = time(NULL) + CONN_REVOKE_LOGOUT_SECS + 2;
			conn_send_async_logout(c);
		}
	}
}

/* ---- listeners and the loop ---- */

/*
 * The congestion control of a new connection. By default ("auto") a connection
 * that the system gives BBR is switched to CUBIC (RENO where CUBIC is not
 * permitted): BBR paces every burst by its bandwidth estimate (an hrtimer and a
 * pacing check per TSO packet in the sender's tcp_write_xmit), which on a LAN or
 * on loopback is pure CPU cost - 1 MiB Data-In cost the daemon 270 us per MiB
 * with BBR and 115 with CUBIC or RENO on 127.0.0.1. Any other system default
 * (CUBIC, DCTCP...) is kept. "system" never touches it; a name forces it.
 */
static void
conn_set_cc(int fd)
{
	if (!strcmp(srv.tcp_cc, "system")) {
		return;
	}
	if (srv.tcp_cc[0]) {
		if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, srv.tcp_cc, strlen(srv.tcp_cc)) <
		    0) {
			tgt_dbg("TCP_CONGESTION %s: %s", srv.tcp_cc, strerror(errno));
		}
		return;
	}
	char cur[16] = "";
	socklen_t len = sizeof(cur) - 1;
	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cur, &len) < 0 || strcmp(cur, "bbr")) {
		return;
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "cubic", 5) < 0) {
		setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4);
	}
}

/* Whether connections can get congestion control name; 0 or -errno. */
int
server_tcp_cc_check(const char *name)
{
	if (!name[0] || !strcmp(name, "system") || !strcmp(name, "auto")) {
		return 0;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	int r = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, strlen(name)) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* For the connections accepted from now on ("" or "auto", "system", a name). */
void
server_set_tcp_cc(const char *name)
{
	snprintf(srv.tcp_cc, sizeof(srv.tcp_cc), "%s", strcmp(name, "auto") ? name : "");
}

static void
server_listener_event(struct ev_handler *h, uint32_t events)
{
	struct listener *l = (struct listener *)h;
	(void)events;
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->ev.fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			return;
		}
		if (srv.stopping) {
			close(fd);
			continue;
		}
		struct iscsi_conn *c = calloc(1, sizeof(*c));
		if (!c || conn_rx_grow(c, 65536) < 0) {
			free(c);
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conn_set_cc(fd);
		c->ev.fd = fd;
		c->ev.cb = conn_event;
		c->pipe[0] = c->pipe[1] = -1;
		c->created = c->last_rx = time(NULL);
		TAILQ_INIT(&c->txq);
		TAILQ_INIT(&c->tasks);
		param_defaults(&c->params);
		c->next_ttt = 1;
		char host[64] = "?", serv[16] = "?";
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
		snprintf(c->local_host, sizeof(c->local_host), "%s", l->host);
		c->local_port = l->port;
		struct sockaddr_storage ls;
		socklen_t lsl = sizeof(ls);
		if (getsockname(fd, (struct sockaddr *)&ls, &lsl) == 0) {
			getnameinfo((struct sockaddr *)&ls, lsl, c->local_host,
				    sizeof(c->local_host), NULL, 0, NI_NUMERICHOST);
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->ev};
		if (epoll_ctl(srv.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c->rxbuf);
			free(c);
			close(fd);
			continue;
		}
		TAILQ_INSERT_TAIL(&srv.conns, c, link);
		tgt_dbg("connection from %s on %s:%d", c->peer, l->host, l->port);
	}
}

int
server_init(void)
{
	TAILQ_INIT(&srv.conns);
	TAILQ_INIT(&srv.zombies);
	TAILQ_INIT(&srv.targets);
	srv.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (srv.epfd < 0) {
		return -errno;
	}
	srv.next_tsih = (uint16_t)(time(NULL) & 0x7fff);
	const char *d = getenv("VDISK_TARGET_TEST_WRITE_DELAY_MS");
	if (d && *d) {
		srv.test_write_delay_ms = (unsigned)strtoul(d, NULL, 10);
		tgt_info("test hook: every WRITE on a worker waits %u ms", srv.test_write_delay_ms);
	}
	return 0;
}

int
server_add_portal(const char *host, int port)
{
	for (int i = 0; i < srv.nlisteners; i++) {
		if (srv.listeners[i].port == port && !strcmp(srv.listeners[i].host, host)) {
			return 0;
		}
	}
	if (srv.nlisteners >= MAX_LISTENERS) {
		return -ENOSPC;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	int r = getaddrinfo(host, ps, &hints, &ai);
	if (r) {
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		freeaddrinfo(ai);
		return r;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		r = -errno;
		close(fd);
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	struct listener *l = &srv.listeners[srv.nlisteners++];
	l->ev.fd = fd;
	l->ev.cb = server_listener_event;
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->port = port;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ev};
	epoll_ctl(srv.epfd, EPOLL_CTL_ADD, fd, &ev);
	return 0;
}

void
server_close_portals(void)
{
	server_close_portals_since(0);
}

int
server_portal_mark(void)
{
	return srv.nlisteners;
}

/* Close the portals opened after server_portal_mark() said mark (a failed reload's). */
void
server_close_portals_since(int mark)
{
	while (srv.nlisteners > mark) {
		struct listener *l = &srv.listeners[--srv.nlisteners];
		epoll_ctl(srv.epfd, EPOLL_CTL_DEL, l->ev.fd, NULL);
		close(l->ev.fd);
	}
}

void
server_request_stop(void)
{
	if (srv.stopping) {
		return;
	}
	srv.stopping = true;
	srv.stop_deadline = time(NULL) + 5;
	server_close_portals();
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, n)
	{
		if (c->ffp && !c->discovery) {
			conn_send_async_logout(c);
		} else {
			conn_close(c);
		}
	}
}

static void
server_tick(void)
{
	time_t now = time(NULL);
	struct iscsi_conn *c, *n;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, n)
	{
		if (!c->ffp || c->fenced) {
			if (now - c->created > CONN_LOGIN_TIMEOUT) {
				tgt_info("%s: login not finished in %ds, closing", c->peer,
					 CONN_LOGIN_TIMEOUT);
				conn_close(c);
			}
			continue;
		}
		if (c->revoked && !c->logout_wait && !c->closing && now > c->revoke_deadline &&
		    c->ntasks_queued == 0) {
			tgt_info("%s: no Logout after the revocation, closing", c->peer);
			c->closing = true;
			conn_flush(c);
			continue;
		}
		if (c->nop_out && now - c->nop_sent > CONN_NOP_TIMEOUT) {
			tgt_info("%s: no answer to NOP-In, closing", c->peer);
			conn_close(c);
			continue;
		}
		if (!c->nop_out && now - c->last_rx > CONN_NOP_INTERVAL && !c->closing) {
			conn_send_nop_in(c);
		}
	}
}

/*
 * A LUN's size changed: its file shrank under us (an I/O ran past its end,
 * and was answered ILLEGAL REQUEST / LBA OUT OF RANGE), or READ CAPACITY or a
 * reload found it grown or shrunk. Every session of every target exporting it
 * gets CAPACITY DATA HAS CHANGED on it (SBC-3 4.6), so the initiator rereads it.
 */
static void
server_check_resized(void)
{
	struct tgt_target *tg;
	atomic_store(&tgt_lun_resize_pending, 0);
	TAILQ_FOREACH(tg, &srv.targets, link)
	{
		for (int i = 0; i < tg->nluns; i++) {
			struct tgt_lun *lu = tg->luns[i].lu;
			if (atomic_exchange(&lu->recheck, false) && tgt_lun_update_size(lu)) {
				lu->size_changed = true;
			}
			if (atomic_exchange(&lu->resized, false)) {
				lu->size_changed = true;
			}
		}
	}
	TAILQ_FOREACH(tg, &srv.targets, link)
	{
		for (int i = 0; i < tg->nluns; i++) {
			if (tg->luns[i].lu->size_changed) {
				conn_set_ua(tg, false, tg->luns[i].lun, ASC_CAPACITY_CHANGED);
			}
		}
	}
	TAILQ_FOREACH(tg, &srv.targets, link)
	{
		for (int i = 0; i < tg->nluns; i++) {
			tg->luns[i].lu->size_changed = false;
		}
	}
}

extern void main_handle_signal(int sig); /* main.c */

static void
server_signal_event(struct ev_handler *h, uint32_t events)
{
	struct signalfd_siginfo si;
	(void)events;
	while (read(h->fd, &si, sizeof(si)) == sizeof(si)) {
		main_handle_signal((int)si.ssi_signo);
	}
}

void
server_run(void)
{
	struct ev_handler sig_ev;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sig_ev.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	sig_ev.cb = server_signal_event;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sig_ev};
	epoll_ctl(srv.epfd, EPOLL_CTL_ADD, sig_ev.fd, &ev);

	srv.wq_ev.fd = workq_eventfd();
	srv.wq_ev.cb = server_wq_event;
	ev.data.ptr = &srv.wq_ev;
	epoll_ctl(srv.epfd, EPOLL_CTL_ADD, srv.wq_ev.fd, &ev);

	tgt_lun_watch_start(); /* a LUN file that grows: CAPACITY DATA HAS CHANGED */
	time_t last_tick = time(NULL);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(srv.epfd, evs, 64, 1000);
		for (int i = 0; i < n; i++) {
			struct ev_handler *h = evs[i].data.ptr;
			h->cb(h, evs[i].events);
		}
		if (srv.zc_retry) {
			/* a splice found io_lock taken; an event came since (the worker's) */
			srv.zc_retry = false;
			struct iscsi_conn *c, *cn;
			TAILQ_FOREACH_SAFE(c, &srv.conns, link, cn)
			{
				if (c->zc_wait) {
					c->zc_wait = false;
					conn_flush(c);
				}
			}
		}
		if (atomic_load_explicit(&tgt_lun_resize_pending, memory_order_relaxed)) {
			server_check_resized();
		}
		server_sweep();
		time_t now = time(NULL);
		if (now != last_tick) {
			last_tick = now;
			server_tick();
		}
		if (srv.stopping) {
			bool busy = false;
			struct iscsi_conn *c;
			TAILQ_FOREACH(c, &srv.conns, link)
			{
				busy = true;
			}
			if (!busy || now > srv.stop_deadline) {
				break;
			}
		}
	}
	/* drain: close what is left; wait for the workers' last completions */
	struct iscsi_conn *c, *nn;
	TAILQ_FOREACH_SAFE(c, &srv.conns, link, nn)
	{
		conn_close(c);
	}
	workq_stop();
	task_complete_all();
	server_sweep();
	close(sig_ev.fd);
}
