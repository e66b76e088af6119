/* decode.c - Debezium, AWS DMS and dbm change events to PostgreSQL text.
 *
 * With a Debezium schema in the message, the field's semantic type (its
 * "name": io.debezium.time.MicroTimestamp, ...Decimal, ...) decides the
 * conversion; without one, the target column's type does. Values are
 * always produced as PostgreSQL input text. */
#define _POSIX_C_SOURCE 200809L
#include "decode.h"
#include "jarena.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define UNAVAILABLE "__debezium_unavailable_value"
/* the largest scale of a PostgreSQL numeric (NUMERIC_DSCALE_MAX) */
#define DECIMAL_MAX_SCALE 16383
/* Debezium's stand-ins for PostgreSQL's +/-infinity timestamps */
#define DBZ_POS_INFINITY INT64_C(9223372036825200000)
#define DBZ_NEG_INFINITY INT64_C(-9223372036832400000)

/* A whole number as a new string. */
static char *
int_str(int64_t v)
{
	dbm_buf b;
	dbm_buf_init(&b);
	dbm_buf_put_int(&b, v, 0);
	return b.data;
}

static void
seterr(char *err, size_t n, const char *fmt, const char *a, const char *b)
{
	snprintf(err, n, fmt, a ? a : "", b ? b : "");
}

/* ---- small conversions ---- */

bool
dbm_base64_decode(const char *in, size_t len, dbm_buf *out)
{
	uint32_t acc = 0;
	int bits = 0;

	dbm_buf_reset(out);
	for (size_t i = 0; i < len; i++)
	{
		char c = in[i];
		int v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+' || c == '-')
			v = 62;
		else if (c == '/' || c == '_')
			v = 63;
		else if (c == '=')
			break;
		else if (c == '\n' || c == '\r')
			continue;
		else
			return false;
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			dbm_buf_putc(out, (char) ((acc >> bits) & 0xff));
		}
	}
	return true;
}

/* Two's complement big-endian integer of n bytes to decimal digits. */
static void
bigint_text(const unsigned char *bytes, size_t n, dbm_buf *out)
{
	unsigned char *mag = xmalloc(n + 1);
	bool neg = n > 0 && (bytes[0] & 0x80);
	char *digits = xmalloc(n * 3 + 2);
	size_t nd = 0;

	memcpy(mag, bytes, n);
	if (neg)
	{
		/* magnitude = ~x + 1 */
		int carry = 1;
		for (size_t i = n; i-- > 0;)
		{
			int v = (unsigned char) ~mag[i] + carry;
			mag[i] = (unsigned char) (v & 0xff);
			carry = v >> 8;
		}
	}
	/* repeated division by 10 */
	for (;;)
	{
		bool zero = true;
		int rem = 0;
		for (size_t i = 0; i < n; i++)
		{
			int cur = rem * 256 + mag[i];
			mag[i] = (unsigned char) (cur / 10);
			rem = cur % 10;
			if (mag[i])
				zero = false;
		}
		digits[nd++] = (char) ('0' + rem);
		if (zero)
			break;
	}
	if (neg)
		dbm_buf_putc(out, '-');
	while (nd > 0)
		dbm_buf_putc(out, digits[--nd]);
	free(mag);
	free(digits);
}

bool
dbm_decimal_from_base64(const char *b64, int scale, dbm_buf *out)
{
	dbm_buf raw, digits;
	bool ok;

	dbm_buf_reset(out);
	if (scale < -DECIMAL_MAX_SCALE || scale > DECIMAL_MAX_SCALE)
		return false;
	dbm_buf_init(&raw);
	dbm_buf_init(&digits);
	ok = dbm_base64_decode(b64, strlen(b64), &raw);
	if (ok)
	{
		const char *d;
		size_t len;
		bool neg;
		bigint_text((const unsigned char *) raw.data, raw.len, &digits);
		d = digits.data;
		neg = *d == '-';
		if (neg)
			d++;
		len = strlen(d);
		if (neg)
			dbm_buf_putc(out, '-');
		if (scale <= 0)
		{
			dbm_buf_puts(out, d);
			for (int i = 0; i < -scale && strcmp(d, "0") != 0; i++)
				dbm_buf_putc(out, '0');
		}
		else if ((size_t) scale >= len)
		{
			dbm_buf_puts(out, "0.");
			for (size_t i = len; i < (size_t) scale; i++)
				dbm_buf_putc(out, '0');
			dbm_buf_puts(out, d);
		}
		else
		{
			dbm_buf_append(out, d, len - (size_t) scale);
			dbm_buf_putc(out, '.');
			dbm_buf_puts(out, d + len - (size_t) scale);
		}
	}
	dbm_buf_free(&raw);
	dbm_buf_free(&digits);
	return ok;
}

