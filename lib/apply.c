/* apply.c - apply normalized changes to a target database.
 *
 * One connection runs in libpq pipeline mode: statements are prepared once
 * per (table, operation, column set, rows), sent without waiting, and
 * their results read back in bounded chunks (a flush request every
 * PIPE_CHUNK statements) so neither side's buffers fill. Consecutive
 * inserts into one table become multi-row INSERTs. The stream position is
 * upserted into <schema>.apply_position in the same transaction as the
 * changes it covers. A second connection answers catalog questions, since
 * a pipelined connection cannot. */
#define _POSIX_C_SOURCE 200809L
#include "apply.h"

#include "keymap.h"
#include "log.h"
#include "pg.h"
#include "util.h"

#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_CHUNK 1000
#define PIPE_BYTES (4 << 20) /* parameter bytes in flight before a drain */
#define INSERT_BATCH 64
/* A run of at least COPY_MIN_ROWS plain inserts into one table goes as one
 * COPY (the server's multi-insert path) rather than as multi-row INSERTs;
 * such a run is sent once it holds COPY_MAX_ROWS rows or COPY_MAX_BYTES. */
#define COPY_MIN_ROWS 256
#define COPY_MAX_ROWS 8192
#define COPY_MAX_BYTES (8 << 20)
#define FIRST_NORMAL_OID 16384

typedef struct
{
	char op;	  /* 'I', 'U', 'D' */
	char *mask;	  /* '1' per source column used, as a string */
	int nrows;
	char name[24];
} stmt;

typedef struct
{
	char *target;	  /* quoted target table */
	char **qcols;	  /* quoted target column per source column */
	char **ttypes;	  /* target type of each, format_type() */
	bool *always;	  /* GENERATED ALWAYS AS IDENTITY on the target */
	int ncols;
	int nkey;
	int *key;		  /* source column indexes matched in WHERE */
	bool full;		  /* match the whole old row (no key) */
	bool has_pk;	  /* the key is the target's primary key */
	bool coalesce;	  /* updates of one row in a batch may merge: see upd_add */
	bool fires;		  /* triggers or rules fire on the target in this session */
	stmt *stmts;
	int nstmts;
	int warned_missed;
} amap;

/* An update waiting in the open batch: the row's latest values. */
typedef struct
{
	amap *map;
	dbm_srcrel *rel;
	dbm_val *v;	  /* ncols values (data owned), DBM_VAL_UNCHANGED when unset */
	char op;	  /* 'U' the row's latest values, 'D' the row goes (key only) */
	char where[112];
} pupd;

typedef struct
{
	char kind; /* 'q' statement, 'p' prepare, 's' sync */
	char op;
	char where[112];
	amap *map;
	char **rows; /* multi-row insert: where each row came from, or NULL */
	int nrows, per;
	size_t bytes; /* parameter bytes sent with it */
	uint64_t txn_rows; /* COMMIT: the rows it commits */
} item;

struct dbm_apply
{
	dbm_apply_opts o;
	const char *ctx; /* names the event being mapped, for messages */
	PGconn *conn; /* pipelined */
	PGconn *cat;  /* catalog questions */
	char *qschema;
	int nstmt_names;
	bool in_txn;

	item *items; /* results still to read, in order */
	int nitems, cap_items, first_item;

	/* pending multi-row insert */
	amap *ins_map;
	char *ins_mask;
	int ins_rows;
	dbm_buf ins_vals;  /* values, NUL-terminated, back to back */
	int *ins_off;	   /* offset per value, -1 for NULL */
	int ins_cap;
	char ins_where[112];
	dbm_buf ins_wbuf;	  /* where each pending row came from, */
	size_t *ins_woff;	  /* at these offsets (rows of one origin share) */
	int ins_row_cap;
	dbm_keymap ins_keys; /* converge mode: keys in the pending insert */

	/* pending updates, one per row: see upd_add */
	pupd *pu;
	int npu, pu_cap;
	dbm_keymap pu_keys; /* (mapping, key) -> index in pu (count[0]) */
	size_t pu_bytes;
	bool replica; /* session_replication_role = replica took */
	bool gone;	  /* an error said the session ended (see dbm_apply_lost) */

	uint64_t txn_rows;
	int txn_first; /* index of the open transaction's BEGIN in items */
	size_t inflight_bytes;
	dbm_apply_stats st;

	/* copy positions from dbm-snapshot */
	char **copy_names;
	uint64_t *copy_lsns;
	int ncopy;
};

static bool drain(dbm_apply *a, int keep);

/* An error about the table being mapped, prefixed with the event that
 * named it when there is one. */
#define CTX_ERROR(a, fmt, ...)                                                 \
	do                                                                         \
	{                                                                          \
		if ((a)->ctx)                                                          \
			dbm_log_error("%s: " fmt, (a)->ctx, __VA_ARGS__);                  \
		else                                                                   \
			dbm_log_error(fmt, __VA_ARGS__);                                   \
	} while (0)

void
dbm_apply_set_context(dbm_apply *a, const char *ctx)
{
	a->ctx = ctx;
}
static bool flush_inserts(dbm_apply *a);
static bool flush_pending(dbm_apply *a);
static bool send_prepared(dbm_apply *a, const char *name, int n, const char *const *vals,
						  char op, const char *where, amap *m, char **rows, int nrows, int per);
static void upd_clear(dbm_apply *a);

