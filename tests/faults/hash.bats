#!/usr/bin/env bats
# Faults during dbm-hash and dbm-diff (also run from cron, so they must
# fail cleanly and leave nothing behind): either server crashed and
# restarted mid-read, SIGKILL at seeded random points.  A failed comparison
# is exit 2 with one error line naming the table and no summary line (never
# a verdict from half a read); a killed one leaves no temporary file and no
# session; the next run after recovery finds the databases equal.
# (Terminated sessions: tests/dbm-hash.bats and tests/dbm-diff.bats.)

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/faults

setup_file()
{
	dbm_start_clusters
	local db=fh
	psql_src -c "CREATE DATABASE $db"
	psql_dst -c "CREATE DATABASE $db"
	export S=${SRC/dbname=postgres/dbname=$db} D=${DST/dbname=postgres/dbname=$db}
	# the same rows on both sides; big enough that a read takes a while
	for c in "$S" "$D"; do
		psql "$c" -XAtq -v ON_ERROR_STOP=1 \
			-c "CREATE TABLE wide (id int PRIMARY KEY, a text, b bigint, c timestamptz)" \
			-c "INSERT INTO wide SELECT g, repeat(md5(g::text), 4), g * 7,
				timestamptz '2020-01-01' + g * interval '1 s' FROM generate_series(1, 600000) g" \
			-c "CREATE TABLE small (id int PRIMARY KEY, v text)" \
			-c "INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 100) g" \
			-c "CHECKPOINT" &
	done
	wait
	# (the test clusters commit asynchronously: a crash right after the
	# load would lose its end; the checkpoint makes it durable)
}

teardown_file()
{
	dbm_stop_clusters
}

setup()
{
	OUT=$BATS_TEST_TMPDIR
	fault_seed
	export TMPDIR=$OUT/tmp
	mkdir -p "$TMPDIR"
}

# reading: both sides have a COPY of table wide running.
reading()
{
	[[ "$(psql "$S" -XAtq -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%wide%'
		AND application_name LIKE 'dbm-%'")" -ge 1 ]]
}

# fails_cleanly SIDE: dbm-diff ran into the crash of SIDE: exit 2, one
# error line naming the table, no summary.
diff_when_crashed()
{
	local dir=$1
	dbm-diff --source "$S" --target "$D" --jobs 2 >"$OUT/diff.out" 2>"$OUT/diff.err" 3>&- &
	local pid=$! rc=0
	dbm_wait_until 60 reading
	fault_restart "$dir" immediate 1
	wait "$pid" || rc=$?
	cat "$OUT/diff.err" >&2
	assert_equal "$rc" 2
	assert_equal "$(grep -c ': error: ' "$OUT/diff.err")" 1
	grep -qE '^dbm-diff: error: .*public\.wide' "$OUT/diff.err"
	assert_equal "$(grep -c '"type":"summary"' "$OUT/diff.out")" 0
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
	assert_equal "$(jq -c -s '.[-1] | [.type, .tables, .equal]' <<<"$output")" '["summary",2,2]'
}

@test "dbm-diff while the source crashes and restarts: exit 2 naming the table, no verdict; the next run: equal" {
	diff_when_crashed "$SRC_DIR"
}

@test "dbm-diff while the target crashes and restarts: exit 2 naming the table, no verdict; the next run: equal" {
	diff_when_crashed "$DST_DIR"
}

@test "dbm-hash and dbm-diff SIGKILLed at random points: no temporary file and no session left behind" {
	local i pid
	for i in 1 2 3; do
		dbm-diff --source "$S" --target "$D" --jobs 2 >/dev/null 2>&1 3>&- &
		pid=$!
		sleep "$(fault_delay 100 1500)"
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		dbm-hash --rows --source "$S" >/dev/null 2>&1 3>&- &
		pid=$!
		sleep "$(fault_delay 100 1000)"
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	assert_equal "$(ls -A "$TMPDIR")" ""
	# the servers end the sessions of a dead client
	gone() { [[ "$(psql "$1" -XAtq -c "SELECT count(*) FROM pg_stat_activity
		WHERE application_name LIKE 'dbm-%'")" == 0 ]]; }
	dbm_wait_until 30 gone "$S"
	dbm_wait_until 30 gone "$D"
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
}
