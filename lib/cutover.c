/* cutover.c - building blocks of the cutover. */
#define _POSIX_C_SOURCE 200809L
#include "cutover.h"

#include "log.h"
#include "pg.h"
#include "pgoutput.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

PGconn *
dbm_pg_connect_raw(const char *conninfo, const char *appname)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {conninfo ? conninfo : "", appname, NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		char *shown = dbm_pg_redact(conninfo);
		dbm_log_error("could not connect to \"%s\": %s", shown, dbm_pg_error(conn));
		free(shown);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

bool
dbm_bouncer(PGconn *admin, const char *verb, const char *db)
{
	/* the console takes names bare; quote to be safe with odd names */
	char *sql = db ? xasprintf("%s \"%s\"", verb, db) : xstrdup(verb);
	PGresult *res = PQexec(admin, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
			  PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		dbm_log_error("pgbouncer %s: %s", sql, dbm_pg_error(admin));
	PQclear(res);
	free(sql);
	return ok;
}

bool
dbm_barrier_table(PGconn *conn, const char *schema)
{
	char *s = PQescapeIdentifier(conn, schema, strlen(schema));
	char *sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s;"
						  " CREATE TABLE IF NOT EXISTS %s.barrier ("
						  " id bigint PRIMARY KEY, kind text NOT NULL,"
						  " at timestamptz NOT NULL DEFAULT now())",
						  s, s);
	bool ok = dbm_pg_command(conn, sql, "could not create the barrier table");
	free(sql);
	PQfreemem(s);
	return ok;
}

bool
dbm_barrier_emit(PGconn *conn, const char *schema, const char *kind,
				 uint64_t *lsn, long *id)
{
	char *s = PQescapeIdentifier(conn, schema, strlen(schema));
	char *sql;
	const char *v[1] = {kind};
	PGresult *res;
	bool ok = false;

	/* the row id is a wall-clock stamp, unique enough and increasing */
	*id = (long) dbm_epoch_ms();
	sql = xasprintf("WITH b AS (INSERT INTO %s.barrier (id, kind)"
					" VALUES (%ld, $1) RETURNING id)"
					" SELECT pg_catalog.pg_logical_emit_message(true, 'dbm',"
					" json_build_object('barrier', (SELECT id FROM b), 'kind', $1::text)::text)",
					s, *id);
	/* the barrier must reach the stream now, not when the WAL writer
	 * gets to it */
	if (!dbm_pg_command(conn, "BEGIN", "could not write the barrier") ||
		!dbm_pg_command(conn, "SET LOCAL synchronous_commit = on", "could not write the barrier"))
		goto out;
	res = PQexecParams(conn, sql, 1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		dbm_log_error("could not write the barrier: %s", dbm_pg_error(conn));
		PQclear(res);
		PQclear(PQexec(conn, "ROLLBACK"));
		goto out;
	}
	PQclear(res);
	if (!dbm_pg_command(conn, "COMMIT", "could not commit the barrier"))
		goto out;
	/* everything committed before the barrier is before this position
	 * (the insert position: with synchronous_commit off the write position
	 * can still be behind the commit just made) */
	res = PQexec(conn, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text");
	if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		dbm_lsn_parse(PQgetvalue(res, 0, 0), lsn))
		ok = true;
	else
		dbm_log_error("could not read the WAL position: %s", dbm_pg_error(conn));
	PQclear(res);
out:
	free(sql);
	PQfreemem(s);
	return ok;
}

int
dbm_wait_applied(PGconn *target, const char *schema, const char *stream,
				 uint64_t lsn, long barrier_id, double timeout,
				 const char **how)
{
	char *s = PQescapeIdentifier(target, schema, strlen(schema));
	char lsnbuf[32], idbuf[32];
	const char *sv[1] = {schema};
	char *sql;
	int64_t deadline = dbm_now_ms() + (int64_t) (timeout * 1000);
	int rc = -1;
	bool have_pos, have_bar;
	PGresult *res;

	/* which signs this target can give: a position table (dbm-cdc-apply),
	 * a barrier table (any engine that carries dbm.barrier) */
	res = PQexecParams(target,
					   "SELECT to_regclass(format('%I.apply_position', $1::text)) IS NOT NULL,"
					   "       to_regclass(format('%I.barrier', $1::text)) IS NOT NULL",
					   1, NULL, sv, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		dbm_log_error("could not read the target's catalog: %s", dbm_pg_error(target));
		PQclear(res);
		PQfreemem(s);
		return -1;
	}
	have_pos = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	have_bar = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	PQclear(res);
	if (!have_pos && !have_bar)
	{
		dbm_log_error("the target has neither %s.apply_position nor %s.barrier: nothing"
					  " shows what it has applied",
					  schema, schema);
		PQfreemem(s);
		return -1;
	}
	dbm_lsn_format(lsn, lsnbuf);
	snprintf(idbuf, sizeof(idbuf), "%ld", barrier_id);
	/* either sign is enough: the position covers the LSN, or the barrier
	 * row arrived (whatever engine carried it) */
	{
		char *pos = have_pos ? xasprintf("coalesce((SELECT max(lsn) >= $1::pg_lsn FROM %s.apply_position"
										 " WHERE $2::text IS NULL OR stream = $2), false)",
										 s)
							 : xstrdup("$1::pg_lsn IS NULL AND $2::text IS NULL");
		char *bar = have_bar ? xasprintf("coalesce((SELECT true FROM %s.barrier WHERE id = $3::bigint),"
										 " false)",
										 s)
							 : xstrdup("$3::bigint IS NULL");
		sql = xasprintf("SELECT %s, %s", pos, bar);
		free(pos);
		free(bar);
	}
	for (;;)
	{
		const char *v[3] = {lsnbuf, stream, idbuf};
		res = PQexecParams(target, sql, 3, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			dbm_log_error("could not read the applied position on the target: %s",
						  dbm_pg_error(target));
			PQclear(res);
			break;
		}
		bool by_pos = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		bool by_row = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		PQclear(res);
		if (by_pos || by_row)
		{
			if (how)
				*how = by_pos ? "position" : "barrier";
			rc = 1;
			break;
		}
		if (dbm_now_ms() >= deadline)
		{
			rc = 0;
			break;
		}
		dbm_sleep(0.005, NULL);
	}
	free(sql);
	PQfreemem(s);
	return rc;
}

bool
dbm_sequences_copy(PGconn *from, PGconn *to, const char *skip_schema, int *n)
{
	static const char *list_sql =
		"SELECT format('%I.%I', n.nspname, c.relname)"
		" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
		" WHERE c.relkind = 'S' AND n.nspname <> 'information_schema'"
		"   AND n.nspname !~ '^pg_' AND n.nspname <> $1 ORDER BY 1";
	const char *sv[1] = {skip_schema};
	PGresult *list = PQexecParams(from, list_sql, 1, NULL, sv, NULL, NULL, 0);
	bool ok = true;

	*n = 0;
	if (PQresultStatus(list) != PGRES_TUPLES_OK)
	{
		dbm_log_error("could not list sequences: %s", dbm_pg_error(from));
		PQclear(list);
		return false;
	}
	for (int i = 0; i < PQntuples(list) && ok; i++)
	{
		const char *seq = PQgetvalue(list, i, 0);
		char *sql = xasprintf("SELECT last_value, is_called FROM %s", seq);
		PGresult *res = PQexec(from, sql);
		free(sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			dbm_log_error("could not read sequence %s: %s", seq, dbm_pg_error(from));
			PQclear(res);
			ok = false;
			break;
		}
		const char *v[3] = {seq, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)};
		PGresult *set = PQexecParams(to, "SELECT pg_catalog.setval($1::regclass, $2::bigint, $3::boolean)",
									 3, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(set) != PGRES_TUPLES_OK)
		{
			dbm_log_error("could not set sequence %s: %s", seq, dbm_pg_error(to));
			ok = false;
		}
		else
			(*n)++;
		PQclear(set);
		PQclear(res);
	}
	PQclear(list);
	return ok;
}

