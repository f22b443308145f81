/* fusedrv.c: the hung-FUSE attack of spec/integration/adversary_spec.lua,
 * driven from one process so that nothing it needs is an exec made while
 * execs may be held (the spec's own shell and tools would be).
 *
 *   fusedrv CTLDIR MODE VICTIM MARKER ATTACKER_UID DAEMON_PID DAEMON_OUT STOPSIG SERVER_PID
 *
 * 1. Writes MODE ("getattr", "open", "read") to CTLDIR/mode: the FUSE server
 *    (fuseserv.c) stops answering that operation for everyone but
 *    ATTACKER_UID.
 * 2. Forks the attacker: as ATTACKER_UID, execve(VICTIM, {VICTIM, MARKER})
 *    (VICTIM on the FUSE mount). Not waited for yet.
 * 3. Waits up to 1.5 s for the server to log a request it holds.
 * 4. Ten times: fork + execve("/bin/true"), each given 1 s; stops at the
 *    first one not done in time (it is left held).
 * 5. Whether the daemon logged the last /bin/true that finished (a line with
 *    "pid":N in DAEMON_OUT) within 1 s: its loop still handles events.
 * 6. Sends STOPSIG (a number) to DAEMON_PID, then one more /bin/true,
 *    given 1 s: stopping the daemon must release execs not on that mount.
 * 7. Releases everything: mode "none", waits up to 4 s for every child,
 *    then SIGKILLs the server (the kernel aborts the connection) and waits
 *    up to 4 s more.
 * Prints one line of key=value. A SIGALRM after 25 s does step 7's kill
 * and exits 3, so a stuck run still releases what it held. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char mode_path[1100];
static pid_t server;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Async-signal-safe: used from the alarm handler too. */
static void set_mode(const char *mode)
{
	int fd = open(mode_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, mode, strlen(mode)) < 0) {
		/* nothing to do: the server's own deadline ends the hang */
	}
	close(fd);
}

static void on_alarm(int sig)
{
	set_mode("none\n");
	if (server > 0)
		kill(server, SIGKILL);
	_exit(3);
}

/* fork + execve("/bin/true"); 0 and *ms when it ended within limit_ms,
 * -1 when not (the child is left running, its pid in *pid). */
static int run_true(double limit_ms, double *ms, pid_t *pid)
{
	double t0 = now_ms();
	*pid = fork();
	if (*pid < 0)
		return -1;
	if (*pid == 0) {
		char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
		execve(argv[0], argv, envp);
		_exit(127);
	}
	for (;;) {
		int status;
		pid_t r = waitpid(*pid, &status, WNOHANG);
		*ms = now_ms() - t0;
		if (r == *pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
		if (*ms > limit_ms)
			return -1;
		usleep(2000);
	}
}

static int file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	static char buf[1 << 22];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

static int file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int)st.st_size : 0;
}

/* Was pid logged (a "pid":N line) within limit_ms? ms: when. */
static int logged(const char *out, pid_t pid, double limit_ms, double *ms)
{
	char a[32], b[32];
	snprintf(a, sizeof a, "\"pid\":%d,", (int)pid);
	snprintf(b, sizeof b, "\"pid\":%d}", (int)pid);
	double t0 = now_ms();
	for (;;) {
		*ms = now_ms() - t0;
		if (file_has(out, a) || file_has(out, b))
			return 1;
		if (*ms > limit_ms)
			return 0;
		usleep(10000);
	}
}

static pid_t att;
static int att_status = -1;

/* Reap children for up to limit_ms; how many are still running. */
static int reap(int nchildren, double limit_ms)
{
	double t0 = now_ms();
	int left = nchildren;
	while (left > 0 && now_ms() - t0 < limit_ms) {
		int status;
		pid_t r = waitpid(-1, &status, WNOHANG);
		if (r == att)
			att_status = status;
		if (r > 0)
			left--;
		else if (r < 0 && errno == ECHILD)
			return 0;
		else
			usleep(10000);
	}
	return left;
}

int main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: fusedrv CTLDIR MODE VICTIM MARKER ATTACKER_UID DAEMON_PID DAEMON_OUT STOPSIG "
				"SERVER_PID\n");
		return 2;
	}
	const char *ctldir = argv[1], *mode = argv[2], *victim = argv[3], *marker = argv[4], *out = argv[7];
	uid_t attacker = (uid_t)strtoul(argv[5], NULL, 10);
	pid_t daemon = (pid_t)atoi(argv[6]);
	int stopsig = atoi(argv[8]);
	server = (pid_t)atoi(argv[9]);
	snprintf(mode_path, sizeof mode_path, "%s/mode", ctldir);
	char hung_path[1100];
	snprintf(hung_path, sizeof hung_path, "%s/hung", ctldir);
	signal(SIGALRM, on_alarm);
	alarm(25);
	int children = 0;

	char m[64];
	snprintf(m, sizeof m, "%s\n", mode);
	set_mode(m);
	att = fork();
	if (att == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(attacker, attacker, attacker) < 0 ||
		    setresuid(attacker, attacker, attacker) < 0)
			_exit(120);
		char *cargv[] = {(char *)victim, (char *)marker, NULL}, *envp[] = {NULL};
		execve(victim, cargv, envp);
		_exit(100 + errno);
	}
	children += att > 0;

	double t0 = now_ms();
	while (file_size(hung_path) == 0 && now_ms() - t0 < 1500)
		usleep(10000);
	int held = file_size(hung_path) > 0;
	double held_ms = now_ms() - t0;

	int ok = 0;
	double max_ms = 0, ms;
	pid_t pid, last_ok = 0;
	for (int i = 0; i < 10; i++) {
		int r = run_true(1000, &ms, &pid);
		if (ms > max_ms)
			max_ms = ms;
		if (r < 0) {
			children++;
			break;
		}
		ok++;
		last_ok = pid;
	}
	double log_ms = 0;
	int seen = last_ok ? logged(out, last_ok, 1000, &log_ms) : 0;

	double t_stop = now_ms();
	int sent = kill(daemon, stopsig) == 0;
	double after_ms;
	int after_ok = run_true(1000, &after_ms, &pid) == 0;
	if (!after_ok)
		children++;
	after_ms = now_ms() - t_stop;

	set_mode("none\n");
	int left = reap(children, 4000);
	int killed_server = 0;
	if (left > 0 && server > 0) {
		kill(server, SIGKILL);
		killed_server = 1;
		left = reap(left, 4000);
	}
	printf("held=%d held_ms=%.0f execs_ok=%d max_ms=%.1f logged=%d log_ms=%.0f stop_sent=%d after_stop_ok=%d "
	       "after_stop_ms=%.1f killed_server=%d left=%d attacker=%s\n",
	       held, held_ms, ok, max_ms, seen, log_ms, sent, after_ok, after_ms, killed_server, left,
	       att_status < 0                                         ? "held"
	       : WIFEXITED(att_status) && WEXITSTATUS(att_status) == 0 ? "ran"
	       : WIFEXITED(att_status) && WEXITSTATUS(att_status) == 100 + EPERM ? "eperm"
									  : "other");
	return 0;
}
