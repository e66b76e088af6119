#!/usr/bin/env bats
# The runbooks: migrate.sh end to end under load through pgbouncer,
# rollback.sh, status.sh and validate.sh, and migrate.sh killed (SIGKILL)
# at every step then run again: it ends consistent, completed or rolled
# back, every acknowledged write on the side that takes writes, never
# both sides taking them.
#
# Every test gets its own database on both clusters, its own pgbouncer,
# state dir and slot names (helpers/cutover).

bats_require_minimum_version 1.5.0

load helpers/common
load helpers/cutover
load helpers/migrate

CUTOVER_PREFIX=mg
RB=$REPO_ROOT/runbooks

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
	mg_teardown
}

# ------------------------------------------------------- options and usage

@test "--help of migrate.sh, rollback.sh, status.sh and validate.sh; bad settings exit 2" {
	for r in migrate rollback status; do
		run --separate-stderr "$RB/$r.sh" --help
		assert_success
		assert_line --index 0 --regexp "^$r\\.sh - "
		assert_output --partial 'Exit status'
	done
	run --separate-stderr "$RB/migrate.sh" --frobnicate
	assert_failure 2
	assert_equal "$stderr" 'migrate: error: unknown argument "--frobnicate" (see --help)'
	unset DBM_SOURCE DBM_TARGET
	run --separate-stderr "$RB/migrate.sh"
	assert_failure 2
	assert_equal "$stderr" 'migrate: error: DBM_SOURCE is not set (a libpq conninfo string or URI)'
	DBM_SOURCE=$S DBM_TARGET=$D run --separate-stderr "$RB/migrate.sh"
	assert_failure 2
	assert_regex "$stderr" '^migrate: error: no router: '
	printf 'DBM_SOURCE=%s\nDBM_TARGET="%s"\nnonsense\n' "'$S'" "$D" >"$OUT/bad.conf"
	run --separate-stderr "$RB/migrate.sh" --config "$OUT/bad.conf"
	assert_failure 2
	assert_equal "$stderr" "migrate: error: $OUT/bad.conf:3: expected KEY=VALUE"
	DBM_SOURCE=$S DBM_TARGET=$D DBM_ROUTE_CMD=true DBM_JOBS=x run --separate-stderr "$RB/migrate.sh"
	assert_failure 2
	assert_equal "$stderr" 'migrate: error: DBM_JOBS must be a whole number, not "x"'
}

@test "preflight: an unfit pair is reported check by check, exit 1, nothing touched" {
	mg_setup
	ps_ -c 'CREATE TABLE nokey (a int, b text)' -c 'CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)'
	pd_ -c 'CREATE TABLE already_here (id int)'
	run --separate-stderr "$RB/migrate.sh" --preflight-only
	assert_failure 1
	assert_line --regexp '^  FAIL  keys +2 of 6 tables cannot be replicated: public.nokey \(no primary key or replica identity.*public.scratch \(unlogged'
	assert_line --regexp '^  FAIL  target +the target database is not empty \(1 relations\)'
	assert_line --regexp '^  OK    wal_level +logical on both$'
	assert_line --regexp '^  OK    router +pgbouncer entry t_[0-9]+ -> 127.0.0.1:[0-9]+ \(transaction pooling\)$'
	assert_line 'preflight: 2 checks failed'
	# the checks are in the run log too
	jq -e -s '[.[] | select(.type == "check" and .status == "fail") | .check] == ["keys", "target"]' \
		"$OUT/state/run.jsonl"
	# a run stops there: no slot, no schema
	run --separate-stderr "$RB/migrate.sh"
	assert_failure 1
	assert_output --partial 'UNFIT: fix what the preflight says'
	assert_equal "$(ps_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$FSLOT'")" 0
	assert_equal "$(pd_ -c "SELECT to_regclass('public.accounts') IS NULL")" t
	# JSON lines on stdout with --json
	run --separate-stderr "$RB/migrate.sh" --preflight-only --json
	assert_failure 1
	jq -e -s '(.[0].type == "run") and (.[-1] | .type == "summary" and .result == "unfit")' <<<"$output"
}

# ------------------------------------------------------- whole migrations

