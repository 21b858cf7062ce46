/* SPDX-License-Identifier: MIT */
/*
 * Connections, sessions and the event loop of vdisk-target (conn.c, login.c).
 * A connection is also its session: MaxConnections is negotiated to 1, so the
 * ISID/TSIH/CmdSN state of the session lives here. All of it belongs to the
 * loop thread; workers only see the scsi_cmd embedded in a task.
 */
#ifndef TARGET_CONN_H
#define TARGET_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "param.h"
#include "target.h"

#define CONN_QUEUE_DEPTH 128		 /* CmdSN window and tasks in flight per session */
#define CONN_LOGIN_TIMEOUT 15		 /* seconds to finish a login */
#define CONN_NOP_INTERVAL 15		 /* idle seconds before we ping with NOP-In */
#define CONN_NOP_TIMEOUT 30		 /* seconds to answer our ping */
#define CONN_REVOKE_LOGOUT_SECS 3	 /* Async logout request: time to log out */
#define TGT_INLINE_READ_MAX (128u << 10) /* reads tried on the loop thread */
#define TGT_INLINE_MEM_MAX (1u << 20)	 /* reads/writes of a tmpfs LUN run on the loop */
#define CONN_PIPE_SIZE (1u << 20)	 /* zero-copy reads up to this size, one splice */
#define CONN_DIRECT_MIN (16u << 10)	 /* Data-Out received straight into the task */
#define CONN_MAX_WRITE_BUF (64u << 20)	 /* Data-Out bytes buffered per session */

struct ev_handler {
	int fd;
	void (*cb)(struct ev_handler *h, uint32_t events);
};

struct iscsi_conn;
struct tmf_wait;

struct r2t_slot {
	bool used;
	uint32_t ttt;
	uint32_t off;
	uint32_t len;
	uint32_t next; /* next expected buffer offset */
	uint32_t datasn;
};

enum task_state { TASK_DATA_OUT, TASK_QUEUED, TASK_DONE };

struct iscsi_task {
	struct tgt_work work; /* first: workq hands it back */
	struct iscsi_conn *conn;
	TAILQ_ENTRY(iscsi_task) link;
	enum task_state state;
	/* terminated (TMF, Logout, connection loss): no answer; a worker that has
	 * not started it yet skips it (set on the loop, read on a worker) */
	_Atomic bool aborted;
	int refs; /* tx PDUs in flight + 1 for the task list */
	uint32_t itt;
	uint32_t cmdsn;
	uint8_t lun_raw[8];
	uint8_t flags; /* R/W bits of the command */
	uint32_t edtl;
	/* data-out gathering */
	uint32_t got;	 /* bytes received */
	bool unsol_open; /* unsolicited Data-Out expected */
	uint32_t unsol_next;
	uint32_t unsol_datasn;
	uint32_t unsol_end; /* limit of unsolicited data */
	uint32_t r2t_next;  /* next offset to solicit */
	uint32_t r2tsn;
	int r2t_outstanding;
	struct r2t_slot r2t[TGT_MAX_OUTSTANDING_R2T];
	bool map_started;     /* some of its mapped Data-In was sent */
	struct tmf_wait *tmf; /* a task management request waiting for this task */
	struct scsi_cmd cmd;
};

struct tx_pdu {
	TAILQ_ENTRY(tx_pdu) link;
	uint8_t hdr[ISCSI_BHS_LEN + ISCSI_DIGEST_LEN];
	uint32_t hlen;
	const uint8_t *data;
	uint32_t dlen;
	uint8_t trailer[8]; /* padding + data digest */
	uint32_t tlen;
	uint8_t *owned;		 /* freed after sending */
	struct iscsi_task *task; /* reference held while data points into it */
	size_t sent;
	/* zero-copy Data-In: the data is spliced from task->cmd.lu's file at zc_off,
	 * through the connection's pipe, which is filled up to zc_end (the end of
	 * the task's data) under io_lock; no padding, no data digest */
	bool zc;
	uint64_t zc_off;
	uint64_t zc_end;
	/* Data-In pointing into task->cmd.lu's mapping: sent under io_lock; what is
	 * left of a task whose data went out in part is copied (conn_flush) */
	bool mapped;
};

struct tmf_wait {
	uint32_t itt;
	uint8_t response;
	int pending;
	bool cold_reset;
};

enum auth_state { AUTH_NONE, AUTH_WAIT_A, AUTH_WAIT_R, AUTH_DONE };

