/* hashrun.h - the dbm-hash engine: read every selected table of one
 * database in one snapshot with N parallel COPY readers and produce bucket
 * digests, optionally row records for drill-down. Used by dbm-hash and by
 * both sides of dbm-diff. */
#ifndef DBM_HASHRUN_H
#define DBM_HASHRUN_H

#include "catalog.h"
#include "hash.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DBM_DEFAULT_SPLIT_PAGES 16384 /* 128 MB of heap per piece */

typedef struct
{
	const char *conninfo;
	const char *appname;
	const char *snapshot; /* import this snapshot; NULL: take a new one */
	int jobs;
	uint32_t buckets;
	long split_pages;
	bool spill; /* write row records (bucket, hash, key) to temp files */
	const dbm_filter *filter;
} dbm_hash_opts;

/* What one table came to. */
typedef struct
{
	int index; /* into dbm_hashrun_tables() */
	const dbm_table *table;
	dbm_buckets *b;	  /* the callback may take it and set it to NULL */
	uint64_t rows;
	dbm_h128 hash;
	int64_t ms;
	int nspill;
	FILE **spill; /* row records, when opts.spill; see dbm_spill_read() */
} dbm_table_result;

/* Called once per table, in table order, serialized. Return false to
 * fail the run (after logging). */
typedef bool (*dbm_table_cb)(void *ctx, dbm_table_result *r);
/* Called per row of a wanted bucket from reader threads, serialized;
 * key is the key text (COPY text fields joined by tabs). */
typedef bool (*dbm_row_cb)(void *ctx, const dbm_table *t, uint32_t bucket,
						   const char *key, size_t keylen, dbm_h128 h);

typedef struct dbm_hashrun dbm_hashrun;

/* Connect, open the snapshot, list the tables. NULL after logging. */
dbm_hashrun *dbm_hashrun_open(const dbm_hash_opts *o);
dbm_table *dbm_hashrun_tables(dbm_hashrun *h, int *n);
const char *dbm_hashrun_snapshot(dbm_hashrun *h);
/* Leave a table out of the run. */
void dbm_hashrun_skip(dbm_hashrun *h, int table);
/* Restrict row callbacks and spill records of a table to the buckets set
 * in bits (nbuckets bits; owned by the caller, must outlive the run). */
void dbm_hashrun_want(dbm_hashrun *h, int table, const uint8_t *bits);
/* Start the readers; returns at once. */
bool dbm_hashrun_start(dbm_hashrun *h, dbm_table_cb tcb, dbm_row_cb rcb,
					   void *ctx);
/* Counters for a progress display. */
void dbm_hashrun_progress(dbm_hashrun *h, uint64_t *rows, uint64_t *bytes,
						  int *tables_done);
bool dbm_hashrun_finished(dbm_hashrun *h);
/* Wait for the readers; false if anything failed (already logged). */
bool dbm_hashrun_wait(dbm_hashrun *h);
void dbm_hashrun_free(dbm_hashrun *h);

/* An unlinked temporary file in $TMPDIR for spill records; NULL after
 * logging. */
FILE *dbm_spill_open(void);
/* Append one record (bucket, row hash, key). */
bool dbm_spill_write(FILE *f, uint32_t bucket, dbm_h128 h, const char *key,
					 uint32_t keylen);
/* Spill records: read the next record of a spill file (rewound by the
 * caller). key is reset and filled. Returns 1, 0 at end, -1 on error. */
int dbm_spill_read(FILE *f, uint32_t *bucket, dbm_h128 *h, dbm_buf *key);

static inline bool
dbm_bit_test(const uint8_t *bits, uint32_t i)
{
	return (bits[i >> 3] >> (i & 7)) & 1;
}
static inline void
dbm_bit_set(uint8_t *bits, uint32_t i)
{
	bits[i >> 3] |= (uint8_t) (1u << (i & 7));
}

#endif
