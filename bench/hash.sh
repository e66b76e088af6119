#!/usr/bin/env bash
# bench/hash.sh - how fast does dbm-diff compare two databases?  (make bench-hash)
#
# Two throwaway clusters; on the source pgbench_accounts (pgbench scale 20)
# and bench_mixed, 1M rows of numeric, timestamptz, jsonb, text, bytea, uuid
# and int[]; both copied to the target.  Then, in one run, on the same data,
# interleaved rounds (median of BENCH_RUNS, default 5) of:
#
#   floor           COPY (SELECT <dbm-diff's column list> FROM ONLY t) TO
#                   STDOUT into /dev/null with psql, tables one after the
#                   other on each side, both sides concurrently
#   dbm-diff        --source --target on identical data (must exit 0)
#   dbm-diff -j2    the same with --jobs 2
#   pg_comparator   one invocation per table, default options (checksum ck,
#                   8 bytes, sum aggregate, asynchronous: both sides at once)
#   pgcopydb        `pgcopydb compare data` when the installed pgcopydb has
#                   it; otherwise (Debian bookworm ships 0.10, which has no
#                   compare command) its per-table query, run the way it runs
#                   it: every table on both sides at once (--table-jobs 4)
#
# then 20 differences are planted on the target (8 updates, 6 deletes,
# 6 inserts over both tables) and dbm-diff (must exit 1 and name exactly
# those 20 rows) and pg_comparator (must name the same 20) are timed again.
# Wall time, client CPU (our children) and server CPU (each postmaster and
# its exited backends) are recorded for every run; with perf, one more
# dbm-diff run is profiled system-wide.  Results go to bench/RESULTS.md.
#
# Environment: BENCH_SCALE (20), BENCH_MIXED_ROWS (1000000), BENCH_RUNS (5),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-20}
MIXED_ROWS=${BENCH_MIXED_ROWS:-1000000}
RUNS=${BENCH_RUNS:-5}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
DIFF=$ROOT/build/dbm-diff
PGCLUSTER=$ROOT/scripts/pgcluster.sh
TABLES=(public.bench_mixed public.pgbench_accounts)
# pg_comparator needs the key in its URL
declare -A PGC_KEY=([public.bench_mixed]=id [public.pgbench_accounts]=aid)

export PGAPPNAME=dbm-bench

say() { printf '%s bench-hash: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench-hash: FAILED: %s\n' "$*" >&2; exit 1; }

for cmd in psql pg_dump pgbench pg_comparator pgcopydb jq; do
	command -v "$cmd" >/dev/null || die "$cmd not found (run scripts/setup.sh)"
done
[[ -x "$DIFF" ]] || die "$DIFF not built (run make)"

T0=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/dbm-bench-hash.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/out"
export TMPDIR=$WORK # dbm-diff's row records go here
# one binary for the whole run, whatever happens to build/ meanwhile
cp "$DIFF" "$WORK/dbm-diff"
DIFF=$WORK/dbm-diff

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
SRC=$("$PGCLUSTER" start "$WORK/src")
DST=$("$PGCLUSTER" start "$WORK/dst")
SRC_PORT=$(cat "$WORK/src/port")
DST_PORT=$(cat "$WORK/dst/port")
SRC_PM=$(head -n 1 "$WORK/src/data/postmaster.pid")
DST_PM=$(head -n 1 "$WORK/dst/data/postmaster.pid")

