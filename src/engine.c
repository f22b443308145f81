/* engine.c: the Lua state that runs user rules. Owns the state (with a
 * memory cap), the embedded runtime modules, rule loading, the one safe-call
 * helper through which every call into user code goes (traceback, budget),
 * event dispatch to handler lists, rule timers, and the `procwarden.host`
 * module: the C functions the Lua runtime calls back. */
#include "engine.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <limits.h>
#include <lualib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "context.h"
#include "core.h"
#include "decision.h"
#include "deny.h"
#include "hash.h"
#include "embedded.h"
#include "identity.h"
#include "log.h"
#include "proc.h"
#include "ptable.h"
#include "replay.h"
#include "sink.h"

struct pw_timer {
	ev_timer w;
	struct pw_engine *e;
	int ref; /* registry ref of the runtime's timer entry { fn, name, seconds, again } */
	struct pw_timer *next;
};

/* Memory of one rules file: bytes its blocks take, allocations refused. */
struct pw_file_mem {
	size_t used;
	uint64_t refused;
};

struct pw_engine {
	lua_State *L;
	struct pw_engine_config cfg;
	int handlers_ref;  /* runtime.handlers */
	int fast_ref;      /* runtime.fast_handlers */
	int predecided_ref; /* runtime.predecided_handlers */
	int predecided_fast_ref; /* runtime.predecided_fast_handlers */
	struct pw_dprog *prekill; /* fast signal rules decided in C (engine_prekill) */
	int prekill_state;        /* 0 not built yet, 1 built, -1 off (protect{} at run time) */
	bool fast_exec;    /* some rule acts on exec at once (fast_handlers.exec) */
	bool has_deny;     /* some rule has deny() */
	bool deny_sha256;  /* some deny rule matches on sha256 */
	int runtime_ref;   /* the runtime module table */
	int event_mt_ref;  /* metatable of event stores (lazy fields) */
	int readonly_ref;  /* __newindex of event proxies */
	int pairs_ref;     /* __pairs of event proxies */
	int freeze_ref;    /* event.freeze: a recorded store's objects sealed, lists read-only */
	int traceback_ref; /* message handler of the safe call */
	int late_msg_ref;  /* the error of a call refused a large allocation past its time */
	bool wanted[PW_EV__COUNT];
	int64_t wall_offset_ns;
	size_t mem_used, mem_cap;
	uint32_t owner;          /* charged for allocations now: 0 the runtime, else a rules file */
	uint32_t nfiles;         /* rules files seen (owners 1..nfiles) */
	struct pw_file_mem *files; /* [0..nfiles]; [0] unused */
	/* budget of the call in progress */
	long insn_left;
	struct timespec deadline;
	bool over_budget;
	bool late_alloc; /* a large allocation was refused: the call was past its time */
	bool armed;              /* a call into user code is running */
	char budget_msg[320];
	const char *current; /* name of the handler being run, for log lines */
	struct pw_timer *timers;
	bool started;
	int fail;                /* FAIL_* of the last failed call */
	int entry_failed_ref;    /* runtime.entry_failed */
	int entry_ok_ref;        /* runtime.entry_ok */
	struct pw_engine_stats st;
};

/* ---- memory cap -------------------------------------------------------- */

/* Every block carries a header naming its owner: 0 the runtime, n the n-th
 * rules file (the one whose code was running when the block was made, see
 * host.file). A block stays charged to its owner until freed, realloc
 * included. The whole state stays under mem_cap, and each file under its
 * share of what the runtime's reserve leaves, so one file's growth (a cache
 * an attacker can feed) cannot starve another file or the runtime. */
struct mem_hdr {
	uint32_t owner;
};
#define MEM_ALIGN _Alignof(max_align_t)
#define MEM_HDR ((sizeof(struct mem_hdr) + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN)
#define MEM_RUNTIME_RESERVE (16u << 20) /* of the cap: never a file's */
#define MEM_MAX_FILES 4096u

static size_t file_share(const struct pw_engine *e)
{
	return e->nfiles ? (e->mem_cap - MEM_RUNTIME_RESERVE) / e->nfiles : e->mem_cap;
}

/* May owner's blocks grow by d bytes? Counts the refusal when not. */
static bool mem_allow(struct pw_engine *e, uint32_t owner, size_t d)
{
	bool ok = d <= e->mem_cap - e->mem_used;
	if (ok && owner > 0) {
		size_t share = file_share(e), used = e->files[owner].used;
		ok = used <= share && d <= share - used;
	}
	if (!ok) {
		e->st.mem_refused++;
		if (owner > 0)
			e->files[owner].refused++;
	}
	return ok;
}

static bool past(const struct timespec *t);

/* Sizes counted include the header: the cap bounds what malloc holds. A
 * call past its time gets no large block: building a huge string (.., a
 * concat, a gsub result) is then one allocation past its deadline at most. */
static void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct pw_engine *e = ud;
	struct mem_hdr *h = ptr ? (struct mem_hdr *)((char *)ptr - MEM_HDR) : NULL;
	size_t old = h ? osize + MEM_HDR : 0;
	uint32_t owner = h ? h->owner : e->owner;
	if (nsize == 0) {
		free(h);
		e->mem_used -= old;
		if (owner > 0)
			e->files[owner].used -= old;
		return NULL;
	}
	if (nsize > SIZE_MAX - MEM_HDR)
		return NULL;
	size_t new = nsize + MEM_HDR;
	if (nsize > osize && nsize >= (1u << 20) && e->armed && past(&e->deadline)) {
		e->late_alloc = true; /* said as the time it is (engine_call_as), counted as memory */
		e->st.mem_refused++;
		return NULL;
	}
	if (new > old && !mem_allow(e, owner, new - old))
		return NULL;
	struct mem_hdr *n = realloc(h, new);
	if (!n)
		return NULL;
	n->owner = owner;
	e->mem_used += new - old; /* modular: a shrink subtracts */
	if (owner > 0)
		e->files[owner].used += new - old;
	return (char *)n + MEM_HDR;
}

/* Charge allocations from now on to rules file id (0: the runtime).
 * engine_call charges the runtime until the running code says otherwise. */
static int set_owner(struct pw_engine *e, lua_Integer id)
{
	if (id < 0 || id > (lua_Integer)MEM_MAX_FILES)
		return -1;
	if ((uint32_t)id > e->nfiles) {
		struct pw_file_mem *f = realloc(e->files, ((size_t)id + 1) * sizeof *f);
		if (!f)
			return -1;
		memset(f + e->nfiles + 1, 0, ((size_t)id - e->nfiles) * sizeof *f);
		e->files = f;
		e->nfiles = (uint32_t)id;
	}
	e->owner = (uint32_t)id;
	return 0;
}

/* ---- budget ------------------------------------------------------------ */

#define HOOK_STEP 1000

