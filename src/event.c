/* event.c: the pure proc connector parser. Bytes in, struct pw_event out;
 * every layer (nlmsghdr, cn_msg, proc_event, per-type payload) is bounds
 * checked; no I/O, no allocation. Fields are copied with memcpy because the
 * kernel's layout leaves timestamp_ns unaligned in the buffer. */
#include "event.h"

#include <string.h>

#define NLMSG_NOOP_ 0x1
#define NLMSG_ERROR_ 0x2
#define NLMSG_DONE_ 0x3
#define NLMSG_OVERRUN_ 0x4
#define NLMSG_ALIGN_(len) (((len) + 3u) & ~(size_t)3u)

static uint32_t rd_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static int32_t rd_i32(const uint8_t *p)
{
	int32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint16_t rd_u16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t rd_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static const struct {
	uint32_t what;
	enum pw_event_type type;
	size_t payload; /* bytes of event_data this type needs */
	const char *name;
} kinds[] = {
	{PW_PROC_EVENT_NONE, PW_EV_ACK, 4, "ack"},
	{PW_PROC_EVENT_FORK, PW_EV_FORK, 16, "fork"},
	{PW_PROC_EVENT_EXEC, PW_EV_EXEC, 8, "exec"},
	{PW_PROC_EVENT_EXIT, PW_EV_EXIT, 24, "exit"},
	{PW_PROC_EVENT_UID, PW_EV_UID, 16, "uid"},
	{PW_PROC_EVENT_GID, PW_EV_GID, 16, "gid"},
	{PW_PROC_EVENT_SID, PW_EV_SID, 8, "sid"},
	{PW_PROC_EVENT_PTRACE, PW_EV_PTRACE, 16, "ptrace"},
	{PW_PROC_EVENT_COMM, PW_EV_COMM, 24, "comm"},
	{PW_PROC_EVENT_COREDUMP, PW_EV_COREDUMP, 16, "coredump"},
	{0, PW_EV_OVERFLOW, 0, "overflow"},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

const char *pw_event_type_name(enum pw_event_type t)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (kinds[i].type == t)
			return kinds[i].name;
	return "?";
}

int pw_event_type_from_name(const char *name)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].name, name) == 0)
			return (int)kinds[i].type;
	return -1;
}

uint32_t pw_event_type_mask(enum pw_event_type t)
{
	if (t == PW_EV_ACK || t == PW_EV_OVERFLOW)
		return 0;
	for (size_t i = 0; i < NKINDS; i++)
		if (kinds[i].type == t)
			return kinds[i].what;
	return 0;
}

const char *pw_parse_status_name(enum pw_parse_status s)
{
	static const char *const names[PW_PARSE__COUNT] = {
		[PW_PARSE_OK] = "ok",
		[PW_PARSE_END] = "end",
		[PW_PARSE_SKIP] = "skip",
		[PW_PARSE_TRUNCATED] = "truncated",
		[PW_PARSE_BAD_HEADER] = "bad_header",
		[PW_PARSE_BAD_NETLINK_TYPE] = "bad_netlink_type",
		[PW_PARSE_OVERRUN] = "overrun",
		[PW_PARSE_NETLINK_ERROR] = "netlink_error",
		[PW_PARSE_BAD_CONNECTOR_ID] = "bad_connector_id",
		[PW_PARSE_BAD_LENGTH] = "bad_length",
		[PW_PARSE_SHORT_EVENT] = "short_event",
		[PW_PARSE_UNKNOWN_EVENT] = "unknown_event",
		[PW_PARSE_BUFFER_TOO_SMALL] = "buffer_too_small",
	};
	return (unsigned)s < PW_PARSE__COUNT ? names[s] : "?";
}