static int64_t
floordiv(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

void
dbm_date_from_days(int64_t days, dbm_buf *out)
{
	/* civil date from days since 1970-01-01 (proleptic Gregorian); days
	 * beyond any calendar PostgreSQL knows are clamped where the
	 * arithmetic would overflow */
	int64_t z = (days > INT64_MAX - 719468 ? INT64_MAX - 719468 : days) + 719468;
	int64_t era = floordiv(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;

	y += m <= 2;
	dbm_buf_put_int(out, y <= 0 ? 1 - y : y, 4);
	dbm_buf_putc(out, '-');
	dbm_buf_put_int(out, m, 2);
	dbm_buf_putc(out, '-');
	dbm_buf_put_int(out, d, 2);
	if (y <= 0)
		dbm_buf_puts(out, " BC");
}

/* a = q * b + r with 0 <= r < b (b > 0), for every a: nothing overflows */
static void
divmod(int64_t a, int64_t b, int64_t *q, int64_t *r)
{
	*q = a / b;
	*r = a % b;
	if (*r < 0)
	{
		*q -= 1;
		*r += b;
	}
}

/* v * m, false when that does not fit in 64 bits: no PostgreSQL date or
 * time type holds such a value. */
static bool
mul64(int64_t v, int64_t m, int64_t *out)
{
	return !__builtin_mul_overflow(v, m, out);
}

void
dbm_time_from_us(int64_t us, dbm_buf *out)
{
	int64_t s, frac;

	divmod(us, 1000000, &s, &frac);
	dbm_buf_put_int(out, s / 3600, 2);
	dbm_buf_putc(out, ':');
	dbm_buf_put_int(out, (s / 60) % 60, 2);
	dbm_buf_putc(out, ':');
	dbm_buf_put_int(out, s % 60, 2);
	if (frac)
	{
		dbm_buf_putc(out, '.');
		dbm_buf_put_int(out, frac, 6);
	}
}

void
dbm_timestamp_from_us(int64_t us, dbm_buf *out)
{
	int64_t days, rest;
	dbm_buf b;

	divmod(us, INT64_C(86400000000), &days, &rest);

	/* the era goes after the time in PostgreSQL's input */
	dbm_buf_init(&b);
	dbm_date_from_days(days, &b);
	if (strstr(b.data, " BC"))
	{
		b.len -= 3;
		b.data[b.len] = '\0';
		dbm_buf_puts(out, b.data);
		dbm_buf_putc(out, ' ');
		dbm_time_from_us(rest, out);
		dbm_buf_puts(out, " BC");
	}
	else
	{
		dbm_buf_puts(out, b.data);
		dbm_buf_putc(out, ' ');
		dbm_time_from_us(rest, out);
	}
	dbm_buf_free(&b);
}

void
dbm_double_text(double d, dbm_buf *out)
{
	char tmp[64];

	if (isnan(d))
	{
		dbm_buf_puts(out, "NaN");
		return;
	}
	if (isinf(d))
	{
		dbm_buf_puts(out, d > 0 ? "Infinity" : "-Infinity");
		return;
	}
	/* the shortest text that reads back as the same double */
	for (int prec = 1; prec <= 17; prec++)
	{
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	dbm_buf_puts(out, tmp);
}

/* ---- values ---- */

static const char *
field_name(json_t *field)
{
	return field ? json_string_value(json_object_get(field, "name")) : NULL;
}

static json_t *
find_field(json_t *fields, const char *col, size_t *hint)
{
	size_t i;
	json_t *f;

	if (!json_is_array(fields))
		return NULL;
	/* fields come in the order of the row's keys: the next one, mostly,
	 * or one of the next few (NULL values do not ask) */
	for (size_t k = *hint; k < *hint + 4 && (f = json_array_get(fields, k)) != NULL; k++)
	{
		const char *name = json_string_value(json_object_get(f, "field"));
		if (name && strcmp(name, col) == 0)
		{
			*hint = k + 1;
			return f;
		}
	}
	json_array_foreach(fields, i, f)
	{
		const char *name = json_string_value(json_object_get(f, "field"));
		if (name && strcmp(name, col) == 0)
		{
			*hint = i + 1;
			return f;
		}
	}
	return NULL;
}

static bool
is_type(const char *tname, const char *prefix)
{
	return tname && strncmp(tname, prefix, strlen(prefix)) == 0;
}

/* Debezium's PostgreSQL connector turns the date 'infinity' into day
 * -622191234 and '-infinity' into -625821272 in its snapshot, and into
 * -2147472692 (PostgreSQL's INT32_MAX days from 2000, moved to 1970 in
 * 32 bits: wrapped) and -2147472691 (INT32_MIN days from 2000) in streamed
 * changes (seen with 2.7.4): all far outside PostgreSQL's dates, so they
 * can only be those. */
static bool
date_text(int64_t days, dbm_buf *out)
{
	if (days == INT64_C(-622191234) || days == INT64_C(-2147472692))
		dbm_buf_puts(out, "infinity");
	else if (days == INT64_C(-625821272) || days == INT64_C(-2147472691))
		dbm_buf_puts(out, "-infinity");
	else if (days > INT64_MAX - 719468)
		return false; /* no calendar date (and dbm_date_from_days would clamp) */
	else
		dbm_date_from_days(days, out);
	return true;
}

/* Is the target column an hstore (in whatever schema the extension is)? */
static bool
is_hstore(const char *tname)
{
	size_t n = tname ? strlen(tname) : 0;
	return n >= 6 && strcmp(tname + n - 6, "hstore") == 0 && (n == 6 || tname[n - 7] == '.');
}

static void put_scalar_text(json_t *v, dbm_buf *out);

/* A JSON object of strings (or NULLs) as hstore text: "k"=>"v", "k"=>NULL. */
static void
hstore_text(json_t *obj, dbm_buf *out)
{
	const char *k;
	json_t *v;
	bool first = true;

	json_object_foreach(obj, k, v)
	{
		const char *parts[2] = {k, NULL};
		dbm_buf tmp;

		if (!first)
			dbm_buf_puts(out, ", ");
		first = false;
		dbm_buf_init(&tmp);
		if (!json_is_null(v))
		{
			put_scalar_text(v, &tmp);
			parts[1] = tmp.data;
		}
		for (int i = 0; i < 2; i++)
		{
			if (i == 1)
				dbm_buf_puts(out, "=>");
			if (i == 1 && parts[1] == NULL)
			{
				dbm_buf_puts(out, "NULL");
				continue;
			}
			dbm_buf_putc(out, '"');
			for (const char *c = parts[i]; *c; c++)
			{
				if (*c == '"' || *c == '\\')
					dbm_buf_putc(out, '\\');
				dbm_buf_putc(out, *c);
			}
			dbm_buf_putc(out, '"');
		}
		dbm_buf_free(&tmp);
	}
}

static bool
json_int64(json_t *v, int64_t *out)
{
	if (json_is_integer(v))
	{
		*out = (int64_t) json_integer_value(v);
		return true;
	}
	if (json_is_real(v))
	{
		double d = json_real_value(v);
		/* a double at or beyond 2^63 has no int64 value */
		if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0))
			return false;
		*out = (int64_t) d;
		return true;
	}
	return false;
}

static void
put_scalar_text(json_t *v, dbm_buf *out)
{
	if (json_is_string(v))
		dbm_buf_append(out, json_string_value(v), json_string_length(v));
	else if (json_is_integer(v))
		dbm_buf_put_int(out, (int64_t) json_integer_value(v), 0);
	else if (json_is_real(v))
		dbm_double_text(json_real_value(v), out);
	else if (json_is_true(v))
		dbm_buf_puts(out, "true");
	else if (json_is_false(v))
		dbm_buf_puts(out, "false");
	else
	{
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		dbm_buf_puts(out, s ? s : "");
		free(s);
	}
}

/* The fractional-second precision of a time or timestamp column type
 * (6 when the type does not say). */
static int
col_precision(const char *tname)
{
	const char *lp = strchr(tname, '(');
	return lp ? (int) strtol(lp + 1, NULL, 10) : 6;
}

static void
bytes_to_bytea(const char *raw, size_t n, dbm_buf *out)
{
	static const char hex[] = "0123456789abcdef";
	char *p;

	dbm_buf_reserve(out, 2 + 2 * n);
	p = out->data + out->len;
	*p++ = '\\';
	*p++ = 'x';
	for (size_t i = 0; i < n; i++)
	{
		*p++ = hex[(unsigned char) raw[i] >> 4];
		*p++ = hex[(unsigned char) raw[i] & 15];
	}
	*p = '\0';
	out->len += 2 + 2 * n;
}

/* Whether s could be JsonConverter's base64: groups of four of its
 * alphabet, '=' only as the last one or two. */
static bool
base64_shaped(const char *s)
{
	size_t n = strlen(s), i;
	if (n == 0 || n % 4 != 0)
		return false;
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];
		if (c == '=')
			return i >= n - 2 && (i == n - 1 || s[n - 1] == '=');
		if (!isalnum(c) && c != '+' && c != '/')
			return false;
	}
	return true;
}

