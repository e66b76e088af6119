#!/usr/bin/env bash
# bench/e2e.sh - dbm-cdc-apply against Debezium's JDBC sink connector, end to
# end through real Debezium and Kafka (make bench-e2e).
#
# One source cluster and one target cluster (scripts/pgcluster.sh, both with
# track_commit_timestamp=on), one Kafka broker (KRaft) and one Kafka Connect
# worker (scripts/e2e-kafka.sh; JsonConverter with schemas) running
# Debezium's PostgreSQL connector (pgoutput) on the source database "bench":
#
#   bench_accounts  aid int PK, bid int, abalance int, filler char(84)
#                   (pgbench's accounts)
#   bench_orders    id bigint PK, customer_id int, status text,
#                   amount numeric(12,2), qty smallint, paid bool,
#                   created_at timestamptz, updated_at timestamp, due date,
#                   note varchar(200), attrs jsonb, ref uuid
#
# The backlog: the procedure bench_backlog (below) commits exactly
# BENCH_E2E_CHANGES (200000) changes: A accounts inserted 100 per
# transaction, then T transactions of 4 changes each (an account updated, an
# order inserted, the order inserted 50 transactions earlier updated, then
# either the order inserted 100 transactions earlier deleted or a second
# account updated), then one transaction inserting a sentinel row (key 0)
# into each table: the last message of each topic.  Once the source
# connector has confirmed everything (a marker row in schema "sync", the
# e2e_sync idea of tests/helpers/kafka-e2e.bash), the topics must hold
# exactly that many messages (one partition each; tombstones.on.delete=false,
# so one message per change).
#
# Throughput: the same backlog drained BENCH_RUNS (3) times by each sink,
# interleaved, each time into a fresh target database made from the source's
# pg_dump --schema-only:
#
#   dbm    dbm-cdc-apply --kafka B --topic-regex 'bench\.public\..*'
#          --group <new> --until-idle 3 (defaults otherwise)
#   jdbc   Debezium's JDBC sink connector on the same Connect worker, a new
#          connector (so a new consumer group) each time: upsert,
#          delete.enabled, primary.key.mode=record_key, schema.evolution=none,
#          RegexRouter from bench.public.T to T, defaults otherwise
#
# Each drain is timed from the moment the sink is started (the process, or
# the PUT of the connector) to the moment both sentinel rows are visible in
# the target: a DO block in the target polls for them every 20 ms and prints
# clock_timestamp() (same clock: one machine).  Then the target must equal
# the source for dbm-diff (exit 0) and for a plain-SQL checksum (count and
# sum of hashtextextended(row::text) per table).  CPU: the sink (dbm-cdc-apply
# from /usr/bin/time; the Connect JVM for the JDBC sink, which also hosts the
# idle source connector), the target cluster, the broker, the rest of the
# machine (others).
#
# End-to-end lag: with both targets caught up, live windows of
# BENCH_E2E_LIVE_SECS (30) each, one sink consuming at a time (the other one
# stopped or paused): pgbench on the source (one client; per transaction an
# account updated, an order inserted, a random older order updated and, one
# transaction in two, the order inserted 100 transactions earlier deleted) at
# BENCH_E2E_RATE (100) transactions/s, then at full speed; per rate, three
# windows: dbm-cdc-apply with its defaults, dbm-cdc-apply --batch-ms
# BENCH_E2E_BATCH_MS (0), the JDBC sink.  Per changed row,
# lag = target commit time - source commit time, both from
# pg_xact_commit_timestamp(xmin) of the row's last version (source rows whose
# last change committed in the window; their target rows, read once the sink
# has caught up): p50, p99 and max with percentile_cont; split at the
# timestamp of the row's last message in Kafka (set by Connect's producer)
# into source-to-Kafka and Kafka-to-target.  dbm-cdc-apply runs
# with --no-origin in these windows: in a session with a replication origin,
# PostgreSQL stamps every commit with the origin's timestamp, which
# dbm-cdc-apply never sets per transaction (pg_replication_origin_xact_setup),
# so all its commits would carry the time of the session's first one.  In
# Kafka mode the origin only marks the target's WAL for a reverse stream.
# At the end both targets must equal the source again.
#
# Results replace the "e2e" section of bench/RESULTS.md.
#
# The JDBC sink's plugin directory: the Maven closure scripts/e2e-kafka.sh
# fetch-jdbc copies includes jackson-core, -databind and -annotations, which
# clash with Connect's own (ServiceLoader finds Connect's
# jackson-module-scala, "not a subtype", and the task fails as Hibernate
# starts).  This script points scripts/e2e-kafka.sh at a private cache made
# of symbolic links to the real one, without those three jars (the plugin
# then uses Connect's Jackson); nothing in the cache changes.
#
# Environment: BENCH_E2E_CHANGES (200000), BENCH_RUNS (3),
# BENCH_E2E_RATE (100 source transactions/s), BENCH_E2E_LIVE_SECS (30),
# BENCH_E2E_BATCH_MS (0: the --batch-ms of the second dbm-cdc-apply windows),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_KEEP=1 keeps the work directory,
# DBM_E2E_HEAP (1g here: Kafka's default broker heap), DBM_E2E_JAVA_OPTS
# (Kafka's own KAFKA_JVM_PERFORMANCE_OPTS here), DBM_E2E_CACHE.
set -euo pipefail

PROG=bench-e2e
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHANGES=${BENCH_E2E_CHANGES:-200000}
RUNS=${BENCH_RUNS:-3}
RATE=${BENCH_E2E_RATE:-100}
LIVE_S=${BENCH_E2E_LIVE_SECS:-30}
BATCH_MS=${BENCH_E2E_BATCH_MS:-0}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
E2E_KAFKA=$ROOT/scripts/e2e-kafka.sh
TOPIC_RE='bench\.public\..*'
IDLE_S=3
MAX_WAIT=1800 # seconds any sink may take to catch up
# the targets of the issue
TARGET_RATIO=5
# a shared machine: wait at most this long for it to be idle before a run
export BENCH_QUIET_MAX=${BENCH_QUIET_MAX:-60}
export DBM_E2E_HEAP=${DBM_E2E_HEAP:-1g}
# kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS: how Connect runs by default
export DBM_E2E_JAVA_OPTS=${DBM_E2E_JAVA_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15}
. "$ROOT/bench/common.sh"

export PGAPPNAME=dbm-bench

for cmd in psql pg_dump pgbench jq kcat curl awk flock java; do
	command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/setup.sh --e2e)"
done
for t in dbm-cdc-apply dbm-diff; do
	[[ -x "$ROOT/build/$t" ]] || die "$ROOT/build/$t not built (run make)"
done
[[ "$CHANGES" =~ ^[0-9]+$ ]] && ((CHANGES >= 1000)) || die "BENCH_E2E_CHANGES must be a number of at least 1000"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "BENCH_E2E_RATE must be a positive number"
[[ "$LIVE_S" =~ ^[1-9][0-9]*$ ]] || die "BENCH_E2E_LIVE_SECS must be a positive number"
[[ "$BATCH_MS" =~ ^[0-9]+$ ]] || die "BENCH_E2E_BATCH_MS must be a number"
# the backlog: CHANGES = A + 4 T + 2, about a quarter of it the accounts
T_TX=$(((CHANGES - 2 - CHANGES / 4) / 4))
A_ROWS=$((CHANGES - 2 - 4 * T_TX))
TIME=
[[ -x /usr/bin/time ]] && TIME=/usr/bin/time

