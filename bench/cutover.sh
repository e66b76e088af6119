#!/usr/bin/env bash
# bench/cutover.sh - the write pause of a cutover, as clients see it.
#
#   bench/cutover.sh            (make bench-cutover)
#
# Two throwaway clusters and a pgbouncer (transaction pooling) on loopback;
# pgbench -i -s $BENCH_SCALE on the source; pgbench's TPC-B-like script at
# a fixed rate (-R $BENCH_RATE, $BENCH_CLIENTS clients) through pgbouncer
# for the whole run, logging every transaction (-l).  Meanwhile
# runbooks/migrate.sh migrates (copy, apply, validation, cutover), then
# rollback.sh and migrate.sh alternate until $BENCH_CUTOVERS cutovers are
# done.  Reported, from the run log and pgbench's transaction log:
#   - the write pause of each cutover (dbm-switch's pause_ms: from the
#     freeze to clients resuming on the target): p50 and max
#   - the largest client latency during a cutover: the longest transaction
#     (its latency plus its schedule lag: what a client at a fixed rate
#     waits) that overlaps the cutover's freeze-to-switched window
#   - failed client transactions (pgbench's count, and clients that aborted)
#   - the rollbacks' pauses, for reference
# Targets: pause p50 <= 250 ms, max <= 500 ms, 0 failed transactions.
# The "cutover" section of bench/RESULTS.md is replaced (appended when it
# is missing); the other sections are left as they are.
#
# Environment: BENCH_SCALE (10), BENCH_RATE (500), BENCH_CLIENTS (8),
# BENCH_CUTOVERS (5), BENCH_SECS (pgbench duration, 100; the run fails if
# the cutovers outlast it), BENCH_RESULTS (bench/RESULTS.md), BENCH_KEEP=1
# keeps the work directory.
#
# Exit 0 when the run completed (targets met or not: the file says), 1
# when something failed.
set -uo pipefail

PROG=bench-cutover
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$ROOT/build:$PATH"
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
SCALE=${BENCH_SCALE:-10}
RATE=${BENCH_RATE:-500}
CLIENTS=${BENCH_CLIENTS:-8}
CUTOVERS=${BENCH_CUTOVERS:-5}
SECS=${BENCH_SECS:-100}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
PGBOUNCER=${DBM_PGBOUNCER:-/usr/sbin/pgbouncer}
T_START=$(date +%s)

for v in SCALE RATE CLIENTS CUTOVERS SECS; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number"
done
for cmd in pgbench psql jq dbm-switch dbm-cdc-apply; do
	command -v "$cmd" >/dev/null 2>&1 || die "\"$cmd\" not found (make, scripts/setup.sh)"
done
[[ -x "$PGBOUNCER" ]] || die "pgbouncer not found at $PGBOUNCER"

T_WAIT=$(date +%s)
wait_for_other_benches
T_START=$(date +%s)
WAITED=$((T_START - T_WAIT))
WORK=$(mktemp -d /tmp/dbm-bench-cutover.XXXXXX)
chmod 755 "$WORK"
BENCH_PID=
cleanup()
{
	local f pid
	[[ -n "$BENCH_PID" ]] && kill "$BENCH_PID" 2>/dev/null
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
	if [[ -n "${BENCH_KEEP:-}" ]]; then
		say "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

val() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }

