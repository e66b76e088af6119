#!/usr/bin/env bash
# demo.sh - dbm's validation on two throwaway PostgreSQL clusters, in about a
# minute: build a small shop on a source, copy it to a target, prove them
# equal, plant six differences on the target and watch dbm-diff name each
# one, live and through saved dbm-hash files.
#
#   make demo            (builds first; needs scripts/setup.sh's packages)
#   runbooks/demo.sh     (from a built checkout)
#
# Exit 0 when every step behaved as expected, 1 when one did not, 2 when the
# demo could not run.  The clusters live in a temporary directory under /tmp
# and are stopped and removed on every exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PATH="$ROOT/build:$PATH"
PGCLUSTER=$ROOT/scripts/pgcluster.sh
started=$(date +%s)

say() { printf '\n==> %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 2; }

for cmd in dbm-hash dbm-diff jq psql pg_dump; do
	command -v "$cmd" >/dev/null 2>&1 ||
		die "\"$cmd\" not found (run \"make demo\", or scripts/setup.sh and make)"
done
[[ -x "$PGCLUSTER" ]] || die "\"$PGCLUSTER\" not found: run the demo from a checkout"

# The server runs as "postgres" when we are root: every parent of the
# cluster directories must be searchable by it, hence /tmp and mode 755.
WORK=$(mktemp -d /tmp/dbm-demo.XXXXXX)
chmod 755 "$WORK"
cleanup()
{
	"$PGCLUSTER" stop "$WORK/source" || true
	"$PGCLUSTER" stop "$WORK/target" || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# ---------------------------------------------------------------------------
say "starting two throwaway PostgreSQL clusters in $WORK"
SRC=$("$PGCLUSTER" start "$WORK/source") || die "could not start the source cluster"
DST=$("$PGCLUSTER" start "$WORK/target") || die "could not start the target cluster"
echo "source: $SRC"
echo "target: $DST"

# ---------------------------------------------------------------------------
say "creating a small shop on the source (about 100k rows)"
psql_ "$SRC" <<'EOF'
CREATE TABLE customers (
    id      bigint PRIMARY KEY,
    name    text NOT NULL,
    email   text,
    balance numeric(12,2) NOT NULL DEFAULT 0,
    created timestamptz NOT NULL
);
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    total       numeric(12,2) NOT NULL,
    note        text,
    placed      timestamptz NOT NULL
);
-- partitioned: compared as one table, whatever the partition layout
CREATE TABLE events (
    at      timestamptz NOT NULL,
    id      bigint NOT NULL,
    kind    text NOT NULL,
    payload jsonb,
    PRIMARY KEY (at, id)
) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
-- no primary key: the whole row is the key, duplicates count
CREATE TABLE page_views (path text, referrer text, seen timestamptz);
-- a mixed-case name, quoted wherever it appears
CREATE TABLE "OrderNotes" (order_id bigint PRIMARY KEY, "Body" text);

INSERT INTO customers
SELECT g, 'customer ' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
       (g % 1000) * 1.5, timestamptz '2024-01-01' + g * interval '7 minutes'
FROM generate_series(1, 10000) g;
INSERT INTO orders
SELECT g, 1 + g % 10000, (g % 500) + 0.99,
       CASE WHEN g % 7 = 0 THEN 'gift' END,
       timestamptz '2024-01-01' + g * interval '3 minutes'
FROM generate_series(1, 40000) g;
INSERT INTO events
SELECT timestamptz '2024-01-01' + g * interval '17 minutes', g,
       (ARRAY['view', 'cart', 'buy'])[1 + g % 3],
       jsonb_build_object('order', g % 40000)
FROM generate_series(1, 40000) g;
INSERT INTO page_views
SELECT '/p/' || g % 500, CASE WHEN g % 4 = 0 THEN NULL ELSE 'search' END,
       timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, 9000) g;
