/* dump.h: --dump, every event printed as it arrives (text or JSON lines). */
#ifndef PW_DUMP_H
#define PW_DUMP_H

#include <stdio.h>

#include "event.h"
#include "ptable.h"
#include "sink.h"

/* Print ev to out as one text line (JSON lines are replay.c's record
 * format); ctx adds the process's exe and argv when it was captured. */
void dump_event(FILE *out, const struct pw_event *ev, const struct pw_ctx *ctx, int64_t wall_offset_ns);

#endif