int pw_event_fields(const struct pw_event *ev, struct pw_field *f)
{
	int n = 0;
#define F(k, v) (f[n].name = (k), f[n].value = (int64_t)(v), f[n].boolean = false, n++)
	switch (ev->type) {
	case PW_EV_ACK:
		F("err", ev->u.ack.err);
		F("ack", ev->u.ack.cn_ack);
		break;
	case PW_EV_FORK:
		F("parent_pid", ev->u.fork.parent_pid);
		F("parent_tgid", ev->u.fork.parent_tgid);
		F("child_pid", ev->u.fork.child_pid);
		F("child_tgid", ev->u.fork.child_tgid);
		break;
	case PW_EV_EXIT: {
		uint32_t c = ev->u.exit.exit_code;
		bool exited = pw_exit_exited(c);
		F("exit_code", c);
		F("exit_signal", ev->u.exit.exit_signal);
		F("parent_pid", ev->u.exit.parent_pid);
		F("parent_tgid", ev->u.exit.parent_tgid);
		if (exited)
			F("exit_status", pw_exit_status(c));
		else
			F("term_signal", pw_exit_term_signal(c));
		F("core_dumped", !exited && pw_exit_core_dumped(c));
		f[n - 1].boolean = true;
		break;
	}
	case PW_EV_UID:
		F("ruid", ev->u.id.real);
		F("euid", ev->u.id.effective);
		break;
	case PW_EV_GID:
		F("rgid", ev->u.id.real);
		F("egid", ev->u.id.effective);
		break;
	case PW_EV_PTRACE:
		F("tracer_pid", ev->u.ptrace.tracer_pid);
		F("tracer_tgid", ev->u.ptrace.tracer_tgid);
		break;
	case PW_EV_COREDUMP:
		F("parent_pid", ev->u.coredump.parent_pid);
		F("parent_tgid", ev->u.coredump.parent_tgid);
		break;
	case PW_EV_OVERFLOW:
		F("lost", ev->u.overflow.lost);
		break;
	case PW_EV_EXEC:
	case PW_EV_SID:
	case PW_EV_COMM:
	case PW_EV__COUNT:
		break;
	}
#undef F
	return n;
}

void pw_parse_init(struct pw_parse_cursor *c, const void *buf, size_t len)
{
	c->buf = buf;
	c->len = buf ? len : 0;
	c->off = 0;
}

/* Fill ev from a proc_event of pe_len bytes (pe_len <= what is readable). */
static enum pw_parse_status parse_proc_event(const uint8_t *pe, size_t pe_len, uint32_t seq,
					     uint32_t cn_ack, struct pw_event *ev)
{
	if (pe_len < PW_PROC_EVENT_HDRLEN)
		return PW_PARSE_SHORT_EVENT;
	uint32_t what = rd_u32(pe);
	size_t k;
	for (k = 0; k < NKINDS; k++)
		if (kinds[k].what == what && kinds[k].type != PW_EV_OVERFLOW)
			break;
	if (k == NKINDS)
		return PW_PARSE_UNKNOWN_EVENT;
	if (pe_len - PW_PROC_EVENT_HDRLEN < kinds[k].payload)
		return PW_PARSE_SHORT_EVENT;

	const uint8_t *d = pe + PW_PROC_EVENT_HDRLEN;
	memset(ev, 0, sizeof *ev);
	ev->type = kinds[k].type;
	ev->cpu = rd_u32(pe + 4);
	ev->ktime_ns = rd_u64(pe + 8);
	ev->seq = seq;
	switch (ev->type) {
	case PW_EV_ACK:
		ev->u.ack.err = rd_u32(d);
		ev->u.ack.cn_ack = cn_ack;
		break;
	case PW_EV_FORK:
		ev->u.fork.parent_pid = rd_i32(d);
		ev->u.fork.parent_tgid = rd_i32(d + 4);
		ev->u.fork.child_pid = rd_i32(d + 8);
		ev->u.fork.child_tgid = rd_i32(d + 12);
		ev->pid = ev->u.fork.child_pid;
		ev->tgid = ev->u.fork.child_tgid;
		break;
	case PW_EV_EXIT:
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		ev->u.exit.exit_code = rd_u32(d + 8);
		ev->u.exit.exit_signal = rd_i32(d + 12);
		ev->u.exit.parent_pid = rd_i32(d + 16);
		ev->u.exit.parent_tgid = rd_i32(d + 20);
		break;
	case PW_EV_UID:
	case PW_EV_GID:
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		ev->u.id.real = rd_u32(d + 8);
		ev->u.id.effective = rd_u32(d + 12);
		break;
	case PW_EV_PTRACE:
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		ev->u.ptrace.tracer_pid = rd_i32(d + 8);
		ev->u.ptrace.tracer_tgid = rd_i32(d + 12);
		break;
	case PW_EV_COMM: {
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		const uint8_t *s = d + 8;
		size_t n = 0;
		while (n < PW_COMM_LEN && s[n] != 0)
			n++;
		memcpy(ev->u.comm.comm, s, n);
		ev->u.comm.comm[n] = 0;
		break;
	}
	case PW_EV_COREDUMP:
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		ev->u.coredump.parent_pid = rd_i32(d + 8);
		ev->u.coredump.parent_tgid = rd_i32(d + 12);
		break;
	case PW_EV_EXEC:
	case PW_EV_SID:
		ev->pid = rd_i32(d);
		ev->tgid = rd_i32(d + 4);
		break;
	case PW_EV_OVERFLOW:
	case PW_EV__COUNT:
		return PW_PARSE_UNKNOWN_EVENT;
	}
	return PW_PARSE_OK;
}

