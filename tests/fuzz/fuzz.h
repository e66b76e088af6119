/* fuzz.h - the fuzz targets, one per input surface. Each fuzz-<name>.c
 * defines dbm_fuzz_<name>(), which takes one input and must neither crash
 * nor trip a sanitizer whatever the bytes; built with -DDBM_LIBFUZZER
 * (make fuzz) it is libFuzzer's entry point, and replay.c (make test)
 * runs every target over the inputs kept in tests/fuzz. */
#ifndef DBM_FUZZ_H
#define DBM_FUZZ_H

#include "log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* pgoutput: one CopyData payload of the replication stream */
int dbm_fuzz_pgoutput(const uint8_t *data, size_t size);
/* Debezium: one Kafka message value (JSON, with or without a schema) */
int dbm_fuzz_debezium(const uint8_t *data, size_t size);
/* AWS DMS: one Kafka-target record */
int dbm_fuzz_dms(const uint8_t *data, size_t size);
/* dbm-hash output, as dbm-diff reads it: two files joined by a form feed
 * (one file: compared with itself) */
int dbm_fuzz_hashfile(const uint8_t *data, size_t size);

/* Once per process: stdout to /dev/null, errors kept, not printed (the
 * decoders print JSON lines and errors, millions of them while fuzzing). */
static inline void
dbm_fuzz_quiet(void)
{
	if (freopen("/dev/null", "w", stdout) == NULL)
		abort();
	dbm_log_hold_errors(true);
}

/* Keep a value computed from what a decoder produced, so reading it is
 * not optimized away (and a sanitizer sees every byte read). */
static inline void
dbm_fuzz_use(uint32_t v)
{
	__asm__ volatile("" : : "r"(v));
}

/* After each input: drop the error it kept, if any. */
static inline void
dbm_fuzz_forget_errors(void)
{
	free(dbm_log_take_held_error());
}

#ifdef DBM_LIBFUZZER
#define DBM_FUZZ_TARGET(fn)                                                    \
	int LLVMFuzzerInitialize(int *argc, char ***argv);                         \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);              \
	int LLVMFuzzerInitialize(int *argc, char ***argv)                          \
	{                                                                          \
		(void) argc;                                                           \
		(void) argv;                                                           \
		dbm_fuzz_quiet();                                                      \
		return 0;                                                              \
	}                                                                          \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)               \
	{                                                                          \
		return fn(data, size);                                                 \
	}
#else
#define DBM_FUZZ_TARGET(fn)
#endif

#endif
