#!/usr/bin/env bats
# dbm-cdc-apply on change events: Debezium PostgreSQL envelopes (with and
# without schemas, every value encoding of the connector's settings), AWS DMS
# Kafka-target records and the dbm change lines of --print, from a file,
# stdin or Kafka (librdkafka's mock cluster, build/kafka-mock).
#
# Real inputs: tests/fixtures (copied from ../shared/fixtures).  The type
# matrix: tests/helpers/gen-debezium.sh turns the rows of a source table into
# Debezium events in a chosen encoding; they are applied to an empty copy of
# the table and dbm-diff must find source and target equal.
#
# Every test gets its own target database (setup); the source databases of
# the matrix and one Kafka mock with a topic per test are made once
# (setup_file).  Kafka groups take about 3 s to form on the mock.

bats_require_minimum_version 1.5.0

load helpers/common

GEN=$REPO_ROOT/tests/helpers/gen-debezium.sh
FX=$REPO_ROOT/tests/fixtures
P=__debezium_unavailable_value
# short sessions: a consumer killed by a test leaves the group quickly
KX=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

# The type matrix: every type the issue lists, a few rows each, exact values.
# Values that the connector itself cannot carry exactly are left out: timetz
# is sent in UTC (offsets +00 here), MicroDuration counts a month as 30.4375
# days (intervals without months or days where it is used), Bits loses a
# varbit's length (full-length values here).
MATRIX_SQL=$(cat <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE types (
	id int PRIMARY KEY,
	b bool, i2 smallint, i4 int, i8 bigint, f4 real, f8 double precision,
	n_fix numeric(12,3), n_var numeric,
	t text, vc varchar(20), ch char(5),
	by bytea,
	d date,
	t_ms time(3), t_us time,
	ts_ms timestamp(3), ts_us timestamp,
	tstz timestamptz, ttz timetz,
	iv interval,
	j json, jb jsonb, u uuid, e mood,
	b1 bit(1), bt bit(10), vb varbit(20),
	pt point,
	a_int int[], a_text text[], a_date date[], a_num numeric(6,2)[], a_uuid uuid[],
	a_ts timestamp[]
);
INSERT INTO types VALUES
(1, true, 12, 123456, 9007199254740993, 1.5, 3.141592653589793, 12345.678, 3.14159,
 'hello "world" \ back', 'varchar', 'ab', '\x00ff10', '2021-03-04', '05:06:07.123',
 '05:06:07.123456', '2021-03-04 05:06:07.123', '2021-03-04 05:06:07.123456',
 '2021-03-04 05:06:07.123456+00', '05:06:07.123456+00', '01:02:03.5',
 '{"a": [1, 2]}', '{"k": "v", "n": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy',
 B'1', B'1010000011', B'10110000000000000001', '(1.5,-2.25)',
 '{1,NULL,3}', '{"a b","c,d",NULL,"q\"t"}', '{2021-03-04,NULL}', '{1.50,-2.25}',
 '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{"2021-03-04 05:06:07.123456"}'),
(2, false, -32768, -2147483648, -9007199254740993, -0.25, -1e-300, -0.001, -1234.5678,
 'naïve ✓ 日本', '', 'x', '\x', '1900-02-28', '00:00:00', '23:59:59.999999',
 '1969-12-31 23:59:59.999', '1970-01-02 03:04:05.678901', '1969-07-20 20:17:40+00',
 '23:59:59.999999+00', '-37:15:00.25', '[]', '{}', '00000000-0000-0000-0000-000000000000',
 'sad', B'0', B'0000000000', B'00000000000000000000', '(0,0)',
 '{}', '{}', '{}', '{}', '{}', '{"1960-01-01 00:00:00.000001"}'),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL),
(4, true, 1, 0, 0, 0, 0, -0.128, -128, 'x', 'y', 'zzzzz', '\xdeadbeef', '2000-02-29',
 '12:00:00', '12:00:00', '2000-02-29 12:00:00', 'infinity', '-infinity', '00:00:00+00',
 '00:00:00', 'null', '"s"', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'ok',
 B'1', B'1111111111', B'11111111111111111111', '(-1e+300,7)',
 '{-2147483648,2147483647}', '{"",NULL}', '{1970-01-01,1969-12-31}', '{0.00,-0.01}',
 '{NULL}', '{infinity,-infinity,"1999-12-31 23:59:59.5"}');
-- decimals of any size, and the two's complement edges
CREATE TABLE bignum (id int PRIMARY KEY, n38 numeric(38,10), nv numeric);
INSERT INTO bignum VALUES
(1, 1234567890123456789012345678.0123456789, 98765432109876543210.123456789012345),
(2, -1234567890123456789012345678.0123456789, -0.000000000000000000001),
(3, 0, 0), (4, -0.0000000128, -128), (5, 0.0000000128, 128),
(6, -0.0000032768, -32768), (7, 0.0000000255, 255), (8, -0.0000000256, -256),
(9, NULL, 1000000000000000000000000000000), (10, 0.0000000001, -1),
(11, 9999999999999999999999999999.9999999999, -9999999999999999999999999999.99999);
SQL
)

# m_ms: the matrix at millisecond precision (connect mode keeps no more)
# with intervals of years, months and days (for interval strings).
MATRIX_MS_SQL=$(cat <<'SQL'
UPDATE types SET t_us = t_us::time(3), ts_us = ts_us::timestamp(3),
	a_ts = a_ts::timestamp(3)[];
UPDATE types SET iv = CASE id WHEN 1 THEN interval '1 year 2 mons 3 days 04:05:06.78'
	WHEN 2 THEN interval '-1 years -2 mons +3 days -04:05:06' WHEN 4 THEN interval '0' END;
DROP TABLE bignum;
SQL
)

TOPICS=(k_fix:1 k_lsn:2 k_idle:1 k_term:2 srv.inventory.products:1
	__debezium-heartbeat.srv:1 srv.transaction:1 dms.sbtest:1 k_kill:3 k_pair:4
	k_reb:4 k_seek:2 k_bad:1 k_badtab:1)

setup_file()
{
	local dir=$BATS_FILE_TMPDIR
	dbm_start_clusters
	psql_src -c "CREATE DATABASE m_us"
	psql "${SRC/dbname=postgres/dbname=m_us}" -XAtq -v ON_ERROR_STOP=1 -c "$MATRIX_SQL"
	psql_src -c "CREATE DATABASE m_ms TEMPLATE m_us"
	psql "${SRC/dbname=postgres/dbname=m_ms}" -XAtq -v ON_ERROR_STOP=1 -c "$MATRIX_MS_SQL"

	# the Kafka mock runs until its stdin (a fifo held open by sleep) closes
	mkfifo "$dir/kafka.in"
	sleep 100000 >"$dir/kafka.in" 3>&- &
	echo $! >"$dir/kafka.sleep.pid"
	kafka-mock "${TOPICS[@]}" <"$dir/kafka.in" >"$dir/kafka.out" 2>"$dir/kafka.err" 3>&- &
	echo $! >"$dir/kafka.pid"
	dbm_wait_until 20 test -s "$dir/kafka.out"
}

teardown_file()
{
	local dir=$BATS_FILE_TMPDIR p
	for p in kafka kafka.sleep; do
		[[ -f "$dir/$p.pid" ]] && kill "$(cat "$dir/$p.pid")" 2>/dev/null
	done
	dbm_stop_clusters
}

setup()
{
	DB="t_$BATS_TEST_NUMBER"
	psql_dst -c "CREATE DATABASE $DB"
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
	BROKERS=$(head -1 "$BATS_FILE_TMPDIR/kafka.out")
	GROUP="g_$BATS_TEST_NUMBER"
	PIDS=()
	unset DBM_SOURCE DBM_TARGET
}