/* Whether s is a numeric literal as BigDecimal.toPlainString (or
 * toString) writes one, or NaN / Infinity. */
static bool
decimal_shaped(const char *s)
{
	const char *p = s;
	bool digits = false;
	if (strcmp(s, "NaN") == 0 || strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0)
		return true;
	if (*p == '-' || *p == '+')
		p++;
	for (; isdigit((unsigned char) *p); p++)
		digits = true;
	if (*p == '.')
		for (p++; isdigit((unsigned char) *p); p++)
			digits = true;
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
			p++;
	}
	return *p == '\0';
}

/* bytea from a JSON string: base64 (JsonConverter's bytes, and
 * binary.handling.mode base64) or, with hex, the hex digits themselves. */
static bool
string_to_bytea(json_t *v, bool hex, dbm_buf *out)
{
	dbm_buf tmp;
	bool ok;

	if (!json_is_string(v))
		return false;
	if (hex)
	{
		dbm_buf_puts(out, "\\x");
		dbm_buf_append(out, json_string_value(v), json_string_length(v));
		return true;
	}
	dbm_buf_init(&tmp);
	ok = dbm_base64_decode(json_string_value(v), json_string_length(v), &tmp);
	if (ok)
		bytes_to_bytea(tmp.data, tmp.len, out);
	dbm_buf_free(&tmp);
	return ok;
}

static bool conv(json_t *v, json_t *field, const char *tname, const dbm_decode_opts *o,
				 dbm_buf *out, char *err, size_t errlen, const char *col);

/* One array element inside an array literal: quoted, escaped. */
static bool
conv_array(json_t *v, json_t *field, const char *tname, const dbm_decode_opts *o,
		   dbm_buf *out, char *err, size_t errlen, const char *col)
{
	json_t *items = field ? json_object_get(field, "items") : NULL;
	char *etype = NULL;
	size_t i;
	json_t *e;
	dbm_buf el;

	if (tname)
	{
		size_t n = strlen(tname);
		if (n > 2 && strcmp(tname + n - 2, "[]") == 0)
			etype = xstrndup(tname, n - 2);
	}
	dbm_buf_init(&el);
	dbm_buf_putc(out, '{');
	json_array_foreach(v, i, e)
	{
		if (i)
			dbm_buf_putc(out, ',');
		if (json_is_null(e))
		{
			dbm_buf_puts(out, "NULL");
			continue;
		}
		dbm_buf_reset(&el);
		if (json_is_array(e))
		{
			if (!conv_array(e, items, tname, o, &el, err, errlen, col))
				goto fail;
			dbm_buf_puts(out, el.data);
			continue;
		}
		if (!conv(e, items, etype, o, &el, err, errlen, col))
			goto fail;
		dbm_buf_putc(out, '"');
		for (size_t k = 0; k < el.len; k++)
		{
			if (el.data[k] == '"' || el.data[k] == '\\')
				dbm_buf_putc(out, '\\');
			dbm_buf_putc(out, el.data[k]);
		}
		dbm_buf_putc(out, '"');
	}
	dbm_buf_putc(out, '}');
	dbm_buf_free(&el);
	free(etype);
	return true;
fail:
	dbm_buf_free(&el);
	free(etype);
	return false;
}

