#!/usr/bin/env bash
# bench/apply.sh - how fast does dbm-cdc-apply drain a backlog of changes
# waiting in a slot, next to PostgreSQL's own subscription?
# (make bench-apply)
#
# Three throwaway clusters: a source, target 1 (dbm-cdc-apply) and target 2
# (a native subscription).  The source holds pgbench at scale BENCH_SCALE
# (10) and bench_rows (numeric, timestamptz, jsonb, text, bytea, uuid,
# int[]), copied to both targets with pg_dump | psql; publication "bench" FOR
# ALL TABLES.  Then, per run, with nothing consuming:
#
#   1. slot A is created on the source (pgoutput) and copied to slot B
#      (pg_copy_logical_replication_slot): the same position, the same
#      changes to come; target 2 gets a disabled subscription on slot B
#      (create_slot = false, copy_data = false)
#   2. the backlog is written on the source, then one marker row:
#        tpcb     BENCH_TXNS (40000) pgbench tpcb-like transactions (-c 4)
#        inserts  500 transactions of 1000 inserts each into bench_rows
#        big      one transaction of BENCH_BIG_ROWS (1000000) inserts
#      END = pg_current_wal_insert_lsn() after the marker's commit
#   3. drained, one after the other (the order alternates between runs):
#        dbm      dbm-cdc-apply --slot A --stop-at-lsn END into target 1,
#                 under /usr/bin/time for its peak RSS
#        native   ALTER SUBSCRIPTION ... ENABLE on target 2
#      Both are timed until the marker row is visible on their target (one
#      session per target polling every 50 ms), dbm also until its process
#      exits; then dbm-diff must find each target equal to the source.
#
# Medians of BENCH_RUNS (5) runs for tpcb and inserts, BENCH_BIG_RUNS (1) for
# big, after one small warm-up run of tpcb and inserts.  CPU of the client,
# of each cluster and of the rest of the machine is recorded per drain; one
# extra tpcb backlog is drained by both under perf.  Results replace the
# "apply" section of bench/RESULTS.md.
#
# Environment: BENCH_SCALE (10), BENCH_TXNS (40000), BENCH_BIG_ROWS
# (1000000), BENCH_RUNS (5), BENCH_BIG_RUNS (1), BENCH_RESULTS
# (bench/RESULTS.md), BENCH_KEEP=1 keeps the work directory,
# BENCH_APPLY_ARGS (more dbm-cdc-apply options, e.g. --batch-rows 1000),
# BENCH_PROFILE=0 skips the profiles, BENCH_SHAPES (tpcb inserts big) the
# backlogs to run.
set -euo pipefail

PROG=bench-apply
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-10}
TXNS=${BENCH_TXNS:-40000}
BIG_ROWS=${BENCH_BIG_ROWS:-1000000}
RUNS=${BENCH_RUNS:-5}
BIG_RUNS=${BENCH_BIG_RUNS:-1}
INS_TXNS=500
INS_ROWS=1000
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
. "$ROOT/bench/common.sh"

export PGAPPNAME=dbm-bench

for cmd in psql pg_dump pgbench jq; do
	command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/setup.sh)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian package time)"
for t in dbm-cdc-apply dbm-diff; do
	[[ -x "$ROOT/build/$t" ]] || die "$ROOT/build/$t not built (run make)"
done

wait_for_other_benches
T0=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/dbm-bench-apply.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/out"
# one binary for the whole run, whatever happens to build/ meanwhile
cp "$ROOT/build/dbm-cdc-apply" "$ROOT/build/dbm-diff" "$WORK/"
APPLY=$WORK/dbm-cdc-apply
DIFF=$WORK/dbm-diff
DBM_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain -- lib tools 2>/dev/null)" ]]; then
	DBM_REV+=" with local changes"
fi

