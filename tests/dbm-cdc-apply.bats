#!/usr/bin/env bats
# dbm-cdc-apply: apply the changes of a pgoutput slot (made by dbm-snapshot
# --slot) to the target exactly once: source transactions whole and in
# commit order, grouped into target transactions that also write the
# position to dbm.apply_position; --print shows the normalized stream.
#
# Every test gets its own database on both clusters and its own slot name
# (setup); teardown stops what a test left running and drops its slots.

bats_require_minimum_version 1.5.0

load helpers/common

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
	psql_src -c "CREATE DATABASE $DB" &
	psql_dst -c "CREATE DATABASE $DB"
	wait $!
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
	SLOT="cdc_$BATS_TEST_NUMBER"
	unset DBM_SOURCE DBM_TARGET
}

teardown()
{
	local p
	if [[ -n "${SESSION_PID:-}" ]]; then
		exec 7>&- || true
		kill "$SESSION_PID" 2>/dev/null || true
	fi
	for p in ${WRITER_PID:-} ${APPLY_PID:-} ${APPLY2_PID:-}; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	drop_slots || true
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }
both() { ps_ "$@" && pd_ "$@"; }

# Drop every slot of this test's database (ending the sessions that hold
# them): a leftover slot holds WAL.
drop_slots()
{
	local i
	for i in $(seq 1 50); do
		psql_src -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = '$DB' AND active_pid IS NOT NULL" >/dev/null 2>&1 || true
		psql_src -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = '$DB' AND NOT active" >/dev/null 2>&1 || true
		[[ "$(psql_src -c "SELECT count(*) FROM pg_replication_slots WHERE database = '$DB'")" == 0 ]] && return 0
		sleep 0.1
	done
	return 1
}

pre_data() { pg_dump --section=pre-data "$S" | psql "$D" -XAtq -v ON_ERROR_STOP=1 >/dev/null; }
post_data() { pg_dump --section=post-data "$S" | psql "$D" -XAtq -v ON_ERROR_STOP=1 >/dev/null; }

# snap [OPTION]...: dbm-snapshot with this test's slot; the copy must work.
snap()
{
	dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" "$@" >"$OUT/snap" 2>"$OUT/snap.err"
	[[ ! -s "$OUT/snap.err" ]]
	jq -e -s '.[0].type == "snapshot" and .[-1].type == "done"' "$OUT/snap" >/dev/null
}

# The current WAL insert position of the source: at or after the end of
# every commit made so far (the test clusters commit asynchronously, so
# pg_current_wal_lsn() may still be behind the last commit).
src_lsn() { ps_ -c 'SELECT pg_current_wal_insert_lsn()'; }

# apply [OPTION]...: dbm-cdc-apply from this test's slot; stdout in $OUT/apply.
apply()
{
	run --separate-stderr timeout 60 dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" "$@"
	printf '%s\n' "$output" >"$OUT/apply"
	[[ -z "$stderr" ]] || echo "dbm-cdc-apply stderr: $stderr" >&2
}

# apply_to LSN [OPTION]...: apply up to LSN: exit 0, nothing on stderr,
# a stopped line last, no change that found no row.
apply_to()
{
	local lsn=$1
	shift
	apply --stop-at-lsn "$lsn" "$@"
	assert_success
	assert_equal "$stderr" ""
	jq -e -s '.[-1] | .type == "stopped" and .reason == "lsn" and .missed == 0' "$OUT/apply" >/dev/null
}

# migrated TABLE...: dbm-diff finds the databases equal (exit 0, nothing
# differing), and the independent checksum of every TABLE is the same.
migrated()
{
	local t
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	printf '%s\n' "$output" >"$OUT/diff"
	if [[ $status -ne 0 ]]; then
		echo "dbm-diff exit $status: $output $stderr" >&2
		return 1
	fi
	jq -e -s '.[-1] | .type == "summary" and .different == 0 and .missing == 0 and .extra == 0 and
		.rows_missing == 0 and .rows_extra == 0 and .rows_changed == 0' "$OUT/diff" >/dev/null
	for t in "$@"; do
		assert_equal "$(dbm_checksum "$D" "$t")" "$(dbm_checksum "$S" "$t")"
	done
}

# The stored position of this test's stream ("" when there is none).
position() { pd_ -c "SELECT lsn FROM dbm.apply_position WHERE stream = '$SLOT'" 2>/dev/null || true; }

# the target's server log from log_mark on
log_mark() { LOG_POS_D=$(stat -c %s "$DST_DIR/postgres.log"); }
log_dst() { tail -c +$((LOG_POS_D + 1)) "$DST_DIR/postgres.log"; }

# The target's server log from log_mark on, lines of the applying session
# only (the one writing the position).
applier_log()
{
	local pid
	log_dst >"$OUT/all.log"
	pid=$(grep -m1 'apply_position AS p' "$OUT/all.log" | grep -o '\[[0-9]*\]')
	grep -F "$pid" "$OUT/all.log"
}

# lsn_le A B: A <= B as LSNs.
lsn_le() { [ "$(ps_ -c "SELECT '$1'::pg_lsn <= '$2'::pg_lsn")" = t ]; }

