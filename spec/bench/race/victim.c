/* victim: a glibc program that proves it reached main: the very first thing
 * main does is create the marker file argv[1]. Then it sleeps 1 s, so that
 * a kill has time to land. Built twice: dynamically linked (ld.so and
 * libc.so run first) and with -static (no ELF interpreter; glibc's static
 * start-up still runs before main). */
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc > 1)
		open(argv[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	sleep(1);
	return 0;
}