say "clusters and pgbouncer in $WORK"
"$PGCLUSTER" start "$WORK/source" >"$WORK/source.ci" || die "could not start the source cluster"
"$PGCLUSTER" start "$WORK/target" >"$WORK/target.ci" || die "could not start the target cluster"
val "$(cat "$WORK/source.ci")" -c 'CREATE DATABASE bench' >/dev/null || die "CREATE DATABASE failed"
val "$(cat "$WORK/target.ci")" -c 'CREATE DATABASE bench' >/dev/null || die "CREATE DATABASE failed"
SRC=$(sed 's/dbname=postgres/dbname=bench/' "$WORK/source.ci")
DST=$(sed 's/dbname=postgres/dbname=bench/' "$WORK/target.ci")
SRC_PORT=$(cat "$WORK/source/port")
mkdir -p "$WORK/pgbouncer"
chmod 755 "$WORK/pgbouncer"
for try in 1 2 3 4 5; do
	PGB_PORT=$((RANDOM % 20000 + 20000))
	(exec 9<>"/dev/tcp/127.0.0.1/$PGB_PORT") 2>/dev/null && continue
	cat >"$WORK/pgbouncer/pgbouncer.ini" <<-EOF
		[databases]
		bench = host=127.0.0.1 port=$SRC_PORT dbname=bench user=postgres

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
		owner=$(stat -c %U "$WORK/source/data")
		chown -R "$owner:" "$WORK/pgbouncer"
		runuser -u "$owner" -- "$PGBOUNCER" -d "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer.err" 2>&1
	else
		"$PGBOUNCER" -d "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer.err" 2>&1
	fi
	APP="host=127.0.0.1 port=$PGB_PORT dbname=bench user=postgres"
	PGB_ADMIN="host=127.0.0.1 port=$PGB_PORT dbname=pgbouncer user=postgres"
	for i in $(seq 1 100); do
		val "$PGB_ADMIN" -c 'SHOW VERSION' >/dev/null 2>&1 && break 2
		sleep 0.05
	done
done
val "$PGB_ADMIN" -c 'SHOW VERSION' >/dev/null 2>&1 || die "pgbouncer did not start"
PGB_VERSION=$(val "$PGB_ADMIN" -c 'SHOW VERSION' | head -n 1)

say "pgbench -i -s $SCALE on the source"
pgbench -i -q -s "$SCALE" "$SRC" >"$WORK/init.log" 2>&1 || die "pgbench -i failed: $(tail -n 1 "$WORK/init.log")"
# pgbench only inserts into pgbench_history, which has no key: replicated
# with the whole row as its identity
val "$SRC" -c 'ALTER TABLE pgbench_history REPLICA IDENTITY FULL' >/dev/null
ROWS=$(val "$SRC" -c 'SELECT count(*) FROM pgbench_accounts')

cat >"$WORK/migrate.conf" <<EOF
DBM_SOURCE="$SRC"
DBM_TARGET="$DST"
DBM_PGBOUNCER_ADMIN="$PGB_ADMIN"
DBM_PGBOUNCER_INI="$WORK/pgbouncer/pgbouncer.ini"
DBM_PGBOUNCER_DB=bench
DBM_STATE_DIR="$WORK/state"
DBM_RECHECK=2
DBM_RECHECK_WAIT=1
DBM_WATCH_SECS=2
DBM_CHECK_INTERVAL=1
EOF

say "pgbench -R $RATE -c $CLIENTS through pgbouncer for ${SECS}s; $CUTOVERS cutovers meanwhile"
(cd "$WORK" && exec pgbench -n -c "$CLIENTS" -j 2 -R "$RATE" -T "$SECS" -P 5 -l --log-prefix=pgb "$APP" \
	>"$WORK/pgbench.out" 2>"$WORK/pgbench.err" </dev/null) &
BENCH_PID=$!
sleep 3
n=0
while ((n < CUTOVERS)); do
	if ((n > 0)); then
		sleep 2
		"$ROOT/runbooks/rollback.sh" --config "$WORK/migrate.conf" >>"$WORK/runbooks.out" 2>&1 ||
			die "rollback.sh failed: $(tail -n 3 "$WORK/runbooks.out")"
		sleep 2
	fi
	"$ROOT/runbooks/migrate.sh" --config "$WORK/migrate.conf" >>"$WORK/runbooks.out" 2>&1 ||
		die "migrate.sh failed: $(tail -n 5 "$WORK/runbooks.out")"
	n=$((n + 1))
	say "cutover $n: $(jq -rs 'map(select(.type == "summary")) | last | "pause \(.pause_ms) ms"' "$WORK/state/run.jsonl")"
	kill -0 "$BENCH_PID" 2>/dev/null || die "pgbench ended before cutover $n was over: raise BENCH_SECS"
