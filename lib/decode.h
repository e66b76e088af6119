/* decode.h - change events as JSON (Debezium envelopes with or without
 * schemas, AWS DMS Kafka-target records, dbm change lines) turned into
 * normalized changes against a target table. */
#ifndef DBM_DECODE_H
#define DBM_DECODE_H

#include "change.h"
#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum
{
	DBM_EV_SKIP,	 /* tombstone, heartbeat, transaction metadata, DMS control */
	DBM_EV_CHANGE,	 /* insert, update or delete of a row */
	DBM_EV_TRUNCATE, /* of the table */
	DBM_EV_COMMIT,	 /* end of a source transaction (dbm lines) */
	DBM_EV_MESSAGE	 /* a logical message (Debezium op m, dbm message lines) */
} dbm_evkind;

typedef struct
{
	dbm_evkind kind;
	const char *format; /* "debezium", "dms", "dbm" */
	const char *why;	/* for DBM_EV_SKIP: what was skipped */
	char *nsp, *table;	/* the table, schema and name unquoted */
	dbm_op op;
	json_t *newo;		/* column -> value of the new row (borrowed) */
	json_t *oldo;		/* column -> value of the old row or key (borrowed) */
	json_t *newfields;	/* Debezium schema fields of newo, or NULL */
	json_t *oldfields;
	bool converge;		/* a snapshot read (op r, DMS load): replays must converge */
	uint64_t lsn;		/* source position if the event carries one, else 0 */
	char *txid;			/* source transaction, for grouping, or NULL */
	json_t *dms_control; /* DMS control record data (borrowed), or NULL */
	const char *message_prefix;
	const char *message_content;
} dbm_event;

typedef struct
{
	const char *binary_mode; /* how bytes arrive without a schema: base64 | hex */
	/* how numeric(p,s) strings arrive without a schema: "precise" (base64 of
	 * the unscaled value), "string" (the digits), or NULL: told apart by
	 * their shape, an error when they could be either */
	const char *decimal_mode;
	const char *dms_before;	 /* DMS before-image attribute name */
	bool raw;				 /* values are PostgreSQL text already (dbm lines) */
} dbm_decode_opts;

/* Classify and take apart one message (a JSON value; NULL is a Kafka
 * tombstone). false with err filled when malformed. Free with
 * dbm_event_clear. */
bool dbm_decode_event(json_t *msg, const dbm_decode_opts *o, dbm_event *ev,
					  char *err, size_t errlen);
void dbm_event_clear(dbm_event *ev);

/*
 * Convert the JSON values of a row to PostgreSQL text for the columns of a
 * target relation (built by dbm_apply_target_rel). Columns the row does not
 * carry are DBM_VAL_UNCHANGED. vals has r->ncols entries and points into
 * arena (reset first). false with err naming the column on a value that
 * does not fit, a column the target lacks, or a schema type not known.
 */
bool dbm_decode_row(const dbm_srcrel *r, json_t *row, json_t *fields,
					const dbm_decode_opts *o, dbm_val *vals, dbm_buf *arena,
					char *err, size_t errlen);

/*
 * Parse one message's JSON text. A Debezium envelope with a schema
 * ({"schema":...,"payload":...}) has its schema looked up in a cache by
 * its text, so a schema repeated by every event is parsed once. *out is a
 * new reference (json null for an empty message: a tombstone). false with
 * err filled when malformed.
 */
typedef struct dbm_schema_cache dbm_schema_cache;
dbm_schema_cache *dbm_schema_cache_new(void);
void dbm_schema_cache_free(dbm_schema_cache *c);
bool dbm_decode_parse(dbm_schema_cache *c, const char *text, size_t len, json_t **out,
					  char *err, size_t errlen);

/* Exposed for unit tests. */
bool dbm_decimal_from_base64(const char *b64, int scale, dbm_buf *out);
void dbm_date_from_days(int64_t days, dbm_buf *out);
void dbm_timestamp_from_us(int64_t us, dbm_buf *out);
void dbm_time_from_us(int64_t us, dbm_buf *out);
bool dbm_base64_decode(const char *in, size_t len, dbm_buf *out);
void dbm_double_text(double d, dbm_buf *out);

#endif
