/* fuzz_parser.c: libFuzzer target for the proc connector parser (src/event.c),
 * the first parser of outside input. Any violated invariant calls __builtin_trap().
 *
 * (a) pw_parse_buffer with a zero, a small and a large (never too small)
 *     output capacity: n <= cap; status in range and named; on OK every event
 *     has a valid type (< PW_EV__COUNT, not PW_EV_OVERFLOW) and comm is
 *     NUL-terminated within its 17 bytes; on error err_off < len and is
 *     4-aligned; the three runs agree with each other.
 * (b) the same buffer walked with pw_parse_next: the cursor only moves
 *     forward, never past len, stays 4-aligned, and the walk ends within
 *     len/4 + 2 steps; each event matches the bytes of its message header.
 * (c) the events (b) yields before its first error equal those of (a), and
 *     (a) reports that same error at that same offset.
 *
 * Build (clang 14, libFuzzer from libclang-rt-14-dev):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -D_GNU_SOURCE -Isrc spec/fuzz/fuzz_parser.c src/event.c -o build/fuzz/fuzz_parser
 * Seeds: spec/fuzz/corpus/parser (spec/fuzz/capture.c records real ones). */
#include "event.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                        \
	do {                               \
		if (!(cond))               \
			__builtin_trap();  \
	} while (0)

#define SMALL_CAP 2u

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static void check_status(enum pw_parse_status st)
{
	CHECK((unsigned)st < PW_PARSE__COUNT);
	const char *name = pw_parse_status_name(st);
	CHECK(name != NULL && strcmp(name, "?") != 0);
}

static void check_event(const struct pw_event *ev)
{
	CHECK((unsigned)ev->type < PW_EV__COUNT);
	CHECK(ev->type != PW_EV_OVERFLOW);
	const char *name = pw_event_type_name(ev->type);
	CHECK(name != NULL && strcmp(name, "?") != 0);
	CHECK(pw_event_type_from_name(name) == (int)ev->type);
	if (ev->type == PW_EV_COMM)
		CHECK(memchr(ev->u.comm.comm, 0, sizeof ev->u.comm.comm) != NULL);
}

/* Field-by-field equality (struct padding and unused union bytes are not
 * compared: struct assignment need not copy them). */
static int event_eq(const struct pw_event *a, const struct pw_event *b)
{
	if (a->type != b->type || a->cpu != b->cpu || a->ktime_ns != b->ktime_ns ||
	    a->seq != b->seq || a->pid != b->pid || a->tgid != b->tgid)
		return 0;
	switch (a->type) {
	case PW_EV_ACK:
		return a->u.ack.err == b->u.ack.err && a->u.ack.cn_ack == b->u.ack.cn_ack;
	case PW_EV_FORK:
		return a->u.fork.parent_pid == b->u.fork.parent_pid &&
		       a->u.fork.parent_tgid == b->u.fork.parent_tgid &&
		       a->u.fork.child_pid == b->u.fork.child_pid &&
		       a->u.fork.child_tgid == b->u.fork.child_tgid;
	case PW_EV_EXIT:
		return a->u.exit.exit_code == b->u.exit.exit_code &&
		       a->u.exit.exit_signal == b->u.exit.exit_signal &&
		       a->u.exit.parent_pid == b->u.exit.parent_pid &&
		       a->u.exit.parent_tgid == b->u.exit.parent_tgid;
	case PW_EV_UID:
	case PW_EV_GID:
		return a->u.id.real == b->u.id.real && a->u.id.effective == b->u.id.effective;
	case PW_EV_PTRACE:
		return a->u.ptrace.tracer_pid == b->u.ptrace.tracer_pid &&
		       a->u.ptrace.tracer_tgid == b->u.ptrace.tracer_tgid;
	case PW_EV_COMM:
		return strcmp(a->u.comm.comm, b->u.comm.comm) == 0;
	case PW_EV_COREDUMP:
		return a->u.coredump.parent_pid == b->u.coredump.parent_pid &&
		       a->u.coredump.parent_tgid == b->u.coredump.parent_tgid;
	case PW_EV_EXEC:
	case PW_EV_SID:
		return 1;
	case PW_EV_OVERFLOW:
	case PW_EV__COUNT:
		break;
	}
	return 0;
}

struct run {
	enum pw_parse_status st;
	size_t n, err_off;
	struct pw_event *evs;
};

/* (a): one pw_parse_buffer run; evs is allocated with exactly cap entries so
 * ASan catches a write past cap. */
