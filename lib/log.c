/* log.c - one line per diagnostic on stderr; thread-safe; JSON with
 * --log-json. Messages follow PostgreSQL style: lower case, no period. */
#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include "secret.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "dbm";
static bool log_json = false;
/* errors of this thread kept here instead of printed, when set */
static _Thread_local char *held_error;
static _Thread_local bool holding;

void
dbm_log_hold_errors(bool on)
{
	holding = on;
}

char *
dbm_log_take_held_error(void)
{
	char *e = held_error;
	held_error = NULL;
	return e;
}

void
dbm_log_init(const char *name)
{
	const char *slash = strrchr(name, '/');
	progname = slash ? slash + 1 : name;
}

void
dbm_log_set_json(bool json)
{
	log_json = json;
}

const char *
dbm_progname(void)
{
	return progname;
}

static void
emit(const char *level, const char *fmt, va_list ap)
{
	char msg[4096];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* libpq and librdkafka messages may echo what they were given */
	dbm_secret_mask(msg, sizeof(msg));
	/* keep every diagnostic on one line */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == ' ')
		msg[--n] = '\0';
	if (holding && strcmp(level, "error") == 0)
	{
		if (held_error == NULL) /* the first one is the one */
			held_error = strdup(msg);
		return;
	}

	flockfile(stderr);
	if (log_json)
	{
		json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "type", "log", "level",
							  level, "tool", progname, "message", msg);
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(o);
	}
	else
		fprintf(stderr, "%s: %s: %s\n", progname, level, msg);
	fflush(stderr);
	funlockfile(stderr);
}

void
dbm_log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("error", fmt, ap);
	va_end(ap);
}

void
dbm_log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("warning", fmt, ap);
	va_end(ap);
}

void
dbm_log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit("info", fmt, ap);
	va_end(ap);
}

void
dbm_log_usage_hint(void)
{
	fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
}

void
dbm_log_bad_option(char **argv, int optind_now)
{
	const char *arg = optind_now > 0 ? argv[optind_now - 1] : "";
	dbm_log_error("unknown option or missing value: \"%s\"", arg);
	fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
}
