/* hash.c: sha256 of executables with libcrypto, and a bounded cache of
 * them: a hash table of (device, inode) into PW_HASH_CACHE_ENTRIES
 * entries on a least-recently-used list, one entry per inode (a newer
 * version of a file replaces its older one). A hash is found again only
 * for the same (device, inode, size, mtime, ctime), and kept only when
 * both timestamps were settled (PW_HASH_SETTLE_NS old) before the read
 * began: any later write then stamps the file with a time after that, so a
 * different one, even with a coarse clock (Debian 12's 6.1 kernel stamps
 * files with the jiffy clock: a rewrite in the same tick keeps them).
 * Files read in a worker are also not kept when a server can change them
 * behind the kernel (FUSE, network filesystems: fstatfs(2) there can wait
 * on the server, so only a worker asks). Reads that can block run in
 * workers (worker.h): see hash.h. An executable on a FUSE filesystem, as
 * far as the mount tables tell, is not read at all (late): its server
 * could park every worker, and serve the reader other bytes than exec. */
#include "hash.h"

#include "clock.h"
#include "mounts.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS (2 * PW_HASH_CACHE_ENTRIES) /* power of two */

/* What identifies one version of a file's content. */
struct ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	mode_t mode;
};

/* Links are entry index + 1: 0 is none. */
struct entry {
	struct ident id;
	unsigned char digest[32];
	uint32_t chain;      /* next entry of the same bucket */
	uint32_t prev, next; /* towards the most / least recently used */
};

static struct entry ents[PW_HASH_CACHE_ENTRIES];
static uint32_t bucket[BUCKETS];
static uint32_t mru, lru, used;
static uint64_t seed;
static struct pw_hash_stats st;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* the cache and st: loop, responder and workers */
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static atomic_int background;

/* ---- identity -------------------------------------------------------------- */

static void ident_of_stat(const struct stat *sb, struct ident *id)
{
	*id = (struct ident){.dev = sb->st_dev, .ino = sb->st_ino, .size = sb->st_size,
			     .mtime = sb->st_mtim, .ctime = sb->st_ctim, .mode = sb->st_mode};
}

/* statx of fd (path NULL) or of path, from the attributes the kernel has:
 * AT_STATX_DONT_SYNC asks no server (a FUSE GETATTR could block). */
static int ident_of(int fd, const char *path, struct ident *id)
{
	struct statx sx;
	int r = path ? statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &sx)
		     : statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &sx);
	if (r < 0)
		return -errno;
	*id = (struct ident){
		.dev = makedev(sx.stx_dev_major, sx.stx_dev_minor),
		.ino = (ino_t)sx.stx_ino,
		.size = (off_t)sx.stx_size,
		.mtime = {.tv_sec = sx.stx_mtime.tv_sec, .tv_nsec = sx.stx_mtime.tv_nsec},
		.ctime = {.tv_sec = sx.stx_ctime.tv_sec, .tv_nsec = sx.stx_ctime.tv_nsec},
		.mode = sx.stx_mode,
	};
	return 0;
}

static int check_hashable(const struct ident *id)
{
	if (!S_ISREG(id->mode))
		return -EINVAL;
	if ((unsigned long long)id->size > PW_HASH_MAX_BYTES)
		return -EFBIG;
	return 0;
}

static bool ts_le(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec <= b.tv_nsec);
}

/* Were both timestamps PW_HASH_SETTLE_NS old or more? Compared with the
 * coarse clock the kernel stamps files with: a write after this moment
 * gets a later stamp than "now - settle", so a different one (also on
 * filesystems with 1 or 2 s resolution). A stamp in the future (a clock
 * set back) is not settled. */
static bool settled(const struct ident *id)
{
	struct timespec now;
	if (clock_gettime(CLOCK_REALTIME_COARSE, &now) < 0)
		return false;
	struct timespec limit = {.tv_sec = now.tv_sec - (time_t)(PW_HASH_SETTLE_NS / 1000000000u),
				 .tv_nsec = now.tv_nsec - (long)(PW_HASH_SETTLE_NS % 1000000000u)};
	if (limit.tv_nsec < 0) {
		limit.tv_nsec += 1000000000;
		limit.tv_sec--;
	}
	return ts_le(id->mtime, limit) && ts_le(id->ctime, limit);
}

/* Is fd's content only the kernel's to change (not a FUSE or network
 * filesystem's server)? Only in a worker: fstatfs can wait on the server. */
