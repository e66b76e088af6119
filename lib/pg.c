/* pg.c - connections and helpers shared by every tool. */
#define _POSIX_C_SOURCE 200809L
#include "pg.h"

#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define PINNED_SETTINGS                                                        \
	"SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; "                       \
	"SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; "            \
	"SET bytea_output = 'hex'; SET lc_monetary = 'C'; "                       \
	"SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; " \
	"SET client_min_messages = warning; SET search_path = ''"

char *
dbm_pg_redact(const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
	dbm_buf b;

	if (opts == NULL)
	{
		PQfreemem(err);
		return xstrdup("(invalid connection string)");
	}
	dbm_buf_init(&b);
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") && strcmp(o->keyword, "hostaddr") &&
			strcmp(o->keyword, "port") && strcmp(o->keyword, "dbname") &&
			strcmp(o->keyword, "user") && strcmp(o->keyword, "service"))
			continue;
		if (b.len)
			dbm_buf_putc(&b, ' ');
		dbm_buf_printf(&b, "%s=%s", o->keyword, o->val);
	}
	PQconninfoFree(opts);
	if (b.len == 0)
		dbm_buf_puts(&b, "(defaults)");
	return b.data;
}

const char *
dbm_pg_error(PGconn *conn)
{
	static _Thread_local char msg[1024];
	const char *e = conn ? PQerrorMessage(conn) : "no connection";
	size_t n = 0;

	/* skip a leading "ERROR:  " / "FATAL:  " severity */
	if (strncmp(e, "ERROR:  ", 8) == 0 || strncmp(e, "FATAL:  ", 8) == 0)
		e += 8;
	while (e[n] && e[n] != '\n' && n < sizeof(msg) - 1)
		n++;
	memcpy(msg, e, n);
	msg[n] = '\0';
	if (n == 0)
		snprintf(msg, sizeof(msg), "connection lost");
	return msg;
}

bool
dbm_pg_result_ends_session(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	return (state && (strncmp(state, "57P0", 4) == 0 || strncmp(state, "08", 2) == 0)) ||
		   (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0));
}

/* Server notices and warnings become one diagnostic line each. */
static void
notice_to_log(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	(void) arg;
	if (msg == NULL)
		return;
	if (sev && (strcmp(sev, "WARNING") == 0))
		dbm_log_warn("server: %s", msg);
	else
		dbm_log_info("server: %s", msg);
}

PGconn *
dbm_pg_connect(const char *conninfo, const char *appname)
{
	return dbm_pg_connect_ex(conninfo, appname, false);
}

PGconn *
dbm_pg_connect_ex(const char *conninfo, const char *appname,
				  bool replication)
{
	const char *keys[] = {"dbname", "fallback_application_name",
						  "client_encoding", "replication", NULL};
	const char *vals[] = {conninfo ? conninfo : "", appname, "UTF8",
						  "database", NULL};
	PGconn *conn;

	if (!replication)
		keys[3] = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	char *shown;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		shown = dbm_pg_redact(conninfo);
		dbm_log_error("could not connect to \"%s\": %s", shown,
					  dbm_pg_error(conn));
		free(shown);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeReceiver(conn, notice_to_log, NULL);
	if (!dbm_pg_command(conn, PINNED_SETTINGS, "session settings"))
	{
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

bool
dbm_pg_command(PGconn *conn, const char *sql, const char *what)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool ok = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);

	if (!ok)
	{
		if (what)
			dbm_log_error("%s: %s", what, dbm_pg_error(conn));
		else
			dbm_log_error("%s", dbm_pg_error(conn));
	}
	PQclear(res);
	return ok;
}

void
dbm_pg_abandon_copy_out(PGconn *conn)
{
	PGcancel *cancel = PQgetCancel(conn);
	PGresult *res;
	char errbuf[256], *buf;

	if (cancel)
	{
		/* best effort: without it the rest of the COPY is read and dropped */
		(void) PQcancel(cancel, errbuf, sizeof(errbuf));
		PQfreeCancel(cancel);
	}
	while (PQgetCopyData(conn, &buf, 0) > 0)
		PQfreemem(buf);
	while ((res = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);
		PQclear(res);
		if (st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
			break;
	}
}
