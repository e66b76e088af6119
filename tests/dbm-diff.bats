#!/usr/bin/env bats
# dbm-diff: compare two live databases (both hashed concurrently, each in
# one snapshot, drilling into differing buckets only) or two saved dbm-hash
# outputs; name every differing row by its key. Exit 0 equal, 1 different,
# 2 trouble.
#
# Every test gets its own database on both clusters (setup). The 1M-row
# table "big" lives in database "postgres" on both sides, made once in
# setup_file; database "mem" on the target holds an empty "big".

bats_require_minimum_version 1.5.0

load helpers/common

BIG_ROWS=1000000
BIG_SQL="INSERT INTO big SELECT g, g % 1000, md5(g::text),
	'2020-01-01 00:00+00'::timestamptz + g * interval '1 minute'
	FROM generate_series(1, $BIG_ROWS) g"

setup_file()
{
	dbm_start_clusters
	local ddl='CREATE TABLE big (id int PRIMARY KEY, a int, b text, c timestamptz)'
	psql_src -c "$ddl" -c "$BIG_SQL" -c 'VACUUM ANALYZE big' &
	local p1=$!
	psql_dst -c "$ddl" -c "$BIG_SQL" -c 'VACUUM ANALYZE big' -c 'CREATE DATABASE mem'
	wait "$p1"
	psql "${DST/dbname=postgres/dbname=mem}" -XAtq -v ON_ERROR_STOP=1 -c "$ddl"
	# the independent checksum of the source's big table, which no test changes
	BIG_SUM=$(dbm_checksum "$SRC" big)
	DST_TIMEZONE=$(psql_dst -c 'SHOW TimeZone')
	export BIG_SUM DST_TIMEZONE
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
	unset DBM_SOURCE DBM_TARGET
}

teardown()
{
	if [[ -n "${BG_PID:-}" ]]; then
		kill -CONT "$BG_PID" 2>/dev/null || true
		kill "$BG_PID" 2>/dev/null || true
	fi
	if [[ -n "${LOOP_PID:-}" ]]; then
		kill "$LOOP_PID" 2>/dev/null || true
	fi
	if [[ -n "${RESET_DST_SYSTEM:-}" ]]; then
		psql_dst -c 'ALTER SYSTEM RESET ALL' -c 'SELECT pg_reload_conf()' >/dev/null
		dbm_wait_until 10 dst_timezone_is "$DST_TIMEZONE"
	fi
	if [[ -n "${RESTORE_BIG:-}" ]]; then
		psql_dst -c "UPDATE big SET a = $RESTORE_BIG % 1000 WHERE id = $RESTORE_BIG"
	fi
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }
both() { ps_ "$@" && pd_ "$@"; }

dst_timezone_is() { [ "$(psql_dst -c 'SHOW TimeZone')" = "$1" ]; }

# The settings dbm pins, for an independent checksum that must not depend
# on a database's own settings.
PINNED='-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex'

# Run dbm-diff on the test databases; stdout in $output and $OUT/diff.
diff_dbs()
{
	run --separate-stderr dbm-diff --source "$S" --target "$D" "$@"
	printf '%s\n' "$output" >"$OUT/diff"
}

# summary_is FILE JQ-OBJECT...: the last line is the summary, with these
# counts (later objects override earlier ones)
summary_is()
{
	local f=$1 want='{}' o
	shift
	for o in "$@"; do
		want=$(jq -c -n --argjson a "$want" --argjson b "$o" '$a + $b')
	done
	jq -e -s --argjson want "$want" '.[-1] as $s | $s.type == "summary" and
		($want | to_entries | all(. as $e | $s[$e.key] == $e.value))' "$f"
}
# every count of an all-equal summary of no tables
ZERO='{"tables":0,"equal":0,"different":0,"missing":0,"extra":0,"rows_missing":0,"rows_extra":0,"rows_changed":0,"rows_unstable":0}'

# all_equal FILE N: N table lines, all equal, and a summary saying so
all_equal()
{
	jq -e -s --argjson n "$2" '(map(select(.type == "table")) | length == $n and all(.status == "equal")) and
		map(select(.type == "row")) == []' "$1"
	summary_is "$1" "{\"tables\":$2,\"equal\":$2,\"different\":0,\"missing\":0,\"extra\":0,
		\"rows_missing\":0,\"rows_extra\":0,\"rows_changed\":0}"
}

# Row lines of FILE, sorted.
rows_of() { jq -c 'select(.type == "row")' "$1" | sort; }

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

log_mark() { LOG_FILE_S=$SRC_DIR/postgres.log; LOG_POS_S=$(stat -c %s "$LOG_FILE_S");
	LOG_FILE_D=$DST_DIR/postgres.log; LOG_POS_D=$(stat -c %s "$LOG_FILE_D"); }
log_src() { tail -c +$((LOG_POS_S + 1)) "$LOG_FILE_S"; }
log_dst() { tail -c +$((LOG_POS_D + 1)) "$LOG_FILE_D"; }

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
# The state of the dbm-diff backend of CONN copying TABLE ("" when none).
copy_state()
{
	psql "$1" -XAtq -c "SELECT state FROM pg_stat_activity WHERE application_name = 'dbm-diff'
		AND query LIKE 'COPY%$2%'"
}

# ------------------------------------------------------- options and usage

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr dbm-diff --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 'dbm-diff compares two live databases, or two dbm-hash outputs.'
	assert_line '  dbm-diff [OPTION]... --source=CONNINFO --target=CONNINFO'
	assert_line '  dbm-diff [OPTION]... LEFT RIGHT'
	assert_output --partial '--recheck=N'
	assert_output --partial '--recheck-wait=SECS'
	assert_output --partial 'Exit status: 0 equal, 1 different, 2 trouble'
	run -0 dbm-diff -h
}

@test "--version prints the tool name and version and exits 0" {
	run --separate-stderr dbm-diff --version
	assert_success
	assert_equal "$stderr" ""
	assert_output --regexp '^dbm-diff \(dbm\) [0-9]+\.[0-9]+\.[0-9]+$'
	run -0 dbm-diff -V
}

@test "an unknown option exits 2 with a hint on stderr and nothing on stdout" {
	run --separate-stderr dbm-diff --source "$S" --target "$D" --frobnicate
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 2
	assert_regex "${stderr_lines[0]}" "^dbm-diff: .*--frobnicate"
	assert_equal "${stderr_lines[1]}" 'Try "dbm-diff --help" for more information.'
}

@test "--source and --target are required, from options or DBM_SOURCE and DBM_TARGET" {
	run --separate-stderr dbm-diff --source "$S"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: --target is required (or files LEFT RIGHT)'
	assert_equal "${stderr_lines[1]}" 'Try "dbm-diff --help" for more information.'
	run --separate-stderr dbm-diff --target "$D"
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: --source is required (or files LEFT RIGHT)'
	run --separate-stderr dbm-diff
	assert_failure 2
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: --source is required (or files LEFT RIGHT)'
	# the environment supplies both
	DBM_SOURCE=$S DBM_TARGET=$D run -0 dbm-diff
	assert_equal "${#lines[@]}" 1
	summary_is <(echo "$output") "$ZERO"
}

