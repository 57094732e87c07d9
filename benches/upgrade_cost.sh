#!/usr/bin/env bash
# What upgrading a busy store to schema version 4 costs once, and what a large audit log costs
# every open. A store is made with the release binary (one account, one verification), its
# audit log filled to ROWS verification rows (default 1,000,000; their hash chain is not valid,
# which neither the upgrade nor the open reads), then put back to schema version 3 (the index
# `audit_by_evidence` dropped). Each round copies that file and times the first writing command
# (a signature check: it upgrades the file) and the next one; a fresh one-account file is timed
# beside them. With PG_URL (postgres://user@host:port/maintenance-db, a server this script may
# create and drop databases on) the same is done on PostgreSQL, where opening reads no pages.
# Usage: cargo build --release && benches/upgrade_cost.sh   (needs sqlite3; psql for PG_URL)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${ROWS:-1000000}"
rounds="${ROUNDS:-3}"
vouch="$PWD/target/release/vouch"
scans="$PWD/tests/data/signatures"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home"
mkdir -p "$HOME"
cd "$work"

check() { "$vouch" --db "$@" signature verify --id ACC-1 "$scans/w1_4.png" > /dev/null 2>&1; }
seconds() { local start=$EPOCHREALTIME; "$@"; awk "BEGIN { printf \"%.3f\", $EPOCHREALTIME - $start }"; }

"$vouch" --db fresh.db signature enroll --name "Writer One" --id ACC-1 "$scans"/w1_{1,2,3}.png > /dev/null
check fresh.db
cp fresh.db v3.db
cp fresh.db.key v3.db.key
sqlite3 v3.db "
WITH RECURSIVE n(i) AS (SELECT (SELECT max(id) + 1 FROM audit) UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash)
SELECT i, '2026-12-07T00:00:00.000Z', 'clerk', 'verify',
       '{\"decision\":\"accept\",\"evidence_sha256\":\"' || printf('%064x', i) || '\",\"person_id\":1,\"score\":0.9}',
       printf('%064x', i - 1), printf('%064x', i) FROM n;
DROP INDEX audit_by_evidence;
PRAGMA user_version = 3;"
echo "SQLite: $(sqlite3 v3.db 'SELECT count(*) FROM audit') audit rows, $(du -m v3.db | cut -f1) MB"
for round in $(seq "$rounds"); do
  cp v3.db t.db
  cp v3.db.key t.db.key
  echo "round $round: upgrade $(seconds check t.db) s, next check $(seconds check t.db) s," \
    "fresh file $(seconds check fresh.db) s, version $(sqlite3 t.db 'PRAGMA user_version')"
done

if [ -n "${PG_URL:-}" ]; then
  base="${PG_URL%/*}"
  psql -q "$PG_URL" -c "CREATE DATABASE vouch_upgrade_v3"
  "$vouch" migrate --from fresh.db --to "$base/vouch_upgrade_v3" --to-key pg.key > /dev/null
  psql -q "$base/vouch_upgrade_v3" -c "
INSERT INTO audit (id, at, actor, action, detail, prev_hash, hash)
SELECT i, '2026-12-07T00:00:00.000Z', 'clerk', 'verify',
       '{\"decision\":\"accept\",\"evidence_sha256\":\"' || lpad(to_hex(i), 64, '0') || '\",\"person_id\":1,\"score\":0.9}',
       lpad(to_hex(i - 1), 64, '0'), lpad(to_hex(i), 64, '0')
FROM generate_series((SELECT max(id) + 1 FROM audit), $rows) i;
DROP INDEX audit_by_evidence;
UPDATE vouch_meta SET schema_version = 3;" -c "VACUUM ANALYZE audit"
  echo "PostgreSQL: $(psql -qtA "$base/vouch_upgrade_v3" -c 'SELECT count(*) FROM audit') audit rows"
  for round in $(seq "$rounds"); do
    psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS vouch_upgrade_t" \
      -c "CREATE DATABASE vouch_upgrade_t TEMPLATE vouch_upgrade_v3"
    url="$base/vouch_upgrade_t"
    echo "round $round: upgrade $(seconds check "$url" --key pg.key) s," \
      "next check $(seconds check "$url" --key pg.key) s," \
      "version $(psql -qtA "$url" -c 'SELECT schema_version FROM vouch_meta')"
  done
  psql -q "$PG_URL" -c "DROP DATABASE vouch_upgrade_t" -c "DROP DATABASE vouch_upgrade_v3"
fi
