/* replay.c - run every fuzz target over the inputs kept for it, without
 * libFuzzer: tests/fuzz/corpus/<target> (the seeds) and
 * tests/fuzz/regressions/<target> (inputs that once crashed or tripped a
 * sanitizer). Prints TAP, one line per target and directory; make test
 * runs it plain and under ASan+UBSan.
 *
 *   fuzz-replay DIR          DIR is tests/fuzz
 *   fuzz-replay -t TARGET FILE...   one target over the given files */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define DBM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DBM_SANITIZED 1
#endif
#endif
#ifdef DBM_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

typedef int (*target_fn)(const uint8_t *, size_t);

static const struct
{
	const char *name;
	target_fn fn;
} targets[] = {
	{"pgoutput", dbm_fuzz_pgoutput},
	{"debezium", dbm_fuzz_debezium},
	{"dms", dbm_fuzz_dms},
	{"hashfile", dbm_fuzz_hashfile},
};
#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

static const char *const kinds[] = {"corpus", "regressions"};

/* the input being run, named when a sanitizer ends the process */
static char current[4096];
/* TAP goes here: stdout itself is the targets' (and /dev/null) */
static FILE *tap;

static void
on_death(void)
{
	fprintf(tap ? tap : stderr, "# died on %s\n", current);
	fflush(tap ? tap : stderr);
}

/* Run fn over one file; false when it cannot be read. */
static bool
run_file(target_fn fn, const char *path)
{
	FILE *f = fopen(path, "rb");
	dbm_buf b;
	char chunk[65536];
	size_t n;
	bool ok;

	if (f == NULL)
		return false;
	dbm_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		dbm_buf_append(&b, chunk, n);
	ok = !ferror(f);
	fclose(f);
	snprintf(current, sizeof(current), "%s", path);
	if (ok)
	{
		/* an exact-size copy, so an overread is caught as it would be
		 * under libFuzzer */
		uint8_t *copy = xmalloc(b.len);
		memcpy(copy, b.data, b.len);
		fn(copy, b.len);
		free(copy);
		dbm_fuzz_forget_errors();
	}
	dbm_buf_free(&b);
	return ok;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Run fn over every file of dir, in name order. Returns how many, or -1
 * when one cannot be read; 0 when dir does not exist. */
static long
run_dir(target_fn fn, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	long count = 0;

	if (d == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d)) != NULL)
	{
		if (e->d_name[0] == '.')
			continue;
		names = xrealloc(names, sizeof(char *) * (n + 1));
		names[n++] = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(char *), by_name);
	for (size_t i = 0; i < n; i++)
	{
		if (count >= 0 && run_file(fn, names[i]))
			count++;
		else if (count >= 0)
		{
			fprintf(tap, "# could not read %s\n", names[i]);
			count = -1;
		}
		free(names[i]);
	}
	free(names);
	return count;
}

int
main(int argc, char **argv)
{
	int failed = 0, t = 0;

#ifdef DBM_SANITIZED
	__sanitizer_set_death_callback(on_death);
#else
	(void) on_death;
#endif
	if (argc >= 3 && strcmp(argv[1], "-t") == 0)
	{
		for (size_t i = 0; i < NTARGETS; i++)
			if (strcmp(targets[i].name, argv[2]) == 0)
			{
				/* errors of the decoders show: this is for looking */
				for (int a = 3; a < argc; a++)
					if (!run_file(targets[i].fn, argv[a]))
					{
						fprintf(stderr, "fuzz-replay: could not read \"%s\"\n", argv[a]);
						return 2;
					}
				return 0;
			}
		fprintf(stderr, "fuzz-replay: no target \"%s\"\n", argv[2]);
		return 2;
	}
	if (argc != 2)
	{
		fprintf(stderr, "usage: fuzz-replay DIR | fuzz-replay -t TARGET FILE...\n");
		return 2;
	}
	if ((tap = fdopen(dup(STDOUT_FILENO), "w")) == NULL)
	{
		fprintf(stderr, "fuzz-replay: could not duplicate stdout\n");
		return 2;
	}
	setvbuf(tap, NULL, _IOLBF, 0);
	dbm_fuzz_quiet();
	fprintf(tap, "1..%zu\n", NTARGETS * 2);
	for (size_t i = 0; i < NTARGETS; i++)
		for (size_t k = 0; k < 2; k++)
		{
			char *dir = xasprintf("%s/%s/%s", argv[1], kinds[k], targets[i].name);
			long n = run_dir(targets[i].fn, dir);
			fprintf(tap, "%s %d - fuzz %s: %ld %s inputs\n", n < 0 ? "not ok" : "ok", ++t,
				   targets[i].name, n < 0 ? 0 : n, kinds[k]);
			failed |= n < 0;
			free(dir);
		}
	return failed ? 1 : 0;
}
