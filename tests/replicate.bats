#!/usr/bin/env bats
# runbooks/replicate.sh: schema, consistent copy, indexes and constraints,
# then the changes since the copy, each step logged as a JSON line.
#
# Every test gets its own database on both clusters (setup) holding a small
# shop (primary keys, a foreign key, an index, a partitioned table, a
# sequence) on the source, and its own slot name.

bats_require_minimum_version 1.5.0

load helpers/common

RB=$REPO_ROOT/runbooks/replicate.sh
TABLES=(public.customers public.orders public.events public.notes)

setup_file()
{
	dbm_start_clusters
}

teardown_file()
{
	dbm_stop_clusters
}

setup()
{
	DB="t_$BATS_TEST_NUMBER"
	SLOT="s_$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
	LOG=$OUT/run.jsonl
	ps_ <<-'EOF'
		CREATE SEQUENCE invoice_no START 1000;
		CREATE TABLE customers (
		    id    bigserial PRIMARY KEY,
		    name  text NOT NULL,
		    email text UNIQUE
		);
		CREATE TABLE orders (
		    id          bigint PRIMARY KEY DEFAULT nextval('invoice_no'),
		    customer_id bigint NOT NULL REFERENCES customers (id),
		    total       numeric(12,2) NOT NULL CHECK (total >= 0),
		    placed      timestamptz NOT NULL
		);
		CREATE INDEX orders_customer_placed ON orders (customer_id, placed);
		CREATE TABLE events (
		    at      timestamptz NOT NULL,
		    id      bigint NOT NULL,
		    payload jsonb,
		    PRIMARY KEY (at, id)
		) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events
		    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE events_2025 PARTITION OF events
		    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		CREATE INDEX events_payload ON events USING gin (payload);
		CREATE TABLE "notes" (order_id bigint PRIMARY KEY REFERENCES orders, "Body" text);

		INSERT INTO customers (name, email)
		SELECT 'customer ' || g, CASE WHEN g % 10 <> 0 THEN 'c' || g || '@example.com' END
		FROM generate_series(1, 2000) g;
		INSERT INTO orders (customer_id, total, placed)
		SELECT 1 + g % 2000, (g % 500) + 0.99,
		       timestamptz '2024-01-01' + g * interval '7 minutes'
		FROM generate_series(1, 8000) g;
		INSERT INTO events
		SELECT timestamptz '2024-01-01' + g * interval '97 minutes', g,
		       jsonb_build_object('order', 1000 + g % 8000)
		FROM generate_series(1, 8000) g;
		INSERT INTO notes SELECT id, 'note ' || id FROM orders WHERE id % 5 = 0;
		ANALYZE;
	EOF
}

teardown()
{
	if [[ -n "${BG_PID:-}" ]]; then
		kill "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
	if [[ -n "${RB_PID:-}" ]]; then
		kill "$RB_PID" 2>/dev/null || true
		wait "$RB_PID" 2>/dev/null || true
	fi
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }

replicate() { DBM_SOURCE=$S DBM_TARGET=$D "$RB" --slot "$SLOT" --run-log "$LOG" "$@"; }

# The step lines of the run log as "step status", one per line.
steps() { jq -r '"\(.step) \(.status)"' "$LOG"; }

# log_line STEP STATUS: that step line of the run log.
log_line()
{
	jq -c --arg step "$1" --arg status "$2" \
		'select(.step == $step and .status == $status)' "$LOG"
}

# What pg_dump would recreate of the schema, minus the data: constraints
# and indexes by name and definition, for comparing both sides.
schema_of()
{
	psql "$1" -XAtq -v ON_ERROR_STOP=1 <<-'EOF'
		SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' '
		       || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE connamespace = 'public'::regnamespace
		UNION ALL
		SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
		UNION ALL
		SELECT 'partition ' || inhrelid::regclass || ' of ' || inhparent::regclass
		FROM pg_inherits
		UNION ALL
		SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = 'public'
		ORDER BY 1
	EOF
}

