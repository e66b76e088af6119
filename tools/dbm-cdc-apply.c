/* dbm-cdc-apply - apply a change stream to a target database, exactly
 * once: from a PostgreSQL logical replication slot (pgoutput). See
 * dbm-cdc-apply(1).
 *
 * Source transactions stay whole and in commit order; several are grouped
 * into one target transaction, which also writes the stream position. The
 * slot is told a position is flushed only after the target commit, so a
 * kill at any moment loses nothing and applies nothing twice. */
#define _POSIX_C_SOURCE 200809L
#include "apply.h"
#include <librdkafka/rdkafka.h>
#include "evapply.h"
#include "jarena.h"
#include "jsonl.h"
#include "log.h"
#include "pg.h"
#include "secret.h"
#include "pgoutput.h"
#include "util.h"

#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

typedef enum
{
	STOP_NONE,
	STOP_LSN,
	STOP_IDLE,
	STOP_SIGNAL,
	STOP_EOF,
	STOP_ERROR
} stop_reason;

static const char *const stop_name[] = {"none", "lsn", "idle", "signal", "eof", "error"};

typedef struct
{
	/* options */
	const char *source, *target, *slot, *publication, *stream, *schema;
	const char *metrics_file, *skip_origin, *origin_name;
	uint64_t stop_lsn;
	double until_idle;
	long batch_rows, batch_ms;
	double progress_every;
	bool print;
	const char *input;		 /* FILE or "-" instead of a slot */
	const char *kafka;		 /* bootstrap servers instead of a slot */
	const char **topics;
	int ntopics;
	const char *topic_regex, *group;
	const char **kprops;	 /* -X key=value */
	int nkprops;
	const char *dead_letter; /* where undecodable events go, if anywhere */
	dbm_decode_opts dec;
	double reconnect; /* --reconnect: how long to keep trying */

	/* reconnecting after a lost connection */
	bool streamed;		   /* a session got going: later losses are retried */
	bool source_gone;	   /* the source ended the stream with a shutdown */
	bool slot_busy;		   /* the slot is still held (by the lost session) */
	int64_t lost_at;	   /* monotonic ms of the loss, 0 when connected */
	const char *lost_what; /* "source" or "target" */
	int attempts;		   /* sessions tried since */
	double delay;		   /* before the next one */
	dbm_apply_stats done_stats; /* of the sessions before */

	/* connections */
	PGconn *repl;
	dbm_apply *ap;

	/* the slot's decoding state: the relations it described */
	dbm_pgo_decoder *pgo;

	/* the source transaction being received */
	bool in_txn;
	bool skip_txn;
	bool stop_now; /* the stream reached --stop-at-lsn */
	dbm_pgo_begin begin;
	char *origin;

	/* the target batch */
	int batch_txns;
	int64_t batch_started;
	uint64_t batch_end_lsn;
	int64_t batch_commit_time;

	/* positions */
	uint64_t start_lsn;	  /* applied before this run */
	uint64_t flushed_lsn; /* committed on the target, confirmed */
	/* a batch whose COMMIT is sent but not confirmed yet (the apply
	 * overlaps it with the next batch) */
	bool pending;
	uint64_t pend_lsn;
	int64_t pend_time;
	int pend_txns;
	uint64_t server_lsn;  /* the server's end of WAL as last seen */
	int64_t applied_commit_time;
	int64_t last_data;	  /* monotonic ms of the last transaction data */
	int64_t last_feedback;

	/* counters for --print and progress */
	uint64_t printed;
	uint64_t skipped;	   /* events skipped (tombstones, heartbeats, ...) */
	uint64_t txns;		   /* source transactions received */
	uint64_t applied_txns; /* source transactions committed on the target */
	int64_t started;
	int64_t last_progress;
	uint64_t last_progress_rows;
	dbm_buf where;
	const dbm_srcrel *where_rel; /* what where holds */
	const char *where_op;
	uint64_t where_lsn;
	uint32_t where_xid;
} cdc;

static const char *lost_side(cdc *c);

static void
usage(void)
{
	printf("dbm-cdc-apply applies a change stream to a target PostgreSQL database.\n"
		   "\n"
		   "Usage:\n"
		   "  dbm-cdc-apply [OPTION]... --slot=NAME --source=CONNINFO --target=CONNINFO\n"
		   "  dbm-cdc-apply [OPTION]... --slot=NAME --source=CONNINFO --print\n"
		   "  dbm-cdc-apply [OPTION]... --target=CONNINFO FILE|-\n"
		   "  dbm-cdc-apply [OPTION]... --target=CONNINFO --kafka=BROKERS --topic=TOPIC...\n"
		   "\n"
		   "Changes come from a logical replication slot over pgoutput (the slot made\n"
		   "by dbm-snapshot --slot). Source transactions are applied whole and in\n"
		   "commit order, several per target transaction, and the stream position is\n"
		   "stored in the target's dbm.apply_position in that same transaction: a\n"
		   "restart continues exactly where the last commit left off.\n"
		   "\n"
		   "Options:\n"
		   "      --source=CONNINFO       database with the slot (default: $DBM_SOURCE)\n"
		   "      --target=CONNINFO       database to apply to (default: $DBM_TARGET)\n"
		   "      --slot=NAME             logical replication slot (pgoutput)\n"
		   "      --publication=NAME      publication to stream (default: the slot name)\n"
		   "      --stream=NAME           key of the position row (default: the slot name)\n"
		   "      --stop-at-lsn=LSN       stop once everything up to LSN is applied\n"
		   "      --until-idle=SECS       stop after SECS without a source transaction\n"
		   "      --batch-rows=N          rows per target transaction (default 10000)\n"
		   "      --batch-ms=MS           longest wait before a target commit (default 200)\n"
		   "      --origin=NAME           replication origin of the target sessions\n"
		   "                              (default dbm_STREAM)\n"
		   "      --skip-origin=PATTERN   skip source transactions whose origin matches\n"
		   "                              (default dbm_*: what a dbm-cdc-apply applied\n"
		   "                              there), so streams never echo\n"
		   "      --no-origin             neither (needs no superuser)\n"
		   "      --print                 apply nothing: print the normalized changes\n"
		   "  FILE or -                   JSON lines of Debezium (with or without\n"
		   "                              schemas), AWS DMS or dbm change events;\n"
		   "                              replays converge (upserts)\n"
		   "      --format=auto           recognize each event's format (the only mode)\n"
		   "      --binary-mode=MODE      schema-less bytea values: base64 or hex\n"
		   "      --decimal-mode=MODE     schema-less numeric(p,s) strings: precise\n"
		   "                              (base64) or string, as the connector's\n"
		   "                              decimal.handling.mode (default: by their\n"
		   "                              shape; one that fits both is an error)\n"
		   "      --dms-before-field=NAME\n"
		   "                              AWS DMS before-image attribute (before-image)\n"
		   "      --dead-letter=FILE      write undecodable events there and go on\n"
		   "                              (default: stop with an error)\n"
		   "      --kafka=BROKERS         read Debezium or AWS DMS topics from Kafka\n"
		   "      --topic=TOPIC           a topic to read; repeatable\n"
		   "      --topic-regex=REGEX     read every topic matching REGEX\n"
		   "      --group=GROUP           consumer group; processes of one group share\n"
		   "                              the partitions (default dbm-cdc-apply)\n"
		   "  -X KEY=VALUE                a librdkafka setting, passed unchanged\n"
		   "                              (security.protocol, sasl.*, ssl.*, ...);\n"
		   "                              defaults here: enable.auto.commit=false,\n"
		   "                              auto.offset.reset=earliest,\n"
		   "                              queued.max.messages.kbytes=16384\n"
		   "      --reconnect=SECS        after a lost connection (a server restarted,\n"
		   "                              a session terminated) reconnect with backoff\n"
		   "                              and go on from the last commit, for up to\n"
		   "                              SECS (default 600; 0: stop with exit 2)\n"
		   "      --metrics-file=PATH     write Prometheus metrics there (atomically)\n"
		   "      --progress-interval=SECS  seconds between progress lines (default 5)\n"
		   "      --dbm-schema=NAME       schema for the toolkit's state (default dbm)\n"
		   "      --log-json              diagnostics on stderr as JSON lines\n"
		   "  -V, --version               print the version and exit\n"
		   "  -h, --help                  print this help and exit\n"
		   "\n"
		   "SIGINT or SIGTERM: the current source transaction is finished and committed,\n"
		   "a stopped line is printed, exit 0.\n"
		   "Exit status: 0 stopped as asked, 2 error (usage, connection, a change the\n"
		   "target cannot take; nothing of the failing batch is committed).\n");
}

static int64_t
now_pg_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec - DBM_PG_EPOCH_OFFSET_US;
}

static void
pg_time_format(int64_t us, char *out, size_t n)
{
	time_t secs = (time_t) ((us + DBM_PG_EPOCH_OFFSET_US) / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int) (((us % 1000000) + 1000000) % 1000000));
}

static bool
send_feedback(cdc *c, bool reply)
{
	char msg[1 + 8 + 8 + 8 + 8 + 1];
	uint64_t flush = c->print ? 0 : c->flushed_lsn;

	/* Standby status update: 'r', written, flushed, applied, send time,
	 * reply requested */
	msg[0] = 'r';
	dbm_put_u64(msg + 1, c->server_lsn > flush ? c->server_lsn : flush);
	dbm_put_u64(msg + 9, flush);
	dbm_put_u64(msg + 17, flush);
	dbm_put_u64(msg + 25, (uint64_t) now_pg_us());
	msg[33] = reply ? 1 : 0;
	if (PQputCopyData(c->repl, msg, sizeof(msg)) != 1 || PQflush(c->repl) != 0)
	{
		dbm_log_error("could not send feedback to the source: %s",
					  dbm_pg_error(c->repl));
		return false;
	}
	c->last_feedback = dbm_now_ms();
	return true;
}

/* The pending batch is committed: what the slot may forget moves on. */
static void
confirmed(cdc *c)
{
	if (!c->pending)
		return;
	c->flushed_lsn = c->pend_lsn;
	c->applied_commit_time = c->pend_time;
	c->applied_txns += (uint64_t) c->pend_txns;
	c->pending = false;
}

