/* minlisten: the benchmarks' baseline, a minimal proc connector listener.
 *
 *   minlisten count [--rt PRIO]
 *       One blocking recv per event (the kernel sends one event per
 *       datagram), 4-byte PROC_CN_MCAST_LISTEN (all events), 8 MiB
 *       SO_RCVBUFFORCE. Counts events; SIGUSR1 prints the counters to
 *       stderr; SIGTERM/SIGINT prints them and exits.
 *
 *   minlisten kill VICTIM OUT [--rt PRIO]
 *       Same socket; on each exec event: pidfd_open(tgid), readlink
 *       /proc/TGID/exe, and if it is VICTIM, pidfd_send_signal(SIGKILL).
 *       latency = CLOCK_MONOTONIC just after pidfd_send_signal minus the
 *       event's timestamp_ns (ktime_get_ns: the same clock). On exit the
 *       "pid latency_ns" pairs are written to OUT.
 *
 * --rt PRIO: SCHED_FIFO PRIO and mlockall, as procwarden --realtime does.
 * It exits by itself after 15 minutes (SIGALRM), should its script die.
 * "ready" is printed to stderr once the kernel has acknowledged the
 * subscription. Counters: events (by type), enobufs (recv failed with
 * ENOBUFS: the kernel dropped events), seq_lost (gaps in the per-CPU event
 * counter: with every event subscribed, a gap is a lost event). */
#include <errno.h>
#include <limits.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define MAX_CPUS 4096
#define MAX_KILLS 200000

static volatile sig_atomic_t stop_flag, usr1_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }
static void on_usr1(int sig) { (void)sig; usr1_flag = 1; }

static uint64_t n_events, n_fork, n_exec, n_exit, n_other, n_enobufs, n_seq_lost, n_acks;
static uint32_t last_seq[MAX_CPUS];
static uint8_t seen_cpu[MAX_CPUS];

static struct { int pid; uint64_t lat; } kills[MAX_KILLS];
static size_t n_kills;
static uint64_t n_kill_failed;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int send_op(int fd, uint32_t op)
{
	char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof op)] __attribute__((aligned(8)));
	memset(buf, 0, sizeof buf);
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof op);
	nlh->nlmsg_type = NLMSG_DONE;
	nlh->nlmsg_pid = (uint32_t)getpid();
	struct cn_msg *cn = NLMSG_DATA(nlh);
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->len = sizeof op;
	memcpy(cn->data, &op, sizeof op);
	return send(fd, buf, nlh->nlmsg_len, 0) < 0 ? -1 : 0;
}

static void print_counters(const char *tag)
{
	fprintf(stderr,
		"minlisten %s: events=%llu fork=%llu exec=%llu exit=%llu other=%llu acks=%llu "
		"enobufs=%llu seq_lost=%llu kills=%zu kill_failed=%llu\n",
		tag, (unsigned long long)n_events, (unsigned long long)n_fork, (unsigned long long)n_exec,
		(unsigned long long)n_exit, (unsigned long long)n_other, (unsigned long long)n_acks,
		(unsigned long long)n_enobufs, (unsigned long long)n_seq_lost, n_kills,
		(unsigned long long)n_kill_failed);
	fflush(stderr);
}

