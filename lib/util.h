/* util.h - memory helpers that never return NULL, a growable string buffer,
 * and strict number parsing. */
#ifndef DBM_UTIL_H
#define DBM_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBM_VERSION "0.1.0"

/* Allocation helpers: exit(2) with a message on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Formatted allocation; the caller frees the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated. */
typedef struct
{
	char *data;
	size_t len;
	size_t cap;
} dbm_buf;

void dbm_buf_init(dbm_buf *b);
void dbm_buf_free(dbm_buf *b);	/* accepts an initialised empty buffer */
void dbm_buf_reset(dbm_buf *b);
void dbm_buf_reserve(dbm_buf *b, size_t extra);
void dbm_buf_append(dbm_buf *b, const char *s, size_t n);
void dbm_buf_puts(dbm_buf *b, const char *s);
void dbm_buf_putc(dbm_buf *b, char c);
/* Append v in decimal, zero-padded to at least width digits. */
void dbm_buf_put_int(dbm_buf *b, int64_t v, int width);
void dbm_buf_printf(dbm_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Parse a whole string as a base-10 integer within [min, max]. */
bool dbm_parse_long(const char *s, long min, long max, long *out);
/* Parse a non-negative decimal number of seconds (e.g. "0.5"). */
bool dbm_parse_seconds(const char *s, double *out);
/* Parse a size as PostgreSQL writes them: a whole number, optionally
 * followed by B, kB, MB, GB or TB (powers of 1024); at least min bytes. */
bool dbm_parse_size(const char *s, int64_t min, int64_t *out);

/* Milliseconds from a monotonic clock. */
int64_t dbm_now_ms(void);
/* Sleep for the given seconds; returns early if *stop becomes non-zero. */
void dbm_sleep(double seconds, volatile int *stop);

#endif