teardown()
{
	local p
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# each replication origin a run leaves holds one of the
	# max_replication_slots state slots of the cluster: drop them
	psql_dst -c "DO \$\$DECLARE o text; BEGIN
		FOR o IN SELECT roname FROM pg_replication_origin LOOP
			BEGIN PERFORM pg_replication_origin_drop(o); EXCEPTION WHEN OTHERS THEN NULL; END;
		END LOOP; END\$\$" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- helpers

pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# apply [OPTION]... INPUT: dbm-cdc-apply to this test's database; stdout in
# $OUT/apply, stderr in $stderr.
apply()
{
	run --separate-stderr timeout 60 dbm-cdc-apply --target "$D" "$@"
	printf '%s\n' "$output" >"$OUT/apply"
}

# applied_ok: exit 0, nothing on stderr, a stopped line last.
applied_ok()
{
	if [[ $status -ne 0 || -n "$stderr" ]]; then
		echo "dbm-cdc-apply exit $status: $stderr" >&2
		return 1
	fi
	jq -e -s '.[-1].type == "stopped"' "$OUT/apply" >/dev/null
}

# failed_at WHERE: exit 2, exactly one line on stderr, an error naming WHERE.
failed_at()
{
	assert_equal "$status" 2
	echo "stderr: $stderr" >&2
	assert_equal "$(printf '%s\n' "$stderr" | wc -l)" 1
	[[ "$stderr" == "dbm-cdc-apply: error: "*"$1"* ]]
}

# dbz OP BEFORE AFTER [TABLE [TXID [LSN]]]: a schema-less Debezium event.
dbz()
{
	jq -cn --arg op "$1" --argjson b "$2" --argjson a "$3" --arg t "${4:-t}" \
		--argjson tx "${5:-700}" --argjson lsn "${6:-1000}" \
		'{before: $b, after: $a, source: {version: "2.1.2.Final", connector: "postgresql",
		  name: "srv", ts_ms: 1, snapshot: "false", db: "src", schema: "public", table: $t,
		  txId: $tx, lsn: $lsn, xmin: null}, op: $op, ts_ms: 2, transaction: null}'
}

# dms OPERATION DATA [BEFORE]: an AWS DMS Kafka-target data record of
# sbtest.sbtest_x.
dms()
{
	jq -cn --arg op "$1" --argjson d "$2" --argjson bi "${3:-null}" \
		'{data: $d, metadata: {timestamp: "2019-10-31T22:53:59.721201Z", "record-type": "data",
		  operation: $op, "partition-key-type": "primary-key", "schema-name": "sbtest",
		  "table-name": "sbtest_x", "transaction-id": 9324410911751}}
		 + (if $bi then {"before-image": $bi} else {} end)'
}

products_table()
{
	pd_ -c "CREATE SCHEMA inventory" -c "CREATE TABLE inventory.products (id int PRIMARY KEY,
		name text NOT NULL, description text, weight double precision)"
}

# The products after the 16 events of the Flink fixtures (111 deleted).
PRODUCTS="101|scooter|Small 2-wheel scooter|3.14
102|car battery|12V car battery|8.1
103|12-pack drill bits|12-pack of drill bits with sizes ranging from #40 to #3|0.8
104|hammer|12oz carpenter's hammer|0.75
105|hammer|14oz carpenter's hammer|0.875
106|hammer|18oz carpenter hammer|1
107|rocks|box of assorted rocks|5.1
108|jacket|water resistent black wind breaker|0.1
109|spare tire|24 inch spare tire|22.2
110|jacket|new water resistent white wind breaker|0.5"

products() { pd_ -c "SELECT * FROM inventory.products ORDER BY id"; }

# The stored offsets of a stream, as JSON ("" when none).
offsets() { pd_ -c "SELECT offsets FROM dbm.apply_position WHERE stream = '$1'"; }

# A target table t(id, v) whose trigger logs every row written to it (also
# in the apply sessions, which run as replica): each source row must be
# written exactly once.
logged_table()
{
	pd_ <<'SQL'
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE log (id int, v text);
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN INSERT INTO public.log VALUES (NEW.id, NEW.v); RETURN NEW; END$$;
CREATE TRIGGER log_row AFTER INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION log_row();
ALTER TABLE t ENABLE ALWAYS TRIGGER log_row;
SQL
}

# exactly_once N: t holds rows 1..N, each written once.
exactly_once()
{
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t")" "$1|$1|1|$1"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT id) FROM log")" "$1|$1"
}

# kafka_lines FROM TO: Kafka messages (key SOH value) inserting t rows.
kafka_lines()
{
	local i
	for ((i = $1; i <= $2; i++)); do
		printf '%d\001{"before":null,"after":{"id":%d,"v":"v%d"},"source":{"schema":"public","table":"t","txId":%d,"lsn":%d},"op":"c"}\n' \
			"$i" "$i" "$i" "$i" $((1000 + i))
	done
}

# produce TOPIC FILE: FILE holds key SOH value lines; an empty value is a
# tombstone.
produce() { kcat -P -b "$BROKERS" -t "$1" -K $'\001' -Z -l "$2"; }

# kafka_bg NAME [OPTION]...: a consumer of this test's group in the
# background; its pid in $NAME_pid, stdout and stderr in $OUT/NAME.out, .err.
kafka_bg()
{
	local name=$1
	shift
	dbm-cdc-apply --target "$D" --kafka "$BROKERS" --group "$GROUP" "${KX[@]}" "$@" \
		>"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	PIDS+=($!)
	eval "${name}_pid=$!"
}

count_is() { [[ "$(pd_ -c "SELECT count(*) FROM $1")" == "$2" ]]; }
count_ge() { (($(pd_ -c "SELECT count(*) FROM $1") >= $2)); }
# c2 has applied something (its progress lines say so)
c2_applied() { jq -e -s 'any(.applied > 0)' "$OUT/c2.out" >/dev/null 2>&1; }

