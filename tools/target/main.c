// SPDX-License-Identifier: MIT
/*
 * vdisk-target: options, configuration (re)load, daemonising and signals
 * (after tgt's tgtd.c main). The whole configuration is parsed and checked,
 * and every LUN opened, before anything is applied; a reload (SIGHUP) that
 * fails leaves the running configuration alone. On reload a LUN whose path
 * and mode did not change keeps its object, hence its reservations and any
 * I/O in flight; sessions that are no longer allowed get an Async logout
 * request, the others carry on. SIGTERM asks every session to log out, lets
 * in-flight commands finish (at most 5 s) and exits.
 */
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"

int tgt_verbose = 1;
static bool use_syslog;
static char **saved_argv;
/* The configuration the daemon started with (what a reload cannot change). */
static const struct tgt_config *running_cfg;
static int saved_argc;

void
tgt_log(int level, const char *func, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > tgt_verbose) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (use_syslog) {
		syslog(level == 0 ? LOG_ERR : level == 1 ? LOG_INFO : LOG_DEBUG, "%s", msg);
		return;
	}
	if (tgt_verbose >= 2) {
		fprintf(stderr, "vdisk-target: %s:%d: %s\n", func, line, msg);
	} else {
		fprintf(stderr, "vdisk-target: %s\n", msg);
	}
}

static void
main_usage(FILE *f)
{
	fprintf(f,
		"usage: vdisk-target --iqn IQN --portal ADDR:PORT[,TPGT]... --lun "
		"N=PATH[,ro][,serial=S]...\n"
		"                    [--chap USER:SECRET] [--mutual-chap USER:SECRET] [--allow "
		"IQN]...\n"
		"                    [--tpg TPGT=STATE]... [--workers N] [--pidfile FILE] [-f] "
		"[-v|-q]\n"
		"                    [--tcp-congestion auto|system|ALG]\n"
		"       vdisk-target --config FILE [-f] [-v|-q]\n"
		"Export plain files or block devices as iSCSI LUNs on one or more portals.\n"
		"  --iqn IQN            target name (iqn.YYYY-MM.reversed.domain:name)\n"
		"  --portal A:P[,TPGT]  listen on address A port P in portal group TPGT (1)\n"
		"  --lun N=PATH[,opts]  export PATH as LUN N; opts: ro, serial=S (fixed "
		"identity),\n"
		"                       pbsize=B (physical block size, 4096 by default)\n"
		"  --chap USER:SECRET   require CHAP from initiators\n"
		"  --mutual-chap U:S    the target's own credentials for mutual CHAP\n"
		"  --allow IQN          only these initiators may log in (repeatable)\n"
		"  --tpg TPGT=STATE     ALUA state: active, non-optimized, standby, unavailable\n"
		"  --workers N          I/O worker threads (default 4)\n"
		"  --tcp-congestion C   TCP congestion control of the connections: auto "
		"(default;\n"
		"                       BBR becomes cubic, or reno), system, or a name\n"
		"  --config FILE        read targets from FILE (see the README); SIGHUP rereads "
		"it\n"
		"  -f, --foreground     stay in the foreground, log to stderr\n"
		"  -v, --verbose        more logging; -q, --quiet: errors only\n");
}

enum {
	OPT_IQN = 256,
	OPT_PORTAL,
	OPT_LUN,
	OPT_CHAP,
	OPT_MUTUAL,
	OPT_ALLOW,
	OPT_TPG,
	OPT_WORKERS,
	OPT_CONFIG,
	OPT_PIDFILE,
	OPT_TCP_CC
};

static const struct option long_opts[] = {
	{"iqn", required_argument, NULL, OPT_IQN},
	{"portal", required_argument, NULL, OPT_PORTAL},
	{"lun", required_argument, NULL, OPT_LUN},
	{"chap", required_argument, NULL, OPT_CHAP},
	{"mutual-chap", required_argument, NULL, OPT_MUTUAL},
	{"allow", required_argument, NULL, OPT_ALLOW},
	{"tpg", required_argument, NULL, OPT_TPG},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"pidfile", required_argument, NULL, OPT_PIDFILE},
	{"tcp-congestion", required_argument, NULL, OPT_TCP_CC},
	{"foreground", no_argument, NULL, 'f'},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static bool foreground;
/*
 * The folder vdisk-target was started in: relative paths (--config, LUN files,
 * the pidfile) are read there at the start and again by every reload, though
 * the daemon itself works in / (so that it keeps no mount busy).
 */
static char *start_cwd;
static char config_path[4096];

