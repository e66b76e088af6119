#!/usr/bin/env bats
# dbm-hash: order-independent bucket digests of every table of a database,
# read with one COPY per table (or per ctid range) in one snapshot.
#
# Every test gets its own database on both clusters (setup), so tests do not
# see each other's tables; the big table for the dropped-connection test is
# made once in setup_file, in database "postgres".

bats_require_minimum_version 1.5.0

load helpers/common

BIG_ROWS=1000000

setup_file()
{
	dbm_start_clusters
	psql_src -c 'CREATE TABLE big (id int PRIMARY KEY, a int, b text, c timestamptz)' \
		-c "INSERT INTO big SELECT g, g % 1000, md5(g::text),
		        '2020-01-01 00:00+00'::timestamptz + g * interval '1 minute'
		    FROM generate_series(1, $BIG_ROWS) g" \
		-c 'VACUUM ANALYZE big'
}

teardown_file()
{
	dbm_stop_clusters
}

setup()
{
	DB="t_$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
}

teardown()
{
	# a session left open by a failed test
	if [[ -n "${SESSION_PID:-}" ]]; then
		exec 7>&- || true
		kill "$SESSION_PID" 2>/dev/null || true
	fi
	if [[ -n "${BG_PID:-}" ]]; then
		kill -CONT "$BG_PID" 2>/dev/null || true
		kill "$BG_PID" 2>/dev/null || true
	fi
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }
both() { ps_ "$@" && pd_ "$@"; }

# The settings dbm pins, for an independent checksum that must not depend
# on a database's own settings.
PINNED='-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex'

# The digests of a dbm-hash output: bucket and table lines without timing.
digests() { jq -c 'select(.type == "bucket" or .type == "table") | del(.ms)' "$1"; }

# The table line of TABLE in FILE, without timing.
table_line() { jq -c --arg t "$2" 'select(.type == "table" and .table == $t) | del(.ms)' "$1"; }

# Names of the tables in a dbm-hash output, in output order.
table_names() { jq -r 'select(.type == "table") | .table' "$1"; }

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

# Remember where the server log of a cluster directory ends; log_since
# prints what was logged after that.
log_mark() { LOG_FILE=$1/postgres.log; LOG_POS=$(stat -c %s "$LOG_FILE"); }
log_since() { tail -c +$((LOG_POS + 1)) "$LOG_FILE"; }

# A psql session kept open across steps: session_open CONN, session_send SQL,
# session_close. Its output goes to $SESSION_OUT.
session_open()
{
	SESSION_FIFO=$OUT/session.fifo
	SESSION_OUT=$OUT/session.out
	rm -f "$SESSION_FIFO"
	mkfifo "$SESSION_FIFO"
	psql "$1" -XAtq -v ON_ERROR_STOP=1 <"$SESSION_FIFO" >"$SESSION_OUT" 2>&1 3>&- &
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
session_says() { grep -qx -- "$1" "$SESSION_OUT"; }

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-hash --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-hash fingerprints the tables of a live PostgreSQL database.'
	assert_line '  dbm-hash [OPTION]...'
	assert_output --partial '--db=CONNINFO'
	assert_output --partial '--only-buckets=FILE'
	assert_output --partial 'Exit status: 0 done, 2 error'
	run -0 dbm-hash -h
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-hash --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-hash \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-hash -V
	assert_output --regexp '^dbm-hash \(dbm\) '
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-hash --frobnicate --db "$S"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" "^dbm-hash: .*--frobnicate"
	assert_equal "${stderr_lines[1]}" 'Try "dbm-hash --help" for more information.'
}

