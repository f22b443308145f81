/* victim_wait.h: the end of one victim exec, shared by the kill_latency and
 * race drivers: wait for the child at most a timeout (SIGTERM it after
 * that), reap it, and record how it ended and whether it reached its marker.
 * Compiled in with common/victim_wait.c (bench_cc adds common/ to the
 * include path). */
#ifndef BENCH_VICTIM_WAIT_H
#define BENCH_VICTIM_WAIT_H

#include <sys/types.h>

/* What happened to one victim exec. */
struct outcome {
	pid_t pid;
	int killed;  /* it died of SIGKILL */
	int marker;  /* its marker file exists: it reached main (ran) */
	int timeout; /* still alive after the timeout: it had to be SIGTERMed */
	int err;     /* execve's errno (0: it succeeded); set by the caller, not victim_wait */
};

/* Wait for the child PID (pidfd + poll) at most TIMEOUT_MS, SIGTERM it if it
 * is still alive then, reap it, and set o->pid, o->timeout, o->killed and
 * o->marker (MARKER exists). MARKER is removed. */
void victim_wait(pid_t pid, const char *marker, int timeout_ms, struct outcome *o);

/* CLOCK_MONOTONIC, in seconds. */
double now_s(void);

#endif
