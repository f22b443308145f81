/* worker.c: the worker threads of worker.h. Each one first gives itself a
 * descriptor table of its own holding only 0-2: close_range(3, ~0U,
 * CLOSE_RANGE_UNSHARE) copies just those, so the daemon's other
 * descriptors are never even closed in it (a close of a FUSE file would be
 * a FLUSH request that can block; and the daemon's shared table never
 * holds a FUSE file anyway: such files are opened by workers only). A
 * descriptor a caller hands over is fetched with pidfd_getfd(2) from the
 * main thread's table (the shared one), the same open file.
 *
 * State, under one mutex: each worker slot is empty (no thread), idle
 * (waiting for a call) or busy. A call goes to an idle worker, or starts a
 * thread in an empty slot, or is refused. A caller that gives up marks its
 * job abandoned and leaves it to the worker, which frees it when the call
 * returns and goes back to idle. */
#include "worker.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define WORKER_STACK (256u << 10) /* the calls are small: a 64 KiB read buffer at most */

struct job {
	pw_worker_fn fn;
	int src_fd;      /* the caller's descriptor to hand over, -1 none */
	int err;         /* 0, or -errno: the handover failed, not run */
	bool taken;      /* the worker has its copy of src_fd (or failed to get it) */
	bool cancelled;  /* the caller gave up before the handover: do not take src_fd, do not run */
	bool done;       /* fn returned */
	bool abandoned;  /* nobody waits for the result: the worker frees the job */
	size_t size;
	unsigned char data[];
};

enum slot_state { SLOT_EMPTY, SLOT_IDLE, SLOT_BUSY };

struct slot {
	enum slot_state state;
	pthread_cond_t wake; /* a job was given */
	struct job *job;
	bool stuck;          /* the job's caller gave up on it */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t progress; /* CLOCK_MONOTONIC: some job was taken or done */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct slot slots[PW_WORKER_MAX];
static struct pw_worker_stats st;

static void init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&progress, &ca);
	for (int i = 0; i < PW_WORKER_MAX; i++)
		pthread_cond_init(&slots[i].wake, &ca);
	pthread_condattr_destroy(&ca);
}

/* A descriptor table of this thread's own with 0-2 only. Kernels before
 * 5.9 lack CLOSE_RANGE_UNSHARE: unshare, then close the inherited copies
 * (none of them a FUSE file: see the top). */
static int private_table(void)
{
	if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_UNSHARE) == 0)
		return 0;
	if (unshare(CLONE_FILES) < 0)
		return -errno;
	if (syscall(SYS_close_range, 3u, ~0u, 0) == 0)
		return 0;
	struct rlimit rl;
	long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
	for (long fd = 3; fd < max; fd++)
		close((int)fd);
	return 0;
}

/* Under mu: the worker's copy of the caller's descriptor, or -errno.
 * pidfd: the main thread's, or -errno of opening it. */
static int take_fd(struct job *j, int pidfd)
{
	if (pidfd < 0)
		return pidfd;
	int fd = (int)syscall(SYS_pidfd_getfd, pidfd, j->src_fd, 0);
	return fd >= 0 ? fd : -errno;
}

static void finish(struct slot *s, struct job *j)
{
	j->done = true;
	if (j->abandoned) {
		free(j);
		if (s->stuck)
			st.recovered++;
	} else {
		pthread_cond_broadcast(&progress);
	}
	s->job = NULL;
	s->stuck = false;
	s->state = SLOT_IDLE;
	st.busy--;
	st.idle++;
}

static void *worker_main(void *arg)
{
	struct slot *s = arg;
	int rc = private_table();
	/* the process's main thread shares the daemon's table: fds are taken from it */
	int pidfd = rc == 0 ? (int)syscall(SYS_pidfd_open, getpid(), 0) : -1;
	if (pidfd < 0)
		pidfd = -errno; /* fds cannot be handed over: those calls fail */
	pthread_mutex_lock(&mu);
	if (rc < 0) { /* sharing the daemon's table: must not run anything */
		st.spawn_failures++;
		struct job *j = s->job;
		j->err = rc;
		j->taken = true;
		s->state = SLOT_EMPTY; /* before finish() would make it idle */
		st.busy--;
		j->done = true;
		if (j->abandoned)
			free(j);
		else
			pthread_cond_broadcast(&progress);
		s->job = NULL;
		pthread_mutex_unlock(&mu);
		pw_log(PW_LOG_ERROR, "worker: no descriptor table of its own: %s", strerror(-rc));
		return NULL;
	}
	for (;;) {
		while (!s->job)
			pthread_cond_wait(&s->wake, &mu);
		struct job *j = s->job;
		int fd = -1;
		if (j->src_fd >= 0 && !j->cancelled) {
			fd = take_fd(j, pidfd);
			if (fd < 0) {
				j->err = fd;
				st.handover_failures++;
			}
			j->taken = true;
			pthread_cond_broadcast(&progress);
		}
		bool run = !j->cancelled && !j->err;
		pthread_mutex_unlock(&mu);
		if (run)
			j->fn(j->data, fd);
		if (fd >= 0)
			close(fd);
		pthread_mutex_lock(&mu);
		finish(s, j);
	}
	return NULL;
}

