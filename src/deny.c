/* deny.c: pre-exec decisions. A responder thread owns the shared fanotify
 * group (FAN_CLASS_CONTENT, FAN_OPEN_EXEC_PERM marks on whole filesystems).
 * It reads exec permission requests in rounds, gathers what is known before
 * the program runs (the file's path, owner, mode, filesystem type and, when
 * a rule needs it, sha256 of the exact bytes), decides what it can itself
 * with the compiled decision program (decision.c: the rules' plain entries,
 * in C), hands the rest of the round to the loop thread (ev_async) where the
 * decision rules run in Lua, and answers every request by its deadline:
 * with the rules' verdict when it came in time, else by default (allow, or
 * deny with --deny-fail-closed; deny when a needed hash was not ready).
 *
 * Filesystems served by a process (FUSE) never reach the shared group: any
 * touch of their files, even the kernel opening one for our read(), may
 * wait on their server forever. Each such filesystem gets a group of its
 * own, read and answered by a thread of its own that holds a private fd
 * table (only that group's fd and a wake-up eventfd): a hung server holds
 * that thread and the execs from its own mount, nothing else, and a killed
 * daemon releases every other exec (a thread stuck in FUSE would otherwise
 * keep every fd of the process open). It describes its requests without
 * touching the file's data (path from the fd link, cached attributes) and
 * hands them to the responder to decide like any other.
 *
 * The marks follow the mount tables: every filesystem of this mount
 * namespace and of the others (containers), each marked through an fd of
 * its mount point whose device was checked (a mount stacked over another
 * leads elsewhere), re-read when a table changes (mount-namespace fanotify
 * marks where the kernel has them, else mountinfo's POLLPRI), found by a
 * periodic scan and at once when an exec comes from a namespace not seen
 * before. A failed mark is retried, never taken as done. If the daemon
 * dies, the kernel allows whatever was waiting. doc/threat-model.md says
 * what this covers and what it cannot. */
#include "deny.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "decision.h"
#include "hash.h"
#include "log.h"
#include "mounts.h"
#include "proc.h"

/* Mount-namespace marks (Linux 6.14+); Debian 12's headers predate them. */
#ifndef FAN_REPORT_MNT
#define FAN_REPORT_MNT 0x00004000
#endif
#ifndef FAN_MARK_MNTNS
#define FAN_MARK_MNTNS 0x00000110
#endif
#ifndef FAN_MNT_ATTACH
#define FAN_MNT_ATTACH 0x01000000
#endif
#ifndef FAN_MNT_DETACH
#define FAN_MNT_DETACH 0x02000000
#endif

#define MAX_MARKS 65536        /* filesystems marked in the shared group */
#define MAX_NAMESPACES 65536   /* mount namespaces known */
#define MAX_FD_WATCHES 16384   /* mountinfo fds watched (without mount-namespace marks) */
#define MAX_FUSE_GROUPS 256    /* FUSE (and user-namespace overlay) filesystems with a group of their own */
#define FUSE_STACK (256u << 10) /* a FUSE thread's stack: its frames are small */
#define FUSE_INBOX 256         /* FUSE requests waiting for the responder */
#define FUSE_POLL_MS 250       /* a FUSE thread looks at its stop flag this often */
#define DONE_MAX (PW_DENY_BATCH * 4)
#define NS_SCAN_MS 2000
#define PENDING_SCANS 64       /* namespaces to scan at once, queued by the loop */
#define RECENT_MAX 1024 /* execs answered, until the loop sees their exec event */
#define CALLER_PIDFDS 4 /* kept pidfds of the last callers (caller_info) */
#define RECENT_WINDOW_NS 1000000000ull /* an exec event this long after its answer is not its own */

enum { SLOT_FREE, SLOT_ASKED, SLOT_DECIDED };

struct slot {
	struct pw_deny_req req;
	int fd;       /* the event's fd (of the file being executed); -1 for a FUSE request */
	int inbox;    /* a FUSE request: its index in the inbox; -1 otherwise */
	int state;
	bool late;
};

/* A set of 64-bit keys (devices, namespace inodes): open addressing, grows. */
struct keyset {
	uint64_t *v; /* key + 1; 0 = empty */
	size_t cap, n;
};

enum { FUSE_STARTING, FUSE_MARKED, FUSE_FAILED, FUSE_DONE };

struct fuse_group {
	bool used;
	dev_t dev;
	char type[32];
	char *path;        /* its mount point, reached from our root (/proc/PID/root/...) */
	pthread_t thread;
	atomic_int state;
	atomic_bool stop;
	bool seen;         /* listed by the last reading of the mount tables */
	int err;           /* FUSE_FAILED: errno of the failed step */
};

enum { INBOX_FREE, INBOX_WAITING, INBOX_TAKEN, INBOX_ANSWERED };

struct fuse_req {
	int state;
	int group;
	uint64_t deadline;
	bool deny;
	struct pw_deny_req req;
};

struct pw_deny {
	struct pw_deny_config cfg;
	int fan;
	int stop_pipe[2];
	int mountinfo;
	int mnt_fan;  /* mount-namespace marks (FAN_REPORT_MNT), or -1: mountinfo POLLPRI instead */
	int wake;     /* eventfd: a FUSE request waits (the responder's) */
	int mark_wake;/* eventfd: the loop queued a scan, or a FUSE group lost its filesystem (the marker's) */
	int mep;      /* the marker thread's epoll set: stop, mark_wake, mount changes */
	pthread_t marker;
	bool marker_started;
	/* the responder waits on fan, stop_pipe[0], wake, mnt_fan or mountinfo and
	 * the watched namespaces' mountinfo: one epoll set, registered once */
	int ep;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_cond_t fuse_cv; /* a FUSE request was answered */
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
	struct keyset marked;   /* devices marked in the shared group */
	struct keyset prev;     /* marked before the last remark (for messages) */
	struct keyset reported; /* devices whose failure was said already */
	struct keyset fuse_devs;/* devices answered by a FUSE group */
	struct keyset known_ns; /* mount namespaces scanned (their nsfs inodes), ours included */
	pid_t pending[PENDING_SCANS]; /* pids whose namespace (or exe's filesystem) the loop saw unmarked */
	int npending;
	struct fuse_group fuse[MAX_FUSE_GROUPS];
	struct fuse_req inbox[FUSE_INBOX];
	/* watched namespaces (the responder thread's own, and deny_start's before it) */
	struct ns_watch {
		uint64_t ino;
		pid_t pid;
		int fd; /* its mountinfo in the epoll set, or -1 (a mount-namespace mark) */
	} *watch;
	int nwatch, capwatch, nfdwatch;
	int fuse_cap; /* FUSE groups at most: under MAX_FUSE_GROUPS and half the kernel's groups per user */
	atomic_bool need_sha256;
	atomic_bool need_remark; /* a FUSE group lost its filesystem: read the tables again */
	/* the responder thread's own: pidfds of the last callers (caller_info),
	 * and whether PIDFD_GET_INFO is missing here */
	struct caller_pidfd {
		pid_t pid;
		int fd;
	} callers[CALLER_PIDFDS];
	unsigned callers_next;
	bool no_pidfd_info;
	pid_t self;
	struct pw_dprog *prog;   /* under mu; the responder holds a reference per round */
	/* execs answered (under mu): the allowed ones' exec events need no kill
	 * after exec (deny_exec_seen); the late ones say so */
	struct recent {
		pid_t pid;
		dev_t dev;
		ino_t ino;
		bool late;     /* answered by default, not by the rules */
		uint64_t path_hash;
		uint64_t answered_ns; /* CLOCK_MONOTONIC, as exec events' ktime */
	} recent[RECENT_MAX];
	unsigned recent_next;
	struct pw_deny_stats st; /* under mu */
};

/* ---- sets ---------------------------------------------------------------- */

