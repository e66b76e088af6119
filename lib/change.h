/* change.h - the normalized change that every source (pgoutput, Debezium,
 * AWS DMS, dbm JSON lines) is turned into before it is applied. */
#ifndef DBM_CHANGE_H
#define DBM_CHANGE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum
{
	DBM_VAL_NULL,
	DBM_VAL_TEXT,
	DBM_VAL_UNCHANGED /* an unchanged TOAST value: never written */
} dbm_valkind;

typedef struct
{
	dbm_valkind kind;
	const char *data; /* PostgreSQL text representation, not terminated */
	uint32_t len;
} dbm_val;

/* A source relation as the change stream describes it. */
typedef struct
{
	uint32_t id;	  /* the stream's relation id */
	char *nsp;
	char *name;
	char *qname;	  /* schema.table quoted as format('%I.%I') */
	char ident;		  /* replica identity: d, n, f, i */
	int ncols;
	char **cols;
	bool *key;		  /* part of the replica identity */
	uint32_t *types;  /* type OIDs on the source (0 when unknown) */
	int32_t *typmods;
	char **tnames;	  /* target type names (format_type), or NULL */
	void *apply;	  /* the apply engine's mapping, owned by it */
} dbm_srcrel;

typedef enum
{
	DBM_OP_INSERT = 'I',
	DBM_OP_UPDATE = 'U',
	DBM_OP_DELETE = 'D'
} dbm_op;

typedef struct
{
	dbm_op op;
	dbm_srcrel *rel;
	dbm_val *newv; /* ncols values, or NULL (delete) */
	dbm_val *oldv; /* ncols values of the old row or key, or NULL */
	bool old_is_key; /* oldv holds only the identity columns */
} dbm_change;

void dbm_srcrel_free(dbm_srcrel *r);

#endif