wait_for_other_benches
T0=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/dbm-bench-e2e.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/out"
KDIR=$WORK/kafka
# one binary for the whole run, whatever happens to build/ meanwhile
cp "$ROOT/build/dbm-cdc-apply" "$ROOT/build/dbm-diff" "$WORK/"
APPLY=$WORK/dbm-cdc-apply
DIFF=$WORK/dbm-diff
DBM_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain -- lib tools 2>/dev/null)" ]]; then
	DBM_REV+=" with local changes"
fi
# the JVMs stop by themselves when this script is gone (e2e-kafka.sh's
# watchdog), even after kill -9
export DBM_E2E_OWNER=$$
BG=() # background processes to kill on exit

cleanup()
{
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${BG[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${BG[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	DBM_E2E_CACHE=$WORK/e2e-cache "$E2E_KAFKA" stop "$KDIR" >/dev/null 2>&1 || true
	"$PGCLUSTER" stop "$WORK/src" >/dev/null 2>&1 || true
	"$PGCLUSTER" stop "$WORK/dst" >/dev/null 2>&1 || true
	if [[ "${BENCH_KEEP:-}" == 1 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

q() { psql "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
qv() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At -c "$2"; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'; }
port_of() { sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$1"; }

# ---------------------------------------------------------------- jars
say "fetching Kafka, Debezium and its JDBC sink (cached)"
CACHE=$("$E2E_KAFKA" fetch-jdbc 2>"$WORK/fetch.err") || { cat "$WORK/fetch.err" >&2; die "scripts/e2e-kafka.sh fetch-jdbc"; }
MIRROR=$WORK/e2e-cache
mkdir "$MIRROR"
for d in "$CACHE"/*; do
	case ${d##*/} in
	debezium-postgres-*)
		mkdir "$MIRROR/${d##*/}"
		for p in "$d"/*; do
			if [[ ${p##*/} == debezium-connector-jdbc ]]; then
				mkdir "$MIRROR/${d##*/}/debezium-connector-jdbc"
				for j in "$p"/*.jar; do
					case ${j##*/} in
					jackson-core-*.jar | jackson-databind-*.jar | jackson-annotations-*.jar) ;;
					*) ln -s "$j" "$MIRROR/${d##*/}/debezium-connector-jdbc/" ;;
					esac
				done
				cp "$p/.complete" "$MIRROR/${d##*/}/debezium-connector-jdbc/"
			else
				ln -s "$p" "$MIRROR/${d##*/}/"
			fi
		done
		;;
	*) ln -s "$d" "$MIRROR/" ;;
	esac
done
export DBM_E2E_CACHE=$MIRROR
JDBC_JAR=$(cd "$MIRROR"/debezium-postgres-*/debezium-connector-jdbc && ls debezium-connector-jdbc-*.jar)
PGJDBC_JAR=$(cd "$MIRROR"/debezium-postgres-*/debezium-connector-jdbc && ls postgresql-*.jar)
DBZ_DIR=$(cd "$MIRROR"/debezium-postgres-* && pwd)
KAFKA_DIR=$(cd "$MIRROR"/kafka-* && pwd)

# ---------------------------------------------------------------- clusters
# start NAME: a cluster with track_commit_timestamp (a restart: new port)
start_cluster()
{
	local dir=$WORK/$1 c
	c=$("$PGCLUSTER" start "$dir")
	qv "$c" "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
	"$PGCLUSTER" stop "$dir" >/dev/null
	c=$("$PGCLUSTER" start "$dir")
	[[ $(qv "$c" "SHOW track_commit_timestamp") == on ]] || die "track_commit_timestamp is not on in $dir"
	echo "$c"
}
say "starting the source and target clusters in $WORK"
# (the servers and the JVMs must not hold the benchmark lock)
SRC0=$(start_cluster src {BENCH_LOCK_FD}>&-)
DST0=$(start_cluster dst {BENCH_LOCK_FD}>&-)
PM[source]=$(head -n 1 "$WORK/src/data/postmaster.pid")
PM[target]=$(head -n 1 "$WORK/dst/data/postmaster.pid")
SRC=${SRC0/dbname=postgres/dbname=bench}
dst_db() { echo "${DST0/dbname=postgres/dbname=$1}"; }

say "starting Kafka and Kafka Connect (heap $DBM_E2E_HEAP each)"
t=$EPOCHREALTIME
BROKERS=$("$E2E_KAFKA" start-kafka "$KDIR" 2>>"$WORK/kafka-start.err" {BENCH_LOCK_FD}>&-) ||
	{ cat "$WORK/kafka-start.err" >&2; die "could not start Kafka"; }
CONNECT=$("$E2E_KAFKA" start-connect "$KDIR" "$BROKERS" 2>>"$WORK/kafka-start.err" {BENCH_LOCK_FD}>&-) ||
	{ cat "$WORK/kafka-start.err" >&2; die "could not start Kafka Connect"; }
PM[kafka]=$(cat "$KDIR/kafka.pid")
PM[connect]=$(cat "$KDIR/connect.pid")
curl -sf "$CONNECT/connector-plugins" | grep -q io.debezium.connector.jdbc.JdbcSinkConnector ||
	die "Connect does not list io.debezium.connector.jdbc.JdbcSinkConnector"
say "Kafka at $BROKERS, Connect at $CONNECT ($(since "$t") s)"

