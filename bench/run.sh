#!/usr/bin/env bash
# Load benchmarks (SPEC §9). Builds release, starts the service on PostgreSQL + Redis,
# measures the static /healthz baseline and each scenario in the same run, and prints
# each scenario's rate as a ratio of the baseline.
#
#   bench/run.sh [scenario ...]        default: every bench/scenarios/*.lua
#   DURATION=15s CONNECTIONS=64 THREADS=2 bench/run.sh
#   BENCH_BIN=/tmp/zhuge-before bench/run.sh verify
#   PACED_RATE=2000 bench/run.sh verify     # also verify at a constant 2 000/s (latency, not throughput)
#
# The service and pgbench both reach PostgreSQL over loopback TCP without TLS
# (DB_PARAMS, PGSSLMODE): TLS to a database on the same host only burns CPU.
#
# A scenario is bench/scenarios/NAME.lua (a wrk script) with an optional NAME.sh beside
# it, sourced before the run to prepare data; it may set WRK_ARGS (e.g. headers),
# NO_WARMUP (single-use requests) and COMPARE_PGBENCH, which also runs pgbench with the same
# client count against the same PostgreSQL and reports the ratio to it: `tpcb` (TPC-B,
# scale 10) or `insert` (bench/pgbench/insert.sql, one single-row INSERT … ON CONFLICT DO
# NOTHING per transaction).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${BENCH_PORT:-18480}
PGURL=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=zhuge_bench
DB_PARAMS=${DB_PARAMS-?sslmode=disable}
export PGSSLMODE=${PGSSLMODE:-disable}
export BASE="http://127.0.0.1:$PORT"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# BENCH_BIN: measure a binary built elsewhere (an earlier commit, to compare in one sitting).
BIN=${BENCH_BIN:-target/release/zhuge-card}
[ -n "${BENCH_BIN:-}" ] || cargo build-release -q

psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
redis-cli --scan --pattern 'bench:*' | xargs -r redis-cli del >/dev/null

export THREADS
export DATABASE_URL="$PGURL/$DB${DB_PARAMS:-}" REDIS_URL=redis://127.0.0.1:6379 ZHUGE_CACHE_PREFIX=bench: \
  ZHUGE_LISTEN=127.0.0.1:$PORT ZHUGE_DATA_DIR=$(mktemp -d) RUST_LOG=${RUST_LOG:-warn}
"$BIN" serve >bench/server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/readyz" >/dev/null || { echo "bench: the service did not start"; cat bench/server.log; exit 1; }