assert_same_data()
{
	local t
	run dbm-diff --source "$S" --target "$D"
	assert_success
	assert_line --partial '"type":"summary","tables":4,"equal":4'
	for t in "${TABLES[@]}"; do
		[[ "$(dbm_checksum "$S" "$t")" == "$(dbm_checksum "$D" "$t")" ]] ||
			{ echo "$t differs"; return 1; }
	done
}

# Some changes of every kind on the source, in many small transactions.
write_source()
{
	local i
	for i in $(seq 1 "$1"); do
		psql "$S" -XAtq -v ON_ERROR_STOP=1 <<-EOF || return
			INSERT INTO customers (name) VALUES ('late $i');
			INSERT INTO orders (customer_id, total, placed)
			VALUES (currval('customers_id_seq'), $i, '2025-02-01 10:00+00');
			UPDATE orders SET total = total + 1 WHERE id = 1000 + $i;
			DELETE FROM notes WHERE order_id = 1000 + 5 * $i;
			UPDATE events SET payload = payload || '{"seen": true}' WHERE id = $i;
			INSERT INTO events VALUES ('2025-06-01 00:00+00', 100000 + $i, NULL);
			DELETE FROM events WHERE id = 4000 + $i;
		EOF
	done
}

# ---------------------------------------------------------------- usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr "$RB" --help
	assert_success
	assert_line --index 0 --partial 'replicate.sh - copy a live database'
	assert_output --partial '--copy-only'
	[[ -z "$stderr" ]]
}

@test "an unknown option is one error line and exit 2" {
	run --separate-stderr replicate --bogus
	assert_failure 2
	[[ "$stderr" == 'replicate: error: unknown argument "--bogus"'* ]]
	[[ $(wc -l <<<"$stderr") -eq 1 ]]
	[[ ! -s "$LOG" ]]
}

@test "a missing DBM_TARGET is one error line and exit 2" {
	DBM_SOURCE=$S DBM_TARGET= run --separate-stderr "$RB" --run-log "$LOG"
	assert_failure 2
	assert_equal "$stderr" 'replicate: error: DBM_TARGET is not set (a libpq conninfo string or URI)'
}

@test "--jobs, --split-rows and --maintenance-work-mem are checked, and --copy-only takes no arguments for the apply" {
	run --separate-stderr replicate --jobs 0
	assert_failure 2
	assert_equal "$stderr" 'replicate: error: invalid value "0" for --jobs: expected 1 to 64'
	run --separate-stderr replicate --copy-only -- --until-idle 1
	assert_failure 2
	assert_equal "$stderr" 'replicate: error: arguments after -- go to dbm-cdc-apply, which --copy-only does not run'
	run --separate-stderr replicate --split-rows -5
	assert_failure 2
	assert_equal "$stderr" 'replicate: error: invalid value "-5" for --split-rows: expected a positive number'
	run --separate-stderr replicate --maintenance-work-mem lots
	assert_failure 2
	assert_equal "$stderr" 'replicate: error: invalid value "lots" for --maintenance-work-mem: expected a size like 512MB (empty: the server'"'"'s)'
	[[ ! -s "$LOG" ]]
}

# ---------------------------------------------------------------- real runs

