#!/usr/bin/env bats
# End to end: PostgreSQL 15 -> Debezium's PostgreSQL connector (Kafka
# Connect standalone, pgoutput) -> a real Kafka broker (KRaft) ->
# dbm-cdc-apply --kafka -> PostgreSQL 15, and the target must equal the
# source: dbm-diff exits 0 and a plain-SQL checksum of every table agrees.
#
# Real everything: the jars come from Maven Central (scripts/e2e-kafka.sh
# fetch, cached under ${DBM_E2E_CACHE:-~/.cache/dbm-e2e}); Java 17 and Maven
# come from scripts/setup.sh --e2e.  make test-e2e runs this file.
#
# One broker and one Connect worker for the file (setup_file).  Each test
# has its own source database tN, with a connector eN (topic prefix, slot
# and publication eN), and its own target database tN made from the
# source's pg_dump --schema-only; every source database has a table
# e2e_marker, which e2e_sync updates to know that Kafka has everything.

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/kafka-e2e

# short sessions: a consumer killed by a test leaves the group quickly
KX=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

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
	NAME="e$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE t$BATS_TEST_NUMBER"
	psql_dst -c "CREATE DATABASE t$BATS_TEST_NUMBER"
	S=$(e2e_db "$SRC" "t$BATS_TEST_NUMBER")
	D=$(e2e_db "$DST" "t$BATS_TEST_NUMBER")
	OUT=$BATS_TEST_TMPDIR
	PIDS=()
	ps_ -c "CREATE TABLE e2e_marker (id int PRIMARY KEY, n bigint NOT NULL)" \
		-c "INSERT INTO e2e_marker VALUES (1, 0)"
}

teardown()
{
	local p
	[[ -z "$E2E_SKIP" ]] || return 0
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	e2e_drop_connector "$NAME" "$S"
	e2e_note "test $BATS_TEST_NUMBER took $(e2e_since "$T0") s"
}

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# apply_idle [OPTION]...: dbm-cdc-apply of this test's topics into its
# target database until 3 s pass without anything to apply; stdout in
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

# apply_bg NAME [OPTION]...: dbm-cdc-apply in the background (no
# --until-idle); its pid in $NAME_pid.
apply_bg()
{
	local name=$1
	shift
	dbm-cdc-apply --target "$D" --kafka "$BROKERS" --topic-regex "$NAME\\.public\\..*" \
		--group "$NAME" "${KX[@]}" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	PIDS+=($!)
	eval "${name}_pid=$!"
}

# equal_everywhere: everything the topics hold was applied, and the target
# equals the source — for dbm-diff and for plain SQL checksums — and the
# stored position is the last message of every partition.
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
		jq -S -c .)" "$(e2e_topic_ends "$NAME" | jq -S -c .)"
}

# counter_above N: the target's counter is above N.
counter_above() { (($(pd_ -c "SELECT n FROM counter") > $1)); }

ITEMS_SQL=$(e2e_items_sql)

# doc_body N: 100 kB of hex, stored out of line (STORAGE EXTERNAL)
doc_body() { echo "(SELECT string_agg(md5($1 || ':' || i), '') FROM generate_series(1, 3200) i)"; }

