/* hash.h: sha256 of executables (libcrypto), cached by file identity.
 *
 * What can block: reading a file's content (and opening it) can wait on
 * whoever serves the file: a FUSE server that never answers blocks the
 * reader uninterruptibly. hash_sha256_exe() therefore opens and reads in a
 * worker (worker.h) and waits for it only until its deadline.
 * hash_sha256_fd_by() reads the fd in the calling thread: its callers give
 * it only files no process serves (not FUSE); a file it gives up on is
 * finished by a worker. Neither ever touches a FUSE file from the daemon's
 * shared descriptor table, so that table never holds one.
 *
 * The cache: a hash is kept only when the file's mtime and ctime are both
 * at least PW_HASH_SETTLE_NS old when its reading starts (timestamps are
 * coarse on some kernels and filesystems: a rewrite within one tick keeps
 * them), never for files whose content a server can change behind the
 * kernel (FUSE, network filesystems: known to workers, which may ask the
 * filesystem its type), and is found again only for the
 * same (device, inode, size, mtime, ctime). The kernel's change cookie
 * (STATX_CHANGE_COOKIE, i_version) would be a better key, but statx(2)
 * does not report it to user space (kernel-only up to 6.18 at least).
 * Least recently used entries go first, PW_HASH_CACHE_ENTRIES at most. */
#ifndef PW_HASH_H
#define PW_HASH_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define PW_HASH_MAX_BYTES (512ull << 20) /* larger files are not hashed */
#define PW_HASH_LOOP_MS 50                /* hash_sha256_exe waits this long for a hash at most */
#define PW_HASH_CACHE_ENTRIES 4096        /* files whose hash is kept (least recently used go) */
#define PW_HASH_SETTLE_NS 2000000000ull   /* a file changed more recently than this is not cached */
#define PW_HASH_BACKGROUND 2              /* late hashes finished by workers at once, at most */

struct pw_hash_stats {
	uint64_t computed;    /* hashes read from the file */
	uint64_t cache_hits;  /* hashes found in the cache */
	uint64_t failures;    /* files that could not be read (not counting late ones) */
	uint64_t late;        /* not had by the deadline (or no worker free): ask again later */
	uint64_t refused;     /* of those late, no worker was free */
	uint64_t unread_served; /* of those late, executables on a FUSE filesystem: never read */
	uint64_t not_cached;  /* hashes not kept: the file changed recently, or a server serves it */
	uint64_t evictions;   /* cached hashes dropped for newer ones (least recently used first) */
	uint64_t background;  /* late hashes handed to a worker to finish (found in the cache next time) */
	uint64_t background_refused; /* late hashes not finished: PW_HASH_BACKGROUND busy, or no worker */
};

/* sha256 (64 hex chars + NUL) of the open file fd, read in the calling
 * thread (fd must not be a FUSE file: see above), from the cache when its
 * identity was hashed before. known: fd's fstat(2) if the caller has it
 * (saves one), else NULL (statx(2) with AT_STATX_DONT_SYNC). 0 or -errno
 * (-EFBIG above PW_HASH_MAX_BYTES), or -ETIMEDOUT once CLOCK_MONOTONIC
 * passes deadline_ns (0 = none). A file given up on is hashed to the end by
 * a worker (PW_HASH_BACKGROUND at a time), so the next exec of it finds
 * the hash in the cache. */
int hash_sha256_fd_by(int fd, const struct stat *known, char out[65], uint64_t deadline_ns);
/* sha256 of /proc/PID/exe (the file the process runs, even if deleted),
 * within PW_HASH_LOOP_MS: a cache hit costs one statx(2) here (with
 * AT_STATX_DONT_SYNC: no FUSE request); otherwise a worker opens and reads
 * the file, and -ETIMEDOUT (ask again later) when it is not done in time or
 * no worker is free; a worker given up on still fills the cache. A file on
 * a FUSE filesystem (its type from PID's mount table) is never read:
 * -ETIMEDOUT at once, as the responder leaves such files unhashed. */
int hash_sha256_exe(pid_t pid, char out[65]);
const struct pw_hash_stats *hash_stats(void);

#endif
