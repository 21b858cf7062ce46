/* SPDX-License-Identifier: MIT */
/*
 * vdisk-target private header, shared by every file under tools/target/.
 *
 * Objects:
 *   struct tgt_lun     a logical unit over one plain file (backing.c); shared by
 *                      every session and portal, refcounted; holds the state that
 *                      must be identical on all paths (PR, RESERVE(6), ATS lock).
 *   struct tgt_target  a target node: IQN, LUN map, CHAP secrets, ACL, portals
 *                      with their TPGT and ALUA state (config.c).
 *   struct scsi_cmd    one CDB to execute, with its data buffers (scsi.c); run on
 *                      a worker thread (backing.c) and completed on the loop.
 *   struct iscsi_conn  one TCP connection = one session (MaxConnections=1), owned
 *                      by the event loop thread (conn.c, login.c).
 *
 * THREAD MODEL: one epoll loop thread owns sockets, connections, sessions and
 * the configuration; a fixed pool of workers runs scsi_exec(). A worker touches
 * only its scsi_cmd and the LUN it points to; LUN fields are immutable after
 * open except those marked "protected by".
 */
#ifndef TARGET_TARGET_H
#define TARGET_TARGET_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <pthread.h>

#include "iscsi_proto.h"

#ifndef TAILQ_FOREACH_SAFE /* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                 \
	for ((var) = TAILQ_FIRST((head)); (var) && ((tvar) = TAILQ_NEXT((var), field), 1);         \
	     (var) = (tvar))
#endif

#define TGT_NAME_MAX 224
#define TGT_IPORT_MAX (TGT_NAME_MAX + 24)
#define TGT_MAX_LUNS 256
#define TGT_MAX_PORTALS 16
#define TGT_MAX_ACL 64
#define TGT_MAX_TPGS 16
#define SCSI_SENSE_MAX 32
#define SCSI_MAX_XFER (8u << 20) /* bytes per command; VPD B0 says so */
#define PR_MAX_REGS 64
#define XC_RESULTS 4 /* EXTENDED COPY results kept per LUN */