@test "snapshot, then inserts, updates, deletes and pgbench while Debezium runs: the target equals the source" {
	ps_ -c "$ITEMS_SQL" -c "$(items_rows 10 209)"
	ps_ <<-SQL
		CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric(14,4) NOT NULL, note text);
		INSERT INTO ledger SELECT g * 1000000000000, g * 1.0001, 'n' || g FROM generate_series(1, 1000) g;
		CREATE TABLE docs (id int PRIMARY KEY, rev int NOT NULL, title text, body text);
		ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
		INSERT INTO docs SELECT g, 0, 'doc ' || g, $(doc_body g) FROM generate_series(1, 5) g;
	SQL
	assert_equal "$(ps_ -c "SELECT min(length(body)), max(length(body)), min(pg_column_size(body)) FROM docs")" \
		"102400|102400|102400"
	# pgbench_history has no key: pgbench only inserts into it, which the
	# publication allows and which needs no key to apply
	pgbench -i -q -s 1 "$S" >"$OUT/pgbench-init.out" 2>&1
	e2e_schema "$S" "$D"

	# pgbench writes through the snapshot and the start of streaming
	pgbench -n -c 2 -T 10 "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	local pgbench_pid=$!
	PIDS+=($pgbench_pid)
	sleep 1
	local t=$EPOCHREALTIME
	e2e_connector "$NAME" "$S"
	e2e_sync "$S" "$NAME"
	e2e_note "snapshot of $(ps_ -c "SELECT count(*) FROM pgbench_accounts") + rows in Kafka after $(e2e_since "$t") s"

	# streaming: inserts, updates and deletes of every kind of column
	ps_ -c "$(items_rows 300 349)"
	ps_ <<-'SQL'
		UPDATE items SET price = price + 0.01, tags = tags || 'u'::text,
			attrs = attrs || '{"u": true}', created = created + interval '1.5 sec',
			raw = raw || '\x01'::bytea, nums = nums || 7, iv = iv + interval '1 sec'
			WHERE id % 3 = 0;
		UPDATE items SET name = NULL, ref = NULL, m = NULL WHERE id % 10 = 1;
		UPDATE items SET big = -big, ratio = -ratio, d = -d WHERE id IN (1, 3);
		DELETE FROM items WHERE id % 7 = 0;
		UPDATE ledger SET amount = amount * 2 WHERE id % 3000000000000 = 0;
		DELETE FROM ledger WHERE id % 5000000000000 = 0;
		INSERT INTO ledger SELECT g * 1000000000000, -g, NULL FROM generate_series(1001, 1100) g;
		-- docs: updates that leave the TOASTed body alone, one that changes it
		UPDATE docs SET rev = rev + 1;
		UPDATE docs SET rev = rev + 1, title = 'retitled' WHERE id = 2;
		UPDATE docs SET body = body || 'tail' WHERE id = 3;
		DELETE FROM docs WHERE id = 4;
	SQL
	ps_ -c "INSERT INTO docs VALUES (6, 0, 'new', $(doc_body 6))" \
		-c "UPDATE docs SET rev = 10 WHERE id = 6"
	wait "$pgbench_pid"
	local txns
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$OUT/pgbench.out")
	((txns > 0))
	t=$EPOCHREALTIME
	e2e_sync "$S" "$NAME"
	e2e_note "$txns pgbench transactions; stream in Kafka $(e2e_since "$t") s after the last one"

	# the snapshot rows came as op r; the body updates left out as placeholders
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.public.items" -e -q | grep -c '"op":"r"')" 203
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.public.docs" -e -q |
		grep -c '"body":"__debezium_unavailable_value"')" 7

	t=$EPOCHREALTIME
	apply_idle
	e2e_note "dbm-cdc-apply: $(stopped applied) events applied in $(e2e_since "$t") s (3 s idle included)"
	local messages
	messages=$(e2e_messages "$NAME")
	assert_equal "$(stopped missed)" 0
	assert_equal "$(($(stopped applied) + $(stopped skipped)))" "$messages"
	equal_everywhere
	assert_equal "$(pd_ -c "SELECT string_agg(id || ':' || rev || ':' || length(body), ' ' ORDER BY id) FROM docs")" \
		"1:1:102400 2:2:102400 3:1:102404 5:1:102400 6:10:102400"
	assert_equal "$(pd_ -c "SELECT count(*) FROM pgbench_history")" "$txns"

	# a second run finds nothing to do
	apply_idle
	assert_equal "$(stopped applied)" 0
	assert_equal "$(stopped skipped)" 0
	equal_everywhere
}

