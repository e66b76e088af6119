/* dbm-rollback - go back to the source, before or after the switch,
 * losing nothing. See dbm-rollback(1).
 *
 * Before the switch the source is only frozen: thaw it. After the switch
 * the target has taken writes, carried back to the source by the reverse
 * stream (dbm-cdc-apply from the target's reverse slot): pause the target,
 * write a barrier there, wait until the source has applied it, copy the
 * sequences back, repoint to the source and resume. */
#define _POSIX_C_SOURCE 200809L
#include "cutover.h"
#include "jsonl.h"
#include "log.h"
#include "pg.h"
#include "secret.h"
#include "pgoutput.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(void)
{
	printf("dbm-rollback moves the application back to the source, losing nothing.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-rollback [OPTION]... --source=CONNINFO --target=CONNINFO\n"
		   "               (--pgbouncer=ADMIN --pgbouncer-ini=PATH --database=NAME\n"
		   "                | --exec=CMD [--readonly] | --readonly)\n"
		   "\n"
		   "Reads where the migration stands from the target's dbm schema. Before\n"
		   "the switch: the source is thawed. After it: the target is paused (or made\n"
		   "read-only), a barrier is written on it, and once the reverse apply has\n"
		   "carried it to the source, sequences are copied back, the router points\n"
		   "at the source again and clients resume.\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       the source database (default: $DBM_SOURCE)\n"
		   "      --target=CONNINFO       the target database (default: $DBM_TARGET)\n"
		   "      --pgbouncer=CONNINFO    pgbouncer's admin console\n"
		   "      --pgbouncer-ini=PATH    pgbouncer's ini file, rewritten\n"
		   "      --database=NAME         the pgbouncer database entry\n"
		   "      --pgbouncer-source=CONNINFO  what the entry points at afterwards\n"
		   "                              (default: host, port, dbname of --source)\n"
		   "      --exec=CMD              repoint with this command (DBM_ROUTE_TO=source)\n"
		   "      --readonly              the freeze used the read-only method\n"
		   "      --stream=NAME           position row of the reverse apply on the\n"
		   "                              source (default: any)\n"
		   "      --timeout=SECS          longest wait for the reverse apply (default 30)\n"
		   "      --reverse-slot=NAME     before the switch: dropped if it exists and is\n"
		   "                              idle (default dbm_reverse)\n"
		   "      --reverse-publication=NAME  likewise (default dbm_reverse)\n"
		   "      --dbm-schema=NAME       schema for the toolkit's state (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 rolled back, 1 the reverse apply did not catch up in time\n"
		   "(the target is resumed and stays primary), 2 error.\n");
}

/* The last switch recorded on the target: 1 switched, 0 not (or rolled
 * back), -1 error. */
