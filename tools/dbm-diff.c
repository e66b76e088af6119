/* dbm-diff - compare two databases (or two saved dbm-hash outputs) and
 * name the exact rows that differ. See dbm-diff(1).
 *
 * Connection mode hashes both sides concurrently, each in one snapshot,
 * keeping a compact record per row (bucket, row hash, key) in temporary
 * files; only buckets whose digests differ are drilled into, from those
 * records, so the drill-down needs no second read of either database. */
#define _POSIX_C_SOURCE 200809L
#include "hashrun.h"
#include "jsonl.h"
#include "keymap.h"
#include "log.h"
#include "secret.h"
#include "progress.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Memory for the rows of differing buckets held at once during a
 * drill-down (keys plus map entries); more differing buckets than fit are
 * drilled into in several passes. */
#define DRILL_BUDGET_BYTES (32 << 20)
#define DRILL_MAX_ROWS 200000
/* With --recheck, differing rows are held until the last recheck; a table
 * with more than this many is reported at once instead. */
#define RECHECK_MAX_ROWS 100000

typedef enum
{
	ROW_MISSING,
	ROW_EXTRA,
	ROW_CHANGED
} row_status;

static const char *const status_name[] = {"missing", "extra", "changed"};

/* One differing row (for no-key tables: one surplus copy of a row). */
typedef struct
{
	char *key;
	uint32_t keylen;
	row_status status;
	uint32_t count[2];
	dbm_h128 hash[2];
	bool unstable;
} rowdiff;

typedef struct
{
	rowdiff *v;
	size_t n, cap;
} rowdiffs;

typedef struct
{
	uint64_t tables, equal, different, missing, extra, incompatible;
	uint64_t rows_missing, rows_extra, rows_changed, rows_unstable;
	bool trouble; /* exit 2 */
} summary;

/* One side's result for one table in connection mode. */
typedef struct
{
	bool have;
	dbm_buckets *b;
	uint64_t rows;
	dbm_h128 hash;
	int nspill;
	FILE **spill;
} side_table;

typedef struct
{
	side_table *t; /* indexed like the side's table list */
} side_results;

static void
usage(void)
{
	printf("dbm-diff compares two live databases, or two dbm-hash outputs.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-diff [OPTION]... --source=CONNINFO --target=CONNINFO\n"
		   "  dbm-diff [OPTION]... LEFT RIGHT\n"
		   "\n"
		   "The source (LEFT) is what is expected, the target (RIGHT) what is\n"
		   "there. Both databases are hashed concurrently, each in one snapshot;\n"
		   "only buckets whose digests differ are drilled into, and every\n"
		   "differing row is named by its key with status missing (on the\n"
		   "target), extra (on the target) or changed. LEFT and RIGHT are files\n"
		   "written by dbm-hash (\"-\" is stdin): buckets are compared, and rows\n"
		   "too when both files hold row lines (dbm-hash --rows).\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       expected side (default: $DBM_SOURCE)\n"
		   "      --target=CONNINFO       actual side (default: $DBM_TARGET)\n"
		   "  -t, --table=PATTERN         only tables matching the glob PATTERN;\n"
		   "                              repeatable\n"
		   "  -T, --exclude-table=PATTERN\n"
		   "                              leave out matching tables; repeatable\n"
		   "      --buckets=N             buckets per table (default 4096)\n"
		   "  -j, --jobs=N                parallel readers per side (default 1)\n"
		   "      --split-pages=N         with --jobs, split tables larger than N\n"
		   "                              heap pages into ctid ranges (default 16384)\n"
		   "      --recheck=N             re-compare differing rows up to N times\n"
		   "                              (while replication runs); rows that keep\n"
		   "                              changing are reported as unstable\n"
		   "      --recheck-wait=SECS     wait before each recheck (default 5)\n"
		   "      --dbm-schema=NAME       the toolkit's schema, never compared\n"
		   "                              (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 equal, 1 different, 2 trouble (usage, connection, bad\n"
		   "input, a table missing on one side or with other columns).\n");
}

static void
diffs_add(rowdiffs *d, const dbm_keyent *e, row_status st)
{
	if (d->n == d->cap)
	{
		d->cap = d->cap ? d->cap * 2 : 64;
		d->v = xrealloc(d->v, sizeof(rowdiff) * d->cap);
	}
	rowdiff *r = &d->v[d->n++];
	r->key = xstrndup(e->key, e->keylen);
	r->keylen = e->keylen;
	r->status = st;
	r->count[0] = e->count[0];
	r->count[1] = e->count[1];
	r->hash[0] = e->hash[0];
	r->hash[1] = e->hash[1];
	r->unstable = false;
}

static void
diffs_free(rowdiffs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].key);
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

static int
cmp_diff(const void *a, const void *b)
{
	const rowdiff *x = a, *y = b;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	if (x->keylen != y->keylen)
		return x->keylen < y->keylen ? -1 : 1;
	return (int) x->status - (int) y->status;
}

/* Turn what a keymap holds into differing rows. With a key, a row is
 * missing, extra or changed; without one (the key is the whole row) each
 * surplus copy on a side is one missing or extra row. */
static void
collect_diffs(dbm_keymap *m, rowdiffs *out)
{
	for (size_t i = 0; i < m->cap; i++)
	{
		dbm_keyent *e = &m->ents[i];
		if (e->key == NULL)
			continue;
		for (uint32_t c = e->count[1]; c < e->count[0]; c++)
			diffs_add(out, e, ROW_MISSING);
		for (uint32_t c = e->count[0]; c < e->count[1]; c++)
			diffs_add(out, e, ROW_EXTRA);
		if (e->count[0] == e->count[1] && e->count[0] > 0 &&
			!dbm_h128_eq(e->hash[0], e->hash[1]))
			diffs_add(out, e, ROW_CHANGED);
	}
}

/* Read the spill records of both sides for the buckets in bits into a
 * keymap. false after logging. */
