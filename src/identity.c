/* identity.c: files by what they are, not by what they are called. Owns
 * the path walk that opens one component at a time (O_PATH|O_NOFOLLOW)
 * and judges each on its own fd, with attributes as cached (a FUSE or
 * network server is never asked) and no FUSE filesystem entered; the
 * reading of rules files through it (checked and read through one open,
 * so a link flipped or a file swapped in between cannot be loaded); and
 * protect{} sets: the (dev, ino) of the root-owned executables an entry
 * names, a process being protected when its exe is one of them. */
#include "identity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "mounts.h"
#include "proc.h"

#define WALK_DEPTH 128 /* directories open at once in a walk */
#define WALK_LINKS 40  /* links a walk follows, as the kernel's limit */
#define STX_WANT (STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO)

/* ---- attributes without waiting on a server ---------------------------- */

static dev_t stx_dev(const struct statx *s)
{
	return makedev(s->stx_dev_major, s->stx_dev_minor);
}

/* statx of name below dirfd ("" = dirfd itself): attributes as cached (a
 * FUSE or network server is not asked), no automount, no final link
 * followed. 0 or -errno. */
static int stat_at(int dirfd, const char *name, struct statx *sx)
{
	int flags = AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT | (name[0] ? 0 : AT_EMPTY_PATH);
	return statx(dirfd, name, flags, STX_WANT, sx) < 0 ? -errno : 0;
}

/* Is dev the device of a filesystem served by a process (FUSE), which may
 * never answer? From /proc/self/mountinfo, read afresh (a device number
 * is reused once its filesystem is gone), which does not call into the
 * filesystem. 1, 0, or -errno. A device mountinfo does not list (a btrfs
 * subvolume's) is not FUSE: FUSE files carry their mount's device. */
static int on_fuse(dev_t dev)
{
	struct pw_mounts ms;
	int r = mounts_read("/proc/self/mountinfo", &ms);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ms.n && r == 0; i++)
		if (ms.m[i].maj == major(dev) && ms.m[i].min == minor(dev))
			r = mounts_type_blocks(ms.m[i].type);
	mounts_free(&ms);
	return r;
}

/* ---- the walk ------------------------------------------------------------ */

struct walk {
	bool rules;             /* check each directory as above a rules file */
	bool follow_root_links; /* follow links owned by root (else a link is refused) */
	uid_t me;               /* besides root, the owner a rules file may have */
	const char *shown;      /* the path as given, for messages */
	/* out */
	struct statx st;        /* of the final component */
	char real[PATH_MAX];    /* the path walked, links resolved ("" = /) */
	bool refused;           /* err is a refusal, not a system error */
};

/* A directory above a rules file: root's or ours, and nobody else may
 * write it (a sticky root-owned directory such as /tmp excepted). */
static bool rules_dir_ok(const struct walk *w, const char *dir, const struct statx *sx, char *err, size_t errlen)
{
	if (sx->stx_uid != 0 && sx->stx_uid != w->me) {
		snprintf(err, errlen, "%s: directory of %s owned by uid %u, neither root nor the daemon's user", dir,
			 w->shown, (unsigned)sx->stx_uid);
		return false;
	}
	if ((sx->stx_mode & (S_IWGRP | S_IWOTH)) && !((sx->stx_mode & S_ISVTX) && sx->stx_uid == 0)) {
		snprintf(err, errlen, "%s: directory of %s is writable by %s", dir, w->shown,
			 sx->stx_mode & S_IWOTH ? "others" : "its group");
		return false;
	}
	return true;
}

static void close_all(int *fds, int depth)
{
	for (int i = 0; i <= depth; i++)
		close(fds[i]);
}

/* The walk's failure: everything closed, err set. Returns -1. */
static int walk_fail(struct walk *w, int *fds, int depth, int fd, bool refused, int e, char *err, size_t errlen)
{
	close_all(fds, depth);
	if (fd >= 0)
		close(fd);
	w->refused = refused;
	if (!refused)
		snprintf(err, errlen, "%s: %s", w->shown, strerror(e));
	return -1;
}

