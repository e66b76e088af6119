/* jsonl.h - JSON lines in and out (jansson): one object per line on
 * stdout, written in one call; a line reader that names file:line. */
#ifndef DBM_JSONL_H
#define DBM_JSONL_H

#include "catalog.h"
#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Write one object as a line on stdout and drop the reference. false
 * after logging if stdout failed. Thread-safe. */
bool dbm_jsonl_print(json_t *o);

/* The key of a row as an object {column: text or null} from the key text
 * (COPY text fields joined by tabs). New reference. */
json_t *dbm_key_json(const dbm_table *t, const char *key, size_t keylen);

typedef struct
{
	FILE *f;
	const char *path; /* as given; "-" is stdin */
	long line;
	bool allow_null; /* a line "null" (a tombstone) is returned as null */
	dbm_buf buf;
} dbm_jsonl_reader;

/* Open a file ("-" for stdin); false after logging. */
bool dbm_jsonl_open(dbm_jsonl_reader *r, const char *path);
/*
 * Read the next non-empty line as a JSON object. Returns 1 with *out set
 * (new reference), 0 at end of input, -1 after logging "file:line: ..."
 * (malformed JSON, not an object, a last line cut short).
 */
int dbm_jsonl_next(dbm_jsonl_reader *r, json_t **out);
/* The next non-empty line as text in r->buf: 1, 0 at the end, -1 after
 * logging (a last line cut short). */
int dbm_jsonl_next_line(dbm_jsonl_reader *r);
void dbm_jsonl_close(dbm_jsonl_reader *r);

/* Field accessors for input validation; on a missing or mistyped field
 * they log "file:line: ..." and return false. */
bool dbm_jsonl_str(dbm_jsonl_reader *r, json_t *o, const char *field,
				   const char **out);
bool dbm_jsonl_int(dbm_jsonl_reader *r, json_t *o, const char *field,
				   long long min, long long max, long long *out);

#endif
