/* catalog.h - which tables to read and how: columns in canonical order
 * (by name), primary key, and the heap relations (leaf partitions) with
 * their sizes for splitting into ctid ranges. */
#ifndef DBM_CATALOG_H
#define DBM_CATALOG_H

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct
{
	char *from;	 /* "ONLY schema.rel", quoted, for SELECT ... FROM */
	char *name;	 /* schema.rel, quoted as format('%I.%I') */
	long pages;	 /* heap size in blocks when listed */
	long tuples; /* the planner's row estimate */
} dbm_rel;

typedef struct
{
	char *name;		  /* schema.table as format('%I.%I') prints it */
	char *nsp;		  /* raw schema name */
	char *rel;		  /* raw table name */
	char *lookup;	  /* FROM target for key lookups (root, not ONLY) */
	char relkind;	  /* 'r' ordinary, 'p' partitioned */
	int ncols;
	char **cols;	  /* column names sorted bytewise */
	char **types;	  /* format_type() of each column */
	int nkey;		  /* 0: no primary key, the whole row is the key */
	int *key;		  /* indices into cols, in key order */
	int nrels;
	dbm_rel *rels;	  /* heaps to read: the table, or its leaf partitions */
	char *select_list; /* quoted column list in canonical order */
} dbm_table;

typedef struct
{
	const char **include;  /* glob patterns; none means every table */
	int ninclude;
	const char **exclude;
	int nexclude;
	const char *skip_schema; /* the toolkit's own schema, never compared */
} dbm_filter;

/*
 * List the tables matching the filter, sorted by name. Returns false after
 * logging on a server error. matched (may be NULL) receives, per include
 * pattern, whether it matched a table; the caller frees it.
 */
bool dbm_catalog_tables(PGconn *conn, const dbm_filter *f, dbm_table **out,
						int *n, bool **matched);
void dbm_tables_free(dbm_table *t, int n);

/* Does a table name match a pattern (see dbm-hash(1), TABLE PATTERNS)? */
bool dbm_table_matches(const char *pattern, const char *nsp, const char *rel,
					   const char *qname);

/* Use the named columns as the key instead of the table's own; false if a
 * column is missing. */
bool dbm_table_set_key(dbm_table *t, char **names, int n);

/* Key column names; the whole column list when there is no key. */
int dbm_table_key_names(const dbm_table *t, const char ***names);

#endif
