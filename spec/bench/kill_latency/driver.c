/* driver: exec the victim N times, one after the other, and record what
 * happened to each.
 *
 *   driver run VICTIM MARKDIR N OUT [TIMEOUT_MS]
 *       For i in 1..N: fork; the child execve()s VICTIM MARKDIR/m.i; the
 *       parent waits for it (pidfd + poll) at most TIMEOUT_MS (default 300),
 *       then SIGTERMs it (so a victim nobody killed costs 0.3 s, not 1 s).
 *       OUT gets one line per victim: "pid killed marker timeout", where
 *       killed = it died of SIGKILL, marker = MARKDIR/m.i exists (the
 *       victim reached main), timeout = the driver had to SIGTERM it.
 *       Prints "total=N killed=K markers=M timeouts=T" on stdout. Stops
 *       early (aborted=1) when none of the first 20 victims was killed.
 *
 *   driver ready VICTIM MARKDIR SECONDS
 *       Exec the victim until one dies of SIGKILL (the listener is up and
 *       killing) or SECONDS pass; exit 0 if it did, 1 if not. These
 *       warm-up victims are not part of any measurement. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "victim_wait.h"

extern char **environ;

static int run_one(const char *victim, const char *marker, int timeout_ms, struct outcome *o)
{
	unlink(marker);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char *av[] = {(char *)victim, (char *)marker, NULL};
		execve(victim, av, environ);
		_exit(127);
	}
	victim_wait(pid, marker, timeout_ms, o);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "run") == 0) {
		const char *victim = argv[2], *dir = argv[3], *out = argv[5];
		int n = atoi(argv[4]);
		int timeout_ms = argc > 6 ? atoi(argv[6]) : 300;
		FILE *f = fopen(out, "w");
		if (!f) {
			perror(out);
			return 2;
		}
		int killed = 0, markers = 0, timeouts = 0, done = 0, aborted = 0;
		char marker[4096];
		double t0 = now_s();
		for (int i = 1; i <= n; i++) {
			struct outcome o;
			snprintf(marker, sizeof marker, "%s/m.%d", dir, i);
			if (run_one(victim, marker, timeout_ms, &o) < 0) {
				perror("fork");
				return 2;
			}
			done++;
			killed += o.killed;
			markers += o.marker;
			timeouts += o.timeout;
			fprintf(f, "%d %d %d %d\n", (int)o.pid, o.killed, o.marker, o.timeout);
			if (i == 20 && killed == 0) {
				aborted = 1;
				break;
			}
		}
		fclose(f);
		printf("total=%d killed=%d markers=%d timeouts=%d aborted=%d seconds=%.2f\n", done, killed,
		       markers, timeouts, aborted, now_s() - t0);
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "ready") == 0) {
		char marker[4096];
		snprintf(marker, sizeof marker, "%s/ready", argv[3]);
		double end = now_s() + atof(argv[4]);
		while (now_s() < end) {
			struct outcome o;
			if (run_one(argv[2], marker, 300, &o) < 0)
				return 2;
			if (o.killed)
				return 0;
			usleep(20000);
		}
		return 1;
	}
	fprintf(stderr, "usage: driver run VICTIM MARKDIR N OUT [TIMEOUT_MS]\n"
			"       driver ready VICTIM MARKDIR SECONDS\n");
	return 2;
}
