#!/usr/bin/env bash
# bench/snapshot.sh - how fast does a whole database reach a target, ready
# for use (schema, data, indexes, constraints, statistics)?
# (make bench-snapshot)
#
# Two throwaway clusters; on the source database "bench": pgbench at scale 50
# and bench_mixed, 1M rows of numeric, timestamptz, jsonb, text, bytea, uuid
# and int[] (the dataset of bench/hash.sh).  In one run, on the same data,
# into a freshly created empty target database each time, interleaved rounds
# (median of BENCH_RUNS, default 5, after one warm-up round) of:
#
#   dbm         runbooks/replicate.sh --copy-only --jobs N: pre-data with
#               pg_dump | psql, dbm-snapshot --slot (binary COPY, tables in
#               parallel, each in one COPY FREEZE: none reaches the 8GB of
#               --split-size), post-data alongside (each table's indexes
#               once its data is in), ANALYZE
#   dbm_split   the same with --split-size 128MB: pgbench_accounts in 5
#               ctid ranges copied in parallel, without FREEZE
#   pgcopydb    pgcopydb clone --table-jobs N --index-jobs N
#   pg_dump     pg_dump | psql, then ANALYZE
#   pipes       a naive shell pipeline: pre-data with pg_dump | psql, N
#               psql | psql binary COPY pipes (pgbench_accounts in N ctid
#               ranges, the other tables whole), pg_restore -j 2 of
#               post-data, ANALYZE; no snapshot shared between the pipes
#
# After every run dbm-diff must find source and target equal (exit 0) and
# the target must have the source's indexes and constraints.  Wall time,
# client CPU (the tool's processes), each server's CPU and the rest of the
# machine's are recorded per run; one more dbm run is profiled with perf.
# Results replace the "snapshot" section of bench/RESULTS.md.
#
# Environment: BENCH_SCALE (50), BENCH_MIXED_ROWS (1000000), BENCH_RUNS (5),
# BENCH_JOBS (4), BENCH_RESULTS (bench/RESULTS.md), BENCH_KEEP=1 keeps the
# work directory.
set -euo pipefail

PROG=bench-snapshot
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-50}
MIXED_ROWS=${BENCH_MIXED_ROWS:-1000000}
RUNS=${BENCH_RUNS:-5}
JOBS=${BENCH_JOBS:-4}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
. "$ROOT/bench/common.sh"

export PGAPPNAME=dbm-bench

for cmd in psql pg_dump pg_restore pgbench pgcopydb jq; do
	command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/setup.sh)"
done
for t in dbm-snapshot dbm-cdc-apply dbm-diff; do
	[[ -x "$ROOT/build/$t" ]] || die "$ROOT/build/$t not built (run make)"
done

wait_for_other_benches
T0=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/dbm-bench-snapshot.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/out"
# one copy of the runbook and binaries for the whole run, whatever happens
# to the checkout meanwhile; the runbook uses the build/ next to it
mkdir -p "$WORK/dbm/runbooks" "$WORK/dbm/build"
cp "$ROOT/runbooks/replicate.sh" "$WORK/dbm/runbooks/"
cp "$ROOT/build/dbm-snapshot" "$ROOT/build/dbm-cdc-apply" "$ROOT/build/dbm-diff" \
	"$WORK/dbm/build/"
RB=$WORK/dbm/runbooks/replicate.sh
DIFF=$WORK/dbm/build/dbm-diff
DBM_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain -- lib tools runbooks/replicate.sh 2>/dev/null)" ]]; then
	DBM_REV+=" with local changes"
fi

