/* sink.c: outputs for logs and alerts. Formats a line once (text or JSON
 * via jansson) and writes it to every target: stdout, stderr, appended
 * files (reopened on SIGHUP) or syslog. A target that fails is counted and
 * reported on stderr at most once every 10 s; it never stops the daemon. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAX_TARGETS 8

enum target_kind { T_FD, T_FILE, T_SYSLOG };

struct target {
	enum target_kind kind;
	int fd;
	char *path;
};

struct pw_sink {
	enum pw_format fmt;
	struct target t[MAX_TARGETS];
	int n;
	time_t last_report;
	uint64_t unreported;
	struct pw_sink_stats st;
};

struct pw_sink *sink_new(enum pw_format fmt)
{
	struct pw_sink *s = calloc(1, sizeof *s);
	if (s)
		s->fmt = fmt;
	return s;
}

static int syslog_connect(struct target *t)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", "/dev/log");
	return connect(t->fd, (struct sockaddr *)&sa, sizeof sa);
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

int sink_add(struct pw_sink *s, const char *target)
{
	if (s->n == MAX_TARGETS) {
		errno = E2BIG;
		return -1;
	}
	struct target *t = &s->t[s->n];
	memset(t, 0, sizeof *t);
	if (strcmp(target, "stdout") == 0 || strcmp(target, "-") == 0) {
		t->kind = T_FD;
		t->fd = STDOUT_FILENO;
	} else if (strcmp(target, "stderr") == 0) {
		t->kind = T_FD;
		t->fd = STDERR_FILENO;
	} else if (strcmp(target, "syslog") == 0) {
		t->kind = T_SYSLOG; /* our own /dev/log socket: a missing syslog daemon is seen and counted */
		t->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (t->fd < 0)
			return -1;
		syslog_connect(t);
	} else {
		t->kind = T_FILE;
		t->fd = open_file(target);
		if (t->fd < 0)
			return -1;
		t->path = strdup(target);
		if (!t->path) {
			close(t->fd);
			return -1;
		}
	}
	s->n++;
	return 0;
}

void sink_reopen(struct pw_sink *s)
{
	for (int i = 0; i < s->n; i++) {
		struct target *t = &s->t[i];
		if (t->kind != T_FILE)
			continue;
		int fd = open_file(t->path);
		if (fd < 0) {
			pw_log(PW_LOG_ERROR, "reopen %s: %s (keeping the old file)", t->path, strerror(errno));
			continue;
		}
		close(t->fd);
		t->fd = fd;
	}
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	if (p[0] < 0x80)
		return 1;
	size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
	if (len == 0 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (len == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
		return 0; /* overlong, surrogate */
	if (len == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)))
		return 0;
	return len;
}

json_t *pw_json_string(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	/* invalid UTF-8 (or a NUL): replace what is not valid */
	char *buf = malloc(n * 3 + 1);
	if (!buf)
		return NULL;
	size_t w = 0;
	for (size_t i = 0; i < n;) {
		size_t len = s[i] ? utf8_len((const unsigned char *)s + i, n - i) : 0;
		if (len) {
			memcpy(buf + w, s + i, len);
			w += len;
			i += len;
		} else {
			memcpy(buf + w, "\xef\xbf\xbd", 3);
			w += 3;
			i++;
		}
	}
	j = json_stringn(buf, w);
	free(buf);
	return j;
}

/* Text lines: control characters (a newline could forge a record) are
 * written escaped. Returns the length written into out (cap > 4). */
static size_t text_escape(const char *in, char *out, size_t cap)
{
	size_t w = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && w + 5 < cap; p++) {
		if (*p == '\n') {
			out[w++] = '\\';
			out[w++] = 'n';
		} else if (*p == '\t') {
			out[w++] = '\\';
			out[w++] = 't';
		} else if (*p < 0x20 || *p == 0x7f) {
			w += (size_t)snprintf(out + w, cap - w, "\\x%02x", *p);
		} else {
			out[w++] = (char)*p;
		}
	}
	out[w] = 0;
	return w;
}

void sink_format_time(double t, char *buf, size_t cap)
{
	time_t secs = (time_t)t;
	struct tm tm;
	gmtime_r(&secs, &tm);
	int ms = (int)((t - (double)secs) * 1000.0);
	if (ms < 0 || ms > 999)
		ms = 0;
	size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03dZ", ms);
}