/* Parse argv into cfg; 0, or -EINVAL with a message printed. */
static int
main_parse_args(int argc, char **argv, struct tgt_config *cfg)
{
	char err[512] = "";
	struct tgt_config_target one;
	bool have_one = false;
	int o, r = 0;

	memset(&one, 0, sizeof(one));
	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = 4;
	optind = 1;
	while ((o = getopt_long(argc, argv, "fvqh", long_opts, NULL)) != -1) {
		switch (o) {
		case OPT_IQN:
			snprintf(one.t.iqn, sizeof(one.t.iqn), "%s", optarg);
			have_one = true;
			break;
		case OPT_PORTAL:
			r = tgt_config_portal(&one, optarg, err, sizeof(err));
			have_one = true;
			break;
		case OPT_LUN:
			r = tgt_config_lun(&one, optarg, err, sizeof(err));
			have_one = true;
			break;
		case OPT_CHAP:
		case OPT_MUTUAL:
			if (o == OPT_CHAP ? one.t.chap_on : one.t.mutual_on) {
				/* the first would be ignored */
				snprintf(err, sizeof(err), "--%s given twice (one USER:SECRET per target)",
					 o == OPT_CHAP ? "chap" : "mutual-chap");
				r = -EINVAL;
				break;
			}
			r = tgt_config_chap(o == OPT_CHAP ? &one.t.chap : &one.t.mutual, optarg, err,
					    sizeof(err));
			*(o == OPT_CHAP ? &one.t.chap_on : &one.t.mutual_on) = true;
			have_one = true;
			break;
		case OPT_ALLOW:
			r = tgt_config_allow(&one, optarg, err, sizeof(err));
			have_one = true;
			break;
		case OPT_TPG:
			r = tgt_config_tpg(&one, optarg, err, sizeof(err));
			have_one = true;
			break;
		case OPT_WORKERS:
			r = tgt_config_workers(cfg, "--workers", optarg, err, sizeof(err));
			break;
		case OPT_CONFIG:
			snprintf(config_path, sizeof(config_path), "%s", optarg);
			break;
		case OPT_PIDFILE:
			snprintf(cfg->pidfile, sizeof(cfg->pidfile), "%s", optarg);
			break;
		case OPT_TCP_CC:
			r = tgt_config_tcp_cc(cfg, optarg, err, sizeof(err));
			break;
		case 'f':
			foreground = true;
			break;
		case 'v':
			tgt_verbose++;
			break;
		case 'q':
			tgt_verbose = 0;
			break;
		case 'h':
			main_usage(stdout);
			exit(0);
		default:
			main_usage(stderr);
			return -EINVAL;
		}
		if (r < 0) {
			break;
		}
	}
	if (r == 0 && optind < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s'", argv[optind]);
		r = -EINVAL;
	}
	if (r == 0 && config_path[0]) {
		r = tgt_config_parse_file(cfg, config_path, err, sizeof(err));
	}
	if (r == 0 && have_one) {
		r = tgt_config_add_target(cfg, one.t.iqn);
		if (r == 0) {
			cfg->targets[cfg->ntargets - 1] = one;
		}
	}
	if (r == 0) {
		r = tgt_config_check(cfg, err, sizeof(err));
	}
	if (r == 0) {
		int e = server_tcp_cc_check(cfg->tcp_cc);
		if (e < 0) {
			snprintf(err, sizeof(err), "TCP congestion control '%s': %s", cfg->tcp_cc,
				 e == -ENOENT	? "not available in this kernel"
				 : e == -EPERM ? "not permitted (net.ipv4.tcp_allowed_congestion_control)"
						: strerror(-e));
			r = -EINVAL;
		}
	}
	if (r == 0 && cfg->pidfile[0] && cfg->pidfile[0] != '/' && start_cwd) {
		/* the daemon works in /: a relative pidfile is the starting folder's */
		char rel[sizeof(cfg->pidfile)];
		snprintf(rel, sizeof(rel), "%s", cfg->pidfile);
		if ((size_t)snprintf(cfg->pidfile, sizeof(cfg->pidfile), "%s/%s", start_cwd, rel) >=
		    sizeof(cfg->pidfile)) {
			snprintf(err, sizeof(err), "pidfile path too long");
			r = -EINVAL;
		}
	}
	if (r < 0) {
		tgt_err("%s", err[0] ? err : strerror(-r));
		tgt_config_free(cfg);
	}
	return r;
}

static struct tgt_lun *
main_find_lun(const struct tgt_lun_spec *s)
{
	struct tgt_target *t;
	TAILQ_FOREACH(t, server_targets(), link)
	{
		for (int i = 0; i < t->nluns; i++) {
			struct tgt_lun *lu = t->luns[i].lu;
			struct stat st, ost;
			/* still the same file: a file put in its place, or a file
			 * system mounted there again (the old one's fd fails), is a
			 * new LUN */
			if (lu && !strcmp(lu->path, s->path) && lu->ro == s->ro &&
			    stat(s->path, &st) == 0 && fstat(lu->fd, &ost) == 0 &&
			    st.st_dev == ost.st_dev && st.st_ino == ost.st_ino &&
			    (512u << lu->pb_exp) == s->pbsize &&
			    (s->serial[0] ? lu->serial_set && !strcmp(lu->serial, s->serial)
					  : !lu->serial_set)) {
				return lu;
			}
		}
	}
	return NULL;
}

