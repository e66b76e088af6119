# Helpers of the fault suites (tests/faults): repeatable random points,
# servers crashed and restarted, sessions terminated, a disk that fills up.
#
#   load ../helpers/common
#   load ../helpers/faults
#
# The random points come from DBM_FAULT_SEED (default 20261124): the same
# seed gives the same schedule of delays, so a failure can be run again
# with the seed the TAP output names.  (The servers' own timing still
# varies: the schedule is repeatable, the interleaving is as close as a
# loaded machine allows.)

FAULT_SEED=${DBM_FAULT_SEED:-20261124}

# fault_seed: seed bash's RANDOM for this test (the seed plus the test's
# number, so tests do not share a schedule) and name it in the TAP output.
fault_seed()
{
	RANDOM=$((FAULT_SEED + BATS_TEST_NUMBER))
	echo "# fault seed $FAULT_SEED (DBM_FAULT_SEED=$FAULT_SEED to repeat)" >&3
}

# fault_delay MIN_MS MAX_MS: a delay in seconds between the two, from the
# seeded schedule (for sleep).
fault_delay()
{
	local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
	printf '%d.%03d\n' $((ms / 1000)) $((ms % 1000))
}

# fault_restart DIR [MODE [DOWN_SECS]]: stop a test cluster (immediate: a
# crash) and start it again on the same port.
fault_restart()
{
	"$REPO_ROOT/scripts/pgcluster.sh" restart "$@" 3>&-
}

# fault_terminate CONN APPNAME: end every session of that application_name
# on the server of CONN (walsenders included); prints how many.
fault_terminate()
{
	psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = '$2' AND pid <> pg_backend_pid()"
}

# fault_small_disk SIZE: a tmpfs of SIZE (e.g. 8m) mounted for the server
# user of the target cluster; prints its directory, or fails (not root, no
# CAP_SYS_ADMIN) so the caller can skip.  fault_small_disk_resize DIR SIZE
# grows it; fault_small_disk_drop DIR unmounts it.
fault_small_disk()
{
	local dir owner
	dir=$(mktemp -d /tmp/dbm-disk.XXXXXX) || return 1
	owner=$(stat -c %u:%g "$DST_DIR/data")
	if ! mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$dir" 2>/dev/null; then
		rmdir "$dir"
		return 1
	fi
	chown "$owner" "$dir"
	echo "$dir" >>"$BATS_FILE_TMPDIR/dbm-disks"
	echo "$dir"
}

fault_small_disk_resize()
{
	mount -o "remount,size=$2" "$1"
}

# Unmount every small disk of this file (teardown_file).
fault_small_disks_drop()
{
	local d
	[[ -f "$BATS_FILE_TMPDIR/dbm-disks" ]] || return 0
	while read -r d; do
		umount -l "$d" 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done <"$BATS_FILE_TMPDIR/dbm-disks"
	rm -f "$BATS_FILE_TMPDIR/dbm-disks"
}

# fault_same SRCCONN DSTCONN TABLE...: dbm-diff of the tables exits 0 and
# their plain-SQL checksums agree (the independent check).
fault_same()
{
	local s=$1 d=$2 t args=()
	shift 2
	for t in "$@"; do
		args+=(--table "$t")
	done
	run --separate-stderr dbm-diff --source "$s" --target "$d" "${args[@]}"
	if [[ $status -ne 0 ]]; then
		echo "dbm-diff exit $status: $output $stderr" >&2
		return 1
	fi
	jq -e -s --argjson n $# '.[-1] | .type == "summary" and .tables == $n and .equal == $n' \
		<<<"$output" >/dev/null || {
		echo "dbm-diff: $output" >&2
		return 1
	}
	for t in "$@"; do
		assert_equal "$(dbm_checksum "$d" "$t")" "$(dbm_checksum "$s" "$t")"
	done
}
