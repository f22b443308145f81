/* api.c: effects on the system. Signals go through pidfd_open +
 * pidfd_send_signal after the process's start time is checked, so a pid
 * recycled since the event is never hit. Commands run without a shell
 * (fork + execve; never vfork or posix_spawn, whose parent would wait on
 * its own pre-exec decision), with a clean environment, no inherited fds,
 * normal scheduling, an optional user, a timeout, captured stdout, and a
 * cap on how many run at once (the rest wait in a bounded queue). */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "identity.h"
#include "log.h"
#include "proc.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#define PF_KTHREAD_ 0x00200000u

static struct pw_api_stats st;

const struct pw_api_stats *api_stats(void)
{
	return &st;
}

#define BATCH_PIDFDS 4200 /* execs of one wake-up (8 receive batches) */

static struct {
	pid_t tgid;
	int fd;
	uint64_t start_time;
	/* api_presignal's signal, sent already: the rule's own send reports it */
	int presig, pre_err;
	uint64_t pre_sent_ns;
	char pre_rule[128];
} batch_fds[BATCH_PIDFDS];
static int nbatch_fds;

bool api_pidfd_add(pid_t tgid, int fd, uint64_t start_time)
{
	if (nbatch_fds == BATCH_PIDFDS) {
		close(fd);
		return false;
	}
	batch_fds[nbatch_fds].tgid = tgid;
	batch_fds[nbatch_fds].fd = fd;
	batch_fds[nbatch_fds].start_time = start_time;
	batch_fds[nbatch_fds].presig = 0;
	nbatch_fds++;
	return true;
}

void api_pidfd_set_start(pid_t tgid, uint64_t start_time)
{
	for (int i = nbatch_fds - 1; i >= 0; i--)
		if (batch_fds[i].tgid == tgid) {
			batch_fds[i].start_time = start_time;
			return;
		}
}

/* Close batch entry i; a signal C sent through it that its rule never
 * reported is counted and logged. */
static void batch_close(int i)
{
	if (batch_fds[i].presig > 0) {
		st.signals_unreported++;
		pw_log(PW_LOG_WARNING, "signal %d sent to pid %d by rule %s at its exec was not reported by the rule",
		       batch_fds[i].presig, (int)batch_fds[i].tgid, batch_fds[i].pre_rule);
	}
	close(batch_fds[i].fd);
}

void api_pidfds_clear(void)
{
	for (int i = 0; i < nbatch_fds; i++)
		batch_close(i);
	nbatch_fds = 0;
}

void api_pidfd_forget(pid_t tgid)
{
	for (int i = nbatch_fds - 1; i >= 0; i--)
		if (batch_fds[i].tgid == tgid) {
			batch_close(i);
			batch_fds[i] = batch_fds[--nbatch_fds];
			return;
		}
}

/* The batch entry for pid (the latest one) if it is the process that
 * started at start_time (0: any; approx: to a tick), or -1. A pin whose
 * start is not known serves only a caller that knows none either: the
 * others are checked the slow way. */
static int batch_entry(pid_t pid, uint64_t start_time, bool approx)
{
	for (int i = nbatch_fds - 1; i >= 0; i--) {
		if (batch_fds[i].tgid != pid)
			continue;
		uint64_t b = batch_fds[i].start_time;
		if (!start_time)
			return i;
		if (!b)
			return -1;
		return (approx ? b + 1 >= start_time && b <= start_time + 1 : b == start_time) ? i : -1;
	}
	return -1;
}

/* Is the process behind pidfd the one of pidfs inode pid_ino (0: not
 * known, yes)? */
static bool same_ino(int pidfd, uint64_t pid_ino)
{
	uint64_t ino;
	return !pid_ino || proc_pidfd_ino(pidfd, &ino) != 0 || ino == pid_ino;
}

static const char *signal_error(int e)
{
	return e == ESRCH ? "no such process (exited)" : strerror(e);
}

/* Is the pinned process pid one protect{} names (by its executable's
 * inode)? Then *why says so, and the refusal is counted. */