static bool past(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Does this frame run the runtime's own code (an embedded module)? */
static bool runtime_frame(const lua_Debug *ar)
{
	return strncmp(ar->source, "@lua/procwarden/", 16) == 0;
}

/* Raise the budget error of the call in progress. The first time: count it,
 * keep raising at every instruction until the call has unwound (so a rule's
 * own pcall cannot swallow it) and name the position where the budget ran
 * out: the frame `level`, or (from C) the first frame of rule code. */
static int budget_raise(struct pw_engine *e, lua_State *L, int level, bool rule_frame)
{
	e->owner = 0; /* the message is the runtime's, even with the file over its share */
	if (!e->over_budget) {
		e->over_budget = true;
		e->st.budget_exceeded++;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
		lua_Debug ar;
		for (int l = level; rule_frame && l < level + 32 && lua_getstack(L, l, &ar); l++)
			if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0 && !runtime_frame(&ar)) {
				level = l;
				break;
			}
		luaL_where(L, level);
		snprintf(e->budget_msg, sizeof e->budget_msg, "%sbudget exceeded (%d instructions or %d ms per call)",
			 lua_tostring(L, -1), (int)PW_INSN_BUDGET, PW_TIME_BUDGET_MS);
		lua_pop(L, 1);
	}
	lua_pushstring(L, e->budget_msg);
	return lua_error(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
	struct pw_engine *e;
	lua_getallocf(L, (void **)&e);
	e->insn_left -= HOOK_STEP;
	if (!e->over_budget && e->insn_left > 0 && !past(&e->deadline))
		return;
	budget_raise(e, L, 0, false); /* in a hook, level 0 is the function that was running */
}

static void budget_arm(struct pw_engine *e)
{
	e->armed = true;
	e->insn_left = PW_INSN_BUDGET;
	e->over_budget = false;
	e->late_alloc = false;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &e->deadline);
	e->deadline.tv_nsec += (long)PW_TIME_BUDGET_MS * 1000000L;
	e->deadline.tv_sec += e->deadline.tv_nsec / 1000000000L;
	e->deadline.tv_nsec %= 1000000000L;
	lua_sethook(e->L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
}

static void budget_disarm(struct pw_engine *e)
{
	e->armed = false;
	lua_sethook(e->L, NULL, 0, 0);
}

/* ---- the safe call ----------------------------------------------------- */

static int traceback_handler(lua_State *L)
{
	struct pw_engine *e;
	lua_getallocf(L, (void **)&e);
	e->owner = 0; /* the message is the runtime's, even with the file over its share */
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* Why the last failed call failed (runtime.entry_failed's `cause`): a
 * plain error, memory (an allocation was refused during the call: the
 * file's share or the cap is full, which event data can cause), or the
 * instruction/time budget. */
enum { FAIL_ERROR = 1, FAIL_MEMORY = 2, FAIL_BUDGET = 3 };

/* The one entry into user Lua. Calls the function below nargs arguments,
 * with the traceback handler and the budget armed, allocations charged to
 * rules file `owner` (0: the runtime; host.file can change it). who names
 * the handler in log lines. Returns LUA_OK, or an error code with the
 * message (traceback included) left on the stack for the caller to pop,
 * and e->fail saying why.
 * Stack: [-(nargs+1), +0] on success, [-(nargs+1), +1] on error. */
static int engine_call_as(struct pw_engine *e, int nargs, const char *who, lua_Integer owner)
{
	lua_State *L = e->L;
	int base = lua_gettop(L) - nargs; /* index of the function */
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->traceback_ref);
	lua_insert(L, base);
	const char *prev = e->current;
	uint32_t prev_owner = e->owner;
	uint64_t refused = e->st.mem_refused;
	e->current = who;
	if (set_owner(e, owner) < 0)
		e->owner = 0;
	e->st.calls++;
	budget_arm(e);
	int r = lua_pcall(L, nargs, 0, base);
	budget_disarm(e);
	e->current = prev;
	e->owner = prev_owner;
	lua_remove(L, base); /* the handler */
	if (r != LUA_OK && e->late_alloc && !e->over_budget) { /* out of time, not of memory: say so */
		e->st.budget_exceeded++; /* counted as the time it is; classed with memory (not the rule's bug) */
		lua_pop(L, 1);
		lua_rawgeti(L, LUA_REGISTRYINDEX, e->late_msg_ref);
	}
	e->late_alloc = false;
	if (r != LUA_OK) {
		e->st.errors++;
		e->fail = e->over_budget ? FAIL_BUDGET
			  : r == LUA_ERRMEM || e->st.mem_refused != refused ? FAIL_MEMORY
									   : FAIL_ERROR;
	}
	return r;
}

static int engine_call(struct pw_engine *e, int nargs, const char *who)
{
	return engine_call_as(e, nargs, who, 0);
}

/* Log the error message at the stack top. */
static void log_error(struct pw_engine *e, const char *what, const char *who)
{
	const char *msg = lua_tostring(e->L, -1);
	pw_log(PW_LOG_ERROR, "%s %s failed: %s", what, who ? who : "?", msg ? msg : "?");
}

/* Log the error message at the stack top (and pop it). */
static void report_error(struct pw_engine *e, const char *what, const char *who)
{
	log_error(e, what, who);
	lua_pop(e->L, 1);
}

/* The integer field k of the table at idx (0 when not an integer). Keys
 * are the runtime's own constants: interned already, so nothing allocates. */
static lua_Integer entry_int(lua_State *L, int idx, const char *k)
{
	lua_getfield(L, idx, k);
	lua_Integer v = lua_tointeger(L, -1);
	lua_pop(L, 1);
	return v;
}

/* ---- procwarden.host: called by the Lua runtime ------------------------ */

static struct pw_engine *host_engine(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

/* host.want(type, fast?, deny?): a handler was added for type (fast: a fast
 * rule; deny: "deny" or "deny+sha256" for a decision rule). */
static int host_want(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	int t = pw_event_type_from_name(luaL_checkstring(L, 1));
	if (t >= 0)
		e->wanted[t] = true;
	if (t == PW_EV_EXEC && lua_toboolean(L, 2))
		e->fast_exec = true;
	const char *deny = lua_tostring(L, 3);
	if (deny) {
		e->has_deny = true;
		e->deny_sha256 |= strcmp(deny, "deny+sha256") == 0;
	}
	return 0;
}

/* host.emit(level, text, kind, event?, tags?, results?, rule?) */
static int host_emit(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	const char *level = luaL_checkstring(L, 1);
	const char *text = luaL_checkstring(L, 2);
	const char *kind = luaL_optstring(L, 3, "log");
	struct pw_emit_extra extra = {
		.event = lua_istable(L, 4) ? 4 : 0,
		.tags = lua_istable(L, 5) ? 5 : 0,
		.results = lua_istable(L, 6) && lua_rawlen(L, 6) > 0 ? 6 : 0,
	};
	const char *rule = lua_isstring(L, 7) ? lua_tostring(L, 7) : e->current ? e->current : "procwarden";
	sink_emit(e->cfg.sink, L, level, rule, kind, text, &extra);
	return 0;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pw_timer *t = (struct pw_timer *)w;
	struct pw_engine *e = t->e;
	lua_State *L = e->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref); /* entry */
	lua_Integer file = entry_int(L, -1, "file");
	lua_getfield(L, -1, "name");               /* entry, name */
	lua_getfield(L, -2, "fn");                 /* entry, name, fn */
	const char *name = lua_tostring(L, -2);
	if (engine_call_as(e, 0, name, file) != LUA_OK)
		report_error(e, "timer", name);
	lua_pop(L, 2);
	if (w->repeat == 0.) { /* a one-shot (after): done, free it */
		for (struct pw_timer **pp = &e->timers; *pp; pp = &(*pp)->next)
			if (*pp == t) {
				*pp = t->next;
				break;
			}
		luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
		free(t);
	}
}

/* host.timer(entry): entry = { fn, name, seconds, again } */
static int host_timer(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "seconds");
	double secs = lua_tonumber(L, -1);
	lua_getfield(L, 1, "again");
	bool again = lua_toboolean(L, -1);
	lua_pop(L, 2);
	struct pw_timer *t = calloc(1, sizeof *t);
	if (!t)
		return luaL_error(L, "out of memory");
	lua_pushvalue(L, 1);
	t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	t->e = e;
	ev_timer_init(&t->w, timer_cb, secs, again ? secs : 0.);
	t->next = e->timers;
	e->timers = t;
	if (e->started)
		ev_timer_start(e->cfg.loop, &t->w);
	return 0;
}

static int host_now(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
	return 1;
}

static void push_engine_stats(lua_State *L, const struct pw_engine *e)
{
	lua_pushinteger(L, (lua_Integer)e->st.calls);
	lua_setfield(L, -2, "handler_calls");
	lua_pushinteger(L, (lua_Integer)e->st.errors);
	lua_setfield(L, -2, "handler_errors");
	lua_pushinteger(L, (lua_Integer)e->st.budget_exceeded);
	lua_setfield(L, -2, "budget_exceeded");
	lua_pushinteger(L, (lua_Integer)e->mem_used);
	lua_setfield(L, -2, "lua_memory");
	/* per rules file: lua_files[i] = { memory, share, refused } */
	lua_createtable(L, (int)e->nfiles, 0);
	for (uint32_t i = 1; i <= e->nfiles; i++) {
		lua_createtable(L, 0, 3);
		lua_pushinteger(L, (lua_Integer)e->files[i].used);
		lua_setfield(L, -2, "memory");
		lua_pushinteger(L, (lua_Integer)file_share(e));
		lua_setfield(L, -2, "share");
		lua_pushinteger(L, (lua_Integer)e->files[i].refused);
		lua_setfield(L, -2, "refused");
		lua_rawseti(L, -2, i);
	}
	lua_setfield(L, -2, "lua_files");
}

static int host_stats(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	lua_newtable(L);
	if (e->cfg.push_stats) {
		lua_pop(L, 1);
		e->cfg.push_stats(e->cfg.stats_ctx, L);
	}
	push_engine_stats(L, e);
	return 1;
}

/* host.proc_ctx(pid) -> the process table's context of pid, or nil */
static int host_proc_ctx(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	lua_Integer pid = luaL_checkinteger(L, 1);
	const struct pw_proc *p = e->cfg.ptable && pid > 0 && pid <= 0x7fffffff
					  ? ptable_get_exact(e->cfg.ptable, (pid_t)pid)
					  : NULL;
	if (!p)
		return 0;
	struct pw_ctx c;
	ptable_ctx_of(p, &c);
	ctx_push(L, &c); /* takes its own reference */
	ptable_ctx_release(&c);
	return 1;
}

/* host.children(pid) -> { tgid, ... } from the process table */
static int host_children(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	lua_Integer pid = luaL_checkinteger(L, 1);
	pid_t kids[1024];
	int n = e->cfg.ptable && pid > 0 && pid <= 0x7fffffff
			? ptable_children(e->cfg.ptable, (pid_t)pid, kids, 1024)
			: 0;
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_pushinteger(L, kids[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* host.sha256(pid) -> hex | nil, err, late (late: not had in time or too
 * big to hash, as opposed to unreadable) */
static int host_sha256(lua_State *L)
{
	lua_Integer pid = luaL_checkinteger(L, 1);
	char hex[65];
	int r = pid > 0 && pid <= 0x7fffffff ? hash_sha256_exe((pid_t)pid, hex) : -EINVAL;
	if (r < 0) {
		lua_pushnil(L);
		lua_pushstring(L, strerror(-r));
		lua_pushboolean(L, r == -ETIMEDOUT || r == -EFBIG);
		return 3;
	}
	lua_pushstring(L, hex);
	return 1;
}

#define PROTECT_KEY "procwarden.protect"

static int protect_gc(lua_State *L)
{
	struct pw_protect **ud = lua_touserdata(L, 1);
	protect_free(*ud);
	*ud = NULL;
	return 0;
}

/* This state's protect{} set (identity.h), kept in the registry and freed
 * with the state; created when make (may raise then), else NULL if none. */
static struct pw_protect *protect_set(lua_State *L, bool make)
{
	struct pw_protect *p = NULL;
	if (lua_getfield(L, LUA_REGISTRYINDEX, PROTECT_KEY) == LUA_TUSERDATA)
		p = *(struct pw_protect **)lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (p || !make)
		return p;
	struct pw_protect **ud = lua_newuserdatauv(L, sizeof *ud, 0);
	*ud = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, protect_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	*ud = protect_new();
	if (!*ud)
		luaL_error(L, "out of memory");
	lua_setfield(L, LUA_REGISTRYINDEX, PROTECT_KEY);
	return *ud;
}

/* host.protect(glob, roots) -> true | nil, why: a protect{} entry,
 * resolved to the inodes of the root-owned files it names once the rules
 * files are loaded (engine_load; roots: the directories a glob starting
 * with '*' covers). Its messages name the rules file's line: the caller's
 * caller (call it directly from the protect function). */
static int host_protect(lua_State *L)
{
	const char *glob = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	const char *roots[32];
	int nroots = 0;
	for (lua_Integer i = 1; nroots < 32 && lua_rawgeti(L, 2, i) == LUA_TSTRING; i++)
		roots[nroots++] = lua_tostring(L, -1); /* kept alive by the table */
	lua_settop(L, 2);
	struct pw_protect *p = protect_set(L, true);
	luaL_where(L, 2);
	char err[512];
	if (protect_add(p, glob, roots, nroots, lua_tostring(L, -1), err, sizeof err) < 0) {
		lua_pushnil(L); /* the caller raises it at the rules file's line */
		lua_pushstring(L, err);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* host.signal(pid, start_time|nil, sig, approx?, rule?, pid_ino?) -> true, nil, sent_ns | nil, why */
static int host_signal(lua_State *L)
{
	lua_Integer pid = luaL_checkinteger(L, 1);
	lua_Integer start = lua_tointeger(L, 2); /* 0 (not known) unless an integer: never raises */
	lua_Integer sig = luaL_checkinteger(L, 3);
	bool approx = lua_toboolean(L, 4);
	const char *rule = lua_tostring(L, 5); /* the rule sending, whose signal C may have sent already */
	lua_Integer ino = lua_tointeger(L, 6); /* pidfs inode: the process exactly, where known (else 0) */
	luaL_argcheck(L, sig >= 0 && sig < 65, 3, "not a signal number");
	const char *why = NULL;
	uint64_t sent = 0;
	int r = pid > 0 && pid <= 0x7fffffff
			? api_signal((pid_t)pid, (uint64_t)start, (uint64_t)ino, approx, (int)sig, rule,
				     protect_set(L, false), &why, &sent)
			: (why = "refused: not a process id", -EINVAL);
	if (r < 0) {
		lua_pushnil(L);
		lua_pushstring(L, why ? why : strerror(-r));
		return 2;
	}
	lua_pushboolean(L, 1);
	lua_pushnil(L);
	lua_pushinteger(L, (lua_Integer)sent);
	return 3;
}

struct exec_out {
	const char *p;
	size_t len;
};

/* Pushes the exec's stdout; in a protected call, as the copy may not fit
 * under the memory cap. Stack: out (lightuserdata) -> string. */
static int push_exec_out(lua_State *L)
{
	const struct exec_out *o = lua_touserdata(L, 1);
	lua_pushlstring(L, o->p, o->len);
	return 1;
}

/* exec finished: on_exit(status, stdout) through the safe call. */
static void exec_done(void *owner, int ref, int status, const char *out, size_t len)
{
	struct pw_engine *e = owner;
	lua_State *L = e->L;
	if (ref == LUA_NOREF)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* {fn, name, file} */
	luaL_unref(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, -1, 3);
	lua_Integer file = lua_tointeger(L, -1); /* the file that started it pays for on_exit */
	lua_pop(L, 1);
	lua_rawgeti(L, -1, 1);                  /* job, fn */
	lua_rawgeti(L, -2, 2);                  /* job, fn, name */
	const char *name = lua_tostring(L, -1);
	lua_insert(L, -2);                      /* job, name, fn */
	lua_pushinteger(L, status);             /* job, name, fn, status */
	struct exec_out o = {out, len};
	uint32_t prev_owner = e->owner;
	if (set_owner(e, file) < 0) /* the copy is the file's, as on_exit will be */
		e->owner = 0;
	if (!lua_checkstack(L, 3)) {            /* counted and logged like a failed call */
		e->owner = prev_owner;
		e->st.calls++;
		e->st.errors++;
		pw_log(PW_LOG_ERROR, "exec on_exit %s failed: no Lua stack space", name ? name : "?");
		lua_pop(L, 4);
		return;
	}
	lua_pushcfunction(L, push_exec_out);
	lua_pushlightuserdata(L, &o);
	int copied = lua_pcall(L, 1, 1, 0);
	e->owner = prev_owner;
	if (copied != LUA_OK) {                 /* job, name, fn, status, err */
		e->st.calls++; /* on_exit is not called: it fails like a call would */
		e->st.errors++;
		report_error(e, "exec on_exit", name);
		lua_pop(L, 4);
		return;
	}                                       /* job, name, fn, status, stdout */
	if (engine_call_as(e, 2, name, file) != LUA_OK) /* job, name[, err] */
		report_error(e, "exec on_exit", name);
	lua_pop(L, 2);
}

/* execve's limits on argv and envp (fs/exec.c): each string with its NUL
 * at most MAX_ARG_STRLEN (32 pages); all strings with their NULs and the
 * pointers to them within a quarter of the stack limit, clamped to
 * [ARG_MAX, 3/4 of _STK_LIM]. (MAX_ARG_STRINGS, 2^31 - 1, is far beyond what
 * fits in that space.) A list past them is refused before the fork. */
#define EXEC_ARG_MIN (128u << 10) /* the kernel's ARG_MAX */
#define EXEC_ARG_CAP (6u << 20)   /* _STK_LIM / 4 * 3 */

static size_t exec_strlen_max(void)
{
	long page = sysconf(_SC_PAGESIZE);
	return (page > 0 ? (size_t)page : 4096) * 32;
}

static size_t exec_arg_space(void)
{
	struct rlimit rl;
	size_t lim = EXEC_ARG_CAP;
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < lim)
		lim = (size_t)(rl.rlim_cur / 4);
	return lim < EXEC_ARG_MIN ? EXEC_ARG_MIN : lim;
}

/* A string list for execve, measured, then built in one malloc'd block
 * (pointers, then the strings), so nothing stays on the Lua stack. */
struct strv {
	size_t n;     /* strings */
	size_t bytes; /* their bytes with NULs */
	char **v;
};

/* Account one string of len bytes; -1 past execve's limits, `space`
 * being what argv and env may take together (pointers included). */
static int strv_add(struct strv *sv, size_t len, size_t space, size_t used)
{
	if (len >= exec_strlen_max())
		return -1;
	size_t need = used + sv->bytes + len + 1 + (sv->n + 2) * sizeof(char *);
	if (need > space || need < used)
		return -1;
	sv->n++;
	sv->bytes += len + 1;
	return 0;
}

/* Measure the list at idx (argv: a list of strings; env: names to
 * strings), with `used` bytes of `space` taken already. 0; -1 when an entry
 * is not a string (the rule's bug); -2 when past execve's limits.
 * Stack: [-0, +0], 3 slots. */
static int strv_measure(lua_State *L, int idx, bool env, struct strv *sv, size_t space, size_t used)
{
	*sv = (struct strv){0};
	if (!env) {
		lua_Unsigned len = lua_rawlen(L, idx);
		for (lua_Unsigned i = 1; i <= len; i++) {
			size_t l = 0;
			bool string = lua_rawgeti(L, idx, (lua_Integer)i) == LUA_TSTRING;
			if (string)
				lua_tolstring(L, -1, &l); /* a string already: no conversion, no allocation */
			lua_pop(L, 1);
			if (!string)
				return -1;
			if (strv_add(sv, l, space, used) < 0)
				return -2;
		}
		return 0;
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) { /* k, v */
		size_t kl = 0, vl = 0;
		bool strings = lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING;
		if (strings) {
			lua_tolstring(L, -2, &kl);
			lua_tolstring(L, -1, &vl);
		}
		lua_pop(L, 1); /* k */
		int r = !strings ? -1 : strv_add(sv, kl + 1 + vl, space, used) < 0 ? -2 : 0;
		if (r < 0) {
			lua_pop(L, 1);
			return r;
		}
	}
	return 0;
}

/* Copy the measured list at idx into sv->v (NULL-terminated; "name=value"
 * for env). -1 when out of memory or the list no longer is what was
 * measured. Stack: [-0, +0], 3 slots. */
static int strv_build(lua_State *L, int idx, bool env, struct strv *sv)
{
	sv->v = malloc((sv->n + 1) * sizeof(char *) + sv->bytes);
	if (!sv->v)
		return -1;
	char *p = (char *)(sv->v + sv->n + 1);
	size_t left = sv->bytes, i = 0;
	if (!env) {
		for (; i < sv->n; i++) {
			size_t l = 0;
			const char *s = NULL;
			if (lua_rawgeti(L, idx, (lua_Integer)i + 1) == LUA_TSTRING)
				s = lua_tolstring(L, -1, &l);
			bool fits = s && l < left;
			if (fits) {
				memcpy(p, s, l + 1);
				sv->v[i] = p;
				p += l + 1;
				left -= l + 1;
			}
			lua_pop(L, 1);
			if (!fits)
				goto changed;
		}
	} else {
		lua_pushnil(L);
		while (lua_next(L, idx)) { /* k, v */
			size_t kl = 0, vl = 0;
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
			const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
			bool fits = k && v && i < sv->n && kl + vl + 1 < left;
			if (fits) {
				memcpy(p, k, kl);
				p[kl] = '=';
				memcpy(p + kl + 1, v, vl + 1);
				sv->v[i++] = p;
				p += kl + vl + 2;
				left -= kl + vl + 2;
			}
			lua_pop(L, 1);
			if (!fits) {
				lua_pop(L, 1);
				goto changed;
			}
		}
		if (i != sv->n)
			goto changed;
	}
	sv->v[sv->n] = NULL;
	return 0;
changed:
	free(sv->v);
	sv->v = NULL;
	return -1;
}

/* host.exec(argv, opts) -> true | nil, why. opts: timeout, env (table),
 * user, stdout_cap, on_exit (function), name (for messages). Lists of any
 * size execve takes; larger ones are refused (nil, why), as is a start
 * that fails. Entries that are not strings are the rule's bug: raised. */
static int host_exec(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	luaL_checkstack(L, 12, "exec");
	struct pw_exec_req req = {.owner = e, .ref = LUA_NOREF, .done = exec_done};
	lua_getfield(L, 2, "timeout");    /* 3 */
	req.timeout = lua_tonumber(L, 3);
	lua_getfield(L, 2, "stdout_cap"); /* 4 */
	req.stdout_cap = lua_isinteger(L, 4) ? (size_t)lua_tointeger(L, 4) : PW_EXEC_STDOUT_MAX;
	lua_getfield(L, 2, "user");       /* 5: stays on the stack while req.user is used */
	req.user = lua_tostring(L, 5);
	bool has_env = lua_getfield(L, 2, "env") == LUA_TTABLE; /* 6 */
	size_t space = exec_arg_space() - PATH_MAX; /* execve copies the file name too */
	struct strv argv, env = {0};
	int r = strv_measure(L, 1, false, &argv, space, 0);
	if (r == -1)
		return luaL_error(L, "exec: argv must be a list of strings");
	if (r == 0 && has_env)
		r = strv_measure(L, 6, true, &env, space, argv.bytes + argv.n * sizeof(char *));
	if (r == -1)
		return luaL_error(L, "exec: env must map names to strings");
	if (r == -2) {
		lua_pushnil(L);
		lua_pushfstring(L, "exec: argument list and environment too long for execve (over %I bytes, "
				   "or one string over %I)", (lua_Integer)space, (lua_Integer)exec_strlen_max());
		return 2;
	}
	if (lua_getfield(L, 2, "on_exit") == LUA_TFUNCTION) { /* 7: fn */
		lua_createtable(L, 3, 0);
		lua_insert(L, -2);
		lua_rawseti(L, -2, 1);
		lua_getfield(L, 2, "name");
		lua_rawseti(L, -2, 2);
		lua_pushinteger(L, e->owner); /* the rules file that pays for on_exit */
		lua_rawseti(L, -2, 3);
		req.ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	/* Nothing raises from here to the end: the blocks are always freed. */
	const char *why = NULL;
	if (strv_build(L, 1, false, &argv) < 0 || (has_env && strv_build(L, 6, true, &env) < 0)) {
		why = "out of memory";
	} else {
		req.argv = argv.v;
		req.env = env.v;
		if (api_exec(e->cfg.loop, &req, &why) == 0)
			req.ref = LUA_NOREF; /* the job has it now */
		else if (!why)
			why = "failed";
	}
	free(argv.v);
	free(env.v);
	if (!why) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if (req.ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, req.ref);
	lua_pushnil(L);
	lua_pushstring(L, why);
	return 2;
}

/* host.refused(): a signal refused by the rules' protect{} list */
static int host_refused(lua_State *L)
{
	api_count_refusal();
	return 0;
}

/* Drop the pre-kill program: state 0 builds it again when next needed, -1
 * keeps C from signalling for good (this engine's rules). */
static void prekill_drop(struct pw_engine *e, int state)
{
	dprog_unref(e->prekill);
	e->prekill = NULL;
	e->prekill_state = state;
}

/* host.prekill_off(again?): protect{} was called: C signals nothing from
 * now on (which exe is protected is Lua's to judge). again: the rules C
 * may signal for changed (a rule suspended or resumed): build the program
 * anew when next needed, unless C signals nothing for good. */
static int host_prekill_off(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	if (!lua_toboolean(L, 1))
		prekill_drop(e, -1);
	else if (e->prekill_state > 0)
		prekill_drop(e, 0);
	return 0;
}

/* host.file(id): charge the memory the running call allocates from now on
 * to rules file id (1, 2 ...: each file's top level says which it is; the
 * engine charges handlers and timers from their entry's `file`).
 * host.file() -> the file charged now (0: the runtime), and the name of the
 * running call (nil outside one). */
static int host_file(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	if (lua_isnoneornil(L, 1)) {
		lua_pushinteger(L, e->owner);
		if (e->armed && e->current)
			lua_pushstring(L, e->current);
		else
			lua_pushnil(L);
		return 2;
	}
	if (set_owner(e, luaL_checkinteger(L, 1)) < 0)
		return luaL_error(L, "host.file: not a rules file number, or out of memory");
	return 0;
}

/* host.budget_check(): raises the budget error when the running call is
 * past its time budget (for the sandbox's wrappers of long C functions,
 * where the count hook does not run); nothing otherwise, or when no call
 * into user code is running. */
static int host_budget_check(lua_State *L)
{
	struct pw_engine *e = host_engine(L);
	if (!e->armed || (!e->over_budget && !past(&e->deadline)))
		return 0;
	return budget_raise(e, L, 1, true);
}

static int open_host(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"want", host_want},   {"emit", host_emit},         {"timer", host_timer},
		{"now", host_now},     {"stats", host_stats},       {"proc_ctx", host_proc_ctx},
		{"sha256", host_sha256}, {"signal", host_signal},   {"exec", host_exec},
		{"children", host_children}, {"refused", host_refused}, {"prekill_off", host_prekill_off},
		{"budget_check", host_budget_check}, {"protect", host_protect},
		{"file", host_file},
		{NULL, NULL},
	};
	luaL_newlibtable(L, funcs);
	lua_pushvalue(L, lua_upvalueindex(1)); /* the engine, as light userdata */
	luaL_setfuncs(L, funcs, 1);
	lua_pushcfunction(L, ctx_fill);
	lua_setfield(L, -2, "ctx_fill");
	return 1;
}

/* ---- state set-up ------------------------------------------------------ */

/* Module name of an embedded file: lua/procwarden/init.lua -> procwarden,
 * lua/procwarden/x.lua -> procwarden.x. NULL for non-modules. */
static const char *module_name(const char *path, char *buf, size_t cap)
{
	const char *pfx = "lua/";
	size_t n = strlen(path);
	if (strncmp(path, pfx, 4) != 0 || n < 8 || strcmp(path + n - 4, ".lua") != 0)
		return NULL;
	snprintf(buf, cap, "%.*s", (int)(n - 8), path + 4);
	for (char *c = buf; *c; c++)
		if (*c == '/')
			*c = '.';
	size_t m = strlen(buf);
	if (m > 5 && strcmp(buf + m - 5, ".init") == 0)
		buf[m - 5] = 0;
	return buf;
}

static const struct pw_embedded *embedded_find(const char *path)
{
	for (const struct pw_embedded *f = pw_embedded; f->path; f++)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

/* Runs protected: opens libraries, preloads modules, requires the runtime.
 * Stack in: engine lightuserdata. */
static int setup_state(lua_State *L)
{
	struct pw_engine *e = lua_touserdata(L, 1);
	luaL_openlibs(L);
	ctx_open(L);
	luaL_requiref(L, "procwarden.core", luaopen_procwarden_core, 0);
	lua_pop(L, 1);
	/* procwarden.host carries the engine as an upvalue: open it here and
	 * register it in package.loaded. */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* LOADED */
	lua_pushlightuserdata(L, e);
	lua_pushcclosure(L, open_host, 1);
	lua_call(L, 0, 1);                                    /* LOADED, host */
	lua_setfield(L, -2, "procwarden.host");               /* LOADED */
	lua_pop(L, 1);

	/* package.preload[name] = loader of the embedded source */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* PRELOAD */
	for (const struct pw_embedded *f = pw_embedded; f->path; f++) {
		char name[128], chunk[256];
		if (!module_name(f->path, name, sizeof name))
			continue;
		snprintf(chunk, sizeof chunk, "@%s", f->path);
		if (luaL_loadbufferx(L, (const char *)f->data, f->len, chunk, "t") != LUA_OK)
			return lua_error(L);
		lua_setfield(L, -2, name);
	}
	lua_pop(L, 1);

	lua_getglobal(L, "require");
	lua_pushstring(L, "procwarden");
	lua_call(L, 1, 1); /* runtime */
	lua_getglobal(L, "require");
	lua_pushstring(L, "procwarden.event");
	lua_call(L, 1, 1); /* runtime, event module */
	return 2;
}

struct pw_engine *engine_new(const struct pw_engine_config *cfg, char *err, size_t errlen)
{
	struct pw_engine *e = calloc(1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	e->mem_cap = PW_MEM_CAP;
	e->L = lua_newstate(engine_alloc, e);
	if (!e->L) {
		snprintf(err, errlen, "cannot create the Lua state");
		free(e);
		return NULL;
	}
	lua_State *L = e->L;
	lua_pushcfunction(L, traceback_handler);
	e->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	/* made now: reporting a call out of time must not allocate */
	lua_pushfstring(L, "budget exceeded (%d instructions or %d ms per call; a large allocation was refused "
			"past the time)", (int)PW_INSN_BUDGET, PW_TIME_BUDGET_MS);
	e->late_msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushcfunction(L, setup_state);
	lua_pushlightuserdata(L, e);
	if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
		snprintf(err, errlen, "runtime: %s", lua_tostring(L, -1));
		lua_close(L);
		free(e->files);
		free(e);
		return NULL;
	}
	lua_getfield(L, -1, "metatable"); /* runtime, event, mt */
	e->event_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "readonly");
	e->readonly_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "pairs");
	e->pairs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "freeze");
	e->freeze_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pop(L, 1); /* runtime */
	lua_getfield(L, -1, "handlers");
	e->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "fast_handlers");
	e->fast_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "predecided_handlers");
	e->predecided_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "predecided_fast_handlers");
	e->predecided_fast_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "entry_failed");
	e->entry_failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_getfield(L, -1, "entry_ok");
	e->entry_ok_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	e->runtime_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	e->wall_offset_ns = pw_wall_offset_ns();
	return e;
}