@test "one file, three files, two stdins, or files with --source, --table or --recheck exit 2" {
	: >"$OUT/a"
	for args in "$OUT/a" "$OUT/a $OUT/a $OUT/a" "- -" "--source=$S $OUT/a $OUT/a" \
		"--table=t $OUT/a $OUT/a" "--recheck=1 $OUT/a $OUT/a"; do
		# shellcheck disable=SC2086
		run --separate-stderr dbm-diff $args
		assert_failure 2
		assert_equal "$output" ""
		assert_regex "${stderr_lines[0]}" '^dbm-diff: error: '
	done
	run --separate-stderr dbm-diff "$OUT/a"
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: expected two files LEFT RIGHT or none, got 1 arguments'
	run --separate-stderr dbm-diff - -
	assert_equal "${stderr_lines[*]}" 'dbm-diff: error: only one of LEFT and RIGHT can be stdin'
}

@test "invalid --recheck, --recheck-wait, --buckets and --jobs values exit 2 naming the option" {
	for args in "--recheck=-1" "--recheck=x" "--recheck-wait=soon" "--recheck-wait=-2" \
		"--buckets=0" "--jobs=0" "--split-pages=0"; do
		run --separate-stderr dbm-diff --source "$S" --target "$D" "$args"
		assert_failure 2
		assert_equal "$output" ""
		opt=${args%%=*}
		value=${args#*=}
		[[ "${stderr_lines[0]}" == "dbm-diff: error: invalid value \"$value\" for $opt"* ]]
		assert_equal "${stderr_lines[1]}" 'Try "dbm-diff --help" for more information.'
	done
}

# ------------------------------------------------------ comparing databases

@test "equal databases give one equal table line per table, then the summary, exit 0" {
	both -c 'CREATE SCHEMA s' -c 'CREATE TABLE s.a (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE public.b (x int, y text)' -c 'CREATE TABLE public.e (id int)' \
		-c "INSERT INTO s.a SELECT g, 'v' || g FROM generate_series(1, 500) g" \
		-c "INSERT INTO b SELECT g % 7, 'y' FROM generate_series(1, 100) g"
	diff_dbs
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(head -n 3 "$OUT/diff")" '{"type":"table","table":"public.b","status":"equal","left_rows":100,"right_rows":100}
{"type":"table","table":"public.e","status":"equal","left_rows":0,"right_rows":0}
{"type":"table","table":"s.a","status":"equal","left_rows":500,"right_rows":500}'
	assert_equal "${#lines[@]}" 4
	summary_is "$OUT/diff" "$ZERO" '{"tables":3,"equal":3}'
	for t in s.a b e; do
		assert_equal "$(dbm_checksum "$D" $t)" "$(dbm_checksum "$S" $t)"
	done
}

@test "names every missing, extra and changed row by its key, reading each table once per side, exit 1" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE c (a int, b text, v int, PRIMARY KEY (b, a))' \
		-c 'CREATE TABLE np (a int, b text)' -c 'CREATE TABLE eq (id int PRIMARY KEY)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g" \
		-c "INSERT INTO c VALUES (1, 'x', 1), (1, 'y', 2), (2, 'x', 3)" \
		-c 'INSERT INTO eq SELECT generate_series(1, 10)'
	ps_ -c "INSERT INTO np VALUES (1, 'x'), (1, 'x'), (2, 'y')"
	pd_ -c "INSERT INTO np VALUES (1, 'x'), (2, 'y'), (2, 'y'), (3, NULL)" \
		-c 'DELETE FROM t WHERE id = 3' -c "UPDATE t SET v = 'changed' WHERE id = 7" \
		-c "INSERT INTO t VALUES (21, 'v21')" \
		-c "UPDATE c SET v = 20 WHERE a = 1 AND b = 'y'" -c "DELETE FROM c WHERE a = 2"
	log_mark
	PGOPTIONS='-c log_statement=all' diff_dbs
	assert_failure 1
	assert_equal "$stderr" ""
	# table by table, each table line followed by its rows
	jq -e -s '[.[] | [.type, .table]] == [
		["table", "public.c"], ["row", "public.c"], ["row", "public.c"],
		["table", "public.eq"],
		["table", "public.np"], ["row", "public.np"], ["row", "public.np"], ["row", "public.np"],
		["table", "public.t"], ["row", "public.t"], ["row", "public.t"], ["row", "public.t"],
		["summary", null]]' "$OUT/diff"
	assert_equal "$(jq -c 'select(.type == "table")' "$OUT/diff")" \
'{"type":"table","table":"public.c","status":"different","left_rows":3,"right_rows":2}
{"type":"table","table":"public.eq","status":"equal","left_rows":10,"right_rows":10}
{"type":"table","table":"public.np","status":"different","left_rows":3,"right_rows":4}
{"type":"table","table":"public.t","status":"different","left_rows":20,"right_rows":20}'
	assert_equal "$(rows_of "$OUT/diff")" "$(sort <<'EOF'
{"type":"row","table":"public.c","key":{"b":"y","a":"1"},"status":"changed"}
{"type":"row","table":"public.c","key":{"b":"x","a":"2"},"status":"missing"}
{"type":"row","table":"public.np","key":{"a":"1","b":"x"},"status":"missing"}
{"type":"row","table":"public.np","key":{"a":"2","b":"y"},"status":"extra"}
{"type":"row","table":"public.np","key":{"a":"3","b":null},"status":"extra"}
{"type":"row","table":"public.t","key":{"id":"3"},"status":"missing"}
{"type":"row","table":"public.t","key":{"id":"7"},"status":"changed"}
{"type":"row","table":"public.t","key":{"id":"21"},"status":"extra"}
EOF
)"
	summary_is "$OUT/diff" "$ZERO" '{"tables":4,"equal":1,"different":3,"rows_missing":3,"rows_extra":3,"rows_changed":2}'
	for t in t c np; do
		[ "$(dbm_checksum "$D" $t)" != "$(dbm_checksum "$S" $t)" ]
	done
	assert_equal "$(dbm_checksum "$D" eq)" "$(dbm_checksum "$S" eq)"
	# the drill-down reads nothing again: one COPY per table and side
	for side in src dst; do
		for t in c eq np t; do
			assert_equal "$(log_$side | grep -c "statement: COPY (SELECT .* FROM ONLY public.$t)")" 1
		done
		assert_equal "$(log_$side | grep -c 'statement: COPY')" 4
	done
}

@test "one changed column in one row of a million is named exactly, with --jobs too" {
	RESTORE_BIG=654321
	psql_dst -c 'UPDATE big SET a = -1 WHERE id = 654321'
	for jobs in 1 2; do
		run --separate-stderr dbm-diff --source "$SRC" --target "$DST" --table big --jobs $jobs --split-pages 2000
		assert_failure 1
		assert_equal "$stderr" ""
		assert_equal "${#lines[@]}" 3
		jq -e '.type == "table" and .table == "public.big" and .status == "different" and
			.left_rows == 1000000 and .right_rows == 1000000' <<<"${lines[0]}"
		assert_equal "${lines[1]}" '{"type":"row","table":"public.big","key":{"id":"654321"},"status":"changed"}'
		jq -e '.type == "summary" and .tables == 1 and .different == 1 and .equal == 0 and
			.rows_changed == 1 and .rows_missing == 0 and .rows_extra == 0 and .rows_unstable == 0' <<<"${lines[2]}"
	done
	[ "$(dbm_checksum "$DST" big)" != "$BIG_SUM" ]
	psql_dst -c 'UPDATE big SET a = 654321 % 1000 WHERE id = 654321'
	RESTORE_BIG=
	run -0 dbm-diff --source "$SRC" --target "$DST" --table big
	assert_line --index 0 '{"type":"table","table":"public.big","status":"equal","left_rows":1000000,"right_rows":1000000}'
	assert_equal "$(dbm_checksum "$DST" big)" "$BIG_SUM"
}

