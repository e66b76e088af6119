#!/usr/bin/env bats
# dbm-freeze: stop writes on the source for a cutover, through pgbouncer
# (PAUSE: clients wait, none fails) or read-only, let transactions in
# flight end, then write a barrier; past --timeout undo the freeze, exit 1.
#
# Every test gets its own database on both clusters and, when it needs
# one, its own pgbouncer (helpers/cutover).

bats_require_minimum_version 1.5.0

load helpers/common
load helpers/cutover

CUTOVER_PREFIX=fz

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

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-freeze --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-freeze stops writes on the source database for a cutover.'
	assert_line '  dbm-freeze [OPTION]... --source=CONNINFO --pgbouncer=ADMIN --database=NAME'
	assert_line '  dbm-freeze [OPTION]... --source=CONNINFO --readonly'
	assert_output --partial '--timeout=SECS'
	assert_output --partial '--thaw'
	assert_output --partial 'Exit status: 0 frozen (or thawed), 1 could not drain in time'
	run -0 dbm-freeze -h
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-freeze --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-freeze \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-freeze -V
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-freeze --source "$S" --readonly --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" '^dbm-freeze: .*--frobnicate'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-freeze --help" for more information.'
}

@test "--source is required, from the option or DBM_SOURCE" {
	run --separate-stderr dbm-freeze --readonly
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: --source is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-freeze --help" for more information.'
	run --separate-stderr dbm-freeze --pgbouncer 'host=127.0.0.1 dbname=pgbouncer' --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: --source is required'
	# the environment supplies it (and the freeze works)
	DBM_SOURCE=$S run --separate-stderr dbm-freeze --readonly
	assert_success
	jq -e 'select(.type == "frozen") | .method == "readonly"' <<<"$output"
	ps_ -c 'SET default_transaction_read_only = off' -c "ALTER DATABASE $DB RESET ALL"
}

@test "the method is required: --pgbouncer with --database, or --readonly, not both" {
	run --separate-stderr dbm-freeze --source "$S"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: give either --pgbouncer with --database, or --readonly'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-freeze --help" for more information.'
	run --separate-stderr dbm-freeze --source "$S" --readonly \
		--pgbouncer 'host=127.0.0.1 dbname=pgbouncer' --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: give either --pgbouncer with --database, or --readonly'
	run --separate-stderr dbm-freeze --source "$S" --pgbouncer 'host=127.0.0.1 dbname=pgbouncer'
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: --database is required with --pgbouncer'
	# nothing was done to the source
	assert_equal "$(ps_ -c 'SHOW default_transaction_read_only')" off
	assert_equal "$(ps_ -c "SELECT to_regclass('dbm.barrier') IS NULL")" t
}

@test "an invalid --timeout exits 2 naming the option" {
	for v in x -1 ''; do
		run --separate-stderr dbm-freeze --source "$S" --readonly --timeout "$v"
		assert_failure 2
		assert_equal "$output" ""
		assert_equal "${stderr_lines[0]}" "dbm-freeze: error: invalid value \"$v\" for --timeout: expected seconds"
	done
	assert_equal "$(ps_ -c 'SHOW default_transaction_read_only')" off
}

# ------------------------------------------------------------- pgbouncer

# running QUERY: a session of the source runs QUERY now.
running()
{
	dbm_wait_until 10 bash -c "[[ \$(psql '$S' -XAtq -c \"SELECT count(*) FROM pg_stat_activity
		WHERE query = '$1'\") == 1 ]]"
}

# long_write CONNINFO SECS: a write transaction through CONNINFO that stays
# open SECS seconds, in the background (LONG_PID, output $OUT/long.out).
long_write()
{
	psql "$1" -X -v ON_ERROR_STOP=1 -c 'BEGIN' \
		-c "INSERT INTO orders (account_id, port) VALUES (7, -7)" \
		-c "SELECT pg_sleep($2)" -c 'COMMIT' >"$OUT/long.out" 2>&1 3>&- &
	LONG_PID=$!
	running "SELECT pg_sleep($2)"
}