# matrix SRCDB APPLY_OPTIONS -- GEN_OPTIONS: events of public.types from
# SRCDB in the generator's encoding, applied to an empty copy; dbm-diff
# finds them equal and the checksums agree.  On a difference, the columns
# that differ are shown.
matrix()
{
	local sdb=$1 aopts=() c
	shift
	while [[ $1 != -- ]]; do
		aopts+=("$1")
		shift
	done
	shift
	S=${SRC/dbname=postgres/dbname=$sdb}
	pg_dump --schema-only "$S" | pd_ >/dev/null
	sh "$GEN" "$@" "$S" public.types >"$OUT/events.jsonl"
	assert_equal "$(wc -l <"$OUT/events.jsonl")" 4
	apply "${aopts[@]}" "$OUT/events.jsonl"
	applied_ok
	run --separate-stderr dbm-diff --source "$S" --target "$D" --table public.types
	if [[ $status -ne 0 ]]; then
		for c in $(psql "$S" -XAtq -c "SELECT attname FROM pg_attribute
				WHERE attrelid = 'types'::regclass AND attnum > 0 ORDER BY attnum"); do
			diff <(psql "$S" -XAtq -c "SELECT id, $c::text FROM types ORDER BY 1") \
				<(pd_ -c "SELECT id, $c::text FROM types ORDER BY 1") >&2 ||
				echo "^ column $c (< source, > target)" >&2
		done
		echo "dbm-diff exit $status: $output $stderr" >&2
		return 1
	fi
	jq -e -s '.[-1] | .type == "summary" and .equal == 1 and .different == 0' <<<"$output" >/dev/null
	assert_equal "$(dbm_checksum "$D" public.types)" "$(dbm_checksum "$S" public.types)"
}

# ------------------------------------------------------- options and usage

@test "--help names the event sources and their options" {
	run --separate-stderr dbm-cdc-apply --help
	assert_success
	for o in "FILE or -" --format --binary-mode --dms-before-field --dead-letter --kafka \
		--topic= --topic-regex --group "-X KEY=VALUE"; do
		assert_output --partial -- "$o"
	done
}

@test "--kafka without --topic or --topic-regex exits 2 with a hint" {
	run --separate-stderr dbm-cdc-apply --target "$D" --kafka "$BROKERS"
	assert_equal "$status" 2
	assert_equal "$output" ""
	assert_equal "$stderr" 'dbm-cdc-apply: error: --topic or --topic-regex is required with --kafka
Try "dbm-cdc-apply --help" for more information.'
}

@test "two sources at once (--slot with FILE, --kafka with FILE, --slot with --kafka) exit 2" {
	local f=$FX/dms/kafka-target-docs-example.json
	for args in "--slot s --source src $f" "--kafka $BROKERS --topic k_fix $f" \
		"--slot s --source src --kafka $BROKERS --topic k_fix"; do
		run --separate-stderr dbm-cdc-apply --target "$D" $args
		assert_equal "$status" 2
		assert_equal "$output" ""
		assert_equal "$stderr" 'dbm-cdc-apply: error: give one source: --slot, --kafka, or an input FILE
Try "dbm-cdc-apply --help" for more information.'
	done
}

@test "--print with --kafka, --target missing, a bad --format or --binary-mode exit 2" {
	run --separate-stderr dbm-cdc-apply --print --kafka "$BROKERS" --topic k_fix
	assert_equal "$status" 2
	[[ "$stderr" == "dbm-cdc-apply: error: --print reads a slot or a file, not Kafka"* ]]
	run --separate-stderr dbm-cdc-apply --kafka "$BROKERS" --topic k_fix
	assert_equal "$status" 2
	[[ "$stderr" == "dbm-cdc-apply: error: --target is required"* ]]
	run --separate-stderr dbm-cdc-apply --target "$D" --format debezium -
	assert_equal "$status" 2
	[[ "$stderr" == *'invalid value "debezium" for --format'* ]]
	run --separate-stderr dbm-cdc-apply --target "$D" --binary-mode base32 -
	assert_equal "$status" 2
	[[ "$stderr" == *'invalid value "base32" for --binary-mode'* ]]
	# nothing was connected to or created
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm'")" 0
}

@test "Kafka-only options (--topic, --topic-regex, --group, -X) without --kafka exit 2" {
	echo '{"ts_ms": 1}' >"$OUT/hb.json"
	for args in "--topic k_fix" "--topic-regex k_.*" "--group g" "-X client.id=x"; do
		run --separate-stderr dbm-cdc-apply --target "$D" $args "$OUT/hb.json"
		echo "$args: exit $status $stderr" >&2
		assert_equal "$status" 2
		assert_equal "$output" ""
		[[ "$stderr" == "dbm-cdc-apply: error: "*"--kafka"* ]]
	done
}

@test "-X with an unknown librdkafka property or without = exits 2 naming it" {
	run --separate-stderr dbm-cdc-apply --target "$D" --kafka "$BROKERS" --topic k_fix -X no.such.prop=1
	assert_equal "$status" 2
	assert_equal "$stderr" 'dbm-cdc-apply: error: -X no.such.prop: No such configuration property: "no.such.prop"'
	run --separate-stderr dbm-cdc-apply --target "$D" --kafka "$BROKERS" --topic k_fix -X fetch.wait.max.ms
	assert_equal "$status" 2
	assert_equal "$stderr" 'dbm-cdc-apply: error: -X "fetch.wait.max.ms": expected key=value'
}

# ------------------------------------------------------ fixtures, in files

@test "the Debezium fixtures with and without schemas give the same rows; a re-run of a file applies nothing" {
	products_table
	apply "$FX/debezium/postgres-schema-include.jsonl"
	applied_ok
	assert_equal "$(products)" "$PRODUCTS"
	jq -e -s '.[-1] | .reason == "eof" and .applied == 16' "$OUT/apply" >/dev/null
	assert_equal "$(offsets "file:$FX/debezium/postgres-schema-include.jsonl")" '{"line": 16}'
	# the same file again continues after its last committed line
	apply "$FX/debezium/postgres-schema-include.jsonl"
	applied_ok
	jq -e -s '.[-1].applied == 0' "$OUT/apply" >/dev/null

	pd_ -c "TRUNCATE inventory.products"
	apply "$FX/debezium/postgres-schema-exclude.jsonl"
	applied_ok
	assert_equal "$(products)" "$PRODUCTS"
}

@test "the Debezium fixtures from stdin: replays converge (inserts and updates as upserts, deletes if the row is there)" {
	products_table
	for i in 1 2 3; do
		run --separate-stderr dbm-cdc-apply --target "$D" - <"$FX/debezium/postgres-schema-include.jsonl"
		assert_success
		assert_equal "$stderr" ""
		assert_equal "$(products)" "$PRODUCTS"
	done
	# the schema-less stream replayed over it changes nothing
	run --separate-stderr dbm-cdc-apply --target "$D" - <"$FX/debezium/postgres-schema-exclude.jsonl"
	assert_success
	assert_equal "$(products)" "$PRODUCTS"
}

@test "the Debezium 1.9 fixture: MicroTimestamp, Date and MicroTime values" {
	pd_ -c "CREATE TABLE t (id bigint PRIMARY KEY, ts timestamp, d date, t time)"
	apply "$FX/debezium/postgres-timestamps-1.9.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM t")" "1|2022-10-14 23:55:31.98936|2022-10-14|23:55:31.98936"
}

@test "the REPLICA IDENTITY DEFAULT fixture: updates without before are upserts by key; the delete without a key exits 2 naming file:16, its batch not committed" {
	products_table
	apply --batch-rows 1 "$FX/debezium/postgres-replica-identity-default.jsonl"
	failed_at "$FX/debezium/postgres-replica-identity-default.jsonl:16: delete of inventory.products without \"before\""
	# line 15 (111 to 5.17) was in the failing batch
	assert_equal "$(pd_ -c "SELECT id, weight FROM inventory.products WHERE id IN (106, 110, 111) ORDER BY id")" \
		"106|1
110|0.5
111|5.18"
	assert_equal "$(offsets "file:$FX/debezium/postgres-replica-identity-default.jsonl")" '{"line": 14}'
}

@test "the AWS DMS documentation record applies (mixed-case column names)" {
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	apply "$FX/dms/kafka-target-docs-example.json"
	applied_ok
	assert_equal "$(pd_ -c 'SELECT * FROM sbtest.sbtest_x')" "100000161|val61s|val61s|val61s"
}

# ------------------------------------------------------------- Debezium ops

@test "Debezium op r, c, u, d and t; tombstones, heartbeats and transaction metadata skipped; op m does not stop the stream" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)" -c "CREATE TABLE u (id int PRIMARY KEY)"
	{
		dbz r null '{"id":1,"v":"a"}'
		dbz r null '{"id":2,"v":"b"}'
		dbz r null '{"id":3,"v":"c"}'
		dbz r null '{"id":7}' u
		echo '{"status":"BEGIN","id":"571:53195829","ts_ms":1486500577125,"event_count":null,"data_collections":null}'
		dbz u '{"id":2,"v":"b"}' '{"id":2,"v":"b2"}' t 571
		dbz d '{"id":3,"v":"c"}' null t 571
		echo 'null'
		echo '{"schema":{"type":"struct","fields":[],"optional":false},"payload":null}'
		echo '{"status":"END","id":"571:53195829","ts_ms":1486500577691,"event_count":2,"data_collections":[{"data_collection":"public.t","event_count":2}]}'
		echo '{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":{"ts_ms":1588252618953}}'
		echo '{"ts_ms":1588252618953}'
		echo '{"op":"m","ts_ms":1,"source":{"version":"2.1.2.Final","connector":"postgresql","name":"srv","ts_ms":1,"snapshot":"false","db":"src","schema":"","table":"","txId":572,"lsn":2000,"xmin":null},"message":{"prefix":"app","content":"aGVsbG8="}}'
		dbz c null '{"id":4,"v":"d"}' t 573
		dbz t null null u 574
		dbz c null '{"id":8}' u 575
	} >"$OUT/ops.jsonl"
	apply "$OUT/ops.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM t ORDER BY id")" "1|a
2|b2
4|d"
	assert_equal "$(pd_ -c "SELECT * FROM u")" "8"
	# two tombstones, BEGIN, END and two heartbeats
	jq -e -s '.[-1].skipped == 6' "$OUT/apply" >/dev/null
}

@test "--print hands a Debezium op m on as a message line" {
	{
		dbz c null '{"id":1}'
		echo '{"op":"m","ts_ms":1,"source":{"version":"2.1.2.Final","connector":"postgresql","name":"srv","ts_ms":1,"snapshot":"false","db":"src","schema":"","table":"","txId":572,"lsn":2000,"xmin":null},"message":{"prefix":"app","content":"aGVsbG8="}}'
	} >"$OUT/m.jsonl"
	run --separate-stderr dbm-cdc-apply --print "$OUT/m.jsonl"
	assert_success
	jq -e -s 'map(select(.type == "message")) | length == 1 and .[0].prefix == "app"' <<<"$output" >/dev/null
}

