/* deny.c: pre-exec decisions. A responder thread owns the fanotify fd
 * (FAN_CLASS_CONTENT, FAN_OPEN_EXEC_PERM marks on whole filesystems). It
 * reads exec permission requests in rounds, gathers what is known before
 * the program runs (the file's path, owner, mode and, when a rule needs it,
 * sha256 of the exact bytes), decides what it can itself with the compiled
 * decision program (decision.c: the rules' plain entries, in C), hands the
 * rest of the round to the loop thread (ev_async) where the decision rules
 * run in Lua, and answers every request by its deadline:
 * with the rules' verdict when it came in time, else by default (allow, or
 * deny with --deny-fail-closed; deny when a needed hash was not ready). It
 * also keeps the marks current: every filesystem of this mount namespace
 * (re-read when /proc/self/mountinfo changes) and of other mount namespaces
 * (containers), found by a periodic scan. If the daemon dies, the kernel
 * allows whatever was waiting. */
#include "deny.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "decision.h"
#include "hash.h"
#include "log.h"
#include "proc.h"

#define MAX_MARKS 1024
#define MAX_NAMESPACES 512
#define DONE_MAX (PW_DENY_BATCH * 4)
#define NS_SCAN_MS 2000
#define MAX_WATCHED 64
#define RECENT_MAX 1024 /* execs allowed in time, until the loop sees their exec event */
#define CALLER_PIDFDS 4 /* kept pidfds of the last callers (caller_info) */
#define RECENT_WINDOW_NS 1000000000ull /* an exec event this long after its answer is not its own */

enum { SLOT_FREE, SLOT_ASKED, SLOT_DECIDED };

struct slot {
	struct pw_deny_req req;
	int fd;       /* the event's fd (of the file being executed) */
	int state;
	bool late;
};

struct pw_deny {
	struct pw_deny_config cfg;
	int fan;
	int stop_pipe[2];
	int mountinfo;
	/* the responder waits on fan, stop_pipe[0], mountinfo and the watched
	 * namespaces' mountinfo: one epoll set, registered once (a poll(2) of
	 * every fd per request was ~6% of the daemon's CPU in exec_cost) */
	int ep;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* the round in progress (under mu) */
	struct slot slots[PW_DENY_BATCH];
	int nslots;
	uint64_t round;
	uint64_t round_deadline; /* CLOCK_MONOTONIC ns: a decision after it does not count */
	bool round_open;
	/* answered requests waiting for their outputs on the loop (under mu) */
	struct pw_deny_req done[DONE_MAX];
	bool done_late[DONE_MAX];
	int ndone;
	ev_async async;
	/* marks (under mu) */
	dev_t marked[MAX_MARKS];
	int nmarked;
	dev_t prev[MAX_MARKS]; /* marked before the last remark (for messages) */
	int nprev;
	int nnamespaces; /* other mount namespaces seen by the last scan */
	/* mountinfo of other namespaces, in the epoll set (EPOLLPRI: mounts changed);
	 * touched by the responder thread only (and by deny_start before it) */
	struct ns_watch {
		ino_t ino;
		pid_t pid;
		int fd;
	} watch[MAX_WATCHED];
	int nwatch;
	atomic_bool need_sha256;
	/* the responder thread's own: pidfds of the last callers (caller_info),
	 * and whether PIDFD_GET_INFO is missing here */
	struct caller_pidfd {
		pid_t pid;
		int fd;
	} callers[CALLER_PIDFDS];
	unsigned callers_next;
	bool no_pidfd_info;
	struct pw_dprog *prog;   /* under mu; the responder holds a reference per round */
	/* execs the rules allowed in time (under mu): their exec events need
	 * no kill after exec (deny_exec_seen) */
	struct recent {
		pid_t pid;
		dev_t dev;
		ino_t ino;
		uint64_t path_hash;
		uint64_t answered_ns; /* CLOCK_MONOTONIC, as exec events' ktime */
	} recent[RECENT_MAX];
	unsigned recent_next;
	struct pw_deny_stats st; /* under mu */
};

/* ---- marks ------------------------------------------------------------- */

static bool pseudo_fs(const char *type)
{
	static const char *const skip[] = {
		"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "tracefs", "debugfs",
		"securityfs", "pstore", "configfs", "fusectl", "autofs", "binfmt_misc", "nsfs",
		"efivarfs", "selinuxfs", "rpc_pipefs",
	};
	for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
		if (strcmp(type, skip[i]) == 0)
			return true;
	return false;
}

