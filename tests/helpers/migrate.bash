# Helpers of the runbook suites (tests/migrate.bats, tests/faults/cutover.bats):
# the runbooks' settings for a test, its source schema behind pgbouncer, a
# client writing through pgbouncer, the end-state check, and migrate.sh
# killed then run again.  Load after helpers/common and helpers/cutover,
# with CUTOVER_PREFIX and RB (the runbooks' directory) set.

# mg_teardown: stop the writer and what the runbooks left running (the
# appliers, jobs of a killed run), then cutover_teardown.
mg_teardown()
{
	[[ -n "${WRITER_PID:-}" ]] && { touch "$OUT/stop"; wait "$WRITER_PID" 2>/dev/null || true; }
	# what the runbooks left running: the appliers, jobs of a killed run
	local f pid
	for f in "$OUT"/state/forward.pid "$OUT"/state/reverse.pid "$OUT"/state/jobs/*.pid; do
		[[ -f "$f" ]] || continue
		read -r pid _ <"$f"
		[[ "$pid" =~ ^[0-9]+$ ]] || continue
		case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
		dbm-*) kill -TERM "$pid" 2>/dev/null || true ;;
		esac
	done
	cutover_teardown
}

# mg_env: the runbooks' settings for this test.
mg_env()
{
	export DBM_SOURCE=$S DBM_TARGET=$D DBM_PGBOUNCER_ADMIN=$PGB_ADMIN DBM_PGBOUNCER_INI=$PGB_INI \
		DBM_PGBOUNCER_DB=$DB DBM_STATE_DIR=$OUT/state DBM_LOG_DIR=$OUT/logs DBM_SLOT=$FSLOT \
		DBM_REVERSE_SLOT=$RSLOT DBM_WATCH_SECS=1 DBM_CHECK_INTERVAL=1 DBM_RECHECK_WAIT=0.5
}

# mg_setup: the source schema and rows, pgbouncer pointing at the source.
mg_setup()
{
	ps_ -c "$CUTOVER_SCHEMA"
	dbm_start_pgbouncer "$DB" "$S"
	mg_env
}

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

# A client writing through pgbouncer one transaction at a time: each insert
# takes an id from the orders sequence and is stamped with the server that
# took it; "N|id|port" of every acknowledged one goes to $OUT/acked, the
# number of every failed one to $OUT/failed.
start_writer()
{
	: >"$OUT/acked"
	: >"$OUT/failed"
	(
		i=0
		while [[ ! -e "$OUT/stop" ]]; do
			i=$((i + 1))
			if out=$(psql "$PGB" -XAtq -v ON_ERROR_STOP=1 -c "INSERT INTO orders (account_id, port)
				VALUES ($((100000 + i)), inet_server_port()) RETURNING id || '|' || port" 2>>"$OUT/writer.err"); then
				echo "$i|$out" >>"$OUT/acked"
			else
				echo "$i" >>"$OUT/failed"
			fi
			sleep 0.02
		done
	) 3>&- &
	WRITER_PID=$!
}

stop_writer()
{
	touch "$OUT/stop"
	wait "$WRITER_PID"
	WRITER_PID=
}

# consistent SIDE: the migration ended with SIDE (source or target) taking
# the writes: pgbouncer routes there and is not paused, the target's dbm
# schema agrees, no client write failed, every acknowledged write is on
# SIDE, the writes moved between the sides only at a switch or a rollback,
# and the other side converges to the same rows.
consistent()
{
	local port conn state n
	if [[ $1 == target ]]; then port=$DST_PORT conn=$D; else port=$SRC_PORT conn=$S; fi
	routes_to "$port"
	run ! dbm_pgbouncer_paused "$DB"
	state=$(pd_ -c "SELECT CASE WHEN to_regclass('dbm.switch') IS NULL THEN 'none' END")
	[[ -n "$state" ]] || state=$(pd_ -c 'SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1')
	if [[ $1 == target ]]; then
		assert_equal "$state" switched
	else
		[[ "$state" == none || "$state" == rolled_back || "$state" == aborted ]]
	fi
	# no client write failed (a read-only freeze fails writes: allowed
	# then), and the writer wrote
	[[ "${2:-}" == failures-allowed ]] || assert_equal "$(cat "$OUT/failed")" ""
	(($(wc -l <"$OUT/acked") > 5))
	# the side taking writes takes them
	assert_equal "$(psql "$conn" -XAtq -c 'SHOW default_transaction_read_only')" off
	# every acknowledged write is on the side taking writes
	cut -d'|' -f2,3 "$OUT/acked" | sort >"$OUT/acked.sorted"
	psql "$conn" -XAtq -c "SELECT id || '|' || port FROM orders WHERE account_id > 100000" | sort >"$OUT/have"
	assert_equal "$(comm -23 "$OUT/acked.sorted" "$OUT/have")" ""
	# the writes switched sides only at a recorded switch or rollback, and
	# the last ones went to SIDE
	n=$(sort -t'|' -k1,1n "$OUT/acked" | awk -F'|' 'NR > 1 && $3 != p { n++ } { p = $3 } END { print n + 0 }')
	(( n <= $(pd_ -c "SELECT CASE WHEN to_regclass('dbm.switch') IS NULL THEN 0 ELSE (SELECT count(*) FROM dbm.switch) END") ))
	assert_equal "$(sort -t'|' -k1,1n "$OUT/acked" | tail -n 1 | cut -d'|' -f3)" "$port"
	# the other side converges (the apply into it runs): the same rows
	dbm_wait_until 30 same_tables
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
}

# crash_and_rerun STEP [EXPECTED-RESULT]: migrate.sh is killed (SIGKILL) as
# STEP starts, with a client writing all along; run again, it ends
# consistent.
# With "group", the whole process group dies (the step's work too), as
# when the session or the service manager goes.
crash_and_rerun()
{
	local step=$1 want=${2:-migrated} rc=0
	mg_setup
	start_writer
	if [[ "${3:-}" == group ]]; then
		DBM_TEST_CRASH_AT=$step DBM_TEST_CRASH_GROUP=1 setsid "$RB/migrate.sh" >"$OUT/first.out" 2>&1 3>&- || rc=$?
	else
		DBM_TEST_CRASH_AT=$step "$RB/migrate.sh" >"$OUT/first.out" 2>&1 3>&- || rc=$?
	fi
	assert_equal "$rc" 137
	grep -q "\"step\":\"$step\",\"status\":\"started\"" "$OUT/state/run.jsonl"
	sleep 0.5
	rc=0
	"$RB/migrate.sh" >"$OUT/second.out" 2>&1 3>&- || rc=$?
	stop_writer
	cat "$OUT/second.out"
	grep -q '"type":"recover"' "$OUT/state/run.jsonl"
	summary=$(grep '"type":"summary"' "$OUT/state/run.jsonl" | tail -n 1)
	jq -e --arg want "$want" '.result == $want' <<<"$summary"
	if [[ $want == migrated ]]; then
		assert_equal "$rc" 0
		consistent target
	else
		assert_equal "$rc" 1
		consistent source
	fi
}
