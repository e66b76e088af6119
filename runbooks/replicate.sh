#!/usr/bin/env bash
# replicate.sh - copy a live database to a target and keep it in sync.
#
#   DBM_SOURCE=... DBM_TARGET=... runbooks/replicate.sh [OPTION]... [-- DBM-CDC-APPLY OPTION...]
#
# Steps; the first that fails ends the run:
#   pre-data   the schema without indexes and constraints:
#              pg_dump --section=pre-data | psql (and, meanwhile, the
#              post-data section is dumped to a file: pg_dump -Fc)
#   snapshot   dbm-snapshot --slot: a logical replication slot and, in its
#              exported snapshot, a parallel binary copy of every table
#   post-data  indexes, constraints, triggers, from that file; runs
#              alongside the copy: each plain table's indexes and primary
#              key, unique and exclusion constraints, then its ANALYZE, in
#              one psql session as soon as all of its data is in (at most
#              N at once; stopped, a build is cancelled on the server);
#              the rest (foreign keys, partitioned tables, triggers...)
#              follows the copy with pg_restore -j N; ANALYZE of what is
#              left (partitioned tables...) at the end (vacuumdb
#              --analyze-only -j N)
#   apply      dbm-cdc-apply --slot: the changes made since the snapshot,
#              until it is stopped (SIGINT/SIGTERM to this script stops it
#              cleanly at a transaction boundary) or a bound given after --
#              is reached (--until-idle SECS, --stop-at-lsn LSN)
#
# Options:
#   --slot NAME      replication slot and publication (default dbm); the
#                    slot must not exist yet
#   --jobs N         parallel copy pieces and index builds (default 4)
#   --split-size SIZE
#                    dbm-snapshot splits tables whose heap is larger than
#                    SIZE into ctid ranges copied in parallel (default: its
#                    own, 8GB); pieces of a split table cannot be loaded
#                    with COPY FREEZE, so split only where the parallel copy
#                    pays for it (big tables, CPUs to spare on both servers)
#   --split-rows N   also split tables of more than N rows
#   --maintenance-work-mem SIZE
#                    for the index builds (default 512MB, as much per
#                    build; empty: the server's setting)
#   --copy-only      stop after post-data; the slot stays, so
#                    `dbm-cdc-apply --slot NAME` can continue later
#   --run-log FILE   where step lines are appended (default ./dbm-run.jsonl)
#   -- ARGS          passed on to dbm-cdc-apply (e.g. -- --until-idle 10)
#
# The target database must exist and be empty; roles that own objects on the
# source must exist on the target (pg_dumpall --roles-only).  Sequence values
# are not copied here: dbm-switch copies them at the cutover, when the source
# no longer moves them.
#
# Output: the tools' JSON lines (docs/formats.md) and this script's step
# lines on stdout; each step line is also appended to the run log:
#   {"type":"step","step":"snapshot","status":"done","at":"...","ms":N,"lsn":"0/1A2B3C"}
# (snapshot and post-data start together: "snapshot started", "post-data
# started", "snapshot done", "post-data done").
# Diagnostics on stderr: a failing step prints one line,
#   replicate: error: post-data: public.orders: ERROR:  relation "orders_pkey" already exists
# (dbm-cdc-apply's own error line when the apply step fails), and logs
# {"status":"failed","exit":N,"message":"..."}.
#
# Exit status: 0 done (or apply stopped as asked), 2 error (usage, a step
# failed; the step line's "exit" is the failing command's own status).
set -uo pipefail

PROG=replicate
RUN_LOG=
WORK=

usage()
{
	sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"
}

# now_ms: milliseconds since the epoch, in NOW_MS (no fork).
now_ms()
{
	local t=${EPOCHREALTIME/[.,]/}
	NOW_MS=$((t / 1000))
}

