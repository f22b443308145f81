/* identity.h: files by what they are, not by what they are called. A path
 * walk that opens each component without following links and checks it
 * through its own fd; rules files read through it (one open, checked, then
 * read); and protect{} sets: the (dev, ino) of root-owned executables. */
#ifndef PW_IDENTITY_H
#define PW_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PW_RULES_MAX_BYTES (16u << 20) /* a rules file larger than this is refused */
#define PW_PROTECT_MAX_FILES 16384     /* files one load may protect */
#define PW_PROTECT_MAX_ENTRIES 256     /* protect{} entries of one load */
#define PW_PROTECT_DEPTH 4             /* directory levels a glob is expanded over */
#define PW_PROTECT_VISITS 200000       /* directory entries one glob may visit */

/* --insecure-rules: a rules file that fails the checks is loaded anyway
 * (with a warning), symbolic links followed. */
void identity_rules_insecure(bool on);

/* Read a rules file: walked from / (a relative path from the working
 * directory) with no symbolic link followed, each directory and then the
 * file checked on its fd (a regular file, or /dev/null; owned by root or
 * the daemon's user; neither it nor any directory above writable by group
 * or others, a sticky root-owned directory excepted; no FUSE filesystem on
 * the way), then read from that same open file. *text (malloc'd, NUL
 * terminated, the caller frees) and *len; or -1 with a message in err
 * (a refusal names the fix and --insecure-rules). */
int identity_rules_read(const char *path, char **text, size_t *len, char *err, size_t errlen);

/* protect{}: the identity of the executables no action may signal. */
struct pw_protect;

struct pw_protect *protect_new(void);
void protect_free(struct pw_protect *p);
/* Add a protect{} entry: an absolute path or glob (fnmatch, `*` matches
 * `/` as in every exe glob), or a glob starting with `*`, which names files
 * below the directories roots[0..nroots) only. where ("file:line: ")
 * prefixes its messages. 0, or -1 with err (a relative glob, too many
 * entries). Nothing is looked at before protect_resolve. */
int protect_add(struct pw_protect *p, const char *glob, const char *const *roots, int nroots, const char *where,
		char *err, size_t errlen);
/* Resolve the entries added since the last call: the root-owned regular
 * files not writable by group or others that each names now, below its
 * fixed directory (at most PW_PROTECT_DEPTH levels, that filesystem only),
 * join the set. A warning is logged for a leading `*` and for an entry
 * that names nothing. 0, or -1 with err (too many files). */
int protect_resolve(struct pw_protect *p, char *err, size_t errlen);
/* Entries added. */
int protect_entries(const struct pw_protect *p);
/* Is pid's executable protected? Its inode (statx of /proc/PID/exe, never
 * waiting on its filesystem) must be root-owned and not writable by group
 * or others, and: one of the set's; or the file an entry names at that
 * path now (installed or upgraded since the load); or, its exe
 * " (deleted)", a file upgraded away from a path an entry names, in our
 * mount of that directory. The caller has pinned the process. exe gets
 * its path, for messages ("" when unreadable). */
bool protect_holds(const struct pw_protect *p, pid_t pid, char *exe, size_t cap);

#endif