@test "invalid --buckets, --jobs and --split-pages values exit 2 naming the option" {
	for args in "--buckets=0" "--buckets=x" "--buckets=12abc" "--jobs=0" "--jobs=-1" \
		"--jobs=65" "--split-pages=0" "--split-pages=ten"; do
		run --separate-stderr dbm-hash --db "$S" "$args"
		assert_failure 2
		assert_equal "$output" ""
		opt=${args%%=*}
		value=${args#*=}
		assert_equal "${#stderr_lines[@]}" 2
		[[ "${stderr_lines[0]}" == "dbm-hash: error: invalid value \"$value\" for $opt"* ]]
		assert_equal "${stderr_lines[1]}" 'Try "dbm-hash --help" for more information.'
	done
}

@test "a stray argument and --only-buckets without --rows exit 2 with a hint" {
	run --separate-stderr dbm-hash --db "$S" public.t
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-hash: error: unexpected argument "public.t"'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-hash --help" for more information.'

	: >"$OUT/empty"
	run --separate-stderr dbm-hash --db "$S" --only-buckets "$OUT/empty"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-hash: error: --only-buckets needs --rows'
}

# --------------------------------------------------------------- real runs

@test "prints bucket lines, then the table line with key and columns by name, then a done line" {
	ps_ -c 'CREATE TABLE t (v2 text, id int PRIMARY KEY, a int)' \
		-c "INSERT INTO t SELECT 'v' || g, g, g % 3 FROM generate_series(1, 100) g"
	run --separate-stderr dbm-hash --db "$S"
	assert_success
	assert_equal "$stderr" ""
	echo "$output" >"$OUT/h"
	# every line is one JSON object with "type" first
	jq -e -s 'all(.[]; (keys_unsorted[0] == "type"))' "$OUT/h"
	# bucket lines, then one table line, then the done line, nothing else
	jq -e -s '[.[].type] | (.[0:-2] | all(. == "bucket")) and .[-2] == "table" and .[-1] == "done"' "$OUT/h"
	jq -e -s '[.[] | select(.type == "bucket")] |
		length > 1 and
		all(.table == "public.t" and .buckets == 4096 and (.bucket | type == "number") and
		    .bucket >= 0 and .bucket < 4096 and .rows >= 1 and (.hash | test("^[0-9a-f]{32}$"))) and
		([.[].rows] | add) == 100 and
		([.[].bucket] | . == (sort | unique))' "$OUT/h"
	table_line "$OUT/h" public.t | jq -e '.key == ["id"] and .columns == ["a", "id", "v2"] and
		.buckets == 4096 and .rows == 100 and (.hash | test("^[0-9a-f]{32}$")) and
		keys_unsorted == ["type", "table", "key", "columns", "buckets", "rows", "hash"]'
	jq -e -s '.[-1] | .type == "done" and .tables == 1 and .rows == 100 and
		(.snapshot | test("^[0-9A-F]+-[0-9A-F]+-[0-9]+$")) and (.ms | type == "number")' "$OUT/h"
	# the table digest is the sum of its buckets: dbm-diff checks exactly that
	run -0 dbm-diff "$OUT/h" "$OUT/h"
}

@test "an empty table has a table line with 0 rows and the zero hash, and no bucket lines" {
	ps_ -c 'CREATE TABLE e (id int PRIMARY KEY, v text)'
	run -0 dbm-hash --db "$S"
	echo "$output" >"$OUT/h"
	jq -e -s 'map(select(.type == "bucket")) == []' "$OUT/h"
	table_line "$OUT/h" public.e | jq -e '.rows == 0 and .hash == "00000000000000000000000000000000"'
	assert_equal "$(dbm_checksum "$S" e)" d41d8cd98f00b204e9800998ecf8427e
}

@test "--buckets N puts every row in a bucket below N" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY)' -c 'INSERT INTO t SELECT generate_series(1, 500)'
	run -0 dbm-hash --db "$S" --buckets 7
	echo "$output" >"$OUT/h"
	jq -e -s '[.[] | select(.type == "bucket")] | length == 7 and
		all(.buckets == 7 and .bucket < 7) and ([.[].rows] | add) == 500' "$OUT/h"
	table_line "$OUT/h" public.t | jq -e '.buckets == 7 and .rows == 500'
}

@test "the same rows on two servers give the same digests, bucket by bucket" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text, n numeric)'
	ps_ -c "INSERT INTO t SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, 3000) g"
	ps_ -c 'COPY t TO STDOUT' | pd_ -c 'COPY t FROM STDIN'
	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	[ "$(digests "$OUT/src" | wc -l)" -gt 100 ]
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
}

@test "row order does not matter: rows inserted in reverse, or CLUSTERed, give the same digests" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE np (a int, b text)'
	ps_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g" \
		-c "INSERT INTO np SELECT g % 50, md5(g::text) FROM generate_series(1, 2000) g"
	pd_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(2000, 1, -1) g" \
		-c "INSERT INTO np SELECT g % 50, md5(g::text) FROM generate_series(2000, 1, -1) g" \
		-c 'CREATE INDEX ON np (b)' -c 'CLUSTER np USING np_b_idx'
	# the physical order really differs
	[ "$(ps_ -c 'SELECT id FROM t LIMIT 1')" = 1 ]
	[ "$(pd_ -c 'SELECT id FROM t LIMIT 1')" = 2000 ]
	[ "$(ps_ -c 'SELECT b FROM np LIMIT 1')" != "$(pd_ -c 'SELECT b FROM np LIMIT 1')" ]
	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	assert_equal "$(dbm_checksum "$D" np)" "$(dbm_checksum "$S" np)"
}