# step_line STEP STATUS MS [JSON-OBJECT-TO-MERGE]: write one step line to
# stdout and append it to the run log in one write.  Made without a fork
# (each line costs no jq: several lie between the copy's end and the start
# of the next step): STEP and STATUS are plain words, MS a number, and the
# object to merge compact JSON from jq -c, its keys new.
step_line()
{
	local line at extra=${4:-}
	now_ms
	TZ=UTC printf -v at '%(%Y-%m-%dT%H:%M:%S)T.%03dZ' $((NOW_MS / 1000)) $((NOW_MS % 1000))
	line="{\"type\":\"step\",\"step\":\"$1\",\"status\":\"$2\",\"at\":\"$at\",\"ms\":$3}"
	[[ -z "$extra" || "$extra" == "{}" ]] || line="${line%\}},${extra#\{}"
	printf '%s\n' "$line"
	printf '%s\n' "$line" >>"$RUN_LOG" || {
		echo "$PROG: error: could not write the run log \"$RUN_LOG\"" >&2
		return 1
	}
}

# die MESSAGE: one error line, exit 2 (before any step ran).
die()
{
	echo "$PROG: error: $*" >&2
	exit 2
}

declare -A STEP_T0=()

start_step()
{
	now_ms
	STEP_T0[$1]=$NOW_MS
	step_line "$1" started 0 || exit 2
}

# done_step STEP [JSON-OBJECT]
done_step()
{
	now_ms
	step_line "$1" done "$((NOW_MS - STEP_T0[$1]))" "${2:-}" || exit 2
}

# step_fail STEP EXIT MESSAGE: log that STEP failed (as of NOW_MS).
step_fail()
{
	local extra
	extra=$(jq -cn --argjson exit "$2" --arg message "$3" '{exit: $exit, message: $message}')
	step_line "$1" failed "$((NOW_MS - STEP_T0[$1]))" "$extra" || true
}

# fail STEP EXIT MESSAGE [QUIET]: STEP failed: log it, say it in one line
# (unless QUIET: the tool has said it already), exit 2.
fail()
{
	step_fail "$1" "$2" "$3"
	[[ -n "${4:-}" ]] || echo "$PROG: error: $1: $3" >&2
	exit 2
}

# first_error FILE: the most telling line of a captured stderr, flattened:
# the first error line, else the last line.
first_error()
{
	local line
	line=$(grep -m 1 -E '(error|ERROR|FATAL|PANIC):' "$1" 2>/dev/null) ||
		line=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
	line=${line//$'\t'/ }
	printf '%s' "${line:-no message}"
}

# run_child COMMAND...: run a dbm tool, passing SIGINT/SIGTERM/SIGHUP on to
# it so it stops cleanly at a transaction boundary; its status in RC.
# SIGNALLED is set when we were asked to stop.
run_child()
{
	local child rc
	SIGNALLED= INTERRUPTED=
	"$@" &
	child=$!
	trap 'SIGNALLED=1 INTERRUPTED=1; kill -TERM "$child" 2>/dev/null' INT TERM HUP
	wait "$child"
	RC=$?
	# A trapped signal ends wait early (status 128 + signal): wait again
	# for the tool's own status.  127: it had been collected already.
	while [[ -n "$INTERRUPTED" ]]; do
		INTERRUPTED=
		wait "$child"
		rc=$?
		[[ $rc -eq 127 ]] || RC=$rc
	done
	trap - INT TERM HUP
}

# ---------------------------------------------------------------- options
slot=dbm
jobs=4
mwm=512MB
split_rows=
split_size=
copy_only=
run_log=./dbm-run.jsonl
apply_args=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--slot=*) slot=${1#*=} ;;
	--jobs=*) jobs=${1#*=} ;;
	--run-log=*) run_log=${1#*=} ;;
	--maintenance-work-mem=*) mwm=${1#*=} ;;
	--split-rows=*) split_rows=${1#*=} ;;
	--split-size=*) split_size=${1#*=} ;;
	--slot | --jobs | --run-log | --maintenance-work-mem | --split-rows | --split-size)
		[[ $# -ge 2 ]] || die "option \"$1\" needs a value"
		case $1 in
		--slot) slot=$2 ;;
		--jobs) jobs=$2 ;;
		--run-log) run_log=$2 ;;
		--maintenance-work-mem) mwm=$2 ;;
		--split-rows) split_rows=$2 ;;
		--split-size) split_size=$2 ;;
		esac
		shift
		;;
	--copy-only) copy_only=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; apply_args=("$@"); break ;;
	*) die "unknown argument \"$1\" (arguments for dbm-cdc-apply go after --; see --help)" ;;
	esac
	shift
