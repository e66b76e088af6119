#!/usr/bin/env bash
# demo.sh - a whole zero-downtime migration on throwaway servers, under
# load, in about a minute: a source and a target PostgreSQL cluster and a
# pgbouncer on loopback, sample data, pgbench writing through pgbouncer
# the whole time; migrate.sh checks, copies, replicates, validates and
# cuts over; rollback.sh goes back; migrate.sh cuts over again.  At the
# end: how many client transactions failed (the point: none).
#
#   make demo            (installs what is missing, builds, runs this)
#   runbooks/demo.sh     (from a built checkout)
#
# Environment: DEMO_SCALE (pgbench scale of the sample data, default 5:
# 500,000 accounts), DEMO_RATE (pgbench transactions per second, default
# 200), DEMO_KEEP=1 (leave the servers running at the end and print how to
# reach them).
#
# Exit 0 when everything behaved as expected, 1 when something did not, 2
# when the demo could not run.  Everything lives in a temporary directory
# under /tmp and is stopped and removed on every exit.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PATH="$ROOT/build:$PATH"
PGCLUSTER=$ROOT/scripts/pgcluster.sh
SCALE=${DEMO_SCALE:-5}
RATE=${DEMO_RATE:-200}
started=$(date +%s)

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
say() { printf '\n'; bold "==> $*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 2; }

[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || die "DEMO_SCALE must be a positive whole number"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "DEMO_RATE must be a positive whole number"
for cmd in dbm-snapshot dbm-cdc-apply dbm-diff dbm-freeze dbm-switch dbm-rollback jq psql \
	pg_dump pg_restore pgbench; do
	command -v "$cmd" >/dev/null 2>&1 ||
		die "\"$cmd\" not found (run \"make demo\", or scripts/setup.sh and make)"
done
PGBOUNCER=${DBM_PGBOUNCER:-/usr/sbin/pgbouncer}
[[ -x "$PGBOUNCER" ]] || PGBOUNCER=$(command -v pgbouncer) || die "pgbouncer not found (run scripts/setup.sh)"
[[ -x "$PGCLUSTER" ]] || die "\"$PGCLUSTER\" not found: run the demo from a checkout"

# The servers run as "postgres" when we are root: every parent of their
# directories must be searchable by that user, hence /tmp and mode 755.
WORK=$(mktemp -d /tmp/dbm-demo.XXXXXX)
chmod 755 "$WORK"
BENCH_PID=
cleanup()
{
	local f pid
	[[ -n "$BENCH_PID" ]] && kill "$BENCH_PID" 2>/dev/null
	if [[ -n "${DEMO_KEEP:-}" && -z "${FAILED_EARLY:-}" ]]; then
		echo "kept: $WORK (source $SRC, target $DST, pgbouncer $APP)"
		return
	fi
	# the appliers migrate.sh left running, by their pid files
	for f in "$WORK"/state/forward.pid "$WORK"/state/reverse.pid; do
		[[ -f "$f" ]] || continue
		read -r pid _ <"$f"
		[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dbm-cdc-apply* ]] && kill -TERM "$pid" 2>/dev/null
	done
	if [[ -f "$WORK/pgbouncer/pgbouncer.pid" ]]; then
		pid=$(cat "$WORK/pgbouncer/pgbouncer.pid")
		[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]] && kill -KILL "$pid" 2>/dev/null
	fi
	"$PGCLUSTER" stop "$WORK/source" || true
	"$PGCLUSTER" stop "$WORK/target" || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
val() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }

# ---------------------------------------------------------------------------
say "starting a source and a target PostgreSQL cluster and pgbouncer on loopback"
"$PGCLUSTER" start "$WORK/source" >"$WORK/source.ci" 2>"$WORK/source.err" &
p1=$!
"$PGCLUSTER" start "$WORK/target" >"$WORK/target.ci" 2>"$WORK/target.err" &
p2=$!
wait "$p1" || { cat "$WORK/source.err" >&2; die "could not start the source cluster"; }
wait "$p2" || { cat "$WORK/target.err" >&2; die "could not start the target cluster"; }
SRC_ADMIN=$(cat "$WORK/source.ci")
DST_ADMIN=$(cat "$WORK/target.ci")
val "$SRC_ADMIN" -c 'CREATE DATABASE shop' >/dev/null || die "could not create the source database"
val "$DST_ADMIN" -c 'CREATE DATABASE shop' >/dev/null || die "could not create the target database"
SRC=${SRC_ADMIN/dbname=postgres/dbname=shop}
DST=${DST_ADMIN/dbname=postgres/dbname=shop}
SRC_PORT=$(cat "$WORK/source/port")
DST_PORT=$(cat "$WORK/target/port")