# ---------------------------------------------------------------- source
q "$SRC0" -c "CREATE DATABASE bench"
q "$SRC" <<'EOF'
CREATE TABLE bench_accounts (
	aid int PRIMARY KEY,
	bid int NOT NULL,
	abalance int NOT NULL,
	filler char(84)
);
CREATE TABLE bench_orders (
	id bigint PRIMARY KEY,
	customer_id int NOT NULL,
	status text NOT NULL,
	amount numeric(12,2),
	qty smallint,
	paid boolean,
	created_at timestamptz NOT NULL,
	updated_at timestamp,
	due date,
	note varchar(200),
	attrs jsonb,
	ref uuid
);
-- ids of the orders the live windows insert
CREATE SEQUENCE bench_live_ids START 1000000000;
-- e2e_sync's marker: its topic is not a benchmark topic
CREATE SCHEMA sync;
CREATE TABLE sync.marker (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO sync.marker VALUES (1, 0);

-- bench_backlog(a, t): exactly a + 4 t + 2 changes
CREATE PROCEDURE sync.bench_backlog(a int, t int) LANGUAGE plpgsql AS $$
DECLARE
	i int;
	k bigint; -- a FOR loop's own variable would be an int
BEGIN
	FOR i IN 0 .. (a - 1) / 100 LOOP
		INSERT INTO bench_accounts
		SELECT g, 1 + g / 10000, 0, 'filler ' || g
		FROM generate_series(i * 100 + 1, least(a, i * 100 + 100)) g;
		COMMIT;
	END LOOP;
	FOR j IN 1 .. t LOOP
		k := j;
		UPDATE bench_accounts SET abalance = abalance + (k % 1000)::int - 500
		WHERE aid = 1 + (k * 7919) % a;
		INSERT INTO bench_orders VALUES (k, (k * 31) % 5000, 'new',
			((k * 7907) % 10000000 - 5000000) / 100.0, (k % 20)::smallint, false,
			timestamptz '2024-01-01 00:00:00+00' + k * interval '1.000123 sec',
			NULL, date '2024-01-01' + (k % 400)::int,
			'order ' || k || CASE WHEN k % 97 = 0 THEN E' "quoted" \\ é\ttab' ELSE '' END,
			jsonb_build_object('k', k, 'tags', jsonb_build_array('t' || k % 7, k % 3 = 0)),
			md5(k::text)::uuid);
		-- the order of 50 transactions ago (or this one: an insert and an
		-- update of one row in one transaction)
		UPDATE bench_orders SET status = 'paid', paid = true,
			updated_at = timestamp '2024-06-01' + k * interval '0.5 sec',
			attrs = attrs || jsonb_build_object('paid', k)
		WHERE id = CASE WHEN k > 50 THEN k - 50 ELSE k END;
		IF k % 2 = 1 AND k > 100 THEN
			DELETE FROM bench_orders WHERE id = k - 100;
		ELSE
			UPDATE bench_accounts SET abalance = abalance - 1, filler = 'touched ' || k
			WHERE aid = 1 + (k * 104729 + 17) % a;
		END IF;
		COMMIT;
	END LOOP;
	-- the sentinels, last in each topic; the live windows bump them
	INSERT INTO bench_accounts VALUES (0, 0, 0, 'sentinel');
	INSERT INTO bench_orders (id, customer_id, status, created_at)
	VALUES (0, 0, 'sentinel', '2000-01-01 00:00:00+00');
	COMMIT;
END
$$;
EOF
pg_dump --schema-only -t public.bench_accounts -t public.bench_orders "$SRC" >"$WORK/target-schema.sql"

# the source connector: pgoutput, a filtered publication of the tables
# there now, no tombstones (one message per change)
SRC_CONFIG=$(jq -n --arg port "$(port_of "$SRC")" '{
	"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
	"tasks.max": "1",
	"database.hostname": "127.0.0.1", "database.port": $port,
	"database.user": "postgres", "database.password": "unused", "database.dbname": "bench",
	"topic.prefix": "bench", "plugin.name": "pgoutput",
	"slot.name": "bench", "publication.name": "bench",
	"publication.autocreate.mode": "filtered",
	"schema.include.list": "public,sync", "snapshot.mode": "initial",
	"tombstones.on.delete": "false"}')

# connector_running NAME: wait (up to 120 s) until its task runs
connector_running()
{
	local s deadline=$((SECONDS + 120))
	while :; do
		s=$(curl -sf "$CONNECT/connectors/$1/status") || s='{}'
		jq -e '.tasks[0].state == "RUNNING"' <<<"$s" >/dev/null && return 0
		if jq -e '.tasks[0].state == "FAILED"' <<<"$s" >/dev/null; then
			jq -r '.tasks[0].trace' <<<"$s" | head -n 20 >&2
			die "connector $1 failed"
		fi
		((SECONDS < deadline)) || die "connector $1 not running after 120 s: $s"
		sleep 0.2
	done
}

put_connector()
{
	curl -sSf -X PUT -H 'Content-Type: application/json' --data "$2" \
		"$CONNECT/connectors/$1/config" >/dev/null || die "PUT connector $1"
}

say "starting Debezium's PostgreSQL connector"
put_connector bench "$SRC_CONFIG"
connector_running bench

# sync: return once every change committed on the source so far is in Kafka
# (tests/helpers/kafka-e2e.bash's e2e_sync): the marker is updated after
# them, and the slot must confirm a position past it, which Debezium does
# only once Connect has committed the offsets of the records before
sync_kafka()
{
	local lsn deadline=$((SECONDS + MAX_WAIT))
	lsn=$(qv "$SRC" "SELECT pg_current_wal_insert_lsn()")
	qv "$SRC" "UPDATE sync.marker SET n = n + 1" >/dev/null
	until [[ $(qv "$SRC" "SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots
		WHERE slot_name = 'bench'") == t ]]; do
		((SECONDS < deadline)) || die "the source connector has not confirmed $lsn after ${MAX_WAIT}s"
		sleep 0.1
	done
}

# messages: how many messages the benchmark topics hold
messages()
{
	local t n total=0
	for t in bench.public.bench_accounts bench.public.bench_orders; do
		n=$(kcat -b "$BROKERS" -C -t "$t" -o -1 -e -q -f '%o\n' 2>/dev/null) || n=
		[[ -n "$n" ]] && total=$((total + n + 1))
	done
	echo "$total"
}

CHECK_SQL="SELECT string_agg(x, ' ' ORDER BY x) FROM (
	SELECT 'accounts:' || count(*) || ':' || coalesce(sum(hashtextextended(t::text, 0)), 0) AS x
	FROM bench_accounts t
	UNION ALL
	SELECT 'orders:' || count(*) || ':' || coalesce(sum(hashtextextended(t::text, 0)), 0)
	FROM bench_orders t) s"

say "the backlog: $CHANGES changes ($A_ROWS account inserts, $T_TX transactions of 4 changes, 2 sentinels)"
t=$EPOCHREALTIME
qv "$SRC" "CALL sync.bench_backlog($A_ROWS, $T_TX)" >/dev/null
GEN_S=$(since "$t")
sync_kafka
KAFKA_S=$(since "$t")
got=$(messages)
[[ $got == "$CHANGES" ]] || die "the topics hold $got messages, expected $CHANGES"
read -r OPS_C OPS_U OPS_D < <(for tp in bench.public.bench_accounts bench.public.bench_orders; do
	kcat -b "$BROKERS" -C -t "$tp" -e -q -f '%s\n' | grep -o '"op":"[a-z]"'
done | awk '{ n[substr($0, 7, 1)]++ } END { print n["c"] + 0, n["u"] + 0, n["d"] + 0 }')
[[ $((OPS_C + OPS_U + OPS_D)) == "$CHANGES" ]] || die "ops $OPS_C/$OPS_U/$OPS_D do not add up to $CHANGES"
TOPIC_MB=$(du -cm "$KDIR"/kafka-data/bench.public.bench_* | tail -n 1 | cut -f1)
SRC_SUM=$(qv "$SRC" "$CHECK_SQL")
SRC_ROWS=$(qv "$SRC" "SELECT (SELECT count(*) FROM bench_accounts) || ' accounts, ' ||
	(SELECT count(*) FROM bench_orders) || ' orders'")
say "committed in ${GEN_S}s, all in Kafka after ${KAFKA_S}s ($TOPIC_MB MB of topics); c/u/d $OPS_C/$OPS_U/$OPS_D; source: $SRC_ROWS"

# ---------------------------------------------------------------- drains
new_target()
{
	q "$DST0" -c "CREATE DATABASE $1"
	q "$(dst_db "$1")" -f "$WORK/target-schema.sql" >/dev/null
}

jdbc_config()
{
	jq -n --arg url "jdbc:postgresql://127.0.0.1:$(port_of "$DST0")/$1" --arg re "$TOPIC_RE" '{
		"connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
		"tasks.max": "1",
		"topics.regex": $re,
		"connection.url": $url,
		"connection.username": "postgres", "connection.password": "unused",
		"insert.mode": "upsert", "delete.enabled": "true",
		"primary.key.mode": "record_key", "schema.evolution": "none",
		"transforms": "route",
		"transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
		"transforms.route.regex": "bench\\.public\\.(.*)",
		"transforms.route.replacement": "$1"}'
}

# start_waiter DB OUT [ROUND]: a session on the target that prints (NOTICE,
# to OUT) "first EPOCH" once a benchmark table has a row, then "done EPOCH"
# once both sentinel rows are there (with abalance and customer_id ROUND
# when given); it gives up after MAX_WAIT seconds.  Its pid in WAITER.
start_waiter()
{
	local cond="EXISTS (SELECT FROM bench_accounts WHERE aid = 0) AND EXISTS (SELECT FROM bench_orders WHERE id = 0)"
	[[ -n "${3:-}" ]] && cond="EXISTS (SELECT FROM bench_accounts WHERE aid = 0 AND abalance = $3)
		AND EXISTS (SELECT FROM bench_orders WHERE id = 0 AND customer_id = $3)"
	PGAPPNAME=bench-e2e-waiter psql "$(dst_db "$1")" -X -q -v ON_ERROR_STOP=1 -c "DO \$\$
	DECLARE deadline timestamptz := clock_timestamp() + interval '$MAX_WAIT s';
	BEGIN
		LOOP
			EXIT WHEN EXISTS (SELECT FROM bench_accounts) OR EXISTS (SELECT FROM bench_orders);
			IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'nothing arrived'; END IF;
			PERFORM pg_sleep(0.01);
		END LOOP;
		RAISE NOTICE 'first %', extract(epoch FROM clock_timestamp());
		LOOP
			EXIT WHEN $cond;
			IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'the sentinels did not arrive'; END IF;
			PERFORM pg_sleep(0.02);
		END LOOP;
		RAISE NOTICE 'done %', extract(epoch FROM clock_timestamp());
	END \$\$" >"$2" 2>&1 3>&- &
	WAITER=$!
	BG+=("$WAITER")
}

# wait_waiter OUT KIND NAME [PID]: wait for the waiter, watching the sink
# (the connector NAME, or dbm-cdc-apply's PID); sets FIRST and DONE
wait_waiter()
{
	local out=$1 kind=$2 name=$3 pid=${4:-} s n=0
	while kill -0 "$WAITER" 2>/dev/null; do
		if [[ $kind == jdbc ]] && ((n++ % 8 == 0)); then
			s=$(curl -sf "$CONNECT/connectors/$name/status") || s='{}'
			if jq -e '.tasks[0].state == "FAILED"' <<<"$s" >/dev/null; then
				jq -r '.tasks[0].trace' <<<"$s" | head -n 20 >&2
				die "connector $name failed"
			fi
		fi
		if [[ $kind == dbm ]] && ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" || true
			tail -n 5 "$WORK/out/$name.err" >&2
			die "dbm-cdc-apply ($name) ended before the target had everything"
		fi
		sleep 0.25
	done
	wait "$WAITER" || { cat "$out" >&2; die "waiting for $name: the target never had everything"; }
	FIRST=$(awk '$2 == "first" { print $3 }' "$out")
	DONE=$(awk '$2 == "done" { print $3 }' "$out")
	[[ -n "$FIRST" && -n "$DONE" ]] || { cat "$out" >&2; die "waiter of $name printed no times"; }
}

# verify DB WHAT: the target equals the source: dbm-diff exit 0, every table
# equal, and the same plain-SQL checksums
verify()
{
	local db=$1 what=$2 got
	local rc=0
	"$DIFF" --source "$SRC" --target "$(dst_db "$db")" -t 'public.*' >"$WORK/out/$db.diff" 2>&1 || rc=$?
	if ((rc != 0)); then
		tail -n 5 "$WORK/out/$db.diff" >&2
		die "$what: dbm-diff exited $rc"
	fi
	[[ $(jq -c -s '.[-1] | [.type, .tables, .equal]' "$WORK/out/$db.diff") == '["summary",2,2]' ]] ||
		die "$what: dbm-diff: $(tail -n 1 "$WORK/out/$db.diff")"
	got=$(qv "$(dst_db "$db")" "$CHECK_SQL")
	[[ $got == "$(qv "$SRC" "$CHECK_SQL")" ]] || die "$what: checksums differ: target $got"
}

cpu_of() { proc_cpu "$1"; echo "$CPU"; }
srv_of() { server_cpu "$1"; echo "$CPU"; }

printf 'sink\trun\twall_s\tfirst_s\tevents_per_s\tsteady_per_s\tsink_cpu_s\ttarget_cpu_s\tkafka_cpu_s\tothers_pct\tload1\tsink_rss_mb\n' \
	>"$WORK/runs.tsv"

# drain SINK RUN: one timed drain of the whole backlog into a new target
drain()
{
	local sink=$1 r=$2 db="${1}_$2" out="$WORK/out/${1}_$2" pid="" load
	local c0 c1 t0c t1c k0 k1 m0 m1 t0 sink_cpu rss stopped
	new_target "$db"
	# no ANALYZE: statistics of empty tables would make the generic plans
	# of both sinks' prepared UPDATEs and DELETEs sequential scans, kept
	# while the tables fill (autovacuum would not replan within a drain)
	q "$(dst_db "$db")" -c "CHECKPOINT"
	quiet_wait
	load=$(cut -d' ' -f1 /proc/loadavg)
	# the target's commits, read again once every drain is done (a
	# backend reports its counts when idle, within 10 s)
	printf '%s\t%s\n' "$db" "$(qv "$DST0" "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")" \
		>>"$WORK/commits0.tsv"
	start_waiter "$db" "$out.wait"
	sleep 0.3 # the waiter is polling
	t0c=$(srv_of "${PM[target]}")
	k0=$(cpu_of "${PM[kafka]}")
	c0=$(cpu_of "${PM[connect]}")
	machine_cpu
	m0=$CPU
	t0=$EPOCHREALTIME
	if [[ $sink == dbm ]]; then
		local timed=()
		[[ -n "$TIME" ]] && timed=("$TIME" -f '%M %U %S' -o "$out.time")
		"${timed[@]}" "$APPLY" --target "$(dst_db "$db")" \
			--kafka "$BROKERS" --topic-regex "$TOPIC_RE" --group "$db" --until-idle "$IDLE_S" \
			>"$out.out" 2>"$WORK/out/$db.err" &
		pid=$!
		BG+=("$pid")
		wait_waiter "$out.wait" dbm "$db" "$pid"
	else
		put_connector "$db" "$(jdbc_config "$db")"
		wait_waiter "$out.wait" jdbc "$db"
	fi
	t1c=$(srv_of "${PM[target]}")
	k1=$(cpu_of "${PM[kafka]}")
	c1=$(cpu_of "${PM[connect]}")
	machine_cpu
	m1=$CPU
	if [[ $sink == dbm ]]; then
		wait "$pid" || { tail -n 5 "$WORK/out/$db.err" >&2; die "dbm-cdc-apply ($db) failed"; }
		stopped=$(jq -r 'select(.type == "stopped") | "\(.reason) \(.applied) \(.missed)"' "$out.out")
		[[ $stopped == "idle $CHANGES 0" ]] ||
			die "dbm-cdc-apply ($db) stopped with \"$stopped\", not \"idle $CHANGES 0\""
		if [[ -n "$TIME" ]]; then
			read -r rss usr sys <"$out.time"
			sink_cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
			rss=$((rss / 1024))
		else
			sink_cpu=nan rss=nan
		fi
	else
		sink_cpu=$(awk -v c=$((c1 - c0)) -v k="$TICK" 'BEGIN { printf "%.2f", c / k }')
		rss=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/${PM[connect]}/status")
		# the last run's connector stays (paused) for the live windows
		if ((r == RUNS)); then
			curl -sSf -X PUT "$CONNECT/connectors/$db/pause" >/dev/null || die "pause $db"
		else
			curl -sSf -X DELETE "$CONNECT/connectors/$db" >/dev/null || die "delete $db"
		fi
	fi
	verify "$db" "$sink run $r"
	awk -v OFS='\t' -v s="$sink" -v r="$r" -v t0="$t0" -v f="$FIRST" -v d="$DONE" -v n="$CHANGES" \
		-v sc="$sink_cpu" -v tc=$((t1c - t0c)) -v kc=$((k1 - k0)) -v cc=$((c1 - c0)) \
		-v m=$((m1 - m0)) -v k="$TICK" -v ncpu="$NCPU" -v l="$load" -v rss="$rss" 'BEGIN {
		w = d - t0
		# others: the machine minus the sink, the target, the broker and
		# Connect (the JDBC sink, or idle)
		o = m - tc - kc - cc
		if (s == "dbm") o -= sc * k
		o = o < 0 ? 0 : 100 * o / (w * k * ncpu)
		printf "%s\t%s\t%.3f\t%.3f\t%.0f\t%.0f\t%s\t%.2f\t%.2f\t%.0f\t%s\t%s\n", s, r, w, f - t0,
			n / w, n / (d - f), sc, tc / k, kc / k, o, l, rss }' >>"$WORK/runs.tsv"
	say "$sink #$r: $(tail -n 1 "$WORK/runs.tsv" | cut -f3)s, $(tail -n 1 "$WORK/runs.tsv" | cut -f5) events/s (first row after $(tail -n 1 "$WORK/runs.tsv" | cut -f4)s), load $load; target equals the source"
}

say "throughput: $RUNS drains of the backlog by each sink, interleaved"
for ((r = 1; r <= RUNS; r++)); do
	# the last run of each sink is the one the live windows continue
	if ((r % 2 == 1)); then
		drain dbm "$r"
		drain jdbc "$r"
	else
		drain jdbc "$r"
		drain dbm "$r"
	fi
done
# the commits of each drain: the target's transactions, the waiter's one
# and the checks' few included
sleep 11
while read -r db c0; do
	c1=$(qv "$DST0" "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")
	printf '%s\t%s\n' "$db" $((c1 - c0))
done <"$WORK/commits0.tsv" >"$WORK/commits.tsv"
awk -F'\t' -v OFS='\t' 'NR == FNR { c[$1] = $2; next }
	FNR == 1 { print $0, "target_commits"; next } { print $0, c[$1 "_" $2] }' \
	"$WORK/commits.tsv" "$WORK/runs.tsv" >"$WORK/runs.tmp" && mv "$WORK/runs.tmp" "$WORK/runs.tsv"
for ((r = 1; r < RUNS; r++)); do
	q "$DST0" -c "DROP DATABASE dbm_$r" -c "DROP DATABASE jdbc_$r"
done

# ---------------------------------------------------------------- lag
DBM_DB=dbm_$RUNS
JDBC_DB=jdbc_$RUNS
ROUND=0
DBM_LIVE=

# bump: the next round of sentinels, committed after everything else
bump()
{
	ROUND=$((ROUND + 1))
	qv "$SRC" "BEGIN; UPDATE bench_accounts SET abalance = $ROUND WHERE aid = 0;
		UPDATE bench_orders SET customer_id = $ROUND WHERE id = 0; COMMIT" >/dev/null
}

# caught_up SINK: wait until that sink's target has the current round
caught_up()
{
	local db out="$WORK/out/catchup.$1.$ROUND.wait"
	db=$([[ $1 == dbm ]] && echo "$DBM_DB" || echo "$JDBC_DB")
	start_waiter "$db" "$out" "$ROUND"
	if [[ $1 == dbm ]]; then
		wait_waiter "$out" dbm "live_dbm" "$DBM_LIVE"
	else
		wait_waiter "$out" jdbc "$JDBC_DB"
	fi
}

# dbm_live_start [OPTION]...: dbm-cdc-apply in the background, continuing
dbm_live_start()
{
	"$APPLY" --target "$(dst_db "$DBM_DB")" --kafka "$BROKERS" --topic-regex "$TOPIC_RE" \
		--group "$DBM_DB" --no-origin "$@" >>"$WORK/out/live_dbm.out" 2>>"$WORK/out/live_dbm.err" &
	DBM_LIVE=$!
	BG+=("$DBM_LIVE")
}

dbm_live_stop()
{
	kill -TERM "$DBM_LIVE"
	wait "$DBM_LIVE" || die "dbm-cdc-apply (live) exited $? on SIGTERM"
	[[ $(tail -n 1 "$WORK/out/live_dbm.out" | jq -r '.type + " " + .reason + " " + (.missed | tostring)') == "stopped signal 0" ]] ||
		die "dbm-cdc-apply (live) did not stop as expected: $(tail -n 1 "$WORK/out/live_dbm.out")"
	DBM_LIVE=
}

# (the new id goes through \gset: currval() in a WHERE clause, a volatile
# function, would make the delete a sequential scan)
LIVE_SCRIPT=$WORK/live.sql
cat >"$LIVE_SCRIPT" <<EOF
\\set aid random(1, $A_ROWS)
\\set oid random(1, $T_TX)
\\set del random(0, 1)
BEGIN;
UPDATE bench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT nextval('bench_live_ids') AS new_id \\gset
INSERT INTO bench_orders (id, customer_id, status, amount, qty, paid, created_at, note, attrs, ref)
	VALUES (:new_id, :aid % 5000, 'new', :aid / 100.0, 1, false, now(),
	'live', '{"live": true}', gen_random_uuid());
UPDATE bench_orders SET status = 'shipped', updated_at = localtimestamp WHERE id = :oid;
\\if :del
DELETE FROM bench_orders WHERE id = :new_id - 100;
\\endif
END;
EOF
q "$DST0" -c "CREATE DATABASE lag"
LAGDB=$(dst_db lag)
q "$LAGDB" -c "CREATE TABLE src (w text, tbl text, k bigint, ts float8)" \
	-c "CREATE TABLE tgt (w text, tbl text, k bigint, ts float8)" \
	-c "CREATE TABLE kts (w text, tbl text, k bigint, off bigint, ts float8)"
printf 'window\tsink\trate\tseconds\ttx_per_s\tchanges\tchanges_per_s\trows\tp50_ms\tp99_ms\tmax_ms\tcatchup_s\tsrc_kafka_p50_ms\tsrc_kafka_p99_ms\tkafka_tgt_p50_ms\tkafka_tgt_p99_ms\n' >"$WORK/lag.tsv"

# next_offset TOPIC: the offset its next message will get
next_offset()
{
	local o
	o=$(kcat -b "$BROKERS" -C -t "$1" -o -1 -e -q -f '%o\n' 2>/dev/null) || o=
	echo $((${o:--1} + 1))
}

# kafka_times W TABLE TOPIC FROM: per message of TOPIC from offset FROM on,
# "W TABLE key offset timestamp" (the timestamp Connect's producer gave it,
# in ms)
kafka_times()
{
	kcat -b "$BROKERS" -C -t "$3" -o "$4" -e -q -f '%o %T %k\n' |
		sed -E -n 's/^([0-9]+) ([0-9]+) .*"payload":\{"[a-z_]+":(-?[0-9]+)\}\}$/\3\t\1\t\2/p' |
		awk -v OFS='\t' -v w="$1" -v t="$2" '{ print w, t, $0 }'
}

# rows_sql: per row of the benchmark tables but the sentinels, its table,
# key and the commit time of its last version (epoch seconds)
ROWS_SQL="SELECT 'a', aid, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM bench_accounts WHERE aid <> 0
	UNION ALL
	SELECT 'o', id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM bench_orders WHERE id <> 0"

# window SINK MODE: one live window (MODE rate or full), then the lag of
# every row whose last change committed in it; SINK dbm, dbm-b (dbm with
# --batch-ms BATCH_MS) or jdbc
window()
{
	local sink=${1%-b} mode=$2 w="$1-$2" ws we m0 m1 tps rate_opt=() tc
	say "lag: $w window (${LIVE_S}s)"
	if [[ $1 == dbm-b ]]; then
		dbm_live_start --batch-ms "$BATCH_MS"
	elif [[ $sink == dbm ]]; then
		dbm_live_start
	else
		curl -sSf -X PUT "$CONNECT/connectors/$JDBC_DB/resume" >/dev/null || die "resume $JDBC_DB"
	fi
	# the previous windows' changes first
	bump
	caught_up "$sink"
	quiet_wait
	[[ $mode == rate ]] && rate_opt=(-R "$RATE")
	m0=$(messages)
	local oa oo
	oa=$(next_offset bench.public.bench_accounts)
	oo=$(next_offset bench.public.bench_orders)
	ws=$(qv "$SRC" "SELECT extract(epoch FROM clock_timestamp())")
	pgbench -n -c 1 "${rate_opt[@]}" -T "$LIVE_S" -f "$LIVE_SCRIPT" "$SRC" >"$WORK/out/pgbench.$w" 2>&1 3>&- ||
		{ tail -n 5 "$WORK/out/pgbench.$w" >&2; die "pgbench ($w)"; }
	we=$(qv "$SRC" "SELECT extract(epoch FROM clock_timestamp())")
	tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$WORK/out/pgbench.$w")
	bump
	tc=$EPOCHREALTIME
	caught_up "$sink"
	tc=$(since "$tc")
	m1=$(messages)
	if [[ $sink == dbm ]]; then
		dbm_live_stop
	else
		curl -sSf -X PUT "$CONNECT/connectors/$JDBC_DB/pause" >/dev/null || die "pause $JDBC_DB"
	fi
	# the rows: the source's last versions committed in the window, and
	# their target rows
	q "$SRC" -c "COPY (SELECT '$w', * FROM ($ROWS_SQL) r(t, k, ts)
		WHERE ts BETWEEN $ws AND $we) TO STDOUT" >"$WORK/src.$w.tsv"
	q "$(dst_db "$([[ $sink == dbm ]] && echo "$DBM_DB" || echo "$JDBC_DB")")" \
		-c "COPY (SELECT '$w', * FROM ($ROWS_SQL) r) TO STDOUT" >"$WORK/tgt.$w.tsv"
	q "$LAGDB" -c "COPY src FROM STDIN" <"$WORK/src.$w.tsv"
	q "$LAGDB" -c "COPY tgt FROM STDIN" <"$WORK/tgt.$w.tsv"
	{
		kafka_times "$w" a bench.public.bench_accounts "$oa"
		kafka_times "$w" o bench.public.bench_orders "$oo"
	} >"$WORK/kts.$w.tsv"
	[[ $(wc -l <"$WORK/kts.$w.tsv") == $((m1 - m0)) ]] ||
		die "$w: $(wc -l <"$WORK/kts.$w.tsv") message keys read, expected $((m1 - m0))"
	q "$LAGDB" -c "COPY kts FROM STDIN" <"$WORK/kts.$w.tsv"
	q "$LAGDB" -c "ANALYZE src, tgt, kts"
	local res
	res=$(qv "$LAGDB" "SELECT count(*), count(t.k), count(*) FILTER (WHERE t.ts < s.ts),
		round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ts - s.ts))::numeric, 1),
		round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY t.ts - s.ts))::numeric, 1),
		round((1000 * max(t.ts - s.ts))::numeric, 1)
		FROM src s LEFT JOIN tgt t USING (w, tbl, k) WHERE s.w = '$w'")
	local rows matched older p50 p99 max
	IFS='|' read -r rows matched older p50 p99 max <<<"$res"
	((rows > 0)) || die "$w: no row changed in the window"
	[[ $matched == "$rows" && $older == 0 ]] ||
		die "$w: of $rows rows changed in the window, $matched are on the target, $older of them older"
	# the two parts: source commit to Kafka (the timestamp of the row's
	# last message), Kafka to target commit
	local parts nk
	parts=$(qv "$LAGDB" "WITH last AS (SELECT DISTINCT ON (tbl, k) tbl, k, ts / 1000 AS ts
			FROM kts WHERE w = '$w' ORDER BY tbl, k, off DESC)
		SELECT count(*),
		round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY l.ts - s.ts))::numeric, 1),
		round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY l.ts - s.ts))::numeric, 1),
		round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ts - l.ts))::numeric, 1),
		round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY t.ts - l.ts))::numeric, 1)
		FROM src s JOIN tgt t USING (w, tbl, k) JOIN last l USING (tbl, k) WHERE s.w = '$w'")
	local sk50 sk99 kt50 kt99
	IFS='|' read -r nk sk50 sk99 kt50 kt99 <<<"$parts"
	[[ $nk == "$rows" ]] || die "$w: $nk of $rows rows have a message in the window"
	# changes: messages in the window, the two sentinel bumps apart
	awk -v OFS='\t' -v w="$w" -v s="$1" -v r="$([[ $mode == rate ]] && echo "$RATE tx/s" || echo full)" \
		-v sec="$(awk -v a="$ws" -v b="$we" 'BEGIN { printf "%.1f", b - a }')" -v tps="$tps" \
		-v ch=$((m1 - m0 - 2)) -v rows="$rows" -v p50="$p50" -v p99="$p99" -v mx="$max" -v tc="$tc" \
		-v sk50="$sk50" -v sk99="$sk99" -v kt50="$kt50" -v kt99="$kt99" \
		'BEGIN { print w, s, r, sec, tps, ch, sprintf("%.0f", ch / sec), rows, p50, p99, mx, tc,
			sk50, sk99, kt50, kt99 }' >>"$WORK/lag.tsv"
	say "$w: $((m1 - m0 - 2)) changes at $tps tx/s; lag of $rows rows: p50 ${p50} ms, p99 ${p99} ms, max ${max} ms (Kafka to target: p50 ${kt50} ms, p99 ${kt99} ms); caught up ${tc}s after the window"
}

