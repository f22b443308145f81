/* replay.c: JSON lines in and out. record_event_json builds the line of one
 * event (kernel fields + the process context captured at the time: exe,
 * argv, ids, names, cgroup ...), used by --record and --dump=json.
 * replay_line_push turns such a line back into a Lua event table; anything
 * malformed is refused with a reason, never half-used. */
#include "replay.h"

#include <errno.h>
#include <lauxlib.h>
#include <pwd.h>
#include <stdbool.h>
#include <string.h>

#include "core.h"
#include "sink.h"

/* ---- record ------------------------------------------------------------ */

static void set_int(json_t *o, const char *k, json_int_t v)
{
	json_object_set_new_nocheck(o, k, json_integer(v));
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v && *v)
		json_object_set_new_nocheck(o, k, pw_json_string(v, strlen(v)));
}

/* User name of uid, through a small direct-mapped cache. */
static const char *user_name(uint32_t uid)
{
	static struct { uint32_t uid; bool used; char name[64]; } cache[64];
	unsigned slot = uid % 64;
	if (cache[slot].used && cache[slot].uid == uid)
		return cache[slot].name;
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || !res)
		snprintf(cache[slot].name, sizeof cache[slot].name, "%u", uid);
	else
		snprintf(cache[slot].name, sizeof cache[slot].name, "%s", pw.pw_name);
	cache[slot].uid = uid;
	cache[slot].used = true;
	return cache[slot].name;
}

static void add_kernel_fields(json_t *o, const struct pw_event *ev, int64_t wall_offset_ns)
{
	json_object_set_new_nocheck(o, "type", json_string(pw_event_type_name(ev->type)));
	set_int(o, "pid", ev->pid);
	set_int(o, "tgid", ev->tgid);
	set_int(o, "cpu", ev->cpu);
	set_int(o, "ktime_ns", (json_int_t)ev->ktime_ns);
	json_object_set_new_nocheck(o, "time", json_real((double)ev->ktime_ns / 1e9 + (double)wall_offset_ns / 1e9));
	if (ev->flags & PW_EVF_STARTUP)
		json_object_set_new_nocheck(o, "startup", json_true());
	struct pw_field f[PW_EVENT_FIELDS_MAX];
	int nf = pw_event_fields(ev, f);
	for (int i = 0; i < nf; i++) {
		if (ev->type == PW_EV_ACK)
			break; /* acks are never recorded */
		json_object_set_new_nocheck(o, f[i].name, f[i].boolean ? json_boolean(f[i].value)
									 : json_integer((json_int_t)f[i].value));
	}
	if (ev->type == PW_EV_COMM)
		set_str(o, "comm", ev->u.comm.comm);
}

static void add_ctx_fields(json_t *o, const struct pw_event *ev, const struct pw_ctx *c)
{
	const struct pw_image *img = c->img;
	if (img) {
		set_str(o, "exe", img->exe);
		set_str(o, "cgroup", img->cgroup);
		set_str(o, "tty", img->tty);
		set_str(o, "exe_fs", img->exe_fs);
		set_str(o, "exe_error", img->exe_error);
		if (img->exe_stat) {
			set_int(o, "exe_uid", img->exe_uid);
			set_int(o, "exe_gid", img->exe_gid);
			set_int(o, "exe_mode", img->exe_mode);
		}
		if (img->argv_len) {
			json_t *a = json_array();
			size_t start = 0;
			for (size_t k = 0; a && k < img->argv_len; k++)
				if (img->argv[k] == 0) {
					json_array_append_new(a, pw_json_string(img->argv + start, k - start));
					start = k + 1;
				}
			json_object_set_new_nocheck(o, "argv", a);
			json_object_set_new_nocheck(o, "argv_truncated", json_boolean(img->argv_truncated));
		}
	}
	set_str(o, "uncovered", c->uncovered);
	if (c->ppid)
		set_int(o, "ppid", c->ppid);
	if (c->pgid)
		set_int(o, "pgid", c->pgid);
	if (c->sid)
		set_int(o, "sid", c->sid);
	if (c->start_time)
		set_int(o, "start_time", (json_int_t)c->start_time);
	if (c->creds_known) {
		set_int(o, "uid", c->ruid);
		set_int(o, "euid", c->euid);
		set_int(o, "gid", c->rgid);
		set_int(o, "egid", c->egid);
		set_str(o, "user", user_name(c->ruid));
		set_str(o, "euser", user_name(c->euid));
	}
	if (ev->type != PW_EV_COMM)
		set_str(o, "comm", c->comm);
	if (c->has_prev) {
		bool uid = ev->type == PW_EV_UID;
		set_int(o, uid ? "prev_ruid" : "prev_rgid", c->prev_real);
		set_int(o, uid ? "prev_euid" : "prev_egid", c->prev_effective);
	}
}

