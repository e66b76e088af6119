/* hash.h - the fingerprint arithmetic of dbm-hash: row hashes, bucket
 * digests summed modulo 2^128, and COPY text field handling. */
#ifndef DBM_HASH_H
#define DBM_HASH_H

#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBM_DEFAULT_BUCKETS 4096
#define DBM_MAX_BUCKETS (1 << 20)

typedef struct
{
	uint64_t hi;
	uint64_t lo;
} dbm_h128;

/* XXH3-128 of a canonical row text (one COPY text line, no newline). */
dbm_h128 dbm_hash_row(const char *row, size_t len);
/* XXH3-64 of a key text, modulo nbuckets. */
uint32_t dbm_hash_bucket(const char *key, size_t len, uint32_t nbuckets);
/* a += b modulo 2^128 */
void dbm_h128_add(dbm_h128 *a, dbm_h128 b);
bool dbm_h128_eq(dbm_h128 a, dbm_h128 b);
/* 32 lower-case hex digits, high half first; out has room for 33 bytes. */
void dbm_h128_hex(dbm_h128 h, char out[33]);
bool dbm_h128_parse(const char *hex, dbm_h128 *out);

/* Per-bucket row counts and digests of one table (or one piece of it). */
typedef struct
{
	uint32_t n;
	uint64_t *rows;
	dbm_h128 *sum;
} dbm_buckets;

dbm_buckets *dbm_buckets_new(uint32_t n);
void dbm_buckets_free(dbm_buckets *b);
void dbm_buckets_merge(dbm_buckets *into, const dbm_buckets *from);
/* The table digest: count and sum over all buckets. */
uint64_t dbm_buckets_total(const dbm_buckets *b, dbm_h128 *sum);

/*
 * COPY text format (the format of COPY ... TO STDOUT without options):
 * fields separated by tabs, \N for NULL, backslash escapes for \b \f \n \r
 * \t \v and \\. A raw tab therefore always separates fields.
 *
 * dbm_copy_fields: find the start and length of each field of a line.
 * Returns the number of fields found (at most max).
 */
int dbm_copy_fields(const char *line, size_t len, const char **start,
					size_t *flen, int max);
/* Decode one field into out (reset first). Returns false for \N (NULL). */
bool dbm_copy_unescape(const char *f, size_t len, dbm_buf *out);
/* Encode a value (NULL pointer for SQL NULL) as COPY text, appending. */
void dbm_copy_escape(const char *v, size_t len, dbm_buf *out);

#endif