@test "a primary-key change (delete, tombstone, create) and an update whose before has the old key both move the row" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{
		dbz r null '{"id":1,"v":"a"}'
		dbz r null '{"id":2,"v":"b"}'
		dbz d '{"id":1,"v":"a"}' null t 701
		echo 'null'
		dbz c null '{"id":10,"v":"a"}' t 701
		dbz u '{"id":2,"v":"b"}' '{"id":20,"v":"b"}' t 702
	} >"$OUT/pk.jsonl"
	apply "$OUT/pk.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM t ORDER BY id")" "10|a
20|b"
}

@test "an insert and a later whole-row update of the same row in one batch both apply" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{
		for i in 1 2 3 4 5 6 7; do dbz c null "{\"id\":$i,\"v\":\"a\"}" t $((700 + i)); done
		dbz u '{"id":1,"v":"a"}' '{"id":1,"v":"b"}' t 708
	} >"$OUT/dup.jsonl"
	apply "$OUT/dup.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT string_agg(id || v, ',' ORDER BY id) FROM t")" "1b,2a,3a,4a,5a,6a,7a"
}

@test "the unchanged-TOAST placeholder is never written: text, text[] and json keep their values" {
	pd_ -c "CREATE TABLE big (id int PRIMARY KEY, v int, body text, tags text[], doc jsonb)"
	{
		dbz c null '{"id":1,"v":1,"body":"long text","tags":["x","y"],"doc":"{\"a\": 1}"}' big
		dbz u null "{\"id\":1,\"v\":2,\"body\":\"$P\",\"tags\":[\"$P\"],\"doc\":\"$P\"}" big 701
	} >"$OUT/toast.jsonl"
	apply "$OUT/toast.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM big")" '1|2|long text|{x,y}|{"a": 1}'
	# with schemas too
	jq -c '{schema: {type: "struct", fields: [{field: "after", type: "struct", optional: true,
		fields: [{field: "id", type: "int32"}, {field: "v", type: "int32", optional: true},
			{field: "body", type: "string", optional: true},
			{field: "tags", type: "array", items: {type: "string", optional: true}, optional: true},
			{field: "doc", type: "string", name: "io.debezium.data.Json", optional: true}]}]},
		payload: (. | .after.v = 3)}' "$OUT/toast.jsonl" | tail -1 >"$OUT/toast2.jsonl"
	apply "$OUT/toast2.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM big")" '1|3|long text|{x,y}|{"a": 1}'
}

@test "a new row carrying the unchanged-TOAST placeholder (a key change under REPLICA IDENTITY DEFAULT) exits 2 naming file:line and column; nothing of its batch committed" {
	pd_ -c "CREATE TABLE big (id int PRIMARY KEY, v int, body text)"
	{
		dbz c null '{"id":1,"v":1,"body":"long text"}' big 700
		dbz d '{"id":1,"v":null,"body":null}' null big 701
		dbz c null "{\"id\":101,\"v\":1,\"body\":\"$P\"}" big 701
	} >"$OUT/newkey.jsonl"
	apply "$OUT/newkey.jsonl"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "$stderr" "dbm-cdc-apply: error: $OUT/newkey.jsonl:3: column \"body\" of public.big: a new row without its value (the unchanged-TOAST placeholder); it cannot be recovered from the stream: give the source table REPLICA IDENTITY FULL"
	assert_equal "$(pd_ -c "SELECT count(*) FROM big")" 0
}

@test "hstore (hstore.handling.mode json and map) and the connector's ±infinity dates, with and without schemas" {
	pd_ -c "CREATE EXTENSION IF NOT EXISTS hstore" -c "CREATE TABLE hs (id int PRIMARY KEY, h hstore, d date)"
	{
		# json mode: the object in a string; map mode: the object itself
		dbz c null '{"id":1,"h":"{\"a\":\"1\",\"b\":null,\"q\\\"x\":\"back\\\\slash\"}","d":-622191234}' hs
		dbz c null '{"id":2,"h":{"k":"v w","n":null},"d":-625821272}' hs 701
		dbz c null '{"id":3,"h":"{}","d":19000}' hs 702
	} >"$OUT/hs.jsonl"
	apply "$OUT/hs.jsonl"
	applied_ok
	want='1|"a"=>"1", "b"=>NULL, "q\"x"=>"back\\slash"|infinity
2|"k"=>"v w", "n"=>NULL|-infinity
3||2022-01-08'
	assert_equal "$(pd_ -c "SELECT id, h, d FROM hs ORDER BY id")" "$want"
	# with schemas: io.debezium.data.Json, map, io.debezium.time.Date
	pd_ -c "TRUNCATE hs" -c "DROP SCHEMA dbm CASCADE"
	jq -c '{schema: {type: "struct", fields: [{field: "after", type: "struct", optional: true,
		fields: [{field: "id", type: "int32"},
			{field: "h", type: (if (.after.h | type) == "object" then "map" else "string" end),
			 name: (if (.after.h | type) == "object" then null else "io.debezium.data.Json" end), optional: true},
			{field: "d", type: "int32", name: "io.debezium.time.Date", optional: true}]}]},
		payload: .}' "$OUT/hs.jsonl" >"$OUT/hs2.jsonl"
	apply "$OUT/hs2.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT id, h, d FROM hs ORDER BY id")" "$want"
}

@test "the unchanged-TOAST placeholder of a bytea column (its bytes in base64) is never written" {
	pd_ -c "CREATE TABLE big (id int PRIMARY KEY, v int, blob bytea)"
	pb=$(printf %s "$P" | base64 -w0)
	{
		dbz c null '{"id":1,"v":1,"blob":"AQID"}' big
		dbz u null "{\"id\":1,\"v\":2,\"blob\":\"$pb\"}" big 701
	} >"$OUT/toast.jsonl"
	apply "$OUT/toast.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM big")" '1|2|\x010203'
}

# ----------------------------------------------------------------- AWS DMS

@test "AWS DMS records: load, insert, update with a before-image (a key change) and without, delete; control records logged and skipped" {
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	{
		dms load '{"id":1,"fname":"a","lname":"b","REGION":"eu"}'
		dms load '{"id":2,"fname":"c","lname":"d","REGION":"us"}'
		dms load '{"id":4,"fname":"g","lname":"h","REGION":"sa"}'
		echo '{"data":{"columns":{"id":{},"fname":{},"lname":{},"REGION":{}}},"metadata":{"timestamp":"2019-10-31T22:53:59.721201Z","record-type":"control","operation":"create-table","partition-key-type":"task-id","schema-name":"sbtest","table-name":"sbtest_x"}}'
		dms insert '{"id":3,"fname":"e","lname":"f","REGION":"ap"}'
		dms update '{"id":30,"fname":"e2","lname":"f","REGION":"ap"}' '{"id":3,"fname":"e","lname":"f","REGION":"ap"}'
		dms update '{"id":2,"fname":"c2","lname":"d","REGION":"us"}'
		dms delete '{"id":1,"fname":"a","lname":"b","REGION":"eu"}'
		dms delete '{"id":99,"fname":"z","lname":"z","REGION":"zz"}'
	} >"$OUT/dms.jsonl"
	# --dms-before-field names the before-image attribute
	jq -c 'if has("before-image") then {bi: .["before-image"]} + del(.["before-image"]) else . end' \
		"$OUT/dms.jsonl" >"$OUT/dms-bi.jsonl"
	apply --dms-before-field bi "$OUT/dms-bi.jsonl"
	assert_equal "$status" 0
	[[ "$stderr" == *"skipped an AWS DMS control record for sbtest.sbtest_x"* ]]
	assert_equal "$(pd_ -c 'SELECT * FROM sbtest.sbtest_x ORDER BY id')" "2|c2|d|us
4|g|h|sa
30|e2|f|ap"
}

@test "a replayed AWS DMS stream with a key-changing update (before-image) converges" {
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	{
		dms insert '{"id":3,"fname":"e","lname":"f","REGION":"ap"}'
		dms update '{"id":30,"fname":"e2","lname":"f","REGION":"ap"}' '{"id":3,"fname":"e","lname":"f","REGION":"ap"}'
		dms insert '{"id":5,"fname":"i","lname":"j","REGION":"eu"}'
	} >"$OUT/dms.jsonl"
	for i in 1 2; do
		run --separate-stderr dbm-cdc-apply --target "$D" - <"$OUT/dms.jsonl"
		echo "run $i: exit $status $stderr" >&2
		assert_success
		assert_equal "$(pd_ -c 'SELECT * FROM sbtest.sbtest_x ORDER BY id')" "5|i|j|eu
30|e2|f|ap"
	done
}

