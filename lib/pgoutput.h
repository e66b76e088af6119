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

/* "X/Y" form of an LSN; out has room for 32 bytes. */
void dbm_lsn_format(uint64_t lsn, char out[32]);
bool dbm_lsn_parse(const char *s, uint64_t *lsn);

#endif