@test "both sides are hashed concurrently" {
	start_stopped "$OUT/out" "$OUT/err" dbm-diff --source "$SRC" --target "$DST" --table big
	both_copying()
	{
		[ "$(copy_state "$SRC" public.big)" = active ] && [ "$(copy_state "$DST" public.big)" = active ]
	}
	step_until both_copying
	kill -CONT "$BG_PID"
	rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/err")" ""
	summary_is "$OUT/out" "$ZERO" '{"tables":1,"equal":1}'
}

@test "NULL vs empty string and trailing spaces are changed rows; an extra duplicate row without a key is one extra row" {
	both -c 'CREATE TABLE nul (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE sp (id int PRIMARY KEY, v text, c char(5))' \
		-c 'CREATE TABLE dup (a int, b text)' \
		-c "INSERT INTO nul SELECT g, 'x' FROM generate_series(1, 10) g" \
		-c "INSERT INTO sp SELECT g, 'x', 'c' FROM generate_series(1, 10) g" \
		-c "INSERT INTO dup SELECT g % 5, 'd' FROM generate_series(1, 10) g"
	ps_ -c "UPDATE nul SET v = NULL WHERE id = 3" -c "UPDATE nul SET v = '' WHERE id = 4"
	pd_ -c "UPDATE nul SET v = '' WHERE id = 3" -c "UPDATE nul SET v = NULL WHERE id = 4" \
		-c "UPDATE sp SET v = 'x ' WHERE id = 5" -c "INSERT INTO dup VALUES (1, 'd')"
	diff_dbs
	assert_failure 1
	assert_equal "$(rows_of "$OUT/diff")" "$(sort <<'EOF'
{"type":"row","table":"public.dup","key":{"a":"1","b":"d"},"status":"extra"}
{"type":"row","table":"public.nul","key":{"id":"3"},"status":"changed"}
{"type":"row","table":"public.nul","key":{"id":"4"},"status":"changed"}
{"type":"row","table":"public.sp","key":{"id":"5"},"status":"changed"}
EOF
)"
	summary_is "$OUT/diff" "$ZERO" '{"tables":3,"equal":0,"different":3,"rows_missing":0,"rows_extra":1,"rows_changed":3}'
	for t in nul sp dup; do
		[ "$(dbm_checksum "$D" $t)" != "$(dbm_checksum "$S" $t)" ]
	done
}

# the data of the settings tests, made with the same SQL on both sides
make_typed()
{
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
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)" \
		-c "INSERT INTO typed SELECT g, '2000-01-01 00:00+00'::timestamptz + g * interval '7 hours 3 sec',
		 NULL, NULL, NULL, NULL, g * interval '1 day 1 sec', g / 3.0, g / 3.0, NULL, int4send(g)
		 FROM generate_series(4, 200) g"
}

@test "the target database's TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output do not matter" {
	make_typed
	pd_ -c "ALTER DATABASE $DB SET TimeZone = 'Asia/Kathmandu'" \
		-c "ALTER DATABASE $DB SET DateStyle = 'SQL, DMY'" \
		-c "ALTER DATABASE $DB SET IntervalStyle = 'iso_8601'" \
		-c "ALTER DATABASE $DB SET extra_float_digits = -3" \
		-c "ALTER DATABASE $DB SET bytea_output = 'escape'"
	[ "$(dbm_checksum "$D" typed)" != "$(dbm_checksum "$S" typed)" ]
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 1
	assert_equal "$(PGOPTIONS=$PINNED dbm_checksum "$D" typed)" "$(PGOPTIONS=$PINNED dbm_checksum "$S" typed)"
}

@test "the target server's TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output do not matter" {
	make_typed
	RESET_DST_SYSTEM=1
	psql_dst -c "ALTER SYSTEM SET TimeZone = 'America/St_Johns'" \
		-c "ALTER SYSTEM SET DateStyle = 'German, DMY'" \
		-c "ALTER SYSTEM SET IntervalStyle = 'sql_standard'" \
		-c "ALTER SYSTEM SET extra_float_digits = 0" \
		-c "ALTER SYSTEM SET bytea_output = 'escape'" \
		-c 'SELECT pg_reload_conf()' >/dev/null
	dbm_wait_until 10 dst_timezone_is America/St_Johns
	assert_equal "$(pd_ -c 'SHOW DateStyle' -c 'SHOW IntervalStyle' -c 'SHOW extra_float_digits' -c 'SHOW bytea_output')" \
		$'German, DMY\nsql_standard\n0\nescape'
	[ "$(dbm_checksum "$D" typed)" != "$(dbm_checksum "$S" typed)" ]
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 1
	assert_equal "$(PGOPTIONS=$PINNED dbm_checksum "$D" typed)" "$(PGOPTIONS=$PINNED dbm_checksum "$S" typed)"
}

@test "the target database's search_path does not matter: regclass, regproc and regtype columns" {
	both -c 'CREATE SCHEMA app' -c 'CREATE TABLE app.x (id int)' \
		-c 'CREATE TABLE app.cfg (id int PRIMARY KEY, tbl regclass, fn regproc, ty regtype)' \
		-c "INSERT INTO app.cfg VALUES (1, 'app.x', 'now', 'int4'), (2, 'pg_class', 'pg_backend_pid', 'text')"
	pd_ -c "ALTER DATABASE $DB SET search_path = app, public"
	[ "$(dbm_checksum "$D" app.cfg)" != "$(dbm_checksum "$S" app.cfg)" ]
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 2
	assert_equal "$(PGOPTIONS='-c search_path=' dbm_checksum "$D" app.cfg)" "$(PGOPTIONS='-c search_path=' dbm_checksum "$S" app.cfg)"
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
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 2
	assert_equal "$(dbm_checksum "$D" '(SELECT id, a, b FROM t)')" "$(dbm_checksum "$S" '(SELECT id, a, b FROM t)')"
	assert_equal "$(dbm_checksum "$D" '(SELECT id, a FROM u)')" "$(dbm_checksum "$S" '(SELECT id, a FROM u)')"
	# and a difference is still found
	pd_ -c "UPDATE t SET b = 0 WHERE id = 9"
	diff_dbs
	assert_failure 1
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"public.t","key":{"id":"9"},"status":"changed"}'
	[ "$(dbm_checksum "$D" '(SELECT id, a, b FROM t)')" != "$(dbm_checksum "$S" '(SELECT id, a, b FROM t)')" ]
}

