/* catalog.c - read table metadata from pg_catalog. All queries run in the
 * caller's transaction so they see the snapshot being hashed. */
#define _POSIX_C_SOURCE 200809L
#include "catalog.h"

#include "log.h"
#include "pg.h"
#include "util.h"

#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *TABLES_SQL =
	"SELECT c.oid, n.nspname, c.relname, c.relkind, "
	"       format('%I.%I', n.nspname, c.relname) "
	"FROM pg_catalog.pg_class c "
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
	"  AND n.nspname <> 'information_schema' "
	"  AND n.nspname !~ '^pg_' "
	"ORDER BY format('%I.%I', n.nspname, c.relname) COLLATE \"C\"";

static const char *COLUMNS_SQL =
	"SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
	"FROM pg_catalog.pg_attribute a "
	"WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
	"ORDER BY a.attname COLLATE \"C\"";

static const char *KEY_SQL =
	"SELECT a.attname FROM pg_catalog.pg_index i "
	"CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
	"JOIN pg_catalog.pg_attribute a "
	"  ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
	"WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord";

static const char *RELS_SQL =
	"SELECT format('ONLY %I.%I', n.nspname, c.relname), "
	"       pg_catalog.pg_relation_size(c.oid) / "
	"       current_setting('block_size')::bigint, "
	"       format('%I.%I', n.nspname, c.relname), "
	"       greatest(c.reltuples, 0)::bigint "
	"FROM pg_catalog.pg_class c "
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"WHERE c.relkind = 'r' AND (c.oid = $1::oid OR c.oid IN "
	"  (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid) WHERE isleaf)) "
	"ORDER BY format('ONLY %I.%I', n.nspname, c.relname) COLLATE \"C\"";

bool
dbm_table_matches(const char *pattern, const char *nsp, const char *rel,
				  const char *qname)
{
	/* the name as the tools print it matches too, quotes and all */
	if (qname && fnmatch(pattern, qname, 0) == 0)
		return true;
	/* With a dot the pattern names schema.table, without one the table in
	 * any schema. */
	if (strchr(pattern, '.'))
	{
		char *full = xasprintf("%s.%s", nsp, rel);
		bool m = fnmatch(pattern, full, 0) == 0;
		free(full);
		return m;
	}
	return fnmatch(pattern, rel, 0) == 0;
}