@test "pgbouncer: clients wait while frozen, none fails; the barrier is on the source; --thaw lets them go on" {
	cutover_schema
	dbm_start_pgbouncer "$DB" "$S"
	before=$(ps_ -c 'SELECT pg_current_wal_lsn()')
	run --separate-stderr freeze_pgb
	assert_success
	assert_equal "$stderr" ""
	assert_equal "${#lines[@]}" 1
	printf '%s\n' "$output" >"$OUT/frozen.jsonl"
	jq -e --arg db "$DB" '.type == "frozen" and .method == "pgbouncer" and .database == $db
		and (.lsn | test("^[0-9A-F]+/[0-9A-F]+$")) and (.barrier | type == "number")
		and (.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"))
		and (.at_ms | type == "number") and (.drain_ms | type == "number")' "$OUT/frozen.jsonl"
	[[ "$(jq -r '(keys_unsorted | first)' "$OUT/frozen.jsonl")" == type ]]
	lsn=$(jq -r .lsn "$OUT/frozen.jsonl")
	barrier=$(jq -r .barrier "$OUT/frozen.jsonl")
	# the barrier row, committed before the position given
	assert_equal "$(ps_ -c "SELECT kind FROM dbm.barrier WHERE id = $barrier")" freeze
	assert_equal "$(ps_ -c "SELECT '$lsn'::pg_lsn > '$before'::pg_lsn")" t
	dbm_pgbouncer_paused "$DB"
	# a client arriving now waits, it does not fail
	psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, -1) RETURNING id" \
		>"$OUT/client.out" 2>&1 3>&- &
	CLIENT_PID=$!
	sleep 1
	kill -0 "$CLIENT_PID"
	assert_equal "$(ps_ -c 'SELECT count(*) FROM orders WHERE port = -1')" 0
	run --separate-stderr freeze_pgb --thaw
	assert_success
	assert_equal "$output" '{"type":"thawed","method":"pgbouncer","reason":"thaw"}'
	wait "$CLIENT_PID"
	CLIENT_PID=
	assert_equal "$(cat "$OUT/client.out")" 501
	assert_equal "$(ps_ -c 'SELECT count(*) FROM orders WHERE port = -1')" 1
	run ! dbm_pgbouncer_paused "$DB"
}

@test "pgbouncer: a transaction still open at --timeout makes it thaw and exit 1; the transaction completes" {
	cutover_schema
	dbm_start_pgbouncer "$DB" "$S"
	long_write "$PGB" 5
	SECONDS=0
	run --separate-stderr freeze_pgb --timeout 1
	assert_failure 1
	((SECONDS <= 4))
	assert_equal "${#lines[@]}" 1
	jq -e '.type == "thawed" and .method == "pgbouncer" and .reason == "timeout"
		and .ms >= 1000' <<<"$output"
	assert_equal "${stderr_lines[0]}" 'dbm-freeze: error: transactions still running after 1.0 s: freeze undone'
	# the source takes writes through pgbouncer at once
	run ! dbm_pgbouncer_paused "$DB"
	run -0 timeout 5 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (8, -8) RETURNING port"
	assert_output -- -8
	# no barrier was written
	assert_equal "$(ps_ -c 'SELECT count(*) FROM dbm.barrier')" 0
	# and the long transaction was left alone
	wait "$LONG_PID"
	LONG_PID=
	run cat "$OUT/long.out"
	refute_output --partial ERROR
	assert_line COMMIT
	assert_equal "$(ps_ -c 'SELECT count(*) FROM orders WHERE port = -7')" 1
}

@test "--thaw is idempotent: thawing a database that is not paused succeeds" {
	dbm_start_pgbouncer "$DB" "$S"
	run -0 freeze_pgb
	run -0 freeze_pgb --thaw
	assert_equal "$output" '{"type":"thawed","method":"pgbouncer","reason":"thaw"}'
	# a second thaw (a runbook retrying, or after a timeout already undid it)
	run --separate-stderr freeze_pgb --thaw
	assert_success
	assert_equal "$output" '{"type":"thawed","method":"pgbouncer","reason":"thaw"}'
	run -0 timeout 5 psql "$PGB" -XAtc 'SELECT 1'
}

# ------------------------------------------------------------- read-only

@test "readonly: writes to the source fail while frozen, nothing is lost, rollback makes it writable" {
	cutover_schema
	cutover_copy
	start_forward
	ps_ -c "INSERT INTO orders (account_id, port) SELECT g, -1 FROM generate_series(1, 25) g" \
		-c "UPDATE accounts SET balance = 5 WHERE id <= 10"
	run --separate-stderr dbm-freeze --source "$S" --readonly
	assert_success
	jq -e '.type == "frozen" and .method == "readonly" and (.lsn | test("/"))
		and (.barrier | type == "number")' <<<"$output"
	run psql "$S" -XAtq -v ON_ERROR_STOP=1 -c "INSERT INTO orders (account_id, port) VALUES (1, -2)"
	assert_failure
	assert_output --partial 'cannot execute INSERT in a read-only transaction'
	run psql "$S" -XAtq -v ON_ERROR_STOP=1 -c "UPDATE accounts SET balance = 0"
	assert_failure
	assert_output --partial 'read-only transaction'
	# everything written before the freeze reaches the target
	dbm_wait_until 20 same_tables
	assert_equal "$(pd_ -c 'SELECT count(*) FROM orders WHERE port = -1')" 25
	assert_equal "$(pd_ -c 'SELECT count(*) FROM orders WHERE port = -2')" 0
	# undo before any switch
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --readonly
	assert_success
	assert_equal "$output" '{"type":"rolled_back","stage":"before_switch","primary":"source"}'
	run -0 psql "$S" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, -3) RETURNING port"
	assert_output -- -3
	dbm_wait_until 20 same_tables
}