@test "row order does not matter: rows inserted in reverse, or CLUSTERed" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE np (a int, b text)'
	ps_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g" \
		-c "INSERT INTO np SELECT g % 50, md5(g::text) FROM generate_series(1, 3000) g"
	pd_ -c "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(3000, 1, -1) g" \
		-c "INSERT INTO np SELECT g % 50, md5(g::text) FROM generate_series(3000, 1, -1) g" \
		-c 'CREATE INDEX ON np (b)' -c 'CLUSTER np USING np_b_idx'
	[ "$(ps_ -c 'SELECT b FROM np LIMIT 1')" != "$(pd_ -c 'SELECT b FROM np LIMIT 1')" ]
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 2
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	assert_equal "$(dbm_checksum "$D" np)" "$(dbm_checksum "$S" np)"
}

@test "TOAST storage does not matter: compressed on the source, external and plain on the target" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, big text, mid text)'
	pd_ -c 'ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL' \
		-c 'ALTER TABLE t ALTER COLUMN mid SET STORAGE PLAIN'
	both -c "INSERT INTO t SELECT g, repeat('abc' || g, 30000), repeat(md5(g::text), 60)
		FROM generate_series(1, 20) g"
	assert_equal "$(ps_ -c 'SELECT pg_column_compression(big), pg_column_compression(mid) FROM t WHERE id = 1')" 'pglz|pglz'
	assert_equal "$(pd_ -c 'SELECT pg_column_compression(big), pg_column_compression(mid) FROM t WHERE id = 1')" '|'
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 1
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	# one character in 90 kB differs: found
	pd_ -c "UPDATE t SET big = overlay(big placing 'X' from 50000) WHERE id = 11"
	diff_dbs
	assert_failure 1
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"public.t","key":{"id":"11"},"status":"changed"}'
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

@test "partitioned tables compare through their root, equal however each side is partitioned" {
	ps_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)' \
		-c 'CREATE TABLE p_low PARTITION OF p FOR VALUES FROM (MINVALUE) TO (500)' \
		-c 'CREATE TABLE p_high PARTITION OF p FOR VALUES FROM (500) TO (MAXVALUE) PARTITION BY HASH (id)' \
		-c 'CREATE TABLE p_high_0 PARTITION OF p_high FOR VALUES WITH (MODULUS 2, REMAINDER 0)' \
		-c 'CREATE TABLE p_high_1 PARTITION OF p_high FOR VALUES WITH (MODULUS 2, REMAINDER 1)' \
		-c 'CREATE TABLE q (id int PRIMARY KEY, k text)'
	pd_ -c 'CREATE TABLE p (id int PRIMARY KEY, v text)' \
		-c 'CREATE TABLE q (id int, k text, PRIMARY KEY (id, k)) PARTITION BY LIST (k)' \
		-c "CREATE TABLE q_a PARTITION OF q FOR VALUES IN ('a')" \
		-c 'CREATE TABLE q_rest PARTITION OF q DEFAULT'
	both -c "INSERT INTO p SELECT g, 'v' || g FROM generate_series(1, 1000) g" \
		-c "INSERT INTO q SELECT g, CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 300) g"
	diff_dbs
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$(head -n 2 "$OUT/diff")" '{"type":"table","table":"public.p","status":"equal","left_rows":1000,"right_rows":1000}
{"type":"table","table":"public.q","status":"equal","left_rows":300,"right_rows":300}'
	assert_equal "${#lines[@]}" 3
	summary_is "$OUT/diff" "$ZERO" '{"tables":2,"equal":2}'
	assert_equal "$(dbm_checksum "$D" p)" "$(dbm_checksum "$S" p)"
	assert_equal "$(dbm_checksum "$D" q)" "$(dbm_checksum "$S" q)"
	# a difference inside a leaf partition is reported under the root
	ps_ -c "UPDATE p SET v = 'w' WHERE id = 777" -c 'DELETE FROM q WHERE id = 6'
	diff_dbs
	assert_failure 1
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"public.p","key":{"id":"777"},"status":"changed"}
{"type":"row","table":"public.q","key":{"id":"6"},"status":"extra"}'
	[ "$(dbm_checksum "$D" p)" != "$(dbm_checksum "$S" p)" ]
}

@test "--table and --exclude-table glob patterns choose what is compared" {
	both -c 'CREATE SCHEMA s1' -c 'CREATE SCHEMA s2' \
		-c 'CREATE TABLE s1.a (id int PRIMARY KEY)' -c 'CREATE TABLE s1.b (id int PRIMARY KEY)' \
		-c 'CREATE TABLE s2.a (id int PRIMARY KEY)' \
		-c 'INSERT INTO s1.a SELECT generate_series(1, 10)' -c 'INSERT INTO s1.b SELECT generate_series(1, 10)' \
		-c 'INSERT INTO s2.a SELECT generate_series(1, 10)'
	pd_ -c 'DELETE FROM s1.a WHERE id = 4'
	diff_dbs --table 's1.*' --exclude-table '*.a'
	assert_success
	assert_equal "$(jq -r 'select(.type == "table") | .table + " " + .status' "$OUT/diff")" 's1.b equal'
	diff_dbs -t a
	assert_failure 1
	assert_equal "$(jq -r 'select(.type == "table") | .table + " " + .status' "$OUT/diff")" $'s1.a different\ns2.a equal'
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"s1.a","key":{"id":"4"},"status":"missing"}'
	diff_dbs -T 's1.a'
	assert_success
	all_equal "$OUT/diff" 2
	[ "$(dbm_checksum "$D" s1.a)" != "$(dbm_checksum "$S" s1.a)" ]
	assert_equal "$(dbm_checksum "$D" s1.b)" "$(dbm_checksum "$S" s1.b)"
}

@test "quoted identifiers: table names as format('%I.%I'), key columns by their names" {
	both -c 'CREATE SCHEMA "My S"' \
		-c 'CREATE TABLE "My S"."a ""b" ("Kéy Col" int, "Ünï" text, v text, PRIMARY KEY ("Ünï", "Kéy Col"))' \
		-c "INSERT INTO \"My S\".\"a \"\"b\" SELECT g, 'ü' || g, 'x' FROM generate_series(1, 10) g" \
		-c 'CREATE TABLE "CamelCase" (id int PRIMARY KEY)'
	pd_ -c "UPDATE \"My S\".\"a \"\"b\" SET v = 'y' WHERE \"Kéy Col\" = 2" -c 'INSERT INTO "CamelCase" VALUES (1)'
	diff_dbs
	assert_failure 1
	assert_equal "$(jq -r 'select(.type == "table") | .table' "$OUT/diff")" \
		"$(ps_ -c "SELECT format('%I.%I', 'My S', 'a \"b') UNION ALL SELECT format('%I.%I', 'public', 'CamelCase') ORDER BY 1")"
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"\"My S\".\"a \"\"b\"","key":{"Ünï":"ü2","Kéy Col":"2"},"status":"changed"}
{"type":"row","table":"public.\"CamelCase\"","key":{"id":"1"},"status":"extra"}'
	[ "$(dbm_checksum "$D" '"My S"."a ""b"')" != "$(dbm_checksum "$S" '"My S"."a ""b"')" ]
}

@test "--recheck: a row fixed on the target before the recheck is not reported, exit 0" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g"
	pd_ -c "UPDATE t SET v = 'lagging' WHERE id = 5" -c 'DELETE FROM t WHERE id = 6'
	# replication catches up half a second later
	(
		sleep 0.5
		pd_ -c "UPDATE t SET v = 'v5' WHERE id = 5" -c "INSERT INTO t VALUES (6, 'v6')"
	) 3>&- &
	fixer=$!
	diff_dbs --recheck 2 --recheck-wait 2
	wait "$fixer"
	assert_success
	assert_equal "$stderr" ""
	all_equal "$OUT/diff" 1
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
}

