/* nsexec.c: the single-program namespace attack of
 * spec/integration/adversary_spec.lua.
 *
 *   nsexec RAW MARKERDIR RUNS MNTDIR
 *
 * RUNS times, one after the other, a child: unshare(CLONE_NEWUSER |
 * CLONE_NEWNS) (an unprivileged user may), map itself to root in it, mount
 * a fresh tmpfs on MNTDIR, write the bytes of RAW there as "pwadv-nsone"
 * and execve it at once with argv[1] = MARKERDIR/marker.N: no mark can be
 * on a filesystem that did not exist a moment before. A child exits
 * 100 + errno when the exec fails, 90 + step when a step before it does.
 * Prints: runs=R ran=N eperm=E killed=K other=O markers=M (ran: the victim
 * exited 0; markers: how many victims reached their marker). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *raw;
static size_t raw_len;

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void child(const char *mnt, const char *marker)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		_exit(91);
	snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
	if (write_file("/proc/self/setgroups", "deny") < 0 || write_file("/proc/self/uid_map", map) < 0)
		_exit(92);
	snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
	if (write_file("/proc/self/gid_map", map) < 0)
		_exit(93);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mount("pwadv", mnt, "tmpfs", 0, "size=1m") < 0)
		_exit(94);
	char path[4200];
	snprintf(path, sizeof path, "%s/pwadv-nsone", mnt);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	if (fd < 0 || write(fd, raw, raw_len) != (ssize_t)raw_len || close(fd) < 0)
		_exit(95);
	char *argv[] = {path, (char *)marker, NULL}, *envp[] = {NULL};
	execve(path, argv, envp);
	_exit(100 + errno);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	raw_len = (size_t)st.st_size;
	raw = malloc(raw_len);
	if (!raw || read(fd, raw, raw_len) != (ssize_t)raw_len) {
		perror(argv[1]);
		return 1;
	}
	close(fd);
	int runs = atoi(argv[3]), ran = 0, eperm = 0, killed = 0, other = 0, first_other = -1;
	for (int i = 0; i < runs; i++) {
		char marker[4200];
		snprintf(marker, sizeof marker, "%s/marker.%d", argv[2], i);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			child(argv[4], marker);
		int status;
		if (waitpid(pid, &status, 0) < 0) {
			perror("waitpid");
			return 1;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ran++;
		else if (WIFEXITED(status) && WEXITSTATUS(status) == 100 + EPERM)
			eperm++;
		else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			killed++;
		else if (other++ == 0)
			first_other = status;
	}
	int markers = 0;
	DIR *d = opendir(argv[2]);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			markers += strncmp(de->d_name, "marker.", 7) == 0;
		closedir(d);
	}
	printf("runs=%d ran=%d eperm=%d killed=%d other=%d first_other=%d markers=%d\n", runs, ran, eperm, killed, other,
	       first_other, markers);
	return 0;
}
