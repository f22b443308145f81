/* dump.c: --dump. One line per event, like forkstat/extrace: the kernel's
 * fields, and for exec the exe and argv read from /proc at once. */
#include "dump.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

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
		F("parent_tgid", ev->u.exit.parent_tgid);
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
		F("tracer_tgid", ev->u.ptrace.tracer_tgid);
		break;
	case PW_EV_COREDUMP:
		F("parent_pid", ev->u.coredump.parent_pid);
		F("parent_tgid", ev->u.coredump.parent_tgid);
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

/* argv joined by spaces (NULs replaced), in buf. */
static size_t read_argv(pid_t pid, char *buf, size_t cap)
{
	bool trunc;
	ssize_t n = proc_read_file(pid, "cmdline", buf, cap - 1, &trunc);
	if (n <= 0)
		return 0;
	while (n > 0 && buf[n - 1] == 0)
		n--;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == 0)
			buf[i] = ' ';
	buf[n] = 0;
	return (size_t)n;
}

void dump_event(FILE *out, enum pw_format fmt, const struct pw_event *ev, int64_t wall_offset_ns)
{
	struct field f[8];
	int nf = event_fields(ev, f);
	double t = (double)ev->ktime_ns / 1e9 + (double)wall_offset_ns / 1e9;
	char when[40], exe[4096] = "", argv[PW_ARGV_CAP] = "";
	bool is_exec = ev->type == PW_EV_EXEC;
	if (is_exec) {
		if (proc_read_exe(ev->tgid, exe, sizeof exe) < 0)
			exe[0] = 0;
		read_argv(ev->tgid, argv, sizeof argv);
	}
	if (fmt == PW_FMT_JSON) {
		json_t *o = json_object();
		if (!o)
			return;
		json_object_set_new(o, "type", json_string(pw_event_type_name(ev->type)));
		json_object_set_new(o, "time", json_real(t));
		json_object_set_new(o, "ktime_ns", json_integer((json_int_t)ev->ktime_ns));
		json_object_set_new(o, "cpu", json_integer(ev->cpu));
		json_object_set_new(o, "pid", json_integer(ev->pid));
		json_object_set_new(o, "tgid", json_integer(ev->tgid));
		for (int i = 0; i < nf; i++)
			json_object_set_new(o, f[i].name, json_integer(f[i].value));
		if (ev->type == PW_EV_COMM)
			json_object_set_new(o, "comm", json_string_nocheck(ev->u.comm.comm));
		if (is_exec && exe[0])
			json_object_set_new(o, "exe", json_string_nocheck(exe));
		if (is_exec && argv[0])
			json_object_set_new(o, "cmdline", json_string_nocheck(argv));
		char *line = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (line) {
			fprintf(out, "%s\n", line);
			free(line);
		}
		return;
	}
	sink_format_time(t, when, sizeof when);
	fprintf(out, "%s %-8s pid=%d tgid=%d", when, pw_event_type_name(ev->type), ev->pid, ev->tgid);
	for (int i = 0; i < nf; i++)
		fprintf(out, " %s=%lld", f[i].name, f[i].value);
	if (ev->type == PW_EV_COMM)
		fprintf(out, " comm=%s", ev->u.comm.comm);
	if (is_exec)
		fprintf(out, " exe=%s argv=%s", exe[0] ? exe : "-", argv[0] ? argv : "-");
	fputc('\n', out);
}
