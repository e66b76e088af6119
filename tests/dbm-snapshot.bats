#!/usr/bin/env bats
# dbm-snapshot: copy a live database to a target in one consistent
# snapshot (binary COPY streamed, tables in parallel, large tables split
# into ctid ranges), optionally tied to a pgoutput slot so that
# dbm-cdc-apply continues exactly where the copy ends; finished pieces are
# recorded in the target's dbm schema so --resume copies only what is left.
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
	SLOT="snap_$BATS_TEST_NUMBER"
	unset DBM_SOURCE DBM_TARGET
}

teardown()
{
	local p
	for p in ${BG_PID:-} ${WRITER_PID:-} ${APPLY_PID:-}; do
		kill -CONT "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	drop_slots "$SRC" || true
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }
both() { ps_ "$@" && pd_ "$@"; }

# drop_slots CONN: drop every slot of this test's databases (ending the
# sessions that hold them): a leftover slot holds WAL.
drop_slots()
{
	local conn=$1 i mine="(database = '$DB' OR database LIKE '${DB}\\_%')"
	for i in $(seq 1 50); do
		psql "$conn" -XAtq -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE $mine AND active_pid IS NOT NULL" >/dev/null 2>&1 || true
		psql "$conn" -XAtq -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE $mine AND NOT active" >/dev/null 2>&1 || true
		[[ "$(psql "$conn" -XAtq -c "SELECT count(*) FROM pg_replication_slots WHERE $mine")" == 0 ]] &&
			return 0
		sleep 0.1
	done
	return 1
}

# Schema sections of the source loaded on the target, as the runbook does.
pre_data() { pg_dump --section=pre-data "$S" | psql "$D" -XAtq -v ON_ERROR_STOP=1 >/dev/null; }
post_data() { pg_dump --section=post-data "$S" | psql "$D" -XAtq -v ON_ERROR_STOP=1 >/dev/null; }

# migrated TABLE...: dbm-diff finds the databases equal (exit 0, no
# differing table or row), and the independent checksum of every TABLE is
# the same on both sides.
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

# The current WAL insert position of the source: at or after the end of
# every commit made so far (the test clusters commit asynchronously, so
# pg_current_wal_lsn() may still be behind the last commit).
src_lsn() { ps_ -c 'SELECT pg_current_wal_insert_lsn()'; }

# apply_to LSN [OPTION]...: dbm-cdc-apply from this test's slot up to LSN.
apply_to()
{
	local lsn=$1
	shift
	run --separate-stderr timeout 60 dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" \
		--stop-at-lsn "$lsn" "$@"
	printf '%s\n' "$output" >"$OUT/apply"
	[[ -z "$stderr" ]] || echo "dbm-cdc-apply stderr: $stderr" >&2
	assert_success
	assert_equal "$stderr" ""
	# a change for a row the target does not hold would be a gap or an overlap
	jq -e -s '.[-1].type == "stopped" and .[-1].reason == "lsn" and .[-1].missed == 0' "$OUT/apply" >/dev/null
}

# Lines of a JSON-lines FILE of one type.
of_type() { jq -c --arg t "$2" 'select(.type == $t)' "$1"; }

# "table piece/pieces" of the copied lines of FILE, sorted.
copied_pieces() { jq -r 'select(.type == "copied") | "\(.table) \(.piece)/\(.pieces)"' "$1" | sort; }

# The pieces recorded done on the target, "table piece", sorted.
recorded_pieces() { pd_ -F' ' -c 'SELECT relname, piece FROM dbm.snapshot_piece ORDER BY 1, 2'; }

# start_stopped OUT ERR CMD...: start CMD in the background, stopped before
# it runs; BG_PID is its pid. step_until COND... lets it run 5 ms at a time
# until COND holds while it is stopped (fails when it has ended).
proc_state() { awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null; }
wait_stopped()
{
	local i
	for i in $(seq 1 500); do
		case "$(proc_state "$BG_PID")" in
		T | t | "" | Z) return 0 ;;
		esac
		sleep 0.001
	done
	return 1
}
start_stopped()
{
	local out=$1 err=$2
	shift 2
	bash -c 'kill -STOP $$; exec "$@"' dbm "$@" >"$out" 2>"$err" 3>&- &
	BG_PID=$!
	wait_stopped
}
step_until()
{
	local i st
	for i in $(seq 1 3000); do
		"$@" && return 0
		st=$(proc_state "$BG_PID")
		[[ "$st" == T || "$st" == t ]] || return 1
		kill -CONT "$BG_PID"
		sleep 0.005
		kill -STOP "$BG_PID" 2>/dev/null || return 1
		wait_stopped
	done
	return 1
}

# The number of pieces of TABLE recorded done on the target (0 before the
# state tables exist).
pieces_done()
{
	psql "$D" -XAtq -c "SELECT count(*) FROM dbm.snapshot_piece WHERE relname = '$1'" 2>/dev/null || echo 0
}