/* Mark the filesystem holding path (once per device). Logs new marks when
 * verbose is set and the device was not marked before the last remark.
 * Caller holds mu. */
static void mark_dev(struct pw_deny *d, const char *path, const char *type, bool verbose, dev_t dev);

static void mark_path(struct pw_deny *d, const char *path, const char *type, bool verbose)
{
	struct stat sb;
	if (stat(path, &sb) == 0)
		mark_dev(d, path, type, verbose, sb.st_dev);
}

/* Mark the filesystem of device dev, mounted at path (once per device).
 * Caller holds mu. */
static void mark_dev(struct pw_deny *d, const char *path, const char *type, bool verbose, dev_t dev)
{
	struct stat sb = {.st_dev = dev};
	for (int i = 0; i < d->nmarked; i++)
		if (d->marked[i] == sb.st_dev)
			return;
	for (int i = 0; i < d->nprev; i++)
		if (d->prev[i] == sb.st_dev)
			verbose = false; /* marked before: said already */
	if (d->nmarked == MAX_MARKS) {
		d->st.mark_failures++;
		return;
	}
	if (fanotify_mark(d->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, path) < 0) {
		d->st.mark_failures++;
		pw_log(PW_LOG_WARNING, "deny: cannot cover %s (%s): %s; execs from it are killed after exec instead",
		       path, type ? type : "?", strerror(errno));
		d->marked[d->nmarked++] = sb.st_dev; /* do not retry at every change */
		return;
	}
	d->marked[d->nmarked++] = sb.st_dev;
	d->st.filesystems++;
	if (verbose)
		pw_log(PW_LOG_NOTICE, "deny: covering %s (%s)", path, type ? type : "?");
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* Mark every real filesystem listed in a mountinfo file; prefix is
 * prepended to mount points (another namespace: /proc/PID/root). */
static void mark_mountinfo(struct pw_deny *d, const char *mountinfo, const char *prefix, bool verbose)
{
	FILE *f = fopen(mountinfo, "re");
	if (!f)
		return;
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		/* id parent maj:min root mountpoint options [optional...] - type source superopts */
		char *save = NULL, *field[5] = {0};
		char *tok = strtok_r(line, " ", &save);
		for (int i = 0; i < 5 && tok; i++, tok = strtok_r(NULL, " ", &save))
			field[i] = tok;
		if (!field[4])
			continue;
		while (tok && strcmp(tok, "-") != 0)
			tok = strtok_r(NULL, " ", &save);
		char *type = tok ? strtok_r(NULL, " ", &save) : NULL;
		if (!type || pseudo_fs(type))
			continue;
		unescape(field[4]);
		char path[PATH_MAX];
		unsigned maj, min;
		if (snprintf(path, sizeof path, "%s%s", prefix, field[4]) >= (int)sizeof path ||
		    sscanf(field[2], "%u:%u", &maj, &min) != 2)
			continue;
		/* the device from mountinfo: no stat() of a mount point (a hung
		 * network filesystem must not hang the responder) */
		pthread_mutex_lock(&d->mu);
		mark_dev(d, path, type, verbose, makedev(maj, min));
		pthread_mutex_unlock(&d->mu);
	}
	fclose(f);
}

static void mark_namespace(struct pw_deny *d, pid_t pid)
{
	char mi[64], root[64];
	snprintf(mi, sizeof mi, "/proc/%d/mountinfo", (int)pid);
	snprintf(root, sizeof root, "/proc/%d/root", (int)pid);
	mark_mountinfo(d, mi, root, true);
}

/* What woke the responder (epoll data). */
enum { WAKE_REQUEST, WAKE_STOP, WAKE_MOUNTS };

/* Add fd to the responder's epoll set: 0 or -errno. */
static int wait_on(struct pw_deny *d, int fd, uint32_t events, uint32_t what)
{
	struct epoll_event e = {.events = events, .data.u32 = what};
	return epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &e) == 0 ? 0 : -errno;
}

static void unwatch(struct pw_deny *d, int i)
{
	/* explicitly: close() alone leaves it in the set while an exec()
	 * child still holds a copy, between its fork and its execve */
	epoll_ctl(d->ep, EPOLL_CTL_DEL, d->watch[i].fd, NULL);
	close(d->watch[i].fd);
	d->watch[i] = d->watch[--d->nwatch];
}

