#!/usr/bin/env bash
# validate.sh - compare the source and the target with dbm-diff, for cron.
#
#   DBM_SOURCE=... DBM_TARGET=... runbooks/validate.sh [DBM-DIFF OPTION]...
#
# Runs dbm-diff with --recheck (it hashes both sides, each in one snapshot,
# and looks again at differing rows, so rows still in flight through
# replication are not reported), keeps its output in a timestamped file,
# appends one JSON line per run to the run log, writes a JSON report and a
# Prometheus text file (for node_exporter's textfile collector), and exits
# with dbm-diff's status: 0 equal, 1 different, 2 trouble.  Extra arguments
# go to dbm-diff as they are (e.g. -t 'sales.*' -j 4).
#
# In cron (the README has more):
#   */30 * * * *  DBM_SOURCE=... DBM_TARGET=... DBM_LOG_DIR=/var/log/dbm DBM_PROM_FILE=/var/lib/prometheus/node-exporter/dbm_validate.prom /usr/local/share/dbm/runbooks/validate.sh
#
# Environment:
#   DBM_SOURCE, DBM_TARGET  connection strings (libpq conninfo or URI);
#                           passwords belong in ~/.pgpass, not here
#   DBM_RECHECK             rechecks of differing rows (default 3, 0: none)
#   DBM_RECHECK_WAIT        seconds before each recheck (default 10)
#   DBM_LOG_DIR             where output and the run log go (default ./dbm-logs)
#   DBM_LOG_KEEP_DAYS       remove diff-* files older than this (default 30,
#                           0: keep everything); the run log is kept
#   DBM_REPORT_FILE         the JSON report of the last run (default
#                           $DBM_LOG_DIR/validate-report.json)
#   DBM_PROM_FILE           the Prometheus text file (default
#                           $DBM_LOG_DIR/dbm_validate.prom; empty: none)
#   DBM_PROM_LABELS         labels added to every metric, as Prometheus
#                           writes them: migration="shop",env="prod"
#
# Files in DBM_LOG_DIR:
#   diff-<UTC time>.jsonl   dbm-diff's standard output (docs/formats.md)
#   diff-<UTC time>.log     its diagnostics, when there were any (also copied
#                           to our stderr, which cron mails)
#   validate.jsonl          the run log: one line per run,
#     {"type":"validate","status":"equal|different|error","exit":N,
#      "output":"<path of diff-*.jsonl>","log":"<path of diff-*.log>"|null,
#      "at":"<UTC start time>","ms":N}
#   A run that fails before dbm-diff starts (bad settings) logs
#     {"type":"validate","status":"error","exit":2,"output":null,"log":null,
#      "at":"...","ms":0,"message":"..."}
# The report (replaced at every run, atomically): one JSON object,
#   {"type":"validate_report","status":"different","exit":1,"at":"...",
#    "ms":N,"tables":N,"equal":N,"different":N,"missing":N,"extra":N,
#    "rows_missing":N,"rows_extra":N,"rows_changed":N,"rows_unstable":N,
#    "differences":[{"table":"public.t","status":"different",
#      "left_rows":N,"right_rows":N,"rows":[{"key":{...},"status":"missing"},...],
#      "rows_truncated":false},...],"output":"...","log":null}
#   (at most 100 rows per table; the whole list is in "output").
# The Prometheus file (replaced atomically) has the gauges
#   dbm_validate_exit_code, dbm_validate_equal, dbm_validate_duration_seconds,
#   dbm_validate_last_run_timestamp_seconds,
#   dbm_validate_last_equal_timestamp_seconds (kept across runs),
#   dbm_validate_tables{status=...}, dbm_validate_rows{status=...}
# (docs/formats.md describes them); alert on dbm_validate_exit_code != 0,
# or on time() - dbm_validate_last_run_timestamp_seconds growing.
set -uo pipefail