/* Wait for the pending batch's commit. */
static bool
settle(cdc *c)
{
	if (!c->pending)
		return true;
	if (c->ap && !dbm_apply_wait(c->ap))
		return false;
	confirmed(c);
	return send_feedback(c, false);
}

/* Commit the batch. The apply waits for the batch before (overlap): that
 * one is confirmed now, this one is pending. */
static bool
commit_batch(cdc *c)
{
	char lsn[32];

	if (c->batch_txns == 0)
		return true;
	dbm_lsn_format(c->batch_end_lsn, lsn);
	if (c->ap && !dbm_apply_commit(c->ap, lsn, NULL))
		return false; /* errors have already been logged */
	confirmed(c);
	c->pending = true;
	c->pend_lsn = c->batch_end_lsn;
	c->pend_time = c->batch_commit_time;
	c->pend_txns = c->batch_txns;
	c->batch_txns = 0;
	if (c->ap == NULL)
		confirmed(c);
	return send_feedback(c, false);
}

static bool
write_metrics(cdc *c, uint64_t rows, uint64_t txns, double rate, uint64_t lag_bytes,
			  double lag_secs)
{
	char *tmp;
	FILE *f;
	bool ok;

	if (c->metrics_file == NULL)
		return true;
	tmp = xasprintf("%s.tmp", c->metrics_file);
	if ((f = fopen(tmp, "w")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", tmp);
		free(tmp);
		return false;
	}
	fprintf(f,
			"# HELP dbm_apply_rows_total Row changes applied to the target.\n"
			"# TYPE dbm_apply_rows_total counter\n"
			"dbm_apply_rows_total{stream=\"%s\"} %llu\n"
			"# HELP dbm_apply_transactions_total Source transactions applied.\n"
			"# TYPE dbm_apply_transactions_total counter\n"
			"dbm_apply_transactions_total{stream=\"%s\"} %llu\n"
			"# HELP dbm_apply_lsn Applied position (LSN as a number).\n"
			"# TYPE dbm_apply_lsn gauge\n"
			"dbm_apply_lsn{stream=\"%s\"} %llu\n"
			"# HELP dbm_apply_lag_bytes WAL bytes the target is behind the source.\n"
			"# TYPE dbm_apply_lag_bytes gauge\n"
			"dbm_apply_lag_bytes{stream=\"%s\"} %llu\n"
			"# HELP dbm_apply_lag_seconds Source commit time of the last applied transaction to now.\n"
			"# TYPE dbm_apply_lag_seconds gauge\n"
			"dbm_apply_lag_seconds{stream=\"%s\"} %.3f\n"
			"# HELP dbm_apply_rows_per_second Rows applied per second over the last interval.\n"
			"# TYPE dbm_apply_rows_per_second gauge\n"
			"dbm_apply_rows_per_second{stream=\"%s\"} %.1f\n",
			c->stream, (unsigned long long) rows, c->stream, (unsigned long long) txns,
			c->stream, (unsigned long long) c->flushed_lsn, c->stream,
			(unsigned long long) lag_bytes, c->stream, lag_secs, c->stream, rate);
	ok = fclose(f) == 0 && rename(tmp, c->metrics_file) == 0;
	if (!ok)
		dbm_log_error("could not write file \"%s\": %m", c->metrics_file);
	free(tmp);
	return ok;
}

/* Rows and commits applied by this process: the sessions before a
 * reconnect and the current one. */
static void
get_stats(cdc *c, dbm_apply_stats *st)
{
	*st = c->done_stats;
	if (c->ap)
	{
		dbm_apply_stats now;
		dbm_apply_get_stats(c->ap, &now);
		st->rows += now.rows;
		st->transactions += now.transactions;
		st->missed += now.missed;
	}
}

static bool
progress(cdc *c, bool force)
{
	int64_t now = dbm_now_ms();
	dbm_apply_stats st = {0};
	char lsn[32];
	uint64_t lag_bytes;
	double lag_secs = 0, rate;

	if (!force && now - c->last_progress < (int64_t) (c->progress_every * 1000))
		return true;
	if (!c->print)
		get_stats(c, &st);
	else
		st.rows = c->printed;
	st.transactions = c->applied_txns;
	lag_bytes = c->server_lsn > c->flushed_lsn ? c->server_lsn - c->flushed_lsn : 0;
	if (lag_bytes > 0 && c->applied_commit_time)
		lag_secs = (double) (now_pg_us() - c->applied_commit_time) / 1e6;
	rate = now > c->last_progress
			   ? (double) (st.rows - c->last_progress_rows) * 1000.0 /
					 (double) (now - (c->last_progress ? c->last_progress : c->started))
			   : 0;
	c->last_progress = now;
	c->last_progress_rows = st.rows;
	dbm_lsn_format(c->flushed_lsn, lsn);
	if (!write_metrics(c, st.rows, st.transactions, rate, lag_bytes, lag_secs))
		return false;
	if (force)
		return true;
	return dbm_jsonl_print(json_pack("{s:s,s:I,s:I,s:s,s:I,s:f,s:f}", "type", "progress",
									 "applied", (json_int_t) st.rows, "transactions",
									 (json_int_t) st.transactions, "lsn", lsn,
									 "lag_bytes", (json_int_t) lag_bytes, "lag_seconds",
									 lag_secs, "rate", rate)) &&
		   fflush(stdout) == 0;
}

static const char *
where(cdc *c, const dbm_srcrel *r, const char *op)
{
	char lsn[32];

	/* the same as the last change's, mostly */
	if (c->where_rel == r && c->where_op == op && c->where_lsn == c->begin.final_lsn &&
		c->where_xid == c->begin.xid && c->where.len > 0)
		return c->where.data;
	dbm_lsn_format(c->begin.final_lsn, lsn);
	dbm_buf_reset(&c->where);
	dbm_buf_printf(&c->where, "%s %s in the transaction committed at %s (xid %u)",
				   r ? r->qname : "", op, lsn, c->begin.xid);
	c->where_rel = r;
	c->where_op = op;
	c->where_lsn = c->begin.final_lsn;
	c->where_xid = c->begin.xid;
	return c->where.data;
}

static json_t *
vals_json(const dbm_srcrel *r, const dbm_val *v, bool key_only)
{
	json_t *o = json_object();
	for (int i = 0; i < r->ncols; i++)
	{
		if (key_only && !r->key[i])
			continue;
		if (v[i].kind == DBM_VAL_UNCHANGED)
			continue; /* never written: the stored value stays */
		json_object_set_new(o, r->cols[i],
							v[i].kind == DBM_VAL_NULL
								? json_null()
								: json_stringn(v[i].data, v[i].len));
	}
	return o;
}

static bool
print_change(cdc *c, const dbm_change *ch)
{
	static const char *ops[] = {['I'] = "insert", ['U'] = "update", ['D'] = "delete"};
	char lsn[32];
	json_t *o;
	const dbm_val *keysrc = ch->oldv ? ch->oldv : ch->newv;

	dbm_lsn_format(c->begin.final_lsn, lsn);
	o = json_pack("{s:s,s:s,s:s,s:s,s:I}", "type", "change", "op", ops[ch->op], "table",
				  ch->rel->qname, "lsn", lsn, "xid", (json_int_t) c->begin.xid);
	json_object_set_new(o, "key", vals_json(ch->rel, keysrc, true));
	if (ch->newv)
		json_object_set_new(o, "new", vals_json(ch->rel, ch->newv, false));
	if (ch->oldv)
		json_object_set_new(o, "old", vals_json(ch->rel, ch->oldv, ch->old_is_key));
	c->printed++;
	return dbm_jsonl_print(o);
}

/* The toolkit's own state tables are never carried over; its barrier
 * table is, so a cutover can wait for the barrier row. */
static bool
own_table(cdc *c, const dbm_srcrel *r)
{
	return strcmp(r->nsp, c->schema) == 0 && strcmp(r->name, "barrier") != 0;
}

/* Should this change be skipped: already applied, or already in the copy? */
static bool
skip_rel(cdc *c, dbm_srcrel *r)
{
	if (c->skip_txn || own_table(c, r))
		return true;
	if (c->ap)
	{
		uint64_t copy = dbm_apply_copy_lsn(c->ap, r->qname);
		if (copy && c->begin.final_lsn < copy)
			return true;
	}
	return false;
}

/* Handle one pgoutput message. false after logging. */
static bool
handle(cdc *c, const char *msg, size_t len)
{
	dbm_pgo_msg m;

	if (!dbm_pgo_decode(c->pgo, msg, len, &m))
		return false; /* errors have already been logged */
	switch (m.kind)
	{
		case 'B':
			c->begin = m.begin;
			if (c->stop_lsn && c->begin.final_lsn > c->stop_lsn)
			{
				/* committed after the stop position: not ours to apply */
				c->stop_now = true;
				break;
			}
			c->in_txn = true;
			c->skip_txn = c->begin.final_lsn < c->start_lsn;
			c->last_data = dbm_now_ms();
			free(c->origin);
			c->origin = NULL;
			break;

		case 'O':
			c->origin = xstrdup(m.origin);
			if (c->skip_origin && fnmatch(c->skip_origin, c->origin, 0) == 0)
				c->skip_txn = true;
			break;

		case 'R':
		{
			dbm_srcrel *r = m.rel, *old;

			c->where_rel = NULL; /* a relation may come back at the same address */
			if (c->ap && !own_table(c, r) && !dbm_apply_map(c->ap, r))
			{
				dbm_srcrel_free(r);
				return false;
			}
			if ((old = dbm_pgo_rel_put(c->pgo, r)) != NULL)
			{
				if (c->ap && !dbm_apply_unmap(c->ap, old))
				{
					dbm_srcrel_free(old);
					return false;
				}
				dbm_srcrel_free(old);
			}
			break;
		}

		case 'I':
		case 'U':
		case 'D':
		{
			dbm_change ch;
			bool ok;

			if (!c->in_txn)
				goto bad;
			if (skip_rel(c, m.rel))
				break;
			if (!dbm_pgo_decode_change(c->pgo, &m, &ch))
				return false;
			if (c->print)
				ok = print_change(c, &ch);
			else
				ok = dbm_apply_change(c->ap, &ch,
									  where(c, m.rel, m.kind == 'I' ? "insert" : m.kind == 'U' ? "update" : "delete"));
			if (!ok)
				return false;
			break;
		}

		case 'T':
		{
			dbm_srcrel **list = xcalloc(m.ntrunc + 1, sizeof(dbm_srcrel *));
			uint8_t opts = m.trunc_opts;
			int nl = 0;
			bool ok = true;

			for (uint32_t i = 0; i < m.ntrunc; i++)
			{
				dbm_srcrel *r = dbm_pgo_rel_find(c->pgo, m.trunc_ids[i]);
				if (r && !skip_rel(c, r))
					list[nl++] = r;
			}
			if (nl > 0 && c->print)
			{
				char lsn[32];
				dbm_lsn_format(c->begin.final_lsn, lsn);
				for (int i = 0; i < nl && ok; i++)
					ok = dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:b}", "type",
												   "change", "op", "truncate", "table",
												   list[i]->qname, "lsn", lsn, "xid",
												   (json_int_t) c->begin.xid, "cascade",
												   (opts & 1) != 0, "restart_identity",
												   (opts & 2) != 0));
			}
			else if (nl > 0)
				ok = dbm_apply_truncate(c->ap, list, nl, (opts & 1) != 0, (opts & 2) != 0,
										where(c, list[0], "truncate"));
			free(list);
			if (!ok)
				return false;
			break;
		}

		case 'M':
			if (c->print && !c->skip_txn)
			{
				json_t *ct = json_stringn(m.msg_content, m.msg_len);
				char lsn[32];
				dbm_lsn_format(m.msg_lsn, lsn);
				if (!dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:b,s:o}", "type", "message",
											   "lsn", lsn, "prefix", m.msg_prefix,
											   "transactional", (m.msg_flags & 1) != 0,
											   "content", ct ? ct : json_null())))
					return false;
			}
			break;

		case 'C':
		{
			dbm_pgo_commit cm = m.commit;

			if (!c->in_txn)
				goto bad;
			c->in_txn = false;
			if (c->print && !c->skip_txn)
			{
				char lsn[32], ts[96];
				dbm_lsn_format(cm.end_lsn, lsn);
				pg_time_format(cm.commit_time, ts, sizeof(ts));
				if (!dbm_jsonl_print(json_pack("{s:s,s:s,s:I,s:s}", "type", "commit", "lsn",
											   lsn, "xid", (json_int_t) c->begin.xid,
											   "commit_time", ts)))
					return false;
			}
			if (c->skip_txn && (!c->ap || !dbm_apply_in_txn(c->ap)) && c->batch_txns == 0)
			{
				if (!settle(c))
					return false;
				/* nothing pending: the skipped transaction counts as done */
				if (cm.end_lsn > c->flushed_lsn && cm.end_lsn > c->start_lsn)
					c->flushed_lsn = cm.end_lsn;
				break;
			}
			if (c->batch_txns == 0)
				c->batch_started = dbm_now_ms();
			c->batch_txns++;
			c->txns++;
			c->batch_end_lsn = cm.end_lsn;
			c->batch_commit_time = cm.commit_time;
			if ((c->ap && (long) dbm_apply_pending_rows(c->ap) >= c->batch_rows) ||
				dbm_now_ms() - c->batch_started >= c->batch_ms ||
				(c->stop_lsn && cm.end_lsn >= c->stop_lsn) || stop_requested)
				return commit_batch(c);
			break;
		}
	}
	return true;