@test "--jobs 3 --split-pages 2 reads ctid ranges in parallel and gives the digests of --jobs 1" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 5000) g" \
		-c 'CREATE TABLE np (a int, b text)' \
		-c "INSERT INTO np SELECT g % 100, md5(g::text) FROM generate_series(1, 4000) g" \
		-c 'VACUUM ANALYZE t' -c 'VACUUM ANALYZE np'
	pages=$(ps_ -c "SELECT pg_relation_size('t') / 8192")
	[ "$pages" -gt 20 ]

	dbm-hash --db "$S" --jobs 1 >"$OUT/one"
	log_mark "$SRC_DIR"
	PGOPTIONS='-c log_statement=all' dbm-hash --db "$S" --jobs 3 --split-pages 2 >"$OUT/three"
	log_since >"$OUT/log"
	assert_equal "$(digests "$OUT/three")" "$(digests "$OUT/one")"
	table_line "$OUT/three" public.t | jq -e '.rows == 5000'

	# really split: several ctid ranges of t, read by several sessions,
	# every one in the snapshot of the coordinator
	ranges=$(grep -c 'statement: COPY (SELECT "id", "v" FROM ONLY public.t WHERE ctid >= ' "$OUT/log")
	[ "$ranges" -ge $((pages / 2)) ]
	sessions=$(grep 'statement: COPY (SELECT' "$OUT/log" | grep -o '\[[0-9]*\]' | sort -u)
	[ "$(wc -l <<<"$sessions")" -ge 2 ]
	snap=$(jq -r 'select(.type == "done") | .snapshot' "$OUT/three")
	coord=$(grep 'statement: SELECT pg_catalog.pg_export_snapshot()' "$OUT/log" | grep -o '\[[0-9]*\]')
	assert_equal "$(wc -l <<<"$coord")" 1
	for pid in $sessions; do
		[ "$pid" = "$coord" ] || grep -qF "$pid LOG:  statement: SET TRANSACTION SNAPSHOT '$snap'" "$OUT/log"
	done
	assert_equal "$(grep -c 'statement: SET TRANSACTION SNAPSHOT' "$OUT/log")" \
		"$(grep -c "statement: SET TRANSACTION SNAPSHOT '$snap'" "$OUT/log")"

	# --split-pages alone (one job) does not split
	log_mark "$SRC_DIR"
	PGOPTIONS='-c log_statement=all' dbm-hash --db "$S" --split-pages 2 >"$OUT/one2"
	assert_equal "$(digests "$OUT/one2")" "$(digests "$OUT/one")"
	run -1 grep -c 'ctid' <(log_since)
	assert_output 0
}

@test "each table is read by one sequential COPY of its columns by name, without ORDER BY" {
	ps_ -c 'CREATE TABLE t1 (v text, id int PRIMARY KEY)' \
		-c "INSERT INTO t1 SELECT 'x' || g, g FROM generate_series(1, 1000) g" \
		-c 'CREATE TABLE "T 2" ("b b" int, a int)' -c 'INSERT INTO "T 2" VALUES (1, 2)'
	stats() { ps_ -c "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables ORDER BY relname"; }
	before=$(stats)
	log_mark "$SRC_DIR"
	PGOPTIONS='-c log_statement=all' run -0 dbm-hash --db "$S"
	log_since >"$OUT/log"
	run grep -o 'statement: COPY .*' "$OUT/log"
	assert_equal "${#lines[@]}" 2
	assert_line --index 0 'statement: COPY (SELECT "a", "b b" FROM ONLY public."T 2") TO STDOUT'
	assert_line --index 1 'statement: COPY (SELECT "id", "v" FROM ONLY public.t1) TO STDOUT'
	# the server counts exactly one sequential scan per table and no index scan
	expected=$(echo "$before" | awk -F'|' '{ print $1 "|" $2 + 1 "|" $3 }')
	scans_are() { [ "$(stats)" = "$1" ]; }
	dbm_wait_until 10 scans_are "$expected"
}

@test "all tables of a side are read in one snapshot: a commit made while it runs is not seen" {
	ps_ -c 'CREATE TABLE a1 (id int PRIMARY KEY, v text)' -c 'CREATE TABLE b2 (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO a1 SELECT g, 'a' FROM generate_series(1, 100) g" \
		-c "INSERT INTO b2 SELECT g, 'b' FROM generate_series(1, 100) g"
	dbm-hash --db "$S" >"$OUT/before"
	sum_a=$(dbm_checksum "$S" a1)
	sum_b=$(dbm_checksum "$S" b2)

	# hold b2 locked so the run waits inside its snapshot; then change both
	# tables in one transaction and commit while the run waits
	session_open "$S"
	session_send "BEGIN; LOCK TABLE b2 IN ACCESS EXCLUSIVE MODE; SELECT 'locked';"
	dbm_wait_until 10 session_says locked
	dbm-hash --db "$S" >"$OUT/during" 2>"$OUT/during.err" 3>&- &
	BG_PID=$!
	waiting() {
		[ "$(ps_ -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE a.application_name = 'dbm-hash' AND NOT l.granted")" = 1 ]
	}
	dbm_wait_until 10 waiting
	session_send "UPDATE a1 SET v = 'changed' WHERE id = 1; INSERT INTO b2 VALUES (101, 'new'); COMMIT;"
	session_close
	wait "$BG_PID"
	BG_PID=
	assert_equal "$(cat "$OUT/during.err")" ""
	assert_equal "$(digests "$OUT/during")" "$(digests "$OUT/before")"
	table_line "$OUT/during" public.b2 | jq -e '.rows == 100'

	# the commit is real: a new run sees both changes
	dbm-hash --db "$S" >"$OUT/after"
	[ "$(table_line "$OUT/after" public.a1 | jq -r .hash)" != "$(table_line "$OUT/before" public.a1 | jq -r .hash)" ]
	table_line "$OUT/after" public.b2 | jq -e '.rows == 101'
	[ "$(dbm_checksum "$S" a1)" != "$sum_a" ]
	[ "$(dbm_checksum "$S" b2)" != "$sum_b" ]
}

