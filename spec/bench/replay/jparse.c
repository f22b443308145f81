/* jparse FILE: parse every line of a JSON-lines file with jansson (the
 * library procwarden's --replay uses, same flags) and free it: the cost of
 * the JSON parsing alone, for scale. Prints "lines=N objects=M". */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: jparse FILE\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "re");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lines = 0, objects = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lines++;
		json_error_t err;
		json_t *o = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &err);
		if (o) {
			objects += json_is_object(o);
			json_decref(o);
		}
	}
	free(line);
	fclose(f);
	printf("lines=%ld objects=%ld\n", lines, objects);
	return 0;
}
