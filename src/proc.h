/* proc.h: bounded readers of /proc/PID files, and of a pidfd's info. */
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
	pid_t tracer_pid; /* TracerPid, 0 = none */
	pid_t ns_pid;     /* last NSpid value: the pid in its own namespace */
	uint64_t cap_eff; /* CapEff bits */
};

/* Path of the executable (readlink /proc/PID/exe). Returns its length, or
 * -errno (-ENOENT when the process is gone). NUL-terminated, cut at cap-1. */
int proc_read_exe(pid_t pid, char *buf, size_t cap);
/* Up to cap bytes of /proc/PID/<name>. Returns the byte count or -errno;
 * *truncated tells whether the file held more. */
ssize_t proc_read_file(pid_t pid, const char *name, char *buf, size_t cap, bool *truncated);
/* PPid, Uid, Gid, TracerPid, NSpid and CapEff of /proc/PID/status. 0 or -errno. */
int proc_read_status(pid_t pid, struct pw_proc_status *st);
struct pw_proc_stat {
	char comm[17];
	char state;          /* R S D Z X ... (Z: exited, not reaped) */
	pid_t ppid, pgid, sid;
	unsigned tty_nr;     /* encoded device number, 0 = none */
	unsigned flags;      /* PF_* (PF_KTHREAD = 0x00200000) */
	uint64_t start_time; /* clock ticks since boot */
};

/* Fields of /proc/PID/stat. 0 or -errno. */
int proc_read_stat(pid_t pid, struct pw_proc_stat *st);
/* starttime (field 22 of /proc/PID/stat), in clock ticks since boot. 0 or -errno. */
int proc_read_start_time(pid_t pid, uint64_t *ticks);
/* The cgroup v2 path ("0::/path" line) or else the first line's path.
 * Length or -errno. *unified (may be NULL): the path is the v2 one. */
int proc_read_cgroup(pid_t pid, char *buf, size_t cap, bool *unified);

/* What PIDFD_GET_INFO (Linux 6.13+) tells of a process: ids as
 * /proc/PID/status shows them, and the id of its cgroup v2 (the
 * "0::" line of /proc/PID/cgroup). */
struct pw_pidfd_info {
	pid_t ppid;
	uid_t ruid, euid;
	gid_t rgid, egid;
	bool has_cgroupid;
	uint64_t cgroupid;
};
/* pidfd_open(pid): the fd, or -errno (-ESRCH: gone, -ENOSYS: no pidfds). */
int proc_pidfd_open(pid_t pid);
/* PIDFD_GET_INFO on pidfd: 0, -ESRCH once the process is reaped, or
 * -ENOTTY/-EINVAL/-EOPNOTSUPP where the kernel lacks it. */
int proc_pidfd_info(int pidfd, struct pw_pidfd_info *out);
/* The pidfs inode number of pidfd's process: unique to it for the life of
 * the system (Linux 6.9+, where pidfds live on pidfs; a pid number is
 * reused, this is not). 0, or -ENOTSUP on older kernels (an anonymous
 * inode shared by every pidfd). */
int proc_pidfd_ino(int pidfd, uint64_t *ino);
/* The /proc start-time clock (ticks since boot, CLOCK_BOOTTIME) at a
 * kernel event's CLOCK_MONOTONIC timestamp. */
uint64_t proc_ticks_at(uint64_t ktime_ns);
/* The name of an errno value ("ENAMETOOLONG"), as rules see why a read
 * failed (exe_error); "unreadable" for a value without one. */
const char *proc_errno_name(int err);
/* Terminal name for a tty_nr ("pts/3", "tty1", "ttyS0"), or "" when none. */
void proc_tty_name(unsigned tty_nr, char *buf, size_t cap);

#endif
