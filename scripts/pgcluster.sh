#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for tests, the demo and benchmarks.
#
#   scripts/pgcluster.sh start DIR   initdb (from a cached template) into
#                                    DIR/data, start on a free loopback port,
#                                    print the conninfo on stdout
#   scripts/pgcluster.sh stop DIR    stop it (fast, then immediate); quiet,
#                                    success when it is not running
#   scripts/pgcluster.sh restart DIR [MODE [DOWN_SECS]]
#                                    stop it with pg_ctl's MODE (immediate:
#                                    a crash, the default; fast; smart),
#                                    stay down DOWN_SECS (default 0), start
#                                    it again on the same port (fault tests)
#
# The cluster listens on 127.0.0.1 and on a unix socket in DIR, trusts every
# local connection (replication included), runs with wal_level=logical and
# without durability (fsync=off): it is for tests only.  DIR/port and
# DIR/conninfo are written for other scripts; the server log is
# DIR/postgres.log.
#
# PostgreSQL refuses to run as root: when run by root, the server runs as the
# "postgres" OS user (or a system user "dbm", created when that is missing)
# and DIR is handed to that user.
#
# Environment: DBM_PGBIN overrides the directory of initdb/pg_ctl.
set -euo pipefail

PROG=pgcluster
PG_MAJOR=15
# Bump when the template's configuration changes so caches are rebuilt.
TEMPLATE_VERSION=2  # bump when the settings below change

die()
{
	echo "$PROG: error: $*" >&2
	exit 2
}

usage()
{
	echo "usage: $0 start DIR | stop DIR | restart DIR [immediate|fast|smart [DOWN_SECS]]" >&2
	exit 2
}

find_bindir()
{
	if [[ -n "${DBM_PGBIN:-}" ]]; then
		PGBIN=$DBM_PGBIN
	elif [[ -x /usr/lib/postgresql/$PG_MAJOR/bin/pg_ctl ]]; then
		PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
	elif command -v pg_config >/dev/null 2>&1; then
		PGBIN=$(pg_config --bindir)
	else
		die "PostgreSQL $PG_MAJOR server binaries not found (run scripts/setup.sh)"
	fi
	[[ -x "$PGBIN/initdb" && -x "$PGBIN/pg_ctl" ]] ||
		die "no initdb/pg_ctl in \"$PGBIN\" (run scripts/setup.sh)"
}

# Decide which OS user runs the server: ourselves, or a dedicated user when
# we are root.
find_server_user()
{
	if [[ $EUID -ne 0 ]]; then
		SERVER_USER=$(id -un)
		return
	fi
	if id -u postgres >/dev/null 2>&1; then
		SERVER_USER=postgres
	elif id -u dbm >/dev/null 2>&1; then
		SERVER_USER=dbm
	else
		useradd -r -M -d /nonexistent -s /usr/sbin/nologin dbm ||
			die "could not create system user \"dbm\""
		SERVER_USER=dbm
	fi
}

# Run a command as the server user, from "/" so that a working directory the
# server user cannot enter does not bother initdb or pg_ctl.  File
# descriptors above 2 are closed: a test runner such as bats waits for its
# fd 3 to close, and the postmaster would otherwise hold it forever.
as_server()
{
	if [[ $EUID -ne 0 ]]; then
		(cd / && exec "$@") 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
	elif command -v setpriv >/dev/null 2>&1; then
		(cd / && exec setpriv --reuid="$SERVER_USER" --regid="$SERVER_USER" \
			--init-groups -- "$@") 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
	else
		(cd / && exec runuser -u "$SERVER_USER" -- "$@") \
			3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
	fi
}

# Hand a directory we created to the server user.
give()
{
	if [[ $EUID -eq 0 ]]; then
		chown "$SERVER_USER:" "$@"
	fi
}

# Quote a value for postgresql.conf.
conf_quote()
{
	printf "'%s'" "${1//\'/\'\'}"
}

# Make sure the cached template data directory exists; sets TEMPLATE.
# Called with the template lock held.
ensure_template()
{
	local marker="$PG_MAJOR.$TEMPLATE_VERSION"
	if [[ -f "$TEMPLATE/PG_VERSION" && -f "$TEMPLATE/dbm-template" &&
		"$(cat "$TEMPLATE/dbm-template")" == "$marker" ]]; then
		return
	fi
	rm -rf "$TEMPLATE" "$TEMPLATE.new"
	mkdir -m 700 "$TEMPLATE.new"
	give "$TEMPLATE.new"
	local log
	log=$(mktemp)
	if ! as_server "$PGBIN/initdb" -D "$TEMPLATE.new" -U postgres -E UTF8 \
		--no-locale --auth=trust -N >"$log" 2>&1; then
		cat "$log" >&2
		rm -rf "$TEMPLATE.new" "$log"
		die "initdb failed"
	fi
	rm -f "$log"
	cat >"$TEMPLATE.new/pg_hba.conf" <<-'EOF'
		# throwaway test cluster: trust everything local
		local   all           all                  trust
		local   replication   all                  trust
		host    all           all   127.0.0.1/32   trust
		host    replication   all   127.0.0.1/32   trust
		host    all           all   ::1/128        trust
		host    replication   all   ::1/128        trust
	EOF
	cat >>"$TEMPLATE.new/postgresql.conf" <<-'EOF'

		# dbm test cluster settings
		listen_addresses = '127.0.0.1'
		wal_level = logical
		max_replication_slots = 64
		max_wal_senders = 64
		max_connections = 100
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		shared_buffers = 128MB
		logging_collector = off
		# port and unix_socket_directories of this copy
		include_if_exists = 'dbm-local.conf'
	EOF
	echo "$marker" >"$TEMPLATE.new/dbm-template"
	give "$TEMPLATE.new/pg_hba.conf" "$TEMPLATE.new/dbm-template"
	mv "$TEMPLATE.new" "$TEMPLATE"
}

