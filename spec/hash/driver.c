/* driver.c: drives src/hash.c and src/worker.c for spec/hash_spec.lua and
 * spec/integration/hash_spec.lua, one scenario per command; prints
 * key=value lines. Expected hashes are computed here with libcrypto
 * directly, not through the code under test.
 *
 *   driver sha FILE                 hash FILE (fd path), print it and the counters
 *   driver rewrite FILE TRIES       write, hash, rewrite in place (same size), hash
 *   driver thrash DIR               LRU: a large file against many small ones
 *   driver exe PID                  hash PID's executable (through a worker)
 *   driver fifo FIFO                a worker blocked opening FIFO: deadline, next call, cap
 *   driver stalled PID OTHER FILE   PID runs FILE on a stalled FUSE mount: its hash,
 *                                   a worker reading FILE, then OTHER's hash
 */
#include "hash.h"
#include "worker.h"

#include "clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "driver: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void sha256_of(const void *buf, size_t n, char out[65])
{
	unsigned char d[32];
	unsigned int len = 0;
	if (EVP_Digest(buf, n, d, &len, EVP_sha256(), NULL) != 1 || len != 32) {
		fprintf(stderr, "driver: EVP_Digest failed\n");
		exit(2);
	}
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void write_file(const char *path, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, n) != (ssize_t)n || close(fd) < 0)
		die(path);
}

/* hash_sha256_fd_by on a fresh read-only open of path, as the responder
 * gets a fresh fd for each exec. */
static int hash_path(const char *path, char out[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(path);
	int r = hash_sha256_fd_by(fd, NULL, out, 0);
	close(fd);
	return r;
}

static void print_stats(void)
{
	const struct pw_hash_stats *h = hash_stats();
	printf("computed=%llu cache_hits=%llu late=%llu\n", (unsigned long long)h->computed,
	       (unsigned long long)h->cache_hits, (unsigned long long)h->late);
}

static int cmd_sha(const char *path)
{
	char out[65];
	int r = hash_path(path, out);
	printf("rc=%d sha256=%s\n", r, r == 0 ? out : "-");
	print_stats();
	return 0;
}

/* Content A, hashed, then content B of the same size written over it:
 * when the rewrite kept both timestamps (a coarse clock), a cache keyed
 * by them alone answers A's hash for B. */
static int cmd_rewrite(const char *path, int tries)
{
	int same_ts = 0, stale = 0, failed = 0;
	char buf[4096], got[65], want[65];
	for (int i = 0; i < tries; i++) {
		memset(buf, 'a' + i % 26, sizeof buf);
		snprintf(buf, sizeof buf, "version A of try %d", i);
		write_file(path, buf, sizeof buf);
		if (hash_path(path, got) != 0)
			failed++;
		struct stat before, after;
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &before) < 0)
			die(path);
		snprintf(buf, sizeof buf, "version B of try %d", i);
		if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || fstat(fd, &after) < 0)
			die(path);
		close(fd);
		if (before.st_size == after.st_size && before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
		    before.st_mtim.tv_nsec == after.st_mtim.tv_nsec && before.st_ctim.tv_sec == after.st_ctim.tv_sec &&
		    before.st_ctim.tv_nsec == after.st_ctim.tv_nsec)
			same_ts++;
		sha256_of(buf, sizeof buf, want);
		if (hash_path(path, got) != 0)
			failed++;
		else if (strcmp(got, want) != 0)
			stale++;
	}
	printf("tries=%d same_ts=%d stale=%d failed=%d\n", tries, same_ts, stale, failed);
	return 0;
}

/* ---- thrash ---------------------------------------------------------------- */

/* The slot a direct-mapped cache of 4096 entries (the scheme this cache
 * replaced) gives a file: an attacker who read the code picks a small file
 * that lands in the large file's slot. */
static size_t direct_slot(const struct stat *sb)
{
	uint64_t h = (uint64_t)sb->st_ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)sb->st_dev;
	return (size_t)(h >> 20) & 4095;
}

static void small_name(char *out, size_t n, const char *dir, int i)
{
	snprintf(out, n, "%s/s%05d", dir, i);
}