static int
switch_state(PGconn *dst, const char *schema)
{
	char *s = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf("SELECT state FROM %s.switch ORDER BY id DESC LIMIT 1", s);
	const char *v[1] = {schema};
	PGresult *res = PQexecParams(dst, "SELECT 1 FROM pg_catalog.pg_tables"
									  " WHERE schemaname = $1 AND tablename = 'switch'",
								 1, NULL, v, NULL, NULL, 0);
	int rc = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		dbm_log_error("could not read the migration state: %s", dbm_pg_error(dst));
	else if (PQntuples(res) == 0)
		rc = 0;
	else
	{
		PQclear(res);
		res = PQexec(dst, sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			dbm_log_error("could not read the migration state: %s", dbm_pg_error(dst));
		else
			/* switching: the switch died half-way, clients may have
			 * reached the target, so it counts as switched */
			rc = PQntuples(res) > 0 && (strcmp(PQgetvalue(res, 0, 0), "switched") == 0 ||
										strcmp(PQgetvalue(res, 0, 0), "switching") == 0);
	}
	PQclear(res);
	free(sql);
	PQfreemem(s);
	return rc;
}

static bool
mark_rolled_back(PGconn *dst, const char *schema, long long pause_ms)
{
	char *s = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf("INSERT INTO %s.switch (state, frozen, reverse_slot, reverse_publication,"
						  " pause_ms) SELECT 'rolled_back', frozen, reverse_slot,"
						  " reverse_publication, %lld FROM %s.switch ORDER BY id DESC LIMIT 1",
						  s, pause_ms, s);
	bool ok = dbm_pg_command(dst, sql, "could not record the rollback on the target");
	free(sql);
	PQfreemem(s);
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 'g'},
		{"pgbouncer", required_argument, NULL, 'b'},
		{"pgbouncer-ini", required_argument, NULL, 'i'},
		{"pgbouncer-source", required_argument, NULL, 'P'},
		{"database", required_argument, NULL, 'd'},
		{"exec", required_argument, NULL, 'e'},
		{"readonly", no_argument, NULL, 'r'},
		{"stream", required_argument, NULL, 'n'},
		{"reverse-slot", required_argument, NULL, 'R'},
		{"reverse-publication", required_argument, NULL, 'U'},
		{"timeout", required_argument, NULL, 't'},
		{"dbm-schema", required_argument, NULL, 'S'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *source = getenv("DBM_SOURCE"), *target = getenv("DBM_TARGET");
	const char *bouncer = NULL, *ini = NULL, *db = NULL, *bouncer_source = NULL;
	const char *exec_cmd = NULL, *stream = NULL, *schema = "dbm";
	const char *rslot = "dbm_reverse", *rpub = "dbm_reverse";
	bool readonly = false;
	double timeout = 30;
	int c, rc = 2, state, nseq = 0;
	bool moved = false;
	PGconn *src = NULL, *dst = NULL, *admin = NULL;
	int64_t t0 = dbm_epoch_ms();
	char since[64] = ""; /* when this run made the target read-only */

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's': source = optarg; break;
			case 'g': target = optarg; break;
			case 'b': bouncer = optarg; break;
			case 'i': ini = optarg; break;
			case 'P': bouncer_source = optarg; break;
			case 'd': db = optarg; break;
			case 'e': exec_cmd = optarg; break;
			case 'r': readonly = true; break;
			case 'n': stream = optarg; break;
			case 'R': rslot = optarg; break;
			case 'U': rpub = optarg; break;
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
			case 'V': printf("dbm-rollback (dbm) %s\n", DBM_VERSION); return 0;
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
	if (source == NULL || target == NULL)
	{
		dbm_log_error("%s is required", source == NULL ? "--source" : "--target");
		dbm_log_usage_hint();
		return 2;
	}
	if (bouncer == NULL && !readonly && exec_cmd == NULL)
	{
		dbm_log_error("give --pgbouncer with --pgbouncer-ini and --database, --exec, or --readonly");
		dbm_log_usage_hint();
		return 2;
	}
	if (bouncer && exec_cmd)
	{
		dbm_log_error("give either --pgbouncer or --exec, not both");
		dbm_log_usage_hint();
		return 2;
	}
	if (bouncer && (ini == NULL || db == NULL))
	{
		dbm_log_error("%s is required with --pgbouncer", ini == NULL ? "--pgbouncer-ini" : "--database");
		dbm_log_usage_hint();
		return 2;
	}

	if ((dst = dbm_pg_connect(target, "dbm-rollback")) == NULL ||
		(src = dbm_pg_connect(source, "dbm-rollback")) == NULL ||
		!dbm_pg_command(dst, "SET default_transaction_read_only = off", NULL) ||
		!dbm_pg_command(src, "SET default_transaction_read_only = off", NULL))
		goto out;
	if ((state = switch_state(dst, schema)) < 0)
		goto out;

	if (state == 0)
	{
		/* before the switch: the source never stopped being primary */
		bool ok;
		if (bouncer)
		{
			admin = dbm_pg_connect_raw(bouncer, "dbm-rollback");
			ok = admin != NULL;
			if (ok)
			{
				/* RESUME of a database that is not paused is an error we
				 * do not care about: the goal is "not paused" */
				char *sql = xasprintf("RESUME \"%s\"", db);
				PQclear(PQexec(admin, sql));
				free(sql);
			}
		}
		else
			ok = dbm_readonly_set(src, false, NULL);
		if (ok)
		{
			/* a reverse slot made ahead of a switch that did not happen
			 * would hold the target's WAL for nothing */
			const char *v[1] = {rslot};
			char *q = PQescapeIdentifier(dst, rpub, strlen(rpub));
			char *sql = xasprintf("DROP PUBLICATION IF EXISTS %s", q);
			PQclear(PQexecParams(dst, "SELECT pg_catalog.pg_drop_replication_slot(slot_name)"
									  " FROM pg_catalog.pg_replication_slots"
									  " WHERE slot_name = $1 AND database = current_database()"
									  "   AND NOT active",
								 1, NULL, v, NULL, NULL, 0));
			PQclear(PQexec(dst, sql));
			free(sql);
			PQfreemem(q);
		}
		if (ok && dbm_jsonl_print(json_pack("{s:s,s:s,s:s}", "type", "rolled_back", "stage",
											"before_switch", "primary", "source")))
			rc = 0;
		goto out;
	}

	/* after the switch: stop writes on the target */
	if (bouncer)
	{
		if ((admin = dbm_pg_connect_raw(bouncer, "dbm-rollback")) == NULL ||
			!dbm_bouncer(admin, "PAUSE", db))
			goto out;
	}
	else if (!dbm_readonly_set(dst, true, since) ||
			 !dbm_end_app_sessions(dst, NULL, false, "could not end the sessions of the target"))
		goto out;
	{
		uint64_t lsn;
		long barrier;
		const char *how = NULL;
		int w;
		char lsnbuf[32], at[96];

		if (!dbm_barrier_table(dst, schema) ||
			!dbm_barrier_emit(dst, schema, "rollback", &lsn, &barrier))
			goto out_resume;
		w = dbm_wait_applied(src, schema, stream, lsn, barrier, timeout, &how);
		if (w < 0)
			goto out_resume;
		if (w == 0)
		{
			dbm_lsn_format(lsn, lsnbuf);
			dbm_log_error("the source has not applied the target up to %s within %.1f s"
						  " (is the reverse apply running?): the target stays primary",
						  lsnbuf, timeout);
			rc = 1;
			goto out_resume;
		}
		if (!dbm_sequences_copy(dst, src, schema, &nseq))
			goto out_resume;
		if (readonly && !dbm_readonly_set(src, false, NULL))
			goto out_resume;
		if ((bouncer || exec_cmd) &&
			!dbm_route_repoint(bouncer, ini, db, bouncer_source ? bouncer_source : source,
							   exec_cmd, source, target, "source", &moved))
		{
			if (moved)
				goto out; /* pointing at the source already: no resume on the target */
			goto out_resume;
		}
		if (!mark_rolled_back(dst, schema, dbm_epoch_ms() - t0))
			goto out;
		dbm_lsn_format(lsn, lsnbuf);
		dbm_epoch_iso(dbm_epoch_ms(), at);
		if (dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:s}", "type",
									  "rolled_back", "stage", "after_switch", "primary",
									  "source", "lsn", lsnbuf, "applied_by", how, "sequences",
									  nseq, "pause_ms", (json_int_t) (dbm_epoch_ms() - t0),
									  "at", at)))
			rc = 0;
		goto out;
	}

out_resume:
	/* could not go back: let clients go on with the target */
	if (bouncer && admin)
		dbm_bouncer(admin, "RESUME", db);
	else if (!bouncer)
		dbm_readonly_set(dst, false, since);
out:
	PQfinish(admin);
	PQfinish(src);
	PQfinish(dst);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