static int syslog_priority(const char *level)
{
	static const struct { const char *name; int prio; } map[] = {
		{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"notice", LOG_NOTICE},
		{"warning", LOG_WARNING}, {"error", LOG_ERR}, {"critical", LOG_CRIT},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(map[i].name, level) == 0)
			return map[i].prio;
	return LOG_NOTICE;
}

static void note_failure(struct pw_sink *s, const struct target *t, int err)
{
	s->st.failures++;
	s->unreported++;
	time_t now = time(NULL);
	if (now - s->last_report < 10)
		return;
	pw_log(PW_LOG_ERROR, "output %s: %s (%llu line%s lost since the last report)",
	       t->path ? t->path : t->kind == T_SYSLOG ? "syslog" : t->fd == 1 ? "stdout" : "stderr",
	       strerror(err), (unsigned long long)s->unreported, s->unreported == 1 ? "" : "s");
	s->last_report = now;
	s->unreported = 0;
}

static void write_line(struct pw_sink *s, const char *level, const char *line, size_t len)
{
	for (int i = 0; i < s->n; i++) {
		struct target *t = &s->t[i];
		if (t->kind == T_SYSLOG) {
			char msg[8400];
			int m = snprintf(msg, sizeof msg, "<%d>procwarden[%d]: %.*s", LOG_DAEMON | syslog_priority(level),
					 (int)getpid(), (int)(len - 1), line);
			size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
			/* never wait on a full syslog queue: the line is counted lost */
			ssize_t w = send(t->fd, msg, mlen, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN && syslog_connect(t) == 0)
				w = send(t->fd, msg, mlen, MSG_NOSIGNAL | MSG_DONTWAIT); /* syslogd restarted */
			if (w < 0)
				note_failure(s, t, errno);
			continue;
		}
		size_t off = 0;
		while (off < len) {
			ssize_t w = write(t->fd, line + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				note_failure(s, t, w < 0 ? errno : EIO);
				break;
			}
			off += (size_t)w;
		}
	}
	s->st.lines++;
}

static json_t *json_event(lua_State *L, int idx, int depth);

#define JSON_MAX_DEPTH 4

/* Is the table at idx an event or process object (a proxy whose
 * metatable indexes a store)? */
static bool is_event(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return false;
	bool yes = lua_getfield(L, -1, "__index") == LUA_TTABLE;
	lua_pop(L, 2);
	return yes;
}

/* JSON value of the Lua value at idx: scalars, lists, string-keyed sets and
 * maps (env, caps), and process objects (parent, ancestors) as objects. */
static json_t *json_of(lua_State *L, int idx, int depth)
{
	if (depth > JSON_MAX_DEPTH || !lua_checkstack(L, 8))
		return NULL;
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		return lua_isinteger(L, idx) ? json_integer(lua_tointeger(L, idx))
					     : json_real(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t n;
		const char *str = lua_tolstring(L, idx, &n);
		return pw_json_string(str, n);
	}
	case LUA_TTABLE: {
		if (is_event(L, idx))
			return json_event(L, idx, depth + 1);
		lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
		lua_pushnil(L);
		bool has_keys = lua_next(L, idx) != 0;
		if (has_keys)
			lua_pop(L, 2);
		if (n == 0 && has_keys) /* a map or a set: {name = value|true} */
			return json_event(L, idx, depth + 1);
		json_t *a = json_array();
		for (lua_Integer i = 1; i <= n && a; i++) {
			lua_rawgeti(L, idx, i);
			json_t *v = json_of(L, -1, depth + 1);
			lua_pop(L, 1);
			if (v)
				json_array_append_new(a, v);
		}
		return a;
	}
	default:
		return NULL;
	}
}

/* The event's fields as they are in the table: the kernel's and every
 * lazy field read so far (no new /proc reads). Names starting with '_' are
 * private. */
static json_t *json_event(lua_State *L, int idx, int depth)
{
	json_t *o = json_object();
	if (!o || !lua_checkstack(L, 6))
		return o;
	idx = lua_absindex(L, idx);
	/* an event proxy: its fields are in the store, metatable.__index */
	int pushed = 0;
	if (lua_getmetatable(L, idx)) {
		if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
			lua_remove(L, -2);
			idx = lua_gettop(L);
			pushed = 1;
		} else {
			lua_pop(L, 2);
		}
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) { /* key, value */
		if (lua_type(L, -2) == LUA_TSTRING) {
			const char *k = lua_tostring(L, -2);
			json_t *v = k[0] != '_' ? json_of(L, -1, depth) : NULL;
			if (v)
				json_object_set_new(o, k, v);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, pushed);
	return o;
}

