/* core.c: the Lua C module `procwarden.core`: the parser (core.parse), the
 * pw_event -> table conversion, bounded /proc readers, passwd lookups and
 * fnmatch globs. Loaded by the daemon and, as a shared object, by the
 * busted specs. */
#include "core.h"

#include <errno.h>
#include <fnmatch.h>
#include <lauxlib.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decision.h"
#include "proc.h"
#include "replay.h"

int64_t pw_wall_offset_ns(void)
{
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)rt.tv_sec - mono.tv_sec) * 1000000000LL + (rt.tv_nsec - mono.tv_nsec);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, k);
}

void pw_event_push(lua_State *L, const struct pw_event *ev, int64_t wall_offset_ns)
{
	lua_createtable(L, 0, 32); /* room for the context fields ctx_fill adds: no rehash */
	lua_pushstring(L, pw_event_type_name(ev->type));
	lua_setfield(L, -2, "type");
	set_int(L, "pid", ev->pid);
	set_int(L, "tgid", ev->tgid);
	lua_pushboolean(L, ev->pid != ev->tgid);
	lua_setfield(L, -2, "thread");
	set_int(L, "cpu", ev->cpu);
	set_int(L, "ktime_ns", (lua_Integer)ev->ktime_ns);
	set_int(L, "seq", ev->seq);
	lua_pushnumber(L, (double)ev->ktime_ns / 1e9 + (double)wall_offset_ns / 1e9);
	lua_setfield(L, -2, "time");
	lua_pushboolean(L, (ev->flags & PW_EVF_STARTUP) != 0);
	lua_setfield(L, -2, "startup");
	struct pw_field f[PW_EVENT_FIELDS_MAX];
	int nf = pw_event_fields(ev, f);
	for (int i = 0; i < nf; i++) {
		if (f[i].boolean)
			lua_pushboolean(L, f[i].value != 0);
		else
			lua_pushinteger(L, (lua_Integer)f[i].value);
		lua_setfield(L, -2, f[i].name);
	}
	if (ev->type == PW_EV_COMM) {
		lua_pushstring(L, ev->u.comm.comm);
		lua_setfield(L, -2, "comm");
	}
}

/* core.parse(bytes [, max_events]) -> { event, ... } | nil, error_name, offset */
static int core_parse(lua_State *L)
{
	size_t len;
	const char *buf = luaL_checklstring(L, 1, &len);
	lua_Integer max = luaL_optinteger(L, 2, 1024);
	luaL_argcheck(L, max >= 0 && max <= 65536, 2, "max_events out of range");
	struct pw_event *evs = lua_newuserdatauv(L, sizeof(struct pw_event) * (size_t)(max ? max : 1), 0);
	size_t n = 0, err_off = 0;
	enum pw_parse_status st = pw_parse_buffer(buf, len, evs, (size_t)max, &n, &err_off);
	if (st != PW_PARSE_OK) {
		lua_pushnil(L);
		lua_pushstring(L, pw_parse_status_name(st));
		lua_pushinteger(L, (lua_Integer)err_off);
		return 3;
	}
	int64_t off = pw_wall_offset_ns();
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		pw_event_push(L, &evs[i], off);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

static pid_t check_pid(lua_State *L, int idx)
{
	lua_Integer pid = luaL_checkinteger(L, idx);
	luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, idx, "pid out of range");
	return (pid_t)pid;
}

static int push_errno(lua_State *L, int neg_errno)
{
	lua_pushnil(L);
	lua_pushstring(L, strerror(-neg_errno));
	return 2;
}