/* Open every LUN of cfg and apply it to the running server; 0 or -errno. */
/* The last main_apply_config failed on a LUN file (missing, a directory...). */
static bool lun_open_failed;

static int
main_apply_config(struct tgt_config *cfg, bool initial)
{
	struct tgt_target *staged[cfg->ntargets];
	int r = 0, mark = server_portal_mark();

	memset(staged, 0, sizeof(staged));
	for (int i = 0; i < cfg->ntargets; i++) {
		struct tgt_config_target *ct = &cfg->targets[i];
		struct tgt_target *nt = calloc(1, sizeof(*nt));
		if (!nt) {
			r = -ENOMEM;
			goto fail;
		}
		staged[i] = nt;
		*nt = ct->t;
		nt->nluns = 0;
		for (int j = 0; j < ct->nspecs; j++) {
			struct tgt_lun_spec *s = &ct->specs[j];
			struct tgt_lun *lu = main_find_lun(s);
			if (lu) {
				tgt_lun_get(lu);
				if (!initial && tgt_lun_update_size(lu)) {
					tgt_lun_mark_resized(lu); /* grown or shrunk meanwhile */
				}
			} else {
				lu = tgt_lun_open(s->path, s->ro, s->serial, s->pbsize);
				if (!lu) {
					r = -errno;
					lun_open_failed = true;
					tgt_err("cannot open LUN %llu of %s: %s: %s%s",
						(unsigned long long)s->lun, nt->iqn, s->path,
						r == -EINVAL ? "not a regular file or block device, "
							       "or empty"
							     : strerror(-r),
						(r == -EROFS || r == -EACCES) && !s->ro
							? " (add ,ro to export it read-only)"
							: "");
					goto fail;
				}
			}
			nt->luns[nt->nluns].lun = s->lun;
			nt->luns[nt->nluns].lu = lu;
			nt->nluns++;
		}
		for (int p = 0; p < nt->nportals; p++) {
			r = server_add_portal(nt->portals[p].host, nt->portals[p].port);
			if (r < 0) {
				tgt_err("cannot listen on %s:%d: %s", nt->portals[p].host,
					nt->portals[p].port, strerror(-r));
				goto fail;
			}
		}
	}
	/* commit: update targets in place so sessions keep their pointer */
	struct tgt_target *t;
	TAILQ_FOREACH(t, server_targets(), link)
	{
		bool keep = false;
		for (int i = 0; i < cfg->ntargets; i++) {
			keep |= !t->removed && !strcmp(t->iqn, staged[i]->iqn);
		}
		if (!keep && !t->removed) {
			t->removed = true;
			tgt_info("target %s removed", t->iqn);
		}
	}
	for (int i = 0; i < cfg->ntargets; i++) {
		struct tgt_target *old = server_find_target(staged[i]->iqn);
		if (old) {
			struct tgt_lun_map oldluns[TGT_MAX_LUNS];
			int n = old->nluns;
			memcpy(oldluns, old->luns, sizeof(oldluns[0]) * (size_t)n);
			/* the same LUN numbers on the same objects, in any order? */
			bool changed = n != staged[i]->nluns;
			for (int j = 0; j < n && !changed; j++) {
				bool same = false;
				for (int m = 0; m < staged[i]->nluns; m++) {
					same |= staged[i]->luns[m].lun == oldluns[j].lun &&
						staged[i]->luns[m].lu == oldluns[j].lu;
				}
				changed = !same;
			}
			struct tgt_target *next = TAILQ_NEXT(old, link);
			struct tgt_target **prevp = old->link.tqe_prev;
			*old = *staged[i];
			old->link.tqe_next = next;
			old->link.tqe_prev = prevp;
			for (int j = 0; j < n; j++) {
				tgt_lun_put(oldluns[j].lu);
			}
			free(staged[i]);
			if (changed && !initial) {
				tgt_info("target %s: LUNs changed", old->iqn);
				server_luns_changed(old);
			}
		} else {
			TAILQ_INSERT_TAIL(server_targets(), staged[i], link);
			if (!initial) {
				tgt_info("target %s added", staged[i]->iqn);
			}
		}
		staged[i] = NULL;
	}
	server_set_tcp_cc(cfg->tcp_cc);
	server_revalidate_sessions();
	return 0;
fail:
	for (int i = 0; i < cfg->ntargets; i++) {
		if (staged[i]) {
			for (int j = 0; j < staged[i]->nluns; j++) {
				tgt_lun_put(staged[i]->luns[j].lu);
			}
			free(staged[i]);
		}
	}
	server_close_portals_since(mark); /* a failed reload listens on nothing new */
	return r;
}

