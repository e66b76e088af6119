# runbooks/common.sh - shared by migrate.sh, rollback.sh and status.sh;
# sourced, not run.  Settings (a config file or the environment), the run
# log, background jobs whose outcome survives the runbook, the appliers,
# and psql helpers.
#
# The caller sets PROG (for messages) before sourcing.

export TZ=UTC
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}

DBM_RUNBOOKS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# the checkout's binaries when run from one (DBM_BIN: another build's, as
# in make test-asan), the installed ones else
[[ -n "${DBM_BIN:-}" || -x "$DBM_RUNBOOKS/../build/dbm-snapshot" ]] && PATH="${DBM_BIN:-$DBM_RUNBOOKS/../build}:$PATH"

JSON_OUT=      # --json: JSON lines on stdout instead of the report
RUN_LOG=       # $STATE/run.jsonl once the state dir is set up
RUN_ID=
STATE=
LOCK_FD=

# The script's header comment, from line 2 to its "set -uo", as --help.
usage()
{
	sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"
}

die()
{
	echo "$PROG: error: $*" >&2
	exit 2
}

warn()
{
	echo "$PROG: warning: $*" >&2
}

# say TEXT...: a line of the human report (stdout, unless --json).
say()
{
	[[ -n "$JSON_OUT" ]] || printf '%s\n' "$*"
}

# ---------------------------------------------------------------- settings

