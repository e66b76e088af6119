#!/usr/bin/env bash
# migrate.sh - move a live PostgreSQL database to another server, with a
# write pause of a fraction of a second and an automatic way back.
#
#   runbooks/migrate.sh [--config FILE] [--json] [--preflight-only]
#
# Steps (each logged as JSON lines to the run log, $DBM_STATE_DIR/run.jsonl):
#   preflight  is the pair fit?  wal_level, free replication slots and WAL
#              senders, a primary key or replica identity on every table
#              (no unlogged tables), sequences readable, privileges,
#              extensions available on the target, roles, an empty target,
#              free disk for the WAL the slot will retain, the router.  A
#              report; exit 1 when something is unfit.
#   pre-data   the schema without indexes and constraints (pg_dump
#              --section=pre-data, loaded in one transaction)
#   copy       dbm-snapshot --slot: a replication slot and, in its exported
#              snapshot, a parallel copy of every table
#   post-data  indexes, constraints, triggers (pg_restore -j), then ANALYZE
#   apply      dbm-cdc-apply --slot in the background (the forward apply)
#   catch-up   waits until the target is less than DBM_MAX_LAG_BYTES behind
#   validate   dbm-diff --recheck: the same rows on both sides (rows still
#              changing under load are rechecked; only they may differ)
#   prepare    the reverse publication and slot on the target, and the
#              reverse apply (target -> source) in the background, so that
#              the switch has nothing to create and a rollback loses nothing
#   freeze     dbm-freeze: writes pause (pgbouncer PAUSE, or read-only)
#   switch     dbm-switch: waits for the barrier, copies sequences,
#              repoints (pgbouncer or DBM_ROUTE_CMD), clients resume
#   reverse    makes sure the reverse apply runs
#   watch      post-switch checks for DBM_WATCH_SECS: the smoke query
#              through the application's connection (which must reach the
#              target) and DBM_CHECK_CMD; when one fails, dbm-rollback
#              brings the application back to the source, nothing lost
#   then a summary: rows copied, lag, validation, write pause, result.
#
# Re-running after a crash (or after Ctrl-C) continues: work left running
# by the dead run is waited for and its outcome used; finished steps are
# found done (in the target's dbm schema and on the source); a copy cut
# short is resumed; a cutover cut short is undone (the source is thawed or
# rolled back to, losing nothing) and done again; after a switch the watch
# is done again; a rollback cut short is finished.  Run it again after a
# completed migration and it says so.  After a rollback (rollback.sh, or a
# failed check) it cuts over again.
#
# Configuration: environment variables, or a file of KEY=VALUE lines
# (--config FILE, or DBM_CONFIG; the environment wins over the file); see
# runbooks/migrate.conf.example for every setting:
#   DBM_SOURCE, DBM_TARGET     connection strings (required)
#   DBM_PGBOUNCER_ADMIN, DBM_PGBOUNCER_INI, DBM_PGBOUNCER_DB
#                              the router: pgbouncer's console, its ini
#                              file and the database entry clients use;
#   DBM_ROUTE_CMD              or a command that repoints the application
#                              (DBM_ROUTE_TO=target|source); the source is
#                              then frozen read-only
#   DBM_STATE_DIR (./dbm-state), DBM_SLOT (dbm), DBM_REVERSE_SLOT
#   (dbm_reverse), DBM_JOBS (4), DBM_MAX_LAG_BYTES (1048576),
#   DBM_CATCHUP_TIMEOUT (3600), DBM_VALIDATE (1), DBM_RECHECK (3),
#   DBM_RECHECK_WAIT (2), DBM_FREEZE_TIMEOUT (5), DBM_SWITCH_TIMEOUT (30),
#   DBM_ROLLBACK_TIMEOUT (60), DBM_APPLY_BATCH_MS (20), DBM_APP_CONNINFO,
#   DBM_SMOKE_QUERY (SELECT 1), DBM_CHECK_CMD, DBM_WATCH_SECS (60),
#   DBM_CHECK_INTERVAL (5), DBM_CHECK_TIMEOUT (10), DBM_CHECK_FAILURES (1),
#   DBM_COPY_MBPS (100), DBM_SKIP_CHECKS
#
# Options:
#   --config FILE     settings file
#   --json            JSON lines on stdout (the run log's) instead of the report
#   --preflight-only  the checks and their report, nothing else
#   -h, --help        this help
#
# The appliers keep running after the script ends (their pid files are in
# the state dir): the forward one keeps the target in step until the
# switch, the reverse one keeps the source in step after it, so
# rollback.sh can go back at any time.  status.sh shows them.
#
# Exit status: 0 migrated (the target is primary, the checks passed);
# 1 not done, nothing damaged: unfit (preflight), the target did not catch
# up, the data differ, the freeze could not drain, or a check failed after
# the switch and the application is back on the source; 2 error (settings,
# a step failed; the message says what state things are in).
set -uo pipefail

PROG=migrate
# shellcheck source=runbooks/common.sh
source "$(cd "$(dirname "$0")" && pwd)/common.sh"

