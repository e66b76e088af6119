#!/usr/bin/env bats
# dbm-rollback: back to the source, losing nothing. Before the switch the
# source is only frozen: thaw it. After the switch: pause the target, wait
# until the reverse apply has carried its writes to the source, copy the
# sequences back, repoint and resume.
#
# Every test gets its own database on both clusters, its own pgbouncer and
# its own slot names (helpers/cutover).

bats_require_minimum_version 1.5.0

load helpers/common
load helpers/cutover

CUTOVER_PREFIX=rb

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

# freeze_and_switch: a cutover through pgbouncer; the frozen and switched
# lines in $OUT.
freeze_and_switch()
{
	freeze_pgb >"$OUT/frozen.jsonl"
	switch_pgb --freeze "$OUT/frozen.jsonl" --timeout 20 >"$OUT/switched.jsonl"
	jq -e '.type == "switched"' "$OUT/switched.jsonl" >/dev/null
}

# writes_through_pgbouncer N TAG: N transactions through pgbouncer, each
# inserting through all three sequences and updating in place; a delete.
writes_through_pgbouncer()
{
	psql "$PGB" -XAtq -v ON_ERROR_STOP=1 <<-EOF
		SELECT format('BEGIN; INSERT INTO orders (account_id, port) VALUES (%s, inet_server_port());
		  UPDATE accounts SET balance = balance + %s WHERE id = %s;
		  INSERT INTO events (note) VALUES (%L); INSERT INTO tickets (what) VALUES (%L); COMMIT;',
		  1 + g % 100, g, 1 + g % 100, '$2 ' || g, '$2 ' || g)
		FROM generate_series(1, $1) g \gexec
		DELETE FROM events WHERE note = 'seed 7';
	EOF
}

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-rollback --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-rollback moves the application back to the source, losing nothing.'
	assert_line '  dbm-rollback [OPTION]... --source=CONNINFO --target=CONNINFO'
	assert_output --partial '--pgbouncer-source=CONNINFO'
	assert_output --partial '--readonly'
	assert_output --partial 'Exit status: 0 rolled back, 1 the reverse apply did not catch up in time'
	run -0 dbm-rollback -h
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-rollback --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-rollback \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-rollback -V
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --readonly --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" '^dbm-rollback: .*--frobnicate'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-rollback --help" for more information.'
}

@test "--source and --target are required, from options or DBM_SOURCE and DBM_TARGET" {
	run --separate-stderr dbm-rollback --target "$D" --readonly
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: --source is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-rollback --help" for more information.'
	run --separate-stderr dbm-rollback --source "$S" --readonly
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: --target is required'
	# the environment supplies them (nothing was frozen: a no-op thaw)
	DBM_SOURCE=$S DBM_TARGET=$D run --separate-stderr dbm-rollback --readonly
	assert_success
	assert_equal "$output" '{"type":"rolled_back","stage":"before_switch","primary":"source"}'
}

@test "the router is required: --pgbouncer with --pgbouncer-ini and --database, --exec, or --readonly" {
	run --separate-stderr dbm-rollback --source "$S" --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: give --pgbouncer with --pgbouncer-ini and --database, --exec, or --readonly'
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --pgbouncer 'dbname=pgbouncer' --database app
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: --pgbouncer-ini is required with --pgbouncer'
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --pgbouncer 'dbname=pgbouncer' \
		--pgbouncer-ini "$OUT/x.ini"
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: --database is required with --pgbouncer'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-rollback --help" for more information.'
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --readonly --timeout x
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-rollback: error: invalid value "x" for --timeout: expected seconds'
}

@test "--pgbouncer and --exec together are a usage error, as for dbm-switch" {
	run --separate-stderr dbm-rollback --source "$S" --target "$D" --exec "touch '$OUT/ran'" \
		--pgbouncer 'dbname=pgbouncer' --pgbouncer-ini "$OUT/x.ini" --database app
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" '^dbm-rollback: error: give .*--exec'
	[[ ! -e "$OUT/ran" ]]
}

