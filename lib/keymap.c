/* keymap.c - open-addressing hash map of row keys, keyed by XXH3-64. */
#define _POSIX_C_SOURCE 200809L
#include "keymap.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void
dbm_keymap_init(dbm_keymap *m)
{
	m->cap = 1024;
	m->n = 0;
	m->ents = xcalloc(m->cap, sizeof(dbm_keyent));
}

static dbm_keyent *
find(dbm_keyent *ents, size_t cap, uint64_t kh, const char *key,
	 size_t keylen)
{
	size_t i = (size_t) kh & (cap - 1);
	for (;;)
	{
		dbm_keyent *e = &ents[i];
		if (e->key == NULL)
			return e;
		if (e->khash == kh && e->keylen == keylen &&
			memcmp(e->key, key, keylen) == 0)
			return e;
		i = (i + 1) & (cap - 1);
	}
}

static void
grow(dbm_keymap *m)
{
	size_t cap = m->cap * 2;
	dbm_keyent *ents = xcalloc(cap, sizeof(dbm_keyent));
	for (size_t i = 0; i < m->cap; i++)
		if (m->ents[i].key)
			*find(ents, cap, m->ents[i].khash, m->ents[i].key,
				  m->ents[i].keylen) = m->ents[i];
	free(m->ents);
	m->ents = ents;
	m->cap = cap;
}

dbm_keyent *
dbm_keymap_add(dbm_keymap *m, const char *key, size_t keylen, int side,
			   dbm_h128 h)
{
	uint64_t kh = XXH3_64bits(key, keylen);
	dbm_keyent *e;

	if ((m->n + 1) * 4 > m->cap * 3)
		grow(m);
	e = find(m->ents, m->cap, kh, key, keylen);
	if (e->key == NULL)
	{
		e->key = xstrndup(key, keylen);
		e->keylen = (uint32_t) keylen;
		e->khash = kh;
		m->n++;
	}
	e->count[side]++;
	e->hash[side] = h;
	return e;
}

dbm_keyent *
dbm_keymap_get(dbm_keymap *m, const char *key, size_t keylen)
{
	dbm_keyent *e = find(m->ents, m->cap, XXH3_64bits(key, keylen), key,
						 keylen);
	return e->key ? e : NULL;
}

void
dbm_keymap_free(dbm_keymap *m)
{
	if (m == NULL || m->ents == NULL)
		return;
	for (size_t i = 0; i < m->cap; i++)
		free(m->ents[i].key);
	free(m->ents);
	m->ents = NULL;
	m->cap = m->n = 0;
}