static bool served_locally(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		return false;
	switch ((unsigned long)sf.f_type) {
	case 0x65735546: /* FUSE_SUPER_MAGIC */
	case 0x6969:     /* NFS_SUPER_MAGIC */
	case 0xff534d42: /* CIFS_MAGIC_NUMBER */
	case 0xfe534d42: /* SMB2_MAGIC_NUMBER */
	case 0x01021997: /* V9FS_MAGIC */
	case 0x00c36400: /* CEPH_SUPER_MAGIC */
	case 0x6b414653: /* AFS_FS_MAGIC */
	case 0x47504653: /* GPFS */
	case 0x0bd00bd0: /* LUSTRE */
		return false;
	default:
		return true;
	}
}

/* ---- the cache (under mu) ---------------------------------------------------- */

static void seed_init(void)
{
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
		seed = pw_mono_ns() ^ (uint64_t)(uintptr_t)&seed;
}

/* Keyed, so no one can pick inodes that share a bucket. */
static uint32_t bucket_of(dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino ^ seed) * 0x9E3779B97F4A7C15ull;
	h ^= (uint64_t)dev + (h >> 29);
	h *= 0xBF58476D1CE4E5B9ull;
	return (uint32_t)(h >> 40) & (BUCKETS - 1);
}

static struct entry *at(uint32_t link)
{
	return link ? &ents[link - 1] : NULL;
}

static uint32_t link_of(const struct entry *e)
{
	return (uint32_t)(e - ents) + 1;
}

static void lru_unlink(struct entry *e)
{
	if (e->prev)
		at(e->prev)->next = e->next;
	else
		mru = e->next;
	if (e->next)
		at(e->next)->prev = e->prev;
	else
		lru = e->prev;
	e->prev = e->next = 0;
}

static void lru_push(struct entry *e)
{
	e->prev = 0;
	e->next = mru;
	if (mru)
		at(mru)->prev = link_of(e);
	mru = link_of(e);
	if (!lru)
		lru = mru;
}

/* The entry of (dev, ino), any version; *pp: the link pointing to it. */
static struct entry *find(dev_t dev, ino_t ino, uint32_t **pp)
{
	uint32_t *p = &bucket[bucket_of(dev, ino)];
	for (struct entry *e; (e = at(*p)); p = &e->chain)
		if (e->id.dev == dev && e->id.ino == ino) {
			if (pp)
				*pp = p;
			return e;
		}
	return NULL;
}

static bool same_version(const struct ident *a, const struct ident *b)
{
	return a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void to_hex(const unsigned char d[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = 0;
}

static bool lookup(const struct ident *id, char out[65])
{
	struct entry *e = find(id->dev, id->ino, NULL);
	if (!e || !same_version(&e->id, id))
		return false;
	lru_unlink(e);
	lru_push(e);
	to_hex(e->digest, out);
	st.cache_hits++;
	return true;
}

static void drop(struct entry *e)
{
	uint32_t *p = NULL;
	if (find(e->id.dev, e->id.ino, &p) == e)
		*p = e->chain;
	lru_unlink(e);
	e->chain = 0;
}

static void insert(const struct ident *id, const unsigned char digest[32])
{
	struct entry *e = find(id->dev, id->ino, NULL);
	if (e) { /* an older version of the same file */
		lru_unlink(e);
	} else {
		if (used < PW_HASH_CACHE_ENTRIES) {
			e = &ents[used++];
		} else {
			e = at(lru);
			drop(e);
			st.evictions++;
		}
		uint32_t *b = &bucket[bucket_of(id->dev, id->ino)];
		e->chain = *b;
		*b = link_of(e);
	}
	e->id = *id;
	memcpy(e->digest, digest, 32);
	lru_push(e);
}

/* ---- hashing ----------------------------------------------------------------- */

static void count(uint64_t *counter)
{
	pthread_mutex_lock(&mu);
	(*counter)++;
	pthread_mutex_unlock(&mu);
}

/* Read fd to its end into digest; 0 or -errno, -ETIMEDOUT past deadline_ns
 * (0 = none: checked about every MiB). */
static int digest_fd(int fd, unsigned char digest[32], uint64_t deadline_ns)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	unsigned char buf[65536];
	off_t off = 0;
	int err = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
			err = -EIO;
			break;
		}
		off += n;
		if ((unsigned long long)off > PW_HASH_MAX_BYTES) {
			err = -EFBIG;
			break;
		}
		if (deadline_ns && (off & ((1 << 20) - 1)) < (off_t)sizeof buf && pw_mono_ns() > deadline_ns) {
			err = -ETIMEDOUT;
			break;
		}
	}
	unsigned int dlen = 0;
	unsigned char full[EVP_MAX_MD_SIZE];
	if (!err && (EVP_DigestFinal_ex(md, full, &dlen) != 1 || dlen != 32))
		err = -EIO;
	EVP_MD_CTX_free(md);
	if (!err)
		memcpy(digest, full, 32);
	return err;
}

