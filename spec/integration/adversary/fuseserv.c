/* fuseserv.c: the attacker's FUSE server of spec/integration/adversary_spec.lua.
 *
 *   fuseserv CTLDIR SRC ATTACKER_UID MAX_HANG LIFETIME MOUNTPOINT SERVER_UID
 *
 * Started as root, it mounts MOUNTPOINT as fusermount3 would for user
 * SERVER_UID (nosuid, nodev, user_id=SERVER_UID, allow_other), then drops
 * to SERVER_UID (and its gid) and serves the mount from there: the server
 * is that user's process, the way an ordinary user's mount is (without a
 * user_allow_other edit of /etc/fuse.conf or a world-usable /dev/fuse).
 * Serves a read-only filesystem with two files: /victim (mode 0755, the
 * bytes of SRC, read at start) and /page (mode 0644, 64 KiB of data, for
 * mapping over a process's argv). CTLDIR/mode names the operation the
 * server stops answering: "getattr", "open", "read" or "none"; a request of
 * that kind from anyone but ATTACKER_UID then waits until the mode changes
 * (or MAX_HANG seconds, so nothing waits forever), and each such request is
 * logged as one line of CTLDIR/hung. The attacker's own requests are always
 * answered. CTLDIR/ready is written once the kernel has sent INIT. The
 * process exits by itself after LIFETIME seconds (SIGALRM): its /dev/fuse
 * closes and the kernel aborts the connection, releasing every waiter.
 * No attribute, entry or page cache is kept, so every stat, open and read
 * of another process reaches this server.
 * Build: cc $(pkg-config --cflags fuse3) fuseserv.c $(pkg-config --libs fuse3) */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE_SERVED (64 * 1024)

static char ctldir[1024];
static char *victim;
static size_t victim_len;
static char page[PAGE_SIZE_SERVED];
static uid_t attacker;
static double max_hang;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ctl_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", ctldir, name);
}

/* The current mode: the first word of CTLDIR/mode ("none" if unreadable). */
static void read_mode(char *mode, size_t len)
{
	char path[1100];
	ctl_path(path, sizeof path, "mode");
	snprintf(mode, len, "none");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, mode, len - 1);
	close(fd);
	if (n <= 0) {
		snprintf(mode, len, "none");
		return;
	}
	mode[n] = 0;
	mode[strcspn(mode, " \n")] = 0;
}

static void log_hung(const char *op, const struct fuse_context *c)
{
	char path[1100], line[128];
	ctl_path(path, sizeof path, "hung");
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	int n = snprintf(line, sizeof line, "%s pid=%d uid=%u\n", op, (int)c->pid, (unsigned)c->uid);
	if (write(fd, line, (size_t)n) < 0)
		perror("fuseserv: hung log");
	close(fd);
}

/* Stop answering op for everyone but the attacker, while the mode says so. */
static void maybe_hang(const char *op)
{
	const struct fuse_context *c = fuse_get_context();
	char mode[32];
	read_mode(mode, sizeof mode);
	if (c->uid == attacker || strcmp(mode, op) != 0)
		return;
	log_hung(op, c);
	double until = now() + max_hang;
	while (now() < until) {
		usleep(20 * 1000);
		read_mode(mode, sizeof mode);
		if (strcmp(mode, op) != 0)
			return;
	}
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = 0;
	cfg->direct_io = 0;
	char path[1100];
	ctl_path(path, sizeof path, "ready");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, "ready\n", 6) < 0)
			perror("fuseserv: ready");
		close(fd);
	}
	return NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	maybe_hang("getattr");
	memset(st, 0, sizeof *st);
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtime = st->st_ctime = st->st_atime = 1700000000;
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else if (strcmp(path, "/victim") == 0) {
		st->st_mode = S_IFREG | 0755;
		st->st_nlink = 1;
		st->st_size = (off_t)victim_len;
	} else if (strcmp(path, "/page") == 0) {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = PAGE_SIZE_SERVED;
	} else {
		return -ENOENT;
	}
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "victim", NULL, 0, 0);
	fill(buf, "page", NULL, 0, 0);
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	maybe_hang("open");
	if (strcmp(path, "/victim") != 0 && strcmp(path, "/page") != 0)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	fi->keep_cache = 0;
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	maybe_hang("read");
	const char *data;
	size_t len;
	if (strcmp(path, "/victim") == 0) {
		data = victim;
		len = victim_len;
	} else if (strcmp(path, "/page") == 0) {
		data = page;
		len = sizeof page;
	} else {
		return -ENOENT;
	}
	if (off < 0 || (size_t)off >= len)
		return 0;
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	memcpy(buf, data + off, size);
	return (int)size;
}

static const struct fuse_operations ops = {
	.init = fs_init,
	.getattr = fs_getattr,
	.readdir = fs_readdir,
	.open = fs_open,
	.read = fs_read,
};

static int load_victim(const char *src)
{
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(src);
		return -1;
	}
	victim_len = (size_t)st.st_size;
	victim = malloc(victim_len ? victim_len : 1);
	size_t got = 0;
	while (victim && got < victim_len) {
		ssize_t n = read(fd, victim + got, victim_len - got);
		if (n <= 0) {
			perror(src);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	return victim ? 0 : -1;
}

/* Open /dev/fuse and mount it at mnt for uid: the fd, or -1. */
static int mount_for(const char *mnt, uid_t uid)
{
	int fd = open("/dev/fuse", O_RDWR);
	if (fd < 0) {
		perror("/dev/fuse");
		return -1;
	}
	char opts[256];
	snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other", fd, (unsigned)uid,
		 (unsigned)uid);
	if (mount("pwadv", mnt, "fuse.pwadv", MS_NOSUID | MS_NODEV, opts) < 0) {
		perror("mount");
		close(fd);
		return -1;
	}
	return fd;
}

static int drop_to(uid_t uid)
{
	if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
		perror("drop privileges");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: fuseserv CTLDIR SRC ATTACKER_UID MAX_HANG LIFETIME MOUNTPOINT SERVER_UID\n");
		return 2;
	}
	snprintf(ctldir, sizeof ctldir, "%s", argv[1]);
	attacker = (uid_t)strtoul(argv[3], NULL, 10);
	max_hang = atof(argv[4]);
	if (load_victim(argv[2]) < 0)
		return 1;
	for (size_t i = 0; i < sizeof page; i++)
		page[i] = (char)('a' + i % 26);
	alarm((unsigned)atoi(argv[5]));
	int fd = mount_for(argv[6], (uid_t)strtoul(argv[7], NULL, 10));
	if (fd < 0 || drop_to((uid_t)strtoul(argv[7], NULL, 10)) < 0)
		return 1;
	char devfd[32];
	snprintf(devfd, sizeof devfd, "/dev/fd/%d", fd);
	char *fargv[] = {argv[0], "-f", devfd, NULL};
	return fuse_main(3, fargv, &ops, NULL);
}