/* The rest of a walk after a link: its target, then what followed it. */
static int splice_link(int fd, char *todo, size_t cap, const char *rest)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(fd, "", target, sizeof target - 1);
	if (n <= 0)
		return n < 0 ? -errno : -ENOENT;
	target[n] = 0;
	char *joined = malloc(cap);
	if (!joined)
		return -ENOMEM;
	int len = snprintf(joined, cap, "%s/%s", target, rest);
	if (len < 0 || (size_t)len >= cap) {
		free(joined);
		return -ENAMETOOLONG;
	}
	memcpy(todo, joined, (size_t)len + 1);
	free(joined);
	return 0;
}

/* Walk an absolute path from /, one component at a time: each opened
 * O_PATH|O_NOFOLLOW below the fd of the directory checked before it, and
 * judged on its own fd (never by a second lookup of its name). A link is
 * refused, or followed when w->follow_root_links and root owns it; a FUSE
 * filesystem is never entered (its server could hold the walk). The O_PATH
 * fd of the final component (its attributes in w->st), or -1 with err and
 * w->refused. */
static int walk_open(const char *path, struct walk *w, char *err, size_t errlen)
{
	char todo[2 * PATH_MAX], nm[NAME_MAX + 1];
	int fds[WALK_DEPTH];
	dev_t devs[WALK_DEPTH];
	size_t lens[WALK_DEPTH];
	int depth = 0, links = 0, fd = -1;
	struct statx sx;
	w->refused = false;
	w->real[0] = 0;
	if (path[0] != '/' || strlen(path) >= PATH_MAX) {
		w->refused = false;
		snprintf(err, errlen, "%s: %s", w->shown, strerror(path[0] != '/' ? EINVAL : ENAMETOOLONG));
		return -1;
	}
	memcpy(todo, path, strlen(path) + 1);
	fds[0] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fds[0] < 0) {
		snprintf(err, errlen, "/: %s", strerror(errno));
		return -1;
	}
	int r = stat_at(fds[0], "", &sx);
	if (r < 0)
		return walk_fail(w, fds, depth, -1, false, -r, err, errlen);
	if (w->rules && !rules_dir_ok(w, "/", &sx, err, errlen))
		return walk_fail(w, fds, depth, -1, true, 0, err, errlen);
	devs[0] = stx_dev(&sx);
	lens[0] = 0;
	char *p = todo;
	for (;;) {
		p += strspn(p, "/");
		if (!*p) { /* the path ends at a directory: that is the final component */
			fd = fcntl(fds[depth], F_DUPFD_CLOEXEC, 0);
			if (fd < 0 || (r = stat_at(fd, "", &sx)) < 0)
				return walk_fail(w, fds, depth, fd, false, fd < 0 ? errno : -r, err, errlen);
			break;
		}
		size_t n = strcspn(p, "/");
		if (n > NAME_MAX)
			return walk_fail(w, fds, depth, -1, false, ENAMETOOLONG, err, errlen);
		memcpy(nm, p, n);
		nm[n] = 0;
		p += n;
		bool last = p[strspn(p, "/")] == 0;
		if (strcmp(nm, ".") == 0 && !last)
			continue;
		if (strcmp(nm, "..") == 0 && !last) {
			if (depth > 0) {
				close(fds[depth--]);
				w->real[lens[depth]] = 0;
			}
			continue;
		}
		fd = openat(fds[depth], nm, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || (r = stat_at(fd, "", &sx)) < 0)
			return walk_fail(w, fds, depth, fd, false, fd < 0 ? errno : -r, err, errlen);
		size_t rl = lens[depth];
		if (rl + 1 + n >= sizeof w->real)
			return walk_fail(w, fds, depth, fd, false, ENAMETOOLONG, err, errlen);
		w->real[rl] = '/';
		memcpy(w->real + rl + 1, nm, n + 1);
		if (S_ISLNK(sx.stx_mode)) {
			if (!w->follow_root_links || sx.stx_uid != 0) {
				snprintf(err, errlen, "%s: %s is a symbolic link (rules files are opened without following "
						      "links: name the real file)", w->shown, w->real);
				return walk_fail(w, fds, depth, fd, true, 0, err, errlen);
			}
			if (++links > WALK_LINKS)
				return walk_fail(w, fds, depth, fd, false, ELOOP, err, errlen);
			r = splice_link(fd, todo, sizeof todo, p);
			if (r < 0)
				return walk_fail(w, fds, depth, fd, false, -r, err, errlen);
			close(fd);
			fd = -1;
			w->real[rl] = 0;
			if (todo[0] == '/') { /* an absolute target: from / again */
				while (depth > 0)
					close(fds[depth--]);
				w->real[0] = 0;
			}
			p = todo;
			continue;
		}
		if (stx_dev(&sx) != devs[depth] && (r = on_fuse(stx_dev(&sx))) != 0) {
			if (r > 0)
				snprintf(err, errlen, "%s: %s is on a FUSE filesystem", w->shown, w->real);
			else
				snprintf(err, errlen, "%s: %s: its filesystem cannot be told (%s)", w->shown, w->real,
					 strerror(-r));
			return walk_fail(w, fds, depth, fd, true, 0, err, errlen);
		}
		if (last)
			break;
		if (!S_ISDIR(sx.stx_mode))
			return walk_fail(w, fds, depth, fd, false, ENOTDIR, err, errlen);
		if (w->rules && !rules_dir_ok(w, w->real, &sx, err, errlen))
			return walk_fail(w, fds, depth, fd, true, 0, err, errlen);
		if (depth + 1 >= WALK_DEPTH)
			return walk_fail(w, fds, depth, fd, false, ENAMETOOLONG, err, errlen);
		fds[++depth] = fd;
		devs[depth] = stx_dev(&sx);
		lens[depth] = rl + 1 + n;
		fd = -1;
	}
	close_all(fds, depth);
	w->st = sx;
	return fd;
}