bad:
	dbm_log_error("malformed pgoutput message '%c' from the source", m.kind);
	return false;
}

static stop_reason
stream_changes(cdc *c)
{
	for (;;)
	{
		char *buf;
		int r;
		dbm_pgo_frame fr;
		bool known;

		if (!c->in_txn)
		{
			if (stop_requested)
				return commit_batch(c) ? STOP_SIGNAL : STOP_ERROR;
			if (c->stop_now)
			{
				if (!commit_batch(c) || !settle(c))
					return STOP_ERROR;
				/* everything before the stop position is applied */
				if (c->flushed_lsn < c->stop_lsn)
					c->flushed_lsn = c->stop_lsn;
				return STOP_LSN;
			}
			if (c->stop_lsn && c->batch_txns == 0 &&
				(c->pending ? c->pend_lsn : c->flushed_lsn) >= c->stop_lsn)
				return settle(c) ? STOP_LSN : STOP_ERROR;
		}
		r = PQgetCopyData(c->repl, &buf, 1);
		if (r == 0)
		{
			struct pollfd pfd = {PQsocket(c->repl), POLLIN, 0};
			int64_t now = dbm_now_ms();

			/* nothing buffered: commit what is complete rather than wait,
			 * and see it confirmed */
			if (!c->in_txn && ((c->batch_txns > 0 && !commit_batch(c)) || !settle(c)))
				return STOP_ERROR;
			if (c->stop_lsn && !c->in_txn && c->flushed_lsn >= c->stop_lsn)
				return STOP_LSN;
			if (c->until_idle > 0 && !c->in_txn &&
				now - c->last_data >= (int64_t) (c->until_idle * 1000))
				return STOP_IDLE;
			if (now - c->last_feedback >= 10000 && !send_feedback(c, false))
				return STOP_ERROR;
			if (!progress(c, false))
				return STOP_ERROR;
			if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			{
				dbm_log_error("could not wait for the source: %m");
				return STOP_ERROR;
			}
			if (PQconsumeInput(c->repl) != 1)
			{
				dbm_log_error("lost the source connection: %s", dbm_pg_error(c->repl));
				c->source_gone = true;
				return STOP_ERROR;
			}
			continue;
		}
		if (r == -1)
		{
			PGresult *res = PQgetResult(c->repl);
			if (PQresultStatus(res) == PGRES_FATAL_ERROR)
				dbm_log_error("the source ended the replication stream: %s",
							  dbm_pg_error(c->repl));
			else
				dbm_log_error("the source ended the replication stream");
			/* a shutdown, a crash, a terminated session, a connection
			 * failure: another session may go on */
			if (dbm_pg_result_ends_session(res))
				c->source_gone = true;
			PQclear(res);
			return STOP_ERROR;
		}
		if (r < 0)
		{
			dbm_log_error("lost the source connection: %s", dbm_pg_error(c->repl));
			c->source_gone = true;
			return STOP_ERROR;
		}
		/* (a kind this client does not know is ignored) */
		known = dbm_pgo_frame_parse(buf, (size_t) r, &fr);
		if (known && fr.kind == 'k')
		{
			/* Primary keepalive */
			uint64_t end = fr.wal_end;
			bool reply = fr.reply;
			if (end > c->server_lsn)
				c->server_lsn = end;
			/* caught up: everything the server sent before this point is
			 * applied, so that much is flushed */
			if (!c->in_txn && c->batch_txns == 0 && end > c->flushed_lsn &&
				end >= c->start_lsn)
			{
				if (!settle(c))
				{
					PQfreemem(buf);
					return STOP_ERROR;
				}
				c->flushed_lsn = end;
			}
			if (reply && !send_feedback(c, false))
			{
				PQfreemem(buf);
				return STOP_ERROR;
			}
		}
		else if (known)
		{
			/* XLogData: a pgoutput message */
			if (fr.wal_end > c->server_lsn)
				c->server_lsn = fr.wal_end;
			if (!handle(c, fr.msg, fr.len))
			{
				PQfreemem(buf);
				return STOP_ERROR;
			}
		}
		PQfreemem(buf);
	}
}

/* Every way out of the stream leaves nothing pending. */
static stop_reason
stream(cdc *c)
{
	stop_reason why = stream_changes(c);
	if (why != STOP_ERROR && !settle(c))
		why = STOP_ERROR;
	return why;
}

static bool
start_replication(cdc *c)
{
	char lsn[32], *q, *pub, *sql;
	PGresult *res;

	dbm_lsn_format(c->start_lsn, lsn);
	q = PQescapeIdentifier(c->repl, c->slot, strlen(c->slot));
	{
		/* publication_names is a comma-separated list of quoted names */
		char *qp = PQescapeIdentifier(c->repl, c->publication, strlen(c->publication));
		pub = PQescapeLiteral(c->repl, qp, strlen(qp));
		PQfreemem(qp);
	}
	sql = xasprintf("START_REPLICATION SLOT %s LOGICAL %s (proto_version '1',"
					" publication_names %s, messages 'true')",
					q, lsn, pub);
	res = PQexec(c->repl, sql);
	free(sql);
	PQfreemem(q);
	PQfreemem(pub);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		/* active for another PID: after a lost connection, most likely
		 * the walsender of our last session, on its way out */
		c->slot_busy = state && strcmp(state, "55006") == 0;
		dbm_log_error("could not start replication from slot \"%s\": %s", c->slot,
					  dbm_pg_error(c->repl));
		PQclear(res);
		return false;
	}
	PQclear(res);
	return true;
}