# Start a pgbench writer on the source running SCRIPT for SECS at RATE
# transactions a second; WRITER_PID is its pid.
start_writer()
{
	printf '%s\n' "$1" >"$OUT/writer.sql"
	pgbench -n -f "$OUT/writer.sql" -T "$2" -R "$3" -c 1 "$S" >"$OUT/writer.out" 2>&1 3>&- &
	WRITER_PID=$!
}
wait_writer()
{
	wait "$WRITER_PID"
	WRITER_PID=
	grep -q '^number of failed transactions: 0' "$OUT/writer.out" ||
		! grep -q 'failed transactions' "$OUT/writer.out"
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

log_mark() { LOG_POS_S=$(stat -c %s "$SRC_DIR/postgres.log"); LOG_POS_D=$(stat -c %s "$DST_DIR/postgres.log"); }
log_src() { tail -c +$((LOG_POS_S + 1)) "$SRC_DIR/postgres.log"; }
log_dst() { tail -c +$((LOG_POS_D + 1)) "$DST_DIR/postgres.log"; }

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-snapshot --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-snapshot copies a live PostgreSQL database in one consistent snapshot.'
	assert_line '  dbm-snapshot [OPTION]... --source=CONNINFO --target=CONNINFO'
	for opt in --source=CONNINFO --target=CONNINFO --slot=NAME --publication=NAME --table=PATTERN \
		--exclude-table=PATTERN --jobs=N --split-rows=N --resume --dbm-schema=NAME --version --help; do
		assert_output --partial -- "$opt"
	done
	assert_output --partial 'Exit status: 0 copied'
	run -0 dbm-snapshot -h
	assert_line --index 0 'dbm-snapshot copies a live PostgreSQL database in one consistent snapshot.'
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-snapshot --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-snapshot \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-snapshot -V
	assert_output --regexp '^dbm-snapshot \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" '^dbm-snapshot: .*--frobnicate'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-snapshot --help" for more information.'
	# nothing was done on either side
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm'")" 0
}

@test "--source is required, from the option or DBM_SOURCE" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	ps_ -c 'INSERT INTO t VALUES (1), (2)'
	run --separate-stderr dbm-snapshot --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: --source is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-snapshot --help" for more information.'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM t')" 0
	DBM_SOURCE=$S run --separate-stderr dbm-snapshot --target "$D"
	assert_success
	jq -e -s '.[-1].type == "done" and .[-1].rows == 2' <<<"$output"
	migrated t
}

@test "--target is required, from the option or DBM_TARGET" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)'
	ps_ -c 'INSERT INTO t VALUES (1), (2)'
	run --separate-stderr dbm-snapshot --source "$S"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: --target is required'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-snapshot --help" for more information.'
	run --separate-stderr dbm-snapshot
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: --source is required'
	DBM_TARGET=$D run --separate-stderr dbm-snapshot --source "$S" --slot "$SLOT"
	assert_success
	jq -e -s --arg slot "$SLOT" '.[0].type == "snapshot" and .[0].slot == $slot and .[-1].type == "done"' <<<"$output"
	migrated t
}

@test "invalid --jobs and --split-rows, --publication without --slot, or a stray argument exit 2" {
	for args in "--jobs=0" "--jobs=x" "--jobs=65" "--split-rows=0" "--split-rows=-5" "--split-rows=many" \
		"--split-size=4kB" "--split-size=1PB" "--split-size=-1GB" "--split-size=10 MB" "--split-size=big"; do
		run --separate-stderr dbm-snapshot --source "$S" --target "$D" "$args"
		assert_failure 2
		assert_equal "$output" ""
		opt=${args%%=*}
		value=${args#*=}
		[[ "${stderr_lines[0]}" == "dbm-snapshot: error: invalid value \"$value\" for $opt"* ]]
		assert_equal "${stderr_lines[1]}" 'Try "dbm-snapshot --help" for more information.'
	done
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --publication p
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: --publication needs --slot'
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" extra
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: unexpected argument "extra"'
	# no slot, no publication, no state
	assert_equal "$(psql_src -c "SELECT count(*) FROM pg_replication_slots WHERE database = '$DB'")" 0
	assert_equal "$(ps_ -c 'SELECT count(*) FROM pg_publication')" 0
	assert_equal "$(pd_ -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbm'")" 0
}

# ------------------------------------------------------------ real runs

@test "without --slot every table is copied as of one snapshot: a commit made during the copy is not in it" {
	both -c 'CREATE TABLE a (id int PRIMARY KEY, v text)' -c 'CREATE TABLE b (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE c (id int PRIMARY KEY, v text)'
	ps_ -c "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50000) g" \
		-c "INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50000) g" \
		-c "INSERT INTO c SELECT g, 'c' || g FROM generate_series(1, 50000) g"
	# the state before the concurrent commit, kept for comparison
	psql_src -c "CREATE DATABASE ${DB}_before TEMPLATE $DB"
	B=${SRC/dbname=postgres/dbname=${DB}_before}

	start_stopped "$OUT/out" "$OUT/err" dbm-snapshot --source "$S" --target "$D" --jobs 3
	snapshot_printed() { grep -q '"type":"snapshot"' "$OUT/out"; }
	step_until snapshot_printed
	# one transaction touching every table, committed while the copy runs
	ps_ -c "BEGIN" -c "UPDATE a SET v = 'changed' WHERE id % 10 = 0" -c "DELETE FROM b WHERE id <= 1000" \
		-c "INSERT INTO c VALUES (50001, 'new')" -c "COMMIT"
	kill -CONT "$BG_PID"
	rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/err")" ""

	run jq -c . "$OUT/out"
	jq -e '.type == "snapshot" and .slot == null and (.snapshot | test("^[0-9A-F]+-[0-9A-F]+-[0-9]+$")) and
		(.lsn | test("^[0-9A-F]+/[0-9A-F]+$"))' <<<"${lines[0]}"
	assert_equal "$(copied_pieces "$OUT/out")" $'public.a 0/1\npublic.b 0/1\npublic.c 0/1'
	assert_equal "$(of_type "$OUT/out" copied | jq -r '"\(.table) \(.rows)"' | sort)" \
		$'public.a 50000\npublic.b 50000\npublic.c 50000'
	jq -e -s '.[-1] | .type == "done" and .tables == 3 and .skipped == 0 and .rows == 150000' "$OUT/out"
	# the target is the database as it was before the commit
	S_NOW=$S
	S=$B migrated a b c
	[ "$(dbm_checksum "$D" a)" != "$(dbm_checksum "$S_NOW" a)" ]
	[ "$(dbm_checksum "$D" c)" != "$(dbm_checksum "$S_NOW" c)" ]

	# a second run replaces what the first loaded: the target is the source now
	run -0 dbm-snapshot --source "$S" --target "$D" --jobs 3
	jq -e -s '.[-1] | .type == "done" and .tables == 3 and .rows == 149001' <<<"$output"
	migrated a b c
	assert_equal "$(psql_src -c "SELECT count(*) FROM pg_replication_slots WHERE database = '$DB'")" 0
	assert_equal "$(ps_ -c 'SELECT count(*) FROM pg_publication')" 0
}