@test "migrates under pgbench load through pgbouncer: no client fails, pause reported, equal, sequences go on" {
	mg_setup
	write_bench_script
	pgbench -n -c 4 -R 200 -T 15 -f "$OUT/bench.sql" "$PGB" >"$OUT/pgbench.out" 2>&1 3>&- &
	BENCH_PID=$!
	sleep 1
	run --separate-stderr "$RB/migrate.sh"
	printf '%s\n' "$output" >"$OUT/migrate.out"
	assert_success
	assert_output --partial 'MIGRATED: the target is primary'
	assert_line --regexp '^  write pause +[0-9]+ ms$'
	summary=$(grep '"type":"summary"' "$OUT/state/run.jsonl" | tail -n 1)
	jq -e '.result == "migrated" and .exit == 0 and (.pause_ms | type == "number")
		and .rows_copied >= 700 and .validation == "equal" and .checks_failed == 0' <<<"$summary"
	# every step ran once, in order, and is logged started and done
	run jq -r -s 'map(select(.type == "step" and .status == "done") | .step) | join(" ")' "$OUT/state/run.jsonl"
	assert_output 'preflight pre-data copy post-data apply catch-up validate prepare freeze switch reverse watch'
	routes_to "$DST_PORT"
	assert_equal "$(dbm_pgbouncer_db_field "$DB" port)" "$DST_PORT"

	# pgbench ends against the target without a failure
	wait "$BENCH_PID"
	BENCH_PID=
	run cat "$OUT/pgbench.out"
	assert_output --partial 'number of failed transactions: 0 (0.000%)'
	refute_output --partial 'aborted'
	(( $(pd_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT") > 0 ))
	(( $(pd_ -c "SELECT count(*) FROM orders WHERE port = $SRC_PORT") > 0 ))
	# the reverse apply brings the source level: dbm-diff equal after the switch
	dbm_wait_until 30 same_tables
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
	jq -e -s '.[-1] | .type == "summary" and .tables == 4 and .equal == 4' <<<"$output"
	# the target's sequences went on past the source's: no collision
	assert_equal "$(pd_ -c "SELECT min(id) > (SELECT max(id) FROM orders WHERE port = $SRC_PORT)
		FROM orders WHERE port = $DST_PORT")" t
	assert_equal "$(pd_ -c "SELECT min(e.id) > (SELECT max(id) FROM events WHERE note <> 'pgbench $DST_PORT')
		FROM events e WHERE note = 'pgbench $DST_PORT'")" t
	assert_equal "$(pd_ -c "SELECT min(no) > (SELECT max(no) FROM tickets WHERE what <> 'pgbench $DST_PORT')
		FROM tickets WHERE what = 'pgbench $DST_PORT'")" t
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port())
			RETURNING id > (SELECT max(id) FROM orders WHERE port = $SRC_PORT)"
	assert_output t

	# status.sh: one screen, and JSON
	run --separate-stderr "$RB/status.sh"
	assert_success
	assert_line --regexp '^  phase +switched \(primary: target\)$'
	assert_line --regexp '^  reverse apply +running \(pid [0-9]+\), target -> source'
	assert_line --regexp '^  forward slot +mg_fwd_[0-9]+: active, lag .*, retains .* WAL'
	run --separate-stderr "$RB/status.sh" --json
	assert_success
	jq -e '.type == "status" and .phase == "switched" and .primary == "target" and .frozen == false
		and .forward.running and .reverse.running and (.reverse.slot.retained_bytes | type == "number")
		and (.forward.lag_bytes | type == "number") and .validation.status == "equal"
		and .problems == []' <<<"$output"
	# retained WAL above DBM_WAL_ALARM is a problem: exit 1, named
	DBM_WAL_ALARM=1B run --separate-stderr "$RB/status.sh" --json
	assert_failure 1
	jq -e '.problems | any(test("^slot mg_(fwd|rev)_[0-9]+ retains .* of WAL, above DBM_WAL_ALARM \\(1 B\\): its apply is behind or stopped"))' <<<"$output"
	DBM_WAL_ALARM=lots run --separate-stderr "$RB/status.sh"
	assert_failure 2
	assert_equal "$stderr" 'status: error: DBM_WAL_ALARM must be a size like 10GB or 500MB, not "lots"'
	# validate.sh: equal, a report and a Prometheus file
	DBM_RECHECK_WAIT=1 run --separate-stderr "$RB/validate.sh"
	assert_success
	jq -e '.type == "validate_report" and .status == "equal" and .tables == 4' "$OUT/logs/validate-report.json"
	grep -qx 'dbm_validate_exit_code 0' "$OUT/logs/dbm_validate.prom"
	grep -qx 'dbm_validate_tables{status="equal"} 4' "$OUT/logs/dbm_validate.prom"
	# run again: nothing to do
	run --separate-stderr "$RB/migrate.sh"
	assert_success
	assert_output --partial 'ALREADY MIGRATED'
}

@test "rollback.sh after the switch: every write made on the target is on the source, pgbouncer routes back" {
	mg_setup
	run -0 "$RB/migrate.sh"
	routes_to "$DST_PORT"
	writes_through_pgbouncer 50 after
	assert_equal "$(pd_ -c "SELECT count(*) FROM events WHERE note LIKE 'after %'")" 50
	target_max=$(pd_ -c 'SELECT max(id) FROM orders')

	run --separate-stderr "$RB/rollback.sh"
	assert_success
	assert_output --partial 'ROLLED BACK: the application is on the source again'
	jq -e -s 'map(select(.type == "summary")) | last | .result == "rolled_back" and .stage == "after_switch"
		and (.pause_ms | type == "number")' "$OUT/state/run.jsonl"
	# every write made on the target is on the source
	assert_equal "$(ps_ -c "SELECT count(*) FROM events WHERE note LIKE 'after %'")" 50
	assert_equal "$(ps_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT")" 50
	assert_equal "$(ps_ -c "SELECT count(*) FROM events WHERE note = 'seed 7'")" 0
	for t in "${CUTOVER_TABLES[@]}"; do
		assert_equal "$(dbm_checksum "$S" "$t")" "$(dbm_checksum "$D" "$t")"
	done
	routes_to "$SRC_PORT"
	run ! dbm_pgbouncer_paused "$DB"
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING id > $target_max"
	assert_output t
	run --separate-stderr "$RB/status.sh" --json
	jq -e '.phase == "rolled_back" and .primary == "source" and .forward.running' <<<"$output"
	# and migrate.sh cuts over again
	run -0 "$RB/migrate.sh"
	routes_to "$DST_PORT"
}

@test "a post-switch check that fails rolls back at once: exit 1, nothing lost, back on the source" {
	mg_setup
	start_writer
	DBM_WATCH_SECS=10 DBM_CHECK_CMD='[ -e "$DBM_STATE_DIR/../broken" ] && { echo "orders look wrong"; exit 3; }; exit 0' \
		"$RB/migrate.sh" >"$OUT/migrate.out" 2>&1 3>&- &
	pid=$!
	dbm_wait_until 60 grep -q '"step":"watch","status":"started"' "$OUT/state/run.jsonl"
	sleep 1.5
	touch "$OUT/broken"
	rc=0
	wait "$pid" || rc=$?
	stop_writer
	cat "$OUT/migrate.out"
	assert_equal "$rc" 1
	grep -q 'ROLLED BACK' "$OUT/migrate.out"
	summary=$(grep '"type":"summary"' "$OUT/state/run.jsonl" | tail -n 1)
	jq -e '.result == "rolled_back" and .exit == 1 and (.message | test("check command exited 3: orders look wrong"))' <<<"$summary"
	grep -q '"check":"command","status":"fail"' "$OUT/state/run.jsonl"
	consistent source
	# writes were taken by the target in between, and carried back
	(( $(ps_ -c "SELECT count(*) FROM orders WHERE account_id > 100000 AND port = $DST_PORT") > 0 ))
}

# ------------------------------------------------------- killed and run again

@test "killed at pre-data, run again: completes" { crash_and_rerun pre-data; }
@test "killed at apply, run again: completes" { crash_and_rerun apply; }
@test "killed at catch-up, run again: completes" { crash_and_rerun catch-up; }
@test "killed at validate, run again: completes" { crash_and_rerun validate; }
@test "killed at prepare, run again: completes" { crash_and_rerun prepare; }
@test "killed at freeze, run again: thaws, completes" { crash_and_rerun freeze; }
@test "killed at switch, run again: completes" { crash_and_rerun switch; }
@test "killed at reverse, run again: completes" { crash_and_rerun reverse; }
@test "killed at watch, run again: completes" { crash_and_rerun watch; }
@test "killed during the automatic rollback, run again: finishes rolling back" {
	export DBM_CHECK_CMD='exit 3'
	crash_and_rerun rollback rolled_back
}

@test "killed with its copy, run again: the copy resumes, completes" {
	ps_ -c 'CREATE TABLE big (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000) g"
	# the copy of "big" waits for a lock on the target, taken as soon as the
	# schema is there: the other tables are copied, it is not, when the
	# runbook and its copy are killed
	pd_ >/dev/null 2>&1 3>&- <<-'EOF' &
		DO $$ BEGIN
			FOR i IN 1 .. 10000 LOOP
				EXIT WHEN to_regclass('public.big') IS NOT NULL;
				COMMIT; -- a new transaction sees the tables committed since
				PERFORM pg_sleep(0.002);
			END LOOP;
		END $$;
		BEGIN;
		LOCK TABLE big IN SHARE MODE;
		SELECT pg_sleep(3);
		COMMIT;
	EOF
	LOCKER_PID=$!
	DBM_TEST_CRASH_DELAY=1 crash_and_rerun copy migrated group
	wait "$LOCKER_PID"
	# the copy was cut short and resumed
	jq -e -s 'map(select(.type == "step" and .step == "copy" and .status == "started") | .resume) == [false, true]' \
		"$OUT/state/run.jsonl"
}
@test "killed with its index builds, run again: completes" {
	DBM_TEST_CRASH_DELAY=0.3 crash_and_rerun post-data migrated group
}
@test "killed with its freeze, run again: thaws, completes" { crash_and_rerun freeze migrated group; }
@test "killed with its switch, run again: completes (or rolls back and cuts over again)" {
	DBM_TEST_CRASH_DELAY=0.02 crash_and_rerun switch migrated group
}
@test "killed with its automatic rollback, run again: finishes rolling back" {
	export DBM_CHECK_CMD='exit 3'
	crash_and_rerun rollback rolled_back group
}

@test "DBM_ROUTE_CMD and a read-only freeze; killed with a switch half done, run again: rolls back, cuts over again" {
	ps_ -c "$CUTOVER_SCHEMA"
	dbm_start_pgbouncer "$DB" "$S"
	mg_env
	unset DBM_PGBOUNCER_ADMIN DBM_PGBOUNCER_INI DBM_PGBOUNCER_DB
	cat >"$OUT/route.sh" <<-EOF
		#!/usr/bin/env bash
		# repoint the pgbouncer entry to DBM_ROUTE_TO; slowly when told
		[[ -e "$OUT/slow" ]] && sleep 2
		if [[ \$DBM_ROUTE_TO == target ]]; then port=$DST_PORT; else port=$SRC_PORT; fi
		sed -i "s/^$DB = .*/$DB = host=127.0.0.1 port=\$port dbname=$DB user=postgres/" "$PGB_INI"
		psql "$PGB_ADMIN" -XAtq -c RELOAD >/dev/null
	EOF
	chmod +x "$OUT/route.sh"
	export DBM_ROUTE_CMD=$OUT/route.sh DBM_APP_CONNINFO=$PGB
	touch "$OUT/slow"
	start_writer
	rc=0
	DBM_TEST_CRASH_AT=switch DBM_TEST_CRASH_GROUP=1 DBM_TEST_CRASH_DELAY=1 \
		setsid "$RB/migrate.sh" >"$OUT/first.out" 2>&1 3>&- || rc=$?
	assert_equal "$rc" 137
	# the switch was cut short in the middle of the route command
	assert_equal "$(pd_ -c 'SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1')" switching
	rm "$OUT/slow"
	rc=0
	"$RB/migrate.sh" >"$OUT/second.out" 2>&1 3>&- || rc=$?
	stop_writer
	cat "$OUT/second.out"
	assert_equal "$rc" 0
	grep -q 'a switch was cut short: rolling back to the source, then cutting over again' "$OUT/second.out"
	jq -e -s 'map(select(.type == "step" and .status == "done") | .step) | index("rollback") < index("switch")' \
		"$OUT/state/run.jsonl"
	consistent target failures-allowed
	# the source is writable again (rolled back, then no longer frozen for clients: not routed)
	assert_equal "$(pd_ -c 'SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1')" switched
}
