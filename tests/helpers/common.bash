# Shared helpers for the bats suites: `load helpers/common` in every file.
#
#   setup_file()    { dbm_start_clusters; }   # exports SRC DST SRC_DIR DST_DIR
#   teardown_file() { dbm_stop_clusters; }
#
# Clusters are throwaway PostgreSQL servers made by scripts/pgcluster.sh on
# random loopback ports.  Every cluster a file starts is recorded, so
# dbm_stop_clusters stops them all even after failures; clusters leaked by a
# killed bats run are reaped by the next dbm_start_cluster.

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO_ROOT
# DBM_BIN: run the tools of another build (make test-asan: build-asan)
export PATH="${DBM_BIN:-$REPO_ROOT/build}:$PATH"

# The file that lists the cluster directories this test file started.
_dbm_cluster_list()
{
	echo "${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}}/dbm-clusters"
}

# Where cluster directories go.  The server runs as "postgres" when we are
# root, so then the directory must be reachable by that user: /tmp.
_dbm_cluster_base()
{
	if [[ $EUID -eq 0 ]]; then
		echo /tmp
	else
		echo "${TMPDIR:-/tmp}"
	fi
}

# Identify a live process by pid and start time, so a reused pid does not
# pass for the bats run that started a cluster.
_dbm_proc_id()
{
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	set -- $stat
	echo "$1:${20}"
}

# Stop and remove clusters left behind by bats runs that no longer exist.
_dbm_reap_leaked()
{
	local owner pid id d
	for d in "$(_dbm_cluster_base)"/dbm-test.*; do
		[[ -f "$d/owner" ]] || continue
		read -r pid id <"$d/owner" 2>/dev/null || continue
		[[ "$pid" =~ ^[0-9]+$ ]] || continue
		owner=$(_dbm_proc_id "$pid") || owner=
		[[ "${owner#*:}" == "$id" ]] && continue
		"$REPO_ROOT/scripts/pgcluster.sh" stop "$d" 3>&- || true
		rm -rf "$d"
	done
}

# dbm_start_cluster NAME: start a cluster, print its conninfo.  Its directory
# is recorded for dbm_stop_clusters; dbm_cluster_dir NAME prints it.
dbm_start_cluster()
{
	local name=${1:?usage: dbm_start_cluster NAME} dir pid id
	_dbm_reap_leaked
	dir=$(mktemp -d "$(_dbm_cluster_base)/dbm-test.XXXXXX") || return 2
	chmod 755 "$dir"
	echo "$name $dir" >>"$(_dbm_cluster_list)"
	pid=${BATS_ROOT_PID:-$$}
	if id=$(_dbm_proc_id "$pid"); then
		echo "$pid ${id#*:}" >"$dir/owner"
	fi
	"$REPO_ROOT/scripts/pgcluster.sh" start "$dir" 3>&-
}

# dbm_cluster_dir NAME: the directory of a cluster this file started.
dbm_cluster_dir()
{
	local name dir
	while read -r name dir; do
		if [[ "$name" == "$1" ]]; then
			echo "$dir"
			return 0
		fi
	done <"$(_dbm_cluster_list)"
	return 1
}

# Start clusters "src" and "dst" in parallel; export SRC and DST (conninfo
# strings) and SRC_DIR and DST_DIR.
dbm_start_clusters()
{
	local out rc=0 p1 p2
	out=${BATS_FILE_TMPDIR:-$(mktemp -d)}
	dbm_start_cluster src >"$out/src.conninfo" 3>&- &
	p1=$!
	dbm_start_cluster dst >"$out/dst.conninfo" 3>&- &
	p2=$!
	wait "$p1" || rc=$?
	wait "$p2" || rc=$?
	if [[ $rc -ne 0 ]]; then
		echo "dbm_start_clusters: could not start the clusters" >&2
		return "$rc"
	fi
	SRC=$(cat "$out/src.conninfo")
	DST=$(cat "$out/dst.conninfo")
	SRC_DIR=$(dbm_cluster_dir src)
	DST_DIR=$(dbm_cluster_dir dst)
	export SRC DST SRC_DIR DST_DIR
}

# Stop every cluster this file started and remove its directory.  Safe to
# call twice, after a failed start, or when nothing was started.
dbm_stop_clusters()
{
	local list name dir
	list=$(_dbm_cluster_list)
	[[ -f "$list" ]] || return 0
	while read -r name dir; do
		[[ -n "$dir" && -d "$dir" ]] || continue
		"$REPO_ROOT/scripts/pgcluster.sh" stop "$dir" 3>&- || true
		rm -rf "$dir"
	done <"$list"
	rm -f "$list"
	return 0
}

psql_src()
{
	psql "$SRC" -XAtq -v ON_ERROR_STOP=1 "$@"
}

psql_dst()
{
	psql "$DST" -XAtq -v ON_ERROR_STOP=1 "$@"
}

# dbm_checksum CONN TABLE: md5 of a table's rows as text, in a fixed order;
# an independent check of dbm-hash and the copy tools (fine for test sizes).
# An empty table gives md5('').
dbm_checksum()
{
	psql "$1" -XAtq -v ON_ERROR_STOP=1 -c \
		"SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), md5('')) FROM $2 t"
}

# dbm_wait_until SECONDS COMMAND...: run COMMAND every 0.1 s until it
# succeeds; fail when it has not within SECONDS.
dbm_wait_until()
{
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if ((SECONDS >= deadline)); then
			echo "dbm_wait_until: timed out: $*" >&2
			return 1
		fi
		sleep 0.1
	done
}

# ---------------------------------------------------------------- secrets
#
# Proof that passwords never leak (tests/security.bats uses these; any suite
# may): a marker password, a grep of every output file for it, and the
# command lines every user of the host sees in ps.

# dbm_secret_marker: a new marker password on stdout, "dbm-SECRET-" and 16
# hex digits: found nowhere unless something leaked it.
dbm_secret_marker()
{
	printf 'dbm-SECRET-%04x%04x%04x%04x\n' $RANDOM $RANDOM $RANDOM $RANDOM
}

# dbm_assert_no_secret MARKER PATH...: fail when a file (or any file under a
# directory) holds MARKER, naming the file and showing the lines.
dbm_assert_no_secret()
{
	local marker=${1:?usage: dbm_assert_no_secret MARKER PATH...} hits
	shift
	[[ ${#marker} -ge 8 ]] || { echo "dbm_assert_no_secret: marker too short" >&2; return 1; }
	hits=$(grep -rnaF -e "$marker" -- "$@" 2>/dev/null) || return 0
	echo "the password leaked:" >&2
	printf '%s\n' "$hits" >&2
	return 1
}

# dbm_ps_snapshot FILE: append every process's command line as ps shows it
# to any user of the host (ps -ww -eo pid,args).
dbm_ps_snapshot()
{
	ps -ww -eo pid,args >>"$1"
}