run() { # name script [wrk args...]
  local name=$1 script=$2; shift 2
  # Warm up briefly (unless the scenario's requests are single-use), then measure.
  [ -n "${NO_WARMUP:-}" ] || wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$script" "$@" "$BASE" >/dev/null 2>&1 || true
  local line
  line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$script" "$@" "$BASE" | grep '^RESULT')
  echo "$name $line"
}

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  for f in bench/scenarios/*.lua; do
    n=$(basename "$f" .lua)
    [ "$n" = healthz ] || scenarios+=("$n")
  done
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
results=()
results+=("$(run healthz bench/scenarios/healthz.lua)")
pgbench_wanted=()
for s in "${scenarios[@]}"; do
  WRK_ARGS=()
  NO_WARMUP=
  COMPARE_PGBENCH=
  if [ -f "bench/scenarios/$s.sh" ]; then
    # shellcheck source=/dev/null
    source "bench/scenarios/$s.sh"
  fi
  results+=("$(run "$s" "bench/scenarios/$s.lua" "${WRK_ARGS[@]}")")
  [ -z "$COMPARE_PGBENCH" ] || pgbench_wanted+=("$s:$COMPARE_PGBENCH")
done
# PACED_RATE: after the scenarios, verifications at that constant rate for PACED_SECONDS
# (examples/paced.rs: latency from each request's due time, as wrk2 measures).
if [ -n "${PACED_RATE:-}" ]; then
  [ -n "${STAFF:-}" ] || source bench/scenarios/verify.sh
  PACED_SECONDS=${PACED_SECONDS:-20}
  target/release/examples/mint_qr $((PACED_RATE * PACED_SECONDS)) > bench/out/paced-tokens.txt
  results+=("verify@${PACED_RATE}/s $(target/release/examples/paced --base "$BASE" --bearer "$STAFF" \
    --tokens bench/out/paced-tokens.txt --rate "$PACED_RATE" --seconds "$PACED_SECONDS" --connections "$CONNECTIONS")")
  # The floor: pgbench's single-row insert at the same rate and client count, its latency
  # also counted from each transaction's scheduled start (time + schedule lag).
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS zhuge_pgbench_paced WITH (FORCE)" -c "CREATE DATABASE zhuge_pgbench_paced" >/dev/null 2>&1
  psql "$PGURL/zhuge_pgbench_paced" -qc 'CREATE TABLE nonces (nonce text PRIMARY KEY, at timestamptz NOT NULL)'
  rm -rf bench/out/pgbench-log && mkdir -p bench/out/pgbench-log
  pgbench -n -f bench/pgbench/insert.sql -c "$CONNECTIONS" -j "$THREADS" -R "$PACED_RATE" -T "$PACED_SECONDS" \
    --log --log-prefix=bench/out/pgbench-log/log "$PGURL/zhuge_pgbench_paced" >/dev/null 2>&1
  results+=("pgbench-insert@${PACED_RATE}/s $(cat bench/out/pgbench-log/log* | awk '{ print $3 + $7 }' | sort -n |
    awk -v secs="$PACED_SECONDS" '{ a[NR] = $1 } END { printf "RESULT rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f requests=%d errors=0 non2xx=0\n",
      NR / secs, a[int(NR * 0.5)] / 1000, a[int(NR * 0.9)] / 1000, a[int(NR * 0.99)] / 1000, NR }')")
fi
pgbench_tps_of() { # kind -> tps
  local db=zhuge_pgbench_$1 args=()
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null 2>&1
  case $1 in
    tpcb) pgbench -q -i -s 10 "$PGURL/$db" >/dev/null 2>&1;;
    insert) psql "$PGURL/$db" -qc 'CREATE TABLE nonces (nonce text PRIMARY KEY, at timestamptz NOT NULL)'
            args=(-n -f bench/pgbench/insert.sql);;
  esac
  psql "$PGURL/postgres" -qc CHECKPOINT
  pgbench "${args[@]}" -c "$CONNECTIONS" -j "$THREADS" -T "${DURATION%s}" "$PGURL/$db" 2>/dev/null | sed -nE 's/^tps = ([0-9.]+).*/\1/p'
}
declare -A pgbench_tps=()
for w in "${pgbench_wanted[@]}"; do
  kind=${w#*:}
  [ -n "${pgbench_tps[$kind]:-}" ] || pgbench_tps[$kind]=$(pgbench_tps_of "$kind")
done
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)

base_rps=$(echo "${results[0]}" | sed -E 's/.*rps=([0-9.]+).*/\1/')
printf '%-22s %10s %8s %8s %8s %7s %8s\n' scenario req/s p50_ms p90_ms p99_ms errors ratio
for r in "${results[@]}"; do
  name=${r%% *}
  get() { echo "$r" | sed -E "s/.* $1=([0-9.]+).*/\1/"; }
  rps=$(get rps)
  ratio=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.2f", a / b }')
  errs=$(( $(get errors) ))
  printf '%-22s %10s %8s %8s %8s %7s %8s\n' "$name" "$rps" "$(get p50_ms)" "$(get p90_ms)" "$(get p99_ms)" "$errs" "$ratio"
done
echo "server peak RSS: $((rss_kb / 1024)) MiB"
for kind in "${!pgbench_tps[@]}"; do
  echo "pgbench $kind (-c$CONNECTIONS -j$THREADS -T${DURATION%s}): ${pgbench_tps[$kind]} tps"
done
for w in "${pgbench_wanted[@]}"; do
  name=${w%%:*} kind=${w#*:}
  for r in "${results[@]}"; do
    [ "${r%% *}" = "$name" ] || continue
    rps=$(echo "$r" | sed -E 's/.*rps=([0-9.]+).*/\1/')
    echo "$name / pgbench $kind: $(awk -v a="$rps" -v b="${pgbench_tps[$kind]}" 'BEGIN { printf "%.2f", a / b }')"
  done
done
