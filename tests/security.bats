#!/usr/bin/env bats
# Security: identifiers and values from any input stream stay data (names
# and values holding quotes, semicolons, backslashes, newlines, spaces and
# non-ASCII letters); a password given in a conninfo string, a URI,
# PGPASSWORD or a password file shows nowhere (stdout, stderr, metrics,
# logs, ps); TLS options (verify-full, a root certificate, a client
# certificate) reach every session a tool opens, replication ones included;
# and the tools run as the non-superuser roles docs/security.md lists.
#
# Both clusters are secured (helpers/tls.bash): ssl=on with a test CA made
# by openssl, role dbm_tls by client certificate over TLS only, every other
# role but the suites' superuser by scram-sha-256 password, and
# log_connections on.  Every test gets its own databases (setup).

bats_require_minimum_version 1.5.0

load helpers/common
load helpers/tls

setup_file()
{
	dbm_start_clusters
	export CERTS=$BATS_FILE_TMPDIR/tls
	dbm_tls_certs "$CERTS" dbm_tls
	dbm_secure_cluster "$SRC_DIR" "$CERTS"
	dbm_secure_cluster "$DST_DIR" "$CERTS"
	MARK=$(dbm_secret_marker)
	export MARK
	local c
	for c in "$SRC" "$DST"; do
		psql "$c" -XAtq -v ON_ERROR_STOP=1 -v pw="$MARK" >/dev/null <<-'EOF'
			CREATE ROLE dbm_tls LOGIN SUPERUSER;
			CREATE ROLE dbm_secret LOGIN SUPERUSER PASSWORD :'pw';
		EOF
	done
}

teardown_file()
{
	dbm_release "$SRC_DIR" 2>/dev/null || true
	dbm_release "$DST_DIR" 2>/dev/null || true
	dbm_stop_clusters
}

setup()
{
	DB="t_$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	SRC_PORT=$(port_of "$SRC")
	DST_PORT=$(port_of "$DST")
	OUT=$BATS_TEST_TMPDIR
	FSLOT="sec_fwd_$BATS_TEST_NUMBER"
	RSLOT="sec_rev_$BATS_TEST_NUMBER"
	unset DBM_SOURCE DBM_TARGET DBM_DB PGPASSWORD PGPASSFILE
}

teardown()
{
	local p
	dbm_release "$SRC_DIR" 2>/dev/null || true
	dbm_release "$DST_DIR" 2>/dev/null || true
	for p in ${BG_PID:-} ${REV_PID:-}; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	drop_slots "$SRC" || true
	drop_slots "$DST" || true
}

# ---------------------------------------------------------------- helpers

