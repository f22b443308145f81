/* hash.h: sha256 of executables (libcrypto), cached by file identity. */
#ifndef PW_HASH_H
#define PW_HASH_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define PW_HASH_MAX_BYTES (512ull << 20) /* larger files are not hashed */
#define PW_HASH_LOOP_MS 50                /* the loop waits this long for a hash at most */

struct pw_hash_stats {
	uint64_t computed, cache_hits, failures, late;
};

/* sha256 (64 hex chars + NUL) of the open file fd, from the cache when its
 * (dev, inode, size, mtime, ctime) was hashed before. known: fd's fstat(2)
 * if the caller has it (saves one), else NULL. 0 or -errno
 * (-EFBIG above PW_HASH_MAX_BYTES), or -ETIMEDOUT once CLOCK_MONOTONIC
 * passes deadline_ns (0 = none). A file given up on is hashed to the end by a
 * background thread (at most two at a time), so the next exec of it finds
 * the hash in the cache. */
int hash_sha256_fd_by(int fd, const struct stat *known, char out[65], uint64_t deadline_ns);
/* sha256 of /proc/PID/exe (the file the process runs, even if deleted),
 * within PW_HASH_LOOP_MS (-ETIMEDOUT beyond: ask again later). */
int hash_sha256_exe(pid_t pid, char out[65]);
const struct pw_hash_stats *hash_stats(void);

#endif
