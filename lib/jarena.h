/* jarena.h - bump allocation for jansson's parser.
 *
 * Parsing a change event makes a hundred small jansson allocations, freed
 * together once the event is applied: malloc and free were a fifth of
 * dbm-cdc-apply's CPU. With dbm_jarena_install, jansson allocates from the
 * calling thread's arena while one is in use (dbm_jarena_use), else from
 * malloc; freeing a value that lives in an arena does nothing, and the
 * arena is reset as a whole once nothing in it is used any more. Values of
 * both kinds mix freely in one tree and may be freed by any thread.
 *
 * Use an arena only around json_loadb and the like: what jansson returns
 * to be freed with free() (json_dumps) must come from malloc. */
#ifndef DBM_JARENA_H
#define DBM_JARENA_H

typedef struct dbm_jarena dbm_jarena;

/* Once, before any jansson value is made (json_set_alloc_funcs). */
void dbm_jarena_install(void);
dbm_jarena *dbm_jarena_new(void);
/* Everything allocated from it is gone (its memory is kept for reuse). */
void dbm_jarena_reset(dbm_jarena *a);
/* Its memory goes back to a pool for the next arena. */
void dbm_jarena_free(dbm_jarena *a);
/* This thread's jansson allocations come from a (NULL: malloc) until the
 * next call; returns the arena in use before. */
dbm_jarena *dbm_jarena_use(dbm_jarena *a);

#endif