@test "--slot creates a pgoutput slot and a FOR ALL TABLES publication via the partition root; the first line names both" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE u (id int PRIMARY KEY)'
	ps_ -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g" -c 'INSERT INTO u VALUES (1)'
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/out"
	assert_equal "${#lines[@]}" 4
	# the snapshot line: slot, its consistent point and the exported snapshot
	jq -e --arg slot "$SLOT" '.type == "snapshot" and .slot == $slot and .publication == $slot and
		.resumed == false and (.snapshot | test("^[0-9A-F]+-[0-9A-F]+-[0-9]+$")) and
		(.lsn | test("^[0-9A-F]+/[0-9A-F]+$"))' <<<"${lines[0]}"
	lsn=$(jq -r .lsn <<<"${lines[0]}")
	assert_equal "$(jq -r 'keys_unsorted[0]' <<<"${lines[0]}")" type
	assert_equal "$(psql_src -c "SELECT plugin, slot_type, database, temporary, active, confirmed_flush_lsn
		FROM pg_replication_slots WHERE slot_name = '$SLOT'")" "pgoutput|logical|$DB|f|f|$lsn"
	assert_equal "$(ps_ -c "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot
		FROM pg_publication WHERE pubname = '$SLOT'")" 't|t|t|t|t|t'
	# copied lines per piece, the done line last
	assert_equal "$(copied_pieces "$OUT/out")" $'public.t 0/1\npublic.u 0/1'
	jq -e -s 'map(select(.type == "copied")) | length == 2 and
		all((keys_unsorted | .[0] == "type") and .rows >= 1 and .bytes > 0 and .ms >= 0)' "$OUT/out"
	jq -e --arg slot "$SLOT" --arg lsn "$lsn" '.type == "done" and .slot == $slot and .lsn == $lsn and
		.tables == 2 and .skipped == 0 and .rows == 1001' <<<"${lines[3]}"
	# what the target's dbm schema records
	assert_equal "$(pd_ -c "SELECT relname, pieces, copy_lsn FROM dbm.snapshot_table ORDER BY 1")" \
		"public.t|1|$lsn"$'\n'"public.u|1|$lsn"
	assert_equal "$(pd_ -c 'SELECT relname, piece, rows FROM dbm.snapshot_piece ORDER BY 1')" \
		$'public.t|0|1000\npublic.u|0|1'
	assert_equal "$(pd_ -c 'SELECT slot, lsn, finished_at IS NOT NULL FROM dbm.snapshot_run')" "$SLOT|$lsn|t"
	migrated t u
	# --publication names it
	psql_src -c "CREATE DATABASE ${DB}_p"
	OTHER=${SRC/dbname=postgres/dbname=${DB}_p}
	run -0 dbm-snapshot --source "$OTHER" --target "$D" --slot "${SLOT}_p" --publication 'My Pub'
	jq -e -s --arg slot "${SLOT}_p" '.[0].publication == "My Pub" and .[0].slot == $slot and
		(.[-1] | .type == "done" and .tables == 0)' <<<"$output"
	assert_equal "$(psql "$OTHER" -XAtq -c "SELECT pubname, puballtables, pubviaroot FROM pg_publication")" 'My Pub|t|t'
}

@test "--split-size splits a table by heap size; by default (8GB) a 200000-row table is copied whole, with COPY FREEZE" {
	both -c 'CREATE TABLE big (id int PRIMARY KEY, v text)'
	ps_ -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200000) g" -c 'VACUUM ANALYZE'
	pages=$(ps_ -c "SELECT relpages FROM pg_class WHERE relname = 'big'")
	# pieces of at most 4MB (512 pages) of heap
	want=$(((pages + 511) / 512))
	((want >= 3))
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --jobs 2 --split-size 4MB
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(jq -r 'select(.type == "copied") | .pieces' <<<"$output" | sort -u)" "$want"
	assert_equal "$(jq -s 'map(select(.type == "copied") | .rows) | add' <<<"$output")" 200000
	migrated big
	# the default: one piece, frozen
	pd_ -c 'DROP SCHEMA dbm CASCADE' -c 'TRUNCATE big'
	log_mark
	PGOPTIONS='-c log_statement=all' run --separate-stderr dbm-snapshot --source "$S" --target "$D" --jobs 2
	assert_success
	assert_equal "$(jq -c 'select(.type == "copied") | [.table, .piece, .pieces, .rows]' <<<"$output")" '["public.big",0,1,200000]'
	log_dst >"$OUT/dst.log"
	assert_equal "$(grep -c 'COPY public.big (.*) FROM STDIN (FORMAT binary, FREEZE)' "$OUT/dst.log")" 1
	migrated big
}

