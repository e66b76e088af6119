/* evapply.h - apply (or print) decoded change events: Debezium, AWS DMS
 * and dbm lines, from files, stdin or Kafka. */
#ifndef DBM_EVAPPLY_H
#define DBM_EVAPPLY_H

#include "apply.h"
#include "decode.h"

#include <stdbool.h>

typedef struct dbm_evapply dbm_evapply;

/* print: write the normalized change lines instead of applying; ap may
 * then be NULL, or a catalog-only engine whose column types drive the
 * conversion of schema-less values. */
dbm_evapply *dbm_evapply_new(dbm_apply *ap, const dbm_decode_opts *o,
							 const char *schema, bool print);
/* Apply or print one event; where ("file:line", "topic/partition@offset")
 * prefixes error messages. false after logging. */
bool dbm_evapply_event(dbm_evapply *e, dbm_event *ev, const char *where);
/* A barrier (a logical message with prefix "dbm") is applied as a row of
 * <schema>.barrier in the open target transaction.  With barriers held, it
 * waits instead until dbm_evapply_release: for inputs read out of order
 * (Kafka partitions), the caller releases it once everything before it is
 * applied. */
void dbm_evapply_hold_barriers(dbm_evapply *e);
/* Barriers waiting. */
int dbm_evapply_held(const dbm_evapply *e);
/* Queue the waiting barriers' rows in the open target transaction; false
 * after logging. */
bool dbm_evapply_release(dbm_evapply *e);
/* Events seen by kind, for the stopped line. */
void dbm_evapply_counts(dbm_evapply *e, uint64_t *changes, uint64_t *skipped);
void dbm_evapply_free(dbm_evapply *e);
/* Forget the apply engine (its connection is gone): dbm_evapply_free then
 * sends nothing. */
void dbm_evapply_detach(dbm_evapply *e);

#endif
