/* fuzz_replay.c: libFuzzer target for the JSON-lines reader of --replay
 * (replay_line_push): any bytes in, either a well-formed event table out
 * or a refusal with a reason; never a crash, a leak of stack slots, or a
 * table without its required fields. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <string.h>

#include "event.h"
#include "replay.h"

static lua_State *L;

struct args {
	const uint8_t *data;
	size_t size;
	int ok;
	char err[256];
};

static int run(lua_State *l)
{
	struct args *a = lua_touserdata(l, 1);
	lua_settop(l, 0);
	a->ok = replay_line_push(l, (const char *)a->data, a->size, a->err, sizeof a->err);
	if (a->ok) {
		if (lua_gettop(l) != 1 || !lua_istable(l, 1))
			__builtin_trap();
		lua_getfield(l, 1, "type");
		const char *t = lua_tostring(l, -1);
		if (!t || pw_event_type_from_name(t) < 0 || strcmp(t, "ack") == 0)
			__builtin_trap();
		if (strcmp(t, "overflow") != 0) {
			lua_getfield(l, 1, "pid");
			if (!lua_isinteger(l, -1) || lua_tointeger(l, -1) < 0)
				__builtin_trap();
			lua_getfield(l, 1, "tgid");
			if (!lua_isinteger(l, -1))
				__builtin_trap();
		}
		lua_getfield(l, 1, "_replay");
		if (!lua_toboolean(l, -1))
			__builtin_trap();
	} else {
		if (lua_gettop(l) != 0 || a->err[0] == 0)
			__builtin_trap();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!L) {
		L = luaL_newstate();
		luaL_openlibs(L);
	}
	struct args a = {.data = data, .size = size};
	lua_pushcfunction(L, run);
	lua_pushlightuserdata(L, &a);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		/* only a memory error may come out (none expected at these sizes) */
		const char *m = lua_tostring(L, -1);
		if (!m || strstr(m, "memory") == NULL)
			__builtin_trap();
		lua_pop(L, 1);
	}
	lua_settop(L, 0);
	lua_gc(L, LUA_GCSTEP, 0);
	return 0;
}
