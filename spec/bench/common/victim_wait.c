/* victim_wait.c: waiting for, reaping and judging one victim exec, for the
 * kill_latency and race drivers (see victim_wait.h). */
#define _GNU_SOURCE
#include "victim_wait.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

void victim_wait(pid_t pid, const char *marker, int timeout_ms, struct outcome *o)
{
	o->pid = pid;
	o->timeout = 0;
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0) {
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		int r;
		while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		if (r == 0) {
			o->timeout = 1;
			kill(pid, SIGTERM);
		}
		close(pfd);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	o->killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
	o->marker = access(marker, F_OK) == 0;
	unlink(marker);
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