bool
dbm_bouncer_repoint(const char *ini, const char *db, const char *conninfo)
{
	FILE *in, *out;
	char *tmp = xasprintf("%s.dbm-tmp", ini);
	char line[4096];
	bool in_dbs = false, done = false, ok = true;
	dbm_buf entry;
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts == NULL)
	{
		dbm_log_error("invalid connection string for pgbouncer: %s", err ? err : "");
		PQfreemem(err);
		free(tmp);
		return false;
	}
	dbm_buf_init(&entry);
	dbm_buf_printf(&entry, "%s =", db);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && *o->val &&
			(!strcmp(o->keyword, "host") || !strcmp(o->keyword, "port") ||
			 !strcmp(o->keyword, "dbname") || !strcmp(o->keyword, "user") ||
			 !strcmp(o->keyword, "password")))
			dbm_buf_printf(&entry, " %s=%s", o->keyword, o->val);
	dbm_buf_putc(&entry, '\n');
	PQconninfoFree(opts);

	if ((in = fopen(ini, "r")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", ini);
		ok = false;
		goto out;
	}
	if ((out = fopen(tmp, "w")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", tmp);
		fclose(in);
		ok = false;
		goto out;
	}
	while (fgets(line, sizeof(line), in))
	{
		const char *p = line + strspn(line, " \t");
		if (*p == '[')
		{
			if (in_dbs && !done)
			{
				fputs(entry.data, out);
				done = true;
			}
			in_dbs = strncmp(p, "[databases]", 11) == 0;
			fputs(line, out);
			continue;
		}
		if (in_dbs && !done)
		{
			size_t n = strlen(db);
			const char *q = p;
			if (*q == '"')
				q++;
			if (strncmp(q, db, n) == 0 &&
				(q[n] == ' ' || q[n] == '\t' || q[n] == '=' || q[n] == '"'))
			{
				fputs(entry.data, out);
				done = true;
				continue;
			}
		}
		fputs(line, out);
	}
	if (!done)
	{
		if (!in_dbs)
			fputs("[databases]\n", out);
		fputs(entry.data, out);
	}
	fclose(in);
	if (fclose(out) != 0 || rename(tmp, ini) != 0)
	{
		dbm_log_error("could not write file \"%s\": %m", ini);
		ok = false;
	}
out:
	dbm_buf_free(&entry);
	free(tmp);
	return ok;
}

int64_t
dbm_epoch_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void
dbm_epoch_iso(int64_t ms, char out[96])
{
	time_t secs = (time_t) (ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int) (ms % 1000));
}

