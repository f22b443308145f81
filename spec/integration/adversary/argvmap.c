/* argvmap.c: a process whose argv strings sit on a FUSE file, for
 * spec/integration/adversary_spec.lua.
 *
 *   argvmap FILE READY LIFETIME PADDING
 *
 * PADDING is a long argument (several pages): the program maps FILE
 * (MAP_PRIVATE | MAP_FIXED, read-only) over a whole page inside it, so
 * reading this process's command line from another process reads FILE.
 * Then it writes READY (its pid) and sleeps LIFETIME seconds. It never
 * touches the mapped page itself, so the page is not in memory until a
 * reader faults it in. Exits 3 when the mapping cannot be made. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: argvmap FILE READY LIFETIME PADDING\n");
		return 2;
	}
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)argv[4] + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
	size_t len = strlen(argv[4]);
	if (start + (uintptr_t)pg > (uintptr_t)argv[4] + len) {
		fprintf(stderr, "argvmap: PADDING must span a whole page\n");
		return 2;
	}
	const char *ready = argv[2];
	unsigned lifetime = (unsigned)atoi(argv[3]);
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 3;
	}
	void *p = mmap((void *)start, (size_t)pg, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 3;
	}
	close(fd);
	FILE *f = fopen(ready, "w");
	if (!f) {
		perror(ready);
		return 3;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	sleep(lifetime);
	return 0;
}
