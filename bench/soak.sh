#!/usr/bin/env bash
# bench/soak.sh - resource bounds of a long apply: dbm-cdc-apply's resident
# memory and open descriptors over a long run under steady writes.
#
#   bench/soak.sh            (make bench-soak)
#
# Two throwaway clusters; pgbench -i -s $BENCH_SCALE on the source, copied
# by dbm-snapshot --slot; then dbm-cdc-apply --slot --metrics-file applies
# while pgbench's TPC-B-like script runs at a fixed rate (-R $BENCH_RATE)
# for $BENCH_SOAK_SECS seconds, the target restarted once in the middle (a
# reconnect must not leak either).  Every 10 s: the apply's VmRSS, VmHWM
# and its number of open descriptors (/proc/PID/fd).  Reported: the first
# sample after a one-minute warm-up against the last, the largest, and the
# drift per hour; the target equal to the source at the end (dbm-diff).
# Target (issue 7): RSS and descriptors flat.  The "soak" section of
# bench/RESULTS.md is replaced (appended when missing).
#
# Environment: BENCH_SOAK_SECS (600), BENCH_SCALE (10), BENCH_RATE (400),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_KEEP=1 keeps the work directory.
set -uo pipefail

PROG=bench-soak
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$ROOT/build:$PATH"
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
SECS=${BENCH_SOAK_SECS:-600}
SCALE=${BENCH_SCALE:-10}
RATE=${BENCH_RATE:-400}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
for v in SECS SCALE RATE; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number"
done
((SECS >= 120)) || die "BENCH_SOAK_SECS must be at least 120 (one minute of warm-up, then samples)"