bool
dbm_readonly_set(PGconn *conn, bool on, char since[64])
{
	static const char *was_sql =
		"SELECT pg_catalog.quote_ident(d.datname),"
		"       EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s"
		"               WHERE s.setdatabase = d.oid AND s.setrole = 0"
		"                 AND 'default_transaction_read_only=on' = ANY (s.setconfig)),"
		"       pg_catalog.clock_timestamp()::text"
		" FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";
	PGresult *res;
	bool ok = false, was;
	char *sql;

	/* this session may have started read-only itself */
	if (!dbm_pg_command(conn, "SET default_transaction_read_only = off", NULL))
		return false;
	res = PQexec(conn, was_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		dbm_log_error("could not read the database's settings: %s", dbm_pg_error(conn));
		PQclear(res);
		return false;
	}
	was = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	if (!on && !was)
	{
		/* not read-only: nothing to undo (and no ownership needed) */
		PQclear(res);
		return true;
	}
	if (on && since)
		snprintf(since, 64, "%s", PQgetvalue(res, 0, 2));
	sql = xasprintf("ALTER DATABASE %s %s", PQgetvalue(res, 0, 0),
					on ? "SET default_transaction_read_only = on"
					   : "RESET default_transaction_read_only");
	PQclear(res);
	ok = dbm_pg_command(conn, sql, on ? "could not make the database read-only"
									  : "could not make the database writable");
	free(sql);
	/* the sessions that took the setting; a superuser's only when we are
	 * one (else pg_terminate_backend refuses, failing the lot) */
	if (ok && !on)
		ok = dbm_end_app_sessions(conn, since && since[0] ? since : NULL, true,
								  "could not end the sessions opened while the database was"
								  " read-only");
	return ok;
}

