/* ptable.c: the process table. Keyed by tgid; a process's identity is
 * (tgid, start time). Fed in event order by fork (child inherits the
 * parent's image and ids), exec (context captured from /proc at once, so a
 * process that lives 1 ms keeps its exe for its exit event and its
 * children), exit (dropped after dispatch), comm, uid/gid and ptrace, and by
 * a /proc scan at start-up and after an overflow. Memory is bounded: a cap
 * on processes and on image bytes, each with a counter. */
#include "ptable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mounts.h"
#include "proc.h"

#define NBUCKETS 16384 /* power of two */
#define CG_SLOTS 256    /* cgroup paths remembered by cgroup v2 id (power of two) */

/* A cgroup v2 id and its path as /proc/PID/cgroup shows it to us. v2 ids
 * are never reused and v2 cgroups cannot be renamed, so the pair holds for
 * as long as the daemon runs. */
struct cg_path {
	uint64_t id; /* 0 = empty slot */
	char *path;
	size_t len;
};

struct pw_ptable {
	struct pw_proc *bucket[NBUCKETS];
	size_t max_entries;
	int pidfd_info; /* PIDFD_GET_INFO: 0 not tried yet, 1 works, -1 not here */
	bool no_pidfs;  /* pidfds share one anonymous inode here (before 6.9): no pid_ino */
	struct cg_path cg[CG_SLOTS];
	/* the exe the hot path read already (ptable_exe_hint), for the next capture of hint_tgid */
	pid_t hint_tgid;
	char hint_exe[4096];
	struct pw_ptable_stats st;
};

static size_t slot(pid_t tgid)
{
	return ((uint32_t)tgid * 2654435761u) & (NBUCKETS - 1);
}

struct pw_ptable *ptable_new(size_t max_entries)
{
	struct pw_ptable *t = calloc(1, sizeof *t);
	if (t)
		t->max_entries = max_entries ? max_entries : PW_PTABLE_MAX;
	return t;
}

/* ---- images ------------------------------------------------------------ */

void image_ref(struct pw_image *img)
{
	if (img)
		img->refs++;
}

void image_unref(struct pw_image *img)
{
	if (!img || --img->refs > 0)
		return;
	*img->acct -= img->bytes;
	free(img->exe);
	free(img->cgroup);
	free(img);
}

/* The executable's owner, mode and filesystem type, through the magic
 * link, from cached attributes: a file on a FUSE mount whose server hangs
 * must not hang the loop. Works where the path is too long to read. */
static void exe_attributes(pid_t tgid, struct pw_image *img)
{
	char path[64];
	struct statx sx;
	snprintf(path, sizeof path, "/proc/%d/exe", (int)tgid);
	if (statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_UID | STATX_GID | STATX_MODE, &sx) < 0)
		return;
	img->exe_stat = true;
	img->exe_uid = sx.stx_uid;
	img->exe_gid = sx.stx_gid;
	img->exe_mode = sx.stx_mode & 07777;
	mounts_fs_type(tgid, makedev(sx.stx_dev_major, sx.stx_dev_minor), img->exe_fs, sizeof img->exe_fs);
}

/* Capture what a process runs (exe, argv) from /proc: the hot part of an
 * exec, read before any rule runs. NULL when it is gone; *gone then tells
 * whether /proc/PID itself was (reaped: nothing more can be read). */
