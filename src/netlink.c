/* netlink.c: the proc connector socket. Owns the libmnl socket, the
 * subscription (proc_input mask or legacy op, one IGNORE per LISTEN), the
 * batched recvmmsg receive, the sender check (only the kernel, port id 0,
 * is believed), ENOBUFS overflow detection and the drop counters. */
#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define PROC_CN_MCAST_LISTEN_ 1u
#define PROC_CN_MCAST_IGNORE_ 2u
#define ACK_WAIT_MS 500

int netlink_open(struct pw_netlink *n, int rcvbuf, char *err, size_t errlen)
{
	memset(n, 0, sizeof *n);
	n->fd = -1;
	n->bufs = calloc(PW_NL_BATCH, PW_NL_DGRAM);
	n->last_seq = calloc(PW_NL_MAX_CPUS, sizeof *n->last_seq);
	if (!n->bufs || !n->last_seq) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n->nl = mnl_socket_open2(NETLINK_CONNECTOR, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!n->nl) {
		snprintf(err, errlen, "netlink socket (NETLINK_CONNECTOR): %s", strerror(errno));
		return -1;
	}
	n->fd = mnl_socket_get_fd(n->nl);
	if (rcvbuf > 0 && setsockopt(n->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) {
		snprintf(err, errlen, "SO_RCVBUFFORCE %d: %s", rcvbuf, strerror(errno));
		return -1;
	}
	if (mnl_socket_bind(n->nl, PW_CN_IDX_PROC, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, errlen, "bind to the proc connector group: %s", strerror(errno));
		return -1;
	}
	n->portid = mnl_socket_get_portid(n->nl);
	for (int i = 0; i < PW_NL_BATCH; i++) {
		n->iov[i].iov_base = n->bufs[i];
		n->iov[i].iov_len = PW_NL_DGRAM;
	}
	return 0;
}

/* Send one multicast control op. len is 4 (legacy op) or 8 (proc_input). */
static int send_op(struct pw_netlink *n, uint32_t op, uint32_t mask, size_t len)
{
	uint8_t buf[PW_NLMSG_HDRLEN + PW_CN_MSG_HDRLEN + 8];
	memset(buf, 0, sizeof buf);
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = NLMSG_DONE;
	nlh->nlmsg_pid = n->portid;
	n->req_seq = (uint32_t)time(NULL) ^ (n->portid << 8) ^ (uint32_t)rand();
	nlh->nlmsg_seq = n->req_seq;
	uint8_t *cn = mnl_nlmsg_put_extra_header(nlh, PW_CN_MSG_HDRLEN + len);
	uint32_t idx = PW_CN_IDX_PROC, val = PW_CN_VAL_PROC, seq = n->req_seq, ack = n->req_seq;
	uint16_t clen = (uint16_t)len;
	memcpy(cn, &idx, 4);
	memcpy(cn + 4, &val, 4);
	memcpy(cn + 8, &seq, 4);
	memcpy(cn + 12, &ack, 4);
	memcpy(cn + 16, &clen, 2);
	memcpy(cn + PW_CN_MSG_HDRLEN, &op, 4);
	if (len == 8)
		memcpy(cn + PW_CN_MSG_HDRLEN + 4, &mask, 4);
	n->ack_seen = false;
	if (mnl_socket_sendto(n->nl, buf, nlh->nlmsg_len) < 0)
		return -1;
	return 0;
}

/* Read until our ACK arrives or ACK_WAIT_MS pass; events go to deliver. */
static int await_ack(struct pw_netlink *n, pw_deliver_fn deliver, void *ctx)
{
	static struct pw_event evs[PW_NL_EVENT_CAP];
	int64_t deadline = (int64_t)(pw_mono_ns() / 1000000u) + ACK_WAIT_MS;
	while (!n->ack_seen) {
		int got = netlink_recv_batch(n, evs, PW_NL_EVENT_CAP);
		if (got < 0)
			return got;
		if (got > 0) {
			deliver(ctx, evs, got);
			continue;
		}
		int64_t left = deadline - (int64_t)(pw_mono_ns() / 1000000u);
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = n->fd, .events = POLLIN};
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

static int ack_result(struct pw_netlink *n, char *err, size_t errlen)
{
	if (n->ack_err == 0)
		return 0;
	errno = (int)n->ack_err;
	if (errno == EPERM)
		snprintf(err, errlen, "the kernel refused the proc connector subscription: "
				      "CAP_NET_ADMIN is needed, run procwarden as root");
	else
		snprintf(err, errlen, "proc connector subscription refused: %s", strerror(errno));
	return -1;
}

int netlink_subscribe(struct pw_netlink *n, uint32_t mask, enum pw_subscribe_mode mode,
		      pw_deliver_fn deliver, void *ctx, char *err, size_t errlen)
{
	int r;
	if (mode == PW_SUB_AUTO) {
		/* The ACK passes the kernel's filter only for the full mask: ask
		 * for everything first to learn whether proc_input is understood
		 * (kernels before 6.6 ignore it without a word), then narrow. */
		if (send_op(n, PROC_CN_MCAST_LISTEN_, PW_PROC_EVENT_ALL, 8) < 0)
			goto send_failed;
		r = await_ack(n, deliver, ctx);
		if (r == 0) {
			n->listens++;
			n->proc_input = true;
			if (ack_result(n, err, errlen) < 0)
				return -1;
			n->mask = PW_PROC_EVENT_ALL;
			return netlink_set_mask(n, mask) < 0 ? (snprintf(err, errlen, "proc connector: set event mask: %s", strerror(errno)), -1) : 0;
		}
		if (r != -ETIMEDOUT) {
			errno = -r;
			snprintf(err, errlen, "proc connector: %s", strerror(errno));
			return -1;
		}
		pw_log(PW_LOG_INFO, "kernel ignored the proc_input subscription: using the 4-byte op, all events");
	}
	if (send_op(n, PROC_CN_MCAST_LISTEN_, 0, 4) < 0)
		goto send_failed;
	r = await_ack(n, deliver, ctx);
	if (r == -ETIMEDOUT) {
		errno = ETIMEDOUT;
		snprintf(err, errlen, "no answer from the proc connector: the kernel ignores subscriptions "
				      "from outside the initial user and pid namespaces (container?) or lacks CONFIG_PROC_EVENTS");
		return -1;
	}
	if (r < 0) {
		errno = -r;
		snprintf(err, errlen, "proc connector: %s", strerror(errno));
		return -1;
	}
	n->listens++;
	n->proc_input = false;
	n->mask = PW_PROC_EVENT_ALL;
	return ack_result(n, err, errlen);
send_failed:
	snprintf(err, errlen, "proc connector: send subscription: %s", strerror(errno));
	return -1;
}

int netlink_set_mask(struct pw_netlink *n, uint32_t mask)
{
	if (!n->proc_input || mask == n->mask)
		return 0;
	if (send_op(n, PROC_CN_MCAST_LISTEN_, mask, 8) < 0)
		return -1;
	n->listens++; /* 6.6+ counts a socket once; an extra IGNORE is harmless there */
	n->mask = mask;
	return 0;
}

void netlink_unsubscribe(struct pw_netlink *n)
{
	for (; n->listens > 0; n->listens--)
		if (send_op(n, PROC_CN_MCAST_IGNORE_, 0, n->proc_input ? 8 : 4) < 0)
			pw_log(PW_LOG_WARNING, "proc connector: unsubscribe: %s", strerror(errno));
}

static void add_overflow(struct pw_netlink *n, struct pw_event *evs, int *k, uint64_t lost)
{
	memset(&evs[*k], 0, sizeof evs[*k]);
	evs[*k].type = PW_EV_OVERFLOW;
	evs[*k].u.overflow.lost = lost ? lost : 1;
	evs[*k].ktime_ns = pw_mono_ns();
	(*k)++;
	n->overflow_pending = false;
}

/* Per-CPU sequence bookkeeping: returns how many events this CPU skipped.
 * Meaningful only with the full mask (filtered events leave gaps too). */
static uint64_t seq_gap(struct pw_netlink *n, const struct pw_event *ev)
{
	if (ev->cpu >= PW_NL_MAX_CPUS)
		return 0;
	uint32_t prev = n->last_seq[ev->cpu];
	n->last_seq[ev->cpu] = ev->seq + 1;
	if (prev == 0 || n->mask != PW_PROC_EVENT_ALL)
		return 0;
	uint32_t gap = ev->seq - prev; /* prev holds last seq + 1 */
	return gap < 0x80000000u ? gap : 0;
}

int netlink_recv_batch(struct pw_netlink *n, struct pw_event *evs, size_t cap)
{
	if (cap < PW_NL_EVENT_CAP)
		return -EINVAL;
	for (int i = 0; i < PW_NL_BATCH; i++) {
		memset(&n->msgs[i].msg_hdr, 0, sizeof n->msgs[i].msg_hdr);
		n->msgs[i].msg_hdr.msg_name = &n->addr[i];
		n->msgs[i].msg_hdr.msg_namelen = sizeof n->addr[i];
		n->msgs[i].msg_hdr.msg_iov = &n->iov[i];
		n->msgs[i].msg_hdr.msg_iovlen = 1;
	}
	int got;
	for (;;) {
		got = recvmmsg(n->fd, n->msgs, PW_NL_BATCH, MSG_DONTWAIT, NULL);
		if (got >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == ENOBUFS) { /* the kernel dropped events for us */
			n->st.enobufs++;
			n->overflow_pending = true;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			got = 0;
			break;
		}
		return -errno;
	}
	int k = 0;
	for (int i = 0; i < got; i++) {
		n->st.datagrams++;
		const struct msghdr *mh = &n->msgs[i].msg_hdr;
		if (n->addr[i].nl_pid != 0) {
			n->st.forged++;
			if (!n->forged_reported) {
				n->forged_reported = true;
				pw_log(PW_LOG_WARNING, "dropped a proc connector message not sent by the kernel "
						       "(sender port id %u); further ones are only counted",
				       (unsigned)n->addr[i].nl_pid);
			}
			continue;
		}
		if (mh->msg_flags & MSG_TRUNC) {
			n->st.truncated++;
			continue;
		}
		struct pw_parse_cursor c;
		pw_parse_init(&c, n->bufs[i], n->msgs[i].msg_len);
		int in_dgram = 0;
		struct pw_event ev;
		for (;;) {
			enum pw_parse_status st = pw_parse_next(&c, &ev);
			if (st == PW_PARSE_END)
				break;
			if (st == PW_PARSE_SKIP)
				continue;
			if (st != PW_PARSE_OK) {
				n->st.parse_errors[st]++;
				continue;
			}
			if (ev.type == PW_EV_ACK) {
				n->st.acks++;
				n->st.seq_lost += seq_gap(n, &ev); /* acks take a sequence number too */
				/* The kernel answers with cn_msg.ack = ours + 1 (its seq is
				 * not the request's on every version). */
				if (ev.u.ack.cn_ack == n->req_seq + 1) {
					n->ack_seen = true;
					n->ack_err = ev.u.ack.err;
				}
				continue;
			}
			if (in_dgram == PW_NL_EVENTS_PER_DGRAM) {
				n->st.excess++;
				continue;
			}
			in_dgram++;
			uint64_t gap = seq_gap(n, &ev);
			n->st.seq_lost += gap;
			if (n->overflow_pending) /* before the first event after the loss */
				add_overflow(n, evs, &k, gap);
			evs[k++] = ev;
			n->st.events++;
		}
	}
	if (n->overflow_pending && got == 0)
		add_overflow(n, evs, &k, 0);
	return k;
}

void netlink_close(struct pw_netlink *n)
{
	if (n->nl)
		mnl_socket_close(n->nl);
	n->nl = NULL;
	n->fd = -1;
	free(n->bufs);
	free(n->last_seq);
	n->bufs = NULL;
	n->last_seq = NULL;
}