/* runtime.state.loading = on; rt is the stack index of the runtime table. */
static void set_loading(lua_State *L, int rt, bool on)
{
	rt = lua_absindex(L, rt);
	lua_getfield(L, rt, "state");
	lua_pushboolean(L, on);
	lua_setfield(L, -2, "loading");
	lua_pop(L, 1);
}

/* Compile one rule source with runtime[method](arg, chunkname?) and run its
 * top level through the safe call. Stack: balanced. */
static int load_one(struct pw_engine *e, const char *method, const char *arg,
		    size_t len, const char *label, char *err, size_t errlen)
{
	lua_State *L = e->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref); /* rt */
	lua_getfield(L, -1, method);                         /* rt, compile */
	lua_pushlstring(L, arg, len);                        /* rt, compile, arg */
	lua_pushfstring(L, "@%s", label);                    /* rt, compile, arg, chunkname */
	if (lua_pcall(L, 2, 2, 0) != LUA_OK || lua_isnil(L, -2)) { /* rt, chunk|nil, err */
		const char *msg = lua_tostring(L, -1) ? lua_tostring(L, -1) : "load failed";
		/* say which file where Lua does not (a binary chunk refused) */
		if (strstr(msg, label))
			snprintf(err, errlen, "%s", msg);
		else
			snprintf(err, errlen, "%s: %s", label, msg);
		lua_pop(L, 3);
		return -1;
	}
	lua_pop(L, 1); /* rt, chunk */
	set_loading(L, -2, true);
	int r = engine_call(e, 0, label);
	set_loading(L, r == LUA_OK ? -1 : -2, false);
	if (r != LUA_OK) { /* rt, msg */
		const char *msg = lua_tostring(L, -1);
		size_t first = msg ? strcspn(msg, "\n") : 0; /* file:line: message; no traceback */
		snprintf(err, errlen, "%.*s", (int)first, msg ? msg : "?");
		pw_log(PW_LOG_DEBUG, "%s", msg ? msg : "?");
		lua_pop(L, 2);
		return -1;
	}
	lua_pop(L, 1);
	return 0;
}

