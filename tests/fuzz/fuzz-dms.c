/* fuzz-dms.c - one AWS DMS Kafka-target record (data and control records,
 * before images under a configured attribute name) through lib/decode.c.
 * See events.h. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include "events.h"

int
dbm_fuzz_dms(const uint8_t *data, size_t size)
{
	return fuzz_event(data, size, "BI");
}

DBM_FUZZ_TARGET(dbm_fuzz_dms)