static uint64_t key_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return k;
}

static bool keyset_has(const struct keyset *s, uint64_t k)
{
	if (!s->cap)
		return false;
	for (size_t i = key_hash(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == 0)
			return false;
		if (s->v[i] == k + 1)
			return true;
	}
}

/* false when full (limit) or out of memory */
static bool keyset_add(struct keyset *s, uint64_t k, size_t limit)
{
	if (keyset_has(s, k))
		return true;
	if (s->n >= limit)
		return false;
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = calloc(cap, sizeof *v);
		if (!v)
			return false;
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				for (size_t j = key_hash(s->v[i] - 1) & (cap - 1);; j = (j + 1) & (cap - 1))
					if (!v[j]) {
						v[j] = s->v[i];
						break;
					}
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	for (size_t i = key_hash(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1))
		if (!s->v[i]) {
			s->v[i] = k + 1;
			s->n++;
			return true;
		}
}

static void keyset_clear(struct keyset *s)
{
	if (s->v)
		memset(s->v, 0, s->cap * sizeof *s->v);
	s->n = 0;
}

static void keyset_free(struct keyset *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

/* dst = src (dst's memory reused when it fits) */
static void keyset_copy(struct keyset *dst, const struct keyset *src)
{
	if (dst->cap != src->cap) {
		uint64_t *v = src->cap ? calloc(src->cap, sizeof *v) : NULL;
		if (src->cap && !v) {
			keyset_clear(dst);
			return;
		}
		free(dst->v);
		dst->v = v;
		dst->cap = src->cap;
	}
	if (src->cap)
		memcpy(dst->v, src->v, src->cap * sizeof *src->v);
	dst->n = src->n;
}

/* ---- marks --------------------------------------------------------------- */

static void wake_fd(int fd, const char *who)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
		pw_log(PW_LOG_ERROR, "deny: waking the %s: %s", who, strerror(errno));
}

static void wake_responder(struct pw_deny *d)
{
	wake_fd(d->wake, "responder");
}

static void wake_marker(struct pw_deny *d)
{
	wake_fd(d->mark_wake, "marker");
}

/* An fd (O_PATH) of a mount point, reached from rootfd, from the kernel's
 * caches only (RESOLVE_CACHED: a lookup that needs a filesystem fails at
 * once). A mount point and the directories above it are pinned in the
 * dentry cache while mounted, so this normally succeeds; a walk that would
 * ask a filesystem (a FUSE mount stacked over a directory on the way, a
 * network filesystem revalidating) could wait on a server, and is not
 * made. -errno on failure; -EAGAIN: not cached. */
static int open_mount_point(int rootfd, const char *point, bool under_fuse)
{
	const char *rel = point;
	while (*rel == '/')
		rel++;
	if (!*rel)
		rel = ".";
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_CACHED};
	long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
	if (fd < 0 && errno == ENOSYS) /* before openat2 (5.6): a plain walk, never below FUSE */
		fd = under_fuse ? (errno = EAGAIN, -1) : openat(rootfd, rel, O_PATH | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : (int)fd;
}

/* Mark the filesystem of an O_PATH fd. fanotify_mark() takes no O_PATH fd
 * as its object, so the fd's magic link names it: the walk jumps to the
 * object itself, looking nothing up. 0 or -errno. */
static int mark_fd(int fan, int fd)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/thread-self/fd/%d", fd);
	return fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, link) < 0 ? -errno : 0;
}

/* The device of an fd's filesystem, from cached attributes (never asks a
 * FUSE server). 0 or -errno. */
static int fd_dev(int fd, dev_t *dev)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &sx) < 0)
		return -errno;
	*dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	return 0;
}

/* Say once per device why it is not covered. Caller holds mu. */
static bool first_report(struct pw_deny *d, dev_t dev)
{
	if (keyset_has(&d->reported, dev))
		return false;
	keyset_add(&d->reported, dev, MAX_MARKS);
	return true;
}

static void fuse_group_ensure(struct pw_deny *d, const char *root, const struct pw_mount *m);
static bool ns_ino(pid_t pid, uint64_t *ino);

/* Mark the filesystem mounted at m (in the table ms, read from the
 * namespace whose root is rootfd, named root in paths) in the shared
 * group, once per device. */
static void mark_mount(struct pw_deny *d, int rootfd, const char *root, const struct pw_mounts *ms,
		       const struct pw_mount *m, bool verbose, bool user_owned)
{
	if (mounts_type_pseudo(m->type))
		return;
	/* An overlay a user mounted in a namespace of their own opens its lower
	 * files with that user's rights: they may lie on a FUSE mount of the
	 * same namespace. Answered apart like FUSE. */
	if (mounts_type_blocks(m->type) || (user_owned && strcmp(m->type, "overlay") == 0)) {
		fuse_group_ensure(d, root, m);
		return;
	}
	dev_t dev = makedev(m->maj, m->min);
	pthread_mutex_lock(&d->mu);
	bool done = keyset_has(&d->marked, dev);
	bool said = keyset_has(&d->prev, dev);
	pthread_mutex_unlock(&d->mu);
	if (done)
		return;
	int fd = open_mount_point(rootfd, m->point, mounts_under_fuse(ms, m));
	dev_t got = 0;
	int rc = fd < 0 ? fd : fd_dev(fd, &got);
	const char *why = NULL;
	if (rc == -EAGAIN)
		why = "its path is not in the kernel's caches: not walked (a FUSE server on the way could hold the walk)";
	else if (rc == 0 && got != dev)
		why = "another mount is stacked over it: its mount point leads elsewhere";
	else if (rc == 0)
		rc = mark_fd(d->fan, fd);
	if (fd >= 0)
		close(fd); /* O_PATH: closing it asks nothing of the filesystem */
	pthread_mutex_lock(&d->mu);
	bool report = false;
	if (!why && rc == 0) {
		if (keyset_add(&d->marked, dev, MAX_MARKS)) {
			d->st.filesystems++;
			if (verbose && !said)
				pw_log(PW_LOG_NOTICE, "deny: covering %s%s (%s)", root, m->point, m->type);
		} else { /* marked in the kernel, but not remembered: said, counted */
			d->st.mark_failures++;
			if (first_report(d, dev))
				pw_log(PW_LOG_ERROR, "deny: %d filesystems are marked (the limit): %s%s (%s) is marked but "
				       "its execs are not known as covered", MAX_MARKS, root, m->point, m->type);
		}
	} else {
		if (rc == -EAGAIN)
			d->st.mark_skipped++;
		else if (why)
			d->st.mark_hidden++;
		else
			d->st.mark_failures++;
		report = first_report(d, dev);
	}
	pthread_mutex_unlock(&d->mu);
	if (report)
		pw_log(PW_LOG_WARNING, "deny: cannot cover %s%s (%s): %s; execs from it are killed after exec "
		       "instead (marked through the process's exe at its first exec; retried at every mount change)",
		       root, m->point, m->type, why ? why : strerror(-rc));
}

/* Is pid's mount namespace owned by a user namespace other than the
 * initial one (made by an unprivileged user)? */
static bool ns_user_owned(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return true; /* gone: nothing will be marked there anyway */
	int user = ioctl(ns, NS_GET_USERNS);
	close(ns);
	if (user < 0)
		return true; /* unknown: assume a user made it */
	struct stat owner, ours; /* the daemon runs in the initial user namespace */
	bool other = fstat(user, &owner) < 0 || stat("/proc/self/ns/user", &ours) < 0 || owner.st_ino != ours.st_ino;
	close(user);
	return other;
}