@test "an AWS DMS control record of metadata only (drop-table) is logged and skipped" {
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	{
		dms insert '{"id":1,"fname":"a","lname":"b","REGION":"eu"}'
		echo '{"metadata":{"timestamp":"2019-10-31T22:53:59.721201Z","record-type":"control","operation":"drop-table","partition-key-type":"task-id","schema-name":"sbtest","table-name":"sbtest_x"}}'
	} >"$OUT/ctl.jsonl"
	apply "$OUT/ctl.jsonl"
	assert_equal "$status" 0
	[[ "$stderr" == *"skipped an AWS DMS control record"* ]]
	assert_equal "$(pd_ -c 'SELECT id FROM sbtest.sbtest_x')" "1"
}

@test "an AWS DMS control record announcing a column the target lacks exits 2 naming it, nothing of its batch committed" {
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	{
		dms insert '{"id":1,"fname":"a","lname":"b","REGION":"eu"}'
		echo '{"data":{"columns":{"id":{},"zip":{}}},"metadata":{"timestamp":"2019-10-31T22:53:59.721201Z","record-type":"control","operation":"add-column","partition-key-type":"task-id","schema-name":"sbtest","table-name":"sbtest_x"}}'
		dms insert '{"id":2,"fname":"a","lname":"b","REGION":"eu"}'
	} >"$OUT/ctl.jsonl"
	apply --batch-ms 60000 "$OUT/ctl.jsonl"
	failed_at "$OUT/ctl.jsonl:2: AWS DMS control record announces column \"zip\""
	assert_equal "$(pd_ -c 'SELECT count(*) FROM sbtest.sbtest_x')" 0
	assert_equal "$(offsets "file:$OUT/ctl.jsonl")" ""
}

# --------------------------------------------------------- the type matrix

@test "type matrix with schemas, connector defaults (decimal precise, adaptive, binary bytes, MicroDuration)" {
	matrix m_us --
}

@test "type matrix without schemas, connector defaults: the target column's type decides" {
	matrix m_us -- --no-schema
}

@test "type matrix with schemas: decimal string, adaptive_time_microseconds, binary base64" {
	matrix m_us --binary-mode base64 -- --decimal string --time adaptive_time_microseconds --binary base64
}

@test "type matrix without schemas: decimal double, binary hex" {
	matrix m_us --binary-mode hex -- --no-schema --decimal double --binary hex
}

@test "schema-less numeric(p,s) strings: base64 or digits by their shape; one that fits both stops, exit 2 naming --decimal-mode; --decimal-mode decides" {
	pd_ -c 'CREATE TABLE t (id int PRIMARY KEY, a numeric(10,2), b numeric(8))'
	# AeI= is only base64 (482, scale 2 from the column), -5 and 7.5e1 only digits
	dbz c null '{"id":1,"a":"AeI=","b":"-5"}' >"$OUT/shape.jsonl"
	dbz c null '{"id":2,"a":"7.5e1","b":"Bw=="}' >>"$OUT/shape.jsonl"
	apply "$OUT/shape.jsonl"
	applied_ok
	assert_equal "$(pd_ -c 'SELECT id, a, b FROM t ORDER BY id')" "1|4.82|-5
2|75.00|7"
	# "1234" is both: base64 of d7 6d f8 (-2658824) and the number 1234
	pd_ -c 'TRUNCATE t'
	{
		dbz c null '{"id":3,"a":"AeI=","b":"1"}'
		dbz c null '{"id":4,"a":"1234","b":"1"}'
	} >"$OUT/both.jsonl"
	apply --batch-ms 60000 "$OUT/both.jsonl"
	failed_at "$OUT/both.jsonl:2: "
	[[ "$stderr" == *'column "a": value "1234" without a schema may be base64 (decimal.handling.mode precise) or digits (string): give --decimal-mode=precise or --decimal-mode=string'* ]]
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	apply --decimal-mode precise "$OUT/both.jsonl"
	applied_ok
	assert_equal "$(pd_ -c 'SELECT id, a FROM t ORDER BY id')" "3|4.82
4|-26588.24"
	pd_ -c 'TRUNCATE t' -c "DELETE FROM dbm.apply_position"
	dbz c null '{"id":4,"a":"1234","b":"1"}' >"$OUT/string.jsonl"
	apply --decimal-mode string "$OUT/string.jsonl"
	applied_ok
	assert_equal "$(pd_ -c 'SELECT id, a FROM t')" "4|1234.00"
	run --separate-stderr dbm-cdc-apply --target "$D" --decimal-mode double "$OUT/string.jsonl"
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: invalid value "double" for --decimal-mode: precise or string'
}

@test "type matrix with schemas: decimal double, time connect, binary hex, interval strings" {
	matrix m_ms --binary-mode hex -- --decimal double --time connect --binary hex --interval string
}

@test "type matrix without schemas: decimal string, binary base64, interval strings" {
	matrix m_ms --binary-mode base64 -- --no-schema --decimal string --binary base64 --interval string
}

@test "type matrix with NanoTimestamp and NanoTime" {
	matrix m_us -- --time nano
}

@test "Decimal and VariableScaleDecimal of any size, two's complement edges, with and without schemas" {
	S=${SRC/dbname=postgres/dbname=m_us}
	pg_dump --schema-only "$S" | pd_ >/dev/null
	for schema in --schema --no-schema; do
		pd_ -c "TRUNCATE bignum"
		sh "$GEN" $schema "$S" public.bignum >"$OUT/big.jsonl"
		apply - <"$OUT/big.jsonl"
		apply "$OUT/big.jsonl"
		applied_ok
		run --separate-stderr dbm-diff --source "$S" --target "$D" --table public.bignum
		echo "$schema: $output" >&2
		assert_success
		assert_equal "$(dbm_checksum "$D" public.bignum)" "$(dbm_checksum "$S" public.bignum)"
	done
}

@test "bit(1) arrives as a boolean, with and without schemas" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, b1 bit(1))"
	jq -c '{schema: {type: "struct", fields: [{field: "after", type: "struct", optional: true,
		fields: [{field: "id", type: "int32"}, {field: "b1", type: "boolean", optional: true}]}]},
		payload: .}' <(dbz c null '{"id":1,"b1":true}'; dbz c null '{"id":2,"b1":false}') >"$OUT/b.jsonl"
	{ dbz c null '{"id":3,"b1":true}'; dbz c null '{"id":4,"b1":false}'; } >>"$OUT/b.jsonl"
	apply "$OUT/b.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT string_agg(id || ':' || b1, ',' ORDER BY id) FROM t")" "1:1,2:0,3:1,4:0"
}

# ------------------------------------------------------ the dbm change format

@test "--print of the Debezium fixture piped to dbm-cdc-apply - reproduces the same target" {
	products_table
	run --separate-stderr dbm-cdc-apply --print "$FX/debezium/postgres-schema-include.jsonl"
	assert_success
	printf '%s\n' "$output" | grep '"type":"change"' >"$OUT/changes.jsonl"
	assert_equal "$(wc -l <"$OUT/changes.jsonl")" 16
	apply - <"$OUT/changes.jsonl"
	applied_ok
	assert_equal "$(products)" "$PRODUCTS"
	# nothing was applied by --print itself
	run dbm-cdc-apply --print "$FX/dms/kafka-target-docs-example.json"
	assert_success
	jq -e -s '.[0] | .type == "change" and .op == "insert" and .table == "sbtest.sbtest_x" and
		.new.REGION == "val61s"' <<<"$output" >/dev/null
}

@test "--print of the type matrix with schemas piped to dbm-cdc-apply - reproduces the source table" {
	S=${SRC/dbname=postgres/dbname=m_us}
	pg_dump --schema-only "$S" | pd_ >/dev/null
	sh "$GEN" "$S" public.types >"$OUT/events.jsonl"
	# with the target named: a schema's boolean may be a bit(1) column
	dbm-cdc-apply --print --target "$D" "$OUT/events.jsonl" >"$OUT/changes.jsonl"
	apply - <"$OUT/changes.jsonl"
	applied_ok
	run --separate-stderr dbm-diff --source "$S" --target "$D" --table public.types
	echo "$output $stderr" >&2
	assert_success
}

