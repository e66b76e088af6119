/* util.c - allocation, buffers, number parsing, clocks. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
oom(size_t n)
{
	fprintf(stderr, "dbm: error: out of memory (%zu bytes)\n", n);
	exit(2);
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	char *p = xmalloc((size_t) n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void
dbm_buf_init(dbm_buf *b)
{
	b->cap = 256;
	b->len = 0;
	b->data = xmalloc(b->cap);
	b->data[0] = '\0';
}

void
dbm_buf_free(dbm_buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
dbm_buf_reset(dbm_buf *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

void
dbm_buf_reserve(dbm_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
dbm_buf_append(dbm_buf *b, const char *s, size_t n)
{
	dbm_buf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
dbm_buf_puts(dbm_buf *b, const char *s)
{
	dbm_buf_append(b, s, strlen(s));
}

void
dbm_buf_putc(dbm_buf *b, char c)
{
	dbm_buf_append(b, &c, 1);
}

void
dbm_buf_printf(dbm_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	dbm_buf_reserve(b, 63);
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t) n >= room)
	{
		dbm_buf_reserve(b, (size_t) n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t) n;
}

void
dbm_buf_put_int(dbm_buf *b, int64_t v, int width)
{
	char tmp[24];
	int i = (int) sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

	do
	{
		tmp[--i] = (char) ('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while ((int) sizeof(tmp) - i < width && i > 1)
		tmp[--i] = '0';
	if (v < 0)
		tmp[--i] = '-';
	dbm_buf_append(b, tmp + i, sizeof(tmp) - (size_t) i);
}

bool
dbm_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool
dbm_parse_size(const char *s, int64_t min, int64_t *out)
{
	static const struct
	{
		const char *unit;
		int shift;
	} units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
	char *end;
	long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
	{
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > (INT64_MAX >> units[i].shift) || ((int64_t) v << units[i].shift) < min)
			return false;
		*out = (int64_t) v << units[i].shift;
		return true;
	}
	return false;
}

bool
dbm_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v >= 0) || v > 1e9)
		return false;
	*out = v;
	return true;
}

int64_t
dbm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
dbm_sleep(double seconds, volatile int *stop)
{
	int64_t end = dbm_now_ms() + (int64_t) (seconds * 1000);
	while (!(stop && *stop))
	{
		int64_t left = end - dbm_now_ms();
		if (left <= 0)
			break;
		if (left > 100)
			left = 100;
		struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}