no_applier_on_target() { [ "$(pd_ -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbm-cdc-apply'")" = 0 ]; }

slot_active() { [ "$(psql_src -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'")" = "$1" ]; }

# Changes of a --print output without positions: op, table, key, new, old.
changes() { jq -c 'select(.type == "change") | [.op, .table, .key, .new, .old]' "$1"; }

# Start a pgbench writer on the source running SCRIPT for SECS at RATE
# transactions a second with CLIENTS clients; WRITER_PID is its pid.
start_writer()
{
	printf '%s\n' "$1" >"$OUT/writer.sql"
	pgbench -n -f "$OUT/writer.sql" -T "$2" -R "$3" -c "${4:-1}" "$S" >"$OUT/writer.out" 2>&1 3>&- &
	WRITER_PID=$!
}
wait_writer()
{
	wait "$WRITER_PID"
	WRITER_PID=
}

# A psql session kept open across steps: session_open CONN, session_send
# SQL, session_close.
session_open()
{
	SESSION_FIFO=$OUT/session.fifo
	rm -f "$SESSION_FIFO"
	mkfifo "$SESSION_FIFO"
	psql "$1" -XAtq -v ON_ERROR_STOP=1 <"$SESSION_FIFO" >"$OUT/session.out" 2>&1 3>&- &
	SESSION_PID=$!
	exec 7>"$SESSION_FIFO"
}
session_send() { printf '%s\n' "$1" >&7; }
session_close()
{
	exec 7>&-
	wait "$SESSION_PID"
	SESSION_PID=
}

# A loopback port nothing listens on.
closed_port()
{
	local p i
	for i in $(seq 1 100); do
		p=$((RANDOM % 20000 + 40000))
		if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-cdc-apply --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-cdc-apply applies a change stream to a target PostgreSQL database.'
	assert_line '  dbm-cdc-apply [OPTION]... --slot=NAME --source=CONNINFO --target=CONNINFO'
	assert_line '  dbm-cdc-apply [OPTION]... --slot=NAME --source=CONNINFO --print'
	for opt in --source=CONNINFO --target=CONNINFO --slot=NAME --publication=NAME --stream=NAME \
		--stop-at-lsn=LSN --until-idle=SECS --batch-rows=N --batch-ms=MS --print --metrics-file=PATH \
		--progress-interval=SECS --dbm-schema=NAME --version --help; do
		assert_output --partial -- "$opt"
	done
	assert_output --partial 'SIGINT or SIGTERM'
	run -0 dbm-cdc-apply -h
	assert_line --index 0 'dbm-cdc-apply applies a change stream to a target PostgreSQL database.'
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-cdc-apply --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-cdc-apply \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-cdc-apply -V
	assert_output --regexp '^dbm-cdc-apply \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" '^dbm-cdc-apply: .*--frobnicate'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-cdc-apply --help" for more information.'
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm'")" 0
}

@test "--slot is required" {
	run --separate-stderr dbm-cdc-apply --source "$S" --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: --slot is required (or --kafka, or an input FILE, "-" for stdin)'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-cdc-apply --help" for more information.'
	run --separate-stderr dbm-cdc-apply --print --source "$S"
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: --slot is required (or --kafka, or an input FILE, "-" for stdin)'
}

@test "--source is required, from the option or DBM_SOURCE" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-cdc-apply --slot "$SLOT" --target "$D" --until-idle 1
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: --source is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-cdc-apply --help" for more information.'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	DBM_SOURCE=$S run --separate-stderr dbm-cdc-apply --slot "$SLOT" --target "$D" --stop-at-lsn "$(src_lsn)"
	assert_success
	jq -e '.type == "stopped" and .applied == 1' <<<"${lines[-1]}"
	migrated t
}

@test "--target is required unless --print, from the option or DBM_TARGET" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-cdc-apply --slot "$SLOT" --source "$S" --until-idle 1
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: --target is required (or --print)'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-cdc-apply --help" for more information.'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	DBM_TARGET=$D run --separate-stderr dbm-cdc-apply --slot "$SLOT" --source "$S" --stop-at-lsn "$(src_lsn)"
	assert_success
	jq -e '.type == "stopped" and .applied == 1' <<<"${lines[-1]}"
	migrated t
}

@test "invalid --stop-at-lsn, --until-idle, --batch-rows, --batch-ms and --progress-interval exit 2 naming the option" {
	for args in "--stop-at-lsn=x" "--stop-at-lsn=0/0" "--stop-at-lsn=1/" "--until-idle=0" "--until-idle=soon" \
		"--batch-rows=0" "--batch-rows=ten" "--batch-ms=-1" "--progress-interval=0"; do
		run --separate-stderr dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" "$args"
		assert_failure 2
		assert_equal "$output" ""
		opt=${args%%=*}
		value=${args#*=}
		[[ "${stderr_lines[0]}" == "dbm-cdc-apply: error: invalid value \"$value\" for $opt"* ]]
		assert_equal "${stderr_lines[1]}" 'Try "dbm-cdc-apply --help" for more information.'
	done
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm'")" 0
}

# ------------------------------------------------------------ real runs

@test "snapshot and apply while pgbench writes: equal, insert-only pgbench_history included; progress lines and metrics" {
	pgbench -i -s 1 -q "$S" >/dev/null 2>&1
	pre_data
	pgbench -c 2 -T 8 "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	WRITER_PID=$!
	sleep 1
	snap --jobs 2
	post_data
	dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --progress-interval 1 \
		--metrics-file "$OUT/metrics" >"$OUT/apply1" 2>"$OUT/apply1.err" 3>&- &
	APPLY_PID=$!
	wait_writer
	grep -q 'number of failed transactions: 0' "$OUT/pgbench.out"
	lsn=$(src_lsn)
	# SIGTERM: the transaction in hand is finished, a stopped line, exit 0
	kill -TERM "$APPLY_PID"
	rc=0
	wait "$APPLY_PID" || rc=$?
	APPLY_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/apply1.err")" ""
	jq -e -s '.[-1] | .type == "stopped" and .reason == "signal" and .missed == 0 and .applied > 0' "$OUT/apply1"
	assert_equal "$(jq -s 'map(select(.type == "stopped")) | length' "$OUT/apply1")" 1
	# a progress line every second while it ran
	[ "$(jq -s 'map(select(.type == "progress")) | length' "$OUT/apply1")" -ge 4 ]
	jq -e -s 'map(select(.type == "progress")) | all(.applied >= 0 and .transactions >= 0 and
		(.lsn | test("^[0-9A-F]+/[0-9A-F]+$")) and .lag_bytes >= 0 and .rate >= 0) and
		(map(.applied) | . == sort)' "$OUT/apply1"
	# the metrics file in Prometheus text format
	grep -qx '# TYPE dbm_apply_rows_total counter' "$OUT/metrics"
	grep -qx '# TYPE dbm_apply_lag_bytes gauge' "$OUT/metrics"
	grep -Eqx "dbm_apply_rows_total\\{stream=\"$SLOT\"\\} [0-9]+" "$OUT/metrics"
	grep -Eqx "dbm_apply_lag_bytes\\{stream=\"$SLOT\"\\} [0-9]+" "$OUT/metrics"
	assert_equal "$(grep -E "^dbm_apply_rows_total" "$OUT/metrics" | awk '{ print $2 }')" \
		"$(jq -s 'map(select(.type == "stopped"))[0].applied' "$OUT/apply1")"
	[ ! -e "$OUT/metrics.tmp" ]

	# a restart continues to the position taken after pgbench ended
	apply_to "$lsn" --metrics-file "$OUT/metrics2"
	stopped=$(tail -n 1 "$OUT/apply")
	lsn_le "$lsn" "$(jq -r .lsn <<<"$stopped")"
	assert_equal "$(grep -E "^dbm_apply_rows_total" "$OUT/metrics2" | awk '{ print $2 }')" "$(jq .applied <<<"$stopped")"
	grep -Eqx "dbm_apply_lag_bytes\\{stream=\"$SLOT\"\\} [0-9]+" "$OUT/metrics2"
	migrated pgbench_accounts pgbench_branches pgbench_tellers pgbench_history
	[ "$(ps_ -c 'SELECT count(*) FROM pgbench_history')" -gt 1000 ]
}