extern int tgt_verbose;
void tgt_log(int level, const char *func, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define tgt_err(...) tgt_log(0, __func__, __LINE__, __VA_ARGS__)
#define tgt_info(...) tgt_log(1, __func__, __LINE__, __VA_ARGS__)
#define tgt_dbg(...)                                                                               \
	do {                                                                                       \
		if (tgt_verbose >= 2) {                                                            \
			tgt_log(2, __func__, __LINE__, __VA_ARGS__);                               \
		}                                                                                  \
	} while (0)

/* ---- persistent reservations (pr.c) ---- */
struct pr_reg {
	char iport[TGT_IPORT_MAX]; /* initiator port: "iqn,i,0xISID" */
	uint16_t rtpi;		   /* relative target port it registered through */
	bool all_tg_pt;
	uint64_t key;
};

struct pr_state {
	uint32_t generation;
	int nregs;
	struct pr_reg regs[PR_MAX_REGS];
	bool reserved;
	uint8_t type;
	uint8_t scope;
	char holder_iport[TGT_IPORT_MAX]; /* unused for all-registrants types */
	uint16_t holder_rtpi;
};

/* ---- logical units (backing.c) ---- */
struct tgt_lun {
	int refs; /* atomic */
	char *path;
	bool ro;
	int fd;
	_Atomic uint64_t nblocks; /* reread when the file changes size (tgt_lun_update_size) */
	uint32_t block_size; /* 512 */
	uint8_t pb_exp;	     /* physical block = block_size << pb_exp */
	bool can_unmap;
	bool mem_backed; /* tmpfs/ramfs: I/O never waits for a device, run it on the loop */
	bool zerocopy;	 /* tmpfs with small pages: reads may splice file pages to the socket */
	uint8_t *map;	 /* mem_backed and writable: the file mapped shared, for writes */
	uint64_t map_len;
	uint8_t naa[16];	  /* NAA 6 registered extended identifier */
	char serial[40];	  /* VPD 80 */
	bool serial_set;	  /* serial given in the configuration */
	uint64_t dev_key;	  /* st_dev/st_ino, to match LUNs across reloads */
	pthread_rwlock_t io_lock; /* shared by I/O, exclusive for COMPARE AND WRITE */
	pthread_mutex_t lock;
	struct pr_state pr;		/* protected by lock */
	bool res6;			/* RESERVE(6) held; protected by lock */
	char res6_iport[TGT_IPORT_MAX]; /* protected by lock */
	uint16_t res6_rtpi;		/* protected by lock */
	uint8_t wce;			/* write cache enable (mode page 8); protected by lock */
	_Atomic uint8_t swp; /* software write protect (control mode page, MODE SELECT) */
	/* the size of the file changed under us: an I/O found it shorter than
	 * nblocks (recheck: the loop rereads it), or READ CAPACITY or a reload
	 * found another size (resized: done); the loop then queues CAPACITY DATA
	 * HAS CHANGED. nblocks is updated by tgt_lun_update_size (atomic store) */
	_Atomic bool recheck;
	_Atomic bool resized;
	bool size_changed; /* loop thread only: unit attention to raise */
	struct xcopy_result {
		bool valid;
		uint8_t list_id;
		uint8_t status;
		uint16_t segs;
		uint32_t bytes;
		char iport[TGT_IPORT_MAX];
	} xres[XC_RESULTS];	       /* protected by lock */
	int xres_next;		       /* protected by lock */
	TAILQ_ENTRY(tgt_lun) all_link; /* protected by the registry lock (backing.c) */
};

/* Open a LUN over path (file or block device); NULL + errno on failure. */
struct tgt_lun *tgt_lun_open(const char *path, bool ro, const char *serial_override,
			     uint32_t pbsize);
struct tgt_lun *tgt_lun_get(struct tgt_lun *lu);
/* Find an open LUN by its NAA id (for EXTENDED COPY); a reference, or NULL. */
struct tgt_lun *tgt_lun_find_naa(const uint8_t naa[16]);
void tgt_lun_put(struct tgt_lun *lu);

/* ---- targets and configuration (config.c) ---- */
struct tgt_portal {
	char host[64];
	int port;
	uint16_t tpgt;
};

struct tgt_tpg {
	uint16_t tag;
	uint8_t alua_state; /* 0 active/optimized, 1 non-optimized, 2 standby, 3 unavailable */
};

struct tgt_lun_map {
	uint64_t lun;
	struct tgt_lun *lu;
};

struct tgt_chap {
	char user[256];
	char secret[256];
};

struct tgt_target {
	char iqn[TGT_NAME_MAX];
	char alias[64];
	int nportals;
	struct tgt_portal portals[TGT_MAX_PORTALS];
	int ntpgs;
	struct tgt_tpg tpgs[TGT_MAX_TPGS];
	int nluns;
	struct tgt_lun_map luns[TGT_MAX_LUNS];
	bool chap_on;
	struct tgt_chap chap;
	bool mutual_on;
	struct tgt_chap mutual;
	int nacl;
	char acl[TGT_MAX_ACL][TGT_NAME_MAX];
	bool removed; /* dropped by a reload; sessions get logged out */
	TAILQ_ENTRY(tgt_target) link;
};
TAILQ_HEAD(tgt_target_list, tgt_target);

struct tgt_lun_spec {
	uint64_t lun;
	char path[4096];
	bool ro;
	char serial[40];
	uint32_t pbsize; /* physical block size: 512..65536, 4096 by default */
};

/* The parsed configuration (before LUNs are opened). */
struct tgt_config {
	int ntargets;
	struct tgt_config_target {
		struct tgt_target t; /* luns[].lu unset */
		int nspecs;
		struct tgt_lun_spec specs[TGT_MAX_LUNS];
	} * targets;
	int workers;
	char pidfile[4096];
	char tcp_cc[16]; /* TCP congestion control of connections: "" = auto */
};

/* Parse a config file into cfg (appending); 0 or -errno, message in err. */
int tgt_config_parse_file(struct tgt_config *cfg, const char *path, char *err, size_t errlen);
/* Parse the command-line style options into cfg; 0 or -errno. */
int tgt_config_add_target(struct tgt_config *cfg, const char *iqn);
int tgt_config_portal(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen);
int tgt_config_lun(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen);
int tgt_config_chap(struct tgt_chap *c, const char *spec, char *err, size_t errlen);
int tgt_config_tpg(struct tgt_config_target *ct, const char *spec, char *err, size_t errlen);
int tgt_config_allow(struct tgt_config_target *ct, const char *name, char *err, size_t errlen);
int tgt_config_check(struct tgt_config *cfg, char *err, size_t errlen);
int tgt_config_tcp_cc(struct tgt_config *cfg, const char *val, char *err, size_t errlen);
int tgt_config_workers(struct tgt_config *cfg, const char *what, const char *val, char *err,
		       size_t errlen);
void tgt_config_free(struct tgt_config *cfg);
bool tgt_target_allows(const struct tgt_target *t, const char *initiator);
uint16_t tgt_target_rtpi(const struct tgt_target *t, uint16_t tpgt);

/* ---- SCSI (scsi.c, spc.c, sbc.c, pr.c) ---- */
struct scsi_nexus {
	char iport[TGT_IPORT_MAX];
	uint16_t rtpi; /* relative target port id = index of the TPG + 1 */
	uint16_t tpgt;
	uint8_t alua_state;
};

struct scsi_cmd {
	struct tgt_lun *lu; /* NULL: no LUN mapped at this number */
	uint64_t lun;
	struct scsi_nexus nexus;
	uint8_t cdb[16];
	uint32_t edtl; /* expected data transfer length from the initiator */
	uint8_t *out;  /* Data-Out (malloc'd by the transport) */
	uint32_t out_len;
	uint8_t *in; /* Data-In (malloc'd by the handler, freed with the task) */
	uint32_t in_len;
	bool capacity_seen; /* READ CAPACITY found a new size (its session needs no UA) */
	bool has_spdtl; /* a data-out command set spdtl: the bytes it wanted */
	uint32_t spdtl;
	bool nowait;	  /* on the loop thread: never block, set would_block instead */
	bool zc_ok;	  /* the transport can splice this read's data from the file */
	uint32_t zc_max;  /* ... whose pages, spanned, must fit in this many bytes */
	bool zc;	  /* read done by reference: in_len bytes at zc_off of lu->fd */
	bool mapped;	  /* read done by pointer: in_len bytes at zc_off of lu->map */
	uint64_t zc_off;
	bool would_block; /* nowait could not complete: run again on a worker */
	uint8_t status;
	uint8_t sense_len;
	uint8_t sense[SCSI_SENSE_MAX];
	/* Snapshots from the target node, filled by the transport for the few
	 * commands that need them (REPORT LUNS, REPORT TARGET PORT GROUPS, INQUIRY). */
	int nluns;
	uint64_t luns[TGT_MAX_LUNS];
	int ntpgs;
	struct tgt_tpg tpgs[TGT_MAX_TPGS];
	char target_name[TGT_NAME_MAX];
};

#define SAM_STAT_GOOD 0x00
#define SAM_STAT_CHECK_CONDITION 0x02
#define SAM_STAT_CONDITION_MET 0x04
#define SAM_STAT_BUSY 0x08
#define SAM_STAT_RESERVATION_CONFLICT 0x18
#define SAM_STAT_TASK_SET_FULL 0x28
#define SAM_STAT_TASK_ABORTED 0x40

#define SK_NO_SENSE 0x0
#define SK_NOT_READY 0x2
#define SK_MEDIUM_ERROR 0x3
#define SK_HARDWARE_ERROR 0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION 0x6
#define SK_DATA_PROTECT 0x7
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE 0xe

/* ASC/ASCQ pairs (asc << 8 | ascq). */
#define ASC_NONE 0x0000
#define ASC_INVALID_OPCODE 0x2000
#define ASC_LBA_OUT_OF_RANGE 0x2100
#define ASC_INVALID_FIELD_IN_CDB 0x2400
#define ASC_LUN_NOT_SUPPORTED 0x2500
#define ASC_REPORTED_LUNS_CHANGED 0x3f0e
#define ASC_CAPACITY_CHANGED 0x2a09
#define ASC_INVALID_FIELD_IN_PARAM 0x2600
#define ASC_PARAM_LIST_LENGTH 0x1a00
#define ASC_WRITE_PROTECTED 0x2700
#define ASC_MISCOMPARE_VERIFY 0x1d00
#define ASC_INVALID_FIELD_IN_IU 0x0e03
#define ASC_READ_ERROR 0x1100
#define ASC_WRITE_ERROR 0x0c00
#define ASC_SPACE_ALLOC_FAILED 0x2707
#define ASC_INSUFFICIENT_REG_RESOURCES 0x5504
#define ASC_SAVING_PARAMS_UNSUP 0x3900
#define ASC_ALUA_STANDBY 0x040b
#define ASC_ALUA_UNAVAILABLE 0x040c
#define ASC_INTERNAL_TARGET_FAILURE 0x4400
#define ASC_INVALID_RELEASE_OF_PR 0x2604
#define ASC_COPY_TARGET_DEVICE_NOT_REACHABLE 0x0d02

/* Execute one command: fills status, sense, in/in_len. Runs on a worker. */
void scsi_exec(struct scsi_cmd *cmd);
/* Set CHECK CONDITION with fixed-format sense; returns the status. */
int scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc_ascq);
/* The same with the INFORMATION field (valid bit) set. */
int scsi_sense_info(struct scsi_cmd *cmd, uint8_t key, uint16_t asc_ascq, uint64_t info);
/* INVALID FIELD IN CDB with the sense-key specific field pointer (byte of the CDB). */
int scsi_sense_field(struct scsi_cmd *cmd, uint16_t field_byte);
/* Map a -errno from the backend to sense data. */
int scsi_sense_errno(struct scsi_cmd *cmd, int err);
/* Allocate cmd->in of len bytes (zeroed); -ENOMEM on failure. */
int scsi_alloc_in(struct scsi_cmd *cmd, uint32_t len);
/* The same without zeroing, for buffers the caller fills entirely. */
int scsi_alloc_in_raw(struct scsi_cmd *cmd, uint32_t len);
/* The CDB length for an opcode from its group code. */
int scsi_cdb_len(uint8_t op);
/* Transfer length in bytes of the data-out a CDB asks for, or -1 when none/unknown. */