#define MAX_LINEAGE 16

/* A process object of the table: its identity, program and ids. */
static json_t *process_json(const struct pw_proc *p)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	struct pw_ctx c;
	ptable_ctx_of(p, &c);
	struct pw_event ev = {.type = PW_EV_EXEC, .pid = p->tgid, .tgid = p->tgid};
	set_int(o, "pid", p->tgid);
	set_int(o, "tgid", p->tgid);
	add_ctx_fields(o, &ev, &c);
	ptable_ctx_release(&c);
	return o;
}

/* "parent" and "ancestors" (nearest first), as far as the table knows
 * them; a parent that started after its child is not its parent. */
static void add_lineage(json_t *o, struct pw_ptable *pt, const struct pw_ctx *c)
{
	json_t *list = json_array();
	pid_t ppid = c->ppid;
	uint64_t child_start = c->start_time;
	for (int depth = 0; list && depth < MAX_LINEAGE && ppid > 0; depth++) {
		const struct pw_proc *p = ptable_get(pt, ppid);
		if (!p || (child_start && p->start_time && p->start_time > child_start))
			break;
		json_t *pj = process_json(p);
		if (!pj)
			break;
		if (depth == 0)
			json_object_set_nocheck(o, "parent", pj);
		json_array_append_new(list, pj);
		child_start = p->start_time;
		if (p->ppid == p->tgid)
			break;
		ppid = p->ppid;
	}
	if (list && json_array_size(list) > 0)
		json_object_set_new_nocheck(o, "ancestors", list);
	else
		json_decref(list);
}

json_t *record_event_json(const struct pw_event *ev, const struct pw_ctx *ctx, struct pw_ptable *pt,
			  int64_t wall_offset_ns)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	add_kernel_fields(o, ev, wall_offset_ns);
	if (ctx && ctx->known) {
		add_ctx_fields(o, ev, ctx);
		if (pt)
			add_lineage(o, pt, ctx);
	}
	return o;
}

int record_write(FILE *out, const struct pw_event *ev, const struct pw_ctx *ctx, struct pw_ptable *pt,
		 int64_t wall_offset_ns)
{
	json_t *o = record_event_json(ev, ctx, pt, wall_offset_ns);
	if (!o) {
		errno = ENOMEM;
		return -1;
	}
	int r = json_dumpf(o, out, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (r < 0 || fputc('\n', out) == EOF)
		return -1;
	return 0;
}

/* ---- replay ------------------------------------------------------------ */

#define MAX_DEPTH 8

/* Push the Lua form of v. Objects become tables marked recorded (process
 * objects such as "parent"); arrays become lists. 0, or -1 when too deep. */
static int push_json(lua_State *L, json_t *v, int depth)
{
	if (depth > MAX_DEPTH)
		return -1;
	luaL_checkstack(L, 4, "replay: nesting");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		lua_createtable(L, 0, (int)json_object_size(v));
		const char *k;
		json_t *item;
		json_object_foreach(v, k, item) {
			if (k[0] == '_') /* private names are the runtime's */
				continue;
			lua_pushstring(L, k);
			if (push_json(L, item, depth + 1) < 0)
				return -1;
			lua_rawset(L, -3);
		}
		lua_pushliteral(L, "_replay");
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
		return 0;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(v);
		lua_createtable(L, n > 4096 ? 4096 : (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			if (push_json(L, json_array_get(v, i), depth + 1) < 0)
				return -1;
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		return 0;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		return 0;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		lua_pushboolean(L, json_is_true(v));
		return 0;
	case JSON_NULL:
		lua_pushnil(L);
		return 0;
	}
	return -1;
}

/* Field types a line must respect (others are taken as they come). */
static const char *const int_fields[] = {
	"pid", "tgid", "ppid", "pgid", "sid", "cpu", "ktime_ns", "start_time", "uid", "euid", "gid", "egid",
	"ruid", "rgid", "prev_ruid", "prev_euid", "prev_rgid", "prev_egid", "parent_pid", "parent_tgid",
	"child_pid", "child_tgid", "exit_code", "exit_signal", "exit_status", "term_signal", "tracer_pid",
	"tracer_tgid", "lost", "loginuid", "ns_pid", "exe_uid", "exe_gid", "exe_mode",
};
static const char *const str_fields[] = {
	"exe", "comm", "cwd", "user", "euser", "login_user", "cgroup", "container_id", "tty", "stdin",
	"stdout", "stderr", "sha256", "cmdline", "exe_fs", "exe_error", "uncovered",
};

/* NULL, or the name of the first field of the wrong type. */
static const char *bad_field(json_t *o, const char **want)
{
	for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
		json_t *v = json_object_get(o, int_fields[i]);
		if (v && !json_is_integer(v)) {
			*want = "an integer";
			return int_fields[i];
		}
	}
	for (size_t i = 0; i < sizeof str_fields / sizeof str_fields[0]; i++) {
		json_t *v = json_object_get(o, str_fields[i]);
		if (v && !json_is_string(v)) {
			*want = "a string";
			return str_fields[i];
		}
	}
	static const char *const lists[] = {"argv", "args"};
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(o, lists[i]);
		size_t k;
		json_t *item;
		if (!v)
			continue;
		if (!json_is_array(v)) {
			*want = "a list of strings";
			return lists[i];
		}
		json_array_foreach(v, k, item)
			if (!json_is_string(item)) {
				*want = "a list of strings";
				return lists[i];
			}
	}
	return NULL;
}