/* What loadfile skips at the start of a file: a UTF-8 BOM, and a first
 * line starting with '#' (its newline kept, so line numbers hold). */
static size_t rules_header(const char *text, size_t len)
{
	size_t at = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
	if (at < len && text[at] == '#')
		while (at < len && text[at] != '\n')
			at++;
	return at;
}

int engine_load(struct pw_engine *e, char *const *files, int nfiles, char *err, size_t errlen)
{
	if (nfiles == 0) {
		const struct pw_embedded *d = embedded_find("rules/default.lua");
		if (!d) {
			snprintf(err, errlen, "no embedded default policy");
			return -1;
		}
		if (load_one(e, "compile_string", (const char *)d->data, d->len, "rules/default.lua",
			     err, errlen) < 0)
			return -1;
	}
	for (int i = 0; i < nfiles; i++) { /* checked and read through one open (identity.c) */
		char *text;
		size_t len;
		if (identity_rules_read(files[i], &text, &len, err, errlen) < 0)
			return -1;
		size_t skip = rules_header(text, len);
		int r = load_one(e, "compile_string", text + skip, len - skip, files[i], err, errlen);
		free(text);
		if (r < 0)
			return -1;
	}
	/* protect{} entries to files: a walk of directories, outside any rule's budget */
	return protect_resolve(protect_set(e->L, false), err, errlen);
}

