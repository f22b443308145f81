/* proc.c: bounded readers of /proc/PID files (exe, cmdline, status, stat,
 * cgroup), and PIDFD_GET_INFO, which tells ids and the cgroup v2 id without
 * a file. Each read is one open + at most cap bytes: nothing here can block
 * the loop for long or grow with what a process chooses to put in its argv.
 * They run for every exec, so paths and numbers are formatted and parsed by
 * hand (snprintf, sscanf and strtol were most of their user time). */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* "/proc/PID/name" into buf: the hot path builds it by hand (snprintf
 * cost more than the rest of a small read). */
static int proc_path(char *buf, size_t cap, pid_t pid, const char *name)
{
	char digits[12];
	size_t nd = 0, len = strlen(name);
	for (unsigned v = (unsigned)pid; v || nd == 0; v /= 10)
		digits[nd++] = (char)('0' + v % 10);
	if (6 + nd + 1 + len + 1 > cap)
		return -ENAMETOOLONG;
	char *p = buf;
	memcpy(p, "/proc/", 6);
	p += 6;
	while (nd)
		*p++ = digits[--nd];
	*p++ = '/';
	memcpy(p, name, len + 1);
	return 0;
}

int proc_read_exe(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	if (cap == 0 || pid <= 0)
		return -EINVAL;
	if (proc_path(path, sizeof path, pid, "exe") < 0)
		return -ENAMETOOLONG;
	ssize_t n = readlink(path, buf, cap - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

/* The /proc files read here (seq_file ones, cmdline, environ) fill a read
 * as far as they can: a short read is their end, so the read of 0 bytes
 * that would confirm it is skipped. Only a full buffer needs the 1-byte
 * probe that tells whether the file held more. */
ssize_t proc_read_file(pid_t pid, const char *name, char *buf, size_t cap, bool *truncated)
{
	char path[64];
	*truncated = false;
	if (pid <= 0)
		return -EINVAL;
	if (proc_path(path, sizeof path, pid, name) < 0)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got < cap) {
		size_t want = cap - got;
		ssize_t n = read(fd, buf + got, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		got += (size_t)n;
		if ((size_t)n < want)
			break; /* short (or 0): the end */
	}
	if (got == cap) {
		char probe;
		ssize_t n;
		do
			n = read(fd, &probe, 1);
		while (n < 0 && errno == EINTR);
		*truncated = n > 0;
	}
	close(fd);
	return (ssize_t)got;
}

/* The decimal at *p (leading blanks skipped) into *v; *p moves past it.
 * false when there is none. */
static bool parse_dec(const char **p, long long *v)
{
	const char *c = *p;
	while (*c == ' ' || *c == '\t')
		c++;
	bool neg = *c == '-';
	if (neg)
		c++;
	if (*c < '0' || *c > '9')
		return false;
	unsigned long long x = 0;
	while (*c >= '0' && *c <= '9')
		x = x * 10 + (unsigned long long)(*c++ - '0');
	*p = c;
	*v = neg ? -(long long)x : (long long)x;
	return true;
}

/* "real effective ..." of a Uid:/Gid: line. */
static int parse_ids(const char *line, unsigned *real, unsigned *eff)
{
	long long a, b;
	if (!parse_dec(&line, &a) || !parse_dec(&line, &b))
		return -EINVAL;
	*real = (unsigned)a;
	*eff = (unsigned)b;
	return 0;
}

static bool has_key(const char *line, const char *key, size_t len)
{
	return strncmp(line, key, len) == 0;
}

int proc_read_status(pid_t pid, struct pw_proc_status *st)
{
	char buf[4096];
	bool trunc;
	ssize_t n = proc_read_file(pid, "status", buf, sizeof buf - 1, &trunc);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	memset(st, 0, sizeof *st);
	int found = 0;
	/* One pass over the lines, dispatched on their first letter. */
	for (char *line = buf; line && *line;) {
		char *nl = memchr(line, '\n', (size_t)(buf + n - line));
		if (nl)
			*nl = 0;
		unsigned a, b;
		const char *v;
		switch (line[0]) {
		case 'P':
			if (has_key(line, "PPid:", 5)) {
				long long x = 0;
				v = line + 5;
				parse_dec(&v, &x);
				st->ppid = (pid_t)x;
				found |= 1;
			}
			break;
		case 'U':
			if (has_key(line, "Uid:", 4) && parse_ids(line + 4, &a, &b) == 0) {
				st->ruid = a;
				st->euid = b;
				found |= 2;
			}
			break;
		case 'G':
			if (has_key(line, "Gid:", 4) && parse_ids(line + 4, &a, &b) == 0) {
				st->rgid = a;
				st->egid = b;
				found |= 4;
			}
			break;
		case 'T':
			if (has_key(line, "TracerPid:", 10)) {
				long long x = 0;
				v = line + 10;
				parse_dec(&v, &x);
				st->tracer_pid = (pid_t)x;
			}
			break;
		case 'N':
			if (has_key(line, "NSpid:", 6)) {
				char *last = strrchr(line, '\t');
				char *sp = strrchr(line, ' ');
				if (sp > last)
					last = sp;
				long long x = 0;
				v = last ? last + 1 : line + 6;
				parse_dec(&v, &x);
				st->ns_pid = (pid_t)x;
			}
			break;
		case 'C':
			if (has_key(line, "CapEff:", 7))
				st->cap_eff = strtoull(line + 7, NULL, 16);
			break;
		default:
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	return found == 7 ? 0 : -EINVAL;
}

int proc_read_stat(pid_t pid, struct pw_proc_stat *st)
{
	char buf[1024];
	bool trunc;
	ssize_t n = proc_read_file(pid, "stat", buf, sizeof buf - 1, &trunc);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	char *open_paren = strchr(buf, '(');
	char *p = strrchr(buf, ')');
	if (!open_paren || !p || p < open_paren || !p[1])
		return -EINVAL;
	size_t clen = (size_t)(p - open_paren - 1);
	if (clen > sizeof st->comm - 1)
		clen = sizeof st->comm - 1;
	memcpy(st->comm, open_paren + 1, clen);
	st->comm[clen] = 0;
	/* after ')': 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, ... 22 starttime */
	unsigned long long f[23] = {0};
	const char *cur = p + 2;
	st->state = *cur;
	for (int field = 3; field <= 22; field++) {
		if (*cur == 0)
			return -EINVAL;
		if (field > 3) {
			long long v;
			if (!parse_dec(&cur, &v))
				return -EINVAL;
			f[field] = (unsigned long long)v;
		} else {
			while (*cur && *cur != ' ')
				cur++;
		}
		while (*cur == ' ')
			cur++;
	}
	st->ppid = (pid_t)f[4];
	st->pgid = (pid_t)f[5];
	st->sid = (pid_t)f[6];
	st->tty_nr = (unsigned)f[7];
	st->flags = (unsigned)f[9];
	st->start_time = f[22];
	return 0;
}

int proc_read_start_time(pid_t pid, uint64_t *ticks)
{
	struct pw_proc_stat st;
	int r = proc_read_stat(pid, &st);
	if (r == 0)
		*ticks = st.start_time;
	return r;
}

int proc_read_cgroup(pid_t pid, char *buf, size_t cap, bool *unified)
{
	char raw[2048];
	bool trunc;
	if (unified)
		*unified = false;
	ssize_t n = proc_read_file(pid, "cgroup", raw, sizeof raw - 1, &trunc);
	if (n < 0)
		return (int)n;
	raw[n] = 0;
	const char *line = strstr(raw, "0::");
	if (line != raw && (!line || line[-1] != '\n'))
		line = NULL;
	const char *path = NULL;
	if (line)
		path = line + 3;
	else if ((path = strchr(raw, ':')) && (path = strchr(path + 1, ':')))
		path++;
	if (!path || cap == 0)
		return -EINVAL;
	size_t len = strcspn(path, "\n");
	bool whole = path[len] == '\n'; /* not cut by the buffer */
	if (len > cap - 1) {
		len = cap - 1;
		whole = false;
	}
	memcpy(buf, path, len);
	buf[len] = 0;
	if (unified)
		*unified = line && whole;
	return (int)len;
}

/* PIDFD_GET_INFO, from linux/pidfd.h (Linux 6.13), carried here: the
 * installed headers may predate it. Version 0 of the struct (64 bytes). */
struct pw_kpidfd_info {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid;
	uint32_t ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define PW_PIDFD_GET_INFO _IOWR(0xFF, 11, struct pw_kpidfd_info)
#define PW_PIDFD_INFO_PID (1ull << 0)
#define PW_PIDFD_INFO_CREDS (1ull << 1)
#define PW_PIDFD_INFO_CGROUPID (1ull << 2)

int proc_pidfd_open(pid_t pid)
{
	if (pid <= 0)
		return -EINVAL;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : fd;
}

int proc_pidfd_info(int pidfd, struct pw_pidfd_info *out)
{
	struct pw_kpidfd_info k;
	memset(&k, 0, sizeof k);
	k.mask = PW_PIDFD_INFO_PID | PW_PIDFD_INFO_CREDS | PW_PIDFD_INFO_CGROUPID;
	if (ioctl(pidfd, PW_PIDFD_GET_INFO, &k) < 0)
		return -errno;
	if (!(k.mask & PW_PIDFD_INFO_CREDS))
		return -EOPNOTSUPP;
	out->ppid = (pid_t)k.ppid;
	out->ruid = k.ruid;
	out->euid = k.euid;
	out->rgid = k.rgid;
	out->egid = k.egid;
	out->has_cgroupid = (k.mask & PW_PIDFD_INFO_CGROUPID) != 0;
	out->cgroupid = out->has_cgroupid ? k.cgroupid : 0;
	return 0;
}

#define PW_PIDFS_MAGIC 0x50494446 /* "PIDF" */

int proc_pidfd_ino(int pidfd, uint64_t *ino)
{
	static int pidfs = -1; /* not checked yet; then 1 or 0 */
	if (pidfs < 0) {
		struct statfs fs;
		if (fstatfs(pidfd, &fs) < 0)
			return -errno;
		pidfs = fs.f_type == PW_PIDFS_MAGIC;
	}
	if (!pidfs)
		return -ENOTSUP;
	struct stat sb;
	if (fstat(pidfd, &sb) < 0)
		return -errno;
	*ino = (uint64_t)sb.st_ino;
	return 0;
}

uint64_t proc_ticks_at(uint64_t ktime_ns)
{
	static long hz;
	if (!hz && (hz = sysconf(_SC_CLK_TCK)) <= 0)
		hz = 100;
	struct timespec boot, mono;
	clock_gettime(CLOCK_BOOTTIME, &boot);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	int64_t off = ((int64_t)boot.tv_sec - mono.tv_sec) * 1000000000LL + (boot.tv_nsec - mono.tv_nsec);
	uint64_t boot_ns = ktime_ns + (uint64_t)(off > 0 ? off : 0);
	return boot_ns / (1000000000u / (uint64_t)hz);
}

void proc_tty_name(unsigned tty_nr, char *buf, size_t cap)
{
	unsigned major = (tty_nr >> 8) & 0xfff;
	unsigned minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
	if (tty_nr == 0) {
		if (cap)
			buf[0] = 0;
	}
	else if (major >= 136 && major <= 143)
		snprintf(buf, cap, "pts/%u", minor + (major - 136) * 256);
	else if (major == 4 && minor < 64)
		snprintf(buf, cap, "tty%u", minor);
	else if (major == 4)
		snprintf(buf, cap, "ttyS%u", minor - 64);
	else if (major == 5 && minor == 1)
		snprintf(buf, cap, "console");
	else
		snprintf(buf, cap, "tty%u:%u", major, minor);
}

const char *proc_errno_name(int err)
{
	const char *name = strerrorname_np(err);
	return name ? name : "unreadable";
}
