/* flip.c: the symlink race of spec/integration/adversary_spec.lua.
 *
 *   flip LINK TARGET_A TARGET_B SECONDS
 *
 * For SECONDS, points the symlink LINK at TARGET_A, then TARGET_B, and so
 * on, each time by creating LINK.flip and renaming it over LINK (so LINK
 * always exists). Run as the attacker, LINK is the attacker's own link.
 * Prints how many flips it made. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.flip", argv[1]);
	time_t end = time(NULL) + atoi(argv[4]);
	long flips = 0;
	while (time(NULL) < end) {
		const char *target = flips % 2 ? argv[3] : argv[2];
		unlink(tmp);
		if (symlink(target, tmp) < 0 || rename(tmp, argv[1]) < 0) {
			perror("flip");
			return 1;
		}
		flips++;
	}
	printf("flips=%ld\n", flips);
	return 0;
}
