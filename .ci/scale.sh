#!/usr/bin/env bash
# CI: the city dataset generator at a small scale factor, into a fresh PostgreSQL
# database, then its invariants (quota counters match redemptions, card number check
# characters, the audit chain, the statistics rollup). Skipped without PostgreSQL unless
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SCALE=${CITY_SCALE:-0.002}
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  if [ "${CI:-false}" = true ]; then echo "scale: FAILED: PostgreSQL unreachable" >&2; exit 1; fi
  echo "scale: SKIPPED (PostgreSQL unreachable)"; exit 0
fi
db="zhuge_city_ci_$$"
psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
trap 'psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
url="${PG%/*}/$db"
export DATABASE_URL="$url" ZHUGE_MASTER_KEY="ci-city-master-key-ci-city-master-key-42"
cargo run -q --locked --example city -- --scale "$SCALE" --seed 7
# A second pass over what is there: the checks alone.
cargo run -q --locked --example city -- --check