/* Under mu: start a thread for slot s, running j first. Signals blocked
 * (they are the loop's), detached: nobody joins a worker that may never
 * return. */
static int spawn(struct slot *s, struct job *j)
{
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return -ENOMEM;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, WORKER_STACK);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	s->job = j;
	s->state = SLOT_BUSY;
	pthread_t t;
	int r = pthread_create(&t, &attr, worker_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		s->job = NULL;
		s->state = SLOT_EMPTY;
		st.spawn_failures++;
		return -r;
	}
	st.spawned++;
	st.busy++;
	return 0;
}

/* Under mu: give j to an idle worker, or to a new one. */
static int dispatch(struct job *j)
{
	for (int i = 0; i < PW_WORKER_MAX; i++)
		if (slots[i].state == SLOT_IDLE) {
			slots[i].job = j;
			slots[i].state = SLOT_BUSY;
			st.idle--;
			st.busy++;
			pthread_cond_signal(&slots[i].wake);
			return 0;
		}
	for (int i = 0; i < PW_WORKER_MAX; i++)
		if (slots[i].state == SLOT_EMPTY)
			return spawn(&slots[i], j);
	st.refused++;
	return -EAGAIN;
}

static struct job *job_new(pw_worker_fn fn, const void *arg, size_t size, int fd)
{
	struct job *j = calloc(1, sizeof *j + size);
	if (!j)
		return NULL;
	j->fn = fn;
	j->src_fd = fd;
	j->size = size;
	if (size)
		memcpy(j->data, arg, size);
	return j;
}

static struct slot *slot_of(const struct job *j)
{
	for (int i = 0; i < PW_WORKER_MAX; i++)
		if (slots[i].job == j)
			return &slots[i];
	return NULL;
}

/* Under mu: wait until pred(j) or deadline_ns; true if pred held. */
static bool wait_for(struct job *j, bool (*pred)(const struct job *), uint64_t deadline_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u), .tv_nsec = (long)(deadline_ns % 1000000000u)};
	while (!pred(j))
		if (pthread_cond_timedwait(&progress, &mu, &ts) == ETIMEDOUT)
			return pred(j);
	return true;
}

static bool is_done(const struct job *j)
{
	return j->done;
}

static bool is_taken(const struct job *j)
{
	return j->taken || j->done;
}

/* Under mu, the caller gives up on j: the worker frees it. */
static void give_up(struct job *j)
{
	if (!j->taken)
		j->cancelled = true; /* src_fd is the caller's again: never taken now */
	j->abandoned = true;
	struct slot *s = slot_of(j);
	if (s && !s->stuck) {
		s->stuck = true;
		st.abandoned++;
	}
}

/* A job for fn, counted and handed to a worker. On success returns it with
 * mu held; on failure NULL, *err set, mu not held. detached: nobody waits
 * for the job, the worker frees it. */
static struct job *start(pw_worker_fn fn, const void *arg, size_t size, int fd, bool detached, int *err)
{
	if (size > PW_WORKER_ARG_MAX) {
		*err = -E2BIG;
		return NULL;
	}
	pthread_once(&once, init);
	struct job *j = job_new(fn, arg, size, fd);
	if (!j) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&mu);
	st.calls++;
	j->abandoned = detached;
	*err = dispatch(j);
	if (*err < 0) {
		pthread_mutex_unlock(&mu);
		free(j);
		return NULL;
	}
	return j;
}

int worker_call(pw_worker_fn fn, void *arg, size_t size, int fd, uint64_t deadline_ns)
{
	int r;
	struct job *j = start(fn, arg, size, fd, false, &r);
	if (!j)
		return r;
	if (!wait_for(j, is_done, deadline_ns)) {
		st.timeouts++;
		give_up(j);
		pthread_mutex_unlock(&mu);
		return -ETIMEDOUT;
	}
	r = j->err;
	if (!r) {
		st.done++;
		memcpy(arg, j->data, size);
	}
	pthread_mutex_unlock(&mu);
	free(j);
	return r;
}

int worker_post(pw_worker_fn fn, const void *arg, size_t size, int fd)
{
	int r;
	struct job *j = start(fn, arg, size, fd, fd < 0 /* nothing to wait for */, &r);
	if (!j)
		return r;
	if (fd >= 0) {
		/* wait for the handover only: then fd is the caller's to close */
		if (!wait_for(j, is_taken, pw_mono_ns() + PW_WORKER_HANDOVER_MS * 1000000ull)) {
			j->cancelled = true;
			st.handover_failures++;
			r = -ETIMEDOUT;
		} else if (j->err) {
			r = j->err;
		}
		if (j->done) {
			pthread_mutex_unlock(&mu);
			free(j);
			return r;
		}
		j->abandoned = true;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

const struct pw_worker_stats *worker_stats(void)
{
	return &st;
}