@test "--jobs and --split-rows split large tables into ctid ranges; unsplit tables load with TRUNCATE and COPY FREEZE" {
	both -c 'CREATE TABLE big (id int PRIMARY KEY, v text)' -c 'CREATE TABLE small (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE empty (id int)'
	ps_ -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200000) g" \
		-c "INSERT INTO small SELECT g, 's' || g FROM generate_series(1, 100) g" -c 'VACUUM ANALYZE'
	# rows already on the target are replaced
	pd_ -c "INSERT INTO small VALUES (1000, 'stale')" -c "INSERT INTO big VALUES (0, 'stale')"
	log_mark
	PGOPTIONS='-c log_statement=all' run --separate-stderr dbm-snapshot --source "$S" --target "$D" \
		--jobs 2 --split-rows 50000
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/out"
	assert_equal "$(copied_pieces "$OUT/out")" $'public.big 0/4\npublic.big 1/4\npublic.big 2/4\npublic.big 3/4\npublic.empty 0/1\npublic.small 0/1'
	assert_equal "$(of_type "$OUT/out" copied | jq -s 'map(select(.table == "public.big") | .rows) | add')" 200000
	of_type "$OUT/out" copied | jq -e -s 'map(select(.table == "public.big")) | all(.rows > 30000 and .rows < 70000)'
	jq -e -s '.[-1] | .type == "done" and .tables == 3 and .rows == 200100' "$OUT/out"
	assert_equal "$(recorded_pieces)" $'public.big 0\npublic.big 1\npublic.big 2\npublic.big 3\npublic.empty 0\npublic.small 0'
	assert_equal "$(pd_ -c 'SELECT relname, pieces FROM dbm.snapshot_table ORDER BY 1')" \
		$'public.big|4\npublic.empty|1\npublic.small|1'
	assert_equal "$(pd_ -c "SELECT sum(rows) FROM dbm.snapshot_piece WHERE relname = 'public.big'")" 200000

	# binary COPY out of the source: one per piece, ctid ranges for big
	log_src >"$OUT/src.log"
	assert_equal "$(grep -c 'COPY (SELECT .* FROM ONLY public.big WHERE ctid >= .*TO STDOUT (FORMAT binary)' "$OUT/src.log")" 4
	assert_equal "$(grep -c 'COPY public.small (.*) TO STDOUT (FORMAT binary)' "$OUT/src.log")" 1
	# the target: TRUNCATE and COPY FREEZE where not split, no FREEZE for the pieces
	log_dst >"$OUT/dst.log"
	assert_equal "$(grep -c 'TRUNCATE ONLY public.small' "$OUT/dst.log")" 1
	assert_equal "$(grep -c 'COPY public.small (.*) FROM STDIN (FORMAT binary, FREEZE)' "$OUT/dst.log")" 1
	assert_equal "$(grep -c 'COPY public.big (.*) FROM STDIN (FORMAT binary)$' "$OUT/dst.log")" 4
	assert_equal "$(grep -c 'TRUNCATE ONLY public.big' "$OUT/dst.log")" 1
	# the pieces were loaded by two sessions
	assert_equal "$(grep 'COPY public.big' "$OUT/dst.log" | grep -o '\[[0-9]*\]' | sort -u | wc -l)" 2
	# FREEZE really froze the small table's pages
	pd_ -c 'CREATE EXTENSION pg_visibility'
	assert_equal "$(pd_ -c "SELECT bool_and(all_frozen) FROM pg_visibility_map('small')")" t
	migrated big small empty

	# --resume after a finished run copies nothing
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --jobs 2 --split-rows 50000 --resume
	assert_success
	assert_equal "$(of_type <(echo "$output") copied)" ""
	jq -e -s '.[0].type == "snapshot" and .[0].resumed == true and
		(.[-1] | .type == "done" and .tables == 0 and .skipped == 3 and .rows == 0)' <<<"$output"
	migrated big small empty
}

@test "with --slot, dbm-cdc-apply continues exactly where the copy ends while the source is written" {
	both -c 'CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text)' \
		-c 'CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL)' \
		-c 'CREATE TABLE ev (id bigserial PRIMARY KEY, b int, at timestamptz DEFAULT now())'
	ps_ -c "INSERT INTO big SELECT g, 0, md5(g::text) FROM generate_series(1, 200000) g" \
		-c 'INSERT INTO hot VALUES (1, 0)' -c 'VACUUM ANALYZE'
	# every transaction: a counter, a random row, an insert and a delete
	start_writer '\set b random(1, 200000)
BEGIN;
UPDATE hot SET n = n + 1 WHERE id = 1;
UPDATE big SET n = n + 1 WHERE id = :b;
INSERT INTO ev (b) VALUES (:b);
DELETE FROM ev WHERE id = (SELECT min(id) FROM ev) AND (SELECT count(*) FROM ev) > 50;
END;' 4 300
	sleep 0.5
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --jobs 2 --split-rows 50000
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/out"
	jq -e -s '.[0].type == "snapshot" and .[-1].type == "done"' "$OUT/out"
	assert_equal "$(copied_pieces "$OUT/out" | grep -c big)" 4
	# the copy saw the counter at some value, the source moved on
	wait_writer
	[ "$(pd_ -c 'SELECT n FROM hot')" -lt "$(ps_ -c 'SELECT n FROM hot')" ]
	apply_to "$(src_lsn)"
	migrated big hot ev
	assert_equal "$(pd_ -c 'SELECT n FROM hot')" "$(ps_ -c 'SELECT n FROM hot')"
}