@test "killed with SIGKILL several times mid-stream and restarted: nothing lost, nothing applied twice" {
	both -c 'CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)' \
		-c 'CREATE TABLE events (id bigserial PRIMARY KEY, k int, note text)'
	ps_ -c 'INSERT INTO counters VALUES (1, 0)'
	snap
	start_writer '\set k random(1, 1000)
BEGIN;
UPDATE counters SET n = n + 1 WHERE id = 1;
INSERT INTO events (k, note) VALUES (:k, repeat($$x$$, :k % 50));
END;' 7 400 2
	prev=0/0
	for i in 1 2 3 4; do
		dbm_wait_until 10 slot_active f
		dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --batch-rows 5 \
			>"$OUT/apply.$i" 2>"$OUT/apply.$i.err" 3>&- &
		APPLY_PID=$!
		sleep "0.$((RANDOM % 6 + 4))"
		kill -KILL "$APPLY_PID"
		wait "$APPLY_PID" || true
		APPLY_PID=
		assert_equal "$(cat "$OUT/apply.$i.err")" ""
		# every committed target transaction holds whole source
		# transactions: as many events as counter increments
		dbm_wait_until 10 no_applier_on_target
		n=$(pd_ -c 'SELECT n FROM counters')
		assert_equal "$(pd_ -c 'SELECT count(*) FROM events')" "$n"
		pos=$(position)
		echo "kill $i: counter $n at $pos" >&2
		[ -n "$pos" ]
		lsn_le "$prev" "$pos"
		prev=$pos
		# the slot is confirmed no further than what the target committed
		lsn_le "$(psql_src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")" "$pos"
	done
	# the kills came while the source was still being written
	[ "$(pd_ -c 'SELECT n FROM counters')" -gt 0 ]
	wait_writer
	# (usually the last kill leaves some behind; on a loaded machine the
	# writer may be slower than the apply: either way the rest is applied)
	echo "after the kills: $(pd_ -c 'SELECT n FROM counters') of $(ps_ -c 'SELECT n FROM counters')" >&2
	dbm_wait_until 10 slot_active f
	apply_to "$(src_lsn)" --batch-rows 5
	assert_equal "$(pd_ -c 'SELECT n FROM counters')" "$(ps_ -c 'SELECT n FROM counters')"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM events')" "$(ps_ -c 'SELECT n FROM counters')"
	migrated counters events
}

@test "SIGTERM in the middle of a large source transaction finishes it, commits, prints a stopped line and exits 0" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	snap
	# the target holds the apply half way through the transaction for a
	# moment (a trigger that fires even for the apply's replica role), so
	# the signal surely lands inside it, however loaded the machine
	pd_ -c "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS
			\$\$ BEGIN IF NEW.id = 75000 THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END \$\$" \
		-c "CREATE TRIGGER hold BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION hold()" \
		-c "ALTER TABLE t ENABLE ALWAYS TRIGGER hold"
	ps_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 150000) g"
	ps_ -c "INSERT INTO t VALUES (0, 'after')"
	dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" >"$OUT/apply" 2>"$OUT/apply.err" 3>&- &
	APPLY_PID=$!
	in_big_txn()
	{
		[ "$(pd_ -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbm-cdc-apply'
			AND backend_xid IS NOT NULL AND (query LIKE 'INSERT INTO public.t %' OR query LIKE 'COPY public.t %')")" = 1 ] &&
			[ "$(pd_ -c 'SELECT count(*) FROM t')" = 0 ]
	}
	dbm_wait_until 20 in_big_txn
	kill -TERM "$APPLY_PID"
	rc=0
	wait "$APPLY_PID" || rc=$?
	APPLY_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/apply.err")" ""
	run jq -c 'select(.type != "progress")' "$OUT/apply"
	assert_equal "${#lines[@]}" 1
	echo "stopped line: ${lines[0]}" >&2
	jq -e '.type == "stopped" and .reason == "signal" and .applied == 150000 and .transactions == 1' <<<"${lines[0]}"
	# the whole transaction, and nothing after it
	assert_equal "$(pd_ -c 'SELECT count(*), count(*) FILTER (WHERE id = 0) FROM t')" '150000|0'
	lsn_le "$(position)" "$(jq -r .lsn <<<"${lines[0]}")"
	apply_to "$(src_lsn)"
	jq -e -s '.[-1].applied == 1' "$OUT/apply"
	migrated t
}

@test "--stop-at-lsn applies every transaction committed up to the LSN and none after" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)'
	ps_ -c 'INSERT INTO t VALUES (2)'
	# other WAL between the last commit and the stop position
	ps_ -c "SELECT pg_logical_emit_message(false, 'spacer', 'x')" >/dev/null
	lsn=$(src_lsn)
	ps_ -c 'INSERT INTO t VALUES (3)'
	apply_to "$lsn"
	assert_equal "$(pd_ -c 'SELECT string_agg(id::text, $$,$$ ORDER BY id) FROM t')" '1,2'
	stopped=$(tail -n 1 "$OUT/apply")
	jq -e '.applied == 2 and .transactions == 2' <<<"$stopped"
	lsn_le "$lsn" "$(jq -r .lsn <<<"$stopped")"
	pos=$(position)
	lsn_le "$pos" "$lsn"
	# again: nothing left to do up to there
	apply_to "$lsn"
	jq -e -s '.[-1].applied == 0' "$OUT/apply"
	assert_equal "$(position)" "$pos"
	apply_to "$(src_lsn)"
	jq -e -s '.[-1].applied == 1' "$OUT/apply"
	migrated t
}

@test "--until-idle stops after SECS without a source transaction, exit 0" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)' -c 'INSERT INTO t VALUES (2)'
	start=$SECONDS
	apply --until-idle 1
	assert_success
	assert_equal "$stderr" ""
	[ $((SECONDS - start)) -le 10 ]
	jq -e -s '.[-1] | .type == "stopped" and .reason == "idle" and .applied == 2 and .transactions == 2 and .missed == 0' "$OUT/apply"
	migrated t
	# a write while it waits is applied, and the wait starts again
	dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --until-idle 2 >"$OUT/apply2" 2>"$OUT/apply2.err" 3>&- &
	APPLY_PID=$!
	sleep 1
	ps_ -c 'INSERT INTO t VALUES (3)'
	rc=0
	wait "$APPLY_PID" || rc=$?
	APPLY_PID=
	assert_equal "$rc" 0
	jq -e -s '.[-1] | .reason == "idle" and .applied == 1' "$OUT/apply2"
	migrated t
}

