/* fuzz-hashfile.c - dbm-hash output as dbm-diff reads it from two files
 * (dbm-diff LEFT.jsonl RIGHT.jsonl): tools/dbm-diff.c's own reader,
 * checks and drill-down over row lines, compiled in here (its main()
 * renamed) so its static functions are the ones fuzzed.
 *
 * Input: the left file, a form feed, the right file; without a form feed
 * the file is compared with itself. */
#define main dbm_diff_main
#include "../../tools/dbm-diff.c"
#undef main

#include "fuzz.h"

#include <unistd.h>

/* Write len bytes to the file at path, replacing it. */
static void
put_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
		abort();
}

static char dir[4096], left[4200], right[4200];

static void
remove_files(void)
{
	unlink(left);
	unlink(right);
	rmdir(dir);
}

int
dbm_fuzz_hashfile(const uint8_t *data, size_t size)
{
	const uint8_t *ff = memchr(data, '\f', size);

	if (dir[0] == '\0')
	{
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/dbm-fuzz-hashfile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(left, sizeof(left), "%s/left", dir);
		snprintf(right, sizeof(right), "%s/right", dir);
		atexit(remove_files);
	}
	if (ff)
	{
		put_file(left, data, (size_t) (ff - data));
		put_file(right, ff + 1, size - (size_t) (ff - data) - 1);
	}
	else
	{
		put_file(left, data, size);
		put_file(right, data, size);
	}
	compare_files(left, right);
	dbm_fuzz_forget_errors();
	return 0;
}

DBM_FUZZ_TARGET(dbm_fuzz_hashfile)