@test "--snapshot reads the tables as of an exported snapshot" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g"
	dbm-hash --db "$S" >"$OUT/before"
	session_open "$S"
	session_send "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 'snap=' || pg_export_snapshot();"
	has_snap() { grep -q '^snap=' "$SESSION_OUT"; }
	dbm_wait_until 10 has_snap
	snap=$(sed -n 's/^snap=//p' "$SESSION_OUT")
	ps_ -c "UPDATE t SET v = 'w' WHERE id = 7" -c 'DELETE FROM t WHERE id = 8'

	run --separate-stderr dbm-hash --db "$S" --snapshot "$snap"
	assert_success
	echo "$output" >"$OUT/snap"
	assert_equal "$(digests "$OUT/snap")" "$(digests "$OUT/before")"
	jq -e -s --arg s "$snap" '.[-1].type == "done" and .[-1].snapshot == $s' "$OUT/snap"

	dbm-hash --db "$S" >"$OUT/now"
	table_line "$OUT/now" public.t | jq -e '.rows == 49'
	session_close

	# a snapshot that no longer exists is an error
	run --separate-stderr dbm-hash --db "$S" --snapshot "$snap"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-hash: error: could not import the snapshot: invalid snapshot identifier: \"$snap\""
}

@test "the database's TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output do not matter" {
	both -c 'CREATE TABLE typed (id int PRIMARY KEY, tstz timestamptz, ts timestamp, d date,
		tm time, ttz timetz, iv interval, f4 real, f8 double precision, n numeric,
		b bytea, arr timestamptz[], rng tstzrange, j jsonb)' \
		-c "INSERT INTO typed VALUES
		(1, '2024-02-29 23:30:00.123456+00', '2024-02-29 23:30:00', '2024-02-29', '23:30:00',
		 '23:30:00+05:30', '1 year 2 mons 3 days 04:05:06.789', 0.1, 0.1::float8 + 0.2, 1.50,
		 '\\x00ff41', ARRAY['2024-01-01 00:00+00'::timestamptz],
		 tstzrange('2024-01-01 00:00+00', '2024-06-01 00:00+00'), '{\"a\": 1}'),
		(2, 'infinity', '0044-03-15 12:00 BC', '1999-12-31', '00:00:01', '00:00:00-08',
		 '-1 days +02:00:00', 1e-30, 1e-300, -0.0001, '\\x', '{}', 'empty', 'null'),
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
	pd_ -c "ALTER DATABASE $DB SET TimeZone = 'Asia/Kathmandu'" \
		-c "ALTER DATABASE $DB SET DateStyle = 'SQL, DMY'" \
		-c "ALTER DATABASE $DB SET IntervalStyle = 'iso_8601'" \
		-c "ALTER DATABASE $DB SET extra_float_digits = -3" \
		-c "ALTER DATABASE $DB SET bytea_output = 'escape'"
	# the settings are in force: plain text output differs
	[ "$(dbm_checksum "$D" typed)" != "$(dbm_checksum "$S" typed)" ]

	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	table_line "$OUT/dst" public.typed | jq -e '.rows == 3'
	assert_equal "$(PGOPTIONS=$PINNED dbm_checksum "$D" typed)" "$(PGOPTIONS=$PINNED dbm_checksum "$S" typed)"
}

