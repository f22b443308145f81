/* sink.c: outputs for logs and alerts. Formats a line once (text or JSON
 * via jansson) and writes it to every target: stdout, stderr, appended
 * files (reopened on SIGHUP) or syslog. A target that fails is counted and
 * reported on stderr at most once every 10 s; it never stops the daemon.
 *
 * No line loses the fields that matter to a long value. A text line longer
 * than TEXT_LINE_MAX leads with the pid, the user and the actions' results,
 * then cuts the message's longest words (paths, arguments) in their middle,
 * marked "…[+N bytes]". JSON lines go to streams whole; for a syslog
 * datagram a record too long has its longest strings, then its longest
 * lists, cut the same way, and stays valid JSON ("cut": true). Every line
 * cut is counted (stats.cut). */
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

#define SYSLOG_MAX 8192 /* bytes of one datagram: rsyslog's default maxMessageSize */
#define SYSLOG_HEAD_MAX 32 /* "<191>procwarden[4194304]: " */
#define TEXT_LINE_MAX (SYSLOG_MAX - SYSLOG_HEAD_MAX) /* a text line, newline included */
#define MARK_MAX 24 /* a cut marker, "…[+N bytes]" */
#define RULE_MAX 512 /* bytes of a rule name (a handler's file:line) in a text line */
#define WORD_MIN 64 /* a long word or string is never cut shorter than this */
#define SUMMARY_MAX 1024 /* bytes of the results leading a cut text line */

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

/* ---- a growing buffer ---------------------------------------------------- */

struct buf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void buf_put(struct buf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* ---- cutting long values ---------------------------------------------------
 * Widths are output bytes: in text lines control characters are written
 * escaped (a newline could forge a record), so they are wider. */

enum cut_mode {
	CUT_TEXT, /* escaped for a text line */
	CUT_RAW,  /* measured as CUT_TEXT, written as it is (escaped later) */
	CUT_JSON, /* a JSON string's bytes (jansson escapes them) */
};

static size_t width_of(unsigned char c, enum cut_mode mode)
{
	if (mode == CUT_JSON)
		return 1;
	if (c == '\n' || c == '\t')
		return 2;
	return c < 0x20 || c == 0x7f ? 4 : 1;
}

static size_t width(const char *s, size_t n, enum cut_mode mode)
{
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		w += width_of((unsigned char)s[i], mode);
	return w;
}

static void put_escaped(struct buf *b, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && width_of((unsigned char)s[j], CUT_TEXT) == 1)
			j++;
		buf_put(b, s + i, j - i);
		if (j == n)
			break;
		unsigned char c = (unsigned char)s[j];
		char esc[8];
		if (c == '\n' || c == '\t')
			snprintf(esc, sizeof esc, "\\%c", c == '\n' ? 'n' : 't');
		else
			snprintf(esc, sizeof esc, "\\x%02x", c);
		buf_str(b, esc);
		i = j + 1;
	}
}

static void put_as(struct buf *b, const char *s, size_t n, enum cut_mode mode)
{
	if (mode == CUT_TEXT)
		put_escaped(b, s, n);
	else
		buf_put(b, s, n);
}

static bool continuation(const char *s, size_t i, size_t n)
{
	return i < n && ((unsigned char)s[i] & 0xc0) == 0x80;
}

/* s[0..n) into b, in at most keep bytes of output (keep > MARK_MAX): when
 * it is wider, its middle is replaced by "…[+N bytes]" (N bytes of s left
 * out), so its start and its end (a binary's name, the last arguments)
 * stay. Cuts fall between UTF-8 characters (moving at most 3 bytes, so
 * bytes that are not UTF-8 cannot make it walk). Returns bytes left out. */
