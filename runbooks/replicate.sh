#!/usr/bin/env bash
# replicate.sh - copy a live database to a target and keep it in sync.
#
#   DBM_SOURCE=... DBM_TARGET=... runbooks/replicate.sh [OPTION]... [-- DBM-CDC-APPLY OPTION...]
#
# Steps, in order; the first that fails ends the run:
#   pre-data   the schema without indexes and constraints:
#              pg_dump --section=pre-data | psql
#   snapshot   dbm-snapshot --slot: a logical replication slot and, in its
#              exported snapshot, a parallel binary copy of every table
#   post-data  indexes, constraints, triggers: pg_dump -Fc --section=post-data
#              to a file, pg_restore -j N (indexes built in parallel), then
#              ANALYZE
#   apply      dbm-cdc-apply --slot: the changes made since the snapshot,
#              until it is stopped (SIGINT/SIGTERM to this script stops it
#              cleanly at a transaction boundary) or a bound given after --
#              is reached (--until-idle SECS, --stop-at-lsn LSN)
#
# Options:
#   --slot NAME      replication slot and publication (default dbm); the
#                    slot must not exist yet
#   --jobs N         parallel copy pieces and index builds (default 4)
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
# Diagnostics on stderr: a failing step prints one line,
#   replicate: error: post-data: pg_restore: error: could not execute query: ...
# (dbm-cdc-apply's own error line when the apply step fails), and logs
# {"status":"failed","exit":N,"message":"..."}.
#
# Exit status: 0 done (or apply stopped as asked), 2 error (usage, a step
# failed; the step line's "exit" is the failing command's own status).
set -uo pipefail

PROG=replicate
STEP=
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

# utc_iso MS: an ISO 8601 UTC time with milliseconds.
utc_iso()
{
	printf '%s.%03dZ' "$(date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S)" $(($1 % 1000))
}

