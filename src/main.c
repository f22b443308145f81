/* main.c: the command line, start-up and shutdown, the libev loop that ties
 * the netlink socket to the engine, signals, and the counters (--stats). */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <limits.h>
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "clock.h"
#include "core.h"
#include "deny.h"
#include "api.h"
#include "dump.h"
#include "engine.h"
#include "hash.h"
#include "worker.h"
#include "identity.h"
#include "log.h"
#include "netlink.h"
#include "ptable.h"
#include "replay.h"
#include "sink.h"

#ifndef PW_VERSION
#define PW_VERSION "0.1"
#endif

#define BATCHES_PER_WAKEUP 8 /* bounded work per wake-up: timers and signals are never starved */
#define DEFAULT_RCVBUF (8 << 20)

struct options {
	bool check, dump, stats, dry_run, live_actions, insecure_rules, deny_fail_closed;
	int deny_timeout_ms;
	int realtime; /* SCHED_FIFO priority, 0 = off */
	const char *record, *replay;
	enum pw_format dump_fmt, out_fmt;
	bool out_fmt_set;
	long long max_events;
	double duration;
	int rcvbuf;
	const char *logs[8];
	int nlogs;
	char **rules;
	int nrules;
};

struct daemon {
	struct options opt;
	struct ev_loop *loop;
	struct pw_netlink nl;
	bool nl_open;
	struct pw_engine *engine;
	struct pw_sink *sink;
	struct pw_ptable *ptable;
	struct pw_deny *deny;
	struct pw_deny_stats deny_final; /* counters of the last responder stopped */
	bool deny_warned, deny_ran;
	uint64_t predecided; /* exec events the responder had decided before they ran */
	bool resync_pending;
	ev_timer resync;
	int64_t wall_offset_ns;
	uint64_t seen;
	uint64_t by_type[PW_EV__COUNT];
	uint64_t reloads, reload_failures;
	int exit_code;
	bool stopping;
	FILE *record;
	uint64_t recorded, record_failures;
	uint64_t replayed, replay_bad;
	ev_io io;
	ev_signal sig_int, sig_term, sig_hup, sig_usr1;
	ev_timer duration;
};

/* One wake-up's events, handled as one batch (so an exec followed by another
 * exec of the same process within it is recognised as stale). */
#define WAKEUP_CAP (BATCHES_PER_WAKEUP * PW_NL_EVENT_CAP)
static struct pw_event batch[WAKEUP_CAP];
static struct pw_ctx batch_ctx[WAKEUP_CAP];
static int batch_pidfd[WAKEUP_CAP];
static bool batch_stale[WAKEUP_CAP];
static bool batch_predecided[WAKEUP_CAP]; /* execs deny decided before they ran */

/* ---- counters ---------------------------------------------------------- */

struct counter {
	const char *name;
	uint64_t value;
};