/* Other mount namespaces (containers): mark their filesystems and watch
 * their mount tables (a change makes their mountinfo EPOLLPRI). */
static void scan_namespaces(struct pw_deny *d)
{
	char self[64] = "";
	ssize_t n = readlink("/proc/self/ns/mnt", self, sizeof self - 1);
	if (n > 0)
		self[n] = 0;
	for (int i = d->nwatch - 1; i >= 0; i--) /* namespaces whose watched task is gone */
		if (kill(d->watch[i].pid, 0) < 0 && errno == ESRCH)
			unwatch(d, i);
	DIR *dir = opendir("/proc");
	if (!dir)
		return;
	static ino_t scanned[MAX_NAMESPACES];
	int nscanned = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64], ns[64];
		snprintf(path, sizeof path, "/proc/%ld/ns/mnt", pid);
		n = readlink(path, ns, sizeof ns - 1);
		if (n <= 0)
			continue;
		ns[n] = 0;
		if (strcmp(ns, self) == 0)
			continue;
		struct stat sb;
		if (stat(path, &sb) < 0)
			continue;
		bool seen = false;
		for (int i = 0; i < nscanned && !seen; i++)
			seen = scanned[i] == sb.st_ino;
		if (seen || nscanned == MAX_NAMESPACES)
			continue;
		scanned[nscanned++] = sb.st_ino;
		bool watched = false;
		for (int i = 0; i < d->nwatch && !watched; i++)
			watched = d->watch[i].ino == sb.st_ino;
		if (watched)
			continue;
		mark_namespace(d, (pid_t)pid);
		if (d->nwatch < MAX_WATCHED) {
			char mi[64];
			snprintf(mi, sizeof mi, "/proc/%ld/mountinfo", pid);
			int fd = open(mi, O_RDONLY | O_CLOEXEC);
			int rc = fd < 0 ? -errno : wait_on(d, fd, EPOLLPRI, WAKE_MOUNTS);
			if (rc == 0) {
				d->watch[d->nwatch++] = (struct ns_watch){.ino = sb.st_ino, .pid = (pid_t)pid, .fd = fd};
			} else {
				/* gone since readdir: nothing to say; else once (rescans every 2 s) */
				static bool warned;
				if (rc != -ENOENT && rc != -ESRCH && !warned) {
					warned = true;
					pw_log(PW_LOG_WARNING, "deny: cannot watch %s for mount changes: %s "
					       "(its new mounts are marked by the rescans, every %d s)",
					       mi, strerror(-rc), NS_SCAN_MS / 1000);
				}
				if (fd >= 0)
					close(fd);
			}
		}
	}
	closedir(dir);
	pthread_mutex_lock(&d->mu);
	d->nnamespaces = nscanned;
	pthread_mutex_unlock(&d->mu);
}

/* A mount table changed. A filesystem's mark dies with it, and a new one
 * may reuse its device number: forget what was marked and mark everything
 * mounted now (marking a marked filesystem again is harmless). */
static void remark_all(struct pw_deny *d)
{
	pthread_mutex_lock(&d->mu);
	memcpy(d->prev, d->marked, sizeof d->marked[0] * (size_t)d->nmarked);
	d->nprev = d->nmarked;
	d->nmarked = 0;
	d->st.filesystems = 0; /* counted again: filesystems marked now */
	pthread_mutex_unlock(&d->mu);
	mark_mountinfo(d, "/proc/self/mountinfo", "", true);
	for (int i = 0; i < d->nwatch; i++)
		mark_namespace(d, d->watch[i].pid);
}

