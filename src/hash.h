/* hash.h: sha256 of executables (libcrypto), cached by file identity. */
#ifndef PW_HASH_H
#define PW_HASH_H

#include <stdint.h>
#include <sys/types.h>

#define PW_HASH_MAX_BYTES (512ull << 20) /* larger files are not hashed */

struct pw_hash_stats {
	uint64_t computed, cache_hits, failures;
};

/* sha256 (64 hex chars + NUL) of the open file fd, from the cache when its
 * (dev, inode, size, mtime, ctime) was hashed before. 0 or -errno
 * (-EFBIG above PW_HASH_MAX_BYTES). */
int hash_sha256_fd(int fd, char out[65]);
/* sha256 of /proc/PID/exe (the file the process runs, even if deleted). */
int hash_sha256_exe(pid_t pid, char out[65]);
const struct pw_hash_stats *hash_stats(void);

#endif