/* Mark every filesystem of pid's mount namespace (pid 0: ours). */
static void mark_table(struct pw_deny *d, pid_t pid, bool verbose)
{
	char mi[64], root[64];
	if (pid) {
		snprintf(mi, sizeof mi, "/proc/%d/mountinfo", (int)pid);
		snprintf(root, sizeof root, "/proc/%d/root", (int)pid);
	} else {
		snprintf(mi, sizeof mi, "/proc/self/mountinfo");
		root[0] = 0;
	}
	struct pw_mounts ms;
	int rc = mounts_read(mi, &ms);
	if (rc == -EFBIG || rc == -ENOMEM) { /* a user can make a table this big: say so, once per namespace */
		uint64_t ns = 0;
		ns_ino(pid ? pid : d->self, &ns);
		pthread_mutex_lock(&d->mu);
		d->st.mark_failures++;
		bool report = first_report(d, ns | (1ull << 63));
		pthread_mutex_unlock(&d->mu);
		if (report)
			pw_log(PW_LOG_ERROR, "deny: the mount table of %s is too large to read (%s): its new "
			       "filesystems are marked only through the exe of their first exec", mi, strerror(-rc));
	}
	if (rc < 0)
		return; /* gone, or too large */
	int rootfd = open(pid ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	bool user_owned = pid && ns_user_owned(pid);
	if (rootfd >= 0) {
		for (size_t i = 0; i < ms.n; i++)
			mark_mount(d, rootfd, root, &ms, &ms.m[i], verbose, user_owned);
		close(rootfd);
	}
	mounts_free(&ms);
}

/* The filesystem of pid's executable, seen at an exec without a mark
 * (marker thread): mark it through the exe itself (a mount hidden under
 * another is reached this way). Its type is read from the process's mount
 * table now: the running exe pins its filesystem, so its device is not
 * another's. Never a FUSE one nor a user's overlay (their groups come with
 * their namespace's table), never one whose type is unknown. */
static void mark_exe(struct pw_deny *d, pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return;
	dev_t dev;
	bool done = fd_dev(fd, &dev) < 0;
	pthread_mutex_lock(&d->mu);
	done = done || keyset_has(&d->marked, dev) || keyset_has(&d->fuse_devs, dev);
	pthread_mutex_unlock(&d->mu);
	char type[32] = "";
	struct pw_mounts ms;
	snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)pid);
	if (!done && mounts_read(path, &ms) == 0) {
		for (size_t i = 0; i < ms.n && !type[0]; i++)
			if (makedev(ms.m[i].maj, ms.m[i].min) == dev)
				snprintf(type, sizeof type, "%s", ms.m[i].type);
		mounts_free(&ms);
	}
	if (done || !type[0] || mounts_type_blocks(type) || mounts_type_pseudo(type) ||
	    (strcmp(type, "overlay") == 0 && ns_user_owned(pid))) {
		close(fd);
		return;
	}
	int rc = mark_fd(d->fan, fd);
	close(fd);
	pthread_mutex_lock(&d->mu);
	bool added = false;
	if (rc == 0 && !keyset_has(&d->marked, dev) && keyset_add(&d->marked, dev, MAX_MARKS)) {
		d->st.filesystems++;
		added = true;
	} else if (rc < 0) {
		d->st.mark_failures++;
	}
	pthread_mutex_unlock(&d->mu);
	if (added)
		pw_log(PW_LOG_NOTICE, "deny: covering the filesystem (%s, %u:%u) of pid %d's exe, seen at its exec",
		       type, major(dev), minor(dev), (int)pid);
}

static uint64_t path_hash(const char *p);

/* A file unlinked between the exec's open and our readlink shows its path
 * with " (deleted)": the rules judge the path it was run by (a race must
 * not make a glob on the name miss). */
static void strip_deleted(char *path)
{
	static const char suffix[] = " (deleted)";
	size_t n = strlen(path), k = sizeof suffix - 1;
	if (n > k && strcmp(path + n - k, suffix) == 0)
		path[n - k] = 0;
}

/* ---- FUSE groups ----------------------------------------------------------- */

/* Answer one request of group fan and close its fd (on a FUSE group's
 * thread the close may wait on the server (FLUSH): that thread only). */
static void answer(int fan, int fd, bool deny)
{
	struct fanotify_response r = {.fd = fd, .response = deny ? FAN_DENY : FAN_ALLOW};
	if (write(fan, &r, sizeof r) != sizeof r)
		pw_log(PW_LOG_ERROR, "deny: answering fanotify: %s", strerror(errno));
	close(fd);
}

/* An exec let through (under mu): its exec event need not be judged again
 * when the rules decided it in time; late, its fallback says so. */
static void remember(struct pw_deny *d, const struct pw_deny_req *q, bool late)
{
	d->recent[d->recent_next++ % RECENT_MAX] =
		(struct recent){.pid = q->pid, .dev = q->dev, .ino = q->ino, .late = late,
				.path_hash = path_hash(q->exe), .answered_ns = pw_mono_ns()};
}

/* What is known of a FUSE file without asking its server: the path from the
 * fd's link, the attributes the kernel has cached. No hash: its bytes are
 * the server's to choose (and to withhold). */
static void fuse_describe(struct pw_deny *d, struct fuse_group *g, const struct fanotify_event_metadata *md,
			  struct pw_deny_req *r)
{
	memset(r, 0, sizeof *r);
	r->pid = md->pid;
	char link[64];
	snprintf(link, sizeof link, "/proc/thread-self/fd/%d", md->fd); /* our table is not the process's */
	ssize_t n = readlink(link, r->exe, sizeof r->exe - 1);
	r->exe[n > 0 ? n : 0] = 0;
	strip_deleted(r->exe);
	if (n < 0)
		snprintf(r->exe_error, sizeof r->exe_error, "%s", proc_errno_name(errno));
	struct statx sx;
	if (statx(md->fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &sx) == 0) {
		r->exe_uid = sx.stx_uid;
		r->exe_gid = sx.stx_gid;
		r->exe_mode = sx.stx_mode & 07777;
		r->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
		r->ino = sx.stx_ino;
	} else if (!r->exe_error[0]) { /* the server may refuse us (no allow_other): rules on them fail closed */
		snprintf(r->exe_error, sizeof r->exe_error, "FUSE attributes withheld");
	}
	snprintf(r->exe_fs, sizeof r->exe_fs, "%s", g->type);
	r->hash_late = atomic_load(&d->need_sha256); /* not read: fail closed where a rule needs it */
}

/* One read's requests: handed to the responder through the inbox, answered
 * with its verdicts, or by default when it has none in time. */
static void fuse_round(struct pw_deny *d, int gi, int fan, const struct fanotify_event_metadata *mds[], int n)
{
	struct fuse_group *g = &d->fuse[gi];
	int idx[PW_DENY_BATCH];
	uint64_t deadline = pw_mono_ns() + (uint64_t)d->cfg.timeout_ms * 1000000u;
	struct pw_deny_req req;
	for (int i = 0; i < n; i++) {
		fuse_describe(d, g, mds[i], &req);
		idx[i] = -1;
		pthread_mutex_lock(&d->mu);
		d->st.fuse_requests++;
		for (int k = 0; k < FUSE_INBOX && idx[i] < 0; k++)
			if (d->inbox[k].state == INBOX_FREE) {
				d->inbox[k] = (struct fuse_req){.state = INBOX_WAITING, .group = gi, .deadline = deadline, .req = req};
				idx[i] = k;
			}
		pthread_mutex_unlock(&d->mu);
	}
	wake_responder(d);
	/* the responder answers by the deadline; a little more for its hand-over */
	uint64_t until_ns = deadline + 100000000u;
	struct timespec until = {.tv_sec = (time_t)(until_ns / 1000000000u), .tv_nsec = (long)(until_ns % 1000000000u)};
	bool verdict[PW_DENY_BATCH];
	pthread_mutex_lock(&d->mu);
	for (;;) {
		bool all = true;
		for (int i = 0; i < n && all; i++)
			all = idx[i] < 0 || d->inbox[idx[i]].state == INBOX_ANSWERED;
		if (all || pthread_cond_timedwait(&d->fuse_cv, &d->mu, &until) == ETIMEDOUT)
			break;
	}
	for (int i = 0; i < n; i++) {
		if (idx[i] >= 0 && d->inbox[idx[i]].state == INBOX_ANSWERED) {
			verdict[i] = d->inbox[idx[i]].deny;
		} else {
			verdict[i] = d->cfg.fail_closed && !d->cfg.dry_run;
			d->st.fuse_defaulted++;
			const struct pw_deny_req *q = idx[i] >= 0 ? &d->inbox[idx[i]].req : NULL;
			if (q && !verdict[i]) /* its exec event says it was not decided in time */
				remember(d, q, true);
		}
		if (idx[i] >= 0)
			d->inbox[idx[i]].state = INBOX_FREE; /* a late responder finds it gone (see fuse_take) */
	}
	pthread_mutex_unlock(&d->mu);
	for (int i = 0; i < n; i++)
		answer(fan, mds[i]->fd, verdict[i]);
}

