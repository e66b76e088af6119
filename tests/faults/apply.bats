#!/usr/bin/env bats
# Faults during dbm-cdc-apply while pgbench-like clients write on the
# source: killed at random points, the target or the source crashed and
# restarted, its sessions and its walsender terminated, the target's disk
# full, the slot dropped underneath, and the Kafka path's target crashed.
# A lost connection is reconnected with backoff (a reconnected line, a
# warning per attempt) and the apply goes on from the position stored on
# the target; what cannot be got past stops with one error line and exit 2.
# Every test ends with the target equal to the source for dbm-diff and for
# a plain-SQL checksum, and with exact counts: each source transaction adds
# one to a counter and inserts one row into a table without a key, so a
# transaction lost or applied twice shows.

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/faults

setup_file()
{
	dbm_start_clusters
}

teardown_file()
{
	fault_small_disks_drop
	dbm_stop_clusters
}

setup()
{
	DB="a_$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
	SLOT="fapply_$BATS_TEST_NUMBER"
	PIDS=()
	fault_seed
	ps_ <<-'SQL'
		CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
		INSERT INTO counter VALUES (1, 0);
		CREATE TABLE ledger (client int NOT NULL, n bigint NOT NULL, note text);
		CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, filler text);
		INSERT INTO accounts SELECT g, 0, repeat('x', 80) FROM generate_series(1, 10000) g;
	SQL
	pg_dump --schema-only "$S" | pd_ >/dev/null
}

teardown()
{
	local p
	for p in "${PIDS[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	psql_src -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = '$SLOT' AND active" >/dev/null 2>&1 || true
	psql_src -c "SELECT pg_drop_replication_slot('$SLOT')
		FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null 2>&1 || true
}

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# copy: dbm-snapshot --slot (nothing written yet: the tables as they are).
copy()
{
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_success
}

# writer SECS [NOTE]: two clients, each transaction one counter increment,
# one ledger row (its note the SQL expression NOTE, default 'txn'), one
# account update; a client that loses its connection (the source crashed)
# reconnects and goes on.
writer()
{
	cat >"$OUT/txn.sql" <<-SQL
		\\set a random(1, 10000)
		BEGIN;
		UPDATE counter SET n = n + 1 WHERE id = 1;
		INSERT INTO ledger VALUES (:client_id, 1, ${2:-'txn'});
		UPDATE accounts SET balance = balance + 1 WHERE id = :a;
		END;
	SQL
	(
		local end=$((SECONDS + $1))
		while ((SECONDS < end)); do
			pgbench -n -c 2 -T $((end - SECONDS > 0 ? end - SECONDS : 1)) -f "$OUT/txn.sql" "$S" \
				>>"$OUT/pgbench.out" 2>&1 || sleep 0.5
		done
	) 3>&- &
	PIDS+=($!)
	WRITER=$!
}

# apply_bg NAME [OPTION]...: the slot apply in the background; pid in
# NAME_pid, output in $OUT/NAME.out and .err.
apply_bg()
{
	local name=$1
	shift
	dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --batch-ms 20 "$@" \
		>"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	PIDS+=($!)
	eval "${name}_pid=$!"
}

# applied_some N: the target's counter is above N.
applied_some() { (($(pd_ -c "SELECT n FROM counter") > $1)); }

