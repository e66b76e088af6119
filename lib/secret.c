/* secret.c - passwords are never shown. A conninfo given on the command
 * line would otherwise be readable by every user of the host through ps
 * (/proc/PID/cmdline), and libpq's and librdkafka's messages can echo what
 * they were given: the password is overwritten in the command line at
 * start and masked in every diagnostic line (log.c calls dbm_secret_mask).
 * The recognisers are deliberately generous: masking a little too much in a
 * message is harmless, showing a password is not. */
#define _POSIX_C_SOURCE 200809L
#include "secret.h"

#include "util.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SECRETS 32
#define MAX_SPANS 16
#define MIN_SECRET 4
#define MASK "***"

typedef struct
{
	size_t start, end; /* [start, end) of a password value */
} span;

/* Written by dbm_secret_init before any thread starts, read-only after. */
static char *secrets[MAX_SECRETS];
static int nsecrets;

/* True when position i of s lies in a token (whitespace-delimited) that
 * holds "://": a URI, whose query values end at '&' or '#'. */
static bool
in_uri(const char *s, size_t i)
{
	size_t b = i;

	while (b > 0 && !isspace((unsigned char) s[b - 1]))
		b--;
	for (size_t k = b; k + 3 <= i; k++)
		if (strncmp(s + k, "://", 3) == 0)
			return true;
	return false;
}

/*
 * The password values in s: password=VALUE (any case, spaces around '=',
 * VALUE bare or single-quoted with backslash escapes as libpq reads it, so
 * also PGPASSWORD=VALUE and sasl.password=VALUE), and the VALUE of
 * scheme://user:VALUE@host. In a message (quoted) a value also ends at a
 * double quote, which quotes what a message names. Returns how many were
 * stored in out (at most max).
 */
static size_t
find_spans(const char *s, bool quoted, span *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; s[i] && n < max; i++)
	{
		if (strncasecmp(s + i, "password", 8) == 0)
		{
			size_t j = i + 8, start;

			while (s[j] == ' ' || s[j] == '\t')
				j++;
			if (s[j] != '=')
				continue;
			j++;
			while (s[j] == ' ' || s[j] == '\t')
				j++;
			start = j;
			if (s[j] == '\'')
			{
				j++;
				while (s[j] && s[j] != '\'')
					j += (s[j] == '\\' && s[j + 1]) ? 2 : 1;
				if (s[j] == '\'')
					j++;
			}
			else
			{
				bool uri = in_uri(s, i);

				while (s[j] && !isspace((unsigned char) s[j]) &&
					   !(quoted && s[j] == '"') &&
					   !(uri && (s[j] == '&' || s[j] == '#')))
					j += (!uri && s[j] == '\\' && s[j + 1]) ? 2 : 1;
			}
			if (j > start)
				out[n++] = (span){start, j};
			i = j - 1;
		}
		else if (strncmp(s + i, "://", 3) == 0)
		{
			/* libpq: the user info ends at the first '@' before a '/' */
			size_t j = i + 3, colon = 0;

			while (s[j] && s[j] != '@' && s[j] != '/' &&
				   !(quoted && (s[j] == '"' || isspace((unsigned char) s[j]))))
			{
				if (s[j] == ':' && colon == 0)
					colon = j;
				j++;
			}
			if (s[j] == '@' && colon && j > colon + 1)
				out[n++] = (span){colon + 1, j};
			i = j - 1;
		}
	}
	return n;
}

void
dbm_secret_add(const char *s, size_t n)
{
	if (n < MIN_SECRET || nsecrets == MAX_SECRETS)
		return;
	for (int i = 0; i < nsecrets; i++)
		if (strlen(secrets[i]) == n && memcmp(secrets[i], s, n) == 0)
			return;
	secrets[nsecrets++] = xstrndup(s, n);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char) tolower((unsigned char) c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Remember a value as written, and as libpq reads it: without quotes and
 * escapes, or percent-decoded. */
static void
add_value(const char *v, size_t n)
{
	dbm_buf b;

	dbm_secret_add(v, n);
	dbm_buf_init(&b);
	if (n >= 2 && v[0] == '\'')
	{
		for (size_t i = 1; i < n && v[i] != '\''; i++)
		{
			if (v[i] == '\\' && i + 1 < n)
				i++;
			dbm_buf_putc(&b, v[i]);
		}
		dbm_secret_add(b.data, b.len);
	}
	else if (memchr(v, '%', n))
	{
		for (size_t i = 0; i < n; i++)
		{
			int h, l;

			if (v[i] == '%' && i + 2 < n &&
				(h = hexval(v[i + 1])) >= 0 && (l = hexval(v[i + 2])) >= 0)
			{
				dbm_buf_putc(&b, (char) (h * 16 + l));
				i += 2;
			}
			else
				dbm_buf_putc(&b, v[i]);
		}
		dbm_secret_add(b.data, b.len);
	}
	dbm_buf_free(&b);
}

/* Remember the passwords in s; how many it holds. */
static size_t
add_from(const char *s)
{
	span sp[MAX_SPANS];
	size_t n = s ? find_spans(s, false, sp, MAX_SPANS) : 0;

	for (size_t k = 0; k < n; k++)
		add_value(s + sp[k].start, sp[k].end - sp[k].start);
	return n;
}

void
dbm_secret_init(int argc, char **argv)
{
	static const char *const vars[] = {"DBM_SOURCE", "DBM_TARGET", "DBM_DB"};
	const char *pw = getenv("PGPASSWORD");

	if (pw)
		dbm_secret_add(pw, strlen(pw));
	for (size_t k = 0; k < sizeof(vars) / sizeof(vars[0]); k++)
		add_from(getenv(vars[k]));
	for (int i = 1; i < argc; i++)
	{
		span sp[MAX_SPANS];
		size_t n = find_spans(argv[i], false, sp, MAX_SPANS);
		char *copy;

		if (n == 0)
			continue;
		add_from(argv[i]);
		/* the program reads the copy; ps shows the original, masked */
		copy = xstrdup(argv[i]);
		for (size_t k = 0; k < n; k++)
			memset(argv[i] + sp[k].start, '*', sp[k].end - sp[k].start);
		argv[i] = copy;
	}
}

void
dbm_secret_mask(char *buf, size_t size)
{
	span sp[MAX_SPANS];
	size_t n = find_spans(buf, true, sp, MAX_SPANS), from = 0;
	dbm_buf b;
	bool changed = n > 0;

	if (size == 0)
		return;
	dbm_buf_init(&b);
	for (size_t k = 0; k < n; k++)
	{
		dbm_buf_append(&b, buf + from, sp[k].start - from);
		dbm_buf_puts(&b, MASK);
		from = sp[k].end;
	}
	dbm_buf_puts(&b, buf + from);
	for (int i = 0; i < nsecrets; i++)
	{
		size_t len = strlen(secrets[i]);
		char *hit;

		while ((hit = strstr(b.data, secrets[i])) != NULL)
		{
			size_t at = (size_t) (hit - b.data);
			dbm_buf out;

			dbm_buf_init(&out);
			dbm_buf_append(&out, b.data, at);
			dbm_buf_puts(&out, MASK);
			dbm_buf_puts(&out, b.data + at + len);
			dbm_buf_free(&b);
			b = out;
			changed = true;
		}
	}
	if (changed)
	{
		size_t len = b.len < size - 1 ? b.len : size - 1;
		memcpy(buf, b.data, len);
		buf[len] = '\0';
	}
	dbm_buf_free(&b);
}
