/* decision.c: compiled decision programs (see decision.h): building one from
 * the Lua rules' match descriptions, and deciding an exec request with it.
 * The tests mirror lua/procwarden/match.lua exactly (same glob flags, same
 * string/number typing, nil matches nothing but not_); the spec
 * spec/decision_spec.lua checks C against Lua on the same values. */
#include "decision.h"

#include <fnmatch.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum dtest_kind { T_EQ, T_GLOB, T_IGLOB, T_PREFIX, T_SUFFIX, T_CONTAINS, T_NUM, T_SET, T_ANY, T_NOT };

struct dtest {
	enum dtest_kind kind;
	char *s;              /* T_EQ .. T_CONTAINS */
	size_t len;
	int64_t num;          /* T_NUM */
	bool num_never;       /* T_NUM of a value no integer equals (1.5) */
	char **strs;          /* T_SET (sorted) */
	int nstrs;
	int64_t *nums;        /* T_SET */
	int nnums;
	struct dtest *subs;   /* T_ANY, T_NOT (one) */
	int nsubs;
};

struct dentry {
	enum pw_dfield field;
	struct dtest test;
};

struct drule {
	char *name;
	bool enabled;
	bool lua; /* entries C cannot evaluate, or a `when`: Lua decides once C's entries hold */
	int signal; /* a pre-kill program's signal (0 for decision rules) */
	struct dentry *entries;
	int nentries;
};

struct pw_dprog {
	atomic_int refs;
	struct drule *rules;
	int nrules;
	bool needs_sha256;
};

static const char *const field_names[PW_DF_COUNT] = {
	[PW_DF_EXE] = "exe",       [PW_DF_SHA256] = "sha256", [PW_DF_EXE_UID] = "exe_uid",
	[PW_DF_EXE_GID] = "exe_gid", [PW_DF_EXE_MODE] = "exe_mode", [PW_DF_PID] = "pid",
	[PW_DF_PPID] = "ppid",     [PW_DF_UID] = "uid",       [PW_DF_EUID] = "euid",
	[PW_DF_GID] = "gid",       [PW_DF_EGID] = "egid",     [PW_DF_PARENT_EXE] = "parent.exe",
};

const char *dprog_field_name(enum pw_dfield f)
{
	return (unsigned)f < PW_DF_COUNT ? field_names[f] : "?";
}

int dprog_field(const char *key)
{
	if (strcmp(key, "tgid") == 0)
		return PW_DF_PID; /* the same at a decision: the calling process */
	if (strcmp(key, "parent.pid") == 0)
		return PW_DF_PPID;
	for (int f = 0; f < PW_DF_COUNT; f++)
		if (strcmp(key, field_names[f]) == 0)
			return f;
	return -1;
}

/* ---- tests ------------------------------------------------------------- */

static bool test_holds(const struct dtest *t, const struct pw_dvalue *v)
{
	switch (t->kind) {
	case T_NOT:
		return !test_holds(&t->subs[0], v);
	case T_ANY:
		for (int i = 0; i < t->nsubs; i++)
			if (test_holds(&t->subs[i], v))
				return true;
		return false;
	case T_NUM:
		return v->type == PW_DV_INT && !t->num_never && v->i == t->num;
	case T_SET:
		if (v->type == PW_DV_INT) {
			for (int i = 0; i < t->nnums; i++)
				if (t->nums[i] == v->i)
					return true;
			return false;
		}
		if (v->type == PW_DV_STR) {
			int lo = 0, hi = t->nstrs - 1;
			while (lo <= hi) {
				int mid = (lo + hi) / 2;
				int c = strcmp(v->s, t->strs[mid]);
				if (c == 0)
					return true;
				if (c < 0)
					hi = mid - 1;
				else
					lo = mid + 1;
			}
		}
		return false;
	default:
		break;
	}
	if (v->type != PW_DV_STR)
		return false; /* the string tests want a string (Lua: type(v) == "string") */
	size_t n = strlen(v->s);
	switch (t->kind) {
	case T_EQ:
		return n == t->len && memcmp(v->s, t->s, n) == 0;
	case T_GLOB:
		return fnmatch(t->s, v->s, 0) == 0;
	case T_IGLOB:
		return fnmatch(t->s, v->s, FNM_CASEFOLD) == 0;
	case T_PREFIX:
		return n >= t->len && memcmp(v->s, t->s, t->len) == 0;
	case T_SUFFIX:
		return n >= t->len && memcmp(v->s + n - t->len, t->s, t->len) == 0;
	case T_CONTAINS:
		return t->len == 0 || memmem(v->s, n, t->s, t->len) != NULL;
	default:
		return false;
	}
}

static void test_free(struct dtest *t)
{
	free(t->s);
	for (int i = 0; i < t->nstrs; i++)
		free(t->strs[i]);
	free(t->strs);
	free(t->nums);
	for (int i = 0; i < t->nsubs; i++)
		test_free(&t->subs[i]);
	free(t->subs);
}