# slot_active: a walsender streams from the test's slot.
slot_active() { [[ "$(ps_ -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'")" == t ]]; }

# reconnected NAME: NAME printed a reconnected line; when NAME has exited
# instead, its stderr and a failure that ends the wait (exit 255).
reconnected()
{
	local pid_var="$1_pid"
	grep -q '"type":"reconnected"' "$OUT/$1.out" && return 0
	# (exited and not yet waited for: a zombie, state Z)
	if [[ "$(ps -o stat= -p "${!pid_var}")" != [^Z]* ]]; then
		echo "# $1 exited instead of reconnecting:" >&2
		sed 's/^/#   /' "$OUT/$1.err" >&2
		exit 255
	fi
	return 1
}

# in_sleep: the apply's target session is in the slow trigger's sleep.
in_sleep()
{
	[[ "$(pd_ -c "SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'dbm-cdc-apply' AND wait_event = 'PgSleep'")" -ge 1 ]]
}

# settle NAME: writes stopped, NAME (running) applies up to a marker
# transaction committed now, then SIGTERM: exit 0 with a stopped line. (Not
# up to the source's end of WAL: a record written after the last commit, a
# checkpoint or the bgwriter's running-transactions record, is never a
# position the apply stores.)
settle()
{
	local pid_var="$1_pid" lsn rc=0
	lsn=$(ps_ -c "SELECT pg_logical_emit_message(true, 'dbm-test', 'settle')")
	dbm_wait_until 120 caught_up "$lsn"
	kill -TERM "${!pid_var}"
	wait "${!pid_var}" || rc=$?
	if [[ $rc -ne 0 ]]; then
		cat "$OUT/$1.err" >&2
		return 1
	fi
	jq -e -s '.[-1] | .type == "stopped" and .reason == "signal"' "$OUT/$1.out" >/dev/null
}

caught_up()
{
	[[ "$(pd_ -c "SELECT coalesce(max(lsn) >= '$1', false) FROM dbm.apply_position
		WHERE stream = '$SLOT'" 2>/dev/null)" == t ]]
}

# exact: the target equals the source, transaction for transaction.
exact()
{
	local txns
	txns=$(ps_ -c "SELECT n FROM counter")
	((txns > 0))
	assert_equal "$(pd_ -c "SELECT n FROM counter")" "$txns"
	assert_equal "$(pd_ -c "SELECT count(*) FROM ledger")" "$txns"
	assert_equal "$(pd_ -c "SELECT sum(balance) FROM accounts")" "$txns"
	fault_same "$S" "$D" public.accounts public.counter public.ledger
}

# reconnects NAME SIDE N: NAME printed N reconnected lines to SIDE, and a
# warning for each failed attempt, no error.
reconnects()
{
	assert_equal "$(jq -c -s --arg s "$2" '[.[] | select(.type == "reconnected") | .to == $s] | [length, all]' "$OUT/$1.out")" "[$3,true]"
	assert_equal "$(grep -c ': error: ' "$OUT/$1.err")" 0
	grep -q ': warning: .*: reconnecting to the '"$2"' in [0-9.]* s$' "$OUT/$1.err"
}

@test "SIGKILL at five random points, restarted each time: nothing lost, nothing applied twice" {
	copy
	writer 25
	local i n
	for i in 1 2 3 4 5; do
		apply_bg run$i
		sleep "$(fault_delay 200 2500)"
		eval "kill -KILL \$run${i}_pid" 2>/dev/null || true
		eval "wait \$run${i}_pid" 2>/dev/null || true
		n=$(pd_ -c "SELECT n FROM counter")
		echo "# kill $i: $n transactions on the target" >&3
	done
	wait "$WRITER"
	apply_bg last
	settle last
	exact
}

@test "the target crashes and restarts twice: the apply reconnects and goes on; exact" {
	copy
	writer 15
	apply_bg a
	dbm_wait_until 60 applied_some 100
	fault_restart "$DST_DIR" immediate 1
	# the second crash once the apply is back (or it would be one outage)
	dbm_wait_until 60 reconnected a
	sleep "$(fault_delay 500 2000)"
	fault_restart "$DST_DIR" immediate 0
	wait "$WRITER"
	settle a
	reconnects a target 2
	exact
}

@test "the source crashes and restarts: the apply reconnects to the slot and goes on; exact" {
	copy
	writer 15
	apply_bg a
	dbm_wait_until 60 applied_some 100
	fault_restart "$SRC_DIR" immediate 1
	wait "$WRITER"
	settle a
	reconnects a source 1
	exact
}

@test "its target sessions and its walsender terminated: the apply reconnects each time; exact" {
	copy
	writer 15
	apply_bg a
	dbm_wait_until 60 applied_some 100
	(($(fault_terminate "$D" dbm-cdc-apply) >= 1))
	# a new session starts from the target's stored position: its walsender
	# comes back with it (the slot is idle in between)
	dbm_wait_until 60 reconnected a
	sleep "$(fault_delay 1000 2000)"
	dbm_wait_until 30 slot_active
	assert_equal "$(psql_src -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = '$SLOT'")" t
	wait "$WRITER"
	settle a
	assert_equal "$(jq -c -s '[.[] | select(.type == "reconnected") | .to]' "$OUT/a.out")" '["target","source"]'
	exact
}

@test "its target session terminated in the middle of a batch (before the end of the connection is read): the apply reconnects; exact" {
	copy
	writer 15
	apply_bg a
	dbm_wait_until 60 applied_some 100
	# a trigger that makes each counter update of the apply take 0.2 s
	# (ALWAYS: the apply runs as a replica), so the session is ended while
	# the batch's statements are in the pipeline: the error comes back as a
	# result, and the connection's end may not have been read yet
	pd_ <<-'SQL'
		CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql
			AS $$BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END$$;
		CREATE TRIGGER slow BEFORE UPDATE ON counter FOR EACH ROW EXECUTE FUNCTION slow();
		ALTER TABLE counter ENABLE ALWAYS TRIGGER slow;
	SQL
	dbm_wait_until 30 in_sleep
	(($(fault_terminate "$D" dbm-cdc-apply) >= 1))
	dbm_wait_until 60 reconnected a
	pd_ -c "DROP TRIGGER slow ON counter" -c "DROP FUNCTION slow()"
	wait "$WRITER"
	settle a
	reconnects a target 1
	grep -q ': warning: .*terminating connection due to administrator command: reconnecting to the target' "$OUT/a.err"
	exact
}

@test "the target's disk fills up: exit 2 naming the disk, nothing of the failed batch committed; after it grows, a restart finishes; exact" {
	local disk
	disk=$(fault_small_disk 3m) || skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"
	copy
	pd_ -c "CREATE TABLESPACE small_$BATS_TEST_NUMBER LOCATION '$disk'" \
		-c "ALTER TABLE ledger SET TABLESPACE small_$BATS_TEST_NUMBER"
	# wide ledger rows (not compressible: md5s) fill 3 MB in seconds
	writer 10 "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 60))"
	apply_bg a
	local rc=0
	wait "$a_pid" || rc=$?
	assert_equal "$rc" 2
	grep -E '^dbm-cdc-apply: error: .*(could not extend file|No space left on device)' "$OUT/a.err"
	assert_equal "$(grep -c ': error: ' "$OUT/a.err")" 1
	# the stored position and the rows agree: the counter is at a
	# transaction boundary the ledger matches
	assert_equal "$(pd_ -c "SELECT (SELECT n FROM counter) = (SELECT count(*) FROM ledger)")" t
	wait "$WRITER"
	fault_small_disk_resize "$disk" 256m
	apply_bg b
	settle b
	exact
}

@test "the slot dropped underneath: exit 2 naming the slot, nothing more applied" {
	copy
	writer 5
	apply_bg a
	dbm_wait_until 60 applied_some 50
	# end the walsender and drop the slot before the apply is back (its
	# first retry waits 0.5 s)
	ps_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = '$SLOT'" >/dev/null
	dbm_wait_until 10 ps_ -c "SELECT pg_drop_replication_slot('$SLOT')"
	local rc=0
	wait "$a_pid" || rc=$?
	assert_equal "$rc" 2
	assert_equal "$(grep ': error: ' "$OUT/a.err")" \
		"dbm-cdc-apply: error: could not start replication from slot \"$SLOT\": replication slot \"$SLOT\" does not exist"
	wait "$WRITER"
}

@test "--reconnect 0 stops at the first lost connection with exit 2; --reconnect SECS gives up after SECS without the target" {
	copy
	writer 6
	apply_bg a --reconnect 0
	dbm_wait_until 60 applied_some 50
	fault_terminate "$D" dbm-cdc-apply >/dev/null
	local rc=0
	wait "$a_pid" || rc=$?
	assert_equal "$rc" 2
	# one error line: the lost target connection, in the words libpq had
	# for it at that moment (the termination, a closed socket, ...)
	assert_equal "$(grep -c ': error: ' "$OUT/a.err")" 1
	assert_equal "$(grep -c ': warning: .*reconnecting' "$OUT/a.err")" 0

	apply_bg b --reconnect 2
	dbm_wait_until 60 applied_some 100
	# the target down for longer than that
	"$REPO_ROOT/scripts/pgcluster.sh" restart "$DST_DIR" immediate 6 3>&- &
	local restarter=$!
	rc=0
	wait "$b_pid" || rc=$?
	wait "$restarter"
	assert_equal "$rc" 2
	grep -E '^dbm-cdc-apply: error: .*\(no session with the target for [0-9]+ s: giving up\)$' "$OUT/b.err"
	wait "$WRITER"
	apply_bg c
	settle c
	exact
}

# kafka_stream: librdkafka's mock cluster (one broker, id 1; its stdin, the
# FIFO $OUT/kafka.in, takes "down 1" and "up 1"), a topic f_events of 3
# partitions, and 12,000 Debezium events produced into it in chunks of
# 1,000 transactions 0.3 s apart (PRODUCER, held between two chunks while
# $OUT/hold exists); each event inserts a row into a
# keyed table and one into a table without a key, where an event applied
# twice would be a second row.  Then the consumer, in the background
# (CONSUMER, output in $OUT/k.out and k.err), once 2,000 rows are in.
kafka_stream()
{
	local i
	mkfifo "$OUT/kafka.in"
	sleep 100000 >"$OUT/kafka.in" 3>&- &
	PIDS+=($!)
	kafka-mock f_events:3 <"$OUT/kafka.in" >"$OUT/kafka.out" 2>"$OUT/kafka.err" 3>&- &
	PIDS+=($!)
	dbm_wait_until 20 test -s "$OUT/kafka.out"
	BROKERS=$(head -1 "$OUT/kafka.out")
	pd_ -c "CREATE TABLE events (id int PRIMARY KEY, v text)" -c "CREATE TABLE events_log (id int, v text)"
	for i in $(seq 1 12000); do
		printf '{"before":null,"after":{"id":%d,"v":"v%d"},"source":{"schema":"public","table":"events","txId":%d,"lsn":%d},"op":"c"}\n' "$i" "$i" "$i" $((1000 + i))
		printf '{"before":null,"after":{"id":%d,"v":"v%d"},"source":{"schema":"public","table":"events_log","txId":%d,"lsn":%d},"op":"c"}\n' "$i" "$i" "$i" $((1000 + i))
	done >"$OUT/events"
	split -l 2000 -d "$OUT/events" "$OUT/chunk."
	(for f in "$OUT"/chunk.*; do
		# held between two chunks while $OUT/hold exists ($OUT/held says so)
		while [[ -e "$OUT/hold" ]]; do touch "$OUT/held"; sleep 0.1; done
		kcat -P -b "$BROKERS" -t f_events -l "$f"
		sleep 0.3
	done) 3>&- &
	PIDS+=($!)
	PRODUCER=$!
	dbm-cdc-apply --target "$D" --kafka "$BROKERS" --topic f_events --group fg --batch-rows 200 \
		--batch-ms 20 -X session.timeout.ms=3000 -X heartbeat.interval.ms=500 \
		>"$OUT/k.out" 2>"$OUT/k.err" 3>&- &
	PIDS+=($!)
	CONSUMER=$!
	dbm_wait_until 60 eval '(($(pd_ -c "SELECT count(*) FROM events") > 2000))'
}

# kafka_exactly_once: every event applied once (the consumer stopped after
# it), no error line.
kafka_exactly_once()
{
	wait "$PRODUCER"
	dbm_wait_until 180 eval '[[ $(pd_ -c "SELECT count(*) FROM events" 2>/dev/null) == 12000 && $(pd_ -c "SELECT count(*) FROM events_log" 2>/dev/null) -ge 12000 ]]' || {
		echo "events: $(pd_ -c "SELECT count(*) FROM events"), log: $(pd_ -c "SELECT count(*) FROM events_log")" >&2
		cat "$OUT/k.err" >&2
		grep -v '"progress"' "$OUT/k.out" >&2
		tail -n 2 "$OUT/k.out" >&2
		return 1
	}
	kill -TERM "$CONSUMER"
	wait "$CONSUMER"
	assert_equal "$(pd_ -c "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events_log")" "12000|12000|1|12000"
	assert_equal "$(grep -c ': error: ' "$OUT/k.err")" 0
}

@test "Kafka: the target crashes and restarts mid-stream: the consumer reconnects, seeks the stored offsets and goes on; exactly once" {
	kafka_stream
	fault_restart "$DST_DIR" immediate 1
	kafka_exactly_once
	assert_equal "$(jq -c -s '[.[] | select(.type == "reconnected") | .to]' "$OUT/k.out")" '["target"]'
}

@test "Kafka: the broker goes down mid-stream for longer than the session timeout and comes back: the consumer waits and goes on; exactly once" {
	kafka_stream
	# between two chunks (kcat gives up when no broker answers), for longer
	# than the session timeout (3 s): the group forgets the member
	touch "$OUT/hold"
	dbm_wait_until 30 test -e "$OUT/held"
	echo "down 1" >"$OUT/kafka.in"
	sleep "$(fault_delay 4000 6000)"
	echo "up 1" >"$OUT/kafka.in"
	rm "$OUT/hold"
	kafka_exactly_once
	# the consumer's own connections were cut: nothing to reconnect on the target
	assert_equal "$(jq -c -s '[.[] | select(.type == "reconnected")] | length' "$OUT/k.out")" 0
	[[ ! -s "$OUT/kafka.err" ]]
	# librdkafka's complaints are warnings in the tools' form, nothing else
	grep -q '^dbm-cdc-apply: warning: kafka: .*Connection refused' "$OUT/k.err"
	assert_equal "$(grep -vc '^dbm-cdc-apply: warning: kafka: ' "$OUT/k.err")" 0
}