void engine_start(struct pw_engine *e)
{
	e->started = true;
	for (struct pw_timer *t = e->timers; t; t = t->next)
		ev_timer_start(e->cfg.loop, &t->w);
}

bool engine_wants(const struct pw_engine *e, enum pw_event_type t)
{
	return (unsigned)t < PW_EV__COUNT && e->wanted[t];
}

uint32_t engine_mask(const struct pw_engine *e)
{
	uint32_t m = 0;
	for (int t = 0; t < PW_EV__COUNT; t++)
		if (e->wanted[t])
			m |= pw_event_type_mask((enum pw_event_type)t);
	return m;
}

/* Call runtime[ref](entry, ...) for its bookkeeping: nargs more arguments
 * above the entry index. Protected and without the budget (the runtime's
 * own short code). Returns its boolean result; false when it failed (logged).
 * Stack: [-nargs, +0] */
static bool entry_note(struct pw_engine *e, int ref, int entry, int nargs, const char *who)
{
	lua_State *L = e->L;
	entry = lua_absindex(L, entry);
	if (!lua_checkstack(L, 3)) {
		lua_pop(L, nargs);
		pw_log(PW_LOG_ERROR, "%s: no Lua stack space to count a failure", who ? who : "?");
		return false;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_pushvalue(L, entry);
	lua_rotate(L, -(nargs + 2), 2); /* fn, entry, args... */
	if (lua_pcall(L, nargs + 1, 1, 0) != LUA_OK) {
		report_error(e, "failure count of", who);
		return false;
	}
	bool r = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return r;
}

/* A call of the handler entry at idx failed with the message at the top
 * (popped): runtime.entry_failed counts it by cause, and suspends the
 * entry for a while when its own bugs keep failing it. */
static void entry_failed(struct pw_engine *e, int entry, const char *who)
{
	entry = lua_absindex(e->L, entry);
	lua_pushinteger(e->L, e->fail); /* msg, cause */
	lua_insert(e->L, -2);           /* cause, msg */
	if (entry_note(e, e->entry_failed_ref, entry, 2, who))
		e->st.suspended++;
}

/* A call succeeded: a count of failures in a row starts again. */
static void entry_succeeded(struct pw_engine *e, int entry, const char *who)
{
	entry = lua_absindex(e->L, entry);
	if (entry_int(e->L, entry, "in_a_row") != 0)
		entry_note(e, e->entry_ok_ref, entry, 0, who);
}

/* Turn the event store at the top of the stack into its read-only proxy
 * (see procwarden.event: proxy -> metatable{__index = store} -> store ->
 * lazy accessor). Allocates: protected callers only. Stack: [-1, +1] */
static void seal_event(struct pw_engine *e, lua_State *L)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->event_mt_ref); /* S, lazy */
	lua_setmetatable(L, -2);                            /* S */
	lua_createtable(L, 0, 0);                           /* S, P */
	lua_createtable(L, 0, 5);                           /* S, P, M */
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->readonly_ref);
	lua_setfield(L, -2, "__newindex");
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->pairs_ref);
	lua_setfield(L, -2, "__pairs");
	lua_pushliteral(L, "procwarden.event");
	lua_setfield(L, -2, "__name");
	lua_pushliteral(L, "procwarden.event");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);                            /* S, P */
	lua_remove(L, -2);                                  /* P */
}

