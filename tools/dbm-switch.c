/* dbm-switch - cut over to the target once it has applied everything up
 * to the freeze: sequences, reverse slot, repoint, resume. See
 * dbm-switch(1). */
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
	printf("dbm-switch cuts the application over from the source to the target.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-switch [OPTION]... --source=CONNINFO --target=CONNINFO --freeze=FILE\n"
		   "             (--pgbouncer=ADMIN --pgbouncer-ini=PATH --database=NAME | --exec=CMD)\n"
		   "\n"
		   "Reads the frozen line of dbm-freeze, waits until the target has applied\n"
		   "up to its position (dbm.apply_position, or the barrier row arriving by\n"
		   "whatever engine replicates), copies every sequence, creates the reverse\n"
		   "publication and slot on the target, records the switch in the target's\n"
		   "dbm schema, then repoints pgbouncer (rewrites the database entry, RELOAD,\n"
		   "RESUME) or runs --exec.\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       the source database (default: $DBM_SOURCE)\n"
		   "      --target=CONNINFO       the target database (default: $DBM_TARGET)\n"
		   "      --freeze=FILE           the frozen line (\"-\" for stdin, the default)\n"
		   "      --timeout=SECS          longest wait for the target (default 30)\n"
		   "      --stream=NAME           position row to wait for (default: any)\n"
		   "      --pgbouncer=CONNINFO    pgbouncer's admin console\n"
		   "      --pgbouncer-ini=PATH    pgbouncer's ini file, rewritten\n"
		   "      --database=NAME         the pgbouncer database entry\n"
		   "      --pgbouncer-target=CONNINFO  what the entry points at afterwards\n"
		   "                              (default: host, port, dbname, user and\n"
		   "                              password of --target)\n"
		   "      --exec=CMD              repoint with this shell command instead\n"
		   "                              (environment: DBM_SOURCE, DBM_TARGET,\n"
		   "                              DBM_DATABASE, DBM_ROUTE_TO=target)\n"
		   "      --reverse-slot=NAME     reverse slot on the target (default dbm_reverse)\n"
		   "      --reverse-publication=NAME  (default dbm_reverse)\n"
		   "      --dbm-schema=NAME       schema for the toolkit's state (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 switched, 1 the target did not catch up in time (nothing\n"
		   "repointed, the source stays frozen: thaw or retry), 2 error.\n");
}