/* ---- rules files --------------------------------------------------------- */

static bool insecure_rules;

void identity_rules_insecure(bool on)
{
	insecure_rules = on;
}

static bool is_dev_null(const struct statx *s)
{
	return S_ISCHR(s->stx_mode) && s->stx_rdev_major == 1 && s->stx_rdev_minor == 3;
}

/* The file itself: a regular file (or /dev/null: no rules at all), root's
 * or ours, that neither its group nor others may write. */
static bool rules_file_ok(const struct walk *w, char *why, size_t n)
{
	const struct statx *s = &w->st;
	if (is_dev_null(s))
		return true;
	if (!S_ISREG(s->stx_mode))
		snprintf(why, n, "%s: not a regular file", w->shown);
	else if (s->stx_uid != 0 && s->stx_uid != w->me)
		snprintf(why, n, "%s: owned by uid %u, neither root nor the daemon's user", w->shown,
			 (unsigned)s->stx_uid);
	else if (s->stx_mode & (S_IWGRP | S_IWOTH))
		snprintf(why, n, "%s: writable by %s (chmod go-w)", w->shown,
			 s->stx_mode & S_IWOTH ? "others" : "its group");
	else
		return true;
	return false;
}

/* All of fd, up to PW_RULES_MAX_BYTES. 0 or -errno. */
static int read_all(int fd, char **text, size_t *len)
{
	size_t cap = 16384, n = 0;
	char *buf = malloc(cap + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap >= PW_RULES_MAX_BYTES) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			char *bigger = realloc(buf, cap + 1);
			if (!bigger) {
				free(buf);
				return -ENOMEM;
			}
			buf = bigger;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	*text = buf;
	*len = n;
	return 0;
}