/* The daemon's counters, in print order; returns how many. */
static int collect_counters(const struct daemon *d, struct counter *c, int cap)
{
	int n = 0;
#define C(k, v) do { if (n < cap) { c[n].name = (k); c[n].value = (uint64_t)(v); n++; } } while (0)
	const struct pw_netlink_stats *ns = &d->nl.st;
	uint64_t parse_errors = 0;
	for (int i = 0; i < PW_PARSE__COUNT; i++)
		parse_errors += ns->parse_errors[i];
	C("received", ns->datagrams);
	C("parsed", ns->events);
	C("dropped", ns->forged + ns->truncated + ns->excess + parse_errors);
	C("dropped_forged", ns->forged);
	C("dropped_truncated", ns->truncated);
	C("dropped_excess", ns->excess);
	C("dropped_parse_error", parse_errors);
	for (int i = 0; i < PW_PARSE__COUNT; i++)
		if (ns->parse_errors[i]) {
			static char names[PW_PARSE__COUNT][48];
			snprintf(names[i], sizeof names[i], "parse_error_%s", pw_parse_status_name(i));
			C(names[i], ns->parse_errors[i]);
		}
	C("acks", ns->acks);
	C("enobufs", ns->enobufs);
	C("lost_by_sequence", ns->seq_lost);
	for (int t = PW_EV_FORK; t < PW_EV__COUNT; t++) {
		static char names[PW_EV__COUNT][32];
		snprintf(names[t], sizeof names[t], "events_%s", pw_event_type_name(t));
		C(names[t], d->by_type[t]);
	}
	if (d->engine) {
		const struct pw_engine_stats *es = engine_stats(d->engine);
		uint64_t tables = 0;
		for (int t = 0; t < PW_EV__COUNT; t++)
			tables += es->dispatched[t];
		C("lua_events", tables);
		C("handler_calls", es->calls);
		C("handler_errors", es->errors);
		C("budget_exceeded", es->budget_exceeded);
		C("lua_alloc_refused", es->mem_refused);
		C("handlers_suspended", es->suspended);
	}
	if (d->ptable) {
		const struct pw_ptable_stats *ps = ptable_stats(d->ptable);
		C("processes", ps->entries);
		C("process_table_full", ps->full);
		C("exec_captures", ps->captures);
		C("exec_capture_gone", ps->capture_failed);
		C("argv_trimmed", ps->image_trimmed);
		C("proc_scans", ps->scans);
	}
	if (d->deny || d->deny_ran) {
		const struct pw_deny_stats *ds = d->deny ? deny_stats(d->deny) : &d->deny_final;
		C("deny_requests", ds->requests);
		C("deny_decisions", ds->decisions);
		C("deny_fast_decisions", ds->fast);
		C("deny_denied", ds->denied);
		C("deny_timeouts", ds->timeouts);
		C("deny_hash_late", ds->hash_late);
		C("deny_own_execs", ds->own);
		C("deny_filesystems", ds->filesystems);
		C("deny_mark_failures", ds->mark_failures);
		C("deny_mark_hidden", ds->mark_hidden);
		C("deny_mark_skipped_below_fuse", ds->mark_skipped);
		C("deny_fuse_groups", ds->fuse_groups);
		C("deny_fuse_refused", ds->fuse_refused);
		C("deny_fuse_requests", ds->fuse_requests);
		C("deny_fuse_defaulted", ds->fuse_defaulted);
		C("deny_namespaces", ds->namespaces);
		C("deny_namespace_limit", ds->ns_limit);
		C("deny_namespace_scans_at_exec", ds->ns_scans_at_exec);
		C("deny_rule_errors", ds->rule_errors);
		C("deny_outputs_dropped", ds->outputs_dropped);
		C("deny_exec_events_predecided", d->predecided);
	}
	{
		const struct pw_hash_stats *hs = hash_stats();
		C("sha256_computed", hs->computed);
		C("sha256_cache_hits", hs->cache_hits);
		C("sha256_late", hs->late);
		C("sha256_refused", hs->refused);
		C("sha256_unread_served", hs->unread_served);
		C("sha256_not_cached", hs->not_cached);
		C("sha256_evictions", hs->evictions);
		C("sha256_background", hs->background);
		C("sha256_background_refused", hs->background_refused);
		C("sha256_failures", hs->failures);
		const struct pw_worker_stats *wk = worker_stats();
		C("worker_calls", wk->calls);
		C("worker_timeouts", wk->timeouts);
		C("worker_refused", wk->refused);
		C("worker_abandoned", wk->abandoned);
		C("worker_recovered", wk->recovered);
		C("worker_busy", wk->busy);
		C("worker_spawn_failures", wk->spawn_failures);
		C("worker_handover_failures", wk->handover_failures);
		const struct pw_api_stats *as = api_stats();
		C("signals_sent", as->signals_sent);
		C("signals_hot_path", as->signals_hot_path);
		C("signals_unreported", as->signals_unreported);
		C("signals_refused", as->signals_refused);
		C("signals_failed", as->signals_failed);
		C("execs_started", as->execs_started);
		C("execs_queued", as->execs_queued);
		C("execs_refused", as->execs_refused);
		C("exec_timeouts", as->exec_timeouts);
		C("exec_failed", as->exec_failed);
	}
	if (d->opt.record) {
		C("recorded", d->recorded);
		C("record_failures", d->record_failures);
	}
	if (d->opt.replay) {
		C("replayed", d->replayed);
		C("replay_bad_lines", d->replay_bad);
	}
	C("reloads", d->reloads);
	C("reload_failures", d->reload_failures);
	if (d->sink) {
		C("output_lines", sink_stats(d->sink)->lines);
		C("output_failures", sink_stats(d->sink)->failures);
		C("output_cut", sink_stats(d->sink)->cut);
	}
#undef C
	return n;
}

static void print_stats(const struct daemon *d)
{
	struct counter c[160];
	int n = collect_counters(d, c, 160);
	fprintf(stderr, "procwarden stats:\n");
	for (int i = 0; i < n; i++)
		fprintf(stderr, "  %-22s %llu\n", c[i].name, (unsigned long long)c[i].value);
	if (d->engine) {
		fprintf(stderr, "procwarden rules:\n");
		engine_print_rule_stats(d->engine, stderr);
	}
}

/* stats() in Lua: the same counters as a table. Stack: [-0, +1] */
static void push_stats(void *ctx, lua_State *L)
{
	struct counter c[160];
	int n = collect_counters(ctx, c, 160);
	lua_createtable(L, 0, n);
	for (int i = 0; i < n; i++) {
		lua_pushinteger(L, (lua_Integer)c[i].value);
		lua_setfield(L, -2, c[i].name);
	}
}

/* ---- the pipeline ------------------------------------------------------ */

static void stop(struct daemon *d)
{
	d->stopping = true;
	ev_break(d->loop, EVBREAK_ALL);
}

static void resync_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* At most one line every 10 s, with what was lost since the last one. */
static void report_overflow(struct daemon *d, uint64_t lost)
{
	static time_t last;
	static uint64_t overflows, pending_lost;
	overflows++;
	pending_lost += lost;
	time_t now = time(NULL);
	if (now - last < 10)
		return;
	pw_log(PW_LOG_WARNING, "the kernel dropped events (receive buffer full): %llu overflow%s, at least %llu "
			       "events lost since the last report; raise --rcvbuf", (unsigned long long)overflows,
	       overflows == 1 ? "" : "s", (unsigned long long)pending_lost);
	last = now;
	overflows = pending_lost = 0;
}

/* A batch of events, in three passes: (1) the process table takes every
 * event in arrival order and exec contexts are captured from /proc at once,
 * before any rule runs, each event keeping a snapshot of its process; (2)
 * the rules see the events; (3) exited processes leave the table. */
/* Does this event count for --max-events: did a rule, --dump or --record
 * take it? (The process table's own events do not count.) */
static bool counted(const struct daemon *d, const struct pw_event *ev)
{
	return d->opt.dump || d->record || engine_wants(d->engine, ev->type);
}