static struct pw_image *image_capture(struct pw_ptable *t, pid_t tgid, bool *gone)
{
	char exe[4096], argv[PW_ARGV_CAP];
	int exe_len;
	if (t->hint_tgid == tgid) { /* read before a kill that may have taken the link with it */
		exe_len = (int)strlen(t->hint_exe);
		memcpy(exe, t->hint_exe, (size_t)exe_len + 1);
		t->hint_tgid = 0;
	} else {
		exe_len = proc_read_exe(tgid, exe, sizeof exe);
	}
	bool trunc = false;
	ssize_t argv_len = proc_read_file(tgid, "cmdline", argv, sizeof argv, &trunc);
	/* cmdline exists for as long as /proc/PID does (zombie or kernel thread: empty). */
	*gone = argv_len == -ENOENT || argv_len == -ESRCH;
	if (exe_len < 0 && argv_len < 0)
		return NULL;
	if (argv_len < 0)
		argv_len = 0;
	if (argv_len > 0 && argv[argv_len - 1] != 0) { /* cut inside an argument */
		if ((size_t)argv_len == sizeof argv)
			argv_len--;
		argv[argv_len++] = 0;
		trunc = true;
	}
	if (t->st.image_bytes > PW_IMAGE_BYTES_MAX && argv_len > 256) {
		argv_len = 256;
		argv[argv_len - 1] = 0;
		trunc = true;
		t->st.image_trimmed++;
	}
	struct pw_image *img = calloc(1, sizeof *img + (size_t)argv_len);
	if (!img)
		return NULL;
	img->refs = 1;
	memcpy(img->argv, argv, (size_t)argv_len);
	img->argv_len = (uint32_t)argv_len;
	img->argv_truncated = trunc;
	img->exe = exe_len >= 0 ? strndup(exe, (size_t)exe_len) : NULL;
	if (exe_len < 0 && exe_len != -ENOENT && exe_len != -ESRCH) /* ENOENT: no exe (kernel thread, zombie) */
		snprintf(img->exe_error, sizeof img->exe_error, "%s", proc_errno_name(-exe_len));
	exe_attributes(tgid, img);
	img->bytes = sizeof *img + (size_t)argv_len + (exe_len > 0 ? (size_t)exe_len : 0);
	img->acct = &t->st.image_bytes;
	*img->acct += img->bytes;
	return img;
}

/* The image of an exec whose process was gone before anything of it could
 * be read: no exe, and why. */
static struct pw_image *image_gone(struct pw_ptable *t)
{
	struct pw_image *img = calloc(1, sizeof *img);
	if (!img)
		return NULL;
	img->refs = 1;
	snprintf(img->exe_error, sizeof img->exe_error, "process gone");
	img->bytes = sizeof *img;
	img->acct = &t->st.image_bytes;
	*img->acct += img->bytes;
	return img;
}

/* ---- entries ----------------------------------------------------------- */

const struct pw_proc *ptable_get(struct pw_ptable *t, pid_t tgid)
{
	for (struct pw_proc *p = t->bucket[slot(tgid)]; p; p = p->next)
		if (p->tgid == tgid)
			return p;
	return NULL;
}

int ptable_children(struct pw_ptable *t, pid_t tgid, pid_t *out, int cap)
{
	int n = 0;
	for (size_t b = 0; b < NBUCKETS && n < cap; b++)
		for (const struct pw_proc *p = t->bucket[b]; p && n < cap; p = p->next)
			if (p->ppid == tgid && !p->exited && p->tgid != tgid)
				out[n++] = p->tgid;
	return n;
}

static struct pw_proc *find(struct pw_ptable *t, pid_t tgid)
{
	return (struct pw_proc *)ptable_get(t, tgid);
}

static void entry_free(struct pw_proc *p)
{
	image_unref(p->img);
	free(p);
}

static void drop(struct pw_ptable *t, pid_t tgid)
{
	struct pw_proc **pp = &t->bucket[slot(tgid)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->tgid == tgid) {
			struct pw_proc *p = *pp;
			*pp = p->next;
			entry_free(p);
			t->st.entries--;
			return;
		}
}

/* The entry for tgid, created empty when missing (NULL at the cap). A new
 * entry replaces a stale one with the same tgid (pid reuse). */
static struct pw_proc *fresh(struct pw_ptable *t, pid_t tgid)
{
	drop(t, tgid);
	if (t->st.entries >= t->max_entries) {
		t->st.full++;
		return NULL;
	}
	struct pw_proc *p = calloc(1, sizeof *p);
	if (!p) {
		t->st.full++;
		return NULL;
	}
	p->tgid = tgid;
	size_t s = slot(tgid);
	p->next = t->bucket[s];
	t->bucket[s] = p;
	t->st.entries++;
	return p;
}

/* The hot part of an exec: what it runs (exe, argv). Rules that act on
 * these alone run right after, before anything else is read. */
