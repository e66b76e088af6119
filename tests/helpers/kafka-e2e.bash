# Helpers of the end-to-end suites (tests/e2e): a real Kafka broker (KRaft)
# and Kafka Connect standalone with Debezium's PostgreSQL connector, made by
# scripts/e2e-kafka.sh, between the throwaway clusters of helpers/common.
#
#   load ../helpers/common
#   load ../helpers/kafka-e2e
#   setup_file()    { dbm_start_clusters; e2e_start; }  # exports BROKERS CONNECT E2E_DIR
#   teardown_file() { e2e_stop; dbm_stop_clusters; }
#
# The JVMs also stop by themselves when the bats run ends (a watchdog on
# $BATS_ROOT_PID), whatever happened.  Timings go to the TAP output as
# "# e2e: ..." lines.

E2E_KAFKA=$REPO_ROOT/scripts/e2e-kafka.sh

# e2e_note TEXT: a comment line in the TAP output.
e2e_note()
{
	echo "# e2e: $*" >&3
}

# e2e_since START: seconds since START (an $EPOCHREALTIME), one decimal.
e2e_since()
{
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

# Fetch (once: cached), start Kafka and Connect in $BATS_FILE_TMPDIR/kafka.
e2e_start()
{
	local t
	E2E_DIR=$BATS_FILE_TMPDIR/kafka
	mkdir -p "$E2E_DIR"
	export DBM_E2E_OWNER=${BATS_ROOT_PID:-$$}
	t=$EPOCHREALTIME
	"$E2E_KAFKA" fetch >/dev/null 2>"$E2E_DIR/fetch.err" || {
		cat "$E2E_DIR/fetch.err" >&2
		return 1
	}
	if grep -q fetching "$E2E_DIR/fetch.err"; then
		e2e_note "jars fetched from Maven Central in $(e2e_since "$t") s"
	else
		e2e_note "jars cached ($(e2e_since "$t") s)"
	fi
	t=$EPOCHREALTIME
	BROKERS=$("$E2E_KAFKA" start-kafka "$E2E_DIR" 2>>"$E2E_DIR/start.err") || {
		cat "$E2E_DIR/start.err" >&2
		return 1
	}
	e2e_note "Kafka (KRaft) started in $(e2e_since "$t") s"
	t=$EPOCHREALTIME
	CONNECT=$("$E2E_KAFKA" start-connect "$E2E_DIR" "$BROKERS" 2>>"$E2E_DIR/start.err") || {
		cat "$E2E_DIR/start.err" >&2
		return 1
	}
	e2e_note "Kafka Connect started in $(e2e_since "$t") s"
	export BROKERS CONNECT E2E_DIR
}

e2e_stop()
{
	local t=$EPOCHREALTIME
	[[ -n "${E2E_DIR:-}" ]] || return 0
	"$E2E_KAFKA" stop "$E2E_DIR"
	e2e_note "Kafka and Connect stopped in $(e2e_since "$t") s"
}

# e2e_db NAME: the conninfo of database NAME on CONN ($SRC or $DST).
e2e_db()
{
	echo "${1/dbname=postgres/dbname=$2}"
}

# e2e_port CONNINFO: its port.
e2e_port()
{
	local c=" $1 "
	c=${c##* port=}
	echo "${c%% *}"
}

# e2e_connector NAME SRCCONN [KEY=VALUE]...: a Debezium PostgreSQL
# connector for the database of SRCCONN: topic prefix, slot and publication
# NAME (a filtered publication of the tables there now), pgoutput, an
# initial snapshot; KEY=VALUE pairs are added to its configuration.  Waits
# until its task runs.  The configuration is the Docker Compose
# playground's, docker/debezium-shop.json, with this test's database,
# address and names instead of the playground's (tests/compose.bats checks
# that nothing else differs).
e2e_connector()
{
	local name=$1 conn=$2 db json kv
	shift 2
	db=" $conn "
	db=${db##* dbname=}
	db=${db%% *}
	json=$(jq --arg name "$name" --arg port "$(e2e_port "$conn")" --arg db "$db" '. + {
		"database.hostname": "127.0.0.1", "database.port": $port,
		"database.password": "unused", "database.dbname": $db,
		"topic.prefix": $name, "slot.name": $name, "publication.name": $name}' \
		"$REPO_ROOT/docker/debezium-shop.json") || return 1
	for kv in "$@"; do
		json=$(jq --arg k "${kv%%=*}" --arg v "${kv#*=}" '.[$k] = $v' <<<"$json")
	done
	curl -sSf -X PUT -H 'Content-Type: application/json' --data "$json" \
		"$CONNECT/connectors/$name/config" >/dev/null || return 1
	local s deadline=$((SECONDS + 60))
	while :; do
		s=$(curl -sf "$CONNECT/connectors/$name/status") || s='{}'
		jq -e '.tasks[0].state == "RUNNING"' <<<"$s" >/dev/null && return 0
		if jq -e '.tasks[0].state == "FAILED"' <<<"$s" >/dev/null; then
			jq -r '.tasks[0].trace' <<<"$s" | head -n 20 >&2
			echo "e2e_connector: connector $name failed" >&2
			return 1
		fi
		if ((SECONDS >= deadline)); then
			echo "e2e_connector: connector $name not running after 60 s: $s" >&2
			e2e_log_tail
			return 1
		fi
		sleep 0.2
	done
}

# e2e_drop_connector NAME SRCCONN: delete the connector, then its slot.
e2e_drop_connector()
{
	local i active
	curl -sf -X DELETE "$CONNECT/connectors/$1" >/dev/null || true
	for ((i = 0; i < 150; i++)); do
		active=$(psql "$2" -XAtq -c "SELECT active FROM pg_replication_slots
			WHERE slot_name = '$1'") || return 0
		case $active in
		t) sleep 0.2 ;;
		f) psql "$2" -XAtq -c "SELECT pg_drop_replication_slot('$1')" >/dev/null 2>&1 || true ;;
		*) return 0 ;;
		esac
	done
}

# e2e_sync SRCCONN NAME: return once every change committed in that database
# so far is in Kafka.  A marker row (table e2e_marker, which every source
# database has) is updated after them, and the connector's slot must
# confirm a position past the end of WAL before that update: Debezium
# confirms a position only after Kafka Connect has committed the offsets of
# the records up to it, which it does once the broker has acknowledged them.
e2e_sync()
{
	local conn=$1 name=$2 lsn s deadline=$((SECONDS + 120)) bump
	lsn=$(psql "$conn" -XAtq -v ON_ERROR_STOP=1 -c "SELECT pg_current_wal_insert_lsn()") || return 1
	psql "$conn" -XAtq -v ON_ERROR_STOP=1 -c "UPDATE e2e_marker SET n = n + 1" || return 1
	bump=$((SECONDS + 5))
	until [[ "$(psql "$conn" -XAtq -c "SELECT confirmed_flush_lsn >= '$lsn'
		FROM pg_replication_slots WHERE slot_name = '$name'")" == t ]]; do
		# Debezium tells the slot a position once a later record's offsets
		# are committed: when it waits long, give it one more (a CI run
		# waited 120 s for a connector that had nothing more to send)
		if ((SECONDS >= bump)); then
			psql "$conn" -XAtq -c "UPDATE e2e_marker SET n = n + 1" >/dev/null 2>&1 || true
			bump=$((SECONDS + 5))
		fi
		# no point waiting for a worker or a task that is gone
		s=$(curl -sf "$CONNECT/connectors/$name/status") || s=
		if [[ -z "$s" ]] || jq -e '.tasks[0].state == "FAILED"' <<<"$s" >/dev/null ||
			((SECONDS >= deadline)); then
			echo "e2e_sync: $name has not confirmed $lsn; connector: ${s:-no answer}" >&2
			e2e_log_tail
			return 1
		fi
		sleep 0.1
	done
}

# e2e_log_tail: the last warnings and errors of Connect and the broker.
e2e_log_tail()
{
	local f
	for f in "$E2E_DIR/connect.log" "$E2E_DIR/kafka.log"; do
		[[ -f "$f" ]] || continue
		echo "--- last warnings and errors of $f" >&2
		grep -E '^\[[^]]*\] (WARN|ERROR)' "$f" | grep -v CloudEventsConverter | tail -n 10 >&2
	done
}

# e2e_topic_ends PREFIX: the offset of the last message of each non-empty
# partition of the topics PREFIX.*, as a JSON object {"topic/partition":
# offset} (what dbm.apply_position.offsets holds once everything is applied).
e2e_topic_ends()
{
	local t
	for t in $(kcat -b "$BROKERS" -L -J | jq -r --arg p "$1." \
		'.topics[] | select(.topic | startswith($p)) | .topic' | sort); do
		kcat -b "$BROKERS" -C -t "$t" -o -1 -e -q -f '%t/%p %o\n'
	done | jq -R -s 'split("\n") | map(select(length > 0) | split(" ") | {(.[0]): (.[1] | tonumber)}) | add // {}'
}

# e2e_messages PREFIX: the number of messages in the topics PREFIX.*.
e2e_messages()
{
	e2e_topic_ends "$1" | jq '[.[] | . + 1] | add // 0'
}

# e2e_checksums CONN: per table of schema public, in name order: name, rows
# and the sum of hashtextextended(row text) — plain SQL, independent of dbm.
e2e_checksums()
{
	psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "SELECT c.relname || ' ' || (xpath('/row/x/text()',
		query_to_xml(format('SELECT count(*) || '' '' || coalesce(sum(hashtextextended(t::text, 0)), 0)
			AS x FROM %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
}

# e2e_schema SRCCONN DSTCONN: the source's schema on the target (pg_dump
# --schema-only, publications left out).
e2e_schema()
{
	pg_dump --schema-only --no-publications --no-subscriptions "$1" |
		psql "$2" -XAq -v ON_ERROR_STOP=1 >/dev/null
}

# ---- dbm-snapshot copies, Debezium streams from its slot (tests/e2e/debezium-variants.bats)

# e2e_copy SRCCONN DSTCONN NAME OUTDIR: the bulk copy by dbm: the schema's
# pre-data on the target, dbm-snapshot --slot NAME --publication NAME (a
# pgoutput slot with an exported snapshot, and the copy in that snapshot),
# then post-data.  The publication NAME must exist first: pgoutput reads it
# through the historic catalog, as of the slot's start.  The copy's lines go
# to OUTDIR/snapshot.jsonl.
e2e_copy()
{
	local src=$1 dst=$2 name=$3 out=$4
	pg_dump --section=pre-data --no-publications --no-subscriptions "$src" |
		psql "$dst" -XAq -v ON_ERROR_STOP=1 >/dev/null || return 1
	dbm-snapshot --source "$src" --target "$dst" --slot "$name" --publication "$name" \
		>"$out/snapshot.jsonl" 2>"$out/snapshot.err" || {
		cat "$out/snapshot.err" >&2
		return 1
	}
	pg_dump --section=post-data --no-publications --no-subscriptions "$src" |
		psql "$dst" -XAq -v ON_ERROR_STOP=1 >/dev/null
}

# e2e_stream_connector NAME SRCCONN [KEY=VALUE]...: a connector that
# snapshots nothing and streams from the slot and publication NAME that are
# there already (e2e_copy's): it starts exactly where the copy ended.
e2e_stream_connector()
{
	local name=$1 conn=$2
	shift 2
	e2e_connector "$name" "$conn" "slot.name=$name" "publication.name=$name" \
		publication.autocreate.mode=disabled snapshot.mode=no_data "$@"
}

# e2e_restart_connect: stop Kafka Connect and start it again on its
# offsets file; CONNECT is the new worker's URL.  Connectors made through
# REST are gone with the worker: PUT them again (e2e_connector).
e2e_restart_connect()
{
	"$E2E_KAFKA" stop-connect "$E2E_DIR" || return 1
	CONNECT=$("$E2E_KAFKA" start-connect "$E2E_DIR" "$BROKERS" 2>>"$E2E_DIR/start.err") || {
		cat "$E2E_DIR/start.err" >&2
		return 1
	}
	export CONNECT
}

# e2e_skip_reason: why the end-to-end tier cannot run here (no Java, or
# neither Maven nor the jars in the cache), nothing when it can: what a
# test gives `skip` (bats 1.8 cannot skip in setup_file).
e2e_skip_reason()
{
	if ! command -v "${JAVA_HOME:+$JAVA_HOME/bin/}java" >/dev/null 2>&1; then
		echo "the end-to-end tier needs java (scripts/setup.sh --e2e installs Java and Maven)"
	elif ! command -v mvn >/dev/null 2>&1 && ! "$E2E_KAFKA" fetch >/dev/null 2>&1; then
		echo "the end-to-end tier needs mvn, or its jars in the cache (scripts/setup.sh --e2e installs Java and Maven)"
	fi
}

# e2e_items_sql [PRECISION]: a table "items" of most types, with edge
# values.  With PRECISION (e.g. "(3)"), timestamps and times without a time
# zone have it, so time.precision.mode=connect (milliseconds) carries them
# exactly too.
e2e_items_sql()
{
	local p=${1:-} ts='1999-12-31 23:59:59.999999'
	[[ -n "$p" ]] && ts='1999-12-31 23:59:59.999'
	cat <<-SQL
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TABLE items (
			id int PRIMARY KEY,
			big bigint, small smallint, flag bool,
			price numeric(12,2), ratio numeric, r real, d double precision,
			name text, code varchar(10), ch char(4),
			created timestamptz, local_ts timestamp$p, day date, tod time$p, iv interval,
			attrs jsonb, js json, raw bytea, ref uuid, m mood,
			tags text[], nums int[], bigs bigint[]
		);
		INSERT INTO items VALUES
		 (1, 9007199254740993, -32768, true, 12345.67, 3.14159265358979323846, 1.5, 0.1,
		  E'hello "world" \\\\ back\\nslash\\ttab', 'v', 'ab', '2024-02-29 12:34:56.789012+02',
		  '$ts', '2024-02-29', '23:59:59.5', '01:02:03.000004',
		  '{"a": [1, 2], "b": {"c": null}}', '{"x" : 1}', '\\x00ff10',
		  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy',
		  '{"a b","c,d",NULL,"q\\"t"}', '{1,NULL,3}', '{-9223372036854775808,9223372036854775807}'),
		 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		 (3, 0, 0, false, -0.01, -1e-20, -0.25, -1e300, 'naïve ✓ 日本', '', 'x',
		  '1970-01-01 00:00:00+00', '1900-01-01 00:00:00', '0001-01-01', '00:00:00', '00:00:00',
		  '[]', 'null', '\\x', '00000000-0000-0000-0000-000000000000', 'sad', '{}', '{}', '{}');
	SQL
}

# items_rows FIRST LAST: generated rows of items (e2e_items_sql).
items_rows()
{
	echo "INSERT INTO items SELECT g, g * 1000003::bigint * 1000003, (g % 30000)::smallint,
		g % 2 = 0, (g * 12.34)::numeric(12,2), g / 7.0, (g / 3.0)::real, g * pi(),
		'name ' || g || repeat('é', g % 5), left(md5(g::text), 10), left(md5(g::text), 4),
		timestamptz '2020-01-01 00:00:00.123456+00' + g * interval '1 day 1.000001 sec',
		timestamp '2000-01-01' + g * interval '1 hour 0.5 sec', date '2000-01-01' + g,
		time '00:00' + g * interval '1 min 0.25 sec', g * interval '1 min 0.5 sec',
		jsonb_build_object('g', g, 'l', jsonb_build_array(g, 'x', NULL)),
		json_build_object('g', g)::json, decode(md5(g::text), 'hex'), md5(g::text)::uuid,
		(ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood, ARRAY['t' || g, NULL],
		ARRAY[g, -g], ARRAY[g::bigint << 40]
		FROM generate_series($1, $2) g"
}
