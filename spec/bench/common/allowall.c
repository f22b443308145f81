/* allowall: the exec_cost benchmark's fanotify baseline, a minimal C
 * responder that allows every exec.
 *
 *   allowall PATH...
 *       FAN_CLASS_CONTENT group, FAN_OPEN_EXEC_PERM filesystem marks on the
 *       filesystems holding each PATH; each request: read, FAN_ALLOW, close.
 *       No path lookup, no hash, no rule: what answering costs by itself.
 *
 * Prints "ready" to stderr once marked; exits on SIGTERM/SIGINT (the kernel
 * then allows whatever waits) or by itself after 15 minutes (SIGALRM). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: allowall PATH...\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	alarm(900);
	int fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (fan < 0) {
		fprintf(stderr, "allowall: fanotify_init: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 1; i < argc; i++)
		if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, argv[i]) < 0) {
			fprintf(stderr, "allowall: mark %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
	fprintf(stderr, "ready\n");
	char buf[4096] __attribute__((aligned(8)));
	while (!stop) {
		struct pollfd p = {.fd = fan, .events = POLLIN};
		if (poll(&p, 1, -1) < 0)
			continue; /* EINTR: stop is looked at */
		ssize_t len = read(fan, buf, sizeof buf);
		if (len <= 0)
			continue;
		const struct fanotify_event_metadata *md = (const void *)buf;
		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			if (md->fd < 0)
				continue;
			struct fanotify_response r = {.fd = md->fd, .response = FAN_ALLOW};
			if (write(fan, &r, sizeof r) != sizeof r)
				fprintf(stderr, "allowall: answer: %s\n", strerror(errno));
			close(md->fd);
		}
	}
	close(fan);
	return 0;
}