static void capture_fast(struct pw_ptable *t, struct pw_proc *p)
{
	t->st.captures++;
	bool gone;
	struct pw_image *img = image_capture(t, p->tgid, &gone);
	image_unref(p->img);
	if (!img && gone) /* reaped before its exe was read: say so (rules on exe fail closed) */
		img = image_gone(t);
	p->img = img; /* never the pre-exec program: never lie */
	if (!img || !img->exe)
		t->st.capture_failed++;
	p->needs_rest = !gone; /* reaped already: the rest is gone too */
}

static const struct cg_path *cg_find(const struct pw_ptable *t, uint64_t id)
{
	const struct cg_path *c = &t->cg[id & (CG_SLOTS - 1)];
	return id && c->id == id ? c : NULL;
}

static void cg_remember(struct pw_ptable *t, uint64_t id, const char *path, size_t len)
{
	struct cg_path *c = &t->cg[id & (CG_SLOTS - 1)];
	char *copy = strndup(path, len);
	if (!id || !copy) {
		free(copy);
		return;
	}
	free(c->path);
	c->id = id;
	c->path = copy;
	c->len = len;
}

static void image_set_cgroup(struct pw_image *img, const char *path, size_t len)
{
	if ((img->cgroup = strndup(path, len))) {
		img->bytes += len;
		*img->acct += len;
	}
}

/* The ids a capture read (PIDFD_GET_INFO or /proc/PID/status), and the
 * parent where the stat read gave none. */
static void set_creds(struct pw_proc *p, uint32_t ruid, uint32_t euid, uint32_t rgid, uint32_t egid, pid_t ppid)
{
	p->ruid = ruid;
	p->euid = euid;
	p->rgid = rgid;
	p->egid = egid;
	p->creds_known = true;
	if (!p->ppid)
		p->ppid = ppid;
}

/* ids from /proc/PID/status (kernels without PIDFD_GET_INFO). */
static void read_status_ids(struct pw_proc *p)
{
	struct pw_proc_status ids;
	if (proc_read_status(p->tgid, &ids) == 0)
		set_creds(p, ids.ruid, ids.euid, ids.rgid, ids.egid, ids.ppid);
}

/* The rest of an exec: stat (start time, parents, comm, tty), ids and
 * cgroup. exec_ticks: the exec's time on the start-time clock (0: not from
 * an event). Returns false when /proc now shows a process that started
 * after the exec (the pid was reused): nothing is taken from it and the
 * image is dropped.
 *
 * Where the kernel has PIDFD_GET_INFO (6.13), ids and the cgroup v2 id come
 * from one ioctl on a pidfd opened before stat is read, instead of reading
 * and parsing /proc/PID/status and /proc/PID/cgroup: the ioctl answers only
 * while the process is not reaped, so a success also says the stat read
 * before it was this process's (its pid could not be reused meanwhile). The
 * cgroup path is then looked up by id (read from /proc once per cgroup). */
/* p's pidfs inode from pidfd, opened before p's /proc stat was read: if
 * the pidfd's process still lives after that read, the stat was its (a
 * pid is not reused before its process is reaped). */
static void pin_identity(struct pw_ptable *t, struct pw_proc *p, int pidfd)
{
	uint64_t ino;
	if (pidfd < 0 || t->no_pidfs || syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != 0)
		return;
	int r = proc_pidfd_ino(pidfd, &ino);
	if (r == -ENOTSUP)
		t->no_pidfs = true;
	if (r == 0) {
		p->pid_ino = ino;
		p->pinned_once = true;
	}
}