cleanup()
{
	local rc=$?
	trap - EXIT INT TERM
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

# ---------------------------------------------------------------- clusters
say "starting two clusters in $WORK"
SRC0=$("$PGCLUSTER" start "$WORK/src" {BENCH_LOCK_FD}>&-)
DST0=$("$PGCLUSTER" start "$WORK/dst" {BENCH_LOCK_FD}>&-)
SRC_PORT=$(cat "$WORK/src/port")
DST_PORT=$(cat "$WORK/dst/port")
PM[source]=$(head -n 1 "$WORK/src/data/postmaster.pid")
PM[target]=$(head -n 1 "$WORK/dst/data/postmaster.pid")
SRC=${SRC0/dbname=postgres/dbname=bench}
DST=${DST0/dbname=postgres/dbname=bench}
SRC_URI="postgres://postgres@127.0.0.1:$SRC_PORT/bench"
DST_URI="postgres://postgres@127.0.0.1:$DST_PORT/bench"

q() { psql "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
qv() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At -c "$2"; }

q "$SRC0" -c "CREATE DATABASE bench"

# ---------------------------------------------------------------- data
say "pgbench -i -s $SCALE on the source"
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench.log" 2>&1 ||
	{ cat "$WORK/pgbench.log" >&2; die "pgbench -i"; }

say "generating $MIXED_ROWS rows of bench_mixed"
q "$SRC" >/dev/null <<EOF
CREATE TABLE bench_mixed (
	id         bigint PRIMARY KEY,
	amount     numeric(14,2),
	created_at timestamptz NOT NULL,
	attrs      jsonb,
	note       text,
	payload    bytea,
	ref        uuid NOT NULL,
	tags       int[]
);
CREATE INDEX bench_mixed_created_at ON bench_mixed (created_at);
SELECT setseed(0.42);
INSERT INTO bench_mixed
SELECT g,
	CASE WHEN g % 17 = 0 THEN NULL
	     ELSE round((random() * 100000)::numeric, 2) END,
	timestamptz '2019-01-01 00:00:00+00'
	     + random() * interval '5 years',
	CASE WHEN g % 11 = 0 THEN NULL
	     ELSE jsonb_build_object(
	          'customer', 'c' || (g % 50000),
	          'score', round((random() * 1000)::numeric, 1),
	          'active', g % 3 = 0,
	          'labels', jsonb_build_array('l' || g % 7, 'l' || g % 13),
	          'address', jsonb_build_object('city', (ARRAY['Lyon', 'Zürich',
	              'Kraków', 'Porto', 'Ghent', 'Bergen'])[1 + g % 6],
	              'zip', lpad((g % 99991)::text, 5, '0'))) END,
	CASE WHEN g % 997 = 0 THEN E'multi\nline\tnote with a \\\\ backslash'
	     WHEN g % 19 = 0 THEN NULL
	     ELSE (ARRAY['order', 'refund', 'invoice', 'shipment', 'return'])[1 + g % 5]
	          || ' #' || g || ' ' || repeat(md5(g::text), 1 + g % 3) END,
	CASE WHEN g % 23 = 0 THEN NULL
	     ELSE decode(repeat(md5((g * 7)::text), 1 + g % 2), 'hex') END,
	gen_random_uuid(),
	CASE WHEN g % 13 = 0 THEN NULL
	     ELSE (ARRAY[g % 1000, (g * 7) % 1000, (g * 13) % 1000,
	                 (g * 31) % 1000, (g * 101) % 1000])[1:g % 6] END
FROM generate_series(1, $MIXED_ROWS) g;
EOF
q "$SRC" -c "VACUUM ANALYZE" -c "CHECKPOINT"

declare -A ROWS MB
TABLES=(pgbench_accounts bench_mixed pgbench_tellers pgbench_branches pgbench_history)
for t in "${TABLES[@]}"; do
	ROWS[$t]=$(qv "$SRC" "SELECT count(*) FROM $t")
	MB[$t]=$(qv "$SRC" "SELECT round(pg_table_size('$t') / 1048576.0)")
done
DB_MB=$(qv "$SRC" "SELECT round(pg_database_size('bench') / 1048576.0)")
HEAP_MB=$(qv "$SRC" "SELECT round(sum(pg_table_size(c.oid)) / 1048576.0) FROM pg_class c
	WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace")
INDEX_MB=$(qv "$SRC" "SELECT round(sum(pg_relation_size(c.oid)) / 1048576.0) FROM pg_class c
	WHERE c.relkind = 'i' AND c.relnamespace = 'public'::regnamespace")
# what the target must have after every run
SCHEMA_SQL="SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
	FROM pg_constraint WHERE connamespace = 'public'::regnamespace
	UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
	ORDER BY 1"
qv "$SRC" "$SCHEMA_SQL" >"$WORK/schema.source"
ACC_PAGES=$(qv "$SRC" "SELECT relpages FROM pg_class WHERE relname = 'pgbench_accounts'")
say "source: $DB_MB MB ($HEAP_MB MB of tables, $INDEX_MB MB of indexes)"

# ---------------------------------------------------------------- the tools
run_dbm()
{
	DBM_SOURCE=$SRC DBM_TARGET=$DST "$RB" --copy-only --jobs "$JOBS" --slot bench \
		--run-log "$WORK/out/dbm-run.jsonl"
}

# the same with pgbench_accounts split into ctid ranges
run_dbm_split()
{
	DBM_SOURCE=$SRC DBM_TARGET=$DST "$RB" --copy-only --jobs "$JOBS" --slot bench \
		--split-size 128MB --run-log "$WORK/out/dbm-run.jsonl"
}

run_pgcopydb()
{
	rm -rf "$WORK/pgcopydb"
	pgcopydb clone --source "$SRC_URI" --target "$DST_URI" --dir "$WORK/pgcopydb" \
		--table-jobs "$JOBS" --index-jobs "$JOBS"
}

run_pg_dump()
{
	pg_dump "$SRC" | psql -X -q -v ON_ERROR_STOP=1 "$DST" >/dev/null &&
		psql -X -q -v ON_ERROR_STOP=1 -c ANALYZE "$DST"
}

# One binary COPY pipe: "TABLE [FIRST-PAGE LAST-PAGE]".
pipe_piece()
{
	local t=$1 where=
	[[ -n "${2:-}" ]] && where=" WHERE ctid >= '($2,0)'::tid"
	[[ -n "${3:-}" ]] && where+=" AND ctid < '($3,0)'::tid"
	psql -X -q -v ON_ERROR_STOP=1 "$SRC" \
		-c "COPY (SELECT * FROM $t$where) TO STDOUT (FORMAT binary)" |
		psql -X -q -v ON_ERROR_STOP=1 "$DST" -c "COPY $t FROM STDIN (FORMAT binary)"
}

run_pipes()
{
	local step k
	pg_dump --section=pre-data "$SRC" | psql -X -q -v ON_ERROR_STOP=1 "$DST" >/dev/null ||
		return
	step=$(((ACC_PAGES + JOBS - 1) / JOBS))
	{
		echo bench_mixed
		for ((k = 0; k < JOBS; k++)); do
			if ((k < JOBS - 1)); then
				echo "pgbench_accounts $((k * step)) $(((k + 1) * step))"
			else
				echo "pgbench_accounts $((k * step))"
			fi
		done
		echo pgbench_tellers
		echo pgbench_branches
		echo pgbench_history
	} >"$WORK/pieces"
	export -f pipe_piece
	export SRC DST
	xargs -P "$JOBS" -L 1 bash -c 'pipe_piece "$@"' _ <"$WORK/pieces" || return
	pg_dump -Fc --section=post-data -f "$WORK/post-data.dump" "$SRC" || return
	pg_restore -j 2 --section=post-data --exit-on-error -d "$DST" "$WORK/post-data.dump" ||
		return
	psql -X -q -v ON_ERROR_STOP=1 -c ANALYZE "$DST"
}

TOOLS=(dbm dbm_split pgcopydb pg_dump pipes)

# A fresh, empty target database and nothing left of the last run on the
# source; checkpoints so that no run pays for the last one's dirty pages.
reset()
{
	q "$DST0" -c "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c "CREATE DATABASE bench" \
		-c "CHECKPOINT"
	q "$SRC" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" \
		-c "DROP PUBLICATION IF EXISTS bench" -c "CHECKPOINT" >/dev/null
}

# The target must equal the source (dbm-diff exit 0) and have its indexes
# and constraints.
verify()
{
	local rc=0
	"$DIFF" --source "$SRC" --target "$DST" >"$WORK/out/verify.$1.json" 2>&1 || rc=$?
	[[ $rc -eq 0 ]] || die "$1: dbm-diff exited $rc after the copy: $(tail -n 3 "$WORK/out/verify.$1.json")"
	qv "$DST" "$SCHEMA_SQL" >"$WORK/schema.target"
	diff -u "$WORK/schema.source" "$WORK/schema.target" >&2 ||
		die "$1: the target's indexes and constraints differ from the source's"
	[[ $(qv "$DST" "SELECT count(*) FROM pg_stats WHERE schemaname = 'public'
		AND tablename = 'pgbench_accounts'") -gt 0 ]] ||
		die "$1: no statistics on the target"
}

# one run of a tool, checked
run_tool()
{
	local tool=$1 r=$2 try
	# a run during which others used more than BENCH_NOISE_MAX (10) % of
	# the CPUs is repeated, up to twice
	for try in 1 2 3; do
		reset
		measure copy "$tool" "$r" "run_$tool" ||
			{ tail -n 20 "$WORK/out/copy.$tool.$r.err" >&2; die "$tool (run $r) failed"; }
		verify "$tool.$r"
		((NOISE > ${BENCH_NOISE_MAX:-10} && try < 3)) || break
		say "others used ${NOISE}% of the CPUs meanwhile: run again"
		discard_last
		DISCARDED=$((DISCARDED + 1))
	done
	if [[ $tool == dbm ]]; then
		# the runbook's step times of this run
		jq -r --arg r "$r" 'select(.status == "done") | "\($r)\t\(.step)\t\(.ms)"' \
			"$WORK/out/copy.dbm.$r.out" >"$WORK/dbm-steps.$r.tsv"
	fi
}

CLUSTERS=()
bench_clusters_ready source target
times_header "$WORK/times.tsv"
: >"$WORK/dbm-steps.tsv"
DISCARDED=0

say "warm-up round (not counted)"
for tool in "${TOOLS[@]}"; do
	run_tool "$tool" 0
done
for ((r = 1; r <= RUNS; r++)); do
	# rotate the order so no tool always follows the same one
	for ((i = 0; i < ${#TOOLS[@]}; i++)); do
		run_tool "${TOOLS[(i + r) % ${#TOOLS[@]}]}" "$r"
	done
done

# ---------------------------------------------------------------- profile
PERF=
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
	PERF=1
fi
if [[ -n "$PERF" ]]; then
	say "profiling dbm-snapshot (one more run, perf, not counted)"
	reset
	pg_dump --section=pre-data --no-publications --no-subscriptions "$SRC" |
		q "$DST" >/dev/null
	if perf record -F 999 -o "$WORK/perf.data" -- "$WORK/dbm/build/dbm-snapshot" \
		--source "$SRC" --target "$DST" --slot bench --jobs "$JOBS" \
		>"$WORK/perf.out" 2>"$WORK/perf.err"; then
		perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,sym \
			--percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$' |
			grep -E '^ *[0-9.]+%' | sed 's/^ *//' | head -n 12 >"$WORK/perf.txt" || true
	else
		PERF=
	fi
fi

# ---------------------------------------------------------------- results
declare -A MED
CLIENT_COL=$(column_of client_cpu)
SRC_COL=$(column_of source_cpu)
DST_COL=$(column_of target_cpu)
OTHER_COL=$(column_of other_cpu)
for tool in "${TOOLS[@]}"; do
	MED[$tool:wall]=$(median copy "$tool" 4)
	MED[$tool:client]=$(median copy "$tool" "$CLIENT_COL")
	MED[$tool:source]=$(median copy "$tool" "$SRC_COL")
	MED[$tool:target]=$(median copy "$tool" "$DST_COL")
	MED[$tool:other]=$(median copy "$tool" "$OTHER_COL")
	MED[$tool:min]=$(awk -F'\t' -v t="$tool" 'NR > 1 && $1 == "copy" && $2 == t && $3 > 0 { print $4 }' \
		"$TIMES" | sort -g | head -n 1)
	MED[$tool:max]=$(awk -F'\t' -v t="$tool" 'NR > 1 && $1 == "copy" && $2 == t && $3 > 0 { print $4 }' \
		"$TIMES" | sort -g | tail -n 1)
done
PGC=${MED[pgcopydb:wall]}
R_DBM=$(ratio "${MED[dbm:wall]}" "$PGC")
VERDICT=$(awk -v r="$R_DBM" 'BEGIN { print (r <= 0.8) ? "met" : "MISSED" }')
cat "$WORK"/dbm-steps.[1-9]*.tsv >"$WORK/dbm-steps.tsv"
step_median()
{
	awk -F'\t' -v s="$1" '$1 > 0 && $2 == s { print $3 / 1000 }' "$WORK/dbm-steps.tsv" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
S_PRE=$(step_median pre-data)
S_SNAP=$(step_median snapshot)
S_POST=$(step_median post-data)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
PG_VERSION=$(qv "$SRC" "SELECT version()" | sed 's/ on .*//')
ELAPSED=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

row()
{
	local t=$1 label=$2 w=${MED[$1:wall]}
	awk -v l="$label" -v w="$w" -v p="$PGC" -v c="${MED[$t:client]}" \
		-v s="${MED[$t:source]}" -v d="${MED[$t:target]}" -v n="$NCPU" \
		-v lo="${MED[$t:min]}" -v hi="${MED[$t:max]}" \
		'BEGIN { printf "| %s | %.2f | %.2f–%.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n",
			l, w, lo, hi, w / p, c, s, d, 100 * (c + s + d) / (w * n) }'
}

OTHER_MED=$(awk -F'\t' -v c="$OTHER_COL" 'NR > 1 && $1 == "copy" && $3 > 0 { print $c }' "$TIMES" | sort -g |
	awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
OTHER_MAX=$(awk -F'\t' -v c="$OTHER_COL" 'NR > 1 && $1 == "copy" && $3 > 0 { print $c }' "$TIMES" | sort -g | tail -n 1)
PROFILE_TEXT="perf was not available: no profile of dbm-snapshot."
if [[ -n "$PERF" && -s "$WORK/perf.txt" ]]; then
	PROFILE_TEXT="Inside dbm-snapshot (\`perf record\` of one extra copy, its threads only,
by object and symbol, self time; \`[k]\` is the kernel):

\`\`\`
$(cat "$WORK/perf.txt")
\`\`\`"
fi

SECTION=$WORK/section.md
cat >"$SECTION" <<EOF
# Snapshot: a whole database to a target, ready (\`make bench-snapshot\`)

Generated by \`bench/snapshot.sh\` on $(date -u '+%Y-%m-%d %H:%M') UTC, dbm $DBM_REV.
Whole run: ${ELAPSED}s.

Machine: $NCPU CPUs ($CPU_MODEL), $MEM_GB GiB memory; two $PG_VERSION
clusters from \`scripts/pgcluster.sh\` on the same machine (loopback TCP,
shared_buffers 128MB, fsync off, wal_level logical on both), so the data sit
in the page cache and this measures CPU: client and both servers share the
$NCPU CPUs. pgcopydb $(pgcopydb --version 2>/dev/null | sed -n 's/^pgcopydb version //p' | head -n 1) (Debian package).

## Dataset (source database "bench")

| table | rows | heap + TOAST |
| --- | ---: | ---: |
| pgbench_accounts (pgbench -i -s $SCALE) | ${ROWS[pgbench_accounts]} | ${MB[pgbench_accounts]} MB |
| bench_mixed (numeric, timestamptz, jsonb, text, bytea, uuid, int[]) | ${ROWS[bench_mixed]} | ${MB[bench_mixed]} MB |
| pgbench_tellers, pgbench_branches, pgbench_history | $((ROWS[pgbench_tellers] + ROWS[pgbench_branches] + ROWS[pgbench_history])) | $((MB[pgbench_tellers] + MB[pgbench_branches] + MB[pgbench_history])) MB |

Database size $DB_MB MB: $HEAP_MB MB of tables, $INDEX_MB MB of indexes (primary
keys of the four pgbench tables and of bench_mixed, and
bench_mixed_created_at), rebuilt on the target by every tool.

## Results: median of $RUNS runs (seconds)

Each run loads a freshly created, empty target database, from nothing to
ready: schema, data, indexes, constraints, statistics. Rounds were
interleaved (each round runs every tool once, in a rotating order), after
one warm-up round; after every run dbm-diff found source and target equal
(exit 0) and the target had all of the source's indexes and constraints.
CPU columns are CPU seconds (user + system): "client" is every process the
tool ran on this machine outside the servers (pg_dump, psql, pg_restore,
dbm-snapshot, pgcopydb...), "source"/"target" the server processes of each
cluster; "CPUs busy" is all of it over wall time × $NCPU CPUs.

| | wall s | range | × pgcopydb | client CPU | source CPU | target CPU | CPUs busy |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(row dbm "**dbm** (\`replicate.sh --copy-only --jobs $JOBS\`)")
$(row dbm_split "dbm, pgbench_accounts split in 5 (\`--split-size 128MB\`)")
$(row pgcopydb "pgcopydb clone --table-jobs $JOBS --index-jobs $JOBS")
$(row pg_dump "pg_dump \\| psql, ANALYZE")
$(row pipes "naive pipes: $JOBS binary COPY pipes, pg_restore -j 2")

Target: dbm at most 0.8× pgcopydb's time: **${R_DBM}×, $VERDICT** (split:
$(ratio "${MED[dbm_split:wall]}" "$PGC")×).

dbm's steps (medians, from its run log): pre-data $(fmt "$S_PRE") s; snapshot
(dbm-snapshot) $(fmt "$S_SNAP") s; post-data, which starts with the snapshot
(each table's indexes, constraints and ANALYZE in one session as soon as its
data is in, at most $JOBS at once, then what is left with pg_restore -j $JOBS,
then vacuumdb --analyze-only -j $JOBS for tables not yet analyzed),
ends $(awk -v a="$S_POST" -v b="$S_SNAP" 'BEGIN { printf "%.2f", a - b }') s after the copy.

What each does besides the copy: pgcopydb runs VACUUM ANALYZE on every
table (dbm and the others only ANALYZE) and copies sequence values
(pg_dump | psql too; dbm leaves them to dbm-switch at the cutover); pgcopydb
0.10 copies each table in one COPY (no split of pgbench_accounts), in text
format.

This machine may be shared: every run waits for the machine to be idle
before it starts, and a run during which other processes used more than
10% of the CPUs is run again (up to twice; $DISCARDED runs were discarded,
phase "discarded" below). CPU used by others during the counted runs:
median $(fmt "$OTHER_MED") CPU-s per run, at most $(fmt "$OTHER_MAX") (column other_cpu).

$PROFILE_TEXT

## Commands

\`\`\`sh
# dbm
DBM_SOURCE=\$SRC DBM_TARGET=\$DST runbooks/replicate.sh --copy-only --jobs $JOBS --slot bench
DBM_SOURCE=\$SRC DBM_TARGET=\$DST runbooks/replicate.sh --copy-only --jobs $JOBS --slot bench --split-size 128MB
# pgcopydb
pgcopydb clone --source \$SRC_URI --target \$DST_URI --dir WORK/pgcopydb --table-jobs $JOBS --index-jobs $JOBS
# pg_dump
pg_dump \$SRC | psql -X -q -v ON_ERROR_STOP=1 \$DST && psql -c ANALYZE \$DST
# naive pipes ($JOBS at a time, biggest first): pre-data, then per piece
pg_dump --section=pre-data \$SRC | psql \$DST
psql \$SRC -c "COPY (SELECT * FROM t [WHERE ctid range]) TO STDOUT (FORMAT binary)" |
  psql \$DST -c "COPY t FROM STDIN (FORMAT binary)"
pg_dump -Fc --section=post-data -f post.dump \$SRC && pg_restore -j 2 --section=post-data -d \$DST post.dump
psql -c ANALYZE \$DST
\`\`\`

Between runs (not timed): DROP DATABASE bench WITH (FORCE), CREATE DATABASE
bench and CHECKPOINT on the target; the slot and publication dbm-snapshot
made are dropped on the source.

## Every run

\`\`\`
$(column -t -s $'\t' "$TIMES")
\`\`\`
EOF
mkdir -p "$(dirname "$RESULTS")"
results_section "$RESULTS" snapshot "$SECTION"

say "done in ${ELAPSED}s: dbm ${MED[dbm:wall]}s, pgcopydb ${PGC}s, ${R_DBM}× ($VERDICT); results in ${RESULTS#$ROOT/}"
