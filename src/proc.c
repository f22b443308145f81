/* proc.c: bounded readers of /proc/PID files (exe, cmdline, status, stat).
 * Each read is one open + at most cap bytes: nothing here can block the loop
 * for long or grow with what a process chooses to put in its argv. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int proc_path(char *buf, size_t cap, pid_t pid, const char *name)
{
	int n = snprintf(buf, cap, "/proc/%d/%s", (int)pid, name);
	return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
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
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
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

static int parse_ids(const char *line, unsigned *real, unsigned *eff)
{
	return sscanf(line, "%u %u", real, eff) == 2 ? 0 : -EINVAL;
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
	for (char *line = buf; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		unsigned a, b;
		if (strncmp(line, "PPid:", 5) == 0) {
			st->ppid = (pid_t)strtol(line + 5, NULL, 10);
			found |= 1;
		} else if (strncmp(line, "Uid:", 4) == 0 && parse_ids(line + 4, &a, &b) == 0) {
			st->ruid = a;
			st->euid = b;
			found |= 2;
		} else if (strncmp(line, "Gid:", 4) == 0 && parse_ids(line + 4, &a, &b) == 0) {
			st->rgid = a;
			st->egid = b;
			found |= 4;
		} else if (strncmp(line, "TracerPid:", 10) == 0) {
			st->tracer_pid = (pid_t)strtol(line + 10, NULL, 10);
		} else if (strncmp(line, "NSpid:", 6) == 0) {
			char *last = strrchr(line, '\t');
			char *sp = strrchr(line, ' ');
			if (sp > last)
				last = sp;
			st->ns_pid = (pid_t)strtol(last ? last + 1 : line + 6, NULL, 10);
		} else if (strncmp(line, "CapEff:", 7) == 0) {
			st->cap_eff = strtoull(line + 7, NULL, 16);
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
	if (!open_paren || !p || p < open_paren)
		return -EINVAL;
	size_t clen = (size_t)(p - open_paren - 1);
	if (clen > sizeof st->comm - 1)
		clen = sizeof st->comm - 1;
	memcpy(st->comm, open_paren + 1, clen);
	st->comm[clen] = 0;
	/* after ')': 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, ... 22 starttime */
	unsigned long long f[23] = {0};
	char *cur = p + 2;
	st->state = *cur;
	for (int field = 3; field <= 22; field++) {
		if (*cur == 0)
			return -EINVAL;
		if (field > 3) {
			char *end;
			errno = 0;
			long long v = strtoll(cur, &end, 10);
			if (errno || end == cur)
				return -EINVAL;
			f[field] = (unsigned long long)v;
			cur = end;
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

int proc_read_cgroup(pid_t pid, char *buf, size_t cap)
{
	char raw[2048];
	bool trunc;
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
	if (len > cap - 1)
		len = cap - 1;
	memcpy(buf, path, len);
	buf[len] = 0;
	return (int)len;
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
	if (tty_nr == 0)
		snprintf(buf, cap, "%s", "");
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
