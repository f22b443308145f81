/* hog: spin on one CPU at normal priority until killed (the "busy" load).
 * It ends by itself after 10 minutes, should its script die without
 * cleaning up. */
#include <unistd.h>

int main(void)
{
	alarm(600);
	volatile unsigned long n = 0;
	for (;;)
		n++;
}