/* core.proc_exe(pid) -> path | nil, err */
static int core_proc_exe(lua_State *L)
{
	char buf[4096];
	int n = proc_read_exe(check_pid(L, 1), buf, sizeof buf);
	if (n < 0)
		return push_errno(L, n);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* core.proc_link(pid, name) -> readlink of /proc/PID/<name> (cwd, fd/0 ...) */
static int core_proc_link(lua_State *L)
{
	pid_t pid = check_pid(L, 1);
	const char *name = luaL_checkstring(L, 2);
	luaL_argcheck(L, strstr(name, "..") == NULL && name[0] != '/', 2, "bad name");
	char path[128], buf[4096];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	ssize_t n = readlink(path, buf, sizeof buf - 1);
	if (n < 0)
		return push_errno(L, -errno);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* core.proc_cmdline(pid) -> { argv... }, truncated | nil, err */
static int core_proc_cmdline(lua_State *L)
{
	char buf[PW_ARGV_CAP];
	bool trunc;
	ssize_t n = proc_read_file(check_pid(L, 1), "cmdline", buf, sizeof buf, &trunc);
	if (n < 0)
		return push_errno(L, (int)n);
	lua_createtable(L, 4, 0);
	lua_Integer i = 0;
	size_t start = 0;
	for (size_t k = 0; k < (size_t)n; k++) {
		if (buf[k] == 0) {
			lua_pushlstring(L, buf + start, k - start);
			lua_rawseti(L, -2, ++i);
			start = k + 1;
		}
	}
	if (start < (size_t)n) { /* last argument cut by the cap */
		lua_pushlstring(L, buf + start, (size_t)n - start);
		lua_rawseti(L, -2, ++i);
		trunc = true;
	}
	if (i == 0) { /* a zombie or a kernel thread: no argv at all */
		lua_pushnil(L);
		lua_pushliteral(L, "no command line");
		return 2;
	}
	lua_pushboolean(L, trunc);
	return 2;
}

/* core.proc_comm(pid) -> name | nil, err */
static int core_proc_comm(lua_State *L)
{
	char buf[64];
	bool trunc;
	ssize_t n = proc_read_file(check_pid(L, 1), "comm", buf, sizeof buf, &trunc);
	if (n < 0)
		return push_errno(L, (int)n);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/* core.proc_status(pid) -> { ppid, uid, euid, gid, egid, tracer_pid, ns_pid,
 * cap_eff (hex string) } | nil, err */
static int core_proc_status(lua_State *L)
{
	struct pw_proc_status st;
	int r = proc_read_status(check_pid(L, 1), &st);
	if (r < 0)
		return push_errno(L, r);
	lua_createtable(L, 0, 8);
	set_int(L, "ppid", st.ppid);
	set_int(L, "uid", st.ruid);
	set_int(L, "euid", st.euid);
	set_int(L, "gid", st.rgid);
	set_int(L, "egid", st.egid);
	set_int(L, "tracer_pid", st.tracer_pid);
	set_int(L, "ns_pid", st.ns_pid);
	char hex[20];
	snprintf(hex, sizeof hex, "%016llx", (unsigned long long)st.cap_eff);
	lua_pushstring(L, hex);
	lua_setfield(L, -2, "cap_eff");
	return 1;
}

/* core.proc_stat(pid) -> { ppid, pgid, sid, tty (name or absent), start_time,
 * comm } | nil, err */
static int core_proc_stat(lua_State *L)
{
	struct pw_proc_stat st;
	int r = proc_read_stat(check_pid(L, 1), &st);
	if (r < 0)
		return push_errno(L, r);
	lua_createtable(L, 0, 6);
	set_int(L, "ppid", st.ppid);
	set_int(L, "pgid", st.pgid);
	set_int(L, "sid", st.sid);
	set_int(L, "start_time", (lua_Integer)st.start_time);
	char tty[32];
	proc_tty_name(st.tty_nr, tty, sizeof tty);
	if (tty[0]) {
		lua_pushstring(L, tty);
		lua_setfield(L, -2, "tty");
	}
	lua_pushstring(L, st.comm);
	lua_setfield(L, -2, "comm");
	lua_pushlstring(L, &st.state, 1);
	lua_setfield(L, -2, "state");
	return 1;
}

/* Bytes of /proc/PID/environ read: the kernel takes far larger
 * environments (each string up to 128 KiB, all of them up to a quarter of
 * the stack limit), so what lies past this is reported as cut. */
#define ENVIRON_CAP (128 * 1024)

/* core.proc_read(pid, name) -> contents, truncated | nil, err: the first
 * bytes of /proc/PID/<name> for an allow-listed name (cgroup, loginuid,
 * environ, status); truncated is true when the file had more. The buffer
 * is on the Lua heap (an environment may be 128 KiB). */
static int core_proc_read(lua_State *L)
{
	static const struct { const char *name; size_t cap; } files[] = {
		{"cgroup", 4096}, {"loginuid", 32}, {"environ", ENVIRON_CAP}, {"status", 4096},
	};
	pid_t pid = check_pid(L, 1);
	const char *name = luaL_checkstring(L, 2);
	size_t cap = 0;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		if (strcmp(files[i].name, name) == 0)
			cap = files[i].cap;
	luaL_argcheck(L, cap > 0, 2, "not a readable /proc file");
	luaL_Buffer b;
	char *buf = luaL_buffinitsize(L, &b, cap);
	bool trunc;
	ssize_t n = proc_read_file(pid, name, buf, cap, &trunc);
	if (n < 0)
		return push_errno(L, (int)n);
	luaL_pushresultsize(&b, (size_t)n);
	lua_pushboolean(L, trunc);
	return 2;
}

/* core.proc_start_time(pid) -> ticks since boot | nil, err */
static int core_proc_start_time(lua_State *L)
{
	uint64_t t;
	int r = proc_read_start_time(check_pid(L, 1), &t);
	if (r < 0)
		return push_errno(L, r);
	lua_pushinteger(L, (lua_Integer)t);
	return 1;
}

/* core.user_name(uid) -> name | nil */
static int core_user_name(lua_State *L)
{
	lua_Integer uid = luaL_checkinteger(L, 1);
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (uid < 0 || uid > 0xfffffffe || getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &res) != 0 || !res)
		return 0;
	lua_pushstring(L, pw.pw_name);
	return 1;
}

/* core.fnmatch(pattern, subject [, nocase]) -> bool. glibc fnmatch: linear
 * for the patterns rules use, no backtracking blow-up (doc/threat-model.md). */
static int core_fnmatch(lua_State *L)
{
	const char *pat = luaL_checkstring(L, 1);
	const char *s = luaL_checkstring(L, 2);
	int flags = lua_toboolean(L, 3) ? FNM_CASEFOLD : 0;
	lua_pushboolean(L, fnmatch(pat, s, flags) == 0);
	return 1;
}

/* core.parse_record(line) -> event table (raw fields, as --replay reads it)
 * | nil, reason */
static int core_parse_record(lua_State *L)
{
	size_t len;
	const char *line = luaL_checklstring(L, 1, &len);
	char err[256];
	if (!replay_line_push(L, line, len, err, sizeof err)) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	return 1;
}

/* core.decide(rules, facts) -> "allow" | "deny", rule | "lua": a compiled
 * decision program (decision.c) run on facts given as a table keyed by match
 * key ("exe", "parent.exe" ...; false: unknown), for the specs to hold C to
 * Lua's meaning.
 * rules: as engine.c hands them over (name, enabled, needs_lua, plan). */
static void table_fact(void *arg, enum pw_dfield f, struct pw_dvalue *v)
{
	lua_State *L = arg;
	int t = lua_getfield(L, 2, dprog_field_name(f)); /* left on the stack until decide returns: s stays valid */
	if (t == LUA_TSTRING)
		*v = (struct pw_dvalue){.type = PW_DV_STR, .s = lua_tostring(L, -1)};
	else if (t == LUA_TNUMBER && lua_isinteger(L, -1))
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = lua_tointeger(L, -1)};
	else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		*v = (struct pw_dvalue){.type = PW_DV_UNKNOWN}; /* false: a fact C could not read */
}

static int core_decide(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	luaL_checkstack(L, PW_DF_COUNT + 4, "decide");
	char err[256];
	struct pw_dprog *p = dprog_from_lua(L, 1, err, sizeof err);
	if (!p)
		return luaL_error(L, "decide: %s", err);
	const char *rule;
	enum pw_dverdict v = dprog_decide(p, table_fact, L, &rule, NULL);
	lua_pushstring(L, v == PW_DV_DENY ? "deny" : v == PW_DV_ALLOW ? "allow" : "lua");
	lua_pushstring(L, rule ? rule : "");
	dprog_unref(p); /* rule pointed into p: pushed (copied) before */
	return 2;
}

static const luaL_Reg core_funcs[] = {
	{"decide", core_decide},
	{"parse_record", core_parse_record},
	{"parse", core_parse},
	{"proc_exe", core_proc_exe},
	{"proc_link", core_proc_link},
	{"proc_cmdline", core_proc_cmdline},
	{"proc_comm", core_proc_comm},
	{"proc_status", core_proc_status},
	{"proc_stat", core_proc_stat},
	{"proc_read", core_proc_read},
	{"proc_start_time", core_proc_start_time},
	{"user_name", core_user_name},
	{"fnmatch", core_fnmatch},
	{NULL, NULL},
};

int luaopen_procwarden_core(lua_State *L)
{
	luaL_newlib(L, core_funcs);
	/* core.event_types: the names rules may subscribe to, in kernel order */
	lua_createtable(L, PW_EV__COUNT, 0);
	for (int t = 0; t < PW_EV__COUNT; t++) {
		lua_pushstring(L, pw_event_type_name((enum pw_event_type)t));
		lua_rawseti(L, -2, t + 1);
	}
	lua_setfield(L, -2, "event_types");
	lua_pushinteger(L, PW_ARGV_CAP);
	lua_setfield(L, -2, "argv_cap");
	lua_pushinteger(L, ENVIRON_CAP);
	lua_setfield(L, -2, "environ_cap");
	return 1;
}