/* The checked O_PATH fd opened for reading: the same inode, no lookup by
 * name again. The readable fd, or -errno. */
static int reopen(int pathfd, const struct statx *want)
{
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", pathfd);
	int fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) < 0 || sb.st_ino != want->stx_ino || sb.st_dev != stx_dev(want)) {
		close(fd);
		return -ESTALE;
	}
	return fd;
}

/* --insecure-rules, the checks failed: the path opened as the kernel
 * resolves it (links followed), still read through that one open. */
static int open_insecure(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct statx sx;
	int r = stat_at(fd, "", &sx);
	if (r == 0 && !S_ISREG(sx.stx_mode) && !is_dev_null(&sx))
		r = -EINVAL;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* path made absolute from the working directory. 0 or -errno. */
static int absolute(const char *path, char *out, size_t cap)
{
	if (path[0] == '/')
		return snprintf(out, cap, "%s", path) < (int)cap ? 0 : -ENAMETOOLONG;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return -errno;
	return snprintf(out, cap, "%s/%s", cwd, path) < (int)cap ? 0 : -ENAMETOOLONG;
}

int identity_rules_read(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
	char abs[PATH_MAX], why[3 * PATH_MAX];
	struct walk w = {.rules = true, .me = geteuid(), .shown = path};
	int fd = -1, r = absolute(path, abs, sizeof abs);
	if (r < 0)
		snprintf(why, sizeof why, "%s: %s", path, strerror(-r));
	else if ((fd = walk_open(abs, &w, why, sizeof why)) >= 0 && !rules_file_ok(&w, why, sizeof why)) {
		close(fd);
		fd = -1;
		w.refused = true;
	}
	if (fd < 0 && !w.refused) {
		snprintf(err, errlen, "procwarden: rules file %s", why);
		return -1;
	}
	if (fd < 0 && !insecure_rules) {
		snprintf(err, errlen, "procwarden: refusing rules file %s\n  (rules run as root: fix the permissions, or "
				      "use --insecure-rules for development)", why);
		return -1;
	}
	int rfd;
	if (fd < 0) {
		pw_log(PW_LOG_WARNING, "--insecure-rules: loading %s although %s", path, why);
		rfd = open_insecure(path);
	} else {
		rfd = reopen(fd, &w.st);
		close(fd);
	}
	r = rfd < 0 ? rfd : read_all(rfd, text, len);
	if (rfd >= 0)
		close(rfd);
	if (r < 0) {
		snprintf(err, errlen, "procwarden: rules file %s: %s", path,
			 r == -EFBIG ? "larger than 16 MiB" : r == -EINVAL ? "not a regular file" : strerror(-r));
		return -1;
	}
	return 0;
}

/* ---- protect{} ----------------------------------------------------------- */

struct protect_id {
	uint64_t dev, ino;
};

/* A directory an entry is expanded over: as written in the entry (or in
 * the roots list) and as the walk found it, links resolved. */
struct protect_root {
	char *written, *real;
};

struct protect_entry {
	char *glob;
	char *where; /* "file:line: " of the protect{} call, for messages */
	int nroots;
	struct protect_root *roots;
	bool resolved;
};

struct pw_protect {
	struct protect_id *ids;
	int nids, capids;
	struct protect_entry *entries;
	int nentries;
};

struct pw_protect *protect_new(void)
{
	return calloc(1, sizeof(struct pw_protect));
}

void protect_free(struct pw_protect *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->nentries; i++) {
		for (int j = 0; j < p->entries[i].nroots; j++) {
			free(p->entries[i].roots[j].written);
			free(p->entries[i].roots[j].real);
		}
		free(p->entries[i].roots);
		free(p->entries[i].glob);
		free(p->entries[i].where);
	}
	free(p->entries);
	free(p->ids);
	free(p);
}

int protect_entries(const struct pw_protect *p)
{
	return p ? p->nentries : 0;
}