/* Convert one non-null JSON value to PostgreSQL text. */
static bool
conv(json_t *v, json_t *field, const char *tname, const dbm_decode_opts *o,
	 dbm_buf *out, char *err, size_t errlen, const char *col)
{
	const char *sem = field_name(field);
	const char *ftype = field ? json_string_value(json_object_get(field, "type")) : NULL;
	int64_t iv;
	dbm_buf tmp;
	bool ok = true;

	if (json_is_boolean(v) && tname && (is_type(tname, "bit") || is_type(tname, "varbit")))
	{
		/* bit(1) travels as a boolean */
		dbm_buf_putc(out, json_is_true(v) ? '1' : '0');
		return true;
	}
	if (o && o->raw && json_is_string(v) && tname &&
		(is_type(tname, "bit") || is_type(tname, "varbit")) &&
		(strcmp(json_string_value(v), "true") == 0 || strcmp(json_string_value(v), "false") == 0))
	{
		/* a bit(1) printed without the target's types at hand */
		dbm_buf_putc(out, json_string_value(v)[0] == 't' ? '1' : '0');
		return true;
	}
	if (o && o->raw)
	{
		/* dbm change lines carry PostgreSQL text already */
		put_scalar_text(v, out);
		return true;
	}
	if (json_is_array(v))
		return conv_array(v, field, tname, o, out, err, errlen, col);
	if (is_hstore(tname) && (json_is_object(v) || json_is_string(v)))
	{
		/* hstore.handling.mode json (the default: a JSON object in a
		 * string) or map (the object itself); hstore text passes through */
		json_t *obj = json_is_object(v) ? json_incref(v) : NULL;
		if (obj == NULL)
			obj = json_loadb(json_string_value(v), json_string_length(v), 0, NULL);
		if (json_is_object(obj))
		{
			hstore_text(obj, out);
			json_decref(obj);
			return true;
		}
		json_decref(obj);
		if (json_is_object(v))
			goto bad;
		dbm_buf_append(out, json_string_value(v), json_string_length(v));
		return true;
	}

	if (sem)
	{
		if (strcmp(sem, "io.debezium.time.Date") == 0 ||
			strcmp(sem, "org.apache.kafka.connect.data.Date") == 0)
		{
			if (!json_int64(v, &iv) || !date_text(iv, out))
				goto bad;
			return true;
		}
		if (strcmp(sem, "io.debezium.time.Time") == 0 ||
			strcmp(sem, "org.apache.kafka.connect.data.Time") == 0)
		{
			if (!json_int64(v, &iv) || !mul64(iv, 1000, &iv))
				goto bad;
			dbm_time_from_us(iv, out);
			return true;
		}
		if (strcmp(sem, "io.debezium.time.MicroTime") == 0)
		{
			if (!json_int64(v, &iv))
				goto bad;
			dbm_time_from_us(iv, out);
			return true;
		}
		if (strcmp(sem, "io.debezium.time.NanoTime") == 0)
		{
			if (!json_int64(v, &iv))
				goto bad;
			dbm_time_from_us(iv / 1000, out);
			return true;
		}
		if (strcmp(sem, "io.debezium.time.Timestamp") == 0 ||
			strcmp(sem, "org.apache.kafka.connect.data.Timestamp") == 0 ||
			strcmp(sem, "io.debezium.time.MicroTimestamp") == 0 ||
			strcmp(sem, "io.debezium.time.NanoTimestamp") == 0)
		{
			if (!json_int64(v, &iv))
				goto bad;
			if (iv == DBZ_POS_INFINITY)
				dbm_buf_puts(out, "infinity");
			else if (iv == DBZ_NEG_INFINITY)
				dbm_buf_puts(out, "-infinity");
			else if (strstr(sem, "Micro"))
				dbm_timestamp_from_us(iv, out);
			else if (strstr(sem, "Nano"))
				dbm_timestamp_from_us(floordiv(iv, 1000), out);
			else if (mul64(iv, 1000, &iv))
				dbm_timestamp_from_us(iv, out);
			else
				goto bad;
			return true;
		}
		if (strcmp(sem, "io.debezium.time.MicroDuration") == 0)
		{
			if (!json_int64(v, &iv))
				goto bad;
			dbm_buf_printf(out, "%" PRId64 " microseconds", iv);
			return true;
		}
		if (strcmp(sem, "org.apache.kafka.connect.data.Decimal") == 0)
		{
			json_t *params = json_object_get(field, "parameters");
			const char *sc = json_string_value(json_object_get(params, "scale"));
			long scale = 0;
			if (json_is_string(v) && sc && dbm_parse_long(sc, -1000, 1000, &scale))
			{
				dbm_buf_init(&tmp);
				ok = dbm_decimal_from_base64(json_string_value(v), (int) scale, &tmp);
				if (ok)
					dbm_buf_puts(out, tmp.data);
				dbm_buf_free(&tmp);
				if (!ok)
					goto bad;
				return true;
			}
			goto bad;
		}
		if (strcmp(sem, "io.debezium.data.VariableScaleDecimal") == 0)
		{
			json_t *sc = json_object_get(v, "scale"), *val = json_object_get(v, "value");
			if (!json_is_integer(sc) || !json_is_string(val) ||
				json_integer_value(sc) < -DECIMAL_MAX_SCALE ||
				json_integer_value(sc) > DECIMAL_MAX_SCALE)
				goto bad;
			dbm_buf_init(&tmp);
			ok = dbm_decimal_from_base64(json_string_value(val), (int) json_integer_value(sc),
										 &tmp);
			if (ok)
				dbm_buf_puts(out, tmp.data);
			dbm_buf_free(&tmp);
			if (!ok)
				goto bad;
			return true;
		}
		if (strcmp(sem, "io.debezium.data.Bits") == 0)
		{
			json_t *params = json_object_get(field, "parameters");
			const char *ls = json_string_value(json_object_get(params, "length"));
			long len = 0;
			if (!json_is_string(v) || !ls || !dbm_parse_long(ls, 0, 1 << 24, &len))
				goto bad;
			dbm_buf_init(&tmp);
			if (!dbm_base64_decode(json_string_value(v), json_string_length(v), &tmp))
			{
				dbm_buf_free(&tmp);
				goto bad;
			}
			/* a Java BitSet: bit i is the i-th from the right of the string */
			for (long i = len - 1; i >= 0; i--)
			{
				size_t byte = (size_t) i / 8;
				int bit = byte < tmp.len ? ((unsigned char) tmp.data[byte] >> (i % 8)) & 1 : 0;
				dbm_buf_putc(out, bit ? '1' : '0');
			}
			dbm_buf_free(&tmp);
			return true;
		}
		if (strcmp(sem, "io.debezium.data.geometry.Point") == 0)
		{
			json_t *x = json_object_get(v, "x"), *y = json_object_get(v, "y");
			if (!json_is_number(x) || !json_is_number(y))
				goto bad;
			dbm_buf_putc(out, '(');
			dbm_double_text(json_number_value(x), out);
			dbm_buf_putc(out, ',');
			dbm_double_text(json_number_value(y), out);
			dbm_buf_putc(out, ')');
			return true;
		}
		if (strncmp(sem, "io.debezium.", 12) == 0 &&
			strcmp(sem, "io.debezium.time.ZonedTimestamp") != 0 &&
			strcmp(sem, "io.debezium.time.ZonedTime") != 0 &&
			strcmp(sem, "io.debezium.time.Interval") != 0 &&
			strcmp(sem, "io.debezium.data.Json") != 0 &&
			strcmp(sem, "io.debezium.data.Uuid") != 0 &&
			strcmp(sem, "io.debezium.data.Enum") != 0 &&
			strcmp(sem, "io.debezium.data.EnumSet") != 0 &&
			strcmp(sem, "io.debezium.data.Xml") != 0 &&
			strcmp(sem, "io.debezium.data.Ltree") != 0 &&
			strncmp(sem, "io.debezium.connector.", 22) != 0)
		{
			seterr(err, errlen, "column \"%s\": schema type \"%s\" is not known", col, sem);
			return false;
		}
		/* string-carried semantic types go through as they are */
	}

	if (ftype && strcmp(ftype, "bytes") == 0)
	{
		/* JsonConverter writes bytes as base64 */
		if (!string_to_bytea(v, false, out))
			goto bad;
		return true;
	}

	if (tname && strcmp(tname, "bytea") == 0 && json_is_string(v) && ftype &&
		strcmp(ftype, "string") == 0)
	{
		/* binary.handling.mode base64 or hex: the schema says string */
		if (!string_to_bytea(v, o && o->binary_mode && strcmp(o->binary_mode, "hex") == 0, out))
			goto bad;
		return true;
	}
	if (field == NULL && tname)
	{
		/* no schema: the target column's type decides */
		if (is_type(tname, "date") && json_int64(v, &iv))
		{
			if (!date_text(iv, out))
				goto bad;
			return true;
		}
		if (is_type(tname, "timestamp") && json_is_integer(v))
		{
			iv = json_integer_value(v);
			if (iv == DBZ_POS_INFINITY)
				dbm_buf_puts(out, "infinity");
			else if (iv == DBZ_NEG_INFINITY)
				dbm_buf_puts(out, "-infinity");
			else if (col_precision(tname) > 3 || mul64(iv, 1000, &iv))
				dbm_timestamp_from_us(iv, out);
			else
				goto bad;
			return true;
		}
		if (is_type(tname, "time") && json_is_integer(v))
		{
			/* adaptive: up to millisecond precision in ms, else in us */
			iv = json_integer_value(v);
			if (col_precision(tname) <= 3 && !mul64(iv, 1000, &iv))
				goto bad;
			dbm_time_from_us(iv, out);
			return true;
		}
		if ((is_type(tname, "bit(") || is_type(tname, "bit varying(")) && json_is_string(v))
		{
			/* Bits without a schema: the length is the column's */
			const char *lp = strchr(tname, '(');
			long len = lp ? strtol(lp + 1, NULL, 10) : 0;
			char lenbuf[24];
			json_t *f;
			snprintf(lenbuf, sizeof(lenbuf), "%ld", len);
			f = json_pack("{s:s,s:{s:s}}", "name", "io.debezium.data.Bits", "parameters",
						  "length", lenbuf);
			ok = conv(v, f, tname, o, out, err, errlen, col);
			json_decref(f);
			return ok;
		}
		if (is_type(tname, "interval") && json_is_integer(v))
		{
			dbm_buf_printf(out, "%" JSON_INTEGER_FORMAT " microseconds", json_integer_value(v));
			return true;
		}
		if (is_type(tname, "numeric") && json_is_object(v))
		{
			json_t *sc = json_object_get(v, "scale"), *val = json_object_get(v, "value");
			if (!json_is_integer(sc) || !json_is_string(val) ||
				json_integer_value(sc) < -DECIMAL_MAX_SCALE ||
				json_integer_value(sc) > DECIMAL_MAX_SCALE)
				goto bad;
			dbm_buf_init(&tmp);
			ok = dbm_decimal_from_base64(json_string_value(val), (int) json_integer_value(sc),
										 &tmp);
			if (ok)
				dbm_buf_puts(out, tmp.data);
			dbm_buf_free(&tmp);
			if (!ok)
				goto bad;
			return true;
		}
		if (is_type(tname, "numeric(") && json_is_string(v))
		{
			/* precise mode: base64 of the unscaled value, scale from the
			 * column; string mode: the digits */
			const char *s = json_string_value(v);
			const char *comma = strchr(tname, ',');
			bool b64, dec;
			if (o && o->decimal_mode)
			{
				b64 = strcmp(o->decimal_mode, "precise") == 0;
				dec = !b64;
			}
			else
			{
				b64 = base64_shaped(s);
				dec = decimal_shaped(s);
				if (b64 && dec)
				{
					snprintf(err, errlen,
							 "column \"%s\": value \"%.40s\" without a schema may be base64"
							 " (decimal.handling.mode precise) or digits (string):"
							 " give --decimal-mode=precise or --decimal-mode=string",
							 col, s);
					return false;
				}
				if (!b64 && !dec)
					goto bad;
			}
			if (b64)
			{
				long scale = comma ? strtol(comma + 1, NULL, 10) : 0;
				dbm_buf_init(&tmp);
				ok = dbm_decimal_from_base64(s, (int) scale, &tmp);
				if (ok)
					dbm_buf_puts(out, tmp.data);
				dbm_buf_free(&tmp);
				if (!ok)
					goto bad;
				return true;
			}
		}
		if (strcmp(tname, "bytea") == 0 && json_is_string(v))
		{
			if (!string_to_bytea(v, o && o->binary_mode && strcmp(o->binary_mode, "hex") == 0,
								 out))
				goto bad;
			return true;
		}
		if (strcmp(tname, "point") == 0 && json_is_object(v))
		{
			json_t *pf = json_pack("{s:s}", "name", "io.debezium.data.geometry.Point");
			ok = conv(v, pf, tname, o, out, err, errlen, col);
			json_decref(pf);
			return ok;
		}
	}
	if (json_is_object(v))
	{
		if (is_type(tname, "json") || tname == NULL)
		{
			put_scalar_text(v, out);
			return true;
		}
		goto bad;
	}
	put_scalar_text(v, out);
	return ok;

bad:
	{
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		char what[96];
		snprintf(what, sizeof(what), "%.60s", s ? s : "?");
		free(s);
		snprintf(err, errlen, "column \"%s\": value %s does not fit %s", col, what,
				 sem ? sem : tname ? tname : "its type");
	}
	return false;
}