# ---------------------------------------------------------------- options
config=${DBM_CONFIG:-}
preflight_only=
while [[ $# -gt 0 ]]; do
	case $1 in
	--config=*) config=${1#*=} ;;
	--config)
		[[ $# -ge 2 ]] || die "option \"--config\" needs a value"
		config=$2
		shift
		;;
	--json) JSON_OUT=1 ;;
	--preflight-only) preflight_only=1 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument \"$1\" (see --help)" ;;
	esac
	shift
done
[[ -z "$config" ]] || load_config "$config"
common_settings
: "${DBM_JOBS:=4}"
: "${DBM_MAX_LAG_BYTES:=1048576}"
: "${DBM_CATCHUP_TIMEOUT:=3600}"
: "${DBM_VALIDATE:=1}"
: "${DBM_RECHECK:=3}"
: "${DBM_RECHECK_WAIT:=2}"
: "${DBM_FREEZE_TIMEOUT:=5}"
: "${DBM_SWITCH_TIMEOUT:=30}"
: "${DBM_SMOKE_QUERY:=SELECT 1}"
: "${DBM_CHECK_CMD:=}"
: "${DBM_WATCH_SECS:=60}"
: "${DBM_CHECK_INTERVAL:=5}"
: "${DBM_CHECK_TIMEOUT:=10}"
: "${DBM_CHECK_FAILURES:=1}"
: "${DBM_COPY_MBPS:=100}"
: "${DBM_SKIP_CHECKS:=}"
for v in DBM_JOBS DBM_MAX_LAG_BYTES DBM_RECHECK DBM_CHECK_FAILURES DBM_COPY_MBPS; do
	check_int "$v"
done
for v in DBM_CATCHUP_TIMEOUT DBM_RECHECK_WAIT DBM_FREEZE_TIMEOUT DBM_SWITCH_TIMEOUT \
	DBM_WATCH_SECS DBM_CHECK_INTERVAL DBM_CHECK_TIMEOUT; do
	check_num "$v"
done
[[ "$DBM_JOBS" -ge 1 && "$DBM_JOBS" -le 64 ]] || die "DBM_JOBS must be 1 to 64"
[[ "$DBM_CHECK_FAILURES" -ge 1 ]] || die "DBM_CHECK_FAILURES must be at least 1"
[[ "$DBM_VALIDATE" == [01] ]] || die "DBM_VALIDATE must be 0 or 1"
[[ -n "$ROUTER" ]] ||
	die "no router: set DBM_PGBOUNCER_ADMIN, DBM_PGBOUNCER_INI and DBM_PGBOUNCER_DB, or DBM_ROUTE_CMD"
for cmd in jq psql pg_dump pg_restore vacuumdb flock setsid timeout dbm-snapshot dbm-cdc-apply \
	dbm-diff dbm-freeze dbm-switch dbm-rollback; do
	command -v "$cmd" >/dev/null 2>&1 || die "\"$cmd\" not found in PATH"
done

state_open

redact "$DBM_SOURCE"
SRC_SHOWN=$REPLY
redact "$DBM_TARGET"
DST_SHOWN=$REPLY

# ---------------------------------------------------------------- helpers

# human-readable step lines of the report
report()
{
	local line
	printf -v line '%-10s %s' "$1" "$2"
	say "$line"
}

MARKER_DDL="CREATE SCHEMA IF NOT EXISTS dbm;
CREATE TABLE IF NOT EXISTS dbm.migrate_step (step text PRIMARY KEY,
    done_at timestamptz NOT NULL DEFAULT now());"

# marker_sql STEP: SQL that records STEP as done on the target.
marker_sql()
{
	printf '%s\nINSERT INTO dbm.migrate_step (step) VALUES (%s) ON CONFLICT (step) DO NOTHING;\n' \
		"$MARKER_DDL" "'$1'"
}

# step_marked STEP: the target records STEP as done.
step_marked()
{
	table_exists "$DBM_TARGET" dbm.migrate_step &&
		[[ "$(q_dst "SELECT count(*) FROM dbm.migrate_step WHERE step = '$1'")" == 1 ]]
}

# copy_state: COPY_STATE none|partial|done (the target's dbm.snapshot_run),
# SLOT_HERE 1 when the forward slot exists in the source database,
# SLOT_ELSEWHERE the database of a slot of that name elsewhere.
copy_state()
{
	local out
	COPY_STATE=none
	if table_exists "$DBM_TARGET" dbm.snapshot_run; then
		out=$(q_dst "SELECT coalesce((SELECT CASE WHEN finished_at IS NULL THEN 'partial' ELSE 'done' END
			FROM dbm.snapshot_run LIMIT 1), 'none')") || return 1
		COPY_STATE=$out
	fi
	out=$(q_src "SELECT coalesce(database, '?') = current_database(), coalesce(database, '?')
		FROM pg_replication_slots WHERE slot_name = '$DBM_SLOT'") || return 1
	SLOT_HERE= SLOT_ELSEWHERE=
	if [[ "$out" == t\|* ]]; then
		SLOT_HERE=1
	elif [[ -n "$out" ]]; then
		SLOT_ELSEWHERE=${out#*|}
	fi
}

# finish RESULT EXIT [MESSAGE]: the summary (report and JSON line), exit.
finish()
{
	local result=$1 rc=$2 msg=${3:-} rows=0 bytes=0 pause= line extra
	if out=$(q_dst "SELECT coalesce(sum(rows), 0), coalesce(sum(bytes), 0) FROM dbm.snapshot_piece" 2>/dev/null); then
		IFS='|' read -r rows bytes <<<"$out"
	fi
	if [[ -n "${SWITCH_PAUSE_MS:-}" ]]; then
		pause=$SWITCH_PAUSE_MS
	elif [[ "$result" == migrated || "$result" == already_migrated ]]; then
		pause=$(jq '.pause_ms // empty' "$STATE/switched.json" 2>/dev/null)
	fi
	extra="\"rows_copied\":${rows:-0},\"bytes_copied\":${bytes:-0}"
	[[ -n "${LAG_BYTES:-}" ]] && extra+=",\"lag_bytes\":$LAG_BYTES,\"lag_ms\":$LAG_MS"
	[[ -n "${VALIDATION:-}" ]] && extra+=",\"validation\":\"$VALIDATION\""
	[[ -n "$pause" ]] && extra+=",\"pause_ms\":$pause"
	if [[ -n "${ROLLBACK_LINE:-}" ]]; then
		json_field "$ROLLBACK_LINE" pause_ms
		[[ -n "$REPLY" ]] && extra+=",\"rollback_pause_ms\":$REPLY"
	fi
	[[ -n "${CHECKS_RUN:-}" ]] && extra+=",\"checks_run\":$CHECKS_RUN,\"checks_failed\":${CHECKS_FAILED:-0}"
	json_str "$msg"
	now_ms
	iso_ms "$NOW_MS"
	line="{\"type\":\"summary\",\"result\":\"$result\",\"exit\":$rc,\"run\":\"$RUN_ID\",\"at\":\"$REPLY\",\"ms\":$((NOW_MS - RUN_T0)),$extra"
	[[ -z "$msg" ]] || { json_str "$msg"; line+=",\"message\":$REPLY"; }
	emit "$line}"
	say ""
	case $result in
	migrated) say "MIGRATED: the target is primary; the application writes there." ;;
	already_migrated) say "ALREADY MIGRATED: the target is primary (nothing to do)." ;;
	rolled_back) say "ROLLED BACK: the application is on the source again; nothing was lost." ;;
	unfit) say "UNFIT: fix what the preflight says, then run again." ;;
	interrupted) say "INTERRUPTED: run again to continue." ;;
	*) say "FAILED: $msg" ;;
	esac
	human_bytes "${bytes:-0}"
	say "  rows copied        ${rows:-0} ($REPLY)"
	[[ -n "${LAG_BYTES:-}" ]] && { human_bytes "$LAG_BYTES"; say "  lag at cutover     $REPLY (a probe took ${LAG_MS} ms)"; }
	[[ -n "${VALIDATION:-}" ]] && say "  validation         $VALIDATION_TEXT"
	[[ -n "$pause" ]] && say "  write pause        $pause ms"
	if [[ -n "${ROLLBACK_LINE:-}" ]]; then
		json_field "$ROLLBACK_LINE" pause_ms
		[[ -n "$REPLY" ]] && say "  rollback pause     $REPLY ms"
	fi
	[[ -n "${CHECKS_RUN:-}" ]] && say "  post-switch checks ${CHECKS_RUN} run, ${CHECKS_FAILED:-0} failed"
	say "  run log            $RUN_LOG"
	exit "$rc"
}

# fail_run STEP EXIT MESSAGE: the step failed; summary; exit.
fail_run()
{
	step_failed "$1" "$2" "$3"
	finish failed "$2" "$1: $3"
}

# ---------------------------------------------------------------- signals
# Ctrl-C or SIGTERM: a copy or a comparison is stopped (the next run
# resumes it); a freeze, switch or rollback under way is let finish, then
# the run stops where it is (a cutover half done is undone first).
INTERRUPTED=
CRITICAL=
on_signal()
{
	INTERRUPTED=1
	[[ -n "$CRITICAL" ]] && return
	job_signal TERM
}
trap on_signal INT TERM HUP

# interrupted STEP: stop here if asked to.
check_interrupt()
{
	[[ -n "$INTERRUPTED" ]] || return 0
	step "$1" failed '"exit":130,"message":"interrupted"'
	finish interrupted 130 "interrupted during $1"
}

# ---------------------------------------------------------------- preflight
CHECK_FAIL=0
CHECK_WARN=0

# check NAME STATUS MESSAGE: one check line (report and run log).
check()
{
	local name=$1 status=$2 msg=$3 line
	if [[ $status == fail && ",$DBM_SKIP_CHECKS," == *",$name,"* ]]; then
		status=warn
		msg+=" (failure ignored: DBM_SKIP_CHECKS)"
	fi
	case $status in
	fail) CHECK_FAIL=$((CHECK_FAIL + 1)) ;;
	warn) CHECK_WARN=$((CHECK_WARN + 1)) ;;
	esac
	json_str "$msg"
	emit "{\"type\":\"check\",\"check\":\"$name\",\"status\":\"$status\",\"run\":\"$RUN_ID\",\"message\":$REPLY}"
	printf -v line '  %-5s %-14s %s' "${status^^}" "$name" "$msg"
	say "$line"
}

USER_SCHEMAS="n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'dbm')"