typedef int (*scsi_handler_fn)(struct scsi_cmd *cmd);
struct scsi_op {
	scsi_handler_fn fn;
	uint16_t flags;
	uint8_t sa; /* service action, for commands split by service action */
	uint8_t cdb_len;
	uint8_t usage[16]; /* CDB usage bitmap for REPORT SUPPORTED OPERATION CODES */
};
#define SCSI_OP_WRITE 0x01     /* modifies the medium: DATA PROTECT on ro LUNs */
#define SCSI_OP_MEDIA 0x02     /* media access: subject to reservations and ALUA */
#define SCSI_OP_NO_LUN 0x04    /* allowed without a LUN (INQUIRY, REPORT LUNS, ...) */
#define SCSI_OP_READ_LIKE 0x08 /* allowed under Write Exclusive reservations */
#define SCSI_OP_RES6_OK 0x10   /* allowed under a RESERVE(6) held by another nexus */
#define SCSI_OP_ALUA_OK 0x20   /* allowed in ALUA standby */

/* Look up the handler entry for a CDB; NULL when unsupported. */
const struct scsi_op *scsi_op_find(uint8_t op, uint8_t sa);
/* Iterate the table: entry i or NULL past the end. */
const struct scsi_op *scsi_op_at(int i, uint8_t *op);