static void deliver(void *arg, struct pw_event *evs, int n)
{
	struct daemon *d = arg;
	if (d->opt.max_events) { /* cut the batch after the last event that counts */
		uint64_t left = (uint64_t)d->opt.max_events - d->seen;
		int i = 0;
		for (; i < n && left > 0; i++)
			left -= counted(d, &evs[i]);
		n = i;
	}
	bool overflow = false;
	bool all_ctx = d->record || d->opt.dump;
	bool pin = engine_wants(d->engine, PW_EV_EXEC);
	for (int i = 0; i < n; i++) {
		bool wanted = all_ctx || engine_wants(d->engine, evs[i].type);
		/* An exec followed in this batch by another exec of the same
		 * process, or by the fork of a process or thread with its pid (it
		 * exited and the pid was reused): /proc shows a later program, so
		 * the earlier one is unknown, never the later one's; a reused pid
		 * is not even pinned (the pin would be the other process). */
		bool stale = false, reused = false;
		if (evs[i].type == PW_EV_EXEC)
			for (int j = i + 1; j < n && !reused; j++) {
				stale |= evs[j].type == PW_EV_EXEC && evs[j].tgid == evs[i].tgid;
				reused = evs[j].type == PW_EV_FORK && evs[j].u.fork.child_pid == evs[i].tgid;
			}
		stale |= reused;
		batch_stale[i] = stale;
		if (pin && evs[i].type == PW_EV_EXEC && !reused) { /* pin the process before reading it */
			int fd = (int)syscall(SYS_pidfd_open, evs[i].tgid, 0);
			/* its start time once the table has it (api_pidfd_set_start) */
			if (fd >= 0 && api_pidfd_add(evs[i].tgid, fd, 0)) {
				batch_pidfd[i] = fd;
				if (!stale) /* a forbidden exe: its signal now, from C */
					engine_prekill(d->engine, &evs[i]);
			}
		}
		ptable_apply(d->ptable, &evs[i], wanted ? &batch_ctx[i] : NULL, stale);
		ptable_exe_hint(d->ptable, 0, ""); /* the hot path's exe serves this exec only */
		if (!wanted)
			batch_ctx[i].known = false, batch_ctx[i].img = NULL;
		if (batch_pidfd[i] >= 0)
			api_pidfd_set_start(evs[i].tgid, batch_ctx[i].known ? batch_ctx[i].start_time : 0);
		/* An exec the responder decided before it ran: the deny rules need
		 * not act again. One from a filesystem not marked yet: marked for
		 * next time. */
		batch_predecided[i] = d->deny && evs[i].type == PW_EV_EXEC &&
				      deny_exec_seen(d->deny, evs[i].tgid, batch_ctx[i].img ? batch_ctx[i].img->exe : NULL,
						     evs[i].ktime_ns, &batch_ctx[i].uncovered);
		d->predecided += batch_predecided[i];
		overflow |= evs[i].type == PW_EV_OVERFLOW;
	}
	if (engine_has_fast(d->engine)) /* the hot path: act on exe/argv at once */
		for (int i = 0; i < n; i++)
			engine_dispatch_fast(d->engine, &evs[i], &batch_ctx[i], batch_predecided[i]);
	for (int i = 0; i < n; i++)
		if (!batch_stale[i] && /* the rest belongs to the later exec; ids through the pin */
		    !ptable_complete(d->ptable, &evs[i], &batch_ctx[i], batch_pidfd[i]) && batch_pidfd[i] >= 0) {
			api_pidfd_forget(evs[i].tgid); /* the pin is a later process: no kill goes through it */
			batch_pidfd[i] = -1;
		}
	for (int i = 0; i < n; i++) {
		const struct pw_event *ev = &evs[i];
		d->seen += counted(d, ev);
		d->by_type[ev->type]++;
		if (ev->type == PW_EV_OVERFLOW)
			report_overflow(d, ev->u.overflow.lost);
		if (d->record) {
			if (record_write(d->record, ev, &batch_ctx[i], d->ptable, d->wall_offset_ns) == 0)
				d->recorded++;
			else
				d->record_failures++;
		}
		if (d->opt.dump && d->opt.dump_fmt == PW_FMT_JSON)
			record_write(stdout, ev, &batch_ctx[i], d->ptable, d->wall_offset_ns);
		else if (d->opt.dump)
			dump_event(stdout, ev, &batch_ctx[i], d->wall_offset_ns);
		engine_dispatch(d->engine, ev, &batch_ctx[i], batch_predecided[i]);
	}
	for (int i = 0; i < n; i++) {
		ptable_ctx_release(&batch_ctx[i]);
		ptable_retire(d->ptable, &evs[i]);
		batch_pidfd[i] = -1;
	}
	api_pidfds_clear(); /* closes the batch's pidfds */
	if (d->opt.dump)
		fflush(stdout);
	if (d->record)
		fflush(d->record);
	if (overflow && !d->resync_pending) { /* rebuild from /proc once the burst is read */
		d->resync_pending = true;
		ev_timer_init(&d->resync, resync_cb, 0.2, 0.);
		d->resync.data = d;
		ev_timer_start(d->loop, &d->resync);
	}
	if (d->opt.max_events && d->seen >= (uint64_t)d->opt.max_events)
		stop(d);
}

/* A process found by a /proc scan that the table did not know: the exec
 * rules judge it once, as an exec event with startup = true. */
