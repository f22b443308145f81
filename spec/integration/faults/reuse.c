/* reuse.c: recycle a pid on purpose, for faults_spec.lua and
 * actions_spec.lua (needs root: it writes /proc/sys/kernel/ns_last_pid).
 *
 *   reuse PID FIRST [ARG...] -- SECOND [ARG...]
 *
 * Starts FIRST as process PID, waits for it to end and reaps it, then
 * starts SECOND as the same PID and waits for that one too. A program of
 * "-" or "+" means a forked child that runs no program: "-" exits 0 at
 * once, "+" pauses until killed. Each child is made by clone3()
 * with set_tid = PID (no race with the machine's other forks); where that
 * is refused, by setting ns_last_pid to PID-1 and forking, and when another
 * process took the pid in between, that child exits at once and it tries
 * again (up to 20000 times).
 * Prints, one line each, flushed as they happen:
 *   first=PID             (FIRST runs)
 *   first_status=S        (raw wait status of FIRST)
 *   second=PID tries=N    (SECOND runs; "second=none" if the pid could not be had)
 *   second_status=S
 * SECOND is not killed here: whoever runs this ends it (by pid). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

#define TRIES 20000

static int set_last_pid(pid_t pid)
{
	int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%d", (int)pid - 1);
	int r = write(fd, buf, (size_t)n) == n ? 0 : -1;
	close(fd);
	return r;
}

/* In the child: run argv, or exit ("-") or pause ("+"). */
static void child(char **argv)
{
	if (strcmp(argv[0], "-") == 0)
		_exit(0);
	if (strcmp(argv[0], "+") == 0)
		for (;;)
			pause();
	execv(argv[0], argv);
	_exit(127);
}

/* A child with pid `want` through clone3(set_tid): its pid, 0 in the
 * child, -1 (errno set) when refused. */
static pid_t clone_as(pid_t want)
{
#ifdef SYS_clone3
	pid_t tid = want;
	struct clone_args args;
	memset(&args, 0, sizeof args);
	args.exit_signal = SIGCHLD;
	args.set_tid = (unsigned long long)(unsigned long)&tid;
	args.set_tid_size = 1;
	return (pid_t)syscall(SYS_clone3, &args, sizeof args);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Fork a child that gets pid `want` and runs argv (or exits, or pauses).
 * Returns the child's pid, or -1; *tries counts the forks. */
static pid_t start_as(pid_t want, char **argv, int *tries)
{
	*tries = 1;
	pid_t pid = clone_as(want);
	if (pid == 0)
		child(argv);
	if (pid == want)
		return pid;
	if (pid < 0 && errno == EEXIST)
		return -1; /* the pid is taken */
	for (*tries = 1; *tries <= TRIES; (*tries)++) {
		if (set_last_pid(want) < 0) {
			perror("ns_last_pid");
			return -1;
		}
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return -1;
		}
		if (pid == 0) {
			if (getpid() != want)
				_exit(0);
			child(argv);
		}
		if (pid == want)
			return pid;
		waitpid(pid, NULL, 0);
	}
	*tries = TRIES;
	return -1;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: reuse PID FIRST [ARG...] -- SECOND [ARG...]\n");
		return 2;
	}
	pid_t want = (pid_t)atoi(argv[1]);
	char **first = argv + 2, **second = NULL;
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			argv[i] = NULL;
			second = argv + i + 1;
			break;
		}
	if (want <= 1 || !second || !second[0]) {
		fprintf(stderr, "usage: reuse PID FIRST [ARG...] -- SECOND [ARG...]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int tries, status;
	pid_t a = start_as(want, first, &tries);
	if (a < 0) {
		printf("first=none tries=%d\n", tries);
		return 1;
	}
	printf("first=%d tries=%d\n", (int)a, tries);
	while (waitpid(a, &status, 0) < 0 && errno == EINTR)
		;
	printf("first_status=%d\n", status);
	pid_t b = start_as(want, second, &tries);
	if (b < 0) {
		printf("second=none tries=%d\n", tries);
		return 1;
	}
	printf("second=%d tries=%d\n", (int)b, tries);
	while (waitpid(b, &status, 0) < 0 && errno == EINTR)
		;
	printf("second_status=%d\n", status);
	return 0;
}