static bool capture_rest(struct pw_ptable *t, struct pw_proc *p, uint64_t exec_ticks, int pinned)
{
	struct pw_proc_stat st;
	p->needs_rest = false;
	int pidfd = pinned >= 0 ? pinned : t->pidfd_info >= 0 ? proc_pidfd_open(p->tgid) : -ENOSYS;
	if (pidfd == -ESRCH)
		return true; /* reaped: nothing more to read */
	int r = proc_read_stat(p->tgid, &st);
	if (r == -ENOENT || r == -ESRCH) {
		if (pidfd >= 0 && pidfd != pinned)
			close(pidfd);
		return true;
	}
	bool have_stat = r == 0;
	if (have_stat && exec_ticks && st.start_time > exec_ticks + 1) {
		image_unref(p->img);
		p->img = NULL;
		t->st.capture_failed++;
		if (pidfd >= 0 && pidfd != pinned)
			close(pidfd);
		return false;
	}
	if (have_stat) {
		p->ppid = st.ppid;
		p->pgid = st.pgid;
		p->sid = st.sid;
		p->start_time = st.start_time;
		p->pid_ino = 0; /* of the process this start time is of, or none */
		p->pinned_once = false;
		pin_identity(t, p, pidfd);
		memcpy(p->comm, st.comm, sizeof p->comm);
		if (p->img && !p->img->tty[0])
			proc_tty_name(st.tty_nr, p->img->tty, sizeof p->img->tty);
	}
	struct pw_pidfd_info info;
	int ir = t->pidfd_info < 0 ? -ENOTTY : pidfd < 0 ? pidfd : proc_pidfd_info(pidfd, &info);
	/* ESRCH: reaped, or a process without a visible parent (kthreadd) */
	bool reaped = ir == -ESRCH && !(have_stat && st.ppid == 0);
	if (ir == 0) {
		t->pidfd_info = 1;
		set_creds(p, info.ruid, info.euid, info.rgid, info.egid, info.ppid);
	} else if (!reaped) {
		if (t->pidfd_info == 0 && ir != -ESRCH && ir != -EMFILE && ir != -ENFILE && ir != -ENOMEM)
			t->pidfd_info = -1; /* no pidfds or no PIDFD_GET_INFO here */
		read_status_ids(p);
	}
	if (p->img && !p->img->cgroup && !reaped) {
		const struct cg_path *known = ir == 0 && info.has_cgroupid ? cg_find(t, info.cgroupid) : NULL;
		char cgroup[1024];
		bool unified;
		int n;
		if (known) {
			image_set_cgroup(p->img, known->path, known->len);
		} else if ((n = proc_read_cgroup(p->tgid, cgroup, sizeof cgroup, &unified)) >= 0) {
			image_set_cgroup(p->img, cgroup, (size_t)n);
			/* Remember the path only if the process was in the same
			 * cgroup before and after it was read. */
			struct pw_pidfd_info again;
			if (ir == 0 && info.has_cgroupid && unified &&
			    proc_pidfd_info(pidfd, &again) == 0 && again.has_cgroupid && again.cgroupid == info.cgroupid)
				cg_remember(t, info.cgroupid, cgroup, (size_t)n);
		}
	}
	if (pidfd >= 0 && pidfd != pinned)
		close(pidfd);
	return true;
}

static void capture(struct pw_ptable *t, struct pw_proc *p)
{
	capture_fast(t, p);
	capture_rest(t, p, 0, -1);
}

bool ptable_complete(struct pw_ptable *t, const struct pw_event *ev, struct pw_ctx *ctx, int pidfd)
{
	if (ev->type != PW_EV_EXEC)
		return true;
	struct pw_proc *p = find(t, ev->tgid);
	if (!p || !p->needs_rest)
		return true;
	if (!capture_rest(t, p, proc_ticks_at(ev->ktime_ns), pidfd)) {
		if (ctx) { /* the captured image was a later process's */
			image_unref(ctx->img);
			ctx->img = NULL;
		}
		return false;
	}
	if (ctx && ctx->known) {
		ctx->start_time = p->start_time;
		ctx->pid_ino = p->pid_ino;
		ctx->pgid = p->pgid;
		ctx->sid = p->sid;
		memcpy(ctx->comm, p->comm, sizeof ctx->comm);
		ctx->ruid = p->ruid;
		ctx->euid = p->euid;
		ctx->rgid = p->rgid;
		ctx->egid = p->egid;
		ctx->creds_known = p->creds_known;
		ctx->ppid = p->ppid;
	}
	return true;
}