/*
 * Remove the pidfile only while it is still ours: a regular file holding our
 * PID (never /dev/null, nor a file a second daemon has rewritten since).
 */
static void
main_remove_pidfile(const char *path)
{
	struct stat st;
	char buf[32] = "";

	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		return;
	}
	FILE *f = fopen(path, "re");
	if (!f) {
		return;
	}
	bool ours = fgets(buf, sizeof(buf), f) && atoi(buf) == (int)getpid();
	fclose(f);
	if (ours) {
		unlink(path);
	}
}

void main_handle_signal(int sig);

void
main_handle_signal(int sig)
{
	if (sig == SIGHUP) {
		struct tgt_config cfg;
		tgt_info("SIGHUP: reloading the configuration");
		if (start_cwd && chdir(start_cwd) < 0) {
			tgt_err("%s: %s (relative paths cannot be found)", start_cwd, strerror(errno));
		}
		int pr = main_parse_args(saved_argc, saved_argv, &cfg);
		if (pr < 0) {
			tgt_err("reload failed: keeping the running configuration");
		} else if (main_apply_config(&cfg, false) < 0) {
			tgt_err("reload failed: keeping the running configuration");
		} else if (running_cfg && (running_cfg->workers != cfg.workers ||
					   strcmp(running_cfg->pidfile, cfg.pidfile))) {
			/* said, not silently ignored: these are read once, at the start */
			tgt_info("warning: %s changed: it takes effect at the next start, not on "
				 "SIGHUP",
				 running_cfg->workers != cfg.workers ? "workers" : "pidfile");
		}
		if (pr == 0) {
			tgt_config_free(&cfg);
		}
		if (!foreground && chdir("/") < 0) {
			tgt_err("/: %s", strerror(errno));
		}
		return;
	}
	tgt_info("signal %d: logging sessions out and stopping", sig);
	server_request_stop();
}

int
main(int argc, char **argv)
{
	struct tgt_config cfg;
	int status = 0;

	/* I/O buffers of up to 8 MiB come and go with every command: keep them on
	 * the heap instead of a fresh mmap (and its page faults) each time */
	mallopt(M_MMAP_THRESHOLD, 16 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
	mallopt(M_ARENA_MAX, 2); /* workers share arenas: bounded RSS */
	saved_argc = argc;
	saved_argv = argv;
	signal(SIGPIPE, SIG_IGN);
	start_cwd = getcwd(NULL, 0);
	if (main_parse_args(argc, argv, &cfg) < 0) {
		free(start_cwd);
		return 2;
	}
	running_cfg = &cfg;
	if (server_init() < 0) {
		tgt_err("epoll: %s", strerror(errno));
		return 1;
	}
	if (main_apply_config(&cfg, true) < 0) {
		tgt_config_free(&cfg);
		return lun_open_failed ? 2 : 1;	/* a bad LUN file is a usage error */
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) { /* works in /: see start_cwd */
			tgt_err("daemon: %s", strerror(errno));
			return 1;
		}
		use_syslog = true;
		openlog("vdisk-target", LOG_PID, LOG_DAEMON);
	}
	if (cfg.pidfile[0]) {
		FILE *f = fopen(cfg.pidfile, "we");
		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
			tgt_err("cannot write the pidfile %s: %s", cfg.pidfile, strerror(errno));
			cfg.pidfile[0] = 0;
			status = 1;
		}
	}
	if (status) {
		goto out;
	}
	/* workers start after daemon() (threads do not survive fork) and with the
	 * signals blocked, so that only the loop's signalfd sees them */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int r = workq_start(cfg.workers);
	if (r < 0) {
		tgt_err("cannot start workers: %s", strerror(-r));
		return 1;
	}
	struct tgt_target *t;
	TAILQ_FOREACH(t, server_targets(), link)
	{
		tgt_info("serving %s: %d LUN(s) on %d portal(s)", t->iqn, t->nluns, t->nportals);
	}
	server_run();
out:
	server_close_portals();
	while ((t = TAILQ_FIRST(server_targets()))) {
		TAILQ_REMOVE(server_targets(), t, link);
		for (int i = 0; i < t->nluns; i++) {
			tgt_lun_put(t->luns[i].lu);
		}
		free(t);
	}
	if (cfg.pidfile[0]) {
		main_remove_pidfile(cfg.pidfile);
	}
	tgt_config_free(&cfg);
	free(start_cwd);
	start_cwd = NULL;
	tgt_info("stopped");
	return status;
}