static PGresult *
query1(PGconn *conn, const char *sql, const char *param, const char *what)
{
	PGresult *res =
		PQexecParams(conn, sql, param ? 1 : 0, NULL, &param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		dbm_log_error("could not read the catalog for %s: %s", what,
					  dbm_pg_error(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

static bool
load_table(PGconn *conn, const char *oid, dbm_table *t)
{
	PGresult *res;
	dbm_buf sel;

	if ((res = query1(conn, COLUMNS_SQL, oid, t->name)) == NULL)
		return false;
	t->ncols = PQntuples(res);
	t->cols = xcalloc((size_t) t->ncols, sizeof(char *));
	t->types = xcalloc((size_t) t->ncols, sizeof(char *));
	dbm_buf_init(&sel);
	for (int i = 0; i < t->ncols; i++)
	{
		t->cols[i] = xstrdup(PQgetvalue(res, i, 0));
		t->types[i] = xstrdup(PQgetvalue(res, i, 1));
		char *q = PQescapeIdentifier(conn, t->cols[i], strlen(t->cols[i]));
		if (i)
			dbm_buf_puts(&sel, ", ");
		dbm_buf_puts(&sel, q);
		PQfreemem(q);
	}
	PQclear(res);
	t->select_list = sel.data;

	if ((res = query1(conn, KEY_SQL, oid, t->name)) == NULL)
		return false;
	char **names = xcalloc((size_t) PQntuples(res) + 1, sizeof(char *));
	for (int i = 0; i < PQntuples(res); i++)
		names[i] = PQgetvalue(res, i, 0);
	dbm_table_set_key(t, names, PQntuples(res));
	free(names);
	PQclear(res);

	if ((res = query1(conn, RELS_SQL, oid, t->name)) == NULL)
		return false;
	t->nrels = PQntuples(res);
	t->rels = xcalloc((size_t) t->nrels + 1, sizeof(dbm_rel));
	for (int i = 0; i < t->nrels; i++)
	{
		long pages = 0;
		t->rels[i].from = xstrdup(PQgetvalue(res, i, 0));
		dbm_parse_long(PQgetvalue(res, i, 1), 0, (long) 1 << 40, &pages);
		t->rels[i].pages = pages;
		t->rels[i].name = xstrdup(PQgetvalue(res, i, 2));
		dbm_parse_long(PQgetvalue(res, i, 3), 0, LONG_MAX, &t->rels[i].tuples);
	}
	PQclear(res);
	return true;
}

bool
dbm_table_set_key(dbm_table *t, char **names, int n)
{
	int *key = xcalloc((size_t) n + 1, sizeof(int));

	for (int k = 0; k < n; k++)
	{
		key[k] = -1;
		for (int i = 0; i < t->ncols; i++)
			if (strcmp(t->cols[i], names[k]) == 0)
				key[k] = i;
		if (key[k] < 0)
		{
			free(key);
			return false;
		}
	}
	free(t->key);
	t->key = key;
	t->nkey = n;
	return true;
}

int
dbm_table_key_names(const dbm_table *t, const char ***names)
{
	const char **v;
	int n = t->nkey ? t->nkey : t->ncols;

	v = xcalloc((size_t) n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		v[i] = t->cols[t->nkey ? t->key[i] : i];
	*names = v;
	return n;
}

bool
dbm_catalog_tables(PGconn *conn, const dbm_filter *f, dbm_table **out,
				   int *n, bool **matched)
{
	PGresult *res = query1(conn, TABLES_SQL, NULL, "the table list");
	dbm_table *tabs;
	int count = 0;
	bool *m = xcalloc((size_t) f->ninclude + 1, sizeof(bool));

	if (res == NULL)
	{
		free(m);
		return false;
	}
	tabs = xcalloc((size_t) PQntuples(res) + 1, sizeof(dbm_table));
	for (int r = 0; r < PQntuples(res); r++)
	{
		const char *nsp = PQgetvalue(res, r, 1), *rel = PQgetvalue(res, r, 2);
		bool take = f->ninclude == 0;

		if (f->skip_schema && strcmp(nsp, f->skip_schema) == 0)
			continue;
		for (int i = 0; i < f->ninclude; i++)
			if (dbm_table_matches(f->include[i], nsp, rel, PQgetvalue(res, r, 4)))
				take = m[i] = true;
		for (int i = 0; i < f->nexclude && take; i++)
			if (dbm_table_matches(f->exclude[i], nsp, rel, PQgetvalue(res, r, 4)))
				take = false;
		if (!take)
			continue;

		dbm_table *t = &tabs[count++];
		t->nsp = xstrdup(nsp);
		t->rel = xstrdup(rel);
		t->name = xstrdup(PQgetvalue(res, r, 4));
		t->relkind = PQgetvalue(res, r, 3)[0];
		t->lookup = xstrdup(t->name);
		if (!load_table(conn, PQgetvalue(res, r, 0), t))
		{
			PQclear(res);
			dbm_tables_free(tabs, count);
			free(m);
			return false;
		}
	}
	PQclear(res);
	*out = tabs;
	*n = count;
	if (matched)
		*matched = m;
	else
		free(m);
	return true;
}

void
dbm_tables_free(dbm_table *tabs, int n)
{
	if (tabs == NULL)
		return;
	for (int i = 0; i < n; i++)
	{
		dbm_table *t = &tabs[i];
		for (int c = 0; c < t->ncols; c++)
		{
			free(t->cols[c]);
			free(t->types[c]);
		}
		for (int r = 0; r < t->nrels; r++)
		{
			free(t->rels[r].from);
			free(t->rels[r].name);
		}
		free(t->cols);
		free(t->types);
		free(t->rels);
		free(t->key);
		free(t->name);
		free(t->nsp);
		free(t->rel);
		free(t->lookup);
		free(t->select_list);
	}
	free(tabs);
}
