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
dbm_progress_show_eta(dbm_progress *p, int done, int total, uint64_t rows,
					  uint64_t bytes, uint64_t total_bytes)
{
	double secs = (double) (dbm_now_ms() - p->started) / 1000.0;
	double rate = secs > 0 ? (double) bytes / secs : 0;

	if (!p->on)
		return;
	fprintf(stderr, "\r%s: %d/%d pieces, %llu rows, %.1f MB/s", dbm_progname(),
			done, total, (unsigned long long) rows, rate / 1e6);
	if (rate > 0 && total_bytes > bytes)
		fprintf(stderr, ", ETA %.0f s   ", (double) (total_bytes - bytes) / rate);
	else
		fprintf(stderr, "   ");
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
