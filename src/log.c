/* log.c: diagnostics about procwarden itself, one line each on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

enum pw_log_level pw_log_threshold = PW_LOG_NOTICE;

void pw_log(enum pw_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "notice", "info", "debug"};
	if (level > pw_log_threshold)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "procwarden: %s: %s\n", names[level], line);
}