/* [{name, ok, error}] from the Lua list at idx. */
static json_t *json_results(lua_State *L, int idx)
{
	json_t *a = json_array();
	lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
	for (lua_Integer i = 1; a && i <= n; i++) {
		if (lua_rawgeti(L, idx, i) == LUA_TTABLE) {
			json_t *o = json_object();
			lua_getfield(L, -1, "name");
			if (o && lua_type(L, -1) == LUA_TSTRING)
				json_object_set_new(o, "name", pw_json_string(lua_tostring(L, -1), lua_rawlen(L, -1)));
			lua_getfield(L, -2, "ok");
			if (o)
				json_object_set_new(o, "ok", json_boolean(lua_toboolean(L, -1)));
			lua_getfield(L, -3, "error");
			if (o && lua_type(L, -1) == LUA_TSTRING)
				json_object_set_new(o, "error", pw_json_string(lua_tostring(L, -1), lua_rawlen(L, -1)));
			lua_pop(L, 3);
			static const char *const ints[] = {"pid", "signal", "latency_ns"};
			for (size_t k = 0; o && k < sizeof ints / sizeof ints[0]; k++) {
				if (lua_getfield(L, -1, ints[k]) == LUA_TNUMBER)
					json_object_set_new(o, ints[k], json_integer(lua_tointeger(L, -1)));
				lua_pop(L, 1);
			}
			if (o)
				json_array_append_new(a, o);
		}
		lua_pop(L, 1);
	}
	return a;
}

void sink_emit(struct pw_sink *s, lua_State *L, const char *level, const char *rule,
	       const char *kind, const char *text, const struct pw_emit_extra *extra)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	char when[40];
	sink_format_time(now, when, sizeof when);
	if (s->fmt == PW_FMT_TEXT) {
		char line[8192], safe_rule[256], safe_text[6144];
		text_escape(rule, safe_rule, sizeof safe_rule);
		text_escape(text, safe_text, sizeof safe_text);
		int n = snprintf(line, sizeof line, "%s %s %s: %s\n", when, level, safe_rule, safe_text);
		if (n < 0)
			return;
		if ((size_t)n >= sizeof line) { /* cut, but keep the newline */
			n = sizeof line - 1;
			line[n - 1] = '\n';
		}
		write_line(s, level, line, (size_t)n);
		return;
	}
	json_t *o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "kind", pw_json_string(kind, strlen(kind)));
	json_object_set_new(o, "rule", pw_json_string(rule, strlen(rule)));
	json_object_set_new(o, "priority", pw_json_string(level, strlen(level)));
	json_object_set_new(o, "msg", pw_json_string(text, strlen(text)));
	if (extra && extra->tags)
		json_object_set_new(o, "tags", json_of(L, extra->tags, 0));
	if (extra && extra->event)
		json_object_set_new(o, "event", json_event(L, extra->event, 0));
	if (extra && extra->results && lua_checkstack(L, 8))
		json_object_set_new(o, "actions", json_results(L, extra->results));
	char *line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!line) { /* not expected any more (strings are sanitised): counted if it happens */
		s->st.failures++;
		return;
	}
	size_t n = strlen(line);
	char *nl = realloc(line, n + 2);
	if (!nl) {
		free(line);
		return;
	}
	nl[n] = '\n';
	nl[n + 1] = 0;
	write_line(s, level, nl, n + 1);
	free(nl);
}

void sink_flush(struct pw_sink *s)
{
	for (int i = 0; i < s->n; i++)
		if (s->t[i].kind == T_FILE)
			fdatasync(s->t[i].fd);
}

const struct pw_sink_stats *sink_stats(const struct pw_sink *s)
{
	return &s->st;
}

void sink_free(struct pw_sink *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		if (s->t[i].kind == T_FILE || s->t[i].kind == T_SYSLOG)
			close(s->t[i].fd);
		free(s->t[i].path);
	}
	free(s);
}
