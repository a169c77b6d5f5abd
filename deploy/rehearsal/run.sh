#!/usr/bin/env bash
# The production shape on one machine, on loopback only, broken on purpose: a throwaway
# PostgreSQL, a 3-master Redis Cluster, 3 release instances in the production profile
# (configured by environment only) behind haproxy (health check /readyz, round robin, no
# stickiness), and the WeChat stand-in. A bounded mixed load runs through haproxy while
# faults are injected one after another; after each, the invariants are checked in the
# database and a row of the table is printed. See README.md.
#
#   deploy/rehearsal/run.sh            # the full rehearsal (about 10 minutes)
#   deploy/rehearsal/run.sh --short    # the CI version (about 3 minutes)
#
# Exit status: 0 when every invariant held after every fault and no client request failed
# where the issue demands none (the rolling restart, the hung Redis); 1 otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/deploy/rehearsal"

# ---------------------------------------------------------------------------------------
# Fault mode: `run.sh fault NAME` is what the load driver runs at the fault's moment. It
# reads the running rehearsal's settings from $REHEARSAL_ENV.
if [ "${1:-}" = fault ]; then
  # shellcheck disable=SC1090
  source "$REHEARSAL_ENV"
  source "$HERE/lib.sh"
  case "$2" in
    kill-instance)
      kill -KILL "$(cat "$WORK/inst-2.pid")"; sleep 2; start_instance 2; wait_instance 2 ;;
    rolling-restart)
      for i in 1 2 3; do
        stop_instance "$i" TERM; start_instance "$i"; wait_instance "$i"
        sleep 2   # haproxy marks it up (rise 2 × inter 500 ms) before the next one goes
      done ;;
    kill-every-20s)
      for i in 1 2 3 1 2 3; do
        kill -KILL "$(cat "$WORK/inst-$i.pid")"; sleep 1; start_instance "$i"; wait_instance "$i"; sleep 18
      done ;;
    postgres-restart)
      pg restart ;;
    kill-redis-master)
      kill -KILL "$(cat "$WORK/redis-1.pid")"; sleep 5; start_redis 1; wait_cluster ;;
    flushall)
      for i in 0 1 2; do redis-cli -p "${REDIS_PORTS[$i]}" FLUSHALL >/dev/null; done ;;
    hang-redis)
      kill -STOP "$(cat "$WORK/redis-0.pid")"; sleep 10; kill -CONT "$(cat "$WORK/redis-0.pid")" ;;
    *) echo "unknown fault $2" >&2; exit 2 ;;
  esac
  exit 0
fi

SHORT=false
[ "${1:-}" = --short ] && SHORT=true
# REHEARSAL_PROFILE=debug runs debug builds (to try the script itself; figures mean little).
OUT="$ROOT/target/${REHEARSAL_PROFILE:-release}"
BIN="$OUT/zhuge-card"
DRIVER="$OUT/examples/rehearsal"
STANDIN="$OUT/examples/wechat_standin"
if [ "${REHEARSAL_NO_BUILD:-false}" != true ]; then
  (cd "$ROOT" && cargo build-release)
fi
for tool in haproxy redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "rehearsal: $tool is required (apt-get install haproxy redis-server)" >&2; exit 1; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "rehearsal: PostgreSQL server binaries are required" >&2; exit 1; }

WORK=$(mktemp -d /tmp/zhuge-rehearsal.XXXXXX)
chmod 755 "$WORK"
echo "rehearsal: working in $WORK"

# Free loopback ports (a Redis Cluster node also needs its bus port, +10000). They are
# taken below the kernel's ephemeral range, bus ports included: a port inside it can be
# free when picked and then be the local end of some outgoing connection by the time its
# server binds (a CI run lost a Redis node that way).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_SPAN=$(( EPHEMERAL_LOW - 10000 - 10000 ))
[ "$PORT_SPAN" -ge 100 ] || { echo "rehearsal: the ephemeral port range starts at $EPHEMERAL_LOW, too low to pick ports under it" >&2; exit 1; }
pick_port() {
  local p
  while :; do
    p=$(( 10000 + RANDOM % PORT_SPAN ))
    # Neither the port nor its bus port may be one already handed out, bus ports included.
    port_free "$p" && port_free $(( p + 10000 )) \
      && ! grep -qxE "$p|$(( p + 10000 ))" "$WORK/ports" 2>/dev/null \
      && { printf '%s\n%s\n' "$p" $(( p + 10000 )) >> "$WORK/ports"; echo "$p"; return; }
  done
}
PG_PORT=$(pick_port)
HAPROXY_PORT=$(pick_port)
WECHAT_PORT=$(pick_port)
REDIS_PORTS=("$(pick_port)" "$(pick_port)" "$(pick_port)")
INSTANCE_PORTS=("" "$(pick_port)" "$(pick_port)" "$(pick_port)")
MASTER_KEY="rehearsal-master-key-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REDIS_URL=$(printf 'redis://127.0.0.1:%s,' "${REDIS_PORTS[@]}"); REDIS_URL=${REDIS_URL%,}
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/zhuge"

