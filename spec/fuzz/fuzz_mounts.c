/* fuzz_mounts.c: libFuzzer target for the mount table parser (src/mounts.c),
 * whose input a user shapes (mount points are any bytes, any length).
 * Any violated invariant calls __builtin_trap():
 *   every mount's point and type lie inside the text and are NUL-terminated
 *   there; the mounts are sorted by id and each is found by mounts_find;
 *   mounts_under_fuse ends on every mount (cycles in the parent links
 *   included) and agrees with the types on the way.
 * Seeds: spec/fuzz/corpus/mounts. */
#include "mounts.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                        \
	do {                               \
		if (!(cond))               \
			__builtin_trap();  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, data, len);
	struct pw_mounts ms;
	if (mounts_parse(text, len, &ms) != 0)
		return 0;
	for (size_t i = 0; i < ms.n; i++) {
		const struct pw_mount *m = &ms.m[i];
		CHECK(m->point >= ms.text && m->point <= ms.text + len);
		CHECK(m->type >= ms.text && m->type <= ms.text + len);
		CHECK(memchr(m->point, 0, (size_t)(ms.text + len + 1 - m->point)) != NULL);
		CHECK(memchr(m->type, 0, (size_t)(ms.text + len + 1 - m->type)) != NULL);
		CHECK(i == 0 || ms.m[i - 1].id <= m->id);
		const struct pw_mount *f = mounts_find(&ms, m->id);
		CHECK(f != NULL && f->id == m->id);
		bool under = mounts_under_fuse(&ms, m);
		CHECK(!mounts_type_blocks(m->type) || under);
	}
	mounts_free(&ms);
	return 0;
}