static void scan_found(void *arg, const struct pw_proc *p, bool is_new)
{
	struct daemon *d = arg;
	if (!is_new || !(engine_wants(d->engine, PW_EV_EXEC) || d->record || d->opt.dump))
		return;
	struct pw_event ev;
	memset(&ev, 0, sizeof ev);
	ev.type = PW_EV_EXEC;
	ev.flags = PW_EVF_STARTUP;
	ev.pid = ev.tgid = p->tgid;
	ev.ktime_ns = pw_mono_ns();
	struct pw_ctx ctx;
	ptable_ctx_of(p, &ctx);
	if (d->record && record_write(d->record, &ev, &ctx, d->ptable, d->wall_offset_ns) == 0)
		d->recorded++;
	if (d->opt.dump && d->opt.dump_fmt == PW_FMT_JSON)
		record_write(stdout, &ev, &ctx, d->ptable, d->wall_offset_ns);
	else if (d->opt.dump)
		dump_event(stdout, &ev, &ctx, d->wall_offset_ns);
	engine_dispatch(d->engine, &ev, &ctx, false);
	ptable_ctx_release(&ctx);
}

static void resync_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	d->resync_pending = false;
	int n = ptable_scan(d->ptable, scan_found, d);
	if (n < 0)
		pw_log(PW_LOG_ERROR, "resync: scan /proc: %s", strerror(-n));
	else
		pw_log(PW_LOG_NOTICE, "process table rebuilt from /proc after an overflow (%d processes)", n);
}

static uint32_t wanted_mask(const struct daemon *d)
{
	/* What the rules use, plus what the process table lives on. */
	const uint32_t table = PW_PROC_EVENT_FORK | PW_PROC_EVENT_EXEC | PW_PROC_EVENT_EXIT |
			       PW_PROC_EVENT_COMM | PW_PROC_EVENT_UID | PW_PROC_EVENT_GID;
	return d->opt.dump ? PW_PROC_EVENT_ALL : engine_mask(d->engine) | table;
}

/* --realtime: after a wake-up, keep receiving for this long before going
 * back to sleep. A fork is followed by its exec within a few hundred µs; an
 * idle virtual CPU woken from halt takes about as long to run us again, and
 * a victim's exec would outrun that. */
#define RT_SPIN_NS 400000ull

static void netlink_cb(struct ev_loop *loop, ev_io *w, int revents);

static void netlink_spin(struct daemon *d)
{
	uint64_t until = pw_mono_ns() + RT_SPIN_NS; /* bounded: timers and signals wait no longer */
	while (!d->stopping && pw_mono_ns() < until)
		netlink_cb(d->loop, &d->io, 0);
}

static void netlink_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct daemon *d = w->data;
	int total = 0;
	for (int i = 0; i < BATCHES_PER_WAKEUP; i++) {
		uint64_t before = d->nl.st.datagrams;
		int n = netlink_recv_batch(&d->nl, batch + total, PW_NL_EVENT_CAP);
		if (n < 0) {
			pw_log(PW_LOG_ERROR, "netlink receive: %s", strerror(-n));
			d->exit_code = 1;
			stop(d);
			break;
		}
		total += n;
		if (d->nl.st.datagrams - before < PW_NL_BATCH)
			break; /* drained for now */
	}
	if (total > 0)
		deliver(d, batch, total);
	if (revents && d->opt.realtime)
		netlink_spin(d);
}

/* ---- signals ----------------------------------------------------------- */

static void sig_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	pw_log(PW_LOG_INFO, "signal %d: stopping", w->signum);
	stop(w->data);
}

/* A new engine with the rules files (each checked and read through one
 * open: identity.c), or NULL with the reason in err. The same on start,
 * --check and SIGHUP. */
static struct pw_engine *load_engine(struct daemon *d, char *err, size_t errlen)
{
	identity_rules_insecure(d->opt.insecure_rules);
	struct pw_engine_config cfg = {
		.loop = d->loop, .sink = d->sink, .ptable = d->ptable,
		.push_stats = push_stats, .stats_ctx = d,
	};
	struct pw_engine *e = engine_new(&cfg, err, errlen);
	if (!e)
		return NULL;
	if (engine_load(e, d->opt.rules, d->opt.nrules, err, errlen) < 0) {
		engine_free(e);
		return NULL;
	}
	engine_set_dry_run(e, d->opt.dry_run || (d->opt.replay && !d->opt.live_actions));
	return e;
}

/* ---- pre-exec decisions ------------------------------------------------ */

static void deny_decide_cb(void *ctx, struct pw_deny_req *req)
{
	struct daemon *d = ctx;
	engine_decide(d->engine, req);
}

static void deny_done_cb(void *ctx, const struct pw_deny_req *req, bool late)
{
	struct daemon *d = ctx;
	engine_deny_done(d->engine, req, late);
}

static void stop_deny(struct daemon *d)
{
	if (!d->deny)
		return;
	d->deny_final = *deny_stats(d->deny);
	d->deny_ran = true;
	deny_stop(d->deny); /* the kernel allows whatever still waits */
	d->deny = NULL;
}

/* Start (or adjust) fanotify for the engine's deny rules. Where it cannot
 * be had, say once why: those rules then act by kill after exec. */