static bool
load_spills(dbm_keymap *m, side_table *sides[2], const uint8_t *bits,
			const char *table)
{
	dbm_buf key;
	bool ok = true;

	dbm_buf_init(&key);
	for (int s = 0; s < 2 && ok; s++)
		for (int f = 0; f < sides[s]->nspill && ok; f++)
		{
			FILE *fp = sides[s]->spill[f];
			uint32_t bucket;
			dbm_h128 h;
			int rc;

			rewind(fp);
			while ((rc = dbm_spill_read(fp, &bucket, &h, &key)) == 1)
				if (dbm_bit_test(bits, bucket))
					dbm_keymap_add(m, key.data, key.len, s, h);
			if (rc < 0)
			{
				dbm_log_error("could not read the temporary row file of table %s",
							  table);
				ok = false;
			}
		}
	dbm_buf_free(&key);
	return ok;
}

/* Where the differing rows of each drill-down pass go; false to stop. */
typedef bool (*diff_sink)(void *ctx, rowdiffs *pass);

/* Drill into the buckets that differ between two sides' results of one
 * table, in passes bounded by DRILL_BUDGET_BYTES; each pass's rows are
 * sorted by key and handed to the sink, which owns them. Only buckets set
 * in limit are looked at when limit is not NULL. */
static bool
drill_down(side_table *l, side_table *r, const uint8_t *limit,
		   const char *table, diff_sink sink, void *ctx)
{
	uint32_t n = l->b->n;
	uint8_t *bits = xcalloc(n / 8 + 1, 1);
	uint64_t in_pass = 0, budget, total_rows = 0, total_bytes = 0;
	bool any = false, ok = true;
	side_table *sides[2] = {l, r};

	/* rows per pass from the average record size of the row files */
	for (int s = 0; s < 2; s++)
	{
		for (int f = 0; f < sides[s]->nspill; f++)
		{
			fseeko(sides[s]->spill[f], 0, SEEK_END);
			total_bytes += (uint64_t) ftello(sides[s]->spill[f]);
		}
		for (uint32_t b = 0; b < n; b++)
			total_rows += sides[s]->b->rows[b];
	}
	budget = DRILL_BUDGET_BYTES /
			 ((total_rows ? total_bytes / total_rows : 32) + sizeof(dbm_keyent) * 2);
	if (budget > DRILL_MAX_ROWS)
		budget = DRILL_MAX_ROWS;
	if (budget < 1000)
		budget = 1000;

	for (uint32_t b = 0; b <= n && ok; b++)
	{
		bool differs = b < n && (limit == NULL || dbm_bit_test(limit, b)) &&
					   (l->b->rows[b] != r->b->rows[b] ||
						!dbm_h128_eq(l->b->sum[b], r->b->sum[b]));
		uint64_t rows = b < n ? l->b->rows[b] + r->b->rows[b] : 0;

		if (any && (b == n || (differs && in_pass + rows > budget)))
		{
			dbm_keymap m;
			rowdiffs pass = {0};

			dbm_keymap_init(&m);
			ok = load_spills(&m, sides, bits, table);
			if (ok)
				collect_diffs(&m, &pass);
			dbm_keymap_free(&m);
			if (pass.n > 1) /* (pass.v is NULL when empty) */
				qsort(pass.v, pass.n, sizeof(rowdiff), cmp_diff);
			if (ok)
				ok = sink(ctx, &pass);
			diffs_free(&pass);
			memset(bits, 0, n / 8 + 1);
			in_pass = 0;
			any = false;
		}
		if (differs)
		{
			dbm_bit_set(bits, b);
			in_pass += rows;
			any = true;
		}
	}
	free(bits);
	return ok;
}

/* Sink that moves a pass's rows to the end of a list. */
static bool
sink_append(void *ctx, rowdiffs *pass)
{
	rowdiffs *d = ctx;
	for (size_t i = 0; i < pass->n; i++)
	{
		if (d->n == d->cap)
		{
			d->cap = d->cap ? d->cap * 2 : 64;
			d->v = xrealloc(d->v, sizeof(rowdiff) * d->cap);
		}
		d->v[d->n++] = pass->v[i];
	}
	free(pass->v);
	pass->v = NULL;
	pass->n = pass->cap = 0;
	return true;
}

static bool
print_row(const dbm_table *t, const rowdiff *d)
{
	return dbm_jsonl_print(json_pack(
		"{s:s,s:s,s:o,s:s}", "type", "row", "table", t->name, "key",
		dbm_key_json(t, d->key, d->keylen), "status",
		d->unstable ? "unstable" : status_name[d->status]));
}

static void
count_row(summary *s, const rowdiff *d)
{
	if (d->unstable)
		s->rows_unstable++;
	else if (d->status == ROW_MISSING)
		s->rows_missing++;
	else if (d->status == ROW_EXTRA)
		s->rows_extra++;
	else
		s->rows_changed++;
}

static bool
print_table(const char *name, const char *status, uint64_t lrows,
			uint64_t rrows)
{
	return dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:I,s:I}", "type", "table",
									 "table", name, "status", status,
									 "left_rows", (json_int_t) lrows,
									 "right_rows", (json_int_t) rrows));
}

static bool
print_summary(const summary *s)
{
	return dbm_jsonl_print(json_pack(
		"{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "type", "summary",
		"tables", (json_int_t) s->tables, "equal", (json_int_t) s->equal,
		"different", (json_int_t) s->different, "missing",
		(json_int_t) s->missing, "extra", (json_int_t) s->extra,
		"incompatible", (json_int_t) s->incompatible,
		"rows_missing", (json_int_t) s->rows_missing, "rows_extra",
		(json_int_t) s->rows_extra, "rows_changed",
		(json_int_t) s->rows_changed, "rows_unstable",
		(json_int_t) s->rows_unstable));
}

/* ------------------------------------------------------------------ */
/* Connection mode                                                     */
/* ------------------------------------------------------------------ */

typedef struct
{
	dbm_hash_opts o;
	const char *label;
	dbm_hashrun *h;
	dbm_table *tabs;
	int ntabs;
	side_results res;
} side;

static bool
keep_result(void *ctx, dbm_table_result *r)
{
	side *s = ctx;
	side_table *st = &s->res.t[r->index];

	st->have = true;
	st->b = r->b;
	r->b = NULL;
	st->rows = r->rows;
	st->hash = r->hash;
	st->nspill = r->nspill;
	st->spill = r->spill;
	r->nspill = 0;
	r->spill = NULL;
	return true;
}

