#!/usr/bin/env bash
# status.sh - where a migration stands, on one screen or as JSON.
#
#   runbooks/status.sh [--config FILE] [--json]
#
# Uses the settings of migrate.sh (the same --config file or environment,
# the same state dir) and reads, without changing anything:
#   phase             from the target's dbm schema (copy, switch state) and
#                     pgbouncer (paused or not, where the entry points)
#   slots             the forward slot on the source, the reverse slot on
#                     the target: active or not, lag (WAL not yet confirmed
#                     by its apply) and retained WAL (what the server keeps
#                     for it), wal_status
#   applies           the forward and reverse dbm-cdc-apply processes of the
#                     state dir: running or not; the position each has
#                     applied, how far behind the WAL of its source that is,
#                     the time lag of its last commit (its metrics file)
#   last validation   the newest of validate.sh's run log
#                     ($DBM_LOG_DIR/validate.jsonl) and migrate.sh's
#                     validate step
#
# A slot retaining more WAL than DBM_WAL_ALARM (default 10GB; kB, MB, GB,
# TB) is a problem: its apply is behind or stopped, and the server's disk
# fills.
#
# --json prints one line:
#   {"type":"status","at":"...","phase":"switched","primary":"target",
#    "frozen":false,"forward":{...},"reverse":{...},"validation":{...},
#    "problems":[...]}
# (docs/formats.md has every field).
#
# Exit status: 0 all is well; 1 something needs attention (listed under
# "problems": an apply that should run does not, a slot that lost WAL, a
# validation that found differences, a source left frozen); 2 error
# (settings, neither database reachable).
set -uo pipefail

PROG=status
# shellcheck source=runbooks/common.sh
source "$(cd "$(dirname "$0")" && pwd)/common.sh"

config=${DBM_CONFIG:-}
json=
while [[ $# -gt 0 ]]; do
	case $1 in
	--config=*) config=${1#*=} ;;
	--config)
		[[ $# -ge 2 ]] || die "option \"--config\" needs a value"
		config=$2
		shift
		;;
	--json) json=1 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument \"$1\" (see --help)" ;;
	esac
	shift
done
[[ -z "$config" ]] || load_config "$config"
common_settings
# DBM_WAL_ALARM: retained WAL above this is a problem (bytes, or with kB, MB,
# GB, TB; default 10GB)
: "${DBM_WAL_ALARM:=10GB}"
if [[ "$DBM_WAL_ALARM" =~ ^([0-9]+)[[:space:]]*(B|kB|MB|GB|TB)?$ ]]; then
	case ${BASH_REMATCH[2]} in
	kB) m=10 ;; MB) m=20 ;; GB) m=30 ;; TB) m=40 ;; *) m=0 ;;
	esac
	WAL_ALARM=$((BASH_REMATCH[1] << m))
else
	die "DBM_WAL_ALARM must be a size like 10GB or 500MB, not \"$DBM_WAL_ALARM\""
fi
command -v jq >/dev/null 2>&1 || die "jq not found in PATH"
STATE=$DBM_STATE_DIR
[[ -d "$STATE" ]] && STATE=$(cd "$STATE" && pwd)

problems=()
src_ok= dst_ok=
q_src "SELECT 1" >/dev/null 2>&1 && src_ok=1
q_dst "SELECT 1" >/dev/null 2>&1 && dst_ok=1
[[ -n "$src_ok" ]] || problems+=("the source cannot be reached")
[[ -n "$dst_ok" ]] || problems+=("the target cannot be reached")
[[ -n "$src_ok$dst_ok" ]] || {
	[[ -n "$json" ]] && jq -cn '{type: "status", error: "neither database can be reached"}'
	die "neither database can be reached"
}

# slot CONN NAME: JSON of a slot, or null
slot_json()
{
	psql_on "$1" -c "SELECT json_build_object('name', slot_name, 'active', active,
		'lag_bytes', greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint,
		'retained_bytes', greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
		'wal_status', wal_status, 'confirmed_lsn', confirmed_flush_lsn::text)
		FROM pg_replication_slots WHERE slot_name = '$2' AND database = current_database()" 2>/dev/null
}