/* Does our group still hold its filesystem mark? The kernel drops it with
 * the filesystem; fdinfo lists the marks left ("fanotify sdev:..."). */
static bool fuse_mark_alive(int fan)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/thread-self/fdinfo/%d", fan);
	FILE *f = fopen(path, "re");
	if (!f)
		return true; /* cannot tell: keep serving */
	bool alive = false;
	while (!alive && fgets(line, sizeof line, f))
		alive = strncmp(line, "fanotify sdev:", 14) == 0;
	fclose(f);
	return alive;
}

struct fuse_start {
	struct pw_deny *d;
	int gi;
};

static void *fuse_thread(void *arg)
{
	struct fuse_start st = *(struct fuse_start *)arg;
	free(arg);
	struct pw_deny *d = st.d;
	struct fuse_group *g = &d->fuse[st.gi];
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* A table of our own: 0-2 and the two wake-up eventfds. The shared
	 * table holds no FUSE file, so closing our copies asks no server
	 * anything. */
	int fan = -1, err = 0;
	unsigned lo = (unsigned)(d->wake < d->mark_wake ? d->wake : d->mark_wake);
	unsigned hi = (unsigned)(d->wake < d->mark_wake ? d->mark_wake : d->wake);
	if (unshare(CLONE_FILES) < 0 || (lo > 3 && close_range(3, lo - 1, 0) < 0) ||
	    (hi > lo + 1 && close_range(lo + 1, hi - 1, 0) < 0) || close_range(hi + 1, ~0U, 0) < 0)
		err = errno;
	if (!err && (fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
					 O_RDONLY | O_LARGEFILE | O_CLOEXEC)) < 0)
		err = errno;
	if (!err) { /* the walk, the check and the mark may each wait on the server */
		int mfd = open(g->path, O_PATH | O_CLOEXEC);
		dev_t dev = 0;
		if (mfd < 0 || fd_dev(mfd, &dev) < 0)
			err = errno;
		else if (dev != g->dev)
			err = EXDEV; /* stacked over: not this filesystem */
		else
			err = -mark_fd(fan, mfd);
		if (mfd >= 0)
			close(mfd);
	}
	pthread_mutex_lock(&d->mu);
	bool report = true;
	if (err) {
		g->err = err;
		d->st.mark_failures++;
		report = first_report(d, g->dev); /* retried at each mount change, said once */
	} else {
		keyset_add(&d->fuse_devs, g->dev, MAX_MARKS);
	}
	atomic_store(&g->state, err ? FUSE_FAILED : FUSE_MARKED);
	pthread_mutex_unlock(&d->mu);
	if (err && report)
		pw_log(PW_LOG_WARNING, "deny: cannot cover the FUSE filesystem at %s (%s): %s; execs from it are "
		       "killed after exec instead", g->path, g->type, err == EXDEV ? "another mount is stacked over it" : strerror(err));
	else if (!err)
		pw_log(PW_LOG_NOTICE, "deny: covering %s (%s), answered apart (its server cannot hold other execs)",
		       g->path, g->type);
	char buf[PW_DENY_BATCH * sizeof(struct fanotify_event_metadata) + 64];
	while (!err && !atomic_load(&g->stop)) {
		struct pollfd p = {.fd = fan, .events = POLLIN};
		int r = poll(&p, 1, FUSE_POLL_MS);
		if (r == 0 && !fuse_mark_alive(fan)) {
			/* unmounted: a new filesystem may reuse its device number,
			 * so the group ends and the tables are read again */
			atomic_store(&d->need_remark, true);
			wake_marker(d);
			break;
		}
		if (r <= 0)
			continue;
		ssize_t len = read(fan, buf, sizeof buf); /* the kernel opens each file for us: may wait */
		if (len <= 0)
			continue;
		const struct fanotify_event_metadata *md = (const void *)buf;
		const struct fanotify_event_metadata *mds[PW_DENY_BATCH];
		int n = 0;
		for (; FAN_EVENT_OK(md, len) && n < PW_DENY_BATCH; md = FAN_EVENT_NEXT(md, len)) {
			if (md->fd < 0)
				continue;
			if (md->vers != FANOTIFY_METADATA_VERSION || !(md->mask & FAN_OPEN_EXEC_PERM) || md->pid == d->self) {
				answer(fan, md->fd, false);
				continue;
			}
			mds[n++] = md;
		}
		if (n)
			fuse_round(d, st.gi, fan, mds, n);
	}
	if (fan >= 0)
		close(fan); /* the kernel allows whatever still waits on this filesystem */
	pthread_mutex_lock(&d->mu);
	atomic_store(&g->state, FUSE_DONE);
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Reap groups whose thread ended (under nothing: responder thread only). */
static void fuse_reap(struct pw_deny *d)
{
	for (int i = 0; i < MAX_FUSE_GROUPS; i++) {
		struct fuse_group *g = &d->fuse[i];
		if (!g->used || atomic_load(&g->state) != FUSE_DONE)
			continue;
		pthread_join(g->thread, NULL);
		pthread_mutex_lock(&d->mu);
		free(g->path);
		memset(g, 0, sizeof *g);
		pthread_mutex_unlock(&d->mu);
	}
}

/* A FUSE filesystem seen in a mount table: its group, started once. */
static void fuse_group_ensure(struct pw_deny *d, const char *root, const struct pw_mount *m)
{
	dev_t dev = makedev(m->maj, m->min);
	int free_i = -1, live = 0;
	for (int i = 0; i < MAX_FUSE_GROUPS; i++) {
		struct fuse_group *g = &d->fuse[i];
		if (g->used && g->dev == dev && atomic_load(&g->state) != FUSE_DONE && !atomic_load(&g->stop)) {
			g->seen = true;
			return;
		}
		if (!g->used && free_i < 0)
			free_i = i;
		live += g->used;
	}
	if (free_i < 0 || live >= d->fuse_cap) {
		pthread_mutex_lock(&d->mu);
		d->st.fuse_refused++;
		bool report = first_report(d, dev);
		pthread_mutex_unlock(&d->mu);
		if (report)
			pw_log(PW_LOG_ERROR, "deny: cannot cover the FUSE filesystem at %s%s (%s): %d FUSE filesystems "
			       "are covered already (the limit); execs from it are killed after exec instead",
			       root, m->point, m->type, live);
		return;
	}
	struct fuse_group *g = &d->fuse[free_i];
	size_t len = strlen(root) + strlen(m->point) + 1;
	char *path = malloc(len);
	struct fuse_start *arg = malloc(sizeof *arg);
	if (!path || !arg) {
		free(path);
		free(arg);
		return;
	}
	snprintf(path, len, "%s%s", root, m->point);
	pthread_mutex_lock(&d->mu);
	*g = (struct fuse_group){.used = true, .dev = dev, .path = path, .seen = true};
	snprintf(g->type, sizeof g->type, "%s", m->type);
	atomic_store(&g->state, FUSE_STARTING);
	atomic_store(&g->stop, false);
	pthread_mutex_unlock(&d->mu);
	*arg = (struct fuse_start){.d = d, .gi = free_i};
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, FUSE_STACK);
	int r = pthread_create(&g->thread, &attr, fuse_thread, arg);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		pw_log(PW_LOG_ERROR, "deny: a thread for the FUSE filesystem at %s: %s", path, strerror(r));
		free(arg);
		pthread_mutex_lock(&d->mu);
		free(g->path);
		memset(g, 0, sizeof *g);
		d->st.mark_failures++;
		pthread_mutex_unlock(&d->mu);
	}
}