@test "dbm change lines carry PostgreSQL text: bytea, numeric, date and point values apply as they are" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, b bytea, n numeric(6,2), d date, p point)"
	printf '%s\n' '{"type":"change","op":"insert","table":"public.t","key":{"id":"1"},"new":{"id":"1","b":"\\x00ff","n":"1234.50","d":"2021-03-04","p":"(1,2)"}}' \
		'{"type":"commit"}' >"$OUT/dbm.jsonl"
	apply "$OUT/dbm.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT * FROM t")" '1|\x00ff|1234.50|2021-03-04|(1,2)'
}

@test "--print --target of schema-less events converts by the target's column types, and the pipe reproduces the source" {
	S=${SRC/dbname=postgres/dbname=m_us}
	pg_dump --schema-only "$S" | pd_ >/dev/null
	sh "$GEN" --no-schema "$S" public.bignum >"$OUT/events.jsonl"
	dbm-cdc-apply --print --target "$D" "$OUT/events.jsonl" >"$OUT/changes.jsonl"
	apply - <"$OUT/changes.jsonl"
	applied_ok
	run --separate-stderr dbm-diff --source "$S" --target "$D" --table public.bignum
	assert_success
}

# --------------------------------------------------------------- bad input

@test "a malformed JSON line exits 2 with one error naming file:line; nothing of its batch committed; no dead-letter file" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	mkdir "$OUT/in"
	{ dbz c null '{"id":1,"v":"a"}'; dbz c null '{"id":2,"v":"b"}'; echo '{"before":null,'; dbz c null '{"id":3,"v":"c"}'; } >"$OUT/in/bad.jsonl"
	cd "$OUT/in"
	apply --batch-ms 60000 "$OUT/in/bad.jsonl"
	failed_at "$OUT/in/bad.jsonl:3: malformed JSON"
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
	assert_equal "$(offsets "file:$OUT/in/bad.jsonl")" ""
	# no dead-letter file, neither here nor next to the input
	assert_equal "$(ls "$OUT/in")" "bad.jsonl"
}

@test "an unknown table exits 2 naming it and file:line; nothing of its batch committed" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{ dbz c null '{"id":1,"v":"a"}'; dbz c null '{"id":2,"v":"b"}' nope; dbz c null '{"id":3,"v":"c"}'; } >"$OUT/bad.jsonl"
	apply --batch-ms 60000 "$OUT/bad.jsonl"
	failed_at "$OUT/bad.jsonl:2: table \"public\".\"nope\" is missing on the target"
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
}

@test "a value that does not fit its column exits 2 naming file:line; nothing of its batch committed" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v int)"
	{ dbz c null '{"id":1,"v":1}'; dbz c null '{"id":2,"v":2}'; dbz c null '{"id":3,"v":"abc"}'; dbz c null '{"id":4,"v":4}'; } >"$OUT/bad.jsonl"
	apply --batch-ms 60000 "$OUT/bad.jsonl"
	failed_at "$OUT/bad.jsonl:3: "
	[[ "$stderr" == *'invalid input syntax for type integer: "abc"'* ]]
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
}

@test "a schema type it does not know exits 2 naming file:line, column and type; nothing of its batch committed" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v int)"
	{
		dbz c null '{"id":1,"v":1}'
		jq -cn '{schema: {type: "struct", fields: [{field: "after", type: "struct", optional: true,
			fields: [{field: "id", type: "int32"}, {field: "v", type: "int64", name: "io.debezium.time.Femtotime"}]}]},
			payload: {before: null, after: {id: 2, v: 5}, source: {schema: "public", table: "t"}, op: "c"}}'
	} >"$OUT/bad.jsonl"
	apply --batch-ms 60000 "$OUT/bad.jsonl"
	failed_at "$OUT/bad.jsonl:2: column \"v\": schema type \"io.debezium.time.Femtotime\" is not known"
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
}

@test "--dead-letter FILE takes events it cannot decode (malformed JSON, not an event) with file:line and goes on" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{
		dbz c null '{"id":1,"v":"a"}'
		echo '{"hello":"world"}'
		echo '{"before":null,'
		dbz c null '{"id":2,"v":"b"}'
	} >"$OUT/bad.jsonl"
	apply --dead-letter "$OUT/dl.jsonl" "$OUT/bad.jsonl"
	echo "$stderr" >&2
	assert_equal "$status" 0
	assert_equal "$(pd_ -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM t")" "1,2"
	jq -e -s --arg f "$OUT/bad.jsonl" 'length == 2 and all(.type == "dead_letter") and
		.[0].where == "\($f):2" and .[0].event == "{\"hello\":\"world\"}" and
		.[1].where == "\($f):3"' "$OUT/dl.jsonl" >/dev/null
}

# ------------------------------------------------------------------- Kafka

@test "Kafka: the Debezium fixture with a tombstone, to the end of the partition; offsets stored in dbm.apply_position" {
	products_table
	jq -r '"\(.payload.after.id // .payload.before.id)\u0001" + tojson' \
		"$FX/debezium/postgres-schema-include.jsonl" >"$OUT/msgs"
	printf '111\001\n' >>"$OUT/msgs"
	produce k_fix "$OUT/msgs"
	apply --kafka "$BROKERS" --topic k_fix --group "$GROUP" "${KX[@]}" --stop-at-lsn FFFF/0
	applied_ok
	jq -e -s '.[-1] | .reason == "lsn" and .applied == 16 and .skipped == 1' "$OUT/apply" >/dev/null
	assert_equal "$(products)" "$PRODUCTS"
	assert_equal "$(offsets "kafka:$GROUP")" '{"k_fix/0": 16}'
	# again: nothing new, nothing applied twice
	apply --kafka "$BROKERS" --topic k_fix --group "$GROUP" "${KX[@]}" --stop-at-lsn FFFF/0
	applied_ok
	jq -e -s '.[-1].applied == 0' "$OUT/apply" >/dev/null
}

@test "Kafka --stop-at-lsn applies each partition up to the last event at or before the LSN (source.lsn)" {
	products_table
	# partition 0: the fixture; partition 1: nothing past the LSN
	jq -r '"\(.payload.after.id)\u0001" + tojson' "$FX/debezium/postgres-schema-include.jsonl" >"$OUT/msgs"
	kcat -P -b "$BROKERS" -t k_lsn -p 0 -K $'\001' -l "$OUT/msgs"
	dbz c null '{"id":1,"name":"p1","description":null,"weight":1}' products 1 100 |
		jq -c '.source.schema = "inventory"' | kcat -P -b "$BROKERS" -t k_lsn -p 1
	# 34132200 = 0/208D0E8: the update of 107
	apply --kafka "$BROKERS" --topic k_lsn --group "$GROUP" "${KX[@]}" --stop-at-lsn 0/208D0E8
	applied_ok
	jq -e -s '.[-1].reason == "lsn"' "$OUT/apply" >/dev/null
	assert_equal "$(pd_ -c "SELECT string_agg(id || ':' || weight, ',' ORDER BY id) FROM inventory.products")" \
		"1:1,101:3.14,102:8.1,103:0.8,104:0.75,105:0.875,106:1,107:5.1,108:0.1,109:22.2"
	assert_equal "$(offsets "kafka:$GROUP")" '{"k_lsn/0": 10, "k_lsn/1": 0}'
}

@test "Kafka --until-idle stops after SECS without messages, exit 0" {
	logged_table
	kafka_lines 1 20 >"$OUT/msgs"
	produce k_idle "$OUT/msgs"
	SECONDS=0
	apply --kafka "$BROKERS" --topic k_idle --group "$GROUP" "${KX[@]}" --until-idle 6
	applied_ok
	jq -e -s '.[-1] | .reason == "idle" and .applied == 20' "$OUT/apply" >/dev/null
	exactly_once 20
	((SECONDS < 20))
}

