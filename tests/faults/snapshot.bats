#!/usr/bin/env bats
# Faults during dbm-snapshot: killed at random points, either server
# crashed and restarted, its sessions terminated, the target's disk full.
# Each time it stops with a clear error (exit 2, the table named, and a line
# saying how to go on), or is killed; the next run (--resume when the slot
# survived) finishes; dbm-cdc-apply continues from the slot while pgbench
# writes on; dbm-diff and a plain-SQL checksum find the copy equal.

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/faults

setup_file()
{
	dbm_start_clusters
}

teardown_file()
{
	fault_small_disks_drop
	dbm_stop_clusters
}

setup()
{
	DB="f_$BATS_TEST_NUMBER"
	psql_src -c "CREATE DATABASE $DB"
	psql_dst -c "CREATE DATABASE $DB"
	S=${SRC/dbname=postgres/dbname=$DB}
	D=${DST/dbname=postgres/dbname=$DB}
	OUT=$BATS_TEST_TMPDIR
	SLOT="fsnap_$BATS_TEST_NUMBER"
	PIDS=()
	fault_seed
	# the random kills need a copy of a few seconds
	local scale=10
	[[ "$BATS_TEST_DESCRIPTION" == SIGKILL* ]] && scale=30
	pgbench -i -q -s "$scale" "$S" >"$OUT/init.out" 2>&1
	pg_dump --section=pre-data "$S" | psql "$D" -XAq -v ON_ERROR_STOP=1 >/dev/null
}

teardown()
{
	local p
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	psql_src -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = '$SLOT' AND active" >/dev/null || true
	psql_src -c "SELECT pg_drop_replication_slot('$SLOT')
		FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null 2>&1 || true
}

TABLES=(public.pgbench_accounts public.pgbench_branches public.pgbench_history public.pgbench_tellers)

# writer SECS: pgbench writing on the source in the background.
writer()
{
	pgbench -n -c 2 -T "$1" "$S" >"$OUT/pgbench.out" 2>&1 3>&- &
	PIDS+=($!)
	WRITER=$!
}

# snapshot OUTNAME [OPTION]...: dbm-snapshot in the background; pid in SNAP.
snapshot()
{
	local name=$1
	shift
	dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --jobs 2 --split-rows 250000 "$@" \
		>"$OUT/$name.out" 2>"$OUT/$name.err" 3>&- &
	SNAP=$!
	PIDS+=($SNAP)
}

# copying OUTNAME: the snapshot line is out and a first piece is copied.
copying() { grep -q '"type":"copied"' "$OUT/$1.out"; }

