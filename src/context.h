/* context.h: the Lua view of a process context (struct pw_ctx): a userdata
 * that keeps the captured image alive while a Lua table refers to it. */
#ifndef PW_CONTEXT_H
#define PW_CONTEXT_H

#include <lua.h>

#include "ptable.h"

/* Push a userdata holding a copy of ctx (its image gains a reference).
 * Stack: [-0, +1]; may raise a memory error. */
void ctx_push(lua_State *L, const struct pw_ctx *ctx);
/* Lua: ctx_fill(ud, t): rawset into t every field the context holds
 * (exe argv argv_truncated cgroup tty ppid pgid sid start_time uid euid gid
 * egid comm, prev_* on uid/gid events, _tracer). Returns t. */
int ctx_fill(lua_State *L);
/* Register the userdata's metatable (once per state). */
void ctx_open(lua_State *L);

#endif
