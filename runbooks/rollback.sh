#!/usr/bin/env bash
# rollback.sh - move the application back to the source, losing nothing.
#
#   runbooks/rollback.sh [--config FILE] [--json] [--timeout SECS]
#
# Uses the settings of migrate.sh (the same --config file or environment,
# the same state dir).  Where the migration stands is read from the
# target's dbm schema:
#   after the switch   the reverse apply is started if it does not run;
#                      dbm-rollback pauses the target (pgbouncer PAUSE, or
#                      read-only), writes a barrier there, waits until the
#                      reverse apply has carried every write up to it to the
#                      source, copies the sequences back, repoints the
#                      router to the source and resumes the clients
#   before the switch  the source is thawed (if a cutover left it frozen)
# Work that a killed migrate.sh left running is waited for first.  The
# appliers go on running: the forward one carries the source's new writes
# to the target again, so migrate.sh can cut over again later.
#
# Steps go to the run log ($DBM_STATE_DIR/run.jsonl) as migrate.sh's do:
# a run line, rollback started/done|failed, a summary line
#   {"type":"summary","result":"rolled_back","exit":0,"stage":"after_switch","pause_ms":N,...}
#
# Options:
#   --config FILE   settings file (see runbooks/migrate.conf.example)
#   --json          JSON lines on stdout instead of the report
#   --timeout SECS  longest wait for the reverse apply (DBM_ROLLBACK_TIMEOUT, 60)
#   -h, --help      this help
#
# Exit status: 0 the application is on the source; 1 the reverse apply did
# not catch up in time: the target stays primary, clients resumed there
# (nothing lost; run again once the reverse apply runs); 2 error.
set -uo pipefail

PROG=rollback
# shellcheck source=runbooks/common.sh
source "$(cd "$(dirname "$0")" && pwd)/common.sh"

config=${DBM_CONFIG:-}
while [[ $# -gt 0 ]]; do
	case $1 in
	--config=*) config=${1#*=} ;;
	--timeout=*) export DBM_ROLLBACK_TIMEOUT=${1#*=} ;;
	--config | --timeout)
		[[ $# -ge 2 ]] || die "option \"$1\" needs a value"
		[[ $1 == --config ]] && config=$2 || export DBM_ROLLBACK_TIMEOUT=$2
		shift
		;;
	--json) JSON_OUT=1 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument \"$1\" (see --help)" ;;
	esac
	shift
done
[[ -z "$config" ]] || load_config "$config"
common_settings
[[ -n "$ROUTER" ]] ||
	die "no router: set DBM_PGBOUNCER_ADMIN, DBM_PGBOUNCER_INI and DBM_PGBOUNCER_DB, or DBM_ROUTE_CMD"
for cmd in jq psql flock setsid dbm-cdc-apply dbm-rollback; do
	command -v "$cmd" >/dev/null 2>&1 || die "\"$cmd\" not found in PATH"
done
state_open
# a signal does not cut a rollback short: it is let finish
trap '' INT TERM HUP

now_ms
t0=$NOW_MS
emit "{\"type\":\"run\",\"status\":\"started\",\"run\":\"$RUN_ID\",\"pid\":$$,\"tool\":\"rollback\"}"
for name in pre-data copy post-data validate freeze switch rollback; do
	job_adopt "$name"
done
do_rollback "rollback.sh"
now_ms
if [[ $ROLLBACK_RC -eq 0 ]]; then
	json_field "$ROLLBACK_LINE" stage
	stage=$REPLY
	json_field "$ROLLBACK_LINE" pause_ms
	pause=$REPLY
	emit "{\"type\":\"summary\",\"result\":\"rolled_back\",\"exit\":0,\"run\":\"$RUN_ID\",\"ms\":$((NOW_MS - t0)),\"stage\":\"$stage\"${pause:+,\"pause_ms\":$pause}}"
	if [[ "$stage" == after_switch ]]; then
		say "ROLLED BACK: the application is on the source again; every write made on the target was carried back."
		say "  write pause        $pause ms"
		json_field "$ROLLBACK_LINE" sequences
		say "  sequences copied   $REPLY"
	else
		say "ROLLED BACK: the switch had not happened; the source is thawed and stays primary."
	fi
	say "  run log            $RUN_LOG"
	exit 0
fi
first_error "$STATE/jobs/rollback.err"
json_str "$REPLY"
emit "{\"type\":\"summary\",\"result\":\"failed\",\"exit\":$ROLLBACK_RC,\"run\":\"$RUN_ID\",\"ms\":$((NOW_MS - t0)),\"message\":$REPLY}"
if [[ $ROLLBACK_RC -eq 1 ]]; then
	say "NOT ROLLED BACK: the reverse apply did not catch up in time; the target stays primary (nothing lost)."
	say "  see $STATE/reverse.log, then run again"
else
	say "FAILED: $REPLY"
fi
exit "$ROLLBACK_RC"