@test "kill -9 mid-copy of a split table while the source is written; --resume recopies only unfinished tables and dbm-cdc-apply skips what the recopy holds" {
	# inserts (a key conflict or a duplicate row when applied twice) and
	# deletes (a missed row) make an overlap show, as well as a gap
	both -c 'CREATE TABLE big (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text)' \
		-c 'CREATE TABLE medium (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text)' \
		-c 'CREATE TABLE small (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)' \
		-c 'CREATE TABLE nokey (b int, m int)' -c 'CREATE SEQUENCE ids START 1000001'
	# medium is not split but has more pages than a piece of big: it is
	# copied first, small and nokey last
	ps_ -c "INSERT INTO big SELECT g, 0, md5(g::text) FROM generate_series(1, 300000) g" \
		-c "INSERT INTO medium SELECT g, 0, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g" \
		-c "INSERT INTO small SELECT g, 0 FROM generate_series(1, 100) g" -c 'VACUUM ANALYZE'
	psql_dst -c "DROP DATABASE $DB" -c "CREATE DATABASE $DB"
	pre_data
	start_writer '\set b random(1, 300000)
\set m random(1, 40000)
\set s random(1, 100)
BEGIN;
UPDATE big SET n = n + 1 WHERE id = 1;
UPDATE big SET n = n + 1 WHERE id = :b;
INSERT INTO big (id, v) VALUES (nextval($$ids$$), $$new$$);
DELETE FROM big WHERE id = :b + 1;
UPDATE medium SET n = n + 1 WHERE id = :m;
INSERT INTO medium (id) VALUES (nextval($$ids$$));
DELETE FROM medium WHERE id = :m + 1;
UPDATE small SET n = n + 1 WHERE id = :s;
INSERT INTO nokey VALUES (:b, :m);
END;' 6 200
	sleep 0.3

	start_stopped "$OUT/out1" "$OUT/err1" dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" \
		--jobs 2 --split-rows 60000
	mid_copy()
	{
		local m b
		m=$(pieces_done public.medium)
		b=$(pieces_done public.big)
		[[ "$m" == 1 && "$b" -ge 1 && "$b" -le 3 ]]
	}
	step_until mid_copy
	kill -KILL "$BG_PID"
	wait "$BG_PID" || true
	BG_PID=
	lsn0=$(jq -r 'select(.type == "snapshot") | .lsn' "$OUT/out1")
	[ -n "$lsn0" ]
	assert_equal "$(pd_ -c "SELECT pieces FROM dbm.snapshot_table WHERE relname = 'public.big'")" 5
	done_before=$(pd_ -c "SELECT t.relname FROM dbm.snapshot_table t WHERE t.pieces =
		(SELECT count(*) FROM dbm.snapshot_piece p WHERE p.relname = t.relname) ORDER BY 1")
	[[ "$done_before" == *public.medium* && "$done_before" != *public.big* ]]
	recorded=$(recorded_pieces | wc -l)
	printed=$(of_type "$OUT/out1" copied | wc -l)
	# the slot stays, inactive, at the first snapshot's position
	assert_equal "$(psql_src -c "SELECT active, confirmed_flush_lsn FROM pg_replication_slots
		WHERE slot_name = '$SLOT'")" "f|$lsn0"
	sleep 0.5 # the source moves on before the resumed copy

	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --jobs 2 \
		--split-rows 60000 --resume
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/out2"
	lsn1=$(jq -r 'select(.type == "snapshot") | .lsn' "$OUT/out2")
	jq -e -s --arg slot "$SLOT" '.[0] | .type == "snapshot" and .slot == $slot and .resumed == true' "$OUT/out2"
	[ "$lsn1" != "$lsn0" ]
	# exactly the tables not finished before: big whole again, the small
	# ones if they were not done, medium not at all
	expected=$(for t in public.big public.medium public.nokey public.small; do
		grep -qx "$t" <<<"$done_before" && continue
		if [[ $t == public.big ]]; then printf '%s\n' "$t 0/5" "$t 1/5" "$t 2/5" "$t 3/5" "$t 4/5"; else echo "$t 0/1"; fi
	done)
	assert_equal "$(copied_pieces "$OUT/out2")" "$(sort <<<"$expected")"
	nskipped=$(grep -c . <<<"$done_before")
	jq -e -s --argjson sk "$nskipped" '.[-1] | .type == "done" and .skipped == $sk and .tables == 4 - $sk' "$OUT/out2"
	# the recopied table carries the new position, the others the first
	assert_equal "$(pd_ -c "SELECT copy_lsn FROM dbm.snapshot_table WHERE relname = 'public.big'")" "$lsn1"
	assert_equal "$(pd_ -c "SELECT copy_lsn FROM dbm.snapshot_table WHERE relname = 'public.medium'")" "$lsn0"
	assert_equal "$(pd_ -c "SELECT count(*) FROM dbm.snapshot_piece WHERE relname = 'public.big'")" 5
	# the resume's temporary slot is gone; the slot has not moved
	assert_equal "$(psql_src -c "SELECT slot_name, confirmed_flush_lsn FROM pg_replication_slots WHERE database = '$DB'")" \
		"$SLOT|$lsn0"

	post_data
	wait_writer
	apply_to "$(src_lsn)"
	migrated big medium small nokey
	assert_equal "$(pd_ -c 'SELECT n FROM big WHERE id = 1')" "$(ps_ -c 'SELECT n FROM big WHERE id = 1')"

	# the copied lines reached stdout as their pieces were done (at most
	# one per job may be between its commit and its line at the kill)
	[ "$recorded" -ge 2 ]
	echo "pieces recorded at the kill: $recorded, copied lines printed: $printed" >&2
	[ "$printed" -ge 1 ]
	[ "$printed" -ge $((recorded - 2)) ]
}

@test "--resume of an interrupted partitioned table: dbm-cdc-apply skips what the recopied partition holds" {
	both -c 'CREATE TABLE p (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, v text) PARTITION BY RANGE (id)' \
		-c 'CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (MINVALUE) TO (150001)' \
		-c 'CREATE TABLE p_2 PARTITION OF p FOR VALUES FROM (150001) TO (MAXVALUE)' \
		-c 'CREATE SEQUENCE ids START 1000001'
	ps_ -c "INSERT INTO p SELECT g, 0, md5(g::text) FROM generate_series(1, 300000) g" -c 'VACUUM ANALYZE'
	# inserts into both partitions: applied twice, they conflict
	start_writer 'UPDATE p SET n = n + 1 WHERE id IN (1, 150001, 300000);
INSERT INTO p (id) VALUES (nextval($$ids$$)), (-nextval($$ids$$));' 5 200
	sleep 0.3
	start_stopped "$OUT/out1" "$OUT/err1" dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" \
		--jobs 2 --split-rows 50000
	some_done()
	{
		local n
		n=$(psql "$D" -XAtq -c 'SELECT count(*) FROM dbm.snapshot_piece' 2>/dev/null) || return 1
		[[ "$n" -ge 1 && "$n" -le 4 ]]
	}
	step_until some_done
	kill -KILL "$BG_PID"
	wait "$BG_PID" || true
	BG_PID=
	sleep 0.5
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --jobs 2 \
		--split-rows 50000 --resume
	assert_success
	assert_equal "$stderr" ""
	# a partition with an unfinished piece is copied again, whole
	[ "$(of_type <(echo "$output") copied | wc -l)" -ge 3 ]
	wait_writer
	apply_to "$(src_lsn)"
	migrated p
}

@test "SIGTERM stops after the pieces in flight with a stopped line and exit 0; --resume finishes the copy" {
	both -c 'CREATE TABLE big (id int PRIMARY KEY, v text)' -c 'CREATE TABLE small (id int PRIMARY KEY)'
	ps_ -c "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 300000) g" \
		-c 'INSERT INTO small SELECT generate_series(1, 10)' -c 'VACUUM ANALYZE'
	start_stopped "$OUT/out" "$OUT/err" dbm-snapshot --source "$S" --target "$D" --jobs 2 --split-rows 30000
	one_done() { [ "$(pieces_done public.big)" -ge 1 ]; }
	step_until one_done
	kill -TERM "$BG_PID"
	kill -CONT "$BG_PID"
	rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/err")" ""
	run jq -c 'select(.type != "copied")' "$OUT/out"
	assert_equal "${#lines[@]}" 2
	jq -e '.type == "snapshot"' <<<"${lines[0]}"
	jq -e '.type == "stopped" and .reason == "signal" and .pieces == 11 and .pieces_done < 11' <<<"${lines[1]}"
	# every piece it started is done and recorded, with its copied line
	n=$(jq -r .pieces_done <<<"${lines[1]}")
	assert_equal "$(recorded_pieces | wc -l)" "$n"
	assert_equal "$(of_type "$OUT/out" copied | wc -l)" "$n"
	[ "$(pd_ -c 'SELECT count(*) FROM big')" -lt 300000 ]

	run -0 dbm-snapshot --source "$S" --target "$D" --jobs 2 --split-rows 30000 --resume
	printf '%s\n' "$output" >"$OUT/out2"
	assert_equal "$(copied_pieces "$OUT/out2" | grep -c '^public.big ')" 10
	jq -e -s '.[-1] | .type == "done"' "$OUT/out2"
	migrated big small
}

@test "partitioned tables, inheritance, quoted identifiers, generated and dropped columns copy whole" {
	both -c 'CREATE TABLE inh (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE inh_c (w int) INHERITS (inh)' \
		-c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)' \
		-c 'CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (MINVALUE) TO (500) PARTITION BY HASH (id)' \
		-c 'CREATE TABLE p_low_0 PARTITION OF p_low FOR VALUES WITH (MODULUS 2, REMAINDER 0)' \
		-c 'CREATE TABLE p_low_1 PARTITION OF p_low FOR VALUES WITH (MODULUS 2, REMAINDER 1)' \
		-c 'CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (500) TO (MAXVALUE)' \
		-c 'CREATE SCHEMA "My S"' \
		-c 'CREATE TABLE "My S"."a ""b" ("Kéy Col" int PRIMARY KEY, "V" text, "x y" int)' \
		-c 'CREATE TABLE g (id int PRIMARY KEY, a int, twice int GENERATED ALWAYS AS (a * 2) STORED)'
	ps_ -c 'CREATE TABLE d (id int PRIMARY KEY, gone text, v text)' -c 'ALTER TABLE d DROP COLUMN gone'
	pd_ -c 'CREATE TABLE d (v text, id int PRIMARY KEY)'
	ps_ -c "INSERT INTO p SELECT g, 'v' || g FROM generate_series(1, 1000) g" \
		-c "INSERT INTO \"My S\".\"a \"\"b\" VALUES (1, 'x', 1), (2, NULL, NULL), (3, 'it''s \"q\"', 3)" \
		-c 'INSERT INTO g (id, a) SELECT g, g FROM generate_series(1, 50) g' \
		-c "INSERT INTO d (id, v) SELECT g, 'd' || g FROM generate_series(1, 50) g" \
		-c "INSERT INTO inh SELECT g, 'parent' FROM generate_series(1, 10) g" \
		-c "INSERT INTO inh_c SELECT g, 'child', g FROM generate_series(11, 30) g"
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_success
	assert_equal "$stderr" ""
	printf '%s\n' "$output" >"$OUT/out"
	assert_equal "$(copied_pieces "$OUT/out")" "$(sort <<'EOF'
"My S"."a ""b" 0/1
public.d 0/1
public.g 0/1
public.inh 0/1
public.inh_c 0/1
public.p_high 0/1
public.p_low_0 0/1
public.p_low_1 0/1
EOF
)"
	assert_equal "$(pd_ -c "SELECT count(*) FROM ONLY p_high")" 501
	# an inheritance parent's copy holds its own rows only, the child's its own
	assert_equal "$(pd_ -c "SELECT (SELECT count(*) FROM ONLY inh) || ' ' || (SELECT count(*) FROM inh_c)")" "10 20"
	migrated p '"My S"."a ""b"' g '(SELECT id, v FROM d)' inh_c '(SELECT id, v FROM ONLY inh)'
}

