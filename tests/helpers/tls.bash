# Security helpers for the bats suites: a test CA made with openssl, and a
# cluster turned into one that asks for passwords and certificates.
#
#   load helpers/common
#   load helpers/tls
#   dbm_tls_certs "$DIR" dbm_tls        # ca.crt, server.{crt,key},
#                                        # dbm_tls.{crt,key}, other-ca.crt
#   dbm_secure_cluster "$SRC_DIR" "$DIR"  # ssl=on, pg_hba below, reload
#
# The secured cluster keeps trusting the superuser "postgres" (the suites'
# psql helpers connect as it) and:
#   - role dbm_tls:  TLS with a client certificate only (hostssl ... cert,
#                    hostnossl ... reject), every connection kind
#   - every other role on 127.0.0.1: scram-sha-256 (password_encryption
#                    is scram-sha-256 in PostgreSQL 15)
# log_connections is on: each session's "connection authorized" line says
# whether it used SSL.

# _dbm_openssl ARGS...: openssl, its chatter kept for a failure.
_dbm_openssl()
{
	local out
	if ! out=$(openssl "$@" 2>&1); then
		echo "openssl $1 failed: $out" >&2
		return 1
	fi
}

# dbm_tls_cert DIR NAME CA SUBJECT [EXTENSIONS]: a P-256 key DIR/NAME.key and
# a certificate DIR/NAME.crt signed by DIR/CA.{crt,key}.
dbm_tls_cert()
{
	local dir=$1 name=$2 ca=$3 subj=$4 ext=${5:-basicConstraints=CA:FALSE}
	_dbm_openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "$subj" || return
	printf '%s\n' "$ext" >"$dir/$name.ext"
	_dbm_openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
		-CAcreateserial -out "$dir/$name.crt" -days 2 -extfile "$dir/$name.ext" || return
	chmod 600 "$dir/$name.key"
	rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# dbm_tls_ca DIR NAME: a self-signed CA DIR/NAME.{crt,key}.
dbm_tls_ca()
{
	_dbm_openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$1/$2.key" -out "$1/$2.crt" -days 2 -subj "/CN=dbm test $2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign"
}

# dbm_tls_certs DIR CLIENT...: the test CA (ca), a server certificate for
# 127.0.0.1 and localhost (server), a client certificate per CLIENT role
# (CN = the role), and an unrelated CA (other-ca) for negative tests.
dbm_tls_certs()
{
	local dir=$1 c
	shift
	mkdir -p "$dir"
	dbm_tls_ca "$dir" ca || return
	dbm_tls_ca "$dir" other-ca || return
	dbm_tls_cert "$dir" server ca "/CN=localhost" \
		"$(printf '%s\n' basicConstraints=CA:FALSE \
			subjectAltName=IP:127.0.0.1,DNS:localhost extendedKeyUsage=serverAuth)" || return
	for c in "$@"; do
		dbm_tls_cert "$dir" "$c" ca "/CN=$c" \
			"$(printf '%s\n' basicConstraints=CA:FALSE extendedKeyUsage=clientAuth)" || return
	done
}

# dbm_tls_conninfo DIR ROLE: the libpq options of a verified TLS session
# as ROLE with its client certificate.
dbm_tls_conninfo()
{
	echo "sslmode=verify-full sslrootcert=$1/ca.crt sslcert=$1/$2.crt sslkey=$1/$2.key"
}

# dbm_secure_cluster CLUSTER_DIR CERT_DIR: ssl=on with CERT_DIR's server
# certificate and CA, the pg_hba.conf above, log_connections; reloaded (all
# of these take effect without a restart).
dbm_secure_cluster()
{
	local cdir=$1 certs=$2 data=$1/data owner f
	owner=$(stat -c %U "$data")
	for f in server.crt server.key ca.crt; do
		cp "$certs/$f" "$data/dbm-$f"
		chmod 600 "$data/dbm-$f"
		[[ $EUID -ne 0 ]] || chown "$owner:" "$data/dbm-$f"
	done
	cat >"$data/pg_hba.conf" <<-'EOF'
		# dbm security tests
		local     all           all                            trust
		host      all           postgres    127.0.0.1/32       trust
		host      replication   postgres    127.0.0.1/32       trust
		hostssl   all           dbm_tls     127.0.0.1/32       cert
		hostssl   replication   dbm_tls     127.0.0.1/32       cert
		hostnossl all           dbm_tls     127.0.0.1/32       reject
		hostnossl replication   dbm_tls     127.0.0.1/32       reject
		host      all           all         127.0.0.1/32       scram-sha-256
		host      replication   all         127.0.0.1/32       scram-sha-256
	EOF
	[[ $EUID -ne 0 ]] || chown "$owner:" "$data/pg_hba.conf"
	psql "$(cat "$cdir/conninfo")" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<-'EOF' || return
		ALTER SYSTEM SET ssl = on;
		ALTER SYSTEM SET ssl_cert_file = 'dbm-server.crt';
		ALTER SYSTEM SET ssl_key_file = 'dbm-server.key';
		ALTER SYSTEM SET ssl_ca_file = 'dbm-ca.crt';
		ALTER SYSTEM SET log_connections = on;
		ALTER SYSTEM SET password_encryption = 'scram-sha-256';
		SELECT pg_reload_conf();
	EOF
	dbm_wait_until 30 _dbm_ssl_on "$cdir"
}

_dbm_ssl_on()
{
	[[ "$(psql "$(cat "$1/conninfo")" -XAtq -c 'SHOW ssl' 2>/dev/null)" == on ]]
}

# dbm_log_from CLUSTER_DIR: remember where the server log ends; dbm_log_since
# CLUSTER_DIR prints what was logged after that.
dbm_log_from()
{
	local var=_DBM_LOG_POS_${1//[^A-Za-z0-9]/_}
	printf -v "$var" '%s' "$(stat -c %s "$1/postgres.log")"
}
dbm_log_since()
{
	local var=_DBM_LOG_POS_${1//[^A-Za-z0-9]/_}
	tail -c +$((${!var:-0} + 1)) "$1/postgres.log"
}