q() { psql "$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
qv() { psql "$1" -X -q -v ON_ERROR_STOP=1 -At -c "$2"; }

# ---------------------------------------------------------------- data
say "pgbench -i -s $SCALE on the source"
pgbench -i -s "$SCALE" -q "$SRC" >"$WORK/pgbench.log" 2>&1 ||
	{ cat "$WORK/pgbench.log" >&2; die "pgbench -i"; }
q "$SRC" -c "DROP TABLE pgbench_branches, pgbench_tellers, pgbench_history"

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

say "copying both tables to the target"
pg_dump "$SRC" -t public.pgbench_accounts -t public.bench_mixed >"$WORK/dump.sql"
q "$DST" -f "$WORK/dump.sql" >/dev/null
rm -f "$WORK/dump.sql"
for c in "$SRC" "$DST"; do
	q "$c" -c "CREATE EXTENSION pgcmp" -c "VACUUM ANALYZE" -c "CHECKPOINT"
done

# What each table holds, and the exact query dbm-diff sends per table
# (columns in name order), which the floor sends too.
declare -A COPY_SQL PGCOPYDB_SQL ROWS MB
for t in "${TABLES[@]}"; do
	cols=$(qv "$SRC" "SELECT string_agg(quote_ident(attname), ', '
		ORDER BY attname COLLATE \"C\") FROM pg_attribute
		WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped")
	COPY_SQL[$t]="COPY (SELECT $cols FROM ONLY $t) TO STDOUT"
	# pgcopydb compare data: columns in attnum order, unquoted
	pcols=$(qv "$SRC" "SELECT string_agg(attname, ', ' ORDER BY attnum)
		FROM pg_attribute WHERE attrelid = '$t'::regclass AND attnum > 0
		AND NOT attisdropped")
	PGCOPYDB_SQL[$t]="select count(1) as cnt, encode(sha256(format('%s-%s', sum(hashtext(($pcols)::text)::bigint), count(1))::bytea), 'hex') as chksum from only $t"
	ROWS[$t]=$(qv "$SRC" "SELECT count(*) FROM $t")
	MB[$t]=$(qv "$SRC" "SELECT round(pg_table_size('$t') / 1048576.0)")
done
for t in "${TABLES[@]}"; do
	[[ $(qv "$DST" "SELECT count(*) FROM $t") == "${ROWS[$t]}" ]] ||
		die "$t: the copy on the target has other row counts"
done

# ---------------------------------------------------------------- the tools
floor_side()
{
	local t
	for t in "${TABLES[@]}"; do
		psql "$1" -X -q -v ON_ERROR_STOP=1 -c "${COPY_SQL[$t]}" >/dev/null || return
	done
}

run_floor()
{
	local a b rc=0
	floor_side "$SRC" & a=$!
	floor_side "$DST" & b=$!
	wait "$a" || rc=1
	wait "$b" || rc=1
	# the text size of one side, once
	if [[ ! -f "$WORK/copy_bytes" ]]; then
		for t in "${TABLES[@]}"; do
			psql "$SRC" -X -q -c "${COPY_SQL[$t]}" | wc -c
		done | awk '{ s += $1 } END { print s }' >"$WORK/copy_bytes"
	fi
	return "$rc"
}

floor_binary_side()
{
	local t
	for t in "${TABLES[@]}"; do
		psql "$1" -X -q -v ON_ERROR_STOP=1 \
			-c "${COPY_SQL[$t]} (FORMAT binary)" >/dev/null || return
	done
}

# Not a floor for dbm-diff (it hashes text), but what the servers cost when
# they need not format text.
run_floor_binary()
{
	local a b rc=0
	floor_binary_side "$SRC" & a=$!
	floor_binary_side "$DST" & b=$!
	wait "$a" || rc=1
	wait "$b" || rc=1
	return "$rc"
}

run_dbm_diff() { "$DIFF" --source "$SRC" --target "$DST" "$@"; }

pgc_url()
{
	local port=$1 t=$2
	echo "pgsql://postgres@127.0.0.1:$port/postgres/$t?${PGC_KEY[$t]}"
}

run_pg_comparator()
{
	local t
	for t in "${TABLES[@]}"; do
		pg_comparator "$(pgc_url "$SRC_PORT" "$t")" "$(pgc_url "$DST_PORT" "$t")" ||
			return
	done
}

PGCOPYDB_REAL=
if pgcopydb compare data --help >/dev/null 2>&1; then
	PGCOPYDB_REAL=1
fi

run_pgcopydb()
{
	if [[ -n "$PGCOPYDB_REAL" ]]; then
		rm -rf "$WORK/pgcopydb"
		pgcopydb compare data --dir "$WORK/pgcopydb" \
			--source "postgres://postgres@127.0.0.1:$SRC_PORT/postgres" \
			--target "postgres://postgres@127.0.0.1:$DST_PORT/postgres"
		return
	fi
	# pgcopydb 0.13+ compare data, emulated: one connection per table and
	# side, the query sent to both sides at once, tables in parallel
	local t c pids=() rc=0 p
	for t in "${TABLES[@]}"; do
		for c in "$SRC" "$DST"; do
			psql "$c" -X -q -At -v ON_ERROR_STOP=1 -c "BEGIN" \
				-c "${PGCOPYDB_SQL[$t]}" -c "COMMIT" \
				>"$WORK/pgcopydb.$t.${c##*port=}" & pids+=($!)
		done
	done
	for p in "${pids[@]}"; do
		wait "$p" || rc=1
	done
	[[ $rc == 0 ]] || return 1
	for t in "${TABLES[@]}"; do
		if ! cmp -s "$WORK/pgcopydb.$t.${SRC##*port=}" \
			"$WORK/pgcopydb.$t.${DST##*port=}"; then
			echo "Table $t differs: $(tr '\n' ' ' <"$WORK/pgcopydb.$t.${SRC##*port=}") on source," \
				"$(tr '\n' ' ' <"$WORK/pgcopydb.$t.${DST##*port=}") on target"
			rc=1
		fi
	done
	return "$rc"
}

# ---------------------------------------------------------------- measuring
# Counters are read with builtins only (no fork), so that reading them costs
# nothing that they would count.

# CPU ticks (user + system) of a process and its reaped children, in CPU.
proc_cpu()
{
	local f
	read -r -a f <"/proc/$1/stat"
	# fields 14-17: utime stime cutime cstime; comm has no spaces here
	CPU=$((f[13] + f[14] + f[15] + f[16]))
}

# CPU ticks the whole machine spent busy (any process), in CPU.
machine_cpu()
{
	local f
	read -r -a f </proc/stat
	# cpu user nice system idle iowait irq softirq steal
	CPU=$((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

# Number of live children of a postmaster (its background processes plus
# backends), in N.  A backend's CPU reaches the postmaster's cutime only once
# the postmaster has reaped it, a moment after the client is gone.
nchildren()
{
	local c=()
	read -r -a c <"/proc/$1/task/$1/children" || true
	N=${#c[@]}
}

# Wait (up to 5 s) until both postmasters are back to their idle children.
settle()
{
	local i n1
	for ((i = 0; i < 500; i++)); do
		nchildren "$SRC_PM"
		n1=$N
		nchildren "$DST_PM"
		((n1 <= SRC_IDLE && N <= DST_IDLE)) && return
		sleep 0.01
	done
}

TICK=$(getconf CLK_TCK)
printf 'phase\ttool\trun\twall\tclient_cpu\tsrc_cpu\tdst_cpu\tother_cpu\tkept\n' \
	>"$WORK/times.tsv"
# A run during which processes outside the benchmark used more than this
# share of the machine is measured again (at most MAX_RETRIES times, and
# RETRY_BUDGET times in all, so a busy machine cannot stretch the benchmark
# much past 15 minutes; the last attempt is kept whatever it saw).  Every
# attempt stays in the log.
NOISY=${BENCH_NOISY:-0.10}
MAX_RETRIES=${BENCH_MAX_RETRIES:-2}
RETRY_BUDGET=${BENCH_RETRY_BUDGET:-25}
NCPU=$(nproc)

# measure PHASE TOOL RUN EXPECTED_RC COMMAND...
# Wall time; CPU of the tool's processes (all reaped when it returns), of
# each server, and of anything else on the machine meanwhile (other_cpu:
# noise from outside the benchmark).
measure()
{
	local try
	for ((try = 0; ; try++)); do
		measure_once "$@"
		if ((try < MAX_RETRIES && RETRY_BUDGET > 0)) && awk -v l="$LINE" -v x="$NOISY" -v n="$NCPU" \
			'BEGIN { split(l, f, "\t"); exit !(f[8] > x * f[4] * n) }'; then
			printf '%s\tno\n' "$LINE" >>"$WORK/times.tsv"
			RETRY_BUDGET=$((RETRY_BUDGET - 1))
			say "$1 $2 #$3: $(cut -f4 <<<"$LINE")s, but other processes used $(cut -f8 <<<"$LINE") CPU-s meanwhile: again"
			continue
		fi
		printf '%s\tyes\n' "$LINE" >>"$WORK/times.tsv"
		say "$1 $2 #$3: $(cut -f4 <<<"$LINE")s"
		return 0
	done
}

measure_once()
{
	local phase=$1 tool=$2 run=$3 want=$4
	shift 4
	local out="$WORK/out/$phase.$tool.$run"
	local c0 s0 d0 m0 t0 t1 c1 s1 d1 m1 rc=0
	settle
	proc_cpu "$SRC_PM"; s0=$CPU
	proc_cpu "$DST_PM"; d0=$CPU
	machine_cpu; m0=$CPU
	proc_cpu $$; c0=$CPU
	t0=$EPOCHREALTIME
	"$@" >"$out.out" 2>"$out.err" || rc=$?
	t1=$EPOCHREALTIME
	proc_cpu $$; c1=$CPU
	settle
	machine_cpu; m1=$CPU
	proc_cpu "$SRC_PM"; s1=$CPU
	proc_cpu "$DST_PM"; d1=$CPU
	if [[ "$want" != any && "$rc" != "$want" ]]; then
		tail -n 20 "$out.err" >&2
		die "$tool ($phase, run $run) exited $rc, expected $want"
	fi
	LINE=$(awk -v p="$phase" -v t="$tool" -v r="$run" -v a="$t0" -v b="$t1" \
		-v c=$((c1 - c0)) -v s=$((s1 - s0)) -v d=$((d1 - d0)) \
		-v m=$((m1 - m0)) -v k="$TICK" \
		'BEGIN { o = m - c - s - d; if (o < 0) o = 0
			printf "%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f",
			p, t, r, b - a, c / k, s / k, d / k, o / k }')
}

# dbm-diff's row lines as "table key status", sorted
diff_rows()
{
	jq -r 'select(.type == "row") | "\(.table) \(.key | to_entries |
		map(.value) | join(",")) \(.status)"' "$1" | sort
}

# pg_comparator's lines in dbm-diff's words, sorted
pgc_rows()
{
	local t
	for t in "${TABLES[@]}"; do
		sed -n "s/^\(UPDATE\|INSERT\|DELETE\) \(.*\)$/$t \2 \1/p" \
			"$1.$t"
	done | sed 's/ UPDATE$/ changed/; s/ INSERT$/ missing/; s/ DELETE$/ extra/' |
		sort
}

check_equal_diff()
{
	local f=$WORK/out/$1.out
	[[ $(jq -r 'select(.type == "table") | .status' "$f" | sort -u) == equal ]] ||
		die "dbm-diff ($1) did not find the tables equal: $(cat "$f")"
	[[ $(jq -r 'select(.type == "summary") | .equal' "$f") == "${#TABLES[@]}" ]] ||
		die "dbm-diff ($1) summary: $(tail -n 1 "$f")"
}

# One round of every tool on identical data.
round_identical()
{
	local r=$1
	measure identical floor "$r" 0 run_floor
	measure identical floor-binary "$r" 0 run_floor_binary
	measure identical dbm-diff "$r" 0 run_dbm_diff
	check_equal_diff "identical.dbm-diff.$r"
	measure identical dbm-diff-j2 "$r" 0 run_dbm_diff --jobs 2
	check_equal_diff "identical.dbm-diff-j2.$r"
	measure identical pg_comparator "$r" 0 run_pg_comparator
	[[ ! -s "$WORK/out/identical.pg_comparator.$r.out" ]] ||
		die "pg_comparator reported differences on identical data"
	measure identical pgcopydb "$r" 0 run_pgcopydb
}

sleep 1
nchildren "$SRC_PM"
SRC_IDLE=$N
nchildren "$DST_PM"
DST_IDLE=$N

say "warm-up (not counted)"
measure warmup floor 0 0 run_floor
measure warmup floor-binary 0 0 run_floor_binary
measure warmup dbm-diff 0 0 run_dbm_diff
measure warmup pg_comparator 0 0 run_pg_comparator
measure warmup pgcopydb 0 0 run_pgcopydb
for ((r = 1; r <= RUNS; r++)); do
	round_identical "$r"
done

# ---------------------------------------------------------------- profile
# The servers' share is measured above (their CPU); perf looks inside the
# dbm-diff client only: the machine may be shared, so a system-wide profile
# would show other people's work.
PERF=
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
	PERF=1
fi

# profile_client NAME EXPECTED_RC: one dbm-diff run under perf, not counted
profile_client()
{
	[[ -n "$PERF" ]] || return 0
	say "profiling the dbm-diff client ($1, perf, not counted)"
	local rc=0
	perf record -F 1999 -o "$WORK/perf.$1.data" -- "$DIFF" --source "$SRC" \
		--target "$DST" >/dev/null 2>"$WORK/perf.$1.err" || rc=$?
	[[ $rc == "$2" ]] || { PERF=; return 0; }
	perf report -i "$WORK/perf.$1.data" --stdio --sort dso,sym \
		--percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$' |
		sed 's/^ *//' | head -n 15 >"$WORK/perf.$1.txt" || true
}
profile_client identical 0

# ---------------------------------------------------------------- differences
say "planting 20 differences on the target"
q "$DST" <<'EOF'
-- 8 updates
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid IN (17, 654321);
UPDATE pgbench_accounts SET filler = 'changed' WHERE aid = 1234567;
UPDATE pgbench_accounts SET bid = bid + 1 WHERE aid = 1999999;
UPDATE bench_mixed SET attrs = attrs || '{"score": -1}' WHERE id = 4242;
UPDATE bench_mixed SET payload = '\xdeadbeef' WHERE id = 333333;
UPDATE bench_mixed SET amount = amount + 0.01 WHERE id = 777777;
UPDATE bench_mixed SET tags = tags || 5 WHERE id = 999998;
-- 6 deletes
DELETE FROM pgbench_accounts WHERE aid IN (1, 1000000, 2000000);
DELETE FROM bench_mixed WHERE id IN (2, 500000, 1000000);
-- 6 inserts
INSERT INTO pgbench_accounts VALUES
	(2000001, 1, 0, ''), (2000002, 2, 10, ''), (3000000, 3, -5, 'x');
INSERT INTO bench_mixed (id, amount, created_at, attrs, note, payload, ref, tags)
VALUES (1000001, 1.5, '2024-01-01 12:00+00', '{"a": 1}', 'inserted', '\x00',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2}'),
       (1000002, NULL, '2024-01-02 12:00+00', NULL, NULL, NULL,
        'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', NULL),
       (2000000, 0, '2024-01-03 12:00+00', '[]', E'tab\there', '\x',
        'c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', '{}');
EOF
q "$DST" -c "VACUUM ANALYZE" -c "CHECKPOINT"
sort >"$WORK/expected" <<EOF
public.pgbench_accounts 17 changed
public.pgbench_accounts 654321 changed
public.pgbench_accounts 1234567 changed
public.pgbench_accounts 1999999 changed
public.bench_mixed 4242 changed
public.bench_mixed 333333 changed
public.bench_mixed 777777 changed
public.bench_mixed 999998 changed
public.pgbench_accounts 1 missing
public.pgbench_accounts 1000000 missing
public.pgbench_accounts 2000000 missing
public.bench_mixed 2 missing
public.bench_mixed 500000 missing
public.bench_mixed 1000000 missing
public.pgbench_accounts 2000001 extra
public.pgbench_accounts 2000002 extra
public.pgbench_accounts 3000000 extra
public.bench_mixed 1000001 extra
public.bench_mixed 1000002 extra
public.bench_mixed 2000000 extra
EOF
# at small scales some planted keys do not exist: keep what was planted
if [[ "$SCALE" != 20 || "$MIXED_ROWS" != 1000000 ]]; then
	say "(small dataset: the expected list is computed, not fixed)"
	run_dbm_diff >"$WORK/out/expected.json" || true
	diff_rows "$WORK/out/expected.json" >"$WORK/expected"
fi
NDIFF=$(wc -l <"$WORK/expected")

run_pg_comparator_split()
{
	local t rc=0
	for t in "${TABLES[@]}"; do
		pg_comparator "$(pgc_url "$SRC_PORT" "$t")" "$(pgc_url "$DST_PORT" "$t")" \
			>"$PGC_OUT.$t" || rc=$?
	done
	return 0
}

round_differences()
{
	local r=$1 f
	measure different dbm-diff "$r" 1 run_dbm_diff
	f=$WORK/out/different.dbm-diff.$r.out
	if ! diff -u "$WORK/expected" <(diff_rows "$f") >"$WORK/rows.diff"; then
		cat "$WORK/rows.diff" >&2
		die "dbm-diff did not name exactly the $NDIFF planted differences"
	fi
	measure different dbm-diff-j2 "$r" 1 run_dbm_diff --jobs 2
	diff -q "$WORK/expected" \
		<(diff_rows "$WORK/out/different.dbm-diff-j2.$r.out") >/dev/null ||
		die "dbm-diff --jobs 2 did not name exactly the planted differences"
	PGC_OUT=$WORK/out/different.pg_comparator.$r
	measure different pg_comparator "$r" any run_pg_comparator_split
	if ! diff -u "$WORK/expected" <(pgc_rows "$PGC_OUT") >"$WORK/pgc.diff"; then
		say "note: pg_comparator's report differs from the planted set:"
		cat "$WORK/pgc.diff" >&2
		echo "run $r" >>"$WORK/pgc_mismatch"
	fi
}

for ((r = 1; r <= RUNS; r++)); do
	round_differences "$r"
done
profile_client different 1
cp "$WORK/out/different.dbm-diff.1.out" "$WORK/diff_output.json"

# ---------------------------------------------------------------- results
median()
{
	# median of column $3 for phase $1 tool $2
	awk -F'\t' -v p="$1" -v t="$2" -v c="$3" \
		'$1 == p && $2 == t && $9 == "yes" { print $c }' \
		"$WORK/times.tsv" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
			else if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
minimum()
{
	awk -F'\t' -v p="$1" -v t="$2" '$1 == p && $2 == t && $9 == "yes" { print $4 }' \
		"$WORK/times.tsv" | sort -g | head -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { printf "%.2f", a }'; }

FLOOR=$(median identical floor 4)
PGC=$(median identical pg_comparator 4)
FLOOR_MIN=$(minimum identical floor)
declare -A MED
for key in identical:floor identical:dbm-diff identical:dbm-diff-j2 \
	identical:pg_comparator identical:pgcopydb different:dbm-diff \
	identical:floor-binary \
	different:dbm-diff-j2 different:pg_comparator; do
	for col in 4 5 6 7 8; do
		MED[$key:$col]=$(median "${key%%:*}" "${key#*:}" "$col")
	done
done
D_ID=${MED[identical:dbm-diff:4]}
D_DF=${MED[different:dbm-diff:4]}
R_ID=$(ratio "$D_ID" "$FLOOR")
R_DF=$(ratio "$D_DF" "$FLOOR")
verdict()
{
	awk -v r="$1" -v lim="$2" 'BEGIN { print (r <= lim) ? "met" : "**MISSED**" }'
}
V_ID=$(verdict "$R_ID" 1.2)
V_DF=$(verdict "$R_DF" 1.5)
COPY_MB=$(awk '{ printf "%.0f", $1 / 1048576 }' "$WORK/copy_bytes")
ELAPSED=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')

row()
{
	# row LABEL KEY
	local k=$2 w=${MED[$2:4]}
	local m
	m=$(minimum "${k%%:*}" "${k#*:}")
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$w")" \
		"$(ratio "$w" "$FLOOR")" "$(ratio "$w" "$PGC")" \
		"$(fmt "$m")" "$(ratio "$m" "$FLOOR_MIN")" \
		"$(fmt "${MED[$k:5]}")" "$(fmt "${MED[$k:6]}")" "$(fmt "${MED[$k:7]}")" \
		"$(cpu_ratio "$k")" "$(busy "$k")"
}

if [[ -n "$PGCOPYDB_REAL" ]]; then
	PGCOPYDB_LABEL='`pgcopydb compare data`'
	PGCOPYDB_CMD="pgcopydb compare data --dir WORK/pgcopydb --source postgres://postgres@127.0.0.1:SRC_PORT/postgres --target postgres://postgres@127.0.0.1:DST_PORT/postgres"
else
	PGCOPYDB_LABEL='pgcopydb compare data (emulated, see below)'
	PGCOPYDB_CMD="# for each table, on both sides at once (4 psql sessions in parallel):
BEGIN;
${PGCOPYDB_SQL[public.bench_mixed]};
${PGCOPYDB_SQL[public.pgbench_accounts]};
COMMIT;"
fi

PGC_NOTE="pg_comparator named exactly the $NDIFF planted rows in every run."
if [[ -f "$WORK/pgc_mismatch" ]]; then
	PGC_NOTE="pg_comparator's report did NOT match the $NDIFF planted rows in: $(tr '\n' ' ' <"$WORK/pgc_mismatch")(see the bench log)."
fi

PROFILE_TEXT="perf was not available: no profile of the client."
if [[ -n "$PERF" ]]; then
	PROFILE_TEXT="Inside the dbm-diff client (\`perf record\` of one extra run each,
user and kernel time of its threads, by object and symbol; \`[k]\` is the
kernel, mostly socket reads and waits for the next packet):

identical data:

\`\`\`
$(cat "$WORK/perf.identical.txt")
\`\`\`

with the $NDIFF differences:

\`\`\`
$(cat "$WORK/perf.different.txt")
\`\`\`"
fi

cpu_ratio()
{
	awk -v c="${MED[$1:5]}" -v s="${MED[$1:6]}" -v d="${MED[$1:7]}" \
		-v fc="${MED[identical:floor:5]}" -v fs="${MED[identical:floor:6]}" \
		-v fd="${MED[identical:floor:7]}" \
		'BEGIN { printf "%.2f", (c + s + d) / (fc + fs + fd) }'
}
busy_all()
{
	awk -v w="${MED[$1:4]}" -v c="${MED[$1:5]}" -v s="${MED[$1:6]}" \
		-v d="${MED[$1:7]}" -v o="${MED[$1:8]}" -v n="$NCPU" \
		'BEGIN { x = 100 * (c + s + d + o) / (w * n); if (x > 100) x = 100
			printf "%.0f%%", x }'
}
sum2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
busy()
{
	# share of the machine's CPU time used, for phase:tool
	awk -v w="${MED[$1:4]}" -v c="${MED[$1:5]}" -v s="${MED[$1:6]}" \
		-v d="${MED[$1:7]}" -v n="$NCPU" \
		'BEGIN { printf "%.0f%%", 100 * (c + s + d) / (w * n) }'
}
D_J2=${MED[identical:dbm-diff-j2:4]}
J2_TEXT=$(awk -v j="$D_J2" -v d="$D_ID" -v n="$(nproc)" 'BEGIN {
	if (j < d * 0.95) printf "%.2f× the single-reader time: faster even with four backends and the client sharing %d CPUs.", j / d, n;
	else if (j > d * 1.05) printf "%.2f× the single-reader time: slower; four backends plus the client contend for %d CPUs. It pays on machines with spare cores.", j / d, n;
	else printf "the same as one reader (%.2f×): four backends plus the client on %d CPUs have nothing to gain here. It pays on machines with spare cores.", j / d, n }')
PGCD=${MED[identical:pgcopydb:4]}
PGC_SERVER=$(sum2 "${MED[identical:pg_comparator:6]}" "${MED[identical:pg_comparator:7]}")
PGCD_SERVER=$(sum2 "${MED[identical:pgcopydb:6]}" "${MED[identical:pgcopydb:7]}")
CLIENT_ID=${MED[identical:dbm-diff:5]}
BSERVER=$(sum2 "${MED[identical:floor-binary:6]}" "${MED[identical:floor-binary:7]}")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * (a - b) / a }'; }
pct2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / (a + b) }'; }
OTHER_MED=$(awk -F'\t' '$1 != "warmup" && $9 == "yes" { print $8 }' "$WORK/times.tsv" |
	sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
OTHER_MAX=$(awk -F'\t' '$1 != "warmup" && $9 == "yes" { print $8 }' "$WORK/times.tsv" |
	sort -g | tail -n 1)
RETRIED=$(awk -F'\t' '$9 == "no"' "$WORK/times.tsv" | wc -l)
SERVER_ID=$(awk -v a="${MED[identical:dbm-diff:6]}" -v b="${MED[identical:dbm-diff:7]}" 'BEGIN { printf "%.2f", a + b }')
FCLIENT=${MED[identical:floor:5]}
FSERVER=$(awk -v a="${MED[identical:floor:6]}" -v b="${MED[identical:floor:7]}" 'BEGIN { printf "%.2f", a + b }')
MEM=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')
CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)

mkdir -p "$(dirname "$RESULTS")"
cat >"$RESULTS" <<EOF
# dbm-diff benchmark (\`make bench-hash\`)

Generated by \`bench/hash.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), dbm $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
($("$DIFF" --version 2>/dev/null | head -n 1)). Whole run: ${ELAPSED}s.

Machine: $NCPU CPUs ($CPU_MODEL), $MEM memory; two PostgreSQL
$(qv "$SRC" "SHOW server_version") clusters from \`scripts/pgcluster.sh\` on the same machine
(loopback TCP, shared_buffers 128MB, fsync off; the data fit in the OS page
cache, so this measures CPU, not disks). Client and both servers share the
$NCPU CPUs.

## Dataset (same on both sides)

| table | rows | heap + TOAST |
| --- | ---: | ---: |
| public.pgbench_accounts (pgbench -s $SCALE) | ${ROWS[public.pgbench_accounts]} | ${MB[public.pgbench_accounts]} MB |
| public.bench_mixed (numeric, timestamptz, jsonb, text, bytea, uuid, int[]) | ${ROWS[public.bench_mixed]} | ${MB[public.bench_mixed]} MB |

COPY text of both tables: $COPY_MB MB per side. Copied to the target with
\`pg_dump -t ... | psql\`, then VACUUM ANALYZE and CHECKPOINT on both.

## Results: median of $RUNS runs (seconds)

Rounds were interleaved (each round runs every tool once), after one warm-up
round. "wall s" and the ratios next to it are medians; "best" is the
fastest kept run of each, less sensitive to load from outside the benchmark
(see below). CPU columns are medians of CPU seconds (user + system):
"client" is everything
the tool ran on this machine outside the servers, "source"/"target" the
server processes of each cluster; "CPU × floor" is their sum over the
floor's; "CPUs busy" is their sum over wall time × $NCPU CPUs.

| | wall s | × floor | × pg_comparator | best wall s | best × best floor | client CPU | source CPU | target CPU | CPU × floor | CPUs busy |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(row 'floor: COPY text of both tables, both sides at once' identical:floor)
$(row 'floor, binary COPY (reference only: servers without text output)' identical:floor-binary)
$(row '**dbm-diff**, identical data' identical:dbm-diff)
$(row 'dbm-diff --jobs 2, identical data' identical:dbm-diff-j2)
$(row 'pg_comparator, identical data' identical:pg_comparator)
$(row "$PGCOPYDB_LABEL, identical data" identical:pgcopydb)
$(row "**dbm-diff**, $NDIFF differences" different:dbm-diff)
$(row "dbm-diff --jobs 2, $NDIFF differences" different:dbm-diff-j2)
$(row "pg_comparator, $NDIFF differences" different:pg_comparator)

Targets: dbm-diff within 1.2× of the floor on identical data: **$R_ID×, $V_ID**;
within 1.5× with $NDIFF differences, naming every one: **$R_DF×, $V_DF**
(dbm-diff exited 0 on identical data and 1 with the differences in every
run, and its row lines named exactly the $NDIFF planted keys, with the right
status, every time). $PGC_NOTE

The same targets on the steadier figures: fastest kept run over fastest
floor run, $(ratio "$(minimum identical dbm-diff)" "$FLOOR_MIN")× on identical data ($(verdict "$(ratio "$(minimum identical dbm-diff)" "$FLOOR_MIN")" 1.2)) and
$(ratio "$(minimum different dbm-diff)" "$FLOOR_MIN")× with the differences ($(verdict "$(ratio "$(minimum different dbm-diff)" "$FLOOR_MIN")" 1.5)); CPU-seconds over the floor's,
$(cpu_ratio identical:dbm-diff)× ($(verdict "$(cpu_ratio identical:dbm-diff)" 1.2)) and $(cpu_ratio different:dbm-diff)× ($(verdict "$(cpu_ratio different:dbm-diff)" 1.5)). When the machine is
shared, the median wall times above move with the load of the moment,
and a phase measured in a quieter minute can even look faster than the
floor: read the best and CPU columns first.

## Commands

\`\`\`sh
# floor (per side, tables one after the other; both sides concurrently)
psql "\$CONNINFO" -X -q -c "${COPY_SQL[public.bench_mixed]}" >/dev/null
psql "\$CONNINFO" -X -q -c "${COPY_SQL[public.pgbench_accounts]}" >/dev/null

# dbm-diff
build/dbm-diff --source "host=127.0.0.1 port=SRC_PORT user=postgres dbname=postgres" \\
               --target "host=127.0.0.1 port=DST_PORT user=postgres dbname=postgres" [--jobs 2]

# pg_comparator $(pg_comparator --version 2>&1 | grep -o '[0-9][0-9.]*' | head -n 1) (CREATE EXTENSION pgcmp on both sides), one run per table, in turn
pg_comparator pgsql://postgres@127.0.0.1:SRC_PORT/postgres/public.bench_mixed?id \\
              pgsql://postgres@127.0.0.1:DST_PORT/postgres/public.bench_mixed?id
pg_comparator pgsql://postgres@127.0.0.1:SRC_PORT/postgres/public.pgbench_accounts?aid \\
              pgsql://postgres@127.0.0.1:DST_PORT/postgres/public.pgbench_accounts?aid

# pgcopydb
$PGCOPYDB_CMD
\`\`\`

pg_comparator runs with its defaults, which are its fast settings: checksum
function \`ck\` (Jenkins), 8-byte tuple checksums, \`sum\` aggregate, folding
factor 7, asynchronous queries (both sides work at once), one transaction,
no lock. Its \`--threads\` option "does NOT work at all with PostgreSQL" (its
manual), so it has no way to use more than one backend per side.
\`--use-key\` (integer keys used as their own hash) would save one hash per
row; it was left off, as dbm-diff hashes its keys too.

pgcopydb: $(if [[ -n "$PGCOPYDB_REAL" ]]; then echo "the installed pgcopydb has \`compare data\`."; else echo "the Debian package (bookworm: pgcopydb $(pgcopydb --version 2>&1 | sed -n 's/^pgcopydb version //p' | head -n 1)) has no \`compare\`
command (it came with pgcopydb 0.13). The row above runs the exact per-table
query of upstream \`pgcopydb compare data\` (src/bin/pgcopydb/schema.c,
schema_send_table_checksum) the way pgcopydb schedules it: one connection per
table and side, the source and target queries at once, tables in parallel
(its default --table-jobs is 4). pgcopydb's own overhead (catalog queries,
its SQLite catalog, forking workers) is not included, so the real tool can
only be slower. Like the real one, it answers per table only (row count and a
checksum), never which rows differ."; fi)

## Where the time goes

- Everything here is CPU-bound: two servers and the client share $NCPU CPUs;
  during the floor the benchmark's processes and outside load together kept
  the machine $(busy_all identical:floor) busy. On a quiet machine wall time is roughly total
  CPU / $NCPU, so the CPU columns (which outside load does not touch) are the
  steadiest comparison.
- The floor: the servers turn heap tuples into COPY text
  ($(fmt "$FSERVER") CPU-s over both servers) and psql copies the stream to
  /dev/null ($(fmt "$FCLIENT") CPU-s). Without text output (binary COPY) the
  servers need $(fmt "$BSERVER") CPU-s: formatting text (numeric, timestamptz,
  jsonb, arrays, bytea as hex) is $(pct "$FSERVER" "$BSERVER") of the servers' work.
- dbm-diff on identical data: $(fmt "$SERVER_ID") CPU-s in the servers (the
  same COPY as the floor) and $(fmt "$CLIENT_ID") CPU-s in the client (receiving
  the COPY stream, splitting out the key, XXH3 of every row and of its key,
  one row record per row written to a temporary file for the drill-down):
  $(fmt "$D_ID") s, ${R_ID}× the floor. Its client used $(ratio "$CLIENT_ID" "$FCLIENT")× the CPU
  of the floor's two psql processes; the servers are $(pct2 "$SERVER_ID" "$CLIENT_ID") of
  the CPU it costs, so the servers, not the client, set its speed.
- With $NDIFF differences dbm-diff still reads each side once, then drills
  into the differing buckets from its row records, with no second read of
  either database: $(fmt "$D_DF") s, ${R_DF}× the floor. The drill-down costs
  $(awk -v a="${MED[different:dbm-diff:5]}" -v b="$CLIENT_ID" 'BEGIN { printf "%.2f", a - b }') CPU-s more in the client, on one thread, after both reads
  have ended (see the profile below).
- \`--jobs 2\` (two connections per side reading ctid ranges): $(fmt "$D_J2") s,
  $J2_TEXT
- pg_comparator: $(fmt "$PGC") s, $(ratio "$PGC" "$FLOOR")× the floor,
  $(ratio "$PGC" "$D_ID")× dbm-diff. Almost all of its time is server CPU
  ($(fmt "$PGC_SERVER") CPU-s): it materialises a checksum table of every row on
  each side (CREATE TEMP TABLE AS SELECT key, hash(key), hash(row text)),
  aggregates it into summary tables level by level, then walks them down, so
  it writes a copy of each key besides reading the data.
- pgcopydb's query: $(fmt "$PGCD") s, $(ratio "$PGCD" "$FLOOR")× the floor; the
  servers cast each row to text and hash it ($(fmt "$PGCD_SERVER") CPU-s) and no
  data leaves them, but the answer is per table only: no row is named.
- Load from outside the benchmark (this machine may be shared): a run during
  which other processes used more than $(awk -v x="$NOISY" 'BEGIN { printf "%.0f%%", 100 * x }') of the machine was measured
  again (up to $MAX_RETRIES times, at most ${BENCH_RETRY_BUDGET:-25} in all); $RETRIED such runs were
  discarded (kept = no below). In the kept runs: median $(fmt "$OTHER_MED") CPU-s of outside load per run,
  at most $(fmt "$OTHER_MAX"). The CPU-seconds columns do not include it.

$PROFILE_TEXT

## Every run

\`\`\`
$(column -t -s $'\t' "$WORK/times.tsv")
\`\`\`
EOF

say "done in ${ELAPSED}s: dbm-diff ${R_ID}× floor on identical data ($V_ID), ${R_DF}× with $NDIFF differences ($V_DF); results in ${RESULTS#$ROOT/}"
