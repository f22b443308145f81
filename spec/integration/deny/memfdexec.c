/* memfdexec.c: copy SRC into a memfd named NAME and fexecve() it, so the
 * exec's exe reads "/memfd:NAME (deleted)" and no filesystem fanotify can
 * mark is involved. For spec/integration/deny_spec.lua.
 *
 *   memfdexec NAME SRC [ARG...]      (exit 127 when it cannot exec) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: memfdexec NAME SRC [ARG...]\n");
		return 127;
	}
	int fd = memfd_create(argv[1], 0);
	int src = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || src < 0) {
		perror("memfdexec: memfd_create/open");
		return 127;
	}
	char buf[65536];
	ssize_t n;
	while ((n = read(src, buf, sizeof buf)) > 0)
		if (write(fd, buf, (size_t)n) != n) {
			perror("memfdexec: write");
			return 127;
		}
	close(src);
	argv[2] = argv[1]; /* argv[0] of the new program: NAME */
	fexecve(fd, argv + 2, environ);
	perror("memfdexec: fexecve");
	return 127;
}