/* FNV-1a of a path: the recent decisions keep no 4 KiB copies. */
static uint64_t path_hash(const char *p)
{
	uint64_t h = 1469598103934665603ull;
	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

_Static_assert((RECENT_MAX & (RECENT_MAX - 1)) == 0, "the ring index wraps with recent_next");

/* The i-th newest entry of the ring (under mu). */
static struct recent *recent_at(struct pw_deny *d, unsigned i)
{
	return &d->recent[(d->recent_next - 1 - i) % RECENT_MAX];
}

bool deny_exec_seen(struct pw_deny *d, pid_t pid, const char *exe, uint64_t ktime_ns)
{
	if (!d)
		return false;
	char path[64]; /* the magic link reaches the file in the process's own namespace */
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	struct stat sb; /* outside the lock: the responder never waits on our syscalls */
	bool have_stat = stat(path, &sb) == 0;
	uint64_t h = exe ? path_hash(exe) : 0;
	bool known = !have_stat, decided = false;
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < d->nmarked && !known; i++)
		known = d->marked[i] == sb.st_dev;
	if (!known)
		mark_path(d, path, NULL, true);
	/* Newest first, down to the first entry older than the window: the
	 * ring is in answer order, so all before it are older too. */
	unsigned in_window = 0;
	for (; in_window < RECENT_MAX; in_window++)
		if (recent_at(d, in_window)->answered_ns + RECENT_WINDOW_NS < ktime_ns)
			break;
	for (unsigned i = 0; i < in_window && !decided && known; i++) {
		struct recent *r = recent_at(d, i);
		if (r->pid != pid || r->answered_ns > ktime_ns)
			continue; /* another process, or a later exec than this event's */
		/* the same file; or, the process being gone already (its exe
		 * unreadable), the same path as captured at the exec event; or,
		 * nothing captured either, its pid alone: a process gone already
		 * leaves no kill after exec to make */
		decided = have_stat ? r->dev == sb.st_dev && r->ino == sb.st_ino : !exe || r->path_hash == h;
	}
	if (decided) /* this execve's requests (the binary, its interpreter) are spent; a later one's are not */
		for (unsigned i = 0; i < in_window; i++)
			if (recent_at(d, i)->pid == pid && recent_at(d, i)->answered_ns <= ktime_ns)
				recent_at(d, i)->pid = 0;
	pthread_mutex_unlock(&d->mu);
	return decided;
}

/* ---- the responder ----------------------------------------------------- */

static void answer(struct pw_deny *d, int fd, bool deny)
{
	struct fanotify_response r = {.fd = fd, .response = deny ? FAN_DENY : FAN_ALLOW};
	if (write(d->fan, &r, sizeof r) != sizeof r)
		pw_log(PW_LOG_ERROR, "deny: answering fanotify: %s", strerror(errno));
	close(fd);
}

/* What is known of the file being executed. The hash gives up at
 * hash_deadline, halfway to the answer's: the rules then decide without it
 * (a sha256 rule whose other entries hold denies: padding buys no bypass). */
static void describe(struct pw_deny *d, struct slot *s, const struct fanotify_event_metadata *md,
		     uint64_t deadline)
{
	struct pw_deny_req *r = &s->req;
	memset(r, 0, sizeof *r);
	r->pid = md->pid;
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", md->fd);
	ssize_t n = readlink(link, r->exe, sizeof r->exe - 1);
	r->exe[n > 0 ? n : 0] = 0;
	struct stat sb;
	bool have_sb = fstat(md->fd, &sb) == 0;
	if (have_sb) {
		r->exe_uid = sb.st_uid;
		r->exe_gid = sb.st_gid;
		r->exe_mode = sb.st_mode & 07777;
		r->dev = sb.st_dev;
		r->ino = sb.st_ino;
	}
	if (atomic_load(&d->need_sha256)) {
		int h = hash_sha256_fd_by(md->fd, have_sb ? &sb : NULL, r->sha256, deadline);
		r->have_sha256 = h == 0;
		r->hash_late = h == -ETIMEDOUT || h == -EFBIG; /* not had in time, or too big */
	}
}

/* PIDFD_GET_INFO of the caller pid, through a pidfd kept for its next
 * request: an exec asks twice, for the binary and then for its ld.so. A
 * kept pidfd that answers names the process that has the pid now (a pid is
 * not reused before its process is reaped, and a reaped one answers ESRCH:
 * the pid is then opened afresh). */
static int caller_info(struct pw_deny *d, pid_t pid, struct pw_pidfd_info *in)
{
	for (int i = 0; i < CALLER_PIDFDS; i++) {
		struct caller_pidfd *c = &d->callers[i];
		if (c->fd < 0 || c->pid != pid)
			continue;
		int rc = proc_pidfd_info(c->fd, in);
		if (rc != -ESRCH)
			return rc;
		close(c->fd);
		c->fd = -1;
	}
	int fd = proc_pidfd_open(pid);
	if (fd < 0)
		return fd;
	int rc = proc_pidfd_info(fd, in);
	struct caller_pidfd *c = &d->callers[d->callers_next++ % CALLER_PIDFDS];
	if (c->fd >= 0)
		close(c->fd);
	*c = (struct caller_pidfd){.pid = pid, .fd = fd};
	return rc;
}