static bool
cat_query(dbm_apply *a, const char *sql, int n, const char *const *vals,
		  PGresult **out, const char *what)
{
	PGresult *res = PQexecParams(a->cat, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(res);
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK)
	{
		dbm_log_error("%s: %s", what, dbm_pg_error(a->cat));
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

dbm_apply *
dbm_apply_open(const dbm_apply_opts *o)
{
	dbm_apply *a = xcalloc(1, sizeof(*a));
	char *sql;
	PGresult *res;

	a->o = *o;
	dbm_buf_init(&a->ins_vals);
	dbm_buf_init(&a->ins_wbuf);
	dbm_keymap_init(&a->ins_keys);
	dbm_keymap_init(&a->pu_keys);
	if ((a->cat = dbm_pg_connect(o->conninfo, o->appname)) == NULL ||
		(a->conn = dbm_pg_connect(o->conninfo, o->appname)) == NULL)
		goto out_fail;
	a->qschema = PQescapeIdentifier(a->cat, o->schema, strlen(o->schema));
	/* a target made read-only by a freeze still takes the stream */
	PQclear(PQexec(a->cat, "SET default_transaction_read_only = off"));
	PQclear(PQexec(a->conn, "SET default_transaction_read_only = off"));
	if (o->catalog_only)
		return a; /* only dbm_apply_target_rel will be asked */
	sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s; "
					"CREATE TABLE IF NOT EXISTS %s.apply_position ("
					" stream text PRIMARY KEY, lsn pg_lsn, offsets jsonb,"
					" source_commit_time timestamptz,"
					" updated_at timestamptz NOT NULL DEFAULT now());"
					"CREATE TABLE IF NOT EXISTS %s.barrier ("
					" id bigint PRIMARY KEY, kind text NOT NULL,"
					" at timestamptz NOT NULL DEFAULT now())",
					a->qschema, a->qschema, a->qschema);
	/* processes starting together must not race on CREATE ... IF NOT EXISTS */
	PQclear(PQexec(a->cat, "SELECT pg_catalog.pg_advisory_lock(764317)"));
	bool created = dbm_pg_command(a->cat, sql, "could not create the position table on the target");
	PQclear(PQexec(a->cat, "SELECT pg_catalog.pg_advisory_unlock(764317)"));
	if (!created)
	{
		free(sql);
		goto out_fail;
	}
	free(sql);

	/* errors name the parameter at fault, hence the row of a multi-row
	 * insert */
	PQclear(PQexec(a->conn, "SET log_parameter_max_length_on_error = 1"));
	/* changes must not fire triggers or foreign keys a second time */
	res = PQexec(a->conn, "SET session_replication_role = replica");
	a->replica = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		dbm_log_warn("could not set session_replication_role = replica (%s):"
					 " triggers and foreign keys fire on the target",
					 dbm_pg_error(a->conn));
	PQclear(res);
	/* the slot is told a position is flushed right after the commit, so
	 * the commit must be durable by then, also on a server whose default
	 * is synchronous_commit = off (a target tuned for the copy): else a
	 * crash of the target loses transactions the slot no longer holds */
	if (o->durable && !o->catalog_only &&
		!dbm_pg_command(a->conn, "SET synchronous_commit = on",
						"could not set synchronous_commit on the target"))
		goto out_fail;
	if (o->origin && !dbm_apply_set_origin(a, o->origin))
		goto out_fail;

	/* what dbm-snapshot copied, and as of which position */
	{
		const char *v[1] = {o->schema};
		PGresult *r2;
		bool have;

		if (!cat_query(a, "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1"
						  " AND tablename = 'snapshot_table'",
					   1, v, &r2, "could not read the copy state"))
			goto out_fail;
		have = PQntuples(r2) > 0;
		PQclear(r2);
		if (have)
		{
			sql = xasprintf("SELECT relname, copy_lsn::text FROM %s.snapshot_table",
							a->qschema);
			if (!cat_query(a, sql, 0, NULL, &r2, "could not read the copy state"))
			{
				free(sql);
				goto out_fail;
			}
			free(sql);
			a->ncopy = PQntuples(r2);
			a->copy_names = xcalloc((size_t) a->ncopy + 1, sizeof(char *));
			a->copy_lsns = xcalloc((size_t) a->ncopy + 1, sizeof(uint64_t));
			for (int i = 0; i < a->ncopy; i++)
			{
				unsigned hi, lo;
				a->copy_names[i] = xstrdup(PQgetvalue(r2, i, 0));
				if (sscanf(PQgetvalue(r2, i, 1), "%X/%X", &hi, &lo) == 2)
					a->copy_lsns[i] = ((uint64_t) hi << 32) | lo;
			}
			PQclear(r2);
		}
	}

	return a;

out_fail:
	dbm_apply_close(a);
	return NULL;
}

bool
dbm_apply_set_origin(dbm_apply *a, const char *origin)
{
	const char *v[1] = {origin};
	PGresult *res;

	if (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF)
	{
		dbm_log_error("internal error: replication origin set after the first change");
		return false;
	}
	res = PQexecParams(a->conn,
					   "SELECT pg_catalog.pg_replication_origin_create($1)"
					   " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin"
					   " WHERE roname = $1)",
					   1, NULL, v, NULL, NULL, 0);
	PQclear(res);
	res = PQexecParams(a->conn, "SELECT pg_catalog.pg_replication_origin_session_setup($1)",
					   1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		dbm_log_error("could not set up replication origin \"%s\" on the target (%s):"
					  " is another dbm-cdc-apply running on this stream?",
					  origin, dbm_pg_error(a->conn));
		PQclear(res);
		return false;
	}
	PQclear(res);
	return true;
}

bool
dbm_apply_claim_origin(dbm_apply *a, const char *base)
{
	for (int n = 1; n <= 16; n++)
	{
		char *name = n == 1 ? xstrdup(base) : xasprintf("%s_%d", base, n);
		const char *v[1] = {name};
		PGresult *res;
		bool busy;

		/* try it, and take the next name if another session holds it */
		res = PQexecParams(a->conn,
						   "SELECT pg_catalog.pg_replication_origin_create($1)"
						   " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin"
						   " WHERE roname = $1)",
						   1, NULL, v, NULL, NULL, 0);
		PQclear(res);
		res = PQexecParams(a->conn, "SELECT pg_catalog.pg_replication_origin_session_setup($1)",
						   1, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			PQclear(res);
			free(name);
			return true;
		}
		busy = strstr(dbm_pg_error(a->conn), "is already active") != NULL;
		if (!busy || n == 16)
		{
			dbm_log_error("could not set up replication origin \"%s\" on the target: %s",
						  name, dbm_pg_error(a->conn));
			PQclear(res);
			free(name);
			return false;
		}
		PQclear(res);
		free(name);
	}
	return false;
}

bool
dbm_apply_get_position(dbm_apply *a, char **lsn, char **offsets)
{
	const char *v[1] = {a->o.stream};
	char *sql = xasprintf("SELECT lsn::text, offsets::text FROM %s.apply_position"
						  " WHERE stream = $1",
						  a->qschema);
	PGresult *res;
	bool ok = cat_query(a, sql, 1, v, &res, "could not read the apply position");

	free(sql);
	*lsn = *offsets = NULL;
	if (!ok)
		return false;
	if (PQntuples(res) > 0)
	{
		if (!PQgetisnull(res, 0, 0))
			*lsn = xstrdup(PQgetvalue(res, 0, 0));
		if (!PQgetisnull(res, 0, 1))
			*offsets = xstrdup(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return true;
}

uint64_t
dbm_apply_copy_lsn(dbm_apply *a, const char *qname)
{
	for (int i = 0; i < a->ncopy; i++)
		if (strcmp(a->copy_names[i], qname) == 0)
			return a->copy_lsns[i];
	return 0;
}

static void
amap_free(amap *m)
{
	if (m == NULL)
		return;
	for (int i = 0; i < m->ncols; i++)
	{
		free(m->qcols[i]);
		if (m->ttypes)
			free(m->ttypes[i]);
	}
	free(m->ttypes);
	free(m->always);
	for (int i = 0; i < m->nstmts; i++)
		free(m->stmts[i].mask);
	free(m->stmts);
	free(m->qcols);
	free(m->key);
	free(m->target);
	free(m);
}

bool
dbm_apply_map(dbm_apply *a, dbm_srcrel *r)
{
	static const char *cols_sql =
		"SELECT a.attname, a.atttypid::int8, a.atttypmod, a.attgenerated <> '',"
		"       pg_catalog.format_type(a.atttypid, a.atttypmod),"
		"       coalesce((SELECT true FROM pg_catalog.pg_index i"
		"                 WHERE i.indrelid = a.attrelid AND i.indisprimary"
		"                   AND a.attnum = ANY (i.indkey)), false),"
		"       format('%I.%I', n.nspname, c.relname), a.attidentity = 'a'"
		"FROM pg_catalog.pg_class c"
		" JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
		" JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
		" WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')"
		"   AND a.attnum > 0 AND NOT a.attisdropped";
	const char *v[2] = {r->nsp, r->name};
	PGresult *res;
	amap *m;
	bool ok = true;
	int npk = 0, pk_in_src = 0;

	if (!cat_query(a, cols_sql, 2, v, &res, "could not read the target catalog"))
		return false;
	if (PQntuples(res) == 0)
	{
		CTX_ERROR(a, "table %s is missing on the target", r->qname);
		PQclear(res);
		return false;
	}
	m = xcalloc(1, sizeof(*m));
	m->target = xstrdup(PQgetvalue(res, 0, 6));
	/* the canonical quoted name comes from the target */
	free(r->qname);
	r->qname = xstrdup(m->target);
	m->ncols = r->ncols;
	m->qcols = xcalloc((size_t) r->ncols + 1, sizeof(char *));
	m->ttypes = xcalloc((size_t) r->ncols + 1, sizeof(char *));
	m->always = xcalloc((size_t) r->ncols + 1, sizeof(bool));
	m->key = xcalloc((size_t) r->ncols + 1, sizeof(int));
	for (int c = 0; c < r->ncols && ok; c++)
	{
		int found = -1;
		for (int t = 0; t < PQntuples(res); t++)
			if (strcmp(PQgetvalue(res, t, 0), r->cols[c]) == 0)
				found = t;
		if (found < 0)
		{
			CTX_ERROR(a, "table %s: column \"%s\" is missing on the target",
						  r->qname, r->cols[c]);
			ok = false;
			break;
		}
		long typid = 0, typmod = 0;
		dbm_parse_long(PQgetvalue(res, found, 1), 0, 1L << 40, &typid);
		dbm_parse_long(PQgetvalue(res, found, 2), -1, 1L << 31, &typmod);
		if (r->types[c] != 0 && r->types[c] < FIRST_NORMAL_OID &&
			(typid != (long) r->types[c] || typmod != r->typmods[c]))
		{
			CTX_ERROR(a, "table %s: column \"%s\" has another type on the target (%s)",
						  r->qname, r->cols[c], PQgetvalue(res, found, 4));
			ok = false;
			break;
		}
		{
			char *q = PQescapeIdentifier(a->cat, r->cols[c], strlen(r->cols[c]));
			m->qcols[c] = xstrdup(q);
			PQfreemem(q);
		}
		m->ttypes[c] = xstrdup(PQgetvalue(res, found, 4));
		m->always[c] = strcmp(PQgetvalue(res, found, 7), "t") == 0;
	}
	/* a target column the source does not send (dropped or never there) */
	for (int t = 0; t < PQntuples(res) && ok; t++)
	{
		bool found = false;
		if (strcmp(PQgetvalue(res, t, 3), "t") == 0)
			continue; /* generated on the target */
		for (int c = 0; c < r->ncols && !found; c++)
			found = strcmp(PQgetvalue(res, t, 0), r->cols[c]) == 0;
		if (!found)
		{
			CTX_ERROR(a, "table %s: column \"%s\" of the target is not in the source",
						  r->qname, PQgetvalue(res, t, 0));
			ok = false;
		}
		if (strcmp(PQgetvalue(res, t, 5), "t") == 0)
		{
			npk++;
			if (found)
				pk_in_src++;
		}
	}
	if (ok)
	{
		/* match rows by the target's primary key when the source sends all
		 * of it, else by the source's replica identity */
		if (npk > 0 && npk == pk_in_src)
		{
			for (int c = 0; c < r->ncols; c++)
				for (int t = 0; t < PQntuples(res); t++)
					if (strcmp(PQgetvalue(res, t, 0), r->cols[c]) == 0 &&
						strcmp(PQgetvalue(res, t, 5), "t") == 0)
						m->key[m->nkey++] = c;
			m->has_pk = true;
		}
		else if (r->ident != 'f')
		{
			for (int c = 0; c < r->ncols; c++)
				if (r->key[c])
					m->key[m->nkey++] = c;
		}
		m->full = m->nkey == 0;
	}
	PQclear(res);
	if (ok && a->replica)
	{
		/* updates of a table may merge and move within a batch (upd_add)
		 * when order between its rows cannot matter: no unique or exclusion
		 * index but the primary key, and no trigger or rule that fires in
		 * replica mode (foreign keys do not), on the table or any
		 * partition of it. Pending updates go out before any change to a
		 * table with such a trigger or rule (it might read them). */
		static const char *co_sql =
			"WITH t AS (SELECT $1::regclass AS relid"
			"           UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::regclass))"
			"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN t ON i.indrelid = t.relid"
			"               WHERE (i.indisunique OR i.indisexclusion) AND NOT i.indisprimary),"
			"       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g JOIN t ON g.tgrelid = t.relid"
			"               WHERE g.tgenabled IN ('A', 'R'))"
			"    OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite w JOIN t ON w.ev_class = t.relid"
			"               WHERE w.rulename <> '_RETURN'),"
			/* keys equal exactly when their texts are: else a key deleted and
			 * inserted again within a batch, spelled two ways ('ABC' and
			 * 'abc' in a citext key, 1.0 and 1.00 in a numeric one), could
			 * not be told to be one row */
			"       NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
			"                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid"
			"                    AND a.attnum = ANY (i.indkey)"
			"                   LEFT JOIN pg_catalog.pg_collation l ON l.oid = a.attcollation"
			"                   WHERE i.indrelid = $1::regclass AND i.indisprimary"
			"                     AND NOT (a.atttypid IN ('int2'::regtype, 'int4'::regtype,"
			"                                             'int8'::regtype, 'uuid'::regtype)"
			"                              OR (a.atttypid IN ('text'::regtype, 'varchar'::regtype)"
			"                                  AND coalesce(l.collisdeterministic, true))))";
		const char *cv[1] = {m->target};
		ok = cat_query(a, co_sql, 1, cv, &res, "could not read the target catalog");
		if (ok)
		{
			bool unique = PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "f") != 0;
			m->fires = PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), "f") != 0;
			bool canonical = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 2), "t") == 0;
			m->coalesce = m->has_pk && !unique && !m->fires && canonical;
			PQclear(res);
		}
	}
	else
		m->fires = true;
	if (!ok)
	{
		amap_free(m);
		return false;
	}
	if (!dbm_apply_unmap(a, r))
	{
		amap_free(m);
		return false;
	}
	r->apply = m;
	return true;
}

