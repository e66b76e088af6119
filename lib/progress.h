/* progress.h - a one-line progress display on stderr when it is a
 * terminal. */
#ifndef DBM_PROGRESS_H
#define DBM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct
{
	bool on;
	int64_t started;
	bool shown;
} dbm_progress;

void dbm_progress_init(dbm_progress *p);
/* Redraw with the counters so far. */
void dbm_progress_show(dbm_progress *p, int tables_done, int tables,
					   uint64_t rows, uint64_t bytes);
/* The same with an estimate of the time left from a total size. */
void dbm_progress_show_eta(dbm_progress *p, int done, int total, uint64_t rows,
						   uint64_t bytes, uint64_t total_bytes);
/* Erase the line. */
void dbm_progress_end(dbm_progress *p);

#endif