@test "readonly: --thaw makes the source writable again" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY)'
	run -0 dbm-freeze --source "$S" --readonly
	run ! ps_ -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-freeze --source "$S" --readonly --thaw
	assert_success
	assert_equal "$output" '{"type":"thawed","method":"readonly","reason":"thaw"}'
	run -0 ps_ -c 'INSERT INTO t VALUES (2)'
	assert_equal "$(ps_ -c 'SHOW default_transaction_read_only')" off
}

@test "readonly: a write transaction still open at --timeout makes it thaw and exit 1" {
	cutover_schema
	long_write "$S" 5
	run --separate-stderr dbm-freeze --source "$S" --readonly --timeout 1
	assert_failure 1
	jq -e '.type == "thawed" and .method == "readonly" and .reason == "timeout"' <<<"$output"
	# writable again for new sessions, the transaction in flight untouched
	run -0 ps_ -c "INSERT INTO orders (account_id, port) VALUES (8, -8)"
	assert_equal "$(ps_ -c 'SHOW default_transaction_read_only')" off
	wait "$LONG_PID"
	LONG_PID=
	run cat "$OUT/long.out"
	refute_output --partial ERROR
	assert_equal "$(ps_ -c 'SELECT count(*) FROM orders WHERE port IN (-7, -8)')" 2
}

# session_bg NAME [APPNAME]: a session of the source that stays open
# (pg_sleep), in the background; its pid in NAME_pid, its output in
# $OUT/NAME.out, its first line whether it started read-only.
session_bg()
{
	PGAPPNAME=${2:-psql} psql "$S" -XAtq -c 'SHOW default_transaction_read_only' \
		-c "SELECT pg_sleep(60) /* $1 */" >"$OUT/$1.out" 2>&1 3>&- &
	eval "$1_pid=$!"
	SLEEPERS+=($!)
	running "SELECT pg_sleep(60) /* $1 */"
}

# ended NAME: the session of session_bg NAME was ended by the server.
ended()
{
	local pid_var="$1_pid"
	dbm_wait_until 10 bash -c "! kill -0 ${!pid_var} 2>/dev/null"
	grep -q 'terminating connection due to administrator command' "$OUT/$1.out"
}

@test "readonly: every thaw ends the sessions opened while frozen (they keep refusing writes), not dbm's, not older ones" {
	SLEEPERS=()
	cutover_schema
	cutover_copy
	# --thaw
	run -0 dbm-freeze --source "$S" --readonly
	session_bg during
	session_bg tool dbm-test
	run -0 dbm-freeze --source "$S" --readonly --thaw
	ended during
	assert_equal "$(head -n 1 "$OUT/during.out")" on
	kill -0 "$tool_pid"
	# the timeout's undo: a write transaction from before the freeze keeps
	# it from draining, and is kept
	long_write "$S" 4
	dbm-freeze --source "$S" --readonly --timeout 2 >"$OUT/freeze.out" 2>&1 3>&- &
	local fz=$!
	dbm_wait_until 10 bash -c "[[ \$(psql '$S' -XAtq -c 'SHOW default_transaction_read_only') == on ]]"
	session_bg during2
	local rc=0
	wait "$fz" || rc=$?
	assert_equal "$rc" 1
	ended during2
	wait "$LONG_PID"
	LONG_PID=
	run cat "$OUT/long.out"
	refute_output --partial ERROR
	# a rollback before the switch
	run -0 dbm-freeze --source "$S" --readonly
	session_bg during3
	run -0 dbm-rollback --source "$S" --target "$D" --readonly
	ended during3
	# a thaw of a database that is not read-only ends nothing
	session_bg after
	run -0 dbm-freeze --source "$S" --readonly --thaw
	sleep 0.5
	kill -0 "$after_pid"
	kill -0 "$tool_pid"
	run -0 ps_ -c "INSERT INTO orders (account_id, port) VALUES (8, -8)"
	kill "${SLEEPERS[@]}" 2>/dev/null || true
}

# -------------------------------------------------------------- bad input

@test "a pgbouncer that cannot be reached or a database it does not have exits 2, the source untouched" {
	port=$(_dbm_pgb_free_port)
	run --separate-stderr dbm-freeze --source "$S" --database "$DB" \
		--pgbouncer "host=127.0.0.1 port=$port dbname=pgbouncer user=postgres"
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" "^dbm-freeze: error: could not connect to \".*port=$port.*\": "
	dbm_start_pgbouncer "$DB" "$S"
	run --separate-stderr freeze_pgb --database nope
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" '^dbm-freeze: error: pgbouncer PAUSE "nope": .*no such database'
	run ! dbm_pgbouncer_paused "$DB"
	assert_equal "$(ps_ -c 'SELECT count(*) FROM dbm.barrier')" 0
}

@test "a source that cannot be reached exits 2 and leaves pgbouncer running" {
	dbm_start_pgbouncer "$DB" "$S"
	port=$(_dbm_pgb_free_port)
	run --separate-stderr freeze_pgb --source "host=127.0.0.1 port=$port dbname=x user=postgres password=secret"
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" '^dbm-freeze: error: could not connect to '
	refute_output --partial secret
	[[ "$stderr" != *secret* ]]
	run ! dbm_pgbouncer_paused "$DB"
}