@test "Kafka SIGTERM commits what is applied, prints a stopped line and exits 0" {
	logged_table
	kafka_lines 1 500 >"$OUT/msgs"
	produce k_term "$OUT/msgs"
	kafka_bg c1 --topic k_term
	dbm_wait_until 20 count_is t 500
	kill -TERM "$c1_pid"
	wait "$c1_pid"
	jq -e -s '.[-1] | .type == "stopped" and .reason == "signal" and .applied == 500' "$OUT/c1.out" >/dev/null
	exactly_once 500
	assert_equal "$(offsets "kafka:$GROUP" | jq '[.[]] | add + length')" 500
}

@test "Kafka --topic-regex: changes and AWS DMS records applied, heartbeat and transaction-metadata topics skipped cleanly" {
	products_table
	pd_ -c 'CREATE SCHEMA sbtest' -c 'CREATE TABLE sbtest.sbtest_x (id bigint PRIMARY KEY, fname text, lname text, "REGION" text)'
	jq -r '"\(.payload.after.id // .payload.before.id)\u0001" + tojson' \
		"$FX/debezium/postgres-schema-include.jsonl" >"$OUT/msgs"
	produce srv.inventory.products "$OUT/msgs"
	printf '%s\001%s\n' '{"serverName":"srv"}' \
		'{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":{"ts_ms":1588252618953}}' \
		'{"serverName":"srv"}' '{"ts_ms":1588252618954}' >"$OUT/hb"
	produce __debezium-heartbeat.srv "$OUT/hb"
	printf '%s\001%s\n' 601 '{"status":"BEGIN","id":"601","ts_ms":1,"event_count":null,"data_collections":null}' \
		601 '{"status":"END","id":"601","ts_ms":2,"event_count":9,"data_collections":[{"data_collection":"inventory.products","event_count":9}]}' >"$OUT/tx"
	produce srv.transaction "$OUT/tx"
	printf '1\001%s\n' "$(cat "$FX/dms/kafka-target-docs-example.json")" >"$OUT/dms"
	produce dms.sbtest "$OUT/dms"
	apply --kafka "$BROKERS" --topic-regex '^(srv\..*|__debezium-heartbeat\..*|dms\..*)' --group "$GROUP" \
		"${KX[@]}" -X client.id=dbm-test --stop-at-lsn FFFF/0
	applied_ok
	assert_equal "$(products)" "$PRODUCTS"
	assert_equal "$(pd_ -c 'SELECT id FROM sbtest.sbtest_x')" 100000161
	jq -e -s '.[-1].skipped == 4' "$OUT/apply" >/dev/null
	offsets "kafka:$GROUP" | jq -e '.["srv.inventory.products/0"] == 15 and .["dms.sbtest/0"] == 0' >/dev/null
}

@test "Kafka SIGKILL mid-stream and restart: nothing lost, nothing applied twice" {
	logged_table
	kafka_lines 1 6000 >"$OUT/msgs"
	split -l 500 -d "$OUT/msgs" "$OUT/chunk."
	# over 6 s: the consumer (3 s to join the group, then faster than the
	# producer) is killed while the producer is still writing
	(for f in "$OUT"/chunk.*; do produce k_kill "$f"; sleep 0.5; done) 3>&- &
	PIDS+=($!)
	producer=$!
	kafka_bg c1 --topic k_kill --batch-rows 50 --batch-ms 20
	dbm_wait_until 30 count_ge t 1000
	kill -KILL "$c1_pid"
	wait "$c1_pid" || true
	killed_at=$(pd_ -c "SELECT count(*) FROM t")
	echo "killed after $killed_at rows" >&2
	((killed_at < 6000))
	kafka_bg c2 --topic k_kill --batch-rows 50 --batch-ms 20
	wait "$producer"
	dbm_wait_until 40 count_is t 6000
	kill -TERM "$c2_pid"
	wait "$c2_pid"
	exactly_once 6000
	assert_equal "$(offsets "kafka:$GROUP" | jq '[.[]] | add + length')" 6000
}

@test "Kafka: two processes in one group (default options) share the partitions" {
	logged_table
	kafka_lines 1 4000 >"$OUT/msgs"
	split -l 400 -d "$OUT/msgs" "$OUT/chunk."
	# produced over some seconds, so both are in the group before the end
	(for f in "$OUT"/chunk.*; do produce k_pair "$f"; sleep 0.4; done) 3>&- &
	PIDS+=($!)
	kafka_bg c1 --topic k_pair
	kafka_bg c2 --topic k_pair
	dbm_wait_until 40 count_is t 4000
	kill -TERM "$c1_pid" "$c2_pid" || true
	rc1=0 rc2=0
	wait "$c1_pid" || rc1=$?
	wait "$c2_pid" || rc2=$?
	cat "$OUT"/c?.err >&2
	assert_equal "$rc1 $rc2" "0 0"
	exactly_once 4000
	# each took a share
	jq -e -s '.[-1].applied > 0' "$OUT/c1.out" >/dev/null
	jq -e -s '.[-1].applied > 0' "$OUT/c2.out" >/dev/null
	assert_equal "$(offsets "kafka:$GROUP" | jq -c 'keys')" '["k_pair/0","k_pair/1","k_pair/2","k_pair/3"]'
}

@test "Kafka: a forced rebalance under load (a second consumer joins, then leaves) loses nothing and applies nothing twice" {
	logged_table
	kafka_lines 1 8000 >"$OUT/msgs"
	split -l 400 -d "$OUT/msgs" "$OUT/chunk."
	(for f in "$OUT"/chunk.*; do produce k_reb "$f"; sleep 0.5; done) 3>&- &
	PIDS+=($!)
	producer=$!
	# distinct origins: see the test above for the default
	kafka_bg c1 --topic k_reb --batch-rows 50 --batch-ms 20 --origin dbm_reb_a
	dbm_wait_until 30 count_ge t 1000
	kafka_bg c2 --topic k_reb --batch-rows 50 --batch-ms 20 --origin dbm_reb_b --progress-interval 0.5
	dbm_wait_until 30 c2_applied
	dbm_wait_until 30 count_ge t 4000
	kill -TERM "$c2_pid"
	wait "$c2_pid"
	wait "$producer"
	dbm_wait_until 40 count_is t 8000
	kill -TERM "$c1_pid"
	wait "$c1_pid"
	cat "$OUT"/c?.out "$OUT"/c?.err >&2
	exactly_once 8000
	jq -e -s '.[-1] | .reason == "signal" and .applied > 0' "$OUT/c2.out" >/dev/null
	assert_equal "$(offsets "kafka:$GROUP" | jq '[.[]] | add + length')" 8000
}

@test "Kafka: an assignment seeks to the offsets stored in the target, not to Kafka's committed ones" {
	logged_table
	kafka_lines 1 400 >"$OUT/msgs"
	produce k_seek "$OUT/msgs"
	apply --kafka "$BROKERS" --topic k_seek --group "$GROUP" "${KX[@]}" --stop-at-lsn FFFF/0
	applied_ok
	exactly_once 400
	before=$(offsets "kafka:$GROUP")
	# the target restored to an older state: partition 0 back to offset 9
	pd_ -c "TRUNCATE log" -c "UPDATE dbm.apply_position SET offsets = jsonb_set(offsets, '{k_seek/0}', '9')"
	apply --kafka "$BROKERS" --topic k_seek --group "$GROUP" "${KX[@]}" --stop-at-lsn FFFF/0
	applied_ok
	n0=$(jq '.["k_seek/0"] - 9' <<<"$before")
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT id) FROM log")" "$n0|$n0"
	assert_equal "$(offsets "kafka:$GROUP")" "$before"
}

@test "Kafka: a malformed message or an unknown table exits 2 naming topic/partition@offset, nothing of its batch committed" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{ kafka_lines 1 2; printf '3\001{"before":null,\n'; kafka_lines 4 4; } >"$OUT/msgs"
	produce k_bad "$OUT/msgs"
	apply --kafka "$BROKERS" --topic k_bad --group "$GROUP" "${KX[@]}" --batch-ms 60000 --stop-at-lsn FFFF/0
	failed_at "k_bad/0@2: malformed JSON"
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
	assert_equal "$(offsets "kafka:$GROUP")" ""

	{ kafka_lines 1 1; printf '2\001%s\n' "$(dbz c null '{"id":2,"v":"x"}' nope)"; } >"$OUT/msgs2"
	produce k_badtab "$OUT/msgs2"
	apply --kafka "$BROKERS" --topic k_badtab --group "$GROUP-2" "${KX[@]}" --batch-ms 60000 --stop-at-lsn FFFF/0
	failed_at "k_badtab/0@1: table \"public\".\"nope\" is missing on the target"
	assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
}