dbm_srcrel *
dbm_apply_target_rel(dbm_apply *a, const char *nsp, const char *name)
{
	static const char *sql =
		"SELECT a.attname, a.atttypid::int8, a.atttypmod,"
		"       pg_catalog.format_type(a.atttypid, a.atttypmod),"
		"       coalesce((SELECT true FROM pg_catalog.pg_index i"
		"                 WHERE i.indrelid = a.attrelid AND i.indisprimary"
		"                   AND a.attnum = ANY (i.indkey)), false),"
		"       format('%I.%I', n.nspname, c.relname)"
		" FROM pg_catalog.pg_class c"
		" JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
		" JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
		" WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')"
		"   AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''"
		" ORDER BY a.attnum";
	const char *v[2] = {nsp, name};
	PGresult *res;
	dbm_srcrel *r;
	bool anykey = false;

	if (!cat_query(a, sql, 2, v, &res, "could not read the target catalog"))
		return NULL;
	if (PQntuples(res) == 0)
	{
		char *q1 = PQescapeIdentifier(a->cat, nsp, strlen(nsp));
		char *q2 = PQescapeIdentifier(a->cat, name, strlen(name));
		CTX_ERROR(a, "table %s.%s is missing on the target", q1, q2);
		PQfreemem(q1);
		PQfreemem(q2);
		PQclear(res);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->nsp = xstrdup(nsp);
	r->name = xstrdup(name);
	r->qname = xstrdup(PQgetvalue(res, 0, 5));
	r->ncols = PQntuples(res);
	r->cols = xcalloc((size_t) r->ncols + 1, sizeof(char *));
	r->key = xcalloc((size_t) r->ncols + 1, sizeof(bool));
	r->types = xcalloc((size_t) r->ncols + 1, sizeof(uint32_t));
	r->typmods = xcalloc((size_t) r->ncols + 1, sizeof(int32_t));
	r->tnames = xcalloc((size_t) r->ncols + 1, sizeof(char *));
	for (int i = 0; i < r->ncols; i++)
	{
		long t = 0, m = -1;
		r->cols[i] = xstrdup(PQgetvalue(res, i, 0));
		dbm_parse_long(PQgetvalue(res, i, 1), 0, 1L << 40, &t);
		dbm_parse_long(PQgetvalue(res, i, 2), -1, 1L << 31, &m);
		r->types[i] = (uint32_t) t;
		r->typmods[i] = (int32_t) m;
		r->tnames[i] = xstrdup(PQgetvalue(res, i, 3));
		r->key[i] = strcmp(PQgetvalue(res, i, 4), "t") == 0;
		anykey |= r->key[i];
	}
	r->ident = anykey ? 'd' : 'f';
	PQclear(res);
	return r;
}

bool
dbm_apply_unmap(dbm_apply *a, dbm_srcrel *r)
{
	bool ok = true;

	/* rows waiting for a multi-row insert or an update go out before their
	 * mapping */
	if (r->apply && a->ins_map == r->apply)
		ok = flush_inserts(a);
	for (int i = 0; ok && r->apply && i < a->npu; i++)
		if (a->pu[i].map == r->apply)
			ok = flush_pending(a);
	amap_free(r->apply);
	r->apply = NULL;
	return ok;
}

/* ---- pipeline bookkeeping ---- */

/* where, cut to fit n bytes (NULL: empty) */
static void
copy_where(char *dst, size_t n, const char *where)
{
	size_t l = where ? strlen(where) : 0;
	if (l >= n)
		l = n - 1;
	memcpy(dst, where ? where : "", l);
	dst[l] = '\0';
}

static item *
push_item(dbm_apply *a, char kind, char op, const char *where, amap *m)
{
	if (a->nitems == a->cap_items)
	{
		a->cap_items = a->cap_items ? a->cap_items * 2 : 256;
		a->items = xrealloc(a->items, sizeof(item) * (size_t) a->cap_items);
	}
	item *it = &a->items[a->nitems++];
	it->kind = kind;
	it->op = op;
	it->map = m;
	it->rows = NULL;
	it->nrows = it->per = 0;
	it->bytes = 0;
	it->txn_rows = 0;
	copy_where(it->where, sizeof(it->where), where);
	return it;
}

/* Rows an update or delete (of nrows keys, when more than one) did not
 * find. */
static long
missed_rows(const item *it, PGresult *res)
{
	long want = it->nrows > 1 ? it->nrows : 1, got = 0;
	dbm_parse_long(PQcmdTuples(res), 0, LONG_MAX, &got);
	return got < want ? want - got : 0;
}

/* Read results until at most keep items are outstanding. */
static bool
drain(dbm_apply *a, int keep)
{
	bool ok = true;

	if (keep < 0)
		keep = 0;

	if (a->nitems - a->first_item > keep && a->items[a->nitems - 1].kind != 's')
	{
		if (PQsendFlushRequest(a->conn) != 1 || PQflush(a->conn) != 0)
		{
			dbm_log_error("could not send to the target: %s", dbm_pg_error(a->conn));
			return false;
		}
	}
	while (a->nitems - a->first_item > keep)
	{
		item *it = &a->items[a->first_item++];
		PGresult *res = PQgetResult(a->conn);

		a->inflight_bytes -= it->bytes;
		ExecStatusType st = PQresultStatus(res);

		if (res == NULL)
		{
			dbm_log_error("lost the target connection: %s", dbm_pg_error(a->conn));
			return false;
		}
		if (it->kind == 's')
		{
			if (st != PGRES_PIPELINE_SYNC)
				ok = false;
			PQclear(res);
			continue;
		}
		if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED)
		{
			/* the server skips everything up to the next sync, flush
			 * requests included: stop reading, the caller gives up and
			 * the open transaction rolls back */
			if (st == PGRES_FATAL_ERROR)
			{
				const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
				const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
				const char *w = it->where;
				a->gone = a->gone || dbm_pg_result_ends_session(res);
				/* in a multi-row insert, the parameter the server names
				 * (log_parameter_max_length_on_error) gives the row */
				const char *pp = ctx ? strstr(ctx, "parameter $") : NULL;
				if (pp && it->rows && it->per > 0)
				{
					long n = strtol(pp + 11, NULL, 10);
					if (n >= 1 && (n - 1) / it->per < it->nrows)
						w = it->rows[(n - 1) / it->per];
				}
				dbm_log_error("%s: %s", w, msg ? msg : dbm_pg_error(a->conn));
			}
			else
				/* its failure was not read here (a lost session): the
				 * one line says what libpq knows */
				dbm_log_error("%s: not applied: %s", it->where, dbm_pg_error(a->conn));
			PQclear(res);
			return false;
		}
		else if (it->kind == 'q' && (it->op == 'U' || it->op == 'D') &&
				 missed_rows(it, res) > 0)
		{
			a->st.missed += missed_rows(it, res);
			if (it->map && it->map->warned_missed++ == 0)
				dbm_log_warn("%s: no row found on the target (further misses of"
							 " this table counted, not logged)",
							 it->where);
		}
		PQclear(res);
		if (it->op == 'C')
		{
			/* a commit confirmed */
			a->st.rows += it->txn_rows;
			a->st.transactions++;
		}
		free(it->rows); /* one block, strings included */
		it->rows = NULL;
		it->nrows = 0;
		/* the NULL that ends this statement's results */
		res = PQgetResult(a->conn);
		if (res != NULL)
		{
			PQclear(res);
			dbm_log_error("%s: unexpected extra result", it->where);
			return false;
		}
	}
	if (a->first_item == a->nitems)
	{
		a->first_item = a->nitems = 0;
		a->txn_first = 0;
		a->inflight_bytes = 0;
	}
	else if (a->first_item >= 4096 && a->first_item >= a->nitems - a->first_item)
	{
		/* a long transaction: the items still in flight move to the front */
		memmove(a->items, a->items + a->first_item,
				sizeof(item) * (size_t) (a->nitems - a->first_item));
		a->nitems -= a->first_item;
		a->txn_first -= a->first_item;
		a->first_item = 0;
	}
	return ok;
}