static bool
ensure_reverse(PGconn *dst, const char *pub, const char *slot, char **lsn)
{
	const char *v[1] = {pub};
	PGresult *res = PQexecParams(dst, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
								 1, NULL, v, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (ok && PQntuples(res) == 0)
	{
		char *q = PQescapeIdentifier(dst, pub, strlen(pub));
		char *sql = xasprintf("CREATE PUBLICATION %s FOR ALL TABLES"
							  " WITH (publish_via_partition_root = true)", q);
		ok = dbm_pg_command(dst, sql, "could not create the reverse publication");
		free(sql);
		PQfreemem(q);
	}
	else if (!ok)
		dbm_log_error("could not look up the reverse publication: %s", dbm_pg_error(dst));
	PQclear(res);
	if (!ok)
		return false;
	v[0] = slot;
	res = PQexecParams(dst, "SELECT confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots"
							" WHERE slot_name = $1 AND database = current_database()"
							"   AND plugin = 'pgoutput'",
					   1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
	{
		*lsn = xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		return true;
	}
	PQclear(res);
	res = PQexecParams(dst, "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
					   1, NULL, v, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (ok)
		*lsn = xstrdup(PQgetvalue(res, 0, 0));
	else
		dbm_log_error("could not create the reverse slot \"%s\": %s", slot, dbm_pg_error(dst));
	PQclear(res);
	return ok;
}

static bool
record_switch(PGconn *dst, const char *schema, const json_t *frozen, const char *state,
			  const char *rslot, const char *rpub, long long pause_ms)
{
	char *s = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf("CREATE TABLE IF NOT EXISTS %s.switch ("
						  " id bigserial PRIMARY KEY, state text NOT NULL,"
						  " frozen jsonb NOT NULL, reverse_slot text, reverse_publication text,"
						  " pause_ms bigint, at timestamptz NOT NULL DEFAULT now())",
						  s);
	char *fz = json_dumps(frozen, JSON_COMPACT);
	char pms[32];
	const char *v[5] = {state, fz, rslot, rpub, pms};
	bool ok = dbm_pg_command(dst, sql, "could not record the switch on the target");
	PGresult *res;

	snprintf(pms, sizeof(pms), "%lld", pause_ms);
	free(sql);
	if (ok)
	{
		sql = xasprintf("INSERT INTO %s.switch (state, frozen, reverse_slot, reverse_publication,"
						" pause_ms) VALUES ($1, $2::jsonb, $3, $4, $5::bigint)",
						s);
		res = PQexecParams(dst, sql, 5, NULL, v, NULL, NULL, 0);
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			dbm_log_error("could not record the switch on the target: %s", dbm_pg_error(dst));
		PQclear(res);
		free(sql);
	}
	free(fz);
	PQfreemem(s);
	return ok;
}

static bool
set_state(PGconn *dst, const char *schema, const char *state)
{
	char *s = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf("UPDATE %s.switch SET state = $1, at = now()"
						  " WHERE id = (SELECT max(id) FROM %s.switch)",
						  s, s);
	const char *v[1] = {state};
	PGresult *res = PQexecParams(dst, sql, 1, NULL, v, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		dbm_log_error("could not record the switch on the target: %s", dbm_pg_error(dst));
	PQclear(res);
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
		{"freeze", required_argument, NULL, 'f'},
		{"timeout", required_argument, NULL, 't'},
		{"stream", required_argument, NULL, 'n'},
		{"pgbouncer", required_argument, NULL, 'b'},
		{"pgbouncer-ini", required_argument, NULL, 'i'},
		{"pgbouncer-target", required_argument, NULL, 'P'},
		{"database", required_argument, NULL, 'd'},
		{"exec", required_argument, NULL, 'e'},
		{"reverse-slot", required_argument, NULL, 'R'},
		{"reverse-publication", required_argument, NULL, 'U'},
		{"dbm-schema", required_argument, NULL, 'S'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *source = getenv("DBM_SOURCE"), *target = getenv("DBM_TARGET");
	const char *freeze = "-", *stream = NULL, *bouncer = NULL, *ini = NULL, *db = NULL;
	const char *bouncer_target = NULL, *exec_cmd = NULL, *schema = "dbm";
	const char *rslot = "dbm_reverse", *rpub = "dbm_reverse";
	double timeout = 30;
	int c, rc = 2, nseq = 0;
	PGconn *src = NULL, *dst = NULL;
	json_t *frozen = NULL;
	char *rlsn = NULL;
	const char *how = NULL;
	uint64_t lsn = 0;
	long long barrier = 0, at_ms = 0;
	bool moved = false;

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's': source = optarg; break;
			case 'g': target = optarg; break;
			case 'f': freeze = optarg; break;
			case 'n': stream = optarg; break;
			case 'b': bouncer = optarg; break;
			case 'i': ini = optarg; break;
			case 'P': bouncer_target = optarg; break;
			case 'd': db = optarg; break;
			case 'e': exec_cmd = optarg; break;
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
			case 'V': printf("dbm-switch (dbm) %s\n", DBM_VERSION); return 0;
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
	if ((exec_cmd != NULL) == (bouncer != NULL || ini != NULL))
	{
		dbm_log_error("give either --pgbouncer, --pgbouncer-ini and --database, or --exec");
		dbm_log_usage_hint();
		return 2;
	}
	if (!exec_cmd && (bouncer == NULL || ini == NULL || db == NULL))
	{
		dbm_log_error("%s is required with pgbouncer",
					  bouncer == NULL ? "--pgbouncer" : ini == NULL ? "--pgbouncer-ini" : "--database");
		dbm_log_usage_hint();
		return 2;
	}

	/* the frozen line */
	{
		dbm_jsonl_reader r;
		json_t *o;
		int got;
		const char *type, *lsn_s;
		if (!dbm_jsonl_open(&r, freeze))
			return 2;
		while ((got = dbm_jsonl_next(&r, &o)) == 1)
		{
			type = json_string_value(json_object_get(o, "type"));
			if (type && strcmp(type, "frozen") == 0)
			{
				frozen = o;
				break;
			}
			json_decref(o);
		}
		if (frozen && (!dbm_jsonl_str(&r, frozen, "lsn", &lsn_s) ||
					   !dbm_jsonl_int(&r, frozen, "barrier", 0, INT64_MAX, &barrier) ||
					   !dbm_jsonl_int(&r, frozen, "at_ms", 0, INT64_MAX, &at_ms)))
			got = -1;
		else if (frozen && !dbm_lsn_parse(lsn_s, &lsn))
		{
			dbm_log_error("%s:%ld: invalid LSN \"%s\"", r.path, r.line, lsn_s);
			got = -1;
		}
		else if (frozen == NULL && got == 0)
		{
			dbm_log_error("%s: no frozen line (run dbm-freeze first)", freeze);
			got = -1;
		}
		dbm_jsonl_close(&r);
		if (got < 0)
			goto out;
		if (db == NULL)
			db = json_string_value(json_object_get(frozen, "database"));
	}

	if ((dst = dbm_pg_connect(target, "dbm-switch")) == NULL ||
		(src = dbm_pg_connect(source, "dbm-switch")) == NULL ||
		!dbm_pg_command(dst, "SET default_transaction_read_only = off", NULL) ||
		!dbm_pg_command(src, "SET default_transaction_read_only = off", NULL))
		goto out;
	{
		int w = dbm_wait_applied(dst, schema, stream, lsn, (long) barrier, timeout, &how);
		if (w < 0)
			goto out;
		if (w == 0)
		{
			char lsnbuf[32];
			dbm_lsn_format(lsn, lsnbuf);
			dbm_log_error("the target has not applied up to %s within %.1f s: nothing repointed",
						  lsnbuf, timeout);
			rc = 1;
			goto out;
		}
	}
	if (!dbm_sequences_copy(src, dst, schema, &nseq) || !ensure_reverse(dst, rpub, rslot, &rlsn))
		goto out;
	/* switching until the router is repointed: a rollback of a switch
	 * that died half-way must treat it as done (clients may have written
	 * to the target); one that failed cleanly is marked aborted */
	if (!record_switch(dst, schema, frozen, "switching", rslot, rpub,
					   dbm_epoch_ms() - at_ms))
		goto out;
	if (!dbm_route_repoint(bouncer, ini, db, bouncer_target ? bouncer_target : target,
						   exec_cmd, source, target, "target", &moved))
	{
		/* repointed but not resumed is switched all the same: a rollback
		 * must bring back what clients write once they are let through */
		set_state(dst, schema, moved ? "switched" : "aborted");
		if (moved)
			dbm_log_error("the route points at the target but clients are still paused:"
						  " RESUME them on pgbouncer's console");
		goto out;
	}
	if (!set_state(dst, schema, "switched"))
		goto out;
	{
		char lsnbuf[32], at[96];
		int64_t now = dbm_epoch_ms();
		dbm_lsn_format(lsn, lsnbuf);
		dbm_epoch_iso(now, at);
		if (dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:s}", "type",
									  "switched", "freeze_lsn", lsnbuf, "applied_by", how,
									  "router", exec_cmd ? "exec" : "pgbouncer", "sequences",
									  nseq, "reverse_slot", rslot, "reverse_publication", rpub,
									  "reverse_lsn", rlsn, "pause_ms",
									  (json_int_t) (now - at_ms), "at", at)))
			rc = 0;
	}

out:
	json_decref(frozen);
	free(rlsn);
	PQfinish(src);
	PQfinish(dst);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