static void
side_results_free(side *s)
{
	for (int i = 0; s->res.t && i < s->ntabs; i++)
	{
		side_table *st = &s->res.t[i];
		dbm_buckets_free(st->b);
		for (int f = 0; f < st->nspill; f++)
			fclose(st->spill[f]);
		free(st->spill);
	}
	free(s->res.t);
	s->res.t = NULL;
}

static bool
side_open(side *s)
{
	if ((s->h = dbm_hashrun_open(&s->o)) == NULL)
		return false;
	s->tabs = dbm_hashrun_tables(s->h, &s->ntabs);
	s->res.t = xcalloc((size_t) s->ntabs + 1, sizeof(side_table));
	return true;
}

static void
side_close(side *s)
{
	side_results_free(s);
	dbm_hashrun_free(s->h);
	s->h = NULL;
}

/* Run both sides to the end, with a progress display. */
static bool
run_sides(side *l, side *r)
{
	dbm_progress prog;
	bool ok;

	dbm_progress_init(&prog);
	if (!dbm_hashrun_start(l->h, keep_result, NULL, l) ||
		!dbm_hashrun_start(r->h, keep_result, NULL, r))
		return false;
	for (int tick = 1;
		 !dbm_hashrun_finished(l->h) || !dbm_hashrun_finished(r->h); tick++)
	{
		uint64_t r1, b1, r2, b2;
		int t1, t2;
		dbm_sleep(0.02, NULL);
		if (tick % 25)
			continue;
		dbm_hashrun_progress(l->h, &r1, &b1, &t1);
		dbm_hashrun_progress(r->h, &r2, &b2, &t2);
		dbm_progress_show(&prog, t1 + t2, l->ntabs + r->ntabs, r1 + r2,
						  b1 + b2);
	}
	dbm_progress_end(&prog);
	ok = dbm_hashrun_wait(l->h);
	ok = dbm_hashrun_wait(r->h) && ok;
	return ok;
}

/* Pair the tables of both sides by name: pair[i] is the right index of
 * left table i, or -1. Tables with other columns are reported and
 * skipped; the right side uses the left side's key. */
static void
pair_tables(side *l, side *r, int *lpair, int *rpair, summary *sum)
{
	for (int i = 0; i < l->ntabs; i++)
		lpair[i] = -1;
	for (int j = 0; j < r->ntabs; j++)
		rpair[j] = -1;
	for (int i = 0, j = 0; i < l->ntabs && j < r->ntabs;)
	{
		int c = strcmp(l->tabs[i].name, r->tabs[j].name);
		if (c < 0)
			i++;
		else if (c > 0)
			j++;
		else
		{
			dbm_table *lt = &l->tabs[i], *rt = &r->tabs[j];
			const char *bad = NULL, *where = "target";
			char **lkey = xcalloc((size_t) lt->nkey + 1, sizeof(char *));

			/* compare the column sets, naming the first column that is
			 * on one side only */
			for (int a = 0; a < lt->ncols && !bad; a++)
			{
				bool found = false;
				for (int b = 0; b < rt->ncols && !found; b++)
					found = strcmp(lt->cols[a], rt->cols[b]) == 0;
				if (!found)
					bad = lt->cols[a];
			}
			for (int b = 0; b < rt->ncols && !bad; b++)
			{
				bool found = false;
				for (int a = 0; a < lt->ncols && !found; a++)
					found = strcmp(lt->cols[a], rt->cols[b]) == 0;
				if (!found)
				{
					bad = rt->cols[b];
					where = "source";
				}
			}
			for (int k = 0; k < lt->nkey; k++)
				lkey[k] = lt->cols[lt->key[k]];
			if (bad)
			{
				dbm_log_error("table %s: column \"%s\" is missing on the %s",
							  lt->name, bad, where);
				sum->trouble = true;
				dbm_hashrun_skip(l->h, i);
				dbm_hashrun_skip(r->h, j);
			}
			else
			{
				dbm_table_set_key(rt, lkey, lt->nkey);
				lpair[i] = j;
				rpair[j] = i;
			}
			free(lkey);
			i++;
			j++;
		}
	}
}

/* Skip in a side every table not named in names (sorted like the side). */
static void
keep_only(side *s, char **names, int n)
{
	for (int i = 0; i < s->ntabs; i++)
	{
		bool keep = false;
		for (int k = 0; k < n && !keep; k++)
			keep = strcmp(s->tabs[i].name, names[k]) == 0;
		if (!keep)
			dbm_hashrun_skip(s->h, i);
	}
}

typedef struct
{
	char *name;
	int left;  /* index in the first left side */
	rowdiffs d;
	uint8_t *bits; /* buckets of the differing rows */
	bool reported; /* printed already: not rechecked */
} pending;

typedef struct
{
	const dbm_table *t;
	summary *sum;
	pending *p;
	bool printing; /* rows go straight to stdout */
	uint64_t lrows, rrows;
} report_ctx;

/* Sink of the first drill-down: print rows at once, or hold them for
 * --recheck up to RECHECK_MAX_ROWS, past which the table is reported
 * without a recheck so memory stays bounded. */
static bool
sink_report(void *ctx, rowdiffs *pass)
{
	report_ctx *c = ctx;

	if (!c->printing && c->p->d.n + pass->n > RECHECK_MAX_ROWS)
	{
		dbm_log_warn("table %s: more than %d differing rows, reported without"
					 " a recheck",
					 c->t->name, RECHECK_MAX_ROWS);
		c->printing = true;
		c->p->reported = true;
		c->sum->different++;
		if (!print_table(c->t->name, "different", c->lrows, c->rrows))
			return false;
		if (!sink_report(ctx, &c->p->d))
			return false;
		diffs_free(&c->p->d);
	}
	if (!c->printing)
		return sink_append(&c->p->d, pass);
	for (size_t i = 0; i < pass->n; i++)
	{
		count_row(c->sum, &pass->v[i]);
		if (!print_row(c->t, &pass->v[i]))
			return false;
	}
	return true;
}

