/* hashrun.c - parallel snapshot readers for dbm-hash and dbm-diff.
 *
 * One coordinator connection opens a REPEATABLE READ READ ONLY transaction
 * and exports its snapshot (or imports the user's); every other reader
 * imports it, so all tables and all pieces are read as of one instant.
 * Work is a queue of pieces (a heap relation, or a ctid range of one) in
 * table order; each table's pieces merge into its buckets and tables are
 * handed to the caller in table order. */
#define _POSIX_C_SOURCE 200809L
#include "hashrun.h"

#include "log.h"
#include "pg.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct
{
	int table;
	int rel;
	long first; /* first block, or -1 for the whole relation */
	long last;	/* block after the range, or -1 for open-ended */
} piece;

typedef struct
{
	dbm_table_result r;
	int pieces_left;
	int64_t started;
	bool skip;
	bool done;
	const uint8_t *want;
	int spill_cap;
} tstate;

struct dbm_hashrun
{
	dbm_hash_opts o;
	PGconn *coord;
	char *snapshot;
	dbm_table *tables;
	int ntables;
	tstate *ts;

	piece *pieces;
	int npieces;
	int next_piece; /* under lock */
	int next_emit;	/* under lock */

	pthread_mutex_t lock;
	pthread_cond_t emitted; /* next_emit moved */
	pthread_t *threads;
	int nthreads;
	atomic_int failed;
	atomic_int running;
	atomic_uint_fast64_t rows;
	atomic_uint_fast64_t bytes;
	atomic_int tables_done;
	dbm_table_cb tcb;
	dbm_row_cb rcb;
	void *ctx;
};

typedef struct
{
	dbm_hashrun *h;
	int id;
} worker_arg;

static bool
begin_snapshot(PGconn *conn, const char *snapshot)
{
	if (!dbm_pg_command(conn,
						"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
						"could not start the snapshot transaction"))
		return false;
	if (snapshot)
	{
		char *lit = PQescapeLiteral(conn, snapshot, strlen(snapshot));
		char *sql = xasprintf("SET TRANSACTION SNAPSHOT %s", lit);
		bool ok = dbm_pg_command(conn, sql, "could not import the snapshot");
		free(sql);
		PQfreemem(lit);
		return ok;
	}
	return true;
}

dbm_hashrun *
dbm_hashrun_open(const dbm_hash_opts *o)
{
	dbm_hashrun *h = xcalloc(1, sizeof(*h));
	PGresult *res;

	h->o = *o;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->emitted, NULL);
	if ((h->coord = dbm_pg_connect(o->conninfo, o->appname)) == NULL)
		goto out_fail;
	if (!begin_snapshot(h->coord, o->snapshot))
		goto out_fail;
	if (o->snapshot)
		h->snapshot = xstrdup(o->snapshot);
	else
	{
		res = PQexec(h->coord, "SELECT pg_catalog.pg_export_snapshot()");
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			h->snapshot = xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		/* a standby cannot export; one reader still sees one snapshot */
		if (h->snapshot == NULL)
		{
			PQclear(PQexec(h->coord, "ROLLBACK"));
			if (!begin_snapshot(h->coord, NULL))
				goto out_fail;
			h->o.jobs = 1;
		}
	}
	if (!dbm_catalog_tables(h->coord, o->filter, &h->tables, &h->ntables,
							NULL))
		goto out_fail;
	h->ts = xcalloc((size_t) h->ntables + 1, sizeof(tstate));
	return h;

out_fail:
	dbm_hashrun_free(h);
	return NULL;
}

dbm_table *
dbm_hashrun_tables(dbm_hashrun *h, int *n)
{
	*n = h->ntables;
	return h->tables;
}

const char *
dbm_hashrun_snapshot(dbm_hashrun *h)
{
	return h->snapshot;
}

void
dbm_hashrun_skip(dbm_hashrun *h, int table)
{
	h->ts[table].skip = true;
}

void
dbm_hashrun_want(dbm_hashrun *h, int table, const uint8_t *bits)
{
	h->ts[table].want = bits;
}