static void deny_update(struct daemon *d)
{
	if (!engine_has_deny(d->engine)) {
		stop_deny(d); /* no decision rule: no mark at all */
		return;
	}
	if (d->deny) {
		deny_set_need_sha256(d->deny, engine_deny_needs_sha256(d->engine));
		deny_set_program(d->deny, engine_decision_program(d->engine));
		return;
	}
	struct pw_deny_config cfg = {
		.loop = d->loop, .timeout_ms = d->opt.deny_timeout_ms, .fail_closed = d->opt.deny_fail_closed,
		.dry_run = d->opt.dry_run, .need_sha256 = engine_deny_needs_sha256(d->engine),
		.decide = deny_decide_cb, .done = deny_done_cb, .ctx = d,
	};
	char err[512];
	d->deny = deny_start(&cfg, err, sizeof err);
	if (d->deny)
		deny_set_program(d->deny, engine_decision_program(d->engine));
	if (!d->deny && !d->deny_warned) {
		d->deny_warned = true;
		pw_log(PW_LOG_WARNING, "deny() is unavailable (%s): deny rules act by kill after exec instead, "
				       "which a fast binary can outrun", err);
	}
}

/* SIGHUP: build a new state, swap only on success; reopen log files. */
static void sig_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	char err[1024];
	sink_reopen(d->sink);
	struct pw_engine *e = load_engine(d, err, sizeof err);
	if (!e) {
		d->reload_failures++;
		pw_log(PW_LOG_ERROR, "reload failed, the old rules stay: %s", err);
		return;
	}
	engine_free(d->engine);
	d->engine = e;
	engine_start(e);
	d->reloads++;
	if (d->nl_open)
		deny_update(d); /* the decision rules swap with the state */
	if (d->nl_open && netlink_set_mask(&d->nl, wanted_mask(d)) < 0)
		pw_log(PW_LOG_ERROR, "reload: set event mask: %s", strerror(errno));
	pw_log(PW_LOG_NOTICE, "rules reloaded");
}

static void sig_usr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	print_stats(w->data);
}

static void duration_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	stop(w->data);
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: procwarden [OPTIONS] [RULES.lua ...]\n"
		"Watch process events from the kernel proc connector and run Lua rules on them.\n"
		"With no RULES, the embedded default policy runs (one line per exec).\n\n"
		"  -c, --check              load the rules, print a summary, exit (2 on error)\n"
		"  -d, --dump[=text|json]   print every event\n"
		"  -r, --replay FILE        read events from JSON lines (- = stdin); actions dry-run\n"
		"      --live-actions       with --replay: perform actions for real\n"
		"  -w, --record FILE        also write every event, with its process context, as JSON lines\n"
		"  -n, --dry-run            log actions, do not perform them\n"
		"      --insecure-rules     accept rules files others can write (development only)\n"
		"      --deny-timeout MS    deadline of a pre-exec decision (default 200)\n"
		"      --deny-fail-closed   a decision not made in time denies (default: allows)\n"
		"  -o, --output text|json   format of logs and alerts (default: text on a TTY, else json)\n"
		"      --log TARGET         stdout, stderr, syslog or a file; repeatable (default stdout)\n"
		"      --rcvbuf BYTES       netlink receive buffer (default 8 MiB)\n"
		"      --realtime[=PRIO]    SCHED_FIFO loop (default 10), memory locked, 0.4 ms busy-poll\n"
		"                           after each wake-up: fastest exec-to-kill\n"
		"      --max-events N       stop after N events\n"
		"      --duration SECONDS   stop after SECONDS\n"
		"      --stats              print counters at exit (and on SIGUSR1)\n"
		"  -v, --verbose            more diagnostics (repeatable)\n"
		"  -q, --quiet              errors only\n"
		"      --version            print the version\n"
		"  -h, --help               this text\n\n"
		"Signals: HUP reloads the rules, INT/TERM stop, USR1 prints counters.\n"
		"Exit status: 0 ok, 1 runtime failure (e.g. not root), 2 bad usage or bad rules.\n"
		"See procwarden(8) and procwarden-rules(5).\n");
}

static int parse_format(const char *s, enum pw_format *f)
{
	if (strcmp(s, "text") == 0)
		*f = PW_FMT_TEXT;
	else if (strcmp(s, "json") == 0)
		*f = PW_FMT_JSON;
	else
		return -1;
	return 0;
}