@test "--print writes changes and commits in source commit order, applies nothing and leaves the slot where it was" {
	both -c 'CREATE TABLE kv (k int PRIMARY KEY, v text)'
	snap
	confirmed=$(psql_src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")
	# A begins first and commits after B
	session_open "$S"
	session_send 'BEGIN;'
	session_send "INSERT INTO kv VALUES (1, 'a1');"
	session_send "SELECT 'a-started';"
	dbm_wait_until 10 grep -qx a-started "$OUT/session.out"
	ps_ -c "INSERT INTO kv VALUES (2, 'b')"
	session_send "UPDATE kv SET v = 'a2' WHERE k = 1;"
	session_send "INSERT INTO kv VALUES (3, 'a3');"
	session_send 'COMMIT;'
	session_close
	ps_ -c 'BEGIN' -c 'DELETE FROM kv WHERE k = 2' -c 'UPDATE kv SET k = 4 WHERE k = 3' \
		-c "UPDATE kv SET v = NULL WHERE k = 1" -c 'COMMIT'
	lsn=$(src_lsn)
	run --separate-stderr timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/print"
	assert_equal "$(jq -r '.type' "$OUT/print" | paste -sd' ')" \
		'change commit change change change commit change change change commit stopped'
	assert_equal "$(changes "$OUT/print")" '["insert","public.kv",{"k":"2"},{"k":"2","v":"b"},null]
["insert","public.kv",{"k":"1"},{"k":"1","v":"a1"},null]
["update","public.kv",{"k":"1"},{"k":"1","v":"a2"},null]
["insert","public.kv",{"k":"3"},{"k":"3","v":"a3"},null]
["delete","public.kv",{"k":"2"},null,{"k":"2"}]
["update","public.kv",{"k":"3"},{"k":"4","v":"a3"},{"k":"3"}]
["update","public.kv",{"k":"1"},{"k":"1","v":null},null]'
	# each change carries its transaction's xid and commit position; each
	# transaction ends with its commit line, positions rising
	jq -e -s '[.[] | select(.type == "change" or .type == "commit")] as $l |
		($l | map(select(.type == "commit")) | map(.lsn | split("/") | map(("00000000" + .)[-8:]) | join("/")) |
			. == sort and (unique | length) == 3) and
		([range(0; $l | length) as $i | $l[$i] | select(.type == "change") |
			.xid == ([$l[$i:][] | select(.type == "commit")][0].xid)] | all) and
		($l | map(select(.type == "change")) | all((.lsn | test("^[0-9A-F]+/[0-9A-F]+$")) and (.xid | type) == "number")) and
		($l | map(select(.type == "commit")) | all(.commit_time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")))' "$OUT/print"
	jq -e -s '.[-1] | .reason == "lsn"' "$OUT/print"
	# nothing applied, no position, the slot not moved
	assert_equal "$(pd_ -c 'SELECT count(*) FROM kv')" 0
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm' AND
		EXISTS (SELECT FROM pg_tables WHERE schemaname = 'dbm' AND tablename = 'apply_position')")" 0
	assert_equal "$(psql_src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")" "$confirmed"
	# printing twice gives the same stream
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_equal "$(changes <(echo "$output"))" "$(changes "$OUT/print")"
	# and applying gets it all
	apply_to "$lsn"
	jq -e -s '.[-1] | .applied == 7 and .transactions == 3' "$OUT/apply"
	migrated kv
}

@test "source transactions are grouped into target transactions, each writing the position" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'DO $$ BEGIN FOR i IN 1..500 LOOP INSERT INTO t VALUES (i); COMMIT; END LOOP; END $$'
	lsn=$(src_lsn)
	pos=$(stat -c %s "$DST_DIR/postgres.log")
	PGOPTIONS='-c log_statement=all' apply_to "$lsn"
	jq -e -s '.[-1] | .applied == 500 and .transactions == 500' "$OUT/apply"
	tail -c +$((pos + 1)) "$DST_DIR/postgres.log" >"$OUT/dst.log"
	# the applying session: the one writing the position
	pid=$(grep -m1 'apply_position AS p' "$OUT/dst.log" | grep -o '\[[0-9]*\]')
	grep -F "$pid" "$OUT/dst.log" >"$OUT/apply.log"
	commits=$(grep -Ec ': COMMIT$' "$OUT/apply.log")
	positions=$(grep -c 'INSERT INTO .*apply_position AS p' "$OUT/apply.log")
	echo "500 source transactions in $commits target transactions" >&2
	[ "$commits" -ge 1 ]
	[ "$commits" -le 50 ]
	assert_equal "$positions" "$commits"
	# every position write comes right before its COMMIT
	assert_equal "$(grep -E 'apply_position AS p|: COMMIT$|: BEGIN$' "$OUT/apply.log" | sed -E 's/.*(apply_position|COMMIT|BEGIN).*/\1/' |
		paste -sd' ' | sed 's/BEGIN apply_position COMMIT//g' | tr -d ' ')" ""
	migrated t
}

@test "unchanged TOAST values are never written: an update of other columns leaves them intact" {
	both -c 'CREATE TABLE doc (id int PRIMARY KEY, n int, big text, small text)'
	# 100 kB of random hex: stored out of line, not compressible
	rnd="(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3200))"
	ps_ -c "INSERT INTO doc SELECT g, 0, $rnd, 's' FROM generate_series(1, 2) g"
	snap
	ps_ -c "INSERT INTO doc VALUES (3, 0, $rnd, 's')"
	assert_equal "$(ps_ -c "SELECT length(big), pg_column_compression(big) IS NULL FROM doc WHERE id = 3")" '102400|t'
	ps_ -c 'UPDATE doc SET n = n + 1'
	ps_ -c "UPDATE doc SET big = $rnd WHERE id = 2"
	ps_ -c "UPDATE doc SET n = n + 1, small = 'changed' WHERE id = 1"
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	printf '%s\n' "$output" >"$OUT/print"
	# the insert carries the value; updates that do not touch it leave it out
	assert_equal "$(jq -c 'select(.type == "change") | [.op, .key.id, (.new | keys), (.new.big | length)]' "$OUT/print")" \
'["insert","3",["big","id","n","small"],102400]
["update","1",["id","n","small"],0]
["update","2",["id","n","small"],0]
["update","3",["id","n","small"],0]
["update","2",["big","id","n","small"],102400]
["update","1",["id","n","small"],0]'
	apply_to "$lsn"
	migrated doc
	assert_equal "$(pd_ -c 'SELECT id, n, md5(big), small FROM doc ORDER BY id')" \
		"$(ps_ -c 'SELECT id, n, md5(big), small FROM doc ORDER BY id')"

	# proof that the column is not written: a target-only value survives
	pd_ -c "UPDATE doc SET big = 'target only' WHERE id = 3"
	ps_ -c 'UPDATE doc SET n = 42 WHERE id = 3'
	apply_to "$(src_lsn)"
	assert_equal "$(pd_ -c 'SELECT n, big FROM doc WHERE id = 3')" '42|target only'
}

