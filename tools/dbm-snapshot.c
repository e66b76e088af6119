/* dbm-snapshot - copy a live database to a target in one consistent
 * snapshot, tied to a logical replication slot so that dbm-cdc-apply
 * continues exactly where the copy ends. See dbm-snapshot(1).
 *
 * Binary COPY is streamed from source to target through the tool, tables
 * in parallel, large tables split into ctid ranges. Every finished piece
 * is recorded in the target's dbm schema in the transaction that loads it,
 * so --resume knows what is done. */
#define _POSIX_C_SOURCE 200809L
#include "catalog.h"
#include "jsonl.h"
#include "log.h"
#include "pg.h"
#include "secret.h"
#include "progress.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Pieces of a split table cannot be loaded with COPY FREEZE: their rows
 * need hint bits set and, some day, an anti-wraparound VACUUM that rewrites
 * every page.  So only tables big enough for the parallel copy to pay for
 * that are split by default. */
#define DEFAULT_SPLIT_BYTES ((int64_t) 8 << 30)
#define MAX_PIECES 1024

static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

/* One heap relation to copy (an ordinary table or a leaf partition). */
typedef struct
{
	const dbm_rel *rel;
	int table;		  /* index of its table (a partitioned root has several) */
	char *target;	  /* quoted name on the target */
	char *src_cols;	  /* quoted column list read from the source */
	char *dst_cols;	  /* the same columns for COPY on the target */
	int pieces;
	long step;		  /* pages per piece when split */
	bool skip;		  /* done before (--resume) */
} unit;

typedef struct
{
	int unit;
	int piece;
	long first, last; /* block range, -1 for none / open-ended */
	long pages;
} piece;

typedef struct
{
	const char *source, *target, *schema;
	char *snapshot;
	char *lsn;
	unit *units;
	int nunits;
	piece *pieces;
	int npieces;
	int next; /* under lock */
	pthread_mutex_t lock;
	pthread_cond_t imported_cv;
	int imported;
	atomic_int failed;
	atomic_int loaded; /* pieces committed on the target in this run */
	atomic_uint_fast64_t rows, bytes;
	uint64_t total_bytes;
} snap;

static void
usage(void)
{
	printf("dbm-snapshot copies a live PostgreSQL database in one consistent snapshot.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-snapshot [OPTION]... --source=CONNINFO --target=CONNINFO\n"
		   "\n"
		   "With --slot, a pgoutput logical replication slot is created with an\n"
		   "exported snapshot and the copy reads exactly that snapshot: dbm-cdc-apply\n"
		   "--slot then continues where the copy ends, with no gap and no overlap.\n"
		   "Without --slot the copy is consistent as of one REPEATABLE READ snapshot.\n"
		   "Schema is not copied: load pre-data before and post-data after.\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       database to copy (default: $DBM_SOURCE)\n"
		   "      --target=CONNINFO       database to load (default: $DBM_TARGET)\n"
		   "      --slot=NAME             create this logical replication slot\n"
		   "      --publication=NAME      publication for the slot, created FOR ALL\n"
		   "                              TABLES if missing (default: the slot name)\n"
		   "  -t, --table=PATTERN         only tables matching the glob PATTERN;\n"
		   "                              repeatable\n"
		   "  -T, --exclude-table=PATTERN\n"
		   "                              leave out matching tables; repeatable\n"
		   "  -j, --jobs=N                pieces copied in parallel (default 4)\n"
		   "      --split-size=SIZE       split tables whose heap is larger than SIZE\n"
		   "                              (kB, MB, GB, TB) into ctid ranges of at most\n"
		   "                              SIZE (default 8GB); split pieces are loaded\n"
		   "                              without COPY FREEZE\n"
		   "      --split-rows=N          also split tables of more than N rows\n"
		   "                              (planner estimate) into pieces of N rows\n"
		   "      --resume                after an interruption, copy only what the\n"
		   "                              target's dbm schema does not record as done\n"
		   "      --dbm-schema=NAME       schema for the toolkit's state (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 copied (or stopped by a signal, said on stdout), 2 error.\n");
}