/* Only root could have put this program there: a root-owned regular file
 * that neither its group nor others may write. */
static bool eligible(const struct statx *s)
{
	return S_ISREG(s->stx_mode) && s->stx_uid == 0 && !(s->stx_mode & (S_IWGRP | S_IWOTH));
}

static int id_cmp(const void *a, const void *b)
{
	const struct protect_id *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static bool has_id(const struct pw_protect *p, uint64_t dev, uint64_t ino)
{
	struct protect_id key = {dev, ino};
	return p->nids && bsearch(&key, p->ids, (size_t)p->nids, sizeof key, id_cmp) != NULL;
}

/* 0, or -ENOSPC past PW_PROTECT_MAX_FILES. Sorted later (protect_sort). */
static int add_id(struct pw_protect *p, const struct statx *s)
{
	if (p->nids == p->capids) {
		if (p->capids >= PW_PROTECT_MAX_FILES)
			return -ENOSPC;
		int cap = p->capids ? p->capids * 2 : 64;
		struct protect_id *ids = realloc(p->ids, (size_t)cap * sizeof *ids);
		if (!ids)
			return -ENOMEM;
		p->ids = ids;
		p->capids = cap;
	}
	p->ids[p->nids++] = (struct protect_id){stx_dev(s), s->stx_ino};
	return 0;
}

/* Sort and drop duplicates. */
static void protect_sort(struct pw_protect *p)
{
	if (p->nids == 0)
		return;
	qsort(p->ids, (size_t)p->nids, sizeof *p->ids, id_cmp);
	int k = 1;
	for (int i = 1; i < p->nids; i++)
		if (id_cmp(&p->ids[i], &p->ids[k - 1]) != 0)
			p->ids[k++] = p->ids[i];
	p->nids = k;
}

static bool has_magic(const char *s)
{
	return strpbrk(s, "*?[\\") != NULL;
}

/* The part of glob before its first magic character: any path it matches
 * starts with it. */
static size_t literal_len(const char *glob)
{
	return strcspn(glob, "*?[\\");
}

/* One glob's expansion below one root: the files it names, on the root's
 * filesystem, at most PW_PROTECT_DEPTH directories down. */
struct expand {
	struct pw_protect *p;
	const char *glob;
	size_t lit;         /* literal_len(glob) */
	dev_t dev;          /* the root's filesystem */
	char path[PATH_MAX]; /* the root as written, then the entries below it */
	int visits, found;
	int error;          /* -ENOSPC (too many files), -E2BIG (too many entries) */
};

/* Could a path below prefix still match (the glob's literal start)? */
static bool may_match(const struct expand *x, size_t len)
{
	size_t n = len < x->lit ? len : x->lit;
	return strncmp(x->path, x->glob, n) == 0;
}

static void expand_dir(struct expand *x, int dirfd, size_t len, int depth);

/* One directory entry below x->path[0..len). */
static void expand_entry(struct expand *x, int dfd, const char *name, unsigned char type, size_t len, int depth)
{
	size_t n = strlen(name);
	if (len + 1 + n >= sizeof x->path)
		return;
	x->path[len] = '/';
	memcpy(x->path + len + 1, name, n + 1);
	size_t sub = len + 1 + n;
	bool file = (type == DT_REG || type == DT_UNKNOWN) && fnmatch(x->glob, x->path, 0) == 0;
	bool dir = (type == DT_DIR || type == DT_UNKNOWN) && depth < PW_PROTECT_DEPTH;
	struct statx sx;
	if (!may_match(x, sub) || !(file || dir) || stat_at(dfd, name, &sx) < 0 || stx_dev(&sx) != x->dev)
		goto out; /* another filesystem (a mount point) is not entered */
	if (file && eligible(&sx)) {
		int r = add_id(x->p, &sx);
		if (r < 0)
			x->error = r;
		else
			x->found++;
	}
	if (dir && S_ISDIR(sx.stx_mode)) {
		int sfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct statx again;
		if (sfd >= 0 && stat_at(sfd, "", &again) == 0 && again.stx_ino == sx.stx_ino &&
		    stx_dev(&again) == x->dev)
			expand_dir(x, sfd, sub, depth + 1);
		if (sfd >= 0)
			close(sfd);
	}
out:
	x->path[len] = 0;
}

/* The entries of dirfd (an O_RDONLY directory fd, kept open by the caller). */
static void expand_dir(struct expand *x, int dirfd, size_t len, int depth)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	struct dirent *de;
	while (!x->error && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (++x->visits > PW_PROTECT_VISITS) {
			x->error = -E2BIG;
			break;
		}
		expand_entry(x, dirfd, de->d_name, de->d_type, len, depth);
	}
	closedir(d);
}