@test "--copy-only copies schema and data, builds indexes and constraints, logs each step" {
	# small pieces: orders, events_2024 and events_2025 are copied in parts
	run --separate-stderr replicate --copy-only --jobs 2 --split-rows 2000
	assert_success
	[[ -z "$stderr" ]] || { echo "$stderr"; false; }

	# stdout: step lines around the snapshot's own lines
	[[ $(jq -r 'select(.type == "step") | "\(.step) \(.status)"' <<<"$output" |
		paste -sd,) == "pre-data started,pre-data done,snapshot started,post-data started,snapshot done,post-data done" ]]
	jq -e -s 'map(select(.type == "done")) | length == 1' <<<"$output"
	# the run log holds the step lines only, with the documented fields
	run steps
	assert_output "$(printf '%s\n' 'pre-data started' 'pre-data done' 'snapshot started' \
		'post-data started' 'snapshot done' 'post-data done')"
	jq -e -s 'all(.[]; (keys_unsorted[:5] == ["type", "step", "status", "at", "ms"])
		and (.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}[.][0-9]{3}Z$"))
		and (.ms | type == "number"))' "$LOG"
	lsn=$(jq -r 'select(.step == "snapshot" and .status == "done") | .lsn' "$LOG")
	[[ "$lsn" =~ ^[0-9A-F]+/[0-9A-F]+$ ]]
	log_line snapshot done | jq -e --arg slot "$SLOT" '.slot == $slot and .rows == 19600'

	# the same constraints, indexes, partitions and sequences on both sides
	schema_of "$S" >"$OUT/source.schema"
	schema_of "$D" >"$OUT/target.schema"
	diff -u "$OUT/source.schema" "$OUT/target.schema"
	grep -q '^constraint orders orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers(id)$' "$OUT/target.schema"
	grep -q '^index CREATE INDEX orders_customer_placed ON public.orders USING btree (customer_id, placed)$' "$OUT/target.schema"
	grep -q '^partition events_2025 of events$' "$OUT/target.schema"
	grep -q '^sequence invoice_no$' "$OUT/target.schema"
	# the foreign key is enforced and the planner has statistics
	run pd_ -c "INSERT INTO orders (id, customer_id, total, placed) VALUES (1, 999999, 1, now())"
	assert_failure
	assert_output --partial 'violates foreign key constraint'
	[[ $(pd_ -c "SELECT count(*) FROM pg_stats WHERE tablename = 'orders'") -gt 0 ]]
	# every table analyzed, the partitioned one included
	[[ $(pd_ -c "SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_stat_user_tables
		WHERE schemaname = 'public' AND last_analyze IS NULL") == "" ]]
	[[ $(pd_ -c "SELECT count(*) FROM pg_stats WHERE tablename = 'events'") -gt 0 ]]

	assert_same_data
	# the slot stays for a later dbm-cdc-apply; no publication on the target
	[[ $(ps_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'") == 1 ]]
	[[ $(pd_ -c "SELECT count(*) FROM pg_publication") == 0 ]]
}

@test "without --copy-only the changes made during and after the copy are applied" {
	# writes before, during and after the copy
	write_source 60 3>&- &
	BG_PID=$!
	sleep 0.3
	run --separate-stderr replicate -- --until-idle 2
	assert_success
	stdout=$output
	wait "$BG_PID"
	BG_PID=
	run steps
	assert_output "$(printf '%s\n' 'pre-data started' 'pre-data done' 'snapshot started' \
		'post-data started' 'snapshot done' 'post-data done' 'apply started' 'apply done')"
	# the writer ended before dbm-cdc-apply went idle: everything is there
	jq -c 'select(.type == "stopped")' <<<"$stdout" | jq -e '.reason == "idle" and .applied > 0'
	assert_same_data
	[[ $(ps_ -c "SELECT count(*) FROM customers WHERE name LIKE 'late %'") == 60 ]]
}

@test "SIGTERM while applying stops dbm-cdc-apply cleanly and the run ends done" {
	DBM_SOURCE=$S DBM_TARGET=$D "$RB" --slot "$SLOT" --run-log "$LOG" \
		>"$OUT/out.jsonl" 2>"$OUT/err" 3>&- &
	RB_PID=$!
	dbm_wait_until 30 grep -q '"step":"apply","status":"started"' "$LOG"
	write_source 3
	dbm_wait_until 30 bash -c "[[ \$(psql '$D' -XAtc \"SELECT count(*) FROM customers WHERE name = 'late 3'\") == 1 ]]"
	kill -TERM "$RB_PID"
	rc=0
	wait "$RB_PID" || rc=$?
	RB_PID=
	[[ $rc -eq 0 ]] || { echo "rc=$rc"; cat "$OUT/err" "$OUT/out.jsonl"; false; }
	jq -c 'select(.type == "stopped")' "$OUT/out.jsonl" | jq -e '.reason == "signal"'
	[[ $(tail -n 1 "$LOG" | jq -r '"\(.step) \(.status)"') == "apply done" ]]
	[[ ! -s "$OUT/err" ]]
	assert_same_data
}

@test "SIGTERM during an index build cancels the build on the server: exit 2, post-data failed, nothing left running" {
	# an index whose build takes 20 s on the target only (the setting is
	# the target database's)
	ps_ <<-'EOF'
		CREATE FUNCTION slow_key(bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
		BEGIN
			IF current_setting('dbm_test.slow', true) = 'on' THEN
				PERFORM pg_sleep(0.01);
			END IF;
			RETURN $1;
		END$$;
		CREATE INDEX customers_slow ON customers (slow_key(id));
	EOF
	pd_ -c "ALTER DATABASE $DB SET dbm_test.slow = on"
	DBM_SOURCE=$S DBM_TARGET=$D "$RB" --slot "$SLOT" --run-log "$LOG" --copy-only \
		>"$OUT/out.jsonl" 2>"$OUT/err" 3>&- &
	RB_PID=$!
	building() { [[ $(pd_ -c "SELECT count(*) FROM pg_stat_activity
		WHERE query LIKE 'CREATE INDEX customers_slow%' AND state = 'active'") -ge 1 ]]; }
	dbm_wait_until 30 building
	kill -TERM "$RB_PID"
	rc=0
	wait "$RB_PID" || rc=$?
	RB_PID=
	assert_equal "$rc" 2
	assert_equal "$(cat "$OUT/err")" "replicate: error: post-data: stopped by a signal"
	[[ $(tail -n 1 "$LOG" | jq -r '"\(.step) \(.status)"') == "post-data failed" ]]
	# the build was cancelled, not left to run on: gone at once
	run building
	assert_failure
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_slow'")" 0
}

# ---------------------------------------------------------------- failures

@test "an unreachable target fails the first step: one error line, exit 2, status failed" {
	port=$(( $(cat "$DST_DIR/port") + 1 ))
	while (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	D="host=127.0.0.1 port=$port user=postgres dbname=postgres"
	run --separate-stderr replicate
	assert_failure 2
	[[ $(wc -l <<<"$stderr") -eq 1 ]]
	[[ "$stderr" == "replicate: error: pre-data: psql: error: connection to server at \"127.0.0.1\", port $port failed: Connection refused" ]]
	run steps
	assert_output "$(printf '%s\n' 'pre-data started' 'pre-data failed')"
	log_line pre-data failed | jq -e --arg port "$port" '(.exit | type == "number")
		and (.message | test("port \($port) failed"))'
	# nothing was created on the source either
	[[ $(ps_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'") == 0 ]]
}

@test "an existing slot fails before the target is touched" {
	ps_ -c "SELECT pg_create_logical_replication_slot('$SLOT', 'pgoutput')" >/dev/null
	run --separate-stderr replicate --copy-only
	assert_failure 2
	assert_equal "$stderr" "replicate: error: pre-data: replication slot \"$SLOT\" already exists on the source (drop it, or choose another name with --slot)"
	[[ $(tail -n 1 "$LOG" | jq -r '"\(.step) \(.status)"') == "pre-data failed" ]]
	[[ $(pd_ -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0 ]]
	ps_ -c "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null
}

@test "a failing post-data step is logged failed with the server's error and the table" {
	# an index the target already has: pg_restore stops at the clash
	pd_ -c "CREATE TABLE placeholder (x int)"
	ps_ -c "CREATE INDEX placeholder ON customers (name)"
	run --separate-stderr replicate --copy-only
	assert_failure 2
	[[ $(wc -l <<<"$stderr") -eq 1 ]]
	[[ "$stderr" == 'replicate: error: post-data: public.customers: ERROR:  relation "placeholder" already exists' ]]
	[[ $(tail -n 1 "$LOG" | jq -r '"\(.step) \(.status) \(.exit)"') == "post-data failed 3" ]]
}
