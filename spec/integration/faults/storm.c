/* storm.c: a thread create/exit storm for faults_spec.lua. Two pthread
 * workers each create and join a no-op thread in a loop for SECONDS
 * (argv[1], default 1.5), then it prints how many threads were made:
 * "threads=N". Each thread is a fork and an exit event for the proc
 * connector, as fast as the machine can make them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds = 1.5;
static long made[2];

static void *noop(void *arg) { return arg; }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
	long *n = arg;
	double end = now() + seconds;
	while (now() < end) {
		for (int i = 0; i < 64; i++) {
			pthread_t t;
			if (pthread_create(&t, NULL, noop, NULL) != 0)
				continue;
			pthread_join(t, NULL);
			(*n)++;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		seconds = atof(argv[1]);
	if (seconds <= 0)
		seconds = 1.5;
	pthread_t w[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&w[i], NULL, worker, &made[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	printf("threads=%ld\n", made[0] + made[1]);
	return 0;
}