/* Where root r is, links owned by root followed: r->real, and an O_RDONLY
 * fd of the directory (with its filesystem in *dev), or -1 when it is not
 * there now (the entry is judged again at each kill) or -ENOMEM. */
static int resolve_root(struct protect_root *r, dev_t *dev)
{
	const char *path = r->written[0] ? r->written : "/";
	struct walk w = {.follow_root_links = true, .shown = path};
	char why[512];
	int pfd = walk_open(path, &w, why, sizeof why);
	if (pfd < 0)
		return -1;
	char *real = strdup(w.real);
	if (!real) {
		close(pfd);
		return -ENOMEM;
	}
	free(r->real);
	r->real = real;
	int dfd = S_ISDIR(w.st.stx_mode) ? openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	close(pfd);
	*dev = stx_dev(&w.st);
	return dfd;
}

/* Expand glob below the directory dfd (root as written: written). Files
 * found, or -errno. */
static int expand_root(struct pw_protect *p, const char *glob, const char *written, int dfd, dev_t dev)
{
	struct expand *x = calloc(1, sizeof *x);
	if (!x)
		return -ENOMEM;
	x->p = p;
	x->glob = glob;
	x->lit = literal_len(glob);
	x->dev = dev;
	snprintf(x->path, sizeof x->path, "%s", written);
	expand_dir(x, dfd, strlen(x->path), 0);
	int found = x->error ? x->error : x->found;
	free(x);
	return found;
}

/* Expand glob over every root of e, each directory once (/bin and
 * /usr/bin may be one). Files found, or -errno. */
static int expand_entry_roots(struct pw_protect *p, struct protect_entry *e)
{
	int found = 0;
	for (int i = 0; found >= 0 && i < e->nroots; i++) {
		dev_t dev = 0;
		int dfd = resolve_root(&e->roots[i], &dev);
		if (dfd == -ENOMEM)
			return dfd;
		bool seen = false;
		for (int j = 0; j < i; j++)
			seen |= strcmp(e->roots[j].real, e->roots[i].real) == 0;
		if (dfd >= 0 && !seen) {
			int n = expand_root(p, e->glob, e->roots[i].written, dfd, dev);
			found = n < 0 ? n : found + n;
		}
		if (dfd >= 0)
			close(dfd);
	}
	return found;
}

/* A single path (no glob character): the file it names, links owned by
 * root followed. 1 when it is protected, else 0. */
static int add_path(struct pw_protect *p, const char *path)
{
	struct walk w = {.follow_root_links = true, .shown = path};
	char why[512];
	int fd = walk_open(path, &w, why, sizeof why);
	if (fd < 0)
		return 0;
	close(fd);
	if (!eligible(&w.st))
		return 0;
	int r = add_id(p, &w.st);
	return r < 0 ? r : 1;
}

/* The entry's roots: the given ones for a glob starting with '*', else the
 * directory part of its literal start. */