/* The calling process's ids and parent: PIDFD_GET_INFO where the kernel has
 * it (about 8 us here with its pidfd_open and close, against 19 us for
 * /proc/PID/status; less through a kept pidfd), else status. */
static int caller_ids(struct pw_deny *d, pid_t pid, struct pw_proc_status *st)
{
	if (!d->no_pidfd_info) {
		struct pw_pidfd_info in;
		int rc = caller_info(d, pid, &in);
		if (rc == 0) {
			memset(st, 0, sizeof *st);
			st->ppid = in.ppid;
			st->ruid = in.ruid;
			st->euid = in.euid;
			st->rgid = in.rgid;
			st->egid = in.egid;
			return 0;
		}
		if (rc == -ESRCH)
			return rc; /* gone */
		if (rc == -ENOTTY || rc == -EINVAL || rc == -EOPNOTSUPP || rc == -ENOSYS)
			d->no_pidfd_info = true; /* an older kernel: status from now on */
		/* else (EMFILE ...): status this time */
	}
	return proc_read_status(pid, st);
}

/* The facts of one request for the decision program: the file's from the
 * request, the caller's read from /proc when a test first needs them. */
struct req_facts {
	struct pw_deny *d;
	struct pw_deny_req *r;
	int status; /* 0 not read, 1 read, -1 failed */
	struct pw_proc_status st;
	int pexe;   /* the same, for parent.exe */
	char parent_exe[PATH_MAX];
};

static void req_fact(void *arg, enum pw_dfield f, struct pw_dvalue *v)
{
	struct req_facts *x = arg;
	struct pw_deny_req *r = x->r;
	switch (f) {
	case PW_DF_EXE:
		if (r->exe[0])
			*v = (struct pw_dvalue){.type = PW_DV_STR, .s = r->exe};
		return;
	case PW_DF_SHA256:
		if (r->have_sha256)
			*v = (struct pw_dvalue){.type = PW_DV_STR, .s = r->sha256};
		return;
	case PW_DF_EXE_UID:
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_uid};
		return;
	case PW_DF_EXE_GID:
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_gid};
		return;
	case PW_DF_EXE_MODE:
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_mode};
		return;
	case PW_DF_PID:
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = r->pid};
		return;
	default:
		break;
	}
	if (x->status == 0) { /* the caller waits in execve: its ids and parent are still its own */
		x->status = caller_ids(x->d, r->pid, &x->st) == 0 ? 1 : -1;
		if (x->status > 0) { /* what Lua's decision will see too */
			r->have_ids = true;
			r->ppid = x->st.ppid;
			r->ruid = x->st.ruid;
			r->euid = x->st.euid;
			r->rgid = x->st.rgid;
			r->egid = x->st.egid;
		}
	}
	if (x->status < 0) {
		*v = (struct pw_dvalue){.type = PW_DV_UNKNOWN};
		return;
	}
	int64_t id = -1;
	switch (f) {
	case PW_DF_PPID: id = x->st.ppid; break;
	case PW_DF_UID: id = x->st.ruid; break;
	case PW_DF_EUID: id = x->st.euid; break;
	case PW_DF_GID: id = x->st.rgid; break;
	case PW_DF_EGID: id = x->st.egid; break;
	case PW_DF_PARENT_EXE:
		if (x->pexe == 0)
			x->pexe = x->st.ppid > 0 && proc_read_exe(x->st.ppid, x->parent_exe, sizeof x->parent_exe) > 0 ? 1 : -1;
		if (x->pexe > 0)
			*v = (struct pw_dvalue){.type = PW_DV_STR, .s = x->parent_exe};
		else /* no parent object, or its exe unreadable: Lua tells those apart */
			*v = (struct pw_dvalue){.type = PW_DV_UNKNOWN};
		return;
	default:
		return;
	}
	if (f != PW_DF_PPID || id > 0)
		*v = (struct pw_dvalue){.type = PW_DV_INT, .i = id};
}

/* Decide s in this thread if the program can. */
static void decide_here(struct pw_deny *d, const struct pw_dprog *prog, struct slot *s)
{
	struct req_facts x = {.d = d, .r = &s->req};
	const char *rule;
	enum pw_dverdict v = dprog_decide(prog, req_fact, &x, &rule, NULL);
	if (v == PW_DV_NEEDS_LUA)
		return;
	s->state = SLOT_DECIDED;
	s->req.fast = true;
	s->req.deny = v == PW_DV_DENY;
	if (rule)
		snprintf(s->req.rule, sizeof s->req.rule, "%s", rule);
}

