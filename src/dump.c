/* dump.c: --dump (text). One line per event, like forkstat/extrace: the
 * kernel's fields, and the process's exe and argv as the process table
 * captured them. --dump=json prints replay.c's record lines instead. */
#include "dump.h"

#include <string.h>

void dump_event(FILE *out, const struct pw_event *ev, const struct pw_ctx *ctx, int64_t wall_offset_ns)
{
	struct pw_field f[PW_EVENT_FIELDS_MAX];
	int nf = pw_event_fields(ev, f);
	char when[40];
	sink_format_time((double)ev->ktime_ns / 1e9 + (double)wall_offset_ns / 1e9, when, sizeof when);
	fprintf(out, "%s %-8s pid=%d tgid=%d", when, pw_event_type_name(ev->type), ev->pid, ev->tgid);
	for (int i = 0; i < nf; i++)
		fprintf(out, " %s=%lld", f[i].name, (long long)f[i].value);
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