/* The requests FUSE groups wait on, into a round (responder thread). */
static int fuse_take(struct pw_deny *d, struct slot *out, int max)
{
	int n = 0;
	pthread_mutex_lock(&d->mu);
	uint64_t now = pw_mono_ns();
	for (int i = 0; i < FUSE_INBOX && n < max; i++)
		if (d->inbox[i].state == INBOX_WAITING && now < d->inbox[i].deadline) { /* else its thread defaults it */
			d->inbox[i].state = INBOX_TAKEN;
			out[n] = (struct slot){.req = d->inbox[i].req, .fd = -1, .inbox = i, .state = SLOT_ASKED};
			n++;
		}
	pthread_mutex_unlock(&d->mu);
	return n;
}

/* ---- namespaces -------------------------------------------------------------- */

/* What woke the responder (epoll data). */
enum { WAKE_REQUEST, WAKE_STOP, WAKE_MOUNTS, WAKE_INBOX, WAKE_SCAN };

/* Add fd to an epoll set (the responder's or the marker's): 0 or -errno. */
static int wait_on(int ep, int fd, uint32_t events, uint32_t what)
{
	struct epoll_event e = {.events = events, .data.u32 = what};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0 ? 0 : -errno;
}

static void unwatch(struct pw_deny *d, int i)
{
	if (d->watch[i].fd >= 0) {
		/* explicitly: close() alone leaves it in the set while an exec()
		 * child still holds a copy, between its fork and its execve */
		epoll_ctl(d->mep, EPOLL_CTL_DEL, d->watch[i].fd, NULL);
		close(d->watch[i].fd);
		d->nfdwatch--;
	}
	d->watch[i] = d->watch[--d->nwatch];
}

/* Be told when pid's mount namespace (nsfs inode ino) changes: a
 * mount-namespace mark, else its mountinfo in the epoll set. */
static bool watch_namespace(struct pw_deny *d, pid_t pid, uint64_t ino)
{
	if (d->nwatch == d->capwatch) {
		if (d->capwatch >= MAX_NAMESPACES)
			return false;
		int cap = d->capwatch ? d->capwatch * 2 : 64;
		struct ns_watch *w = realloc(d->watch, sizeof *w * (size_t)cap);
		if (!w)
			return false;
		d->watch = w;
		d->capwatch = cap;
	}
	char path[64];
	int fd = -1;
	if (d->mnt_fan >= 0) {
		snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
		int ns = open(path, O_RDONLY | O_CLOEXEC);
		int rc = ns < 0 ? -errno
			 : fanotify_mark(d->mnt_fan, FAN_MARK_ADD | FAN_MARK_MNTNS, FAN_MNT_ATTACH | FAN_MNT_DETACH, ns, NULL) < 0 ? -errno : 0;
		if (ns >= 0)
			close(ns);
		if (rc < 0)
			return rc == -ENOENT || rc == -ESRCH; /* gone since: nothing to watch */
	} else {
		if (d->nfdwatch >= MAX_FD_WATCHES)
			return false;
		snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		int rc = fd < 0 ? -errno : wait_on(d->mep, fd, EPOLLPRI, WAKE_MOUNTS);
		if (rc < 0) {
			if (fd >= 0)
				close(fd);
			return rc == -ENOENT || rc == -ESRCH; /* gone: nothing to watch; else refused */
		}
		d->nfdwatch++;
	}
	d->watch[d->nwatch++] = (struct ns_watch){.ino = ino, .pid = pid, .fd = fd};
	return true;
}

static int watch_find(const struct pw_deny *d, uint64_t ino)
{
	for (int i = 0; i < d->nwatch; i++)
		if (d->watch[i].ino == ino)
			return i;
	return -1;
}

static bool ns_ino(pid_t pid, uint64_t *ino)
{
	char path[64];
	struct stat sb;
	snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
	if (stat(path, &sb) < 0)
		return false;
	*ino = sb.st_ino;
	return true;
}

/* A namespace seen for the first time (through pid): mark its filesystems
 * and watch it. false when a limit refused it. */
static bool adopt_namespace(struct pw_deny *d, pid_t pid, uint64_t ino)
{
	mark_table(d, pid, true);
	if (watch_namespace(d, pid, ino))
		return true;
	pthread_mutex_lock(&d->mu);
	d->st.ns_limit++;
	bool report = d->st.ns_limit == 1;
	pthread_mutex_unlock(&d->mu);
	if (report)
		pw_log(PW_LOG_ERROR, "deny: cannot watch more mount namespaces (%d watched): new mounts in the others "
		       "are found by the rescans, every %d s", d->nwatch, NS_SCAN_MS / 1000);
	return false;
}

/* Other mount namespaces (containers): mark the filesystems of each one
 * seen for the first time, watch it, forget the ones gone. */
static void scan_namespaces(struct pw_deny *d)
{
	uint64_t self_ino = 0;
	ns_ino(d->self, &self_ino);
	struct keyset seen = {0};
	keyset_add(&seen, self_ino, MAX_NAMESPACES);
	DIR *dir = opendir("/proc");
	if (!dir)
		return;
	struct dirent *de;
	while ((de = readdir(dir))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		uint64_t ino;
		if (*end || pid <= 0 || !ns_ino((pid_t)pid, &ino) || keyset_has(&seen, ino))
			continue;
		if (!keyset_add(&seen, ino, MAX_NAMESPACES)) {
			pthread_mutex_lock(&d->mu);
			d->st.ns_limit++;
			pthread_mutex_unlock(&d->mu);
			continue;
		}
		int w = watch_find(d, ino);
		if (w >= 0) { /* known: follow a live member of it */
			uint64_t still;
			if (!ns_ino(d->watch[w].pid, &still) || still != ino) { /* gone, or its pid reused */
				unwatch(d, w);
				watch_namespace(d, (pid_t)pid, ino);
			}
			continue;
		}
		pthread_mutex_lock(&d->mu);
		bool known = keyset_has(&d->known_ns, ino); /* scanned but not watched (a limit) */
		pthread_mutex_unlock(&d->mu);
		if (!known || d->nwatch < d->capwatch)
			adopt_namespace(d, (pid_t)pid, ino);
	}
	closedir(dir);
	for (int i = d->nwatch - 1; i >= 0; i--) /* namespaces gone */
		if (!keyset_has(&seen, d->watch[i].ino))
			unwatch(d, i);
	pthread_mutex_lock(&d->mu);
	keyset_copy(&d->known_ns, &seen);
	d->st.namespaces = seen.n - 1;
	pthread_mutex_unlock(&d->mu);
	keyset_free(&seen);
}