static void
plan_pieces(dbm_hashrun *h)
{
	int cap = 16;

	h->pieces = xmalloc(sizeof(piece) * (size_t) cap);
	for (int t = 0; t < h->ntables; t++)
	{
		if (h->ts[t].skip)
			continue;
		dbm_table *tab = &h->tables[t];
		for (int r = 0; r < tab->nrels; r++)
		{
			long pages = tab->rels[r].pages;
			long step = h->o.split_pages > 0 ? h->o.split_pages
											 : DBM_DEFAULT_SPLIT_PAGES;
			bool split = h->o.jobs > 1 && pages > step;
			long first = split ? 0 : -1;

			do
			{
				if (h->npieces == cap)
				{
					cap *= 2;
					h->pieces = xrealloc(h->pieces, sizeof(piece) * (size_t) cap);
				}
				piece *p = &h->pieces[h->npieces++];
				p->table = t;
				p->rel = r;
				p->first = first;
				/* the last range is open-ended: the relation may have grown
				 * since its size was read */
				p->last = (split && first + step < pages) ? first + step : -1;
				first = p->last;
				h->ts[t].pieces_left++;
			} while (first > 0);
		}
	}
}

FILE *
dbm_spill_open(void)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/dbm-spill-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	FILE *f = NULL;

	if (fd < 0)
		dbm_log_error("could not create a temporary file \"%s\": %m", path);
	else
	{
		unlink(path);
		f = fdopen(fd, "w+");
		if (f)
			setvbuf(f, NULL, _IOFBF, 1 << 16);
	}
	free(path);
	return f;
}

bool
dbm_spill_write(FILE *f, uint32_t bucket, dbm_h128 h, const char *key,
			uint32_t keylen)
{
	/* one record, one fwrite: bucket, row hash, key length, key */
	char head[sizeof(bucket) + sizeof(h) + sizeof(keylen)];

	memcpy(head, &bucket, sizeof(bucket));
	memcpy(head + sizeof(bucket), &h, sizeof(h));
	memcpy(head + sizeof(bucket) + sizeof(h), &keylen, sizeof(keylen));
	return fwrite(head, sizeof(head), 1, f) == 1 &&
		   (keylen == 0 || fwrite(key, keylen, 1, f) == 1);
}

int
dbm_spill_read(FILE *f, uint32_t *bucket, dbm_h128 *h, dbm_buf *key)
{
	uint32_t keylen;

	if (fread(bucket, sizeof(*bucket), 1, f) != 1)
		return feof(f) ? 0 : -1;
	if (fread(h, sizeof(*h), 1, f) != 1 ||
		fread(&keylen, sizeof(keylen), 1, f) != 1)
		return -1;
	dbm_buf_reset(key);
	dbm_buf_reserve(key, keylen);
	if (keylen && fread(key->data, keylen, 1, f) != 1)
		return -1;
	key->len = keylen;
	key->data[keylen] = '\0';
	return 1;
}

/* Hand finished tables to the caller in order. Called under the lock. */
static void
emit_ready(dbm_hashrun *h)
{
	while (h->next_emit < h->ntables)
	{
		tstate *ts = &h->ts[h->next_emit];
		if (!ts->skip && !ts->done)
			break;
		if (!ts->skip && !atomic_load(&h->failed))
		{
			ts->r.rows = dbm_buckets_total(ts->r.b, &ts->r.hash);
			if (h->tcb && !h->tcb(h->ctx, &ts->r))
				atomic_store(&h->failed, 1);
			dbm_buckets_free(ts->r.b);
			ts->r.b = NULL;
		}
		h->next_emit++;
		pthread_cond_broadcast(&h->emitted);
	}
}