static bool refuse_protected(const struct pw_protect *prot, pid_t pid, const char **why)
{
	static char msg[PATH_MAX + 32];
	char exe[PATH_MAX];
	if (!protect_holds(prot, pid, exe, sizeof exe))
		return false;
	st.signals_refused++;
	snprintf(msg, sizeof msg, "refused: protected (%s)", exe[0] ? exe : "?");
	*why = msg;
	return true;
}

int api_presignal(pid_t tgid, int sig, const char *rule)
{
	int i = batch_entry(tgid, 0, false);
	if (i < 0 || tgid <= 1 || tgid == getpid() || batch_fds[i].presig)
		return -1; /* not pinned here, or refused: the rule's own send decides */
	int r = (int)syscall(SYS_pidfd_send_signal, batch_fds[i].fd, sig, NULL, 0);
	batch_fds[i].pre_sent_ns = pw_mono_ns();
	batch_fds[i].pre_err = r == 0 ? 0 : errno;
	batch_fds[i].presig = sig;
	snprintf(batch_fds[i].pre_rule, sizeof batch_fds[i].pre_rule, "%s", rule);
	if (r == 0) {
		st.signals_sent++;
		st.signals_hot_path++;
	} else {
		st.signals_failed++;
	}
	return r == 0 ? 0 : -batch_fds[i].pre_err;
}

void api_count_refusal(void)
{
	st.signals_refused++;
}

int api_signal(pid_t pid, uint64_t start_time, uint64_t pid_ino, bool approx, int sig, const char *rule,
	       const struct pw_protect *prot, const char **why, uint64_t *sent_ns)
{
	*why = NULL;
	if (pid <= 1) {
		st.signals_refused++;
		*why = pid == 1 ? "refused: init (pid 1)" : "refused: not a process id";
		return -EPERM;
	}
	if (pid == getpid()) {
		st.signals_refused++;
		*why = "refused: procwarden itself";
		return -EPERM;
	}
	/* This rule's signal, sent already from C (api_presignal) to this
	 * batch's pin of pid (the exec's process: a stale exec is not pinned):
	 * reported once, even when the process died before its start time
	 * was read. */
	int k = batch_entry(pid, 0, false);
	if (k >= 0 && batch_fds[k].presig == sig && rule && strcmp(rule, batch_fds[k].pre_rule) == 0) {
		batch_fds[k].presig = -1;
		if (sent_ns)
			*sent_ns = batch_fds[k].pre_sent_ns;
		if (batch_fds[k].pre_err == 0)
			return 0;
		*why = signal_error(batch_fds[k].pre_err);
		return -batch_fds[k].pre_err;
	}
	int i = batch_entry(pid, start_time, approx);
	if (i >= 0 && !same_ino(batch_fds[i].fd, pid_ino)) {
		st.signals_refused++;
		*why = "process changed (pid reused)";
		return -ESRCH;
	}
	if (i >= 0 && refuse_protected(prot, pid, why))
		return -EPERM;
	if (i >= 0) { /* the hot path: pinned when the exec event arrived */
		int r = (int)syscall(SYS_pidfd_send_signal, batch_fds[i].fd, sig, NULL, 0);
		if (sent_ns)
			*sent_ns = pw_mono_ns();
		if (r == 0) {
			st.signals_sent++;
			return 0;
		}
		int e = errno;
		st.signals_failed++;
		*why = signal_error(e);
		return -e;
	}
	int fd;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		int e = errno;
		st.signals_failed++;
		*why = e == ESRCH ? "no such process (exited)" : strerror(e);
		return -e;
	}
	/* The pidfd pins the process: if it is the one we mean now, it stays
	 * the one we signal. */
	struct pw_proc_stat ps;
	int r = proc_read_stat(pid, &ps);
	if (r < 0) {
		close(fd);
		st.signals_failed++;
		*why = "no such process (exited)";
		return r;
	}
	if (ps.flags & PF_KTHREAD_) {
		close(fd);
		st.signals_refused++;
		*why = "refused: kernel thread";
		return -EPERM;
	}
	bool same = !start_time || (approx ? ps.start_time + 1 >= start_time && ps.start_time <= start_time + 1
					   : ps.start_time == start_time);
	same = same && same_ino(fd, pid_ino); /* where known exactly (pidfs), also within one tick */
	if (!same) {
		close(fd);
		st.signals_refused++;
		*why = "process changed (pid reused)";
		return -ESRCH;
	}
	if (refuse_protected(prot, pid, why)) { /* the pidfd holds it: this pid is that process while it lives */
		close(fd);
		return -EPERM;
	}
	r = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
	if (sent_ns)
		*sent_ns = pw_mono_ns();
	int e = errno;
	close(fd);
	if (r < 0) {
		st.signals_failed++;
		*why = e == ESRCH ? "no such process (exited)" : strerror(e);
		return -e;
	}
	st.signals_sent++;
	return 0;
}

