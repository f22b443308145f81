/* engine.h: the Lua state that runs the rules: embedded runtime, rule
 * loading, the one safe-call helper, budgets, dispatch and timers. */
#ifndef PW_ENGINE_H
#define PW_ENGINE_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

struct pw_sink;
struct pw_ptable;
struct pw_ctx;
struct pw_deny_req;
struct pw_dprog;
struct lua_State;

#define PW_INSN_BUDGET 10000000L       /* VM instructions per call into user code */
#define PW_TIME_BUDGET_MS 250          /* wall-clock per call into user code */
#define PW_MEM_CAP (128u << 20)        /* bytes for the whole Lua state */

struct pw_engine_stats {
	uint64_t dispatched[PW_EV__COUNT]; /* events that became Lua tables */
	uint64_t calls;                    /* calls into user code */
	uint64_t errors;                   /* of which raised an error */
	uint64_t budget_exceeded;          /* of which hit the instruction or time budget */
	uint64_t mem_refused;              /* allocations refused by the memory cap */
	uint64_t suspended;                /* handlers suspended after repeated failures */
};

struct pw_engine_config {
	struct ev_loop *loop;
	struct pw_sink *sink;
	struct pw_ptable *ptable; /* process table behind parent/proc() (may be NULL) */
	/* Pushes a table of daemon counters for stats() (may be NULL). */
	void (*push_stats)(void *ctx, struct lua_State *L);
	void *stats_ctx;
};

struct pw_engine;

struct pw_engine *engine_new(const struct pw_engine_config *cfg, char *err, size_t errlen);
/* Load rule files (nfiles == 0: the embedded default policy). 0, or -1
 * with "file:line: message" in err. */
int engine_load(struct pw_engine *e, char *const *files, int nfiles, char *err, size_t errlen);
/* Start the timers the rules asked for (after a successful load). */
void engine_start(struct pw_engine *e);
/* Hand ev to the handlers of its type; ctx (may be NULL) is the process as it
 * was at the event. predecided: an exec the deny rules decided before it ran
 * (their kill after exec is skipped). */
void engine_dispatch(struct pw_engine *e, const struct pw_event *ev, const struct pw_ctx *ctx, bool predecided);
/* The hot path: fast rules (effects on exe/argv alone) on an exec event,
 * before the rest of the batch. Their outputs follow in engine_dispatch. */
void engine_dispatch_fast(struct pw_engine *e, const struct pw_event *ev, const struct pw_ctx *ctx, bool predecided);
bool engine_has_fast(const struct pw_engine *e);
/* The hottest path, right after an exec's process is pinned (its batch
 * pidfd): the fast rules that only signal, on plain exe/pid matchers
 * (rules.lua r.prekill), are decided in C on readlink /proc/PID/exe alone
 * and their signal sent through the pidfd, before any other /proc read and
 * before any Lua runs; the rule's own kill in engine_dispatch_fast then
 * reports that result. Nothing in a dry run or under protect{}. True when
 * a signal was sent. */
bool engine_prekill(struct pw_engine *e, const struct pw_event *ev);
/* Feed one recorded JSON line through the same handlers. 0, or -1 with the
 * reason in err (bad line). */
int engine_replay_line(struct pw_engine *e, const char *line, size_t len, char *err, size_t errlen);
/* Pre-exec decisions (deny.c callbacks, loop thread): run the decision rules
 * on a request; then, once answered, the deciding rule's outputs. */
void engine_decide(struct pw_engine *e, struct pw_deny_req *req);
void engine_deny_done(struct pw_engine *e, const struct pw_deny_req *req, bool late);
bool engine_has_deny(const struct pw_engine *e);
/* The decision rules compiled for the responder thread (decision.h), a new
 * reference; NULL (logged) when they cannot be. */
struct pw_dprog *engine_decision_program(struct pw_engine *e);
bool engine_deny_needs_sha256(const struct pw_engine *e);
/* Actions log what they would do instead of doing it. */
void engine_set_dry_run(struct pw_engine *e, bool dry_run);
bool engine_wants(const struct pw_engine *e, enum pw_event_type t);
/* Kernel subscription bits for the types handlers want. */
uint32_t engine_mask(const struct pw_engine *e);
void engine_print_summary(struct pw_engine *e, FILE *out);
/* Per-rule and per-handler firings and failures (--stats). */
void engine_print_rule_stats(struct pw_engine *e, FILE *out);
const struct pw_engine_stats *engine_stats(const struct pw_engine *e);
void engine_free(struct pw_engine *e);

#endif