/* Re-hash the tables with differing rows in new snapshots and keep, for
 * each old differing row, only what still differs; a row whose difference
 * changed since the previous look is marked unstable. */
static bool
recheck(side *proto_l, side *proto_r, pending *p, int np, uint32_t nbuckets)
{
	side l = *proto_l, r = *proto_r;
	char **names = xcalloc((size_t) np + 1, sizeof(char *));
	summary dummy = {0};
	bool ok = false;
	int *lpair = NULL, *rpair = NULL;

	for (int k = 0; k < np; k++)
		names[k] = p[k].reported ? "" : p[k].name;
	l.h = r.h = NULL;
	l.res.t = r.res.t = NULL;
	if (!side_open(&l) || !side_open(&r))
		goto out_close;
	lpair = xcalloc((size_t) l.ntabs + 1, sizeof(int));
	rpair = xcalloc((size_t) r.ntabs + 1, sizeof(int));
	keep_only(&l, names, np);
	keep_only(&r, names, np);
	pair_tables(&l, &r, lpair, rpair, &dummy);
	for (int i = 0; i < l.ntabs; i++)
		for (int k = 0; k < np; k++)
			if (strcmp(l.tabs[i].name, p[k].name) == 0 && lpair[i] >= 0)
			{
				dbm_hashrun_want(l.h, i, p[k].bits);
				dbm_hashrun_want(r.h, lpair[i], p[k].bits);
			}
	if (!run_sides(&l, &r))
		goto out_close;

	for (int k = 0; k < np; k++)
	{
		rowdiffs now = {0};
		int i;
		if (p[k].reported)
			continue;
		for (i = 0; i < l.ntabs; i++)
			if (strcmp(l.tabs[i].name, p[k].name) == 0)
				break;
		if (i == l.ntabs || lpair[i] < 0 || !l.res.t[i].have ||
			!r.res.t[lpair[i]].have)
		{
			dbm_log_error("table %s disappeared during the recheck", p[k].name);
			goto out_close;
		}
		if (!drill_down(&l.res.t[i], &r.res.t[lpair[i]], p[k].bits,
						p[k].name, sink_append, &now))
			goto out_close;
		/* keep old rows that still differ */
		size_t kept = 0;
		/* (now.v is NULL when nothing differs any more: UBSan) */
		if (now.n > 1)
			qsort(now.v, now.n, sizeof(rowdiff), cmp_diff);
		for (size_t a = 0; a < p[k].d.n; a++)
		{
			rowdiff *old = &p[k].d.v[a];
			rowdiff *cur = now.n ? bsearch(old, now.v, now.n, sizeof(rowdiff), cmp_diff) : NULL;
			if (cur == NULL)
			{
				/* a changed row may now show as another status */
				for (size_t c = 0; c < now.n && !cur; c++)
					if (now.v[c].keylen == old->keylen &&
						memcmp(now.v[c].key, old->key, old->keylen) == 0)
						cur = &now.v[c];
			}
			if (cur == NULL)
			{
				free(old->key);
				continue;
			}
			old->unstable = cur->status != old->status ||
							!dbm_h128_eq(cur->hash[0], old->hash[0]) ||
							!dbm_h128_eq(cur->hash[1], old->hash[1]) ||
							cur->count[0] != old->count[0] ||
							cur->count[1] != old->count[1];
			old->status = cur->status;
			old->hash[0] = cur->hash[0];
			old->hash[1] = cur->hash[1];
			old->count[0] = cur->count[0];
			old->count[1] = cur->count[1];
			p[k].d.v[kept++] = *old;
		}
		p[k].d.n = kept;
		diffs_free(&now);
	}
	ok = true;

out_close:
	(void) nbuckets;
	side_close(&l);
	side_close(&r);
	free(lpair);
	free(rpair);
	free(names);
	return ok;
}

