/* dump.c: --dump (text). One line per event, like forkstat/extrace: the
 * kernel's fields, and the process's exe and argv as the process table
 * captured them. --dump=json prints replay.c's record lines instead. */
#include "dump.h"

#include <string.h>

struct field {
	const char *name;
	long long value;
};

/* The type-specific integer fields of ev; returns how many. */
static int event_fields(const struct pw_event *ev, struct field *f)
{
	int n = 0;
#define F(k, v) (f[n].name = (k), f[n].value = (long long)(v), n++)
	switch (ev->type) {
	case PW_EV_FORK:
		F("parent_pid", ev->u.fork.parent_pid);
		F("parent_tgid", ev->u.fork.parent_tgid);
		break;
	case PW_EV_EXIT:
		F("exit_code", ev->u.exit.exit_code);
		F("exit_signal", ev->u.exit.exit_signal);
		F("parent_pid", ev->u.exit.parent_pid);
		break;
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
		break;
	case PW_EV_COREDUMP:
		F("parent_pid", ev->u.coredump.parent_pid);
		break;
	case PW_EV_OVERFLOW:
		F("lost", ev->u.overflow.lost);
		break;
	default:
		break;
	}
#undef F
	return n;
}

void dump_event(FILE *out, const struct pw_event *ev, const struct pw_ctx *ctx, int64_t wall_offset_ns)
{
	struct field f[8];
	int nf = event_fields(ev, f);
	char when[40];
	sink_format_time((double)ev->ktime_ns / 1e9 + (double)wall_offset_ns / 1e9, when, sizeof when);
	fprintf(out, "%s %-8s pid=%d tgid=%d", when, pw_event_type_name(ev->type), ev->pid, ev->tgid);
	for (int i = 0; i < nf; i++)
		fprintf(out, " %s=%lld", f[i].name, f[i].value);
	if (ev->type == PW_EV_COMM)
		fprintf(out, " comm=%s", ev->u.comm.comm);
	const struct pw_image *img = ctx && ctx->known ? ctx->img : NULL;
	if (ev->type == PW_EV_EXEC || ev->type == PW_EV_EXIT) {
		fprintf(out, " exe=%s", img && img->exe ? img->exe : "-");
		if (ev->type == PW_EV_EXEC) {
			fputs(" argv=", out);
			if (!img || img->argv_len == 0)
				fputc('-', out);
			for (size_t k = 0; img && k + 1 < img->argv_len; k++)
				fputc(img->argv[k] ? img->argv[k] : ' ', out);
		}
	}
	fputc('\n', out);
}