# the live sinks' targets are the last drains'; dbm-cdc-apply continues its
# group (its position is in the target), the JDBC sink its connector
for mode in rate full; do
	window dbm "$mode"
	window dbm-b "$mode"
	window jdbc "$mode"
done

say "final check: both targets catch up and equal the source"
dbm_live_start
bump
caught_up dbm
dbm_live_stop
curl -sSf -X PUT "$CONNECT/connectors/$JDBC_DB/resume" >/dev/null || die "resume $JDBC_DB"
caught_up jdbc
curl -sSf -X DELETE "$CONNECT/connectors/$JDBC_DB" >/dev/null || true
verify "$DBM_DB" "dbm after the live windows"
verify "$JDBC_DB" "jdbc after the live windows"
FINAL_ROWS=$(qv "$SRC" "SELECT (SELECT count(*) FROM bench_accounts) || ' accounts, ' ||
	(SELECT count(*) FROM bench_orders) || ' orders'")
TOTAL_MSGS=$(messages)

# ---------------------------------------------------------------- results
rmed()
{
	# rmed SINK COLUMN: median over the runs of runs.tsv
	awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $1 == s { print $c }' "$WORK/runs.tsv" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
			else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
lagcol() { awk -F'\t' -v w="$1" -v c="$2" '$1 == w { print $c }' "$WORK/lag.tsv"; }

fmt0() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
DBM_RATE=$(fmt0 "$(rmed dbm 5)")
JDBC_RATE=$(fmt0 "$(rmed jdbc 5)")
RATIO=$(ratio "$DBM_RATE" "$JDBC_RATE")
RATIO_STEADY=$(ratio "$(rmed dbm 6)" "$(rmed jdbc 6)")
V_THROUGHPUT=$(awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t) ? "met" : "**MISSED**" }')
# lower_p99 WINDOW OTHER: met when WINDOW's p99 is below OTHER's
lower_p99()
{
	if awk -v a="$(lagcol "$1" 10)" -v b="$(lagcol "$2" 10)" 'BEGIN { exit !(a < b) }'; then
		echo met
	else
		echo "**MISSED**"
	fi
}
V_LAG="defaults: $(lower_p99 dbm-rate jdbc-rate) at $RATE tx/s, $(lower_p99 dbm-full jdbc-full) at full speed"
V_LAG_B="--batch-ms $BATCH_MS: $(lower_p99 dbm-b-rate jdbc-rate) at $RATE tx/s, $(lower_p99 dbm-b-full jdbc-full) at full speed"

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$(qv "$SRC" "SELECT version()" | sed 's/ on .*//')
RDKAFKA=$(dpkg-query -W -f '${Version}' librdkafka1 2>/dev/null || true)
JAVA_VERSION=$(java -version 2>&1 | head -n 1)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
LOADS=$(awk -F'\t' 'NR > 1 { print $11 }' "$WORK/runs.tsv" | sort -g)
OTHERS=$(awk -F'\t' 'NR > 1 { print $10 }' "$WORK/runs.tsv" | sort -g)
ELAPSED=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
cpu_per_k()
{
	# CPU seconds of the sink and the target per 1000 events
	awk -v s="$(rmed "$1" 7)" -v t="$(rmed "$1" 8)" -v n="$CHANGES" 'BEGIN { printf "%.3f", 1000 * (s + t) / n }'
}

row_tp()
{
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s MB |\n' "$2" \
		"$(fmt "$(rmed "$1" 3)")" "$(fmt "$(rmed "$1" 4)")" "$(fmt0 "$(rmed "$1" 5)")" \
		"$(fmt0 "$(rmed "$1" 6)")" "$(fmt0 "$(rmed "$1" 13)")" \
		"$(fmt "$(rmed "$1" 7)")" "$(fmt "$(rmed "$1" 8)")" "$(fmt "$(rmed "$1" 9)")" "$(cpu_per_k "$1")" \
		"$(fmt0 "$(rmed "$1" 12)")"
}
row_lag()
{
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n' "$2" \
		"$(lagcol "$1" 3)" "$(lagcol "$1" 5)" "$(lagcol "$1" 6)" "$(lagcol "$1" 7)" \
		"$(lagcol "$1" 8)" "$(lagcol "$1" 9)" "$(lagcol "$1" 10)" "$(lagcol "$1" 11)" \
		"$(lagcol "$1" 13)" "$(lagcol "$1" 14)" "$(lagcol "$1" 15)" "$(lagcol "$1" 16)" "$(lagcol "$1" 12)"
}

SECTION=$WORK/section.md
cat >"$SECTION" <<EOF
# End to end: dbm-cdc-apply vs Debezium's JDBC sink (\`make bench-e2e\`)

Generated by \`bench/e2e.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC, dbm $DBM_REV
($("$APPLY" --version)). Whole run: ${ELAPSED}s.

Machine: $NCPU CPUs ($CPU_MODEL), $MEM_GB GiB memory. Everything on it,
on loopback: two $PG_VERSION clusters from \`scripts/pgcluster.sh\`
(fsync off, synchronous_commit off, track_commit_timestamp on), Apache Kafka
3.7.2 (KRaft, one broker, one partition per topic) and Kafka Connect 3.7.2
standalone from \`scripts/e2e-kafka.sh\` ($JAVA_VERSION, heap
$DBM_E2E_HEAP each, options \`$DBM_E2E_JAVA_OPTS\`,
Kafka's defaults), Debezium's PostgreSQL connector ${DBZ_DIR##*-postgres-} (pgoutput) and
its JDBC sink connector (\`$JDBC_JAR\`, \`$PGJDBC_JAR\`) on that one Connect
worker, JsonConverter with schemas; dbm-cdc-apply with librdkafka
${RDKAFKA:-?}. This machine is shared with other sessions' tests and
benchmarks: load average $LOAD_START when this run started, $LOAD_END when
it ended, $(echo $LOADS | awk '{ print $1 }')–$(echo $LOADS | awk '{ print $NF }') (1 min) when the drains started; other
processes used $(echo $OTHERS | awk '{ print $1 }')–$(echo $OTHERS | awk '{ print $NF }')% of the CPUs during the drains (each drain first
waits, up to ${BENCH_QUIET_MAX:-120} s, for the machine to be idle). Absolute numbers are noisy;
the ratios less so.

## Method

**Changes.** A source database with \`bench_accounts\` (pgbench's accounts:
int key, int, int, char(84)) and \`bench_orders\` (bigint key, int, text,
numeric(12,2), smallint, bool, timestamptz, timestamp, date, varchar, jsonb,
uuid; NULLs, quotes, backslashes, tabs, é), empty when the source connector
starts. A PL/pgSQL procedure then commits exactly $CHANGES changes ($OPS_C
inserts, $OPS_U updates, $OPS_D deletes): $A_ROWS accounts in transactions of
100, then $T_TX transactions of 4 changes (an account updated, an order
inserted, the order inserted 50 transactions earlier updated — in the first
50, the one just inserted — then either the order inserted 100 transactions
earlier deleted or a second account updated), then one transaction with a
sentinel row (key 0) in each table, the last message of each topic. It
committed in ${GEN_S}s; Debezium had everything in Kafka ${KAFKA_S}s after the
start (its slot confirmed past a later marker row): $TOPIC_MB MB of topics,
exactly $CHANGES messages (\`tombstones.on.delete=false\`: one message per
change; both sinks take the delete events). Final source state:
$SRC_ROWS.

**Throughput.** The same $CHANGES messages drained $RUNS times by each sink,
interleaved (dbm, jdbc, jdbc, dbm, dbm, jdbc...), each time into a new target
database made from the source's \`pg_dump --schema-only\` of the two tables:

- dbm: \`dbm-cdc-apply --target T --kafka B --topic-regex '$TOPIC_RE'
  --group <new> --until-idle $IDLE_S\`, nothing else (10000 rows or 200 ms
  per target transaction, librdkafka's defaults);
- jdbc: \`io.debezium.connector.jdbc.JdbcSinkConnector\` on the same Connect
  worker, a new connector name (so a new consumer group, from the earliest
  offsets) each time: \`insert.mode=upsert\`, \`delete.enabled=true\`,
  \`primary.key.mode=record_key\`, \`schema.evolution=none\`, a RegexRouter
  from \`bench.public.(.*)\` to \`\$1\`, everything else default
  (\`batch.size\` 500, Connect's \`max.poll.records\` 500, c3p0 pool).

A drain is timed from the start of the sink (dbm-cdc-apply started, or the
connector PUT through Connect's REST API) to the moment both sentinels are
visible on the target (a DO block on the target polls every 20 ms and prints
\`clock_timestamp()\`; one machine, one clock); "first row" is when the
target first had any row. events/s = $CHANGES / that time; "steady" counts
from the first row. After every drain the target equalled the source:
\`dbm-diff -t 'public.*'\` exit 0 with both tables equal, and the same
count and \`sum(hashtextextended(row::text, 0))\` per table in plain SQL;
dbm-cdc-apply reported $CHANGES applied and 0 missed. CPU is in seconds
during the drain: the sink (dbm-cdc-apply from \`/usr/bin/time\`; for the
JDBC sink, the Connect JVM, which also hosts the idle source connector),
the target cluster (its backends) and the broker; RSS is the sink's process
at the end (for the JDBC sink, the whole Connect worker); target commits
are the target database's \`xact_commit\` during the drain (a few of them the
checks').

**Lag.** Then, the targets of the last drains stay in sync while the source
takes live writes: pgbench, one client, each transaction updating a random
account, inserting an order, updating a random older order and, one
transaction in two, deleting the order inserted 100 transactions earlier
(about 3 changes; the mix of the backlog), for ${LIVE_S}s at $RATE
transactions/s, then for ${LIVE_S}s at full speed. One sink consumes at a time (the other one stopped, or its connector
paused), each window after the sink caught up with the previous ones. The
lag of a change is its target commit time minus its source commit time,
both \`pg_xact_commit_timestamp(xmin)\` of the row's last version
(\`track_commit_timestamp=on\`): every row whose last change committed on the
source within the window, read on the target once the sink has caught up
(each must be there, none older); p50 and p99 are \`percentile_cont\` over
those rows. The lag includes Debezium's source connector and Kafka, the
same for both: it is split at the timestamp of the row's last message in
Kafka (its CreateTime, set by Connect's producer as it sends) into
source → Kafka and Kafka → target, the sink's own part. dbm-cdc-apply runs twice per rate: with its defaults, and
with \`--batch-ms $BATCH_MS\` (0: a commit after every message). It commits
once a batch is 10000 rows or \`--batch-ms\` (200) old, checked after each
message and when librdkafka has had nothing for 100 ms
(\`rd_kafka_consumer_poll(..., 100)\`): a trickle of changes waits up to
200 ms for its commit, and the end of a burst up to 100 ms more. The JDBC
sink commits what each consumer poll returned, at once. In these windows
dbm-cdc-apply runs with \`--no-origin\`: in a
session with a replication origin, PostgreSQL stamps every commit with the
origin's timestamp, which dbm-cdc-apply never sets per transaction
(\`pg_replication_origin_xact_setup\`), so all its commits would carry the
time of the session's first commit (in Kafka mode the origin only marks the
target's WAL for a reverse stream). At the end both targets caught up and
again equalled the source (dbm-diff and checksums): $FINAL_ROWS, $TOTAL_MSGS
messages in all.

The JDBC sink's plugin directory: \`scripts/e2e-kafka.sh fetch-jdbc\` copies
the connector's Maven closure, which includes jackson-core, -databind and
-annotations; with those, the task fails as Hibernate starts
(\`ServiceConfigurationError: com.fasterxml.jackson.databind.Module:
com.fasterxml.jackson.module.scala.DefaultScalaModule not a subtype\`:
Connect's own Jackson modules are found through the plugin's class loader).
The benchmark gives Connect a plugin directory of links to the same jars
without those three: the sink then uses Connect's Jackson 2.16.2.

## Results

Throughput, median of $RUNS drains each:

| sink | wall (s) | first row (s) | events/s | steady events/s | target commits | sink CPU (s) | target CPU (s) | broker CPU (s) | sink+target CPU s / 1000 events | sink process RSS |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(row_tp dbm "dbm-cdc-apply")
$(row_tp jdbc "Debezium JDBC sink")

**dbm-cdc-apply drained the backlog ${RATIO}× as fast as the JDBC sink
(${RATIO_STEADY}× from the first row); target ≥ ${TARGET_RATIO}×: $V_THROUGHPUT.** The JDBC sink
committed $(fmt0 "$(rmed jdbc 13)") target transactions for $CHANGES changes (dbm-cdc-apply
$(fmt0 "$(rmed dbm 13)")), about two per delete: before it buffers a delete it flushes the
table's buffered upserts, and before an upsert its buffered deletes
(\`JdbcChangeEventSink.execute\`), each flush a transaction of its own, and
every other source transaction here deletes an order.

End-to-end lag (source commit to target commit), per window:

| window | source rate | tx/s | changes | changes/s | rows measured | p50 (ms) | p99 (ms) | max (ms) | source → Kafka p50 / p99 (ms) | Kafka → target p50 / p99 (ms) | caught up after (s) |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(row_lag dbm-rate "dbm-cdc-apply, fixed rate")
$(row_lag dbm-b-rate "dbm-cdc-apply --batch-ms $BATCH_MS, fixed rate")
$(row_lag jdbc-rate "JDBC sink, fixed rate")
$(row_lag dbm-full "dbm-cdc-apply, full speed")
$(row_lag dbm-b-full "dbm-cdc-apply --batch-ms $BATCH_MS, full speed")
$(row_lag jdbc-full "JDBC sink, full speed")

Lower p99 lag than the JDBC sink, dbm-cdc-apply with its $V_LAG; with
$V_LAG_B. "caught up after" is the time from the end of the window until
the sink had the sentinel committed after it.

## Every run

\`\`\`
$(column -t -s $'\t' "$WORK/runs.tsv")
\`\`\`

\`\`\`
$(column -t -s $'\t' "$WORK/lag.tsv")
\`\`\`
EOF
mkdir -p "$(dirname "$RESULTS")"
# others write their sections into the same file: read it just before
results_section "$RESULTS" e2e "$SECTION"

say "done in ${ELAPSED}s: dbm $DBM_RATE events/s, JDBC sink $JDBC_RATE events/s: ${RATIO}× ($V_THROUGHPUT)"
for w in rate full; do
	say "p50/p99 lag at $([[ $w == rate ]] && echo "$RATE tx/s" || echo "full speed"): dbm $(lagcol "dbm-$w" 9)/$(lagcol "dbm-$w" 10) ms, dbm --batch-ms $BATCH_MS $(lagcol "dbm-b-$w" 9)/$(lagcol "dbm-b-$w" 10) ms, JDBC $(lagcol "jdbc-$w" 9)/$(lagcol "jdbc-$w" 10) ms"
done
say "lower p99 lag: $V_LAG; $V_LAG_B; results in ${RESULTS#"$ROOT"/}"
