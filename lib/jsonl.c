/* jsonl.c - JSON lines with jansson. */
#define _POSIX_C_SOURCE 200809L
#include "jsonl.h"

#include "hash.h"
#include "log.h"

#include <errno.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

bool
dbm_jsonl_print(json_t *o)
{
	char *s;
	bool ok;

	if (o == NULL)
		return false;
	/* rates and seconds: six significant digits, not binary noise */
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(o);
	if (s == NULL)
	{
		dbm_log_error("could not encode a JSON line");
		return false;
	}
	flockfile(stdout);
	ok = fputs(s, stdout) >= 0 && putc('\n', stdout) != EOF;
	funlockfile(stdout);
	free(s);
	if (!ok)
		dbm_log_error("could not write to stdout: %m");
	return ok;
}

json_t *
dbm_key_json(const dbm_table *t, const char *key, size_t keylen)
{
	const char **names;
	int n = dbm_table_key_names(t, &names);
	json_t *o = json_object();
	const char *p = key, *end = key + keylen;
	dbm_buf v;

	dbm_buf_init(&v);
	for (int i = 0; i < n; i++)
	{
		const char *tab = memchr(p, '\t', (size_t) (end - p));
		const char *fend = tab ? tab : end;
		if (dbm_copy_unescape(p, (size_t) (fend - p), &v))
		{
			json_t *s = json_stringn(v.data, v.len);
			/* not UTF-8 (a SQL_ASCII database): keep it readable and
			 * unambiguous as the bytes in hex */
			if (s == NULL)
			{
				char *hex = xmalloc(v.len * 2 + 3);
				memcpy(hex, "\\x", 2);
				for (size_t b = 0; b < v.len; b++)
					snprintf(hex + 2 + b * 2, 3, "%02x", (unsigned char) v.data[b]);
				s = json_string(hex);
				free(hex);
			}
			json_object_set_new(o, names[i], s);
		}
		else
			json_object_set_new(o, names[i], json_null());
		p = tab ? tab + 1 : end;
	}
	dbm_buf_free(&v);
	free(names);
	return o;
}

bool
dbm_jsonl_open(dbm_jsonl_reader *r, const char *path)
{
	memset(r, 0, sizeof(*r));
	r->path = path;
	if (strcmp(path, "-") == 0)
		r->f = stdin;
	else if ((r->f = fopen(path, "r")) == NULL)
	{
		dbm_log_error("could not open file \"%s\": %m", path);
		return false;
	}
	/* read in 1 MB steps, not stdio's 4 kB (a read returns what a pipe
	 * holds: a line is not held back waiting for more) */
	if (r->f != stdin)
		setvbuf(r->f, NULL, _IOFBF, 1 << 20);
	dbm_buf_init(&r->buf);
	return true;
}

int
dbm_jsonl_next_line(dbm_jsonl_reader *r)
{
	for (;;)
	{
		char *line = r->buf.data;
		size_t cap = r->buf.cap;
		ssize_t n = getline(&line, &cap, r->f);
		bool nl;

		/* getline grows the buffer itself; the reader keeps it */
		r->buf.data = line;
		r->buf.cap = cap;
		if (n < 0)
		{
			r->buf.len = 0;
			if (ferror(r->f))
			{
				dbm_log_error("could not read file \"%s\": %m", r->path);
				return -1;
			}
			return 0;
		}
		r->line++;
		nl = n > 0 && line[n - 1] == '\n';
		if (nl)
			line[--n] = '\0';
		r->buf.len = (size_t) n;
		if (!nl)
		{
			dbm_log_error("%s:%ld: truncated line (no newline at end of file)",
						  r->path, r->line);
			return -1;
		}
		if (strspn(line, " \t\r") == (size_t) n)
			continue;
		return 1;
	}
}

int
dbm_jsonl_next(dbm_jsonl_reader *r, json_t **out)
{
	json_error_t err;
	int rc = dbm_jsonl_next_line(r);

	if (rc != 1)
		return rc;
	*out = json_loadb(r->buf.data, r->buf.len, JSON_DECODE_ANY, &err);
	if (*out == NULL)
	{
		dbm_log_error("%s:%ld: malformed JSON: %s", r->path, r->line, err.text);
		return -1;
	}
	if (!json_is_object(*out) && !(r->allow_null && json_is_null(*out)))
	{
		json_decref(*out);
		dbm_log_error("%s:%ld: expected a JSON object", r->path, r->line);
		return -1;
	}
	return 1;
}

void
dbm_jsonl_close(dbm_jsonl_reader *r)
{
	if (r->f && r->f != stdin)
		fclose(r->f);
	r->f = NULL;
	dbm_buf_free(&r->buf);
}

bool
dbm_jsonl_str(dbm_jsonl_reader *r, json_t *o, const char *field,
			  const char **out)
{
	json_t *v = json_object_get(o, field);
	if (!json_is_string(v))
	{
		dbm_log_error("%s:%ld: field \"%s\" missing or not a string", r->path,
					  r->line, field);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

bool
dbm_jsonl_int(dbm_jsonl_reader *r, json_t *o, const char *field,
			  long long min, long long max, long long *out)
{
	json_t *v = json_object_get(o, field);
	if (!json_is_integer(v) || json_integer_value(v) < min ||
		json_integer_value(v) > max)
	{
		dbm_log_error("%s:%ld: field \"%s\" missing or out of range", r->path,
					  r->line, field);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}