done
[[ "$slot" =~ ^[a-z0-9_]{1,63}$ ]] ||
	die "invalid slot name \"$slot\": lower-case letters, digits and underscores, at most 63"
[[ "$jobs" =~ ^[1-9][0-9]*$ && "$jobs" -le 64 ]] ||
	die "invalid value \"$jobs\" for --jobs: expected 1 to 64"
[[ -z "$split_rows" || "$split_rows" =~ ^[1-9][0-9]{0,17}$ ]] ||
	die "invalid value \"$split_rows\" for --split-rows: expected a positive number"
[[ -z "$split_size" || "$split_size" =~ ^[1-9][0-9]{0,12}(kB|MB|GB|TB)?$ ]] ||
	die "invalid value \"$split_size\" for --split-size: expected a size like 4GB"
[[ -z "$mwm" || "$mwm" =~ ^[1-9][0-9]*(kB|MB|GB|TB)?$ ]] ||
	die "invalid value \"$mwm\" for --maintenance-work-mem: expected a size like 512MB (empty: the server's)"
[[ -n "$copy_only" && ${#apply_args[@]} -gt 0 ]] &&
	die "arguments after -- go to dbm-cdc-apply, which --copy-only does not run"
[[ -n "${DBM_SOURCE:-}" ]] || die "DBM_SOURCE is not set (a libpq conninfo string or URI)"
[[ -n "${DBM_TARGET:-}" ]] || die "DBM_TARGET is not set (a libpq conninfo string or URI)"

# Use the checkout's binaries when run from one (DBM_BIN: another build's,
# as in make test-asan), the installed ones else.
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -n "${DBM_BIN:-}" || -x "$HERE/../build/dbm-snapshot" ]] && PATH="${DBM_BIN:-$HERE/../build}:$PATH"
for cmd in jq pg_dump pg_restore psql vacuumdb dbm-snapshot dbm-cdc-apply; do
	command -v "$cmd" >/dev/null 2>&1 || die "\"$cmd\" not found in PATH"
done

RUN_LOG=$run_log
: >>"$RUN_LOG" 2>/dev/null || die "could not write the run log \"$RUN_LOG\""
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbm-replicate.XXXXXX") ||
	die "could not create a temporary directory"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- pre-data
start_step pre-data
# the slot is made by the snapshot step: find out now, before the target
# is touched, when that cannot work
exists=$(psql -X -At -v ON_ERROR_STOP=1 -v slot="$slot" "$DBM_SOURCE" 2>"$WORK/pre-data.err" \
	<<<"SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name = :'slot'")
rc=$?
now_ms
[[ $rc -eq 0 ]] || fail pre-data "$rc" "$(first_error "$WORK/pre-data.err")"
[[ "$exists" == 0 ]] ||
	fail pre-data 2 "replication slot \"$slot\" already exists on the source (drop it, or choose another name with --slot)"
# post-data is dumped meanwhile (custom format: pg_restore -j and -L need
# a seekable archive)
pg_dump -Fc --section=post-data --no-publications --no-subscriptions \
	-f "$WORK/post-data.dump" "$DBM_SOURCE" 2>"$WORK/post-data.err" &
post_dump_pid=$!
pg_dump --section=pre-data --no-publications --no-subscriptions "$DBM_SOURCE" \
	2>"$WORK/pre-data.err" |
	psql -X -q -v ON_ERROR_STOP=1 "$DBM_TARGET" >/dev/null 2>>"$WORK/pre-data.err"
rc=$?
now_ms
[[ $rc -eq 0 ]] || fail pre-data "$rc" "$(first_error "$WORK/pre-data.err")"
done_step pre-data

# ---------------------------------------------------------------- snapshot
# and post-data, side by side: each plain table's indexes and its primary
# key, unique and exclusion constraints are built as soon as all of its
# data is in, while the copy goes on; the rest of post-data (foreign keys,
# partitioned tables, triggers...) follows the copy, then ANALYZE.
start_step snapshot
start_step post-data

# The post-data section of the schema, dumped during the pre-data step, and
# its table of contents split by table: TOC lines of an index or
# constraint whose OID is listed in $WORK/oids (OID, table) go to that
# table's list; everything else to rest.list.
plan_post_data()
{
	wait "$post_dump_pid" || return
	pg_restore -l "$WORK/post-data.dump" >"$WORK/toc" || return
	psql -X -At -F $'\t' -v ON_ERROR_STOP=1 "$DBM_SOURCE" >"$WORK/oids" <<-'EOF' || return
		SELECT i.indexrelid, format('%I.%I', n.nspname, c.relname)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND NOT c.relispartition
		UNION ALL
		SELECT k.oid, format('%I.%I', n.nspname, c.relname)
		FROM pg_catalog.pg_constraint k
		JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype IN ('p', 'u', 'x') AND c.relkind = 'r' AND NOT c.relispartition
	EOF
	# the relations pre-data made, for the statistics at the end
	psql -X -At -v ON_ERROR_STOP=1 "$DBM_TARGET" >"$WORK/relations" <<-'EOF' || return
		SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'dbm'
		  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
	EOF
	awk -F'\t' -v dir="$WORK" '
		FILENAME == ARGV[1] { table[$1] = $2; next }
		/^;/ { next }
		match($0, /^[0-9]+; [0-9]+ [0-9]+ (INDEX|CONSTRAINT) /) {
			split($0, f, " ")
			if (f[3] in table) {
				t = table[f[3]]
				if (!(t in file)) {
					file[t] = dir "/toc." ++n
					print t "\t" file[t] > (dir "/tables")
				}
				print > file[t]
				next
			}
		}
		{ print > (dir "/rest.list") }' "$WORK/oids" "$WORK/toc" || return
	touch "$WORK/tables" "$WORK/rest.list"
}

# Index builds of finished tables, at most $jobs at once: pid -> table.
declare -A BUILDER=() TOC_OF=() ANALYZED=()
QUEUE=()
BUILD_FAILED=

# builder_done PID RC: a builder ended; note the first failure.
builder_done()
{
	if [[ $2 -ne 0 && -z "$BUILD_FAILED" ]]; then
		BUILD_FAILED=$2
		BUILD_ERR=$WORK/build.$1.err
		BUILD_TABLE=${BUILDER[$1]}
	fi
	[[ $2 -eq 0 ]] && rm -f "$WORK/build.$1.err" "$WORK/build.$1.sql"
	unset "BUILDER[$1]"
}

# The failed build's first error, after the table it was for (psql's
# "psql:FILE:LINE: " in front of the server's message names our temporary
# file: dropped).
build_error()
{
	local line
	line=$(first_error "$BUILD_ERR")
	[[ "$line" =~ ^psql:"$WORK"/build\.[0-9]+\.sql:[0-9]+:\ (.*)$ ]] && line=${BASH_REMATCH[1]}
	printf '%s: %s' "$BUILD_TABLE" "$line"
}

# Collect finished builders.
reap_builders()
{
	local pid rc
	for pid in "${!BUILDER[@]}"; do
		kill -0 "$pid" 2>/dev/null && continue
		wait "$pid"
		rc=$?
		builder_done "$pid" "$rc"
	done
}

# Start queued builds while fewer than $jobs run.
pump_builders()
{
	local t
	reap_builders
	while [[ ${#QUEUE[@]} -gt 0 && ${#BUILDER[@]} -lt $jobs && -z "$BUILD_FAILED" ]]; do
		t=${QUEUE[0]}
		QUEUE=("${QUEUE[@]:1}")
		# the builder names its own files by its pid ($! in here). One
		# session: the table's indexes and constraints (their SQL written
		# by pg_restore), then its statistics (the name, quoted by
		# dbm-snapshot, goes through regclass, never into SQL as is).
		# Stopped (stop_builders), it has psql cancel the statement on
		# the server, so nothing goes on building there.
		(
			exec 2>"$WORK/build.$BASHPID.err"
			sql=$WORK/build.$BASHPID.sql
			psql_pid= stopped=
			trap 'stopped=1; [[ -z "$psql_pid" ]] || kill -INT "$psql_pid" 2>/dev/null' TERM
			if [[ -n "${TOC_OF[$t]:-}" ]]; then
				pg_restore -f "$sql" -L "${TOC_OF[$t]}" "$WORK/post-data.dump" || exit
			fi
			[[ -z "$stopped" ]] || exit 143
			printf '%s\n' "SELECT format('ANALYZE %s', :'t'::regclass) \\gexec" >>"$sql" || exit
			PGOPTIONS=$PGOPTIONS_BUILD psql -X -q -v ON_ERROR_STOP=1 -v t="$t" -f "$sql" \
				"$DBM_TARGET" >/dev/null &
			psql_pid=$!
			[[ -z "$stopped" ]] || kill -INT "$psql_pid" 2>/dev/null
			wait "$psql_pid"
			rc=$?
			# (a trap cuts the wait short: wait again for psql's status)
			while kill -0 "$psql_pid" 2>/dev/null; do
				wait "$psql_pid"
				rc=$?
			done
			exit "$rc"
		) &
		BUILDER[$!]=$t
		ANALYZED[$t]=1
	done
}

stop_builders()
{
	local pid
	QUEUE=()
	for pid in "${!BUILDER[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${!BUILDER[@]}"; do
		wait "$pid" 2>/dev/null
	done
	BUILDER=()
}

# The copy failed or was stopped: log both steps, the copy's line last.
fail_snapshot()
{
	stop_builders
	now_ms
	step_fail post-data 2 "not finished: the copy did not end"
	fail snapshot "$@"
}

PGOPTIONS_BUILD=${PGOPTIONS:-}
[[ -n "$mwm" ]] && PGOPTIONS_BUILD+=" -c maintenance_work_mem=$mwm"

# On a terminal its progress display shows and its own error line is the
# one line; else its stderr is kept for the one line we print.
if [[ -t 2 ]]; then
	quiet=1 err=/dev/stderr
else
	quiet= err=$WORK/snapshot.err
fi
SIGNALLED=
declare -A COPIED=()
exec {snap_fd}< <(exec dbm-snapshot --source="$DBM_SOURCE" --target="$DBM_TARGET" \
	--slot="$slot" --jobs="$jobs" ${split_rows:+--split-rows="$split_rows"} \
	${split_size:+--split-size="$split_size"} 2>"$err")
snap_pid=$!
trap 'SIGNALLED=1; kill -TERM "$snap_pid" 2>/dev/null' INT TERM HUP
# which index builds follow which table, planned while the copy starts (its
# lines wait in the pipe)
if ! plan_post_data 2>>"$WORK/post-data.err"; then
	kill -TERM "$snap_pid" 2>/dev/null
	wait "$snap_pid"
	now_ms
	step_fail snapshot 2 "stopped: post-data failed"
	fail post-data 2 "$(first_error "$WORK/post-data.err")"
fi
while IFS=$'\t' read -r t f; do
	TOC_OF[$t]=$f
done <"$WORK/tables"
: >"$WORK/snapshot.jsonl"
# its lines go to our stdout as they come; a table whose pieces are all
# copied gets its indexes
partial=
while :; do
	# a timeout (to look after the builds meanwhile) may cut a line short:
	# read keeps what it got, and it is put back in front of the rest
	if IFS= read -r -t 0.2 -u "$snap_fd" line; then
		line=$partial$line
		partial=
		printf '%s\n' "$line"
		printf '%s\n' "$line" >>"$WORK/snapshot.jsonl"
		if [[ "$line" == '{"type":"copied",'* ]]; then
			# (a name with no escape in its JSON needs no jq: its fork
			# is on the way to the last table's index builds)
			if [[ "$line" =~ \"table\":\"([^\"\\]*)\",.*\"pieces\":([0-9]+)[,}] ]]; then
				t=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]}
			else
				IFS=$'\t' read -r t n < <(jq -rR 'fromjson? | [.table, .pieces] | @tsv' <<<"$line")
			fi
			COPIED[$t]=$((${COPIED[$t]:-0} + 1))
			if [[ ${COPIED[$t]} -eq $n ]]; then
				QUEUE+=("$t")
			fi
		fi
	elif (($? <= 128)); then
		[[ -z "$partial$line" ]] || printf '%s\n' "$partial$line" | tee -a "$WORK/snapshot.jsonl"
		break # end of its output
	else
		partial+=$line
	fi
	pump_builders
	if [[ -n "$BUILD_FAILED" && -z "$SIGNALLED" ]]; then
		# no point copying on: stop the copy cleanly
		SIGNALLED=1
		kill -TERM "$snap_pid" 2>/dev/null
	fi
done
exec {snap_fd}<&-
wait "$snap_pid"
RC=$?
trap - INT TERM HUP
now_ms
if [[ -n "$BUILD_FAILED" ]]; then
	stop_builders
	step_fail snapshot 2 "stopped: post-data failed"
	fail post-data "$BUILD_FAILED" "$(build_error)"
fi
if [[ $RC -ne 0 ]]; then
	[[ -n "$quiet" ]] && fail_snapshot "$RC" "dbm-snapshot exited $RC" quiet
	fail_snapshot "$RC" "$(first_error "$err")"
fi
# (one jq: its start-up is on the way to the last index builds)
done_extra=$(jq -cnR --arg slot "$slot" '[inputs | fromjson? | objects] as $l
	| ($l | map(select(.type == "done")) | first) as $d
	| select($d != null)
	| {slot: $slot, lsn: ($l | map(select(.type == "snapshot")) | first | .lsn),
	   rows: $d.rows, bytes: $d.bytes}' "$WORK/snapshot.jsonl" 2>/dev/null)
if [[ -z "$done_extra" ]]; then
	[[ -n "$SIGNALLED" ]] && fail_snapshot 2 "stopped by a signal before the copy was done"
	fail_snapshot 2 "dbm-snapshot ended without a done line"
fi
done_step snapshot "$done_extra"

# the remaining index builds, then the rest of post-data, then statistics
trap 'SIGNALLED=1; stop_builders' INT TERM HUP
while [[ ${#QUEUE[@]} -gt 0 || ${#BUILDER[@]} -gt 0 ]]; do
	pump_builders
	[[ -n "$BUILD_FAILED" || -n "$SIGNALLED" ]] && break
	[[ ${#BUILDER[@]} -gt 0 ]] || continue
	# until one ends (a trapped signal ends the wait without a pid; one
	# that bash has reaped already is not waited for here, quietly, and
	# pump_builders collects it)
	ended=
	wait -n -p ended "${!BUILDER[@]}" 2>/dev/null
	rc=$?
	[[ -n "${ended:-}" ]] && builder_done "$ended" "$rc"
done
now_ms
if [[ -n "$BUILD_FAILED" ]]; then
	stop_builders
	fail post-data "$BUILD_FAILED" "$(build_error)"
fi
[[ -z "$SIGNALLED" ]] || fail post-data 2 "stopped by a signal"
rc=0
# (nothing left but comments: no pg_restore and its connections)
if grep -qv '^;' "$WORK/rest.list"; then
	PGOPTIONS=$PGOPTIONS_BUILD pg_restore -j "$jobs" --exit-on-error -d "$DBM_TARGET" \
		-L "$WORK/rest.list" "$WORK/post-data.dump" 2>>"$WORK/post-data.err"
	rc=$?
fi
if [[ $rc -eq 0 ]]; then
	# statistics of what was not analyzed after its copy: partitioned
	# tables, materialized views... (listed by plan_post_data)
	rest=()
	while IFS= read -r t; do
		[[ -n "${ANALYZED[$t]:-}" ]] || rest+=(--table="$t")
	done <"$WORK/relations"
	if [[ ${#rest[@]} -gt 0 ]]; then
		vacuumdb --analyze-only --jobs="$jobs" --quiet --dbname="$DBM_TARGET" "${rest[@]}" \
			2>>"$WORK/post-data.err"
		rc=$?
	fi
fi
trap - INT TERM HUP
now_ms
[[ $rc -eq 0 ]] || fail post-data "$rc" "$(first_error "$WORK/post-data.err")"
[[ -z "$SIGNALLED" ]] || fail post-data 2 "stopped by a signal"
done_step post-data

[[ -z "$copy_only" ]] || exit 0

# ---------------------------------------------------------------- apply
start_step apply
run_child dbm-cdc-apply --source="$DBM_SOURCE" --target="$DBM_TARGET" \
	--slot="$slot" "${apply_args[@]}"
now_ms
# dbm-cdc-apply has said why on stderr, in one line
[[ $RC -eq 0 ]] || fail apply "$RC" "dbm-cdc-apply exited $RC" quiet
done_step apply
exit 0
