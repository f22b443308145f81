/* sink.h: where logs and alerts go (text or JSON lines; stdout, stderr, a
 * file, syslog), with failure counters. */
#ifndef PW_SINK_H
#define PW_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lua_State;

enum pw_format { PW_FMT_TEXT, PW_FMT_JSON };

struct pw_sink_stats {
	uint64_t lines;    /* lines written */
	uint64_t failures; /* lines a target failed to take */
	uint64_t cut;      /* lines shortened to fit (a text line, a syslog datagram), marked "…[+N bytes]" */
};

struct pw_sink;

struct pw_sink *sink_new(enum pw_format fmt);
/* Add a target: "stdout", "stderr", "syslog" or a file path (appended).
 * 0, or -1 with errno. */
int sink_add(struct pw_sink *s, const char *target);
/* Reopen file targets (SIGHUP, logrotate). */
void sink_reopen(struct pw_sink *s);
/* Stack indexes of the optional Lua values of a line (0 = absent). */
struct pw_emit_extra {
	int event;   /* the event table */
	int tags;    /* list of strings */
	int results; /* list of { name, ok, error } (actions taken) */
};

/* One log/alert/action line. Does not raise. */
void sink_emit(struct pw_sink *s, struct lua_State *L, const char *level, const char *rule,
	       const char *kind, const char *text, const struct pw_emit_extra *extra);
void sink_flush(struct pw_sink *s);
const struct pw_sink_stats *sink_stats(const struct pw_sink *s);
void sink_free(struct pw_sink *s);

/* A JSON string of n bytes: invalid UTF-8 becomes U+FFFD, so a file name
 * chosen by an attacker can neither drop a line nor a field. */
struct json_t;
struct json_t *pw_json_string(const char *s, size_t n);

/* ISO 8601 UTC with milliseconds: 2026-11-24T12:00:00.123Z */
void sink_format_time(double t, char *buf, size_t cap);

#endif
