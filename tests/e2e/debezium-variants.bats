#!/usr/bin/env bats
# End to end, the way a migration runs it with Debezium: dbm-snapshot makes
# the pgoutput slot and copies every table in its exported snapshot, then
# Debezium's PostgreSQL connector (snapshot.mode no_data) streams from that
# very slot -> a real Kafka broker -> dbm-cdc-apply --kafka -> the target.
# No gap and no overlap between copy and stream, whatever the converter
# settings: the target must equal the source (dbm-diff exits 0 and a
# plain-SQL checksum of every table agrees).  Then Kafka Connect restarted
# and the consumer SIGKILLed mid-stream, and a cutover whose barrier
# travels through Debezium as a logical message (op m).
#
# One broker and one Connect worker for the file (setup_file), as in
# debezium-kafka.bats.  Each test has its own source and target database
# vN, a publication, slot, connector and topic prefix fN, and a table
# e2e_marker that e2e_sync updates to know that Kafka has everything.

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/kafka-e2e
load ../helpers/pgbouncer

# short sessions: a consumer killed by a test leaves the group quickly;
# topics made after the start are found within a second
KX=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500 -X topic.metadata.refresh.interval.ms=1000)

setup_file()
{
	local t=$EPOCHREALTIME
	# without Java (or Maven and no cached jars) every test says why it
	# is skipped, and nothing starts
	E2E_SKIP=$(e2e_skip_reason)
	export E2E_SKIP
	[[ -z "$E2E_SKIP" ]] || return 0
	dbm_start_clusters
	e2e_note "PostgreSQL clusters started in $(e2e_since "$t") s"
	e2e_start
}

teardown_file()
{
	e2e_stop
	dbm_stop_clusters
}

setup()
{
	[[ -z "$E2E_SKIP" ]] || skip "$E2E_SKIP"
	T0=$EPOCHREALTIME
	VARIANT_APPLY=()
	NAME="f$BATS_TEST_NUMBER"
	DB="v$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=$(e2e_db "$SRC" "$DB")
	D=$(e2e_db "$DST" "$DB")
	OUT=$BATS_TEST_TMPDIR
	PIDS=()
	unset DBM_SOURCE DBM_TARGET
	# where Connect is now (a test before may have restarted it)
	CONNECT=$(cat "$E2E_DIR/connect.url")
	ps_ -c "CREATE TABLE e2e_marker (id int PRIMARY KEY, n bigint NOT NULL)" \
		-c "INSERT INTO e2e_marker VALUES (1, 0)"
}

teardown()
{
	[[ -z "$E2E_SKIP" ]] || return 0
	local p
	for p in "${PIDS[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	dbm_stop_pgbouncer
	e2e_drop_connector "$NAME" "$S"
	# the reverse slot of a cutover
	psql "$D" -XAtq -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE database = '$DB' AND NOT active" >/dev/null 2>&1 || true
	e2e_note "test $BATS_TEST_NUMBER took $(e2e_since "$T0") s"
}

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# apply_idle [OPTION]...: dbm-cdc-apply of this test's table topics into
# its target database until 3 s pass without anything to apply; stdout in
# $output and $OUT/apply.out; exit 0, nothing on stderr, a stopped line
# with reason idle last.
apply_idle()
{
	run --separate-stderr timeout 180 dbm-cdc-apply --target "$D" --kafka "$BROKERS" \
		--topic-regex "$NAME\\.public\\..*" --group "$NAME" "${KX[@]}" --until-idle 3 "$@"
	printf '%s\n' "$output" >"$OUT/apply.out"
	if [[ $status -ne 0 || -n "$stderr" ]]; then
		echo "dbm-cdc-apply exit $status: $stderr" >&2
		return 1
	fi
	jq -e -s '.[-1] | .type == "stopped" and .reason == "idle"' "$OUT/apply.out" >/dev/null
}

# stopped FIELD: that field of the last stopped line.
stopped() { jq -s ".[-1].$1" "$OUT/apply.out"; }