static void make_small(const char *dir, int i, struct stat *sb)
{
	char path[4096], text[64];
	small_name(path, sizeof path, dir, i);
	int len = snprintf(text, sizeof text, "small file %d\n", i);
	write_file(path, text, (size_t)len);
	if (stat(path, sb) < 0)
		die(path);
}

/* Hash small files [from, to): 0 when all were read. */
static int hash_smalls(const char *dir, const int *order, int from, int to)
{
	char path[4096], out[65];
	for (int i = from; i < to; i++) {
		small_name(path, sizeof path, dir, order[i]);
		if (hash_path(path, out) != 0)
			return -1;
	}
	return 0;
}

static uint64_t hits(void)
{
	return hash_stats()->cache_hits;
}

/* Hash the large file; 1 if that was a cache hit. */
static int big_hit(const char *big)
{
	char out[65];
	uint64_t before = hits();
	if (hash_path(big, out) != 0) {
		fprintf(stderr, "driver: hashing %s failed\n", big);
		exit(2);
	}
	return hits() == before + 1;
}

/* big, S1 (C-1 small files, one of them in big's direct-mapped slot), big,
 * S2 (C-1 others), big, S3 (C others), big: with an LRU of C entries the
 * second and third are hits (the second one made big the most recent
 * entry again), the fourth a miss (C newer files pushed it out). */
static int cmd_thrash(const char *dir)
{
	const int C = PW_HASH_CACHE_ENTRIES;
	const int total = 3 * C - 2;
	char big[4096];
	snprintf(big, sizeof big, "%s/big", dir);
	size_t bigsize = 8u << 20;
	unsigned char *buf = malloc(bigsize);
	if (!buf)
		die("malloc");
	for (size_t i = 0; i < bigsize; i++)
		buf[i] = (unsigned char)(i * 2654435761u >> 13);
	write_file(big, buf, bigsize);
	free(buf);
	struct stat bsb, sb;
	if (stat(big, &bsb) < 0)
		die(big);
	int *order = calloc((size_t)total + 65536, sizeof *order);
	if (!order)
		die("calloc");
	int n = 0, collider = -1;
	for (; n < total; n++) {
		make_small(dir, n, &sb);
		order[n] = n;
		if (collider < 0 && direct_slot(&sb) == direct_slot(&bsb))
			collider = n;
	}
	for (int extra = 0; collider < 0 && extra < 65536; extra++, n++) {
		make_small(dir, n, &sb);
		if (direct_slot(&sb) == direct_slot(&bsb))
			collider = n;
	}
	if (collider >= 0) { /* the attacker's pick goes into S1 */
		int pos = collider < total ? collider : 0;
		order[pos] = order[0];
		order[0] = collider;
	}
	/* Only files whose timestamps are settled are cached: wait for that,
	 * as an attacker would. */
	struct timespec pause = {2, 200000000};
	nanosleep(&pause, NULL);
	int miss0 = !big_hit(big);
	if (hash_smalls(dir, order, 0, C - 1) < 0)
		die("hashing S1");
	int hit1 = big_hit(big);
	if (hash_smalls(dir, order, C - 1, 2 * C - 2) < 0)
		die("hashing S2");
	int hit2 = big_hit(big);
	if (hash_smalls(dir, order, 2 * C - 2, 3 * C - 2) < 0)
		die("hashing S3");
	int hit3 = big_hit(big);
	printf("capacity=%d collider=%d first_miss=%d hit_after_s1=%d hit_after_s2=%d hit_after_s3=%d\n", C,
	       collider >= 0, miss0, hit1, hit2, hit3);
	print_stats();
	free(order);
	return 0;
}

/* ---- workers -------------------------------------------------------------- */

/* hash_sha256_exe, asked again while late (as its callers do: a slow
 * machine or a sanitizer build can miss the deadline); *tries: calls made. */
static int hash_exe(pid_t pid, char out[65], int *tries)
{
	int r = -ETIMEDOUT;
	for (*tries = 0; r == -ETIMEDOUT && *tries < 50; ++*tries) {
		if (*tries) {
			struct timespec pause = {0, 20000000};
			nanosleep(&pause, NULL);
		}
		r = hash_sha256_exe(pid, out);
	}
	return r;
}

