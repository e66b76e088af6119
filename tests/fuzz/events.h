/* events.h - what the Debezium and AWS DMS fuzz targets share: one Kafka
 * message value parsed (with the schema cache, twice, so the second parse
 * takes the fast path and must agree with the first), classified, and its
 * rows converted for a target table described by a fixed catalog (the
 * schema-less path takes the column types from it, as the apply takes
 * them from the target's catalog). */
#ifndef DBM_FUZZ_EVENTS_H
#define DBM_FUZZ_EVENTS_H

#include "decode.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* The target's columns: tests/cdc-events.bats's type matrix, the tables
 * of tests/fixtures, format_type() spellings. */
static const char *const fuzz_catalog[][2] = {
	{"id", "integer"},
	{"b", "boolean"},
	{"i2", "smallint"},
	{"i4", "integer"},
	{"i8", "bigint"},
	{"f4", "real"},
	{"f8", "double precision"},
	{"n_fix", "numeric(12,3)"},
	{"n_var", "numeric"},
	{"t", "text"},
	{"vc", "character varying(20)"},
	{"ch", "character(5)"},
	{"by", "bytea"},
	{"d", "date"},
	{"t_ms", "time(3) without time zone"},
	{"t_us", "time without time zone"},
	{"ts_ms", "timestamp(3) without time zone"},
	{"ts_us", "timestamp without time zone"},
	{"ts", "timestamp without time zone"},
	{"tstz", "timestamp with time zone"},
	{"ttz", "time with time zone"},
	{"iv", "interval"},
	{"j", "json"},
	{"jb", "jsonb"},
	{"u", "uuid"},
	{"e", "mood"},
	{"b1", "bit(1)"},
	{"bt", "bit(10)"},
	{"vb", "bit varying(20)"},
	{"pt", "point"},
	{"a_int", "integer[]"},
	{"a_text", "text[]"},
	{"a_date", "date[]"},
	{"a_num", "numeric(6,2)[]"},
	{"a_uuid", "uuid[]"},
	{"a_ts", "timestamp without time zone[]"},
	{"n38", "numeric(38,10)"},
	{"nv", "numeric"},
	{"h", "public.hstore"},
	{"hs", "hstore"},
	{"v", "text"},
	{"name", "character varying(255)"},
	{"description", "character varying(512)"},
	{"weight", "double precision"},
	{"fname", "text"},
	{"lname", "text"},
	{"REGION", "text"},
	{"blob", "bytea"},
	{"body", "text"},
	{"tags", "text[]"},
	{"doc", "jsonb"},
};
#define FUZZ_NCATALOG (sizeof(fuzz_catalog) / sizeof(fuzz_catalog[0]))

/* The type of a column: the catalog's, or for another name one of the
 * catalog's types picked by the name's hash, so any name reaches every
 * type; names starting "missing" are not on the target. */
static const char *
fuzz_col_type(const char *col)
{
	if (strncmp(col, "missing", 7) == 0)
		return NULL;
	for (size_t i = 0; i < FUZZ_NCATALOG; i++)
		if (strcmp(fuzz_catalog[i][0], col) == 0)
			return fuzz_catalog[i][1];
	return fuzz_catalog[XXH3_64bits(col, strlen(col)) % FUZZ_NCATALOG][1];
}

static void
fuzz_add_cols(dbm_srcrel *r, json_t *row)
{
	const char *key;
	json_t *v;

	json_object_foreach(row, key, v)
	{
		const char *type = fuzz_col_type(key);
		bool have = false;

		(void) v;
		for (int i = 0; i < r->ncols && !have; i++)
			have = strcmp(r->cols[i], key) == 0;
		if (have || type == NULL)
			continue;
		r->cols = xrealloc(r->cols, sizeof(char *) * (size_t) (r->ncols + 1));
		r->tnames = xrealloc(r->tnames, sizeof(char *) * (size_t) (r->ncols + 1));
		r->key = xrealloc(r->key, sizeof(bool) * (size_t) (r->ncols + 1));
		r->types = xrealloc(r->types, sizeof(uint32_t) * (size_t) (r->ncols + 1));
		r->typmods = xrealloc(r->typmods, sizeof(int32_t) * (size_t) (r->ncols + 1));
		r->cols[r->ncols] = xstrdup(key);
		r->tnames[r->ncols] = xstrdup(type);
		r->key[r->ncols] = strcmp(key, "id") == 0;
		r->types[r->ncols] = 0;
		r->typmods[r->ncols] = -1;
		r->ncols++;
	}
}

