/* context.c: the Lua side of struct pw_ctx. An event table carries its
 * process context as a `_ctx` userdata; the runtime's lazy fields call
 * ctx_fill once to copy every captured field into the table. The userdata
 * holds a reference on the shared image, released by __gc, so a table a
 * rule keeps never points at freed memory. */
#include "context.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <string.h>

#define CTX_MT "procwarden.ctx"

static int ctx_gc(lua_State *L)
{
	struct pw_ctx *c = luaL_checkudata(L, 1, CTX_MT);
	ptable_ctx_release(c);
	return 0;
}

void ctx_open(lua_State *L)
{
	if (luaL_newmetatable(L, CTX_MT)) {
		lua_pushcfunction(L, ctx_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushliteral(L, "locked");
		lua_setfield(L, -2, "__metatable");
	}
	lua_pop(L, 1);
}

void ctx_push(lua_State *L, const struct pw_ctx *ctx)
{
	struct pw_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
	memset(c, 0, sizeof *c); /* no image until the metatable (and __gc) is set */
	luaL_setmetatable(L, CTX_MT);
	*c = *ctx;
	image_ref(c->img);
}

/* Raw sets: event tables refuse ordinary assignment. Stack: t at -1. */
static void set_int(lua_State *L, const char *k, lua_Integer v)
{
	lua_pushstring(L, k);
	lua_pushinteger(L, v);
	lua_rawset(L, -3);
}

/* Does the table at -1 hold k already (raw)? Stack: [-0, +0] */
static bool has_field(lua_State *L, const char *k)
{
	lua_pushstring(L, k);
	bool has = lua_rawget(L, -2) != LUA_TNIL;
	lua_pop(L, 1);
	return has;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
	if (v && *v) {
		lua_pushstring(L, k);
		lua_pushstring(L, v);
		lua_rawset(L, -3);
	}
}

/* argv as a list. Stack: [-0, +1] */
static void push_argv(lua_State *L, const struct pw_image *img)
{
	lua_createtable(L, 4, 0);
	lua_Integer i = 0;
	size_t start = 0;
	for (size_t k = 0; k < img->argv_len; k++)
		if (img->argv[k] == 0) {
			lua_pushlstring(L, img->argv + start, k - start);
			lua_rawseti(L, -2, ++i);
			start = k + 1;
		}
}

int ctx_fill(lua_State *L)
{
	const struct pw_ctx *c = luaL_checkudata(L, 1, CTX_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2); /* ud, t */
	if (!c->known)
		return 1;
	/* A pre-exec decision: the context is the caller's, whose exe, argv and
	 * name are not those of the program about to run. */
	lua_pushliteral(L, "_decision");
	bool decision = lua_rawget(L, 2) != LUA_TNIL;
	lua_pop(L, 1);
	const struct pw_image *img = c->img;
	if (img && decision) {
		set_str(L, "cgroup", img->cgroup);
		set_str(L, "tty", img->tty);
	} else if (img) {
		set_str(L, "exe", img->exe);
		set_str(L, "exe_error", img->exe_error);
		set_str(L, "exe_fs", img->exe_fs);
		if (img->exe_stat) { /* on exec events too: a deny rule's fallback sees what the responder saw */
			set_int(L, "exe_uid", img->exe_uid);
			set_int(L, "exe_gid", img->exe_gid);
			set_int(L, "exe_mode", img->exe_mode);
		}
		set_str(L, "cgroup", img->cgroup);
		set_str(L, "tty", img->tty);
		if (img->argv_len) {
			lua_pushliteral(L, "argv");
			push_argv(L, img);
			lua_rawset(L, -3);
			lua_pushliteral(L, "argv_truncated");
			lua_pushboolean(L, img->argv_truncated);
			lua_rawset(L, -3);
		}
	}
	set_str(L, "uncovered", c->uncovered);
	/* A decision's ids and ppid as the responder read them stay: the rules
	 * judge what the C matchers judged (engine.c push_decision). */
	bool ids_given = decision && has_field(L, "uid");
	if (c->ppid && !(decision && has_field(L, "ppid")))
		set_int(L, "ppid", c->ppid);
	if (c->pgid)
		set_int(L, "pgid", c->pgid);
	if (c->sid)
		set_int(L, "sid", c->sid);
	if (c->start_time)
		set_int(L, "start_time", (lua_Integer)c->start_time);
	else if (c->start_est) /* known from the fork event's time, to a tick */
		set_int(L, "_start_est", (lua_Integer)c->start_est);
	if (c->pid_ino) /* the process exactly (pidfs): what kill() checks first */
		set_int(L, "_pid_ino", (lua_Integer)c->pid_ino);
	if (c->creds_known && !ids_given) {
		set_int(L, "uid", c->ruid);
		set_int(L, "euid", c->euid);
		set_int(L, "gid", c->rgid);
		set_int(L, "egid", c->egid);
	}
	lua_pushliteral(L, "comm");
	bool has_comm = lua_rawget(L, 2) != LUA_TNIL; /* a comm event's own name wins */
	lua_pop(L, 1);
	if (!has_comm && !decision)
		set_str(L, "comm", c->comm);
	if (c->tracer)
		set_int(L, "_tracer", c->tracer);
	if (c->has_prev) {
		lua_getfield(L, 2, "type");
		bool uid = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "uid") == 0;
		lua_pop(L, 1);
		set_int(L, uid ? "prev_ruid" : "prev_rgid", c->prev_real);
		set_int(L, uid ? "prev_euid" : "prev_egid", c->prev_effective);
	}
	return 1;
}
