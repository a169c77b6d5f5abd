#!/usr/bin/env bash
# Load benchmarks (SPEC §9). Builds release, starts the service on PostgreSQL + Redis,
# measures the static /healthz baseline and each scenario in the same run, and prints
# each scenario's rate as a ratio of the baseline.
#
#   bench/run.sh [scenario ...]        default: every bench/scenarios/*.lua
#   DURATION=15s CONNECTIONS=64 THREADS=2 bench/run.sh
#
# The service and pgbench both reach PostgreSQL over loopback TCP without TLS
# (DB_PARAMS, PGSSLMODE): TLS to a database on the same host only burns CPU.
#
# A scenario is bench/scenarios/NAME.lua (a wrk script) with an optional NAME.sh beside
# it, sourced before the run to prepare data; it may set WRK_ARGS (e.g. headers),
# NO_WARMUP (single-use requests) and COMPARE_PGBENCH (also run pgbench's TPC-B, scale 10,
# with the same client count against the same PostgreSQL, and report the ratio to it).
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

cargo build-release -q
BIN=target/release/zhuge-card

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
pgbench_wanted=
for s in "${scenarios[@]}"; do
  WRK_ARGS=()
  NO_WARMUP=
  COMPARE_PGBENCH=
  if [ -f "bench/scenarios/$s.sh" ]; then
    # shellcheck source=/dev/null
    source "bench/scenarios/$s.sh"
  fi
  results+=("$(run "$s" "bench/scenarios/$s.lua" "${WRK_ARGS[@]}")")
  [ -z "$COMPARE_PGBENCH" ] || pgbench_wanted+=" $s"
done
pgbench_tps=
if [ -n "$pgbench_wanted" ]; then
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS zhuge_pgbench WITH (FORCE)" -c "CREATE DATABASE zhuge_pgbench" >/dev/null 2>&1
  pgbench -q -i -s 10 "$PGURL/zhuge_pgbench" >/dev/null 2>&1
  psql "$PGURL/postgres" -qc CHECKPOINT
  pgbench_tps=$(pgbench -c "$CONNECTIONS" -j "$THREADS" -T "${DURATION%s}" "$PGURL/zhuge_pgbench" 2>/dev/null | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
fi
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
if [ -n "$pgbench_tps" ]; then
  echo "pgbench TPC-B (scale 10, -c$CONNECTIONS -j$THREADS -T${DURATION%s}): $pgbench_tps tps"
  for r in "${results[@]}"; do
    name=${r%% *}
    case " $pgbench_wanted " in *" $name "*)
      rps=$(echo "$r" | sed -E 's/.*rps=([0-9.]+).*/\1/')
      echo "$name / pgbench TPC-B: $(awk -v a="$rps" -v b="$pgbench_tps" 'BEGIN { printf "%.2f", a / b }')";;
    esac
  done
fi
