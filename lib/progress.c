/* progress.c - progress on stderr: tables, rows, MB/s. */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include "log.h"
#include "util.h"

#include <stdio.h>
#include <unistd.h>

void
dbm_progress_init(dbm_progress *p)
{
	p->on = isatty(STDERR_FILENO);
	p->started = dbm_now_ms();
	p->shown = false;
}

void
dbm_progress_show(dbm_progress *p, int tables_done, int tables,
				  uint64_t rows, uint64_t bytes)
{
	double secs = (double) (dbm_now_ms() - p->started) / 1000.0;

	if (!p->on)
		return;
	fprintf(stderr, "\r%s: %d/%d tables, %llu rows, %.1f MB/s   ",
			dbm_progname(), tables_done, tables, (unsigned long long) rows,
			secs > 0 ? (double) bytes / 1e6 / secs : 0.0);
	fflush(stderr);
	p->shown = true;
}

void
dbm_progress_end(dbm_progress *p)
{
	if (p->on && p->shown)
		fprintf(stderr, "\r\033[K");
	p->shown = false;
}