static size_t put_cut(struct buf *b, const char *s, size_t n, size_t keep, enum cut_mode mode)
{
	if (width(s, n, mode) <= keep) {
		put_as(b, s, n, mode);
		return 0;
	}
	size_t room = keep > MARK_MAX ? keep - MARK_MAX : 0, hw = room / 2, tw = room - hw;
	size_t i = 0, acc = 0;
	while (i < n && acc + width_of((unsigned char)s[i], mode) <= hw)
		acc += width_of((unsigned char)s[i++], mode);
	for (int k = 0; k < 3 && i > 0 && continuation(s, i, n); k++)
		i--;
	size_t j = n;
	acc = 0;
	while (j > i && acc + width_of((unsigned char)s[j - 1], mode) <= tw)
		acc += width_of((unsigned char)s[--j], mode);
	for (int k = 0; k < 3 && j < n && continuation(s, j, n); k++)
		j++;
	char mark[MARK_MAX + 8];
	snprintf(mark, sizeof mark, "\xe2\x80\xa6[+%zu bytes]", j - i);
	put_as(b, s, i, mode);
	buf_str(b, mark);
	put_as(b, s + j, n - j, mode);
	return j - i;
}

/* Bytes removed when every length above level + MARK_MAX is cut to level
 * (plus a marker). */
static size_t reduction(const size_t *len, size_t n, size_t level)
{
	size_t r = 0;
	for (size_t i = 0; i < n; i++)
		if (len[i] > level + MARK_MAX)
			r += len[i] - level - MARK_MAX;
	return r;
}

/* The longest length every value may keep so that cutting the longer ones
 * removes at least need bytes (and no shorter than floor); 0 when even
 * floor removes nothing. */