@test "physical column order and dropped columns do not matter" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, a text, b int)' \
		-c 'CREATE TABLE u (id int PRIMARY KEY, gone text, a text)' -c 'ALTER TABLE u DROP COLUMN gone'
	pd_ -c 'CREATE TABLE t (b int, x text, a text, id int PRIMARY KEY)' -c 'ALTER TABLE t DROP COLUMN x' \
		-c 'CREATE TABLE u (a text, id int PRIMARY KEY)'
	for side in ps_ pd_; do
		$side -c "INSERT INTO t (id, a, b) SELECT g, 'a' || g, g * 2 FROM generate_series(1, 300) g" \
			-c "INSERT INTO u (id, a) SELECT g, 'u' || g FROM generate_series(1, 300) g"
	done
	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	table_line "$OUT/dst" public.t | jq -e '.columns == ["a", "b", "id"]'
	table_line "$OUT/dst" public.u | jq -e '.columns == ["a", "id"]'
	for t in t u; do
		assert_equal "$(dbm_checksum "$D" "(SELECT id, a FROM $t)")" "$(dbm_checksum "$S" "(SELECT id, a FROM $t)")"
	done
	assert_equal "$(dbm_checksum "$D" '(SELECT b FROM t)')" "$(dbm_checksum "$S" '(SELECT b FROM t)')"
}

@test "TOAST storage does not matter: compressed, external and plain values hash the same" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, big text, mid text)'
	pd_ -c 'ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL' \
		-c 'ALTER TABLE t ALTER COLUMN mid SET STORAGE PLAIN'
	both -c "INSERT INTO t SELECT g, repeat('abc' || g, 30000), repeat(md5(g::text), 60)
		FROM generate_series(1, 20) g"
	# the values really are stored differently
	assert_equal "$(ps_ -c 'SELECT pg_column_compression(big), pg_column_compression(mid) FROM t WHERE id = 1')" 'pglz|pglz'
	assert_equal "$(pd_ -c 'SELECT pg_column_compression(big), pg_column_compression(mid) FROM t WHERE id = 1')" '|'
	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
}

@test "NULL vs empty string, trailing spaces and one extra duplicate row change the digests" {
	both -c 'CREATE TABLE nul (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE sp (id int PRIMARY KEY, v varchar(20))' \
		-c 'CREATE TABLE dup (a int, b text)' \
		-c "INSERT INTO nul SELECT g, 'x' FROM generate_series(1, 10) g" \
		-c "INSERT INTO sp SELECT g, 'x' FROM generate_series(1, 10) g" \
		-c "INSERT INTO dup SELECT g % 5, 'd' FROM generate_series(1, 10) g"
	ps_ -c "UPDATE nul SET v = NULL WHERE id = 3" -c "UPDATE sp SET v = 'abc' WHERE id = 3"
	pd_ -c "UPDATE nul SET v = '' WHERE id = 3" -c "UPDATE sp SET v = 'abc ' WHERE id = 3" \
		-c "INSERT INTO dup VALUES (1, 'd')"
	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	for t in nul sp dup; do
		[ "$(table_line "$OUT/src" "public.$t" | jq -r .hash)" != "$(table_line "$OUT/dst" "public.$t" | jq -r .hash)" ]
		[ "$(dbm_checksum "$S" "$t")" != "$(dbm_checksum "$D" "$t")" ]
	done
	# same row count, one bucket differs
	for t in nul sp; do
		table_line "$OUT/dst" "public.$t" | jq -e '.rows == 10'
		run diff <(digests "$OUT/src" | jq -c "select(.type == \"bucket\" and .table == \"public.$t\")") \
			<(digests "$OUT/dst" | jq -c "select(.type == \"bucket\" and .table == \"public.$t\")")
		assert_equal "$(grep -c '^>' <<<"$output")" 1
	done
	table_line "$OUT/src" public.dup | jq -e '.rows == 10 and .key == []'
	table_line "$OUT/dst" public.dup | jq -e '.rows == 11 and .key == []'
}

