/* evapply.c - from decoded events to the apply engine.
 *
 * Each table named by an event is described once from the target catalog
 * (its columns and types drive the conversion of schema-less values), then
 * every event becomes one normalized change.  A logical message with prefix
 * "dbm" is a barrier of dbm-freeze or dbm-rollback: its row goes into the
 * target's <schema>.barrier in the open transaction, after what came
 * before it, which is what dbm-switch waits for. */
#define _POSIX_C_SOURCE 200809L
#include "evapply.h"

#include "jsonl.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
	int64_t id;
	char *kind;
	char *where;
} heldbar;

typedef struct
{
	char *nsp, *table;
	dbm_srcrel *rel;
} relent;

struct dbm_evapply
{
	dbm_apply *ap;
	dbm_decode_opts o;
	const char *schema;
	bool print;
	relent *rels;
	int nrels;
	dbm_buf arena_new, arena_old;
	dbm_buf msgbuf;
	uint64_t changes, skipped;
	bool hold;		 /* barriers wait for dbm_evapply_release */
	heldbar *held;
	int nheld;
};

dbm_evapply *
dbm_evapply_new(dbm_apply *ap, const dbm_decode_opts *o, const char *schema, bool print)
{
	dbm_evapply *e = xcalloc(1, sizeof(*e));
	e->ap = ap;
	e->print = print;
	e->o = *o;
	e->schema = schema;
	dbm_buf_init(&e->arena_new);
	dbm_buf_init(&e->arena_old);
	dbm_buf_init(&e->msgbuf);
	return e;
}

void
dbm_evapply_detach(dbm_evapply *e)
{
	if (e)
		e->ap = NULL;
}

void
dbm_evapply_free(dbm_evapply *e)
{
	if (e == NULL)
		return;
	for (int i = 0; i < e->nrels; i++)
	{
		if (e->ap && !e->print)
			dbm_apply_unmap(e->ap, e->rels[i].rel);
		dbm_srcrel_free(e->rels[i].rel);
		free(e->rels[i].nsp);
		free(e->rels[i].table);
	}
	free(e->rels);
	for (int i = 0; i < e->nheld; i++)
	{
		free(e->held[i].kind);
		free(e->held[i].where);
	}
	free(e->held);
	dbm_buf_free(&e->arena_new);
	dbm_buf_free(&e->arena_old);
	dbm_buf_free(&e->msgbuf);
	free(e);
}

void
dbm_evapply_counts(dbm_evapply *e, uint64_t *changes, uint64_t *skipped)
{
	*changes = e->changes;
	*skipped = e->skipped;
}

/* Without a target (printing), a relation made of the event's columns. */
static dbm_srcrel *
rel_from_event(const dbm_event *ev)
{
	dbm_srcrel *r = xcalloc(1, sizeof(*r));
	json_t *objs[2] = {ev->newo, ev->oldo};
	int cap = 16;
	dbm_buf q;

	r->nsp = xstrdup(ev->nsp);
	r->name = xstrdup(ev->table);
	r->cols = xcalloc((size_t) cap, sizeof(char *));
	for (int o = 0; o < 2; o++)
	{
		const char *k;
		json_t *v;
		if (!json_is_object(objs[o]))
			continue;
		json_object_foreach(objs[o], k, v)
		{
			bool have = false;
			(void) v;
			for (int i = 0; i < r->ncols && !have; i++)
				have = strcmp(r->cols[i], k) == 0;
			if (have)
				continue;
			if (r->ncols + 1 >= cap)
			{
				cap *= 2;
				r->cols = xrealloc(r->cols, sizeof(char *) * (size_t) cap);
			}
			r->cols[r->ncols++] = xstrdup(k);
		}
	}
	r->key = xcalloc((size_t) r->ncols + 1, sizeof(bool));
	r->types = xcalloc((size_t) r->ncols + 1, sizeof(uint32_t));
	r->typmods = xcalloc((size_t) r->ncols + 1, sizeof(int32_t));
	r->ident = 'f';
	dbm_buf_init(&q);
	dbm_buf_printf(&q, "%s.%s", r->nsp, r->name);
	r->qname = q.data;
	return r;
}

static dbm_srcrel *
get_rel(dbm_evapply *e, const dbm_event *ev)
{
	dbm_srcrel *r;

	for (int i = 0; i < e->nrels; i++)
		if (strcmp(e->rels[i].nsp, ev->nsp) == 0 && strcmp(e->rels[i].table, ev->table) == 0)
			return e->rels[i].rel;
	if ((r = dbm_apply_target_rel(e->ap, ev->nsp, ev->table)) == NULL)
		return NULL;
	if (!e->print && !dbm_apply_map(e->ap, r))
	{
		dbm_srcrel_free(r);
		return NULL;
	}
	e->rels = xrealloc(e->rels, sizeof(relent) * (size_t) (e->nrels + 1));
	e->rels[e->nrels].nsp = xstrdup(ev->nsp);
	e->rels[e->nrels].table = xstrdup(ev->table);
	e->rels[e->nrels].rel = r;
	e->nrels++;
	return r;
}

