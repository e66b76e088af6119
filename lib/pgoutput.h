/* pgoutput.h - parse the messages of PostgreSQL's pgoutput logical
 * decoding plugin (protocol version 1) and the replication protocol's
 * CopyData frames around them. */
#ifndef DBM_PGOUTPUT_H
#define DBM_PGOUTPUT_H

#include "change.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Microseconds between the Unix epoch and 2000-01-01, PostgreSQL's epoch. */
#define DBM_PG_EPOCH_OFFSET_US INT64_C(946684800000000)

/* A bounds-checked reader over one message. */
typedef struct
{
	const char *p;
	const char *end;
	bool bad;
} dbm_rd;

void dbm_rd_init(dbm_rd *r, const char *p, size_t len);
uint8_t dbm_rd_u8(dbm_rd *r);
uint16_t dbm_rd_u16(dbm_rd *r);
uint32_t dbm_rd_u32(dbm_rd *r);
uint64_t dbm_rd_u64(dbm_rd *r);
/* A NUL-terminated string inside the message; "" when malformed. */
const char *dbm_rd_str(dbm_rd *r);
const char *dbm_rd_bytes(dbm_rd *r, uint32_t n);

void dbm_put_u64(char *p, uint64_t v);

typedef struct
{
	uint64_t final_lsn;
	int64_t commit_time; /* microseconds since 2000-01-01 */
	uint32_t xid;
} dbm_pgo_begin;

typedef struct
{
	uint64_t commit_lsn;
	uint64_t end_lsn;
	int64_t commit_time;
} dbm_pgo_commit;

/* Parse a Relation message ('R' already read) into a new dbm_srcrel. */
dbm_srcrel *dbm_pgo_relation(dbm_rd *r);
/* Parse TupleData into vals (ncols entries); values point into the
 * message. false when malformed or the column count is not ncols. */
bool dbm_pgo_tuple(dbm_rd *r, int ncols, dbm_val *vals);

/* One CopyData payload of the replication stream (START_REPLICATION). */
typedef struct
{
	char kind;			/* 'w' XLogData or 'k' primary keepalive */
	uint64_t wal_start; /* w */
	uint64_t wal_end;	/* w, k: the server's end of WAL */
	int64_t time;		/* w, k: the server's clock */
	bool reply;			/* k: the server asks for a status update */
	const char *msg;	/* w: the pgoutput message, inside buf */
	size_t len;
} dbm_pgo_frame;

/* Take apart one CopyData payload; false for a kind this client does not
 * know or one too short for its header (to be ignored). */
bool dbm_pgo_frame_parse(const char *buf, size_t len, dbm_pgo_frame *f);

/* One pgoutput message taken apart. Pointers point into the message or
 * into the decoder and live until the next dbm_pgo_decode. */
typedef struct
{
	char kind;			  /* B O R Y I U D T M C */
	dbm_pgo_begin begin;  /* B */
	dbm_pgo_commit commit; /* C */
	const char *origin;	  /* O: the origin's name */
	/* R: the new relation, the caller's to free or give to
	 * dbm_pgo_rel_put; I U D: the known relation it changes */
	dbm_srcrel *rel;
	uint32_t ntrunc;		   /* T: how many relations */
	const uint32_t *trunc_ids; /* T: their ids (known or not) */
	uint8_t trunc_opts;		   /* T: 1 CASCADE, 2 RESTART IDENTITY */
	uint8_t msg_flags;		   /* M: 1 transactional */
	uint64_t msg_lsn;		   /* M */
	const char *msg_prefix;	   /* M */
	const char *msg_content;   /* M: msg_len bytes, not terminated */
	uint32_t msg_len;
	dbm_rd rd; /* I U D: at the tuples, for dbm_pgo_decode_change */
} dbm_pgo_msg;

/* The decoding state of one stream: the relations it described. */
typedef struct dbm_pgo_decoder dbm_pgo_decoder;

dbm_pgo_decoder *dbm_pgo_decoder_new(void);
/* Frees the relations it holds too; accepts NULL. */
void dbm_pgo_decoder_free(dbm_pgo_decoder *d);
/* The relation with this id, or NULL. */
dbm_srcrel *dbm_pgo_rel_find(dbm_pgo_decoder *d, uint32_t id);
/* Keep r (the decoder owns it from now on), in place of the relation with
 * its id: that one is returned, the caller's to free, or NULL. */
dbm_srcrel *dbm_pgo_rel_put(dbm_pgo_decoder *d, dbm_srcrel *r);

/*
 * Take apart one pgoutput message (protocol version 1). Only the header of
 * an Insert, Update or Delete is read (its relation must be known): its
 * rows are taken apart by dbm_pgo_decode_change, so a change that is
 * skipped costs nothing. false after logging (malformed, unknown type,
 * change of a relation not described yet).
 */
bool dbm_pgo_decode(dbm_pgo_decoder *d, const char *msg, size_t len, dbm_pgo_msg *m);
/* The rows of an Insert, Update or Delete into ch (op, rel, newv, oldv,
 * old_is_key); the values live in the decoder until the next call. false
 * after logging when malformed. */
bool dbm_pgo_decode_change(dbm_pgo_decoder *d, dbm_pgo_msg *m, dbm_change *ch);

/* "X/Y" form of an LSN; out has room for 32 bytes. */
void dbm_lsn_format(uint64_t lsn, char out[32]);
bool dbm_lsn_parse(const char *s, uint64_t *lsn);

#endif
