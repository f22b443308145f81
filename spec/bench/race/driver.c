/* race driver: exec victims one after the other and record, for each exec,
 * whether it failed (deny: EPERM), was killed, and reached its marker.
 *
 *   race_driver run N OUT MARKDIR TIMEOUT_MS VICTIM...
 *       N rounds; in each, every VICTIM in turn (so drifting noise lands on
 *       all of them): fork; the child execve()s VICTIM MARKDIR/m (argv[1] =
 *       the marker the victim creates as soon as it runs); the parent learns
 *       through a close-on-exec pipe whether execve failed (and its errno),
 *       then waits for the child (pidfd + poll) at most TIMEOUT_MS and
 *       SIGTERMs it if it is still alive. OUT gets one line per exec:
 *       "victim pid killed marker timeout errno", where victim is the
 *       VICTIM's index (0-based), killed = died of SIGKILL, marker = the
 *       marker file exists (the victim ran), timeout = it had to be
 *       SIGTERMed, errno = execve's errno (0: the exec succeeded).
 *
 *   race_driver ready kill|deny VICTIM MARKDIR SECONDS
 *       Exec VICTIM until one dies of SIGKILL (kill) or its execve fails
 *       with EPERM (deny), or SECONDS pass; exit 0 if so, 1 if not. These
 *       warm-up execs are not part of any measurement.
 * It ends by itself after 15 minutes (SIGALRM), should its script die. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "victim_wait.h"

extern char **environ;

static int run_one(const char *victim, const char *marker, int timeout_ms, struct outcome *o)
{
	unlink(marker);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char *av[] = {(char *)victim, (char *)marker, NULL};
		close(p[0]);
		execve(victim, av, environ);
		int e = errno;
		if (write(p[1], &e, sizeof e) < 0)
			_exit(126);
		_exit(127);
	}
	close(p[1]);
	o->err = 0;
	int e;
	ssize_t n;
	while ((n = read(p[0], &e, sizeof e)) < 0 && errno == EINTR)
		;
	close(p[0]);
	if (n == (ssize_t)sizeof e)
		o->err = e;
	victim_wait(pid, marker, timeout_ms, o);
	return 0;
}

int main(int argc, char **argv)
{
	alarm(900);
	char marker[4096];
	if (argc >= 7 && strcmp(argv[1], "run") == 0) {
		int n = atoi(argv[2]);
		const char *out = argv[3], *dir = argv[4];
		int timeout_ms = atoi(argv[5]);
		char **victims = argv + 6;
		int nv = argc - 6;
		FILE *f = fopen(out, "w");
		if (!f) {
			perror(out);
			return 2;
		}
		snprintf(marker, sizeof marker, "%s/m", dir);
		double t0 = now_s();
		for (int i = 0; i < n; i++)
			for (int v = 0; v < nv; v++) {
				struct outcome o;
				if (run_one(victims[v], marker, timeout_ms, &o) < 0) {
					perror("fork");
					return 2;
				}
				fprintf(f, "%d %d %d %d %d %d\n", v, (int)o.pid, o.killed, o.marker, o.timeout, o.err);
			}
		fclose(f);
		printf("rounds=%d victims=%d seconds=%.2f\n", n, nv, now_s() - t0);
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "ready") == 0) {
		int deny = strcmp(argv[2], "deny") == 0;
		snprintf(marker, sizeof marker, "%s/ready", argv[4]);
		double end = now_s() + atof(argv[5]);
		while (now_s() < end) {
			struct outcome o;
			if (run_one(argv[3], marker, 300, &o) < 0)
				return 2;
			if (deny ? o.err == EPERM : o.killed)
				return 0;
			usleep(20000);
		}
		return 1;
	}
	fprintf(stderr, "usage: race_driver run N OUT MARKDIR TIMEOUT_MS VICTIM...\n"
			"       race_driver ready kill|deny VICTIM MARKDIR SECONDS\n");
	return 2;
}