/* The hash of the file id names, from the cache: 0 found (in out), 1 not
 * there (to be read), < 0 the file is not one to hash. */
static int from_cache(const struct ident *id, char out[65])
{
	int r = check_hashable(id);
	if (r < 0)
		return r;
	pthread_mutex_lock(&mu);
	bool hit = lookup(id, out);
	pthread_mutex_unlock(&mu);
	return hit ? 0 : 1;
}

/* The hash of fd, from the cache or read. known: its identity if the
 * caller has it. in_worker: this thread may wait on a server (fstatfs). */
static int hash_fd(int fd, const struct ident *known, char out[65], uint64_t deadline_ns, bool in_worker)
{
	pthread_once(&seed_once, seed_init);
	struct ident id;
	int r = known ? (id = *known, 0) : ident_of(fd, NULL, &id);
	if (r == 0)
		r = from_cache(&id, out);
	if (r <= 0)
		return r;
	bool keep = settled(&id) && (!in_worker || served_locally(fd));
	unsigned char digest[32];
	r = digest_fd(fd, digest, deadline_ns);
	pthread_mutex_lock(&mu);
	if (r == 0) {
		st.computed++;
		if (keep)
			insert(&id, digest);
		else
			st.not_cached++;
	} else if (r != -ETIMEDOUT) {
		st.failures++;
	}
	pthread_mutex_unlock(&mu);
	if (r == 0)
		to_hex(digest, out);
	return r;
}

/* In a worker: the late file to its end, into the cache. */
static void finish_late(void *arg, int fd)
{
	char hex[65];
	hash_fd(fd, NULL, hex, 0, true);
	atomic_fetch_sub(&background, 1);
}

static void finish_in_background(int fd)
{
	if (atomic_fetch_add(&background, 1) >= PW_HASH_BACKGROUND) {
		atomic_fetch_sub(&background, 1);
		count(&st.background_refused);
		return;
	}
	if (worker_post(finish_late, NULL, 0, fd) < 0) {
		atomic_fetch_sub(&background, 1);
		count(&st.background_refused);
		return;
	}
	count(&st.background);
}

int hash_sha256_fd_by(int fd, const struct stat *known, char out[65], uint64_t deadline_ns)
{
	struct ident id;
	if (known)
		ident_of_stat(known, &id);
	int r = hash_fd(fd, known ? &id : NULL, out, deadline_ns, false);
	if (r != -ETIMEDOUT)
		return r;
	count(&st.late);
	finish_in_background(fd);
	return r;
}

struct exe_call {
	pid_t pid;
	int rc;
	char out[65];
};

/* In a worker: open (a FUSE OPEN can block) and read the executable. Not
 * bound by the caller's deadline: a caller that gave up finds the hash in
 * the cache next time. */
static void hash_exe_call(void *arg, int unused)
{
	struct exe_call *c = arg;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", (int)c->pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		c->rc = -errno;
		return;
	}
	c->rc = hash_fd(fd, NULL, c->out, 0, true);
	close(fd);
}

int hash_sha256_exe(pid_t pid, char out[65])
{
	pthread_once(&seed_once, seed_init);
	uint64_t deadline = pw_mono_ns() + PW_HASH_LOOP_MS * 1000000ull;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	struct ident id;
	int r = ident_of(-1, path, &id);
	if (r == 0)
		r = from_cache(&id, out);
	if (r <= 0)
		return r;
	char type[32];
	mounts_fs_type(pid, id.dev, type, sizeof type);
	if (mounts_type_blocks(type)) { /* its server decides what a read gets, and when */
		pthread_mutex_lock(&mu);
		st.late++;
		st.unread_served++;
		pthread_mutex_unlock(&mu);
		return -ETIMEDOUT;
	}
	struct exe_call c = {.pid = pid, .rc = -EIO};
	r = worker_call(hash_exe_call, &c, sizeof c, -1, deadline);
	if (r == 0) {
		if (c.rc == 0)
			memcpy(out, c.out, 65);
		return c.rc;
	}
	if (r == -ETIMEDOUT || r == -EAGAIN) {
		pthread_mutex_lock(&mu);
		st.late++;
		if (r == -EAGAIN)
			st.refused++;
		pthread_mutex_unlock(&mu);
		return -ETIMEDOUT; /* ask again later */
	}
	return r;
}

const struct pw_hash_stats *hash_stats(void)
{
	return &st;
}
