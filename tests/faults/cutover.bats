#!/usr/bin/env bats
# Faults during the cutover: migrate.sh, with everything it runs (its
# process group: dbm-freeze, dbm-switch, the appliers it started), killed
# with SIGKILL at seeded random points of the freeze, the switch and the
# reverse step, while a client writes through pgbouncer.  Run again, it
# ends consistent (helpers/migrate: consistent): pgbouncer routes to the
# target and is not paused, every acknowledged write is there, the writes
# changed sides only at a recorded switch (never two sides taking them),
# and the source converges to the same rows (dbm-diff and checksums).
# tests/migrate.bats kills it at the start of every step; these kill it
# inside the cutover steps, after a random delay.

bats_require_minimum_version 1.5.0

load ../helpers/common
load ../helpers/faults
load ../helpers/cutover
load ../helpers/migrate

CUTOVER_PREFIX=fc
RB=$REPO_ROOT/runbooks
STEPS=(freeze switch reverse)

setup_file()
{
	dbm_start_clusters
}

teardown_file()
{
	dbm_stop_clusters
}

setup()
{
	cutover_db
	fault_seed
}

teardown()
{
	mg_teardown
}

# random_kill: migrate.sh killed, with its group, in a step of the cutover
# drawn from the seed, 0 to 300 ms into it; run again: migrated.
random_kill()
{
	local step=${STEPS[RANDOM % ${#STEPS[@]}]} delay
	delay=$(fault_delay 0 300)
	echo "# killed $delay s into $step" >&3
	DBM_TEST_CRASH_DELAY=$delay crash_and_rerun "$step" migrated group
}

@test "migrate.sh killed at a random point of the cutover (draw 1), run again: migrated, consistent" { random_kill; }
@test "migrate.sh killed at a random point of the cutover (draw 2), run again: migrated, consistent" { random_kill; }
@test "migrate.sh killed at a random point of the cutover (draw 3), run again: migrated, consistent" { random_kill; }