/* Write an event that cannot be decoded to the dead-letter file. */
static bool
dead_letter(cdc *c, FILE **dl, const char *where, const char *error, const char *line)
{
	json_t *o;
	char *s;
	bool ok;

	if (*dl == NULL && (*dl = fopen(c->dead_letter, "a")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", c->dead_letter);
		return false;
	}
	o = json_pack("{s:s,s:s,s:s,s:s}", "type", "dead_letter", "where", where, "error", error,
				  "event", line);
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	ok = s && fprintf(*dl, "%s\n", s) > 0 && fflush(*dl) == 0;
	free(s);
	if (!ok)
		dbm_log_error("could not write file \"%s\": %m", c->dead_letter);
	else
		dbm_log_warn("%s: %s (written to the dead-letter file)", where, error);
	return ok;
}

static bool
commit_file(cdc *c, long line)
{
	char off[64];
	if (c->ap == NULL || !dbm_apply_in_txn(c->ap))
		return true;
	snprintf(off, sizeof(off), "{\"line\": %ld}", line);
	if (!dbm_apply_commit(c->ap, NULL, off))
		return false;
	c->applied_txns++;
	c->batch_started = dbm_now_ms();
	return true;
}

/* ---- lines read and parsed by a thread of their own ----
 *
 * Parsing JSON is most of the client's work on change events: a reader
 * thread reads the lines and parses them into events, in batches, while
 * the main thread converts and applies the batch before; the order of the
 * lines is kept. */

#define PARSE_BATCH 256
#define PARSE_QUEUE 16 /* batches parsed ahead */

typedef struct
{
	long line;
	json_t *msg;
	dbm_event ev;
	char *err;	/* the line could not be parsed: why */
	char *text; /* ... and the line itself, for the dead-letter file */
} parsed;

typedef struct pbatch
{
	parsed v[PARSE_BATCH];
	int n;
	int end_rc; /* last batch: 0 end of input, -1 read error (end_err) */
	char *end_err;
	bool last;
	dbm_jarena *arena; /* the messages' JSON */
	struct pbatch *next; /* on the list of batches to reuse */
} pbatch;

typedef struct
{
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pbatch *q[PARSE_QUEUE];
	int head, count;
	pbatch *reuse; /* applied batches, emptied by the reader: what it
					* allocated is freed by it, which malloc does best */
	bool stop, finished;
	dbm_jsonl_reader r;
	long skip_until;
	const dbm_decode_opts *dec;
	dbm_schema_cache *cache;
} preader;

static void
parsed_clear(parsed *p)
{
	json_decref(p->msg);
	dbm_event_clear(&p->ev);
	free(p->err);
	free(p->text);
	memset(p, 0, sizeof(*p));
}

static void
pbatch_free(pbatch *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < b->n; i++)
		parsed_clear(&b->v[i]);
	free(b->end_err);
	dbm_jarena_free(b->arena);
	free(b);
}