done
LAST_END=$(date +%s)
say "waiting for pgbench to end"
wait "$BENCH_PID"
BENCH_RC=$?
BENCH_PID=

# ---------------------------------------------------------------- analysis
# windows: freeze started .. switch done, per cutover; rollback started ..
# done; as epoch milliseconds
jq -r -s '
	def ms: sub("Z$"; "") | split(".") as $p
		| (($p[0] + "Z") | fromdateiso8601) * 1000 + ($p[1] | tonumber);
	[.[] | select(.type == "step")] as $s
	| ($s | map(select(.step == "freeze" and .status == "started"))) as $f
	| ($s | map(select(.step == "switch" and .status == "done"))) as $w
	| range(0; $w | length) as $i
	| "cutover\t\($f[$i].at | ms)\t\($w[$i].at | ms)\t\($w[$i].pause_ms)\t\($s | map(select(.step == "freeze" and .status == "done"))[$i].drain_ms)"' \
	"$WORK/state/run.jsonl" >"$WORK/windows"
jq -r -s '
	def ms: sub("Z$"; "") | split(".") as $p
		| (($p[0] + "Z") | fromdateiso8601) * 1000 + ($p[1] | tonumber);
	[.[] | select(.type == "step" and .step == "rollback")] as $r
	| ($r | map(select(.status == "started"))) as $a
	| ($r | map(select(.status == "done"))) as $b
	| range(0; $b | length) as $i
	| "rollback\t\($a[$i].at | ms)\t\($b[$i].at | ms)\t\($b[$i].pause_ms)\t0"' \
	"$WORK/state/run.jsonl" >>"$WORK/windows"
# pgbench -l: client txno latency_us script epoch_s epoch_us lag_us; the
# time stamp is the transaction's end
cat "$WORK"/pgb.* >"$WORK/txlog"
TXNS=$(wc -l <"$WORK/txlog")
awk -v OFS='\t' '
	FILENAME == ARGV[1] { kind[NR] = $1; from[NR] = $2; to[NR] = $3; n = NR; next }
	{
		end = $5 * 1000 + $6 / 1000; lat = $3 / 1000; lag = ($7 == "" ? 0 : $7 / 1000)
		start = end - lat
		if (lat + lag > worst_all) worst_all = lat + lag
		for (i = 1; i <= n; i++)
			if (end >= from[i] && start <= to[i]) {
				cnt[i]++
				if (lat + lag > worst[i]) worst[i] = lat + lag
				if (lat > wl[i]) wl[i] = lat
			}
	}
	END {
		for (i = 1; i <= n; i++) printf "%s\t%d\t%.1f\t%.1f\n", kind[i], cnt[i], worst[i], wl[i]
		printf "all\t0\t%.1f\t0\n", worst_all
	}' "$WORK/windows" "$WORK/txlog" >"$WORK/worst"

FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
ABORTED=$(grep -c 'aborted' "$WORK/pgbench.err")
DONE_TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out")
[[ -n "$TPS" ]] && printf -v TPS '%.1f' "$TPS"
[[ -n "$FAILED" ]] || FAILED="? (pgbench exited $BENCH_RC: $(tail -n 1 "$WORK/pgbench.err"))"

mapfile -t PAUSES < <(awk -F'\t' '$1 == "cutover" { print $4 }' "$WORK/windows" | sort -n)
NP=${#PAUSES[@]}
((NP == CUTOVERS)) || die "found $NP cutovers in the run log, expected $CUTOVERS"
P50=${PAUSES[$(((NP - 1) / 2))]}
((NP % 2 == 0)) && P50=$(((PAUSES[NP / 2 - 1] + PAUSES[NP / 2]) / 2))
PMAX=${PAUSES[$((NP - 1))]}
WORST=$(paste "$WORK/windows" "$WORK/worst" | awk -F'\t' '$1 == "cutover" && $8 > w { w = $8 } END { printf "%.0f", w }')
WORST_ALL=$(awk -F'\t' '$1 == "all" { printf "%.0f", $3 }' "$WORK/worst")
ok() { if eval "$1"; then echo met; else echo "**not met**"; fi; }
V_P50=$(ok "((P50 <= 250))")
V_MAX=$(ok "((PMAX <= 500))")
V_FAIL=$(ok "[[ '$FAILED' == 0 && $ABORTED == 0 ]]")

ELAPSED=$(($(date +%s) - T_START))
CPUS=$(nproc)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo)
PGV=$(val "$SRC" -c 'SHOW server_version')
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')

