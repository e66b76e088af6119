/* fuzz-debezium.c - one Kafka message value from Debezium's PostgreSQL
 * connector (JsonConverter with or without schemas: change events,
 * tombstones, heartbeats, transaction metadata, logical messages) through
 * lib/decode.c. See events.h. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include "events.h"

int
dbm_fuzz_debezium(const uint8_t *data, size_t size)
{
	return fuzz_event(data, size, NULL);
}

DBM_FUZZ_TARGET(dbm_fuzz_debezium)
