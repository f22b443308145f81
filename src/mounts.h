/* mounts.h: mount tables (/proc/PID/mountinfo) read whole, whatever their
 * line lengths, and the filesystem type of a device. */
#ifndef PW_MOUNTS_H
#define PW_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct pw_mount {
	unsigned id, parent; /* mount ids (this namespace's numbering) */
	unsigned maj, min;   /* the filesystem's device */
	char *point;         /* mount point, unescaped, relative to the reader's root */
	char *type;          /* "ext4", "tmpfs", "fuse.sshfs" ... */
};

struct pw_mounts {
	struct pw_mount *m; /* sorted by id */
	size_t n;
	char *text;         /* the strings point into it */
};

/* Read a mountinfo file. 0 or -errno. Lines that do not parse are skipped. */
int mounts_read(const char *path, struct pw_mounts *out);
/* The same from text[0..len) (malloc'd, len + 1 bytes, owned by out from
 * now on, even on failure): the parser alone, pure. 0 or -ENOMEM. */
int mounts_parse(char *text, size_t len, struct pw_mounts *out);
void mounts_free(struct pw_mounts *ms);
/* The mount with this id, or NULL. */
const struct pw_mount *mounts_find(const struct pw_mounts *ms, unsigned id);
/* Is m, or a mount it sits under, of a type whose server is a process? A
 * walk to m's mount point then passes through that server. */
bool mounts_under_fuse(const struct pw_mounts *ms, const struct pw_mount *m);

/* A filesystem served by a process (FUSE): any access to it may wait on
 * that process for as long as it likes. */
bool mounts_type_blocks(const char *type);
/* Kernel pseudo filesystems: never hold an executable worth a decision. */
bool mounts_type_pseudo(const char *type);

/* Remember the type of a device (from a mountinfo just read). */
void mounts_note_type(dev_t dev, const char *type);
/* The type of the filesystem on dev, as pid's mount table names it
 * (cached; on a miss /proc/PID/mountinfo is read, if it is under 256 KiB
 * and fewer than 10 such reads were made this second). "" when unknown.
 * Thread-safe; never touches the filesystem itself. */
void mounts_fs_type(pid_t pid, dev_t dev, char *buf, size_t cap);

#endif
