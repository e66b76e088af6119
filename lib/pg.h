/* pg.h - libpq connections with pinned output settings, redaction of
 * conninfo strings, and small query helpers that log their own errors. */
#ifndef DBM_PG_H
#define DBM_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

/*
 * Connect and pin the session settings that change how values print
 * (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output,
 * lc_monetary) so text is identical on every server. Returns NULL after
 * logging on failure. appname is the fallback application_name.
 */
PGconn *dbm_pg_connect(const char *conninfo, const char *appname);
/* The same, optionally as a logical replication connection
 * (replication=database), which also accepts SQL. */
PGconn *dbm_pg_connect_ex(const char *conninfo, const char *appname,
						  bool replication);

/* A printable description of a conninfo without secrets; caller frees. */
char *dbm_pg_redact(const char *conninfo);

/* The first line of the connection's last error, without a trailing
 * newline; valid until the next call on this thread. */
const char *dbm_pg_error(PGconn *conn);

/* Whether an error result ends its session: a shutdown, a crash or a
 * terminated backend (SQLSTATE 57P01-57P03), a connection failure (class
 * 08), or any FATAL or PANIC.  libpq reports such an error before it reads
 * the end of the connection, so the connection's status may still say OK. */
bool dbm_pg_result_ends_session(const PGresult *res);

/* Run a command that returns no rows; logs and returns false on failure.
 * what names the object for the error message (may be NULL). */
bool dbm_pg_command(PGconn *conn, const char *sql, const char *what);

/* Stop reading a COPY TO STDOUT before its end: cancel it on the server and
 * read what was already sent, so the connection is idle (or broken) and
 * PQgetResult no longer returns PGRES_COPY_OUT forever. */
void dbm_pg_abandon_copy_out(PGconn *conn);

#endif