static size_t cut_level(const size_t *len, size_t n, size_t need, size_t floor)
{
	size_t hi = floor;
	for (size_t i = 0; i < n; i++)
		if (len[i] > hi)
			hi = len[i];
	if (reduction(len, n, floor) == 0)
		return 0;
	if (reduction(len, n, floor) < need)
		return floor;
	size_t lo = floor; /* reduction(lo) >= need; find the largest such level */
	while (lo < hi) {
		size_t mid = lo + (hi - lo + 1) / 2;
		if (reduction(len, n, mid) >= need)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* A message into b in at most budget bytes (mode CUT_TEXT or CUT_JSON):
 * its longest words (runs without a space: paths, arguments, cut values)
 * are cut in their middle, all to the same length and no more than
 * needed, so the short words between them ("pid 4242", "user bob",
 * "[kill failed: ...]") stay; if that is not enough, the whole message is
 * cut in its middle. */
static void put_text_within(struct buf *b, const char *text, size_t n, size_t budget, enum cut_mode mode)
{
	enum cut_mode raw_mode = mode == CUT_TEXT ? CUT_RAW : mode;
	size_t total = width(text, n, mode);
	if (total <= budget) {
		put_as(b, text, n, mode);
		return;
	}
	size_t nwords = 0;
	for (size_t i = 0; i < n; i++)
		if (text[i] != ' ' && (i == 0 || text[i - 1] == ' '))
			nwords++;
	size_t *len = calloc(nwords ? nwords : 1, sizeof *len);
	struct buf raw = {0};
	if (len) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (text[i] == ' ')
				continue;
			if (i == 0 || text[i - 1] == ' ')
				k++;
			len[k - 1] += width_of((unsigned char)text[i], mode);
		}
		size_t level = cut_level(len, nwords, total - budget, WORD_MIN);
		for (size_t i = 0, w = 0; i < n;) {
			size_t j = i;
			if (text[i] == ' ') {
				while (j < n && text[j] == ' ')
					j++;
				buf_put(&raw, text + i, j - i);
			} else {
				while (j < n && text[j] != ' ')
					j++;
				bool cut = level && len[w] > level + MARK_MAX;
				put_cut(&raw, text + i, j - i, cut ? level + MARK_MAX : len[w], raw_mode);
				w++;
			}
			i = j;
		}
	}
	free(len);
	if (len && !raw.oom)
		put_cut(b, raw.p, raw.n, budget, mode);
	else
		put_cut(b, text, n, budget, mode);
	free(raw.p);
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

/* The line (newline included) to every file and fd target. */
static void write_streams(struct pw_sink *s, const char *line, size_t len)
{
	for (int i = 0; i < s->n; i++) {
		struct target *t = &s->t[i];
		if (t->kind == T_SYSLOG)
			continue;
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
}

static bool has_syslog(const struct pw_sink *s)
{
	for (int i = 0; i < s->n; i++)
		if (s->t[i].kind == T_SYSLOG)
			return true;
	return false;
}

/* "<prio>procwarden[pid]: " into head; its length. */
static size_t syslog_head(const char *level, char *head, size_t cap)
{
	int m = snprintf(head, cap, "<%d>procwarden[%d]: ", LOG_DAEMON | syslog_priority(level), (int)getpid());
	return m < 0 ? 0 : (size_t)m < cap ? (size_t)m : cap - 1;
}

/* The line (without its newline) to every syslog target, as one datagram.
 * Callers made it fit: a datagram that would not is counted, never sent
 * cut (a cut JSON record is no record). */
static void write_syslog(struct pw_sink *s, const char *level, const char *line, size_t len)
{
	char msg[SYSLOG_MAX];
	size_t h = syslog_head(level, msg, sizeof msg);
	bool fits = h + len <= sizeof msg;
	if (fits)
		memcpy(msg + h, line, len);
	for (int i = 0; i < s->n; i++) {
		struct target *t = &s->t[i];
		if (t->kind != T_SYSLOG)
			continue;
		if (!fits) {
			note_failure(s, t, EMSGSIZE);
			continue;
		}
		/* never wait on a full syslog queue: the line is counted lost */
		ssize_t w = send(t->fd, msg, h + len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && syslog_connect(t) == 0)
			w = send(t->fd, msg, h + len, MSG_NOSIGNAL | MSG_DONTWAIT); /* syslogd restarted */
		if (w < 0)
			note_failure(s, t, errno);
	}
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

/* Is the table at idx a read-only view of a list or map (procwarden.event
 * hands argv, args, env, caps and ancestors out as views)? If so, the
 * table it shows is pushed. Stack: [-0, +(1|0)] */
static bool push_view(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return false;
	lua_getfield(L, -1, "__name");
	bool view = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "procwarden.view") == 0;
	lua_pop(L, 1);
	if (view && lua_getfield(L, -1, "__index") == LUA_TTABLE) { /* mt, shown */
		lua_remove(L, -2);
		return true;
	}
	lua_pop(L, view ? 2 : 1);
	return false;
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
		if (push_view(L, idx)) { /* a read-only list or map: what it shows */
			json_t *v = json_of(L, -1, depth);
			lua_pop(L, 1);
			return v;
		}
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

/* o[k] = v (taking v). A name that is not UTF-8 (an environment
 * variable's, chosen by the process) is kept with U+FFFD in place of the
 * bad bytes: jansson refuses it as it is, which would drop the field. */
static void set_field(json_t *o, const char *k, size_t klen, json_t *v)
{
	bool ascii = true;
	for (size_t i = 0; i < klen && ascii; i++)
		ascii = (unsigned char)k[i] - 1u < 0x7fu;
	if (ascii) {
		json_object_setn_new_nocheck(o, k, klen, v);
		return;
	}
	json_t *key = pw_json_string(k, klen);
	if (!key) {
		json_decref(v);
		return;
	}
	json_object_setn_new_nocheck(o, json_string_value(key), json_string_length(key), v);
	json_decref(key);
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
			size_t klen;
			const char *k = lua_tolstring(L, -2, &klen);
			json_t *v = k[0] != '_' ? json_of(L, -1, depth) : NULL;
			if (v)
				set_field(o, k, klen, v);
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

/* ---- text lines --------------------------------------------------------- */

/* Push the raw field k of the event or process object at idx (its store:
 * no lazy read, no /proc access); returns its type. */
static int raw_field(lua_State *L, int idx, const char *k)
{
	idx = lua_absindex(L, idx);
	if (lua_getmetatable(L, idx)) {
		if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
			lua_pushstring(L, k);
			int t = lua_rawget(L, -2);
			lua_replace(L, -3);
			lua_pop(L, 1);
			return t;
		}
		lua_pop(L, 2);
	}
	lua_pushstring(L, k);
	return lua_rawget(L, idx);
}

/* The string at the stack top into b, cut to keep bytes; pops it. */
static void put_top(struct buf *b, lua_State *L, size_t keep)
{
	size_t n;
	const char *v = lua_tolstring(L, -1, &n);
	if (v)
		put_cut(b, v, strnlen(v, n), keep, CUT_TEXT);
	lua_pop(L, 1);
}

/* "(pid 4242, user bob) " from the event, what it holds already. */
static void put_who(struct buf *b, lua_State *L, int event)
{
	if (raw_field(L, event, "pid") == LUA_TNUMBER) {
		char num[32];
		snprintf(num, sizeof num, "(pid %lld", (long long)lua_tointeger(L, -1));
		buf_str(b, num);
		lua_pop(L, 1);
		if (raw_field(L, event, "user") == LUA_TSTRING) {
			buf_str(b, ", user ");
			put_top(b, L, 64);
		} else {
			lua_pop(L, 1);
			if (raw_field(L, event, "uid") == LUA_TNUMBER) {
				snprintf(num, sizeof num, ", uid %lld", (long long)lua_tointeger(L, -1));
				buf_str(b, num);
			}
			lua_pop(L, 1);
		}
		buf_str(b, ") ");
		return;
	}
	lua_pop(L, 1);
}

/* "[killed, exec failed: why] " from the results list: what each effect
 * did ("done", or its name) and why it failed. */
static void put_results(struct buf *b, lua_State *L, int results, size_t max)
{
	size_t start = b->n;
	lua_Integer n = (lua_Integer)lua_rawlen(L, results);
	buf_str(b, "[");
	for (lua_Integer i = 1; i <= n; i++) {
		if (b->n - start > max) {
			buf_str(b, "\xe2\x80\xa6");
			break;
		}
		if (lua_rawgeti(L, results, i) != LUA_TTABLE) {
			lua_pop(L, 1);
			continue;
		}
		if (i > 1)
			buf_str(b, ", ");
		if (lua_getfield(L, -1, "done") != LUA_TSTRING) {
			lua_pop(L, 1);
			lua_getfield(L, -1, "name");
		}
		if (lua_type(L, -1) == LUA_TSTRING)
			put_top(b, L, 64);
		else
			lua_pop(L, 1);
		lua_getfield(L, -1, "ok");
		bool ok = lua_toboolean(L, -1);
		lua_pop(L, 1);
		if (!ok) {
			buf_str(b, " failed: ");
			if (lua_getfield(L, -1, "error") == LUA_TSTRING)
				put_top(b, L, 256);
			else
				lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	buf_str(b, "] ");
}

/* `<time> <level> <rule>: <msg>\n`. A message too long for the line is
 * led by who it is about and what was done, then cut (put_text_within). */
static void emit_text(struct pw_sink *s, lua_State *L, const char *when, const char *level,
		      const char *rule, const char *text, const struct pw_emit_extra *extra)
{
	struct buf b = {0};
	buf_str(&b, when);
	buf_str(&b, " ");
	buf_str(&b, level);
	buf_str(&b, " ");
	put_cut(&b, rule, strlen(rule), RULE_MAX, CUT_TEXT);
	buf_str(&b, ": ");
	if (b.n + width(text, strlen(text), CUT_TEXT) + 1 > TEXT_LINE_MAX) {
		s->st.cut++;
		if (extra && L && lua_checkstack(L, 8)) {
			size_t lead = b.n;
			if (extra->event)
				put_who(&b, L, extra->event);
			if (extra->results)
				put_results(&b, L, extra->results, SUMMARY_MAX - (b.n - lead));
		}
		put_text_within(&b, text, strlen(text), TEXT_LINE_MAX - 1 - b.n, CUT_TEXT);
	} else {
		put_escaped(&b, text, strlen(text));
	}
	buf_str(&b, "\n");
	if (b.oom) {
		s->st.failures++;
	} else {
		write_streams(s, b.p, b.n);
		if (has_syslog(s))
			write_syslog(s, level, b.p, b.n - 1);
		s->st.lines++;
	}
	free(b.p);
}

/* ---- JSON records that must fit (syslog) --------------------------------- */

struct nodes {
	json_t **v;
	size_t n, cap;
};

static void nodes_add(struct nodes *ns, json_t *j)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 64;
		json_t **v = realloc(ns->v, cap * sizeof *v);
		if (!v)
			return;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n++] = j;
}

/* Every string value under j but the record's msg (cut last, by words),
 * and the lists and maps at depth >= 2 (inside the event: argv, env, a
 * parent's fields), never the record's own keys. Parents come before
 * their children. */
static void collect(json_t *j, int depth, struct nodes *strs, struct nodes *boxes)
{
	if (json_is_string(j)) {
		nodes_add(strs, j);
	} else if (json_is_array(j)) {
		if (depth >= 2)
			nodes_add(boxes, j);
		for (size_t i = 0; i < json_array_size(j); i++)
			collect(json_array_get(j, i), depth + 1, strs, boxes);
	} else if (json_is_object(j)) {
		if (depth >= 2)
			nodes_add(boxes, j);
		const char *k;
		json_t *v;
		json_object_foreach(j, k, v)
			if (depth > 0 || strcmp(k, "msg") != 0)
				collect(v, depth + 1, strs, boxes);
	}
}

/* Cut the longest strings, all to one length, to remove about need bytes.
 * false when none is long enough to cut. */
static bool cut_strings(struct nodes *strs, size_t need)
{
	size_t *len = malloc((strs->n ? strs->n : 1) * sizeof *len);
	if (!len)
		return false;
	for (size_t i = 0; i < strs->n; i++)
		len[i] = json_string_length(strs->v[i]);
	size_t level = cut_level(len, strs->n, need, WORD_MIN);
	for (size_t i = 0; level && i < strs->n; i++) {
		if (len[i] <= level + MARK_MAX)
			continue;
		struct buf b = {0};
		put_cut(&b, json_string_value(strs->v[i]), len[i], level + MARK_MAX, CUT_JSON);
		if (!b.oom)
			json_string_setn_nocheck(strs->v[i], b.p, b.n);
		free(b.p);
	}
	free(len);
	return level != 0;
}

/* Is j one of the "…[+N items]" markers trim_boxes made? Its N, or 0. */
static size_t mark_count(const struct nodes *marks, json_t *j)
{
	for (size_t i = 0; j && i < marks->n; i++) {
		size_t c = 0;
		if (marks->v[i] == j && sscanf(json_string_value(j), "\xe2\x80\xa6[+%zu items]", &c) == 1)
			return c;
	}
	return 0;
}

/* A new marker for n items, kept in marks (a reference held, so its
 * address is never reused while json_fit runs). */
static json_t *new_mark(struct nodes *marks, size_t n)
{
	char text[48];
	snprintf(text, sizeof text, "\xe2\x80\xa6[+%zu items]", n);
	json_t *m = json_string(text);
	if (m) {
		size_t before = marks->n;
		nodes_add(marks, m);
		if (marks->n > before)
			json_incref(m);
	}
	return m;
}

/* Halve a list: its middle goes, one marker says how many items in all. */
static void trim_array(json_t *j, struct nodes *marks)
{
	size_t n = json_array_size(j), gone = 0;
	json_t *a = json_array();
	if (!a)
		return;
	for (size_t k = 0; k < n; k++) { /* the earlier markers out, their counts kept */
		json_t *v = json_array_get(j, k);
		size_t c = mark_count(marks, v);
		if (c)
			gone += c;
		else
			json_array_append(a, v);
	}
	n = json_array_size(a);
	size_t keep = n / 2, head = keep / 2, tail = keep - head;
	json_array_clear(j);
	for (size_t k = 0; k < n; k++) {
		if (k == head)
			json_array_append_new(j, new_mark(marks, gone + n - keep));
		if (k < head || k >= n - tail)
			json_array_append(j, json_array_get(a, k));
	}
	json_decref(a);
}

/* Halve a map: its middle keys go, the key "…" says how many in all. */
static void trim_object(json_t *j, struct nodes *marks)
{
	static const char key[] = "\xe2\x80\xa6";
	size_t gone = mark_count(marks, json_object_get(j, key));
	if (gone)
		json_object_del(j, key);
	size_t n = json_object_size(j), keep = n / 2, head = keep / 2, tail = keep - head, k = 0;
	void *it = json_object_iter(j);
	while (it) {
		void *next = json_object_iter_next(j, it);
		if (k >= head && k < n - tail)
			json_object_del(j, json_object_iter_key(it));
		k++;
		it = next;
	}
	json_object_set_new(j, key, new_mark(marks, gone + n - keep));
}

/* Halve every list or map of more than 8 entries. Children first: a
 * parent's trim may free them. false when none is that long. */
static bool trim_boxes(struct nodes *boxes, struct nodes *marks)
{
	bool did = false;
	for (size_t i = boxes->n; i-- > 0;) {
		json_t *j = boxes->v[i];
		size_t n = json_is_array(j) ? json_array_size(j) : json_object_size(j);
		if (n <= 9) /* 8 entries and a marker */
			continue;
		did = true;
		if (json_is_array(j))
			trim_array(j, marks);
		else
			trim_object(j, marks);
	}
	return did;
}

/* The event reduced to who and what: when nothing else made it fit. */
static bool shrink_event(json_t *o)
{
	json_t *ev = json_object_get(o, "event");
	if (!json_is_object(ev) || json_object_get(ev, "cut"))
		return false;
	json_t *small = json_object();
	static const char *const keep[] = {"type", "pid", "tgid", "uid", "user", "exe", "ppid", "start_time"};
	for (size_t i = 0; small && i < sizeof keep / sizeof keep[0]; i++) {
		json_t *v = json_object_get(ev, keep[i]);
		if (v && !json_is_object(v) && !json_is_array(v))
			json_object_set(small, keep[i], v);
	}
	if (!small)
		return false;
	json_object_set_new(small, "cut", json_true());
	json_object_set_new(o, "event", small);
	return true;
}

/* The record's msg made about need bytes shorter, by words
 * (put_text_within). false when it cannot be. */
static bool cut_msg(json_t *o, size_t need)
{
	json_t *msg = json_object_get(o, "msg");
	size_t n = json_is_string(msg) ? json_string_length(msg) : 0;
	if (n <= need + WORD_MIN)
		return false;
	struct buf b = {0};
	put_text_within(&b, json_string_value(msg), n, n - need, CUT_JSON);
	bool ok = !b.oom && b.n < n;
	if (ok)
		json_string_setn_nocheck(msg, b.p, b.n);
	free(b.p);
	return ok;
}

/* The last resort: time, kind, rule, priority and the message's start. */
static char *json_minimal(json_t *o, size_t max)
{
	static const char *const keep[] = {"time", "kind", "rule", "priority", "msg"};
	for (size_t room = max / 8; room > 2 * MARK_MAX; room /= 2) { /* escapes may widen them */
		json_t *m = json_object();
		for (size_t i = 0; m && i < sizeof keep / sizeof keep[0]; i++) {
			json_t *v = json_object_get(o, keep[i]);
			if (!json_is_string(v))
				continue;
			struct buf b = {0};
			put_cut(&b, json_string_value(v), json_string_length(v), room, CUT_JSON);
			if (!b.oom)
				json_object_set_new(m, keep[i], json_stringn_nocheck(b.p, b.n));
			free(b.p);
		}
		if (!m)
			return NULL;
		json_object_set_new(m, "cut", json_true());
		char *d = json_dumps(m, JSON_COMPACT);
		json_decref(m);
		if (!d || strlen(d) <= max)
			return d;
		free(d);
	}
	return NULL;
}

/* The compact dump of o in at most max bytes, o cut as needed (in place):
 * strings, then the message, then lists and maps, then the event; always
 * valid JSON. NULL
 * when out of memory. */
static char *json_fit(json_t *o, size_t max)
{
	json_object_set_new(o, "cut", json_true());
	struct nodes marks = {0};
	char *fit = NULL;
	bool strings = true, boxes = true, event = true;
	for (int round = 0; round < 40 && !fit; round++) {
		char *d = json_dumps(o, JSON_COMPACT);
		if (!d)
			break;
		size_t n = strlen(d);
		if (n <= max) {
			fit = d;
			break;
		}
		free(d);
		struct nodes strs = {0}, bxs = {0};
		collect(o, 0, &strs, &bxs);
		bool progress = false;
		if (strings)
			progress = strings = cut_strings(&strs, n - max + MARK_MAX);
		if (!progress)
			progress = cut_msg(o, n - max + MARK_MAX);
		if (!progress && boxes) {
			progress = boxes = trim_boxes(&bxs, &marks);
			strings = true; /* the kept entries may be cut further */
		}
		if (!progress && event)
			progress = event = shrink_event(o);
		free(strs.v);
		free(bxs.v);
		if (!progress)
			break;
	}
	for (size_t i = 0; i < marks.n; i++)
		json_decref(marks.v[i]);
	free(marks.v);
	return fit ? fit : json_minimal(o, max);
}

static char *with_newline(char *line, size_t *len)
{
	size_t n = strlen(line);
	char *nl = realloc(line, n + 2);
	if (!nl) {
		free(line);
		return NULL;
	}
	nl[n] = '\n';
	nl[n + 1] = 0;
	*len = n + 1;
	return nl;
}

static void emit_json(struct pw_sink *s, lua_State *L, const char *when, const char *level,
		      const char *rule, const char *kind, const char *text, const struct pw_emit_extra *extra)
{
	json_t *o = json_object();
	if (!o) {
		s->st.failures++;
		return;
	}
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
	size_t n = 0;
	char *line = json_dumps(o, JSON_COMPACT);
	line = line ? with_newline(line, &n) : NULL;
	if (!line) { /* out of memory: counted */
		json_decref(o);
		s->st.failures++;
		return;
	}
	write_streams(s, line, n);
	if (has_syslog(s)) {
		char head[SYSLOG_HEAD_MAX + 8];
		size_t max = SYSLOG_MAX - syslog_head(level, head, sizeof head);
		if (n - 1 > max) {
			s->st.cut++;
			free(line);
			line = json_fit(o, max);
			n = line ? strlen(line) + 1 : 0;
		}
		if (line)
			write_syslog(s, level, line, n - 1);
		else
			s->st.failures++;
	}
	s->st.lines++;
	free(line);
	json_decref(o);
}

void sink_emit(struct pw_sink *s, lua_State *L, const char *level, const char *rule,
	       const char *kind, const char *text, const struct pw_emit_extra *extra)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double now = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	char when[40];
	sink_format_time(now, when, sizeof when);
	if (s->fmt == PW_FMT_TEXT)
		emit_text(s, L, when, level, rule, text, extra);
	else
		emit_json(s, L, when, level, rule, kind, text, extra);
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