/* Convert one row the way the apply does, and read what came out. */
static void
fuzz_row(const dbm_srcrel *r, json_t *row, json_t *fields, const dbm_decode_opts *o,
		 dbm_buf *arena)
{
	uint32_t sink = 0;
	dbm_val *vals;
	char err[512];

	if (!json_is_object(row))
		return;
	vals = xcalloc((size_t) r->ncols + 1, sizeof(dbm_val));
	if (dbm_decode_row(r, row, fields, o, vals, arena, err, sizeof(err)))
		for (int i = 0; i < r->ncols; i++)
			for (uint32_t k = 0; vals[i].kind == DBM_VAL_TEXT && k < vals[i].len; k++)
				sink += (unsigned char) vals[i].data[k];
	else
		sink += (uint32_t) strlen(err);
	dbm_fuzz_use(sink);
	free(vals);
}

/* One message value with one set of decoding options. */
static void
fuzz_event_opts(json_t *msg, const dbm_decode_opts *o, dbm_buf *arena)
{
	uint32_t sink = 0;
	dbm_event ev;
	char err[512];

	if (!dbm_decode_event(msg, o, &ev, err, sizeof(err)))
	{
		dbm_fuzz_use((uint32_t) strlen(err));
		dbm_event_clear(&ev);
		return;
	}
	if (ev.kind == DBM_EV_CHANGE)
	{
		/* the target table as dbm_apply_target_rel describes one, with
		 * the columns the event names (when the catalog has them) */
		dbm_srcrel *r = xcalloc(1, sizeof(dbm_srcrel));
		r->nsp = xstrdup(ev.nsp ? ev.nsp : "public");
		r->name = xstrdup(ev.table ? ev.table : "t");
		r->qname = xasprintf("%s.%s", r->nsp, r->name);
		r->ident = 'd';
		fuzz_add_cols(r, ev.newo);
		fuzz_add_cols(r, ev.oldo);
		fuzz_row(r, ev.newo, ev.newfields, o, arena);
		fuzz_row(r, ev.oldo, ev.oldfields, o, arena);
		dbm_srcrel_free(r);
	}
	else if (ev.kind == DBM_EV_MESSAGE)
		sink += (uint32_t) (ev.message_prefix ? strlen(ev.message_prefix) : 0) +
				(uint32_t) (ev.message_content ? strlen(ev.message_content) : 0);
	dbm_fuzz_use(sink);
	dbm_event_clear(&ev);
}

/* One message value, with every combination of the options a run can
 * have; the DMS target names a before-image attribute. */
static int
fuzz_event(const uint8_t *data, size_t size, const char *dms_before)
{
	static const char *const modes[] = {NULL, "base64", "hex"};
	static const char *const decimals[] = {NULL, "precise", "string"};
	dbm_schema_cache *cache = dbm_schema_cache_new();
	char *text = xmalloc(size ? size : 1);
	json_t *msg = NULL, *again = NULL;
	char err[512];
	dbm_buf arena;

	memcpy(text, data, size);
	dbm_buf_init(&arena);
	if (dbm_decode_parse(cache, text, size, &msg, err, sizeof(err)))
	{
		/* the same text again comes through the cache's fast path */
		if (!dbm_decode_parse(cache, text, size, &again, err, sizeof(err)) ||
			!json_equal(msg, again))
			abort();
		for (size_t m = 0; m < 3; m++)
			for (int raw = 0; raw < 2; raw++)
			{
				dbm_decode_opts o = {.binary_mode = modes[m],
									 .decimal_mode = decimals[m],
									 .dms_before = dms_before,
									 .raw = raw != 0};
				fuzz_event_opts(msg, &o, &arena);
			}
	}
	json_decref(msg);
	json_decref(again);
	dbm_buf_free(&arena);
	dbm_schema_cache_free(cache);
	free(text);
	dbm_fuzz_forget_errors();
	return 0;
}

#endif