static int entry_roots(struct protect_entry *e, const char *const *roots, int nroots)
{
	int n = e->glob[0] == '*' ? nroots : 1;
	e->roots = calloc((size_t)(n > 0 ? n : 1), sizeof *e->roots);
	if (!e->roots)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		struct protect_root *r = &e->roots[i];
		if (e->glob[0] == '*') {
			r->written = strdup(roots[i]);
		} else {
			size_t lit = literal_len(e->glob);
			while (lit > 0 && e->glob[lit - 1] != '/')
				lit--;
			r->written = strndup(e->glob, lit ? lit - 1 : 0); /* "" is / */
		}
		if (!r->written)
			return -ENOMEM;
		size_t wl = strlen(r->written);
		while (wl > 0 && r->written[wl - 1] == '/')
			r->written[--wl] = 0;
		r->real = strdup(r->written);
		if (!r->real)
			return -ENOMEM;
		e->nroots++;
	}
	return 0;
}

static void note_leading_star(const struct protect_entry *e, int found, char *note, size_t notelen)
{
	size_t at = (size_t)snprintf(note, notelen, "'%s' starts with '*': it protects root-owned files below", e->glob);
	for (int i = 0; i < e->nroots && at < notelen; i++)
		at += (size_t)snprintf(note + at, notelen - at, " %s", e->roots[i].written);
	if (at < notelen)
		snprintf(note + at, notelen - at, " only (%d now), never a copy elsewhere", found);
}

