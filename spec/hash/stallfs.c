/* stallfs.c: a FUSE filesystem (libfuse3) for spec/integration/hash_spec.lua
 * with one file, /prog, a copy of the file named on the command line
 * (mode 0755: it can be executed). After SIGUSR1 the server stops
 * answering: every later request (OPEN, GETATTR, READ ...) waits forever in
 * the single-threaded request loop, as a hostile server would.
 *
 *   stallfs SOURCE MOUNTPOINT     (foreground, single-threaded)
 */
#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data;
static size_t size;
static volatile sig_atomic_t stalled;

static void stall(void)
{
	while (stalled)
		pause();
}

static void on_usr1(int sig)
{
	stalled = 1;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	stall();
	memset(st, 0, sizeof *st);
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (strcmp(path, "/prog"))
		return -ENOENT;
	st->st_mode = S_IFREG | 0755;
	st->st_nlink = 1;
	st->st_size = (off_t)size;
	st->st_mtime = st->st_ctime = 1000000000; /* settled: old enough to be cached */
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	stall();
	if (strcmp(path, "/prog"))
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	return 0;
}

static int fs_read(const char *path, char *buf, size_t n, off_t off, struct fuse_file_info *fi)
{
	stall();
	if (off < 0 || (size_t)off >= size)
		return 0;
	if (n > size - (size_t)off)
		n = size - (size_t)off;
	memcpy(buf, data + off, n);
	return (int)n;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	stall();
	if (strcmp(path, "/"))
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "prog", NULL, 0, 0);
	return 0;
}

static const struct fuse_operations ops = {
	.getattr = fs_getattr,
	.open = fs_open,
	.read = fs_read,
	.readdir = fs_readdir,
};

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: stallfs SOURCE MOUNTPOINT\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f || fseek(f, 0, SEEK_END) < 0)
		return perror(argv[1]), 2;
	long n = ftell(f);
	if (n <= 0 || fseek(f, 0, SEEK_SET) < 0 || !(data = malloc((size_t)n)) ||
	    fread(data, 1, (size_t)n, f) != (size_t)n)
		return perror(argv[1]), 2;
	fclose(f);
	size = (size_t)n;
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return perror("sigaction"), 2;
	char *fargs[] = {argv[0], "-f", "-s", "-o", "default_permissions", argv[2], NULL};
	return fuse_main(6, fargs, &ops, NULL);
}
