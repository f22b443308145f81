/* deep.c: a victim under a very long path, for
 * spec/integration/adversary_spec.lua.
 *
 *   deep DEPTH COMPLEN SRC NAME HOW MARKER [NARGS ARGLEN]
 *
 * From the working directory, creates (or enters) DEPTH nested directories
 * whose names are COMPLEN bytes long, one mkdir + chdir at a time (a path
 * longer than PATH_MAX can be built no other way), copies SRC there as NAME
 * (mode 0755) and runs it in a child with argv {NAME, MARKER, and NARGS
 * arguments of ARGLEN bytes}, HOW:
 *   rel    execve("./NAME")
 *   fexec  execveat(fd of NAME, "", AT_EMPTY_PATH): no path at all
 *   abs    execve of the absolute path (only when it fits in PATH_MAX)
 * The child exits 100 + errno when the exec fails. Waits up to 20 s.
 * Prints: path_len=L pid=P exit=X signal=S (exit -1 when killed, signal 0
 * when not, exit -2 when it did not end in time). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int copy_file(int in, const char *name)
{
	int out = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0)
		return -1;
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			close(out);
			return -1;
		}
	if (fchmod(out, 0755) < 0 || close(out) < 0 || n < 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 7 && argc != 9) {
		fprintf(stderr, "usage: deep DEPTH COMPLEN SRC NAME HOW MARKER [NARGS ARGLEN]\n");
		return 2;
	}
	int depth = atoi(argv[1]), complen = atoi(argv[2]);
	const char *name = argv[4], *how = argv[5], *marker = argv[6];
	int nargs = argc == 9 ? atoi(argv[7]) : 0, arglen = argc == 9 ? atoi(argv[8]) : 0;
	if (depth < 0 || complen < 1 || complen > 250 || nargs < 0 || nargs > 4000 || arglen < 0 || arglen > 100000)
		return 2;
	int src = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		perror(argv[3]);
		return 1;
	}
	char base[PATH_MAX];
	if (!getcwd(base, sizeof base)) {
		perror("getcwd");
		return 1;
	}
	size_t path_len = strlen(base);
	char comp[256];
	for (int i = 0; i < depth; i++) {
		int n = snprintf(comp, sizeof comp, "d%02d", i);
		memset(comp + n, 'x', (size_t)(complen - n));
		comp[complen] = 0;
		if ((mkdir(comp, 0755) < 0 && errno != EEXIST) || chdir(comp) < 0) {
			perror("mkdir/chdir");
			return 1;
		}
		path_len += 1 + (size_t)complen;
	}
	path_len += 1 + strlen(name);
	if (copy_file(src, name) < 0) {
		perror(name);
		return 1;
	}
	char **cargv = calloc((size_t)nargs + 3, sizeof *cargv);
	cargv[0] = (char *)name;
	cargv[1] = (char *)marker;
	for (int i = 0; i < nargs; i++) {
		cargv[2 + i] = malloc((size_t)arglen + 1);
		memset(cargv[2 + i], 'a' + i % 26, (size_t)arglen);
		cargv[2 + i][arglen] = 0;
	}
	char *envp[] = {NULL};
	char rel[300];
	snprintf(rel, sizeof rel, "./%s", name);
	char absolute[PATH_MAX];
	if (strcmp(how, "abs") == 0 && (!getcwd(absolute, sizeof absolute) || strlen(absolute) + strlen(name) + 2 >
											 sizeof absolute)) {
		fprintf(stderr, "deep: the path does not fit in PATH_MAX\n");
		return 2;
	}
	if (strcmp(how, "abs") == 0)
		strcat(strcat(absolute, "/"), name);
	int fd = open(name, O_RDONLY | O_CLOEXEC);
	pid_t pid = fork();
	if (pid == 0) {
		if (strcmp(how, "rel") == 0)
			execve(rel, cargv, envp);
		else if (strcmp(how, "fexec") == 0)
			syscall(SYS_execveat, fd, "", cargv, envp, AT_EMPTY_PATH);
		else if (strcmp(how, "abs") == 0)
			execve(absolute, cargv, envp);
		else
			errno = EINVAL;
		_exit(100 + errno);
	}
	int status = 0, done = 0;
	for (int i = 0; i < 2000 && !done; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			done = 1;
		else
			usleep(10000);
	}
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	printf("path_len=%zu pid=%d exit=%d signal=%d\n", path_len, (int)pid,
	       !done ? -2 : WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return 0;
}
