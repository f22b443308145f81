/* netlink.h: the proc connector socket (libmnl): bind, subscribe with an
 * event mask, batched receive with sender checks and overflow detection. */
#ifndef PW_NETLINK_H
#define PW_NETLINK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include "event.h"

#define PW_NL_BATCH 64          /* datagrams per recvmmsg */
#define PW_NL_DGRAM 1024        /* bytes per datagram buffer (kernel events: 76) */
#define PW_NL_EVENTS_PER_DGRAM 8/* more in one datagram is not the kernel: dropped */
#define PW_NL_EVENT_CAP (PW_NL_BATCH * PW_NL_EVENTS_PER_DGRAM + 1)
#define PW_NL_MAX_CPUS 4096

struct pw_netlink_stats {
	uint64_t datagrams;          /* datagrams received */
	uint64_t events;             /* kernel events handed on */
	uint64_t acks;               /* subscription acknowledgements */
	uint64_t forged;             /* dropped: sender port id not 0 */
	uint64_t truncated;          /* dropped: datagram larger than the buffer */
	uint64_t excess;             /* dropped: too many messages in one datagram */
	uint64_t parse_errors[PW_PARSE__COUNT]; /* dropped: by parser error */
	uint64_t enobufs;            /* receive buffer overflows reported by the kernel */
	uint64_t seq_lost;           /* events missing from per-CPU sequences (full mask only) */
};

struct pw_netlink {
	struct mnl_socket *nl;
	int fd;
	unsigned portid;
	uint32_t mask;        /* event mask in force */
	bool proc_input;      /* the kernel takes the 8-byte struct proc_input */
	int listens;          /* LISTENs sent and taken: one IGNORE each on exit */
	uint32_t req_seq;     /* seq and ack of our last request; the ACK carries ack + 1 */
	bool ack_seen;
	uint32_t ack_err;
	bool overflow_pending;
	bool forged_reported;
	uint32_t *last_seq;   /* per CPU, +1 (0 = none seen yet) */
	struct pw_netlink_stats st;
	struct mmsghdr msgs[PW_NL_BATCH];
	struct iovec iov[PW_NL_BATCH];
	struct sockaddr_nl addr[PW_NL_BATCH];
	uint8_t (*bufs)[PW_NL_DGRAM];
};

enum pw_subscribe_mode { PW_SUB_AUTO, PW_SUB_LEGACY };

/* Open and bind. rcvbuf: bytes for SO_RCVBUFFORCE (0 = leave as is).
 * 0, or -1 with a message in err. */
int netlink_open(struct pw_netlink *n, int rcvbuf, char *err, size_t errlen);
typedef void (*pw_deliver_fn)(void *ctx, struct pw_event *evs, int n);

/* Subscribe to mask (PW_PROC_EVENT_* bits): the 8-byte proc_input form when
 * the kernel acknowledges it, else the 4-byte op. Events read while the ACK
 * is awaited go to deliver(ctx, ...), so none is lost. 0, or -1 with a
 * message in err and errno set (EPERM: the kernel wants CAP_NET_ADMIN;
 * ETIMEDOUT: no ACK at all). */
int netlink_subscribe(struct pw_netlink *n, uint32_t mask, enum pw_subscribe_mode mode,
		      pw_deliver_fn deliver, void *ctx, char *err, size_t errlen);
/* Change the mask of a live subscription (reload). 0 or -1. */
int netlink_set_mask(struct pw_netlink *n, uint32_t mask);
/* One IGNORE per LISTEN. */
void netlink_unsubscribe(struct pw_netlink *n);
/* One recvmmsg: up to PW_NL_BATCH datagrams parsed into evs (cap must be at
 * least PW_NL_EVENT_CAP). Returns the number of events (0: nothing more to
 * read now), or -errno on a socket error. An overflow adds a PW_EV_OVERFLOW
 * event in order. */
int netlink_recv_batch(struct pw_netlink *n, struct pw_event *evs, size_t cap);
void netlink_close(struct pw_netlink *n);

#endif