@test "a partitioned table is hashed through its root, the same however it is partitioned" {
	ps_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)' \
		-c 'CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (MINVALUE) TO (500) PARTITION BY HASH (id)' \
		-c 'CREATE TABLE p_low_0 PARTITION OF p_low FOR VALUES WITH (MODULUS 2, REMAINDER 0)' \
		-c 'CREATE TABLE p_low_1 PARTITION OF p_low FOR VALUES WITH (MODULUS 2, REMAINDER 1)' \
		-c 'CREATE SCHEMA other' \
		-c 'CREATE TABLE other.p_high (v text, id int NOT NULL)' \
		-c 'ALTER TABLE p ATTACH PARTITION other.p_high FOR VALUES FROM (500) TO (MAXVALUE)'
	pd_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY HASH (id)' \
		-c 'CREATE TABLE p_0 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 0)' \
		-c 'CREATE TABLE p_1 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 1)' \
		-c 'CREATE TABLE p_2 PARTITION OF p FOR VALUES WITH (MODULUS 3, REMAINDER 2)'
	both -c "INSERT INTO p SELECT g, 'v' || g FROM generate_series(1, 1000) g"
	# a third layout: not partitioned at all
	psql_dst -c "CREATE DATABASE ${DB}_flat"
	F=${DST/dbname=postgres/dbname=${DB}_flat}
	psql "$F" -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE p (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO p SELECT g, 'v' || g FROM generate_series(1000, 1, -1) g"

	dbm-hash --db "$S" >"$OUT/src"
	dbm-hash --db "$D" >"$OUT/dst"
	dbm-hash --db "$F" >"$OUT/flat"
	for f in src dst flat; do
		assert_equal "$(table_names "$OUT/$f")" public.p
		jq -e -s 'map(select(.table != null and .table != "public.p")) == []' "$OUT/$f"
		table_line "$OUT/$f" public.p | jq -e '.rows == 1000 and .key == ["id"] and .columns == ["id", "v"]'
	done
	assert_equal "$(digests "$OUT/dst")" "$(digests "$OUT/src")"
	assert_equal "$(digests "$OUT/flat")" "$(digests "$OUT/src")"
	assert_equal "$(dbm_checksum "$D" p)" "$(dbm_checksum "$S" p)"
	assert_equal "$(dbm_checksum "$F" p)" "$(dbm_checksum "$S" p)"
	# --jobs and ctid ranges over the partitions give the same digests
	dbm-hash --db "$S" --jobs 3 --split-pages 1 >"$OUT/src3"
	assert_equal "$(digests "$OUT/src3")" "$(digests "$OUT/src")"
}

@test "inheritance children are tables of their own: each is read ONLY, no row counted twice" {
	ps_ -c 'CREATE TABLE parent (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE child (extra int) INHERITS (parent)' \
		-c "INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 3) g" \
		-c "INSERT INTO child SELECT g, 'c', g FROM generate_series(10, 14) g"
	run -0 dbm-hash --db "$S"
	echo "$output" >"$OUT/h"
	assert_equal "$(table_names "$OUT/h")" $'public.child\npublic.parent'
	table_line "$OUT/h" public.parent | jq -e '.rows == 3 and .key == ["id"] and .columns == ["id", "v"]'
	table_line "$OUT/h" public.child | jq -e '.rows == 5 and .key == [] and .columns == ["extra", "id", "v"]'
	jq -e -s '.[-1].rows == 8' "$OUT/h"
}

@test "every ordinary table of every schema by default; not views, sequences, the dbm schema or system schemas" {
	ps_ -c 'CREATE SCHEMA s1' -c 'CREATE SCHEMA dbm' \
		-c 'CREATE TABLE public.a (id int)' -c 'CREATE TABLE s1.b (id int)' \
		-c 'CREATE UNLOGGED TABLE s1.c (id int)' -c 'CREATE TABLE dbm.state (id int)' \
		-c 'CREATE VIEW public.v AS SELECT * FROM a' \
		-c 'CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM a' \
		-c 'CREATE SEQUENCE public.seq' -c 'CREATE TYPE public.ty AS (x int)'
	run -0 dbm-hash --db "$S"
	echo "$output" >"$OUT/h"
	assert_equal "$(table_names "$OUT/h")" $'public.a\ns1.b\ns1.c'
	jq -e -s '.[-1] | .type == "done" and .tables == 3 and .rows == 0' "$OUT/h"
	# --dbm-schema names the toolkit's schema
	run -0 dbm-hash --db "$S" --dbm-schema s1
	echo "$output" >"$OUT/h2"
	assert_equal "$(table_names "$OUT/h2")" $'dbm.state\npublic.a'
}

@test "--table and --exclude-table take glob patterns, with a schema or for any schema" {
	ps_ -c 'CREATE SCHEMA s1' -c 'CREATE SCHEMA s2' \
		-c 'CREATE TABLE s1.orders (id int)' -c 'CREATE TABLE s1.order_items (id int)' \
		-c 'CREATE TABLE s2.orders (id int)' -c 'CREATE TABLE public.customers (id int)'
	names() { dbm-hash --db "$S" "$@" >"$OUT/h" && table_names "$OUT/h" | paste -sd' '; }
	assert_equal "$(names --table orders)" 's1.orders s2.orders'
	assert_equal "$(names --table 's1.*')" 's1.order_items s1.orders'
	assert_equal "$(names -t 'order*' -T 's2.*')" 's1.order_items s1.orders'
	assert_equal "$(names --table 's?.orders' --table customers)" 'public.customers s1.orders s2.orders'
	assert_equal "$(names --exclude-table '*items' --exclude-table 'public.*')" 's1.orders s2.orders'
	assert_equal "$(names --table '*.orde[r]s')" 's1.orders s2.orders'
}

