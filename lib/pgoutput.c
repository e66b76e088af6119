/* pgoutput.c - pgoutput protocol version 1 parsing. Every read is bounds
 * checked; a short or malformed message sets r->bad instead of reading
 * past the end. */
#define _POSIX_C_SOURCE 200809L
#include "pgoutput.h"

#include "log.h"
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
	/* (a column count beyond the message stops at its end) */
	for (int i = 0; i < rel->ncols && !r->bad; i++)
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

bool
dbm_pgo_frame_parse(const char *buf, size_t len, dbm_pgo_frame *f)
{
	dbm_rd rd;

	memset(f, 0, sizeof(*f));
	if (len == 0)
		return false;
	f->kind = buf[0];
	dbm_rd_init(&rd, buf + 1, len - 1);
	if (f->kind == 'k' && len >= 18)
	{
		/* Primary keepalive: Int64 end of WAL, Int64 time, Byte1 reply */
		f->wal_end = dbm_rd_u64(&rd);
		f->time = (int64_t) dbm_rd_u64(&rd);
		f->reply = dbm_rd_u8(&rd) != 0;
		return true;
	}
	if (f->kind == 'w' && len >= 25)
	{
		/* XLogData: Int64 start, Int64 end of WAL, Int64 time, message */
		f->wal_start = dbm_rd_u64(&rd);
		f->wal_end = dbm_rd_u64(&rd);
		f->time = (int64_t) dbm_rd_u64(&rd);
		f->msg = buf + 25;
		f->len = len - 25;
		return true;
	}
	return false;
}

struct dbm_pgo_decoder
{
	dbm_srcrel **rels; /* by id, in the order they came */
	int nrels;
	uint32_t *trunc; /* a Truncate's relation ids */
	uint32_t trunc_cap;
	dbm_val *oldv, *newv; /* a change's rows */
	int vals_cap;
};

dbm_pgo_decoder *
dbm_pgo_decoder_new(void)
{
	return xcalloc(1, sizeof(dbm_pgo_decoder));
}

void
dbm_pgo_decoder_free(dbm_pgo_decoder *d)
{
	if (d == NULL)
		return;
	for (int i = 0; i < d->nrels; i++)
		dbm_srcrel_free(d->rels[i]);
	free(d->rels);
	free(d->trunc);
	free(d->oldv);
	free(d->newv);
	free(d);
}

dbm_srcrel *
dbm_pgo_rel_find(dbm_pgo_decoder *d, uint32_t id)
{
	for (int i = 0; i < d->nrels; i++)
		if (d->rels[i]->id == id)
			return d->rels[i];
	return NULL;
}

dbm_srcrel *
dbm_pgo_rel_put(dbm_pgo_decoder *d, dbm_srcrel *r)
{
	for (int i = 0; i < d->nrels; i++)
		if (d->rels[i]->id == r->id)
		{
			dbm_srcrel *old = d->rels[i];
			d->rels[i] = r;
			return old;
		}
	d->rels = xrealloc(d->rels, sizeof(dbm_srcrel *) * (size_t) (d->nrels + 1));
	d->rels[d->nrels++] = r;
	return NULL;
}