SECTION=$WORK/section.md
{
	echo "# Cutover: the write pause under load (\`make bench-cutover\`)"
	echo
	echo "Generated by \`bench/cutover.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC, dbm $REV. Whole run: ${ELAPSED}s$( ((WAITED > 5)) && echo " (after ${WAITED}s waiting for other benchmarks to finish)")."
	echo
	echo "Machine: $CPUS CPUs ($CPU_MODEL), $MEM GiB memory; two PostgreSQL $PGV clusters"
	echo "from \`scripts/pgcluster.sh\` (fsync off, synchronous_commit off) and $PGB_VERSION"
	echo "(transaction pooling) on loopback, all on the same machine as the clients."
	echo
	echo "Load: pgbench's TPC-B-like script (\`pgbench -i -s $SCALE\`: $ROWS accounts), $CLIENTS clients"
	echo "at a fixed rate (\`-R $RATE\`) through pgbouncer for ${SECS}s without a break: ${DONE_TX:-?}"
	echo "transactions, $TPS tps. Meanwhile \`runbooks/migrate.sh\` migrated the database (schema,"
	echo "copy, apply, catch-up, dbm-diff validation, freeze, switch, 2 s of checks), then"
	echo "\`rollback.sh\` and \`migrate.sh\` alternated: $CUTOVERS cutovers, $((CUTOVERS - 1)) rollbacks."
	echo
	echo "| | p50 | max | target |"
	echo "| --- | ---: | ---: | --- |"
	echo "| write pause of a cutover (dbm-switch \`pause_ms\`: freeze to clients resumed on the target) | $P50 ms | $PMAX ms | p50 ≤ 250 ms: $V_P50; max ≤ 500 ms: $V_MAX |"
	echo "| largest client latency during a cutover (latency + schedule lag of a transaction overlapping the freeze-to-switched window) | | $WORST ms | |"
	echo "| failed client transactions (pgbench), clients aborted | $FAILED, $ABORTED | | 0: $V_FAIL |"
	echo
	echo "Every cutover and rollback (windows from the run log; transactions from \`pgbench -l\`):"
	echo
	echo "| | write pause ms | freeze drain ms | transactions overlapping | largest latency + lag ms | largest latency ms |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: |"
	paste "$WORK/windows" "$WORK/worst" | awk -F'\t' '
		$1 == "cutover" { c++; printf "| cutover %d | %s | %s | %s | %s | %s |\n", c, $4, $5, $7, $8, $9 }
		$1 == "rollback" { r++; printf "| rollback %d | %s | | %s | %s | %s |\n", r, $4, $7, $8, $9 }'
	echo
	echo "The largest latency + lag of any transaction of the run: $WORST_ALL ms. The pause is"
	echo "measured by dbm-switch from the start of dbm-freeze (PAUSE, drain, barrier) to"
	echo "pgbouncer's RESUME; in between, the forward apply carries the barrier to the target"
	echo "(its row is committed with synchronous_commit on, so the walsender sends it at once),"
	echo "dbm-switch copies the sequences and repoints pgbouncer (RELOAD, RESUME). The reverse"
	echo "publication, slot and apply exist before the freeze (runbooks/migrate.sh's prepare"
	echo "step), so the switch creates nothing. Clients wait in pgbouncer during the pause;"
	echo "none fails."
} >"$SECTION"
mkdir -p "$(dirname "$RESULTS")"
results_section "$RESULTS" cutover "$SECTION"
cat "$SECTION" >&2
say "done in ${ELAPSED}s: pause p50 $P50 ms ($V_P50), max $PMAX ms ($V_MAX), largest client latency in a cutover $WORST ms, failed $FAILED ($V_FAIL); results in ${RESULTS#$ROOT/}"
