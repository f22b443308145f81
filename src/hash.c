/* hash.c: sha256 of executables with libcrypto, and a bounded cache keyed
 * by file identity (dev, inode, size, mtime, ctime): a binary rewritten in
 * place gets a new mtime/ctime and is hashed again. */
#include "hash.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_SLOTS 4096 /* power of two; direct-mapped */

struct cache_entry {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	char hex[65];
	bool used;
};

static struct cache_entry cache[CACHE_SLOTS];
static struct pw_hash_stats st;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* the loop and the deny responder share the cache */

static size_t cache_slot(const struct stat *sb)
{
	uint64_t h = (uint64_t)sb->st_ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)sb->st_dev;
	return (size_t)(h >> 20) & (CACHE_SLOTS - 1);
}

static bool same_file(const struct cache_entry *c, const struct stat *sb)
{
	return c->used && c->dev == sb->st_dev && c->ino == sb->st_ino && c->size == sb->st_size &&
	       c->mtime.tv_sec == sb->st_mtim.tv_sec && c->mtime.tv_nsec == sb->st_mtim.tv_nsec &&
	       c->ctime.tv_sec == sb->st_ctim.tv_sec && c->ctime.tv_nsec == sb->st_ctim.tv_nsec;
}

static int hash_fd(int fd, const struct stat *known, char out[65], uint64_t deadline_ns);

static atomic_int background;

static void *finish_hash(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char hex[65];
	hash_fd(fd, NULL, hex, 0); /* fills the cache */
	close(fd);
	atomic_fetch_sub(&background, 1);
	return NULL;
}

int hash_sha256_fd_by(int fd, const struct stat *known, char out[65], uint64_t deadline_ns)
{
	int r = hash_fd(fd, known, out, deadline_ns);
	if (r != -ETIMEDOUT)
		return r;
	pthread_mutex_lock(&mu);
	st.late++;
	pthread_mutex_unlock(&mu);
	if (atomic_fetch_add(&background, 1) >= 2) {
		atomic_fetch_sub(&background, 1);
		return r;
	}
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (copy < 0 || pthread_create(&t, &attr, finish_hash, (void *)(intptr_t)copy) != 0) {
		if (copy >= 0)
			close(copy);
		atomic_fetch_sub(&background, 1);
	}
	pthread_attr_destroy(&attr);
	return r;
}

static int hash_fd(int fd, const struct stat *known, char out[65], uint64_t deadline_ns)
{
	struct stat sb;
	if (known)
		sb = *known;
	else if (fstat(fd, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -EINVAL;
	if ((unsigned long long)sb.st_size > PW_HASH_MAX_BYTES)
		return -EFBIG;
	struct cache_entry *c = &cache[cache_slot(&sb)];
	pthread_mutex_lock(&mu);
	if (same_file(c, &sb)) {
		st.cache_hits++;
		memcpy(out, c->hex, 65);
		pthread_mutex_unlock(&mu);
		return 0;
	}
	pthread_mutex_unlock(&mu);
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
			err = -ETIMEDOUT; /* checked about every MiB */
			break;
		}
	}
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	if (!err && EVP_DigestFinal_ex(md, digest, &dlen) != 1)
		err = -EIO;
	EVP_MD_CTX_free(md);
	if (err) {
		if (err != -ETIMEDOUT) {
			pthread_mutex_lock(&mu);
			st.failures++;
			pthread_mutex_unlock(&mu);
		}
		return err;
	}
	for (unsigned i = 0; i < dlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", digest[i]);
	out[64] = 0;
	pthread_mutex_lock(&mu);
	st.computed++;
	c->dev = sb.st_dev;
	c->ino = sb.st_ino;
	c->size = sb.st_size;
	c->mtime = sb.st_mtim;
	c->ctime = sb.st_ctim;
	memcpy(c->hex, out, 65);
	c->used = true;
	pthread_mutex_unlock(&mu);
	return 0;
}

int hash_sha256_exe(pid_t pid, char out[65])
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* On the loop: never long. A big file is finished in the background
	 * and found in the cache by the next access. */
	int r = hash_sha256_fd_by(fd, NULL, out, pw_mono_ns() + PW_HASH_LOOP_MS * 1000000ull);
	close(fd);
	return r;
}

const struct pw_hash_stats *hash_stats(void)
{
	return &st;
}