cleanup()
{
	local rc=$? c
	trap - EXIT INT TERM
	for c in src dst1 dst2; do
		"$PGCLUSTER" stop "$WORK/$c" >/dev/null 2>&1 || true
	done
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

# ---------------------------------------------------------------- clusters
say "starting three clusters in $WORK"
declare -A CONN0
for c in src dst1 dst2; do
	CONN0[$c]=$("$PGCLUSTER" start "$WORK/$c" {BENCH_LOCK_FD}>&-)
done
PM[source]=$(head -n 1 "$WORK/src/data/postmaster.pid")
PM[target1]=$(head -n 1 "$WORK/dst1/data/postmaster.pid")
PM[target2]=$(head -n 1 "$WORK/dst2/data/postmaster.pid")
SRC=${CONN0[src]/dbname=postgres/dbname=bench}
DST1=${CONN0[dst1]/dbname=postgres/dbname=bench}
DST2=${CONN0[dst2]/dbname=postgres/dbname=bench}

q() { psql "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
qv() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At -c "$2"; }

for c in src dst1 dst2; do
	q "${CONN0[$c]}" -c "CREATE DATABASE bench"
done

# ---------------------------------------------------------------- data
say "pgbench -i -s $SCALE on the source, copied to both targets"
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench.log" 2>&1 ||
	{ cat "$WORK/pgbench.log" >&2; die "pgbench -i"; }
q "$SRC" <<'EOF'
CREATE TABLE bench_rows (
	id         bigint PRIMARY KEY,
	amount     numeric(14,2),
	created_at timestamptz NOT NULL,
	attrs      jsonb,
	note       text,
	payload    bytea,
	ref        uuid NOT NULL,
	tags       int[]
);
CREATE TABLE bench_marker (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
-- ROWS rows of bench_rows, ids from FIRST on
CREATE FUNCTION bench_insert(first bigint, n int) RETURNS void LANGUAGE sql AS $$
INSERT INTO bench_rows
SELECT g,
	CASE WHEN g % 17 = 0 THEN NULL ELSE round((random() * 100000)::numeric, 2) END,
	timestamptz '2019-01-01 00:00:00+00' + random() * interval '5 years',
	CASE WHEN g % 11 = 0 THEN NULL
	     ELSE jsonb_build_object('customer', 'c' || (g % 50000),
	          'score', round((random() * 1000)::numeric, 1), 'active', g % 3 = 0,
	          'labels', jsonb_build_array('l' || g % 7, 'l' || g % 13)) END,
	CASE WHEN g % 19 = 0 THEN NULL
	     ELSE (ARRAY['order', 'refund', 'invoice', 'shipment', 'return'])[1 + g % 5]
	          || ' #' || g || ' ' || repeat(md5(g::text), (1 + g % 3)::int) END,
	CASE WHEN g % 23 = 0 THEN NULL
	     ELSE decode(repeat(md5((g * 7)::text), (1 + g % 2)::int), 'hex') END,
	gen_random_uuid(),
	CASE WHEN g % 13 = 0 THEN NULL
	     ELSE ((ARRAY[g % 1000, (g * 7) % 1000, (g * 13) % 1000])::int[])[1:(g % 4)::int] END
FROM generate_series(first, first + n - 1) g
$$;
EOF
for d in "$DST1" "$DST2"; do
	pg_dump --no-publications --no-subscriptions "$SRC" | q "$d" >/dev/null
done
q "$SRC" -c "CREATE PUBLICATION bench FOR ALL TABLES"
# The launcher starts apply workers at most once per
# wal_retrieve_retry_interval (5 s): a subscription enabled within 5 s of
# the last start waits for it.  Not the apply's speed: make it 50 ms.
q "$DST2" -c "ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'" -c "SELECT pg_reload_conf()" \
	>/dev/null
for d in "$SRC" "$DST1" "$DST2"; do
	q "$d" -c "VACUUM ANALYZE" -c "CHECKPOINT"
done

# ---------------------------------------------------------------- one run
NEXT_ID=1
MARK=0

# backlog SHAPE SIZE: write the changes on the source, then the marker row;
# sets END (an LSN) and MARK (the marker's id).
backlog()
{
	local shape=$1 size=$2
	case $shape in
	tpcb)
		pgbench -n -c 4 -j 2 -t $((size / 4)) "$SRC" >"$WORK/pgbench.run.log" 2>&1 ||
			{ cat "$WORK/pgbench.run.log" >&2; die "pgbench"; }
		;;
	inserts)
		q "$SRC" -c "DO \$\$ BEGIN FOR i IN 0..$((size - 1)) LOOP
			PERFORM bench_insert($NEXT_ID + i * $INS_ROWS, $INS_ROWS); COMMIT;
			END LOOP; END \$\$"
		NEXT_ID=$((NEXT_ID + size * INS_ROWS))
		;;
	big)
		q "$SRC" -c "SELECT bench_insert($NEXT_ID, $size)" >/dev/null
		NEXT_ID=$((NEXT_ID + size))
		;;
	esac
	MARK=$((MARK + 1))
	q "$SRC" -c "INSERT INTO bench_marker (id) VALUES ($MARK)"
	END=$(qv "$SRC" "SELECT pg_current_wal_insert_lsn()")
}