@test "dbm-cdc-apply SIGKILLed twice mid-stream and restarted: the counts match exactly" {
	ps_ <<-'SQL'
		CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
		INSERT INTO counter VALUES (1, 0);
		CREATE TABLE ledger (id bigserial PRIMARY KEY, client int NOT NULL, n bigint NOT NULL,
			amount numeric(12,2), at timestamptz NOT NULL DEFAULT now());
		-- no key: a message applied twice would be a second row
		CREATE TABLE hist (client int, n bigint, at timestamptz);
	SQL
	cat >"$OUT/txn.sql" <<-'SQL'
		BEGIN;
		UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n \gset
		INSERT INTO ledger (client, n, amount) VALUES (:client_id, :n, random() * 100);
		INSERT INTO hist VALUES (:client_id, :n, now());
		END;
	SQL
	e2e_schema "$S" "$D"
	e2e_connector "$NAME" "$S"
	e2e_sync "$S" "$NAME"

	pgbench -n -c 2 -T 12 -f "$OUT/txn.sql" "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	local pgbench_pid=$! i last=0 n src
	PIDS+=($pgbench_pid)
	for i in 1 2; do
		apply_bg a --batch-rows 100
		# it applies, then dies mid-stream: the source is ahead of it
		dbm_wait_until 60 counter_above "$last"
		sleep 1
		src=$(ps_ -c "SELECT n FROM counter")
		kill -KILL "$a_pid"
		wait "$a_pid" || true
		n=$(pd_ -c "SELECT n FROM counter")
		e2e_note "kill $i: target at $n, source at $src"
		((n > last && n < src))
		last=$n
	done
	wait "$pgbench_pid"
	local txns
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$OUT/pgbench.out")
	assert_equal "$(ps_ -c "SELECT n FROM counter")" "$txns"
	((last < txns))
	e2e_sync "$S" "$NAME"

	apply_idle
	assert_equal "$(stopped missed)" 0
	# exactly once: every transaction once, in every table
	assert_equal "$(pd_ -c "SELECT n FROM counter")" "$txns"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM ledger")" \
		"$txns|$txns|1|$txns"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM hist")" \
		"$txns|$txns|1|$txns"
	equal_everywhere
}