static json_t *
vals_json(const dbm_srcrel *r, const dbm_val *v, bool key_only)
{
	json_t *o = json_object();
	for (int i = 0; i < r->ncols; i++)
	{
		if ((key_only && !r->key[i]) || v[i].kind == DBM_VAL_UNCHANGED)
			continue;
		json_object_set_new(o, r->cols[i],
							v[i].kind == DBM_VAL_NULL ? json_null()
													  : json_stringn(v[i].data, v[i].len));
	}
	return o;
}

static bool
print_change(const dbm_change *c, const dbm_event *ev)
{
	static const char *ops[] = {['I'] = "insert", ['U'] = "update", ['D'] = "delete"};
	json_t *o = json_pack("{s:s,s:s,s:s}", "type", "change", "op", ops[c->op], "table",
						  c->rel->qname);
	const dbm_val *keysrc = c->oldv ? c->oldv : c->newv;

	if (ev->txid)
		json_object_set_new(o, "xid", json_string(ev->txid));
	json_object_set_new(o, "key", vals_json(c->rel, keysrc, true));
	if (c->newv)
		json_object_set_new(o, "new", vals_json(c->rel, c->newv, false));
	if (c->oldv)
		json_object_set_new(o, "old", vals_json(c->rel, c->oldv, false));
	return dbm_jsonl_print(o);
}

/* AWS DMS control records are logged and skipped, unless they announce a
 * column the target lacks. */
static bool
dms_control(dbm_evapply *e, dbm_event *ev, const char *where)
{
	json_t *cols = ev->dms_control ? json_object_get(ev->dms_control, "columns") : NULL;
	dbm_srcrel *r;

	if (ev->table && e->ap && json_is_object(cols) && json_object_size(cols) > 0)
	{
		const char *k;
		json_t *v;
		if ((r = dbm_apply_target_rel(e->ap, ev->nsp, ev->table)) == NULL)
			return false;
		json_object_foreach(cols, k, v)
		{
			bool have = false;
			(void) v;
			for (int i = 0; i < r->ncols && !have; i++)
				have = strcmp(r->cols[i], k) == 0;
			if (!have)
			{
				dbm_log_error("%s: AWS DMS control record announces column \"%s\" of %s,"
							  " which the target lacks",
							  where, k, r->qname);
				dbm_srcrel_free(r);
				return false;
			}
		}
		dbm_srcrel_free(r);
	}
	dbm_log_info("%s: skipped an AWS DMS control record%s%s%s%s", where,
				 ev->table ? " for " : "", ev->nsp && ev->table ? ev->nsp : "",
				 ev->nsp && ev->table ? "." : "", ev->table ? ev->table : "");
	return true;
}

/* ---- logical messages ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
hex_decode(const char *in, size_t len, dbm_buf *out)
{
	dbm_buf_reset(out);
	if (len % 2 != 0)
		return false;
	for (size_t i = 0; i < len; i += 2)
	{
		int hi = hexval(in[i]), lo = hexval(in[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		dbm_buf_putc(out, (char) (hi << 4 | lo));
	}
	return true;
}

/* The content of a Debezium message as bytes: the connector sends bytes,
 * which JsonConverter writes in base64, or a string in base64 or hex as
 * binary.handling.mode says; first is how --binary-mode says schema-less
 * bytes arrive. */
static bool
content_bytes(const char *c, bool hex_first, bool first, dbm_buf *out)
{
	size_t len = strlen(c);
	return (hex_first == first) ? hex_decode(c, len, out) : dbm_base64_decode(c, len, out);
}

/* A barrier: {"barrier": N, "kind": K}, N > 0 and K a non-empty string. */
static bool
parse_barrier(const char *text, size_t len, int64_t *id, const char **kind, json_t **o)
{
	json_t *b, *k;

	*o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	b = json_object_get(*o, "barrier");
	k = json_object_get(*o, "kind");
	if (json_is_integer(b) && json_integer_value(b) > 0 && json_is_string(k) &&
		json_string_length(k) > 0)
	{
		*id = (int64_t) json_integer_value(b);
		*kind = json_string_value(k);
		return true;
	}
	json_decref(*o);
	*o = NULL;
	return false;
}

static bool
queue_barrier(dbm_evapply *e, int64_t id, const char *kind, const char *where)
{
	if (e->hold)
	{
		e->held = xrealloc(e->held, sizeof(heldbar) * (size_t) (e->nheld + 1));
		e->held[e->nheld].id = id;
		e->held[e->nheld].kind = xstrdup(kind);
		e->held[e->nheld].where = xstrdup(where);
		e->nheld++;
		return true;
	}
	return dbm_apply_barrier(e->ap, id, kind, where);
}

/* A logical message (Debezium op m, a dbm message line): prefix "dbm" is a
 * barrier, applied as its row; any other prefix is skipped.  Printing
 * hands it on as a message line with its content as text. */