/* spc.c */
int spc_inquiry(struct scsi_cmd *cmd);
int spc_report_luns(struct scsi_cmd *cmd);
int spc_test_unit_ready(struct scsi_cmd *cmd);
int spc_request_sense(struct scsi_cmd *cmd);
int spc_mode_sense(struct scsi_cmd *cmd);
int spc_mode_select(struct scsi_cmd *cmd);
int spc_report_tpgs(struct scsi_cmd *cmd);
int spc_report_opcodes(struct scsi_cmd *cmd);
int spc_reserve6(struct scsi_cmd *cmd);
int spc_release6(struct scsi_cmd *cmd);
int spc_start_stop(struct scsi_cmd *cmd);
int spc_prevent_allow(struct scsi_cmd *cmd);
/* sbc.c */
int sbc_read(struct scsi_cmd *cmd);
int sbc_write(struct scsi_cmd *cmd);
int sbc_verify(struct scsi_cmd *cmd);
int sbc_read_capacity10(struct scsi_cmd *cmd);
int sbc_service_action_in16(struct scsi_cmd *cmd);
int sbc_sync_cache(struct scsi_cmd *cmd);
int sbc_write_same(struct scsi_cmd *cmd);
int sbc_unmap(struct scsi_cmd *cmd);
int sbc_compare_and_write(struct scsi_cmd *cmd);
int sbc_prefetch(struct scsi_cmd *cmd);
int sbc_read_defect_data(struct scsi_cmd *cmd);
int sbc_sanitize(struct scsi_cmd *cmd);
/* xcopy.c */
int xcopy_extended_copy(struct scsi_cmd *cmd);
int xcopy_receive_results(struct scsi_cmd *cmd);
/* pr.c */
int pr_in(struct scsi_cmd *cmd);
int pr_out(struct scsi_cmd *cmd);
/* Reservation conflict check, lu->lock held; true when the command may run. */
bool pr_check_access(struct tgt_lun *lu, const struct scsi_nexus *nx, const struct scsi_op *op,
		     const uint8_t *cdb);