static void run_round(struct pw_deny *d, const struct fanotify_event_metadata *mds[], int n)
{
	uint64_t t0 = pw_mono_ns();
	uint64_t deadline = t0 + (uint64_t)d->cfg.timeout_ms * 1000000u;
	bool need_hash = atomic_load(&d->need_sha256);
	pthread_mutex_lock(&d->mu);
	struct pw_dprog *prog = d->prog;
	dprog_ref(prog);
	pthread_mutex_unlock(&d->mu);
	struct slot round[PW_DENY_BATCH];
	int k = 0, asked = 0;
	for (int i = 0; i < n; i++) {
		round[k].fd = mds[i]->fd;
		describe(d, &round[k], mds[i], t0 + (deadline - t0) / 2);
		round[k].state = SLOT_ASKED;
		round[k].late = false;
		/* a hash not had in time: Lua decides on the rules' other entries */
		if (prog && !(round[k].req.hash_late && dprog_needs_sha256(prog)))
			decide_here(d, prog, &round[k]);
		asked += round[k].state == SLOT_ASKED;
		k++;
	}
	dprog_unref(prog);
	pthread_mutex_lock(&d->mu);
	d->st.requests += (uint64_t)k;
	d->st.fast += (uint64_t)(k - asked);
	if (asked) { /* the loop decides the rest, in Lua */
		memcpy(d->slots, round, sizeof round[0] * (size_t)k);
		d->nslots = k;
		d->round++;
		d->round_deadline = deadline;
		d->round_open = true;
		pthread_mutex_unlock(&d->mu);
		ev_async_send(d->cfg.loop, &d->async);
		pthread_mutex_lock(&d->mu);
		for (;;) {
			bool all = true;
			for (int i = 0; i < d->nslots && all; i++)
				all = d->slots[i].state == SLOT_DECIDED;
			if (all)
				break;
			struct timespec until = {.tv_sec = (time_t)(deadline / 1000000000u),
						 .tv_nsec = (long)(deadline % 1000000000u)};
			int r = pthread_cond_timedwait(&d->cv, &d->mu, &until);
			if (r == ETIMEDOUT)
				break;
		}
		d->round_open = false;
		memcpy(round, d->slots, sizeof round[0] * (size_t)k);
	}
	bool outputs = false;
	for (int i = 0; i < k; i++) {
		struct slot *s = &round[i];
		bool decided = s->state == SLOT_DECIDED && !s->req.error;
		bool deny;
		if (decided) {
			deny = s->req.deny;
			d->st.decisions++;
		} else if (need_hash && s->req.hash_late) { /* no verdict and no hash: deny */
			deny = true; /* a hash not ready must not buy a bypass */
			d->st.hash_late++;
			snprintf(s->req.rule, sizeof s->req.rule, "(sha256 not ready)");
			s->req.deny = true;
		} else {
			deny = d->cfg.fail_closed;
			if (s->state == SLOT_DECIDED)
				d->st.rule_errors++;
			else
				d->st.timeouts++;
			s->req.deny = deny;
		}
		s->late = !decided;
		if (d->cfg.dry_run)
			deny = false;
		d->st.denied += deny;
		if (decided && !deny) /* it runs, judged in time: its exec event need not be judged again */
			d->recent[d->recent_next++ % RECENT_MAX] =
				(struct recent){.pid = s->req.pid, .dev = s->req.dev, .ino = s->req.ino,
						.path_hash = path_hash(s->req.exe), .answered_ns = pw_mono_ns()};
		if (s->req.deny || s->late) {
			outputs = true;
			if (d->ndone < DONE_MAX) {
				d->done[d->ndone] = s->req;
				d->done_late[d->ndone] = s->late;
				d->ndone++;
			} else {
				d->st.outputs_dropped++;
			}
		}
		s->req.deny = deny;
	}
	pthread_mutex_unlock(&d->mu);
	/* Answer after the lock: every request of the round, decided or not. */
	for (int i = 0; i < k; i++)
		answer(d, round[i].fd, round[i].req.deny);
	if (outputs)
		ev_async_send(d->cfg.loop, &d->async);
}