/* ---- exec -------------------------------------------------------------- */

struct job {
	struct pw_exec_req req; /* deep copy */
	struct ev_loop *loop;
	pid_t pid;
	int out_fd;
	char *out;
	size_t out_len;
	bool exited, out_closed;
	int status;
	ev_child child;
	ev_io io;
	ev_timer timer;
	struct job *next;
};

static struct job *running, *queued_head, **queued_tail = &queued_head;
static int nrunning, nqueued;

static char **copy_strv(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **c = calloc(n + 1, sizeof *c);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(c[i] = strdup(v[i]))) {
			while (i--)
				free(c[i]);
			free(c);
			return NULL;
		}
	return c;
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void job_free(struct job *j)
{
	free_strv(j->req.argv);
	free_strv(j->req.env);
	free((char *)j->req.user);
	free(j->out);
	free(j);
}

static void start_next(struct ev_loop *loop);

static void job_finish(struct job *j)
{
	if (!j->exited || !j->out_closed)
		return;
	ev_timer_stop(j->loop, &j->timer);
	for (struct job **pp = &running; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	nrunning--;
	if (j->req.done)
		j->req.done(j->req.owner, j->req.ref, j->status, j->out ? j->out : "", j->out_len);
	struct ev_loop *loop = j->loop;
	job_free(j);
	start_next(loop);
}

static void read_out(struct job *j)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(j->out_fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			ev_io_stop(j->loop, &j->io);
			close(j->out_fd);
			j->out_fd = -1;
			j->out_closed = true;
			return;
		}
		size_t room = j->req.stdout_cap > j->out_len ? j->req.stdout_cap - j->out_len : 0;
		size_t take = (size_t)n < room ? (size_t)n : room;
		if (take) {
			memcpy(j->out + j->out_len, buf, take);
			j->out_len += take;
		}
	}
}

static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct job *j = w->data;
	read_out(j);
	job_finish(j);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct job *j = w->data;
	ev_child_stop(loop, w);
	ev_timer_stop(loop, &j->timer); /* reaped: its pid is not ours to signal any more */
	j->exited = true;
	j->status = w->rstatus;
	if (!j->out_closed)
		read_out(j); /* whatever is left in the pipe */
	job_finish(j);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct job *j = w->data;
	if (j->exited)
		return;
	st.exec_timeouts++;
	pw_log(PW_LOG_WARNING, "exec %s: timed out after %g s, killing pid %d", j->req.argv[0], j->req.timeout,
	       (int)j->pid);
	kill(j->pid, SIGKILL); /* our unreaped child: the pid cannot be reused */
}

struct creds {
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[64];
};

/* In the child, between fork and execve: only async-signal-safe calls
 * (the user's groups were looked up before the fork). */
static void child_exec(const struct job *j, int out_w, const struct creds *cr)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(null, 2) < 0)
		_exit(126);
	syscall(SYS_close_range, 3, ~0u, 0);
	if (cr && (setgroups((size_t)cr->ngroups, cr->groups) < 0 || setgid(cr->gid) < 0 ||
		   setuid(cr->uid) < 0))
		_exit(126);
	static char *empty[] = {NULL};
	execve(j->req.argv[0], j->req.argv, j->req.env ? j->req.env : empty);
	_exit(127);
}

