/* soak_storm.c: a thread create/exit storm for make soak: W workers each
 * create and join threads in a loop until SECONDS pass. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds;
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
static void *nothing(void *arg) { return arg; }
static void *worker(void *arg)
{
	double end = now() + seconds;
	unsigned long n = 0;
	while (now() < end) {
		pthread_t t;
		if (pthread_create(&t, NULL, nothing, NULL) == 0 && pthread_join(t, NULL) == 0)
			n++;
	}
	*(unsigned long *)arg = n;
	return NULL;
}
int main(int argc, char **argv)
{
	int workers = argc > 2 ? atoi(argv[2]) : 2;
	seconds = argc > 1 ? atof(argv[1]) : 10;
	pthread_t t[64];
	unsigned long n[64] = {0}, total = 0;
	for (int i = 0; i < workers && i < 64; i++)
		pthread_create(&t[i], NULL, worker, &n[i]);
	for (int i = 0; i < workers && i < 64; i++) {
		pthread_join(t[i], NULL);
		total += n[i];
	}
	printf("%lu\n", total);
	return 0;
}
