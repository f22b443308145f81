/* worker.h: run a call that can block on something a process controls (a
 * read of a FUSE file, of /proc/PID memory) in a worker thread, and wait
 * for it only up to a deadline.
 *
 * Each worker has a file descriptor table of its own, holding only 0, 1, 2
 * and what the call opens (and the fd it is handed): a worker stuck in an
 * uninterruptible wait (a FUSE server that never answers) keeps none of the
 * daemon's other descriptors open, so killing or stopping the daemon still
 * closes its fanotify groups, sockets and outputs. A worker given up on is
 * left to finish on its own (abandoned) and a new one is used, up to
 * PW_WORKER_MAX workers busy at once; beyond that a call is refused at
 * once. No call here waits past its deadline on a worker. */
#ifndef PW_WORKER_H
#define PW_WORKER_H

#include <stddef.h>
#include <stdint.h>

#define PW_WORKER_MAX 8                 /* workers running a call at once, stuck ones included */
#define PW_WORKER_ARG_MAX (64u << 10)    /* largest argument block */
#define PW_WORKER_HANDOVER_MS 20        /* worker_post waits this long at most for the fd to be taken */

/* The call, run in a worker: arg is the worker's own copy of the caller's
 * block; fd is the worker's own descriptor for the file the caller handed
 * over (-1 when none), closed by the worker after the call. It may use only
 * descriptors it opens (and closes) itself, fd, and 0-2: the daemon's other
 * descriptors do not exist in its table, so nothing that keeps a descriptor
 * in process-wide state (syslog(3), getpwnam(3), stdio FILEs on other
 * descriptors) may be used. It must not keep pointers into arg after it
 * returns, and arg must hold no pointer to memory its caller owns: a call
 * given up on still runs to its end, on its copy. */
typedef void (*pw_worker_fn)(void *arg, int fd);

struct pw_worker_stats {
	uint64_t calls;          /* worker_call and worker_post requests */
	uint64_t done;           /* worker_call results had by the deadline */
	uint64_t timeouts;       /* worker_call deadlines passed: the caller went on without the result */
	uint64_t refused;        /* no worker free (PW_WORKER_MAX busy or stuck): refused at once */
	uint64_t abandoned;      /* workers left running a call their caller gave up on */
	uint64_t recovered;      /* of those, workers that finished it later and were used again */
	uint64_t spawned;        /* worker threads started */
	uint64_t spawn_failures; /* a thread (or its own descriptor table) could not be made */
	uint64_t handover_failures; /* the caller's fd could not be handed over (or not in time): not run */
	uint64_t busy;           /* now: workers running a call (given up on or not) */
	uint64_t idle;           /* now: workers waiting for a call */
};

/* Run fn on a copy of arg[0..size) in a worker and wait for it until
 * CLOCK_MONOTONIC passes deadline_ns. fd >= 0: a descriptor of the caller's
 * (in the process's shared descriptor table, open for the whole call) that
 * the worker gets a copy of, of the same open file. 0: done, the copy
 * (with the call's results) written back to arg; -ETIMEDOUT: the deadline
 * passed, arg untouched (the call may still run to its end, on its copy);
 * -EAGAIN: no worker free; -ENOMEM, -E2BIG (size above PW_WORKER_ARG_MAX),
 * -errno of handing fd over (EBADF ...): not run. Waits on the worker at
 * most until deadline_ns: never blocks on what the call does. Callers must
 * share the descriptor table of the process's main thread (not a worker). */
int worker_call(pw_worker_fn fn, void *arg, size_t size, int fd, uint64_t deadline_ns);

/* Run fn on a copy of arg in a worker and do not wait for it: 0 once it is
 * handed over (with fd, once the worker holds its copy: the caller may
 * close fd then; this waits PW_WORKER_HANDOVER_MS at most), -EAGAIN when no
 * worker is free, -ETIMEDOUT when fd was not taken in time (not run). */
int worker_post(pw_worker_fn fn, const void *arg, size_t size, int fd);

const struct pw_worker_stats *worker_stats(void);

#endif