/* Hand a batch over; false when told to stop. */
static bool
preader_put(preader *p, pbatch *b)
{
	bool ok;
	pthread_mutex_lock(&p->mu);
	while (p->count == PARSE_QUEUE && !p->stop)
		pthread_cond_wait(&p->cv, &p->mu);
	ok = !p->stop;
	if (ok)
	{
		p->q[(p->head + p->count) % PARSE_QUEUE] = b;
		p->count++;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return ok;
}

/* An empty batch: an applied one emptied, or a new one. */
static pbatch *
preader_batch(preader *p)
{
	pbatch *b;

	pthread_mutex_lock(&p->mu);
	b = p->reuse;
	if (b)
		p->reuse = b->next;
	pthread_mutex_unlock(&p->mu);
	if (b == NULL)
	{
		b = xcalloc(1, sizeof(*b));
		b->arena = dbm_jarena_new();
		return b;
	}
	for (int i = 0; i < b->n; i++)
		parsed_clear(&b->v[i]);
	dbm_jarena_reset(b->arena);
	b->n = 0;
	b->next = NULL;
	return b;
}

/* The main thread is done with a batch. */
static void
preader_recycle(preader *p, pbatch *b)
{
	pthread_mutex_lock(&p->mu);
	b->next = p->reuse;
	p->reuse = b;
	pthread_mutex_unlock(&p->mu);
}

static void *
preader_main(void *arg)
{
	preader *p = arg;
	pbatch *b = preader_batch(p);
	int rc;

	dbm_log_hold_errors(true);
	prctl(PR_SET_NAME, "dbm-cdc-reader", 0, 0, 0); /* for top and perf */
	while ((rc = dbm_jsonl_next_line(&p->r)) == 1)
	{
		parsed *x;
		char err[512];
		bool ok;

		if (p->r.line <= p->skip_until)
			continue;
		x = &b->v[b->n++];
		x->line = p->r.line;
		/* the batch's JSON goes with it: parsed into its arena */
		dbm_jarena_use(b->arena);
		ok = dbm_decode_parse(p->cache, p->r.buf.data, p->r.buf.len, &x->msg, err, sizeof(err));
		dbm_jarena_use(NULL);
		if (!ok || !dbm_decode_event(x->msg, p->dec, &x->ev, err, sizeof(err)))
		{
			x->err = xstrdup(err);
			x->text = xstrndup(p->r.buf.data, p->r.buf.len);
		}
		if (b->n == PARSE_BATCH)
		{
			if (!preader_put(p, b))
			{
				pbatch_free(b);
				b = NULL;
				break;
			}
			b = preader_batch(p);
		}
	}
	if (b)
	{
		b->last = true;
		b->end_rc = rc;
		b->end_err = rc < 0 ? dbm_log_take_held_error() : NULL;
		if (!preader_put(p, b))
			pbatch_free(b);
	}
	pthread_mutex_lock(&p->mu);
	p->finished = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* The realtime clock ms from now, for pthread_cond_timedwait. */
static struct timespec
deadline_in(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

/* The next batch, in order; NULL when a signal came first and the caller
 * may stop (between source transactions). Waits in steps to notice. */
static pbatch *
preader_get(preader *p, bool may_stop)
{
	pbatch *b = NULL;
	pthread_mutex_lock(&p->mu);
	while (p->count == 0 && !(may_stop && stop_requested))
	{
		struct timespec ts = deadline_in(200);
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	if (p->count > 0)
	{
		b = p->q[p->head];
		p->head = (p->head + 1) % PARSE_QUEUE;
		p->count--;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return b;
}

/* Stop the reader. A reader still blocked reading (stdin that sends
 * nothing) is left behind with what it uses: the process ends soon. */
static void
preader_end(preader *p)
{
	bool finished;
	int64_t until = dbm_now_ms() + 200;

	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	while (!p->finished && dbm_now_ms() < until)
	{
		struct timespec ts = deadline_in(20);
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	}
	finished = p->finished;
	pthread_mutex_unlock(&p->mu);
	if (!finished)
	{
		pthread_detach(p->th);
		return;
	}
	pthread_join(p->th, NULL);
	while (p->count > 0)
	{
		pbatch_free(p->q[p->head]);
		p->head = (p->head + 1) % PARSE_QUEUE;
		p->count--;
	}
	while (p->reuse)
	{
		pbatch *b = p->reuse;
		p->reuse = b->next;
		pbatch_free(b);
	}
	dbm_schema_cache_free(p->cache);
	dbm_jsonl_close(&p->r);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* Change events from a file or stdin: Debezium, AWS DMS or dbm lines. */
static stop_reason
run_file(cdc *c)
{
	preader *p = xcalloc(1, sizeof(*p));
	pbatch *b = NULL;
	dbm_evapply *e;
	long last = 0;
	char *cur_txid = NULL;
	FILE *dl = NULL;
	stop_reason why = STOP_ERROR;
	const char *name = strcmp(c->input, "-") == 0 ? "stdin" : c->input;
	dbm_buf wbuf;
	const char *where;
	bool eof = false;

	if (!dbm_jsonl_open(&p->r, c->input))
	{
		free(p);
		return STOP_ERROR;
	}
	p->r.allow_null = true;
	if (c->ap && !c->print && strcmp(c->input, "-") != 0)
	{
		/* a file applied before continues after its last committed line */
		char *lsn = NULL, *offsets = NULL;
		if (!dbm_apply_get_position(c->ap, &lsn, &offsets))
		{
			dbm_jsonl_close(&p->r);
			free(p);
			return STOP_ERROR;
		}
		if (offsets)
		{
			json_t *o = json_loads(offsets, 0, NULL);
			if (json_is_integer(json_object_get(o, "line")))
				p->skip_until = (long) json_integer_value(json_object_get(o, "line"));
			json_decref(o);
		}
		free(lsn);
		free(offsets);
	}
	p->dec = &c->dec;
	p->cache = dbm_schema_cache_new();
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->th, NULL, preader_main, p) != 0)
	{
		dbm_log_error("could not start a thread");
		exit(2);
	}
	e = dbm_evapply_new(c->ap, &c->dec, c->schema, c->print);
	dbm_buf_init(&wbuf);
	c->batch_started = dbm_now_ms();
	while (!eof)
	{
		if ((b = preader_get(p, cur_txid == NULL)) == NULL)
		{
			/* a signal while waiting for input: stop between transactions */
			why = commit_file(c, last) ? STOP_SIGNAL : STOP_ERROR;
			goto out;
		}
		for (int i = 0; i < b->n; i++)
		{
			parsed *x = &b->v[i];
			dbm_event *ev = &x->ev;
			bool boundary;

			dbm_buf_reset(&wbuf);
			dbm_buf_puts(&wbuf, name);
			dbm_buf_putc(&wbuf, ':');
			dbm_buf_put_int(&wbuf, x->line, 0);
			where = wbuf.data;
			if (x->err)
			{
				bool ok = c->dead_letter && dead_letter(c, &dl, where, x->err, x->text);
				if (!ok)
				{
					if (!c->dead_letter)
						dbm_log_error("%s: %s", where, x->err);
					goto out;
				}
				continue;
			}
			/* source transactions stay whole: commit only between them */
			boundary = ev->txid == NULL || cur_txid == NULL || strcmp(ev->txid, cur_txid) != 0;
			if (boundary && c->stop_lsn && ev->lsn > c->stop_lsn)
			{
				/* past the bound: what came before is all there is to do */
				why = commit_file(c, last) ? STOP_LSN : STOP_ERROR;
				goto out;
			}
			if (boundary)
			{
				if (stop_requested)
				{
					why = commit_file(c, last) ? STOP_SIGNAL : STOP_ERROR;
					goto out;
				}
				if (c->ap && ((long) dbm_apply_pending_rows(c->ap) >= c->batch_rows ||
							  dbm_now_ms() - c->batch_started >= c->batch_ms) &&
					!commit_file(c, last))
					goto out;
				free(cur_txid);
				cur_txid = ev->txid ? xstrdup(ev->txid) : NULL;
			}
			if (!dbm_evapply_event(e, ev, where))
				goto out;
			if (ev->kind == DBM_EV_COMMIT)
			{
				free(cur_txid);
				cur_txid = NULL;
			}
			last = x->line;
			c->last_data = dbm_now_ms();
			if (!progress(c, false))
				goto out;
		}
		if (b->last)
		{
			eof = true;
			if (b->end_rc < 0)
			{
				/* a read error, after every line before it */
				if (b->end_err)
					dbm_log_error("%s", b->end_err);
				goto out;
			}
		}
		preader_recycle(p, b);
		b = NULL;
	}
	why = commit_file(c, last) ? STOP_EOF : STOP_ERROR;
out:
	pbatch_free(b);
	/* the last commit confirmed before anything is reported */
	if (why != STOP_ERROR && c->ap && !c->print && !dbm_apply_wait(c->ap))
		why = STOP_ERROR;
	{
		uint64_t changes, skipped;
		dbm_evapply_counts(e, &changes, &skipped);
		c->printed = changes;
		c->skipped = skipped;
	}
	/* what is not committed goes with the connection */
	dbm_evapply_free(why == STOP_ERROR ? NULL : e);
	free(cur_txid);
	dbm_buf_free(&wbuf);
	if (dl)
		fclose(dl);
	preader_end(p);
	return why;
}

/* ---- Kafka ---- */

typedef struct
{
	char *topic;
	int32_t partition;
	int64_t offset;	 /* last applied in the open batch, -1 none */
	bool done;		 /* reached --stop-at-lsn or its end (with a bound) */
	int64_t next;	 /* offset after the last message read, -1 unknown */
	int64_t need;	 /* a barrier waits until next reaches this, -1 none */
	bool pinned;	 /* a barrier from here waits: offset not stored yet */
} kpart;

typedef struct
{
	cdc *c;
	rd_kafka_t *rk;
	dbm_evapply *e;
	kpart *parts;
	int nparts;
	bool failed;
	bool dirty; /* changes applied since the last commit */
	bool check_done; /* a partition got done or the assignment changed */
	struct kicker *kick;
} kctx;

static kpart *
kpart_get(kctx *k, const char *topic, int32_t partition)
{
	for (int i = 0; i < k->nparts; i++)
		if (k->parts[i].partition == partition && strcmp(k->parts[i].topic, topic) == 0)
			return &k->parts[i];
	k->parts = xrealloc(k->parts, sizeof(kpart) * (size_t) (k->nparts + 1));
	k->parts[k->nparts] = (kpart){xstrdup(topic), partition, -1, false, -1, -1, false};
	return &k->parts[k->nparts++];
}

/* Commit the open batch: the offsets of what it applied go in the same
 * target transaction; Kafka's own committed offsets follow, for
 * visibility only. */
static bool
commit_kafka(kctx *k)
{
	if (k->failed)
		return false;
	json_t *offs = json_object();
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
	char *text;
	bool ok = true;

	for (int i = 0; i < k->nparts; i++)
		if (k->parts[i].offset >= 0)
		{
			char key[300];
			snprintf(key, sizeof(key), "%s/%d", k->parts[i].topic, (int) k->parts[i].partition);
			json_object_set_new(offs, key, json_integer(k->parts[i].offset));
			rd_kafka_topic_partition_list_add(list, k->parts[i].topic, k->parts[i].partition)
				->offset = k->parts[i].offset + 1;
		}
	if (k->dirty || json_object_size(offs) > 0)
	{
		text = json_dumps(offs, JSON_COMPACT | JSON_SORT_KEYS);
		ok = dbm_apply_commit(k->c->ap, NULL, text);
		free(text);
		if (ok)
		{
			k->c->applied_txns++;
			if (list->cnt > 0)
				rd_kafka_commit(k->rk, list, 1);
			for (int i = 0; i < k->nparts; i++)
				k->parts[i].offset = -1;
			k->dirty = false;
		}
	}
	k->c->batch_started = dbm_now_ms();
	json_decref(offs);
	rd_kafka_topic_partition_list_destroy(list);
	return ok;
}

/* Where each assigned partition continues: after the offset stored in the
 * target, whatever Kafka's committed offsets say. */
static bool
seek_stored(kctx *k, rd_kafka_topic_partition_list_t *parts)
{
	char *lsn = NULL, *offsets = NULL;
	json_t *o = NULL;

	if (!dbm_apply_get_position(k->c->ap, &lsn, &offsets))
		return false;
	if (offsets)
		o = json_loads(offsets, 0, NULL);
	for (int i = 0; i < parts->cnt; i++)
	{
		char key[300];
		json_t *v;
		snprintf(key, sizeof(key), "%s/%d", parts->elems[i].topic,
				 (int) parts->elems[i].partition);
		v = json_object_get(o, key);
		if (json_is_integer(v))
			parts->elems[i].offset = json_integer_value(v) + 1;
		kpart *p = kpart_get(k, parts->elems[i].topic, parts->elems[i].partition);
		p->done = false;
		p->next = json_is_integer(v) ? json_integer_value(v) + 1 : -1;
	}
	json_decref(o);
	free(lsn);
	free(offsets);
	return true;
}

struct kicker;
static void kicker_pause(struct kicker *kk, bool pause);
static void rebalance_do(rd_kafka_t *rk, rd_kafka_resp_err_t err,
						 rd_kafka_topic_partition_list_t *parts, kctx *k, bool cooperative);

static void
rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
		  void *opaque)
{
	kctx *k = opaque;
	bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

	kicker_pause(k->kick, true);
	rebalance_do(rk, err, parts, k, cooperative);
	kicker_pause(k->kick, false);
}

static void
rebalance_do(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 kctx *k, bool cooperative)
{

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
	{
		/* --until-idle counts from having partitions, not from the join */
		k->c->last_data = dbm_now_ms();
		k->check_done = true;
		if (!seek_stored(k, parts))
			k->failed = true;
		if (cooperative)
			rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
		else
			rd_kafka_assign(rk, parts);
		return;
	}
	/* partitions leave: what was applied from them is committed first, so
	 * their next owner starts right after it (not after a failure: nothing
	 * of the failed batch may be committed) */
	if (!k->failed && (!commit_kafka(k) || !dbm_apply_wait(k->c->ap)))
		k->failed = true;
	for (int i = 0; i < parts->cnt; i++)
	{
		kpart *p = kpart_get(k, parts->elems[i].topic, parts->elems[i].partition);
		p->done = true; /* not ours any more */
	}
	k->check_done = true;
	if (cooperative)
		rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
	else
		rd_kafka_assign(rk, NULL);
}

static bool
all_done(kctx *k)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	bool done = true;

	if (rd_kafka_assignment(k->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || a == NULL)
		return false;
	if (a->cnt == 0)
		done = false;
	for (int i = 0; i < a->cnt && done; i++)
		done = kpart_get(k, a->elems[i].topic, a->elems[i].partition)->done;
	rd_kafka_topic_partition_list_destroy(a);
	return done;
}

/* A barrier just read from one partition must not be applied before what
 * was written before it to the others, which the consumer may not have
 * read yet: it waits until every assigned partition has been read up to
 * the end offset it had once the barrier was read. */
static bool
barrier_ends(kctx *k)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	bool ok = true;

	if (rd_kafka_assignment(k->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || a == NULL)
	{
		dbm_log_error("could not read the Kafka assignment");
		return false;
	}
	for (int i = 0; i < a->cnt && ok; i++)
	{
		kpart *p = kpart_get(k, a->elems[i].topic, a->elems[i].partition);
		int64_t lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(k->rk, p->topic, p->partition,
																 &lo, &hi, 30000);
		if (e)
		{
			dbm_log_error("could not read the end offset of %s/%d: %s", p->topic,
						  (int) p->partition, rd_kafka_err2str(e));
			ok = false;
			break;
		}
		if (p->next < 0)
			p->next = lo; /* read from the start (auto.offset.reset earliest) */
		p->need = hi;
	}
	rd_kafka_topic_partition_list_destroy(a);
	return ok;
}

/* Once every partition is read up to its end offset of barrier_ends, the
 * waiting barriers go into the open batch and it is committed. */
static bool
barrier_release(kctx *k)
{
	for (int i = 0; i < k->nparts; i++)
		if (k->parts[i].need >= 0 && k->parts[i].next < k->parts[i].need)
			return true; /* not yet */
	if (!dbm_evapply_release(k->e))
		return false;
	for (int i = 0; i < k->nparts; i++)
	{
		kpart *p = &k->parts[i];
		if (p->pinned)
			p->offset = p->next - 1;
		p->pinned = false;
		p->need = -1;
	}
	k->dirty = true;
	return commit_kafka(k);
}

/* librdkafka 2.0 stops fetching while its local queue holds
 * queued.max.messages.kbytes, and its broker threads look at the queue
 * again only when something wakes them: up to a second later (its 1 s
 * maximum block; 2.2 made this fetch.queue.backoff.ms). A consumer faster
 * than that second's worth of queue then waits most of the time. While
 * messages are being consumed, this thread asks the partition leaders for
 * their end offsets every KICK_MS: the request wakes each broker thread,
 * which fetches again if the queue has room. Idle, it asks nothing. */
#define KICK_MS 50

typedef struct kicker
{
	rd_kafka_t *rk;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	bool paused; /* a rebalance is under way: no request */
	bool busy;	 /* a request is under way */
	atomic_uint_fast64_t consumed; /* messages taken by the main thread */
} kicker;

static void *
kicker_main(void *arg)
{
	kicker *kk = arg;
	uint64_t seen = 0;

	prctl(PR_SET_NAME, "dbm-cdc-kick", 0, 0, 0);
	pthread_mutex_lock(&kk->mu);
	while (!kk->stop)
	{
		struct timespec ts = deadline_in(KICK_MS);
		bool busy;
		rd_kafka_topic_partition_list_t *a = NULL;

		pthread_cond_timedwait(&kk->cv, &kk->mu, &ts);
		busy = atomic_load_explicit(&kk->consumed, memory_order_relaxed) != seen;
		seen = atomic_load_explicit(&kk->consumed, memory_order_relaxed);
		if (kk->stop || !busy || kk->paused)
			continue;
		kk->busy = true;
		pthread_mutex_unlock(&kk->mu);
		if (rd_kafka_assignment(kk->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a && a->cnt > 0)
		{
			for (int i = 0; i < a->cnt; i++)
				a->elems[i].offset = -1; /* "latest": a timestamp of -1 */
			(void) rd_kafka_offsets_for_times(kk->rk, a, 1000);
		}
		if (a)
			rd_kafka_topic_partition_list_destroy(a);
		pthread_mutex_lock(&kk->mu);
		kk->busy = false;
		pthread_cond_broadcast(&kk->cv);
	}
	pthread_mutex_unlock(&kk->mu);
	return NULL;
}

static kicker *
kicker_start(rd_kafka_t *rk)
{
	kicker *kk = xcalloc(1, sizeof(*kk));
	kk->rk = rk;
	pthread_mutex_init(&kk->mu, NULL);
	pthread_cond_init(&kk->cv, NULL);
	if (pthread_create(&kk->th, NULL, kicker_main, kk) != 0)
	{
		dbm_log_error("could not start a thread");
		exit(2);
	}
	return kk;
}

/* While partitions are assigned or revoked, the thread asks nothing (it
 * waits for a request under way to end first): librdkafka 2.0 has had
 * crashes with calls that race a rebalance. */
static void
kicker_pause(kicker *kk, bool pause)
{
	if (kk == NULL)
		return;
	pthread_mutex_lock(&kk->mu);
	kk->paused = pause;
	while (pause && kk->busy)
		pthread_cond_wait(&kk->cv, &kk->mu);
	pthread_mutex_unlock(&kk->mu);
}

static void
kicker_consumed(kicker *kk)
{
	/* on every message: no lock */
	atomic_fetch_add_explicit(&kk->consumed, 1, memory_order_relaxed);
}

/* Before the consumer closes: the thread uses it. */
static void
kicker_stop(kicker *kk)
{
	if (kk == NULL)
		return;
	pthread_mutex_lock(&kk->mu);
	kk->stop = true;
	pthread_cond_broadcast(&kk->cv);
	pthread_mutex_unlock(&kk->mu);
	pthread_join(kk->th, NULL);
	pthread_cond_destroy(&kk->cv);
	pthread_mutex_destroy(&kk->mu);
	free(kk);
}

/* librdkafka's log lines (from its own threads) in the tools' form: a
 * broker that cannot be reached is a warning, the apply goes on; an error
 * line is only ever the apply's own. */
static void
kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void) rk;
	(void) fac;
	if (level <= 4)
		dbm_log_warn("kafka: %s", buf);
	else
		dbm_log_info("kafka: %s", buf);
}

static stop_reason
run_kafka(cdc *c)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *subs;
	kctx k = {0};
	stop_reason why = STOP_ERROR;
	char *regex = NULL;
	dbm_schema_cache *cache = dbm_schema_cache_new();
	FILE *dl = NULL;
	kicker *kick = NULL;
	dbm_jarena *arena = dbm_jarena_new();

	k.c = c;
	rd_kafka_conf_set_log_cb(conf, kafka_log);
#define SET(key, val)                                                          \
	if (rd_kafka_conf_set(conf, key, val, err, sizeof(err)) != RD_KAFKA_CONF_OK) \
	{                                                                          \
		dbm_log_error("Kafka setting %s: %s", key, err);                        \
		rd_kafka_conf_destroy(conf);                                           \
		return STOP_ERROR;                                                     \
	}
	SET("bootstrap.servers", c->kafka);
	SET("group.id", c->group ? c->group : "dbm-cdc-apply");
	SET("enable.auto.commit", "false");
	SET("enable.auto.offset.store", "false");
	SET("auto.offset.reset", "earliest");
	SET("enable.partition.eof", "true");
	SET("log_level", "3");
	/* the kicker below keeps fetching going: a small local queue
	 * suffices (librdkafka's default is 64 MB) */
	SET("queued.max.messages.kbytes", "16384");
	/* a regex subscription sees topics made after the start (a connector
	 * adding tables) within seconds, not librdkafka's 5 minutes */
	if (c->topic_regex)
		SET("topic.metadata.refresh.interval.ms", "5000");
	for (int i = 0; i < c->nkprops; i++)
	{
		char *kv = xstrdup(c->kprops[i]);
		char *eq = strchr(kv, '=');
		if (eq == NULL)
		{
			dbm_log_error("-X \"%s\": expected key=value", kv);
			free(kv);
			rd_kafka_conf_destroy(conf);
			return STOP_ERROR;
		}
		*eq = '\0';
		if (rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof(err)) != RD_KAFKA_CONF_OK)
		{
			dbm_log_error("-X %s: %s", kv, err);
			free(kv);
			rd_kafka_conf_destroy(conf);
			return STOP_ERROR;
		}
		free(kv);
	}
#undef SET
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	rd_kafka_conf_set_opaque(conf, &k);
	if ((k.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL)
	{
		dbm_log_error("could not create the Kafka consumer: %s", err);
		return STOP_ERROR;
	}
	rd_kafka_poll_set_consumer(k.rk);
	subs = rd_kafka_topic_partition_list_new(c->ntopics + 1);
	for (int i = 0; i < c->ntopics; i++)
		rd_kafka_topic_partition_list_add(subs, c->topics[i], RD_KAFKA_PARTITION_UA);
	if (c->topic_regex)
	{
		/* librdkafka takes a regex as a topic starting with ^ */
		regex = c->topic_regex[0] == '^' ? xstrdup(c->topic_regex)
										  : xasprintf("^%s", c->topic_regex);
		rd_kafka_topic_partition_list_add(subs, regex, RD_KAFKA_PARTITION_UA);
	}
	{
		rd_kafka_resp_err_t e = rd_kafka_subscribe(k.rk, subs);
		rd_kafka_topic_partition_list_destroy(subs);
		if (e)
		{
			dbm_log_error("could not subscribe: %s", rd_kafka_err2str(e));
			goto out;
		}
	}
	k.e = dbm_evapply_new(c->ap, &c->dec, c->schema, false);
	dbm_evapply_hold_barriers(k.e);
	kick = kicker_start(k.rk);
	k.kick = kick;
	c->batch_started = dbm_now_ms();
	for (;;)
	{
		rd_kafka_message_t *m;
		bool open;

		if (k.failed)
			goto out;
		if (stop_requested)
		{
			why = commit_kafka(&k) ? STOP_SIGNAL : STOP_ERROR;
			goto out;
		}
		/* asked only when a partition is done or the assignment changed:
		 * librdkafka answers on its main thread */
		if (c->stop_lsn && k.check_done && !(k.check_done = false) && all_done(&k))
		{
			why = commit_kafka(&k) ? STOP_LSN : STOP_ERROR;
			goto out;
		}
		/* with a batch in hand, look for more only briefly */
		open = k.dirty || dbm_apply_in_txn(c->ap);
		m = rd_kafka_consumer_poll(k.rk, open ? 5 : 100);
		if (m == NULL)
		{
			/* nothing waiting: commit what is applied rather than wait (as
			 * the slot path does), so a trickle of changes is committed as
			 * it comes; but 20 ms (or --batch-ms, if less) at least
			 * between such commits: while a stream keeps coming, the
			 * broker's fetches leave the queue empty for a moment many
			 * times a second */
			if (open &&
				dbm_now_ms() - c->batch_started >= (c->batch_ms < 20 ? c->batch_ms : 20) &&
				!commit_kafka(&k))
				goto out;
			if (c->until_idle > 0 &&
				dbm_now_ms() - c->last_data >= (int64_t) (c->until_idle * 1000))
			{
				why = STOP_IDLE;
				goto out;
			}
			if (!progress(c, false))
				goto out;
			continue;
		}
		kicker_consumed(kick);
		if (m->err)
		{
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				kpart *p = kpart_get(&k, rd_kafka_topic_name(m->rkt), m->partition);
				p->next = m->offset; /* the end */
				if (dbm_evapply_held(k.e) && !barrier_release(&k))
				{
					rd_kafka_message_destroy(m);
					goto out;
				}
				if (c->stop_lsn)
				{
					kpart_get(&k, rd_kafka_topic_name(m->rkt), m->partition)->done = true;
					k.check_done = true;
				}
			}
			else if (m->err != RD_KAFKA_RESP_ERR__TRANSPORT &&
					 m->err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
			{
				dbm_log_error("Kafka: %s", rd_kafka_message_errstr(m));
				rd_kafka_message_destroy(m);
				goto out;
			}
			rd_kafka_message_destroy(m);
			continue;
		}
		{
			const char *topic = rd_kafka_topic_name(m->rkt);
			kpart *p = kpart_get(&k, topic, m->partition);
			char where[400], errbuf[512];
			json_t *msg = NULL;
			dbm_event ev;
			bool ok;

			snprintf(where, sizeof(where), "%s/%d@%lld", topic, (int) m->partition,
					 (long long) m->offset);
			c->last_data = dbm_now_ms();
			if (p->done)
			{
				rd_kafka_message_destroy(m);
				continue;
			}
			memset(&ev, 0, sizeof(ev));
			/* the message before is done with: its JSON goes */
			dbm_jarena_reset(arena);
			dbm_jarena_use(arena);
			ok = dbm_decode_parse(cache, m->payload ? m->payload : "", m->payload ? m->len : 0,
								  &msg, errbuf, sizeof(errbuf));
			dbm_jarena_use(NULL);
			if (!ok || !dbm_decode_event(msg, &c->dec, &ev, errbuf, sizeof(errbuf)))
			{
				if (c->dead_letter)
				{
					char *text = xstrndup(m->payload ? m->payload : "", m->payload ? m->len : 0);
					bool dl_ok = dead_letter(c, &dl, where, errbuf, text);
					free(text);
					json_decref(msg);
					dbm_event_clear(&ev);
					if (dl_ok)
					{
						p->offset = m->offset; /* passed over, not lost: it is in the file */
						k.dirty = true;
						rd_kafka_message_destroy(m);
						continue;
					}
					rd_kafka_message_destroy(m);
					goto out;
				}
				dbm_log_error("%s: %s", where, errbuf);
				json_decref(msg);
				dbm_event_clear(&ev);
				rd_kafka_message_destroy(m);
				goto out;
			}
			if (c->stop_lsn && ev.lsn && ev.lsn > c->stop_lsn)
			{
				/* past the bound: this partition is finished */
				p->done = true;
				k.check_done = true;
				ok = true;
			}
			else
			{
				int held = dbm_evapply_held(k.e);
				ok = dbm_evapply_event(k.e, &ev, where);
				if (ok && dbm_evapply_held(k.e) > held)
				{
					/* a barrier waits: its offset is stored with it */
					p->pinned = true;
					ok = barrier_ends(&k);
				}
				if (ok && !p->pinned)
					p->offset = m->offset;
				k.dirty |= ok;
			}
			p->next = m->offset + 1;
			if (ok && dbm_evapply_held(k.e))
				ok = barrier_release(&k);
			json_decref(msg);
			dbm_event_clear(&ev);
			rd_kafka_message_destroy(m);
			if (!ok)
				goto out;
			if (((long) dbm_apply_pending_rows(c->ap) >= c->batch_rows ||
				 dbm_now_ms() - c->batch_started >= c->batch_ms) &&
				!commit_kafka(&k))
				goto out;
			if (!progress(c, false))
				goto out;
		}
	}
out:
	/* the last commit confirmed before anything is reported */
	if (why != STOP_ERROR && !dbm_apply_wait(c->ap))
		why = STOP_ERROR;
	{
		uint64_t changes = 0, skipped = 0;
		if (k.e)
			dbm_evapply_counts(k.e, &changes, &skipped);
		c->skipped = skipped;
	}
	k.kick = NULL; /* the revoke of the close below must not wait for it */
	kicker_stop(kick);
	if (why != STOP_ERROR)
	{
		rd_kafka_consumer_close(k.rk);
		rd_kafka_destroy(k.rk);
	}
	else if (lost_side(c))
	{
		/* the target is gone and a new session follows: leave the group
		 * now (the revoke commits nothing after a failure), so that the
		 * next consumer gets the partitions without waiting for the
		 * session timeout */
		k.failed = true;
		rd_kafka_consumer_close(k.rk);
		rd_kafka_destroy(k.rk);
	}
	else
	{
		/* nothing of the failed batch may be committed by a revoke */
		k.failed = true;
		rd_kafka_destroy_flags(k.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	if (why == STOP_ERROR)
		dbm_evapply_detach(k.e); /* its rows died with the batch */
	dbm_evapply_free(k.e);
	for (int i = 0; i < k.nparts; i++)
		free(k.parts[i].topic);
	free(k.parts);
	free(regex);
	dbm_schema_cache_free(cache);
	dbm_jarena_free(arena);
	if (dl)
		fclose(dl);
	return why;
}

/* ------------------------------------------------------------ sessions */

/* After a failed session: the side whose connection is gone, or NULL when
 * the failure is not one a new session can get past (a change the target
 * refuses, a missing slot, a bad password...). */
static const char *
lost_side(cdc *c)
{
	if (c->input && strcmp(c->input, "-") == 0)
		return NULL; /* what stdin gave cannot be read again */
	if (c->slot_busy || c->source_gone ||
		(c->repl && (PQstatus(c->repl) != CONNECTION_OK || !PQconsumeInput(c->repl))))
		return "source";
	if (c->ap && dbm_apply_lost(c->ap))
		return "target";
	/* a connection that could not be made: a server restarting, or down */
	if (!c->print && c->ap == NULL && PQping(c->target) != PQPING_OK)
		return "target";
	if (c->slot && c->repl == NULL && PQping(c->source) != PQPING_OK)
		return "source";
	return NULL;
}

/* Close the session's connections, keeping its counts; the next session
 * starts from the position stored on the target. */
static void
end_session(cdc *c)
{
	if (c->ap)
	{
		dbm_apply_stats st;
		dbm_apply_get_stats(c->ap, &st);
		c->done_stats.rows += st.rows;
		c->done_stats.transactions += st.transactions;
		c->done_stats.missed += st.missed;
		dbm_apply_close(c->ap);
		c->ap = NULL;
	}
	PQfinish(c->repl);
	c->repl = NULL;
	if (c->pgo)
	{
		/* a new walsender describes every relation again */
		dbm_pgo_decoder_free(c->pgo);
		c->pgo = dbm_pgo_decoder_new();
	}
	free(c->origin);
	c->origin = NULL;
	c->in_txn = c->skip_txn = c->stop_now = false;
	c->batch_txns = 0;
	c->pending = false;
	c->pend_txns = 0;
	c->where_rel = NULL;
	c->where_op = NULL;
	c->source_gone = c->slot_busy = false;
}

/* A session got going after a loss: say so once. */
static bool
session_up(cdc *c)
{
	bool ok = true;

	if (c->lost_at)
		ok = dbm_jsonl_print(json_pack("{s:s,s:s,s:i,s:I}", "type", "reconnected", "to",
									   c->lost_what,
									   "attempts", c->attempts, "ms",
									   (json_int_t) (dbm_now_ms() - c->lost_at)));
	c->lost_at = 0;
	c->attempts = 0;
	c->delay = 0;
	c->streamed = true;
	return ok;
}

/* The slot path: read the position on the target, start streaming from the
 * slot, apply until a stop. */
static stop_reason
slot_session(cdc *c)
{
	c->slot_busy = c->source_gone = false;
	if (!c->print)
	{
		dbm_apply_opts ao = {.conninfo = c->target,
							 .appname = "dbm-cdc-apply",
							 .schema = c->schema,
							 .stream = c->stream,
							 .converge = false,
							 .durable = true,
							 .origin = NULL};
		char *lsn = NULL, *offsets = NULL;
		if ((c->ap = dbm_apply_open(&ao)) == NULL ||
			!dbm_apply_get_position(c->ap, &lsn, &offsets))
			return STOP_ERROR;
		c->start_lsn = 0;
		if (lsn)
			dbm_lsn_parse(lsn, &c->start_lsn);
		free(lsn);
		free(offsets);
		c->flushed_lsn = c->start_lsn;
	}
	if ((c->repl = dbm_pg_connect_ex(c->source, "dbm-cdc-apply", true)) == NULL ||
		!start_replication(c))
		return STOP_ERROR;
	/* after the slot is ours, so a second applier is told about the slot */
	if (c->ap && c->origin_name && !dbm_apply_claim_origin(c->ap, c->origin_name))
		return STOP_ERROR;
	if (!session_up(c))
		return STOP_ERROR;
	return stream(c);
}

/* The event paths (a file or Kafka): the target, then the events. */
static stop_reason
event_session(cdc *c)
{
	if (!c->print)
	{
		/* replays of a stream converge: inserts and whole-row updates
		 * are upserts, deletes remove what is there */
		dbm_apply_opts ao = {.conninfo = c->target,
							 .appname = "dbm-cdc-apply",
							 .schema = c->schema,
							 .stream = c->stream,
							 .converge = true,
							 .origin = NULL};
		/* processes of one Kafka group share the stream: each claims an
		 * origin of its own (dbm_STREAM, dbm_STREAM_2, ...) */
		if ((c->ap = dbm_apply_open(&ao)) == NULL ||
			(c->origin_name && !dbm_apply_claim_origin(c->ap, c->origin_name)))
			return STOP_ERROR;
	}
	else if (c->target)
	{
		/* --print with --target: the target's column types convert
		 * schema-less values; nothing is written there */
		dbm_apply_opts ao = {.conninfo = c->target,
							 .appname = "dbm-cdc-apply",
							 .schema = c->schema,
							 .stream = c->stream,
							 .catalog_only = true};
		if ((c->ap = dbm_apply_open(&ao)) == NULL)
			return STOP_ERROR;
	}
	if (!session_up(c))
		return STOP_ERROR;
	return c->kafka ? run_kafka(c) : run_file(c);
}

/* Run sessions until one stops for a reason other than a lost connection,
 * or --reconnect seconds pass without getting one going. Errors of a
 * session are held until it is known whether they end the run (printed as
 * the error) or a new session follows (printed as a warning). */
static stop_reason
run_sessions(cdc *c, stop_reason (*session)(cdc *))
{
	for (;;)
	{
		stop_reason why;
		const char *side;
		char *err;
		int64_t now;

		dbm_log_hold_errors(true);
		why = session(c);
		dbm_log_hold_errors(false);
		err = dbm_log_take_held_error();
		if (why != STOP_ERROR || !c->streamed || c->reconnect <= 0 || (side = lost_side(c)) == NULL)
		{
			if (err)
				dbm_log_error("%s", err);
			free(err);
			return why;
		}
		now = dbm_now_ms();
		if (c->lost_at == 0)
		{
			c->lost_at = now;
			c->delay = 0.5;
		}
		else if (now - c->lost_at >= (int64_t) (c->reconnect * 1000))
		{
			dbm_log_error("%s (no session with the %s for %.0f s: giving up)",
						  err ? err : "connection lost", side, (double) (now - c->lost_at) / 1000);
			free(err);
			return STOP_ERROR;
		}
		dbm_log_warn("%s: reconnecting to the %s in %.1f s",
					 err ? err : "connection lost", side, c->delay);
		c->lost_what = side;
		free(err);
		end_session(c);
		c->attempts++;
		dbm_sleep(c->delay, (volatile int *) &stop_requested);
		if (stop_requested)
			return STOP_SIGNAL;
		c->delay = c->delay * 2 > 10 ? 10 : c->delay * 2;
	}
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		/* source and target */
		{"source", required_argument, NULL, 's'},
		{"target", required_argument, NULL, 'g'},
		{"slot", required_argument, NULL, 'l'},
		{"publication", required_argument, NULL, 'P'},
		{"stream", required_argument, NULL, 'n'},
		{"dbm-schema", required_argument, NULL, 'S'},
		{"skip-origin", required_argument, NULL, 'O'},
		{"origin", required_argument, NULL, 'o'},
		{"no-origin", no_argument, NULL, 'N'},
		/* bounds */
		{"stop-at-lsn", required_argument, NULL, 'a'},
		{"until-idle", required_argument, NULL, 'i'},
		/* batching */
		{"batch-rows", required_argument, NULL, 'r'},
		{"batch-ms", required_argument, NULL, 'm'},
		/* output */
		{"print", no_argument, NULL, 'p'},
		{"format", required_argument, NULL, 'F'},
		{"binary-mode", required_argument, NULL, 'B'},
		{"decimal-mode", required_argument, NULL, 'E'},
		{"dms-before-field", required_argument, NULL, 'D'},
		{"dead-letter", required_argument, NULL, 'Y'},
		{"kafka", required_argument, NULL, 'k'},
		{"topic", required_argument, NULL, 'T'},
		{"topic-regex", required_argument, NULL, 'R'},
		{"group", required_argument, NULL, 'G'},
		{"metrics-file", required_argument, NULL, 'M'},
		{"progress-interval", required_argument, NULL, 'I'},
		{"reconnect", required_argument, NULL, 'C'},
		{"log-json", no_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	cdc c = {0};
	bool no_origin = false;
	char *origin_buf = NULL, *stream_buf = NULL;
	int opt, rc = 2;
	stop_reason why = STOP_ERROR;

	dbm_log_init(argv[0]);
	dbm_jarena_install(); /* before any JSON value is made */
	dbm_secret_init(argc, argv);
	opterr = 0;
	/* each JSON line reaches a pipe or file when it is written */
	setvbuf(stdout, NULL, _IOLBF, 0);
	c.source = getenv("DBM_SOURCE");
	c.target = getenv("DBM_TARGET");
	c.schema = "dbm";
	c.dec.binary_mode = "base64";
	c.dec.dms_before = "before-image";
	c.batch_rows = 10000;
	c.batch_ms = 200;
	c.progress_every = 5;
	c.reconnect = 600;
	c.topics = xcalloc((size_t) argc + 1, sizeof(char *));
	c.kprops = xcalloc((size_t) argc + 1, sizeof(char *));
	while ((opt = getopt_long(argc, argv, "X:Vh", long_options, NULL)) != -1)
	{
		switch (opt)
		{
			case 's': c.source = optarg; break;
			case 'g': c.target = optarg; break;
			case 'l': c.slot = optarg; break;
			case 'P': c.publication = optarg; break;
			case 'n': c.stream = optarg; break;
			case 'S': c.schema = optarg; break;
			case 'O': c.skip_origin = optarg; break;
			case 'o': c.origin_name = optarg; break;
			case 'N': no_origin = true; break;
			case 'a':
				if (!dbm_lsn_parse(optarg, &c.stop_lsn) || c.stop_lsn == 0)
				{
					dbm_log_error("invalid value \"%s\" for --stop-at-lsn: expected an LSN like 0/1A2B3C",
								  optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'i':
				if (!dbm_parse_seconds(optarg, &c.until_idle) || c.until_idle <= 0)
				{
					dbm_log_error("invalid value \"%s\" for --until-idle: expected seconds", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'r':
				if (!dbm_parse_long(optarg, 1, 100000000, &c.batch_rows))
				{
					dbm_log_error("invalid value \"%s\" for --batch-rows", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'm':
				if (!dbm_parse_long(optarg, 0, 3600000, &c.batch_ms))
				{
					dbm_log_error("invalid value \"%s\" for --batch-ms", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'p': c.print = true; break;
			case 'F':
				if (strcmp(optarg, "auto") != 0)
				{
					dbm_log_error("invalid value \"%s\" for --format: each event is recognized"
								  " (auto)", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'B':
				if (strcmp(optarg, "base64") != 0 && strcmp(optarg, "hex") != 0)
				{
					dbm_log_error("invalid value \"%s\" for --binary-mode: base64 or hex", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				c.dec.binary_mode = optarg;
				break;
			case 'E':
				if (strcmp(optarg, "precise") != 0 && strcmp(optarg, "string") != 0)
				{
					dbm_log_error("invalid value \"%s\" for --decimal-mode: precise or string",
								  optarg);
					dbm_log_usage_hint();
					return 2;
				}
				c.dec.decimal_mode = optarg;
				break;
			case 'D': c.dec.dms_before = optarg; break;
			case 'Y': c.dead_letter = optarg; break;
			case 'k': c.kafka = optarg; break;
			case 'T': c.topics[c.ntopics++] = optarg; break;
			case 'R': c.topic_regex = optarg; break;
			case 'G': c.group = optarg; break;
			case 'X': c.kprops[c.nkprops++] = optarg; break;
			case 'M': c.metrics_file = optarg; break;
			case 'I':
				if (!dbm_parse_seconds(optarg, &c.progress_every) || c.progress_every <= 0)
				{
					dbm_log_error("invalid value \"%s\" for --progress-interval", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'C':
				if (!dbm_parse_seconds(optarg, &c.reconnect) || c.reconnect < 0)
				{
					dbm_log_error("invalid value \"%s\" for --reconnect: expected seconds", optarg);
					dbm_log_usage_hint();
					return 2;
				}
				break;
			case 'L': dbm_log_set_json(true); break;
			case 'V': printf("dbm-cdc-apply (dbm) %s\n", DBM_VERSION); return 0;
			case 'h': usage(); return 0;
			default: dbm_log_bad_option(argv, optind); return 2;
		}
	}
	if (optind < argc)
		c.input = argv[optind++];
	if (optind < argc)
	{
		dbm_log_error("unexpected argument \"%s\"", argv[optind]);
		dbm_log_usage_hint();
		return 2;
	}
	if ((c.input != NULL) + (c.slot != NULL) + (c.kafka != NULL) > 1)
	{
		dbm_log_error("give one source: --slot, --kafka, or an input FILE");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.input == NULL && c.slot == NULL && c.kafka == NULL)
	{
		dbm_log_error("--slot is required (or --kafka, or an input FILE, \"-\" for stdin)");
		dbm_log_usage_hint();
		return 2;
	}
	if (!c.kafka && (c.ntopics || c.topic_regex || c.group || c.nkprops))
	{
		dbm_log_error("--topic, --topic-regex, --group and -X need --kafka");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.kafka && c.ntopics == 0 && c.topic_regex == NULL)
	{
		dbm_log_error("--topic or --topic-regex is required with --kafka");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.input && c.until_idle > 0)
	{
		dbm_log_error("--until-idle applies to --slot and --kafka; a FILE ends at its end");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.kafka && c.print)
	{
		dbm_log_error("--print reads a slot or a file, not Kafka (use kcat)");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.slot && c.source == NULL)
	{
		dbm_log_error("--source is required");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.target == NULL && !c.print)
	{
		dbm_log_error("--target is required (or --print)");
		dbm_log_usage_hint();
		return 2;
	}
	if (c.input || c.kafka)
	{
		if (c.stream == NULL && c.kafka)
			c.stream = stream_buf = xasprintf("kafka:%s", c.group ? c.group : "dbm-cdc-apply");
		else if (c.stream == NULL)
			c.stream = stream_buf = strcmp(c.input, "-") == 0 ? xstrdup("stdin")
															   : xasprintf("file:%s", c.input);
		dbm_buf_init(&c.where);
		c.started = dbm_now_ms();
		c.last_data = c.started;
		c.last_progress = c.started;
		if (!c.print && c.origin_name == NULL && !no_origin)
			c.origin_name = origin_buf = xasprintf("dbm_%s", c.stream);
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		why = run_sessions(&c, event_session);
		if (why == STOP_ERROR)
			goto out;
		progress(&c, true);
		{
			dbm_apply_stats st = {0};
			get_stats(&c, &st);
			if (dbm_jsonl_print(json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "type", "stopped",
										  "reason", stop_name[why], "applied",
										  (json_int_t) (!c.print ? st.rows : c.printed),
										  "transactions", (json_int_t) c.applied_txns,
										  "skipped", (json_int_t) c.skipped, "missed",
										  (json_int_t) st.missed)))
				rc = 0;
		}
		goto out;
	}
	if (c.publication == NULL)
		c.publication = c.slot;
	/* forward and reverse streams never echo each other: what this tool
	 * applies carries its origin, and transactions with that origin
	 * coming back are skipped */
	if (c.stream == NULL)
		c.stream = c.slot;
	if (c.origin_name == NULL && !no_origin)
		c.origin_name = origin_buf = xasprintf("dbm_%s", c.stream);
	if (c.skip_origin == NULL && !no_origin)
		c.skip_origin = "dbm_*";
	dbm_buf_init(&c.where);
	c.pgo = dbm_pgo_decoder_new();
	c.started = dbm_now_ms();
	c.last_data = c.started;
	c.last_progress = c.started;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	why = run_sessions(&c, slot_session);
	if (why == STOP_ERROR)
		goto out;
	progress(&c, true);
	{
		dbm_apply_stats st = {0};
		char lsn[32];
		if (!c.print)
			get_stats(&c, &st);
		else
			st.rows = c.printed;
		st.transactions = c.applied_txns;
		dbm_lsn_format(c.flushed_lsn, lsn);
		if (dbm_jsonl_print(json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "type", "stopped",
									  "reason", stop_name[why], "lsn", lsn, "applied",
									  (json_int_t) st.rows, "transactions",
									  (json_int_t) st.transactions, "missed",
									  (json_int_t) st.missed)))
			rc = 0;
	}
	if (c.repl)
	{
		/* tell the slot what is flushed before leaving */
		send_feedback(&c, false);
	}

out:
	dbm_apply_close(c.ap);
	PQfinish(c.repl);
	dbm_pgo_decoder_free(c.pgo);
	free(c.origin);
	free(origin_buf);
	free(stream_buf);
	free(c.topics);
	free(c.kprops);
	dbm_buf_free(&c.where);
	if (fclose(stdout) != 0 && rc == 0)
	{
		dbm_log_error("could not write to stdout: %m");
		rc = 2;
	}
	return rc;
}