# ------------------------------------------------------------- rollbacks

@test "before the switch: the source is thawed, a waiting client goes on at once" {
	cutover_setup
	run -0 freeze_pgb
	dbm_pgbouncer_paused "$DB"
	psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING port" \
		>"$OUT/client.out" 2>&1 3>&- &
	CLIENT_PID=$!
	run --separate-stderr rollback_pgb
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$output" '{"type":"rolled_back","stage":"before_switch","primary":"source"}'
	run ! dbm_pgbouncer_paused "$DB"
	# the client that waited, and a new one, right away, on the source
	SECONDS=0
	wait "$CLIENT_PID"
	CLIENT_PID=
	assert_equal "$(cat "$OUT/client.out")" "$SRC_PORT"
	run -0 timeout 5 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (2, inet_server_port()) RETURNING port"
	assert_output "$SRC_PORT"
	((SECONDS <= 3))
	assert_equal "$(dbm_pgbouncer_db_field "$DB" port)" "$SRC_PORT"
	# the forward stream goes on
	dbm_wait_until 20 same_tables
}

@test "after the switch: every write made on the target is carried back, sequences too, routed to the source" {
	cutover_setup
	writes_through_pgbouncer 20 before
	run -0 freeze_and_switch
	routes_to "$DST_PORT"
	start_reverse
	writes_through_pgbouncer 50 after
	assert_equal "$(pd_ -c "SELECT count(*) FROM events WHERE note LIKE 'after %'")" 50
	target_max=$(pd_ -c 'SELECT max(id) FROM orders')

	run --separate-stderr rollback_pgb
	assert_equal "$stderr" ""
	assert_success
	assert_equal "${#lines[@]}" 1
	jq -e '.type == "rolled_back" and .stage == "after_switch" and .primary == "source"
		and (.lsn | test("/")) and .applied_by == "position" and .sequences == 3
		and (.pause_ms | type == "number")' <<<"$output"
	# every row of the target is on the source
	assert_equal "$(ps_ -c "SELECT count(*) FROM events WHERE note LIKE 'after %'")" 50
	assert_equal "$(ps_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT")" 50
	assert_equal "$(ps_ -c "SELECT count(*) FROM events WHERE note = 'seed 7'")" 0
	for t in "${CUTOVER_TABLES[@]}"; do
		assert_equal "$(ps_ -c "SELECT count(*) FROM $t")" "$(pd_ -c "SELECT count(*) FROM $t")"
		assert_equal "$(dbm_checksum "$S" "$t")" "$(dbm_checksum "$D" "$t")"
	done
	# recorded on the target
	assert_equal "$(pd_ -c 'SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1')" rolled_back
	# pgbouncer routes to the source again, nothing paused
	routes_to "$SRC_PORT"
	run ! dbm_pgbouncer_paused "$DB"
	assert_equal "$(dbm_pgbouncer_db_field "$DB" port)" "$SRC_PORT"
	grep -Eq "^$DB = .*port=$SRC_PORT( |$)" "$PGB_INI"
	# the source's sequences are past what the target handed out
	for seq in orders_id_seq events_id_seq ticket_no; do
		(( $(ps_ -c "SELECT last_value FROM $seq") >= $(pd_ -c "SELECT last_value FROM $seq") ))
	done
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING id > $target_max"
	assert_output t
	run -0 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO events (note) VALUES ('x') RETURNING id > (SELECT max(id) FROM events WHERE note <> 'x')" \
		-c "INSERT INTO tickets (what) VALUES ('x') RETURNING no > (SELECT max(no) FROM tickets WHERE what <> 'x')"
	assert_output $'t\nt'
}

