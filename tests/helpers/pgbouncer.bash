# A real pgbouncer for the cutover suites: `load helpers/pgbouncer` after
# helpers/common.
#
#   dbm_start_pgbouncer DBNAME CONNINFO   # exports PGB PGB_ADMIN PGB_INI PGB_DIR PGB_PORT
#   dbm_stop_pgbouncer                    # safe when nothing runs
#   dbm_pgbouncer_db_field NAME FIELD     # a column of SHOW DATABASES
#
# pgbouncer (the Debian package, /usr/sbin/pgbouncer) runs daemonized on a
# free loopback port, with its ini, auth file, log and pid file in a temp
# dir, transaction pooling and trust authentication.  It refuses to run as
# root: then the dir is handed to the "postgres" user and it runs as that
# user.  The dir is under /tmp so that user can reach it.

DBM_PGBOUNCER=${DBM_PGBOUNCER:-/usr/sbin/pgbouncer}

# Run a command as the user pgbouncer runs as, fd 3 closed so that bats
# does not wait for the daemon.
_dbm_pgb_as()
{
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@" 3>&-
	else
		"$@" 3>&-
	fi
}

# A loopback port nothing listens on (bind races are handled by retrying
# the start).
_dbm_pgb_free_port()
{
	local p i
	for i in $(seq 1 200); do
		p=$((RANDOM % 20000 + 20000))
		if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# Write the ini for DBNAME -> CONNINFO listening on PORT into DIR.
_dbm_pgb_write_ini()
{
	local dir=$1 port=$2 dbname=$3 conninfo=$4 host pport pdb kv
	host=127.0.0.1 pport=5432 pdb=$dbname
	for kv in $conninfo; do
		case "$kv" in
		host=*) host=${kv#host=} ;;
		port=*) pport=${kv#port=} ;;
		dbname=*) pdb=${kv#dbname=} ;;
		esac
	done
	cat >"$dir/pgbouncer.ini" <<-EOF
		[databases]
		$dbname = host=$host port=$pport dbname=$pdb user=postgres

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $port
		unix_socket_dir =
		auth_type = trust
		auth_file = $dir/userlist.txt
		admin_users = postgres
		pool_mode = transaction
		max_client_conn = 200
		default_pool_size = 20
		; a RELOAD that changes a database's host (DBM_ROUTE_CMD's, without
		; PAUSE) drops a server login in flight and counts it as failed:
		; new clients would wait out the retry (pgbouncer/pgbouncer#1536)
		server_login_retry = 1
		logfile = $dir/pgbouncer.log
		pidfile = $dir/pgbouncer.pid
	EOF
	echo '"postgres" ""' >"$dir/userlist.txt"
}

# dbm_start_pgbouncer DBNAME CONNINFO: start pgbouncer with one database
# entry DBNAME pointing at CONNINFO (host, port, dbname; user postgres).
dbm_start_pgbouncer()
{
	local dbname=${1:?usage: dbm_start_pgbouncer DBNAME CONNINFO}
	local conninfo=${2:?usage: dbm_start_pgbouncer DBNAME CONNINFO}
	local dir port try i
	[[ -x "$DBM_PGBOUNCER" ]] || {
		echo "dbm_start_pgbouncer: $DBM_PGBOUNCER not found (run scripts/setup.sh)" >&2
		return 2
	}
	dir=$(mktemp -d /tmp/dbm-pgbouncer.XXXXXX) || return 2
	chmod 755 "$dir"
	for try in 1 2 3 4 5; do
		port=$(_dbm_pgb_free_port) || break
		_dbm_pgb_write_ini "$dir" "$port" "$dbname" "$conninfo"
		[[ $EUID -eq 0 ]] && chown -R postgres: "$dir"
		rm -f "$dir/pgbouncer.pid"
		if _dbm_pgb_as "$DBM_PGBOUNCER" -d "$dir/pgbouncer.ini" >>"$dir/start.log" 2>&1; then
			for i in $(seq 1 100); do
				if psql "host=127.0.0.1 port=$port dbname=pgbouncer user=postgres" \
					-XAtq -c 'SHOW VERSION' >/dev/null 2>&1; then
					PGB_DIR=$dir PGB_INI=$dir/pgbouncer.ini PGB_PORT=$port
					PGB="host=127.0.0.1 port=$port dbname=$dbname user=postgres"
					PGB_ADMIN="host=127.0.0.1 port=$port dbname=pgbouncer user=postgres"
					export PGB PGB_ADMIN PGB_INI PGB_DIR PGB_PORT
					# warm the pool as an application would have: a first
					# login while the database is paused waits for
					# server_login_retry when pgbouncer has never
					# seen the server's parameters
					psql "$PGB" -XAtq -c 'SELECT 1' >/dev/null 2>&1 3>&- || true
					return 0
				fi
				sleep 0.05
			done
		fi
		# did not come up (port taken?): stop what may run, try another port
		PGB_DIR=$dir _dbm_pgb_kill
	done
	echo "dbm_start_pgbouncer: pgbouncer did not start; its log:" >&2
	cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null
	rm -rf "$dir"
	return 2
}

# Kill the pgbouncer of PGB_DIR (its pid file) and wait for it to end.
_dbm_pgb_kill()
{
	local pid i
	[[ -n "${PGB_DIR:-}" && -f "$PGB_DIR/pgbouncer.pid" ]] || return 0
	pid=$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null)
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	# only a pgbouncer: the pid file may be stale and the pid reused
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]] || return 0
	# a test pgbouncer keeps nothing: no need to wait for its shutdown,
	# which takes over a second
	kill -KILL "$pid" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.02
	done
}

# dbm_stop_pgbouncer: stop the pgbouncer started by dbm_start_pgbouncer and
# remove its dir; safe to call twice or when none was started.
dbm_stop_pgbouncer()
{
	[[ -n "${PGB_DIR:-}" ]] || return 0
	# a failed test shows what pgbouncer said (login retries, errors)
	if [[ -n "${BATS_TEST_NAME:-}" && -z "${BATS_TEST_COMPLETED:-}" && -s "$PGB_DIR/pgbouncer.log" ]]; then
		grep -v ' LOG stats: ' "$PGB_DIR/pgbouncer.log" | tail -n 40 | sed 's/^/# pgbouncer: /' >&3 || true
	fi
	_dbm_pgb_kill
	[[ "$PGB_DIR" == /tmp/dbm-pgbouncer.* ]] && rm -rf "$PGB_DIR"
	unset PGB PGB_ADMIN PGB_INI PGB_DIR PGB_PORT
	return 0
}

# dbm_pgbouncer_db_field NAME FIELD: a column of SHOW DATABASES (host,
# port, paused, ...) for database entry NAME.
dbm_pgbouncer_db_field()
{
	psql "$PGB_ADMIN" -XAq -F '|' -c 'SHOW DATABASES' | awk -F '|' -v db="$1" -v f="$2" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == f) col = i; next }
		$1 == db && col { print $col }'
}

# dbm_pgbouncer_paused NAME: succeeds when database entry NAME is paused.
dbm_pgbouncer_paused() { [[ "$(dbm_pgbouncer_db_field "$1" paused)" == 1 ]]; }