PROG=validate
logdir=
at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# log_run STATUS EXIT OUTPUT LOG MS [MESSAGE]: append one line to the run log.
log_run()
{
	local line
	line=$(jq -cn --arg status "$1" --argjson exit "$2" --arg output "$3" \
		--arg log "$4" --arg at "$at" --argjson ms "$5" --arg message "${6:-}" \
		'{type: "validate", status: $status, exit: $exit,
		  output: (if $output == "" then null else $output end),
		  log: (if $log == "" then null else $log end), at: $at, ms: $ms}
		 + (if $message == "" then {} else {message: $message} end)') ||
		return 1
	# One short line, one write: appends from overlapping runs do not mix.
	printf '%s\n' "$line" >>"$logdir/validate.jsonl"
}

die()
{
	echo "$PROG: error: $*" >&2
	if [[ -n "$logdir" ]]; then
		log_run error 2 "" "" 0 "$*" ||
			echo "$PROG: error: could not write the run log \"$logdir/validate.jsonl\"" >&2
		write_prom 2 0 /dev/null || true
	fi
	exit 2
}

# write_prom EXIT MS OUTPUT: the Prometheus text file, from dbm-diff's
# summary line in OUTPUT (zeros without one).  The time of the last equal
# run is carried over from the file it replaces.
write_prom()
{
	local file=${DBM_PROM_FILE-$logdir/dbm_validate.prom} labels=${DBM_PROM_LABELS:-} l1 l2 last_equal now
	[[ -n "$file" ]] || return 0
	now=$(date +%s)
	last_equal=$(awk '$1 ~ /^dbm_validate_last_equal_timestamp_seconds/ { print $2 }' "$file" 2>/dev/null)
	[[ "$1" == 0 ]] && last_equal=$now
	l1=${labels:+\{$labels\}}
	l2=${labels:+,$labels}
	jq -rs --arg exit "$1" --arg ms "$2" --arg now "$now" --arg last "${last_equal:-0}" \
		--arg l1 "$l1" --arg l2 "$l2" '
		(map(select(.type == "summary")) | last // {}) as $s
		| "# HELP dbm_validate_exit_code Exit status of the last validation: 0 equal, 1 different, 2 error.",
		  "# TYPE dbm_validate_exit_code gauge",
		  "dbm_validate_exit_code\($l1) \($exit)",
		  "# HELP dbm_validate_equal 1 when the last validation found both sides equal.",
		  "# TYPE dbm_validate_equal gauge",
		  "dbm_validate_equal\($l1) \(if $exit == "0" then 1 else 0 end)",
		  "# HELP dbm_validate_duration_seconds How long the last validation ran.",
		  "# TYPE dbm_validate_duration_seconds gauge",
		  "dbm_validate_duration_seconds\($l1) \(($ms | tonumber) / 1000)",
		  "# HELP dbm_validate_last_run_timestamp_seconds When the last validation ran.",
		  "# TYPE dbm_validate_last_run_timestamp_seconds gauge",
		  "dbm_validate_last_run_timestamp_seconds\($l1) \($now)",
		  "# HELP dbm_validate_last_equal_timestamp_seconds When a validation last found both sides equal (0: never).",
		  "# TYPE dbm_validate_last_equal_timestamp_seconds gauge",
		  "dbm_validate_last_equal_timestamp_seconds\($l1) \($last)",
		  "# HELP dbm_validate_tables Tables of the last validation, by status.",
		  "# TYPE dbm_validate_tables gauge",
		  (["equal", "different", "missing", "extra"][] as $k
		   | "dbm_validate_tables{status=\"\($k)\"\($l2)} \($s[$k] // 0)"),
		  "# HELP dbm_validate_rows Differing rows of the last validation, by status.",
		  "# TYPE dbm_validate_rows gauge",
		  (["missing", "extra", "changed", "unstable"][] as $k
		   | "dbm_validate_rows{status=\"\($k)\"\($l2)} \($s["rows_" + $k] // 0)")
		' "$3" >"$file.tmp" 2>/dev/null && mv -f "$file.tmp" "$file"
}

# write_report STATUS EXIT MS OUTPUT LOG: the JSON report of this run.
write_report()
{
	local file=${DBM_REPORT_FILE:-$logdir/validate-report.json}
	jq -cs --arg status "$1" --argjson exit "$2" --argjson ms "$3" --arg at "$at" \
		--arg output "$4" --arg log "$5" '
		(map(select(.type == "summary")) | last // {}) as $s
		| (map(select(.type == "row")) | group_by(.table)
		   | map({key: .[0].table, value: .}) | from_entries) as $rows
		| {type: "validate_report", status: $status, exit: $exit, at: $at, ms: $ms,
		   tables: ($s.tables // 0), equal: ($s.equal // 0), different: ($s.different // 0),
		   missing: ($s.missing // 0), extra: ($s.extra // 0),
		   rows_missing: ($s.rows_missing // 0), rows_extra: ($s.rows_extra // 0),
		   rows_changed: ($s.rows_changed // 0), rows_unstable: ($s.rows_unstable // 0),
		   differences: [.[] | select(.type == "table" and .status != "equal")
		     | {table, status, left_rows, right_rows,
		        rows: (($rows[.table] // [])[:100] | map({key, status})),
		        rows_truncated: ((($rows[.table] // []) | length) > 100)}],
		   output: $output, log: (if $log == "" then null else $log end)}' \
		"$4" >"$file.tmp" && mv -f "$file.tmp" "$file"
}

# Use the checkout's binaries when run from one (DBM_BIN: another build's,
# as in make test-asan), the installed ones else.
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -n "${DBM_BIN:-}" || -x "$HERE/../build/dbm-diff" ]] && PATH="${DBM_BIN:-$HERE/../build}:$PATH"
command -v jq >/dev/null 2>&1 || die "jq not found in PATH"

dir=${DBM_LOG_DIR:-./dbm-logs}
mkdir -p "$dir" || die "could not create the log directory \"$dir\""
logdir=$(cd "$dir" && pwd) || die "could not enter \"$dir\""

command -v dbm-diff >/dev/null 2>&1 || die "dbm-diff not found in PATH"
recheck=${DBM_RECHECK:-3}
wait=${DBM_RECHECK_WAIT:-10}
keep=${DBM_LOG_KEEP_DAYS:-30}
[[ "$recheck" =~ ^[0-9]+$ ]] ||
	die "DBM_RECHECK must be a whole number, not \"$recheck\""
[[ "$wait" =~ ^[0-9]+([.][0-9]+)?$ ]] ||
	die "DBM_RECHECK_WAIT must be a number of seconds, not \"$wait\""
[[ "$keep" =~ ^[0-9]+$ ]] ||
	die "DBM_LOG_KEEP_DAYS must be a whole number, not \"$keep\""

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$logdir/diff-$stamp.jsonl
err=$logdir/diff-$stamp.log
# Two runs in the same second (a retry right after a failure) keep both.
n=1
while [[ -e "$out" || -e "$err" ]]; do
	n=$((n + 1))
	out=$logdir/diff-$stamp-$n.jsonl
	err=$logdir/diff-$stamp-$n.log
done

started=$(date +%s%N)
if [[ "$recheck" -gt 0 ]]; then
	dbm-diff --recheck="$recheck" --recheck-wait="$wait" "$@" >"$out" 2>"$err"
else
	dbm-diff "$@" >"$out" 2>"$err"
fi
rc=$?
ms=$((($(date +%s%N) - started) / 1000000))

if [[ -s "$err" ]]; then
	cat "$err" >&2
else
	rm -f "$err"
	err=
fi

case $rc in
0) status=equal ;;
1) status=different ;;
*) status=error ;;
esac
log_run "$status" "$rc" "$out" "$err" "$ms" ||
	{ echo "$PROG: error: could not write the run log \"$logdir/validate.jsonl\"" >&2; exit 2; }
write_report "$status" "$rc" "$ms" "$out" "$err" ||
	echo "$PROG: warning: could not write the report \"${DBM_REPORT_FILE:-$logdir/validate-report.json}\"" >&2
write_prom "$rc" "$ms" "$out" ||
	echo "$PROG: warning: could not write the Prometheus file \"${DBM_PROM_FILE-$logdir/dbm_validate.prom}\"" >&2

if [[ "$keep" -gt 0 ]]; then
	find "$logdir" -maxdepth 1 -type f -name 'diff-*' -mtime "+$keep" \
		-exec rm -f {} + 2>/dev/null || true
fi
exit "$rc"