slot_exists()
{
	[[ "$(psql_src -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")" == 1 ]]
}

# finish: the last run (--resume when the slot survived), post-data, the
# writer stopped, dbm-cdc-apply up to the end of WAL: equal.
finish()
{
	local args=()
	slot_exists && args=(--resume)
	run --separate-stderr dbm-snapshot --source "$S" --target "$D" --slot "$SLOT" --jobs 2 \
		--split-rows 250000 "${args[@]}"
	assert_success
	assert_equal "$stderr" ""
	jq -e -s '.[-1].type == "done"' <<<"$output" >/dev/null
	pg_dump --section=post-data "$S" | psql "$D" -XAq -v ON_ERROR_STOP=1 >/dev/null
	wait "$WRITER"
	grep -q '^number of failed transactions: 0' "$OUT/pgbench.out"
	local lsn
	lsn=$(psql "$S" -XAtq -c "SELECT pg_current_wal_insert_lsn()")
	run --separate-stderr dbm-cdc-apply --source "$S" --target "$D" --slot "$SLOT" --stop-at-lsn "$lsn"
	assert_success
	assert_equal "$stderr" ""
	fault_same "$S" "$D" "${TABLES[@]}"
}

# failed_with OUTNAME PATTERN: the run exited 2; stderr holds an error line
# matching PATTERN and, last, the line saying how to go on.
failed_with()
{
	local rc=0
	wait "$SNAP" || rc=$?
	if [[ $rc -ne 2 ]]; then
		echo "dbm-snapshot exit $rc, expected 2" >&2
		cat "$OUT/$1.err" >&2
		return 1
	fi
	grep -E "^dbm-snapshot: error: .*$2" "$OUT/$1.err" >/dev/null || {
		cat "$OUT/$1.err" >&2
		return 1
	}
	tail -n 1 "$OUT/$1.err" | grep -E '^dbm-snapshot: info: (nothing was kept: run the same command again|[0-9]+ of [0-9]+ pieces are copied: run it again with --resume to copy the rest)$' >/dev/null || {
		cat "$OUT/$1.err" >&2
		return 1
	}
}

@test "SIGKILL at four random points, then a run to the end: --resume each time the slot survived; equal" {
	writer 120
	local i rc args
	for i in 1 2 3 4; do
		args=()
		slot_exists && args=(--resume)
		snapshot "run$i" "${args[@]}"
		sleep "$(fault_delay 50 1500)"
		if ! kill -KILL "$SNAP" 2>/dev/null; then
			rc=0
			wait "$SNAP" || rc=$?
			echo "# run $i ended by itself (exit $rc) before its kill" >&3
			# a run that ends by itself must have succeeded
			assert_equal "$rc" 0
		fi
		wait "$SNAP" 2>/dev/null || true
		echo "# run $i${args:+ (--resume)}: $(grep -c '"type":"copied"' "$OUT/run$i.out") pieces copied before the kill" >&3
	done
	kill -TERM "$WRITER" 2>/dev/null || true
	wait "$WRITER" || true
	writer 1
	finish
}

@test "the target crashes and restarts mid-copy: exit 2 naming the table, the next run finishes; equal" {
	writer 60
	snapshot run1
	dbm_wait_until 120 copying run1
	fault_restart "$DST_DIR" immediate 1
	failed_with run1 'could not load table public\.pgbench_accounts: '
	finish
}

@test "the source crashes and restarts mid-copy: exit 2 naming the table, --resume finishes; equal" {
	writer 60
	snapshot run1
	dbm_wait_until 120 copying run1
	fault_restart "$SRC_DIR" immediate 1
	failed_with run1 'could not (read|load) table public\.pgbench_accounts: '
	# the slot outlives the crash: what was copied stays
	slot_exists
	# pgbench lost its connections in the crash
	wait "$WRITER" || true
	writer 2
	finish
}

@test "its sessions terminated on the target mid-copy: exit 2 naming the table, the next run finishes; equal" {
	writer 60
	snapshot run1
	dbm_wait_until 120 copying run1
	(($(fault_terminate "$D" dbm-snapshot) >= 1))
	# (on a loaded machine the copy may be past its last piece by then)
	failed_with run1 'could not (load table public\.pgbench_accounts|record the run on the target): '
	finish
}

@test "the target's disk fills up: exit 2 naming the table and the disk, nothing recorded as copied that is not; after it grows, the next run finishes; equal" {
	local disk
	disk=$(fault_small_disk 24m) || skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)"
	psql "$D" -XAtq -v ON_ERROR_STOP=1 -c "CREATE TABLESPACE small_$BATS_TEST_NUMBER LOCATION '$disk'" \
		-c "ALTER TABLE pgbench_accounts SET TABLESPACE small_$BATS_TEST_NUMBER"
	writer 60
	snapshot run1
	failed_with run1 'could not (load|write|commit) .*pgbench_accounts.*No space left on device'
	# every piece recorded as done is really there
	assert_equal "$(psql "$D" -XAtq -c "SELECT coalesce(sum(rows), 0) FROM dbm.snapshot_piece
		WHERE relname = 'public.pgbench_accounts'")" "$(psql "$D" -XAtq -c "SELECT count(*) FROM pgbench_accounts")"
	fault_small_disk_resize "$disk" 512m
	finish
}
