/* jarena.c - bump allocation for jansson's parser: see jarena.h.
 *
 * An arena is a list of 1 MB chunks, each aligned on 1 MB, so the chunk of
 * any pointer is found by masking it. Every chunk ever made is in a
 * registry that only grows (chunks are pooled, never given back to
 * malloc), which jansson's free function reads without a lock: a pointer
 * whose chunk is registered lives in an arena and is not freed one by
 * one. A value is handed to another thread under a lock, after its chunk
 * was registered, so the reader always sees the registration. */
#define _POSIX_C_SOURCE 200809L
#include "jarena.h"

#include "util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define CHUNK ((size_t) 1 << 20)
#define BIG (CHUNK / 16)	 /* larger allocations come from malloc */
#define REG_BITS 16			 /* registry slots: 64 GB of chunks */
#define REG_CAP ((size_t) 1 << REG_BITS)
#define ALIGN 16

struct dbm_jarena
{
	char **chunks;
	int n, cap;
	int cur;	/* chunk being filled */
	size_t pos; /* next free byte in it */
};

static _Atomic uintptr_t reg[REG_CAP];
static size_t reg_n;
static char **pool; /* chunks of freed arenas */
static int npool, pool_cap;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local dbm_jarena *cur;

static size_t
slot_of(uintptr_t base)
{
	return (size_t) (((base >> 20) * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - REG_BITS));
}

static bool
in_arena(const void *p)
{
	uintptr_t base = (uintptr_t) p & ~(uintptr_t) (CHUNK - 1);
	for (size_t i = slot_of(base);; i = (i + 1) & (REG_CAP - 1))
	{
		uintptr_t v = atomic_load_explicit(&reg[i], memory_order_acquire);
		if (v == base)
			return true;
		if (v == 0)
			return false;
	}
}

/* A chunk for an arena: from the pool, or new and registered; NULL when
 * the registry is full (the caller falls back to malloc). */
static char *
chunk_get(void)
{
	char *c = NULL;

	pthread_mutex_lock(&mu);
	if (npool > 0)
		c = pool[--npool];
	else if (reg_n < REG_CAP / 2 && (c = aligned_alloc(CHUNK, CHUNK)) != NULL)
	{
		size_t i = slot_of((uintptr_t) c);
		while (atomic_load_explicit(&reg[i], memory_order_relaxed) != 0)
			i = (i + 1) & (REG_CAP - 1);
		atomic_store_explicit(&reg[i], (uintptr_t) c, memory_order_release);
		reg_n++;
	}
	pthread_mutex_unlock(&mu);
	return c;
}

static void *
jmalloc(size_t size)
{
	dbm_jarena *a = cur;

	if (a == NULL || size > BIG)
		return malloc(size);
	size = (size + ALIGN - 1) & ~(size_t) (ALIGN - 1);
	if (a->n == 0 || a->pos + size > CHUNK)
	{
		if (a->n > 0 && a->cur + 1 < a->n)
			a->cur++;
		else
		{
			char *c = chunk_get();
			if (c == NULL)
				return malloc(size);
			if (a->n == a->cap)
			{
				a->cap = a->cap ? a->cap * 2 : 4;
				a->chunks = xrealloc(a->chunks, sizeof(char *) * (size_t) a->cap);
			}
			a->chunks[a->n] = c;
			a->cur = a->n++;
		}
		a->pos = 0;
	}
	a->pos += size;
	return a->chunks[a->cur] + a->pos - size;
}

static void
jfree(void *p)
{
	if (p != NULL && !in_arena(p))
		free(p);
}

void
dbm_jarena_install(void)
{
	json_set_alloc_funcs(jmalloc, jfree);
}

dbm_jarena *
dbm_jarena_new(void)
{
	return xcalloc(1, sizeof(dbm_jarena));
}

void
dbm_jarena_reset(dbm_jarena *a)
{
	a->cur = 0;
	a->pos = 0;
}

void
dbm_jarena_free(dbm_jarena *a)
{
	if (a == NULL)
		return;
	if (cur == a)
		cur = NULL;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < a->n; i++)
	{
		if (npool == pool_cap)
		{
			pool_cap = pool_cap ? pool_cap * 2 : 16;
			pool = xrealloc(pool, sizeof(char *) * (size_t) pool_cap);
		}
		pool[npool++] = a->chunks[i];
	}
	pthread_mutex_unlock(&mu);
	free(a->chunks);
	free(a);
}

dbm_jarena *
dbm_jarena_use(dbm_jarena *a)
{
	dbm_jarena *was = cur;
	cur = a;
	return was;
}