static bool is_pid(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 0x7fffffff;
}

int replay_line_push(lua_State *L, const char *line, size_t len, char *err, size_t errlen)
{
	if (len > PW_REPLAY_MAX_LINE) {
		snprintf(err, errlen, "line longer than %u bytes", PW_REPLAY_MAX_LINE);
		return 0;
	}
	json_error_t jerr;
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		snprintf(err, errlen, "not JSON: %s (column %d)", jerr.text, jerr.column);
		return 0;
	}
	int ok = 0;
	json_t *type = json_object_get(o, "type");
	int t;
	const char *want = NULL, *bad = json_is_object(o) ? bad_field(o, &want) : NULL;
	if (!json_is_object(o)) {
		snprintf(err, errlen, "not a JSON object");
	} else if (bad) {
		snprintf(err, errlen, "field \"%s\" must be %s", bad, want);
	} else if (!json_is_string(type)) {
		snprintf(err, errlen, "no \"type\" string");
	} else if ((t = pw_event_type_from_name(json_string_value(type))) < 0 || t == PW_EV_ACK) {
		snprintf(err, errlen, "unknown event type \"%s\"", json_string_value(type));
	} else if (t != PW_EV_OVERFLOW && !is_pid(json_object_get(o, "pid"))) {
		snprintf(err, errlen, "no valid \"pid\"");
	} else if (json_object_get(o, "tgid") && !is_pid(json_object_get(o, "tgid"))) {
		snprintf(err, errlen, "no valid \"tgid\"");
	} else {
		int top = lua_gettop(L);
		if (push_json(L, o, 0) < 0) {
			lua_settop(L, top);
			snprintf(err, errlen, "nested deeper than %d levels", MAX_DEPTH);
		} else {
			/* defaults the kernel always gives */
			if (!json_object_get(o, "tgid") && json_object_get(o, "pid")) {
				lua_pushliteral(L, "tgid");
				lua_pushinteger(L, (lua_Integer)json_integer_value(json_object_get(o, "pid")));
				lua_rawset(L, -3);
			}
			lua_getfield(L, -1, "pid");
			lua_getfield(L, -2, "tgid");
			bool thread = !lua_rawequal(L, -1, -2);
			lua_pop(L, 2);
			lua_pushliteral(L, "thread");
			lua_pushboolean(L, thread);
			lua_rawset(L, -3);
			if (!json_object_get(o, "startup")) {
				lua_pushliteral(L, "startup");
				lua_pushboolean(L, 0);
				lua_rawset(L, -3);
			}
			ok = 1;
		}
	}
	json_decref(o);
	return ok;
}