# poll_marker CONNINFO ID FILE: wait (up to 15 minutes) until the marker
# row is visible, asking every 50 ms in one session, then write the time to
# FILE.  Each question is its own short transaction: a session that held
# one snapshot the whole time (a DO loop) would keep the target from
# pruning the row versions the drain leaves behind, and slow it down.
poll_marker()
{
	local i out
	coproc POLL { exec psql "$1" -X -q -At -v ON_ERROR_STOP=1 2>&1; }
	for ((i = 0; i < 18000; i++)); do
		printf 'SELECT count(*) FROM bench_marker WHERE id = %d;\n' "$2" >&"${POLL[1]}"
		IFS= read -r -u "${POLL[0]}" out || break
		if [[ "$out" == 1 ]]; then
			echo "$EPOCHREALTIME" >"$3"
			kill "$POLL_PID" 2>/dev/null
			return 0
		fi
		[[ "$out" == 0 ]] || break
		sleep 0.05
	done
	echo "marker $2 not seen: ${out:-no answer}" >&2
	kill "$POLL_PID" 2>/dev/null
	return 1
}

# drain_dbm SLOT: the timed part for dbm-cdc-apply
drain_dbm()
{
	local t0 poller rc=0
	poll_marker "$DST1" "$MARK" "$WORK/seen" 3>&- &
	poller=$!
	t0=$EPOCHREALTIME
	/usr/bin/time -f '%M %e %U %S' -o "$WORK/rss" "$APPLY" --source "$SRC" \
		--target "$DST1" --slot "$1" --publication bench --stop-at-lsn "$END" \
		${BENCH_APPLY_ARGS:-} || rc=$?
	echo "$EPOCHREALTIME" >"$WORK/exited"
	if [[ $rc -ne 0 ]]; then
		kill "$poller" 2>/dev/null || true
		wait "$poller" || true
		return "$rc"
	fi
	# it stopped at END: the marker must be there already
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$poller" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$poller" 2>/dev/null; then
		kill "$poller" 2>/dev/null || true
		wait "$poller" || true
		echo "dbm-cdc-apply stopped at $END but marker $MARK is not on the target" >&2
		return 1
	fi
	wait "$poller" || return
	awk -v a="$t0" -v b="$(cat "$WORK/seen")" -v e="$(cat "$WORK/exited")" \
		'BEGIN { printf "%.3f %.3f\n", b - a, e - a }' >"$WORK/drain"
}