static bool
send_prepared(dbm_apply *a, const char *name, int n, const char *const *vals,
			  char op, const char *where, amap *m, char **rows, int nrows, int per)
{
	item *it;

	if (PQsendQueryPrepared(a->conn, name, n, vals, NULL, NULL, 0) != 1)
	{
		dbm_log_error("%s: could not send to the target: %s", where,
					  dbm_pg_error(a->conn));
		return false;
	}
	it = push_item(a, 'q', op, where, m);
	it->rows = rows;
	it->nrows = nrows;
	it->per = per;
	for (int i = 0; i < n; i++)
		if (vals[i])
			it->bytes += strlen(vals[i]);
	a->inflight_bytes += it->bytes;
	/* read the older half of what is in flight: the server keeps the
	 * younger half to work on meanwhile */
	if (a->nitems - a->first_item >= PIPE_CHUNK)
		return drain(a, PIPE_CHUNK / 2);
	if (a->inflight_bytes >= PIPE_BYTES)
	{
		int keep = a->nitems - a->first_item;
		size_t b = a->inflight_bytes;
		for (int i = a->first_item; i < a->nitems && b > PIPE_BYTES / 2; i++, keep--)
			b -= a->items[i].bytes;
		return drain(a, keep);
	}
	return true;
}

static bool
begin_txn(dbm_apply *a)
{
	if (a->in_txn)
		return true;
	if (PQpipelineStatus(a->conn) == PQ_PIPELINE_OFF && PQenterPipelineMode(a->conn) != 1)
	{
		dbm_log_error("could not enter pipeline mode: %s", dbm_pg_error(a->conn));
		return false;
	}
	if (PQsendQueryParams(a->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
	{
		dbm_log_error("could not send to the target: %s", dbm_pg_error(a->conn));
		return false;
	}
	a->txn_first = a->nitems;
	push_item(a, 'q', 'B', "BEGIN on the target", NULL);
	a->in_txn = true;
	a->txn_rows = 0;
	return true;
}

/* Find or prepare the statement for (op, mask, nrows) of a mapping. */
static const char *
get_stmt(dbm_apply *a, amap *m, char op, const char *mask, int nrows)
{
	dbm_buf sql;
	stmt *s;
	int p = 1;

	for (int i = 0; i < m->nstmts; i++)
		if (m->stmts[i].op == op && m->stmts[i].nrows == nrows &&
			strcmp(m->stmts[i].mask, mask) == 0)
			return m->stmts[i].name;

	dbm_buf_init(&sql);
	if (op == 'I')
	{
		bool first = true;
		dbm_buf_printf(&sql, "INSERT INTO %s (", m->target);
		for (int c = 0; c < m->ncols; c++)
			if (mask[c] == '1')
			{
				dbm_buf_printf(&sql, "%s%s", first ? "" : ", ", m->qcols[c]);
				first = false;
			}
		/* the source's identity values, not new ones */
		dbm_buf_puts(&sql, ") OVERRIDING SYSTEM VALUE VALUES ");
		for (int r = 0; r < nrows; r++)
		{
			dbm_buf_puts(&sql, r ? ", (" : "(");
			first = true;
			for (int c = 0; c < m->ncols; c++)
				if (mask[c] == '1')
				{
					dbm_buf_printf(&sql, "%s$%d", first ? "" : ", ", p++);
					first = false;
				}
			dbm_buf_putc(&sql, ')');
		}
		if (a->o.converge && m->has_pk)
		{
			first = true;
			dbm_buf_puts(&sql, " ON CONFLICT (");
			for (int k = 0; k < m->nkey; k++)
				dbm_buf_printf(&sql, "%s%s", k ? ", " : "", m->qcols[m->key[k]]);
			dbm_buf_puts(&sql, ") DO UPDATE SET ");
			for (int c = 0; c < m->ncols; c++)
				if (mask[c] == '1')
				{
					dbm_buf_printf(&sql, "%s%s = EXCLUDED.%s", first ? "" : ", ",
								   m->qcols[c], m->qcols[c]);
					first = false;
				}
			if (first)
				dbm_buf_printf(&sql, "%s = EXCLUDED.%s", m->qcols[m->key[0]],
							   m->qcols[m->key[0]]);
		}
	}
	else
	{
		bool first = true;
		if (op == 'U')
		{
			dbm_buf_printf(&sql, "UPDATE %s SET ", m->target);
			for (int c = 0; c < m->ncols; c++)
				if (mask[c] == '1')
				{
					dbm_buf_printf(&sql, "%s%s = $%d", first ? "" : ", ",
								   m->qcols[c], p++);
					first = false;
				}
		}
		else
			dbm_buf_printf(&sql, "DELETE FROM %s", m->target);
		if (m->full)
		{
			/* one row per change, even among identical duplicates; values
			 * compare as text (the session's output settings are pinned),
			 * which works for types without an equality operator too */
			dbm_buf_printf(&sql, " WHERE ctid = (SELECT ctid FROM %s WHERE ",
						   m->target);
			for (int c = 0; c < m->ncols; c++)
				dbm_buf_printf(&sql, "%s%s::text IS NOT DISTINCT FROM ($%d::%s)::text",
							   c ? " AND " : "", m->qcols[c], p++, m->ttypes[c]);
			dbm_buf_puts(&sql, " LIMIT 1)");
		}
		else if (op == 'D' && nrows > 1)
		{
			/* the pending deletes of a table, by their keys */
			dbm_buf_puts(&sql, " WHERE (");
			for (int k = 0; k < m->nkey; k++)
				dbm_buf_printf(&sql, "%s%s", k ? ", " : "", m->qcols[m->key[k]]);
			dbm_buf_puts(&sql, ") IN (");
			for (int r = 0; r < nrows; r++)
			{
				dbm_buf_puts(&sql, r ? ", (" : "(");
				for (int k = 0; k < m->nkey; k++)
					dbm_buf_printf(&sql, "%s$%d", k ? ", " : "", p++);
				dbm_buf_putc(&sql, ')');
			}
			dbm_buf_putc(&sql, ')');
		}
		else
		{
			dbm_buf_puts(&sql, " WHERE ");
			for (int k = 0; k < m->nkey; k++)
				dbm_buf_printf(&sql, "%s%s = $%d", k ? " AND " : "",
							   m->qcols[m->key[k]], p++);
		}
	}

	m->stmts = xrealloc(m->stmts, sizeof(stmt) * (size_t) (m->nstmts + 1));
	s = &m->stmts[m->nstmts++];
	s->op = op;
	s->mask = xstrdup(mask);
	s->nrows = nrows;
	snprintf(s->name, sizeof(s->name), "dbm_%d", ++a->nstmt_names);
	if (PQsendPrepare(a->conn, s->name, sql.data, 0, NULL) != 1)
	{
		dbm_log_error("could not prepare a statement on the target: %s",
					  dbm_pg_error(a->conn));
		dbm_buf_free(&sql);
		return NULL;
	}
	push_item(a, 'p', 'P', m->target, m);
	dbm_buf_free(&sql);
	return s->name;
}

/* Where pending row r came from. */
static const char *
row_where(const dbm_apply *a, int r)
{
	return a->ins_wbuf.data + a->ins_woff[r];
}

/* Where rows first..first+n-1 came from, in one block to free. */
static char **
row_wheres(const dbm_apply *a, int first, int n)
{
	size_t bytes = 0;
	char **rows, *p;

	for (int r = 0; r < n; r++)
		if (r == 0 || a->ins_woff[first + r] != a->ins_woff[first + r - 1])
			bytes += strlen(row_where(a, first + r)) + 1;
	rows = xmalloc(sizeof(char *) * (size_t) n + bytes);
	p = (char *) (rows + n);
	for (int r = 0; r < n; r++)
	{
		if (r == 0 || a->ins_woff[first + r] != a->ins_woff[first + r - 1])
		{
			size_t l = strlen(row_where(a, first + r)) + 1;
			memcpy(p, row_where(a, first + r), l);
			rows[r] = p;
			p += l;
		}
		else
			rows[r] = rows[r - 1];
	}
	return rows;
}

/* Do the pending inserts go as upserts (replays converge)? */
static bool
ins_upsert(const dbm_apply *a, const amap *m)
{
	return a->o.converge && m->has_pk;
}

/* Append a value to COPY text data, escaped. */
static void
copy_escape(dbm_buf *b, const char *v)
{
	const char *run = v;

	for (;; v++)
	{
		char c = *v, e;
		switch (c)
		{
			case '\\': e = '\\'; break;
			case '\n': e = 'n'; break;
			case '\r': e = 'r'; break;
			case '\t': e = 't'; break;
			case '\0':
				dbm_buf_append(b, run, (size_t) (v - run));
				return;
			default: continue;
		}
		dbm_buf_append(b, run, (size_t) (v - run));
		dbm_buf_putc(b, '\\');
		dbm_buf_putc(b, e);
		run = v + 1;
	}
}

/* The pending inserts as one COPY: the pipeline is synced and left (COPY
 * cannot run in it), the rows go as COPY text, then the pipeline resumes;
 * all in the open transaction. */
static bool
copy_inserts(dbm_apply *a, amap *m, int per)
{
	dbm_buf sql, data;
	PGresult *res;
	bool ok = false, first = true;

	if (PQpipelineSync(a->conn) != 1)
	{
		dbm_log_error("could not send to the target: %s", dbm_pg_error(a->conn));
		return false;
	}
	push_item(a, 's', 'S', "sync", NULL);
	if (!drain(a, 0))
		return false;
	if (PQexitPipelineMode(a->conn) != 1)
	{
		dbm_log_error("could not leave pipeline mode: %s", dbm_pg_error(a->conn));
		return false;
	}
	dbm_buf_init(&sql);
	dbm_buf_init(&data);
	dbm_buf_printf(&sql, "COPY %s (", m->target);
	for (int c = 0; c < m->ncols; c++)
		if (a->ins_mask[c] == '1')
		{
			dbm_buf_printf(&sql, "%s%s", first ? "" : ", ", m->qcols[c]);
			first = false;
		}
	dbm_buf_puts(&sql, ") FROM STDIN");
	res = PQexec(a->conn, sql.data);
	if (PQresultStatus(res) != PGRES_COPY_IN)
	{
		dbm_log_error("%s: %s", row_where(a, 0), dbm_pg_error(a->conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	for (int r = 0; r < a->ins_rows; r++)
	{
		for (int i = 0; i < per; i++)
		{
			int off = a->ins_off[r * per + i];
			if (i)
				dbm_buf_putc(&data, '\t');
			if (off < 0)
				dbm_buf_puts(&data, "\\N");
			else
				copy_escape(&data, a->ins_vals.data + off);
		}
		dbm_buf_putc(&data, '\n');
		if (data.len >= 256 * 1024 || r == a->ins_rows - 1)
		{
			if (PQputCopyData(a->conn, data.data, (int) data.len) != 1)
				break;
			dbm_buf_reset(&data);
		}
	}
	if (PQputCopyEnd(a->conn, NULL) != 1)
	{
		dbm_log_error("%s: could not send to the target: %s", row_where(a, 0),
					  dbm_pg_error(a->conn));
		goto out;
	}
	res = PQgetResult(a->conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		/* the context says "COPY t, line N[, column c: ...]": row N */
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
		const char *lp = ctx ? strstr(ctx, ", line ") : NULL;
		const char *w = row_where(a, 0);
		a->gone = a->gone || dbm_pg_result_ends_session(res);
		long n = lp ? strtol(lp + 7, NULL, 10) : 0;
		if (n >= 1 && n <= a->ins_rows)
			w = row_where(a, (int) n - 1);
		dbm_log_error("%s: %s", w, msg ? msg : dbm_pg_error(a->conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	while ((res = PQgetResult(a->conn)) != NULL)
		PQclear(res);
	if (PQenterPipelineMode(a->conn) != 1)
	{
		dbm_log_error("could not enter pipeline mode: %s", dbm_pg_error(a->conn));
		goto out;
	}
	ok = true;
out:
	dbm_buf_free(&sql);
	dbm_buf_free(&data);
	return ok;
}

/* Send the pending multi-row insert in chunks of INSERT_BATCH, 8, 1, or as
 * one COPY. */
static bool
flush_inserts(dbm_apply *a)
{
	amap *m = a->ins_map;
	int per = 0, done = 0;
	const char **vals;
	bool ok = true;

	if (m == NULL || a->ins_rows == 0)
	{
		a->ins_map = NULL;
		a->ins_rows = 0;
		return true;
	}
	for (int c = 0; c < m->ncols; c++)
		per += a->ins_mask[c] == '1';
	if (per > 0 && a->ins_rows >= COPY_MIN_ROWS && !ins_upsert(a, m))
	{
		ok = copy_inserts(a, m, per);
		done = a->ins_rows;
	}
	vals = xcalloc((size_t) per * INSERT_BATCH + 1, sizeof(char *));
	while (ok && done < a->ins_rows)
	{
		int left = a->ins_rows - done;
		int n = left >= INSERT_BATCH ? INSERT_BATCH : left >= 8 ? 8 : 1;
		const char *name = get_stmt(a, m, 'I', a->ins_mask, n);
		if (name == NULL)
		{
			ok = false;
			break;
		}
		for (int i = 0; i < n * per; i++)
		{
			int off = a->ins_off[done * per + i];
			vals[i] = off < 0 ? NULL : a->ins_vals.data + off;
		}
		{
			/* the rows' origins go with the statement, to name the row a
			 * server error is about */
			char **rows = row_wheres(a, done, n);
			ok = send_prepared(a, name, n * per, vals, 'I', rows[0], m, rows, n, per);
		}
		done += n;
	}
	free(vals);
	a->ins_map = NULL;
	a->ins_rows = 0;
	dbm_buf_reset(&a->ins_vals);
	dbm_buf_reset(&a->ins_wbuf);
	if (a->ins_keys.n > 0)
	{
		dbm_keymap_free(&a->ins_keys);
		dbm_keymap_init(&a->ins_keys);
	}
	return ok;
}

static void
add_value(dbm_apply *a, int idx, const dbm_val *v)
{
	if (idx >= a->ins_cap)
	{
		a->ins_cap = a->ins_cap ? a->ins_cap * 2 : 1024;
		while (a->ins_cap <= idx)
			a->ins_cap *= 2;
		a->ins_off = xrealloc(a->ins_off, sizeof(int) * (size_t) a->ins_cap);
	}
	if (v->kind == DBM_VAL_NULL)
		a->ins_off[idx] = -1;
	else
	{
		a->ins_off[idx] = (int) a->ins_vals.len;
		dbm_buf_append(&a->ins_vals, v->data, v->len);
		dbm_buf_putc(&a->ins_vals, '\0');
	}
}

/* An update that carries every column. */
static bool
whole_row(const amap *m, const dbm_change *c)
{
	for (int i = 0; i < m->ncols; i++)
		if (c->newv[i].kind == DBM_VAL_UNCHANGED)
			return false;
	return true;
}

/* An update that carries every column and keeps its key. */
static bool
upsertable(const amap *m, const dbm_change *c)
{
	for (int i = 0; i < m->ncols; i++)
		if (c->newv[i].kind == DBM_VAL_UNCHANGED)
			return false;
	if (c->oldv == NULL)
		return true;
	for (int k = 0; k < m->nkey; k++)
	{
		const dbm_val *o = &c->oldv[m->key[k]], *n = &c->newv[m->key[k]];
		if (o->kind == DBM_VAL_UNCHANGED)
			continue;
		if (o->kind != n->kind || o->len != n->len ||
			(o->len && memcmp(o->data, n->data, o->len) != 0))
			return false;
	}
	return true;
}

/* One update or delete as its statement (the pending insert sent before
 * it by the caller). */
static bool
send_row(dbm_apply *a, amap *m, const dbm_change *c, const char *where)
{
	int n = m->ncols;
	char *mask = xmalloc((size_t) n + 1);
	bool ok = true;

	mask[n] = '\0';
	{
		const dbm_val *keysrc = c->oldv ? c->oldv : c->newv;
		const char **vals = xcalloc((size_t) n * 2 + 1, sizeof(char *));
		dbm_buf tmp;
		int *offs = xcalloc((size_t) n * 2 + 1, sizeof(int));
		int np = 0;
		const char *name;

		dbm_buf_init(&tmp);
		/* GENERATED ALWAYS identity columns can only be set to DEFAULT by
		 * an UPDATE: they keep their value (they are the key anyway) */
		for (int i = 0; i < n; i++)
			mask[i] = (c->op == DBM_OP_UPDATE && c->newv[i].kind != DBM_VAL_UNCHANGED &&
					   !m->always[i])
						  ? '1' : '0';
		if (c->op == DBM_OP_UPDATE && strchr(mask, '1') == NULL)
			goto out_free; /* nothing to write */
		/* values: SET columns, then the match columns */
#define PUSHV(v)                                                               \
	do                                                                         \
	{                                                                          \
		if ((v)->kind == DBM_VAL_TEXT)                                         \
		{                                                                      \
			offs[np++] = (int) tmp.len;                                        \
			dbm_buf_append(&tmp, (v)->data, (v)->len);                         \
			dbm_buf_putc(&tmp, '\0');                                          \
		}                                                                      \
		else                                                                   \
			offs[np++] = -1;                                                   \
	} while (0)
		if (c->op == DBM_OP_UPDATE)
			for (int i = 0; i < n; i++)
				if (mask[i] == '1')
					PUSHV(&c->newv[i]);
		if (m->full)
		{
			if (c->oldv == NULL)
			{
				dbm_log_error("%s: table %s has no key and the change carries no old row"
							  " (set REPLICA IDENTITY FULL on the source)",
							  where, m->target);
				ok = false;
				goto out_free;
			}
			for (int i = 0; i < n; i++)
			{
				if (c->oldv[i].kind == DBM_VAL_UNCHANGED)
				{
					dbm_log_error("%s: table %s: old row without column \"%s\"",
								  where, m->target, c->rel->cols[i]);
					ok = false;
					goto out_free;
				}
				PUSHV(&c->oldv[i]);
			}
		}
		else
			for (int k = 0; k < m->nkey; k++)
			{
				const dbm_val *v = &keysrc[m->key[k]];
				if (v->kind == DBM_VAL_UNCHANGED)
					v = &c->newv[m->key[k]];
				PUSHV(v);
			}
#undef PUSHV
		for (int i = 0; i < np; i++)
			vals[i] = offs[i] < 0 ? NULL : tmp.data + offs[i];
		name = get_stmt(a, m, (char) c->op, mask, 1);
		ok = name && send_prepared(a, name, np, vals, (char) c->op, where, m, NULL, 0, 0);
	out_free:
		dbm_buf_free(&tmp);
		free(offs);
		free(vals);
	}
	free(mask);
	return ok;
}


/* ---- pending updates ----
 *
 * In a table where order between rows cannot matter and a row is known by
 * the text of its key (amap.coalesce: see dbm_apply_map), an
 * update waits in the open batch instead of going out at once, and later
 * updates of the same row merge into it: a hot row updated by a thousand
 * source transactions of one batch is written once, and the multi-row
 * inserts between such updates stay whole. The batch commits as one target
 * transaction, so no one sees the rows in between. Deletes wait the same
 * way and go out together, by their keys (a delete takes the place of an
 * update of its row that waits). A change that order does matter to sends
 * them first: an insert or an update of a key whose delete waits, a key
 * change, a change to a table whose triggers or rules fire, a truncate, a
 * barrier, the commit. The multi-row insert always goes before them: it
 * never holds a row inserted after one of theirs. */
#define PU_MAX_ROWS 65536
#define PU_MAX_BYTES (16 << 20)

static void
row_key(dbm_buf *b, const amap *m, const dbm_val *vals)
{
	dbm_buf_append(b, (const char *) &m, sizeof(m));
	for (int i = 0; i < m->nkey; i++)
	{
		const dbm_val *v = &vals[m->key[i]];
		dbm_buf_putc(b, v->kind == DBM_VAL_NULL ? 'n' : 't');
		dbm_buf_append(b, v->data ? v->data : "", v->len);
		dbm_buf_putc(b, '\0');
	}
}

static pupd *
upd_find(dbm_apply *a, const amap *m, const dbm_val *vals)
{
	dbm_buf k;
	dbm_keyent *e;

	if (a->npu == 0 || vals == NULL)
		return NULL;
	dbm_buf_init(&k);
	row_key(&k, m, vals);
	e = dbm_keymap_get(&a->pu_keys, k.data, k.len);
	dbm_buf_free(&k);
	return e ? &a->pu[e->count[0]] : NULL;
}

static void
upd_set(dbm_apply *a, dbm_val *dst, const dbm_val *src)
{
	if (dst->kind == DBM_VAL_TEXT)
	{
		a->pu_bytes -= dst->len;
		free((char *) dst->data);
	}
	*dst = *src;
	if (src->kind == DBM_VAL_TEXT)
	{
		char *d = xmalloc((size_t) src->len + 1);
		memcpy(d, src->data, src->len);
		d[src->len] = '\0';
		dst->data = d;
		a->pu_bytes += src->len;
	}
	else
		dst->data = NULL;
}

static void
upd_clear(dbm_apply *a)
{
	for (int i = 0; i < a->npu; i++)
	{
		for (int c = 0; c < a->pu[i].map->ncols; c++)
			if (a->pu[i].v[c].kind == DBM_VAL_TEXT)
				free((char *) a->pu[i].v[c].data);
		free(a->pu[i].v);
	}
	a->npu = 0;
	a->pu_bytes = 0;
	if (a->pu_keys.n > 0)
	{
		dbm_keymap_free(&a->pu_keys);
		dbm_keymap_init(&a->pu_keys);
	}
}

/* The pending deletes of the table of entry first, from it on, as
 * statements of 64, 8 or 1 keys; each is marked sent ('d'). */
static bool
send_deletes(dbm_apply *a, int first)
{
	amap *m = a->pu[first].map;
	int n = 0, done = 0;
	int *idx = xcalloc((size_t) (a->npu - first) + 1, sizeof(int));
	const char **vals = xcalloc((size_t) m->nkey * INSERT_BATCH + 1, sizeof(char *));
	char *mask = xmalloc((size_t) m->ncols + 1);
	bool ok = true;

	memset(mask, '0', (size_t) m->ncols);
	mask[m->ncols] = '\0';
	for (int i = first; i < a->npu; i++)
		if (a->pu[i].op == 'D' && a->pu[i].map == m)
		{
			idx[n++] = i;
			a->pu[i].op = 'd';
		}
	while (ok && done < n)
	{
		int left = n - done;
		int rows = left >= INSERT_BATCH ? INSERT_BATCH : left >= 8 ? 8 : 1;
		const char *name = get_stmt(a, m, 'D', mask, rows);
		if (name == NULL)
		{
			ok = false;
			break;
		}
		for (int r = 0; r < rows; r++)
			for (int k = 0; k < m->nkey; k++)
			{
				const dbm_val *v = &a->pu[idx[done + r]].v[m->key[k]];
				vals[r * m->nkey + k] = v->kind == DBM_VAL_TEXT ? v->data : NULL;
			}
		ok = send_prepared(a, name, rows * m->nkey, vals, 'D', a->pu[idx[done]].where, m,
						   NULL, rows, 0);
		done += rows;
	}
	free(mask);
	free(vals);
	free(idx);
	return ok;
}

/* Every pending row: the multi-row insert first (an update of a row
 * inserted in this batch comes after it), then the updates. */
static bool
flush_pending(dbm_apply *a)
{
	bool ok = flush_inserts(a);

	for (int i = 0; ok && i < a->npu; i++)
	{
		pupd *u = &a->pu[i];
		dbm_change c = {DBM_OP_UPDATE, u->rel, u->v, NULL, false};
		if (u->op == 'U')
			ok = send_row(a, u->map, &c, u->where);
		else if (u->op == 'D')
			ok = send_deletes(a, i);
	}
	upd_clear(a);
	return ok;
}

/* A new pending row for key k, every value unset. */
static pupd *
upd_new(dbm_apply *a, amap *m, dbm_srcrel *rel, const dbm_buf *k, char op)
{
	dbm_h128 zero = {0, 0};
	pupd *u;

	if (a->npu == a->pu_cap)
	{
		a->pu_cap = a->pu_cap ? a->pu_cap * 2 : 256;
		a->pu = xrealloc(a->pu, sizeof(pupd) * (size_t) a->pu_cap);
	}
	u = &a->pu[a->npu];
	u->map = m;
	u->rel = rel;
	u->op = op;
	u->v = xcalloc((size_t) m->ncols + 1, sizeof(dbm_val));
	for (int i = 0; i < m->ncols; i++)
		u->v[i].kind = DBM_VAL_UNCHANGED;
	dbm_keymap_add(&a->pu_keys, k->data, k->len, 0, zero)->count[0] = (uint32_t) a->npu;
	a->npu++;
	return u;
}

/* A change is in pending row u: it names u; what waits goes out once it
 * is too much. 1, or -1 failed. */
static int
upd_queued(dbm_apply *a, pupd *u, const char *where)
{
	copy_where(u->where, sizeof(u->where), where);
	if (a->npu >= PU_MAX_ROWS || a->pu_bytes >= PU_MAX_BYTES)
		return flush_pending(a) ? 1 : -1;
	return 1;
}

/* Queue an update of a coalescing table: 1 queued, 0 not one to queue
 * (its key changes, or a key value did not travel), -1 failed. */
static int
upd_add(dbm_apply *a, amap *m, const dbm_change *c, const char *where)
{
	int n = m->ncols;
	dbm_val *kv = xcalloc((size_t) n + 1, sizeof(dbm_val));
	dbm_buf k;
	dbm_keyent *e;
	pupd *u;

	/* the row's key: the new values', the old ones' where a new one did
	 * not travel; an update changing it is not one to queue */
	for (int i = 0; i < m->nkey; i++)
	{
		int col = m->key[i];
		const dbm_val *nv = &c->newv[col], *ov = c->oldv ? &c->oldv[col] : NULL;
		if (nv->kind == DBM_VAL_UNCHANGED)
			nv = ov;
		if (nv == NULL || nv->kind == DBM_VAL_UNCHANGED ||
			(ov && ov->kind != DBM_VAL_UNCHANGED &&
			 (ov->kind != nv->kind || ov->len != nv->len ||
			  (ov->len && memcmp(ov->data, nv->data, ov->len) != 0))))
		{
			free(kv);
			/* what waits goes before a change that is not queued */
			return flush_pending(a) ? 0 : -1;
		}
		kv[col] = *nv;
	}
	dbm_buf_init(&k);
	row_key(&k, m, kv);
	e = a->npu > 0 ? dbm_keymap_get(&a->pu_keys, k.data, k.len) : NULL;
	if (e && a->pu[e->count[0]].op != 'U')
	{
		/* an update of a row whose delete waits (it found no row, or the
		 * row was inserted again: that insert went first): in order */
		if (!flush_pending(a))
		{
			dbm_buf_free(&k);
			free(kv);
			return -1;
		}
		e = NULL;
	}
	u = e ? &a->pu[e->count[0]] : upd_new(a, m, c->rel, &k, 'U');
	dbm_buf_free(&k);
	/* what travelled replaces what waits; an unchanged TOAST value keeps it */
	for (int i = 0; i < n; i++)
		if (c->newv[i].kind != DBM_VAL_UNCHANGED)
			upd_set(a, &u->v[i], &c->newv[i]);
	for (int i = 0; i < m->nkey; i++)
		if (u->v[m->key[i]].kind == DBM_VAL_UNCHANGED)
			upd_set(a, &u->v[m->key[i]], &kv[m->key[i]]);
	free(kv);
	return upd_queued(a, u, where);
}

/* Queue a delete of a coalescing table: 1 queued, 0 not one to queue (a
 * key value did not travel), -1 failed. An update of the row waiting
 * becomes the delete. */
static int
del_add(dbm_apply *a, amap *m, const dbm_change *c, const char *where)
{
	const dbm_val *keysrc = c->oldv ? c->oldv : c->newv;
	dbm_val unset = {DBM_VAL_UNCHANGED, NULL, 0};
	dbm_buf k;
	dbm_keyent *e;
	pupd *u;

	if (keysrc == NULL)
		return 0;
	for (int i = 0; i < m->nkey; i++)
		if (keysrc[m->key[i]].kind != DBM_VAL_TEXT)
			return 0;
	dbm_buf_init(&k);
	row_key(&k, m, keysrc);
	e = a->npu > 0 ? dbm_keymap_get(&a->pu_keys, k.data, k.len) : NULL;
	u = e ? &a->pu[e->count[0]] : upd_new(a, m, c->rel, &k, 'D');
	dbm_buf_free(&k);
	u->op = 'D';
	for (int i = 0; i < m->ncols; i++)
		upd_set(a, &u->v[i], &unset);
	for (int i = 0; i < m->nkey; i++)
		upd_set(a, &u->v[m->key[i]], &keysrc[m->key[i]]);
	return upd_queued(a, u, where);
}

bool
dbm_apply_change(dbm_apply *a, const dbm_change *c, const char *where)
{
	amap *m = c->rel->apply;
	int n = c->rel->ncols;
	char *mask;
	bool ok = true;

	if (m == NULL && !dbm_apply_map(a, c->rel))
		return false;
	m = c->rel->apply;
	if (!begin_txn(a))
		return false;
	mask = xmalloc((size_t) n + 1);
	mask[n] = '\0';

	/* a table whose triggers or rules fire might read rows whose updates
	 * still wait */
	if (m->fires && a->npu > 0 && !flush_pending(a))
	{
		free(mask);
		return false;
	}
	if (c->op == DBM_OP_INSERT)
	{
		int per = 0;

		/* an update of this key waiting goes first (a replay's upsert, or
		 * an update that will find no row) */
		if (m->coalesce && a->npu > 0 && upd_find(a, m, c->newv) && !flush_pending(a))
		{
			free(mask);
			return false;
		}
		for (int i = 0; i < n; i++)
			if (c->newv[i].kind == DBM_VAL_UNCHANGED)
			{
				/* a new row whose value did not travel (Debezium's create
				 * after a key change of a row with an unchanged TOASTed
				 * value): writing it without the value would lose it */
				dbm_log_error("%s: column %s of %s: a new row without its value (the"
							  " unchanged-TOAST placeholder); it cannot be recovered from"
							  " the stream: give the source table REPLICA IDENTITY FULL",
							  where, m->qcols[i], m->target);
				free(mask);
				return false;
			}
		for (int i = 0; i < n; i++)
		{
			mask[i] = c->newv[i].kind == DBM_VAL_UNCHANGED ? '0' : '1';
			per += mask[i] == '1';
		}
		/* an upsert cannot touch one row twice: a key already waiting in
		 * the batch sends the batch first */
		dbm_buf kt;
		bool track = a->o.converge && m->has_pk, dup = false;
		dbm_buf_init(&kt);
		if (track)
		{
			for (int i = 0; i < m->nkey; i++)
			{
				const dbm_val *v = &c->newv[m->key[i]];
				dbm_buf_putc(&kt, v->kind == DBM_VAL_NULL ? 'n' : 't');
				dbm_buf_append(&kt, v->data ? v->data : "", v->len);
				dbm_buf_putc(&kt, '\0');
			}
			dup = a->ins_map == m && dbm_keymap_get(&a->ins_keys, kt.data, kt.len) != NULL;
		}
		if (dup || a->ins_map != m || strcmp(a->ins_mask ? a->ins_mask : "", mask) != 0 ||
			(ins_upsert(a, m) ? a->ins_rows >= INSERT_BATCH * 16
							  : a->ins_rows >= COPY_MAX_ROWS || a->ins_vals.len >= COPY_MAX_BYTES))
		{
			ok = flush_inserts(a);
			free(a->ins_mask);
			a->ins_mask = xstrdup(mask);
			a->ins_map = m;
			snprintf(a->ins_where, sizeof(a->ins_where), "%s", where);
		}
		if (track)
		{
			dbm_h128 zero = {0, 0};
			dbm_keymap_add(&a->ins_keys, kt.data, kt.len, 0, zero);
		}
		dbm_buf_free(&kt);
		for (int i = 0, k = 0; i < n; i++)
			if (mask[i] == '1')
				add_value(a, a->ins_rows * per + k++, &c->newv[i]);
		if (a->ins_rows >= a->ins_row_cap)
		{
			a->ins_row_cap = a->ins_row_cap ? a->ins_row_cap * 2 : 64;
			a->ins_woff = xrealloc(a->ins_woff, sizeof(size_t) * (size_t) a->ins_row_cap);
		}
		if (a->ins_rows > 0 && strcmp(row_where(a, a->ins_rows - 1), where) == 0)
			a->ins_woff[a->ins_rows] = a->ins_woff[a->ins_rows - 1];
		else
		{
			a->ins_woff[a->ins_rows] = a->ins_wbuf.len;
			dbm_buf_append(&a->ins_wbuf, where, strlen(where) + 1);
		}
		a->ins_rows++;
		a->txn_rows++;
		free(mask);
		return ok;
	}

	if (c->op == DBM_OP_UPDATE && a->o.converge && m->has_pk && c->oldv &&
		!upsertable(m, c) && whole_row(m, c))
	{
		/* a key change replayed: the old key goes (if it is there), the
		 * new row lands (whether or not it is there yet) */
		dbm_change del = *c, ins = *c;
		free(mask);
		del.op = DBM_OP_DELETE;
		del.newv = NULL;
		ins.op = DBM_OP_INSERT;
		ins.oldv = NULL;
		return dbm_apply_change(a, &del, where) && dbm_apply_change(a, &ins, where);
	}
	if (c->op == DBM_OP_UPDATE && a->o.converge && m->has_pk && upsertable(m, c))
	{
		/* replays converge: an update carrying the whole row becomes an
		 * upsert, so it lands whether or not the row is there yet */
		dbm_change ins = *c;
		free(mask);
		ins.op = DBM_OP_INSERT;
		ins.oldv = NULL;
		return dbm_apply_change(a, &ins, where);
	}
	if (m->coalesce && c->op == DBM_OP_UPDATE)
	{
		int r = upd_add(a, m, c, where);
		if (r != 0)
		{
			free(mask);
			if (r > 0)
				a->txn_rows++;
			return r > 0;
		}
	}
	if (m->coalesce && c->op == DBM_OP_DELETE)
	{
		int r = del_add(a, m, c, where);
		if (r != 0)
		{
			free(mask);
			if (r > 0)
				a->txn_rows++;
			return r > 0;
		}
	}
	free(mask);
	if (!flush_inserts(a) || !send_row(a, m, c, where))
		return false;
	a->txn_rows++;
	return true;
}

bool
dbm_apply_truncate(dbm_apply *a, dbm_srcrel **rels, int n, bool cascade,
				   bool restart, const char *where)
{
	dbm_buf sql;
	bool ok;

	if (!flush_pending(a) || !begin_txn(a))
		return false;
	dbm_buf_init(&sql);
	dbm_buf_puts(&sql, "TRUNCATE ");
	for (int i = 0; i < n; i++)
	{
		if (rels[i]->apply == NULL && !dbm_apply_map(a, rels[i]))
		{
			dbm_buf_free(&sql);
			return false;
		}
		dbm_buf_printf(&sql, "%s%s", i ? ", " : "",
					   ((amap *) rels[i]->apply)->target);
	}
	if (restart)
		dbm_buf_puts(&sql, " RESTART IDENTITY");
	if (cascade)
		dbm_buf_puts(&sql, " CASCADE");
	ok = PQsendQueryParams(a->conn, sql.data, 0, NULL, NULL, NULL, NULL, 0) == 1;
	if (!ok)
		dbm_log_error("%s: could not send to the target: %s", where,
					  dbm_pg_error(a->conn));
	else
		push_item(a, 'q', 'T', where, NULL);
	dbm_buf_free(&sql);
	return ok;
}

bool
dbm_apply_barrier(dbm_apply *a, int64_t id, const char *kind, const char *where)
{
	char idbuf[32];
	const char *v[2] = {idbuf, kind};
	char *sql;
	bool ok;

	if (!flush_pending(a) || !begin_txn(a))
		return false;
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long) id);
	/* a replayed barrier is already there */
	sql = xasprintf("INSERT INTO %s.barrier (id, kind) VALUES ($1::bigint, $2)"
					" ON CONFLICT (id) DO NOTHING",
					a->qschema);
	ok = PQsendQueryParams(a->conn, sql, 2, NULL, v, NULL, NULL, 0) == 1;
	free(sql);
	if (!ok)
	{
		dbm_log_error("%s: could not send to the target: %s", where, dbm_pg_error(a->conn));
		return false;
	}
	push_item(a, 'q', 'X', where, NULL);
	return true;
}

bool
dbm_apply_commit(dbm_apply *a, const char *lsn, const char *offsets)
{
	char *sql;
	const char *v[3] = {a->o.stream, lsn, offsets};
	bool ok;

	if (!flush_pending(a) || !begin_txn(a))
		return false;
	sql = xasprintf("INSERT INTO %s.apply_position AS p (stream, lsn, offsets, updated_at)"
					" VALUES ($1, $2::pg_lsn, $3::jsonb, now())"
					" ON CONFLICT (stream) DO UPDATE SET"
					" lsn = coalesce(EXCLUDED.lsn, p.lsn),"
					" offsets = coalesce(p.offsets, '{}'::jsonb) || coalesce(EXCLUDED.offsets, '{}'::jsonb),"
					" updated_at = now()",
					a->qschema);
	ok = PQsendQueryParams(a->conn, sql, 3, NULL, v, NULL, NULL, 0) == 1;
	free(sql);
	if (ok)
	{
		push_item(a, 'q', 'W', "writing the apply position", NULL);
		ok = PQsendQueryParams(a->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1;
	}
	if (ok)
	{
		push_item(a, 'q', 'C', "COMMIT on the target", NULL)->txn_rows = a->txn_rows;
		ok = PQpipelineSync(a->conn) == 1;
	}
	if (!ok)
	{
		dbm_log_error("could not send to the target: %s", dbm_pg_error(a->conn));
		return false;
	}
	push_item(a, 's', 'S', "sync", NULL);
	a->in_txn = false;
	a->txn_rows = 0;
	/* this transaction's statements stay in flight */
	return drain(a, a->nitems - (a->txn_first > a->first_item ? a->txn_first : a->first_item));
}

bool
dbm_apply_wait(dbm_apply *a)
{
	return drain(a, 0);
}

bool
dbm_apply_in_txn(dbm_apply *a)
{
	return a->in_txn;
}

uint64_t
dbm_apply_pending_rows(dbm_apply *a)
{
	return a->txn_rows;
}

void
dbm_apply_get_stats(dbm_apply *a, dbm_apply_stats *s)
{
	*s = a->st;
}

bool
dbm_apply_lost(dbm_apply *a)
{
	/* an error read from the pipeline said the session ended (libpq
	 * returns it before it reads the end of the connection, which may
	 * not be there yet); else reading notices the end of a connection the
	 * server closed after its FATAL error (a terminated session, a
	 * shutdown) */
	return a != NULL &&
		   (a->gone || PQstatus(a->conn) != CONNECTION_OK || !PQconsumeInput(a->conn) ||
			PQstatus(a->conn) != CONNECTION_OK ||
			(a->cat != NULL && PQstatus(a->cat) != CONNECTION_OK));
}

void
dbm_apply_close(dbm_apply *a)
{
	if (a == NULL)
		return;
	PQfinish(a->conn);
	PQfinish(a->cat);
	if (a->qschema)
		PQfreemem(a->qschema);
	for (int i = 0; i < a->ncopy; i++)
		free(a->copy_names[i]);
	free(a->copy_names);
	free(a->copy_lsns);
	free(a->items);
	free(a->ins_mask);
	free(a->ins_off);
	free(a->ins_woff);
	dbm_buf_free(&a->ins_wbuf);
	dbm_buf_free(&a->ins_vals);
	dbm_keymap_free(&a->ins_keys);
	upd_clear(a);
	free(a->pu);
	free(a);
}
