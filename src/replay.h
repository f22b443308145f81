/* replay.h: events as JSON lines. --record writes each event with the
 * process context it had at that moment; --replay reads such lines back
 * into the same engine path. Also the JSON form of --dump. */
#ifndef PW_REPLAY_H
#define PW_REPLAY_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>
#include <stdio.h>

#include "event.h"
#include "ptable.h"

#define PW_REPLAY_MAX_LINE (1u << 20) /* longer lines are bad lines */

/* The JSON object of one event: the kernel's fields plus ctx (may be NULL:
 * kernel fields only), and with pt (may be NULL) the parent and ancestors
 * as the process table knows them. New reference, or NULL on allocation
 * failure. */
json_t *record_event_json(const struct pw_event *ev, const struct pw_ctx *ctx, struct pw_ptable *pt,
			  int64_t wall_offset_ns);
/* Write it as one line to out. 0 or -1 (errno). */
int record_write(FILE *out, const struct pw_event *ev, const struct pw_ctx *ctx, struct pw_ptable *pt,
		 int64_t wall_offset_ns);

/* Parse one JSON line into a Lua event table (raw fields, marked recorded,
 * no metatable). Returns 1 with the table pushed, or 0 with nothing pushed
 * and a reason in err. May raise a Lua memory error: call protected.
 * Stack: [-0, +(0|1)] */
int replay_line_push(lua_State *L, const char *line, size_t len, char *err, size_t errlen);

#endif
