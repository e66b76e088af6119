#!/usr/bin/env bats
# dbm-switch: once the target has applied everything up to the freeze,
# copy the sequences, create the reverse publication and slot, record the
# switch and repoint pgbouncer (or run --exec); past --timeout exit 1 with
# nothing repointed.
#
# Every test gets its own database on both clusters, its own pgbouncer and
# its own slot names (helpers/cutover).

bats_require_minimum_version 1.5.0

load helpers/common
load helpers/cutover

CUTOVER_PREFIX=sw

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
	cutover_db
}

teardown()
{
	cutover_teardown
}

# A pgbench script through pgbouncer: a serial id, an identity column and
# an unowned sequence, each row stamped with the server that took it, and
# an update in place.
write_bench_script()
{
	cat >"$OUT/bench.sql" <<-'EOF'
		\set a random(1, 100)
		BEGIN;
		INSERT INTO orders (account_id, port) VALUES (:a, inet_server_port());
		UPDATE accounts SET balance = balance + 1 WHERE id = :a;
		INSERT INTO events (note) VALUES ('pgbench ' || inet_server_port());
		INSERT INTO tickets (what) VALUES ('pgbench ' || inet_server_port());
		END;
	EOF
}

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-switch --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-switch cuts the application over from the source to the target.'
	assert_line '  dbm-switch [OPTION]... --source=CONNINFO --target=CONNINFO --freeze=FILE'
	assert_output --partial '--pgbouncer-ini=PATH'
	assert_output --partial '--exec=CMD'
	assert_output --partial '--reverse-slot=NAME'
	assert_output --partial 'Exit status: 0 switched, 1 the target did not catch up in time'
	run -0 dbm-switch -h
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-switch --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-switch \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-switch -V
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec true --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" '^dbm-switch: .*--frobnicate'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-switch --help" for more information.'
}

@test "--source and --target are required, from options or DBM_SOURCE and DBM_TARGET" {
	run --separate-stderr dbm-switch --target "$D" --exec true
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: --source is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-switch --help" for more information.'
	run --separate-stderr dbm-switch --source "$S" --exec true
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: --target is required'
	# the environment supplies them: the next complaint is the frozen line
	DBM_SOURCE=$S DBM_TARGET=$D run --separate-stderr dbm-switch --exec true --freeze /dev/null
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: /dev/null: no frozen line (run dbm-freeze first)'
}

@test "the router is required: --pgbouncer, --pgbouncer-ini and --database, or --exec, not both" {
	run --separate-stderr dbm-switch --source "$S" --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: give either --pgbouncer, --pgbouncer-ini and --database, or --exec'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec true \
		--pgbouncer 'dbname=pgbouncer' --pgbouncer-ini "$OUT/x.ini" --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: give either --pgbouncer, --pgbouncer-ini and --database, or --exec'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --pgbouncer 'dbname=pgbouncer' --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: --pgbouncer-ini is required with pgbouncer'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --pgbouncer 'dbname=pgbouncer' \
		--pgbouncer-ini "$OUT/x.ini"
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: --database is required with pgbouncer'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-switch --help" for more information.'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --pgbouncer-ini "$OUT/x.ini" --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: --pgbouncer is required with pgbouncer'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec true --timeout soon
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: invalid value "soon" for --timeout: expected seconds'
}

# ------------------------------------------------------------- cutovers