bool
dbm_pgo_decode(dbm_pgo_decoder *d, const char *msg, size_t len, dbm_pgo_msg *m)
{
	dbm_rd *rd = &m->rd;

	memset(m, 0, sizeof(*m));
	dbm_rd_init(rd, msg, len);
	m->kind = (char) dbm_rd_u8(rd);
	switch (m->kind)
	{
		case 'B': /* Begin: Int64 final LSN, Int64 commit time, Int32 xid */
			m->begin.final_lsn = dbm_rd_u64(rd);
			m->begin.commit_time = (int64_t) dbm_rd_u64(rd);
			m->begin.xid = dbm_rd_u32(rd);
			break;

		case 'O': /* Origin: Int64 origin LSN, String name */
			dbm_rd_u64(rd);
			m->origin = dbm_rd_str(rd);
			break;

		case 'R': /* Relation */
			if ((m->rel = dbm_pgo_relation(rd)) == NULL)
				goto bad;
			break;

		case 'Y': /* Type: the apply maps columns by name, nothing to keep */
			break;

		case 'I': /* Insert: Int32 relid, then the rows */
		case 'U': /* Update: Int32 relid, then the rows */
		case 'D': /* Delete: Int32 relid, then the rows */
		{
			uint32_t id = dbm_rd_u32(rd);
			if ((m->rel = dbm_pgo_rel_find(d, id)) == NULL)
			{
				dbm_log_error("change for relation %u before its Relation message", id);
				return false;
			}
			return true;
		}

		case 'T': /* Truncate: Int32 nrels, Int8 options, Int32 relid[] */
			m->ntrunc = dbm_rd_u32(rd);
			m->trunc_opts = dbm_rd_u8(rd);
			if (rd->bad || m->ntrunc > 100000)
				goto bad;
			if (m->ntrunc >= d->trunc_cap)
			{
				d->trunc_cap = m->ntrunc + 1;
				d->trunc = xrealloc(d->trunc, sizeof(uint32_t) * d->trunc_cap);
			}
			for (uint32_t i = 0; i < m->ntrunc; i++)
				d->trunc[i] = dbm_rd_u32(rd);
			m->trunc_ids = d->trunc;
			break;

		case 'M': /* Message: Int8 flags, Int64 LSN, String prefix, Int32 len, bytes */
			m->msg_flags = dbm_rd_u8(rd);
			m->msg_lsn = dbm_rd_u64(rd);
			m->msg_prefix = dbm_rd_str(rd);
			m->msg_len = dbm_rd_u32(rd);
			m->msg_content = dbm_rd_bytes(rd, m->msg_len);
			break;

		case 'C': /* Commit: Int8 flags, Int64 commit LSN, Int64 end LSN, Int64 time */
			dbm_rd_u8(rd);
			m->commit.commit_lsn = dbm_rd_u64(rd);
			m->commit.end_lsn = dbm_rd_u64(rd);
			m->commit.commit_time = (int64_t) dbm_rd_u64(rd);
			break;

		default:
			dbm_log_error("unknown pgoutput message type '%c'", m->kind);
			return false;
	}
	if (rd->bad)
		goto bad;
	return true;

bad:
	dbm_log_error("malformed pgoutput message '%c' from the source", m->kind);
	return false;
}

bool
dbm_pgo_decode_change(dbm_pgo_decoder *d, dbm_pgo_msg *m, dbm_change *ch)
{
	dbm_rd *rd = &m->rd;
	const dbm_srcrel *r = m->rel;
	char tag;

	memset(ch, 0, sizeof(*ch));
	if (r->ncols >= d->vals_cap)
	{
		d->vals_cap = r->ncols + 1;
		d->oldv = xrealloc(d->oldv, sizeof(dbm_val) * (size_t) d->vals_cap);
		d->newv = xrealloc(d->newv, sizeof(dbm_val) * (size_t) d->vals_cap);
	}
	/* Insert: 'N' TupleData; Update: ['K' key | 'O' old row TupleData],
	 * 'N' TupleData; Delete: 'K' | 'O', TupleData */
	tag = (char) dbm_rd_u8(rd);
	if (tag == 'K' || tag == 'O')
	{
		if (!dbm_pgo_tuple(rd, r->ncols, d->oldv))
			goto bad;
		ch->oldv = d->oldv;
		ch->old_is_key = tag == 'K';
		if (m->kind == 'U')
			tag = (char) dbm_rd_u8(rd);
	}
	if (m->kind != 'D')
	{
		if (tag != 'N' || !dbm_pgo_tuple(rd, r->ncols, d->newv))
			goto bad;
		ch->newv = d->newv;
	}
	else if (ch->oldv == NULL)
		goto bad; /* a delete names the row it deletes */
	if (rd->bad)
		goto bad;
	ch->op = (dbm_op) m->kind;
	ch->rel = m->rel;
	return true;

bad:
	dbm_log_error("malformed pgoutput message '%c' from the source", m->kind);
	return false;
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
