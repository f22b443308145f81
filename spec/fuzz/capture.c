/* capture.c: record raw proc connector datagrams as seed files for the
 * parser fuzz target (spec/fuzz/fuzz_parser.c).
 *
 *   capture [-k MAX_PER_TYPE] [-t TIMEOUT_S] OUTDIR N
 *
 * Subscribes to the proc connector (NETLINK_CONNECTOR, group CN_IDX_PROC,
 * PROC_CN_MCAST_LISTEN sent as the 4-byte op, so the kernel uses
 * PROC_EVENT_ALL and lets the subscription ACK through), then writes each
 * datagram the kernel sends, byte for byte, to OUTDIR/<type>-<n>.bin, where
 * <type> comes from proc_event.what ("ack", "fork", ...) and <n> counts the
 * files written. Stops after N files, after TIMEOUT_S seconds without a
 * datagram (default 10), or on SIGINT/SIGTERM, and always sends
 * PROC_CN_MCAST_IGNORE before exiting. With -k, at most MAX_PER_TYPE files
 * are kept per type (others are received and counted, not written).
 * Datagrams not sent by the kernel (nl_pid != 0) are ignored.
 * Needs CAP_NET_ADMIN (root). Build: gcc -O2 -Wall -o capture capture.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int send_op(int fd, enum proc_cn_mcast_op op)
{
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		uint32_t op;
	} __attribute__((packed)) req;
	memset(&req, 0, sizeof req);
	req.nl.nlmsg_len = sizeof req;
	req.nl.nlmsg_type = NLMSG_DONE;
	req.nl.nlmsg_pid = (uint32_t)getpid();
	req.cn.id.idx = CN_IDX_PROC;
	req.cn.id.val = CN_VAL_PROC;
	req.cn.seq = 0;
	req.cn.ack = 0;
	req.cn.len = sizeof req.op;
	req.op = (uint32_t)op;
	struct sockaddr_nl to = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = 0};
	if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) < 0) {
		perror("capture: sendto");
		return -1;
	}
	return 0;
}

/* Type name of the first message of a datagram. */
static const char *type_name(const uint8_t *b, size_t len, char *tmp, size_t tmplen)
{
	if (len < NLMSG_HDRLEN)
		return "short";
	struct nlmsghdr nl;
	memcpy(&nl, b, sizeof nl);
	if (nl.nlmsg_type != NLMSG_DONE) {
		snprintf(tmp, tmplen, "nlmsg%u", (unsigned)nl.nlmsg_type);
		return tmp;
	}
	size_t pe_off = NLMSG_HDRLEN + sizeof(struct cn_msg);
	if (len < pe_off + 4)
		return "short";
	uint32_t what;
	memcpy(&what, b + pe_off, sizeof what);
	switch (what) {
	case PROC_EVENT_NONE: return "ack";
	case PROC_EVENT_FORK: return "fork";
	case PROC_EVENT_EXEC: return "exec";
	case PROC_EVENT_UID: return "uid";
	case PROC_EVENT_GID: return "gid";
	case PROC_EVENT_SID: return "sid";
	case PROC_EVENT_PTRACE: return "ptrace";
	case PROC_EVENT_COMM: return "comm";
	case PROC_EVENT_COREDUMP: return "coredump";
	case PROC_EVENT_EXIT: return "exit";
	}
	snprintf(tmp, tmplen, "what0x%08x", (unsigned)what);
	return tmp;
}

#define MAX_TYPES 32

int main(int argc, char **argv)
{
	long per_type = -1, timeout_s = 10;
	int opt;
	while ((opt = getopt(argc, argv, "k:t:")) != -1) {
		switch (opt) {
		case 'k': per_type = strtol(optarg, NULL, 10); break;
		case 't': timeout_s = strtol(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (argc - optind != 2) {
	usage:
		fprintf(stderr, "usage: %s [-k MAX_PER_TYPE] [-t TIMEOUT_S] OUTDIR N\n", argv[0]);
		return 2;
	}
	const char *outdir = argv[optind];
	long want = strtol(argv[optind + 1], NULL, 10);
	if (want <= 0)
		goto usage;
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; /* no SA_RESTART: recv returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (fd < 0) {
		perror("capture: socket(NETLINK_CONNECTOR)");
		return 1;
	}
	int rcvbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = {.tv_sec = timeout_s > 0 ? timeout_s : 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_nl me = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = CN_IDX_PROC};
	if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) {
		perror("capture: bind");
		return 1;
	}
	if (send_op(fd, PROC_CN_MCAST_LISTEN) < 0)
		return 1;

	struct { char name[32]; long seen, kept; } types[MAX_TYPES];
	int ntypes = 0;
	long written = 0, received = 0, foreign = 0, lost = 0;
	int rc = 0;
	static uint8_t buf[65536];
	while (!stop && written < want) {
		struct sockaddr_nl from;
		socklen_t fromlen = sizeof from;
		ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) { /* the kernel dropped some: go on */
				lost++;
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				fprintf(stderr, "capture: no datagram for %lds, stopping\n", (long)tv.tv_sec);
				break;
			}
			perror("capture: recvfrom");
			rc = 1;
			break;
		}
		if ((size_t)r > sizeof buf) {
			fprintf(stderr, "capture: datagram of %zd bytes truncated\n", r);
			r = sizeof buf;
		}
		if (from.nl_pid != 0) {
			foreign++;
			continue;
		}
		received++;
		char tmp[32];
		const char *tn = type_name(buf, (size_t)r, tmp, sizeof tmp);
		int t;
		for (t = 0; t < ntypes; t++)
			if (strcmp(types[t].name, tn) == 0)
				break;
		if (t == ntypes) {
			if (ntypes == MAX_TYPES)
				continue;
			snprintf(types[t].name, sizeof types[t].name, "%s", tn);
			types[t].seen = types[t].kept = 0;
			ntypes++;
		}
		types[t].seen++;
		if (per_type >= 0 && types[t].kept >= per_type)
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s-%ld.bin", outdir, tn, written);
		int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out < 0 || write(out, buf, (size_t)r) != r) {
			perror(path);
			if (out >= 0)
				close(out);
			rc = 1;
			break;
		}
		close(out);
		types[t].kept++;
		written++;
	}
	send_op(fd, PROC_CN_MCAST_IGNORE);
	close(fd);
	fprintf(stderr, "capture: %ld received, %ld written, %ld foreign, %ld ENOBUFS\n", received,
		written, foreign, lost);
	for (int t = 0; t < ntypes; t++)
		fprintf(stderr, "  %-12s seen %ld kept %ld\n", types[t].name, types[t].seen,
			types[t].kept);
	return rc;
}