static bool
read_piece(dbm_hashrun *h, PGconn *conn, const piece *p, dbm_buckets *b,
		   FILE *spill, dbm_buf *keybuf)
{
	dbm_table *t = &h->tables[p->table];
	const uint8_t *want = h->ts[p->table].want;
	char *sql;
	PGresult *res;
	char *line;
	int len;
	bool ok = true;
	int maxkey = 0;
	const char *fstart[64];
	size_t flen[64];
	const char **fs = fstart;
	size_t *fl = flen;
	uint64_t nrows = 0, nbytes = 0;
	dbm_buf sbuf; /* row records, written to the spill file in blocks */

	dbm_buf_init(&sbuf);

	for (int k = 0; k < t->nkey; k++)
		if (t->key[k] + 1 > maxkey)
			maxkey = t->key[k] + 1;
	if (maxkey > 64)
	{
		fs = xmalloc(sizeof(char *) * (size_t) maxkey);
		fl = xmalloc(sizeof(size_t) * (size_t) maxkey);
	}

	if (p->first < 0)
		sql = xasprintf("COPY (SELECT %s FROM %s) TO STDOUT", t->select_list,
						t->rels[p->rel].from);
	else if (p->last < 0)
		sql = xasprintf("COPY (SELECT %s FROM %s WHERE ctid >= '(%ld,0)'::tid)"
						" TO STDOUT",
						t->select_list, t->rels[p->rel].from, p->first);
	else
		sql = xasprintf("COPY (SELECT %s FROM %s WHERE ctid >= '(%ld,0)'::tid"
						" AND ctid < '(%ld,0)'::tid) TO STDOUT",
						t->select_list, t->rels[p->rel].from, p->first,
						p->last);
	res = PQexec(conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		dbm_log_error("could not read table %s: %s", t->name,
					  dbm_pg_error(conn));
		PQclear(res);
		ok = false;
		goto out_free_fields;
	}
	PQclear(res);

	while ((len = PQgetCopyData(conn, &line, 0)) > 0)
	{
		size_t n = (size_t) len;
		const char *key = line;
		size_t keylen;
		uint32_t bucket;
		dbm_h128 rh;

		if (n > 0 && line[n - 1] == '\n')
			n--;
		keylen = n;
		if (t->nkey > 0)
		{
			int nf = dbm_copy_fields(line, n, fs, fl, maxkey);
			if (nf < maxkey)
			{
				dbm_log_error("table %s: row with %d fields, expected %d",
							  t->name, nf, t->ncols);
				PQfreemem(line);
				ok = false;
				break;
			}
			if (t->nkey == 1)
			{
				key = fs[t->key[0]];
				keylen = fl[t->key[0]];
			}
			else
			{
				dbm_buf_reset(keybuf);
				for (int k = 0; k < t->nkey; k++)
				{
					if (k)
						dbm_buf_putc(keybuf, '\t');
					dbm_buf_append(keybuf, fs[t->key[k]], fl[t->key[k]]);
				}
				key = keybuf->data;
				keylen = keybuf->len;
			}
		}
		bucket = dbm_hash_bucket(key, keylen, b->n);
		rh = dbm_hash_row(line, n);
		b->rows[bucket]++;
		dbm_h128_add(&b->sum[bucket], rh);
		if (want == NULL || dbm_bit_test(want, bucket))
		{
			if (spill)
			{
				uint32_t kl = (uint32_t) keylen;
				dbm_buf_append(&sbuf, (const char *) &bucket, sizeof(bucket));
				dbm_buf_append(&sbuf, (const char *) &rh, sizeof(rh));
				dbm_buf_append(&sbuf, (const char *) &kl, sizeof(kl));
				dbm_buf_append(&sbuf, key, keylen);
				if (sbuf.len >= (1 << 18))
				{
					if (fwrite(sbuf.data, sbuf.len, 1, spill) != 1)
					{
						dbm_log_error("could not write a temporary file: %m");
						ok = false;
					}
					dbm_buf_reset(&sbuf);
				}
			}
			if (h->rcb)
			{
				pthread_mutex_lock(&h->lock);
				if (!h->rcb(h->ctx, t, bucket, key, keylen, rh))
					ok = false;
				pthread_mutex_unlock(&h->lock);
			}
		}
		PQfreemem(line);
		nrows++;
		nbytes += (uint64_t) len;
		if ((nrows & 0xffff) == 0)
		{
			atomic_fetch_add(&h->rows, nrows);
			atomic_fetch_add(&h->bytes, nbytes);
			nrows = nbytes = 0;
			if (atomic_load(&h->failed))
				ok = false;
		}
		if (!ok)
			break;
	}
	atomic_fetch_add(&h->rows, nrows);
	atomic_fetch_add(&h->bytes, nbytes);
	if (!ok)
		goto out_free_fields;
	if (len == -2)
	{
		dbm_log_error("could not read table %s: %s", t->name,
					  dbm_pg_error(conn));
		ok = false;
		goto out_free_fields;
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		/* a terminated backend can leave two error results: one line */
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ok)
		{
			dbm_log_error("could not read table %s: %s", t->name,
						  dbm_pg_error(conn));
			ok = false;
		}
		PQclear(res);
	}
	if (ok && PQstatus(conn) != CONNECTION_OK)
	{
		dbm_log_error("could not read table %s: connection lost", t->name);
		ok = false;
	}

