/* ptable.h: the process table (keyed by tgid, identity = tgid + start time)
 * fed by fork/exec/exit/comm/uid/gid/ptrace events and a /proc scan, and
 * the per-event snapshot of a process's context (struct pw_ctx). */
#ifndef PW_PTABLE_H
#define PW_PTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"

#define PW_PTABLE_MAX 65536           /* processes tracked at most */
#define PW_IMAGE_BYTES_MAX (64u << 20) /* exe+argv+cgroup bytes kept at most */

/* What a process runs, captured at its exec (or by the scan): immutable and
 * shared (a forked child runs its parent's image until it execs). */
struct pw_image {
	unsigned refs;
	bool argv_truncated;
	uint32_t argv_len; /* bytes of argv: arguments, each NUL-terminated */
	size_t bytes;      /* accounted size */
	uint64_t *acct;    /* the owning table's byte counter */
	char *exe;         /* NULL when unknown */
	char *cgroup;      /* NULL when unknown (set once, with the rest of the exec) */
	char tty[24];      /* "" when none (set once, with the rest of the exec) */
	/* the executable file, from the kernel's cached attributes (a FUSE
	 * server is never asked): valid when exe_stat */
	bool exe_stat;
	uint32_t exe_uid, exe_gid, exe_mode;
	char exe_fs[32];    /* filesystem type, "" unknown */
	char exe_error[24]; /* why exe could not be read ("ENAMETOOLONG"), "" when read or no exe */
	char argv[];
};

struct pw_proc {
	pid_t tgid, ppid, pgid, sid;
	uint64_t start_time; /* clock ticks since boot; 0 = not known yet */
	uint64_t start_est;  /* from the fork event's time, +-1 tick (start_time unknown) */
	uint64_t pid_ino;    /* pidfs inode of the process (Linux 6.9+): exact identity; 0 = unknown */
	uint32_t ruid, euid, rgid, egid;
	bool creds_known;
	bool exited;
	bool pinned_once; /* identity read through a pidfd (exec capture, ptable_get_exact) */
	bool needs_rest; /* exec seen, ids and cgroup not read yet */
	pid_t tracer; /* tgid of the tracer, 0 = none */
	char comm[PW_COMM_LEN + 1];
	struct pw_image *img;
	struct pw_proc *next; /* hash chain */
};

/* A process as it was at one event. */
struct pw_ctx {
	bool known; /* the table had (or captured) the process */
	pid_t tgid, ppid, pgid, sid;
	uint64_t start_time;
	uint64_t start_est;
	uint64_t pid_ino;
	uint32_t ruid, euid, rgid, egid;
	bool creds_known;
	bool has_prev; /* uid/gid events: the ids before the change */
	uint32_t prev_real, prev_effective;
	pid_t tracer;
	char comm[PW_COMM_LEN + 1];
	struct pw_image *img; /* a reference: release with ptable_ctx_release */
	const char *uncovered; /* an exec deny() did not decide before it ran: why (static) */
};

struct pw_ptable_stats {
	uint64_t entries;         /* processes tracked now */
	uint64_t full;            /* new processes not tracked: table at its cap */
	uint64_t captures;        /* exec contexts captured from /proc */
	uint64_t capture_failed;  /* of which the process was gone already */
	uint64_t image_trimmed;   /* argv cut to stay under the byte cap */
	uint64_t scans;           /* full /proc scans (start-up, resync after overflow) */
	uint64_t image_bytes;
};

struct pw_ptable;

struct pw_ptable *ptable_new(size_t max_entries);
void ptable_free(struct pw_ptable *t);

/* Apply one event to the table, in arrival order (for an exec, its stat,
 * exe and argv are read from /proc here, at once). When ctx is not NULL it receives the process
 * as it is right after the event. Exited processes stay until retire.
 * stale: an exec known to be followed by another of the same process
 * (/proc already shows the later program): its context stays unknown. */
void ptable_apply(struct pw_ptable *t, const struct pw_event *ev, struct pw_ctx *ctx, bool stale);
/* The exe of tgid, read already by the exec hot path (engine_prekill): the
 * next exec capture of tgid takes it instead of reading /proc/PID/exe, which
 * a process killed meanwhile no longer has. tgid 0 forgets the hint. */
void ptable_exe_hint(struct pw_ptable *t, pid_t tgid, const char *exe);
/* For an exec event: read the rest of the context (ids, cgroup) after the
 * fast rules ran; ctx (may be NULL) is updated to match. pidfd: one of the
 * exec's process opened when its event was received (before its exe was
 * read), or -1: used instead of opening one (ids and cgroup id come from
 * PIDFD_GET_INFO on it), not closed. */
bool ptable_complete(struct pw_ptable *t, const struct pw_event *ev, struct pw_ctx *ctx, int pidfd);
/* (false: /proc showed a later process at the pid, pidfd is that one's) */
/* After the event was dispatched: drop a process that exited. */
void ptable_retire(struct pw_ptable *t, const struct pw_event *ev);

/* Scan /proc: add what is missing, refresh what changed identity, drop
 * what is gone. each (may be NULL) is called for every live process found,
 * with is_new when the table did not know it (start-up and resync: synthetic
 * exec events). Returns processes seen or -errno. */
typedef void (*pw_scan_fn)(void *arg, const struct pw_proc *p, bool is_new);
int ptable_scan(struct pw_ptable *t, pw_scan_fn each, void *arg);

const struct pw_proc *ptable_get(struct pw_ptable *t, pid_t tgid);
/* The same, for a process object that may outlive this moment: an entry
 * known only from its fork (start time to +-1 tick) gets its exact start
 * time from /proc now, while its process still runs, so that a pid reused
 * a tick or more later is told apart. */
const struct pw_proc *ptable_get_exact(struct pw_ptable *t, pid_t tgid);
/* Up to cap tgids of live processes whose parent is tgid; returns how many. */
int ptable_children(struct pw_ptable *t, pid_t tgid, pid_t *out, int cap);
/* Snapshot of p (p may be NULL: ctx->known = false). */
void ptable_ctx_of(const struct pw_proc *p, struct pw_ctx *ctx);
void ptable_ctx_release(struct pw_ctx *ctx);

void image_ref(struct pw_image *img);
void image_unref(struct pw_image *img);

const struct pw_ptable_stats *ptable_stats(const struct pw_ptable *t);

#endif