/* Namespaces the loop saw an exec from for the first time: now. */
static void scan_pending(struct pw_deny *d)
{
	pid_t pids[PENDING_SCANS];
	pthread_mutex_lock(&d->mu);
	int n = d->npending;
	memcpy(pids, d->pending, sizeof pids[0] * (size_t)n);
	d->npending = 0;
	pthread_mutex_unlock(&d->mu);
	uint64_t self_ino = 0;
	ns_ino(d->self, &self_ino);
	for (int i = 0; i < n; i++) {
		uint64_t ino;
		if (!ns_ino(pids[i], &ino))
			continue;
		if (ino != self_ino && watch_find(d, ino) < 0) {
			adopt_namespace(d, pids[i], ino);
			pthread_mutex_lock(&d->mu);
			keyset_add(&d->known_ns, ino, MAX_NAMESPACES);
			d->st.ns_scans_at_exec++;
			d->st.namespaces = d->known_ns.n ? d->known_ns.n - 1 : 0;
			pthread_mutex_unlock(&d->mu);
		}
		mark_exe(d, pids[i]); /* its own filesystem, if still unmarked */
	}
}

/* A mount table changed. A filesystem's mark dies with it, and a new one
 * may reuse its device number: forget what was marked and mark everything
 * mounted now (marking a marked filesystem again is harmless). FUSE groups
 * whose filesystem is gone from every table stop. */
static void remark_all(struct pw_deny *d)
{
	pthread_mutex_lock(&d->mu);
	keyset_copy(&d->prev, &d->marked);
	keyset_clear(&d->marked);
	d->st.filesystems = 0; /* counted again: filesystems marked now */
	for (int i = 0; i < MAX_FUSE_GROUPS; i++)
		d->fuse[i].seen = false;
	pthread_mutex_unlock(&d->mu);
	mark_table(d, 0, true);
	for (int i = 0; i < d->nwatch; i++)
		mark_table(d, d->watch[i].pid, true);
	int live = 0;
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < MAX_FUSE_GROUPS; i++) {
		struct fuse_group *g = &d->fuse[i];
		if (g->used && !g->seen)
			atomic_store(&g->stop, true);
		live += g->used && g->seen;
	}
	d->st.fuse_groups = (uint64_t)live;
	keyset_clear(&d->fuse_devs); /* the devices still answered by a group */
	for (int i = 0; i < MAX_FUSE_GROUPS; i++)
		if (d->fuse[i].used && d->fuse[i].seen && atomic_load(&d->fuse[i].state) == FUSE_MARKED)
			keyset_add(&d->fuse_devs, d->fuse[i].dev, MAX_MARKS);
	pthread_mutex_unlock(&d->mu);
	fuse_reap(d);
}

/* ---- exec events ------------------------------------------------------------- */

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