static int job_start(struct job *j)
{
	struct passwd pwbuf, *pw = NULL;
	char pwmem[2048];
	struct creds cr;
	if (j->req.user) {
		if (getpwnam_r(j->req.user, &pwbuf, pwmem, sizeof pwmem, &pw) != 0 || !pw) {
			pw_log(PW_LOG_ERROR, "exec %s: no user '%s'", j->req.argv[0], j->req.user);
			errno = ENOENT;
			return -1;
		}
		cr.uid = pw->pw_uid;
		cr.gid = pw->pw_gid;
		cr.ngroups = 64;
		if (getgrouplist(pw->pw_name, pw->pw_gid, cr.groups, &cr.ngroups) < 0)
			cr.ngroups = 64; /* more than 64: keep the first 64 */
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	j->out = malloc(j->req.stdout_cap ? j->req.stdout_cap : 1);
	if (!j->out) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0)
		child_exec(j, p[1], pw ? &cr : NULL);
	close(p[1]);
	j->pid = pid;
	j->out_fd = p[0];
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ev_child_init(&j->child, child_cb, pid, 0);
	j->child.data = j;
	ev_child_start(j->loop, &j->child);
	ev_io_init(&j->io, out_cb, p[0], EV_READ);
	j->io.data = j;
	ev_io_start(j->loop, &j->io);
	ev_timer_init(&j->timer, timeout_cb, j->req.timeout, 0.);
	j->timer.data = j;
	if (j->req.timeout > 0)
		ev_timer_start(j->loop, &j->timer);
	j->next = running;
	running = j;
	nrunning++;
	st.execs_started++;
	return 0;
}

static void start_next(struct ev_loop *loop)
{
	while (nrunning < PW_EXEC_RUNNING_MAX && queued_head) {
		struct job *j = queued_head;
		queued_head = j->next;
		if (!queued_head)
			queued_tail = &queued_head;
		nqueued--;
		if (job_start(j) < 0) {
			st.exec_failed++;
			if (j->req.done)
				j->req.done(j->req.owner, j->req.ref, -1, "", 0);
			job_free(j);
		}
	}
}

int api_exec(struct ev_loop *loop, const struct pw_exec_req *req, const char **why)
{
	*why = NULL;
	if (!req->argv || !req->argv[0] || req->argv[0][0] != '/') {
		*why = "argv[1] must be an absolute path (no shell, no PATH search)";
		st.execs_refused++;
		return -1;
	}
	if (nrunning >= PW_EXEC_RUNNING_MAX && nqueued >= PW_EXEC_QUEUE_MAX) {
		*why = "too many commands running and waiting";
		st.execs_refused++;
		return -1;
	}
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		*why = "out of memory";
		return -1;
	}
	j->req = *req;
	j->req.argv = copy_strv(req->argv);
	j->req.env = req->env ? copy_strv(req->env) : NULL;
	j->req.user = req->user ? strdup(req->user) : NULL;
	j->req.stdout_cap = req->stdout_cap > PW_EXEC_STDOUT_MAX ? PW_EXEC_STDOUT_MAX : req->stdout_cap;
	j->loop = loop;
	j->out_fd = -1;
	if (!j->req.argv || (req->env && !j->req.env) || (req->user && !j->req.user)) {
		job_free(j);
		*why = "out of memory";
		return -1;
	}
	if (nrunning >= PW_EXEC_RUNNING_MAX) {
		*queued_tail = j;
		queued_tail = &j->next;
		nqueued++;
		st.execs_queued++;
		return 0;
	}
	if (job_start(j) < 0) {
		*why = strerror(errno);
		st.exec_failed++;
		job_free(j);
		return -1;
	}
	return 0;
}

void api_exec_forget(void *owner)
{
	for (struct job *j = running; j; j = j->next)
		if (j->req.owner == owner)
			j->req.done = NULL;
	for (struct job *j = queued_head; j; j = j->next)
		if (j->req.owner == owner)
			j->req.done = NULL;
}