preflight()
{
	local out sv dv a b c d e f g need free rate size hold missing bad err
	step preflight started
	say "preflight"
	# connections and versions
	if ! sv=$(q_src "SELECT current_setting('server_version_num')" 2>"$STATE/preflight.err"); then
		first_error "$STATE/preflight.err"
		check connect fail "source: $REPLY"
	fi
	if ! dv=$(q_dst "SELECT current_setting('server_version_num')" 2>"$STATE/preflight.err"); then
		first_error "$STATE/preflight.err"
		check connect fail "target: $REPLY"
	fi
	if ((CHECK_FAIL > 0)); then
		step preflight failed "\"exit\":1,\"failed\":$CHECK_FAIL,\"warnings\":$CHECK_WARN"
		return 1
	fi
	out=$(pg_dump --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
	if ((sv < 120000)); then
		check version fail "the source runs PostgreSQL $((sv / 10000)); 12 or later is needed"
	elif ((out < sv / 10000)); then
		check version fail "pg_dump $out is older than the source ($((sv / 10000))): install postgresql-client-$((sv / 10000))"
	elif ((dv / 10000 < sv / 10000)); then
		check version warn "the target runs PostgreSQL $((dv / 10000)), older than the source ($((sv / 10000))): the schema may not load"
	else
		check version ok "source $((sv / 10000)), target $((dv / 10000)), pg_dump $out"
	fi

	# wal_level: logical on both (the target for the reverse stream)
	a=$(q_src "SHOW wal_level")
	b=$(q_dst "SHOW wal_level")
	if [[ "$a" != logical || "$b" != logical ]]; then
		check wal_level fail "source $a, target $b: both need wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart; the target's carries the writes back on a rollback)"
	else
		check wal_level ok "logical on both"
	fi

	copy_state
	# replication slots and WAL senders: free ones for what is still to be made
	IFS='|' read -r a b c d <<<"$(q_src "SELECT current_setting('max_replication_slots'),
		(SELECT count(*) FROM pg_replication_slots), current_setting('max_wal_senders'),
		(SELECT count(*) FROM pg_stat_replication)")"
	need=0
	[[ -z "$SLOT_HERE" ]] && need=1
	[[ "$COPY_STATE" == partial ]] && need=$((need + 1)) # --resume reads in a temporary slot
	e=$(q_dst "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$DBM_REVERSE_SLOT'")
	IFS='|' read -r f g <<<"$(q_dst "SELECT current_setting('max_replication_slots'),
		(SELECT count(*) FROM pg_replication_slots)")"
	if ((a - b < need)); then
		check slots fail "the source has $b of max_replication_slots = $a in use; $need more needed (raise it, then restart)"
	elif [[ "$e" == 0 ]] && ((f - g < 1)); then
		check slots fail "the target has $g of max_replication_slots = $f in use; 1 more needed for the reverse stream"
	else
		check slots ok "source $b of $a in use ($need to make), target $g of $f"
	fi
	IFS='|' read -r f g <<<"$(q_dst "SELECT current_setting('max_wal_senders'),
		(SELECT count(*) FROM pg_stat_replication)")"
	# a sender for each apply that does not stream yet
	a=$(q_src "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$DBM_SLOT' AND active")
	b=$(q_dst "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$DBM_REVERSE_SLOT' AND active")
	if ((c - d < 1 - a)); then
		check wal_senders fail "the source has $d of max_wal_senders = $c in use; the apply needs 1"
	elif ((f - g < 1 - b)); then
		check wal_senders fail "the target has $g of max_wal_senders = $f in use; the reverse apply needs 1"
	else
		check wal_senders ok "source $d of $c in use, target $g of $f"
	fi

	# every table needs a key for updates and deletes to be carried over
	bad=$(q_src "SELECT format('%I.%I', n.nspname, c.relname) || CASE
			WHEN c.relpersistence = 'u' THEN ' (unlogged: not replicated; ALTER TABLE ... SET LOGGED)'
			ELSE ' (no primary key or replica identity: add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL)' END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND $USER_SCHEMAS AND (c.relpersistence = 'u'
		   OR c.relreplident = 'n'
		   OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i
		        WHERE i.indrelid = c.oid AND i.indisprimary))
		   OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i
		        WHERE i.indrelid = c.oid AND i.indisreplident)))
		ORDER BY 1")
	a=$(q_src "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND $USER_SCHEMAS")
	if [[ -n "$bad" ]]; then
		check keys fail "$(grep -c . <<<"$bad") of $a tables cannot be replicated: ${bad//$'\n'/; }"
	else
		check keys ok "all $a tables have a primary key or replica identity"
	fi

	# sequences: read on the source, set on the target at the switch
	IFS='|' read -r a b <<<"$(q_src "SELECT count(*),
		string_agg(format('%I.%I', n.nspname, c.relname), ', ') FILTER (WHERE NOT has_sequence_privilege(c.oid, 'SELECT'))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND $USER_SCHEMAS")"
	if [[ -n "$b" ]]; then
		check sequences fail "cannot read $b on the source (GRANT SELECT ON SEQUENCE ...)"
	else
		check sequences ok "$a sequences, copied to the target at the switch (back at a rollback)"
	fi

	# privileges
	IFS='|' read -r a b c d e f <<<"$(q_src "SELECT rolsuper, rolreplication,
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '$DBM_SLOT'),
		has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE'),
		(SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ')
		 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r', 'p') AND $USER_SCHEMAS AND NOT has_table_privilege(c.oid, 'SELECT'))
		FROM pg_roles WHERE rolname = current_user")"
	missing=()
	[[ "$a" == t || "$b" == t ]] || missing+=("REPLICATION (ALTER ROLE ... REPLICATION)")
	[[ "$a" == t || "$d" == t ]] || missing+=("superuser to create the publication $DBM_SLOT FOR ALL TABLES (or have one created)")
	[[ "$c" == t ]] || missing+=("CREATE on the database (schema dbm)")
	[[ "$e" == t ]] || missing+=("replication origins for the reverse apply (GRANT EXECUTE ON FUNCTION pg_replication_origin_*)")
	[[ -z "$f" ]] || missing+=("SELECT on $f")
	IFS='|' read -r a b c d e <<<"$(q_dst "SELECT rolsuper, rolreplication,
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '$DBM_REVERSE_SLOT'),
		has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE')
		FROM pg_roles WHERE rolname = current_user")"
	[[ "$a" == t || "$b" == t ]] || missing+=("target: REPLICATION for the reverse slot")
	[[ "$a" == t || "$d" == t ]] || missing+=("target: superuser to create the publication $DBM_REVERSE_SLOT FOR ALL TABLES")
	[[ "$c" == t ]] || missing+=("target: CREATE on the database")
	[[ "$e" == t ]] || missing+=("target: replication origins for the apply")
	if [[ ${#missing[@]} -gt 0 ]]; then
		local IFS=';'
		check privileges fail "missing: ${missing[*]}"
	elif [[ "$a" != t ]]; then
		check privileges warn "the target user is not a superuser: the schema must be loadable by it (object owners)"
	else
		check privileges ok "the users can replicate, read every table and create what is needed"
	fi

	# extensions used on the source must be available on the target
	a=$(q_src "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
	if [[ -n "$a" ]]; then
		b=$(q_dst "SELECT name FROM pg_available_extensions")
		missing=()
		while IFS= read -r c; do
			grep -qxF "$c" <<<"$b" || missing+=("$c")
		done <<<"$a"
		if [[ ${#missing[@]} -gt 0 ]]; then
			check extensions fail "not available on the target server: ${missing[*]} (install their packages there)"
		else
			check extensions ok "$(grep -c . <<<"$a") in use, all available on the target: ${a//$'\n'/, }"
		fi
	else
		check extensions ok "none besides plpgsql"
	fi

	# roles that own objects must exist on the target
	a=$(q_src "SELECT DISTINCT pg_get_userbyid(o) FROM (
		SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $USER_SCHEMAS
		UNION SELECT n.nspowner FROM pg_namespace n WHERE $USER_SCHEMAS AND n.nspname <> 'public'
		UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE $USER_SCHEMAS
		UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE $USER_SCHEMAS
		) x(o) ORDER BY 1")
	b=$(q_dst "SELECT rolname FROM pg_roles")
	missing=()
	while IFS= read -r c; do
		[[ -z "$c" ]] || grep -qxF "$c" <<<"$b" || missing+=("$c")
	done <<<"$a"
	if [[ ${#missing[@]} -gt 0 ]]; then
		check roles fail "roles owning objects are missing on the target: ${missing[*]} (pg_dumpall --roles-only | psql)"
	else
		check roles ok "every owner exists on the target"
	fi

	# the target: empty, or holding this migration's own work
	a=$(q_dst "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND $USER_SCHEMAS")
	if [[ -n "$SLOT_ELSEWHERE" ]]; then
		check target fail "a replication slot \"$DBM_SLOT\" exists on the source cluster for database $SLOT_ELSEWHERE: choose another DBM_SLOT"
	elif [[ "$COPY_STATE" != none && -z "$SLOT_HERE" ]]; then
		check target fail "the target holds a copy, but the source has no slot \"$DBM_SLOT\" any more, so the changes since the copy are lost: recreate the target database and run again"
	elif [[ "$COPY_STATE" == none && -n "$SLOT_HERE" ]]; then
		check target fail "slot \"$DBM_SLOT\" exists on the source but the target has no copy from it: drop the slot (SELECT pg_drop_replication_slot('$DBM_SLOT')) if it is a leftover, or choose another DBM_SLOT"
	elif [[ "$a" != 0 ]] && ! step_marked pre-data; then
		check target fail "the target database is not empty ($a relations): give an empty database"
	elif [[ "$COPY_STATE" == none ]]; then
		check target ok "empty"
	else
		check target ok "holds this migration's copy ($COPY_STATE), slot \"$DBM_SLOT\" on the source"
	fi

	# free disk for the WAL the slot holds back while the copy and the
	# index builds run: WAL rate x (3 x copy time + 30 min)
	IFS='|' read -r size rate a <<<"$(q_src "SELECT pg_database_size(current_database()),
		greatest(coalesce((SELECT (wal_bytes / greatest(extract(epoch FROM now() - stats_reset), 1))::bigint
		                   FROM pg_stat_wal), 0), 0),
		current_setting('max_slot_wal_keep_size')" 2>/dev/null)"
	if [[ "$COPY_STATE" != done ]]; then
		# the rate now, not only since the statistics were reset
		c=$(psql_on "$DBM_SOURCE" -f - 2>/dev/null <<-'EOF'
			SELECT pg_current_wal_lsn() AS l, pg_sleep(0.25) AS s \gset
			SELECT (pg_wal_lsn_diff(pg_current_wal_lsn(), :'l') * 4)::bigint;
		EOF
		)
		((${c:-0} > ${rate:-0})) && rate=$c
	fi
	hold=$((3 * ${size:-0} / (DBM_COPY_MBPS * 1048576) + 1800))
	need=$((${rate:-0} * hold))
	free=$(psql_on "$DBM_SOURCE" -c "BEGIN" \
		-c "CREATE TEMP TABLE dbm_df (line text) ON COMMIT DROP" \
		-c "COPY dbm_df FROM PROGRAM 'df -Pk pg_wal'" \
		-c "SELECT split_part(regexp_replace(line, '\s+', ' ', 'g'), ' ', 4) FROM dbm_df OFFSET 1" \
		-c "COMMIT" 2>/dev/null | grep -E '^[0-9]+$')
	human_bytes "$need"
	d=$REPLY
	if [[ -z "$free" ]]; then
		check disk warn "free disk for pg_wal not measured (needs superuser or pg_execute_server_program on the source); estimated need $d"
	else
		free=$((free * 1024))
		human_bytes "$free"
		if ((free < need)); then
			check disk fail "the source's pg_wal has $REPLY free; the slot may retain about $d while the copy runs (WAL rate x (3 x copy time + 30 min))"
		elif [[ "$a" != -1 && "$a" =~ ^([0-9]+)MB$ ]] && ((BASH_REMATCH[1] * 1048576 < need)); then
			check disk warn "max_slot_wal_keep_size = $a, below the $d the slot may retain: the slot could be invalidated"
		else
			check disk ok "$REPLY free for pg_wal, about $d retained at most"
		fi
	fi

	# the router
	if [[ $ROUTER == pgbouncer ]]; then
		if ! out=$(psql -X -A -q -F '|' -d "$DBM_PGBOUNCER_ADMIN" -c 'SHOW DATABASES' 2>"$STATE/preflight.err" </dev/null); then
			first_error "$STATE/preflight.err"
			check router fail "pgbouncer console: $REPLY"
		else
			a=$(awk -F'|' -v db="$DBM_PGBOUNCER_DB" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
				$1 == db { print $c["host"] "|" $c["port"] "|" $c["pool_mode"] "|" $c["paused"] }' <<<"$out")
			b=$(psql -X -A -t -q -F '|' -d "$DBM_PGBOUNCER_ADMIN" -c 'SHOW CONFIG' 2>/dev/null </dev/null |
				awk -F'|' '$1 == "pool_mode" { print $2 }')
			IFS='|' read -r c d e f <<<"$a"
			[[ -n "$e" ]] || e=$b
			if [[ -z "$a" ]]; then
				check router fail "pgbouncer has no database entry \"$DBM_PGBOUNCER_DB\""
			elif [[ ! -w "$DBM_PGBOUNCER_INI" || ! -w "$(dirname "$DBM_PGBOUNCER_INI")" ]]; then
				check router fail "cannot rewrite \"$DBM_PGBOUNCER_INI\" (the file and its directory must be writable)"
			elif ! grep -qE "^[[:space:]]*\"?$DBM_PGBOUNCER_DB\"?[[:space:]]*=" "$DBM_PGBOUNCER_INI"; then
				check router fail "\"$DBM_PGBOUNCER_INI\" has no line for \"$DBM_PGBOUNCER_DB\""
			elif [[ "$e" == session ]]; then
				check router warn "pgbouncer entry $DBM_PGBOUNCER_DB uses pool_mode = session: PAUSE waits for clients to disconnect (transaction pooling pauses in milliseconds)"
			else
				check router ok "pgbouncer entry $DBM_PGBOUNCER_DB -> $c:$d ($e pooling)"
			fi
		fi
	else
		IFS='|' read -r a b <<<"$(q_src "SELECT rolsuper, pg_get_userbyid(datdba) = current_user
			FROM pg_roles, pg_database WHERE rolname = current_user AND datname = current_database()")"
		if [[ "$a" != t && "$b" != t ]]; then
			check router fail "the read-only freeze needs the source user to own the database (ALTER DATABASE ... SET default_transaction_read_only)"
		else
			check router ok "DBM_ROUTE_CMD repoints; the source is frozen read-only"
		fi
	fi
	if ((CHECK_FAIL > 0)); then
		step preflight failed "\"exit\":1,\"failed\":$CHECK_FAIL,\"warnings\":$CHECK_WARN"
		return 1
	fi
	step preflight done "\"failed\":0,\"warnings\":$CHECK_WARN"
	return 0
}

# ---------------------------------------------------------------- steps

pre_data_job()
{
	pg_dump --section=pre-data --no-publications --no-subscriptions --exclude-schema=dbm \
		-f "$STATE/pre-data.sql" "$DBM_SOURCE" || return
	# one transaction, with the marker: all of the schema or none of it
	{
		echo 'BEGIN;'
		cat "$STATE/pre-data.sql"
		marker_sql pre-data
		echo 'COMMIT;'
	} | PGAPPNAME=dbm-migrate psql -X -q -v ON_ERROR_STOP=1 -d "$DBM_TARGET" >/dev/null
}

do_pre_data()
{
	local a
	if step_marked pre-data; then
		report pre-data "loaded before"
		return
	fi
	step pre-data started
	job_run pre-data pre_data_job
	check_interrupt pre-data
	if [[ $JOB_RC -ne 0 ]]; then
		first_error "$STATE/jobs/pre-data.err"
		fail_run pre-data 2 "$REPLY"
	fi
	a=$(q_dst "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND $USER_SCHEMAS")
	step pre-data done "\"tables\":$a"
	secs "$((NOW_MS - STEP_T0[pre-data]))"
	report pre-data "schema loaded: $a tables ($REPLY)"
}

do_copy()
{
	local args=() line rows bytes lsn
	copy_state || fail_run copy 2 "could not read the copy state"
	if [[ "$COPY_STATE" == done && -n "$SLOT_HERE" ]]; then
		report copy "done before"
		return
	fi
	[[ "$COPY_STATE" == partial ]] && args=(--resume)
	step copy started "\"resume\":$([[ -n "${args[*]}" ]] && echo true || echo false)"
	[[ -n "${args[*]}" ]] && report copy "resuming the copy cut short"
	job_run copy dbm-snapshot --source="$DBM_SOURCE" --target="$DBM_TARGET" --slot="$DBM_SLOT" \
		--jobs="$DBM_JOBS" "${args[@]}"
	check_interrupt copy
	line=$(grep -m 1 '^{"type":"done"' "$STATE/jobs/copy.out" 2>/dev/null)
	if [[ $JOB_RC -ne 0 || -z "$line" ]]; then
		first_error "$STATE/jobs/copy.err"
		fail_run copy "$((JOB_RC == 0 ? 2 : JOB_RC))" "$REPLY"
	fi
	IFS='|' read -r rows bytes lsn < <(jq -r '"\(.rows)|\(.bytes)|\(.lsn)"' <<<"$line")
	step copy done "\"slot\":\"$DBM_SLOT\",\"lsn\":\"$lsn\",\"rows\":$rows,\"bytes\":$bytes"
	human_bytes "$bytes"
	local b=$REPLY
	secs "$((NOW_MS - STEP_T0[copy]))"
	report copy "$rows rows ($b) in $REPLY, slot $DBM_SLOT from $lsn"
}

# The post-data section of the schema, without what exists on the target
# already (a run cut short may have built some of it).
post_data_job()
{
	pg_dump -Fc --section=post-data --no-publications --no-subscriptions --exclude-schema=dbm \
		-f "$STATE/post-data.dump" "$DBM_SOURCE" || return
	pg_restore -l "$STATE/post-data.dump" >"$STATE/post-data.toc" || return
	psql_on "$DBM_TARGET" >"$STATE/post-data.have" -c "
		SELECT 'INDEX ' || n.nspname || ' ' || c.relname FROM pg_index i
		  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE $USER_SCHEMAS
		UNION ALL
		SELECT CASE WHEN k.contype = 'f' THEN 'FK CONSTRAINT ' ELSE 'CONSTRAINT ' END
		       || n.nspname || ' ' || c.relname || ' ' || k.conname FROM pg_constraint k
		  JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE $USER_SCHEMAS
		UNION ALL
		SELECT 'TRIGGER ' || n.nspname || ' ' || c.relname || ' ' || t.tgname FROM pg_trigger t
		  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE NOT t.tgisinternal AND $USER_SCHEMAS
		UNION ALL
		SELECT 'INDEX ATTACH ' || n.nspname || ' ' || c.relname FROM pg_inherits h
		  JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE c.relkind IN ('i', 'I') AND $USER_SCHEMAS
		UNION ALL
		SELECT 'RULE ' || n.nspname || ' ' || c.relname || ' ' || r.rulename FROM pg_rewrite r
		  JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE r.rulename <> '_RETURN' AND $USER_SCHEMAS
		UNION ALL
		SELECT 'POLICY ' || n.nspname || ' ' || c.relname || ' ' || p.polname FROM pg_policy p
		  JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		  WHERE $USER_SCHEMAS" || return
	# a TOC line is "ID; OID OID TYPE SCHEMA NAME... OWNER": without the
	# numbers and the owner it is a key of the list above
	awk 'FILENAME == ARGV[1] { have[$0] = 1; next }
		/^;/ { print; next }
		{
			k = $0; sub(/^[0-9]+; [0-9]+ [0-9]+ /, "", k); sub(/ [^ ]*$/, "", k)
			if (k in have) { print ";" $0; skipped++ } else print
		}
		END { print skipped + 0 > "/dev/stderr" }' \
		"$STATE/post-data.have" "$STATE/post-data.toc" >"$STATE/post-data.list" \
		2>"$STATE/post-data.skipped" || return
	pg_restore -j "$DBM_JOBS" --exit-on-error -L "$STATE/post-data.list" -d "$DBM_TARGET" \
		"$STATE/post-data.dump" || return
	vacuumdb --analyze-only --jobs="$DBM_JOBS" --quiet --dbname="$DBM_TARGET" || return
	marker_sql post-data | psql_on "$DBM_TARGET" -f - >/dev/null
}

do_post_data()
{
	local n skipped
	if step_marked post-data; then
		report post-data "built before"
		return
	fi
	step post-data started
	job_run post-data post_data_job
	check_interrupt post-data
	if [[ $JOB_RC -ne 0 ]]; then
		first_error "$STATE/jobs/post-data.err"
		fail_run post-data 2 "$REPLY"
	fi
	n=$(grep -cE '^[0-9]+;' "$STATE/post-data.list" 2>/dev/null)
	skipped=$(cat "$STATE/post-data.skipped" 2>/dev/null)
	step post-data done "\"objects\":${n:-0},\"existing\":${skipped:-0}"
	secs "$((NOW_MS - STEP_T0[post-data]))"
	report post-data "${n:-0} indexes, constraints and triggers built, then ANALYZE ($REPLY)"
}

APPLIER_RESTARTS=0

# ensure_forward: the forward apply runs (started again when it died, at
# most 3 times a run).
ensure_forward()
{
	if applier_alive forward; then
		APPLIER_PID=$PID APPLIER_STARTED=
		return 0
	fi
	if ((APPLIER_RESTARTS > 0)); then
		applier_error forward
		warn "the forward apply stopped: $REPLY"
		((APPLIER_RESTARTS >= 3)) && fail_run "$1" 2 "the forward apply keeps stopping: $REPLY"
	fi
	APPLIER_RESTARTS=$((APPLIER_RESTARTS + 1))
	applier_ensure forward || fail_run "$1" 2 "the forward apply does not start: ${APPLIER_ERROR:-no message}"
}

do_apply()
{
	step apply started
	ensure_forward apply
	step apply done "\"pid\":$APPLIER_PID,\"started\":$([[ -n "$APPLIER_STARTED" ]] && echo true || echo false)"
	report apply "forward apply $([[ -n "$APPLIER_STARTED" ]] && echo started || echo running) (pid $APPLIER_PID, $STATE/forward.log)"
}

# A probe row on the source (dbm.barrier id 0, the table the cutover
# tools use) shows when the apply has reached the present: then the lag
# is the WAL written since what the target applied.
do_catchup()
{
	local deadline token i seen t0 out applied now_lsn last_say=0
	step catch-up started
	q_src "CREATE SCHEMA IF NOT EXISTS dbm;
		CREATE TABLE IF NOT EXISTS dbm.barrier (id bigint PRIMARY KEY, kind text NOT NULL,
		    at timestamptz NOT NULL DEFAULT now())" >/dev/null 2>"$STATE/catchup.err" ||
		{ first_error "$STATE/catchup.err"; fail_run catch-up 2 "$REPLY"; }
	now_ms
	deadline=$((NOW_MS + ${DBM_CATCHUP_TIMEOUT%.*} * 1000))
	for ((i = 1; ; i++)); do
		check_interrupt catch-up
		ensure_forward catch-up
		token="probe $RUN_ID $i"
		now_ms
		t0=$NOW_MS
		PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=on" \
			q_src "INSERT INTO dbm.barrier (id, kind) VALUES (0, '$token')
			ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, at = now()" >/dev/null 2>"$STATE/catchup.err" ||
			{ first_error "$STATE/catchup.err"; fail_run catch-up 2 "$REPLY"; }
		seen=
		while :; do
			out=$(q_dst "SELECT (SELECT kind FROM dbm.barrier WHERE id = 0) = '$token',
				(SELECT lsn FROM dbm.apply_position WHERE stream = '$DBM_SLOT')" 2>/dev/null)
			now_ms
			if [[ "$out" == t\|* ]]; then
				seen=1
				applied=${out#t|}
				break
			fi
			((NOW_MS - t0 > 5000 || NOW_MS > deadline)) && break
			check_interrupt catch-up
			applier_alive forward || break
			sleep 0.02
		done
		if [[ -n "$seen" ]]; then
			LAG_MS=$((NOW_MS - t0))
			LAG_BYTES=$(q_src "SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), '$applied'), 0)::bigint")
			if ((LAG_BYTES <= DBM_MAX_LAG_BYTES)); then
				step catch-up done "\"lag_bytes\":$LAG_BYTES,\"lag_ms\":$LAG_MS,\"probes\":$i"
				human_bytes "$LAG_BYTES"
				report catch-up "lag $REPLY (a probe row reached the target in $LAG_MS ms)"
				return
			fi
		fi
		if ((NOW_MS > deadline)); then
			LAG_BYTES=${LAG_BYTES:-0} LAG_MS=${LAG_MS:-0}
			step_failed catch-up 1 "the target is still behind after ${DBM_CATCHUP_TIMEOUT} s (DBM_CATCHUP_TIMEOUT); nothing was switched"
			finish failed 1 "the target did not catch up"
		fi
		if ((NOW_MS - last_say >= 10000)); then
			last_say=$NOW_MS
			if [[ -n "$seen" ]]; then
				human_bytes "$LAG_BYTES"
				report catch-up "lag $REPLY, catching up..."
			else
				report catch-up "waiting for the apply to reach the present..."
			fi
		fi
		sleep 1
	done
}

VALIDATION=
VALIDATION_TEXT=

do_validate()
{
	local summary m x c u t e
	if [[ "$DBM_VALIDATE" == 0 ]]; then
		VALIDATION=skipped VALIDATION_TEXT="skipped (DBM_VALIDATE=0)"
		report validate "skipped (DBM_VALIDATE=0)"
		return
	fi
	step validate started
	job_run validate dbm-diff --source="$DBM_SOURCE" --target="$DBM_TARGET" -j "$DBM_JOBS" \
		--recheck="$DBM_RECHECK" --recheck-wait="$DBM_RECHECK_WAIT"
	check_interrupt validate
	cp "$STATE/jobs/validate.out" "$STATE/validate.jsonl" 2>/dev/null
	summary=$(grep '^{"type":"summary"' "$STATE/jobs/validate.out" 2>/dev/null | tail -n 1)
	if [[ $JOB_RC -gt 1 || -z "$summary" ]]; then
		first_error "$STATE/jobs/validate.err"
		fail_run validate 2 "dbm-diff: $REPLY"
	fi
	IFS='|' read -r t e m x c u < <(jq -r '"\(.tables)|\(.equal)|\(.rows_missing)|\(.rows_extra)|\(.rows_changed)|\(.rows_unstable // 0)"' <<<"$summary")
	if ((m + x + c > 0)); then
		VALIDATION=different
		VALIDATION_TEXT="different: $m rows missing on the target, $x extra, $c changed ($STATE/validate.jsonl)"
		step_failed validate 1 "the data differ: $m rows missing, $x extra, $c changed (see $STATE/validate.jsonl); nothing was switched" \
			"\"tables\":$t,\"rows_missing\":$m,\"rows_extra\":$x,\"rows_changed\":$c,\"rows_unstable\":$u"
		finish failed 1 "the data differ"
	fi
	VALIDATION=equal
	VALIDATION_TEXT="equal: $t tables"
	((u > 0)) && VALIDATION_TEXT+=" ($u rows changing under load, in flight)"
	step validate done "\"result\":\"equal\",\"tables\":$t,\"rows_unstable\":$u"
	secs "$((NOW_MS - STEP_T0[validate]))"
	report validate "$VALIDATION_TEXT ($REPLY)"
}

# The reverse stream, made ready before the freeze: dbm-switch then finds
# the publication and slot, and the reverse apply already streams (its
# own origin and the forward one's keep the two streams from echoing).
do_prepare()
{
	local err=$STATE/prepare.err
	step prepare started
	q_dst "DO \$\$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '$DBM_REVERSE_SLOT') THEN
			CREATE PUBLICATION $DBM_REVERSE_SLOT FOR ALL TABLES WITH (publish_via_partition_root = true);
		END IF; END \$\$" >/dev/null 2>"$err" ||
		{ first_error "$err"; fail_run prepare 2 "$REPLY"; }
	if [[ "$(q_dst "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$DBM_REVERSE_SLOT'")" == 0 ]]; then
		q_dst "SELECT pg_create_logical_replication_slot('$DBM_REVERSE_SLOT', 'pgoutput')" >/dev/null 2>"$err" ||
			{ first_error "$err"; fail_run prepare 2 "$REPLY"; }
	fi
	if [[ $DBM_FREEZE_METHOD == readonly ]]; then
		# a read-only rollback left the target read-only (a fence while the
		# source is primary); dbm-switch does not undo that, so the
		# application would find the target read-only: undo it now, before
		# the freeze, while the application is on the source
		# (and end the sessions that took it: they would refuse writes)
		dbm-freeze --source="$DBM_TARGET" --readonly --thaw >/dev/null 2>"$err" ||
			{ first_error "$err"; fail_run prepare 2 "$REPLY"; }
	fi
	applier_ensure reverse || fail_run prepare 2 "the reverse apply does not start: ${APPLIER_ERROR:-no message}"
	step prepare done "\"reverse_slot\":\"$DBM_REVERSE_SLOT\",\"pid\":$APPLIER_PID"
	report prepare "reverse slot $DBM_REVERSE_SLOT on the target, reverse apply running (pid $APPLIER_PID)"
}

SWITCH_PAUSE_MS=

do_cutover()
{
	local line args=() extra
	ensure_forward freeze
	router_args
	# ---- freeze
	if [[ $DBM_FREEZE_METHOD == pgbouncer ]]; then
		args=(--pgbouncer="$DBM_PGBOUNCER_ADMIN" --database="$DBM_PGBOUNCER_DB")
	else
		args=(--readonly)
	fi
	CRITICAL=1
	step freeze started "\"method\":\"$DBM_FREEZE_METHOD\""
	# the barrier is committed with synchronous_commit on (see sync_commit)
	sync_commit "$DBM_SOURCE"
	job_run freeze dbm-freeze --source="$REPLY" "${args[@]}" --timeout="$DBM_FREEZE_TIMEOUT"
	line=$(grep -m 1 '^{"type":"frozen"' "$STATE/jobs/freeze.out" 2>/dev/null)
	if [[ $JOB_RC -ne 0 || -z "$line" ]]; then
		first_error "$STATE/jobs/freeze.err"
		local msg=$REPLY rc=$JOB_RC
		CRITICAL=
		if [[ $rc -eq 1 ]]; then
			job_forget freeze
			step_failed freeze 1 "$msg: writes went on, nothing changed; try again when fewer long transactions run"
			finish failed 1 "the freeze could not drain"
		fi
		# an error may leave clients paused: go back
		do_rollback "the freeze failed"
		fail_run freeze 2 "$msg"
	fi
	# no fork between the freeze and the switch: clients are waiting
	json_field "$line" lsn
	local flsn=$REPLY
	json_field "$line" barrier
	local fbar=$REPLY
	json_field "$line" drain_ms
	FROZEN_DRAIN=${REPLY:-0}
	step freeze done "\"lsn\":\"$flsn\",\"barrier\":$fbar,\"drain_ms\":$FROZEN_DRAIN"
	# ---- switch
	step switch started
	job_run switch dbm-switch --source="$DBM_SOURCE" --target="$DBM_TARGET" \
		--freeze="$STATE/jobs/freeze.out" "${ROUTER_ARGS[@]}" --stream="$DBM_SLOT" \
		--reverse-slot="$DBM_REVERSE_SLOT" --reverse-publication="$DBM_REVERSE_SLOT" \
		--timeout="$DBM_SWITCH_TIMEOUT"
	line=$(grep -m 1 '^{"type":"switched"' "$STATE/jobs/switch.out" 2>/dev/null)
	if [[ $JOB_RC -ne 0 || -z "$line" ]]; then
		first_error "$STATE/jobs/switch.err"
		local msg=$REPLY rc=$JOB_RC
		[[ $rc -eq 0 ]] && rc=2
		step_failed switch "$rc" "$msg"
		# back to the source: thawed before the switch, rolled back after
		do_rollback "the switch failed"
		CRITICAL=
		if [[ $ROLLBACK_RC -eq 0 ]]; then
			finish rolled_back "$rc" "the switch failed ($msg); the application stays on the source"
		fi
		finish failed 2 "the switch failed ($msg) and so did the way back: see $RUN_LOG"
	fi
	cp "$STATE/jobs/switch.out" "$STATE/switched.json"
	SWITCH_PAUSE_MS=$(jq '.pause_ms' <<<"$line")
	extra=$(jq -r '"\"pause_ms\":\(.pause_ms),\"freeze_lsn\":\"\(.freeze_lsn)\",\"sequences\":\(.sequences),\"router\":\"\(.router)\""' <<<"$line")
	step switch done "$extra"
	job_forget freeze
	CRITICAL=
	report freeze "writes paused ($DBM_FREEZE_METHOD), drained in $FROZEN_DRAIN ms, barrier at $(jq -r .freeze_lsn <<<"$line")"
	report switch "switched: write pause $SWITCH_PAUSE_MS ms, $(jq -r .sequences <<<"$line") sequences copied, $ROUTER now points at the target"
	check_interrupt switch
}

do_reverse()
{
	step reverse started
	applier_ensure reverse || {
		step_failed reverse 2 "the reverse apply does not start: ${APPLIER_ERROR:-no message}"
		warn "without the reverse apply a rollback cannot carry the target's writes back: fix it and run again"
		finish failed 2 "the target is primary, but the reverse apply does not run"
	}
	step reverse done "\"pid\":$APPLIER_PID"
	report reverse "reverse apply running (pid $APPLIER_PID): rollback.sh can go back without losing a write"
}

# ---------------------------------------------------------------- watch

CHECKS_RUN=0
CHECKS_FAILED=0

# check_line NAME STATUS MS MESSAGE
check_line()
{
	json_str "$4"
	emit "{\"type\":\"check\",\"phase\":\"watch\",\"check\":\"$1\",\"status\":\"$2\",\"run\":\"$RUN_ID\",\"ms\":$3,\"message\":$REPLY}"
}

# run_checks: the smoke query through the application's connection (which
# must reach the target), and the user's command; false when one failed,
# the reason in CHECK_MSG.
run_checks()
{
	local t0 out want ok=0 err=$STATE/check.err
	CHECK_MSG=
	CHECKS_RUN=$((CHECKS_RUN + 1))
	now_ms
	t0=$NOW_MS
	if [[ -n "$DBM_APP_CONNINFO" ]]; then
		want=$(q_dst "SELECT pg_postmaster_start_time() || ' ' || current_database()" 2>/dev/null)
		out=$(PGAPPNAME=dbm-check timeout "$DBM_CHECK_TIMEOUT" psql -X -A -t -q -v ON_ERROR_STOP=1 \
			-d "$DBM_APP_CONNINFO" -c "$DBM_SMOKE_QUERY" \
			-c "SELECT pg_postmaster_start_time() || ' ' || current_database()" </dev/null 2>"$err")
		local rc=$?
		now_ms
		if [[ $rc -ne 0 ]]; then
			first_error "$err"
			[[ $rc -eq 124 ]] && REPLY="no answer within ${DBM_CHECK_TIMEOUT} s"
			CHECK_MSG="smoke query: $REPLY"
			check_line smoke fail $((NOW_MS - t0)) "$REPLY"
			ok=1
		elif [[ -n "$want" && "${out##*$'\n'}" != "$want" ]]; then
			CHECK_MSG="smoke query: the application's connection does not reach the target"
			check_line smoke fail $((NOW_MS - t0)) "the application's connection does not reach the target"
			ok=1
		else
			check_line smoke ok $((NOW_MS - t0)) "$DBM_SMOKE_QUERY"
		fi
	else
		out=$(timeout "$DBM_CHECK_TIMEOUT" psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DBM_TARGET" \
			-c "$DBM_SMOKE_QUERY" </dev/null 2>"$err")
		local rc=$?
		now_ms
		if [[ $rc -ne 0 ]]; then
			first_error "$err"
			CHECK_MSG="smoke query: $REPLY"
			check_line smoke fail $((NOW_MS - t0)) "$REPLY"
			ok=1
		else
			check_line smoke ok $((NOW_MS - t0)) "$DBM_SMOKE_QUERY (on the target; set DBM_APP_CONNINFO to check the application's path)"
		fi
	fi
	if [[ $ok -eq 0 && -n "$DBM_CHECK_CMD" ]]; then
		t0=$NOW_MS
		DBM_ROUTE_TO=target timeout "$DBM_CHECK_TIMEOUT" bash -c "$DBM_CHECK_CMD" \
			</dev/null >"$STATE/check-cmd.out" 2>&1 {LOCK_FD}>&-
		local rc=$?
		now_ms
		if [[ $rc -ne 0 ]]; then
			REPLY=$(grep -v '^[[:space:]]*$' "$STATE/check-cmd.out" | tail -n 1)
			[[ $rc -eq 124 ]] && REPLY="no answer within ${DBM_CHECK_TIMEOUT} s"
			CHECK_MSG="check command exited $rc${REPLY:+: $REPLY}"
			check_line command fail $((NOW_MS - t0)) "$CHECK_MSG"
			ok=1
		else
			check_line command ok $((NOW_MS - t0)) "$DBM_CHECK_CMD"
		fi
	fi
	if ! applier_alive reverse; then
		applier_error reverse
		warn "the reverse apply stopped ($REPLY): starting it again"
		applier_ensure reverse || warn "the reverse apply does not start: ${APPLIER_ERROR:-}"
	fi
	((ok == 0)) || CHECKS_FAILED=$((CHECKS_FAILED + 1))
	return $ok
}

do_watch()
{
	local end fails=0
	step watch started "\"secs\":$DBM_WATCH_SECS"
	report watch "checking for ${DBM_WATCH_SECS} s: smoke query${DBM_CHECK_CMD:+ and check command}, every ${DBM_CHECK_INTERVAL} s"
	now_ms
	end=$((NOW_MS + ${DBM_WATCH_SECS%.*} * 1000))
	while :; do
		if run_checks; then
			fails=0
		else
			fails=$((fails + 1))
			warn "post-switch check failed: $CHECK_MSG"
			if ((fails >= DBM_CHECK_FAILURES)); then
				json_str "$CHECK_MSG"
				step watch failed "\"exit\":1,\"message\":$REPLY,\"checks_run\":$CHECKS_RUN,\"checks_failed\":$CHECKS_FAILED"
				report watch "FAILED: $CHECK_MSG: rolling back"
				CRITICAL=1
				do_rollback "post-switch check failed: $CHECK_MSG"
				CRITICAL=
				if [[ $ROLLBACK_RC -eq 0 ]]; then
					report rollback "back on the source: pause $(jq '.pause_ms' <<<"$ROLLBACK_LINE") ms, every write made on the target carried back"
					finish rolled_back 1 "a post-switch check failed ($CHECK_MSG); rolled back"
				fi
				finish failed 2 "a post-switch check failed ($CHECK_MSG) and the rollback failed: the target stays primary"
			fi
		fi
		now_ms
		((NOW_MS >= end)) && break
		check_interrupt watch
		local left=$(((end - NOW_MS) / 1000)) iv=${DBM_CHECK_INTERVAL%.*}
		((iv < 1)) && iv=1
		sleep "$((left < iv ? (left > 0 ? left : 1) : iv))"
		check_interrupt watch
	done
	step watch done "\"checks_run\":$CHECKS_RUN,\"checks_failed\":$CHECKS_FAILED"
	report watch "all checks passed ($CHECKS_RUN rounds)"
}

# ---------------------------------------------------------------- recovery

# The previous run of this state dir: its id, whether it ended (a summary
# line), its last step line and its result.
previous_run()
{
	local out
	out=$(jq -rs --arg me "$RUN_ID" '
		[.[] | select(.run != null and .run != $me)] as $l
		| ($l | map(select(.type == "run" and .status == "started")) | last | .run) as $r
		| if $r == null then "none||||"
		  else ($l | map(select(.run == $r))) as $m
		  | ($m | map(select(.type == "summary")) | last) as $s
		  | ($m | map(select(.type == "step")) | last) as $st
		  | "\($r)|\(if $s then "ended" else "cut" end)|\($st.step // "")|\($st.status // "")|\($s.result // "")"
		  end' "$RUN_LOG" 2>/dev/null)
	IFS='|' read -r PREV_RUN PREV_END PREV_STEP PREV_STATUS PREV_RESULT <<<"${out:-none||||}"
	# the result of the last run that ended
	LAST_RESULT=$(jq -rs --arg me "$RUN_ID" '
		map(select(.type == "summary" and .run != $me)) | last | .result // ""' "$RUN_LOG" 2>/dev/null)
}

# bouncer_paused: pgbouncer holds the clients of our database entry.
bouncer_paused()
{
	[[ $ROUTER == pgbouncer ]] || return 1
	psql -X -A -q -F '|' -d "$DBM_PGBOUNCER_ADMIN" -c 'SHOW DATABASES' 2>/dev/null </dev/null |
		awk -F'|' -v db="$DBM_PGBOUNCER_DB" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
			$1 == db && $c["paused"] == 1 { found = 1 } END { exit !found }'
}

recover()
{
	local name
	# work a dead run left running ends first; its outcome is in the
	# databases (and its files), which is what is looked at below
	for name in pre-data copy post-data validate freeze switch rollback; do
		job_adopt "$name"
	done
	previous_run
	switch_state || die "could not read the migration state on the target"
	RESUMED=
	[[ "$PREV_END" == cut ]] && RESUMED=1
	if [[ -n "$RESUMED" ]]; then
		say "continuing run $PREV_RUN, cut short at: $PREV_STEP $PREV_STATUS (the target's state: $SWITCH_STATE)"
		emit "{\"type\":\"recover\",\"run\":\"$RUN_ID\",\"previous\":\"$PREV_RUN\",\"step\":\"$PREV_STEP\",\"status\":\"$PREV_STATUS\",\"state\":\"$SWITCH_STATE\"}"
	fi
	case $SWITCH_STATE in
	switched)
		if [[ -n "$RESUMED" && "$PREV_STEP" == rollback ]]; then
			# a rollback was under way: finish it
			do_rollback "finishing the rollback of run $PREV_RUN"
			[[ $ROLLBACK_RC -eq 0 ]] && finish rolled_back 1 "the rollback of run $PREV_RUN is finished"
			finish failed 2 "the rollback of run $PREV_RUN could not be finished"
		fi
		if [[ -z "$RESUMED" && "$LAST_RESULT" == migrated ]]; then
			applier_ensure reverse || warn "the reverse apply does not start: ${APPLIER_ERROR:-}"
			finish already_migrated 0
		fi
		AFTER_SWITCH=1
		return
		;;
	switching)
		# a switch died half-way: clients may have reached the target
		report recover "a switch was cut short: rolling back to the source, then cutting over again"
		do_rollback "a switch of run ${PREV_RUN:-?} was cut short"
		[[ $ROLLBACK_RC -eq 0 ]] || finish failed 2 "could not roll back the switch that was cut short"
		;;
	aborted)
		report recover "a switch failed: thawing the source"
		do_rollback "a switch of run ${PREV_RUN:-?} failed"
		[[ $ROLLBACK_RC -eq 0 ]] || finish failed 2 "could not thaw the source"
		;;
	*)
		if [[ -n "$RESUMED" && "$PREV_STEP" == rollback && "$SWITCH_STATE" == rolled_back ]]; then
			step rollback done '"finished_by":"previous run"'
			finish rolled_back 1 "the rollback of run $PREV_RUN had finished"
		fi
		if [[ -f "$STATE/jobs/freeze.pid" || -f "$STATE/jobs/freeze.rc" ]] ||
			[[ -n "$RESUMED" && ( "$PREV_STEP" == freeze || "$PREV_STEP" == switch ) ]] || bouncer_paused; then
			# frozen (or maybe) but not switched: thaw, then go on
			report recover "a cutover was cut short before the switch: thawing the source"
			do_rollback "a cutover of run ${PREV_RUN:-?} was cut short before the switch"
			[[ $ROLLBACK_RC -eq 0 ]] || finish failed 2 "could not thaw the source"
		fi
		;;
	esac
	AFTER_SWITCH=
}

# ---------------------------------------------------------------- main
now_ms
RUN_T0=$NOW_MS
json_str "$SRC_SHOWN"
a=$REPLY
json_str "$DST_SHOWN"
emit "{\"type\":\"run\",\"status\":\"started\",\"run\":\"$RUN_ID\",\"pid\":$$,\"source\":$a,\"target\":$REPLY,\"router\":\"$ROUTER\",\"state_dir\":\"$STATE\"}"
say "dbm migrate: $SRC_SHOWN -> $DST_SHOWN"
say "  state $STATE, run $RUN_ID"

if [[ -n "$preflight_only" ]]; then
	if preflight; then
		say "preflight: fit ($CHECK_WARN warnings)"
		emit "{\"type\":\"summary\",\"result\":\"fit\",\"exit\":0,\"run\":\"$RUN_ID\"}"
		exit 0
	fi
	say "preflight: $CHECK_FAIL checks failed"
	emit "{\"type\":\"summary\",\"result\":\"unfit\",\"exit\":1,\"run\":\"$RUN_ID\"}"
	exit 1
fi

recover
if [[ -z "$AFTER_SWITCH" ]]; then
	if ! preflight; then
		say "preflight: $CHECK_FAIL checks failed"
		finish unfit 1 "$CHECK_FAIL preflight checks failed"
	fi
	do_pre_data
	do_copy
	do_post_data
	do_apply
	do_catchup
	do_validate
	do_prepare
	do_cutover
fi
do_reverse
do_watch
finish migrated 0