static bool
message(dbm_evapply *e, const dbm_event *ev, const char *where)
{
	const char *content = ev->message_content;
	const char *text = content;
	size_t len = content ? strlen(content) : 0;
	bool dbz = ev->format && strcmp(ev->format, "debezium") == 0;
	bool hex_first = e->o.binary_mode && strcmp(e->o.binary_mode, "hex") == 0;
	bool is_dbm = ev->message_prefix && strcmp(ev->message_prefix, "dbm") == 0;
	bool ok = true;
	int64_t id = 0;
	const char *kind = NULL;
	json_t *bar = NULL;

	if (dbz && content)
	{
		/* bytes: either encoding may be the one, a barrier says which */
		text = NULL;
		for (int i = 0; i < 2 && text == NULL; i++)
			if (content_bytes(content, hex_first, i == 0, &e->msgbuf) &&
				(!is_dbm || parse_barrier(e->msgbuf.data, e->msgbuf.len, &id, &kind, &bar)))
			{
				text = e->msgbuf.data ? e->msgbuf.data : "";
				len = e->msgbuf.len;
			}
	}
	else if (is_dbm && content)
		parse_barrier(content, len, &id, &kind, &bar);
	if (is_dbm && bar == NULL)
	{
		dbm_log_error("%s: malformed barrier message (prefix \"dbm\"): expected content"
					  " {\"barrier\": ID, \"kind\": KIND}",
					  where);
		return false;
	}
	if (e->print)
	{
		/* content as text, null when it is not UTF-8 (as the slot path) */
		json_t *ct = text ? json_stringn(text, len) : NULL;
		ok = dbm_jsonl_print(json_pack("{s:s,s:s?,s:o}", "type", "message", "prefix",
									   ev->message_prefix, "content", ct ? ct : json_null()));
	}
	else if (is_dbm)
		ok = queue_barrier(e, id, kind, where);
	json_decref(bar);
	return ok;
}

void
dbm_evapply_hold_barriers(dbm_evapply *e)
{
	e->hold = true;
}

int
dbm_evapply_held(const dbm_evapply *e)
{
	return e->nheld;
}

bool
dbm_evapply_release(dbm_evapply *e)
{
	bool ok = true;

	for (int i = 0; i < e->nheld; i++)
	{
		if (ok)
			ok = dbm_apply_barrier(e->ap, e->held[i].id, e->held[i].kind, e->held[i].where);
		free(e->held[i].kind);
		free(e->held[i].where);
	}
	e->nheld = 0;
	return ok;
}

bool
dbm_evapply_event(dbm_evapply *e, dbm_event *ev, const char *where)
{
	dbm_srcrel *r, *own = NULL;
	dbm_val *newv = NULL, *oldv = NULL;
	char err[512];
	bool ok = false;

	switch (ev->kind)
	{
		case DBM_EV_SKIP:
			e->skipped++;
			if (ev->format && strcmp(ev->format, "dms") == 0)
				return dms_control(e, ev, where);
			return true;
		case DBM_EV_COMMIT:
			return true;
		case DBM_EV_MESSAGE:
			return message(e, ev, where);
		case DBM_EV_TRUNCATE:
		case DBM_EV_CHANGE:
			break;
	}
	/* the toolkit's own state never travels; its barrier does */
	if (strcmp(ev->nsp, e->schema) == 0 && strcmp(ev->table, "barrier") != 0)
	{
		e->skipped++;
		return true;
	}
	if (e->ap)
	{
		dbm_apply_set_context(e->ap, where);
		r = get_rel(e, ev);
		dbm_apply_set_context(e->ap, NULL);
	}
	else
		r = own = rel_from_event(ev);
	if (r == NULL)
		return false; /* errors have already been logged */
	if (ev->kind == DBM_EV_TRUNCATE)
	{
		if (!e->print)
			ok = dbm_apply_truncate(e->ap, &r, 1, false, false, where);
		else
			ok = dbm_jsonl_print(json_pack("{s:s,s:s,s:s}", "type", "change", "op", "truncate",
										   "table", r->qname));
		e->changes += ok;
		dbm_srcrel_free(own);
		return ok;
	}

	dbm_decode_opts o = e->o;
	o.raw = strcmp(ev->format, "dbm") == 0;
	if (ev->newo)
	{
		newv = xcalloc((size_t) r->ncols + 1, sizeof(dbm_val));
		if (!dbm_decode_row(r, ev->newo, ev->newfields, &o, newv, &e->arena_new, err,
							sizeof(err)))
			goto out_bad;
	}
	if (ev->oldo)
	{
		oldv = xcalloc((size_t) r->ncols + 1, sizeof(dbm_val));
		if (!dbm_decode_row(r, ev->oldo, ev->oldfields ? ev->oldfields : ev->newfields, &o,
							oldv, &e->arena_old, err, sizeof(err)))
			goto out_bad;
	}
	{
		dbm_change c = {ev->op, r, newv, ev->op == DBM_OP_INSERT ? NULL : oldv, false};
		if (!e->print)
			ok = dbm_apply_change(e->ap, &c, where);
		else
			ok = print_change(&c, ev);
		e->changes += ok;
	}
	goto out;

out_bad:
	dbm_log_error("%s: %s", where, err);
out:
	free(newv);
	free(oldv);
	dbm_srcrel_free(own);
	return ok;
}