@test "cuts over under pgbench load through pgbouncer: no client fails, nothing lost, sequences go on" {
	cutover_setup
	write_bench_script
	copied_max=$(ps_ -c 'SELECT max(id) FROM orders')
	pgbench -n -c 4 -T 10 -f "$OUT/bench.sql" "$PGB" >"$OUT/pgbench.out" 2>&1 3>&- &
	BENCH_PID=$!
	# load on the source for a while
	dbm_wait_until 20 bash -c "(( \$(psql '$S' -XAtq -c 'SELECT count(*) FROM orders') > 1500 ))"

	run --separate-stderr freeze_pgb
	assert_success
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	jq -e '.type == "frozen" and .method == "pgbouncer" and (.lsn | test("^[0-9A-F]+/[0-9A-F]+$"))' \
		"$OUT/frozen.jsonl"
	# pgbench's clients are queued in pgbouncer, each on the BEGIN of its
	# next transaction; stopping pgbench keeps that BEGIN its last word
	# until it is continued, so the target takes no new write before the
	# comparison below
	kill -STOP "$BENCH_PID"
	frozen_orders=$(ps_ -c 'SELECT count(*) FROM orders')

	run --separate-stderr switch_pgb --freeze "$OUT/frozen.jsonl"
	assert_success
	printf '%s\n' "$output" >"$OUT/switched.jsonl"
	assert_equal "${#lines[@]}" 1
	jq -e --arg rs "$RSLOT" --slurpfile f "$OUT/frozen.jsonl" '.type == "switched"
		and .freeze_lsn == $f[0].lsn and .applied_by == "position" and .router == "pgbouncer"
		and .sequences == 3 and .reverse_slot == $rs and .reverse_publication == $rs
		and (.reverse_lsn | test("/")) and (.pause_ms | type == "number") and .pause_ms >= 0
		and (.at | test("Z$"))' "$OUT/switched.jsonl"
	# recorded on the target, the reverse slot and publication exist there
	assert_equal "$(pd_ -c 'SELECT state, reverse_slot FROM dbm.switch')" "switched|$RSLOT"
	assert_equal "$(pd_ -c "SELECT plugin FROM pg_replication_slots WHERE slot_name = '$RSLOT'")" pgoutput
	assert_equal "$(pd_ -c "SELECT puballtables FROM pg_publication WHERE pubname = '$RSLOT'")" t
	# pgbouncer routes to the target, its ini says so
	routes_to "$DST_PORT"
	run ! dbm_pgbouncer_paused "$DB"
	assert_equal "$(dbm_pgbouncer_db_field "$DB" port)" "$DST_PORT"
	grep -Eq "^$DB = .*port=$DST_PORT( |$)" "$PGB_INI"
	# every row committed on the source is on the target, nothing else yet
	assert_equal "$(ps_ -c 'SELECT count(*) FROM orders')" "$frozen_orders"
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
	jq -e -s '.[-1] | .type == "summary" and .tables == 4 and .equal == 4' <<<"$output"
	for t in "${CUTOVER_TABLES[@]}"; do
		assert_equal "$(dbm_checksum "$D" "$t")" "$(dbm_checksum "$S" "$t")"
	done

	# pgbench goes on against the target and ends without a failure
	kill -CONT "$BENCH_PID"
	wait "$BENCH_PID"
	BENCH_PID=
	run cat "$OUT/pgbench.out"
	assert_output --partial 'number of failed transactions: 0 (0.000%)'
	refute_output --partial 'error'
	refute_output --partial 'aborted'
	# the target took writes after the switch, with ids past the source's
	src_max=$(ps_ -c 'SELECT max(id) FROM orders')
	(( src_max > copied_max ))
	(( $(pd_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT") > 0 ))
	assert_equal "$(pd_ -c "SELECT min(id) > $src_max FROM orders WHERE port = $DST_PORT")" t
	assert_equal "$(pd_ -c "SELECT min(e.id) > (SELECT max(id) FROM events WHERE note <> 'pgbench $DST_PORT')
		FROM events e WHERE note = 'pgbench $DST_PORT'")" t
	assert_equal "$(pd_ -c "SELECT min(no) > (SELECT max(no) FROM tickets WHERE what <> 'pgbench $DST_PORT')
		FROM tickets WHERE what = 'pgbench $DST_PORT'")" t
	# and the source took none
	assert_equal "$(ps_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT")" 0
	# one more insert through pgbouncer, no collision
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING id > $src_max"
	assert_output t
}

@test "a native subscription as the engine: the barrier row fences the switch, --exec repoints" {
	for c in "$S" "$D"; do
		psql "$c" -XAtq -v ON_ERROR_STOP=1 <<-'EOF'
			CREATE SCHEMA dbm;
			CREATE TABLE dbm.barrier (id bigint PRIMARY KEY, kind text NOT NULL,
			    at timestamptz NOT NULL DEFAULT now());
			CREATE TABLE items (id serial PRIMARY KEY, v text);
			CREATE SEQUENCE free_no;
		EOF
	done
	ps_ -c "INSERT INTO items (v) SELECT 'v' || g FROM generate_series(1, 200) g" \
		-c "SELECT setval('free_no', 42)" -c 'CREATE PUBLICATION nat FOR ALL TABLES' >/dev/null
	pd_ -c "CREATE SUBSCRIPTION nat CONNECTION '$S' PUBLICATION nat WITH (copy_data = true)" 2>/dev/null
	dbm_wait_until 30 bash -c "[[ \$(psql '$D' -XAtq -c \"SELECT count(*) FROM pg_subscription_rel
		WHERE srsubstate <> 'r'\") == 0 ]]"
	ps_ -c "INSERT INTO items (v) SELECT 'late' || g FROM generate_series(1, 20) g"

	run --separate-stderr dbm-freeze --source "$S" --readonly
	assert_success
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	run --separate-stderr dbm-switch --source "$S" --target "$D" --freeze "$OUT/frozen.jsonl" \
		--timeout 20 --reverse-slot "$RSLOT" --reverse-publication "$RSLOT" \
		--exec "echo \"\$DBM_ROUTE_TO\" >'$OUT/route'"
	assert_equal "$stderr" ""
	assert_success
	jq -e '.type == "switched" and .applied_by == "barrier" and .router == "exec"
		and .sequences == 2 and (.pause_ms | type == "number")' <<<"$output"
	assert_equal "$(cat "$OUT/route")" target
	# everything the source had is there, sequences included
	assert_equal "$(dbm_checksum "$D" items)" "$(dbm_checksum "$S" items)"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM items')" 220
	assert_equal "$(pd_ -c "SELECT last_value FROM free_no")" 42
	assert_equal "$(pd_ -c "SELECT nextval('items_id_seq')")" 221
	# the source stays read-only
	run ! ps_ -c "INSERT INTO items (v) VALUES ('no')"
}

@test "--timeout: a target that does not apply exits 1 with nothing repointed; the source stays paused" {
	cutover_setup
	# the applier caught up, then stopped
	ps_ -c "INSERT INTO orders (account_id, port) VALUES (1, -2)"
	dbm_wait_until 20 same_table orders
	stop_bg "$FWD_PID"
	FWD_PID=
	run -0 timeout 5 psql "$PGB" -XAtq -c "INSERT INTO orders (account_id, port) VALUES (1, -1)"
	run -0 freeze_pgb
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	cp "$PGB_INI" "$OUT/ini.before"
	SECONDS=0
	run --separate-stderr switch_pgb --freeze "$OUT/frozen.jsonl" --timeout 1
	assert_failure 1
	((SECONDS <= 5))
	assert_equal "$output" ""
	lsn=$(jq -r .lsn "$OUT/frozen.jsonl")
	assert_equal "${stderr_lines[0]}" "dbm-switch: error: the target has not applied up to $lsn within 1.0 s: nothing repointed"
	# nothing repointed, nothing recorded, no reverse slot, still paused
	cmp "$PGB_INI" "$OUT/ini.before"
	assert_equal "$(dbm_pgbouncer_db_field "$DB" port)" "$SRC_PORT"
	dbm_pgbouncer_paused "$DB"
	assert_equal "$(pd_ -c "SELECT to_regclass('dbm.switch') IS NULL")" t
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$RSLOT'")" 0
	# the caller decides: thaw, clients go on with the source
	run -0 freeze_pgb --thaw
	run -0 timeout 5 psql "$PGB" -XAtq -c 'SELECT inet_server_port()'
	assert_output "$SRC_PORT"
}

@test "an identity GENERATED ALWAYS column is carried over and continues past the copied ids" {
	ps_ -c 'CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text)' \
		-c "INSERT INTO audit (what) SELECT 'a' || g FROM generate_series(1, 30) g"
	pg_dump --section=pre-data "$S" | pd_ >/dev/null
	cutover_copy
	start_forward
	dbm_start_pgbouncer "$DB" "$S"
	psql "$PGB" -XAtq -v ON_ERROR_STOP=1 -c "INSERT INTO audit (what) VALUES ('live')" \
		-c "UPDATE audit SET what = 'changed' WHERE id = 3"
	run -0 freeze_pgb
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	run --separate-stderr switch_pgb --freeze "$OUT/frozen.jsonl" --timeout 5
	cat "$OUT/forward.err"
	assert_success
	assert_equal "$(dbm_checksum "$D" audit)" "$(dbm_checksum "$S" audit)"
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 -c "INSERT INTO audit (what) VALUES ('after') RETURNING id"
	assert_output 32
}

# -------------------------------------------------------------- bad input

@test "a missing or bad frozen line exits 2 before touching anything" {
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec "touch '$OUT/ran'" \
		--freeze "$OUT/none.jsonl"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" "dbm-switch: error: could not open file \"$OUT/none.jsonl\": No such file or directory"
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec "touch '$OUT/ran'" \
		<<<'{"type":"thawed","method":"pgbouncer","reason":"timeout"}'
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: -: no frozen line (run dbm-freeze first)'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec "touch '$OUT/ran'" \
		<<<'{"type":"frozen","lsn":"zz","barrier":1,"at_ms":1}'
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: -:1: invalid LSN "zz"'
	run --separate-stderr dbm-switch --source "$S" --target "$D" --exec "touch '$OUT/ran'" \
		<<<'{"type":"frozen","lsn":"0/1"}'
	assert_failure 2
	assert_regex "${stderr_lines[0]}" '^dbm-switch: error: -:1: field "(barrier|at_ms)" missing'
	[[ ! -e "$OUT/ran" ]]
	assert_equal "$(pd_ -c "SELECT to_regclass('dbm.switch') IS NULL")" t
}

@test "a failing --exec exits 2 and says so; dbm-rollback then brings everything back to the source" {
	cutover_setup
	run -0 freeze_pgb
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	run --separate-stderr dbm-switch --source "$S" --target "$D" --freeze "$OUT/frozen.jsonl" \
		--reverse-slot "$RSLOT" --reverse-publication "$RSLOT" --exec 'exit 3'
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-switch: error: command "exit 3" failed (status 3)'
	# the application never left the source: going back must work
	run --separate-stderr rollback_pgb --timeout 5
	assert_equal "$stderr" ""
	assert_success
	jq -e '.type == "rolled_back" and .primary == "source"' <<<"$output"
	run ! dbm_pgbouncer_paused "$DB"
	run -0 timeout 5 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING port"
	assert_output "$SRC_PORT"
}

@test "a pgbouncer console that cannot be reached exits 2 and leaves the ini file as it was" {
	cutover_setup
	run -0 freeze_pgb
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	cp "$PGB_INI" "$OUT/ini.before"
	port=$(_dbm_pgb_free_port)
	run --separate-stderr dbm-switch --source "$S" --target "$D" --freeze "$OUT/frozen.jsonl" \
		--pgbouncer "host=127.0.0.1 port=$port dbname=pgbouncer user=postgres" \
		--pgbouncer-ini "$PGB_INI" --database "$DB" \
		--reverse-slot "$RSLOT" --reverse-publication "$RSLOT"
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" "^dbm-switch: error: could not connect to \".*port=$port"
	# the next RELOAD, by anyone, must not send clients to the target
	cmp "$PGB_INI" "$OUT/ini.before"
	run -0 freeze_pgb --thaw
	routes_to "$SRC_PORT"
}