ps_() { psql "$S" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pd_() { psql "$D" -XAtq -v ON_ERROR_STOP=1 "$@"; }
port_of() { sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$1"; }

# The current WAL insert position of the source (at or after every commit).
src_lsn() { ps_ -c 'SELECT pg_current_wal_insert_lsn()'; }

# drop_slots CONN: this test's slots on CONN's cluster, their sessions ended.
drop_slots()
{
	local i
	for i in $(seq 1 50); do
		psql "$1" -XAtq -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = '$DB' AND active_pid IS NOT NULL" >/dev/null 2>&1 || true
		psql "$1" -XAtq -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = '$DB' AND NOT active" >/dev/null 2>&1 || true
		[[ "$(psql "$1" -XAtq -c "SELECT count(*) FROM pg_replication_slots WHERE database = '$DB'")" == 0 ]] &&
			return 0
		sleep 0.1
	done
	return 1
}

# qi NAME: NAME as a quoted SQL identifier.
qi() { printf '"%s"' "${1//\"/\"\"}"; }

# equal_dbs SRC_CONN DST_CONN TABLE...: dbm-diff finds them equal, and the
# independent checksum of every TABLE (quoted name) is the same.
equal_dbs()
{
	local t
	run --separate-stderr dbm-diff --source "$1" --target "$2"
	printf '%s\n' "$output" >"$OUT/diff.jsonl"
	if [[ $status -ne 0 ]]; then
		echo "dbm-diff exit $status: $output $stderr" >&2
		return 1
	fi
	jq -e -s '.[-1] | .type == "summary" and .different == 0 and .missing == 0 and
		.extra == 0 and .rows_missing == 0 and .rows_extra == 0 and .rows_changed == 0' \
		"$OUT/diff.jsonl" >/dev/null
	shift 2
	for t in "$@"; do
		assert_equal "$(dbm_checksum "$D" "$t")" "$(dbm_checksum "$S" "$t")"
	done
}

# hold CLUSTER_DIR / dbm_release CLUSTER_DIR: stop the postmaster (SIGSTOP)
# so that a tool connecting waits (the kernel still completes the TCP
# handshake), then let it go on.  A deterministic moment to look at ps.
postmaster_pid() { head -n 1 "$1/data/postmaster.pid"; }
hold() { kill -STOP "$(postmaster_pid "$1")"; }
dbm_release() { kill -CONT "$(postmaster_pid "$1")"; }

# tree PID: PID and its descendants.
tree()
{
	local c
	echo "$1"
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		tree "$c"
	done
}

# connecting PID: PID or one of its descendants has opened a socket, or
# PID is gone (the caller tells the two apart).
connecting()
{
	local p
	kill -0 "$1" 2>/dev/null || return 0
	for p in $(tree "$1"); do
		ls -l "/proc/$p/fd" 2>/dev/null | grep -q 'socket:' && return 0
	done
	return 1
}

# caught NAME CLUSTER_DIR COMMAND...: run COMMAND in the background while the
# cluster is held; once it is connecting, append ps's view of every process
# to $OUT/ps and this command's own line to $OUT/ps.NAME; then release the
# cluster and wait for it (stdout and stderr in $OUT/NAME.out/.err, status
# in CAUGHT_RC).
caught()
{
	local name=$1 dir=$2 pid
	shift 2
	hold "$dir"
	"$@" >"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	pid=$!
	if ! dbm_wait_until 60 connecting "$pid" || ! kill -0 "$pid" 2>/dev/null; then
		dbm_release "$dir"
		echo "$name: did not connect: $(cat "$OUT/$name.err")" >&2
		return 1
	fi
	dbm_ps_snapshot "$OUT/ps"
	# CAUGHT_WANT (a grep pattern): the process that opened a socket may be
	# a quick one that is gone by now; look again until the one expected to
	# hang on the held cluster shows
	if [[ -n "${CAUGHT_WANT:-}" ]]; then
		local i
		for ((i = 0; i < 100; i++)); do
			grep -q "$CAUGHT_WANT" "$OUT/ps" && break
			sleep 0.1
			dbm_ps_snapshot "$OUT/ps"
		done
	fi
	ps -ww -o args= -p "$(tree "$pid" | tr '\n' ',' | sed 's/,$//')" >"$OUT/ps.$name"
	dbm_release "$dir"
	CAUGHT_RC=0
	wait "$pid" || CAUGHT_RC=$?
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

# A small schema for the tool runs: the table on the source with rows, its
# pre-data on the target.
small_schema()
{
	ps_ -c "CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 200) g;
		CREATE SEQUENCE ticket_no START 1000; SELECT nextval('ticket_no');"
	pg_dump --section=pre-data "$S" | pd_ >/dev/null
}

# cutover_all SRC_CONN DST_CONN: every tool once, through a whole cutover
# and back with the given connection strings: dbm-snapshot --slot, rows
# written, dbm-cdc-apply --slot (with --metrics-file), dbm-hash, dbm-diff,
# dbm-freeze --readonly, dbm-cdc-apply to the freeze, dbm-switch --exec,
# the reverse dbm-cdc-apply, dbm-rollback --exec --readonly (BEFORE_SWITCH,
# when set, is run before dbm-switch).  Every output
# in $OUT/<step>.out and .err; each step must succeed.
cutover_all()
{
	local s=$1 d=$2 lsn
	step snapshot dbm-snapshot --source "$s" --target "$d" --slot "$FSLOT"
	pg_dump --section=post-data "$S" | pd_ >/dev/null
	ps_ -c "INSERT INTO items SELECT g, 'new ' || g FROM generate_series(201, 300) g;
		UPDATE items SET v = v || ' changed' WHERE id <= 10; DELETE FROM items WHERE id = 11"
	lsn=$(src_lsn)
	step apply dbm-cdc-apply --source "$s" --target "$d" --slot "$FSLOT" \
		--stop-at-lsn "$lsn" --metrics-file "$OUT/apply.prom"
	step hash dbm-hash --db "$s"
	step diff dbm-diff --source "$s" --target "$d"
	step freeze dbm-freeze --source "$s" --readonly
	lsn=$(jq -r 'select(.type == "frozen") | .lsn' "$OUT/freeze.out")
	step apply2 dbm-cdc-apply --source "$s" --target "$d" --slot "$FSLOT" \
		--stop-at-lsn "$lsn" --metrics-file "$OUT/apply.prom"
	[[ -z "${BEFORE_SWITCH:-}" ]] || eval "$BEFORE_SWITCH"
	step switch dbm-switch --source "$s" --target "$d" --freeze "$OUT/freeze.out" \
		--exec true --reverse-slot "$RSLOT" --reverse-publication "$RSLOT"
	dbm-cdc-apply --source "$d" --target "$s" --slot "$RSLOT" --publication "$RSLOT" \
		--until-idle 30 --metrics-file "$OUT/reverse.prom" \
		>"$OUT/reverse.out" 2>"$OUT/reverse.err" 3>&- &
	REV_PID=$!
	step rollback dbm-rollback --source "$s" --target "$d" --exec true --readonly \
		--timeout 60
	kill -TERM "$REV_PID"
	wait "$REV_PID"
	REV_PID=
	jq -e 'select(.type == "rolled_back") | .stage == "after_switch"' "$OUT/rollback.out" >/dev/null
	[[ -s "$OUT/apply.prom" && -s "$OUT/reverse.prom" ]]
}

# step NAME COMMAND...: run it; stdout and stderr in $OUT/NAME.out/.err;
# it must exit 0.
step()
{
	local name=$1 rc=0
	shift
	"$@" >"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- || rc=$?
	if [[ $rc -ne 0 ]]; then
		echo "$name: exit $rc: $(cat "$OUT/$name.err")" >&2
		return 1
	fi
}

# far_freeze: a frozen line whose position no apply reaches: dbm-switch
# connects, then waits (until its --timeout).
far_freeze()
{
	echo '{"type":"frozen","method":"readonly","database":null,"lsn":"FF/0","barrier":1,"at":"2026-01-01T00:00:00.000Z","at_ms":1767225600000,"drain_ms":1}'
}

# ---------------------------------------------------------------- identifiers

# Names and values that would break SQL built by pasting text.
S1=$'we"ird; sch\\ema \'ü\''
T1=$'x"; DROP TABLE canary; --'
T2=$'new\nline\'s \\ täble'
T3=$'\'; DROP TABLE public.canary; --'
V0=$'\'); DROP TABLE canary; --'
V1=$'"quoted" \\ back\\slash'
V2=$'new\nline\ttab'
V3=$'ü€😀 \'single\''

# hostile_ddl: the tables (and a canary) on both sides.
hostile_ddl()
{
	local sql
	sql="CREATE TABLE public.canary (id int PRIMARY KEY);
		INSERT INTO public.canary VALUES (1);
		CREATE SCHEMA $(qi "$S1");
		CREATE TABLE $(qi "$S1").$(qi "$T1") (id int PRIMARY KEY, \"col\"\"q\" text,
			\"semi;colon\" text, \"back\\slash\" text, $(qi $'new\nline') text,
			\"it's\" text, \"sp ace ü\" text);
		CREATE TABLE $(qi "$S1").$(qi "$T2") (\"k'1\" int, \"k\"\"2\" text, \"v;--\" text,
			PRIMARY KEY (\"k'1\", \"k\"\"2\"));
		CREATE TABLE public.$(qi "$T3") (id int PRIMARY KEY, v text);"
	ps_ -c "$sql"
	pd_ -c "$sql"
}

# psql_vals CONN: psql reading SQL on stdin with the hostile values as
# variables v0..v3 (:'v0' is a quoted literal).
psql_vals()
{
	psql "$1" -XAtq -v ON_ERROR_STOP=1 -v v0="$V0" -v v1="$V1" -v v2="$V2" -v v3="$V3"
}

HT1=$(qi "$S1").$(qi "$T1")
HT2=$(qi "$S1").$(qi "$T2")
HT3=public.$(qi "$T3")

canary_alive()
{
	[[ "$(ps_ -c 'SELECT count(*) FROM public.canary')" == 1 ]]
	[[ "$(pd_ -c 'SELECT count(*) FROM public.canary')" == 1 ]]
}

@test "openssl made the CA; dbm_tls gets in only over TLS with its certificate, dbm_secret only with its password" {
	local tls
	tls=$(dbm_tls_conninfo "$CERTS" dbm_tls)
	run -0 psql "host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_tls $tls" -XAtc \
		'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'
	assert_output t
	run -2 psql "host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_tls sslmode=disable" -XAtc 'SELECT 1'
	assert_output --partial 'no encryption'
	run -2 psql "host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_tls sslmode=verify-full sslrootcert=$CERTS/ca.crt" \
		-XAtc 'SELECT 1'
	assert_output --partial 'connection requires a valid client certificate'
	run -0 psql "host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret password=$MARK" -XAtc 'SELECT 1'
	run -2 psql "host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret password=wrong" -XAtc 'SELECT 1'
	assert_output --partial 'password authentication failed for user "dbm_secret"'
}

@test "hostile schema, table and column names and values go through dbm-snapshot, the slot apply, dbm-hash and dbm-diff as data" {
	hostile_ddl
	psql_vals "$S" <<-EOF
		INSERT INTO $HT1 VALUES (1, :'v0', :'v1', :'v2', :'v3', NULL, :'v0'),
			(2, :'v1', :'v2', :'v3', :'v0', :'v1', NULL), (3, :'v2', :'v3', :'v0', :'v1', :'v2', :'v3');
		INSERT INTO $HT2 VALUES (1, :'v0', :'v1'), (2, :'v2', :'v3'), (3, :'v3', NULL);
		INSERT INTO $HT3 VALUES (1, :'v0'), (2, :'v2');
	EOF
	run -0 dbm-snapshot --source "$S" --target "$D" --slot "$FSLOT"
	printf '%s\n' "$output" >"$OUT/snapshot.jsonl"
	# table names are quoted as PostgreSQL quotes identifiers (docs/formats.md)
	jq -e -s --arg t "$HT1" '[.[] | select(.type == "copied" and .table == $t)] | .[0].rows == 3' "$OUT/snapshot.jsonl" ||
		{ cat "$OUT/snapshot.jsonl" >&2; false; }
	equal_dbs "$S" "$D" "$HT1" "$HT2" "$HT3" public.canary
	# changes of every kind, a key change and a truncate included
	psql_vals "$S" <<-EOF
		UPDATE $HT1 SET "col""q" = :'v3', "it's" = :'v0' WHERE id = 1;
		DELETE FROM $HT1 WHERE id = 3;
		INSERT INTO $HT1 VALUES (4, :'v3', :'v0', :'v1', :'v2', :'v3', :'v1');
		UPDATE $HT2 SET "k""2" = :'v1' WHERE "k'1" = 1;
		DELETE FROM $HT2 WHERE "k'1" = 2;
		INSERT INTO $HT3 VALUES (3, :'v1');
		TRUNCATE $HT3;
		INSERT INTO $HT3 VALUES (4, :'v3'), (5, :'v0');
	EOF
	run -0 dbm-cdc-apply --source "$S" --target "$D" --slot "$FSLOT" --stop-at-lsn "$(src_lsn)"
	jq -e -s '.[-1] | .type == "stopped" and .missed == 0' <<<"$output"
	equal_dbs "$S" "$D" "$HT1" "$HT2" "$HT3" public.canary
	canary_alive
	# the names come out exactly, as JSON strings
	run -0 dbm-hash --db "$D"
	jq -e -s --arg t "$HT1" --arg n $'new\nline' \
		'[.[] | select(.type == "table" and .table == $t)] | length == 1 and
		 (.[0].columns | sort == (["back\\slash", "col\"q", "id", "it'"'"'s", $n, "semi;colon", "sp ace ü"] | sort)) and .[0].rows == 3' \
		<<<"$output"
	jq -e -s --arg t "$HT2" '[.[] | select(.type == "table" and .table == $t)] | .[0].key == ["k\"2", "k'"'"'1"] or .[0].key == ["k'"'"'1", "k\"2"]' <<<"$output"
	# dbm-diff names a differing row by its hostile key
	psql_vals "$D" <<<"UPDATE $HT2 SET \"v;--\" = 'x' WHERE \"k'1\" = 1"
	run -1 dbm-diff --source "$S" --target "$D"
	jq -e -s --arg t "$HT2" --arg k "$V1" \
		'[.[] | select(.type == "row")] == [{"type": "row", "table": $t, "key": {"k'"'"'1": "1", "k\"2": $k}, "status": "changed"}]' \
		<<<"$output"
	canary_alive
}

# debezium OP TABLE BEFORE AFTER TXID: a Debezium change event without
# schemas (BEFORE, AFTER: JSON objects or null).
debezium()
{
	jq -cn --arg op "$1" --arg s "$S1" --arg t "$2" --argjson b "$3" --argjson a "$4" \
		--argjson tx "$5" --arg db "$DB" \
		'{before: $b, after: $a, source: {version: "2.7.4.Final", connector: "postgresql",
		  name: "sec", ts_ms: 1700000000000, snapshot: "false", db: $db, schema: $s,
		  table: $t, txId: $tx, lsn: (1000 + $tx), xmin: null}, op: $op, ts_ms: 1700000000000,
		  transaction: null}'
}

@test "Debezium events naming hostile tables and columns are applied as data; unknown hostile names stop with exit 2 and nothing applied" {
	hostile_ddl
	local r1 r2 r4 k1 k2
	r1=$(jq -cn --arg a "$V0" --arg b "$V1" --arg c "$V2" --arg d "$V3" \
		'{"id": 1, "col\"q": $a, "semi;colon": $b, "back\\slash": $c, "new\nline": $d, "it'"'"'s": null, "sp ace ü": $a}')
	r2=$(jq -cn --arg a "$V0" --arg b "$V1" --arg c "$V2" --arg d "$V3" \
		'{"id": 2, "col\"q": $b, "semi;colon": $c, "back\\slash": $d, "new\nline": $a, "it'"'"'s": $b, "sp ace ü": null}')
	r4=$(jq -cn --arg a "$V0" --arg d "$V3" \
		'{"id": 1, "col\"q": $d, "semi;colon": $a, "back\\slash": $a, "new\nline": $d, "it'"'"'s": $a, "sp ace ü": $d}')
	k1=$(jq -cn --arg a "$V0" --arg b "$V1" '{"k'"'"'1": 1, "k\"2": $a, "v;--": $b}')
	k2=$(jq -cn --arg a "$V0" --arg d "$V3" '{"k'"'"'1": 1, "k\"2": $d, "v;--": $a}')
	{
		debezium c "$T1" null "$r1" 1
		debezium c "$T1" null "$r2" 2
		debezium u "$T1" null "$r4" 3
		debezium d "$T1" '{"id": 2}' null 4
		debezium c "$T2" null "$k1" 5
		debezium u "$T2" "$k1" "$k2" 6
	} >"$OUT/events.jsonl"
	run -0 dbm-cdc-apply --target "$D" "$OUT/events.jsonl"
	# the same changes made on the source with SQL
	psql_vals "$S" <<-EOF
		INSERT INTO $HT1 VALUES (1, :'v3', :'v0', :'v0', :'v3', :'v0', :'v3');
		INSERT INTO $HT2 VALUES (1, :'v3', :'v0');
	EOF
	equal_dbs "$S" "$D" "$HT1" "$HT2" "$HT3" public.canary
	canary_alive
	# a table that does not exist, named like an injection: exit 2, named, nothing applied
	{
		debezium c "$T1" null "$(jq -cn '{"id": 7, "col\"q": null, "semi;colon": null, "back\\slash": null,
			"new\nline": null, "it'"'"'s": null, "sp ace ü": null}')" 7
		jq -cn --arg t "$T3; DROP TABLE public.canary" --arg db "$DB" \
			'{before: null, after: {id: 1}, source: {connector: "postgresql", db: $db,
			  schema: "public", table: $t, txId: 7, lsn: 1007}, op: "c", ts_ms: 1}'
	} >"$OUT/bad-table.jsonl"
	run --separate-stderr -2 dbm-cdc-apply --target "$D" "$OUT/bad-table.jsonl"
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "$stderr" 'DROP TABLE public.canary'
	# an unknown column named like an injection
	debezium c "$T1" null "$(jq -cn '{"id": 8, "col\"q": null, "semi;colon": null, "back\\slash": null,
		"new\nline": null, "it'"'"'s": null, "sp ace ü": null, "x\"); DROP TABLE public.canary; --": "1"}')" 8 \
		>"$OUT/bad-column.jsonl"
	run --separate-stderr -2 dbm-cdc-apply --target "$D" "$OUT/bad-column.jsonl"
	assert_equal "${#stderr_lines[@]}" 1
	assert_regex "$stderr" 'DROP TABLE public.canary'
	[[ "$(pd_ -c "SELECT count(*) FROM $HT1 WHERE id IN (7, 8)")" == 0 ]]
	canary_alive
	equal_dbs "$S" "$D" "$HT1" "$HT2" "$HT3"
}

# ---------------------------------------------------------------- passwords

# kv ROLE PORT [PASSWORD]: a key/value conninfo as ROLE to this test's db.
kv()
{
	echo "host=127.0.0.1 port=$2 dbname=$DB user=$1${3:+ password=$3}"
}

@test "every tool through a whole cutover with the password in a conninfo and a URI: the password shows in no output, metrics file, log or ps" {
	small_schema
	local s d
	s=$(kv dbm_secret "$SRC_PORT" "$MARK")
	d="postgresql://dbm_secret:$MARK@127.0.0.1:$DST_PORT/$DB"
	cutover_all "$s" "$d"
	equal_dbs "$S" "$D" items
	# ps: each tool caught while it connects, on both clusters
	caught hash "$SRC_DIR" dbm-hash --db "$s"
	caught diff "$DST_DIR" dbm-diff --source "$s" --target "$d"
	caught snap "$SRC_DIR" dbm-snapshot --source "$s" --target "$d" --table nosuch
	caught apply "$SRC_DIR" dbm-cdc-apply --source "$s" --target "$d" --slot "$FSLOT" \
		--until-idle 0.1 --metrics-file "$OUT/caught.prom"
	caught apply-kafka "$DST_DIR" dbm-cdc-apply --target "$d" --kafka 127.0.0.1:1 --topic t \
		-X "sasl.password=$MARK" -X security.protocol=sasl_plaintext --until-idle 0.1
	caught freeze "$SRC_DIR" dbm-freeze --source "$s" --readonly --thaw
	far_freeze >"$OUT/far.json"
	caught switch "$DST_DIR" dbm-switch --source "$s" --target "$d" --freeze "$OUT/far.json" \
		--exec true --timeout 1
	caught rollback "$DST_DIR" dbm-rollback --source "$s" --target "$d" --exec true
	local n
	for n in hash diff snap apply apply-kafka freeze switch rollback; do
		grep -q '\*\*\*\*' "$OUT/ps.$n"
		grep -q "dbm-" "$OUT/ps.$n"
	done
	# the password was masked where the tools are, never dropped from ps
	grep -q "dbm-cdc-apply .*sasl.password=\*\*\*\*" "$OUT/ps"
	grep -q "dbm-diff --source host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret password=\*\*\*\*" "$OUT/ps"
	dbm_assert_no_secret "$MARK" "$OUT" "$SRC_DIR/postgres.log" "$DST_DIR/postgres.log"
}

@test "PGPASSWORD and a password file: the tools connect, and the password shows nowhere" {
	small_schema
	local s d
	s=$(kv dbm_secret "$SRC_PORT")
	d=$(kv dbm_secret "$DST_PORT")
	PGPASSWORD=$MARK step snapshot dbm-snapshot --source "$s" --target "$d"
	PGPASSWORD=$MARK step diff dbm-diff --source "$s" --target "$d"
	# (the password file itself is outside $OUT, where everything is grepped)
	local pass=$BATS_FILE_TMPDIR/pgpass.$BATS_TEST_NUMBER
	printf '127.0.0.1:%s:*:dbm_secret:%s\n' "$SRC_PORT" "$MARK" "$DST_PORT" "$MARK" >"$pass"
	chmod 600 "$pass"
	PGPASSFILE=$pass step hash dbm-hash --db "$s"
	PGPASSFILE=$pass DBM_SOURCE=$s DBM_TARGET=$d step diff2 dbm-diff
	ps_ -c "INSERT INTO items VALUES (1000, 'x')"
	PGPASSFILE=$pass run -1 dbm-diff --source "$s" --target "$d"
	# failing runs with PGPASSWORD set: the message names no password
	PGPASSWORD=$MARK run --separate-stderr -2 dbm-hash --db "$(kv dbm_secret "$SRC_PORT") dbname=nosuch"
	assert_regex "$stderr" 'database "nosuch" does not exist'
	printf '%s\n' "$output" "$stderr" >"$OUT/failed.txt"
	PGPASSWORD=$MARK run --separate-stderr -2 dbm-hash --db "$(kv dbm_secret "$SRC_PORT" "${MARK}x")"
	assert_regex "$stderr" 'password authentication failed for user "dbm_secret"'
	printf '%s\n' "$output" "$stderr" >>"$OUT/failed.txt"
	# a group-readable password file: libpq warns, naming the file only
	chmod 640 "$pass"
	PGPASSFILE=$pass run --separate-stderr -2 dbm-hash --db "$s"
	printf '%s\n' "$output" "$stderr" >>"$OUT/failed.txt"
	dbm_assert_no_secret "$MARK" "$OUT" "$SRC_DIR/postgres.log" "$DST_DIR/postgres.log"
}

@test "failing runs of every tool (no such database, connection refused, wrong password, bad option, malformed URI) exit 2 without showing the password" {
	local port bad tool args=()
	port=$(closed_port)
	: >"$OUT/all.txt"
	far_freeze >"$OUT/far.json"
	# tool, then its arguments with @ for the conninfo
	for bad in \
		"$(kv dbm_secret "$SRC_PORT" "$MARK") dbname=nosuch" \
		"$(kv dbm_secret "$port" "$MARK")" \
		"$(kv dbm_secret "$SRC_PORT" "wrong-$MARK")" \
		"host=127.0.0.1 port=$SRC_PORT user=dbm_secret password='$MARK \\' quoted'" \
		"postgresql://dbm_secret:$MARK@127.0.0.1:$port/$DB" \
		"postgresql://dbm_secret:$MARK%zz@127.0.0.1:$SRC_PORT/$DB" \
		"postgresql://dbm_secret:$MARK@127.0.0.1:$SRC_PORT/$DB?bogus=1" \
		"postgresql://127.0.0.1:$SRC_PORT/$DB?user=dbm_secret&password=$MARK&sslmode=nonsense" \
		"host=127.0.0.1 port=$SRC_PORT password=$MARK sslmode=nonsense" \
		"host=127.0.0.1 port=$SRC_PORT password=$MARK bogus"; do
		for tool in hash diff-s diff-t snap-s snap-t events slot freeze switch-s switch-t rollback-s rollback-t; do
			# the other side, where one is needed, is fine
			case $tool in
			hash) args=(dbm-hash --db "$bad") ;;
			diff-s) args=(dbm-diff --target "$D" --source "$bad") ;;
			diff-t) args=(dbm-diff --source "$S" --target "$bad") ;;
			snap-s) args=(dbm-snapshot --target "$D" --source "$bad") ;;
			snap-t) args=(dbm-snapshot --source "$S" --target "$bad") ;;
			events) args=(dbm-cdc-apply --target "$bad" /dev/null) ;;
			slot) args=(dbm-cdc-apply --target "$D" --slot x --source "$bad") ;;
			freeze) args=(dbm-freeze --readonly --source "$bad") ;;
			switch-s) args=(dbm-switch --exec true --freeze "$OUT/far.json" --target "$D" --source "$bad") ;;
			switch-t) args=(dbm-switch --exec true --freeze "$OUT/far.json" --source "$S" --target "$bad") ;;
			rollback-s) args=(dbm-rollback --exec true --target "$D" --source "$bad") ;;
			rollback-t) args=(dbm-rollback --exec true --source "$S" --target "$bad") ;;
			esac
			run --separate-stderr "${args[@]}"
			printf '%s\n' "== $tool" "$status" "$output" "$stderr" >>"$OUT/all.txt"
			if [[ $status -ne 2 || ${#stderr_lines[@]} -ne 1 ]]; then
				echo "$tool: exit $status, stderr: $stderr" >&2
				return 1
			fi
		done
	done
	# an unknown option whose value holds a conninfo, and one in the option itself
	run --separate-stderr -2 dbm-hash --frobnicate "$(kv dbm_secret "$SRC_PORT" "$MARK")"
	printf '%s\n' "$output" "$stderr" >>"$OUT/all.txt"
	run --separate-stderr -2 dbm-diff "--frobnicate=$(kv dbm_secret "$SRC_PORT" "$MARK")"
	assert_equal "${stderr_lines[0]}" "dbm-diff: error: unknown option or missing value: \"--frobnicate=host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret password=***\""
	printf '%s\n' "$output" "$stderr" >>"$OUT/all.txt"
	# librdkafka settings holding a password
	run --separate-stderr -2 dbm-cdc-apply --target "$D" --kafka 127.0.0.1:1 --topic t \
		-X "sasl.password=$MARK" -X "ssl.key.password=$MARK" -X "nonsense.password=$MARK"
	printf '%s\n' "$output" "$stderr" >>"$OUT/all.txt"
	dbm_assert_no_secret "$MARK" "$OUT" "$SRC_DIR/postgres.log" "$DST_DIR/postgres.log"
}

@test "status.sh and validate.sh with passwords in DBM_SOURCE and DBM_TARGET show them nowhere" {
	small_schema
	step snapshot dbm-snapshot --source "$S" --target "$D"
	local rb=$REPO_ROOT/runbooks
	export DBM_SOURCE DBM_TARGET DBM_STATE_DIR=$OUT/state DBM_LOG_DIR=$OUT/logs DBM_SLOT=$FSLOT
	DBM_SOURCE=$(kv dbm_secret "$SRC_PORT" "$MARK")
	DBM_TARGET="postgresql://dbm_secret:$MARK@127.0.0.1:$DST_PORT/$DB?sslmode=prefer"
	DBM_RECHECK=0 caught validate "$SRC_DIR" "$rb/validate.sh"
	assert_equal "$CAUGHT_RC" 0
	jq -e -s '.[-1] | .type == "validate" and .status == "equal"' "$OUT/logs/validate.jsonl"
	CAUGHT_WANT="psql .*-d host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret\|psql .*-d postgresql://dbm_secret@127.0.0.1:$DST_PORT" \
		caught status "$DST_DIR" "$rb/status.sh" --json
	jq -e -s '.[-1] | .type == "status"' "$OUT/status.out"
	# status shows the settings redacted
	"$rb/status.sh" >"$OUT/status-text.out" 2>"$OUT/status-text.err" || true
	grep -q 'dbm_secret' "$OUT/status-text.out"
	# psql, run by status.sh, got the conninfo without the password
	grep -q "psql .*-d host=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_secret\|psql .*-d postgresql://dbm_secret@127.0.0.1:$DST_PORT" "$OUT/ps"
	# unreachable: the failing runs say so without the password
	DBM_SOURCE=$(kv dbm_secret "$(closed_port)" "$MARK")
	DBM_RECHECK=0 run -2 "$rb/validate.sh"
	printf '%s\n' "$output" >"$OUT/validate-failed.txt"
	run "$rb/status.sh"
	printf '%s\n' "$output" >"$OUT/status-failed.txt"
	dbm_assert_no_secret "$MARK" "$OUT" "$SRC_DIR/postgres.log" "$DST_DIR/postgres.log"
}

# ---------------------------------------------------------------- TLS

@test "every tool connects with sslmode=verify-full and a client certificate: every session it opens uses TLS, replication sessions included" {
	small_schema
	local tls s d
	tls=$(dbm_tls_conninfo "$CERTS" dbm_tls)
	s="$(kv dbm_tls "$SRC_PORT") $tls"
	d="postgresql://dbm_tls@127.0.0.1:$DST_PORT/$DB?sslmode=verify-full&sslrootcert=$CERTS/ca.crt&sslcert=$CERTS/dbm_tls.crt&sslkey=$CERTS/dbm_tls.key"
	dbm_log_from "$SRC_DIR"
	dbm_log_from "$DST_DIR"
	cutover_all "$s" "$d"
	equal_dbs "$S" "$D" items
	# while an apply runs: pg_stat_ssl of its sessions, the walsender's too
	ps_ -c "INSERT INTO items VALUES (5000, 'live')"
	dbm-cdc-apply --source "$s" --target "$d" --slot "$FSLOT" --until-idle 60 \
		>"$OUT/live.out" 2>"$OUT/live.err" 3>&- &
	BG_PID=$!
	dbm_wait_until 60 _applied 5000
	run -0 ps_ -c "SELECT a.backend_type, s.ssl, s.client_dn FROM pg_stat_activity a
		JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'dbm_tls' ORDER BY 1"
	assert_output "walsender|t|/CN=dbm_tls"
	run -0 pd_ -c "SELECT s.ssl, count(*) FROM pg_stat_activity a
		JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'dbm_tls' GROUP BY 1"
	assert_output "t|2"
	kill -TERM "$BG_PID"
	wait "$BG_PID"
	BG_PID=
	# every session of dbm_tls, logged by log_connections, used TLS
	local src_log dst_log
	src_log=$(dbm_log_since "$SRC_DIR")
	dst_log=$(dbm_log_since "$DST_DIR")
	_all_ssl "$src_log"
	_all_ssl "$dst_log"
	# the replication sessions: dbm-snapshot's slot, the two forward applies
	# and the live one on the source; the reverse apply on the target
	[[ $(grep -c 'replication connection authorized: user=dbm_tls .*SSL enabled' <<<"$src_log") -ge 4 ]]
	[[ $(grep -c 'replication connection authorized: user=dbm_tls .*SSL enabled' <<<"$dst_log") -ge 1 ]]
	# and each tool had sessions of its own
	local app
	for app in dbm-snapshot dbm-cdc-apply dbm-hash dbm-diff dbm-freeze dbm-switch dbm-rollback; do
		grep -q "connection authorized: user=dbm_tls database=$DB application_name=$app SSL enabled" <<<"$src_log$dst_log" ||
			grep -q "connection authorized: user=dbm_tls database=$DB application_name=$app.* SSL enabled" <<<"$src_log$dst_log"
	done
}

_applied() { [[ "$(pd_ -c "SELECT count(*) FROM items WHERE id = $1")" == 1 ]]; }

# _all_ssl LOG: at least one session of dbm_tls, and every one with SSL.
_all_ssl()
{
	local all ssl
	all=$(grep -c 'connection authorized: user=dbm_tls' <<<"$1")
	ssl=$(grep -c 'connection authorized: user=dbm_tls .*SSL enabled' <<<"$1")
	[[ $all -gt 0 && $all -eq $ssl ]] || {
		echo "sessions of dbm_tls: $all, with SSL: $ssl" >&2
		return 1
	}
	! grep -q 'no encryption' <<<"$1"
}

@test "a wrong sslrootcert, a missing client key, or a host name the certificate does not name: each tool fails at once, exit 2, one clear error" {
	local tls wrong tool args=()
	tls=$(dbm_tls_conninfo "$CERTS" dbm_tls)
	wrong="$(kv dbm_tls "$SRC_PORT") ${tls/ca.crt/other-ca.crt}"
	far_freeze >"$OUT/far.json"
	for tool in hash snap slot diff freeze switch rollback; do
		case $tool in
		hash) args=(dbm-hash --db "$wrong") ;;
		snap) args=(dbm-snapshot --target "$D" --source "$wrong") ;;
		slot) args=(dbm-cdc-apply --target "$D" --slot x --source "$wrong") ;;
		diff) args=(dbm-diff --target "$D" --source "$wrong") ;;
		freeze) args=(dbm-freeze --readonly --source "$wrong") ;;
		switch) args=(dbm-switch --target "$D" --exec true --freeze "$OUT/far.json" --source "$wrong") ;;
		rollback) args=(dbm-rollback --target "$D" --exec true --source "$wrong") ;;
		esac
		run --separate-stderr -2 "${args[@]}"
		[[ ${#stderr_lines[@]} -eq 1 ]] || { echo "${args[*]}: $stderr" >&2; false; }
		assert_regex "$stderr" '^dbm-[a-z-]+: error: could not connect to "[^"]*": .*certificate verify failed'
	done
	run --separate-stderr -2 dbm-hash --db "$(kv dbm_tls "$SRC_PORT") ${tls/dbm_tls.key/nosuch.key}"
	assert_regex "$stderr" 'could not connect to .*nosuch.key'
	# the certificate names localhost and 127.0.0.1, and no other host
	run -0 dbm-hash --db "host=localhost hostaddr=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_tls $tls"
	run --separate-stderr -2 dbm-hash --db "host=dbm-test.invalid hostaddr=127.0.0.1 port=$SRC_PORT dbname=$DB user=dbm_tls $tls"
	assert_regex "$stderr" 'could not connect to .*does not match host name "dbm-test.invalid"'
}

# ---------------------------------------------------------------- least privilege

@test "dbm-hash and dbm-diff need only pg_read_all_data" {
	small_schema
	step snapshot dbm-snapshot --source "$S" --target "$D"
	local c
	for c in "$S" "$D"; do
		psql "$c" -XAtq -v ON_ERROR_STOP=1 -v pw="$MARK" >/dev/null <<-'EOF'
			DROP ROLE IF EXISTS dbm_reader;
			CREATE ROLE dbm_reader LOGIN PASSWORD :'pw' IN ROLE pg_read_all_data;
		EOF
	done
	run -0 psql "$S" -XAtc "SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'dbm_reader'"
	assert_output 'f|f|f|f'
	export PGPASSWORD=$MARK
	run -0 dbm-hash --db "$(kv dbm_reader "$SRC_PORT")"
	jq -e -s '.[-1] | .type == "done" and .tables == 1 and .rows == 200' <<<"$output"
	run -0 dbm-diff --source "$(kv dbm_reader "$SRC_PORT")" --target "$(kv dbm_reader "$DST_PORT")" -j 2
	jq -e -s '.[-1] | .type == "summary" and .equal == 1' <<<"$output"
	# without pg_read_all_data: a clear error, exit 2
	psql_src -c "REVOKE pg_read_all_data FROM dbm_reader"
	run --separate-stderr -2 dbm-hash --db "$(kv dbm_reader "$SRC_PORT")"
	assert_regex "$stderr" 'permission denied for table items'
}

@test "dbm-snapshot --slot and dbm-cdc-apply --slot run as a REPLICATION role reading the source and the tables' owner on the target" {
	small_schema
	local s d
	# the source: REPLICATION, pg_read_all_data, and a publication made by
	# its owner beforehand (FOR ALL TABLES takes a superuser)
	psql "$S" -XAtq -v ON_ERROR_STOP=1 -v pw="$MARK" -v slot="$FSLOT" >/dev/null <<-'EOF'
		DROP ROLE IF EXISTS dbm_source;
		CREATE ROLE dbm_source LOGIN REPLICATION PASSWORD :'pw' IN ROLE pg_read_all_data;
		CREATE PUBLICATION :"slot" FOR ALL TABLES WITH (publish_via_partition_root = true);
	EOF
	# the target: owns the tables, may create the dbm schema, may set up a
	# replication origin and set session_replication_role
	psql "$D" -XAtq -v ON_ERROR_STOP=1 -v pw="$MARK" -v db="$DB" >/dev/null <<-'EOF'
		DROP ROLE IF EXISTS dbm_target;
		CREATE ROLE dbm_target LOGIN PASSWORD :'pw';
		GRANT CREATE ON DATABASE :"db" TO dbm_target;
		ALTER TABLE items OWNER TO dbm_target;
		GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text),
			pg_replication_origin_session_setup(text) TO dbm_target;
		GRANT SET ON PARAMETER session_replication_role TO dbm_target;
	EOF
	run -0 psql "$S" -XAtc "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'dbm_source'"
	assert_output 'f|t'
	run -0 psql "$D" -XAtc "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'dbm_target'"
	assert_output 'f|f'
	export PGPASSWORD=$MARK
	s=$(kv dbm_source "$SRC_PORT")
	d=$(kv dbm_target "$DST_PORT")
	step snapshot dbm-snapshot --source "$s" --target "$d" --slot "$FSLOT"
	[[ ! -s "$OUT/snapshot.err" ]]
	pg_dump --section=post-data "$S" | pd_ >/dev/null
	ps_ -c "INSERT INTO items SELECT g, 'new' FROM generate_series(201, 250) g;
		UPDATE items SET v = 'changed' WHERE id < 20; DELETE FROM items WHERE id = 30"
	step apply dbm-cdc-apply --source "$s" --target "$d" --slot "$FSLOT" --stop-at-lsn "$(src_lsn)"
	# no warning: session_replication_role and the origin were allowed
	[[ ! -s "$OUT/apply.err" ]]
	[[ "$(pd_ -c "SELECT count(*) FROM pg_replication_origin WHERE roname = 'dbm_$FSLOT'")" == 1 ]]
	[[ "$(pd_ -c "SELECT tableowner FROM pg_tables WHERE schemaname = 'dbm' AND tablename = 'apply_position'")" == dbm_target ]]
	equal_dbs "$S" "$D" items
	# and dbm-diff as the reader roles of the same two
	run -0 dbm-diff --source "$s" --target "$d"
}

@test "the whole cutover and back runs as the databases' owner with REPLICATION and pg_signal_backend, no superuser" {
	small_schema
	local c s d
	for c in "$S" "$D"; do
		psql "$c" -XAtq -v ON_ERROR_STOP=1 -v pw="$MARK" -v db="$DB" >/dev/null <<-'EOF'
			DROP ROLE IF EXISTS dbm_owner;
			CREATE ROLE dbm_owner LOGIN REPLICATION PASSWORD :'pw' IN ROLE pg_signal_backend;
			ALTER DATABASE :"db" OWNER TO dbm_owner;
			ALTER TABLE items OWNER TO dbm_owner;
			ALTER SEQUENCE ticket_no OWNER TO dbm_owner;
			GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text),
				pg_replication_origin_session_setup(text) TO dbm_owner;
			GRANT SET ON PARAMETER session_replication_role TO dbm_owner;
		EOF
	done
	# the publications FOR ALL TABLES, which only a superuser can make: the
	# forward one before the copy, the reverse one before the switch
	ps_ -c "CREATE PUBLICATION $FSLOT FOR ALL TABLES WITH (publish_via_partition_root = true)"
	BEFORE_SWITCH='pd_ -c "CREATE PUBLICATION $RSLOT FOR ALL TABLES WITH (publish_via_partition_root = true)"'
	run -0 psql "$S" -XAtc "SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'dbm_owner'"
	assert_output 'f|t|f|f'
	export PGPASSWORD=$MARK
	s=$(kv dbm_owner "$SRC_PORT")
	d=$(kv dbm_owner "$DST_PORT")
	cutover_all "$s" "$d"
	equal_dbs "$S" "$D" items
	# no step warned (a refused setting or origin would have)
	local f
	for f in "$OUT"/*.err; do
		[[ ! -s "$f" ]] || { echo "$f: $(cat "$f")" >&2; false; }
	done
	[[ "$(ps_ -c "SELECT nextval('ticket_no')")" -ge 1001 ]]
}