@test "every built-in type copies exactly, whatever the target's output settings" {
	ddl='CREATE TABLE typed (id int PRIMARY KEY, tstz timestamptz, ts timestamp, d date,
		tm time, ttz timetz, iv interval, f4 real, f8 double precision, n numeric, n2 numeric(12,4),
		b bytea, arr timestamptz[], rng tstzrange, j jsonb, js json, u uuid, ia int[], ta text[],
		i2 smallint, i8 bigint, bo boolean, ch char(5), vc varchar(10), ip inet, ci cidr, mac macaddr,
		pt point, bx box, bits bit varying(16), m money, xi xid8, tv tsvector, oi oid)'
	both -c "$ddl"
	ps_ -c "INSERT INTO typed VALUES
		(1, '2024-02-29 23:30:00.123456+00', '2024-02-29 23:30:00', '2024-02-29', '23:30:00',
		 '23:30:00+05:30', '1 year 2 mons 3 days 04:05:06.789', 0.1, 0.1::float8 + 0.2, 1.50, 12345678.1234,
		 '\\x00ff41', ARRAY['2024-01-01 00:00+00'::timestamptz],
		 tstzrange('2024-01-01 00:00+00', '2024-06-01 00:00+00'), '{\"a\": [1, 2.50, null]}', '{\"b\":  1}',
		 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', '{\"a b\",NULL,\"\\\\\",\"\"}',
		 -32768, 9223372036854775807, true, 'ab', 'héllo', '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
		 '(1.5,-2)', '((0,0),(1,1))', B'1011', 12.34, '123', 'a fat cat', 4294967295),
		(2, 'infinity', '0044-03-15 12:00 BC', '1999-12-31', '00:00:01', '00:00:00-08',
		 '-1 days +02:00:00', 'NaN', '-Infinity', 'NaN', -0.0001, '\\x', '{}', 'empty', 'null', '[]',
		 '00000000-0000-0000-0000-000000000000', '{}', '{}', 0, -1, false, '', '', '::1', '::/0',
		 'ff:ff:ff:ff:ff:ff', '(0,0)', '((-1,-1),(2,3))', B'', -0.01, '0', '', 0),
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
	pd_ -c "ALTER DATABASE $DB SET TimeZone = 'Asia/Kathmandu'" -c "ALTER DATABASE $DB SET DateStyle = 'SQL, DMY'" \
		-c "ALTER DATABASE $DB SET IntervalStyle = 'iso_8601'" -c "ALTER DATABASE $DB SET extra_float_digits = -3" \
		-c "ALTER DATABASE $DB SET bytea_output = 'escape'"
	run -0 dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	jq -e -s '.[-1] | .type == "done" and .rows == 3' <<<"$output"
	PINNED='-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex'
	run --separate-stderr dbm-diff --source "$S" --target "$D"
	assert_success
	PGOPTIONS=$PINNED migrated typed
	assert_equal "$(PGOPTIONS=$PINNED pd_ -c 'SELECT f8, n2, j, ta FROM typed WHERE id = 1')" \
		'0.30000000000000004|12345678.1234|{"a": [1, 2.50, null]}|{"a b",NULL,"\\",""}'
}