/* Runs protected: builds the event table. Stack in: engine, event, ctx|nil;
 * out: table. */
static int push_event_protected(lua_State *L)
{
	struct pw_engine *e = lua_touserdata(L, 1);
	const struct pw_event *ev = lua_touserdata(L, 2);
	const struct pw_ctx *ctx = lua_touserdata(L, 3);
	pw_event_push(L, ev, e->wall_offset_ns);
	if (ctx && ctx->known) {
		ctx_push(L, ctx);
		lua_setfield(L, -2, "_ctx");
	}
	seal_event(e, L);
	return 1;
}

/* Run every handler of the list at -2 on the event table at -1. */
static void run_handlers(struct pw_engine *e, lua_Integer n)
{
	lua_State *L = e->L;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, -2, i);                               /* list, ev, entry */
		if (lua_getfield(L, -1, "suspended") != LUA_TNIL) {  /* list, ev, entry, susp */
			lua_pop(L, 2);
			continue;
		}
		lua_pop(L, 1);
		lua_Integer file = entry_int(L, -1, "file");
		lua_getfield(L, -1, "name");                         /* list, ev, entry, name */
		lua_getfield(L, -2, "fn");                           /* list, ev, entry, name, fn */
		lua_pushvalue(L, -4);                                /* list, ev, entry, name, fn, ev */
		const char *name = lua_tostring(L, -3);
		if (engine_call_as(e, 1, name, file) != LUA_OK) {    /* list, ev, entry, name, err */
			log_error(e, "handler", name);
			entry_failed(e, -3, name);                   /* list, ev, entry, name */
		} else {
			entry_succeeded(e, -2, name);
		}
		lua_pop(L, 2);                                       /* list, ev */
	}
}