bool deny_exec_seen(struct pw_deny *d, pid_t pid, const char *exe, uint64_t ktime_ns, const char **why)
{
	if (why)
		*why = NULL;
	if (!d)
		return false;
	char path[64]; /* the magic link reaches the file in the process's own namespace */
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	/* outside the lock: the responder never waits on our syscalls; cached
	 * attributes: a FUSE exe's server is never asked */
	struct statx sx;
	bool have_stat = statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_INO, &sx) == 0;
	dev_t dev = have_stat ? makedev(sx.stx_dev_major, sx.stx_dev_minor) : 0;
	uint64_t ns = 0;
	bool have_ns = ns_ino(pid, &ns);
	uint64_t h = exe ? path_hash(exe) : 0;
	bool known = !have_stat, decided = false, late = false, wake = false;
	pthread_mutex_lock(&d->mu);
	if (have_stat)
		known = keyset_has(&d->marked, dev) || keyset_has(&d->fuse_devs, dev);
	/* a namespace not seen before, or an exe on an unmarked filesystem: the
	 * marker thread scans and marks them now (never the loop: a table may
	 * be huge, a filesystem may be FUSE) */
	if ((have_ns && !keyset_has(&d->known_ns, ns)) || !known) {
		bool queued = false;
		for (int i = 0; i < d->npending && !queued; i++)
			queued = d->pending[i] == pid;
		if (!queued && d->npending < PENDING_SCANS) {
			d->pending[d->npending++] = pid;
			wake = true;
		}
	}
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
		bool same = have_stat ? r->dev == dev && r->ino == sx.stx_ino : !exe || r->path_hash == h;
		if (same && r->late)
			late = true; /* answered by default: the rules did not judge it */
		else
			decided = same;
	}
	if (decided) /* this execve's requests (the binary, its interpreter) are spent; a later one's are not */
		for (unsigned i = 0; i < in_window; i++)
			if (recent_at(d, i)->pid == pid && recent_at(d, i)->answered_ns <= ktime_ns)
				recent_at(d, i)->pid = 0;
	pthread_mutex_unlock(&d->mu);
	if (wake)
		wake_marker(d);
	if (!decided && why) {
		if (exe && strncmp(exe, "/memfd:", 7) == 0)
			*why = "memfd (no file for fanotify to see)";
		else if (have_stat && !known)
			*why = "unmarked filesystem";
		else if (late)
			*why = "not decided by the deadline";
		else
			*why = "no decision seen (exec before its filesystem was marked, or too many execs at once)";
	}
	return decided;
}
/* ---- the responder ----------------------------------------------------- */

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
	strip_deleted(r->exe);
	if (n < 0) /* a path over 4095 bytes: ENAMETOOLONG; the rules on exe fail closed */
		snprintf(r->exe_error, sizeof r->exe_error, "%s", proc_errno_name(errno));
	struct stat sb;
	bool have_sb = fstat(md->fd, &sb) == 0;
	if (have_sb) {
		r->exe_uid = sb.st_uid;
		r->exe_gid = sb.st_gid;
		r->exe_mode = sb.st_mode & 07777;
		r->dev = sb.st_dev;
		r->ino = sb.st_ino;
		mounts_fs_type(md->pid, sb.st_dev, r->exe_fs, sizeof r->exe_fs);
	} else if (!r->exe_error[0]) {
		snprintf(r->exe_error, sizeof r->exe_error, "%s", proc_errno_name(errno));
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
		else if (r->exe_error[0]) /* unreadable: Lua fails closed and says why */
			*v = (struct pw_dvalue){.type = PW_DV_UNKNOWN};
		return;
	case PW_DF_SHA256:
		if (r->have_sha256)
			*v = (struct pw_dvalue){.type = PW_DV_STR, .s = r->sha256};
		return;
	case PW_DF_EXE_UID:
		*v = r->dev || r->ino ? (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_uid}
				      : (struct pw_dvalue){.type = PW_DV_UNKNOWN};
		return;
	case PW_DF_EXE_GID:
		*v = r->dev || r->ino ? (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_gid}
				      : (struct pw_dvalue){.type = PW_DV_UNKNOWN};
		return;
	case PW_DF_EXE_MODE:
		*v = r->dev || r->ino ? (struct pw_dvalue){.type = PW_DV_INT, .i = r->exe_mode}
				      : (struct pw_dvalue){.type = PW_DV_UNKNOWN};
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

/* Decide a round: round[0..k) described already, each SLOT_ASKED. */
static void run_round(struct pw_deny *d, struct slot *round, int k, uint64_t t0)
{
	uint64_t deadline = t0 + (uint64_t)d->cfg.timeout_ms * 1000000u;
	bool need_hash = atomic_load(&d->need_sha256);
	pthread_mutex_lock(&d->mu);
	struct pw_dprog *prog = d->prog;
	dprog_ref(prog);
	pthread_mutex_unlock(&d->mu);
	int asked = 0;
	for (int i = 0; i < k; i++) {
		round[i].late = false;
		/* a hash not had in time: Lua decides on the rules' other entries */
		if (prog && !(round[i].req.hash_late && dprog_needs_sha256(prog)))
			decide_here(d, prog, &round[i]);
		asked += round[i].state == SLOT_ASKED;
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
		if (s->inbox >= 0 && d->inbox[s->inbox].state != INBOX_TAKEN)
			continue; /* its FUSE thread answered by default already (and counted it) */
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
		if (!deny)
			remember(d, &s->req, !decided);
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
	/* FUSE requests: their verdict to the thread that reads their group */
	bool fuse = false;
	for (int i = 0; i < k; i++) {
		struct fuse_req *f = round[i].inbox >= 0 ? &d->inbox[round[i].inbox] : NULL;
		if (f && f->state == INBOX_TAKEN) { /* else its thread gave up waiting */
			f->deny = round[i].req.deny;
			f->state = INBOX_ANSWERED;
			fuse = true;
		}
	}
	if (fuse)
		pthread_cond_broadcast(&d->fuse_cv);
	pthread_mutex_unlock(&d->mu);
	/* Answer after the lock: every request of the round, decided or not. */
	for (int i = 0; i < k; i++)
		if (round[i].fd >= 0)
			answer(d->fan, round[i].fd, round[i].req.deny);
	if (outputs)
		ev_async_send(d->cfg.loop, &d->async);
}

/* The marker thread: keeps the marks current (mount changes, new
 * namespaces, execs from unmarked filesystems, the periodic scan), so the
 * responder never waits on a mount table a user made huge. */
static void *marker(void *arg)
{
	struct pw_deny *d = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	char buf[4096];
	uint64_t next_ns_scan = pw_mono_ns() + NS_SCAN_MS * 1000000ull;
	for (;;) {
		struct epoll_event ev[8];
		int r = epoll_wait(d->mep, ev, 8, NS_SCAN_MS);
		if (r < 0 && errno != EINTR) {
			pw_log(PW_LOG_ERROR, "deny: marker: epoll_wait: %s; marks are no longer kept current", strerror(errno));
			break;
		}
		bool stop = false, changed = false, scan = false;
		for (int i = 0; i < r; i++) {
			stop |= ev[i].data.u32 == WAKE_STOP;
			changed |= ev[i].data.u32 == WAKE_MOUNTS; /* this or another namespace's mount table */
			scan |= ev[i].data.u32 == WAKE_SCAN;
		}
		if (stop)
			break;
		if (changed && d->mnt_fan >= 0) /* drain the mount events: what changed is read from the tables */
			while (read(d->mnt_fan, buf, sizeof buf) > 0)
				;
		if (scan) {
			uint64_t count;
			if (read(d->mark_wake, &count, sizeof count) < 0 && errno != EAGAIN)
				pw_log(PW_LOG_ERROR, "deny: marker: reading its wake-ups: %s", strerror(errno));
			changed |= atomic_exchange(&d->need_remark, false);
		}
		if (changed)
			remark_all(d);
		if (scan)
			scan_pending(d);
		if (pw_mono_ns() >= next_ns_scan) {
			scan_namespaces(d);
			fuse_reap(d);
			next_ns_scan = pw_mono_ns() + NS_SCAN_MS * 1000000ull;
		}
	}
	return NULL;
}

/* The responder thread: answers, and nothing else. */
static void *responder(void *arg)
{
	struct pw_deny *d = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	char buf[PW_DENY_BATCH * sizeof(struct fanotify_event_metadata) + 64];
	struct slot round[PW_DENY_BATCH];
	for (;;) {
		struct epoll_event ev[8];
		int r = epoll_wait(d->ep, ev, 8, -1);
		if (r < 0 && errno != EINTR) {
			pw_log(PW_LOG_ERROR, "deny: responder: epoll_wait: %s; pre-exec decisions stop", strerror(errno));
			break;
		}
		bool stop = false, request = false, inbox = false;
		for (int i = 0; i < r; i++) {
			stop |= ev[i].data.u32 == WAKE_STOP;
			request |= ev[i].data.u32 == WAKE_REQUEST;
			inbox |= ev[i].data.u32 == WAKE_INBOX;
		}
		if (stop)
			break;
		if (inbox) {
			uint64_t count;
			if (read(d->wake, &count, sizeof count) < 0 && errno != EAGAIN)
				pw_log(PW_LOG_ERROR, "deny: responder: reading its wake-ups: %s", strerror(errno));
		}
		uint64_t t0 = pw_mono_ns();
		int k = inbox ? fuse_take(d, round, PW_DENY_BATCH) : 0;
		ssize_t len = request && k < PW_DENY_BATCH ? read(d->fan, buf, sizeof(struct fanotify_event_metadata) * (size_t)(PW_DENY_BATCH - k)) : 0;
		const struct fanotify_event_metadata *md = (const void *)buf;
		for (; len > 0 && FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			if (md->vers != FANOTIFY_METADATA_VERSION) {
				pw_log(PW_LOG_ERROR, "deny: fanotify metadata version %u, expected %u",
				       md->vers, FANOTIFY_METADATA_VERSION);
				if (md->fd >= 0)
					answer(d->fan, md->fd, false);
				continue;
			}
			if (md->fd < 0)
				continue; /* FAN_Q_OVERFLOW: nothing to answer */
			if (!(md->mask & FAN_OPEN_EXEC_PERM)) {
				close(md->fd);
				continue;
			}
			if (md->pid == d->self) { /* never wait on ourselves */
				pthread_mutex_lock(&d->mu);
				d->st.own++;
				pthread_mutex_unlock(&d->mu);
				answer(d->fan, md->fd, false);
				continue;
			}
			round[k] = (struct slot){.fd = md->fd, .inbox = -1, .state = SLOT_ASKED};
			describe(d, &round[k], md, t0 + (uint64_t)d->cfg.timeout_ms * 1000000u / 2);
			k++;
		}
		if (k)
			run_round(d, round, k, t0);
		if (inbox && k == PW_DENY_BATCH) /* more may wait in the inbox */
			wake_responder(d);
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
				if (d->slots[i].state == SLOT_ASKED && d->slots[i].fd == work[j].fd &&
				    d->slots[i].inbox == work[j].inbox) {
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

/* What no mark can close, said once at start: a user namespace lets any user
 * mount a filesystem and exec from it before a mark can exist; a memfd
 * has no filesystem to mark. */
static void warn_open_doors(void)
{
	char v[32] = "";
	FILE *f = fopen("/proc/sys/kernel/unprivileged_userns_clone", "re");
	if (!f)
		f = fopen("/proc/sys/user/max_user_namespaces", "re");
	if (f) {
		if (!fgets(v, sizeof v, f))
			v[0] = 0;
		fclose(f);
	}
	if (v[0] && atol(v) > 0)
		pw_log(PW_LOG_WARNING, "deny: unprivileged user namespaces are enabled: one program can unshare, mount "
		       "a tmpfs, write a binary and exec it before any mark exists (it is killed after exec instead); "
		       "sysctl kernel.unprivileged_userns_clone=0 (Debian) or user.max_user_namespaces=0 closes that");
	v[0] = 0;
	f = fopen("/proc/sys/vm/memfd_noexec", "re");
	if (f) {
		if (!fgets(v, sizeof v, f))
			v[0] = 0;
		fclose(f);
		if (v[0] && atol(v) != 2)
			pw_log(PW_LOG_WARNING, "deny: memfd execs are allowed (vm.memfd_noexec=%ld): fanotify never sees "
			       "them (they are killed after exec instead); sysctl vm.memfd_noexec=2 refuses them", atol(v));
	}
}

/* FUSE groups at most: fanotify groups count per user (root here, whoever
 * else uses them too): take at most half of the kernel's limit. */
static int fuse_group_cap(void)
{
	long groups = 128;
	FILE *f = fopen("/proc/sys/fs/fanotify/max_user_groups", "re");
	if (f) {
		if (fscanf(f, "%ld", &groups) != 1)
			groups = 128;
		fclose(f);
	}
	long cap = groups / 2 - 2;
	return cap < 0 ? 0 : cap > MAX_FUSE_GROUPS ? MAX_FUSE_GROUPS : (int)cap;
}

/* Enough fds for the watches: the soft limit up to the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			pw_log(PW_LOG_WARNING, "deny: raising the open file limit: %s", strerror(errno));
	}
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
	d->stop_pipe[0] = d->stop_pipe[1] = d->mountinfo = d->ep = d->mnt_fan = d->wake = -1;
	d->mep = d->mark_wake = -1;
	d->fuse_cap = fuse_group_cap();
	d->self = getpid();
	for (int i = 0; i < CALLER_PIDFDS; i++)
		d->callers[i].fd = -1;
	atomic_store(&d->need_sha256, cfg->need_sha256);
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_cond_init(&d->fuse_cv, &ca);
	pthread_condattr_destroy(&ca);
	raise_fd_limit();
	d->fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE,
			       O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (d->fan < 0) {
		snprintf(err, errlen, "fanotify_init: %s%s", strerror(errno),
			 errno == EPERM ? " (needs CAP_SYS_ADMIN)" : errno == ENOSYS ? " (kernel without fanotify)" : "");
		deny_stop(d);
		return NULL;
	}
	/* Probe FAN_OPEN_EXEC_PERM (5.0+, CONFIG_FANOTIFY_ACCESS_PERMISSIONS) on /. */
	if (fanotify_mark(d->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, "/") < 0) {
		snprintf(err, errlen, "fanotify exec permission marks unavailable: %s", strerror(errno));
		deny_stop(d);
		return NULL;
	}
	struct stat sb;
	if (stat("/", &sb) == 0 && keyset_add(&d->marked, sb.st_dev, MAX_MARKS))
		d->st.filesystems++;
	pw_log(PW_LOG_NOTICE, "deny: covering / (root filesystem)");
	d->ep = epoll_create1(EPOLL_CLOEXEC);
	d->mep = epoll_create1(EPOLL_CLOEXEC);
	d->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->mark_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->ep < 0 || d->mep < 0 || d->wake < 0 || d->mark_wake < 0 || pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s: %s", d->ep < 0 || d->mep < 0 ? "epoll_create1" : d->wake < 0 || d->mark_wake < 0 ? "eventfd" : "pipe",
			 strerror(errno));
		deny_stop(d);
		return NULL;
	}
	/* mount changes: mount-namespace marks (6.14+), else mountinfo's POLLPRI */
	d->mnt_fan = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_MNT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC);
	if (d->mnt_fan >= 0) {
		int ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (ns < 0 || fanotify_mark(d->mnt_fan, FAN_MARK_ADD | FAN_MARK_MNTNS, FAN_MNT_ATTACH | FAN_MNT_DETACH, ns, NULL) < 0) {
			close(d->mnt_fan);
			d->mnt_fan = -1;
		}
		if (ns >= 0)
			close(ns);
	}
	if (d->mnt_fan < 0)
		d->mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	/* the responder: requests; the marker: mount changes and scans; both: stop */
	int rc = wait_on(d->ep, d->fan, EPOLLIN, WAKE_REQUEST);
	if (rc == 0)
		rc = wait_on(d->ep, d->stop_pipe[0], EPOLLIN, WAKE_STOP);
	if (rc == 0)
		rc = wait_on(d->ep, d->wake, EPOLLIN, WAKE_INBOX);
	if (rc == 0)
		rc = wait_on(d->mep, d->stop_pipe[0], EPOLLIN, WAKE_STOP);
	if (rc == 0)
		rc = wait_on(d->mep, d->mark_wake, EPOLLIN, WAKE_SCAN);
	if (rc == 0 && d->mnt_fan >= 0)
		rc = wait_on(d->mep, d->mnt_fan, EPOLLIN, WAKE_MOUNTS);
	if (rc == 0 && d->mountinfo >= 0)
		rc = wait_on(d->mep, d->mountinfo, EPOLLPRI, WAKE_MOUNTS);
	if (rc < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(-rc));
		deny_stop(d);
		return NULL;
	}
	pw_log(PW_LOG_INFO, "deny: mount changes seen through %s",
	       d->mnt_fan >= 0 ? "mount-namespace fanotify marks" : "mountinfo polling (kernel before 6.14)");
	warn_open_doors();
	mark_table(d, 0, true);
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
	r = pthread_create(&d->marker, NULL, marker, d);
	if (r != 0) {
		snprintf(err, errlen, "marker thread: %s", strerror(r));
		deny_stop(d);
		return NULL;
	}
	d->marker_started = true;
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

/* Stop the FUSE groups' threads. false when one is held by its server (it
 * keeps only its own group, whose execs the kernel releases once the
 * server answers or dies): d must then outlive us. */
static bool fuse_stop_all(struct pw_deny *d)
{
	bool all = true;
	for (int i = 0; i < MAX_FUSE_GROUPS; i++)
		if (d->fuse[i].used)
			atomic_store(&d->fuse[i].stop, true);
	pthread_mutex_lock(&d->mu);
	for (int i = 0; i < FUSE_INBOX; i++) /* whoever waits on the responder: by default now */
		if (d->inbox[i].state == INBOX_WAITING || d->inbox[i].state == INBOX_TAKEN) {
			d->inbox[i].deny = d->cfg.fail_closed && !d->cfg.dry_run;
			d->inbox[i].state = INBOX_ANSWERED;
		}
	pthread_cond_broadcast(&d->fuse_cv);
	pthread_mutex_unlock(&d->mu);
	struct timespec until; /* one deadline for all: a held thread costs it once */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (FUSE_POLL_MS * 2 % 1000) * 1000000L;
	until.tv_sec += FUSE_POLL_MS * 2 / 1000 + until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	for (int i = 0; i < MAX_FUSE_GROUPS; i++) {
		struct fuse_group *g = &d->fuse[i];
		if (!g->used)
			continue;
		if (pthread_timedjoin_np(g->thread, NULL, &until) != 0) {
			pw_log(PW_LOG_WARNING, "deny: the FUSE server of %s holds its thread; only execs from that "
			       "filesystem wait, until the server answers or dies", g->path);
			pthread_detach(g->thread);
			all = false;
			continue;
		}
		free(g->path);
		g->used = false;
	}
	return all;
}

void deny_stop(struct pw_deny *d)
{
	if (!d)
		return;
	if (d->thread_started || d->marker_started) {
		if (write(d->stop_pipe[1], "x", 1) != 1)
			pw_log(PW_LOG_ERROR, "deny: stopping the responder: %s", strerror(errno));
		if (d->thread_started)
			pthread_join(d->thread, NULL);
		if (d->marker_started)
			pthread_join(d->marker, NULL);
	}
	if (d->thread_started)
		ev_async_stop(d->cfg.loop, &d->async);
	if (d->fan >= 0)
		close(d->fan); /* at once: the kernel allows whatever still waits */
	d->fan = -1;
	bool free_d = fuse_stop_all(d);
	for (int i = 0; i < 2; i++)
		if (d->stop_pipe[i] >= 0)
			close(d->stop_pipe[i]);
	if (d->mountinfo >= 0)
		close(d->mountinfo);
	if (d->mnt_fan >= 0)
		close(d->mnt_fan);
	while (d->nwatch > 0)
		unwatch(d, d->nwatch - 1);
	free(d->watch);
	if (d->ep >= 0)
		close(d->ep);
	if (d->mep >= 0)
		close(d->mep);
	for (int i = 0; i < CALLER_PIDFDS; i++)
		if (d->callers[i].fd >= 0)
			close(d->callers[i].fd);
	dprog_unref(d->prog);
	d->prog = NULL;
	if (!free_d)
		return; /* a held FUSE thread still reads d (its wake fd is its own copy) */
	if (d->wake >= 0)
		close(d->wake);
	if (d->mark_wake >= 0)
		close(d->mark_wake);
	keyset_free(&d->marked);
	keyset_free(&d->prev);
	keyset_free(&d->reported);
	keyset_free(&d->fuse_devs);
	keyset_free(&d->known_ns);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_cond_destroy(&d->fuse_cv);
	free(d);
}