@test "--recheck: a row that stays different is reported, one fixed meanwhile is not, exit 1" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g"
	pd_ -c "UPDATE t SET v = 'lagging' WHERE id = 5" -c "UPDATE t SET v = 'wrong' WHERE id = 7" \
		-c 'DELETE FROM t WHERE id = 8'
	(
		sleep 0.5
		pd_ -c "UPDATE t SET v = 'v5' WHERE id = 5"
	) 3>&- &
	fixer=$!
	diff_dbs --recheck 2 --recheck-wait 1.5
	wait "$fixer"
	assert_failure 1
	assert_equal "$stderr" ""
	assert_equal "$(jq -c 'select(.type == "table")' "$OUT/diff")" \
		'{"type":"table","table":"public.t","status":"different","left_rows":1000,"right_rows":999}'
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"public.t","key":{"id":"7"},"status":"changed"}
{"type":"row","table":"public.t","key":{"id":"8"},"status":"missing"}'
	summary_is "$OUT/diff" "$ZERO" '{"tables":1,"equal":0,"different":1,"rows_missing":1,"rows_extra":0,"rows_changed":1,"rows_unstable":0}'
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

@test "--recheck: a row updated continuously on the target is reported unstable" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g"
	pd_ -c "UPDATE t SET v = 'wrong' WHERE id = 7"
	# one session updating it every 10 ms (no process per update: a
	# loaded machine must not slow it below the rechecks)
	PGAPPNAME=busyloop pd_ -c "DO \$\$ BEGIN LOOP
		UPDATE t SET v = 'busy ' || clock_timestamp() WHERE id = 4; COMMIT;
		PERFORM pg_sleep(0.01); END LOOP; END \$\$" >/dev/null 2>&1 3>&- &
	LOOP_PID=$!
	busy() { [[ "$(pd_ -c 'SELECT v FROM t WHERE id = 4')" == busy* ]]; }
	dbm_wait_until 10 busy
	diff_dbs --recheck 3 --recheck-wait 0.5
	pd_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'busyloop'" >/dev/null
	wait "$LOOP_PID" || true
	LOOP_PID=
	assert_failure 1
	assert_equal "$stderr" ""
	assert_equal "$(rows_of "$OUT/diff")" '{"type":"row","table":"public.t","key":{"id":"4"},"status":"unstable"}
{"type":"row","table":"public.t","key":{"id":"7"},"status":"changed"}'
	summary_is "$OUT/diff" "$ZERO" '{"tables":1,"different":1,"rows_changed":1,"rows_missing":0,"rows_extra":0,"rows_unstable":1}'
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

@test "memory stays bounded: a million missing rows in well under 100 MB" {
	[[ -x /usr/bin/time ]] || skip "/usr/bin/time is not installed"
	M=${DST/dbname=postgres/dbname=mem}
	rc=0
	/usr/bin/time -f %M -o "$OUT/rss" dbm-diff --source "$SRC" --target "$M" --table big \
		>"$OUT/out" 2>"$OUT/err" || rc=$?
	assert_equal "$rc" 1
	assert_equal "$(cat "$OUT/err")" ""
	rss=$(tail -n 1 "$OUT/rss")
	echo "peak RSS of dbm-diff: $rss kB" >&3
	# (a sanitizer build, make test-asan, has its own overhead)
	[[ -n ${DBM_SANITIZED:-} ]] || [ "$rss" -lt 100000 ]
	assert_equal "$(head -n 1 "$OUT/out")" '{"type":"table","table":"public.big","status":"different","left_rows":1000000,"right_rows":0}'
	assert_equal "$(grep -c '^{"type":"row","table":"public.big","key":{"id":"[0-9]*"},"status":"missing"}$' "$OUT/out")" $BIG_ROWS
	assert_equal "$(wc -l <"$OUT/out")" $((BIG_ROWS + 2))
	summary_is "$OUT/out" "$ZERO" '{"tables":1,"different":1,"rows_missing":1000000,"rows_extra":0,"rows_changed":0}'
	[ "$(dbm_checksum "$M" big)" != "$BIG_SUM" ]
	# and dbm-hash printing every row of it
	/usr/bin/time -f %M -o "$OUT/rss2" dbm-hash --db "$SRC" --table big --rows --jobs 2 >/dev/null
	rss=$(tail -n 1 "$OUT/rss2")
	echo "peak RSS of dbm-hash --rows: $rss kB" >&3
	# (a sanitizer build, make test-asan, has its own overhead)
	[[ -n ${DBM_SANITIZED:-} ]] || [ "$rss" -lt 100000 ]
}

@test "memory stays bounded with wide rows and no primary key: 200k missing rows of 500 bytes" {
	[[ -x /usr/bin/time ]] || skip "/usr/bin/time is not installed"
	ps_ -c 'CREATE TABLE wide (a int, b text)' \
		-c "INSERT INTO wide SELECT g, repeat(md5(g::text), 16) FROM generate_series(1, 200000) g"
	pd_ -c 'CREATE TABLE wide (a int, b text)'
	rc=0
	/usr/bin/time -f %M -o "$OUT/rss" dbm-diff --source "$S" --target "$D" \
		>"$OUT/out" 2>"$OUT/err" || rc=$?
	assert_equal "$rc" 1
	assert_equal "$(cat "$OUT/err")" ""
	assert_equal "$(grep -c '"status":"missing"' "$OUT/out")" 200000
	summary_is "$OUT/out" "$ZERO" '{"tables":1,"different":1,"rows_missing":200000}'
	[ "$(dbm_checksum "$D" wide)" != "$(dbm_checksum "$S" wide)" ]
	rss=$(tail -n 1 "$OUT/rss")
	echo "peak RSS of dbm-diff, wide rows: $rss kB" >&3
	# (a sanitizer build, make test-asan, has its own overhead)
	[[ -n ${DBM_SANITIZED:-} ]] || [ "$rss" -lt 100000 ]
}

@test "memory stays bounded comparing the --rows outputs of a million rows" {
	[[ -x /usr/bin/time ]] || skip "/usr/bin/time is not installed"
	rc=0
	/usr/bin/time -f %M -o "$OUT/rss" dbm-diff \
		<(dbm-hash --db "$SRC" --table big --rows 3>&-) <(dbm-hash --db "$DST" --table big --rows 3>&-) \
		>"$OUT/out" 2>"$OUT/err" || rc=$?
	assert_equal "$rc" 0
	assert_equal "$(cat "$OUT/err")" ""
	all_equal "$OUT/out" 1
	assert_equal "$(dbm_checksum "$DST" big)" "$BIG_SUM"
	rss=$(tail -n 1 "$OUT/rss")
	echo "peak RSS of dbm-diff LEFT RIGHT, 1M row lines each: $rss kB" >&3
	# (a sanitizer build, make test-asan, has its own overhead)
	[[ -n ${DBM_SANITIZED:-} ]] || [ "$rss" -lt 100000 ]
}