enum pw_parse_status pw_parse_next(struct pw_parse_cursor *c, struct pw_event *ev)
{
	if (c->off >= c->len)
		return PW_PARSE_END;
	size_t room = c->len - c->off;
	const uint8_t *m = c->buf + c->off;
	if (room < PW_NLMSG_HDRLEN) {
		c->off = c->len;
		return PW_PARSE_TRUNCATED;
	}
	uint32_t nlen = rd_u32(m);
	uint16_t ntype = rd_u16(m + 4);
	if (nlen < PW_NLMSG_HDRLEN) {
		c->off = c->len;
		return PW_PARSE_BAD_HEADER;
	}
	if (nlen > room) {
		c->off = c->len;
		return PW_PARSE_TRUNCATED;
	}
	/* The message is sound as a netlink message: step past it (and its
	 * alignment padding) whatever its content turns out to be. */
	size_t step = NLMSG_ALIGN_((size_t)nlen);
	c->off = step >= room ? c->len : c->off + step;

	const uint8_t *pl = m + PW_NLMSG_HDRLEN;
	size_t pl_len = nlen - PW_NLMSG_HDRLEN;
	switch (ntype) {
	case NLMSG_NOOP_:
		return PW_PARSE_SKIP;
	case NLMSG_ERROR_:
		if (pl_len >= 4 && rd_i32(pl) == 0)
			return PW_PARSE_SKIP; /* an ACK */
		return PW_PARSE_NETLINK_ERROR;
	case NLMSG_OVERRUN_:
		return PW_PARSE_OVERRUN;
	case NLMSG_DONE_:
		break; /* the connector sends every event as NLMSG_DONE */
	default:
		return PW_PARSE_BAD_NETLINK_TYPE;
	}
	if (pl_len < PW_CN_MSG_HDRLEN)
		return PW_PARSE_TRUNCATED;
	if (rd_u32(pl) != PW_CN_IDX_PROC || rd_u32(pl + 4) != PW_CN_VAL_PROC)
		return PW_PARSE_BAD_CONNECTOR_ID;
	uint32_t seq = rd_u32(pl + 8);
	uint16_t cn_len = rd_u16(pl + 16);
	if ((size_t)cn_len > pl_len - PW_CN_MSG_HDRLEN)
		return PW_PARSE_BAD_LENGTH;
	return parse_proc_event(pl + PW_CN_MSG_HDRLEN, cn_len, seq, rd_u32(pl + 12), ev);
}

enum pw_parse_status pw_parse_buffer(const void *buf, size_t len, struct pw_event *evs,
				     size_t cap, size_t *n, size_t *err_off)
{
	struct pw_parse_cursor c;
	struct pw_event tmp;
	pw_parse_init(&c, buf, len);
	*n = 0;
	for (;;) {
		size_t at = c.off;
		enum pw_parse_status st = pw_parse_next(&c, &tmp);
		if (st == PW_PARSE_END)
			return PW_PARSE_OK;
		if (st == PW_PARSE_SKIP)
			continue;
		if (st == PW_PARSE_OK && *n == cap)
			st = PW_PARSE_BUFFER_TOO_SMALL;
		if (st != PW_PARSE_OK) {
			if (err_off)
				*err_off = at;
			return st;
		}
		evs[(*n)++] = tmp;
	}
}