# Copy the template into DIR/data, building the template first if needed.
# The lock makes parallel starts safe.
copy_template()
{
	local base=${TMPDIR:-/tmp}
	# The server user builds the template: it must reach the directory.
	if [[ $EUID -eq 0 ]] && ! as_server test -w "$base" -a -x "$base"; then
		base=/tmp
	fi
	TEMPLATE="$base/dbm-pgtemplate-$(id -u "$SERVER_USER")"
	# Root and the server user may share the template: open the lock file
	# read-only (flock needs no more), creating it only when it is missing.
	local lockfd
	[[ -e "$TEMPLATE.lock" ]] || : >>"$TEMPLATE.lock"
	exec {lockfd}<"$TEMPLATE.lock"
	flock -w 300 "$lockfd" || die "timed out waiting for \"$TEMPLATE.lock\""
	ensure_template
	cp -a "$TEMPLATE" "$DATA"
	rm -f "$DATA/dbm-template"
	exec {lockfd}>&-
}

random_port()
{
	echo $(( ((RANDOM << 15) | RANDOM) % 40001 + 20000 ))
}

# True when nothing accepts connections on 127.0.0.1:$1.
port_free()
{
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_start()
{
	local dir=$1
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	DATA=$dir/data
	local log=$dir/postgres.log

	find_bindir
	find_server_user
	give "$dir"
	as_server test -w "$dir" -a -x "$dir" ||
		die "server user \"$SERVER_USER\" cannot write \"$dir\" (every parent must be searchable)"

	if [[ -f "$DATA/postmaster.pid" ]] &&
		as_server "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		die "a server is already running in \"$DATA\""
	fi
	if [[ ! -f "$DATA/PG_VERSION" ]]; then
		rm -rf "$DATA"
		copy_template
	fi

	local attempt port started=
	for attempt in 1 2 3 4 5; do
		port=$(random_port)
		port_free "$port" || continue
		{
			echo "port = $port"
			echo "unix_socket_directories = $(conf_quote "$dir")"
		} >"$DATA/dbm-local.conf"
		give "$DATA/dbm-local.conf"
		touch "$log"
		give "$log"
		if as_server "$PGBIN/pg_ctl" -D "$DATA" -l "$log" -w -t 60 \
			start >/dev/null 2>&1; then
			started=1
			break
		fi
		# A port taken between our check and the bind, most likely; make
		# sure nothing half-started stays behind, then try another port.
		as_server "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 \
			stop >/dev/null 2>&1 || true
	done
	if [[ -z "$started" ]]; then
		tail -n 20 "$log" >&2 2>/dev/null || true
		die "could not start a server in \"$DATA\" (log: \"$log\")"
	fi

	local conninfo="host=127.0.0.1 port=$port user=postgres dbname=postgres"
	echo "$port" >"$dir/port"
	echo "$conninfo" >"$dir/conninfo"
	echo "$conninfo"
}

cmd_stop()
{
	local dir=$1
	DATA=$dir/data
	[[ -f "$DATA/postmaster.pid" ]] || return 0
	find_bindir
	if [[ $EUID -eq 0 ]]; then
		SERVER_USER=$(stat -c %U "$DATA")
	fi
	as_server "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 5 stop \
		>/dev/null 2>&1 && return 0
	as_server "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 stop \
		>/dev/null 2>&1 && return 0
	# pg_ctl failed: the pid file may be stale, or the data dir damaged.
	local pid
	pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)
	if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
		[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */postgres ]]; then
		kill -QUIT "$pid" 2>/dev/null || true
		local i
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || return 0
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	return 0
}

cmd_restart()
{
	local dir=$1 mode=${2:-immediate} down=${3:-0}
	DATA=$dir/data
	[[ "$mode" =~ ^(immediate|fast|smart)$ ]] || usage
	[[ "$down" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage
	[[ -f "$DATA/PG_VERSION" ]] || die "no cluster in \"$dir\""
	find_bindir
	if [[ $EUID -eq 0 ]]; then
		SERVER_USER=$(stat -c %U "$DATA")
	fi
	as_server "$PGBIN/pg_ctl" -D "$DATA" -m "$mode" -w -t 60 stop >/dev/null 2>&1 ||
		die "could not stop the server in \"$DATA\""
	sleep "$down"
	as_server "$PGBIN/pg_ctl" -D "$DATA" -l "$dir/postgres.log" -w -t 60 start \
		>/dev/null 2>&1 || die "could not start the server in \"$DATA\" again"
}

case ${1:-} in
start) [[ $# -eq 2 ]] || usage; cmd_start "$2" ;;
stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
restart) [[ $# -ge 2 && $# -le 4 ]] || usage; cmd_restart "$2" "${3:-}" "${4:-}" ;;
*) usage ;;
esac