@test "a target without its primary key yet compares by the source's key" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	pd_ -c 'CREATE TABLE t (id int, v text)'
	both -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g"
	diff_dbs
	assert_success
	all_equal "$OUT/diff" 1
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	pd_ -c "UPDATE t SET v = 'w' WHERE id = 5" -c "INSERT INTO t VALUES (5, 'v5')"
	diff_dbs
	assert_failure 1
	# id 5 is twice on the target: one copy changed or extra, never silently equal
	[ "$(jq -s '[.[] | select(.type == "row" and .key == {"id": "5"})] | length' "$OUT/diff")" -ge 1 ]
	jq -e -s 'all(.[] | select(.type == "row"); .key | keys == ["id"])' "$OUT/diff"
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

# ------------------------------------------------------ saved hash outputs

# Hash both test databases into $OUT/left and $OUT/right.
hash_both()
{
	dbm-hash --db "$S" "$@" >"$OUT/left"
	dbm-hash --db "$D" "$@" >"$OUT/right"
}

@test "two saved dbm-hash outputs of equal databases compare equal, exit 0; '-' reads stdin" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE np (a int)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g" \
		-c 'INSERT INTO np SELECT generate_series(1, 10)'
	hash_both
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/right"
	assert_success
	assert_equal "$stderr" ""
	expected=$output
	assert_equal "$(head -n 2 <<<"$output")" '{"type":"table","table":"public.np","status":"equal","left_rows":10,"right_rows":10}
{"type":"table","table":"public.t","status":"equal","left_rows":1000,"right_rows":1000}'
	assert_equal "${#lines[@]}" 3
	summary_is <(echo "$output") "$ZERO" '{"tables":2,"equal":2}'
	run -0 dbm-diff - "$OUT/right" <"$OUT/left"
	assert_equal "$output" "$expected"
	run -0 dbm-diff "$OUT/left" - <"$OUT/right"
	assert_equal "$output" "$expected"
	assert_equal "$(dbm_checksum "$D" t)" "$(dbm_checksum "$S" t)"
	# --jobs on one side and not the other: still equal
	dbm-hash --db "$D" --jobs 3 --split-pages 1 >"$OUT/right3"
	run -0 dbm-diff "$OUT/left" "$OUT/right3"
	assert_equal "$output" "$expected"
}

@test "saved outputs that differ name the table and its differing buckets, exit 1" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE u (id int PRIMARY KEY)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g" \
		-c 'INSERT INTO u SELECT generate_series(1, 10)'
	pd_ -c "UPDATE t SET v = 'x' WHERE id = 7" -c 'DELETE FROM t WHERE id = 3'
	hash_both
	dbm-hash --db "$S" --rows >"$OUT/rows"
	b3=$(jq -r 'select(.type == "row" and .table == "public.t" and .key.id == "3") | .bucket' "$OUT/rows")
	b7=$(jq -r 'select(.type == "row" and .table == "public.t" and .key.id == "7") | .bucket' "$OUT/rows")
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/right"
	assert_failure 1
	assert_equal "$stderr" ""
	echo "$output" >"$OUT/diff"
	assert_equal "$(jq -c 'select(.type == "table")' "$OUT/diff")" \
		'{"type":"table","table":"public.t","status":"different","left_rows":1000,"right_rows":999}
{"type":"table","table":"public.u","status":"equal","left_rows":10,"right_rows":10}'
	assert_equal "$(jq -c 'select(.type == "bucket") | [.table, .bucket, .status]' "$OUT/diff" | sort)" \
		"$(printf '["public.t",%s,"different"]\n' "$b3" "$b7" | sort -u)"
	jq -e -s --argjson b "$b3" 'map(select(.type == "bucket" and .bucket == $b)) | length == 1 and .[0].left_rows == .[0].right_rows + 1' "$OUT/diff"
	summary_is "$OUT/diff" "$ZERO" '{"tables":2,"equal":1,"different":1}'
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

@test "dbm-hash --rows --only-buckets DIFF on both sides, then dbm-diff of those, names the rows" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE u (id int PRIMARY KEY)' \
		-c 'CREATE TABLE np (a int, b text)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g" \
		-c 'INSERT INTO u SELECT generate_series(1, 10)' -c "INSERT INTO np VALUES (1, 'x'), (2, 'y')"
	pd_ -c "UPDATE t SET v = 'x' WHERE id = 7" -c 'DELETE FROM t WHERE id = 3' \
		-c "INSERT INTO t VALUES (5001, 'new')" -c "INSERT INTO np VALUES (2, 'y')"
	hash_both
	run -1 dbm-diff "$OUT/left" "$OUT/right"
	echo "$output" >"$OUT/diff"
	dbm-hash --db "$S" --rows --only-buckets "$OUT/diff" >"$OUT/lrows"
	dbm-hash --db "$D" --rows --only-buckets "$OUT/diff" >"$OUT/rrows"
	# only the rows of differing buckets, only of differing tables
	assert_equal "$(jq -r 'select(.type == "table") | .table' "$OUT/lrows")" $'public.np\npublic.t'
	nl=$(jq -s '[.[] | select(.type == "row")] | length' "$OUT/lrows")
	[ "$nl" -ge 4 ] && [ "$nl" -lt 50 ]
	run --separate-stderr dbm-diff "$OUT/lrows" "$OUT/rrows"
	assert_failure 1
	assert_equal "$stderr" ""
	echo "$output" >"$OUT/rdiff"
	assert_equal "$(rows_of "$OUT/rdiff")" "$(sort <<'EOF'
{"type":"row","table":"public.np","key":{"a":"2","b":"y"},"status":"extra"}
{"type":"row","table":"public.t","key":{"id":"3"},"status":"missing"}
{"type":"row","table":"public.t","key":{"id":"7"},"status":"changed"}
{"type":"row","table":"public.t","key":{"id":"5001"},"status":"extra"}
EOF
)"
	summary_is "$OUT/rdiff" "$ZERO" '{"tables":2,"equal":0,"different":2,"rows_missing":1,"rows_extra":2,"rows_changed":1}'
	# the same rows as the connection mode finds
	diff_dbs
	assert_failure 1
	assert_equal "$(rows_of "$OUT/diff")" "$(rows_of "$OUT/rdiff")"
	[ "$(dbm_checksum "$D" t)" != "$(dbm_checksum "$S" t)" ]
}

# --------------------------------------------------------------- bad input

# A saved output of two tables for the bad-input tests: $OUT/left, $OUT/right.
make_files()
{
	both -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' -c 'CREATE TABLE u (id int PRIMARY KEY)' \
		-c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 200) g" \
		-c 'INSERT INTO u SELECT generate_series(1, 10)'
	hash_both --buckets 16
}

# bad_file FILE MESSAGE: dbm-diff of the left file and FILE (and FILE and
# the right file) exits 2 with exactly MESSAGE on stderr, and no summary.
bad_file()
{
	local f=$1 msg=$2
	run --separate-stderr dbm-diff "$OUT/left" "$f"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-diff: error: $msg"
	refute_output --partial '"type":"summary"'
	run --separate-stderr dbm-diff "$f" "$OUT/right"
	assert_failure 2
	assert_equal "${stderr_lines[*]}" "dbm-diff: error: $msg"
	refute_output --partial '"type":"summary"'
}