# pgbouncer: transaction pooling, the "shop" entry pointing at the source
mkdir -p "$WORK/pgbouncer"
chmod 755 "$WORK/pgbouncer"
for try in 1 2 3 4 5; do
	PGB_PORT=$((RANDOM % 20000 + 20000))
	(exec 9<>"/dev/tcp/127.0.0.1/$PGB_PORT") 2>/dev/null && continue
	cat >"$WORK/pgbouncer/pgbouncer.ini" <<-EOF
		[databases]
		shop = host=127.0.0.1 port=$SRC_PORT dbname=shop user=postgres

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $PGB_PORT
		unix_socket_dir =
		auth_type = trust
		auth_file = $WORK/pgbouncer/userlist.txt
		admin_users = postgres
		pool_mode = transaction
		max_client_conn = 200
		default_pool_size = 20
		logfile = $WORK/pgbouncer/pgbouncer.log
		pidfile = $WORK/pgbouncer/pgbouncer.pid
	EOF
	echo '"postgres" ""' >"$WORK/pgbouncer/userlist.txt"
	if [[ $EUID -eq 0 ]]; then
		# pgbouncer does not run as root: as the user the servers run as
		owner=$(stat -c %U "$WORK/source/data")
		chown -R "$owner:" "$WORK/pgbouncer"
		runuser -u "$owner" -- "$PGBOUNCER" -d "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer.err" 2>&1
	else
		"$PGBOUNCER" -d "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer.err" 2>&1
	fi
	APP="host=127.0.0.1 port=$PGB_PORT dbname=shop user=postgres"
	PGB_ADMIN="host=127.0.0.1 port=$PGB_PORT dbname=pgbouncer user=postgres"
	for i in $(seq 1 100); do
		val "$PGB_ADMIN" -c 'SHOW VERSION' >/dev/null 2>&1 && break 2
		sleep 0.05
	done
done
val "$PGB_ADMIN" -c 'SHOW VERSION' >/dev/null 2>&1 ||
	{ cat "$WORK/pgbouncer.err" "$WORK/pgbouncer/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
echo "source     $SRC"
echo "target     $DST"
echo "pgbouncer  $APP  (the application's connection: shop -> source)"

# ---------------------------------------------------------------------------
say "loading sample data on the source: pgbench scale $SCALE, a shop with sequences"
pgbench -i -q -s "$SCALE" "$SRC" >"$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; die "pgbench -i failed"; }
psql_ "$SRC" <<'EOF' || die "could not create the shop tables"
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, since timestamptz NOT NULL);
CREATE TABLE orders (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount      numeric(12,2) NOT NULL,
    server_port int NOT NULL DEFAULT inet_server_port(),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON orders (created_at);
CREATE SEQUENCE invoice_no START 100000;
CREATE TABLE invoices (no bigint PRIMARY KEY DEFAULT nextval('invoice_no'), order_id bigint NOT NULL);
INSERT INTO customers (name, since)
SELECT 'customer ' || g, timestamptz '2024-01-01' + g * interval '1 hour' FROM generate_series(1, 20000) g;
INSERT INTO orders (customer_id, amount, created_at)
SELECT 1 + g % 20000, (g % 500) + 0.99, timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, 100000) g;
INSERT INTO invoices (order_id) SELECT id FROM orders WHERE id % 2 = 0;
ANALYZE;
EOF
echo "$(val "$SRC" -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM customers)
	+ (SELECT count(*) FROM orders) + (SELECT count(*) FROM invoices)") rows in 7 tables"