@test "user-defined types (enum, enum array, composite, domain, range) copy although their OIDs differ on the target" {
	# the target gets other type OIDs, as after pg_dump into another cluster
	pd_ -c "CREATE TYPE filler AS ENUM ('x')" -c 'CREATE TYPE filler2 AS (x int)'
	both -c "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')" \
		-c 'CREATE TYPE pair AS (a int, m mood)' \
		-c 'CREATE DOMAIN posint AS int CHECK (VALUE > 0)' \
		-c 'CREATE TYPE floatrange AS RANGE (subtype = float8)' \
		-c 'CREATE TABLE ut (id int PRIMARY KEY, m mood, ms mood[], p pair, ps pair[], d posint, r floatrange)'
	[ "$(ps_ -c "SELECT 'mood'::regtype::oid")" != "$(pd_ -c "SELECT 'mood'::regtype::oid")" ]
	ps_ -c "INSERT INTO ut VALUES (1, 'ok', '{sad,happy}', '(1,happy)', ARRAY['(2,sad)'::pair], 7, '[1.5,2.5)'),
		(2, NULL, '{}', NULL, NULL, NULL, 'empty')"
	run --separate-stderr dbm-snapshot --source "$S" --target "$D"
	assert_success
	assert_equal "$stderr" ""
	migrated ut
}

@test "--table and --exclude-table choose the tables copied" {
	both -c 'CREATE SCHEMA s1' -c 'CREATE TABLE s1.orders (id int)' -c 'CREATE TABLE s1.order_items (id int)' \
		-c 'CREATE TABLE public.customers (id int)'
	for t in s1.orders s1.order_items customers; do ps_ -c "INSERT INTO $t VALUES (1), (2)"; done
	run -0 dbm-snapshot --source "$S" --target "$D" --table 's1.*' --exclude-table '*items'
	assert_equal "$(copied_pieces <(echo "$output"))" 's1.orders 0/1'
	assert_equal "$(pd_ -c 'SELECT (SELECT count(*) FROM s1.orders), (SELECT count(*) FROM s1.order_items),
		(SELECT count(*) FROM customers)')" '2|0|0'
	run -0 dbm-snapshot --source "$S" --target "$D" -t customers -t 's1.order_items'
	assert_equal "$(copied_pieces <(echo "$output"))" $'public.customers 0/1\ns1.order_items 0/1'
	migrated s1.orders s1.order_items customers
}