# step_line STATUS MS [JSON-OBJECT-TO-MERGE]: write one step line to stdout
# and append it to the run log in one write.
step_line()
{
	local line
	now_ms
	line=$(jq -cn --arg step "$STEP" --arg status "$1" --arg at "$(utc_iso "$NOW_MS")" \
		--argjson ms "$2" --argjson extra "${3:-{\}}" \
		'{type: "step", step: $step, status: $status, at: $at, ms: $ms} + $extra') ||
		return 1
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

# fail EXIT MESSAGE [QUIET]: the current step failed; log it, say it in one
# line (unless QUIET: the tool has said it already), exit.
fail()
{
	local rc=$1 msg=$2 extra
	extra=$(jq -cn --argjson exit "$rc" --arg message "$msg" '{exit: $exit, message: $message}')
	step_line failed "$((NOW_MS - STEP_T0))" "$extra" || true
	[[ -n "${3:-}" ]] || echo "$PROG: error: $STEP: $msg" >&2
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

start_step()
{
	STEP=$1
	now_ms
	STEP_T0=$NOW_MS
	step_line started 0 || exit 2
}

# done_step [JSON-OBJECT]
done_step()
{
	now_ms
	step_line done "$((NOW_MS - STEP_T0))" "${1:-}" || exit 2
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
copy_only=
run_log=./dbm-run.jsonl
apply_args=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--slot=*) slot=${1#*=} ;;
	--jobs=*) jobs=${1#*=} ;;
	--run-log=*) run_log=${1#*=} ;;
	--slot | --jobs | --run-log)
		[[ $# -ge 2 ]] || die "option \"$1\" needs a value"
		case $1 in
		--slot) slot=$2 ;;
		--jobs) jobs=$2 ;;
		--run-log) run_log=$2 ;;
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
[[ -n "$copy_only" && ${#apply_args[@]} -gt 0 ]] &&
	die "arguments after -- go to dbm-cdc-apply, which --copy-only does not run"
[[ -n "${DBM_SOURCE:-}" ]] || die "DBM_SOURCE is not set (a libpq conninfo string or URI)"
[[ -n "${DBM_TARGET:-}" ]] || die "DBM_TARGET is not set (a libpq conninfo string or URI)"

# Use the checkout's binaries when run from one, the installed ones else.
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -x "$HERE/../build/dbm-snapshot" ]] && PATH="$HERE/../build:$PATH"
for cmd in jq pg_dump pg_restore psql dbm-snapshot dbm-cdc-apply; do
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
[[ $rc -eq 0 ]] || fail "$rc" "$(first_error "$WORK/pre-data.err")"
[[ "$exists" == 0 ]] ||
	fail 2 "replication slot \"$slot\" already exists on the source (drop it, or choose another name with --slot)"
pg_dump --section=pre-data --no-publications --no-subscriptions "$DBM_SOURCE" \
	2>"$WORK/pre-data.err" |
	psql -X -q -v ON_ERROR_STOP=1 "$DBM_TARGET" >/dev/null 2>>"$WORK/pre-data.err"
rc=$?
now_ms
[[ $rc -eq 0 ]] || fail "$rc" "$(first_error "$WORK/pre-data.err")"
done_step

# ---------------------------------------------------------------- snapshot
start_step snapshot
# On a terminal its progress display shows and its own error line is the
# one line; else its stderr is kept for the one line we print.
if [[ -t 2 ]]; then
	quiet=1 err=/dev/stderr
else
	quiet= err=$WORK/snapshot.err
fi
# its lines go to our stdout as they come, and to a file we read after
exec {out}> >(tee "$WORK/snapshot.jsonl")
tee_pid=$!
run_child dbm-snapshot --source="$DBM_SOURCE" --target="$DBM_TARGET" \
	--slot="$slot" --jobs="$jobs" >&"$out" 2>"$err"
exec {out}>&-
wait "$tee_pid"
now_ms
if [[ $RC -ne 0 ]]; then
	[[ -n "$quiet" ]] && fail "$RC" "dbm-snapshot exited $RC" quiet
	fail "$RC" "$(first_error "$err")"
fi
if ! done_line=$(jq -ce 'select(.type == "done")' "$WORK/snapshot.jsonl" 2>/dev/null); then
	[[ -n "$SIGNALLED" ]] && fail 2 "stopped by a signal before the copy was done"
	fail 2 "dbm-snapshot ended without a done line"
fi
lsn=$(jq -r 'select(.type == "snapshot") | .lsn' "$WORK/snapshot.jsonl")
done_step "$(jq -cn --arg slot "$slot" --arg lsn "$lsn" --argjson d "$done_line" \
	'{slot: $slot, lsn: $lsn, rows: $d.rows, bytes: $d.bytes}')"
[[ -z "$SIGNALLED" ]] || exit 0

# ---------------------------------------------------------------- post-data
start_step post-data
# pg_restore -j needs a seekable archive: custom format in a file
pg_dump -Fc --section=post-data --no-publications --no-subscriptions \
	-f "$WORK/post-data.dump" "$DBM_SOURCE" 2>"$WORK/post-data.err"
rc=$?
if [[ $rc -eq 0 ]]; then
	pg_restore -j "$jobs" --section=post-data --exit-on-error -d "$DBM_TARGET" \
		"$WORK/post-data.dump" 2>>"$WORK/post-data.err"
	rc=$?
fi
if [[ $rc -eq 0 ]]; then
	psql -X -q -v ON_ERROR_STOP=1 -c ANALYZE "$DBM_TARGET" 2>>"$WORK/post-data.err"
	rc=$?
fi
now_ms
[[ $rc -eq 0 ]] || fail "$rc" "$(first_error "$WORK/post-data.err")"
done_step

[[ -z "$copy_only" ]] || exit 0

# ---------------------------------------------------------------- apply
start_step apply
run_child dbm-cdc-apply --source="$DBM_SOURCE" --target="$DBM_TARGET" \
	--slot="$slot" "${apply_args[@]}"
now_ms
# dbm-cdc-apply has said why on stderr, in one line
[[ $RC -eq 0 ]] || fail "$RC" "dbm-cdc-apply exited $RC" quiet
done_step
exit 0
