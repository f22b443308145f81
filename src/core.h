/* core.h: the Lua C module procwarden.core and the pw_event -> Lua table
 * conversion shared by the daemon and the specs. */
#ifndef PW_CORE_H
#define PW_CORE_H

#include <lua.h>
#include <stdbool.h>

#include "event.h"

/* Push ev as a new table with the always-present and type-specific fields
 * of procwarden-rules(5) EVENT TABLE. wall_offset_ns converts ktime_ns to wall-clock time.
 * May raise a Lua memory error: call from protected code.
 * Stack: [-0, +1] */
void pw_event_push(lua_State *L, const struct pw_event *ev, int64_t wall_offset_ns);
/* CLOCK_REALTIME - CLOCK_MONOTONIC, in ns. */
int64_t pw_wall_offset_ns(void);

int luaopen_procwarden_core(lua_State *L);

#endif
