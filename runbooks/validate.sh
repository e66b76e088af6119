#!/usr/bin/env bash
# validate.sh - compare the source and the target with dbm-diff, for cron.
#
#   DBM_SOURCE=... DBM_TARGET=... runbooks/validate.sh [DBM-DIFF OPTION]...
#
# Runs dbm-diff with --recheck (so rows still in flight through replication
# are not reported), keeps its output in a timestamped file, appends one
# JSON line per run to the run log, and exits with dbm-diff's status:
# 0 equal, 1 different, 2 trouble.  Extra arguments go to dbm-diff as they
# are (e.g. -t 'sales.*' -j 4).
#
# Environment:
#   DBM_SOURCE, DBM_TARGET  connection strings (libpq conninfo or URI);
#                           passwords belong in ~/.pgpass, not here
#   DBM_RECHECK             rechecks of differing rows (default 3, 0: none)
#   DBM_RECHECK_WAIT        seconds before each recheck (default 10)
#   DBM_LOG_DIR             where output and the run log go (default ./dbm-logs)
#   DBM_LOG_KEEP_DAYS       remove diff-* files older than this (default 30,
#                           0: keep everything); the run log is kept
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
	fi
	exit 2
}

# Use the checkout's binaries when run from one, the installed ones else.
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -x "$HERE/../build/dbm-diff" ]] && PATH="$HERE/../build:$PATH"
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

if [[ "$keep" -gt 0 ]]; then
	find "$logdir" -maxdepth 1 -type f -name 'diff-*' -mtime "+$keep" \
		-exec rm -f {} + 2>/dev/null || true
fi
exit "$rc"
