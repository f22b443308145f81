/* forge.c: send one forged proc connector message from a userspace socket,
 * for spec/integration/forged_spec.lua (root only).
 *
 *   forge multicast          to the CN_IDX_PROC group (nl_groups = 1, nl_pid = 0)
 *   forge unicast PORTID     to one listener's port id (nl_pid = PORTID)
 *
 * The message is what the kernel sends for an exec: 76 bytes, nlmsghdr of
 * type NLMSG_DONE + cn_msg {idx 1, val 1, len 40} + proc_event {what =
 * PROC_EVENT_EXEC, exec.process_pid = exec.process_tgid = FORGED_PID}.
 * Prints "portid N" (the sender's own port id, which the receiver sees in
 * the source address) and exits 0 once the kernel accepted the message.
 * No dependency beyond libc and the kernel headers. */
#include <errno.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FORGED_PID 424242
#define PROC_EVENT_EXEC_ 0x00000002u
#define PROC_EVENT_SIZE 40 /* what, cpu, timestamp_ns, event_data (24 bytes) */

static int usage(void)
{
	fprintf(stderr, "usage: forge multicast | forge unicast PORTID\n");
	return 2;
}

int main(int argc, char **argv)
{
	int multicast;
	uint32_t dest = 0;
	if (argc == 2 && strcmp(argv[1], "multicast") == 0) {
		multicast = 1;
	} else if (argc == 3 && strcmp(argv[1], "unicast") == 0) {
		char *end;
		unsigned long v = strtoul(argv[2], &end, 10);
		if (*argv[2] == 0 || *end || v == 0 || v > UINT32_MAX)
			return usage();
		multicast = 0;
		dest = (uint32_t)v;
	} else {
		return usage();
	}

	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (fd < 0) {
		perror("forge: socket(NETLINK_CONNECTOR)");
		return 1;
	}
	/* Bind first (port id chosen by the kernel); in the multicast case also
	 * join the group, as a proc connector listener would. */
	struct sockaddr_nl self = {.nl_family = AF_NETLINK, .nl_pid = 0,
				   .nl_groups = multicast ? CN_IDX_PROC : 0};
	if (bind(fd, (struct sockaddr *)&self, sizeof self) < 0) {
		perror("forge: bind");
		return 1;
	}
	socklen_t slen = sizeof self;
	if (getsockname(fd, (struct sockaddr *)&self, &slen) < 0) {
		perror("forge: getsockname");
		return 1;
	}

	union {
		uint8_t bytes[NLMSG_HDRLEN + sizeof(struct cn_msg) + PROC_EVENT_SIZE];
		struct nlmsghdr align;
	} buf;
	memset(&buf, 0, sizeof buf);
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf.bytes;
	nlh->nlmsg_len = sizeof buf.bytes; /* 76 */
	nlh->nlmsg_type = NLMSG_DONE;
	nlh->nlmsg_seq = 1;
	nlh->nlmsg_pid = 0; /* claims to be the kernel: the receiver must not trust this */
	struct cn_msg cn = {.id = {.idx = CN_IDX_PROC, .val = CN_VAL_PROC}, .seq = 1, .len = PROC_EVENT_SIZE};
	memcpy(buf.bytes + NLMSG_HDRLEN, &cn, sizeof cn);
	uint8_t *ev = buf.bytes + NLMSG_HDRLEN + sizeof cn;
	uint32_t what = PROC_EVENT_EXEC_, cpu = 0, pid = FORGED_PID;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t tns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	memcpy(ev, &what, 4);
	memcpy(ev + 4, &cpu, 4);
	memcpy(ev + 8, &tns, 8);
	memcpy(ev + 16, &pid, 4); /* exec.process_pid */
	memcpy(ev + 20, &pid, 4); /* exec.process_tgid */

	struct sockaddr_nl to = {.nl_family = AF_NETLINK,
				 .nl_pid = multicast ? 0 : dest,
				 .nl_groups = multicast ? CN_IDX_PROC : 0};
	ssize_t n = sendto(fd, buf.bytes, sizeof buf.bytes, 0, (struct sockaddr *)&to, sizeof to);
	if (n != (ssize_t)sizeof buf.bytes) {
		fprintf(stderr, "forge: sendto %s: %s\n", multicast ? "multicast" : argv[2],
			n < 0 ? strerror(errno) : "short write");
		return 1;
	}
	printf("portid %u\n", (unsigned)self.nl_pid);
	close(fd);
	return 0;
}
