/* decision.h: compiled decision programs. The deny() rules' plain match
 * entries (strings, globs, sets, numbers, prefix/suffix/contains/iglob,
 * not_ of those) on the facts known before a program runs, compiled into C
 * so the fanotify responder thread can answer most exec requests itself,
 * without the loop or Lua. What C cannot evaluate (a function, a `when`, a
 * field it does not hold) leaves the rule to Lua. */
#ifndef PW_DECISION_H
#define PW_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lua_State;

/* The facts a decision program reads. */
enum pw_dfield {
	PW_DF_EXE,        /* path of the file being executed */
	PW_DF_SHA256,     /* of its bytes (when a rule needs it) */
	PW_DF_EXE_UID,
	PW_DF_EXE_GID,
	PW_DF_EXE_MODE,
	PW_DF_PID,        /* the calling process (tgid) */
	PW_DF_PPID,
	PW_DF_UID,
	PW_DF_EUID,
	PW_DF_GID,
	PW_DF_EGID,
	PW_DF_PARENT_EXE,
	PW_DF_COUNT
};

/* One fact: absent (nil in Lua), a string, an integer, or unknown (C could
 * not read it: a rule that needs it is left to Lua). */
struct pw_dvalue {
	enum { PW_DV_NIL, PW_DV_STR, PW_DV_INT, PW_DV_UNKNOWN } type;
	const char *s;
	int64_t i;
};

/* Facts are asked for one at a time, when a test needs them (a rule whose
 * exe glob fails never reads the caller's /proc/PID/status). */
typedef void (*pw_dfacts_fn)(void *arg, enum pw_dfield f, struct pw_dvalue *out);

enum pw_dverdict {
	PW_DV_ALLOW,   /* no rule matches */
	PW_DV_DENY,    /* a rule matches: *rule names it */
	PW_DV_NEEDS_LUA /* a rule before any match needs Lua to decide */
};

struct pw_dprog;

/* The field a match key names ("exe", "parent.exe" ...), or -1; and back. */
int dprog_field(const char *key);
const char *dprog_field_name(enum pw_dfield f);
/* Build from the runtime's decision rules at stack index idx: a list of
 * { name, enabled, needs_lua, plan = { {field, test}, ... }, signal? } where
 * test is match.describe()'s plain description (signal: a pre-kill
 * program's, see engine_prekill). NULL on a malformed description
 * (message in err). The program starts with one reference. */
struct pw_dprog *dprog_from_lua(struct lua_State *L, int idx, char *err, size_t errlen);
void dprog_ref(struct pw_dprog *p);
void dprog_unref(struct pw_dprog *p);
/* Does some rule read sha256 (so the responder must hash)? */
bool dprog_needs_sha256(const struct pw_dprog *p);
/* Rules in the program, and of them those C decides alone. */
int dprog_rules(const struct pw_dprog *p, int *c_only);

/* Decide: rules in order; the first that matches denies, unless a rule
 * before it needs Lua (or a fact it tests is unknown). rule gets the deciding rule's name and signal (may
 * be NULL) its signal (PW_DV_DENY). */
enum pw_dverdict dprog_decide(const struct pw_dprog *p, pw_dfacts_fn facts, void *arg, const char **rule,
			      int *signal);

#endif