bool
dbm_end_app_sessions(PGconn *conn, const char *since, bool spare_superusers, const char *what)
{
	static const char *sql =
		"SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid))"
		" FROM pg_catalog.pg_stat_activity a"
		" WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()"
		"   AND a.backend_type = 'client backend'"
		"   AND a.application_name NOT LIKE 'dbm-%'"
		"   AND ($1::timestamptz IS NULL OR a.backend_start >= $1::timestamptz)"
		"   AND ($2::bool IS NOT TRUE"
		"        OR NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = a.usesysid)"
		"        OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user))";
	const char *v[2] = {since, spare_superusers ? "true" : "false"};
	PGresult *res = PQexecParams(conn, sql, 2, NULL, v, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		dbm_log_error("%s: %s", what, dbm_pg_error(conn));
	PQclear(res);
	return ok;
}

/* Run the router command; false after logging. */
static bool
copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "r"), *out;
	char buf[8192];
	size_t n;
	bool ok = true;

	if (in == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", from);
		return false;
	}
	if ((out = fopen(to, "w")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", to);
		fclose(in);
		return false;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			ok = false;
	fclose(in);
	if (fclose(out) != 0 || !ok)
	{
		dbm_log_error("could not write file \"%s\": %m", to);
		return false;
	}
	return true;
}

static bool
run_exec(const char *cmd, const char *source, const char *target, const char *db,
		 const char *route_to)
{
	setenv("DBM_SOURCE", source, 1);
	setenv("DBM_TARGET", target, 1);
	setenv("DBM_DATABASE", db ? db : "", 1);
	setenv("DBM_ROUTE_TO", route_to, 1);
	fflush(stdout);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
	{
		dbm_log_error("command \"%s\" failed (status %d)", cmd,
					  st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		return false;
	}
	return true;
}

bool
dbm_route_repoint(const char *admin_ci, const char *ini, const char *db, const char *to,
		const char *exec_cmd, const char *source, const char *target,
		const char *route_to, bool *moved)
{
	PGconn *admin;
	bool ok;

	*moved = false;
	if (exec_cmd)
		return (*moved = run_exec(exec_cmd, source, target, db, route_to));
	/* a copy of the ini to put back if pgbouncer cannot be told: a later
	 * RELOAD must not move clients silently */
	char *bak = xasprintf("%s.dbm-bak", ini);
	if (!copy_file(ini, bak))
	{
		free(bak);
		return false;
	}
	if (!dbm_bouncer_repoint(ini, db, to))
	{
		free(bak);
		return false;
	}
	if ((admin = dbm_pg_connect_raw(admin_ci, dbm_progname())) == NULL)
	{
		if (rename(bak, ini) != 0)
			dbm_log_error("could not restore \"%s\" from \"%s\": %m", ini, bak);
		free(bak);
		return false;
	}
	ok = dbm_bouncer(admin, "RELOAD", NULL);
	/* no RECONNECT: PAUSE already closed the server connections, RELOAD
	 * points new ones at the other side (and RECONNECT right after RELOAD
	 * crashes pgbouncer 1.18) */
	if (!ok && rename(bak, ini) != 0)
		dbm_log_error("could not restore \"%s\" from \"%s\": %m", ini, bak);
	else if (ok)
		unlink(bak);
	/* from here pgbouncer sends new server connections to "to" */
	*moved = ok;
	free(bak);
	ok = ok && dbm_bouncer(admin, "RESUME", db);
	PQfinish(admin);
	return ok;
}

