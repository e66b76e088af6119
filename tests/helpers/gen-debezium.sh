#!/bin/sh
# gen-debezium.sh - Debezium PostgreSQL connector change events for the rows
# of a table, in the exact value encodings of the connector's settings, for
# the tests of dbm-cdc-apply's decoders.  POSIX shell + psql + jq.
#
#   gen-debezium.sh [OPTION]... CONNINFO [SCHEMA.]TABLE >events.jsonl
#
#   --no-schema             payload only (JsonConverter schemas.enable=false);
#                           default: {"schema":...,"payload":...}
#   --decimal MODE          decimal.handling.mode: precise (default), string,
#                           double
#   --time MODE             time.precision.mode: adaptive (default),
#                           adaptive_time_microseconds, connect; or nano
#                           (NanoTime / NanoTimestamp, the nanosecond types)
#   --binary MODE           binary.handling.mode: bytes (default), base64, hex
#   --interval MODE         interval.handling.mode: numeric (default), string
#   --op OP                 r (default: snapshot reads) or c
#   --server NAME           topic.prefix, in source.name (default srv)
#
# One event per row, ordered by the table's first column, source.lsn 1000,
# 1001, ...  Values are computed from the row's own text: PostgreSQL does the
# epoch arithmetic (exact numeric), jq builds the bytes (two's complement
# decimals of any size, Bits, WKB) and their base64.  Integers that do not fit
# a double (int8, nanoseconds, the infinity stand-ins) are written digit for
# digit, never through jq's floating point.
#
# Encodings, as the Debezium PostgreSQL connector documents them:
#   numeric(p,s)  precise: bytes org.apache.kafka.connect.data.Decimal, base64
#                 of the big-endian two's-complement unscaled value, scale in
#                 parameters; numeric: struct io.debezium.data.VariableScaleDecimal
#                 {scale, value}; string: "1.50"; double: 1.5
#   date          int32 days since the epoch (io.debezium.time.Date, or
#                 org.apache.kafka.connect.data.Date with connect)
#   time(p)       adaptive: p<=3 int32 ms io.debezium.time.Time, else int64 us
#                 io.debezium.time.MicroTime; adaptive_time_microseconds:
#                 MicroTime; connect: ms org.apache.kafka.connect.data.Time
#   timestamp(p)  adaptive: p<=3 ms io.debezium.time.Timestamp, else us
#                 io.debezium.time.MicroTimestamp; connect: ms
#                 org.apache.kafka.connect.data.Timestamp; +-infinity as
#                 9223372036825200000 / -9223372036832400000
#   timestamptz   string io.debezium.time.ZonedTimestamp, ISO 8601 in UTC
#   timetz        string io.debezium.time.ZonedTime, ISO 8601 in UTC
#   interval      numeric: int64 io.debezium.time.MicroDuration (a month is
#                 365.25/12 days, a year 365.25 days); string:
#                 io.debezium.time.Interval "P1Y2M3DT4H5M6.78S"
#   bytea         bytes (base64 in JSON), or a string in base64 or hex
#   bit(1)        boolean; bit(n), varbit: bytes io.debezium.data.Bits
#                 (little-endian bytes of the bit string's value, length in
#                 parameters)
#   json, jsonb   string io.debezium.data.Json; uuid: io.debezium.data.Uuid;
#                 enums: io.debezium.data.Enum with the allowed labels
#   point         struct io.debezium.data.geometry.Point {x, y, wkb, srid}
#   arrays        array of the element's encoding
set -eu

schema=true decimal=precise time=adaptive binary=bytes interval=numeric op=r
server=srv
usage()
{
	sed -n '4,20p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--no-schema) schema=false ;;
	--schema) schema=true ;;
	--decimal) decimal=${2:?}; shift ;;
	--time) time=${2:?}; shift ;;
	--binary) binary=${2:?}; shift ;;
	--interval) interval=${2:?}; shift ;;
	--op) op=${2:?}; shift ;;
	--server) server=${2:?}; shift ;;
	-h|--help) usage ;;
	-*) echo "gen-debezium.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 2 ] || usage