static void *responder(void *arg)
{
	struct pw_deny *d = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	char buf[PW_DENY_BATCH * sizeof(struct fanotify_event_metadata) + 64];
	uint64_t next_ns_scan = pw_mono_ns() + NS_SCAN_MS * 1000000ull;
	pid_t self = getpid();
	for (;;) {
		struct epoll_event ev[8];
		int r = epoll_wait(d->ep, ev, 8, NS_SCAN_MS);
		if (r < 0 && errno != EINTR) {
			pw_log(PW_LOG_ERROR, "deny: responder: epoll_wait: %s; pre-exec decisions stop", strerror(errno));
			break;
		}
		bool stop = false, changed = false, request = false;
		for (int i = 0; i < r; i++) {
			stop |= ev[i].data.u32 == WAKE_STOP;
			changed |= ev[i].data.u32 == WAKE_MOUNTS; /* this or another namespace's mount table */
			request |= ev[i].data.u32 == WAKE_REQUEST;
		}
		if (stop)
			break;
		if (changed)
			remark_all(d);
		if (pw_mono_ns() >= next_ns_scan) {
			scan_namespaces(d);
			next_ns_scan = pw_mono_ns() + NS_SCAN_MS * 1000000ull;
		}
		if (!request)
			continue;
		ssize_t len = read(d->fan, buf, sizeof buf);
		if (len <= 0)
			continue;
		const struct fanotify_event_metadata *md = (const void *)buf;
		const struct fanotify_event_metadata *mds[PW_DENY_BATCH];
		int n = 0;
		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			if (md->vers != FANOTIFY_METADATA_VERSION) {
				pw_log(PW_LOG_ERROR, "deny: fanotify metadata version %u, expected %u",
				       md->vers, FANOTIFY_METADATA_VERSION);
				if (md->fd >= 0)
					answer(d, md->fd, false);
				continue;
			}
			if (md->fd < 0)
				continue; /* FAN_Q_OVERFLOW: nothing to answer */
			if (!(md->mask & FAN_OPEN_EXEC_PERM)) {
				close(md->fd);
				continue;
			}
			if (md->pid == self) { /* never wait on ourselves */
				pthread_mutex_lock(&d->mu);
				d->st.own++;
				pthread_mutex_unlock(&d->mu);
				answer(d, md->fd, false);
				continue;
			}
			mds[n++] = md;
		}
		if (n)
			run_round(d, mds, n);
	}
	return NULL;
}

/* ---- the loop side ----------------------------------------------------- */

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct pw_deny *d = w->data;
	/* Decide: copy the asked requests out, run the rules without the lock. */
	struct slot work[PW_DENY_BATCH];
	int n = 0;
	uint64_t round;
	pthread_mutex_lock(&d->mu);
	round = d->round;
	if (d->round_open)
		for (int i = 0; i < d->nslots; i++)
			if (d->slots[i].state == SLOT_ASKED)
				work[n++] = d->slots[i];
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < n; i++)
		d->cfg.decide(d->cfg.ctx, &work[i].req);
	if (n) {
		pthread_mutex_lock(&d->mu);
		/* Past the deadline the responder answers by itself, whether it has
		 * woken to do so yet or not: a decision made after it is late, like
		 * one never made (same verdict however the threads were scheduled). */
		if (d->round_open && d->round == round && pw_mono_ns() <= d->round_deadline) {
			for (int i = 0, j = 0; i < d->nslots && j < n; i++)
				if (d->slots[i].state == SLOT_ASKED && d->slots[i].fd == work[j].fd) {
					d->slots[i].req.deny = work[j].req.deny;
					d->slots[i].req.error = work[j].req.error;
					memcpy(d->slots[i].req.rule, work[j].req.rule, sizeof work[j].req.rule);
					d->slots[i].state = SLOT_DECIDED;
					j++;
				}
			pthread_cond_broadcast(&d->cv);
		}
		pthread_mutex_unlock(&d->mu);
	}
	/* Outputs for what was answered. */
	static struct pw_deny_req done[DONE_MAX];
	static bool late[DONE_MAX];
	pthread_mutex_lock(&d->mu);
	int nd = d->ndone;
	memcpy(done, d->done, sizeof done[0] * (size_t)nd);
	memcpy(late, d->done_late, sizeof late[0] * (size_t)nd);
	d->ndone = 0;
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < nd; i++)
		d->cfg.done(d->cfg.ctx, &done[i], late[i]);
}