@test "forward and reverse never echo: after a rollback a new cutover works and no row is doubled" {
	cutover_setup
	run -0 freeze_and_switch
	start_reverse
	writes_through_pgbouncer 10 first
	run -0 rollback_pgb
	jq -e '.stage == "after_switch"' <<<"$output"
	# back on the source: writes flow forward again
	writes_through_pgbouncer 10 back
	run -0 freeze_and_switch
	jq -e --arg rs "$RSLOT" '.reverse_slot == $rs and .applied_by == "position"' "$OUT/switched.jsonl"
	routes_to "$DST_PORT"
	writes_through_pgbouncer 10 second
	# both streams running and idle: the same rows on both sides, once
	dbm_wait_until 20 same_tables
	sleep 2
	for t in "${CUTOVER_TABLES[@]}"; do
		assert_equal "$(ps_ -c "SELECT count(*) FROM $t")" "$(pd_ -c "SELECT count(*) FROM $t")"
		assert_equal "$(dbm_checksum "$S" "$t")" "$(dbm_checksum "$D" "$t")"
	done
	assert_equal "$(pd_ -c 'SELECT count(*) FROM orders')" 530
	assert_equal "$(pd_ -c 'SELECT count(*) - count(DISTINCT id) FROM orders')" 0
	for tag in first back second; do
		assert_equal "$(pd_ -c "SELECT count(*) FROM events WHERE note LIKE '$tag %'")" 10
		assert_equal "$(ps_ -c "SELECT count(*) FROM events WHERE note LIKE '$tag %'")" 10
	done
	# each account got each update exactly once
	assert_equal "$(pd_ -c 'SELECT sum(balance) FROM accounts')" $((3 * 55))
	# neither apply failed
	assert_equal "$(cat "$OUT/forward.err" "$OUT/reverse.err")" ""
	kill -0 "$FWD_PID"
	kill -0 "$REV_PID"
}

@test "after the switch without the reverse apply: exit 1 at --timeout, the target stays primary and resumed" {
	cutover_setup
	run -0 freeze_and_switch
	writes_through_pgbouncer 5 after
	cp "$PGB_INI" "$OUT/ini.before"
	SECONDS=0
	run --separate-stderr rollback_pgb --timeout 1
	assert_regex "${stderr_lines[0]}" '^dbm-rollback: error: the source has not applied the target up to [0-9A-F]+/[0-9A-F]+ within 1\.0 s \(is the reverse apply running\?\): the target stays primary$'
	assert_failure 1
	((SECONDS <= 5))
	assert_equal "$output" ""
	cmp "$PGB_INI" "$OUT/ini.before"
	run ! dbm_pgbouncer_paused "$DB"
	run -0 timeout 5 psql "$PGB" -XAtq -v ON_ERROR_STOP=1 \
		-c "INSERT INTO orders (account_id, port) VALUES (1, inet_server_port()) RETURNING port"
	assert_output "$DST_PORT"
	assert_equal "$(pd_ -c 'SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1')" switched
	# once the reverse apply runs, the same rollback goes through, nothing lost
	start_reverse
	run -0 rollback_pgb --timeout 20
	jq -e '.stage == "after_switch"' <<<"$output"
	assert_equal "$(ps_ -c "SELECT count(*) FROM orders WHERE port = $DST_PORT")" 6
	routes_to "$SRC_PORT"
}

# -------------------------------------------------------------- bad input

@test "a target that cannot be reached exits 2, the router untouched" {
	dbm_start_pgbouncer "$DB" "$S"
	cp "$PGB_INI" "$OUT/ini.before"
	port=$(_dbm_pgb_free_port)
	run --separate-stderr dbm-rollback --source "$S" --pgbouncer "$PGB_ADMIN" \
		--pgbouncer-ini "$PGB_INI" --database "$DB" \
		--target "host=127.0.0.1 port=$port dbname=x user=postgres password=secret"
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[0]}" '^dbm-rollback: error: could not connect to '
	[[ "$stderr" != *secret* ]]
	cmp "$PGB_INI" "$OUT/ini.before"
	run ! dbm_pgbouncer_paused "$DB"
}