static PGresult *
exec_params(PGconn *conn, const char *sql, int n, const char *const *vals,
			ExecStatusType want, const char *what)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != want)
	{
		dbm_log_error("%s: %s", what, dbm_pg_error(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Create the state tables in the target's dbm schema. */
static bool
prepare_state(PGconn *dst, const char *schema, bool resume)
{
	char *s = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf(
		"CREATE SCHEMA IF NOT EXISTS %s; "
		/* one row; its key lets it be updated under a FOR ALL TABLES
		 * publication on the target (a reverse publication made early) */
		"CREATE TABLE IF NOT EXISTS %s.snapshot_run ("
		" id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
		" slot text, lsn pg_lsn NOT NULL, snapshot text NOT NULL,"
		" started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz);"
		"CREATE TABLE IF NOT EXISTS %s.snapshot_table ("
		" relname text PRIMARY KEY, pieces int NOT NULL, copy_lsn pg_lsn NOT NULL,"
		" snapshot text NOT NULL, started_at timestamptz NOT NULL DEFAULT now());"
		"CREATE TABLE IF NOT EXISTS %s.snapshot_piece ("
		" relname text NOT NULL, piece int NOT NULL, rows bigint NOT NULL,"
		" bytes bigint NOT NULL, done_at timestamptz NOT NULL DEFAULT now(),"
		" PRIMARY KEY (relname, piece));",
		s, s, s, s);
	bool ok = dbm_pg_command(dst, sql, "could not create the state tables on the target");
	free(sql);
	if (ok && !resume)
	{
		sql = xasprintf("TRUNCATE %s.snapshot_run, %s.snapshot_table, %s.snapshot_piece",
						s, s, s);
		ok = dbm_pg_command(dst, sql, "could not reset the state tables on the target");
		free(sql);
	}
	PQfreemem(s);
	return ok;
}

/* Check the target has every relation and column, and build the column
 * lists (generated columns on the target are left out). */
static bool
plan_unit(PGconn *src, PGconn *dst, const dbm_table *t, const dbm_rel *rel,
		  unit *u)
{
	static const char *sql =
		"SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
		"       a.attgenerated <> '' "
		"FROM pg_catalog.pg_attribute a "
		"WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
	const char *name = rel->name;
	PGresult *res = exec_params(dst, sql, 1, &name, PGRES_TUPLES_OK,
								"could not read the target catalog");
	dbm_buf sc, dc;
	bool ok = true;

	if (res == NULL)
		return false;
	if (PQntuples(res) == 0)
	{
		dbm_log_error("table %s is missing on the target", rel->name);
		PQclear(res);
		return false;
	}
	dbm_buf_init(&sc);
	dbm_buf_init(&dc);
	for (int c = 0; c < t->ncols && ok; c++)
	{
		int found = -1;
		for (int r = 0; r < PQntuples(res); r++)
			if (strcmp(PQgetvalue(res, r, 0), t->cols[c]) == 0)
				found = r;
		if (found < 0)
		{
			dbm_log_error("table %s: column \"%s\" is missing on the target",
						  rel->name, t->cols[c]);
			ok = false;
		}
		else if (strcmp(PQgetvalue(res, found, 1), t->types[c]) != 0)
		{
			dbm_log_error("table %s: column \"%s\" is %s on the source but %s on the target",
						  rel->name, t->cols[c], t->types[c],
						  PQgetvalue(res, found, 1));
			ok = false;
		}
		else if (strcmp(PQgetvalue(res, found, 2), "t") != 0)
		{
			char *q = PQescapeIdentifier(src, t->cols[c], strlen(t->cols[c]));
			if (sc.len)
			{
				dbm_buf_puts(&sc, ", ");
				dbm_buf_puts(&dc, ", ");
			}
			dbm_buf_puts(&sc, q);
			dbm_buf_puts(&dc, q);
			PQfreemem(q);
		}
	}
	PQclear(res);
	u->rel = rel;
	u->target = xstrdup(rel->name);
	u->src_cols = sc.data;
	u->dst_cols = dc.data;
	return ok;
}

/* Stream one piece: COPY out of the source, COPY into the target. */
static bool
copy_piece(snap *s, PGconn *src, PGconn *dst, const piece *p, int64_t *rows,
		   int64_t *bytes)
{
	unit *u = &s->units[p->unit];
	char *out_sql, *in_sql, *buf;
	PGresult *res;
	int len;
	bool ok = true;
	uint64_t nb = 0;

	*rows = *bytes = 0;
	if (p->first < 0)
		/* a whole heap (every rel is a plain table or a leaf partition:
		 * COPY of a table reads no child): the table form skips the
		 * executor, about 10% less source CPU than COPY (SELECT ...) */
		out_sql = xasprintf("COPY %s (%s) TO STDOUT (FORMAT binary)", u->rel->name,
							u->src_cols);
	else if (p->last < 0)
		out_sql = xasprintf("COPY (SELECT %s FROM %s WHERE ctid >= '(%ld,0)'::tid)"
							" TO STDOUT (FORMAT binary)",
							u->src_cols, u->rel->from, p->first);
	else
		out_sql = xasprintf("COPY (SELECT %s FROM %s WHERE ctid >= '(%ld,0)'::tid"
							" AND ctid < '(%ld,0)'::tid) TO STDOUT (FORMAT binary)",
							u->src_cols, u->rel->from, p->first, p->last);
	in_sql = xasprintf("COPY %s (%s) FROM STDIN (FORMAT binary%s)", u->target,
					   u->dst_cols, u->pieces == 1 ? ", FREEZE" : "");

	res = PQexec(dst, in_sql);
	if (PQresultStatus(res) != PGRES_COPY_IN)
	{
		dbm_log_error("could not load table %s: %s", u->target, dbm_pg_error(dst));
		PQclear(res);
		ok = false;
		goto out_free_sql;
	}
	PQclear(res);
	res = PQexec(src, out_sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		dbm_log_error("could not read table %s: %s", u->rel->name, dbm_pg_error(src));
		PQclear(res);
		PQputCopyEnd(dst, "source failed");
		PQclear(PQgetResult(dst));
		ok = false;
		goto out_free_sql;
	}
	PQclear(res);
	while ((len = PQgetCopyData(src, &buf, 0)) > 0)
	{
		if (PQputCopyData(dst, buf, len) != 1)
		{
			PQfreemem(buf);
			dbm_log_error("could not load table %s: %s", u->target, dbm_pg_error(dst));
			ok = false;
			break;
		}
		PQfreemem(buf);
		nb += (uint64_t) len;
		if (nb > (1 << 20))
		{
			atomic_fetch_add(&s->bytes, nb);
			*bytes += (int64_t) nb;
			nb = 0;
			if (atomic_load(&s->failed))
			{
				ok = false;
				break;
			}
		}
	}
	atomic_fetch_add(&s->bytes, nb);
	*bytes += (int64_t) nb;
	if (ok && len == -2)
	{
		dbm_log_error("could not read table %s: %s", u->rel->name, dbm_pg_error(src));
		ok = false;
	}
	/* left before the end of the source's COPY (the target failed, or
	 * another worker did): end it, or the results below never end */
	if (len > 0)
		dbm_pg_abandon_copy_out(src);
	while ((res = PQgetResult(src)) != NULL)
	{
		if (ok && PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			dbm_log_error("could not read table %s: %s", u->rel->name,
						  dbm_pg_error(src));
			ok = false;
		}
		PQclear(res);
	}
	if (PQputCopyEnd(dst, ok ? NULL : "copy aborted") != 1)
		ok = false;
	while ((res = PQgetResult(dst)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			if (ok)
				dbm_log_error("could not load table %s: %s", u->target,
							  dbm_pg_error(dst));
			ok = false;
		}
		else
		{
			long n = 0;
			dbm_parse_long(PQcmdTuples(res), 0, LONG_MAX, &n);
			*rows = n;
		}
		PQclear(res);
	}
	if (ok)
		atomic_fetch_add(&s->rows, (uint64_t) *rows);

out_free_sql:
	free(out_sql);
	free(in_sql);
	return ok;
}

static bool
begin_snapshot(PGconn *conn, const char *snapshot)
{
	char *lit, *sql;
	bool ok;

	if (!dbm_pg_command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
						"could not start the snapshot transaction"))
		return false;
	lit = PQescapeLiteral(conn, snapshot, strlen(snapshot));
	sql = xasprintf("SET TRANSACTION SNAPSHOT %s", lit);
	ok = dbm_pg_command(conn, sql, "could not import the snapshot");
	free(sql);
	PQfreemem(lit);
	return ok;
}

/* Load one piece in one target transaction with its state row. */
static bool
load_piece(snap *s, PGconn *src, PGconn *dst, const piece *p)
{
	unit *u = &s->units[p->unit];
	char *sch = PQescapeIdentifier(dst, s->schema, strlen(s->schema));
	char *sql = NULL;
	int64_t rows = 0, bytes = 0, t0 = dbm_now_ms();
	char pbuf[16], rbuf[32], bbuf[32];
	const char *vals[6];
	PGresult *res;
	bool ok = false;

	if (!dbm_pg_command(dst, "BEGIN", "could not start a target transaction"))
		goto out;
	if (u->pieces == 1)
	{
		/* TRUNCATE in the loading transaction allows COPY FREEZE */
		sql = xasprintf("TRUNCATE ONLY %s", u->target);
		if (!dbm_pg_command(dst, sql, u->target))
			goto out_rollback;
		free(sql);
		sql = xasprintf("INSERT INTO %s.snapshot_table (relname, pieces, copy_lsn, snapshot)"
						" VALUES ($1, 1, $2, $3) ON CONFLICT (relname) DO UPDATE"
						" SET pieces = 1, copy_lsn = $2, snapshot = $3, started_at = now()",
						sch);
		vals[0] = u->rel->name;
		vals[1] = s->lsn;
		vals[2] = s->snapshot;
		if ((res = exec_params(dst, sql, 3, vals, PGRES_COMMAND_OK,
							   "could not record the copy on the target")) == NULL)
			goto out_rollback;
		PQclear(res);
		free(sql);
		sql = xasprintf("DELETE FROM %s.snapshot_piece WHERE relname = $1", sch);
		if ((res = exec_params(dst, sql, 1, vals, PGRES_COMMAND_OK,
							   "could not record the copy on the target")) == NULL)
			goto out_rollback;
		PQclear(res);
		free(sql);
		sql = NULL;
	}
	if (!copy_piece(s, src, dst, p, &rows, &bytes))
		goto out_rollback;
	snprintf(pbuf, sizeof(pbuf), "%d", p->piece);
	snprintf(rbuf, sizeof(rbuf), "%lld", (long long) rows);
	snprintf(bbuf, sizeof(bbuf), "%lld", (long long) bytes);
	vals[0] = u->rel->name;
	vals[1] = pbuf;
	vals[2] = rbuf;
	vals[3] = bbuf;
	free(sql);
	sql = xasprintf("INSERT INTO %s.snapshot_piece (relname, piece, rows, bytes)"
					" VALUES ($1, $2, $3, $4)", sch);
	if ((res = exec_params(dst, sql, 4, vals, PGRES_COMMAND_OK,
						   "could not record the copy on the target")) == NULL)
		goto out_rollback;
	PQclear(res);
	if (!dbm_pg_command(dst, "COMMIT", "could not commit on the target"))
		goto out;
	atomic_fetch_add(&s->loaded, 1);
	ok = dbm_jsonl_print(json_pack("{s:s,s:s,s:i,s:i,s:I,s:I,s:I}", "type", "copied",
								   "table", u->rel->name, "piece", p->piece,
								   "pieces", u->pieces, "rows", (json_int_t) rows,
								   "bytes", (json_int_t) bytes, "ms",
								   (json_int_t) (dbm_now_ms() - t0)));
	goto out;

out_rollback:
	PQclear(PQexec(dst, "ROLLBACK"));
out:
	free(sql);
	PQfreemem(sch);
	return ok;
}

static void *
worker(void *arg)
{
	snap *s = arg;
	PGconn *src = dbm_pg_connect(s->source, "dbm-snapshot");
	PGconn *dst = dbm_pg_connect(s->target, "dbm-snapshot");
	bool imported = src && dst && begin_snapshot(src, s->snapshot);

	if (dst && imported)
		imported = dbm_pg_command(dst, "SET synchronous_commit = off",
								  "could not configure the target session");
	pthread_mutex_lock(&s->lock);
	s->imported++;
	pthread_cond_broadcast(&s->imported_cv);
	pthread_mutex_unlock(&s->lock);
	if (!imported)
	{
		atomic_store(&s->failed, 1);
		goto out;
	}
	while (!atomic_load(&s->failed) && !stop_requested)
	{
		piece *p;
		pthread_mutex_lock(&s->lock);
		p = s->next < s->npieces ? &s->pieces[s->next++] : NULL;
		pthread_mutex_unlock(&s->lock);
		if (p == NULL)
			break;
		if (!load_piece(s, src, dst, p))
			atomic_store(&s->failed, 1);
	}
out:
	PQfinish(src);
	PQfinish(dst);
	return NULL;
}

static int
cmp_piece(const void *a, const void *b)
{
	const piece *x = a, *y = b;
	/* biggest first so the long pole starts early */
	if (x->pages != y->pages)
		return x->pages > y->pages ? -1 : 1;
	if (x->unit != y->unit)
		return x->unit - y->unit;
	return x->piece - y->piece;
}

/* Which relations --resume can skip: all their planned pieces are done. */
static bool
load_done(PGconn *dst, const char *schema, snap *s)
{
	char *sch = PQescapeIdentifier(dst, schema, strlen(schema));
	char *sql = xasprintf("SELECT t.relname FROM %s.snapshot_table t"
						  " WHERE t.pieces = (SELECT count(*) FROM %s.snapshot_piece p"
						  " WHERE p.relname = t.relname)",
						  sch, sch);
	PGresult *res = exec_params(dst, sql, 0, NULL, PGRES_TUPLES_OK,
								"could not read the copy state on the target");
	free(sql);
	PQfreemem(sch);
	if (res == NULL)
		return false;
	for (int r = 0; r < PQntuples(res); r++)
		for (int u = 0; u < s->nunits; u++)
			if (strcmp(s->units[u].rel->name, PQgetvalue(res, r, 0)) == 0)
				s->units[u].skip = true;
	PQclear(res);
	return true;
}

/* The copy position of a partitioned table, under the root's name. */
static bool
record_root(PGconn *dst, snap *s, const char *root)
{
	char *sch = PQescapeIdentifier(dst, s->schema, strlen(s->schema));
	char *sql = xasprintf("INSERT INTO %s.snapshot_table (relname, pieces, copy_lsn, snapshot)"
						  " VALUES ($1, 0, $2, $3) ON CONFLICT (relname) DO UPDATE"
						  " SET copy_lsn = $2, snapshot = $3, started_at = now()",
						  sch);
	const char *vals[3] = {root, s->lsn, s->snapshot};
	PGresult *res = exec_params(dst, sql, 3, vals, PGRES_COMMAND_OK,
								"could not record the copy on the target");
	free(sql);
	PQfreemem(sch);
	PQclear(res);
	return res != NULL;
}

/* A split relation is emptied and its state reset before its pieces load. */
static bool
start_split(PGconn *dst, snap *s, unit *u)
{
	char *sch = PQescapeIdentifier(dst, s->schema, strlen(s->schema));
	char np[16];
	const char *vals[4] = {u->rel->name, np, s->lsn, s->snapshot};
	char *sql = xasprintf("TRUNCATE ONLY %s", u->target);
	PGresult *res;
	bool ok;

	snprintf(np, sizeof(np), "%d", u->pieces);
	ok = dbm_pg_command(dst, "BEGIN", "could not start a target transaction") &&
		 dbm_pg_command(dst, sql, u->target);
	free(sql);
	sql = xasprintf("DELETE FROM %s.snapshot_piece WHERE relname = $1", sch);
	if (ok && (res = exec_params(dst, sql, 1, vals, PGRES_COMMAND_OK,
								 "could not record the copy on the target")))
		PQclear(res);
	else
		ok = false;
	free(sql);
	sql = xasprintf("INSERT INTO %s.snapshot_table (relname, pieces, copy_lsn, snapshot)"
					" VALUES ($1, $2, $3, $4) ON CONFLICT (relname) DO UPDATE"
					" SET pieces = $2, copy_lsn = $3, snapshot = $4, started_at = now()",
					sch);
	if (ok && (res = exec_params(dst, sql, 4, vals, PGRES_COMMAND_OK,
								 "could not record the copy on the target")))
		PQclear(res);
	else
		ok = false;
	free(sql);
	PQfreemem(sch);
	if (ok)
		ok = dbm_pg_command(dst, "COMMIT", "could not commit on the target");
	else
		PQclear(PQexec(dst, "ROLLBACK"));
	return ok;
}

/* Ensure the publication exists before the slot: pgoutput looks it up as
 * of each change's position, so one created later is not found. */
static bool
ensure_publication(PGconn *conn, const char *pub, bool *created)
{
	const char *vals[1] = {pub};
	PGresult *res = exec_params(conn, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
								1, vals, PGRES_TUPLES_OK,
								"could not look up the publication");
	bool exists, ok = true;

	if (res == NULL)
		return false;
	exists = PQntuples(res) > 0;
	PQclear(res);
	if (!exists)
	{
		char *q = PQescapeIdentifier(conn, pub, strlen(pub));
		char *sql = xasprintf("CREATE PUBLICATION %s FOR ALL TABLES"
							  " WITH (publish_via_partition_root = true)", q);
		ok = dbm_pg_command(conn, sql, "could not create the publication");
		*created = ok;
		free(sql);
		PQfreemem(q);
	}
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		/* connections */
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 'g'},
		{"slot", required_argument, NULL, 'l'},
		{"publication", required_argument, NULL, 'P'},
		/* what */
		{"table", required_argument, NULL, 't'},
		{"exclude-table", required_argument, NULL, 'T'},
		{"dbm-schema", required_argument, NULL, 'S'},
		/* how */
		{"jobs", required_argument, NULL, 'j'},
		{"split-rows", required_argument, NULL, 'r'},
		{"split-size", required_argument, NULL, 'z'},
		{"resume", no_argument, NULL, 'R'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *source = getenv("DBM_SOURCE"), *target = getenv("DBM_TARGET");
	const char *slot = NULL, *publication = NULL;
	const char **incl = xcalloc((size_t) argc + 1, sizeof(char *));
	const char **excl = xcalloc((size_t) argc + 1, sizeof(char *));
	dbm_filter filter = {incl, 0, excl, 0, "dbm"};
	long jobs = 4, split_rows = 0;
	int64_t split_bytes = DEFAULT_SPLIT_BYTES;
	bool resume = false, announced = false, dropped = false;
	int c, rc = 2;
	PGconn *repl = NULL, *coord = NULL, *dst = NULL;
	dbm_table *tabs = NULL;
	int ntabs = 0;
	snap s = {0};
	pthread_t *threads = NULL;
	int nthreads = 0;
	int64_t started = dbm_now_ms();
	char *tmp_slot = NULL;
	int skipped = 0;
	bool created_pub = false, created_slot = false;

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	/* a copied line is on disk as soon as its piece is committed */
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "t:T:j:Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's': source = optarg; break;
			case 'g': target = optarg; break;
			case 'l': slot = optarg; break;
			case 'P': publication = optarg; break;
			case 't': incl[filter.ninclude++] = optarg; break;
			case 'T': excl[filter.nexclude++] = optarg; break;
			case 'S': filter.skip_schema = optarg; break;
			case 'j':
				if (!dbm_parse_long(optarg, 1, 64, &jobs))
				{
					dbm_log_error("invalid value \"%s\" for --jobs: expected 1 to 64", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'r':
				if (!dbm_parse_long(optarg, 1, LONG_MAX, &split_rows))
				{
					dbm_log_error("invalid value \"%s\" for --split-rows", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'z':
				if (!dbm_parse_size(optarg, 8192, &split_bytes))
				{
					dbm_log_error("invalid value \"%s\" for --split-size: expected a size"
								  " of at least 8kB, like 512MB", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'R': resume = true; break;
			case 'L': dbm_log_set_json(true); break;
			case 'V': printf("dbm-snapshot (dbm) %s\n", DBM_VERSION); return 0;
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
	if (publication && !slot)
	{
		dbm_log_error("--publication needs --slot");
		dbm_log_usage_hint();
		return 2;
	}
	if (slot && !publication)
		publication = slot;
	s.source = source;
	s.target = target;
	s.schema = filter.skip_schema;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.imported_cv, NULL);

	if ((dst = dbm_pg_connect(target, "dbm-snapshot")) == NULL)
		goto out;
	if (slot)
	{
		/* the exported snapshot lives as long as this connection stays idle */
		PGresult *res;
		const char *use = slot;
		char *q, *sql;

		if ((coord = dbm_pg_connect(source, "dbm-snapshot")) == NULL ||
			(repl = dbm_pg_connect_ex(source, "dbm-snapshot", true)) == NULL)
			goto out;
		{
			/* before anything is created on the source */
			PGresult *res = exec_params(coord, "SELECT current_setting('wal_level')", 0, NULL,
										PGRES_TUPLES_OK, "could not read wal_level");
			bool logical = res && strcmp(PQgetvalue(res, 0, 0), "logical") == 0;
			if (res && !logical)
				dbm_log_error("the source has wal_level = %s: a slot needs wal_level = logical"
							  " (ALTER SYSTEM SET wal_level = logical, then restart)",
							  PQgetvalue(res, 0, 0));
			PQclear(res);
			if (!logical)
				goto out;
		}
		if (!ensure_publication(coord, publication, &created_pub))
			goto out;
		if (resume)
		{
			/* the slot stays where the first run made it; what is copied now
			 * is read in a new snapshot, and its position recorded per table
			 * so dbm-cdc-apply skips what the copy already holds */
			const char *v[1] = {slot};
			res = exec_params(coord, "SELECT 1 FROM pg_catalog.pg_replication_slots"
									" WHERE slot_name = $1",
							  1, v, PGRES_TUPLES_OK, "could not look up the slot");
			if (res == NULL)
				goto out;
			if (PQntuples(res) == 0)
			{
				PQclear(res);
				dbm_log_error("replication slot \"%s\" does not exist: nothing to resume", slot);
				goto out;
			}
			PQclear(res);
			tmp_slot = xasprintf("dbm_resume_%d", (int) getpid());
			use = tmp_slot;
		}
		q = PQescapeIdentifier(repl, use, strlen(use));
		sql = xasprintf("CREATE_REPLICATION_SLOT %s%s LOGICAL pgoutput (SNAPSHOT 'export')",
						q, tmp_slot ? " TEMPORARY" : "");
		res = PQexec(repl, sql);
		free(sql);
		PQfreemem(q);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			dbm_log_error("could not create replication slot \"%s\": %s", use,
						  dbm_pg_error(repl));
			PQclear(res);
			goto out;
		}
		s.lsn = xstrdup(PQgetvalue(res, 0, 1));
		s.snapshot = xstrdup(PQgetvalue(res, 0, 2));
		PQclear(res);
		created_slot = tmp_slot == NULL;
	}
	else
	{
		PGresult *res;
		if ((repl = dbm_pg_connect(source, "dbm-snapshot")) == NULL)
			goto out;
		if (!dbm_pg_command(repl, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
							"could not start the snapshot transaction"))
			goto out;
		res = exec_params(repl, "SELECT pg_catalog.pg_export_snapshot(),"
								" pg_catalog.pg_current_wal_insert_lsn()",
						  0, NULL, PGRES_TUPLES_OK, "could not export a snapshot");
		if (res == NULL)
			goto out;
		s.snapshot = xstrdup(PQgetvalue(res, 0, 0));
		s.lsn = xstrdup(PQgetvalue(res, 0, 1));
		PQclear(res);
	}

	/* the table list, as of the snapshot */
	if ((coord == NULL && (coord = dbm_pg_connect(source, "dbm-snapshot")) == NULL) ||
		!begin_snapshot(coord, s.snapshot) ||
		!dbm_catalog_tables(coord, &filter, &tabs, &ntabs, NULL))
		goto out;
	for (int i = 0; i < ntabs; i++)
		s.nunits += tabs[i].nrels;
	s.units = xcalloc((size_t) s.nunits + 1, sizeof(unit));
	s.nunits = 0;
	{
		bool ok = true;
		for (int i = 0; i < ntabs; i++)
			for (int r = 0; r < tabs[i].nrels; r++)
			{
				s.units[s.nunits].table = i;
				ok = plan_unit(coord, dst, &tabs[i], &tabs[i].rels[r],
							   &s.units[s.nunits++]) && ok;
			}
		if (!ok)
			goto out; /* nothing copied: every check comes first */
	}
	if (!prepare_state(dst, s.schema, resume) || (resume && !load_done(dst, s.schema, &s)))
		goto out;
	/* changes to a partitioned table arrive under the root's name, so its
	 * partitions share one copy position: one unfinished partition means
	 * the whole table is copied again, and the position is recorded for
	 * the root too */
	for (int i = 0; i < ntabs; i++)
	{
		bool all_done = true;
		if (tabs[i].relkind != 'p')
			continue;
		for (int u = 0; u < s.nunits; u++)
			if (s.units[u].table == i && !s.units[u].skip)
				all_done = false;
		if (all_done)
			continue;
		for (int u = 0; u < s.nunits; u++)
			if (s.units[u].table == i)
				s.units[u].skip = false;
		if (!record_root(dst, &s, tabs[i].name))
			goto out;
	}

	/* pieces */
	s.pieces = xcalloc((size_t) s.nunits * MAX_PIECES + 1, sizeof(piece));
	for (int u = 0; u < s.nunits; u++)
	{
		unit *un = &s.units[u];
		long pages = un->rel->pages, tuples = un->rel->tuples;
		int n = 1;

		if (un->skip)
		{
			skipped++;
			continue;
		}
		if (jobs > 1 && pages > 1)
		{
			int64_t by_size = ((int64_t) pages * 8192 + split_bytes - 1) / split_bytes;
			long by_rows = split_rows > 0 && tuples > split_rows
				? (tuples + split_rows - 1) / split_rows : 1;
			n = by_size > MAX_PIECES ? MAX_PIECES : (int) by_size;
			if (by_rows > n)
				n = by_rows > MAX_PIECES ? MAX_PIECES : (int) by_rows;
			if (n > MAX_PIECES)
				n = MAX_PIECES;
			if (n > pages)
				n = (int) pages;
		}
		un->pieces = n;
		un->step = n > 1 ? (pages + n - 1) / n : 0;
		s.total_bytes += (uint64_t) pages * 8192;
		for (int k = 0; k < n; k++)
		{
			piece *p = &s.pieces[s.npieces++];
			p->unit = u;
			p->piece = k;
			p->pages = n > 1 ? un->step : pages;
			p->first = n > 1 ? k * un->step : -1;
			p->last = (n > 1 && k < n - 1) ? (k + 1) * un->step : -1;
		}
		if (n > 1 && !start_split(dst, &s, un))
			goto out;
	}
	if (s.npieces > 1) /* (s.pieces is NULL without tables) */
		qsort(s.pieces, (size_t) s.npieces, sizeof(piece), cmp_piece);

	{
		/* update (not replace) the run row so a resume keeps the slot's LSN */
		char *sch = PQescapeIdentifier(dst, s.schema, strlen(s.schema));
		char *sql = xasprintf("INSERT INTO %s.snapshot_run (slot, lsn, snapshot)"
							  " SELECT $1, $2, $3 WHERE NOT EXISTS"
							  " (SELECT 1 FROM %s.snapshot_run)", sch, sch);
		const char *vals[3] = {slot, s.lsn, s.snapshot};
		PGresult *res = exec_params(dst, sql, 3, vals, PGRES_COMMAND_OK,
									"could not record the run on the target");
		free(sql);
		PQfreemem(sch);
		if (res == NULL)
			goto out;
		PQclear(res);
	}
	if (!dbm_jsonl_print(json_pack("{s:s,s:s?,s:s,s:s,s:s?,s:b}", "type", "snapshot",
								   "slot", slot, "lsn", s.lsn, "snapshot", s.snapshot,
								   "publication", publication, "resumed", resume)))
		goto out;
	fflush(stdout);
	announced = true;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	nthreads = jobs < s.npieces ? (int) jobs : s.npieces;
	threads = xcalloc((size_t) nthreads + 1, sizeof(pthread_t));
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, worker, &s) != 0)
		{
			dbm_log_error("could not start a copy thread");
			atomic_store(&s.failed, 1);
			nthreads = i;
			break;
		}
	/* every worker has imported the snapshot: the exporter may go */
	pthread_mutex_lock(&s.lock);
	while (s.imported < nthreads)
		pthread_cond_wait(&s.imported_cv, &s.lock);
	pthread_mutex_unlock(&s.lock);
	PQfinish(coord);
	coord = NULL;
	/* a permanent slot outlives its connection; a temporary one (--resume)
	 * goes with it, which is fine now that the snapshot is imported */
	PQfinish(repl);
	repl = NULL;

	{
		dbm_progress prog;
		dbm_progress_init(&prog);
		for (int tick = 1;; tick++)
		{
			bool done;
			pthread_mutex_lock(&s.lock);
			done = s.next >= s.npieces || atomic_load(&s.failed) || stop_requested;
			pthread_mutex_unlock(&s.lock);
			if (done)
				break;
			dbm_sleep(0.05, NULL);
			if (tick % 10 == 0)
				dbm_progress_show_eta(&prog, s.next, s.npieces, atomic_load(&s.rows),
									  atomic_load(&s.bytes), s.total_bytes);
		}
		for (int i = 0; i < nthreads; i++)
			pthread_join(threads[i], NULL);
		nthreads = 0;
		dbm_progress_end(&prog);
	}
	if (atomic_load(&s.failed))
		goto out;
	if (stop_requested && s.next < s.npieces)
	{
		dbm_jsonl_print(json_pack("{s:s,s:s,s:i,s:i}", "type", "stopped", "reason",
								  "signal", "pieces_done", s.next, "pieces", s.npieces));
		rc = 0;
		goto out;
	}
	{
		char *sch = PQescapeIdentifier(dst, s.schema, strlen(s.schema));
		char *sql = xasprintf("UPDATE %s.snapshot_run SET finished_at = now()", sch);
		/* the pieces commit asynchronously; this commit waits for the WAL
		 * flush, which makes every one before it durable too: a crash of
		 * the target after the done line loses nothing */
		bool ok = dbm_pg_command(dst, "SET synchronous_commit = on",
								 "could not record the run on the target") &&
				  dbm_pg_command(dst, sql, "could not record the run on the target");
		free(sql);
		PQfreemem(sch);
		if (!ok)
			goto out;
	}
	if (dbm_jsonl_print(json_pack("{s:s,s:s?,s:s,s:i,s:i,s:I,s:I,s:I}", "type", "done",
								  "slot", slot, "lsn", s.lsn, "tables", s.nunits - skipped,
								  "skipped", skipped, "rows", (json_int_t) atomic_load(&s.rows),
								  "bytes", (json_int_t) atomic_load(&s.bytes), "ms",
								  (json_int_t) (dbm_now_ms() - started))))
		rc = 0;

out:
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	PQfinish(coord);
	PQfinish(repl);
	if (rc != 0 && atomic_load(&s.loaded) == 0 && (created_slot || created_pub))
	{
		/* failed before copying anything: leave the source as it was, no
		 * slot holding WAL, so a plain retry works */
		PGconn *c2 = dbm_pg_connect(source, "dbm-snapshot");
		if (c2 && created_slot)
		{
			const char *v[1] = {slot};
			PQclear(PQexecParams(c2, "SELECT pg_catalog.pg_drop_replication_slot($1)", 1,
								 NULL, v, NULL, NULL, 0));
		}
		if (c2 && created_pub)
		{
			char *q = PQescapeIdentifier(c2, publication, strlen(publication));
			char *sql = xasprintf("DROP PUBLICATION IF EXISTS %s", q);
			PQclear(PQexec(c2, sql));
			free(sql);
			PQfreemem(q);
		}
		PQfinish(c2);
		dropped = true;
	}
	/* after a failure mid-copy, say how to go on */
	if (rc != 0 && announced)
	{
		if (dropped)
			dbm_log_info("nothing was kept: run the same command again");
		else
			dbm_log_info("%ld of %d pieces are copied: run it again with --resume to copy the rest",
						 (long) atomic_load(&s.loaded), s.npieces);
	}
	PQfinish(dst);
	for (int u = 0; u < s.nunits; u++)
	{
		free(s.units[u].target);
		free(s.units[u].src_cols);
		free(s.units[u].dst_cols);
	}
	free(s.units);
	free(s.pieces);
	free(s.snapshot);
	free(s.lsn);
	free(tmp_slot);
	dbm_tables_free(tabs, ntabs);
	free(incl);
	free(excl);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