@test "a FOR ALL TABLES publication already on the target (a reverse publication made early) does not stop the copy or its resume" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	ps_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g"
	pd_ -c 'CREATE PUBLICATION early FOR ALL TABLES'
	run -0 --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_equal "$stderr" ""
	run -0 --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --resume
	assert_equal "$stderr" ""
	assert_equal "$(pd_ -c 'SELECT count(*), count(finished_at) FROM dbm.snapshot_run')" '1|1'
	migrated t
}

# --------------------------------------------------------------- bad input

@test "a table missing on the target exits 2 naming it, before anything is copied or a slot is left behind" {
	both -c 'CREATE TABLE a (id int PRIMARY KEY)'
	ps_ -c 'CREATE TABLE "Zed Q" (id int)' -c 'INSERT INTO a VALUES (1)' -c 'INSERT INTO "Zed Q" VALUES (1)'
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-snapshot: error: table public."Zed Q" is missing on the target'
	assert_equal "$(pd_ -c 'SELECT count(*) FROM a')" 0
	# no slot holds WAL for a copy that never started
	assert_equal "$(psql_src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")" 0
	# fixed, the same command works
	pd_ -c 'CREATE TABLE "Zed Q" (id int)'
	run -0 dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	migrated a '"Zed Q"'
}

@test "a column missing on the target, or of another type, exits 2 naming table and column, nothing copied" {
	both -c 'CREATE TABLE a (id int PRIMARY KEY)'
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, "Val" text, n int)' -c 'INSERT INTO t VALUES (1, $$x$$, 1)' \
		-c 'INSERT INTO a VALUES (1)'
	pd_ -c 'CREATE TABLE t (id int PRIMARY KEY, n int)'
	run --separate-stderr dbm-snapshot --source "$S" --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" 'dbm-snapshot: error: table public.t: column "Val" is missing on the target'
	pd_ -c 'ALTER TABLE t ADD COLUMN "Val" varchar(3)'
	run --separate-stderr dbm-snapshot --source "$S" --target "$D"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" 'dbm-snapshot: error: table public.t: column "Val" is text on the source but character varying(3) on the target'
	assert_equal "$(pd_ -c 'SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM t)')" 0
}

@test "a slot that already exists exits 2 naming it, nothing copied" {
	both -c 'CREATE TABLE a (id int PRIMARY KEY)'
	ps_ -c 'INSERT INTO a VALUES (1)'
	ps_ -c "SELECT pg_create_logical_replication_slot('$SLOT', 'pgoutput')" >/dev/null
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-snapshot: error: could not create replication slot \"$SLOT\": replication slot \"$SLOT\" already exists"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM a')" 0
	# --resume needs the slot the first run made
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "${SLOT}_x" --resume
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" "dbm-snapshot: error: replication slot \"${SLOT}_x\" does not exist: nothing to resume"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM a')" 0
}

@test "a source without wal_level=logical: --slot exits 2 naming the setting, a plain copy works" {
	OTHER=$(dbm_start_cluster replica)
	dir=$(dbm_cluster_dir replica)
	psql "$OTHER" -XAtq -c 'ALTER SYSTEM SET wal_level = replica'
	"$REPO_ROOT/scripts/pgcluster.sh" stop "$dir"
	OTHER=$("$REPO_ROOT/scripts/pgcluster.sh" start "$dir" 3>&-)
	assert_equal "$(psql "$OTHER" -XAtq -c 'SHOW wal_level')" replica
	psql "$OTHER" -XAtq -c 'CREATE TABLE a (id int PRIMARY KEY)' -c 'INSERT INTO a VALUES (1), (2)'
	pd_ -c 'CREATE TABLE a (id int PRIMARY KEY)'
	run -0 dbm-snapshot --source "$OTHER" --target "$D"
	S=$OTHER migrated a
	pd_ -c 'TRUNCATE a'
	run --separate-stderr dbm-snapshot --source "$OTHER" --target "$D" --slot "$SLOT"
	assert_failure 2
	assert_equal "$output" ""
	assert_regex "${stderr_lines[-1]}" "^dbm-snapshot: error: the source has wal_level = replica: a slot needs wal_level = logical"
	assert_equal "$(pd_ -c 'SELECT count(*) FROM a')" 0
	# one line: no raw server notice before it
	assert_equal "${#stderr_lines[@]}" 1
}

@test "a refused connection exits 2 with one error line naming the server, and no password" {
	port=$(closed_port)
	bad="host=127.0.0.1 port=$port user=postgres password=s3cret"
	for args in "--source|$S|--target|$bad" "--source|$bad|--target|$D" "--source|$bad|--target|$D|--slot|$SLOT"; do
		IFS='|' read -r -a argv <<<"$args"
		run --separate-stderr dbm-snapshot "${argv[@]}"
		assert_failure 2
		assert_equal "$output" ""
		assert_equal "${#stderr_lines[@]}" 1
		assert_regex "${stderr_lines[0]}" "^dbm-snapshot: error: could not connect to \"[^\"]*port=$port[^\"]*\": .*Connection refused$"
		refute_regex "$stderr" 's3cret'
	done
}