int protect_add(struct pw_protect *p, const char *glob, const char *const *roots, int nroots, const char *where,
		char *err, size_t errlen)
{
	if (glob[0] != '/' && glob[0] != '*') {
		snprintf(err, errlen, "'%s' is neither an absolute path nor a glob starting with '*'", glob);
		return -1;
	}
	if (strlen(glob) >= PATH_MAX) {
		snprintf(err, errlen, "'%.64s...' is too long", glob);
		return -1;
	}
	if (p->nentries == PW_PROTECT_MAX_ENTRIES) {
		snprintf(err, errlen, "more than %d entries", PW_PROTECT_MAX_ENTRIES);
		return -1;
	}
	struct protect_entry *entries = realloc(p->entries, (size_t)(p->nentries + 1) * sizeof *entries);
	if (!entries) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->entries = entries;
	struct protect_entry *e = &p->entries[p->nentries];
	memset(e, 0, sizeof *e);
	p->nentries++;
	e->glob = strdup(glob);
	e->where = strdup(where ? where : "");
	if (!e->glob || !e->where || entry_roots(e, roots, nroots) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Resolve entry e: the files it names now. Count, or -errno. */
static int resolve_entry(struct pw_protect *p, struct protect_entry *e)
{
	if (has_magic(e->glob))
		return expand_entry_roots(p, e);
	dev_t dev; /* one file; its directory resolved for the check at a kill */
	int dfd = resolve_root(&e->roots[0], &dev);
	if (dfd >= 0)
		close(dfd);
	return dfd == -ENOMEM ? dfd : add_path(p, e->glob);
}

int protect_resolve(struct pw_protect *p, char *err, size_t errlen)
{
	char note[1024];
	for (int i = 0; p && i < p->nentries; i++) {
		struct protect_entry *e = &p->entries[i];
		if (e->resolved)
			continue;
		e->resolved = true;
		int found = resolve_entry(p, e);
		protect_sort(p);
		if (found < 0) {
			snprintf(err, errlen, "%sprotect: '%s' %s", e->where, e->glob,
				 found == -ENOSPC  ? "names too many files (more than 16384 in all)"
				 : found == -E2BIG ? "covers too many directory entries: name a narrower directory"
						   : strerror(-found));
			return -1;
		}
		note[0] = 0;
		if (e->glob[0] == '*')
			note_leading_star(e, found, note, sizeof note);
		else if (found == 0)
			snprintf(note, sizeof note, "'%s' names no root-owned file now (a file installed there later is "
						    "protected once it runs)", e->glob);
		if (note[0])
			pw_log(PW_LOG_WARNING, "%sprotect: %s", e->where, note);
	}
	return 0;
}

/* Does entry e name path (a process's exe, links resolved): below one of
 * its roots, within PW_PROTECT_DEPTH, and matched by its glob with the
 * root as written? */
static bool entry_names(const struct protect_entry *e, const char *path)
{
	char cand[PATH_MAX];
	for (int i = 0; i < e->nroots; i++) {
		const struct protect_root *r = &e->roots[i];
		size_t rl = strlen(r->real);
		if (strncmp(path, r->real, rl) != 0 || path[rl] != '/')
			continue;
		const char *rel = path + rl + 1;
		int depth = 0;
		for (const char *c = rel; *c; c++)
			depth += *c == '/';
		if (depth > PW_PROTECT_DEPTH)
			continue;
		if (snprintf(cand, sizeof cand, "%s/%s", r->written, rel) < (int)sizeof cand &&
		    fnmatch(e->glob, cand, 0) == 0)
			return true;
	}
	return false;
}

/* The file at path now (walked, nothing FUSE entered) is the inode sx. */
static bool at_path_now(const char *path, const struct statx *sx)
{
	struct walk w = {.follow_root_links = false, .shown = path};
	char why[256];
	int fd = walk_open(path, &w, why, sizeof why);
	if (fd < 0)
		return false;
	close(fd);
	return eligible(&w.st) && w.st.stx_ino == sx->stx_ino && stx_dev(&w.st) == stx_dev(sx);
}

/* An upgraded program still running: its exe " (deleted)" had its last
 * name at path (the part before " (deleted)"), and that name was in our
 * mount of path's directory, where only root can have put it: the exe's
 * mount (statx STATX_MNT_ID of /proc/PID/exe) is the mount of that
 * directory as we see it (a bind mount in another mount namespace, which
 * would show the same name, is another mount). */
static bool deleted_in_place(const char *path, const struct statx *sx)
{
	if (!(sx->stx_mask & STATX_MNT_ID))
		return false;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return false;
	*slash = 0;
	struct walk w = {.follow_root_links = false, .shown = path};
	char why[256];
	int fd = walk_open(dir[0] ? dir : "/", &w, why, sizeof why);
	if (fd < 0)
		return false;
	struct statx dsx;
	int r = statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STX_WANT | STATX_MNT_ID, &dsx);
	close(fd);
	return r == 0 && (dsx.stx_mask & STATX_MNT_ID) && S_ISDIR(dsx.stx_mode) && dsx.stx_mnt_id == sx->stx_mnt_id &&
	       stx_dev(&dsx) == stx_dev(sx);
}

bool protect_holds(const struct pw_protect *p, pid_t pid, char *exe, size_t cap)
{
	if (cap)
		exe[0] = 0;
	if (!p || p->nentries == 0 || pid <= 0)
		return false;
	char link[64];
	snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
	struct statx sx; /* the exe's inode, even deleted; never a request to its filesystem */
	int r = statx(AT_FDCWD, link, AT_STATX_DONT_SYNC, STX_WANT | STATX_MNT_ID, &sx);
	if (proc_read_exe(pid, exe, cap) < 0 && cap)
		exe[0] = 0;
	if (r < 0 || !eligible(&sx))
		return false; /* gone, or a program someone other than root could have written */
	if (has_id(p, stx_dev(&sx), sx.stx_ino))
		return true;
	char path[PATH_MAX];
	size_t n = strlen(exe);
	bool deleted = n > 10 && strcmp(exe + n - 10, " (deleted)") == 0;
	if (n == 0 || exe[0] != '/' || snprintf(path, sizeof path, "%.*s", (int)(deleted ? n - 10 : n), exe) < 0)
		return false;
	for (int i = 0; i < p->nentries; i++)
		if (entry_names(&p->entries[i], path))
			return deleted ? deleted_in_place(path, &sx) : at_path_now(path, &sx);
	return false;
}
