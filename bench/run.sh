#!/usr/bin/env bash
# Load benchmarks (SPEC §9). Builds release, starts the service on PostgreSQL + Redis,
# measures the static /healthz baseline and each scenario in the same run, and prints
# each scenario's rate as a ratio of the baseline.
#
#   bench/run.sh [scenario ...]        default: every bench/scenarios/*.lua
#   DURATION=15s CONNECTIONS=64 THREADS=2 bench/run.sh
#
# A scenario is bench/scenarios/NAME.lua (a wrk script) with an optional NAME.sh beside
# it, sourced before the run to prepare data; it may set WRK_ARGS (e.g. headers).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT=${BENCH_PORT:-18480}
PGURL=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=zhuge_bench
export BASE="http://127.0.0.1:$PORT"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

cargo build --release --locked -q
BIN=target/release/zhuge-card

psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
[ -z "${ASYNC:-}" ] || psql "$PGURL/postgres" -qc "ALTER DATABASE $DB SET synchronous_commit=off"
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
for s in "${scenarios[@]}"; do
  WRK_ARGS=()
  NO_WARMUP=
  if [ -f "bench/scenarios/$s.sh" ]; then
    # shellcheck source=/dev/null
    source "bench/scenarios/$s.sh"
  fi
  results+=("$(run "$s" "bench/scenarios/$s.lua" "${WRK_ARGS[@]}")")
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