static int cmd_exe(pid_t pid)
{
	char out[65];
	int tries;
	int r = hash_exe(pid, out, &tries);
	printf("rc=%d sha256=%s tries=%d worker_calls=%llu\n", r, r == 0 ? out : "-", tries,
	       (unsigned long long)worker_stats()->calls);
	print_stats();
	return 0;
}

static double ms_since(uint64_t t0)
{
	return (double)(pw_mono_ns() - t0) / 1e6;
}

static _Atomic int blocked_tid;

struct fifo_call {
	char path[256];
	int opened; /* set by the call: 1 once its open returned */
};

/* Opens the FIFO for reading: blocks until a writer opens it. */
static void open_fifo(void *arg, int fd)
{
	struct fifo_call *c = arg;
	atomic_store(&blocked_tid, (int)gettid());
	int f = open(c->path, O_RDONLY | O_CLOEXEC);
	if (f >= 0) {
		c->opened = 1;
		close(f);
	}
}

struct add_call {
	int a, b, sum;
};

static void add(void *arg, int fd)
{
	struct add_call *c = arg;
	c->sum = c->a + c->b;
}

struct fd_call {
	char first[16];
	long got;
};

/* Reads the handed fd: the same open file as the caller's. */
static void read_fd(void *arg, int fd)
{
	struct fd_call *c = arg;
	c->got = fd >= 0 ? pread(fd, c->first, sizeof c->first - 1, 0) : -1;
}

/* The descriptors in thread tid's table: "fds=0,1,2 others=TARGET,..."
 * (the readlink(2) targets of those above 2). */
static void list_fds(int tid, char *out, size_t n)
{
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/self/task/%d/fd", tid);
	int fds[64], k = 0;
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(out, n, "fds=? others=?");
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) && k < 64)
		if (e->d_name[0] != '.')
			fds[k++] = atoi(e->d_name);
	closedir(d);
	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++)
			if (fds[j] < fds[i]) {
				int t = fds[i];
				fds[i] = fds[j];
				fds[j] = t;
			}
	size_t len = (size_t)snprintf(out, n, "fds=");
	for (int i = 0; i < k && len < n; i++)
		len += (size_t)snprintf(out + len, n - len, "%s%d", i ? "," : "", fds[i]);
	len += (size_t)snprintf(out + len, len < n ? n - len : 0, " others=");
	for (int i = 0, m = 0; i < k && len < n; i++) {
		if (fds[i] < 3)
			continue;
		char link[128], target[256];
		snprintf(link, sizeof link, "%s/%d", dir, fds[i]);
		ssize_t t = readlink(link, target, sizeof target - 1);
		target[t > 0 ? t : 0] = 0;
		len += (size_t)snprintf(out + len, n - len, "%s%s", m++ ? "," : "", target);
	}
}

/* A worker blocked in open(FIFO): the call returns -ETIMEDOUT by its
 * deadline; the next call works; the blocked worker holds only its own
 * descriptors; PW_WORKER_MAX blocked workers make the next call refused
 * at once; once writers come, the workers finish and are used again. */
