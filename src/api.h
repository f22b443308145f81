/* api.h: the effects rules have on the system: signals sent through
 * pidfds after an identity check, and commands started without a shell. */
#ifndef PW_API_H
#define PW_API_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PW_EXEC_RUNNING_MAX 8   /* commands running at once */
#define PW_EXEC_QUEUE_MAX 64    /* commands waiting for a slot */
#define PW_EXEC_STDOUT_MAX (64u << 10)

struct pw_api_stats {
	uint64_t signals_sent, signals_refused, signals_failed;
	uint64_t signals_hot_path; /* of signals_sent: sent from C at the exec event (api_presignal) */
	uint64_t signals_unreported; /* of those, never reported by their rule (logged) */
	uint64_t execs_started, execs_queued, execs_refused, exec_timeouts, exec_failed;
};

struct pw_protect;

/* Signal pid through a pidfd, after checking that it is still the process
 * that started at start_time (clock ticks; 0 = not known; approx: known to
 * a tick either way, from a fork event's time) and, where pid_ino is known
 * (pidfs, proc_pidfd_ino), that it is that very process. Refuses pid 1,
 * procwarden itself, kernel threads and, once pinned, a process whose
 * executable prot protects (by inode: identity.h; prot may be NULL).
 * Returns 0, or -errno with *why set to a short reason ("refused: kernel
 * thread", "refused: protected (EXE)", "process changed (pid reused)",
 * strerror ...). *sent_ns: CLOCK_MONOTONIC just after sending. */
int api_signal(pid_t pid, uint64_t start_time, uint64_t pid_ino, bool approx, int sig, const char *rule,
	       const struct pw_protect *prot, const char **why, uint64_t *sent_ns);
/* The batch's pin of tgid is not its exec's process (a later process took
 * the pid before it was pinned): closed and forgotten. */
void api_pidfd_forget(pid_t tgid);
/* A refusal decided elsewhere (a dry run's protect{}): counted with the others. */
void api_count_refusal(void);

/* Pidfds opened when a batch's exec events arrived: a kill of one of those
 * processes during the batch uses its pidfd directly (identity pinned at
 * the event, no /proc read on the hot path). Closed by api_pidfds_clear. */
bool api_pidfd_add(pid_t tgid, int fd, uint64_t start_time);
/* The start time of tgid's batch pidfd, once the process table has it. */
void api_pidfd_set_start(pid_t tgid, uint64_t start_time);
void api_pidfds_clear(void);
/* The hot path from C: signal an exec's process through its batch pidfd at
 * once, before any Lua runs (engine_prekill). The same rule's api_signal of
 * the same signal then returns this result instead of sending again.
 * 0, -errno, or -1 when the process is not pinned in this batch. */
int api_presignal(pid_t tgid, int sig, const char *rule);

struct pw_exec_req {
	char **argv;      /* argv[0] is an absolute path; NULL-terminated */
	char **env;       /* NULL-terminated; NULL = empty environment */
	const char *user; /* run as this user (NULL: as procwarden) */
	double timeout;   /* seconds; 0 = none */
	size_t stdout_cap;
	/* Called once when the command ended (status as waitpid gives it, or
	 * -1 when it could not start), with what it wrote to stdout. */
	void (*done)(void *owner, int ref, int status, const char *out, size_t len);
	void *owner;
	int ref;
};

/* Start (or queue) a command. The request is copied. 0, or -1 with *why. */
int api_exec(struct ev_loop *loop, const struct pw_exec_req *req, const char **why);
/* The owner goes away: its pending callbacks are dropped (commands still
 * run to their end and are reaped). */
void api_exec_forget(void *owner);
const struct pw_api_stats *api_stats(void);

#endif