void ptable_ctx_of(const struct pw_proc *p, struct pw_ctx *ctx)
{
	memset(ctx, 0, sizeof *ctx);
	if (!p)
		return;
	ctx->known = true;
	ctx->tgid = p->tgid;
	ctx->ppid = p->ppid;
	ctx->pgid = p->pgid;
	ctx->sid = p->sid;
	ctx->start_time = p->start_time;
	ctx->start_est = p->start_est;
	ctx->pid_ino = p->pid_ino;
	ctx->ruid = p->ruid;
	ctx->euid = p->euid;
	ctx->rgid = p->rgid;
	ctx->egid = p->egid;
	ctx->creds_known = p->creds_known;
	ctx->tracer = p->tracer;
	memcpy(ctx->comm, p->comm, sizeof ctx->comm);
	ctx->img = p->img;
	image_ref(ctx->img);
}

void ptable_ctx_release(struct pw_ctx *ctx)
{
	image_unref(ctx->img);
	ctx->img = NULL;
}

void ptable_apply(struct pw_ptable *t, const struct pw_event *ev, struct pw_ctx *ctx, bool stale)
{
	struct pw_proc *p = NULL;
	uint32_t prev_real = 0, prev_eff = 0;
	bool has_prev = false;
	switch (ev->type) {
	case PW_EV_FORK: {
		if (ev->u.fork.child_pid != ev->u.fork.child_tgid) { /* a thread */
			p = find(t, ev->tgid);
			break;
		}
		struct pw_proc *parent = find(t, ev->u.fork.parent_tgid);
		p = fresh(t, ev->u.fork.child_tgid);
		if (!p)
			break;
		p->ppid = ev->u.fork.parent_tgid;
		p->start_est = proc_ticks_at(ev->ktime_ns); /* identity without a /proc read */
		if (parent) { /* the child runs its parent's program until it execs */
			p->img = parent->img;
			image_ref(p->img);
			p->ruid = parent->ruid;
			p->euid = parent->euid;
			p->rgid = parent->rgid;
			p->egid = parent->egid;
			p->creds_known = parent->creds_known;
			p->pgid = parent->pgid;
			p->sid = parent->sid;
			memcpy(p->comm, parent->comm, sizeof p->comm);
		}
		break;
	}
	case PW_EV_EXEC:
		p = find(t, ev->tgid);
		if (!p)
			p = fresh(t, ev->tgid);
		if (p) {
			p->tracer = 0; /* re-read below only if the rules ask */
			p->comm[0] = 0; /* the new name comes with the rest: never the parent's */
			if (stale) { /* /proc shows a later program: unknown */
				image_unref(p->img);
				p->img = NULL;
				p->needs_rest = false;
				t->st.capture_failed++;
			} else {
				capture_fast(t, p); /* the rest after the fast rules: ptable_complete */
			}
		}
		break;
	case PW_EV_EXIT:
		p = find(t, ev->tgid);
		if (p && ev->pid == ev->tgid)
			p->exited = true;
		break;
	case PW_EV_COMM:
		p = find(t, ev->tgid);
		if (p && ev->pid == ev->tgid)
			memcpy(p->comm, ev->u.comm.comm, sizeof p->comm);
		break;
	case PW_EV_UID:
	case PW_EV_GID:
		p = find(t, ev->tgid);
		if (p) {
			bool uid = ev->type == PW_EV_UID;
			has_prev = p->creds_known;
			prev_real = uid ? p->ruid : p->rgid;
			prev_eff = uid ? p->euid : p->egid;
			if (uid) {
				p->ruid = ev->u.id.real;
				p->euid = ev->u.id.effective;
			} else {
				p->rgid = ev->u.id.real;
				p->egid = ev->u.id.effective;
			}
		}
		break;
	case PW_EV_PTRACE:
		p = find(t, ev->tgid);
		if (p)
			p->tracer = ev->u.ptrace.tracer_tgid;
		break;
	case PW_EV_SID:
		p = find(t, ev->tgid);
		if (p) {
			p->sid = ev->tgid;
			p->pgid = ev->tgid;
		}
		break;
	default:
		p = find(t, ev->tgid);
		break;
	}
	if (ctx) {
		ptable_ctx_of(p, ctx);
		ctx->tgid = ev->tgid;
		ctx->has_prev = has_prev;
		ctx->prev_real = prev_real;
		ctx->prev_effective = prev_eff;
	}
}