conn=$1
case $2 in
*.*) nsp=${2%%.*} rel=${2#*.} ;;
*) nsp=public rel=$2 ;;
esac
case $decimal in precise|string|double) ;; *) usage ;; esac
case $time in adaptive|adaptive_time_microseconds|connect|nano) ;; *) usage ;; esac
case $binary in bytes|base64|hex) ;; *) usage ;; esac
case $interval in numeric|string) ;; *) usage ;; esac

q()
{
	psql "$conn" -XAtq -v ON_ERROR_STOP=1 "$@"
}

# The columns: name, base type (element type for arrays), array or not,
# typmod-derived precision/scale/length, enum labels, nullability.
cols=$(q -v nsp="$nsp" -v rel="$rel" <<'SQL'
SELECT json_agg(json_build_object(
	'name', a.attname,
	'type', CASE WHEN bt.typtype = 'e' THEN 'enum' ELSE bt.typname END,
	'array', t.typelem <> 0 AND t.typcategory = 'A',
	'typmod', a.atttypmod,
	'optional', NOT a.attnotnull,
	'allowed', (SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder)
				FROM pg_enum WHERE enumtypid = bt.oid)) ORDER BY a.attnum)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END
WHERE a.attrelid = format('%I.%I', :'nsp', :'rel')::regclass
  AND a.attnum > 0 AND NOT a.attisdropped
SQL
)