/* The placeholder as Debezium writes it in a bytes column: base64 of its
 * bytes (binary.handling.mode bytes or base64), or hex of them. */
#define UNAVAILABLE_B64 "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
#define UNAVAILABLE_HEX "5f5f646562657a69756d5f756e617661696c61626c655f76616c7565"

static bool
unavailable(json_t *v)
{
	if (json_is_string(v) && (strcmp(json_string_value(v), UNAVAILABLE) == 0 ||
							  strcmp(json_string_value(v), UNAVAILABLE_B64) == 0 ||
							  strcmp(json_string_value(v), UNAVAILABLE_HEX) == 0))
		return true;
	return json_is_array(v) && json_array_size(v) == 1 &&
		   json_is_string(json_array_get(v, 0)) &&
		   strcmp(json_string_value(json_array_get(v, 0)), UNAVAILABLE) == 0;
}

bool
dbm_decode_row(const dbm_srcrel *r, json_t *row, json_t *fields,
			   const dbm_decode_opts *o, dbm_val *vals, dbm_buf *arena,
			   char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	size_t *offs = xcalloc((size_t) r->ncols + 1, sizeof(size_t));
	size_t fhint = 0;
	int next = 0; /* the column after the last one found */
	bool ok = true;

	dbm_buf_reset(arena);
	for (int i = 0; i < r->ncols; i++)
	{
		vals[i].kind = DBM_VAL_UNCHANGED;
		vals[i].data = NULL;
		vals[i].len = 0;
	}
	json_object_foreach(row, key, v)
	{
		int c = -1;
		/* keys come in the table's column order, mostly */
		if (next < r->ncols && strcmp(r->cols[next], key) == 0)
			c = next;
		for (int i = 0; i < r->ncols && c < 0; i++)
			if (strcmp(r->cols[i], key) == 0)
				c = i;
		next = c + 1;
		if (c < 0)
		{
			seterr(err, errlen, "column \"%s\" is missing on the target%s", key, "");
			ok = false;
			break;
		}
		if (json_is_null(v))
		{
			vals[c].kind = DBM_VAL_NULL;
			continue;
		}
		if (unavailable(v))
			continue; /* the target keeps what it has */
		offs[c] = arena->len;
		if (!conv(v, find_field(fields, key, &fhint), r->tnames ? r->tnames[c] : NULL, o, arena, err,
				  errlen, key))
		{
			ok = false;
			break;
		}
		vals[c].kind = DBM_VAL_TEXT;
		vals[c].len = (uint32_t) (arena->len - offs[c]);
		dbm_buf_putc(arena, '\0');
	}
	for (int i = 0; i < r->ncols && ok; i++)
		if (vals[i].kind == DBM_VAL_TEXT)
			vals[i].data = arena->data + offs[i];
	free(offs);
	return ok;
}

