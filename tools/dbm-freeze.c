/* dbm-freeze - stop writes on the source for a cutover: pause pgbouncer
 * (clients queue, none fails) or make the database read-only, let
 * in-flight transactions end, then write a barrier whose position the
 * target must reach. See dbm-freeze(1). */
#define _POSIX_C_SOURCE 200809L
#include "cutover.h"
#include "jsonl.h"
#include "log.h"
#include "pg.h"
#include "secret.h"
#include "pgoutput.h"
#include "util.h"

#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(void)
{
	printf("dbm-freeze stops writes on the source database for a cutover.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-freeze [OPTION]... --source=CONNINFO --pgbouncer=ADMIN --database=NAME\n"
		   "  dbm-freeze [OPTION]... --source=CONNINFO --readonly\n"
		   "  dbm-freeze [OPTION]... --thaw\n"
		   "\n"
		   "With pgbouncer, PAUSE makes clients wait (none fails) until every\n"
		   "transaction in flight has ended. With --readonly, new sessions are\n"
		   "read-only, transactions with writes in flight may end, then the sessions\n"
		   "that remain are ended (a thaw ends those opened while read-only: they\n"
		   "would refuse writes). Then a barrier is written on the source (a row in\n"
		   "dbm.barrier and a logical message) and the frozen line gives its position.\n"
		   "Past --timeout the freeze is undone and the exit status is 1.\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       the source database (default: $DBM_SOURCE)\n"
		   "      --pgbouncer=CONNINFO    pgbouncer's admin console (dbname=pgbouncer)\n"
		   "      --database=NAME         the pgbouncer database to pause\n"
		   "      --readonly              freeze with default_transaction_read_only\n"
		   "      --timeout=SECS          longest wait for transactions in flight\n"
		   "                              (default 10)\n"
		   "      --thaw                  undo a freeze (RESUME, or writable again)\n"
		   "      --dbm-schema=NAME       schema for the toolkit's state (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 frozen (or thawed), 1 could not drain in time (thawed,\n"
		   "nothing changed), 2 error.\n");
}

/* PAUSE, waiting at most timeout; on timeout RESUME from a second
 * connection. Returns 1 paused, 0 timed out (resumed), -1 error. */
static int
pause_bouncer(const char *admin_ci, const char *db, double timeout)
{
	PGconn *admin = dbm_pg_connect_raw(admin_ci, "dbm-freeze");
	char *sql;
	int64_t deadline = dbm_now_ms() + (int64_t) (timeout * 1000);
	int rc = -1;

	if (admin == NULL)
		return -1;
	sql = xasprintf("PAUSE \"%s\"", db);
	if (PQsendQuery(admin, sql) != 1)
	{
		dbm_log_error("pgbouncer %s: %s", sql, dbm_pg_error(admin));
		goto out;
	}
	for (;;)
	{
		struct pollfd pfd = {PQsocket(admin), POLLIN, 0};
		int64_t left = deadline - dbm_now_ms();

		if (PQconsumeInput(admin) != 1)
		{
			dbm_log_error("pgbouncer %s: %s", sql, dbm_pg_error(admin));
			goto out;
		}
		if (!PQisBusy(admin))
		{
			PGresult *res;
			bool ok = true;
			while ((res = PQgetResult(admin)) != NULL)
			{
				if (PQresultStatus(res) != PGRES_COMMAND_OK)
				{
					dbm_log_error("pgbouncer %s: %s", sql, dbm_pg_error(admin));
					ok = false;
				}
				PQclear(res);
			}
			rc = ok ? 1 : -1;
			goto out;
		}
		if (left <= 0)
		{
			/* undo: clients go on, nothing changed */
			PGconn *admin2 = dbm_pg_connect_raw(admin_ci, "dbm-freeze");
			if (admin2 == NULL || !dbm_bouncer(admin2, "RESUME", db))
			{
				PQfinish(admin2);
				goto out;
			}
			PQfinish(admin2);
			rc = 0;
			goto out;
		}
		poll(&pfd, 1, left > 50 ? 50 : (int) left);
	}
out:
	free(sql);
	PQfinish(admin);
	return rc;
}

