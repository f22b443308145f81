/* mounts.c: mount tables. Reads /proc/PID/mountinfo whole (a mount point
 * may be as long as a path gets: no line buffer cuts it), parses each line
 * into a struct pw_mount, and keeps a small cache of device -> filesystem
 * type that the loop (exe_fs of an exec) and the responder (requests)
 * share. Nothing here touches a mounted filesystem: only procfs. */
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define MOUNTINFO_MAX (64u << 20) /* a mount table larger than this is cut (counted as unreadable) */

bool mounts_type_blocks(const char *type)
{
	return strcmp(type, "fuse") == 0 || strcmp(type, "fuseblk") == 0 || strncmp(type, "fuse.", 5) == 0;
}

bool mounts_type_pseudo(const char *type)
{
	static const char *const pseudo[] = {
		"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "bpf", "tracefs", "debugfs",
		"securityfs", "pstore", "configfs", "fusectl", "autofs", "binfmt_misc", "nsfs",
		"efivarfs", "selinuxfs", "rpc_pipefs",
	};
	for (size_t i = 0; i < sizeof pseudo / sizeof pseudo[0]; i++)
		if (strcmp(type, pseudo[i]) == 0)
			return true;
	return false;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* The whole file, NUL-terminated (procfs files have no useful size). */
static char *slurp(const char *path, size_t *len, int *err, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	size_t cap = 16384, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 >= cap) {
			if (cap >= max) {
				*err = -EFBIG;
				free(buf);
				buf = NULL;
				break;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = -errno;
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (!buf && *err == 0)
		*err = -ENOMEM;
	close(fd);
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

/* id parent maj:min root mountpoint options [optional...] - type source superopts */
static bool parse_line(char *line, struct pw_mount *m)
{
	char *save = NULL, *f[5] = {0};
	char *tok = strtok_r(line, " ", &save);
	for (int i = 0; i < 5 && tok; i++, tok = strtok_r(NULL, " ", &save))
		f[i] = tok;
	if (!f[4])
		return false;
	while (tok && strcmp(tok, "-") != 0)
		tok = strtok_r(NULL, " ", &save);
	char *type = tok ? strtok_r(NULL, " ", &save) : NULL;
	if (!type || sscanf(f[0], "%u", &m->id) != 1 || sscanf(f[1], "%u", &m->parent) != 1 ||
	    sscanf(f[2], "%u:%u", &m->maj, &m->min) != 2)
		return false;
	unescape(f[4]);
	m->point = f[4];
	m->type = type;
	return true;
}

static int by_id(const void *a, const void *b)
{
	const struct pw_mount *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

int mounts_read(const char *path, struct pw_mounts *out)
{
	memset(out, 0, sizeof *out);
	int err = 0;
	size_t len;
	char *text = slurp(path, &len, &err, MOUNTINFO_MAX);
	if (!text)
		return err;
	return mounts_parse(text, len, out);
}

int mounts_parse(char *text, size_t len, struct pw_mounts *out)
{
	memset(out, 0, sizeof *out);
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	out->m = calloc(lines, sizeof *out->m);
	if (!out->m) {
		free(text);
		return -ENOMEM;
	}
	out->text = text;
	text[len] = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (out->n < lines && parse_line(line, &out->m[out->n])) {
			mounts_note_type(makedev(out->m[out->n].maj, out->m[out->n].min), out->m[out->n].type);
			out->n++;
		}
	qsort(out->m, out->n, sizeof *out->m, by_id);
	return 0;
}

void mounts_free(struct pw_mounts *ms)
{
	free(ms->m);
	free(ms->text);
	memset(ms, 0, sizeof *ms);
}

const struct pw_mount *mounts_find(const struct pw_mounts *ms, unsigned id)
{
	struct pw_mount key = {.id = id};
	return ms->n ? bsearch(&key, ms->m, ms->n, sizeof *ms->m, by_id) : NULL;
}

bool mounts_under_fuse(const struct pw_mounts *ms, const struct pw_mount *m)
{
	/* bounded: a cycle in a table read while it changed cannot loop */
	for (size_t depth = 0; m && depth <= ms->n; depth++) {
		if (mounts_type_blocks(m->type))
			return true;
		if (m->parent == m->id)
			break;
		m = mounts_find(ms, m->parent);
	}
	return false;
}

/* ---- device -> type ---------------------------------------------------- */

#define TYPE_SLOTS 4096 /* power of two */
#define TYPE_PROBE 8

static struct {
	dev_t dev;
	bool used;
	char type[32];
} types[TYPE_SLOTS];
static unsigned type_victim;
static pthread_mutex_t types_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned dev_slot(dev_t dev)
{
	uint64_t h = (uint64_t)dev * 0x9E3779B97F4A7C15ull;
	return (unsigned)(h >> 40) & (TYPE_SLOTS - 1);
}

void mounts_note_type(dev_t dev, const char *type)
{
	unsigned s = dev_slot(dev);
	pthread_mutex_lock(&types_mu);
	int free_slot = -1;
	for (unsigned i = 0; i < TYPE_PROBE; i++) {
		unsigned k = (s + i) & (TYPE_SLOTS - 1);
		if (types[k].used && types[k].dev == dev) {
			free_slot = (int)k;
			break;
		}
		if (!types[k].used && free_slot < 0)
			free_slot = (int)k;
	}
	if (free_slot < 0) /* all probed slots taken: replace one in turn */
		free_slot = (int)((s + type_victim++ % TYPE_PROBE) & (TYPE_SLOTS - 1));
	types[free_slot].used = true;
	types[free_slot].dev = dev;
	snprintf(types[free_slot].type, sizeof types[free_slot].type, "%s", type);
	pthread_mutex_unlock(&types_mu);
}

static bool type_lookup(dev_t dev, char *buf, size_t cap)
{
	unsigned s = dev_slot(dev);
	bool found = false;
	pthread_mutex_lock(&types_mu);
	for (unsigned i = 0; i < TYPE_PROBE && !found; i++) {
		unsigned k = (s + i) & (TYPE_SLOTS - 1);
		if (types[k].used && types[k].dev == dev) {
			snprintf(buf, cap, "%s", types[k].type);
			found = true;
		}
	}
	pthread_mutex_unlock(&types_mu);
	return found;
}

/* A miss reads the process's mount table: on the loop and in the responder,
 * so bounded in size and in rate (a user makes tables and devices at will). */
#define LOOKUP_TABLE_MAX (256u << 10)
#define LOOKUP_READS_PER_S 10

static bool lookup_read_allowed(void)
{
	static uint64_t window;
	static unsigned reads;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	uint64_t now = (uint64_t)ts.tv_sec;
	pthread_mutex_lock(&types_mu);
	if (now != window) {
		window = now;
		reads = 0;
	}
	bool ok = reads < LOOKUP_READS_PER_S;
	reads += ok;
	pthread_mutex_unlock(&types_mu);
	return ok;
}

void mounts_fs_type(pid_t pid, dev_t dev, char *buf, size_t cap)
{
	if (cap)
		buf[0] = 0;
	if (type_lookup(dev, buf, cap) || !lookup_read_allowed())
		return;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)pid);
	int err = 0;
	size_t len;
	char *text = slurp(path, &len, &err, LOOKUP_TABLE_MAX);
	struct pw_mounts ms;
	if (text && mounts_parse(text, len, &ms) == 0) /* notes every device's type */
		mounts_free(&ms);
	if (text && !type_lookup(dev, buf, cap))
		mounts_note_type(dev, ""); /* not in its table (a hidden mount): do not read it again */
}
