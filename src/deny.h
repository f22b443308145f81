/* deny.h: pre-exec decisions through fanotify exec permission events. A
 * responder thread owns the fanotify fd and answers every request by its
 * deadline. It decides with the compiled decision program (decision.h)
 * where it can and hands the rest to the loop thread, where the decision
 * rules run in Lua. */
#ifndef PW_DENY_H
#define PW_DENY_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PW_DENY_TIMEOUT_MS 200 /* default --deny-timeout */
#define PW_DENY_BATCH 64       /* requests read and answered together */

struct pw_deny_stats {
	uint64_t requests;      /* exec permission requests seen */
	uint64_t decisions;     /* decided by the rules in time */
	uint64_t fast;          /* of which decided in the responder thread (C), without Lua */
	uint64_t denied;        /* answered FAN_DENY */
	uint64_t timeouts;      /* not decided by the deadline: answered by default */
	uint64_t hash_late;     /* sha256 not ready by the deadline: denied */
	uint64_t own;           /* procwarden's own execs: allowed at once */
	uint64_t filesystems;   /* filesystems marked now (the shared group) */
	uint64_t mark_failures; /* attempts to mark a filesystem that failed (retried at the next change) */
	uint64_t mark_hidden;   /* mounts whose mount point leads elsewhere (stacked over): not marked by path */
	uint64_t mark_skipped;  /* mounts below a FUSE mount whose walk was not cached: not walked */
	uint64_t fuse_groups;   /* FUSE filesystems answered by a group (and thread) of their own, now */
	uint64_t fuse_refused;  /* FUSE filesystems left uncovered: the group limit was reached */
	uint64_t fuse_requests; /* requests that came through a FUSE group */
	uint64_t fuse_defaulted;/* FUSE requests answered by default: the shared responder did not answer in time */
	uint64_t namespaces;    /* other mount namespaces known now */
	uint64_t ns_limit;      /* namespaces (or their watches) refused: a limit was reached */
	uint64_t ns_scans_at_exec; /* namespace scans made at once for an exec from an unknown namespace */
	uint64_t rule_errors;   /* decisions the rules failed to make: default answer */
	uint64_t outputs_dropped; /* denial lines not written: the loop fell behind */
};

/* A request as the loop sees it. */
struct pw_deny_req {
	pid_t pid;           /* the process calling execve (tgid) */
	char exe[4096];      /* path of the file being executed */
	bool have_sha256;
	bool hash_late;      /* a rule needs the hash and it was not had in time */
	char sha256[65];
	uid_t exe_uid;
	gid_t exe_gid;
	unsigned exe_mode;
	dev_t dev;
	ino_t ino;
	char exe_fs[32];     /* filesystem type of the file ("ext4", "tmpfs", "fuse.sshfs" ...), "" unknown */
	char exe_error[48];  /* why exe (or its attributes) could not be read: "ENAMETOOLONG" ..., "" when read */
	/* the caller's ids as the responder read them (have_ids): the Lua
	 * decision sees the same */
	bool have_ids;
	pid_t ppid;
	uid_t ruid, euid;
	gid_t rgid, egid;
	/* filled by the decision (responder thread or loop) */
	bool fast; /* decided by the compiled program in the responder thread */
	bool deny;
	bool error; /* the rules failed (error, budget): the default answer applies */
	char rule[128]; /* the deciding rule */
};

/* Decide one request (runs on the loop thread): set req->deny and
 * req->rule. After the answers of a round are written, done() is called
 * for each decided request (outputs, counters). */
typedef void (*pw_deny_decide_fn)(void *ctx, struct pw_deny_req *req);
typedef void (*pw_deny_done_fn)(void *ctx, const struct pw_deny_req *req, bool late);

struct pw_deny_config {
	struct ev_loop *loop;
	int timeout_ms;
	bool fail_closed;  /* late decisions deny */
	bool dry_run;      /* allow always; "would deny" */
	bool need_sha256;  /* some decision rule matches on sha256 */
	pw_deny_decide_fn decide;
	pw_deny_done_fn done;
	void *ctx;
};

struct pw_deny;
struct pw_dprog;

/* Start fanotify and the responder thread. NULL with a reason in err when
 * deny is unavailable (no CAP_SYS_ADMIN, no FAN_OPEN_EXEC_PERM ...). */
struct pw_deny *deny_start(const struct pw_deny_config *cfg, char *err, size_t errlen);
/* Rules changed (reload): sha256 needed or not. */
void deny_set_need_sha256(struct pw_deny *d, bool need);
/* The compiled decision program (decision.h) the responder decides with on
 * its own; what it cannot decide goes to the loop's decide(). Takes the
 * reference; NULL: everything goes to the loop. */
void deny_set_program(struct pw_deny *d, struct pw_dprog *prog);
/* On an exec event (kernel time ktime_ns): did the rules allow this exec in
 * time before it ran (an answer for pid at most a second before the event,
 * for the file it runs: its device and inode; or, the process being gone
 * already, exe, the path captured at the event, or with nothing captured
 * the pid alone)? Then the deny rules need not judge it again (no kill
 * after exec); the pid's other answers of that execve are spent. Also
 * makes sure the filesystem of pid's executable is marked (an exec seen
 * from an unmarked filesystem, in any mount namespace, is marked for next
 * time, and is never taken as decided). An exec from a mount namespace
 * not seen before has that namespace scanned and marked at once. When not
 * decided, *why (may be NULL) says why in a few words: "unmarked
 * filesystem", "memfd", "late", ... (a static string). */
bool deny_exec_seen(struct pw_deny *d, pid_t pid, const char *exe, uint64_t ktime_ns, const char **why);
const struct pw_deny_stats *deny_stats(const struct pw_deny *d);
/* Stop the thread and close fanotify (the kernel allows what was waiting). */
void deny_stop(struct pw_deny *d);

#endif