# load_config FILE: KEY=VALUE lines (DBM_* and PG* keys; '#' comments;
# values may be "double-quoted" (\" and \\ escapes) or 'single-quoted').
# A variable already set in the environment wins over the file.  The file
# is parsed, never run.
load_config()
{
	local file=$1 line key val n=0 out i c
	[[ -r "$file" ]] || die "cannot read the configuration file \"$file\""
	while IFS= read -r line || [[ -n "$line" ]]; do
		n=$((n + 1))
		line=${line#"${line%%[![:space:]]*}"}
		[[ -z "$line" || "$line" == \#* ]] && continue
		line=${line#export }
		[[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] ||
			die "$file:$n: expected KEY=VALUE"
		key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
		[[ "$key" == DBM_* || "$key" == PG* ]] ||
			die "$file:$n: unknown setting \"$key\" (settings start with DBM_, or PG for libpq)"
		val=${val%"${val##*[![:space:]]}"}
		if [[ "$val" == \"* ]]; then
			[[ ${#val} -ge 2 && "$val" == *\" ]] || die "$file:$n: unterminated \""
			val=${val:1:${#val}-2}
			out=
			for ((i = 0; i < ${#val}; i++)); do
				c=${val:i:1}
				if [[ "$c" == \\ && $((i + 1)) -lt ${#val} ]]; then
					i=$((i + 1))
					c=${val:i:1}
				fi
				out+=$c
			done
			val=$out
		elif [[ "$val" == \'* ]]; then
			[[ ${#val} -ge 2 && "$val" == *\' ]] || die "$file:$n: unterminated '"
			val=${val:1:${#val}-2}
		else
			val=${val%%[[:space:]]#*}
		fi
		[[ -n "${!key+x}" ]] && continue
		export "$key=$val"
	done <"$file"
}

# check_int NAME: $NAME is a whole number, else die.
check_int()
{
	[[ "${!1}" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not \"${!1}\""
}

# check_num NAME: $NAME is a non-negative number (seconds), else die.
check_num()
{
	[[ "${!1}" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 must be a number of seconds, not \"${!1}\""
}

# common_settings: defaults and checks of what every runbook uses.
common_settings()
{
	[[ -n "${DBM_SOURCE:-}" ]] || die "DBM_SOURCE is not set (a libpq conninfo string or URI)"
	[[ -n "${DBM_TARGET:-}" ]] || die "DBM_TARGET is not set (a libpq conninfo string or URI)"
	: "${DBM_STATE_DIR:=./dbm-state}"
	: "${DBM_LOG_DIR:=./dbm-logs}"
	: "${DBM_SLOT:=dbm}"
	: "${DBM_REVERSE_SLOT:=dbm_reverse}"
	: "${DBM_PGBOUNCER_ADMIN:=}"
	: "${DBM_PGBOUNCER_INI:=}"
	: "${DBM_PGBOUNCER_DB:=}"
	: "${DBM_ROUTE_CMD:=}"
	: "${DBM_APP_CONNINFO:=}"
	: "${DBM_APPLY_BATCH_MS:=20}"
	: "${DBM_ROLLBACK_TIMEOUT:=60}"
	local s
	for s in "$DBM_SLOT" "$DBM_REVERSE_SLOT"; do
		[[ "$s" =~ ^[a-z0-9_]{1,63}$ ]] ||
			die "invalid slot name \"$s\": lower-case letters, digits and underscores, at most 63"
	done
	[[ "$DBM_SLOT" != "$DBM_REVERSE_SLOT" ]] || die "DBM_SLOT and DBM_REVERSE_SLOT must differ"
	check_int DBM_APPLY_BATCH_MS
	check_num DBM_ROLLBACK_TIMEOUT
	if [[ -n "$DBM_PGBOUNCER_ADMIN$DBM_PGBOUNCER_INI$DBM_PGBOUNCER_DB" ]]; then
		[[ -n "$DBM_PGBOUNCER_ADMIN" && -n "$DBM_PGBOUNCER_INI" && -n "$DBM_PGBOUNCER_DB" ]] ||
			die "pgbouncer needs all of DBM_PGBOUNCER_ADMIN, DBM_PGBOUNCER_INI and DBM_PGBOUNCER_DB"
		[[ -z "$DBM_ROUTE_CMD" ]] || die "set either the DBM_PGBOUNCER_* settings or DBM_ROUTE_CMD, not both"
		ROUTER=pgbouncer
	elif [[ -n "$DBM_ROUTE_CMD" ]]; then
		ROUTER=exec
	else
		ROUTER=
	fi
	# pgbouncer pauses its clients; without it the source is made read-only
	DBM_FREEZE_METHOD=readonly
	[[ $ROUTER == pgbouncer ]] && DBM_FREEZE_METHOD=pgbouncer
	# what the application connects to, for the smoke check
	if [[ -z "$DBM_APP_CONNINFO" && $ROUTER == pgbouncer ]]; then
		if [[ "$DBM_PGBOUNCER_ADMIN" =~ (^|[[:space:]])dbname=pgbouncer($|[[:space:]]) ]]; then
			DBM_APP_CONNINFO=${DBM_PGBOUNCER_ADMIN/dbname=pgbouncer/dbname=$DBM_PGBOUNCER_DB}
		elif [[ "$DBM_PGBOUNCER_ADMIN" =~ ^postgres(ql)?://[^/]*/pgbouncer([?].*)?$ ]]; then
			DBM_APP_CONNINFO=${DBM_PGBOUNCER_ADMIN/\/pgbouncer/\/$DBM_PGBOUNCER_DB}
		fi
	fi
	export DBM_SOURCE DBM_TARGET DBM_APP_CONNINFO
}

# router_args: the router options of dbm-switch / dbm-rollback, in ROUTER_ARGS.
router_args()
{
	ROUTER_ARGS=()
	case $ROUTER in
	pgbouncer)
		ROUTER_ARGS=(--pgbouncer="$DBM_PGBOUNCER_ADMIN" --pgbouncer-ini="$DBM_PGBOUNCER_INI"
			--database="$DBM_PGBOUNCER_DB")
		;;
	exec) ROUTER_ARGS=(--exec="$DBM_ROUTE_CMD") ;;
	esac
}

# redact CONNINFO: without passwords (key=value and URI forms), in REPLY.
redact()
{
	REPLY=$1
	REPLY=$(sed -E "s/password=('([^'\\\\]|\\\\.)*'|[^[:space:]]*)/password=***/g; s#(://[^:/@]*):[^@/]*@#\\1:***@#" <<<"$REPLY")
}

# ---------------------------------------------------------------- psql

# sync_commit CONNINFO: the same connection with synchronous_commit on, in
# REPLY.  For the sessions that write a barrier (dbm-freeze on the source,
# dbm-rollback on the target): the walsender sends only flushed WAL, so a
# barrier committed asynchronously (synchronous_commit = off on the server)
# waits for the WAL writer (wal_writer_delay, 200 ms by default) before
# the apply can see it, and the clients wait that long more.  Through the
# conninfo and not PGOPTIONS, which pgbouncer's console would refuse.
sync_commit()
{
	with_setting "$1" synchronous_commit on
}

# with_setting CONNINFO NAME VALUE: the same connection with a server
# setting (options=-c NAME=VALUE, key=value or URI form), in REPLY.
with_setting()
{
	if [[ "$1" =~ ^postgres(ql)?:// ]]; then
		if [[ "$1" == *\?* ]]; then
			REPLY="$1&options=-c%20$2%3D$3"
		else
			REPLY="$1?options=-c%20$2%3D$3"
		fi
	else
		REPLY="$1 options='-c $2=$3'"
	fi
}

# psql_on CONNINFO SQL...: one value per line, unaligned, errors on stderr.
# split_password CONNINFO: the conninfo without its password in REPLY, the
# password (as libpq reads it) in SECRET, empty when it has none: psql and
# pg_dump show their command line to every user of the host (ps), their
# environment only to ours.
split_password()
{
	local re_kv="(^|[[:space:]])password[[:space:]]*=[[:space:]]*('([^'\\\\]|\\\\.)*'|[^[:space:]]*)"
	local re_uri='^(postgres(ql)?://)([^:@/]*):([^@/]*)@(.*)$' re_q='([?&])password=([^&#]*)(&?)'
	local v out i
	REPLY=$1 SECRET=
	if [[ "$REPLY" =~ ^postgres(ql)?:// ]]; then
		if [[ "$REPLY" =~ $re_uri ]]; then
			v=${BASH_REMATCH[4]}
			REPLY=${BASH_REMATCH[1]}${BASH_REMATCH[3]}@${BASH_REMATCH[5]}
		elif [[ "$REPLY" =~ $re_q ]]; then
			v=${BASH_REMATCH[2]}
			if [[ -n "${BASH_REMATCH[3]}" ]]; then
				REPLY=${REPLY/"${BASH_REMATCH[0]}"/${BASH_REMATCH[1]}}
			else
				REPLY=${REPLY/"${BASH_REMATCH[0]}"/}
			fi
		else
			return 0
		fi
		printf -v SECRET '%b' "${v//%/\\x}"
	elif [[ "$REPLY" =~ $re_kv ]]; then
		v=${BASH_REMATCH[2]}
		REPLY=${REPLY/"${BASH_REMATCH[0]}"/${BASH_REMATCH[1]}}
		[[ "$v" == \'* ]] && v=${v:1:${#v}-2}
		out=
		for ((i = 0; i < ${#v}; i++)); do
			[[ "${v:i:1}" == \\ ]] && i=$((i + 1))
			out+=${v:i:1}
		done
		SECRET=$out
	fi
}

psql_on()
{
	local conn=$1
	shift
	split_password "$conn"
	if [[ -n "$SECRET" ]]; then
		PGPASSWORD=$SECRET PGAPPNAME=dbm-$PROG psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$REPLY" "$@"
	else
		PGAPPNAME=dbm-$PROG psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$conn" "$@"
	fi
}
q_src() { local q=$1; shift; psql_on "$DBM_SOURCE" -c "$q" "$@"; }
q_dst() { local q=$1; shift; psql_on "$DBM_TARGET" -c "$q" "$@"; }

# ---------------------------------------------------------------- time, JSON

now_ms()
{
	local t=${EPOCHREALTIME/[.,]/}
	NOW_MS=$((t / 1000))
}

# iso_ms MS: ISO 8601 UTC with milliseconds, in REPLY (no fork).
iso_ms()
{
	printf -v REPLY '%(%Y-%m-%dT%H:%M:%S)T.%03dZ' $(($1 / 1000)) $(($1 % 1000))
}

# json_str TEXT: a JSON string literal, in REPLY.
json_str()
{
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/}
	s=${s//[[:cntrl:]]/ }
	REPLY="\"$s\""
}

# json_field LINE NAME: a top-level string or number field of a compact
# JSON line written by a dbm tool, in REPLY (empty when absent); no fork.
json_field()
{
	REPLY=
	if [[ "$1" =~ \"$2\":\"([^\"]*)\" ]]; then
		REPLY=${BASH_REMATCH[1]}
	elif [[ "$1" =~ \"$2\":(-?[0-9.]+) ]]; then
		REPLY=${BASH_REMATCH[1]}
	fi
}

# emit JSON-LINE: append it to the run log in one write; on stdout too
# with --json.
emit()
{
	if [[ -n "$RUN_LOG" ]]; then
		printf '%s\n' "$1" >>"$RUN_LOG" ||
			{ echo "$PROG: error: could not write the run log \"$RUN_LOG\"" >&2; exit 2; }
	fi
	[[ -z "$JSON_OUT" ]] || printf '%s\n' "$1"
}

declare -A STEP_T0=()

# For the test suite only: DBM_TEST_CRASH_AT=STEP makes the runbook kill
# itself (SIGKILL) as STEP starts: right after the step's work was started
# in the background when it has such work, at once otherwise.  With
# DBM_TEST_CRASH_GROUP=1, when the runbook leads its process group (setsid),
# the whole group is killed: the step's work dies with it.
CRASH_PENDING=
crash_point()
{
	[[ -n "${DBM_TEST_CRASH_AT:-}" && "$DBM_TEST_CRASH_AT" == "$1" ]] || return 0
	case $1 in
	pre-data | copy | post-data | validate | freeze | switch | rollback) CRASH_PENDING=1 ;;
	*) crash_now ;;
	esac
}
crash_now()
{
	if [[ "${DBM_TEST_CRASH_GROUP:-}" == 1 && "$(ps -o pgid= -p $$ | tr -d ' ')" == "$$" ]]; then
		kill -KILL -- "-$$"
	fi
	kill -KILL $$
}

# step STEP STATUS [EXTRA]: a step line; EXTRA is a JSON object's members
# without braces ('"rows":5,"lsn":"0/1"').  ms: since the step started.
step()
{
	local ms=0 line
	now_ms
	if [[ "$2" == started ]]; then
		STEP_T0[$1]=$NOW_MS
	elif [[ -n "${STEP_T0[$1]:-}" ]]; then
		ms=$((NOW_MS - STEP_T0[$1]))
	fi
	iso_ms "$NOW_MS"
	line="{\"type\":\"step\",\"step\":\"$1\",\"status\":\"$2\",\"run\":\"$RUN_ID\",\"at\":\"$REPLY\",\"ms\":$ms"
	[[ -z "${3:-}" ]] || line+=",$3"
	emit "$line}"
	[[ "$2" != started ]] || crash_point "$1"
}

# step_failed STEP EXIT MESSAGE [EXTRA]: the step's failed line; the message
# on stderr too.
step_failed()
{
	local extra
	json_str "$3"
	extra="\"exit\":$2,\"message\":$REPLY"
	[[ -z "${4:-}" ]] || extra+=",$4"
	step "$1" failed "$extra"
	echo "$PROG: error: $1: $3" >&2
}

# first_error FILE: the most telling line of a captured stderr, in REPLY.
first_error()
{
	local line
	line=$(grep -m 1 -E '(error|ERROR|FATAL|PANIC):' "$1" 2>/dev/null) ||
		line=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
	line=${line//$'\t'/ }
	REPLY=${line:-no message}
}

# human_bytes N: 1.2 MB style, in REPLY.
human_bytes()
{
	local n=$1
	if ((n < 1024)); then
		REPLY="$n B"
	elif ((n < 1048576)); then
		printf -v REPLY '%d.%d kB' $((n / 1024)) $((n % 1024 * 10 / 1024))
	elif ((n < 1073741824)); then
		printf -v REPLY '%d.%d MB' $((n / 1048576)) $((n % 1048576 * 10 / 1048576))
	else
		printf -v REPLY '%d.%d GB' $((n / 1073741824)) $((n % 1073741824 * 10 / 1073741824))
	fi
}

# secs MS: 1.2 s, in REPLY.
secs()
{
	printf -v REPLY '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100))
}

# ---------------------------------------------------------------- state dir

# state_open: create the state dir, take its lock (one runbook at a time),
# set RUN_LOG and RUN_ID.  Children close the lock fd so that one left
# running by a killed runbook does not hold it.
state_open()
{
	STATE=$DBM_STATE_DIR
	mkdir -p "$STATE/jobs" || die "could not create the state directory \"$STATE\""
	STATE=$(cd "$STATE" && pwd) || die "could not enter \"$STATE\""
	exec {LOCK_FD}>>"$STATE/lock" || die "could not open \"$STATE/lock\""
	if ! flock -n "$LOCK_FD"; then
		# a runbook just killed may have left a psql running for a moment
		flock -w 15 "$LOCK_FD" ||
			die "another runbook is using \"$STATE\" (pid $(cat "$STATE/owner" 2>/dev/null || echo '?')): wait for it, or stop it first"
	fi
	echo "$$ $PROG" >"$STATE/owner"
	RUN_LOG=$STATE/run.jsonl
	: >>"$RUN_LOG" 2>/dev/null || die "could not write the run log \"$RUN_LOG\""
	printf -v RUN_ID '%(%Y%m%dT%H%M%SZ)T-%d' -1 $$
}

# ---------------------------------------------------------------- processes

# proc_start PID: the start time of a live process (field 22 of its stat),
# in REPLY; false when it is gone (or a zombie nobody reaps).
proc_start()
{
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	[[ "$1" != Z && "$1" != X ]] || return 1
	REPLY=${20}
}

# pidfile_alive FILE: the process recorded in FILE ("PID START") still runs;
# its pid in PID.
pidfile_alive()
{
	local start
	PID=
	[[ -f "$1" ]] || return 1
	read -r PID start <"$1" 2>/dev/null || return 1
	[[ "$PID" =~ ^[0-9]+$ ]] || return 1
	proc_start "$PID" || return 1
	[[ "$REPLY" == "$start" ]]
}

# write_pidfile FILE PID
write_pidfile()
{
	proc_start "$2" || REPLY=0
	echo "$2 $REPLY" >"$1.tmp" && mv -f "$1.tmp" "$1"
}

# ---------------------------------------------------------------- jobs
#
# A job is a command run in the background with its stdout, stderr and exit
# status in $STATE/jobs/NAME.{out,err,rc} and its pid in NAME.pid.  When the
# runbook dies, the job runs on and still records how it ended, so the next
# run picks up its outcome (job_adopt) instead of guessing.

# job_start NAME COMMAND...: start it; the wrapper's pid in JOB_PID.
job_start()
{
	local name=$1 d=$STATE/jobs
	shift
	rm -f "$d/$name".{out,err,rc,pid}
	(
		trap - INT TERM HUP
		"$@" >"$d/$name.out" 2>"$d/$name.err" </dev/null &
		child=$!
		write_pidfile "$d/$name.pid" "$child"
		wait "$child"
		echo $? >"$d/$name.rc.tmp" && mv -f "$d/$name.rc.tmp" "$d/$name.rc"
	) {LOCK_FD}>&- &
	JOB_PID=$!
	JOB_NAME=$name
	if [[ -n "$CRASH_PENDING" ]]; then
		sleep "${DBM_TEST_CRASH_DELAY:-0.05}"
		crash_now
	fi
}

# job_signal SIG: send SIG to the tool of the current job.
job_signal()
{
	[[ -n "${JOB_NAME:-}" ]] || return 0
	pidfile_alive "$STATE/jobs/$JOB_NAME.pid" && kill "-$1" "$PID" 2>/dev/null
	return 0
}

# job_wait: wait for the job started last; its status in JOB_RC.  A trapped
# signal ends `wait` early: wait again (the trap decides what to do).
job_wait()
{
	local name=$JOB_NAME
	while :; do
		wait "$JOB_PID" 2>/dev/null
		kill -0 "$JOB_PID" 2>/dev/null || break
	done
	JOB_NAME=
	if [[ -f "$STATE/jobs/$name.rc" ]]; then
		JOB_RC=$(<"$STATE/jobs/$name.rc")
	else
		JOB_RC=255
	fi
}

# job_run NAME COMMAND...: start and wait.
job_run()
{
	job_start "$@"
	job_wait
}

# job_adopt NAME: a job of an earlier run: wait for it if it still runs.
# JOB_RC is its status, 255 when it vanished without one, empty when there
# was no such job.
job_adopt()
{
	local d=$STATE/jobs name=$1 said=
	JOB_RC=
	[[ -f "$d/$name.pid" || -f "$d/$name.rc" ]] || return 0
	while [[ ! -f "$d/$name.rc" ]] && pidfile_alive "$d/$name.pid"; do
		if [[ -z "$said" ]]; then
			say "  waiting for $name, left running by the previous run (pid $PID)"
			said=1
		fi
		sleep 0.1
	done
	# the wrapper writes the status right after the tool ends
	[[ -f "$d/$name.rc" ]] || sleep 0.2
	if [[ -f "$d/$name.rc" ]]; then
		JOB_RC=$(<"$d/$name.rc")
	else
		JOB_RC=255
	fi
}

# job_forget NAME: its files go (the outcome has been used).
job_forget()
{
	rm -f "$STATE/jobs/$1".{out,err,rc,pid}
}

# ---------------------------------------------------------------- appliers
#
# forward: dbm-cdc-apply source -> target over DBM_SLOT; reverse: target ->
# source over DBM_REVERSE_SLOT.  They run detached (setsid), outlive the
# runbook, and are found again by their pid files $STATE/NAME.pid; their
# lines go to $STATE/NAME.jsonl, their diagnostics to $STATE/NAME.log,
# their metrics to $STATE/NAME.prom.

applier_alive()
{
	pidfile_alive "$STATE/$1.pid" || return 1
	[[ "$(cat "/proc/$PID/comm" 2>/dev/null)" == dbm-cdc-apply* ]]
}

# applier_start NAME
applier_start()
{
	local name=$1 args
	# an apply writes into a database that a read-only freeze or rollback
	# made read-only for the application: its sessions must not be
	# (dbm-cdc-apply does not override default_transaction_read_only)
	if [[ $name == forward ]]; then
		with_setting "$DBM_TARGET" default_transaction_read_only off
		args=(--source="$DBM_SOURCE" --target="$REPLY" --slot="$DBM_SLOT"
			--stream="$DBM_SLOT")
	else
		with_setting "$DBM_SOURCE" default_transaction_read_only off
		args=(--source="$DBM_TARGET" --target="$REPLY" --slot="$DBM_REVERSE_SLOT"
			--publication="$DBM_REVERSE_SLOT" --stream="$DBM_REVERSE_SLOT")
	fi
	setsid dbm-cdc-apply "${args[@]}" --batch-ms="$DBM_APPLY_BATCH_MS" \
		--metrics-file="$STATE/$name.prom" \
		>>"$STATE/$name.jsonl" 2>>"$STATE/$name.log" </dev/null {LOCK_FD}>&- &
	write_pidfile "$STATE/$name.pid" "$!"
	APPLIER_PID=$!
}

# applier_ensure NAME: running, or started; false when it dies at once.
# APPLIER_STARTED=1 when it had to be started.
applier_ensure()
{
	local name=$1 i
	APPLIER_STARTED=
	if applier_alive "$name"; then
		APPLIER_PID=$PID
		return 0
	fi
	local size=0
	[[ -f "$STATE/$name.log" ]] && size=$(stat -c %s "$STATE/$name.log")
	applier_start "$name"
	APPLIER_STARTED=1
	# a wrong setting shows within a moment
	for i in 1 2 3; do
		sleep 0.1
		applier_alive "$name" || {
			APPLIER_ERROR=$(tail -c +$((size + 1)) "$STATE/$name.log" | grep -v '^$' | tail -n 1)
			return 1
		}
	done
	return 0
}

# applier_error NAME: its last diagnostic line, in REPLY.
applier_error()
{
	REPLY=$(grep -v '^[[:space:]]*$' "$STATE/$1.log" 2>/dev/null | tail -n 1)
	REPLY=${REPLY:-no message}
}

# applier_stop NAME: SIGTERM (it ends at a transaction boundary), wait.
applier_stop()
{
	local i
	applier_alive "$1" || return 0
	kill -TERM "$PID" 2>/dev/null
	for i in $(seq 1 300); do
		applier_alive "$1" || return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- migration state

# switch_state: the last state dbm-switch/dbm-rollback recorded on the
# target (switching, switched, aborted, rolled_back), or none, in SWITCH_STATE.
switch_state()
{
	local out
	SWITCH_STATE=none
	out=$(q_dst "SELECT to_regclass('dbm.switch') IS NOT NULL") || return 1
	[[ "$out" == t ]] || return 0
	out=$(q_dst "SELECT coalesce((SELECT state FROM dbm.switch ORDER BY id DESC LIMIT 1), 'none')") ||
		return 1
	SWITCH_STATE=$out
}

# table_exists CONNINFO TABLE
table_exists()
{
	[[ "$(psql_on "$1" -c "SELECT to_regclass('$2') IS NOT NULL" 2>/dev/null)" == t ]]
}

# ---------------------------------------------------------------- rollback

# do_rollback REASON: back to the source with dbm-rollback, whatever the
# stage (before the switch it thaws the source; after it, it carries every
# write made on the target back first).  The reverse apply is started when
# it does not run.  ROLLBACK_RC is dbm-rollback's status (0 rolled back,
# 1 the reverse apply did not catch up: the target stays primary, 2 error),
# ROLLBACK_LINE its rolled_back line.
do_rollback()
{
	local reason=$1 ro=() line extra
	ROLLBACK_LINE=
	if ! switch_state; then
		STEP_T0[rollback]=
		step_failed rollback 2 "could not read the migration state on the target"
		ROLLBACK_RC=2
		return
	fi
	json_str "$reason"
	step rollback started "\"reason\":$REPLY,\"state\":\"$SWITCH_STATE\""
	if [[ $SWITCH_STATE == switched || $SWITCH_STATE == switching ]] && ! applier_ensure reverse; then
		warn "the reverse apply does not run: ${APPLIER_ERROR:-no message}"
	fi
	router_args
	[[ "$DBM_FREEZE_METHOD" == readonly ]] && ro=(--readonly)
	# its barrier on the target is committed synchronously (see sync_commit);
	# its source session must be able to set the sequences while the source
	# is still read-only from a read-only freeze (dbm-rollback makes it
	# writable only after copying them back)
	sync_commit "$DBM_TARGET"
	local dst=$REPLY
	with_setting "$DBM_SOURCE" default_transaction_read_only off
	job_run rollback dbm-rollback --source="$REPLY" --target="$dst" \
		"${ROUTER_ARGS[@]}" "${ro[@]}" --stream="$DBM_REVERSE_SLOT" --timeout="$DBM_ROLLBACK_TIMEOUT"
	ROLLBACK_RC=$JOB_RC
	line=$(grep -m 1 '"type":"rolled_back"' "$STATE/jobs/rollback.out" 2>/dev/null)
	if [[ $ROLLBACK_RC -eq 0 && -n "$line" ]]; then
		ROLLBACK_LINE=$line
		extra=$(jq -r '[(if .stage then "\"stage\":\"\(.stage)\"" else empty end),
			(if .pause_ms then "\"pause_ms\":\(.pause_ms)" else empty end),
			(if .sequences then "\"sequences\":\(.sequences)" else empty end)] | join(",")' <<<"$line")
		step rollback done "$extra"
		cp "$STATE/jobs/rollback.out" "$STATE/rolled_back.json"
		job_forget freeze
		return
	fi
	[[ $ROLLBACK_RC -eq 0 ]] && ROLLBACK_RC=2
	first_error "$STATE/jobs/rollback.err"
	step_failed rollback "$ROLLBACK_RC" "$REPLY"
}
