/* dump.h: --dump, every event printed as it arrives (text or JSON lines). */
#ifndef PW_DUMP_H
#define PW_DUMP_H

#include <stdio.h>

#include "event.h"
#include "sink.h"

/* Print ev to out. exec events also show exe and argv read from /proc now. */
void dump_event(FILE *out, enum pw_format fmt, const struct pw_event *ev, int64_t wall_offset_ns);

#endif