static int
compare_connections(const char *src, const char *dst, const dbm_filter *f,
					int jobs, uint32_t nbuckets, long split, long rechecks,
					double wait)
{
	side l = {0}, r = {0};
	summary sum = {0};
	int *lpair = NULL, *rpair = NULL;
	pending *pend = NULL;
	int npend = 0;
	int rc = 2;

	l.label = "source";
	r.label = "target";
	l.o = (dbm_hash_opts){.conninfo = src, .appname = "dbm-diff",
						  .jobs = jobs, .buckets = nbuckets,
						  .split_pages = split, .spill = true, .filter = f};
	r.o = l.o;
	r.o.conninfo = dst;
	if (!side_open(&l) || !side_open(&r))
		goto out; /* errors have already been logged */
	for (int k = 0; k < f->ninclude; k++)
	{
		bool found = false;
		for (int i = 0; i < l.ntabs && !found; i++)
			found = dbm_table_matches(f->include[k], l.tabs[i].nsp, l.tabs[i].rel, l.tabs[i].name);
		for (int i = 0; i < r.ntabs && !found; i++)
			found = dbm_table_matches(f->include[k], r.tabs[i].nsp, r.tabs[i].rel, r.tabs[i].name);
		if (!found)
		{
			dbm_log_error("no table matches \"%s\" on either side", f->include[k]);
			goto out;
		}
	}
	lpair = xcalloc((size_t) l.ntabs + 1, sizeof(int));
	rpair = xcalloc((size_t) r.ntabs + 1, sizeof(int));
	pair_tables(&l, &r, lpair, rpair, &sum);
	if (!run_sides(&l, &r))
		goto out;

	pend = xcalloc((size_t) l.ntabs + 1, sizeof(pending));
	/* walk both table lists in name order */
	for (int i = 0, j = 0; i < l.ntabs || j < r.ntabs;)
	{
		int c = i >= l.ntabs ? 1 : j >= r.ntabs ? -1
								: strcmp(l.tabs[i].name, r.tabs[j].name);
		if (c < 0)
		{
			dbm_log_error("table %s is missing on the target", l.tabs[i].name);
			sum.trouble = true;
			sum.tables++;
			sum.missing++;
			if (!print_table(l.tabs[i].name, "missing", l.res.t[i].rows, 0))
				goto out;
			i++;
			continue;
		}
		if (c > 0)
		{
			dbm_log_error("table %s is missing on the source (extra on the target)",
						  r.tabs[j].name);
			sum.trouble = true;
			sum.tables++;
			sum.extra++;
			if (!print_table(r.tabs[j].name, "extra", 0, r.res.t[j].rows))
				goto out;
			j++;
			continue;
		}
		if (lpair[i] < 0) /* other columns, already reported on stderr */
		{
			sum.tables++;
			sum.incompatible++;
			if (!print_table(l.tabs[i].name, "incompatible", 0, 0))
				goto out;
			i++;
			j++;
			continue;
		}
		side_table *lt = &l.res.t[i], *rt = &r.res.t[j];
		bool equal = lt->rows == rt->rows && dbm_h128_eq(lt->hash, rt->hash);
		sum.tables++;
		if (equal)
		{
			sum.equal++;
			if (!print_table(l.tabs[i].name, "equal", lt->rows, rt->rows))
				goto out;
		}
		else
		{
			pending *p = &pend[npend++];
			report_ctx rctx = {&l.tabs[i], &sum, p, rechecks == 0, lt->rows,
							   rt->rows};
			p->name = l.tabs[i].name;
			p->left = i;
			if (rctx.printing)
			{
				/* report now, nothing to wait for */
				p->reported = true;
				sum.different++;
				if (!print_table(l.tabs[i].name, "different", lt->rows, rt->rows))
					goto out;
			}
			if (!drill_down(lt, rt, NULL, l.tabs[i].name, sink_report, &rctx))
				goto out;
			p->bits = xcalloc(nbuckets / 8 + 1, 1);
			for (size_t k = 0; k < p->d.n; k++)
				dbm_bit_set(p->bits, dbm_hash_bucket(p->d.v[k].key,
													 p->d.v[k].keylen, nbuckets));
		}
		/* the row records are no longer needed */
		for (side_table *st = lt; st; st = st == lt ? rt : NULL)
		{
			for (int s = 0; s < st->nspill; s++)
				fclose(st->spill[s]);
			st->nspill = 0;
		}
		i++;
		j++;
	}

	if (rechecks > 0 && npend > 0)
	{
		for (long round = 0; round < rechecks; round++)
		{
			size_t left = 0;
			for (int k = 0; k < npend; k++)
				left += pend[k].reported ? 0 : pend[k].d.n;
			if (left == 0)
				break;
			dbm_sleep(wait, NULL);
			if (!recheck(&l, &r, pend, npend, nbuckets))
				goto out;
		}
		for (int k = 0; k < npend; k++)
		{
			pending *p = &pend[k];
			if (p->reported)
				continue;
			side_table *lt = &l.res.t[p->left], *rt = &r.res.t[lpair[p->left]];
			const char *st = p->d.n ? "different" : "equal";
			if (p->d.n)
				sum.different++;
			else
				sum.equal++;
			if (!print_table(p->name, st, lt->rows, rt->rows))
				goto out;
			for (size_t n = 0; n < p->d.n; n++)
			{
				count_row(&sum, &p->d.v[n]);
				if (!print_row(&l.tabs[p->left], &p->d.v[n]))
					goto out;
			}
		}
	}
	if (!print_summary(&sum))
		goto out;
	if (sum.trouble)
		rc = 2;
	else
		rc = sum.different > 0 ? 1 : 0;

out:
	for (int k = 0; k < npend; k++)
	{
		diffs_free(&pend[k].d);
		free(pend[k].bits);
	}
	free(pend);
	free(lpair);
	free(rpair);
	side_close(&l);
	side_close(&r);
	return rc;
}

/* ------------------------------------------------------------------ */
/* File mode                                                           */
/* ------------------------------------------------------------------ */

/* One table's block of a dbm-hash output: its row lines, bucket lines and
 * the closing table line. Row lines go to a temporary file as spill
 * records (key = the key object as JSON), so memory does not grow with
 * them. */
typedef struct
{
	char *name;
	json_t *tline; /* the table line */
	uint32_t nbuckets;
	uint64_t *rows;
	dbm_h128 *sum;
	uint64_t *rrows;   /* per bucket: row lines seen, and their hash sum */
	dbm_h128 *rsum;
	FILE *spill;	   /* row lines, or NULL */
	long line;		   /* of the table line */
} fblock;

typedef struct
{
	dbm_jsonl_reader r;
	bool done;	/* saw the done line */
	char *last; /* name of the previous table, for the order check */
	long long tables, total_rows;
	dbm_buf missing; /* tables the other file has and this one lacks */
} fside;

static void
fblock_free(fblock *b)
{
	free(b->name);
	json_decref(b->tline);
	free(b->rows);
	free(b->sum);
	free(b->rrows);
	free(b->rsum);
	if (b->spill)
		fclose(b->spill);
	memset(b, 0, sizeof(*b));
}

static bool
fblock_buckets(fside *s, fblock *b, long long n)
{
	if (b->rows == NULL)
	{
		b->nbuckets = (uint32_t) n;
		b->rows = xcalloc((size_t) n, sizeof(uint64_t));
		b->sum = xcalloc((size_t) n, sizeof(dbm_h128));
		b->rrows = xcalloc((size_t) n, sizeof(uint64_t));
		b->rsum = xcalloc((size_t) n, sizeof(dbm_h128));
	}
	else if (b->nbuckets != (uint32_t) n)
	{
		dbm_log_error("%s:%ld: bucket count %lld differs from earlier lines",
					  s->r.path, s->r.line, n);
		return false;
	}
	return true;
}

/* After the done line: check its counts and that nothing follows. */
static bool
check_done(fside *s, json_t *o)
{
	long long tables = -1, rows = -1;
	json_t *rest;
	int rc;

	if (json_is_integer(json_object_get(o, "tables")))
		tables = json_integer_value(json_object_get(o, "tables"));
	if (json_is_integer(json_object_get(o, "rows")))
		rows = json_integer_value(json_object_get(o, "rows"));
	if (tables != s->tables || rows != s->total_rows)
	{
		dbm_log_error("%s:%ld: the done line counts %lld tables and %lld rows, the file"
					  " holds %lld and %lld (file corrupt or cut%s%s)",
					  s->r.path, s->r.line, tables, rows, s->tables, s->total_rows,
					  s->missing.len ? "; lacks " : "", s->missing.len ? s->missing.data : "");
		return false;
	}
	if ((rc = dbm_jsonl_next(&s->r, &rest)) != 0)
	{
		if (rc == 1)
		{
			json_decref(rest);
			dbm_log_error("%s:%ld: data after the done line", s->r.path, s->r.line);
		}
		return false;
	}
	return true;
}