# apply_bg NAME REGEX [OPTION]...: dbm-cdc-apply of the topics matching
# REGEX in the background (no bound); its pid in $NAME_pid.
apply_bg()
{
	local name=$1 regex=$2
	shift 2
	dbm-cdc-apply --target "$D" --kafka "$BROKERS" --topic-regex "$regex" \
		--group "$NAME" "${KX[@]}" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	PIDS+=($!)
	eval "${name}_pid=$!"
}

# equal_everywhere: the target equals the source, for dbm-diff and for
# plain SQL checksums, and the stored position is the last message of
# every partition of the table topics.
equal_everywhere()
{
	local ntables t
	ntables=$(ps_ -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	if [[ $status -ne 0 ]]; then
		echo "dbm-diff exit $status: $output $stderr" >&2
		# the rows that differ (< source, > target)
		for t in $(jq -r 'select(.type == "table" and .status != "equal") | .table' <<<"$output"); do
			diff <(ps_ -c "SELECT t::text FROM $t t ORDER BY 1") \
				<(pd_ -c "SELECT t::text FROM $t t ORDER BY 1") | head -n 20 >&2
		done
		return 1
	fi
	assert_equal "$(jq -c -s '.[-1] | [.type, .tables, .equal, .different, .rows_missing,
		.rows_extra, .rows_changed]' <<<"$output")" "[\"summary\",$ntables,$ntables,0,0,0,0]"
	e2e_checksums "$S" >"$OUT/src.sums"
	e2e_checksums "$D" >"$OUT/dst.sums"
	assert_equal "$(wc -l <"$OUT/src.sums")" "$ntables"
	diff "$OUT/src.sums" "$OUT/dst.sums" >&2
	assert_equal "$(pd_ -c "SELECT offsets FROM dbm.apply_position WHERE stream = 'kafka:$NAME'" |
		jq -S -c 'with_entries(select(.key | startswith($p))) ' --arg p "$NAME.public.")" \
		"$(e2e_topic_ends "$NAME.public" | jq -S -c .)"
}