# One SELECT turning each row into the raw material of its encodings.
sqlprog=$(cat <<'JQ'
	def ident: "\"" + gsub("\""; "\"\"") + "\"";
	# raw material of one value x (an SQL expression) of base type $t
	def raw($t):
		. as $x |
		if $t == "int8" or $t == "text" or $t == "varchar" or $t == "bpchar"
			or $t == "json" or $t == "jsonb" or $t == "uuid" or $t == "enum"
			or $t == "bit" or $t == "varbit" then "to_json(\($x)::text)"
		elif $t == "numeric" then
			"json_build_object('u', replace(replace(\($x)::text, '.', ''), '-', ''), 'neg', \($x) < 0, 's', scale(\($x)), 't', \($x)::text)"
		elif $t == "bytea" then "to_json(encode(\($x), 'hex'))"
		elif $t == "date" then "to_json((\($x) - date '1970-01-01')::text)"
		elif $t == "time" then
			"(SELECT json_build_object('us', us::numeric(30,0)::text, 'ms', floor(us / 1000)::bigint::text, 'ns', (us * 1000)::numeric(30,0)::text) FROM (SELECT extract(epoch FROM \($x)) * 1000000 AS us) s)"
		elif $t == "timestamp" then
			"CASE WHEN \($x) = 'infinity' THEN json_build_object('inf', 1) WHEN \($x) = '-infinity' THEN json_build_object('inf', -1) ELSE (SELECT json_build_object('us', us::bigint::text, 'ms', floor(us / 1000)::bigint::text, 'ns', (us * 1000)::numeric(30,0)::text) FROM (SELECT extract(epoch FROM \($x)) * 1000000 AS us) s) END"
		elif $t == "timestamptz" then
			"to_json(CASE WHEN \($x) = 'infinity' THEN 'infinity' WHEN \($x) = '-infinity' THEN '-infinity' ELSE to_char(\($x) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END)"
		elif $t == "timetz" then
			"to_json(((\($x) AT TIME ZONE 'UTC')::time)::text || 'Z')"
		elif $t == "interval" then
			"(SELECT json_build_object('y', y, 'm', m, 'd', d, 'h', h, 'mi', mi, 's', trim_scale(s)::text, 'us', (y * 365.25 * 86400000000 + m * 30.4375 * 86400000000 + d * 86400000000 + h * 3600000000 + mi * 60000000 + s * 1000000)::numeric(30,0)::text) FROM (SELECT extract(year FROM \($x)) y, extract(month FROM \($x)) m, extract(day FROM \($x)) d, extract(hour FROM \($x)) h, extract(minute FROM \($x)) mi, extract(second FROM \($x)) s) p)"
		elif $t == "point" then
			"json_build_object('x', (\($x))[0], 'y', (\($x))[1], 'xh', encode(float8send((\($x))[0]), 'hex'), 'yh', encode(float8send((\($x))[1]), 'hex'))"
		else "to_json(\($x))" end;
	def colexpr:
		(.name | ident) as $c | .type as $t |
		if .array then
			"CASE WHEN \($c) IS NULL THEN NULL ELSE coalesce((SELECT json_agg(CASE WHEN e IS NULL THEN NULL ELSE \("e" | raw($t)) END ORDER BY o) FROM unnest(\($c)) WITH ORDINALITY u(e, o)), '[]'::json) END"
		else
			"CASE WHEN \($c) IS NULL THEN NULL ELSE \($c | raw($t)) END"
		end;
	"SELECT json_build_object(" +
	([.[] | "'\(.name | gsub("'"; "''"))'::text, \(colexpr)"] | join(", ")) +
	") FROM \($nsp | ident).\($rel | ident) ORDER BY \(.[0].name | ident)"
JQ
)
sql=$(printf '%s' "$cols" | jq -r --arg nsp "$nsp" --arg rel "$rel" "$sqlprog")

evprog=$(cat <<'JQ'
	# ---- bytes ----
	def b64:
		. as $b | "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" as $a |
		[range(0; $b | length; 3) as $i | $b[$i:$i + 3] as $g |
			(($g[0] * 65536) + (($g[1] // 0) * 256) + ($g[2] // 0)) as $n |
			[18, 12, 6, 0] | map(($n / pow(2; .) | floor) % 64 | $a[.:. + 1]) |
			if ($g | length) == 1 then .[0:2] + ["=", "="]
			elif ($g | length) == 2 then .[0:3] + ["="] else . end | join("")] | join("");
	def hexval: if . >= 97 then . - 87 elif . >= 65 then . - 55 else . - 48 end;
	def hexbytes: explode | [range(0; length; 2) as $i | (.[$i] | hexval) * 16 + (.[$i + 1] | hexval)];
	def hex: map(. as $v | "0123456789abcdef" | .[($v / 16 | floor):($v / 16 | floor) + 1] + .[($v % 16):($v % 16) + 1]) | join("");
	# decimal digit string -> big-endian magnitude bytes (any size)
	def magbytes:
		{d: (explode | map(. - 48)), out: []} |
		until((.d | all(. == 0)); (reduce .d[] as $x ({q: [], r: 0};
			(.r * 10 + $x) as $c | .q += [($c / 256 | floor)] | .r = $c % 256)) as $s |
			.d = $s.q | .out = [$s.r] + .out) | .out;
	def addone: reduce range(length - 1; -1; -1) as $i ({b: ., c: 1};
		(.b[$i] + .c) as $v | .b[$i] = $v % 256 | .c = ($v / 256 | floor)) | .b;
	# BigInteger.toByteArray(): minimal big-endian two complement
	def twos($neg):
		if length == 0 then [0]
		elif $neg | not then (if .[0] >= 128 then [0] + . else . end)
		else (if .[0] > 128 or (.[0] == 128 and (.[1:] | any(. != 0))) then [0] + . else . end)
			| map(255 - .) | addone end;
	def unscaled_b64: .neg as $n | .u | magbytes | twos($n) | b64;
	# numbers that must not go through a double: a marker sed unwraps
	def bignum: "@N@" + . + "@N@";
	def bits_bytes: # bit string -> little-endian bytes of its value (Java int/long)
		(explode | reduce .[] as $c (0; . * 2 + ($c - 48))) as $n |
		[range(0; (if length > 31 then 8 else 4 end)) as $i | ($n / pow(2; 8 * $i) | floor) % 256];

	# ---- schema fields ----
	def tprec: if .typmod < 0 then 6 else .typmod end;
	def nprec: if .typmod < 0 then null else {p: ((.typmod - 4) / 65536 | floor), s: ((.typmod - 4) % 65536)} end;
	def base_schema:
		.type as $t |
		if $t == "bool" then {type: "boolean"}
		elif $t == "int2" then {type: "int16"}
		elif $t == "int4" then {type: "int32"}
		elif $t == "int8" then {type: "int64"}
		elif $t == "float4" then {type: "float"}
		elif $t == "float8" then {type: "double"}
		elif $t == "numeric" then
			if $decimal == "string" then {type: "string"}
			elif $decimal == "double" then {type: "double"}
			elif nprec == null then {type: "struct", name: "io.debezium.data.VariableScaleDecimal", version: 1,
				doc: "Variable scaled decimal", fields: [{type: "int32", optional: false, field: "scale"},
				{type: "bytes", optional: false, field: "value"}]}
			else {type: "bytes", name: "org.apache.kafka.connect.data.Decimal", version: 1,
				parameters: {scale: (nprec.s | tostring), "connect.decimal.precision": (nprec.p | tostring)}} end
		elif $t == "bytea" then (if $binary == "bytes" then {type: "bytes"} else {type: "string"} end)
		elif $t == "date" then {type: "int32", name: (if $time == "connect" then "org.apache.kafka.connect.data.Date" else "io.debezium.time.Date" end), version: 1}
		elif $t == "time" then
			if $time == "connect" then {type: "int32", name: "org.apache.kafka.connect.data.Time", version: 1}
			elif $time == "nano" then {type: "int64", name: "io.debezium.time.NanoTime", version: 1}
			elif $time == "adaptive" and tprec <= 3 then {type: "int32", name: "io.debezium.time.Time", version: 1}
			else {type: "int64", name: "io.debezium.time.MicroTime", version: 1} end
		elif $t == "timestamp" then
			if $time == "connect" then {type: "int64", name: "org.apache.kafka.connect.data.Timestamp", version: 1}
			elif $time == "nano" then {type: "int64", name: "io.debezium.time.NanoTimestamp", version: 1}
			elif tprec <= 3 then {type: "int64", name: "io.debezium.time.Timestamp", version: 1}
			else {type: "int64", name: "io.debezium.time.MicroTimestamp", version: 1} end
		elif $t == "timestamptz" then {type: "string", name: "io.debezium.time.ZonedTimestamp", version: 1}
		elif $t == "timetz" then {type: "string", name: "io.debezium.time.ZonedTime", version: 1}
		elif $t == "interval" then
			if $interval == "string" then {type: "string", name: "io.debezium.time.Interval", version: 1}
			else {type: "int64", name: "io.debezium.time.MicroDuration", version: 1} end
		elif $t == "json" or $t == "jsonb" then {type: "string", name: "io.debezium.data.Json", version: 1}
		elif $t == "uuid" then {type: "string", name: "io.debezium.data.Uuid", version: 1}
		elif $t == "enum" then {type: "string", name: "io.debezium.data.Enum", version: 1, parameters: {allowed: .allowed}}
		elif ($t == "bit" and .typmod == 1) then {type: "boolean"}
		elif $t == "bit" or $t == "varbit" then {type: "bytes", name: "io.debezium.data.Bits", version: 1,
			parameters: {length: (if .typmod < 0 then 2147483647 else .typmod end | tostring)}}
		elif $t == "point" then {type: "struct", name: "io.debezium.data.geometry.Point", version: 1,
			doc: "Geometry (POINT)", fields: [{type: "double", optional: false, field: "x"},
			{type: "double", optional: false, field: "y"}, {type: "bytes", optional: true, field: "wkb"},
			{type: "int32", optional: true, field: "srid"}]}
		else {type: "string"} end;
	def field_schema:
		if .array then {type: "array", items: (base_schema + {optional: true})} else base_schema end
		+ {optional: .optional, field: .name};

	# ---- values ----
	def enc($c):
		. as $v | $c.type as $t |
		if $t == "int8" then bignum
		elif $t == "numeric" then
			if $decimal == "string" then .t
			elif $decimal == "double" then (.t | tonumber)
			elif ($c | nprec) == null then {scale: .s, value: unscaled_b64}
			else unscaled_b64 end
		elif $t == "bytea" then
			if $binary == "hex" then . else hexbytes | b64 end
		elif $t == "date" then bignum
		elif $t == "time" then
			if $time == "connect" or ($time == "adaptive" and ($c | tprec) <= 3) then .ms
			elif $time == "nano" then .ns else .us end | bignum
		elif $t == "timestamp" then
			if .inf == 1 then "9223372036825200000"
			elif .inf == -1 then "-9223372036832400000"
			elif $time == "nano" then .ns
			elif $time == "connect" or ($c | tprec) <= 3 then .ms else .us end | bignum
		elif $t == "interval" then
			if $interval == "numeric" then .us | bignum
			elif .y == 0 and .m == 0 and .d == 0 and .h == 0 and .mi == 0 and (.s | tonumber) == 0 then "PT0S"
			else "P" + ([[.y, "Y"], [.m, "M"], [.d, "D"]] | map(select(.[0] != 0) | "\(.[0])\(.[1])") | join(""))
				+ (if .h != 0 or .mi != 0 or (.s | tonumber) != 0 then "T" +
					([[.h, "H"], [.mi, "M"]] | map(select(.[0] != 0) | "\(.[0])\(.[1])") | join(""))
					+ (if (.s | tonumber) != 0 then .s + "S" else "" end) else "" end) end
		elif $t == "bit" and $c.typmod == 1 then . == "1"
		elif $t == "bit" or $t == "varbit" then bits_bytes | b64
		elif $t == "point" then {x: .x, y: .y,
			wkb: ([1, 1, 0, 0, 0] + (.xh | hexbytes | reverse) + (.yh | hexbytes | reverse) | b64), srid: null}
		else . end;
	def encval($c):
		if . == null then null
		elif $c.array then map(if . == null then null else enc($c) end)
		else enc($c) end;

	. as $row |
	($cols | map(. as $c | {key: .name, value: ($row[.name] | encval($c))}) | from_entries) as $after |
	{before: null, after: $after,
	 source: {version: "2.1.2.Final", connector: "postgresql", name: $server,
		ts_ms: 1700000000000, snapshot: (if $op == "r" then "true" else "false" end),
		db: "src", sequence: null, schema: $nsp, table: $rel, txId: 700, lsn: null, xmin: null},
	 op: $op, ts_ms: 1700000000001, transaction: null} as $payload |
	if $schema == "true" then
		($cols | map(field_schema)) as $fields |
		{schema: {type: "struct", optional: false, name: "\($server).\($nsp).\($rel).Envelope", version: 1,
			fields: [
				{type: "struct", fields: $fields, optional: true, name: "\($server).\($nsp).\($rel).Value", field: "before"},
				{type: "struct", fields: $fields, optional: true, name: "\($server).\($nsp).\($rel).Value", field: "after"},
				{type: "struct", optional: false, name: "io.debezium.connector.postgresql.Source", field: "source",
					fields: [{type: "string", optional: false, field: "version"},
						{type: "string", optional: false, field: "connector"},
						{type: "string", optional: false, field: "name"},
						{type: "int64", optional: false, field: "ts_ms"},
						{type: "string", optional: true, name: "io.debezium.data.Enum", version: 1,
							parameters: {allowed: "true,last,false,incremental"}, default: "false", field: "snapshot"},
						{type: "string", optional: false, field: "db"},
						{type: "string", optional: true, field: "sequence"},
						{type: "string", optional: false, field: "schema"},
						{type: "string", optional: false, field: "table"},
						{type: "int64", optional: true, field: "txId"},
						{type: "int64", optional: true, field: "lsn"},
						{type: "int64", optional: true, field: "xmin"}]},
				{type: "string", optional: false, field: "op"},
				{type: "int64", optional: true, field: "ts_ms"},
				{type: "struct", optional: true, name: "event.block", version: 1, field: "transaction",
					fields: [{type: "string", optional: false, field: "id"},
						{type: "int64", optional: false, field: "total_order"},
						{type: "int64", optional: false, field: "data_collection_order"}]}]},
		 payload: $payload}
	else $payload end
JQ
)
printf '%s\n' "$sql" | q -f - | jq -c \
	--argjson cols "$cols" --arg schema "$schema" --arg decimal "$decimal" \
	--arg time "$time" --arg binary "$binary" --arg interval "$interval" \
	--arg op "$op" --arg server "$server" --arg nsp "$nsp" --arg rel "$rel" "$evprog" |
	awk '{ sub(/"lsn":null/, "\"lsn\":" (999 + NR)); print }' |
	sed 's/"@N@\(-\{0,1\}[0-9]*\)@N@"/\1/g'
