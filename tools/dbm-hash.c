/* dbm-hash - fingerprint the tables of a live database as bucket digests
 * (and optionally per-row hashes), read in one snapshot. See dbm-hash(1). */
#define _POSIX_C_SOURCE 200809L
#include "hashrun.h"
#include "jsonl.h"
#include "log.h"
#include "secret.h"
#include "progress.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
	dbm_hashrun *h;
	bool rows;
	uint64_t total_rows;
	int ntables;
} hash_ctx;

static void
usage(void)
{
	printf("dbm-hash fingerprints the tables of a live PostgreSQL database.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-hash [OPTION]...\n"
		   "\n"
		   "Every selected table is read with one COPY per table (or per ctid\n"
		   "range with --jobs), all in one snapshot. Each row is hashed with\n"
		   "XXH3-128 over its canonical text; rows go to buckets by their primary\n"
		   "key (the whole row without one); bucket digests are sums, so row\n"
		   "order and physical layout do not matter. Output is JSON lines:\n"
		   "bucket lines, then a table line per table, then a done line.\n"
		   "\n"
		   "Options:\n"
		   "  -d, --db=CONNINFO           database to read (default: $DBM_DB, else\n"
		   "                              libpq defaults)\n"
		   "  -t, --table=PATTERN         only tables matching the glob PATTERN\n"
		   "                              (schema.table, or table in any schema);\n"
		   "                              repeatable\n"
		   "  -T, --exclude-table=PATTERN\n"
		   "                              leave out matching tables; repeatable\n"
		   "      --buckets=N             buckets per table (default 4096); both\n"
		   "                              sides of a comparison must use the same\n"
		   "  -j, --jobs=N                parallel readers (default 1)\n"
		   "      --split-pages=N         with --jobs, split tables larger than N\n"
		   "                              heap pages into ctid ranges (default 16384)\n"
		   "      --snapshot=ID           read in this exported snapshot\n"
		   "      --rows                  also print a row line per row\n"
		   "      --only-buckets=FILE     with --rows, only rows of the buckets\n"
		   "                              named by bucket lines in FILE (a dbm-diff\n"
		   "                              output), and only those tables\n"
		   "      --dbm-schema=NAME       the toolkit's schema, never hashed\n"
		   "                              (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "Exit status: 0 done, 2 error (usage, connection, server).\n");
}

static bool
on_row(void *ctx, const dbm_table *t, uint32_t bucket, const char *key,
	   size_t keylen, dbm_h128 h)
{
	char hex[33];
	(void) ctx;
	dbm_h128_hex(h, hex);
	return dbm_jsonl_print(json_pack("{s:s,s:s,s:i,s:o,s:s}", "type", "row",
									 "table", t->name, "bucket", (int) bucket,
									 "key", dbm_key_json(t, key, keylen),
									 "hash", hex));
}

static bool
on_table(void *ctx, dbm_table_result *r)
{
	hash_ctx *c = ctx;
	const dbm_table *t = r->table;
	char hex[33];
	json_t *key = json_array(), *cols = json_array();

	for (uint32_t i = 0; i < r->b->n; i++)
	{
		if (r->b->rows[i] == 0)
			continue;
		dbm_h128_hex(r->b->sum[i], hex);
		if (!dbm_jsonl_print(json_pack(
				"{s:s,s:s,s:i,s:i,s:I,s:s}", "type", "bucket", "table",
				t->name, "bucket", (int) i, "buckets", (int) r->b->n, "rows",
				(json_int_t) r->b->rows[i], "hash", hex)))
		{
			json_decref(key);
			json_decref(cols);
			return false;
		}
	}
	for (int k = 0; k < t->nkey; k++)
		json_array_append_new(key, json_string(t->cols[t->key[k]]));
	for (int i = 0; i < t->ncols; i++)
		json_array_append_new(cols, json_string(t->cols[i]));
	dbm_h128_hex(r->hash, hex);
	c->total_rows += r->rows;
	c->ntables++;
	return dbm_jsonl_print(json_pack(
		"{s:s,s:s,s:o,s:o,s:i,s:I,s:s,s:I}", "type", "table", "table",
		t->name, "key", key, "columns", cols, "buckets", (int) r->b->n, "rows",
		(json_int_t) r->rows, "hash", hex, "ms", (json_int_t) r->ms));
}

/* Mark the buckets named in a dbm-diff (or dbm-hash) output; tables not
 * named are skipped. */
static bool
load_only_buckets(dbm_hashrun *h, const char *path, uint32_t nbuckets,
				  uint8_t ***bitsp)
{
	int n;
	dbm_table *tabs = dbm_hashrun_tables(h, &n);
	uint8_t **bits = xcalloc((size_t) n + 1, sizeof(uint8_t *));
	dbm_jsonl_reader r;
	json_t *o;
	int rc;
	bool ok = true;

	*bitsp = bits;
	if (!dbm_jsonl_open(&r, path))
		return false;
	while ((rc = dbm_jsonl_next(&r, &o)) == 1)
	{
		const char *type = json_string_value(json_object_get(o, "type"));
		const char *table;
		long long b;

		if (type && strcmp(type, "bucket") == 0)
		{
			if (!dbm_jsonl_str(&r, o, "table", &table) ||
				!dbm_jsonl_int(&r, o, "bucket", 0, (long long) nbuckets - 1, &b))
			{
				json_decref(o);
				ok = false;
				break;
			}
			for (int t = 0; t < n; t++)
				if (strcmp(tabs[t].name, table) == 0)
				{
					if (bits[t] == NULL)
						bits[t] = xcalloc(nbuckets / 8 + 1, 1);
					dbm_bit_set(bits[t], (uint32_t) b);
				}
		}
		json_decref(o);
	}
	if (rc < 0)
		ok = false;
	dbm_jsonl_close(&r);
	for (int t = 0; t < n && ok; t++)
	{
		if (bits[t])
			dbm_hashrun_want(h, t, bits[t]);
		else
			dbm_hashrun_skip(h, t);
	}
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		/* what to read */
		{"db", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"exclude-table", required_argument, NULL, 'T'},
		{"snapshot", required_argument, NULL, 's'},
		{"dbm-schema", required_argument, NULL, 'S'},
		/* how */
		{"buckets", required_argument, NULL, 'b'},
		{"jobs", required_argument, NULL, 'j'},
		{"split-pages", required_argument, NULL, 'p'},
		/* what to print */
		{"rows", no_argument, NULL, 'r'},
		{"only-buckets", required_argument, NULL, 'o'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	const char *db = getenv("DBM_DB");
	const char *snapshot = NULL, *only = NULL;
	const char **incl = xcalloc((size_t) argc + 1, sizeof(char *));
	const char **excl = xcalloc((size_t) argc + 1, sizeof(char *));
	dbm_filter filter = {incl, 0, excl, 0, "dbm"};
	long buckets = DBM_DEFAULT_BUCKETS, jobs = 1,
		 split = DBM_DEFAULT_SPLIT_PAGES;
	bool rows = false;
	int c, rc = 0;
	dbm_hashrun *h = NULL;
	uint8_t **bits = NULL;
	hash_ctx ctx = {0};
	dbm_progress prog;
	int64_t started = dbm_now_ms();

	dbm_log_init(argv[0]);
	dbm_secret_init(argc, argv);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "d:t:T:j:rVh", long_options, NULL)) !=
		   -1)
	{
		switch (c)
		{
			case 'd': db = optarg; break;
			case 't': incl[filter.ninclude++] = optarg; break;
			case 'T': excl[filter.nexclude++] = optarg; break;
			case 's': snapshot = optarg; break;
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
			case 'r': rows = true; break;
			case 'o': only = optarg; break;
			case 'L': dbm_log_set_json(true); break;
			case 'V': printf("dbm-hash (dbm) %s\n", DBM_VERSION); return 0;
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
	if (only && !rows)
	{
		dbm_log_error("--only-buckets needs --rows");
		dbm_log_usage_hint();
		return 2;
	}

	dbm_hash_opts o = {.conninfo = db,
					   .appname = "dbm-hash",
					   .snapshot = snapshot,
					   .jobs = (int) jobs,
					   .buckets = (uint32_t) buckets,
					   .split_pages = split,
					   .spill = false,
					   .filter = &filter};
	if ((h = dbm_hashrun_open(&o)) == NULL)
	{
		rc = 2; /* errors have already been logged */
		goto out;
	}
	int ntables;
	dbm_table *tabs = dbm_hashrun_tables(h, &ntables);
	for (int i = 0; i < filter.ninclude; i++)
	{
		bool found = false;
		for (int t = 0; t < ntables && !found; t++)
			found = dbm_table_matches(incl[i], tabs[t].nsp, tabs[t].rel, tabs[t].name);
		if (!found)
		{
			dbm_log_error("no table matches \"%s\"", incl[i]);
			rc = 2;
			goto out;
		}
	}
	if (only && !load_only_buckets(h, only, (uint32_t) buckets, &bits))
	{
		rc = 2;
		goto out;
	}
	ctx.h = h;
	ctx.rows = rows;
	dbm_progress_init(&prog);
	if (!dbm_hashrun_start(h, on_table, rows ? on_row : NULL, &ctx))
	{
		rc = 2;
		goto out;
	}
	for (int tick = 1; !dbm_hashrun_finished(h); tick++)
	{
		uint64_t nr, nb;
		int td;
		dbm_sleep(0.02, NULL);
		if (tick % 25)
			continue;
		dbm_hashrun_progress(h, &nr, &nb, &td);
		dbm_progress_show(&prog, td, ntables, nr, nb);
	}
	dbm_progress_end(&prog);
	if (!dbm_hashrun_wait(h))
	{
		rc = 2;
		goto out;
	}
	if (!dbm_jsonl_print(json_pack("{s:s,s:i,s:I,s:s,s:I}", "type", "done",
								   "tables", ctx.ntables, "rows",
								   (json_int_t) ctx.total_rows, "snapshot",
								   dbm_hashrun_snapshot(h), "ms",
								   (json_int_t) (dbm_now_ms() - started))))
		rc = 2;

out:
	if (bits)
	{
		int n;
		dbm_hashrun_tables(h, &n);
		for (int t = 0; t < n; t++)
			free(bits[t]);
		free(bits);
	}
	dbm_hashrun_free(h);
	free(incl);
	free(excl);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