@test "a hash file cut in the middle of a line exits 2 naming file:line" {
	make_files
	n=$(wc -l <"$OUT/right")
	head -n 5 "$OUT/right" >"$OUT/cut"
	sed -n 6p "$OUT/right" | head -c 20 >>"$OUT/cut"
	bad_file "$OUT/cut" "$OUT/cut:6: truncated line (no newline at end of file)"
	# the done line cut short
	head -c -5 "$OUT/right" >"$OUT/cut2"
	bad_file "$OUT/cut2" "$OUT/cut2:$n: truncated line (no newline at end of file)"
}

@test "a hash file cut at a line boundary before the done line exits 2 naming file:line" {
	make_files
	n=$(wc -l <"$OUT/right")
	head -n $((n - 1)) "$OUT/right" >"$OUT/nodone"
	bad_file "$OUT/nodone" "$OUT/nodone:$((n - 1)): truncated: the file ends without a done line"
	# cut among the bucket lines of the first table
	head -n 3 "$OUT/right" >"$OUT/early"
	bad_file "$OUT/early" "$OUT/early:3: truncated: the file ends without a done line"
	# an empty file
	: >"$OUT/empty"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/empty"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/empty(:[0-9]+)?: .*(empty|truncated|done line)"
}

@test "an edited hash file exits 2 naming file:line and the table" {
	make_files
	tline=$(grep -n '"type":"table","table":"public.t"' "$OUT/right" | cut -d: -f1)
	# one hex digit of a bucket digest
	line=$(sed -n 2p "$OUT/right")
	h=$(jq -r .hash <<<"$line")
	if [[ "${h: -1}" == 0 ]]; then d=1; else d=0; fi
	L=${line/$h/${h:0:31}$d} awk 'NR == 2 { print ENVIRON["L"]; next } 1' "$OUT/right" >"$OUT/edit1"
	assert_equal "$(diff "$OUT/right" "$OUT/edit1" | grep -c '^[<>]')" 2
	bad_file "$OUT/edit1" "$OUT/edit1:$tline: bucket lines of table public.t do not add up to its digest (file corrupt or cut)"
	# the row count of a bucket
	sed -E '2s/"rows":([0-9]+)/"rows":1\1/' "$OUT/right" >"$OUT/edit2"
	bad_file "$OUT/edit2" "$OUT/edit2:$tline: bucket lines of table public.t do not add up to its digest (file corrupt or cut)"
	# a bucket line deleted
	sed 2d "$OUT/right" >"$OUT/edit3"
	bad_file "$OUT/edit3" "$OUT/edit3:$((tline - 1)): bucket lines of table public.t do not add up to its digest (file corrupt or cut)"
	# a digest that is not 32 hex digits
	sed '2s/"hash":"[0-9a-f]*"/"hash":"xyz"/' "$OUT/right" >"$OUT/edit4"
	bad_file "$OUT/edit4" "$OUT/edit4:2: invalid hash \"xyz\""
	# a bucket number out of range
	sed -E '2s/"bucket":[0-9]+/"bucket":16/' "$OUT/right" >"$OUT/edit5"
	bad_file "$OUT/edit5" "$OUT/edit5:2: field \"bucket\" missing or out of range"
}

@test "invalid JSON in a hash file exits 2 naming file:line" {
	make_files
	sed '3s/.*/{"type":"bucket","table":/' "$OUT/right" >"$OUT/json1"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/json1"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/json1:3: malformed JSON: "
	refute_output --partial '"type":"summary"'
	sed '3s/.*/[1, 2]/' "$OUT/right" >"$OUT/json2"
	bad_file "$OUT/json2" "$OUT/json2:3: expected a JSON object"
	sed '3s/.*/{"type":"bogus","table":"public.t"}/' "$OUT/right" >"$OUT/json3"
	bad_file "$OUT/json3" "$OUT/json3:3: unexpected line type \"bogus\""
	sed '3s/.*/{"table":"public.t"}/' "$OUT/right" >"$OUT/json4"
	bad_file "$OUT/json4" "$OUT/json4:3: field \"type\" missing or not a string"
	printf 'not json at all\n' >"$OUT/json5"
	run --separate-stderr dbm-diff "$OUT/json5" "$OUT/right"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/json5:1: malformed JSON: "
}

@test "anything after the done line exits 2 naming file:line" {
	make_files
	n=$(wc -l <"$OUT/right")
	{ cat "$OUT/right"; echo 'garbage'; } >"$OUT/trail"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/trail"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/trail:$((n + 1)): "
	refute_output --partial '"type":"summary"'
	# two outputs concatenated: the second is not silently ignored
	cat "$OUT/left" "$OUT/left" >"$OUT/twice_l"
	cat "$OUT/right" "$OUT/right" >"$OUT/twice_r"
	run --separate-stderr dbm-diff "$OUT/twice_l" "$OUT/twice_r"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/twice_[lr]:$((n + 1)): "
}

@test "a done line that does not match the tables and rows above it exits 2 naming file:line" {
	make_files
	n=$(wc -l <"$OUT/right")
	sed -E '$s/"tables":2/"tables":3/' "$OUT/right" >"$OUT/done1"
	sed -E '$s/"rows":210/"rows":211/' "$OUT/right" >"$OUT/done2"
	for f in done1 done2; do
		[ "$(tail -n 1 "$OUT/$f")" != "$(tail -n 1 "$OUT/right")" ]
		run --separate-stderr dbm-diff "$OUT/left" "$OUT/$f"
		assert_failure 2
		assert_equal "${#stderr_lines[@]}" 1
		assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/$f:$n: "
		refute_output --partial '"type":"summary"'
	done
}

@test "a table block cut out of a hash file exits 2 naming the table and the file" {
	make_files
	grep -v '"table":"public.t"' "$OUT/right" >"$OUT/noblock"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/noblock"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: .*public\.t.*$OUT/noblock|^dbm-diff: error: $OUT/noblock.*public\.t"
	refute_output --partial '"table":"public.t","status":"equal"'
}

@test "a row line without its hash exits 2 with one error line naming file:line" {
	make_files
	dbm-hash --db "$D" --rows --buckets 16 >"$OUT/rrows"
	n=$(grep -n '"type":"row"' "$OUT/rrows" | sed -n 5p | cut -d: -f1)
	sed -E "${n}s/\"hash\":/\"hush\":/" "$OUT/rrows" >"$OUT/nohash"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/nohash"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/nohash:$n: "
	refute_output --partial '"type":"summary"'
}

@test "an edited row hash in a --rows file exits 2 naming file:line and the table" {
	make_files
	dbm-hash --db "$S" --rows --buckets 16 >"$OUT/lrows"
	dbm-hash --db "$D" --rows --buckets 16 >"$OUT/rrows"
	run -0 dbm-diff "$OUT/lrows" "$OUT/rrows"
	n=$(grep -n '"type":"row","table":"public.t"' "$OUT/rrows" | sed -n 5p | cut -d: -f1)
	line=$(sed -n "${n}p" "$OUT/rrows")
	h=$(jq -r .hash <<<"$line")
	if [[ "${h: -1}" == 0 ]]; then d=1; else d=0; fi
	L=${line/$h/${h:0:31}$d} awk -v n="$n" 'NR == n { print ENVIRON["L"]; next } 1' "$OUT/rrows" >"$OUT/edited"
	assert_equal "$(diff "$OUT/rrows" "$OUT/edited" | grep -c '^[<>]')" 2
	for left in lrows left; do
		run --separate-stderr dbm-diff "$OUT/$left" "$OUT/edited"
		assert_failure 2
		assert_equal "${#stderr_lines[@]}" 1
		assert_regex "${stderr_lines[0]}" "^dbm-diff: error: $OUT/edited:[0-9]+: .*public\.t"
		refute_output --partial '"type":"summary"'
	done
}

