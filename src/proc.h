/* proc.h: bounded readers of /proc/PID files. */
#ifndef PW_PROC_H
#define PW_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PW_ARGV_CAP 4096 /* bytes of /proc/PID/cmdline kept */

struct pw_proc_status {
	pid_t ppid;
	uid_t ruid, euid;
	gid_t rgid, egid;
};

/* Path of the executable (readlink /proc/PID/exe). Returns its length, or
 * -errno (-ENOENT when the process is gone). NUL-terminated, cut at cap-1. */
int proc_read_exe(pid_t pid, char *buf, size_t cap);
/* Up to cap bytes of /proc/PID/<name>. Returns the byte count or -errno;
 * *truncated tells whether the file held more. */
ssize_t proc_read_file(pid_t pid, const char *name, char *buf, size_t cap, bool *truncated);
/* PPid, Uid and Gid lines of /proc/PID/status. 0 or -errno. */
int proc_read_status(pid_t pid, struct pw_proc_status *st);
/* starttime (field 22 of /proc/PID/stat), in clock ticks since boot. 0 or -errno. */
int proc_read_start_time(pid_t pid, uint64_t *ticks);

#endif