# pgbench through pgbouncer for the whole demo: each transaction updates an
# account, adds an order and an invoice (identity column, sequence) and a
# history row, stamped with the server that took it
cat >"$WORK/shop.sql" <<EOF
\\set aid random(1, $((SCALE * 100000)))
\\set cid random(1, 20000)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO orders (customer_id, amount) VALUES (:cid, abs(:delta) / 100.0) RETURNING id \\gset
INSERT INTO invoices (order_id) VALUES (:id);
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
END;
EOF
say "pgbench: $RATE transactions a second through pgbouncer, 4 clients, from now to the end"
pgbench -n -c 4 -j 2 -R "$RATE" -T 3600 -P 2 -f "$WORK/shop.sql" "$APP" \
	>"$WORK/pgbench.out" 2>"$WORK/pgbench.err" </dev/null &
BENCH_PID=$!
sleep 2
kill -0 "$BENCH_PID" 2>/dev/null || { cat "$WORK/pgbench.err" >&2; die "pgbench did not start"; }
tail -n 1 "$WORK/pgbench.err"

# failed client transactions so far: pgbench's per-interval failure counts
# and the clients that gave up (each aborts with an error line)
failed_so_far()
{
	local f a
	f=$(grep -o ', [0-9]* failed' "$WORK/pgbench.err" | awk '{ s += $2 } END { print s + 0 }')
	a=$(grep -c 'aborted' "$WORK/pgbench.err")
	echo $((f + a))
}
orders_on() { val "$1" -c "SELECT count(*) FROM orders WHERE server_port = $2"; }

# ---------------------------------------------------------------------------
say "the migration's settings (runbooks/migrate.conf.example lists them all)"
cat >"$WORK/migrate.conf" <<EOF
DBM_SOURCE="$SRC"
DBM_TARGET="$DST"
DBM_PGBOUNCER_ADMIN="$PGB_ADMIN"
DBM_PGBOUNCER_INI="$WORK/pgbouncer/pgbouncer.ini"
DBM_PGBOUNCER_DB=shop
DBM_STATE_DIR="$WORK/state"
DBM_LOG_DIR="$WORK/logs"
DBM_RECHECK_WAIT=1
# after the switch: 5 s of checks, each second
DBM_WATCH_SECS=5
DBM_CHECK_INTERVAL=1
EOF
cat >>"$WORK/migrate.conf" <<'EOF'
# the application still writes (through pgbouncer, now to the target)
DBM_CHECK_CMD="psql -XAtq -d \"$DBM_APP_CONNINFO\" -c \"SELECT now() - max(created_at) < interval '5 s' FROM orders\" | grep -qx t"
EOF
sed 's/^/  /' "$WORK/migrate.conf"

say "migrate.sh --preflight-only: is this pair fit for a migration?"
rc=0
"$HERE/migrate.sh" --config "$WORK/migrate.conf" --preflight-only || rc=$?
[[ $rc -eq 1 ]] || fail "the preflight should have found pgbench_history unfit (exit 1), exit $rc"
say "pgbench_history has no key: updates and deletes could not be carried over. Fixing it:"
echo "  ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
val "$SRC" -c 'ALTER TABLE pgbench_history REPLICA IDENTITY FULL' >/dev/null

# ---------------------------------------------------------------------------
say "migrate.sh: preflight, schema, copy, indexes, apply, catch-up, validate, cutover, checks"
t0=$(date +%s%N)
"$HERE/migrate.sh" --config "$WORK/migrate.conf" || fail "migrate.sh exited $?"
m1=$((($(date +%s%N) - t0) / 1000000))
pause1=$(jq -s 'map(select(.type == "summary")) | last | .pause_ms' "$WORK/state/run.jsonl")
[[ "$(val "$PGB_ADMIN" -c 'SHOW DATABASES' | awk -F'|' '$1 == "shop" { print $3 }')" == "$DST_PORT" ]] ||
	fail "pgbouncer does not point at the target"
sleep 1
n=$(orders_on "$DST" "$DST_PORT")
echo "pgbouncer -> target; orders written on the target since the switch: $n; failed client transactions so far: $(failed_so_far)"
((n > 0)) || fail "no order reached the target through pgbouncer"

"$HERE/status.sh" --config "$WORK/migrate.conf" | sed 's/^/  /'