@test "saved outputs hashed with different --buckets exit 2 naming both files" {
	make_files
	dbm-hash --db "$S" --table t --buckets 16 >"$OUT/left16"
	dbm-hash --db "$D" --table t --buckets 32 >"$OUT/right32"
	run --separate-stderr dbm-diff "$OUT/left16" "$OUT/right32"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-diff: error: table public.t: columns, key or bucket count differ between $OUT/left16:17 and $OUT/right32:$(grep -n '"type":"table"' "$OUT/right32" | cut -d: -f1)"
	refute_output --partial '"status":"equal"'
	assert_line --index 0 '{"type":"table","table":"public.t","status":"incompatible","left_rows":0,"right_rows":0}'
}

@test "a table missing on one side of saved outputs is reported missing or extra, exit 2" {
	make_files
	dbm-hash --db "$D" --table u --buckets 16 >"$OUT/right_u"
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/right_u"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" "dbm-diff: error: table public.t is missing on the right ($OUT/right_u)"
	assert_line --index 0 '{"type":"table","table":"public.t","status":"missing","left_rows":200,"right_rows":0}'
	assert_line --index 1 '{"type":"table","table":"public.u","status":"equal","left_rows":10,"right_rows":10}'
	summary_is <(echo "$output") "$ZERO" '{"tables":2,"equal":1,"missing":1,"extra":0}'

	run --separate-stderr dbm-diff "$OUT/right_u" "$OUT/left"
	assert_failure 2
	assert_equal "${stderr_lines[*]}" "dbm-diff: error: table public.t is missing on the left ($OUT/right_u)"
	assert_line --index 0 '{"type":"table","table":"public.t","status":"extra","left_rows":0,"right_rows":200}'
}

@test "a table missing on the target, or only on the target, is reported with exit 2" {
	both -c 'CREATE TABLE t (id int PRIMARY KEY)' -c 'INSERT INTO t VALUES (1)'
	ps_ -c 'CREATE TABLE only_src (id int)' -c 'INSERT INTO only_src VALUES (1), (2)'
	diff_dbs
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: table public.only_src is missing on the target'
	assert_equal "$(head -n 2 "$OUT/diff")" '{"type":"table","table":"public.only_src","status":"missing","left_rows":2,"right_rows":0}
{"type":"table","table":"public.t","status":"equal","left_rows":1,"right_rows":1}'
	assert_equal "${#lines[@]}" 3
	summary_is "$OUT/diff" "$ZERO" '{"tables":2,"equal":1,"missing":1}'

	ps_ -c 'DROP TABLE only_src'
	pd_ -c 'CREATE TABLE "Only Dst" (id int)'
	diff_dbs
	assert_failure 2
	assert_equal "${stderr_lines[*]}" 'dbm-diff: error: table public."Only Dst" is missing on the source (extra on the target)'
	assert_line --index 0 '{"type":"table","table":"public.\"Only Dst\"","status":"extra","left_rows":0,"right_rows":0}'

	# a --table naming a table on neither side
	diff_dbs --table nosuch
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" '^dbm-diff: error: no table matches "nosuch"'
}

@test "a table with other columns on the target exits 2 naming the column" {
	ps_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)'
	pd_ -c 'CREATE TABLE t (id int PRIMARY KEY, w text)'
	both -c 'CREATE TABLE u (id int PRIMARY KEY)'
	diff_dbs
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_equal "${stderr_lines[0]}" 'dbm-diff: error: table public.t: column "v" is missing on the target'
	assert_line --index 0 '{"type":"table","table":"public.t","status":"incompatible","left_rows":0,"right_rows":0}'
	assert_line --index 1 '{"type":"table","table":"public.u","status":"equal","left_rows":0,"right_rows":0}'
	summary_is "$OUT/diff" "$ZERO" '{"tables":2,"equal":1,"incompatible":1}'
	# a column only on the target is named too
	ps_ -c 'ALTER TABLE t ADD COLUMN w text'
	diff_dbs
	assert_failure 2
	assert_equal "${stderr_lines[*]}" 'dbm-diff: error: table public.t: column "v" is missing on the target'
	ps_ -c 'ALTER TABLE t DROP COLUMN v'
	pd_ -c 'ALTER TABLE t ADD COLUMN x int'
	diff_dbs
	assert_failure 2
	assert_equal "${stderr_lines[*]}" 'dbm-diff: error: table public.t: column "x" is missing on the source'
}

@test "a refused connection exits 2 with one error line naming the server, and no password" {
	port=$(closed_port)
	bad="host=127.0.0.1 port=$port user=postgres password=s3cret"
	for args in "--source|$S|--target|$bad" "--source|$bad|--target|$D"; do
		IFS='|' read -r -a argv <<<"$args"
		run --separate-stderr dbm-diff "${argv[@]}"
		assert_failure 2
		assert_equal "$output" ""
		assert_equal "${#stderr_lines[@]}" 1
		assert_regex "${stderr_lines[0]}" "^dbm-diff: error: could not connect to \"[^\"]*port=$port[^\"]*\": .*Connection refused$"
		refute_regex "$stderr" 's3cret'
	done
}

@test "a connection dropped while reading a big table exits 2 naming the table" {
	start_stopped "$OUT/out" "$OUT/err" dbm-diff --source "$SRC" --target "$DST" --table big
	target_copying() { [ "$(copy_state "$DST" public.big)" = active ]; }
	step_until target_copying
	# stopped mid-read: the server fills the socket and waits
	blocked() {
		[ "$(psql_dst -c "SELECT wait_event FROM pg_stat_activity WHERE application_name = 'dbm-diff'
			AND query LIKE 'COPY%'")" = ClientWrite ]
	}
	dbm_wait_until 10 blocked
	assert_equal "$(psql_dst -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'dbm-diff' AND query LIKE 'COPY%'")" 1
	kill -CONT "$BG_PID"
	rc=0
	wait "$BG_PID" || rc=$?
	BG_PID=
	assert_equal "$rc" 2
	run cat "$OUT/err"
	echo "stderr: $output" >&2
	assert_equal "${#lines[@]}" 1
	assert_regex "${lines[0]}" '^dbm-diff: error: could not read table public\.big: .*(terminat|connection)'
	run grep -c -e '"type":"summary"' -e '"status":"equal"' "$OUT/out"
	assert_output 0
}

@test "a missing or unreadable hash file exits 2 naming it" {
	make_files
	run --separate-stderr dbm-diff "$OUT/left" "$OUT/nosuch"
	assert_failure 2
	assert_equal "$output" ""
	assert_equal "${stderr_lines[*]}" "dbm-diff: error: could not open file \"$OUT/nosuch\": No such file or directory"
	run --separate-stderr dbm-diff "$OUT" "$OUT/right"
	assert_failure 2
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "${stderr_lines[0]}" "^dbm-diff: error: .*\"?$OUT\"?.*(Is a directory)"
}