# position CONN STREAM: JSON of an apply position row, or null
position_json()
{
	psql_on "$1" -c "SELECT CASE WHEN to_regclass('dbm.apply_position') IS NOT NULL THEN
		(SELECT json_build_object('applied_lsn', lsn::text, 'updated_at', updated_at,
		        'source_commit_time', source_commit_time)
		 FROM dbm.apply_position WHERE stream = '$2') END" 2>/dev/null
}

# metric FILE NAME: a value of a Prometheus text file written by the apply
metric()
{
	[[ -f "$1" ]] || return 0
	awk -v n="$2" '$1 ~ "^" n "({|$)" { print $2; exit }' "$1"
}

# apply_json NAME SOURCE-CONN TARGET-CONN SLOT
apply_json()
{
	local name=$1 from=$2 to=$3 slot=$4 running=false pid=null s p cur lagb lags age
	if applier_alive "$name"; then
		running=true
		pid=$PID
	fi
	s=$(slot_json "$from" "$slot")
	p=$(position_json "$to" "$slot")
	cur=$(psql_on "$from" -c "SELECT pg_current_wal_lsn()" 2>/dev/null)
	lagb=null
	if [[ -n "$cur" ]]; then
		# what the target has: its position row, or (idle) the confirmed slot
		lagb=$(psql_on "$from" -c "SELECT greatest(pg_wal_lsn_diff('$cur',
			greatest(coalesce(NULLIF('$(jq -r '.applied_lsn // empty' <<<"${p:-null}" 2>/dev/null)', '')::pg_lsn, '0/0'),
			         coalesce(NULLIF('$(jq -r '.confirmed_lsn // empty' <<<"${s:-null}" 2>/dev/null)', '')::pg_lsn, '0/0'))), 0)::bigint" 2>/dev/null)
		[[ -n "$lagb" ]] || lagb=null
	fi
	lags=$(metric "$STATE/$name.prom" dbm_apply_lag_seconds)
	age=null
	[[ -f "$STATE/$name.prom" ]] && age=$(($(date +%s) - $(stat -c %Y "$STATE/$name.prom")))
	jq -cn --argjson running "$running" --argjson pid "$pid" --argjson slot "${s:-null}" \
		--argjson pos "${p:-null}" --argjson lagb "$lagb" --arg lags "$lags" --argjson age "$age" \
		--arg log "$STATE/$name.log" \
		'{running: $running, pid: $pid, slot: $slot} + ($pos // {applied_lsn: null})
		 + {lag_bytes: $lagb, lag_seconds: (if $lags == "" then null else ($lags | tonumber) end),
		    metrics_age_seconds: $age, log: $log}'
}

# ---------------------------------------------------------------- phase
switch=none copy=none frozen=false route=
if [[ -n "$dst_ok" ]]; then
	switch_state || SWITCH_STATE=unknown
	switch=$SWITCH_STATE
	if table_exists "$DBM_TARGET" dbm.snapshot_run; then
		copy=$(q_dst "SELECT coalesce((SELECT CASE WHEN finished_at IS NULL THEN 'partial' ELSE 'done' END
			FROM dbm.snapshot_run LIMIT 1), 'none')" 2>/dev/null)
	fi
fi
if [[ $ROUTER == pgbouncer ]]; then
	out=$(psql -X -A -q -F '|' -d "$DBM_PGBOUNCER_ADMIN" -c 'SHOW DATABASES' 2>/dev/null </dev/null)
	if [[ -n "$out" ]]; then
		IFS='|' read -r h p paused < <(awk -F'|' -v db="$DBM_PGBOUNCER_DB" '
			NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
			$1 == db { print $c["host"] "|" $c["port"] "|" $c["paused"] }' <<<"$out")
		route="$h:$p"
		[[ "$paused" == 1 ]] && frozen=true
	else
		problems+=("pgbouncer's console cannot be reached")
	fi
elif [[ -n "$src_ok" ]]; then
	[[ "$(q_src "SHOW default_transaction_read_only" 2>/dev/null)" == on ]] && frozen=true
fi
case $switch in
switched) phase=switched primary=target ;;
switching) phase=switch_cut_short primary=unknown
	problems+=("a switch was cut short: run migrate.sh (it rolls back and cuts over again) or rollback.sh") ;;
aborted) phase=switch_failed primary=source ;;
rolled_back) phase=rolled_back primary=source ;;
*)
	primary=source
	case $copy in
	none) phase=not_started ;;
	partial) phase=copying ;;
	*) phase=replicating ;;
	esac
	;;