/* ---- envelopes ---- */

void
dbm_event_clear(dbm_event *ev)
{
	free(ev->nsp);
	free(ev->table);
	free(ev->txid);
	memset(ev, 0, sizeof(*ev));
}

static json_t *
schema_fields(json_t *schema, const char *which)
{
	size_t i;
	json_t *f;
	json_t *fields = json_object_get(schema, "fields");

	json_array_foreach(fields, i, f)
	{
		const char *name = json_string_value(json_object_get(f, "field"));
		if (name && strcmp(name, which) == 0)
			return json_object_get(f, "fields");
	}
	return NULL;
}

static bool
decode_dbm(json_t *msg, dbm_event *ev, char *err, size_t errlen)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	const char *op, *table;

	ev->format = "dbm";
	if (strcmp(type, "commit") == 0)
	{
		ev->kind = DBM_EV_COMMIT;
		return true;
	}
	if (strcmp(type, "message") == 0)
	{
		ev->kind = DBM_EV_MESSAGE;
		ev->message_prefix = json_string_value(json_object_get(msg, "prefix"));
		ev->message_content = json_string_value(json_object_get(msg, "content"));
		return true;
	}
	if (strcmp(type, "change") != 0)
	{
		ev->kind = DBM_EV_SKIP;
		ev->why = "a dbm line that is not a change";
		return true;
	}
	op = json_string_value(json_object_get(msg, "op"));
	table = json_string_value(json_object_get(msg, "table"));
	if (op == NULL || table == NULL)
	{
		snprintf(err, errlen, "change line without op or table");
		return false;
	}
	/* the table is printed quoted where needed: "My S"."a b" */
	{
		dbm_buf part;
		int n = 0;
		bool q = false;
		dbm_buf_init(&part);
		for (const char *p = table;; p++)
		{
			if (*p == '"')
			{
				if (q && p[1] == '"')
				{
					dbm_buf_putc(&part, '"');
					p++;
				}
				else
					q = !q;
				continue;
			}
			if ((*p == '.' && !q) || *p == '\0')
			{
				if (n == 0 && *p == '.')
					ev->nsp = xstrdup(part.data);
				else if (n == 0 || *p == '\0')
					ev->table = xstrdup(part.data);
				else
				{
					/* a third part (found by fuzzing: each one leaked) */
					snprintf(err, errlen, "table \"%.60s\" is not schema.table", table);
					dbm_buf_free(&part);
					return false;
				}
				n++;
				dbm_buf_reset(&part);
				if (*p == '\0')
					break;
				continue;
			}
			dbm_buf_putc(&part, *p);
		}
		dbm_buf_free(&part);
		if (ev->nsp == NULL)
			ev->nsp = xstrdup("public");
	}
	ev->newo = json_object_get(msg, "new");
	ev->oldo = json_object_get(msg, "old");
	if (!json_is_object(ev->oldo))
		ev->oldo = json_object_get(msg, "key");
	{
		/* the source transaction, so it is applied whole */
		json_t *xid = json_object_get(msg, "xid");
		if (json_is_integer(xid))
			ev->txid = int_str((int64_t) json_integer_value(xid));
		else if (json_is_string(xid))
			ev->txid = xstrdup(json_string_value(xid));
	}
	if (strcmp(op, "truncate") == 0)
	{
		ev->kind = DBM_EV_TRUNCATE;
		return true;
	}
	ev->kind = DBM_EV_CHANGE;
	if (strcmp(op, "insert") == 0)
		ev->op = DBM_OP_INSERT;
	else if (strcmp(op, "update") == 0)
		ev->op = DBM_OP_UPDATE;
	else if (strcmp(op, "delete") == 0)
		ev->op = DBM_OP_DELETE;
	else
	{
		snprintf(err, errlen, "unknown op \"%.20s\"", op);
		return false;
	}
	if (ev->op != DBM_OP_DELETE && !json_is_object(ev->newo))
	{
		snprintf(err, errlen, "%s without \"new\"", op);
		return false;
	}
	return true;
}