INSERT INTO "OrderNotes"
SELECT g, 'note ' || g FROM generate_series(1, 1000) g;
ANALYZE;
EOF
psql_ -At "$SRC" -c "SELECT count(*) || ' rows in ' || count(DISTINCT t) || ' tables'
  FROM (SELECT 'c' t FROM customers UNION ALL SELECT 'o' FROM orders
        UNION ALL SELECT 'e' FROM events UNION ALL SELECT 'p' FROM page_views
        UNION ALL SELECT 'n' FROM \"OrderNotes\") x"

# ---------------------------------------------------------------------------
say "copying schema and data to the target (pg_dump | psql)"
pg_dump "$SRC" | psql_ "$DST" >/dev/null ||
	die "could not copy the source to the target"

# ---------------------------------------------------------------------------
say "dbm-diff --source --target: the copy should be equal (exit 0)"
rc=0
dbm-diff --source "$SRC" --target "$DST" >"$WORK/equal.jsonl" || rc=$?
jq -r 'select(.type == "table") | "  \(.status)\t\(.table)\t\(.left_rows) rows"' \
	"$WORK/equal.jsonl"
[[ $rc -eq 0 ]] || fail "dbm-diff exited $rc on identical databases, expected 0"
echo "exit 0: equal"

# ---------------------------------------------------------------------------
say "planting 6 differences on the target"
psql_ "$DST" <<'EOF'
DELETE FROM orders WHERE id = 777;                              -- deleted
INSERT INTO customers
VALUES (10001, 'intruder', 'x@example.com', 0, '2025-06-01');   -- inserted
UPDATE events SET kind = 'refund' WHERE id = 500;               -- column changed
UPDATE "OrderNotes" SET "Body" = "Body" || ' ' WHERE order_id = 42; -- trailing space
UPDATE customers SET email = '' WHERE id = 50;                  -- NULL -> ''
INSERT INTO page_views SELECT * FROM page_views
WHERE seen = '2024-01-01 00:08:00+00';                          -- duplicate
EOF
cat <<'EOF'
  deleted         orders          id 777
  inserted        customers       id 10001
  column changed  events          (at, id 500), kind
  trailing space  "OrderNotes"    order_id 42, "Body"
  NULL -> ''      customers       id 50, email
  duplicate row   page_views      (no primary key)
EOF
planted=6

# What dbm-diff must report, as table<TAB>key<TAB>status lines.
expected=$(jq -rn '
	["public.orders",       {id: "777"},                                  "missing"],
	["public.customers",    {id: "10001"},                                "extra"],
	["public.events",       {at: "2024-01-06 21:40:00+00", id: "500"},    "changed"],
	["public.\"OrderNotes\"", {order_id: "42"},                           "changed"],
	["public.customers",    {id: "50"},                                   "changed"],
	["public.page_views",   {path: "/p/8", referrer: null,
	                         seen: "2024-01-01 00:08:00+00"},             "extra"]
	| "\(.[0])\t\(.[1] | tojson)\t\(.[2])"' | sort)

# Print the row lines of a dbm-diff output as a short table.
show_rows()
{
	jq -r 'select(.type == "row")
		| [.status, .table, (.key | to_entries | map("\(.key)=\(.value // "NULL")") | join(", "))]
		| "  \(.[0] + "         " | .[:9]) \(.[1] + "                     " | .[:21]) \(.[2])"' "$1"
}
found_rows()
{
	jq -r 'select(.type == "row") | "\(.table)\t\(.key | tojson)\t\(.status)"' "$1" | sort
}

# ---------------------------------------------------------------------------
say "dbm-diff again, this time with the connections in DBM_SOURCE/DBM_TARGET (exit 1)"
rc=0
DBM_SOURCE=$SRC DBM_TARGET=$DST dbm-diff >"$WORK/live.jsonl" || rc=$?
show_rows "$WORK/live.jsonl"
jq -r 'select(.type == "summary")
	| "  summary: \(.different) of \(.tables) tables differ; rows missing \(.rows_missing), extra \(.rows_extra), changed \(.rows_changed)"' \
	"$WORK/live.jsonl"
[[ $rc -eq 1 ]] || fail "dbm-diff exited $rc, expected 1 (different)"
found=$(found_rows "$WORK/live.jsonl")
if [[ "$found" != "$expected" ]]; then
	diff <(echo "$expected") <(echo "$found") >&2 || true
	fail "dbm-diff did not name exactly the planted rows (< expected, > found)"
fi
echo "planted $planted, found $(grep -c . <<<"$found")"

# ---------------------------------------------------------------------------
say "the two-host flow: dbm-hash on each side to a file, dbm-diff the files"
dbm-hash --db "$SRC" >"$WORK/source.jsonl" || fail "dbm-hash of the source failed"
dbm-hash --db "$DST" >"$WORK/target.jsonl" || fail "dbm-hash of the target failed"
echo "  source.jsonl: $(wc -l <"$WORK/source.jsonl") lines, target.jsonl: $(wc -l <"$WORK/target.jsonl") lines"
rc=0
dbm-diff "$WORK/source.jsonl" "$WORK/target.jsonl" >"$WORK/buckets.jsonl" || rc=$?
[[ $rc -eq 1 ]] || fail "dbm-diff of the files exited $rc, expected 1"
jq -r 'select(.type == "bucket")
	| "  \(.table) bucket \(.bucket) differs (rows: \(.left_rows) left, \(.right_rows) right)"' \
	"$WORK/buckets.jsonl"

say "drill down: row hashes of just those buckets on each side, dbm-diff names the rows"
dbm-hash --db "$SRC" --rows --only-buckets "$WORK/buckets.jsonl" >"$WORK/source-rows.jsonl" ||
	fail "dbm-hash --rows of the source failed"
dbm-hash --db "$DST" --rows --only-buckets "$WORK/buckets.jsonl" >"$WORK/target-rows.jsonl" ||
	fail "dbm-hash --rows of the target failed"
rc=0
dbm-diff "$WORK/source-rows.jsonl" "$WORK/target-rows.jsonl" >"$WORK/rows.jsonl" || rc=$?
[[ $rc -eq 1 ]] || fail "dbm-diff of the row files exited $rc, expected 1"
show_rows "$WORK/rows.jsonl"
found=$(found_rows "$WORK/rows.jsonl")
if [[ "$found" != "$expected" ]]; then
	diff <(echo "$expected") <(echo "$found") >&2 || true
	fail "the file flow did not name exactly the planted rows (< expected, > found)"
fi
echo "planted $planted, found $(grep -c . <<<"$found") (from files)"

# ---------------------------------------------------------------------------
say "demo passed in $(($(date +%s) - started))s; stopping the clusters"