static int cmd_fifo(const char *fifo)
{
	int mine = open("/dev/null", O_RDONLY | O_CLOEXEC); /* a descriptor of the shared table */
	struct fifo_call c = {.opened = 0};
	snprintf(c.path, sizeof c.path, "%s", fifo);
	uint64_t t0 = pw_mono_ns();
	int r = worker_call(open_fifo, &c, sizeof c, -1, t0 + 100000000ull);
	printf("blocked rc=%d ms=%.1f opened=%d\n", r, ms_since(t0), c.opened);
	char fds[1024];
	list_fds(atomic_load(&blocked_tid), fds, sizeof fds);
	printf("blocked_worker %s\n", fds);
	list_fds((int)gettid(), fds, sizeof fds);
	printf("caller %s\n", fds);

	struct add_call a = {.a = 40, .b = 2};
	t0 = pw_mono_ns();
	r = worker_call(add, &a, sizeof a, -1, t0 + 1000000000ull);
	printf("next rc=%d sum=%d ms=%.1f\n", r, a.sum, ms_since(t0));

	/* the caller's fd, handed over: read through the worker's copy */
	char path[] = "/tmp/pw-hash-driver.XXXXXX";
	int tf = mkstemp(path);
	if (tf < 0 || write(tf, "handed over", 11) != 11)
		die("mkstemp");
	unlink(path);
	struct fd_call f = {.got = 0};
	r = worker_call(read_fd, &f, sizeof f, tf, pw_mono_ns() + 1000000000ull);
	printf("fd rc=%d got=%ld text=%s\n", r, f.got, f.got > 0 ? f.first : "-");
	close(tf);

	/* fill every worker with a blocked call: the next one is refused */
	int timeouts = 1;
	for (int i = 1; i < PW_WORKER_MAX; i++)
		timeouts += worker_call(open_fifo, &c, sizeof c, -1, pw_mono_ns() + 20000000ull) == -ETIMEDOUT;
	t0 = pw_mono_ns();
	r = worker_call(add, &a, sizeof a, -1, t0 + 1000000000ull);
	printf("full timeouts=%d rc=%d ms=%.1f busy=%llu\n", timeouts, r, ms_since(t0),
	       (unsigned long long)worker_stats()->busy);

	/* writers come: every blocked open returns, the workers are free again */
	for (int i = 0; i < 50 && worker_stats()->busy > 0; i++) {
		int w = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (w >= 0)
			close(w);
		struct timespec ms = {0, 20000000};
		nanosleep(&ms, NULL);
	}
	a.sum = 0;
	r = worker_call(add, &a, sizeof a, -1, pw_mono_ns() + 1000000000ull);
	const struct pw_worker_stats *ws = worker_stats();
	printf("after rc=%d sum=%d busy=%llu abandoned=%llu recovered=%llu refused=%llu spawned=%llu\n", r, a.sum,
	       (unsigned long long)ws->busy, (unsigned long long)ws->abandoned, (unsigned long long)ws->recovered,
	       (unsigned long long)ws->refused, (unsigned long long)ws->spawned);
	close(mine);
	return 0;
}

struct read_call {
	char path[4096];
	long got;
};

/* Opens and reads path: on a stalled FUSE mount, the open waits forever. */
static void read_path(void *arg, int fd)
{
	struct read_call *c = arg;
	char buf[512];
	int f = open(c->path, O_RDONLY | O_CLOEXEC);
	c->got = f < 0 ? -errno : read(f, buf, sizeof buf);
	if (f >= 0)
		close(f);
}

/* PID runs FILE, on a FUSE mount whose server stopped answering. Its hash
 * is refused at once (a FUSE file is never read); a worker reading FILE is
 * given up on by the deadline; OTHER's hash still comes (asked again while
 * late, as callers do). Then return: the caller's descriptors (3 among
 * them) must close although the worker stays stuck in the FUSE request. */
static int cmd_stalled(pid_t pid, pid_t other, const char *file)
{
	char out[65];
	uint64_t t0 = pw_mono_ns();
	int r = hash_sha256_exe(pid, out);
	printf("stalled rc=%d ms=%.1f worker_calls=%llu unread_served=%llu\n", r, ms_since(t0),
	       (unsigned long long)worker_stats()->calls, (unsigned long long)hash_stats()->unread_served);
	struct read_call c = {.got = 0};
	snprintf(c.path, sizeof c.path, "%s", file);
	t0 = pw_mono_ns();
	r = worker_call(read_path, &c, sizeof c, -1, t0 + 100000000ull);
	printf("worker rc=%d ms=%.1f\n", r, ms_since(t0));
	int tries;
	r = hash_exe(other, out, &tries);
	printf("other rc=%d tries=%d sha256=%s stuck=%llu\n", r, tries, r == 0 ? out : "-",
	       (unsigned long long)worker_stats()->abandoned);
	print_stats();
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "sha"))
		return cmd_sha(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "rewrite"))
		return cmd_rewrite(argv[2], atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "thrash"))
		return cmd_thrash(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "exe"))
		return cmd_exe((pid_t)atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "fifo"))
		return cmd_fifo(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "stalled"))
		return cmd_stalled((pid_t)atoi(argv[2]), (pid_t)atoi(argv[3]), argv[4]);
	fprintf(stderr, "usage: see the comment at the top of spec/hash/driver.c\n");
	return 2;
}