static bool check_row_lines(fside *s, fblock *b);

/*
 * Read the next table block. Returns 1 with *b filled, 0 at the done
 * line, -1 after logging (corrupt, truncated, out of order).
 */
static int
fblock_read(fside *s, fblock *b)
{
	json_t *o;
	int rc;
	dbm_h128 h;

	memset(b, 0, sizeof(*b));
	while ((rc = dbm_jsonl_next(&s->r, &o)) == 1)
	{
		const char *type, *table, *hex;
		long long bucket, n, rows;

		if (!dbm_jsonl_str(&s->r, o, "type", &type))
			goto bad;
		if (strcmp(type, "done") == 0)
		{
			bool ok;
			if (b->name || b->rows)
			{
				dbm_log_error("%s:%ld: done line inside the block of a table",
							  s->r.path, s->r.line);
				goto bad;
			}
			ok = check_done(s, o);
			json_decref(o);
			fblock_free(b);
			if (!ok)
				return -1;
			s->done = true;
			return 0;
		}
		if (!dbm_jsonl_str(&s->r, o, "table", &table))
			goto bad;
		if (b->name == NULL)
			b->name = xstrdup(table);
		else if (strcmp(b->name, table) != 0)
		{
			dbm_log_error("%s:%ld: line of table %s inside the block of table %s"
						  " (no table line closes it)",
						  s->r.path, s->r.line, table, b->name);
			goto bad;
		}
		if (strcmp(type, "bucket") == 0)
		{
			if (!dbm_jsonl_int(&s->r, o, "buckets", 1, DBM_MAX_BUCKETS, &n) ||
				!dbm_jsonl_int(&s->r, o, "bucket", 0, n - 1, &bucket) ||
				!dbm_jsonl_int(&s->r, o, "rows", 0, INT64_MAX, &rows) ||
				!dbm_jsonl_str(&s->r, o, "hash", &hex) || !fblock_buckets(s, b, n))
				goto bad;
			if (!dbm_h128_parse(hex, &h))
			{
				dbm_log_error("%s:%ld: invalid hash \"%s\"", s->r.path, s->r.line, hex);
				goto bad;
			}
			b->rows[bucket] += (uint64_t) rows;
			dbm_h128_add(&b->sum[bucket], h);
		}
		else if (strcmp(type, "row") == 0)
		{
			json_t *key = json_object_get(o, "key");
			json_t *hv = json_object_get(o, "hash");
			json_t *bv = json_object_get(o, "bucket");
			char *ks;
			bool ok;

			if (!json_is_object(key) || !json_is_string(hv) ||
				!dbm_h128_parse(json_string_value(hv), &h) || !json_is_integer(bv) ||
				json_integer_value(bv) < 0 || json_integer_value(bv) >= DBM_MAX_BUCKETS)
			{
				dbm_log_error("%s:%ld: row line without a key object, bucket and hash",
							  s->r.path, s->r.line);
				goto bad;
			}
			if (b->spill == NULL && (b->spill = dbm_spill_open()) == NULL)
				goto bad;
			ks = json_dumps(key, JSON_COMPACT | JSON_PRESERVE_ORDER);
			ok = dbm_spill_write(b->spill, (uint32_t) json_integer_value(bv), h, ks,
								 (uint32_t) strlen(ks));
			free(ks);
			if (!ok)
			{
				dbm_log_error("could not write a temporary file: %m");
				goto bad;
			}
		}
		else if (strcmp(type, "table") == 0)
		{
			dbm_h128 total = {0, 0};
			uint64_t count = 0;
			if (!dbm_jsonl_int(&s->r, o, "buckets", 1, DBM_MAX_BUCKETS, &n) ||
				!dbm_jsonl_int(&s->r, o, "rows", 0, INT64_MAX, &rows) ||
				!dbm_jsonl_str(&s->r, o, "hash", &hex) || !fblock_buckets(s, b, n))
				goto bad;
			if (!dbm_h128_parse(hex, &h) || !json_is_array(json_object_get(o, "columns")) ||
				!json_is_array(json_object_get(o, "key")))
			{
				dbm_log_error("%s:%ld: table line without valid hash, key and columns",
							  s->r.path, s->r.line);
				goto bad;
			}
			for (uint32_t i = 0; i < b->nbuckets; i++)
			{
				count += b->rows[i];
				dbm_h128_add(&total, b->sum[i]);
			}
			if (count != (uint64_t) rows || !dbm_h128_eq(total, h))
			{
				dbm_log_error("%s:%ld: bucket lines of table %s do not add up to"
							  " its digest (file corrupt or cut)",
							  s->r.path, s->r.line, table);
				goto bad;
			}
			if (b->spill && !check_row_lines(s, b))
				goto bad;
			if (s->last && strcmp(s->last, table) >= 0)
			{
				dbm_log_error("%s:%ld: table %s out of order (after %s)", s->r.path,
							  s->r.line, table, s->last);
				goto bad;
			}
			/* (an overflow was undefined behaviour, found by fuzzing) */
			if (__builtin_add_overflow(s->total_rows, rows, &s->total_rows))
			{
				dbm_log_error("%s:%ld: the row counts of the tables add up to more"
							  " than 2^63 (file corrupt)",
							  s->r.path, s->r.line);
				goto bad;
			}
			free(s->last);
			s->last = xstrdup(table);
			s->tables++;
			b->tline = o;
			b->line = s->r.line;
			return 1;
		}
		else
		{
			dbm_log_error("%s:%ld: unexpected line type \"%s\"", s->r.path, s->r.line,
						  type);
			goto bad;
		}
		json_decref(o);
		continue;
	bad:
		json_decref(o);
		fblock_free(b);
		return -1;
	}
	if (rc == 0)
		dbm_log_error("%s:%ld: truncated: the file ends without a done line", s->r.path,
					  s->r.line);
	fblock_free(b);
	return -1;
}

