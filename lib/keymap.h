/* keymap.h - a hash map from row keys (byte strings) to what each side of a
 * comparison holds for that key: how many rows and their row hash. Used to
 * drill down into differing buckets. */
#ifndef DBM_KEYMAP_H
#define DBM_KEYMAP_H

#include "hash.h"

#include <stddef.h>
#include <stdint.h>

typedef struct
{
	char *key;
	uint32_t keylen;
	uint32_t count[2]; /* rows seen on the left (0) and right (1) */
	dbm_h128 hash[2];  /* hash of the last row seen on each side */
	uint64_t khash;
} dbm_keyent;

typedef struct
{
	dbm_keyent *ents; /* open addressing, linear probing */
	size_t cap;		  /* power of two */
	size_t n;
} dbm_keymap;

void dbm_keymap_init(dbm_keymap *m);
/* Record one row of a side; copies the key. Returns the entry. */
dbm_keyent *dbm_keymap_add(dbm_keymap *m, const char *key, size_t keylen,
						   int side, dbm_h128 h);
dbm_keyent *dbm_keymap_get(dbm_keymap *m, const char *key, size_t keylen);
/* Frees every key and the table; the map can be reused after init. */
void dbm_keymap_free(dbm_keymap *m);

#endif