/* Push the handler list for type name and return its length (list pushed
 * even when empty). Stack: [-0, +1] */
static lua_Integer push_list(struct pw_engine *e, int ref, const char *type)
{
	lua_State *L = e->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);              /* handlers */
	lua_getfield(L, -1, type);                           /* handlers, list */
	lua_remove(L, -2);                                   /* list */
	return lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
}

static lua_Integer push_handlers(struct pw_engine *e, const char *type)
{
	return push_list(e, e->handlers_ref, type);
}

static void dispatch_list(struct pw_engine *e, int ref, const struct pw_event *ev, const struct pw_ctx *ctx)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	lua_Integer n = push_list(e, ref, pw_event_type_name(ev->type)); /* list */
	if (n == 0) {
		lua_settop(L, top);
		return;
	}
	/* Building the table allocates: do it protected, so a refused
	 * allocation is an error here, never a panic. */
	lua_pushcfunction(L, push_event_protected);
	lua_pushlightuserdata(L, e);
	lua_pushlightuserdata(L, (void *)ev);
	lua_pushlightuserdata(L, (void *)ctx);
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) { /* list, err */
		report_error(e, "event table for", pw_event_type_name(ev->type));
		lua_settop(L, top);
		return;
	} /* list, ev */
	e->st.dispatched[ev->type]++;
	run_handlers(e, n);
	lua_settop(L, top);
}

void engine_dispatch(struct pw_engine *e, const struct pw_event *ev, const struct pw_ctx *ctx, bool predecided)
{
	if (engine_wants(e, ev->type))
		dispatch_list(e, predecided && ev->type == PW_EV_EXEC ? e->predecided_ref : e->handlers_ref, ev, ctx);
}

void engine_dispatch_fast(struct pw_engine *e, const struct pw_event *ev, const struct pw_ctx *ctx, bool predecided)
{
	if (ev->type == PW_EV_EXEC && e->fast_exec)
		dispatch_list(e, predecided ? e->predecided_fast_ref : e->fast_ref, ev, ctx);
}

bool engine_has_fast(const struct pw_engine *e)
{
	return e->fast_exec;
}

struct replay_args {
	struct pw_engine *e;
	const char *line;
	size_t len;
	char *err;
	size_t errlen;
};

/* Runs protected. Out: the recorded event table, or nothing (bad line). */
static int push_replay_protected(lua_State *L)
{
	struct replay_args *a = lua_touserdata(L, 1);
	lua_settop(L, 0);
	if (!replay_line_push(L, a->line, a->len, a->err, a->errlen))
		return 0;
	/* its process objects recorded and sealed, its lists and maps read-only */
	lua_rawgeti(L, LUA_REGISTRYINDEX, a->e->freeze_ref);
	lua_pushvalue(L, -2);
	lua_call(L, 1, 0);
	seal_event(a->e, L);
	return 1;
}

int engine_replay_line(struct pw_engine *e, const char *line, size_t len, char *err, size_t errlen)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	struct replay_args a = {e, line, len, err, errlen};
	lua_pushcfunction(L, push_replay_protected);
	lua_pushlightuserdata(L, &a);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
		lua_settop(L, top);
		return -1;
	}
	if (lua_isnil(L, -1)) { /* bad line: err says why */
		lua_settop(L, top);
		return -1;
	}                                                  /* ev */
	lua_getfield(L, -1, "type");                       /* ev, type */
	int t = pw_event_type_from_name(lua_tostring(L, -1));
	lua_Integer n = push_handlers(e, lua_tostring(L, -1)); /* ev, type, list */
	lua_replace(L, -2);                                /* ev, list */
	lua_insert(L, -2);                                 /* list, ev */
	if (n > 0) {
		if (t >= 0)
			e->st.dispatched[t]++;
		run_handlers(e, n);
	}
	lua_settop(L, top);
	return 0;
}

/* Runs protected: the event of a pre-exec decision. Stack in: engine, req,
 * ctx|nil; out: table. */
static int push_decision_protected(lua_State *L)
{
	struct pw_engine *e = lua_touserdata(L, 1);
	const struct pw_deny_req *r = lua_touserdata(L, 2);
	const struct pw_ctx *ctx = lua_touserdata(L, 3);
	lua_createtable(L, 0, 16);
#define RAWSET(k, push) (lua_pushliteral(L, k), push, lua_rawset(L, -3))
	RAWSET("type", lua_pushliteral(L, "exec"));
	RAWSET("pid", lua_pushinteger(L, r->pid));
	RAWSET("tgid", lua_pushinteger(L, r->pid));
	RAWSET("thread", lua_pushboolean(L, 0));
	RAWSET("startup", lua_pushboolean(L, 0));
	RAWSET("_decision", lua_pushboolean(L, 1));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	RAWSET("time", lua_pushnumber(L, (double)now.tv_sec + now.tv_nsec / 1e9));
	if (r->exe[0])
		RAWSET("exe", lua_pushstring(L, r->exe));
	if (r->have_sha256)
		RAWSET("sha256", lua_pushstring(L, r->sha256));
	if (r->hash_late)
		RAWSET("_hash_late", lua_pushboolean(L, 1));
	if (r->have_ids) { /* as the responder read them: C and Lua judge the same ids */
		RAWSET("uid", lua_pushinteger(L, r->ruid));
		RAWSET("euid", lua_pushinteger(L, r->euid));
		RAWSET("gid", lua_pushinteger(L, r->rgid));
		RAWSET("egid", lua_pushinteger(L, r->egid));
		if (r->ppid > 0)
			RAWSET("ppid", lua_pushinteger(L, r->ppid));
	}
	if (r->dev || r->ino) { /* attributes read (else unknown: exe_error says why) */
		RAWSET("exe_uid", lua_pushinteger(L, r->exe_uid));
		RAWSET("exe_gid", lua_pushinteger(L, r->exe_gid));
		RAWSET("exe_mode", lua_pushinteger(L, r->exe_mode));
	}
	if (r->exe_fs[0])
		RAWSET("exe_fs", lua_pushstring(L, r->exe_fs));
	if (r->exe_error[0])
		RAWSET("exe_error", lua_pushstring(L, r->exe_error));
#undef RAWSET
	if (ctx && ctx->known) {
		lua_pushliteral(L, "_ctx");
		ctx_push(L, ctx);
		lua_rawset(L, -3);
	}
	seal_event(e, L);
	return 1;
}

/* Push the decision event of r. 0, or -1 (logged). Stack: [-0, +(1|0)] */
static int push_decision(struct pw_engine *e, const struct pw_deny_req *r)
{
	lua_State *L = e->L;
	struct pw_ctx ctx;
	const struct pw_proc *p = e->cfg.ptable ? ptable_get(e->cfg.ptable, r->pid) : NULL;
	ptable_ctx_of(p, &ctx);
	lua_pushcfunction(L, push_decision_protected);
	lua_pushlightuserdata(L, e);
	lua_pushlightuserdata(L, (void *)r);
	lua_pushlightuserdata(L, &ctx);
	int st = lua_pcall(L, 3, 1, 0);
	ptable_ctx_release(&ctx);
	if (st != LUA_OK) {
		report_error(e, "decision event for", r->exe);
		return -1;
	}
	return 0;
}