/* The row lines of a bucket must add up to its bucket line: an edited
 * row hash is corruption, not a difference. */
static bool
check_row_lines(fside *s, fblock *b)
{
	dbm_buf key;
	uint32_t bucket;
	dbm_h128 h;
	int rc;

	dbm_buf_init(&key);
	rewind(b->spill);
	while ((rc = dbm_spill_read(b->spill, &bucket, &h, &key)) == 1)
	{
		if (bucket >= b->nbuckets)
		{
			rc = -2;
			break;
		}
		b->rrows[bucket]++;
		dbm_h128_add(&b->rsum[bucket], h);
	}
	dbm_buf_free(&key);
	if (rc == -1)
	{
		dbm_log_error("could not read a temporary file");
		return false;
	}
	for (uint32_t i = 0; i < b->nbuckets && rc == 0; i++)
		if (b->rrows[i] &&
			(b->rrows[i] != b->rows[i] || !dbm_h128_eq(b->rsum[i], b->sum[i])))
		{
			dbm_log_error("%s:%ld: row lines of table %s, bucket %u, do not add up to"
						  " its bucket line (file corrupt or edited)",
						  s->r.path, s->r.line, b->name, i);
			return false;
		}
	if (rc == -2)
	{
		dbm_log_error("%s:%ld: row line of table %s with a bucket out of range",
					  s->r.path, s->r.line, b->name);
		return false;
	}
	return true;
}

typedef struct
{
	const char *table;
	summary *sum;
} file_sink_ctx;

/* Sink for file mode: keys are JSON text already. */
static bool
sink_file(void *ctx, rowdiffs *pass)
{
	file_sink_ctx *c = ctx;
	bool ok = true;

	for (size_t i = 0; i < pass->n && ok; i++)
	{
		json_t *key = json_loadb(pass->v[i].key, pass->v[i].keylen, 0, NULL);
		count_row(c->sum, &pass->v[i]);
		ok = dbm_jsonl_print(json_pack("{s:s,s:s,s:o,s:s}", "type", "row", "table",
									   c->table, "key", key ? key : json_null(), "status",
									   status_name[pass->v[i].status]));
	}
	return ok;
}

/* Compare two blocks of the same table. */
static bool
compare_blocks(fside *ls, fblock *l, fside *rs, fblock *r, summary *sum)
{
	json_t *lc = json_object_get(l->tline, "columns");
	json_t *rc = json_object_get(r->tline, "columns");
	json_t *lk = json_object_get(l->tline, "key");
	json_t *rk = json_object_get(r->tline, "key");
	uint64_t lrows = 0, rrows = 0;
	bool equal = true, ok = true;

	if (!json_equal(lc, rc) || !json_equal(lk, rk) || l->nbuckets != r->nbuckets)
	{
		dbm_log_error("table %s: columns, key or bucket count differ between"
					  " %s:%ld and %s:%ld",
					  l->name, ls->r.path, l->line, rs->r.path, r->line);
		sum->trouble = true;
		sum->tables++;
		sum->incompatible++;
		return print_table(l->name, "incompatible", 0, 0);
	}
	for (uint32_t i = 0; i < l->nbuckets; i++)
	{
		lrows += l->rows[i];
		rrows += r->rows[i];
		if (l->rows[i] != r->rows[i] || !dbm_h128_eq(l->sum[i], r->sum[i]))
			equal = false;
	}
	sum->tables++;
	if (equal)
	{
		sum->equal++;
		return print_table(l->name, "equal", lrows, rrows);
	}
	sum->different++;
	if (!print_table(l->name, "different", lrows, rrows))
		return false;
	for (uint32_t i = 0; i < l->nbuckets && ok; i++)
		if (l->rows[i] != r->rows[i] || !dbm_h128_eq(l->sum[i], r->sum[i]))
			ok = dbm_jsonl_print(json_pack(
				"{s:s,s:s,s:i,s:s,s:I,s:I}", "type", "bucket", "table", l->name, "bucket",
				(int) i, "status", "different", "left_rows", (json_int_t) l->rows[i],
				"right_rows", (json_int_t) r->rows[i]));
	if (ok && l->spill && r->spill)
	{
		/* the same drill-down as connection mode, over the row lines */
		dbm_buckets lb = {l->nbuckets, l->rows, l->sum};
		dbm_buckets rb = {r->nbuckets, r->rows, r->sum};
		side_table lt = {true, &lb, lrows, {0, 0}, 1, &l->spill};
		side_table rt = {true, &rb, rrows, {0, 0}, 1, &r->spill};
		file_sink_ctx ctx = {l->name, sum};
		uint8_t *bits = xcalloc(l->nbuckets / 8 + 1, 1);
		/* only buckets both files hold rows for can be named */
		for (uint32_t i = 0; i < l->nbuckets; i++)
			if ((l->rrows[i] || l->rows[i] == 0) && (r->rrows[i] || r->rows[i] == 0))
				dbm_bit_set(bits, i);
		ok = drill_down(&lt, &rt, bits, l->name, sink_file, &ctx);
		free(bits);
	}
	return ok;
}

static uint64_t
block_rows(const fblock *b)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < b->nbuckets; i++)
		n += b->rows[i];
	return n;
}