esac
[[ $frozen == true ]] && problems+=("writes are paused ($DBM_FREEZE_METHOD): a cutover is under way, or was cut short (migrate.sh or rollback.sh undoes it)")

fwd=$(apply_json forward "$DBM_SOURCE" "$DBM_TARGET" "$DBM_SLOT")
rev=$(apply_json reverse "$DBM_TARGET" "$DBM_SOURCE" "$DBM_REVERSE_SLOT")
if [[ $phase == replicating || $phase == rolled_back || $phase == switch_failed ]] &&
	[[ "$(jq -r .running <<<"$fwd")" != true ]]; then
	problems+=("the forward apply does not run (see $STATE/forward.log): the target falls behind; migrate.sh starts it")
fi
if [[ $phase == switched && "$(jq -r .running <<<"$rev")" != true ]]; then
	problems+=("the reverse apply does not run (see $STATE/reverse.log): a rollback would wait for it; migrate.sh or rollback.sh starts it")
fi
for x in "$fwd" "$rev"; do
	[[ "$(jq -r '.slot.wal_status // ""' <<<"$x")" == lost ]] &&
		problems+=("slot $(jq -r .slot.name <<<"$x") lost WAL it needed: that stream cannot continue")
	# a slot whose apply does not keep up holds WAL until the disk fills
	retained=$(jq -r '.slot.retained_bytes // 0' <<<"$x")
	if ((retained > WAL_ALARM)); then
		human_bytes "$retained"
		r=$REPLY
		human_bytes "$WAL_ALARM"
		problems+=("slot $(jq -r .slot.name <<<"$x") retains $r of WAL, above DBM_WAL_ALARM ($REPLY): its apply is behind or stopped, and the server's disk fills")
	fi
done

