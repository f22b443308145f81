/* log.h: diagnostics about procwarden itself, on stderr (rule output goes
 * through sink.c). */
#ifndef PW_LOG_H
#define PW_LOG_H

enum pw_log_level { PW_LOG_ERROR, PW_LOG_WARNING, PW_LOG_NOTICE, PW_LOG_INFO, PW_LOG_DEBUG };

extern enum pw_log_level pw_log_threshold; /* default NOTICE; -v raises, -q lowers */

__attribute__((format(printf, 2, 3))) void pw_log(enum pw_log_level level, const char *fmt, ...);

#endif