static void on_exec(int tgid, uint64_t ktime, const char *victim)
{
	int pfd = (int)syscall(SYS_pidfd_open, tgid, 0);
	if (pfd < 0)
		return;
	char path[64], exe[PATH_MAX];
	snprintf(path, sizeof path, "/proc/%d/exe", tgid);
	ssize_t n = readlink(path, exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = 0;
		if (strcmp(exe, victim) == 0) {
			int r = (int)syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
			uint64_t t = mono_ns();
			if (r == 0 && n_kills < MAX_KILLS) {
				kills[n_kills].pid = tgid;
				kills[n_kills].lat = t - ktime;
				n_kills++;
			} else if (r != 0) {
				n_kill_failed++;
			}
		}
	}
	close(pfd);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
	usage:
		fprintf(stderr, "usage: minlisten count [--rt PRIO]\n"
				"       minlisten kill VICTIM OUT [--rt PRIO]\n");
		return 2;
	}
	int kill_mode = strcmp(argv[1], "kill") == 0;
	if (!kill_mode && strcmp(argv[1], "count") != 0)
		goto usage;
	const char *victim = NULL, *out = NULL;
	char victim_real[PATH_MAX];
	int ai = 2;
	if (kill_mode) {
		if (argc < 4)
			goto usage;
		if (!realpath(argv[2], victim_real)) {
			perror(argv[2]);
			return 2;
		}
		victim = victim_real;
		out = argv[3];
		ai = 4;
	}
	int rt = 0;
	if (ai + 1 < argc && strcmp(argv[ai], "--rt") == 0)
		rt = atoi(argv[ai + 1]);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a signal interrupts recv */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);

	alarm(900); /* a benchmark helper never outlives its run, even if its script is killed */
	if (rt > 0) {
		struct sched_param sp = {.sched_priority = rt};
		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0 || mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
			perror("minlisten: SCHED_FIFO/mlockall");
			return 1;
		}
	}

	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	int rcvbuf = 8 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) {
		perror("SO_RCVBUFFORCE");
		return 1;
	}
	struct sockaddr_nl sa_nl = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = (uint32_t)getpid()};
	if (bind(fd, (struct sockaddr *)&sa_nl, sizeof sa_nl) < 0) {
		perror("bind");
		return 1;
	}
	if (send_op(fd, PROC_CN_MCAST_LISTEN) < 0) {
		perror("send PROC_CN_MCAST_LISTEN");
		return 1;
	}

	char buf[4096] __attribute__((aligned(8)));
	int ready = 0;
	while (!stop_flag) {
		if (usr1_flag) {
			usr1_flag = 0;
			print_counters("usr1");
		}
		ssize_t len = recv(fd, buf, sizeof buf, 0);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				n_enobufs++;
				continue;
			}
			perror("recv");
			break;
		}
		for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf; NLMSG_OK(nlh, (size_t)len);
		     nlh = NLMSG_NEXT(nlh, len)) {
			if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg)))
				continue;
			struct cn_msg *cn = NLMSG_DATA(nlh);
			if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
				continue;
			struct proc_event ev;
			memset(&ev, 0, sizeof ev);
			size_t clen = cn->len < sizeof ev ? cn->len : sizeof ev;
			memcpy(&ev, cn->data, clen); /* timestamp_ns is not 8-byte aligned in the buffer */
			/* The per-CPU counter numbers every message the proc connector
			 * multicasts, ACKs to other listeners' subscriptions included. */
			if (ev.cpu < MAX_CPUS) {
				if (seen_cpu[ev.cpu]) {
					uint32_t gap = cn->seq - last_seq[ev.cpu] - 1;
					if (gap > 0 && gap < 0x80000000u)
						n_seq_lost += gap;
				}
				seen_cpu[ev.cpu] = 1;
				last_seq[ev.cpu] = cn->seq;
			}
			if (ev.what == PROC_EVENT_NONE) {
				n_acks++;
				if (!ready) {
					ready = 1;
					fprintf(stderr, "ready\n");
					fflush(stderr);
				}
				continue;
			}
			n_events++;
			switch (ev.what) {
			case PROC_EVENT_FORK:
				n_fork++;
				break;
			case PROC_EVENT_EXEC:
				n_exec++;
				if (kill_mode)
					on_exec(ev.event_data.exec.process_tgid, ev.timestamp_ns, victim);
				break;
			case PROC_EVENT_EXIT:
				n_exit++;
				break;
			default:
				n_other++;
				break;
			}
		}
	}
	send_op(fd, PROC_CN_MCAST_IGNORE);
	close(fd);
	print_counters("exit");
	if (kill_mode) {
		FILE *f = fopen(out, "w");
		if (!f) {
			perror(out);
			return 1;
		}
		for (size_t i = 0; i < n_kills; i++)
			fprintf(f, "%d %llu\n", kills[i].pid, (unsigned long long)kills[i].lat);
		fclose(f);
	}
	return 0;
}