/* ---- building from Lua ------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An integer a Lua number equals, if any (2.0 equals 2; 1.5 equals none). */
static bool lua_int_of(lua_State *L, int idx, int64_t *out)
{
	if (lua_isinteger(L, idx)) {
		*out = lua_tointeger(L, idx);
		return true;
	}
	lua_Number d = lua_tonumber(L, idx);
	if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
		return false;
	*out = (int64_t)d;
	return true;
}

/* A string without NUL (C facts are C strings: a test with a NUL in it
 * could never match a fact, nor could Lua's). */
static char *dup_lua_string(lua_State *L, int idx, size_t *len)
{
	const char *s = lua_tolstring(L, idx, len);
	if (!s || strlen(s) != *len)
		return NULL;
	return strdup(s);
}

/* The description at the top of the stack into t. 0, or -1 (err set).
 * Stack: [-0, +0] */
static int test_build(lua_State *L, struct dtest *t, char *err, size_t errlen, int depth)
{
	memset(t, 0, sizeof *t);
	if (!lua_checkstack(L, 4)) {
		snprintf(err, errlen, "test description too deeply nested");
		return -1;
	}
	if (depth > 32 || !lua_istable(L, -1) || lua_getfield(L, -1, "k") != LUA_TSTRING) {
		lua_pop(L, depth > 32 || !lua_istable(L, -1) ? 0 : 1);
		snprintf(err, errlen, "malformed test description");
		return -1;
	}
	static const char *const kinds[] = {"eq", "glob", "iglob", "prefix", "suffix", "contains",
					    "num", "set", "any", "not", NULL};
	const char *k = lua_tostring(L, -1);
	int kind = -1;
	for (int i = 0; kinds[i]; i++)
		if (strcmp(k, kinds[i]) == 0)
			kind = i;
	lua_pop(L, 1);
	if (kind < 0) {
		snprintf(err, errlen, "unknown test kind '%s'", k);
		return -1;
	}
	t->kind = (enum dtest_kind)kind;
	int rc = 0;
	switch (t->kind) {
	case T_NUM:
		lua_getfield(L, -1, "n");
		if (!lua_isnumber(L, -1))
			rc = -1;
		else
			t->num_never = !lua_int_of(L, -1, &t->num);
		lua_pop(L, 1);
		break;
	case T_SET:
		lua_getfield(L, -1, "list"); /* desc, list */
		if (!lua_istable(L, -1)) {
			rc = -1;
		} else {
			int n = (int)lua_rawlen(L, -1);
			t->strs = calloc((size_t)n + 1, sizeof *t->strs);
			t->nums = calloc((size_t)n + 1, sizeof *t->nums);
			for (int i = 1; i <= n && rc == 0 && t->strs && t->nums; i++) {
				if (lua_rawgeti(L, -1, i) == LUA_TNIL) { /* ipairs stops here, as Lua's set does */
					lua_pop(L, 1);
					break;
				}
				if (lua_type(L, -1) == LUA_TSTRING) {
					size_t len;
					char *s = dup_lua_string(L, -1, &len);
					if (s)
						t->strs[t->nstrs++] = s;
				} else if (lua_type(L, -1) == LUA_TNUMBER) {
					int64_t v;
					if (lua_int_of(L, -1, &v))
						t->nums[t->nnums++] = v;
				} else {
					rc = -1; /* match.describe() gives strings and numbers only */
				}
				lua_pop(L, 1);
			}
			if (!t->strs || !t->nums)
				rc = -1;
			else
				qsort(t->strs, (size_t)t->nstrs, sizeof *t->strs, cmp_str);
		}
		lua_pop(L, 1);
		break;
	case T_ANY:
	case T_NOT:
		lua_getfield(L, -1, "subs"); /* desc, subs */
		if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 ||
		    (t->kind == T_NOT && lua_rawlen(L, -1) != 1)) {
			rc = -1;
		} else {
			int n = (int)lua_rawlen(L, -1);
			t->subs = calloc((size_t)n, sizeof *t->subs);
			for (int i = 1; i <= n && rc == 0 && t->subs; i++) {
				lua_rawgeti(L, -1, i);             /* desc, subs, sub */
				rc = test_build(L, &t->subs[i - 1], err, errlen, depth + 1);
				t->nsubs = i;
				lua_pop(L, 1);
			}
			if (!t->subs)
				rc = -1;
		}
		lua_pop(L, 1);
		break;
	default: /* the string tests */
		lua_getfield(L, -1, "s");
		t->s = lua_type(L, -1) == LUA_TSTRING ? dup_lua_string(L, -1, &t->len) : NULL;
		lua_pop(L, 1);
		if (!t->s)
			rc = -1;
		break;
	}
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "malformed '%s' test", kinds[kind]);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct dentry *x = a, *y = b;
	return (int)x->field - (int)y->field;
}

