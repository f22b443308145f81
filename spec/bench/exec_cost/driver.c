/* exec_cost driver: time sequential fork + execve + waitpid.
 *
 *   exec_cost N OUT [PATH [WARMUP]]
 *       WARMUP (default 20) untimed rounds, then N timed ones, one after the
 *       other: fork; the child execve()s PATH (default /bin/true) with no
 *       arguments; the parent waitpid()s it. Each round is timed with
 *       CLOCK_MONOTONIC from just before fork to just after waitpid returns.
 *       OUT gets one line per timed round: its duration in ns. Prints
 *       "n=N failed=F seconds=S" on stdout; exit 1 if a child did not exit 0
 *       (the exec failed or was denied).
 * It ends by itself after 10 minutes (SIGALRM), should its script die. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One round; returns its duration in ns, or -1 if the child failed. */
static long long one(const char *path)
{
	char *av[] = {(char *)path, NULL};
	long long t0 = now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		execve(path, av, environ);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			perror("waitpid");
			exit(2);
		}
	long long t1 = now_ns();
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t1 - t0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: exec_cost N OUT [PATH [WARMUP]]\n");
		return 2;
	}
	alarm(600);
	int n = atoi(argv[1]);
	const char *path = argc > 3 ? argv[3] : "/bin/true";
	int warmup = argc > 4 ? atoi(argv[4]) : 20;
	long long *d = malloc(sizeof *d * (n > 0 ? n : 1));
	if (!d)
		return 2;
	int failed = 0;
	for (int i = 0; i < warmup; i++)
		if (one(path) < 0)
			failed++;
	long long t0 = now_ns();
	for (int i = 0; i < n; i++)
		if ((d[i] = one(path)) < 0)
			failed++;
	double secs = (now_ns() - t0) / 1e9;
	FILE *f = fopen(argv[2], "w");
	if (!f) {
		perror(argv[2]);
		return 2;
	}
	for (int i = 0; i < n; i++)
		if (d[i] >= 0)
			fprintf(f, "%lld\n", d[i]);
	fclose(f);
	printf("n=%d failed=%d seconds=%.2f\n", n, failed, secs);
	return failed ? 1 : 0;
}
