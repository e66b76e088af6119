/* hash.c - row and bucket hashing with xxHash (XXH3), and COPY text
 * splitting. Bucket digests are sums so they do not depend on row order
 * and merge across parallel readers and hosts. */
#define _POSIX_C_SOURCE 200809L
#include "hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

dbm_h128
dbm_hash_row(const char *row, size_t len)
{
	XXH128_hash_t h = XXH3_128bits(row, len);
	dbm_h128 r = {h.high64, h.low64};
	return r;
}

uint32_t
dbm_hash_bucket(const char *key, size_t len, uint32_t nbuckets)
{
	return (uint32_t) (XXH3_64bits(key, len) % nbuckets);
}

void
dbm_h128_add(dbm_h128 *a, dbm_h128 b)
{
	uint64_t lo = a->lo + b.lo;
	a->hi += b.hi + (lo < a->lo);
	a->lo = lo;
}

bool
dbm_h128_eq(dbm_h128 a, dbm_h128 b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

void
dbm_h128_hex(dbm_h128 h, char out[33])
{
	snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.hi,
			 (unsigned long long) h.lo);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool
dbm_h128_parse(const char *hex, dbm_h128 *out)
{
	uint64_t part[2] = {0, 0};

	if (hex == NULL || strlen(hex) != 32)
		return false;
	for (int i = 0; i < 32; i++)
	{
		int v = hexval(hex[i]);
		if (v < 0)
			return false;
		part[i / 16] = (part[i / 16] << 4) | (uint64_t) v;
	}
	out->hi = part[0];
	out->lo = part[1];
	return true;
}

dbm_buckets *
dbm_buckets_new(uint32_t n)
{
	dbm_buckets *b = xmalloc(sizeof(*b));
	b->n = n;
	b->rows = xcalloc(n, sizeof(uint64_t));
	b->sum = xcalloc(n, sizeof(dbm_h128));
	return b;
}

void
dbm_buckets_free(dbm_buckets *b)
{
	if (b == NULL)
		return;
	free(b->rows);
	free(b->sum);
	free(b);
}

void
dbm_buckets_merge(dbm_buckets *into, const dbm_buckets *from)
{
	for (uint32_t i = 0; i < into->n && i < from->n; i++)
	{
		into->rows[i] += from->rows[i];
		dbm_h128_add(&into->sum[i], from->sum[i]);
	}
}

uint64_t
dbm_buckets_total(const dbm_buckets *b, dbm_h128 *sum)
{
	uint64_t rows = 0;
	dbm_h128 s = {0, 0};
	for (uint32_t i = 0; i < b->n; i++)
	{
		rows += b->rows[i];
		dbm_h128_add(&s, b->sum[i]);
	}
	if (sum)
		*sum = s;
	return rows;
}

int
dbm_copy_fields(const char *line, size_t len, const char **start,
				size_t *flen, int max)
{
	const char *p = line, *end = line + len;
	int n = 0;

	while (n < max)
	{
		const char *tab = memchr(p, '\t', (size_t) (end - p));
		const char *fend = tab ? tab : end;
		start[n] = p;
		flen[n] = (size_t) (fend - p);
		n++;
		if (tab == NULL)
			break;
		p = tab + 1;
	}
	return n;
}

bool
dbm_copy_unescape(const char *f, size_t len, dbm_buf *out)
{
	dbm_buf_reset(out);
	if (len == 2 && f[0] == '\\' && f[1] == 'N')
		return false;
	dbm_buf_reserve(out, len);
	for (size_t i = 0; i < len; i++)
	{
		char c = f[i];
		if (c == '\\' && i + 1 < len)
		{
			char e = f[++i];
			switch (e)
			{
				case 'b': c = '\b'; break;
				case 'f': c = '\f'; break;
				case 'n': c = '\n'; break;
				case 'r': c = '\r'; break;
				case 't': c = '\t'; break;
				case 'v': c = '\v'; break;
				default: c = e; break;
			}
		}
		out->data[out->len++] = c;
	}
	out->data[out->len] = '\0';
	return true;
}

void
dbm_copy_escape(const char *v, size_t len, dbm_buf *out)
{
	if (v == NULL)
	{
		dbm_buf_append(out, "\\N", 2);
		return;
	}
	dbm_buf_reserve(out, len * 2);
	for (size_t i = 0; i < len; i++)
	{
		char c = v[i], e = 0;
		switch (c)
		{
			case '\b': e = 'b'; break;
			case '\f': e = 'f'; break;
			case '\n': e = 'n'; break;
			case '\r': e = 'r'; break;
			case '\t': e = 't'; break;
			case '\v': e = 'v'; break;
			case '\\': e = '\\'; break;
			default: break;
		}
		if (e)
		{
			out->data[out->len++] = '\\';
			out->data[out->len++] = e;
		}
		else
			out->data[out->len++] = c;
	}
	out->data[out->len] = '\0';
}
