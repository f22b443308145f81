/* storm SECONDS [WORKERS]: a thread create/exit storm. WORKERS threads
 * (default 2) each create a thread that returns at once and join it, in a
 * loop, for SECONDS. Each thread costs the kernel two proc connector events
 * (fork, exit). Prints "threads=N seconds=S rate=R" (threads per second). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;

static void *noop(void *arg)
{
	return arg;
}

static void *worker(void *arg)
{
	long n = 0;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 64 * 1024);
	while (!stop) {
		pthread_t t;
		if (pthread_create(&t, &at, noop, NULL) == 0) {
			pthread_join(t, NULL);
			n++;
		}
	}
	*(long *)arg = n;
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: storm SECONDS [WORKERS]\n");
		return 2;
	}
	double secs = atof(argv[1]);
	int nw = argc > 2 ? atoi(argv[2]) : 2;
	if (nw < 1 || nw > 256)
		return 2;
	pthread_t w[256];
	long counts[256];
	double t0 = now_s();
	for (int i = 0; i < nw; i++)
		pthread_create(&w[i], NULL, worker, &counts[i]);
	struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
	while (nanosleep(&ts, &ts) < 0)
		;
	stop = 1;
	long total = 0;
	for (int i = 0; i < nw; i++) {
		pthread_join(w[i], NULL);
		total += counts[i];
	}
	double el = now_s() - t0;
	printf("threads=%ld seconds=%.3f rate=%.0f\n", total, el, total / el);
	return 0;
}