@test "table names print as format('%I.%I') does: spaces, capitals, quotes and non-ASCII" {
	ps_ -c 'CREATE SCHEMA "My S"' \
		-c 'CREATE TABLE "My S"."a ""b" ("Kéy Col" int PRIMARY KEY, "V" text)' \
		-c 'CREATE TABLE public."Ünïcödé" (id int)' \
		-c 'CREATE TABLE public."CamelCase" (id int)' \
		-c 'CREATE TABLE public."with space" (id int)' \
		-c 'CREATE TABLE public.plain_1 (id int)' \
		-c "INSERT INTO \"My S\".\"a \"\"b\" VALUES (1, 'x'), (2, NULL)"
	run -0 dbm-hash --db "$S"
	echo "$output" >"$OUT/h"
	expected=$(ps_ -c "SELECT name FROM (SELECT format('%I.%I', n.nspname, c.relname) AS name
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname IN ('public', 'My S')) x
		ORDER BY name COLLATE \"C\"")
	assert_equal "$(table_names "$OUT/h")" "$expected"
	table_line "$OUT/h" '"My S"."a ""b"' | jq -e '.key == ["Kéy Col"] and .columns == ["Kéy Col", "V"] and .rows == 2'
	grep -qF '"table":"\"My S\".\"a \"\"b\""' "$OUT/h"
	table_names "$OUT/h" | grep -qxF 'public."Ünïcödé"'
	table_names "$OUT/h" | grep -qxF 'public."CamelCase"'
	table_names "$OUT/h" | grep -qxF 'public."with space"'
	table_names "$OUT/h" | grep -qxF 'public.plain_1'
	# patterns match the names as they are, and as printed
	run -0 dbm-hash --db "$S" --table 'My S.a "b'
	echo "$output" >"$OUT/h2"
	assert_equal "$(table_names "$OUT/h2")" '"My S"."a ""b"'
	run -0 dbm-hash --db "$S" --table '"My S"."a ""b"' --table 'public."Ünïcödé"'
	echo "$output" >"$OUT/h2"
	assert_equal "$(table_names "$OUT/h2")" $'"My S"."a ""b"\npublic."Ünïcödé"'
	# key values are JSON strings of the row's text
	run -0 dbm-hash --db "$S" --table 'My S.*' --rows
	echo "$output" >"$OUT/h3"
	assert_equal "$(jq -c 'select(.type == "row") | .key' "$OUT/h3" | sort)" $'{"Kéy Col":"1"}\n{"Kéy Col":"2"}'
}

@test "--rows adds a row line with key, bucket and hash for every row" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 40) g" \
		-c 'CREATE TABLE np (a int, b text)' -c "INSERT INTO np VALUES (1, NULL), (1, NULL), (2, 'x y')"
	run -0 dbm-hash --db "$S" --rows
	echo "$output" >"$OUT/h"
	jq -e -s '[.[] | select(.type == "row" and .table == "public.t")] | length == 40 and
		all(keys_unsorted == ["type", "table", "bucket", "key", "hash"] and (.hash | test("^[0-9a-f]{32}$"))) and
		([.[].key.id | tonumber] | sort) == [range(1; 41)]' "$OUT/h"
	# every row's bucket is a bucket line of the table, with as many rows
	jq -e -s '([.[] | select(.type == "row" and .table == "public.t") | .bucket] | group_by(.) | map({b: .[0], n: length})) ==
		([.[] | select(.type == "bucket" and .table == "public.t") | {b: .bucket, n: .rows}] | sort_by(.b))' "$OUT/h"
	# without a primary key the key is the whole row, NULL as null
	assert_equal "$(jq -c 'select(.type == "row" and .table == "public.np") | .key' "$OUT/h" | sort)" \
		$'{"a":"1","b":null}\n{"a":"1","b":null}\n{"a":"2","b":"x y"}'
	# the digests are those of a run without --rows
	dbm-hash --db "$S" >"$OUT/plain"
	assert_equal "$(digests "$OUT/h")" "$(digests "$OUT/plain")"
}

