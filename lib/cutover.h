/* cutover.h - the pieces of a cutover shared by dbm-freeze, dbm-switch and
 * dbm-rollback: pausing and resuming writes (pgbouncer or read-only), the
 * barrier, waiting for a target to apply up to a position, sequences, and
 * repointing pgbouncer. */
#ifndef DBM_CUTOVER_H
#define DBM_CUTOVER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* A connection without the pinned session settings (pgbouncer's admin
 * console accepts only its own commands). NULL after logging. */
PGconn *dbm_pg_connect_raw(const char *conninfo, const char *appname);

/* Run one admin console command such as "PAUSE db"; false after logging. */
bool dbm_bouncer(PGconn *admin, const char *verb, const char *db);

/* Create <schema>.barrier (idempotent). */
bool dbm_barrier_table(PGconn *conn, const char *schema);
/*
 * Write a barrier: a row in <schema>.barrier and a transactional logical
 * message (prefix "dbm"), in one transaction. *lsn receives the position
 * at and after which the barrier is committed; *id the row's id.
 */
bool dbm_barrier_emit(PGconn *conn, const char *schema, const char *kind,
					  uint64_t *lsn, long *id);

/*
 * Wait until the target has applied the source up to lsn: its
 * <schema>.apply_position holds lsn >= the given one (for stream, or any
 * stream when NULL), or the barrier row id is present in <schema>.barrier.
 * Returns 1 when reached, 0 on timeout, -1 after logging an error.
 */
int dbm_wait_applied(PGconn *target, const char *schema, const char *stream,
					 uint64_t lsn, long barrier_id, double timeout,
					 const char **how);

/* Copy every sequence's state (last_value, is_called) from one database to
 * the other, but those of the toolkit's own schema; *n receives how many. */
bool dbm_sequences_copy(PGconn *from, PGconn *to, const char *skip_schema,
						int *n);

/* Rewrite the entry of db in the [databases] section of a pgbouncer ini
 * file to point at conninfo (host, port, dbname, user, password kept),
 * atomically. */
bool dbm_bouncer_repoint(const char *ini, const char *db,
						 const char *conninfo);

/* Point the application at "to": rewrite the pgbouncer ini entry, RELOAD,
 * RESUME; or run exec_cmd with DBM_SOURCE, DBM_TARGET,
 * DBM_DATABASE and DBM_ROUTE_TO (route_to) in its environment. *moved
 * tells whether the route changed, even when a later step (RESUME) failed. */
bool dbm_route_repoint(const char *admin_ci, const char *ini, const char *db,
					   const char *to, const char *exec_cmd, const char *source,
					   const char *target, const char *route_to, bool *moved);

/* Milliseconds since the Unix epoch, and the ISO 8601 UTC form of it. */
int64_t dbm_epoch_ms(void);
void dbm_epoch_iso(int64_t ms, char out[96]);

/* Read-only method: default_transaction_read_only for a database.
 *
 * On: the database's setting, which every session opened from then on
 * takes.  When since is not NULL it gets the server's clock just before
 * (a timestamptz in text), for a later thaw.
 *
 * Off: the setting reset; then, when the database had been read-only, the
 * application's sessions opened since then are ended: a session keeps the
 * setting it started with, so a pooled connection opened during the freeze
 * (pgbouncer's, an application pool's) would refuse writes for as long as
 * it lives.  since is when the freeze began (from on), or NULL: every
 * application session (a freeze ended those opened before it).  Sessions
 * of dbm's own tools (application_name dbm-*) are kept, and superusers'
 * unless the caller is one.  */
bool dbm_readonly_set(PGconn *conn, bool on, char since[64]);

/* End the application's client sessions of the connected database (not
 * this one, not dbm's own: application_name dbm-*), those started at or
 * after since when it is not NULL; with spare_superusers a superuser's only
 * when the caller is one.  false after logging "what: error". */
bool dbm_end_app_sessions(PGconn *conn, const char *since, bool spare_superusers,
						  const char *what);

#endif