void engine_decide(struct pw_engine *e, struct pw_deny_req *r)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	r->deny = false;
	r->error = false;
	r->rule[0] = 0;
	if (push_decision(e, r) < 0) {                      /* ev */
		r->error = true;
		return;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref);    /* ev, rt */
	lua_getfield(L, -1, "decision_rules");                /* ev, rt, rules */
	lua_Integer n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
	bool failed = false;
	/* One safe call per rule: a failing rule is counted (and suspended
	 * for a while when it keeps failing) and the rules after it still decide. */
	for (lua_Integer i = 1; i <= n && !r->deny; i++) {
		lua_rawgeti(L, -1, i);                            /* ev, rt, rules, rule */
		if (lua_getfield(L, -1, "suspended") != LUA_TNIL) {
			lua_pop(L, 2);
			continue;
		}
		lua_pop(L, 1);
		lua_Integer file = entry_int(L, -1, "file");
		lua_getfield(L, -1, "name");                      /* ..., rule, name */
		lua_getfield(L, -4, "decide");                    /* ..., rule, name, decide */
		lua_pushvalue(L, -3);
		lua_pushvalue(L, -7);                             /* ..., rule, name, decide, rule, ev */
		const char *name = lua_tostring(L, -4);
		if (engine_call_as(e, 2, name, file) != LUA_OK) { /* ..., rule, name, err */
			log_error(e, "deny rule", name);
			entry_failed(e, -3, name);                /* ..., rule, name */
			failed = true;
		} else {
			entry_succeeded(e, -2, name);
		}
		lua_pop(L, 2);                                    /* ev, rt, rules */
		lua_pushliteral(L, "_verdict");
		if (lua_rawget(L, -4) == LUA_TSTRING) {           /* ev, rt, rules, verdict */
			r->deny = true;
			snprintf(r->rule, sizeof r->rule, "%s", lua_tostring(L, -1));
		}
		lua_pop(L, 1);
	}
	if (!r->deny && failed)
		r->error = true; /* a rule could not decide: the default answer (--deny-fail-closed) */
	lua_settop(L, top);
}

void engine_deny_done(struct pw_engine *e, const struct pw_deny_req *r, bool late)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	if (push_decision(e, r) < 0)                       /* ev */
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref); /* ev, rt */
	lua_getfield(L, -1, "decided");                    /* ev, rt, decided */
	lua_pushvalue(L, -3);
	lua_pushstring(L, r->rule);
	lua_pushboolean(L, late);
	lua_pushboolean(L, r->deny);
	lua_pushboolean(L, r->fast);                       /* ev, rt, decided, ev, rule, late, deny, fast */
	const char *prev = e->current;
	e->current = r->rule[0] ? r->rule : "deny";
	if (engine_call(e, 5, e->current) != LUA_OK)
		report_error(e, "deny output", r->rule);
	e->current = prev;
	lua_settop(L, top);
}

struct pw_dprog *engine_decision_program(struct pw_engine *e)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref); /* rt */
	lua_getfield(L, -1, "decision_rules");             /* rt, rules */
	char err[256];
	struct pw_dprog *p = dprog_from_lua(L, -1, err, sizeof err);
	lua_settop(L, top);
	if (!p) {
		pw_log(PW_LOG_WARNING, "deny: the decision rules could not be compiled for the responder (%s): "
				       "Lua decides every exec", err);
		return NULL;
	}
	int c_only, n = dprog_rules(p, &c_only);
	pw_log(PW_LOG_INFO, "deny: %d of %d decision rule%s decided in the responder thread without Lua", c_only,
	       n, n == 1 ? "" : "s");
	return p;
}

bool engine_has_deny(const struct pw_engine *e)
{
	return e->has_deny;
}

bool engine_deny_needs_sha256(const struct pw_engine *e)
{
	return e->deny_sha256;
}

/* The pre-kill program from runtime.prekill_program() (an empty one in a
 * dry run or under protect{}). Stack: [-0, +0] */
static void prekill_build(struct pw_engine *e)
{
	lua_State *L = e->L;
	int top = lua_gettop(L);
	e->prekill_state = 1;
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref);
	lua_getfield(L, -1, "prekill_program");
	char err[256];
	if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
		e->prekill = dprog_from_lua(L, -1, err, sizeof err);
		if (!e->prekill)
			pw_log(PW_LOG_WARNING, "kill rules could not be compiled for the exec hot path (%s): Lua "
					       "sends their signals", err);
	}
	lua_settop(L, top);
}

/* Facts of an exec event for the pre-kill program: its exe and pid. */
struct prekill_facts {
	const struct pw_event *ev;
	const char *exe;
};

static void prekill_fact(void *arg, enum pw_dfield f, struct pw_dvalue *v)
{
	const struct prekill_facts *x = arg;
	if (f == PW_DF_EXE)
		*v = (struct pw_dvalue){.type = PW_DV_STR, .s = x->exe};
	else if (f == PW_DF_PID)
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = x->ev->tgid};
}

bool engine_prekill(struct pw_engine *e, const struct pw_event *ev)
{
	if (ev->type != PW_EV_EXEC || !e->fast_exec)
		return false;
	if (e->prekill_state == 0)
		prekill_build(e);
	if (!e->prekill)
		return false;
	char exe[PATH_MAX]; /* the one /proc read before the signal */
	if (proc_read_exe(ev->tgid, exe, sizeof exe) <= 0)
		return false;
	if (e->cfg.ptable) /* the process table takes it: the kill may take the link with it */
		ptable_exe_hint(e->cfg.ptable, ev->tgid, exe);
	struct prekill_facts x = {.ev = ev, .exe = exe};
	const char *rule;
	int sig = 0;
	if (dprog_decide(e->prekill, prekill_fact, &x, &rule, &sig) != PW_DV_DENY || sig <= 0)
		return false;
	return api_presignal(ev->tgid, sig, rule) != -1;
}

void engine_set_dry_run(struct pw_engine *e, bool dry_run)
{
	if (e->prekill_state > 0) /* built for the other mode: again when next needed */
		prekill_drop(e, 0);
	lua_State *L = e->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref);
	lua_getfield(L, -1, "state");
	lua_pushboolean(L, dry_run);
	lua_setfield(L, -2, "dry_run");
	lua_pop(L, 2);
}

/* Print what runtime[fn]() returns. */
static void print_runtime(struct pw_engine *e, const char *fn, FILE *out)
{
	lua_State *L = e->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, e->runtime_ref);
	lua_getfield(L, -1, fn);
	if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_isstring(L, -1) && lua_rawlen(L, -1) > 0)
		fprintf(out, "%s\n", lua_tostring(L, -1));
	lua_pop(L, 2);
}

void engine_print_summary(struct pw_engine *e, FILE *out)
{
	print_runtime(e, "summary", out);
}

void engine_print_rule_stats(struct pw_engine *e, FILE *out)
{
	print_runtime(e, "rule_stats", out);
}

const struct pw_engine_stats *engine_stats(const struct pw_engine *e)
{
	return &e->st;
}

void engine_free(struct pw_engine *e)
{
	if (!e)
		return;
	api_exec_forget(e);
	for (struct pw_timer *t = e->timers, *next; t; t = next) {
		next = t->next;
		ev_timer_stop(e->cfg.loop, &t->w);
		free(t);
	}
	lua_close(e->L);
	free(e->files);
	dprog_unref(e->prekill);
	free(e);
}