# ---------------------------------------------------------------- validation
val=null
v1=$(tail -n 1 "$DBM_LOG_DIR/validate.jsonl" 2>/dev/null | jq -c 'select(.type == "validate")
	| {status, at, exit, source: "validate.sh", output}' 2>/dev/null)
v2=$(jq -c 'select(.type == "step" and .step == "validate" and (.status == "done" or .status == "failed"))
	| {status: (if .status == "done" then "equal" elif .exit == 1 then "different" else "error" end),
	   at, exit: (.exit // 0), source: "migrate.sh", output: null}' "$STATE/run.jsonl" 2>/dev/null | tail -n 1)
if [[ -n "$v1" && -n "$v2" ]]; then
	val=$(jq -cn --argjson a "$v1" --argjson b "$v2" 'if $a.at > $b.at then $a else $b end')
else
	val=${v1:-${v2:-null}}
fi
[[ "$(jq -r '.status // ""' <<<"$val")" == different ]] &&
	problems+=("the last validation found differences ($(jq -r '.output // .source' <<<"$val"))")

last=$(grep -E '"type":"(step|summary)"' "$STATE/run.jsonl" 2>/dev/null | tail -n 1)
now_ms
iso_ms "$NOW_MS"
at=$REPLY
status=$(jq -cn --arg at "$at" --arg phase "$phase" --arg primary "$primary" --arg switch "$switch" \
	--arg copy "$copy" --argjson frozen "$frozen" --arg route "$route" --arg router "$ROUTER" \
	--argjson fwd "$fwd" --argjson rev "$rev" --argjson val "$val" --argjson last "${last:-null}" \
	--arg state "$STATE" \
	'{type: "status", at: $at, phase: $phase, primary: $primary, switch_state: $switch,
	  copy: $copy, frozen: $frozen, router: $router,
	  route: (if $route == "" then null else $route end),
	  forward: $fwd, reverse: $rev, validation: $val, last_step: $last, state_dir: $state,
	  problems: $ARGS.positional}' --args "${problems[@]}")
rc=0
[[ ${#problems[@]} -eq 0 ]] || rc=1

if [[ -n "$json" ]]; then
	printf '%s\n' "$status"
	exit "$rc"
fi

# ---------------------------------------------------------------- the screen
bytes() { if [[ "$1" == null || -z "$1" ]]; then REPLY='?'; else human_bytes "$1"; fi; }
ago()
{
	local t
	[[ -n "$1" && "$1" != null ]] || { REPLY='never'; return; }
	t=$(date -d "$1" +%s 2>/dev/null) || { REPLY=$1; return; }
	t=$(($(date +%s) - t))
	if ((t < 120)); then REPLY="${t}s ago"
	elif ((t < 7200)); then REPLY="$((t / 60))m ago"
	else REPLY="$((t / 3600))h ago"
	fi
}
redact "$DBM_SOURCE"
echo "dbm status at $at"
echo "  source   $REPLY"
redact "$DBM_TARGET"
echo "  target   $REPLY"
printf '  %-16s %s\n' phase "$phase (primary: $primary$([[ $frozen == true ]] && echo ', WRITES PAUSED'))"
[[ -n "$route" ]] && printf '  %-16s %s\n' pgbouncer "$DBM_PGBOUNCER_DB -> $route"
for name in forward reverse; do
	[[ $name == forward ]] && x=$fwd || x=$rev
	IFS=$'\t' read -r run pid sname sact slag sret wst alsn lagb lags < <(jq -r '[.running, (.pid // "-"),
		(.slot.name // "-"), (.slot.active // "-"), (.slot.lag_bytes // "null"), (.slot.retained_bytes // "null"),
		(.slot.wal_status // "-"), (.applied_lsn // "-"), (.lag_bytes // "null"), (.lag_seconds // "null")] | @tsv' <<<"$x")
	if [[ "$run" == true ]]; then run="running (pid $pid)"; else run="not running"; fi
	[[ $name == forward ]] && where="source -> target" || where="target -> source"
	bytes "$lagb"
	lb=$REPLY
	printf '  %-16s %s\n' "$name apply" "$run, $where, applied $alsn, lag $lb${lags:+$([[ $lags != null ]] && echo ", ${lags} s")}"
	if [[ "$sname" != - ]]; then
		bytes "$slag"
		a=$REPLY
		bytes "$sret"
		printf '  %-16s %s\n' "$name slot" "$sname: $([[ $sact == true ]] && echo active || echo inactive), lag $a, retains $REPLY WAL ($wst)"
	else
		printf '  %-16s %s\n' "$name slot" "none"
	fi
done
if [[ "$val" != null ]]; then
	IFS=$'\t' read -r vs vat vsrc < <(jq -r '[.status, .at, .source] | @tsv' <<<"$val")
	ago "$vat"
	printf '  %-16s %s\n' "last validation" "$vs, $REPLY ($vat, $vsrc)"
else
	printf '  %-16s %s\n' "last validation" "none"
fi
if [[ -n "$last" ]]; then
	printf '  %-16s %s\n' "last step" "$(jq -r 'if .type == "summary" then "run ended: \(.result)" else "\(.step) \(.status)" end + " at \(.at // "?")"' <<<"$last")"
fi
for p in "${problems[@]}"; do
	echo "  ! $p"
done
exit "$rc"