static void rule_free(struct drule *r)
{
	free(r->name);
	for (int i = 0; i < r->nentries; i++)
		test_free(&r->entries[i].test);
	free(r->entries);
}

/* The rule description at the top of the stack into r. 0 or -1.
 * Stack: [-0, +0] */
static int rule_build(lua_State *L, struct drule *r, bool *sha256, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (!lua_checkstack(L, 6)) {
		snprintf(err, errlen, "out of Lua stack");
		return -1;
	}
	lua_getfield(L, -1, "name");
	r->name = lua_type(L, -1) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;
	lua_pop(L, 1);
	lua_getfield(L, -1, "enabled");
	r->enabled = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, -1, "needs_lua");
	r->lua = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, -1, "signal");
	r->signal = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (!r->name) {
		snprintf(err, errlen, "a decision rule without a name");
		return -1;
	}
	lua_getfield(L, -1, "plan"); /* rule, plan */
	int n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
	r->entries = calloc((size_t)n + 1, sizeof *r->entries);
	int rc = r->entries ? 0 : -1;
	for (int i = 1; i <= n && rc == 0; i++) {
		lua_rawgeti(L, -1, i);       /* rule, plan, entry */
		lua_getfield(L, -1, "field"); /* rule, plan, entry, field */
		int f = lua_type(L, -1) == LUA_TSTRING ? dprog_field(lua_tostring(L, -1)) : -1;
		lua_pop(L, 1);
		if (f < 0) {
			snprintf(err, errlen, "rule %s: a planned entry on a field C does not hold", r->name);
			rc = -1;
		} else {
			lua_getfield(L, -1, "test"); /* rule, plan, entry, test */
			struct dentry *en = &r->entries[r->nentries];
			en->field = (enum pw_dfield)f;
			rc = test_build(L, &en->test, err, errlen, 0);
			r->nentries++;
			*sha256 |= f == PW_DF_SHA256;
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	/* the file's facts first: a failing exe glob spares the /proc reads */
	if (rc == 0)
		qsort(r->entries, (size_t)r->nentries, sizeof *r->entries, cmp_entry);
	return rc;
}

struct pw_dprog *dprog_from_lua(lua_State *L, int idx, char *err, size_t errlen)
{
	err[0] = 0;
	idx = lua_absindex(L, idx);
	struct pw_dprog *p = calloc(1, sizeof *p);
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&p->refs, 1);
	int n = lua_istable(L, idx) ? (int)lua_rawlen(L, idx) : 0;
	p->rules = calloc((size_t)n + 1, sizeof *p->rules);
	if (!p->rules) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, i);
		int rc = rule_build(L, &p->rules[p->nrules], &p->needs_sha256, err, errlen);
		p->nrules++;
		lua_pop(L, 1);
		if (rc < 0) {
			if (!err[0])
				snprintf(err, errlen, "out of memory");
			dprog_unref(p);
			return NULL;
		}
	}
	return p;
}

void dprog_ref(struct pw_dprog *p)
{
	if (p)
		atomic_fetch_add(&p->refs, 1);
}

void dprog_unref(struct pw_dprog *p)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	for (int i = 0; i < p->nrules; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	free(p);
}

bool dprog_needs_sha256(const struct pw_dprog *p)
{
	return p && p->needs_sha256;
}

int dprog_rules(const struct pw_dprog *p, int *c_only)
{
	int n = 0;
	for (int i = 0; p && i < p->nrules; i++)
		n += !p->rules[i].lua;
	if (c_only)
		*c_only = n;
	return p ? p->nrules : 0;
}

/* ---- deciding ---------------------------------------------------------- */

enum pw_dverdict dprog_decide(const struct pw_dprog *p, pw_dfacts_fn facts, void *arg, const char **rule, int *signal)
{
	struct pw_dvalue memo[PW_DF_COUNT];
	bool asked[PW_DF_COUNT] = {false};
	*rule = NULL;
	for (int i = 0; i < p->nrules; i++) {
		const struct drule *r = &p->rules[i];
		if (!r->enabled)
			continue;
		bool holds = true;
		for (int j = 0; j < r->nentries && holds; j++) {
			enum pw_dfield f = r->entries[j].field;
			if (!asked[f]) {
				memo[f] = (struct pw_dvalue){.type = PW_DV_NIL};
				facts(arg, f, &memo[f]);
				asked[f] = true;
			}
			if (memo[f].type == PW_DV_UNKNOWN)
				return PW_DV_NEEDS_LUA; /* Lua reads it its own way */
			holds = test_holds(&r->entries[j].test, &memo[f]);
		}
		if (!holds)
			continue;
		if (r->lua)
			return PW_DV_NEEDS_LUA;
		*rule = r->name;
		if (signal)
			*signal = r->signal;
		return PW_DV_DENY;
	}
	return PW_DV_ALLOW;
}