# ------------------------------------------------ barriers (logical messages)

# dbz_msg PREFIX CONTENT [LSN]: a Debezium op m event (schema-less), the
# content as the connector sends it (bytes: base64, or hex in hex mode).
dbz_msg()
{
	jq -cn --arg p "$1" --arg c "$2" --argjson lsn "${3:-3000}" \
		'{op: "m", ts_ms: 1, source: {version: "2.7.4.Final", connector: "postgresql",
		  name: "srv", ts_ms: 1, snapshot: "false", db: "src", schema: "", table: "",
		  txId: 900, lsn: $lsn, xmin: null}, message: {prefix: $p, content: $c}}'
}

# b64 TEXT / hex TEXT: TEXT as bytes the connector's way.
b64() { printf '%s' "$1" | base64 -w0; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

@test "a dbm barrier arriving as a Debezium op m is a row of dbm.barrier, committed with the changes before it; a replay adds nothing, other prefixes are ignored" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{
		dbz c null '{"id":1,"v":"a"}' t 801
		dbz c null '{"id":2,"v":"b"}' t 801
		dbz_msg app "$(b64 'not a barrier')"
		dbz_msg dbm "$(b64 '{"barrier": 1718000000001, "kind": "freeze"}')"
		# binary.handling.mode=hex
		dbz_msg dbm "$(hex '{"barrier": 1718000000002, "kind": "rollback"}')"
		# replayed: the row is there already
		dbz_msg dbm "$(b64 '{"barrier": 1718000000001, "kind": "freeze"}')"
		# with schemas (JsonConverter writes bytes in base64)
		jq -cn --arg c "$(b64 '{"barrier":1718000000003,"kind":"freeze"}')" \
			'{schema: {type: "struct", fields: [{type: "string", optional: false, field: "op"},
			  {type: "struct", optional: true, field: "message", fields: [
			   {type: "string", optional: false, field: "prefix"},
			   {type: "bytes", optional: true, field: "content"}]}], optional: false,
			  name: "io.debezium.connector.postgresql.MessageValue"},
			  payload: {op: "m", ts_ms: 1, source: {schema: "", table: "", lsn: 3100},
			   message: {prefix: "dbm", content: $c}}}'
		dbz c null '{"id":3,"v":"c"}' t 802
	} >"$OUT/bar.jsonl"
	apply "$OUT/bar.jsonl"
	applied_ok
	jq -e -s '.[-1] | .applied == 3 and .skipped == 0 and .transactions == 1' "$OUT/apply" >/dev/null
	assert_equal "$(pd_ -c "SELECT id, kind FROM dbm.barrier ORDER BY id")" "1718000000001|freeze
1718000000002|rollback
1718000000003|freeze"
	# one target transaction: the barrier is never visible without the
	# rows before it
	assert_equal "$(pd_ -c "SELECT count(DISTINCT x) FROM (SELECT xmin::text AS x FROM t
		UNION ALL SELECT xmin::text FROM dbm.barrier) s")" 1
	assert_equal "$(pd_ -c "SELECT string_agg(id || v, ' ' ORDER BY id) FROM t")" "1a 2b 3c"
	# the whole file again (another stream): nothing changes
	apply --stream again "$OUT/bar.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT count(*) FROM dbm.barrier")" 3
}

@test "--print turns a Debezium op m into a message line with its content as text, and applying that line writes the barrier" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	{
		dbz c null '{"id":1,"v":"a"}' t 801
		dbz_msg dbm "$(b64 '{"barrier": 42, "kind": "freeze"}')"
		dbz_msg app "$(b64 'hello')"
	} >"$OUT/m.jsonl"
	run --separate-stderr dbm-cdc-apply --print "$OUT/m.jsonl"
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/printed.jsonl"
	assert_equal "$(jq -c 'select(.type == "message")' "$OUT/printed.jsonl")" \
		'{"type":"message","prefix":"dbm","content":"{\"barrier\": 42, \"kind\": \"freeze\"}"}
{"type":"message","prefix":"app","content":"hello"}'
	# round trip: the printed lines applied as they are
	apply "$OUT/printed.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT id, kind FROM dbm.barrier")" "42|freeze"
	assert_equal "$(pd_ -c "SELECT id, v FROM t")" "1|a"
	# and a message line as the slot path prints it
	echo '{"type":"message","lsn":"0/553C830","prefix":"dbm","transactional":true,"content":"{\"barrier\":43,\"kind\":\"rollback\"}"}' >"$OUT/slot.jsonl"
	apply "$OUT/slot.jsonl"
	applied_ok
	assert_equal "$(pd_ -c "SELECT string_agg(id || kind, ' ' ORDER BY id) FROM dbm.barrier")" "42freeze 43rollback"
}

@test "a malformed dbm barrier message exits 2 naming FILE:LINE, nothing of its batch committed, with --print too" {
	pd_ -c "CREATE TABLE t (id int PRIMARY KEY, v text)"
	local content line=0
	for content in "$(b64 'hello')" "$(b64 '{"barrier": "1", "kind": "freeze"}')" \
		"$(b64 '{"barrier": 0, "kind": "freeze"}')" "$(b64 '{"barrier": 5}')" \
		"$(b64 '{"barrier": 5, "kind": ""}')" '%%%' ''; do
		line=$((line + 1))
		{ dbz c null '{"id":1,"v":"a"}' t 801; dbz_msg dbm "$content"; } >"$OUT/bad$line.jsonl"
		apply "$OUT/bad$line.jsonl"
		failed_at "bad$line.jsonl:2: malformed barrier message (prefix \"dbm\"): expected content {\"barrier\": ID, \"kind\": KIND}"
		assert_equal "$(pd_ -c "SELECT count(*) FROM t")" 0
		run --separate-stderr dbm-cdc-apply --print "$OUT/bad$line.jsonl"
		failed_at "bad$line.jsonl:2: malformed barrier message"
	done
	# a dbm message line too
	echo '{"type":"message","prefix":"dbm","content":"{\"kind\":\"freeze\"}"}' >"$OUT/badline.jsonl"
	apply "$OUT/badline.jsonl"
	failed_at "badline.jsonl:1: malformed barrier message"
	assert_equal "$(pd_ -c "SELECT count(*) FROM dbm.barrier")" 0
}

@test "Kafka: a barrier read ahead of rows written before it to another topic waits for them: no row is committed after it" {
	logged_table
	# the barrier first in its own topic, then the rows: both are in
	# Kafka before the consumer starts, and small fetches let the barrier
	# be read long before the last rows
	dbz_msg dbm "$(b64 '{"barrier": 7, "kind": "freeze"}')" | sed 's/^/1\x01/' >"$OUT/bar"
	produce k_bar_msg "$OUT/bar"
	kafka_lines 1 2000 >"$OUT/msgs"
	produce k_bar_rows "$OUT/msgs"
	apply --kafka "$BROKERS" --topic k_bar_msg --topic k_bar_rows --group "$GROUP" "${KX[@]}" \
		-X max.partition.fetch.bytes=4096 --batch-rows 50 \
		--stop-at-lsn FFFF/0
	applied_ok
	exactly_once 2000
	(($(jq -s '.[-1].transactions' "$OUT/apply") > 10))
	assert_equal "$(pd_ -c "SELECT id, kind FROM dbm.barrier")" "7|freeze"
	# the barrier committed with the last rows, none after it
	assert_equal "$(pd_ -c "SELECT count(*) FROM t WHERE xmin::text::bigint >
		(SELECT xmin::text::bigint FROM dbm.barrier)")" 0
	# the mock made the topics with 4 partitions
	assert_equal "$(offsets "kafka:$GROUP" | jq -c 'to_entries | group_by(.key | split("/")[0])
		| map({(.[0].key | split("/")[0]): (map(.value + 1) | add)}) | add')" '{"k_bar_msg":1,"k_bar_rows":2000}'
}