cat > "$WORK/env.sh" <<EOF
WORK=$WORK
BIN=$BIN
PGBIN=$PGBIN
PG_PORT=$PG_PORT
REDIS_PORTS=(${REDIS_PORTS[*]})
INSTANCE_PORTS=("" ${INSTANCE_PORTS[1]} ${INSTANCE_PORTS[2]} ${INSTANCE_PORTS[3]})
WECHAT_PORT=$WECHAT_PORT
MASTER_KEY=$MASTER_KEY
REDIS_URL=$REDIS_URL
DATABASE_URL=$DATABASE_URL
EOF
export REHEARSAL_ENV="$WORK/env.sh"
# shellcheck disable=SC1091
source "$HERE/lib.sh"

cleanup() {
  set +e
  for f in "$WORK"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
  done
  pg stop >/dev/null 2>&1
  if [ "${REHEARSAL_KEEP:-false}" != true ]; then rm -rf "$WORK"; else echo "rehearsal: kept $WORK"; fi
}
trap cleanup EXIT

echo "rehearsal: PostgreSQL on $PG_PORT (throwaway cluster)"
init_postgres
echo "rehearsal: Redis Cluster on ${REDIS_PORTS[*]}"
for i in 0 1 2; do start_redis "$i"; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log"
wait_cluster
echo "rehearsal: WeChat stand-in on $WECHAT_PORT"
"$STANDIN" "127.0.0.1:$WECHAT_PORT" wx_rehearsal rehearsal-secret >"$WORK/wechat.log" 2>&1 &
echo $! > "$WORK/wechat.pid"

echo "rehearsal: migrations and admin accounts"
instance_env migrate >/dev/null
for role in super_admin operator reviewer; do
  echo "Rehearsal-$role-2026" | instance_env create-admin --username "rehearsal.${role//_/-}" --password-stdin --role "$role" >/dev/null
done
export ZR_SUPER="rehearsal.super-admin:Rehearsal-super_admin-2026"
export ZR_OPERATOR="rehearsal.operator:Rehearsal-operator-2026"
export ZR_REVIEWER="rehearsal.reviewer:Rehearsal-reviewer-2026"

echo "rehearsal: 3 instances on ${INSTANCE_PORTS[*]:1}"
for i in 1 2 3; do start_instance "$i"; done
for i in 1 2 3; do wait_instance "$i"; done

sed -e "s/@HAPROXY_PORT@/$HAPROXY_PORT/" -e "s/@P1@/${INSTANCE_PORTS[1]}/" -e "s/@P2@/${INSTANCE_PORTS[2]}/" \
  -e "s/@P3@/${INSTANCE_PORTS[3]}/" "$HERE/haproxy.cfg" > "$WORK/haproxy.cfg"
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
echo $! > "$WORK/haproxy.pid"
BASE="http://127.0.0.1:$HAPROXY_PORT"
for _ in $(seq 1 100); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.1; done
echo "rehearsal: haproxy on $HAPROXY_PORT; readyz through it:"
curl -s "$BASE/readyz"; echo

"$DRIVER" setup --base "$BASE" --state "$WORK/state.json"

if $SHORT; then SECONDS_PER=20; CLIENTS=16; else SECONDS_PER=40; CLIENTS=64; fi
TABLE="$WORK/table.md"
{
  echo "| fault | attempts | requests | failed (after retries) | recovery | p50 ms | p99 ms | redemptions | each seen once | ≤ quota | counters = redemptions | nonce once | sentinel signed in | audit chain |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$TABLE"
status=0
drive() { # name seconds clients [fault] [rate]
  local args=(run --base "$BASE" --state "$WORK/state.json" --db "$DATABASE_URL" --name "$1" --seconds "$2" --clients "$3" --table "$TABLE")
  [ -n "${4:-}" ] && args+=(--fault "'$HERE/run.sh' fault $4" --fault-at 5)
  [ -n "${5:-}" ] && args+=(--rate "$5")
  "$DRIVER" "${args[@]}" >/dev/null || status=1
}
drive "no fault" "$SECONDS_PER" "$CLIENTS"
drive "SIGKILL of an instance, restarted" "$SECONDS_PER" "$CLIENTS" kill-instance
drive "rolling SIGTERM restart" $(( SECONDS_PER + 25 )) "$CLIENTS" rolling-restart
drive "PostgreSQL restart" "$SECONDS_PER" "$CLIENTS" postgres-restart
drive "SIGKILL of a Redis master, restarted" "$SECONDS_PER" "$CLIENTS" kill-redis-master
drive "FLUSHALL on every node" "$SECONDS_PER" "$CLIENTS" flushall
drive "SIGSTOP of a Redis node for 10 s" $(( SECONDS_PER + 10 )) "$CLIENTS" hang-redis
if ! $SHORT; then
  drive "SIGKILL every 20 s for 2 min, 64 clients" 130 64 kill-every-20s
  drive "SIGSTOP of a Redis node for 10 s, paced 500 cycles/s" 40 64 hang-redis 500
fi

echo
echo "rehearsal: $(nproc) cores, $(uname -sr); haproxy $(haproxy -v | head -1 | awk '{print $3}'); $(redis-server --version | awk '{print $3}'); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}')"
cat "$TABLE"
# The faults that must cost no failed request at all.
if awk -F'|' '/rolling SIGTERM|SIGSTOP of a Redis node/ && $5+0 != 0 { bad=1 } END { exit bad }' "$TABLE"; then :; else
  echo "rehearsal: a fault that must cost no failed request cost some" >&2; status=1
fi
if [ -n "${REHEARSAL_TABLE_OUT:-}" ]; then cp "$TABLE" "$REHEARSAL_TABLE_OUT"; fi
exit $status