static int
compare_files(const char *lpath, const char *rpath)
{
	fside ls = {0}, rs = {0};
	fblock lb = {0}, rb = {0};
	int lrc, rrc, rc = 2;
	summary sum = {0};
	dbm_buf later;

	dbm_buf_init(&later);
	dbm_buf_init(&ls.missing);
	dbm_buf_init(&rs.missing);
	if (strcmp(lpath, "-") == 0 && strcmp(rpath, "-") == 0)
	{
		dbm_log_error("only one of LEFT and RIGHT can be stdin");
		return 2;
	}
	if (!dbm_jsonl_open(&ls.r, lpath))
		return 2;
	if (!dbm_jsonl_open(&rs.r, rpath))
	{
		dbm_jsonl_close(&ls.r);
		return 2;
	}
	lrc = fblock_read(&ls, &lb);
	rrc = lrc < 0 ? -1 : fblock_read(&rs, &rb);
	while (lrc > 0 || rrc > 0)
	{
		if (lrc < 0 || rrc < 0)
			goto out;
		int c = lrc == 0 ? 1 : rrc == 0 ? -1 : strcmp(lb.name, rb.name);
		if (c < 0)
		{
			/* said at the end, unless the file turns out corrupt (then
			 * that is the one thing worth saying) */
			dbm_buf_printf(&later, "table %s is missing on the right (%s)\n", lb.name, rpath);
			dbm_buf_printf(&rs.missing, "%s%s", rs.missing.len ? ", " : "", lb.name);
			sum.trouble = true;
			sum.tables++;
			sum.missing++;
			if (!print_table(lb.name, "missing", block_rows(&lb), 0))
				goto out;
			fblock_free(&lb);
			lrc = fblock_read(&ls, &lb);
		}
		else if (c > 0)
		{
			dbm_buf_printf(&later, "table %s is missing on the left (%s)\n", rb.name, lpath);
			dbm_buf_printf(&ls.missing, "%s%s", ls.missing.len ? ", " : "", rb.name);
			sum.trouble = true;
			sum.tables++;
			sum.extra++;
			if (!print_table(rb.name, "extra", 0, block_rows(&rb)))
				goto out;
			fblock_free(&rb);
			rrc = fblock_read(&rs, &rb);
		}
		else
		{
			if (!compare_blocks(&ls, &lb, &rs, &rb, &sum))
				goto out;
			fblock_free(&lb);
			fblock_free(&rb);
			lrc = fblock_read(&ls, &lb);
			rrc = lrc < 0 ? -1 : fblock_read(&rs, &rb);
		}
	}
	if (lrc < 0 || rrc < 0)
		goto out;
	for (char *p = later.data, *nl; *p; p = nl + 1)
	{
		nl = strchr(p, '\n');
		*nl = '\0';
		dbm_log_error("%s", p);
	}
	if (!print_summary(&sum))
		goto out;
	rc = sum.trouble ? 2 : sum.different ? 1 : 0;

out:
	dbm_buf_free(&later);
	dbm_buf_free(&ls.missing);
	dbm_buf_free(&rs.missing);
	fblock_free(&lb);
	fblock_free(&rb);
	free(ls.last);
	free(rs.last);
	dbm_jsonl_close(&ls.r);
	dbm_jsonl_close(&rs.r);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		/* what to compare */
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 'g'},
		{"table", required_argument, NULL, 't'},
		{"exclude-table", required_argument, NULL, 'T'},
		{"dbm-schema", required_argument, NULL, 'S'},
		/* how */
		{"buckets", required_argument, NULL, 'b'},
		{"jobs", required_argument, NULL, 'j'},
		{"split-pages", required_argument, NULL, 'p'},
		{"recheck", required_argument, NULL, 'r'},
		{"recheck-wait", required_argument, NULL, 'w'},
		/* output */
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *src = getenv("DBM_SOURCE"), *dst = getenv("DBM_TARGET");
	const char **incl = xcalloc((size_t) argc + 1, sizeof(char *));
	const char **excl = xcalloc((size_t) argc + 1, sizeof(char *));
	dbm_filter filter = {incl, 0, excl, 0, "dbm"};
	long buckets = DBM_DEFAULT_BUCKETS, jobs = 1,
		 split = DBM_DEFAULT_SPLIT_PAGES, rechecks = 0;
	double wait = 5;
	bool conn_opts = false;
	int c, rc;

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:T:j:Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 's': src = optarg; conn_opts = true; break;
			case 'g': dst = optarg; conn_opts = true; break;
			case 't': incl[filter.ninclude++] = optarg; conn_opts = true; break;
			case 'T': excl[filter.nexclude++] = optarg; conn_opts = true; break;
			case 'S': filter.skip_schema = optarg; break;
			case 'b':
				if (!dbm_parse_long(optarg, 1, DBM_MAX_BUCKETS, &buckets))
				{
					dbm_log_error("invalid value \"%s\" for --buckets: expected 1 to %d",
								  optarg, DBM_MAX_BUCKETS);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'j':
				if (!dbm_parse_long(optarg, 1, 64, &jobs))
				{
					dbm_log_error("invalid value \"%s\" for --jobs: expected 1 to 64", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'p':
				if (!dbm_parse_long(optarg, 1, (long) 1 << 32, &split))
				{
					dbm_log_error("invalid value \"%s\" for --split-pages", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'r':
				if (!dbm_parse_long(optarg, 0, 1000, &rechecks))
				{
					dbm_log_error("invalid value \"%s\" for --recheck: expected 0 to 1000",
								  optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'w':
				if (!dbm_parse_seconds(optarg, &wait))
				{
					dbm_log_error("invalid value \"%s\" for --recheck-wait: expected seconds",
								  optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'L': dbm_log_set_json(true); break;
			case 'V': printf("dbm-diff (dbm) %s\n", DBM_VERSION); return 0;
			case 'h': usage(); return 0;
			default: dbm_log_bad_option(argv, optind); return 2;
		}
	}

	if (argc - optind == 2)
	{
		if (conn_opts || rechecks)
		{
			dbm_log_error("LEFT and RIGHT files cannot be combined with --source, "
						  "--target, --table, --exclude-table or --recheck");
			dbm_log_usage_hint();
			return 2;
		}
		rc = compare_files(argv[optind], argv[optind + 1]);
	}
	else if (argc - optind != 0)
	{
		dbm_log_error("expected two files LEFT RIGHT or none, got %d arguments",
					  argc - optind);
		dbm_log_usage_hint();
		return 2;
	}
	else if (src == NULL || dst == NULL)
	{
		dbm_log_error("%s is required (or files LEFT RIGHT)",
					  src == NULL ? "--source" : "--target");
		dbm_log_usage_hint();
		return 2;
	}
	else
		rc = compare_connections(src, dst, &filter, (int) jobs,
								 (uint32_t) buckets, split, rechecks, wait);

	free(incl);
	free(excl);
	if (fclose(stdout) != 0 && rc != 2)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
