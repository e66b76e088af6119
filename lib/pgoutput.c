/* pgoutput.c - pgoutput protocol version 1 parsing. Every read is bounds
 * checked; a short or malformed message sets r->bad instead of reading
 * past the end. */
#define _POSIX_C_SOURCE 200809L
#include "pgoutput.h"

#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dbm_rd_init(dbm_rd *r, const char *p, size_t len)
{
	r->p = p;
	r->end = p + len;
	r->bad = false;
}

static bool
need(dbm_rd *r, size_t n)
{
	if (r->bad || (size_t) (r->end - r->p) < n)
	{
		r->bad = true;
		return false;
	}
	return true;
}

uint8_t
dbm_rd_u8(dbm_rd *r)
{
	if (!need(r, 1))
		return 0;
	return (uint8_t) *r->p++;
}

uint16_t
dbm_rd_u16(dbm_rd *r)
{
	const unsigned char *p = (const unsigned char *) r->p;
	if (!need(r, 2))
		return 0;
	r->p += 2;
	return (uint16_t) ((p[0] << 8) | p[1]);
}

uint32_t
dbm_rd_u32(dbm_rd *r)
{
	const unsigned char *p = (const unsigned char *) r->p;
	if (!need(r, 4))
		return 0;
	r->p += 4;
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		   ((uint32_t) p[2] << 8) | p[3];
}

uint64_t
dbm_rd_u64(dbm_rd *r)
{
	uint64_t hi = dbm_rd_u32(r);
	return (hi << 32) | dbm_rd_u32(r);
}

const char *
dbm_rd_str(dbm_rd *r)
{
	const char *s = r->p;
	const char *nul;

	if (r->bad || (nul = memchr(r->p, '\0', (size_t) (r->end - r->p))) == NULL)
	{
		r->bad = true;
		return "";
	}
	r->p = nul + 1;
	return s;
}

const char *
dbm_rd_bytes(dbm_rd *r, uint32_t n)
{
	const char *s = r->p;
	if (!need(r, n))
		return NULL;
	r->p += n;
	return s;
}

void
dbm_put_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xff);
		v >>= 8;
	}
}

static char *
quote_ident_like_format(const char *s)
{
	/* format('%I') quotes unless the name is lower-case letters, digits
	 * and underscores not starting with a digit; keywords are not known
	 * here, so the apply engine takes the canonical name from the target
	 * catalog when it maps the relation. */
	bool plain = (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_';
	dbm_buf b;

	for (const char *p = s; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
	if (plain)
		return xstrdup(s);
	dbm_buf_init(&b);
	dbm_buf_putc(&b, '"');
	for (const char *p = s; *p; p++)
	{
		if (*p == '"')
			dbm_buf_putc(&b, '"');
		dbm_buf_putc(&b, *p);
	}
	dbm_buf_putc(&b, '"');
	return b.data;
}

dbm_srcrel *
dbm_pgo_relation(dbm_rd *r)
{
	dbm_srcrel *rel = xcalloc(1, sizeof(*rel));
	char *qn, *qr;

	/* Relation: Int32 relid, String nspname, String relname,
	 * Int8 replica identity, Int16 ncols, then per column:
	 * Int8 flags (1 = part of the key), String name, Int32 type OID,
	 * Int32 typmod */
	rel->id = dbm_rd_u32(r);
	rel->nsp = xstrdup(dbm_rd_str(r));
	rel->name = xstrdup(dbm_rd_str(r));
	rel->ident = (char) dbm_rd_u8(r);
	rel->ncols = dbm_rd_u16(r);
	if (r->bad)
		rel->ncols = 0;
	rel->cols = xcalloc((size_t) rel->ncols + 1, sizeof(char *));
	rel->key = xcalloc((size_t) rel->ncols + 1, sizeof(bool));
	rel->types = xcalloc((size_t) rel->ncols + 1, sizeof(uint32_t));
	rel->typmods = xcalloc((size_t) rel->ncols + 1, sizeof(int32_t));
	for (int i = 0; i < rel->ncols; i++)
	{
		rel->key[i] = (dbm_rd_u8(r) & 1) != 0;
		rel->cols[i] = xstrdup(dbm_rd_str(r));
		rel->types[i] = dbm_rd_u32(r);
		rel->typmods[i] = (int32_t) dbm_rd_u32(r);
	}
	qn = quote_ident_like_format(rel->nsp);
	qr = quote_ident_like_format(rel->name);
	rel->qname = xasprintf("%s.%s", qn, qr);
	free(qn);
	free(qr);
	if (r->bad)
	{
		dbm_srcrel_free(rel);
		return NULL;
	}
	return rel;
}

bool
dbm_pgo_tuple(dbm_rd *r, int ncols, dbm_val *vals)
{
	/* TupleData: Int16 ncols, then per column a kind byte:
	 * 'n' NULL, 'u' unchanged TOAST, 't' text (Int32 len, bytes),
	 * 'b' binary (not requested by this client) */
	int n = dbm_rd_u16(r);

	if (r->bad || n != ncols)
		return false;
	for (int i = 0; i < n; i++)
	{
		char kind = (char) dbm_rd_u8(r);
		vals[i].data = NULL;
		vals[i].len = 0;
		switch (kind)
		{
			case 'n': vals[i].kind = DBM_VAL_NULL; break;
			case 'u': vals[i].kind = DBM_VAL_UNCHANGED; break;
			case 't':
				vals[i].kind = DBM_VAL_TEXT;
				vals[i].len = dbm_rd_u32(r);
				vals[i].data = dbm_rd_bytes(r, vals[i].len);
				break;
			default: r->bad = true; break;
		}
		if (r->bad)
			return false;
	}
	return true;
}

void
dbm_srcrel_free(dbm_srcrel *rel)
{
	if (rel == NULL)
		return;
	for (int i = 0; i < rel->ncols; i++)
	{
		free(rel->cols[i]);
		if (rel->tnames)
			free(rel->tnames[i]);
	}
	free(rel->tnames);
	free(rel->cols);
	free(rel->key);
	free(rel->types);
	free(rel->typmods);
	free(rel->nsp);
	free(rel->name);
	free(rel->qname);
	free(rel);
}

void
dbm_lsn_format(uint64_t lsn, char out[32])
{
	snprintf(out, 32, "%X/%X", (unsigned) (lsn >> 32), (unsigned) lsn);
}

bool
dbm_lsn_parse(const char *s, uint64_t *lsn)
{
	unsigned hi, lo;
	int n = 0;

	if (s == NULL || sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return false;
	*lsn = ((uint64_t) hi << 32) | lo;
	return true;
}