@test "updates of one row in a batch go out merged; tables where order between rows matters keep every update" {
	both -c 'CREATE TABLE hot (id int PRIMARY KEY, n int, big text, small text)' \
		-c 'CREATE TABLE uq (id int PRIMARY KEY, email text UNIQUE)' \
		-c 'CREATE TABLE trg (id int PRIMARY KEY, n int)' \
		-c 'CREATE TABLE trg_log (n int)'
	# on the target only: a trigger that fires in replica mode
	pd_ -c 'CREATE FUNCTION log_n() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.trg_log VALUES (NEW.n); RETURN NEW; END $$' \
		-c 'CREATE TRIGGER trg_log AFTER UPDATE ON trg FOR EACH ROW EXECUTE FUNCTION log_n()' \
		-c 'ALTER TABLE trg ENABLE ALWAYS TRIGGER trg_log'
	rnd="(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3200))"
	ps_ -c "INSERT INTO hot SELECT g, 0, $rnd, 's' FROM generate_series(1, 3) g" \
		-c "INSERT INTO uq VALUES (1, 'a'), (2, 'b')" -c 'INSERT INTO trg VALUES (1, 0)'
	snap
	# one source transaction (so one target transaction, whatever the
	# timing)
	ps_ -1 -c 'DO $$ BEGIN FOR i IN 1..200 LOOP UPDATE hot SET n = n + 1 WHERE id = 1; END LOOP; END $$' \
		-c "UPDATE hot SET small = 'x' WHERE id = 2" -c "UPDATE hot SET big = $rnd WHERE id = 2" \
		-c 'UPDATE hot SET n = 5 WHERE id = 2' \
		-c 'UPDATE hot SET n = 1 WHERE id = 3' -c 'DELETE FROM hot WHERE id = 3' \
		-c "INSERT INTO hot VALUES (3, 3, 'inline', 'again')" -c 'UPDATE hot SET n = 7 WHERE id = 3' \
		-c 'UPDATE hot SET n = n + 1 WHERE id = 1' -c 'UPDATE hot SET id = 10 WHERE id = 1' \
		-c 'UPDATE hot SET n = n + 1 WHERE id = 10' \
		-c "UPDATE uq SET email = 'c' WHERE id = 1" -c "UPDATE uq SET email = 'a' WHERE id = 2" \
		-c "UPDATE uq SET email = 'b' WHERE id = 1" \
		-c 'DO $$ BEGIN FOR i IN 1..50 LOOP UPDATE trg SET n = i; END LOOP; END $$'
	lsn=$(src_lsn)
	log_mark
	PGOPTIONS='-c log_statement=all' apply_to "$lsn"
	jq -e -s '.[-1] | .applied == 263 and .transactions == 1' "$OUT/apply"
	applier_log >"$OUT/dst.log"
	# hot: the 200 updates of id 1 and the 3 of id 2 wait, merged, and id
	# 3's update becomes its delete; id 3 inserted again sends them first
	# (2 updates, 1 delete); then id 3's update and id 1's next one wait,
	# until the key change sends them (2) before itself (1); the update
	# after it goes at the commit (1). uq and trg: every update
	assert_equal "$(grep -Ec 'execute [^:]*: UPDATE public\.hot ' "$OUT/dst.log")" 6
	assert_equal "$(grep -Ec 'execute [^:]*: DELETE FROM public\.hot ' "$OUT/dst.log")" 1
	assert_equal "$(grep -Ec 'execute [^:]*: UPDATE public\.uq ' "$OUT/dst.log")" 3
	assert_equal "$(grep -Ec 'execute [^:]*: UPDATE public\.trg ' "$OUT/dst.log")" 50
	assert_equal "$(pd_ -c 'SELECT count(*), sum(n) FROM trg_log')" '50|1275'
	run -0 dbm-diff --source "$S" --target "$D" -T public.trg_log
	for t in hot uq trg; do
		assert_equal "$(dbm_checksum "$D" "$t")" "$(dbm_checksum "$S" "$t")"
	done
	assert_equal "$(pd_ -c 'SELECT id, n, md5(big), small FROM hot ORDER BY id')" \
		"$(ps_ -c 'SELECT id, n, md5(big), small FROM hot ORDER BY id')"
}

@test "deletes in a batch go out together by their keys, composite keys too; rows they do not find are counted missed; keys not known by their text keep their order" {
	both -c 'CREATE TABLE d1 (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE d2 (a int, b text, v text, PRIMARY KEY (a, b))' \
		-c 'CREATE TABLE nk (k numeric PRIMARY KEY, v text)'
	ps_ -c "INSERT INTO d1 SELECT g, 'x' FROM generate_series(1, 100) g" \
		-c "INSERT INTO d2 SELECT g, 'k' || g, 'x' FROM generate_series(1, 100) g" \
		-c "INSERT INTO nk VALUES (1.0, 'a')"
	snap
	# 5 of the rows to delete are already gone from the target
	pd_ -c 'DELETE FROM d1 WHERE id <= 5'
	# nk: one key spelled two ways (1.0 deleted, 1.00 inserted): a numeric
	# key is not matched by its text, so its changes keep their order
	ps_ -1 -c 'DELETE FROM d1 WHERE id <= 70' -c 'DELETE FROM d2 WHERE a > 80' \
		-c "INSERT INTO d1 VALUES (3, 'again')" -c "UPDATE d1 SET v = 'y' WHERE id = 3" \
		-c 'DELETE FROM nk WHERE k = 1' -c "INSERT INTO nk VALUES (1.00, 'b')"
	lsn=$(src_lsn)
	log_mark
	PGOPTIONS='-c log_statement=all' apply --stop-at-lsn "$lsn"
	assert_success
	jq -e -s '.[-1] | .type == "stopped" and .applied == 94 and .missed == 5' "$OUT/apply"
	applier_log >"$OUT/dst.log"
	# d1: 70 keys as 64 + 6 x 1 (id 3 inserted again sends them first);
	# d2: 20 keys as 8 + 8 + 4 x 1
	assert_equal "$(grep -Ec 'execute [^:]*: DELETE FROM public\.d1 ' "$OUT/dst.log")" 7
	assert_equal "$(grep -Ec 'execute [^:]*: DELETE FROM public\.d2 ' "$OUT/dst.log")" 6
	assert_equal "$(grep -Ec 'execute [^:]*: DELETE FROM public\.d2 WHERE \("a", "b"\) IN \(\(\$1, \$2\), ' "$OUT/dst.log")" 2
	migrated d1 d2 nk
	assert_equal "$(pd_ -c 'SELECT id, v FROM d1 ORDER BY id LIMIT 2')" '3|y
71|x'
	assert_equal "$(pd_ -c 'SELECT k, v FROM nk')" '1.00|b'
}