static void run_buffer(const uint8_t *data, size_t len, size_t cap, struct run *r)
{
	r->evs = malloc(cap * sizeof *r->evs);
	CHECK(r->evs != NULL || cap == 0);
	r->n = (size_t)-1;
	r->err_off = (size_t)-1;
	r->st = pw_parse_buffer(data, len, r->evs, cap, &r->n, &r->err_off);
	check_status(r->st);
	CHECK(r->st != PW_PARSE_END && r->st != PW_PARSE_SKIP);
	CHECK(r->n <= cap);
	for (size_t i = 0; i < r->n; i++)
		check_event(&r->evs[i]);
	if (r->st != PW_PARSE_OK) {
		CHECK(r->err_off < len);
		CHECK(r->err_off % 4 == 0);
	}
	/* err_off may be NULL */
	size_t n2 = (size_t)-1;
	CHECK(pw_parse_buffer(data, len, r->evs, cap, &n2, NULL) == r->st);
	CHECK(n2 == r->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	/* Every message is at least a 16-byte netlink header, so len/16 + 1
	 * entries always suffice. */
	size_t large_cap = len / PW_NLMSG_HDRLEN + 1;
	struct run zero, small, large;
	run_buffer(data, len, 0, &zero);
	run_buffer(data, len, SMALL_CAP, &small);
	run_buffer(data, len, large_cap, &large);
	CHECK(large.st != PW_PARSE_BUFFER_TOO_SMALL);

	/* The capped runs are prefixes of the large one. */
	const struct run *capped[2] = {&zero, &small};
	for (int k = 0; k < 2; k++) {
		const struct run *r = capped[k];
		size_t cap = k == 0 ? 0 : SMALL_CAP;
		if (large.n <= cap) {
			CHECK(r->st == large.st && r->n == large.n);
			if (r->st != PW_PARSE_OK)
				CHECK(r->err_off == large.err_off);
		} else {
			CHECK(r->st == PW_PARSE_BUFFER_TOO_SMALL && r->n == cap);
		}
		for (size_t i = 0; i < r->n; i++)
			CHECK(event_eq(&r->evs[i], &large.evs[i]));
	}

	/* (b): walk with pw_parse_next, on past errors, until END. */
	struct pw_event *walk = malloc(large_cap * sizeof *walk);
	CHECK(walk != NULL);
	size_t nwalk = 0, first_err_off = 0, steps = 0;
	enum pw_parse_status first_err = PW_PARSE_OK;
	size_t ev_off[SMALL_CAP + 1]; /* offsets of the first events */
	struct pw_parse_cursor c;
	pw_parse_init(&c, data, len);
	CHECK(c.off == 0 && c.len == len && c.buf == data);
	for (;;) {
		CHECK(++steps <= len / 4 + 2);
		size_t at = c.off;
		struct pw_event ev;
		memset(&ev, 0xa5, sizeof ev);
		enum pw_parse_status st = pw_parse_next(&c, &ev);
		check_status(st);
		CHECK(st != PW_PARSE_BUFFER_TOO_SMALL);
		CHECK(c.buf == data && c.len == len);
		CHECK(c.off <= len);
		CHECK(c.off % 4 == 0 || c.off == len);
		if (st == PW_PARSE_END) {
			CHECK(at >= len && c.off == at);
			break;
		}
		CHECK(at < len && c.off > at);
		if (st == PW_PARSE_BAD_HEADER)
			CHECK(c.off == len);
		if (st == PW_PARSE_OK) {
			check_event(&ev);
			/* The event came from a whole connector message at `at`. */
			CHECK(len - at >= PW_NLMSG_HDRLEN + PW_CN_MSG_HDRLEN + PW_PROC_EVENT_HDRLEN);
			const uint8_t *m = data + at;
			uint32_t nlen = rd32(m);
			CHECK(nlen <= len - at && c.off - at >= nlen);
			CHECK(rd16(m + 4) == 3 /* NLMSG_DONE */);
			CHECK(rd32(m + 16) == PW_CN_IDX_PROC && rd32(m + 20) == PW_CN_VAL_PROC);
			CHECK(ev.seq == rd32(m + 24));
			CHECK(PW_NLMSG_HDRLEN + PW_CN_MSG_HDRLEN + (size_t)rd16(m + 32) <= nlen);
			CHECK(ev.cpu == rd32(m + 40));
			CHECK(pw_event_type_mask(ev.type) == rd32(m + 36));
			if (first_err == PW_PARSE_OK) {
				if (nwalk <= SMALL_CAP)
					ev_off[nwalk] = at;
				CHECK(nwalk < large_cap);
				walk[nwalk++] = ev;
			}
		} else if (st != PW_PARSE_SKIP && first_err == PW_PARSE_OK) {
			first_err = st;
			first_err_off = at;
		}
	}

	/* (c): (a) and (b) agree up to the first error. */
	CHECK(large.st == first_err);
	CHECK(large.n == nwalk);
	if (first_err != PW_PARSE_OK)
		CHECK(large.err_off == first_err_off);
	for (size_t i = 0; i < nwalk; i++)
		CHECK(event_eq(&walk[i], &large.evs[i]));
	/* BUFFER_TOO_SMALL points at the first event that did not fit. */
	if (small.st == PW_PARSE_BUFFER_TOO_SMALL)
		CHECK(small.err_off == ev_off[SMALL_CAP]);
	if (zero.st == PW_PARSE_BUFFER_TOO_SMALL)
		CHECK(zero.err_off == ev_off[0]);

	free(walk);
	free(zero.evs);
	free(small.evs);
	free(large.evs);
	return 0;
}