struct iscsi_conn {
	struct ev_handler ev;
	TAILQ_ENTRY(iscsi_conn) link;
	bool closing;	   /* send what is queued, then close */
	/* a Logout (close the session or the connection) waits for the commands
	 * still on workers; the Logout Response goes out once they are back */
	bool logout_wait;
	uint32_t logout_itt;
	bool dead;	   /* socket closed; freed once no task is queued on a worker */
	/* the Login Response of a session reinstatement waits (unsent, the socket
	 * not read) until no command of the session it replaces is on a worker */
	bool fenced;
	/* a reload revoked the initiator's access: Async Message sent, new SCSI
	 * commands rejected (Waiting for Logout), closed at revoke_deadline */
	bool revoked;
	time_t revoke_deadline;
	int ntasks_queued; /* tasks on workers */
	time_t created;
	time_t last_rx;
	char peer[64];
	char local_host[64];
	int local_port;
	/* receive */
	uint8_t *rxbuf;
	size_t rxcap, rxlen, rxpos;
	/* a Data-Out, or the immediate data of a SCSI Command (drx_imm), being
	 * received straight into its task's buffer; with drx_task NULL (a command
	 * that was answered at once) the data is read and dropped */
	bool drx_on;
	bool drx_imm;
	struct iscsi_task *drx_task;
	struct r2t_slot *drx_slot;
	uint8_t *drx_dst;
	uint32_t drx_left, drx_pad, drx_dlen;
	uint8_t drx_bhs[ISCSI_BHS_LEN];
	/* send */
	TAILQ_HEAD(, tx_pdu) txq;
	bool want_out;
	bool need_flush; /* completions queued PDUs: flush after the batch */
	int pipe[2];	 /* zero-copy Data-In: file pages -> pipe -> socket; -1 until used */
	uint32_t pipe_cap;
	uint32_t pipe_len; /* bytes in the pipe, all of the head PDU's task */
	bool zc_wait;	   /* a splice waits for io_lock (an atomic write on a worker) */
	/* login */
	bool ffp; /* login complete: full feature phase */
	bool login_started;
	int csg;
	uint32_t login_itt;
	enum auth_state auth;
	bool auth_required;
	uint8_t chap_id;
	uint8_t chap_chal[16];
	char *login_text; /* a continued login/text request being collected */
	size_t login_text_len;
	/* session */
	bool discovery;
	uint8_t isid[6];
	uint16_t tsih;
	uint16_t cid;
	char initiator[TGT_NAME_MAX];
	char iport[TGT_IPORT_MAX];
	struct tgt_target *tgt;
	uint16_t tpgt;
	uint16_t rtpi;
	struct iscsi_params params;
	bool hdigest, ddigest; /* in force (after login) */
	uint32_t exp_cmdsn;
	uint32_t max_cmdsn; /* highest MaxCmdSN announced */
	bool max_cmdsn_set;
	uint32_t statsn;
	uint32_t next_ttt;
	TAILQ_HEAD(, iscsi_task) tasks;
	int ntasks;
	uint64_t write_buf; /* Data-Out buffers of live tasks, bytes */
	/* unit attentions pending for this I_T nexus */
	int nua;
	struct {
		uint64_t lun;
		uint16_t asc;
	} ua[16];
	/* keep-alive */
	bool nop_out;
	uint32_t nop_ttt;
	time_t nop_sent;
	/* a text response longer than one PDU */
	char *text_rsp;
	size_t text_rsp_len, text_rsp_off;
	uint32_t text_ttt;
};

/* conn.c */
int server_init(void);
int server_add_portal(const char *host, int port);
void server_close_portals(void);
int server_portal_mark(void);
void server_close_portals_since(int mark);
void server_run(void);
int server_tcp_cc_check(const char *name);
void server_set_tcp_cc(const char *name);
void server_request_stop(void);
struct tgt_target *server_find_target(const char *iqn);
struct tgt_target_list *server_targets(void);
bool server_has_portal(const struct tgt_target *t, const char *host, int port, uint16_t *tpgt);
void conn_queue_pdu(struct iscsi_conn *c, uint8_t *bhs, const uint8_t *data, uint32_t dlen,
		    uint8_t *owned, struct iscsi_task *task);
/* Fill StatSN/ExpCmdSN/MaxCmdSN of a response and advance StatSN when asked. */
void conn_stamp(struct iscsi_conn *c, uint8_t *bhs, bool advance);
void conn_close(struct iscsi_conn *c);
/* Write what is queued; closes the connection when it was marked closing. */
void conn_flush(struct iscsi_conn *c);
void conn_reject(struct iscsi_conn *c, const uint8_t *bhs, uint8_t reason);
/*
 * Close every other session of (initiator, ISID, target): session reinstatement.
 * When a command of one of them (or of such a session whose connection was
 * dropped) still runs on a worker, c is fenced: its queued Login Response goes
 * out, and its socket is read, once they are all back.
 */
void conn_reinstate(struct iscsi_conn *c);
uint16_t conn_new_tsih(void);
/* Logout every session of a target that a reload removed or whose ACL no longer allows. */
void server_revalidate_sessions(void);
/* A reload changed the LUNs of t: REPORTED LUNS DATA HAS CHANGED for its sessions. */
void server_luns_changed(struct tgt_target *t);

/* login.c */
void login_handle(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen);
void text_handle(struct iscsi_conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dlen);

#endif