@test "a Relation message in the middle of a batch (the table analyzed or altered compatibly) loses no pending row" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	snap
	# each statement its own transaction, all in one target batch; ANALYZE
	# and SET DEFAULT make pgoutput send the table's Relation message again
	ps_ -c "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g" -c 'ANALYZE t' \
		-c "INSERT INTO t VALUES (101, 'b')" -c "ALTER TABLE t ALTER COLUMN v SET DEFAULT 'd'" \
		-c "INSERT INTO t VALUES (102, 'c')"
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_equal "$(jq -s 'map(select(.type == "change" and .op == "insert")) | length' <<<"$output")" 102
	apply_to "$lsn"
	jq -e -s '.[-1].applied == 102' "$OUT/apply"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 102
	migrated t
}

@test "TRUNCATE is applied in its place in the stream, several tables at once too" {
	both -c 'CREATE TABLE a (id int PRIMARY KEY)' -c 'CREATE TABLE b (id int PRIMARY KEY)' \
		-c 'CREATE TABLE c (id serial, v text)'
	ps_ -c 'INSERT INTO a SELECT generate_series(1, 100)' -c 'INSERT INTO b SELECT generate_series(1, 100)' \
		-c "INSERT INTO c (v) SELECT 'x' FROM generate_series(1, 10)"
	snap
	ps_ -c 'BEGIN' -c 'INSERT INTO a VALUES (101)' -c 'TRUNCATE a' -c 'INSERT INTO a VALUES (7)' -c 'COMMIT'
	ps_ -c 'TRUNCATE b, c RESTART IDENTITY'
	ps_ -c "INSERT INTO c (v) VALUES ('after')"
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_equal "$(jq -c 'select(.type == "change") | [.op, .table, .cascade, .restart_identity, .new]' <<<"$output")" \
'["insert","public.a",null,null,{"id":"101"}]
["truncate","public.a",false,false,null]
["insert","public.a",null,null,{"id":"7"}]
["truncate","public.b",false,true,null]
["truncate","public.c",false,true,null]
["insert","public.c",null,null,{"id":"1","v":"after"}]'
	apply_to "$lsn"
	assert_equal "$(pd_ -c 'SELECT (SELECT string_agg(id::text, $$,$$) FROM a), (SELECT count(*) FROM b), (SELECT string_agg(v, $$,$$) FROM c)')" \
		'7|0|after'
	migrated a b c
}

@test "REPLICA IDENTITY FULL without a key: each change matches one row by its old image, even among duplicates" {
	both -c 'CREATE TABLE np (a int, b text, p point, j json)'
	ps_ -c 'ALTER TABLE np REPLICA IDENTITY FULL'
	ps_ -c "INSERT INTO np VALUES (1, 'x', '(1,2)', '{\"k\": 1}'), (1, 'x', '(1,2)', '{\"k\": 1}'),
		(2, 'y', '(0,0)', '[]'), (3, NULL, NULL, NULL), (3, NULL, NULL, NULL), (3, NULL, NULL, NULL)"
	snap
	# one of two identical rows deleted, one of three updated
	ps_ -c "DELETE FROM np WHERE ctid = (SELECT min(ctid) FROM np WHERE a = 1)"
	ps_ -c "UPDATE np SET b = 'z' WHERE ctid = (SELECT min(ctid) FROM np WHERE a = 3)"
	ps_ -c "UPDATE np SET a = 20, p = '(5,5)' WHERE a = 2"
	ps_ -c "INSERT INTO np VALUES (1, 'x', '(1,2)', '{\"k\": 1}')"
	ps_ -c "DELETE FROM np WHERE ctid = (SELECT max(ctid) FROM np WHERE a = 3 AND b IS NULL)"
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	jq -e -s 'map(select(.type == "change" and .op == "delete")) | .[0].old == {"a":"1","b":"x","p":"(1,2)","j":"{\"k\": 1}"}' <<<"$output"
	apply_to "$lsn"
	assert_equal "$(pd_ -c "SELECT a, coalesce(b, '-'), count(*) FROM np GROUP BY 1, 2 ORDER BY 1, 2")" \
		$'1|x|2\n3|-|1\n3|z|1\n20|y|1'
	migrated np
}

@test "a partitioned table is applied through its root, however the target partitions it" {
	ps_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)' \
		-c 'CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (MINVALUE) TO (100)' \
		-c 'CREATE TABLE p_2 PARTITION OF p FOR VALUES FROM (100) TO (MAXVALUE)'
	pd_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY HASH (id)' \
		-c 'CREATE TABLE p_1 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 0)' \
		-c 'CREATE TABLE p_2 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 1)' \
		-c 'CREATE TABLE p_3 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 2)'
	snap
	ps_ -c "INSERT INTO p SELECT g, 'v' || g FROM generate_series(1, 200) g"
	ps_ -c "UPDATE p SET id = id + 1000 WHERE id = 5" -c "UPDATE p SET v = 'w' WHERE id = 150" \
		-c 'DELETE FROM p WHERE id = 160' -c 'DELETE FROM p_1 WHERE id = 10'
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_equal "$(jq -r 'select(.type == "change") | .table' <<<"$output" | sort -u)" public.p
	apply_to "$lsn"
	assert_equal "$(pd_ -c "SELECT count(*), count(*) FILTER (WHERE id = 1005) FROM p")" '198|1'
	migrated p
}

@test "quoted identifiers: schema, table and columns with spaces, capitals, quotes and non-ASCII" {
	both -c 'CREATE SCHEMA "My S"' \
		-c 'CREATE TABLE "My S"."a ""b" ("Kéy Col" int PRIMARY KEY, "V" text, "x,y" int)' \
		-c 'CREATE TABLE public."CamelCase" (id int PRIMARY KEY, "Select" text)'
	ps_ -c "INSERT INTO \"My S\".\"a \"\"b\" VALUES (1, 'one', 1), (2, 'two', 2)"
	snap
	ps_ -c "INSERT INTO \"My S\".\"a \"\"b\" VALUES (3, 'it''s \"3\"', NULL)" \
		-c "UPDATE \"My S\".\"a \"\"b\" SET \"V\" = 'uno' WHERE \"Kéy Col\" = 1" \
		-c "UPDATE \"My S\".\"a \"\"b\" SET \"Kéy Col\" = 20 WHERE \"Kéy Col\" = 2" \
		-c "DELETE FROM \"My S\".\"a \"\"b\" WHERE \"Kéy Col\" = 1" \
		-c "INSERT INTO \"CamelCase\" VALUES (1, 'from')"
	lsn=$(src_lsn)
	run -0 timeout 60 dbm-cdc-apply --source "$S" --slot "$SLOT" --print --stop-at-lsn "$lsn"
	assert_equal "$(jq -c 'select(.type == "change") | [.op, .table, .key]' <<<"$output")" \
'["insert","\"My S\".\"a \"\"b\"",{"Kéy Col":"3"}]
["update","\"My S\".\"a \"\"b\"",{"Kéy Col":"1"}]
["update","\"My S\".\"a \"\"b\"",{"Kéy Col":"2"}]
["delete","\"My S\".\"a \"\"b\"",{"Kéy Col":"1"}]
["insert","public.\"CamelCase\"",{"id":"1"}]'
	apply_to "$lsn"
	assert_equal "$(pd_ -c 'SELECT "Kéy Col", "V", "x,y" FROM "My S"."a ""b" ORDER BY 1')" $'3|it\'s "3"|\n20|two|2'
	migrated '"My S"."a ""b"' '"CamelCase"'
}