/* Read-only freeze; returns 1 frozen, 0 timed out (undone), -1 error. */
static int
freeze_readonly(PGconn *src, double timeout, char since[64])
{
	int64_t deadline = dbm_now_ms() + (int64_t) (timeout * 1000);
	static const char *writers_sql =
		"SELECT count(*) FROM pg_catalog.pg_stat_activity"
		" WHERE datname = current_database() AND pid <> pg_backend_pid()"
		"   AND backend_type = 'client backend' AND backend_xid IS NOT NULL";

	if (!dbm_readonly_set(src, true, since))
		return -1;
	for (;;)
	{
		PGresult *res = PQexec(src, writers_sql);
		long n = -1;
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			dbm_parse_long(PQgetvalue(res, 0, 0), 0, 1L << 30, &n);
		else
			dbm_log_error("could not read pg_stat_activity: %s", dbm_pg_error(src));
		PQclear(res);
		if (n < 0)
		{
			dbm_readonly_set(src, false, since);
			return -1;
		}
		if (n == 0)
			break;
		if (dbm_now_ms() >= deadline)
			return dbm_readonly_set(src, false, since) ? 0 : -1;
		dbm_sleep(0.01, NULL);
	}
	/* sessions opened before the freeze would still write: end them (a
	 * client reconnects and finds the database read-only) */
	if (!dbm_end_app_sessions(src, NULL, false, "could not end the sessions of the source"))
		return -1;
	return 1;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"source", required_argument, NULL, 's'},
		{"pgbouncer", required_argument, NULL, 'b'},
		{"database", required_argument, NULL, 'd'},
		{"readonly", no_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{"thaw", no_argument, NULL, 'T'},
		{"dbm-schema", required_argument, NULL, 'S'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *source = getenv("DBM_SOURCE"), *bouncer = NULL, *db = NULL;
	const char *schema = "dbm";
	bool readonly = false, thaw = false;
	double timeout = 10;
	int c, rc = 2, r;
	PGconn *src = NULL;
	int64_t t0 = dbm_epoch_ms(), m0 = dbm_now_ms();
	uint64_t lsn;
	long barrier;
	char lsnbuf[32], at[96];
	char since[64] = "";

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's': source = optarg; break;
			case 'b': bouncer = optarg; break;
			case 'd': db = optarg; break;
			case 'r': readonly = true; break;
			case 'T': thaw = true; break;
			case 'S': schema = optarg; break;
			case 't':
				if (!dbm_parse_seconds(optarg, &timeout))
				{
					dbm_log_error("invalid value \"%s\" for --timeout: expected seconds", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'L': dbm_log_set_json(true); break;
			case 'V': printf("dbm-freeze (dbm) %s\n", DBM_VERSION); return 0;
			case 'h': usage(); return 0;
			default: dbm_log_bad_option(argv, optind); return 2;
		}
	}
	if (optind < argc)
	{
		dbm_log_error("unexpected argument \"%s\"", argv[optind]);
		dbm_log_usage_hint();
		return 2;
	}
	if (readonly == (bouncer != NULL))
	{
		dbm_log_error("give either --pgbouncer with --database, or --readonly");
		dbm_log_usage_hint();
		return 2;
	}
	if (bouncer && db == NULL)
	{
		dbm_log_error("--database is required with --pgbouncer");
		dbm_log_usage_hint();
		return 2;
	}
	if ((readonly || !thaw) && source == NULL)
	{
		dbm_log_error("--source is required");
		dbm_log_usage_hint();
		return 2;
	}

	if (thaw)
	{
		bool ok;
		if (bouncer)
		{
			PGconn *admin = dbm_pg_connect_raw(bouncer, "dbm-freeze");
			ok = admin != NULL;
			if (ok)
			{
				/* not paused is as good as resumed */
				char *sql = xasprintf("RESUME \"%s\"", db);
				PGresult *res = PQexec(admin, sql);
				if (PQresultStatus(res) != PGRES_COMMAND_OK &&
					strstr(dbm_pg_error(admin), "not paused") == NULL)
				{
					dbm_log_error("pgbouncer %s: %s", sql, dbm_pg_error(admin));
					ok = false;
				}
				PQclear(res);
				free(sql);
			}
			PQfinish(admin);
		}
		else
		{
			src = dbm_pg_connect(source, "dbm-freeze");
			ok = src && dbm_readonly_set(src, false, NULL);
		}
		if (ok && dbm_jsonl_print(json_pack("{s:s,s:s,s:s}", "type", "thawed", "method",
											bouncer ? "pgbouncer" : "readonly", "reason",
											"thaw")))
			rc = 0;
		goto out;
	}

	if ((src = dbm_pg_connect(source, "dbm-freeze")) == NULL ||
		!dbm_pg_command(src, "SET default_transaction_read_only = off", NULL) ||
		!dbm_barrier_table(src, schema))
		goto out;
	r = bouncer ? pause_bouncer(bouncer, db, timeout) : freeze_readonly(src, timeout, since);
	if (r < 0)
		goto out;
	if (r == 0)
	{
		dbm_log_error("transactions still running after %.1f s: freeze undone", timeout);
		if (dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:I}", "type", "thawed", "method",
									  bouncer ? "pgbouncer" : "readonly", "reason", "timeout",
									  "ms", (json_int_t) (dbm_now_ms() - m0))))
			rc = 1;
		goto out;
	}
	if (!dbm_barrier_emit(src, schema, "freeze", &lsn, &barrier))
	{
		/* frozen but no barrier: undo rather than leave clients waiting */
		if (bouncer)
		{
			PGconn *admin = dbm_pg_connect_raw(bouncer, "dbm-freeze");
			if (admin)
				dbm_bouncer(admin, "RESUME", db);
			PQfinish(admin);
		}
		else
			dbm_readonly_set(src, false, since);
		goto out;
	}
	dbm_lsn_format(lsn, lsnbuf);
	dbm_epoch_iso(t0, at);
	if (dbm_jsonl_print(json_pack("{s:s,s:s,s:s?,s:s,s:I,s:s,s:I,s:I}", "type", "frozen",
								  "method", bouncer ? "pgbouncer" : "readonly", "database",
								  db, "lsn", lsnbuf, "barrier", (json_int_t) barrier, "at", at,
								  "at_ms", (json_int_t) t0, "drain_ms",
								  (json_int_t) (dbm_now_ms() - m0))))
		rc = 0;

out:
	PQfinish(src);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
