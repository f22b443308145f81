/* driver.c: exec storm for spec/integration/deny_spec.lua.
 *
 *   driver RUNS CONC HOGS MARKERDIR VICTIM
 *
 * Starts HOGS processes that spin (one per core keeps every core busy; they
 * die with the driver through PR_SET_PDEATHSIG), then forks RUNS children,
 * CONC at a time, each of which execve()s VICTIM with argv[1] =
 * MARKERDIR/marker.N and an empty environment. A child whose execve fails
 * exits with 100 + errno; the victim itself exits 0 after creating its
 * marker. Prints one line:
 *   runs=R eperm=E ran=O other=X first_other=S markers=M hogs=H max_ms=T total_ms=T
 * where first_other is the first unexpected wait status (or -1) and markers
 * counts the files named marker.* in MARKERDIR afterwards. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: driver RUNS CONC HOGS MARKERDIR VICTIM\n");
		return 2;
	}
	int runs = atoi(argv[1]), conc = atoi(argv[2]), nhogs = atoi(argv[3]);
	const char *dir = argv[4], *victim = argv[5];
	if (runs < 0 || conc < 1 || conc > 256 || nhogs < 0 || nhogs > 256)
		return 2;
	pid_t parent = getpid();
	pid_t hogs[256];
	for (int i = 0; i < nhogs; i++) {
		hogs[i] = fork();
		if (hogs[i] < 0) {
			perror("fork");
			return 1;
		}
		if (hogs[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(0);
			for (volatile unsigned long n = 0;; n++)
				;
		}
	}
	if (nhogs)
		usleep(50 * 1000); /* let them take the cores */

	struct {
		pid_t pid;
		double t0;
	} slot[256];
	int busy = 0, started = 0, eperm = 0, ran = 0, other = 0, first_other = -1;
	double max_ms = 0, t_start = now_ms();
	while (started < runs || busy > 0) {
		while (started < runs && busy < conc) {
			char marker[4096];
			snprintf(marker, sizeof marker, "%s/marker.%d", dir, started);
			double t0 = now_ms();
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				break;
			}
			if (pid == 0) {
				char *cargv[] = {(char *)victim, marker, NULL};
				char *cenv[] = {NULL};
				execve(victim, cargv, cenv);
				_exit(100 + errno);
			}
			slot[busy].pid = pid;
			slot[busy].t0 = t0;
			busy++;
			started++;
		}
		if (busy == 0)
			break;
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			perror("wait");
			break;
		}
		for (int i = 0; i < busy; i++) {
			if (slot[i].pid != pid)
				continue;
			double ms = now_ms() - slot[i].t0;
			if (ms > max_ms)
				max_ms = ms;
			slot[i] = slot[--busy];
			if (WIFEXITED(status) && WEXITSTATUS(status) == 100 + EPERM)
				eperm++;
			else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				ran++;
			else {
				other++;
				if (first_other < 0)
					first_other = status;
			}
			break;
		}
	}
	double total_ms = now_ms() - t_start;
	for (int i = 0; i < nhogs; i++)
		kill(hogs[i], SIGKILL);
	for (int i = 0; i < nhogs; i++)
		waitpid(hogs[i], NULL, 0);

	int markers = 0;
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			markers += strncmp(de->d_name, "marker.", 7) == 0;
		closedir(d);
	}
	printf("runs=%d eperm=%d ran=%d other=%d first_other=%d markers=%d hogs=%d max_ms=%.1f total_ms=%.1f\n",
	       started, eperm, ran, other, first_other, markers, nhogs, max_ms, total_ms);
	return 0;
}
