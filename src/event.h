/* event.h: the parsed form of a proc connector message (struct pw_event) and
 * the pure parser that produces it. No I/O, no allocation. */
#ifndef PW_EVENT_H
#define PW_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wire constants, carried here so the parser does not depend on the
 * installed kernel headers (Debian 12's lack proc_input and friends). */
#define PW_CN_IDX_PROC 1u
#define PW_CN_VAL_PROC 1u
#define PW_PROC_EVENT_NONE 0x00000000u
#define PW_PROC_EVENT_FORK 0x00000001u
#define PW_PROC_EVENT_EXEC 0x00000002u
#define PW_PROC_EVENT_UID 0x00000004u
#define PW_PROC_EVENT_GID 0x00000040u
#define PW_PROC_EVENT_SID 0x00000080u
#define PW_PROC_EVENT_PTRACE 0x00000100u
#define PW_PROC_EVENT_COMM 0x00000200u
#define PW_PROC_EVENT_NONZERO_EXIT 0x20000000u
#define PW_PROC_EVENT_COREDUMP 0x40000000u
#define PW_PROC_EVENT_EXIT 0x80000000u
#define PW_PROC_EVENT_ALL                                                              \
	(PW_PROC_EVENT_FORK | PW_PROC_EVENT_EXEC | PW_PROC_EVENT_UID | PW_PROC_EVENT_GID | \
	 PW_PROC_EVENT_SID | PW_PROC_EVENT_PTRACE | PW_PROC_EVENT_COMM |                   \
	 PW_PROC_EVENT_NONZERO_EXIT | PW_PROC_EVENT_COREDUMP | PW_PROC_EVENT_EXIT)
/* The kernel's filter lets the subscription ACK through only for exactly
 * PROC_EVENT_ALL (NONZERO_EXIT included), so this value must match it. */

/* Layout: nlmsghdr (16) + cn_msg (20) + proc_event header (16) + union. */
#define PW_NLMSG_HDRLEN 16u
#define PW_CN_MSG_HDRLEN 20u
#define PW_PROC_EVENT_HDRLEN 16u
#define PW_PROC_EVENT_MAXLEN 40u /* sizeof(struct proc_event) */
#define PW_COMM_LEN 16

enum pw_event_type {
	PW_EV_ACK = 0, /* subscription acknowledgement (what == PROC_EVENT_NONE) */
	PW_EV_FORK,
	PW_EV_EXEC,
	PW_EV_EXIT,
	PW_EV_UID,
	PW_EV_GID,
	PW_EV_SID,
	PW_EV_PTRACE,
	PW_EV_COMM,
	PW_EV_COREDUMP,
	PW_EV_OVERFLOW, /* synthetic: the kernel dropped events (ENOBUFS) */
	PW_EV__COUNT
};

#define PW_EVF_STARTUP 0x1 /* synthetic exec for a process found by a /proc scan */

struct pw_event {
	enum pw_event_type type;
	uint32_t flags;    /* PW_EVF_*, set by the daemon, never by the parser */
	uint32_t cpu;
	uint64_t ktime_ns; /* kernel monotonic (CLOCK_MONOTONIC) time of the event */
	uint32_t seq;      /* cn_msg seq: the kernel's per-CPU event counter */
	int32_t pid, tgid; /* the process the event is about (fork: the child) */
	union {
		struct { uint32_t err, cn_ack; } ack; /* cn_ack: the request's cn_msg.ack + 1 */
		struct { int32_t parent_pid, parent_tgid, child_pid, child_tgid; } fork;
		struct {
			uint32_t exit_code; /* raw wait status */
			int32_t exit_signal;
			int32_t parent_pid, parent_tgid;
		} exit;
		struct { uint32_t real, effective; } id; /* uid: ruid/euid, gid: rgid/egid */
		struct { int32_t tracer_pid, tracer_tgid; } ptrace;
		struct { char comm[PW_COMM_LEN + 1]; } comm; /* always NUL-terminated */
		struct { int32_t parent_pid, parent_tgid; } coredump;
		struct { uint64_t lost; } overflow;
	} u;
};

enum pw_parse_status {
	PW_PARSE_OK = 0,
	PW_PARSE_END,             /* no more messages in the buffer */
	PW_PARSE_SKIP,            /* a valid message that carries no event (NOOP, ERROR 0) */
	PW_PARSE_TRUNCATED,       /* the buffer ends inside a header or a claimed length,
				     or a DONE message is too short for a cn_msg header */
	PW_PARSE_BAD_HEADER,      /* nlmsg_len smaller than a netlink header */
	PW_PARSE_BAD_NETLINK_TYPE,/* nlmsg_type not NOOP/ERROR/DONE/OVERRUN */
	PW_PARSE_OVERRUN,         /* NLMSG_OVERRUN */
	PW_PARSE_NETLINK_ERROR,   /* NLMSG_ERROR with a nonzero error */
	PW_PARSE_BAD_CONNECTOR_ID,/* cn_msg id is not CN_IDX_PROC/CN_VAL_PROC */
	PW_PARSE_BAD_LENGTH,      /* cn_msg.len larger than the netlink payload holds */
	PW_PARSE_SHORT_EVENT,     /* cn_msg.len too small for the event type */
	PW_PARSE_UNKNOWN_EVENT,   /* proc_event.what is not a known type */
	PW_PARSE_BUFFER_TOO_SMALL,/* more events than the output array holds */
	PW_PARSE__COUNT
};

/* Cursor over a buffer of netlink messages. */
struct pw_parse_cursor {
	const uint8_t *buf;
	size_t len;
	size_t off;
};

void pw_parse_init(struct pw_parse_cursor *c, const void *buf, size_t len);

/* Parse the message at the cursor into *ev and advance. Returns PW_PARSE_OK
 * (ev filled), PW_PARSE_SKIP, PW_PARSE_END, or an error. After an error whose
 * message length was sound (anything but TRUNCATED and BAD_HEADER) the cursor
 * has moved past the bad message, so the caller may go on; after BAD_HEADER,
 * or TRUNCATED at the netlink layer, the cursor is at the end. */
enum pw_parse_status pw_parse_next(struct pw_parse_cursor *c, struct pw_event *ev);

/* Parse a whole buffer into evs[0..cap). Stops at the first error and
 * returns it; *n is the number of events filled before it. *err_off gets the
 * byte offset of the failing message (may be NULL). */
enum pw_parse_status pw_parse_buffer(const void *buf, size_t len, struct pw_event *evs,
				     size_t cap, size_t *n, size_t *err_off);

const char *pw_parse_status_name(enum pw_parse_status s);
const char *pw_event_type_name(enum pw_event_type t);
/* -1 when name is not an event type. */
int pw_event_type_from_name(const char *name);
/* The kernel subscription bit for a type (0 for ack/overflow). */
uint32_t pw_event_type_mask(enum pw_event_type t);

/* The type-specific fields of an event as users see them (Lua tables, JSON
 * lines, --dump): name, integer value, and whether it is a boolean. The
 * comm of a comm event is a string and not in this list. */
struct pw_field {
	const char *name;
	int64_t value;
	bool boolean;
};
#define PW_EVENT_FIELDS_MAX 8
/* Fill f (PW_EVENT_FIELDS_MAX entries); returns how many. */
int pw_event_fields(const struct pw_event *ev, struct pw_field *f);

/* Decoding of the exit wait status. */
static inline int pw_exit_exited(uint32_t code) { return (code & 0x7f) == 0; }
static inline int pw_exit_status(uint32_t code) { return (int)((code >> 8) & 0xff); }
static inline int pw_exit_term_signal(uint32_t code) { return (int)(code & 0x7f); }
static inline int pw_exit_core_dumped(uint32_t code) { return (code & 0x80) != 0; }

#endif
