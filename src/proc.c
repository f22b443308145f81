/* proc.c: bounded readers of /proc/PID files (exe, cmdline, status, stat).
 * Each read is one open + at most cap bytes: nothing here can block the loop
 * for long or grow with what a process chooses to put in its argv. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	char buf[2048];
	bool trunc;
	ssize_t n = proc_read_file(pid, "status", buf, sizeof buf - 1, &trunc);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
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
		}
		line = nl ? nl + 1 : NULL;
	}
	return found == 7 ? 0 : -EINVAL;
}

int proc_read_start_time(pid_t pid, uint64_t *ticks)
{
	char buf[1024];
	bool trunc;
	ssize_t n = proc_read_file(pid, "stat", buf, sizeof buf - 1, &trunc);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	p++;
	/* field 3 (state) is the first after ')'; starttime is field 22. */
	for (int field = 2; field < 21; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EINVAL;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p + 1, &end, 10);
	if (errno || end == p + 1)
		return -EINVAL;
	*ticks = v;
	return 0;
}