out_free_fields:
	if (ok && spill && sbuf.len > 0 && fwrite(sbuf.data, sbuf.len, 1, spill) != 1)
	{
		dbm_log_error("could not write a temporary file: %m");
		ok = false;
	}
	dbm_buf_free(&sbuf);
	if (fs != fstart)
	{
		free(fs);
		free(fl);
	}
	return ok;
}

static void *
worker(void *argp)
{
	worker_arg *arg = argp;
	dbm_hashrun *h = arg->h;
	PGconn *conn = h->coord;
	dbm_buf keybuf;

	dbm_buf_init(&keybuf);
	if (arg->id > 0)
	{
		conn = dbm_pg_connect(h->o.conninfo, h->o.appname);
		if (conn == NULL || !begin_snapshot(conn, h->snapshot))
		{
			atomic_store(&h->failed, 1);
			goto out_close;
		}
	}
	while (!atomic_load(&h->failed))
	{
		piece *p;
		tstate *ts;
		FILE *spill = NULL;

		pthread_mutex_lock(&h->lock);
		if (h->next_piece >= h->npieces)
		{
			pthread_mutex_unlock(&h->lock);
			break;
		}
		/* row lines of a table must not mix with another table's: with a
		 * row callback, a table's pieces wait until the previous tables
		 * are done */
		while (h->rcb && h->next_piece < h->npieces &&
			   h->pieces[h->next_piece].table != h->next_emit &&
			   !atomic_load(&h->failed))
		{
			/* timed, so a failure elsewhere is noticed without a signal */
			struct timespec ts_wait;
			clock_gettime(CLOCK_REALTIME, &ts_wait);
			ts_wait.tv_nsec += 100000000L;
			if (ts_wait.tv_nsec >= 1000000000L)
			{
				ts_wait.tv_sec++;
				ts_wait.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&h->emitted, &h->lock, &ts_wait);
		}
		if (atomic_load(&h->failed) || h->next_piece >= h->npieces)
		{
			pthread_mutex_unlock(&h->lock);
			break;
		}
		p = &h->pieces[h->next_piece];
		h->next_piece++;
		ts = &h->ts[p->table];
		if (ts->started == 0)
			ts->started = dbm_now_ms();
		pthread_mutex_unlock(&h->lock);

		dbm_buckets *b = dbm_buckets_new(h->o.buckets);
		if (h->o.spill && (spill = dbm_spill_open()) == NULL)
		{
			atomic_store(&h->failed, 1);
			dbm_buckets_free(b);
			break;
		}
		bool ok = read_piece(h, conn, p, b, spill, &keybuf);

		pthread_mutex_lock(&h->lock);
		if (!ok)
		{
			atomic_store(&h->failed, 1);
			pthread_cond_broadcast(&h->emitted);
			if (spill)
				fclose(spill);
		}
		else
		{
			if (ts->r.b == NULL)
			{
				ts->r.b = b;
				b = NULL;
			}
			else
				dbm_buckets_merge(ts->r.b, b);
			if (spill)
			{
				if (ts->r.nspill == ts->spill_cap)
				{
					ts->spill_cap = ts->spill_cap ? ts->spill_cap * 2 : 4;
					ts->r.spill = xrealloc(ts->r.spill, sizeof(FILE *) *
													 (size_t) ts->spill_cap);
				}
				ts->r.spill[ts->r.nspill++] = spill;
			}
			if (--ts->pieces_left == 0)
			{
				ts->done = true;
				ts->r.ms = dbm_now_ms() - ts->started;
				atomic_fetch_add(&h->tables_done, 1);
				emit_ready(h);
			}
		}
		pthread_mutex_unlock(&h->lock);
		dbm_buckets_free(b);
	}

out_close:
	if (arg->id > 0)
		PQfinish(conn);
	dbm_buf_free(&keybuf);
	free(arg);
	atomic_fetch_sub(&h->running, 1);
	return NULL;
}