struct pw_deny *deny_start(const struct pw_deny_config *cfg, char *err, size_t errlen)
{
	struct pw_deny *d = calloc(1, sizeof *d);
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->cfg = *cfg;
	if (d->cfg.timeout_ms <= 0)
		d->cfg.timeout_ms = PW_DENY_TIMEOUT_MS;
	d->stop_pipe[0] = d->stop_pipe[1] = d->mountinfo = d->ep = -1;
	for (int i = 0; i < CALLER_PIDFDS; i++)
		d->callers[i].fd = -1;
	atomic_store(&d->need_sha256, cfg->need_sha256);
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	d->fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE,
			       O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (d->fan < 0) {
		snprintf(err, errlen, "fanotify_init: %s%s", strerror(errno),
			 errno == EPERM ? " (needs CAP_SYS_ADMIN)" : errno == ENOSYS ? " (kernel without fanotify)" : "");
		free(d);
		return NULL;
	}
	/* Probe FAN_OPEN_EXEC_PERM (5.0+, CONFIG_FANOTIFY_ACCESS_PERMISSIONS) on /. */
	if (fanotify_mark(d->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, "/") < 0) {
		snprintf(err, errlen, "fanotify exec permission marks unavailable: %s", strerror(errno));
		close(d->fan);
		free(d);
		return NULL;
	}
	struct stat sb;
	if (stat("/", &sb) == 0) {
		d->marked[d->nmarked++] = sb.st_dev;
		d->st.filesystems++;
	}
	pw_log(PW_LOG_NOTICE, "deny: covering / (root filesystem)");
	d->ep = epoll_create1(EPOLL_CLOEXEC);
	if (d->ep < 0 || pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s: %s", d->ep < 0 ? "epoll_create1" : "pipe", strerror(errno));
		deny_stop(d);
		return NULL;
	}
	d->mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	int rc = wait_on(d, d->fan, EPOLLIN, WAKE_REQUEST);
	if (rc == 0)
		rc = wait_on(d, d->stop_pipe[0], EPOLLIN, WAKE_STOP);
	if (rc == 0 && d->mountinfo >= 0)
		rc = wait_on(d, d->mountinfo, EPOLLPRI, WAKE_MOUNTS);
	if (rc < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
		deny_stop(d);
		return NULL;
	}
	mark_mountinfo(d, "/proc/self/mountinfo", "", true);
	scan_namespaces(d);
	ev_async_init(&d->async, async_cb);
	d->async.data = d;
	ev_async_start(cfg->loop, &d->async);
	int r = pthread_create(&d->thread, NULL, responder, d);
	if (r != 0) {
		snprintf(err, errlen, "responder thread: %s", strerror(r));
		ev_async_stop(cfg->loop, &d->async);
		deny_stop(d);
		return NULL;
	}
	d->thread_started = true;
	return d;
}

void deny_set_need_sha256(struct pw_deny *d, bool need)
{
	if (d)
		atomic_store(&d->need_sha256, need);
}

void deny_set_program(struct pw_deny *d, struct pw_dprog *prog)
{
	if (!d) {
		dprog_unref(prog);
		return;
	}
	pthread_mutex_lock(&d->mu);
	struct pw_dprog *old = d->prog;
	d->prog = prog;
	pthread_mutex_unlock(&d->mu);
	dprog_unref(old);
}

const struct pw_deny_stats *deny_stats(const struct pw_deny *d)
{
	return &d->st;
}

void deny_stop(struct pw_deny *d)
{
	if (!d)
		return;
	if (d->thread_started) {
		if (write(d->stop_pipe[1], "x", 1) != 1)
			pw_log(PW_LOG_ERROR, "deny: stopping the responder: %s", strerror(errno));
		pthread_join(d->thread, NULL);
		ev_async_stop(d->cfg.loop, &d->async);
	}
	if (d->fan >= 0)
		close(d->fan); /* the kernel allows whatever still waits */
	for (int i = 0; i < 2; i++)
		if (d->stop_pipe[i] >= 0)
			close(d->stop_pipe[i]);
	if (d->mountinfo >= 0)
		close(d->mountinfo);
	while (d->nwatch > 0)
		unwatch(d, d->nwatch - 1);
	if (d->ep >= 0)
		close(d->ep);
	for (int i = 0; i < CALLER_PIDFDS; i++)
		if (d->callers[i].fd >= 0)
			close(d->callers[i].fd);
	dprog_unref(d->prog);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
}
