/* countargs.c: what a rule's exec() child received, for
 * spec/integration/adversary_spec.lua.
 *
 *   countargs OUT arg3 arg4 ...   (environment: PWADV_1=v1 ... PWADV_N=vN)
 *
 * Writes "argc=A pwenv=E bad=B" to OUT (through a temporary name and a
 * rename, so a reader never sees half of it): A = argc, E = the number of
 * PWADV_i entries, B = arguments (argv[i] must be "arg<i+1>" from i = 2)
 * and entries (PWADV_i must be "v<i>") that are not what the rule sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int bad = 0, pwenv = 0;
	char want[64];
	for (int i = 2; i < argc; i++) {
		snprintf(want, sizeof want, "arg%d", i + 1);
		bad += strcmp(argv[i], want) != 0;
	}
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, "PWADV_", 6) != 0)
			continue;
		pwenv++;
		int n = atoi(*e + 6);
		snprintf(want, sizeof want, "PWADV_%d=v%d", n, n);
		bad += strcmp(*e, want) != 0;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return 1;
	fprintf(f, "argc=%d pwenv=%d bad=%d\n", argc, pwenv, bad);
	if (fclose(f) != 0 || rename(tmp, argv[1]) != 0)
		return 1;
	return 0;
}