bool
dbm_hashrun_start(dbm_hashrun *h, dbm_table_cb tcb, dbm_row_cb rcb, void *ctx)
{
	h->tcb = tcb;
	h->rcb = rcb;
	h->ctx = ctx;
	for (int t = 0; t < h->ntables; t++)
	{
		h->ts[t].r.index = t;
		h->ts[t].r.table = &h->tables[t];
	}
	plan_pieces(h);
	/* tables with nothing to read (none: every table has a relation, but a
	 * partitioned table may have no leaves) are done at once */
	for (int t = 0; t < h->ntables; t++)
		if (!h->ts[t].skip && h->ts[t].pieces_left == 0)
		{
			h->ts[t].done = true;
			h->ts[t].r.b = dbm_buckets_new(h->o.buckets);
			atomic_fetch_add(&h->tables_done, 1);
		}
	pthread_mutex_lock(&h->lock);
	emit_ready(h);
	pthread_mutex_unlock(&h->lock);

	h->nthreads = h->o.jobs < h->npieces ? h->o.jobs : h->npieces;
	if (h->nthreads < 1)
		h->nthreads = 0;
	h->threads = xcalloc((size_t) h->nthreads + 1, sizeof(pthread_t));
	atomic_store(&h->running, h->nthreads);
	for (int i = 0; i < h->nthreads; i++)
	{
		worker_arg *a = xmalloc(sizeof(*a));
		a->h = h;
		a->id = i;
		if (pthread_create(&h->threads[i], NULL, worker, a) != 0)
		{
			dbm_log_error("could not start a reader thread");
			free(a);
			atomic_store(&h->failed, 1);
			atomic_fetch_sub(&h->running, h->nthreads - i);
			h->nthreads = i;
			return false;
		}
	}
	return true;
}

void
dbm_hashrun_progress(dbm_hashrun *h, uint64_t *rows, uint64_t *bytes,
					 int *tables_done)
{
	*rows = atomic_load(&h->rows);
	*bytes = atomic_load(&h->bytes);
	*tables_done = atomic_load(&h->tables_done);
}

bool
dbm_hashrun_finished(dbm_hashrun *h)
{
	return atomic_load(&h->running) == 0;
}

bool
dbm_hashrun_wait(dbm_hashrun *h)
{
	for (int i = 0; i < h->nthreads; i++)
		pthread_join(h->threads[i], NULL);
	h->nthreads = 0;
	pthread_mutex_lock(&h->lock);
	emit_ready(h);
	pthread_mutex_unlock(&h->lock);
	if (!atomic_load(&h->failed) && h->next_emit < h->ntables)
	{
		dbm_log_error("internal error: tables left unread");
		atomic_store(&h->failed, 1);
	}
	return !atomic_load(&h->failed);
}

void
dbm_hashrun_free(dbm_hashrun *h)
{
	if (h == NULL)
		return;
	for (int i = 0; i < h->nthreads; i++)
		pthread_join(h->threads[i], NULL);
	for (int t = 0; h->ts && t < h->ntables; t++)
	{
		dbm_buckets_free(h->ts[t].r.b);
		for (int s = 0; s < h->ts[t].r.nspill; s++)
			fclose(h->ts[t].r.spill[s]);
		free(h->ts[t].r.spill);
	}
	if (h->coord)
		PQfinish(h->coord);
	dbm_tables_free(h->tables, h->ntables);
	free(h->ts);
	free(h->pieces);
	free(h->threads);
	free(h->snapshot);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->emitted);
	free(h);
}