# ---------------------------------------------------------------------------
say "rollback.sh: back to the source, carrying every write made on the target"
sleep 2
"$HERE/rollback.sh" --config "$WORK/migrate.conf" || fail "rollback.sh exited $?"
rb=$(jq -s 'map(select(.type == "summary")) | last | .pause_ms' "$WORK/state/run.jsonl")
t_on_dst=$(orders_on "$DST" "$DST_PORT")
t_on_src=$(orders_on "$SRC" "$DST_PORT")
echo "orders the application wrote on the target: $t_on_dst; on the source now: $t_on_src"
[[ "$t_on_dst" == "$t_on_src" ]] || fail "the source lacks orders written on the target"
[[ "$(val "$PGB_ADMIN" -c 'SHOW DATABASES' | awk -F'|' '$1 == "shop" { print $3 }')" == "$SRC_PORT" ]] ||
	fail "pgbouncer does not point at the source after the rollback"
echo "pgbouncer -> source; failed client transactions so far: $(failed_so_far)"

# ---------------------------------------------------------------------------
say "migrate.sh again: the copy is there, the forward apply kept it in step; cut over again"
sleep 2
"$HERE/migrate.sh" --config "$WORK/migrate.conf" >"$WORK/migrate2.out" || { cat "$WORK/migrate2.out"; fail "migrate.sh exited $?"; }
grep -vE '^  (OK|WARN) ' "$WORK/migrate2.out"
pause2=$(jq -s 'map(select(.type == "summary")) | last | .pause_ms' "$WORK/state/run.jsonl")

# ---------------------------------------------------------------------------
say "stopping pgbench; both sides once the reverse apply has caught up"
sleep 1
kill -0 "$BENCH_PID" 2>/dev/null || fail "pgbench stopped by itself: $(tail -n 3 "$WORK/pgbench.err")"
kill "$BENCH_PID" 2>/dev/null
wait "$BENCH_PID" 2>/dev/null
BENCH_PID=
failed=$(failed_so_far)
txns=$(grep -o 'progress: [0-9.]* s, [0-9.]* tps' "$WORK/pgbench.err" |
	awk '{ t = $2 + 0; n += $4 * (t - last); last = t } END { printf "%d", n }')
# the reverse apply carries the last writes to the source
for i in $(seq 1 100); do
	[[ "$(val "$SRC" -c 'SELECT count(*) FROM orders')" == "$(val "$DST" -c 'SELECT count(*) FROM orders')" ]] && break
	sleep 0.1
done
rc=0
dbm-diff --source "$SRC" --target "$DST" >"$WORK/final.jsonl" || rc=$?
jq -r 'select(.type == "table") | "  \(.status)\t\(.table)\t\(.left_rows) rows"' "$WORK/final.jsonl"
[[ $rc -eq 0 ]] || fail "dbm-diff found differences after the migration (exit $rc)"
inv_dupes=$(val "$DST" -c "SELECT count(*) - count(DISTINCT no) FROM invoices")

# ---------------------------------------------------------------------------
rows=$(jq -s 'map(select(.type == "step" and .step == "copy" and .status == "done")) | first | .rows' "$WORK/state/run.jsonl")
lag=$(jq -s 'map(select(.type == "step" and .step == "catch-up" and .status == "done")) | first | "\(.lag_bytes) bytes (a probe took \(.lag_ms) ms)"' -r "$WORK/state/run.jsonl")
valid=$(jq -rs 'map(select(.type == "step" and .step == "validate" and .status == "done")) | first
	| "equal, \(.tables) tables (\(.rows_unstable) rows changing under load rechecked)"' "$WORK/state/run.jsonl")
say "what happened"
printf '  %-34s %s\n' \
	"rows copied" "$rows" \
	"lag when cutting over" "$lag" \
	"validation before the cutover" "$valid" \
	"write pause, first cutover" "$pause1 ms" \
	"write pause, rollback" "$rb ms" \
	"write pause, second cutover" "$pause2 ms" \
	"first migration, end to end" "$((m1 / 1000)).$((m1 % 1000 / 100)) s" \
	"client transactions (pgbench)" "about $txns" \
	"failed client transactions" "$failed" \
	"duplicate invoice numbers" "$inv_dupes" \
	"after the migration" "dbm-diff: equal"
[[ "$failed" == 0 ]] || fail "$failed client transactions failed: $(grep -m 3 -E 'aborted|error' "$WORK/pgbench.err")"
[[ "$inv_dupes" == 0 ]] || fail "sequences handed out a number twice"
say "demo passed in $(($(date +%s) - started)) s; cleaning up"