@test "--rows --only-buckets FILE prints only rows of the named buckets of the named tables" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g" \
		-c 'CREATE TABLE u (id int PRIMARY KEY)' -c 'INSERT INTO u SELECT generate_series(1, 10)'
	dbm-hash --db "$S" --rows --buckets 64 >"$OUT/all"
	b5=$(jq -r 'select(.type == "row" and .table == "public.t" and .key.id == "5") | .bucket' "$OUT/all")
	b9=$(jq -r 'select(.type == "row" and .table == "public.t" and .key.id == "9") | .bucket' "$OUT/all")
	# a dbm-diff output naming two buckets of public.t
	{
		echo '{"type":"table","table":"public.t","status":"different","left_rows":1000,"right_rows":999}'
		echo "{\"type\":\"bucket\",\"table\":\"public.t\",\"bucket\":$b5,\"status\":\"different\",\"left_rows\":1,\"right_rows\":0}"
		echo "{\"type\":\"bucket\",\"table\":\"public.t\",\"bucket\":$b9,\"status\":\"different\",\"left_rows\":1,\"right_rows\":0}"
		echo '{"type":"summary","tables":2,"equal":1,"different":1,"missing":0,"extra":0,"rows_missing":0,"rows_extra":0,"rows_changed":0}'
	} >"$OUT/diff"
	run -0 dbm-hash --db "$S" --rows --buckets 64 --only-buckets "$OUT/diff"
	echo "$output" >"$OUT/some"
	assert_equal "$(table_names "$OUT/some")" public.t
	assert_equal "$(jq -c 'select(.type == "row")' "$OUT/some" | sort)" \
		"$(jq -c --argjson a "$b5" --argjson b "$b9" 'select(.type == "row" and .table == "public.t" and (.bucket == $a or .bucket == $b))' "$OUT/all" | sort)"
	jq -e -s 'map(select(.type == "row")) | length >= 2' "$OUT/some"
	# the bucket and table lines are complete, as without --only-buckets
	assert_equal "$(digests "$OUT/some")" "$(jq -c 'select(.table == "public.t" and (.type == "bucket" or .type == "table")) | del(.ms)' "$OUT/all")"
}

# --------------------------------------------------------------- bad input

@test "a refused connection exits 2 with one error line naming the server, and no password" {
	port=$(closed_port)
	run --separate-stderr dbm-hash --db "host=127.0.0.1 port=$port user=postgres password=s3cret dbname=x"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-hash: error: could not connect to \"[^\"]*port=$port[^\"]*\": .*Connection refused$"
	refute_regex "$stderr" 's3cret'
}

@test "a --table that names no table exits 2 naming it" {
	ps_ -c 'CREATE TABLE t (id int)'
	run --separate-stderr dbm-hash --db "$S" --table t --table public.nosuch
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-hash: error: no table matches "public.nosuch"'
}

@test "a connection dropped while reading a big table exits 2 naming the table, without a done line" {
	# stdout is a pipe nobody reads yet: with --rows the reader blocks on it,
	# the server blocks sending the COPY, and we end the backend mid-read
	mkfifo "$OUT/go"
	( rc=0; dbm-hash --db "$SRC" --table big --rows 2>"$OUT/err" || rc=$?; echo "$rc" >"$OUT/rc" ) 3>&- |
		( read -r _ <"$OUT/go"; cat >"$OUT/out" ) 3>&- &
	BG=$!
	mid_read() {
		[ "$(psql_src -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbm-hash'
			AND query LIKE 'COPY%public.big%' AND state = 'active' AND wait_event = 'ClientWrite'")" = 1 ]
	}
	dbm_wait_until 20 mid_read
	assert_equal "$(psql_src -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'dbm-hash'")" 1
	echo go >"$OUT/go"
	wait "$BG"
	assert_equal "$(cat "$OUT/rc")" 2
	run cat "$OUT/err"
	assert_equal "${#lines[@]}" 1
	assert_regex "${lines[0]}" '^dbm-hash: error: could not read table public\.big: .*(terminat|connection)'
	# some rows were read, not all, and the output says it is incomplete
	rows=$(grep -c '"type":"row"' "$OUT/out")
	[ "$rows" -gt 0 ] && [ "$rows" -lt "$BIG_ROWS" ]
	run grep -c '"type":"done"' "$OUT/out"
	assert_output 0
	run grep -c '"type":"table"' "$OUT/out"
	assert_output 0
}

@test "--only-buckets with a missing, malformed or out-of-range file exits 2 naming file:line" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY)' -c 'INSERT INTO t VALUES (1)'
	run --separate-stderr dbm-hash --db "$S" --rows --only-buckets "$OUT/nosuch"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" "dbm-hash: error: could not open file \"$OUT/nosuch\": No such file or directory"

	printf '%s\n' '{"type":"bucket","table":"public.t","bucket":1,"status":"different"}' '{"type":"bucket",' >"$OUT/bad"
	run --separate-stderr dbm-hash --db "$S" --rows --only-buckets "$OUT/bad"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-hash: error: $OUT/bad:2: malformed JSON"

	printf '%s\n' '{"type":"summary"}' '{"type":"bucket","table":"public.t","bucket":4096,"status":"different"}' >"$OUT/range"
	run --separate-stderr dbm-hash --db "$S" --rows --only-buckets "$OUT/range"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" "dbm-hash: error: $OUT/range:2: field \"bucket\" missing or out of range"

	printf '%s' '{"type":"bucket","table":"public.t","bucket":1}' >"$OUT/cut"
	run --separate-stderr dbm-hash --db "$S" --rows --only-buckets "$OUT/cut"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" "dbm-hash: error: $OUT/cut:1: truncated line (no newline at end of file)"
}