# pgbench_txns FILE: the transactions pgbench reports in its output FILE.
pgbench_txns() { sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1"; }

# copied TABLE: the rows dbm-snapshot copied of public.TABLE.
copied() { jq -s --arg t "public.$1" '[.[] | select(.type == "copied" and .table == $t) | .rows] | add' "$OUT/snapshot.jsonl"; }

ITEMS_SQL=$(e2e_items_sql "(3)")

# Streamed changes of every kind of column.
ITEMS_CHANGES=$(cat <<'SQL'
UPDATE items SET price = price + 0.01, tags = tags || 'u'::text,
	attrs = attrs || '{"u": true}', created = created + interval '1.5 sec',
	raw = raw || '\x01'::bytea, nums = nums || 7, iv = iv + interval '1 sec',
	local_ts = local_ts + interval '0.001 sec', tod = tod + interval '0.001 sec'
	WHERE id % 3 = 0;
UPDATE items SET name = NULL, ref = NULL, m = NULL, ratio = NULL WHERE id % 10 = 1;
UPDATE items SET big = -big, ratio = -ratio, d = -d WHERE id IN (1, 3);
DELETE FROM items WHERE id % 7 = 0;
SQL
)

# variant [KEY=VALUE]...: the whole path with these connector settings.
# Before the copy: the type matrix and pgbench's tables on the source, and
# PREP_SQL when set; the publication FOR ALL TABLES.  pgbench -c 2 writes
# from before the slot is made until after the connector streams; the
# matrix is changed while it runs.  At the end every table is equal and
# pgbench_history (no key: inserts only) holds every transaction exactly
# once, part copied, part streamed.
variant()
{
	local t txns hist
	ps_ -c "$ITEMS_SQL" -c "$(items_rows 10 209)"
	pgbench -i -q -s 1 "$S" >"$OUT/pgbench-init.out" 2>&1
	[[ -z "${PREP_SQL:-}" ]] || ps_ -c "$PREP_SQL"
	ps_ -c "CREATE PUBLICATION $NAME FOR ALL TABLES"

	pgbench -n -c 2 -T 10 "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	local pgbench_pid=$!
	PIDS+=($pgbench_pid)
	dbm_wait_until 30 bash -c "(( \$(psql '$S' -XAtq -c 'SELECT count(*) FROM pgbench_history') > 0 ))"
	t=$EPOCHREALTIME
	e2e_copy "$S" "$D" "$NAME" "$OUT"
	jq -e -s --arg n "$NAME" '(.[0] | .type == "snapshot" and .slot == $n and .publication == $n)
		and (.[-1] | .type == "done" and .tables == 6 and .skipped == 0)' "$OUT/snapshot.jsonl" >/dev/null
	assert_equal "$(ps_ -c "SELECT plugin FROM pg_replication_slots WHERE slot_name = '$NAME'")" pgoutput
	e2e_note "dbm-snapshot copied $(jq -s '.[-1].rows' "$OUT/snapshot.jsonl") rows, pre- and post-data included in $(e2e_since "$t") s"
	t=$EPOCHREALTIME
	e2e_stream_connector "$NAME" "$S" "$@"
	e2e_note "connector streaming from the copy's slot after $(e2e_since "$t") s"

	ps_ -c "$(items_rows 300 349)"
	ps_ -c "$ITEMS_CHANGES"
	wait "$pgbench_pid"
	txns=$(pgbench_txns "$OUT/pgbench.out")
	((txns > 0))
	e2e_sync "$S" "$NAME"
	# pgbench wrote on both sides of the slot's start
	hist=$(copied pgbench_history)
	e2e_note "$txns pgbench transactions, $hist of them in the copy"
	((hist > 0 && hist < txns))
	# nothing of the copy came through Kafka: no snapshot reads
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.public.items" -e -q | grep -c '"op":"r"')" 0

	t=$EPOCHREALTIME
	apply_idle "${VARIANT_APPLY[@]}"
	e2e_note "dbm-cdc-apply: $(stopped applied) events applied in $(e2e_since "$t") s (3 s idle included)"
	assert_equal "$(stopped missed)" 0
	assert_equal "$(($(stopped applied) + $(stopped skipped)))" "$(e2e_messages "$NAME.public")"
	equal_everywhere
	# every pgbench transaction exactly once: copied or streamed
	assert_equal "$(pd_ -c "SELECT count(*) FROM pgbench_history")" "$txns"
	assert_equal "$(pd_ -c "SELECT count(*) FROM items")" 218

	# a second run finds nothing to do
	apply_idle "${VARIANT_APPLY[@]}"
	assert_equal "$(stopped applied)" 0
	equal_everywhere
}

# target_above N CONSUMER: wait until the target's counter is above N;
# on failure show what the background CONSUMER said.
target_above()
{
	_above() { (($(pd_ -c "SELECT n FROM counter") > $1)); }
	dbm_wait_until 60 _above "$1" && return 0
	tail -n 5 "$OUT/$2.out" "$OUT/$2.err" >&2
	return 1
}

# first_event TOPIC: the first message of TOPIC (its value).
first_event() { kcat -b "$BROKERS" -C -t "$1" -c 1 -e -q; }

@test "dbm-snapshot copies, Debezium streams from its slot (no_data), JsonConverter with schemas: pgbench and the type matrix arrive, the target equals the source" {
	variant
	# with schemas: numeric(12,2) as Decimal bytes, timestamp(3) as Timestamp
	first_event "$NAME.public.items" | jq -e '
		(.schema.fields[] | select(.field == "after") | .fields | map({(.field): .name}) | add) as $n
		| $n.price == "org.apache.kafka.connect.data.Decimal"
		and $n.local_ts == "io.debezium.time.Timestamp" and (.payload.after.price | type == "string")' >/dev/null
}

@test "the same with schemas.enable=false for keys and values: the target's column types decide" {
	# the connector's decimal.handling.mode (precise, its default)
	VARIANT_APPLY=(--decimal-mode precise)
	variant key.converter=org.apache.kafka.connect.json.JsonConverter \
		value.converter=org.apache.kafka.connect.json.JsonConverter \
		key.converter.schemas.enable=false value.converter.schemas.enable=false \
		key.converter.replace.null.with.default=false value.converter.replace.null.with.default=false
	# no schema in keys or values
	first_event "$NAME.public.items" | jq -e 'has("schema") | not' >/dev/null
	kcat -b "$BROKERS" -C -t "$NAME.public.items" -c 1 -e -q -f '%k\n' | jq -e '. == {"id": 300}' >/dev/null
}

@test "the same with decimal.handling.mode=string and time.precision.mode=connect" {
	# Connect's time types keep milliseconds: pgbench_history.mtime too
	PREP_SQL="ALTER TABLE pgbench_history ALTER mtime TYPE timestamp(3)"
	variant decimal.handling.mode=string time.precision.mode=connect
	first_event "$NAME.public.items" | jq -e '
		(.schema.fields[] | select(.field == "after") | .fields | map({(.field): .name}) | add) as $n
		| $n.local_ts == "org.apache.kafka.connect.data.Timestamp"
		and $n.tod == "org.apache.kafka.connect.data.Time" and $n.day == "org.apache.kafka.connect.data.Date"
		and $n.price == null and .payload.after.price == "3702.00"' >/dev/null
}

@test "Kafka Connect restarted and dbm-cdc-apply SIGKILLed while the source is written: every transaction once, in a counter and a keyless ledger" {
	ps_ <<-'SQL'
		CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
		INSERT INTO counter VALUES (1, 0);
		CREATE TABLE ledger (id bigserial PRIMARY KEY, client int NOT NULL, n bigint NOT NULL,
			amount numeric(12,2), at timestamptz NOT NULL DEFAULT now());
		-- no key, inserts only: a message applied or sent twice would be a second row
		CREATE TABLE hist (client int, n bigint, at timestamptz);
	SQL
	cat >"$OUT/txn.sql" <<-'SQL'
		BEGIN;
		UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n \gset
		INSERT INTO ledger (client, n, amount) VALUES (:client_id, :n, random() * 100);
		INSERT INTO hist VALUES (:client_id, :n, now());
		END;
	SQL
	ps_ -c "CREATE PUBLICATION $NAME FOR ALL TABLES"
	# the source is written from before the copy to after both restarts
	pgbench -n -c 2 -R 40 -T 40 -f "$OUT/txn.sql" "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	local pgbench_pid=$! at_stop n src txns
	PIDS+=($pgbench_pid)
	dbm_wait_until 30 bash -c "(( \$(psql '$S' -XAtq -c 'SELECT n FROM counter') > 20 ))"
	e2e_copy "$S" "$D" "$NAME" "$OUT"
	e2e_stream_connector "$NAME" "$S"
	e2e_sync "$S" "$NAME"
	apply_bg a "$NAME\\.public\\..*" --batch-rows 20
	target_above "$(ps_ -c 'SELECT n FROM counter')" a

	# Connect stops (its offsets committed) and comes back on the same
	# offsets file; the connector is registered again and resumes from
	# the slot where it left off
	local t=$EPOCHREALTIME
	e2e_restart_connect
	at_stop=$(ps_ -c "SELECT n FROM counter")
	e2e_stream_connector "$NAME" "$S"
	e2e_note "Connect restarted in $(e2e_since "$t") s, the source at $at_stop"
	target_above "$at_stop" a

	# the consumer dies mid-stream and starts again
	src=$(ps_ -c "SELECT n FROM counter")
	kill -KILL "$a_pid"
	wait "$a_pid" || true
	n=$(pd_ -c "SELECT n FROM counter")
	e2e_note "consumer killed: target at $n, source at $src"
	((n > at_stop))
	apply_bg b "$NAME\\.public\\..*" --batch-rows 20
	wait "$pgbench_pid"
	txns=$(pgbench_txns "$OUT/pgbench.out")
	assert_equal "$(ps_ -c "SELECT n FROM counter")" "$txns"
	((txns > src))
	e2e_sync "$S" "$NAME"
	kill -TERM "$b_pid"
	wait "$b_pid"
	jq -e -s '.[-1] | .type == "stopped" and .reason == "signal"' "$OUT/b.out" >/dev/null

	apply_idle
	assert_equal "$(stopped missed)" 0
	# exactly once: every transaction once, in every table
	assert_equal "$(pd_ -c "SELECT n FROM counter")" "$txns"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM ledger")" \
		"$txns|$txns|1|$txns"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM hist")" \
		"$txns|$txns|1|$txns"
	# and Kafka holds each change of hist once: Connect's restart sent
	# nothing twice
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.public.hist" -e -q | grep -c '"op":"c"')" \
		"$((txns - $(copied hist)))"
	equal_everywhere
}

@test "cutover through Debezium: the freeze's barrier arrives as op m, dbm-switch waits for it; equal, no client fails, pgbouncer routes to the target" {
	ps_ <<-'SQL'
		CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
		CREATE TABLE orders (id serial PRIMARY KEY, account_id int NOT NULL, port int NOT NULL);
		CREATE SEQUENCE ticket_no START 1000;
		CREATE TABLE tickets (no bigint PRIMARY KEY DEFAULT nextval('ticket_no'), what text);
		INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;
		INSERT INTO orders (account_id, port)
			SELECT 1 + g % 100, inet_server_port() FROM generate_series(1, 500) g;
	SQL
	cat >"$OUT/bench.sql" <<-'SQL'
		\set a random(1, 100)
		BEGIN;
		INSERT INTO orders (account_id, port) VALUES (:a, inet_server_port());
		UPDATE accounts SET balance = balance + 1 WHERE id = :a;
		INSERT INTO tickets (what) VALUES ('pgbench ' || inet_server_port());
		END;
	SQL
	# the tables, not dbm.barrier (which dbm-freeze makes on the source
	# later): the barrier can only arrive as the logical message
	ps_ -c "CREATE PUBLICATION $NAME FOR TABLE accounts, orders, tickets, e2e_marker"
	e2e_copy "$S" "$D" "$NAME" "$OUT"
	e2e_stream_connector "$NAME" "$S"
	dbm_start_pgbouncer "$DB" "$S"
	local src_port dst_port
	src_port=$(e2e_port "$S")
	dst_port=$(e2e_port "$D")

	# clients through pgbouncer; a message of another prefix first (which
	# makes the connector's message topic)
	pgbench -n -c 4 -R 100 -t 500 -f "$OUT/bench.sql" "$PGB" >"$OUT/pgbench.out" 2>&1 3>&- &
	local bench_pid=$!
	PIDS+=($bench_pid)
	ps_ -c "SELECT pg_logical_emit_message(true, 'app', 'hello')" >/dev/null
	e2e_sync "$S" "$NAME"
	# (a long session: it is stopped for a while below)
	apply_bg fwd "$NAME\\.(public\\..*|message)" -X session.timeout.ms=60000 --batch-rows 20
	dbm_wait_until 60 bash -c "(( \$(psql '$D' -XAtq -c 'SELECT count(*) FROM orders') > 600 ))"
	# the consumer falls behind: at the freeze, Kafka holds thousands of
	# changes it has not read, ahead of the barrier but in other topics;
	# it reads the barrier's topic early on, and the barrier must wait
	# for them (applied at once, it would let the switch go with them
	# still unapplied).  The connector has caught up before the freeze, so
	# they are all in Kafka before the barrier (see docs/formats.md,
	# Barriers)
	kill -STOP "$fwd_pid"
	local behind
	behind=$(ps_ -c "SELECT count(*) FROM orders")
	ps_ -c "INSERT INTO tickets (what) SELECT 'bulk ' || g FROM generate_series(1, 10000) g"
	dbm_wait_until 60 bash -c "(( \$(psql '$S' -XAtq -c 'SELECT count(*) FROM orders') > $behind + 100 ))"
	e2e_sync "$S" "$NAME"

	run --separate-stderr dbm-freeze --source "$S" --pgbouncer "$PGB_ADMIN" --database "$DB"
	assert_success
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	jq -e '.type == "frozen" and .method == "pgbouncer"' "$OUT/frozen.jsonl" >/dev/null
	# the clients wait in pgbouncer; stopped, they take no new write on
	# the target before the comparison below
	kill -STOP "$bench_pid"
	kill -CONT "$fwd_pid"
	local t=$EPOCHREALTIME
	run --separate-stderr dbm-switch --source "$S" --target "$D" --pgbouncer "$PGB_ADMIN" \
		--pgbouncer-ini "$PGB_INI" --database "$DB" --freeze "$OUT/frozen.jsonl" --timeout 120 \
		--reverse-slot "r$BATS_TEST_NUMBER" --reverse-publication "r$BATS_TEST_NUMBER"
	if [[ $status -ne 0 ]]; then
		echo "dbm-switch exit $status: $stderr" >&2
		cat "$OUT/fwd.err" >&2
		return 1
	fi
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/switched.jsonl"
	e2e_note "switched $(e2e_since "$t") s after the freeze"
	jq -e --slurpfile f "$OUT/frozen.jsonl" '.type == "switched" and .applied_by == "barrier"
		and .freeze_lsn == $f[0].lsn and .router == "pgbouncer" and .sequences == 2' \
		"$OUT/switched.jsonl" >/dev/null
	# the barrier came as op m with prefix dbm, and as nothing else
	local id
	id=$(jq '.barrier' "$OUT/frozen.jsonl")
	assert_equal "$(pd_ -c "SELECT id, kind FROM dbm.barrier")" "$id|freeze"
	# committed with the last changes before it, none after it (the
	# consumer's transactions commit one after the other)
	assert_equal "$(pd_ -c "SELECT count(*) FROM (SELECT xmin FROM orders UNION ALL
		SELECT xmin FROM accounts UNION ALL SELECT xmin FROM tickets) t
		WHERE xmin::text::bigint > (SELECT xmin::text::bigint FROM dbm.barrier)")" 0
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.message" -e -q | jq -c '.payload |
		[.op, .message.prefix, (.message.content | @base64d)]')" \
		"[\"m\",\"app\",\"hello\"]
[\"m\",\"dbm\",\"{\\\"barrier\\\" : $id, \\\"kind\\\" : \\\"freeze\\\"}\"]"
	run -0 kcat -b "$BROKERS" -L -J
	assert_equal "$(jq '[.topics[].topic | select(startswith("'"$NAME"'.dbm"))] | length' <<<"$output")" 0

	# everything committed on the source is on the target
	equal_everywhere
	routes_to_port() { [[ "$(psql "$PGB" -XAtq -c 'SELECT inet_server_port()')" == "$1" ]]; }
	routes_to_port "$dst_port"

	# the clients go on against the target, none failed
	kill -CONT "$bench_pid"
	wait "$bench_pid"
	run cat "$OUT/pgbench.out"
	assert_output --partial 'number of failed transactions: 0 (0.000%)'
	refute_output --partial 'error'
	(($(pd_ -c "SELECT count(*) FROM orders WHERE port = $dst_port") > 0))
	assert_equal "$(ps_ -c "SELECT count(*) FROM orders WHERE port = $dst_port")" 0
	(($(pd_ -c "SELECT count(*) FROM orders WHERE port = $src_port") > 500))
	kill -TERM "$fwd_pid"
	wait "$fwd_pid"
	assert_equal "$(cat "$OUT/fwd.err")" ""
}
