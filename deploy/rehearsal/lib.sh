# Helpers of run.sh (sourced; needs the variables of $WORK/env.sh).

# Runs a PostgreSQL tool as the postgres user when we are root (initdb refuses root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg() { # start | stop | restart
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pgsock/pg.log" -w -t 60 -m fast \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/pgsock -c max_connections=300" "$1" >/dev/null
}

init_postgres() {
  mkdir -p "$WORK/pg" "$WORK/pgsock"
  [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg" "$WORK/pgsock"
  as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >"$WORK/initdb.log"
  pg start
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres zhuge
}

start_redis() { # index
  local port=${REDIS_PORTS[$1]} dir="$WORK/redis-$1"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --logfile "$dir/redis.log" &
  echo $! > "$WORK/redis-$1.pid"
  for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis node $1 did not start on port $port; its log:" >&2; tail -20 "$dir/redis.log" >&2; return 1
}

wait_cluster() {
  for _ in $(seq 1 300); do
    local ok=0
    for p in "${REDIS_PORTS[@]}"; do redis-cli -p "$p" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && return
    sleep 0.1
  done
  echo "the Redis Cluster did not become ok" >&2; return 1
}

# The production environment of instance $INSTANCE (nothing else is inherited).
instance_vars() {
  INSTANCE_VARS=(
    PATH="$PATH" HOME="${HOME:-/root}"
    ZHUGE_PROFILE=production
    DATABASE_URL="$DATABASE_URL"
    REDIS_URL="$REDIS_URL"
    ZHUGE_MASTER_KEY="$MASTER_KEY"
    ZHUGE_WECHAT_BASE_URL="http://127.0.0.1:$WECHAT_PORT"
    ZHUGE_WECHAT_APPID=wx_rehearsal
    ZHUGE_WECHAT_SECRET=rehearsal-secret
    ZHUGE_TRUST_PROXY=true
    ZHUGE_WORKERS=2
    ZHUGE_DB_MAX_CONNECTIONS=8
    ZHUGE_SHUTDOWN_DELAY_SECS=2
    ZHUGE_SHUTDOWN_TIMEOUT_SECS=10
    ZHUGE_IDEMPOTENCY_LEASE_SECS=5
    ZHUGE_LISTEN="127.0.0.1:${INSTANCE_PORTS[${INSTANCE:-1}]}"
    RUST_LOG=warn
  )
}

# The binary with exactly that environment (for migrate, create-admin).
instance_env() {
  instance_vars
  env -i "${INSTANCE_VARS[@]}" "$BIN" "$@"
}

start_instance() { # index; the pid file holds the service's own pid (exec)
  INSTANCE=$1 instance_vars
  ( exec env -i "${INSTANCE_VARS[@]}" "$BIN" serve >>"$WORK/inst-$1.log" 2>&1 ) &
  echo $! > "$WORK/inst-$1.pid"
}

# Whether a pid is a live process (a zombie nobody reaped is not).
alive() { [ -n "$(ps -o stat= -p "$1" 2>/dev/null | grep -v Z)" ]; }

wait_instance() { # index
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:${INSTANCE_PORTS[$1]}/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "instance $1 did not become ready; its log:" >&2; tail -20 "$WORK/inst-$1.log" >&2; return 1
}

stop_instance() { # index signal: waits for the exit
  local pid; pid=$(cat "$WORK/inst-$1.pid")
  kill "-$2" "$pid"
  while alive "$pid"; do sleep 0.1; done
}