# drain_native SUBSCRIPTION: the timed part for the native apply worker
drain_native()
{
	local t0 poller
	poll_marker "$DST2" "$MARK" "$WORK/seen" 3>&- &
	poller=$!
	t0=$EPOCHREALTIME
	q "$DST2" -c "ALTER SUBSCRIPTION $1 ENABLE" || return
	wait "$poller" || return
	awk -v a="$t0" -v b="$(cat "$WORK/seen")" 'BEGIN { printf "%.3f -\n", b - a }' \
		>"$WORK/drain"
	# the apply worker and its walsender go now, so their CPU is counted
	q "$DST2" -c "ALTER SUBSCRIPTION $1 DISABLE"
	local i
	for ((i = 0; i < 500; i++)); do
		[[ $(qv "$DST2" "SELECT count(*) FROM pg_stat_subscription
			WHERE subname = '$1' AND pid IS NOT NULL") == 0 ]] && return 0
		sleep 0.02
	done
	die "the apply worker of $1 did not stop"
}

printf 'shape\trun\ttool\tseen_s\texit_s\trss_kb\tchanges\tothers_pct\n' >"$WORK/drains.tsv"

# verify TARGET-CONNINFO WHAT: dbm-diff must find it equal to the source
verify()
{
	local rc=0
	"$DIFF" --source "$SRC" --target "$1" >"$WORK/out/verify.json" 2>&1 || rc=$?
	[[ $rc -eq 0 ]] ||
		die "$2: dbm-diff exited $rc: $(grep -v '"status":"equal"' "$WORK/out/verify.json" | head -n 5)"
}

# one_run SHAPE SIZE RUN [ORDER]: a backlog drained by both, checked.
one_run()
{
	local shape=$1 size=$2 r=$3 order=${4:-dbm-first}
	local slot_a="a_${shape}_$r" slot_b="b_${shape}_$r" sub="sub_${shape}_$r" tool
	local wal0 changes

	# a clean start: no slots, bench_rows emptied everywhere, vacuumed
	q "$SRC" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null
	for d in "$SRC" "$DST1" "$DST2"; do
		q "$d" -c "TRUNCATE bench_rows" -c "VACUUM ANALYZE" -c "CHECKPOINT"
	done
	q "$SRC" -c "SELECT pg_create_logical_replication_slot('$slot_a', 'pgoutput')" \
		-c "SELECT pg_copy_logical_replication_slot('$slot_a', '$slot_b')" >/dev/null
	q "$DST2" -c "CREATE SUBSCRIPTION $sub CONNECTION '$SRC' PUBLICATION bench
		WITH (create_slot = false, slot_name = '$slot_b', copy_data = false, enabled = false)"
	wal0=$(qv "$SRC" "SELECT pg_current_wal_insert_lsn()")
	say "$shape #$r: writing the backlog"
	backlog "$shape" "$size"
	say "$shape #$r: backlog of $(qv "$SRC" "SELECT pg_size_pretty(pg_wal_lsn_diff('$END', '$wal0'))") of WAL, up to $END"
	for d in "$SRC" "$DST1" "$DST2"; do
		q "$d" -c "CHECKPOINT"
	done
	local tools=(dbm native)
	[[ $order == native-first ]] && tools=(native dbm)
	for tool in "${tools[@]}"; do
		rm -f "$WORK/drain" "$WORK/seen" "$WORK/rss"
		if [[ $tool == dbm ]]; then
			measure "$shape" dbm "$r" drain_dbm "$slot_a" ||
				{ tail -n 20 "$WORK/out/$shape.dbm.$r.err" >&2; die "dbm-cdc-apply ($shape, run $r)"; }
			changes=$(jq -r 'select(.type == "stopped") | .applied' "$WORK/out/$shape.dbm.$r.out")
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$r" dbm "$(tr ' ' '\t' <"$WORK/drain")" \
				"$(cut -d' ' -f1 "$WORK/rss")" "$changes" "$NOISE" >>"$WORK/drains.tsv"
		else
			measure "$shape" native "$r" drain_native "$sub" ||
				{ tail -n 20 "$WORK/out/$shape.native.$r.err" >&2; die "native apply ($shape, run $r)"; }
			printf '%s\t%s\t%s\t%s\t-\t-\t%s\n' "$shape" "$r" native "$(tr ' ' '\t' <"$WORK/drain")" \
				"$NOISE" >>"$WORK/drains.tsv"
		fi
		say "$shape #$r $tool: last change visible after $(cut -d' ' -f1 "$WORK/drain")s"
	done
	verify "$DST1" "dbm-cdc-apply ($shape, run $r)"
	verify "$DST2" "native apply ($shape, run $r)"
	q "$DST2" -c "ALTER SUBSCRIPTION $sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION $sub"
}

CLUSTERS=()
bench_clusters_ready source target1 target2
times_header "$WORK/times.tsv"

say "warm-up (not counted)"
SHAPES=" ${BENCH_SHAPES:-tpcb inserts big} "
[[ $SHAPES == *" tpcb "* ]] && one_run tpcb $((TXNS / 10)) 0
[[ $SHAPES == *" inserts "* ]] && one_run inserts $((INS_TXNS / 10)) 0 native-first
for ((r = 1; r <= RUNS; r++)); do
	order=dbm-first
	((r % 2 == 0)) && order=native-first
	[[ $SHAPES == *" tpcb "* ]] && one_run tpcb "$TXNS" "$r" "$order"
	[[ $SHAPES == *" inserts "* ]] && one_run inserts "$INS_TXNS" "$r" "$order"
done
[[ $SHAPES == *" big "* ]] || BIG_RUNS=0
for ((r = 1; r <= BIG_RUNS; r++)); do
	order=dbm-first
	((r % 2 == 0)) && order=native-first
	one_run big "$BIG_ROWS" "$r" "$order"
done

# ---------------------------------------------------------------- profile
# One more tpcb backlog, drained by both under perf: dbm-cdc-apply itself,
# the target backend it drives, and the native apply worker; not counted.
# perf samples the whole machine from before the consumer starts (attaching
# to a process once it runs would miss its first second) and the report
# keeps the consumer's processes only.
PERF=
if command -v perf >/dev/null && perf record -a -o /dev/null -- true >/dev/null 2>&1; then
	PERF=1
fi

# perf_top FILE PIDS OUT: the hottest symbols of those processes, and their
# number of samples in OUT.samples
perf_top()
{
	perf report -i "$1" --pid "$2" --percentage relative --stdio --no-children --sort dso,sym --percent-limit 1.5 \
		2>/dev/null | grep -E '^ *[0-9.]+%' | sed 's/^ *//' | head -n 16 >"$3" || true
	perf script -i "$1" --pid "$2" 2>/dev/null | wc -l >"$3.samples" || true
}

# backend_pids CONNINFO QUERY: wait (5 s at most) until QUERY returns pids
backend_pids()
{
	local i pids
	for ((i = 0; i < 250; i++)); do
		pids=$(qv "$1" "$2" | paste -sd,)
		[[ -n "$pids" ]] && { echo "$pids"; return 0; }
		sleep 0.02
	done
	return 1
}

# perf_start FILE: sample the whole machine into FILE; perf_stop ends it
perf_start()
{
	perf record -a -F 999 -o "$1" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 1
}
perf_stop()
{
	kill -INT "$PERF_PID" 2>/dev/null
	wait "$PERF_PID" || true
}

profile()
{
	local apid tpids wpid
	q "$SRC" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" \
		-c "SELECT pg_create_logical_replication_slot('perf_a', 'pgoutput')" \
		-c "SELECT pg_copy_logical_replication_slot('perf_a', 'perf_b')" >/dev/null
	q "$DST2" -c "CREATE SUBSCRIPTION sub_perf CONNECTION '$SRC' PUBLICATION bench
		WITH (create_slot = false, slot_name = 'perf_b', copy_data = false, enabled = false)"
	backlog tpcb "$TXNS"
	quiet_wait

	perf_start "$WORK/perf.dbm.data"
	"$APPLY" --source "$SRC" --target "$DST1" --slot perf_a --publication bench \
		--stop-at-lsn "$END" ${BENCH_APPLY_ARGS:-} >"$WORK/perf.out" 2>"$WORK/perf.err" &
	apid=$!
	# its sessions are the only other client backends there (named after
	# PGAPPNAME, which wins over dbm's fallback name)
	tpids=$(backend_pids "$DST1" "SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND datname = 'bench'
		AND pid <> pg_backend_pid()") || { say "no dbm-cdc-apply session on target 1"; return 1; }
	wait "$apid" || { say "dbm-cdc-apply under perf failed: $(tail -n 3 "$WORK/perf.err")"; return 1; }
	perf_stop

	quiet_wait
	perf_start "$WORK/perf.native.data"
	q "$DST2" -c "ALTER SUBSCRIPTION sub_perf ENABLE"
	wpid=$(backend_pids "$DST2" "SELECT pid FROM pg_stat_subscription
		WHERE subname = 'sub_perf' AND pid IS NOT NULL") || { say "no apply worker on target 2"; return 1; }
	poll_marker "$DST2" "$MARK" "$WORK/seen"
	perf_stop
	q "$DST2" -c "ALTER SUBSCRIPTION sub_perf DISABLE"
	sleep 0.5
	q "$DST2" -c "ALTER SUBSCRIPTION sub_perf SET (slot_name = NONE)" -c "DROP SUBSCRIPTION sub_perf"
	verify "$DST1" "dbm-cdc-apply under perf"
	verify "$DST2" "native apply under perf"
	perf_top "$WORK/perf.dbm.data" "$apid" "$WORK/perf.client.txt"
	perf_top "$WORK/perf.dbm.data" "$tpids" "$WORK/perf.target.txt"
	perf_top "$WORK/perf.native.data" "$wpid" "$WORK/perf.native.txt"
}
[[ "${BENCH_PROFILE:-1}" == 0 ]] && PERF=
if [[ -n "$PERF" ]]; then
	say "profiling both consumers on a tpcb backlog (perf, not counted)"
	quiet_wait
	profile || { PERF=; say "profiling failed; no profile in the results"; }
fi

# ---------------------------------------------------------------- results
dmed()
{
	# dmed SHAPE TOOL COLUMN: median over counted runs of drains.tsv
	awk -F'\t' -v s="$1" -v t="$2" -v c="$3" '$1 == s && $3 == t && $2 > 0 { print $c }' \
		"$WORK/drains.tsv" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
			else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
dmax()
{
	awk -F'\t' -v s="$1" -v c="$2" '$1 == s && $3 == "dbm" && $2 > 0 { print $c }' \
		"$WORK/drains.tsv" | sort -g | tail -n 1
}
CLIENT_COL=$(column_of client_cpu)
SRC_COL=$(column_of source_cpu)
T1_COL=$(column_of target1_cpu)
T2_COL=$(column_of target2_cpu)
OTHER_COL=$(column_of other_cpu)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$(qv "$SRC" "SELECT version()" | sed 's/ on .*//')
ELAPSED=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

declare -A V
rows_for()
{
	local shape=$1 label=$2 n=$3 d_seen d_exit n_seen tcol ratio
	d_seen=$(dmed "$shape" dbm 4)
	d_exit=$(dmed "$shape" dbm 5)
	n_seen=$(dmed "$shape" native 4)
	ratio=$(ratio "$d_exit" "$n_seen")
	printf '| %s | dbm-cdc-apply | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
		"$(fmt "$d_seen")" "$(fmt "$d_exit")" "$ratio" \
		"$(fmt "$(median "$shape" dbm "$CLIENT_COL")")" \
		"$(fmt "$(median "$shape" dbm "$SRC_COL")")" \
		"$(fmt "$(median "$shape" dbm "$T1_COL")")" \
		"$(awk -v k="$(dmed "$shape" dbm 6)" 'BEGIN { printf "%.0f MB", k / 1024 }')" "$n"
	printf '| | native subscription | %s | – | 1.00 | %s | %s | %s | – | %s |\n' \
		"$(fmt "$n_seen")" \
		"$(fmt "$(median "$shape" native "$CLIENT_COL")")" \
		"$(fmt "$(median "$shape" native "$SRC_COL")")" \
		"$(fmt "$(median "$shape" native "$T2_COL")")" "$n"
}
RATE()
{
	# changes per second of dbm (to the process exit) and native
	local shape=$1 ch
	ch=$(dmed "$shape" dbm 7)
	awk -v c="$ch" -v d="$(dmed "$shape" dbm 5)" -v n="$(dmed "$shape" native 4)" \
		'BEGIN { printf "%.0f changes/s (dbm) vs %.0f (native)", c / d, c / n }'
}
TABLE=$(
	rows_for tpcb "(a) $TXNS pgbench tpcb-like transactions" "$RUNS"
	rows_for inserts "(b) $INS_TXNS transactions × $INS_ROWS inserts" "$RUNS"
	rows_for big "(c) 1 transaction × $BIG_ROWS inserts" "$BIG_RUNS"
)
# the verdicts (rows_for runs in a subshell)
for s in tpcb inserts big; do
	d_exit=$(dmed "$s" dbm 5)
	n_seen=$(dmed "$s" native 4)
	V[$s:ratio]=$(ratio "$d_exit" "$n_seen")
	V[$s:seen_ratio]=$(ratio "$(dmed "$s" dbm 4)" "$n_seen")
	V[$s]=$(awk -v a="$d_exit" -v b="$n_seen" 'BEGIN { print (a <= b) ? "met" : "MISSED" }')
done
RSS_MAX=$(awk -F'\t' '$3 == "dbm" { print $6 }' "$WORK/drains.tsv" | sort -g | tail -n 1)
RSS_BIG=$(dmax big 6)
V_RSS=$(awk -v k="$RSS_MAX" 'BEGIN { print (k < 200 * 1024) ? "met" : "MISSED" }')
CH_TPCB=$(dmed tpcb dbm 7)
CH_INS=$(dmed inserts dbm 7)
CH_BIG=$(dmed big dbm 7)

PROFILE_TEXT="perf was not available: no profiles."
if [[ -n "$PERF" ]]; then
	PROFILE_TEXT="Profiles of one more tpcb backlog ($TXNS transactions), drained by both
(\`perf record -a -F 999\` from before the start, only the consumer's
processes kept; self time by object and symbol, \`[k]\` the kernel;
postgres symbols are its exported ones, so a static function shows under
its nearest exported neighbour):

dbm-cdc-apply itself ($(cat "$WORK/perf.client.txt.samples") samples):

\`\`\`
$(cat "$WORK/perf.client.txt")
\`\`\`

the target backend dbm-cdc-apply drives ($(cat "$WORK/perf.target.txt.samples") samples):

\`\`\`
$(cat "$WORK/perf.target.txt")
\`\`\`

the native apply worker ($(cat "$WORK/perf.native.txt.samples") samples):

\`\`\`
$(cat "$WORK/perf.native.txt")
\`\`\`"
fi

SECTION=$WORK/section.md
cat >"$SECTION" <<EOF
# Apply: draining a backlog waiting in a slot (\`make bench-apply\`)

Generated by \`bench/apply.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC, dbm $DBM_REV
($("$APPLY" --version)). Whole run: ${ELAPSED}s.

Machine: $NCPU CPUs ($CPU_MODEL), $MEM_GB GiB memory; three $PG_VERSION
clusters from \`scripts/pgcluster.sh\` on the same machine (loopback TCP,
shared_buffers 128MB, fsync off, synchronous_commit off, wal_level logical),
so this measures CPU: the consumer and the three servers share the $NCPU CPUs.

## Method

Source: pgbench at scale $SCALE, bench_rows (numeric, timestamptz, jsonb, text,
bytea, uuid, int[]; about 250 bytes a row) and bench_marker, publication
"bench" FOR ALL TABLES; both targets got the same copy (pg_dump | psql).
Per run, with nothing consuming, slot A is created (pgoutput) and copied to
slot B (\`pg_copy_logical_replication_slot\`: same position), target 2 gets a
disabled subscription on slot B (\`create_slot = false, copy_data = false\`,
otherwise default settings: text format, no streaming; target 2 has
\`wal_retrieve_retry_interval = 50ms\` so that the launcher starts the worker
at once, not up to 5 s later), and the backlog is
written on the source, followed by one marker row:

- (a) $TXNS pgbench tpcb-like transactions (\`pgbench -n -c 4 -j 2 -t $((TXNS / 4))\`:
  3 UPDATEs and 1 INSERT each, $CH_TPCB row changes);
- (b) $INS_TXNS transactions of $INS_ROWS inserts into bench_rows ($CH_INS row changes);
- (c) one transaction of $BIG_ROWS inserts into bench_rows ($CH_BIG row changes).

Then each consumer drains it alone, one after the other (which one goes
first alternates between runs): \`dbm-cdc-apply --slot A --publication bench
--stop-at-lsn END\` into target 1 (END: \`pg_current_wal_insert_lsn()\` after the
marker's commit; ${BENCH_APPLY_ARGS:-default batching, 10000 rows or 200 ms per target
transaction}), and \`ALTER SUBSCRIPTION ... ENABLE\` on target 2. Both are timed
from their start until the marker row is visible on their target (one
session per target asks every 50 ms, each time in a new transaction: up to
50 ms late, for both; a poller that kept one snapshot, as a DO loop does,
would stop the target from pruning dead row versions, which slowed the
hot-row updates of (a) by 2× here); dbm
also until its process has exited. After every run dbm-diff found both
targets equal to the source (exit 0). Medians of $RUNS runs for (a) and (b),
$BIG_RUNS for (c), after one warm-up run of (a) and (b) at a tenth of the size.
Each drain waits for the machine to be idle before it starts (this machine
may be shared); the last column of "Every drain" below is the share of the
CPUs that other processes used during it (median $(awk -F'\t' 'NR > 1 && $2 > 0 { print $8 }' "$WORK/drains.tsv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')%, at most $(awk -F'\t' 'NR > 1 && $2 > 0 { print $8 }' "$WORK/drains.tsv" | sort -g | tail -n 1)%).
CPU columns are CPU seconds (user + system) over the drain: "client" is
dbm-cdc-apply itself (for the native apply, the psql that enables the
subscription), "source" the walsender decoding the slot, "target" the
applying backend (dbm) or the apply worker (native).

Why (a) is faster: within a target transaction, dbm-cdc-apply merges the
updates of one row into one UPDATE (tables whose only unique index is the
primary key, where no trigger fires; docs/architecture.md, "Updates and
deletes that wait"). A batch of 10000 changes of (a) holds 2500 source
transactions, whose updates touch about 2500 accounts but only 100 tellers
and 10 branches: about 2600 UPDATEs instead of 7500, and the 2500
pgbench_history inserts go as multi-row INSERTs instead of one by one.
The native apply worker applies every change as it comes.

## Results (seconds)

| backlog | consumer | last change visible | process exit | × native | client CPU | source CPU | target CPU | peak RSS | runs |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$TABLE

"× native" is dbm-cdc-apply's time to exit over the native apply's time
to the last change visible; dbm-cdc-apply's own time to the last change
visible is $(fmt "${V[tpcb:seen_ratio]:-0}")× / $(fmt "${V[inserts:seen_ratio]:-0}")× / $(fmt "${V[big:seen_ratio]:-0}")× native's for (a) / (b) / (c).

Rates: (a) $(RATE tpcb); (b) $(RATE inserts); (c) $(RATE big).

Targets: dbm-cdc-apply at least as fast as the native apply worker on both
shapes: (a) **${V[tpcb:ratio]}×, ${V[tpcb]}**, (b) **${V[inserts:ratio]}×, ${V[inserts]}**
(and (c), one run: ${V[big:ratio]}×, ${V[big]}); peak RSS under 200 MB in every drain,
the 1M-row transaction included: **$(awk -v k="$RSS_MAX" 'BEGIN { printf "%.0f MB", k / 1024 }') at most ($(awk -v k="$RSS_BIG" 'BEGIN { printf "%.0f MB", k / 1024 }') for (c)), $V_RSS**.

$PROFILE_TEXT

## Every drain

\`\`\`
$(column -t -s $'\t' "$WORK/drains.tsv")
\`\`\`

\`\`\`
$(column -t -s $'\t' "$TIMES")
\`\`\`
EOF
mkdir -p "$(dirname "$RESULTS")"
results_section "$RESULTS" apply "$SECTION"

say "done in ${ELAPSED}s: (a) ${V[tpcb:ratio]}× native (${V[tpcb]}), (b) ${V[inserts:ratio]}× (${V[inserts]}), (c) ${V[big:ratio]}×, peak RSS $RSS_MAX kB ($V_RSS); results in ${RESULTS#$ROOT/}"