@test "every built-in type is applied exactly, keyed and by the whole old row, whatever either side's settings" {
	cols='tstz timestamptz, ts timestamp, d date, tm time, ttz timetz, iv interval, f4 real,
		f8 double precision, n numeric, n2 numeric(12,4), b bytea, arr timestamptz[], rng tstzrange,
		j jsonb, js json, u uuid, ia int[], ta text[], i2 smallint, i8 bigint, bo boolean, ch char(5),
		vc varchar(10), ip inet, ci cidr, mac macaddr, pt point, bx box, bits bit varying(16), m money,
		tv tsvector, oi oid'
	both -c "CREATE TABLE typed (id int PRIMARY KEY, $cols)" -c "CREATE TABLE typed_nk (id int, $cols)"
	ps_ -c 'ALTER TABLE typed_nk REPLICA IDENTITY FULL'
	for side in "$S" "$D"; do
		psql "$side" -XAtq -v ON_ERROR_STOP=1 -c "ALTER DATABASE $DB SET TimeZone = 'Asia/Kathmandu'" \
			-c "ALTER DATABASE $DB SET DateStyle = 'SQL, DMY'" -c "ALTER DATABASE $DB SET IntervalStyle = 'iso_8601'" \
			-c "ALTER DATABASE $DB SET extra_float_digits = -3" -c "ALTER DATABASE $DB SET bytea_output = 'escape'"
	done
	snap
	vals="(1, '2024-02-29 23:30:00.123456+00', '2024-02-29 23:30:00', '2024-02-29', '23:30:00',
		 '23:30:00+05:30', '1 year 2 mons 3 days 04:05:06.789', 0.1, 0.1::float8 + 0.2, 1.50, 12345678.1234,
		 '\\x00ff41', ARRAY['2024-01-01 00:00+00'::timestamptz],
		 tstzrange('2024-01-01 00:00+00', '2024-06-01 00:00+00'), '{\"a\": [1, 2.50, null]}', '{\"b\":  1}',
		 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', '{\"a b\",NULL,\"\\\\\",\"\"}',
		 -32768, 9223372036854775807, true, 'ab', 'héllo', '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
		 '(1.5,-2)', '((0,0),(1,1))', B'1011', 12.34, 'a fat cat', 4294967295),
		(2, 'infinity', '0044-03-15 12:00 BC', '1999-12-31', '00:00:01', '00:00:00-08',
		 '-1 days +02:00:00', 'NaN', '-Infinity', 'NaN', -0.0001, '\\x', '{}', 'empty', 'null', '[]',
		 '00000000-0000-0000-0000-000000000000', '{}', '{}', 0, -1, false, '', '', '::1', '::/0',
		 'ff:ff:ff:ff:ff:ff', '(0,0)', '((-1,-1),(2,3))', B'', -0.01, '', 0),
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
	names='tstz, ts, d, tm, ttz, iv, f4, f8, n, n2, b, arr, rng, j, js, u, ia, ta, i2, i8, bo, ch, vc, ip,
		ci, mac, pt, bx, bits, m, tv, oi'
	# inserted, then row 1 takes row 2's values and row 2 row 3's NULLs, row
	# 3 goes: every value through a new image and through the old row
	for t in typed typed_nk; do
		ps_ -c "INSERT INTO $t VALUES $vals" -c "INSERT INTO $t SELECT id + 10, $names FROM $t" \
			-c "UPDATE $t SET ($names) = (SELECT $names FROM $t WHERE id = 2) WHERE id = 1" \
			-c "UPDATE $t SET ($names) = (SELECT $names FROM $t WHERE id = 3) WHERE id = 2" \
			-c "DELETE FROM $t WHERE id = 3"
	done
	apply_to "$(src_lsn)"
	PINNED='-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex'
	PGOPTIONS=$PINNED migrated typed typed_nk
	assert_equal "$(pd_ -c 'SELECT count(*) FROM typed_nk')" 5
	assert_equal "$(pd_ -c 'SELECT count(*) FROM typed_nk WHERE id = 1 AND ch IS NOT NULL AND tstz = $$infinity$$')" 1
}

@test "a run of inserts into one table goes as one COPY: tabs, newlines, backslashes, a literal \\N and NULLs arrive exact" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text, a text[], j jsonb, b bytea)' \
		-c 'CREATE TABLE small (id int PRIMARY KEY, v text)'
	snap
	# 1000 rows in one statement, then 3 (multi-row INSERT, not COPY)
	ps_ -c "INSERT INTO t SELECT g,
		CASE g % 6 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there' WHEN 2 THEN E'two\\nlines\\r\\n'
			WHEN 3 THEN E'back\\\\slash \\\\N \\\\.' WHEN 4 THEN E'\\\\N' ELSE '' END,
		ARRAY[E'x\\ty', NULL, E'\\\\', '\"q\"'], jsonb_build_object('k', E'v\\n\\t\\\\'),
		decode(md5(g::text), 'hex') FROM generate_series(1, 1000) g" \
		-c "INSERT INTO small SELECT g, E'a\\tb' FROM generate_series(1, 3) g"
	log_mark
	PGOPTIONS='-c log_statement=all' apply_to "$(src_lsn)"
	assert_equal "$(log_dst | grep -c 'COPY public.t ("id", "v", "a", "j", "b") FROM STDIN')" 1
	assert_equal "$(log_dst | grep -c 'COPY public.small')" 0
	assert_equal "$(pd_ -c "SELECT count(*), count(*) FILTER (WHERE v = E'\\\\N'), count(*) FILTER (WHERE v IS NULL) FROM t")" '1000|167|166'
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	assert_equal "$(dbm_checksum "$D" small)" "$(dbm_checksum "$S" small)"
	migrated t small
}

