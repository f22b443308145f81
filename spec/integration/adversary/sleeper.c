/* sleeper.c: a victim of spec/integration/adversary_spec.lua that stays
 * until killed, whatever its arguments: it sleeps argv[1] milliseconds when
 * that is a number (at most a minute), else 5 s, then exits 0. Copied under
 * the names the attacks need (nc, ~/.cache/systemd, a long path). */
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	char *end = NULL;
	long ms = argc > 1 ? strtol(argv[1], &end, 10) : 0;
	if (argc < 2 || !end || *end || ms <= 0 || ms > 60000)
		ms = 5000;
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
	return 0;
}
