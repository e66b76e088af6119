#!/usr/bin/env bats
# The test harness itself: throwaway clusters and the helpers around them.

load helpers/common

setup_file()
{
	dbm_start_clusters
}

teardown_file()
{
	dbm_stop_clusters
}

@test "two clusters start on different loopback ports" {
	[[ "$SRC" =~ ^host=127\.0\.0\.1\ port=([0-9]+)\ user=postgres\ dbname=postgres$ ]]
	src_port=${BASH_REMATCH[1]}
	[[ "$DST" =~ ^host=127\.0\.0\.1\ port=([0-9]+)\ user=postgres\ dbname=postgres$ ]]
	dst_port=${BASH_REMATCH[1]}
	[ "$src_port" != "$dst_port" ]
	assert_equal "$(cat "$SRC_DIR/port")" "$src_port"
	assert_equal "$(cat "$DST_DIR/conninfo")" "$DST"
}

@test "both clusters accept connections as superuser postgres" {
	run psql_src -c 'SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user'
	assert_success
	assert_output 'postgres|t'
	run psql_dst -c 'SELECT current_user'
	assert_success
	assert_output 'postgres'
}

@test "both clusters run with wal_level=logical and UTF8" {
	run psql_src -c 'SHOW wal_level' -c 'SHOW server_encoding'
	assert_output $'logical\nUTF8'
	run psql_dst -c 'SHOW wal_level' -c 'SHOW server_encoding'
	assert_output $'logical\nUTF8'
}

@test "the unix socket in the cluster directory works" {
	run psql "host=$SRC_DIR port=$(cat "$SRC_DIR/port") user=postgres" -XAtc 'SELECT 1'
	assert_success
	assert_output 1
}

@test "replication connections are allowed" {
	run psql "$SRC replication=database" -XAtc 'IDENTIFY_SYSTEM'
	assert_success
}

@test "psql_src stops on the first error" {
	run psql_src -c 'SELECT 1/0'
	assert_failure
	assert_output --partial 'division by zero'
}

@test "dbm_checksum is equal for equal tables and differs after a change" {
	for side in psql_src psql_dst; do
		$side -c 'CREATE TABLE t (id int PRIMARY KEY, v text, n numeric)'
		$side -c "INSERT INTO t SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, 1000) g"
	done
	src_sum=$(dbm_checksum "$SRC" t)
	dst_sum=$(dbm_checksum "$DST" t)
	[[ "$src_sum" =~ ^[0-9a-f]{32}$ ]]
	assert_equal "$dst_sum" "$src_sum"

	psql_dst -c "UPDATE t SET v = 'changed' WHERE id = 500"
	dst_sum=$(dbm_checksum "$DST" t)
	[ "$dst_sum" != "$src_sum" ]
}

@test "dbm_checksum of an empty table is md5 of nothing" {
	psql_src -c 'CREATE TABLE empty_t (id int)'
	run dbm_checksum "$SRC" empty_t
	assert_success
	assert_output d41d8cd98f00b204e9800998ecf8427e
}

@test "pgcluster.sh stop is quiet and succeeds when nothing runs" {
	dir=$(mktemp -d)
	run "$REPO_ROOT/scripts/pgcluster.sh" stop "$dir"
	assert_success
	assert_output ''
	rmdir "$dir"
}
