/* apply.h - the apply engine: normalized changes into a target database,
 * with prepared statements, libpq pipeline mode, multi-row inserts, and
 * the stream position written in the same transaction as the changes. */
#ifndef DBM_APPLY_H
#define DBM_APPLY_H

#include "change.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct
{
	const char *conninfo;
	const char *appname;
	const char *schema; /* the toolkit's state schema, "dbm" */
	const char *stream; /* key of the position row */
	bool converge;		/* replays converge: upsert, delete if exists */
	const char *origin; /* replication origin of the target session */
	bool catalog_only;	/* read the target's catalog, write nothing (--print) */
	bool durable;		/* commits flushed before they return (a slot is told
						 * right after), whatever the server's default */
} dbm_apply_opts;

typedef struct dbm_apply dbm_apply;

typedef struct
{
	uint64_t rows;		   /* row changes applied (committed) */
	uint64_t transactions; /* target commits */
	uint64_t missed;	   /* updates and deletes that found no row */
} dbm_apply_stats;

/* Connect, pin the session, create the state table. NULL after logging. */
dbm_apply *dbm_apply_open(const dbm_apply_opts *o);
/* Mark the target session with a replication origin (before the first
 * change); false after logging, e.g. when another session holds it. */
bool dbm_apply_set_origin(dbm_apply *a, const char *origin);
/* The same with the first free name of base, base_2, ... base_16 (for
 * several processes on one stream). */
bool dbm_apply_claim_origin(dbm_apply *a, const char *base);
/* The stored position of the stream: lsn (NULL if none; caller frees) and
 * offsets as JSON text (NULL if none; caller frees). */
bool dbm_apply_get_position(dbm_apply *a, char **lsn, char **offsets);
/* First LSN from which each target table needs changes (dbm-snapshot's
 * per-table copy position); 0 when unknown. */
uint64_t dbm_apply_copy_lsn(dbm_apply *a, const char *qname);
/* Map a source relation onto its target table; a table or column missing,
 * added or retyped is an error naming it. */
bool dbm_apply_map(dbm_apply *a, dbm_srcrel *r);
/* A relation made from the target table itself (for change streams that
 * name tables but do not describe them): every column but generated ones,
 * the primary key as key (replica identity FULL without one), type names
 * in tnames. NULL after logging when the table is missing. */
dbm_srcrel *dbm_apply_target_rel(dbm_apply *a, const char *nsp, const char *name);
/* Prefix for errors about tables and columns (the event being applied),
 * or NULL; the string must outlive its use. */
void dbm_apply_set_context(dbm_apply *a, const char *ctx);
/* Forget the mapping of a relation before it is freed (rows still
 * waiting for it are sent first; false after logging if that fails). */
bool dbm_apply_unmap(dbm_apply *a, dbm_srcrel *r);
/* Queue one change (opens the target transaction if needed). where names
 * the change in error messages. */
bool dbm_apply_change(dbm_apply *a, const dbm_change *c, const char *where);
bool dbm_apply_truncate(dbm_apply *a, dbm_srcrel **rels, int n, bool cascade,
						bool restart, const char *where);
/* Queue the row of a barrier that arrived as a logical message (id, kind)
 * into <schema>.barrier, in the open transaction; one already there stays. */
bool dbm_apply_barrier(dbm_apply *a, int64_t id, const char *kind, const char *where);
/* Write the position and commit everything queued. Waits for the commit
 * before this one, not this one: the next batch is built while the server
 * commits; dbm_apply_wait before trusting the last one. */
bool dbm_apply_commit(dbm_apply *a, const char *lsn, const char *offsets);
/* Wait for every commit sent; false after logging when one failed. */
bool dbm_apply_wait(dbm_apply *a);
bool dbm_apply_in_txn(dbm_apply *a);
uint64_t dbm_apply_pending_rows(dbm_apply *a);
void dbm_apply_get_stats(dbm_apply *a, dbm_apply_stats *s);
/* The connection to the target is gone (the server restarted, the session
 * was terminated): a new dbm_apply_open may go on where the last commit
 * left off. */
bool dbm_apply_lost(dbm_apply *a);
void dbm_apply_close(dbm_apply *a);

#endif
