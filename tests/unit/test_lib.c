/* test_lib.c - unit tests of lib/: hashing arithmetic, COPY text, parsing,
 * JSON keys. Prints TAP. */
#define _POSIX_C_SOURCE 200809L
#include "catalog.h"
#include "decode.h"
#include "hash.h"
#include "jsonl.h"
#include "keymap.h"
#include "unit.h"
#include "jarena.h"
#include <jansson.h>
#include "util.h"

#include <stdlib.h>
#include <string.h>

int unit_failed;
int unit_count;

static void
h128_add_carries(void)
{
	dbm_h128 a = {0, UINT64_MAX}, b = {0, 1};
	dbm_h128_add(&a, b);
	CHECK(a.hi == 1 && a.lo == 0);
	dbm_h128 c = {UINT64_MAX, UINT64_MAX};
	dbm_h128_add(&c, b); /* wraps modulo 2^128 */
	CHECK(c.hi == 0 && c.lo == 0);
}

static void
h128_hex_round_trip(void)
{
	dbm_h128 h = {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, back;
	char hex[33];
	dbm_h128_hex(h, hex);
	CHECK(strcmp(hex, "0123456789abcdeffedcba9876543210") == 0);
	CHECK(dbm_h128_parse(hex, &back) && dbm_h128_eq(h, back));
	CHECK(!dbm_h128_parse("0123", &back));
	CHECK(!dbm_h128_parse("0123456789ABCDEFfedcba9876543210", &back));
	CHECK(!dbm_h128_parse("0123456789abcdeffedcba987654321g", &back));
}

static void
row_hash_is_order_independent_sum(void)
{
	dbm_h128 x = dbm_hash_row("1\ta", 3), y = dbm_hash_row("2\tb", 3);
	dbm_h128 s1 = {0, 0}, s2 = {0, 0};
	dbm_h128_add(&s1, x);
	dbm_h128_add(&s1, y);
	dbm_h128_add(&s2, y);
	dbm_h128_add(&s2, x);
	CHECK(dbm_h128_eq(s1, s2));
	/* NULL and empty string, trailing space: different rows */
	CHECK(!dbm_h128_eq(dbm_hash_row("1\t\\N", 4), dbm_hash_row("1\t", 2)));
	CHECK(!dbm_h128_eq(dbm_hash_row("1\ta ", 4), dbm_hash_row("1\ta", 3)));
	/* a duplicate row changes the sum */
	dbm_h128 s3 = s1;
	dbm_h128_add(&s3, x);
	CHECK(!dbm_h128_eq(s1, s3));
}

static void
bucket_is_stable_and_in_range(void)
{
	uint32_t b = dbm_hash_bucket("42", 2, 4096);
	CHECK(b < 4096);
	CHECK(b == dbm_hash_bucket("42", 2, 4096));
	CHECK(dbm_hash_bucket("42", 2, 1) == 0);
}

static void
buckets_merge_and_total(void)
{
	dbm_buckets *a = dbm_buckets_new(8), *b = dbm_buckets_new(8);
	dbm_h128 h = {1, 2}, sum;
	a->rows[3] = 2;
	a->sum[3] = h;
	b->rows[3] = 1;
	b->sum[3] = h;
	b->rows[7] = 5;
	dbm_buckets_merge(a, b);
	CHECK(a->rows[3] == 3 && a->sum[3].hi == 2 && a->sum[3].lo == 4);
	CHECK(dbm_buckets_total(a, &sum) == 8);
	CHECK(sum.hi == 2 && sum.lo == 4);
	dbm_buckets_free(a);
	dbm_buckets_free(b);
	dbm_buckets_free(NULL);
}

static void
copy_fields_split_on_tabs(void)
{
	const char *line = "1\t\\N\t\ta\\tb";
	const char *s[8];
	size_t l[8];
	int n = dbm_copy_fields(line, strlen(line), s, l, 8);
	CHECK(n == 4);
	CHECK(l[0] == 1 && s[0][0] == '1');
	CHECK(l[1] == 2 && strncmp(s[1], "\\N", 2) == 0);
	CHECK(l[2] == 0);
	CHECK(l[3] == 4);
	CHECK(dbm_copy_fields(line, strlen(line), s, l, 2) == 2);
}

static void
copy_escape_round_trip(void)
{
	const char *v = "a\tb\nc\\d\re\b\f\v";
	dbm_buf e, d;
	dbm_buf_init(&e);
	dbm_buf_init(&d);
	dbm_copy_escape(v, strlen(v), &e);
	CHECK(strcmp(e.data, "a\\tb\\nc\\\\d\\re\\b\\f\\v") == 0);
	CHECK(dbm_copy_unescape(e.data, e.len, &d));
	CHECK(d.len == strlen(v) && memcmp(d.data, v, d.len) == 0);
	dbm_buf_reset(&e);
	dbm_copy_escape(NULL, 0, &e);
	CHECK(strcmp(e.data, "\\N") == 0);
	CHECK(!dbm_copy_unescape(e.data, e.len, &d));
	CHECK(dbm_copy_unescape("", 0, &d) && d.len == 0);
	dbm_buf_free(&e);
	dbm_buf_free(&d);
}

static void
parse_numbers_strictly(void)
{
	long v;
	double d;
	CHECK(dbm_parse_long("42", 0, 100, &v) && v == 42);
	CHECK(!dbm_parse_long("42x", 0, 100, &v));
	CHECK(!dbm_parse_long("", 0, 100, &v));
	CHECK(!dbm_parse_long("101", 0, 100, &v));
	CHECK(!dbm_parse_long("-1", 0, 100, &v));
	CHECK(dbm_parse_seconds("0.5", &d) && d == 0.5);
	CHECK(!dbm_parse_seconds("-1", &d));
	CHECK(!dbm_parse_seconds("1s", &d));
}

static void
buf_grows(void)
{
	dbm_buf b;
	dbm_buf_init(&b);
	for (int i = 0; i < 1000; i++)
		dbm_buf_printf(&b, "%d,", i);
	CHECK(b.len == strlen(b.data));
	CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
	dbm_buf_reset(&b);
	CHECK(b.len == 0 && b.data[0] == '\0');
	dbm_buf_free(&b);
}

static void
key_json_names_key_columns(void)
{
	char *cols[] = {"a b", "id", "v"};
	char *types[] = {"text", "integer", "text"};
	int key[] = {1, 0};
	dbm_table t = {0};
	t.ncols = 3;
	t.cols = cols;
	t.types = types;
	t.nkey = 2;
	t.key = key;
	json_t *o = dbm_key_json(&t, "5\t\\N", 4);
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(strcmp(s, "{\"id\":\"5\",\"a b\":null}") == 0);
	free(s);
	json_decref(o);
	t.nkey = 0; /* whole row */
	o = dbm_key_json(&t, "x\\ty\t1\t", 7);
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(strcmp(s, "{\"a b\":\"x\\ty\",\"id\":\"1\",\"v\":\"\"}") == 0);
	free(s);
	json_decref(o);
}

static void
table_patterns(void)
{
	CHECK(dbm_table_matches("t*", "public", "tab", NULL));
	CHECK(!dbm_table_matches("t*", "t", "x", NULL));
	CHECK(dbm_table_matches("public.*", "public", "x", NULL));
	CHECK(!dbm_table_matches("public.*", "other", "x", NULL));
	CHECK(dbm_table_matches("My Schema.a b", "My Schema", "a b", NULL));
	CHECK(dbm_table_matches("public.\"Order*", "public", "OrderNotes",
							"public.\"OrderNotes\""));
}

static void
keymap_counts_both_sides(void)
{
	dbm_keymap m;
	dbm_h128 a = {1, 1}, b = {2, 2};
	char key[32];
	dbm_keymap_init(&m);
	for (int i = 0; i < 5000; i++) /* forces growth */
	{
		int n = snprintf(key, sizeof(key), "k%d", i);
		dbm_keymap_add(&m, key, (size_t) n, 0, a);
		if (i % 2)
			dbm_keymap_add(&m, key, (size_t) n, 1, i % 3 ? a : b);
	}
	CHECK(m.n == 5000);
	dbm_keyent *e = dbm_keymap_get(&m, "k3", 2);
	CHECK(e && e->count[0] == 1 && e->count[1] == 1);
	CHECK(e && dbm_h128_eq(e->hash[1], b));
	e = dbm_keymap_get(&m, "k4", 2);
	CHECK(e && e->count[1] == 0);
	CHECK(dbm_keymap_get(&m, "nope", 4) == NULL);
	dbm_keymap_add(&m, "k4", 2, 0, a); /* duplicate rows count up */
	CHECK(dbm_keymap_get(&m, "k4", 2)->count[0] == 2);
	dbm_keymap_free(&m);
	dbm_keymap_free(&m);
}

static void
debezium_value_encodings(void)
{
	dbm_buf b;
	dbm_buf_init(&b);
	/* Decimal: base64 of the two's complement unscaled value */
	CHECK(dbm_decimal_from_base64("AeI=", 2, &b) && strcmp(b.data, "4.82") == 0); /* 482 */
	CHECK(dbm_decimal_from_base64("/h4=", 2, &b) && strcmp(b.data, "-4.82") == 0); /* -482 */
	CHECK(dbm_decimal_from_base64("AQ==", 3, &b) && strcmp(b.data, "0.001") == 0);
	CHECK(dbm_decimal_from_base64("AA==", 0, &b) && strcmp(b.data, "0") == 0);
	CHECK(dbm_decimal_from_base64("ESIQ9H3pxRwAAA==", 0, &b) &&
		  strcmp(b.data, "80908641247132005433344") == 0); /* 10 bytes */
	CHECK(!dbm_decimal_from_base64("%%", 0, &b));
	dbm_buf_reset(&b);
	dbm_date_from_days(19279, &b); /* the fixture's Date */
	CHECK(strcmp(b.data, "2022-10-14") == 0);
	dbm_buf_reset(&b);
	dbm_date_from_days(-1, &b);
	CHECK(strcmp(b.data, "1969-12-31") == 0);
	dbm_buf_reset(&b);
	dbm_timestamp_from_us(1665791731989360LL, &b);
	CHECK(strcmp(b.data, "2022-10-14 23:55:31.989360") == 0);
	dbm_buf_reset(&b);
	dbm_timestamp_from_us(-1, &b);
	CHECK(strcmp(b.data, "1969-12-31 23:59:59.999999") == 0);
	dbm_buf_reset(&b);
	dbm_time_from_us(86131989360LL, &b);
	CHECK(strcmp(b.data, "23:55:31.989360") == 0);
	dbm_buf_reset(&b);
	dbm_double_text(8.1, &b);
	CHECK(strcmp(b.data, "8.1") == 0);
	dbm_buf_reset(&b);
	dbm_double_text(0.1 + 0.2, &b);
	CHECK(strcmp(b.data, "0.30000000000000004") == 0);
	CHECK(dbm_base64_decode("aGk=", 4, &b) && b.len == 2 && memcmp(b.data, "hi", 2) == 0);
	dbm_buf_free(&b);
}

/* the arena: values from it and from malloc mix in one tree, freeing them
 * frees only the malloc'd ones, and a reset arena is filled again from
 * its start (run under ASan by make test: a wrong free is a report) */
static void
jarena_mixes_with_malloc(void)
{
	dbm_jarena *a = dbm_jarena_new();
	json_t *heap, *tree;
	char *s;

	dbm_jarena_install();
	heap = json_pack("{s:s}", "from", "malloc");
	for (int round = 0; round < 3; round++)
	{
		dbm_jarena_use(a);
		tree = json_loads("{\"a\":[1,2,{\"b\":\"x\"}],\"c\":\"y\"}", 0, NULL);
		dbm_jarena_use(NULL);
		CHECK(tree != NULL);
		/* a malloc'd value into an arena tree, and an arena value into a
		 * malloc'd one */
		json_object_set(tree, "heap", heap);
		json_object_set(heap, "arena", json_object_get(tree, "a"));
		s = json_dumps(tree, JSON_COMPACT | JSON_SORT_KEYS);
		CHECK(s && strcmp(s, "{\"a\":[1,2,{\"b\":\"x\"}],\"c\":\"y\",\"heap\":"
							 "{\"arena\":[1,2,{\"b\":\"x\"}],\"from\":\"malloc\"}}") == 0);
		free(s); /* json_dumps outside an arena: malloc's */
		json_object_del(heap, "arena");
		json_decref(tree);
		dbm_jarena_reset(a);
	}
	/* big values come from malloc even in an arena */
	{
		char *big = xmalloc(200000);
		memset(big, 'z', 199999);
		big[199999] = '\0';
		dbm_jarena_use(a);
		tree = json_string(big);
		dbm_jarena_use(NULL);
		CHECK(json_string_length(tree) == 199999);
		json_decref(tree);
		free(big);
	}
	CHECK(json_object_size(heap) == 1);
	json_decref(heap);
	dbm_jarena_free(a);
	json_set_alloc_funcs(malloc, free);
}

int
main(void)
{
	printf("1..14\n");
	TEST(h128_add_carries);
	TEST(h128_hex_round_trip);
	TEST(row_hash_is_order_independent_sum);
	TEST(bucket_is_stable_and_in_range);
	TEST(buckets_merge_and_total);
	TEST(copy_fields_split_on_tabs);
	TEST(copy_escape_round_trip);
	TEST(parse_numbers_strictly);
	TEST(buf_grows);
	TEST(key_json_names_key_columns);
	TEST(table_patterns);
	TEST(keymap_counts_both_sides);
	TEST(debezium_value_encodings);
	TEST(jarena_mixes_with_malloc);
	return 0;
}
