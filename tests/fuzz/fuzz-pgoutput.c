/* fuzz-pgoutput.c - the replication stream as dbm-cdc-apply reads it from
 * a slot: CopyData payloads (XLogData carrying pgoutput messages, primary
 * keepalives) taken apart by lib/pgoutput.c, with the relation state and
 * the transaction checks the tool keeps. No database: nothing is applied.
 *
 * Input: frames, each an Int32 length (big-endian) and that many bytes of
 * one CopyData payload; a last frame cut short is taken as it is. The
 * stream ends where the tool would stop with an error. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"

#include "pgoutput.h"
#include "util.h"

#include <string.h>

/* Read every byte of a change's values, so a value pointing outside its
 * message is caught here. */
static uint32_t
touch(const dbm_srcrel *r, const dbm_val *v)
{
	uint32_t sum = 0;

	if (v == NULL)
		return 0;
	for (int i = 0; i < r->ncols; i++)
		for (uint32_t k = 0; v[i].kind == DBM_VAL_TEXT && k < v[i].len; k++)
			sum += (unsigned char) v[i].data[k];
	return sum;
}

/* One frame, as dbm-cdc-apply's handle() takes it: false where the tool
 * would stop. */
static bool
frame(dbm_pgo_decoder *d, bool *in_txn, const char *buf, size_t len)
{
	uint32_t sink = 0;
	dbm_pgo_frame fr;
	dbm_pgo_msg m;
	dbm_change ch;

	if (!dbm_pgo_frame_parse(buf, len, &fr) || fr.kind != 'w')
		return true;
	if (!dbm_pgo_decode(d, fr.msg, fr.len, &m))
		return false;
	switch (m.kind)
	{
		case 'B':
			*in_txn = true;
			break;
		case 'C':
			if (!*in_txn)
				return false;
			*in_txn = false;
			break;
		case 'R':
			dbm_srcrel_free(dbm_pgo_rel_put(d, m.rel));
			break;
		case 'I':
		case 'U':
		case 'D':
			if (!*in_txn || !dbm_pgo_decode_change(d, &m, &ch))
				return false;
			sink += touch(ch.rel, ch.newv) + touch(ch.rel, ch.oldv);
			sink += (uint32_t) strlen(ch.rel->qname);
			break;
		case 'T':
			for (uint32_t i = 0; i < m.ntrunc; i++)
			{
				dbm_srcrel *r = dbm_pgo_rel_find(d, m.trunc_ids[i]);
				if (r)
					sink += (uint32_t) strlen(r->qname);
			}
			break;
		case 'M':
			for (uint32_t k = 0; k < m.msg_len; k++)
				sink += (unsigned char) m.msg_content[k];
			sink += (uint32_t) strlen(m.msg_prefix);
			break;
		case 'O':
			sink += (uint32_t) strlen(m.origin);
			break;
	}
	dbm_fuzz_use(sink);
	return true;
}

int
dbm_fuzz_pgoutput(const uint8_t *data, size_t size)
{
	dbm_pgo_decoder *d = dbm_pgo_decoder_new();
	size_t pos = 0;
	bool in_txn = false, ok = true;

	while (ok && size - pos >= 4)
	{
		uint32_t n = ((uint32_t) data[pos] << 24) | ((uint32_t) data[pos + 1] << 16) |
					 ((uint32_t) data[pos + 2] << 8) | data[pos + 3];
		char *buf;

		pos += 4;
		if (n > size - pos)
			n = (uint32_t) (size - pos);
		/* a buffer of its own, as PQgetCopyData gives one */
		buf = xmalloc(n);
		memcpy(buf, data + pos, n);
		ok = frame(d, &in_txn, buf, n);
		free(buf);
		dbm_fuzz_forget_errors();
		pos += n;
	}
	dbm_pgo_decoder_free(d);
	return 0;
}

DBM_FUZZ_TARGET(dbm_fuzz_pgoutput)