static int parse_number(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

enum { OPT_LOG = 256, OPT_RCVBUF, OPT_MAX_EVENTS, OPT_DURATION, OPT_STATS, OPT_VERSION,
       OPT_LIVE_ACTIONS, OPT_REALTIME, OPT_INSECURE_RULES, OPT_DENY_TIMEOUT, OPT_DENY_FAIL_CLOSED };

/* 0 ok, 1 exit 0 now (help/version), 2 usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"check", no_argument, 0, 'c'},
		{"dump", optional_argument, 0, 'd'},
		{"output", required_argument, 0, 'o'},
		{"replay", required_argument, 0, 'r'},
		{"record", required_argument, 0, 'w'},
		{"dry-run", no_argument, 0, 'n'},
		{"live-actions", no_argument, 0, OPT_LIVE_ACTIONS},
		{"realtime", optional_argument, 0, OPT_REALTIME},
		{"insecure-rules", no_argument, 0, OPT_INSECURE_RULES},
		{"deny-timeout", required_argument, 0, OPT_DENY_TIMEOUT},
		{"deny-fail-closed", no_argument, 0, OPT_DENY_FAIL_CLOSED},
		{"log", required_argument, 0, OPT_LOG},
		{"rcvbuf", required_argument, 0, OPT_RCVBUF},
		{"max-events", required_argument, 0, OPT_MAX_EVENTS},
		{"duration", required_argument, 0, OPT_DURATION},
		{"stats", no_argument, 0, OPT_STATS},
		{"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'},
		{"version", no_argument, 0, OPT_VERSION},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	memset(o, 0, sizeof *o);
	o->rcvbuf = DEFAULT_RCVBUF;
	o->deny_timeout_ms = PW_DENY_TIMEOUT_MS;
	int c;
	double v;
	while ((c = getopt_long(argc, argv, "cd::o:r:w:nvqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->check = true;
			break;
		case 'd':
			o->dump = true;
			if (optarg && parse_format(optarg, &o->dump_fmt) < 0) {
				fprintf(stderr, "procwarden: --dump: '%s' is not text or json\n", optarg);
				return 2;
			}
			break;
		case 'o':
			if (parse_format(optarg, &o->out_fmt) < 0) {
				fprintf(stderr, "procwarden: --output: '%s' is not text or json\n", optarg);
				return 2;
			}
			o->out_fmt_set = true;
			break;
		case 'r':
			o->replay = optarg;
			break;
		case 'w':
			o->record = optarg;
			break;
		case 'n':
			o->dry_run = true;
			break;
		case OPT_LIVE_ACTIONS:
			o->live_actions = true;
			break;
		case OPT_DENY_TIMEOUT:
			if (parse_number(optarg, 1, 10000, &v) < 0) {
				fprintf(stderr, "procwarden: --deny-timeout: '%s' is not a number of ms from 1 to 10000\n", optarg);
				return 2;
			}
			o->deny_timeout_ms = (int)v;
			break;
		case OPT_DENY_FAIL_CLOSED:
			o->deny_fail_closed = true;
			break;
		case OPT_INSECURE_RULES:
			o->insecure_rules = true;
			break;
		case OPT_REALTIME:
			o->realtime = 10;
			if (optarg) {
				if (parse_number(optarg, 1, 99, &v) < 0) {
					fprintf(stderr, "procwarden: --realtime: '%s' is not a priority from 1 to 99\n", optarg);
					return 2;
				}
				o->realtime = (int)v;
			}
			break;
		case OPT_LOG:
			if (o->nlogs == (int)(sizeof o->logs / sizeof o->logs[0])) {
				fprintf(stderr, "procwarden: --log: at most 8 targets\n");
				return 2;
			}
			o->logs[o->nlogs++] = optarg;
			break;
		case OPT_RCVBUF:
			if (parse_number(optarg, 4096, 1 << 30, &v) < 0) {
				fprintf(stderr, "procwarden: --rcvbuf: '%s' is not a size from 4096 to 1 GiB\n", optarg);
				return 2;
			}
			o->rcvbuf = (int)v;
			break;
		case OPT_MAX_EVENTS:
			if (parse_number(optarg, 1, 1e18, &v) < 0) {
				fprintf(stderr, "procwarden: --max-events: '%s' is not a positive number\n", optarg);
				return 2;
			}
			o->max_events = (long long)v;
			break;
		case OPT_DURATION:
			if (parse_number(optarg, 0.001, 1e9, &v) < 0) {
				fprintf(stderr, "procwarden: --duration: '%s' is not a positive number of seconds\n", optarg);
				return 2;
			}
			o->duration = v;
			break;
		case OPT_STATS:
			o->stats = true;
			break;
		case 'v':
			if (pw_log_threshold < PW_LOG_DEBUG)
				pw_log_threshold++;
			break;
		case 'q':
			pw_log_threshold = PW_LOG_ERROR;
			break;
		case OPT_VERSION:
			printf("procwarden %s (%s)\n", PW_VERSION, LUA_RELEASE);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'procwarden --help'.\n");
			return 2;
		}
	}
	o->rules = argv + optind;
	o->nrules = argc - optind;
	if (o->live_actions && !o->replay) {
		fprintf(stderr, "procwarden: --live-actions only applies to --replay\n");
		return 2;
	}
	if (!o->out_fmt_set)
		o->out_fmt = isatty(STDOUT_FILENO) ? PW_FMT_TEXT : PW_FMT_JSON;
	return 0;
}

/* Effective CAP_NET_ADMIN, asked of the kernel directly (no libcap). */
static bool have_net_admin(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) != 0)
		return true; /* cannot tell: let the kernel decide */
	return (data[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) != 0;
}

/* One replayed line (newline stripped). */
static void replay_one(struct daemon *d, const char *path, unsigned long lineno, char *line, size_t n,
		       bool too_long)
{
	char err[256];
	size_t skip = strspn(line, " \t\r");
	if (skip == n && !too_long)
		return; /* blank line */
	if (too_long || engine_replay_line(d->engine, line, n, err, sizeof err) < 0) {
		if (too_long)
			snprintf(err, sizeof err, "line longer than %u bytes", PW_REPLAY_MAX_LINE);
		if (++d->replay_bad <= 20)
			fprintf(stderr, "%s:%lu: bad event line: %s\n", path, lineno, err);
		else if (d->replay_bad == 21)
			fprintf(stderr, "%s: more bad lines: only counted from here\n", path);
		return;
	}
	d->replayed++;
	if (d->opt.max_events && d->replayed >= (uint64_t)d->opt.max_events)
		stop(d);
}

/* A pipe, FIFO or terminal: read it from the loop, so signals (HUP, TERM)
 * and timers are served while it waits for input. */
struct stream_reader {
	ev_io io;
	struct daemon *d;
	const char *path;
	char *buf;
	size_t len;
	bool skipping; /* inside a line that was too long */
	unsigned long lineno;
};