@test "primary key changes (moves, a chain, a swap, composite keys, TOASTed rows) over 3 partitions" {
	ps_ <<-SQL
		CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
		INSERT INTO acct SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 20) g;
		CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b));
		INSERT INTO pair SELECT g % 4, 'b' || g, g FROM generate_series(1, 12) g;
		-- the whole old row is logged, so Debezium can fill in the
		-- unchanged TOASTed body of a moved row
		CREATE TABLE tdoc (id int PRIMARY KEY, rev int NOT NULL, body text);
		ALTER TABLE tdoc ALTER COLUMN body SET STORAGE EXTERNAL;
		ALTER TABLE tdoc REPLICA IDENTITY FULL;
		INSERT INTO tdoc SELECT g, 0, $(doc_body g) FROM generate_series(1, 3) g;
	SQL
	e2e_schema "$S" "$D"
	e2e_connector "$NAME" "$S" topic.creation.default.partitions=3 \
		topic.creation.default.replication.factor=1
	e2e_sync "$S" "$NAME"
	ps_ <<-'SQL'
		UPDATE acct SET id = id + 1000 WHERE id <= 5;
		-- a chain: 1 -> 1001 -> 3001
		UPDATE acct SET id = id + 2000 WHERE id = 1001;
		-- into a key freed just before, with a value change
		DELETE FROM acct WHERE id = 10;
		UPDATE acct SET id = 10, balance = balance + 1 WHERE id = 11;
		-- a swap through a free key, in one transaction
		BEGIN;
		UPDATE acct SET id = -7 WHERE id = 7;
		UPDATE acct SET id = 7 WHERE id = 8;
		UPDATE acct SET id = 8 WHERE id = -7;
		COMMIT;
		-- back to where it was
		UPDATE acct SET id = 3 WHERE id = 1003;
		-- then an ordinary update of a moved row
		UPDATE acct SET balance = 0 WHERE id = 1002;
		UPDATE pair SET b = b || '-x' WHERE a = 1;
		UPDATE pair SET a = a + 10, v = v * 2 WHERE a = 2;
		UPDATE tdoc SET id = id + 100 WHERE id = 1;
		UPDATE tdoc SET rev = rev + 1 WHERE id = 101;
	SQL
	e2e_sync "$S" "$NAME"
	# each move is a delete of the old key and a create of the new one,
	# keyed by their keys: most go to different partitions
	assert_equal "$(kcat -b "$BROKERS" -L -t "$NAME.public.acct" -J | jq '.topics[0].partitions | length')" 3
	local crossing
	crossing=$(kcat -b "$BROKERS" -C -t "$NAME.public.acct" -e -q -f '%p %s\n' | jq -R -s '
		split("\n") | map(select(test("^[0-9]+ [{]")) | (.[index(" ") + 1:] | fromjson.payload) as $e
			| {op: $e.op, id: ($e.before // $e.after).id, p: (.[0:index(" ")])})
		| (map(select(.op == "d")) | map({(.id | tostring): .p}) | add) as $d
		| (map(select(.op == "c")) | map({(.id | tostring): .p}) | add) as $c
		| [[1, 1001], [2, 1002], [3, 1003], [4, 1004], [5, 1005], [1001, 3001], [11, 10],
		   [7, -7], [8, 7], [-7, 8], [1003, 3]]
		| map(select($d[.[0] | tostring] != $c[.[1] | tostring])) | length')
	e2e_note "$crossing of 11 key changes crossed partitions"
	((crossing > 0))
	apply_idle
	assert_equal "$(stopped missed)" 0
	assert_equal "$(pd_ -c "SELECT string_agg(id || ':' || owner || ':' || balance, ' ' ORDER BY id) FROM acct")" \
"3:owner 3:30.00 6:owner 6:60.00 7:owner 8:80.00 8:owner 7:70.00 9:owner 9:90.00 \
10:owner 11:111.00 12:owner 12:120.00 13:owner 13:130.00 14:owner 14:140.00 \
15:owner 15:150.00 16:owner 16:160.00 17:owner 17:170.00 18:owner 18:180.00 \
19:owner 19:190.00 20:owner 20:200.00 1002:owner 2:0.00 1004:owner 4:40.00 \
1005:owner 5:50.00 3001:owner 1:10.00"
	assert_equal "$(pd_ -c "SELECT string_agg(a || b || ':' || v, ' ' ORDER BY a, b) FROM pair")" \
		"0b12:12 0b4:4 0b8:8 1b1-x:1 1b5-x:5 1b9-x:9 3b11:11 3b3:3 3b7:7 12b10:20 12b2:4 12b6:12"
	assert_equal "$(pd_ -c "SELECT string_agg(id || ':' || rev || ':' || length(body), ' ' ORDER BY id) FROM tdoc")" \
		"2:0:102400 3:0:102400 101:1:102400"
	equal_everywhere
}

@test "a key change of a row whose TOASTed value is unchanged (REPLICA IDENTITY DEFAULT) stops with exit 2 naming the column, rather than lose the value" {
	# pgoutput does not send an unchanged TOASTed value, so Debezium's
	# create event for the new key carries its placeholder: the value is not
	# in the stream, and dbm-cdc-apply refuses to write the row without it.
	# With REPLICA IDENTITY FULL (test above) the value arrives.
	ps_ <<-SQL
		CREATE TABLE tdoc (id int PRIMARY KEY, rev int NOT NULL, body text);
		ALTER TABLE tdoc ALTER COLUMN body SET STORAGE EXTERNAL;
		INSERT INTO tdoc SELECT g, 0, $(doc_body g) FROM generate_series(1, 2) g;
	SQL
	e2e_schema "$S" "$D"
	e2e_connector "$NAME" "$S"
	e2e_sync "$S" "$NAME"
	ps_ -c "UPDATE tdoc SET id = id + 100 WHERE id = 1"
	e2e_sync "$S" "$NAME"
	assert_equal "$(kcat -b "$BROKERS" -C -t "$NAME.public.tdoc" -e -q -o 2 | sed 's/^$/null/' |
		jq -c 'if . == null then "tombstone" else
			.payload | [.op, .before.id, .after.id, (.after.body // "" | .[0:28])] end')" \
		'["d",1,null,""]
"tombstone"
["c",null,101,"__debezium_unavailable_value"]'

	run --separate-stderr timeout 120 dbm-cdc-apply --target "$D" --kafka "$BROKERS" \
		--topic-regex "$NAME\\.public\\..*" --group "$NAME" "${KX[@]}" --until-idle 3
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	[[ "${stderr_lines[0]}" == "dbm-cdc-apply: error: $NAME.public.tdoc/"*": column \"body\" of public.tdoc: a new row without its value (the unchanged-TOAST placeholder); it cannot be recovered from the stream: give the source table REPLICA IDENTITY FULL" ]]
	# no row 101 without its body (nothing of that batch is committed: with
	# the partitions' order, what else it held varies)
	assert_equal "$(pd_ -c "SELECT count(*) FROM tdoc WHERE id = 101")" 0
}

@test "more column types (infinities, money, network, bit, point, ranges, xml, citext, ltree, hstore, ISO intervals) come out exact" {
	# Left out, as the connector cannot carry them exactly: timetz (sent in
	# UTC), numeric NaN (sent as null), varbit (padded to its declared
	# length), name (null in streamed events), tsvector (not sent at all).
	ps_ <<-'SQL'
		CREATE EXTENSION citext;
		CREATE EXTENSION ltree;
		CREATE EXTENSION hstore;
		CREATE TABLE more (id int PRIMARY KEY, h hstore, dd date,
			tsz timestamptz, ts timestamp, iv interval, cash money, ip inet, net cidr, mac macaddr,
			b bit(4), pt point, ct citext, lt ltree, r int4range, tr tstzrange, x xml,
			ch "char", o oid, f4 real, f8 double precision, js jsonb);
		INSERT INTO more VALUES
		(1, '"a"=>"1", "b"=>NULL, "q\"x"=>"back\\slash"', 'infinity', 'infinity', '-infinity', '1 year 2 mons 3 days 04:05:06.789', 12.34,
		 '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', '(1.5,-2)', 'MiXeD',
		 'a.b.c', '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '<a>x</a>', 'q', 42,
		 'NaN', '-Infinity', '{"k": 1.0}'),
		(2, '', '-infinity', '-infinity', 'infinity', '-1 days +02:00', -0.01, '::1', '2001:db8::/32',
		 'ff:ff:ff:ff:ff:ff', B'0000', '(0,0)', 'x', 'top', 'empty', '(,)', NULL, 'z', 0,
		 1e-38, 5e-324, '[1e400]'),
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		 NULL, NULL, NULL, NULL, NULL, NULL);
	SQL
	e2e_schema "$S" "$D"
	e2e_connector "$NAME" "$S" interval.handling.mode=string
	e2e_sync "$S" "$NAME"
	ps_ <<-'SQL'
		UPDATE more SET tsz = '-infinity', ts = 'infinity', iv = '-2 mons', cash = cash * 100,
			ip = '10.1.2.3', r = '[5,6]', f4 = 'Infinity', f8 = 'NaN', ct = 'ÄÖ',
			h = '"k"=>"v w"', dd = '-infinity' WHERE id = 1;
		UPDATE more SET dd = 'infinity' WHERE id = 2;
		UPDATE more SET tsz = '2024-06-01 12:00:00.000001+02', x = '<b/>', lt = 'x.y' WHERE id = 3;
		INSERT INTO more (id, iv, tr) VALUES (4, '3 days', '[2024-01-01 00:00+00,)');
	SQL
	e2e_sync "$S" "$NAME"
	apply_idle
	# 3 rows read, 4 changes, the marker read and updated twice
	assert_equal "$(stopped applied)" 10
	assert_equal "$(stopped missed)" 0
	equal_everywhere
	assert_equal "$(pd_ -c "SELECT id || ' ' || tsz || ' ' || ts || ' ' || iv FROM more WHERE id = 1")" \
		"1 -infinity infinity -2 mons"
}