@test "a row of a COPY that the target refuses stops the apply with exit 2 naming its transaction; nothing of it applied" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	pd_ -c "ALTER TABLE t ADD CONSTRAINT no_bad CHECK (v <> 'bad')"
	snap
	ps_ -c "INSERT INTO t SELECT g, 'ok' FROM generate_series(1, 10) g"
	ok_lsn=$(src_lsn)
	ps_ -c "INSERT INTO t SELECT g, CASE WHEN g = 700 THEN 'bad' ELSE 'ok' END FROM generate_series(11, 1000) g"
	xid=$(ps_ -c "SELECT xmin FROM t WHERE id = 700")
	apply_to "$ok_lsn"
	pos=$(position)
	apply --stop-at-lsn "$(src_lsn)"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	[[ "${stderr_lines[0]}" == "dbm-cdc-apply: error: public.t insert in the transaction committed at "*" (xid $xid): new row for relation \"t\" violates check constraint \"no_bad\"" ]]
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 10
	assert_equal "$(position)" "$pos"
}

# ------------------------------------------------------------ bad input

# relation_changed ALTER MESSAGE FIX: after a first applied transaction,
# one source transaction alters table t (ALTER) and writes t and u; the
# apply exits 2 with MESSAGE alone on stderr, nothing of that transaction
# applied and the position unchanged; after FIX on the target the same
# command applies it.
relation_changed()
{
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text, n int)' -c 'CREATE TABLE u (id int PRIMARY KEY)'
	ps_ -c "INSERT INTO t VALUES (1, 'one', 1)"
	snap
	ps_ -c "INSERT INTO t VALUES (2, 'two', 2)" -c 'INSERT INTO u VALUES (2)'
	apply_to "$(src_lsn)"
	pos=$(position)
	[ -n "$pos" ]
	before_t=$(dbm_checksum "$D" t)
	before_u=$(dbm_checksum "$D" u)
	ps_ -c 'BEGIN' -c "$1" -c 'INSERT INTO u VALUES (3)' -c "INSERT INTO t (id) VALUES (3)" \
		-c "UPDATE t SET id = 10 WHERE id = 1" -c 'COMMIT'
	lsn=$(src_lsn)
	apply --stop-at-lsn "$lsn"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-cdc-apply: error: $2"
	assert_equal "$(position)" "$pos"
	assert_equal "$(dbm_checksum "$D" t)" "$before_t"
	assert_equal "$(dbm_checksum "$D" u)" "$before_u"
	lsn_le "$(psql_src -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")" "$pos"
	# it stops there every time, until the target is fixed
	apply --stop-at-lsn "$lsn"
	assert_failure 2
	assert_equal "$(position)" "$pos"
	pd_ -c "$3"
	apply_to "$lsn"
	migrated t u
}

@test "a column added on the source after the copy stops the apply with exit 2 naming table and column, position not advanced" {
	relation_changed 'ALTER TABLE t ADD COLUMN extra int DEFAULT 5' \
		'table public.t: column "extra" is missing on the target' \
		'ALTER TABLE t ADD COLUMN extra int DEFAULT 5'
}

@test "a column dropped on the source after the copy stops the apply with exit 2 naming table and column, position not advanced" {
	relation_changed 'ALTER TABLE t DROP COLUMN v' \
		'table public.t: column "v" of the target is not in the source' \
		'ALTER TABLE t DROP COLUMN v'
}

@test "a column retyped on the source after the copy stops the apply with exit 2 naming table and column, position not advanced" {
	relation_changed 'ALTER TABLE t ALTER COLUMN n TYPE bigint' \
		'table public.t: column "n" has another type on the target (integer)' \
		'ALTER TABLE t ALTER COLUMN n TYPE bigint'
}

@test "a table missing on the target exits 2 naming it, nothing of its transaction applied" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	ps_ -c 'CREATE TABLE "New T" (id int PRIMARY KEY)'
	snap --table t
	ps_ -c 'BEGIN' -c 'INSERT INTO t VALUES (1)' -c 'INSERT INTO "New T" VALUES (1)' -c 'COMMIT'
	lsn=$(src_lsn)
	apply --stop-at-lsn "$lsn"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: table public."New T" is missing on the target'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	assert_equal "$(position)" ""
	pd_ -c 'CREATE TABLE "New T" (id int PRIMARY KEY)'
	apply_to "$lsn"
	migrated t '"New T"'
}

@test "a slot that does not exist exits 2 naming it, nothing applied" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-cdc-apply --source "$S" --target "$D" --slot nosuch --until-idle 1
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-cdc-apply: error: could not start replication from slot "nosuch": replication slot "nosuch" does not exist'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	assert_equal "$(pd_ -c 'SELECT count(*) FROM dbm.apply_position')" 0
	run --separate-stderr dbm-cdc-apply --source "$S" --slot nosuch --print --until-idle 1
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" 'dbm-cdc-apply: error: could not start replication from slot "nosuch": replication slot "nosuch" does not exist'
}

@test "a second applier on an active slot exits 2 naming the slot; the first goes on" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" >"$OUT/apply1" 2>"$OUT/apply1.err" 3>&- &
	APPLY_PID=$!
	dbm_wait_until 10 slot_active t
	ps_ -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --until-idle 1
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-cdc-apply: error: could not start replication from slot \"$SLOT\": replication slot \"$SLOT\" is active for PID [0-9]+$"
	ps_ -c 'INSERT INTO t VALUES (2)'
	two_rows() { [ "$(pd_ -c 'SELECT count(*) FROM t')" = 2 ]; }
	dbm_wait_until 10 two_rows
	kill -TERM "$APPLY_PID"
	rc=0
	wait "$APPLY_PID" || rc=$?
	APPLY_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/apply1.err")" ""
	jq -e -s '.[-1] | .type == "stopped" and .reason == "signal" and .applied == 2' "$OUT/apply1"
	migrated t
}

@test "a publication that does not exist exits 2 naming it" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	snap
	ps_ -c 'INSERT INTO t VALUES (1)'
	apply --publication nosuch --until-idle 2
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" '^dbm-cdc-apply: error: .*publication "nosuch" does not exist'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
}

@test "a refused connection exits 2 with one error line naming the server, and no password" {
	port=$(closed_port)
	bad="host=127.0.0.1 port=$port user=postgres password=s3cret"
	for args in "--source|$S|--target|$bad" "--source|$bad|--target|$D" "--source|$bad|--print"; do
		IFS='|' read -r -a argv <<<"$args"
		run --separate-stderr dbm-cdc-apply --slot "$SLOT" --until-idle 1 "${argv[@]}"
		assert_failure 2
		assert_equal "$output" ""
		assert_equal "${#stderr_lines[@]}" 1
		assert_regex "${stderr_lines[0]}" "^dbm-cdc-apply: error: could not connect to \"[^\"]*port=$port[^\"]*\": .*Connection refused$"
		refute_regex "$stderr" 's3cret'
	done
}