static void stream_lines(struct stream_reader *r, bool eof)
{
	size_t start = 0;
	for (size_t i = 0; i < r->len && !r->d->stopping; i++) {
		if (r->buf[i] != '\n')
			continue;
		r->buf[i] = 0;
		r->lineno++;
		replay_one(r->d, r->path, r->lineno, r->buf + start, i - start, r->skipping);
		r->skipping = false;
		start = i + 1;
	}
	memmove(r->buf, r->buf + start, r->len - start);
	r->len -= start;
	if (r->len > PW_REPLAY_MAX_LINE) { /* too long: drop what we have, flag the line */
		r->len = 0;
		r->skipping = true;
	}
	if (eof && (r->len > 0 || r->skipping) && !r->d->stopping) {
		r->buf[r->len] = 0;
		replay_one(r->d, r->path, ++r->lineno, r->buf, r->len, r->skipping);
		r->len = 0;
	}
}

static void stream_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream_reader *r = (struct stream_reader *)w;
	ssize_t n = read(w->fd, r->buf + r->len, PW_REPLAY_MAX_LINE + 1 - r->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0)
		fprintf(stderr, "procwarden: --replay %s: %s\n", r->path, strerror(errno));
	if (n > 0)
		r->len += (size_t)n;
	stream_lines(r, n <= 0);
	if (n <= 0 || r->d->stopping) {
		ev_io_stop(loop, w);
		stop(r->d);
	}
}

/* One line of at most cap-1 bytes into buf (newline stripped). Returns its
 * length, -1 at the end; *too_long when the line was longer (the rest is
 * skipped). */
static ssize_t read_line(FILE *in, char *buf, size_t cap, bool *too_long)
{
	*too_long = false;
	if (!fgets(buf, (int)cap, in))
		return -1;
	size_t n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n') {
		buf[--n] = 0;
		return (ssize_t)n;
	}
	if (feof(in))
		return (ssize_t)n;
	*too_long = true;
	int ch;
	while ((ch = getc(in)) != EOF && ch != '\n')
		;
	return (ssize_t)n;
}

/* --replay: recorded events through the same engine path. A regular file
 * is read straight through (timers and signals served every 1024 lines);
 * anything else from the loop. */
static int replay(struct daemon *d)
{
	const char *path = d->opt.replay;
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		fprintf(stderr, "procwarden: --replay %s: %s\n", path, strerror(errno));
		return 1;
	}
	char *buf = malloc(PW_REPLAY_MAX_LINE + 2);
	if (!buf) {
		fprintf(stderr, "procwarden: out of memory\n");
		return 1;
	}
	if (!S_ISREG(sb.st_mode)) {
		struct stream_reader r = {.d = d, .path = path, .buf = buf};
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		ev_io_init(&r.io, stream_cb, fd, EV_READ);
		ev_io_start(d->loop, &r.io);
		ev_run(d->loop, 0);
		ev_io_stop(d->loop, &r.io);
	} else {
		FILE *in = fdopen(fd, "r");
		if (!in) {
			fprintf(stderr, "procwarden: --replay %s: %s\n", path, strerror(errno));
			free(buf);
			return 1;
		}
		unsigned long lineno = 0;
		bool too_long;
		ssize_t n;
		while (!d->stopping && (n = read_line(in, buf, PW_REPLAY_MAX_LINE + 2, &too_long)) >= 0) {
			replay_one(d, path, ++lineno, buf, (size_t)n, too_long);
			if ((lineno & 1023) == 0)
				ev_run(d->loop, EVRUN_NOWAIT); /* timers and signals */
		}
		if (ferror(in))
			fprintf(stderr, "procwarden: --replay %s: %s\n", path, strerror(errno));
		if (fd != STDIN_FILENO)
			fclose(in);
	}
	free(buf);
	if (fd != STDIN_FILENO && !S_ISREG(sb.st_mode))
		close(fd);
	if (d->replay_bad)
		fprintf(stderr, "procwarden: %llu bad line%s in %s\n", (unsigned long long)d->replay_bad,
			d->replay_bad == 1 ? "" : "s", path);
	return 0;
}

/* --realtime: SCHED_FIFO for the loop (children started by exec() go back
 * to normal scheduling: SCHED_RESET_ON_FORK), all memory locked. */
static int go_realtime(int prio)
{
	struct sched_param sp = {.sched_priority = prio};
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0) {
		fprintf(stderr, "procwarden: --realtime: SCHED_FIFO priority %d: %s\n", prio, strerror(errno));
		return -1;
	}
	/* MCL_ONFAULT: lock what is used, not every page mapped (libraries) */
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
		fprintf(stderr, "procwarden: --realtime: mlockall: %s\n", strerror(errno));
		return -1;
	}
	pw_log(PW_LOG_INFO, "realtime: SCHED_FIFO priority %d, memory locked", prio);
	return 0;
}