static bool
decode_dms(json_t *msg, const dbm_decode_opts *o, dbm_event *ev, char *err, size_t errlen)
{
	json_t *md = json_object_get(msg, "metadata");
	const char *rt = json_string_value(json_object_get(md, "record-type"));
	const char *op = json_string_value(json_object_get(md, "operation"));
	const char *sn = json_string_value(json_object_get(md, "schema-name"));
	const char *tn = json_string_value(json_object_get(md, "table-name"));
	json_int_t txid;

	ev->format = "dms";
	if (rt == NULL || op == NULL)
	{
		snprintf(err, errlen, "AWS DMS record without record-type or operation");
		return false;
	}
	if (strcmp(rt, "control") == 0)
	{
		ev->kind = DBM_EV_SKIP;
		ev->why = "AWS DMS control record";
		ev->dms_control = json_object_get(msg, "data");
		if (sn && tn)
		{
			ev->nsp = xstrdup(sn);
			ev->table = xstrdup(tn);
		}
		return true;
	}
	if (strcmp(rt, "data") != 0)
	{
		ev->kind = DBM_EV_SKIP;
		ev->why = "AWS DMS record that is not data";
		return true;
	}
	if (sn == NULL || tn == NULL)
	{
		snprintf(err, errlen, "AWS DMS data record without schema-name or table-name");
		return false;
	}
	ev->nsp = xstrdup(sn);
	ev->table = xstrdup(tn);
	ev->kind = DBM_EV_CHANGE;
	ev->newo = json_object_get(msg, "data");
	ev->oldo = json_object_get(msg, o && o->dms_before ? o->dms_before : "before-image");
	if (!json_is_object(ev->oldo))
		ev->oldo = NULL;
	txid = json_integer_value(json_object_get(md, "transaction-id"));
	if (txid)
		ev->txid = int_str((int64_t) txid);
	if (!json_is_object(ev->newo))
	{
		snprintf(err, errlen, "AWS DMS data record without data");
		return false;
	}
	if (strcmp(op, "load") == 0 || strcmp(op, "insert") == 0)
	{
		ev->op = DBM_OP_INSERT;
		ev->converge = strcmp(op, "load") == 0;
	}
	else if (strcmp(op, "update") == 0)
		ev->op = DBM_OP_UPDATE;
	else if (strcmp(op, "delete") == 0)
	{
		/* the deleted row is in data */
		ev->op = DBM_OP_DELETE;
		if (ev->oldo == NULL)
			ev->oldo = ev->newo;
		ev->newo = NULL;
	}
	else
	{
		snprintf(err, errlen, "AWS DMS operation \"%.20s\" is not known", op);
		return false;
	}
	return true;
}

bool
dbm_decode_event(json_t *msg, const dbm_decode_opts *o, dbm_event *ev, char *err,
				 size_t errlen)
{
	json_t *payload, *schema = NULL, *src;
	const char *op, *type;

	memset(ev, 0, sizeof(*ev));
	if (msg == NULL || json_is_null(msg))
	{
		ev->kind = DBM_EV_SKIP;
		ev->why = "tombstone";
		return true;
	}
	if (!json_is_object(msg))
	{
		snprintf(err, errlen, "expected a JSON object");
		return false;
	}
	type = json_string_value(json_object_get(msg, "type"));
	if (type && !json_object_get(msg, "payload"))
		return decode_dbm(msg, ev, err, errlen);
	if (json_is_object(json_object_get(msg, "metadata")) &&
		json_is_string(json_object_get(json_object_get(msg, "metadata"), "record-type")))
		return decode_dms(msg, o, ev, err, errlen);

	payload = msg;
	if (json_object_get(msg, "payload") && json_object_get(msg, "schema"))
	{
		payload = json_object_get(msg, "payload");
		schema = json_object_get(msg, "schema");
		if (json_is_null(payload))
		{
			ev->kind = DBM_EV_SKIP;
			ev->why = "tombstone";
			return true;
		}
	}
	ev->format = "debezium";
	op = json_string_value(json_object_get(payload, "op"));
	if (op == NULL)
	{
		if (json_object_get(payload, "status") && json_object_get(payload, "id"))
		{
			ev->kind = DBM_EV_SKIP;
			ev->why = "transaction metadata";
			return true;
		}
		if (json_object_get(payload, "ts_ms") && json_object_size(payload) <= 2)
		{
			ev->kind = DBM_EV_SKIP;
			ev->why = "heartbeat";
			return true;
		}
		snprintf(err, errlen, "not a Debezium, AWS DMS or dbm change event");
		return false;
	}
	src = json_object_get(payload, "source");
	if (strcmp(op, "m") == 0)
	{
		json_t *m = json_object_get(payload, "message");
		ev->kind = DBM_EV_MESSAGE;
		ev->message_prefix = json_string_value(json_object_get(m, "prefix"));
		ev->message_content = json_string_value(json_object_get(m, "content"));
		return true;
	}
	{
		const char *sn = json_string_value(json_object_get(src, "schema"));
		const char *tn = json_string_value(json_object_get(src, "table"));
		json_t *lsn = json_object_get(src, "lsn");
		json_t *tx = json_object_get(src, "txId");
		if (tn == NULL)
		{
			snprintf(err, errlen, "Debezium event without source.table");
			return false;
		}
		ev->nsp = xstrdup(sn ? sn : "public");
		ev->table = xstrdup(tn);
		if (json_is_integer(lsn))
			ev->lsn = (uint64_t) json_integer_value(lsn);
		if (json_is_integer(tx))
			ev->txid = int_str((int64_t) json_integer_value(tx));
	}
	ev->newo = json_object_get(payload, "after");
	ev->oldo = json_object_get(payload, "before");
	if (!json_is_object(ev->newo))
		ev->newo = NULL;
	if (!json_is_object(ev->oldo))
		ev->oldo = NULL;
	if (schema)
	{
		ev->newfields = schema_fields(schema, "after");
		ev->oldfields = schema_fields(schema, "before");
	}
	ev->kind = DBM_EV_CHANGE;
	switch (op[0])
	{
		case 'r':
		case 'c':
			ev->op = DBM_OP_INSERT;
			ev->converge = op[0] == 'r';
			if (ev->newo == NULL)
				goto missing_after;
			break;
		case 'u':
			ev->op = DBM_OP_UPDATE;
			if (ev->newo == NULL)
				goto missing_after;
			break;
		case 'd':
			ev->op = DBM_OP_DELETE;
			if (ev->oldo == NULL)
			{
				snprintf(err, errlen, "delete of %s.%s without \"before\": the source table"
									  " needs a primary key or REPLICA IDENTITY FULL",
						 ev->nsp, ev->table);
				return false;
			}
			break;
		case 't':
			ev->kind = DBM_EV_TRUNCATE;
			break;
		default:
			snprintf(err, errlen, "Debezium op \"%.10s\" is not known", op);
			return false;
	}
	return true;

missing_after:
	snprintf(err, errlen, "Debezium op \"%s\" without \"after\"", op);
	return false;
}

/* ---- parsing with a schema cache ---- */

#define SCHEMA_CACHE 64

typedef struct
{
	uint64_t hash;
	char *text;
	size_t len;
	json_t *schema;
	uint64_t used;
} schema_ent;

struct dbm_schema_cache
{
	int last; /* the entry used last */
	schema_ent e[SCHEMA_CACHE];
	uint64_t tick;
};

dbm_schema_cache *
dbm_schema_cache_new(void)
{
	return xcalloc(1, sizeof(dbm_schema_cache));
}