/* Forget an I_T nexus (logout/connection loss): RESERVE(6) only; PR persists. */
void pr_nexus_lost(struct tgt_lun *lu, const char *iport, uint16_t rtpi);
/* LUN reset / target reset effects on one LUN. */
void pr_lun_reset(struct tgt_lun *lu);

/* ---- backend I/O and the worker pool (backing.c) ---- */
/* -ENXIO past the end of a file that shrank (the LUN is marked shrunk) */
int lun_pread(struct tgt_lun *lu, void *buf, size_t len, uint64_t off);
/* Some LUN was marked since the loop last looked (tgt_lun_mark_*). */
extern _Atomic int tgt_lun_resize_pending;
/* An I/O ran past the end of the file: the loop rereads its size. */
void tgt_lun_mark_shrunk(struct tgt_lun *lu);
/* The size changed (tgt_lun_update_size said so): the loop raises the UA. */
void tgt_lun_mark_resized(struct tgt_lun *lu);
/* Reread the size of the file or device into nblocks; true when it changed. */
bool tgt_lun_update_size(struct tgt_lun *lu);
/*
 * The file (or device) is now larger than nblocks: take the new size (true),
 * so that the loop raises CAPACITY DATA HAS CHANGED. One fstat (or
 * BLKGETSIZE64); a smaller file is left to the I/O that meets its end.
 */
bool tgt_lun_check_grown(struct tgt_lun *lu);
/*
 * Start the thread that looks at every open LUN once a second
 * (tgt_lun_check_grown) and marks the grown ones resized; the loop then
 * raises the unit attentions. Once per process.
 */
void tgt_lun_watch_start(void);
/* pread from the page cache only: -EAGAIN when that would block. */
/* A write that in-flight zero-copy reads never see half of (COMPARE AND WRITE...). */
int lun_pwrite_atomic(struct tgt_lun *lu, const void *buf, size_t len, uint64_t off);
bool lun_map_resident(struct tgt_lun *lu, uint64_t off, size_t len);
/* memcpy from the mapping; -EFAULT when the pages are gone (the file shrank) */
int lun_map_read(struct tgt_lun *lu, void *buf, size_t len, uint64_t off);
int lun_pread_nowait(struct tgt_lun *lu, void *buf, size_t len, uint64_t off);
int lun_pwrite(struct tgt_lun *lu, const void *buf, size_t len, uint64_t off);
int lun_flush(struct tgt_lun *lu);
int lun_punch(struct tgt_lun *lu, uint64_t off, uint64_t len);
/* Is the byte at off in a mapped (data) region; *run = length of the run. */
int lun_block_status(struct tgt_lun *lu, uint64_t off, bool *mapped, uint64_t *run);

struct tgt_work {
	void (*fn)(struct tgt_work *w); /* runs on a worker */
	TAILQ_ENTRY(tgt_work) link;
};

/* Start n workers; completions are signalled on the returned eventfd. */
int workq_start(int n);
void workq_stop(void);
/* Queue w; after fn ran, w is put on the done list and the eventfd is signalled. */
void workq_submit(struct tgt_work *w);
/* Pop one completed item (loop thread), NULL when none. */
struct tgt_work *workq_pop_done(void);
int workq_eventfd(void);

/* ---- CHAP (chap.c) ---- */
/* Decode a CHAP binary value "0x..."/"0b..." into buf; length or -EINVAL. */
int chap_decode(const char *s, uint8_t *buf, size_t buflen);
/* Encode buf as "0x<hex>" into out. */
void chap_encode_hex(const uint8_t *buf, size_t len, char *out, size_t outlen);
/* MD5(id || secret || challenge) into resp[16]. */
void chap_md5_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
		       uint8_t resp[16]);

#endif