static int run(struct daemon *d)
{
	char err[1024];
	if (!have_net_admin()) {
		fprintf(stderr, "procwarden: reading process events needs CAP_NET_ADMIN: run it as root (sudo procwarden)\n");
		return 1;
	}
	if (d->opt.realtime && go_realtime(d->opt.realtime) < 0)
		return 1;
	if (netlink_open(&d->nl, d->opt.rcvbuf, err, sizeof err) < 0) {
		fprintf(stderr, "procwarden: %s\n", err);
		return 1;
	}
	d->nl_open = true;
	const char *mode = getenv("PROCWARDEN_SUBSCRIBE");
	enum pw_subscribe_mode sub = mode && strcmp(mode, "legacy") == 0 ? PW_SUB_LEGACY : PW_SUB_AUTO;
	engine_start(d->engine);
	if (netlink_subscribe(&d->nl, wanted_mask(d), sub, deliver, d, err, sizeof err) < 0) {
		fprintf(stderr, "procwarden: %s\n", err);
		return 1;
	}
	pw_log(PW_LOG_INFO, "subscribed (%s, mask 0x%08x), receive buffer %d bytes",
	       d->nl.proc_input ? "proc_input" : "legacy op", d->nl.mask, d->opt.rcvbuf);
	/* After subscribing, so nothing falls between the scan and the events. */
	int found = ptable_scan(d->ptable, scan_found, d);
	if (found < 0)
		pw_log(PW_LOG_ERROR, "start-up scan of /proc: %s", strerror(-found));
	else
		pw_log(PW_LOG_INFO, "%d processes running at start", found);
	/* Last, just before the loop runs: from here every exec waits on us. */
	deny_update(d);

	ev_io_init(&d->io, netlink_cb, d->nl.fd, EV_READ);
	d->io.data = d;
	ev_io_start(d->loop, &d->io);
	if (d->opt.duration > 0) {
		ev_timer_init(&d->duration, duration_cb, d->opt.duration, 0.);
		d->duration.data = d;
		ev_timer_start(d->loop, &d->duration);
	}
	if (!(d->opt.max_events && d->seen >= (uint64_t)d->opt.max_events))
		ev_run(d->loop, 0);

	stop_deny(d);
	netlink_unsubscribe(&d->nl);
	return d->exit_code;
}

int main(int argc, char **argv)
{
	struct daemon d;
	memset(&d, 0, sizeof d);
	for (size_t i = 0; i < WAKEUP_CAP; i++)
		batch_pidfd[i] = -1;
	int r = parse_options(argc, argv, &d.opt);
	if (r)
		return r == 1 ? 0 : 2;
	signal(SIGPIPE, SIG_IGN);
	struct rlimit nofile; /* pidfds of an exec burst, /proc reads, outputs: use what we may */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
			pw_log(PW_LOG_INFO, "raising the open file limit: %s", strerror(errno));
	}

	d.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOENV);
	if (!d.loop) {
		fprintf(stderr, "procwarden: cannot start the event loop\n");
		return 1;
	}
	d.sink = sink_new(d.opt.out_fmt);
	if (!d.sink) {
		fprintf(stderr, "procwarden: out of memory\n");
		return 1;
	}
	for (int i = 0; i < d.opt.nlogs; i++)
		if (sink_add(d.sink, d.opt.logs[i]) < 0) {
			fprintf(stderr, "procwarden: --log %s: %s\n", d.opt.logs[i], strerror(errno));
			return 2;
		}
	if (d.opt.nlogs == 0 && sink_add(d.sink, "stdout") < 0)
		return 1;

	d.ptable = ptable_new(0);
	if (!d.ptable) {
		fprintf(stderr, "procwarden: out of memory\n");
		return 1;
	}
	char err[1024];
	d.engine = load_engine(&d, err, sizeof err);
	if (!d.engine) {
		fprintf(stderr, "%s\n", err);
		ptable_free(d.ptable);
		sink_free(d.sink);
		return 2;
	}
	if (d.opt.check) {
		printf("rules ok%s\n", d.opt.nrules ? ":" : ": (embedded default policy)");
		for (int i = 0; i < d.opt.nrules; i++)
			printf("  %s\n", d.opt.rules[i]);
		engine_print_summary(d.engine, stdout);
		engine_free(d.engine);
		ptable_free(d.ptable);
		sink_free(d.sink);
		return 0;
	}
	d.wall_offset_ns = pw_wall_offset_ns();

	struct { ev_signal *w; int sig; void (*cb)(struct ev_loop *, ev_signal *, int); } sigs[] = {
		{&d.sig_int, SIGINT, sig_stop_cb}, {&d.sig_term, SIGTERM, sig_stop_cb},
		{&d.sig_hup, SIGHUP, sig_hup_cb},  {&d.sig_usr1, SIGUSR1, sig_usr1_cb},
	};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		ev_signal_init(sigs[i].w, sigs[i].cb, sigs[i].sig);
		sigs[i].w->data = &d;
		ev_signal_start(d.loop, sigs[i].w);
	}

	if (d.opt.record) {
		d.record = strcmp(d.opt.record, "-") == 0 ? stdout : fopen(d.opt.record, "we");
		if (!d.record) {
			fprintf(stderr, "procwarden: --record %s: %s\n", d.opt.record, strerror(errno));
			return 2;
		}
	}
	if (d.opt.replay) {
		engine_start(d.engine);
		if (d.opt.duration > 0) {
			ev_timer_init(&d.duration, duration_cb, d.opt.duration, 0.);
			d.duration.data = &d;
			ev_timer_start(d.loop, &d.duration);
		}
		r = replay(&d);
	} else {
		r = run(&d);
	}
	if (d.record && d.record != stdout && fclose(d.record) != 0) {
		fprintf(stderr, "procwarden: --record %s: %s\n", d.opt.record, strerror(errno));
		r = r ? r : 1;
	}

	sink_flush(d.sink);
	fflush(stdout);
	if (d.opt.stats)
		print_stats(&d);
	engine_free(d.engine); /* before the table: event tables hold image references */
	d.engine = NULL;
	ptable_free(d.ptable);
	if (d.nl_open)
		netlink_close(&d.nl);
	sink_free(d.sink);
	return r;
}