void
dbm_schema_cache_free(dbm_schema_cache *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < SCHEMA_CACHE; i++)
	{
		free(c->e[i].text);
		json_decref(c->e[i].schema);
	}
	free(c);
}

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* The end of the JSON string starting at p (at the quote), or NULL. */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* The end of the JSON value starting at p, or NULL; only its extent is
 * found here, jansson parses it. */
static const char *
skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[')
	{
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
			p++;
		return p;
	}
	for (; p < end; p++)
	{
		if (*p == '"')
		{
			p = skip_string(p, end);
			if (p == NULL)
				return NULL;
			p--;
		}
		else if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

/* Find the spans of the top-level "schema" and "payload" values of an
 * object with exactly those two keys. */
static bool
split_envelope(const char *text, size_t len, const char **s, size_t *slen, const char **pl,
			   size_t *plen)
{
	const char *p = text, *end = text + len;
	int found = 0;

	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return false;
	p++;
	*s = *pl = NULL;
	for (;;)
	{
		const char *k, *kend, *v, *vend;
		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return false;
		k = p + 1;
		if ((kend = skip_string(p, end)) == NULL)
			return false;
		p = skip_ws(kend, end);
		if (p >= end || *p != ':')
			return false;
		v = skip_ws(p + 1, end);
		if ((vend = skip_value(v, end)) == NULL)
			return false;
		if (kend - k - 1 == 6 && memcmp(k, "schema", 6) == 0)
		{
			*s = v;
			*slen = (size_t) (vend - v);
		}
		else if (kend - k - 1 == 7 && memcmp(k, "payload", 7) == 0)
		{
			*pl = v;
			*plen = (size_t) (vend - v);
		}
		else
			return false;
		found++;
		p = skip_ws(vend, end);
		if (p < end && *p == ',')
		{
			p++;
			continue;
		}
		if (p < end && *p == '}')
			break;
		return false;
	}
	return found == 2 && *s && *pl && skip_ws(p + 1, end) == end;
}

static json_t *
cached_schema(dbm_schema_cache *c, const char *s, size_t len, char *err, size_t errlen)
{
	uint64_t h = XXH3_64bits(s, len);
	int victim = 0;
	json_error_t jerr;
	json_t *schema;

	for (int i = 0; i < SCHEMA_CACHE; i++)
	{
		schema_ent *e = &c->e[i];
		if (e->schema && e->hash == h && e->len == len && memcmp(e->text, s, len) == 0)
		{
			e->used = ++c->tick;
			c->last = i;
			return json_incref(e->schema);
		}
		if (c->e[i].used < c->e[victim].used)
			victim = i;
	}
	{
		/* the cache outlives the arena the message is parsed into */
		dbm_jarena *was = dbm_jarena_use(NULL);
		schema = json_loadb(s, len, 0, &jerr);
		dbm_jarena_use(was);
	}
	if (schema == NULL)
	{
		snprintf(err, errlen, "malformed JSON in the schema: %s", jerr.text);
		return NULL;
	}
	free(c->e[victim].text);
	json_decref(c->e[victim].schema);
	c->e[victim] = (schema_ent){h, xstrndup(s, len), len, json_incref(schema), ++c->tick};
	c->last = victim;
	return schema;
}

/* The common case, {"schema":S,"payload":{...}} with S the schema of the
 * message before: S is compared, not scanned, and the payload is parsed
 * where it starts, once. false: not that case (nothing is made). */
static bool
fast_envelope(dbm_schema_cache *c, const char *text, size_t len, json_t **out)
{
	const char *p = text, *end = text + len;
	schema_ent *e = &c->e[c->last];
	json_error_t jerr;
	json_t *payload;

	if (e->schema == NULL)
		return false;
	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return false;
	p = skip_ws(p + 1, end);
	if (end - p < 8 || memcmp(p, "\"schema\"", 8) != 0)
		return false;
	p = skip_ws(p + 8, end);
	if (p >= end || *p != ':')
		return false;
	p = skip_ws(p + 1, end);
	/* a complete JSON value: the same bytes end where it ends */
	if ((size_t) (end - p) < e->len || memcmp(p, e->text, e->len) != 0)
		return false;
	p = skip_ws(p + e->len, end);
	if (p >= end || *p != ',')
		return false;
	p = skip_ws(p + 1, end);
	if (end - p < 9 || memcmp(p, "\"payload\"", 9) != 0)
		return false;
	p = skip_ws(p + 9, end);
	if (p >= end || *p != ':')
		return false;
	p = skip_ws(p + 1, end);
	if (p >= end || *p != '{')
		return false;
	if ((payload = json_loadb(p, (size_t) (end - p), JSON_DISABLE_EOF_CHECK, &jerr)) == NULL)
		return false;
	p = skip_ws(p + jerr.position, end);
	if (p >= end || *p != '}' || skip_ws(p + 1, end) != end)
	{
		json_decref(payload);
		return false;
	}
	e->used = ++c->tick;
	*out = json_object();
	json_object_set_new(*out, "schema", json_incref(e->schema));
	json_object_set_new(*out, "payload", payload);
	return true;
}

bool
dbm_decode_parse(dbm_schema_cache *c, const char *text, size_t len, json_t **out, char *err,
				 size_t errlen)
{
	const char *s, *pl;
	size_t slen = 0, plen = 0;
	json_error_t jerr;

	*out = NULL;
	if (skip_ws(text, text + len) == text + len)
	{
		*out = json_null(); /* an empty Kafka message: a tombstone */
		return true;
	}
	if (c && fast_envelope(c, text, len, out))
		return true;
	if (c && split_envelope(text, len, &s, &slen, &pl, &plen))
	{
		json_t *schema = cached_schema(c, s, slen, err, errlen), *payload;
		if (schema == NULL)
			return false;
		if ((payload = json_loadb(pl, plen, JSON_DECODE_ANY, &jerr)) == NULL)
		{
			json_decref(schema);
			snprintf(err, errlen, "malformed JSON: %s", jerr.text);
			return false;
		}
		*out = json_object();
		json_object_set_new(*out, "schema", schema);
		json_object_set_new(*out, "payload", payload);
		return true;
	}
	if ((*out = json_loadb(text, len, JSON_DECODE_ANY, &jerr)) == NULL)
	{
		snprintf(err, errlen, "malformed JSON: %s", jerr.text);
		return false;
	}
	return true;
}