void ptable_retire(struct pw_ptable *t, const struct pw_event *ev)
{
	if (ev->type != PW_EV_EXIT || ev->pid != ev->tgid)
		return;
	struct pw_proc *p = find(t, ev->tgid);
	if (p && p->exited)
		drop(t, ev->tgid);
}

/* ---- scan -------------------------------------------------------------- */

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

/* Is a process started at start_time (ticks, /proc) the one p is about? */
static bool same_start(const struct pw_proc *p, uint64_t start_time)
{
	if (p->start_time)
		return p->start_time == start_time;
	return !p->start_est || (start_time + 1 >= p->start_est && start_time <= p->start_est + 1);
}

const struct pw_proc *ptable_get_exact(struct pw_ptable *t, pid_t tgid)
{
	struct pw_proc *p = find(t, tgid);
	/* at most once per entry; with an exact start time, only for the inode */
	if (!p || p->exited || p->pinned_once || (!p->start_time && !p->start_est) ||
	    (p->start_time && t->no_pidfs))
		return p;
	int fd = proc_pidfd_open(tgid);
	if (fd == -ESRCH)
		p->pinned_once = true; /* gone: nothing to pin, ever */
	if (fd < 0)
		return p;
	struct pw_proc_stat st;
	if (proc_read_stat(tgid, &st) == 0 && same_start(p, st.start_time)) {
		p->start_time = st.start_time;
		pin_identity(t, p, fd);
	}
	close(fd);
	return p;
}

int ptable_scan(struct pw_ptable *t, pw_scan_fn each, void *arg)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -errno;
	t->st.scans++;
	/* Entries not seen alive are swept afterwards. */
	pid_t *seen = NULL;
	size_t nseen = 0, cap = 0;
	bool complete = true;
	int count = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		struct pw_proc_stat st;
		if (proc_read_stat((pid_t)pid, &st) < 0)
			continue; /* gone meanwhile */
		struct pw_proc *p = find(t, (pid_t)pid);
		bool same = p && same_start(p, st.start_time);
		bool is_new = !same;
		if (same && !p->start_time)
			p->start_time = st.start_time;
		if (is_new || !p->img) {
			p = fresh(t, (pid_t)pid);
			if (!p)
				continue;
			capture(t, p);
		}
		if (nseen == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			pid_t *n = realloc(seen, ncap * sizeof *n);
			if (!n) {
				complete = false;
				break;
			}
			seen = n;
			cap = ncap;
		}
		seen[nseen++] = (pid_t)pid;
		count++;
		if (each)
			each(arg, p, is_new);
	}
	closedir(d);
	/* Sweep: drop entries whose process was not found. */
	if (seen && complete) {
		qsort(seen, nseen, sizeof *seen, cmp_pid);
		for (size_t b = 0; b < NBUCKETS; b++) {
			struct pw_proc **pp = &t->bucket[b];
			while (*pp) {
				if (!bsearch(&(*pp)->tgid, seen, nseen, sizeof *seen, cmp_pid)) {
					struct pw_proc *dead = *pp;
					*pp = dead->next;
					entry_free(dead);
					t->st.entries--;
				} else {
					pp = &(*pp)->next;
				}
			}
		}
	}
	free(seen);
	return count;
}

const struct pw_ptable_stats *ptable_stats(const struct pw_ptable *t)
{
	return &t->st;
}

void ptable_free(struct pw_ptable *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < CG_SLOTS; i++)
		free(t->cg[i].path);
	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct pw_proc *p = t->bucket[b], *next; p; p = next) {
			next = p->next;
			entry_free(p);
		}
	free(t);
}

void ptable_exe_hint(struct pw_ptable *t, pid_t tgid, const char *exe)
{
	size_t n = strlen(exe);
	if (n >= sizeof t->hint_exe)
		return;
	memcpy(t->hint_exe, exe, n + 1);
	t->hint_tgid = tgid;
}