wait_for_other_benches
WORK=$(mktemp -d /tmp/dbm-bench-soak.XXXXXX)
chmod 755 "$WORK"
APPLY_PID= PGB_PID=
cleanup()
{
	[[ -n "$PGB_PID" ]] && kill "$PGB_PID" 2>/dev/null
	[[ -n "$APPLY_PID" ]] && kill -TERM "$APPLY_PID" 2>/dev/null && wait "$APPLY_PID" 2>/dev/null
	"$PGCLUSTER" stop "$WORK/source" || true
	"$PGCLUSTER" stop "$WORK/target" || true
	if [[ -n "${BENCH_KEEP:-}" ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

"$PGCLUSTER" start "$WORK/source" >"$WORK/source.ci" || die "could not start the source cluster"
"$PGCLUSTER" start "$WORK/target" >"$WORK/target.ci" || die "could not start the target cluster"
SRC=$(cat "$WORK/source.ci")
DST=$(cat "$WORK/target.ci")
say "pgbench -i -s $SCALE, schema, dbm-snapshot --slot"
pgbench -i -q -s "$SCALE" "$SRC" >"$WORK/init.out" 2>&1 || die "pgbench -i failed"
pg_dump --section=pre-data "$SRC" | psql -XAq -v ON_ERROR_STOP=1 "$DST" >/dev/null || die "pre-data failed"
dbm-snapshot --source "$SRC" --target "$DST" --slot soak --jobs 2 >"$WORK/snap.out" 2>"$WORK/snap.err" ||
	die "dbm-snapshot failed: $(cat "$WORK/snap.err")"
pg_dump --section=post-data "$SRC" | psql -XAq -v ON_ERROR_STOP=1 "$DST" >/dev/null || die "post-data failed"

dbm-cdc-apply --source "$SRC" --target "$DST" --slot soak --metrics-file "$WORK/apply.prom" \
	>"$WORK/apply.out" 2>"$WORK/apply.err" &
APPLY_PID=$!
pgbench -n -c 4 -j 2 -R "$RATE" -T "$SECS" "$SRC" >"$WORK/pgbench.out" 2>&1 &
PGB_PID=$!
say "soaking for $SECS s at $RATE transactions/s (the target restarts at $((SECS / 2)) s)"
T0=$SECONDS
restarted=
echo "secs rss_kb hwm_kb fds" >"$WORK/samples"
while kill -0 "$PGB_PID" 2>/dev/null; do
	kill -0 "$APPLY_PID" 2>/dev/null || die "dbm-cdc-apply stopped: $(tail -n 3 "$WORK/apply.err")"
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$APPLY_PID/status")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$APPLY_PID/status")
	fds=$(find "/proc/$APPLY_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
	echo "$((SECONDS - T0)) $rss $hwm $fds" >>"$WORK/samples"
	if [[ -z "$restarted" ]] && ((SECONDS - T0 >= SECS / 2)); then
		"$PGCLUSTER" restart "$WORK/target" immediate 1 || die "could not restart the target"
		restarted=1
	fi
	sleep 10
done
wait "$PGB_PID"
PGB_PID=
txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
lsn=$(psql -XAtq "$SRC" -c "SELECT pg_current_wal_insert_lsn()")
for _ in $(seq 600); do
	[[ "$(psql -XAtq "$DST" -c "SELECT max(lsn) >= '$lsn' FROM dbm.apply_position")" == t ]] && break
	sleep 0.5
done
kill -TERM "$APPLY_PID"
wait "$APPLY_PID" || die "dbm-cdc-apply exited $?: $(tail -n 3 "$WORK/apply.err")"
APPLY_PID=
dbm-diff --source "$SRC" --target "$DST" >"$WORK/diff.out" 2>&1
diff_rc=$?
reconnects=$(grep -c '"type":"reconnected"' "$WORK/apply.out")

# after the warm-up minute: first and last sample, maxima, drift per hour
read -r s0 r0 f0 < <(awk 'NR > 1 && $1 >= 60 { print $1, $2, $4; exit }' "$WORK/samples")
read -r s1 r1 f1 < <(tail -n 1 "$WORK/samples" | awk '{ print $1, $2, $4 }')
rmax=$(awk 'NR > 1 && $1 >= 60 && $2 > m { m = $2 } END { print m }' "$WORK/samples")
hwm=$(tail -n 1 "$WORK/samples" | awk '{ print $3 }')
fmin=$(awk 'NR > 1 { if (m == "" || $4 < m) m = $4 } END { print m }' "$WORK/samples")
fmax=$(awk 'NR > 1 && $4 > m { m = $4 } END { print m }' "$WORK/samples")
drift=$(awk -v a="$r0" -v b="$r1" -v s="$((s1 - s0))" 'BEGIN { printf "%.0f", (s > 0 ? (b - a) * 3600 / s : 0) }')
samples=$(($(wc -l <"$WORK/samples") - 1))
say "RSS ${r0} kB at ${s0} s, ${r1} kB at ${s1} s (max ${rmax}, peak ${hwm}), drift ${drift} kB/h; fds ${fmin}..${fmax}; dbm-diff exit $diff_rc"

{
	echo "## Soak: dbm-cdc-apply's memory and descriptors over a long apply (issue 7)"
	echo
	echo "\`make bench-soak\` ($(date -u +%Y-%m-%d)): pgbench scale $SCALE copied by dbm-snapshot"
	echo "--slot, then dbm-cdc-apply --slot --metrics-file for $SECS s while pgbench's"
	echo "TPC-B-like script runs at $RATE transactions/s (4 clients) on the source; the"
	echo "target is crashed and restarted half way (\`pg_ctl stop -m immediate\`), so one"
	echo "reconnect is inside the window. Samples every 10 s of /proc/PID/status and"
	echo "/proc/PID/fd; the first minute is warm-up. Clusters from"
	echo "\`scripts/pgcluster.sh\` on this 2-core machine."
	echo
	echo "| measure | value |"
	echo "|---|---|"
	echo "| pgbench transactions applied | $txns |"
	echo "| reconnects (target restart) | $reconnects |"
	echo "| RSS after warm-up ($s0 s) | $r0 kB |"
	echo "| RSS at the end ($s1 s) | $r1 kB |"
	echo "| largest RSS after warm-up | $rmax kB |"
	echo "| peak RSS (VmHWM, whole run) | $hwm kB |"
	echo "| RSS drift | $drift kB per hour |"
	echo "| open descriptors | $fmin to $fmax |"
	echo "| samples | $samples |"
	echo "| dbm-diff at the end | exit $diff_rc |"
	echo
	echo "Target: flat. Raw samples (seconds, RSS kB, VmHWM kB, descriptors), every"
	echo "sixth:"
	echo
	echo '```'
	awk 'NR == 1 || (NR - 2) % 6 == 0' "$WORK/samples"
	echo '```'
} >"$WORK/section.md"
results_section "$RESULTS" soak "$WORK/section.md"
say "wrote the soak section of $RESULTS"
[[ $diff_rc -eq 0 ]] || die "the target differs from the source after the soak"
